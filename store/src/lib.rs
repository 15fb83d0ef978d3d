//! Persistence: sea-orm entities and the repository functions the API and worker use.
//! Runs on SQLite (embedded default) and PostgreSQL. Every function that takes a
//! `project_id` only sees that project's rows: tenancy is enforced here, not by callers.

mod entity;
mod error;
pub mod repo;

pub use error::{Conflict, DbError, StoreError};

/// The rows the store hands out. They are read-only records: the entities' active
/// models stay inside this crate, so every change goes through an intent-named method
/// that checks it.
pub use entity::{
    api_token::Model as ApiToken, backup::Model as Backup, backup_policy::Model as BackupPolicy,
    cluster::Model as Cluster, cluster_database::Model as ManagedDatabaseRow, datastore::Model as Datastore,
    datastore_version::Model as DatastoreVersion, node::Model as Node, project::Model as Project,
    snapshot::Model as Snapshot, ssh_key::Model as SshKey, task::Model as Task, task_event::Model as TaskEvent,
    volume::Model as Volume,
};
pub use repo::*;

use herd_core::crypto::MasterKey;
use herd_migrations::MigratorTrait;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use std::sync::Arc;
use std::time::Duration;

/// The database handle plus the key that encrypts secrets at rest.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    key: Arc<MasterKey>,
    /// Every project's limits unless an operator set its own (`[quotas]`).
    quotas: herd_core::quota::Limits,
}

impl Store {
    fn new(db: DatabaseConnection, key: Arc<MasterKey>) -> Self {
        Self { db, key, quotas: herd_core::quota::Limits::default() }
    }

    /// Uses `limits` as every project's default quotas (the `[quotas]` settings).
    pub fn with_quota_defaults(mut self, limits: herd_core::quota::Limits) -> Self {
        self.quotas = limits;
        self
    }

    pub fn quota_defaults(&self) -> herd_core::quota::Limits {
        self.quotas
    }

    /// Opens the database at `url` with the key that encrypts its secrets.
    pub async fn open(url: &str, key: Arc<MasterKey>) -> Result<Self, StoreError> {
        Ok(Self::new(connect(url).await?, key))
    }

    pub fn key(&self) -> &MasterKey {
        &self.key
    }

    /// Whether the database answers (the readiness probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate(&self.db).await
    }
}

/// Creates the SQLite file at `path` readable by its owner alone (or makes an existing
/// one so, with its WAL files): it holds every cluster's encrypted secrets and API
/// token hashes, and SQLite gives its -wal/-shm files the database file's mode.
pub fn make_private_sqlite(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r?,
        }
    }
    Ok(())
}

/// The file a `sqlite:` URL names (`sqlite://PATH?opts`), unless in memory.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

pub(crate) async fn connect(url: &str) -> Result<DatabaseConnection, StoreError> {
    if let Some(path) = sqlite_file(url) {
        make_private_sqlite(&path).map_err(|e| sea_orm::DbErr::Custom(format!("{}: {e}", path.display())))?;
    }
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

/// Applies every pending migration to the database at `url` (`herd migrate`: no key
/// needed, nothing decrypted).
pub async fn migrate_database(url: &str) -> Result<(), StoreError> {
    migrate(&connect(url).await?).await
}

async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    herd_migrations::Migrator::up(db, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(super::sqlite_file("sqlite:///s/herd.db?mode=rwc").unwrap().to_str(), Some("/s/herd.db"));
        assert_eq!(super::sqlite_file("sqlite://rel/herd.db").unwrap().to_str(), Some("rel/herd.db"));
        assert_eq!(super::sqlite_file("sqlite::memory:"), None);
        assert_eq!(super::sqlite_file("postgres://h/db"), None);
    }
}
