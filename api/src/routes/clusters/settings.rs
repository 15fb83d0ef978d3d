//! `PATCH /v1/clusters/{id}` and the checks a create shares with it: failover policy,
//! PostgreSQL parameters, hooks.

use actix_web::{HttpResponse, web};
use herd_core::hooks::{Hook, Hooks};
use herd_core::values::HookUrl;
use herd_datastores::HaTiming;
use herd_providers::ProviderKind;
use herd_store::{ClusterPatch, HaPolicy, StoreError, policy_of};
use herd_types::{HaRequest, HookRequest, HooksRequest, UpdateCluster, UpdatedCluster};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::dto::cluster_dto;
use super::limits::*;
use crate::auth::Auth;
use crate::error::{ApiError, Errors, Problem};
use crate::json::JsonBody;
use crate::routes::common::not_found;
use crate::state::AppState;

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

/// None when the hook is refused (the reason is in `errs`, so the request fails).
fn check_hook(field: &str, h: HookRequest, errs: &mut Errors) -> Option<Hook> {
    let url = errs.check(&format!("{field}.url"), HookUrl::parse(&h.url));
    let n = h.secret.expose_secret().chars().count();
    if !(MIN_HOOK_SECRET..=MAX_HOOK_SECRET).contains(&n) {
        errs.add(format!("{field}.secret"), format!("must be {MIN_HOOK_SECRET} to {MAX_HOOK_SECRET} characters"));
        return None;
    }
    Some(Hook { url: url?.into_string(), secret: h.secret })
}

pub fn check_hooks(h: HooksRequest, errs: &mut Errors) -> Hooks {
    Hooks {
        pre_failover: h.pre_failover.and_then(|x| check_hook("hooks.pre_failover", x, errs)),
        post_failover: h.post_failover.and_then(|x| check_hook("hooks.post_failover", x, errs)),
    }
}

/// Refuses hooks the egress policy forbids: resolved now, so a tenant learns at once;
/// the worker checks again at every delivery (a name can change its addresses).
pub async fn check_hook_destinations(state: &AppState, hooks: &Hooks, errs: &mut Errors) {
    for (field, hook) in [("hooks.pre_failover", &hooks.pre_failover), ("hooks.post_failover", &hooks.post_failover)] {
        if let Some(h) = hook
            && let Err(why) = state.egress.check(&h.url).await
        {
            errs.add(format!("{field}.url"), why);
        }
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
    let Some(manager) = state.managers.get(&ds.manager) else {
        errs.add("datastore", format!("no manager '{}' in this build", ds.manager));
        return Ok(());
    };
    if let Err(problems) = manager.profile.check_parameters(version, parameters) {
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
    if let Some(h) = &hooks {
        check_hook_destinations(&state, h, &mut errs).await;
    }
    errs.into_result()?;
    let patch = ClusterPatch { policy, parameters: req.parameters, auto_heal: req.auto_heal, hooks };
    let (view, task) = state.store.update_cluster(auth.project_id, *id, patch).await.map_err(not_found)?;
    if let Some(t) = &task {
        state.enqueue(t.id).await;
    }
    Ok(HttpResponse::Ok().json(UpdatedCluster { cluster: cluster_dto(view, &state), task_id: task.map(|t| t.id) }))
}
