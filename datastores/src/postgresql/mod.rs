//! PostgreSQL on Debian, made highly available by Patroni with an etcd member on
//! every node (one node is a one-member Patroni cluster).
//!
//! Every step runs over one SSH session per node and is idempotent. Daemons are
//! started detached by control scripts that double as boot-list entries
//! (`etc/herd/boot.d/20-etcd-<cluster>`, `30-patroni-<v>-<cluster>`), so a server
//! restart and a Herd step start them the same way. PostgreSQL, Patroni and etcd run
//! as `postgres` and `etcd` (setpriv drops root before exec; nothing stays as root).
//! See the crate README for the file layout.

mod access;
mod backup;
mod day2;
mod etcd;
mod exit;
mod layout;
mod lifecycle;
mod packages;
mod params;
mod patroni;
mod profile;
mod render;
mod snapshot;
mod sql;
mod timing;

pub use layout::Layout;
pub use layout::scope;

use crate::shell::quote;
use crate::ssh::with_session;
use crate::{ClusterSpec, ManagerError, NodeSpec};
use herd_core::faults::FaultCode;
use patroni::Http;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use timing::{LIVENESS_EVERY, POLL};

/// The manager name of PostgreSQL datastores.
pub const NAME: &str = "postgresql";

/// Runs the rest of a command line as `user`, with no helper process left as root.
fn as_user(user: &str) -> String {
    format!("setpriv --reuid={u} --regid={u} --init-groups --", u = quote(user))
}

/// How many clusters' HTTPS clients are kept; past it the cache starts afresh.
const HTTP_CACHE_MAX: usize = 4096;

#[derive(Default)]
pub struct PostgresManager {
    /// One client per cluster (its CA and Herd's certificate differ), kept while the
    /// certificate stays the same: building one costs a TLS configuration.
    http: Mutex<HashMap<uuid::Uuid, (String, Http)>>,
}

impl std::fmt::Debug for PostgresManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresManager").finish_non_exhaustive()
    }
}

/// What tells a started daemon is ready.
enum Probe {
    /// etcd's `/health` says `"health": "true"` (it has a leader).
    EtcdHealthy(String),
    /// Patroni's REST API answers at all (it parsed its config and reached etcd).
    Answers(String),
}

impl PostgresManager {
    /// The member Patroni lists as leader.
    async fn leader_node(&self, cluster: &ClusterSpec) -> Result<NodeSpec, ManagerError> {
        let patroni::Observed { health, errors, .. } = self.http(cluster)?.observe(cluster).await;
        let leader = health.leader.clone().ok_or_else(|| {
            ManagerError::Transient(format!(
                "cluster {} has no leader: {}{}",
                cluster.name,
                patroni::summary(&health),
                errors.last().map(|e| format!(" (last error: {e})")).unwrap_or_default()
            ))
        })?;
        cluster.members.iter().find(|m| m.name == leader).cloned().ok_or_else(|| {
            ManagerError::Transient(format!("leader {leader} is not a member of cluster {}", cluster.name))
        })
    }

    fn http(&self, cluster: &ClusterSpec) -> Result<Http, ManagerError> {
        let cert = &cluster.tls.control_plane.cert_pem;
        let mut cache = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((c, h)) = cache.get(&cluster.cluster_id)
            && c == cert
        {
            return Ok(h.clone());
        }
        let h = Http::for_cluster(&cluster.tls)?;
        if cache.len() >= HTTP_CACHE_MAX {
            cache.clear();
        }
        cache.insert(cluster.cluster_id, (cert.clone(), h.clone()));
        Ok(h)
    }

    /// Polls `probe` until it passes; checks every [`LIVENESS_EVERY`] over SSH that
    /// the daemon still runs, so a daemon that died fails the step at once with its
    /// log instead of at the deadline.
    async fn wait_ready(
        &self,
        cluster: &ClusterSpec,
        node: &NodeSpec,
        entry: &str,
        what: &str,
        probe: Probe,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        let http = self.http(cluster)?;
        let deadline = Instant::now() + timeout;
        let mut next_check = Instant::now() + LIVENESS_EVERY;
        let mut last = String::from("no answer yet");
        loop {
            let ready = match &probe {
                Probe::EtcdHealthy(url) => match http.get_json::<serde_json::Value>(url).await {
                    Ok(v) if v["health"] == "true" => true,
                    Ok(v) => {
                        last = format!("health {v}");
                        false
                    }
                    Err(e) => {
                        last = e;
                        false
                    }
                },
                Probe::Answers(url) => http.answers(url).await,
            };
            if ready {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_check || now >= deadline {
                // The script reads the log as the daemon's user, never as root.
                let cmd = format!("{e} status && exit 0; echo 'last log lines:'; {e} log 15; exit 1", e = quote(entry));
                let out = with_session(&node.ssh, move |s| s.exec(&cmd, None)).await?;
                if !out.success() {
                    return Err(ManagerError::Transient(format!(
                        "{what} on {} is not running; {}",
                        node.name,
                        out.stdout.lines().collect::<Vec<_>>().join(" | ")
                    )));
                }
                next_check = now + LIVENESS_EVERY;
            }
            if now >= deadline {
                return Err(ManagerError::Transient(format!(
                    "{what} on {} not ready after {}s: {last}",
                    node.name,
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Runs a control script's `start`; a missing script means configure has not run.
fn start_command(entry: &str) -> String {
    let e = quote(entry);
    format!(
        "if [ -x {e} ]; then {e} start; else echo {} >&2; exit {}; fi",
        quote(&format!("{entry} is missing")),
        exit::NOT_CONFIGURED
    )
}

fn start_result(out: crate::ssh::Output, what: &str, node: &str) -> Result<(), ManagerError> {
    match out.exit_status {
        0 => Ok(()),
        exit::NOT_CONFIGURED => Err(ManagerError::permanent(
            FaultCode::NotConfigured,
            format!("cannot start {what} on {node}: {} (run configure first)", out.error_tail()),
        )),
        _ => Err(ManagerError::Transient(format!("starting {what} on {node} failed: {}", out.error_tail()))),
    }
}
