//! A cluster's life: create (with a restore), list, show, credentials, history, delete.

use actix_web::{HttpResponse, web};
use herd_core::names::DnsLabel;
use herd_core::sshkey;
use herd_core::status::{ClusterStatus, TokenRole};
use herd_core::values::AdminPassword;
use herd_providers::ProviderKind;
use herd_store::{ClusterFilter, KeyChoice, NewCluster, StoreError};
use herd_types::{ClusterCa, ClusterDto, CreateCluster, CreatedCluster, Credentials, EventDto, TaskRef};
use secrecy::ExposeSecret;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::dto::{cluster_dto, primary_uri};
use super::limits::*;
use super::nodes::check_node_options;
use super::settings::{check_hook_destinations, check_hooks, check_parameters, default_policy, resolve_policy};
use crate::auth::Auth;
use crate::error::{ApiError, Errors, Problem};
use crate::json::JsonBody;
use crate::routes::common::{PageQuery, not_found};
use crate::routes::{IntoDto, Page};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListClustersQuery {
    /// Filter by status.
    #[param(value_type = Option<ClusterStatus>)]
    pub status: Option<String>,
    pub datastore: Option<String>,
    pub name: Option<String>,
    /// 1–100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Request a new cluster. Returns at once with the task that builds it. Counts
/// against the project's `clusters`, `nodes` and `volume_gb` quotas (403 `quota_exceeded`).
#[utoipa::path(post, path = "/v1/clusters", tag = "clusters", request_body = CreateCluster, responses(
    (status = 202, body = CreatedCluster),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_cluster(
    auth: Auth,
    state: web::Data<AppState>,
    JsonBody(req): JsonBody<CreateCluster>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    let name = errs.check("name", DnsLabel::parse(&req.name));
    let nodes = req.nodes.unwrap_or(1);
    if !(1..=MAX_NODES).contains(&nodes) {
        errs.add("nodes", format!("must be from 1 to {MAX_NODES}"));
    }
    let volume_gb = req.volume_gb.unwrap_or(10);
    if !(1..=MAX_VOLUME_GB).contains(&volume_gb) {
        errs.add("volume_gb", format!("must be from 1 to {MAX_VOLUME_GB}"));
    }
    match state.store.get_version(&req.datastore, &req.version).await {
        Ok(v) if v.active => {}
        Ok(_) => errs.add("version", format!("{} {} is not active", req.datastore, req.version)),
        Err(StoreError::NotFound) => match state.store.get_datastore(&req.datastore).await {
            Ok(_) => errs.add("version", format!("{} has no version '{}'", req.datastore, req.version)),
            Err(StoreError::NotFound) => errs.add("datastore", "no such datastore; see GET /v1/datastores"),
            Err(e) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    }
    let provider = req.provider.clone().or_else(|| state.default_provider().map(str::to_owned));
    match provider.as_deref().map(|p| (p, state.flavors_of(p))) {
        None | Some((_, None)) => errs.add("provider", "no such provider is configured; see GET /v1/providers"),
        Some((p, Some(flavors))) if !flavors.iter().any(|f| f.id == req.flavor) => {
            errs.add("flavor", format!("provider '{p}' has no flavor '{}'; see GET /v1/flavors", req.flavor))
        }
        Some(_) => {}
    }
    let parameters = req.parameters.unwrap_or_default();
    check_parameters(&state, &req.datastore, &req.version, &parameters, &mut errs).await?;
    let kind = provider.as_deref().and_then(|p| state.providers.get(p)).map(|p| p.kind());
    let base = default_policy(kind, req.synchronous.unwrap_or(false));
    let policy = resolve_policy(base, req.synchronous, req.ha.as_ref(), &mut errs);
    let node_prefs = check_node_options(req.node_options.as_deref(), nodes, &mut errs);
    let hooks = req.hooks.map(|h| check_hooks(h, &mut errs)).unwrap_or_default();
    check_hook_destinations(&state, &hooks, &mut errs).await;
    let restore = match &req.restore {
        Some(r) => {
            let target = super::restore::RestoreTarget {
                datastore: &req.datastore,
                version: &req.version,
                provider: provider.as_deref(),
            };
            super::restore::check_restore(&state, auth.project_id, r, &target, &mut errs).await?
        }
        None => None,
    };
    // A volume made from a snapshot is at least the snapshot's size.
    let volume_gb = match restore.as_ref().and_then(|(_, min)| min.map(i64::from)) {
        Some(min) if req.volume_gb.is_none() => min.max(volume_gb),
        Some(min) if volume_gb < min => {
            errs.add("volume_gb", format!("must be at least the snapshot's {min} GB"));
            volume_gb
        }
        _ => volume_gb,
    };
    let restore = restore.map(|(input, _)| input);
    // The local provider's servers are this machine, and their SSH login is root: a key
    // whose private half the caller holds would be a root shell here. Members get
    // generated keys only (which nobody sees); an operator runs the machine anyway.
    if let (Some(ProviderKind::Local), Some(id), false) = (kind, req.key_id, auth.role == TokenRole::Operator)
        && let Ok(k) = state.store.get_key(auth.project_id, id).await
        && k.imported != Some(false)
    {
        errs.add(
            "key_id",
            "the local provider runs its servers on the Herd machine, logged into as root: it takes only keys Herd \
             generated (omit key_id, or create one with POST /v1/keys without private_key)",
        );
    }
    let admin_password = match req.admin_password {
        Some(p) => errs.check("admin_password", AdminPassword::parse(p)),
        None => Some(AdminPassword::generate()),
    };
    let (name, provider, admin_password) = errs.finish((name, provider, admin_password))?;
    let backup_repo = kind.map_or(herd_datastores::repo::NO_REPOSITORY, |k| {
        herd_datastores::repo::record_for_new_cluster(&state.backups, &state.state_dir, k)
    });
    let key = match req.key_id {
        Some(id) => KeyChoice::Existing(id),
        None => KeyChoice::Generate(sshkey::generate_ed25519()),
    };
    let (view, task) = state
        .store
        .create_cluster(NewCluster {
            project_id: auth.project_id,
            name,
            datastore: req.datastore,
            version: req.version,
            flavor: req.flavor,
            provider,
            node_count: nodes as u8,
            volume_gb: volume_gb as u32,
            key,
            policy,
            node_prefs,
            restore,
            auto_heal: req.auto_heal.unwrap_or(false),
            hooks,
            parameters,
            admin_password,
            backup_repo: backup_repo.to_owned(),
        })
        .await?;
    state.enqueue(task.id).await;
    Ok(HttpResponse::Accepted().json(CreatedCluster { cluster: cluster_dto(view, &state), task_id: task.id }))
}

/// List the project's clusters, oldest first.
#[utoipa::path(get, path = "/v1/clusters", tag = "clusters", params(ListClustersQuery), responses(
    (status = 200, body = Page<ClusterDto>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_clusters(
    auth: Auth,
    state: web::Data<AppState>,
    q: web::Query<ListClustersQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    let status = q.status.as_deref().and_then(|s| errs.check("status", s.parse::<ClusterStatus>()));
    let (limit, cursor) = crate::routes::page_params(q.limit.as_deref(), q.cursor.as_deref(), &mut errs);
    errs.into_result()?;
    let filter = ClusterFilter { status, datastore: q.datastore.clone(), name: q.name.clone() };
    let page = state.store.list_clusters(auth.project_id, &filter, limit, cursor).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.into_iter().map(|v| cluster_dto(v, &state)).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// Show a cluster with its nodes, endpoints, current task and fault.
#[utoipa::path(get, path = "/v1/clusters/{id}", tag = "clusters", params(("id" = Uuid, Path)), responses(
    (status = 200, body = ClusterDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_cluster(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let v = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(cluster_dto(v, &state)))
}

/// The admin credentials of a cluster.
#[utoipa::path(get, path = "/v1/clusters/{id}/credentials", tag = "clusters", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Credentials),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_credentials(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (v, password) = state.store.cluster_credentials(auth.project_id, *id).await.map_err(not_found)?;
    let uri = primary_uri(&v, state.profile_of(&v.manager), Some(&password));
    let ca_certificate = cluster_ca_pem(&state, &v.cluster)?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(Credentials {
        username: v.cluster.admin_user,
        password: password.expose_secret().to_owned(),
        uri,
        ca_certificate,
    }))
}

/// The cluster's CA certificate, what clients verify its servers against.
#[utoipa::path(get, path = "/v1/clusters/{id}/ca", tag = "clusters", params(("id" = Uuid, Path)), responses(
    (status = 200, body = ClusterCa),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_ca(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let v = state.store.get_cluster(auth.project_id, *id).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(ClusterCa { certificate: cluster_ca_pem(&state, &v.cluster)? }))
}

/// Derived again on every call (the same certificate each time): nothing is stored.
fn cluster_ca_pem(state: &AppState, c: &herd_store::Cluster) -> Result<String, ApiError> {
    herd_core::pki::ClusterCa::derive(state.store.key(), c.id, c.created_at)
        .map(|ca| ca.certificate_pem().to_owned())
        .map_err(|e| ApiError::internal(&e))
}

/// The cluster's history, newest first.
#[utoipa::path(get, path = "/v1/clusters/{id}/events", tag = "clusters", params(("id" = Uuid, Path), PageQuery),
    responses(
    (status = 200, body = Page<EventDto>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_events(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    let (limit, cursor) = crate::routes::page_params(q.limit.as_deref(), q.cursor.as_deref(), &mut errs);
    errs.into_result()?;
    let page = state.store.list_events(auth.project_id, *id, limit, cursor).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.into_iter().map(IntoDto::into_dto).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    }))
}

/// Delete a cluster: cancels work under way, then releases every resource.
#[utoipa::path(delete, path = "/v1/clusters/{id}", tag = "clusters", params(("id" = Uuid, Path)), responses(
    (status = 202, body = TaskRef),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_cluster(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let t = state.store.request_delete(auth.project_id, *id).await.map_err(not_found)?;
    state.enqueue(t.id).await;
    Ok(HttpResponse::Accepted().json(TaskRef { task_id: t.id }))
}
