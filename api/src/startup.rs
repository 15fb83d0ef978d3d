//! Everything between "settings loaded" and "ready to serve": database, migrations,
//! seed data, master key and the bootstrap admin token.

use anyhow::{Context, bail};
use herd_core::config::Settings;
use herd_core::crypto::{MasterKey, generate_token, write_private_file};
use herd_store::Store;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// How secrets are obtained when the environment does not provide them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `herd dev`: generate the master key and admin token into the state dir.
    Dev,
    /// `herd serve` / `herd worker`: secrets must come from configuration.
    Production,
}

pub struct Prepared {
    pub store: Store,
    /// Set when this start created the admin token, so the caller can show it once.
    pub new_admin_token: Option<SecretString>,
}

pub async fn prepare(settings: &Settings, mode: Mode) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("creating state dir {}", settings.state_dir.display()))?;
    let key = match (&settings.master_key, mode) {
        (Some(k), _) => MasterKey::from_base64(k).context("HERD_MASTER_KEY")?,
        (None, Mode::Dev) => MasterKey::load_or_create(&settings.state_dir.join("master.key"))?,
        (None, Mode::Production) => bail!("HERD_MASTER_KEY is required (base64 of 32 random bytes)"),
    };
    let store = Store::open(&settings.database_url(), Arc::new(key))
        .await
        .context("connecting to the database")?
        .with_quota_defaults(settings.quotas);
    store.migrate().await.context("running migrations")?;
    let rewrapped =
        store.rewrap_legacy_secrets().await.context("re-encrypting secrets under the derived at-rest key")?;
    if rewrapped > 0 {
        tracing::info!(
            rewrapped,
            "secrets written under the master key itself re-encrypted under its derived at-rest key"
        );
    }
    store.seed_datastores().await?;

    let mut new_admin_token = None;
    let admin = match (&settings.admin_token, mode) {
        (Some(t), _) => Some(t.clone()),
        (None, Mode::Dev) => {
            let path = settings.state_dir.join("admin.token");
            match std::fs::read_to_string(&path) {
                Ok(t) => Some(SecretString::from(t.trim().to_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let t = generate_token();
                    write_private_file(&path, t.expose_secret().as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    new_admin_token = Some(t.clone());
                    Some(t)
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
        }
        (None, Mode::Production) => {
            tracing::warn!("HERD_ADMIN_TOKEN is not set: only existing tokens can authenticate");
            None
        }
    };
    if let Some(t) = admin {
        if t.expose_secret().len() < 16 {
            bail!("the admin token must be at least 16 characters");
        }
        store.ensure_admin_token(&t).await?;
    }
    Ok(Prepared { store, new_admin_token })
}
