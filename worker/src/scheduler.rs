//! The backup scheduler: runs in every worker process (and in `herd dev`). Each second
//! an apalis-cron stream ticks; the tick scans the backup policies with a run due and
//! starts each run as a normal `backup` task, through the same store path as
//! `POST /v1/clusters/{id}/backups`.
//!
//! - **Exactly once.** A run is claimed by moving the policy's next-run time with a
//!   conditional UPDATE in the transaction that inserts the backup and its task
//!   (`Store::start_scheduled_backup`), so with any number of workers one of them
//!   starts it and the others' UPDATEs match nothing.
//! - **Never dropped, never piled up.** A run the cluster cannot take now (another task
//!   is open on it, or it is not active/degraded) is not claimed: it stays due, is
//!   tried again at every tick, and starts as soon as the cluster is free; the wait is
//!   recorded in the cluster's history once. Occurrences that pass meanwhile (or while
//!   no worker ran) are not queued up: they are the same late run, after which the
//!   schedule continues from the current time.
//! - **One backup for coinciding schedules.** When several kinds are due at once the
//!   most complete one runs (full, then differential, then incremental) and stands for
//!   the others.

use apalis_cron::CronScheduler;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use herd_core::schedule::CronSchedule;
use herd_core::status::BackupType;
use herd_store::BackupPolicy;
use herd_store::backup_policies::next_at;
use herd_store::{Advance, ScheduledRun, StoreError};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Ctx;

/// The scheduler's tick: every second (the finest a policy can ask for).
const TICK: &str = "* * * * * *";

pub async fn run(ctx: Arc<Ctx>) {
    let scanning = Arc::new(AtomicBool::new(false));
    loop {
        let Ok(every_second) = cron::Schedule::from_str(TICK) else { return };
        let mut ticks = CronScheduler::new(every_second).into_stream();
        while let Some(tick) = ticks.next().await {
            if let Err(e) = tick {
                // apalis-cron 1.0 reports a tick that was already past when it was
                // polled, and then repeats that error forever: start a new stream.
                tracing::debug!(error = %e, "scheduler tick missed; restarting the tick stream");
                break;
            }
            // The stream is polled again at once (a stream polled late errs, see
            // above); a scan still running when the next tick comes makes it skip.
            if scanning.swap(true, Ordering::SeqCst) {
                continue;
            }
            let (ctx, scanning) = (ctx.clone(), scanning.clone());
            tokio::spawn(async move {
                if let Err(e) = scan(&ctx, Utc::now()).await {
                    tracing::warn!(error = %e, "backup scheduler: scan failed");
                }
                scanning.store(false, Ordering::SeqCst);
            });
        }
    }
}

/// Starts every run due at `now`.
pub async fn scan(ctx: &Ctx, now: DateTime<Utc>) -> Result<(), StoreError> {
    for p in ctx.store.due_backup_policies(now).await? {
        let cluster = p.cluster_id;
        if let Err(e) = run_due(ctx, &p, now).await {
            tracing::warn!(%cluster, error = %e, "backup scheduler: starting a scheduled backup failed");
        }
    }
    Ok(())
}

fn schedule_of(p: &BackupPolicy, kind: BackupType) -> Option<CronSchedule> {
    let expr = match kind {
        BackupType::Full => Some(&p.full_schedule),
        BackupType::Diff => p.diff_schedule.as_ref(),
        BackupType::Incr => p.incr_schedule.as_ref(),
    }?;
    match CronSchedule::parse(expr) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(cluster = %p.cluster_id, %kind, expr, error = %e, "stored schedule does not parse");
            None
        }
    }
}

fn kind_name(kind: BackupType) -> &'static str {
    match kind {
        BackupType::Full => "full",
        BackupType::Diff => "differential",
        BackupType::Incr => "incremental",
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn run_due(ctx: &Ctx, p: &BackupPolicy, now: DateTime<Utc>) -> Result<(), StoreError> {
    // Most complete first: a full backup also stands for a differential or incremental
    // one due at the same time.
    let advance: Vec<Advance> = [BackupType::Full, BackupType::Diff, BackupType::Incr]
        .into_iter()
        .filter_map(|kind| {
            let was = next_at(p, kind).filter(|t| *t <= now)?;
            Some(Advance { kind, was, next: schedule_of(p, kind).and_then(|s| s.next_after(now)) })
        })
        .collect();
    let Some(run) = advance.first().copied() else { return Ok(()) };
    let name = kind_name(run.kind);
    let waiting = |reason: String| async move {
        let msg = format!(
            "scheduled {name} backup due at {} waits: {reason}; it starts as soon as the cluster can take it",
            stamp(run.was)
        );
        if ctx.store.note_policy_waiting(p, &run, &msg).await? {
            tracing::info!(cluster = %p.cluster_id, kind = %run.kind, "scheduled backup waits for the cluster");
        }
        Ok::<(), StoreError>(())
    };
    let c = match ctx.store.cluster_by_id(p.cluster_id).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some(config) = ctx.backup_config(&c) else {
        return waiting(format!("no backup repository is configured for provider '{}'", c.provider)).await;
    };
    let mut msg = format!("scheduled {name} backup requested (due at {}", stamp(run.was));
    let late = (now - run.was).num_seconds();
    if late >= 2 {
        msg.push_str(&format!(", {late} s late"));
    }
    let covered: Vec<&str> = advance[1..].iter().map(|a| kind_name(a.kind)).collect();
    if !covered.is_empty() {
        msg.push_str(&format!("; it stands for the {} backup due too", covered.join(" and ")));
    }
    msg.push(')');
    let repo = herd_datastores::repo::record(&config);
    match ctx.store.start_scheduled_backup(p, run.kind, &advance, repo, &config.stanza, &msg).await? {
        ScheduledRun::Started(started) => {
            let (b, t) = *started;
            tracing::info!(cluster = %c.id, backup = %b.id, task = %t.id, kind = %run.kind, "scheduled backup started");
            if let Err(e) = ctx.queue.push(t.id).await {
                tracing::warn!(task = %t.id, error = %e, "enqueue failed; the sweeper will deliver the task");
            }
            Ok(())
        }
        ScheduledRun::Waiting { reason, .. } => waiting(reason).await,
        ScheduledRun::Lost => Ok(()),
    }
}
