//! Re-delivers tasks the queue lost: committed but never picked up (the push failed,
//! Redis restarted) or held by a worker that stopped heartbeating (it died).

use std::sync::Arc;
use std::time::Duration;

use crate::Ctx;

pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(Duration::from_secs(ctx.settings.sweep_interval_secs.max(1)));
    loop {
        tick.tick().await;
        if let Err(e) = sweep_once(&ctx).await {
            tracing::warn!(error = %e, "sweep failed");
        }
    }
}

async fn sweep_once(ctx: &Ctx) -> Result<(), herd_store::StoreError> {
    let s = &ctx.settings;
    let tasks = ctx
        .store
        .tasks_to_requeue(
            chrono::Duration::seconds(s.requeue_after_secs as i64),
            chrono::Duration::seconds(s.stale_after_secs as i64),
        )
        .await?;
    for t in tasks {
        match ctx.queue.push(t.id).await {
            Ok(()) => {
                tracing::info!(task = %t.id, status = %t.status, "sweeper re-delivered task");
                ctx.store.touch_task(t.id).await?;
            }
            Err(e) => tracing::warn!(task = %t.id, error = %e, "sweeper could not re-deliver task"),
        }
    }
    Ok(())
}
