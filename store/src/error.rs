use sea_orm::{DbErr, SqlErr};

/// Why a write does not fit what is stored. The API gives each its own error code
/// (an exhaustive match: a new kind cannot fall back to a generic conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    ProjectExists,
    TokenExists,
    KeyExists,
    KeyInUse,
    ClusterExists,
    DatastoreExists,
    VersionExists,
    /// The resource is in a state that does not allow the change (being deleted, say).
    InvalidState,
    /// Another task is changing the cluster.
    ClusterBusy,
    /// The cluster is not active or degraded.
    ClusterNotReady,
    NodeIsPrimary,
    LastNode,
    TooManyNodes,
    DatabaseExists,
    UserExists,
    UserOwnsDatabase,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or state conflict.
    #[error("{message}")]
    Conflict { kind: Conflict, message: String },
    /// The request names something that does not exist or is not usable.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The project's quota does not allow what the request adds.
    #[error("{0}")]
    QuotaExceeded(herd_core::quota::Exceeded),
    #[error("stored secret could not be decrypted")]
    Crypto(#[from] herd_core::crypto::CryptoError),
    /// The database failed or was unreachable (workers retry these).
    #[error("database error: {0}")]
    Db(DbError),
}

/// A database failure, opaque outside the store (sea-orm's error type stays inside).
#[derive(Debug)]
pub struct DbError(pub(crate) DbErr);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        Self::Db(DbError(e))
    }
}

impl StoreError {
    pub fn conflict(kind: Conflict, message: impl Into<String>) -> Self {
        Self::Conflict { kind, message: message.into() }
    }

    /// Maps a unique-constraint violation to a conflict, anything else to `Db`.
    pub(crate) fn unique(e: DbErr, kind: Conflict, message: impl Into<String>) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::conflict(kind, message),
            _ => e.into(),
        }
    }
}
