//! `herd cluster …`, `herd node …`, `herd restore`.

use anyhow::Context as _;
use herd_client::Client;
use herd_client::types::{
    ActionKind, ActionRequest, BackupStatus, ClusterDto, ClusterStatus, CreateCluster, HaRequest, NodeDto, NodeRole,
    PowerRequest, PowerState, RestoreRequest, UpdateCluster, UpdateNode,
};
use uuid::Uuid;

use super::output::{Out, ago, fields, line, mb, note, opt, table};
use super::{finish, out_event_line, parse_id, parse_param, read_stdin_secret, started, usage};
use crate::cli::{ClusterCmd, ClusterSpecArgs, NodeActionArgs, NodeCmd, RestoreArgs};

pub async fn cluster(api: &Client, cmd: ClusterCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Create { name, spec, wait } => {
            let req = create_request(api, name, &spec, None).await?;
            let created = api.create_cluster(&req).await?;
            let what = format!("create {}", created.cluster.name);
            let show = || out.result(&created, |o| show_text(o, &created.cluster));
            started(api, out, &wait, created.task_id, &what, show, || show_cluster(api, created.cluster.id, out)).await
        }
        ClusterCmd::List { status, datastore } => {
            let status =
                status.map(|s| s.parse::<ClusterStatus>().map_err(|e| usage(format!("--status: {e}")))).transpose()?;
            let filter = herd_client::ClusterFilter { status, datastore, name: None };
            let all = api.clusters(&filter).await?;
            out.result(&all, |o| list_text(o, &all))
        }
        ClusterCmd::Show { cluster } => {
            let c = api.find_cluster(&cluster).await?;
            out.result(&c, |o| show_text(o, &c))
        }
        ClusterCmd::Status { cluster } => status(api, &cluster, out).await,
        ClusterCmd::Delete { cluster, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let t = api.delete_cluster(c.id).await?;
            out.result(&t, |_| String::new())?;
            finish(api, t.task_id, &format!("delete {}", c.name), &wait, out).await
        }
        ClusterCmd::Update { cluster, params, unset, synchronous, auto_heal, ha_profile, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let parameters = if params.is_empty() && unset.is_empty() {
                None
            } else {
                // The API takes the complete set: start from what is set now.
                let mut map = c.parameters.as_object().cloned().unwrap_or_default();
                for p in &params {
                    let (k, v) = parse_param(p)?;
                    map.insert(k, v);
                }
                for k in &unset {
                    map.remove(k);
                }
                Some(map)
            };
            let req = UpdateCluster {
                synchronous,
                auto_heal,
                ha: ha_profile.map(|p| HaRequest { profile: Some(p), ..Default::default() }),
                parameters,
                hooks: None,
            };
            let u = api.update_cluster(c.id, &req).await?;
            match u.task_id {
                Some(t) => {
                    let show = || out.result(&u, |o| show_text(o, &u.cluster));
                    started(api, out, &wait, t, &format!("update {}", c.name), show, || show_cluster(api, c.id, out))
                        .await
                }
                None => out.result(&u, |o| show_text(o, &u.cluster)),
            }
        }
        ClusterCmd::Connect { cluster, psql_args } => connect(api, &cluster, &psql_args).await,
        ClusterCmd::Credentials { cluster } => {
            let c = api.find_cluster(&cluster).await?;
            let mut cred = api.credentials(c.id).await?;
            // The URI works as printed: it names the CA file libpq verifies against.
            let ca = super::tls::save_ca(c.id, &cred.ca_certificate)?;
            cred.uri = cred.uri.map(|u| super::tls::with_root_cert(&u, &ca));
            out.result(&cred, |_| {
                fields(&[
                    ("username", cred.username.clone()),
                    ("password", cred.password.clone()),
                    ("uri", opt(cred.uri.as_ref())),
                    ("ca file", ca.display().to_string()),
                ])
            })
        }
        ClusterCmd::Events { cluster, limit, follow } => events(api, &cluster, limit, follow, out).await,
        ClusterCmd::Switchover { cluster, to, wait } => {
            action(api, &cluster, ActionKind::Switchover, None, to.as_deref(), &wait, out).await
        }
        ClusterCmd::Failover { cluster, to, wait } => {
            action(api, &cluster, ActionKind::Failover, None, to.as_deref(), &wait, out).await
        }
        ClusterCmd::Restart(a) => node_action(api, a, ActionKind::Restart, out).await,
        ClusterCmd::Reload(a) => node_action(api, a, ActionKind::Reload, out).await,
        ClusterCmd::Start(a) => node_action(api, a, ActionKind::Start, out).await,
        ClusterCmd::Stop(a) => node_action(api, a, ActionKind::Stop, out).await,
        ClusterCmd::Reinitialize { cluster, node, wait } => {
            action(api, &cluster, ActionKind::Reinitialize, Some(&node), None, &wait, out).await
        }
    }
}

async fn node_action(api: &Client, a: NodeActionArgs, kind: ActionKind, out: &Out) -> anyhow::Result<()> {
    action(api, &a.cluster, kind, a.node.as_deref(), None, &a.wait, out).await
}

async fn action(
    api: &Client,
    cluster: &str,
    kind: ActionKind,
    node: Option<&str>,
    candidate: Option<&str>,
    wait: &crate::cli::WaitArgs,
    out: &Out,
) -> anyhow::Result<()> {
    let c = api.find_cluster(cluster).await?;
    let node_id = node.map(|n| find_node(&c, n)).transpose()?;
    let candidate_id = candidate.map(|n| find_node(&c, n)).transpose()?;
    let t = api.action(c.id, &ActionRequest { action: kind, node_id, candidate_id }).await?;
    out.result(&t, |_| String::new())?;
    finish(api, t.task_id, &format!("{kind} {}", c.name), wait, out).await?;
    if wait.wait && out.is_table() && matches!(kind, ActionKind::Switchover | ActionKind::Failover) {
        let c = api.cluster(c.id).await?;
        let primary = c.nodes.iter().find(|n| n.role == NodeRole::Primary);
        note(format!("{}: primary is now {}", c.name, primary.map_or("-", |n| n.name.as_str())));
    }
    Ok(())
}

/// A node of the cluster by name or id.
pub fn find_node(c: &ClusterDto, name_or_id: &str) -> anyhow::Result<Uuid> {
    c.nodes.iter().find(|n| n.name == name_or_id || n.id.to_string() == name_or_id).map(|n| n.id).ok_or_else(|| {
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        usage(format!("cluster {} has no node {name_or_id:?} (nodes: {})", c.name, names.join(", ")))
    })
}

pub async fn node(api: &Client, cmd: NodeCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        NodeCmd::Add { cluster, count, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let added = api.add_nodes(c.id, count).await?;
            out.result(&added, |o| nodes_table(o, &added.nodes))?;
            finish(api, added.task_id, &format!("add {count} node(s) to {}", c.name), &wait, out).await
        }
        NodeCmd::Remove { cluster, node, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let n = find_node(&c, &node)?;
            let t = api.remove_node(c.id, n).await?;
            out.result(&t, |_| String::new())?;
            finish(api, t.task_id, &format!("remove {node} from {}", c.name), &wait, out).await
        }
        NodeCmd::Power { cluster, node, state, force, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let n = find_node(&c, &node)?;
            let state = if state == "on" { PowerState::On } else { PowerState::Off };
            let t = api.power(c.id, n, &PowerRequest { state, force: force.then_some(true) }).await?;
            out.result(&t, |_| String::new())?;
            finish(api, t.task_id, &format!("power {state} {node}"), &wait, out).await
        }
        NodeCmd::Update { cluster, node, no_failover, priority, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let n = find_node(&c, &node)?;
            let u = api.update_node(c.id, n, &UpdateNode { no_failover, priority }).await?;
            out.result(&u, |o| nodes_table(o, std::slice::from_ref(&u.node)))?;
            match u.task_id {
                Some(t) => finish(api, t, &format!("update {node}"), &wait, out).await,
                None => Ok(()),
            }
        }
    }
}

pub async fn restore(api: &Client, r: RestoreArgs, out: &Out) -> anyhow::Result<()> {
    let restore = match (&r.from, &r.snapshot) {
        (_, Some(s)) => {
            if r.backup.is_some() || r.time.is_some() {
                return Err(usage("--backup and --time restore from backups; a snapshot needs neither"));
            }
            RestoreRequest { snapshot_id: Some(parse_id(s, "snapshot")?), ..Default::default() }
        }
        (Some(from), None) => {
            // The source may be deleted already: then only its id names it.
            let source = match api.find_cluster(from).await {
                Ok(c) => c.id,
                Err(e) if e.code() == Some("not_found") && Uuid::parse_str(from).is_ok() => parse_id(from, "cluster")?,
                Err(e) => return Err(e.into()),
            };
            let target_time = r
                .time
                .as_deref()
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .map_err(|e| usage(format!("--time {t:?}: {e} (RFC 3339, e.g. 2026-12-04T10:00:00Z)")))
                })
                .transpose()?;
            RestoreRequest {
                source_cluster_id: Some(source),
                backup_id: r.backup.as_deref().map(|b| parse_id(b, "backup")).transpose()?,
                target_time,
                snapshot_id: None,
            }
        }
        (None, None) => return Err(usage("name --from CLUSTER (backups) or --snapshot ID")),
    };
    let req = create_request(api, r.name, &r.spec, Some(restore)).await?;
    let created = api.create_cluster(&req).await?;
    let what = format!("restore into {}", created.cluster.name);
    let show = || out.result(&created, |o| show_text(o, &created.cluster));
    started(api, out, &r.wait, created.task_id, &what, show, || show_cluster(api, created.cluster.id, out)).await
}

async fn show_cluster(api: &Client, id: Uuid, out: &Out) -> anyhow::Result<()> {
    let c = api.cluster(id).await?;
    out.result(&c, |o| show_text(o, &c))
}

/// The create request from the CLI's options, filling in what the API needs and the
/// operator need not type: the datastore's newest version, the provider's first flavor.
async fn create_request(
    api: &Client,
    name: String,
    spec: &ClusterSpecArgs,
    restore: Option<RestoreRequest>,
) -> anyhow::Result<CreateCluster> {
    let version = match &spec.version {
        Some(v) => v.clone(),
        None => {
            let ds = api.datastores().await?;
            let d = ds
                .iter()
                .find(|d| d.name == spec.datastore)
                .ok_or_else(|| usage(format!("no datastore {:?} (see `herd datastore list`)", spec.datastore)))?;
            d.versions
                .iter()
                .filter(|v| v.active)
                .map(|v| v.version.clone())
                .max_by(|a, b| version_key(a).cmp(&version_key(b)))
                .ok_or_else(|| usage(format!("{} has no active version", spec.datastore)))?
        }
    };
    let flavor = match &spec.flavor {
        Some(f) => f.clone(),
        None => {
            let flavors = api.flavors().await?;
            let provider = match &spec.provider {
                Some(p) => p.clone(),
                None => api.providers().await?.first().map(|p| p.name.clone()).unwrap_or_default(),
            };
            flavors
                .iter()
                .find(|f| f.provider == provider)
                .map(|f| f.id.clone())
                .ok_or_else(|| usage(format!("provider {provider:?} offers no flavor; name one with --flavor")))?
        }
    };
    let key_id = match &spec.key {
        None => None,
        Some(k) => Some(super::admin::find_key(api, k).await?),
    };
    let mut parameters = serde_json::Map::new();
    for p in &spec.params {
        let (k, v) = parse_param(p)?;
        parameters.insert(k, v);
    }
    let admin_password = if spec.password_stdin { Some(read_stdin_secret("admin password")?.into()) } else { None };
    Ok(CreateCluster {
        name,
        datastore: spec.datastore.clone(),
        version,
        flavor,
        nodes: spec.nodes,
        volume_gb: spec.volume_gb,
        key_id,
        provider: spec.provider.clone(),
        synchronous: spec.synchronous.then_some(true),
        parameters: (!parameters.is_empty()).then_some(parameters),
        admin_password,
        ha: spec.ha_profile.clone().map(|p| HaRequest { profile: Some(p), ..Default::default() }),
        node_options: None,
        auto_heal: spec.auto_heal.then_some(true),
        hooks: None,
        restore,
    })
}

/// "15" < "15.2" < "16": numeric parts compare as numbers.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok()).collect()
}

/// Runs psql on the primary: the URI without the password on the command line (where
/// `ps` would show it), the password in PGPASSWORD.
async fn connect(api: &Client, cluster: &str, extra: &[String]) -> anyhow::Result<()> {
    let c = api.find_cluster(cluster).await?;
    let cred = api.credentials(c.id).await?;
    let uri = c.endpoints.primary_uri.clone().ok_or_else(|| {
        herd_client::Error::Api(herd_client::ApiProblem {
            status: 409,
            code: "cluster_not_ready".into(),
            title: String::new(),
            detail: format!("{} is {}: it has no endpoint yet", c.name, c.status),
            errors: vec![],
            quota: None,
        })
    })?;
    let ca = super::tls::save_ca(c.id, &cred.ca_certificate)?;
    let mut cmd = std::process::Command::new("psql");
    cmd.arg(uri).args(extra).env("PGPASSWORD", &cred.password).env("PGSSLROOTCERT", &ca);
    use std::os::unix::process::CommandExt;
    // exec: psql gets the terminal and signals; it only returns if psql cannot start.
    let err = cmd.exec();
    Err(err).context("running psql (install postgresql-client)")
}

async fn events(api: &Client, cluster: &str, limit: u32, follow: bool, out: &Out) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let c = api.find_cluster(cluster).await?;
    let page = api.events(c.id, Some(limit.clamp(1, 100)), None).await?;
    let mut items = page.items;
    items.reverse(); // oldest first, like a log
    out.result(&items, |o| events_table(o, &items))?;
    if !follow {
        return Ok(());
    }
    let mut last = items.last().map(|e| e.id);
    loop {
        let mut stream = api.cluster_stream(c.id, last).await?;
        while let Some(item) = stream.next().await {
            match item {
                Ok(herd_client::StreamItem { message: herd_client::types::StreamMessage::Event(e), .. }) => {
                    last = Some(e.id);
                    match out.format {
                        crate::cli::OutputFormat::Table => line(out_event_line(out, &e).trim_start())?,
                        _ => line(&serde_json::to_string(&e)?)?,
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    note(format!("stream interrupted ({e}); resuming"));
                    break;
                }
            }
        }
        // Ended: the cluster was deleted, or the connection dropped (then resume).
        if let Err(e) = api.cluster(c.id).await
            && e.code() == Some("not_found")
        {
            note(format!("{} was deleted", c.name));
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn list_text(out: &Out, all: &[ClusterDto]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                out.state(c.status.as_str()),
                c.nodes.len().to_string(),
                format!("{} {}", c.datastore, c.version),
                c.flavor.clone(),
                opt(c.endpoints.primary_address.as_ref()),
                ago(c.created_at),
                c.id.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "STATUS", "NODES", "VERSION", "FLAVOR", "PRIMARY", "AGE", "ID"], &rows)
}

fn show_text(out: &Out, c: &ClusterDto) -> String {
    let mut s = fields(&[
        ("name", out.bold(&c.name)),
        ("id", c.id.to_string()),
        ("status", out.state(c.status.as_str())),
        ("version", format!("{} {}", c.datastore, c.version)),
        ("flavor", format!("{} ({}), {} GB volumes", c.flavor, c.provider, c.volume_gb)),
        ("replication", if c.synchronous { "synchronous".into() } else { "asynchronous".into() }),
        ("ha", format!("ttl {}s, loop_wait {}s, retry_timeout {}s", c.ha.ttl, c.ha.loop_wait, c.ha.retry_timeout)),
        ("auto_heal", c.auto_heal.to_string()),
        ("backups", opt(c.backup_repository.as_ref())),
        ("primary", opt(c.endpoints.primary_address.as_ref())),
        ("uri", opt(c.endpoints.primary_uri.as_ref())),
        ("tls renewal", c.certificates_renew_at.map_or("-".into(), |t| t.to_rfc3339())),
        ("parameters", params_text(&c.parameters)),
        (
            "task",
            c.task.as_ref().map_or("-".into(), |t| format!("{} {} ({})", t.kind, out.state(t.status.as_str()), t.id)),
        ),
        ("fault", c.fault.as_ref().map_or("-".into(), |f| format!("{}: {}", f.code, f.message))),
        ("created", c.created_at.to_rfc3339()),
    ]);
    s.push('\n');
    s.push_str(&nodes_table(out, &c.nodes));
    s
}

fn params_text(p: &serde_json::Value) -> String {
    match p.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".into(),
    }
}

fn nodes_table(out: &Out, nodes: &[NodeDto]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                out.state(n.role.as_str()),
                out.state(n.state.as_deref().unwrap_or("-")),
                out.state(n.status.as_str()),
                opt(n.timeline),
                n.lag_bytes.map_or("-".into(), mb),
                if n.sync_standby { "yes".into() } else { "-".into() },
                opt(n.address.as_ref()),
                n.last_seen.map_or("-".into(), |t| format!("{} ago", ago(t))),
            ]
        })
        .collect();
    table(&["NODE", "ROLE", "STATE", "STATUS", "TIMELINE", "LAG MB", "SYNC", "ADDRESS", "LAST SEEN"], &rows)
}

fn events_table(_out: &Out, events: &[herd_client::types::EventDto]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                e.level.clone(),
                opt(e.step.as_ref()),
                e.message.clone(),
            ]
        })
        .collect();
    table(&["TIME", "LEVEL", "STEP", "MESSAGE"], &rows)
}

/// `herd cluster status`: one screen with what an operator checks first.
async fn status(api: &Client, cluster: &str, out: &Out) -> anyhow::Result<()> {
    let c = api.find_cluster(cluster).await?;
    let backups = match &c.backup_repository {
        Some(_) => api.backups(Some(c.id)).await?,
        None => Vec::new(),
    };
    // The status screen still shows when the repository cannot be read, and says so.
    let (window, window_error) = match &c.backup_repository {
        Some(_) => match api.recovery_window(c.id).await {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, None),
    };
    let events = api.events(c.id, Some(8), None).await?.items;
    let last_backup = backups.iter().filter(|b| b.status == BackupStatus::Completed).max_by_key(|b| b.finished_at);
    #[derive(serde::Serialize)]
    struct Status<'a> {
        cluster: &'a ClusterDto,
        last_backup: Option<&'a herd_client::types::BackupDto>,
        recovery_window: Option<&'a herd_client::types::RecoveryWindowDto>,
        recent_events: &'a [herd_client::types::EventDto],
    }
    let doc = Status { cluster: &c, last_backup, recovery_window: window.as_ref(), recent_events: &events };
    out.result(&doc, |o| {
        let primary = c.nodes.iter().find(|n| n.role == NodeRole::Primary);
        let running = c.task.as_ref().filter(|t| !t.status.is_terminal());
        let mut s = fields(&[
            ("cluster", format!("{} ({})", o.bold(&c.name), c.id)),
            ("status", o.state(c.status.as_str())),
            (
                "version",
                format!(
                    "{} {} · {} · {} node(s) · {}",
                    c.datastore,
                    c.version,
                    c.flavor,
                    c.nodes.len(),
                    if c.synchronous { "synchronous" } else { "asynchronous" }
                ),
            ),
            (
                "primary",
                primary.map_or("none".into(), |p| {
                    format!("{} ({})", p.name, c.endpoints.primary_address.as_deref().unwrap_or("-"))
                }),
            ),
            ("uri", opt(c.endpoints.primary_uri.as_ref())),
            (
                "task",
                match (running, &c.task) {
                    (Some(t), _) => format!(
                        "{} {} {}% {} ({})",
                        t.kind,
                        o.state(t.status.as_str()),
                        t.progress,
                        t.step.as_deref().unwrap_or(""),
                        t.id
                    ),
                    (None, Some(t)) => format!(
                        "none running; last {} {} {}",
                        t.kind,
                        o.state(t.status.as_str()),
                        t.finished_at.map_or(String::new(), |f| format!("{} ago", ago(f)))
                    ),
                    (None, None) => "none".into(),
                },
            ),
            (
                "last backup",
                last_backup.map_or("none".into(), |b| {
                    format!(
                        "{} {} {} ago ({} MB)",
                        b.backup_type,
                        b.label.as_deref().unwrap_or("-"),
                        b.finished_at.map_or("-".into(), ago),
                        b.size_bytes.map_or("-".into(), mb)
                    )
                }),
            ),
            (
                "recovery window",
                match (&window, &window_error) {
                    (Some(w), _) => match (w.earliest, w.latest) {
                        (Some(e), Some(l)) => format!("{} → {}", e.to_rfc3339(), l.to_rfc3339()),
                        _ => "no backup yet".into(),
                    },
                    (None, Some(e)) => format!("unavailable ({e})"),
                    (None, None) => "-".into(),
                },
            ),
            ("fault", c.fault.as_ref().map_or("-".into(), |f| format!("{}: {}", f.code, f.message))),
        ]);
        s.push('\n');
        s.push_str(&nodes_table(o, &c.nodes));
        s.push_str("\nRecent events:\n");
        let mut recent = events.clone();
        recent.reverse();
        s.push_str(&events_table(o, &recent));
        s
    })
}
