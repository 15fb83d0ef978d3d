//! Command-line surface of the single `herd` binary: the server commands (`serve`,
//! `worker`, `dev`, `migrate`, `openapi`) and the client commands an operator drives
//! Herd with (`cluster`, `backup`, `task`, ...).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "herd", version, about = "PostgreSQL clusters as a service")]
pub struct Cli {
    /// Server configuration file (default: $HERD_CONFIG or ./herd.toml if present).
    #[arg(long, global = true, help_heading = "Server options")]
    pub config: Option<PathBuf>,
    /// Server log format; overrides `log_format`.
    #[arg(long, global = true, value_enum, help_heading = "Server options")]
    pub log_format: Option<LogFormatArg>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Which API the client commands talk to, and how they print.
#[derive(Args, Clone, Default)]
pub struct ConnArgs {
    /// API URL (else the context's).
    #[arg(long, global = true, env = "HERD_URL", help_heading = "Client options")]
    pub url: Option<String>,
    /// API token (else the context's). Prefer HERD_TOKEN or `herd login`: a flag shows in `ps`.
    #[arg(long, global = true, env = "HERD_TOKEN", hide_env_values = true, help_heading = "Client options")]
    pub token: Option<String>,
    /// Named context from the CLI config (default: its current one).
    #[arg(long, global = true, env = "HERD_CONTEXT", help_heading = "Client options")]
    pub context: Option<String>,
    /// Output: aligned tables for people, or the API's JSON / YAML for scripts.
    #[arg(short = 'o', long, global = true, value_enum, env = "HERD_OUTPUT", help_heading = "Client options")]
    pub output: Option<OutputFormat>,
    /// No colours (also: NO_COLOR set, or stdout not a terminal).
    #[arg(long, global = true, help_heading = "Client options")]
    pub no_color: bool,
}

/// Never the token: `Cli` is `Debug` (clap needs it), and a debug print must not leak it.
impl std::fmt::Debug for ConnArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("context", &self.context)
            .field("output", &self.output)
            .field("no_color", &self.no_color)
            .finish()
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
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
    #[command(flatten)]
    Client(Box<ClientCommand>),
}

/// The commands that talk to a Herd API.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Save an API URL and token as a named context (~/.config/herd/config.toml, mode 0600).
    Login {
        /// Read the token from this file (e.g. .herd/admin.token).
        #[arg(long, conflicts_with = "token_stdin")]
        token_file: Option<PathBuf>,
        /// Read the token from standard input.
        #[arg(long)]
        token_stdin: bool,
        /// The context's name (default: `default`).
        #[arg(long = "name", default_value = "default")]
        name: String,
    },
    /// Named contexts: list them, switch, delete.
    #[command(subcommand)]
    Context(ContextCmd),
    /// PostgreSQL clusters.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// A cluster's nodes: add and remove replicas, power, failover preferences.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Backups (pgBackRest).
    #[command(subcommand)]
    Backup(BackupCmd),
    /// A new cluster from another's backups (latest, a given one, or a point in time) or from a snapshot.
    Restore(RestoreArgs),
    /// Volume snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// A cluster's backup schedules and retention.
    #[command(subcommand, name = "backup-policy")]
    BackupPolicy(PolicyCmd),
    /// A cluster's managed databases.
    #[command(subcommand)]
    Database(DatabaseCmd),
    /// A cluster's managed users: passwords, roles, privileges per database.
    #[command(subcommand)]
    User(UserCmd),
    /// SSH keys for cluster servers.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Background work.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Projects (admin).
    #[command(subcommand)]
    Project(ProjectCmd),
    /// API tokens of a project (admin).
    #[command(subcommand)]
    Token(TokenCmd),
    /// The datastore catalogue.
    #[command(subcommand)]
    Datastore(ListCmd),
    /// Machine sizes.
    #[command(subcommand)]
    Flavor(ListCmd),
    /// Configured providers.
    #[command(subcommand)]
    Provider(ListCmd),
    /// Print a shell completion script (`source <(herd completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// List contexts (the current one is marked).
    List,
    /// Make a context the current one.
    Use { name: String },
    /// Forget a context.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ListCmd {
    List,
}

/// `--wait` and its deadline, for every command that starts a task.
#[derive(Args, Debug, Clone, Default)]
pub struct WaitArgs {
    /// Follow the task with a progress bar until it ends; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (`90s`, `10m`, `1h`; a bare number is seconds).
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    pub timeout: Option<std::time::Duration>,
}

/// `300`, `90s`, `10m`, `2h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// The options shared by `cluster create` and `restore`.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterSpecArgs {
    /// Nodes, 1–9 (default 1; 2 nodes cannot fail over automatically).
    #[arg(long)]
    pub nodes: Option<i64>,
    /// Flavor (default: the first the provider offers; see `herd flavor list`).
    #[arg(long)]
    pub flavor: Option<String>,
    #[arg(long, default_value = "postgresql")]
    pub datastore: String,
    /// Default: the datastore's newest active version.
    #[arg(long)]
    pub version: Option<String>,
    /// Data volume size in GB (default 10, or the snapshot's size).
    #[arg(long)]
    pub volume_gb: Option<i64>,
    /// Provider (default: the first configured).
    #[arg(long)]
    pub provider: Option<String>,
    /// Synchronous replication: no acknowledged commit is lost on failover.
    #[arg(long)]
    pub synchronous: bool,
    /// HA timing profile: fast (loopback hosts, local networks) or safe (cloud).
    #[arg(long, value_parser = ["fast", "safe"])]
    pub ha_profile: Option<String>,
    /// A server parameter, NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// SSH key by name or id (default: a key generated for the cluster).
    #[arg(long)]
    pub key: Option<String>,
    /// Replace a node whose server is gone.
    #[arg(long)]
    pub auto_heal: bool,
    /// Read the admin password from standard input (default: generated).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Create a cluster.
    Create {
        name: String,
        #[command(flatten)]
        spec: ClusterSpecArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List clusters.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        datastore: Option<String>,
    },
    /// A cluster's settings, nodes and endpoints.
    Show { cluster: String },
    /// The operator's one-screen view: nodes, endpoints, the running task, backups, recent events.
    Status { cluster: String },
    /// Delete a cluster and everything it runs on.
    Delete {
        cluster: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Change parameters, replication mode, HA timing or auto-heal.
    Update {
        cluster: String,
        /// Set a server parameter, NAME=VALUE (repeatable); others keep their value.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Return a parameter to its default (repeatable).
        #[arg(long = "unset-param", value_name = "NAME")]
        unset: Vec<String>,
        #[arg(long)]
        synchronous: Option<bool>,
        #[arg(long)]
        auto_heal: Option<bool>,
        #[arg(long, value_parser = ["fast", "safe"])]
        ha_profile: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Open psql on the primary (the password goes through the environment).
    Connect {
        cluster: String,
        /// Extra psql arguments, after `--`.
        #[arg(last = true)]
        psql_args: Vec<String>,
    },
    /// The admin user, password and connection URI.
    Credentials { cluster: String },
    /// The cluster's history, newest last; `--follow` streams new events.
    Events {
        cluster: String,
        /// How many of the latest events (1–100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Hand the primary role to a replica (planned, no data loss).
    Switchover {
        cluster: String,
        /// The replica to promote (default: the best one).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Promote a replica now (the primary is lost or must go).
    Failover {
        cluster: String,
        /// The replica to promote (default: the most advanced).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Restart PostgreSQL (rolling, or one node).
    Restart(NodeActionArgs),
    /// Reload PostgreSQL's configuration.
    Reload(NodeActionArgs),
    /// Start PostgreSQL on nodes stopped by `stop`.
    Start(NodeActionArgs),
    /// Stop PostgreSQL (it stays down until `start`).
    Stop(NodeActionArgs),
    /// Rebuild a replica from the primary.
    Reinitialize {
        cluster: String,
        #[arg(long)]
        node: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Args, Debug)]
pub struct NodeActionArgs {
    pub cluster: String,
    /// Only this node (name or id; default: every node).
    #[arg(long)]
    pub node: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Add replicas.
    Add {
        cluster: String,
        #[arg(long, default_value_t = 1)]
        count: i64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Remove a replica (its server and volume go).
    Remove {
        cluster: String,
        node: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Power a node's server on or off (off --force: a crash drill).
    Power {
        cluster: String,
        node: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Change a node's failover preferences.
    Update {
        cluster: String,
        node: String,
        #[arg(long)]
        no_failover: Option<bool>,
        /// 0–100; higher is preferred for promotion.
        #[arg(long)]
        priority: Option<i64>,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Take a backup from the primary.
    Create {
        cluster: String,
        #[arg(long = "type", value_parser = ["full", "diff", "incr"], default_value = "full")]
        backup_type: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List backups (of one cluster, or all).
    List {
        #[arg(long)]
        cluster: Option<String>,
    },
    Show {
        id: String,
    },
    /// Remove a backup (and those based on it) from the repository.
    Expire {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The new cluster's name.
    pub name: String,
    /// The cluster whose backups to restore (name, or id if it is deleted).
    #[arg(long = "from", required_unless_present = "snapshot", conflicts_with = "snapshot")]
    pub from: Option<String>,
    /// A given backup of it (default: the latest, or the latest before --time).
    #[arg(long)]
    pub backup: Option<String>,
    /// Recover to this point in time (RFC 3339, e.g. 2026-12-04T10:00:00Z).
    #[arg(long)]
    pub time: Option<String>,
    /// Start from a volume snapshot instead.
    #[arg(long)]
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub spec: ClusterSpecArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Subcommand, Debug)]
pub enum DatabaseCmd {
    /// Create a database (owned by the admin role unless --owner names a managed user).
    Create {
        cluster: String,
        name: String,
        #[arg(long)]
        owner: Option<String>,
        /// Default UTF8.
        #[arg(long)]
        encoding: Option<String>,
        /// Default C.UTF-8.
        #[arg(long)]
        locale: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    List {
        cluster: String,
    },
    /// Drop a database; --force ends the sessions connected to it.
    Delete {
        cluster: String,
        name: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a login user; its generated password is printed once.
    Create {
        cluster: String,
        name: String,
        /// Privilege per database: DB=connect|read_only|read_write|create|owner (repeatable).
        #[arg(long = "grant", value_name = "DB=PRIVILEGE")]
        grants: Vec<String>,
        /// A predefined role to hold (pg_monitor, pg_read_all_data, …; repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long)]
        connection_limit: Option<i32>,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    List {
        cluster: String,
    },
    /// Change privileges (--grant replaces them all), roles, limit, or rotate the password.
    Update {
        cluster: String,
        name: String,
        #[arg(long = "grant", value_name = "DB=PRIVILEGE")]
        grants: Vec<String>,
        /// Take every privilege away (with no --grant).
        #[arg(long, conflicts_with = "grants")]
        no_grants: bool,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// -1 for no limit.
        #[arg(long, allow_negative_numbers = true)]
        connection_limit: Option<i32>,
        /// Generate a new password and print it once.
        #[arg(long)]
        rotate_password: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    Delete {
        cluster: String,
        name: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Snapshot the primary's volume inside an online backup.
    Create {
        cluster: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    List {
        #[arg(long)]
        cluster: Option<String>,
    },
    Show {
        id: String,
    },
    Delete {
        id: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    Get {
        cluster: String,
    },
    /// Set (replace) the policy: cron schedules in UTC and how many full backups to keep.
    Set {
        cluster: String,
        /// Full backups, e.g. "0 3 * * 0".
        #[arg(long)]
        full: String,
        #[arg(long)]
        diff: Option<String>,
        #[arg(long)]
        incr: Option<String>,
        /// Full backups to keep, 1–1000.
        #[arg(long)]
        keep: i64,
    },
    Delete {
        cluster: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Generate an ed25519 key, or import a private key file.
    Create {
        name: String,
        #[arg(long)]
        private_key_file: Option<PathBuf>,
    },
    List,
    Show {
        key: String,
    },
    Delete {
        key: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    Show {
        id: String,
    },
    /// Follow a task with a progress bar until it ends.
    Watch {
        id: String,
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<std::time::Duration>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCmd {
    Create {
        name: String,
    },
    List,
    /// A project's limits and usage; operators change them with --set and --reset.
    Quota {
        project: String,
        /// Give the project its own limit, e.g. `--set clusters=5` (repeatable).
        #[arg(long = "set", value_name = "NAME=N")]
        set: Vec<String>,
        /// Return a limit to the default (`--reset clusters`, repeatable).
        #[arg(long = "reset", value_name = "NAME")]
        reset: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// A new token (shown once).
    Create {
        project: String,
        #[arg(long)]
        name: Option<String>,
        /// member: the project's resources; admin: also its tokens; operator: all of Herd.
        #[arg(long, value_parser = ["member", "admin", "operator"], default_value = "member")]
        role: String,
    },
    List {
        project: String,
    },
    Revoke {
        project: String,
        token: String,
    },
}

/// Names of the subcommands, for checks of scripts and compose files.
pub fn subcommand_names() -> Vec<String> {
    use clap::CommandFactory;
    Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks a command tree only when that subcommand is parsed; check them all.
    #[test]
    fn the_command_tree_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let cli = Cli::parse_from(["herd", "--token", "herd_secret_value", "cluster", "list"]);
        assert_eq!(cli.conn.token.as_deref(), Some("herd_secret_value"));
        assert!(!format!("{cli:?}").contains("herd_secret_value"));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        use std::time::Duration;
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }
}
