//! A backup policy through the real binaries in production shape: `herd serve` and two
//! `herd worker` processes over Redis and PostgreSQL, each worker running the backup
//! scheduler. A 1-node cluster with full backups every 15 s and incrementals 5 s after
//! each, keeping 2 full backups: the scheduled backups are taken once each (two
//! schedulers), retention expires the oldest full backup with the incremental based
//! on it (rows `expired`, sets gone from the repository), the history shows it all,
//! and the newest backup restores into a new cluster.

mod common;

use common::{Env, cluster, free_port, psql, start_redis};
use herd_client::types::{
    BackupDto, BackupPolicyRequest, BackupStatus, BackupType, ClusterStatus, CreateCluster, RestoreRequest, TaskStatus,
};
use herd_testkit::eventually_async;
use std::collections::HashSet;
use std::time::Duration;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const TASK_WITHIN: Duration = Duration::from_secs(300);

fn pg_admin_url() -> String {
    std::env::var("HERD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own on the machine's PostgreSQL, dropped (connections and all)
/// when the test ends, pass or fail.
struct PgDb {
    name: String,
}

impl PgDb {
    fn new() -> Self {
        let name = format!("herd_policy_{}", uuid::Uuid::new_v4().simple());
        psql(&pg_admin_url(), "", &format!("CREATE DATABASE {name}")).expect("PostgreSQL for tests must be reachable");
        Self { name }
    }

    fn url(&self) -> String {
        let admin = pg_admin_url();
        let (base, _) = admin.rsplit_once('/').unwrap();
        format!("{base}/{}", self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(&pg_admin_url(), "", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// The newest 100 history messages of the cluster.
async fn messages(herd: &herd_client::Client, id: uuid::Uuid) -> Vec<String> {
    herd.events(id, Some(100), None).await.unwrap().items.into_iter().map(|e| e.message).collect()
}

fn in_repo(env: &Env, label: &str) -> bool {
    let out =
        std::process::Command::new("find").arg(env.state().join("backups")).args(["-name", label]).output().unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_run_once_each_and_retention_expires_the_oldest() {
    let db = PgDb::new();
    let env = Env::new();
    let redis_port = free_port();
    let _redis = start_redis(&env, redis_port, "redis.log");
    let fleet = env.fleet(db.url(), redis_port, 2).await;
    let (api, token) = (fleet.api.clone(), fleet.token.clone());
    let herd = env.client(&api, &token);

    let id = env.create_cluster(&api, &token, cluster("scheduled", 1)).await;
    env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let (uri, password) = env.credentials(&api, &token, id).await;
    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 1000)")
        .unwrap();

    // Full backups at :00, :15, :30, :45; incrementals 5 s after each; keep 2 fulls.
    let policy = BackupPolicyRequest {
        full_schedule: "*/15 * * * * *".into(),
        diff_schedule: None,
        incremental_schedule: Some("5-59/15 * * * * *".into()),
        retention_full: 2,
    };
    let p = herd.set_backup_policy(id, &policy).await.unwrap();
    assert!(p.next_full_at.is_some() && p.next_incremental_at.is_some(), "{p:?}");

    // Until three scheduled full backups completed and retention expired the first.
    eventually_async("3 scheduled full backups and the first expired", Duration::from_secs(240), || async {
        let all = herd.backups(Some(id)).await.unwrap();
        let fulls: Vec<&BackupDto> = all.iter().filter(|b| b.backup_type == BackupType::Full).collect();
        assert!(all.iter().all(|b| b.status != BackupStatus::Failed), "a backup failed: {all:#?}");
        // Three requested as full (a first incremental with nothing to build on is
        // taken as a full backup too, and counts for retention).
        let requested_full =
            messages(&herd, id).await.iter().filter(|m| m.starts_with("scheduled full backup requested")).count();
        let completed_full =
            fulls.iter().filter(|b| !matches!(b.status, BackupStatus::New | BackupStatus::Running)).count();
        if requested_full >= 3 && completed_full >= 3 && fulls[0].status == BackupStatus::Expired {
            Ok(())
        } else {
            Err(format!("{requested_full} requested, {completed_full} completed: {all:#?}"))
        }
    })
    .await;
    // Stop scheduling but keep the retention, then let what is under way finish
    // (backups, expiries). Deleting the policy here instead would race a scheduled
    // full backup still running: it finishes after the policy (and its retention) is
    // gone, and three full backups stay, rightly.
    let quiet = BackupPolicyRequest {
        full_schedule: "0 0 1 1 *".into(),
        diff_schedule: None,
        incremental_schedule: None,
        retention_full: 2,
    };
    herd.set_backup_policy(id, &quiet).await.unwrap();
    let all = eventually_async("the backups to settle", TASK_WITHIN, || async {
        let all = herd.backups(Some(id)).await.unwrap();
        let fulls =
            all.iter().filter(|b| b.backup_type == BackupType::Full && b.status == BackupStatus::Completed).count();
        let settled = all.iter().all(|b| matches!(b.status, BackupStatus::Completed | BackupStatus::Expired));
        let c = herd.cluster(id).await.unwrap();
        let idle = !matches!(c.task.map(|t| t.status), Some(TaskStatus::Queued | TaskStatus::Running));
        if settled && idle && fulls <= 2 { Ok(all) } else { Err(format!("idle: {idle}, {all:#?}")) }
    })
    .await;

    herd.delete_backup_policy(id).await.unwrap();
    let gone = herd.backup_policy(id).await.unwrap();
    assert!(gone.is_none(), "{gone:?}");
    // The client reads that 404 as "no policy" and hides its code: the raw answer.
    let policy_url = format!("{api}/v1/clusters/{id}/backup-policy");
    let (s, v) = env.call(reqwest::Method::GET, &policy_url, &token, None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");

    // Exactly once: every backup is one scheduled run with a due time of its own.
    let msgs = messages(&herd, id).await;
    let scheduled: Vec<&String> = msgs.iter().filter(|m| m.starts_with("scheduled ")).collect();
    let requested: Vec<&String> =
        scheduled.iter().copied().filter(|m| m.contains("backup requested (due at ")).collect();
    assert_eq!(requested.len(), all.len(), "one scheduled request per backup: {requested:#?} vs {all:#?}");
    let due: HashSet<String> = requested
        .iter()
        .map(|m| m.split("due at ").nth(1).unwrap().split([',', ')', ';']).next().unwrap().to_owned())
        .collect();
    assert_eq!(due.len(), requested.len(), "a due time was run twice: {requested:#?}");
    eprintln!("scheduled runs: {scheduled:#?}");

    // Retention: the newest two full backups stay; older ones and the incrementals
    // based on them are expired and gone from the repository.
    let fulls: Vec<&BackupDto> = all.iter().filter(|b| b.backup_type == BackupType::Full).collect();
    assert!(fulls.len() >= 3, "{all:#?}");
    let (old, kept) = fulls.split_at(fulls.len() - 2);
    let label = |b: &BackupDto| b.label.clone().unwrap_or_else(|| panic!("no label: {b:?}"));
    let kept_labels: Vec<String> = kept.iter().map(|b| label(b)).collect();
    for b in kept {
        assert_eq!(b.status, BackupStatus::Completed, "{b:?}");
        assert!(in_repo(&env, &label(b)), "{b:?}");
    }
    for b in old {
        assert_eq!(b.status, BackupStatus::Expired, "{b:?}");
        assert!(!in_repo(&env, &label(b)), "expired {b:?} is still in the repository");
    }
    let incrs: Vec<&BackupDto> = all.iter().filter(|b| b.backup_type == BackupType::Incr).collect();
    assert!(!incrs.is_empty(), "incrementals ran too: {all:#?}");
    for b in &incrs {
        let label = label(b);
        let based_on_kept = kept_labels.iter().any(|k| label.starts_with(&format!("{k}_")));
        assert_eq!(b.status, if based_on_kept { BackupStatus::Completed } else { BackupStatus::Expired }, "{b:?}");
        assert_eq!(in_repo(&env, &label), based_on_kept, "{b:?}");
    }
    assert!(msgs.iter().any(|m| m.starts_with("retention keeps the newest 2 full backups: expiring ")), "{msgs:#?}");
    for b in old {
        let label = label(b);
        assert!(msgs.iter().any(|m| m == &format!("backup {label} expired")), "{label}: {msgs:#?}");
    }
    // The archived WAL that only expired backups needed went with them.
    let oldest_wal = kept[0].wal_start.clone().unwrap_or_else(|| panic!("no wal_start: {:?}", kept[0]));
    let out = std::process::Command::new("find")
        .arg(env.state().join("backups/archive"))
        .args(["-type", "f"])
        .output()
        .unwrap();
    let segments: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|p| p.rsplit('/').next())
        .filter(|n| n.len() > 25 && n.as_bytes()[24] == b'-')
        .map(|n| n[..24].to_owned())
        .collect();
    assert!(segments.iter().any(|s| *s >= oldest_wal), "{segments:?}");
    let older: Vec<&String> = segments.iter().filter(|s| **s < oldest_wal).collect();
    assert!(older.is_empty(), "WAL before the oldest kept backup ({oldest_wal}) is still archived: {older:?}");
    let w = herd.recovery_window(id).await.unwrap();
    assert!(w.earliest.is_some() && w.earliest == kept[0].finished_at, "{w:?} vs {:?}", kept[0]);

    // The newest full backup restores (after the older sets left the repository).
    let restore = RestoreRequest { source_cluster_id: Some(id), backup_id: Some(kept[1].id), ..Default::default() };
    let restored =
        env.create_cluster(&api, &token, CreateCluster { restore: Some(restore), ..cluster("from-newest", 1) }).await;
    env.wait_status(&api, &token, restored, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let (ruri, rpassword) = env.credentials(&api, &token, restored).await;
    let n = psql(&ruri, &rpassword, "select count(*) from t").unwrap();
    assert_eq!(n, "1000");

    for c in [restored, id] {
        env.delete_cluster(&api, &token, c, TASK_WITHIN).await;
    }
    assert!(env.servers().is_empty(), "{:?}", env.servers());
}
