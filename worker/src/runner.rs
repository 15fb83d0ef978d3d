//! One task from claim to finish.

use herd_core::faults::FaultCode;
use herd_core::status::{ClusterStatus, TaskKind, TaskStatus};
use herd_core::task::TaskInput;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uuid::Uuid;

use crate::Ctx;
use crate::steps::{Job, StepError};

pub async fn run_task(ctx: &Arc<Ctx>, task_id: Uuid) {
    let stale = chrono::Duration::seconds(ctx.settings.stale_after_secs as i64);
    let task = match ctx.store.claim_task(task_id, &ctx.name, stale).await {
        Ok(Some(t)) => t,
        // Finished, cancelled, or held by a live worker: this delivery is a duplicate.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(task = %task_id, error = %e, "could not claim task; the sweeper will retry");
            return;
        }
    };
    if task.attempts > ctx.settings.max_attempts {
        let msg = format!("gave up after {} attempts", task.attempts - 1);
        record_finish(ctx, task.id, TaskStatus::Failed, Some((FaultCode::TooManyAttempts, &msg))).await;
        fail_cluster(ctx, &task, FaultCode::TooManyAttempts, &msg).await;
        return;
    }
    tracing::info!(task = %task.id, kind = %task.kind, attempt = task.attempts, "task claimed");

    // The heartbeat proves this worker is alive and is how it hears of cancellation.
    let cancelled = Arc::new(AtomicBool::new(false));
    let _beat = {
        let (ctx, flag, id) = (ctx.clone(), cancelled.clone(), task.id);
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(ctx.settings.heartbeat_secs.max(1)));
            loop {
                tick.tick().await;
                match ctx.store.heartbeat(id, &ctx.name).await {
                    Ok(TaskStatus::Running) => {}
                    Ok(_) | Err(herd_store::StoreError::NotFound) => flag.store(true, Ordering::SeqCst),
                    Err(e) => tracing::warn!(task = %id, error = %e, "heartbeat failed"),
                }
            }
        }))
    };

    let kind = task.kind;
    let result = match Job::new(ctx.clone(), task.clone(), cancelled, total_steps(ctx, &task).await) {
        Ok(job) => run_input(&job).await,
        // Resuming from a checkpoint nobody can read could redo or skip work.
        Err(e) => Err(e),
    };
    drop(_beat);

    if kind.is_day2()
        && let Some(cid) = task.cluster_id
    {
        finish_day2(ctx, &task, cid, result).await;
        return;
    }
    match result {
        Ok(()) => {
            // A no-op where the task already completed itself (a build, atomically
            // with its cluster turning active).
            record_finish(ctx, task.id, TaskStatus::Succeeded, None).await;
            tracing::info!(task = %task.id, kind = %kind, "task succeeded");
        }
        Err(StepError::Cancelled) => {
            // Release it so a waiting delete can proceed; the status stays as set.
            record_finish(ctx, task.id, TaskStatus::Cancelled, None).await;
            tracing::info!(task = %task.id, "task stopped: cancelled or taken over");
        }
        Err(StepError::Failed { code, message }) => {
            tracing::warn!(task = %task.id, code = %code, error = %message, "task failed");
            record_finish(ctx, task.id, TaskStatus::Failed, Some((code, &message))).await;
            fail_cluster(ctx, &task, code, &message).await;
        }
        Err(StepError::Transient(message)) => {
            // Step retries are exhausted inside steps; reaching here means the runner
            // itself hit a passing problem: fail loudly rather than loop.
            record_finish(ctx, task.id, TaskStatus::Failed, Some((FaultCode::Transient, &message))).await;
            fail_cluster(ctx, &task, FaultCode::Transient, &message).await;
        }
    }
}

/// Ends the task row. If that write fails the task stays `running` under this
/// worker, its heartbeat stops, and the sweeper hands it to a worker after
/// `stale_after_secs`: its steps are idempotent, so that is safe, but it must be seen.
async fn record_finish(ctx: &Ctx, task: Uuid, status: TaskStatus, error: Option<(FaultCode, &str)>) {
    if let Err(e) = ctx.store.finish_task(task, &ctx.name, status, error).await {
        tracing::error!(%task, ?status, error = %e, "could not record the task's end; the sweeper will take it over");
    }
}

/// Dispatches on the typed input, so a task's runner always gets the input it needs.
async fn run_input(job: &Job) -> Result<(), StepError> {
    use crate::{access, create, day2, delete, snapshot};
    match &job.input {
        TaskInput::CreateCluster(_) => create::run(job).await,
        TaskInput::DeleteCluster {} => delete::run(job).await,
        TaskInput::ClusterAction(a) => day2::run_action(job, a).await,
        TaskInput::PowerNode(p) => day2::run_power(job, p).await,
        TaskInput::UpdateCluster {} => day2::run_update(job).await,
        TaskInput::AddNodes { node_ids } => day2::run_add_nodes(job, node_ids).await,
        TaskInput::RemoveNode { node_id } => day2::run_remove_node(job, *node_id).await,
        TaskInput::ReplaceNode { node_id } => day2::run_replace_node(job, *node_id).await,
        TaskInput::Backup { backup_id } => day2::run_backup(job, *backup_id).await,
        TaskInput::ExpireBackup { backup_id } => day2::run_expire(job, *backup_id).await,
        TaskInput::Snapshot { snapshot_id } => snapshot::run_snapshot(job, *snapshot_id).await,
        TaskInput::DeleteSnapshot { snapshot_id } => snapshot::run_delete(job, *snapshot_id).await,
        TaskInput::SyncAccess {} => access::run_sync(job).await,
    }
}

/// Stops the heartbeat whenever the task's future ends, including when it is dropped
/// mid-step: a heartbeat outliving its task would keep the task looking alive forever.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn total_steps(ctx: &Ctx, task: &herd_store::Task) -> usize {
    let nodes = match task.cluster_id {
        Some(id) => ctx.store.nodes_of(id).await.map(|n| n.len()).unwrap_or(1),
        None => 1,
    };
    match task.kind {
        TaskKind::CreateCluster => nodes * crate::create::NODE_STEPS.len() + crate::create::CLUSTER_STEPS.len(),
        TaskKind::DeleteCluster => nodes * 2 + 1,
        // Day-2 tasks: roughly one step per node plus the cluster-wide ones.
        _ => nodes * 2 + 2,
    }
}

/// A day-2 task's outcome never fails the cluster: the database keeps running; the
/// task reports the error and the cluster returns to active/degraded.
async fn finish_day2(ctx: &Ctx, task: &herd_store::Task, cluster_id: uuid::Uuid, result: Result<(), StepError>) {
    let store = &ctx.store;
    let (status, error) = match &result {
        Ok(()) => (TaskStatus::Succeeded, None),
        Err(StepError::Cancelled) => (TaskStatus::Cancelled, None),
        Err(StepError::Failed { code, message }) => (TaskStatus::Failed, Some((*code, message.as_str()))),
        Err(StepError::Transient(m)) => (TaskStatus::Failed, Some((FaultCode::Transient, m.as_str()))),
    };
    if let Err(e) = store.finish_day2(task.id, &ctx.name, cluster_id, status, error).await {
        tracing::warn!(task = %task.id, error = %e, "could not record the task's outcome");
    }
    if let Some((code, message)) = error {
        tracing::warn!(task = %task.id, kind = %task.kind, %code, error = message, "task failed");
        history_error(ctx, task, cluster_id, message).await;
    } else {
        tracing::info!(task = %task.id, kind = %task.kind, ?status, "task finished");
    }
}

async fn fail_cluster(ctx: &Ctx, task: &herd_store::Task, code: FaultCode, message: &str) {
    let Some(cid) = task.cluster_id else { return };
    let Some(c) = history_error(ctx, task, cid, message).await else { return };
    if (c.status != ClusterStatus::Deleting || task.kind == TaskKind::DeleteCluster)
        && let Err(e) = ctx.store.set_cluster_state(cid, ClusterStatus::Failed, Some((code, message))).await
    {
        tracing::error!(cluster = %cid, task = %task.id, error = %e, "could not mark the cluster failed");
    }
}

/// Writes a failed task's error into its cluster's history; the cluster as read (None
/// when it is gone). Failures to record are logged, never dropped.
async fn history_error(
    ctx: &Ctx,
    task: &herd_store::Task,
    cluster_id: Uuid,
    message: &str,
) -> Option<herd_store::Cluster> {
    let c = match ctx.store.cluster_by_id(cluster_id).await {
        Ok(c) => c,
        Err(herd_store::StoreError::NotFound) => return None,
        Err(e) => {
            tracing::error!(cluster = %cluster_id, task = %task.id, error = %e, "could not read the cluster to record a failure");
            return None;
        }
    };
    let line = format!("{}: {message}", task.kind);
    if let Err(e) = ctx.store.log_event(&c, Some(task.id), "error", task.step.as_deref(), &line).await {
        tracing::error!(cluster = %cluster_id, task = %task.id, error = %e, "could not record the failure in the history");
    }
    Some(c)
}
