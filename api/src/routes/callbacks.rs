//! Patroni's `on_role_change` callback: a member reports its new role at once, so the
//! API shows the new primary before the next health poll.

use actix_web::{HttpRequest, HttpResponse, web};
use herd_core::hooks::{CALLBACK_PURPOSE, CALLBACK_WINDOW_SECS, callback_credential_id, verify_callback_signature};
use herd_core::status::NodeRole;
use herd_store::StoreError;
use herd_types::RoleCallback;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode, Problem};
use crate::json::JsonBytes;
use crate::state::AppState;
use secrecy::ExposeSecret;

/// Outside /v1: nodes authenticate with a per-member signature, not an API token.
pub fn routes(t: &mut super::Table) {
    t.add::<__path_role_callback>(web::to(role_callback));
}

/// Called by a cluster's nodes when a member's role changes (Patroni's
/// `on_role_change`). Authenticated by a signature, not by an API token: each member
/// signs `<timestamp>.<body>` with a credential of its own that Herd wrote to it
/// (`X-Herd-Member`, `X-Herd-Timestamp`, `X-Herd-Signature`). The signature is
/// checked before the body is parsed, and a timestamp outside the window is refused.
#[utoipa::path(post, path = "/callbacks/patroni/{cluster_id}", tag = "clusters",
    security(("patroni_callback" = [])),
    params(
        ("cluster_id" = Uuid, Path),
        ("X-Herd-Member" = String, Header, description = "The member (node) name whose credential signed the report"),
        ("X-Herd-Timestamp" = i64, Header, description = "Unix seconds when the report was signed"),
    ),
    request_body = RoleCallback, responses(
    (status = 204),
    (status = 401, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn role_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBytes(raw): JsonBytes,
) -> Result<HttpResponse, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let refused = || ApiError::new(ErrorCode::Unauthorized, "not a report signed by a member of this cluster");
    let member = header("x-herd-member").filter(|m| !m.is_empty() && m.len() <= 100).ok_or_else(refused)?;
    let timestamp: i64 = header("x-herd-timestamp").and_then(|t| t.trim().parse().ok()).ok_or_else(refused)?;
    let signature = header("x-herd-signature").unwrap_or_default();
    let credential = state.store.key().derive_token(CALLBACK_PURPOSE, &callback_credential_id(&id.to_string(), member));
    if !verify_callback_signature(credential.expose_secret(), timestamp, &raw, signature) {
        return Err(refused());
    }
    // Signed, so this is the member's own clock or a replay: outside the window, refused.
    let skew = (chrono::Utc::now().timestamp() - timestamp).abs();
    if skew > CALLBACK_WINDOW_SECS {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!(
                "the report was signed {skew}s away from now (at most {CALLBACK_WINDOW_SECS}s): a replay, or the node's clock is off"
            ),
        ));
    }
    let body: RoleCallback = crate::json::parse(&raw)?;
    if body.member != member {
        return Err(ApiError::field("member", "must be the member that signed the report"));
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
