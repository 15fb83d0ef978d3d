use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use herd_core::crypto::generate_password;
use herd_core::names::DnsLabel;
use herd_core::sshkey;
use herd_core::status::{ClusterStatus, NodeRole, NodeStatus};
use herd_store::entity::task_event;
use herd_store::{ClusterFilter, ClusterView, KeyChoice, NewCluster, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Page;
use super::ha::{
    HaDto, HaRequest, HooksDto, HooksRequest, NodeOptions, check_hooks, check_node_options, check_parameters,
    default_policy, resolve_policy,
};
use super::tasks::TaskDto;
use crate::auth::Auth;
use crate::error::{ApiError, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

pub const MAX_NODES: i64 = 9;
pub const MAX_VOLUME_GB: i64 = 16384;
const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 128;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCluster {
    /// DNS label: lowercase a-z, 0-9 and '-', 1–63, not starting or ending with '-'.
    pub name: String,
    pub datastore: String,
    pub version: String,
    pub flavor: String,
    /// 1–9, default 1.
    pub nodes: Option<i64>,
    /// 1–16384, default 10.
    pub volume_gb: Option<i64>,
    /// An existing key; omit to generate one for this cluster.
    pub key_id: Option<Uuid>,
    /// Default: the first configured provider (`local`).
    pub provider: Option<String>,
    /// Synchronous replication (RPO 0). Default false.
    pub synchronous: Option<bool>,
    /// Server parameters, name → string, number or boolean.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// At least 12 characters; omit to generate one.
    #[schema(value_type = Option<String>)]
    pub admin_password: Option<SecretString>,
    /// Failover policy and HA timing; defaults: the `fast` profile on loopback hosts,
    /// `safe` elsewhere.
    pub ha: Option<HaRequest>,
    /// Failover preferences per node, by ordinal (the first entry is node 0).
    pub node_options: Option<Vec<NodeOptions>>,
    /// Replace a node whose server is gone. Default false.
    pub auto_heal: Option<bool>,
    pub hooks: Option<HooksRequest>,
    /// Start from another cluster's backup instead of an empty database.
    pub restore: Option<super::backups::RestoreRequest>,
}

#[derive(Serialize, ToSchema)]
pub struct NodeDto {
    pub id: Uuid,
    pub name: String,
    pub role: NodeRole,
    pub status: NodeStatus,
    /// The HA agent's state of the member: `running`, `streaming`, `stopped`, ...
    pub state: Option<String>,
    pub address: Option<String>,
    /// PostgreSQL timeline (grows by one at each promotion).
    pub timeline: Option<i64>,
    /// Replication lag behind the primary, bytes.
    pub lag_bytes: Option<i64>,
    /// When the HA agent last answered for this node.
    pub last_seen: Option<DateTime<Utc>>,
    /// Never promoted.
    pub no_failover: bool,
    /// 0–100; higher is preferred when Herd picks a replica to promote.
    pub priority: i32,
    /// Settings changed that take effect at the next restart.
    pub pending_restart: bool,
    /// Recorded by Patroni as the synchronous standby (synchronous mode): the replica
    /// an automatic failover promotes without losing an acknowledged commit.
    pub sync_standby: bool,
    /// False after a `stop` action, until `start`.
    pub desired_running: bool,
}

impl From<herd_store::entity::node::Model> for NodeDto {
    fn from(n: herd_store::entity::node::Model) -> Self {
        Self {
            id: n.id,
            name: n.name,
            role: n.role,
            status: n.status,
            state: n.state,
            address: n.address,
            timeline: n.timeline,
            lag_bytes: n.lag_bytes,
            last_seen: n.last_seen_at,
            no_failover: n.no_failover,
            priority: n.priority,
            pending_restart: n.pending_restart,
            sync_standby: n.sync_standby,
            desired_running: n.desired_running,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Endpoints {
    /// libpq multi-host URI that always reaches the primary (it lists every node and
    /// asks for a read-write session), whichever node that is.
    pub primary_uri: Option<String>,
    /// `address:port` of the current primary.
    pub primary_address: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Fault {
    pub code: String,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct ClusterDto {
    pub id: Uuid,
    pub name: String,
    pub status: ClusterStatus,
    pub datastore: String,
    pub version: String,
    pub flavor: String,
    pub provider: String,
    pub volume_gb: i32,
    pub key_id: Uuid,
    pub synchronous: bool,
    pub ha: HaDto,
    pub auto_heal: bool,
    /// Failover webhooks (their secrets are never returned).
    pub hooks: HooksDto,
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// The pgBackRest repository it archives into, chosen when it was created:
    /// `posix` or `s3`; null when it has none (or was created before Herd recorded it).
    pub backup_repository: Option<String>,
    pub nodes: Vec<NodeDto>,
    pub endpoints: Endpoints,
    /// The cluster's most recent task.
    pub task: Option<TaskDto>,
    pub fault: Option<Fault>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Builds the libpq multi-host URI once every node has an address.
fn primary_uri(v: &ClusterView, password: Option<&SecretString>) -> Option<String> {
    if !matches!(v.cluster.status, ClusterStatus::Active | ClusterStatus::Degraded | ClusterStatus::Updating) {
        return None;
    }
    let hosts: Option<Vec<String>> = v.nodes.iter().map(|n| n.address.as_ref().map(|a| format!("{a}:5432"))).collect();
    let hosts = hosts.filter(|h| !h.is_empty())?;
    let userinfo = match password {
        Some(p) => format!("{}:{}", v.cluster.admin_user, percent_encode(p.expose_secret())),
        None => v.cluster.admin_user.clone(),
    };
    Some(format!("postgresql://{userinfo}@{}/postgres?target_session_attrs=read-write", hosts.join(",")))
}

/// RFC 3986 userinfo encoding: unreserved characters stay, everything else is %XX.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ClusterDto {
    /// The DTO with the hook URLs filled in (they are stored encrypted with their secrets).
    pub fn with_hooks(v: ClusterView, state: &AppState) -> Self {
        let hooks = state.store.cluster_hooks(&v.cluster).unwrap_or_default();
        let mut dto = Self::from(v);
        dto.hooks = HooksDto::from(&hooks);
        dto
    }
}

impl From<ClusterView> for ClusterDto {
    fn from(v: ClusterView) -> Self {
        let primary_uri = primary_uri(&v, None);
        let primary_address = v
            .nodes
            .iter()
            .find(|n| n.role == NodeRole::Primary)
            .and_then(|n| n.address.as_ref())
            .map(|a| format!("{a}:5432"));
        let ha = HaDto::from(&v.cluster);
        let c = v.cluster;
        Self {
            ha,
            auto_heal: c.auto_heal,
            hooks: HooksDto::default(),
            id: c.id,
            fault: c.fault_code.map(|code| Fault { code, message: c.fault_message.unwrap_or_default() }),
            name: c.name,
            status: c.status,
            datastore: c.datastore,
            version: c.version,
            flavor: c.flavor,
            provider: c.provider,
            volume_gb: c.volume_gb,
            key_id: c.key_id,
            synchronous: c.synchronous,
            parameters: c.parameters,
            backup_repository: c.backup_repo.filter(|r| r != herd_datastores::repo::NO_REPOSITORY),
            nodes: v.nodes.into_iter().map(NodeDto::from).collect(),
            endpoints: Endpoints { primary_uri, primary_address },
            task: v.task.map(Into::into),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedCluster {
    pub cluster: ClusterDto,
    pub task_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct TaskRef {
    pub task_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Full connection URI with the password; absent until the cluster is reachable.
    pub uri: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventDto {
    pub id: Uuid,
    pub task_id: Option<Uuid>,
    /// `info`, `warn` or `error`.
    pub level: String,
    pub step: Option<String>,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

impl From<task_event::Model> for EventDto {
    fn from(e: task_event::Model) -> Self {
        Self {
            id: e.id,
            task_id: e.task_id,
            level: e.level,
            step: e.step,
            message: e.message,
            created_at: e.created_at,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListClustersQuery {
    /// Filter by status.
    pub status: Option<String>,
    pub datastore: Option<String>,
    pub name: Option<String>,
    /// 1–100, default 50.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–100, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/clusters").route(web::post().to(create_cluster)).route(web::get().to(list_clusters)))
        .service(
            super::resource("/clusters/{id}")
                .route(web::get().to(get_cluster))
                .route(web::patch().to(super::ha::update_cluster))
                .route(web::delete().to(delete_cluster)),
        )
        .service(super::resource("/clusters/{id}/credentials").route(web::get().to(get_credentials)))
        .service(super::resource("/clusters/{id}/events").route(web::get().to(list_events)));
}

/// Request a new cluster. Returns at once with the task that builds it.
#[utoipa::path(post, path = "/v1/clusters", tag = "clusters", request_body = CreateCluster, responses(
    (status = 202, body = CreatedCluster),
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
    let restore = match &req.restore {
        Some(r) => {
            let target = super::snapshots::RestoreTarget {
                datastore: &req.datastore,
                version: &req.version,
                provider: provider.as_deref(),
            };
            super::backups::check_restore(&state, auth.project_id, r, &target, &mut errs).await?
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
    let admin_password = match req.admin_password {
        Some(p) => {
            let n = p.expose_secret().chars().count();
            if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
                errs.add("admin_password", format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"));
            } else if p.expose_secret().chars().any(char::is_control) {
                errs.add("admin_password", "must not contain control characters");
            }
            p
        }
        None => generate_password(),
    };
    errs.into_result()?;
    let provider = provider.expect("validated above");
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
            name: name.expect("validated above"),
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
    Ok(HttpResponse::Accepted()
        .json(CreatedCluster { cluster: ClusterDto::with_hooks(view, &state), task_id: task.id }))
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
    let (limit, cursor) = super::page_params(q.limit.as_deref(), q.cursor.as_deref(), &mut errs);
    errs.into_result()?;
    let filter = ClusterFilter { status, datastore: q.datastore.clone(), name: q.name.clone() };
    let page = state.store.list_clusters(auth.project_id, &filter, limit, cursor).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.into_iter().map(|v| ClusterDto::with_hooks(v, &state)).collect(),
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
    Ok(HttpResponse::Ok().json(ClusterDto::with_hooks(v, &state)))
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
    let uri = primary_uri(&v, Some(&password));
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(Credentials {
        username: v.cluster.admin_user,
        password: password.expose_secret().to_owned(),
        uri,
    }))
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
    let (limit, cursor) = super::page_params(q.limit.as_deref(), q.cursor.as_deref(), &mut errs);
    errs.into_result()?;
    let page = state.store.list_events(auth.project_id, *id, limit, cursor).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.into_iter().map(EventDto::from).collect(),
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

pub(crate) fn not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("cluster"),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(super::percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(super::percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
