//! Volume snapshots of a running cluster, and new clusters started from them.
//!
//! Taking one: [`PostgresManager::begin_snapshot_impl`] opens a database session of
//! its own on the primary (psql as postgres over the node's socket, through an SSH
//! session held by a dedicated thread) and runs `pg_backup_start`; the caller
//! snapshots the node's data volume; [`HeldBackup::finish`] runs `pg_backup_stop`,
//! which returns once the WAL the copy needs is archived, with the backup label.
//! Dropping the held backup closes the session, and PostgreSQL aborts the backup.
//!
//! Restoring (`cluster.restore.snapshot`): the member whose volume was created from
//! the snapshot finds the source's data directory on it. `prepare` moves it aside to
//! a staging directory before Patroni ever runs (Patroni would otherwise start a copy
//! taken in backup mode without its backup_label as an existing cluster); `configure`
//! writes the label; Patroni's custom bootstrap `snapshot` moves the staged directory
//! into place with the label and recovers with WAL from the source's stanza to the
//! end of the backup, then promotes.

use super::backup::Bootstrap;
use super::layout::{Layout, is_dns_label};
use super::{PostgresManager, backup, exit, sql};
use crate::shell::{join, quote};
use crate::ssh::{CONNECT_TIMEOUT, Interactive, KEEPALIVE_SECS, Session};
use crate::{ClusterSpec, HeldBackup, ManagerError, NodeSpec, RestoreSource, SnapshotLabel, SnapshotSource, Snapshots};
use async_trait::async_trait;
use herd_core::faults::FaultCode;
use std::sync::mpsc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Longest snapshot label (`herd-snap-<32 hex>` is 42).
pub const LABEL_MAX: usize = 64;
/// `pg_backup_start` waits for a checkpoint (an immediate one, but a busy server may
/// take a while to write it).
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// `pg_backup_stop` waits until the WAL the backup needs is archived.
const STOP_TIMEOUT: Duration = Duration::from_secs(600);
/// Beyond a statement timeout, for the answer to arrive over SSH.
const SLACK: Duration = Duration::from_secs(30);
/// How long an abandoned session may take to end before its connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The held session's `application_name`: visible in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "herd-snapshot";
/// The biggest backup label or tablespace map Herd writes to a node.
const LABEL_FILE_MAX: usize = 1 << 20;

/// A snapshot label names the backup in PostgreSQL (and its log): `[a-z0-9-]`, at
/// most [`LABEL_MAX`] characters.
pub fn check_label(label: &str) -> Result<(), ManagerError> {
    let ok = !label.is_empty()
        && label.len() <= LABEL_MAX
        && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ManagerError::permanent(
            FaultCode::InvalidSnapshotLabel,
            format!("snapshot label {label:?} is not 1 to {LABEL_MAX} characters of [a-z0-9-]"),
        ))
    }
}

/// `pg_backup_start`/`pg_backup_stop` (and `idle_session_timeout`) exist since
/// PostgreSQL 15.
pub fn check_version(version: &str) -> Result<(), ManagerError> {
    match version.trim().parse::<u32>() {
        Ok(v) if v >= 15 => Ok(()),
        _ => Err(ManagerError::permanent(
            FaultCode::SnapshotsUnsupported,
            format!("snapshots need PostgreSQL 15 or later (pg_backup_start), not {version:?}"),
        )),
    }
}

/// The session's settings and the primary check. The session must outlive any
/// timeout a user may have configured, and identify itself.
fn open_sql() -> String {
    format!(
        "SET application_name = {};\n\
         SET idle_session_timeout = 0;\n\
         SET idle_in_transaction_session_timeout = 0;\n\
         SET statement_timeout = '{}s';\n\
         SELECT pg_catalog.pg_is_in_recovery();\n",
        // A constant, but quoted like any value.
        sql::literal(APPLICATION_NAME).unwrap_or_default(),
        START_TIMEOUT.as_secs()
    )
}

/// Starts the backup (fast: an immediate checkpoint); answers the start LSN.
pub fn start_sql(label: &str) -> Result<String, ManagerError> {
    check_label(label)?;
    Ok(format!("SELECT pg_catalog.pg_backup_start({}, true);\n", sql::literal(label)?))
}

/// Ends the backup, waiting until its WAL is archived; answers one line: the stop
/// LSN, then the backup label and the tablespace map hex-encoded (they span lines).
pub fn stop_sql() -> String {
    format!(
        "SET statement_timeout = '{}s';\n\
         SELECT lsn, pg_catalog.encode(pg_catalog.convert_to(labelfile, 'UTF8'), 'hex'), \
         pg_catalog.encode(pg_catalog.convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') \
         FROM pg_catalog.pg_backup_stop(true);\n",
        STOP_TIMEOUT.as_secs()
    )
}

/// A WAL position as PostgreSQL prints it (`0/3000028`).
pub fn valid_lsn(s: &str) -> bool {
    let hex = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
    matches!(s.split_once('/'), Some((hi, lo)) if hex(hi) && hex(lo))
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    String::from_utf8(bytes?).ok()
}

/// Parses [`stop_sql`]'s answer into (stop LSN, backup label, tablespace map).
pub fn parse_stop(line: &str) -> Result<(String, String, String), ManagerError> {
    let bad = || ManagerError::Transient(format!("pg_backup_stop answered something unexpected: {line:?}"));
    let mut parts = line.trim_end_matches('\r').split('|');
    let (Some(lsn), Some(label), Some(map), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (label, map) = (unhex(label).ok_or_else(bad)?, unhex(map).ok_or_else(bad)?);
    if !valid_lsn(lsn) || !label.starts_with("START WAL LOCATION: ") {
        return Err(bad());
    }
    Ok((lsn.to_owned(), label, map))
}

/// The held backup's end of the conversation: psql in its own SSH session (kept
/// alive by the [`Interactive`]), and the node's name for messages.
struct Conversation {
    psql: Interactive,
    node: String,
}

impl Conversation {
    /// Sends `sql` and reads one line of answer. psql stopping instead (an error,
    /// ON_ERROR_STOP) is reported with its stderr.
    fn ask(&mut self, sql: &str, what: &str, timeout: Duration) -> Result<String, ManagerError> {
        self.psql.write(sql.as_bytes())?;
        match self.psql.read_line(timeout) {
            Ok(Some(line)) => Ok(line),
            Ok(None) => {
                let detail = match self.psql.finish(CLOSE_TIMEOUT) {
                    Ok(out) => out.error_tail(),
                    Err(e) => e.to_string(),
                };
                Err(ManagerError::Transient(format!("{what} on {} failed: {detail}", self.node)))
            }
            Err(e) => Err(ManagerError::Transient(format!("{what} on {}: no answer: {e}", self.node))),
        }
    }

    /// Connects, opens the session and starts the backup; returns the start LSN.
    fn start(target: &crate::SshTarget, psql: &str, start: &str, node: &str) -> Result<(Self, String), ManagerError> {
        let session = Session::connect(target, CONNECT_TIMEOUT)?;
        let mut c = Self { psql: session.start(psql)?, node: node.to_owned() };
        let result = (|| {
            let in_recovery = c.ask(&open_sql(), "opening the backup session", SLACK)?;
            if in_recovery != "f" {
                return Err(ManagerError::Transient(format!(
                    "{node} is not the primary (in recovery: {in_recovery:?}); snapshots are taken on the primary"
                )));
            }
            let lsn = c.ask(start, "pg_backup_start", START_TIMEOUT + SLACK)?;
            if !valid_lsn(&lsn) {
                return Err(ManagerError::Transient(format!("pg_backup_start on {node} answered {lsn:?}")));
            }
            Ok(lsn)
        })();
        match result {
            Ok(lsn) => Ok((c, lsn)),
            Err(e) => {
                c.close();
                Err(e)
            }
        }
    }

    fn stop(&mut self, start_lsn: String) -> Result<SnapshotLabel, ManagerError> {
        let line = self.ask(&stop_sql(), "pg_backup_stop", STOP_TIMEOUT + SLACK).map_err(|e| match e {
            ManagerError::Transient(m) if m.contains("statement timeout") => ManagerError::Transient(format!(
                "{m} (the WAL the backup needs was not archived within {}s: is archiving working?)",
                STOP_TIMEOUT.as_secs()
            )),
            other => other,
        })?;
        let (stop_lsn, backup_label, tablespace_map) = parse_stop(&line)?;
        Ok(SnapshotLabel { start_lsn, stop_lsn, backup_label, tablespace_map })
    }

    /// Closes psql's stdin: it exits, its database session ends (aborting a backup
    /// still in progress). Bounded: the connection is dropped after that anyway.
    fn close(&mut self) {
        match self.psql.finish(CLOSE_TIMEOUT) {
            Ok(out) if out.success() => {}
            Ok(out) => tracing::debug!(node = %self.node, error = %out.error_tail(), "backup session ended"),
            Err(e) => tracing::debug!(node = %self.node, error = %e, "backup session dropped"),
        }
    }
}

type FinishReply = oneshot::Sender<Result<SnapshotLabel, ManagerError>>;

/// The thread holding one backup session: starts the backup, then waits for
/// `finish` (sending SSH keepalives meanwhile) or for the [`Held`] to be dropped.
fn hold(
    target: crate::SshTarget,
    psql: String,
    start: String,
    node: String,
    ready: oneshot::Sender<Result<String, ManagerError>>,
    requests: mpsc::Receiver<FinishReply>,
) {
    let (mut conv, start_lsn) = match Conversation::start(&target, &psql, &start, &node) {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(start_lsn.clone())).is_err() {
        // begin_snapshot was abandoned: nobody will finish this backup.
        conv.close();
        return;
    }
    loop {
        match requests.recv_timeout(Duration::from_secs(KEEPALIVE_SECS.into())) {
            Ok(reply) => {
                let result = conv.stop(start_lsn);
                if result.is_ok() {
                    tracing::info!(node = %node, "online backup for the snapshot ended");
                }
                conv.close();
                let _ = reply.send(result);
                return;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = conv.psql.keepalive() {
                    tracing::warn!(node = %node, error = %e, "backup session keepalive failed");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                tracing::info!(node = %node, "snapshot abandoned: ending the backup session");
                conv.close();
                return;
            }
        }
    }
}

/// An online backup held open by [`hold`]'s thread. Dropping it drops the request
/// channel, which ends the thread and the session.
struct Held {
    requests: mpsc::Sender<FinishReply>,
    node: String,
}

#[async_trait]
impl HeldBackup for Held {
    async fn finish(self: Box<Self>) -> Result<SnapshotLabel, ManagerError> {
        let gone =
            || ManagerError::Transient(format!("the backup session on {} ended before pg_backup_stop", self.node));
        let (reply, answer) = oneshot::channel();
        self.requests.send(reply).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl PostgresManager {}

// ---- restoring ----

/// The snapshot `node` starts from, when its volume was created from one.
pub fn source_for<'a>(cluster: &'a ClusterSpec, node: &NodeSpec) -> Option<&'a SnapshotSource> {
    let s = cluster.restore.as_ref()?.snapshot.as_ref()?;
    (s.node_id == node.node_id).then_some(s)
}

fn invalid(message: String) -> ManagerError {
    ManagerError::permanent(FaultCode::InvalidRestore, message)
}

/// Checks a restore from a snapshot as a whole.
pub fn check_restore(cluster: &ClusterSpec, r: &RestoreSource, s: &SnapshotSource) -> Result<(), ManagerError> {
    backup::check_config(&r.from)?;
    if r.set.is_some() || r.target_time.is_some() {
        return Err(invalid(
            "a restore from a snapshot recovers to the end of its backup: no backup set or target time".into(),
        ));
    }
    if !is_dns_label(&s.source_name) {
        return Err(invalid(format!("source cluster name {:?} is not a DNS label", s.source_name)));
    }
    if !cluster.members.iter().any(|m| m.node_id == s.node_id) {
        return Err(invalid(format!("the snapshot's node {} is not a member of cluster {}", s.node_id, cluster.name)));
    }
    let l = &s.label;
    if !valid_lsn(&l.start_lsn) || !valid_lsn(&l.stop_lsn) {
        return Err(invalid(format!("snapshot WAL positions {:?}..{:?} are malformed", l.start_lsn, l.stop_lsn)));
    }
    if !l.backup_label.starts_with("START WAL LOCATION: ")
        || l.backup_label.len() > LABEL_FILE_MAX
        || l.backup_label.contains('\0')
    {
        return Err(invalid("the snapshot's backup_label is not one PostgreSQL wrote".into()));
    }
    if l.tablespace_map.len() > LABEL_FILE_MAX || l.tablespace_map.contains('\0') {
        return Err(invalid("the snapshot's tablespace_map is malformed".into()));
    }
    Ok(())
}

/// Run as root by `prepare` on the snapshot's member: moves the source's data
/// directory aside, once (the marker, named after this cluster, records it), and
/// gives it to this node's user (the source's files are its own cluster user's).
pub const MOVE_SCRIPT: &str = r#"set -e
src=$1 staging=$2 marker=$3 no_data=$4 owner=$5
[ -e "$marker" ] && exit 0
if [ ! -e "$staging" ]; then
    if [ ! -d "$src" ]; then
        echo "the volume holds no data directory $src: was it created from the snapshot?" >&2
        exit "$no_data"
    fi
    mv -T -- "$src" "$staging"
fi
chown -R -- "$owner:" "$staging"
: > "$marker"
"#;

/// `prepare`'s command for the snapshot's member.
pub fn move_aside_command(l: &Layout, s: &SnapshotSource) -> String {
    let src = format!("{}/{}", l.data_parent, s.source_name);
    format!(
        "sh -c {} sh {}",
        quote(MOVE_SCRIPT),
        join(&[&src, &l.snapshot_staging, &l.snapshot_marker, &exit::NO_SNAPSHOT_DATA.to_string(), l.pg_user()])
    )
}

/// Patroni's custom bootstrap `snapshot` (run as postgres, by the member that wins
/// the initialize race). Only the member holding the staged snapshot may bootstrap.
/// Everything is prepared inside the staging directory and moved into place last,
/// so a failure before the move can be retried.
pub const BOOTSTRAP_SCRIPT: &str = r#"set -eu
staging=$1 data=$2 label=$3 map=$4
if [ ! -d "$staging" ]; then
    echo "herd: no snapshot staged at $staging: only the member whose volume holds the snapshot bootstraps this cluster" >&2
    exit 1
fi
if [ ! -s "$label" ]; then
    echo "herd: the snapshot's backup label $label is missing" >&2
    exit 1
fi
umask 077
cp -- "$label" "$staging/backup_label"
if [ -s "$map" ]; then cp -- "$map" "$staging/tablespace_map"; else rm -f -- "$staging/tablespace_map"; fi
cd "$staging"
rm -f postmaster.pid postmaster.opts standby.signal recovery.signal backup_label.old tablespace_map.old patroni.dynamic.json
mkdir -p pg_replslot pg_wal/archive_status
find pg_replslot -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
find pg_wal -mindepth 1 -maxdepth 1 ! -name archive_status -exec rm -rf -- {} +
find pg_wal/archive_status -mindepth 1 -delete
cd /
chmod 0700 "$staging"
if [ -e "$data" ]; then
    rmdir -- "$data" 2>/dev/null || { echo "herd: $data exists and is not empty" >&2; exit 1; }
fi
mv -T -- "$staging" "$data"
"#;

/// The custom bootstrap of a cluster restored from a snapshot: the script above,
/// then recovery with WAL from the source's stanza until the backup's end, and
/// promotion.
/// How a restored cluster's first member bootstraps instead of initdb: from the volume
/// snapshot its restore names (checked here), else from a pgBackRest backup.
pub fn restore_bootstrap(cluster: &ClusterSpec, l: &Layout) -> Result<Option<Bootstrap>, ManagerError> {
    let Some(r) = &cluster.restore else { return Ok(None) };
    Ok(Some(match &r.snapshot {
        Some(s) => {
            check_restore(cluster, r, s)?;
            bootstrap(l, r)?
        }
        None => backup::bootstrap(l, r)?,
    }))
}

pub fn bootstrap(l: &Layout, r: &RestoreSource) -> Result<Bootstrap, ManagerError> {
    backup::check_config(&r.from)?;
    let command = join(&[
        "/bin/sh",
        "-c",
        BOOTSTRAP_SCRIPT,
        "herd-snapshot-bootstrap",
        &l.snapshot_staging,
        &l.data_dir,
        &l.snapshot_backup_label,
        &l.snapshot_tablespace_map,
    ]);
    let recovery = [
        ("restore_command", backup::restore_command(l, &r.from)),
        // The end of the backup: where the copy becomes consistent.
        ("recovery_target", "immediate".into()),
        ("recovery_target_action", "promote".into()),
        // The timeline the backup was taken on.
        ("recovery_target_timeline", "current".into()),
    ];
    Ok(Bootstrap {
        method: "snapshot",
        command,
        recovery_conf: recovery.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    })
}

#[async_trait]
impl Snapshots for PostgresManager {
    async fn begin_snapshot(
        &self,
        cluster: &ClusterSpec,
        node: &NodeSpec,
        label: &str,
    ) -> Result<Box<dyn HeldBackup>, ManagerError> {
        // Restoring the copy needs the WAL from the backup's start to its end.
        backup::own_config(cluster)?;
        check_version(&cluster.version)?;
        let start = start_sql(label)?;
        if !cluster.members.iter().any(|m| m.name == node.name) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidNode,
                format!("node {} is not a member of cluster {}", node.name, cluster.name),
            ));
        }
        let l = Layout::new(cluster, node)?;
        let psql = sql::psql_command(&l);
        let (ready, started) = oneshot::channel();
        let (requests, incoming) = mpsc::channel();
        let (target, name) = (node.ssh.clone(), node.name.clone());
        std::thread::Builder::new()
            .name(format!("herd-snapshot-{}", node.name))
            .spawn(move || hold(target, psql, start, name, ready, incoming))
            .map_err(|e| ManagerError::Transient(format!("cannot start the backup session thread: {e}")))?;
        let start_lsn = started
            .await
            .map_err(|_| ManagerError::Transient(format!("the backup session thread for {} died", node.name)))??;
        tracing::info!(cluster = %cluster.name, node = %node.name, label, start_lsn, "online backup started for a snapshot");
        Ok(Box::new(Held { requests, node: node.name.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgresql::backup::tests::posix;
    use crate::postgresql::layout::tests::spec;
    use std::path::Path;
    use std::process::Command;

    pub(crate) fn label() -> SnapshotLabel {
        SnapshotLabel {
            start_lsn: "0/5000028".into(),
            stop_lsn: "0/5000138".into(),
            backup_label: "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n\
                           CHECKPOINT LOCATION: 0/5000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
                           START TIME: 2026-12-01 12:00:00 UTC\nLABEL: herd-snap-1\nSTART TIMELINE: 1\n"
                .into(),
            tablespace_map: String::new(),
        }
    }

    fn restore(c: &ClusterSpec) -> RestoreSource {
        RestoreSource {
            from: posix("/srv/backups", "herd-src"),
            set: None,
            target_time: None,
            snapshot: Some(SnapshotSource { node_id: c.members[0].node_id, source_name: "src".into(), label: label() }),
        }
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn labels_are_checked_and_quoted() {
        for good in ["herd-snap-0192a3b4c5d6e7f8a9b0c1d2e3f4a5b6", "a", &"x".repeat(LABEL_MAX)] {
            check_label(good).unwrap();
        }
        for bad in ["", "Herd", "a b", "x'); DROP TABLE t; --", "snap_1", "é", &"x".repeat(LABEL_MAX + 1)] {
            assert_eq!(check_label(bad).unwrap_err().code(), "invalid_snapshot_label", "{bad:?}");
            assert!(start_sql(bad).is_err(), "{bad:?}");
        }
        assert_eq!(start_sql("herd-snap-1").unwrap(), "SELECT pg_catalog.pg_backup_start('herd-snap-1', true);\n");
        check_version("15").unwrap();
        check_version("17").unwrap();
        for old in ["14", "9", "", "x"] {
            assert_eq!(check_version(old).unwrap_err().code(), "snapshots_unsupported", "{old:?}");
        }
        let open = open_sql();
        assert!(open.contains("SET application_name = 'herd-snapshot';"), "{open}");
        assert!(open.contains("SET idle_session_timeout = 0;"), "{open}");
        assert!(open.trim_end().ends_with("SELECT pg_catalog.pg_is_in_recovery();"), "{open}");
        let stop = stop_sql();
        assert!(stop.starts_with("SET statement_timeout = '600s';\n"), "{stop}");
        assert!(stop.contains("FROM pg_catalog.pg_backup_stop(true);"), "{stop}");
    }

    #[test]
    fn stop_answer_is_decoded_exactly() {
        let l = label();
        let map = "16385 /srv/tbs/it's here\n16386 /srv/é\n";
        let line = format!("0/5000138|{}|{}", hex(&l.backup_label), hex(map));
        let (lsn, backup_label, tablespace_map) = parse_stop(&line).unwrap();
        assert_eq!(
            (lsn.as_str(), backup_label.as_str(), tablespace_map.as_str()),
            ("0/5000138", &l.backup_label[..], map)
        );
        let (_, _, empty) = parse_stop(&format!("0/5000138|{}|", hex(&l.backup_label))).unwrap();
        assert_eq!(empty, "");
        for bad in [
            String::new(),
            "0/5000138".into(),
            format!("0/5000138|{}", hex(&l.backup_label)),
            format!("0/5000138|{}||", hex(&l.backup_label)),
            format!("0/5000138|{}x|", hex(&l.backup_label)),
            format!("nope|{}|", hex(&l.backup_label)),
            format!("0/5000138|{}|", hex("LABEL: x\n")),
        ] {
            assert!(matches!(parse_stop(&bad), Err(ManagerError::Transient(_))), "{bad:?}");
        }
        assert!(valid_lsn("0/3000028") && valid_lsn("1A/FFFFFFFF"));
        assert!(!valid_lsn("0/") && !valid_lsn("/1") && !valid_lsn("0-1") && !valid_lsn("0/123456789"));
    }

    #[test]
    fn snapshot_restores_are_checked() {
        let (c, _) = spec("/", None);
        let r = restore(&c);
        let s = r.snapshot.clone().unwrap();
        check_restore(&c, &r, &s).unwrap();
        let code = |r: RestoreSource, s: SnapshotSource| check_restore(&c, &r, &s).unwrap_err().code();
        assert_eq!(
            code(RestoreSource { set: Some("20261122-120000F".into()), ..r.clone() }, s.clone()),
            "invalid_restore"
        );
        assert_eq!(
            code(RestoreSource { target_time: Some(chrono::Utc::now()), ..r.clone() }, s.clone()),
            "invalid_restore"
        );
        assert_eq!(code(r.clone(), SnapshotSource { source_name: "../etc".into(), ..s.clone() }), "invalid_restore");
        assert_eq!(code(r.clone(), SnapshotSource { node_id: uuid::Uuid::new_v4(), ..s.clone() }), "invalid_restore");
        let mut l = label();
        l.backup_label = "rm -rf /".into();
        assert_eq!(code(r.clone(), SnapshotSource { label: l, ..s.clone() }), "invalid_restore");
        let mut l = label();
        l.stop_lsn = "x".into();
        assert_eq!(code(r.clone(), SnapshotSource { label: l, ..s.clone() }), "invalid_restore");
        let bad_repo = RestoreSource { from: posix("relative", "herd-src"), ..r };
        assert_eq!(code(bad_repo, s), "invalid_backup_config");
        let (c2, n2) = spec("/", None);
        assert!(source_for(&c2, &n2).is_none(), "no restore, no snapshot");
    }

    fn sh(script: &str, args: &[&str]) -> std::process::Output {
        Command::new("/bin/sh").arg("-c").arg(script).arg("sh").args(args).output().unwrap()
    }

    #[test]
    fn the_source_data_directory_is_moved_aside_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        let (c, n) = spec(&root, None);
        let l = Layout::new(&c, &n).unwrap();
        let s = restore(&c).snapshot.unwrap();
        let src = Path::new(&l.data_parent).join("src");
        let run = || {
            let cmd = move_aside_command(&l, &s);
            Command::new("/bin/sh").arg("-c").arg(&cmd).output().unwrap()
        };
        // A volume without the source's data directory.
        std::fs::create_dir_all(&l.data_parent).unwrap();
        let out = run();
        assert_eq!(out.status.code(), Some(exit::NO_SNAPSHOT_DATA), "{out:?}");
        std::fs::create_dir_all(src.join("base")).unwrap();
        std::fs::write(src.join("PG_VERSION"), "15\n").unwrap();
        assert!(run().status.success());
        assert!(!src.exists());
        assert_eq!(std::fs::read_to_string(Path::new(&l.snapshot_staging).join("PG_VERSION")).unwrap(), "15\n");
        assert!(Path::new(&l.snapshot_marker).exists());
        // Later prepares leave the cluster's own data directory alone, even when it
        // has the source's name.
        std::fs::create_dir_all(&src).unwrap();
        std::fs::remove_dir_all(&l.snapshot_staging).unwrap();
        assert!(run().status.success());
        assert!(src.exists() && !Path::new(&l.snapshot_staging).exists());
        // Cut off between the move and the marker: a re-run completes it.
        std::fs::remove_file(&l.snapshot_marker).unwrap();
        std::fs::remove_dir_all(&src).unwrap();
        std::fs::create_dir_all(&l.snapshot_staging).unwrap();
        assert!(run().status.success());
        assert!(Path::new(&l.snapshot_marker).exists() && Path::new(&l.snapshot_staging).exists());
    }

    #[test]
    fn the_bootstrap_prepares_the_staged_copy_and_refuses_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        let (c, n) = spec(&root, None);
        let l = Layout::new(&c, &n).unwrap();
        let b = bootstrap(&l, &restore(&c)).unwrap();
        assert_eq!(b.method, "snapshot");
        // Patroni splits the command with shlex (POSIX rules).
        let out = Command::new("python3")
            .args(["-c", "import json,shlex,sys; print(json.dumps(shlex.split(sys.argv[1])))", &b.command])
            .output()
            .unwrap();
        let argv: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[2], BOOTSTRAP_SCRIPT);
        assert_eq!(
            argv[4..],
            [
                l.snapshot_staging.clone(),
                l.data_dir.clone(),
                l.snapshot_backup_label.clone(),
                l.snapshot_tablespace_map.clone()
            ]
        );
        let boot = || Command::new(&argv[0]).args(&argv[1..]).output().unwrap();

        // Not the snapshot's member: nothing staged, refused, nothing created.
        let out = boot();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot staged"), "{out:?}");
        assert!(!Path::new(&l.data_dir).exists());

        let staged = Path::new(&l.snapshot_staging);
        for d in ["base/5", "pg_wal/archive_status", "pg_replslot/orders_1", "global"] {
            std::fs::create_dir_all(staged.join(d)).unwrap();
        }
        for f in [
            "PG_VERSION",
            "postmaster.pid",
            "postmaster.opts",
            "standby.signal",
            "patroni.dynamic.json",
            "pg_wal/000000010000000000000005",
            "pg_wal/00000002.history",
            "pg_wal/archive_status/000000010000000000000004.done",
            "pg_replslot/orders_1/state",
            "base/5/1259",
        ] {
            std::fs::write(staged.join(f), "x").unwrap();
        }
        // No label yet (configure has not run): refused, the staged copy kept.
        assert!(!boot().status.success());
        assert!(staged.exists());
        std::fs::create_dir_all(Path::new(&l.snapshot_backup_label).parent().unwrap()).unwrap();
        std::fs::write(&l.snapshot_backup_label, &label().backup_label).unwrap();
        // A non-empty data directory is never replaced.
        std::fs::create_dir_all(Path::new(&l.data_dir).join("base")).unwrap();
        assert!(!boot().status.success());
        assert!(staged.exists());
        std::fs::remove_dir_all(&l.data_dir).unwrap();
        // An empty one (Patroni may create it) is.
        std::fs::create_dir_all(&l.data_dir).unwrap();
        let out = boot();
        assert!(out.status.success(), "{out:?}");
        assert!(!staged.exists());
        let data = Path::new(&l.data_dir);
        assert_eq!(std::fs::read_to_string(data.join("backup_label")).unwrap(), label().backup_label);
        assert!(!data.join("tablespace_map").exists());
        for gone in ["postmaster.pid", "postmaster.opts", "standby.signal", "patroni.dynamic.json"] {
            assert!(!data.join(gone).exists(), "{gone}");
        }
        let names = |d: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(data.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names("pg_wal"), ["archive_status"]);
        assert!(names("pg_wal/archive_status").is_empty());
        assert!(names("pg_replslot").is_empty());
        assert_eq!(std::fs::read_to_string(data.join("base/5/1259")).unwrap(), "x");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(data).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(data.join("backup_label")).unwrap().permissions().mode() & 0o777, 0o600);
        // Consumed: a second run (another member, a retry) is refused.
        assert!(!boot().status.success());

        let conf: std::collections::BTreeMap<_, _> = b.recovery_conf.into_iter().collect();
        assert_eq!(conf["recovery_target"], "immediate");
        assert_eq!(conf["recovery_target_action"], "promote");
        assert_eq!(conf["recovery_target_timeline"], "current");
        assert!(conf["restore_command"].contains("--stanza=herd-src archive-get %f \"%p\""), "{conf:?}");
    }

    #[test]
    fn a_tablespace_map_is_written_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let (c, n) = spec(dir.path().to_str().unwrap(), None);
        let l = Layout::new(&c, &n).unwrap();
        std::fs::create_dir_all(&l.snapshot_staging).unwrap();
        std::fs::create_dir_all(Path::new(&l.snapshot_backup_label).parent().unwrap()).unwrap();
        std::fs::write(&l.snapshot_backup_label, &label().backup_label).unwrap();
        std::fs::write(&l.snapshot_tablespace_map, "16385 /srv/tbs\n").unwrap();
        let out = sh(
            BOOTSTRAP_SCRIPT,
            &[&l.snapshot_staging, &l.data_dir, &l.snapshot_backup_label, &l.snapshot_tablespace_map],
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_to_string(Path::new(&l.data_dir).join("tablespace_map")).unwrap(), "16385 /srv/tbs\n");
    }
}
