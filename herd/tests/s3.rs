//! Backups into an S3 repository through the real `herd` binary: `moto_server` (pip
//! install 'moto[server]') on a free port of 127.0.0.1 is the S3, with stunnel4 in
//! front of it as the TLS terminator (pgBackRest 2.45 speaks only https to S3, and
//! moto's own `--ssl` server ends TLS sessions uncleanly). A throwaway CA signs the
//! terminator's certificate for `localhost` (pgBackRest 2.45 matches DNS names only,
//! not IP SANs), and Herd verifies it with `backups.s3.ca_file`.
//!
//! A 1-node cluster archives into the bucket; full and incremental backups; the
//! recovery window read from the archived WAL; a restore of the latest state into a
//! new cluster; an expired backup's objects gone from the bucket; the secret key in
//! no log, no other file than the nodes' pgbackrest.conf and no command line.
//! `HERD_MOTO_SERVER` / `HERD_STUNNEL` override the executables.

mod common;

use common::{Env, cluster, free_port, poll, psql};
use herd_client::types::{
    BackupDto, BackupRequest, BackupStatus, BackupType, ClusterStatus, CreateCluster, RestoreRequest,
};
use herd_testkit::eventually;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const TASK_WITHIN: Duration = Duration::from_secs(300);
const BUCKET: &str = "herd-backups";
/// `backups.s3.path`: the repository's prefix inside the bucket.
const PREFIX: &str = "herd-e2e";

/// A daemon the test started, in its own process group: Drop kills the group by the
/// child's pid (pass or fail) and reaps it.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({:?}): {e}", cmd.get_program()));
        Self { name, child, log }
    }

    /// Waits until `addr` accepts TCP connections.
    fn wait_listening(&mut self, addr: SocketAddr) {
        eventually(&format!("{} listening on {addr}", self.name), Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited early ({status}): {}", self.name, std::fs::read_to_string(&self.log).unwrap());
            }
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway CA and a server certificate for `localhost` signed by it. The
/// directory is readable by everyone (pgBackRest on the nodes runs as postgres and
/// reads the CA); the keys are not.
fn make_certificates(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Herd S3 test CA"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    for (f, mode) in [("ca.crt", 0o644), ("ca.key", 0o600), ("server.key", 0o600), ("server.crt", 0o644)] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir.join("ca.crt")
}

/// moto's S3 (plain http on its own port, used by the test only) behind stunnel
/// (https on `localhost:<tls_port>`, what Herd and pgBackRest use).
struct S3 {
    // Declared first: dropped (killed) first.
    _stunnel: Daemon,
    _moto: Daemon,
    moto_port: u16,
    tls_port: u16,
    http: reqwest::Client,
}

impl S3 {
    fn start(dir: &Path) -> Self {
        let moto_port = free_port();
        let program = std::env::var("HERD_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let mut cmd = Command::new(program);
        cmd.args(["-H", "127.0.0.1", "-p", &moto_port.to_string()]);
        let mut moto = Daemon::spawn("moto_server", cmd, dir.join("moto.log"));
        moto.wait_listening(SocketAddr::from(([127, 0, 0, 1], moto_port)));

        // pgBackRest connects to the first address `localhost` resolves to: the
        // terminator listens on each of them.
        let tls_port = free_port();
        let addrs: Vec<IpAddr> = ("localhost", tls_port).to_socket_addrs().unwrap().map(|a| a.ip()).collect();
        assert!(addrs.iter().all(IpAddr::is_loopback) && !addrs.is_empty(), "localhost resolves to {addrs:?}");
        let mut conf = format!(
            "foreground = yes\npid =\ndebug = notice\ncert = {}\nkey = {}\n",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        );
        for (i, ip) in addrs.iter().enumerate() {
            conf.push_str(&format!(
                "[s3-{i}]\naccept = {}\nconnect = 127.0.0.1:{moto_port}\n",
                SocketAddr::new(*ip, tls_port)
            ));
        }
        std::fs::write(dir.join("stunnel.conf"), conf).unwrap();
        let program = std::env::var("HERD_STUNNEL").unwrap_or_else(|_| "stunnel4".into());
        let mut cmd = Command::new(program);
        cmd.arg(dir.join("stunnel.conf"));
        let mut stunnel = Daemon::spawn("stunnel", cmd, dir.join("stunnel.log"));
        for ip in &addrs {
            stunnel.wait_listening(SocketAddr::new(*ip, tls_port));
        }
        Self { _stunnel: stunnel, _moto: moto, moto_port, tls_port, http: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.moto_port)
    }

    async fn create_bucket(&self, name: &str) {
        let res = self.http.put(self.url(name)).send().await.unwrap();
        assert!(res.status().is_success(), "create bucket: {} {}", res.status(), res.text().await.unwrap());
    }

    /// Every key under `prefix` (ListObjectsV2, all pages).
    async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![("list-type", "2".to_owned()), ("prefix", prefix.to_owned())];
            if let Some(t) = &token {
                q.push(("continuation-token", t.clone()));
            }
            let res = self.http.get(self.url(BUCKET)).query(&q).send().await.unwrap();
            assert!(res.status().is_success(), "list {prefix}: {}", res.status());
            let xml = res.text().await.unwrap();
            keys.extend(elements(&xml, "Key"));
            if elements(&xml, "IsTruncated").first().map(String::as_str) != Some("true") {
                return keys;
            }
            token = Some(elements(&xml, "NextContinuationToken").pop().expect("continuation token"));
        }
    }
}

/// The text of every `<tag>…</tag>` in a (flat, entity-free) XML document.
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open).skip(1).filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_owned())).collect()
}

/// Records every process whose command line shows the secret, until stopped.
struct CmdlineWatch {
    stop: Arc<AtomicBool>,
    /// (pid, command line with the secret masked)
    hits: Arc<Mutex<Vec<(u32, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The control process (see `start`), whose hits do not count.
    control: u32,
}

impl CmdlineWatch {
    fn start(secret: &str, dir: &Path) -> Self {
        let (stop, hits) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (s, h, needle) = (stop.clone(), hits.clone(), secret.as_bytes().to_vec());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
                    let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                    if cmd.windows(needle.len()).any(|w| w == needle) {
                        let shown = String::from_utf8_lossy(&cmd).replace('\0', " ");
                        let shown = shown.replace(std::str::from_utf8(&needle).unwrap(), "<SECRET>");
                        h.lock().unwrap().push((pid, shown));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut watch = Self { stop, hits, thread: Some(thread), control: 0 };
        // Proof that it sees what it looks for: a process showing the secret, ignored
        // afterwards.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60; exit 0", &format!("control-{secret}")]);
        let control = Daemon::spawn("control", cmd, dir.join("control.log"));
        watch.control = control.child.id();
        eventually(&format!("the command-line watch to see pid {}", watch.control), Duration::from_secs(30), || {
            watch.hits.lock().unwrap().iter().any(|(p, _)| *p == watch.control).then_some(())
        });
        drop(control);
        watch
    }

    fn finish(mut self) -> Vec<(u32, String)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let control = self.control;
        std::mem::take(&mut *self.hits.lock().unwrap()).into_iter().filter(|(p, _)| *p != control).collect()
    }
}

impl Drop for CmdlineWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Regular files under `dir` (symlinks not followed) that contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file()
                && let Ok(bytes) = std::fs::read(e.path())
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(e.path());
            }
        }
    }
    found
}

fn stanza_of(cluster_id: Uuid) -> String {
    format!("herd-{}", cluster_id.simple())
}

async fn backup(env: &Env, api: &str, token: &str, id: Uuid, kind: BackupType) -> BackupDto {
    let herd = env.client(api, token);
    let v = herd.create_backup(id, &BackupRequest { backup_type: Some(kind) }).await.unwrap();
    env.wait_succeeded(api, token, v.task_id, TASK_WITHIN).await;
    let b = herd.backup(v.backup.id).await.unwrap();
    assert_eq!((b.status, b.backup_type), (BackupStatus::Completed, kind), "{b:?}");
    assert!(b.label.is_some() && b.finished_at.is_some(), "{b:?}");
    assert!(b.repo_size_bytes.unwrap_or(0) > 0, "{b:?}");
    assert_eq!(b.repository, "s3", "{b:?}");
    assert!(b.encrypted, "{b:?}");
    b
}

/// A time psql printed (RFC 3339).
fn time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s:?}: {e}")).with_timezone(&chrono::Utc)
}

/// Switches WAL on the only server's PostgreSQL and waits until the switched segment
/// is archived. The admin role may not switch WAL: this runs as the node's service
/// user (the socket directory's owner) through its socket, as the superuser
/// (`local all postgres peer map=herd`).
fn archive_now(env: &Env) {
    use std::os::unix::fs::MetadataExt;
    let servers = env.servers();
    let [server] = &servers[..] else { panic!("one server expected: {servers:?}") };
    let socket = env.state().join("local/servers").join(server).join("var/run/postgresql");
    let uid = std::fs::metadata(&socket).unwrap().uid();
    let user = nix::unistd::User::from_uid(uid.into()).unwrap().expect("the socket directory's owner").name;
    let sql = |q: &str| -> Result<String, String> {
        let out = Command::new("runuser")
            .args(["-u", &user, "--", "psql", "-h"])
            .arg(&socket)
            .args(["-p", "5432", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc", q])
            .current_dir("/")
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let seg = sql("select pg_walfile_name(pg_switch_wal())").unwrap();
    poll(Duration::from_secs(120), || {
        let last = sql("select coalesce(last_archived_wal, '') from pg_stat_archiver")?;
        if last.as_str() >= seg.as_str() { Ok(()) } else { Err(format!("archived {last:?}, waiting for {seg}")) }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_repository_over_tls_backup_restore_and_expiry() {
    let tls_dir = tempfile::Builder::new().prefix("herd-s3tls").tempdir_in("/tmp").unwrap();
    let ca = make_certificates(tls_dir.path());
    let s3 = S3::start(tls_dir.path());
    s3.create_bucket(BUCKET).await;

    let secret = format!("herd-s3-secret-{}", uuid::Uuid::new_v4().simple());
    let watch = CmdlineWatch::start(&secret, tls_dir.path());
    let env = Env::new();
    let endpoint = format!("localhost:{}", s3.tls_port);
    let ca_path = ca.display().to_string();
    let s3_env = [
        ("HERD_BACKUPS__REPOSITORY", "s3"),
        ("HERD_BACKUPS__S3__BUCKET", BUCKET),
        ("HERD_BACKUPS__S3__ENDPOINT", endpoint.as_str()),
        ("HERD_BACKUPS__S3__REGION", "us-east-1"),
        ("HERD_BACKUPS__S3__PATH", "/herd-e2e"),
        ("HERD_BACKUPS__S3__ACCESS_KEY_ID", "HERDTESTKEYID"),
        ("HERD_BACKUPS__S3__SECRET_ACCESS_KEY", secret.as_str()),
        ("HERD_BACKUPS__S3__PATH_STYLE", "true"),
        ("HERD_BACKUPS__S3__VERIFY_TLS", "true"),
        ("HERD_BACKUPS__S3__CA_FILE", ca_path.as_str()),
        ("RUST_LOG", "info,herd_worker=debug,herd_datastores=debug,herd_api=debug"),
    ];
    let (dev, api, token) = env.dev(&s3_env, "dev.log");

    // The build creates the stanza in the bucket (stanza-create + check over TLS).
    let herd = env.client(&api, &token);
    let src = env.create_cluster(&api, &token, cluster("src", 1)).await;
    let shown = env.wait_status(&api, &token, src, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(shown.backup_repository.as_deref(), Some("s3"), "{shown:?}");
    let stanza = stanza_of(src);
    for info in [format!("{PREFIX}/archive/{stanza}/archive.info"), format!("{PREFIX}/backup/{stanza}/backup.info")] {
        assert!(s3.keys(&info).await.contains(&info), "{info} is not in the bucket");
    }
    // Every node's pgbackrest.conf names the bucket, the CA and the key: its cluster's
    // service user's only.
    let user = format!("herd-{}", &src.simple().to_string()[..12]);
    let pg_uid = nix::unistd::User::from_name(&user).unwrap().expect("the cluster's service user").uid.as_raw();
    let confs: Vec<PathBuf> = std::fs::read_dir(env.state().join("local/servers"))
        .unwrap()
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path().join("etc/pgbackrest")).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    assert_eq!(confs.len(), 1, "{confs:?}");
    let meta = std::fs::metadata(&confs[0]).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o600, pg_uid), "{}", confs[0].display());
    let conf = std::fs::read_to_string(&confs[0]).unwrap();
    for want in [
        "repo1-type=s3".to_owned(),
        format!("repo1-s3-bucket={BUCKET}"),
        "repo1-s3-endpoint=localhost".to_owned(),
        format!("repo1-storage-port={}", s3.tls_port),
        format!("repo1-storage-ca-file={ca_path}"),
        format!("repo1-s3-key-secret={secret}"),
    ] {
        assert!(conf.lines().any(|l| l == want), "{want} missing from {conf}");
    }
    assert!(!conf.contains("verify-tls"), "verification stays on: {conf}");

    // Rows, a full backup, rows, an incremental.
    let (uri, password) = env.credentials(&api, &token, src).await;
    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 100)").unwrap();
    let full = backup(&env, &api, &token, src, BackupType::Full).await;
    psql(&uri, &password, "insert into t select generate_series(101, 200)").unwrap();
    let incr = backup(&env, &api, &token, src, BackupType::Incr).await;
    let (full_label, incr_label) = (full.label.as_deref().unwrap(), incr.label.as_deref().unwrap());
    assert!(incr_label.starts_with(&format!("{full_label}_")) && incr_label.ends_with('I'), "{incr_label}");
    let full_keys = s3.keys(&format!("{PREFIX}/backup/{stanza}/{full_label}/")).await;
    let incr_keys = s3.keys(&format!("{PREFIX}/backup/{stanza}/{incr_label}/")).await;
    assert!(full_keys.iter().any(|k| k.ends_with("/backup.manifest")), "{} keys", full_keys.len());
    assert!(incr_keys.iter().any(|k| k.ends_with("/backup.manifest")), "{} keys", incr_keys.len());
    assert!(incr_keys.len() < full_keys.len(), "incr {} vs full {} objects", incr_keys.len(), full_keys.len());
    // Nothing went to the posix repository.
    let posix = env.state().join("backups");
    assert!(std::fs::read_dir(&posix).map(|mut d| d.next().is_none()).unwrap_or(true), "{}", posix.display());

    // Rows after the incremental reach the bucket only as WAL. T: before their commit.
    let t = psql(
        &uri,
        &password,
        "with ins as (insert into t select generate_series(201, 250) returning 1) \
         select to_char(now() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from (select count(*) from ins) x",
    )
    .unwrap();
    archive_now(&env);

    let list = herd.backups(Some(src)).await.unwrap();
    let listed: Vec<(BackupType, BackupStatus, &str)> =
        list.iter().map(|b| (b.backup_type, b.status, b.label.as_deref().unwrap_or(""))).collect();
    assert_eq!(
        listed,
        [
            (BackupType::Full, BackupStatus::Completed, full_label),
            (BackupType::Incr, BackupStatus::Completed, incr_label)
        ],
        "{list:?}"
    );

    // The window: from the full's end to the last archived commit, read from the WAL
    // in the bucket (the newest backup ended before T).
    let w = herd.recovery_window(src).await.unwrap();
    let (earliest, latest) = (w.earliest.unwrap(), w.latest.unwrap());
    assert_eq!(earliest, full.finished_at.unwrap(), "{w:?}");
    assert!(incr.finished_at.unwrap() < time(&t), "incr ended before T={t}: {incr:?}");
    assert!(latest >= time(&t), "latest {latest} is not past the commit after T={t}: {w:?}");

    // The latest state, restored into a new cluster: every row.
    let latest_state = RestoreRequest { source_cluster_id: Some(src), ..Default::default() };
    let restored =
        env.create_cluster(&api, &token, CreateCluster { restore: Some(latest_state), ..cluster("restored", 1) }).await;
    env.wait_status(&api, &token, restored, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let (ruri, rpassword) = env.credentials(&api, &token, restored).await;
    let rows = psql(&ruri, &rpassword, "select count(*) || ':' || min(id) || ':' || max(id) from t").unwrap();
    assert_eq!(rows, "250:1:250", "every row of the source");
    // It archives into a stanza of its own in the same bucket.
    let own = format!("{PREFIX}/archive/{}/archive.info", stanza_of(restored));
    assert!(s3.keys(&own).await.contains(&own), "{own} is not in the bucket");

    // Expire the incremental: its objects leave the bucket, the full's stay.
    let v = herd.expire_backup(incr.id).await.unwrap();
    env.wait_succeeded(&api, &token, v.task_id, TASK_WITHIN).await;
    let b = herd.backup(incr.id).await.unwrap();
    assert_eq!(b.status, BackupStatus::Expired, "{b:?}");
    let left = s3.keys(&format!("{PREFIX}/backup/{stanza}/{incr_label}/")).await;
    assert!(left.is_empty(), "expired backup {incr_label} still has {} objects, e.g. {:?}", left.len(), left.first());
    let full_now = s3.keys(&format!("{PREFIX}/backup/{stanza}/{full_label}/")).await;
    assert_eq!(full_now.len(), full_keys.len(), "the full backup is untouched");

    // The secret is in the nodes' pgbackrest.conf and in no other file: not in the
    // nodes' PostgreSQL, Patroni or pgBackRest logs, not in Herd's database or log.
    let holders = files_containing(env.dir.path(), secret.as_bytes());
    let (confs, leaked): (Vec<PathBuf>, Vec<PathBuf>) = holders.into_iter().partition(|p| {
        p.parent().is_some_and(|d| d.ends_with("etc/pgbackrest")) && p.extension().is_some_and(|e| e == "conf")
    });
    assert!(leaked.is_empty(), "the S3 secret is in {leaked:?}");
    assert_eq!(confs.len(), 2, "one pgbackrest.conf per node: {confs:?}");

    for id in [src, restored] {
        env.delete_cluster(&api, &token, id, TASK_WITHIN).await;
    }
    assert!(env.servers().is_empty(), "{:?}", env.servers());
    drop(dev);

    // No command line showed it, herd dev's log never did, and no file keeps it.
    let hits = watch.finish();
    assert!(hits.is_empty(), "the S3 secret was on command lines: {hits:?}");
    let log = std::fs::read_to_string(env.dir.path().join("dev.log")).unwrap();
    assert!(log.contains("backup taken"), "the log is the one of this run");
    assert!(!log.contains(&secret), "the S3 secret is in herd dev's log");
    let left = files_containing(env.dir.path(), secret.as_bytes());
    assert!(left.is_empty(), "the S3 secret is still in {left:?}");
}
