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

/// The routes outside `/v1`: probes, problem types, Patroni's callbacks.
pub fn root_routes() -> Table {
    let mut t = Table::new("");
    health::routes(&mut t);
    callbacks::routes(&mut t);
    t
}

/// The routes under `/v1`, behind an API token.
pub fn v1_routes() -> Table {
    let mut t = Table::new("/v1");
    projects::routes(&mut t);
    keys::routes(&mut t);
    datastores::routes(&mut t);
    flavors::routes(&mut t);
    clusters::routes(&mut t);
    backups::routes(&mut t);
    snapshots::routes(&mut t);
    managed::routes(&mut t);
    backup_policy::routes(&mut t);
    tasks::routes(&mut t);
    streams::routes(&mut t);
    t
}

/// All routes and their shared configuration.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state)
        // A path segment that does not parse (a malformed UUID) names no resource.
        .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::not_found("resource").into()))
        .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::field("query", e.to_string()).into()))
        // `/docs` is what people type; Swagger UI lives under `/docs/`.
        .service(routes::resource("/docs").route(web::get().to(docs_redirect)))
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi()))
        .configure(|cfg| root_routes().register(cfg))
        .service(
            web::scope("/v1")
                .wrap(from_fn(auth::require_token))
                .configure(|cfg| v1_routes().register(cfg))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The spec and the router agree: every documented operation is routed and every
    /// routed one documented (the derive's `paths(...)` list and the tables name the
    /// handlers; only `#[utoipa::path]` names their paths).
    #[test]
    fn the_spec_and_the_router_list_the_same_operations() {
        let routed: BTreeSet<(String, String)> = super::root_routes()
            .operations()
            .iter()
            .chain(super::v1_routes().operations())
            .map(|(p, m)| (p.clone(), m.as_str().to_lowercase()))
            .collect();
        let doc = super::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
                ("options", &item.options),
                ("head", &item.head),
                ("patch", &item.patch),
                ("trace", &item.trace),
            ];
            for (m, op) in ops {
                if op.is_some() {
                    documented.insert((path.clone(), m.to_owned()));
                }
            }
        }
        assert!(routed.len() > 40, "{routed:?}");
        assert_eq!(routed, documented);
        assert_eq!(
            super::v1_routes().operations().len() + super::root_routes().operations().len(),
            routed.len(),
            "no operation added twice"
        );
    }
}
