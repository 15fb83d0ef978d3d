use herd_core::status::AccessStatus;
use sea_orm::entity::prelude::*;

/// A login role Herd manages in a cluster. `roles` is a JSON list of predefined
/// roles, `grants` a JSON object of database name → privilege.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "cluster_users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub cluster_id: Uuid,
    pub name: String,
    /// AES-256-GCM, bound to the row (`cluster_users.password:<id>`).
    pub password_enc: String,
    pub connection_limit: Option<i32>,
    pub roles: Json,
    pub grants: Json,
    pub status: AccessStatus,
    pub error: Option<String>,
    pub password_set_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
