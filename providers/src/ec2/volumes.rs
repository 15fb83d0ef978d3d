//! EBS volumes and snapshots.

use super::errors::map_sdk_error;
use super::{Ec2Provider, client_token, split_tags, tag_spec, token_filter, wait};
use crate::check_token;
use crate::{
    AttachmentKind, ProviderError, SnapshotInfo, SnapshotSpec, SnapshotStatus, VolumeAttachment, VolumeInfo,
    VolumeSpec, VolumeStatus,
};
use aws_sdk_ec2::types::{
    ResourceType, Snapshot, SnapshotState, Volume, VolumeAttachmentState, VolumeState, VolumeType,
};

/// Device names offered to attached volumes; /dev/sda1 and /dev/xvda are root devices.
const DEVICE_LETTERS: &str = "fghijklmnop";

pub(super) fn volume_info(v: &Volume) -> VolumeInfo {
    let attachment = v
        .attachments()
        .iter()
        .find(|a| matches!(a.state(), Some(VolumeAttachmentState::Attached | VolumeAttachmentState::Attaching)));
    let (name, _) = split_tags(v.tags());
    VolumeInfo {
        id: v.volume_id().unwrap_or_default().to_owned(),
        name,
        size_gb: v.size().and_then(|s| u32::try_from(s).ok()).unwrap_or(0),
        status: match v.state() {
            Some(VolumeState::Creating) => VolumeStatus::Creating,
            Some(VolumeState::Available) => VolumeStatus::Available,
            Some(VolumeState::InUse) => VolumeStatus::InUse,
            Some(VolumeState::Deleting | VolumeState::Deleted) => VolumeStatus::Deleting,
            _ => VolumeStatus::Error,
        },
        attached_to: attachment.and_then(|a| a.instance_id()).map(str::to_owned),
        availability_zone: v.availability_zone().map(str::to_owned),
        snapshot_id: v.snapshot_id().filter(|s| !s.is_empty()).map(str::to_owned),
    }
}

pub(super) fn snapshot_info(s: &Snapshot) -> SnapshotInfo {
    let (name, _) = split_tags(s.tags());
    SnapshotInfo {
        id: s.snapshot_id().unwrap_or_default().to_owned(),
        name,
        volume_id: s.volume_id().unwrap_or_default().to_owned(),
        size_gb: s.volume_size().and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        status: match s.state() {
            Some(SnapshotState::Completed) => SnapshotStatus::Completed,
            Some(SnapshotState::Pending) => SnapshotStatus::Pending,
            _ => SnapshotStatus::Error,
        },
        created_at: s.start_time().and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    }
}

impl Ec2Provider {
    async fn describe_volume(&self, id: &str) -> Result<Option<Volume>, ProviderError> {
        let result = self.client().await.describe_volumes().volume_ids(id).send().await;
        match result {
            Ok(out) => Ok(out.volumes().iter().find(|v| v.volume_id() == Some(id)).cloned()),
            Err(e) => match map_sdk_error("DescribeVolumes", e) {
                ProviderError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    pub(super) async fn require_volume(&self, id: &str) -> Result<Volume, ProviderError> {
        self.describe_volume(id).await?.ok_or_else(|| ProviderError::NotFound(format!("volume {id}")))
    }

    async fn describe_snapshot(&self, id: &str) -> Result<Option<Snapshot>, ProviderError> {
        let result = self.client().await.describe_snapshots().snapshot_ids(id).send().await;
        match result {
            Ok(out) => Ok(out.snapshots().iter().find(|s| s.snapshot_id() == Some(id)).cloned()),
            Err(e) => match map_sdk_error("DescribeSnapshots", e) {
                ProviderError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    pub(super) async fn require_snapshot(&self, id: &str) -> Result<Snapshot, ProviderError> {
        self.describe_snapshot(id).await?.ok_or_else(|| ProviderError::NotFound(format!("snapshot {id}")))
    }

    /// Waits until `check` accepts the volume; one in `error` state is a failure.
    async fn wait_volume(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&Volume) -> bool,
    ) -> Result<Volume, ProviderError> {
        wait::until(&format!("volume {id} {what}"), self.timeout(), || async {
            match self.describe_volume(id).await? {
                // Right after CreateVolume the id may not be visible yet.
                None => Ok(None),
                Some(v) if v.state() == Some(&VolumeState::Error) => {
                    Err(ProviderError::Permanent(format!("volume {id} is in error state")))
                }
                Some(v) => Ok(check(&v).then_some(v)),
            }
        })
        .await
    }

    async fn availability_zone_for(&self, spec: &VolumeSpec) -> Result<String, ProviderError> {
        if let Some(server) = &spec.server_id {
            let instance = self.require_instance(server).await?;
            if let Some(az) = instance.placement().and_then(|p| p.availability_zone()) {
                return Ok(az.to_owned());
            }
        }
        self.settings.availability_zone.clone().ok_or_else(|| {
            ProviderError::Permanent(
                "cannot choose an availability zone: give the volume a server_id or set \
                 providers.ec2.availability_zone"
                    .into(),
            )
        })
    }

    pub(super) async fn create_volume_impl(
        &self,
        spec: &VolumeSpec,
        token: &str,
        snapshot_id: Option<&str>,
    ) -> Result<VolumeInfo, ProviderError> {
        check_token(token)?;
        let client = self.client().await;
        let existing = client
            .describe_volumes()
            .filters(token_filter(token))
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribeVolumes", e))?
            .volumes()
            .iter()
            .find(|v| !matches!(v.state(), Some(VolumeState::Deleting | VolumeState::Deleted)))
            .and_then(|v| v.volume_id().map(str::to_owned));
        let id = match existing {
            Some(id) => id,
            None => {
                let az = self.availability_zone_for(spec).await?;
                let mut size = spec.size_gb;
                if let Some(snap) = snapshot_id {
                    let s = self.require_snapshot(snap).await?;
                    size = size.max(s.volume_size().and_then(|v| u32::try_from(v).ok()).unwrap_or(0));
                }
                if size == 0 {
                    return Err(ProviderError::Permanent("volume size must be at least 1 GB".into()));
                }
                let size = i32::try_from(size)
                    .map_err(|_| ProviderError::Permanent(format!("volume size {size} GB is too large")))?;
                let mut req = client
                    .create_volume()
                    .availability_zone(az)
                    .size(size)
                    .volume_type(VolumeType::from(self.settings.volume_type.as_str()))
                    .client_token(client_token(token))
                    .tag_specifications(tag_spec(ResourceType::Volume, &spec.name, token, &spec.tags));
                if let Some(snap) = snapshot_id {
                    req = req.snapshot_id(snap);
                }
                let out = req.send().await.map_err(|e| map_sdk_error("CreateVolume", e))?;
                let id = out
                    .volume_id()
                    .ok_or_else(|| ProviderError::Transient("CreateVolume returned no id".into()))?
                    .to_owned();
                tracing::info!(volume = %id, "EBS volume created");
                id
            }
        };
        let v = self
            .wait_volume(&id, "to be available", |v| {
                matches!(v.state(), Some(VolumeState::Available | VolumeState::InUse))
            })
            .await?;
        Ok(volume_info(&v))
    }

    pub(super) async fn attach_volume_impl(
        &self,
        volume_id: &str,
        server_id: &str,
    ) -> Result<VolumeAttachment, ProviderError> {
        let volume = self.require_volume(volume_id).await?;
        let current = volume
            .attachments()
            .iter()
            .find(|a| !matches!(a.state(), Some(VolumeAttachmentState::Detached | VolumeAttachmentState::Detaching)));
        let device = match current {
            Some(a) if a.instance_id() == Some(server_id) => a.device().unwrap_or_default().to_owned(),
            Some(a) => {
                return Err(ProviderError::Conflict(format!(
                    "volume {volume_id} is attached to {}",
                    a.instance_id().unwrap_or("another instance")
                )));
            }
            None => {
                let instance = self.require_instance(server_id).await?;
                let used: Vec<&str> = instance.block_device_mappings().iter().filter_map(|m| m.device_name()).collect();
                let device = DEVICE_LETTERS
                    .chars()
                    .map(|c| format!("/dev/sd{c}"))
                    .find(|d| {
                        let xvd = d.replace("/dev/sd", "/dev/xvd");
                        !used.contains(&d.as_str()) && !used.contains(&xvd.as_str())
                    })
                    .ok_or_else(|| ProviderError::Capacity(format!("no free device name on {server_id}")))?;
                self.client()
                    .await
                    .attach_volume()
                    .volume_id(volume_id)
                    .instance_id(server_id)
                    .device(&device)
                    .send()
                    .await
                    .map_err(|e| map_sdk_error("AttachVolume", e))?;
                device
            }
        };
        self.wait_volume(volume_id, "to be attached", |v| {
            v.attachments()
                .iter()
                .any(|a| a.instance_id() == Some(server_id) && a.state() == Some(&VolumeAttachmentState::Attached))
        })
        .await?;
        tracing::info!(volume = %volume_id, instance = %server_id, %device, "EBS volume attached");
        Ok(VolumeAttachment {
            volume_id: volume_id.to_owned(),
            server_id: server_id.to_owned(),
            kind: AttachmentKind::Device,
            path: device,
        })
    }

    pub(super) async fn detach_volume_impl(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        let Some(volume) = self.describe_volume(volume_id).await? else {
            return Ok(());
        };
        let attached =
            volume.attachments().iter().find(|a| !matches!(a.state(), Some(VolumeAttachmentState::Detached)));
        match attached {
            None => return Ok(()),
            Some(a) if a.instance_id() != Some(server_id) => {
                return Err(ProviderError::Conflict(format!(
                    "volume {volume_id} is attached to {}, not {server_id}",
                    a.instance_id().unwrap_or("another instance")
                )));
            }
            Some(a) if a.state() == Some(&VolumeAttachmentState::Detaching) => {}
            Some(_) => {
                let result =
                    self.client().await.detach_volume().volume_id(volume_id).instance_id(server_id).send().await;
                match result.map_err(|e| map_sdk_error("DetachVolume", e)) {
                    Ok(_) | Err(ProviderError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.wait_volume(volume_id, "to be detached", |v| v.state() == Some(&VolumeState::Available)).await?;
        tracing::info!(volume = %volume_id, instance = %server_id, "EBS volume detached");
        Ok(())
    }

    pub(super) async fn delete_volume_impl(&self, id: &str) -> Result<(), ProviderError> {
        let result = self.client().await.delete_volume().volume_id(id).send().await;
        match result.map_err(|e| map_sdk_error("DeleteVolume", e)) {
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn snapshot_volume_impl(
        &self,
        volume_id: &str,
        spec: &SnapshotSpec,
        token: &str,
    ) -> Result<SnapshotInfo, ProviderError> {
        check_token(token)?;
        let client = self.client().await;
        // CreateSnapshot has no client token: the herd:token tag is the only key.
        let existing = client
            .describe_snapshots()
            .owner_ids("self")
            .filters(token_filter(token))
            .send()
            .await
            .map_err(|e| map_sdk_error("DescribeSnapshots", e))?
            .snapshots()
            .iter()
            .find_map(|s| s.snapshot_id().map(str::to_owned));
        let id = match existing {
            Some(id) => id,
            None => {
                let out = client
                    .create_snapshot()
                    .volume_id(volume_id)
                    .description(&spec.name)
                    .tag_specifications(tag_spec(ResourceType::Snapshot, &spec.name, token, &spec.tags))
                    .send()
                    .await
                    .map_err(|e| map_sdk_error("CreateSnapshot", e))?;
                let id = out
                    .snapshot_id()
                    .ok_or_else(|| ProviderError::Transient("CreateSnapshot returned no id".into()))?
                    .to_owned();
                tracing::info!(snapshot = %id, volume = %volume_id, "EBS snapshot started");
                id
            }
        };
        let snapshot = wait::until(&format!("snapshot {id} to complete"), self.timeout(), || async {
            match self.describe_snapshot(&id).await? {
                None => Ok(None),
                Some(s) => match s.state() {
                    Some(SnapshotState::Completed) => Ok(Some(s)),
                    Some(SnapshotState::Error) => Err(ProviderError::Permanent(format!(
                        "snapshot {id} failed: {}",
                        s.state_message().unwrap_or("no message")
                    ))),
                    _ => Ok(None),
                },
            }
        })
        .await?;
        Ok(snapshot_info(&snapshot))
    }

    pub(super) async fn delete_snapshot_impl(&self, id: &str) -> Result<(), ProviderError> {
        let result = self.client().await.delete_snapshot().snapshot_id(id).send().await;
        match result.map_err(|e| map_sdk_error("DeleteSnapshot", e)) {
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
