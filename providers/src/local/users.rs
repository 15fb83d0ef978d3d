//! Service users of loopback hosts. Every loopback host shares this machine, so the
//! daemons of one cluster's servers (PostgreSQL, Patroni, etcd, pgBackRest) run as an
//! OS user of that cluster's own, `herd-<12 hex digits of the cluster id>`: a database
//! login that escaped to the OS reaches its own cluster's files and nothing else.
//!
//! Per cluster rather than per server: a cluster's members write one pgBackRest
//! stanza, and pgBackRest creates its files 0640 and directories 0750 (readable by
//! the group, never writable), so they need one owner. The members of a cluster
//! already share every secret of it.
//!
//! IDs are derived from the name in a range no ordinary account uses, so a removed
//! cluster's leftover files (its retained backups) never fall to a later cluster
//! that `useradd` happened to give the freed number.

use super::state::io_error;
use crate::{ProviderError, TAG_CLUSTER};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// First ID of the range; the range is 2^30 wide (well inside 32-bit IDs).
const ID_BASE: u32 = 1 << 30;
const ID_SPAN: u32 = 1 << 30;

/// The service user of a server with these tags: its cluster's, or for a server
/// outside any cluster (provider tests) one of its own.
pub(crate) fn name_for(tags: &BTreeMap<String, String>, server_id: &str) -> String {
    // A cluster id is a UUID; a server id ends in 12 random hex digits. Anything
    // else as a cluster tag could be shared by unrelated servers: not trusted.
    if let Some(id) = tags.get(TAG_CLUSTER).and_then(|t| uuid::Uuid::parse_str(t).ok()) {
        return format!("herd-{}", &id.simple().to_string()[..12]);
    }
    let tail: String = server_id.rsplit('-').next().unwrap_or(server_id).chars().take(12).collect();
    format!("herd-{tail}")
}

fn preferred_id(name: &str) -> u32 {
    // FNV-1a: stable across releases (std's hasher is not).
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ID_BASE + h % ID_SPAN
}

fn run(cmd: &mut Command, what: &str) -> Result<std::process::Output, ProviderError> {
    cmd.output().map_err(|e| ProviderError::Permanent(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))
}

fn getent(db: &str, key: &str) -> Result<Option<String>, ProviderError> {
    let out = run(Command::new("getent").args([db, key]), "looking up a service user")?;
    Ok(out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// Whether this process may create users (root); otherwise daemons keep the
/// datastore packages' own users.
pub(crate) fn can_manage() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The account comment: it names the provider root the user belongs to, so that
/// `scripts/stop-leftovers.sh` can tell an interrupted test run's users (roots under
/// the temp directory) from a `herd dev`'s. The passwd format forbids `:` and newlines.
pub(crate) fn comment(root: &Path) -> String {
    let root: String =
        root.display().to_string().chars().map(|c| if c == ':' || c.is_control() { '_' } else { c }).collect();
    format!("Herd cluster service user, provider root {root}")
}

/// Creates the user (and its group of the same name and ID) unless it exists.
/// Callers hold the provider's global lock, so two servers of one cluster created
/// at once never race here.
pub(crate) fn ensure(name: &str, root: &Path) -> Result<(), ProviderError> {
    if getent("passwd", name)?.is_some() {
        return Ok(());
    }
    let mut id = preferred_id(name);
    for _ in 0..64 {
        let taken = getent("passwd", &id.to_string())?.is_some() || getent("group", &id.to_string())?.is_some();
        if !taken {
            break;
        }
        id = ID_BASE + (id - ID_BASE + 1) % ID_SPAN;
    }
    let id = id.to_string();
    if getent("group", name)?.is_none() {
        let out = run(Command::new("groupadd").args(["-g", &id, name]), "creating a service group")?;
        // Another Herd process may have won the race (each holds its own lock file
        // only per provider root).
        if !out.status.success() && getent("group", name)?.is_none() {
            return Err(ProviderError::Permanent(format!(
                "groupadd {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    // -l: no lastlog/faillog entry (sparse files sized by the highest ID).
    let out = run(
        Command::new("useradd").args([
            "-u",
            &id,
            "-g",
            name,
            "-M",
            "-l",
            // Every daemon is given its HOME; the account itself has none.
            "-d",
            "/nonexistent",
            "-s",
            "/usr/sbin/nologin",
            "-c",
            &comment(root),
            name,
        ]),
        "creating a service user",
    )?;
    if !out.status.success() && getent("passwd", name)?.is_none() {
        return Err(ProviderError::Permanent(format!(
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    tracing::info!(user = name, id = %id, "service user created");
    Ok(())
}

/// Removes the user and its group; callers have stopped every process of it.
pub(crate) fn remove(name: &str) -> Result<(), ProviderError> {
    // userdel first: groupdel refuses a group that is still some user's primary one.
    for (db, tool) in [("passwd", "userdel"), ("group", "groupdel")] {
        if getent(db, name)?.is_none() {
            continue;
        }
        let out = run(Command::new(tool).arg(name), "removing a service user")?;
        if !out.status.success() {
            return Err(ProviderError::Transient(format!(
                "{tool} {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    tracing::info!(user = name, "service user removed");
    Ok(())
}

/// Gives the server root to root and the service user's group alone (0750): other
/// clusters' users cannot even list it.
pub(crate) fn restrict_root(root: &Path, name: &str) -> Result<(), ProviderError> {
    let group = getent("group", name)?
        .and_then(|line| line.split(':').nth(2).and_then(|g| g.parse::<u32>().ok()))
        .ok_or_else(|| ProviderError::Permanent(format!("group {name} does not exist")))?;
    std::os::unix::fs::chown(root, Some(0), Some(group)).map_err(|e| io_error("chown", root, e))?;
    super::state::set_mode(root, 0o750)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_cluster_and_ids_stay_in_range() {
        let tags = BTreeMap::from([(TAG_CLUSTER.to_owned(), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".to_owned())]);
        assert_eq!(name_for(&tags, "srv-ignored"), "herd-0f1e2d3c4b5a");
        assert_eq!(name_for(&BTreeMap::new(), "srv-0011223344ab"), "herd-0011223344ab");
        let not_a_uuid = BTreeMap::from([(TAG_CLUSTER.to_owned(), "c1".to_owned())]);
        assert_eq!(name_for(&not_a_uuid, "srv-0011223344ab"), "herd-0011223344ab");
        let id = preferred_id("herd-0f1e2d3c4b5a");
        assert!((ID_BASE..ID_BASE + ID_SPAN).contains(&id));
        assert_ne!(id, preferred_id("herd-0f1e2d3c4b5b"));
        assert_eq!(id, preferred_id("herd-0f1e2d3c4b5a"));
    }
}
