//! Test hook: `HERD_TEST_EXIT_AFTER_STEP=<step>` makes the worker process exit right
//! after it has checkpointed that step, the way a crash or a kill would stop it. Tests
//! use it to prove that every step resumes. Not a setting; never set it in production.

pub const ENV: &str = "HERD_TEST_EXIT_AFTER_STEP";
/// Exit status of a process stopped by the hook, distinct from real failures.
pub const EXIT_CODE: i32 = 86;

pub fn after_step(step: &str) {
    if std::env::var(ENV).is_ok_and(|s| s == step) {
        tracing::warn!(step, "test hook: exiting after step");
        std::process::exit(EXIT_CODE);
    }
}
