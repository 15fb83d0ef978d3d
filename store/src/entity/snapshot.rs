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
    /// `backup_label` contents from `pg_backup_stop`, written into the data directory
    /// when a cluster is restored from this snapshot.
    pub backup_label: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub datastore: Option<String>,
    pub version: Option<String>,
    /// The source cluster's name: its data directory on the volume is named after it.
    pub source_name: Option<String>,
    /// The repository and stanza holding the WAL the snapshot needs to be consistent.
    pub repo: Option<String>,
    pub stanza: Option<String>,
    pub start_lsn: Option<String>,
    pub stop_lsn: Option<String>,
    pub tablespace_map: Option<String>,
    pub task_id: Option<Uuid>,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
