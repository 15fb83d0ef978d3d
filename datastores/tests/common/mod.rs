//! Shared fixture for the integration tests: loopback hosts of the local provider,
//! cluster specs over them, and helpers to run SQL, poll and inspect processes.
//! Each test binary uses a part of it.
#![allow(dead_code)]

use herd_core::status::NodeRole;
use herd_datastores::postgresql::PostgresManager;
use herd_datastores::{
    BackupConfig, BackupRepo, ClusterHealth, ClusterSecrets, ClusterSpec, ClusterTls, HaTiming, Lifecycle,
    ManagerError, NodeSpec, NodeTags, SshTarget, VolumeMount,
};
use herd_providers::local::LocalProvider;
use herd_providers::{LocalProviderSettings, Provider, ServerInfo, ServerSpec, VolumeSpec};
use herd_testkit::Subnet;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;
use uuid::Uuid;

pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(90);
/// Passwords with everything that breaks naive quoting (shell, YAML, SQL, libpq).
pub const SUPERUSER_PW: &str = "su'per \"pw\" $(touch /tmp/herd-pwned) #1: {x} \\n";
pub const REPLICATION_PW: &str = "repl: 'pw' - [a]";
pub const ADMIN_PW: &str = "ad'min \"pw\" \\ $HOME `id` ; --";
pub const PATRONI_API_PW: &str = "rest: \"api\" 'pw' $x";

pub struct Fixture {
    pub rt: Runtime,
    pub provider: LocalProvider,
    pub settings: LocalProviderSettings,
    pub dir: tempfile::TempDir,
    pub key: herd_core::sshkey::KeyMaterial,
    pub subnet: Subnet,
    /// Derives the clusters' TLS material, as Herd's master key does.
    pub master: herd_core::crypto::MasterKey,
    /// The cluster tag of each node-name prefix (`orders` of `orders-0`): the
    /// provider gives a cluster's servers one service user, as for Herd's clusters.
    clusters: std::sync::Mutex<std::collections::HashMap<String, Uuid>>,
}

impl Fixture {
    /// A pool of the test's own (`Subnet::claim`), held as long as the fixture.
    pub fn new() -> Self {
        Self::with_tracking("auto")
    }

    /// `tracking`: how the provider finds a server's processes (`auto`, `marker`).
    pub fn with_tracking(tracking: &str) -> Self {
        let subnet = Subnet::claim();
        // Short prefix: PostgreSQL's socket path under the server root must stay
        // within 107 bytes.
        let dir = tempfile::Builder::new().prefix("hds-").tempdir().expect("temp dir");
        // postgres and etcd must be able to reach their directories under it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let settings = LocalProviderSettings {
            address_pool: subnet.pool(),
            root: Some(dir.path().join("local")),
            process_tracking: tracking.into(),
            stop_timeout_secs: 5,
            boot_timeout_secs: 30,
            ..LocalProviderSettings::default()
        };
        let provider = LocalProvider::new("local", &settings, &dir.path().join("local")).expect("local provider");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let master = herd_core::crypto::MasterKey::generate();
        let clusters = Default::default();
        Self { rt, provider, settings, dir, key: herd_core::sshkey::generate_ed25519(), subnet, master, clusters }
    }

    pub fn create_server(&self, name: &str) -> ServerInfo {
        let spec = ServerSpec {
            name: name.into(),
            flavor: "local.small".into(),
            image: None,
            authorized_key: self.key.public_key.clone(),
            tags: BTreeMap::from([
                ("herd:node".to_owned(), name.to_owned()),
                (herd_providers::TAG_CLUSTER.to_owned(), self.cluster_tag(name)),
            ]),
        };
        self.rt.block_on(self.provider.create_server(&spec, &format!("step-{name}"))).expect("create server")
    }

    fn cluster_tag(&self, node_name: &str) -> String {
        let prefix = node_name.rsplit_once('-').map_or(node_name, |(p, _)| p).to_owned();
        self.clusters.lock().unwrap().entry(prefix).or_insert_with(Uuid::new_v4).to_string()
    }

    pub fn target(&self, info: &ServerInfo) -> SshTarget {
        SshTarget {
            address: info.address.expect("address"),
            port: info.ssh_port,
            user: info.login_user.clone(),
            private_key: self.key.private_openssh.clone(),
            host_key: info.host_key.clone(),
        }
    }

    /// A server with a directory volume, and the node spec over it.
    pub fn node(&self, node_name: &str) -> (NodeSpec, ServerInfo) {
        let info = self.create_server(node_name);
        let vol =
            self.rt.block_on(self.provider.create_volume(&volume_spec(node_name, &info), &format!("vol-{node_name}")));
        self.node_on(node_name, info, &vol.unwrap().id)
    }

    /// A server whose volume is created from `snapshot_id`, and the node spec over it.
    pub fn node_from_snapshot(&self, node_name: &str, snapshot_id: &str) -> (NodeSpec, ServerInfo) {
        let info = self.create_server(node_name);
        let spec = volume_spec(node_name, &info);
        let token = format!("vol-from-snapshot-{node_name}");
        let vol = self.rt.block_on(self.provider.create_volume_from_snapshot(snapshot_id, &spec, &token));
        self.node_on(node_name, info, &vol.expect("volume from snapshot").id)
    }

    fn node_on(&self, node_name: &str, info: ServerInfo, volume_id: &str) -> (NodeSpec, ServerInfo) {
        let att = self.rt.block_on(self.provider.attach_volume(volume_id, &info.id)).unwrap();
        let node = NodeSpec {
            node_id: Uuid::new_v4(),
            name: node_name.to_owned(),
            address: info.address.unwrap(),
            ssh: self.target(&info),
            root_prefix: info.root_prefix.clone(),
            service_user: info.service_user.clone(),
            volume: Some(VolumeMount { kind: att.kind, path: att.path }),
            tags: NodeTags::default(),
            joins_existing: false,
        };
        (node, info)
    }

    /// Servers with a directory volume each, and the cluster spec over them.
    pub fn cluster(&self, name: &str, nodes: usize, synchronous: bool) -> (ClusterSpec, Vec<ServerInfo>) {
        let mut members = Vec::new();
        let mut servers = Vec::new();
        for i in 0..nodes {
            let (node, info) = self.node(&format!("{name}-{i}"));
            members.push(node);
            servers.push(info);
        }
        (self.cluster_of(name, members, synchronous), servers)
    }

    /// The cluster spec (test parameters and passwords) over `members`.
    pub fn cluster_of(&self, name: &str, members: Vec<NodeSpec>, synchronous: bool) -> ClusterSpec {
        let mut parameters = serde_json::Map::new();
        parameters.insert("work_mem".into(), "8MB".into());
        parameters.insert("max_connections".into(), 50.into());
        parameters.insert("application_name".into(), "herd's \"test\"".into());
        let cluster_id = Uuid::new_v4();
        ClusterSpec {
            tls: issue_tls(&self.master, cluster_id, &members),
            cluster_id,
            name: name.into(),
            version: "15".into(),
            packages: vec!["postgresql-15".into(), "patroni".into(), "etcd-server".into()],
            members,
            synchronous,
            synchronous_strict: false,
            maximum_lag_on_failover: 1 << 20,
            callback: None,
            parameters,
            secrets: ClusterSecrets {
                superuser: SecretString::from(SUPERUSER_PW),
                replication: SecretString::from(REPLICATION_PW),
                admin_user: "herd_admin".into(),
                admin_password: SecretString::from(ADMIN_PW),
                patroni_api: SecretString::from(PATRONI_API_PW),
            },
            timing: HaTiming::default(),
            backup: None,
            restore: None,
            newest_timeline: 0,
        }
    }

    /// The cluster's TLS material reissued for its members now (after adding one).
    pub fn reissue_tls(&self, c: &mut ClusterSpec) {
        c.tls = issue_tls(&self.master, c.cluster_id, &c.members);
    }

    pub fn pids(&self, id: &str) -> Vec<i32> {
        self.rt.block_on(self.provider.server_pids(id)).expect("server pids")
    }
}

fn volume_spec(node_name: &str, server: &ServerInfo) -> VolumeSpec {
    VolumeSpec {
        name: format!("{node_name}-data"),
        size_gb: 1,
        server_id: Some(server.id.clone()),
        tags: BTreeMap::new(),
    }
}

/// The local provider's id of a node's volume (its attachment is `<server>/mnt/<id>`).
pub fn volume_id(node: &NodeSpec) -> String {
    let vol = node.volume.as_ref().expect("a volume");
    std::path::Path::new(&vol.path).file_name().expect("attachment path").to_string_lossy().into_owned()
}

/// A posix pgBackRest repository in a temp dir owned by postgres, removed on drop.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("hds-repo-").tempdir().expect("repo dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let (uid, gid) = (user_id("postgres"), group_id("postgres"));
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown repo");
        Self { dir }
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The cluster's own stanza in this repository, encrypted with a passphrase of
    /// its own (Herd derives one per stanza from the master key).
    /// Its directories are made as the worker makes them (`repo::ensure_posix_dir`).
    pub fn config(&self, c: &ClusterSpec) -> BackupConfig {
        let stanza = format!("herd-{}", c.cluster_id.simple());
        let config = BackupConfig {
            repo: BackupRepo::Posix { path: self.path().display().to_string() },
            cipher: Some(SecretString::from(format!("passphrase-of-{stanza}"))),
            stanza,
        };
        herd_datastores::repo::ensure_posix_dir(&config, c.service_user()).expect("stanza directories");
        config
    }
}

pub fn group_id(name: &str) -> u32 {
    let out = Command::new("id").args(["-g", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// The last lines of every log of the servers, for a failing test's output.
pub fn dump_logs(servers: &[ServerInfo]) {
    for server in servers {
        for log in walk(&server.root_prefix.join("var/log")) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("==> {log}\n{}", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let Ok(provider) = LocalProvider::new("local", &self.settings, &self.dir.path().join("local")) else {
            return;
        };
        let state = self.dir.path().join("local/state/servers");
        let ids: Vec<String> = std::fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
            .collect();
        for id in ids {
            if let Err(e) = self.rt.block_on(provider.delete_server(&id)) {
                eprintln!("cleanup: delete server {id}: {e}");
            }
        }
        let root = self.dir.path().display().to_string();
        let left = processes_mentioning(&root);
        if !left.is_empty() {
            eprintln!("cleanup ({}): processes left under {root}: {left:?}", self.subnet.pool());
        }
    }
}

/// The worker's order: every node through its steps concurrently.
pub async fn provision(m: &Arc<PostgresManager>, c: &ClusterSpec) -> Result<(), ManagerError> {
    let mut set = JoinSet::new();
    for node in c.members.clone() {
        let (m, c) = (m.clone(), c.clone());
        set.spawn(async move {
            if let Some(r) = &c.restore {
                herd_datastores::repo::grant_read(&r.from, node.service_user.as_deref()).expect("source readable");
            }
            m.prepare(&c, &node).await?;
            m.configure(&c, &node).await?;
            m.start_dcs(&c, &node).await?;
            m.start_ha(&c, &node).await
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("provision task")?;
    }
    Ok(())
}

/// Provisions, waits for convergence, sets the admin password; returns the health
/// and how long prepare → converged took.
pub fn bring_up(fx: &Fixture, m: &Arc<PostgresManager>, c: &ClusterSpec) -> (ClusterHealth, Duration) {
    let started = Instant::now();
    fx.rt.block_on(provision(m, c)).expect("provision");
    let health = fx.rt.block_on(m.wait_converged(c, CONVERGE_TIMEOUT)).expect("converged");
    let took = started.elapsed();
    fx.rt.block_on(m.set_admin_password(c)).expect("admin password");
    (health, took)
}

/// Runs SQL with the psql client over TCP; returns trimmed unaligned output.
pub fn psql(addr: &str, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", addr, "-p", "5432", "-U", user, "-d", "postgres", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        // TLS is required from the network; verifying it against the CA is the herd
        // tests' part (they connect as clients do, with the URI the API gives).
        .env("PGSSLMODE", "require")
        .output()
        .map_err(|e| format!("run psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn admin_sql(addr: &str, sql: &str) -> String {
    psql(addr, "herd_admin", ADMIN_PW, sql).unwrap_or_else(|e| panic!("{sql} on {addr}: {e}"))
}

#[allow(unused_imports)]
pub use herd_testkit::eventually;

pub fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().next())?.parse().ok()
}

pub fn comm_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

pub fn cmdline_of(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

pub fn user_id(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("user {name} exists"))
}

/// Live processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| *pid != me)
        .map(|pid| (pid, cmdline_of(pid)))
        .filter(|(_, cmd)| cmd.contains(needle))
        .collect()
}

/// The server's daemons (everything but its sshd): (comm, uid) per process.
pub fn daemons(fx: &Fixture, server: &ServerInfo) -> Vec<(i32, String, u32)> {
    fx.pids(&server.id)
        .into_iter()
        .filter_map(|pid| {
            let comm = comm_of(pid);
            let uid = uid_of(pid)?;
            (comm != "sshd").then_some((pid, comm, uid))
        })
        .collect()
}

/// The uid a server's PostgreSQL runs as: its cluster's service user.
pub fn service_uid(server: &ServerInfo) -> u32 {
    user_id(server.service_user.as_deref().expect("loopback hosts have a service user"))
}

/// Every postgres, Patroni and etcd process of the server runs as its cluster's
/// service user (the provider made one: the test runs as root).
pub fn assert_daemons_unprivileged(fx: &Fixture, server: &ServerInfo) {
    let (postgres, etcd) = (service_uid(server), service_uid(server));
    assert_ne!(postgres, user_id("postgres"), "the packages' shared postgres user");
    let procs = daemons(fx, server);
    for (pid, comm, uid) in &procs {
        assert_ne!(*uid, 0, "pid {pid} ({comm}: {}) runs as root", cmdline_of(*pid));
    }
    let has = |c: &str, u: u32| procs.iter().any(|(_, comm, uid)| comm.starts_with(c) && *uid == u);
    assert!(has("postgres", postgres), "no postgres process as the service user: {procs:?}");
    assert!(has("patroni", postgres), "no patroni process as the service user: {procs:?}");
    assert!(has("etcd", etcd), "no etcd process as the service user: {procs:?}");
}

pub fn primary_and_replicas(h: &ClusterHealth, c: &ClusterSpec) -> (NodeSpec, Vec<NodeSpec>) {
    let leader = h.leader.clone().expect("a leader");
    let find = |n: &str| c.members.iter().find(|m| m.name == n).unwrap().clone();
    let replicas = h.nodes.iter().filter(|n| n.role == NodeRole::Replica).map(|n| find(&n.name)).collect();
    (find(&leader), replicas)
}

/// stop_node on every node: no daemon left, boot entries gone; then delete: no
/// process mentions the server root any more.
pub fn stop_and_delete(fx: &Fixture, m: &Arc<PostgresManager>, c: &ClusterSpec, servers: &[ServerInfo]) {
    for node in &c.members {
        fx.rt.block_on(m.stop_node(c, node)).expect("stop node");
        // Idempotent.
        fx.rt.block_on(m.stop_node(c, node)).expect("stop node again");
    }
    for server in servers {
        let left = daemons(fx, server);
        assert!(left.is_empty(), "daemons survived stop_node: {left:?}");
        let boot = server.root_prefix.join("etc/herd/boot.d");
        let entries: Vec<_> = std::fs::read_dir(&boot).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(entries.is_empty(), "boot entries left: {entries:?}");
    }
    for server in servers {
        fx.rt.block_on(fx.provider.delete_server(&server.id)).expect("delete server");
        let root = server.root_prefix.display().to_string();
        let left = processes_mentioning(&root);
        assert!(left.is_empty(), "processes still mention {root}: {left:?}");
    }
}

fn issue_tls(master: &herd_core::crypto::MasterKey, cluster_id: Uuid, members: &[NodeSpec]) -> ClusterTls {
    let now = chrono::Utc::now();
    ClusterTls::issue(master, cluster_id, now, members, now, herd_core::pki::DEFAULT_RENEW_EVERY).expect("TLS")
}

/// An HTTPS client for `c`'s etcd and Patroni as Herd is one: the cluster's CA and
/// Herd's client certificate.
pub fn https(c: &ClusterSpec) -> reqwest::Client {
    https_as(c, Some(&c.tls.control_plane))
}

/// The same, presenting `identity` (None: no client certificate).
pub fn https_as(c: &ClusterSpec, identity: Option<&herd_datastores::NodeTls>) -> reqwest::Client {
    use secrecy::ExposeSecret;
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(c.tls.ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5));
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem.expose_secret());
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}
