//! RFC 9457 problem details and the one table of error codes: each code has a fixed
//! HTTP status and title, so clients match on `code` and never on prose.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! codes {
    ($($variant:ident = ($code:literal, $status:literal, $title:literal)),+ $(,)?) => {
        /// Stable machine-readable error codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $(ErrorCode::$variant => $code),+ } }
            /// The HTTP status every response with this code has.
            pub fn status(self) -> u16 { match self { $(ErrorCode::$variant => $status),+ } }
            pub fn title(self) -> &'static str { match self { $(ErrorCode::$variant => $title),+ } }
            pub fn parse(s: &str) -> Option<Self> { match s { $($code => Some(ErrorCode::$variant),)+ _ => None } }
        }

        impl std::fmt::Display for ErrorCode {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

codes! {
    MalformedJson = ("malformed_json", 400, "The request body is not valid JSON"),
    Unauthorized = ("unauthorized", 401, "A valid bearer token is required"),
    Forbidden = ("forbidden", 403, "This action requires the admin role"),
    NotFound = ("not_found", 404, "The resource does not exist"),
    RouteNotFound = ("route_not_found", 404, "No such route"),
    MethodNotAllowed = ("method_not_allowed", 405, "Method not allowed on this route"),
    PayloadTooLarge = ("payload_too_large", 413, "The request body is too large"),
    UnsupportedMediaType = ("unsupported_media_type", 415, "The request body must be application/json"),
    ValidationFailed = ("validation_failed", 422, "The request is invalid"),
    ProjectExists = ("project_exists", 409, "A project with this name exists"),
    TokenExists = ("token_exists", 409, "This token is already registered"),
    KeyExists = ("key_exists", 409, "A key with this name exists"),
    KeyInUse = ("key_in_use", 409, "The key is used by a cluster"),
    ClusterExists = ("cluster_exists", 409, "A cluster with this name exists"),
    DatastoreExists = ("datastore_exists", 409, "The datastore exists"),
    VersionExists = ("version_exists", 409, "The datastore version exists"),
    InvalidState = ("invalid_state", 409, "The resource is not in a state that allows this"),
    Conflict = ("conflict", 409, "The request conflicts with the current state"),
    ClusterBusy = ("cluster_busy", 409, "Another task is changing this cluster"),
    ClusterNotReady = ("cluster_not_ready", 409, "The cluster is not active or degraded"),
    NodeIsPrimary = ("node_is_primary", 409, "The node is the primary"),
    LastNode = ("last_node", 409, "The cluster's last node cannot be removed"),
    TooManyNodes = ("too_many_nodes", 409, "The cluster would exceed the node limit"),
    DatabaseExists = ("database_exists", 409, "A database with this name exists in the cluster"),
    UserExists = ("user_exists", 409, "A user with this name exists in the cluster"),
    UserOwnsDatabase = ("user_owns_database", 409, "The user owns a database; give it another owner or delete it first"),
    QuotaExceeded = ("quota_exceeded", 403, "The project's quota does not allow this"),
    NoReplica = ("no_replica", 409, "The cluster has no replica to promote"),
    BackupsNotConfigured = ("backups_not_configured", 422, "No backup repository is configured for this cluster"),
    SnapshotsUnsupported = ("snapshots_unsupported", 422, "The cluster's provider cannot snapshot volumes"),
    CandidateNotEligible = ("candidate_not_eligible", 422, "The candidate may not become primary"),
    Unavailable = ("unavailable", 503, "A dependency is unavailable"),
    Internal = ("internal_error", 500, "Internal error"),
}

/// One invalid field.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field in the request (`parameters.work_mem`, `limit`).
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// URI reference naming the problem type: `/problems/{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// With `quota_exceeded`: which limit, its value, the usage and what was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<herd_core::quota::Exceeded>,
}
