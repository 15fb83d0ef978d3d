//! The worker's build step machine driven by a fake provider and a fake datastore
//! manager on a real SQLite store: resume after a crash at each step, transient and
//! permanent errors, cancellation, duplicate deliveries. No servers, no SSH: each
//! test runs in well under a second of work (the cancellation and timeout ones wait
//! for a heartbeat or a retry budget of one second).

use async_trait::async_trait;
use herd_core::config::WorkerSettings;
use herd_core::crypto::MasterKey;
use herd_core::faults::FaultCode;
use herd_core::names::DnsLabel;
use herd_core::status::{ClusterStatus, NodeRole, TaskStatus};
use herd_core::values::AdminPassword;
use herd_datastores::{
    BackupConfig, BackupInfo, BackupType, Backups, ClusterHealth, ClusterSpec, HeldBackup, Lifecycle, Manager,
    ManagerError, Managers, Membership, NodeHealth, NodeSpec, Operations, ParameterInfo, Profile, RecoveryWindow,
    Snapshots, SshTarget,
};
use herd_providers::{
    AttachmentKind, Capabilities, Flavor, Provider, ProviderError, ProviderKind, Providers, ServerInfo, ServerSpec,
    ServerStatus, SnapshotInfo, SnapshotSpec, VolumeAttachment, VolumeInfo, VolumeSpec, VolumeStatus,
};
use herd_store::{HaPolicy, KeyChoice, NewCluster, Store};
use herd_testkit::eventually_async;
use herd_worker::{Ctx, Queue, run_task};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// What a scripted operation does when called.
#[derive(Clone, Debug)]
enum Behaviour {
    /// Never returns (the worker "crashes" there when the test aborts it).
    Block,
    /// Fails transiently this many more times, then succeeds.
    Transient(u32),
    /// Fails transiently forever.
    AlwaysTransient,
    /// Fails permanently with this code.
    Permanent(FaultCode),
}

/// Shared by the fake provider and manager: what each operation does, and what was
/// entered and completed (as `op` names, once per call).
#[derive(Default)]
struct Script {
    behaviour: Mutex<HashMap<&'static str, Behaviour>>,
    entered: Mutex<Vec<&'static str>>,
    completed: Mutex<Vec<&'static str>>,
}

impl Script {
    fn set(&self, op: &'static str, b: Behaviour) {
        self.behaviour.lock().unwrap().insert(op, b);
    }

    fn clear(&self) {
        self.behaviour.lock().unwrap().clear();
    }

    fn entered(&self, op: &str) -> usize {
        self.entered.lock().unwrap().iter().filter(|o| **o == op).count()
    }

    fn completed(&self, op: &str) -> usize {
        self.completed.lock().unwrap().iter().filter(|o| **o == op).count()
    }

    async fn run(&self, op: &'static str) -> Result<(), String> {
        self.entered.lock().unwrap().push(op);
        let b = {
            let mut map = self.behaviour.lock().unwrap();
            let b = map.get(op).cloned();
            if let Some(Behaviour::Transient(n)) = &b {
                if *n <= 1 {
                    map.remove(op);
                } else {
                    map.insert(op, Behaviour::Transient(n - 1));
                }
            }
            b
        };
        match b {
            None => {}
            Some(Behaviour::Block) => std::future::pending::<()>().await,
            Some(Behaviour::Transient(_)) | Some(Behaviour::AlwaysTransient) => {
                return Err(format!("transient:{op}"));
            }
            Some(Behaviour::Permanent(code)) => return Err(format!("permanent:{}", code.as_str())),
        }
        self.completed.lock().unwrap().push(op);
        Ok(())
    }

    async fn manager_op(&self, op: &'static str) -> Result<(), ManagerError> {
        self.run(op).await.map_err(|e| match e.split_once(':') {
            Some(("permanent", _)) => match self.behaviour.lock().unwrap().get(op) {
                Some(Behaviour::Permanent(code)) => ManagerError::permanent(*code, format!("{op} refused")),
                _ => unreachable!("permanent without its behaviour"),
            },
            _ => ManagerError::Transient(format!("{op} not yet")),
        })
    }

    async fn provider_op(&self, op: &'static str) -> Result<(), ProviderError> {
        self.run(op).await.map_err(|e| {
            if e.starts_with("permanent") {
                ProviderError::Permanent(format!("{op} refused"))
            } else {
                ProviderError::Transient(format!("{op} not yet"))
            }
        })
    }
}

#[derive(Debug)]
struct FakeProvider {
    script: Arc<ScriptRef>,
    servers: Mutex<BTreeMap<String, ServerInfo>>,
}

/// `Provider` needs Debug; the script does not.
struct ScriptRef(Arc<Script>);

impl std::fmt::Debug for ScriptRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }
    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { volumes: true, snapshots: false, power_control: true }
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    async fn flavors(&self) -> Result<Vec<Flavor>, ProviderError> {
        Ok(vec![Flavor { id: "small".into(), vcpus: 1, ram_mb: 512 }])
    }
    async fn create_server(&self, spec: &ServerSpec, token: &str) -> Result<ServerInfo, ProviderError> {
        self.script.0.provider_op("create_server").await?;
        let s = ServerInfo {
            id: format!("srv-{token}"),
            name: spec.name.clone(),
            status: ServerStatus::Running,
            address: Some("127.0.0.1".parse().unwrap()),
            login_user: "root".into(),
            ssh_port: 22,
            host_key: Some("ssh-ed25519 AAAAfake".into()),
            root_prefix: "/".into(),
            service_user: None,
            flavor: spec.flavor.clone(),
            tags: spec.tags.clone(),
        };
        // The same token returns the same server, as the trait promises.
        Ok(self.servers.lock().unwrap().entry(s.id.clone()).or_insert(s).clone())
    }
    async fn get_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        self.servers.lock().unwrap().get(id).cloned().ok_or_else(|| ProviderError::NotFound(id.into()))
    }
    async fn list_servers(&self, _: &BTreeMap<String, String>) -> Result<Vec<ServerInfo>, ProviderError> {
        Ok(self.servers.lock().unwrap().values().cloned().collect())
    }
    async fn start_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        self.get_server(id).await
    }
    async fn stop_server(&self, id: &str, _: bool) -> Result<ServerInfo, ProviderError> {
        self.get_server(id).await
    }
    async fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        self.servers.lock().unwrap().remove(id);
        Ok(())
    }
    async fn create_volume(&self, spec: &VolumeSpec, token: &str) -> Result<VolumeInfo, ProviderError> {
        self.script.0.provider_op("create_volume").await?;
        Ok(VolumeInfo {
            id: format!("vol-{token}"),
            name: spec.name.clone(),
            size_gb: spec.size_gb,
            status: VolumeStatus::Available,
            attached_to: None,
            availability_zone: None,
            snapshot_id: None,
        })
    }
    async fn get_volume(&self, id: &str) -> Result<VolumeInfo, ProviderError> {
        Err(ProviderError::NotFound(id.into()))
    }
    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<VolumeAttachment, ProviderError> {
        self.script.0.provider_op("attach_volume").await?;
        Ok(VolumeAttachment {
            volume_id: volume_id.into(),
            server_id: server_id.into(),
            kind: AttachmentKind::Directory,
            path: format!("/volumes/{volume_id}"),
        })
    }
    async fn detach_volume(&self, _: &str, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn delete_volume(&self, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn snapshot_volume(&self, _: &str, _: &SnapshotSpec, _: &str) -> Result<SnapshotInfo, ProviderError> {
        Err(ProviderError::Unsupported("snapshots".into()))
    }
    async fn get_snapshot(&self, id: &str) -> Result<SnapshotInfo, ProviderError> {
        Err(ProviderError::NotFound(id.into()))
    }
    async fn create_volume_from_snapshot(&self, _: &str, _: &VolumeSpec, _: &str) -> Result<VolumeInfo, ProviderError> {
        Err(ProviderError::Unsupported("snapshots".into()))
    }
    async fn delete_snapshot(&self, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }
}

/// A datastore manager that does nothing but follow the script; it registers under
/// the seeded datastore's manager name, replacing the real one.
struct FakeManager(Arc<Script>);

fn converged(cluster: &ClusterSpec) -> ClusterHealth {
    let nodes: Vec<NodeHealth> = cluster
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| NodeHealth {
            name: m.name.clone(),
            role: if i == 0 { NodeRole::Primary } else { NodeRole::Replica },
            state: if i == 0 { "running".into() } else { "streaming".into() },
            timeline: Some(1),
            lag_bytes: Some(0),
            pending_restart: false,
            sync_standby: false,
        })
        .collect();
    ClusterHealth { leader: nodes.first().map(|n| n.name.clone()), nodes }
}

impl Profile for FakeManager {
    fn name(&self) -> &'static str {
        "postgresql"
    }
    fn check_version(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn check_parameters(
        &self,
        _: &str,
        _: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<ParameterInfo>, Vec<(String, String)>> {
        Ok(Vec::new())
    }
    fn client_port(&self) -> u16 {
        5432
    }
    fn client_uri(&self, userinfo: &str, hosts: &[String]) -> String {
        format!("fake://{userinfo}@{}", hosts.join(","))
    }
    fn callback_role(&self, _: &str) -> NodeRole {
        NodeRole::Unknown
    }
}

#[async_trait]
impl Lifecycle for FakeManager {
    async fn wait_reachable(&self, target: &SshTarget, _: Duration) -> Result<String, ManagerError> {
        self.0.manager_op("wait_reachable").await?;
        Ok(target.host_key.clone().unwrap_or_else(|| "ssh-ed25519 AAAAseen".into()))
    }
    async fn prepare(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("prepare").await
    }
    async fn configure(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("configure").await
    }
    async fn start_dcs(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("start_dcs").await
    }
    async fn start_ha(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("start_ha").await
    }
    async fn wait_converged(&self, cluster: &ClusterSpec, _: Duration) -> Result<ClusterHealth, ManagerError> {
        self.0.manager_op("wait_converged").await?;
        Ok(converged(cluster))
    }
    async fn set_admin_password(&self, _: &ClusterSpec) -> Result<(), ManagerError> {
        self.0.manager_op("set_admin_password").await
    }
    async fn health(&self, cluster: &ClusterSpec) -> Result<ClusterHealth, ManagerError> {
        self.0.manager_op("health").await?;
        Ok(converged(cluster))
    }
    async fn stop_node(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("stop_node").await
    }
}

#[async_trait]
impl Operations for FakeManager {
    async fn apply_dynamic_config(&self, _: &ClusterSpec) -> Result<Vec<String>, ManagerError> {
        self.0.manager_op("apply_dynamic_config").await.map(|()| Vec::new())
    }
    async fn restart_node(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("restart_node").await
    }
    async fn reload_node(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("reload_node").await
    }
    async fn switchover(&self, c: &ClusterSpec, _: Option<&str>) -> Result<String, ManagerError> {
        self.0.manager_op("switchover").await.map(|()| c.members[0].name.clone())
    }
    async fn failover(&self, c: &ClusterSpec, _: Option<&str>) -> Result<String, ManagerError> {
        self.0.manager_op("failover").await.map(|()| c.members[0].name.clone())
    }
    async fn reinitialize(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("reinitialize").await
    }
    async fn stop_ha(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("stop_ha").await
    }
    async fn ensure_running(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<Vec<String>, ManagerError> {
        self.0.manager_op("ensure_running").await.map(|()| Vec::new())
    }
}

#[async_trait]
impl Membership for FakeManager {
    async fn add_member(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("add_member").await
    }
    async fn remove_member(&self, _: &ClusterSpec, _: &NodeSpec) -> Result<(), ManagerError> {
        self.0.manager_op("remove_member").await
    }
    async fn place_dcs_leader(&self, _: &ClusterSpec, _: &str) -> Result<Option<String>, ManagerError> {
        Ok(None)
    }
}

#[async_trait]
impl Backups for FakeManager {
    async fn init_backups(&self, _: &ClusterSpec) -> Result<(), ManagerError> {
        self.0.manager_op("init_backups").await
    }
    async fn backup(&self, _: &ClusterSpec, _: BackupType) -> Result<BackupInfo, ManagerError> {
        Err(ManagerError::permanent(FaultCode::BackupsNotConfigured, "no backups in the fake"))
    }
    async fn list_backups(&self, _: &BackupConfig) -> Result<Vec<BackupInfo>, ManagerError> {
        Ok(Vec::new())
    }
    async fn expire_backup(&self, _: &BackupConfig, _: &str) -> Result<(), ManagerError> {
        Ok(())
    }
    async fn recovery_window(&self, _: &BackupConfig) -> Result<Option<RecoveryWindow>, ManagerError> {
        Ok(None)
    }
}

#[async_trait]
impl Snapshots for FakeManager {
    async fn begin_snapshot(
        &self,
        _: &ClusterSpec,
        _: &NodeSpec,
        _: &str,
    ) -> Result<Box<dyn HeldBackup>, ManagerError> {
        Err(ManagerError::permanent(FaultCode::ProviderUnsupported, "no snapshots in the fake"))
    }
}

/// Access is not exercised here (`api/tests/access.rs` drives it on real clusters).
#[async_trait]
impl herd_datastores::Access for FakeManager {
    async fn ensure_user(&self, _: &ClusterSpec, _: &herd_datastores::ManagedUser) -> Result<(), ManagerError> {
        Ok(())
    }
    async fn ensure_database(&self, _: &ClusterSpec, _: &herd_datastores::ManagedDatabase) -> Result<(), ManagerError> {
        Ok(())
    }
    async fn apply_grants(
        &self,
        _: &ClusterSpec,
        _: &str,
        _: &herd_datastores::Grants,
        _: &[herd_datastores::ManagedDatabase],
    ) -> Result<(), ManagerError> {
        Ok(())
    }
    async fn drop_database(&self, _: &ClusterSpec, _: &str, _: bool) -> Result<(), ManagerError> {
        Ok(())
    }
    async fn drop_user(&self, _: &ClusterSpec, _: &str) -> Result<(), ManagerError> {
        Ok(())
    }
    async fn missing(
        &self,
        _: &ClusterSpec,
        _: &[String],
        _: &[String],
    ) -> Result<(Vec<String>, Vec<String>), ManagerError> {
        Ok((vec![], vec![]))
    }
}

/// Every operation a one-node build calls, in order.
const BUILD_OPS: [&str; 11] = [
    "create_volume",
    "create_server",
    "attach_volume",
    "wait_reachable",
    "prepare",
    "configure",
    "start_dcs",
    "start_ha",
    "wait_converged",
    "set_admin_password",
    "health",
];

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    providers: Arc<Providers>,
    managers: Arc<Managers>,
    queue: Queue,
    script: Arc<Script>,
    project: Uuid,
    cluster: Uuid,
    task: Uuid,
}

impl Env {
    async fn new(nodes: u8) -> Self {
        Self::with_hooks(nodes, Default::default()).await
    }

    async fn with_hooks(nodes: u8, hooks: herd_core::hooks::Hooks) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("herd.db").display());
        let store = Store::open(&url, Arc::new(MasterKey::generate())).await.unwrap();
        store.migrate().await.unwrap();
        store.seed_datastores().await.unwrap();
        let script = Arc::new(Script::default());
        let mut providers = Providers::new();
        providers
            .insert(Arc::new(FakeProvider {
                script: Arc::new(ScriptRef(script.clone())),
                servers: Mutex::new(BTreeMap::new()),
            }))
            .unwrap();
        let mut managers = Managers::default();
        managers.insert(Manager::of(FakeManager(script.clone())));
        let queue = Queue::sqlite(&dir.path().join("queue.db")).await.unwrap();
        let project = store.create_project("p").await.unwrap().id;
        let (view, task) = store
            .create_cluster(NewCluster {
                project_id: project,
                name: DnsLabel::parse("c1").unwrap(),
                datastore: "postgresql".into(),
                version: "15".into(),
                flavor: "small".into(),
                provider: "fake".into(),
                node_count: nodes,
                volume_gb: 1,
                key: KeyChoice::Generate(herd_core::sshkey::generate_ed25519()),
                policy: HaPolicy {
                    synchronous: false,
                    synchronous_strict: false,
                    maximum_lag_on_failover: 1 << 20,
                    ttl: 30,
                    loop_wait: 10,
                    retry_timeout: 10,
                },
                auto_heal: false,
                hooks,
                node_prefs: Vec::new(),
                restore: None,
                parameters: Default::default(),
                admin_password: AdminPassword::generate(),
                backup_repo: herd_datastores::repo::NO_REPOSITORY.into(),
            })
            .await
            .unwrap();
        Self {
            _dir: dir,
            store,
            providers: Arc::new(providers),
            managers: Arc::new(managers),
            queue,
            script,
            project,
            cluster: view.cluster.id,
            task: task.id,
        }
    }

    /// A worker process: its own name, so a second one can take over the first's task.
    fn worker(&self, tune: impl FnOnce(&mut WorkerSettings)) -> Arc<Ctx> {
        let mut s =
            WorkerSettings { heartbeat_secs: 1, stale_after_secs: 0, step_retry_secs: 30, ..Default::default() };
        tune(&mut s);
        Arc::new(Ctx::new(self.store.clone(), self.providers.clone(), self.managers.clone(), s, self.queue.clone()))
    }

    async fn task_status(&self) -> (TaskStatus, Option<String>) {
        let t = self.store.get_task(self.project, self.task).await.unwrap();
        (t.status, t.error_code.map(|c| c.to_string()))
    }

    async fn cluster_status(&self) -> ClusterStatus {
        self.store.cluster_by_id(self.cluster).await.unwrap().status
    }
}

/// Waits (polling, with a deadline) until `f` holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    eventually_async(what, Duration::from_secs(10), || std::future::ready(f().then_some(()))).await
}

/// Runs a task to its end, with a deadline so a hung step machine fails the test.
async fn run_to_end(ctx: &Arc<Ctx>, task: Uuid) {
    tokio::time::timeout(Duration::from_secs(20), run_task(ctx, task)).await.expect("the task ran to its end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_runs_every_step_once() {
    let env = Env::new(3).await;
    run_to_end(&env.worker(|_| {}), env.task).await;
    assert_eq!(env.task_status().await, (TaskStatus::Succeeded, None));
    assert_eq!(env.cluster_status().await, ClusterStatus::Active);
    for op in ["create_volume", "create_server", "attach_volume", "wait_reachable", "prepare", "configure"] {
        assert_eq!(env.script.completed(op), 3, "{op} once per node");
    }
    for op in ["start_dcs", "start_ha"] {
        assert_eq!(env.script.completed(op), 3, "{op} once per node");
    }
    assert_eq!(env.script.completed("wait_converged"), 1);
    assert_eq!(env.script.completed("set_admin_password"), 1);
    // No repository configured: no stanza to create.
    assert_eq!(env.script.entered("init_backups"), 0);
    let nodes = env.store.nodes_of(env.cluster).await.unwrap();
    assert_eq!(nodes.iter().filter(|n| n.role == NodeRole::Primary).count(), 1);
    assert!(nodes.iter().all(|n| n.server_ref.is_some() && n.host_key.is_some()));
}

/// A worker dies in the middle of each step in turn; another takes the task over and
/// finishes it without redoing any step that was checkpointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_resumes_after_a_crash_in_any_step() {
    for op in BUILD_OPS {
        let env = Env::new(1).await;
        env.script.set(op, Behaviour::Block);
        let first = env.worker(|_| {});
        let crashed = tokio::spawn({
            let (ctx, task) = (first.clone(), env.task);
            async move { run_task(&ctx, task).await }
        });
        until(op, || env.script.entered(op) == 1).await;
        crashed.abort();
        let _ = crashed.await;
        env.script.clear();
        // Every step before the crash is done; the crashed one is not.
        let before = BUILD_OPS.iter().position(|o| *o == op).unwrap();
        for done in &BUILD_OPS[..before] {
            assert_eq!(env.script.completed(done), 1, "{done} before a crash in {op}");
        }
        assert_eq!(env.script.completed(op), 0);

        run_to_end(&env.worker(|_| {}), env.task).await;
        assert_eq!(env.task_status().await, (TaskStatus::Succeeded, None), "after a crash in {op}");
        assert_eq!(env.cluster_status().await, ClusterStatus::Active, "after a crash in {op}");
        for o in BUILD_OPS {
            assert_eq!(env.script.completed(o), 1, "{o} ran once although the worker crashed in {op}");
        }
        let t = env.store.get_task(env.project, env.task).await.unwrap();
        assert_eq!(t.attempts, 2, "taken over once after a crash in {op}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_the_build_goes_on() {
    let env = Env::new(1).await;
    env.script.set("configure", Behaviour::Transient(2));
    env.script.set("create_server", Behaviour::Transient(1));
    run_to_end(&env.worker(|_| {}), env.task).await;
    assert_eq!(env.task_status().await, (TaskStatus::Succeeded, None));
    assert_eq!(env.script.entered("configure"), 3);
    assert_eq!(env.script.completed("configure"), 1);
    assert_eq!(env.script.entered("create_server"), 2);
    assert_eq!(env.cluster_status().await, ClusterStatus::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_fails_the_task_and_the_cluster_with_its_code() {
    let env = Env::new(1).await;
    env.script.set("start_dcs", Behaviour::Permanent(FaultCode::PackageInstallFailed));
    run_to_end(&env.worker(|_| {}), env.task).await;
    assert_eq!(env.task_status().await, (TaskStatus::Failed, Some("package_install_failed".into())));
    assert_eq!(env.script.entered("start_dcs"), 1, "a permanent error is not retried");
    assert_eq!(env.script.entered("start_ha"), 0, "nothing runs after a failed step");
    let c = env.store.cluster_by_id(env.cluster).await.unwrap();
    assert_eq!(c.status, ClusterStatus::Failed);
    assert_eq!(c.fault_code.map(|c| c.to_string()).as_deref(), Some("package_install_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_keeps_failing_transiently_times_out() {
    let env = Env::new(1).await;
    env.script.set("prepare", Behaviour::AlwaysTransient);
    run_to_end(&env.worker(|s| s.step_retry_secs = 1), env.task).await;
    assert_eq!(env.task_status().await, (TaskStatus::Failed, Some("step_timeout".into())));
    assert!(env.script.entered("prepare") >= 2, "retried within the budget");
    assert_eq!(env.script.entered("configure"), 0);
    assert_eq!(env.cluster_status().await, ClusterStatus::Failed);
}

/// Deleting a cluster mid-build cancels the build task: its worker hears of it through
/// the heartbeat and stops before the next step, leaving the cluster to the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_build_before_its_next_step() {
    let env = Env::new(1).await;
    env.script.set("prepare", Behaviour::AlwaysTransient);
    let ctx = env.worker(|_| {});
    let running = tokio::spawn({
        let (ctx, task) = (ctx.clone(), env.task);
        async move { run_task(&ctx, task).await }
    });
    until("prepare", || env.script.entered("prepare") >= 1).await;
    let delete = env.store.request_delete(env.project, env.cluster).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("the build stopped").unwrap();
    assert_eq!(env.task_status().await.0, TaskStatus::Cancelled);
    assert_eq!(env.script.entered("configure"), 0, "no step after the cancellation");
    assert_eq!(env.cluster_status().await, ClusterStatus::Deleting, "the cluster is left to the delete");
    let d = env.store.get_task(env.project, delete.id).await.unwrap();
    assert_eq!(d.status, TaskStatus::Queued);
}

/// A task is run by one worker at a time: a second delivery while it runs is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_delivery_of_a_running_task_is_a_no_op() {
    let env = Env::new(1).await;
    env.script.set("configure", Behaviour::Block);
    let holder = env.worker(|_| {});
    let running = tokio::spawn({
        let (ctx, task) = (holder.clone(), env.task);
        async move { run_task(&ctx, task).await }
    });
    until("configure", || env.script.entered("configure") == 1).await;
    // Another worker with a normal staleness limit: the holder's heartbeat is fresh.
    run_to_end(&env.worker(|s| s.stale_after_secs = 30), env.task).await;
    assert_eq!(env.script.entered("configure"), 1, "the second delivery ran nothing");
    assert_eq!(env.script.completed("prepare"), 1);
    let t = env.store.get_task(env.project, env.task).await.unwrap();
    assert_eq!((t.status, t.attempts), (TaskStatus::Running, 1));
    assert_eq!(t.worker.as_deref(), Some(holder.name.as_str()));
    running.abort();
}

/// A webhook receiver on loopback: answers every request with `reply` and counts them.
fn hook_receiver(reply: String) -> (String, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let _ = r.read_exact(&mut vec![0; len]);
            seen2.lock().unwrap().push(path);
            let _ = r.get_mut().write_all(reply.as_bytes());
        }
    });
    (url, seen)
}

/// Webhooks leave only for addresses the egress policy allows, checked at delivery
/// (whatever the API checked when the hook was set), and never follow a redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_delivered_only_where_the_egress_policy_allows() {
    use herd_core::hooks::{Hook, Hooks};
    use herd_core::status::ActionKind;
    use herd_core::task::{ActionInput, TaskInput};
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned();
    let (elsewhere, elsewhere_seen) = hook_receiver(ok.clone());
    let (url, seen) = hook_receiver(ok);
    let (redirector, redirector_seen) = hook_receiver(format!(
        "HTTP/1.1 302 Found\r\nlocation: {elsewhere}/moved\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ));
    let hook = |url: String| Hook { url, secret: "a-hook-secret-that-is-long".to_owned().into() };
    let env = Env::with_hooks(
        2,
        Hooks {
            pre_failover: Some(hook(format!("{redirector}/pre"))),
            post_failover: Some(hook(format!("{url}/post"))),
        },
    )
    .await;
    run_to_end(&env.worker(|_| {}), env.task).await;
    let switchover =
        || TaskInput::ClusterAction(ActionInput { action: ActionKind::Switchover, node_id: None, candidate_id: None });
    let hook_events = |env: &Env| {
        let (store, project, id) = (env.store.clone(), env.project, env.cluster);
        async move {
            store
                .cluster_events_after(project, id, Uuid::nil(), 1000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| matches!(e.step.as_deref(), Some("pre_failover" | "post_failover")))
                .map(|e| e.message)
                .collect::<Vec<_>>()
        }
    };

    // Default policy: loopback receivers are refused at delivery; the switchover goes on.
    let t = env.store.request_task(env.project, env.cluster, &[], switchover(), "switchover").await.unwrap();
    run_to_end(&env.worker(|w| w.hook_attempts = 1), t.id).await;
    assert_eq!(env.store.get_task(env.project, t.id).await.unwrap().status, TaskStatus::Succeeded);
    let msgs = hook_events(&env).await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs.iter().all(|m| m.contains("refused") && m.contains("loopback")), "{msgs:?}");
    assert!(seen.lock().unwrap().is_empty() && redirector_seen.lock().unwrap().is_empty());

    // Allowed by name: delivered; the redirect is reported, not followed.
    let t = env.store.request_task(env.project, env.cluster, &[], switchover(), "switchover").await.unwrap();
    let allowing = herd_core::config::HookSettings { allowed_hosts: vec!["127.0.0.1".into()] };
    let ctx = env.worker(|w| w.hook_attempts = 1);
    let ctx = Arc::new(Arc::into_inner(ctx).unwrap().with_egress(&allowing));
    run_to_end(&ctx, t.id).await;
    let msgs = hook_events(&env).await;
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("post_failover hook delivered")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("pre_failover hook") && m.contains("HTTP 302")), "{msgs:?}");
    assert_eq!(*seen.lock().unwrap(), vec!["/post".to_owned()]);
    assert_eq!(*redirector_seen.lock().unwrap(), vec!["/pre".to_owned()]);
    assert!(elsewhere_seen.lock().unwrap().is_empty(), "the redirect was followed");
}
