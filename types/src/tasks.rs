use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{TaskKind, TaskStatus};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TaskError {
    /// One of the fault codes (`herd_core::faults::FaultCode`). Kept as text so a client
    /// older than a newly added code still reads the rest.
    #[schema(value_type = herd_core::faults::FaultCode)]
    pub code: String,
    pub message: String,
}

impl TaskError {
    /// The code as the enum, when this build knows it.
    pub fn fault_code(&self) -> Option<herd_core::faults::FaultCode> {
        self.code.parse().ok()
    }
}

/// A unit of background work on a cluster.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct TaskDto {
    pub id: Uuid,
    pub kind: TaskKind,
    pub cluster_id: Option<Uuid>,
    pub status: TaskStatus,
    /// The step running now, or the last one reached.
    pub step: Option<String>,
    /// 0–100.
    pub progress: i32,
    pub error: Option<TaskError>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskRef {
    pub task_id: Uuid,
}
