//! Provider settings: `[providers.local]` and `[providers.ec2]` in herd.toml,
//! `HERD_PROVIDERS__LOCAL__<KEY>` / `HERD_PROVIDERS__EC2__<KEY>` in the environment.
//! Pure data: the `herd-providers` crate turns these into live providers.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A machine size a provider offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlavorSettings {
    pub id: String,
    pub vcpus: u32,
    pub ram_mb: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersSettings {
    /// The loopback-host provider; on unless `enabled = false`.
    pub local: LocalProviderSettings,
    /// Amazon EC2 (or an EC2-compatible endpoint); off unless configured.
    pub ec2: Option<Ec2ProviderSettings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalProviderSettings {
    pub enabled: bool,
    /// CIDR inside 127.0.0.0/8 that server addresses come from; 127.0.0.1 is never used.
    pub address_pool: String,
    /// Where servers, volumes and snapshots live; default `<state_dir>/local`.
    pub root: Option<PathBuf>,
    /// User Herd logs in as over SSH.
    pub login_user: String,
    pub sshd_path: PathBuf,
    /// TCP port every server's sshd listens on (on its own address).
    pub ssh_port: u16,
    pub flavors: Vec<FlavorSettings>,
    /// How the processes of a server are found for power-off: `auto` (a cgroup v2
    /// per server when the hierarchy is writable, else `marker`), `cgroup`, `marker`
    /// (the `HERD_SERVER=<id>` environment entry every server process inherits).
    pub process_tracking: String,
    /// Parent cgroup for the per-server cgroups; default `<cgroup2 mount>/herd`.
    pub cgroup_root: Option<PathBuf>,
    /// Seconds to wait for a server's sshd to accept connections.
    pub start_timeout_secs: u64,
    /// Seconds a graceful stop waits after SIGTERM before it sends SIGKILL.
    pub stop_timeout_secs: u64,
    /// Seconds one boot-list entry may run before it is killed.
    pub boot_timeout_secs: u64,
}

impl Default for LocalProviderSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            address_pool: "127.77.0.0/16".into(),
            root: None,
            login_user: "root".into(),
            sshd_path: "/usr/sbin/sshd".into(),
            ssh_port: 22,
            flavors: vec![
                FlavorSettings { id: "local.small".into(), vcpus: 1, ram_mb: 1024 },
                FlavorSettings { id: "local.medium".into(), vcpus: 2, ram_mb: 4096 },
            ],
            process_tracking: "auto".into(),
            cgroup_root: None,
            start_timeout_secs: 15,
            stop_timeout_secs: 30,
            boot_timeout_secs: 120,
        }
    }
}

/// Credentials are never here: they come from the standard AWS chain
/// (environment, profile, instance role).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ec2ProviderSettings {
    pub region: String,
    /// Override for EC2-compatible endpoints (moto in tests).
    pub endpoint_url: Option<String>,
    pub availability_zone: Option<String>,
    pub subnet_id: Option<String>,
    pub security_group_ids: Vec<String>,
    /// Instance types offered as flavors; checked with DescribeInstanceTypes.
    pub instance_types: Vec<String>,
    pub login_user: String,
    /// Volume type for data volumes (gp3, io2, ...).
    pub volume_type: String,
    /// Seconds to wait for an instance/volume state transition.
    pub wait_timeout_secs: u64,
    /// Connect to the instance's public IP instead of its private one.
    pub use_public_ip: bool,
}

impl Default for Ec2ProviderSettings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            endpoint_url: None,
            availability_zone: None,
            subnet_id: None,
            security_group_ids: vec![],
            instance_types: vec!["t3.medium".into(), "m6i.large".into()],
            login_user: "admin".into(),
            volume_type: "gp3".into(),
            wait_timeout_secs: 600,
            use_public_ip: false,
        }
    }
}
