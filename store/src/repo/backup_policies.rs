//! Backup policies: a cluster's cron schedules and retention, and the scheduler's
//! claim of a due run.
//!
//! Exactly once across any number of workers: a run is claimed by a conditional UPDATE
//! of the next-run times it was read with (as a task is claimed in `work.rs`), in the
//! same transaction that checks the cluster is free and inserts the backup and its
//! task. A second worker's UPDATE then matches no row. A run the cluster cannot take
//! now (busy, not running) is rolled back, so it stays due and is tried again at the
//! next tick; its wait is recorded in the history once.

use chrono::{DateTime, Utc};
use herd_core::schedule::CronSchedule;
use herd_core::status::{BackupType, ClusterStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::now;
use crate::Conflict;
use crate::entity::{backup, backup_policy, cluster, task};
use crate::{Store, StoreError};

/// A policy as the API validated it.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub full: CronSchedule,
    pub diff: Option<CronSchedule>,
    pub incr: Option<CronSchedule>,
    pub retention_full: i32,
}

/// The next-run column of each backup type.
pub fn next_column(kind: BackupType) -> backup_policy::Column {
    match kind {
        BackupType::Full => backup_policy::Column::NextFullAt,
        BackupType::Diff => backup_policy::Column::NextDiffAt,
        BackupType::Incr => backup_policy::Column::NextIncrAt,
    }
}

/// When `kind` is due next under the policy (None: no such schedule, or never again).
pub fn next_at(p: &backup_policy::Model, kind: BackupType) -> Option<DateTime<Utc>> {
    match kind {
        BackupType::Full => p.next_full_at,
        BackupType::Diff => p.next_diff_at,
        BackupType::Incr => p.next_incr_at,
    }
}

/// One claimed next-run time: the value it was read with and the one it moves to.
#[derive(Debug, Clone, Copy)]
pub struct Advance {
    pub kind: BackupType,
    pub was: DateTime<Utc>,
    pub next: Option<DateTime<Utc>>,
}

/// What became of a due run.
#[derive(Debug)]
pub enum ScheduledRun {
    /// This caller claimed it: the backup and its task exist (push the task id).
    Started(Box<(backup::Model, task::Model)>),
    /// The cluster cannot take it now (`cluster_busy`, `cluster_not_ready`): nothing
    /// changed, it stays due.
    Waiting { why: crate::Conflict, reason: String },
    /// Another worker claimed it first, or the policy changed or went meanwhile.
    Lost,
}

impl Store {
    /// Sets (or replaces) a cluster's policy; its schedules start from now. Returns the
    /// policy and whether it replaced one.
    pub async fn put_backup_policy(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        spec: &PolicySpec,
    ) -> Result<(backup_policy::Model, bool), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, cluster_id).await?;
        if c.status == ClusterStatus::Deleting {
            return Err(StoreError::conflict(Conflict::InvalidState, format!("cluster '{}' is being deleted", c.name)));
        }
        let ts = now();
        let existing = backup_policy::Entity::find_by_id(cluster_id).one(&tx).await?;
        let replaced = existing.is_some();
        let mut am = match existing {
            Some(p) => p.into_active_model(),
            None => backup_policy::ActiveModel {
                cluster_id: Set(cluster_id),
                project_id: Set(project_id),
                created_at: Set(ts),
                ..Default::default()
            },
        };
        am.full_schedule = Set(spec.full.as_str().to_owned());
        am.diff_schedule = Set(spec.diff.as_ref().map(|s| s.as_str().to_owned()));
        am.incr_schedule = Set(spec.incr.as_ref().map(|s| s.as_str().to_owned()));
        am.retention_full = Set(spec.retention_full);
        am.next_full_at = Set(spec.full.next_after(ts));
        am.next_diff_at = Set(spec.diff.as_ref().and_then(|s| s.next_after(ts)));
        am.next_incr_at = Set(spec.incr.as_ref().and_then(|s| s.next_after(ts)));
        am.waiting_since = Set(None);
        am.updated_at = Set(ts);
        let p = if replaced { am.update(&tx).await? } else { am.insert(&tx).await? };
        let mut summary = format!("full '{}'", p.full_schedule);
        for (name, s) in [("differential", &p.diff_schedule), ("incremental", &p.incr_schedule)] {
            if let Some(s) = s {
                summary.push_str(&format!(", {name} '{s}'"));
            }
        }
        let verb = if replaced { "replaced" } else { "set" };
        let msg = format!(
            "backup policy {verb}: {summary} (UTC); keep the newest {} full backup{}",
            p.retention_full,
            if p.retention_full == 1 { "" } else { "s" }
        );
        self.add_event(&tx, project_id, cluster_id, None, "info", Some("backup_policy"), &msg).await?;
        tx.commit().await?;
        Ok((p, replaced))
    }

    /// A cluster's policy; Ok(None) when it has none, Err(NotFound) when the cluster is
    /// not one of the project's.
    pub async fn get_backup_policy(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
    ) -> Result<Option<backup_policy::Model>, StoreError> {
        self.project_cluster(&self.db, project_id, cluster_id).await?;
        Ok(backup_policy::Entity::find_by_id(cluster_id).one(&self.db).await?)
    }

    /// Removes a cluster's policy; true if it had one.
    pub async fn delete_backup_policy(&self, project_id: Uuid, cluster_id: Uuid) -> Result<bool, StoreError> {
        let tx = self.write_tx().await?;
        self.project_cluster(&tx, project_id, cluster_id).await?;
        let res = backup_policy::Entity::delete_by_id(cluster_id).exec(&tx).await?;
        if res.rows_affected == 1 {
            self.add_event(
                &tx,
                project_id,
                cluster_id,
                None,
                "info",
                Some("backup_policy"),
                "backup policy removed: no more scheduled backups or retention",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(res.rows_affected == 1)
    }

    /// The policy of a cluster, for workers.
    pub async fn backup_policy_of(&self, cluster_id: Uuid) -> Result<Option<backup_policy::Model>, StoreError> {
        Ok(backup_policy::Entity::find_by_id(cluster_id).one(&self.db).await?)
    }

    /// Policies with a run due at `at`.
    pub async fn due_backup_policies(&self, at: DateTime<Utc>) -> Result<Vec<backup_policy::Model>, StoreError> {
        Ok(backup_policy::Entity::find()
            .filter(
                Condition::any()
                    .add(backup_policy::Column::NextFullAt.lte(at))
                    .add(backup_policy::Column::NextDiffAt.lte(at))
                    .add(backup_policy::Column::NextIncrAt.lte(at)),
            )
            .order_by_asc(backup_policy::Column::ClusterId)
            .all(&self.db)
            .await?)
    }

    /// Claims a due run and, if the cluster can take it, starts a `kind` backup, all in
    /// one transaction. `advance` moves every next-run time the run covers (a full
    /// backup also stands for a differential or incremental due at the same time) from
    /// the value it was read with; if any has changed, another worker (or a new policy)
    /// came first and nothing happens.
    pub async fn start_scheduled_backup(
        &self,
        p: &backup_policy::Model,
        kind: BackupType,
        advance: &[Advance],
        repo: &str,
        stanza: &str,
        message: &str,
    ) -> Result<ScheduledRun, StoreError> {
        let tx = self.write_tx().await?;
        // The cluster row first (locked on PostgreSQL), then the policy: the order
        // every writer of both uses, so they cannot deadlock.
        let Some(c) = cluster::Entity::find_by_id(p.cluster_id).lock_exclusive().one(&tx).await? else {
            return Ok(ScheduledRun::Lost);
        };
        let mut claim = backup_policy::Entity::update_many()
            .col_expr(backup_policy::Column::WaitingSince, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(backup_policy::Column::UpdatedAt, Expr::value(now()))
            .filter(backup_policy::Column::ClusterId.eq(p.cluster_id));
        for a in advance {
            let col = next_column(a.kind);
            claim = claim.col_expr(col, Expr::value(a.next)).filter(col.eq(a.was));
        }
        if claim.exec(&tx).await?.rows_affected != 1 {
            return Ok(ScheduledRun::Lost);
        }
        match self.check_ready(&tx, &c).await {
            Ok(()) => {}
            Err(StoreError::Conflict { kind, message }) => {
                tx.rollback().await?;
                return Ok(ScheduledRun::Waiting { why: kind, reason: message });
            }
            Err(e) => return Err(e),
        }
        let (b, t) = self.insert_backup(&tx, &c, kind, repo, stanza, message).await?;
        tx.commit().await?;
        Ok(ScheduledRun::Started(Box::new((b, t))))
    }

    /// Records, once per wait, that a due run waits for the cluster: true if this call
    /// recorded it (the history event is written in the same transaction).
    pub async fn note_policy_waiting(
        &self,
        p: &backup_policy::Model,
        due: &Advance,
        message: &str,
    ) -> Result<bool, StoreError> {
        let tx = self.write_tx().await?;
        let res = backup_policy::Entity::update_many()
            .col_expr(backup_policy::Column::WaitingSince, Expr::value(due.was))
            .filter(backup_policy::Column::ClusterId.eq(p.cluster_id))
            .filter(backup_policy::Column::WaitingSince.is_null())
            .filter(next_column(due.kind).eq(due.was))
            .exec(&tx)
            .await?;
        if res.rows_affected != 1 {
            return Ok(false);
        }
        self.add_event(&tx, p.project_id, p.cluster_id, None, "warn", Some("backup_policy"), message).await?;
        tx.commit().await?;
        Ok(true)
    }
}
