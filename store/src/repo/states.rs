//! The only writers of a cluster's and a node's status. Each checks the transition
//! with the state machine in `herd_core::status` and refuses what it forbids.

use herd_core::status::{ClusterStatus, NodeStatus, VolumeStatus};
use sea_orm::{ActiveModelTrait, ConnectionTrait, IntoActiveModel, Set};

use super::now;
use crate::entity::{cluster, node, volume};
use crate::{Conflict, NodeObservation, StoreError};

/// The one place a cluster's status changes: refuses transitions the domain forbids.
pub async fn set_cluster_status<C: ConnectionTrait>(
    conn: &C,
    c: cluster::Model,
    to: ClusterStatus,
) -> Result<cluster::Model, StoreError> {
    if !c.status.can_become(to) {
        return Err(StoreError::conflict(
            Conflict::InvalidState,
            format!("cluster '{}' is {} and cannot become {to}", c.name, c.status),
        ));
    }
    let mut am = c.into_active_model();
    am.status = Set(to);
    am.updated_at = Set(now());
    Ok(am.update(conn).await?)
}

/// The one place a node's status changes on request (a build, a power change, a
/// removal): refuses transitions the domain forbids.
pub async fn set_node_status<C: ConnectionTrait>(
    conn: &C,
    n: node::Model,
    to: NodeStatus,
) -> Result<node::Model, StoreError> {
    if !n.status.can_become(to) {
        return Err(StoreError::conflict(
            Conflict::InvalidState,
            format!("node {} is {} and cannot become {to}", n.name, n.status),
        ));
    }
    if n.status == to {
        return Ok(n);
    }
    let mut am = n.into_active_model();
    am.status = Set(to);
    am.updated_at = Set(now());
    Ok(am.update(conn).await?)
}

/// The one place an observation of a node is applied (the poller's rounds and the end
/// of a build). Role, timeline, lag and the other facts are always recorded; the
/// status only when the state machine allows the move. Returns the refused move, if
/// any, for the caller to judge: the poller keeps going, a build that expected its
/// nodes to run fails.
pub async fn apply_observation<C: ConnectionTrait>(
    conn: &C,
    n: &node::Model,
    o: &NodeObservation,
) -> Result<Option<(NodeStatus, NodeStatus)>, StoreError> {
    let ts = now();
    let refused = (!n.status.can_become(o.status)).then_some((n.status, o.status));
    let mut am = n.clone().into_active_model();
    if refused.is_none() {
        am.status = Set(o.status);
    }
    am.role = Set(o.role);
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
        am.update(conn).await?;
    }
    Ok(refused)
}

/// The one place a volume's status changes.
pub async fn set_volume_status<C: ConnectionTrait>(
    conn: &C,
    v: volume::ActiveModel,
    from: VolumeStatus,
    to: VolumeStatus,
) -> Result<volume::Model, StoreError> {
    if !from.can_become(to) {
        return Err(StoreError::conflict(
            Conflict::InvalidState,
            format!("a volume that is {from} cannot become {to}"),
        ));
    }
    let mut v = v;
    v.status = Set(to);
    v.updated_at = Set(now());
    Ok(v.update(conn).await?)
}
