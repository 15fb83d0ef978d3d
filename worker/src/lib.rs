//! Workers: take task ids from the queue, claim the task row, run its steps.
//!
//! The tasks table is the source of truth; the queue only delivers wake-ups. A task is
//! claimed in the database (so a duplicate delivery is a no-op), heartbeats while it
//! runs (so a dead worker's task is taken over), and checkpoints after every step (so a
//! taken-over task resumes where it stopped, with the same idempotency tokens).

mod access;
mod create;
mod day2;
mod delete;
mod fault;
mod hooks;
mod poller;
pub mod queue;
mod renewal;
mod report;
mod runner;
pub mod scheduler;
mod snapshot;
mod spec;
mod steps;
mod sweeper;

use herd_core::config::WorkerSettings;
use herd_datastores::Managers;
use herd_providers::Providers;
use herd_store::Store;
use std::sync::Arc;

pub use queue::{Queue, TaskJob};
/// Runs one task from claim to finish: what the queue consumer does per delivery.
pub use runner::run_task;

/// Everything a worker process needs to run tasks.
pub struct Ctx {
    pub store: Store,
    pub providers: Arc<Providers>,
    pub settings: WorkerSettings,
    /// Unique per process: host, pid and a random suffix. Recorded on claimed tasks.
    pub name: String,
    pub queue: Queue,
    /// Where backup repositories are.
    pub backups: herd_core::config::BackupSettings,
    pub state_dir: std::path::PathBuf,
    /// The datastore managers this worker runs, by name.
    pub managers: Arc<Managers>,
    /// Where webhooks may go; checked again at every delivery.
    pub egress: herd_core::egress::EgressPolicy,
}

impl Ctx {
    pub fn new(
        store: Store,
        providers: Arc<Providers>,
        managers: Arc<Managers>,
        settings: WorkerSettings,
        queue: Queue,
    ) -> Self {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let name = format!("{}-{}-{:08x}", host.trim(), std::process::id(), rand::random::<u32>());
        Self {
            store,
            providers,
            settings,
            name,
            queue,
            backups: Default::default(),
            state_dir: std::path::PathBuf::from("."),
            managers,
            egress: Default::default(),
        }
    }

    /// Sets the hosts webhooks may reach although their addresses are internal.
    pub fn with_egress(mut self, hooks: &herd_core::config::HookSettings) -> Self {
        self.egress = herd_core::egress::EgressPolicy::new(&hooks.allowed_hosts);
        self
    }

    /// Sets where backup repositories are (`[backups]` and the state dir).
    pub fn with_backups(mut self, backups: herd_core::config::BackupSettings, state_dir: std::path::PathBuf) -> Self {
        self.backups = backups;
        self.state_dir = state_dir;
        self
    }

    /// A cluster's backup repository (the one it was created with), if configured.
    pub fn backup_config(&self, c: &herd_store::Cluster) -> Option<herd_datastores::BackupConfig> {
        let kind = self.providers.get(&c.provider)?.kind();
        herd_datastores::repo::for_cluster(
            &self.backups,
            &self.state_dir,
            c.backup_repo.as_deref(),
            kind,
            c.id,
            self.store.key(),
        )
    }

    /// Where a cluster's nodes report role changes, when the API's address is known.
    /// Each member gets a credential of its own (derived, never stored) to sign with.
    pub fn callback_for(
        &self,
        cluster_id: uuid::Uuid,
        members: &[herd_datastores::NodeSpec],
    ) -> Option<herd_datastores::Callback> {
        use herd_core::hooks::{CALLBACK_PURPOSE, callback_credential_id};
        let base = self.settings.callback_url.as_deref()?.trim_end_matches('/');
        let id = cluster_id.to_string();
        let credentials = members
            .iter()
            .map(|m| {
                (m.name.clone(), self.store.key().derive_token(CALLBACK_PURPOSE, &callback_credential_id(&id, &m.name)))
            })
            .collect();
        Some(herd_datastores::Callback { url: format!("{base}/callbacks/patroni/{cluster_id}"), credentials })
    }
}

/// Runs the queue consumer, the sweeper, the health poller, the backup scheduler, the
/// certificate renewals and the access-sync scan until the process ends.
pub async fn run(ctx: Arc<Ctx>) {
    let consumer = tokio::spawn(queue::consume(ctx.clone()));
    let sweeper = tokio::spawn(sweeper::run(ctx.clone()));
    let poller = tokio::spawn(poller::run(ctx.clone()));
    let scheduler = tokio::spawn(scheduler::run(ctx.clone()));
    let renewal = tokio::spawn(renewal::run(ctx.clone()));
    let access = tokio::spawn(access::run(ctx.clone()));
    let _ = tokio::join!(consumer, sweeper, poller, scheduler, renewal, access);
}

/// For a single-process setup (`herd dev`) starting up: any task still marked running
/// belonged to this process's previous life, so it is handed back at once instead of
/// after the heartbeat timeout.
pub async fn adopt_orphans(store: &Store) -> Result<u64, herd_store::StoreError> {
    store.orphan_running_tasks().await
}
