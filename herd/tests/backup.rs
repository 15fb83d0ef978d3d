//! Backups and restores through the real `herd` binary: pgBackRest full and
//! incremental backups of a running cluster, point-in-time and latest restores into new
//! clusters, a restore from a deleted cluster's backups, expiry, and the errors.

mod common;

use common::{Env, psql};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const TASK_WITHIN: Duration = Duration::from_secs(300);

async fn backup(env: &Env, api: &str, token: &str, id: &str, kind: &str) -> Value {
    let (s, v) =
        env.call(Method::POST, &format!("{api}/v1/clusters/{id}/backups"), token, Some(json!({"type": kind}))).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["backup"]["status"], "new");
    let t = env.wait_task_json(api, token, v["task_id"].as_str().unwrap(), TASK_WITHIN).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let (s, b) =
        env.call(Method::GET, &format!("{api}/v1/backups/{}", v["backup"]["id"].as_str().unwrap()), token, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["type"], kind);
    assert_eq!(b["repository"], "posix", "{b}");
    for f in ["label", "wal_start", "wal_stop", "started_at", "finished_at"] {
        assert!(b[f].is_string(), "{f}: {b}");
    }
    assert!(b["size_bytes"].as_i64().unwrap_or(0) > 0 && b["repo_size_bytes"].as_i64().unwrap_or(0) > 0, "{b}");
    b
}

async fn restore(env: &Env, api: &str, token: &str, name: &str, restore: Value) -> String {
    env.create_cluster_json(api, token, name, 1, json!({"restore": restore})).await
}

async fn count(env: &Env, api: &str, token: &str, id: &str) -> String {
    let (uri, password) = env.credentials_json(api, token, id).await;
    psql(&uri, &password, "select count(*) || ':' || max(id) from t").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_point_in_time_restore_and_expiry() {
    let env = Env::new(9);
    let (dev, api, token) = env.dev(&[], "dev.log");
    let src = env.create_cluster_json(&api, &token, "src", 1, json!({})).await;
    env.wait_status_json(&api, &token, &src, "active", ACTIVE_WITHIN).await;
    let (uri, password) = env.credentials_json(&api, &token, &src).await;
    let (s, w) = env.call(Method::GET, &format!("{api}/v1/clusters/{src}/recovery-window"), &token, None).await;
    assert_eq!((s, w), (200, json!({"earliest": null, "latest": null})));

    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 100)").unwrap();
    let full = backup(&env, &api, &token, &src, "full").await;
    psql(&uri, &password, "insert into t select generate_series(101, 200)").unwrap();
    // T: after row 200 committed, before row 201 is.
    let t =
        psql(&uri, &password, "select to_char(now() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").unwrap();
    psql(&uri, &password, "select pg_sleep(0.2); insert into t select generate_series(201, 300)").unwrap();
    // The incremental backup ends with a WAL switch and waits for that WAL to be
    // archived: rows 201–300 are restorable from then on.
    let incr = backup(&env, &api, &token, &src, "incr").await;
    assert!(
        incr["repo_size_bytes"].as_i64() < full["repo_size_bytes"].as_i64(),
        "an incremental adds less than a full: {incr} vs {full}"
    );
    let (_, w) = env.call(Method::GET, &format!("{api}/v1/clusters/{src}/recovery-window"), &token, None).await;
    let (earliest, latest) = (w["earliest"].as_str().unwrap().to_owned(), w["latest"].as_str().unwrap().to_owned());
    let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
    assert!(parse(&earliest) <= parse(&t) && parse(&t) <= parse(&latest), "{w} vs T={t}");

    // Refused: a target before the window; an unknown source.
    let before = (parse(full["finished_at"].as_str().unwrap()) - chrono::Duration::hours(1)).to_rfc3339();
    let body = json!({"name": "early", "datastore": "postgresql", "version": "15", "flavor": "local.small",
        "restore": {"source_cluster_id": src, "target_time": before}});
    let (s, v) = env.call(Method::POST, &format!("{api}/v1/clusters"), &token, Some(body)).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("restore.target_time")), "{v}");
    let body = json!({"name": "nowhere", "datastore": "postgresql", "version": "15", "flavor": "local.small",
        "restore": {"source_cluster_id": uuid::Uuid::new_v4()}});
    let (s, v) = env.call(Method::POST, &format!("{api}/v1/clusters"), &token, Some(body)).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("restore.source_cluster_id")), "{v}");

    // Point in time and latest, built side by side.
    let pitr = restore(&env, &api, &token, "pitr", json!({"source_cluster_id": src, "target_time": t})).await;
    let latest_id = restore(&env, &api, &token, "latest", json!({"source_cluster_id": src})).await;
    // A backup of a cluster that is not active yet is refused.
    let (s, v) = env.call(Method::POST, &format!("{api}/v1/clusters/{pitr}/backups"), &token, Some(json!({}))).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("cluster_not_ready")), "{v}");
    env.wait_status_json(&api, &token, &pitr, "active", ACTIVE_WITHIN).await;
    env.wait_status_json(&api, &token, &latest_id, "active", ACTIVE_WITHIN).await;
    assert_eq!(count(&env, &api, &token, &pitr).await, "200:200", "exactly the rows committed before T");
    assert_eq!(count(&env, &api, &token, &latest_id).await, "300:300", "every archived row");
    // A restored cluster takes backups of its own.
    backup(&env, &api, &token, &pitr, "full").await;

    // The source goes; its backups stay, restorable, until expired.
    let (s, d) = env.call(Method::DELETE, &format!("{api}/v1/clusters/{src}"), &token, None).await;
    assert_eq!(s, 202, "{d}");
    let tk = env.wait_task_json(&api, &token, d["task_id"].as_str().unwrap(), TASK_WITHIN).await;
    assert_eq!(tk["status"], "succeeded", "{tk}");
    let (_, list) = env.call(Method::GET, &format!("{api}/v1/backups?cluster_id={src}"), &token, None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let after = restore(&env, &api, &token, "after", json!({"source_cluster_id": src, "backup_id": full["id"]})).await;
    env.wait_status_json(&api, &token, &after, "active", ACTIVE_WITHIN).await;
    let n = count(&env, &api, &token, &after).await;
    assert_eq!(n, "300:300", "restoring the full backup replays every archived WAL");

    let repo = env.state().join("backups");
    let in_repo = |label: &str| {
        let out = std::process::Command::new("find").arg(&repo).args(["-name", label]).output().unwrap();
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    };

    // The operator points new clusters at S3 (an endpoint where nothing listens) and
    // restarts Herd: existing clusters keep the repository their WAL is archived into,
    // so their backups still work, and land there.
    drop(dev);
    let s3_elsewhere = [
        ("HERD_BACKUPS__REPOSITORY", "s3"),
        ("HERD_BACKUPS__S3__BUCKET", "elsewhere"),
        ("HERD_BACKUPS__S3__ENDPOINT", "127.0.0.1:9"),
        ("HERD_BACKUPS__S3__ACCESS_KEY_ID", "unused"),
        ("HERD_BACKUPS__S3__SECRET_ACCESS_KEY", "unused-secret"),
    ];
    let (_dev, api, token) = env.dev(&s3_elsewhere, "dev-s3-settings.log");
    let shown = env.wait_status_json(&api, &token, &pitr, "active", ACTIVE_WITHIN).await;
    assert_eq!(shown["backup_repository"], "posix", "{shown}");
    let kept = backup(&env, &api, &token, &pitr, "incr").await;
    let kept_label = kept["label"].as_str().unwrap();
    assert!(in_repo(kept_label), "backup {kept_label} is in {}", repo.display());
    // What reads the repository from Herd's side finds it there too.
    let (s, w) = env.call(Method::GET, &format!("{api}/v1/clusters/{pitr}/recovery-window"), &token, None).await;
    assert_eq!(s, 200, "{w}");
    assert!(w["latest"].as_str() >= kept["finished_at"].as_str(), "{w} vs {kept}");
    let (s, v) =
        env.call(Method::DELETE, &format!("{api}/v1/backups/{}", kept["id"].as_str().unwrap()), &token, None).await;
    assert_eq!(s, 202, "{v}");
    let tk = env.wait_task_json(&api, &token, v["task_id"].as_str().unwrap(), TASK_WITHIN).await;
    assert_eq!(tk["status"], "succeeded", "{tk}");
    assert!(!in_repo(kept_label), "expired backup {kept_label} is still in the repository");

    // Expire the incremental: gone from the repository, shown as expired.
    let label = incr["label"].as_str().unwrap();
    assert!(in_repo(label), "backup {label} is in {}", repo.display());
    let (s, v) =
        env.call(Method::DELETE, &format!("{api}/v1/backups/{}", incr["id"].as_str().unwrap()), &token, None).await;
    assert_eq!(s, 202, "{v}");
    let tk = env.wait_task_json(&api, &token, v["task_id"].as_str().unwrap(), TASK_WITHIN).await;
    assert_eq!(tk["status"], "succeeded", "{tk}");
    let (_, b) =
        env.call(Method::GET, &format!("{api}/v1/backups/{}", incr["id"].as_str().unwrap()), &token, None).await;
    assert_eq!(b["status"], "expired", "{b}");
    assert!(!in_repo(label), "expired backup {label} is still in the repository");
    // Expiring it again answers with the task that expired it.
    let (s, again) =
        env.call(Method::DELETE, &format!("{api}/v1/backups/{}", incr["id"].as_str().unwrap()), &token, None).await;
    assert_eq!((s, &again["task_id"]), (202, &v["task_id"]), "{again}");

    for id in [&pitr, &latest_id, &after] {
        let (s, d) = env.call(Method::DELETE, &format!("{api}/v1/clusters/{id}"), &token, None).await;
        assert_eq!(s, 202, "{d}");
        let tk = env.wait_task_json(&api, &token, d["task_id"].as_str().unwrap(), TASK_WITHIN).await;
        assert_eq!(tk["status"], "succeeded", "{tk}");
    }
    assert!(env.servers().is_empty());
}
