//! The `local` provider: every server is a *loopback host* on this machine.
//!
//! A loopback host is an address from a loopback pool, its own sshd bound to that
//! address, and its own root directory (`<root>/servers/<id>`) under which the
//! datastore puts everything it would put under `/` on a real server. Volumes are
//! directories, snapshots are copies, power-off kills every process of the server
//! (see `process.rs` and the README). The provider's state is a set of JSON records under
//! `<root>/state`; a new provider on the same root picks them up, and
//! [`Provider::recover`] restarts what should be running.

mod boot;
mod pool;
mod process;
mod sshd;
mod state;
mod users;
mod volumes;

use crate::{
    Capabilities, Flavor, LocalProviderSettings, Provider, ProviderError, ProviderKind, ServerInfo, ServerSpec,
    ServerStatus, SnapshotInfo, SnapshotSpec, TAG_CLUSTER, VolumeAttachment, VolumeInfo, VolumeSpec, check_token,
    join_error,
};
use async_trait::async_trait;
use pool::AddressPool;
use process::Tracker;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey, rand_core::OsRng};
use sshd::{ServerPaths, SshdOptions};
use state::{Desired, FileLock, Kind, Layout, ServerRecord, VolumeRecord};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Boot-list directory, relative to a server's root prefix (see the crate README).
pub const BOOT_DIR: &str = "etc/herd/boot.d";
/// Stop-list directory (run by a graceful stop), relative to a server's root prefix.
pub const STOP_DIR: &str = "etc/herd/stop.d";
/// Where attached volumes appear, relative to a server's root prefix.
pub const MOUNT_DIR: &str = "mnt";

#[derive(Debug, Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    name: String,
    settings: LocalProviderSettings,
    layout: Layout,
    pool: AddressPool,
    tracker: Tracker,
}

impl LocalProvider {
    /// Validates the settings, creates the root's layout and detects how processes
    /// are tracked. Starts nothing: call [`Provider::recover`] for that.
    pub fn new(name: &str, settings: &LocalProviderSettings, root: &Path) -> Result<Self, ProviderError> {
        let pool = AddressPool::parse(&settings.address_pool)?;
        if !settings.sshd_path.is_absolute() {
            // sshd re-executes itself for every connection and insists on this.
            return Err(ProviderError::Permanent(format!(
                "sshd_path {} must be absolute",
                settings.sshd_path.display()
            )));
        }
        if !valid_user_name(&settings.login_user) {
            return Err(ProviderError::Permanent(format!(
                "login_user {:?} is not a valid user name",
                settings.login_user
            )));
        }
        if settings.ssh_port == 0 {
            return Err(ProviderError::Permanent("ssh_port must not be 0".into()));
        }
        std::fs::create_dir_all(root).map_err(|e| state::io_error("create", root, e))?;
        // sshd daemonizes into `/`, so every path it is given must be absolute.
        let root = root.canonicalize().map_err(|e| state::io_error("resolve", root, e))?;
        sshd::check_config_path(&root)?;
        let layout = Layout { root };
        layout.create_dirs()?;
        let tracker = Tracker::detect(&settings.process_tracking, settings.cgroup_root.as_deref())?;
        tracing::info!(
            provider = name, root = %layout.root.display(), tracking = tracker.mode(),
            "local provider ready"
        );
        Ok(Self { inner: Arc::new(Inner { name: name.to_owned(), settings: settings.clone(), layout, pool, tracker }) })
    }

    /// The provider root (absolute).
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// `cgroup` or `marker`: how this provider finds a server's processes.
    pub fn process_tracking(&self) -> &'static str {
        self.inner.tracker.mode()
    }

    /// Every live process of a server, sshd included (diagnostics and tests).
    pub async fn server_pids(&self, id: &str) -> Result<Vec<i32>, ProviderError> {
        let id = id.to_owned();
        self.run(move |inner| {
            let record: ServerRecord = inner.layout.load(Kind::Server, &id)?;
            let extra: Vec<i32> = sshd::running_pid(&inner.paths(&record.id)).into_iter().collect();
            Ok(inner.tracker.pids(&id, &extra)?.into_iter().collect())
        })
        .await
    }

    /// Shuts every server down as the machine's own shutdown would (stop list, then
    /// SIGTERM and, after the grace period, SIGKILL) without changing what should run,
    /// so [`Provider::recover`] at the next start brings the same servers back.
    /// Returns the servers that had processes. `herd dev --down`.
    pub async fn halt_all(&self) -> Result<Vec<String>, ProviderError> {
        self.run(|inner| {
            let mut halted = Vec::new();
            for record in inner.layout.list::<ServerRecord>(Kind::Server)? {
                let _lock = match inner.resource_lock(Kind::Server, &record.id) {
                    Err(ProviderError::NotFound(_)) => continue,
                    other => other?,
                };
                let extra: Vec<i32> = sshd::running_pid(&inner.paths(&record.id)).into_iter().collect();
                if inner.tracker.pids(&record.id, &extra)?.is_empty() {
                    continue;
                }
                inner.run_list(&record, boot::List::Stop)?;
                inner.tracker.terminate_all(&record.id, &extra, inner.stop_timeout(), Duration::from_secs(10))?;
                tracing::info!(server = %record.id, "loopback host halted");
                halted.push(record.id);
            }
            Ok(halted)
        })
        .await
    }

    /// Deletes every server (killing its processes), volume and snapshot this
    /// provider holds; returns how many of each. `herd dev --purge`.
    pub async fn delete_all(&self) -> Result<(usize, usize, usize), ProviderError> {
        self.run(|inner| {
            let servers = inner.layout.list::<ServerRecord>(Kind::Server)?;
            for r in &servers {
                inner.delete_server(&r.id)?;
            }
            let volumes = inner.layout.list::<state::VolumeRecord>(Kind::Volume)?;
            for v in &volumes {
                inner.delete_volume(&v.id)?;
            }
            let snapshots = inner.layout.list::<state::SnapshotRecord>(Kind::Snapshot)?;
            for s in &snapshots {
                inner.delete_snapshot(&s.id)?;
            }
            Ok((servers.len(), volumes.len(), snapshots.len()))
        })
        .await
    }

    /// Runs blocking provider work (files, processes, locks) off the async runtime.
    async fn run<T, F>(&self, f: F) -> Result<T, ProviderError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, ProviderError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(join_error)?
    }
}

/// A new server's service user: its cluster's existing servers' (so a cluster built
/// before servers had users of their own keeps one user for all members), else a
/// new one for its cluster when this process may create users.
fn service_user_for(records: &[ServerRecord], spec: &ServerSpec, id: &str) -> Option<String> {
    let cluster = spec.tags.get(TAG_CLUSTER).filter(|c| uuid::Uuid::parse_str(c).is_ok());
    if let Some(sibling) = cluster.and_then(|c| records.iter().find(|r| r.tags.get(TAG_CLUSTER) == Some(c))) {
        return sibling.service_user.clone();
    }
    users::can_manage().then(|| users::name_for(&spec.tags, id))
}

fn valid_user_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.len() <= 32
}

impl Inner {
    fn paths(&self, id: &str) -> ServerPaths {
        ServerPaths { root: self.layout.data_path(Kind::Server, id) }
    }

    fn sshd_options(&self) -> SshdOptions<'_> {
        SshdOptions {
            sshd_path: &self.settings.sshd_path,
            port: self.settings.ssh_port,
            login_user: &self.settings.login_user,
        }
    }

    /// Serializes record changes across threads and Herd processes; held briefly.
    fn global_lock(&self) -> Result<FileLock, ProviderError> {
        FileLock::acquire(&self.layout.global_lock_path())
    }

    /// Serializes long operations on one existing resource (`NotFound` otherwise, so
    /// unknown ids leave no lock files). Lock order: snapshot, then volume or server,
    /// then the global lock.
    fn resource_lock(&self, kind: Kind, id: &str) -> Result<FileLock, ProviderError> {
        let not_found = || ProviderError::NotFound(format!("{} {id}", kind.noun()));
        if !state::valid_id(id) || !self.layout.record_path(kind, id).exists() {
            return Err(not_found());
        }
        let lock = FileLock::acquire(&self.layout.lock_path(kind, id))?;
        if !self.layout.record_path(kind, id).exists() {
            // Deleted while we waited: the deleter already removed its lock file.
            drop(lock);
            state::remove_file_if_exists(&self.layout.lock_path(kind, id))?;
            return Err(not_found());
        }
        Ok(lock)
    }

    /// Applies `change` to the current server record under the global lock.
    fn update_server(&self, id: &str, change: impl FnOnce(&mut ServerRecord)) -> Result<ServerRecord, ProviderError> {
        let _g = self.global_lock()?;
        let mut record: ServerRecord = self.layout.load(Kind::Server, id)?;
        change(&mut record);
        self.layout.save(Kind::Server, id, &record)?;
        Ok(record)
    }

    fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.stop_timeout_secs)
    }

    fn server_info(&self, r: &ServerRecord) -> ServerInfo {
        let paths = self.paths(&r.id);
        let status = match r.desired {
            Desired::Stopped => ServerStatus::Stopped,
            Desired::Running if !r.ready => ServerStatus::Building,
            Desired::Running if sshd::running_pid(&paths).is_some() => ServerStatus::Running,
            // Should run but its sshd is gone: the host crashed; recover() fixes it.
            Desired::Running => ServerStatus::Error,
        };
        ServerInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            status,
            address: Some(IpAddr::V4(r.address)),
            login_user: self.settings.login_user.clone(),
            ssh_port: self.settings.ssh_port,
            host_key: Some(r.host_key_public.clone()),
            root_prefix: paths.root,
            service_user: r.service_user.clone(),
            flavor: r.flavor.clone(),
            tags: r.tags.clone(),
        }
    }

    fn create_server(&self, spec: &ServerSpec, token: &str) -> Result<ServerInfo, ProviderError> {
        check_token(token)?;
        if !self.settings.flavors.iter().any(|f| f.id == spec.flavor) {
            return Err(ProviderError::Permanent(format!(
                "unknown flavor {:?} for provider {}",
                spec.flavor, self.name
            )));
        }
        let key_line = spec.authorized_key.trim();
        if key_line.contains('\n') {
            return Err(ProviderError::Permanent("authorized_key must be one line".into()));
        }
        PublicKey::from_openssh(key_line)
            .map_err(|e| ProviderError::Permanent(format!("invalid authorized_key: {e}")))?;
        if !self.settings.sshd_path.exists() {
            return Err(ProviderError::Permanent(format!(
                "{} not found: the local provider needs OpenSSH's server (apt install openssh-server)",
                self.settings.sshd_path.display()
            )));
        }

        let id = {
            let _g = self.global_lock()?;
            let records: Vec<ServerRecord> = self.layout.list(Kind::Server)?;
            if let Some(existing) = records.iter().find(|r| r.token == token) {
                if existing.name != spec.name {
                    return Err(ProviderError::Permanent(format!(
                        "idempotency token already used for server {} ({})",
                        existing.id, existing.name
                    )));
                }
                existing.id.clone()
            } else {
                let address = self.allocate_address(&records)?;
                let host_key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
                    .map_err(|e| ProviderError::Permanent(format!("generate host key: {e}")))?;
                let id = state::new_id("srv");
                let record = ServerRecord {
                    id: id.clone(),
                    token: token.to_owned(),
                    name: spec.name.clone(),
                    flavor: spec.flavor.clone(),
                    image: spec.image.clone(),
                    tags: spec.tags.clone(),
                    address,
                    authorized_key: key_line.to_owned(),
                    host_key_public: host_key
                        .public_key()
                        .to_openssh()
                        .map_err(|e| ProviderError::Permanent(format!("encode host key: {e}")))?,
                    host_key_private: host_key
                        .to_openssh(LineEnding::LF)
                        .map_err(|e| ProviderError::Permanent(format!("encode host key: {e}")))?
                        .to_string(),
                    desired: Desired::Running,
                    ready: false,
                    created_at: chrono::Utc::now(),
                    service_user: service_user_for(&records, spec, &id),
                };
                // Under the global lock: a cluster's servers share the user.
                if let Some(user) = &record.service_user {
                    users::ensure(user, &self.layout.root)?;
                }
                self.layout.save(Kind::Server, &id, &record)?;
                tracing::info!(server = %id, address = %address, "loopback host allocated");
                id
            }
        };

        let _lock = self.resource_lock(Kind::Server, &id)?;
        let mut record: ServerRecord = self.layout.load(Kind::Server, &id)?;
        if record.ready {
            // An earlier call with this token finished (the host may since have been
            // stopped): report it as it is.
            return Ok(self.server_info(&record));
        }
        let mut attempts = 0;
        loop {
            match self.ensure_running(&record) {
                Ok(_) => break,
                // Another Herd installation (its own root, same pool) may have taken
                // the address between our probe and sshd's bind. A server nobody has
                // seen yet can still move to another address.
                Err(e) if attempts < 5 && self.address_taken_by_other(&record) => {
                    attempts += 1;
                    tracing::info!(server = %id, address = %record.address, error = %e, "address taken; moving");
                    let _g = self.global_lock()?;
                    let records: Vec<ServerRecord> = self.layout.list(Kind::Server)?;
                    let address = self.allocate_address(&records)?;
                    record.address = address;
                    self.layout.save(Kind::Server, &id, &record)?;
                }
                Err(e) => return Err(e),
            }
        }
        let record = self.update_server(&id, |r| r.ready = true)?;
        Ok(self.server_info(&record))
    }

    /// The first pool address no record holds and nothing listens on. Caller holds
    /// the global lock.
    fn allocate_address(&self, records: &[ServerRecord]) -> Result<Ipv4Addr, ProviderError> {
        let in_use: HashSet<_> = records.iter().map(|r| r.address).collect();
        let port = self.settings.ssh_port;
        self.pool
            .allocate(&in_use, |a| !sshd::port_in_use(IpAddr::V4(a), port))
            .ok_or_else(|| ProviderError::Capacity(format!("address pool {} is exhausted", self.settings.address_pool)))
    }

    /// Whether something other than this server's sshd listens on its address.
    fn address_taken_by_other(&self, record: &ServerRecord) -> bool {
        sshd::running_pid(&self.paths(&record.id)).is_none()
            && sshd::port_in_use(IpAddr::V4(record.address), self.settings.ssh_port)
    }

    /// Starts sshd and replays the boot list unless sshd already runs. Returns
    /// whether it started anything. Caller holds the server lock.
    fn ensure_running(&self, record: &ServerRecord) -> Result<bool, ProviderError> {
        let paths = self.paths(&record.id);
        if sshd::running_pid(&paths).is_some() {
            return Ok(false);
        }
        let opts = self.sshd_options();
        sshd::write_files(&paths, record, &opts)?;
        if let Some(user) = &record.service_user {
            // Again at every start: this machine may have been rebuilt from its state.
            users::ensure(user, &self.layout.root)?;
            users::restrict_root(&paths.root, user)?;
        }
        let timeout = Duration::from_secs(self.settings.start_timeout_secs);
        let pid = sshd::start(&self.tracker, &paths, record, &opts, timeout)?;
        tracing::info!(server = %record.id, pid, address = %record.address, "sshd started");
        self.run_list(record, boot::List::Boot)?;
        Ok(true)
    }

    fn run_list(&self, record: &ServerRecord, list: boot::List) -> Result<(), ProviderError> {
        let paths = self.paths(&record.id);
        let timeout = Duration::from_secs(self.settings.boot_timeout_secs);
        let outcomes = boot::replay(&self.tracker, &paths, record, list, timeout)?;
        let failed = outcomes.iter().filter(|o| !o.ok).count();
        if failed > 0 {
            tracing::warn!(
                server = %record.id, failed, ?list,
                log = %paths.boot_log().display(),
                "boot/stop list entries failed"
            );
        }
        Ok(())
    }

    fn list_servers(&self, tags: &BTreeMap<String, String>) -> Result<Vec<ServerInfo>, ProviderError> {
        let records: Vec<ServerRecord> = self.layout.list(Kind::Server)?;
        Ok(records
            .iter()
            .filter(|r| tags.iter().all(|(k, v)| r.tags.get(k) == Some(v)))
            .map(|r| self.server_info(r))
            .collect())
    }

    fn get_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        let record: ServerRecord = self.layout.load(Kind::Server, id)?;
        Ok(self.server_info(&record))
    }

    fn start_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        let _lock = self.resource_lock(Kind::Server, id)?;
        // Desired state first: if Herd dies halfway, recover() finishes the start.
        let record = self.update_server(id, |r| r.desired = Desired::Running)?;
        self.ensure_running(&record)?;
        let record = self.update_server(id, |r| r.ready = true)?;
        Ok(self.server_info(&record))
    }

    fn stop_server(&self, id: &str, force: bool) -> Result<ServerInfo, ProviderError> {
        let _lock = self.resource_lock(Kind::Server, id)?;
        // Desired state first, so recover() never restarts a server being stopped.
        let record = self.update_server(id, |r| r.desired = Desired::Stopped)?;
        let paths = self.paths(id);
        let extra: Vec<i32> = sshd::running_pid(&paths).into_iter().collect();
        let kill_timeout = Duration::from_secs(10);
        if force {
            self.tracker.kill_all(id, &extra, kill_timeout)?;
        } else {
            // Like a shutdown: services stop in order first, then whatever is left
            // gets SIGTERM and, after the grace period, SIGKILL.
            if !self.tracker.pids(id, &extra)?.is_empty() {
                self.run_list(&record, boot::List::Stop)?;
            }
            self.tracker.terminate_all(id, &extra, self.stop_timeout(), kill_timeout)?;
        }
        tracing::info!(server = %id, force, "loopback host powered off");
        Ok(self.server_info(&record))
    }

    fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        let lock = match self.resource_lock(Kind::Server, id) {
            Err(ProviderError::NotFound(_)) => return Ok(()),
            other => other?,
        };
        let paths = self.paths(id);
        let extra: Vec<i32> = sshd::running_pid(&paths).into_iter().collect();
        self.tracker.kill_all(id, &extra, Duration::from_secs(10))?;
        self.tracker.release(id, Duration::from_secs(10))?;
        {
            // Like a terminated instance, the server lets go of its volumes.
            let _g = self.global_lock()?;
            for mut vol in self.layout.list::<VolumeRecord>(Kind::Volume)? {
                if vol.attached_to.as_deref() == Some(id) {
                    vol.attached_to = None;
                    self.layout.save(Kind::Volume, &vol.id.clone(), &vol)?;
                }
            }
        }
        state::remove_dir_if_exists(&paths.root)?;
        {
            let _g = self.global_lock()?;
            let record: ServerRecord = self.layout.load(Kind::Server, id)?;
            // The cluster's last server takes its service user along; before the
            // record goes, so a failure is retried by the next delete.
            if let Some(user) = &record.service_user {
                let others: Vec<ServerRecord> = self.layout.list(Kind::Server)?;
                if !others.iter().any(|r| r.id != record.id && r.service_user.as_ref() == Some(user)) {
                    users::remove(user)?;
                }
            }
            // Removing the record releases the address.
            self.layout.remove(Kind::Server, id)?;
        }
        // A waiter on the old lock file finds no record and returns; good enough.
        state::remove_file_if_exists(&self.layout.lock_path(Kind::Server, id))?;
        drop(lock);
        tracing::info!(server = %id, "loopback host deleted");
        Ok(())
    }

    fn recover(&self) -> Result<Vec<String>, ProviderError> {
        let mut restarted = Vec::new();
        for record in self.layout.list::<ServerRecord>(Kind::Server)? {
            if record.desired != Desired::Running {
                continue;
            }
            let id = record.id.clone();
            let result = (|| {
                let _lock = match self.resource_lock(Kind::Server, &id) {
                    // Deleted meanwhile.
                    Err(ProviderError::NotFound(_)) => return Ok(false),
                    other => other?,
                };
                let record: ServerRecord = self.layout.load(Kind::Server, &id)?;
                if record.desired != Desired::Running {
                    return Ok(false);
                }
                let started = self.ensure_running(&record)?;
                if !record.ready {
                    self.update_server(&id, |r| r.ready = true)?;
                }
                Ok::<_, ProviderError>(started)
            })();
            match result {
                Ok(true) => {
                    tracing::info!(server = %id, "loopback host restarted by recover");
                    restarted.push(id);
                }
                Ok(false) => {}
                // One broken host must not keep the others down.
                Err(e) => tracing::error!(server = %id, error = %e, "cannot recover loopback host"),
            }
        }
        Ok(restarted)
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { volumes: true, snapshots: true, power_control: true }
    }

    fn describe(&self) -> serde_json::Value {
        let s = &self.inner.settings;
        serde_json::json!({
            "kind": "local",
            "root": self.inner.layout.root,
            "address_pool": s.address_pool,
            "login_user": s.login_user,
            "ssh_port": s.ssh_port,
            "sshd_path": s.sshd_path,
            "process_tracking": self.inner.tracker.mode(),
            "flavors": s.flavors,
            "start_timeout_secs": s.start_timeout_secs,
            "stop_timeout_secs": s.stop_timeout_secs,
            "boot_timeout_secs": s.boot_timeout_secs,
        })
    }

    async fn flavors(&self) -> Result<Vec<Flavor>, ProviderError> {
        Ok(self
            .inner
            .settings
            .flavors
            .iter()
            .map(|f| Flavor { id: f.id.clone(), vcpus: f.vcpus, ram_mb: f.ram_mb })
            .collect())
    }

    async fn create_server(&self, spec: &ServerSpec, token: &str) -> Result<ServerInfo, ProviderError> {
        let (spec, token) = (spec.clone(), token.to_owned());
        self.run(move |i| i.create_server(&spec, &token)).await
    }

    async fn get_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.get_server(&id)).await
    }

    async fn list_servers(&self, tags: &BTreeMap<String, String>) -> Result<Vec<ServerInfo>, ProviderError> {
        let tags = tags.clone();
        self.run(move |i| i.list_servers(&tags)).await
    }

    async fn start_server(&self, id: &str) -> Result<ServerInfo, ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.start_server(&id)).await
    }

    async fn stop_server(&self, id: &str, force: bool) -> Result<ServerInfo, ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.stop_server(&id, force)).await
    }

    async fn delete_server(&self, id: &str) -> Result<(), ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.delete_server(&id)).await
    }

    async fn create_volume(&self, spec: &VolumeSpec, token: &str) -> Result<VolumeInfo, ProviderError> {
        let (spec, token) = (spec.clone(), token.to_owned());
        self.run(move |i| i.create_volume(&spec, &token)).await
    }

    async fn get_volume(&self, id: &str) -> Result<VolumeInfo, ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.get_volume(&id)).await
    }

    async fn attach_volume(&self, volume_id: &str, server_id: &str) -> Result<VolumeAttachment, ProviderError> {
        let (v, s) = (volume_id.to_owned(), server_id.to_owned());
        self.run(move |i| i.attach_volume(&v, &s)).await
    }

    async fn detach_volume(&self, volume_id: &str, server_id: &str) -> Result<(), ProviderError> {
        let (v, s) = (volume_id.to_owned(), server_id.to_owned());
        self.run(move |i| i.detach_volume(&v, &s)).await
    }

    async fn delete_volume(&self, id: &str) -> Result<(), ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.delete_volume(&id)).await
    }

    async fn snapshot_volume(
        &self,
        volume_id: &str,
        spec: &SnapshotSpec,
        token: &str,
    ) -> Result<SnapshotInfo, ProviderError> {
        let (v, spec, token) = (volume_id.to_owned(), spec.clone(), token.to_owned());
        self.run(move |i| i.snapshot_volume(&v, &spec, &token)).await
    }

    async fn get_snapshot(&self, id: &str) -> Result<SnapshotInfo, ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.get_snapshot(&id)).await
    }

    async fn create_volume_from_snapshot(
        &self,
        snapshot_id: &str,
        spec: &VolumeSpec,
        token: &str,
    ) -> Result<VolumeInfo, ProviderError> {
        let (s, spec, token) = (snapshot_id.to_owned(), spec.clone(), token.to_owned());
        self.run(move |i| i.create_volume_from_snapshot(&s, &spec, &token)).await
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), ProviderError> {
        let id = id.to_owned();
        self.run(move |i| i.delete_snapshot(&id)).await
    }

    async fn recover(&self) -> Result<Vec<String>, ProviderError> {
        self.run(|i| i.recover()).await
    }
}
