//! The seam between "a task row exists" and "a worker hears about it". The API calls
//! [`TaskQueue::enqueue`] after committing a task; the worker crate implements it with
//! apalis. A failed enqueue loses nothing: the task row is the source of truth and the
//! sweeper pushes queued tasks again.

use uuid::Uuid;

pub trait TaskQueue: Send + Sync {
    fn enqueue(&self, task_id: Uuid) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// For processes that only record intent and leave delivery to the sweeper.
pub struct NoQueue;

impl TaskQueue for NoQueue {
    fn enqueue(&self, _: Uuid) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async { Ok(()) })
    }
}
