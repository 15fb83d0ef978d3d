//! pgBackRest: continuous WAL archiving, backups, and restores into new clusters.
//!
//! Nodes run `pgbackrest` as postgres with their own config file
//! (`{root}/etc/pgbackrest/{v}-{cluster}.conf`, 0600: it may hold S3 keys), always
//! named with `--config`. Its `[global]` section holds the node-local paths (lock,
//! log, spool under the root, so loopback nodes never share them); one section per
//! stanza holds that stanza's repository and the node's data directory: the cluster's
//! own stanza and, for a restored cluster, the source's.
//!
//! Listing, expiring and the recovery window run `pgbackrest` on the control-plane
//! host itself, with the repository options in its environment (never on its command
//! line), so they work after the cluster is gone.

use super::layout::{Layout, PG_PORT};
use super::{PostgresManager, as_user};
use crate::shell::{join, quote};
use crate::ssh::with_session;
use crate::{
    BackupConfig, BackupInfo, BackupRepo, BackupType, Backups, ClusterSpec, ManagerError, NodeSpec, RecoveryWindow,
    RestoreSource,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use herd_core::faults::FaultCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `stanza-create` plus `check`, which waits up to pgBackRest's `archive-timeout`
/// (60 s) for a switched WAL segment to reach the repository.
const INIT_TIMEOUT: Duration = Duration::from_secs(300);
/// A full backup of a large database.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// One pgbackrest command on the control-plane host (info, expire, repo-ls/get).
const LOCAL_TIMEOUT: Duration = Duration::from_secs(600);
/// How many of the newest archived segments are searched for the last commit.
const WINDOW_SEGMENTS: usize = 8;
/// Keeps pgBackRest's automatic retention from expiring anything: Herd expires
/// backups one by one (`expire --set`).
const RETENTION_FULL_MAX: &str = "9999999";

/// A stanza names a config section and repository directories.
fn check_stanza(stanza: &str) -> Result<(), ManagerError> {
    let ok = !stanza.is_empty()
        && stanza.len() <= 128
        && stanza.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && stanza.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ManagerError::permanent(
            FaultCode::InvalidBackupConfig,
            format!("stanza {stanza:?} is not [A-Za-z0-9][A-Za-z0-9._-]*"),
        ))
    }
}

/// A value of pgbackrest.conf (one line, no surrounding blanks: pgBackRest trims
/// them) or of an environment variable.
fn check_value(name: &str, value: &str) -> Result<(), ManagerError> {
    if value.is_empty() || value.trim() != value || value.contains(char::is_control) {
        return Err(ManagerError::permanent(
            FaultCode::InvalidBackupConfig,
            format!("{name} must be non-empty, one line, without leading or trailing blanks"),
        ));
    }
    Ok(())
}

/// Whether a backup label is pgBackRest's (`20261122-120000F`, `…F_20261122-130000I`).
pub fn valid_label(label: &str) -> bool {
    let stamp =
        |s: &[u8]| s.len() == 15 && s[8] == b'-' && s.iter().enumerate().all(|(i, b)| i == 8 || b.is_ascii_digit());
    let b = label.as_bytes();
    match b.len() {
        16 => stamp(&b[..15]) && b[15] == b'F',
        33 => stamp(&b[..15]) && b[15] == b'F' && b[16] == b'_' && stamp(&b[17..32]) && matches!(b[32], b'D' | b'I'),
        _ => false,
    }
}

/// `repo1-*` options of a stanza's repository. Secrets are among them: they go into
/// the 0600 config file or the environment, never onto a command line.
pub fn repo_options(config: &BackupConfig) -> Result<Vec<(&'static str, String)>, ManagerError> {
    let mut opts: Vec<(&'static str, String)> = match &config.repo {
        BackupRepo::Posix { path } => {
            if !path.starts_with('/') {
                return Err(ManagerError::permanent(
                    FaultCode::InvalidBackupConfig,
                    format!("repository path {path:?} is not absolute"),
                ));
            }
            vec![("repo1-type", "posix".into()), ("repo1-path", path.clone())]
        }
        // pgBackRest (2.x) has no plain-http S3 client: every request is https, so an
        // S3-compatible server without TLS needs a TLS terminator in front of it.
        BackupRepo::S3 { bucket, endpoint, region, path, key_id, secret, path_style, verify_tls, ca_file } => {
            let (host, port) = match endpoint.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => (h.to_owned(), Some(p.to_owned())),
                _ => (endpoint.clone(), None),
            };
            let prefix = format!("/{}", path.trim_matches('/'));
            let mut o = vec![
                ("repo1-type", "s3".to_owned()),
                ("repo1-path", prefix),
                ("repo1-s3-bucket", bucket.clone()),
                ("repo1-s3-endpoint", host),
                ("repo1-s3-region", region.clone()),
                ("repo1-s3-key", key_id.clone()),
                ("repo1-s3-key-secret", secret.expose_secret().to_owned()),
            ];
            if let Some(p) = port {
                o.push(("repo1-storage-port", p));
            }
            if *path_style {
                o.push(("repo1-s3-uri-style", "path".into()));
            }
            if !verify_tls {
                o.push(("repo1-storage-verify-tls", "n".into()));
            }
            if let Some(ca) = ca_file {
                // Read by pgbackrest wherever it runs (nodes and this host): absolute.
                if !ca.starts_with('/') {
                    return Err(ManagerError::permanent(
                        FaultCode::InvalidBackupConfig,
                        format!("S3 CA file {ca:?} is not an absolute path"),
                    ));
                }
                o.push(("repo1-storage-ca-file", ca.clone()));
            }
            o
        }
    };
    opts.push(("repo1-retention-full-type", "count".into()));
    opts.push(("repo1-retention-full", RETENTION_FULL_MAX.into()));
    // Each stanza has its own passphrase: a node holds only its cluster's (and, while
    // restoring, its source's), so another stanza in the same repository stays
    // unreadable to it. pgBackRest encrypts every file it writes with it.
    if let Some(pass) = &config.cipher {
        opts.push(("repo1-cipher-type", "aes-256-cbc".into()));
        opts.push(("repo1-cipher-pass", pass.expose_secret().to_owned()));
    }
    for (name, value) in &opts {
        check_value(name, value)?;
    }
    Ok(opts)
}

/// Checks a backup configuration as a whole.
pub fn check_config(config: &BackupConfig) -> Result<(), ManagerError> {
    check_stanza(&config.stanza)?;
    repo_options(config).map(|_| ())
}

/// Whether the node needs pgBackRest at all.
pub fn needed(cluster: &ClusterSpec) -> bool {
    cluster.backup.is_some() || cluster.restore.is_some()
}

/// pgbackrest.conf of a node; None when the cluster neither archives nor restores.
pub fn config_file(cluster: &ClusterSpec, node: &NodeSpec, l: &Layout) -> Result<Option<String>, ManagerError> {
    if !needed(cluster) {
        return Ok(None);
    }
    let mut out = format!(
        "# Written by Herd for member {} of PostgreSQL {} cluster {}. Holds repository keys: mode 0600,\n\
         # owner the node's service user. Always used with --config; rewritten by every configure.\n[global]\n",
        node.name, l.version, cluster.name
    );
    let global = [
        ("lock-path", l.pgbackrest_lock.as_str()),
        ("log-path", l.pgbackrest_log.as_str()),
        ("spool-path", l.pgbackrest_spool.as_str()),
        // Errors reach the caller (Herd, or PostgreSQL's log for archive-push) on
        // stderr; stdout stays clean for `info --output=json`.
        ("log-level-console", "off"),
        ("log-level-stderr", "warn"),
        ("log-level-file", "info"),
        // Backups start with an immediate checkpoint instead of waiting for one.
        ("start-fast", "y"),
        // Backups and restores copy files in two processes (pgBackRest's default is
        // one): compressing is what a backup waits for, decompressing a restore. At
        // most one more core of the primary while a backup runs.
        ("process-max", "2"),
        // Small files (most of a database's files) are bundled: far fewer files to
        // create and sync per backup; zero-length ones live only in the manifest.
        ("repo1-bundle", "y"),
    ];
    for (k, v) in global {
        check_value(k, v)?;
        out.push_str(&format!("{k}={v}\n"));
    }
    // Backup files: zstd level 1 instead of gzip level 6, several times faster and
    // no larger (bench/backup in BENCHMARKS.md). Only for `backup`: archived WAL
    // stays gzip, which the recovery window's WAL reader (`newest_commit`) reads.
    // Restores read whatever each file's manifest entry says.
    out.push_str("\n[global:backup]\n");
    for (k, v) in [("compress-type", "zst"), ("compress-level", "1")] {
        out.push_str(&format!("{k}={v}\n"));
    }
    let mut stanzas: Vec<&BackupConfig> = Vec::new();
    if let Some(b) = &cluster.backup {
        stanzas.push(b);
    }
    if let Some(r) = &cluster.restore {
        if cluster.backup.as_ref().is_some_and(|b| b.stanza == r.from.stanza) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidRestore,
                "a restored cluster must archive into a stanza of its own, not the source's",
            ));
        }
        stanzas.push(&r.from);
    }
    for b in stanzas {
        check_stanza(&b.stanza)?;
        out.push_str(&format!("\n[{}]\n", b.stanza));
        let pg = [
            ("pg1-path", l.data_dir.clone()),
            ("pg1-port", PG_PORT.to_string()),
            ("pg1-socket-path", l.socket_dir.clone()),
            ("pg1-user", "postgres".into()),
        ];
        for (k, v) in repo_options(b)?.into_iter().chain(pg) {
            check_value(k, &v)?;
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    Ok(Some(out))
}

/// `pgbackrest --config=… --stanza=…` plus `args`, each word quoted.
fn pgbackrest(l: &Layout, stanza: &str, args: &[&str]) -> String {
    let mut words =
        vec!["pgbackrest".to_owned(), format!("--config={}", l.pgbackrest_conf), format!("--stanza={stanza}")];
    words.extend(args.iter().map(|a| (*a).to_owned()));
    join(&words)
}

/// A shell command for a PostgreSQL `*_command` setting: `%` is PostgreSQL's escape.
fn pg_command(shell: &str) -> String {
    shell.replace('%', "%%")
}

/// `archive_command`: pushes each WAL segment into the cluster's own stanza.
pub fn archive_command(l: &Layout, config: &BackupConfig) -> String {
    format!("{} %p", pg_command(&pgbackrest(l, &config.stanza, &["archive-push"])))
}

/// `restore_command`: fetches WAL from `config`'s stanza (replicas: their own;
/// a restore: the source's).
pub fn restore_command(l: &Layout, config: &BackupConfig) -> String {
    format!("{} %f \"%p\"", pg_command(&pgbackrest(l, &config.stanza, &["archive-get"])))
}

/// `recovery_target_time` as PostgreSQL and pgBackRest both parse it.
pub fn target_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// Patroni's custom bootstrap of a restored cluster: the command (split by Patroni
/// with shlex) and the recovery settings it writes afterwards.
#[derive(Debug)]
pub struct Bootstrap {
    /// The method's name in patroni.yml (`pgbackrest`, `snapshot`).
    pub method: &'static str,
    pub command: String,
    pub recovery_conf: Vec<(String, String)>,
}

pub fn bootstrap(l: &Layout, r: &RestoreSource) -> Result<Bootstrap, ManagerError> {
    check_config(&r.from)?;
    let mut args: Vec<String> = vec!["--delta".into()];
    if let Some(set) = &r.set {
        if !valid_label(set) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidBackupLabel,
                format!("{set:?} is not a backup label"),
            ));
        }
        args.push(format!("--set={set}"));
    }
    let mut recovery = vec![
        ("restore_command".to_owned(), restore_command(l, &r.from)),
        ("recovery_target_timeline".to_owned(), "latest".to_owned()),
    ];
    match &r.target_time {
        Some(t) => {
            // pgBackRest uses the target only to pick a backup (unless `set` names
            // one): the newest whose stop time, in whole seconds, is *before* it, so
            // it gets the target rounded up to the second, or a backup that ended
            // earlier in the target's second would not count. What it writes into
            // postgresql.auto.conf is dropped by Patroni, which writes the exact
            // target below: PostgreSQL stops at the first commit after it.
            let selection = match t.timestamp_subsec_nanos() {
                0 => *t,
                ns => *t + chrono::Duration::nanoseconds(1_000_000_000 - i64::from(ns)),
            };
            args.extend([
                "--type=time".into(),
                format!("--target={}", target_time(&selection)),
                "--target-action=promote".into(),
            ]);
            recovery.push(("recovery_target_time".into(), target_time(t)));
            recovery.push(("recovery_target_action".into(), "promote".into()));
        }
        None => args.push("--type=default".into()),
    }
    args.push("restore".into());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    // pgBackRest refuses a missing data directory; Patroni does not create it.
    let script =
        format!("mkdir -p -m 0700 {} && exec {}", quote(&l.data_dir), pgbackrest(l, &r.from.stanza, &arg_refs));
    Ok(Bootstrap { method: "pgbackrest", command: join(&["/bin/sh", "-c", &script]), recovery_conf: recovery })
}

// ---- `pgbackrest info --output=json` ----

#[derive(Debug, Deserialize)]
struct RawStanza {
    name: String,
    #[serde(default)]
    backup: Vec<RawBackup>,
    #[serde(default)]
    archive: Vec<RawArchive>,
    status: RawStatus,
}

#[derive(Debug, Deserialize)]
struct RawStatus {
    code: i64,
    message: String,
}

#[derive(Debug, Deserialize)]
struct RawBackup {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    info: RawSizes,
    timestamp: RawSpan<i64>,
    #[serde(default)]
    archive: Option<RawSpan<Option<String>>>,
}

#[derive(Debug, Deserialize)]
struct RawSizes {
    size: i64,
    repository: RawRepoSizes,
}

#[derive(Debug, Deserialize)]
struct RawRepoSizes {
    delta: i64,
}

#[derive(Debug, Deserialize)]
struct RawSpan<T> {
    start: T,
    stop: T,
}

#[derive(Debug, Deserialize)]
struct RawArchive {
    id: String,
    #[serde(default)]
    max: Option<String>,
}

/// One stanza's backups (oldest first) and archive, from `info --output=json`.
#[derive(Debug)]
pub struct StanzaInfo {
    pub backups: Vec<BackupInfo>,
    /// (archive id `15-1`, newest segment), of the newest archive that has WAL.
    pub newest_wal: Option<(String, String)>,
}

fn epoch(secs: i64) -> Result<DateTime<Utc>, ManagerError> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .ok_or_else(|| ManagerError::Transient(format!("pgbackrest info: timestamp {secs} is out of range")))
}

/// Parses `pgbackrest --stanza=X info --output=json`. A stanza that was never
/// created (or has no backup yet) has none; any other status is an error.
pub fn parse_info(json: &str, stanza: &str) -> Result<StanzaInfo, ManagerError> {
    let all: Vec<RawStanza> = serde_json::from_str(json)
        .map_err(|e| ManagerError::Transient(format!("pgbackrest info output is not what Herd expects: {e}")))?;
    let Some(s) = all.into_iter().find(|s| s.name == stanza) else {
        return Ok(StanzaInfo { backups: vec![], newest_wal: None });
    };
    // 0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data.
    if !matches!(s.status.code, 0..=3) {
        return Err(ManagerError::Transient(format!(
            "stanza {stanza}: {} (status {})",
            s.status.message, s.status.code
        )));
    }
    let mut backups = Vec::new();
    for b in s.backup {
        let kind = match b.kind.as_str() {
            "full" => BackupType::Full,
            "diff" => BackupType::Diff,
            "incr" => BackupType::Incr,
            other => return Err(ManagerError::Transient(format!("backup {}: unknown type {other:?}", b.label))),
        };
        let (wal_start, wal_stop) =
            b.archive.map(|a| (a.start.unwrap_or_default(), a.stop.unwrap_or_default())).unwrap_or_default();
        backups.push(BackupInfo {
            label: b.label,
            kind,
            size_bytes: b.info.size,
            repo_size_bytes: b.info.repository.delta,
            started_at: epoch(b.timestamp.start)?,
            finished_at: epoch(b.timestamp.stop)?,
            wal_start,
            wal_stop,
        });
    }
    backups.sort_by(|a, b| (a.finished_at, &a.label).cmp(&(b.finished_at, &b.label)));
    let newest_wal = s.archive.into_iter().filter_map(|a| a.max.map(|m| (a.id, m))).max_by(|a, b| a.1.cmp(&b.1));
    Ok(StanzaInfo { backups, newest_wal })
}

/// Whether the first `info --output=json` document of `stdout` shows `stanza` never
/// created (pgBackRest status 1, missing stanza path, or 3, missing stanza data).
fn stanza_missing(stdout: &str, stanza: &str) -> bool {
    let Some(Ok(first)) = serde_json::Deserializer::from_str(stdout).into_iter::<Vec<RawStanza>>().next() else {
        return false;
    };
    first.iter().any(|s| s.name == stanza && matches!(s.status.code, 1 | 3))
}

/// The backup that the second of two `info --output=json` documents (before and
/// after a backup, concatenated) lists and the first does not.
fn new_backup(stdout: &str, stanza: &str) -> Result<Option<BackupInfo>, ManagerError> {
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| ManagerError::Transient(format!("pgbackrest info output is not what Herd expects: {e}")))?;
    let [before, after] = &docs[..] else {
        return Err(ManagerError::Transient(format!("expected two pgbackrest info documents, got {}", docs.len())));
    };
    let before = parse_info(&before.to_string(), stanza)?.backups;
    let after = parse_info(&after.to_string(), stanza)?.backups;
    Ok(after.into_iter().rev().find(|b| !before.iter().any(|o| o.label == b.label)))
}

/// The newest commit (or abort) timestamp in `pg_waldump` output (run with TZ=UTC).
pub fn last_commit(waldump: &str) -> Option<DateTime<Utc>> {
    waldump
        .lines()
        .filter_map(|line| {
            let desc = line.split("desc: ").nth(1)?;
            let rest = desc.strip_prefix("COMMIT ").or_else(|| desc.strip_prefix("ABORT "))?;
            // `2026-11-22 12:00:00.123456 UTC` then, maybe, `; inval msgs: …`.
            let stamp = rest.get(..rest.find(" UTC")?)?;
            NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f").ok().map(|t| t.and_utc())
        })
        .max()
}

// ---- running pgbackrest ----

/// Runs pgbackrest commands as the node's PostgreSQL user.
fn on_node(l: &Layout, stanza: &str, commands: &[&[&str]]) -> String {
    let pg = format!("{} env HOME={}", as_user(l.pg_user()), quote(&l.pg_home));
    let cmds: Vec<String> = commands.iter().map(|args| format!("{pg} {}", pgbackrest(l, stanza, args))).collect();
    // That user may not read the login user's home, the session's directory.
    format!("cd / && {}", cmds.join(" && "))
}

pub(super) fn own_config(cluster: &ClusterSpec) -> Result<&BackupConfig, ManagerError> {
    let config = cluster.backup.as_ref().ok_or_else(|| {
        ManagerError::permanent(
            FaultCode::BackupsNotConfigured,
            format!("cluster {} has no backup configuration", cluster.name),
        )
    })?;
    check_config(config)?;
    Ok(config)
}

/// The environment variable pgBackRest reads for option `name`.
fn env_name(name: &str) -> String {
    format!("PGBACKREST_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// A private scratch directory on the control-plane host (lock path, fetched WAL),
/// owned by the user pgbackrest runs as; removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(owner: Option<(u32, u32)>) -> Result<Self, ManagerError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("herd-pgbackrest-{}", uuid::Uuid::new_v4().simple()));
        let fail = |e: std::io::Error| ManagerError::Transient(format!("scratch directory {}: {e}", dir.display()));
        std::fs::create_dir(&dir).map_err(fail)?;
        let scratch = Self(dir.clone());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(fail)?;
        }
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Who runs pgbackrest locally: for a posix repository, as root, the owner of the
/// stanza's directory (files pgbackrest writes must stay its nodes' user's), else of
/// the repository (stanzas from before each had its own).
fn local_user(config: &BackupConfig) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let BackupRepo::Posix { path } = &config.repo else { return None };
    let me = std::fs::metadata("/proc/self").ok()?.uid();
    let [_, backup_dir] = crate::repo::stanza_dirs(path, &config.stanza);
    let meta = std::fs::metadata(backup_dir).or_else(|_| std::fs::metadata(path)).ok()?;
    (me == 0 && meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

/// pgbackrest on this host, for one stanza; options from the environment.
async fn run_local(
    config: &BackupConfig,
    args: &[&str],
    scratch: &Scratch,
) -> Result<std::process::Output, ManagerError> {
    let opts = repo_options(config)?;
    let mut cmd = tokio::process::Command::new("pgbackrest");
    cmd.arg("--no-config")
        .arg(format!("--stanza={}", config.stanza))
        .args(["--log-level-console=off", "--log-level-stderr=warn", "--log-level-file=off"])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("TZ", "UTC")
        // In the environment: as an argument it is refused by commands without locks.
        .env("PGBACKREST_LOCK_PATH", scratch.0.join("lock"))
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in opts {
        cmd.env(env_name(name), value);
    }
    if let Some((uid, gid)) = local_user(config) {
        cmd.uid(uid).gid(gid);
    }
    let out = tokio::time::timeout(LOCAL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| ManagerError::Transient(format!("pgbackrest {args:?} timed out")))?
        .map_err(|e| {
            ManagerError::permanent(FaultCode::BackupToolMissing, format!("cannot run pgbackrest on this host: {e}"))
        })?;
    Ok(out)
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

async fn local_info(config: &BackupConfig, scratch: &Scratch) -> Result<StanzaInfo, ManagerError> {
    let out = run_local(config, &["info", "--output=json"], scratch).await?;
    if !out.status.success() {
        return Err(ManagerError::Transient(format!("pgbackrest info failed: {}", tail(&out.stderr))));
    }
    parse_info(&String::from_utf8_lossy(&out.stdout), &config.stanza)
}

/// The last commit time in the newest archived WAL: fetched with `repo-get`,
/// decompressed, read with `pg_waldump`. None when any part is unavailable.
async fn newest_commit(config: &BackupConfig, scratch: &Scratch, archive_id: &str, max: &str) -> Option<DateTime<Utc>> {
    let major = archive_id.split('-').next()?;
    let waldump = format!("/usr/lib/postgresql/{major}/bin/pg_waldump");
    if max.len() != 24 || !Path::new(&waldump).exists() {
        return None;
    }
    let dir = format!("archive/{}/{archive_id}/{}", config.stanza, &max[..16]);
    let out = run_local(config, &["repo-ls", "--output=json", &dir], scratch).await.ok()?;
    let listing: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    // `<segment>-<sha1>.<ext>`; history and .partial files are not segments.
    let mut files: Vec<&String> = listing
        .keys()
        .filter(|n| n.len() > 25 && n.as_bytes()[24] == b'-' && n[..24].bytes().all(|b| b.is_ascii_hexdigit()))
        .filter(|n| n[..24] <= *max && !n.contains(".partial"))
        .collect();
    files.sort();
    for name in files.into_iter().rev().take(WINDOW_SEGMENTS) {
        let out = run_local(config, &["repo-get", &format!("{dir}/{name}")], scratch).await.ok()?;
        if !out.status.success() {
            return None;
        }
        let segment = scratch.0.join(&name[..24]);
        let raw = if name.ends_with(".gz") {
            let packed = scratch.0.join(format!("{}.gz", &name[..24]));
            std::fs::write(&packed, &out.stdout).ok()?;
            let ok = tokio::process::Command::new("gzip").arg("-df").arg(&packed).status().await.ok()?.success();
            if !ok {
                return None;
            }
            std::fs::read(&segment).ok()?
        } else if name.contains('.') {
            // Another compression type; not worth a dependency.
            return None;
        } else {
            out.stdout
        };
        std::fs::write(&segment, &raw).ok()?;
        // pg_waldump ends with an error at the end of valid WAL; its output counts.
        let dump = tokio::process::Command::new(&waldump).arg(&segment).env("TZ", "UTC").output().await.ok()?;
        let _ = std::fs::remove_file(&segment);
        if let Some(t) = last_commit(&String::from_utf8_lossy(&dump.stdout)) {
            return Some(t);
        }
    }
    None
}

impl PostgresManager {
    /// `expire --set` removes a backup set but none of the archived WAL: what only
    /// expired backups needed goes here. WAL retention counted in full backups, as
    /// many as remain, keeps everything from the oldest remaining full backup on (each
    /// remaining backup stays restorable to any later point), and never expires a
    /// backup (`repo1-retention-full` stays at its maximum).
    async fn expire_archive(&self, config: &BackupConfig, scratch: &Scratch) -> Result<(), ManagerError> {
        let fulls = local_info(config, scratch).await?.backups.iter().filter(|b| b.kind == BackupType::Full).count();
        if fulls == 0 {
            return Ok(());
        }
        let keep = format!("--repo1-retention-archive={fulls}");
        let out = run_local(config, &["expire", "--repo1-retention-archive-type=full", &keep], scratch).await?;
        if !out.status.success() {
            return Err(ManagerError::Transient(format!(
                "expiring archived WAL older than the oldest full backup failed: {}",
                tail(&out.stderr)
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Backups for PostgresManager {
    async fn init_backups(&self, cluster: &ClusterSpec) -> Result<(), ManagerError> {
        let config = own_config(cluster)?.clone();
        let node = self.leader_node(cluster).await?;
        let l = Layout::new(cluster, &node)?;
        // stanza-create accepts an existing stanza of the same database; check
        // switches WAL and waits until that segment is in the repository.
        let cmd = on_node(&l, &config.stanza, &[&["stanza-create"], &["check"]]);
        let out = with_session(&node.ssh, move |s| s.exec_timeout(&cmd, None, INIT_TIMEOUT)).await?;
        if !out.success() {
            return Err(ManagerError::Transient(format!(
                "initialising backups of {} (stanza {}) on {} failed: {}",
                cluster.name,
                config.stanza,
                node.name,
                out.error_tail()
            )));
        }
        tracing::info!(cluster = %cluster.name, stanza = %config.stanza, "backups initialised, WAL archiving works");
        Ok(())
    }

    async fn backup(&self, cluster: &ClusterSpec, kind: BackupType) -> Result<BackupInfo, ManagerError> {
        let config = own_config(cluster)?.clone();
        let node = self.leader_node(cluster).await?;
        let l = Layout::new(cluster, &node)?;
        let kind_arg = match kind {
            BackupType::Full => "--type=full",
            BackupType::Diff => "--type=diff",
            BackupType::Incr => "--type=incr",
        };
        // info before and after, in the same session: the new backup is the one
        // only the second lists (no clock comparison between hosts).
        let info = ["info", "--output=json"];
        let cmd = on_node(&l, &config.stanza, &[&info, &["backup", kind_arg], &info]);
        let run = || {
            let cmd = cmd.clone();
            with_session(&node.ssh, move |s| s.exec_timeout(&cmd, None, BACKUP_TIMEOUT))
        };
        let mut out = run().await?;
        // No `stanza-create` + `check` before every backup (~2 s): the build made the
        // stanza, and pgBackRest refuses to back up into a missing one (and checks
        // archive_mode/archive_command at its start and that its WAL reached the
        // archive at its end). When the first `info` shows the stanza missing, it is
        // created (and archiving checked) and the backup runs again.
        if !out.success() && stanza_missing(&out.stdout, &config.stanza) {
            tracing::info!(cluster = %cluster.name, stanza = %config.stanza, "stanza missing; creating it before the backup");
            self.init_backups(cluster).await?;
            out = run().await?;
        }
        if !out.success() {
            return Err(ManagerError::Transient(format!(
                "backup of {} on {} failed: {}",
                cluster.name,
                node.name,
                out.error_tail()
            )));
        }
        let backup = new_backup(&out.stdout, &config.stanza)?.ok_or_else(|| {
            ManagerError::Transient(format!("backup of {} finished but the repository does not list it", cluster.name))
        })?;
        tracing::info!(cluster = %cluster.name, label = %backup.label, kind = ?backup.kind, "backup taken");
        Ok(backup)
    }

    async fn list_backups(&self, config: &BackupConfig) -> Result<Vec<BackupInfo>, ManagerError> {
        check_config(config)?;
        let scratch = Scratch::new(local_user(config))?;
        Ok(local_info(config, &scratch).await?.backups)
    }

    async fn expire_backup(&self, config: &BackupConfig, label: &str) -> Result<(), ManagerError> {
        check_config(config)?;
        if !valid_label(label) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidBackupLabel,
                format!("{label:?} is not a backup label"),
            ));
        }
        let scratch = Scratch::new(local_user(config))?;
        // Already gone is done (a retried call converges).
        if !local_info(config, &scratch).await?.backups.iter().any(|b| b.label == label) {
            return Ok(());
        }
        let set = format!("--set={label}");
        let out = run_local(config, &["expire", &set], &scratch).await?;
        if !out.status.success() {
            return Err(ManagerError::Transient(format!("expiring backup {label} failed: {}", tail(&out.stderr))));
        }
        tracing::info!(stanza = %config.stanza, label, "backup expired");
        self.expire_archive(config, &scratch).await
    }

    async fn recovery_window(&self, config: &BackupConfig) -> Result<Option<RecoveryWindow>, ManagerError> {
        check_config(config)?;
        let scratch = Scratch::new(local_user(config))?;
        let info = local_info(config, &scratch).await?;
        let (Some(oldest), Some(newest)) = (info.backups.first(), info.backups.last()) else {
            return Ok(None);
        };
        // pgBackRest's stop times are whole seconds (rounded down); a target inside
        // that second may still precede the end of the backup.
        let earliest = oldest.finished_at;
        let mut latest = newest.finished_at;
        if let Some((id, max)) = &info.newest_wal {
            match newest_commit(config, &scratch, id, max).await {
                Some(t) => latest = latest.max(t),
                None => tracing::debug!(stanza = %config.stanza, "no commit found in the newest archived WAL"),
            }
        }
        Ok(Some(RecoveryWindow { earliest, latest: latest.max(earliest) }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::postgresql::layout::tests::spec;
    use secrecy::SecretString;

    /// `pgbackrest info --output=json` of a stanza with a full and an incremental
    /// backup, captured from pgBackRest 2.45 (Debian bookworm).
    const INFO: &str = include_str!("testdata/pgbackrest-info.json");

    pub(crate) fn posix(path: &str, stanza: &str) -> BackupConfig {
        BackupConfig { repo: BackupRepo::Posix { path: path.into() }, stanza: stanza.into(), cipher: None }
    }

    pub(crate) fn s3(ca_file: Option<&str>) -> BackupConfig {
        BackupConfig {
            repo: BackupRepo::S3 {
                bucket: "herd-backups".into(),
                endpoint: "127.0.0.1:9443".into(),
                region: "us-east-1".into(),
                path: "/prod/".into(),
                key_id: "AKIDEXAMPLE".into(),
                secret: SecretString::from("s3cr3t/key+value"),
                path_style: true,
                verify_tls: ca_file.is_some(),
                ca_file: ca_file.map(str::to_owned),
            },
            stanza: "herd-source".into(),
            cipher: Some(SecretString::from("the-source-stanza-passphrase")),
        }
    }

    #[test]
    fn info_json_is_parsed() {
        let info = parse_info(INFO, "cap").unwrap();
        let [full, incr] = &info.backups[..] else { panic!("{info:?}") };
        assert_eq!(full.label, "20261122-120713F");
        assert_eq!(full.kind, BackupType::Full);
        assert_eq!((full.size_bytes, full.repo_size_bytes), (23213588, 3062515));
        assert_eq!(full.started_at.timestamp(), 1795349233);
        assert_eq!(full.finished_at.timestamp(), 1795349236);
        assert_eq!(
            (full.wal_start.as_str(), full.wal_stop.as_str()),
            ("000000010000000000000002", "000000010000000000000002")
        );
        assert_eq!(incr.label, "20261122-120713F_20261122-120717I");
        assert_eq!(incr.kind, BackupType::Incr);
        assert_eq!(incr.repo_size_bytes, 208328, "what the backup added, not the total");
        assert!(incr.repo_size_bytes < full.repo_size_bytes);
        assert_eq!(info.newest_wal, Some(("15-1".into(), "000000010000000000000004".into())));
        // Another stanza's name: nothing.
        assert!(parse_info(INFO, "other").unwrap().backups.is_empty());
    }

    #[test]
    fn the_new_backup_is_the_one_listed_only_after() {
        let v: serde_json::Value = serde_json::from_str(INFO).unwrap();
        let mut before = v.clone();
        before[0]["backup"].as_array_mut().unwrap().pop();
        let out = format!("{before}{}\n", serde_json::to_string_pretty(&v).unwrap());
        assert_eq!(new_backup(&out, "cap").unwrap().unwrap().label, "20261122-120713F_20261122-120717I");
        assert_eq!(new_backup(&format!("{v}{v}"), "cap").unwrap(), None);
        assert!(new_backup(&v.to_string(), "cap").is_err());
    }

    #[test]
    fn missing_stanza_is_empty_and_errors_are_errors() {
        let missing = r#"[{"archive":[],"backup":[],"cipher":"none","db":[],"name":"s1","repo":[{"cipher":"none","key":1,"status":{"code":1,"message":"missing stanza path"}}],"status":{"code":1,"lock":{"backup":{"held":false}},"message":"missing stanza path"}}]"#;
        let info = parse_info(missing, "s1").unwrap();
        assert!(info.backups.is_empty() && info.newest_wal.is_none());
        let broken = missing.replace(r#""code":1,"lock""#, r#""code":99,"lock""#);
        assert!(matches!(parse_info(&broken, "s1"), Err(ManagerError::Transient(_))));
        assert!(parse_info("not json", "s1").is_err());
    }

    #[test]
    fn a_failed_backup_after_a_missing_stanza_creates_it() {
        let missing = r#"[{"archive":[],"backup":[],"name":"s1","status":{"code":1,"message":"missing stanza path"}}]"#;
        assert!(stanza_missing(missing, "s1"));
        assert!(stanza_missing(&missing.replace(r#""code":1"#, r#""code":3"#), "s1"));
        // No backup yet is a stanza that exists; another stanza's status does not count.
        assert!(!stanza_missing(&missing.replace(r#""code":1"#, r#""code":2"#), "s1"));
        assert!(!stanza_missing(missing, "s2"));
        // The first document decides (the backup failed before a second one).
        assert!(!stanza_missing(&format!("{INFO}{missing}"), "cap"));
        assert!(!stanza_missing("", "s1") && !stanza_missing("garbage", "s1"));
    }

    #[test]
    fn config_file_has_global_paths_and_one_section_per_stanza() {
        let (mut c, n) = spec("/srv/h/s1", None);
        let l = Layout::new(&c, &n).unwrap();
        assert_eq!(config_file(&c, &n, &l).unwrap(), None, "no backups, no file");
        c.backup = Some(posix("/srv/backups", "herd-own"));
        c.restore = Some(RestoreSource { from: s3(None), set: None, target_time: None, snapshot: None });
        let text = config_file(&c, &n, &l).unwrap().unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let section = |name: &str| -> Vec<&str> {
            let start = lines.iter().position(|l| *l == format!("[{name}]")).unwrap_or_else(|| panic!("{text}"));
            lines[start + 1..].iter().take_while(|l| !l.is_empty()).copied().collect()
        };
        let global = section("global");
        assert!(global.contains(&"lock-path=/srv/h/s1/var/spool/pgbackrest/lock"), "{text}");
        assert!(global.contains(&"log-path=/srv/h/s1/var/log/pgbackrest"), "{text}");
        assert!(global.contains(&"spool-path=/srv/h/s1/var/spool/pgbackrest"), "{text}");
        assert!(global.contains(&"start-fast=y"), "{text}");
        assert!(global.contains(&"process-max=2") && global.contains(&"repo1-bundle=y"), "{text}");
        assert!(!global.iter().any(|l| l.starts_with("compress-")), "archived WAL keeps gzip: {text}");
        assert_eq!(section("global:backup"), ["compress-type=zst", "compress-level=1"], "{text}");
        let own = section("herd-own");
        for want in [
            "repo1-type=posix",
            "repo1-path=/srv/backups",
            "pg1-path=/srv/h/s1/var/lib/postgresql/15/orders",
            "pg1-socket-path=/srv/h/s1/var/run/postgresql",
            "repo1-retention-full=9999999",
        ] {
            assert!(own.contains(&want), "{want} missing in {text}");
        }
        let src = section("herd-source");
        for want in [
            "repo1-type=s3",
            "repo1-path=/prod",
            "repo1-s3-bucket=herd-backups",
            "repo1-s3-endpoint=127.0.0.1",
            "repo1-storage-port=9443",
            "repo1-s3-key=AKIDEXAMPLE",
            "repo1-s3-key-secret=s3cr3t/key+value",
            "repo1-s3-uri-style=path",
            "repo1-storage-verify-tls=n",
            "pg1-path=/srv/h/s1/var/lib/postgresql/15/orders",
            "repo1-cipher-type=aes-256-cbc",
            "repo1-cipher-pass=the-source-stanza-passphrase",
        ] {
            assert!(src.contains(&want), "{want} missing in {text}");
        }
        // A stanza created before backups were encrypted stays readable as it is.
        assert!(!own.iter().any(|l| l.starts_with("repo1-cipher")), "{text}");

        // The source's stanza is never the cluster's own.
        c.backup = Some(posix("/srv/backups", "herd-source"));
        assert_eq!(config_file(&c, &n, &l).unwrap_err().code(), "invalid_restore");
        assert!(!src.iter().any(|l| l.starts_with("repo1-storage-ca-file")), "{text}");
        // A private CA: verification on, against that file.
        c.backup = Some(s3(Some("/etc/herd/s3-ca.pem")));
        c.restore = None;
        let text = config_file(&c, &n, &l).unwrap().unwrap();
        assert!(text.lines().any(|l| l == "repo1-storage-ca-file=/etc/herd/s3-ca.pem"), "{text}");
        assert!(!text.contains("verify-tls"), "{text}");
        c.backup = Some(s3(Some("s3-ca.pem")));
        assert_eq!(config_file(&c, &n, &l).unwrap_err().code(), "invalid_backup_config");
        // No line breaks into the file, no odd stanza names.
        c.backup = Some(posix("/srv/b\n[global]\nlock-path=/", "herd-own"));
        assert_eq!(config_file(&c, &n, &l).unwrap_err().code(), "invalid_backup_config");
        c.backup = Some(posix("relative", "herd-own"));
        assert_eq!(config_file(&c, &n, &l).unwrap_err().code(), "invalid_backup_config");
        c.backup = Some(posix("/srv/b", "own]\n[x"));
        assert_eq!(config_file(&c, &n, &l).unwrap_err().code(), "invalid_backup_config");
    }

    #[test]
    fn archive_and_restore_commands_quote_and_escape_percent() {
        let (c, n) = spec("/srv/it's 100%", None);
        let l = Layout::new(&c, &n).unwrap();
        let b = posix("/srv/backups", "herd-own");
        assert_eq!(
            archive_command(&l, &b),
            "pgbackrest '--config=/srv/it'\\''s 100%%/etc/pgbackrest/15-orders.conf' --stanza=herd-own archive-push %p"
        );
        assert_eq!(
            restore_command(&l, &b),
            "pgbackrest '--config=/srv/it'\\''s 100%%/etc/pgbackrest/15-orders.conf' --stanza=herd-own archive-get %f \"%p\""
        );
    }

    #[test]
    fn restore_bootstrap_selects_set_and_target() {
        let (c, n) = spec("/", None);
        let l = Layout::new(&c, &n).unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 1).unwrap() + chrono::Duration::microseconds(250);
        let r = RestoreSource {
            from: posix("/b", "herd-src"),
            set: Some("20261122-120000F".into()),
            target_time: Some(t),
            snapshot: None,
        };
        let b = bootstrap(&l, &r).unwrap();
        assert_eq!(
            b.command,
            "/bin/sh -c 'mkdir -p -m 0700 /var/lib/postgresql/15/orders && exec pgbackrest \
             --config=/etc/pgbackrest/15-orders.conf --stanza=herd-src --delta --set=20261122-120000F --type=time \
             '\\''--target=2026-11-22 12:00:02.000000+00'\\'' --target-action=promote restore'"
        );
        let conf: std::collections::BTreeMap<_, _> = b.recovery_conf.into_iter().collect();
        assert_eq!(conf["recovery_target_time"], "2026-11-22 12:00:01.000250+00");
        assert_eq!(conf["recovery_target_action"], "promote");
        assert_eq!(conf["recovery_target_timeline"], "latest");
        assert!(conf["restore_command"].contains("--stanza=herd-src archive-get"), "{conf:?}");

        let latest = bootstrap(&l, &RestoreSource { set: None, target_time: None, ..r.clone() }).unwrap();
        assert!(latest.command.ends_with("--stanza=herd-src --delta --type=default restore'"), "{}", latest.command);
        assert!(
            !latest.recovery_conf.iter().any(|(k, _)| k == "recovery_target_time" || k == "recovery_target_action")
        );
        let bad = RestoreSource { set: Some("x; rm -rf /".into()), ..r };
        assert_eq!(bootstrap(&l, &bad).unwrap_err().code(), "invalid_backup_label");
    }

    #[test]
    fn labels() {
        assert!(valid_label("20261122-120000F"));
        assert!(valid_label("20261122-120000F_20261122-130000I"));
        assert!(valid_label("20261122-120000F_20261122-130000D"));
        for bad in [
            "",
            "20261122-120000X",
            "20261122-120000F_20261122-130000F",
            "2026112-1200000F",
            "../x",
            "20261122-120000F; rm",
        ] {
            assert!(!valid_label(bad), "{bad}");
        }
    }

    #[test]
    fn commit_times_from_pg_waldump() {
        let dump = "rmgr: Heap        len (rec/tot):     59/    59, tx:        740, lsn: 0/05000028, prev 0/04000108, desc: INSERT off 3 flags 0x00, blkref #0: rel 1663/5/16384 blk 0\n\
            rmgr: Transaction len (rec/tot):     34/    34, tx:        740, lsn: 0/05000068, prev 0/05000028, desc: COMMIT 2026-11-22 12:00:01.250000 UTC\n\
            rmgr: Transaction len (rec/tot):    130/   130, tx:        741, lsn: 0/05000090, prev 0/05000068, desc: COMMIT 2026-11-22 12:00:02.500000 UTC; inval msgs: catcache 80 relcache 16384\n\
            rmgr: Transaction len (rec/tot):     34/    34, tx:        742, lsn: 0/05000118, prev 0/05000090, desc: ABORT 2026-11-22 12:00:02.000000 UTC\n\
            rmgr: XLOG        len (rec/tot):     24/    24, tx:          0, lsn: 0/05000140, prev 0/05000118, desc: SWITCH \n";
        let t = last_commit(dump).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 2).unwrap() + chrono::Duration::milliseconds(500));
        assert_eq!(last_commit("rmgr: XLOG desc: CHECKPOINT_ONLINE redo 0/2000028"), None);
    }
}
