//! Best-effort records: an event or a status written after the real outcome is known.
//! Failing to write one must not change that outcome (the task already failed, the
//! failover already happened), but it must not vanish silently either.

pub(crate) trait OrWarn {
    /// Logs the error, naming what was not recorded, and goes on.
    fn or_warn(self, what: &str);
}

impl<T, E: std::fmt::Display> OrWarn for Result<T, E> {
    fn or_warn(self, what: &str) {
        if let Err(e) = self {
            tracing::warn!(error = %e, "{what} not recorded");
        }
    }
}
