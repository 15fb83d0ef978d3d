//! Building a node and running it: packages, volume, configuration, daemons.

use super::layout::Layout;
use super::timing::{APT_TIMEOUT, CONVERGE_POLL, DCS_START_TIMEOUT, HA_START_TIMEOUT, STOP_TIMEOUT};
use super::{
    PostgresManager, Probe, as_user, backup, exit, packages, patroni, render, snapshot, sql, start_command,
    start_result,
};
use crate::shell::{join, quote};
use crate::ssh::{Session, Upload, with_session};
use crate::{ClusterHealth, ClusterSpec, Lifecycle, ManagerError, NodeSpec};
use async_trait::async_trait;
use herd_core::faults::FaultCode;
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, Instant};

/// Which service users the node's daemons run as, checked against /etc/passwd
/// (read over SFTP: no shell needed).
struct Users {
    /// PostgreSQL, Patroni, pgBackRest.
    pg: String,
    /// The provider's service user, else `etcd` (the etcd-server package creates
    /// it); without it etcd shares the PostgreSQL user's account rather than root.
    etcd: String,
}

fn users(s: &Session, l: &Layout) -> Result<Users, ManagerError> {
    let passwd = s.read_file("/etc/passwd")?.unwrap_or_default();
    let passwd = String::from_utf8_lossy(&passwd);
    let has = |u: &str| passwd.lines().any(|line| line.split(':').next() == Some(u));
    let pg = l.pg_user().to_owned();
    if !has(&pg) {
        let why = if l.service_user.is_some() {
            "the provider creates it with the server"
        } else {
            "the datastore's packages must include postgresql"
        };
        return Err(ManagerError::permanent(
            FaultCode::MissingServiceUser,
            format!("{}: user {pg} does not exist; {why}", s.host()),
        ));
    }
    let etcd = if l.service_user.is_some() || !has("etcd") { pg.clone() } else { "etcd".to_owned() };
    Ok(Users { pg, etcd })
}

/// Formats (only when it holds no filesystem and no partition table) and mounts a
/// block device; on a whole machine it also goes into /etc/fstab for reboots.
const MOUNT_SCRIPT: &str = r#"set -e
dev=$1 mnt=$2 fstab=$3 absent=$4
if mountpoint -q "$mnt"; then exit 0; fi
[ -b "$dev" ] || { echo "block device $dev is not present" >&2; exit "$absent"; }
if [ -n "$(blkid -p -o value -s PTTYPE "$dev" 2>/dev/null || true)" ]; then
    echo "$dev has a partition table; refusing to format it" >&2; exit 1
fi
fstype=$(blkid -p -o value -s TYPE "$dev" 2>/dev/null || true)
if [ -z "$fstype" ]; then mkfs.ext4 -q -L herd-data "$dev"; fstype=ext4; fi
mkdir -p "$mnt"
if [ "$fstab" = yes ]; then
    uuid=$(blkid -o value -s UUID "$dev")
    grep -qs "^UUID=$uuid " /etc/fstab || echo "UUID=$uuid $mnt $fstype defaults,nofail 0 2" >> /etc/fstab
fi
mount -t "$fstype" "$dev" "$mnt"
"#;

fn prepare_on(
    s: &Session,
    l: &Layout,
    packages: &[String],
    pgbackrest: bool,
    snapshot_move: Option<String>,
) -> Result<(), ManagerError> {
    let host = s.host();
    if !packages.is_empty() {
        let out = s.exec(&packages::query_command(packages), None)?;
        let missing = packages::missing(packages, &out.stdout);
        if !missing.is_empty() {
            tracing::info!(%host, packages = ?missing, "installing packages");
            if !s.exec(packages::LISTS_PRESENT, None)?.success() {
                // A fresh image without package lists: the only case worth an update.
                s.exec_timeout(packages::UPDATE_COMMAND, None, APT_TIMEOUT)?.check("apt-get update")?;
            }
            let out = s.exec_timeout(&packages::install_command(&missing), None, APT_TIMEOUT)?;
            if !out.success() {
                return Err(packages::install_error(&missing, &out.stdout, &out.stderr));
            }
        }
    }
    let Users { pg: pg_user, etcd: etcd_user } = users(s, l)?;
    if let Some(dev) = &l.device {
        let fstab = if l.is_whole_machine() { "yes" } else { "no" };
        let cmd = format!(
            "sh -c {} sh {}",
            quote(MOUNT_SCRIPT),
            join(&[dev.as_str(), &l.pg_home, fstab, &exit::DEVICE_ABSENT.to_string()])
        );
        let out = s.exec(&cmd, None)?;
        match out.exit_status {
            0 => {}
            exit::DEVICE_ABSENT => return Err(ManagerError::Transient(format!("{host}: {}", out.error_tail()))),
            _ => {
                return Err(ManagerError::permanent(
                    FaultCode::VolumeMountFailed,
                    format!("{host}: mounting {dev} at {} failed: {}", l.pg_home, out.error_tail()),
                ));
            }
        }
    }
    // One command (every SSH exec costs a remote shell start): check the volume,
    // create the directories, check the service users can use them.
    let mut cmds = Vec::new();
    if let Some(dir) = &l.volume_dir {
        cmds.push(format!("{{ test -d {} || exit {}; }}", quote(dir), exit::VOLUME_DIR_ABSENT));
    }
    let patroni_dir = std::path::Path::new(&l.patroni_conf).parent().map(|p| p.to_string_lossy().into_owned());
    // Owner, group, mode: Debian's for the pg-common paths.
    let pgbackrest_conf_dir =
        std::path::Path::new(&l.pgbackrest_conf).parent().map(|p| p.to_string_lossy().into_owned());
    let pg: &str = &pg_user;
    let mut dirs: Vec<(&str, &str, &str, &str)> = vec![
        (&l.pg_home, pg, pg, "0755"),
        (&l.data_parent, pg, pg, "0755"),
        (&l.log_dir, "root", pg, "1775"),
        (&l.socket_dir, pg, pg, "2775"),
        (&l.etcd_data, &etcd_user, &etcd_user, "0700"),
        // Like /var/log/postgresql: the daemon opens its own log (never root), and the
        // sticky bit keeps it from removing root's files.
        (&l.etcd_log_dir, "root", &etcd_user, "1775"),
        (&l.etcd_dir, "root", "root", "0755"),
        (patroni_dir.as_deref().unwrap_or(&l.etcd_dir), "root", "root", "0755"),
        (&l.run_dir, "root", "root", "0755"),
        (&l.boot_dir, "root", "root", "0755"),
    ];
    if pgbackrest {
        dirs.extend([
            (pgbackrest_conf_dir.as_deref().unwrap_or(&l.etcd_dir), "root", "root", "0755"),
            (l.pgbackrest_log.as_str(), pg, pg, "0750"),
            (l.pgbackrest_spool.as_str(), pg, pg, "0750"),
            (l.pgbackrest_lock.as_str(), pg, pg, "0750"),
        ]);
    }
    // A directory volume (a loopback host's): its user's alone, as the server root.
    if let Some(dir) = &l.volume_dir
        && l.service_user.is_some()
    {
        dirs.push((dir, "root", pg, "0750"));
    }
    for (path, owner, group, mode) in dirs {
        cmds.push(format!("install -d -o {} -g {} -m {mode} {}", quote(owner), quote(group), quote(path)));
    }
    // A loopback host's root sits somewhere in this machine's tree: every parent
    // must be searchable by the service users, or nothing will start.
    cmds.push(format!(
        "{{ {pg} test -w {dp} -a -x {dp} -a -w {pl} && {pg} test -w {sock} && {etcd} test -w {ed} -a -w {el} || exit {nw}; }}",
        nw = exit::NOT_WRITABLE,
        pg = as_user(pg),
        dp = quote(&l.data_parent),
        pl = quote(&l.log_dir),
        sock = quote(&l.socket_dir),
        etcd = as_user(&etcd_user),
        ed = quote(&l.etcd_data),
        el = quote(&l.etcd_log_dir),
    ));
    let out = s.exec(&cmds.join(" && "), None)?;
    match out.exit_status {
        0 => {}
        exit::VOLUME_DIR_ABSENT => {
            return Err(ManagerError::Transient(format!(
                "{host}: volume directory {} is not present",
                l.volume_dir.as_deref().unwrap_or_default()
            )));
        }
        exit::NOT_WRITABLE => {
            return Err(ManagerError::permanent(
                FaultCode::ServerRootInaccessible,
                format!(
                    "{host}: {pg_user} or {etcd_user} cannot write {} or {}: a parent directory of {} is not \
                     searchable by other users (chmod o+x it)",
                    l.data_parent,
                    l.etcd_data,
                    l.root.display()
                ),
            ));
        }
        _ => {
            return Err(ManagerError::Transient(format!("{host}: creating directories failed: {}", out.error_tail())));
        }
    }
    // The member restoring a volume snapshot: the source's data directory goes
    // aside before Patroni could ever find it.
    if let Some(cmd) = snapshot_move {
        let out = s.exec(&cmd, None)?;
        match out.exit_status {
            0 => {}
            exit::NO_SNAPSHOT_DATA => {
                return Err(ManagerError::permanent(
                    FaultCode::InvalidRestore,
                    format!("{host}: {}", out.error_tail()),
                ));
            }
            _ => {
                return Err(ManagerError::Transient(format!(
                    "{host}: moving the snapshot's data directory aside failed: {}",
                    out.error_tail()
                )));
            }
        }
    }
    Ok(())
}

/// What configure writes besides the two config files.
struct CallbackFiles {
    script: String,
    token: SecretString,
}

/// The cluster's CA and this member's certificate and key.
struct TlsFiles {
    ca: String,
    cert: String,
    key: SecretString,
}

/// The snapshot's backup label and tablespace map (empty: none), on the member
/// that restores a volume snapshot.
struct SnapshotFiles {
    backup_label: String,
    tablespace_map: String,
}

/// Everything `configure` writes on a member, rendered before the session opens.
struct NodeFiles {
    etcd_conf: String,
    patroni_conf: String,
    tls: TlsFiles,
    callback: Option<CallbackFiles>,
    pgbackrest_conf: Option<String>,
    snapshot: Option<SnapshotFiles>,
}

fn configure_on(s: &Session, l: &Layout, node_files: NodeFiles) -> Result<(), ManagerError> {
    let NodeFiles { etcd_conf, patroni_conf, tls, callback, pgbackrest_conf, snapshot } = node_files;
    let users = users(s, l)?;
    let pg_owner = l.pg_owner();
    let pg_owner = pg_owner.as_str();
    let etcd_script = render::etcd_script(l, &users.etcd)?;
    let patroni_script = render::patroni_script(l)?;
    let mut files = vec![
        Upload { path: &l.etcd_conf, bytes: etcd_conf.as_bytes(), mode: 0o644, owner: "root:root" },
        Upload { path: &l.patroni_conf, bytes: patroni_conf.as_bytes(), mode: 0o600, owner: pg_owner },
        Upload { path: &l.etcd_entry, bytes: etcd_script.as_bytes(), mode: 0o755, owner: "root:root" },
        Upload { path: &l.patroni_entry, bytes: patroni_script.as_bytes(), mode: 0o755, owner: "root:root" },
    ];
    // The callback's files go first, so Patroni never reads a config naming a
    // script that is not there yet.
    if let Some(cb) = &callback {
        files.insert(
            0,
            Upload { path: &l.callback_script, bytes: cb.script.as_bytes(), mode: 0o755, owner: "root:root" },
        );
        // Only postgres (Patroni, which runs the script) may read the token.
        files.insert(
            0,
            Upload {
                path: &l.callback_token,
                bytes: cb.token.expose_secret().as_bytes(),
                mode: 0o600,
                owner: pg_owner,
            },
        );
    }
    // Before patroni.yml, which names it in archive_command and the bootstrap.
    // 0600 postgres: it may hold the repository's S3 keys.
    if let Some(conf) = &pgbackrest_conf {
        files.insert(0, Upload { path: &l.pgbackrest_conf, bytes: conf.as_bytes(), mode: 0o600, owner: pg_owner });
    }
    // Before patroni.yml, whose bootstrap copies them into the data directory. Only
    // postgres (Patroni's bootstrap) reads them.
    if let Some(snap) = &snapshot {
        files.insert(
            0,
            Upload {
                path: &l.snapshot_backup_label,
                bytes: snap.backup_label.as_bytes(),
                mode: 0o600,
                owner: pg_owner,
            },
        );
        if !snap.tablespace_map.is_empty() {
            files.insert(
                0,
                Upload {
                    path: &l.snapshot_tablespace_map,
                    bytes: snap.tablespace_map.as_bytes(),
                    mode: 0o600,
                    owner: pg_owner,
                },
            );
        }
    }
    // Before patroni.yml, which names them. The key is postgres's alone (PostgreSQL
    // refuses a key others can read).
    // etcd gets its own copy, its user's alone (it re-reads them at every handshake).
    let tls_paths = [l.tls_ca.as_str(), l.tls_cert.as_str(), l.tls_key.as_str()];
    let etcd_owner = format!("{0}:{0}", users.etcd);
    files.splice(
        0..0,
        [
            Upload { path: &l.tls_ca, bytes: tls.ca.as_bytes(), mode: 0o644, owner: "root:root" },
            Upload { path: &l.tls_cert, bytes: tls.cert.as_bytes(), mode: 0o644, owner: pg_owner },
            Upload { path: &l.tls_key, bytes: tls.key.expose_secret().as_bytes(), mode: 0o600, owner: pg_owner },
            Upload { path: &l.etcd_tls_cert, bytes: tls.cert.as_bytes(), mode: 0o644, owner: &etcd_owner },
            Upload {
                path: &l.etcd_tls_key,
                bytes: tls.key.expose_secret().as_bytes(),
                mode: 0o600,
                owner: &etcd_owner,
            },
        ],
    );
    // Rewrite only what differs: a re-run on a configured node costs no command.
    let mut changed = Vec::new();
    let mut patroni_rewritten = false;
    let mut tls_renewed = false;
    for f in files {
        match s.read_file(f.path)? {
            Some(old) if old == f.bytes => {}
            old => {
                patroni_rewritten |= f.path == l.patroni_conf && old.is_some();
                tls_renewed |= tls_paths.contains(&f.path) && old.is_some();
                changed.push(f);
            }
        }
    }
    if !changed.is_empty() {
        s.upload_all(&changed)?;
    }
    let mut dropped: Vec<&String> = Vec::new();
    if callback.is_none() {
        dropped.extend([&l.callback_token, &l.callback_script]);
    }
    if pgbackrest_conf.is_none() {
        dropped.push(&l.pgbackrest_conf);
    }
    match &snapshot {
        None => dropped.extend([&l.snapshot_backup_label, &l.snapshot_tablespace_map]),
        Some(snap) if snap.tablespace_map.is_empty() => dropped.push(&l.snapshot_tablespace_map),
        Some(_) => {}
    }
    // The callback, backups or a snapshot restore were dropped: no stale token, key
    // or label stays.
    let stale: Vec<&str> = dropped.into_iter().map(String::as_str).filter(|p| s.exists(p).unwrap_or(true)).collect();
    if !stale.is_empty() {
        s.exec(&format!("rm -f {}", join(&stale)), None)?.check("remove stale files")?;
    }
    if patroni_rewritten || tls_renewed {
        // A running Patroni re-reads its file on SIGHUP, and its REST certificate when
        // the serial on disk changed; `reload` is a no-op when it is not running.
        s.exec(&format!("{} reload", quote(&l.patroni_entry)), None)?.check("reload Patroni")?;
    }
    if tls_renewed {
        // PostgreSQL re-reads its certificate on reload; a stopped one reads the new
        // files when it starts, so a failure here (nothing running) is no error.
        s.exec(&super::sql::psql_command(l), Some(b"SELECT pg_reload_conf();"))?;
    }
    if l.is_whole_machine() && s.exists("/run/systemd/system")? {
        install_boot_service(s)?;
    }
    Ok(())
}

/// On a machine run by systemd, a unit replays the boot list at startup.
fn install_boot_service(s: &Session) -> Result<(), ManagerError> {
    const UNIT: &str = "/etc/systemd/system/herd-boot.service";
    if s.read_file(UNIT)?.as_deref() == Some(render::BOOT_SERVICE.as_bytes()) {
        return Ok(());
    }
    s.upload(UNIT, render::BOOT_SERVICE.as_bytes(), 0o644, "root:root")?;
    s.exec("systemctl daemon-reload && systemctl enable --quiet herd-boot.service", None)?
        .check("enable herd-boot.service")?;
    Ok(())
}

#[async_trait]
impl Lifecycle for PostgresManager {
    async fn prepare(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let l = Layout::new(cluster, node)?;
        packages::validate(&cluster.packages)?;
        let mut packages = cluster.packages.clone();
        let pgbackrest = backup::needed(cluster);
        if pgbackrest && !packages.iter().any(|p| p == "pgbackrest") {
            packages.push("pgbackrest".into());
        }
        if let Some(r) = &cluster.restore
            && let Some(s) = &r.snapshot
        {
            snapshot::check_restore(cluster, r, s)?;
        }
        let snapshot_move = snapshot::source_for(cluster, node).map(|s| snapshot::move_aside_command(&l, s));
        with_session(&node.ssh, move |s| prepare_on(s, &l, &packages, pgbackrest, snapshot_move)).await
    }

    async fn configure(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let l = Layout::new(cluster, node)?;
        if !cluster.members.iter().any(|m| m.name == node.name) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidNode,
                format!("node {} is not a member of cluster {}", node.name, cluster.name),
            ));
        }
        let etcd_conf = render::etcd_config(cluster, node, &l)?;
        let patroni_conf = patroni_file(cluster, node, &l)?;
        let pgbackrest_conf = backup::config_file(cluster, node, &l)?;
        let member_tls = cluster.tls.member(&node.name).ok_or_else(|| {
            ManagerError::permanent(FaultCode::InvalidSecrets, format!("no TLS certificate for member {}", node.name))
        })?;
        let tls = TlsFiles {
            ca: cluster.tls.ca_pem.clone(),
            cert: member_tls.cert_pem.clone(),
            key: member_tls.key_pem.clone(),
        };
        let callback = match (render::callback_script(cluster, node, &l)?, &cluster.callback) {
            (Some(script), Some(cb)) => {
                let token = cb.credential(&node.name).cloned().ok_or_else(|| {
                    ManagerError::permanent(
                        FaultCode::InvalidCallback,
                        format!("no callback credential for member {}", node.name),
                    )
                })?;
                Some(CallbackFiles { script, token })
            }
            _ => None,
        };
        // restore_bootstrap checked the restore (snapshot::check_restore).
        let snapshot = snapshot::source_for(cluster, node).map(|s| SnapshotFiles {
            backup_label: s.label.backup_label.clone(),
            tablespace_map: s.label.tablespace_map.clone(),
        });
        with_session(&node.ssh, move |s| {
            configure_on(s, &l, NodeFiles { etcd_conf, patroni_conf, tls, callback, pgbackrest_conf, snapshot })
        })
        .await
    }

    async fn start_dcs(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let l = Layout::new(cluster, node)?;
        let cmd = start_command(&l.etcd_entry);
        let out = with_session(&node.ssh, move |s| s.exec(&cmd, None)).await?;
        start_result(out, "etcd", &node.name)?;
        let url = super::etcd::client_url(node.address, "/health");
        self.wait_ready(cluster, node, &l.etcd_entry, "etcd", Probe::EtcdHealthy(url), DCS_START_TIMEOUT).await
    }

    async fn start_ha(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let l = Layout::new(cluster, node)?;
        // Starting undoes stop_ha: the hold goes first, so boots start it again.
        let cmd = format!("rm -f {} && {}", quote(&l.patroni_hold), start_command(&l.patroni_entry));
        let out = with_session(&node.ssh, move |s| s.exec(&cmd, None)).await?;
        start_result(out, "Patroni", &node.name)?;
        let url = format!("{}/patroni", super::patroni::api_base(node.address));
        self.wait_ready(cluster, node, &l.patroni_entry, "Patroni", Probe::Answers(url), HA_START_TIMEOUT).await
    }

    async fn wait_converged(&self, cluster: &ClusterSpec, timeout: Duration) -> Result<ClusterHealth, ManagerError> {
        let http = self.http(cluster)?;
        let deadline = Instant::now() + timeout;
        loop {
            let seen = http.observe(cluster).await;
            let (health, errors) = (&seen.health, &seen.errors);
            if seen.is_ready(cluster) {
                tracing::info!(cluster = %cluster.name, members = %patroni::summary(health), "cluster converged");
                return Ok(seen.health);
            }
            if Instant::now() >= deadline {
                let mut msg = format!(
                    "cluster {} not converged after {}s: {}",
                    cluster.name,
                    timeout.as_secs(),
                    patroni::summary(health)
                );
                if cluster.synchronous && seen.sync_standbys.is_empty() {
                    msg.push_str("; no synchronous standby yet");
                }
                if let Some(e) = errors.last() {
                    msg.push_str(&format!(" (last error: {e})"));
                }
                return Err(ManagerError::Transient(msg));
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
    }

    async fn set_admin_password(&self, cluster: &ClusterSpec) -> Result<(), ManagerError> {
        let script =
            sql::admin_password_script(&cluster.secrets.admin_user, cluster.secrets.admin_password.expose_secret())?;
        let node = self.leader_node(cluster).await?;
        let leader = node.name.clone();
        let l = Layout::new(cluster, &node)?;
        // Peer authentication over this server's own socket: no password needed,
        // and the SQL (which holds one) goes through stdin.
        let cmd = sql::psql_command(&l);
        let password: SecretString = cluster.secrets.admin_password.clone();
        let out = with_session(&node.ssh, move |s| s.exec(&cmd, Some(script.as_bytes()))).await?;
        if !out.success() {
            return Err(ManagerError::Transient(format!(
                "setting the admin password on {leader} failed: {}",
                sql::redact(&out.error_tail(), password.expose_secret())
            )));
        }
        tracing::info!(cluster = %cluster.name, leader = %leader, "admin role ready");
        Ok(())
    }

    async fn health(&self, cluster: &ClusterSpec) -> Result<ClusterHealth, ManagerError> {
        let patroni::Observed { health, errors, .. } = self.http(cluster)?.observe(cluster).await;
        if !errors.is_empty() {
            tracing::debug!(cluster = %cluster.name, ?errors, "some members did not answer");
        }
        Ok(health)
    }

    async fn stop_node(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let l = Layout::new(cluster, node)?;
        // Patroni first (it shuts PostgreSQL down cleanly and hands over leadership
        // while the DCS still runs), then etcd; each entry leaves the boot list only
        // once its daemon is stopped, so a failed stop can be retried.
        let cmd = [&l.patroni_entry, &l.etcd_entry]
            .iter()
            .map(|e| {
                let e = quote(e);
                format!("{{ if [ -x {e} ]; then {e} stop || exit 1; fi; rm -f {e}; }}")
            })
            .chain([format!("rm -f {}", quote(&l.patroni_hold))])
            .collect::<Vec<_>>()
            .join(" && ");
        // Each daemon gets STOP_TIMEOUT_SECS after SIGTERM, and a postmaster left
        // behind up to 40 s more: wait that long for the script.
        let out = with_session(&node.ssh, move |s| s.exec_timeout(&cmd, None, STOP_TIMEOUT)).await?;
        if !out.success() {
            return Err(ManagerError::Transient(format!("stopping {} failed: {}", node.name, out.error_tail())));
        }
        tracing::info!(node = %node.name, "node daemons stopped and removed from the boot list");
        Ok(())
    }
}

/// `node`'s patroni.yml: the repository and the restore checked by the modules that
/// own them, then rendered.
fn patroni_file(cluster: &ClusterSpec, node: &NodeSpec, l: &Layout) -> Result<String, ManagerError> {
    if let Some(b) = &cluster.backup {
        backup::check_config(b)?;
    }
    let bootstrap = snapshot::restore_bootstrap(cluster, l)?;
    render::patroni_config(cluster, node, l, bootstrap.as_ref())
}
