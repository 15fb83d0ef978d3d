//! Where everything of one node lives on its server: the pg-common layout of the
//! Patroni-on-Debian design, under the server's root prefix (`/` on a VM, the
//! server root on a loopback host, which shares this machine's filesystem).

use crate::{ClusterSpec, ManagerError, NodeSpec};
use herd_core::faults::FaultCode;
use herd_providers::AttachmentKind;
use std::path::{Path, PathBuf};

/// Linux limit for a unix socket path (`sun_path` minus the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
pub const PG_PORT: u16 = 5432;
pub const PATRONI_PORT: u16 = 8008;
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
    pub version: String,
    pub cluster: String,
    /// The OS user every daemon runs as when the provider made one (loopback hosts);
    /// None: the packages' `postgres` (and `etcd` where it exists).
    pub service_user: Option<String>,
    /// Home of the postgres user (`/var/lib/postgresql`); a block-device volume is
    /// mounted here.
    pub pg_home: String,
    /// Parent of the data directory, owned by postgres (Patroni's initdb creates the
    /// data directory itself).
    pub data_parent: String,
    pub data_dir: String,
    pub log_dir: String,
    pub pg_log_name: String,
    pub patroni_log: String,
    pub patroni_conf: String,
    pub patroni_pid: String,
    pub socket_dir: String,
    pub pgpass: String,
    pub etcd_dir: String,
    pub etcd_data: String,
    pub etcd_conf: String,
    pub etcd_log_dir: String,
    pub etcd_log: String,
    pub etcd_pid: String,
    pub run_dir: String,
    pub boot_dir: String,
    pub etcd_entry: String,
    pub patroni_entry: String,
    /// Present while Patroni is stopped on purpose (`stop_ha`): the boot list and
    /// `ensure_running` leave it stopped. Outside `boot.d`, so it is never run.
    pub patroni_hold: String,
    /// The `on_role_change` callback script and the file holding its bearer token.
    pub callback_script: String,
    pub callback_token: String,
    /// TLS: the cluster's CA (what peers are verified against), this member's
    /// certificate, and its key (0600 postgres). Outside the data directory, so a
    /// snapshot or a restored volume never carries another member's key.
    pub tls_ca: String,
    pub tls_cert: String,
    pub tls_key: String,
    /// The same certificate and key for etcd, which runs as its own user.
    pub etcd_tls_cert: String,
    pub etcd_tls_key: String,
    /// pgBackRest's config (0600 postgres: it may hold S3 keys) and its working
    /// directories, all under the root so loopback nodes never share a lock or log.
    pub pgbackrest_conf: String,
    pub pgbackrest_log: String,
    pub pgbackrest_spool: String,
    pub pgbackrest_lock: String,
    /// Restore from a volume snapshot: the snapshot's data directory is moved here
    /// (beside the data directory, on the volume) by `prepare`, and into place by the
    /// bootstrap; the marker (named after this cluster's id) says the move was done,
    /// so a later `prepare` never moves this cluster's own data directory.
    pub snapshot_staging: String,
    pub snapshot_marker: String,
    /// The snapshot's `backup_label` and `tablespace_map` (0600 postgres, outside the
    /// data directory), copied into it by the bootstrap.
    pub snapshot_backup_label: String,
    pub snapshot_tablespace_map: String,
    pub bin_dir: String,
    /// Block device to format and mount at `pg_home`, when the volume is one.
    pub device: Option<String>,
    /// Directory volume holding the data directory, when the volume is one.
    pub volume_dir: Option<String>,
}

/// Patroni scope (and etcd key prefix): the cluster name plus a short id, so two
/// clusters with the same name never share DCS keys.
pub fn scope(cluster: &ClusterSpec) -> String {
    format!("{}-{}", cluster.name, &cluster.cluster_id.simple().to_string()[..8])
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn path_str(p: PathBuf) -> Result<String, ManagerError> {
    p.into_os_string().into_string().map_err(|p| {
        ManagerError::permanent(FaultCode::InvalidPath, format!("path is not UTF-8: {}", Path::new(&p).display()))
    })
}

fn valid_user(u: &str) -> bool {
    let mut b = u.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        && u.len() <= 32
}

impl Layout {
    /// The OS user PostgreSQL, Patroni and pgBackRest run as.
    pub fn pg_user(&self) -> &str {
        self.service_user.as_deref().unwrap_or("postgres")
    }

    /// `user:group` of the files only those daemons may read.
    pub fn pg_owner(&self) -> String {
        format!("{0}:{0}", self.pg_user())
    }

    pub fn new(cluster: &ClusterSpec, node: &NodeSpec) -> Result<Self, ManagerError> {
        let version = cluster.version.trim();
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidVersion,
                format!("PostgreSQL version {:?} is not a major version number", cluster.version),
            ));
        }
        if !is_dns_label(&cluster.name) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidClusterName,
                format!("cluster name {:?} is not a DNS label", cluster.name),
            ));
        }
        if !is_dns_label(&node.name) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidNodeName,
                format!("node name {:?} is not a DNS label", node.name),
            ));
        }
        if let Some(u) = &node.service_user
            && !valid_user(u)
        {
            return Err(ManagerError::permanent(
                FaultCode::MissingServiceUser,
                format!("service user {u:?} is not a valid user name"),
            ));
        }
        let root = node.root_prefix.clone();
        if !root.is_absolute() {
            return Err(ManagerError::permanent(
                FaultCode::InvalidPath,
                format!("root prefix {} is not absolute", root.display()),
            ));
        }
        let (v, c) = (version.to_owned(), cluster.name.clone());
        let at = |rel: &str| path_str(root.join(rel));
        let pg_home = at("var/lib/postgresql")?;
        let (data_parent, device, volume_dir) = match &node.volume {
            None => (format!("{pg_home}/{v}"), None, None),
            Some(vol) => match vol.kind {
                AttachmentKind::Directory => {
                    let dir = Path::new(&vol.path);
                    if !dir.is_absolute() {
                        return Err(ManagerError::permanent(
                            FaultCode::InvalidVolume,
                            format!("volume directory {:?} is not absolute", vol.path),
                        ));
                    }
                    (path_str(dir.join(&v))?, None, Some(vol.path.clone()))
                }
                AttachmentKind::Device => (format!("{pg_home}/{v}"), Some(vol.path.clone()), None),
            },
        };
        let run_dir = at("run/herd")?;
        let boot_dir = at(herd_providers::local::BOOT_DIR)?;
        let layout = Self {
            data_dir: format!("{data_parent}/{c}"),
            snapshot_staging: format!("{data_parent}/.herd-snapshot"),
            snapshot_marker: format!("{data_parent}/.herd-snapshot-{}.moved", cluster.cluster_id.simple()),
            snapshot_backup_label: at(&format!("etc/patroni/{v}-{c}.backup_label"))?,
            snapshot_tablespace_map: at(&format!("etc/patroni/{v}-{c}.tablespace_map"))?,
            data_parent,
            log_dir: at("var/log/postgresql")?,
            pg_log_name: format!("postgresql-{v}-{c}.log"),
            patroni_log: at(&format!("var/log/postgresql/patroni-{v}-{c}.log"))?,
            patroni_conf: at(&format!("etc/patroni/{v}-{c}.yml"))?,
            patroni_pid: format!("{run_dir}/patroni-{v}-{c}.pid"),
            socket_dir: at("var/run/postgresql")?,
            pgpass: format!("{pg_home}/{v}-{c}.pgpass"),
            etcd_dir: at("etc/etcd")?,
            etcd_data: at(&format!("var/lib/etcd/{c}"))?,
            etcd_conf: at(&format!("etc/etcd/etcd-{c}.yml"))?,
            etcd_log_dir: at("var/log/etcd")?,
            etcd_log: at(&format!("var/log/etcd/etcd-{c}.log"))?,
            etcd_pid: format!("{run_dir}/etcd-{c}.pid"),
            etcd_entry: format!("{boot_dir}/20-etcd-{c}"),
            patroni_entry: format!("{boot_dir}/30-patroni-{v}-{c}"),
            patroni_hold: at(&format!("etc/herd/held/30-patroni-{v}-{c}"))?,
            callback_script: at(&format!("etc/patroni/{v}-{c}-on-role-change.py"))?,
            callback_token: at(&format!("etc/patroni/{v}-{c}.callback-token"))?,
            tls_ca: at(&format!("etc/patroni/{v}-{c}.ca.crt"))?,
            tls_cert: at(&format!("etc/patroni/{v}-{c}.crt"))?,
            tls_key: at(&format!("etc/patroni/{v}-{c}.key"))?,
            etcd_tls_cert: at(&format!("etc/etcd/etcd-{c}.crt"))?,
            etcd_tls_key: at(&format!("etc/etcd/etcd-{c}.key"))?,
            pgbackrest_conf: at(&format!("etc/pgbackrest/{v}-{c}.conf"))?,
            pgbackrest_log: at("var/log/pgbackrest")?,
            pgbackrest_spool: at("var/spool/pgbackrest")?,
            pgbackrest_lock: at("var/spool/pgbackrest/lock")?,
            run_dir,
            boot_dir,
            bin_dir: format!("/usr/lib/postgresql/{v}/bin"),
            pg_home,
            device,
            volume_dir,
            root,
            version: v,
            cluster: c,
            service_user: node.service_user.clone(),
        };
        let socket = format!("{}/.s.PGSQL.{PG_PORT}", layout.socket_dir);
        if socket.len() > MAX_SOCKET_PATH {
            return Err(ManagerError::permanent(
                FaultCode::RootPrefixTooLong,
                format!(
                    "PostgreSQL's socket path {socket} is {} bytes, over the {MAX_SOCKET_PATH}-byte limit \
                     for unix sockets: use a shorter state directory",
                    socket.len()
                ),
            ));
        }
        Ok(layout)
    }

    /// Whether this is a whole machine (a VM), rather than a loopback host that
    /// shares this machine with others.
    pub fn is_whole_machine(&self) -> bool {
        self.root == Path::new("/")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{ClusterSecrets, HaTiming, SshTarget, VolumeMount};
    use secrecy::SecretString;
    use std::net::{IpAddr, Ipv4Addr};
    use uuid::Uuid;

    pub(crate) fn spec(root: &str, volume: Option<VolumeMount>) -> (ClusterSpec, NodeSpec) {
        let address = IpAddr::V4(Ipv4Addr::new(127, 78, 0, 2));
        let node = NodeSpec {
            node_id: Uuid::nil(),
            name: "orders-0".into(),
            address,
            ssh: SshTarget {
                address,
                port: 22,
                user: "root".into(),
                private_key: SecretString::from("k"),
                host_key: None,
            },
            root_prefix: root.into(),
            service_user: None,
            volume,
            tags: Default::default(),
            joins_existing: false,
        };
        let cluster = ClusterSpec {
            cluster_id: Uuid::nil(),
            name: "orders".into(),
            version: "15".into(),
            packages: vec![],
            members: vec![node.clone()],
            synchronous: false,
            synchronous_strict: false,
            maximum_lag_on_failover: 1 << 20,
            callback: None,
            parameters: Default::default(),
            secrets: ClusterSecrets {
                superuser: SecretString::from("s"),
                replication: SecretString::from("r"),
                admin_user: "admin".into(),
                admin_password: SecretString::from("a"),
                patroni_api: SecretString::from("p"),
            },
            tls: crate::ClusterTls::issue(
                &herd_core::crypto::MasterKey::generate(),
                Uuid::nil(),
                chrono::Utc::now(),
                std::slice::from_ref(&node),
                chrono::Utc::now(),
                herd_core::pki::DEFAULT_RENEW_EVERY,
            )
            .unwrap(),
            timing: HaTiming::default(),
            backup: None,
            restore: None,
            newest_timeline: 0,
        };
        (cluster, node)
    }

    #[test]
    fn vm_layout_is_pg_common() {
        let (c, n) = spec("/", None);
        let l = Layout::new(&c, &n).unwrap();
        assert_eq!(l.data_dir, "/var/lib/postgresql/15/orders");
        assert_eq!(l.patroni_conf, "/etc/patroni/15-orders.yml");
        assert_eq!(l.socket_dir, "/var/run/postgresql");
        assert_eq!(l.etcd_data, "/var/lib/etcd/orders");
        assert_eq!(l.patroni_entry, "/etc/herd/boot.d/30-patroni-15-orders");
        assert_eq!(l.patroni_hold, "/etc/herd/held/30-patroni-15-orders");
        assert_eq!(l.callback_token, "/etc/patroni/15-orders.callback-token");
        assert_eq!(l.pgbackrest_conf, "/etc/pgbackrest/15-orders.conf");
        assert_eq!(l.pgbackrest_lock, "/var/spool/pgbackrest/lock");
        assert_eq!(l.snapshot_staging, "/var/lib/postgresql/15/.herd-snapshot");
        assert_eq!(l.snapshot_marker, "/var/lib/postgresql/15/.herd-snapshot-00000000000000000000000000000000.moved");
        assert_eq!(l.snapshot_backup_label, "/etc/patroni/15-orders.backup_label");
        assert!(l.is_whole_machine());
    }

    #[test]
    fn loopback_layout_is_under_the_root_and_volume() {
        let vol = VolumeMount { kind: AttachmentKind::Directory, path: "/srv/h/servers/s1/mnt/vol-1".into() };
        let (c, n) = spec("/srv/h/servers/s1", Some(vol));
        let l = Layout::new(&c, &n).unwrap();
        assert_eq!(l.data_dir, "/srv/h/servers/s1/mnt/vol-1/15/orders");
        assert_eq!(l.snapshot_staging, "/srv/h/servers/s1/mnt/vol-1/15/.herd-snapshot");
        assert_eq!(l.snapshot_tablespace_map, "/srv/h/servers/s1/etc/patroni/15-orders.tablespace_map");
        assert_eq!(l.socket_dir, "/srv/h/servers/s1/var/run/postgresql");
        assert_eq!(l.etcd_entry, "/srv/h/servers/s1/etc/herd/boot.d/20-etcd-orders");
        assert_eq!(l.device, None);
        assert!(!l.is_whole_machine());

        let dev = VolumeMount { kind: AttachmentKind::Device, path: "/dev/nvme1n1".into() };
        let (c, n) = spec("/", Some(dev));
        let l = Layout::new(&c, &n).unwrap();
        assert_eq!(l.data_dir, "/var/lib/postgresql/15/orders");
        assert_eq!(l.device.as_deref(), Some("/dev/nvme1n1"));
    }

    #[test]
    fn bad_input_is_refused() {
        let (mut c, n) = spec("/", None);
        c.version = "15; rm".into();
        assert_eq!(Layout::new(&c, &n).unwrap_err().code(), "invalid_version");
        let (mut c, n) = spec("/", None);
        c.name = "Orders_1".into();
        assert_eq!(Layout::new(&c, &n).unwrap_err().code(), "invalid_cluster_name");
        let long = format!("/{}", "x".repeat(80));
        let (c, n) = spec(&long, None);
        assert_eq!(Layout::new(&c, &n).unwrap_err().code(), "root_prefix_too_long");
    }
}
