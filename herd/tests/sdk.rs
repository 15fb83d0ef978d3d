//! The generated SDKs (`openapi/sdk`): `run-smoke.sh` generates the Python and the
//! TypeScript client from the committed spec (failing on any generator warning), then
//! each language's smoke program drives a real `herd dev` through its client only:
//! datastores, a one-node cluster to `active`, SQL through the credentials' URI, a typed
//! `Problem` for an invalid request, delete and the 404 after.
//! Needs python3 (>= 3.11, with venv) and node (>= 18) with npm; the first run installs
//! the pinned generators from PyPI and npm.

mod common;

use common::Env;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The line each program prints per step (after its `[py …s]` / `[ts …s]` prefix).
const STEPS: &[&str] = &[
    "datastores: postgresql 15",
    "created cluster sdk-test-",
    "cluster active (1 node)",
    "sql: created table, inserted and read back 'hello from sdk-test-",
    "invalid create: 422 validation_failed fields=name,nodes",
    "succeeded, cluster now 404 not_found",
];

fn tool_version(cmd: &str) -> Option<String> {
    let out = Command::new(cmd).arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn generated_python_and_typescript_sdks_drive_herd_dev() {
    for tool in ["python3", "node", "npm"] {
        assert!(tool_version(tool).is_some(), "{tool} is needed to generate and run the SDKs");
    }
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "openapi", "sdk", "run-smoke.sh"].iter().collect();
    assert!(script.exists(), "{}", script.display());

    let env = Env::new();
    let (dev, api, token) = env.dev(&[], "dev.log");

    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .env("HERD_URL", &api)
        .env("HERD_TOKEN", &token)
        .env("HERD_SMOKE_NAME", "sdk-test")
        .env("HERD_SMOKE_TIMEOUT", "240")
        // The committed spec, and its warnings are failures.
        .env_remove("HERD_OPENAPI_SPEC")
        .env_remove("HERD_SDK_ALLOW_WARNINGS")
        .output()
        .expect("bash runs openapi/sdk/run-smoke.sh");
    let elapsed = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = || {
        format!(
            "after {elapsed:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}\n--- herd dev log:\n{}",
            dev.log_text()
        )
    };
    assert!(out.status.success(), "run-smoke.sh exited with {:?} {}", out.status.code(), report());

    for (lang, tag) in [("python", "[py "), ("typescript", "[ts ")] {
        for step in STEPS {
            assert!(
                stdout.lines().any(|l| l.starts_with(tag) && l.contains(step)),
                "{lang}: no line with {step:?} {}",
                report()
            );
        }
        assert!(stdout.contains(&format!("{lang} smoke: OK")), "{lang} did not finish {}", report());
        assert!(stdout.contains(&format!("== {lang} smoke passed")), "{}", report());
    }

    // Both programs deleted their clusters: no server, volume or daemon is left.
    assert_eq!(env.servers(), Vec::<String>::new(), "server directories left");
    assert_eq!(env.volumes(), Vec::<String>::new(), "volume directories left");
    let stray = env.stray_pids();
    assert!(stray.is_empty(), "processes left: {stray:?}");
    drop(dev);
}
