//! Volume snapshots through the real `herd` binary: a snapshot of a running cluster's
//! primary taken inside an online backup, new clusters started from it (one with
//! replicas, one with the source's own name after the source is deleted), and its
//! deletion at the provider.

mod common;

use common::{Env, psql};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const TASK_WITHIN: Duration = Duration::from_secs(300);

async fn count(env: &Env, api: &str, token: &str, id: &str) -> String {
    let (uri, password) = env.credentials_json(api, token, id).await;
    psql(&uri, &password, "select count(*) || ':' || max(id) from t").unwrap()
}

async fn get_snapshot(env: &Env, api: &str, token: &str, id: &str) -> (u16, Value) {
    env.call(Method::GET, &format!("{api}/v1/snapshots/{id}"), token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restore_and_delete() {
    let env = Env::new(12);
    let (_dev, api, token) = env.dev(&[], "dev.log");
    let src = env.create_cluster_json(&api, &token, "snapsrc", 1, json!({})).await;
    env.wait_status_json(&api, &token, &src, "active", ACTIVE_WITHIN).await;
    let (uri, password) = env.credentials_json(&api, &token, &src).await;
    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 100)").unwrap();

    let (s, v) = env.call(Method::POST, &format!("{api}/v1/clusters/{src}/snapshots"), &token, Some(json!({}))).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["snapshot"]["status"], "creating", "{v}");
    let snap = v["snapshot"]["id"].as_str().unwrap().to_owned();
    // One task at a time: a backup now waits its turn.
    let (s, b) = env.call(Method::POST, &format!("{api}/v1/clusters/{src}/backups"), &token, Some(json!({}))).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("cluster_busy")), "{b}");
    let t = env.wait_task_json(&api, &token, v["task_id"].as_str().unwrap(), TASK_WITHIN).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let (s, sn) = get_snapshot(&env, &api, &token, &snap).await;
    assert_eq!((s, sn["status"].as_str()), (200, Some("available")), "{sn}");
    assert!(sn["start_lsn"].is_string() && sn["stop_lsn"].is_string(), "{sn}");
    assert_eq!((sn["cluster_id"].as_str(), sn["datastore"].as_str()), (Some(src.as_str()), Some("postgresql")));
    assert_eq!(env.snapshots().len(), 1, "one snapshot at the provider");
    // Rows committed after the snapshot are not in it.
    psql(&uri, &password, "insert into t select generate_series(101, 150)").unwrap();

    // A new cluster with a replica from it: the data as of the snapshot, on both nodes.
    let copy = env.create_cluster_json(&api, &token, "snapcopy", 2, json!({"restore": {"snapshot_id": snap}})).await;
    let c = env.wait_status_json(&api, &token, &copy, "active", ACTIVE_WITHIN).await;
    assert_eq!(count(&env, &api, &token, &copy).await, "100:100", "exactly the rows before the snapshot");
    let (_, password_copy) = env.credentials_json(&api, &token, &copy).await;
    for n in c["nodes"].as_array().unwrap() {
        let conn = format!("host={} port=5432 dbname=postgres user=admin", n["address"].as_str().unwrap());
        common::poll(Duration::from_secs(30), || match psql(&conn, &password_copy, "select count(*) from t") {
            Ok(v) if v == "100" => Ok(()),
            other => Err(format!("{}: {other:?}", n["name"])),
        });
    }
    // It is a cluster of its own: it writes, and backs up into its own stanza.
    let (uri_copy, _) = env.credentials_json(&api, &token, &copy).await;
    psql(&uri_copy, &password_copy, "insert into t values (1000)").unwrap();
    let (s, v) = env.call(Method::POST, &format!("{api}/v1/clusters/{copy}/backups"), &token, Some(json!({}))).await;
    assert_eq!(s, 202, "{v}");
    let t = env.wait_task_json(&api, &token, v["task_id"].as_str().unwrap(), TASK_WITHIN).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert_eq!(count(&env, &api, &token, &src).await, "150:150", "the source is untouched");

    // The source goes; its snapshot stays, and restores under the source's own name.
    env.delete_cluster_json(&api, &token, &src, TASK_WITHIN).await;
    let (s, sn) = get_snapshot(&env, &api, &token, &snap).await;
    assert_eq!((s, sn["status"].as_str()), (200, Some("available")), "{sn}");
    let again = env.create_cluster_json(&api, &token, "snapsrc", 1, json!({"restore": {"snapshot_id": snap}})).await;
    env.wait_status_json(&api, &token, &again, "active", ACTIVE_WITHIN).await;
    assert_eq!(count(&env, &api, &token, &again).await, "100:100");

    // Deleted at the provider; the id is gone.
    let (s, d) = env.call(Method::DELETE, &format!("{api}/v1/snapshots/{snap}"), &token, None).await;
    assert_eq!(s, 202, "{d}");
    let t = env.wait_task_json(&api, &token, d["task_id"].as_str().unwrap(), TASK_WITHIN).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let (s, _) = get_snapshot(&env, &api, &token, &snap).await;
    assert_eq!(s, 404);
    assert!(env.snapshots().is_empty(), "{:?}", env.snapshots());
    // A deleted snapshot cannot be restored.
    let body = json!({"name": "late", "datastore": "postgresql", "version": "15", "flavor": "local.small",
        "restore": {"snapshot_id": snap}});
    let (s, v) = env.call(Method::POST, &format!("{api}/v1/clusters"), &token, Some(body)).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("restore.snapshot_id")), "{v}");

    for id in [&copy, &again] {
        env.delete_cluster_json(&api, &token, id, TASK_WITHIN).await;
    }
    assert!(env.servers().is_empty() && env.volumes().is_empty(), "{:?} {:?}", env.servers(), env.volumes());
}
