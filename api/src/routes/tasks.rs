use actix_web::{HttpResponse, web};
use herd_store::StoreError;
use herd_store::Task;
use herd_types::{TaskDto, TaskError};
use uuid::Uuid;

use super::IntoDto;

use crate::auth::Auth;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

impl super::IntoDto for Task {
    type Dto = TaskDto;
    fn into_dto(self) -> TaskDto {
        let t = self;
        let error = t.error_code.map(|code| TaskError { code, message: t.error_message.unwrap_or_default() });
        TaskDto {
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

pub fn routes(t: &mut super::Table) {
    t.add::<__path_get_task>(web::to(get_task));
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
    Ok(HttpResponse::Ok().json(t.into_dto()))
}
