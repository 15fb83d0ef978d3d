//! Reading Patroni's REST API: `/cluster` (every member's role, state, timeline
//! and lag as recorded in the DCS) and the leader's `/patroni` (its walsenders),
//! turned into a [`ClusterHealth`].
//!
//! Patroni 3.0 reports replicas as `running` in `/cluster` whether or not they
//! replicate; a replica is reported `streaming` here only when the leader has a
//! streaming walsender for it (application_name = member name).

use super::layout::PATRONI_PORT;
use crate::{ClusterHealth, ClusterSpec, ManagerError, NodeHealth};
use herd_core::status::NodeRole;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClusterView {
    #[serde(default)]
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct MemberView {
    pub name: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub timeline: Option<i64>,
    /// Bytes behind the leader, or `"unknown"`.
    #[serde(default)]
    pub lag: Option<serde_json::Value>,
    /// Present (true) when PostgreSQL runs with settings that need a restart.
    #[serde(default)]
    pub pending_restart: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct StatusView {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub timeline: Option<i64>,
    #[serde(default)]
    pub replication: Vec<WalSender>,
    /// Changes at every start of PostgreSQL (restart, reinitialize).
    #[serde(default)]
    pub postmaster_start_time: Option<String>,
    #[serde(default)]
    pub pending_restart: bool,
    /// A replica's WAL positions (absent on a primary).
    #[serde(default)]
    pub xlog: Option<XlogView>,
}

/// A replica's WAL positions as `/patroni` reports them (byte positions).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct XlogView {
    #[serde(default)]
    pub received_location: Option<u64>,
    #[serde(default)]
    pub replayed_location: Option<u64>,
}

impl StatusView {
    /// How far this replica's WAL goes: what it received or replayed, whichever is
    /// further (Patroni compares candidates the same way).
    pub fn wal_position(&self) -> Option<u64> {
        let x = self.xlog.as_ref()?;
        x.received_location.max(x.replayed_location)
    }
}

/// One look at the cluster through Patroni.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub health: ClusterHealth,
    /// Members the leader streams to synchronously.
    pub sync_standbys: Vec<String>,
    /// Members Patroni lists as `sync_standby` (its `/sync` key): the only ones it
    /// lets a switchover promote in synchronous mode.
    pub sync_members: Vec<String>,
    /// Members that did not answer, and why.
    pub errors: Vec<String>,
}

impl Observed {
    /// Converged, and in synchronous mode with replicas, a synchronous standby is
    /// in place: the leader streams to it synchronously and Patroni has recorded it
    /// (its `/sync` key, a loop or two later). Only then can the primary's loss be
    /// covered by an automatic failover.
    pub fn is_ready(&self, cluster: &ClusterSpec) -> bool {
        let n = cluster.members.len();
        self.health.is_converged(n)
            && (!cluster.synchronous
                || n < 2
                || self.sync_standbys.iter().any(|s| self.sync_members.contains(s)) && self.health.has_sync_standby())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WalSender {
    #[serde(default)]
    pub application_name: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub sync_state: Option<String>,
}

fn role_of(patroni_role: &str) -> NodeRole {
    match patroni_role {
        "leader" | "master" | "primary" | "standby_leader" => NodeRole::Primary,
        "replica" | "sync_standby" | "standby" => NodeRole::Replica,
        _ => NodeRole::Unknown,
    }
}

/// Combines what Patroni said into the manager's view: one entry per cluster
/// member (in spec order, `unknown` when Patroni does not list it), then any member
/// Patroni lists that the spec does not have.
pub fn build_health(cluster: &ClusterSpec, view: Option<&ClusterView>, leader: Option<&StatusView>) -> ClusterHealth {
    let streaming = |name: &str| {
        leader.is_some_and(|s| {
            s.replication
                .iter()
                .any(|w| w.application_name.as_deref() == Some(name) && w.state.as_deref() == Some("streaming"))
        })
    };
    let members: &[MemberView] = view.map(|v| v.members.as_slice()).unwrap_or_default();
    let node = |m: &MemberView| {
        let role = role_of(&m.role);
        let state = match role {
            NodeRole::Replica if streaming(&m.name) => "streaming".to_owned(),
            _ => m.state.clone(),
        };
        let timeline = m.timeline.or_else(|| match role {
            NodeRole::Primary => leader.and_then(|s| s.timeline),
            _ => None,
        });
        let lag_bytes = match role {
            NodeRole::Primary => None,
            _ => m.lag.as_ref().and_then(serde_json::Value::as_i64),
        };
        NodeHealth {
            name: m.name.clone(),
            role,
            state,
            timeline,
            lag_bytes,
            pending_restart: m.pending_restart,
            sync_standby: m.role == "sync_standby",
        }
    };
    let mut nodes = Vec::new();
    for spec_member in &cluster.members {
        match members.iter().find(|m| m.name == spec_member.name) {
            Some(m) => nodes.push(node(m)),
            None => nodes.push(NodeHealth {
                name: spec_member.name.clone(),
                role: NodeRole::Unknown,
                state: "unknown".into(),
                timeline: None,
                lag_bytes: None,
                pending_restart: false,
                sync_standby: false,
            }),
        }
    }
    for m in members {
        if !cluster.members.iter().any(|s| s.name == m.name) {
            nodes.push(node(m));
        }
    }
    let leader_name = nodes.iter().find(|n| n.role == NodeRole::Primary).map(|n| n.name.clone());
    ClusterHealth { nodes, leader: leader_name }
}

/// Members the leader replicates to synchronously right now (its walsender says
/// `sync`): from then on every commit waits for one of them. (Patroni records the
/// choice in the DCS one loop later.)
fn sync_standbys(view: &ClusterView, leader: &StatusView) -> Vec<String> {
    view.members
        .iter()
        .filter(|m| {
            leader.replication.iter().any(|w| {
                w.application_name.as_deref() == Some(m.name.as_str())
                    && w.state.as_deref() == Some("streaming")
                    && matches!(w.sync_state.as_deref(), Some("sync" | "quorum"))
            })
        })
        .map(|m| m.name.clone())
        .collect()
}

/// One line per member, for logs and timeout messages.
pub fn summary(h: &ClusterHealth) -> String {
    h.nodes
        .iter()
        .map(|n| {
            let mut s = format!("{} {}/{}", n.name, n.role.as_str(), n.state);
            if let Some(tl) = n.timeline {
                s.push_str(&format!(" tl {tl}"));
            }
            if let Some(lag) = n.lag_bytes {
                s.push_str(&format!(" lag {lag}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An HTTPS client for one cluster's Patroni and etcd endpoints: it trusts only that
/// cluster's CA and presents Herd's client certificate of that cluster.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

/// The scheme and address of a member's Patroni REST API.
pub fn api_base(addr: std::net::IpAddr) -> String {
    format!("https://{}", SocketAddr::new(addr, PATRONI_PORT))
}

impl Http {
    pub fn for_cluster(tls: &crate::ClusterTls) -> Result<Self, ManagerError> {
        let bad = |what: &str, e: reqwest::Error| {
            ManagerError::permanent(herd_core::faults::FaultCode::InvalidSecrets, format!("{what}: {e}"))
        };
        let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).map_err(|e| bad("cluster CA", e))?;
        let mut pem = tls.control_plane.cert_pem.clone().into_bytes();
        pem.extend_from_slice(secrecy::ExposeSecret::expose_secret(&tls.control_plane.key_pem).as_bytes());
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| bad("Herd's client certificate", e))?;
        let client = reqwest::Client::builder()
            // Members are reached directly; a proxy from the environment must not
            // intercept (or see) these requests.
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .connect_timeout(Duration::from_millis(800))
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| ManagerError::Transient(format!("http client: {e}")))?;
        Ok(Self { client })
    }

    /// GET `url` and decode JSON whatever the status (Patroni answers 503 with a
    /// body for members that are not healthy primaries).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp = self.client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: HTTP {status}, unreadable body: {e}"))
    }

    /// Whether the server at `url` answers HTTP at all (any status).
    pub async fn answers(&self, url: &str) -> bool {
        self.client.get(url).send().await.is_ok()
    }

    /// The HTTP status of a GET, None when nothing answers.
    pub async fn status(&self, url: &str) -> Option<u16> {
        self.client.get(url).send().await.ok().map(|r| r.status().as_u16())
    }

    /// Sends `body` as JSON with `method`, with basic auth when given (Patroni's
    /// unsafe endpoints); returns the status and the body as text. `timeout`
    /// replaces the client's default for calls Patroni answers only when done
    /// (restart, switchover). The password is only ever in the header.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &serde_json::Value,
        auth: Option<(&str, &str)>,
        timeout: Option<Duration>,
    ) -> Result<(u16, String), String> {
        let mut req = self.client.request(method.clone(), url).json(body);
        if let Some((user, password)) = auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| format!("{method} {url}: {e}"))?;
        Ok((status, text))
    }

    /// Patroni's view, asked of each member in turn until one answers; then the
    /// leader's own status for its walsenders. Unreachable members are tolerated:
    /// when nobody answers, every member is `unknown`.
    pub async fn observe(&self, cluster: &ClusterSpec) -> Observed {
        let mut errors = Vec::new();
        let mut view: Option<ClusterView> = None;
        for m in &cluster.members {
            let url = format!("{}/cluster", api_base(m.address));
            match self.get_json::<ClusterView>(&url).await {
                Ok(v) => {
                    view = Some(v);
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        let mut leader_status = None;
        if let Some(v) = &view
            && let Some(leader) = v.members.iter().find(|m| role_of(&m.role) == NodeRole::Primary)
        {
            // Prefer the address Herd knows for that member over what the DCS says.
            let url = match cluster.members.iter().find(|s| s.name == leader.name) {
                Some(s) => Some(format!("{}/patroni", api_base(s.address))),
                None => leader.api_url.clone(),
            };
            if let Some(url) = url {
                match self.get_json::<StatusView>(&url).await {
                    Ok(s) => leader_status = Some(s),
                    Err(e) => errors.push(e),
                }
            }
        }
        let sync_standbys = match (&view, &leader_status) {
            (Some(v), Some(l)) => sync_standbys(v, l),
            _ => Vec::new(),
        };
        let sync_members = view
            .iter()
            .flat_map(|v| v.members.iter())
            .filter(|m| m.role == "sync_standby")
            .map(|m| m.name.clone())
            .collect();
        Observed {
            health: build_health(cluster, view.as_ref(), leader_status.as_ref()),
            sync_standbys,
            sync_members,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgresql::layout::tests::spec;

    fn three() -> ClusterSpec {
        let (mut c, n) = spec("/", None);
        c.members.clear();
        for i in 0..3 {
            let mut m = n.clone();
            m.name = format!("orders-{i}");
            m.address = format!("127.78.0.{}", i + 2).parse().unwrap();
            c.members.push(m);
        }
        c
    }

    const CLUSTER: &str = r#"{"members": [
        {"name": "orders-0", "role": "leader", "state": "running", "api_url": "http://127.78.0.2:8008/patroni", "host": "127.78.0.2", "port": 5432, "timeline": 1},
        {"name": "orders-1", "role": "sync_standby", "state": "running", "host": "127.78.0.3", "port": 5432, "timeline": 1, "lag": 0},
        {"name": "orders-2", "role": "replica", "state": "running", "host": "127.78.0.4", "port": 5432, "timeline": 1, "lag": "unknown"}
    ]}"#;

    const LEADER: &str = r#"{"state": "running", "role": "master", "timeline": 1, "replication": [
        {"usename": "replicator", "application_name": "orders-1", "client_addr": "127.0.0.1", "state": "streaming", "sync_state": "sync", "sync_priority": 1},
        {"usename": "replicator", "application_name": "orders-2", "client_addr": "127.0.0.1", "state": "streaming", "sync_state": "async", "sync_priority": 0}
    ]}"#;

    #[test]
    fn streaming_cluster_is_converged() {
        let c = three();
        let view: ClusterView = serde_json::from_str(CLUSTER).unwrap();
        let leader: StatusView = serde_json::from_str(LEADER).unwrap();
        let h = build_health(&c, Some(&view), Some(&leader));
        assert_eq!(h.leader.as_deref(), Some("orders-0"));
        assert_eq!(h.nodes[0].role, NodeRole::Primary);
        assert_eq!(h.nodes[0].state, "running");
        assert_eq!(h.nodes[1].role, NodeRole::Replica);
        assert_eq!(h.nodes[1].state, "streaming");
        assert_eq!(h.nodes[1].lag_bytes, Some(0));
        assert_eq!(h.nodes[2].lag_bytes, None, "\"unknown\" lag");
        assert!(h.is_converged(3), "{}", summary(&h));
        assert_eq!(sync_standbys(&view, &leader), vec!["orders-1".to_owned()]);
        let mut obs = Observed { health: h, sync_standbys: vec![], sync_members: vec![], errors: vec![] };
        let mut sync = c.clone();
        sync.synchronous = true;
        assert!(obs.is_ready(&c));
        assert!(!obs.is_ready(&sync), "synchronous mode waits for a sync standby");
        obs.sync_standbys = sync_standbys(&view, &leader);
        assert!(!obs.is_ready(&sync), "streaming synchronously, but not recorded by Patroni yet");
        obs.sync_members = vec!["orders-1".into()];
        assert!(obs.is_ready(&sync));
        assert!(obs.health.has_sync_standby());
        assert!(obs.health.nodes[1].sync_standby && !obs.health.nodes[2].sync_standby);
    }

    #[test]
    fn replica_without_walsender_is_not_streaming() {
        let c = three();
        let view: ClusterView = serde_json::from_str(CLUSTER).unwrap();
        let mut leader: StatusView = serde_json::from_str(LEADER).unwrap();
        leader.replication.retain(|w| w.application_name.as_deref() != Some("orders-2"));
        let h = build_health(&c, Some(&view), Some(&leader));
        assert_eq!(h.nodes[2].state, "running");
        assert!(!h.is_converged(3));
        // Without the leader's status nobody is known to stream.
        let h = build_health(&c, Some(&view), None);
        assert!(!h.is_converged(3));
    }

    #[test]
    fn missing_and_extra_members() {
        let c = three();
        let mut view: ClusterView = serde_json::from_str(CLUSTER).unwrap();
        view.members.retain(|m| m.name != "orders-2");
        view.members.push(MemberView {
            name: "stale".into(),
            role: "replica".into(),
            state: "stopped".into(),
            api_url: None,
            timeline: None,
            lag: None,
            pending_restart: false,
        });
        // A replica's `/patroni` carries its WAL positions.
        let st: StatusView = serde_json::from_str(
            r#"{"state": "running", "role": "replica", "timeline": 3,
                "xlog": {"received_location": 50331800, "replayed_location": 50331648, "paused": false}}"#,
        )
        .unwrap();
        assert_eq!(st.wal_position(), Some(50331800));
        assert_eq!(StatusView::default().wal_position(), None);
        let h = build_health(&c, Some(&view), None);
        assert_eq!(h.nodes.len(), 4);
        assert_eq!(h.nodes[2].name, "orders-2");
        assert_eq!(h.nodes[2].role, NodeRole::Unknown);
        assert_eq!(h.nodes[3].name, "stale");
        let none = build_health(&c, None, None);
        assert_eq!(none.leader, None);
        assert!(none.nodes.iter().all(|n| n.role == NodeRole::Unknown && n.state == "unknown"));
        assert!(!none.is_converged(3));
    }
}
