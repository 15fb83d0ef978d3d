//! The change feed behind the live streams: one poller per API process reads new
//! history events and changed tasks from the database and broadcasts them to every
//! open stream, which picks out its task or cluster. Reading the database (not this
//! process's memory) is what lets any API process stream what any worker recorded.
//!
//! A row can commit a little after rows with later ids or timestamps (transactions
//! overlap), so every poll looks back `LOOKBACK` and remembers what it already sent
//! in that window instead of reading strictly after the last row seen.

use chrono::{DateTime, Utc};
use herd_store::Store;
use herd_store::{Task, TaskEvent};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// How often the database is asked while anyone listens: the streams' latency bound
/// is this plus one query.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How far back each poll reads, for rows that commit late.
const LOOKBACK: chrono::Duration = chrono::Duration::seconds(5);
/// Rows per query; a busier tick reads again at once.
const BATCH: u64 = 500;
/// Changes buffered per listener; one that falls further behind re-reads the database.
const CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub enum Change {
    Event(Arc<TaskEvent>),
    Task(Arc<Task>),
}

pub struct Feed {
    tx: broadcast::Sender<Change>,
}

impl Feed {
    /// Starts the poller; it stops when the returned feed is dropped.
    pub fn start(store: Store) -> Arc<Feed> {
        let (tx, _) = broadcast::channel(CAPACITY);
        let feed = Arc::new(Feed { tx });
        tokio::spawn(poll(store, Arc::downgrade(&feed)));
        feed
    }

    /// Every change from now on. Subscribe before reading the backlog from the
    /// database, so nothing falls between the two.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

async fn poll(store: Store, feed: Weak<Feed>) {
    let mut sent_events: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    let mut sent_tasks: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    let mut events_from = Utc::now();
    let mut tasks_from = Utc::now();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(feed) = feed.upgrade() else { return };
        if feed.tx.receiver_count() == 0 {
            // Nobody listens: no queries. A new listener reads its own backlog.
            events_from = Utc::now();
            tasks_from = Utc::now();
            sent_events.clear();
            sent_tasks.clear();
            continue;
        }
        let mut changes: Vec<(DateTime<Utc>, Change)> = Vec::new();
        let mut after = herd_store::v7_floor(events_from - LOOKBACK);
        loop {
            let rows = match store.events_after(after, BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "change feed: reading events failed");
                    break;
                }
            };
            let full = rows.len() as u64 == BATCH;
            after = rows.last().map_or(after, |e| e.id);
            for e in rows {
                if sent_events.insert(e.id, e.created_at).is_none() {
                    // Never past this clock: a writer whose clock runs ahead must not
                    // push the window beyond the rows of writers whose clocks do not.
                    events_from = events_from.max(e.created_at).min(Utc::now());
                    changes.push((e.created_at, Change::Event(Arc::new(e))));
                }
            }
            if !full {
                break;
            }
        }
        sent_events.retain(|_, at| *at >= events_from - LOOKBACK - LOOKBACK);
        let mut since = tasks_from - LOOKBACK;
        loop {
            let rows = match store.tasks_changed_since(since, BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "change feed: reading tasks failed");
                    break;
                }
            };
            let full = rows.len() as u64 == BATCH;
            let before = changes.len();
            since = rows.last().map_or(since, |t| t.updated_at);
            for t in rows {
                // Rows are re-read for LOOKBACK; send each version once.
                if sent_tasks.get(&t.id) != Some(&t.updated_at) {
                    sent_tasks.insert(t.id, t.updated_at);
                    tasks_from = tasks_from.max(t.updated_at).min(Utc::now());
                    changes.push((t.updated_at, Change::Task(Arc::new(t))));
                }
            }
            // A full batch of rows already sent (one instant shared by a batch's worth of
            // rows) cannot move on: the next tick reads on from `tasks_from`.
            if !full || changes.len() == before {
                break;
            }
        }
        // In the order they were recorded, so a task's step and the event it wrote
        // arrive as they happened. (Stable: events before tasks on a tie.)
        changes.sort_by_key(|(at, _)| *at);
        for (_, c) in changes {
            let _ = feed.tx.send(c);
        }
        sent_tasks.retain(|_, at| *at >= tasks_from - LOOKBACK - LOOKBACK);
    }
}
