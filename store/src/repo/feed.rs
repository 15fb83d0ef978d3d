//! What changed since a point: the API's live streams read history events and task
//! state from the database (not from process memory), so any API process behind the
//! same database streams what any worker recorded.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::in_project;
use crate::entity::{task, task_event};
use crate::{Store, StoreError};

/// The smallest UUIDv7 of the millisecond `ts` (no id is made with it: its random bits
/// are all zero): every id made at or after `ts` sorts after it, so `id > v7_floor(ts)`
/// reads "recorded since `ts`" on the primary key.
pub fn v7_floor(ts: DateTime<Utc>) -> Uuid {
    let ms = ts.timestamp_millis().max(0) as u64;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    Uuid::from_bytes(b)
}

impl Store {
    /// Every project's history events with an id after `after` (a real id, or a
    /// `v7_floor`), oldest first.
    pub async fn events_after(&self, after: Uuid, limit: u64) -> Result<Vec<task_event::Model>, StoreError> {
        Ok(task_event::Entity::find()
            .filter(task_event::Column::Id.gt(after))
            .order_by_asc(task_event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Every project's tasks changed (status, step, progress) at or after `since`.
    pub async fn tasks_changed_since(&self, since: DateTime<Utc>, limit: u64) -> Result<Vec<task::Model>, StoreError> {
        Ok(task::Entity::find()
            .filter(task::Column::UpdatedAt.gte(since))
            .order_by_asc(task::Column::UpdatedAt)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// A task's history events after `after` (all without it), oldest first.
    pub async fn task_events_after(
        &self,
        project_id: Uuid,
        task_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<task_event::Model>, StoreError> {
        let mut q = in_project::<task_event::Entity>(project_id).filter(task_event::Column::TaskId.eq(task_id));
        if let Some(a) = after {
            q = q.filter(task_event::Column::Id.gt(a));
        }
        Ok(q.order_by_asc(task_event::Column::Id).limit(limit).all(&self.db).await?)
    }

    /// A cluster's history events after `after`, oldest first.
    pub async fn cluster_events_after(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        after: Uuid,
        limit: u64,
    ) -> Result<Vec<task_event::Model>, StoreError> {
        Ok(in_project::<task_event::Entity>(project_id)
            .filter(task_event::Column::ClusterId.eq(cluster_id))
            .filter(task_event::Column::Id.gt(after))
            .order_by_asc(task_event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Where "from now on" starts for a cluster's stream: its newest history event
    /// and the newest change of any of its tasks, as recorded (so no clock of the
    /// reader is compared with the writers').
    pub async fn cluster_stream_start(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
    ) -> Result<(Option<Uuid>, Option<DateTime<Utc>>), StoreError> {
        let event = in_project::<task_event::Entity>(project_id)
            .filter(task_event::Column::ClusterId.eq(cluster_id))
            .order_by_desc(task_event::Column::Id)
            .one(&self.db)
            .await?
            .map(|e| e.id);
        let task = in_project::<task::Entity>(project_id)
            .filter(task::Column::ClusterId.eq(cluster_id))
            .order_by_desc(task::Column::UpdatedAt)
            .one(&self.db)
            .await?
            .map(|t| t.updated_at);
        Ok((event, task))
    }

    /// Whether this project has (or had) a cluster with this id: its events outlive it
    /// only as long as its rows do, so a stream of a deleted cluster is a 404.
    pub async fn cluster_exists(&self, project_id: Uuid, cluster_id: Uuid) -> Result<bool, StoreError> {
        match self.project_cluster(&self.db, project_id, cluster_id).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_sorts_before_every_id_of_its_millisecond_and_after_earlier_ones() {
        let ts = Utc::now();
        let floor = v7_floor(ts);
        assert_eq!(floor.get_version_num(), 7);
        let later = Uuid::now_v7();
        assert!(floor <= later, "{floor} > {later}");
        let earlier = v7_floor(ts - chrono::Duration::milliseconds(1));
        assert!(earlier < floor);
        let (secs, nanos) = floor.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64 * 1000 + i64::from(nanos / 1_000_000), ts.timestamp_millis());
    }
}
