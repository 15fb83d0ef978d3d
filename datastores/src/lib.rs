//! Datastore managers: everything Herd does *on* a server, over SSH.
//!
//! One [`Manager`] per datastore (one folder each: `postgresql/`). The worker calls the
//! manager's steps in order; every step is idempotent, so a step re-run after a crash
//! or a retry converges instead of failing or duplicating work.

mod manager;
pub mod postgresql;
pub mod repo;
pub mod shell;
pub mod ssh;

pub use manager::{Access, Backups, Lifecycle, Manager, Managers, Membership, Operations, Profile, Snapshots};

use async_trait::async_trait;
use herd_core::faults::FaultCode;
use herd_core::status::NodeRole;
use herd_providers::AttachmentKind;
use secrecy::SecretString;
use std::net::IpAddr;
use std::path::PathBuf;
use uuid::Uuid;

/// How to reach a server over SSH. `host_key` (OpenSSH public line) is verified when
/// known; when None (first contact on a cloud VM) the key seen is returned by
/// [`ssh::wait_reachable`] so the caller can record it.
#[derive(Clone)]
pub struct SshTarget {
    pub address: IpAddr,
    pub port: u16,
    pub user: String,
    pub private_key: SecretString,
    pub host_key: Option<String>,
}

impl std::fmt::Debug for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTarget")
            .field("address", &self.address)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Where a node's data volume appears on its server.
#[derive(Debug, Clone)]
pub struct VolumeMount {
    pub kind: AttachmentKind,
    /// Device path or absolute directory path (already inside the server root).
    pub path: String,
}

/// One member of a cluster.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub node_id: Uuid,
    /// DNS label, unique in the cluster (`orders-0`); Patroni member and etcd name.
    pub name: String,
    pub address: IpAddr,
    pub ssh: SshTarget,
    /// Prefix of every server-side path: the server root of a loopback host, `/` on a VM.
    pub root_prefix: PathBuf,
    /// The OS user every daemon of this node runs as, when its provider made one (a
    /// loopback host's cluster user); None: the packages' `postgres` and `etcd`.
    pub service_user: Option<String>,
    pub volume: Option<VolumeMount>,
    /// Failover preferences of this member.
    pub tags: NodeTags,
    /// The node was added after the cluster was bootstrapped: its DCS member joins the
    /// running DCS (registered by [`Manager::add_member`]) instead of forming a new one.
    pub joins_existing: bool,
}

/// A member's failover preferences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeTags {
    /// Never promoted, neither automatically nor by switchover (Patroni `nofailover`).
    pub no_failover: bool,
    /// Higher is preferred when Herd picks a replica to promote (0..=100). Patroni
    /// 3.0 has no priority tag, so it does not affect Patroni's own automatic choice.
    pub priority: u8,
}

/// Where the HA agent reports role changes as they happen (Patroni `on_role_change`).
#[derive(Clone)]
pub struct Callback {
    /// Full URL the node POSTs to (`http://127.0.0.1:8080/hooks/patroni/<cluster id>`).
    pub url: String,
    /// Each member's credential, by member name: the key its reports are signed
    /// with, kept on that node alone in a 0600 file and never sent.
    pub credentials: std::collections::BTreeMap<String, SecretString>,
}

impl Callback {
    pub fn credential(&self, member: &str) -> Option<&SecretString> {
        self.credentials.get(member)
    }
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback").field("url", &self.url).finish_non_exhaustive()
    }
}

/// What one parameter's rule says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterInfo {
    pub name: String,
    /// Changing it takes a server restart (PostgreSQL context `postmaster`).
    pub restart_required: bool,
}

/// The cluster's TLS material: its CA and each member's certificate (by member name).
/// Every network connection to a member's PostgreSQL is TLS, verified against the CA.
#[derive(Clone)]
pub struct ClusterTls {
    pub ca_pem: String,
    pub members: std::collections::BTreeMap<String, NodeTls>,
    /// Herd's client certificate for this cluster's etcd and Patroni.
    pub control_plane: NodeTls,
    /// When the members' certificates are due for renewal (the end of their window).
    pub renew_at: chrono::DateTime<chrono::Utc>,
}

/// One member's certificate (SANs: its name and addresses) and private key, PEM.
#[derive(Clone)]
pub struct NodeTls {
    pub cert_pem: String,
    pub key_pem: SecretString,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").field("members", &self.members.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// The CA of cluster `cluster_id` (created at `created_at`) and, for each of
    /// `members`, the certificate of the `renew_every` window `now` falls in, all
    /// derived from the master key.
    pub fn issue(
        master: &herd_core::crypto::MasterKey,
        cluster_id: Uuid,
        created_at: chrono::DateTime<chrono::Utc>,
        members: &[NodeSpec],
        now: chrono::DateTime<chrono::Utc>,
        renew_every: chrono::Duration,
    ) -> Result<Self, herd_core::pki::PkiError> {
        let ca = herd_core::pki::ClusterCa::derive(master, cluster_id, created_at)?;
        let members = members
            .iter()
            .map(|m| {
                let names = std::slice::from_ref(&m.name);
                let cert = ca.issue_node(master, m.node_id, names, &source_addresses(m.address), now, renew_every)?;
                Ok((m.name.clone(), NodeTls { cert_pem: cert.cert_pem, key_pem: cert.key_pem }))
            })
            .collect::<Result<_, herd_core::pki::PkiError>>()?;
        let herd = ca.issue_control_plane(master, cluster_id, now, renew_every)?;
        let control_plane = NodeTls { cert_pem: herd.cert_pem, key_pem: herd.key_pem };
        let renew_at = herd_core::pki::renew_at(created_at, now, renew_every)?;
        Ok(Self { ca_pem: ca.certificate_pem().to_owned(), members, control_plane, renew_at })
    }

    pub fn member(&self, name: &str) -> Option<&NodeTls> {
        self.members.get(name)
    }
}

/// The addresses a node's certificate names: its own, and on a loopback host also
/// the one its outgoing connections come from (between loopback addresses the kernel
/// picks 127.0.0.1 as the source), which etcd checks a peer's certificate against.
fn source_addresses(addr: std::net::IpAddr) -> Vec<std::net::IpAddr> {
    let source = match addr {
        std::net::IpAddr::V4(v4) if v4.is_loopback() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_loopback() => std::net::Ipv6Addr::LOCALHOST.into(),
        other => other,
    };
    if source == addr { vec![addr] } else { vec![addr, source] }
}

/// Passwords the cluster runs with. Generated once per cluster, stored encrypted.
#[derive(Clone)]
pub struct ClusterSecrets {
    pub superuser: SecretString,
    pub replication: SecretString,
    pub admin_user: String,
    pub admin_password: SecretString,
    /// The password of Patroni's REST API (user [`PATRONI_API_USER`]), for its unsafe
    /// endpoints; derived from the master key ([`PATRONI_API_PURPOSE`]).
    pub patroni_api: SecretString,
}

/// Who Herd is to Patroni's REST API: its own user, never a database role.
pub const PATRONI_API_USER: &str = "herd";
/// `MasterKey::derive_token` purpose of a cluster's Patroni REST password.
pub const PATRONI_API_PURPOSE: &str = "patroni-rest-api";

impl std::fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSecrets").field("admin_user", &self.admin_user).finish_non_exhaustive()
    }
}

/// Patroni timing; the defaults are the fast profile for loopback hosts.
#[derive(Debug, Clone, Copy)]
pub struct HaTiming {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
}

impl HaTiming {
    /// For loopback hosts and fast local networks: a dead primary is replaced within
    /// about ttl + loop_wait = 6 s.
    pub const FAST: HaTiming = HaTiming { ttl: 5, loop_wait: 1, retry_timeout: 2 };
    /// Patroni's own defaults, for cloud servers where a DCS hiccup must not demote.
    pub const SAFE: HaTiming = HaTiming { ttl: 30, loop_wait: 10, retry_timeout: 10 };

    /// Patroni's rule: the leader must be able to retry the DCS twice and still renew
    /// its key within one ttl, or a slow DCS demotes a healthy primary.
    pub fn validate(&self) -> Result<(), String> {
        if self.loop_wait < 1 || self.retry_timeout < 1 {
            return Err("loop_wait and retry_timeout must be at least 1 second".into());
        }
        if self.ttl > 3600 || self.loop_wait > 600 || self.retry_timeout > 600 {
            return Err("ttl must be at most 3600 s, loop_wait and retry_timeout at most 600 s".into());
        }
        if self.loop_wait + 2 * self.retry_timeout > self.ttl {
            return Err(format!(
                "loop_wait + 2 * retry_timeout must not exceed ttl ({} + 2 * {} > {})",
                self.loop_wait, self.retry_timeout, self.ttl
            ));
        }
        Ok(())
    }
}

impl Default for HaTiming {
    fn default() -> Self {
        Self::FAST
    }
}

#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub cluster_id: Uuid,
    /// DNS label; with the id it names the Patroni scope and etcd cluster token.
    pub name: String,
    /// Datastore version (`15`).
    pub version: String,
    /// Debian packages every node needs (from the datastore version).
    pub packages: Vec<String>,
    pub members: Vec<NodeSpec>,
    pub synchronous: bool,
    /// With `synchronous`: refuse writes rather than run without a synchronous standby.
    pub synchronous_strict: bool,
    /// A replica further behind than this (bytes) is not promoted automatically.
    pub maximum_lag_on_failover: u64,
    /// Where role changes are reported; None: Herd learns them by polling only.
    pub callback: Option<Callback>,
    /// User parameters, already validated (names are `[a-z][a-z0-9_.]*`).
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub secrets: ClusterSecrets,
    pub tls: ClusterTls,
    pub timing: HaTiming,
    /// Continuous WAL archiving and backups into this repository; None: no backups.
    pub backup: Option<BackupConfig>,
    /// Bootstrap the cluster from another cluster's backup instead of initdb.
    pub restore: Option<RestoreSource>,
    /// The newest timeline Herd has seen in this cluster (0: none). A forced
    /// promotion picks a timeline above it, whatever its candidate knows.
    pub newest_timeline: i64,
}

impl ClusterSpec {
    /// The OS user the cluster's daemons run as where its provider made one (its
    /// members share it: they write one backup stanza).
    pub fn service_user(&self) -> Option<&str> {
        self.members.iter().find_map(|m| m.service_user.as_deref())
    }
}

/// A pgBackRest repository.
#[derive(Clone)]
pub enum BackupRepo {
    /// A directory every node can write as the database user: on loopback hosts, a
    /// directory of the control-plane host (they share its filesystem).
    Posix { path: String },
    /// An S3 bucket (AWS or compatible), through pgBackRest's own S3 client.
    S3 {
        bucket: String,
        /// `s3.amazonaws.com` or `127.0.0.1:9000`; host[:port], no scheme.
        endpoint: String,
        region: String,
        /// Prefix inside the bucket.
        path: String,
        key_id: String,
        secret: SecretString,
        /// Path-style URLs (needed by most S3-compatible servers).
        path_style: bool,
        /// Verify the endpoint's TLS certificate (pgBackRest speaks only https to S3).
        verify_tls: bool,
        /// CA file to verify it with instead of the system's trust store; an absolute
        /// path valid on the control-plane host and on every node.
        ca_file: Option<String>,
    },
}

impl std::fmt::Debug for BackupRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Posix { path } => f.debug_struct("Posix").field("path", path).finish(),
            Self::S3 { bucket, endpoint, path, ca_file, .. } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("endpoint", endpoint)
                .field("path", path)
                .field("ca_file", ca_file)
                .finish_non_exhaustive(),
        }
    }
}

/// Where a cluster archives: the repository and its stanza (one per cluster, named
/// after the cluster id so it outlives the cluster and is never reused).
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub repo: BackupRepo,
    pub stanza: String,
    /// The passphrase the stanza's files are encrypted with (pgBackRest
    /// aes-256-cbc), derived from the master key for this stanza; None for a stanza
    /// created before Herd encrypted backups.
    pub cipher: Option<SecretString>,
}

/// What a new cluster is restored from.
#[derive(Debug, Clone)]
pub struct RestoreSource {
    /// The source cluster's repository and stanza (with `snapshot`: where the WAL
    /// the snapshot needs to become consistent is archived).
    pub from: BackupConfig,
    /// A backup label (`20261122-120000F`); None: the latest.
    pub set: Option<String>,
    /// Recover up to this time (exclusive of later commits); None: to the end of WAL.
    pub target_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Bootstrap from a volume snapshot instead of a pgBackRest backup (then `set`
    /// and `target_time` are None: recovery stops where the snapshot is consistent).
    pub snapshot: Option<SnapshotSource>,
}

/// A volume snapshot a new cluster starts from: one member's volume was created
/// from it and that member bootstraps the cluster (the others clone from it).
#[derive(Debug, Clone)]
pub struct SnapshotSource {
    /// The member whose volume was created from the snapshot.
    pub node_id: Uuid,
    /// The source cluster's name: its data directory on the volume is
    /// `<version>/<source_name>` (the layout's data parent).
    pub source_name: String,
    pub label: SnapshotLabel,
}

/// What ending an online backup returned (`pg_backup_stop`) for a volume snapshot
/// taken while it was held open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotLabel {
    /// WAL position where the backup started and where it became consistent (`0/3000028`).
    pub start_lsn: String,
    pub stop_lsn: String,
    /// Contents of the `backup_label` file a restore writes into the data directory.
    pub backup_label: String,
    /// Contents of `tablespace_map`; empty without tablespaces.
    pub tablespace_map: String,
}

/// An online backup held open on a node (`pg_backup_start`, in a database session
/// of its own) while the node's data volume is snapshotted. Dropping it without
/// [`HeldBackup::finish`] ends the session, which aborts the backup.
#[async_trait]
pub trait HeldBackup: Send {
    /// Ends the backup (`pg_backup_stop`, waiting until the WAL it needs is archived).
    async fn finish(self: Box<Self>) -> Result<SnapshotLabel, ManagerError>;
}

/// The backup types are the domain's (`full`, `diff`, `incr`), one enum from the
/// API's request to pgBackRest's `--type`.
pub use herd_core::status::BackupType;

pub use herd_core::access::{DbPrivilege, Grants};

/// A managed database as the primary should have it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedDatabase {
    pub name: String,
    /// None: the cluster's admin role.
    pub owner: Option<String>,
    pub encoding: String,
    pub locale: Option<String>,
}

/// A managed login role as the primary should have it.
pub struct ManagedUser {
    pub name: String,
    pub password: secrecy::SecretString,
    /// None: no limit.
    pub connection_limit: Option<i32>,
    pub roles: Vec<String>,
}

/// One backup as the repository describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub label: String,
    pub kind: BackupType,
    /// Size of the database the backup covers, bytes.
    pub size_bytes: i64,
    /// What the backup added to the repository (compressed, deduplicated), bytes.
    pub repo_size_bytes: i64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub wal_start: String,
    pub wal_stop: String,
}

/// Earliest and latest restorable points of a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryWindow {
    /// The end of the oldest backup (consistency is reached there).
    pub earliest: chrono::DateTime<chrono::Utc>,
    /// The newest commit timestamp known to be archived (or the end of the newest
    /// backup when nothing newer is archived).
    pub latest: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHealth {
    pub name: String,
    pub role: NodeRole,
    /// Patroni's state: `running`, `streaming`, `starting`, `stopped`, ...
    pub state: String,
    pub timeline: Option<i64>,
    pub lag_bytes: Option<i64>,
    /// PostgreSQL runs with settings that take effect only after a restart.
    pub pending_restart: bool,
    /// Recorded by the HA agent as a synchronous standby (Patroni's `/sync` key): in
    /// synchronous mode only such a member is promoted automatically.
    pub sync_standby: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterHealth {
    /// Every member Patroni reports, plus members it does not know (role Unknown).
    pub nodes: Vec<NodeHealth>,
    pub leader: Option<String>,
}

impl ClusterHealth {
    /// A leader runs and every other member streams from it.
    pub fn is_converged(&self, members: usize) -> bool {
        self.leader.is_some()
            && self.nodes.len() == members
            && self.nodes.iter().all(|n| match n.role {
                NodeRole::Primary => n.state == "running",
                NodeRole::Replica => n.state == "streaming",
                NodeRole::Unknown => false,
            })
    }

    /// A streaming replica is recorded as synchronous standby, so the primary's loss
    /// is covered by an automatic failover without losing acknowledged commits. In
    /// synchronous mode a cluster with replicas is only healthy then: right after a
    /// promotion the new primary has none for a few seconds, and if it dies then, no
    /// replica is allowed to take over.
    pub fn has_sync_standby(&self) -> bool {
        self.nodes.iter().any(|n| n.sync_standby && n.role == NodeRole::Replica && n.state == "streaming")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// May succeed if retried (SSH not up yet, a lock held, a member not elected yet).
    #[error("{0}")]
    Transient(String),
    /// Will not succeed on retry; `code` is stable (`package_install_failed`, ...).
    #[error("{message}")]
    Permanent { code: FaultCode, message: String },
}

impl ManagerError {
    pub fn permanent(code: FaultCode, message: impl Into<String>) -> Self {
        Self::Permanent { code, message: message.into() }
    }

    pub fn code(&self) -> FaultCode {
        match self {
            Self::Transient(_) => FaultCode::DatastoreTransient,
            Self::Permanent { code, .. } => *code,
        }
    }
}
