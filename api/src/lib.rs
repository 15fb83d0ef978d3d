//! Herd's REST API (actix-web). The API only records intent: anything that touches
//! servers becomes a task row for the workers.

pub mod auth;
pub mod error;
pub mod feed;
pub mod json;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod state;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use herd_core::config::Settings;
use std::net::{SocketAddr, TcpListener};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::routes::*;
use crate::state::AppState;

pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi::ApiDoc::openapi()
}

/// The spec as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut s = openapi().to_pretty_json().expect("spec serializes");
    s.push('\n');
    s
}

/// All routes and their shared configuration.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state)
        // A path segment that does not parse (a malformed UUID) names no resource.
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::not_found("resource").into()))
        .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::field("query", e.to_string()).into()))
        .configure(health::routes)
        // Outside /v1: nodes authenticate with a per-cluster token, not an API token.
        .service(routes::resource("/callbacks/patroni/{id}").route(web::post().to(callbacks::role_callback)))
        // `/docs` is what people type; Swagger UI lives under `/docs/`.
        .service(routes::resource("/docs").route(web::get().to(docs_redirect)))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi()))
        .service(
            web::scope("/v1")
                .wrap(from_fn(auth::require_token))
                .configure(projects::routes)
                .configure(keys::routes)
                .configure(datastores::routes)
                .configure(flavors::routes)
                .configure(clusters::routes)
                .configure(backups::routes)
                .configure(snapshots::routes)
                .configure(backup_policy::routes)
                .configure(tasks::routes)
                .configure(streams::routes)
                .default_service(web::to(route_not_found)),
        )
        .default_service(web::to(route_not_found));
}

async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect().insert_header((actix_web::http::header::LOCATION, "/docs/")).finish()
}

/// A bound, not yet running, API server.
pub struct Application {
    addr: SocketAddr,
    server: Server,
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port) and prepares the server.
    pub fn build(settings: &Settings, state: AppState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen)?;
        let addr = listener.local_addr()?;
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new().wrap(tracing_actix_web::TracingLogger::default()).configure(|cfg| configure(cfg, state.clone()))
        })
        .shutdown_timeout(5)
        .listen(listener)?
        .run();
        Ok(Self { addr, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
