//! Nodes and their volumes: rows made before the provider calls (so a crash after a
//! call finds the row and retries with the same token), what was built recorded by
//! intent (`server_created`, `volume_attached`, …), replicas added and removed.

use herd_core::quota::Quota;
use herd_core::status::{NodeRole, NodeStatus, VolumeStatus};
use herd_core::task::TaskInput;
use herd_core::values::Priority;
use uuid::Uuid;

use super::states::{set_node_status, set_volume_status};
use super::{new_id, now};
use crate::Conflict;
use crate::entity::{cluster, node, task, volume};
use crate::{Store, StoreError};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};

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

impl Store {
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
        // The cluster's own bound first: raising a quota would not help past it.
        let gb = u64::try_from(c.volume_gb).unwrap_or(0);
        self.check_quotas(
            &tx,
            project_id,
            &[(Quota::Nodes, u64::from(count)), (Quota::VolumeGb, u64::from(count) * gb)],
        )
        .await?;
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
                TaskInput::AddNodes { node_ids: ids },
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
        set_node_status(&tx, n, NodeStatus::Deleting).await?;
        let t = self
            .open_day2_task(&tx, c, TaskInput::RemoveNode { node_id }, &format!("remove node requested: {name}"), true)
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
        priority: Option<Priority>,
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
            am.priority = Set(i32::from(p.get()));
        }
        am.updated_at = Set(now());
        let n = am.update(&tx).await?;
        let summary = format!("node {}: no_failover {}, priority {}", n.name, n.no_failover, n.priority);
        // Priority is Herd's own (it picks switchover candidates); only the tag needs
        // the node's configuration rewritten.
        let t = if tag_change {
            Some(self.open_day2_task(&tx, c, TaskInput::UpdateCluster {}, &summary, true).await?)
        } else {
            self.add_event(&tx, project_id, id, None, "info", None, &summary).await?;
            None
        };
        tx.commit().await?;
        Ok((n, t))
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

    pub async fn nodes_of(&self, cluster_id: Uuid) -> Result<Vec<node::Model>, StoreError> {
        Ok(node::Entity::find()
            .filter(node::Column::ClusterId.eq(cluster_id))
            .order_by_asc(node::Column::Ordinal)
            .all(&self.db)
            .await?)
    }

    pub async fn volumes_of(&self, cluster_id: Uuid) -> Result<Vec<volume::Model>, StoreError> {
        Ok(volume::Entity::find().filter(volume::Column::ClusterId.eq(cluster_id)).all(&self.db).await?)
    }

    /// The volume row of a node, created on first use (before the provider call, so a
    /// crash after the call still finds the row and retries with the same token).
    pub async fn node_volume(&self, c: &cluster::Model, n: &node::Model) -> Result<volume::Model, StoreError> {
        if let Some(v) = volume::Entity::find().filter(volume::Column::NodeId.eq(n.id)).one(&self.db).await? {
            return Ok(v);
        }
        let ts = now();
        Ok(volume::ActiveModel {
            id: Set(new_id()),
            project_id: Set(c.project_id),
            cluster_id: Set(Some(c.id)),
            node_id: Set(Some(n.id)),
            provider: Set(c.provider.clone()),
            provider_ref: Set(None),
            size_gb: Set(c.volume_gb),
            status: Set(VolumeStatus::Creating),
            attachment: Set(None),
            created_at: Set(ts),
            updated_at: Set(ts),
        }
        .insert(&self.db)
        .await?)
    }

    async fn node(&self, id: Uuid) -> Result<node::Model, StoreError> {
        node::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)
    }

    async fn volume(&self, id: Uuid) -> Result<volume::Model, StoreError> {
        volume::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)
    }

    /// The provider made the node's volume.
    pub async fn volume_created(&self, volume_id: Uuid, provider_ref: &str) -> Result<volume::Model, StoreError> {
        let v = self.volume(volume_id).await?;
        let from = v.status;
        let mut am = v.into_active_model();
        am.provider_ref = Set(Some(provider_ref.to_owned()));
        set_volume_status(&self.db, am, from, VolumeStatus::Available).await
    }

    /// The provider attached the volume to its node's server (`attachment` says where
    /// the node finds it).
    pub async fn volume_attached(&self, volume_id: Uuid, attachment: &str) -> Result<volume::Model, StoreError> {
        let v = self.volume(volume_id).await?;
        let from = v.status;
        let mut am = v.into_active_model();
        am.attachment = Set(Some(attachment.to_owned()));
        set_volume_status(&self.db, am, from, VolumeStatus::Attached).await
    }

    /// The provider made the node's server. The node stays `building` until it joins.
    pub async fn server_created(
        &self,
        node_id: Uuid,
        server_ref: &str,
        address: Option<String>,
        host_key: Option<String>,
        volume_id: Uuid,
    ) -> Result<node::Model, StoreError> {
        let mut am = self.node(node_id).await?.into_active_model();
        am.server_ref = Set(Some(server_ref.to_owned()));
        am.address = Set(address);
        am.host_key = Set(host_key);
        am.volume_id = Set(Some(volume_id));
        am.updated_at = Set(now());
        Ok(am.update(&self.db).await?)
    }

    /// First contact with a server whose host key the provider did not report: the key
    /// seen is trusted and verified from now on. A recorded key is never replaced.
    pub async fn trust_host_key(&self, node_id: Uuid, key: &str) -> Result<(), StoreError> {
        let n = self.node(node_id).await?;
        if n.host_key.is_none() {
            let mut am = n.into_active_model();
            am.host_key = Set(Some(key.to_owned()));
            am.updated_at = Set(now());
            am.update(&self.db).await?;
        }
        Ok(())
    }

    /// A new node has joined the running cluster: `building` becomes `running`.
    pub async fn node_joined(&self, node_id: Uuid) -> Result<(), StoreError> {
        let n = self.node(node_id).await?;
        if n.status == NodeStatus::Building {
            set_node_status(&self.db, n, NodeStatus::Running).await?;
        }
        Ok(())
    }

    /// The provider reports the node's server running or stopped after a power change.
    /// A stopped node has no role. A status the state machine forbids (the node is
    /// being removed, say) is left as it is.
    pub async fn node_powered(&self, node_id: Uuid, running: bool) -> Result<(), StoreError> {
        let n = self.node(node_id).await?;
        let to = if running { NodeStatus::Running } else { NodeStatus::Stopped };
        let n = if n.status.can_become(to) { set_node_status(&self.db, n, to).await? } else { n };
        if !running && n.role != NodeRole::Unknown {
            let mut am = n.into_active_model();
            am.role = Set(NodeRole::Unknown);
            am.updated_at = Set(now());
            am.update(&self.db).await?;
        }
        Ok(())
    }

    /// The node is being taken out (auto-heal replaces it).
    pub async fn node_leaving(&self, node_id: Uuid) -> Result<(), StoreError> {
        let n = self.node(node_id).await?;
        set_node_status(&self.db, n, NodeStatus::Deleting).await?;
        Ok(())
    }
}
