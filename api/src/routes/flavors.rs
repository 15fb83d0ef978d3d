use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct FlavorDto {
    pub id: String,
    pub provider: String,
    pub vcpus: u32,
    pub ram_mb: u32,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/flavors").route(web::get().to(list_flavors)));
}

/// Machine sizes offered by the configured providers.
#[utoipa::path(get, path = "/v1/flavors", tag = "flavors", responses((status = 200, body = Vec<FlavorDto>)))]
pub async fn list_flavors(_: Auth, state: web::Data<AppState>) -> HttpResponse {
    let flavors: Vec<FlavorDto> = state
        .providers
        .iter()
        .flat_map(|p| {
            p.flavors.iter().map(|f| FlavorDto {
                id: f.id.clone(),
                provider: p.name.clone(),
                vcpus: f.vcpus,
                ram_mb: f.ram_mb,
            })
        })
        .collect();
    HttpResponse::Ok().json(flavors)
}
