//! One module per resource: its DTOs, handlers and routes.

pub mod backup_policy;
pub mod backups;
pub mod callbacks;
pub mod clusters;
pub mod common;
pub mod datastores;
pub mod flavors;
pub mod health;
pub mod keys;
pub mod projects;
pub mod snapshots;
pub mod streams;
pub mod tasks;

use actix_web::{HttpRequest, HttpResponse, Resource, web};

use crate::error::{ApiError, ErrorCode};

/// A resource whose unmatched methods answer 405 problem+json (actix's default is an
/// empty 405 body).
pub(crate) fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.path())))
}

pub(crate) async fn route_not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::RouteNotFound, format!("no route for {} {}", req.method(), req.path())))
}

pub use herd_types::Page;

/// A store entity (or view) turned into its wire type. A trait of this crate because
/// both sides are foreign here: entities live in `herd-store`, DTOs in `herd-types`.
pub(crate) trait IntoDto {
    type Dto;
    fn into_dto(self) -> Self::Dto;
}

pub(crate) const DEFAULT_PAGE: u64 = 50;

/// Parses `limit` and `cursor` query parameters, reporting every problem at once.
pub(crate) fn page_params(
    limit: Option<&str>,
    cursor: Option<&str>,
    errs: &mut crate::error::Errors,
) -> (u64, Option<uuid::Uuid>) {
    let limit = match limit {
        None => DEFAULT_PAGE,
        Some(l) => match l.parse::<u64>() {
            Ok(n) if (1..=herd_store::MAX_PAGE).contains(&n) => n,
            _ => {
                errs.add("limit", format!("must be an integer from 1 to {}", herd_store::MAX_PAGE));
                DEFAULT_PAGE
            }
        },
    };
    let cursor = cursor.filter(|c| !c.is_empty()).and_then(|c| match uuid::Uuid::parse_str(c) {
        Ok(u) => Some(u),
        Err(_) => {
            errs.add("cursor", "is not a cursor returned by this API");
            None
        }
    });
    (limit, cursor)
}
