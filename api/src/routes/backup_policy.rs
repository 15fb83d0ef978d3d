//! A cluster's backup policy: cron schedules (UTC) for full, differential and
//! incremental backups, run by the workers' scheduler, and the retention applied after
//! every full backup. Setting it is a Herd-only change (no task): it takes effect at
//! once, in any state but `deleting`.

use actix_web::{HttpResponse, web};
use herd_core::schedule::CronSchedule;
use herd_store::BackupPolicy;
use herd_store::PolicySpec;
use herd_types::{BackupPolicyDto, BackupPolicyRequest};
use uuid::Uuid;

use super::IntoDto;
use super::common::not_found;
use crate::auth::Auth;
use crate::error::{ApiError, ErrorCode, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

/// Most full backups a policy may keep.
pub const MAX_RETENTION_FULL: i64 = 1000;

impl IntoDto for BackupPolicy {
    type Dto = BackupPolicyDto;
    fn into_dto(self) -> BackupPolicyDto {
        let p = self;
        BackupPolicyDto {
            cluster_id: p.cluster_id,
            full_schedule: p.full_schedule,
            diff_schedule: p.diff_schedule,
            incremental_schedule: p.incr_schedule,
            retention_full: p.retention_full,
            next_full_at: p.next_full_at,
            next_diff_at: p.next_diff_at,
            next_incremental_at: p.next_incr_at,
            waiting_since: p.waiting_since,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_get_policy>(web::to(get_policy));
    t.add::<__path_put_policy>(web::to(put_policy));
    t.add::<__path_delete_policy>(web::to(delete_policy));
}

/// Validates a request, reporting every invalid field at once.
fn spec_of(req: &BackupPolicyRequest) -> Result<PolicySpec, ApiError> {
    let full = CronSchedule::parse(&req.full_schedule);
    let diff = req.diff_schedule.as_deref().map(CronSchedule::parse).transpose();
    let incr = req.incremental_schedule.as_deref().map(CronSchedule::parse).transpose();
    let mut errs = Errors::default();
    for (field, e) in [
        ("full_schedule", full.as_ref().err()),
        ("diff_schedule", diff.as_ref().err()),
        ("incremental_schedule", incr.as_ref().err()),
    ] {
        if let Some(e) = e {
            errs.add(field, e.clone());
        }
    }
    if !(1..=MAX_RETENTION_FULL).contains(&req.retention_full) {
        errs.add("retention_full", format!("must be from 1 to {MAX_RETENTION_FULL} (full backups kept)"));
    }
    errs.into_result()?;
    match (full, diff, incr) {
        (Ok(full), Ok(diff), Ok(incr)) => {
            Ok(PolicySpec { full, diff, incr, retention_full: req.retention_full as i32 })
        }
        _ => unreachable!("every parse error was reported above"),
    }
}

/// Set or replace a cluster's backup policy; its schedules start from now.
#[utoipa::path(put, path = "/v1/clusters/{id}/backup-policy", tag = "backups", params(("id" = Uuid, Path)),
    request_body = BackupPolicyRequest, responses(
    (status = 200, body = BackupPolicyDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json",
        description = "`validation_failed` (with the invalid fields) or `backups_not_configured`"),
))]
pub async fn put_policy(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<BackupPolicyRequest>,
) -> Result<HttpResponse, ApiError> {
    let v = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    let spec = spec_of(&req)?;
    if state.backup_config(&v.cluster).is_none() {
        return Err(ApiError::new(
            ErrorCode::BackupsNotConfigured,
            format!(
                "no backup repository is configured for provider '{}', so cluster {} cannot have a backup policy",
                v.cluster.provider, v.cluster.id
            ),
        ));
    }
    let (p, _) = state.store.put_backup_policy(auth.project_id, *id, &spec).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(p.into_dto()))
}

/// A cluster's backup policy; 404 when it has none.
#[utoipa::path(get, path = "/v1/clusters/{id}/backup-policy", tag = "backups", params(("id" = Uuid, Path)),
    responses(
    (status = 200, body = BackupPolicyDto),
    (status = 404, body = Problem, content_type = "application/problem+json",
        description = "No such cluster, or it has no backup policy (`not_found`)"),
))]
pub async fn get_policy(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    match state.store.get_backup_policy(auth.project_id, *id).await.map_err(not_found)? {
        Some(p) => Ok(HttpResponse::Ok().json(p.into_dto())),
        None => Err(ApiError::new(ErrorCode::NotFound, format!("cluster {id} has no backup policy"))),
    }
}

/// Remove a cluster's backup policy: no more scheduled backups and no retention.
/// Existing backups stay. 204 also when it had none.
#[utoipa::path(delete, path = "/v1/clusters/{id}/backup-policy", tag = "backups", params(("id" = Uuid, Path)),
    responses(
    (status = 204, description = "The cluster has no backup policy (any more)"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_policy(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.store.delete_backup_policy(auth.project_id, *id).await.map_err(not_found)?;
    Ok(HttpResponse::NoContent().finish())
}
