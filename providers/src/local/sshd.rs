//! A loopback host's sshd: its files under the server root, starting it, and telling
//! whether it runs.

use super::process::{self, Tracker};
use super::state::{ServerRecord, io_error, set_mode, write_atomic};
use crate::ProviderError;
use std::fs;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Paths inside one server root. The layout mirrors a real host so that the
/// datastore manager can prefix its usual paths with the root.
#[derive(Debug, Clone)]
pub(crate) struct ServerPaths {
    pub root: PathBuf,
}

impl ServerPaths {
    pub fn ssh_dir(&self) -> PathBuf {
        self.root.join("etc/ssh")
    }
    pub fn config(&self) -> PathBuf {
        self.ssh_dir().join("sshd_config")
    }
    pub fn host_key(&self) -> PathBuf {
        self.ssh_dir().join("ssh_host_ed25519_key")
    }
    pub fn authorized_keys(&self) -> PathBuf {
        self.ssh_dir().join("authorized_keys")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("run/sshd.pid")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("var/log/sshd.log")
    }
    pub fn boot_dir(&self) -> PathBuf {
        self.root.join(super::BOOT_DIR)
    }
    pub fn stop_dir(&self) -> PathBuf {
        self.root.join(super::STOP_DIR)
    }
    pub fn boot_log(&self) -> PathBuf {
        self.root.join("var/log/herd/boot.log")
    }
    /// Where attached volumes appear.
    pub fn mnt_dir(&self) -> PathBuf {
        self.root.join(super::MOUNT_DIR)
    }
}

/// Settings sshd needs beyond the record.
pub(crate) struct SshdOptions<'a> {
    pub sshd_path: &'a Path,
    pub port: u16,
    pub login_user: &'a str,
}

/// Rejects characters that sshd_config cannot carry inside a quoted value (`"`, `\`),
/// that it would expand (`%`), or that would end the line.
pub(crate) fn check_config_path(path: &Path) -> Result<(), ProviderError> {
    let s = path.to_str().ok_or_else(|| ProviderError::Permanent(format!("path is not UTF-8: {}", path.display())))?;
    if s.chars().any(|c| c == '"' || c == '\\' || c == '%' || c.is_control()) {
        return Err(ProviderError::Permanent(format!(
            "path {s:?} contains a character sshd_config cannot quote (\", \\, % or a control character)"
        )));
    }
    Ok(())
}

fn quoted(path: &Path) -> String {
    // check_config_path ran on the provider root, so the path has nothing to escape.
    format!("\"{}\"", path.display())
}

pub(crate) fn render_config(paths: &ServerPaths, record: &ServerRecord, opts: &SshdOptions<'_>) -> String {
    let root = &paths.root;
    format!(
        "# Written by Herd for loopback host {id}; rewritten on every start.\n\
         ListenAddress {addr}:{port}\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {keys}\n\
         AllowUsers {user}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         # PAM would need a login session per host; keys are the only way in anyway.\n\
         UsePAM no\n\
         # Files live under a shared root owned by whoever runs Herd.\n\
         StrictModes no\n\
         UseDNS no\n\
         PermitUserEnvironment no\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         MaxStartups 100:30:200\n\
         # Sessions inherit the marker and the root prefix of this host.\n\
         SetEnv {marker}={id} HERD_SERVER_ROOT={root_q}\n\
         Subsystem sftp internal-sftp\n",
        id = record.id,
        addr = record.address,
        port = opts.port,
        host_key = quoted(&paths.host_key()),
        pid = quoted(&paths.pid_file()),
        keys = quoted(&paths.authorized_keys()),
        user = opts.login_user,
        marker = process::MARKER_VAR,
        root_q = quoted(root),
    )
}

/// Writes (or rewrites) the server root's skeleton and sshd files from the record.
pub(crate) fn write_files(
    paths: &ServerPaths,
    record: &ServerRecord,
    opts: &SshdOptions<'_>,
) -> Result<(), ProviderError> {
    for dir in [
        paths.ssh_dir(),
        paths.root.join("run"),
        paths.root.join("var/log/herd"),
        paths.boot_dir(),
        paths.stop_dir(),
        paths.mnt_dir(),
        paths.root.join("tmp"),
    ] {
        fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
    }
    // Daemons started over SSH as other users (postgres) need a writable tmp.
    set_mode(&paths.root.join("tmp"), 0o1777)?;
    rotate_log(&paths.log_file())?;
    write_atomic(&paths.host_key(), record.host_key_private.as_bytes(), 0o600)?;
    let mut public = paths.host_key().into_os_string();
    public.push(".pub");
    write_atomic(Path::new(&public), format!("{}\n", record.host_key_public).as_bytes(), 0o644)?;
    write_atomic(&paths.authorized_keys(), format!("{}\n", record.authorized_key.trim()).as_bytes(), 0o644)?;
    write_atomic(&paths.config(), render_config(paths, record, opts).as_bytes(), 0o644)
}

/// sshd logs every connection; keep one old generation past this size, rotated at
/// each start (a running sshd keeps its file open).
const LOG_ROTATE_BYTES: u64 = 16 * 1024 * 1024;

fn rotate_log(path: &Path) -> Result<(), ProviderError> {
    match fs::metadata(path) {
        Ok(m) if m.len() > LOG_ROTATE_BYTES => {
            let mut old = path.as_os_str().to_owned();
            old.push(".1");
            fs::rename(path, &old).map_err(|e| io_error("rotate", path, e))
        }
        _ => Ok(()),
    }
}

/// The pid of this server's sshd when it runs; checks the process really is our
/// sshd (its command line names our config) so a recycled pid is not mistaken for it.
pub(crate) fn running_pid(paths: &ServerPaths) -> Option<i32> {
    let pid: i32 = fs::read_to_string(paths.pid_file()).ok()?.trim().parse().ok()?;
    if !process::is_alive(pid) {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = paths.config();
    let needle = config.to_str()?.as_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle).then_some(pid)
}

/// Starts sshd (it daemonizes) and waits until it accepts connections.
pub(crate) fn start(
    tracker: &Tracker,
    paths: &ServerPaths,
    record: &ServerRecord,
    opts: &SshdOptions<'_>,
    timeout: Duration,
) -> Result<i32, ProviderError> {
    // Debian's sshd refuses to start without its privilege separation directory,
    // which lives on a tmpfs in containers and may be missing.
    let privsep = Path::new("/run/sshd");
    if !privsep.exists() {
        fs::create_dir_all(privsep).map_err(|e| io_error("create", privsep, e))?;
        set_mode(privsep, 0o755)?;
    }
    let _ = fs::remove_file(paths.pid_file());
    let mut cmd =
        tracker.command(&record.id, opts.sshd_path, &[("HERD_SERVER_ROOT", paths.root.display().to_string())])?;
    cmd.arg("-f")
        .arg(paths.config())
        .arg("-E")
        .arg(paths.log_file())
        .current_dir(&paths.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // sshd binds its listener before it daemonizes, so a zero exit status means the
    // port is bound; configuration and bind errors come back as a failure here.
    let out = cmd.output().map_err(|e| ProviderError::Permanent(format!("run {}: {e}", opts.sshd_path.display())))?;
    if !out.status.success() {
        let log_tail = tail(&paths.log_file(), 2000);
        return Err(ProviderError::Permanent(format!(
            "sshd for server {} failed ({}): {}{}",
            record.id,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            log_tail,
        )));
    }
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::new(IpAddr::V4(record.address), opts.port);
    loop {
        let pid = running_pid(paths);
        if let Some(pid) = pid
            && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            return Err(ProviderError::Transient(format!(
                "sshd for server {} not accepting connections on {addr} after {}s",
                record.id,
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last bytes of a log file, for error messages.
pub(crate) fn tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(bytes) if !bytes.is_empty() => {
            let start = bytes.len().saturating_sub(max);
            format!("; {}: {}", path.display(), String::from_utf8_lossy(&bytes[start..]).trim())
        }
        _ => String::new(),
    }
}

/// Whether something already accepts TCP connections on `addr:port` (a server of
/// another Herd installation, a leftover): such addresses are skipped.
pub(crate) fn port_in_use(addr: IpAddr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_millis(200)).is_ok()
}
