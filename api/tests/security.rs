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

/// An operator runs Herd; a project's admin manages that project's tokens and sees
/// nothing of other projects (it once listed every project and made tokens anywhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_admin_reaches_its_own_project_only() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let op = app.admin_token.clone();
    let mut ids = Vec::new();
    for name in ["team-a", "team-b"] {
        let (s, p) = app.post("/v1/projects", &op, json!({"name": name})).await;
        assert_eq!(s, 201, "{p}");
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    let (a, b) = (&ids[0], &ids[1]);
    let token = |project: &str, role: &str, by: String| {
        let path = format!("/v1/projects/{project}/tokens");
        let app = &app;
        let role = role.to_owned();
        async move { app.post(&path, &by, json!({"role": role})).await }
    };
    let (s, v) = token(b, "admin", op.clone()).await;
    assert_eq!(s, 201, "{v}");
    let admin_b = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["role"], "admin");

    // Its own project: tokens of the member and admin roles, never operator.
    let (s, v) = token(b, "member", admin_b.clone()).await;
    assert_eq!(s, 201, "{v}");
    let member_b = v["token"].as_str().unwrap().to_owned();
    let member_b_id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(token(b, "admin", admin_b.clone()).await.0, 201);
    let (s, v) = token(b, "operator", admin_b.clone()).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = app.get(&format!("/v1/projects/{b}/tokens"), &admin_b).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(3)), "{v}");
    // An operator token in its project is beyond it.
    let (s, v) = token(b, "operator", op.clone()).await;
    assert_eq!(s, 201, "{v}");
    let op_in_b = v["id"].as_str().unwrap().to_owned();
    let (s, _) = app.call(Method::DELETE, &format!("/v1/projects/{b}/tokens/{op_in_b}"), Some(&admin_b), None).await;
    assert_eq!(s, 403);
    let (s, _) =
        app.call(Method::DELETE, &format!("/v1/projects/{b}/tokens/{member_b_id}"), Some(&admin_b), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.get("/v1/clusters", &member_b).await;
    assert_eq!(s, 401, "a revoked token is refused");

    // Another project: absent, whatever the request.
    let (s, _) = token(a, "member", admin_b.clone()).await;
    assert_eq!(s, 404);
    let (s, _) = app.get(&format!("/v1/projects/{a}/tokens"), &admin_b).await;
    assert_eq!(s, 404);
    let (s, _) = app.call(Method::DELETE, &format!("/v1/projects/{a}/tokens/{op_in_b}"), Some(&admin_b), None).await;
    assert_eq!(s, 404);
    let (s, v) = app.get("/v1/projects", &admin_b).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["team-b"], "only its own project");
    let (s, v) = app.get("/v1/projects", &op).await;
    assert!(s == 200 && v["items"].as_array().unwrap().len() >= 3, "an operator sees every project: {v}");

    // Operator-only: projects, datastore versions (installed as root), provider settings.
    let (s, _) = app.post("/v1/projects", &admin_b, json!({"name": "team-c"})).await;
    assert_eq!(s, 403);
    let (s, v) = app
        .post("/v1/datastores/postgresql/versions", &admin_b, json!({"name": "16", "packages": ["postgresql-16"]}))
        .await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (_, v) = app.get("/v1/providers", &admin_b).await;
    assert!(v.as_array().unwrap().iter().all(|p| p["config"].is_null()), "{v}");
    let (_, v) = app.get("/v1/providers", &op).await;
    assert!(v.as_array().unwrap().iter().any(|p| !p["config"].is_null()), "{v}");
    // A member administers nothing, not even its own project.
    let (d, member_d) = app.member("team-d").await;
    let (s, v) = token(&d, "member", member_d).await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
}

/// The local provider's servers are the Herd machine, logged into as root: a member's
/// imported key (whose private half the member holds) would be a root shell on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_provider_takes_only_generated_keys_from_members() {
    use secrecy::ExposeSecret;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, tok) = app.member("keys").await;
    let mine = herd_core::sshkey::generate_ed25519();
    let (s, imported) =
        app.post("/v1/keys", &tok, json!({"name": "mine", "private_key": mine.private_openssh.expose_secret()})).await;
    assert_eq!((s, imported["imported"].as_bool()), (201, Some(true)), "{imported}");
    let (s, generated) = app.post("/v1/keys", &tok, json!({"name": "herds"})).await;
    assert_eq!((s, generated["imported"].as_bool()), (201, Some(false)), "{generated}");
    let with_key = |name: &str, key: &Value| {
        json!({"name": name, "datastore": "postgresql", "version": "15", "flavor": "local.small",
               "provider": "local", "key_id": key["id"]})
    };

    let (s, v) = app.post("/v1/clusters", &tok, with_key("a", &imported)).await;
    assert_eq!(s, 422, "{v}");
    assert!(field_message(&v, "key_id").unwrap().contains("only keys Herd generated"), "{v}");
    let (_, list) = app.get("/v1/clusters", &tok).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing created");
    let (s, v) = app.post("/v1/clusters", &tok, with_key("b", &generated)).await;
    assert_eq!(s, 202, "a generated key: {v}");

    // An operator runs the machine already: its own imported key is taken.
    let op = app.admin_token.clone();
    let theirs = herd_core::sshkey::generate_ed25519();
    let (s, k) =
        app.post("/v1/keys", &op, json!({"name": "ops", "private_key": theirs.private_openssh.expose_secret()})).await;
    assert_eq!(s, 201, "{k}");
    let (s, v) = app.post("/v1/clusters", &op, with_key("c", &k)).await;
    assert_eq!(s, 202, "{v}");
}
