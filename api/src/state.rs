use herd_core::config::Settings;
use herd_core::queue::TaskQueue;
use herd_datastores::{Managers, Profile};
use herd_providers::{Flavor, Providers};
use herd_store::Store;
use std::sync::Arc;
use uuid::Uuid;

/// What every handler can reach. Built once at start-up.
pub struct AppState {
    pub store: Store,
    pub max_body_bytes: usize,
    pub providers: Arc<Providers>,
    /// Flavors per provider name, read from the providers at start-up (EC2 asks
    /// DescribeInstanceTypes; a request should not).
    pub flavors: Vec<(String, Vec<Flavor>)>,
    pub queue: Arc<dyn TaskQueue>,
    /// Where backup repositories are (the recovery window is read from them).
    pub backups: herd_core::config::BackupSettings,
    pub state_dir: std::path::PathBuf,
    /// New history events and task changes, for the live streams.
    pub feed: Arc<crate::feed::Feed>,
    /// The datastore managers this build runs, by name.
    pub managers: Arc<Managers>,
    /// Where webhooks may go.
    pub egress: herd_core::egress::EgressPolicy,
}

impl AppState {
    pub async fn new(
        settings: &Settings,
        store: Store,
        providers: Arc<Providers>,
        managers: Arc<Managers>,
        queue: Arc<dyn TaskQueue>,
    ) -> anyhow::Result<Self> {
        let mut flavors = Vec::new();
        for p in providers.iter() {
            let f = p.flavors().await.map_err(|e| anyhow::anyhow!("flavors of provider '{}': {e}", p.name()))?;
            flavors.push((p.name().to_owned(), f));
        }
        Ok(Self {
            feed: crate::feed::Feed::start(store.clone()),
            store,
            max_body_bytes: settings.max_body_bytes,
            providers,
            flavors,
            queue,
            backups: settings.backups.clone(),
            state_dir: settings.state_dir.clone(),
            managers,
            egress: herd_core::egress::EgressPolicy::new(&settings.hooks.allowed_hosts),
        })
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

    /// The profile of the manager named `manager`, if this build has it.
    pub fn profile_of(&self, manager: &str) -> Option<&dyn Profile> {
        self.managers.get(manager).map(|m| m.profile.as_ref())
    }

    pub fn flavors_of(&self, provider: &str) -> Option<&[Flavor]> {
        self.flavors.iter().find(|(p, _)| p == provider).map(|(_, f)| f.as_slice())
    }

    /// The provider used when a request names none: the first configured.
    pub fn default_provider(&self) -> Option<&str> {
        self.flavors.first().map(|(p, _)| p.as_str())
    }

    /// Tells the workers about a committed task. A failure is logged, not returned:
    /// the task row is committed and the sweeper delivers it later.
    pub async fn enqueue(&self, task_id: Uuid) {
        if let Err(e) = self.queue.enqueue(task_id).await {
            tracing::warn!(task = %task_id, error = %e, "enqueue failed; the sweeper will deliver the task");
        }
    }
}
