use sea_orm::{DbErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or state conflict; `code` is the stable API error code.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request names something that does not exist or is not usable.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("stored secret could not be decrypted")]
    Crypto(#[from] herd_core::crypto::CryptoError),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
}

impl StoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    /// Maps a unique-constraint violation to a conflict, anything else to `Db`.
    pub(crate) fn unique(e: DbErr, code: &'static str, message: impl Into<String>) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::conflict(code, message),
            _ => Self::Db(e),
        }
    }
}
