//! The local provider against the real OpenSSH server (`/usr/sbin/sshd`, Debian
//! package openssh-server). Needs root: every loopback host runs its own sshd on
//! port 22 of its own address, and power-off must reach processes of other users.
//!
//! Each test uses its own /24 of the loopback range so tests can run in parallel, and
//! a `Fixture` whose Drop deletes every server the test's provider root still holds,
//! pass or fail.

use herd_providers::local::{BOOT_DIR, LocalProvider};
use herd_providers::{
    AttachmentKind, HostKeyError, LocalProviderSettings, Provider, ProviderError, ServerInfo, ServerSpec, ServerStatus,
    SnapshotSpec, SnapshotStatus, VolumeSpec, VolumeStatus, verify_host_key,
};
use herd_testkit::{Subnet, eventually};
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey, rand_core::OsRng};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

struct Fixture {
    rt: Runtime,
    provider: LocalProvider,
    settings: LocalProviderSettings,
    dir: tempfile::TempDir,
    key: PrivateKey,
    subnet: Subnet,
}

impl Fixture {
    /// A pool of the test's own (`Subnet::claim`), held as long as the fixture.
    fn new(tracking: &str) -> Self {
        let subnet = Subnet::claim();
        let dir = tempfile::Builder::new().prefix("herd-local-test-").tempdir().expect("temp dir");
        let settings = LocalProviderSettings {
            address_pool: subnet.pool(),
            // A space in the root exercises quoting in sshd_config and commands.
            root: Some(dir.path().join("local root")),
            process_tracking: tracking.into(),
            stop_timeout_secs: 2,
            boot_timeout_secs: 10,
            ..LocalProviderSettings::default()
        };
        let provider = LocalProvider::new("local", &settings, &dir.path().join("local root")).expect("local provider");
        if tracking != "auto" {
            assert_eq!(provider.process_tracking(), tracking);
        }
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).expect("client key");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        Self { rt, provider, settings, dir, key, subnet }
    }

    fn spec(&self, name: &str) -> ServerSpec {
        ServerSpec {
            name: name.into(),
            flavor: "local.small".into(),
            image: None,
            authorized_key: self.key.public_key().to_openssh().expect("public key"),
            tags: BTreeMap::from([
                ("herd:cluster".to_owned(), "c1".to_owned()),
                ("herd:node".to_owned(), name.to_owned()),
            ]),
        }
    }

    fn create(&self, name: &str, token: &str) -> ServerInfo {
        self.rt.block_on(self.provider.create_server(&self.spec(name), token)).expect("create server")
    }

    fn root(&self) -> PathBuf {
        self.provider.root().to_path_buf()
    }

    fn ssh(&self, info: &ServerInfo) -> ssh2::Session {
        ssh(info, &self.key)
    }

    fn pids(&self, id: &str) -> Vec<i32> {
        self.rt.block_on(self.provider.server_pids(id)).expect("server pids")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Rebuild the provider: a test may have replaced it on the same root.
        let Ok(provider) = LocalProvider::new("local", &self.settings, &self.dir.path().join("local root")) else {
            return;
        };
        let state = self.dir.path().join("local root/state/servers");
        let ids: Vec<String> = std::fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
            .collect();
        for id in ids {
            if let Err(e) = self.rt.block_on(provider.delete_server(&id)) {
                eprintln!("cleanup: delete server {id}: {e}");
            }
        }
    }
}

/// Connects, checks the host key recorded at create, and logs in with `key`.
fn ssh(info: &ServerInfo, key: &PrivateKey) -> ssh2::Session {
    let addr = info.address.expect("address");
    let tcp = TcpStream::connect((addr, info.ssh_port)).expect("tcp connect");
    let mut sess = ssh2::Session::new().expect("session");
    sess.set_timeout(20_000);
    sess.set_tcp_stream(tcp);
    sess.handshake().expect("handshake");
    verify_host_key(&sess, info.host_key.as_deref().expect("host key")).expect("host key");
    let pem = key.to_openssh(LineEnding::LF).expect("pem");
    sess.userauth_pubkey_memory(&info.login_user, None, &pem, None).expect("public key login");
    assert!(sess.authenticated());
    sess
}

/// Runs `cmd`, returns (exit status, stdout).
fn exec(sess: &ssh2::Session, cmd: &str) -> (i32, String) {
    let mut ch = sess.channel_session().expect("channel");
    ch.exec(cmd).expect("exec");
    let mut out = String::new();
    ch.read_to_string(&mut out).expect("read stdout");
    let mut err = String::new();
    ch.stderr().read_to_string(&mut err).expect("read stderr");
    ch.wait_close().expect("close");
    let status = ch.exit_status().expect("exit status");
    if status != 0 {
        eprintln!("command {cmd:?} failed ({status}): {err}");
    }
    (status, out)
}

fn exec_ok(sess: &ssh2::Session, cmd: &str) -> String {
    let (status, out) = exec(sess, cmd);
    assert_eq!(status, 0, "command {cmd:?}");
    out
}

/// Single-quotes a string for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let state = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().next().unwrap();
            state == "Z" || state == "X"
        }
    }
}

fn uid_of(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("uid")
}

/// Polls for a pid file written by a detached process.
fn wait_pid_file(path: &Path) -> i32 {
    eventually(&format!("pid file {}", path.display()), Duration::from_secs(10), || {
        std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok())
    })
}

fn uid_named(user: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == user).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {user}"))
}

fn sshd_pid(root_prefix: &Path) -> i32 {
    std::fs::read_to_string(root_prefix.join("run/sshd.pid")).expect("sshd pid file").trim().parse().expect("pid")
}

#[test]
fn ssh_login_host_key_and_idempotent_create() {
    let fx = Fixture::new("auto");
    let info = fx.create("node-1", "step-create-1");
    assert_eq!(info.status, ServerStatus::Running);
    assert_eq!(info.ssh_port, 22);
    assert_eq!(info.login_user, "root");
    let addr = info.address.unwrap();
    let IpAddr::V4(v4) = addr else { panic!("IPv4 expected") };
    assert_eq!(&v4.octets()[..3], &fx.subnet.host(0).octets()[..3], "an address of the fixture's pool");
    assert_ne!(v4.octets()[3], 0);
    assert!(info.root_prefix.starts_with(fx.root()));
    assert_eq!(info.tags.get("herd:node").map(String::as_str), Some("node-1"));

    let sess = fx.ssh(&info);
    assert_eq!(exec_ok(&sess, "id -u").trim(), "0");
    // The server sees its own address as the local end of the connection.
    let conn = exec_ok(&sess, "echo $SSH_CONNECTION");
    let fields: Vec<&str> = conn.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{conn}");
    assert_eq!(fields[2], addr.to_string());
    assert_eq!(fields[3], "22");
    assert_eq!(exec_ok(&sess, "echo $HERD_SERVER_ROOT").trim(), info.root_prefix.to_str().unwrap());
    assert_eq!(exec_ok(&sess, "echo $HERD_SERVER").trim(), info.id);

    // The host key presented is byte for byte the one recorded at create.
    let recorded = PublicKey::from_openssh(info.host_key.as_deref().unwrap()).unwrap();
    let (presented, _) = sess.host_key().unwrap();
    assert_eq!(presented, recorded.to_bytes().unwrap().as_slice());
    assert_eq!(herd_providers::hostkey::presented_host_key(&sess).unwrap(), recorded.to_openssh().unwrap());

    // A session expecting another host key is refused before authentication.
    let other = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let tcp = TcpStream::connect((addr, 22)).unwrap();
    let mut s2 = ssh2::Session::new().unwrap();
    s2.set_tcp_stream(tcp);
    s2.handshake().unwrap();
    let err = verify_host_key(&s2, &other.public_key().to_openssh().unwrap()).unwrap_err();
    assert!(matches!(err, HostKeyError::Mismatch { .. }), "{err}");
    assert!(!s2.authenticated());
    assert!(matches!(verify_host_key(&s2, "not a key"), Err(HostKeyError::InvalidExpected(_))));

    // Password logins are off; a wrong key is refused.
    let tcp = TcpStream::connect((addr, 22)).unwrap();
    let mut s3 = ssh2::Session::new().unwrap();
    s3.set_tcp_stream(tcp);
    s3.handshake().unwrap();
    let wrong = other.to_openssh(LineEnding::LF).unwrap();
    assert!(s3.userauth_pubkey_memory("root", None, &wrong, None).is_err());
    assert!(s3.userauth_password("root", "root").is_err());

    // Same token: the same server, not a second one.
    let again = fx.create("node-1", "step-create-1");
    assert_eq!(again.id, info.id);
    assert_eq!(again.address, info.address);
    assert_eq!(again.host_key, info.host_key);
    let servers = std::fs::read_dir(fx.root().join("servers")).unwrap().count();
    assert_eq!(servers, 1);
    // The token belongs to that server: reusing it for another one is refused.
    let err = fx.rt.block_on(fx.provider.create_server(&fx.spec("other"), "step-create-1")).unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err}");

    // Unknown ids and bad input have typed errors.
    let err = fx.rt.block_on(fx.provider.get_server("srv-nope")).unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
    let err = fx.rt.block_on(fx.provider.stop_server("srv-nope", true)).unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
    assert!(!fx.root().join("state/servers/srv-nope.lock").exists(), "unknown ids leave no lock file");
    fx.rt.block_on(fx.provider.delete_server("srv-nope")).unwrap();
    let err = fx.rt.block_on(fx.provider.get_server("../../etc")).unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
    let mut bad = fx.spec("bad");
    bad.flavor = "huge".into();
    let err = fx.rt.block_on(fx.provider.create_server(&bad, "step-bad")).unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err}");
    let mut bad = fx.spec("bad");
    bad.authorized_key = "ssh-ed25519 garbage".into();
    let err = fx.rt.block_on(fx.provider.create_server(&bad, "step-bad")).unwrap_err();
    assert!(matches!(err, ProviderError::Permanent(_)), "{err}");

    let got = fx.rt.block_on(fx.provider.get_server(&info.id)).unwrap();
    assert_eq!(got, info);
}

#[test]
fn two_servers_coexist_on_port_22() {
    let fx = Fixture::new("auto");
    let a = fx.create("a", "step-a");
    let b = fx.create("b", "step-b");
    assert_ne!(a.id, b.id);
    assert_ne!(a.address, b.address);
    assert_ne!(a.host_key, b.host_key);
    assert_eq!((a.ssh_port, b.ssh_port), (22, 22));
    for info in [&a, &b] {
        let sess = fx.ssh(info);
        let conn = exec_ok(&sess, "echo $SSH_CONNECTION");
        assert_eq!(conn.split_whitespace().nth(2), Some(info.address.unwrap().to_string().as_str()));
        assert_eq!(exec_ok(&sess, "echo $HERD_SERVER").trim(), info.id);
    }
    // Lookup by tags (cleanup after a lost create answer).
    let all = fx.rt.block_on(fx.provider.list_servers(&BTreeMap::new())).unwrap();
    assert_eq!(all.len(), 2);
    let only_b =
        BTreeMap::from([("herd:cluster".to_owned(), "c1".to_owned()), ("herd:node".to_owned(), "b".to_owned())]);
    let found = fx.rt.block_on(fx.provider.list_servers(&only_b)).unwrap();
    assert_eq!(found.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [b.id.as_str()]);
    let none = BTreeMap::from([("herd:cluster".to_owned(), "c2".to_owned())]);
    assert!(fx.rt.block_on(fx.provider.list_servers(&none)).unwrap().is_empty());

    // A's host key does not pass for B.
    let tcp = TcpStream::connect((b.address.unwrap(), 22)).unwrap();
    let mut s = ssh2::Session::new().unwrap();
    s.set_tcp_stream(tcp);
    s.handshake().unwrap();
    assert!(verify_host_key(&s, a.host_key.as_deref().unwrap()).is_err());
}

#[test]
fn volumes_attach_snapshot_restore() {
    let fx = Fixture::new("auto");
    let server = fx.create("db", "step-server");
    let p = &fx.provider;
    let spec =
        VolumeSpec { name: "data".into(), size_gb: 10, server_id: Some(server.id.clone()), tags: BTreeMap::new() };
    let vol = fx.rt.block_on(p.create_volume(&spec, "step-vol")).unwrap();
    assert_eq!(vol.status, VolumeStatus::Available);
    assert_eq!(vol.size_gb, 10);
    let same = fx.rt.block_on(p.create_volume(&spec, "step-vol")).unwrap();
    assert_eq!(same.id, vol.id);

    let att = fx.rt.block_on(p.attach_volume(&vol.id, &server.id)).unwrap();
    assert_eq!(att.kind, AttachmentKind::Directory);
    assert!(Path::new(&att.path).starts_with(&server.root_prefix), "{}", att.path);
    // Attaching again reports the same place.
    let again = fx.rt.block_on(p.attach_volume(&vol.id, &server.id)).unwrap();
    assert_eq!(again, att);
    let got = fx.rt.block_on(p.get_volume(&vol.id)).unwrap();
    assert_eq!(got.status, VolumeStatus::InUse);
    assert_eq!(got.attached_to.as_deref(), Some(server.id.as_str()));

    // Written over SSH, owned by postgres, as the datastore would.
    let sess = fx.ssh(&server);
    let dir = sh_quote(&att.path);
    exec_ok(&sess, &format!("mkdir {dir}/pgdata && echo hello > {dir}/pgdata/f && chown -R postgres {dir}/pgdata"));

    let snap_spec = SnapshotSpec { name: "s1".into(), tags: BTreeMap::new() };
    let snap = fx.rt.block_on(p.snapshot_volume(&vol.id, &snap_spec, "step-snap")).unwrap();
    assert_eq!(snap.status, SnapshotStatus::Completed);
    assert_eq!(snap.volume_id, vol.id);
    assert_eq!(snap.size_gb, 10);
    let snap_again = fx.rt.block_on(p.snapshot_volume(&vol.id, &snap_spec, "step-snap")).unwrap();
    assert_eq!(snap_again.id, snap.id);
    assert_eq!(std::fs::read_dir(fx.root().join("snapshots")).unwrap().count(), 1);

    // Changes after the snapshot do not reach it.
    exec_ok(&sess, &format!("echo changed > {dir}/pgdata/f"));

    let restore_spec = VolumeSpec { name: "restored".into(), size_gb: 1, ..spec.clone() };
    let restored = fx.rt.block_on(p.create_volume_from_snapshot(&snap.id, &restore_spec, "step-restore")).unwrap();
    assert_ne!(restored.id, vol.id);
    assert_eq!(restored.size_gb, 10, "raised to the snapshot's size");
    assert_eq!(restored.snapshot_id.as_deref(), Some(snap.id.as_str()));
    let restored_again =
        fx.rt.block_on(p.create_volume_from_snapshot(&snap.id, &restore_spec, "step-restore")).unwrap();
    assert_eq!(restored_again.id, restored.id);

    let att2 = fx.rt.block_on(p.attach_volume(&restored.id, &server.id)).unwrap();
    assert_ne!(att2.path, att.path);
    let content = exec_ok(&sess, &format!("cat {}/pgdata/f", sh_quote(&att2.path)));
    assert_eq!(content, "hello\n");
    let owner = exec_ok(&sess, &format!("stat -c %U {}/pgdata/f", sh_quote(&att2.path)));
    assert_eq!(owner.trim(), "postgres");

    // An attached volume cannot be deleted, or attached elsewhere.
    let err = fx.rt.block_on(p.delete_volume(&vol.id)).unwrap_err();
    assert!(matches!(err, ProviderError::Conflict(_)), "{err}");
    let other = fx.create("other", "step-other");
    let err = fx.rt.block_on(p.attach_volume(&vol.id, &other.id)).unwrap_err();
    assert!(matches!(err, ProviderError::Conflict(_)), "{err}");

    // Detach is idempotent and removes the path; the data stays on the volume.
    fx.rt.block_on(p.detach_volume(&vol.id, &server.id)).unwrap();
    fx.rt.block_on(p.detach_volume(&vol.id, &server.id)).unwrap();
    assert!(std::fs::symlink_metadata(&att.path).is_err());
    assert_eq!(fx.rt.block_on(p.get_volume(&vol.id)).unwrap().status, VolumeStatus::Available);
    let reattached = fx.rt.block_on(p.attach_volume(&vol.id, &other.id)).unwrap();
    let sess_other = fx.ssh(&other);
    assert_eq!(exec_ok(&sess_other, &format!("cat {}/pgdata/f", sh_quote(&reattached.path))), "changed\n");

    // Deleting a server lets go of its volumes; then everything can be deleted.
    fx.rt.block_on(p.delete_server(&other.id)).unwrap();
    assert_eq!(fx.rt.block_on(p.get_volume(&vol.id)).unwrap().attached_to, None);
    fx.rt.block_on(p.detach_volume(&restored.id, &server.id)).unwrap();
    for id in [&vol.id, &restored.id] {
        fx.rt.block_on(p.delete_volume(id)).unwrap();
        fx.rt.block_on(p.delete_volume(id)).unwrap();
        let err = fx.rt.block_on(p.get_volume(id)).unwrap_err();
        assert!(matches!(err, ProviderError::NotFound(_)), "{err}");
    }
    fx.rt.block_on(p.delete_snapshot(&snap.id)).unwrap();
    fx.rt.block_on(p.delete_snapshot(&snap.id)).unwrap();
    assert!(matches!(fx.rt.block_on(p.get_snapshot(&snap.id)), Err(ProviderError::NotFound(_))));
    for sub in ["volumes", "snapshots", "tmp"] {
        assert_eq!(std::fs::read_dir(fx.root().join(sub)).unwrap().count(), 0, "{sub}");
    }
    for sub in ["state/volumes", "state/snapshots"] {
        assert_eq!(std::fs::read_dir(fx.root().join(sub)).unwrap().count(), 0, "{sub}");
    }
}

/// Starts the processes a datastore would, over SSH: detached root and postgres
/// daemons (one ignoring SIGTERM), and registers boot-list entries. Returns their pids.
fn start_daemons(fx: &Fixture, info: &ServerInfo) -> Vec<i32> {
    let sess = fx.ssh(info);
    let tmp = info.root_prefix.join("tmp");
    let pid_file = |n: &str| tmp.join(format!("{n}.pid"));
    let q = |p: &Path| sh_quote(p.to_str().unwrap());
    let names = ["root-daemon", "pg-daemon", "stubborn"];
    // Pid files of an earlier round would be read before the new ones are written.
    for n in names {
        exec_ok(&sess, &format!("rm -f {}", q(&pid_file(n))));
    }
    exec_ok(
        &sess,
        &format!(
            "setsid nohup sh -c 'echo $$ > \"$1\"; exec sleep 1000' sh {} >/dev/null 2>&1 </dev/null &",
            q(&pid_file("root-daemon"))
        ),
    );
    exec_ok(
        &sess,
        &format!(
            "runuser -u {} -- setsid nohup sh -c 'echo $$ > \"$1\"; exec sleep 1001' sh {} >/dev/null 2>&1 </dev/null &",
            sh_quote(info.service_user.as_deref().expect("a service user")),
            q(&pid_file("pg-daemon"))
        ),
    );
    // Ignores SIGTERM: a graceful stop must escalate to SIGKILL.
    exec_ok(
        &sess,
        &format!(
            "setsid nohup sh -c 'trap \"\" TERM; echo $$ > \"$1\"; exec sleep 1002' sh {} >/dev/null 2>&1 </dev/null &",
            q(&pid_file("stubborn"))
        ),
    );
    let pids: Vec<i32> = names.iter().map(|n| wait_pid_file(&pid_file(n))).collect();
    assert_eq!(uid_of(pids[1]), uid_named(info.service_user.as_deref().unwrap()));
    pids
}

/// Registers boot entries over SFTP: one that runs, two that must not.
fn register_boot_list(fx: &Fixture, info: &ServerInfo) {
    let sess = fx.ssh(info);
    let sftp = sess.sftp().expect("sftp");
    let boot = info.root_prefix.join(BOOT_DIR);
    let write = |name: &str, body: &str, mode: i32| {
        let path = boot.join(name);
        let mut f = sftp
            .open_mode(&path, ssh2::OpenFlags::WRITE | ssh2::OpenFlags::TRUNCATE, mode, ssh2::OpenType::File)
            .expect("sftp open");
        f.write_all(body.as_bytes()).expect("sftp write");
    };
    write(
        "50-marker",
        "#!/bin/sh\n\
         echo \"$HERD_SERVER $HERD_SERVER_ADDRESS\" >> \"$HERD_SERVER_ROOT/var/boot-ran\"\n\
         setsid nohup sh -c 'echo $$ > \"$HERD_SERVER_ROOT/tmp/boot-daemon.pid\"; exec sleep 1003' \
         >/dev/null 2>&1 </dev/null &\n",
        0o755,
    );
    let never = "#!/bin/sh\ntouch \"$HERD_SERVER_ROOT/var/must-not-run\"\n";
    let stop = info.root_prefix.join(herd_providers::local::STOP_DIR).join("10-stop-marker");
    let mut f = sftp
        .open_mode(&stop, ssh2::OpenFlags::WRITE | ssh2::OpenFlags::TRUNCATE, 0o755, ssh2::OpenType::File)
        .expect("sftp open");
    f.write_all(b"#!/bin/sh\necho stopping >> \"$HERD_SERVER_ROOT/var/stop-ran\"\n").expect("sftp write");
    write("60-not-executable", never, 0o644);
    write("70-staged.tmp", never, 0o755);
}

fn check_power_cycle(tracking: &str) {
    let fx = Fixture::new(tracking);
    let p = &fx.provider;
    let info = fx.create("pc", "step-pc");
    let sshd = sshd_pid(&info.root_prefix);
    let session = fx.ssh(&info); // an open session must die too
    let daemons = start_daemons(&fx, &info);
    register_boot_list(&fx, &info);
    let tracked = fx.pids(&info.id);
    for pid in daemons.iter().chain([&sshd]) {
        assert!(tracked.contains(pid), "pid {pid} not tracked: {tracked:?}");
    }

    // Power off: every process dies at once.
    let off = fx.rt.block_on(p.stop_server(&info.id, true)).unwrap();
    assert_eq!(off.status, ServerStatus::Stopped);
    for pid in daemons.iter().chain([&sshd]) {
        assert!(is_dead(*pid), "pid {pid} survived power-off");
    }
    assert!(fx.pids(&info.id).is_empty());
    assert!(TcpStream::connect((info.address.unwrap(), 22)).is_err());
    assert!(!info.root_prefix.join("var/stop-ran").exists(), "power-off runs no stop list");
    drop(session);
    assert_eq!(fx.rt.block_on(p.get_server(&info.id)).unwrap().status, ServerStatus::Stopped);
    // Stopping a stopped server is fine.
    fx.rt.block_on(p.stop_server(&info.id, true)).unwrap();

    // Power on: sshd with the same host key, then the boot list.
    let on = fx.rt.block_on(p.start_server(&info.id)).unwrap();
    assert_eq!(on.status, ServerStatus::Running);
    assert_eq!(on.host_key, info.host_key);
    let sess = fx.ssh(&on);
    assert_eq!(exec_ok(&sess, "id -u").trim(), "0");
    let ran = std::fs::read_to_string(info.root_prefix.join("var/boot-ran")).expect("boot ran");
    assert_eq!(ran, format!("{} {}\n", info.id, info.address.unwrap()));
    assert!(!info.root_prefix.join("var/must-not-run").exists());
    let boot_daemon = wait_pid_file(&info.root_prefix.join("tmp/boot-daemon.pid"));
    assert!(!is_dead(boot_daemon));
    assert!(fx.pids(&info.id).contains(&boot_daemon));
    // Starting a running server does not replay the boot list.
    fx.rt.block_on(p.start_server(&info.id)).unwrap();
    let ran = std::fs::read_to_string(info.root_prefix.join("var/boot-ran")).unwrap();
    assert_eq!(ran.lines().count(), 1);

    // Graceful stop: SIGTERM, then SIGKILL for what ignores it after the deadline.
    let daemons = start_daemons(&fx, &info);
    let stubborn = daemons[2];
    let sshd = sshd_pid(&info.root_prefix);
    drop(sess);
    let started = Instant::now();
    let off = fx.rt.block_on(p.stop_server(&info.id, false)).unwrap();
    let took = started.elapsed();
    assert_eq!(off.status, ServerStatus::Stopped);
    for pid in daemons.iter().chain([&sshd, &boot_daemon]) {
        assert!(is_dead(*pid), "pid {pid} survived graceful stop");
    }
    let stop_ran = std::fs::read_to_string(info.root_prefix.join("var/stop-ran")).expect("stop list ran");
    assert_eq!(stop_ran, "stopping\n");
    assert!(
        took >= Duration::from_millis(1900),
        "pid {stubborn} ignores SIGTERM, so the stop must have waited the 2s grace, took {took:?}"
    );

    // Delete leaves nothing behind; the address is free again.
    fx.rt.block_on(p.start_server(&info.id)).unwrap();
    let daemons = start_daemons(&fx, &info);
    let sshd = sshd_pid(&info.root_prefix);
    fx.rt.block_on(p.delete_server(&info.id)).unwrap();
    fx.rt.block_on(p.delete_server(&info.id)).unwrap();
    for pid in daemons.iter().chain([&sshd]) {
        assert!(is_dead(*pid), "pid {pid} survived delete");
    }
    assert!(!info.root_prefix.exists());
    assert_eq!(std::fs::read_dir(fx.root().join("state/servers")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(fx.root().join("servers")).unwrap().count(), 0);
    if tracking == "cgroup" {
        let cgroups = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = cgroups
            .lines()
            .find(|l| l.contains(" - cgroup2 "))
            .and_then(|l| l.split_whitespace().nth(4))
            .unwrap()
            .to_owned();
        assert!(!Path::new(&mount).join("herd").join(&info.id).exists());
    }
    assert!(matches!(fx.rt.block_on(p.get_server(&info.id)), Err(ProviderError::NotFound(_))));
    let next = fx.create("next", "step-next");
    assert_eq!(next.address, info.address, "the address was released");
}

#[test]
fn power_cycle_with_cgroup_tracking() {
    check_power_cycle("cgroup");
}

#[test]
fn power_cycle_with_marker_tracking() {
    check_power_cycle("marker");
}

#[test]
fn recover_restarts_servers_after_herd_restart() {
    let mut fx = Fixture::new("auto");
    let a = fx.create("a", "step-a");
    let b = fx.create("b", "step-b");
    register_boot_list(&fx, &a);
    fx.rt.block_on(fx.provider.stop_server(&b.id, true)).unwrap();

    // The host "crashes" while Herd is down: its sshd dies.
    let sshd = sshd_pid(&a.root_prefix);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sshd), nix::sys::signal::Signal::SIGKILL).unwrap();
    eventually(&format!("sshd {sshd} to die"), Duration::from_secs(10), || is_dead(sshd).then_some(()));

    // A new provider on the same root, built from settings like Herd does.
    let settings = herd_providers::ProvidersSettings { local: fx.settings.clone(), ec2: None };
    let providers = herd_providers::build_providers(&settings, fx.dir.path()).unwrap();
    let fresh = providers.require("local").unwrap();
    assert_eq!(fx.rt.block_on(fresh.get_server(&a.id)).unwrap().status, ServerStatus::Error);
    let restarted = fx.rt.block_on(providers.recover_all()).unwrap();
    assert_eq!(restarted.get("local"), Some(&vec![a.id.clone()]));

    let a2 = fx.rt.block_on(fresh.get_server(&a.id)).unwrap();
    assert_eq!(a2.status, ServerStatus::Running);
    assert_eq!(a2.host_key, a.host_key);
    let sess = ssh(&a2, &fx.key);
    assert_eq!(exec_ok(&sess, "echo $HERD_SERVER").trim(), a.id);
    let ran = std::fs::read_to_string(a.root_prefix.join("var/boot-ran")).unwrap();
    assert_eq!(ran.lines().count(), 1, "boot list replayed once by recover");
    // B was stopped on purpose and stays stopped; a second recover does nothing.
    assert_eq!(fx.rt.block_on(fresh.get_server(&b.id)).unwrap().status, ServerStatus::Stopped);
    assert!(TcpStream::connect((b.address.unwrap(), 22)).is_err());
    assert_eq!(fx.rt.block_on(providers.recover_all()).unwrap().get("local"), Some(&vec![]));
    drop(sess);
    drop(providers);
    // Later steps use the rebuilt provider.
    fx.provider = LocalProvider::new("local", &fx.settings, &fx.dir.path().join("local root")).unwrap();
}

#[test]
fn skips_addresses_something_else_listens_on() {
    let fx = Fixture::new("auto");
    // Another installation's server (or anything) already on the first address.
    let squatter = std::net::TcpListener::bind((fx.subnet.host(1), 22)).expect("bind squatter");
    let info = fx.create("s", "step-s");
    assert_eq!(info.address, Some(fx.subnet.host(2).into()));
    drop(squatter);
    let sess = fx.ssh(&info);
    let second = fx.subnet.host(2).to_string();
    assert_eq!(exec_ok(&sess, "echo $SSH_CONNECTION").split_whitespace().nth(2), Some(second.as_str()));
}

#[test]
fn a_clusters_servers_share_a_service_user_that_goes_with_the_last() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fx = Fixture::new("auto");
    let tagged = |name: &str, cluster: &str| {
        let mut spec = fx.spec(name);
        spec.tags.insert("herd:cluster".into(), cluster.into());
        spec
    };
    let (c1, c2) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let create = |spec: ServerSpec, token: &str| fx.rt.block_on(fx.provider.create_server(&spec, token)).unwrap();
    let a0 = create(tagged("a-0", &c1), "step-a0");
    let a1 = create(tagged("a-1", &c1), "step-a1");
    let b0 = create(tagged("b-0", &c2), "step-b0");
    let user = a0.service_user.clone().expect("a service user (the test runs as root)");
    assert_eq!(user, format!("herd-{}", &c1.replace('-', "")[..12]));
    assert_eq!(a1.service_user.as_deref(), Some(user.as_str()), "one user per cluster");
    assert_ne!(b0.service_user, a0.service_user, "another cluster, another user");
    let exists = |u: &str| std::process::Command::new("getent").args(["passwd", u]).status().unwrap().success();
    assert!(exists(&user));

    // Each root is root's and its user's group's alone; the servers directory lists nothing.
    let gid_of = |u: &str| {
        let out = std::process::Command::new("id").args(["-g", u]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap()
    };
    for s in [&a0, &a1, &b0] {
        let meta = std::fs::metadata(&s.root_prefix).unwrap();
        let u = s.service_user.as_deref().unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o777), (0, gid_of(u), 0o750), "{u}");
    }
    let servers = std::fs::metadata(fx.root().join("servers")).unwrap();
    assert_eq!(servers.permissions().mode() & 0o777, 0o711);

    fx.rt.block_on(fx.provider.delete_server(&a0.id)).unwrap();
    assert!(exists(&user), "a-1 still runs as {user}");
    fx.rt.block_on(fx.provider.delete_server(&a1.id)).unwrap();
    assert!(!exists(&user), "{user} outlived its cluster's last server");
    let b_user = b0.service_user.clone().unwrap();
    assert!(exists(&b_user));

    // A run killed before its cleanup leaves b-0 and its user: the suite's
    // stop-leftovers (here told that the temp directory is this provider's root, so
    // that it cannot touch other tests' servers) finds the user by its comment.
    let passwd = std::process::Command::new("getent").args(["passwd", &b_user]).output().unwrap();
    let gecos = String::from_utf8_lossy(&passwd.stdout).split(':').nth(4).unwrap_or_default().to_owned();
    assert_eq!(gecos, format!("Herd cluster service user, provider root {}", fx.root().display()));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stop-leftovers.sh");
    let out = std::process::Command::new(script).env("TMPDIR", fx.root()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!exists(&b_user), "stop-leftovers left {b_user}: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("removed service user {b_user}")), "{out:?}");
}
