//! Security findings reproduced through the API and shown refused. (The SQL
//! escalations are in datastores/tests/postgresql.rs, on a real PostgreSQL; delivery-
//! time hook checks in worker/tests/steps.rs.)

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use serde_json::{Value, json};

fn cluster_with_hook(name: &str, url: &str) -> Value {
    json!({
        "name": name, "datastore": "postgresql", "version": "15", "flavor": "local.small",
        "hooks": {"post_failover": {"url": url, "secret": "a-hook-secret-that-is-long"}},
    })
}

fn field_message<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v["errors"].as_array()?.iter().find(|e| e["field"] == field)?["message"].as_str()
}

/// A webhook is a request Herd makes from inside the fleet's network: no form of an
/// internal address is accepted (the harness names 127.0.0.1 alone as an exception).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_cannot_target_internal_addresses() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, tok) = app.member("ssrf").await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:2379/v3/kv/range",
        "http://localhost:8080/v1/projects",
        "http://2130706434/",
        "http://0x7f.0.0.2/",
        "http://[::ffff:127.0.0.1]:2379/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://10.0.0.1/",
        "http://192.168.0.1:80/",
        "http://[fd12::1]/",
        "http://0.0.0.0:8080/",
    ] {
        let (s, v) = app.post("/v1/clusters", &tok, cluster_with_hook("c", url)).await;
        assert_eq!((s, v["code"].as_str()), (422, Some("validation_failed")), "{url}: {v}");
        let msg = field_message(&v, "hooks.post_failover.url").unwrap_or_else(|| panic!("{url}: {v}"));
        assert!(msg.contains("may not reach"), "{url}: {msg}");
    }
    let (s, v) = app.post("/v1/clusters", &tok, cluster_with_hook("c", "http://no-such-host.invalid/h")).await;
    assert_eq!(s, 422, "{v}");
    assert!(field_message(&v, "hooks.post_failover.url").unwrap().contains("does not resolve"), "{v}");
    let (_, list) = app.get("/v1/clusters", &tok).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing created");

    // The named exception is honoured; a PATCH is checked like a create and, refused,
    // changes nothing.
    let (s, v) = app.post("/v1/clusters", &tok, cluster_with_hook("c", "http://127.0.0.1:9/post")).await;
    assert_eq!(s, 202, "{v}");
    let id = v["cluster"]["id"].as_str().unwrap().to_owned();
    let bad =
        json!({"hooks": {"pre_failover": {"url": "http://169.254.169.254/", "secret": "a-hook-secret-that-is-long"}}});
    let (s, v) = app.call(Method::PATCH, &format!("/v1/clusters/{id}"), Some(&tok), Some(bad)).await;
    assert_eq!(s, 422, "{v}");
    assert!(field_message(&v, "hooks.pre_failover.url").unwrap().contains("link-local"), "{v}");
    let (_, c) = app.get(&format!("/v1/clusters/{id}"), &tok).await;
    assert_eq!(c["hooks"], json!({"pre_failover": null, "post_failover": {"url": "http://127.0.0.1:9/post"}}));
}
