//! Volume snapshots: the primary's data volume copied by the provider while an online
//! backup is held open (`pg_backup_start` … `pg_backup_stop`), so a new cluster can
//! start from it. Like backups, snapshots outlive their cluster.

use actix_web::{HttpResponse, web};
use herd_datastores::repo;
use herd_store::Snapshot;
use herd_store::StoreError;
use herd_types::{CreatedSnapshot, SnapshotDto, SnapshotRequest, TaskRef};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::common::not_found;
use super::{IntoDto, Page};
use crate::auth::Auth;
use crate::error::{ApiError, ErrorCode, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

impl IntoDto for Snapshot {
    type Dto = SnapshotDto;
    fn into_dto(self) -> SnapshotDto {
        let s = self;
        SnapshotDto {
            id: s.id,
            cluster_id: s.cluster_id,
            status: s.status,
            provider: s.provider,
            size_gb: s.size_gb,
            datastore: s.datastore,
            version: s.version,
            start_lsn: s.start_lsn,
            stop_lsn: s.stop_lsn,
            error: s.error,
            task_id: s.task_id,
            created_at: s.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSnapshotsQuery {
    #[param(value_type = Option<Uuid>)]
    pub cluster_id: Option<String>,
    /// 1–100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_create_snapshot>(web::to(create_snapshot));
    t.add::<__path_list_snapshots>(web::to(list_snapshots));
    t.add::<__path_get_snapshot>(web::to(get_snapshot));
    t.add::<__path_delete_snapshot>(web::to(delete_snapshot));
}

/// Snapshot the primary's data volume inside an online backup.
#[utoipa::path(post, path = "/v1/clusters/{id}/snapshots", tag = "snapshots", params(("id" = Uuid, Path)),
    request_body = SnapshotRequest, responses(
    (status = 202, body = CreatedSnapshot),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_snapshot(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(_req): JsonBody<SnapshotRequest>,
) -> Result<HttpResponse, ApiError> {
    let v = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    let provider = state.providers.get(&v.cluster.provider);
    if !provider.as_ref().is_some_and(|p| p.capabilities().snapshots) {
        return Err(ApiError::new(
            ErrorCode::SnapshotsUnsupported,
            format!("provider '{}' cannot snapshot volumes; take a backup instead", v.cluster.provider),
        ));
    }
    // A snapshot taken inside an online backup needs the WAL archived meanwhile.
    let Some(config) = state.backup_config(&v.cluster) else {
        return Err(ApiError::new(
            ErrorCode::BackupsNotConfigured,
            "a snapshot needs the cluster's WAL archive, and no backup repository is configured",
        ));
    };
    let (s, t) = state
        .store
        .request_snapshot(auth.project_id, *id, repo::record(&config), &config.stanza)
        .await
        .map_err(not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(CreatedSnapshot { snapshot: s.into_dto(), task_id: t.id }))
}

/// The project's snapshots, oldest first; `cluster_id` filters (deleted clusters too).
#[utoipa::path(get, path = "/v1/snapshots", tag = "snapshots", params(ListSnapshotsQuery), responses(
    (status = 200, body = Page<SnapshotDto>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_snapshots(
    auth: Auth,
    state: web::Data<AppState>,
    q: web::Query<ListSnapshotsQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    let cluster = q.cluster_id.as_deref().and_then(|c| errs.check("cluster_id", Uuid::parse_str(c)));
    let (limit, cursor) = super::page_params(q.limit.as_deref(), q.cursor.as_deref(), &mut errs);
    errs.into_result()?;
    let page = state.store.list_snapshots(auth.project_id, cluster, limit, cursor).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.into_iter().map(IntoDto::into_dto).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

fn snapshot_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("snapshot"),
        e => e.into(),
    }
}

/// Show a snapshot.
#[utoipa::path(get, path = "/v1/snapshots/{id}", tag = "snapshots", params(("id" = Uuid, Path)), responses(
    (status = 200, body = SnapshotDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_snapshot(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let s = state.store.get_snapshot(auth.project_id, *id).await.map_err(snapshot_not_found)?;
    Ok(HttpResponse::Ok().json(s.into_dto()))
}

/// Delete a snapshot at its provider.
#[utoipa::path(delete, path = "/v1/snapshots/{id}", tag = "snapshots", params(("id" = Uuid, Path)), responses(
    (status = 202, body = TaskRef),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_snapshot(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let t = state.store.request_delete_snapshot(auth.project_id, *id).await.map_err(snapshot_not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(TaskRef { task_id: t.id }))
}
