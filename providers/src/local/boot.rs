//! The boot and stop lists: what a loopback host runs when it starts and when it
//! shuts down gracefully, in place of systemd units.
//!
//! Contract (see README): executables in `<server_root>/etc/herd/boot.d/` (on start,
//! after sshd is up) or `<server_root>/etc/herd/stop.d/` (on a graceful stop, before
//! every process gets SIGTERM) whose names match `^[A-Za-z0-9_-]+$` run as root in
//! name order, each inside the server (its cgroup, its marker), with the server root
//! as working directory, a clean environment plus `HERD_SERVER`, `HERD_SERVER_ROOT`
//! and `HERD_SERVER_ADDRESS`, and output appended to
//! `<server_root>/var/log/herd/boot.log`. An entry must start its daemon detached (or
//! stop it) and return; one that runs longer than the timeout is killed. A failing
//! entry is logged and does not stop the others (as on a real host).

use super::process::Tracker;
use super::sshd::ServerPaths;
use super::state::{ServerRecord, io_error};
use crate::ProviderError;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BootOutcome {
    pub entry: String,
    pub ok: bool,
    pub detail: String,
}

/// Names ignored like run-parts does, so editors' and installers' temp files
/// (`x.tmp`, `.x`, `x~`) never run; register an entry by renaming it into place.
fn valid_entry_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Which list to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum List {
    Boot,
    Stop,
}

impl List {
    fn dir(self, paths: &ServerPaths) -> PathBuf {
        match self {
            List::Boot => paths.boot_dir(),
            List::Stop => paths.stop_dir(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            List::Boot => "boot",
            List::Stop => "stop",
        }
    }
}

pub(crate) fn entries(paths: &ServerPaths, list: List) -> Result<Vec<String>, ProviderError> {
    let dir = list.dir(paths);
    let read = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("list", &dir, e)),
    };
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| io_error("list", &dir, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        if valid_entry_name(&name) && meta.is_file() && meta.permissions().mode() & 0o100 != 0 {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

pub(crate) fn replay(
    tracker: &Tracker,
    paths: &ServerPaths,
    record: &ServerRecord,
    list: List,
    timeout: Duration,
) -> Result<Vec<BootOutcome>, ProviderError> {
    let log_path = paths.boot_log();
    if let Some(parent) = log_path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
    }
    let mut outcomes = Vec::new();
    for name in entries(paths, list)? {
        let outcome = run_entry(tracker, paths, record, list, &name, timeout)?;
        if outcome.ok {
            tracing::debug!(server = %record.id, list = list.label(), entry = %name, "entry ran");
        } else {
            tracing::warn!(
                server = %record.id, list = list.label(), entry = %name,
                detail = %outcome.detail,
                "boot/stop list entry failed"
            );
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn run_entry(
    tracker: &Tracker,
    paths: &ServerPaths,
    record: &ServerRecord,
    list: List,
    name: &str,
    timeout: Duration,
) -> Result<BootOutcome, ProviderError> {
    let log_path = paths.boot_log();
    let mut log =
        OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| io_error("open", &log_path, e))?;
    let label = list.label();
    let now = || chrono::Utc::now().to_rfc3339();
    let _ = writeln!(log, "{} herd {label}: start {name}", now());
    let program = list.dir(paths).join(name);
    let mut cmd = tracker.command(
        &record.id,
        &program,
        &[("HERD_SERVER_ROOT", paths.root.display().to_string()), ("HERD_SERVER_ADDRESS", record.address.to_string())],
    )?;
    let out = log.try_clone().map_err(|e| io_error("open", &log_path, e))?;
    let err = log.try_clone().map_err(|e| io_error("open", &log_path, e))?;
    cmd.current_dir(&paths.root).stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let detail = format!("cannot run: {e}");
            let _ = writeln!(log, "{} herd {label}: {name}: {detail}", now());
            return Ok(BootOutcome { entry: name.to_owned(), ok: false, detail });
        }
    };
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                // Only the entry itself: daemons it already started stay up.
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = child.wait();
                break None;
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(io_error("wait for", &program, e)),
        }
    };
    let (ok, detail) = match status {
        Some(s) if s.success() => (true, "exit 0".to_owned()),
        Some(s) => (false, format!("{s}")),
        None => (false, format!("killed after {}s", timeout.as_secs())),
    };
    let _ = writeln!(log, "{} herd {label}: {name}: {detail}", now());
    Ok(BootOutcome { entry: name.to_owned(), ok, detail })
}

#[cfg(test)]
mod tests {
    use super::valid_entry_name;

    #[test]
    fn entry_names_follow_run_parts() {
        for ok in ["10-etcd", "20_patroni", "x"] {
            assert!(valid_entry_name(ok), "{ok}");
        }
        for bad in ["", ".10-etcd", "10-etcd.tmp", "10-etcd~", "a b"] {
            assert!(!valid_entry_name(bad), "{bad}");
        }
    }
}
