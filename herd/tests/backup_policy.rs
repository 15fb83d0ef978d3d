//! A backup policy through the real binaries in production shape: `herd serve` and two
//! `herd worker` processes over Redis and PostgreSQL, each worker running the backup
//! scheduler. A 1-node cluster with full backups every 15 s and incrementals 5 s after
//! each, keeping 2 full backups: the scheduled backups are taken once each (two
//! schedulers), retention expires the oldest full backup with the incremental based
//! on it (rows `expired`, sets gone from the repository), the history shows it all,
//! and the newest backup restores into a new cluster.

mod common;

use common::{Env, free_port, psql, start_redis};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

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

async fn backups(env: &Env, api: &str, token: &str, id: &str) -> Vec<Value> {
    let (s, v) = env.call(Method::GET, &format!("{api}/v1/backups?cluster_id={id}&limit=100"), token, None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().clone()
}

async fn messages(env: &Env, api: &str, token: &str, id: &str) -> Vec<String> {
    let (s, v) = env.call(Method::GET, &format!("{api}/v1/clusters/{id}/events?limit=100"), token, None).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap_or("").to_owned()).collect()
}

fn in_repo(env: &Env, label: &str) -> bool {
    let out =
        std::process::Command::new("find").arg(env.state().join("backups")).args(["-name", label]).output().unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_run_once_each_and_retention_expires_the_oldest() {
    use base64::Engine;
    let db = PgDb::new();
    let env = Env::new(42);
    let redis_port = free_port();
    let _redis = start_redis(&env, redis_port, "redis.log");
    let api_port = free_port();
    let token = format!("herd_policy_{}", uuid::Uuid::new_v4().simple());
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let shared = vec![
        ("HERD_DATABASE_URL", db.url()),
        ("HERD_REDIS_URL", redis_url),
        ("HERD_MASTER_KEY", key),
        ("HERD_ADMIN_TOKEN", token.clone()),
        ("HERD_STATE_DIR", env.state().display().to_string()),
        ("HERD_LISTEN", format!("127.0.0.1:{api_port}")),
    ];
    let _serve = env.spawn(&["serve"], &shared, "serve.log");
    let api = format!("http://127.0.0.1:{api_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.http.get(format!("{api}/readyz")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "herd serve did not come up:\n{}", _serve.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _w1 = env.spawn(&["worker"], &shared, "worker-1.log");
    let _w2 = env.spawn(&["worker"], &shared, "worker-2.log");

    let id = env.create_cluster_json(&api, &token, "scheduled", 1, json!({})).await;
    env.wait_status_json(&api, &token, &id, "active", ACTIVE_WITHIN).await;
    let (s, c) = env.call(Method::GET, &format!("{api}/v1/clusters/{id}/credentials"), &token, None).await;
    assert_eq!(s, 200, "{c}");
    let (uri, password) = (c["uri"].as_str().unwrap().to_owned(), c["password"].as_str().unwrap().to_owned());
    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 1000)")
        .unwrap();

    // Full backups at :00, :15, :30, :45; incrementals 5 s after each; keep 2 fulls.
    let policy = json!({"full_schedule": "*/15 * * * * *", "incremental_schedule": "5-59/15 * * * * *",
        "retention_full": 2});
    let (s, p) = env.call(Method::PUT, &format!("{api}/v1/clusters/{id}/backup-policy"), &token, Some(policy)).await;
    assert_eq!(s, 200, "{p}");
    assert!(p["next_full_at"].is_string() && p["next_incremental_at"].is_string(), "{p}");

    // Until three scheduled full backups completed and retention expired the first.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let all = backups(&env, &api, &token, &id).await;
        let fulls: Vec<&Value> = all.iter().filter(|b| b["type"] == "full").collect();
        assert!(all.iter().all(|b| b["status"] != "failed"), "a backup failed: {all:#?}");
        // Three requested as full (a first incremental with nothing to build on is
        // taken as a full backup too, and counts for retention).
        let requested_full = messages(&env, &api, &token, &id)
            .await
            .iter()
            .filter(|m| m.starts_with("scheduled full backup requested"))
            .count();
        let completed_full = fulls.iter().filter(|b| b["status"] != "new" && b["status"] != "running").count();
        if requested_full >= 3 && completed_full >= 3 && fulls[0]["status"] == "expired" {
            break;
        }
        assert!(Instant::now() < deadline, "no 3 full backups and expiry in time: {all:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Stop scheduling but keep the retention, then let what is under way finish
    // (backups, expiries). Deleting the policy here instead would race a scheduled
    // full backup still running: it finishes after the policy (and its retention) is
    // gone, and three full backups stay, rightly.
    let quiet = json!({"full_schedule": "0 0 1 1 *", "retention_full": 2});
    let (s, p) = env.call(Method::PUT, &format!("{api}/v1/clusters/{id}/backup-policy"), &token, Some(quiet)).await;
    assert_eq!(s, 200, "{p}");
    let deadline = Instant::now() + TASK_WITHIN;
    let all = loop {
        let all = backups(&env, &api, &token, &id).await;
        let fulls = all.iter().filter(|b| b["type"] == "full" && b["status"] == "completed").count();
        let settled = all.iter().all(|b| b["status"] == "completed" || b["status"] == "expired");
        let (_, c) = env.call(Method::GET, &format!("{api}/v1/clusters/{id}"), &token, None).await;
        let idle = !["queued", "running"].contains(&c["task"]["status"].as_str().unwrap_or(""));
        if settled && idle && fulls <= 2 {
            break all;
        }
        assert!(Instant::now() < deadline, "backups did not settle: {all:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let policy_url = format!("{api}/v1/clusters/{id}/backup-policy");
    let (s, _) = env.call(Method::DELETE, &policy_url, &token, None).await;
    assert_eq!(s, 204);
    let (s, v) = env.call(Method::GET, &policy_url, &token, None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");

    // Exactly once: every backup is one scheduled run with a due time of its own.
    let msgs = messages(&env, &api, &token, &id).await;
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
    let fulls: Vec<&Value> = all.iter().filter(|b| b["type"] == "full").collect();
    assert!(fulls.len() >= 3, "{all:#?}");
    let (old, kept) = fulls.split_at(fulls.len() - 2);
    let kept_labels: Vec<&str> = kept.iter().map(|b| b["label"].as_str().unwrap()).collect();
    for b in kept {
        assert_eq!(b["status"], "completed", "{b}");
        assert!(in_repo(&env, b["label"].as_str().unwrap()), "{b}");
    }
    for b in old {
        assert_eq!(b["status"], "expired", "{b}");
        assert!(!in_repo(&env, b["label"].as_str().unwrap()), "expired {b} is still in the repository");
    }
    let incrs: Vec<&Value> = all.iter().filter(|b| b["type"] == "incr").collect();
    assert!(!incrs.is_empty(), "incrementals ran too: {all:#?}");
    for b in &incrs {
        let label = b["label"].as_str().unwrap();
        let based_on_kept = kept_labels.iter().any(|k| label.starts_with(&format!("{k}_")));
        assert_eq!(b["status"], if based_on_kept { "completed" } else { "expired" }, "{b}");
        assert_eq!(in_repo(&env, label), based_on_kept, "{b}");
    }
    assert!(msgs.iter().any(|m| m.starts_with("retention keeps the newest 2 full backups: expiring ")), "{msgs:#?}");
    for b in old {
        let label = b["label"].as_str().unwrap();
        assert!(msgs.iter().any(|m| m == &format!("backup {label} expired")), "{label}: {msgs:#?}");
    }
    // The archived WAL that only expired backups needed went with them.
    let oldest_wal = kept[0]["wal_start"].as_str().unwrap().to_owned();
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
    let (s, w) = env.call(Method::GET, &format!("{api}/v1/clusters/{id}/recovery-window"), &token, None).await;
    assert_eq!((s, &w["earliest"]), (200, &kept[0]["finished_at"]), "{w}");

    // The newest full backup restores (after the older sets left the repository).
    let restored = env
        .create_cluster_json(
            &api,
            &token,
            "from-newest",
            1,
            json!({"restore": {"source_cluster_id": id, "backup_id": kept[1]["id"]}}),
        )
        .await;
    env.wait_status_json(&api, &token, &restored, "active", ACTIVE_WITHIN).await;
    let (_, rc) = env.call(Method::GET, &format!("{api}/v1/clusters/{restored}/credentials"), &token, None).await;
    let n = psql(rc["uri"].as_str().unwrap(), rc["password"].as_str().unwrap(), "select count(*) from t").unwrap();
    assert_eq!(n, "1000");

    for c in [&restored, &id] {
        let (s, d) = env.call(Method::DELETE, &format!("{api}/v1/clusters/{c}"), &token, None).await;
        assert_eq!(s, 202, "{d}");
        let t = env.wait_task_json(&api, &token, d["task_id"].as_str().unwrap(), TASK_WITHIN).await;
        assert_eq!(t["status"], "succeeded", "{t}");
    }
    assert!(env.servers().is_empty(), "{:?}", env.servers());
}
