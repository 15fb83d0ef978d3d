//! Delivery of task ids through apalis: Redis for `herd serve` + `herd worker`, a
//! SQLite file for the all-in-one `herd dev`.

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqlitePool, SqliteStorage};
use herd_core::queue::TaskQueue;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use crate::Ctx;

/// The only thing a job carries: everything else is in the task row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskJob {
    pub task_id: Uuid,
}

#[derive(Clone)]
pub enum Queue {
    Redis(RedisStorage<TaskJob>),
    /// The embedded queue, plus an in-process wake-up: API and worker share the
    /// process, and apalis's SQLite poller was seen to pick a job up only after ~24 s.
    /// The file stays the durable record; the channel only makes delivery immediate.
    Sqlite(SqliteStorage<TaskJob>, Local),
}

/// In-process delivery of task ids (a duplicate of the stored job: claiming the task
/// row makes the second delivery a no-op).
#[derive(Clone)]
pub struct Local {
    tx: tokio::sync::mpsc::UnboundedSender<Uuid>,
    rx: Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Uuid>>>,
}

/// How often an idle consumer looks for new jobs.
const POLL: Duration = Duration::from_millis(200);

impl Queue {
    pub async fn redis(url: &str) -> anyhow::Result<Self> {
        let conn = apalis_redis::connect(url).await?;
        Ok(Self::Redis(RedisStorage::new(conn)))
    }

    /// A queue in its own SQLite file: apalis tunes its connection for throughput
    /// (synchronous = OFF), which Herd's own database must not inherit.
    pub async fn sqlite(path: &Path) -> anyhow::Result<Self> {
        herd_store::make_private_sqlite(path)?;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = SqlitePool::connect(&url).await?;
        SqliteStorage::setup(&pool).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self::Sqlite(SqliteStorage::new(&pool), Local { tx, rx: Arc::new(tokio::sync::Mutex::new(rx)) }))
    }

    pub async fn push(&self, task_id: Uuid) -> Result<(), String> {
        let job = TaskJob { task_id };
        match self {
            Self::Redis(s) => s.clone().push(job).await.map_err(|e| e.to_string()),
            Self::Sqlite(s, local) => {
                s.clone().push(job).await.map_err(|e| e.to_string())?;
                // No receiver (no worker in this process) is fine: the file has it.
                let _ = local.tx.send(task_id);
                Ok(())
            }
        }
    }
}

/// Runs task ids delivered in-process as soon as they arrive, at most `concurrency`
/// at once (the apalis consumer then finds them claimed or done).
async fn consume_local(ctx: Arc<Ctx>, local: Local) {
    let permits = Arc::new(tokio::sync::Semaphore::new(ctx.settings.concurrency.max(1)));
    let mut rx = local.rx.lock().await;
    while let Some(id) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            crate::runner::run_task(&ctx, id).await;
            drop(permit);
        });
    }
}

impl TaskQueue for Queue {
    fn enqueue(&self, task_id: Uuid) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(self.push(task_id))
    }
}

async fn handle(job: TaskJob, ctx: Data<Arc<Ctx>>) -> Result<(), BoxDynError> {
    // The task runs in its own tokio task: if the queue backend fails and apalis drops
    // this handler, provisioning carries on and finishes instead of being cut off.
    let ctx: Arc<Ctx> = (*ctx).clone();
    tokio::spawn(async move { crate::runner::run_task(&ctx, job.task_id).await }).await?;
    Ok(())
}

/// Consumes jobs forever. apalis ends a worker when its backend fails (Redis
/// restarting, say); the loop then starts a fresh one under a new name, because
/// Redis remembers the old name as active for a while.
pub async fn consume(ctx: Arc<Ctx>) {
    if let Queue::Sqlite(_, local) = &ctx.queue {
        tokio::spawn(consume_local(ctx.clone(), local.clone()));
    }
    let mut generation = 0u32;
    loop {
        generation += 1;
        let name = format!("{}-g{generation}", ctx.name);
        let concurrency = ctx.settings.concurrency.max(1);
        // The two storages are different types with the same builder calls.
        macro_rules! run_on {
            ($storage:expr) => {
                WorkerBuilder::new(name.as_str())
                    .backend($storage.clone().poll_with_interval(POLL))
                    .data(ctx.clone())
                    .concurrency(concurrency)
                    .build(handle)
                    .run()
                    .await
            };
        }
        let outcome = match &ctx.queue {
            Queue::Redis(s) => run_on!(s),
            Queue::Sqlite(s, _) => run_on!(s),
        };
        match outcome {
            Ok(()) => tracing::warn!(worker = %name, "queue consumer stopped; restarting"),
            Err(e) => tracing::warn!(worker = %name, error = %e, "queue consumer failed; restarting"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
