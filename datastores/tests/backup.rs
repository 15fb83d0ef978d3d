//! pgBackRest on loopback hosts: archiving, full and incremental
//! backups, restores of new clusters to a point in time and to the end of the
//! archive, listing, expiring, the recovery window. Run as root with pgbackrest,
//! postgresql-15, patroni and etcd-server installed.

mod common;

use common::*;
use herd_datastores::postgresql::PostgresManager;
use herd_datastores::{BackupConfig, BackupType, Backups, ClusterSpec, Lifecycle, Profile, RestoreSource};
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Inserts `rows` into t, tagged with `batch`, in one transaction.
fn insert(addr: &str, batch: i32, rows: i32) {
    admin_sql(addr, &format!("INSERT INTO t SELECT {batch}, g FROM generate_series(1, {rows}) g"));
}

/// The database's clock.
fn now(addr: &str) -> chrono::DateTime<chrono::Utc> {
    let sql = "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";
    admin_sql(addr, sql).parse().expect("timestamp")
}

fn batches(addr: &str) -> String {
    admin_sql(addr, "SELECT string_agg(b || ':' || n, ',' ORDER BY b) FROM (SELECT b, count(*) n FROM t GROUP BY b) s")
}

/// Switches WAL and waits until the segment holding everything committed so far is
/// in the repository (no sleeping on a guess).
fn archive_now(addr: &str) {
    // pg_switch_wal is the superuser's (the admin role is not one).
    let wal = psql(addr, "postgres", SUPERUSER_PW, "SELECT pg_walfile_name(pg_switch_wal())").expect("switch WAL");
    eventually(&format!("{wal} archived"), Duration::from_secs(60), || {
        let last = admin_sql(addr, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        (last.len() == 24 && last[8..] >= wal[8..]).then_some(())
    });
}

/// A new cluster restored from `from`, archiving into its own stanza: its first
/// member restores, the others clone from it.
#[allow(clippy::too_many_arguments)]
fn restored(
    fx: &Fixture,
    m: &Arc<PostgresManager>,
    repo: &Repo,
    name: &str,
    nodes: usize,
    from: &BackupConfig,
    set: Option<String>,
    target_time: Option<chrono::DateTime<chrono::Utc>>,
) -> (ClusterSpec, Vec<herd_providers::ServerInfo>) {
    let (mut c, servers) = fx.cluster(name, nodes, false);
    // Its own passwords: Patroni must reset the restored roles to them.
    c.secrets.superuser = SecretString::from(format!("{name} super pw"));
    c.secrets.replication = SecretString::from(format!("{name} repl pw"));
    c.backup = Some(repo.config(&c));
    c.restore = Some(RestoreSource { from: from.clone(), set, target_time, snapshot: None });
    let started = Instant::now();
    fx.rt.block_on(provision(m, &c)).expect("provision");
    if let Err(e) = fx.rt.block_on(m.wait_converged(&c, CONVERGE_TIMEOUT)) {
        dump_logs(&servers);
        panic!("{name} did not converge: {e}");
    }
    fx.rt.block_on(m.set_admin_password(&c)).expect("admin password");
    eprintln!("{name}: restored and converged in {:?}", started.elapsed());
    (c, servers)
}

#[test]
fn backup_restore_point_in_time_incremental_expire() {
    let t0 = Instant::now();
    let fx = Fixture::new();
    let m = Arc::new(PostgresManager::default());
    let repo = Repo::new();

    let (mut src, src_servers) = fx.cluster("src", 1, false);
    let cfg = repo.config(&src);
    src.backup = Some(cfg.clone());
    bring_up(&fx, &m, &src);
    let addr = src.members[0].address.to_string();
    // Every member archives with the node's own config file; users cannot override it.
    let settings = admin_sql(&addr, "SELECT setting FROM pg_settings WHERE name IN ('archive_mode') ");
    assert_eq!(settings, "on");
    fx.rt.block_on(m.init_backups(&src)).expect("init backups");
    fx.rt.block_on(m.init_backups(&src)).expect("init backups is idempotent");
    assert_eq!(fx.rt.block_on(m.recovery_window(&cfg)).unwrap(), None, "no backup yet");
    eprintln!("source up and archiving after {:?}", t0.elapsed());

    admin_sql(&addr, "CREATE TABLE t (b int, i int)");
    insert(&addr, 1, 1000);
    let full = fx.rt.block_on(m.backup(&src, BackupType::Full)).expect("full backup");
    assert_eq!(full.kind, BackupType::Full);
    assert!(full.label.ends_with('F'), "{full:?}");
    assert!(full.size_bytes > 1_000_000 && full.repo_size_bytes > 0, "{full:?}");
    assert!(full.started_at <= full.finished_at && !full.wal_start.is_empty(), "{full:?}");
    eprintln!("full backup {} after {:?}", full.label, t0.elapsed());

    insert(&addr, 2, 100);
    // T by the database's clock, after batch 2 committed and before batch 3 does.
    let t: chrono::DateTime<chrono::Utc> =
        admin_sql(&addr, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            .parse()
            .expect("timestamp");
    insert(&addr, 3, 10);
    archive_now(&addr);

    let incr = fx.rt.block_on(m.backup(&src, BackupType::Incr)).expect("incremental backup");
    assert_eq!(incr.kind, BackupType::Incr);
    assert!(incr.label.starts_with(&full.label) && incr.label.ends_with('I'), "{incr:?}");
    assert!(incr.repo_size_bytes < full.repo_size_bytes, "incremental {incr:?} vs full {full:?}");
    let before_4 = now(&addr);
    insert(&addr, 4, 1);
    archive_now(&addr);
    let all = "1:1000,2:100,3:10,4:1";
    assert_eq!(batches(&addr), all);

    let listed = fx.rt.block_on(m.list_backups(&cfg)).expect("list");
    assert_eq!(listed, vec![full.clone(), incr.clone()]);
    let window = fx.rt.block_on(m.recovery_window(&cfg)).unwrap().expect("a window");
    assert!(window.earliest <= t && t <= window.latest, "T {t} outside {window:?}");
    assert_eq!(window.earliest, full.finished_at);
    // The newest commit in the archive (read from the WAL itself), past both backups.
    assert!(window.latest > before_4, "{window:?} vs batch 4 committed after {before_4}");
    eprintln!("backups listed, window {window:?} after {:?}", t0.elapsed());

    // The source goes away: restores need only the repository.
    stop_and_delete(&fx, &m, &src, &src_servers);

    // Point in time: exactly what committed before T (the full backup plus WAL).
    let (pitr, pitr_servers) = restored(&fx, &m, &repo, "pitr", 1, &cfg, None, Some(t));
    let paddr = pitr.members[0].address.to_string();
    assert_eq!(batches(&paddr), "1:1000,2:100");
    // The restored roles carry this cluster's passwords, not the source's.
    psql(&paddr, "postgres", "pitr super pw", "SELECT 1").expect("new superuser password");
    assert!(psql(&paddr, "postgres", SUPERUSER_PW, "SELECT 1").is_err(), "the source's password still works");
    admin_sql(&paddr, "INSERT INTO t VALUES (9, 1)");
    // It archives into its own stanza, never the source's.
    let pcfg = pitr.backup.clone().unwrap();
    // No init_backups: a backup into a stanza that does not exist yet creates it
    // (stanza-create + check) and then backs up.
    let own_full = fx.rt.block_on(m.backup(&pitr, BackupType::Full)).expect("first backup creates the stanza");
    assert_eq!(fx.rt.block_on(m.list_backups(&pcfg)).unwrap(), vec![own_full]);
    let own = repo.path().join("archive").join(&pcfg.stanza);
    let history =
        |dir: &PathBuf| walk(dir).into_iter().filter(|p| p.ends_with(".history") || p.contains(".history")).count();
    assert!(history(&own) > 0, "the promoted timeline's history is in the new stanza");
    assert_eq!(history(&repo.path().join("archive").join(&cfg.stanza)), 0, "nothing new in the source's stanza");
    stop_and_delete(&fx, &m, &pitr, &pitr_servers);
    eprintln!("point-in-time restore checked after {:?}", t0.elapsed());

    // The incremental backup, replayed to the end of the archive: everything.
    // Two members: the second clones the restored primary.
    let (last, last_servers) = restored(&fx, &m, &repo, "last", 2, &cfg, Some(incr.label.clone()), None);
    for member in &last.members {
        let a = member.address.to_string();
        eventually("replica caught up", Duration::from_secs(30), || (batches(&a) == all).then_some(()));
    }
    stop_and_delete(&fx, &m, &last, &last_servers);
    eprintln!("latest restore checked after {:?}", t0.elapsed());

    fx.rt.block_on(m.expire_backup(&cfg, &incr.label)).expect("expire");
    fx.rt.block_on(m.expire_backup(&cfg, &incr.label)).expect("expire again (already gone)");
    assert_eq!(fx.rt.block_on(m.list_backups(&cfg)).unwrap(), vec![full.clone()]);
    let err = fx.rt.block_on(m.expire_backup(&cfg, "../../etc")).unwrap_err();
    assert_eq!(err.code(), "invalid_backup_label");
    eprintln!("total {:?}", t0.elapsed());
}

#[test]
fn managed_archive_parameters_are_refused() {
    let m = PostgresManager::default();
    for name in ["archive_command", "archive_mode", "restore_command", "archive_library"] {
        let mut p = serde_json::Map::new();
        p.insert(name.into(), "x".into());
        let errors = m.check_parameters("15", &p).unwrap_err();
        assert_eq!(errors[0].0, name);
        assert!(errors[0].1.contains("managed by Herd"), "{errors:?}");
    }
}
