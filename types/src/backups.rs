//! Backups, restores, recovery windows and backup policies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{BackupStatus, BackupType};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupDto {
    pub id: Uuid,
    pub cluster_id: Uuid,
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    pub status: BackupStatus,
    /// pgBackRest's label (`20261122-120000F`), once taken.
    pub label: Option<String>,
    /// Size of the database the backup covers.
    pub size_bytes: Option<i64>,
    /// What it added to the repository (compressed, deduplicated).
    pub repo_size_bytes: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub wal_start: Option<String>,
    pub wal_stop: Option<String>,
    /// The repository it is in (`posix` or `s3`): its cluster's, when it was taken.
    pub repository: String,
    /// Whether the repository holds it encrypted (its cluster's passphrase).
    #[serde(default)]
    pub encrypted: bool,
    /// Why it failed.
    pub error: Option<String>,
    pub task_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// `full` (default), `diff` (changes since the last full) or `incr` (since the
    /// last backup of any type).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<BackupType>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedBackup {
    pub backup: BackupDto,
    pub task_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecoveryWindowDto {
    /// Earliest restorable time (the end of the oldest backup); null without backups.
    pub earliest: Option<DateTime<Utc>>,
    /// Latest restorable time known to be archived.
    pub latest: Option<DateTime<Utc>>,
}

/// `restore` in `POST /v1/clusters`: from a cluster's backups (`source_cluster_id`,
/// optionally `backup_id` or `target_time`) or from a volume snapshot (`snapshot_id`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The cluster whose backups to restore from; it may already be deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_cluster_id: Option<Uuid>,
    /// A completed backup of that cluster; default: the latest (or, with
    /// `target_time`, the latest that ends before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<Uuid>,
    /// Recover to this point in time (RFC 3339); default: everything archived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_time: Option<DateTime<Utc>>,
    /// An available snapshot (`POST /v1/clusters/{id}/snapshots`): the new cluster
    /// starts with the data as of that snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<Uuid>,
}

/// The whole policy (PUT replaces it). Schedules are cron expressions evaluated in UTC:
/// 5 fields `minute hour day-of-month month day-of-week` (crontab(5): day of week 0–7
/// or `sun`–`sat`, 0 and 7 are Sunday), 6 fields with seconds first, or `@hourly`,
/// `@daily`, `@weekly`, `@monthly`, `@yearly`. Restricting both day fields is refused
/// (cron would read it as "either").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicyRequest {
    /// When to take full backups, e.g. `0 3 * * 0` (Sundays 03:00 UTC).
    #[schema(example = "0 3 * * 0")]
    pub full_schedule: String,
    /// When to take differential backups (changes since the last full); null: none.
    #[serde(default)]
    #[schema(example = json!(null))]
    pub diff_schedule: Option<String>,
    /// When to take incremental backups (changes since the last backup); null: none.
    #[serde(default)]
    #[schema(example = "0 3 * * 1-6")]
    pub incremental_schedule: Option<String>,
    /// Full backups to keep, 1–1000. After every full backup of the cluster (scheduled
    /// or not) completes, older full backups beyond this count are expired, oldest
    /// first, with the differential and incremental backups based on them.
    #[schema(example = 4, minimum = 1, maximum = 1000)]
    pub retention_full: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupPolicyDto {
    pub cluster_id: Uuid,
    pub full_schedule: String,
    pub diff_schedule: Option<String>,
    pub incremental_schedule: Option<String>,
    pub retention_full: i32,
    /// When the next scheduled full backup is due (read-only); null if the schedule
    /// never fires again.
    pub next_full_at: Option<DateTime<Utc>>,
    /// When the next differential backup is due (read-only); null without a schedule.
    pub next_diff_at: Option<DateTime<Utc>>,
    /// When the next incremental backup is due (read-only); null without a schedule.
    pub next_incremental_at: Option<DateTime<Utc>>,
    /// Set while a due backup waits for the cluster (another task is running on it, or
    /// it is not active): the backup starts as soon as the cluster is free, once, and
    /// the wait is in the cluster's history.
    pub waiting_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
