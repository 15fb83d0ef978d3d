//! The OpenAPI document, generated from the handlers and DTOs.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorCode, FieldError, Problem};
use crate::routes::*;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herd",
        description = "PostgreSQL clusters as a service. Every `/v1` route needs `Authorization: Bearer <token>`. \
            Errors are RFC 9457 `application/problem+json` with a stable `code`.",
    ),
    paths(
        health::healthz, health::readyz, health::problem_type,
        projects::create_project, projects::list_projects, projects::create_token, projects::list_tokens,
        projects::revoke_token, projects::get_quotas, projects::set_quotas,
        keys::create_key, keys::list_keys, keys::get_key, keys::delete_key,
        datastores::list_datastores, datastores::create_datastore, datastores::create_version,
        datastores::patch_version,
        flavors::list_flavors, flavors::list_providers,
        clusters::lifecycle::create_cluster, clusters::lifecycle::list_clusters, clusters::lifecycle::get_cluster,
        clusters::lifecycle::get_credentials, clusters::lifecycle::get_ca, clusters::lifecycle::list_events, clusters::lifecycle::delete_cluster,
        clusters::settings::update_cluster, clusters::actions::cluster_action, clusters::nodes::power_node,
        clusters::nodes::add_nodes, clusters::nodes::remove_node, clusters::nodes::update_node,
        callbacks::role_callback,
        backups::create_backup, backups::list_backups, backups::get_backup, backups::expire_backup,
        backups::recovery_window,
        snapshots::create_snapshot, snapshots::list_snapshots, snapshots::get_snapshot, snapshots::delete_snapshot,
        backup_policy::put_policy, backup_policy::get_policy, backup_policy::delete_policy,
        managed::create_database, managed::list_databases, managed::get_database, managed::delete_database,
        managed::create_user, managed::list_users, managed::get_user, managed::update_user, managed::delete_user,
        tasks::get_task,
        streams::task_stream, streams::cluster_stream,
    ),
    components(schemas(Problem, FieldError, ErrorCode, herd_core::faults::FaultCode)),
    // Relative: clients name the API's address; the spec works behind any host.
    servers((url = "/")),
    modifiers(&Conventions),
    tags(
        (name = "clusters", description = "PostgreSQL clusters"),
        (name = "backups", description = "Backups, backup policies (schedules and retention) and recovery windows (pgBackRest)"),
        (name = "snapshots", description = "Volume snapshots taken inside an online backup"),
        (name = "databases", description = "A cluster's managed databases and users, with their privileges"),
        (name = "keys", description = "SSH keys for cluster servers"),
        (name = "datastores", description = "Datastore catalogue"),
        (name = "flavors", description = "Providers and their machine sizes"),
        (name = "tasks", description = "Background work"),
        (name = "projects", description = "Tenancy and API tokens (admin)"),
        (name = "health", description = "Probes and problem types"),
    )
)]
pub struct ApiDoc;

/// utoipa inlines a generic's argument, so `Page<ClusterDto>` would carry a copy of
/// `ClusterDto` and SDK generators would make a second class for list items
/// (`PageClusterDtoItemsItem`). Point every `Page_X.items` at `X` itself instead.
fn reference_page_items(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ArrayItems, Schema};
    let pages: Vec<(String, String)> = components
        .schemas
        .keys()
        .filter_map(|name| name.strip_prefix("Page_").map(|item| (name.clone(), item.to_owned())))
        .filter(|(_, item)| components.schemas.contains_key(item))
        .collect();
    for (page, item) in pages {
        if let Some(RefOr::T(Schema::Object(obj))) = components.schemas.get_mut(&page)
            && let Some(RefOr::T(Schema::Array(items))) = obj.properties.get_mut("items")
        {
            items.items = ArrayItems::RefOrSchema(Box::new(RefOr::Ref(Ref::from_schema_name(item))));
        }
    }
}

/// Adds what holds for every route, so handlers only declare their own outcomes:
/// bearer auth and 401 on `/v1`, 400/413/415 where a body is read, 500 everywhere.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        reference_page_items(components);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("herd_...").build()),
        );
        // The nodes' role-change callbacks: signed with a per-member credential Herd
        // writes to each node (see the operation).
        components.add_security_scheme(
            "patroni_callback",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Herd-Signature",
                "sha256=<hex HMAC-SHA256(member credential, \"<X-Herd-Timestamp>.<body>\")>",
            ))),
        );
        for (path, item) in api.paths.paths.iter_mut() {
            let ops: [&mut Option<Operation>; 5] =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
            for op in ops.into_iter().flatten() {
                let mut add = |code: ErrorCode| {
                    let status = code.status().to_string();
                    op.responses.responses.entry(status).or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(code.title())
                            .content(
                                "application/problem+json",
                                ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
                            )
                            .build()
                            .into()
                    });
                };
                if path.starts_with("/v1/") {
                    op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                    add(ErrorCode::Unauthorized);
                }
                if op.request_body.is_some() {
                    add(ErrorCode::MalformedJson);
                    add(ErrorCode::PayloadTooLarge);
                    add(ErrorCode::UnsupportedMediaType);
                }
                add(ErrorCode::Internal);
            }
        }
    }
}
