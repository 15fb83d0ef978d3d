use sea_orm::entity::prelude::*;

/// A cluster's backup schedule and retention. Expressions are stored as the user wrote
/// them (`herd_core::schedule::CronSchedule` parses them); times are UTC.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "backup_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub cluster_id: Uuid,
    pub project_id: Uuid,
    pub full_schedule: String,
    pub diff_schedule: Option<String>,
    pub incr_schedule: Option<String>,
    /// Full backups kept; older ones (and what depends on them) are expired.
    pub retention_full: i32,
    /// When each kind is due next (None: never again). The scheduler claims a run
    /// by moving these.
    pub next_full_at: Option<DateTimeUtc>,
    pub next_diff_at: Option<DateTimeUtc>,
    pub next_incr_at: Option<DateTimeUtc>,
    /// A due run could not start (the cluster was busy or not running) since then.
    pub waiting_since: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
