//! Renews the nodes' TLS certificates before they expire. Certificates are derived for
//! fixed windows (`herd_core::pki`), so renewing one is pushing the configuration in a
//! new window: when a cluster's recorded renewal time has passed, this opens an
//! `update_cluster` task, which configures every member (new certificate files, a
//! PostgreSQL reload, no restart) and records the next renewal time. Runs in every
//! worker; the store makes one of them win (`Store::start_certificate_renewal`).

use chrono::{DateTime, Duration, Utc};
use herd_store::{Renewal, StoreError};
use std::sync::Arc;

use crate::Ctx;

pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(scan_every(ctx.settings.cert_renew_every()));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = scan(&ctx, Utc::now()).await {
            tracing::warn!(error = %e, "certificate renewal: scan failed");
        }
    }
}

/// A sixth of the period between scans (at most a minute): a renewal starts early in
/// the first of the certificate's three windows of validity.
fn scan_every(period: Duration) -> std::time::Duration {
    (period / 6)
        .to_std()
        .unwrap_or_default()
        .clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(60))
}

/// How long after a renewal was started it is tried again if it did not complete
/// (the task failed: a node was unreachable, ...). A completed one records its own.
fn retry_after(period: Duration) -> Duration {
    (period / 4).clamp(Duration::seconds(5), Duration::hours(1))
}

async fn scan(ctx: &Ctx, now: DateTime<Utc>) -> Result<(), StoreError> {
    let period = ctx.settings.cert_renew_every();
    for id in ctx.store.due_certificate_renewals(now).await? {
        let summary = "renewing the nodes' TLS certificates: every node is reconfigured and PostgreSQL reloaded";
        match ctx.store.start_certificate_renewal(id, now, now + retry_after(period), summary).await {
            Ok(Renewal::Started(t)) => {
                tracing::info!(cluster = %id, task = %t.id, "certificate renewal started");
                if let Err(e) = ctx.queue.push(t.id).await {
                    tracing::warn!(task = %t.id, error = %e, "enqueue failed; the sweeper will deliver the task");
                }
            }
            Ok(Renewal::Waiting(why)) => tracing::debug!(cluster = %id, why, "certificate renewal waits"),
            Ok(Renewal::Lost) => {}
            Err(e) => tracing::warn!(cluster = %id, error = %e, "certificate renewal: starting it failed"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_and_retries_scale_with_the_period_within_bounds() {
        assert_eq!(scan_every(Duration::days(30)), std::time::Duration::from_secs(60));
        assert_eq!(scan_every(Duration::seconds(30)), std::time::Duration::from_secs(5));
        assert_eq!(scan_every(Duration::seconds(3)), std::time::Duration::from_secs(1));
        assert_eq!(retry_after(Duration::days(30)), Duration::hours(1));
        assert_eq!(retry_after(Duration::seconds(40)), Duration::seconds(10));
        assert_eq!(retry_after(Duration::seconds(10)), Duration::seconds(5));
    }
}
