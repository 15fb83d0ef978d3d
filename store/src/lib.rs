//! Persistence: sea-orm entities and the repository functions the API and worker use.
//! Runs on SQLite (embedded default) and PostgreSQL. Every function that takes a
//! `project_id` only sees that project's rows: tenancy is enforced here, not by callers.

pub mod entity;
mod error;
pub mod repo;

pub use error::{Conflict, StoreError};
pub use repo::*;

use herd_core::crypto::MasterKey;
use herd_migrations::MigratorTrait;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use std::sync::Arc;
use std::time::Duration;

/// The database handle plus the key that encrypts secrets at rest.
#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
    key: Arc<MasterKey>,
}

impl Store {
    pub fn new(db: DatabaseConnection, key: Arc<MasterKey>) -> Self {
        Self { db, key }
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }
}

pub async fn connect(url: &str) -> Result<DatabaseConnection, StoreError> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(16)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        // SQL statements are logged at debug only: they never carry secrets (those are
        // bound parameters, and encrypted), but they are noisy.
        .sqlx_logging_level(tracing::log::LevelFilter::Debug);
    if url.starts_with("sqlite:") {
        opts.map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL lets API readers proceed while the worker writes; the busy timeout
            // absorbs short write contention instead of failing requests.
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(15))
                .foreign_keys(true)
                .create_if_missing(true)
        });
    }
    Ok(Database::connect(opts).await?)
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    herd_migrations::Migrator::up(db, None).await?;
    Ok(())
}
