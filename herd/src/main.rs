//! `herd`: one binary for the API server, the workers, migrations, the OpenAPI spec
//! and the all-in-one dev mode.

// Standard output is this binary's interface (spec, banner, the client commands'
// results); logs go to stderr.

/// One line of the banner on stdout. A closed stdout (`herd dev | head -3`, a parent
/// that stopped reading) must not take the server down, as `println!` would by
/// panicking: the line is dropped instead.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod demo;

use anyhow::Context;
use clap::Parser;
use herd::cli::{Cli, Command, LogFormatArg};
use herd_api::Application;
use herd_api::startup::{Mode, prepare};
use herd_api::state::AppState;
use herd_core::config::{LogFormat, Settings};
use herd_worker::{Ctx, Queue};
use secrecy::ExposeSecret;
use std::sync::Arc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // Client commands read no server settings: a herd.toml here is not theirs.
        Command::Client(cmd) => {
            init_client_tracing();
            return herd::client::run(cli.conn, *cmd).await;
        }
        other => other,
    };
    match server(cli.config.as_deref(), cli.log_format, command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn server(
    config: Option<&std::path::Path>,
    log_format: Option<LogFormatArg>,
    command: Command,
) -> anyhow::Result<()> {
    let mut settings = Settings::load(config)?;
    if let Some(f) = log_format {
        settings.log_format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    init_tracing(&settings);

    match command {
        Command::Openapi => {
            use std::io::Write;
            match std::io::stdout().lock().write_all(herd_api::openapi_json().as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Migrate => {
            herd_store::migrate_database(&settings.database_url()).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            let prepared = prepare(&settings, Mode::Production).await?;
            let providers = providers(&settings)?;
            let queue = Queue::redis(&settings.redis_url).await.context("connecting to Redis")?;
            let state = AppState::new(&settings, prepared.store, providers, managers(), Arc::new(queue)).await?;
            let app = Application::build(&settings, state).with_context(|| format!("binding {}", settings.listen))?;
            tracing::info!(addr = %app.addr(), "API listening");
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Worker => {
            let prepared = prepare(&settings, Mode::Production).await?;
            let providers = providers(&settings)?;
            recover(&providers).await;
            let queue = Queue::redis(&settings.redis_url).await.context("connecting to Redis")?;
            let ctx = Arc::new(
                Ctx::new(prepared.store, providers, managers(), settings.worker.clone(), queue)
                    .with_backups(settings.backups.clone(), settings.state_dir.clone())
                    .with_egress(&settings.hooks),
            );
            tracing::info!(worker = %ctx.name, "worker running");
            tokio::select! {
                _ = herd_worker::run(ctx) => {}
                _ = shutdown_signal() => tracing::info!("worker stopping"),
            }
            Ok(())
        }
        Command::Dev { listen, state_dir, demo, down, purge } => {
            if let Some(l) = listen {
                settings.listen = l;
            }
            if let Some(d) = state_dir {
                settings.state_dir = d;
                settings.absolutize_paths()?;
            }
            // Dev is the embedded setup: always SQLite in the state dir.
            settings.database_url = None;
            if down || purge {
                return dev_down(&settings, purge).await;
            }
            // One process per state dir: at start dev takes over every running task as
            // its own orphan, which is only right if no other dev process runs them.
            let _lock = lock_state_dir(&settings.state_dir)?;
            let prepared = prepare(&settings, Mode::Dev).await?;
            let providers = providers(&settings)?;
            let dev_providers = providers.clone();
            recover(&providers).await;
            let queue = Queue::sqlite(&settings.state_dir.join("queue.db")).await.context("opening the queue")?;
            // One process owns this state dir: whatever it was running when it last
            // stopped is resumed now rather than after the heartbeat timeout.
            let orphans = herd_worker::adopt_orphans(&prepared.store).await?;
            if orphans > 0 {
                tracing::info!(tasks = orphans, "resuming tasks interrupted by the last stop");
            }
            let store = prepared.store.clone();
            let managers = managers();
            let state = AppState::new(
                &settings,
                prepared.store.clone(),
                providers.clone(),
                managers.clone(),
                Arc::new(queue.clone()),
            )
            .await?;
            let app = Application::build(&settings, state).with_context(|| format!("binding {}", settings.listen))?;
            let url = format!("http://{}", app.addr());
            // The local provider's servers are on this machine: they reach the API at
            // its own address to report role changes.
            let mut worker_settings = settings.worker.clone();
            worker_settings.callback_url.get_or_insert_with(|| url.clone());
            let ctx = Arc::new(
                Ctx::new(store, providers, managers, worker_settings, queue)
                    .with_backups(settings.backups.clone(), settings.state_dir.clone())
                    .with_egress(&settings.hooks),
            );
            let token_path = settings.state_dir.join("admin.token");
            let token_line = match &prepared.new_admin_token {
                Some(t) => format!("{}  (saved to {}; shown only this once)", t.expose_secret(), token_path.display()),
                None => format!("in {}", token_path.display()),
            };
            say!("Herd dev is running");
            say!("  API:         {url}");
            say!("  Docs:        {url}/docs/");
            say!("  Admin token: {token_line}");
            say!("  State dir:   {}", settings.state_dir.display());
            say!("  CLI:         {} login --url {url} --token-file {}", program(), token_path.display());
            let worker = tokio::spawn(herd_worker::run(ctx));
            if demo {
                let token = std::fs::read_to_string(&token_path)?;
                tokio::spawn(demo::run(url, token.trim().to_owned()));
            }
            app.run_until_stopped().await?;
            worker.abort();
            // Like cloud VMs, the servers outlive the control plane; say so, and how to
            // stop them, so a laptop is not left with daemons nobody knows about.
            let running = running_servers(&dev_providers).await;
            if running > 0 {
                let dir = settings.state_dir.display();
                let herd = program();
                eprintln!(
                    "herd dev stopped. Its {running} server(s) keep running (sshd, etcd, Patroni, PostgreSQL) \
                     and the next `herd dev` manages them again.\n  \
                     Stop them:         {herd} dev --down --state-dir {dir}\n  \
                     Remove everything: {herd} dev --purge --state-dir {dir}"
                );
            }
            Ok(())
        }
        Command::Client(_) => unreachable!("client commands return before settings load"),
    }
}

/// How to run this binary again from a shell: `herd` when that is what PATH finds,
/// else its path (a fresh clone runs target/debug/herd through scripts/dev.sh).
fn program() -> String {
    let me = std::env::current_exe().and_then(|p| p.canonicalize()).ok();
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|d| d.join("herd")).find(|p| p.is_file()).and_then(|p| p.canonicalize().ok())
    });
    match (me, on_path) {
        (Some(me), Some(found)) if me == found => "herd".into(),
        (Some(me), _) => me.display().to_string(),
        (None, _) => "herd".into(),
    }
}

/// How many loopback servers run now (they outlive `herd dev`), as their provider
/// records them.
async fn running_servers(providers: &herd_providers::Providers) -> usize {
    let mut n = 0;
    for p in providers.iter().filter(|p| p.kind() == herd_providers::ProviderKind::Local) {
        match p.list_servers(&Default::default()).await {
            Ok(servers) => n += servers.iter().filter(|s| s.status == herd_providers::ServerStatus::Running).count(),
            Err(e) => tracing::warn!(provider = %p.name(), error = %e, "cannot list servers"),
        }
    }
    n
}

/// `herd dev --down` / `--purge`: with `herd dev` stopped, stop (or delete) what it made.
async fn dev_down(settings: &Settings, purge: bool) -> anyhow::Result<()> {
    let dir = &settings.state_dir;
    if !dir.exists() {
        eprintln!("nothing to do: {} does not exist", dir.display());
        return Ok(());
    }
    // The servers belong to the running `herd dev` while it runs: it would restart
    // what we stop, or keep using what we delete.
    let lock = lock_state_dir(dir).map_err(|_| {
        anyhow::anyhow!("`herd dev` is running on {}: stop it first (Ctrl-C), then run this again", dir.display())
    })?;
    let local = &settings.providers.local;
    let root = herd_providers::local_root(local, dir);
    if root.exists() {
        let provider =
            herd_providers::local::LocalProvider::new("local", local, &root).context("opening the local provider")?;
        if purge {
            let (servers, volumes, snapshots) = provider.delete_all().await?;
            eprintln!("deleted {servers} server(s), {volumes} volume(s) and {snapshots} snapshot(s)");
        } else {
            let halted = provider.halt_all().await?;
            eprintln!("stopped {} server(s); the next `herd dev` starts them again", halted.len());
        }
    }
    if purge {
        drop(lock);
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        eprintln!("removed {}", dir.display());
        // Configured elsewhere, these may hold more than Herd's: left alone.
        for p in [settings.backups.path.as_ref(), local.root.as_ref()].into_iter().flatten() {
            if !p.starts_with(dir) && p.exists() {
                eprintln!(
                    "left {} (configured outside the state dir); remove it yourself if it is Herd's alone",
                    p.display()
                );
            }
        }
    }
    Ok(())
}

fn lock_state_dir(dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Loopback hosts' service users pass through to their own server roots and
    // backup stanzas below; none may list what is here.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("chmod {}", dir.display()))?;
    let path = dir.join("dev.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| anyhow::anyhow!("another `herd dev` is already using {}", dir.display()))
}

fn providers(settings: &Settings) -> anyhow::Result<Arc<herd_providers::Providers>> {
    let p =
        herd_providers::build_providers(&settings.providers, &settings.state_dir).context("configuring providers")?;
    Ok(Arc::new(p))
}

/// The datastore managers this build ships, shared by the API and the worker.
fn managers() -> Arc<herd_datastores::Managers> {
    Arc::new(herd_datastores::Managers::builtin())
}

/// Servers that were running before Herd (or the machine) stopped run again.
async fn recover(providers: &herd_providers::Providers) {
    match providers.recover_all().await {
        Ok(restarted) => {
            for (provider, ids) in restarted.iter().filter(|(_, ids)| !ids.is_empty()) {
                tracing::info!(provider = %provider, servers = ids.len(), "restarted servers");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not recover servers"),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The CLI logs only warnings (RUST_LOG to see more), on stderr.
fn init_client_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn init_tracing(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
