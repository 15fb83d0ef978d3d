//! Config files and control scripts, rendered from the tera templates in
//! `templates/`. Values are escaped for their destination before they reach a
//! template: YAML double-quoted scalars for the YAML files, POSIX single quotes for
//! the shell scripts. Templates therefore never escape anything themselves.

use super::backup::Bootstrap;
use super::etcd;
use super::layout::{ETCD_CLIENT_PORT, Layout, PATRONI_PORT, PG_PORT, scope};
use super::params::{is_managed, valid_parameter_name};
use super::timing::STOP_TIMEOUT_SECS;
use crate::shell::quote;
use crate::{ClusterSpec, ManagerError, NodeSpec};
use herd_core::faults::FaultCode;
use secrecy::ExposeSecret;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

const ETCD_TEMPLATE: &str = include_str!("templates/etcd.yml");
const PATRONI_TEMPLATE: &str = include_str!("templates/patroni.yml");
const DAEMON_TEMPLATE: &str = include_str!("templates/daemon.sh");
const CALLBACK_TEMPLATE: &str = include_str!("templates/on_role_change.py");
pub const BOOT_SERVICE: &str = include_str!("templates/herd-boot.service");

fn templates() -> Result<&'static tera::Tera, ManagerError> {
    static TERA: OnceLock<Result<tera::Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut t = tera::Tera::default();
        // Nothing here is HTML; escaping is done per destination before rendering.
        t.autoescape_on(vec![]);
        t.add_raw_templates([
            ("etcd.yml", ETCD_TEMPLATE),
            ("patroni.yml", PATRONI_TEMPLATE),
            ("daemon.sh", DAEMON_TEMPLATE),
            ("on_role_change.py", CALLBACK_TEMPLATE),
        ])
        .map_err(|e| format!("{e:?}"))?;
        Ok(t)
    })
    .as_ref()
    .map_err(|e| ManagerError::permanent(FaultCode::TemplateError, format!("templates do not parse: {e}")))
}

fn render(name: &str, ctx: &impl Serialize) -> Result<String, ManagerError> {
    let ctx = tera::Context::from_serialize(ctx)
        .map_err(|e| ManagerError::permanent(FaultCode::TemplateError, format!("{name}: {e}")))?;
    templates()?.render(name, &ctx).map_err(|e| {
        // tera's Display is only the outermost message; the cause says which variable.
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        ManagerError::permanent(FaultCode::TemplateError, format!("{name}: {msg}"))
    })
}

/// `s` as a YAML double-quoted scalar. Only printable ASCII is written as is;
/// everything else is escaped, so neither PyYAML (Patroni) nor Go's YAML (etcd) can
/// misread or reject it (PyYAML refuses some raw non-printable characters).
pub fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A PostgreSQL parameter value as Patroni gets it (YAML at bootstrap, JSON in
/// `PATCH /config`): strings and numbers as they are, booleans as PostgreSQL's
/// `on`/`off` (Patroni would write Python's `True`).
fn parameter_value(name: &str, value: &serde_json::Value) -> Result<serde_json::Value, ManagerError> {
    match value {
        serde_json::Value::String(s) => {
            if let Some(c) = s.chars().find(|c| super::params::is_forbidden_char(*c)) {
                return Err(ManagerError::permanent(
                    FaultCode::InvalidParameter,
                    format!("{name}: value contains the control character {c:?}"),
                ));
            }
            Ok(value.clone())
        }
        serde_json::Value::Number(_) => Ok(value.clone()),
        serde_json::Value::Bool(b) => Ok(serde_json::Value::from(if *b { "on" } else { "off" })),
        other => Err(ManagerError::permanent(
            FaultCode::InvalidParameter,
            format!("{name}: value must be a string, number or boolean, not {other}"),
        )),
    }
}

/// The YAML form of a value from [`parameter_value`].
fn yaml_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => yaml_str(s),
        other => other.to_string(),
    }
}

/// Managed cluster-wide parameters Herd sets only in some configurations (backups
/// on): once not wanted, they are removed from the DCS like a user's.
pub const CONDITIONAL_PARAMETERS: &[&str] = &["archive_mode"];

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub value: String,
}

/// Cluster-wide parameters (written to the DCS at bootstrap, then pushed by
/// `apply_dynamic_config`): replication prerequisites, then the user's, which may
/// raise the defaults but not replace what Herd manages.
pub fn cluster_parameter_values(cluster: &ClusterSpec) -> Result<Vec<(String, serde_json::Value)>, ManagerError> {
    let mut params: Vec<(String, serde_json::Value)> = vec![
        ("wal_level".into(), "replica".into()),
        ("hot_standby".into(), "on".into()),
        ("max_wal_senders".into(), 10.into()),
        ("max_replication_slots".into(), 10.into()),
        ("wal_log_hints".into(), "on".into()),
        ("password_encryption".into(), "scram-sha-256".into()),
    ];
    // Needs a restart, so it is in the DCS from bootstrap on; archive_command
    // names node-local paths and is set per node.
    if cluster.backup.is_some() {
        params.push(("archive_mode".into(), "on".into()));
    }
    for (name, value) in &cluster.parameters {
        if !valid_parameter_name(name) {
            return Err(ManagerError::permanent(
                FaultCode::InvalidParameter,
                format!("{name:?} is not a parameter name"),
            ));
        }
        if is_managed(name) {
            return Err(ManagerError::permanent(
                FaultCode::ParameterNotAllowed,
                format!("parameter {name} is managed by Herd and cannot be set"),
            ));
        }
        if name == "wal_level" && !matches!(value.as_str(), Some("replica" | "logical")) {
            return Err(ManagerError::permanent(
                FaultCode::ParameterNotAllowed,
                "wal_level must be replica or logical: replicas and failover need it",
            ));
        }
        let value = parameter_value(name, value)?;
        match params.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => params.push((name.clone(), value)),
        }
    }
    Ok(params)
}

/// [`cluster_parameter_values`] escaped for patroni.yml.
pub fn cluster_parameters(cluster: &ClusterSpec) -> Result<Vec<Parameter>, ManagerError> {
    Ok(cluster_parameter_values(cluster)?
        .into_iter()
        .map(|(name, value)| Parameter { value: yaml_value(&value), name: yaml_str(&name) })
        .collect())
}

/// Node-local parameters: everything that names a path under this server's root.
fn local_parameters(cluster: &ClusterSpec, l: &Layout) -> Vec<Parameter> {
    let archive = cluster.backup.as_ref().map(|b| super::backup::archive_command(l, b));
    [
        ("unix_socket_directories", l.socket_dir.as_str()),
        // Debian's logging: one file per cluster under /var/log/postgresql.
        ("logging_collector", "on"),
        ("log_directory", l.log_dir.as_str()),
        ("log_filename", l.pg_log_name.as_str()),
        ("log_file_mode", "0640"),
        ("log_line_prefix", "%m [%p] %q%u@%d "),
        // TLS on every TCP connection (pg_hba takes only hostssl from the network).
        ("ssl", "on"),
        ("ssl_cert_file", l.tls_cert.as_str()),
        ("ssl_key_file", l.tls_key.as_str()),
        ("ssl_ca_file", l.tls_ca.as_str()),
        ("ssl_min_protocol_version", "TLSv1.2"),
    ]
    .into_iter()
    .chain(archive.as_deref().map(|a| ("archive_command", a)))
    .map(|(n, v)| Parameter { name: yaml_str(n), value: yaml_str(v) })
    .collect()
}

/// The address a member's connections come from, as pg_hba sees it. Between
/// loopback hosts the kernel picks 127.0.0.1 as the source whatever the
/// destination (the `local 127.0.0.0/8` route), so that is what must be allowed.
fn member_source(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) if v4.is_loopback() => "127.0.0.1/32".into(),
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) if v6.is_loopback() => "::1/128".into(),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// The pg_ident map of the local superuser login: the node's OS user (a loopback
/// cluster's own, or `postgres`) may log in as the `postgres` role, nobody else.
const IDENT_MAP: &str = "herd";

pub fn pg_ident(l: &Layout) -> Vec<String> {
    vec![yaml_str(&format!("{IDENT_MAP} {} postgres", l.pg_user()))]
}

/// pg_hba rules, first match wins: the superuser only over the local socket (peer)
/// or from members (pg_rewind); replication only for `replicator` from members;
/// everyone else from anywhere with a SCRAM password. Every network rule is
/// `hostssl`: a connection without TLS matches none and is refused.
pub fn pg_hba(cluster: &ClusterSpec) -> Vec<String> {
    let mut sources: Vec<String> = cluster.members.iter().map(|m| member_source(m.address)).collect();
    sources.sort();
    sources.dedup();
    let mut lines = vec![format!("local all postgres peer map={IDENT_MAP}")];
    for s in &sources {
        lines.push(format!("hostssl replication replicator {s} scram-sha-256"));
        lines.push(format!("hostssl all postgres {s} scram-sha-256"));
    }
    lines.extend([
        "hostssl all postgres 0.0.0.0/0 reject".to_owned(),
        "hostssl all postgres ::/0 reject".to_owned(),
        "hostssl all all 0.0.0.0/0 scram-sha-256".to_owned(),
        "hostssl all all ::/0 scram-sha-256".to_owned(),
    ]);
    lines.into_iter().map(|l| yaml_str(&l)).collect()
}

#[derive(Serialize)]
struct EtcdContext {
    name: String,
    cluster: String,
    name_yaml: String,
    data_dir: String,
    client_url: String,
    peer_url: String,
    initial_cluster: String,
    token: String,
    cert_file: String,
    key_file: String,
    ca_file: String,
    /// `existing` for a member added to a running etcd cluster (`add_member`).
    state: &'static str,
}

pub fn etcd_config(cluster: &ClusterSpec, node: &NodeSpec, l: &Layout) -> Result<String, ManagerError> {
    let initial = cluster
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, etcd::peer_url(m.address)))
        .collect::<Vec<_>>()
        .join(",");
    render(
        "etcd.yml",
        &EtcdContext {
            name: node.name.clone(),
            cluster: cluster.name.clone(),
            name_yaml: yaml_str(&node.name),
            data_dir: yaml_str(&l.etcd_data),
            client_url: yaml_str(&etcd::client_url(node.address, "")),
            peer_url: yaml_str(&etcd::peer_url(node.address)),
            initial_cluster: yaml_str(&initial),
            token: yaml_str(&format!("herd-{}", cluster.cluster_id.simple())),
            cert_file: yaml_str(&l.etcd_tls_cert),
            key_file: yaml_str(&l.etcd_tls_key),
            ca_file: yaml_str(&l.tls_ca),
            state: if node.joins_existing { "existing" } else { "new" },
        },
    )
}

#[derive(Serialize)]
struct PatroniContext {
    name: String,
    cluster: String,
    version: String,
    scope: String,
    name_yaml: String,
    restapi: String,
    api_user: String,
    api_password: String,
    tls_cert: String,
    tls_key: String,
    superuser_password: String,
    replication_password: String,
    etcd_hosts: Vec<String>,
    ttl: u32,
    loop_wait: u32,
    retry_timeout: u32,
    synchronous: bool,
    synchronous_strict: bool,
    maximum_lag_on_failover: u64,
    no_failover: bool,
    on_role_change: Option<String>,
    cluster_parameters: Vec<Parameter>,
    local_parameters: Vec<Parameter>,
    pg_hba: Vec<String>,
    pg_ident: Vec<String>,
    pg_address: String,
    data_dir: String,
    bin_dir: String,
    pgpass: String,
    /// The CA file members verify each other's PostgreSQL against (replication, rewind).
    tls_ca: String,
    /// Replicas fetch WAL the primary no longer has from the cluster's own stanza.
    restore_command: Option<String>,
    /// Bootstrap from a backup (Patroni custom bootstrap) instead of initdb.
    restore: Option<RestoreContext>,
}

#[derive(Serialize)]
struct RestoreContext {
    /// Patroni's name for the custom method (a constant: `pgbackrest`, `snapshot`).
    method: &'static str,
    command: String,
    recovery_conf: Vec<Parameter>,
}

/// The HA timing, checked (Patroni's rule: a member must be able to retry the DCS
/// twice and still renew its leader key before it expires).
pub fn checked_timing(cluster: &ClusterSpec) -> Result<crate::HaTiming, ManagerError> {
    let t = cluster.timing;
    t.validate().map_err(|e| ManagerError::permanent(FaultCode::InvalidHaTiming, format!("HA timing {t:?}: {e}")))?;
    Ok(t)
}

/// How Patroni runs the callback (it splits this with shlex, POSIX rules, and
/// appends `action role scope`); `-I` keeps the environment out of Python.
fn on_role_change_command(l: &Layout) -> String {
    crate::shell::join(&["/usr/bin/python3", "-I", &l.callback_script])
}

/// patroni.yml for `node`; `bootstrap` replaces initdb (a restore), built by the
/// caller so rendering knows no restore rules.
pub fn patroni_config(
    cluster: &ClusterSpec,
    node: &NodeSpec,
    l: &Layout,
    bootstrap: Option<&Bootstrap>,
) -> Result<String, ManagerError> {
    let t = checked_timing(cluster)?;
    let restore = bootstrap.map(|b| RestoreContext {
        method: b.method,
        command: yaml_str(&b.command),
        recovery_conf: b
            .recovery_conf
            .iter()
            .map(|(n, v)| Parameter { name: yaml_str(n), value: yaml_str(v) })
            .collect(),
    });
    let superuser = cluster.secrets.superuser.expose_secret();
    let replication = cluster.secrets.replication.expose_secret();
    let api = cluster.secrets.patroni_api.expose_secret();
    if superuser.is_empty() || replication.is_empty() || api.is_empty() {
        return Err(ManagerError::permanent(
            FaultCode::InvalidSecrets,
            "superuser, replication and Patroni API passwords must be set",
        ));
    }
    render(
        "patroni.yml",
        &PatroniContext {
            name: node.name.clone(),
            cluster: cluster.name.clone(),
            version: l.version.clone(),
            scope: yaml_str(&scope(cluster)),
            name_yaml: yaml_str(&node.name),
            restapi: yaml_str(&SocketAddr::new(node.address, PATRONI_PORT).to_string()),
            api_user: yaml_str(crate::PATRONI_API_USER),
            api_password: yaml_str(api),
            tls_cert: yaml_str(&l.tls_cert),
            tls_key: yaml_str(&l.tls_key),
            superuser_password: yaml_str(superuser),
            replication_password: yaml_str(replication),
            etcd_hosts: cluster
                .members
                .iter()
                .map(|m| yaml_str(&SocketAddr::new(m.address, ETCD_CLIENT_PORT).to_string()))
                .collect(),
            ttl: t.ttl,
            loop_wait: t.loop_wait,
            retry_timeout: t.retry_timeout,
            synchronous: cluster.synchronous,
            synchronous_strict: cluster.synchronous_strict,
            maximum_lag_on_failover: cluster.maximum_lag_on_failover,
            no_failover: node.tags.no_failover,
            on_role_change: cluster.callback.as_ref().map(|_| yaml_str(&on_role_change_command(l))),
            cluster_parameters: cluster_parameters(cluster)?,
            local_parameters: local_parameters(cluster, l),
            pg_hba: pg_hba(cluster),
            pg_ident: pg_ident(l),
            pg_address: yaml_str(&SocketAddr::new(node.address, PG_PORT).to_string()),
            data_dir: yaml_str(&l.data_dir),
            bin_dir: yaml_str(&l.bin_dir),
            pgpass: yaml_str(&l.pgpass),
            tls_ca: yaml_str(&l.tls_ca),
            // Replicas stream (with slots) and never read the archive: a replica that
            // fetched a dead primary's last archived segment replayed past the new
            // timeline's fork point and could not follow the new primary (seen in the
            // failover drills). Only a restore bootstrap reads WAL from a repository.
            restore_command: None,
            restore,
        },
    )
}

#[derive(Serialize)]
struct CallbackContext {
    comment: String,
    url: String,
    member: String,
    token_file: String,
}

/// A JSON string literal, which is also a valid Python string literal (the same
/// escapes; other characters are fine in UTF-8 source).
fn py_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The `on_role_change` script (Python, stdlib only: Patroni brings python3). The
/// URL and member are in the script; the token stays in its own 0600 file.
pub fn callback_script(cluster: &ClusterSpec, node: &NodeSpec, l: &Layout) -> Result<Option<String>, ManagerError> {
    let Some(cb) = &cluster.callback else {
        return Ok(None);
    };
    if !(cb.url.starts_with("http://") || cb.url.starts_with("https://")) || cb.url.contains(char::is_control) {
        return Err(ManagerError::permanent(
            FaultCode::InvalidCallback,
            format!("callback URL {:?} is not an http(s) URL", cb.url),
        ));
    }
    render(
        "on_role_change.py",
        &CallbackContext {
            // A DNS label (checked by Layout): safe in a comment.
            comment: format!("{} of cluster {}", node.name, cluster.name),
            url: py_str(&cb.url),
            member: py_str(&node.name),
            token_file: py_str(&l.callback_token),
        },
    )
    .map(Some)
}

#[derive(Serialize)]
struct RuntimeDir {
    path: String,
    owner: String,
    group: String,
    mode: String,
}

#[derive(Serialize)]
struct DaemonContext {
    description: String,
    name: String,
    user: String,
    group: String,
    pid_file: String,
    log_file: String,
    #[serde(rename = "match")]
    match_: String,
    env: String,
    command: String,
    runtime_dirs: Vec<RuntimeDir>,
    stop_timeout: u32,
    stop_ticks: u32,
    data_dir: Option<String>,
    pg_ctl: String,
    hold_file: Option<String>,
}

fn runtime_dir(path: &str, owner: &str, mode: &str) -> RuntimeDir {
    RuntimeDir { path: quote(path), owner: quote(owner), group: quote(owner), mode: quote(mode) }
}

/// The control script of the node's etcd member (boot entry `20-etcd-<cluster>`).
pub fn etcd_script(l: &Layout, user: &str) -> Result<String, ManagerError> {
    render(
        "daemon.sh",
        &DaemonContext {
            description: format!("etcd member for cluster {}, run as {user}", l.cluster),
            name: "etcd".into(),
            user: quote(user),
            group: quote(user),
            pid_file: quote(&l.etcd_pid),
            log_file: quote(&l.etcd_log),
            match_: quote(&l.etcd_conf),
            env: crate::shell::join(&["HOME=/", &format!("USER={user}"), &format!("LOGNAME={user}")]),
            command: crate::shell::join(&["/usr/bin/etcd", "--config-file", &l.etcd_conf]),
            runtime_dirs: vec![runtime_dir(&l.run_dir, "root", "0755")],
            stop_timeout: STOP_TIMEOUT_SECS,
            stop_ticks: STOP_TIMEOUT_SECS * 10,
            data_dir: None,
            pg_ctl: String::new(),
            hold_file: None,
        },
    )
}

/// The control script of the node's Patroni (boot entry `30-patroni-<v>-<cluster>`).
pub fn patroni_script(l: &Layout) -> Result<String, ManagerError> {
    render(
        "daemon.sh",
        &DaemonContext {
            description: format!("Patroni for PostgreSQL {} cluster {}, run as {}", l.version, l.cluster, l.pg_user()),
            name: "patroni".into(),
            user: l.pg_user().into(),
            group: l.pg_user().into(),
            pid_file: quote(&l.patroni_pid),
            log_file: quote(&l.patroni_log),
            match_: quote(&l.patroni_conf),
            env: crate::shell::join(&[
                &format!("HOME={}", l.pg_home),
                &format!("USER={}", l.pg_user()),
                &format!("LOGNAME={}", l.pg_user()),
                "LC_ALL=C.UTF-8",
            ]),
            command: crate::shell::join(&["/usr/bin/patroni", &l.patroni_conf]),
            // /run is a tmpfs on real servers: recreate what it held at every start.
            runtime_dirs: vec![
                runtime_dir(&l.run_dir, "root", "0755"),
                runtime_dir(&l.socket_dir, l.pg_user(), "2775"),
            ],
            stop_timeout: STOP_TIMEOUT_SECS,
            stop_ticks: STOP_TIMEOUT_SECS * 10,
            data_dir: Some(quote(&l.data_dir)),
            pg_ctl: quote(&format!("{}/pg_ctl", l.bin_dir)),
            hold_file: Some(quote(&l.patroni_hold)),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgresql::layout::tests::spec;
    use secrecy::SecretString;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// patroni.yml with the restore bootstrap `configure` would pass.
    fn patroni_yml(c: &ClusterSpec, n: &NodeSpec, l: &Layout) -> Result<String, ManagerError> {
        let boot = crate::postgresql::snapshot::restore_bootstrap(c, l)?;
        patroni_config(c, n, l, boot.as_ref())
    }

    /// Parses YAML the way Patroni does (PyYAML) and returns it as JSON.
    fn pyyaml(text: &str) -> serde_json::Value {
        let mut child = Command::new("python3")
            .args(["-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 with PyYAML (a dependency of patroni)");
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "PyYAML rejected:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    #[test]
    fn yaml_strings_escape_everything_unusual() {
        assert_eq!(yaml_str("plain"), "\"plain\"");
        assert_eq!(yaml_str("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(yaml_str("x\ny"), r#""x\u000Ay""#);
        assert_eq!(yaml_str("é😀"), r#""\u00E9\U0001F600""#);
    }

    #[test]
    fn patroni_yml_carries_tricky_values_exactly() {
        let (mut c, n) = spec("/srv/h/s 1", None);
        let password = "p'a\"s s\\w:o#r{d}\n\t\u{85}é😀 $(x) - [a]";
        c.secrets.superuser = SecretString::from(password);
        c.secrets.replication = SecretString::from("yes");
        c.synchronous = true;
        c.parameters.insert("work_mem".into(), "64MB".into());
        c.parameters.insert("max_connections".into(), 200.into());
        c.parameters.insert("jit".into(), false.into());
        c.parameters.insert("search_path".into(), "\"$user\", public # not a comment".into());
        c.parameters.insert("max_wal_senders".into(), 20.into());
        let l = Layout::new(&c, &n).unwrap();
        let text = patroni_yml(&c, &n, &l).unwrap();
        let y = pyyaml(&text);
        assert_eq!(y["postgresql"]["authentication"]["superuser"]["password"], password);
        // Patroni's REST API has its own user and password, no database role's.
        assert_eq!(y["restapi"]["authentication"]["username"], "herd");
        assert_eq!(y["restapi"]["authentication"]["password"], "p");
        assert_eq!(y["restapi"]["verify_client"], "optional");
        assert_eq!(y["restapi"]["certfile"], l.tls_cert.as_str());
        assert_eq!(y["restapi"]["cafile"], l.tls_ca.as_str());
        assert_eq!(y["etcd3"]["protocol"], "https");
        assert_eq!(y["etcd3"]["cert"], l.tls_cert.as_str());
        assert_eq!(y["etcd3"]["key"], l.tls_key.as_str());
        assert_eq!(y["postgresql"]["authentication"]["replication"]["password"], "yes");
        assert_eq!(y["scope"], "orders-00000000");
        assert_eq!(y["name"], "orders-0");
        assert_eq!(y["restapi"]["listen"], "127.78.0.2:8008");
        assert_eq!(y["etcd3"]["hosts"], serde_json::json!(["127.78.0.2:2379"]));
        let dcs = &y["bootstrap"]["dcs"];
        assert_eq!(dcs["ttl"], 5);
        assert_eq!(dcs["loop_wait"], 1);
        assert_eq!(dcs["retry_timeout"], 2);
        assert_eq!(dcs["synchronous_mode"], true);
        assert_eq!(dcs["synchronous_mode_strict"], false);
        assert_eq!(dcs["maximum_lag_on_failover"], 1048576);
        assert_eq!(y["tags"]["nofailover"], false);

        let p = &dcs["postgresql"]["parameters"];
        assert_eq!(p["work_mem"], "64MB");
        assert_eq!(p["max_connections"], 200);
        assert_eq!(p["jit"], "off");
        assert_eq!(p["search_path"], "\"$user\", public # not a comment");
        assert_eq!(p["max_wal_senders"], 20, "a user value replaces the default");
        assert_eq!(p["wal_level"], "replica");
        assert_eq!(dcs["postgresql"]["use_pg_rewind"], true);
        let local = &y["postgresql"];
        assert_eq!(local["data_dir"], "/srv/h/s 1/var/lib/postgresql/15/orders");
        assert_eq!(local.get("config_dir"), None, "PostgreSQL's config lives in the data directory");
        assert_eq!(local.get("callbacks"), None, "no callback without a URL");
        assert_eq!(local["parameters"]["unix_socket_directories"], "/srv/h/s 1/var/run/postgresql");
        assert_eq!(local["listen"], "127.78.0.2:5432");
        assert_eq!(local["bin_dir"], "/usr/lib/postgresql/15/bin");
        let hba: Vec<String> =
            local["pg_hba"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(hba[0], "local all postgres peer map=herd");
        assert!(hba.contains(&"hostssl replication replicator 127.0.0.1/32 scram-sha-256".to_owned()), "{hba:?}");
        assert_eq!(hba.last().unwrap(), "hostssl all all ::/0 scram-sha-256");
        assert!(hba[1..].iter().all(|l| l.starts_with("hostssl ")), "only TLS from the network: {hba:?}");
        assert_eq!(local["parameters"]["ssl"], "on");
        assert_eq!(local["parameters"]["ssl_key_file"], "/srv/h/s 1/etc/patroni/15-orders.key");
        for role in ["superuser", "replication"] {
            assert_eq!(local["authentication"][role]["sslmode"], "verify-full", "{role}");
            assert_eq!(local["authentication"][role]["sslrootcert"], "/srv/h/s 1/etc/patroni/15-orders.ca.crt");
        }
        assert_eq!(
            y["bootstrap"]["initdb"],
            serde_json::json!([{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"])
        );
    }

    #[test]
    fn backups_archive_and_restores_bootstrap_with_pgbackrest() {
        use crate::postgresql::backup::tests::{posix, s3};
        let (mut c, n) = spec("/srv/h/s 1", None);
        let l = Layout::new(&c, &n).unwrap();
        let y = pyyaml(&patroni_yml(&c, &n, &l).unwrap());
        assert_eq!(y["bootstrap"]["dcs"]["postgresql"]["parameters"].get("archive_mode"), None);
        assert_eq!(y["postgresql"]["parameters"].get("archive_command"), None);
        assert_eq!(y["postgresql"].get("recovery_conf"), None);
        assert_eq!(y["bootstrap"].get("method"), None, "initdb without a restore");

        c.backup = Some(posix("/srv/backups", "herd-own"));
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:01.5Z").unwrap().to_utc();
        c.restore = Some(crate::RestoreSource { from: s3(None), set: None, target_time: Some(t), snapshot: None });
        let text = patroni_yml(&c, &n, &l).unwrap();
        assert!(!text.contains("s3cr3t"), "repository keys stay in pgbackrest.conf");
        let y = pyyaml(&text);
        // archive_mode needs a restart: in the DCS from bootstrap on. The command
        // names this node's config file: node-local.
        assert_eq!(y["bootstrap"]["dcs"]["postgresql"]["parameters"]["archive_mode"], "on");
        let conf = "'--config=/srv/h/s 1/etc/pgbackrest/15-orders.conf'";
        assert_eq!(
            y["postgresql"]["parameters"]["archive_command"],
            format!("pgbackrest {conf} --stanza=herd-own archive-push %p")
        );
        assert_eq!(y["postgresql"].get("recovery_conf"), None, "replicas never restore from the archive");
        let boot = &y["bootstrap"];
        assert_eq!(boot["method"], "pgbackrest");
        let m = &boot["pgbackrest"];
        assert_eq!((m["no_params"].as_bool(), m["keep_existing_recovery_conf"].as_bool()), (Some(true), Some(false)));
        let rc = &m["recovery_conf"];
        assert_eq!(rc["recovery_target_time"], "2026-11-22 12:00:01.500000+00");
        assert_eq!(rc["recovery_target_action"], "promote");
        assert_eq!(rc["restore_command"], format!("pgbackrest {conf} --stanza=herd-source archive-get %f \"%p\""));
        // Patroni splits the command with shlex: /bin/sh -c <script>, valid shell.
        let cmd = m["command"].as_str().unwrap().to_owned();
        let out = Command::new("python3")
            .args(["-c", "import json,shlex,sys; print(json.dumps(shlex.split(sys.argv[1])))", &cmd])
            .output()
            .unwrap();
        let argv: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert!(argv[2].contains("--stanza=herd-source --delta --type=time"), "{argv:?}");
        let out = Command::new("/bin/sh").args(["-n", "-c", &argv[2]]).output().unwrap();
        assert!(out.status.success(), "{argv:?}");
    }

    #[test]
    fn snapshot_restores_bootstrap_with_the_snapshot_method() {
        use crate::postgresql::backup::tests::posix;
        let (mut c, n) = spec("/srv/h/s 1", None);
        let l = Layout::new(&c, &n).unwrap();
        c.backup = Some(posix("/srv/backups", "herd-own"));
        let label = crate::SnapshotLabel {
            start_lsn: "0/5000028".into(),
            stop_lsn: "0/5000100".into(),
            backup_label: "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n".into(),
            tablespace_map: String::new(),
        };
        let snapshot = crate::SnapshotSource { node_id: n.node_id, source_name: "src".into(), label };
        c.restore = Some(crate::RestoreSource {
            from: posix("/srv/backups", "herd-src"),
            set: None,
            target_time: None,
            snapshot: Some(snapshot.clone()),
        });
        let text = patroni_yml(&c, &n, &l).unwrap();
        assert!(!text.contains("START WAL LOCATION"), "the label is a file of its own");
        let y = pyyaml(&text);
        let boot = &y["bootstrap"];
        assert_eq!(boot["method"], "snapshot");
        assert_eq!(boot.get("pgbackrest"), None);
        let m = &boot["snapshot"];
        assert_eq!((m["no_params"].as_bool(), m["keep_existing_recovery_conf"].as_bool()), (Some(true), Some(false)));
        let conf = "'--config=/srv/h/s 1/etc/pgbackrest/15-orders.conf'";
        assert_eq!(
            m["recovery_conf"]["restore_command"],
            format!("pgbackrest {conf} --stanza=herd-src archive-get %f \"%p\"")
        );
        assert_eq!(m["recovery_conf"]["recovery_target"], "immediate");
        assert_eq!(m["recovery_conf"]["recovery_target_action"], "promote");
        assert_eq!(m["recovery_conf"]["recovery_target_timeline"], "current");
        let cmd = m["command"].as_str().unwrap().to_owned();
        let out = Command::new("python3")
            .args(["-c", "import json,shlex,sys; print(json.dumps(shlex.split(sys.argv[1])))", &cmd])
            .output()
            .unwrap();
        let argv: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(
            argv[4..],
            [
                "/srv/h/s 1/var/lib/postgresql/15/.herd-snapshot",
                "/srv/h/s 1/var/lib/postgresql/15/orders",
                "/srv/h/s 1/etc/patroni/15-orders.backup_label",
                "/srv/h/s 1/etc/patroni/15-orders.tablespace_map",
            ]
        );
        // Archiving goes to the cluster's own stanza, as after any restore.
        assert_eq!(
            y["postgresql"]["parameters"]["archive_command"],
            format!("pgbackrest {conf} --stanza=herd-own archive-push %p")
        );
        // A snapshot names a member of this cluster, and nothing else to select.
        let mut bad = c.clone();
        bad.restore.as_mut().unwrap().snapshot.as_mut().unwrap().node_id = uuid::Uuid::new_v4();
        assert_eq!(patroni_yml(&bad, &n, &l).unwrap_err().code(), "invalid_restore");
        let mut bad = c.clone();
        bad.restore.as_mut().unwrap().set = Some("20261122-120000F".into());
        assert_eq!(patroni_yml(&bad, &n, &l).unwrap_err().code(), "invalid_restore");
    }

    #[test]
    fn managed_or_malformed_parameters_are_refused() {
        for (name, value, code) in [
            ("unix_socket_directories", serde_json::json!("/tmp"), "parameter_not_allowed"),
            ("archive_command", serde_json::json!("cp %p /x"), "parameter_not_allowed"),
            ("archive_mode", serde_json::json!("always"), "parameter_not_allowed"),
            ("wal_level", serde_json::json!("minimal"), "parameter_not_allowed"),
            ("work_mem", serde_json::json!(["a"]), "invalid_parameter"),
            ("Bad-Name", serde_json::json!("x"), "invalid_parameter"),
        ] {
            let (mut c, _) = spec("/", None);
            c.parameters.insert(name.into(), value);
            assert_eq!(cluster_parameters(&c).unwrap_err().code(), code, "{name}");
        }
        let (mut c, _) = spec("/", None);
        c.parameters.insert("wal_level".into(), "logical".into());
        assert!(cluster_parameters(&c).is_ok());
    }

    #[test]
    fn ha_timing_is_checked() {
        let (mut c, n) = spec("/", None);
        c.timing.retry_timeout = 5;
        let l = Layout::new(&c, &n).unwrap();
        assert_eq!(patroni_yml(&c, &n, &l).unwrap_err().code(), "invalid_ha_timing");
    }

    #[test]
    fn etcd_config_lists_every_member() {
        let (mut c, n) = spec("/", None);
        let mut other = n.clone();
        other.name = "orders-1".into();
        other.address = "127.78.0.3".parse().unwrap();
        c.members.push(other);
        let l = Layout::new(&c, &n).unwrap();
        let y = pyyaml(&etcd_config(&c, &n, &l).unwrap());
        assert_eq!(y["name"], "orders-0");
        assert_eq!(y["listen-client-urls"], "https://127.78.0.2:2379");
        assert_eq!(y["initial-advertise-peer-urls"], "https://127.78.0.2:2380");
        assert_eq!(y["initial-cluster"], "orders-0=https://127.78.0.2:2380,orders-1=https://127.78.0.3:2380");
        for side in ["client-transport-security", "peer-transport-security"] {
            assert_eq!(y[side]["client-cert-auth"], true, "{side}");
            assert_eq!(y[side]["trusted-ca-file"], l.tls_ca.as_str(), "{side}");
            assert_eq!(y[side]["key-file"], l.etcd_tls_key.as_str(), "{side}");
        }
        assert_eq!(y["initial-cluster-token"], "herd-00000000000000000000000000000000");
        assert_eq!(y["data-dir"], "/var/lib/etcd/orders");
    }

    #[test]
    fn tags_timing_strict_mode_and_callback_are_rendered() {
        let (mut c, mut n) = spec("/srv/it's here", None);
        n.tags = crate::NodeTags { no_failover: true, priority: 7 };
        c.members = vec![n.clone()];
        c.synchronous = true;
        c.synchronous_strict = true;
        c.maximum_lag_on_failover = 5 << 20;
        c.timing = crate::HaTiming::SAFE;
        c.callback = Some(crate::Callback {
            url: "http://127.0.0.1:8080/hooks/patroni/x?a=\"b'".into(),
            credentials: [(n.name.clone(), SecretString::from("t0k3n-secret"))].into(),
        });
        let l = Layout::new(&c, &n).unwrap();
        let text = patroni_yml(&c, &n, &l).unwrap();
        assert!(!text.contains("t0k3n-secret"), "the token is not in patroni.yml");
        let y = pyyaml(&text);
        assert_eq!(y["tags"]["nofailover"], true);
        let dcs = &y["bootstrap"]["dcs"];
        assert_eq!(
            (dcs["ttl"].as_u64(), dcs["loop_wait"].as_u64(), dcs["retry_timeout"].as_u64()),
            (Some(30), Some(10), Some(10))
        );
        assert_eq!(dcs["synchronous_mode_strict"], true);
        assert_eq!(dcs["maximum_lag_on_failover"], 5 << 20);
        // Patroni splits the command with shlex (POSIX) and appends action, role, scope.
        let cmd = y["postgresql"]["callbacks"]["on_role_change"].as_str().unwrap().to_owned();
        let out = Command::new("python3")
            .args(["-c", "import json,shlex,sys; print(json.dumps(shlex.split(sys.argv[1])))", &cmd])
            .output()
            .unwrap();
        let argv: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(argv, ["/usr/bin/python3", "-I", l.callback_script.as_str()]);

        let script = callback_script(&c, &n, &l).unwrap().unwrap();
        assert!(!script.contains("t0k3n-secret"));
        let out = Command::new("/usr/bin/python3")
            .args(["-c", "import ast,sys; ast.parse(sys.stdin.read())"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                ch.stdin.take().unwrap().write_all(script.as_bytes())?;
                ch.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(script.contains(r#"URL = "http://127.0.0.1:8080/hooks/patroni/x?a=\"b'""#), "{script}");
        assert!(script.contains(&format!("TOKEN_FILE = \"{}\"", l.callback_token)), "{script}");

        c.callback = Some(crate::Callback { url: "file:///etc/passwd".into(), credentials: Default::default() });
        assert_eq!(callback_script(&c, &n, &l).unwrap_err().code(), "invalid_callback");
        c.callback = None;
        assert_eq!(callback_script(&c, &n, &l).unwrap(), None);
    }

    #[test]
    fn joining_member_uses_the_existing_etcd_cluster() {
        let (mut c, mut n) = spec("/", None);
        n.joins_existing = true;
        c.members = vec![n.clone()];
        let l = Layout::new(&c, &n).unwrap();
        assert_eq!(pyyaml(&etcd_config(&c, &n, &l).unwrap())["initial-cluster-state"], "existing");
        n.joins_existing = false;
        assert_eq!(pyyaml(&etcd_config(&c, &n, &l).unwrap())["initial-cluster-state"], "new");
    }

    #[test]
    fn patroni_script_honours_the_hold_at_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        let (c, n) = spec(&root, None);
        let l = Layout::new(&c, &n).unwrap();
        let script = patroni_script(&l).unwrap();
        assert!(script.contains(&format!("HOLD={}", quote(&l.patroni_hold))), "{script}");
        assert!(!etcd_script(&l, "etcd").unwrap().contains("HOLD="));
        std::fs::create_dir_all(std::path::Path::new(&l.patroni_hold).parent().unwrap()).unwrap();
        std::fs::write(&l.patroni_hold, "").unwrap();
        // Held: the boot list (no argument) does not start it.
        let out = Command::new("/bin/sh").args(["-c", &script, "entry"]).output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("held stopped"), "{out:?}");
    }

    #[test]
    fn control_scripts_are_valid_shell() {
        let (c, n) = spec("/srv/it's here", None);
        let l = Layout::new(&c, &n).unwrap();
        for script in [etcd_script(&l, "etcd").unwrap(), patroni_script(&l).unwrap()] {
            let out = Command::new("/bin/sh").args(["-n", "-c", &script]).output().unwrap();
            assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
            assert!(script.contains(&quote(&l.root.join("run/herd").display().to_string())), "{script}");
        }
        let p = patroni_script(&l).unwrap();
        assert!(p.contains("pg_ctl_as_owner stop -m fast"), "{p}");
        assert!(!etcd_script(&l, "etcd").unwrap().contains("pg_ctl"));
    }

    /// What names one test's daemon on its command line (tests run side by side).
    fn marker(dir: &std::path::Path) -> String {
        format!("herd-testd-{}", dir.file_name().unwrap().to_string_lossy())
    }

    /// A control script for `sh -c <body>` run as nobody, the way Herd renders etcd's.
    fn nobody_daemon(dir: &std::path::Path, body: &str) -> String {
        let at = |f: &str| quote(&dir.join(f).display().to_string());
        render(
            "daemon.sh",
            &DaemonContext {
                description: "test daemon".into(),
                name: "testd".into(),
                user: "nobody".into(),
                group: "nogroup".into(),
                pid_file: at("testd.pid"),
                log_file: at("log/testd.log"),
                match_: quote(&marker(dir)),
                env: "HOME=/".into(),
                command: crate::shell::join(&["/bin/sh", "-c", body, &marker(dir)]),
                runtime_dirs: vec![],
                stop_timeout: 5,
                stop_ticks: 50,
                data_dir: None,
                pg_ctl: String::new(),
                hold_file: None,
            },
        )
        .unwrap()
    }

    /// The log directory is the daemon user's to write: a symlink planted there must
    /// not make root append to a file, nor show a file root alone may read.
    #[test]
    fn the_daemon_log_is_opened_and_read_as_the_daemons_user() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let logs = dir.path().join("log");
        let nogroup = Command::new("getent").args(["group", "nogroup"]).output().unwrap();
        let gid: u32 = String::from_utf8_lossy(&nogroup.stdout).split(':').nth(2).unwrap().parse().unwrap();
        std::fs::create_dir(&logs).unwrap();
        std::os::unix::fs::chown(&logs, Some(0), Some(gid)).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o1775)).unwrap();
        // A loop, not `exec sleep`: the command line must keep naming the marker.
        let script = nobody_daemon(dir.path(), "id -un; echo started-ok; while :; do sleep 1; done");
        let run = |args: &[&str]| {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", &script, "testd"]).args(args);
            cmd.output().unwrap()
        };
        let log = logs.join("testd.log");

        // A root-only file and a symlink to it where the log goes.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root-only-secret\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let planted = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", "ln", "-s"])
            .arg(&victim)
            .arg(&log)
            .output()
            .unwrap();
        assert!(planted.status.success(), "{planted:?}");
        let out = run(&["start"]);
        assert!(!out.status.success(), "started through a log nobody cannot write: {out:?}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root-only-secret\n");
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(!why.contains("root-only-secret") && why.contains("testd.log"), "{out:?}");
        assert!(!String::from_utf8_lossy(&run(&["log"]).stdout).contains("root-only-secret"));
        std::fs::remove_file(&log).unwrap();

        // A log an older Herd opened as root goes aside, and the daemon gets its own.
        std::fs::write(&log, "old root log\n").unwrap();
        let out = run(&["start"]);
        // Stopped even when an assertion below fails.
        struct StopOnDrop<'a>(&'a str);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                let _ = Command::new("/bin/sh").args(["-c", self.0, "testd", "stop"]).output();
            }
        }
        let _stop = StopOnDrop(&script);
        assert!(out.status.success(), "{out:?}");
        herd_testkit::eventually("the daemon's first log lines", std::time::Duration::from_secs(10), || {
            std::fs::read_to_string(&log).ok().filter(|t| t.contains("started-ok"))
        });
        let meta = std::fs::symlink_metadata(&log).unwrap();
        let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap();
        assert_eq!(meta.uid().to_string(), String::from_utf8_lossy(&nobody.stdout).trim());
        assert_eq!(std::fs::read_to_string(logs.join("testd.log.root-owned")).unwrap(), "old root log\n");
        let shown = String::from_utf8_lossy(&run(&["log", "5"]).stdout).into_owned();
        assert!(shown.contains("nobody") && shown.contains("started-ok"), "{shown}");
        assert!(run(&["status"]).status.success());
        assert!(run(&["stop"]).status.success());
        assert!(!run(&["status"]).status.success());
    }
    /// Two starts at once (the boot list and Herd, or a retried step) launch one daemon.
    #[test]
    fn concurrent_starts_launch_one_daemon_and_stop_ends_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let logs = dir.path().join("log");
        std::fs::create_dir(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let script = nobody_daemon(dir.path(), "while :; do sleep 1; done");
        let count = || {
            let out = Command::new("pgrep").args(["-c", "-f", &marker(dir.path())]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap_or(0)
        };
        struct StopOnDrop(String, String);
        impl Drop for StopOnDrop {
            fn drop(&mut self) {
                let _ = Command::new("/bin/sh").args(["-c", &self.0, "testd", "stop"]).output();
                let _ = Command::new("pkill").args(["-KILL", "-f", &self.1]).output();
            }
        }
        let _stop = StopOnDrop(script.clone(), marker(dir.path()));
        for round in 0..3 {
            let starts: Vec<_> = (0..6)
                .map(|_| Command::new("/bin/sh").args(["-c", &script, "testd", "start"]).spawn().unwrap())
                .collect();
            for mut s in starts {
                assert!(s.wait().unwrap().success(), "round {round}: a start failed");
            }
            assert_eq!(count(), 1, "round {round}: daemons running after six concurrent starts");
            let out = Command::new("/bin/sh").args(["-c", &script, "testd", "stop"]).output().unwrap();
            assert!(out.status.success(), "{out:?}");
            assert_eq!(count(), 0, "round {round}: a daemon survived stop");
        }
    }
}
