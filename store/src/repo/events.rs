//! A cluster's history: operator-facing lines, never secrets.

use uuid::Uuid;

use super::{Page, in_project, new_id, now};
use crate::entity::{cluster, task_event};
use crate::{Store, StoreError};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, QueryFilter, Set};

impl Store {
    /// Appends to a cluster's history. Messages are operator-facing text and must
    /// never contain secrets.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn add_event<C: ConnectionTrait>(
        &self,
        conn: &C,
        project_id: Uuid,
        cluster_id: Uuid,
        task_id: Option<Uuid>,
        level: &str,
        step: Option<&str>,
        message: &str,
    ) -> Result<task_event::Model, StoreError> {
        Ok(task_event::ActiveModel {
            id: Set(new_id()),
            project_id: Set(project_id),
            cluster_id: Set(cluster_id),
            task_id: Set(task_id),
            level: Set(level.to_owned()),
            step: Set(step.map(str::to_owned)),
            message: Set(message.to_owned()),
            created_at: Set(now()),
        }
        .insert(conn)
        .await?)
    }

    /// Appends to the history of a cluster known by id (its project given).
    pub async fn record_event(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        task_id: Option<Uuid>,
        level: &str,
        step: Option<&str>,
        message: &str,
    ) -> Result<task_event::Model, StoreError> {
        self.add_event(&self.db, project_id, cluster_id, task_id, level, step, message).await
    }

    /// A cluster's history, newest first.
    pub async fn list_events(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<task_event::Model>, StoreError> {
        // The cluster must be visible to this project (404 otherwise), even though
        // events are kept by cluster id.
        self.project_cluster(&self.db, project_id, cluster_id).await?;
        let q = in_project::<task_event::Entity>(project_id).filter(task_event::Column::ClusterId.eq(cluster_id));
        super::page_by_id(&self.db, q, task_event::Column::Id, |e| e.id, limit, cursor, true).await
    }

    /// Appends to the history of a cluster (project taken from the cluster row).
    pub async fn log_event(
        &self,
        c: &cluster::Model,
        task_id: Option<Uuid>,
        level: &str,
        step: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        self.add_event(&self.db, c.project_id, c.id, task_id, level, step, message).await.map(|_| ())
    }
}
