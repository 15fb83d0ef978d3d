//! One task from claim to finish.

use herd_core::status::{ClusterStatus, TaskKind, TaskStatus};
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
        let _ = ctx.store.finish_task(task.id, &ctx.name, TaskStatus::Failed, Some(("too_many_attempts", &msg))).await;
        fail_cluster(ctx, &task, "too_many_attempts", &msg).await;
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
    let job = Job::new(ctx.clone(), task.clone(), cancelled, total_steps(ctx, &task).await);
    let result = match kind {
        TaskKind::CreateCluster => crate::create::run(&job).await,
        TaskKind::DeleteCluster => crate::delete::run(&job).await,
    };
    drop(_beat);

    let store = &ctx.store;
    match result {
        Ok(()) => {
            // A no-op where the task already completed itself (a build, atomically
            // with its cluster turning active).
            let _ = store.finish_task(task.id, &ctx.name, TaskStatus::Succeeded, None).await;
            tracing::info!(task = %task.id, kind = %kind, "task succeeded");
        }
        Err(StepError::Cancelled) => {
            // Release it so a waiting delete can proceed; the status stays as set.
            let _ = store.finish_task(task.id, &ctx.name, TaskStatus::Cancelled, None).await;
            tracing::info!(task = %task.id, "task stopped: cancelled or taken over");
        }
        Err(StepError::Failed { code, message }) => {
            tracing::warn!(task = %task.id, code = %code, error = %message, "task failed");
            let _ = store.finish_task(task.id, &ctx.name, TaskStatus::Failed, Some((&code, &message))).await;
            fail_cluster(ctx, &task, &code, &message).await;
        }
        Err(StepError::Transient(message)) => {
            // Step retries are exhausted inside steps; reaching here means the runner
            // itself hit a passing problem: fail loudly rather than loop.
            let _ = store.finish_task(task.id, &ctx.name, TaskStatus::Failed, Some(("transient", &message))).await;
            fail_cluster(ctx, &task, "transient", &message).await;
        }
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

async fn total_steps(ctx: &Ctx, task: &herd_store::entity::task::Model) -> usize {
    let nodes = match task.cluster_id {
        Some(id) => ctx.store.nodes_of(id).await.map(|n| n.len()).unwrap_or(1),
        None => 1,
    };
    match task.kind {
        TaskKind::CreateCluster => nodes * crate::create::NODE_STEPS.len() + crate::create::CLUSTER_STEPS.len(),
        TaskKind::DeleteCluster => nodes * 2 + 1,
    }
}

async fn fail_cluster(ctx: &Ctx, task: &herd_store::entity::task::Model, code: &str, message: &str) {
    let Some(cid) = task.cluster_id else { return };
    let store = &ctx.store;
    if let Ok(c) = store.cluster_by_id(cid).await {
        let _ = store
            .log_event(&c, Some(task.id), "error", task.step.as_deref(), &format!("{}: {message}", task.kind))
            .await;
        if c.status != ClusterStatus::Deleting || task.kind == TaskKind::DeleteCluster {
            let _ = store.set_cluster_state(cid, ClusterStatus::Failed, Some((code, message))).await;
        }
    }
}
