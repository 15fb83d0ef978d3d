//! Backups: requested by the API, taken and expired by tasks. A backup row outlives its
//! cluster (it names its repository and stanza), so a deleted cluster stays restorable
//! until its backups are expired.

use herd_core::quota::Quota;
use herd_core::status::{BackupStatus, BackupType, TaskKind, TaskStatus};
use herd_core::task::{Payload, TaskInput};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::tasks::insert_task;
use super::{Page, new_id, now};
use super::{find_in_project, in_project};
use crate::Conflict;
use crate::entity::{backup, cluster, task};
use crate::{Store, StoreError};

/// What a finished backup recorded.
pub struct BackupResult {
    /// What was taken: pgBackRest makes a requested diff or incr a full backup when
    /// there is no full backup to base it on.
    pub backup_type: BackupType,
    pub label: String,
    pub size_bytes: i64,
    pub repo_size_bytes: i64,
    pub wal_start: String,
    pub wal_stop: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
}

impl Store {
    /// A new backup row and the task that takes it. The cluster must be running with no
    /// other task open on it (409 otherwise).
    pub async fn request_backup(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        kind: BackupType,
        repo: &str,
        stanza: &str,
    ) -> Result<(backup::Model, task::Model), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, cluster_id).await?;
        self.check_ready(&tx, &c).await?;
        // Scheduled backups are bounded by their policy's retention instead: a quota
        // must not silently stop a cluster's backups.
        self.check_quotas(&tx, project_id, &[(Quota::Backups, 1)]).await?;
        let (b, t) = self.insert_backup(&tx, &c, kind, repo, stanza, &format!("{kind} backup requested")).await?;
        tx.commit().await?;
        Ok((b, t))
    }

    /// The backup row, its task and a history event, inside the caller's transaction
    /// (which has checked the cluster is ready).
    pub(crate) async fn insert_backup<C: ConnectionTrait>(
        &self,
        conn: &C,
        c: &cluster::Model,
        kind: BackupType,
        repo: &str,
        stanza: &str,
        message: &str,
    ) -> Result<(backup::Model, task::Model), StoreError> {
        let backup_id = new_id();
        let t = insert_task(conn, c.project_id, c.id, TaskInput::Backup { backup_id }).await?;
        let ts = now();
        let b = backup::ActiveModel {
            id: Set(backup_id),
            project_id: Set(c.project_id),
            cluster_id: Set(c.id),
            backup_type: Set(kind),
            status: Set(BackupStatus::New),
            label: Set(None),
            size_bytes: Set(None),
            repo_size_bytes: Set(None),
            wal_start: Set(None),
            wal_stop: Set(None),
            started_at: Set(None),
            finished_at: Set(None),
            repo: Set(repo.to_owned()),
            stanza: Set(Some(stanza.to_owned())),
            task_id: Set(Some(t.id)),
            error: Set(None),
            created_at: Set(ts),
            updated_at: Set(ts),
        }
        .insert(conn)
        .await?;
        self.add_event(conn, c.project_id, c.id, Some(t.id), "info", None, message).await?;
        Ok((b, t))
    }

    pub async fn list_backups(
        &self,
        project_id: Uuid,
        cluster_id: Option<Uuid>,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<backup::Model>, StoreError> {
        let mut q = in_project::<backup::Entity>(project_id);
        if let Some(c) = cluster_id {
            q = q.filter(backup::Column::ClusterId.eq(c));
        }
        super::page_by_id(&self.db, q, backup::Column::Id, |b| b.id, limit, cursor, false).await
    }

    pub async fn get_backup(&self, project_id: Uuid, id: Uuid) -> Result<backup::Model, StoreError> {
        find_in_project::<backup::Entity, _>(&self.db, project_id, id).await
    }

    /// Completed backups of a cluster (which may be deleted), oldest first.
    pub async fn completed_backups(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
    ) -> Result<Vec<backup::Model>, StoreError> {
        Ok(in_project::<backup::Entity>(project_id)
            .filter(backup::Column::ClusterId.eq(cluster_id))
            .filter(backup::Column::Status.eq(BackupStatus::Completed))
            .order_by_asc(backup::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Queues the removal of a completed backup from its repository.
    pub async fn request_expire(&self, project_id: Uuid, id: Uuid) -> Result<task::Model, StoreError> {
        let tx = self.write_tx().await?;
        let b = find_in_project::<backup::Entity, _>(&tx, project_id, id).await?;
        // Expired already: the task that expired it answers again.
        if b.status == BackupStatus::Expired
            && let Some(t) = b.task_id
            && let Some(t) = task::Entity::find_by_id(t).one(&tx).await?
        {
            tx.commit().await?;
            return Ok(t);
        }
        if b.status != BackupStatus::Completed {
            return Err(StoreError::conflict(
                Conflict::InvalidState,
                format!("backup {} is {}; only a completed backup can be expired", b.id, b.status),
            ));
        }
        if let Some(open) = task::Entity::find()
            .filter(task::Column::Kind.eq(TaskKind::ExpireBackup))
            .filter(task::Column::Status.is_in([TaskStatus::Queued, TaskStatus::Running]))
            .filter(task::Column::ClusterId.eq(b.cluster_id))
            .one(&tx)
            .await?
            && Payload::decode(open.kind, &open.payload)
                .is_ok_and(|p| p.input == TaskInput::ExpireBackup { backup_id: id })
        {
            tx.commit().await?;
            return Ok(open);
        }
        let t = insert_task(&tx, project_id, b.cluster_id, TaskInput::ExpireBackup { backup_id: id }).await?;
        let mut bm = b.into_active_model();
        bm.task_id = Set(Some(t.id));
        bm.updated_at = Set(now());
        bm.update(&tx).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Completed full backups of a cluster in `repo`/`stanza` beyond the newest `keep`,
    /// oldest first: what retention expires. (Ids are creation order, and a cluster
    /// takes one backup at a time.)
    pub async fn fulls_beyond_retention(
        &self,
        cluster_id: Uuid,
        repo: &str,
        stanza: &str,
        keep: usize,
    ) -> Result<Vec<backup::Model>, StoreError> {
        let mut fulls = backup::Entity::find()
            .filter(backup::Column::ClusterId.eq(cluster_id))
            .filter(backup::Column::Repo.eq(repo))
            .filter(backup::Column::Stanza.eq(stanza))
            .filter(backup::Column::BackupType.eq(BackupType::Full))
            .filter(backup::Column::Status.eq(BackupStatus::Completed))
            .order_by_asc(backup::Column::Id)
            .all(&self.db)
            .await?;
        fulls.truncate(fulls.len().saturating_sub(keep));
        Ok(fulls)
    }

    /// Completed backups recorded in a repository's stanza, oldest first.
    pub async fn completed_in_stanza(&self, repo: &str, stanza: &str) -> Result<Vec<backup::Model>, StoreError> {
        Ok(backup::Entity::find()
            .filter(backup::Column::Repo.eq(repo))
            .filter(backup::Column::Stanza.eq(stanza))
            .filter(backup::Column::Status.eq(BackupStatus::Completed))
            .order_by_asc(backup::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// A completed backup that `task_id` removed from the repository together with the
    /// one it depended on becomes `expired` too (and names that task). False if it was
    /// not completed.
    pub async fn mark_backup_expired(&self, id: Uuid, task_id: Uuid) -> Result<bool, StoreError> {
        debug_assert!(BackupStatus::Completed.can_become(BackupStatus::Expired));
        let res = backup::Entity::update_many()
            .col_expr(backup::Column::Status, Expr::value(BackupStatus::Expired.as_str()))
            .col_expr(backup::Column::TaskId, Expr::value(task_id))
            .col_expr(backup::Column::UpdatedAt, Expr::value(now()))
            .filter(backup::Column::Id.eq(id))
            .filter(backup::Column::Status.eq(BackupStatus::Completed))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    pub async fn backup_by_id(&self, id: Uuid) -> Result<backup::Model, StoreError> {
        backup::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)
    }

    /// Moves a backup to `to` (refused unless `BackupStatus::can_become` allows it),
    /// recording the result or the error.
    pub async fn set_backup_status(
        &self,
        id: Uuid,
        to: BackupStatus,
        result: Option<BackupResult>,
        error: Option<&str>,
    ) -> Result<backup::Model, StoreError> {
        let b = self.backup_by_id(id).await?;
        if b.status == to {
            return Ok(b);
        }
        if !b.status.can_become(to) {
            return Err(StoreError::conflict(
                Conflict::InvalidState,
                format!("backup {id} is {} and cannot become {to}", b.status),
            ));
        }
        let mut am = b.into_active_model();
        am.status = Set(to);
        if to == BackupStatus::Running {
            am.started_at = Set(Some(now()));
        }
        if let Some(r) = result {
            am.backup_type = Set(r.backup_type);
            am.label = Set(Some(r.label));
            am.size_bytes = Set(Some(r.size_bytes));
            am.repo_size_bytes = Set(Some(r.repo_size_bytes));
            am.wal_start = Set(Some(r.wal_start));
            am.wal_stop = Set(Some(r.wal_stop));
            am.started_at = Set(Some(r.started_at));
            am.finished_at = Set(Some(r.finished_at));
        }
        if let Some(e) = error {
            am.error = Set(Some(e.to_owned()));
            am.finished_at = Set(Some(now()));
        }
        am.updated_at = Set(now());
        Ok(am.update(&self.db).await?)
    }
}
