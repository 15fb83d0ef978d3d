use actix_web::{HttpResponse, web};
use herd_providers::Capabilities;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::state::AppState;
use herd_core::status::TokenRole;

#[derive(Serialize, ToSchema)]
pub struct FlavorDto {
    pub id: String,
    pub provider: String,
    pub vcpus: u32,
    pub ram_mb: u32,
}

#[derive(Serialize, ToSchema)]
pub struct CapabilitiesDto {
    pub volumes: bool,
    pub snapshots: bool,
    pub power_control: bool,
}

impl From<Capabilities> for CapabilitiesDto {
    fn from(c: Capabilities) -> Self {
        Self { volumes: c.volumes, snapshots: c.snapshots, power_control: c.power_control }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderDto {
    pub name: String,
    /// `local` or `ec2`.
    pub kind: String,
    pub capabilities: CapabilitiesDto,
    /// Effective configuration (admins only; never contains secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/flavors").route(web::get().to(list_flavors)))
        .service(super::resource("/providers").route(web::get().to(list_providers)));
}

/// Machine sizes offered by the configured providers.
#[utoipa::path(get, path = "/v1/flavors", tag = "flavors", responses((status = 200, body = Vec<FlavorDto>)))]
pub async fn list_flavors(_: Auth, state: web::Data<AppState>) -> HttpResponse {
    let flavors: Vec<FlavorDto> = state
        .flavors
        .iter()
        .flat_map(|(p, fs)| {
            fs.iter().map(|f| FlavorDto { id: f.id.clone(), provider: p.clone(), vcpus: f.vcpus, ram_mb: f.ram_mb })
        })
        .collect();
    HttpResponse::Ok().json(flavors)
}

/// The configured providers and what they can do. Admins also see their settings.
#[utoipa::path(get, path = "/v1/providers", tag = "flavors", responses((status = 200, body = Vec<ProviderDto>)))]
pub async fn list_providers(auth: Auth, state: web::Data<AppState>) -> HttpResponse {
    let list: Vec<ProviderDto> = state
        .providers
        .iter()
        .map(|p| ProviderDto {
            name: p.name().to_owned(),
            kind: p.kind().as_str().to_owned(),
            capabilities: p.capabilities().into(),
            config: (auth.role == TokenRole::Admin).then(|| p.describe()),
        })
        .collect();
    HttpResponse::Ok().json(list)
}
