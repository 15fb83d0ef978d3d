//! The `ec2` provider: servers are EC2 instances, volumes are EBS volumes.
//!
//! Idempotency: every resource Herd creates is tagged `herd:token=<token>` and looked
//! up by that tag before creating; RunInstances and CreateVolume also carry the token
//! as ClientToken, which closes the window between lookup and create on real AWS.
//! Credentials come from the standard AWS chain (environment, profile, SSO, instance
//! role), resolved at the first call.

mod errors;
mod volumes;
mod wait;

use crate::{
    Capabilities, Ec2ProviderSettings, Flavor, Provider, ProviderError, ProviderKind, ServerInfo, ServerSpec,
    ServerStatus, SnapshotInfo, SnapshotSpec, TAG_TOKEN, VolumeAttachment, VolumeInfo, VolumeSpec, check_token,
};
use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, Instance, InstanceStateName, InstanceType, Placement, ResourceType, Tag, TagSpecification,
};
use errors::map_sdk_error;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Debug)]
pub struct Ec2Provider {
    name: String,
    settings: Ec2ProviderSettings,
    client: OnceCell<Client>,
    flavors: OnceCell<Vec<Flavor>>,
}

impl Ec2Provider {
    /// Validates the settings; the client (and credentials) are built at first use.
    pub fn new(name: &str, settings: &Ec2ProviderSettings) -> Result<Self, ProviderError> {
        validate(settings)?;
        Ok(Self {
            name: name.to_owned(),
            settings: settings.clone(),
            client: OnceCell::new(),
            flavors: OnceCell::new(),
        })
    }

    /// With a client configured by the caller (tests with static credentials,
    /// special HTTP settings). `endpoint_url` and `region` settings are then unused.
    pub fn with_client(name: &str, settings: &Ec2ProviderSettings, client: Client) -> Result<Self, ProviderError> {
        validate(settings)?;
        Ok(Self {
            name: name.to_owned(),
            settings: settings.clone(),
            client: OnceCell::new_with(Some(client)),
            flavors: OnceCell::new(),
        })
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.settings.region.clone()));
                if let Some(url) = &self.settings.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                Client::new(&loader.load().await)
            })
            .await
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.settings.wait_timeout_secs)
    }

    /// The instance, or None when EC2 does not know it (yet, or any more).
    async fn describe_instance(&self, id: &str) -> Result<Option<Instance>, ProviderError> {
        let result = self.client().await.describe_instances().instance_ids(id).send().await;
        match result {
            Ok(out) => {
                Ok(out.reservations().iter().flat_map(|r| r.instances()).find(|i| i.instance_id() == Some(id)).cloned())
            }
            Err(e) => match map_sdk_error("DescribeInstances", e) {
                ProviderError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn require_instance(&self, id: &str) -> Result<Instance, ProviderError> {
        self.describe_instance(id).await?.ok_or_else(|| ProviderError::NotFound(format!("instance {id}")))
    }

    async fn find_instance_by_token(&self, token: &str) -> Result<Option<Instance>, ProviderError> {
        let out = self
            .client()
            .await
            .describe_instances()
            .filters(token_filter(token))
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribeInstances", e))?;
        let mut found: Vec<Instance> = out.reservations().iter().flat_map(|r| r.instances()).cloned().collect();
        // Prefer a live instance if an old one with this token was terminated.
        found.sort_by_key(|i| state_of(i) == Some(InstanceStateName::Terminated));
        Ok(found.into_iter().next())
    }

    /// Waits until the instance is in one of `wanted`; a terminated instance is an
    /// error unless wanted. Tolerates NotFound right after create (eventual consistency).
    async fn wait_instance(&self, id: &str, wanted: &[InstanceStateName]) -> Result<Instance, ProviderError> {
        let what = format!("instance {id} to be {}", names(wanted));
        wait::until(&what, self.timeout(), || async {
            let Some(instance) = self.describe_instance(id).await? else {
                return Ok(None);
            };
            let state = state_of(&instance);
            if state.as_ref().is_some_and(|s| wanted.contains(s)) {
                return Ok(Some(instance));
            }
            if state == Some(InstanceStateName::Terminated) {
                let reason = instance.state_reason().and_then(|r| r.message()).unwrap_or("no reason given");
                return Err(ProviderError::Conflict(format!("instance {id} is terminated ({reason})")));
            }
            Ok(None)
        })
        .await
    }

    /// Imports the public key once; the name derives from its fingerprint so the
    /// same key always maps to the same key pair.
    async fn ensure_key_pair(&self, public_key: &str) -> Result<String, ProviderError> {
        let key = ssh_key::PublicKey::from_openssh(public_key.trim())
            .map_err(|e| ProviderError::Permanent(format!("invalid authorized_key: {e}")))?;
        let fp = key.fingerprint(ssh_key::HashAlg::Sha256);
        let name = format!("herd-{}", &hex::encode(fp.as_bytes())[..32]);
        let client = self.client().await;
        match client.describe_key_pairs().key_names(&name).send().await {
            Ok(out) if !out.key_pairs().is_empty() => return Ok(name),
            Ok(_) => {}
            Err(e) => match map_sdk_error("DescribeKeyPairs", e) {
                ProviderError::NotFound(_) => {}
                other => return Err(other),
            },
        }
        // Without the comment: it may hold a user or host name.
        let material = key.to_openssh().map_err(|e| ProviderError::Permanent(format!("encode key: {e}")))?;
        let material = material.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let result = client
            .import_key_pair()
            .key_name(&name)
            .public_key_material(aws_sdk_ec2::primitives::Blob::new(material.into_bytes()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(name),
            // Imported concurrently by another step: same key, same name.
            Err(e) if aws_sdk_ec2::error::ProvideErrorMetadata::code(&e) == Some("InvalidKeyPair.Duplicate") => {
                Ok(name)
            }
            Err(e) => Err(map_sdk_error("ImportKeyPair", e)),
        }
    }

    fn server_info(&self, i: &Instance) -> ServerInfo {
        let address = if self.settings.use_public_ip { i.public_ip_address() } else { i.private_ip_address() }
            .and_then(|a| a.parse::<IpAddr>().ok());
        let (name, tags) = split_tags(i.tags());
        ServerInfo {
            id: i.instance_id().unwrap_or_default().to_owned(),
            name,
            status: server_status(state_of(i)),
            address,
            login_user: self.settings.login_user.clone(),
            ssh_port: 22,
            host_key: None,
            root_prefix: PathBuf::from("/"),
            service_user: None,
            flavor: i.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
            tags,
        }
    }

    async fn run_instance(
        &self,
        spec: &ServerSpec,
        token: &str,
        image: &str,
        key_name: &str,
    ) -> Result<String, ProviderError> {
        let mut req = self
            .client()
            .await
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(spec.flavor.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(client_token(token))
            .key_name(key_name)
            .tag_specifications(tag_spec(ResourceType::Instance, &spec.name, token, &spec.tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &spec.name, token, &spec.tags));
        if let Some(subnet) = &self.settings.subnet_id {
            req = req.subnet_id(subnet);
        }
        for sg in &self.settings.security_group_ids {
            req = req.security_group_ids(sg);
        }
        if let Some(az) = &self.settings.availability_zone {
            req = req.placement(Placement::builder().availability_zone(az).build());
        }
        let out = req.send().await.map_err(|e| map_sdk_error("RunInstances", e))?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_owned)
            .ok_or_else(|| ProviderError::Transient("RunInstances returned no instance".into()))
    }
}

fn validate(settings: &Ec2ProviderSettings) -> Result<(), ProviderError> {
    if settings.region.trim().is_empty() {
        return Err(ProviderError::Permanent("providers.ec2.region must be set".into()));
    }
    if settings.instance_types.is_empty() {
        return Err(ProviderError::Permanent("providers.ec2.instance_types must list at least one type".into()));
    }
    if settings.wait_timeout_secs == 0 {
        return Err(ProviderError::Permanent("providers.ec2.wait_timeout_secs must be positive".into()));
    }
    Ok(())
}

pub(crate) fn state_of(i: &Instance) -> Option<InstanceStateName> {
    i.state().and_then(|s| s.name()).cloned()
}

fn server_status(state: Option<InstanceStateName>) -> ServerStatus {
    match state {
        Some(InstanceStateName::Running) => ServerStatus::Running,
        Some(InstanceStateName::Pending) => ServerStatus::Building,
        Some(InstanceStateName::Stopping | InstanceStateName::Stopped) => ServerStatus::Stopped,
        Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated) => ServerStatus::Deleted,
        _ => ServerStatus::Error,
    }
}

fn names(states: &[InstanceStateName]) -> String {
    states.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ")
}

/// EC2 client tokens are at most 64 ASCII characters; longer or unusual tokens are
/// hashed, which keeps them deterministic.
pub(crate) fn client_token(token: &str) -> String {
    if !token.is_empty() && token.len() <= 64 && token.bytes().all(|b| b.is_ascii_graphic()) {
        token.to_owned()
    } else {
        hex::encode(Sha256::digest(token.as_bytes()))
    }
}

pub(crate) fn token_filter(token: &str) -> Filter {
    Filter::builder().name(format!("tag:{TAG_TOKEN}")).values(client_token(token)).build()
}

pub(crate) fn tag_spec(
    kind: ResourceType,
    name: &str,
    token: &str,
    tags: &BTreeMap<String, String>,
) -> TagSpecification {
    let mut spec = TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key(TAG_TOKEN).value(client_token(token)).build());
    for (k, v) in tags {
        if k != "Name" && k != TAG_TOKEN {
            spec = spec.tags(Tag::builder().key(k).value(v).build());
        }
    }
    spec.build()
}

/// The `Name` tag, and the other tags without Herd's bookkeeping token.
pub(crate) fn split_tags(tags: &[Tag]) -> (String, BTreeMap<String, String>) {
    let mut name = String::new();
    let mut out = BTreeMap::new();
    for t in tags {
        match (t.key(), t.value()) {
            (Some("Name"), Some(v)) => name = v.to_owned(),
            (Some(TAG_TOKEN), _) => {}
            (Some(k), Some(v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            _ => {}
        }
    }
    (name, out)
}

#[async_trait]
impl Provider for Ec2Provider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Ec2
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { volumes: true, snapshots: true, power_control: true }
    }

    fn describe(&self) -> serde_json::Value {
        let s = &self.settings;
        // Settings hold no credentials; say where they come from instead.
        serde_json::json!({
            "kind": "ec2",
            "region": s.region,
            "endpoint_url": s.endpoint_url,
            "availability_zone": s.availability_zone,
            "subnet_id": s.subnet_id,
            "security_group_ids": s.security_group_ids,
            "instance_types": s.instance_types,
            "login_user": s.login_user,
            "volume_type": s.volume_type,
            "wait_timeout_secs": s.wait_timeout_secs,
            "use_public_ip": s.use_public_ip,
            "credentials": "standard AWS chain",
        })
    }

    async fn flavors(&self) -> Result<Vec<Flavor>, ProviderError> {
        // Cached once it succeeds: instance type sizes do not change.
        self.flavors
            .get_or_try_init(|| async {
                let mut req = self.client().await.describe_instance_types();
                for t in &self.settings.instance_types {
                    req = req.instance_types(InstanceType::from(t.as_str()));
                }
                let out = req.send().await.map_err(|e| map_sdk_error("DescribeInstanceTypes", e))?;
                let mut flavors = Vec::new();
                for wanted in &self.settings.instance_types {
                    let info = out
                        .instance_types()
                        .iter()
                        .find(|i| i.instance_type().map(|t| t.as_str()) == Some(wanted.as_str()))
                        .ok_or_else(|| {
                            ProviderError::Permanent(format!(
                                "instance type {wanted} is not offered in {}",
                                self.settings.region
                            ))
                        })?;
                    let vcpus = info.v_cpu_info().and_then(|v| v.default_v_cpus()).unwrap_or(0);
                    let ram = info.memory_info().and_then(|m| m.size_in_mib()).unwrap_or(0);
                    flavors.push(Flavor {
                        id: wanted.clone(),
                        vcpus: u32::try_from(vcpus).unwrap_or(0),
                        ram_mb: u32::try_from(ram).unwrap_or(0),
                    });
                }
                Ok(flavors)
            })
            .await
            .cloned()
    }

    async fn create_server(&self, spec: &ServerSpec, token: &str) -> Result<ServerInfo, ProviderError> {
        check_token(token)?;
        if !self.settings.instance_types.contains(&spec.flavor) {
            return Err(ProviderError::Permanent(format!(
                "unknown flavor {:?} for provider {}",
                spec.flavor, self.name
            )));
        }
        let image = spec.image.as_deref().ok_or_else(|| {
            ProviderError::Permanent("EC2 servers need an image (the datastore version's AMI)".into())
        })?;
        let id = match self.find_instance_by_token(token).await? {
            Some(existing) => existing.instance_id().unwrap_or_default().to_owned(),
            None => {
                let key_name = self.ensure_key_pair(&spec.authorized_key).await?;
                let id = self.run_instance(spec, token, image, &key_name).await?;
                tracing::info!(instance = %id, "EC2 instance launched");
                id
            }
        };
        let instance = self
            .wait_instance(&id, &[InstanceStateName::Running, InstanceStateName::Stopping, InstanceStateName::Stopped])
            .await?;
        Ok(self.server_info(&instance))
    }

    async fn list_servers(&self, tags: &BTreeMap<String, String>) -> Result<Vec<ServerInfo>, ProviderError> {
        let mut filters = vec![
            // Only what Herd made, and not what is already gone.
            Filter::builder().name("tag-key").values(TAG_TOKEN).build(),
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(["pending", "running", "stopping", "stopped"].map(String::from).to_vec()))
                .build(),
        ];
        for (k, v) in tags {
            filters.push(Filter::builder().name(format!("tag:{k}")).values(v).build());
        }
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client()
                .await
                .describe_instances()
                .set_filters(Some(filters.clone()))
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| map_sdk_error("DescribeInstances", e))?;
            out.extend(page.reservations().iter().flat_map(|r| r.instances()).map(|i| self.server_info(i)));
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    async fn get_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        Ok(self.server_info(&self.require_instance(id).await?))
    }

    async fn start_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        // Let a transition in progress finish before deciding what to do.
        let instance = self.wait_instance(id, &[InstanceStateName::Running, InstanceStateName::Stopped]).await?;
        if state_of(&instance) == Some(InstanceStateName::Stopped) {
            self.client()
                .await
                .start_instances()
                .instance_ids(id)
                .send()
                .await
                .map_err(|e| map_sdk_error("StartInstances", e))?;
        }
        let instance = self.wait_instance(id, &[InstanceStateName::Running]).await?;
        Ok(self.server_info(&instance))
    }

    async fn stop_server(&self, id: &str, force: bool) -> Result<ServerInfo, ProviderError> {
        let current = self.require_instance(id).await?;
        let instance = match state_of(&current) {
            // Stopping: ask again (with force, that is how a stuck stop is ended).
            Some(InstanceStateName::Running | InstanceStateName::Stopping) => current,
            _ => self.wait_instance(id, &[InstanceStateName::Running, InstanceStateName::Stopped]).await?,
        };
        if state_of(&instance) != Some(InstanceStateName::Stopped) {
            self.client()
                .await
                .stop_instances()
                .instance_ids(id)
                .force(force)
                .send()
                .await
                .map_err(|e| map_sdk_error("StopInstances", e))?;
        }
        let instance = self.wait_instance(id, &[InstanceStateName::Stopped]).await?;
        Ok(self.server_info(&instance))
    }

    async fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        let result = self.client().await.terminate_instances().instance_ids(id).send().await;
        match result.map_err(|e| map_sdk_error("TerminateInstances", e)) {
            Ok(_) => {}
            Err(ProviderError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        wait::until(&format!("instance {id} to terminate"), self.timeout(), || async {
            Ok(match self.describe_instance(id).await? {
                None => Some(()),
                Some(i) if state_of(&i) == Some(InstanceStateName::Terminated) => Some(()),
                Some(_) => None,
            })
        })
        .await?;
        tracing::info!(instance = %id, "EC2 instance terminated");
        Ok(())
    }

    async fn create_volume(&self, spec: &VolumeSpec, token: &str) -> Result<VolumeInfo, ProviderError> {
        self.create_volume_impl(spec, token, None).await
    }

    async fn get_volume(&self, id: &str) -> Result<VolumeInfo, ProviderError> {
        let v = self.require_volume(id).await?;
        Ok(volumes::volume_info(&v))
    }

    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<VolumeAttachment, ProviderError> {
        self.attach_volume_impl(volume_id, server_id).await
    }

    async fn detach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        self.detach_volume_impl(volume_id, server_id).await
    }

    async fn delete_volume(&self, id: &str) -> Result<(), ProviderError> {
        self.delete_volume_impl(id).await
    }

    async fn snapshot_volume(
        &self,
        volume_id: &str,
        spec: &SnapshotSpec,
        token: &str,
    ) -> Result<SnapshotInfo, ProviderError> {
        self.snapshot_volume_impl(volume_id, spec, token).await
    }

    async fn get_snapshot(&self, id: &str) -> Result<SnapshotInfo, ProviderError> {
        let s = self.require_snapshot(id).await?;
        Ok(volumes::snapshot_info(&s))
    }

    async fn create_volume_from_snapshot(
        &self,
        snapshot_id: &str,
        spec: &VolumeSpec,
        token: &str,
    ) -> Result<VolumeInfo, ProviderError> {
        self.create_volume_impl(spec, token, Some(snapshot_id)).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), ProviderError> {
        self.delete_snapshot_impl(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_fit_ec2_limits() {
        assert_eq!(client_token("step-123"), "step-123");
        let long = "x".repeat(100);
        assert_eq!(client_token(&long).len(), 64);
        assert_eq!(client_token(&long), client_token(&long));
        assert_ne!(client_token("a b"), "a b");
    }

    #[test]
    fn statuses() {
        assert_eq!(server_status(Some(InstanceStateName::Pending)), ServerStatus::Building);
        assert_eq!(server_status(Some(InstanceStateName::Stopping)), ServerStatus::Stopped);
        assert_eq!(server_status(Some(InstanceStateName::Terminated)), ServerStatus::Deleted);
        assert_eq!(server_status(None), ServerStatus::Error);
    }
}
