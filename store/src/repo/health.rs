//! What the poller and the HA agent report: node observations, the primary, and the
//! cluster's active/degraded status.

use herd_core::status::{ClusterStatus, NodeRole, NodeStatus};
use uuid::Uuid;

use super::now;
use super::states::{apply_observation, set_cluster_status};
use crate::entity::{cluster, node};
use crate::{Conflict, Store, StoreError};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set};

/// One node as the poller saw it.
#[derive(Debug, Clone)]
pub struct NodeObservation {
    pub node_id: Uuid,
    pub role: NodeRole,
    pub status: NodeStatus,
    pub state: Option<String>,
    pub timeline: Option<i64>,
    pub lag_bytes: Option<i64>,
    pub pending_restart: bool,
    pub sync_standby: bool,
    /// The HA agent answered for this node (sets `last_seen_at`).
    pub seen: bool,
}

/// What changed when an observation was recorded.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HealthChange {
    pub status: Option<(ClusterStatus, ClusterStatus)>,
    /// (previous primary, new primary) when the primary moved.
    pub primary: Option<(Uuid, Uuid)>,
}

impl Store {
    /// Clusters the health poller watches.
    pub async fn clusters_to_watch(&self) -> Result<Vec<cluster::Model>, StoreError> {
        Ok(cluster::Entity::find()
            .filter(cluster::Column::Status.is_in([
                ClusterStatus::Active,
                ClusterStatus::Degraded,
                ClusterStatus::Updating,
            ]))
            .order_by_asc(cluster::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Records what the poller saw. Node rows are updated whatever the cluster's state
    /// (they are facts); the cluster's status moves between active and degraded only
    /// when no task is changing it; a new primary is recorded and reported once.
    pub async fn record_health(
        &self,
        cluster_id: Uuid,
        observed: &[NodeObservation],
        leader: Option<Uuid>,
        healthy: bool,
    ) -> Result<HealthChange, StoreError> {
        let tx = self.write_tx().await?;
        // Locked (PostgreSQL): every worker polls every cluster, and two that read the
        // old primary at once would both report the move (two events, hooks twice).
        let Some(c) = cluster::Entity::find_by_id(cluster_id).lock_exclusive().one(&tx).await? else {
            return Ok(HealthChange::default());
        };
        let nodes = node::Entity::find().filter(node::Column::ClusterId.eq(cluster_id)).all(&tx).await?;
        for o in observed {
            let Some(n) = nodes.iter().find(|n| n.id == o.node_id) else { continue };
            if matches!(n.status, NodeStatus::Building | NodeStatus::Deleting) {
                continue;
            }
            if let Some((from, to)) = apply_observation(&tx, n, o).await? {
                tracing::debug!(node = %n.name, %from, %to, "observed status not applied: the state machine forbids it");
            }
        }
        let mut change = HealthChange::default();
        let mut c = c;
        // Timelines only grow; remember the newest ever seen (a node that dies right
        // after its promotion may be the only one that had it).
        let newest = observed.iter().filter_map(|o| o.timeline).max().unwrap_or(0);
        if newest > c.newest_timeline {
            let mut am = c.into_active_model();
            am.newest_timeline = Set(newest);
            c = am.update(&tx).await?;
        }
        if let Some(l) = leader
            && c.primary_node_id != Some(l)
        {
            if let Some(old) = c.primary_node_id {
                change.primary = Some((old, l));
            }
            let mut am = c.into_active_model();
            am.primary_node_id = Set(Some(l));
            c = am.update(&tx).await?;
        }
        let want = if healthy { ClusterStatus::Active } else { ClusterStatus::Degraded };
        if matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded) && c.status != want {
            change.status = Some((c.status, want));
            set_cluster_status(&tx, c, want).await?;
        }
        tx.commit().await?;
        Ok(change)
    }

    /// A member reported a role change itself (Patroni `on_role_change`): recorded at
    /// once so the API shows the new primary before the next poll. Returns the
    /// cluster, or NotFound for an unknown cluster or member.
    pub async fn record_role_callback(
        &self,
        cluster_id: Uuid,
        member: &str,
        role: NodeRole,
        detail: &str,
    ) -> Result<cluster::Model, StoreError> {
        let tx = self.write_tx().await?;
        let c = cluster::Entity::find_by_id(cluster_id).one(&tx).await?.ok_or(StoreError::NotFound)?;
        let nodes = node::Entity::find().filter(node::Column::ClusterId.eq(cluster_id)).all(&tx).await?;
        let n = nodes.iter().find(|n| n.name == member).ok_or(StoreError::NotFound)?.clone();
        if role == NodeRole::Primary {
            // Only one primary: whoever held the role no longer does, as far as we know.
            for other in nodes.iter().filter(|o| o.id != n.id && o.role == NodeRole::Primary) {
                let mut am = other.clone().into_active_model();
                am.role = Set(NodeRole::Unknown);
                am.updated_at = Set(now());
                am.update(&tx).await?;
            }
        }
        let mut am = n.into_active_model();
        am.role = Set(role);
        if role == NodeRole::Primary {
            // A primary is nobody's standby (its own, if any, is recorded at the next poll).
            am.sync_standby = Set(false);
        }
        am.last_seen_at = Set(Some(now()));
        am.updated_at = Set(now());
        am.update(&tx).await?;
        self.add_event(&tx, c.project_id, c.id, None, "info", Some("on_role_change"), detail).await?;
        tx.commit().await?;
        Ok(c)
    }

    /// A built node's first observation, at the end of its build: it must be able to
    /// run (a node removed meanwhile cannot), so a refused status fails the build.
    pub async fn record_node_ready(&self, o: &NodeObservation) -> Result<(), StoreError> {
        let Some(n) = node::Entity::find_by_id(o.node_id).one(&self.db).await? else { return Ok(()) };
        match apply_observation(&self.db, &n, o).await? {
            None => Ok(()),
            Some((from, to)) => Err(StoreError::conflict(
                Conflict::InvalidState,
                format!("node {} is {from} and cannot become {to}", n.name),
            )),
        }
    }
}
