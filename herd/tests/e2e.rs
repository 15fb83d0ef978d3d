//! End to end: one API call to a running PostgreSQL cluster on loopback hosts, through
//! the real `herd` binary, sshd, etcd, Patroni and PostgreSQL.

mod common;

use common::{Env, free_port, poll, psql, start_redis};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const ACTIVE_WITHIN: Duration = Duration::from_secs(240);

async fn delete_and_check_clean(env: &Env, api: &str, token: &str, id: &str) {
    let (s, d) = env.call(Method::DELETE, &format!("{api}/v1/clusters/{id}"), token, None).await;
    assert_eq!(s, 202, "{d}");
    let t = env.wait_task(api, token, d["task_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    let (s, _) = env.call(Method::GET, &format!("{api}/v1/clusters/{id}"), token, None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_and_three_node_clusters_serve_sql_and_delete_cleanly() {
    let env = Env::new(1);
    let (dev, api, token) = env.dev(&[], "dev.log");

    let one = env.create_cluster(&api, &token, "solo", 1, json!({})).await;
    let three = env.create_cluster(&api, &token, "trio", 3, json!({"synchronous": true})).await;

    // 1 node: the URI from the credentials endpoint works as is.
    let c1 = env.wait_status(&api, &token, &one, "active", ACTIVE_WITHIN).await;
    assert_eq!(c1["nodes"][0]["role"], "primary", "{c1}");
    assert_eq!(c1["task"]["status"], "succeeded");
    assert_eq!(c1["task"]["progress"], 100);
    let primary_uri = c1["endpoints"]["primary_uri"].as_str().unwrap();
    assert!(primary_uri.starts_with("postgresql://admin@127.80.1."), "{primary_uri}");
    assert!(primary_uri.ends_with("/postgres?target_session_attrs=read-write"));
    let (uri, password) = env.credentials(&api, &token, &one).await;
    psql(&uri, &password, "create table t (id int primary key, v text); insert into t values (1, 'one')").unwrap();
    assert_eq!(psql(&uri, &password, "select v from t where id = 1").unwrap(), "one");
    // The password is needed: the URI without it is refused.
    assert!(psql(primary_uri, "wrong-password-123", "select 1").is_err());

    // 3 nodes: one primary, two streaming replicas, rows reach every replica.
    let c3 = env.wait_status(&api, &token, &three, "active", ACTIVE_WITHIN).await;
    let nodes = c3["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes.iter().filter(|n| n["role"] == "primary").count(), 1, "{c3}");
    assert_eq!(nodes.iter().filter(|n| n["role"] == "replica").count(), 2, "{c3}");
    assert!(nodes.iter().all(|n| n["status"] == "running" && n["address"].is_string()));
    let (uri, password) = env.credentials(&api, &token, &three).await;
    assert_eq!(
        psql(&uri, &password, "select count(*) from pg_stat_replication where state = 'streaming'").unwrap(),
        "2"
    );
    assert_ne!(psql(&uri, &password, "show synchronous_standby_names").unwrap(), "");
    psql(&uri, &password, "create table r (id int); insert into r values (42)").unwrap();
    for n in nodes.iter().filter(|n| n["role"] == "replica") {
        let addr = n["address"].as_str().unwrap();
        let conn = format!("host={addr} port=5432 dbname=postgres user=admin");
        assert_eq!(psql(&conn, &password, "select pg_is_in_recovery()").unwrap(), "t");
        poll(Duration::from_secs(10), || match psql(&conn, &password, "select id from r") {
            Ok(v) if v == "42" => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
    // History: one event per step at least.
    let (_, ev) = env.call(Method::GET, &format!("{api}/v1/clusters/{three}/events?limit=100"), &token, None).await;
    let msgs: Vec<&str> = ev["items"].as_array().unwrap().iter().filter_map(|e| e["step"].as_str()).collect();
    for step in ["create_server", "prepare", "start_patroni", "wait_converged", "finalize"] {
        assert!(msgs.contains(&step), "no {step} event in {msgs:?}");
    }

    assert_eq!(env.servers().len(), 4);
    delete_and_check_clean(&env, &api, &token, &one).await;
    delete_and_check_clean(&env, &api, &token, &three).await;
    assert_eq!(env.servers(), Vec::<String>::new(), "server directories left");
    assert_eq!(env.volumes(), Vec::<String>::new(), "volume directories left");
    let stray = env.stray_pids();
    assert!(stray.is_empty(), "processes left: {stray:?}");
    // No node or volume rows survive (the DB file is shared with the running API).
    let db = sea_orm::Database::connect(format!("sqlite://{}", env.state().join("herd.db").display())).await.unwrap();
    use sea_orm::{ConnectionTrait, Statement};
    for table in ["clusters", "nodes", "volumes"] {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT count(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0, "{table} rows left");
    }
    drop(dev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_install_fails_readably_and_deletes_cleanly() {
    let env = Env::new(2);
    let (_dev, api, token) = env.dev(&[], "dev.log");
    // A catalogue entry whose packages cannot all be installed.
    let (s, v) = env
        .call(
            Method::POST,
            &format!("{api}/v1/datastores"),
            &token,
            Some(json!({"name": "pg-broken", "manager": "postgresql",
                "versions": [{"version": "15", "packages": ["postgresql-15", "herd-no-such-package"]}]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = env.create_cluster(&api, &token, "broken", 1, json!({"datastore": "pg-broken"})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let c: Value = loop {
        let (_, c) = env.call(Method::GET, &format!("{api}/v1/clusters/{id}"), &token, None).await;
        if c["status"] == "failed" {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "{c}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(c["fault"]["code"], "package_install_failed", "{c}");
    assert!(c["fault"]["message"].as_str().unwrap().contains("herd-no-such-package"), "{c}");
    assert_eq!(c["task"]["status"], "failed");
    assert_eq!(c["task"]["error"]["code"], "package_install_failed");
    assert_eq!(env.servers().len(), 1, "the server exists until deleted");
    delete_and_check_clean(&env, &api, &token, &id).await;
    assert!(env.servers().is_empty());
    assert!(env.volumes().is_empty());
    assert!(env.stray_pids().is_empty(), "{:?}", env.stray_pids());
}

/// For every provisioning step: the worker process dies right after it, a new one
/// starts, and the cluster still becomes active with exactly one server and volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_resumes_after_the_worker_dies_after_any_step() {
    let steps = [
        "create_volume",
        "create_server",
        "attach_volume",
        "wait_ssh",
        "prepare",
        "configure",
        "start_etcd",
        "start_patroni",
        "wait_converged",
        "set_admin_password",
        "init_backups",
        "finalize",
    ];
    let env = Env::new(3);
    for (i, step) in steps.iter().enumerate() {
        let (mut dying, api, token) = env.dev(&[("HERD_TEST_EXIT_AFTER_STEP", step)], &format!("dev-{step}-1.log"));
        let name = format!("crash-{i}");
        let id = env.create_cluster(&api, &token, &name, 1, json!({})).await;
        let code = dying.wait_exit(Duration::from_secs(180));
        assert_eq!(code, Some(86), "worker did not exit after {step}; log:\n{}", dying.log_text());
        drop(dying);

        let (_dev, api, token) = env.dev(&[], &format!("dev-{step}-2.log"));
        let c = env.wait_status(&api, &token, &id, "active", ACTIVE_WITHIN).await;
        assert_eq!(c["task"]["status"], "succeeded", "{step}: {c}");
        assert_eq!(env.servers().len(), 1, "{step}: servers {:?}", env.servers());
        assert_eq!(env.volumes().len(), 1, "{step}: volumes {:?}", env.volumes());
        let (uri, password) = env.credentials(&api, &token, &id).await;
        assert_eq!(psql(&uri, &password, "select 1").unwrap(), "1", "{step}");
        delete_and_check_clean(&env, &api, &token, &id).await;
        assert!(env.servers().is_empty() && env.volumes().is_empty(), "{step}: leftovers");
    }
    assert!(env.stray_pids().is_empty(), "{:?}", env.stray_pids());
}

/// Production shape: `herd serve` and `herd worker` as separate processes over Redis.
/// Redis dies and comes back (empty) in the middle of provisioning; the sweeper
/// re-delivers from the tasks table and the cluster still becomes active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_survives_a_redis_restart() {
    use base64::Engine;
    let env = Env::new(4);
    let redis_port = free_port();
    let mut redis = start_redis(&env, redis_port, "redis-1.log");
    let api_port = free_port();
    let token = format!("herd_e2e_{}", uuid::Uuid::new_v4().simple());
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let shared = vec![
        ("HERD_DATABASE_URL", format!("sqlite://{}?mode=rwc", env.dir.path().join("herd.db").display())),
        ("HERD_REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
        ("HERD_MASTER_KEY", key),
        ("HERD_ADMIN_TOKEN", token.clone()),
        ("HERD_STATE_DIR", env.state().display().to_string()),
        ("HERD_LISTEN", format!("127.0.0.1:{api_port}")),
    ];
    let _serve = env.spawn(&["serve"], &shared, "serve.log");
    let api = format!("http://127.0.0.1:{api_port}");
    let http = env.http.clone();
    let health = format!("{api}/readyz");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while http.get(&health).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "herd serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _worker = env.spawn(&["worker"], &shared, "worker.log");

    let id = env.create_cluster(&api, &token, "through-restart", 1, json!({})).await;
    // Wait until provisioning is under way, then take Redis away and bring it back.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, c) = env.call(Method::GET, &format!("{api}/v1/clusters/{id}"), &token, None).await;
        if c["task"]["progress"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "provisioning never started: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // Redis is down for a while: that is the fault.
    let _redis2 = start_redis(&env, redis_port, "redis-2.log");
    drop(redis);

    let c = env.wait_status(&api, &token, &id, "active", ACTIVE_WITHIN).await;
    assert_eq!(c["task"]["status"], "succeeded", "{c}");
    // The worker's queue consumer came back too: new work still flows.
    let after = env.create_cluster(&api, &token, "after-restart", 1, json!({})).await;
    env.wait_status(&api, &token, &after, "active", ACTIVE_WITHIN).await;
    assert_eq!(env.servers().len(), 2);
    delete_and_check_clean(&env, &api, &token, &id).await;
    delete_and_check_clean(&env, &api, &token, &after).await;
    assert!(env.servers().is_empty() && env.volumes().is_empty());
}
