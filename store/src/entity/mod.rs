//! sea-orm entities: the database shape. Never exposed through the API; the api crate
//! maps them to its own DTOs.

pub mod api_token;
pub mod backup;
pub mod backup_policy;
pub mod cluster;
pub mod cluster_database;
pub mod cluster_user;
pub mod datastore;
pub mod datastore_version;
pub mod node;
pub mod project;
pub mod snapshot;
pub mod ssh_key;
pub mod task;
pub mod task_event;
pub mod volume;
