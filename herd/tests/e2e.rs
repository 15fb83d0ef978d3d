//! End to end: one API call to a running PostgreSQL cluster on loopback hosts, through
//! the real `herd` binary, sshd, etcd, Patroni and PostgreSQL.

mod common;

use common::{Env, cluster, free_port, poll, psql, start_redis};
use herd_client::types::{
    ClusterStatus, CreateCluster, CreateDatastore, CreateVersion, NodeRole, NodeStatus, TaskStatus,
};
use herd_testkit::eventually_async;
use std::time::Duration;
use uuid::Uuid;

const ACTIVE_WITHIN: Duration = Duration::from_secs(240);

async fn delete_and_check_clean(env: &Env, api: &str, token: &str, id: Uuid) {
    env.delete_cluster(api, token, id, Duration::from_secs(120)).await;
    match env.client(api, token).cluster(id).await {
        Err(herd_client::Error::Api(p)) => assert_eq!((p.status, p.code.as_str()), (404, "not_found"), "{p}"),
        other => panic!("the deleted cluster {id} still answers: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_and_three_node_clusters_serve_sql_and_delete_cleanly() {
    let env = Env::new();
    let (dev, api, token) = env.dev(&[], "dev.log");

    let herd = env.client(&api, &token);
    let one = env.create_cluster(&api, &token, cluster("solo", 1)).await;
    let three = env.create_cluster(&api, &token, CreateCluster { synchronous: Some(true), ..cluster("trio", 3) }).await;

    // 1 node: the URI from the credentials endpoint works as is.
    let c1 = env.wait_status(&api, &token, one, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(c1.nodes[0].role, NodeRole::Primary, "{c1:?}");
    let task = c1.task.as_ref().expect("the cluster's task");
    assert_eq!(task.status, TaskStatus::Succeeded);
    assert_eq!(task.progress, 100);
    let primary_uri = c1.endpoints.primary_uri.as_deref().unwrap();
    let prefix = env.subnet.as_ref().unwrap().prefix();
    assert!(primary_uri.starts_with(&format!("postgresql://admin@{prefix}")), "{primary_uri}");
    assert!(primary_uri.ends_with("/postgres?target_session_attrs=read-write&sslmode=verify-full"));
    let (uri, password) = env.credentials(&api, &token, one).await;
    psql(&uri, &password, "create table t (id int primary key, v text); insert into t values (1, 'one')").unwrap();
    assert_eq!(psql(&uri, &password, "select v from t where id = 1").unwrap(), "one");
    // The password is needed: the URI without it is refused.
    let with_ca = format!("{primary_uri}&sslrootcert={}", env.ca_file(one).display());
    let wrong = psql(&with_ca, "wrong-password-123", "select 1").unwrap_err();
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    // TLS, verified: the session is encrypted, and the certificate is for this address.
    assert_eq!(psql(&uri, &password, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").unwrap(), "t");
    let host = primary_uri.split('@').nth(1).and_then(|h| h.split(':').next()).unwrap();
    let plain = format!("host={host} port=5432 dbname=postgres user=admin sslmode=disable");
    let refused = psql(&plain, &password, "select 1").unwrap_err();
    assert!(refused.contains("no encryption"), "a connection without TLS is refused: {refused}");
    // Another cluster's CA (the 3-node one's, below) does not verify this server; nor
    // does the same CA for a name the certificate was not issued to.
    let ca = herd.cluster_ca(one).await.unwrap();
    assert_eq!(ca.certificate, std::fs::read_to_string(env.ca_file(one)).unwrap(), "the same CA both ways");
    let by_name = format!("host=localhost hostaddr={host} port=5432 dbname=postgres user=admin {}", env.tls(one));
    let mismatch = psql(&by_name, &password, "select 1").unwrap_err();
    assert!(mismatch.contains("does not match host name"), "{mismatch}");

    // 3 nodes: one primary, two streaming replicas, rows reach every replica.
    let c3 = env.wait_status(&api, &token, three, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let nodes = &c3.nodes;
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes.iter().filter(|n| n.role == NodeRole::Primary).count(), 1, "{c3:?}");
    assert_eq!(nodes.iter().filter(|n| n.role == NodeRole::Replica).count(), 2, "{c3:?}");
    assert!(nodes.iter().all(|n| n.status == NodeStatus::Running && n.address.is_some()), "{c3:?}");
    let (uri, password) = env.credentials(&api, &token, three).await;
    let foreign = uri.replace(&env.ca_file(three).display().to_string(), &env.ca_file(one).display().to_string());
    let unverified = psql(&foreign, &password, "select 1").unwrap_err();
    assert!(unverified.contains("certificate verify failed"), "another cluster's CA: {unverified}");
    assert_eq!(
        psql(&uri, &password, "select count(*) from pg_stat_replication where state = 'streaming'").unwrap(),
        "2"
    );
    // Replication is TLS too (members verify each other against the CA).
    assert_eq!(
        psql(&uri, &password, "select count(*) from pg_stat_replication r join pg_stat_ssl s using (pid) where s.ssl")
            .unwrap(),
        "2"
    );
    assert_ne!(psql(&uri, &password, "show synchronous_standby_names").unwrap(), "");
    psql(&uri, &password, "create table r (id int); insert into r values (42)").unwrap();
    for n in nodes.iter().filter(|n| n.role == NodeRole::Replica) {
        let addr = n.address.as_deref().unwrap();
        let conn = format!("host={addr} port=5432 dbname=postgres user=admin {}", env.tls(three));
        assert_eq!(psql(&conn, &password, "select pg_is_in_recovery()").unwrap(), "t");
        poll(Duration::from_secs(10), || match psql(&conn, &password, "select id from r") {
            Ok(v) if v == "42" => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
    // History: one event per step at least.
    let ev = herd.events(three, Some(100), None).await.unwrap();
    let msgs: Vec<&str> = ev.items.iter().filter_map(|e| e.step.as_deref()).collect();
    for step in ["create_server", "prepare", "start_patroni", "wait_converged", "finalize"] {
        assert!(msgs.contains(&step), "no {step} event in {msgs:?}");
    }

    assert_eq!(env.servers().len(), 4);
    delete_and_check_clean(&env, &api, &token, one).await;
    delete_and_check_clean(&env, &api, &token, three).await;
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
    let env = Env::new();
    let (_dev, api, token) = env.dev(&[], "dev.log");
    // A catalogue entry whose packages cannot all be installed.
    let ds = env
        .client(&api, &token)
        .create_datastore(&CreateDatastore {
            name: "pg-broken".into(),
            manager: "postgresql".into(),
            versions: vec![CreateVersion {
                version: "15".into(),
                active: None,
                packages: vec!["postgresql-15".into(), "herd-no-such-package".into()],
                images: Default::default(),
            }],
        })
        .await
        .unwrap();
    assert_eq!((ds.name.as_str(), ds.versions.len()), ("pg-broken", 1), "{ds:?}");
    let id =
        env.create_cluster(&api, &token, CreateCluster { datastore: "pg-broken".into(), ..cluster("broken", 1) }).await;
    let c = env.wait_status(&api, &token, id, ClusterStatus::Failed, Duration::from_secs(180)).await;
    let fault = c.fault.as_ref().unwrap_or_else(|| panic!("no fault: {c:?}"));
    assert_eq!(fault.code, "package_install_failed", "{c:?}");
    assert!(fault.message.contains("herd-no-such-package"), "{c:?}");
    let task = c.task.as_ref().unwrap_or_else(|| panic!("no task: {c:?}"));
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.error.as_ref().map(|e| e.code.as_str()), Some("package_install_failed"), "{task:?}");
    assert_eq!(env.servers().len(), 1, "the server exists until deleted");
    delete_and_check_clean(&env, &api, &token, id).await;
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
    let env = Env::new();
    for (i, step) in steps.iter().enumerate() {
        let (mut dying, api, token) = env.dev(&[("HERD_TEST_EXIT_AFTER_STEP", step)], &format!("dev-{step}-1.log"));
        let name = format!("crash-{i}");
        let id = env.create_cluster(&api, &token, cluster(&name, 1)).await;
        let code = dying.wait_exit(Duration::from_secs(180));
        assert_eq!(code, Some(86), "worker did not exit after {step}; log:\n{}", dying.log_text());
        drop(dying);

        let (_dev, api, token) = env.dev(&[], &format!("dev-{step}-2.log"));
        let c = env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
        assert_eq!(c.task.as_ref().map(|t| t.status), Some(TaskStatus::Succeeded), "{step}: {c:?}");
        assert_eq!(env.servers().len(), 1, "{step}: servers {:?}", env.servers());
        assert_eq!(env.volumes().len(), 1, "{step}: volumes {:?}", env.volumes());
        let (uri, password) = env.credentials(&api, &token, id).await;
        assert_eq!(psql(&uri, &password, "select 1").unwrap(), "1", "{step}");
        delete_and_check_clean(&env, &api, &token, id).await;
        assert!(env.servers().is_empty() && env.volumes().is_empty(), "{step}: leftovers");
    }
    assert!(env.stray_pids().is_empty(), "{:?}", env.stray_pids());
}

/// Production shape: `herd serve` and `herd worker` as separate processes over Redis.
/// Redis dies and comes back (empty) in the middle of provisioning; the sweeper
/// re-delivers from the tasks table and the cluster still becomes active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_survives_a_redis_restart() {
    let env = Env::new();
    let redis_port = free_port();
    let mut redis = start_redis(&env, redis_port, "redis-1.log");
    let database_url = format!("sqlite://{}?mode=rwc", env.dir.path().join("herd.db").display());
    let fleet = env.fleet(database_url, redis_port, 1).await;
    let (api, token) = (fleet.api.clone(), fleet.token.clone());
    let herd = env.client(&api, &token);

    let id = env.create_cluster(&api, &token, cluster("through-restart", 1)).await;
    // Wait until provisioning is under way, then take Redis away and bring it back.
    eventually_async("provisioning to start", Duration::from_secs(120), || async {
        let c = herd.cluster(id).await.unwrap();
        if c.task.as_ref().map_or(0, |t| t.progress) > 0 { Ok(()) } else { Err(format!("{c:?}")) }
    })
    .await;
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // Redis is down for a while: that is the fault.
    let _redis2 = start_redis(&env, redis_port, "redis-2.log");
    drop(redis);

    let c = env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(c.task.as_ref().map(|t| t.status), Some(TaskStatus::Succeeded), "{c:?}");
    // The worker's queue consumer came back too: new work still flows.
    let after = env.create_cluster(&api, &token, cluster("after-restart", 1)).await;
    env.wait_status(&api, &token, after, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(env.servers().len(), 2);
    delete_and_check_clean(&env, &api, &token, id).await;
    delete_and_check_clean(&env, &api, &token, after).await;
    assert!(env.servers().is_empty() && env.volumes().is_empty());
}

/// The certificate a node presents on `port` (PostgreSQL's 5432 after its STARTTLS,
/// or a plain TLS port): `(serial, notAfter)` as openssl prints them.
fn served_certificate(host: &str, port: u16) -> Result<(String, String), String> {
    use std::process::{Command, Stdio};
    let connect = format!("{host}:{port}");
    let mut args = vec!["s_client", "-connect", &connect, "-showcerts"];
    if port == 5432 {
        args.extend(["-starttls", "postgres"]);
    }
    let out = Command::new("openssl").args(&args).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let begin = text.find("-----BEGIN CERTIFICATE-----").ok_or_else(|| format!("no certificate: {text}"))?;
    let end = text[begin..].find("-----END CERTIFICATE-----").ok_or("truncated certificate")? + begin + 25;
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-enddate"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    use std::io::Write;
    x509.stdin.take().unwrap().write_all(&text.as_bytes()[begin..end]).map_err(|e| e.to_string())?;
    let fields = String::from_utf8_lossy(&x509.wait_with_output().map_err(|e| e.to_string())?.stdout).into_owned();
    let field = |k: &str| fields.lines().find_map(|l| l.strip_prefix(k)).map(str::to_owned);
    Ok((field("serial=").ok_or(fields.clone())?, field("notAfter=").ok_or(fields.clone())?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_certificates_are_renewed_before_they_expire_without_a_restart() {
    let env = Env::new();
    // 30-second windows (certificates valid 90 s): renewals happen while we watch.
    let (dev, api, token) = env.dev(&[("HERD_WORKER__CERT_RENEW_SECS", "30")], "dev.log");
    let herd = env.client(&api, &token);
    let id = env.create_cluster(&api, &token, cluster("renewed", 1)).await;
    let c = env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    // The API says when the renewal is due: the end of a 30-second window.
    let first_due = c.certificates_renew_at.expect("an active cluster shows its renewal time");
    assert!(
        first_due > c.created_at && first_due <= c.created_at + chrono::Duration::seconds(60),
        "due {first_due}, created {}",
        c.created_at
    );
    let host = c.nodes[0].address.clone().expect("address");
    let (uri, password) = env.credentials(&api, &token, id).await;
    let started = psql(&uri, &password, "select pg_postmaster_start_time()").unwrap();
    let (serial, not_after) = served_certificate(&host, 5432).unwrap();
    let not_after = chrono::NaiveDateTime::parse_from_str(not_after.trim_end_matches(" GMT"), "%b %e %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("{not_after}: {e}"));

    // Within two windows the node presents a new certificate that outlives the old one.
    let (new_serial, new_not_after) = poll(Duration::from_secs(120), || {
        let now = served_certificate(&host, 5432)?;
        if now.0 == serial { Err(format!("still the first certificate ({serial})")) } else { Ok(now) }
    });
    let new_not_after =
        chrono::NaiveDateTime::parse_from_str(new_not_after.trim_end_matches(" GMT"), "%b %e %H:%M:%S %Y").unwrap();
    assert!(new_not_after > not_after, "renewed {new_serial}: {new_not_after} after {not_after}");
    // Patroni's REST API (reloaded) and etcd (which reads its files at each handshake)
    // present the same renewed certificate as PostgreSQL (a later window may have
    // renewed it again meanwhile, so compared with what PostgreSQL serves now).
    for port in [8008, 2379] {
        poll(Duration::from_secs(30), || {
            let (on_port, on_pg) = (served_certificate(&host, port)?.0, served_certificate(&host, 5432)?.0);
            if on_port != serial && on_port == on_pg {
                Ok(())
            } else {
                Err(format!(":{port} presents {on_port}, PostgreSQL {on_pg}, the first was {serial}"))
            }
        });
    }
    // It came from a renewal task in the cluster's history, which succeeded.
    let events = herd.events(id, Some(100), None).await.unwrap().items;
    let renewal = events
        .iter()
        .find(|e| e.message.contains("renewing the nodes' TLS certificates"))
        .unwrap_or_else(|| panic!("no renewal in the history: {events:#?}"));
    let task = env.wait_succeeded(&api, &token, renewal.task_id.expect("its task"), Duration::from_secs(60)).await;
    assert_eq!(task.kind.to_string(), "update_cluster", "{task:?}");
    let due = herd.cluster(id).await.unwrap().certificates_renew_at.expect("still shown");
    assert!(due > first_due, "the next renewal ({due}) is after the first one's ({first_due})");
    // Clients still verify it against the same CA; PostgreSQL was reloaded, not restarted.
    assert_eq!(psql(&uri, &password, "select pg_postmaster_start_time()").unwrap(), started);
    assert_eq!(psql(&uri, &password, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").unwrap(), "t");

    delete_and_check_clean(&env, &api, &token, id).await;
    drop(dev);
}
