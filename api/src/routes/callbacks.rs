//! Patroni's `on_role_change` callback: a member reports its new role at once, so the
//! API shows the new primary before the next health poll.

use actix_web::{HttpRequest, HttpResponse, web};
use herd_core::hooks::CALLBACK_PURPOSE;
use herd_core::status::NodeRole;
use herd_store::StoreError;
use herd_types::RoleCallback;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

/// Outside /v1: nodes authenticate with a per-cluster token, not an API token.
pub fn routes(t: &mut super::Table) {
    t.add::<__path_role_callback>(web::to(role_callback));
}

/// Called by a cluster's nodes when a member's role changes (Patroni's
/// `on_role_change`). Authenticated by a per-cluster token Herd writes to the nodes,
/// not by an API token.
#[utoipa::path(post, path = "/callbacks/patroni/{cluster_id}", tag = "clusters",
    security(("patroni_callback" = [])),
    params(("cluster_id" = Uuid, Path)), request_body = RoleCallback, responses(
    (status = 204),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn role_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(body): JsonBody<RoleCallback>,
) -> Result<HttpResponse, ApiError> {
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !state.store.key().verify_token(CALLBACK_PURPOSE, &id.to_string(), presented) {
        return Err(ApiError::new(ErrorCode::Unauthorized, "not a valid callback token for this cluster"));
    }
    let cluster = state.store.cluster_by_id(*id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("cluster member"),
        e => e.into(),
    })?;
    // The HA agent's role names are the datastore manager's to read.
    let ds = state.store.get_datastore(&cluster.datastore).await?;
    let role =
        state.managers.get(&ds.manager).map(|m| m.profile.callback_role(&body.role)).unwrap_or(NodeRole::Unknown);
    let member: String = body.member.chars().filter(|c| !c.is_control()).take(100).collect();
    let action: String = body.action.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
    let detail = format!("{member} reports role {role} ({action})");
    tracing::info!(cluster = %id, %member, %role, "role change reported by the HA agent");
    state.store.record_role_callback(*id, &member, role, &detail).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("cluster member"),
        e => e.into(),
    })?;
    Ok(HttpResponse::NoContent().finish())
}
