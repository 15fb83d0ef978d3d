//! The health poller and reconciler. Every `health_interval_ms` it asks the HA agent
//! of every running cluster (bounded parallelism) for each member's role, state,
//! timeline and lag, records it, and moves the cluster between `active` and
//! `degraded`. A primary that moved without a Herd task is an automatic failover:
//! recorded in the history and announced to the post-failover hook.
//!
//! Every `reconcile_interval_secs`, an unhealthy cluster's desired state is compared
//! with the actual one: daemons that should run on a running server are started; a
//! node whose server is gone is reported and, with `auto_heal`, replaced by a task.

use crate::report::OrWarn;
use futures_util::StreamExt;
use herd_core::status::{ActionKind, ClusterStatus, NodeRole, NodeStatus};
use herd_core::task::{ActionInput, TaskInput};
use herd_datastores::{ClusterHealth, ClusterSpec, Manager, NodeSpec};
use herd_providers::{ProviderError, ServerStatus};
use herd_store::{Cluster, Node};
use herd_store::{HealthChange, NodeObservation, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::Ctx;
use crate::hooks::{self, HookEvent, Phase};
use crate::spec::{cluster_spec, node_spec_of};

/// What the poller keeps between rounds for one cluster.
struct Watch {
    /// The member list the spec was built from; a change rebuilds it.
    fingerprint: String,
    spec: Arc<ClusterSpec>,
    /// Nodes whose server the provider no longer knows.
    gone: HashSet<Uuid>,
    last_reconcile: Instant,
    /// When the DCS leader's placement was last checked.
    last_placement: Option<Instant>,
    /// Since when no member leads (None while one does).
    leaderless_since: Option<Instant>,
    /// The leaderless state was reported in the history (once per episode).
    leaderless_noted: bool,
}

#[derive(Default)]
struct State {
    watches: HashMap<Uuid, Watch>,
}

pub async fn run(ctx: Arc<Ctx>) {
    let state = Arc::new(Mutex::new(State::default()));
    let mut tick = tokio::time::interval(Duration::from_millis(ctx.settings.health_interval_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let clusters = match ctx.store.clusters_to_watch().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "health poller: listing clusters failed");
                continue;
            }
        };
        let ids: HashSet<Uuid> = clusters.iter().map(|c| c.id).collect();
        state.lock().await.watches.retain(|id, _| ids.contains(id));
        futures_util::stream::iter(clusters)
            .for_each_concurrent(ctx.settings.health_concurrency.max(1), |c| {
                let (ctx, state) = (ctx.clone(), state.clone());
                async move {
                    let id = c.id;
                    if let Err(e) = check(&ctx, &state, c).await {
                        tracing::debug!(cluster = %id, error = %e, "health check failed");
                    }
                }
            })
            .await;
    }
}

fn fingerprint(c: &Cluster, members: &[&Node]) -> String {
    let mut f = format!("{}:{}:{}:{}", c.ha_ttl, c.ha_loop_wait, c.ha_retry_timeout, c.synchronous);
    for n in members {
        f.push_str(&format!(
            "|{}:{}:{}:{}",
            n.id,
            n.server_ref.as_deref().unwrap_or(""),
            n.address.as_deref().unwrap_or(""),
            n.no_failover
        ));
    }
    f
}

/// Nodes that are part of the running cluster (not being built or removed).
fn is_member(n: &Node) -> bool {
    n.server_ref.is_some() && !matches!(n.status, NodeStatus::Building | NodeStatus::Deleting)
}

async fn manager(ctx: &Ctx, c: &Cluster) -> Result<Manager, String> {
    let ds = ctx.store.get_datastore(&c.datastore).await.map_err(|e| e.to_string())?;
    ctx.managers.require(&ds.manager).cloned().map_err(|e| e.to_string())
}

/// Builds the spec of the running members. A member whose server the provider no
/// longer knows is left out and returned as gone.
pub(crate) async fn member_spec(
    ctx: &Ctx,
    c: &Cluster,
    members: &[&Node],
) -> Result<(ClusterSpec, HashSet<Uuid>), String> {
    let provider =
        ctx.providers.get(&c.provider).ok_or_else(|| format!("provider {} is not configured", c.provider))?;
    let store = &ctx.store;
    let (_, key) = store.cluster_private_key(c).await.map_err(|e| e.to_string())?;
    let vols = store.volumes_of(c.id).await.map_err(|e| e.to_string())?;
    let version = store.get_version(&c.datastore, &c.version).await.map_err(|e| e.to_string())?;
    let pw = store.cluster_passwords(c).await.map_err(|e| e.to_string())?;
    let mut specs = Vec::new();
    let mut gone = HashSet::new();
    for n in members {
        let v = vols.iter().find(|v| v.node_id == Some(n.id));
        match n.server_ref.as_deref().map(|s| (s, provider.clone())) {
            Some((sref, p)) => match p.get_server(sref).await {
                Err(ProviderError::NotFound(_)) => {
                    gone.insert(n.id);
                }
                Err(e) => return Err(e.to_string()),
                Ok(server) => specs.push(node_spec_of(&server, n, v, &key).map_err(|e| format!("{e:?}"))?),
            },
            None => {
                gone.insert(n.id);
            }
        }
    }
    let backup = ctx.backup_config(c);
    let callback = ctx.callback_for(c.id, &specs);
    let spec = cluster_spec(ctx, c, &version, specs, pw, callback, backup).map_err(|e| format!("{e:?}"))?;
    Ok((spec, gone))
}

/// Node status from what the HA agent says of the member.
fn status_of(state: &str, desired_running: bool) -> NodeStatus {
    match state {
        "unknown" => NodeStatus::Unreachable,
        "stopped" | "stopping" => NodeStatus::Stopped,
        _ if !desired_running => NodeStatus::Stopped,
        "crashed" | "start failed" => NodeStatus::Failed,
        _ => NodeStatus::Running,
    }
}

/// Whether a member does its job: the primary runs, a replica streams.
fn is_healthy(role: NodeRole, state: &str) -> bool {
    matches!((role, state), (NodeRole::Primary, "running") | (NodeRole::Replica, "streaming"))
}

/// Turns the agent's view into rows' observations; returns them with the leader's
/// node id and whether every node is healthy.
pub(crate) fn observations(
    nodes: &[Node],
    health: &ClusterHealth,
    gone: &HashSet<Uuid>,
    powered_off: &HashSet<Uuid>,
    synchronous: bool,
) -> (Vec<NodeObservation>, Option<Uuid>, bool) {
    let mut obs = Vec::new();
    let mut healthy = health.leader.is_some();
    // In synchronous mode the primary's loss is only covered (by a failover without
    // loss) while Patroni has a synchronous standby on record.
    if synchronous && nodes.iter().filter(|n| is_member(n)).count() >= 2 {
        healthy &= health.has_sync_standby();
    }
    let mut leader = None;
    for n in nodes.iter().filter(|n| is_member(n)) {
        let h = health.nodes.iter().find(|h| h.name == n.name);
        let (role, state) = match h {
            Some(h) if !gone.contains(&n.id) => (h.role, h.state.clone()),
            _ => (NodeRole::Unknown, "unknown".to_owned()),
        };
        if health.leader.as_deref() == Some(n.name.as_str()) {
            leader = Some(n.id);
        }
        healthy &= is_healthy(role, &state) && n.desired_running;
        obs.push(NodeObservation {
            node_id: n.id,
            role,
            status: if gone.contains(&n.id) {
                NodeStatus::Failed
            } else if powered_off.contains(&n.id) {
                NodeStatus::Stopped
            } else {
                status_of(&state, n.desired_running)
            },
            seen: state != "unknown",
            state: Some(state),
            timeline: h.and_then(|h| h.timeline),
            lag_bytes: h.and_then(|h| h.lag_bytes),
            pending_restart: h.is_some_and(|h| h.pending_restart),
            sync_standby: h.is_some_and(|h| h.sync_standby && h.role == NodeRole::Replica),
        });
    }
    (obs, leader, healthy)
}

/// Observes a cluster through its manager and records it. Used by the poller and by
/// day-2 tasks when they finish (so the API shows the outcome at once). Returns what
/// changed, whether the cluster is healthy, and what the HA agent reported.
pub(crate) async fn observe_and_record(
    ctx: &Ctx,
    mgr: &Manager,
    c: &Cluster,
    spec: &ClusterSpec,
    gone: &HashSet<Uuid>,
) -> Result<(HealthChange, bool, ClusterHealth), StoreError> {
    let health = mgr.lifecycle.health(spec).await.unwrap_or_default();
    let nodes = ctx.store.nodes_of(c.id).await?;
    // A member whose agent does not answer: the provider tells a powered-off server
    // (stopped) from an unreachable one.
    let mut powered_off = HashSet::new();
    if let Some(p) = ctx.providers.get(&c.provider) {
        for n in nodes.iter().filter(|n| is_member(n)) {
            let answering = health.nodes.iter().any(|h| h.name == n.name && h.state != "unknown");
            if let (false, Some(sref)) = (answering, &n.server_ref)
                && let Ok(s) = p.get_server(sref).await
                && s.status == ServerStatus::Stopped
            {
                powered_off.insert(n.id);
            }
        }
    }
    let (obs, leader, healthy) = observations(&nodes, &health, gone, &powered_off, c.synchronous);
    let change = ctx.store.record_health(c.id, &obs, leader, healthy).await?;
    Ok((change, healthy, health))
}

fn name_of(nodes: &[Node], id: Uuid) -> String {
    nodes.iter().find(|n| n.id == id).map(|n| n.name.clone()).unwrap_or_else(|| id.to_string())
}

async fn check(ctx: &Arc<Ctx>, state: &Arc<Mutex<State>>, c: Cluster) -> Result<(), String> {
    let store = &ctx.store;
    let mgr = manager(ctx, &c).await?;
    let nodes = store.nodes_of(c.id).await.map_err(|e| e.to_string())?;
    let members: Vec<&Node> = nodes.iter().filter(|n| is_member(n)).collect();
    let fp = fingerprint(&c, &members);
    let cached =
        state.lock().await.watches.get(&c.id).filter(|w| w.fingerprint == fp).map(|w| (w.spec.clone(), w.gone.clone()));
    let (spec, gone) = match cached {
        Some(x) => x,
        None => {
            let (spec, gone) = member_spec(ctx, &c, &members).await?;
            let spec = Arc::new(spec);
            state.lock().await.watches.insert(
                c.id,
                Watch {
                    fingerprint: fp,
                    spec: spec.clone(),
                    gone: gone.clone(),
                    last_reconcile: Instant::now(),
                    last_placement: None,
                    leaderless_since: None,
                    leaderless_noted: false,
                },
            );
            (spec, gone)
        }
    };
    let (change, healthy, health) = observe_and_record(ctx, &mgr, &c, &spec, &gone).await.map_err(|e| e.to_string())?;
    leaderless(ctx, state, &c, &nodes, &health).await;
    let leader = health.leader;
    // With three or more members, keep etcd's leader off the primary's node: losing
    // both at once costs an etcd election that renews the leader key (~one ttl more).
    if let Some(leader) = leader.filter(|_| healthy && spec.members.len() >= 3 && c.status != ClusterStatus::Updating) {
        let due = {
            let mut st = state.lock().await;
            let every = Duration::from_secs(ctx.settings.reconcile_interval_secs);
            match st.watches.get_mut(&c.id) {
                Some(w) if change.primary.is_some() || w.last_placement.is_none_or(|t| t.elapsed() >= every) => {
                    w.last_placement = Some(Instant::now());
                    true
                }
                _ => false,
            }
        };
        if due {
            match mgr.membership.place_dcs_leader(&spec, &leader).await {
                Ok(Some(to)) => {
                    let msg = format!("etcd leadership moved from {leader} (the primary's node) to {to}");
                    store.log_event(&c, None, "info", Some("dcs_leader"), &msg).await.or_warn("event");
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(cluster = %c.name, error = %e, "placing the etcd leader failed"),
            }
        }
    }
    if let Some((from, to)) = change.status {
        let (level, msg) = match to {
            ClusterStatus::Degraded => ("warn", "cluster is degraded: not every node is healthy".to_owned()),
            _ => ("info", format!("cluster is {to} again")),
        };
        tracing::info!(cluster = %c.name, %from, %to, "cluster health changed");
        store.log_event(&c, None, level, Some("health"), &msg).await.or_warn("event");
    }
    if let Some((old, new)) = change.primary
        && c.status != ClusterStatus::Updating
    {
        let (from, to) = (name_of(&nodes, old), name_of(&nodes, new));
        tracing::warn!(cluster = %c.name, %from, %to, "primary moved without a Herd task: automatic failover");
        store
            .log_event(
                &c,
                None,
                "warn",
                Some("failover"),
                &format!("automatic failover: primary moved from {from} to {to}"),
            )
            .await
            .or_warn("event");
        let ctx2 = ctx.clone();
        let c2 = c.clone();
        tokio::spawn(async move {
            let ev =
                HookEvent { cluster: &c2, kind: "automatic_failover", from: Some(&from), to: Some(&to), task_id: None };
            hooks::call(&ctx2, Phase::Post, ev).await;
        });
    }
    if !healthy && matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded) {
        let due = {
            let mut st = state.lock().await;
            match st.watches.get_mut(&c.id) {
                Some(w) if w.last_reconcile.elapsed() >= Duration::from_secs(ctx.settings.reconcile_interval_secs) => {
                    w.last_reconcile = Instant::now();
                    true
                }
                _ => false,
            }
        };
        if due {
            reconcile(ctx, state, &mgr, &c, &nodes, &spec).await;
        }
    }
    Ok(())
}

/// A cluster without a leader long after Patroni should have elected one (3 ttl: it
/// needs about ttl + loop_wait) while replicas run. Patroni 3.0 in synchronous mode
/// promotes only a recorded synchronous standby; right after a promotion the new
/// primary has none for a few seconds, and if it dies then no replica may take over.
/// Synchronous but not strict: that primary was acknowledging commits without a
/// standby anyway, so Herd forces a failover to the most advanced replica (which
/// holds every commit any survivor has) and says what may be lost. Strict, or an
/// asynchronous cluster whose replicas all lag beyond `maximum_lag_on_failover`: the
/// policy forbids it, so Herd reports it once and leaves the choice to an operator.
async fn leaderless(ctx: &Ctx, state: &Mutex<State>, c: &Cluster, nodes: &[Node], health: &ClusterHealth) {
    let since = {
        let mut st = state.lock().await;
        let Some(w) = st.watches.get_mut(&c.id) else { return };
        if health.leader.is_some() {
            w.leaderless_since = None;
            w.leaderless_noted = false;
            return;
        }
        *w.leaderless_since.get_or_insert_with(Instant::now)
    };
    let waited = since.elapsed();
    if waited < leaderless_grace(c.ha_ttl) || !matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded) {
        return;
    }
    let candidates = health
        .nodes
        .iter()
        .filter(|h| h.role == NodeRole::Replica && matches!(h.state.as_str(), "running" | "streaming"))
        .filter(|h| nodes.iter().any(|n| n.name == h.name && is_member(n) && n.desired_running && !n.no_failover))
        .count();
    if candidates == 0 {
        return;
    }
    let secs = waited.as_secs();
    if c.synchronous && !c.synchronous_strict {
        let input =
            TaskInput::ClusterAction(ActionInput { action: ActionKind::Failover, node_id: None, candidate_id: None });
        let summary = format!("forced failover: no primary for {secs} s while replicas run");
        match ctx.store.request_task(c.project_id, c.id, &[], input, &summary).await {
            Ok(t) => {
                let msg = format!(
                    "no primary for {secs} s although {candidates} replica(s) run: Patroni promotes only a recorded \
                     synchronous standby and none is alive (the primary died before it had one). Forcing a failover \
                     to the most advanced replica; commits the primary acknowledged without a synchronous standby \
                     may be lost"
                );
                tracing::warn!(cluster = %c.name, task = %t.id, "{msg}");
                ctx.store.log_event(c, Some(t.id), "warn", Some("failover"), &msg).await.or_warn("event");
                if let Err(e) = ctx.queue.push(t.id).await {
                    tracing::warn!(task = %t.id, error = %e, "enqueue failed; the sweeper will deliver it");
                }
            }
            Err(e) => tracing::debug!(cluster = %c.name, error = %e, "forced failover not queued now"),
        }
        return;
    }
    let first =
        state.lock().await.watches.get_mut(&c.id).is_some_and(|w| !std::mem::replace(&mut w.leaderless_noted, true));
    if first {
        let why = if c.synchronous {
            "synchronous_strict allows promoting only a recorded synchronous standby, and none is alive"
        } else {
            "every running replica lags more than maximum_lag_on_failover, or none is eligible"
        };
        let msg = format!(
            "no primary for {secs} s although {candidates} replica(s) run: {why}. A failover action \
             (POST /v1/clusters/{{id}}/actions {{\"action\":\"failover\"}}) promotes the most advanced replica, \
             accepting the loss of what only the old primary had"
        );
        tracing::error!(cluster = %c.name, "{msg}");
        ctx.store.log_event(c, None, "error", Some("failover"), &msg).await.or_warn("event");
    }
}

/// How long a cluster may have no leader before Herd steps in: Patroni needs about
/// ttl + loop_wait to replace a dead primary; three ttl leaves room for an etcd
/// election and a slow promotion.
fn leaderless_grace(ttl: i32) -> Duration {
    Duration::from_secs(3 * u64::try_from(ttl.max(1)).unwrap_or(1))
}

/// Desired versus actual for an unhealthy cluster's nodes.
async fn reconcile(
    ctx: &Arc<Ctx>,
    state: &Arc<Mutex<State>>,
    mgr: &Manager,
    c: &Cluster,
    nodes: &[Node],
    spec: &ClusterSpec,
) {
    let store = &ctx.store;
    let Some(provider) = ctx.providers.get(&c.provider) else { return };
    for n in nodes.iter().filter(|n| is_member(n) && n.desired_running) {
        let Some(sref) = &n.server_ref else { continue };
        match provider.get_server(sref).await {
            Err(ProviderError::NotFound(_)) => {
                let first = state.lock().await.watches.get_mut(&c.id).is_some_and(|w| w.gone.insert(n.id));
                if first {
                    store
                        .log_event(c, None, "error", Some("reconcile"), &format!("server of node {} is gone", n.name))
                        .await
                        .or_warn("event");
                }
                if c.auto_heal {
                    heal(ctx, c, n).await;
                }
            }
            Err(e) => tracing::debug!(node = %n.name, error = %e, "reconcile: server state unknown"),
            // Powered off by an operator (or the cloud): that is theirs to undo.
            Ok(s) if s.status != ServerStatus::Running => {}
            Ok(_) => {
                let Some(m): Option<&NodeSpec> = spec.members.iter().find(|m| m.node_id == n.id) else { continue };
                match mgr.operations.ensure_running(spec, m).await {
                    Ok(started) if !started.is_empty() => {
                        let msg = format!("reconcile: started {} on {}", started.join(" and "), n.name);
                        tracing::info!(cluster = %c.name, "{msg}");
                        store.log_event(c, None, "warn", Some("reconcile"), &msg).await.or_warn("event");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(node = %n.name, error = %e, "reconcile: ensure_running failed"),
                }
            }
        }
    }
}

/// Queues the replacement of a node whose server is gone (one task; a busy cluster is
/// retried at the next reconcile).
async fn heal(ctx: &Ctx, c: &Cluster, n: &Node) {
    let input = TaskInput::ReplaceNode { node_id: n.id };
    let summary = format!("auto-heal: replacing {} (server gone)", n.name);
    match ctx.store.request_task(c.project_id, c.id, &[n.id], input, &summary).await {
        Ok(t) => {
            if let Err(e) = ctx.queue.push(t.id).await {
                tracing::warn!(task = %t.id, error = %e, "enqueue failed; the sweeper will deliver it");
            }
        }
        Err(e) => tracing::debug!(cluster = %c.name, error = %e, "auto-heal not queued now"),
    }
}
