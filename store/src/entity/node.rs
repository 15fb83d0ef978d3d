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
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
