//! Whether a new cluster can start from a backup (point in time included) or a
//! snapshot: the checks, and the build task's restore input they produce.

use herd_core::task::{RestoreInput, SnapshotRestore};
use herd_store::StoreError;
use herd_types::{RestoreRequest, SnapshotStatus};
use uuid::Uuid;

use crate::error::{ApiError, Errors};
use crate::routes::backups::window_of;
use crate::state::AppState;

/// What the new cluster needs to match to start from snapshot `id`.
pub struct RestoreTarget<'a> {
    pub datastore: &'a str,
    pub version: &'a str,
    pub provider: Option<&'a str>,
}

/// Checks a restore request against the source's backups or snapshot; returns the
/// build task's input (repository, stanza, backup label, target time; or the
/// snapshot) and, for a snapshot, the smallest volume it fits on.
pub async fn check_restore(
    state: &AppState,
    project_id: Uuid,
    r: &RestoreRequest,
    target: &super::restore::RestoreTarget<'_>,
    errs: &mut Errors,
) -> Result<Option<(RestoreInput, Option<u32>)>, ApiError> {
    let source = match (r.source_cluster_id, r.snapshot_id) {
        (Some(_), Some(_)) => {
            errs.add("restore", "name either source_cluster_id or snapshot_id, not both");
            return Ok(None);
        }
        (None, None) => {
            errs.add("restore", "needs source_cluster_id (backups) or snapshot_id");
            return Ok(None);
        }
        (None, Some(id)) => {
            if r.backup_id.is_some() {
                errs.add("restore.backup_id", "is not used with snapshot_id");
            }
            if r.target_time.is_some() {
                errs.add("restore.target_time", "is not used with snapshot_id: a snapshot restores as it was taken");
            }
            let checked = check_snapshot_restore(state, project_id, id, target, errs).await?;
            return Ok(checked.map(|(input, size)| (input, Some(size))));
        }
        (Some(c), None) => c,
    };
    let backups = state.store.completed_backups(project_id, source).await?;
    let Some(first) = backups.first() else {
        errs.add("restore.source_cluster_id", "has no completed backup in this project");
        return Ok(None);
    };
    let chosen = match r.backup_id {
        Some(id) => match backups.iter().find(|b| b.id == id) {
            Some(b) => Some(b),
            None => {
                errs.add("restore.backup_id", "is not a completed backup of the source cluster");
                return Ok(None);
            }
        },
        None => None,
    };
    let b = chosen.unwrap_or(first);
    if let Some(t) = r.target_time {
        // Consistency is reached at the end of a backup, and recovery to a time stops
        // only at a later archived commit: outside the window the restore cannot work.
        // The restored cluster must run the source's datastore: its manager reads it.
        let window = match state.store.get_datastore(target.datastore).await {
            Ok(ds) => window_of(state, &ds.manager, b).await?,
            // Reported by the caller's datastore check.
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let earliest = window.as_ref().map(|w| w.earliest).into_iter().chain(chosen.and_then(|c| c.finished_at)).max();
        match (earliest, window.map(|w| w.latest)) {
            (Some(e), _) if t < e => errs.add(
                "restore.target_time",
                format!("is before the recovery window, which starts at {}", e.to_rfc3339()),
            ),
            (_, Some(l)) if t >= l => errs.add(
                "restore.target_time",
                format!(
                    "is not before the last archived commit ({}); omit target_time to restore everything",
                    l.to_rfc3339()
                ),
            ),
            (None, _) | (_, None) => errs.add("restore.target_time", "the source has no restorable backup"),
            _ => {}
        }
    }
    let Some(stanza) = b.stanza.clone() else {
        errs.add("restore.source_cluster_id", "its backups record no stanza");
        return Ok(None);
    };
    let input = RestoreInput {
        repo: b.repo.clone(),
        stanza,
        set: chosen.and_then(|b| b.label.clone()),
        target_time: r.target_time,
        source_cluster_id: Some(source),
        snapshot: None,
    };
    Ok(Some((input, None)))
}

/// Checks a restore from a snapshot; returns the build task's input and the
/// snapshot's size (the new cluster's volumes must be at least as large).
pub async fn check_snapshot_restore(
    state: &AppState,
    project_id: Uuid,
    id: Uuid,
    target: &RestoreTarget<'_>,
    errs: &mut Errors,
) -> Result<Option<(RestoreInput, u32)>, ApiError> {
    let s = match state.store.get_snapshot(project_id, id).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => {
            errs.add("restore.snapshot_id", "no such snapshot in this project");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if s.status != SnapshotStatus::Available {
        errs.add("restore.snapshot_id", format!("the snapshot is {}; only an available one can be restored", s.status));
        return Ok(None);
    }
    if s.datastore.as_deref() != Some(target.datastore) || s.version.as_deref() != Some(target.version) {
        errs.add(
            "restore.snapshot_id",
            format!(
                "the snapshot holds {} {}, not {} {}",
                s.datastore.as_deref().unwrap_or("?"),
                s.version.as_deref().unwrap_or("?"),
                target.datastore,
                target.version
            ),
        );
    }
    if target.provider.is_some_and(|p| p != s.provider) {
        errs.add(
            "restore.snapshot_id",
            format!("the snapshot lives at provider '{}': create the cluster there", s.provider),
        );
    }
    let (Some(repo), Some(stanza), Some(provider_ref)) = (s.repo.clone(), s.stanza.clone(), s.provider_ref.clone())
    else {
        errs.add("restore.snapshot_id", "the snapshot records no backup repository or provider reference");
        return Ok(None);
    };
    // Everything the build needs, so it does not depend on the row staying.
    let input = RestoreInput {
        repo,
        stanza,
        set: None,
        target_time: None,
        source_cluster_id: s.cluster_id,
        snapshot: Some(SnapshotRestore {
            snapshot_id: s.id,
            provider_ref,
            source_name: s.source_name.clone().unwrap_or_default(),
            start_lsn: s.start_lsn.clone().unwrap_or_default(),
            stop_lsn: s.stop_lsn.clone().unwrap_or_default(),
            backup_label: s.backup_label.clone().unwrap_or_default(),
            tablespace_map: s.tablespace_map.clone().unwrap_or_default(),
        }),
    };
    Ok(Some((input, s.size_gb.max(1) as u32)))
}
