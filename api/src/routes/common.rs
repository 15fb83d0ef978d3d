//! What every resource's handlers share: page queries and the store-error mapping.

use herd_store::StoreError;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–100, default 50.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

pub(crate) fn not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("cluster"),
        e => e.into(),
    }
}
