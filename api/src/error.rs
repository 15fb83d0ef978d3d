//! One error type for the whole API, rendered as RFC 9457 `application/problem+json`.
//! Codes come from one table (`ErrorCode`): each has a fixed status and title, so
//! clients can match on `code` and never on prose.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use herd_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

macro_rules! codes {
    ($($variant:ident = ($code:literal, $status:expr, $title:literal)),+ $(,)?) => {
        /// Stable machine-readable error codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $(ErrorCode::$variant => $code),+ } }
            pub fn status(self) -> StatusCode { match self { $(ErrorCode::$variant => $status),+ } }
            pub fn title(self) -> &'static str { match self { $(ErrorCode::$variant => $title),+ } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($code => Some(ErrorCode::$variant),)+ _ => None } }
        }
    };
}

codes! {
    MalformedJson = ("malformed_json", StatusCode::BAD_REQUEST, "The request body is not valid JSON"),
    Unauthorized = ("unauthorized", StatusCode::UNAUTHORIZED, "A valid bearer token is required"),
    Forbidden = ("forbidden", StatusCode::FORBIDDEN, "This action requires the admin role"),
    NotFound = ("not_found", StatusCode::NOT_FOUND, "The resource does not exist"),
    RouteNotFound = ("route_not_found", StatusCode::NOT_FOUND, "No such route"),
    MethodNotAllowed = ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED, "Method not allowed on this route"),
    PayloadTooLarge = ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large"),
    UnsupportedMediaType = ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE, "The request body must be application/json"),
    ValidationFailed = ("validation_failed", StatusCode::UNPROCESSABLE_ENTITY, "The request is invalid"),
    ProjectExists = ("project_exists", StatusCode::CONFLICT, "A project with this name exists"),
    KeyExists = ("key_exists", StatusCode::CONFLICT, "A key with this name exists"),
    KeyInUse = ("key_in_use", StatusCode::CONFLICT, "The key is used by a cluster"),
    ClusterExists = ("cluster_exists", StatusCode::CONFLICT, "A cluster with this name exists"),
    DatastoreExists = ("datastore_exists", StatusCode::CONFLICT, "The datastore exists"),
    VersionExists = ("version_exists", StatusCode::CONFLICT, "The datastore version exists"),
    InvalidState = ("invalid_state", StatusCode::CONFLICT, "The resource is not in a state that allows this"),
    Conflict = ("conflict", StatusCode::CONFLICT, "The request conflicts with the current state"),
    ClusterBusy = ("cluster_busy", StatusCode::CONFLICT, "Another task is changing this cluster"),
    ClusterNotReady = ("cluster_not_ready", StatusCode::CONFLICT, "The cluster is not active or degraded"),
    NodeIsPrimary = ("node_is_primary", StatusCode::CONFLICT, "The node is the primary"),
    LastNode = ("last_node", StatusCode::CONFLICT, "The cluster's last node cannot be removed"),
    TooManyNodes = ("too_many_nodes", StatusCode::CONFLICT, "The cluster would exceed the node limit"),
    NoReplica = ("no_replica", StatusCode::CONFLICT, "The cluster has no replica to promote"),
    BackupsNotConfigured = ("backups_not_configured", StatusCode::UNPROCESSABLE_ENTITY, "No backup repository is configured for this cluster"),
    SnapshotsUnsupported = ("snapshots_unsupported", StatusCode::UNPROCESSABLE_ENTITY, "The cluster's provider cannot snapshot volumes"),
    CandidateNotEligible = ("candidate_not_eligible", StatusCode::UNPROCESSABLE_ENTITY, "The candidate may not become primary"),
    Unavailable = ("unavailable", StatusCode::SERVICE_UNAVAILABLE, "A dependency is unavailable"),
    Internal = ("internal_error", StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
}

/// One invalid field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field in the request (`parameters.work_mem`, `limit`).
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI reference naming the problem type: `/problems/{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), errors: vec![] }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self { code: ErrorCode::ValidationFailed, detail, errors }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.into(), message: message.into() }])
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// Logs the full cause chain server-side; the client only learns that it failed.
    pub fn internal(err: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = err.to_string();
        let mut src = err.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(error = %chain, "request failed");
        Self::new(ErrorCode::Internal, "an internal error occurred; it has been logged")
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("/problems/{}", self.code.as_str()),
            title: self.code.title().to_owned(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            errors: self.errors.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        if self.code == ErrorCode::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        res.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::Conflict { code, message } => {
                ApiError::new(ErrorCode::parse(code).unwrap_or(ErrorCode::Conflict), message)
            }
            StoreError::Invalid { field, message } => ApiError::field(field, message),
            other => ApiError::internal(&other),
        }
    }
}

/// Collects field errors so a request learns about all of them at once.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    /// Records the error of a check, if any.
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, r: Result<T, E>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(field, e.to_string());
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::validation(self.0)) }
    }
}
