//! Herd's wire types: the body of every request and response of the REST API.
//!
//! The server (`herd-api`) serializes exactly these and derives the OpenAPI document
//! from them; the client (`herd-client`) deserializes the same structs, so the two
//! cannot drift. No I/O and no database types here: the API converts its store's
//! entities into these at its edge.

mod access;
mod backups;
mod catalog;
mod clusters;
mod health;
mod managed;
mod page;
mod problem;
mod secret;
mod snapshots;
mod stream;
mod tasks;

pub use access::*;
pub use backups::*;
pub use catalog::*;
pub use clusters::*;
pub use health::*;
pub use managed::*;
pub use page::*;
pub use problem::*;
pub use snapshots::*;
pub use stream::*;
pub use tasks::*;

/// The state enums the API shows, as the domain defines them.
pub use herd_core::status::{
    ActionKind, BackupStatus, BackupType, ClusterStatus, NodeRole, NodeStatus, PowerState, SnapshotStatus, TaskKind,
    TaskStatus, TokenRole,
};
