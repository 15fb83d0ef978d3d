use actix_web::{HttpResponse, web};
use herd_types::{Health, ProblemType};

use crate::error::{ApiError, ErrorCode, Problem};
use crate::state::AppState;

pub fn routes(t: &mut super::Table) {
    t.add::<__path_healthz>(web::to(healthz));
    t.add::<__path_readyz>(web::to(readyz));
    t.add::<__path_problem_type>(web::to(problem_type));
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok".into() })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()), responses(
    (status = 200, body = Health),
    (status = 503, body = Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(ErrorCode::Unavailable, "the database is not reachable")
    })?;
    Ok(HttpResponse::Ok().json(Health { status: "ok".into() }))
}

/// Describes a problem type: the target of every error's `type` URI.
#[utoipa::path(get, path = "/problems/{code}", tag = "health", security(()),
    params(("code" = String, Path, description = "An error code, e.g. validation_failed")),
    responses((status = 200, body = ProblemType), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn problem_type(code: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let c = ErrorCode::parse(&code).ok_or_else(|| ApiError::not_found("problem type"))?;
    Ok(HttpResponse::Ok().json(ProblemType { code: c, status: c.status(), title: c.title().into() }))
}
