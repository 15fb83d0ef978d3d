//! Day-2 operations and observed health: settings changes, action/scale tasks, the
//! poller's observations and the HA agent's role-change callbacks.
//!
//! Every request that changes a running cluster becomes one task, and a cluster has at
//! most one such task open at a time: two concurrent switchovers, or a scale-out during
//! a rolling restart, would fight over the same members.

use herd_core::hooks::Hooks;
use herd_core::status::{ClusterStatus, NodeRole, NodeStatus, TaskKind, TaskStatus};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::clusters::{ClusterView, insert_task, set_cluster_status};
use super::{new_id, now};
use crate::Conflict;
use crate::entity::{cluster, node, task, volume};
use crate::{Store, StoreError};

pub(crate) fn hooks_aad(id: Uuid) -> String {
    format!("clusters.hooks:{id}")
}

/// Failover policy: what Patroni's dynamic configuration carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaPolicy {
    pub synchronous: bool,
    pub synchronous_strict: bool,
    pub maximum_lag_on_failover: i64,
    pub ttl: i32,
    pub loop_wait: i32,
    pub retry_timeout: i32,
}

/// A `PATCH /v1/clusters/{id}`, already validated. None: unchanged.
#[derive(Debug, Default)]
pub struct ClusterPatch {
    pub policy: Option<HaPolicy>,
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub auto_heal: Option<bool>,
    /// Some(empty) removes every hook.
    pub hooks: Option<Hooks>,
}

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

fn cluster_busy(t: &task::Model) -> StoreError {
    StoreError::conflict(
        Conflict::ClusterBusy,
        format!("task {} ({}) is {} on this cluster; wait for it to finish", t.id, t.kind, t.status),
    )
}

impl Store {
    /// Checks the cluster can take a day-2 task now: it runs, and nothing else is open.
    /// On PostgreSQL the cluster row is locked (`FOR UPDATE`) until the caller's
    /// transaction ends, so two transactions (an API request and a worker's scheduler,
    /// say) cannot both find the cluster free and both add a task; SQLite's write
    /// transactions are serial already.
    pub(crate) async fn check_ready<C: ConnectionTrait>(&self, conn: &C, c: &cluster::Model) -> Result<(), StoreError> {
        let c = &cluster::Entity::find_by_id(c.id).lock_exclusive().one(conn).await?.ok_or(StoreError::NotFound)?;
        if !matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded) {
            return Err(StoreError::conflict(
                Conflict::ClusterNotReady,
                format!("cluster '{}' is {}; day-2 operations need it active or degraded", c.name, c.status),
            ));
        }
        let open = task::Entity::find()
            .filter(task::Column::ClusterId.eq(c.id))
            .filter(task::Column::Status.is_in([TaskStatus::Queued, TaskStatus::Running]))
            .one(conn)
            .await?;
        match open {
            Some(t) => Err(cluster_busy(&t)),
            None => Ok(()),
        }
    }

    async fn open_day2_task<C: ConnectionTrait>(
        &self,
        conn: &C,
        c: cluster::Model,
        kind: TaskKind,
        input: serde_json::Value,
        summary: &str,
        updating: bool,
    ) -> Result<task::Model, StoreError> {
        let mut t = insert_task(conn, c.project_id, c.id, kind).await?;
        let mut am = t.clone().into_active_model();
        am.payload = Set(serde_json::json!({ "input": input }));
        t = am.update(conn).await?;
        self.add_event(conn, c.project_id, c.id, Some(t.id), "info", None, summary).await?;
        if updating {
            set_cluster_status(conn, c, ClusterStatus::Updating).await?;
        }
        Ok(t)
    }

    /// Applies a settings change. Herd-only settings (hooks, auto_heal) take effect at
    /// once; policy and parameters are recorded as desired and pushed into the cluster
    /// by the returned task.
    pub async fn update_cluster(
        &self,
        project_id: Uuid,
        id: Uuid,
        patch: ClusterPatch,
    ) -> Result<(ClusterView, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        let needs_task = patch.policy.is_some_and(|p| p != policy_of(&c))
            || patch.parameters.as_ref().is_some_and(|p| serde_json::Value::Object(p.clone()) != c.parameters);
        if needs_task {
            self.check_ready(&tx, &c).await?;
        }
        let mut am = c.clone().into_active_model();
        let mut changed = Vec::new();
        if let Some(p) = patch.policy {
            am.synchronous = Set(p.synchronous);
            am.synchronous_strict = Set(p.synchronous_strict);
            am.maximum_lag_on_failover = Set(p.maximum_lag_on_failover);
            am.ha_ttl = Set(p.ttl);
            am.ha_loop_wait = Set(p.loop_wait);
            am.ha_retry_timeout = Set(p.retry_timeout);
            changed.push("failover policy");
        }
        if let Some(p) = patch.parameters {
            am.parameters = Set(serde_json::Value::Object(p));
            changed.push("parameters");
        }
        if let Some(a) = patch.auto_heal {
            am.auto_heal = Set(a);
            changed.push("auto_heal");
        }
        if let Some(h) = &patch.hooks {
            am.hooks_enc = Set((!h.is_empty()).then(|| self.key().encrypt_str(&h.to_plaintext(), &hooks_aad(id))));
            changed.push("hooks");
        }
        am.updated_at = Set(now());
        let c = am.update(&tx).await?;
        let t = if needs_task {
            Some(
                self.open_day2_task(
                    &tx,
                    c,
                    TaskKind::UpdateCluster,
                    serde_json::json!({}),
                    &format!("update requested: {}", changed.join(", ")),
                    true,
                )
                .await?,
            )
        } else {
            if !changed.is_empty() {
                self.add_event(&tx, project_id, id, None, "info", None, &format!("updated: {}", changed.join(", ")))
                    .await?;
            }
            None
        };
        tx.commit().await?;
        Ok((self.get_cluster(project_id, id).await?, t))
    }

    /// Queues an action, a power change or another day-2 task for a running cluster.
    /// `node_ids` must belong to the cluster.
    pub async fn request_task(
        &self,
        project_id: Uuid,
        id: Uuid,
        kind: TaskKind,
        node_ids: &[Uuid],
        input: serde_json::Value,
        summary: &str,
    ) -> Result<task::Model, StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        for n in node_ids {
            node::Entity::find_by_id(*n)
                .filter(node::Column::ClusterId.eq(id))
                .one(&tx)
                .await?
                .ok_or(StoreError::Invalid { field: "node_id", message: format!("cluster has no node {n}") })?;
        }
        // Powering a server is allowed whatever the cluster's health: it is how an
        // operator brings a lost node back.
        if kind == TaskKind::PowerNode {
            if !matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded | ClusterStatus::Failed) {
                self.check_ready(&tx, &c).await?;
            } else if let Some(t) = task::Entity::find()
                .filter(task::Column::ClusterId.eq(id))
                .filter(task::Column::Status.is_in([TaskStatus::Queued, TaskStatus::Running]))
                .one(&tx)
                .await?
            {
                return Err(cluster_busy(&t));
            }
        } else {
            self.check_ready(&tx, &c).await?;
        }
        let updating = matches!(kind, TaskKind::ClusterAction | TaskKind::ReplaceNode);
        let t = self.open_day2_task(&tx, c, kind, input, summary, updating).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Adds `count` node rows (building, joining the running DCS) and the task that
    /// builds them.
    pub async fn add_nodes(
        &self,
        project_id: Uuid,
        id: Uuid,
        count: u8,
        max_nodes: u8,
    ) -> Result<(task::Model, Vec<node::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        self.check_ready(&tx, &c).await?;
        let existing = node::Entity::find().filter(node::Column::ClusterId.eq(id)).all(&tx).await?;
        if existing.len() + usize::from(count) > usize::from(max_nodes) {
            return Err(StoreError::conflict(
                Conflict::TooManyNodes,
                format!("the cluster has {} node(s); at most {max_nodes} are allowed", existing.len()),
            ));
        }
        let first = existing.iter().map(|n| n.ordinal).max().unwrap_or(-1) + 1;
        let ts = now();
        let mut added = Vec::new();
        for ordinal in first..first + i32::from(count) {
            added.push(insert_node(&tx, &c, ordinal, true, ts).await?);
        }
        let mut am = c.clone().into_active_model();
        am.node_count = Set((existing.len() + added.len()) as i32);
        let c = am.update(&tx).await?;
        let names: Vec<&str> = added.iter().map(|n| n.name.as_str()).collect();
        let ids: Vec<Uuid> = added.iter().map(|n| n.id).collect();
        let t = self
            .open_day2_task(
                &tx,
                c,
                TaskKind::AddNodes,
                serde_json::json!({ "node_ids": ids }),
                &format!("add replicas requested: {}", names.join(", ")),
                true,
            )
            .await?;
        tx.commit().await?;
        Ok((t, added))
    }

    /// Marks a replica for removal and queues the task that removes it. The primary
    /// and the last node cannot be removed.
    pub async fn request_remove_node(
        &self,
        project_id: Uuid,
        id: Uuid,
        node_id: Uuid,
    ) -> Result<task::Model, StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        let nodes = node::Entity::find().filter(node::Column::ClusterId.eq(id)).all(&tx).await?;
        let n = nodes.iter().find(|n| n.id == node_id).ok_or(StoreError::NotFound)?.clone();
        self.check_ready(&tx, &c).await?;
        if n.role == NodeRole::Primary || c.primary_node_id == Some(n.id) {
            return Err(StoreError::conflict(
                Conflict::NodeIsPrimary,
                format!("{} is the primary; switch over to another node first (POST .../actions)", n.name),
            ));
        }
        if nodes.len() <= 1 {
            return Err(StoreError::conflict(
                Conflict::LastNode,
                "a cluster keeps at least one node; delete the cluster",
            ));
        }
        let name = n.name.clone();
        let mut am = n.into_active_model();
        am.status = Set(NodeStatus::Deleting);
        am.updated_at = Set(now());
        am.update(&tx).await?;
        let t = self
            .open_day2_task(
                &tx,
                c,
                TaskKind::RemoveNode,
                serde_json::json!({ "node_id": node_id }),
                &format!("remove node requested: {name}"),
                true,
            )
            .await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Changes a node's failover preferences and queues the task that pushes them.
    pub async fn set_node_preferences(
        &self,
        project_id: Uuid,
        id: Uuid,
        node_id: Uuid,
        no_failover: Option<bool>,
        priority: Option<u8>,
    ) -> Result<(node::Model, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        let n = node::Entity::find_by_id(node_id)
            .filter(node::Column::ClusterId.eq(id))
            .one(&tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let tag_change = no_failover.is_some_and(|v| v != n.no_failover);
        if tag_change {
            self.check_ready(&tx, &c).await?;
        }
        let mut am = n.clone().into_active_model();
        if let Some(v) = no_failover {
            am.no_failover = Set(v);
        }
        if let Some(p) = priority {
            am.priority = Set(i32::from(p));
        }
        am.updated_at = Set(now());
        let n = am.update(&tx).await?;
        let summary = format!("node {}: no_failover {}, priority {}", n.name, n.no_failover, n.priority);
        // Priority is Herd's own (it picks switchover candidates); only the tag needs
        // the node's configuration rewritten.
        let t = if tag_change {
            Some(self.open_day2_task(&tx, c, TaskKind::UpdateCluster, serde_json::json!({}), &summary, true).await?)
        } else {
            self.add_event(&tx, project_id, id, None, "info", None, &summary).await?;
            None
        };
        tx.commit().await?;
        Ok((n, t))
    }

    /// The cluster's hooks, decrypted (empty when none are set).
    pub fn cluster_hooks(&self, c: &cluster::Model) -> Result<Hooks, StoreError> {
        let Some(enc) = &c.hooks_enc else { return Ok(Hooks::default()) };
        let plain = self.key().decrypt_str(enc, &hooks_aad(c.id))?;
        Hooks::from_plaintext(plain.expose_secret()).ok_or(StoreError::Crypto(herd_core::crypto::CryptoError::Decrypt))
    }

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
        let ts = now();
        let nodes = node::Entity::find().filter(node::Column::ClusterId.eq(cluster_id)).all(&tx).await?;
        for o in observed {
            let Some(n) = nodes.iter().find(|n| n.id == o.node_id) else { continue };
            if matches!(n.status, NodeStatus::Building | NodeStatus::Deleting) {
                continue;
            }
            let status = if n.status.can_become(o.status) { o.status } else { n.status };
            let mut am = n.clone().into_active_model();
            am.role = Set(o.role);
            am.status = Set(status);
            am.state = Set(o.state.clone());
            am.timeline = Set(o.timeline);
            am.lag_bytes = Set(o.lag_bytes);
            am.pending_restart = Set(o.pending_restart);
            am.sync_standby = Set(o.sync_standby);
            if o.seen {
                am.last_seen_at = Set(Some(ts));
            }
            if am.is_changed() {
                am.updated_at = Set(ts);
                am.update(&tx).await?;
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

    /// Ends a day-2 task: the task gets its outcome and an `updating` cluster returns to
    /// `active` in the same transaction (the poller then says whether it is degraded).
    pub async fn finish_day2(
        &self,
        task_id: Uuid,
        worker: &str,
        cluster_id: Uuid,
        status: TaskStatus,
        error: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        self.finish_task(task_id, worker, status, error).await?;
        let tx = self.write_tx().await?;
        if let Some(c) = cluster::Entity::find_by_id(cluster_id).one(&tx).await?
            && c.status == ClusterStatus::Updating
        {
            set_cluster_status(&tx, c, ClusterStatus::Active).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records whether the node's database should run (`stop`/`start` actions).
    pub async fn set_node_desired(&self, node_id: Uuid, running: bool) -> Result<(), StoreError> {
        if let Some(n) = node::Entity::find_by_id(node_id).one(&self.db).await? {
            let mut am = n.into_active_model();
            am.desired_running = Set(running);
            am.updated_at = Set(now());
            am.update(&self.db).await?;
        }
        Ok(())
    }

    /// Forgets a removed node: its row, its volume row, and the cluster's node count.
    pub async fn remove_node_rows(&self, node_id: Uuid) -> Result<(), StoreError> {
        let tx = self.write_tx().await?;
        if let Some(n) = node::Entity::find_by_id(node_id).one(&tx).await? {
            volume::Entity::delete_many().filter(volume::Column::NodeId.eq(node_id)).exec(&tx).await?;
            node::Entity::delete_by_id(node_id).exec(&tx).await?;
            if let Some(c) = cluster::Entity::find_by_id(n.cluster_id).one(&tx).await? {
                let left = node::Entity::find().filter(node::Column::ClusterId.eq(c.id)).all(&tx).await?.len();
                let mut am = c.into_active_model();
                am.node_count = Set(left as i32);
                am.updated_at = Set(now());
                am.update(&tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// A new node row replacing `old` (same failover preferences), for auto-heal.
    pub async fn add_replacement_node(&self, c: &cluster::Model, old: &node::Model) -> Result<node::Model, StoreError> {
        let tx = self.write_tx().await?;
        let next = node::Entity::find()
            .filter(node::Column::ClusterId.eq(c.id))
            .all(&tx)
            .await?
            .iter()
            .map(|n| n.ordinal)
            .max()
            .unwrap_or(-1)
            + 1;
        let n = insert_node(&tx, c, next, true, now()).await?;
        let mut am = n.into_active_model();
        am.no_failover = Set(old.no_failover);
        am.priority = Set(old.priority);
        let n = am.update(&tx).await?;
        tx.commit().await?;
        Ok(n)
    }
}

pub fn policy_of(c: &cluster::Model) -> HaPolicy {
    HaPolicy {
        synchronous: c.synchronous,
        synchronous_strict: c.synchronous_strict,
        maximum_lag_on_failover: c.maximum_lag_on_failover,
        ttl: c.ha_ttl,
        loop_wait: c.ha_loop_wait,
        retry_timeout: c.ha_retry_timeout,
    }
}

pub(crate) async fn insert_node<C: ConnectionTrait>(
    conn: &C,
    c: &cluster::Model,
    ordinal: i32,
    joins_existing: bool,
    ts: chrono::DateTime<chrono::Utc>,
) -> Result<node::Model, StoreError> {
    Ok(node::ActiveModel {
        id: Set(new_id()),
        cluster_id: Set(c.id),
        name: Set(format!("{}-{ordinal}", c.name)),
        ordinal: Set(ordinal),
        role: Set(NodeRole::Unknown),
        status: Set(NodeStatus::Building),
        server_ref: Set(None),
        volume_id: Set(None),
        address: Set(None),
        host_key: Set(None),
        lag_bytes: Set(None),
        timeline: Set(None),
        last_seen_at: Set(None),
        no_failover: Set(false),
        priority: Set(0),
        state: Set(None),
        pending_restart: Set(false),
        sync_standby: Set(false),
        desired_running: Set(true),
        joins_existing: Set(joins_existing),
        created_at: Set(ts),
        updated_at: Set(ts),
    }
    .insert(conn)
    .await?)
}
