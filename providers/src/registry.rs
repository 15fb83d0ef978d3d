//! Providers by name, built from `[providers.*]` settings.

use crate::ec2::Ec2Provider;
use crate::local::LocalProvider;
use crate::{Provider, ProviderError, ProviderInfo, ProvidersSettings};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The configured providers, by name.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Arc<dyn Provider>>,
}

impl Providers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; names are unique.
    pub fn insert(&mut self, provider: Arc<dyn Provider>) -> Result<(), ProviderError> {
        let name = provider.name().to_owned();
        if self.by_name.contains_key(&name) {
            return Err(ProviderError::Permanent(format!("provider {name:?} configured twice")));
        }
        self.by_name.insert(name, provider);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Provider>> {
        self.by_name.get(name).cloned()
    }

    /// Like [`Providers::get`], with a `NotFound` error naming what exists.
    pub fn require(&self, name: &str) -> Result<Arc<dyn Provider>, ProviderError> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            ProviderError::NotFound(format!(
                "provider {name:?} (configured: {})",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ))
        })
    }

    pub fn list(&self) -> Vec<ProviderInfo> {
        self.by_name.values().map(|p| p.info()).collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Provider>> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The admin-safe configuration of every provider, by name.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::Value::Object(self.by_name.iter().map(|(name, p)| (name.clone(), p.describe())).collect())
    }

    /// Runs [`Provider::recover`] on every provider; returns the restarted server
    /// ids by provider. Call once at worker start.
    pub async fn recover_all(&self) -> Result<BTreeMap<String, Vec<String>>, ProviderError> {
        let mut out = BTreeMap::new();
        for (name, p) in &self.by_name {
            out.insert(name.clone(), p.recover().await?);
        }
        Ok(out)
    }
}

/// Where the local provider keeps its servers, volumes and records: `root`, by
/// default `<state_dir>/local`.
pub fn local_root(settings: &crate::LocalProviderSettings, state_dir: &Path) -> std::path::PathBuf {
    settings.root.clone().unwrap_or_else(|| state_dir.join("local"))
}

/// Builds the providers the settings enable: `local` unless `enabled = false` (its
/// root defaults to `<state_dir>/local`), `ec2` when `[providers.ec2]` exists. Does no
/// network I/O: EC2 credentials are resolved at the first call.
pub fn build_providers(settings: &ProvidersSettings, state_dir: &Path) -> Result<Providers, ProviderError> {
    let mut providers = Providers::new();
    if settings.local.enabled {
        let root = local_root(&settings.local, state_dir);
        providers.insert(Arc::new(LocalProvider::new("local", &settings.local, &root)?))?;
    }
    if let Some(ec2) = &settings.ec2 {
        providers.insert(Arc::new(Ec2Provider::new("ec2", ec2)?))?;
    }
    Ok(providers)
}
