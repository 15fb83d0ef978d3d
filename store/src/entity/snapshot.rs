use herd_core::status::SnapshotStatus;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "snapshots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub cluster_id: Option<Uuid>,
    pub volume_id: Option<Uuid>,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub size_gb: i32,
    pub status: SnapshotStatus,
    pub backup_label: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
