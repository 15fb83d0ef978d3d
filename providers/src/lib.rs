//! Where Herd's servers and volumes come from.
//!
//! A [`Provider`] creates servers (machines Herd reaches over SSH), volumes (data disks)
//! and snapshots. Two implementations exist: [`local::LocalProvider`] (loopback hosts on
//! this machine, the embedded default and the test bed) and [`ec2::Ec2Provider`].
//! [`build_providers`] turns `[providers.*]` settings into a [`Providers`] registry.
//!
//! Every `create_*` takes an idempotency token (the task step's id): calling it again
//! with the same token returns the resource made the first time, never a second one.
//! Every `delete_*` succeeds when the resource is already gone, so retried steps converge.

pub mod ec2;
pub mod hostkey;
pub mod local;
mod registry;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herd_core::faults::FaultCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

pub use herd_core::config::{Ec2ProviderSettings, FlavorSettings, LocalProviderSettings, ProvidersSettings};
pub use hostkey::{HostKeyError, verify_host_key};
pub use registry::{Providers, build_providers, local_root};

/// Tag keys Herd puts on the resources it creates.
pub const TAG_CLUSTER: &str = "herd:cluster";
pub const TAG_NODE: &str = "herd:node";
/// The idempotency token a resource was created with (EC2 lookups use it).
pub const TAG_TOKEN: &str = "herd:token";

/// Typed provider failures; the task layer decides from the variant whether to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The server, volume or snapshot does not exist (or the name is unknown).
    #[error("not found: {0}")]
    NotFound(String),
    /// Out of capacity or over a quota: retrying later or elsewhere may succeed.
    #[error("capacity or quota exceeded: {0}")]
    Capacity(String),
    /// A temporary failure (throttling, network, 5xx, a timeout waiting for a state):
    /// retry the same call with the same token.
    #[error("temporary provider failure: {0}")]
    Transient(String),
    /// The resource is in a state that forbids the call (e.g. deleting an attached
    /// volume); it will not succeed until something else changes.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The provider cannot do this at all (e.g. snapshots on a provider without them).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Bad input or configuration, or an unexpected error; retrying will not help.
    #[error("{0}")]
    Permanent(String),
}

impl ProviderError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Capacity(_))
    }

    /// A stable machine-readable code for task error records and API problems.
    pub fn code(&self) -> FaultCode {
        match self {
            Self::NotFound(_) => FaultCode::ProviderNotFound,
            Self::Capacity(_) => FaultCode::ProviderCapacity,
            Self::Transient(_) => FaultCode::ProviderTransient,
            Self::Conflict(_) => FaultCode::ProviderConflict,
            Self::Unsupported(_) => FaultCode::ProviderUnsupported,
            Self::Permanent(_) => FaultCode::ProviderError,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Local,
    Ec2,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ec2 => "ec2",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub volumes: bool,
    pub snapshots: bool,
    pub power_control: bool,
}

/// What the API shows about a configured provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub name: String,
    pub kind: ProviderKind,
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flavor {
    pub id: String,
    pub vcpus: u32,
    pub ram_mb: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSpec {
    /// Human-readable name (EC2 `Name` tag); not required to be unique.
    pub name: String,
    pub flavor: String,
    /// Machine image (the datastore version's AMI on EC2); loopback hosts share the
    /// machine's OS and ignore it.
    pub image: Option<String>,
    /// The OpenSSH public key line Herd logs in with.
    pub authorized_key: String,
    /// Labels such as [`TAG_CLUSTER`] and [`TAG_NODE`].
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    /// Being created or started (EC2 `pending`).
    Building,
    Running,
    /// Powered off (EC2 `stopping` and `stopped`).
    Stopped,
    /// Should be running but is not (a loopback host whose sshd died).
    Error,
    /// Terminated (EC2 `shutting-down`, `terminated`).
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: String,
    pub name: String,
    pub status: ServerStatus,
    /// Where SSH (and every datastore port) is reached; None only while an EC2
    /// instance has no address (terminated).
    pub address: Option<IpAddr>,
    pub login_user: String,
    pub ssh_port: u16,
    /// The server's SSH host key as an OpenSSH public key line, when the provider
    /// knows it (always for local; None on EC2, where it is learnt on first connect).
    pub host_key: Option<String>,
    /// Directory every server-side path is relative to: the server root for a
    /// loopback host (which shares the machine's filesystem), `/` on EC2.
    pub root_prefix: PathBuf,
    /// The OS user the datastore's daemons run as on this server, when the provider
    /// made one (a loopback host: one user per cluster); None: the packages' own
    /// (`postgres`, `etcd`), as on a VM of its own.
    #[serde(default)]
    pub service_user: Option<String>,
    pub flavor: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    pub size_gb: u32,
    /// Server the volume is for: EC2 creates it in that instance's availability zone.
    pub server_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeStatus {
    Creating,
    Available,
    InUse,
    Deleting,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub id: String,
    pub name: String,
    pub size_gb: u32,
    pub status: VolumeStatus,
    /// Server the volume is attached to.
    pub attached_to: Option<String>,
    pub availability_zone: Option<String>,
    /// Snapshot it was created from.
    pub snapshot_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentKind {
    /// A block device (EC2): format and mount it. On Nitro instances the kernel names
    /// it `/dev/nvmeXn1` whatever was requested; its NVMe serial is the volume id
    /// without the dash.
    Device,
    /// A directory ready for files (local): use it as is.
    Directory,
}

/// Where an attached volume appears on its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAttachment {
    pub volume_id: String,
    pub server_id: String,
    pub kind: AttachmentKind,
    /// Device path (`/dev/sdf`) or absolute directory path.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSpec {
    pub name: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    Pending,
    Completed,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub size_gb: u32,
    pub status: SnapshotStatus,
    pub created_at: Option<DateTime<Utc>>,
}

/// A source of servers, volumes and snapshots.
///
/// Contract shared by every implementation:
/// - `create_*` with a token already used returns the resource made with it;
/// - `delete_*`/`detach_volume` of something already gone succeed;
/// - state-changing calls return once the change is done (server running/stopped,
///   volume available/attached, snapshot completed) or fail with `Transient` when the
///   provider's wait timeout passes, so the caller can retry the same call;
/// - `get_*` of an unknown id is `NotFound`.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The configured name (`local`, `ec2`).
    fn name(&self) -> &str;
    fn kind(&self) -> ProviderKind;
    fn capabilities(&self) -> Capabilities;
    /// The effective configuration, safe to show an administrator (no secrets).
    fn describe(&self) -> serde_json::Value;

    fn info(&self) -> ProviderInfo {
        ProviderInfo { name: self.name().to_owned(), kind: self.kind(), capabilities: self.capabilities() }
    }

    async fn flavors(&self) -> Result<Vec<Flavor>, ProviderError>;

    /// Creates a server and returns once it is running and reachable over SSH.
    async fn create_server(&self, spec: &ServerSpec, token: &str) -> Result<ServerInfo, ProviderError>;
    async fn get_server(&self, id: &str) -> Result<ServerInfo, ProviderError>;
    /// Servers (not deleted) carrying every one of `tags`; an empty map lists all of
    /// Herd's servers. For cleaning up after a create whose answer was lost.
    async fn list_servers(&self, tags: &BTreeMap<String, String>) -> Result<Vec<ServerInfo>, ProviderError>;
    async fn start_server(&self, id: &str) -> Result<ServerInfo, ProviderError>;
    /// `force`: pull the plug (every process dies at once) instead of shutting down.
    async fn stop_server(&self, id: &str, force: bool) -> Result<ServerInfo, ProviderError>;
    async fn delete_server(&self, id: &str) -> Result<(), ProviderError>;

    async fn create_volume(&self, spec: &VolumeSpec, token: &str) -> Result<VolumeInfo, ProviderError>;
    async fn get_volume(&self, id: &str) -> Result<VolumeInfo, ProviderError>;
    /// Attaching a volume already attached to that server returns its attachment.
    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<VolumeAttachment, ProviderError>;
    async fn detach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError>;
    /// Fails with `Conflict` while the volume is attached.
    async fn delete_volume(&self, id: &str) -> Result<(), ProviderError>;

    async fn snapshot_volume(
        &self,
        volume_id: &str,
        spec: &SnapshotSpec,
        token: &str,
    ) -> Result<SnapshotInfo, ProviderError>;
    async fn get_snapshot(&self, id: &str) -> Result<SnapshotInfo, ProviderError>;
    /// `spec.size_gb` smaller than the snapshot is raised to the snapshot's size.
    async fn create_volume_from_snapshot(
        &self,
        snapshot_id: &str,
        spec: &VolumeSpec,
        token: &str,
    ) -> Result<VolumeInfo, ProviderError>;
    async fn delete_snapshot(&self, id: &str) -> Result<(), ProviderError>;

    /// Brings servers whose desired state is running back up after a restart of Herd
    /// or of the machine; returns the ids it restarted. No-op where the cloud does it.
    async fn recover(&self) -> Result<Vec<String>, ProviderError> {
        Ok(Vec::new())
    }
}

/// Every create needs a token: without one a retry could not find what it made.
pub(crate) fn check_token(token: &str) -> Result<(), ProviderError> {
    if token.trim().is_empty() {
        return Err(ProviderError::Permanent("idempotency token must not be empty".into()));
    }
    Ok(())
}

/// Turns a blocking task's join failure (a panic) into a provider error.
pub(crate) fn join_error(e: tokio::task::JoinError) -> ProviderError {
    ProviderError::Permanent(format!("provider task failed: {e}"))
}
