//! Waiting for a task: follow its live stream, resume it after a dropped connection,
//! and poll when streaming is not possible (an older server, a proxy that refuses it).

use futures_util::StreamExt;
use herd_types::{EventDto, StreamMessage, TaskDto};
use std::time::Duration;
use uuid::Uuid;

use crate::{Client, Error, Result};

#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Give up after this long (`Error::Timeout`); the task goes on at the server.
    pub timeout: Option<Duration>,
    /// How often to ask when polling.
    pub poll_interval: Duration,
    /// Poll only, never stream.
    pub poll_only: bool,
}

impl Default for WaitOptions {
    fn default() -> Self {
        Self { timeout: None, poll_interval: Duration::from_millis(500), poll_only: false }
    }
}

/// What a wait reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// The task's state changed (status, step, progress or error).
    Task(&'a TaskDto),
    /// The task recorded a history event.
    Event(&'a EventDto),
}

/// Reconnects in a row before the wait falls back to polling.
const MAX_STREAM_FAILURES: u32 = 3;

impl Client {
    /// Waits until the task ends and returns its final state (succeeded, failed or
    /// cancelled: check `status`), calling `on` with every change and event on the way.
    pub async fn wait_for_task(
        &self,
        id: Uuid,
        opts: WaitOptions,
        mut on: impl FnMut(Progress<'_>) + Send,
    ) -> Result<TaskDto> {
        let wait = async {
            let mut last_event: Option<Uuid> = None;
            let mut last_task: Option<TaskDto> = None;
            let mut failures = 0;
            while !opts.poll_only && failures < MAX_STREAM_FAILURES {
                let mut stream = match self.task_stream(id, last_event).await {
                    Ok(s) => s,
                    // A server without streams: poll.
                    Err(Error::Api(p)) if p.code == "route_not_found" || p.status == 406 => break,
                    Err(e @ Error::Api(_)) => return Err(e),
                    Err(e) => {
                        tracing::debug!(task = %id, error = %e, "task stream unavailable");
                        failures += 1;
                        tokio::time::sleep(opts.poll_interval).await;
                        continue;
                    }
                };
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(item) => {
                            failures = 0;
                            match item.message {
                                StreamMessage::Task(t) => {
                                    on(Progress::Task(&t));
                                    if t.status.is_terminal() {
                                        return Ok(t);
                                    }
                                    last_task = Some(t);
                                }
                                StreamMessage::Event(e) => {
                                    last_event = Some(e.id);
                                    on(Progress::Event(&e));
                                }
                            }
                        }
                        Err(e) => {
                            tracing::debug!(task = %id, error = %e, "task stream broke; resuming");
                            failures += 1;
                            break;
                        }
                    }
                }
                // The stream ended without the task's end: it may have ended meanwhile.
                let t = self.task(id).await?;
                if t.status.is_terminal() {
                    if last_task.as_ref() != Some(&t) {
                        on(Progress::Task(&t));
                    }
                    return Ok(t);
                }
            }
            loop {
                let t = self.task(id).await?;
                if last_task.as_ref() != Some(&t) {
                    on(Progress::Task(&t));
                }
                if t.status.is_terminal() {
                    return Ok(t);
                }
                last_task = Some(t);
                tokio::time::sleep(opts.poll_interval).await;
            }
        };
        match opts.timeout {
            Some(d) => tokio::time::timeout(d, wait).await.map_err(|_| Error::Timeout(d))?,
            None => wait.await,
        }
    }
}
