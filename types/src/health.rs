use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ErrorCode;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when the check passed.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProblemType {
    pub code: ErrorCode,
    pub status: u16,
    pub title: String,
}
