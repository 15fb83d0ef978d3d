//! Command-line surface of the single `herd` binary.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "herd", version, about = "PostgreSQL clusters as a service")]
pub struct Cli {
    /// Configuration file (default: $HERD_CONFIG or ./herd.toml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Log format; overrides `log_format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the API against the configured database and queue (production).
    Serve,
    /// Run a worker: take tasks from the Redis queue and execute them. Run as many as you like.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Everything in one process on an embedded SQLite database: the laptop setup.
    Dev {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the database, keys and servers live (default ./.herd).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Also create a first cluster (`demo`, 1 node) and print its connection URI
        /// once it is active.
        #[arg(long, conflicts_with_all = ["down", "purge"])]
        demo: bool,
        /// Stop every server's processes (etcd, Patroni, PostgreSQL, sshd) and exit;
        /// the next `herd dev` starts them again. Needs `herd dev` to be stopped.
        #[arg(long)]
        down: bool,
        /// Delete every server, volume, snapshot and backup, then the state dir itself,
        /// and exit: nothing `herd dev` made is left. Needs `herd dev` to be stopped.
        #[arg(long, conflicts_with = "down")]
        purge: bool,
    },
}

/// Names of the subcommands, for checks of scripts and compose files.
pub fn subcommand_names() -> Vec<String> {
    use clap::CommandFactory;
    Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).collect()
}
