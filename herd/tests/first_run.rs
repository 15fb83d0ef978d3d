//! A new user's first run, exactly as the README says: `herd dev --demo` in a fresh
//! directory, no `--state-dir`, default settings; then `--down` and `--purge`.

mod common;

use common::{Env, Proc, herd_cmd, poll, psql};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `herd dev [args]` run in the env's directory, its stdout lines on a channel.
fn dev(env: &Env, args: &[&str], port: u16, log: &str) -> (Proc, mpsc::Receiver<String>) {
    let log = env.dir.path().join(log);
    let mut child = herd_cmd()
        .arg("dev")
        .args(args)
        .current_dir(env.dir.path())
        // The only setting given: a free port instead of 8080, through the environment.
        .env("HERD_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc { child, log }, rx)
}

/// The first stdout line starting with `prefix` (after trimming), within `timeout`.
fn line_starting(rx: &mpsc::Receiver<String>, prefix: &str, timeout: Duration, proc: &Proc) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no line {prefix:?}; log:\n{}", proc.log_text()));
        let line = line.trim();
        assert!(!line.starts_with("demo:") || !line.contains("failed"), "{line}\nlog:\n{}", proc.log_text());
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_owned();
        }
    }
}

fn interrupt(proc: &mut Proc) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(proc.pid() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    assert_eq!(proc.wait_exit(Duration::from_secs(30)), Some(0), "herd dev exits 0 on Ctrl-C: {}", proc.log_text());
}

/// `herd dev --down` / `--purge` in the env's directory: (exit code, stderr).
fn down(env: &Env, flag: &str) -> (i32, String) {
    let out = herd_cmd().args(["dev", flag]).current_dir(env.dir.path()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn demo_in_a_fresh_directory_gives_a_working_uri_and_down_and_purge_leave_nothing() {
    let env = Env::defaults();
    let port = common::free_port();
    let (mut proc, rx) = dev(&env, &["--demo"], port, "dev.log");
    let uri = line_starting(&rx, "demo: connect with:  psql", Duration::from_secs(300), &proc);
    let uri = uri.trim_matches('\'').to_owned();
    assert!(uri.starts_with("postgresql://admin:"), "{uri}");
    // The URI carries the password: psql accepts it as printed.
    psql(&uri, "", "CREATE TABLE first(v int); INSERT INTO first VALUES (42)").unwrap();
    assert_eq!(psql(&uri, "", "SELECT v FROM first").unwrap(), "42");
    // Everything lives under the working directory's .herd, with absolute paths.
    assert!(env.state().join("herd.db").exists() && env.state().join("backups").is_dir());
    // The databases (secrets, token hashes, the queue) are the owner's alone.
    for f in ["herd.db", "herd.db-wal", "queue.db"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.state().join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}: {mode:o}");
    }

    // While it runs, --down is refused: the running dev owns the servers.
    let (code, err) = down(&env, "--down");
    assert_ne!(code, 0);
    assert!(err.contains("is running") && err.contains("stop it first"), "{err}");

    // Ctrl-C: the servers keep running, and it says so and how to stop them.
    interrupt(&mut proc);
    let log = proc.log_text();
    assert!(log.contains("keep running") && log.contains("herd dev --down"), "{log}");
    assert!(!env.stray_pids().is_empty(), "the cluster's daemons outlive herd dev");
    assert_eq!(psql(&uri, "", "SELECT v FROM first").unwrap(), "42");

    // --down stops every process of every server.
    let (code, err) = down(&env, "--down");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stopped 1 server"), "{err}");
    poll(Duration::from_secs(30), || match env.stray_pids().as_slice() {
        [] => Ok(()),
        left => Err(format!("{left:?}")),
    });
    assert!(psql(&uri, "", "SELECT 1").is_err(), "PostgreSQL is down");

    // The next herd dev brings the same cluster back, data included.
    let (mut proc, rx) = dev(&env, &[], port, "dev2.log");
    line_starting(&rx, "Admin token:", Duration::from_secs(60), &proc);
    poll(Duration::from_secs(120), || psql(&uri, "", "SELECT v FROM first"));
    interrupt(&mut proc);

    // --purge removes the servers and the state dir.
    let (code, err) = down(&env, "--purge");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("deleted 1 server(s), 1 volume(s)"), "{err}");
    assert!(!env.state().exists(), "the state dir is gone");
    assert!(env.stray_pids().is_empty(), "{:?}", env.stray_pids());
    let (code, err) = down(&env, "--purge");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to do"), "{err}");
}
