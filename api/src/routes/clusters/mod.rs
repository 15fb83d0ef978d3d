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

pub fn routes(t: &mut crate::routes::Table) {
    t.add::<lifecycle::__path_create_cluster>(web::to(lifecycle::create_cluster));
    t.add::<lifecycle::__path_list_clusters>(web::to(lifecycle::list_clusters));
    t.add::<lifecycle::__path_get_cluster>(web::to(lifecycle::get_cluster));
    t.add::<settings::__path_update_cluster>(web::to(settings::update_cluster));
    t.add::<lifecycle::__path_delete_cluster>(web::to(lifecycle::delete_cluster));
    t.add::<lifecycle::__path_get_credentials>(web::to(lifecycle::get_credentials));
    t.add::<lifecycle::__path_get_ca>(web::to(lifecycle::get_ca));
    t.add::<lifecycle::__path_list_events>(web::to(lifecycle::list_events));
    t.add::<actions::__path_cluster_action>(web::to(actions::cluster_action));
    t.add::<nodes::__path_add_nodes>(web::to(nodes::add_nodes));
    t.add::<nodes::__path_update_node>(web::to(nodes::update_node));
    t.add::<nodes::__path_remove_node>(web::to(nodes::remove_node));
    t.add::<nodes::__path_power_node>(web::to(nodes::power_node));
}
