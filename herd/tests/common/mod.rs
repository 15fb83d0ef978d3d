//! Harness for end-to-end tests: real `herd` processes on loopback hosts.
//! Every test gets its own state dir and its own /24 of loopback addresses, and its
//! Drop deletes every server it made (killing their daemons) and stops its processes,
//! pass or fail.
#![allow(dead_code)]

use herd_client::types::{ClusterDto, ClusterStatus, CreateCluster, TaskDto, TaskStatus};
use herd_client::{ApiProblem, Client, Progress, WaitOptions};
use herd_testkit::{Subnet, eventually, eventually_async};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_herd");

/// Worker timings short enough for tests to see takeovers within seconds.
pub const FAST_WORKER: &[(&str, &str)] = &[
    ("HERD_WORKER__HEARTBEAT_SECS", "1"),
    ("HERD_WORKER__STALE_AFTER_SECS", "4"),
    ("HERD_WORKER__SWEEP_INTERVAL_SECS", "1"),
    ("HERD_WORKER__REQUEUE_AFTER_SECS", "2"),
    ("HERD_WORKER__STEP_RETRY_SECS", "60"),
];

pub fn herd_cmd() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("HERD_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// The request tests start from: PostgreSQL 15 on `local.small`, `nodes` nodes, every
/// other field at its default (`CreateCluster { synchronous: Some(true), ..cluster("a", 3) }`).
pub fn cluster(name: &str, nodes: i64) -> CreateCluster {
    CreateCluster {
        name: name.to_owned(),
        datastore: "postgresql".into(),
        version: "15".into(),
        flavor: "local.small".into(),
        nodes: Some(nodes),
        ..Default::default()
    }
}

/// The problem of a call the API must refuse; panics if it did not.
pub fn refused<T: std::fmt::Debug>(r: herd_client::Result<T>) -> ApiProblem {
    match r {
        Err(herd_client::Error::Api(p)) => p,
        other => panic!("expected the API to refuse: {other:?}"),
    }
}

/// What [`Env::fleet`] started; the processes stop when it is dropped.
pub struct Fleet {
    pub serve: Proc,
    pub workers: Vec<Proc>,
    pub api: String,
    pub token: String,
}

/// 32 random bytes, a master key of a fleet's own.
fn rand_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    key
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() > deadline {
                return None; // the caller says what it expected
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's world: a state dir, an address range, and the herd processes.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// The state dir (`<dir>/state`, or `<dir>/.herd` for a first run's defaults).
    pub state: PathBuf,
    pub pool: String,
    /// The claim on `pool` (None for a first run's default pool).
    pub subnet: Option<Subnet>,
    pub vars: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Env {
    /// A pool of the test's own (`Subnet::claim`), held as long as the Env.
    pub fn new() -> Self {
        let subnet = Subnet::claim();
        // Short on purpose: server paths embed it and Unix socket paths are limited.
        let dir = tempfile::Builder::new().prefix("he").tempdir_in("/tmp").unwrap();
        let pool = subnet.pool();
        let mut vars: Vec<(String, String)> =
            FAST_WORKER.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        vars.push(("HERD_PROVIDERS__LOCAL__ADDRESS_POOL".into(), pool.clone()));
        vars.push(("RUST_LOG".into(), "info,herd_worker=debug".into()));
        let state = dir.path().join("state");
        Self { dir, state, pool, subnet: Some(subnet), vars, http: reqwest::Client::new() }
    }

    /// A new user's world: `herd` run in `dir` with every setting at its default (the
    /// state dir is `./.herd`, the address pool 127.77.0.0/16); only `vars` differ.
    pub fn defaults() -> Self {
        let dir = tempfile::Builder::new().prefix("hf").tempdir_in("/tmp").unwrap();
        let state = dir.path().join(".herd");
        let pool = herd_core::config::LocalProviderSettings::default().address_pool;
        Self { dir, state, pool, subnet: None, vars: Vec::new(), http: reqwest::Client::new() }
    }

    pub fn state(&self) -> PathBuf {
        self.state.clone()
    }

    /// Starts `herd dev` and waits for its banner; returns the process, API URL, token.
    pub fn dev(&self, extra_env: &[(&str, &str)], log_name: &str) -> (Proc, String, String) {
        let log = self.dir.path().join(log_name);
        let mut cmd = herd_cmd();
        cmd.args(["dev", "--listen", "127.0.0.1:0", "--state-dir"]).arg(self.state());
        cmd.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.envs(extra_env.iter().copied());
        let mut child = cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let proc = Proc { child, log };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut url = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("herd dev banner; log:\n{}", proc.log_text()));
            if let Some(u) = line.trim().strip_prefix("API:") {
                url = Some(u.trim().to_owned());
            }
            if line.trim().starts_with("Admin token:") {
                break;
            }
        }
        let token = std::fs::read_to_string(self.state().join("admin.token")).unwrap();
        (proc, url.unwrap(), token.trim().to_owned())
    }

    pub fn spawn(&self, args: &[&str], extra_env: &[(&str, String)], log_name: &str) -> Proc {
        let log = self.dir.path().join(log_name);
        let mut cmd = herd_cmd();
        cmd.args(args);
        cmd.envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::options().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    /// `herd serve` and `workers` × `herd worker` on `database_url` and the Redis on
    /// `redis_port`, as an operator runs them; returns once the API answers `/readyz`.
    pub async fn fleet(&self, database_url: String, redis_port: u16, workers: usize) -> Fleet {
        use base64::Engine;
        let api_port = free_port();
        let token = format!("herd_fleet_{}", Uuid::new_v4().simple());
        let key = base64::engine::general_purpose::STANDARD.encode(rand_key());
        let shared = vec![
            ("HERD_DATABASE_URL", database_url),
            ("HERD_REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
            ("HERD_MASTER_KEY", key),
            ("HERD_ADMIN_TOKEN", token.clone()),
            ("HERD_STATE_DIR", self.state().display().to_string()),
            ("HERD_LISTEN", format!("127.0.0.1:{api_port}")),
        ];
        let serve = self.spawn(&["serve"], &shared, "serve.log");
        let api = format!("http://127.0.0.1:{api_port}");
        let herd = self.client(&api, &token);
        eventually_async("herd serve to answer /readyz", Duration::from_secs(60), || async {
            herd.ready().await.map_err(|e| format!("{e}; serve log:\n{}", serve.log_text()))
        })
        .await;
        let workers = (1..=workers).map(|n| self.spawn(&["worker"], &shared, &format!("worker-{n}.log"))).collect();
        Fleet { serve, workers, api, token }
    }

    pub async fn call(&self, method: reqwest::Method, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A typed API client for `api` with `token`.
    pub fn client(&self, api: &str, token: &str) -> Client {
        Client::new(api, token).unwrap()
    }

    /// Creates a cluster (see [`cluster`] for a request to start from); its id.
    pub async fn create_cluster(&self, api: &str, token: &str, req: CreateCluster) -> Uuid {
        let created =
            self.client(api, token).create_cluster(&req).await.unwrap_or_else(|e| panic!("create {}: {e}", req.name));
        assert_eq!(created.cluster.name, req.name, "{created:?}");
        created.cluster.id
    }

    /// Polls until the cluster has `want` (failing fast on `failed` unless expected).
    pub async fn wait_status(
        &self,
        api: &str,
        token: &str,
        id: Uuid,
        want: ClusterStatus,
        timeout: Duration,
    ) -> ClusterDto {
        let herd = self.client(api, token);
        eventually_async(&format!("cluster {id} to be {want}"), timeout, || async {
            let c = herd.cluster(id).await.unwrap_or_else(|e| panic!("cluster {id}: {e}"));
            if c.status == ClusterStatus::Failed && want != ClusterStatus::Failed {
                panic!("cluster failed: {:?}", c.fault);
            }
            if c.status == want { Ok(c) } else { Err(format!("{c:?}")) }
        })
        .await
    }

    /// The cluster's admin connection URI and password. The URI asks for
    /// `sslmode=verify-full`; the CA from the same answer is saved as
    /// [`Env::ca_file`] and named in the URI, as a client would.
    pub async fn credentials(&self, api: &str, token: &str, id: Uuid) -> (String, String) {
        let c = self.client(api, token).credentials(id).await.unwrap_or_else(|e| panic!("credentials of {id}: {e}"));
        let uri = c.uri.unwrap_or_else(|| panic!("no uri in the credentials of {id}"));
        assert!(uri.contains("sslmode=verify-full"), "{uri}");
        assert!(c.ca_certificate.starts_with("-----BEGIN CERTIFICATE-----"), "{}", c.ca_certificate);
        std::fs::write(self.ca_file(id), &c.ca_certificate).unwrap();
        (format!("{uri}&sslrootcert={}", self.ca_file(id).display()), c.password)
    }

    /// Where [`Env::credentials`] saved cluster `id`'s CA.
    pub fn ca_file(&self, id: Uuid) -> PathBuf {
        self.dir.path().join(format!("ca-{id}.crt"))
    }

    /// libpq keywords for a conninfo to one node: TLS verified against the cluster's
    /// CA (saved by [`Env::credentials`]) for the node's address.
    pub fn tls(&self, id: Uuid) -> String {
        format!("sslmode=verify-full sslrootcert={}", self.ca_file(id).display())
    }

    /// Deletes a cluster and waits for the task to succeed; the task.
    pub async fn delete_cluster(&self, api: &str, token: &str, id: Uuid, timeout: Duration) -> TaskDto {
        let d = self.client(api, token).delete_cluster(id).await.unwrap_or_else(|e| panic!("delete {id}: {e}"));
        self.wait_succeeded(api, token, d.task_id, timeout).await
    }

    /// Waits until the task ends (following its stream, polling when that breaks);
    /// its final state.
    pub async fn wait_task(&self, api: &str, token: &str, task: Uuid, timeout: Duration) -> TaskDto {
        let opts = WaitOptions { timeout: Some(timeout), poll_interval: Duration::from_millis(250), poll_only: false };
        let mut last: Option<TaskDto> = None;
        let done = self
            .client(api, token)
            .wait_for_task(task, opts, |p| {
                if let Progress::Task(t) = p {
                    last = Some(t.clone());
                }
            })
            .await;
        match done {
            Ok(t) => {
                assert!(t.status.is_terminal(), "{t:?}");
                t
            }
            Err(e) => panic!("task {task} not finished in {timeout:?} ({e}): {last:?}"),
        }
    }

    /// [`Env::wait_task`], asserting that the task succeeded.
    pub async fn wait_succeeded(&self, api: &str, token: &str, task: Uuid, timeout: Duration) -> TaskDto {
        let t = self.wait_task(api, token, task, timeout).await;
        assert_eq!(t.status, TaskStatus::Succeeded, "{t:?}");
        t
    }

    /// Server and volume directories the local provider holds.
    pub fn servers(&self) -> Vec<String> {
        list_dir(&self.state().join("local/servers"))
    }

    /// Snapshot records the local provider holds (one entry per snapshot).
    pub fn snapshots(&self) -> Vec<String> {
        let mut ids: Vec<String> = list_dir(&self.state().join("local/snapshots"))
            .into_iter()
            .map(|f| f.split('.').next().unwrap_or_default().to_owned())
            .filter(|f| !f.is_empty())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Waits until the local provider holds no server and no volume.
    pub fn wait_no_servers(&self, timeout: Duration) {
        poll(timeout, || match (self.servers().as_slice(), self.volumes().as_slice()) {
            ([], []) => Ok(()),
            (s, v) => Err(format!("servers {s:?}, volumes {v:?} left")),
        })
    }

    pub fn volumes(&self) -> Vec<String> {
        list_dir(&self.state().join("local/volumes"))
    }

    /// Deletes the server at `address` behind Herd's back (a vanished VM).
    pub async fn delete_server_at(&self, address: &str) {
        use herd_providers::Provider;
        let root = self.state().join("local");
        let settings = herd_core::config::LocalProviderSettings {
            address_pool: self.pool.clone(),
            root: Some(root.clone()),
            ..Default::default()
        };
        let p = herd_providers::local::LocalProvider::new("local", &settings, &root).unwrap();
        for id in self.servers() {
            let s = p.get_server(&id).await.unwrap();
            if s.address.map(|a| a.to_string()).as_deref() == Some(address) {
                p.delete_server(&id).await.unwrap();
                return;
            }
        }
        panic!("no server at {address}");
    }

    /// Pids of processes whose command line mentions this test's state dir or pool.
    pub fn stray_pids(&self) -> Vec<(i32, String)> {
        let needle = self.dir.path().to_string_lossy().to_string();
        // The pool's fixed octets ("127.93.5." for 127.93.5.0/24).
        let (net, bits) = self.pool.split_once('/').unwrap();
        let keep = bits.parse::<usize>().unwrap() / 8;
        let prefix = net.split('.').take(keep).map(|o| format!("{o}.")).collect::<String>();
        let me = std::process::id() as i32;
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            if pid == me {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if !cmd.starts_with(BIN) && (cmd.contains(&needle) || cmd.contains(&prefix)) {
                out.push((pid, cmd));
            }
        }
        out
    }
}

fn list_dir(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

impl Drop for Env {
    fn drop(&mut self) {
        // Whatever the test left: delete every server through the provider (which
        // kills every process of it), on a runtime of its own.
        let root = self.state().join("local");
        let servers = list_dir(&root.join("servers"));
        if !servers.is_empty() {
            let settings = herd_core::config::LocalProviderSettings {
                address_pool: self.pool.clone(),
                root: Some(root.clone()),
                ..Default::default()
            };
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    use herd_providers::Provider;
                    if let Ok(p) = herd_providers::local::LocalProvider::new("local", &settings, &root) {
                        for id in servers {
                            let _ = p.delete_server(&id).await;
                        }
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

/// Runs SQL with psql against a URI or conninfo; returns trimmed stdout.
/// The admin URI with another user (and no password: psql takes it from PGPASSWORD)
/// and database.
pub fn as_user(uri: &str, user: &str, db: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap();
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    let (hosts, query) = rest.split_once('?').unwrap();
    let hosts = hosts.rsplit_once('/').map_or(hosts, |(h, _)| h);
    format!("{scheme}://{user}@{hosts}/{db}?{query}")
}

pub fn psql(conninfo: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([conninfo, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Retries `f` until it returns Ok or the deadline passes (the panic shows its last Err).
pub fn poll<T>(timeout: Duration, f: impl FnMut() -> Result<T, String>) -> T {
    eventually("the condition", timeout, f)
}

/// A free TCP port on 127.0.0.1 (bound, then released for the caller's process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A throwaway redis-server on 127.0.0.1:`port` (nothing kept on disk), up when this
/// returns; killed when the Proc drops.
pub fn start_redis(env: &Env, port: u16, log: &str) -> Proc {
    let log = env.dir.path().join(log);
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(env.dir.path())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    poll(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| e.to_string())
    });
    Proc { child, log }
}
