//! Replicas added and removed, node preferences, a node's server powered on or off.

use actix_web::{HttpResponse, web};
use herd_core::status::PowerState;
use herd_core::task::{PowerInput, TaskInput};
use herd_core::values::{NodePreference, Priority};
use herd_store::StoreError;
use herd_types::{AddNodesRequest, AddedNodes, NodeOptions, PowerRequest, TaskRef, UpdateNode, UpdatedNode};
use uuid::Uuid;

use super::limits::*;
use crate::auth::Auth;
use crate::error::{ApiError, Errors, Problem};
use crate::json::JsonBody;
use crate::routes::IntoDto;
use crate::routes::common::not_found;
use crate::state::AppState;

pub fn check_node_options(opts: Option<&[NodeOptions]>, nodes: i64, errs: &mut Errors) -> Vec<NodePreference> {
    let Some(opts) = opts else { return Vec::new() };
    if opts.len() as i64 > nodes {
        errs.add("node_options", format!("has {} entries for {nodes} node(s)", opts.len()));
    }
    let mut out = Vec::new();
    for (i, o) in opts.iter().enumerate() {
        let priority = o.priority.and_then(|p| errs.check(&format!("node_options[{i}].priority"), Priority::parse(p)));
        out.push(NodePreference {
            no_failover: o.no_failover.unwrap_or(false),
            priority: priority.unwrap_or_default(),
        });
    }
    // Patroni never bootstraps a cluster on a `nofailover` member.
    if (0..nodes as usize).all(|i| out.get(i).is_some_and(|o| o.no_failover)) {
        errs.add("node_options", "at least one node must be allowed to become primary");
    }
    out
}

/// Power a node's server on or off through its provider (EC2 Start/Stop; a loopback
/// host's processes killed or booted). A disaster-recovery drill and chaos tool.
#[utoipa::path(post, path = "/v1/clusters/{id}/nodes/{node_id}/power", tag = "clusters",
    params(("id" = Uuid, Path), ("node_id" = Uuid, Path)), request_body = PowerRequest, responses(
    (status = 202, body = TaskRef),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn power_node(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    JsonBody(req): JsonBody<PowerRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, node_id) = path.into_inner();
    let view = state.store.get_cluster(auth.project_id, id).await.map_err(not_found)?;
    let n = view.nodes.iter().find(|n| n.id == node_id).ok_or_else(|| ApiError::not_found("node"))?;
    let force = req.force.unwrap_or(false);
    if force && req.state == PowerState::On {
        return Err(ApiError::field("force", "applies to power off only"));
    }
    let summary = format!("power {}{} of {} requested", req.state, if force { " (forced)" } else { "" }, n.name);
    let input = TaskInput::PowerNode(PowerInput { node_id, state: req.state, force });
    let t = state.store.request_task(auth.project_id, id, &[node_id], input, &summary).await.map_err(not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(TaskRef { task_id: t.id }))
}

/// Add replicas: servers are built, join the DCS and clone from the primary.
#[utoipa::path(post, path = "/v1/clusters/{id}/nodes", tag = "clusters", params(("id" = Uuid, Path)),
    request_body = AddNodesRequest, responses(
    (status = 202, body = AddedNodes),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn add_nodes(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<AddNodesRequest>,
) -> Result<HttpResponse, ApiError> {
    if !(1..MAX_NODES).contains(&req.count) {
        return Err(ApiError::field("count", format!("must be from 1 to {}", MAX_NODES - 1)));
    }
    let (t, nodes) =
        state.store.add_nodes(auth.project_id, *id, req.count as u8, MAX_NODES as u8).await.map_err(not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted()
        .json(AddedNodes { task_id: t.id, nodes: nodes.into_iter().map(IntoDto::into_dto).collect() }))
}

/// Remove a replica (its server and volume are deleted). The primary cannot be
/// removed: switch over first.
#[utoipa::path(delete, path = "/v1/clusters/{id}/nodes/{node_id}", tag = "clusters",
    params(("id" = Uuid, Path), ("node_id" = Uuid, Path)), responses(
    (status = 202, body = TaskRef),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub async fn remove_node(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (id, node_id) = path.into_inner();
    let t = state.store.request_remove_node(auth.project_id, id, node_id).await.map_err(not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(TaskRef { task_id: t.id }))
}

/// Change a node's failover preferences.
#[utoipa::path(patch, path = "/v1/clusters/{id}/nodes/{node_id}", tag = "clusters",
    params(("id" = Uuid, Path), ("node_id" = Uuid, Path)), request_body = UpdateNode, responses(
    (status = 200, body = UpdatedNode),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_node(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
    JsonBody(req): JsonBody<UpdateNode>,
) -> Result<HttpResponse, ApiError> {
    let (id, node_id) = path.into_inner();
    let priority = req.priority.map(Priority::parse).transpose().map_err(|e| ApiError::field("priority", e))?;
    let view = state.store.get_cluster(auth.project_id, id).await.map_err(not_found)?;
    if req.no_failover == Some(true)
        && view.nodes.iter().filter(|n| n.id != node_id).all(|n| n.no_failover)
        && view.nodes.iter().any(|n| n.id == node_id)
    {
        return Err(ApiError::field("no_failover", "at least one node must stay eligible to become primary"));
    }
    let (n, t) =
        state.store.set_node_preferences(auth.project_id, id, node_id, req.no_failover, priority).await.map_err(
            |e| match e {
                StoreError::NotFound => ApiError::not_found("node"),
                e => e.into(),
            },
        )?;
    if let Some(t) = &t {
        state.enqueue(t.id).await;
    }
    Ok(HttpResponse::Ok().json(UpdatedNode { node: n.into_dto(), task_id: t.map(|t| t.id) }))
}
