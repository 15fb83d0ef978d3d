//! `herd dev --demo`: the first-run experience. Asks the API (like any client would)
//! for a one-node cluster, waits for it, and prints how to connect.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub async fn run(api: String, token: String) {
    if let Err(e) = demo(&api, &token).await {
        println!("demo: {e}");
    }
}

async fn demo(api: &str, token: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(format!("{api}{path}")).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
            r.json::<Value>().await.map_err(|e| e.to_string())
        }
    };
    let existing = get("/v1/clusters?name=demo".into()).await?;
    let id = match existing["items"][0]["id"].as_str() {
        Some(id) => id.to_owned(),
        None => {
            let r = http
                .post(format!("{api}/v1/clusters"))
                .bearer_auth(token)
                .json(&json!({"name": "demo", "datastore": "postgresql", "version": "15", "flavor": "local.small"}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let v: Value = r.json().await.map_err(|e| e.to_string())?;
            v["cluster"]["id"].as_str().ok_or_else(|| format!("create failed: {v}"))?.to_owned()
        }
    };
    println!("demo: building cluster 'demo' ({id})");
    let started = Instant::now();
    loop {
        let c = get(format!("/v1/clusters/{id}")).await?;
        match c["status"].as_str() {
            Some("active") => break,
            Some("failed") => return Err(format!("cluster failed: {}", c["fault"])),
            _ if started.elapsed() > Duration::from_secs(600) => return Err("timed out waiting for the cluster".into()),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let cred = get(format!("/v1/clusters/{id}/credentials")).await?;
    println!("demo: cluster 'demo' is active after {:.1}s", started.elapsed().as_secs_f64());
    println!("demo: connect with:  psql '{}'", cred["uri"].as_str().unwrap_or_default());
    Ok(())
}
