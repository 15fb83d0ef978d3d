use herd_core::config::{FlavorSettings, Settings};
use herd_store::Store;

/// What every handler can reach. Built once at start-up.
pub struct AppState {
    pub store: Store,
    pub max_body_bytes: usize,
    /// Configured providers by name, with their flavors.
    pub providers: Vec<ProviderEntry>,
}

pub struct ProviderEntry {
    pub name: String,
    pub flavors: Vec<FlavorSettings>,
}

impl AppState {
    pub fn new(settings: &Settings, store: Store) -> Self {
        let mut providers = Vec::new();
        if settings.providers.local.enabled {
            providers.push(ProviderEntry { name: "local".into(), flavors: settings.providers.local.flavors.clone() });
        }
        Self { store, max_body_bytes: settings.max_body_bytes, providers }
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderEntry> {
        self.providers.iter().find(|p| p.name == name)
    }

    pub fn default_provider(&self) -> Option<&ProviderEntry> {
        self.providers.first()
    }
}
