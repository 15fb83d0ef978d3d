//! Deleting a cluster: wait for any cancelled work on it to stop, stop its services,
//! delete servers and volumes, then its rows. Every step tolerates "already gone", so
//! a retried or repeated delete converges.

use herd_core::faults::FaultCode;
use herd_core::status::ClusterStatus;
use herd_providers::{ProviderError, TAG_CLUSTER};
use std::time::{Duration, Instant};

use crate::spec::{cluster_spec, node_spec};
use crate::steps::{Job, StepError};

pub async fn run(job: &Job) -> Result<(), StepError> {
    let ctx = &job.ctx;
    let store = &ctx.store;
    let Some(cluster_id) = job.task.cluster_id else { return Ok(()) };
    let cluster = match store.cluster_by_id(cluster_id).await {
        Ok(c) => c,
        Err(herd_store::StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if cluster.status != ClusterStatus::Deleting {
        store.set_cluster_state(cluster.id, ClusterStatus::Deleting, None).await?;
    }

    // A cancelled build may still be inside a provider call: wait until its worker
    // lets go (or is presumed dead), so nothing is created after we look.
    let stale = chrono::Duration::seconds(ctx.settings.stale_after_secs as i64);
    let deadline = Instant::now() + Duration::from_secs(ctx.settings.stale_after_secs + 60);
    loop {
        let busy = store.busy_tasks(cluster.id, job.task.id, stale).await?;
        if busy.is_empty() {
            break;
        }
        job.check_cancelled()?;
        if Instant::now() > deadline {
            return Err(StepError::Transient(format!("task {} still runs on this cluster", busy[0].id)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let provider = ctx.providers.get(&cluster.provider).ok_or_else(|| {
        StepError::failed(FaultCode::ProviderUnavailable, format!("provider '{}' is not configured", cluster.provider))
    })?;
    let nodes = store.nodes_of(cluster.id).await?;
    let vols = store.volumes_of(cluster.id).await?;

    // Stop services first (best effort, bounded): a clean Patroni shutdown. Servers
    // that are gone or unreachable are simply deleted below.
    if let (Ok(ds), Ok(version), Ok((_, key)), Ok(pw)) = (
        store.get_datastore(&cluster.datastore).await,
        store.get_version(&cluster.datastore, &cluster.version).await,
        store.cluster_private_key(&cluster).await,
        store.cluster_passwords(&cluster).await,
    ) && let Some(mgr) = ctx.managers.get(&ds.manager)
    {
        let mut members = Vec::new();
        for n in nodes.iter().filter(|n| n.server_ref.is_some()) {
            let v = vols.iter().find(|v| v.node_id == Some(n.id));
            if let Ok(m) = node_spec(provider.as_ref(), n, v, &key).await {
                members.push(m);
            }
        }
        // Best effort like the rest of this block: a spec that cannot be built (TLS
        // issuing failed) skips the clean stop, never the deletion.
        match cluster_spec(&job.ctx, &cluster, &version, members, pw, None, None) {
            Ok(spec) => {
                let stops = spec.members.iter().map(|m| async {
                    match tokio::time::timeout(Duration::from_secs(20), mgr.lifecycle.stop_node(&spec, m)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(node = %m.name, error = %e, "stopping services failed; deleting anyway")
                        }
                        Err(_) => tracing::warn!(node = %m.name, "stopping services timed out; deleting anyway"),
                    }
                });
                futures_util::future::join_all(stops).await;
            }
            Err(e) => tracing::warn!(error = ?e, "cannot build the cluster spec; deleting without stopping services"),
        }
    }

    for n in &nodes {
        if let Some(server) = &n.server_ref {
            let scope = n.id.to_string();
            job.step(&cluster, &scope, &format!("node {}", n.name), "delete_server", || async {
                gone_ok(provider.delete_server(server).await)
            })
            .await?;
        }
    }
    // A server the provider made but no row records (the build was cut off between
    // the provider's answer and the write) still carries the cluster's tag.
    let tags = std::collections::BTreeMap::from([(TAG_CLUSTER.to_owned(), cluster.id.to_string())]);
    let known: Vec<&str> = nodes.iter().filter_map(|n| n.server_ref.as_deref()).collect();
    for s in provider.list_servers(&tags).await?.into_iter().filter(|s| !known.contains(&s.id.as_str())) {
        tracing::warn!(cluster = %cluster.id, server = %s.id, "deleting an unrecorded server of the cluster");
        gone_ok(provider.delete_server(&s.id).await)?;
    }
    for v in &vols {
        if let Some(vref) = &v.provider_ref {
            let scope = v.id.to_string();
            job.step(&cluster, &scope, &format!("volume {}", v.id), "delete_volume", || async {
                if let (Some(server), Some(_)) =
                    (nodes.iter().find(|n| Some(n.id) == v.node_id).and_then(|n| n.server_ref.clone()), &v.attachment)
                {
                    gone_ok(provider.detach_volume(vref, &server).await)?;
                }
                gone_ok(provider.delete_volume(vref).await)
            })
            .await?;
        }
    }
    store.purge_cluster(cluster.id).await?;
    tracing::info!(cluster = %cluster.id, "cluster deleted");
    Ok(())
}

fn gone_ok(r: Result<(), ProviderError>) -> Result<(), StepError> {
    match r {
        Ok(()) | Err(ProviderError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
