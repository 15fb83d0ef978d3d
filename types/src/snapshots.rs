use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::SnapshotStatus;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SnapshotDto {
    pub id: Uuid,
    /// The cluster it was taken of (it may be deleted since).
    pub cluster_id: Option<Uuid>,
    pub status: SnapshotStatus,
    pub provider: String,
    /// Size of the snapshotted volume.
    pub size_gb: i32,
    pub datastore: Option<String>,
    pub version: Option<String>,
    /// WAL positions where the online backup around the snapshot started and where a
    /// restore from it becomes consistent.
    pub start_lsn: Option<String>,
    pub stop_lsn: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    pub task_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/clusters/{id}/snapshots` takes no options yet; an empty object is fine.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedSnapshot {
    pub snapshot: SnapshotDto,
    pub task_id: Uuid,
}
