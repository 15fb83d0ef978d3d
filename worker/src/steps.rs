//! What every task shares: the error model, retries of transient failures, and step
//! checkpoints with progress and history.

use herd_core::faults::FaultCode;
use herd_core::task::{Payload, TaskInput};
use herd_datastores::ManagerError;
use herd_providers::ProviderError;
use herd_store::StoreError;
use herd_store::{Cluster, Task};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use crate::Ctx;

#[derive(Debug)]
pub enum StepError {
    /// Retry later (with backoff) within the step's retry budget.
    Transient(String),
    /// Fail the task: stable code, readable message.
    Failed { code: FaultCode, message: String },
    /// The task was cancelled or taken over: stop without touching anything else.
    Cancelled,
}

impl StepError {
    pub fn failed(code: FaultCode, message: impl Into<String>) -> Self {
        Self::Failed { code, message: message.into() }
    }
}

impl From<ProviderError> for StepError {
    fn from(e: ProviderError) -> Self {
        if e.is_retryable() { Self::Transient(e.to_string()) } else { Self::failed(e.code(), e.to_string()) }
    }
}

impl From<ManagerError> for StepError {
    fn from(e: ManagerError) -> Self {
        match e {
            ManagerError::Transient(m) => Self::Transient(m),
            ManagerError::Permanent { code, message } => Self::failed(code, message),
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        match e {
            // The database being busy or briefly unreachable passes.
            StoreError::Db(e) => Self::Transient(format!("database: {e}")),
            other => Self::failed(FaultCode::InternalError, other.to_string()),
        }
    }
}

/// A running task: its row, its typed input, the steps done so far (per node id, and
/// `cluster`), and the cancellation flag that the heartbeat sets.
pub struct Job {
    pub ctx: Arc<Ctx>,
    pub task: Task,
    pub input: TaskInput,
    done: Mutex<BTreeMap<String, BTreeSet<String>>>,
    pub cancelled: Arc<AtomicBool>,
    /// Number of steps the whole task has, for progress.
    pub total_steps: usize,
}

impl Job {
    /// Fails (`corrupt_checkpoint`) when the stored payload cannot be read or does not
    /// fit the task's kind: starting over could redo work the provider tokens no longer
    /// match, skipping could leave it undone, so neither happens silently.
    pub fn new(ctx: Arc<Ctx>, task: Task, cancelled: Arc<AtomicBool>, total_steps: usize) -> Result<Self, StepError> {
        let payload = Payload::decode(task.kind, &task.payload).map_err(|e| StepError::Failed {
            code: FaultCode::CorruptCheckpoint,
            message: format!("the task's payload cannot be read ({e}); it was not resumed"),
        })?;
        Ok(Self { ctx, task, input: payload.input, done: Mutex::new(payload.done), cancelled, total_steps })
    }

    /// The steps done in `scope`.
    pub async fn done_in(&self, scope: &str) -> BTreeSet<String> {
        self.done.lock().await.get(scope).cloned().unwrap_or_default()
    }

    pub fn check_cancelled(&self) -> Result<(), StepError> {
        if self.cancelled.load(Ordering::SeqCst) { Err(StepError::Cancelled) } else { Ok(()) }
    }

    pub async fn is_done(&self, scope: &str, step: &str) -> bool {
        self.done.lock().await.get(scope).is_some_and(|s| s.contains(step))
    }

    /// The idempotency token of a provider call: the same on every retry and resume.
    pub fn token(&self, scope: &str, step: &str) -> String {
        format!("{}-{scope}-{step}", self.task.id.simple())
    }

    /// Runs `step` for `scope` unless already checkpointed: transient failures are
    /// retried with backoff until the retry budget is spent; success is checkpointed
    /// with progress and a history event.
    pub async fn step<T, F, Fut>(
        &self,
        cluster: &Cluster,
        scope: &str,
        label: &str,
        step: &str,
        mut f: F,
    ) -> Result<Option<T>, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        if self.is_done(scope, step).await {
            return Ok(None);
        }
        self.check_cancelled()?;
        let started = Instant::now();
        let budget = Duration::from_secs(self.ctx.settings.step_retry_secs);
        let mut backoff = Duration::from_millis(250);
        let value = loop {
            match f().await {
                Ok(v) => break v,
                Err(StepError::Transient(msg)) if started.elapsed() < budget => {
                    tracing::info!(task = %self.task.id, step, scope = label, error = %msg, "transient failure; retrying");
                    self.check_cancelled()?;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(StepError::Transient(msg)) => {
                    return Err(StepError::failed(
                        FaultCode::StepTimeout,
                        format!("{step} on {label} kept failing for {}s: {msg}", budget.as_secs()),
                    ));
                }
                Err(e) => return Err(e),
            }
        };
        let (payload, progress) = {
            let mut done = self.done.lock().await;
            done.entry(scope.to_owned()).or_default().insert(step.to_owned());
            let count: usize = done.values().map(BTreeSet::len).sum();
            let progress = (count * 100 / self.total_steps.max(1)).min(99) as i32;
            (Payload { input: self.input.clone(), done: done.clone() }, progress)
        };
        let store = &self.ctx.store;
        store.checkpoint(self.task.id, &self.ctx.name, step, progress, &payload).await?;
        store
            .log_event(
                cluster,
                Some(self.task.id),
                "info",
                Some(step),
                &format!("{label}: {step} done in {:.1}s", started.elapsed().as_secs_f64()),
            )
            .await?;
        crate::fault::after_step(step);
        Ok(Some(value))
    }
}
