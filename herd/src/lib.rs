//! The `herd` binary's library half: its command line, and the client commands (so
//! tests can inspect the CLI definition).
pub mod cli;
pub mod client;
