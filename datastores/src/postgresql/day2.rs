//! Day-2 operations on a running cluster: parameters and dynamic configuration,
//! restarts, switchover and failover, reinitialization, holding Patroni stopped,
//! restarting what died, and etcd membership changes.
//!
//! Everything that changes the cluster goes through Patroni's REST API (HTTPS; unsafe
//! endpoints with Herd's client certificate and its own `herd` password) or etcd's v3
//! gateway (HTTPS, Herd's client certificate);
//! SSH only for the control scripts and for reading `pg_settings` locally.

use super::patroni::{Observed, StatusView};
use super::timing::{HA_START_TIMEOUT, STOP_TIMEOUT};
use super::{Layout, PostgresManager, Probe, etcd, exit, params, render, sql};
use crate::shell::quote;
use crate::ssh::{Upload, with_session};
use crate::{ClusterSpec, ManagerError, Membership, NodeSpec, Operations};
use async_trait::async_trait;
use herd_core::faults::FaultCode;
use herd_core::status::NodeRole;
use reqwest::Method;
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Patroni answers `/restart` once PostgreSQL is up again; then a replica must stream.
const RESTART_TIMEOUT: Duration = Duration::from_secs(180);
/// Patroni's `/switchover` polls for up to 2 × max(10, loop_wait) s itself.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(120);
/// A replica clone (pg_basebackup) of a large database takes a while.
const REINIT_TIMEOUT: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_millis(250);
/// How long a promotion waits for the new primary's synchronous standby to be
/// recorded (Patroni: a loop to see the replica stream, two seconds to confirm it).
const PROTECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a `PATCH /config` that lost a race (409) is retried at once.
const PATCH_ATTEMPTS: usize = 5;

fn api(node: &NodeSpec, path: &str) -> String {
    format!("{}{path}", super::patroni::api_base(node.address))
}

fn member<'a>(cluster: &'a ClusterSpec, name: &str) -> Result<&'a NodeSpec, ManagerError> {
    cluster.members.iter().find(|m| m.name == name).ok_or_else(|| {
        ManagerError::permanent(FaultCode::UnknownMember, format!("{name} is not a member of cluster {}", cluster.name))
    })
}

fn no_leader(cluster: &ClusterSpec, seen: &Observed) -> ManagerError {
    ManagerError::Transient(format!(
        "cluster {} has no running leader: {}{}",
        cluster.name,
        super::patroni::summary(&seen.health),
        seen.errors.last().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    ))
}

/// A member whose PostgreSQL serves: a running primary or a streaming replica.
fn serving(seen: &Observed, name: &str) -> bool {
    seen.health.nodes.iter().any(|n| {
        n.name == name
            && match n.role {
                NodeRole::Primary => n.state == "running",
                NodeRole::Replica => n.state == "streaming",
                NodeRole::Unknown => false,
            }
    })
}

/// A member whose PostgreSQL runs at all (a replica streaming or not).
fn running(seen: &Observed, name: &str) -> bool {
    seen.health.nodes.iter().any(|n| n.name == name && matches!(n.state.as_str(), "running" | "streaming"))
}

/// Timeline history files for timelines 2 up to one beyond the newest known (from
/// Patroni's `/history` entries and `newest_seen`). Entry `[parent, lsn, reason,
/// ...]` says timeline `parent` ended at `lsn`; the file of timeline N lists every
/// known entry whose parent is below N, as `parent<TAB>X/Y<TAB>reason` lines. A file
/// beyond what is known only needs to exist (PostgreSQL reads the history of the
/// timeline it recovers on, not of the ones it skips).
fn history_files(entries: &[Vec<serde_json::Value>], newest_seen: i64) -> Vec<(i64, String)> {
    let mut lines: Vec<(i64, String)> = entries
        .iter()
        .filter_map(|e| {
            let parent = e.first()?.as_i64()?;
            let lsn = e.get(1)?.as_u64()?;
            let reason = e.get(2).and_then(|r| r.as_str()).unwrap_or("").replace(['\n', '\t'], " ");
            Some((parent, format!("{parent}\t{:X}/{:X}\t{reason}\n", lsn >> 32, lsn & 0xffff_ffff)))
        })
        .collect();
    lines.sort_by_key(|(p, _)| *p);
    let newest = lines.last().map_or(1, |(p, _)| p + 1).max(newest_seen);
    (2..=newest + 1)
        .map(|tl| (tl, lines.iter().filter(|(p, _)| *p < tl).map(|(_, l)| l.as_str()).collect::<String>()))
        .collect()
}

/// Of (timeline, WAL position, priority, member) candidates, the one to promote:
/// newest timeline, then furthest WAL, then highest priority, then first by name.
fn pick_most_advanced(mut ranked: Vec<(i64, u64, u8, &NodeSpec)>) -> Option<String> {
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)).then(a.3.name.cmp(&b.3.name)));
    ranked.first().map(|r| r.3.name.clone())
}

/// What one member's PostgreSQL says about the parameters being pushed.
#[derive(Debug, Default, Deserialize)]
struct Report {
    /// `pg_conf_load_time()`, epoch seconds.
    loaded: f64,
    /// Modification time of postgresql.conf (Patroni's), epoch seconds.
    written: f64,
    /// Every parameter with `pending_restart`.
    #[serde(default)]
    pending: Vec<String>,
    #[serde(default)]
    settings: BTreeMap<String, Setting>,
    /// What postgresql.conf holds (last entry per name).
    #[serde(default)]
    file: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Setting {
    setting: Option<String>,
    /// The value in force came from Patroni's postgresql.conf.
    #[serde(default)]
    from_file: Option<bool>,
}

/// One parameter being pushed: its expected value (None: removed), and whether
/// a change takes a restart.
struct Wanted {
    name: String,
    rule: Option<&'static params::Rule>,
    text: Option<String>,
    canonical: Option<params::Canonical>,
    restart: bool,
}

impl Wanted {
    fn new(name: &str, value: Option<&serde_json::Value>, major: u32) -> Self {
        let rule = params::rule(name, major);
        let text = value.map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let canonical = match (rule, value) {
            (Some(r), Some(v)) => params::canonical(r, v).ok(),
            _ => None,
        };
        // Herd's own settings that need a restart have no user rule.
        let restart = rule.map_or(matches!(name, "hot_standby" | "wal_log_hints"), |r| r.restart);
        Self { name: name.to_owned(), rule, text, canonical, restart }
    }

    fn matches(&self, raw: &str) -> bool {
        match (self.rule, &self.canonical) {
            (Some(r), Some(c)) => params::canonical_text(r, raw).is_ok_and(|v| v.same_as(c)),
            _ => self.text.as_deref() == Some(raw),
        }
    }

    /// Compared by value once applied (numbers and booleans have one spelling in
    /// `pg_settings`; enums and strings may be canonicalized by the server).
    fn by_value(&self) -> bool {
        self.rule.is_some_and(|r| !matches!(r.kind, params::Kind::String | params::Kind::Enum))
    }

    /// Patroni wrote it and PostgreSQL re-read it (or holds it for a restart).
    fn picked_up(&self, r: &Report) -> bool {
        let in_file = r.file.get(&self.name);
        let reloaded = r.loaded >= r.written;
        match &self.text {
            Some(_) => {
                let Some(raw) = in_file else { return false };
                if !self.matches(raw) {
                    return false;
                }
                if self.restart {
                    return true;
                }
                match r.settings.get(&self.name).and_then(|s| s.setting.as_deref()) {
                    Some(setting) if self.by_value() => self.matches(setting),
                    _ => reloaded,
                }
            }
            None => {
                in_file.is_none()
                    && reloaded
                    && (self.restart || r.settings.get(&self.name).is_none_or(|s| s.from_file != Some(true)))
            }
        }
    }

    /// What the member shows for this parameter, for timeout messages.
    fn describe(&self, r: &Report) -> String {
        let setting = r.settings.get(&self.name).and_then(|s| s.setting.as_deref()).unwrap_or("-");
        let file = r.file.get(&self.name).map(String::as_str).unwrap_or("-");
        let want = self.text.as_deref().unwrap_or("default");
        let reload = if r.loaded >= r.written { "" } else { ", not reloaded since written" };
        format!("{}: want {want}, file {file}, in force {setting}{reload}", self.name)
    }

    /// The running value is not the one asked for, and only a restart changes that.
    fn needs_restart(&self, r: &Report) -> bool {
        if !self.restart {
            return false;
        }
        let setting = r.settings.get(&self.name);
        match &self.text {
            Some(_) => setting.and_then(|s| s.setting.as_deref()).is_some_and(|s| !self.matches(s)),
            None => setting.is_some_and(|s| s.from_file == Some(true)),
        }
    }
}

/// One query, output as one JSON line: the member's view of `names`.
fn report_sql(names: &[String]) -> Result<String, ManagerError> {
    let list = names.iter().map(|n| sql::literal(n)).collect::<Result<Vec<_>, _>>()?.join(", ");
    let arr = format!("ARRAY[{list}]::text[]");
    Ok(format!(
        "SELECT json_build_object(\
         'loaded', extract(epoch FROM pg_conf_load_time()), \
         'written', (SELECT extract(epoch FROM modification) FROM pg_stat_file(current_setting('config_file'))), \
         'pending', (SELECT coalesce(json_agg(lower(name)), '[]'::json) FROM pg_settings WHERE pending_restart), \
         'settings', (SELECT coalesce(json_object_agg(lower(name), json_build_object('setting', setting, \
            'from_file', sourcefile = current_setting('config_file'))), '{{}}'::json) \
            FROM pg_settings WHERE lower(name) = ANY({arr})), \
         'file', (SELECT coalesce(json_object_agg(n, setting), '{{}}'::json) FROM (SELECT DISTINCT ON (lower(name)) \
            lower(name) AS n, setting FROM pg_file_settings WHERE sourcefile = current_setting('config_file') \
            AND lower(name) = ANY({arr}) ORDER BY lower(name), seqno DESC) f));\n"
    ))
}

impl PostgresManager {
    /// An unsafe Patroni call on `node`; transport errors are Transient, a refused
    /// password Permanent (`patroni_auth_failed`): the cluster's secrets are wrong.
    async fn patroni_call(
        &self,
        cluster: &ClusterSpec,
        node: &NodeSpec,
        method: Method,
        path: &str,
        body: serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<(u16, String), ManagerError> {
        let auth = Some((crate::PATRONI_API_USER, cluster.secrets.patroni_api.expose_secret()));
        let (status, text) = self
            .http(cluster)?
            .send_json(method, &api(node, path), &body, auth, timeout)
            .await
            .map_err(ManagerError::Transient)?;
        if status == 401 || status == 403 {
            return Err(ManagerError::permanent(
                FaultCode::PatroniAuthFailed,
                format!("Patroni on {} refused Herd's credentials for {path}", node.name),
            ));
        }
        Ok((status, text.trim().to_owned()))
    }

    async fn member_status(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<StatusView, ManagerError> {
        self.http(cluster)?.get_json::<StatusView>(&api(node, "/patroni")).await.map_err(ManagerError::Transient)
    }

    /// Polls until `node` serves (primary running, replica streaming) and, with
    /// `started_before`, runs a PostgreSQL started after that one.
    async fn wait_serving(
        &self,
        cluster: &ClusterSpec,
        node: &NodeSpec,
        started_before: Option<&str>,
        what: &str,
        timeout: Duration,
    ) -> Result<(), ManagerError> {
        let http = self.http(cluster)?;
        let deadline = Instant::now() + timeout;
        loop {
            let seen = http.observe(cluster).await;
            // The DCS may still show the member's state from before the operation,
            // and a replica streams while it is still starting: the member's own
            // `/patroni` must say running (Patroni's start is over).
            if serving(&seen, &node.name)
                && let Ok(s) = self.member_status(cluster, node).await
                && s.state.as_deref() == Some("running")
                && started_before.is_none_or(|before| s.postmaster_start_time.as_deref().is_some_and(|t| t != before))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ManagerError::Transient(format!(
                    "{what}: {} does not serve after {}s: {}",
                    node.name,
                    timeout.as_secs(),
                    super::patroni::summary(&seen.health)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls until `name` is the leader, running, its `/primary` answers 200 and
    /// its PostgreSQL is out of recovery: it accepts writes.
    async fn wait_writable(&self, cluster: &ClusterSpec, name: &str, timeout: Duration) -> Result<(), ManagerError> {
        let http = self.http(cluster)?;
        let node = member(cluster, name)?;
        let deadline = Instant::now() + timeout;
        loop {
            let seen = http.observe(cluster).await;
            // `/primary` answers 200 as soon as Patroni holds the leader key, which is
            // before the promotion ends; `/patroni`'s role comes from a live query
            // (timeline 0 while PostgreSQL is still in recovery).
            if seen.health.leader.as_deref() == Some(name)
                && serving(&seen, name)
                && http.status(&api(node, "/primary")).await == Some(200)
                && self
                    .member_status(cluster, node)
                    .await
                    .is_ok_and(|s| matches!(s.role.as_deref(), Some("master" | "primary")))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ManagerError::Transient(format!(
                    "{name} does not accept writes after {}s: {}",
                    timeout.as_secs(),
                    super::patroni::summary(&seen.health)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The current DCS config, from the first member that answers.
    async fn dynamic_config(&self, cluster: &ClusterSpec) -> Result<(NodeSpec, serde_json::Value), ManagerError> {
        let mut errors = Vec::new();
        for m in &cluster.members {
            match self.http(cluster)?.get_json::<serde_json::Value>(&api(m, "/config")).await {
                Ok(v) if v.is_object() => return Ok((m.clone(), v)),
                Ok(v) => errors.push(format!("{}: /config is not an object: {v}", m.name)),
                Err(e) => errors.push(e),
            }
        }
        Err(ManagerError::Transient(format!("no member of {} returned /config: {}", cluster.name, errors.join("; "))))
    }

    async fn report(&self, cluster: &ClusterSpec, node: &NodeSpec, sql: &str) -> Result<Report, ManagerError> {
        let l = Layout::new(cluster, node)?;
        let cmd = sql::psql_command(&l);
        let input = sql.to_owned();
        let out = with_session(&node.ssh, move |s| s.exec(&cmd, Some(input.as_bytes()))).await?;
        if !out.success() {
            return Err(ManagerError::Transient(format!("reading settings on {}: {}", node.name, out.error_tail())));
        }
        serde_json::from_str(out.stdout.trim())
            .map_err(|e| ManagerError::Transient(format!("reading settings on {}: unreadable answer: {e}", node.name)))
    }

    /// The replica to promote when none is named: eligible (not `no_failover`),
    /// streaming, synchronous in synchronous mode; highest priority, then least lag.
    fn pick_candidate(cluster: &ClusterSpec, seen: &Observed, leader: &str) -> Result<String, ManagerError> {
        let eligible: Vec<&NodeSpec> =
            cluster.members.iter().filter(|m| m.name != leader && !m.tags.no_failover).collect();
        if eligible.is_empty() {
            return Err(ManagerError::permanent(
                FaultCode::NoCandidate,
                format!("cluster {} has no replica that may be promoted", cluster.name),
            ));
        }
        let mut ready: Vec<(&NodeSpec, i64)> = eligible
            .into_iter()
            .filter(|m| serving(seen, &m.name))
            .filter(|m| !cluster.synchronous || seen.sync_members.contains(&m.name))
            .map(|m| {
                let lag = seen.health.nodes.iter().find(|n| n.name == m.name).and_then(|n| n.lag_bytes);
                (m, lag.unwrap_or(i64::MAX))
            })
            .collect();
        ready.sort_by(|(a, la), (b, lb)| {
            b.tags.priority.cmp(&a.tags.priority).then(la.cmp(lb)).then(a.name.cmp(&b.name))
        });
        ready.first().map(|(m, _)| m.name.clone()).ok_or_else(|| {
            ManagerError::Transient(format!(
                "no eligible replica of {} is streaming{} right now: {}",
                cluster.name,
                if cluster.synchronous { " as a synchronous standby" } else { "" },
                super::patroni::summary(&seen.health)
            ))
        })
    }

    /// Checks a named candidate; Ok(true) when it already leads.
    fn check_candidate(
        cluster: &ClusterSpec,
        seen: &Observed,
        candidate: &str,
        require_sync: bool,
    ) -> Result<bool, ManagerError> {
        let node = member(cluster, candidate)?;
        if seen.health.leader.as_deref() == Some(candidate) {
            return Ok(true);
        }
        if node.tags.no_failover {
            return Err(ManagerError::permanent(
                FaultCode::CandidateNotEligible,
                format!("{candidate} is tagged no_failover and is never promoted"),
            ));
        }
        if require_sync && running(seen, candidate) && !seen.sync_members.iter().any(|m| m == candidate) {
            // Patroni records its synchronous standby one loop after it streams.
            if seen.sync_members.is_empty() {
                return Err(ManagerError::Transient(format!(
                    "cluster {} has no synchronous standby recorded yet",
                    cluster.name
                )));
            }
            return Err(ManagerError::permanent(
                FaultCode::CandidateNotSynchronous,
                format!(
                    "{candidate} is not a synchronous standby; in synchronous mode only {} may be promoted",
                    seen.sync_members.join(", ")
                ),
            ));
        }
        Ok(false)
    }

    /// POSTs a switchover or failover and maps Patroni's answer.
    async fn handover(
        &self,
        cluster: &ClusterSpec,
        via: &[&NodeSpec],
        path: &str,
        body: serde_json::Value,
        candidate: &str,
    ) -> Result<(), ManagerError> {
        let mut last = String::new();
        for node in via {
            match self.patroni_call(cluster, node, Method::POST, path, body.clone(), Some(HANDOVER_TIMEOUT)).await {
                Ok((200, _)) => return Ok(()),
                // Preconditions (leader name, candidate health) changed meanwhile,
                // or the demotion did not finish in Patroni's own wait.
                Ok((status, text)) => {
                    return Err(ManagerError::Transient(format!(
                        "{path} to {candidate} via {}: HTTP {status}: {text}",
                        node.name
                    )));
                }
                Err(e @ ManagerError::Permanent { .. }) => return Err(e),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ManagerError::Transient(format!("{path} to {candidate}: no member answered ({last})")))
    }

    /// Before promoting a member while no leader runs: makes sure its promotion starts
    /// a timeline nobody has used. PostgreSQL takes the timeline after the newest
    /// contiguous history file it finds; a primary that died right after its own
    /// promotion (its replicas never having streamed from it) may have started one
    /// the candidate does not know, and a reused number collides in the WAL archive
    /// and makes pg_rewind skip the rewind of that primary when it returns. So the
    /// candidate gets every history file Patroni recorded (`/history`), and files up
    /// to one timeline beyond the newest anyone — Patroni or Herd — has seen: the
    /// last leader's promotion is the only one that can have gone unrecorded. The
    /// margin costs at most a skipped timeline number.
    async fn share_timelines(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let http = self.http(cluster)?;
        let mut history = Vec::new();
        for m in &cluster.members {
            if let Ok(h) = http.get_json::<Vec<Vec<serde_json::Value>>>(&api(m, "/history")).await {
                history = h;
                break;
            }
        }
        let own = self.member_status(cluster, node).await?.timeline.unwrap_or(1);
        let files: Vec<(i64, String)> =
            history_files(&history, cluster.newest_timeline).into_iter().filter(|(tl, _)| *tl > own).collect();
        let l = Layout::new(cluster, node)?;
        let wal = format!("{}/pg_wal", l.data_dir);
        let name = node.name.clone();
        let owner = l.pg_owner();
        // Only files the member lacks: the ones it has are its own lineage's.
        with_session(&node.ssh, move |s| {
            let mut missing = Vec::new();
            for (tl, body) in &files {
                let path = format!("{wal}/{tl:08X}.history");
                if !s.exists(&path)? {
                    missing.push((path, body));
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            tracing::info!(node = %name, from = own, files = missing.len(), "timeline history written before a failover");
            let uploads: Vec<Upload<'_>> = missing
                .iter()
                .map(|(path, body)| Upload { path, bytes: body.as_bytes(), mode: 0o600, owner: &owner })
                .collect();
            s.upload_all(&uploads)
        })
        .await
    }

    /// The running replica that may be promoted (not `no_failover`) and holds the
    /// most: the newest timeline first (a member still on an older one may hold WAL
    /// the newer primary never had, which is not ahead), then the furthest WAL
    /// position, then priority and name.
    async fn most_advanced(&self, cluster: &ClusterSpec, seen: &Observed) -> Result<String, ManagerError> {
        let leader = seen.health.leader.as_deref().filter(|l| serving(seen, l));
        let mut ranked = Vec::new();
        for m in cluster.members.iter().filter(|m| !m.tags.no_failover && Some(m.name.as_str()) != leader) {
            if !running(seen, &m.name) {
                continue;
            }
            match self.member_status(cluster, m).await {
                Ok(st) if matches!(st.role.as_deref(), Some("replica" | "standby")) => {
                    ranked.push((st.timeline.unwrap_or(0), st.wal_position().unwrap_or(0), m.tags.priority, m))
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(node = %m.name, error = %e, "failover: member status unknown"),
            }
        }
        pick_most_advanced(ranked).ok_or_else(|| {
            ManagerError::Transient(format!(
                "no replica of {} that may be promoted is running: {}",
                cluster.name,
                super::patroni::summary(&seen.health)
            ))
        })
    }

    /// After a promotion in synchronous mode, waits (bounded) until the new primary
    /// has a synchronous standby recorded, when a replica runs that could be one:
    /// until then its loss could not be covered by an automatic failover. Not an
    /// error when it takes longer: the health poller shows the cluster degraded.
    async fn wait_protected(&self, cluster: &ClusterSpec, primary: &str) {
        if !cluster.synchronous || cluster.members.len() < 2 {
            return;
        }
        let Ok(http) = self.http(cluster) else { return };
        let deadline = Instant::now() + PROTECT_TIMEOUT;
        loop {
            let seen = http.observe(cluster).await;
            let others_run = seen.health.nodes.iter().any(|n| n.name != primary && running(&seen, &n.name));
            if !others_run || seen.is_ready(cluster) || seen.health.has_sync_standby() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(cluster = %cluster.name, %primary, "no synchronous standby recorded yet");
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[async_trait]
impl Operations for PostgresManager {
    async fn apply_dynamic_config(&self, cluster: &ClusterSpec) -> Result<Vec<String>, ManagerError> {
        let timing = render::checked_timing(cluster)?;
        let desired = render::cluster_parameter_values(cluster)?;
        let major: u32 = cluster.version.trim().parse().map_err(|_| {
            ManagerError::permanent(FaultCode::InvalidVersion, format!("{:?} is not a major version", cluster.version))
        })?;
        let mut patched = None;
        let mut old_loop_wait = timing.loop_wait;
        let mut removed = Vec::new();
        for attempt in 1..=PATCH_ATTEMPTS {
            let (via, current) = self.dynamic_config(cluster).await?;
            old_loop_wait = current["loop_wait"].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(old_loop_wait);
            let mut parameters = serde_json::Map::new();
            for (name, value) in &desired {
                parameters.insert(name.clone(), value.clone());
            }
            // A user parameter no longer asked for goes back to its default; what
            // Herd manages (never set by users) is left alone.
            removed.clear();
            if let Some(current) = current["postgresql"]["parameters"].as_object() {
                for name in current.keys() {
                    let removable =
                        !params::is_managed(name) || render::CONDITIONAL_PARAMETERS.contains(&name.as_str());
                    if !parameters.contains_key(name) && removable {
                        removed.push(name.clone());
                    }
                }
            }
            for name in &removed {
                parameters.insert(name.clone(), serde_json::Value::Null);
            }
            let body = serde_json::json!({
                "ttl": timing.ttl,
                "loop_wait": timing.loop_wait,
                "retry_timeout": timing.retry_timeout,
                "maximum_lag_on_failover": cluster.maximum_lag_on_failover,
                "synchronous_mode": cluster.synchronous,
                "synchronous_mode_strict": cluster.synchronous_strict,
                "postgresql": { "parameters": parameters },
            });
            let (status, text) = self.patroni_call(cluster, &via, Method::PATCH, "/config", body, None).await?;
            match status {
                200 => {
                    let merged: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    patched = Some((via.name.clone(), merged));
                    break;
                }
                // Someone else changed the config between our read and write.
                409 if attempt < PATCH_ATTEMPTS => continue,
                _ => {
                    return Err(ManagerError::Transient(format!(
                        "PATCH /config on {} answered HTTP {status}: {text}",
                        via.name
                    )));
                }
            }
        }
        let (via, merged) = patched.ok_or_else(|| ManagerError::Transient("PATCH /config kept conflicting".into()))?;
        tracing::info!(cluster = %cluster.name, via = %via, removed = ?removed, "dynamic configuration patched");

        let mut wanted: Vec<Wanted> = desired.iter().map(|(n, v)| Wanted::new(n, Some(v), major)).collect();
        wanted.extend(removed.iter().map(|n| Wanted::new(n, None, major)));
        let names: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
        let sql = report_sql(&names)?;
        // Members apply the DCS config at their next HA loop (loop_wait); the one
        // patched is woken at once.
        let loop_wait = u64::from(old_loop_wait.max(timing.loop_wait));
        let timeout = Duration::from_secs(30 + 5 * loop_wait);
        // Patroni takes a DCS change in while PostgreSQL is starting without writing
        // postgresql.conf, and then sees nothing left to change: such a member has
        // the new config (its /config says so) but applies it only at its next
        // start. After this grace it counts as needing a restart.
        let grace = Duration::from_secs(5 + 2 * loop_wait);
        let deadline = Instant::now() + timeout;
        let mut reports: BTreeMap<String, Report> = BTreeMap::new();
        let mut has_config: BTreeMap<String, Instant> = BTreeMap::new();
        let mut stuck: Vec<String> = Vec::new();
        loop {
            let seen = self.http(cluster)?.observe(cluster).await;
            let mut waiting = Vec::new();
            let mut errors = Vec::new();
            for node in cluster.members.iter().filter(|m| running(&seen, &m.name)) {
                if stuck.contains(&node.name)
                    || reports.get(&node.name).is_some_and(|r| wanted.iter().all(|w| w.picked_up(r)))
                {
                    continue;
                }
                match self.report(cluster, node, &sql).await {
                    Ok(r) => {
                        let missing: Vec<String> =
                            wanted.iter().filter(|w| !w.picked_up(&r)).map(|w| w.describe(&r)).collect();
                        reports.insert(node.name.clone(), r);
                        if missing.is_empty() {
                            continue;
                        }
                        let knows = self
                            .http(cluster)?
                            .get_json::<serde_json::Value>(&api(node, "/config"))
                            .await
                            .is_ok_and(|c| c == merged);
                        let since = if knows {
                            Some(*has_config.entry(node.name.clone()).or_insert_with(Instant::now))
                        } else {
                            None
                        };
                        if since.is_some_and(|t| t.elapsed() >= grace) {
                            tracing::warn!(
                                node = %node.name, missing = %missing.join("; "),
                                "Patroni holds the new configuration but did not apply it; it needs a restart"
                            );
                            stuck.push(node.name.clone());
                            continue;
                        }
                        waiting.push(format!("{} ({})", node.name, missing.join(", ")));
                    }
                    Err(e) => {
                        waiting.push(node.name.clone());
                        errors.push(e.to_string());
                    }
                }
            }
            // Members that stopped meanwhile pick the config up when they start.
            reports.retain(|name, _| running(&seen, name));
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ManagerError::Transient(format!(
                    "dynamic configuration not applied after {}s on: {}{}",
                    timeout.as_secs(),
                    waiting.join("; "),
                    errors.last().map(|e| format!(" (last error: {e})")).unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut pending = Vec::new();
        for node in &cluster.members {
            let Some(r) = reports.get(&node.name) else { continue };
            let patroni_says = self.member_status(cluster, node).await.is_ok_and(|s| s.pending_restart);
            if stuck.contains(&node.name)
                || patroni_says
                || !r.pending.is_empty()
                || wanted.iter().any(|w| w.needs_restart(r))
            {
                pending.push(node.name.clone());
            }
        }
        tracing::info!(cluster = %cluster.name, pending_restart = ?pending, "dynamic configuration applied");
        Ok(pending)
    }

    async fn restart_node(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let before = self.member_status(cluster, node).await?.postmaster_start_time;
        let (status, text) = self
            .patroni_call(cluster, node, Method::POST, "/restart", serde_json::json!({}), Some(RESTART_TIMEOUT))
            .await?;
        if status != 200 {
            return Err(ManagerError::Transient(format!("restart of {} failed: HTTP {status}: {text}", node.name)));
        }
        self.wait_serving(cluster, node, before.as_deref(), "restart", RESTART_TIMEOUT).await?;
        tracing::info!(node = %node.name, "PostgreSQL restarted");
        Ok(())
    }

    async fn reload_node(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let (status, text) =
            self.patroni_call(cluster, node, Method::POST, "/reload", serde_json::json!({}), None).await?;
        if status != 202 && status != 200 {
            return Err(ManagerError::Transient(format!("reload of {} failed: HTTP {status}: {text}", node.name)));
        }
        Ok(())
    }

    async fn switchover(&self, cluster: &ClusterSpec, candidate: Option<&str>) -> Result<String, ManagerError> {
        let seen = self.http(cluster)?.observe(cluster).await;
        let Some(leader) = seen.health.leader.clone().filter(|l| serving(&seen, l)) else {
            return Err(no_leader(cluster, &seen));
        };
        let candidate = match candidate {
            Some(c) => {
                if Self::check_candidate(cluster, &seen, c, cluster.synchronous)? {
                    self.wait_writable(cluster, c, HANDOVER_TIMEOUT).await?;
                    return Ok(c.to_owned());
                }
                if !serving(&seen, c) {
                    return Err(ManagerError::Transient(format!(
                        "switchover candidate {c} is not streaming: {}",
                        super::patroni::summary(&seen.health)
                    )));
                }
                c.to_owned()
            }
            None => Self::pick_candidate(cluster, &seen, &leader)?,
        };
        let leader_node = member(cluster, &leader)?;
        let mut via = vec![leader_node];
        via.extend(cluster.members.iter().filter(|m| m.name != leader));
        let body = serde_json::json!({ "leader": leader, "candidate": candidate });
        tracing::info!(cluster = %cluster.name, from = %leader, to = %candidate, "switchover");
        self.handover(cluster, &via, "/switchover", body, &candidate).await?;
        self.wait_writable(cluster, &candidate, HANDOVER_TIMEOUT).await?;
        self.wait_protected(cluster, &candidate).await;
        Ok(candidate)
    }

    async fn failover(&self, cluster: &ClusterSpec, candidate: Option<&str>) -> Result<String, ManagerError> {
        let seen = self.http(cluster)?.observe(cluster).await;
        let leader_runs = seen.health.leader.as_ref().is_some_and(|l| serving(&seen, l));
        let candidate = match candidate {
            Some(c) => c.to_owned(),
            None => self.most_advanced(cluster, &seen).await?,
        };
        let candidate = candidate.as_str();
        // With a live leader Patroni only hands over to a synchronous standby.
        if Self::check_candidate(cluster, &seen, candidate, cluster.synchronous && leader_runs)? {
            self.wait_writable(cluster, candidate, HANDOVER_TIMEOUT).await?;
            return Ok(candidate.to_owned());
        }
        if !running(&seen, candidate) {
            return Err(ManagerError::Transient(format!(
                "failover candidate {candidate} is not running: {}",
                super::patroni::summary(&seen.health)
            )));
        }
        let node = member(cluster, candidate)?;
        if !leader_runs {
            self.share_timelines(cluster, node).await?;
        }
        let mut via = vec![node];
        via.extend(cluster.members.iter().filter(|m| m.name != candidate));
        tracing::info!(cluster = %cluster.name, to = %candidate, "failover");
        self.handover(cluster, &via, "/failover", serde_json::json!({ "candidate": candidate }), candidate).await?;
        self.wait_writable(cluster, candidate, HANDOVER_TIMEOUT).await?;
        self.wait_protected(cluster, candidate).await;
        Ok(candidate.to_owned())
    }

    async fn reinitialize(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let seen = self.http(cluster)?.observe(cluster).await;
        if seen.health.leader.as_deref() == Some(node.name.as_str()) {
            return Err(ManagerError::permanent(
                FaultCode::IsPrimary,
                format!("{} is the primary; only a replica can be reinitialized", node.name),
            ));
        }
        if !seen.health.leader.as_ref().is_some_and(|l| serving(&seen, l)) {
            return Err(no_leader(cluster, &seen));
        }
        let before = self.member_status(cluster, node).await?.postmaster_start_time;
        let (status, text) = self
            .patroni_call(cluster, node, Method::POST, "/reinitialize", serde_json::json!({ "force": true }), None)
            .await?;
        match status {
            200 => {}
            _ if text.contains("I am the leader") => {
                return Err(ManagerError::permanent(
                    FaultCode::IsPrimary,
                    format!("{} became the primary; only a replica can be reinitialized", node.name),
                ));
            }
            _ => {
                return Err(ManagerError::Transient(format!("reinitialize {}: HTTP {status}: {text}", node.name)));
            }
        }
        tracing::info!(node = %node.name, "reinitializing replica");
        // A new PostgreSQL on fresh data, streaming again.
        self.wait_serving(cluster, node, before.as_deref().or(Some("")), "reinitialize", REINIT_TIMEOUT).await
    }

    async fn stop_ha(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        let l = Layout::new(cluster, node)?;
        let hold = std::path::Path::new(&l.patroni_hold);
        let dir = hold.parent().map(|p| p.display().to_string()).unwrap_or_default();
        // The hold first: from then on neither the boot list nor ensure_running
        // starts Patroni again.
        let e = quote(&l.patroni_entry);
        let cmd = format!(
            "mkdir -p {d} && : > {h} && if [ -x {e} ]; then {e} stop; fi",
            d = quote(&dir),
            h = quote(&l.patroni_hold),
        );
        let out = with_session(&node.ssh, move |s| s.exec_timeout(&cmd, None, STOP_TIMEOUT)).await?;
        if !out.success() {
            return Err(ManagerError::Transient(format!("stopping Patroni on {}: {}", node.name, out.error_tail())));
        }
        tracing::info!(node = %node.name, "Patroni stopped and held");
        Ok(())
    }

    async fn ensure_running(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<Vec<String>, ManagerError> {
        let l = Layout::new(cluster, node)?;
        let (e, p, h) = (quote(&l.etcd_entry), quote(&l.patroni_entry), quote(&l.patroni_hold));
        // One command: start whatever is down (Patroni only when not held) and say
        // what was started.
        let cmd = format!(
            "[ -x {e} ] && [ -x {p} ] || exit {nc}; \
             {e} status || {{ {e} start >/dev/null && echo started etcd || exit 1; }}; \
             {p} status || [ -e {h} ] || {{ {p} start >/dev/null && echo started patroni || exit 1; }}",
            nc = exit::NOT_CONFIGURED
        );
        let out = with_session(&node.ssh, move |s| s.exec(&cmd, None)).await?;
        match out.exit_status {
            0 => {}
            exit::NOT_CONFIGURED => {
                return Err(ManagerError::permanent(
                    FaultCode::NotConfigured,
                    format!("{}: control scripts are missing (run configure first)", node.name),
                ));
            }
            _ => {
                return Err(ManagerError::Transient(format!(
                    "starting daemons on {} failed: {}",
                    node.name,
                    out.error_tail()
                )));
            }
        }
        let started: Vec<String> =
            out.stdout.lines().filter_map(|l| l.strip_prefix("started ")).map(|s| s.trim().to_owned()).collect();
        for name in &started {
            // Answering is enough: etcd alone may lack a quorum until its peers
            // come back, which is not this node's problem.
            let (entry, url) = match name.as_str() {
                "etcd" => (&l.etcd_entry, etcd::client_url(node.address, "/health")),
                _ => (&l.patroni_entry, api(node, "/patroni")),
            };
            self.wait_ready(cluster, node, entry, name, Probe::Answers(url), HA_START_TIMEOUT).await?;
        }
        if !started.is_empty() {
            tracing::info!(node = %node.name, ?started, "daemons restarted");
        }
        Ok(started)
    }
}

#[async_trait]
impl Membership for PostgresManager {
    async fn place_dcs_leader(&self, cluster: &ClusterSpec, primary: &str) -> Result<Option<String>, ManagerError> {
        etcd::move_leader_off(&self.http(cluster)?, cluster, primary).await
    }

    async fn add_member(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        Layout::new(cluster, node)?;
        etcd::add(&self.http(cluster)?, cluster, node).await
    }

    async fn remove_member(&self, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
        Layout::new(cluster, node)?;
        let http = self.http(cluster)?;
        etcd::remove(&http, cluster, node).await?;
        // Patroni's member key would expire after ttl anyway; deleting it makes the
        // member vanish from /cluster at once.
        let key = format!("/herd/{}/members/{}", super::layout::scope(cluster), node.name);
        etcd::delete_key(&http, cluster, Some(node), &key).await?;
        tracing::info!(cluster = %cluster.name, node = %node.name, "member removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn observed(nodes: &[(&str, NodeRole, &str, Option<i64>)], sync: &[&str]) -> Observed {
        let nodes = nodes
            .iter()
            .map(|(n, role, state, lag)| crate::NodeHealth {
                name: n.to_string(),
                role: *role,
                state: state.to_string(),
                timeline: Some(1),
                lag_bytes: *lag,
                pending_restart: false,
                sync_standby: sync.contains(n),
            })
            .collect::<Vec<_>>();
        let leader = nodes.iter().find(|n| n.role == NodeRole::Primary).map(|n| n.name.clone());
        Observed {
            health: crate::ClusterHealth { nodes, leader },
            sync_standbys: vec![],
            sync_members: sync.iter().map(|s| s.to_string()).collect(),
            errors: vec![],
        }
    }

    fn cluster(tags: &[(bool, u8)]) -> ClusterSpec {
        let (mut c, n) = crate::postgresql::layout::tests::spec("/", None);
        c.members = tags
            .iter()
            .enumerate()
            .map(|(i, (no_failover, priority))| {
                let mut m = n.clone();
                m.name = format!("orders-{i}");
                m.tags = crate::NodeTags { no_failover: *no_failover, priority: *priority };
                m
            })
            .collect();
        c
    }

    #[test]
    fn candidates_by_eligibility_priority_and_lag() {
        use NodeRole::{Primary, Replica};
        let seen = observed(
            &[
                ("orders-0", Primary, "running", None),
                ("orders-1", Replica, "streaming", Some(500)),
                ("orders-2", Replica, "streaming", Some(0)),
                ("orders-3", Replica, "running", Some(0)),
            ],
            &["orders-1"],
        );
        let pick = |c: &ClusterSpec| PostgresManager::pick_candidate(c, &seen, "orders-0");
        // Same priority: least lag; a replica that does not stream is never picked.
        assert_eq!(pick(&cluster(&[(false, 0), (false, 0), (false, 0), (false, 9)])).unwrap(), "orders-2");
        // Priority first, then lag.
        assert_eq!(pick(&cluster(&[(false, 0), (false, 5), (false, 0), (false, 0)])).unwrap(), "orders-1");
        assert_eq!(pick(&cluster(&[(false, 0), (false, 5), (true, 0), (false, 0)])).unwrap(), "orders-1");
        // Synchronous mode: only Patroni's synchronous standby.
        let mut sync = cluster(&[(false, 0), (false, 0), (false, 9), (false, 0)]);
        sync.synchronous = true;
        assert_eq!(pick(&sync).unwrap(), "orders-1");
        sync.members[1].tags.no_failover = true;
        assert_eq!(pick(&sync).unwrap_err().code(), "datastore_transient");
        // Nobody may ever be promoted.
        assert_eq!(pick(&cluster(&[(false, 0), (true, 0), (true, 0), (true, 0)])).unwrap_err().code(), "no_candidate");

        let c = cluster(&[(false, 0), (false, 0), (true, 0), (false, 0)]);
        let check = |name: &str, sync: bool| PostgresManager::check_candidate(&c, &seen, name, sync);
        assert!(check("orders-0", true).unwrap(), "the leader already leads");
        assert!(!check("orders-1", true).unwrap());
        assert_eq!(check("orders-2", false).unwrap_err().code(), "candidate_not_eligible");
        assert_eq!(check("orders-3", true).unwrap_err().code(), "candidate_not_synchronous");
        assert_eq!(check("orders-9", false).unwrap_err().code(), "unknown_member");
    }

    fn report(file: &[(&str, &str)], settings: &[(&str, &str, bool)], loaded: f64, written: f64) -> Report {
        Report {
            loaded,
            written,
            pending: vec![],
            settings: settings
                .iter()
                .map(|(n, v, f)| (n.to_string(), Setting { setting: Some(v.to_string()), from_file: Some(*f) }))
                .collect(),
            file: file.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn picked_up_and_pending_restart() {
        let work_mem = Wanted::new("work_mem", Some(&json!("64MB")), 15);
        let conns = Wanted::new("max_connections", Some(&json!(60)), 15);
        let gone = Wanted::new("statement_timeout", None, 15);
        // Not written yet.
        let r = report(&[], &[("work_mem", "4096", false), ("max_connections", "50", true)], 10.0, 5.0);
        assert!(!work_mem.picked_up(&r) && !conns.picked_up(&r));
        // Written, not reloaded yet.
        let r = report(&[("work_mem", "64MB"), ("max_connections", "60")], &[("work_mem", "4096", true)], 10.0, 11.0);
        assert!(!work_mem.picked_up(&r));
        assert!(conns.picked_up(&r), "a restart parameter counts once written");
        // Reloaded: work_mem in force, max_connections waits for a restart.
        let r = report(
            &[("work_mem", "64MB"), ("max_connections", "60")],
            &[("work_mem", "65536", true), ("max_connections", "50", true)],
            12.0,
            11.0,
        );
        assert!(work_mem.picked_up(&r) && conns.picked_up(&r));
        assert!(!work_mem.needs_restart(&r));
        assert!(conns.needs_restart(&r));
        // Removed: gone from the file, no longer from it in force.
        let r = report(&[("statement_timeout", "5s")], &[("statement_timeout", "5000", true)], 12.0, 11.0);
        assert!(!gone.picked_up(&r));
        let r = report(&[], &[("statement_timeout", "0", false)], 12.0, 11.0);
        assert!(gone.picked_up(&r));
    }

    #[test]
    fn most_advanced_prefers_timeline_then_wal_then_priority() {
        let c = cluster(&[(false, 0), (false, 0), (false, 9)]);
        let [a, b, p] = [&c.members[0], &c.members[1], &c.members[2]];
        // A member left on an older timeline is never "ahead", whatever its position.
        assert_eq!(pick_most_advanced(vec![(2, 900, 0, a), (3, 100, 0, b)]).as_deref(), Some("orders-1"));
        assert_eq!(pick_most_advanced(vec![(3, 900, 0, a), (3, 100, 0, b)]).as_deref(), Some("orders-0"));
        assert_eq!(pick_most_advanced(vec![(3, 100, 0, a), (3, 100, 9, p)]).as_deref(), Some("orders-2"));
        assert_eq!(pick_most_advanced(vec![(3, 100, 0, b), (3, 100, 0, a)]).as_deref(), Some("orders-0"));
        assert_eq!(pick_most_advanced(vec![]), None);
    }

    #[test]
    fn history_files_follow_postgres_format() {
        let h: Vec<Vec<serde_json::Value>> = serde_json::from_value(json!([
            [1, 50331800u64, "no recovery target specified", "2026-12-01T12:00:00+00:00", "orders-1"],
            [2, 0x1_0000_0028u64, "no recovery target specified", "2026-12-01T12:01:00+00:00", "orders-2"]
        ]))
        .unwrap();
        let f = history_files(&h, 0);
        // Timelines 2 and 3 as recorded, and 4 in case the last leader's promotion went unrecorded.
        assert_eq!(f.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(f[0].1, "1\t0/3000098\tno recovery target specified\n");
        assert_eq!(f[1].1, "1\t0/3000098\tno recovery target specified\n2\t1/28\tno recovery target specified\n");
        assert_eq!(f[2].1, f[1].1);
        // Herd saw timeline 5 that Patroni never recorded: files up to 6.
        assert_eq!(history_files(&h, 5).last().unwrap().0, 6);
        // Nothing recorded anywhere: timeline 2 is reserved anyway.
        assert_eq!(history_files(&[], 0), vec![(2, String::new())]);
    }
}
