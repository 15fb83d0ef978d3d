use actix_web::{HttpResponse, web};
use herd_core::names::validate_display_name;
use herd_core::quota::{MAX_LIMIT, Quota};
use herd_core::status::TokenRole;
use herd_store::StoreError;
use herd_store::{ApiToken, Project};
use herd_types::{CreateProject, CreateToken, CreatedToken, ProjectDto, QuotaLine, QuotasDto, SetQuotas, TokenDto};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::common::PageQuery;
use super::{IntoDto, Page};

use crate::auth::{Auth, Operator, ProjectAdmin};
use crate::error::{ApiError, ErrorCode, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

impl IntoDto for Project {
    type Dto = ProjectDto;
    fn into_dto(self) -> ProjectDto {
        let p = self;
        ProjectDto { id: p.id, name: p.name, created_at: p.created_at }
    }
}

impl IntoDto for ApiToken {
    type Dto = TokenDto;
    fn into_dto(self) -> TokenDto {
        let t = self;
        TokenDto {
            id: t.id,
            project_id: t.project_id,
            name: t.name,
            role: t.role,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_create_project>(web::to(create_project));
    t.add::<__path_list_projects>(web::to(list_projects));
    t.add::<__path_create_token>(web::to(create_token));
    t.add::<__path_list_tokens>(web::to(list_tokens));
    t.add::<__path_revoke_token>(web::to(revoke_token));
    t.add::<__path_get_quotas>(web::to(get_quotas));
    t.add::<__path_set_quotas>(web::to(set_quotas));
}

/// Create a project (operator).
#[utoipa::path(post, path = "/v1/projects", tag = "projects", request_body = CreateProject, responses(
    (status = 201, body = ProjectDto),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_project(
    _: Operator,
    state: web::Data<AppState>,
    JsonBody(req): JsonBody<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    errs.check("name", validate_display_name(&req.name));
    errs.into_result()?;
    let p = state.store.create_project(&req.name).await?;
    Ok(HttpResponse::Created().json(p.into_dto()))
}

/// List projects, oldest first: an operator sees every project, anyone else only their own.
#[utoipa::path(get, path = "/v1/projects", tag = "projects", params(PageQuery), responses(
    (status = 200, body = Page<ProjectDto>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_projects(
    auth: Auth,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, cursor) = super::page_query(&q)?;
    let page = match auth.role {
        TokenRole::Operator => state.store.list_projects(limit, cursor).await?,
        // One project: a cursor (only ever its own id) ends the list.
        TokenRole::Admin | TokenRole::Member => herd_store::Page {
            items: if cursor.is_none() { vec![state.store.get_project(auth.project_id).await?] } else { vec![] },
            next_cursor: None,
        },
    };
    Ok(HttpResponse::Ok().json(super::to_page(page)))
}

/// Create an API token for a project (its admin, or an operator). The token is
/// returned once. Only an operator creates operator tokens.
#[utoipa::path(post, path = "/v1/projects/{id}/tokens", tag = "projects", request_body = CreateToken,
    params(("id" = Uuid, Path)), responses(
    (status = 201, body = CreatedToken),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_token(
    admin: ProjectAdmin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    admin.check(*id)?;
    let role = req.role.unwrap_or(TokenRole::Member);
    if role == TokenRole::Operator && !admin.is_operator() {
        return Err(ApiError::new(ErrorCode::Forbidden, "only an operator may create operator tokens"));
    }
    let name = req.name.unwrap_or_else(|| "token".into());
    let mut errs = Errors::default();
    errs.check("name", validate_display_name(&name));
    errs.into_result()?;
    let (row, token) = state.store.create_token(*id, &name, role).await.map_err(project_not_found)?;
    Ok(HttpResponse::Created().json(CreatedToken { meta: row.into_dto(), token: token.expose_secret().to_owned() }))
}

/// List a project's tokens, oldest first, without their secrets (its admin, or an operator).
#[utoipa::path(get, path = "/v1/projects/{id}/tokens", tag = "projects", params(("id" = Uuid, Path), PageQuery),
    responses(
    (status = 200, body = Page<TokenDto>),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_tokens(
    admin: ProjectAdmin,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    admin.check(*id)?;
    let (limit, cursor) = super::page_query(&q)?;
    let page = state.store.list_tokens(*id, limit, cursor).await.map_err(project_not_found)?;
    Ok(HttpResponse::Ok().json(super::to_page(page)))
}

/// A project's quotas: each limit in force, whether it is the project's own, and what
/// the project holds (its own tokens, or an operator's).
#[utoipa::path(get, path = "/v1/projects/{id}/quotas", tag = "projects", params(("id" = Uuid, Path)), responses(
    (status = 200, body = QuotasDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_quotas(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    if auth.role != TokenRole::Operator && auth.project_id != *id {
        return Err(ApiError::not_found("project"));
    }
    let q = state.store.project_quotas(*id).await.map_err(project_not_found)?;
    Ok(HttpResponse::Ok().json(quotas_dto(*id, &q)))
}

/// Set a project's own limits (operator). Each limit given replaces the default for
/// this project, each absent or `null` returns to it. A limit below current usage is
/// accepted: nothing is removed, requests that would add more are refused.
#[utoipa::path(put, path = "/v1/projects/{id}/quotas", tag = "projects", request_body = SetQuotas,
    params(("id" = Uuid, Path)), responses(
    (status = 200, body = QuotasDto),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn set_quotas(
    _: Operator,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    JsonBody(req): JsonBody<SetQuotas>,
) -> Result<HttpResponse, ApiError> {
    let o = herd_store::Overrides {
        clusters: req.clusters,
        nodes: req.nodes,
        volume_gb: req.volume_gb,
        snapshots: req.snapshots,
        backups: req.backups,
        keys: req.keys,
    };
    let mut errs = Errors::default();
    for q in Quota::ALL {
        if o.get(q).is_some_and(|v| v > MAX_LIMIT) {
            errs.add(q.as_str(), format!("must be from 0 to {MAX_LIMIT}, or null for the default"));
        }
    }
    errs.into_result()?;
    let q = state.store.set_project_quotas(*id, &o).await.map_err(project_not_found)?;
    Ok(HttpResponse::Ok().json(quotas_dto(*id, &q)))
}

fn quotas_dto(project_id: Uuid, q: &herd_store::ProjectQuotas) -> QuotasDto {
    let line =
        |k: Quota| QuotaLine { limit: q.limits.get(k), used: q.used.get(k), overridden: q.overrides.get(k).is_some() };
    QuotasDto {
        project_id,
        clusters: line(Quota::Clusters),
        nodes: line(Quota::Nodes),
        volume_gb: line(Quota::VolumeGb),
        snapshots: line(Quota::Snapshots),
        backups: line(Quota::Backups),
        keys: line(Quota::Keys),
    }
}

/// Revoke a token (its project's admin, or an operator; an operator token only by
/// an operator). Idempotent.
#[utoipa::path(delete, path = "/v1/projects/{id}/tokens/{token_id}", tag = "projects",
    params(("id" = Uuid, Path), ("token_id" = Uuid, Path)), responses(
    (status = 204),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn revoke_token(
    admin: ProjectAdmin,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, token) = *path;
    admin.check(project)?;
    if !admin.is_operator() {
        match state.store.get_token(project, token).await {
            Ok(t) if t.role == TokenRole::Operator => {
                return Err(ApiError::new(ErrorCode::Forbidden, "only an operator may revoke an operator token"));
            }
            Ok(_) | Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    state.store.revoke_token(project, token).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("token"),
        e => e.into(),
    })?;
    Ok(HttpResponse::NoContent().finish())
}

fn project_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("project"),
        e => e.into(),
    }
}
