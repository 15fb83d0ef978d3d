//! Finding and killing every process of a loopback host.
//!
//! A loopback host has no kernel of its own, so "power off" means killing every
//! process that belongs to it: its sshd, the SSH sessions, and every daemon the
//! datastore manager started over SSH (detached with setsid/nohup, possibly running as
//! another user). Two mechanisms:
//!
//! - `cgroup`: each server gets a cgroup v2 (`<cgroup_root>/<id>`); sshd and the boot
//!   list are started inside it and every descendant stays in it whatever it does
//!   (setsid, double fork, setuid). Power-off writes `cgroup.kill`, which kills them
//!   all atomically. Needs a writable cgroup2 hierarchy (root, or a delegated subtree).
//! - `marker`: every process is started with `HERD_SERVER=<id>` in its environment
//!   (sshd passes it on to sessions with `SetEnv`). Power-off freezes (SIGSTOP) and
//!   kills every process whose initial environment has the marker, plus descendants of
//!   marked processes, until none is left. A process that execs with a cleared
//!   environment (`env -i`, `su -l`) and detaches escapes it.
//!
//! The marker is set in both modes and the cgroup mode sweeps markers too, so a
//! switch between modes while servers run loses nothing.

use crate::ProviderError;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The environment entry marking a server's processes (both modes set it).
pub(crate) const MARKER_VAR: &str = "HERD_SERVER";

/// Default PATH of processes the provider starts (sshd, boot scripts): they get a
/// clean environment, never Herd's own (which may hold credentials).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tracker {
    Cgroup { root: PathBuf },
    Marker,
}

impl Tracker {
    /// `mode`: `auto`, `cgroup` or `marker`.
    pub fn detect(mode: &str, cgroup_root: Option<&Path>) -> Result<Self, ProviderError> {
        match mode {
            "marker" => Ok(Tracker::Marker),
            "cgroup" => cgroup_tracker(cgroup_root),
            "auto" => match cgroup_tracker(cgroup_root) {
                Ok(t) => Ok(t),
                Err(e) => {
                    tracing::warn!(
                        reason = %e,
                        "no writable cgroup v2 hierarchy; loopback hosts fall back to \
                         environment-marker process tracking"
                    );
                    Ok(Tracker::Marker)
                }
            },
            other => {
                Err(ProviderError::Permanent(format!("process_tracking {other:?}: expected auto, cgroup or marker")))
            }
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Tracker::Cgroup { .. } => "cgroup",
            Tracker::Marker => "marker",
        }
    }

    fn cgroup_dir(&self, id: &str) -> Option<PathBuf> {
        match self {
            Tracker::Cgroup { root } => Some(root.join(id)),
            Tracker::Marker => None,
        }
    }

    /// A command for `program` that runs as a process of server `id`: clean
    /// environment plus `env`, inside the server's cgroup when there is one.
    pub fn command(&self, id: &str, program: &Path, env: &[(&str, String)]) -> Result<Command, ProviderError> {
        let mut cmd = match self.cgroup_dir(id) {
            Some(dir) => {
                fs::create_dir_all(&dir).map_err(|e| cgroup_error("create", &dir, e))?;
                // The shell moves itself into the cgroup, then becomes the program, so
                // the program and all its descendants start inside it. Data travels as
                // positional arguments, never inside the script text.
                let mut c = Command::new("/bin/sh");
                c.arg("-c").arg(r#"echo $$ > "$0" && exec "$@""#).arg(dir.join("cgroup.procs")).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.env_clear().env("PATH", DEFAULT_PATH).env("LANG", "C.UTF-8").env(MARKER_VAR, id);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    /// Live (non-zombie) processes of server `id`; `extra` are pids known to belong
    /// to it (sshd, whose own environment is overwritten by its process title).
    pub fn pids(&self, id: &str, extra: &[i32]) -> Result<BTreeSet<i32>, ProviderError> {
        let mut pids = marker_pids(id, extra);
        if let Some(dir) = self.cgroup_dir(id) {
            pids.extend(cgroup_pids(&dir)?);
        }
        Ok(pids)
    }

    /// Kills every process of the server at once and waits until they are gone.
    pub fn kill_all(&self, id: &str, extra: &[i32], timeout: Duration) -> Result<(), ProviderError> {
        let deadline = Instant::now() + timeout;
        if let Some(dir) = self.cgroup_dir(id)
            && dir.exists()
        {
            cgroup_kill(&dir, deadline)?;
        }
        // Also in cgroup mode: catches processes started before a switch from
        // marker tracking, or moved out of the cgroup. Cheap when none is left.
        marker_kill(id, extra, deadline)
    }

    /// SIGTERM to every process, then SIGKILL to what is left after `grace`.
    pub fn terminate_all(
        &self,
        id: &str,
        extra: &[i32],
        grace: Duration,
        kill_timeout: Duration,
    ) -> Result<(), ProviderError> {
        let deadline = Instant::now() + grace;
        let mut signalled = BTreeSet::new();
        loop {
            let pids = self.pids(id, extra)?;
            if pids.is_empty() {
                return Ok(());
            }
            // Processes forked after the first round get their SIGTERM too.
            for pid in pids.difference(&signalled.clone()) {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
                signalled.insert(*pid);
            }
            if Instant::now() >= deadline {
                tracing::info!(server = id, "graceful stop deadline passed; killing");
                return self.kill_all(id, extra, kill_timeout);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Drops the server's cgroup (after `kill_all`).
    pub fn release(&self, id: &str, timeout: Duration) -> Result<(), ProviderError> {
        let Some(dir) = self.cgroup_dir(id) else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        loop {
            match fs::remove_dir(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                // EBUSY until the last killed process has exited.
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "cgroup not yet empty");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(cgroup_error("remove", &dir, e)),
            }
        }
    }
}

fn cgroup_error(what: &str, path: &Path, e: std::io::Error) -> ProviderError {
    ProviderError::Permanent(format!("{what} cgroup {}: {e}", path.display()))
}

fn cgroup_tracker(configured: Option<&Path>) -> Result<Tracker, ProviderError> {
    let root = match configured {
        Some(p) => p.to_path_buf(),
        None => cgroup2_mount()
            .ok_or_else(|| ProviderError::Permanent("no cgroup2 filesystem is mounted".into()))?
            .join("herd"),
    };
    fs::create_dir_all(&root).map_err(|e| cgroup_error("create", &root, e))?;
    if !root.join("cgroup.procs").exists() {
        return Err(ProviderError::Permanent(format!("{} is not a cgroup v2 directory", root.display())));
    }
    // Moving a process needs write access to cgroup.procs; check it now rather than
    // at the first server start.
    let probe = root.join(format!("probe-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir_all(&probe).map_err(|e| cgroup_error("create", &probe, e))?;
    let writable = fs::OpenOptions::new().write(true).open(probe.join("cgroup.procs")).map(|_| ());
    let _ = fs::remove_dir(&probe);
    writable.map_err(|e| cgroup_error("write", &probe, e))?;
    Ok(Tracker::Cgroup { root })
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on unified systems,
/// `/sys/fs/cgroup/unified` on hybrid ones).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

fn cgroup_pids(dir: &Path) -> Result<BTreeSet<i32>, ProviderError> {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(cgroup_error("read", dir, e)),
    }
}

fn cgroup_kill(dir: &Path, deadline: Instant) -> Result<(), ProviderError> {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() {
        fs::write(&kill_file, "1").map_err(|e| cgroup_error("kill", dir, e))?;
    } else {
        // Kernels before 5.14: freeze so nothing forks, kill each, thaw so the
        // signals are delivered.
        let freeze = dir.join("cgroup.freeze");
        let _ = fs::write(&freeze, "1");
        for pid in cgroup_pids(dir)? {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = fs::write(&freeze, "0");
    }
    loop {
        if cgroup_pids(dir)?.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ProviderError::Transient(format!("processes in {} survived SIGKILL", dir.display())));
        }
        if !kill_file.exists() {
            for pid in cgroup_pids(dir)? {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct ProcEntry {
    ppid: i32,
    marked: bool,
}

/// Live processes, with their parent and whether their environment has the marker.
fn scan_proc(marker: &[u8]) -> HashMap<i32, ProcEntry> {
    let mut out = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some((state, ppid)) = stat_of(pid) else {
            continue;
        };
        if state == 'Z' || state == 'X' {
            continue;
        }
        let marked = fs::read(format!("/proc/{pid}/environ"))
            .map(|env| env.split(|b| *b == 0).any(|entry| entry == marker))
            .unwrap_or(false);
        out.insert(pid, ProcEntry { ppid, marked });
    }
    out
}

/// State letter and parent pid from /proc/<pid>/stat.
pub(crate) fn stat_of(pid: i32) -> Option<(char, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a live (non-zombie) process.
pub(crate) fn is_alive(pid: i32) -> bool {
    matches!(stat_of(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

fn marker_pids(id: &str, extra: &[i32]) -> BTreeSet<i32> {
    let marker = format!("{MARKER_VAR}={id}");
    let table = scan_proc(marker.as_bytes());
    let me = std::process::id() as i32;
    let mut found: BTreeSet<i32> = table
        .iter()
        .filter(|(_, e)| e.marked)
        .map(|(pid, _)| *pid)
        .chain(extra.iter().copied().filter(|p| table.contains_key(p)))
        .collect();
    // Descendants of marked processes belong to the server too (sshd's session
    // processes rewrite their environment area with their process title).
    loop {
        let before = found.len();
        for (pid, e) in &table {
            if found.contains(&e.ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    found.remove(&me);
    found
}

fn marker_kill(id: &str, extra: &[i32], deadline: Instant) -> Result<(), ProviderError> {
    // Stop everything first so nothing forks while we collect, then kill the lot.
    let mut stopped = BTreeSet::new();
    loop {
        let pids = marker_pids(id, extra);
        let new: Vec<i32> = pids.difference(&stopped).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.insert(pid);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    for pid in &stopped {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    loop {
        let left = marker_pids(id, extra);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ProviderError::Transient(format!("{} processes of server {id} survived SIGKILL", left.len())));
        }
        for pid in left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
