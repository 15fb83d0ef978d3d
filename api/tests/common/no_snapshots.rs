//! A real local provider with its snapshot support switched off: the only way to put
//! a cluster on a provider that cannot snapshot, to check the API's refusal.

use async_trait::async_trait;
use herd_providers::local::LocalProvider;
use herd_providers::*;
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct NoSnapshots(pub LocalProvider);

#[async_trait]
impl Provider for NoSnapshots {
    fn name(&self) -> &str {
        "nosnap"
    }
    fn kind(&self) -> ProviderKind {
        self.0.kind()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { snapshots: false, ..self.0.capabilities() }
    }
    fn describe(&self) -> serde_json::Value {
        self.0.describe()
    }
    async fn flavors(&self) -> Result<Vec<Flavor>, ProviderError> {
        self.0.flavors().await
    }
    async fn create_server(&self, spec: &ServerSpec, token: &str) -> Result<ServerInfo, ProviderError> {
        self.0.create_server(spec, token).await
    }
    async fn get_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        self.0.get_server(id).await
    }
    async fn list_servers(&self, tags: &BTreeMap<String, String>) -> Result<Vec<ServerInfo>, ProviderError> {
        self.0.list_servers(tags).await
    }
    async fn start_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        self.0.start_server(id).await
    }
    async fn stop_server(&self, id: &str, force: bool) -> Result<ServerInfo, ProviderError> {
        self.0.stop_server(id, force).await
    }
    async fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        self.0.delete_server(id).await
    }
    async fn create_volume(&self, spec: &VolumeSpec, token: &str) -> Result<VolumeInfo, ProviderError> {
        self.0.create_volume(spec, token).await
    }
    async fn get_volume(&self, id: &str) -> Result<VolumeInfo, ProviderError> {
        self.0.get_volume(id).await
    }
    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<VolumeAttachment, ProviderError> {
        self.0.attach_volume(volume_id, server_id).await
    }
    async fn detach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        self.0.detach_volume(volume_id, server_id).await
    }
    async fn delete_volume(&self, id: &str) -> Result<(), ProviderError> {
        self.0.delete_volume(id).await
    }
    async fn snapshot_volume(&self, _: &str, _: &SnapshotSpec, _: &str) -> Result<SnapshotInfo, ProviderError> {
        Err(ProviderError::Unsupported("snapshots are switched off".into()))
    }
    async fn get_snapshot(&self, id: &str) -> Result<SnapshotInfo, ProviderError> {
        Err(ProviderError::NotFound(id.to_owned()))
    }
    async fn create_volume_from_snapshot(&self, _: &str, _: &VolumeSpec, _: &str) -> Result<VolumeInfo, ProviderError> {
        Err(ProviderError::Unsupported("snapshots are switched off".into()))
    }
    async fn delete_snapshot(&self, id: &str) -> Result<(), ProviderError> {
        Err(ProviderError::NotFound(id.to_owned()))
    }
}
