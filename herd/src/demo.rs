//! `herd dev --demo`: the first-run experience. Asks the API (like any client would,
//! through `herd-client`) for a one-node cluster, follows its build, and prints how to
//! connect.

use herd_client::types::{CreateCluster, TaskStatus};
use herd_client::{Client, ClusterFilter, WaitOptions};
use std::time::{Duration, Instant};

pub async fn run(api: String, token: String) {
    if let Err(e) = demo(&api, &token).await {
        crate::say!("demo: failed: {e}");
    }
}

async fn demo(api: &str, token: &str) -> Result<(), String> {
    let herd = Client::new(api, token).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let existing = herd
        .clusters(&ClusterFilter { name: Some("demo".into()), ..Default::default() })
        .await
        .map_err(|e| e.to_string())?;
    let opts = WaitOptions { timeout: Some(Duration::from_secs(600)), ..Default::default() };
    let id = match existing.into_iter().next() {
        Some(c) => {
            crate::say!("demo: cluster 'demo' exists ({}, {})", c.id, c.status);
            // Still being built (a previous run stopped halfway): follow that build.
            if let Some(t) = c.task.filter(|t| !t.status.is_terminal()) {
                herd.wait_for_task(t.id, opts.clone(), |_| {}).await.map_err(|e| e.to_string())?;
            }
            c.id
        }
        None => {
            let req = CreateCluster {
                name: "demo".into(),
                datastore: "postgresql".into(),
                version: "15".into(),
                flavor: "local.small".into(),
                ..Default::default()
            };
            let created = herd.create_cluster(&req).await.map_err(|e| e.to_string())?;
            crate::say!("demo: building cluster 'demo' ({})", created.cluster.id);
            let t = herd.wait_for_task(created.task_id, opts, |_| {}).await.map_err(|e| e.to_string())?;
            if t.status != TaskStatus::Succeeded {
                let why = t.error.map_or_else(|| t.status.to_string(), |e| format!("{}: {}", e.code, e.message));
                return Err(format!("the build did not succeed: {why}"));
            }
            created.cluster.id
        }
    };
    let cred = herd.credentials(id).await.map_err(|e| e.to_string())?;
    let uri = cred.uri.ok_or("the cluster has no endpoint yet (is it active?)")?;
    let ca = herd::client::tls::save_ca(id, &cred.ca_certificate).map_err(|e| format!("{e:#}"))?;
    let uri = herd::client::tls::with_root_cert(&uri, &ca);
    crate::say!("demo: cluster 'demo' is active after {:.1}s", started.elapsed().as_secs_f64());
    crate::say!("demo: connect with:  psql '{uri}'");
    crate::say!("demo: or with the CLI: {} cluster connect demo   (after the login line above)", crate::program());
    Ok(())
}
