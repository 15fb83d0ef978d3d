//! Cluster routes, one module per concern. Submodules import siblings, never this file:
//! `lifecycle` uses `settings`, `nodes`, `restore`, `dto`, `limits`; `settings`,
//! `actions` and `nodes` use `dto` and `limits`.

pub mod actions;
pub mod dto;
pub mod lifecycle;
pub mod limits;
pub mod nodes;
pub mod restore;
pub mod settings;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    use crate::routes::resource;
    cfg.service(
        resource("/clusters")
            .route(web::post().to(lifecycle::create_cluster))
            .route(web::get().to(lifecycle::list_clusters)),
    )
    .service(
        resource("/clusters/{id}")
            .route(web::get().to(lifecycle::get_cluster))
            .route(web::patch().to(settings::update_cluster))
            .route(web::delete().to(lifecycle::delete_cluster)),
    )
    .service(resource("/clusters/{id}/credentials").route(web::get().to(lifecycle::get_credentials)))
    .service(resource("/clusters/{id}/events").route(web::get().to(lifecycle::list_events)))
    .service(resource("/clusters/{id}/actions").route(web::post().to(actions::cluster_action)))
    .service(resource("/clusters/{id}/nodes").route(web::post().to(nodes::add_nodes)))
    .service(
        resource("/clusters/{id}/nodes/{node_id}")
            .route(web::patch().to(nodes::update_node))
            .route(web::delete().to(nodes::remove_node)),
    )
    .service(resource("/clusters/{id}/nodes/{node_id}/power").route(web::post().to(nodes::power_node)));
}
