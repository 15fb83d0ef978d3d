//! A small blocking wrapper over an `ssh2` session, and the async entry points that
//! run it on tokio's blocking pool.
//!
//! Rules every caller relies on:
//! - the server's host key is checked against [`SshTarget::host_key`] (when known)
//!   right after the handshake, before any credential is sent;
//! - commands are plain strings built with [`crate::shell`] quoting; secrets never
//!   appear in them: they travel as stdin or as uploaded files;
//! - nothing here logs key material, stdin or file contents.

use crate::shell::quote;
use crate::{ManagerError, SshTarget};
use herd_core::faults::FaultCode;
use herd_providers::HostKeyError;
use secrecy::ExposeSecret;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default limit for one blocking SSH operation (a read that gets no data, a write
/// that cannot proceed); long commands pass their own with [`Session::exec_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for the TCP connect plus handshake and authentication.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a remote command produced. Output is decoded lossily: it is only used for
/// parsing well-known tools' output and for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub exit_status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit_status == 0
    }

    /// `Ok(self)` on exit 0; otherwise a transient error naming `what` with the tail
    /// of stderr (callers that know better map failures themselves).
    pub fn check(self, what: &str) -> Result<Self, ManagerError> {
        if self.success() {
            return Ok(self);
        }
        Err(ManagerError::Transient(format!("{what} failed (exit {}): {}", self.exit_status, self.error_tail())))
    }

    /// The last lines of stderr (or stdout when stderr is empty), for messages.
    pub fn error_tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        if tail.is_empty() { "no output".to_owned() } else { tail }
    }
}

/// An authenticated SSH session to one server. Blocking: use it inside
/// [`with_session`] (or another blocking context), never on an async worker thread.
pub struct Session {
    inner: ssh2::Session,
    host: SocketAddr,
    /// The host key the server presented, as an OpenSSH public key line.
    host_key: String,
    /// Logged in as root; otherwise commands go through `sudo -n` (cloud images log
    /// in as an admin user with passwordless sudo).
    root: bool,
    sftp: std::cell::OnceCell<ssh2::Sftp>,
}

/// A file to write on the server.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub path: &'a str,
    pub bytes: &'a [u8],
    pub mode: u32,
    /// `user` or `user:group`.
    pub owner: &'a str,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("host", &self.host).finish_non_exhaustive()
    }
}

fn ssh_error(host: SocketAddr, what: &str, e: impl std::fmt::Display) -> ManagerError {
    ManagerError::Transient(format!("ssh {host}: {what}: {e}"))
}

impl Session {
    /// TCP connect, handshake, host key check, public key authentication.
    ///
    /// Network failures are `Transient`; a host key mismatch is `Permanent`
    /// (`host_key_mismatch`): never retry into a possible man in the middle. A refused
    /// key is `Permanent` (`ssh_auth_failed`) here; [`wait_reachable`] retries it for a
    /// while because a fresh cloud server may not have installed the key yet.
    pub fn connect(target: &SshTarget, timeout: Duration) -> Result<Self, ManagerError> {
        let host = SocketAddr::new(target.address, target.port);
        let started = Instant::now();
        let tcp = TcpStream::connect_timeout(&host, timeout).map_err(|e| ssh_error(host, "connect", e))?;
        let _ = tcp.set_nodelay(true);
        let mut inner = ssh2::Session::new().map_err(|e| ssh_error(host, "new session", e))?;
        let left = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(500));
        inner.set_timeout(millis(left));
        inner.set_tcp_stream(tcp);
        inner.handshake().map_err(|e| ssh_error(host, "handshake", e))?;
        let host_key = match &target.host_key {
            Some(expected) => {
                herd_providers::verify_host_key(&inner, expected).map_err(|e| host_key_error(host, e))?;
                expected.trim().to_owned()
            }
            None => herd_providers::hostkey::presented_host_key(&inner).map_err(|e| host_key_error(host, e))?,
        };
        let key = target.private_key.expose_secret();
        if let Err(e) = inner.userauth_pubkey_memory(&target.user, None, key, None) {
            return Err(ManagerError::permanent(
                FaultCode::SshAuthFailed,
                format!("ssh {host}: public key login as {} refused: {}", target.user, e.message()),
            ));
        }
        if !inner.authenticated() {
            return Err(ManagerError::permanent(FaultCode::SshAuthFailed, format!("ssh {host}: not authenticated")));
        }
        inner.set_timeout(millis(DEFAULT_TIMEOUT));
        Ok(Self { inner, host, host_key, root: target.user == "root", sftp: std::cell::OnceCell::new() })
    }

    pub fn host(&self) -> SocketAddr {
        self.host
    }

    /// The host key seen (OpenSSH public key line).
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// Runs `command` with the default timeout; see [`Session::exec_timeout`].
    pub fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, ManagerError> {
        self.exec_timeout(command, stdin, DEFAULT_TIMEOUT)
    }

    /// The command line the server runs: as is for root, through `sudo -n` otherwise.
    fn privileged(&self, command: &str) -> String {
        if self.root { command.to_owned() } else { format!("sudo -n -- sh -c {}", quote(command)) }
    }

    /// Runs `command` through the login user's shell, feeding `stdin` (then EOF) and
    /// collecting stdout, stderr and the exit status. `timeout` bounds each blocking
    /// step (no output for that long fails the call). A non-zero exit is not an
    /// error here: the caller decides what it means.
    pub fn exec_timeout(&self, command: &str, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, ManagerError> {
        let host = self.host;
        tracing::debug!(%host, command, "ssh exec");
        let command = self.privileged(command);
        self.inner.set_timeout(millis(timeout));
        let result = (|| {
            let mut ch = self.inner.channel_session().map_err(|e| ssh_error(host, "open channel", e))?;
            ch.exec(&command).map_err(|e| ssh_error(host, "exec", e))?;
            if let Some(input) = stdin {
                ch.write_all(input).map_err(|e| ssh_error(host, "write stdin", e))?;
                ch.flush().map_err(|e| ssh_error(host, "write stdin", e))?;
            }
            ch.send_eof().map_err(|e| ssh_error(host, "send eof", e))?;
            // libssh2 widens the channel window whatever stream is read and queues
            // stderr separately, so reading stdout to its end first cannot deadlock.
            let mut stdout = Vec::new();
            ch.read_to_end(&mut stdout).map_err(|e| ssh_error(host, "read stdout", e))?;
            let mut stderr = Vec::new();
            ch.stderr().read_to_end(&mut stderr).map_err(|e| ssh_error(host, "read stderr", e))?;
            ch.wait_close().map_err(|e| ssh_error(host, "close channel", e))?;
            let exit_status = ch.exit_status().map_err(|e| ssh_error(host, "exit status", e))?;
            Ok(Output {
                exit_status,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        })();
        self.inner.set_timeout(millis(DEFAULT_TIMEOUT));
        result
    }

    /// Starts `command` (like [`Session::exec`]) and leaves it running with its stdin
    /// open, for a conversation: [`Interactive::write`] feeds it, [`Interactive::read_line`]
    /// reads its stdout line by line. The command ends when its stdin closes:
    /// [`Interactive::finish`], or dropping the [`Interactive`] and this session.
    /// Enables SSH keepalives ([`Interactive::keepalive`]), since such a session may
    /// stay idle for a while.
    pub fn start(&self, command: &str) -> Result<Interactive, ManagerError> {
        let host = self.host;
        tracing::debug!(%host, command, "ssh start");
        let command = self.privileged(command);
        let mut channel = self.inner.channel_session().map_err(|e| ssh_error(host, "open channel", e))?;
        channel.exec(&command).map_err(|e| ssh_error(host, "exec", e))?;
        self.inner.set_keepalive(false, KEEPALIVE_SECS);
        Ok(Interactive { session: self.inner.clone(), channel, host, pending: Vec::new() })
    }

    /// Writes `bytes` to `path`; see [`Session::upload_all`].
    pub fn upload(&self, path: &str, bytes: &[u8], mode: u32, owner: &str) -> Result<(), ManagerError> {
        self.upload_all(&[Upload { path, bytes, mode, owner }])
    }

    /// Writes every file over SFTP, each first to a temporary name beside it
    /// (ignored by the boot list: it starts with a dot); then one quoted command sets
    /// owners and modes and renames them into place, so no file ever appears with
    /// the wrong owner, the wrong mode or half written.
    pub fn upload_all(&self, files: &[Upload<'_>]) -> Result<(), ManagerError> {
        let host = self.host;
        let mut staged = Vec::with_capacity(files.len());
        for f in files {
            let target = std::path::Path::new(f.path);
            let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
                return Err(ManagerError::permanent(FaultCode::InvalidPath, format!("cannot upload to {:?}", f.path)));
            };
            let tmp = dir.join(format!(".{}.herd-{}.tmp", name.to_string_lossy(), uuid::Uuid::new_v4().simple()));
            staged.push(tmp.to_string_lossy().into_owned());
        }
        let install = |f: &Upload<'_>, tmp: &str| {
            format!(
                "chown {owner} {tmp} && chmod {mode} {tmp} && mv -f {tmp} {path}",
                owner = quote(f.owner),
                mode = quote(&format!("{:o}", f.mode)),
                tmp = quote(tmp),
                path = quote(f.path),
            )
        };
        if !self.root {
            // SFTP would write as the unprivileged login user: stream the bytes to a
            // root shell's stdin instead (still never through a command line).
            for (f, tmp) in files.iter().zip(&staged) {
                tracing::debug!(%host, path = f.path, bytes = f.bytes.len(), "upload via sudo");
                let t = quote(tmp);
                let cmd = format!("(umask 077 && cat > {t}) && {} || {{ rm -f {t}; exit 1; }}", install(f, tmp));
                self.exec(&cmd, Some(f.bytes))?.check(&format!("install {}", f.path))?;
            }
            return Ok(());
        }
        let sftp = self.sftp()?;
        for (f, tmp) in files.iter().zip(&staged) {
            tracing::debug!(%host, path = f.path, bytes = f.bytes.len(), "sftp upload");
            // Private from the first byte: created 0600, widened only by the chmod.
            let mut file = sftp
                .open_mode(
                    std::path::Path::new(tmp),
                    ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::TRUNCATE,
                    0o600,
                    ssh2::OpenType::File,
                )
                .map_err(|e| ssh_error(host, &format!("create {tmp}"), e))?;
            file.write_all(f.bytes).map_err(|e| ssh_error(host, &format!("write {tmp}"), e))?;
            file.flush().map_err(|e| ssh_error(host, &format!("write {tmp}"), e))?;
        }
        let installs: Vec<String> = files.iter().zip(&staged).map(|(f, tmp)| install(f, tmp)).collect();
        let cleanup: Vec<String> = staged.iter().map(|t| quote(t)).collect();
        let cmd = format!("{{ {}; }} || {{ rm -f {}; exit 1; }}", installs.join(" && "), cleanup.join(" "));
        let names: Vec<&str> = files.iter().map(|f| f.path).collect();
        self.exec(&cmd, None)?.check(&format!("install {}", names.join(", ")))?;
        Ok(())
    }

    /// The session's SFTP channel, opened on first use.
    fn sftp(&self) -> Result<&ssh2::Sftp, ManagerError> {
        if let Some(s) = self.sftp.get() {
            return Ok(s);
        }
        let s = self.inner.sftp().map_err(|e| ssh_error(self.host, "start sftp", e))?;
        Ok(self.sftp.get_or_init(|| s))
    }

    /// Whether `path` exists on the server (any file type).
    pub fn exists(&self, path: &str) -> Result<bool, ManagerError> {
        if !self.root {
            return Ok(self.exec(&format!("test -e {}", quote(path)), None)?.success());
        }
        match self.sftp()?.stat(std::path::Path::new(path)) {
            Ok(_) => Ok(true),
            // SSH_FX_NO_SUCH_FILE
            Err(e) if matches!(e.code(), ssh2::ErrorCode::SFTP(2)) => Ok(false),
            Err(e) => Err(ssh_error(self.host, &format!("stat {path}"), e)),
        }
    }

    /// The content of a remote file, None when it does not exist. (Without root the
    /// file goes through `sudo cat` and is decoded as UTF-8: text files only.)
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, ManagerError> {
        let host = self.host;
        if !self.root {
            let p = quote(path);
            let out = self.exec(&format!("if [ -e {p} ]; then cat {p}; else exit 3; fi"), None)?;
            return match out.exit_status {
                0 => Ok(Some(out.stdout.into_bytes())),
                3 => Ok(None),
                _ => Err(ManagerError::Transient(format!("read {path}: {}", out.error_tail()))),
            };
        }
        let mut f = match self.sftp()?.open(std::path::Path::new(path)) {
            Ok(f) => f,
            // SSH_FX_NO_SUCH_FILE
            Err(e) if matches!(e.code(), ssh2::ErrorCode::SFTP(2)) => return Ok(None),
            Err(e) => return Err(ssh_error(host, &format!("open {path}"), e)),
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).map_err(|e| ssh_error(host, &format!("read {path}"), e))?;
        Ok(Some(buf))
    }
}

/// Interval of the SSH keepalives of an [`Interactive`] session (sent by
/// [`Interactive::keepalive`]), so an idle conversation survives NAT and firewall
/// idle timeouts.
pub const KEEPALIVE_SECS: u32 = 15;

/// A remote command running with its stdin open (see [`Session::start`]). Blocking,
/// like the session it came from; it keeps that session's connection alive.
pub struct Interactive {
    session: ssh2::Session,
    channel: ssh2::Channel,
    host: SocketAddr,
    /// Stdout read but not yet returned (the start of the next line).
    pending: Vec<u8>,
}

impl std::fmt::Debug for Interactive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interactive").field("host", &self.host).finish_non_exhaustive()
    }
}

impl Interactive {
    /// Feeds `input` to the command's stdin.
    pub fn write(&mut self, input: &[u8]) -> Result<(), ManagerError> {
        self.session.set_timeout(millis(DEFAULT_TIMEOUT));
        self.channel.write_all(input).map_err(|e| ssh_error(self.host, "write stdin", e))?;
        self.channel.flush().map_err(|e| ssh_error(self.host, "write stdin", e))
    }

    /// The next line of the command's stdout, without its newline; None once stdout
    /// ended (the command exited: [`Interactive::finish`] says how). Fails when no
    /// output arrives for `timeout`.
    pub fn read_line(&mut self, timeout: Duration) -> Result<Option<String>, ManagerError> {
        self.session.set_timeout(millis(timeout));
        let result = loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                break Ok(Some(String::from_utf8_lossy(&line[..pos]).into_owned()));
            }
            let mut buf = [0u8; 4096];
            match self.channel.read(&mut buf) {
                Ok(0) => break Ok(None),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) => break Err(ssh_error(self.host, "read stdout", e)),
            }
        };
        self.session.set_timeout(millis(DEFAULT_TIMEOUT));
        result
    }

    /// Sends a keepalive if one is due; call it while the conversation is idle.
    pub fn keepalive(&self) -> Result<(), ManagerError> {
        self.session.keepalive_send().map(|_| ()).map_err(|e| ssh_error(self.host, "keepalive", e))
    }

    /// Closes the command's stdin and waits (each read bounded by `timeout`) for it
    /// to exit; returns the rest of its stdout, its stderr and its exit status.
    pub fn finish(&mut self, timeout: Duration) -> Result<Output, ManagerError> {
        let host = self.host;
        self.session.set_timeout(millis(timeout));
        let result = (|| {
            self.channel.send_eof().map_err(|e| ssh_error(host, "send eof", e))?;
            let mut stdout = std::mem::take(&mut self.pending);
            self.channel.read_to_end(&mut stdout).map_err(|e| ssh_error(host, "read stdout", e))?;
            let mut stderr = Vec::new();
            self.channel.stderr().read_to_end(&mut stderr).map_err(|e| ssh_error(host, "read stderr", e))?;
            self.channel.wait_close().map_err(|e| ssh_error(host, "close channel", e))?;
            let exit_status = self.channel.exit_status().map_err(|e| ssh_error(host, "exit status", e))?;
            Ok(Output {
                exit_status,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        })();
        self.session.set_timeout(millis(DEFAULT_TIMEOUT));
        result
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn host_key_error(host: SocketAddr, e: HostKeyError) -> ManagerError {
    match e {
        HostKeyError::NoHandshake => ManagerError::Transient(format!("ssh {host}: {e}")),
        HostKeyError::Mismatch { .. } => {
            ManagerError::permanent(FaultCode::HostKeyMismatch, format!("ssh {host}: {e}"))
        }
        HostKeyError::InvalidExpected(_) | HostKeyError::InvalidPresented(_) => {
            ManagerError::permanent(FaultCode::HostKeyInvalid, format!("ssh {host}: {e}"))
        }
    }
}

/// Connects to `target` and runs `f` with the session on tokio's blocking pool.
pub async fn with_session<T, F>(target: &SshTarget, f: F) -> Result<T, ManagerError>
where
    T: Send + 'static,
    F: FnOnce(&Session) -> Result<T, ManagerError> + Send + 'static,
{
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let session = Session::connect(&target, CONNECT_TIMEOUT)?;
        f(&session)
    })
    .await
    .map_err(|e| ManagerError::Transient(format!("ssh task failed: {e}")))?
}

/// Polls until `target` accepts an authenticated SSH session or `timeout` passes.
/// Returns the host key the server presented (the one to record when the target had
/// none). Host key mismatches fail at once; refused logins are retried until the
/// deadline, since a new cloud server installs its authorized key during boot.
pub async fn wait_reachable(target: &SshTarget, timeout: Duration) -> Result<String, ManagerError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = target.clone();
        let result = tokio::task::spawn_blocking(move || {
            Session::connect(&attempt, left.clamp(Duration::from_millis(200), CONNECT_TIMEOUT))
                .map(|s| s.host_key().to_owned())
        })
        .await
        .map_err(|e| ManagerError::Transient(format!("ssh task failed: {e}")))?;
        let err = match result {
            Ok(key) => return Ok(key),
            Err(e @ ManagerError::Permanent { code, .. }) if code != FaultCode::SshAuthFailed => return Err(e),
            Err(e) => e,
        };
        if Instant::now() + pause >= deadline {
            return Err(match err {
                ManagerError::Permanent { code, message } => {
                    ManagerError::Permanent { code, message: format!("{message} (still after {}s)", timeout.as_secs()) }
                }
                ManagerError::Transient(m) => {
                    ManagerError::Transient(format!("{m} (not reachable after {}s)", timeout.as_secs()))
                }
            });
        }
        tracing::debug!(address = %target.address, error = %err, "ssh not reachable yet");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
