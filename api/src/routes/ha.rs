//! Day-2 operations on a running cluster: settings (failover policy, parameters,
//! hooks), actions (start … reinitialize), power, replicas, node preferences, and the
//! HA agent's role-change callback.
//!
//! Every change of the running cluster is a task (202 + task id); at most one runs
//! per cluster (409 `cluster_busy`).

use actix_web::{HttpRequest, HttpResponse, web};
use herd_core::hooks::{CALLBACK_PURPOSE, Hook, Hooks};
use herd_core::status::{ActionKind, NodeRole, PowerState};
use herd_core::task::{ActionInput, PowerInput, TaskInput};
use herd_datastores::HaTiming;
use herd_providers::ProviderKind;
use herd_store::Cluster;
use herd_store::{ClusterPatch, HaPolicy, StoreError, policy_of};
use herd_types::{
    ActionRequest, AddNodesRequest, AddedNodes, HaDto, HaRequest, HookDto, HookRequest, HooksDto, HooksRequest,
    NodeOptions, PowerRequest, RoleCallback, TaskRef, UpdateCluster, UpdateNode, UpdatedCluster, UpdatedNode,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::IntoDto;
use super::clusters::{MAX_NODES, cluster_dto, not_found};
use crate::auth::Auth;
use crate::error::{ApiError, ErrorCode, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

const MAX_PARAMETERS: usize = 200;
/// Largest `maximum_lag_on_failover` accepted: 1 TiB.
const MAX_LAG: i64 = 1 << 40;
const MAX_URL: usize = 2048;
const MIN_HOOK_SECRET: usize = 16;
const MAX_HOOK_SECRET: usize = 256;

impl IntoDto for &Cluster {
    type Dto = HaDto;
    fn into_dto(self) -> HaDto {
        let c = self;
        HaDto {
            synchronous_strict: c.synchronous_strict,
            maximum_lag_on_failover: c.maximum_lag_on_failover,
            ttl: c.ha_ttl,
            loop_wait: c.ha_loop_wait,
            retry_timeout: c.ha_retry_timeout,
        }
    }
}

impl IntoDto for &Hooks {
    type Dto = HooksDto;
    fn into_dto(self) -> HooksDto {
        let h = self;
        let one = |h: &Option<Hook>| h.as_ref().map(|h| HookDto { url: h.url.clone() });
        HooksDto { pre_failover: one(&h.pre_failover), post_failover: one(&h.post_failover) }
    }
}

/// The policy a new cluster gets unless the request says otherwise.
pub fn default_policy(kind: Option<ProviderKind>, synchronous: bool) -> HaPolicy {
    let t = match kind {
        Some(ProviderKind::Local) => HaTiming::FAST,
        _ => HaTiming::SAFE,
    };
    HaPolicy {
        synchronous,
        synchronous_strict: false,
        maximum_lag_on_failover: 1_048_576,
        ttl: t.ttl as i32,
        loop_wait: t.loop_wait as i32,
        retry_timeout: t.retry_timeout as i32,
    }
}

/// Applies a request to `base`, checking every field and Patroni's timing rule.
pub fn resolve_policy(
    base: HaPolicy,
    synchronous: Option<bool>,
    ha: Option<&HaRequest>,
    errs: &mut Errors,
) -> HaPolicy {
    let mut p = base;
    if let Some(s) = synchronous {
        p.synchronous = s;
    }
    let Some(ha) = ha else { return p };
    match ha.profile.as_deref() {
        None => {}
        Some(name) => {
            let t = match name {
                "fast" => Some(HaTiming::FAST),
                "safe" => Some(HaTiming::SAFE),
                _ => None,
            };
            match t {
                Some(t) => {
                    (p.ttl, p.loop_wait, p.retry_timeout) = (t.ttl as i32, t.loop_wait as i32, t.retry_timeout as i32)
                }
                None => errs.add("ha.profile", "must be one of: fast, safe"),
            }
        }
    }
    let mut secs = |field: &str, v: Option<i64>, slot: &mut i32| {
        if let Some(v) = v {
            match i32::try_from(v) {
                Ok(v) if (1..=3600).contains(&v) => *slot = v,
                _ => errs.add(format!("ha.{field}"), "must be from 1 to 3600 seconds"),
            }
        }
    };
    secs("ttl", ha.ttl, &mut p.ttl);
    secs("loop_wait", ha.loop_wait, &mut p.loop_wait);
    secs("retry_timeout", ha.retry_timeout, &mut p.retry_timeout);
    let timing = HaTiming { ttl: p.ttl as u32, loop_wait: p.loop_wait as u32, retry_timeout: p.retry_timeout as u32 };
    if let Err(e) = timing.validate() {
        errs.add("ha", e);
    }
    if let Some(s) = ha.synchronous_strict {
        p.synchronous_strict = s;
    }
    if p.synchronous_strict && !p.synchronous {
        errs.add("ha.synchronous_strict", "needs synchronous: true");
    }
    if let Some(l) = ha.maximum_lag_on_failover {
        if (0..=MAX_LAG).contains(&l) {
            p.maximum_lag_on_failover = l;
        } else {
            errs.add("ha.maximum_lag_on_failover", format!("must be from 0 to {MAX_LAG} bytes"));
        }
    }
    p
}

pub fn check_node_options(opts: Option<&[NodeOptions]>, nodes: i64, errs: &mut Errors) -> Vec<(bool, u8)> {
    let Some(opts) = opts else { return Vec::new() };
    if opts.len() as i64 > nodes {
        errs.add("node_options", format!("has {} entries for {nodes} node(s)", opts.len()));
    }
    let mut out = Vec::new();
    for (i, o) in opts.iter().enumerate() {
        let priority = match o.priority {
            None => 0,
            Some(p) if (0..=100).contains(&p) => p as u8,
            Some(_) => {
                errs.add(format!("node_options[{i}].priority"), "must be from 0 to 100");
                0
            }
        };
        out.push((o.no_failover.unwrap_or(false), priority));
    }
    // Patroni never bootstraps a cluster on a `nofailover` member.
    if (0..nodes as usize).all(|i| out.get(i).is_some_and(|o| o.0)) {
        errs.add("node_options", "at least one node must be allowed to become primary");
    }
    out
}

fn check_hook(field: &str, h: HookRequest, errs: &mut Errors) -> Hook {
    let url = h.url.trim();
    let ok_scheme = url.starts_with("http://") || url.starts_with("https://");
    if !ok_scheme || url.len() > MAX_URL || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        errs.add(format!("{field}.url"), format!("must be an http:// or https:// URL of at most {MAX_URL} characters"));
    }
    let n = h.secret.expose_secret().chars().count();
    if !(MIN_HOOK_SECRET..=MAX_HOOK_SECRET).contains(&n) {
        errs.add(format!("{field}.secret"), format!("must be {MIN_HOOK_SECRET} to {MAX_HOOK_SECRET} characters"));
    }
    Hook { url: url.to_owned(), secret: h.secret }
}

pub fn check_hooks(h: HooksRequest, errs: &mut Errors) -> Hooks {
    Hooks {
        pre_failover: h.pre_failover.map(|x| check_hook("hooks.pre_failover", x, errs)),
        post_failover: h.post_failover.map(|x| check_hook("hooks.post_failover", x, errs)),
    }
}

/// Checks parameters against the datastore manager's rules for the version.
pub async fn check_parameters(
    state: &AppState,
    datastore: &str,
    version: &str,
    parameters: &serde_json::Map<String, serde_json::Value>,
    errs: &mut Errors,
) -> Result<(), ApiError> {
    if parameters.len() > MAX_PARAMETERS {
        errs.add("parameters", format!("at most {MAX_PARAMETERS} parameters"));
        return Ok(());
    }
    let ds = match state.store.get_datastore(datastore).await {
        Ok(d) => d,
        // Reported by the caller's datastore check.
        Err(StoreError::NotFound) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let Some(manager) = herd_datastores::manager_for(&ds.manager) else {
        errs.add("datastore", format!("no manager '{}' in this build", ds.manager));
        return Ok(());
    };
    if let Err(problems) = manager.check_parameters(version, parameters) {
        for (name, message) in problems {
            errs.add(format!("parameters.{name}"), message);
        }
    }
    Ok(())
}

/// Change the failover policy, parameters, hooks or auto-heal of a cluster.
/// Parameters are checked against the datastore version's rules; a change that
/// needs a restart rolls through the nodes (replicas, a switchover, the old primary).
#[utoipa::path(patch, path = "/v1/clusters/{id}", tag = "clusters", params(("id" = Uuid, Path)),
    request_body = UpdateCluster, responses(
    (status = 200, body = UpdatedCluster),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_cluster(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<UpdateCluster>,
) -> Result<HttpResponse, ApiError> {
    let view = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    let c = &view.cluster;
    let mut errs = Errors::default();
    let policy = if req.synchronous.is_some() || req.ha.is_some() {
        Some(resolve_policy(policy_of(c), req.synchronous, req.ha.as_ref(), &mut errs))
    } else {
        None
    };
    if let Some(p) = &req.parameters {
        check_parameters(&state, &c.datastore, &c.version, p, &mut errs).await?;
    }
    let hooks = req.hooks.map(|h| check_hooks(h, &mut errs));
    errs.into_result()?;
    let patch = ClusterPatch { policy, parameters: req.parameters, auto_heal: req.auto_heal, hooks };
    let (view, task) = state.store.update_cluster(auth.project_id, *id, patch).await.map_err(not_found)?;
    if let Some(t) = &task {
        state.enqueue(t.id).await;
    }
    Ok(HttpResponse::Ok().json(UpdatedCluster { cluster: cluster_dto(view, &state), task_id: task.map(|t| t.id) }))
}

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
    let priority = match req.priority {
        None => None,
        Some(p) if (0..=100).contains(&p) => Some(p as u8),
        Some(_) => return Err(ApiError::field("priority", "must be from 0 to 100")),
    };
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
    let role = match body.role.as_str() {
        "master" | "primary" | "leader" | "standby_leader" => NodeRole::Primary,
        "replica" | "standby" | "sync_standby" => NodeRole::Replica,
        _ => NodeRole::Unknown,
    };
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

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/clusters/{id}/actions").route(web::post().to(cluster_action)))
        .service(super::resource("/clusters/{id}/nodes").route(web::post().to(add_nodes)))
        .service(
            super::resource("/clusters/{id}/nodes/{node_id}")
                .route(web::patch().to(update_node))
                .route(web::delete().to(remove_node)),
        )
        .service(super::resource("/clusters/{id}/nodes/{node_id}/power").route(web::post().to(power_node)));
}
