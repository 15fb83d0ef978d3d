//! Provisioning a cluster. Per node, in parallel: volume → server (running) → attach →
//! SSH reachable (host key recorded) → prepare → configure → etcd → Patroni; then for
//! the cluster: converged → admin password → active. Phases are barriers where a
//! later step needs every node (configuration lists all members' addresses).

use futures_util::future::try_join_all;
use herd_core::faults::FaultCode;
use herd_core::status::{ClusterStatus, NodeRole, NodeStatus};
use herd_core::task::{CreateInput, RestoreInput, TaskInput};
use herd_datastores::{ClusterSpec, Manager, NodeSpec, RestoreSource, SnapshotLabel, SnapshotSource};
use herd_providers::{Provider, ServerSpec, TAG_CLUSTER, TAG_NODE, VolumeSpec};
use herd_store::{Cluster, Node, SshKey, Volume};
use herd_store::{NodeObservation, VersionSpec};
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::spec::{cluster_spec, encode_attachment, node_spec, ssh_target};
use crate::steps::{Job, StepError};

pub const NODE_STEPS: [&str; 8] = [
    "create_volume",
    "create_server",
    "attach_volume",
    "wait_ssh",
    "prepare",
    "configure",
    "start_etcd",
    "start_patroni",
];
pub const CLUSTER_STEPS: [&str; 4] = ["wait_converged", "set_admin_password", "init_backups", "finalize"];
const CLUSTER: &str = "cluster";

/// A cluster's task context: its row, provider, manager and SSH key. Shared by the
/// build and by day-2 tasks that build or rebuild nodes.
pub(crate) struct Build<'a> {
    pub job: &'a Job,
    pub cluster: Cluster,
    pub provider: Arc<dyn Provider>,
    pub manager: Manager,
    pub version: VersionSpec,
    pub key: SshKey,
    pub private_key: SecretString,
}

impl<'a> Build<'a> {
    pub async fn load(job: &'a Job) -> Result<Build<'a>, StepError> {
        let store = &job.ctx.store;
        let cluster_id =
            job.task.cluster_id.ok_or_else(|| StepError::failed(FaultCode::InternalError, "task has no cluster"))?;
        let cluster = match store.cluster_by_id(cluster_id).await {
            Ok(c) => c,
            Err(herd_store::StoreError::NotFound) => return Err(StepError::Cancelled),
            Err(e) => return Err(e.into()),
        };
        if cluster.status == ClusterStatus::Deleting {
            return Err(StepError::Cancelled);
        }
        let provider = job.ctx.providers.get(&cluster.provider).ok_or_else(|| {
            StepError::failed(
                FaultCode::ProviderUnavailable,
                format!("provider '{}' is not configured", cluster.provider),
            )
        })?;
        let datastore = store.get_datastore(&cluster.datastore).await?;
        let manager = job.ctx.managers.require(&datastore.manager)?.clone();
        let version = store.get_version(&cluster.datastore, &cluster.version).await?;
        let (key, private_key) = store.cluster_private_key(&cluster).await?;
        Ok(Build { job, cluster, provider, manager, version, key, private_key })
    }
}

pub async fn run(job: &Job) -> Result<(), StepError> {
    let store = &job.ctx.store;
    let b = Build::load(job).await?;
    if job.task.attempts > 1 {
        store
            .log_event(
                &b.cluster,
                Some(job.task.id),
                "warn",
                None,
                &format!("resuming provisioning (attempt {})", job.task.attempts),
            )
            .await?;
    }

    let nodes = store.nodes_of(b.cluster.id).await?;
    try_join_all(nodes.iter().map(|n| b.provision_server(n))).await?;

    let spec = b.spec().await?;
    try_join_all(spec.members.iter().map(|m| b.install(&spec, m))).await?;
    match spec.restore.as_ref().and_then(|r| r.snapshot.as_ref()) {
        // Only the member whose volume holds the snapshot can bootstrap: it starts
        // first and leads before the others start and clone from it.
        Some(snap) => {
            let first = spec.members.iter().find(|m| m.node_id == snap.node_id).ok_or_else(|| {
                StepError::failed(FaultCode::InternalError, "the snapshot's member is not in the cluster")
            })?;
            b.start_ha(&spec, first).await?;
            let alone = ClusterSpec { members: vec![first.clone()], ..spec.clone() };
            let timeout = Duration::from_secs(job.ctx.settings.converge_timeout_secs);
            let mgr = &b.manager;
            job.step(&b.cluster, CLUSTER, "cluster", "wait_bootstrap", || async {
                Ok(mgr.lifecycle.wait_converged(&alone, timeout).await?)
            })
            .await?;
            try_join_all(spec.members.iter().filter(|m| m.node_id != snap.node_id).map(|m| b.start_ha(&spec, m)))
                .await?;
        }
        None => {
            try_join_all(spec.members.iter().map(|m| b.start_ha(&spec, m))).await?;
        }
    }
    b.finish(&spec).await
}

impl Build<'_> {
    fn label(n: &Node) -> String {
        format!("node {}", n.name)
    }

    pub async fn provision_server(&self, n: &Node) -> Result<(), StepError> {
        let (job, c, store) = (self.job, &self.cluster, &self.job.ctx.store);
        let scope = n.id.to_string();
        let label = Self::label(n);
        let tags =
            BTreeMap::from([(TAG_CLUSTER.to_owned(), c.id.to_string()), (TAG_NODE.to_owned(), n.id.to_string())]);

        // The row exists before the provider call: a crash after the call finds it and
        // retries with the same token, which returns the same volume.
        let vol = store.node_volume(c, n).await?;
        let from_snapshot = self.restore_snapshot_ref(n).await?;
        job.step(c, &scope, &label, "create_volume", || async {
            let spec =
                VolumeSpec { name: n.name.clone(), size_gb: c.volume_gb as u32, server_id: None, tags: tags.clone() };
            let token = job.token(&scope, "volume");
            let v = match &from_snapshot {
                Some(snap) => self.provider.create_volume_from_snapshot(snap, &spec, &token).await?,
                None => self.provider.create_volume(&spec, &token).await?,
            };
            store.volume_created(vol.id, &v.id).await?;
            Ok(())
        })
        .await?;

        job.step(c, &scope, &label, "create_server", || async {
            let spec = ServerSpec {
                name: n.name.clone(),
                flavor: c.flavor.clone(),
                image: self.version.images.get(&c.provider).cloned(),
                authorized_key: self.key.public_key.clone(),
                tags: tags.clone(),
            };
            let s = self.provider.create_server(&spec, &job.token(&scope, "server")).await?;
            // A node removed meanwhile (the build was cancelled) is not recreated.
            current(store, n).await?;
            store.server_created(n.id, &s.id, s.address.map(|a| a.to_string()), s.host_key.clone(), vol.id).await?;
            Ok(())
        })
        .await?;

        job.step(c, &scope, &label, "attach_volume", || async {
            let n = current(store, n).await?;
            let v = store.node_volume(c, &n).await?;
            let (Some(vref), Some(sref)) = (v.provider_ref.clone(), n.server_ref.clone()) else {
                return Err(StepError::failed(FaultCode::InternalError, "volume or server missing before attach"));
            };
            let a = self.provider.attach_volume(&vref, &sref).await?;
            store.volume_attached(v.id, &encode_attachment(a.kind, &a.path)).await?;
            Ok(())
        })
        .await?;

        job.step(c, &scope, &label, "wait_ssh", || async {
            let n = current(store, n).await?;
            let server = self.provider.get_server(n.server_ref.as_deref().unwrap_or_default()).await?;
            let target = ssh_target(&server, &self.private_key, n.host_key.clone())?;
            let seen = self.manager.lifecycle.wait_reachable(&target, Duration::from_secs(120)).await?;
            if n.host_key.is_none() {
                // First contact with a cloud VM: trust and record, verify from now on.
                store.trust_host_key(n.id, &seen).await?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The spec of every node that has a server (nodes being built or removed included).
    pub async fn spec(&self) -> Result<ClusterSpec, StepError> {
        let store = &self.job.ctx.store;
        let nodes = store.nodes_of(self.cluster.id).await?;
        let vols = store.volumes_of(self.cluster.id).await?;
        let mut members = Vec::new();
        for n in &nodes {
            let v: Option<&Volume> = vols.iter().find(|v| v.node_id == Some(n.id));
            members.push(node_spec(self.provider.as_ref(), n, v, &self.private_key).await?);
        }
        let pw = store.cluster_passwords(&self.cluster).await?;
        let ctx = &self.job.ctx;
        let backup = ctx.backup_config(&self.cluster);
        let callback = ctx.callback_for(self.cluster.id, &members);
        let mut spec = cluster_spec(ctx, &self.cluster, &self.version, members, pw, callback, backup)?;
        spec.restore = self.restore_source().await?;
        Ok(spec)
    }

    /// The restore part of a build task's input, if any.
    fn restore_input(&self) -> Option<&RestoreInput> {
        match &self.job.input {
            TaskInput::CreateCluster(CreateInput { restore }) => restore.as_deref(),
            _ => None,
        }
    }

    /// The provider snapshot node `n`'s volume is made from: the cluster's first node
    /// when it is restored from a snapshot.
    async fn restore_snapshot_ref(&self, n: &Node) -> Result<Option<String>, StepError> {
        let Some(snap) = self.restore_input().and_then(|r| r.snapshot.as_ref()) else { return Ok(None) };
        let first = self.job.ctx.store.nodes_of(self.cluster.id).await?.into_iter().next();
        if first.is_none_or(|f| f.id != n.id) {
            return Ok(None);
        }
        Ok(Some(snap.provider_ref.clone()))
    }

    /// The backup or snapshot a new cluster starts from (the build task's input), if any.
    async fn restore_source(&self) -> Result<Option<RestoreSource>, StepError> {
        let Some(r) = self.restore_input() else { return Ok(None) };
        let ctx = &self.job.ctx;
        let from = herd_datastores::repo::for_backup(&ctx.backups, &ctx.state_dir, &r.repo, &r.stanza, ctx.store.key())
            .ok_or_else(|| {
                StepError::failed(
                    FaultCode::BackupsNotConfigured,
                    format!("the '{}' backup repository is not configured", r.repo),
                )
            })?;
        let snapshot = match &r.snapshot {
            None => None,
            Some(s) => {
                let first = self.job.ctx.store.nodes_of(self.cluster.id).await?.into_iter().next();
                let first =
                    first.ok_or_else(|| StepError::failed(FaultCode::InternalError, "the cluster has no node"))?;
                Some(SnapshotSource {
                    node_id: first.id,
                    source_name: s.source_name.clone(),
                    label: SnapshotLabel {
                        start_lsn: s.start_lsn.clone(),
                        stop_lsn: s.stop_lsn.clone(),
                        backup_label: s.backup_label.clone(),
                        tablespace_map: s.tablespace_map.clone(),
                    },
                })
            }
        };
        Ok(Some(RestoreSource { from, set: r.set.clone(), target_time: r.target_time, snapshot }))
    }

    async fn install(&self, spec: &ClusterSpec, m: &NodeSpec) -> Result<(), StepError> {
        let (job, c) = (self.job, &self.cluster);
        let scope = m.node_id.to_string();
        let label = format!("node {}", m.name);
        let mgr = &self.manager;
        job.step(c, &scope, &label, "prepare", || async {
            // The restore reads its source's stanza as this node's service user.
            if let Some(r) = &spec.restore {
                herd_datastores::repo::grant_read(&r.from, m.service_user.as_deref()).map_err(|e| {
                    StepError::failed(FaultCode::BackupRepoUnavailable, format!("restore source repository: {e}"))
                })?;
            }
            Ok(mgr.lifecycle.prepare(spec, m).await?)
        })
        .await?;
        job.step(c, &scope, &label, "configure", || async { Ok(mgr.lifecycle.configure(spec, m).await?) }).await?;
        job.step(c, &scope, &label, "start_etcd", || async { Ok(mgr.lifecycle.start_dcs(spec, m).await?) }).await?;
        Ok(())
    }

    async fn start_ha(&self, spec: &ClusterSpec, m: &NodeSpec) -> Result<(), StepError> {
        let scope = m.node_id.to_string();
        let label = format!("node {}", m.name);
        let mgr = &self.manager;
        self.job
            .step(&self.cluster, &scope, &label, "start_patroni", || async {
                Ok(mgr.lifecycle.start_ha(spec, m).await?)
            })
            .await?;
        Ok(())
    }

    async fn finish(&self, spec: &ClusterSpec) -> Result<(), StepError> {
        let (job, c, store) = (self.job, &self.cluster, &self.job.ctx.store);
        let mgr = &self.manager;
        let timeout = Duration::from_secs(job.ctx.settings.converge_timeout_secs);
        job.step(c, CLUSTER, "cluster", "wait_converged", || async {
            Ok(mgr.lifecycle.wait_converged(spec, timeout).await?)
        })
        .await?;
        job.step(c, CLUSTER, "cluster", "set_admin_password", || async {
            Ok(mgr.lifecycle.set_admin_password(spec).await?)
        })
        .await?;
        // Archiving runs from the first start; the stanza is created once a primary runs.
        job.step(c, CLUSTER, "cluster", "init_backups", || async {
            if let Some(b) = &spec.backup {
                herd_datastores::repo::ensure_posix_dir(b, spec.service_user()).map_err(|e| {
                    StepError::failed(FaultCode::BackupRepoUnavailable, format!("backup repository: {e}"))
                })?;
                mgr.backups.init_backups(spec).await?;
            }
            Ok(())
        })
        .await?;
        job.step(c, CLUSTER, "cluster", "finalize", || async {
            let health = mgr.lifecycle.health(spec).await?;
            for m in &spec.members {
                let h = health.nodes.iter().find(|h| h.name == m.name);
                let role = h.map_or(NodeRole::Unknown, |h| h.role);
                store
                    .record_node_ready(&NodeObservation {
                        node_id: m.node_id,
                        role,
                        status: NodeStatus::Running,
                        state: h.map(|h| h.state.clone()),
                        timeline: h.and_then(|h| h.timeline),
                        lag_bytes: h.and_then(|h| h.lag_bytes),
                        pending_restart: h.is_some_and(|h| h.pending_restart),
                        sync_standby: h.is_some_and(|h| h.sync_standby && h.role == NodeRole::Replica),
                        seen: h.is_some(),
                    })
                    .await?;
            }
            Ok(())
        })
        .await?;
        job.check_cancelled()?;
        match store.complete_build(job.task.id, &job.ctx.name, c.id, spec.tls.renew_at).await {
            Ok(()) => {}
            Err(herd_store::StoreError::NotFound) => return Err(StepError::Cancelled),
            Err(e) => return Err(e.into()),
        }
        store.log_event(c, Some(job.task.id), "info", None, "cluster is active").await?;
        Ok(())
    }
}

/// Re-reads a node: earlier steps of this run may have changed it.
async fn current(store: &herd_store::Store, n: &Node) -> Result<Node, StepError> {
    store.nodes_of(n.cluster_id).await?.into_iter().find(|x| x.id == n.id).ok_or(StepError::Cancelled)
}
