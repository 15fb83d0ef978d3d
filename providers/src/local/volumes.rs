//! Local volumes (directories with a recorded size) and snapshots (copies).
//!
//! An attached volume appears as a symlink `<server_root>/mnt/<volume_id>` to
//! `<root>/volumes/<volume_id>`: symlinks need no privilege (bind mounts would need
//! CAP_SYS_ADMIN and die with a restart of the mount namespace).

use super::Inner;
use super::state::{self, Kind, ServerRecord, SnapshotRecord, VolumeRecord, io_error};
use crate::check_token;
use crate::{
    AttachmentKind, ProviderError, SnapshotInfo, SnapshotSpec, SnapshotStatus, VolumeAttachment, VolumeInfo,
    VolumeSpec, VolumeStatus,
};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

fn volume_info(r: &VolumeRecord) -> VolumeInfo {
    VolumeInfo {
        id: r.id.clone(),
        name: r.name.clone(),
        size_gb: r.size_gb,
        status: if !r.ready {
            VolumeStatus::Creating
        } else if r.attached_to.is_some() {
            VolumeStatus::InUse
        } else {
            VolumeStatus::Available
        },
        attached_to: r.attached_to.clone(),
        availability_zone: None,
        snapshot_id: r.snapshot_id.clone(),
    }
}

fn snapshot_info(r: &SnapshotRecord) -> SnapshotInfo {
    SnapshotInfo {
        id: r.id.clone(),
        name: r.name.clone(),
        volume_id: r.volume_id.clone(),
        size_gb: r.size_gb,
        status: if r.ready { SnapshotStatus::Completed } else { SnapshotStatus::Pending },
        created_at: Some(r.created_at),
    }
}

/// Copies a directory tree preserving owners, modes, links and times; shares blocks
/// (reflink) where the filesystem can. `dst` must not exist yet.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), ProviderError> {
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto", "-T", "--"])
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|e| ProviderError::Permanent(format!("run cp: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(())
    } else if only_vanished(&stderr) && src.is_dir() && dst.is_dir() {
        // A volume in use (a database inside an online backup) loses files while it
        // is copied: they are gone in the source too, which the copy then reflects,
        // as a block-level snapshot would. cp copied everything else.
        tracing::info!(src = %src.display(), "files vanished while copying a volume in use");
        Ok(())
    } else {
        Err(ProviderError::Permanent(format!("copy {} to {}: {}", src.display(), dst.display(), stderr.trim())))
    }
}

/// Whether cp's only complaints are files that disappeared between listing and copying.
fn only_vanished(stderr: &str) -> bool {
    let mut lines = stderr.lines().filter(|l| !l.trim().is_empty()).peekable();
    lines.peek().is_some() && lines.all(|l| l.ends_with(": No such file or directory"))
}

impl Inner {
    fn attachment_path(&self, server_id: &str, volume_id: &str) -> PathBuf {
        self.paths(server_id).mnt_dir().join(volume_id)
    }

    /// Copies `src` into the data directory of (`kind`, `id`) through the staging
    /// area, so the destination appears complete or not at all.
    fn copy_into(&self, src: &Path, kind: Kind, id: &str) -> Result<(), ProviderError> {
        let dst = self.layout.data_path(kind, id);
        if dst.exists() {
            // The rename of an earlier attempt happened: the copy is complete.
            return Ok(());
        }
        let staging = self.layout.staging_path(kind, id);
        state::remove_dir_if_exists(&staging)?;
        copy_tree(src, &staging)?;
        fs::rename(&staging, &dst).map_err(|e| io_error("rename", &staging, e))
    }

    pub(super) fn create_volume(&self, spec: &VolumeSpec, token: &str) -> Result<VolumeInfo, ProviderError> {
        check_token(token)?;
        if spec.size_gb == 0 {
            return Err(ProviderError::Permanent("volume size must be at least 1 GB".into()));
        }
        let _g = self.global_lock()?;
        let records: Vec<VolumeRecord> = self.layout.list(Kind::Volume)?;
        if let Some(existing) = records.iter().find(|r| r.token == token) {
            if existing.snapshot_id.is_some() {
                return Err(ProviderError::Permanent(format!(
                    "idempotency token already used for volume {} (from a snapshot)",
                    existing.id
                )));
            }
            return Ok(volume_info(existing));
        }
        let id = state::new_id("vol");
        let dir = self.layout.data_path(Kind::Volume, &id);
        fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
        let record = VolumeRecord {
            id: id.clone(),
            token: token.to_owned(),
            name: spec.name.clone(),
            size_gb: spec.size_gb,
            tags: spec.tags.clone(),
            attached_to: None,
            snapshot_id: None,
            ready: true,
            created_at: chrono::Utc::now(),
        };
        self.layout.save(Kind::Volume, &id, &record)?;
        tracing::info!(volume = %id, size_gb = spec.size_gb, "local volume created");
        Ok(volume_info(&record))
    }

    pub(super) fn get_volume(&self, id: &str) -> Result<VolumeInfo, ProviderError> {
        Ok(volume_info(&self.layout.load(Kind::Volume, id)?))
    }

    pub(super) fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<VolumeAttachment, ProviderError> {
        let _lock = self.resource_lock(Kind::Volume, volume_id)?;
        let _g = self.global_lock()?;
        let mut vol: VolumeRecord = self.layout.load(Kind::Volume, volume_id)?;
        let _server: ServerRecord = self.layout.load(Kind::Server, server_id)?;
        if !vol.ready {
            return Err(ProviderError::Conflict(format!("volume {volume_id} is still being created")));
        }
        match vol.attached_to.as_deref() {
            Some(other) if other != server_id => {
                return Err(ProviderError::Conflict(format!("volume {volume_id} is attached to server {other}")));
            }
            _ => {}
        }
        let link = self.attachment_path(server_id, volume_id);
        let target = self.layout.data_path(Kind::Volume, volume_id);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        }
        match fs::read_link(&link) {
            Ok(existing) if existing == target => {}
            Ok(_) => {
                state::remove_file_if_exists(&link)?;
                std::os::unix::fs::symlink(&target, &link).map_err(|e| io_error("link", &link, e))?;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::os::unix::fs::symlink(&target, &link).map_err(|e| io_error("link", &link, e))?;
            }
            Err(e) => return Err(io_error("read link", &link, e)),
        }
        if vol.attached_to.is_none() {
            vol.attached_to = Some(server_id.to_owned());
            self.layout.save(Kind::Volume, volume_id, &vol)?;
            tracing::info!(volume = %volume_id, server = %server_id, "local volume attached");
        }
        Ok(VolumeAttachment {
            volume_id: volume_id.to_owned(),
            server_id: server_id.to_owned(),
            kind: AttachmentKind::Directory,
            path: link.display().to_string(),
        })
    }

    pub(super) fn detach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        let _lock = match self.resource_lock(Kind::Volume, volume_id) {
            Err(ProviderError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        let _g = self.global_lock()?;
        let Some(mut vol) = self.layout.try_load::<VolumeRecord>(Kind::Volume, volume_id)? else {
            return Ok(());
        };
        match vol.attached_to.as_deref() {
            None => Ok(()),
            Some(other) if other != server_id => Err(ProviderError::Conflict(format!(
                "volume {volume_id} is attached to server {other}, not {server_id}"
            ))),
            Some(_) => {
                state::remove_file_if_exists(&self.attachment_path(server_id, volume_id))?;
                vol.attached_to = None;
                self.layout.save(Kind::Volume, volume_id, &vol)?;
                tracing::info!(volume = %volume_id, server = %server_id, "local volume detached");
                Ok(())
            }
        }
    }

    pub(super) fn delete_volume(&self, id: &str) -> Result<(), ProviderError> {
        let lock = match self.resource_lock(Kind::Volume, id) {
            Err(ProviderError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        {
            let _g = self.global_lock()?;
            match self.layout.try_load::<VolumeRecord>(Kind::Volume, id)? {
                None => return Ok(()),
                Some(v) if v.attached_to.is_some() => {
                    return Err(ProviderError::Conflict(format!(
                        "volume {id} is attached to server {}",
                        v.attached_to.unwrap_or_default()
                    )));
                }
                Some(_) => {}
            }
        }
        // The contents go first: a crash here leaves a record that a retry deletes.
        state::remove_dir_if_exists(&self.layout.staging_path(Kind::Volume, id))?;
        state::remove_dir_if_exists(&self.layout.data_path(Kind::Volume, id))?;
        {
            let _g = self.global_lock()?;
            self.layout.remove(Kind::Volume, id)?;
        }
        state::remove_file_if_exists(&self.layout.lock_path(Kind::Volume, id))?;
        drop(lock);
        tracing::info!(volume = %id, "local volume deleted");
        Ok(())
    }

    pub(super) fn snapshot_volume(
        &self,
        volume_id: &str,
        spec: &SnapshotSpec,
        token: &str,
    ) -> Result<SnapshotInfo, ProviderError> {
        check_token(token)?;
        let id = {
            let _g = self.global_lock()?;
            let records: Vec<SnapshotRecord> = self.layout.list(Kind::Snapshot)?;
            if let Some(existing) = records.iter().find(|r| r.token == token) {
                if existing.volume_id != volume_id {
                    return Err(ProviderError::Permanent(format!(
                        "idempotency token already used for snapshot {} of volume {}",
                        existing.id, existing.volume_id
                    )));
                }
                existing.id.clone()
            } else {
                let vol: VolumeRecord = self.layout.load(Kind::Volume, volume_id)?;
                if !vol.ready {
                    return Err(ProviderError::Conflict(format!("volume {volume_id} is still being created")));
                }
                let id = state::new_id("snap");
                let record = SnapshotRecord {
                    id: id.clone(),
                    token: token.to_owned(),
                    name: spec.name.clone(),
                    volume_id: volume_id.to_owned(),
                    size_gb: vol.size_gb,
                    tags: spec.tags.clone(),
                    ready: false,
                    created_at: chrono::Utc::now(),
                };
                self.layout.save(Kind::Snapshot, &id, &record)?;
                id
            }
        };
        let _snap_lock = self.resource_lock(Kind::Snapshot, &id)?;
        let record: SnapshotRecord = self.layout.load(Kind::Snapshot, &id)?;
        if record.ready {
            return Ok(snapshot_info(&record));
        }
        {
            // Holding the volume lock keeps the volume from being deleted mid-copy.
            let _vol_lock = self.resource_lock(Kind::Volume, volume_id)?;
            if self.layout.try_load::<VolumeRecord>(Kind::Volume, volume_id)?.is_none() {
                return Err(ProviderError::NotFound(format!("volume {volume_id}")));
            }
            let src = self.layout.data_path(Kind::Volume, volume_id);
            self.copy_into(&src, Kind::Snapshot, &id)?;
        }
        let _g = self.global_lock()?;
        let mut record: SnapshotRecord = self.layout.load(Kind::Snapshot, &id)?;
        record.ready = true;
        self.layout.save(Kind::Snapshot, &id, &record)?;
        tracing::info!(snapshot = %id, volume = %volume_id, "local snapshot taken");
        Ok(snapshot_info(&record))
    }

    pub(super) fn get_snapshot(&self, id: &str) -> Result<SnapshotInfo, ProviderError> {
        Ok(snapshot_info(&self.layout.load(Kind::Snapshot, id)?))
    }

    pub(super) fn create_volume_from_snapshot(
        &self,
        snapshot_id: &str,
        spec: &VolumeSpec,
        token: &str,
    ) -> Result<VolumeInfo, ProviderError> {
        check_token(token)?;
        let id = {
            let _g = self.global_lock()?;
            let records: Vec<VolumeRecord> = self.layout.list(Kind::Volume)?;
            if let Some(existing) = records.iter().find(|r| r.token == token) {
                if existing.snapshot_id.as_deref() != Some(snapshot_id) {
                    return Err(ProviderError::Permanent(format!(
                        "idempotency token already used for volume {}",
                        existing.id
                    )));
                }
                existing.id.clone()
            } else {
                let snap: SnapshotRecord = self.layout.load(Kind::Snapshot, snapshot_id)?;
                if !snap.ready {
                    return Err(ProviderError::Conflict(format!("snapshot {snapshot_id} is not completed")));
                }
                let id = state::new_id("vol");
                let record = VolumeRecord {
                    id: id.clone(),
                    token: token.to_owned(),
                    name: spec.name.clone(),
                    size_gb: spec.size_gb.max(snap.size_gb),
                    tags: spec.tags.clone(),
                    attached_to: None,
                    snapshot_id: Some(snapshot_id.to_owned()),
                    ready: false,
                    created_at: chrono::Utc::now(),
                };
                self.layout.save(Kind::Volume, &id, &record)?;
                id
            }
        };
        // Lock order: snapshot, then volume.
        let _snap_lock = self.resource_lock(Kind::Snapshot, snapshot_id)?;
        let _vol_lock = self.resource_lock(Kind::Volume, &id)?;
        let record: VolumeRecord = self.layout.load(Kind::Volume, &id)?;
        if record.ready {
            return Ok(volume_info(&record));
        }
        if self.layout.try_load::<SnapshotRecord>(Kind::Snapshot, snapshot_id)?.is_none() {
            return Err(ProviderError::NotFound(format!("snapshot {snapshot_id}")));
        }
        let src = self.layout.data_path(Kind::Snapshot, snapshot_id);
        self.copy_into(&src, Kind::Volume, &id)?;
        let _g = self.global_lock()?;
        let mut record: VolumeRecord = self.layout.load(Kind::Volume, &id)?;
        record.ready = true;
        self.layout.save(Kind::Volume, &id, &record)?;
        tracing::info!(volume = %id, snapshot = %snapshot_id, "local volume restored from snapshot");
        Ok(volume_info(&record))
    }

    pub(super) fn delete_snapshot(&self, id: &str) -> Result<(), ProviderError> {
        let lock = match self.resource_lock(Kind::Snapshot, id) {
            Err(ProviderError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        state::remove_dir_if_exists(&self.layout.staging_path(Kind::Snapshot, id))?;
        state::remove_dir_if_exists(&self.layout.data_path(Kind::Snapshot, id))?;
        {
            let _g = self.global_lock()?;
            self.layout.remove(Kind::Snapshot, id)?;
        }
        state::remove_file_if_exists(&self.layout.lock_path(Kind::Snapshot, id))?;
        drop(lock);
        tracing::info!(snapshot = %id, "local snapshot deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vanished_files_are_tolerated_other_errors_are_not() {
        let vanished = "cp: cannot stat '/v/15/x/pg_wal/000000010000000000000003': No such file or directory\n\
                        cp: cannot open '/v/15/x/base/pgsql_tmp/t1' for reading: No such file or directory\n";
        assert!(only_vanished(vanished));
        assert!(!only_vanished(""), "a failure that said nothing is a failure");
        assert!(!only_vanished(&format!("{vanished}cp: error writing '/d/f': No space left on device\n")));
        assert!(!only_vanished("cp: cannot open '/v/f' for reading: Permission denied\n"));
    }

    #[test]
    fn a_tree_copies_with_modes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/f"), b"data").unwrap();
        std::os::unix::fs::symlink("a/b/f", src.join("link")).unwrap();
        copy_tree(&src, &d.path().join("dst")).unwrap();
        assert_eq!(fs::read(d.path().join("dst/a/b/f")).unwrap(), b"data");
        assert_eq!(fs::read_link(d.path().join("dst/link")).unwrap(), Path::new("a/b/f"));
        assert!(copy_tree(&d.path().join("missing"), &d.path().join("dst2")).is_err());
    }
}
