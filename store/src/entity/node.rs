use herd_core::status::{NodeRole, NodeStatus};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub cluster_id: Uuid,
    pub name: String,
    pub ordinal: i32,
    pub role: NodeRole,
    pub status: NodeStatus,
    /// The provider's id for the server.
    pub server_ref: Option<String>,
    pub volume_id: Option<Uuid>,
    pub address: Option<String>,
    /// The server's SSH host key (OpenSSH public line), recorded at create.
    pub host_key: Option<String>,
    pub lag_bytes: Option<i64>,
    pub timeline: Option<i64>,
    pub last_seen_at: Option<DateTimeUtc>,
    /// Never promoted (Patroni `nofailover`).
    pub no_failover: bool,
    /// 0–100; higher is preferred when Herd picks a replica to promote.
    pub priority: i32,
    /// The HA agent's state of the member (`running`, `streaming`, `stopped`, ...).
    pub state: Option<String>,
    pub pending_restart: bool,
    /// Recorded by the HA agent as a synchronous standby.
    pub sync_standby: bool,
    /// False after a `stop` action: the reconciler leaves the node's database down.
    pub desired_running: bool,
    /// Added after bootstrap: its DCS member joined the running DCS.
    pub joins_existing: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
