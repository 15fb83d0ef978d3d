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
pub mod managed;
pub mod projects;
pub mod snapshots;
pub mod streams;
pub mod tasks;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, Resource, Route, web};
use utoipa::openapi::path::HttpMethod;

use crate::error::{ApiError, ErrorCode};

/// The routing table of one scope. A handler is added with the path and method its
/// `#[utoipa::path]` declares, the one place either is written; routes are grouped
/// by path into one actix resource each, so a wrong method on a known path is a 405.
pub struct Table {
    prefix: &'static str,
    resources: Vec<(String, Vec<Route>)>,
    operations: Vec<(String, Method)>,
}

impl Table {
    /// A table for the scope mounted at `prefix` (`""` for the root).
    pub fn new(prefix: &'static str) -> Self {
        Self { prefix, resources: Vec::new(), operations: Vec::new() }
    }

    /// Routes `handler` (`web::to(f)`) where `P`, the `__path_f` of `f`'s
    /// `#[utoipa::path]`, says. Panics at start-up, in every API test, if the
    /// documented path is outside this scope or names other than one method.
    pub fn add<P: utoipa::Path>(&mut self, handler: Route) -> &mut Self {
        let path = P::path();
        let methods = P::methods();
        let [method] = methods.as_slice() else { panic!("{path}: one method per handler, not {}", methods.len()) };
        let local = path
            .strip_prefix(self.prefix)
            .filter(|l| l.starts_with('/'))
            .unwrap_or_else(|| panic!("{path} is documented outside {}", self.prefix));
        let method = actix_method(method);
        let route = handler.method(method.clone());
        match self.resources.iter_mut().find(|(p, _)| p == local) {
            Some((_, routes)) => routes.push(route),
            None => self.resources.push((local.to_owned(), vec![route])),
        }
        self.operations.push((path.clone(), method));
        self
    }

    /// Every (documented path, method) added.
    pub fn operations(&self) -> &[(String, Method)] {
        &self.operations
    }

    /// One resource per path; a method it does not route answers 405 problem+json
    /// (actix's default is an empty 405 body).
    pub fn register(self, cfg: &mut web::ServiceConfig) {
        for (path, routes) in self.resources {
            let resource = web::resource(path).default_service(web::to(method_not_allowed));
            cfg.service(routes.into_iter().fold(resource, Resource::route));
        }
    }
}

fn actix_method(m: &HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// A resource outside the documented API (`/docs`) that still answers 405 problem+json.
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

/// A store page as its wire form.
pub(crate) fn to_page<T: IntoDto>(p: herd_store::Page<T>) -> Page<T::Dto> {
    Page {
        items: p.items.into_iter().map(IntoDto::into_dto).collect(),
        next_cursor: p.next_cursor.map(|c| c.to_string()),
    }
}

/// `limit` and `cursor` of a [`common::PageQuery`], or a 422 naming what is wrong.
pub(crate) fn page_query(q: &common::PageQuery) -> Result<(u64, Option<uuid::Uuid>), crate::error::ApiError> {
    let mut errs = crate::error::Errors::default();
    let p = page_params(q.limit.as_deref(), q.cursor.as_deref(), &mut errs);
    errs.into_result()?;
    Ok(p)
}

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
