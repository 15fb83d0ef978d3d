//! Per-project quotas through the API: defaults from settings, operators' overrides,
//! refusals that name the limit and create nothing, and no overshoot under
//! concurrent requests (on PostgreSQL that is the project row lock).

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    quotas_show_limits_and_usage_and_only_operators_change_them,
    each_quota_refuses_what_goes_past_it,
    concurrent_creates_never_overshoot_a_quota,
    settings_give_the_defaults,
);

fn cluster(name: &str, nodes: u32, volume_gb: u32) -> Value {
    json!({"name": name, "datastore": "postgresql", "version": "15", "flavor": "local.small",
           "nodes": nodes, "volume_gb": volume_gb})
}

fn quotas_path(pid: &str) -> String {
    format!("/v1/projects/{pid}/quotas")
}

/// `(status, code, quota name, limit, used, requested)` of a refused request.
fn refusal(s: u16, v: &Value) -> (u16, &str, &str, u64, u64, u64) {
    let q = &v["quota"];
    (
        s,
        v["code"].as_str().unwrap_or(""),
        q["quota"].as_str().unwrap_or(""),
        q["limit"].as_u64().unwrap_or(u64::MAX),
        q["used"].as_u64().unwrap_or(u64::MAX),
        q["requested"].as_u64().unwrap_or(u64::MAX),
    )
}

async fn count(app: &TestApp, path: &str, tok: &str) -> usize {
    let (s, v) = app.get(path, tok).await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().len()
}

/// Marks a cluster's build finished, as a worker would, so day-2 requests are taken.
async fn make_active(app: &TestApp, created: &Value) {
    let id: uuid::Uuid = created["cluster"]["id"].as_str().unwrap().parse().unwrap();
    let task: uuid::Uuid = created["task_id"].as_str().unwrap().parse().unwrap();
    let store = app.store().await;
    assert!(store.claim_task(task, "test", chrono::Duration::seconds(30)).await.unwrap().is_some());
    store.complete_build(task, "test", id, chrono::Utc::now() + chrono::Duration::days(30)).await.unwrap();
}

async fn quotas_show_limits_and_usage_and_only_operators_change_them(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("team-q").await;
    let (other_pid, other) = app.member("team-r").await;
    let op = app.admin_token.clone();
    let defaults = herd_core::quota::Limits::defaults();

    let (s, v) = app.get(&quotas_path(&pid), &tok).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["project_id"], pid.as_str());
    assert_eq!(v["clusters"], json!({"limit": defaults.clusters, "used": 0, "overridden": false}), "{v}");
    assert_eq!(v["volume_gb"]["limit"], defaults.volume_gb);
    // Another project's quotas are not visible; only operators change any.
    let (s, _) = app.get(&quotas_path(&pid), &other).await;
    assert_eq!(s, 404);
    let (s, v) = app.call(Method::PUT, &quotas_path(&pid), Some(&tok), Some(json!({"clusters": 100}))).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = app.call(Method::PUT, &quotas_path(&other_pid), Some(&tok), Some(json!({"clusters": 100}))).await;
    assert_eq!(s, 403, "{v}");

    // Bad bodies name the field and change nothing.
    for (body, field) in [
        (json!({"clusters": 1_000_001}), "clusters"),
        (json!({"clusters": -1}), "clusters"),
        (json!({"pods": 3}), ""),
        (json!({"keys": "ten"}), ""),
    ] {
        let (s, v) = app.call(Method::PUT, &quotas_path(&pid), Some(&op), Some(body.clone())).await;
        assert_eq!(s, 422, "{body}: {v}");
        if !field.is_empty() {
            assert!(v["errors"].as_array().unwrap().iter().any(|e| e["field"] == field), "{body}: {v}");
        }
    }
    let (s, _) =
        app.call(Method::PUT, &quotas_path(&uuid::Uuid::new_v4().to_string()), Some(&op), Some(json!({}))).await;
    assert_eq!(s, 404);

    let (s, v) = app.call(Method::PUT, &quotas_path(&pid), Some(&op), Some(json!({"clusters": 4, "keys": 0}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["clusters"], json!({"limit": 4, "used": 0, "overridden": true}));
    assert_eq!(v["keys"], json!({"limit": 0, "used": 0, "overridden": true}));
    assert_eq!(v["nodes"]["overridden"], false);
    let (_, seen) = app.get(&quotas_path(&pid), &tok).await;
    assert_eq!(seen, v, "the member sees what the operator set");
    // The other project keeps the defaults.
    let (_, v) = app.get(&quotas_path(&other_pid), &other).await;
    assert_eq!(v["clusters"]["limit"], defaults.clusters);
    // A PUT replaces every override: what it leaves out returns to the default.
    let (s, v) = app.call(Method::PUT, &quotas_path(&pid), Some(&op), Some(json!({"keys": null}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["clusters"], json!({"limit": defaults.clusters, "used": 0, "overridden": false}));
    assert_eq!(v["keys"]["limit"], defaults.keys);
}

async fn each_quota_refuses_what_goes_past_it(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("team-limits").await;
    let op = app.admin_token.clone();
    let limits = json!({"clusters": 2, "nodes": 3, "volume_gb": 25, "keys": 1, "snapshots": 0, "backups": 0});
    let (s, v) = app.call(Method::PUT, &quotas_path(&pid), Some(&op), Some(limits)).await;
    assert_eq!(s, 200, "{v}");

    // Keys the project adds count; one is allowed.
    let (s, v) = app.post("/v1/keys", &tok, json!({"name": "laptop"})).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = app.post("/v1/keys", &tok, json!({"name": "desktop"})).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "keys", 1, 1, 1), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("keys quota is 1"), "{v}");
    assert_eq!(v["type"], "/problems/quota_exceeded");

    // Clusters, nodes and volume: the first limit a create would pass is named.
    let (s, v) = app.post("/v1/clusters", &tok, cluster("one", 1, 10)).await;
    assert_eq!(s, 202, "{v}");
    let first = v;
    let (s, v) = app.post("/v1/clusters", &tok, cluster("three-nodes", 3, 5)).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "nodes", 3, 1, 3), "{v}");
    let (s, v) = app.post("/v1/clusters", &tok, cluster("big-disk", 1, 20)).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "volume_gb", 25, 10, 20), "{v}");
    let (s, v) = app.post("/v1/clusters", &tok, cluster("two", 2, 5)).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = app.post("/v1/clusters", &tok, cluster("three", 1, 1)).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "clusters", 2, 2, 1), "{v}");
    assert_eq!(count(&app, "/v1/clusters", &tok).await, 2, "a refused create leaves nothing");

    // The keys Herd generated for those clusters are not the project's keys.
    let (_, q) = app.get(&quotas_path(&pid), &tok).await;
    let used: Vec<u64> = ["clusters", "nodes", "volume_gb", "keys", "snapshots", "backups"]
        .iter()
        .map(|k| q[k]["used"].as_u64().unwrap())
        .collect();
    assert_eq!(used, [2, 3, 20, 1, 0, 0], "{q}");

    // Day-2 additions count too: nodes, snapshots, backups.
    make_active(&app, &first).await;
    let id = first["cluster"]["id"].as_str().unwrap();
    let (s, v) = app.post(&format!("/v1/clusters/{id}/nodes"), &tok, json!({"count": 1})).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "nodes", 3, 3, 1), "{v}");
    let (s, v) = app.post(&format!("/v1/clusters/{id}/snapshots"), &tok, json!({})).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "snapshots", 0, 0, 1), "{v}");
    let (s, v) = app.post(&format!("/v1/clusters/{id}/backups"), &tok, json!({"type": "full"})).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "backups", 0, 0, 1), "{v}");
    assert_eq!(count(&app, &format!("/v1/backups?cluster_id={id}"), &tok).await, 0);
    assert_eq!(count(&app, &format!("/v1/snapshots?cluster_id={id}"), &tok).await, 0);
    let (_, c) = app.get(&format!("/v1/clusters/{id}"), &tok).await;
    assert_eq!((c["status"].as_str(), c["nodes"].as_array().map(Vec::len)), (Some("active"), Some(1)), "{c}");

    // Raised, the same requests go through and are counted.
    let raised = json!({"clusters": 2, "nodes": 4, "volume_gb": 40, "keys": 1, "snapshots": 0, "backups": 1});
    let (s, v) = app.call(Method::PUT, &quotas_path(&pid), Some(&op), Some(raised)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = app.post(&format!("/v1/clusters/{id}/backups"), &tok, json!({"type": "full"})).await;
    assert_eq!(s, 202, "{v}");
    let (_, q) = app.get(&quotas_path(&pid), &tok).await;
    assert_eq!(q["backups"], json!({"limit": 1, "used": 1, "overridden": true}), "{q}");

    // A limit lowered below usage removes nothing; it only stops new requests.
    let (s, v) = app.call(Method::PUT, &quotas_path(&pid), Some(&op), Some(json!({"clusters": 1}))).await;
    assert_eq!((s, v["clusters"]["used"].as_u64(), v["clusters"]["limit"].as_u64()), (200, Some(2), Some(1)), "{v}");
    let (s, v) = app.post("/v1/clusters", &tok, cluster("more", 1, 1)).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "clusters", 1, 2, 1), "{v}");
    assert_eq!(count(&app, "/v1/clusters", &tok).await, 2);
}

async fn concurrent_creates_never_overshoot_a_quota(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("team-race").await;
    let (s, v) = app
        .call(Method::PUT, &quotas_path(&pid), Some(&app.admin_token), Some(json!({"clusters": 3, "keys": 2})))
        .await;
    assert_eq!(s, 200, "{v}");
    let creates = (0..8).map(|i| app.post("/v1/clusters", &tok, cluster(&format!("race-{i}"), 1, 1)));
    let keys = (0..6).map(|i| app.post("/v1/keys", &tok, json!({"name": format!("k{i}")})));
    let (created, keyed) = tokio::join!(futures_util::future::join_all(creates), futures_util::future::join_all(keys));
    let statuses = |rs: &[(u16, Value)]| {
        let mut s: Vec<u16> = rs.iter().map(|(s, _)| *s).collect();
        s.sort();
        s
    };
    let details = |rs: &[(u16, Value)]| rs.iter().map(|(_, v)| v["detail"].to_string()).collect::<Vec<_>>().join("; ");
    assert_eq!(statuses(&created), [202, 202, 202, 403, 403, 403, 403, 403], "{}", details(&created));
    assert_eq!(statuses(&keyed), [201, 201, 403, 403, 403, 403], "{}", details(&keyed));
    assert!(created.iter().filter(|(s, _)| *s == 403).all(|(_, v)| v["code"] == "quota_exceeded"));
    assert_eq!(count(&app, "/v1/clusters", &tok).await, 3);
    // The list also shows the keys Herd generated for the three clusters.
    let (_, keys) = app.get("/v1/keys", &tok).await;
    let mine = keys["items"].as_array().unwrap().iter().filter(|k| k["name"].as_str().unwrap().starts_with('k'));
    assert_eq!(mine.count(), 2, "{keys}");
}

async fn settings_give_the_defaults(b: Backend) {
    let app = TestApp::spawn_tweaked(b, false, |s| {
        s.quotas = herd_core::quota::Limits { clusters: 1, ..herd_core::quota::Limits::defaults() };
    })
    .await;
    let (pid, tok) = app.member("team-small").await;
    let (s, v) = app.post("/v1/clusters", &tok, cluster("only", 1, 1)).await;
    assert_eq!(s, 202, "{v}");
    let (s, v) = app.post("/v1/clusters", &tok, cluster("second", 1, 1)).await;
    assert_eq!(refusal(s, &v), (403, "quota_exceeded", "clusters", 1, 1, 1), "{v}");
    // An operator's override beats the default.
    let (s, _) = app.call(Method::PUT, &quotas_path(&pid), Some(&app.admin_token), Some(json!({"clusters": 2}))).await;
    assert_eq!(s, 200);
    let (s, v) = app.post("/v1/clusters", &tok, cluster("second", 1, 1)).await;
    assert_eq!(s, 202, "{v}");
}
