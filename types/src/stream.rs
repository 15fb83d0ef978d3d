//! What the Server-Sent Events streams (`/v1/tasks/{id}/stream`,
//! `/v1/clusters/{id}/events/stream`) carry: each message's `event:` field names the
//! kind and its `data:` is the JSON of the matching type. A history event's message
//! also carries `id:` (the event's id), which `Last-Event-ID` resumes after.

use crate::{EventDto, TaskDto};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMessage {
    /// The task's state: first the current one, then at every change of status, step,
    /// progress or error.
    Task(TaskDto),
    /// An entry of the cluster's history, in the order they were recorded.
    Event(EventDto),
}

impl StreamMessage {
    pub const TASK: &'static str = "task";
    pub const EVENT: &'static str = "event";

    /// The `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamMessage::Task(_) => Self::TASK,
            StreamMessage::Event(_) => Self::EVENT,
        }
    }

    /// The message for an `event:` name and its `data:`; `None` for a kind this
    /// version does not know (newer servers may add kinds).
    pub fn parse(name: &str, data: &str) -> Result<Option<Self>, serde_json::Error> {
        Ok(match name {
            Self::TASK => Some(StreamMessage::Task(serde_json::from_str(data)?)),
            Self::EVENT => Some(StreamMessage::Event(serde_json::from_str(data)?)),
            _ => None,
        })
    }
}
