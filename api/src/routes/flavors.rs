use actix_web::{HttpResponse, web};
use herd_providers::Capabilities;
use herd_types::{CapabilitiesDto, FlavorDto, ProviderDto};

use super::IntoDto;

use crate::auth::Auth;
use crate::state::AppState;
use herd_core::status::TokenRole;

impl IntoDto for Capabilities {
    type Dto = CapabilitiesDto;
    fn into_dto(self) -> CapabilitiesDto {
        let c = self;
        CapabilitiesDto { volumes: c.volumes, snapshots: c.snapshots, power_control: c.power_control }
    }
}

pub fn routes(t: &mut super::Table) {
    t.add::<__path_list_flavors>(web::to(list_flavors));
    t.add::<__path_list_providers>(web::to(list_providers));
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

/// The configured providers and what they can do. Operators also see their settings.
#[utoipa::path(get, path = "/v1/providers", tag = "flavors", responses((status = 200, body = Vec<ProviderDto>)))]
pub async fn list_providers(auth: Auth, state: web::Data<AppState>) -> HttpResponse {
    let list: Vec<ProviderDto> = state
        .providers
        .iter()
        .map(|p| ProviderDto {
            name: p.name().to_owned(),
            kind: p.kind().as_str().to_owned(),
            capabilities: p.capabilities().into_dto(),
            config: (auth.role == TokenRole::Operator).then(|| p.describe()),
        })
        .collect();
    HttpResponse::Ok().json(list)
}
