//! Which backup repository a cluster uses, from the settings: loopback hosts share the
//! control-plane host's filesystem and use a directory there; cloud servers use S3
//! when it is configured, else they have no backups.

use herd_core::config::BackupSettings;
use herd_providers::ProviderKind;
use std::path::Path;
use uuid::Uuid;

use crate::{BackupConfig, BackupRepo};

/// The stanza of a cluster: its id, so it is never reused and outlives the cluster.
pub fn stanza(cluster_id: Uuid) -> String {
    format!("herd-{}", cluster_id.simple())
}

/// The repository kind's name as stored on backup rows.
pub fn kind_name(repo: &BackupRepo) -> &'static str {
    match repo {
        BackupRepo::Posix { .. } => "posix",
        BackupRepo::S3 { .. } => "s3",
    }
}

fn repo_for(settings: &BackupSettings, state_dir: &Path, kind: &str) -> Option<BackupRepo> {
    match kind {
        "posix" => Some(BackupRepo::Posix {
            path: settings.path.clone().unwrap_or_else(|| state_dir.join("backups")).to_string_lossy().into_owned(),
        }),
        "s3" => settings.s3.as_ref().map(|s| BackupRepo::S3 {
            bucket: s.bucket.clone(),
            endpoint: s.endpoint.clone(),
            region: s.region.clone(),
            path: s.path.clone(),
            key_id: s.access_key_id.clone(),
            secret: s.secret_access_key.clone(),
            path_style: s.path_style,
            verify_tls: s.verify_tls,
            insecure_http: false,
        }),
        _ => None,
    }
}

/// The repository of a new cluster on a provider of `kind`.
pub fn for_new_cluster(
    settings: &BackupSettings,
    state_dir: &Path,
    kind: ProviderKind,
    cluster_id: Uuid,
) -> Option<BackupConfig> {
    let repo = match kind {
        ProviderKind::Local => repo_for(settings, state_dir, "posix"),
        _ => repo_for(settings, state_dir, "s3"),
    }?;
    Some(BackupConfig { repo, stanza: stanza(cluster_id) })
}

/// The repository a backup row names (`posix`/`s3` and its stanza).
pub fn for_backup(settings: &BackupSettings, state_dir: &Path, repo: &str, stanza: &str) -> Option<BackupConfig> {
    Some(BackupConfig { repo: repo_for(settings, state_dir, repo)?, stanza: stanza.to_owned() })
}

/// Creates a posix repository directory on this (the control-plane) host, owned by
/// the database user the nodes archive as. A no-op for S3.
pub fn ensure_posix_dir(config: &BackupConfig) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let BackupRepo::Posix { path } = &config.repo else { return Ok(()) };
    std::fs::create_dir_all(path)?;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)))
    });
    if let Some(Some((uid, gid))) = ids {
        // Only root may hand the directory over; otherwise the operator owns that.
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o750))
}
