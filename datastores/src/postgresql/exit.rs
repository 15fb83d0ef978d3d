//! Exit codes the manager's shell commands and scripts report through, each read
//! by exactly one matcher. Scripts get theirs as an argument, so the number is
//! written here alone.

/// A control script is missing: configure has not run on the node.
pub const NOT_CONFIGURED: i32 = 3;
/// The volume's block device is not attached (yet): retry.
pub const DEVICE_ABSENT: i32 = 10;
/// The volume's directory is not present (yet): retry.
pub const VOLUME_DIR_ABSENT: i32 = 11;
/// A service user cannot use its directories: a parent is not searchable.
pub const NOT_WRITABLE: i32 = 12;
/// A snapshot's volume holds no data directory of its source: not retryable.
pub const NO_SNAPSHOT_DATA: i32 = 13;
