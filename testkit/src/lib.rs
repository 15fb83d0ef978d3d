//! What Herd's integration tests share (a dev-dependency only, never shipped):
//!
//! - [`Subnet`]: a loopback /24 of a test's own. Claims are file locks, so two tests
//!   never get the same addresses, whether they run in one test binary or in several at
//!   once, and a crashed test's claim ends with its process.
//! - [`eventually`] / [`eventually_async`]: poll with a deadline instead of sleeping.
//! - [`costly_openssh_key`]: an encrypted key file whose KDF cost is the caller's.
//! - [`TempPgDb`]: a fresh database on the machine's PostgreSQL, dropped afterwards
//!   even when the test panics.

mod keys;
mod pg;
mod poll;
mod subnet;

pub use keys::costly_openssh_key;
pub use pg::{TempPgDb, pg_admin_url};
pub use poll::{eventually, eventually_async};
pub use subnet::Subnet;
