//! Day-2 tasks on a running cluster: actions, power, settings, replicas, auto-heal.
//! Each step is checkpointed like a build's, so a task taken over after a crash goes
//! on where it stopped. Every task ends by observing the cluster once, so roles and
//! status are current when the task is reported done.

use crate::report::OrWarn;
use herd_core::faults::FaultCode;
use herd_core::status::{ActionKind, BackupStatus, BackupType, NodeStatus, PowerState, VolumeStatus};
use herd_core::task::{ActionInput, PowerInput};
use herd_datastores::{ClusterSpec, NodeSpec};
use herd_providers::{ProviderError, ServerStatus};
use herd_store::BackupResult;
use herd_store::Node;
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

use crate::create::Build;
use crate::hooks::{self, HookEvent, Phase};
use crate::poller::{member_spec, observe_and_record};
use crate::steps::{Job, StepError};

const CLUSTER: &str = "cluster";

/// The running members (not being built or removed).
pub(crate) async fn running_spec(b: &Build<'_>) -> Result<(ClusterSpec, Vec<Node>), StepError> {
    let nodes = b.job.ctx.store.nodes_of(b.cluster.id).await?;
    let members: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.server_ref.is_some() && !matches!(n.status, NodeStatus::Building | NodeStatus::Deleting))
        .collect();
    let (spec, _) = member_spec(&b.job.ctx, &b.cluster, &members).await.map_err(StepError::Transient)?;
    Ok((spec, nodes))
}

fn member(spec: &ClusterSpec, id: Uuid) -> Result<&NodeSpec, StepError> {
    spec.members
        .iter()
        .find(|m| m.node_id == id)
        .ok_or_else(|| StepError::failed(FaultCode::NodeUnavailable, format!("node {id} is not a running member")))
}

/// Refreshes roles and status from the HA agent once, at the end of a task.
async fn observe(b: &Build<'_>) -> Result<(), StepError> {
    let (spec, _) = running_spec(b).await?;
    observe_and_record(&b.job.ctx, &b.manager, &b.cluster, &spec, &HashSet::new()).await?;
    Ok(())
}

pub async fn run_action(job: &Job, inp: &ActionInput) -> Result<(), StepError> {
    let b = Build::load(job).await?;
    let (spec, _) = running_spec(&b).await?;
    let mgr = &b.manager;
    let c = &b.cluster;
    let targets: Vec<&NodeSpec> = match inp.node_id {
        Some(id) => vec![member(&spec, id)?],
        None => spec.members.iter().collect(),
    };
    let label = |m: &NodeSpec| format!("node {}", m.name);
    let store = &job.ctx.store;
    match inp.action {
        ActionKind::Start => {
            for m in &targets {
                store.set_node_desired(m.node_id, true).await?;
                job.step(c, &m.node_id.to_string(), &label(m), "start", || async {
                    Ok(mgr.lifecycle.start_ha(&spec, m).await?)
                })
                .await?;
            }
        }
        ActionKind::Stop => {
            // Replicas before the primary: stopping the primary first would fail over.
            let leader = mgr.lifecycle.health(&spec).await?.leader;
            let mut ordered = targets.clone();
            ordered.sort_by_key(|m| leader.as_deref() == Some(m.name.as_str()));
            for m in ordered {
                store.set_node_desired(m.node_id, false).await?;
                job.step(c, &m.node_id.to_string(), &label(m), "stop", || async {
                    Ok(mgr.operations.stop_ha(&spec, m).await?)
                })
                .await?;
            }
        }
        ActionKind::Reload => {
            for m in &targets {
                job.step(c, &m.node_id.to_string(), &label(m), "reload", || async {
                    Ok(mgr.operations.reload_node(&spec, m).await?)
                })
                .await?;
            }
        }
        ActionKind::Restart if inp.node_id.is_some() => {
            let m = targets[0];
            job.step(c, &m.node_id.to_string(), &label(m), "restart", || async {
                Ok(mgr.operations.restart_node(&spec, m).await?)
            })
            .await?;
        }
        ActionKind::Restart => {
            let all: Vec<String> = spec.members.iter().map(|m| m.name.clone()).collect();
            rolling_restart(&b, &spec, &all).await?;
        }
        ActionKind::Switchover | ActionKind::Failover => {
            let candidate = match inp.candidate_id {
                Some(id) => Some(member(&spec, id)?.name.clone()),
                None => None,
            };
            promote(&b, &spec, inp.action, candidate.as_deref()).await?;
            // A failover may lose what had not replicated, managed roles and databases
            // among them: the next sync checks them on the new primary.
            if inp.action == ActionKind::Failover && store.recheck_access(c.id).await? > 0 {
                store
                    .log_event(
                        c,
                        Some(job.task.id),
                        "info",
                        None,
                        "databases and users to be checked on the new primary",
                    )
                    .await?;
            }
        }
        ActionKind::Reinitialize => {
            let m =
                member(&spec, inp.node_id.ok_or_else(|| StepError::failed(FaultCode::InvalidTaskInput, "no node"))?)?;
            job.step(c, &m.node_id.to_string(), &label(m), "reinitialize", || async {
                Ok(mgr.operations.reinitialize(&spec, m).await?)
            })
            .await?;
        }
    }
    observe(&b).await
}

/// A switchover or failover with its hooks around it. Returns the new primary.
async fn promote(
    b: &Build<'_>,
    spec: &ClusterSpec,
    kind: ActionKind,
    candidate: Option<&str>,
) -> Result<String, StepError> {
    let (job, c, mgr) = (b.job, &b.cluster, &b.manager);
    let old = mgr.lifecycle.health(spec).await?.leader;
    // Without a named candidate the manager picks one (a switchover: eligible, the sync
    // standby in synchronous mode, highest priority, least lag; a failover: the most
    // advanced running replica): the pre hook does not know it yet.
    let step = kind.as_str();
    hooks::call(
        &job.ctx,
        Phase::Pre,
        HookEvent { cluster: c, kind: step, from: old.as_deref(), to: candidate, task_id: Some(job.task.id) },
    )
    .await;
    let new = job
        .step(c, CLUSTER, "cluster", step, || async {
            Ok(match kind {
                ActionKind::Failover => mgr.operations.failover(spec, candidate).await?,
                _ => mgr.operations.switchover(spec, candidate).await?,
            })
        })
        .await?;
    let new = match new {
        Some(n) => n,
        // Done before a crash: the current leader is the outcome.
        None => mgr.lifecycle.health(spec).await?.leader.unwrap_or_default(),
    };
    job.ctx
        .store
        .log_event(
            c,
            Some(job.task.id),
            "info",
            Some(step),
            &format!("{step}: primary moved from {} to {new}", old.as_deref().unwrap_or("none")),
        )
        .await?;
    // Record the new primary now, so the poller does not report it as automatic.
    observe(b).await?;
    hooks::call(
        &job.ctx,
        Phase::Post,
        HookEvent { cluster: c, kind: step, from: old.as_deref(), to: Some(&new), task_id: Some(job.task.id) },
    )
    .await;
    Ok(new)
}

/// Restarts `names` with one switchover at most: replicas first, then the primary's
/// role moves to a restarted replica, then the old primary restarts.
async fn rolling_restart(b: &Build<'_>, spec: &ClusterSpec, names: &[String]) -> Result<(), StepError> {
    let (job, c, mgr) = (b.job, &b.cluster, &b.manager);
    let leader = mgr.lifecycle.health(spec).await?.leader;
    for m in spec.members.iter().filter(|m| names.contains(&m.name) && Some(&m.name) != leader.as_ref()) {
        job.step(c, &m.node_id.to_string(), &format!("node {}", m.name), "restart", || async {
            Ok(mgr.operations.restart_node(spec, m).await?)
        })
        .await?;
    }
    let Some(leader) = leader.filter(|l| names.contains(l)) else { return Ok(()) };
    let old = spec.members.iter().find(|m| m.name == leader).ok_or_else(|| StepError::Transient("no leader".into()))?;
    if spec.members.len() > 1 {
        promote(b, spec, ActionKind::Switchover, None).await?;
    }
    job.step(c, &old.node_id.to_string(), &format!("node {}", old.name), "restart", || async {
        Ok(mgr.operations.restart_node(spec, old).await?)
    })
    .await?;
    Ok(())
}

/// Pushes the cluster's desired settings: every member's configuration (tags), the
/// dynamic configuration, then a rolling restart of the members that need one.
pub async fn run_update(job: &Job) -> Result<(), StepError> {
    let b = Build::load(job).await?;
    let (spec, _) = running_spec(&b).await?;
    let (c, mgr) = (&b.cluster, &b.manager);
    for m in &spec.members {
        job.step(c, &m.node_id.to_string(), &format!("node {}", m.name), "configure", || async {
            Ok(mgr.lifecycle.configure(&spec, m).await?)
        })
        .await?;
    }
    // Every member has this window's certificates now (a renewal is an update). After a
    // resumed run whose configure steps ran in an earlier window this is one window
    // late, still inside the certificates' three.
    job.ctx.store.certificates_pushed(c.id, spec.tls.renew_at).await?;
    let pending = job
        .step(c, CLUSTER, "cluster", "apply_config", || async { Ok(mgr.operations.apply_dynamic_config(&spec).await?) })
        .await?;
    // After a crash past apply_config, the nodes' own pending_restart says who is left.
    let pending = match pending {
        Some(p) => p,
        None => {
            mgr.lifecycle.health(&spec).await?.nodes.into_iter().filter(|n| n.pending_restart).map(|n| n.name).collect()
        }
    };
    if !pending.is_empty() {
        job.ctx
            .store
            .log_event(c, Some(job.task.id), "info", None, &format!("restart needed on {}", pending.join(", ")))
            .await?;
        rolling_restart(&b, &spec, &pending).await?;
    }
    observe(&b).await
}

pub async fn run_power(job: &Job, inp: &PowerInput) -> Result<(), StepError> {
    let b = Build::load(job).await?;
    let store = &job.ctx.store;
    let n = store
        .nodes_of(b.cluster.id)
        .await?
        .into_iter()
        .find(|n| n.id == inp.node_id)
        .ok_or_else(|| StepError::failed(FaultCode::NodeUnavailable, "node is gone"))?;
    let sref =
        n.server_ref.clone().ok_or_else(|| StepError::failed(FaultCode::NodeUnavailable, "node has no server"))?;
    let step = match inp.state {
        PowerState::On => "power_on",
        PowerState::Off => "power_off",
    };
    job.step(&b.cluster, &n.id.to_string(), &format!("node {}", n.name), step, || async {
        let s = match inp.state {
            PowerState::On => b.provider.start_server(&sref).await?,
            PowerState::Off => b.provider.stop_server(&sref, inp.force).await?,
        };
        store.node_powered(n.id, s.status == ServerStatus::Running).await?;
        Ok(())
    })
    .await?;
    observe(&b).await
}

/// Builds new nodes into the running cluster, one at a time (etcd admits one new
/// member per membership change): server, DCS registration, every member's
/// configuration rewritten (so the primary's pg_hba admits the newcomer before it
/// clones), then the newcomer's etcd and Patroni.
async fn grow(b: &Build<'_>, new_ids: &[Uuid]) -> Result<(), StepError> {
    let (job, c, mgr) = (b.job, &b.cluster, &b.manager);
    let store = &job.ctx.store;
    let nodes = store.nodes_of(c.id).await?;
    let new: Vec<&Node> = nodes.iter().filter(|n| new_ids.contains(&n.id)).collect();
    futures_util::future::try_join_all(new.iter().map(|n| b.provision_server(n))).await?;
    let nodes = store.nodes_of(c.id).await?;
    let running: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.server_ref.is_some() && !matches!(n.status, NodeStatus::Building | NodeStatus::Deleting))
        .collect();
    let mut members = running.clone();
    let mut spec = None;
    for id in new_ids {
        let Some(n) = nodes.iter().find(|n| n.id == *id) else { continue };
        members.push(n);
        let (s, _) = member_spec(&job.ctx, c, &members).await.map_err(StepError::Transient)?;
        let m = member(&s, n.id)?;
        let (scope, label) = (n.id.to_string(), format!("node {}", n.name));
        job.step(c, &scope, &label, "add_member", || async { Ok(mgr.membership.add_member(&s, m).await?) }).await?;
        job.step(c, &scope, &label, "prepare", || async { Ok(mgr.lifecycle.prepare(&s, m).await?) }).await?;
        for o in &s.members {
            let step = format!("configure_for_{}", n.name);
            job.step(c, &o.node_id.to_string(), &format!("node {}", o.name), &step, || async {
                Ok(mgr.lifecycle.configure(&s, o).await?)
            })
            .await?;
        }
        job.step(c, &scope, &label, "start_etcd", || async { Ok(mgr.lifecycle.start_dcs(&s, m).await?) }).await?;
        job.step(c, &scope, &label, "start_patroni", || async { Ok(mgr.lifecycle.start_ha(&s, m).await?) }).await?;
        spec = Some(s);
    }
    let Some(spec) = spec else { return Ok(()) };
    let timeout = Duration::from_secs(job.ctx.settings.converge_timeout_secs);
    job.step(c, CLUSTER, "cluster", "wait_converged", || async {
        Ok(mgr.lifecycle.wait_converged(&spec, timeout).await?)
    })
    .await?;
    for id in new_ids {
        if let Some(n) = store.nodes_of(c.id).await?.into_iter().find(|n| n.id == *id)
            && n.status == NodeStatus::Building
        {
            store.node_joined(n.id).await?;
        }
    }
    Ok(())
}

/// Takes a node out: its daemons stop, its DCS member goes, the other members learn
/// the new list, then its server and volume are deleted and its rows removed.
async fn shrink(b: &Build<'_>, node_id: Uuid) -> Result<(), StepError> {
    let (job, c, mgr) = (b.job, &b.cluster, &b.manager);
    let store = &job.ctx.store;
    let nodes = store.nodes_of(c.id).await?;
    let Some(n) = nodes.iter().find(|n| n.id == node_id).cloned() else { return Ok(()) };
    let others: Vec<&Node> = nodes
        .iter()
        .filter(|o| {
            o.id != node_id
                && o.server_ref.is_some()
                && !matches!(o.status, NodeStatus::Building | NodeStatus::Deleting)
        })
        .collect();
    let (spec, _) = member_spec(&job.ctx, c, &others).await.map_err(StepError::Transient)?;
    let scope = n.id.to_string();
    let label = format!("node {}", n.name);
    // The node's own spec, when its server still exists (not for a vanished one).
    let (own, gone) = member_spec(&job.ctx, c, &[&n]).await.map_err(StepError::Transient)?;
    if let Some(m) = own.members.first().filter(|_| gone.is_empty()) {
        job.step(c, &scope, &label, "stop_node", || async { Ok(mgr.lifecycle.stop_node(&own, m).await?) }).await?;
        job.step(c, &scope, &label, "remove_member", || async { Ok(mgr.membership.remove_member(&spec, m).await?) })
            .await?;
    } else if let Some(m) = spec.members.first() {
        // The server is gone: remove its DCS member by name through a survivor.
        let mut ghost = m.clone();
        ghost.node_id = n.id;
        ghost.name = n.name.clone();
        if let Some(a) = n.address.as_deref().and_then(|a| a.parse().ok()) {
            ghost.address = a;
        }
        job.step(c, &scope, &label, "remove_member", || async {
            Ok(mgr.membership.remove_member(&spec, &ghost).await?)
        })
        .await?;
    }
    for m in &spec.members {
        job.step(
            c,
            &m.node_id.to_string(),
            &format!("node {}", m.name),
            &format!("reconfigure_{}", n.name),
            || async { Ok(mgr.lifecycle.configure(&spec, m).await?) },
        )
        .await?;
    }
    if let Some(sref) = &n.server_ref {
        job.step(c, &scope, &label, "delete_server", || async { gone_ok(b.provider.delete_server(sref).await) })
            .await?;
    }
    for v in store.volumes_of(c.id).await?.into_iter().filter(|v| v.node_id == Some(n.id)) {
        if let Some(vref) = &v.provider_ref {
            job.step(c, &scope, &label, "delete_volume", || async {
                if v.status == VolumeStatus::Attached
                    && let Some(sref) = &n.server_ref
                {
                    gone_ok(b.provider.detach_volume(vref, sref).await)?;
                }
                gone_ok(b.provider.delete_volume(vref).await)
            })
            .await?;
        }
    }
    store.remove_node_rows(n.id).await?;
    store.log_event(c, Some(job.task.id), "info", None, &format!("node {} removed", n.name)).await?;
    Ok(())
}

fn gone_ok(r: Result<(), ProviderError>) -> Result<(), StepError> {
    match r {
        Ok(()) | Err(ProviderError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn run_add_nodes(job: &Job, node_ids: &[Uuid]) -> Result<(), StepError> {
    let b = Build::load(job).await?;
    grow(&b, node_ids).await?;
    observe(&b).await
}

pub async fn run_remove_node(job: &Job, id: Uuid) -> Result<(), StepError> {
    let b = Build::load(job).await?;
    shrink(&b, id).await?;
    observe(&b).await
}

/// Auto-heal: a node whose server is gone is removed and a new one built in its place.
pub async fn run_replace_node(job: &Job, id: Uuid) -> Result<(), StepError> {
    let b = Build::load(job).await?;
    let store = &job.ctx.store;
    // The replacement row is made once; a resumed task finds it by checkpoint.
    let replacement = {
        let done = job
            .done_in(CLUSTER)
            .await
            .iter()
            .find_map(|x| x.strip_prefix("replacement=").and_then(|u| u.parse::<Uuid>().ok()));
        match done {
            Some(r) => r,
            None => {
                let old = store
                    .nodes_of(b.cluster.id)
                    .await?
                    .into_iter()
                    .find(|n| n.id == id)
                    .ok_or_else(|| StepError::failed(FaultCode::NodeUnavailable, "node is gone"))?;
                let new = store.add_replacement_node(&b.cluster, &old).await?;
                let step = format!("replacement={}", new.id);
                job.step(&b.cluster, CLUSTER, "cluster", &step, || async { Ok(()) }).await?;
                new.id
            }
        }
    };
    if let Some(n) = store.nodes_of(b.cluster.id).await?.into_iter().find(|n| n.id == id)
        && n.status != NodeStatus::Deleting
    {
        store.node_leaving(n.id).await?;
    }
    shrink(&b, id).await?;
    grow(&b, &[replacement]).await?;
    observe(&b).await
}

/// Takes a backup from the primary; the backup row follows the task's outcome.
pub async fn run_backup(job: &Job, backup_id: Uuid) -> Result<(), StepError> {
    let store = &job.ctx.store;
    let result = take_backup(job, backup_id).await;
    if let Err(e) = &result {
        let msg = match e {
            StepError::Failed { message, .. } | StepError::Transient(message) => message.clone(),
            StepError::Cancelled => "cancelled".to_owned(),
        };
        store.set_backup_status(backup_id, BackupStatus::Failed, None, Some(&msg)).await.or_warn("backup status");
    }
    result
}

async fn take_backup(job: &Job, backup_id: Uuid) -> Result<(), StepError> {
    let store = &job.ctx.store;
    let b = Build::load(job).await?;
    let row = store.backup_by_id(backup_id).await?;
    let (spec, _) = running_spec(&b).await?;
    let Some(config) = &spec.backup else {
        return Err(StepError::failed(FaultCode::BackupsNotConfigured, "no backup repository is configured"));
    };
    herd_datastores::repo::ensure_posix_dir(config, spec.service_user())
        .map_err(|e| StepError::failed(FaultCode::BackupRepoUnavailable, format!("backup repository: {e}")))?;
    let kind = row.backup_type;
    store.set_backup_status(backup_id, BackupStatus::Running, None, None).await?;
    let mgr = &b.manager;
    let info = job
        .step(&b.cluster, CLUSTER, "cluster", "backup", || async {
            // No `init_backups` first (stanza-create + check, ~2 s): the build created
            // the stanza, and pgBackRest refuses to back up into a missing one; the
            // manager then creates it and backs up again.
            Ok(mgr.backups.backup(&spec, kind).await?)
        })
        .await?;
    if let Some(i) = info {
        let label = i.label.clone();
        // pgBackRest takes a full backup when a diff or incr has none to build on:
        // the row records what was taken.
        let taken = i.kind;
        store
            .set_backup_status(
                backup_id,
                BackupStatus::Completed,
                Some(BackupResult {
                    backup_type: taken,
                    label: i.label,
                    size_bytes: i.size_bytes,
                    repo_size_bytes: i.repo_size_bytes,
                    wal_start: i.wal_start,
                    wal_stop: i.wal_stop,
                    started_at: i.started_at,
                    finished_at: i.finished_at,
                }),
                None,
            )
            .await?;
        store
            .log_event(
                &b.cluster,
                Some(job.task.id),
                "info",
                Some("backup"),
                &if taken == row.backup_type {
                    format!("{taken} backup {label} completed")
                } else {
                    format!("{} backup {label} completed as a {taken} backup (nothing to base it on)", row.backup_type)
                },
            )
            .await?;
    }
    if store.backup_by_id(backup_id).await?.backup_type == BackupType::Full
        && let Err(e) = apply_retention(job, &b.cluster, backup_id).await
    {
        // The backup is taken; retention is applied again after the next full one.
        let msg = match e {
            StepError::Failed { message, .. } | StepError::Transient(message) => message,
            StepError::Cancelled => return Err(StepError::Cancelled),
        };
        tracing::warn!(cluster = %b.cluster.id, error = %msg, "retention not applied");
        store
            .log_event(
                &b.cluster,
                Some(job.task.id),
                "warn",
                Some("retention"),
                &format!("retention not applied ({msg}); it is applied again after the next full backup"),
            )
            .await
            .or_warn("event");
    }
    Ok(())
}

/// After a full backup: with a backup policy, the full backups beyond its
/// `retention_full` (oldest first) are expired by `expire_backup` tasks, the same path
/// as `DELETE /v1/backups/{id}`; each takes the backups based on its full with it.
async fn apply_retention(job: &Job, cluster: &herd_store::Cluster, backup_id: Uuid) -> Result<(), StepError> {
    let store = &job.ctx.store;
    let Some(policy) = store.backup_policy_of(cluster.id).await? else { return Ok(()) };
    let row = store.backup_by_id(backup_id).await?;
    let Some(stanza) = row.stanza.as_deref() else { return Ok(()) };
    if row.status != BackupStatus::Completed {
        return Ok(());
    }
    let keep = usize::try_from(policy.retention_full).unwrap_or(1).max(1);
    let old = store.fulls_beyond_retention(cluster.id, &row.repo, stanza, keep).await?;
    if old.is_empty() {
        return Ok(());
    }
    job.step(cluster, CLUSTER, "cluster", "retention", || async {
        let mut labels = Vec::new();
        for b in &old {
            let t = store.request_expire(b.project_id, b.id).await?;
            if let Err(e) = job.ctx.queue.push(t.id).await {
                tracing::warn!(task = %t.id, error = %e, "enqueue failed; the sweeper will deliver the task");
            }
            labels.push(b.label.clone().unwrap_or_else(|| b.id.to_string()));
        }
        let msg = format!(
            "retention keeps the newest {keep} full backup{}: expiring {} and the backups based on {}",
            if keep == 1 { "" } else { "s" },
            labels.join(", "),
            if labels.len() == 1 { "it" } else { "them" },
        );
        store.log_event(cluster, Some(job.task.id), "info", Some("retention"), &msg).await?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Removes a backup from its repository; works after its cluster is gone.
pub async fn run_expire(job: &Job, backup_id: Uuid) -> Result<(), StepError> {
    let ctx = &job.ctx;
    let row = ctx.store.backup_by_id(backup_id).await?;
    if row.status == BackupStatus::Expired {
        return Ok(());
    }
    let config = herd_datastores::repo::for_backup(
        &ctx.backups,
        &ctx.state_dir,
        &row.repo,
        row.stanza.as_deref().unwrap_or_default(),
        ctx.store.key(),
    )
    .ok_or_else(|| {
        StepError::failed(FaultCode::BackupsNotConfigured, format!("the '{}' repository is not configured", row.repo))
    })?;
    // The cluster's own manager reads its repository; when the cluster (and so its
    // datastore row) is gone, the manager whose tool writes Herd's repositories.
    let own = match ctx.store.cluster_by_id(row.cluster_id).await {
        Ok(c) => ctx.store.get_datastore(&c.datastore).await.ok().and_then(|ds| ctx.managers.get(&ds.manager).cloned()),
        Err(_) => None,
    };
    let mgr = match own {
        Some(m) => m,
        None => ctx.managers.repository_reader()?.clone(),
    };
    let label = row.label.clone().ok_or_else(|| StepError::failed(FaultCode::InvalidState, "backup has no label"))?;
    let mut backoff = Duration::from_millis(500);
    let deadline = std::time::Instant::now() + Duration::from_secs(ctx.settings.step_retry_secs);
    loop {
        match mgr.backups.expire_backup(&config, &label).await {
            Ok(()) => break,
            Err(herd_datastores::ManagerError::Transient(m)) if std::time::Instant::now() < deadline => {
                tracing::info!(backup = %row.id, error = %m, "expire failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
    ctx.store.set_backup_status(row.id, BackupStatus::Expired, None, None).await?;
    let cluster = ctx.store.cluster_by_id(row.cluster_id).await.ok();
    if let Some(c) = &cluster {
        ctx.store
            .log_event(c, Some(job.task.id), "info", Some("expire_backup"), &format!("backup {label} expired"))
            .await
            .or_warn("event");
    }
    // pgBackRest expires the backups based on this one with it (`expire --set`): their
    // rows follow, as expired by this task. Whatever the repository no longer lists
    // is gone.
    match mgr.backups.list_backups(&config).await {
        Ok(listed) => {
            for other in ctx.store.completed_in_stanza(&row.repo, &config.stanza).await? {
                let Some(l) = other.label.as_deref() else { continue };
                if listed.iter().any(|b| b.label == l) || !ctx.store.mark_backup_expired(other.id, job.task.id).await? {
                    continue;
                }
                if let Some(c) = &cluster {
                    ctx.store
                        .log_event(
                            c,
                            Some(job.task.id),
                            "info",
                            Some("expire_backup"),
                            &format!("backup {l} expired with {label}, which it was based on"),
                        )
                        .await
                        .or_warn("event");
                }
            }
        }
        Err(e) => tracing::warn!(backup = %row.id, error = %e, "listing the repository after expiry failed"),
    }
    Ok(())
}
