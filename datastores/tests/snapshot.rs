//! Volume snapshots on loopback hosts: an online backup held open
//! while the local provider copies the primary's volume, and new clusters started
//! from that copy, with WAL from the source's pgBackRest stanza. Run as root with
//! pgbackrest, postgresql-15, patroni and etcd-server installed.

mod common;

use common::*;
use herd_core::status::NodeRole;
use herd_datastores::postgresql::PostgresManager;
use herd_datastores::{
    BackupConfig, BackupType, Backups, ClusterSpec, Lifecycle, NodeSpec, RestoreSource, SnapshotLabel, SnapshotSource,
    Snapshots,
};
use herd_providers::{Provider, ServerInfo, SnapshotSpec};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

fn insert(addr: &str, batch: i32, rows: i32) {
    admin_sql(addr, &format!("INSERT INTO t SELECT {batch}, g FROM generate_series(1, {rows}) g"));
}

fn batches(addr: &str) -> String {
    admin_sql(addr, "SELECT string_agg(b || ':' || n, ',' ORDER BY b) FROM (SELECT b, count(*) n FROM t GROUP BY b) s")
}

/// Sessions holding a snapshot's backup open on `addr` (the admin sees them all:
/// pg_monitor).
fn backup_sessions(addr: &str) -> usize {
    admin_sql(addr, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'herd-snapshot'")
        .parse()
        .expect("a count")
}

fn history_files(dir: &Path) -> usize {
    walk(dir).into_iter().filter(|p| p.contains(".history")).count()
}

/// A new cluster whose first member's volume is created from `snapshot_id`; the
/// members are named `<prefix>-<i>`. Provisioned in the worker's order: every node
/// prepared, configured and its DCS started (concurrently: etcd needs a quorum),
/// then Patroni on the snapshot's member alone until it leads, then the others,
/// which clone from it.
#[allow(clippy::too_many_arguments)]
fn from_snapshot(
    fx: &Fixture,
    m: &Arc<PostgresManager>,
    repo: &Repo,
    name: &str,
    prefix: &str,
    nodes: usize,
    from: &BackupConfig,
    snapshot_id: &str,
    source_name: &str,
    label: &SnapshotLabel,
) -> (ClusterSpec, Vec<ServerInfo>) {
    let started = Instant::now();
    let (first, first_server) = fx.node_from_snapshot(&format!("{prefix}-0"), snapshot_id);
    let mut members = vec![first.clone()];
    let mut servers = vec![first_server];
    for i in 1..nodes {
        let (node, server) = fx.node(&format!("{prefix}-{i}"));
        members.push(node);
        servers.push(server);
    }
    let mut c = fx.cluster_of(name, members, false);
    // Its own passwords: Patroni must reset the restored roles to them.
    c.secrets.superuser = SecretString::from(format!("{prefix} super pw"));
    c.secrets.replication = SecretString::from(format!("{prefix} repl pw"));
    c.backup = Some(repo.config(&c));
    c.restore = Some(RestoreSource {
        from: from.clone(),
        set: None,
        target_time: None,
        snapshot: Some(SnapshotSource {
            node_id: first.node_id,
            source_name: source_name.to_owned(),
            label: label.clone(),
        }),
    });
    let result = fx.rt.block_on(async {
        let mut set = JoinSet::new();
        for node in c.members.clone() {
            let (m, c) = (m.clone(), c.clone());
            set.spawn(async move {
                // As the worker does: the node's user may read the source's stanza.
                herd_datastores::repo::grant_read(&c.restore.as_ref().unwrap().from, node.service_user.as_deref())
                    .expect("source readable");
                m.prepare(&c, &node).await?;
                m.configure(&c, &node).await?;
                m.start_dcs(&c, &node).await
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("provision task")?;
        }
        m.start_ha(&c, &first).await?;
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let h = m.health(&c).await?;
            let leads =
                h.nodes.iter().any(|n| n.name == first.name && n.role == NodeRole::Primary && n.state == "running");
            if h.leader.as_deref() == Some(&first.name) && leads {
                break;
            }
            if Instant::now() >= deadline {
                return Err(herd_datastores::ManagerError::Transient(format!("{} never led: {h:?}", first.name)));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("{name}: the snapshot's member leads after {:?}", started.elapsed());
        for node in &c.members[1..] {
            m.start_ha(&c, node).await?;
        }
        m.wait_converged(&c, CONVERGE_TIMEOUT).await?;
        m.set_admin_password(&c).await
    });
    if let Err(e) = result {
        dump_logs(&servers);
        panic!("{name} from the snapshot did not come up: {e}");
    }
    eprintln!("{name}: restored from the snapshot and converged in {:?}", started.elapsed());
    (c, servers)
}

fn data_dir(node: &NodeSpec, cluster: &str) -> std::path::PathBuf {
    Path::new(&node.volume.as_ref().unwrap().path).join("15").join(cluster)
}

#[test]
fn snapshots_restore_into_new_clusters() {
    let t0 = Instant::now();
    let fx = Fixture::new();
    let m = Arc::new(PostgresManager::default());
    let repo = Repo::new();

    let (mut src, src_servers) = fx.cluster("snap", 1, false);
    let primary = src.members[0].clone();
    // Without backups there is no archive to make a copy consistent: refused before
    // anything runs on the server.
    let err = fx.rt.block_on(m.begin_snapshot(&src, &primary, "herd-snap-1")).err().expect("refused");
    assert_eq!(err.code(), "backups_not_configured");
    let cfg = repo.config(&src);
    src.backup = Some(cfg.clone());
    bring_up(&fx, &m, &src);
    fx.rt.block_on(m.init_backups(&src)).expect("init backups");
    let addr = primary.address.to_string();
    for bad in ["", "x'); SELECT pg_backup_stop(); --", "Snap", &"x".repeat(65)] {
        let err = fx.rt.block_on(m.begin_snapshot(&src, &primary, bad)).err().expect("refused");
        assert_eq!(err.code(), "invalid_snapshot_label", "{bad:?}");
    }
    eprintln!("source up and archiving after {:?}", t0.elapsed());

    admin_sql(&addr, "CREATE TABLE t (b int, i int)");
    insert(&addr, 1, 1000);

    // A held backup dropped without finish: its session ends (PostgreSQL aborts the
    // backup), nothing is left behind.
    let held = fx.rt.block_on(m.begin_snapshot(&src, &primary, "herd-snap-abandoned")).expect("begin");
    assert_eq!(backup_sessions(&addr), 1);
    drop(held);
    eventually("the abandoned backup session to end", Duration::from_secs(30), || {
        (backup_sessions(&addr) == 0).then_some(())
    });
    let pg_log = src_servers[0].root_prefix.join("var/log/postgresql/postgresql-15-snap.log");
    eventually("PostgreSQL to log the aborted backup", Duration::from_secs(10), || {
        let log = std::fs::read_to_string(&pg_log).unwrap_or_default();
        log.contains("aborting backup due to backend exiting before pg_backup_stop was called").then_some(())
    });
    eprintln!("abandoned backup ended after {:?}", t0.elapsed());

    // The snapshot: backup started, volume copied, backup stopped.
    let label_name = format!("herd-snap-{}", uuid::Uuid::new_v4().simple());
    let held = fx.rt.block_on(m.begin_snapshot(&src, &primary, &label_name)).expect("begin");
    let spec = SnapshotSpec { name: "snap-0".into(), tags: BTreeMap::new() };
    let snap = fx.rt.block_on(fx.provider.snapshot_volume(&volume_id(&primary), &spec, "snap-1")).expect("snapshot");
    let label = fx.rt.block_on(held.finish()).expect("finish");
    assert!(label.backup_label.starts_with(&format!("START WAL LOCATION: {} ", label.start_lsn)), "{label:?}");
    assert!(label.backup_label.contains(&format!("\nLABEL: {label_name}\n")), "{label:?}");
    assert!(label.backup_label.contains("\nBACKUP FROM: primary\n"), "{label:?}");
    assert_eq!(label.tablespace_map, "");
    assert_ne!(label.start_lsn, label.stop_lsn);
    eventually("the backup session to end", Duration::from_secs(30), || (backup_sessions(&addr) == 0).then_some(()));
    eprintln!("snapshot {} taken after {:?}: {label:?}", snap.id, t0.elapsed());
    // Committed after the backup ended: not in the snapshot's clusters.
    insert(&addr, 2, 10);
    let before = "1:1000";

    // A new two-member cluster from the snapshot.
    let (copy, copy_servers) = from_snapshot(&fx, &m, &repo, "copy", "copy", 2, &cfg, &snap.id, &src.name, &label);
    for member in &copy.members {
        let a = member.address.to_string();
        eventually("the replica to catch up", Duration::from_secs(30), || (batches(&a) == before).then_some(()));
    }
    let caddr = copy.members[0].address.to_string();
    psql(&caddr, "postgres", "copy super pw", "SELECT 1").expect("the new superuser password");
    assert!(psql(&caddr, "postgres", SUPERUSER_PW, "SELECT 1").is_err(), "the source's password still works");
    // Promoted once. (Patroni lists a fresh replica's timeline a moment later.)
    eventually("every member on timeline 2", Duration::from_secs(30), || {
        let health = fx.rt.block_on(m.health(&copy)).unwrap();
        assert!(health.nodes.iter().all(|n| n.timeline.is_none_or(|t| t == 2)), "{health:?}");
        health.nodes.iter().all(|n| n.timeline == Some(2)).then_some(())
    });
    // Recovery stopped where the copy became consistent (the backup's end).
    let copy_log = copy_servers[0].root_prefix.join("var/log/postgresql/postgresql-15-copy.log");
    let log = std::fs::read_to_string(&copy_log).unwrap_or_default();
    assert!(log.contains("recovery stopping after reaching consistency"), "{log}");
    assert!(!Path::new(&copy.members[0].volume.as_ref().unwrap().path).join("15/.herd-snapshot").exists());
    assert!(!data_dir(&copy.members[0], "snap").exists(), "the source's directory was moved, not copied");
    // It archives into its own stanza (a backup of it works), never the source's.
    admin_sql(&caddr, "INSERT INTO t VALUES (9, 1)");
    fx.rt.block_on(m.init_backups(&copy)).expect("init backups of the copy");
    let full = fx.rt.block_on(m.backup(&copy, BackupType::Full)).expect("a backup of the copy");
    let own = copy.backup.clone().unwrap();
    assert_eq!(fx.rt.block_on(m.list_backups(&own)).unwrap(), vec![full]);
    assert!(history_files(&repo.path().join("archive").join(&own.stanza)) > 0, "timeline 2 in its own stanza");
    assert_eq!(history_files(&repo.path().join("archive").join(&cfg.stanza)), 0, "nothing in the source's");
    stop_and_delete(&fx, &m, &copy, &copy_servers);
    eprintln!("two-member copy checked after {:?}", t0.elapsed());

    // A cluster with the source's own name: its data directory is where the
    // snapshot holds the source's, which must never start as it is.
    let (same, same_servers) = from_snapshot(&fx, &m, &repo, &src.name, "again", 1, &cfg, &snap.id, &src.name, &label);
    let node = same.members[0].clone();
    let saddr = node.address.to_string();
    assert_eq!(batches(&saddr), before);
    assert!(data_dir(&node, "snap").join("PG_VERSION").exists());
    let timeline = |c: &ClusterSpec| fx.rt.block_on(m.health(c)).unwrap().nodes[0].timeline;
    assert_eq!(timeline(&same), Some(2));
    // Every step re-run on the restored member leaves its data alone.
    fx.rt.block_on(m.prepare(&same, &node)).expect("prepare again");
    fx.rt.block_on(m.configure(&same, &node)).expect("configure again");
    fx.rt.block_on(m.start_ha(&same, &node)).expect("start_ha again");
    fx.rt.block_on(m.wait_converged(&same, CONVERGE_TIMEOUT)).expect("still converged");
    assert_eq!(batches(&saddr), before);
    assert_eq!(timeline(&same), Some(2));
    stop_and_delete(&fx, &m, &same, &same_servers);

    // The source never noticed.
    assert_eq!(batches(&addr), "1:1000,2:10");
    stop_and_delete(&fx, &m, &src, &src_servers);
    fx.rt.block_on(fx.provider.delete_snapshot(&snap.id)).expect("delete snapshot");
    eprintln!("total {:?}", t0.elapsed());
}
