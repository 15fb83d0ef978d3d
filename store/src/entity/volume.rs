use herd_core::status::VolumeStatus;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "volumes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub cluster_id: Option<Uuid>,
    pub node_id: Option<Uuid>,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub size_gb: i32,
    pub status: VolumeStatus,
    /// Where the volume appears on its server (device or path).
    pub attachment: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
