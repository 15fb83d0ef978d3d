//! How long the manager waits for what, in one place.

use std::time::Duration;

/// What each daemon's control script gives it after SIGTERM before SIGKILL.
pub const STOP_TIMEOUT_SECS: u32 = 60;
/// Stopping a node stops two daemons in turn, plus SSH and shell start.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2 * STOP_TIMEOUT_SECS as u64 + 60);
/// etcd of a multi-member cluster is healthy once a quorum runs: the worker starts
/// all members concurrently, so this bounds the slowest member's start.
pub const DCS_START_TIMEOUT: Duration = Duration::from_secs(60);
pub const HA_START_TIMEOUT: Duration = Duration::from_secs(60);
/// apt may wait up to 300 s for the shared dpkg lock, then download and install.
pub const APT_TIMEOUT: Duration = Duration::from_secs(900);
/// Between readiness probes of a starting daemon.
pub const POLL: Duration = Duration::from_millis(100);
/// Between looks at Patroni while a cluster converges.
pub const CONVERGE_POLL: Duration = Duration::from_millis(250);
/// How often a start step checks over SSH that the daemon it waits for still runs.
pub const LIVENESS_EVERY: Duration = Duration::from_secs(1);
