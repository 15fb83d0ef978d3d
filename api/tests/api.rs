//! The REST API through HTTP on a random port, on SQLite and on PostgreSQL.

mod common;

use common::{Backend, TestApp};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

on_both_backends!(
    probes_docs_and_routing,
    every_v1_route_requires_a_token,
    key_lifecycle,
    datastore_catalogue_and_admin_rules,
    cluster_create_show_list_delete,
    clusters_are_invisible_to_other_projects,
    bad_input_gets_problem_json_never_500,
    secrets_are_encrypted_at_rest,
    tokens_can_be_revoked,
    ha_settings_and_day2_requests_are_validated,
    snapshot_requests_are_validated,
    backup_policies_are_validated_and_go_with_their_cluster,
    scheduled_runs_start_exactly_once_and_wait_for_a_busy_cluster,
    every_list_paginates,
);

/// Follows `next_cursor` from `path` with `limit`, returning the pages' sizes and
/// every item's `field`.
async fn walk(app: &TestApp, path: &str, tok: &str, limit: u32, field: &str) -> (Vec<usize>, Vec<String>) {
    let (mut sizes, mut seen) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (s, v) = app.get(&url, tok).await;
        assert_eq!(s, 200, "{url}: {v}");
        let items = v["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().map(|i| i[field].as_str().unwrap().to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (sizes, seen),
        }
        assert!(sizes.len() < 20, "{path}: the cursor never ends");
    }
}

/// Keys, projects, tokens and datastores come in pages like clusters: oldest first,
/// every item once, a bad limit or cursor refused.
async fn every_list_paginates(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("pages").await;
    let op = app.admin_token.clone();
    for name in ["k1", "k2", "k3"] {
        let (s, v) = app.post("/v1/keys", &tok, json!({"name": name})).await;
        assert_eq!(s, 201, "{v}");
    }
    assert_eq!(
        walk(&app, "/v1/keys", &tok, 2, "name").await,
        (vec![2, 1], vec!["k1".into(), "k2".into(), "k3".into()])
    );
    for name in ["t2", "t3", "t4"] {
        let (s, v) = app.post(&format!("/v1/projects/{pid}/tokens"), &op, json!({"name": name})).await;
        assert_eq!(s, 201, "{v}");
    }
    let (sizes, names) = walk(&app, &format!("/v1/projects/{pid}/tokens"), &op, 3, "name").await;
    assert_eq!((sizes, names), (vec![3, 1], vec!["token".into(), "t2".into(), "t3".into(), "t4".into()]));
    for name in ["p2", "p3"] {
        assert_eq!(app.post("/v1/projects", &op, json!({"name": name})).await.0, 201);
    }
    let (_, names) = walk(&app, "/v1/projects", &op, 1, "name").await;
    assert_eq!(names, ["admin", "pages", "p2", "p3"]);
    // A member sees one page with its own project.
    assert_eq!(walk(&app, "/v1/projects", &tok, 1, "name").await, (vec![1], vec!["pages".into()]));
    assert_eq!(app.post("/v1/datastores", &op, json!({"name": "postgres2", "manager": "postgresql"})).await.0, 201);
    assert_eq!(walk(&app, "/v1/datastores", &tok, 1, "name").await.1, ["postgresql", "postgres2"]);

    for path in ["/v1/keys", "/v1/projects", "/v1/datastores", &format!("/v1/projects/{pid}/tokens")] {
        for q in ["limit=0", "limit=101", "limit=x", "cursor=nope"] {
            let (s, v) = app.get(&format!("{path}?{q}"), &op).await;
            assert_eq!((s, v["code"].as_str()), (422, Some("validation_failed")), "{path}?{q}: {v}");
        }
    }
}

fn cluster_body(name: &str) -> Value {
    json!({"name": name, "datastore": "postgresql", "version": "15", "flavor": "local.small"})
}

async fn probes_docs_and_routing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (s, v) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));
    let (s, v) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((s, v), (200, json!({"status": "ok"})));

    // The served spec is the committed one.
    let (s, served) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(served, committed, "openapi/openapi.json drifted: run `UPDATE_OPENAPI=1 cargo test -p herd-openapi`");

    // `/docs` (as typed) leads to the docs page.
    let no_follow = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_follow.get(format!("{}/docs", app.base)).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/docs/");
    let r = app.req(Method::GET, "/docs", None).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.url().path().to_owned()), (200, "/docs/".to_owned()));

    // Docs render from vendored assets: the page and its script are served locally.
    let page = app.req(Method::GET, "/docs/", None).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let js = app.req(Method::GET, "/docs/swagger-ui-bundle.js", None).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 100_000, "vendored Swagger UI bundle is served");

    let (s, v) = app.call(Method::GET, "/nope", None, None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("route_not_found")));
    let (s, v) = app.call(Method::PUT, "/v1/keys", Some(&app.admin_token), None).await;
    assert_eq!((s, v["code"].as_str()), (405, Some("method_not_allowed")));
    let (s, v) = app.call(Method::GET, "/v1/nothing-here", Some(&app.admin_token), None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("route_not_found")));
    let (s, v) = app.call(Method::GET, "/problems/validation_failed", None, None).await;
    assert_eq!((s, v["status"].as_u64()), (200, Some(422)));
}

async fn every_v1_route_requires_a_token(b: Backend) {
    let app = TestApp::spawn(b).await;
    // Enumerated from the spec, so a new route cannot skip this check.
    let spec = herd_api::openapi();
    let mut checked = 0;
    for (path, item) in &spec.paths.paths {
        if !path.starts_with("/v1/") {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { uuid::Uuid::new_v4().to_string() } else { seg.to_owned() })
            .collect::<Vec<_>>()
            .join("/");
        let methods = [
            (item.get.is_some(), Method::GET),
            (item.post.is_some(), Method::POST),
            (item.put.is_some(), Method::PUT),
            (item.patch.is_some(), Method::PATCH),
            (item.delete.is_some(), Method::DELETE),
        ];
        for (present, m) in methods {
            if !present {
                continue;
            }
            let (s, v) = app.call(m.clone(), &concrete, None, Some(json!({"broken": true}))).await;
            assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "{m} {concrete}");
            let (s, _) = app.call(m.clone(), &concrete, Some("herd_not_a_real_token"), None).await;
            assert_eq!(s, 401, "{m} {concrete} with a bogus token");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations checked");
}

async fn key_lifecycle(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, tok) = app.member("keys").await;

    let (s, k) = app.post("/v1/keys", &tok, json!({"name": "laptop"})).await;
    assert_eq!(s, 201, "{k}");
    assert_eq!(k["algorithm"], "ssh-ed25519");
    assert!(k["public_key"].as_str().unwrap().starts_with("ssh-ed25519 "));
    assert!(k["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    assert!(!k.to_string().contains("PRIVATE"), "private key leaked: {k}");
    assert_eq!(
        k.as_object().unwrap().len(),
        7,
        "exactly id, name, algorithm, public_key, fingerprint, imported, created_at"
    );
    assert_eq!(k["imported"], false, "Herd generated it");

    let (s, _) = app.post("/v1/keys", &tok, json!({"name": "laptop"})).await;
    assert_eq!(s, 409);

    // Import: the fingerprint is the imported key's.
    let material = herd_core::sshkey::generate_ed25519();
    let (s, imported) = app
        .post("/v1/keys", &tok, json!({"name": "imported", "private_key": material.private_openssh.expose_secret()}))
        .await;
    assert_eq!(s, 201, "{imported}");
    assert_eq!(imported["fingerprint"], material.fingerprint.as_str());
    assert_eq!(imported["public_key"], material.public_key.as_str());
    assert_eq!(imported["imported"], true);

    let (s, e) = app.post("/v1/keys", &tok, json!({"name": "junk", "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----"})).await;
    assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("private_key")));

    // A key file picks its own KDF cost: 1,600 bcrypt rounds took seconds of an API
    // thread. Refused before deriving, and the probes keep answering meanwhile.
    let costly = herd_testkit::costly_openssh_key(1600);
    let t = std::time::Instant::now();
    let body = json!({"name": "costly", "private_key": costly, "passphrase": "pw"});
    let (post, health) = tokio::join!(app.post("/v1/keys", &tok, body), app.call(Method::GET, "/healthz", None, None));
    let (s, e) = post;
    assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("private_key")), "{e}");
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("1600 bcrypt rounds"), "{e}");
    assert_eq!(health.0, 200);
    assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());

    let (s, list) = app.get("/v1/keys", &tok).await;
    assert_eq!(s, 200);
    assert_eq!((list["items"].as_array().unwrap().len(), &list["next_cursor"]), (2, &json!(null)), "{list}");

    // A key in use by a cluster cannot be deleted.
    let id = k["id"].as_str().unwrap();
    let mut body = cluster_body("uses-key");
    body["key_id"] = json!(id);
    let (s, c) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!(s, 202, "{c}");
    assert_eq!(c["cluster"]["key_id"], id);
    let (s, e) = app.call(Method::DELETE, &format!("/v1/keys/{id}"), Some(&tok), None).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("key_in_use")));

    let iid = imported["id"].as_str().unwrap();
    let (s, _) = app.call(Method::DELETE, &format!("/v1/keys/{iid}"), Some(&tok), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.get(&format!("/v1/keys/{iid}"), &tok).await;
    assert_eq!(s, 404);
    let (s, _) = app.get("/v1/keys/not-a-uuid", &tok).await;
    assert_eq!(s, 404);
}

async fn datastore_catalogue_and_admin_rules(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, tok) = app.member("ds").await;
    let (s, list) = app.get("/v1/datastores", &tok).await;
    assert_eq!(s, 200);
    assert_eq!(
        list,
        json!({"items": [{"name": "postgresql", "manager": "postgresql", "versions": [{
            "version": "15", "active": true,
            "packages": ["postgresql-15", "patroni", "etcd-server", "pgbackrest"], "images": {}}]}],
            "next_cursor": null})
    );
    let (s, e) = app
        .post("/v1/datastores/postgresql/versions", &tok, json!({"version": "16", "packages": ["postgresql-16"]}))
        .await;
    assert_eq!((s, e["code"].as_str()), (403, Some("forbidden")));

    let admin = app.admin_token.clone();
    let (s, e) = app.post("/v1/datastores", &admin, json!({"name": "mysql", "manager": "mysql"})).await;
    assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("manager")));
    let (s, v) = app
        .post(
            "/v1/datastores/postgresql/versions",
            &admin,
            json!({"version": "16", "packages": ["postgresql-16", "patroni"], "images": {"ec2": "ami-123"}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["images"]["ec2"], "ami-123");
    let (s, _) =
        app.post("/v1/datastores/postgresql/versions", &admin, json!({"version": "16", "packages": ["x1"]})).await;
    assert_eq!(s, 409);
    let (s, e) = app
        .post("/v1/datastores/postgresql/versions", &admin, json!({"version": "17", "packages": ["bad pkg; rm -rf /"]}))
        .await;
    assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("packages[0]")));
    // Every form apt takes (and the manager installs): an architecture, a pin, both.
    let pinned =
        json!({"version": "17", "packages": ["postgresql-15=15.4-1", "libpq5:amd64", "libpq5:amd64=1:15.4-1~bpo12+1"]});
    let (s, v) = app.post("/v1/datastores/postgresql/versions", &admin, pinned).await;
    assert_eq!(s, 201, "{v}");
    let (s, e) = app
        .post(
            "/v1/datastores/postgresql/versions",
            &admin,
            json!({"version": "18", "packages": ["libpq5:", "pg=", "pg=x1"]}),
        )
        .await;
    let fields: Vec<&str> = e["errors"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
    assert_eq!((s, fields), (422, vec!["packages[0]", "packages[1]", "packages[2]"]), "{e}");
    let (s, _) = app.post("/v1/datastores/nosuch/versions", &admin, json!({"version": "1", "packages": ["abc"]})).await;
    assert_eq!(s, 404);
    // The manager decides what a version name means: PostgreSQL takes a major version.
    for bad in ["15.4", "latest", "9"] {
        let (s, e) =
            app.post("/v1/datastores/postgresql/versions", &admin, json!({"version": bad, "packages": ["abc"]})).await;
        assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("version")), "{bad}: {e}");
        assert!(e["errors"][0]["message"].as_str().unwrap().contains("major version"), "{bad}: {e}");
    }
    let (s, e) = app
        .post(
            "/v1/datastores",
            &admin,
            json!({"name": "pg2", "manager": "postgresql", "versions": [{"version": "x", "packages": ["abc"]}]}),
        )
        .await;
    assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("versions[0].version")), "{e}");

    let (s, v) = app
        .call(Method::PATCH, "/v1/datastores/postgresql/versions/16", Some(&admin), Some(json!({"active": false})))
        .await;
    assert_eq!((s, v["active"].as_bool()), (200, Some(false)));
    let mut body = cluster_body("on-16");
    body["version"] = json!("16");
    let (s, e) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("version")));

    // Providers: members see capabilities, only admins see configuration.
    let (s, p) = app.get("/v1/providers", &tok).await;
    assert_eq!(s, 200);
    assert_eq!(p[0]["name"], "local");
    assert_eq!(p[0]["kind"], "local");
    assert_eq!(p[0]["capabilities"]["volumes"], true);
    assert!(p[0].get("config").is_none(), "members must not see provider configuration: {p}");
    let (_, p) = app.get("/v1/providers", &app.admin_token).await;
    assert!(p[0]["config"].is_object(), "{p}");

    let (s, f) = app.get("/v1/flavors", &tok).await;
    assert_eq!(s, 200);
    assert_eq!(
        f,
        json!([{"id": "local.small", "provider": "local", "vcpus": 1, "ram_mb": 1024},
               {"id": "local.medium", "provider": "local", "vcpus": 2, "ram_mb": 4096}])
    );
}

async fn cluster_create_show_list_delete(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, tok) = app.member("clusters").await;
    let mut body = cluster_body("orders");
    body["nodes"] = json!(3);
    body["admin_password"] = json!("a-very-long-password");
    body["parameters"] = json!({"work_mem": "8MB", "max_connections": 200});
    let (s, created) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!(s, 202, "{created}");
    let c = &created["cluster"];
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["status"], "building");
    assert_eq!(c["nodes"].as_array().unwrap().len(), 3);
    assert!(c["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "building" && n["role"] == "unknown"));
    assert_eq!(c["endpoints"]["primary_uri"], Value::Null, "no endpoint before the cluster is built");
    assert_eq!(c["parameters"]["max_connections"], 200);
    assert_eq!(c["provider"], "local");
    assert_eq!(c["backup_repository"], "posix", "loopback hosts archive into the Herd host's directory");
    assert_eq!(c["backups_encrypted"], true, "new clusters encrypt their backups");

    // Until workers exist the task is honestly queued.
    let task_id = created["task_id"].as_str().unwrap();
    let (s, t) = app.get(&format!("/v1/tasks/{task_id}"), &tok).await;
    assert_eq!(s, 200);
    assert_eq!(
        (t["status"].as_str(), t["kind"].as_str(), t["progress"].as_i64()),
        (Some("queued"), Some("create_cluster"), Some(0))
    );
    assert_eq!(t["cluster_id"], id.as_str());

    let (s, shown) = app.get(&format!("/v1/clusters/{id}"), &tok).await;
    assert_eq!(s, 200);
    assert_eq!(shown["task"]["id"], task_id);
    assert_eq!(shown["name"], "orders");

    let (s, cred) = app.get(&format!("/v1/clusters/{id}/credentials"), &tok).await;
    assert_eq!(s, 200);
    assert_eq!((cred["username"].as_str(), cred["password"].as_str()), (Some("admin"), Some("a-very-long-password")));

    let (s, e) = app.post("/v1/clusters", &tok, cluster_body("orders")).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("cluster_exists")));

    // A generated password is long and random.
    let (_, other) = app.post("/v1/clusters", &tok, cluster_body("billing")).await;
    let oid = other["cluster"]["id"].as_str().unwrap();
    let (_, cred) = app.get(&format!("/v1/clusters/{oid}/credentials"), &tok).await;
    assert!(cred["password"].as_str().unwrap().len() >= 20);
    app.post("/v1/clusters", &tok, cluster_body("carts")).await;

    // Keyset pagination visits every cluster once, oldest first.
    let (s, p1) = app.get("/v1/clusters?limit=2", &tok).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = p1["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orders", "billing"]);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = app.get(&format!("/v1/clusters?limit=2&cursor={cursor}"), &tok).await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    assert_eq!(p2["items"][0]["name"], "carts");
    assert_eq!(p2["next_cursor"], Value::Null);
    let (_, f) = app.get("/v1/clusters?name=billing", &tok).await;
    assert_eq!(f["items"].as_array().unwrap().len(), 1);
    let (_, f) = app.get("/v1/clusters?status=active", &tok).await;
    assert_eq!(f["items"].as_array().unwrap().len(), 0);
    let (_, f) = app.get("/v1/clusters?status=building&datastore=postgresql", &tok).await;
    assert_eq!(f["items"].as_array().unwrap().len(), 3);
    let (s, e) = app.get("/v1/clusters?status=bogus&limit=1000&cursor=zzz", &tok).await;
    assert_eq!(s, 422);
    let fields: Vec<&str> = e["errors"].as_array().unwrap().iter().map(|x| x["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["status", "limit", "cursor"]);

    // Delete cancels the queued build and is idempotent.
    let (s, d) = app.call(Method::DELETE, &format!("/v1/clusters/{id}"), Some(&tok), None).await;
    assert_eq!(s, 202);
    let del_task = d["task_id"].as_str().unwrap().to_owned();
    let (_, d2) = app.call(Method::DELETE, &format!("/v1/clusters/{id}"), Some(&tok), None).await;
    assert_eq!(d2["task_id"], del_task.as_str());
    let (_, t) = app.get(&format!("/v1/tasks/{task_id}"), &tok).await;
    assert_eq!(t["status"], "cancelled");
    let (_, shown) = app.get(&format!("/v1/clusters/{id}"), &tok).await;
    assert_eq!(shown["status"], "deleting");
    assert_eq!(shown["task"]["id"], del_task.as_str());

    // History: newest first, paginated.
    let (s, ev) = app.get(&format!("/v1/clusters/{id}/events?limit=2"), &tok).await;
    assert_eq!(s, 200);
    let msgs: Vec<&str> = ev["items"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(msgs[0], "delete requested");
    assert!(msgs[1].starts_with("task cancelled"), "{msgs:?}");
    let cursor = ev["next_cursor"].as_str().unwrap();
    let (_, ev2) = app.get(&format!("/v1/clusters/{id}/events?limit=2&cursor={cursor}"), &tok).await;
    assert!(ev2["items"][0]["message"].as_str().unwrap().starts_with("create requested"));
    assert_eq!(ev2["next_cursor"], Value::Null);
}

async fn clusters_are_invisible_to_other_projects(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, a) = app.member("team-a").await;
    let (_, other) = app.member("team-b").await;
    let (_, created) = app.post("/v1/clusters", &a, cluster_body("private")).await;
    let id = created["cluster"]["id"].as_str().unwrap();
    let task = created["task_id"].as_str().unwrap();
    let key = created["cluster"]["key_id"].as_str().unwrap();
    for path in [
        format!("/v1/clusters/{id}"),
        format!("/v1/clusters/{id}/credentials"),
        format!("/v1/clusters/{id}/events"),
        format!("/v1/tasks/{task}"),
        format!("/v1/keys/{key}"),
    ] {
        let (s, e) = app.get(&path, &other).await;
        assert_eq!((s, e["code"].as_str()), (404, Some("not_found")), "{path}");
        let (s, _) = app.get(&path, &a).await;
        assert_eq!(s, 200, "{path} for its owner");
    }
    let (s, _) = app.call(Method::DELETE, &format!("/v1/clusters/{id}"), Some(&other), None).await;
    assert_eq!(s, 404);
    let (s, _) = app.call(Method::DELETE, &format!("/v1/keys/{key}"), Some(&other), None).await;
    assert_eq!(s, 404);
    let (_, l) = app.get("/v1/clusters", &other).await;
    assert_eq!(l["items"], json!([]));
    let (_, l) = app.get("/v1/keys", &other).await;
    assert_eq!(l["items"], json!([]));
    // The same name is free in another project.
    let (s, _) = app.post("/v1/clusters", &other, cluster_body("private")).await;
    assert_eq!(s, 202);
    // The owner's cluster is still building, untouched.
    let (_, c) = app.get(&format!("/v1/clusters/{id}"), &a).await;
    assert_eq!(c["status"], "building");
}

async fn bad_input_gets_problem_json_never_500(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, tok) = app.member("bad").await;
    let field_of = |v: &Value| v["errors"][0]["field"].as_str().map(str::to_owned);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "Bad_Name", "datastore": "postgresql", "version": "15", "flavor": "local.small"}), "name"),
        (json!({"name": "-x", "datastore": "postgresql", "version": "15", "flavor": "local.small"}), "name"),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "nodes": 0}),
            "nodes",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "nodes": 10}),
            "nodes",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "volume_gb": 0}),
            "volume_gb",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "volume_gb": 16385}),
            "volume_gb",
        ),
        (json!({"name": "a", "datastore": "mongodb", "version": "15", "flavor": "local.small"}), "datastore"),
        (json!({"name": "a", "datastore": "postgresql", "version": "9.6", "flavor": "local.small"}), "version"),
        (json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "huge"}), "flavor"),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "provider": "gcp"}),
            "provider",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "admin_password": "short"}),
            "admin_password",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "key_id": uuid::Uuid::new_v4()}),
            "key_id",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "parameters": {"x; drop": 1}}),
            "parameters.x; drop",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "parameters": {"work_mem": [1]}}),
            "parameters.work_mem",
        ),
        (
            // A newline would end the quoted value in postgresql.conf and start a line
            // of the tenant's choosing (and leave the file unparsable).
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small",
                   "parameters": {"search_path": "public\nlisten_addresses = '*'"}}),
            "parameters.search_path",
        ),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "nodes": "three"}),
            "nodes",
        ),
        (json!({"name": 5, "datastore": "postgresql", "version": "15", "flavor": "local.small"}), "name"),
        (
            json!({"name": "a", "datastore": "postgresql", "version": "15", "flavor": "local.small", "colour": "red"}),
            "colour",
        ),
        (json!({"datastore": "postgresql", "version": "15", "flavor": "local.small"}), "body"),
    ];
    for (body, field) in cases {
        let (s, e) = app.post("/v1/clusters", &tok, body.clone()).await;
        assert_eq!(s, 422, "{body} -> {e}");
        assert_eq!(e["code"], "validation_failed");
        assert_eq!(field_of(&e).as_deref(), Some(field), "{body} -> {e}");
    }
    // Every field error at once.
    let (s, e) = app
        .post(
            "/v1/clusters",
            &tok,
            json!({"name": "NO", "datastore": "x", "version": "1", "flavor": "y", "nodes": 99, "volume_gb": -1}),
        )
        .await;
    assert_eq!(s, 422);
    assert!(e["errors"].as_array().unwrap().len() >= 5, "{e}");

    let send_raw = |body: Vec<u8>, ct: &'static str| {
        app.req(Method::POST, "/v1/clusters", Some(&tok)).header("content-type", ct).body(body).send()
    };
    let (s, e) = common::read(send_raw(b"{\"name\": ".to_vec(), "application/json").await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("malformed_json")));
    let (s, e) = common::read(send_raw(vec![b' '; 2 * 1024 * 1024], "application/json").await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (413, Some("payload_too_large")));
    let (s, e) = common::read(send_raw(b"name=a".to_vec(), "application/x-www-form-urlencoded").await.unwrap()).await;
    assert_eq!((s, e["code"].as_str()), (415, Some("unsupported_media_type")));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (s, _) = common::read(send_raw(deep.into_bytes(), "application/json").await.unwrap()).await;
    assert!(s == 400 || s == 422, "deep nesting -> {s}");

    // Odd shapes on every body-taking route: always a 4xx problem, never a 500.
    let odd = [
        json!(null),
        json!([]),
        json!("x"),
        json!(1),
        json!({}),
        json!({"name": null}),
        json!({"name": "x".repeat(10_000)}),
    ];
    for path in ["/v1/keys", "/v1/clusters", "/v1/projects", "/v1/datastores", "/v1/datastores/postgresql/versions"] {
        for body in &odd {
            let (s, e) = app.post(path, &app.admin_token, body.clone()).await;
            assert!((400..500).contains(&s), "{path} {body} -> {s} {e}");
        }
    }
    // Nothing was created by any of that.
    let (_, l) = app.get("/v1/clusters", &tok).await;
    assert_eq!(l["items"], json!([]));
}

async fn secrets_are_encrypted_at_rest(b: Backend) {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let app = TestApp::spawn(b).await;
    let (_, tok) = app.member("secrets").await;
    let password = "correct-horse-battery-staple-42";
    let material = herd_core::sshkey::generate_ed25519();
    let pem = material.private_openssh.expose_secret().to_owned();
    // The key body's base64 line: what would appear if it were stored in clear.
    let body_line = pem.lines().nth(1).unwrap().to_owned();
    let (s, k) = app.post("/v1/keys", &tok, json!({"name": "k", "private_key": pem})).await;
    assert_eq!(s, 201);
    let mut body = cluster_body("vault");
    body["admin_password"] = json!(password);
    // (An imported key would be refused on the local provider: tests/security.rs.)
    assert_eq!(k["imported"], true);
    body["hooks"] = json!({"post_failover": {"url": "http://127.0.0.1:9/h", "secret": password}});
    let (s, _) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!(s, 202);

    let db = Database::connect(app.database_url()).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT admin_password_enc AS v FROM clusters UNION ALL SELECT hooks_enc FROM clusters \
             UNION ALL SELECT private_key_enc FROM ssh_keys UNION ALL SELECT token_hash FROM api_tokens",
        ))
        .await
        .unwrap();
    assert!(rows.len() >= 5);
    for r in rows {
        let v: String = r.try_get("", "v").unwrap();
        assert!(
            !v.contains(password) && !v.contains(&body_line) && !v.contains(&app.admin_token),
            "clear secret stored: {v}"
        );
    }
    db.close().await.unwrap();
    if let Backend::Sqlite = b {
        // The raw bytes of the database and its WAL hold no clear secret either.
        let mut raw = Vec::new();
        for f in ["herd.db", "herd.db-wal"] {
            if let Ok(bytes) = std::fs::read(app.state_dir.path().join(f)) {
                raw.extend(bytes);
            }
        }
        let hay = String::from_utf8_lossy(&raw);
        assert!(hay.contains("vault"), "sanity: the cluster row is in the file");
        assert!(!hay.contains(password));
        assert!(!hay.contains(&body_line));
        assert!(!hay.contains(&app.admin_token));
    }
}

async fn tokens_can_be_revoked(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("revoke").await;
    let (s, e) = app.post("/v1/projects", &tok, json!({"name": "escalate"})).await;
    assert_eq!((s, e["code"].as_str()), (403, Some("forbidden")));
    let (s, list) = app.get(&format!("/v1/projects/{pid}/tokens"), &app.admin_token).await;
    assert_eq!(s, 200);
    let list = &list["items"];
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("token").is_none() && list[0].get("token_hash").is_none());
    let tid = list[0]["id"].as_str().unwrap();
    let (s, _) = app.get("/v1/keys", &tok).await;
    assert_eq!(s, 200);
    let (s, _) =
        app.call(Method::DELETE, &format!("/v1/projects/{pid}/tokens/{tid}"), Some(&app.admin_token), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.get("/v1/keys", &tok).await;
    assert_eq!(s, 401);
    let (s, _) = app.post("/v1/projects", &app.admin_token, json!({"name": "revoke"})).await;
    assert_eq!(s, 409);
    let (s, _) = app.post(&format!("/v1/projects/{}/tokens", uuid::Uuid::new_v4()), &app.admin_token, json!({})).await;
    assert_eq!(s, 404);
}

async fn ha_settings_and_day2_requests_are_validated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, tok) = app.member("ha").await;
    let hook_secret = "a-hook-secret-that-is-long";

    // Create: bad policy, node options and hooks are all reported at once.
    let mut body = cluster_body("bad");
    body["nodes"] = json!(2);
    body["ha"] = json!({"profile": "turbo", "ttl": 3, "synchronous_strict": true, "maximum_lag_on_failover": -1});
    body["node_options"] = json!([{"no_failover": true}, {"no_failover": true, "priority": 101}]);
    body["hooks"] = json!({"pre_failover": {"url": "ftp://x", "secret": "short"}});
    let (s, v) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    for f in [
        "ha.profile",
        "ha",
        "ha.synchronous_strict",
        "ha.maximum_lag_on_failover",
        "node_options[1].priority",
        "node_options",
        "hooks.pre_failover.url",
        "hooks.pre_failover.secret",
    ] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }
    let (_, list) = app.get("/v1/clusters", &tok).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing created");

    // A good create: local provider -> fast profile; hooks shown without secrets.
    let mut body = cluster_body("ha");
    body["nodes"] = json!(3);
    body["synchronous"] = json!(true);
    body["ha"] = json!({"synchronous_strict": true});
    body["node_options"] = json!([{"priority": 50}, {"no_failover": true}]);
    body["hooks"] = json!({"post_failover": {"url": "http://127.0.0.1:9/post", "secret": hook_secret}});
    let (s, v) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!(s, 202, "{v}");
    let c = &v["cluster"];
    let id = c["id"].as_str().unwrap().to_owned();
    assert_eq!(
        c["ha"],
        json!({"ttl": 5, "loop_wait": 1, "retry_timeout": 2, "synchronous_strict": true, "maximum_lag_on_failover": 1048576})
    );
    assert_eq!(c["hooks"], json!({"pre_failover": null, "post_failover": {"url": "http://127.0.0.1:9/post"}}));
    assert_eq!((c["nodes"][0]["priority"].as_i64(), c["nodes"][1]["no_failover"].as_bool()), (Some(50), Some(true)));
    assert!(!v.to_string().contains(hook_secret));

    // Day-2 requests on a cluster still building: refused, nothing queued.
    let node0 = c["nodes"][0]["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        (format!("/v1/clusters/{id}/actions"), json!({"action": "restart"})),
        (format!("/v1/clusters/{id}/nodes"), json!({"count": 1})),
    ] {
        let (s, v) = app.post(&path, &tok, body).await;
        assert_eq!((s, v["code"].as_str()), (409, Some("cluster_not_ready")), "{path}: {v}");
    }
    let (s, v) = app
        .call(
            Method::PATCH,
            &format!("/v1/clusters/{id}"),
            Some(&tok),
            Some(json!({"parameters": {"work_mem": "4MB"}})),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("cluster_not_ready")), "{v}");
    // Bad requests are 422 whatever the state.
    for (path, body, field) in [
        (format!("/v1/clusters/{id}/actions"), json!({"action": "explode"}), "action"),
        (format!("/v1/clusters/{id}/actions"), json!({"action": "failover", "node_id": node0}), "node_id"),
        (format!("/v1/clusters/{id}/actions"), json!({"action": "reinitialize"}), "node_id"),
        (
            format!("/v1/clusters/{id}/actions"),
            json!({"action": "restart", "node_id": uuid::Uuid::new_v4()}),
            "node_id",
        ),
        (format!("/v1/clusters/{id}/nodes"), json!({"count": 0}), "count"),
        (format!("/v1/clusters/{id}/nodes/{node0}/power"), json!({"state": "sideways"}), "state"),
        (format!("/v1/clusters/{id}/nodes/{node0}/power"), json!({"state": "on", "force": true}), "force"),
    ] {
        let (s, v) = app.post(&path, &tok, body.clone()).await;
        assert_eq!(s, 422, "{body}: {v}");
        assert!(
            v["errors"].as_array().unwrap().iter().any(|e| e["field"].as_str().unwrap().starts_with(field)),
            "{body}: {v}"
        );
    }
    let (s, v) = app
        .call(Method::PATCH, &format!("/v1/clusters/{id}"), Some(&tok), Some(json!({"ha": {"loop_wait": 10}})))
        .await;
    assert_eq!(s, 422, "loop_wait + 2 * retry_timeout > ttl: {v}");
    let (s, v) = app
        .call(
            Method::PATCH,
            &format!("/v1/clusters/{id}"),
            Some(&tok),
            Some(json!({"parameters": {"max_connections": "lots"}})),
        )
        .await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("parameters.max_connections")), "{v}");
    // Herd-only settings change at once, without a task, in any state.
    let (s, v) = app
        .call(Method::PATCH, &format!("/v1/clusters/{id}"), Some(&tok), Some(json!({"auto_heal": true, "hooks": {}})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["task_id"].clone(), v["cluster"]["auto_heal"].clone()), (Value::Null, json!(true)));
    assert_eq!(v["cluster"]["hooks"], json!({"pre_failover": null, "post_failover": null}));
    let (s, v) = app
        .call(Method::PATCH, &format!("/v1/clusters/{id}/nodes/{node0}"), Some(&tok), Some(json!({"priority": 7})))
        .await;
    assert_eq!((s, v["node"]["priority"].as_i64(), v["task_id"].clone()), (200, Some(7), Value::Null), "{v}");

    // Backups: not while building; unknown ids 404; restores need a completed backup.
    let (s, v) = app.post(&format!("/v1/clusters/{id}/backups"), &tok, json!({"type": "full"})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("cluster_not_ready")), "{v}");
    let (s, v) = app.post(&format!("/v1/clusters/{id}/backups"), &tok, json!({"type": "weekly"})).await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = app.get(&format!("/v1/backups?cluster_id={id}"), &tok).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    let (s, _) = app.get("/v1/backups?cluster_id=nope", &tok).await;
    assert_eq!(s, 422);
    let nobody = uuid::Uuid::new_v4();
    let (s, _) = app.get(&format!("/v1/backups/{nobody}"), &tok).await;
    assert_eq!(s, 404);
    let (s, _) = app.call(Method::DELETE, &format!("/v1/backups/{nobody}"), Some(&tok), None).await;
    assert_eq!(s, 404);
    let mut body = cluster_body("restored");
    body["restore"] = json!({"source_cluster_id": id});
    let (s, v) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("restore.source_cluster_id")), "{v}");
    let (s, w) = app.get(&format!("/v1/clusters/{id}/recovery-window"), &tok).await;
    assert_eq!((s, w), (200, json!({"earliest": null, "latest": null})));

    // The nodes' role callback: signed by the member with its own credential, over
    // timestamp and exact body; checked before the body is parsed.
    let cb = format!("/callbacks/patroni/{id}");
    let key = herd_core::crypto::MasterKey::from_base64(app.settings.master_key.as_ref().unwrap()).unwrap();
    let credential = |cluster: &str, member: &str| {
        let id = herd_core::hooks::callback_credential_id(cluster, member);
        key.derive_token(herd_core::hooks::CALLBACK_PURPOSE, &id).expose_secret().to_owned()
    };
    let now = chrono::Utc::now().timestamp();
    let report = |member: &str| {
        json!({"member": member, "action": "on_role_change", "role": "master", "scope": "x"}).to_string().into_bytes()
    };
    let send = |member: &str, stamp: i64, signature: String, body: Vec<u8>| {
        let r = app
            .req(Method::POST, &cb, None)
            .header("content-type", "application/json")
            .header("x-herd-member", member)
            .header("x-herd-timestamp", stamp.to_string())
            .header("x-herd-signature", signature)
            .body(body);
        async move { common::read(r.send().await.unwrap()).await }
    };
    let sign = |cred: &str, stamp: i64, body: &[u8]| herd_core::hooks::callback_signature(cred, stamp, body);
    let good = credential(&id, "ha-1");
    let (s, v) = app.call(Method::POST, &cb, None, Some(serde_json::from_slice(&report("ha-1")).unwrap())).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "unsigned");
    let (s, _) = app.call(Method::POST, &cb, Some(&tok), Some(serde_json::from_slice(&report("ha-1")).unwrap())).await;
    assert_eq!(s, 401, "an API token is not a signature");
    let (s, _) = app.call(Method::POST, &cb, Some(&good), Some(serde_json::from_slice(&report("ha-1")).unwrap())).await;
    assert_eq!(s, 401, "the credential itself is not accepted as a bearer token");
    let other_cluster = credential(&uuid::Uuid::new_v4().to_string(), "ha-1");
    for (what, member, stamp, signature, body) in [
        ("another cluster's credential", "ha-1", now, sign(&other_cluster, now, &report("ha-1")), report("ha-1")),
        (
            "another member's credential",
            "ha-1",
            now,
            sign(&credential(&id, "ha-0"), now, &report("ha-1")),
            report("ha-1"),
        ),
        ("a body changed after signing", "ha-1", now, sign(&good, now, &report("ha-0")), report("ha-1")),
        ("a timestamp changed after signing", "ha-1", now, sign(&good, now - 1, &report("ha-1")), report("ha-1")),
        ("a replay from 5 minutes ago", "ha-1", now - 300, sign(&good, now - 300, &report("ha-1")), report("ha-1")),
        ("a timestamp 5 minutes ahead", "ha-1", now + 300, sign(&good, now + 300, &report("ha-1")), report("ha-1")),
        ("not a JSON body, unsigned", "ha-1", now, String::new(), b"{not json".to_vec()),
    ] {
        let (s, v) = send(member, stamp, signature, body).await;
        assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "{what}: {v}");
    }
    // Signed, but it speaks for another member than the one that signed.
    let (s, v) = send("ha-1", now, sign(&good, now, &report("ha-0")), report("ha-0")).await;
    assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("member")), "{v}");
    // Signed by a member the cluster does not have.
    let ghost = credential(&id, "nobody");
    let (s, _) = send("nobody", now, sign(&ghost, now, &report("nobody")), report("nobody")).await;
    assert_eq!(s, 404);
    let (s, v) = send("ha-1", now, sign(&good, now, &report("ha-1")), report("ha-1")).await;
    assert_eq!(s, 204, "{v}");
    let (_, c) = app.get(&format!("/v1/clusters/{id}"), &tok).await;
    assert_eq!(c["nodes"][1]["role"], "primary", "{c}");
    let (_, ev) = app.get(&format!("/v1/clusters/{id}/events"), &tok).await;
    assert!(ev["items"].as_array().unwrap().iter().any(|e| e["step"] == "on_role_change"), "{ev}");
}

async fn snapshot_requests_are_validated(b: Backend) {
    let app = TestApp::spawn_with(b, true).await;
    let tok = app.admin_token.clone();
    let (s, v) = app.post("/v1/clusters", &tok, cluster_body("snappy")).await;
    assert_eq!(s, 202, "{v}");
    let id = v["cluster"]["id"].as_str().unwrap().to_owned();

    // Not while building; unknown fields refused; nothing created either way.
    let (s, v) = app.post(&format!("/v1/clusters/{id}/snapshots"), &tok, json!({})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("cluster_not_ready")), "{v}");
    let (s, v) = app.post(&format!("/v1/clusters/{id}/snapshots"), &tok, json!({"name": "x"})).await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = app.get(&format!("/v1/snapshots?cluster_id={id}"), &tok).await;
    assert_eq!((s, v["items"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    let (s, _) = app.get("/v1/snapshots?cluster_id=nope", &tok).await;
    assert_eq!(s, 422);
    let nobody = uuid::Uuid::new_v4();
    let (s, _) = app.get(&format!("/v1/snapshots/{nobody}"), &tok).await;
    assert_eq!(s, 404);
    let (s, _) = app.call(Method::DELETE, &format!("/v1/snapshots/{nobody}"), Some(&tok), None).await;
    assert_eq!(s, 404);
    let (s, _) = app.post(&format!("/v1/clusters/{nobody}/snapshots"), &tok, json!({})).await;
    assert_eq!(s, 404);

    // A provider that cannot snapshot: a clear 422 whatever the cluster's state.
    let mut body = cluster_body("nosnap");
    body["provider"] = json!("nosnap");
    let (s, v) = app.post("/v1/clusters", &tok, body).await;
    assert_eq!(s, 202, "{v}");
    let other = v["cluster"]["id"].as_str().unwrap().to_owned();
    let (s, v) = app.post(&format!("/v1/clusters/{other}/snapshots"), &tok, json!({})).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("snapshots_unsupported")), "{v}");

    // Restores name exactly one source; a snapshot restore takes no backup or time.
    for (restore, field) in [
        (json!({"snapshot_id": nobody}), "restore.snapshot_id"),
        (json!({"snapshot_id": nobody, "source_cluster_id": id}), "restore"),
        (json!({}), "restore"),
        (json!({"snapshot_id": nobody, "target_time": "2026-12-01T00:00:00Z"}), "restore.target_time"),
        (json!({"snapshot_id": nobody, "backup_id": nobody}), "restore.backup_id"),
    ] {
        let mut body = cluster_body("from-snap");
        body["restore"] = restore.clone();
        let (s, v) = app.post("/v1/clusters", &tok, body).await;
        assert_eq!(s, 422, "{restore}: {v}");
        assert!(v["errors"].as_array().unwrap().iter().any(|e| e["field"] == field), "{restore}: {v}");
    }
    let (_, list) = app.get("/v1/clusters", &tok).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "nothing created by a refused request: {list}");
    let (_, list) = app.get("/v1/snapshots", &tok).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

fn policy_path(id: &str) -> String {
    format!("/v1/clusters/{id}/backup-policy")
}

fn fields_of(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .map(|a| a.iter().map(|e| e["field"].as_str().unwrap_or("").to_owned()).collect())
        .unwrap_or_default()
}

async fn backup_policies_are_validated_and_go_with_their_cluster(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, tok) = app.member("policies").await;
    let (_, other) = app.member("strangers").await;
    let (s, v) = app.post("/v1/clusters", &tok, cluster_body("scheduled")).await;
    assert_eq!(s, 202, "{v}");
    let id = v["cluster"]["id"].as_str().unwrap().to_owned();
    let put = |token: &str, path: String, body: Value| {
        let token = token.to_owned();
        let app = &app;
        async move { app.call(Method::PUT, &path, Some(&token), Some(body)).await }
    };

    // None yet: 404 (GET), 204 (DELETE: nothing to remove).
    let (s, v) = app.get(&policy_path(&id), &tok).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("no backup policy"), "{v}");
    let (s, _) = app.call(Method::DELETE, &policy_path(&id), Some(&tok), None).await;
    assert_eq!(s, 204);

    // Every invalid field at once.
    let bad = json!({"full_schedule": "61 * * * *", "diff_schedule": "", "incremental_schedule": "0 3 1 * 1",
        "retention_full": 0});
    let (s, v) = put(&tok, policy_path(&id), bad).await;
    assert_eq!(s, 422, "{v}");
    let mut fields = fields_of(&v);
    fields.sort();
    assert_eq!(fields, ["diff_schedule", "full_schedule", "incremental_schedule", "retention_full"], "{v}");
    assert!(v.to_string().contains("both day-of-month and day-of-week"), "{v}");
    for (body, field) in [
        (json!({"full_schedule": "0 3 * *", "retention_full": 2}), "full_schedule"),
        (json!({"full_schedule": "0 3 * * * * 2030", "retention_full": 2}), "full_schedule"),
        (json!({"full_schedule": "@fortnightly", "retention_full": 2}), "full_schedule"),
        (json!({"full_schedule": "0 3 * * *", "retention_full": 1001}), "retention_full"),
        (json!({"full_schedule": "0 3 * * *", "retention_full": -1}), "retention_full"),
        (json!({"full_schedule": "0 3 * * *", "retention_full": "two"}), "retention_full"),
        (json!({"full_schedule": 3, "retention_full": 2}), "full_schedule"),
        (json!({"full_schedule": "0 3 * * *"}), "body"),
        (json!({"retention_full": 2}), "body"),
        // Read-only and unknown fields are refused by name.
        (
            json!({"full_schedule": "0 3 * * *", "retention_full": 2, "next_full_at": "2030-01-01T00:00:00Z"}),
            "next_full_at",
        ),
        (json!({"full_schedule": "0 3 * * *", "retention_full": 2, "weekly": true}), "weekly"),
    ] {
        let (s, v) = put(&tok, policy_path(&id), body.clone()).await;
        assert_eq!((s, fields_of(&v)), (422, vec![field.to_owned()]), "{body}: {v}");
    }
    let (s, _) = app.get(&policy_path(&id), &tok).await;
    assert_eq!(s, 404, "nothing was stored");

    // Set: 200 with the policy and when each kind runs next (UTC).
    let before = chrono::Utc::now();
    let body = json!({"full_schedule": "0 3 * * 0", "incremental_schedule": " 0 3 * * 1-6 ", "retention_full": 4});
    let (s, p) = put(&tok, policy_path(&id), body).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        (&p["cluster_id"], &p["full_schedule"], &p["incremental_schedule"], &p["diff_schedule"], &p["retention_full"]),
        (&json!(id), &json!("0 3 * * 0"), &json!("0 3 * * 1-6"), &Value::Null, &json!(4)),
        "{p}"
    );
    let at = |f: &str| chrono::DateTime::parse_from_rfc3339(p[f].as_str().unwrap()).unwrap().to_utc();
    use chrono::{Datelike, Timelike};
    let (full, incr) = (at("next_full_at"), at("next_incremental_at"));
    assert!(full > before && full - before <= chrono::Duration::days(7), "{p}");
    assert_eq!((full.weekday(), full.hour(), full.minute()), (chrono::Weekday::Sun, 3, 0), "{p}");
    assert!(incr > before && incr.weekday() != chrono::Weekday::Sun && incr.hour() == 3, "{p}");
    assert_eq!((&p["next_diff_at"], &p["waiting_since"]), (&Value::Null, &Value::Null), "{p}");
    let (s, got) = app.get(&policy_path(&id), &tok).await;
    assert_eq!((s, &got), (200, &p));
    // Replace: the whole policy; unset fields are gone.
    let (s, p2) = put(
        &tok,
        policy_path(&id),
        json!({"full_schedule": "*/30 * * * * *", "diff_schedule": "@hourly", "retention_full": 1}),
    )
    .await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!((&p2["incremental_schedule"], &p2["next_incremental_at"]), (&Value::Null, &Value::Null), "{p2}");
    assert!(p2["next_diff_at"].is_string() && p2["next_full_at"] != p["next_full_at"], "{p2}");
    assert_eq!(p2["created_at"], p["created_at"]);
    let (_, ev) = app.get(&format!("/v1/clusters/{id}/events"), &tok).await;
    let msgs: Vec<&str> = ev["items"].as_array().unwrap().iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(
        msgs.iter().any(|m| m.starts_with("backup policy set: full '0 3 * * 0', incremental '0 3 * * 1-6'")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.starts_with("backup policy replaced")), "{msgs:?}");

    // Tenancy: another project's cluster does not exist; nor does an unknown one.
    let nobody = uuid::Uuid::new_v4().to_string();
    for (token, cid) in [(other.as_str(), id.as_str()), (tok.as_str(), nobody.as_str())] {
        let (s, _) = app.get(&policy_path(cid), token).await;
        assert_eq!(s, 404);
        let (s, v) = put(token, policy_path(cid), json!({"full_schedule": "0 3 * * *", "retention_full": 2})).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
        let (s, _) = app.call(Method::DELETE, &policy_path(cid), Some(token), None).await;
        assert_eq!(s, 404);
    }
    let (s, v) = app.call(Method::PATCH, &policy_path(&id), Some(&tok), Some(json!({}))).await;
    assert_eq!((s, v["code"].as_str()), (405, Some("method_not_allowed")));

    // Remove: 204, then none.
    let (s, _) = app.call(Method::DELETE, &policy_path(&id), Some(&tok), None).await;
    assert_eq!(s, 204);
    let (s, _) = app.get(&policy_path(&id), &tok).await;
    assert_eq!(s, 404);
    let (_, ev) = app.get(&format!("/v1/clusters/{id}/events"), &tok).await;
    assert!(ev.to_string().contains("backup policy removed"), "{ev}");

    // Deleting the cluster removes its policy at once; a cluster being deleted takes none.
    let (s, _) = put(&tok, policy_path(&id), json!({"full_schedule": "0 3 * * *", "retention_full": 2})).await;
    assert_eq!(s, 200);
    let (s, _) = app.call(Method::DELETE, &format!("/v1/clusters/{id}"), Some(&tok), None).await;
    assert_eq!(s, 202);
    let (s, _) = app.get(&policy_path(&id), &tok).await;
    assert_eq!(s, 404, "the policy went with the delete request");
    let (s, v) = put(&tok, policy_path(&id), json!({"full_schedule": "0 3 * * *", "retention_full": 2})).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("invalid_state")), "{v}");
}

/// Several workers' schedulers (each its own database pool) scan the same due policy
/// at once: one backup task. While that task is open the next run waits (recorded
/// once), then starts late when the cluster is free.
async fn scheduled_runs_start_exactly_once_and_wait_for_a_busy_cluster(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("scheduler").await;
    let pid: uuid::Uuid = pid.parse().unwrap();
    let (s, v) = app.post("/v1/clusters", &tok, cluster_body("nightly")).await;
    assert_eq!(s, 202, "{v}");
    let id: uuid::Uuid = v["cluster"]["id"].as_str().unwrap().parse().unwrap();
    let build_task: uuid::Uuid = v["task_id"].as_str().unwrap().parse().unwrap();
    let key = std::sync::Arc::new(
        herd_core::crypto::MasterKey::from_base64(app.settings.master_key.as_ref().unwrap()).unwrap(),
    );
    let main = herd_store::Store::open(&app.database_url(), key.clone()).await.unwrap();

    // The build "finishes": its task succeeds and the cluster is active.
    assert!(main.claim_task(build_task, "test", chrono::Duration::seconds(30)).await.unwrap().is_some());
    main.complete_build(build_task, "test", id, chrono::Utc::now() + chrono::Duration::days(30)).await.unwrap();

    let providers =
        std::sync::Arc::new(herd_providers::build_providers(&app.settings.providers, &app.settings.state_dir).unwrap());
    let mut workers = Vec::new();
    for i in 0..4 {
        let queue = herd_worker::Queue::sqlite(&app.state_dir.path().join(format!("queue-{i}.db"))).await.unwrap();
        let store = herd_store::Store::open(&app.database_url(), key.clone()).await.unwrap();
        let ctx = herd_worker::Ctx::new(
            store,
            providers.clone(),
            std::sync::Arc::new(herd_datastores::Managers::builtin()),
            app.settings.worker.clone(),
            queue,
        )
        .with_backups(app.settings.backups.clone(), app.settings.state_dir.clone());
        workers.push(std::sync::Arc::new(ctx));
    }
    // Every second: due within a second.
    let (s, p) = app
        .call(
            Method::PUT,
            &policy_path(&id.to_string()),
            Some(&tok),
            Some(json!({"full_schedule": "* * * * * *",
            "incremental_schedule": "* * * * * *", "retention_full": 3})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let due = chrono::DateTime::parse_from_rfc3339(p["next_full_at"].as_str().unwrap()).unwrap().to_utc();
    let wait_until = |t: chrono::DateTime<chrono::Utc>| async move {
        herd_testkit::eventually_async(
            &format!("the clock to pass {t}"),
            std::time::Duration::from_secs(10),
            || async { (chrono::Utc::now() > t).then_some(()) },
        )
        .await;
    };
    wait_until(due).await;
    // The policy as every scheduler reads it before claiming this run.
    let stale = main.backup_policy_of(id).await.unwrap().unwrap();
    let scan_all = |at: chrono::DateTime<chrono::Utc>| {
        let workers = workers.clone();
        async move {
            let scans = workers.iter().map(|w| {
                let w = w.clone();
                tokio::spawn(async move { herd_worker::scheduler::scan(&w, at).await })
            });
            for r in futures_util::future::join_all(scans).await {
                r.unwrap().unwrap();
            }
        }
    };
    scan_all(chrono::Utc::now()).await;
    let backups = || async { main.list_backups(pid, Some(id), 100, None).await.unwrap().items };
    let tasks = || async {
        let all = main.tasks_of(id).await.unwrap();
        all.into_iter().filter(|t| t.kind == herd_core::status::TaskKind::Backup).collect::<Vec<_>>()
    };
    let events = || async {
        let page = main.list_events(pid, id, 100, None).await.unwrap();
        page.items.into_iter().map(|e| e.message).collect::<Vec<_>>()
    };
    let first = backups().await;
    assert_eq!(first.len(), 1, "four schedulers, one run: {first:?}");
    assert_eq!(first[0].backup_type.as_str(), "full", "the full backup stands for the incremental due with it");
    assert_eq!(tasks().await.len(), 1);
    let started: Vec<String> = events().await.into_iter().filter(|m| m.starts_with("scheduled")).collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(started[0].contains("it stands for the incremental backup due too"), "{started:?}");

    // The next run is due while that task is still queued: it waits, recorded once
    // however often it is scanned, and the policy shows since when.
    let (_, p) = app.get(&policy_path(&id.to_string()), &tok).await;
    let next = chrono::DateTime::parse_from_rfc3339(p["next_full_at"].as_str().unwrap()).unwrap().to_utc();
    assert!(next > due, "{p}");
    wait_until(next).await;
    for _ in 0..3 {
        scan_all(chrono::Utc::now()).await;
    }
    assert_eq!(backups().await.len(), 1, "no second backup while the cluster is busy");
    let waits: Vec<String> = events().await.into_iter().filter(|m| m.contains("waits")).collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(waits[0].contains("cluster_busy") || waits[0].contains("is queued on this cluster"), "{waits:?}");
    let (_, p) = app.get(&policy_path(&id.to_string()), &tok).await;
    assert!(p["waiting_since"].is_string(), "{p}");
    assert_eq!(
        p["next_full_at"].as_str().map(|s| s.to_owned()),
        Some(next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "a waiting run keeps its due time: {p}"
    );

    // The task ends: the waiting run starts at the next scan, once.
    let t = tasks().await.remove(0).id;
    assert!(main.claim_task(t, "test", chrono::Duration::seconds(30)).await.unwrap().is_some());
    main.finish_task(t, "test", herd_core::status::TaskStatus::Succeeded, None).await.unwrap();
    // A scheduler that read the policy before the first run was claimed, and tries
    // only now that the cluster is free: its claim matches nothing.
    let was =
        herd_store::Advance { kind: herd_core::status::BackupType::Full, was: stale.next_full_at.unwrap(), next: None };
    let late = main
        .start_scheduled_backup(&stale, herd_core::status::BackupType::Full, &[was], "posix", "herd-x", "stale run")
        .await
        .unwrap();
    assert!(matches!(late, herd_store::ScheduledRun::Lost), "{late:?}");
    assert_eq!(backups().await.len(), 1);
    scan_all(chrono::Utc::now()).await;
    assert_eq!(backups().await.len(), 2);
    let (_, p) = app.get(&policy_path(&id.to_string()), &tok).await;
    assert_eq!(p["waiting_since"], Value::Null, "{p}");
    let started: Vec<String> =
        events().await.into_iter().filter(|m| m.starts_with("scheduled full backup requested")).collect();
    assert_eq!(started.len(), 2, "{started:?}");
}
