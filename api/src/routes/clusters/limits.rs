//! The bounds a cluster request is checked against (value rules such as a password's
//! length live with their types in `herd_core::values`).

pub const MAX_NODES: i64 = 9;
pub const MAX_VOLUME_GB: i64 = 16384;
pub(crate) const MAX_PARAMETERS: usize = 200;
/// Largest `maximum_lag_on_failover` accepted: 1 TiB.
pub(crate) const MAX_LAG: i64 = 1 << 40;
pub(crate) const MIN_HOOK_SECRET: usize = 16;
pub(crate) const MAX_HOOK_SECRET: usize = 256;
