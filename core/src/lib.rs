//! Herd's domain: configuration, names, states and their transitions, secrets.
//! No I/O beyond reading config and key files; shared by the API, the worker and the CLI.

pub mod access;
pub mod config;
pub mod crypto;
pub mod egress;
pub mod faults;
pub mod hooks;
pub mod names;
pub mod pki;
pub mod queue;
pub mod quota;
pub mod schedule;
pub mod sshkey;
pub mod status;
pub mod task;
pub mod values;
