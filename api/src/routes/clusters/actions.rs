//! `POST /v1/clusters/{id}/actions`: start … reinitialize, one task each; at most one
//! runs per cluster (409 `cluster_busy`).

use actix_web::{HttpResponse, web};
use herd_core::status::{ActionKind, NodeRole};
use herd_core::task::{ActionInput, TaskInput};
use herd_types::{ActionRequest, TaskRef};
use uuid::Uuid;

use crate::auth::Auth;
use crate::error::{ApiError, ErrorCode, Problem};
use crate::json::JsonBody;
use crate::routes::common::not_found;
use crate::state::AppState;

/// Start, stop, restart or reload nodes; switch over, fail over, or rebuild a replica.
#[utoipa::path(post, path = "/v1/clusters/{id}/actions", tag = "clusters", params(("id" = Uuid, Path)),
    request_body = ActionRequest, responses(
    (status = 202, body = TaskRef),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn cluster_action(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<ActionRequest>,
) -> Result<HttpResponse, ApiError> {
    use ActionKind::*;
    let view = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    let node = |field: &'static str, nid: Uuid| {
        view.nodes.iter().find(|n| n.id == nid).ok_or_else(|| ApiError::field(field, "no such node in this cluster"))
    };
    let mut summary = format!("{} requested", req.action);
    match req.action {
        Start | Stop | Restart | Reload => {
            if req.candidate_id.is_some() {
                return Err(ApiError::field("candidate_id", format!("is not used by {}", req.action)));
            }
            if let Some(nid) = req.node_id {
                summary = format!("{} of {} requested", req.action, node("node_id", nid)?.name);
            }
        }
        Switchover | Failover => {
            if req.node_id.is_some() {
                return Err(ApiError::field("node_id", format!("is not used by {}; name candidate_id", req.action)));
            }
            if view.nodes.len() < 2 {
                return Err(ApiError::new(ErrorCode::NoReplica, "the cluster has a single node: nothing to promote"));
            }
            if let Some(cid) = req.candidate_id {
                let n = node("candidate_id", cid)?;
                if n.role == NodeRole::Primary {
                    return Err(ApiError::field("candidate_id", format!("{} is already the primary", n.name)));
                }
                if n.no_failover {
                    return Err(ApiError::new(
                        ErrorCode::CandidateNotEligible,
                        format!("{} has no_failover set; it is never promoted", n.name),
                    ));
                }
                summary = format!("{} to {} requested", req.action, n.name);
            }
        }
        Reinitialize => {
            if req.candidate_id.is_some() {
                return Err(ApiError::field("candidate_id", "is not used by reinitialize"));
            }
            let nid = req.node_id.ok_or_else(|| ApiError::field("node_id", "reinitialize needs the replica"))?;
            let n = node("node_id", nid)?;
            if n.role == NodeRole::Primary || view.cluster.primary_node_id == Some(n.id) {
                return Err(ApiError::new(
                    ErrorCode::NodeIsPrimary,
                    format!("{} is the primary; only a replica is rebuilt from the primary", n.name),
                ));
            }
            summary = format!("reinitialize of {} requested", n.name);
        }
    }
    let ids: Vec<Uuid> = req.node_id.into_iter().chain(req.candidate_id).collect();
    let input = TaskInput::ClusterAction(ActionInput {
        action: req.action,
        node_id: req.node_id,
        candidate_id: req.candidate_id,
    });
    let t = state.store.request_task(auth.project_id, *id, &ids, input, &summary).await.map_err(not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(TaskRef { task_id: t.id }))
}
