//! The security review, replayed against one running `herd dev` (issue 14 §4): two
//! tenants' clusters on loopback hosts, and each attack the review made against such
//! a setup, shown refused, each beside a control that shows the probe itself works.
//! Narrower tests of the same rules: `datastores/tests/{postgresql,tls}.rs` (the
//! manager on its own), `api/tests/{security,api,quotas}.rs` (the API on its own),
//! `worker/tests/steps.rs` (hook delivery and redirects).

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use uuid::Uuid;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);

/// What a cluster of the test has: its tenant's token, its id and name, its server
/// root on this machine, and its one node's name and address.
struct Tenant {
    token: String,
    project: String,
    id: Uuid,
    name: String,
    root: PathBuf,
    node: String,
    address: String,
}

impl Tenant {
    fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel.replace("<c>", &self.name))
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        let p = self.file(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// The OS user the provider made for this cluster (the group of its server root).
    fn service_user(&self) -> String {
        let gid = std::fs::metadata(&self.root).unwrap().gid();
        let out = Command::new("getent").args(["group", &gid.to_string()]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split(':').next().unwrap_or_default().to_owned()
    }

    /// An HTTPS client that trusts this cluster's CA and presents `identity`
    /// (certificate and key PEM files under some server root), or no certificate.
    fn https(&self, identity: Option<(&Tenant, &str, &str)>) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&self.read("etc/patroni/15-<c>.ca.crt")).unwrap();
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
        if let Some((owner, cert, key)) = identity {
            let mut pem = owner.read(cert);
            pem.extend(owner.read(key));
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    }

    fn url(&self, scheme: &str, port: u16, path: &str) -> String {
        format!("{scheme}://{}:{port}{path}", self.address)
    }
}

/// `cmd args…` run as `user` with its own groups only; (succeeded, stderr).
fn run_as(user: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("setpriv")
        .args([&format!("--reuid={user}"), &format!("--regid={user}"), "--init-groups", "--"])
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The status of a request, or the transport error (a refused handshake...).
async fn send(req: reqwest::RequestBuilder) -> Result<u16, String> {
    req.send().await.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}"))
}

/// Where the provider put the server of cluster `name` (its only server).
fn server_root(env: &Env, name: &str) -> PathBuf {
    let servers = env.state().join("local/servers");
    let roots: Vec<PathBuf> = env
        .servers()
        .into_iter()
        .map(|s| servers.join(s))
        .filter(|r| r.join(format!("etc/patroni/15-{name}.yml")).exists())
        .collect();
    assert_eq!(roots.len(), 1, "one server of {name}: {roots:?}");
    roots.into_iter().next().unwrap()
}

/// Directories directly under `dir` whose group is `group` (a cluster's stanza dirs).
fn dirs_of_group(dir: &Path, group: &str) -> Vec<String> {
    let gid = {
        let out = Command::new("getent").args(["group", group]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split(':').nth(2).unwrap_or_default().parse::<u32>().unwrap()
    };
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap();
        if e.metadata().unwrap().is_dir() && e.metadata().unwrap().gid() == gid {
            found.push(e.path().display().to_string());
        }
    }
    found
}

/// A refusal by PostgreSQL's privilege checks (not a syntax error or a missing object).
fn denied_by_privileges(r: Result<String, String>, sql: &str) {
    let err = r.err().unwrap_or_else(|| panic!("the tenant's admin ran: {sql}"));
    assert!(
        ["permission denied", "must be superuser", "must have admin option", "privileges of the"]
            .iter()
            .any(|m| err.contains(m)),
        "{sql}: refused for another reason: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reviews_attacks_on_a_running_herd_dev_are_refused() {
    let env = Env::new();
    let (_dev, api, operator) = env.dev(&[], "dev.log");
    let at = |p: &str| format!("{api}{p}");

    // Two tenants, each with a project, a member token and a one-node cluster.
    let mut tenants = Vec::new();
    for name in ["sec-a", "sec-b"] {
        let (s, p) = env.call(Method::POST, &at("/v1/projects"), &operator, Some(json!({"name": name}))).await;
        assert_eq!(s, 201, "{p}");
        let project = p["id"].as_str().unwrap().to_owned();
        let path = at(&format!("/v1/projects/{project}/tokens"));
        let (s, t) = env.call(Method::POST, &path, &operator, Some(json!({"role": "member"}))).await;
        assert_eq!(s, 201, "{t}");
        let token = t["token"].as_str().unwrap().to_owned();
        let id = env.create_cluster(&api, &token, cluster(name, 1)).await;
        tenants.push((token, project, id, name));
    }
    let mut built = Vec::new();
    for (token, project, id, name) in tenants {
        let c = env.wait_status(&api, &token, id, herd_client::types::ClusterStatus::Active, ACTIVE_WITHIN).await;
        let node = &c.nodes[0];
        built.push(Tenant {
            root: server_root(&env, name),
            node: node.name.clone(),
            address: node.address.clone().expect("an address"),
            token,
            project,
            id,
            name: name.to_owned(),
        });
    }
    let (a, b) = (&built[0], &built[1]);

    // --- §1: the tenant's admin login cannot reach the OS or grow its powers ---
    let (uri, pw) = env.credentials(&api, &a.token, a.id).await;
    assert_eq!(psql(&uri, &pw, "SELECT current_user").as_deref(), Ok("admin"), "the probe's own login works");
    for sql in [
        "GRANT pg_execute_server_program TO CURRENT_USER",
        "GRANT pg_read_server_files, pg_write_server_files TO CURRENT_USER",
        "CREATE TEMP TABLE t (x text); COPY t FROM PROGRAM 'id'",
        "COPY (SELECT 1) TO PROGRAM 'id'",
        "COPY (SELECT 1) TO '/tmp/herd-security-probe'",
        "SELECT lo_import('/etc/passwd')",
        "SELECT pg_read_file('/etc/passwd')",
        "ALTER SYSTEM SET archive_command = 'id'",
        "CREATE ROLE intruder SUPERUSER",
        "CREATE ROLE intruder",
        "ALTER ROLE admin CREATEROLE",
    ] {
        denied_by_privileges(psql(&uri, &pw, sql), sql);
    }
    let untrusted = psql(
        &uri,
        &pw,
        "SELECT string_agg(name, ',') FROM pg_available_extensions WHERE name IN ('plpython3u', 'plperlu', 'pltclu')",
    )
    .unwrap();
    for lang in untrusted.split(',').filter(|l| !l.is_empty()) {
        let sql = format!("CREATE EXTENSION {lang}");
        denied_by_privileges(psql(&uri, &pw, &sql), &sql);
    }
    assert!(!Path::new("/tmp/herd-security-probe").exists());

    // --- §2: PostgreSQL only over TLS; etcd and Patroni only with the cluster's certificates ---
    let plain = uri.replace("sslmode=verify-full", "sslmode=disable");
    assert_ne!(plain, uri);
    let err = psql(&plain, &pw, "SELECT 1").expect_err("a session without TLS");
    assert!(err.contains("no encryption"), "{err}");
    // Each cluster has a CA of its own: a's server does not verify against b's.
    env.credentials(&api, &b.token, b.id).await;
    let (a_ca, b_ca) = (env.ca_file(a.id).display().to_string(), env.ca_file(b.id).display().to_string());
    let err = psql(&uri.replace(&a_ca, &b_ca), &pw, "SELECT 1").expect_err("a's server verified with b's CA");
    assert!(err.contains("certificate verify failed"), "{err}");

    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let list = "/v3/cluster/member/list";
    let own_node = Some((a, "etc/etcd/etcd-<c>.crt", "etc/etcd/etcd-<c>.key"));
    let other_node = Some((b, "etc/etcd/etcd-<c>.crt", "etc/etcd/etcd-<c>.key"));
    assert_eq!(send(a.https(own_node).post(a.url("https", 2379, list)).body("{}")).await, Ok(200), "the control");
    for port in [2379, 2380] {
        let r = send(http.post(a.url("http", port, list)).body("{}")).await;
        assert!(!matches!(r, Ok(200)), "plain HTTP to etcd :{port}: {r:?}");
        let r = send(a.https(None).post(a.url("https", port, list)).body("{}")).await;
        assert!(r.is_err(), "etcd :{port} without a client certificate: {r:?}");
        let r = send(a.https(other_node).post(a.url("https", port, list)).body("{}")).await;
        assert!(r.is_err(), "another cluster's node at etcd :{port}: {r:?}");
    }
    // The review changed a cluster's settings by writing its config key: no longer.
    let r = send(http.post(a.url("http", 2379, "/v3/kv/put")).json(&json!({"key": "L2hlcmQ=", "value": "eA=="}))).await;
    assert!(!matches!(r, Ok(200)), "{r:?}");
    let r = send(http.get(a.url("http", 8008, "/cluster"))).await;
    assert!(!matches!(r, Ok(200)), "plain HTTP to Patroni: {r:?}");
    let patch = |client: reqwest::Client| client.patch(a.url("https", 8008, "/config")).json(&json!({"ttl": 5}));
    assert_eq!(send(patch(a.https(None))).await, Ok(403), "Patroni's unsafe endpoint without a certificate");
    let r = send(patch(a.https(Some((b, "etc/patroni/15-<c>.crt", "etc/patroni/15-<c>.key"))))).await;
    assert!(r.is_err(), "another cluster's certificate at Patroni: {r:?}");
    // With a's own certificate, Basic auth is still needed, and the superuser's is no good.
    let superuser = String::from_utf8(a.read("etc/patroni/15-<c>.yml")).unwrap();
    let superuser: serde_yaml::Value = serde_yaml::from_str(&superuser).unwrap();
    let su_pw = superuser["postgresql"]["authentication"]["superuser"]["password"].as_str().unwrap().to_owned();
    let r = send(
        patch(a.https(Some((a, "etc/patroni/15-<c>.crt", "etc/patroni/15-<c>.key"))))
            .basic_auth("postgres", Some(su_pw)),
    )
    .await;
    assert_eq!(r, Ok(401), "the superuser's password at Patroni's REST API");

    // --- §1: a cluster's daemons run as its own user, who reads nothing of another ---
    let (ua, ub) = (a.service_user(), b.service_user());
    assert_eq!(ua, format!("herd-{}", &a.id.simple().to_string()[..12]));
    assert_eq!(ub, format!("herd-{}", &b.id.simple().to_string()[..12]));
    let repo = env.state().join("backups");
    let (a_stanzas, b_stanzas) = (
        [dirs_of_group(&repo.join("archive"), &ua), dirs_of_group(&repo.join("backup"), &ua)].concat(),
        [dirs_of_group(&repo.join("archive"), &ub), dirs_of_group(&repo.join("backup"), &ub)].concat(),
    );
    assert_eq!((a_stanzas.len(), b_stanzas.len()), (2, 2), "archive and backup dirs: {a_stanzas:?} {b_stanzas:?}");
    let path = |p: PathBuf| p.display().to_string();
    for own in [path(a.file("etc/patroni/15-<c>.yml")), path(a.file("etc/pgbackrest/15-<c>.conf"))] {
        let (ok, err) = run_as(&ua, &["cat", &own]);
        assert!(ok, "{ua} cannot read its own {own}: {err}");
    }
    for own in &a_stanzas {
        assert!(run_as(&ua, &["ls", own]).0, "{ua} cannot list its own {own}");
    }
    let state = env.state();
    let mut forbidden: Vec<(&str, String)> = vec![
        ("cat", path(b.file("etc/patroni/15-<c>.yml"))),
        ("cat", path(b.file("etc/pgbackrest/15-<c>.conf"))),
        ("cat", path(b.file("etc/patroni/15-<c>.key"))),
        ("cat", path(b.file("etc/patroni/15-<c>.callback-token"))),
        ("ls", path(b.root.clone())),
        ("ls", path(state.clone())),
        ("ls", path(state.join("local/servers"))),
        ("ls", path(repo.clone())),
    ];
    for f in ["herd.db", "queue.db", "master.key", "admin.token"] {
        let p = state.join(f);
        let mode = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{f}: {e}")).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
        forbidden.push(("cat", path(p)));
    }
    forbidden.extend(b_stanzas.iter().map(|d| ("ls", d.clone())));
    for (cmd, target) in &forbidden {
        let (ok, err) = run_as(&ua, &[cmd, target]);
        assert!(!ok && err.contains("Permission denied"), "{ua} ran {cmd} {target}: ok={ok} {err}");
    }

    // --- §3: control-plane inputs ---
    // A key file whose KDF is very costly: refused at once, while /healthz answers.
    let costly = herd_testkit::costly_openssh_key(2000);
    let started = Instant::now();
    let keys = at("/v1/keys");
    let bombs = (0..4).map(|i| {
        let body = json!({"name": format!("bomb-{i}"), "private_key": costly, "passphrase": "pw"});
        env.call(Method::POST, &keys, &a.token, Some(body))
    });
    let probe = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let t = Instant::now();
            let r = env.http.get(at("/healthz")).timeout(Duration::from_secs(5)).send().await;
            assert_eq!(r.map(|r| r.status().as_u16()).ok(), Some(200));
            slowest = slowest.max(t.elapsed());
        }
        slowest
    };
    let (answers, slowest) = tokio::join!(futures_util::future::join_all(bombs), probe);
    for (s, e) in answers {
        assert_eq!((s, e["errors"][0]["field"].as_str()), (422, Some("private_key")), "{e}");
    }
    assert!(slowest < Duration::from_secs(2), "/healthz took {slowest:?} during the key requests");
    assert!(started.elapsed() < Duration::from_secs(10), "the key requests took {:?}", started.elapsed());

    // Webhooks that would reach inside: every spelling of loopback, the metadata address.
    for url in [
        "http://2130706433:2379/",
        "http://0x7f000001:8008/",
        "http://[::ffff:127.0.0.1]:2379/",
        "http://localhost:2379/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:2379/",
    ] {
        let hooks = json!({"hooks": {"post_failover": {"url": url, "secret": "a-hook-secret-that-is-long"}}});
        let (s, v) = env.call(Method::PATCH, &at(&format!("/v1/clusters/{}", a.id)), &a.token, Some(hooks)).await;
        assert_eq!((s, v["code"].as_str()), (422, Some("validation_failed")), "{url}: {v}");
    }

    // A project's admin: its own project only.
    let path = at(&format!("/v1/projects/{}/tokens", b.project));
    let (s, t) = env.call(Method::POST, &path, &operator, Some(json!({"role": "admin"}))).await;
    assert_eq!(s, 201, "{t}");
    let b_admin = t["token"].as_str().unwrap().to_owned();
    let (s, _) = env.call(Method::POST, &path, &b_admin, Some(json!({"role": "member"}))).await;
    assert_eq!(s, 201, "the control: its own project");
    let into_a = at(&format!("/v1/projects/{}/tokens", a.project));
    let (s, v) = env.call(Method::POST, &into_a, &b_admin, Some(json!({"role": "member"}))).await;
    assert_eq!(s, 404, "a token for another project: {v}");
    let (s, v) = env.call(Method::GET, &at("/v1/projects"), &b_admin, None).await;
    let names: Vec<&str> = v["items"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!((s, names), (200, vec!["sec-b"]), "{v}");
    let (s, _) = env.call(Method::GET, &at(&format!("/v1/clusters/{}", a.id)), &b_admin, None).await;
    assert_eq!(s, 404, "another project's cluster");

    // Quotas: an operator caps B at its one cluster; B's next is refused, naming the limit.
    let quotas = at(&format!("/v1/projects/{}/quotas", b.project));
    let (s, v) = env.call(Method::PUT, &quotas, &b_admin, Some(json!({"clusters": 10}))).await;
    assert_eq!(s, 403, "a project admin raising its own quota: {v}");
    let (s, v) = env.call(Method::PUT, &quotas, &operator, Some(json!({"clusters": 1}))).await;
    assert_eq!(s, 200, "{v}");
    let body = serde_json::to_value(cluster("sec-b2", 1)).unwrap();
    let (s, v) = env.call(Method::POST, &at("/v1/clusters"), &b.token, Some(body)).await;
    assert_eq!(
        (s, v["code"].as_str(), v["quota"]["quota"].as_str(), v["quota"]["limit"].as_u64()),
        (403, Some("quota_exceeded"), Some("clusters"), Some(1)),
        "{v}"
    );

    // Patroni's callback: signed with the node's own credential (the file on the
    // node); the same report replayed after the window is refused.
    let credential = String::from_utf8(a.read("etc/patroni/15-<c>.callback-token")).unwrap();
    let report = json!({"member": a.node, "action": "on_role_change", "role": "master", "scope": a.name})
        .to_string()
        .into_bytes();
    let callback = |stamp: i64| {
        let signature = herd_core::hooks::callback_signature(credential.trim(), stamp, &report);
        env.http
            .post(at(&format!("/callbacks/patroni/{}", a.id)))
            .header("content-type", "application/json")
            .header("x-herd-member", &a.node)
            .header("x-herd-timestamp", stamp.to_string())
            .header("x-herd-signature", signature)
            .body(report.clone())
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(send(callback(now)).await, Ok(204), "the control: a fresh report from the node");
    let old = now - herd_core::hooks::CALLBACK_WINDOW_SECS - 5;
    assert_eq!(send(callback(old)).await, Ok(401), "a report replayed after the window");
    let body = serde_json::from_slice(&report).ok();
    let (s, v) = env.call(Method::POST, &at(&format!("/callbacks/patroni/{}", a.id)), &a.token, body).await;
    assert_eq!(s, 401, "an API token is no callback credential: {v}");

    // Nothing of this reached the clusters: both still active, a's settings untouched.
    for t in [a, b] {
        let c: Value = env.call(Method::GET, &at(&format!("/v1/clusters/{}", t.id)), &t.token, None).await.1;
        assert_eq!(c["status"], "active", "{c}");
    }
    assert_eq!(psql(&uri, &pw, "SHOW archive_command").map(|s| s.contains("pgbackrest")), Ok(true));
    for t in [a, b] {
        env.delete_cluster(&api, &t.token, t.id, ACTIVE_WITHIN).await;
    }
    assert!(env.servers().is_empty(), "{:?}", env.servers());
    for u in [&ua, &ub] {
        let out = Command::new("getent").args(["passwd", u]).output().unwrap();
        assert!(!out.status.success(), "{u} outlived its cluster");
    }
}
