use herd_core::status::AccessStatus;
use sea_orm::entity::prelude::*;

/// A database Herd manages in a cluster (desired state; `status` says whether the
/// primary has it).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cluster_databases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub cluster_id: Uuid,
    pub name: String,
    /// A managed user's name; None: the cluster's admin role.
    pub owner: Option<String>,
    pub encoding: String,
    pub locale: Option<String>,
    pub status: AccessStatus,
    /// Asked to be dropped even with sessions connected (they are ended).
    pub force_drop: bool,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
