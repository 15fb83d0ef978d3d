//! The client commands: `herd cluster …`, `herd backup …`, … over `herd-client`.
//!
//! Results go to stdout (a table, or the API's JSON/YAML with `-o`), everything else to
//! stderr. Exit codes: 0 done; 1 a local problem (config file, psql missing); 2 usage
//! (bad arguments, no API configured); 3 the API refused (4xx); 4 the server failed
//! (5xx) or could not be reached; 5 a waited-for task failed or was cancelled; 6 a
//! wait timed out.

mod access;
mod admin;
mod clusters;
mod context;
mod data;
mod output;
mod progress;
pub mod tls;

use crate::cli::{ClientCommand, ConnArgs, WaitArgs};
use anyhow::Context as _;
use herd_client::Client;
use herd_client::types::EventDto;
use output::Out;
use std::process::ExitCode;
use uuid::Uuid;

/// Failures with an exit code of their own.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The command line cannot work as given.
    #[error("{0}")]
    Usage(String),
    /// A waited-for task ended without success.
    #[error("{what} failed: {code}: {message}")]
    Task { what: String, code: String, message: String },
    #[error("{0}")]
    Timeout(String),
}

pub mod exit {
    pub const LOCAL: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const API: u8 = 3;
    pub const SERVER: u8 = 4;
    pub const TASK: u8 = 5;
    pub const TIMEOUT: u8 = 6;
}

/// Runs a client command; prints its error and picks the exit code.
pub async fn run(conn: ConnArgs, cmd: ClientCommand) -> ExitCode {
    let out = Out::new(conn.output.unwrap_or_default(), conn.no_color);
    match dispatch(&conn, cmd, &out).await {
        Ok(()) => ExitCode::SUCCESS,
        // `herd … | head`: the reader has what it wanted.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = exit_code(&e);
            for line in error_text(&e).lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(code)
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(f) = e.downcast_ref::<Failure>() {
        return match f {
            Failure::Usage(_) => exit::USAGE,
            Failure::Task { .. } => exit::TASK,
            Failure::Timeout(_) => exit::TIMEOUT,
        };
    }
    match e.downcast_ref::<herd_client::Error>() {
        Some(herd_client::Error::Api(p)) if p.status < 500 => exit::API,
        Some(herd_client::Error::Timeout(_)) => exit::TIMEOUT,
        Some(_) => exit::SERVER,
        None => exit::LOCAL,
    }
}

/// The error as people read it: an API problem one line per field
/// (`validation_failed: nodes: must be from 1 to 9`), else the cause chain.
fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<herd_client::Error>() {
        Some(herd_client::Error::Api(p)) => p.to_string(),
        // Its Display already names the innermost cause; the chain would repeat it.
        Some(e @ herd_client::Error::Network { .. }) => e.to_string(),
        _ => format!("{e:#}"),
    }
}

async fn dispatch(conn: &ConnArgs, cmd: ClientCommand, out: &Out) -> anyhow::Result<()> {
    use ClientCommand::*;
    match cmd {
        Login { token_file, token_stdin, name } => admin::login(conn, token_file, token_stdin, &name, out).await,
        Context(c) => admin::context(c, out),
        Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut crate::cli::Cli::command(), "herd", &mut script);
            std::io::stdout().lock().write_all(&script)?;
            Ok(())
        }
        cmd => {
            let api = connect(conn)?;
            match cmd {
                Cluster(c) => clusters::cluster(&api, c, out).await,
                Node(c) => clusters::node(&api, c, out).await,
                Restore(r) => clusters::restore(&api, r, out).await,
                Backup(c) => data::backup(&api, c, out).await,
                Snapshot(c) => data::snapshot(&api, c, out).await,
                BackupPolicy(c) => data::policy(&api, c, out).await,
                Database(c) => access::database(&api, c, out).await,
                User(c) => access::user(&api, c, out).await,
                Key(c) => admin::key(&api, c, out).await,
                Task(c) => admin::task(&api, c, out).await,
                Project(c) => admin::project(&api, c, out).await,
                Token(c) => admin::token(&api, c, out).await,
                Datastore(_) => admin::datastores(&api, out).await,
                Flavor(_) => admin::flavors(&api, out).await,
                Provider(_) => admin::providers(&api, out).await,
                Login { .. } | Context(_) | Completions { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// The API to talk to: --url/--token (or HERD_URL/HERD_TOKEN) over the named or
/// current context.
fn connect(conn: &ConnArgs) -> anyhow::Result<Client> {
    let config = context::CliConfig::load()?;
    let name = conn.context.clone().or_else(|| config.current.clone());
    let ctx = match &name {
        Some(n) if conn.url.is_none() || conn.token.is_none() => Some(config.get(n).map_err(usage)?.clone()),
        _ => None,
    };
    let url = conn.url.clone().or_else(|| ctx.as_ref().map(|c| c.url.clone()));
    let token = conn.token.clone().or_else(|| ctx.as_ref().map(|c| c.token.clone()));
    match (url, token) {
        (Some(u), Some(t)) => Ok(Client::new(&u, &t)?),
        _ => Err(Failure::Usage(
            "no Herd API to talk to: run `herd login --url URL --token-file FILE`, or set HERD_URL and HERD_TOKEN"
                .into(),
        )
        .into()),
    }
}

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    Failure::Usage(e.to_string()).into()
}

/// Starts-a-task commands end here: with `--wait`, follow the task to its end (and
/// fail as it failed); without, say how to follow it.
async fn finish(api: &Client, task: Uuid, what: &str, wait: &WaitArgs, out: &Out) -> anyhow::Result<()> {
    if wait.wait {
        progress::follow(api, task, what, out, wait.timeout).await?;
    } else {
        output::note(format!("{what}: task {task} started; follow it with `herd task watch {task}`"));
    }
    Ok(())
}

/// A command that made something and started a task on it: without `--wait` it shows
/// the answer (which names the task); with it, it follows the task to its end and then
/// shows the thing as it is now.
async fn started<Fut>(
    api: &Client,
    out: &Out,
    wait: &WaitArgs,
    task: Uuid,
    what: &str,
    show_answer: impl FnOnce() -> anyhow::Result<()>,
    show_now: impl FnOnce() -> Fut,
) -> anyhow::Result<()>
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    if !wait.wait {
        show_answer()?;
    }
    finish(api, task, what, wait, out).await?;
    if wait.wait {
        show_now().await?;
    }
    Ok(())
}

/// One history event as a line: time, level, step, message.
pub(crate) fn out_event_line(out: &Out, e: &EventDto) -> String {
    let level = match e.level.as_str() {
        "warn" if out.interactive => "\x1b[33mwarn\x1b[0m".to_owned(),
        "error" if out.interactive => "\x1b[31merror\x1b[0m".to_owned(),
        l => l.to_owned(),
    };
    let step = e.step.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
    format!("  {} {level}{step} {}", e.created_at.format("%H:%M:%S"), e.message)
}

/// Reads a secret from standard input (one line, trailing newline removed).
fn read_stdin_secret(what: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_line(&mut s).with_context(|| format!("reading the {what} from standard input"))?;
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    if s.is_empty() {
        return Err(usage(format!("no {what} on standard input")));
    }
    Ok(s)
}

/// `NAME=VALUE` as a JSON value: numbers and booleans as such, the rest as strings.
fn parse_param(s: &str) -> anyhow::Result<(String, serde_json::Value)> {
    let (k, v) = s.split_once('=').ok_or_else(|| usage(format!("--param {s:?}: expected NAME=VALUE")))?;
    let value = if let Ok(i) = v.parse::<i64>() {
        serde_json::Value::from(i)
    } else if let Ok(f) = v.parse::<f64>() {
        serde_json::Value::from(f)
    } else if let Ok(b) = v.parse::<bool>() {
        serde_json::Value::from(b)
    } else {
        serde_json::Value::from(v)
    };
    Ok((k.trim().to_owned(), value))
}

fn parse_id(s: &str, what: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| usage(format!("{s:?} is not a {what} id")))
}
