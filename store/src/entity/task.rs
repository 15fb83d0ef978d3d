use herd_core::status::{TaskKind, TaskStatus};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub cluster_id: Option<Uuid>,
    pub kind: TaskKind,
    pub status: TaskStatus,
    pub step: Option<String>,
    pub progress: i32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i32,
    pub worker: Option<String>,
    pub heartbeat_at: Option<DateTimeUtc>,
    /// Step checkpoints and task-specific input; never secrets.
    pub payload: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
