//! Snapshot tasks: the primary's data volume copied by the provider while the
//! datastore holds an online backup open, and the deletion of a snapshot.
//!
//! A snapshot step cannot reuse an idempotency token across attempts: a provider
//! snapshot made during an aborted backup is not restorable. So every attempt uses a
//! fresh token, records the provider's snapshot as soon as it exists, and a retry (or
//! a worker taking the task over) deletes what the previous attempt left first.

use crate::report::OrWarn;
use herd_core::faults::FaultCode;
use herd_core::status::{NodeRole, SnapshotStatus};
use herd_providers::{ProviderError, SnapshotSpec, TAG_CLUSTER};
use herd_store::SnapshotResult;
use std::collections::BTreeMap;
use uuid::Uuid;

use crate::create::Build;
use crate::day2::running_spec;
use crate::steps::{Job, StepError};

pub async fn run_snapshot(job: &Job, snapshot_id: Uuid) -> Result<(), StepError> {
    let result = take(job, snapshot_id).await;
    if let Err(e) = &result {
        let msg = match e {
            StepError::Failed { message, .. } | StepError::Transient(message) => message.clone(),
            StepError::Cancelled => "cancelled".to_owned(),
        };
        job.ctx
            .store
            .set_snapshot_status(snapshot_id, SnapshotStatus::Error, None, Some(&msg))
            .await
            .or_warn("snapshot status");
    }
    result
}

async fn take(job: &Job, snapshot_id: Uuid) -> Result<(), StepError> {
    let store = &job.ctx.store;
    let b = Build::load(job).await?;
    let (spec, nodes) = running_spec(&b).await?;
    if spec.backup.is_none() {
        return Err(StepError::failed(FaultCode::BackupsNotConfigured, "a snapshot needs the cluster's WAL archive"));
    }
    let mgr = &b.manager;
    let provider = b.provider.as_ref();
    let label = format!("herd-snap-{}", snapshot_id.simple());
    let c = &b.cluster;
    let done = job
        .step(c, "cluster", "cluster", "snapshot", || async {
            // What an earlier attempt made is useless now: its backup was aborted.
            if let Some(old) = store.snapshot_by_id(snapshot_id).await?.provider_ref {
                match provider.delete_snapshot(&old).await {
                    Ok(()) | Err(ProviderError::NotFound(_)) => store.set_snapshot_ref(snapshot_id, None).await?,
                    Err(e) => return Err(e.into()),
                }
            }
            let leader = mgr.lifecycle.health(&spec).await?.leader;
            let primary = nodes
                .iter()
                .find(|n| Some(&n.name) == leader.as_ref() || (leader.is_none() && n.role == NodeRole::Primary))
                .ok_or_else(|| StepError::Transient(format!("cluster {} has no running primary", c.name)))?;
            let member = spec
                .members
                .iter()
                .find(|m| m.node_id == primary.id)
                .ok_or_else(|| StepError::Transient(format!("{} is not a running member", primary.name)))?;
            let volume =
                store.volumes_of(c.id).await?.into_iter().find(|v| v.node_id == Some(primary.id)).ok_or_else(|| {
                    StepError::failed(FaultCode::NoVolume, format!("{} has no data volume", primary.name))
                })?;
            let vref = volume.provider_ref.clone().ok_or_else(|| {
                StepError::failed(FaultCode::NoVolume, format!("{}'s volume was never created", primary.name))
            })?;

            let held = mgr.snapshots.begin_snapshot(&spec, member, &label).await?;
            let tags = BTreeMap::from([
                (TAG_CLUSTER.to_owned(), c.id.to_string()),
                ("herd:snapshot".to_owned(), snapshot_id.to_string()),
            ]);
            let sspec = SnapshotSpec { name: format!("{}-{}", c.name, primary.name), tags };
            let token = format!("{}-{}", snapshot_id.simple(), Uuid::new_v4().simple());
            let snap = match provider.snapshot_volume(&vref, &sspec, &token).await {
                Ok(s) => s,
                // Dropping `held` ends the backup session.
                Err(e) => return Err(e.into()),
            };
            store.set_snapshot_ref(snapshot_id, Some(&snap.id)).await?;
            let l = match held.finish().await {
                Ok(l) => l,
                Err(e) => {
                    // Not restorable without its label: remove it now rather than on retry.
                    if provider.delete_snapshot(&snap.id).await.is_ok() {
                        store.set_snapshot_ref(snapshot_id, None).await?;
                    }
                    return Err(e.into());
                }
            };
            store
                .set_snapshot_status(
                    snapshot_id,
                    SnapshotStatus::Available,
                    Some(SnapshotResult {
                        provider_ref: snap.id,
                        size_gb: i32::try_from(snap.size_gb).unwrap_or(i32::MAX),
                        volume_id: volume.id,
                        start_lsn: l.start_lsn,
                        stop_lsn: l.stop_lsn.clone(),
                        backup_label: l.backup_label,
                        tablespace_map: l.tablespace_map,
                    }),
                    None,
                )
                .await?;
            Ok(l.stop_lsn)
        })
        .await?;
    if let Some(stop) = done {
        store
            .log_event(c, Some(job.task.id), "info", Some("snapshot"), &format!("snapshot taken, consistent at {stop}"))
            .await?;
    }
    Ok(())
}

pub async fn run_delete(job: &Job, snapshot_id: Uuid) -> Result<(), StepError> {
    let ctx = &job.ctx;
    let s = match ctx.store.snapshot_by_id(snapshot_id).await {
        Ok(s) => s,
        // Deleted by an earlier run of this task.
        Err(herd_store::StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let provider = ctx.providers.get(&s.provider).ok_or_else(|| {
        StepError::failed(FaultCode::ProviderUnavailable, format!("provider '{}' is not configured", s.provider))
    })?;
    if let Some(r) = &s.provider_ref {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(ctx.settings.step_retry_secs);
        let mut backoff = std::time::Duration::from_millis(500);
        loop {
            match provider.delete_snapshot(r).await {
                Ok(()) | Err(ProviderError::NotFound(_)) => break,
                Err(e) if e.is_retryable() && std::time::Instant::now() < deadline => {
                    tracing::info!(snapshot = %s.id, error = %e, "snapshot deletion failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) => {
                    let msg = e.to_string();
                    ctx.store
                        .set_snapshot_status(s.id, SnapshotStatus::Error, None, Some(&msg))
                        .await
                        .or_warn("snapshot status");
                    return Err(e.into());
                }
            }
        }
    }
    ctx.store.remove_snapshot(s.id).await?;
    if let Some(cid) = s.cluster_id
        && let Ok(c) = ctx.store.cluster_by_id(cid).await
    {
        ctx.store
            .log_event(&c, Some(job.task.id), "info", Some("delete_snapshot"), "snapshot deleted")
            .await
            .or_warn("event");
    }
    Ok(())
}
