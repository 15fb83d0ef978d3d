//! The `herd` binary as a user runs it.

mod common;

use herd_testkit::eventually;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_herd");

/// Kills the child when the test ends, pass or fail.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn herd() -> Command {
    let mut c = Command::new(BIN);
    // Hermetic: no settings leak in from the developer's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("HERD_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn openapi_subcommand_prints_the_committed_spec() {
    let out = herd().arg("openapi").output().unwrap();
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), committed);
}

#[test]
fn config_file_env_and_test_hooks_are_not_settings_but_typos_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.toml");
    std::fs::write(&file, "log_level = \"warn\"\n").unwrap();
    let ok = herd().arg("openapi").env("HERD_CONFIG", &file).env("HERD_TEST_ANYTHING", "1").output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = herd().arg("openapi").env("HERD_LISTN", "127.0.0.1:1").output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("listn"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn compose_file_runs_real_subcommands_with_real_settings() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let subcommands = herd::cli::subcommand_names();
    let settings = herd_core::config::Settings::env_var_names();
    let mut herd_services = 0;
    for (name, svc) in doc["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let Some(cmd) = svc.get("command").and_then(|c| c.as_sequence()) else { continue };
        if cmd.first().and_then(|c| c.as_str()) != Some("herd") {
            continue;
        }
        herd_services += 1;
        let sub = cmd.get(1).and_then(|c| c.as_str()).unwrap_or_default();
        assert!(
            subcommands.iter().any(|s| s == sub),
            "service {name}: `herd {sub}` is not a subcommand of {subcommands:?}"
        );
        // serde_yaml resolves the `<<` merge key only on request.
        let mut env = svc.get("environment").cloned().expect("herd services configure themselves via HERD_*");
        env.apply_merge().unwrap();
        for (k, _) in env.as_mapping().unwrap() {
            let k = k.as_str().unwrap();
            assert!(k.starts_with("HERD_"), "service {name}: {k} is not a Herd setting");
            assert!(settings.iter().any(|s| s == k), "service {name}: {k} is not a setting (known: {settings:?})");
        }
    }
    assert!(herd_services >= 3, "compose runs herd migrate, serve and worker");
}

struct Dev {
    proc: Proc,
    url: String,
    token_line: String,
}

fn start_dev(env: &common::Env, log: &std::path::Path) -> Dev {
    let log_file = std::fs::File::create(log).unwrap();
    let mut child = herd()
        .args(["dev", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(env.state())
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut url, mut token_line) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while token_line.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("herd dev printed its banner in time");
        if let Some(u) = line.trim().strip_prefix("API:") {
            url = Some(u.trim().to_owned());
        }
        if let Some(t) = line.trim().strip_prefix("Admin token:") {
            token_line = Some(t.trim().to_owned());
        }
    }
    Dev { proc, url: url.expect("API URL printed"), token_line: token_line.unwrap() }
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn dev_mode_serves_the_tour_and_keeps_secrets_out_of_logs() {
    // The harness's Drop deletes the servers the tour's cluster gets (workers run in dev).
    let env = common::Env::new();
    let state = env.state();
    let log = env.dir.path().join("herd.log");
    let dev = start_dev(&env, &log);
    let token = dev.token_line.split_whitespace().next().unwrap().to_owned();
    assert!(token.starts_with("herd_"), "{}", dev.token_line);
    assert_eq!(std::fs::read_to_string(state.join("admin.token")).unwrap(), token);
    assert_eq!(mode(&state.join("admin.token")), 0o600);
    assert_eq!(mode(&state.join("master.key")), 0o600);
    assert!(state.join("herd.db").exists(), "SQLite lives in the state dir");

    let http = reqwest::Client::new();
    let url = &dev.url;
    let r = http.get(format!("{url}/v1/datastores")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let ds: serde_json::Value =
        http.get(format!("{url}/v1/datastores")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(ds["items"][0]["name"], "postgresql");
    assert_eq!(ds["items"][0]["versions"][0]["version"], "15");

    let material = herd_core::sshkey::generate_ed25519();
    use secrecy::ExposeSecret;
    let pem = material.private_openssh.expose_secret().to_owned();
    let key_line = pem.lines().nth(1).unwrap().to_owned();
    let r = http
        .post(format!("{url}/v1/keys"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "mine", "private_key": pem}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key: serde_json::Value = r.json().await.unwrap();
    let password = "tour-password-not-in-logs-7";
    let r = http
        .post(format!("{url}/v1/clusters"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "tour", "datastore": "postgresql", "version": "15",
            "flavor": "local.small", "key_id": key["id"], "admin_password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let list: serde_json::Value =
        http.get(format!("{url}/v1/clusters")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"][0]["name"], "tour");
    // Let the worker build it, so the log scan below covers SSH, Patroni and the
    // admin password being set, all at trace level.
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let id: uuid::Uuid = id.parse().unwrap();
    env.wait_status(url, &token, id, herd_core::status::ClusterStatus::Active, Duration::from_secs(240)).await;

    // Graceful stop on SIGTERM.
    let pid = nix::unistd::Pid::from_raw(dev.proc.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut proc = dev.proc;
    eventually("herd dev to stop on SIGTERM", Duration::from_secs(20), || proc.0.try_wait().unwrap());

    // Trace-level logs saw every request but no secret.
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("/v1/clusters"), "trace logs were captured");
    assert!(logs.contains("task succeeded"), "provisioning ran in this log");
    for secret in [password, key_line.as_str(), token.as_str()] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }

    // A restart keeps the token and does not print it again.
    let dev2 = start_dev(&env, &env.dir.path().join("herd2.log"));
    // While it runs, a second dev on the same state dir is refused.
    let second = herd()
        .args(["dev", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(env.state())
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already using"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(!dev2.token_line.contains(&token), "token printed twice: {}", dev2.token_line);
    assert!(dev2.token_line.contains("admin.token"));
    let r = http.get(format!("{}/v1/clusters", dev2.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// `herd dev | head -3`, or a parent that stopped reading: the banner cannot be written,
/// and the server must run on (println! would panic on the closed pipe and exit).
#[test]
fn dev_runs_on_when_nobody_reads_its_banner() {
    let env = common::Env::new();
    let port = common::free_port();
    let mut child = herd()
        .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(env.state())
        .envs(env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(env.dir.path().join("dev.log")).unwrap())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the read end closes before a line is written
    let mut dev = Proc(child);
    let healthy = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        use std::io::{Read, Write};
        s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
        let mut r = String::new();
        s.read_to_string(&mut r).map_err(|e| e.to_string())?;
        r.starts_with("HTTP/1.0 200").then_some(()).ok_or(r)
    };
    common::poll(Duration::from_secs(60), healthy);
    // Well past the banner: still serving.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            dev.0.try_wait().unwrap().is_none(),
            "herd dev exited: {}",
            std::fs::read_to_string(env.dir.path().join("dev.log")).unwrap()
        );
        healthy().unwrap();
    }
}
