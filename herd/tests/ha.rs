//! High availability through the real `herd` binary: a forced power-off of the
//! primary under a writing client, in synchronous and asynchronous mode; Herd's
//! actions (switchover, failover, reinitialize, restart, reload, stop/start), failover
//! hooks, parameter changes with a rolling restart, and replicas added and removed.

// The drills print what they measured (outage, writes lost): the issue asks for the figures.
#![allow(clippy::print_stdout)]

mod common;

use common::{Env, cluster, poll, psql, refused};
use herd_client::types::{
    ActionKind, ActionRequest, ClusterDto, ClusterStatus, CreateCluster, EventDto, HookRequest, HooksRequest, NodeDto,
    NodeRole, NodeStatus, PowerRequest, PowerState, TaskDto, TaskKind, TaskStatus, UpdateCluster,
};
use herd_client::{Client, ClusterFilter};
use herd_testkit::eventually_async;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const ACTIVE_WITHIN: Duration = Duration::from_secs(240);
const TASK_WITHIN: Duration = Duration::from_secs(180);
const HOOK_SECRET: &str = "hook-secret-0123456789";
/// The receiver listens on loopback, which webhooks may reach only as a named exception.
const HOOK_RECEIVERS: (&str, &str) = ("HERD_HOOKS__ALLOWED_HOSTS", "[\"127.0.0.1\"]");

/// A webhook receiver on 127.0.0.1: records (path, body, signature ok) of every POST.
struct Receiver {
    url: String,
    calls: Arc<Mutex<Vec<(String, Value, bool)>>>,
}

impl Receiver {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let mut r = BufReader::new(s);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (mut len, mut sig) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                    match k.trim().to_ascii_lowercase().as_str() {
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        "x-herd-signature" => sig = v.trim().to_owned(),
                        _ => {}
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let want =
                    format!("sha256={}", hex::encode(herd_core::crypto::hmac_sha256(HOOK_SECRET.as_bytes(), &body)));
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                c.lock().unwrap().push((path, v, sig == want));
                let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Self { url, calls }
    }

    fn hooks(&self) -> HooksRequest {
        let hook = |path: &str| HookRequest { url: format!("{}/{path}", self.url), secret: HOOK_SECRET.into() };
        HooksRequest { pre_failover: Some(hook("pre")), post_failover: Some(hook("post")) }
    }

    fn calls(&self) -> Vec<(String, Value, bool)> {
        self.calls.lock().unwrap().clone()
    }
}

async fn get(herd: &Client, id: Uuid) -> ClusterDto {
    herd.cluster(id).await.unwrap_or_else(|e| panic!("cluster {id}: {e}"))
}

fn node(c: &ClusterDto, role: NodeRole) -> &NodeDto {
    c.nodes.iter().find(|n| n.role == role).unwrap_or_else(|| panic!("no {role}: {c:?}"))
}

fn node_by_id(c: &ClusterDto, id: Uuid) -> &NodeDto {
    c.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}: {c:?}"))
}

fn replicas(c: &ClusterDto) -> Vec<NodeDto> {
    c.nodes.iter().filter(|n| n.role == NodeRole::Replica).cloned().collect()
}

fn address(n: &NodeDto) -> &str {
    n.address.as_deref().unwrap_or_else(|| panic!("node without an address: {n:?}"))
}

/// `address:5432` of the node, as the endpoints show the primary's.
fn pg_address(n: &NodeDto) -> String {
    format!("{}:5432", address(n))
}

/// Every node healthy: one primary running, the rest streaming.
fn all_healthy(c: &ClusterDto, n: usize) -> bool {
    let is = |x: &NodeDto, role, state| x.role == role && x.state.as_deref() == Some(state);
    c.nodes.len() == n
        && c.nodes.iter().filter(|x| is(x, NodeRole::Primary, "running")).count() == 1
        && c.nodes.iter().filter(|x| is(x, NodeRole::Replica, "streaming")).count() == n - 1
}

/// Server parameters for a request, from a JSON object.
fn parameters(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("parameters are an object: {other}"),
    }
}

async fn wait_for(
    herd: &Client,
    id: Uuid,
    what: &str,
    timeout: Duration,
    f: impl Fn(&ClusterDto) -> bool,
) -> ClusterDto {
    eventually_async(what, timeout, || async {
        let c = get(herd, id).await;
        if f(&c) { Ok(c) } else { Err(format!("{c:?}")) }
    })
    .await
}

/// An action on every node (struct update syntax names a node or candidate).
fn action(action: ActionKind) -> ActionRequest {
    ActionRequest { action, node_id: None, candidate_id: None }
}

/// Runs an action and waits for its task to succeed.
async fn act(env: &Env, api: &str, token: &str, id: Uuid, req: ActionRequest) -> TaskDto {
    let v = env.client(api, token).action(id, &req).await.unwrap_or_else(|e| panic!("{req:?}: {e}"));
    let t = env.wait_task(api, token, v.task_id, TASK_WITHIN).await;
    assert_eq!(t.status, TaskStatus::Succeeded, "{req:?} -> {t:?}");
    t
}

/// The newest 100 history events.
async fn events(herd: &Client, id: Uuid) -> Vec<EventDto> {
    herd.events(id, Some(100), None).await.unwrap().items
}

/// A client inserting numbered rows through the multi-host URI, one connection per
/// row (so it follows the primary); records every acknowledged commit with its time.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(i64, Instant)>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(uri: String, password: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let handle = std::thread::spawn(move || {
            let mut i = 0i64;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                if psql(&uri, &password, &format!("insert into w values ({i})")).is_ok() {
                    a.lock().unwrap().push((i, Instant::now()));
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Self { stop, acked, handle: Some(handle) }
    }

    fn acked(&self) -> Vec<(i64, Instant)> {
        self.acked.lock().unwrap().clone()
    }

    fn finish(mut self) -> Vec<(i64, Instant)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.acked()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Drill {
    /// From the power-off request to the first write acknowledged by a new primary.
    write_outage: Duration,
    acked: Vec<(i64, Instant)>,
    lost: Vec<i64>,
    power_off_at: Instant,
}

/// Forced power-off of the primary under a writer; the cluster must elect a new
/// primary, show `degraded`, and return to `active` once the old node is powered on.
async fn drill(env: &Env, api: &str, token: &str, id: Uuid) -> Drill {
    let herd = env.client(api, token);
    let c = get(&herd, id).await;
    let old = node(&c, NodeRole::Primary).clone();
    // Herd keeps etcd's leader off the primary's node, so the crash below costs no
    // etcd election (which would renew the primary's leader key for another ttl).
    let addrs: Vec<String> = c.nodes.iter().map(|n| address(n).to_owned()).collect();
    let primary_addr = address(&old).to_owned();
    let etcd = etcd_client(env, &c.name);
    eventually_async("etcd's leader off the primary's node", Duration::from_secs(60), || async {
        let leader = etcd_leader(&etcd, &addrs).await;
        if leader.as_ref().is_some_and(|l| *l != primary_addr) {
            Ok(())
        } else {
            Err(format!("leader {leader:?}, primary {primary_addr}"))
        }
    })
    .await;
    let (uri, password) = env.credentials(api, token, id).await;
    psql(&uri, &password, "create table if not exists w (id bigint primary key)").unwrap();
    let writer = Writer::start(uri.clone(), password.clone());
    poll(
        Duration::from_secs(30),
        || if writer.acked().len() >= 20 { Ok(()) } else { Err("writer not writing".into()) },
    );

    let power_off_at = Instant::now();
    let before = writer.acked().len();
    let v = herd.power(id, old.id, &power_off()).await.unwrap();
    // The first write acknowledged after the power-off went to the new primary.
    let write_outage = eventually_async("a write accepted after the power-off", Duration::from_secs(60), || async {
        let acked = writer.acked();
        let first = acked.get(before..)?.iter().find(|(_, at)| *at > power_off_at + Duration::from_millis(300))?;
        Some(first.1 - power_off_at)
    })
    .await;
    env.wait_succeeded(api, token, v.task_id, TASK_WITHIN).await;

    // The old primary's member key outlives it by up to one ttl; then it shows stopped.
    let c = wait_for(&herd, id, "degraded with a new primary", Duration::from_secs(60), |c| {
        c.status == ClusterStatus::Degraded
            && c.nodes.iter().any(|n| n.role == NodeRole::Primary && n.id != old.id)
            && c.nodes.iter().any(|n| n.id == old.id && n.status == NodeStatus::Stopped)
    })
    .await;
    let new = node(&c, NodeRole::Primary).clone();
    assert_ne!(new.id, old.id);
    let degraded = ClusterFilter { status: Some(ClusterStatus::Degraded), ..Default::default() };
    let list = herd.clusters(&degraded).await.unwrap();
    assert!(list.iter().any(|x| x.id == id), "{list:?}");
    assert_eq!(c.endpoints.primary_address, Some(pg_address(&new)), "{c:?}");
    // Writes go on a little on the new primary, then stop.
    let n = writer.acked().len();
    poll(Duration::from_secs(20), || if writer.acked().len() >= n + 10 { Ok(()) } else { Err("no writes".into()) });
    let acked = writer.finish();

    let present: std::collections::HashSet<i64> =
        psql(&uri, &password, "select id from w").unwrap().lines().filter_map(|l| l.trim().parse().ok()).collect();
    let lost: Vec<i64> = acked.iter().map(|(i, _)| *i).filter(|i| !present.contains(i)).collect();

    // The old node comes back as a replica and the cluster heals.
    let v = herd.power(id, old.id, &power_on()).await.unwrap();
    env.wait_succeeded(api, token, v.task_id, TASK_WITHIN).await;
    let c = wait_for(&herd, id, "active again", Duration::from_secs(120), |c| {
        c.status == ClusterStatus::Active && all_healthy(c, 3)
    })
    .await;
    let back = node_by_id(&c, old.id);
    assert_eq!(back.role, NodeRole::Replica, "{c:?}");
    assert!(node(&c, NodeRole::Primary).timeline > old.timeline, "a promotion starts a timeline: {c:?}");
    let ev = events(&herd, id).await;
    assert!(ev.iter().any(|e| e.message.starts_with("automatic failover: primary moved from")), "{ev:?}");
    Drill { write_outage, acked, lost, power_off_at }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_failover_loses_no_acknowledged_write() {
    let env = Env::new();
    let hooks = Receiver::start();
    let (_dev, api, token) = env.dev(&[HOOK_RECEIVERS], "dev.log");
    let req = CreateCluster { synchronous: Some(true), hooks: Some(hooks.hooks()), ..cluster("sync", 3) };
    let id = env.create_cluster(&api, &token, req).await;
    let c = env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(c.ha.ttl, 5, "loopback clusters get the fast profile: {c:?}");
    let post = c.hooks.post_failover.as_ref().map(|h| h.url.clone());
    assert_eq!(post, Some(format!("{}/post", hooks.url)), "{c:?}");
    // The typed HookDto has no field for a secret: only the raw body can show that
    // none is sent.
    let (s, raw) = env.call(reqwest::Method::GET, &format!("{api}/v1/clusters/{id}"), &token, None).await;
    assert_eq!(s, 200, "{raw}");
    assert!(raw["hooks"]["post_failover"].get("secret").is_none(), "{raw}");

    let d = drill(&env, &api, &token, id).await;
    println!(
        "synchronous drill: {} writes acknowledged, {} lost, write outage {:.2} s",
        d.acked.len(),
        d.lost.len(),
        d.write_outage.as_secs_f64()
    );
    assert!(d.lost.is_empty(), "acknowledged rows lost in synchronous mode: {:?}", d.lost);
    // Patroni's bound for the fast profile is ttl + loop_wait = 6 s; allow for a loaded machine.
    assert!(d.write_outage < Duration::from_secs(30), "{:?}", d.write_outage);
    // The post-failover hook heard of the automatic failover, signed.
    let calls = poll(Duration::from_secs(20), || {
        let c: Vec<_> =
            hooks.calls().into_iter().filter(|(p, v, _)| p == "/post" && v["event"] == "automatic_failover").collect();
        if c.is_empty() { Err("no post hook yet".into()) } else { Ok(c) }
    });
    assert!(calls[0].2, "signature must verify: {calls:?}");
    assert_eq!(calls[0].1["cluster_id"].as_str(), Some(id.to_string().as_str()), "{calls:?}");
    assert!(hooks.calls().iter().all(|(p, _, _)| p != "/pre"), "Patroni's own failover has no pre hook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_failover_reports_its_loss_bound() {
    let env = Env::new();
    let (_dev, api, token) = env.dev(&[], "dev.log");
    let id = env.create_cluster(&api, &token, CreateCluster { synchronous: Some(false), ..cluster("async", 3) }).await;
    let c = env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(c.ha.maximum_lag_on_failover, 1_048_576, "{c:?}");
    let d = drill(&env, &api, &token, id).await;
    let last_acked_before = d.acked.iter().filter(|(_, at)| *at < d.power_off_at).map(|(i, _)| *i).max().unwrap();
    println!(
        "asynchronous drill: {} writes acknowledged, {} lost {:?} (ids acknowledged up to {last_acked_before} before the \
         power-off), write outage {:.2} s",
        d.acked.len(),
        d.lost.len(),
        d.lost,
        d.write_outage.as_secs_f64()
    );
    // What async mode may lose is bounded by the replica's lag at the crash: rows
    // acknowledged a second before it had long reached the replicas.
    let second_before = d.power_off_at - Duration::from_secs(1);
    let old_lost: Vec<i64> =
        d.acked.iter().filter(|(i, at)| *at < second_before && d.lost.contains(i)).map(|(i, _)| *i).collect();
    assert!(old_lost.is_empty(), "rows acknowledged over a second before the crash were lost: {old_lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_hooks_parameters_and_replicas() {
    let env = Env::new();
    let hooks = Receiver::start();
    let (_dev, api, token) = env.dev(&[("HERD_WORKER__RECONCILE_INTERVAL_SECS", "2"), HOOK_RECEIVERS], "dev.log");
    let herd = env.client(&api, &token);
    let req = CreateCluster {
        // Asynchronous: in synchronous mode Patroni promotes only the synchronous
        // standby, and this test picks its candidates freely.
        synchronous: Some(false),
        hooks: Some(hooks.hooks()),
        parameters: Some(parameters(json!({"work_mem": "8MB"}))),
        ..cluster("ops", 3)
    };
    let id = env.create_cluster(&api, &token, req).await;
    let c = env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let (uri, password) = env.credentials(&api, &token, id).await;
    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 1000)")
        .unwrap();

    // Switchover to a named candidate, with the pre and post hooks in order.
    let target = replicas(&c)[0].clone();
    act(&env, &api, &token, id, ActionRequest { candidate_id: Some(target.id), ..action(ActionKind::Switchover) })
        .await;
    let c = get(&herd, id).await;
    assert_eq!(node(&c, NodeRole::Primary).id, target.id, "{c:?}");
    let calls = hooks.calls();
    let sw: Vec<_> = calls.iter().filter(|(_, v, _)| v["event"] == "switchover").collect();
    assert_eq!(sw.len(), 2, "{calls:?}");
    assert_eq!((sw[0].0.as_str(), sw[1].0.as_str()), ("/pre", "/post"), "{calls:?}");
    assert!(sw.iter().all(|(_, _, signed)| *signed));
    assert_eq!(sw[1].1["to"].as_str(), Some(target.name.as_str()), "{calls:?}");
    let ev = events(&herd, id).await;
    assert!(ev.iter().any(|e| e.step.as_deref() == Some("pre_failover") && e.message.contains("delivered")), "{ev:?}");
    // The new primary's Patroni reported its role itself, signed with that member's own
    // credential (the API takes nothing else): node script to history, end to end.
    let reported = format!("{} reports role primary", target.name);
    poll_events(&herd, id, "signed on_role_change", |e| {
        e.step.as_deref() == Some("on_role_change") && e.message.starts_with(&reported)
    })
    .await;

    // Failover to a chosen replica.
    let chosen = replicas(&c)[1].clone();
    act(&env, &api, &token, id, ActionRequest { candidate_id: Some(chosen.id), ..action(ActionKind::Failover) }).await;
    let c = wait_for(&herd, id, "failover done", Duration::from_secs(60), |c| all_healthy(c, 3)).await;
    assert_eq!(node(&c, NodeRole::Primary).id, chosen.id, "{c:?}");
    assert_eq!(psql(&uri, &password, "select count(*) from t").unwrap(), "1000");
    // Failover without a candidate: the most advanced replica is promoted.
    act(&env, &api, &token, id, action(ActionKind::Failover)).await;
    let c = wait_for(&herd, id, "failover done", Duration::from_secs(60), |c| all_healthy(c, 3)).await;
    assert_ne!(node(&c, NodeRole::Primary).id, chosen.id, "{c:?}");
    assert_eq!(psql(&uri, &password, "select count(*) from t").unwrap(), "1000");

    // Reinitialize a replica: rebuilt from the primary, streaming, with the data.
    let r = replicas(&c)[0].clone();
    act(&env, &api, &token, id, ActionRequest { node_id: Some(r.id), ..action(ActionKind::Reinitialize) }).await;
    let c = wait_for(&herd, id, "reinitialized replica streams", Duration::from_secs(60), |c| all_healthy(c, 3)).await;
    let conn = format!("host={} port=5432 dbname=postgres user=admin {}", address(&r), env.tls(id));
    poll(Duration::from_secs(20), || match psql(&conn, &password, "select count(*) from t") {
        Ok(v) if v == "1000" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    // Refused: reinitializing the primary; an unknown candidate.
    let p = node(&c, NodeRole::Primary).clone();
    let no = refused(herd.action(id, &ActionRequest { node_id: Some(p.id), ..action(ActionKind::Reinitialize) }).await);
    assert_eq!((no.status, no.code.as_str()), (409, "node_is_primary"), "{no:?}");
    let nobody = ActionRequest { candidate_id: Some(Uuid::nil()), ..action(ActionKind::Failover) };
    let no = refused(herd.action(id, &nobody).await);
    assert_eq!((no.status, no.code.as_str()), (422, "validation_failed"), "{no:?}");

    // Restart one node, reload all, stop and start a replica.
    act(&env, &api, &token, id, ActionRequest { node_id: Some(r.id), ..action(ActionKind::Restart) }).await;
    act(&env, &api, &token, id, action(ActionKind::Reload)).await;
    act(&env, &api, &token, id, ActionRequest { node_id: Some(r.id), ..action(ActionKind::Stop) }).await;
    let c = wait_for(&herd, id, "stopped replica", Duration::from_secs(30), |c| {
        c.status == ClusterStatus::Degraded && c.nodes.iter().any(|n| n.id == r.id && n.status == NodeStatus::Stopped)
    })
    .await;
    assert!(!node_by_id(&c, r.id).desired_running, "{c:?}");
    act(&env, &api, &token, id, ActionRequest { node_id: Some(r.id), ..action(ActionKind::Start) }).await;
    wait_for(&herd, id, "active after start", Duration::from_secs(60), |c| {
        c.status == ClusterStatus::Active && all_healthy(c, 3)
    })
    .await;

    // Reconcile: Patroni killed on a running server is started again by Herd.
    let addr = address(&r);
    let pid = listener_pid(addr, 8008).expect("Patroni listens on :8008");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let want = format!("patroni on {}", r.name);
    let ev = poll_events(&herd, id, "reconcile restart", |e| {
        e.step.as_deref() == Some("reconcile") && e.message.contains(&want)
    })
    .await;
    assert_eq!(ev.level, "warn", "{ev:?}");
    wait_for(&herd, id, "healthy after reconcile", Duration::from_secs(60), |c| {
        c.status == ClusterStatus::Active && all_healthy(c, 3)
    })
    .await;
    assert_ne!(listener_pid(addr, 8008), Some(pid), "a new Patroni process");

    // Invalid parameters: every problem reported, nothing changed, no task.
    let before = get(&herd, id).await;
    let invalid = parameters(json!({"no_such_thing": 1, "max_connections": 5_000_000, "work_mem": true}));
    let p = refused(herd.update_cluster(id, &UpdateCluster { parameters: Some(invalid), ..Default::default() }).await);
    assert_eq!((p.status, p.code.as_str()), (422, "validation_failed"), "{p:?}");
    let fields: Vec<&str> = p.errors.iter().map(|e| e.field.as_str()).collect();
    for f in ["parameters.no_such_thing", "parameters.max_connections", "parameters.work_mem"] {
        assert!(fields.contains(&f), "{f} not in {p:?}");
    }
    let after = get(&herd, id).await;
    assert_eq!(after.parameters, before.parameters);
    let task_id = |c: &ClusterDto| c.task.as_ref().map(|t| t.id);
    assert_eq!(task_id(&after), task_id(&before), "no task for a refused change");

    // A restart-requiring change rolls through with exactly one switchover.
    let primary_before = node(&after, NodeRole::Primary).id;
    let roll = parameters(json!({"work_mem": "16MB", "max_connections": 150}));
    let v = herd.update_cluster(id, &UpdateCluster { parameters: Some(roll), ..Default::default() }).await.unwrap();
    let task = v.task_id.unwrap_or_else(|| panic!("no task for a parameter change: {v:?}"));
    env.wait_succeeded(&api, &token, task, TASK_WITHIN).await;
    let c = wait_for(&herd, id, "healthy after the roll", Duration::from_secs(60), |c| all_healthy(c, 3)).await;
    assert_ne!(node(&c, NodeRole::Primary).id, primary_before, "the primary's restart goes through a switchover");
    let ev = events(&herd, id).await;
    let switchovers = ev
        .iter()
        .filter(|e| e.task_id == Some(task) && e.step.as_deref() == Some("switchover") && e.message.contains("moved"))
        .count();
    assert_eq!(switchovers, 1, "{ev:?}");
    for n in &c.nodes {
        let conn = format!("host={} port=5432 dbname=postgres user=admin {}", address(n), env.tls(id));
        assert_eq!(psql(&conn, &password, "show max_connections").unwrap(), "150", "{n:?}");
        assert_eq!(psql(&conn, &password, "show work_mem").unwrap(), "16MB", "{n:?}");
        assert!(!n.pending_restart, "{n:?}");
    }

    // Add a replica, then remove it; removing the primary is refused.
    let v = herd.add_nodes(id, 1).await.unwrap();
    assert_eq!(v.nodes.len(), 1, "{v:?}");
    let added = v.nodes[0].id;
    env.wait_succeeded(&api, &token, v.task_id, TASK_WITHIN).await;
    let c = wait_for(&herd, id, "4 healthy nodes", Duration::from_secs(60), |c| all_healthy(c, 4)).await;
    let a = node_by_id(&c, added);
    let conn = format!("host={} port=5432 dbname=postgres user=admin {}", address(a), env.tls(id));
    assert_eq!(psql(&conn, &password, "select count(*) from t").unwrap(), "1000");
    assert_eq!(env.servers().len(), 4);
    let p = node(&c, NodeRole::Primary).id;
    let no = refused(herd.remove_node(id, p).await);
    assert_eq!((no.status, no.code.as_str()), (409, "node_is_primary"), "{no:?}");
    let v = herd.remove_node(id, added).await.unwrap();
    env.wait_succeeded(&api, &token, v.task_id, TASK_WITHIN).await;
    let c = wait_for(&herd, id, "3 healthy nodes", Duration::from_secs(60), |c| {
        c.status == ClusterStatus::Active && all_healthy(c, 3)
    })
    .await;
    assert!(c.nodes.iter().all(|n| n.id != added), "{c:?}");
    assert_eq!(env.servers().len(), 3, "the removed node's server is deleted");

    // Auto-heal: a replica's server vanishes; Herd reports it and builds a new node.
    let v = herd.update_cluster(id, &UpdateCluster { auto_heal: Some(true), ..Default::default() }).await.unwrap();
    assert!(v.task_id.is_none() && v.cluster.auto_heal, "{v:?}");
    let victim = replicas(&c)[0].clone();
    env.delete_server_at(address(&victim)).await;
    let gone = format!("server of node {} is gone", victim.name);
    poll_events(&herd, id, "server gone", |e| e.step.as_deref() == Some("reconcile") && e.message == gone).await;
    let c = wait_for(&herd, id, "healed", Duration::from_secs(180), |c| {
        c.status == ClusterStatus::Active && all_healthy(c, 3) && c.nodes.iter().all(|n| n.id != victim.id)
    })
    .await;
    let task = c.task.as_ref().unwrap_or_else(|| panic!("no task: {c:?}"));
    assert_eq!((task.kind, task.status), (TaskKind::ReplaceNode, TaskStatus::Succeeded), "{c:?}");
    assert_eq!(env.servers().len(), 3);

    env.delete_cluster(&api, &token, id, TASK_WITHIN).await;
    assert!(env.servers().is_empty());
}

/// A client of cluster `cluster`'s etcd as one of its members (etcd takes only
/// clients of the cluster's CA): the certificate files of the first server.
fn etcd_client(env: &Env, cluster: &str) -> reqwest::Client {
    let root = env.state().join("local/servers").join(env.servers().first().expect("a server"));
    let read = |p: String| std::fs::read(root.join(&p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let ca = reqwest::Certificate::from_pem(&read(format!("etc/patroni/15-{cluster}.ca.crt"))).unwrap();
    let mut pem = read(format!("etc/etcd/etcd-{cluster}.crt"));
    pem.extend(read(format!("etc/etcd/etcd-{cluster}.key")));
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

/// The address of the node whose etcd member leads etcd.
async fn etcd_leader(http: &reqwest::Client, addrs: &[String]) -> Option<String> {
    let mut leader = None;
    let mut ids = Vec::new();
    for a in addrs {
        let url = format!("https://{a}:2379/v3/maintenance/status");
        let Ok(r) = http.post(&url).json(&json!({})).send().await else { continue };
        let Ok(v) = r.json::<Value>().await else { continue };
        leader = leader.or_else(|| v["leader"].as_str().map(str::to_owned));
        ids.push((a.clone(), v["header"]["member_id"].as_str().unwrap_or_default().to_owned()));
    }
    let leader = leader?;
    ids.into_iter().find(|(_, id)| *id == leader).map(|(a, _)| a)
}

/// The pid of the process listening on `addr:port` (from `ss`).
fn listener_pid(addr: &str, port: u16) -> Option<i32> {
    let out = std::process::Command::new("ss").args(["-Hltnp", &format!("src {addr}:{port}")]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let i = text.find("pid=")? + 4;
    text[i..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Polls the history until an event matches; returns it.
async fn poll_events(herd: &Client, id: Uuid, what: &str, f: impl Fn(&EventDto) -> bool) -> EventDto {
    eventually_async(&format!("a {what} event"), Duration::from_secs(90), || async {
        let all = events(herd, id).await;
        match all.iter().position(&f) {
            Some(i) => Ok(all[i].clone()),
            None => Err(format!("{all:?}")),
        }
    })
    .await
}

/// Powers a node on or off through the API and waits for the task.
async fn power(env: &Env, api: &str, token: &str, id: Uuid, node: &NodeDto, req: PowerRequest) {
    let v = env.client(api, token).power(id, node.id, &req).await.unwrap_or_else(|e| panic!("{req:?}: {e}"));
    let t = env.wait_task(api, token, v.task_id, TASK_WITHIN).await;
    assert_eq!(t.status, TaskStatus::Succeeded, "{req:?} -> {t:?}");
}

fn power_off() -> PowerRequest {
    PowerRequest { state: PowerState::Off, force: Some(true) }
}

fn power_on() -> PowerRequest {
    PowerRequest { state: PowerState::On, force: None }
}

/// The failure Patroni 3.0 cannot get out of alone: in synchronous mode a new primary
/// has no synchronous standby for a few seconds after its promotion, and only a
/// recorded synchronous standby may be promoted. Made deterministic here: the
/// asynchronous replica is stopped, so after the first failover nobody streams from
/// the new primary; it is then powered off too, and the old primary comes back. With
/// no leader while a replica runs, Herd forces a failover to the most advanced one,
/// on a timeline the dead primary never used, and the cluster heals completely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaderless_synchronous_cluster_is_rescued_by_a_forced_failover() {
    let env = Env::new();
    let (dev, api, token) = env.dev(&[], "dev.log");
    let herd = env.client(&api, &token);
    let id = env.create_cluster(&api, &token, CreateCluster { synchronous: Some(true), ..cluster("rescue", 3) }).await;
    let c = env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    // Active in synchronous mode means a synchronous standby is on record.
    let sync: Vec<&NodeDto> = c.nodes.iter().filter(|n| n.sync_standby).collect();
    assert_eq!(sync.len(), 1, "one synchronous standby: {c:?}");
    assert_eq!(sync[0].role, NodeRole::Replica, "{c:?}");
    let (a, b) = (node(&c, NodeRole::Primary).clone(), sync[0].clone());
    let r = replicas(&c).into_iter().find(|n| n.id != b.id).unwrap();
    let (uri, password) = env.credentials(&api, &token, id).await;
    psql(&uri, &password, "create table kept (id int primary key); insert into kept select generate_series(1, 100)")
        .unwrap();

    act(&env, &api, &token, id, ActionRequest { node_id: Some(r.id), ..action(ActionKind::Stop) }).await;
    power(&env, &api, &token, id, &a, power_off()).await;
    let c = wait_for(&herd, id, "the synchronous standby promoted", Duration::from_secs(60), |c| {
        c.endpoints.primary_address == Some(pg_address(&b)) && node(c, NodeRole::Primary).timeline > a.timeline
    })
    .await;
    let b_timeline = node(&c, NodeRole::Primary).timeline.unwrap();
    // Nobody streams from it: the new primary has no synchronous standby, and says so.
    assert_eq!(c.status, ClusterStatus::Degraded, "{c:?}");
    assert!(c.nodes.iter().all(|n| !n.sync_standby), "{c:?}");
    power(&env, &api, &token, id, &b, power_off()).await;
    power(&env, &api, &token, id, &a, power_on()).await;

    // Patroni alone would leave the old primary waiting for ever; Herd steps in after 3 ttl.
    let c = wait_for(&herd, id, "a forced failover", Duration::from_secs(120), |c| {
        c.endpoints.primary_address == Some(pg_address(&a))
            && node(c, NodeRole::Primary).state.as_deref() == Some("running")
            && node(c, NodeRole::Primary).timeline != a.timeline
    })
    .await;
    let ev = events(&herd, id).await;
    let forced = ev
        .iter()
        .find(|e| e.message.contains("Forcing a failover to the most advanced replica"))
        .unwrap_or_else(|| panic!("no forced-failover event: {ev:?}"));
    assert_eq!(forced.level, "warn", "{forced:?}");
    let forced_task = forced.task_id.unwrap_or_else(|| panic!("the forced failover has no task: {forced:?}"));
    let t = env.wait_task(&api, &token, forced_task, TASK_WITHIN).await;
    assert_eq!((t.kind, t.status), (TaskKind::ClusterAction, TaskStatus::Succeeded), "{t:?}");
    let a_timeline = node(&c, NodeRole::Primary).timeline.unwrap();
    let log = dev.log_text();
    let failover_log: Vec<&str> = log.lines().filter(|l| l.contains("failover") || l.contains("timeline")).collect();
    assert!(a_timeline > b_timeline, "a timeline is never reused: {a_timeline} after {b_timeline}: {failover_log:#?}");
    assert_eq!(psql(&uri, &password, "select count(*) from kept").unwrap(), "100");
    psql(&uri, &password, "insert into kept values (101)").unwrap();

    // Everything back: the stopped replica started, the diverged one rewound.
    act(&env, &api, &token, id, ActionRequest { node_id: Some(r.id), ..action(ActionKind::Start) }).await;
    power(&env, &api, &token, id, &b, power_on()).await;
    let c = wait_for(&herd, id, "active again", Duration::from_secs(180), |c| {
        c.status == ClusterStatus::Active && all_healthy(c, 3)
    })
    .await;
    assert_eq!(node(&c, NodeRole::Primary).id, a.id, "{c:?}");
    for n in replicas(&c) {
        let conn = format!("host={} port=5432 dbname=postgres user=admin {}", address(&n), env.tls(id));
        poll(Duration::from_secs(30), || match psql(&conn, &password, "select count(*) from kept") {
            Ok(v) if v == "101" => Ok(()),
            other => Err(format!("{}: {other:?}", n.name)),
        });
    }
}
