//! Volume snapshots: requested by the API, taken and deleted by tasks. Like backups, a
//! snapshot outlives its cluster: its row names everything a restore needs.

use herd_core::quota::Quota;
use herd_core::status::{SnapshotStatus, TaskStatus};
use herd_core::task::TaskInput;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use uuid::Uuid;

use super::tasks::insert_task;
use super::{Page, new_id, now};
use super::{find_in_project, in_project};
use crate::Conflict;
use crate::entity::{snapshot, task};
use crate::{Store, StoreError};

/// What a finished snapshot recorded.
pub struct SnapshotResult {
    pub provider_ref: String,
    pub size_gb: i32,
    pub volume_id: Uuid,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub backup_label: String,
    pub tablespace_map: String,
}

impl Store {
    /// A new snapshot row and the task that takes it. The cluster must be running with
    /// no other task open on it (409 otherwise). `repo`/`stanza`: where its WAL is.
    pub async fn request_snapshot(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        repo: &str,
        stanza: &str,
    ) -> Result<(snapshot::Model, task::Model), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, cluster_id).await?;
        self.check_ready(&tx, &c).await?;
        self.check_quotas(&tx, project_id, &[(Quota::Snapshots, 1)]).await?;
        let snapshot_id = new_id();
        let t = insert_task(&tx, project_id, cluster_id, TaskInput::Snapshot { snapshot_id }).await?;
        let ts = now();
        let s = snapshot::ActiveModel {
            id: Set(snapshot_id),
            project_id: Set(project_id),
            cluster_id: Set(Some(cluster_id)),
            volume_id: Set(None),
            provider: Set(c.provider.clone()),
            provider_ref: Set(None),
            size_gb: Set(c.volume_gb),
            status: Set(SnapshotStatus::Creating),
            backup_label: Set(None),
            created_at: Set(ts),
            updated_at: Set(ts),
            datastore: Set(Some(c.datastore.clone())),
            version: Set(Some(c.version.clone())),
            source_name: Set(Some(c.name.clone())),
            repo: Set(Some(repo.to_owned())),
            stanza: Set(Some(stanza.to_owned())),
            start_lsn: Set(None),
            stop_lsn: Set(None),
            tablespace_map: Set(None),
            task_id: Set(Some(t.id)),
            error: Set(None),
        }
        .insert(&tx)
        .await?;
        self.add_event(&tx, project_id, cluster_id, Some(t.id), "info", None, "snapshot requested").await?;
        tx.commit().await?;
        Ok((s, t))
    }

    pub async fn list_snapshots(
        &self,
        project_id: Uuid,
        cluster_id: Option<Uuid>,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<snapshot::Model>, StoreError> {
        let mut q = in_project::<snapshot::Entity>(project_id);
        if let Some(c) = cluster_id {
            q = q.filter(snapshot::Column::ClusterId.eq(c));
        }
        super::page_by_id(&self.db, q, snapshot::Column::Id, |s| s.id, limit, cursor, false).await
    }

    pub async fn get_snapshot(&self, project_id: Uuid, id: Uuid) -> Result<snapshot::Model, StoreError> {
        find_in_project::<snapshot::Entity, _>(&self.db, project_id, id).await
    }

    pub async fn snapshot_by_id(&self, id: Uuid) -> Result<snapshot::Model, StoreError> {
        snapshot::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)
    }

    /// Records the provider snapshot of a snapshot still being taken, as soon as it
    /// exists, so a retry or a delete finds it.
    pub async fn set_snapshot_ref(&self, id: Uuid, provider_ref: Option<&str>) -> Result<(), StoreError> {
        let s = self.snapshot_by_id(id).await?;
        let mut am = s.into_active_model();
        am.provider_ref = Set(provider_ref.map(str::to_owned));
        am.updated_at = Set(now());
        am.update(&self.db).await?;
        Ok(())
    }

    /// Moves a snapshot to `to` (refused unless `SnapshotStatus::can_become` allows it),
    /// recording the result or the error.
    pub async fn set_snapshot_status(
        &self,
        id: Uuid,
        to: SnapshotStatus,
        result: Option<SnapshotResult>,
        error: Option<&str>,
    ) -> Result<snapshot::Model, StoreError> {
        let s = self.snapshot_by_id(id).await?;
        if s.status == to && result.is_none() && error.is_none() {
            return Ok(s);
        }
        if s.status != to && !s.status.can_become(to) {
            return Err(StoreError::conflict(
                Conflict::InvalidState,
                format!("snapshot {id} is {} and cannot become {to}", s.status),
            ));
        }
        let mut am = s.into_active_model();
        am.status = Set(to);
        if let Some(r) = result {
            am.provider_ref = Set(Some(r.provider_ref));
            am.size_gb = Set(r.size_gb);
            am.volume_id = Set(Some(r.volume_id));
            am.start_lsn = Set(Some(r.start_lsn));
            am.stop_lsn = Set(Some(r.stop_lsn));
            am.backup_label = Set(Some(r.backup_label));
            am.tablespace_map = Set(Some(r.tablespace_map));
        }
        if let Some(e) = error {
            am.error = Set(Some(e.to_owned()));
        }
        am.updated_at = Set(now());
        Ok(am.update(&self.db).await?)
    }

    /// Queues the deletion of a snapshot at its provider. Deleting one already being
    /// deleted answers with the same task; one still being taken is refused.
    pub async fn request_delete_snapshot(&self, project_id: Uuid, id: Uuid) -> Result<task::Model, StoreError> {
        let tx = self.write_tx().await?;
        let s = find_in_project::<snapshot::Entity, _>(&tx, project_id, id).await?;
        if s.status == SnapshotStatus::Deleting
            && let Some(t) = s.task_id
            && let Some(t) = task::Entity::find_by_id(t).one(&tx).await?
            && matches!(t.status, TaskStatus::Queued | TaskStatus::Running)
        {
            tx.commit().await?;
            return Ok(t);
        }
        if !s.status.can_become(SnapshotStatus::Deleting) {
            return Err(StoreError::conflict(
                Conflict::InvalidState,
                format!("snapshot {} is {}; it can be deleted once it is available or failed", s.id, s.status),
            ));
        }
        let cluster_id = s.cluster_id.ok_or(StoreError::NotFound)?;
        let t = insert_task(&tx, project_id, cluster_id, TaskInput::DeleteSnapshot { snapshot_id: id }).await?;
        let mut sm = s.into_active_model();
        sm.status = Set(SnapshotStatus::Deleting);
        sm.task_id = Set(Some(t.id));
        sm.updated_at = Set(now());
        sm.update(&tx).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Removes the row of a snapshot whose provider snapshot is gone.
    pub async fn remove_snapshot(&self, id: Uuid) -> Result<(), StoreError> {
        snapshot::Entity::delete_by_id(id).exec(&self.db).await?;
        Ok(())
    }
}
