use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A page of items and the opaque cursor of the next page (absent on the last page).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
