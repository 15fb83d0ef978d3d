//! `herd`: one binary for the API server, migrations, the OpenAPI spec and the
//! all-in-one dev mode.

// Standard output is this binary's interface (spec, banner); logs go to stderr.
#![allow(clippy::print_stdout)]

use anyhow::Context;
use clap::Parser;
use herd::cli::{Cli, Command, LogFormatArg};
use herd_api::Application;
use herd_api::startup::{Mode, prepare};
use herd_core::config::{LogFormat, Settings};
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(f) = cli.log_format {
        settings.log_format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    init_tracing(&settings);

    match cli.command {
        Command::Openapi => {
            print!("{}", herd_api::openapi_json());
            Ok(())
        }
        Command::Migrate => {
            let db = herd_store::connect(&settings.database_url()).await?;
            herd_store::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            let prepared = prepare(&settings, Mode::Production).await?;
            let app = Application::build(&settings, prepared.store)
                .with_context(|| format!("binding {}", settings.listen))?;
            tracing::info!(addr = %app.addr(), "API listening");
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Dev { listen, state_dir } => {
            if let Some(l) = listen {
                settings.listen = l;
            }
            if let Some(d) = state_dir {
                settings.state_dir = d;
            }
            // Dev is the embedded setup: always SQLite in the state dir.
            settings.database_url = None;
            let prepared = prepare(&settings, Mode::Dev).await?;
            let app = Application::build(&settings, prepared.store)
                .with_context(|| format!("binding {}", settings.listen))?;
            let url = format!("http://{}", app.addr());
            let token_line = match &prepared.new_admin_token {
                Some(t) => format!(
                    "{}  (saved to {}; shown only this once)",
                    t.expose_secret(),
                    settings.state_dir.join("admin.token").display()
                ),
                None => format!("in {}", settings.state_dir.join("admin.token").display()),
            };
            {
                println!("Herd dev is running");
                println!("  API:         {url}");
                println!("  Docs:        {url}/docs/");
                println!("  Admin token: {token_line}");
                println!("  State dir:   {}", settings.state_dir.display());
            }
            app.run_until_stopped().await?;
            Ok(())
        }
    }
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
