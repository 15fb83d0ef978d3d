//! Day-2 operations against real PostgreSQL 15, Patroni 3.0 and etcd 3.4 on loopback
//! hosts of the local provider: switchover, failover,
//! reinitialize, dynamic configuration with restarts, the role-change callback,
//! adding and removing a member, holding Patroni stopped across a power cycle and
//! restarting a killed Patroni. Needs root and the Debian packages (see
//! `postgresql.rs`); run with `--test-threads=1`.
//!
//! One 3-node cluster runs the operations in sequence, to keep the run short on
//! small machines. The `Fixture` deletes every server on drop, pass or fail.

mod common;

use common::*;
use herd_core::status::NodeRole;
use herd_datastores::postgresql::{PostgresManager, scope};
use herd_datastores::{Callback, ClusterSpec, Lifecycle, ManagerError, Membership, NodeSpec, Operations};
use herd_providers::Provider;
use secrecy::SecretString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CALLBACK_TOKEN: &str = "cb-token-0123456789abcdef";

/// One request the callback receiver got.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: serde_json::Value,
    raw: Vec<u8>,
}

/// A tiny HTTP server on 127.0.0.1 standing in for Herd's callback endpoint.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind callback receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Some(r) = Self::serve(conn) {
                            g.lock().unwrap().push(r);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self { addr, got, stop, thread: Some(thread) }
    }

    fn serve(mut conn: std::net::TcpStream) -> Option<Received> {
        conn.set_nonblocking(false).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = conn.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?.to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        while buf.len() < head_end + len {
            let n = conn.read(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let raw = buf[head_end..(head_end + len).min(buf.len())].to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or_default();
        let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        Some(Received { request_line, headers, body, raw })
    }

    fn events(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn block<T>(fx: &Fixture, f: impl std::future::Future<Output = T>) -> T {
    fx.rt.block_on(f)
}

/// Patroni's /cluster as JSON, from the first member that answers.
fn patroni_cluster(fx: &Fixture, c: &ClusterSpec) -> serde_json::Value {
    for m in &c.members {
        let url = format!("https://{}:8008/cluster", m.address);
        if let Ok(v) = block(fx, async { https(c).get(&url).send().await?.json::<serde_json::Value>().await }) {
            return v;
        }
    }
    panic!("no member answered /cluster");
}

fn members_with_role(fx: &Fixture, c: &ClusterSpec, role: &str) -> Vec<String> {
    let v = patroni_cluster(fx, c);
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == role)
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Names of the etcd members, through the gateway of `via`.
fn etcd_members(fx: &Fixture, c: &ClusterSpec, via: &NodeSpec) -> Vec<String> {
    let url = format!("https://{}:2379/v3/cluster/member/list", via.address);
    let v: serde_json::Value =
        block(fx, async { https(c).post(&url).body("{}").send().await?.json::<serde_json::Value>().await })
            .expect("etcd member list");
    let mut names: Vec<String> =
        v["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap_or("").to_owned()).collect();
    names.sort();
    names
}

fn node<'a>(c: &'a ClusterSpec, name: &str) -> &'a NodeSpec {
    c.members.iter().find(|m| m.name == name).unwrap()
}

fn converge(fx: &Fixture, m: &PostgresManager, c: &ClusterSpec, what: &str) -> herd_datastores::ClusterHealth {
    let started = Instant::now();
    let h = block(fx, m.wait_converged(c, CONVERGE_TIMEOUT)).unwrap_or_else(|e| panic!("converged after {what}: {e}"));
    eprintln!("  converged after {what} in {:?}", started.elapsed());
    h
}

fn code(r: Result<impl std::fmt::Debug, ManagerError>) -> &'static str {
    match r {
        Err(e) => e.code().as_str(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// Whether the node's Patroni runs, per its control script.
fn patroni_runs(l_root: &Path, cluster: &str) -> bool {
    let entry = l_root.join(format!("etc/herd/boot.d/30-patroni-15-{cluster}"));
    Command::new(&entry).arg("status").status().map(|s| s.success()).unwrap_or(false)
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let v = f();
    eprintln!("{what}: {:?}", started.elapsed());
    v
}

#[test]
fn three_node_cluster_day2_operations() {
    let total = Instant::now();
    let fx = Fixture::new();
    let receiver = Receiver::start();
    let m = Arc::new(PostgresManager::default());
    let (mut c, mut servers) = fx.cluster("ops", 3, true);
    c.parameters.insert("statement_timeout".into(), "5min".into());
    // One credential per member (Herd derives them from the master key).
    let credential = |member: &str| format!("{CALLBACK_TOKEN}-{member}");
    c.callback = Some(Callback {
        url: format!("http://{}/hooks/patroni/{}", receiver.addr, c.cluster_id),
        credentials: c.members.iter().map(|m| (m.name.clone(), SecretString::from(credential(&m.name)))).collect(),
    });
    let (health, took) = bring_up(&fx, &m, &c);
    eprintln!("bring up 3 nodes: {took:?}");
    let (primary, _) = primary_and_replicas(&health, &c);
    admin_sql(&primary.address.to_string(), "CREATE TABLE kept (id int PRIMARY KEY, v text)");
    admin_sql(&primary.address.to_string(), "INSERT INTO kept VALUES (1, 'before')");

    // The token file is private to the service user, and no log or config holds it.
    let root = &servers[0].root_prefix;
    let token_file = root.join("etc/patroni/15-ops.callback-token");
    let meta = std::fs::metadata(&token_file).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), service_uid(&servers[0]));
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), credential(&c.members[0].name), "its own member's");
    assert!(!std::fs::read_to_string(root.join("etc/patroni/15-ops.yml")).unwrap().contains(CALLBACK_TOKEN));

    // ---- switchover: refusals first, then to the synchronous standby by name.
    let leader = health.leader.clone().unwrap();
    // Patroni records its synchronous standby one loop after it streams.
    let sync = eventually("a synchronous standby", Duration::from_secs(20), || {
        let sync = members_with_role(&fx, &c, "sync_standby");
        (sync.len() == 1).then(|| sync[0].clone())
    });
    let other = c.members.iter().find(|n| n.name != leader && n.name != sync).unwrap().name.clone();
    assert_eq!(code(block(&fx, m.switchover(&c, Some(&other)))), "candidate_not_synchronous");
    assert_eq!(code(block(&fx, m.switchover(&c, Some("ops-9")))), "unknown_member");
    let mut tagged = c.clone();
    tagged.members.iter_mut().find(|n| n.name == sync).unwrap().tags.no_failover = true;
    assert_eq!(code(block(&fx, m.switchover(&tagged, Some(&sync)))), "candidate_not_eligible");
    let mut lonely = tagged.clone();
    for n in &mut lonely.members {
        n.tags.no_failover = n.name != leader;
    }
    assert_eq!(code(block(&fx, m.switchover(&lonely, None))), "no_candidate");

    let new_leader = timed("switchover", || block(&fx, m.switchover(&c, Some(&sync)))).expect("switchover");
    assert_eq!(new_leader, sync);
    let addr = node(&c, &sync).address.to_string();
    admin_sql(&addr, "INSERT INTO kept VALUES (2, 'after switchover')");
    // Idempotent: asking again for the current leader succeeds at once.
    assert_eq!(block(&fx, m.switchover(&c, Some(&sync))).unwrap(), sync);

    // The new primary reported its role change with the token.
    let event = eventually("on_role_change from the new primary", Duration::from_secs(20), || {
        receiver.events().into_iter().find(|e| e.body["member"] == sync.as_str() && e.body["role"] == "master")
    });
    assert!(event.request_line.starts_with("POST /hooks/patroni/"), "{}", event.request_line);
    let header = |k: &str| event.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    // Signed with the member's own credential over timestamp and body; the
    // credential itself never travels.
    assert_eq!(header("authorization"), "");
    assert_eq!(header("x-herd-member"), sync);
    let stamp: i64 = header("x-herd-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - stamp).abs() < 60, "{stamp}");
    let signature = header("x-herd-signature");
    assert!(
        herd_core::hooks::verify_callback_signature(&credential(&sync), stamp, &event.raw, &signature),
        "{signature} does not verify"
    );
    assert!(!herd_core::hooks::verify_callback_signature(&credential(&other), stamp, &event.raw, &signature));
    assert!(!String::from_utf8_lossy(&event.raw).contains(CALLBACK_TOKEN));
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(event.body["action"], "on_role_change");
    assert_eq!(event.body["scope"], scope(&c).as_str());
    converge(&fx, &m, &c, "switchover");

    // ---- failover to the (new) synchronous standby.
    let sync = eventually("a synchronous standby", Duration::from_secs(20), || {
        members_with_role(&fx, &c, "sync_standby").into_iter().next()
    });
    let promoted = timed("failover", || block(&fx, m.failover(&c, Some(&sync)))).expect("failover");
    assert_eq!(promoted, sync);
    let primary_addr = node(&c, &sync).address.to_string();
    admin_sql(&primary_addr, "INSERT INTO kept VALUES (3, 'after failover')");
    let h = converge(&fx, &m, &c, "failover");
    assert_eq!(h.leader.as_deref(), Some(sync.as_str()));

    // ---- reinitialize: never the primary; a replica comes back with the data.
    assert_eq!(code(block(&fx, m.reinitialize(&c, node(&c, &sync)))), "is_primary");
    let replica = h.nodes.iter().find(|n| n.role == NodeRole::Replica).unwrap().name.clone();
    timed("reinitialize", || block(&fx, m.reinitialize(&c, node(&c, &replica)))).expect("reinitialize");
    let replica_addr = node(&c, &replica).address.to_string();
    let rows = eventually("rows on the reinitialized replica", Duration::from_secs(20), || {
        psql(&replica_addr, "herd_admin", ADMIN_PW, "SELECT count(*) FROM kept").ok().filter(|n| n == "3")
    });
    assert_eq!(rows, "3");
    converge(&fx, &m, &c, "reinitialize");

    // ---- dynamic configuration: a restart parameter, a reload one, a removed one.
    assert_eq!(admin_sql(&replica_addr, "SHOW statement_timeout"), "5min");
    c.parameters.insert("max_connections".into(), 60.into());
    c.parameters.insert("work_mem".into(), "16MB".into());
    c.parameters.remove("statement_timeout");
    let mut pending = match timed("apply_dynamic_config", || block(&fx, m.apply_dynamic_config(&c))) {
        Ok(p) => p,
        Err(e) => {
            for s in &servers {
                let log = std::fs::read_to_string(s.root_prefix.join("var/log/postgresql/patroni-15-ops.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("==== {} patroni log:\n{}", s.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            panic!("apply: {e}");
        }
    };
    pending.sort();
    assert_eq!(pending, ["ops-0", "ops-1", "ops-2"], "max_connections needs a restart everywhere");
    for n in &c.members {
        let a = n.address.to_string();
        assert_eq!(admin_sql(&a, "SHOW work_mem"), "16MB", "{}: reload is enough", n.name);
        assert_eq!(admin_sql(&a, "SHOW statement_timeout"), "0", "{}: removed returns to default", n.name);
        assert_eq!(admin_sql(&a, "SHOW max_connections"), "50", "{}: not before a restart", n.name);
    }
    let h = block(&fx, m.health(&c)).unwrap();
    let leader = h.leader.clone().unwrap();
    // Replicas first: a standby must not have fewer connections than its primary.
    let mut order: Vec<&NodeSpec> = c.members.iter().filter(|n| n.name != leader).collect();
    order.push(node(&c, &leader));
    for n in order {
        timed(&format!("restart_node {}", n.name), || block(&fx, m.restart_node(&c, n))).expect("restart");
        assert_eq!(admin_sql(&n.address.to_string(), "SHOW max_connections"), "60");
    }
    eventually("no pending restart", Duration::from_secs(20), || {
        block(&fx, m.health(&c)).ok().filter(|h| h.nodes.iter().all(|n| !n.pending_restart))
    });
    assert_eq!(block(&fx, m.apply_dynamic_config(&c)).unwrap(), Vec::<String>::new(), "nothing left to restart");
    block(&fx, m.reload_node(&c, node(&c, &replica))).expect("reload");
    converge(&fx, &m, &c, "restarts");

    // ---- a fourth member joins the running etcd and Patroni cluster.
    let (mut extra, extra_server) = fx.node("ops-3");
    extra.joins_existing = true;
    let mut c4 = c.clone();
    c4.members.push(extra.clone());
    fx.reissue_tls(&mut c4);
    // Herd derives each member's credential when it builds the spec; the new one's too.
    if let Some(cb) = c4.callback.as_mut() {
        cb.credentials.insert(extra.name.clone(), SecretString::from(credential(&extra.name)));
    }
    timed("add member", || {
        block(&fx, m.add_member(&c4, &extra)).expect("add member");
        block(&fx, m.add_member(&c4, &extra)).expect("add member again");
        block(&fx, m.prepare(&c4, &extra)).expect("prepare");
        for n in &c4.members {
            block(&fx, m.configure(&c4, n)).expect("configure");
        }
        block(&fx, m.start_dcs(&c4, &extra)).expect("start etcd");
        block(&fx, m.start_ha(&c4, &extra)).expect("start Patroni");
    });
    servers.push(extra_server.clone());
    converge(&fx, &m, &c4, "add member");
    assert_eq!(etcd_members(&fx, &c, &c.members[0]), ["ops-0", "ops-1", "ops-2", "ops-3"]);
    let extra_addr = extra.address.to_string();
    eventually("rows on the new member", Duration::from_secs(20), || {
        psql(&extra_addr, "herd_admin", ADMIN_PW, "SELECT count(*) FROM kept").ok().filter(|n| n == "3")
    });

    // ---- and leaves again.
    timed("remove member", || {
        block(&fx, m.stop_node(&c4, &extra)).expect("stop node");
        block(&fx, m.remove_member(&c, &extra)).expect("remove member");
        block(&fx, m.remove_member(&c, &extra)).expect("remove member again");
        for n in &c.members {
            block(&fx, m.configure(&c, n)).expect("configure");
        }
    });
    assert_eq!(etcd_members(&fx, &c, &c.members[0]), ["ops-0", "ops-1", "ops-2"]);
    let h = converge(&fx, &m, &c, "remove member");
    assert_eq!(h.nodes.len(), 3, "{h:?}");
    block(&fx, fx.provider.delete_server(&extra_server.id)).expect("delete server");
    servers.pop();

    // ---- stop_ha holds Patroni stopped, across a power cycle, until start_ha.
    let replica = h.nodes.iter().find(|n| n.role == NodeRole::Replica).unwrap().name.clone();
    let (rnode, rserver) = {
        let i = c.members.iter().position(|n| n.name == replica).unwrap();
        (c.members[i].clone(), servers[i].clone())
    };
    timed("stop_ha", || block(&fx, m.stop_ha(&c, &rnode))).expect("stop_ha");
    assert!(!patroni_runs(&rserver.root_prefix, "ops"));
    assert!(daemons(&fx, &rserver).iter().all(|(_, comm, _)| !comm.starts_with("postgres")), "PostgreSQL stopped");
    assert_eq!(block(&fx, m.ensure_running(&c, &rnode)).unwrap(), Vec::<String>::new(), "held, not restarted");
    block(&fx, fx.provider.stop_server(&rserver.id, true)).expect("power off");
    block(&fx, fx.provider.start_server(&rserver.id)).expect("power on");
    let etcd_url = format!("https://{}:2379/health", rnode.address);
    let client = https(&c);
    eventually("etcd back after the power cycle", Duration::from_secs(30), || {
        block(&fx, async { client.get(&etcd_url).send().await.ok()?.json::<serde_json::Value>().await.ok() })
            .filter(|v| v["health"] == "true")
    });
    assert!(!patroni_runs(&rserver.root_prefix, "ops"), "the boot list left Patroni stopped");
    assert_eq!(block(&fx, m.ensure_running(&c, &rnode)).unwrap(), Vec::<String>::new());
    timed("start_ha", || block(&fx, m.start_ha(&c, &rnode))).expect("start_ha");
    converge(&fx, &m, &c, "start_ha");

    // ---- a killed Patroni is started again by ensure_running.
    let pid_file = rserver.root_prefix.join("run/herd/patroni-15-ops.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    eventually("Patroni gone", Duration::from_secs(10), || (!patroni_runs(&rserver.root_prefix, "ops")).then_some(()));
    let started = timed("ensure_running", || block(&fx, m.ensure_running(&c, &rnode))).expect("ensure_running");
    assert_eq!(started, ["patroni"]);
    converge(&fx, &m, &c, "ensure_running");
    assert_eq!(block(&fx, m.ensure_running(&c, &rnode)).unwrap(), Vec::<String>::new());

    // Every operation left the data in place.
    let h = block(&fx, m.health(&c)).unwrap();
    let (primary, _) = primary_and_replicas(&h, &c);
    assert_eq!(
        admin_sql(&primary.address.to_string(), "SELECT string_agg(id::text, ',' ORDER BY id) FROM kept"),
        "1,2,3"
    );
    // No log on any node holds the callback token.
    for s in &servers {
        for dir in ["var/log/postgresql", "var/log/etcd", "var/log/herd"] {
            for entry in std::fs::read_dir(s.root_prefix.join(dir)).into_iter().flatten().flatten() {
                let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
                assert!(!text.contains(CALLBACK_TOKEN), "{} holds the callback token", entry.path().display());
            }
        }
    }
    stop_and_delete(&fx, &m, &c, &servers);
    eprintln!("day-2 test total: {:?}", total.elapsed());
}
