use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use herd_core::status::{TaskKind, TaskStatus};
use herd_store::StoreError;
use herd_store::entity::task;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Auth;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema, Clone)]
pub struct TaskError {
    pub code: String,
    pub message: String,
}

/// A unit of background work on a cluster.
#[derive(Serialize, ToSchema, Clone)]
pub struct TaskDto {
    pub id: Uuid,
    pub kind: TaskKind,
    pub cluster_id: Option<Uuid>,
    pub status: TaskStatus,
    /// The step running now, or the last one reached.
    pub step: Option<String>,
    /// 0–100.
    pub progress: i32,
    pub error: Option<TaskError>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<task::Model> for TaskDto {
    fn from(t: task::Model) -> Self {
        let error = t.error_code.map(|code| TaskError { code, message: t.error_message.unwrap_or_default() });
        Self {
            id: t.id,
            kind: t.kind,
            cluster_id: t.cluster_id,
            status: t.status,
            step: t.step,
            progress: t.progress,
            error,
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/tasks/{id}").route(web::get().to(get_task)));
}

/// Show a task's status and progress.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", params(("id" = Uuid, Path)), responses(
    (status = 200, body = TaskDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_task(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let t = state.store.get_task(auth.project_id, *id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("task"),
        e => e.into(),
    })?;
    Ok(HttpResponse::Ok().json(TaskDto::from(t)))
}
