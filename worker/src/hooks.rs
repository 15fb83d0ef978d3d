//! Failover webhooks: a signed JSON POST with a timeout, retried with backoff. Each
//! call's outcome goes into the cluster's history; a failing hook never blocks or
//! fails the failover itself (the database's availability comes first).

use crate::report::OrWarn;
use herd_core::crypto::hmac_sha256;
use herd_core::hooks::Hook;
use herd_store::Cluster;
use secrecy::ExposeSecret;
use std::time::Duration;
use uuid::Uuid;

use crate::Ctx;

/// `pre_failover` or `post_failover`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pre,
    Post,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre_failover",
            Phase::Post => "post_failover",
        }
    }
}

/// What the receiver gets: which cluster, which change, and who caused it.
pub struct HookEvent<'a> {
    pub cluster: &'a Cluster,
    /// `switchover`, `failover` (Herd's actions) or `automatic_failover` (Patroni's).
    pub kind: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub task_id: Option<Uuid>,
}

/// Calls the cluster's hook for `phase`, if one is set. Returns whether it was
/// delivered (2xx); a cluster without that hook counts as delivered.
pub async fn call(ctx: &Ctx, phase: Phase, ev: HookEvent<'_>) -> bool {
    let store = &ctx.store;
    let hooks = match store.cluster_hooks(ev.cluster) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(cluster = %ev.cluster.id, error = %e, "hooks unreadable");
            return false;
        }
    };
    let hook = match phase {
        Phase::Pre => hooks.pre_failover,
        Phase::Post => hooks.post_failover,
    };
    let Some(hook) = hook else { return true };
    let body = serde_json::json!({
        "event": ev.kind,
        "phase": phase.as_str(),
        "cluster_id": ev.cluster.id,
        "cluster": ev.cluster.name,
        "from": ev.from,
        "to": ev.to,
        "task_id": ev.task_id,
        "at": chrono::Utc::now(),
        "delivery": Uuid::now_v7(),
    })
    .to_string();
    let (ok, message) = deliver(ctx, &hook, phase, &body).await;
    let level = if ok { "info" } else { "warn" };
    store.log_event(ev.cluster, ev.task_id, level, Some(phase.as_str()), &message).await.or_warn("event");
    ok
}

async fn deliver(ctx: &Ctx, hook: &Hook, phase: Phase, body: &str) -> (bool, String) {
    let s = &ctx.settings;
    // Checked again now: the name may resolve elsewhere than when the hook was set.
    let dest = match ctx.egress.check(&hook.url).await {
        Ok(d) => d,
        Err(why) => return (false, format!("{} hook to {} refused: the URL {why}", phase.as_str(), hook.url)),
    };
    // The client connects to the addresses just checked, not to a second lookup's,
    // and never follows a redirect (its target would escape the check).
    let client = match reqwest::Client::builder()
        .no_proxy()
        .resolve_to_addrs(&dest.host, &dest.addrs)
        .timeout(Duration::from_millis(s.hook_timeout_ms.max(100)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return (false, format!("{} hook: client: {e}", phase.as_str())),
    };
    let signature =
        format!("sha256={}", hex::encode(hmac_sha256(hook.secret.expose_secret().as_bytes(), body.as_bytes())));
    let attempts = s.hook_attempts.max(1);
    let mut backoff = Duration::from_millis(250);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let res = client
            .post(&hook.url)
            .header("Content-Type", "application/json")
            .header("X-Herd-Event", phase.as_str())
            .header("X-Herd-Signature", &signature)
            .body(body.to_owned())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => {
                return (
                    true,
                    format!(
                        "{} hook delivered to {} (HTTP {}, attempt {attempt})",
                        phase.as_str(),
                        hook.url,
                        r.status().as_u16()
                    ),
                );
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            // reqwest's error text names the URL, never the body or headers.
            Err(e) => last = e.to_string(),
        }
        if attempt < attempts {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    (false, format!("{} hook to {} failed after {attempts} attempt(s): {last}", phase.as_str(), hook.url))
}
