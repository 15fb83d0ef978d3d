//! What a datastore manager can do, split by capability, and the registry that names
//! the managers a process runs with.
//!
//! Callers hold a [`Manager`] (one capability object each) and use only the part they
//! need: the API asks the [`Profile`] (no server involved), the build drives
//! [`Lifecycle`], day-2 tasks [`Operations`] and [`Membership`], backup tasks
//! [`Backups`] and [`Snapshots`]. A fake implementing each trait drives the worker's
//! step machines in unit tests; the registry ([`Managers`]) is injected into the API's
//! and the worker's state, so nothing picks a manager by a hard-coded name.

use crate::{
    BackupConfig, BackupInfo, BackupType, ClusterHealth, ClusterSpec, Grants, HeldBackup, ManagedDatabase, ManagedUser,
    ManagerError, NodeSpec, ParameterInfo, RecoveryWindow, SshTarget,
};
use async_trait::async_trait;
use herd_core::faults::FaultCode;
use herd_core::status::NodeRole;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Facts about the datastore that need no server: parameter rules, how clients
/// connect, how its HA agent names roles.
pub trait Profile: Send + Sync {
    /// The `manager` name datastore rows refer to.
    fn name(&self) -> &'static str;
    /// Checks a datastore version's name as this manager will read it (PostgreSQL:
    /// a major version such as `15`, which picks packages, paths and parameter rules).
    fn check_version(&self, version: &str) -> Result<(), String>;
    /// Checks user parameters against this datastore version's rules (type, range,
    /// allowed values; names Herd manages itself are refused). Every problem at once,
    /// as (parameter name, message).
    fn check_parameters(
        &self,
        version: &str,
        parameters: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<ParameterInfo>, Vec<(String, String)>>;
    /// The port clients connect to on every node.
    fn client_port(&self) -> u16;
    /// A client URI over `hosts` (each `address:port`) that reaches whichever of them
    /// accepts writes; `userinfo` is already percent-encoded.
    fn client_uri(&self, userinfo: &str, hosts: &[String]) -> String;
    /// The role named in the HA agent's role-change callback.
    fn callback_role(&self, reported: &str) -> NodeRole;
}

/// Building a node and running it. Each step is idempotent.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Waits until the server answers SSH with the expected host key (or, none known,
    /// any: it is returned so the caller can record it).
    async fn wait_reachable(&self, target: &SshTarget, timeout: Duration) -> Result<String, ManagerError> {
        crate::ssh::wait_reachable(target, timeout).await
    }
    /// Install missing packages, mount or adopt the data volume, create directories
    /// owned by the service user.
    async fn prepare(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Write every config file (DCS member, HA agent, database) and register the
    /// node's daemons in its boot list.
    async fn configure(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Start the node's DCS member (etcd). Already running is success.
    async fn start_dcs(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Start the node's HA agent (Patroni), which starts the database.
    async fn start_ha(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Poll until a leader runs and every replica streams, or `timeout` passes
    /// (then `Transient` with what was last seen).
    async fn wait_converged(&self, cluster: &ClusterSpec, timeout: Duration) -> Result<ClusterHealth, ManagerError>;
    /// Create or update the admin role with the cluster's admin password, on the primary.
    async fn set_admin_password(&self, cluster: &ClusterSpec) -> Result<(), ManagerError>;
    /// What the HA agent reports now for every member.
    async fn health(&self, cluster: &ClusterSpec) -> Result<ClusterHealth, ManagerError>;
    /// Stop the node's daemons and remove them from its boot list (before deleting it).
    async fn stop_node(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
}

/// Day-2 operations on a running cluster.
#[async_trait]
pub trait Operations: Send + Sync {
    /// Pushes the cluster-wide settings (timing, synchronous mode, failover lag,
    /// parameters; a parameter no longer in the spec returns to its default) into the
    /// running cluster's dynamic configuration. Returns the members that now need a
    /// restart for the change to take effect.
    async fn apply_dynamic_config(&self, cluster: &ClusterSpec) -> Result<Vec<String>, ManagerError>;
    /// Restarts the node's database through the HA agent; returns once it runs again
    /// (a replica: streaming again).
    async fn restart_node(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Makes the node's database re-read its configuration.
    async fn reload_node(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Planned handover from the current primary to `candidate` (a member name), or
    /// to the best eligible replica; returns the new primary once it accepts writes.
    async fn switchover(&self, cluster: &ClusterSpec, candidate: Option<&str>) -> Result<String, ManagerError>;
    /// Forced promotion of `candidate`, whatever the current primary's state, or with
    /// None of the most advanced running replica (newest timeline, then furthest WAL
    /// position: it holds every commit any other replica has); returns the new
    /// primary once it accepts writes.
    async fn failover(&self, cluster: &ClusterSpec, candidate: Option<&str>) -> Result<String, ManagerError>;
    /// Throws away a replica's data and clones it again from the primary; returns once
    /// it streams.
    async fn reinitialize(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Stops the node's HA agent and database, leaving its DCS member running (quorum).
    /// The node stays stopped, across server restarts too, until [`Lifecycle::start_ha`].
    async fn stop_ha(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Starts whichever of the node's daemons should run but does not (not those
    /// stopped by [`Operations::stop_ha`]); returns the names of the ones it started.
    async fn ensure_running(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<Vec<String>, ManagerError>;
}

/// Changing who is in the cluster, and where the DCS leads from.
#[async_trait]
pub trait Membership: Send + Sync {
    /// Registers a new node (`joins_existing`) with the running DCS, before its
    /// `start_dcs`. Idempotent.
    async fn add_member(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Removes a stopped node's DCS member and HA-agent state from the cluster.
    /// `cluster.members` no longer lists it. Idempotent.
    async fn remove_member(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError>;
    /// Keeps the DCS's own leader off the member named `primary`, so that losing the
    /// primary's node does not also cost a DCS election (which renews the leader
    /// key's lease and delays failover). Returns the member now leading the DCS when
    /// it moved leadership.
    async fn place_dcs_leader(&self, cluster: &ClusterSpec, primary: &str) -> Result<Option<String>, ManagerError>;
}

/// Backups into the cluster's repository (`cluster.backup` must be Some).
#[async_trait]
pub trait Backups: Send + Sync {
    /// Creates the cluster's stanza in its repository (idempotent) and checks that WAL
    /// archiving works.
    async fn init_backups(&self, cluster: &ClusterSpec) -> Result<(), ManagerError>;
    /// Takes a backup from the primary; returns it once complete.
    async fn backup(&self, cluster: &ClusterSpec, kind: BackupType) -> Result<BackupInfo, ManagerError>;
    // The next three run the backup tool on the control-plane host itself (it reaches
    // the repository: the same directory for loopback hosts, S3 otherwise), so they
    // work after the cluster is gone.

    /// Every backup in a stanza.
    async fn list_backups(&self, config: &BackupConfig) -> Result<Vec<BackupInfo>, ManagerError>;
    /// Removes one backup (and the WAL only it needed) from the repository.
    async fn expire_backup(&self, config: &BackupConfig, label: &str) -> Result<(), ManagerError>;
    /// Earliest and latest restorable times of a stanza; None when it has no backup.
    async fn recovery_window(&self, config: &BackupConfig) -> Result<Option<RecoveryWindow>, ManagerError>;
}

/// Volume snapshots made consistent by the datastore (`cluster.backup` must be Some:
/// the WAL comes from its archive).
#[async_trait]
pub trait Snapshots: Send + Sync {
    /// Starts an online backup on `node` (the primary) so that a copy of its data
    /// volume taken before [`HeldBackup::finish`] can be restored with the archived
    /// WAL; `label` names it in PostgreSQL.
    async fn begin_snapshot(
        &self,
        cluster: &ClusterSpec,
        node: &NodeSpec,
        label: &str,
    ) -> Result<Box<dyn HeldBackup>, ManagerError>;
}

/// Managed databases and users, applied on the primary. Each call is idempotent and
/// sets the whole of what it names (a user's attributes and roles, one database, one
/// user's grants), so re-running it repairs drift.
#[async_trait]
pub trait Access: Send + Sync {
    /// Creates or alters the login role: password, connection limit, membership in
    /// exactly `user.roles` of the grantable predefined roles, no other attribute.
    async fn ensure_user(&self, cluster: &ClusterSpec, user: &ManagedUser) -> Result<(), ManagerError>;
    /// Creates the database or gives it its owner; nobody but its owner, the admin and
    /// users granted it may connect.
    async fn ensure_database(&self, cluster: &ClusterSpec, db: &ManagedDatabase) -> Result<(), ManagerError>;
    /// Sets `user`'s privileges in each of `databases` (those it owns aside): what
    /// `grants` says, nothing in the others.
    async fn apply_grants(
        &self,
        cluster: &ClusterSpec,
        user: &str,
        grants: &Grants,
        databases: &[ManagedDatabase],
    ) -> Result<(), ManagerError>;
    /// Drops the database; with sessions connected it refuses (`database_in_use`)
    /// unless `force`, which ends them.
    async fn drop_database(&self, cluster: &ClusterSpec, name: &str, force: bool) -> Result<(), ManagerError>;
    /// Ends the role's sessions, hands what it owns to the admin, drops it.
    async fn drop_user(&self, cluster: &ClusterSpec, name: &str) -> Result<(), ManagerError>;
    /// Of these users and databases, those the primary does not have (lost to a
    /// failover before they replicated, or absent from a restored backup).
    async fn missing(
        &self,
        cluster: &ClusterSpec,
        users: &[String],
        databases: &[String],
    ) -> Result<(Vec<String>, Vec<String>), ManagerError>;
}

/// One datastore's manager, as capabilities. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    pub profile: Arc<dyn Profile>,
    pub lifecycle: Arc<dyn Lifecycle>,
    pub operations: Arc<dyn Operations>,
    pub membership: Arc<dyn Membership>,
    pub backups: Arc<dyn Backups>,
    pub snapshots: Arc<dyn Snapshots>,
    pub access: Arc<dyn Access>,
}

impl Manager {
    /// A manager whose every capability is one value.
    pub fn of<T>(m: T) -> Self
    where
        T: Profile + Lifecycle + Operations + Membership + Backups + Snapshots + Access + 'static,
    {
        let m = Arc::new(m);
        Self {
            profile: m.clone(),
            lifecycle: m.clone(),
            operations: m.clone(),
            membership: m.clone(),
            backups: m.clone(),
            snapshots: m.clone(),
            access: m,
        }
    }

    pub fn name(&self) -> &'static str {
        self.profile.name()
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("name", &self.name()).finish_non_exhaustive()
    }
}

/// The managers this process runs with, by `manager` name. Built once at start-up and
/// shared by the API and the worker.
#[derive(Clone, Debug, Default)]
pub struct Managers {
    by_name: BTreeMap<&'static str, Manager>,
}

impl Managers {
    /// Every manager this build ships (PostgreSQL).
    pub fn builtin() -> Self {
        let mut m = Self::default();
        m.insert(Manager::of(crate::postgresql::PostgresManager::default()));
        m
    }

    /// Adds (or replaces) the manager under its profile's name.
    pub fn insert(&mut self, manager: Manager) {
        self.by_name.insert(manager.name(), manager);
    }

    pub fn get(&self, name: &str) -> Option<&Manager> {
        self.by_name.get(name)
    }

    /// Like [`Managers::get`], as a permanent `unknown_manager` error naming what exists.
    pub fn require(&self, name: &str) -> Result<&Manager, ManagerError> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.by_name.keys().copied().collect();
            ManagerError::permanent(
                FaultCode::UnknownManager,
                format!("no manager '{name}' in this build (have: {})", known.join(", ")),
            )
        })
    }

    /// The manager whose backup tool reads repositories written before the cluster's
    /// row went away. Herd's repositories are pgBackRest's, which one manager speaks.
    pub fn repository_reader(&self) -> Result<&Manager, ManagerError> {
        self.require(crate::postgresql::NAME)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}
