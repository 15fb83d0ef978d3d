//! Clusters, their nodes and history, and the day-2 requests on them.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ActionKind, ClusterStatus, NodeRole, NodeStatus, PowerState, RestoreRequest, TaskDto};

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCluster {
    /// DNS label: lowercase a-z, 0-9 and '-', 1–63, not starting or ending with '-'.
    pub name: String,
    pub datastore: String,
    pub version: String,
    pub flavor: String,
    /// 1–9, default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i64>,
    /// 1–16384, default 10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_gb: Option<i64>,
    /// An existing key; omit to generate one for this cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
    /// Default: the first configured provider (`local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Synchronous replication (RPO 0). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<bool>,
    /// Server parameters, name → string, number or boolean.
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// At least 12 characters; omit to generate one.
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "crate::secret::expose_opt", skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<SecretString>,
    /// Failover policy and HA timing; defaults: the `fast` profile on loopback hosts,
    /// `safe` elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaRequest>,
    /// Failover preferences per node, by ordinal (the first entry is node 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_options: Option<Vec<NodeOptions>>,
    /// Replace a node whose server is gone. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_heal: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksRequest>,
    /// Start from another cluster's backup instead of an empty database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeDto {
    pub id: Uuid,
    pub name: String,
    pub role: NodeRole,
    pub status: NodeStatus,
    /// The HA agent's state of the member: `running`, `streaming`, `stopped`, ...
    pub state: Option<String>,
    pub address: Option<String>,
    /// PostgreSQL timeline (grows by one at each promotion).
    pub timeline: Option<i64>,
    /// Replication lag behind the primary, bytes.
    pub lag_bytes: Option<i64>,
    /// When the HA agent last answered for this node.
    pub last_seen: Option<DateTime<Utc>>,
    /// Never promoted.
    pub no_failover: bool,
    /// 0–100; higher is preferred when Herd picks a replica to promote.
    pub priority: i32,
    /// Settings changed that take effect at the next restart.
    pub pending_restart: bool,
    /// Recorded by Patroni as the synchronous standby (synchronous mode): the replica
    /// an automatic failover promotes without losing an acknowledged commit.
    pub sync_standby: bool,
    /// False after a `stop` action, until `start`.
    pub desired_running: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Endpoints {
    /// libpq multi-host URI that always reaches the primary (it lists every node and
    /// asks for a read-write session), whichever node that is.
    pub primary_uri: Option<String>,
    /// `address:port` of the current primary.
    pub primary_address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Fault {
    /// One of the fault codes (`herd_core::faults::FaultCode`). Kept as text so a client
    /// older than a newly added code still reads the rest.
    #[schema(value_type = herd_core::faults::FaultCode)]
    pub code: String,
    pub message: String,
}

impl Fault {
    /// The code as the enum, when this build knows it.
    pub fn fault_code(&self) -> Option<herd_core::faults::FaultCode> {
        self.code.parse().ok()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterDto {
    pub id: Uuid,
    pub name: String,
    pub status: ClusterStatus,
    pub datastore: String,
    pub version: String,
    pub flavor: String,
    pub provider: String,
    pub volume_gb: i32,
    pub key_id: Uuid,
    pub synchronous: bool,
    pub ha: HaDto,
    pub auto_heal: bool,
    /// Failover webhooks (their secrets are never returned).
    pub hooks: HooksDto,
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub parameters: serde_json::Value,
    /// The pgBackRest repository it archives into, chosen when it was created:
    /// `posix` or `s3`; null when it has none (or was created before Herd recorded it).
    pub backup_repository: Option<String>,
    /// Whether its backups and archived WAL are encrypted (pgBackRest aes-256-cbc,
    /// with a passphrase of the cluster's own that Herd derives and never shows):
    /// true for every cluster with backups created since Herd encrypts them.
    #[serde(default)]
    pub backups_encrypted: bool,
    /// When the workers next renew its nodes' TLS certificates (files rewritten,
    /// PostgreSQL reloaded, no restart); while a failed renewal waits, when it is tried
    /// again. Null until the first build has finished.
    #[serde(default)]
    pub certificates_renew_at: Option<DateTime<Utc>>,
    pub nodes: Vec<NodeDto>,
    pub endpoints: Endpoints,
    /// The cluster's most recent task.
    pub task: Option<TaskDto>,
    pub fault: Option<Fault>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedCluster {
    pub cluster: ClusterDto,
    pub task_id: Uuid,
}

/// The cluster's admin login.
// No `Debug`: it holds the password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Full connection URI with the password; absent until the cluster is reachable.
    /// It asks for `sslmode=verify-full`: give libpq `ca_certificate` as its root
    /// certificate (`sslrootcert=<file>` or `PGSSLROOTCERT`).
    pub uri: Option<String>,
    /// The cluster's CA certificate (PEM), what its servers' certificates verify against.
    pub ca_certificate: String,
}

/// A cluster's certificate authority: every member's PostgreSQL presents a certificate
/// it signed, for the member's address and name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterCa {
    /// PEM; save it and pass it to libpq as `sslrootcert`.
    pub certificate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EventDto {
    pub id: Uuid,
    pub task_id: Option<Uuid>,
    /// `info`, `warn` or `error`.
    pub level: String,
    pub step: Option<String>,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// Failover policy and HA timing. Omitted fields keep their current value (or the
/// profile's, when `profile` is given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaRequest {
    /// `fast` (ttl 5, loop_wait 1, retry_timeout 2: for loopback hosts and fast local
    /// networks) or `safe` (Patroni's defaults 30/10/10: for cloud servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Seconds the primary's leader key lives without renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Seconds between HA loop runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_wait: Option<i64>,
    /// Seconds the DCS and PostgreSQL are retried before a member gives up.
    /// `loop_wait + 2 * retry_timeout <= ttl` is required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_timeout: Option<i64>,
    /// With `synchronous`: refuse writes when no synchronous standby is available,
    /// rather than continue without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synchronous_strict: Option<bool>,
    /// A replica further behind than this (bytes) is never promoted automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_lag_on_failover: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HaDto {
    pub synchronous_strict: bool,
    pub maximum_lag_on_failover: i64,
    pub ttl: i32,
    pub loop_wait: i32,
    pub retry_timeout: i32,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookRequest {
    /// http:// or https:// URL that receives a JSON POST.
    pub url: String,
    /// 16–256 characters; signs each call (`X-Herd-Signature: sha256=<hex HMAC>`).
    #[schema(value_type = String)]
    #[serde(serialize_with = "crate::secret::expose")]
    pub secret: SecretString,
}

/// The whole set of failover hooks; an omitted hook is removed.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HooksRequest {
    /// Called before Herd changes the primary (switchover, failover actions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_failover: Option<HookRequest>,
    /// Called after every change of primary, Herd's or Patroni's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_failover: Option<HookRequest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct HookDto {
    pub url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct HooksDto {
    pub pre_failover: Option<HookDto>,
    pub post_failover: Option<HookDto>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeOptions {
    /// Never promote this node. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_failover: Option<bool>,
    /// 0–100, default 0; higher is preferred when Herd picks a replica to promote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaRequest>,
    /// The complete set of user parameters (omitted ones return to their defaults).
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_heal: Option<bool>,
    /// Replaces every hook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdatedCluster {
    pub cluster: ClusterDto,
    /// The task that pushes the change into the cluster; absent when the change was
    /// Herd's alone (hooks, auto_heal) or changed nothing.
    pub task_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub action: ActionKind,
    /// The node to act on (start, stop, restart, reload: omit for every node;
    /// reinitialize: required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<Uuid>,
    /// The replica to promote (switchover: optional, else the best synchronous or
    /// least-lagging replica; failover: optional, else the most advanced running
    /// replica — newest timeline, then furthest WAL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerRequest {
    pub state: PowerState,
    /// Off only: cut the power instead of a clean shutdown (a crash drill).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNodesRequest {
    /// Replicas to add, 1–8 (at most 9 nodes in all).
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddedNodes {
    pub task_id: Uuid,
    pub nodes: Vec<NodeDto>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNode {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_failover: Option<bool>,
    /// 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdatedNode {
    pub node: NodeDto,
    /// Present when the node's HA configuration is being rewritten.
    pub task_id: Option<Uuid>,
}

/// What a node's HA agent reports when a member's role changes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleCallback {
    /// Member (node) name.
    pub member: String,
    /// Patroni's callback action (`on_role_change`).
    pub action: String,
    /// The member's new role (`primary`/`master`, `replica`, ...).
    pub role: String,
    #[serde(default)]
    pub scope: Option<String>,
}
