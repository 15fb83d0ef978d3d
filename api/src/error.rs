//! One error type for the whole API, rendered as RFC 9457 `application/problem+json`.
//! Codes come from one table (`herd_types::ErrorCode`): each has a fixed status and
//! title, so clients can match on `code` and never on prose.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use herd_store::{Conflict, StoreError};

pub use herd_types::{ErrorCode, FieldError, Problem};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub quota: Option<herd_core::quota::Exceeded>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), errors: vec![], quota: None }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self { code: ErrorCode::ValidationFailed, detail, errors, quota: None }
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
            status: self.code.status(),
            detail: self.detail.clone(),
            code: self.code,
            errors: self.errors.clone(),
            quota: self.quota,
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
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
            StoreError::Conflict { kind, message } => ApiError::new(conflict_code(kind), message),
            StoreError::Invalid { field, message } => ApiError::field(field, message),
            StoreError::QuotaExceeded(q) => {
                ApiError { quota: Some(q), ..ApiError::new(ErrorCode::QuotaExceeded, q.to_string()) }
            }
            other => ApiError::internal(&other),
        }
    }
}

/// Each store conflict's code; exhaustive, so a new kind is a compile error here.
fn conflict_code(kind: Conflict) -> ErrorCode {
    match kind {
        Conflict::ProjectExists => ErrorCode::ProjectExists,
        Conflict::TokenExists => ErrorCode::TokenExists,
        Conflict::KeyExists => ErrorCode::KeyExists,
        Conflict::KeyInUse => ErrorCode::KeyInUse,
        Conflict::ClusterExists => ErrorCode::ClusterExists,
        Conflict::DatastoreExists => ErrorCode::DatastoreExists,
        Conflict::VersionExists => ErrorCode::VersionExists,
        Conflict::InvalidState => ErrorCode::InvalidState,
        Conflict::ClusterBusy => ErrorCode::ClusterBusy,
        Conflict::ClusterNotReady => ErrorCode::ClusterNotReady,
        Conflict::NodeIsPrimary => ErrorCode::NodeIsPrimary,
        Conflict::LastNode => ErrorCode::LastNode,
        Conflict::TooManyNodes => ErrorCode::TooManyNodes,
        Conflict::DatabaseExists => ErrorCode::DatabaseExists,
        Conflict::UserExists => ErrorCode::UserExists,
        Conflict::UserOwnsDatabase => ErrorCode::UserOwnsDatabase,
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

    /// Ends validation: the field errors if there are any, else the checked values
    /// unwrapped. A check leaves a value `None` only after adding its error, so with no
    /// errors every value is there; one missing anyway is a handler bug and answers
    /// 500 (logged) instead of panicking.
    pub fn finish<T: Checked>(self, values: T) -> Result<T::Values, ApiError> {
        self.into_result()?;
        values.all().ok_or_else(|| ApiError::internal(&MissingValue))
    }
}

#[derive(Debug)]
struct MissingValue;

impl std::fmt::Display for MissingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a value that passed validation is missing")
    }
}

impl std::error::Error for MissingValue {}

/// Values that validation produced, each `None` where a check failed.
pub trait Checked {
    type Values;
    fn all(self) -> Option<Self::Values>;
}

impl<A> Checked for Option<A> {
    type Values = A;
    fn all(self) -> Option<A> {
        self
    }
}

impl<A, B> Checked for (Option<A>, Option<B>) {
    type Values = (A, B);
    fn all(self) -> Option<(A, B)> {
        Some((self.0?, self.1?))
    }
}

impl<A, B, C> Checked for (Option<A>, Option<B>, Option<C>) {
    type Values = (A, B, C);
    fn all(self) -> Option<(A, B, C)> {
        Some((self.0?, self.1?, self.2?))
    }
}
