//! The `herd` binary's library half: its CLI definition, so tests can inspect it.
pub mod cli;
