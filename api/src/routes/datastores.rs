use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use herd_core::names::{validate_identifier, validate_package};
use herd_datastores::Profile;
use herd_store::{StoreError, VersionPatch, VersionSpec};
use herd_types::{CreateDatastore, CreateVersion, DatastoreDto, PatchVersion, VersionDto};

use super::common::PageQuery;
use super::{IntoDto, Page};

use crate::auth::{Auth, Operator};
use crate::error::{ApiError, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

impl IntoDto for VersionSpec {
    type Dto = VersionDto;
    fn into_dto(self) -> VersionDto {
        let v = self;
        VersionDto { version: v.version, active: v.active, packages: v.packages, images: v.images }
    }
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_list_datastores>(web::to(list_datastores));
    t.add::<__path_create_datastore>(web::to(create_datastore));
    t.add::<__path_create_version>(web::to(create_version));
    t.add::<__path_patch_version>(web::to(patch_version));
}

fn check_packages(errs: &mut Errors, field: &str, packages: &[String]) {
    if packages.is_empty() {
        errs.add(field, "must list at least one package");
    }
    for (i, p) in packages.iter().enumerate() {
        errs.check(&format!("{field}[{i}]"), validate_package(p));
    }
}

fn check_images(errs: &mut Errors, field: &str, images: &BTreeMap<String, String>) {
    for (provider, image) in images {
        errs.check(
            &format!("{field}.{provider}"),
            validate_identifier(provider).map_err(|e| format!("provider name {e}")),
        );
        if image.is_empty() || image.len() > 255 || image.chars().any(char::is_whitespace) {
            errs.add(format!("{field}.{provider}"), "must be a non-empty image id without whitespace");
        }
    }
}

/// `profile` is the datastore's manager (None when the request named an unknown one,
/// which is reported on its own field): it decides what a version name means.
fn check_version(errs: &mut Errors, prefix: &str, profile: Option<&dyn Profile>, v: &CreateVersion) {
    let field = format!("{prefix}version");
    errs.check(&field, validate_identifier(&v.version));
    if let Some(Err(e)) = profile.map(|p| p.check_version(&v.version)) {
        errs.add(field, e);
    }
    check_packages(errs, &format!("{prefix}packages"), &v.packages);
    check_images(errs, &format!("{prefix}images"), &v.images);
}

fn spec(v: CreateVersion) -> VersionSpec {
    VersionSpec { version: v.version, active: v.active.unwrap_or(true), packages: v.packages, images: v.images }
}

impl IntoDto for (herd_store::Datastore, Vec<VersionSpec>) {
    type Dto = DatastoreDto;
    fn into_dto(self) -> DatastoreDto {
        let (d, vs) = self;
        DatastoreDto { name: d.name, manager: d.manager, versions: vs.into_iter().map(IntoDto::into_dto).collect() }
    }
}

/// The datastore catalogue with every version, oldest datastore first.
#[utoipa::path(get, path = "/v1/datastores", tag = "datastores", params(PageQuery), responses(
    (status = 200, body = Page<DatastoreDto>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_datastores(
    _: Auth,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, cursor) = super::page_query(&q)?;
    Ok(HttpResponse::Ok().json(super::to_page(state.store.list_datastores(limit, cursor).await?)))
}

/// Register a datastore (operator).
#[utoipa::path(post, path = "/v1/datastores", tag = "datastores", request_body = CreateDatastore, responses(
    (status = 201, body = DatastoreDto),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_datastore(
    _: Operator,
    state: web::Data<AppState>,
    JsonBody(req): JsonBody<CreateDatastore>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    errs.check("name", validate_identifier(&req.name));
    let profile = state.managers.get(&req.manager).map(|m| &*m.profile);
    if profile.is_none() {
        errs.add("manager", format!("must be one of: {}", state.managers.names().collect::<Vec<_>>().join(", ")));
    }
    for (i, v) in req.versions.iter().enumerate() {
        check_version(&mut errs, &format!("versions[{i}]."), profile, v);
    }
    errs.into_result()?;
    let ds = state.store.create_datastore(&req.name, &req.manager).await?;
    let mut versions = Vec::new();
    for v in req.versions {
        versions.push(state.store.add_version(&ds.name, &spec(v)).await?.into_dto());
    }
    Ok(HttpResponse::Created().json(DatastoreDto { name: ds.name, manager: ds.manager, versions }))
}

/// Add a version to a datastore (operator: its packages are installed as root).
#[utoipa::path(post, path = "/v1/datastores/{name}/versions", tag = "datastores", request_body = CreateVersion,
    params(("name" = String, Path)), responses(
    (status = 201, body = VersionDto),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_version(
    _: Operator,
    state: web::Data<AppState>,
    name: web::Path<String>,
    JsonBody(req): JsonBody<CreateVersion>,
) -> Result<HttpResponse, ApiError> {
    let ds = state.store.get_datastore(&name).await.map_err(ds_not_found)?;
    let mut errs = Errors::default();
    check_version(&mut errs, "", state.managers.get(&ds.manager).map(|m| &*m.profile), &req);
    errs.into_result()?;
    let v = state.store.add_version(&name, &spec(req)).await.map_err(ds_not_found)?;
    Ok(HttpResponse::Created().json(v.into_dto()))
}

/// Change a version: activate/deactivate, packages, images (operator).
#[utoipa::path(patch, path = "/v1/datastores/{name}/versions/{version}", tag = "datastores", request_body = PatchVersion,
    params(("name" = String, Path), ("version" = String, Path)), responses(
    (status = 200, body = VersionDto),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn patch_version(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    JsonBody(req): JsonBody<PatchVersion>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    if let Some(p) = &req.packages {
        check_packages(&mut errs, "packages", p);
    }
    if let Some(i) = &req.images {
        check_images(&mut errs, "images", i);
    }
    errs.into_result()?;
    let (name, version) = path.into_inner();
    let patch = VersionPatch { active: req.active, packages: req.packages, images: req.images };
    let v = state.store.update_version(&name, &version, patch).await.map_err(ds_not_found)?;
    Ok(HttpResponse::Ok().json(v.into_dto()))
}

fn ds_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("datastore or version"),
        e => e.into(),
    }
}
