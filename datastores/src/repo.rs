//! Which backup repository a cluster uses, from the settings (`backups.repository`):
//! by default (`auto`) loopback hosts share the control-plane host's filesystem and use
//! a directory there, and cloud servers use S3 when it is configured, else they have
//! no backups; `posix` or `s3` choose one repository for every cluster.
//!
//! A cluster, backup or snapshot row records its repository as `posix`, `s3`, or
//! with `+aes` (`posix+aes`) when the stanza is encrypted: every stanza created since
//! Herd encrypts backups, with a passphrase derived from the master key for that
//! stanza (never stored, never shown). Stanzas recorded without it stay as they are.

use herd_core::config::{BackupSettings, RepositoryChoice};
use herd_core::crypto::MasterKey;
use herd_providers::ProviderKind;
use std::path::Path;
use uuid::Uuid;

use crate::{BackupConfig, BackupRepo};

/// `MasterKey::derive_token` purpose of a stanza's pgBackRest passphrase.
pub const CIPHER_PURPOSE: &str = "pgbackrest-repo-cipher";
const ENCRYPTED: &str = "+aes";

/// The stanza of a cluster: its id, so it is never reused and outlives the cluster.
pub fn stanza(cluster_id: Uuid) -> String {
    format!("herd-{}", cluster_id.simple())
}

/// The repository kind's name (`posix`, `s3`).
pub fn kind_name(repo: &BackupRepo) -> &'static str {
    match repo {
        BackupRepo::Posix { .. } => "posix",
        BackupRepo::S3 { .. } => "s3",
    }
}

/// What a row records for `config`'s stanza: its repository and whether it is encrypted.
pub fn record(config: &BackupConfig) -> &'static str {
    match (&config.repo, config.cipher.is_some()) {
        (BackupRepo::Posix { .. }, false) => "posix",
        (BackupRepo::Posix { .. }, true) => "posix+aes",
        (BackupRepo::S3 { .. }, false) => "s3",
        (BackupRepo::S3 { .. }, true) => "s3+aes",
    }
}

/// The repository kind of a recorded value, for display (`posix+aes` is `posix`).
pub fn recorded_kind(recorded: &str) -> &str {
    recorded.strip_suffix(ENCRYPTED).unwrap_or(recorded)
}

/// Whether a recorded value names an encrypted stanza.
pub fn recorded_encrypted(recorded: &str) -> bool {
    recorded.ends_with(ENCRYPTED)
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
            ca_file: s.ca_file.as_ref().map(|p| p.to_string_lossy().into_owned()),
        }),
        _ => None,
    }
}

/// `clusters.backup_repo` of a cluster created without a backup repository.
pub const NO_REPOSITORY: &str = "none";

/// What a new cluster records as its repository (`posix+aes`, `s3+aes` or `none`):
/// its archive_command is rendered for that one, so its backups must go there too,
/// whatever `[backups]` says later.
pub fn record_for_new_cluster(settings: &BackupSettings, state_dir: &Path, kind: ProviderKind) -> &'static str {
    match repo_for(settings, state_dir, new_cluster_kind(settings, kind)) {
        None => NO_REPOSITORY,
        Some(BackupRepo::Posix { .. }) => "posix+aes",
        Some(BackupRepo::S3 { .. }) => "s3+aes",
    }
}

fn new_cluster_kind(settings: &BackupSettings, kind: ProviderKind) -> &'static str {
    match (settings.repository, kind) {
        (RepositoryChoice::Posix, _) | (RepositoryChoice::Auto, ProviderKind::Local) => "posix",
        (RepositoryChoice::S3, _) | (RepositoryChoice::Auto, _) => "s3",
    }
}

/// The repository of an existing cluster: the one it recorded at creation (None when
/// that was none, or when that repository is no longer configured); clusters created
/// before Herd recorded it (`recorded` None) follow today's choice, unencrypted as
/// they were created.
pub fn for_cluster(
    settings: &BackupSettings,
    state_dir: &Path,
    recorded: Option<&str>,
    kind: ProviderKind,
    cluster_id: Uuid,
    key: &MasterKey,
) -> Option<BackupConfig> {
    let stanza = stanza(cluster_id);
    match recorded {
        Some(NO_REPOSITORY) => None,
        Some(name) => for_backup(settings, state_dir, name, &stanza, key),
        None => for_backup(settings, state_dir, new_cluster_kind(settings, kind), &stanza, key),
    }
}

/// The repository a backup or snapshot row names (as [`record`] wrote it) and its stanza.
pub fn for_backup(
    settings: &BackupSettings,
    state_dir: &Path,
    recorded: &str,
    stanza: &str,
    key: &MasterKey,
) -> Option<BackupConfig> {
    let repo = repo_for(settings, state_dir, recorded_kind(recorded))?;
    let cipher = recorded_encrypted(recorded).then(|| key.derive_token(CIPHER_PURPOSE, stanza));
    Some(BackupConfig { repo, stanza: stanza.to_owned(), cipher })
}

/// The stanza's two directories in a posix repository (pgBackRest's layout).
pub fn stanza_dirs(path: &str, stanza: &str) -> [std::path::PathBuf; 2] {
    let root = Path::new(path);
    [root.join("archive").join(stanza), root.join("backup").join(stanza)]
}

/// `(uid, gid)` of a user in this host's passwd file.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Prepares a posix repository on this (the control-plane) host for one stanza. The
/// repository is root's, 0711 (passable, not listable); its `archive` and `backup`
/// directories root's 0755 (pgBackRest's `info` lists `backup` even for one stanza:
/// the stanzas' names show, nothing in them); the stanza's two directories belong to
/// the user its nodes run as (`owner`: a loopback cluster's service user, else
/// `postgres`), 0750, so no other cluster's user reads them. A no-op for S3. Not
/// root: only creates it.
pub fn ensure_posix_dir(config: &BackupConfig, owner: Option<&str>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let BackupRepo::Posix { path } = &config.repo else { return Ok(()) };
    let dirs = stanza_dirs(path, &config.stanza);
    for d in &dirs {
        std::fs::create_dir_all(d)?;
    }
    if !is_root() {
        return Ok(());
    }
    let owner = owner.unwrap_or("postgres");
    let (uid, gid) = ids_of(owner)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no user {owner} on this host")))?;
    let root = Path::new(path);
    for (d, mode) in [(root.to_path_buf(), 0o711), (root.join("archive"), 0o755), (root.join("backup"), 0o755)] {
        std::os::unix::fs::chown(&d, Some(0), Some(0))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode))?;
    }
    for d in &dirs {
        std::os::unix::fs::chown(d, Some(uid), Some(gid))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o750))?;
    }
    Ok(())
}

/// Lets `user` read a posix stanza it restores from (pgBackRest writes it 0640 and
/// 0750 under its owner's group): `user` joins that group. Only a Herd service
/// user's group is ever joined; a stanza of the packages' `postgres` (written
/// before clusters had users of their own) is left as it is. A no-op for S3.
pub fn grant_read(config: &BackupConfig, user: Option<&str>) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (BackupRepo::Posix { path }, Some(user)) = (&config.repo, user) else { return Ok(()) };
    if !is_root() {
        return Ok(());
    }
    let [archive, _] = stanza_dirs(path, &config.stanza);
    let gid = match std::fs::metadata(&archive) {
        Ok(m) => m.gid(),
        // Nothing there to read: the restore itself says so.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let run = |args: &[&str]| -> std::io::Result<std::process::Output> {
        std::process::Command::new(args[0]).args(&args[1..]).output()
    };
    let group = run(&["getent", "group", &gid.to_string()])?;
    let group = String::from_utf8_lossy(&group.stdout).split(':').next().unwrap_or_default().to_owned();
    let group = if group.is_empty() {
        // The source cluster is gone and took its group along: a group for its
        // leftover files, by number.
        let name = format!("herd-g{gid}");
        let out = run(&["groupadd", "-g", &gid.to_string(), &name])?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!("groupadd {name}: {}", String::from_utf8_lossy(&out.stderr))));
        }
        name
    } else {
        group
    };
    if !group.starts_with("herd-") || group == user {
        return Ok(());
    }
    let out = run(&["gpasswd", "-a", user, &group])?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "adding {user} to {group}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_core::config::S3RepoSettings;

    fn settings(repository: RepositoryChoice, s3: bool) -> BackupSettings {
        BackupSettings {
            repository,
            path: Some("/srv/backups".into()),
            s3: s3.then(|| S3RepoSettings {
                bucket: "b".into(),
                endpoint: "localhost:9443".into(),
                ca_file: Some("/etc/herd/ca.pem".into()),
                ..Default::default()
            }),
        }
    }

    fn kind_of(s: &BackupSettings, provider: ProviderKind) -> Option<&'static str> {
        match record_for_new_cluster(s, Path::new("/state"), provider) {
            NO_REPOSITORY => None,
            r => Some(r),
        }
    }

    #[test]
    fn repository_choice_decides_new_clusters_and_rows_decide_backups() {
        use RepositoryChoice::*;
        let key = MasterKey::generate();
        let (local, ec2) = (ProviderKind::Local, ProviderKind::Ec2);
        assert_eq!(kind_of(&settings(Auto, true), local), Some("posix+aes"));
        assert_eq!(kind_of(&settings(Auto, true), ec2), Some("s3+aes"));
        assert_eq!(kind_of(&settings(Auto, false), ec2), None, "a cloud cluster without S3 has no backups");
        assert_eq!(kind_of(&settings(S3, true), local), Some("s3+aes"));
        assert_eq!(kind_of(&settings(S3, false), local), None, "refused at start-up by Settings::validate");
        assert_eq!(kind_of(&settings(Posix, true), ec2), Some("posix+aes"));

        // A backup row's repository wins over the choice for new clusters.
        let s = settings(Posix, true);
        let c = for_backup(&s, Path::new("/state"), "s3", "herd-x", &key).unwrap();
        let BackupRepo::S3 { ca_file, verify_tls, .. } = &c.repo else { panic!("{c:?}") };
        assert_eq!((ca_file.as_deref(), *verify_tls), (Some("/etc/herd/ca.pem"), true));
        assert_eq!(c.stanza, "herd-x");
        assert!(c.cipher.is_none(), "recorded unencrypted");
        assert_eq!(record(&c), "s3");
        assert!(for_backup(&settings(Auto, false), Path::new("/state"), "s3", "herd-x", &key).is_none());
        let p = for_backup(&settings(S3, true), Path::new("/state"), "posix+aes", "herd-y", &key).unwrap();
        assert!(matches!(&p.repo, BackupRepo::Posix { path } if path == "/srv/backups"), "{p:?}");
        assert_eq!(record(&p), "posix+aes");
        assert_eq!(stanza(Uuid::nil()), "herd-00000000000000000000000000000000");
    }

    #[test]
    fn each_stanza_has_its_own_passphrase_from_the_master_key() {
        use secrecy::ExposeSecret;
        let (s, root, key) = (settings(RepositoryChoice::Auto, true), Path::new("/state"), MasterKey::generate());
        let pass = |stanza: &str, key: &MasterKey| {
            for_backup(&s, root, "posix+aes", stanza, key).unwrap().cipher.unwrap().expose_secret().to_owned()
        };
        assert_eq!(pass("herd-a", &key), pass("herd-a", &key), "stable: nothing to store");
        assert_ne!(pass("herd-a", &key), pass("herd-b", &key));
        assert_ne!(pass("herd-a", &key), pass("herd-a", &MasterKey::generate()));
        assert!(pass("herd-a", &key).len() >= 64);
        assert_eq!((recorded_kind("posix+aes"), recorded_kind("s3")), ("posix", "s3"));
    }

    #[test]
    fn a_cluster_keeps_the_repository_it_was_created_with() {
        use RepositoryChoice::*;
        let key = MasterKey::generate();
        let root = Path::new("/state");
        let id = Uuid::from_u128(7);
        assert_eq!(record_for_new_cluster(&settings(Auto, true), root, ProviderKind::Local), "posix+aes");
        assert_eq!(record_for_new_cluster(&settings(Auto, false), root, ProviderKind::Ec2), NO_REPOSITORY);
        // Created on posix; the operator then switches new clusters to S3.
        let later = settings(S3, true);
        let c = for_cluster(&later, root, Some("posix+aes"), ProviderKind::Local, id, &key).unwrap();
        assert!(matches!(&c.repo, BackupRepo::Posix { path } if path == "/srv/backups"), "{c:?}");
        assert_eq!(c.stanza, stanza(id));
        assert!(c.cipher.is_some());
        // Created before backups were encrypted: its stanza stays unencrypted.
        let old = for_cluster(&later, root, Some("posix"), ProviderKind::Local, id, &key).unwrap();
        assert!(old.cipher.is_none());
        // Created without one: S3 configured later does not apply (nothing archives there).
        assert!(for_cluster(&later, root, Some(NO_REPOSITORY), ProviderKind::Ec2, id, &key).is_none());
        // Its recorded repository is no longer configured: none, not another one.
        assert!(for_cluster(&settings(Posix, false), root, Some("s3+aes"), ProviderKind::Local, id, &key).is_none());
        // Recorded before Herd kept it: today's choice, unencrypted as it was made.
        let legacy = for_cluster(&later, root, None, ProviderKind::Local, id, &key).unwrap();
        assert_eq!(record(&legacy), "s3");
    }
}
