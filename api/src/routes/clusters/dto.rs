//! Clusters, nodes, events and HA settings as the API shows them, and the endpoints
//! (the libpq URI) derived from the nodes.

use herd_core::hooks::{Hook, Hooks};
use herd_core::status::{ClusterStatus, NodeRole};
use herd_datastores::Profile;
use herd_store::{Cluster, ClusterView, Node, TaskEvent};
use herd_types::{ClusterDto, Endpoints, EventDto, Fault, HaDto, HookDto, HooksDto, NodeDto};
use secrecy::{ExposeSecret, SecretString};

use crate::routes::IntoDto;
use crate::state::AppState;

/// Builds the datastore's client URI over every node once each has an address.
pub(crate) fn primary_uri(
    v: &ClusterView,
    profile: Option<&dyn Profile>,
    password: Option<&SecretString>,
) -> Option<String> {
    let profile = profile?;
    if !matches!(v.cluster.status, ClusterStatus::Active | ClusterStatus::Degraded | ClusterStatus::Updating) {
        return None;
    }
    let port = profile.client_port();
    let hosts: Option<Vec<String>> =
        v.nodes.iter().map(|n| n.address.as_ref().map(|a| format!("{a}:{port}"))).collect();
    let hosts = hosts.filter(|h| !h.is_empty())?;
    let userinfo = match password {
        Some(p) => format!("{}:{}", v.cluster.admin_user, percent_encode(p.expose_secret())),
        None => v.cluster.admin_user.clone(),
    };
    Some(profile.client_uri(&userinfo, &hosts))
}

/// RFC 3986 userinfo encoding: unreserved characters stay, everything else is %XX.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The DTO with the hook URLs filled in (they are stored encrypted with their secrets).
pub(crate) fn cluster_dto(v: ClusterView, state: &AppState) -> ClusterDto {
    // Hooks that cannot be decrypted (a changed master key) must not hide the cluster:
    // it is shown without them, and the cause is logged.
    let hooks = state.store.cluster_hooks(&v.cluster).unwrap_or_else(|e| {
        tracing::error!(cluster = %v.cluster.id, error = %e, "cannot read the cluster's hooks");
        Default::default()
    });
    let profile = state.profile_of(&v.manager);
    let mut dto = view_dto(v, profile);
    dto.hooks = (&hooks).into_dto();
    dto
}

/// The DTO without hooks; endpoints need the datastore's profile (none: a manager
/// this build lacks, and no endpoints).
fn view_dto(v: ClusterView, profile: Option<&dyn Profile>) -> ClusterDto {
    let primary_uri = primary_uri(&v, profile, None);
    let primary_address = profile.and_then(|p| {
        let port = p.client_port();
        v.nodes
            .iter()
            .find(|n| n.role == NodeRole::Primary)
            .and_then(|n| n.address.as_ref())
            .map(|a| format!("{a}:{port}"))
    });
    let ha = (&v.cluster).into_dto();
    let c = v.cluster;
    ClusterDto {
        ha,
        auto_heal: c.auto_heal,
        hooks: HooksDto::default(),
        id: c.id,
        fault: c.fault_code.map(|code| Fault { code, message: c.fault_message.unwrap_or_default() }),
        name: c.name,
        status: c.status,
        datastore: c.datastore,
        version: c.version,
        flavor: c.flavor,
        provider: c.provider,
        volume_gb: c.volume_gb,
        key_id: c.key_id,
        synchronous: c.synchronous,
        parameters: c.parameters,
        backups_encrypted: c.backup_repo.as_deref().is_some_and(herd_datastores::repo::recorded_encrypted),
        certificates_renew_at: c.certs_renew_at,
        backup_repository: c
            .backup_repo
            .filter(|r| r != herd_datastores::repo::NO_REPOSITORY)
            .map(|r| herd_datastores::repo::recorded_kind(&r).to_owned()),
        nodes: v.nodes.into_iter().map(IntoDto::into_dto).collect(),
        endpoints: Endpoints { primary_uri, primary_address },
        task: v.task.map(IntoDto::into_dto),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

impl IntoDto for Node {
    type Dto = NodeDto;
    fn into_dto(self) -> NodeDto {
        let n = self;
        NodeDto {
            id: n.id,
            name: n.name,
            role: n.role,
            status: n.status,
            state: n.state,
            address: n.address,
            timeline: n.timeline,
            lag_bytes: n.lag_bytes,
            last_seen: n.last_seen_at,
            no_failover: n.no_failover,
            priority: n.priority,
            pending_restart: n.pending_restart,
            sync_standby: n.sync_standby,
            desired_running: n.desired_running,
        }
    }
}

impl IntoDto for TaskEvent {
    type Dto = EventDto;
    fn into_dto(self) -> EventDto {
        let e = self;
        EventDto {
            id: e.id,
            task_id: e.task_id,
            level: e.level,
            step: e.step,
            message: e.message,
            created_at: e.created_at,
        }
    }
}

impl IntoDto for &Cluster {
    type Dto = HaDto;
    fn into_dto(self) -> HaDto {
        let c = self;
        HaDto {
            synchronous_strict: c.synchronous_strict,
            maximum_lag_on_failover: c.maximum_lag_on_failover,
            ttl: c.ha_ttl,
            loop_wait: c.ha_loop_wait,
            retry_timeout: c.ha_retry_timeout,
        }
    }
}

impl IntoDto for &Hooks {
    type Dto = HooksDto;
    fn into_dto(self) -> HooksDto {
        let h = self;
        let one = |h: &Option<Hook>| h.as_ref().map(|h| HookDto { url: h.url.clone() });
        HooksDto { pre_failover: one(&h.pre_failover), post_failover: one(&h.post_failover) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(super::percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(super::percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
