use herd_core::status::{BackupStatus, BackupType};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backups")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub cluster_id: Uuid,
    pub backup_type: BackupType,
    pub status: BackupStatus,
    pub label: Option<String>,
    pub size_bytes: Option<i64>,
    pub repo_size_bytes: Option<i64>,
    pub wal_start: Option<String>,
    pub wal_stop: Option<String>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// `posix` (the control-plane host's directory) or `s3`.
    pub repo: String,
    /// pgBackRest stanza: one per cluster, named after its id.
    pub stanza: Option<String>,
    /// The task that takes (or expires) it.
    pub task_id: Option<Uuid>,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
