//! Backups (pgBackRest): take, list, show, expire; a cluster's recovery window; and the
//! validation of a restore request. Backups outlive their cluster.

use actix_web::{HttpResponse, web};
use herd_core::status::BackupType;
use herd_datastores::repo;
use herd_store::Backup;
use herd_store::StoreError;
use herd_types::{BackupDto, BackupRequest, CreatedBackup, RecoveryWindowDto, TaskRef};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::common::not_found;
use super::{IntoDto, Page};
use crate::auth::Auth;
use crate::error::{ApiError, ErrorCode, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

impl IntoDto for Backup {
    type Dto = BackupDto;
    fn into_dto(self) -> BackupDto {
        let b = self;
        BackupDto {
            id: b.id,
            cluster_id: b.cluster_id,
            backup_type: b.backup_type,
            status: b.status,
            label: b.label,
            size_bytes: b.size_bytes,
            repo_size_bytes: b.repo_size_bytes,
            started_at: b.started_at,
            finished_at: b.finished_at,
            wal_start: b.wal_start,
            wal_stop: b.wal_stop,
            repository: repo::recorded_kind(&b.repo).to_owned(),
            encrypted: repo::recorded_encrypted(&b.repo),
            error: b.error,
            task_id: b.task_id,
            created_at: b.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListBackupsQuery {
    #[param(value_type = Option<Uuid>)]
    pub cluster_id: Option<String>,
    /// 1–100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_create_backup>(web::to(create_backup));
    t.add::<__path_recovery_window>(web::to(recovery_window));
    t.add::<__path_list_backups>(web::to(list_backups));
    t.add::<__path_get_backup>(web::to(get_backup));
    t.add::<__path_expire_backup>(web::to(expire_backup));
}

/// Take a backup of a running cluster from its primary.
#[utoipa::path(post, path = "/v1/clusters/{id}/backups", tag = "backups", params(("id" = Uuid, Path)),
    request_body = BackupRequest, responses(
    (status = 202, body = CreatedBackup),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_backup(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<BackupRequest>,
) -> Result<HttpResponse, ApiError> {
    let v = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    let Some(config) = state.backup_config(&v.cluster) else {
        return Err(ApiError::new(
            ErrorCode::BackupsNotConfigured,
            format!("no backup repository is configured for provider '{}'", v.cluster.provider),
        ));
    };
    let (b, t) = state
        .store
        .request_backup(
            auth.project_id,
            *id,
            req.backup_type.unwrap_or(BackupType::Full),
            repo::record(&config),
            &config.stanza,
        )
        .await
        .map_err(not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(CreatedBackup { backup: b.into_dto(), task_id: t.id }))
}

/// The project's backups, oldest first; `cluster_id` filters (deleted clusters too).
#[utoipa::path(get, path = "/v1/backups", tag = "backups", params(ListBackupsQuery), responses(
    (status = 200, body = Page<BackupDto>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_backups(
    auth: Auth,
    state: web::Data<AppState>,
    q: web::Query<ListBackupsQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    let cluster = q.cluster_id.as_deref().and_then(|c| errs.check("cluster_id", Uuid::parse_str(c)));
    let (limit, cursor) = super::page_params(q.limit.as_deref(), q.cursor.as_deref(), &mut errs);
    errs.into_result()?;
    let page = state.store.list_backups(auth.project_id, cluster, limit, cursor).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.into_iter().map(IntoDto::into_dto).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

fn backup_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("backup"),
        e => e.into(),
    }
}

/// Show a backup.
#[utoipa::path(get, path = "/v1/backups/{id}", tag = "backups", params(("id" = Uuid, Path)), responses(
    (status = 200, body = BackupDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_backup(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let b = state.store.get_backup(auth.project_id, *id).await.map_err(backup_not_found)?;
    Ok(HttpResponse::Ok().json(b.into_dto()))
}

/// Expire a backup: it is removed from the repository (with the WAL only it needed).
#[utoipa::path(delete, path = "/v1/backups/{id}", tag = "backups", params(("id" = Uuid, Path)), responses(
    (status = 202, body = TaskRef),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub async fn expire_backup(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let t = state.store.request_expire(auth.project_id, *id).await.map_err(backup_not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(TaskRef { task_id: t.id }))
}

/// Earliest and latest restorable times of a cluster (from its backup repository).
#[utoipa::path(get, path = "/v1/clusters/{id}/recovery-window", tag = "backups", params(("id" = Uuid, Path)),
    responses(
    (status = 200, body = RecoveryWindowDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn recovery_window(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let v = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    let backups = state.store.completed_backups(auth.project_id, *id).await?;
    let Some(b) = backups.last() else {
        return Ok(HttpResponse::Ok().json(RecoveryWindowDto { earliest: None, latest: None }));
    };
    let ds = state.store.get_datastore(&v.cluster.datastore).await?;
    let w = window_of(&state, &ds.manager, b).await?;
    Ok(HttpResponse::Ok()
        .json(RecoveryWindowDto { earliest: w.as_ref().map(|w| w.earliest), latest: w.map(|w| w.latest) }))
}

/// The restorable window of the stanza a backup is in, read by the datastore's
/// manager from the repository the backup names.
pub(crate) async fn window_of(
    state: &AppState,
    manager: &str,
    b: &Backup,
) -> Result<Option<herd_datastores::RecoveryWindow>, ApiError> {
    let (Some(config), Some(mgr)) = (
        repo::for_backup(
            &state.backups,
            &state.state_dir,
            &b.repo,
            b.stanza.as_deref().unwrap_or_default(),
            state.store.key(),
        ),
        state.managers.get(manager),
    ) else {
        return Err(ApiError::new(ErrorCode::BackupsNotConfigured, "the backup repository is not configured"));
    };
    mgr.backups.recovery_window(&config).await.map_err(|e| {
        tracing::warn!(cluster = %b.cluster_id, error = %e, "reading the recovery window failed");
        ApiError::new(ErrorCode::Unavailable, "the backup repository could not be read")
    })
}
