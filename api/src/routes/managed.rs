//! A cluster's managed databases and users (what the admin role's `CREATEROLE` was
//! for): desired state recorded here, applied on the primary by a `sync_access` task.
//! Names are checked at this edge with `herd_core::access`; passwords are shown once.

use actix_web::{HttpResponse, web};
use herd_core::access;
use herd_core::values::AdminPassword;
use herd_store::{ManagedDatabaseRow, ManagedUserView, NewDatabase, NewUser, StoreError, UserPatch};
use herd_types::{CreateDatabase, CreateUser, DatabaseAccepted, DatabaseDto, Page, UpdateUser, UserAccepted, UserDto};
use secrecy::ExposeSecret;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::IntoDto;
use super::common::not_found;
use crate::auth::Auth;
use crate::error::{ApiError, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

/// The most sessions a user's connection limit may name (beyond it is a typo).
const MAX_CONNECTION_LIMIT: i32 = 10_000;

impl IntoDto for ManagedDatabaseRow {
    type Dto = DatabaseDto;
    fn into_dto(self) -> DatabaseDto {
        DatabaseDto {
            name: self.name,
            owner: self.owner,
            encoding: self.encoding,
            locale: self.locale,
            status: self.status,
            error: self.error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl IntoDto for ManagedUserView {
    type Dto = UserDto;
    fn into_dto(self) -> UserDto {
        UserDto {
            name: self.name,
            connection_limit: self.connection_limit,
            roles: self.roles,
            grants: self.grants,
            status: self.status,
            error: self.error,
            password_set_at: self.password_set_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_create_database>(web::to(create_database));
    t.add::<__path_list_databases>(web::to(list_databases));
    t.add::<__path_get_database>(web::to(get_database));
    t.add::<__path_delete_database>(web::to(delete_database));
    t.add::<__path_create_user>(web::to(create_user));
    t.add::<__path_list_users>(web::to(list_users));
    t.add::<__path_get_user>(web::to(get_user));
    t.add::<__path_update_user>(web::to(update_user));
    t.add::<__path_delete_user>(web::to(delete_user));
}

fn missing(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |e| match e {
        StoreError::NotFound => ApiError::not_found(what),
        e => e.into(),
    }
}

/// The cluster first, so a wrong cluster id says "cluster" and a wrong name the thing.
async fn cluster_exists(state: &AppState, auth: &Auth, id: Uuid) -> Result<(), ApiError> {
    state.store.get_cluster(auth.project_id, id).await.map_err(not_found).map(drop)
}

async fn enqueue(state: &AppState, t: &Option<herd_store::Task>) -> Option<Uuid> {
    let t = t.as_ref()?;
    // A task already open is queued already; pushing again is a harmless duplicate.
    state.enqueue(t.id).await;
    Some(t.id)
}

fn check_limit(errs: &mut Errors, v: Option<i32>) -> Option<i32> {
    match v {
        None | Some(-1) => None,
        Some(n) if (0..=MAX_CONNECTION_LIMIT).contains(&n) => Some(n),
        Some(_) => {
            errs.add("connection_limit", format!("must be 0 to {MAX_CONNECTION_LIMIT}, or -1 for no limit"));
            None
        }
    }
}

fn check_roles(errs: &mut Errors, roles: &[String]) {
    for (i, r) in roles.iter().enumerate() {
        errs.check(&format!("roles[{i}]"), access::validate_grantable_role(r));
    }
    if roles.len() > access::GRANTABLE_ROLES.len() {
        errs.add("roles", "lists a role twice");
    }
}

fn check_grants(errs: &mut Errors, grants: &herd_core::access::Grants) {
    for name in grants.keys() {
        errs.check(&format!("grants.{name}"), access::validate_database_name(name));
    }
}

/// Create a database (owner, encoding, locale) in the cluster.
#[utoipa::path(post, path = "/v1/clusters/{id}/databases", tag = "databases", params(("id" = Uuid, Path)),
    request_body = CreateDatabase, responses(
    (status = 202, body = DatabaseAccepted),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_database(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<CreateDatabase>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    errs.check("name", access::validate_database_name(&req.name));
    if let Some(o) = &req.owner {
        errs.check("owner", access::validate_role_name(o));
    }
    let encoding = req.encoding.unwrap_or_else(|| "UTF8".to_owned());
    errs.check("encoding", access::validate_encoding(&encoding));
    let locale = req.locale.or_else(|| Some("C.UTF-8".to_owned()));
    if let Some(l) = &locale {
        errs.check("locale", access::validate_locale(l));
    }
    errs.into_result()?;
    cluster_exists(&state, &auth, *id).await?;
    let new = NewDatabase { name: req.name, owner: req.owner, encoding, locale };
    let (d, t) = state.store.add_database(auth.project_id, *id, new).await.map_err(not_found)?;
    let task_id = enqueue(&state, &t).await;
    Ok(HttpResponse::Accepted().json(DatabaseAccepted { database: d.into_dto(), task_id }))
}

/// The cluster's managed databases by name (at most 200: one page).
#[utoipa::path(get, path = "/v1/clusters/{id}/databases", tag = "databases", params(("id" = Uuid, Path)),
    responses(
    (status = 200, body = Page<DatabaseDto>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_databases(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let rows = state.store.list_databases(auth.project_id, *id).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(Page { items: rows.into_iter().map(IntoDto::into_dto).collect(), next_cursor: None }))
}

/// Show a managed database.
#[utoipa::path(get, path = "/v1/clusters/{id}/databases/{name}", tag = "databases",
    params(("id" = Uuid, Path), ("name" = String, Path)), responses(
    (status = 200, body = DatabaseDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_database(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    cluster_exists(&state, &auth, id).await?;
    let d = state.store.get_database(auth.project_id, id, &name).await.map_err(missing("database"))?;
    Ok(HttpResponse::Ok().json(d.into_dto()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DropQuery {
    /// End the sessions connected to it; without, a database in use is not dropped
    /// (its `error` says so).
    #[param(value_type = Option<bool>)]
    pub force: Option<String>,
}

/// Drop a managed database. Its users keep their other grants.
#[utoipa::path(delete, path = "/v1/clusters/{id}/databases/{name}", tag = "databases",
    params(("id" = Uuid, Path), ("name" = String, Path), DropQuery), responses(
    (status = 202, body = DatabaseAccepted),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_database(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    q: web::Query<DropQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let mut errs = Errors::default();
    let force = match q.force.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            errs.add("force", "must be true or false");
            false
        }
    };
    errs.into_result()?;
    cluster_exists(&state, &auth, id).await?;
    let (d, t) = state.store.delete_database(auth.project_id, id, &name, force).await.map_err(missing("database"))?;
    let task_id = enqueue(&state, &t).await;
    Ok(HttpResponse::Accepted().json(DatabaseAccepted { database: d.into_dto(), task_id }))
}

/// Create a login user: a given or generated password (shown once), a connection
/// limit, predefined roles and per-database privileges.
#[utoipa::path(post, path = "/v1/clusters/{id}/users", tag = "databases", params(("id" = Uuid, Path)),
    request_body = CreateUser, responses(
    (status = 202, body = UserAccepted),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_user(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    errs.check("name", access::validate_role_name(&req.name));
    let (password, generated) = match req.password {
        Some(p) => (errs.check("password", AdminPassword::parse(p)), false),
        None => (Some(AdminPassword::generate()), true),
    };
    let connection_limit = check_limit(&mut errs, req.connection_limit);
    check_roles(&mut errs, &req.roles);
    check_grants(&mut errs, &req.grants);
    errs.into_result()?;
    let Some(password) = password else { unreachable!("a password error returned above") };
    cluster_exists(&state, &auth, *id).await?;
    let shown = generated.then(|| password.secret().expose_secret().to_owned());
    let mut roles = req.roles;
    roles.sort();
    roles.dedup();
    let new = NewUser { name: req.name, password: password.into_secret(), connection_limit, roles, grants: req.grants };
    let (u, t) = state.store.add_user(auth.project_id, *id, new).await.map_err(not_found)?;
    let task_id = enqueue(&state, &t).await;
    Ok(HttpResponse::Accepted().json(UserAccepted { user: u.into_dto(), password: shown, task_id }))
}

/// The cluster's managed users by name (at most 200: one page).
#[utoipa::path(get, path = "/v1/clusters/{id}/users", tag = "databases", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Page<UserDto>),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_users(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let rows = state.store.list_users(auth.project_id, *id).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(Page { items: rows.into_iter().map(IntoDto::into_dto).collect(), next_cursor: None }))
}

/// Show a managed user (never its password).
#[utoipa::path(get, path = "/v1/clusters/{id}/users/{name}", tag = "databases",
    params(("id" = Uuid, Path), ("name" = String, Path)), responses(
    (status = 200, body = UserDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_user(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    cluster_exists(&state, &auth, id).await?;
    let u = state.store.get_user(auth.project_id, id, &name).await.map_err(missing("user"))?;
    Ok(HttpResponse::Ok().json(u.into_dto()))
}

/// Change a user: password (given, or `rotate_password` for a generated one shown
/// once), connection limit, roles, grants. The old password stops working once the
/// change is applied.
#[utoipa::path(patch, path = "/v1/clusters/{id}/users/{name}", tag = "databases",
    params(("id" = Uuid, Path), ("name" = String, Path)), request_body = UpdateUser, responses(
    (status = 202, body = UserAccepted),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn update_user(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    JsonBody(req): JsonBody<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let mut errs = Errors::default();
    let password = match (req.password, req.rotate_password) {
        (Some(_), true) => {
            errs.add("rotate_password", "give a password or ask for a generated one, not both");
            None
        }
        (Some(p), false) => errs.check("password", AdminPassword::parse(p)),
        (None, true) => Some(AdminPassword::generate()),
        (None, false) => None,
    };
    let connection_limit = req.connection_limit.map(|l| check_limit(&mut errs, Some(l)));
    if let Some(r) = &req.roles {
        check_roles(&mut errs, r);
    }
    if let Some(g) = &req.grants {
        check_grants(&mut errs, g);
    }
    errs.into_result()?;
    cluster_exists(&state, &auth, id).await?;
    let shown = password.as_ref().filter(|_| req.rotate_password).map(|p| p.secret().expose_secret().to_owned());
    let roles = req.roles.map(|mut r| {
        r.sort();
        r.dedup();
        r
    });
    let patch =
        UserPatch { password: password.map(AdminPassword::into_secret), connection_limit, roles, grants: req.grants };
    let (u, t) = state.store.update_user(auth.project_id, id, &name, patch).await.map_err(missing("user"))?;
    let task_id = enqueue(&state, &t).await;
    Ok(HttpResponse::Accepted().json(UserAccepted { user: u.into_dto(), password: shown, task_id }))
}

/// Drop a managed user: its sessions end, what it owns goes to the admin role. Refused
/// while it owns a managed database.
#[utoipa::path(delete, path = "/v1/clusters/{id}/users/{name}", tag = "databases",
    params(("id" = Uuid, Path), ("name" = String, Path)), responses(
    (status = 202, body = UserAccepted),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_user(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    cluster_exists(&state, &auth, id).await?;
    let (u, t) = state.store.delete_user(auth.project_id, id, &name).await.map_err(missing("user"))?;
    let task_id = enqueue(&state, &t).await;
    Ok(HttpResponse::Accepted().json(UserAccepted { user: u.into_dto(), password: None, task_id }))
}
