use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTimeUtc,
    pub quota_clusters: Option<i64>,
    pub quota_nodes: Option<i64>,
    pub quota_volume_gb: Option<i64>,
    pub quota_snapshots: Option<i64>,
    pub quota_backups: Option<i64>,
    pub quota_keys: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
