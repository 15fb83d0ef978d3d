//! What every task shares: the error model, retries of transient failures, and step
//! checkpoints with progress and history.

use herd_datastores::ManagerError;
use herd_providers::ProviderError;
use herd_store::StoreError;
use herd_store::entity::{cluster, task};
use serde::{Deserialize, Serialize};
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
    Failed { code: String, message: String },
    /// The task was cancelled or taken over: stop without touching anything else.
    Cancelled,
}

impl StepError {
    pub fn failed(code: &str, message: impl Into<String>) -> Self {
        Self::Failed { code: code.to_owned(), message: message.into() }
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
            other => Self::failed("internal_error", other.to_string()),
        }
    }
}

/// Which steps are done, per node id (and `cluster`); stored in `tasks.payload`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Checkpoints {
    #[serde(default)]
    pub done: BTreeMap<String, BTreeSet<String>>,
    /// The task's input from the API (day-2 tasks), kept across checkpoints.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub input: serde_json::Value,
}

/// A running task: its row, the checkpoints, and the cancellation flag that the
/// heartbeat sets.
pub struct Job {
    pub ctx: Arc<Ctx>,
    pub task: task::Model,
    pub checkpoints: Mutex<Checkpoints>,
    pub cancelled: Arc<AtomicBool>,
    /// Number of steps the whole task has, for progress.
    pub total_steps: usize,
}

impl Job {
    /// Fails (`corrupt_checkpoint`) when the stored checkpoints cannot be read: starting
    /// over could redo work the provider tokens no longer match, skipping could leave
    /// it undone, so neither happens silently.
    pub fn new(
        ctx: Arc<Ctx>,
        task: task::Model,
        cancelled: Arc<AtomicBool>,
        total_steps: usize,
    ) -> Result<Self, StepError> {
        let checkpoints = match &task.payload {
            serde_json::Value::Null => Checkpoints::default(),
            p => serde_json::from_value(p.clone()).map_err(|e| StepError::Failed {
                code: "corrupt_checkpoint".into(),
                message: format!("the task's checkpoints cannot be read ({e}); it was not resumed"),
            })?,
        };
        Ok(Self { ctx, task, checkpoints: Mutex::new(checkpoints), cancelled, total_steps })
    }

    pub fn check_cancelled(&self) -> Result<(), StepError> {
        if self.cancelled.load(Ordering::SeqCst) { Err(StepError::Cancelled) } else { Ok(()) }
    }

    pub async fn is_done(&self, scope: &str, step: &str) -> bool {
        self.checkpoints.lock().await.done.get(scope).is_some_and(|s| s.contains(step))
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
        cluster: &cluster::Model,
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
                        "step_timeout",
                        format!("{step} on {label} kept failing for {}s: {msg}", budget.as_secs()),
                    ));
                }
                Err(e) => return Err(e),
            }
        };
        let (payload, progress) = {
            let mut cp = self.checkpoints.lock().await;
            cp.done.entry(scope.to_owned()).or_default().insert(step.to_owned());
            let done: usize = cp.done.values().map(BTreeSet::len).sum();
            let progress = (done * 100 / self.total_steps.max(1)).min(99) as i32;
            (serde_json::to_value(&*cp).unwrap_or_default(), progress)
        };
        let store = &self.ctx.store;
        store.checkpoint(self.task.id, &self.ctx.name, step, progress, payload).await?;
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
