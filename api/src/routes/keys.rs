use actix_web::{HttpResponse, web};
use herd_core::names::validate_display_name;
use herd_core::sshkey;
use herd_store::SshKey;
use herd_types::{CreateKey, KeyDto};
use uuid::Uuid;

use super::common::PageQuery;
use super::{IntoDto, Page};

use crate::auth::Auth;
use crate::error::{ApiError, Errors, Problem};
use crate::json::JsonBody;
use crate::state::AppState;

impl IntoDto for SshKey {
    type Dto = KeyDto;
    fn into_dto(self) -> KeyDto {
        let k = self;
        KeyDto {
            id: k.id,
            name: k.name,
            algorithm: k.algorithm,
            public_key: k.public_key,
            fingerprint: k.fingerprint,
            imported: k.imported,
            created_at: k.created_at,
        }
    }
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_create_key>(web::to(create_key));
    t.add::<__path_list_keys>(web::to(list_keys));
    t.add::<__path_get_key>(web::to(get_key));
    t.add::<__path_delete_key>(web::to(delete_key));
}

/// Generate or import an SSH key (counts against the project's `keys` quota).
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey, responses(
    (status = 201, body = KeyDto),
    (status = 403, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn create_key(
    auth: Auth,
    state: web::Data<AppState>,
    JsonBody(req): JsonBody<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let mut errs = Errors::default();
    errs.check("name", validate_display_name(&req.name));
    let material = match req.private_key {
        None => Some(sshkey::generate_ed25519()),
        Some(pk) => errs.check("private_key", import_off_thread(pk, req.passphrase).await?),
    };
    let material = errs.finish(material)?;
    let key = state.store.create_key(auth.project_id, &req.name, &material, None).await?;
    Ok(HttpResponse::Created().json(key.into_dto()))
}

/// List the project's keys, oldest first.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(PageQuery), responses(
    (status = 200, body = Page<KeyDto>),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn list_keys(
    auth: Auth,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, cursor) = super::page_query(&q)?;
    Ok(HttpResponse::Ok().json(super::to_page(state.store.list_keys(auth.project_id, limit, cursor).await?)))
}

/// Show a key.
#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys", params(("id" = Uuid, Path)), responses(
    (status = 200, body = KeyDto),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
pub async fn get_key(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    let key = state.store.get_key(auth.project_id, *id).await.map_err(not_found)?;
    Ok(HttpResponse::Ok().json(key.into_dto()))
}

/// Delete a key that no cluster uses.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = Uuid, Path)), responses(
    (status = 204),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 409, body = Problem, content_type = "application/problem+json"),
))]
pub async fn delete_key(auth: Auth, state: web::Data<AppState>, id: web::Path<Uuid>) -> Result<HttpResponse, ApiError> {
    state.store.delete_key(auth.project_id, *id).await.map_err(not_found)?;
    Ok(HttpResponse::NoContent().finish())
}

fn not_found(e: herd_store::StoreError) -> ApiError {
    match e {
        herd_store::StoreError::NotFound => ApiError::not_found("key"),
        e => e.into(),
    }
}

/// How long decrypting an imported key may take. The KDF caps in `sshkey` bound it
/// (about a second at the caps); this bounds it if a cap is ever wrong.
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Parses (and decrypts) a key on the blocking pool: a key derivation must not hold
/// an API thread, or `/healthz` stops answering.
async fn import_off_thread(
    pem: secrecy::SecretString,
    passphrase: Option<secrecy::SecretString>,
) -> Result<Result<sshkey::KeyMaterial, String>, ApiError> {
    let work = web::block(move || sshkey::import(&pem, passphrase.as_ref()).map_err(|e| e.to_string()));
    match actix_web::rt::time::timeout(IMPORT_TIMEOUT, work).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(ApiError::internal(&e)),
        Err(_) => Ok(Err(format!(
            "took more than {}s to decrypt; re-encrypt it with default settings",
            IMPORT_TIMEOUT.as_secs()
        ))),
    }
}
