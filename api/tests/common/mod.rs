//! Test harness: the real app on a random port, over a fresh database per test:
//! a SQLite file in a temp dir, or a new database on the machine's PostgreSQL
//! (`HERD_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/postgres).
#![allow(dead_code)]

use base64::Engine;
use herd_api::Application;
use herd_api::startup::{Mode, prepare};
use herd_api::state::AppState;
use herd_core::config::Settings;
use herd_core::queue::NoQueue;
use herd_testkit::TempPgDb;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub admin_token: String,
    pub client: Client,
    pub settings: Settings,
    pub state_dir: tempfile::TempDir,
    // Dropped after `Drop::drop` has stopped the server.
    pg_db: Option<TempPgDb>,
    handle: actix_web::dev::ServerHandle,
}

pub mod no_snapshots;

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, false).await
    }

    /// With `nosnap`: also a provider `nosnap` (a local provider that cannot snapshot).
    pub async fn spawn_with(backend: Backend, nosnap: bool) -> Self {
        Self::spawn_tweaked(backend, nosnap, |_| {}).await
    }

    /// With settings changed by `tweak` before startup.
    pub async fn spawn_tweaked(backend: Backend, nosnap: bool, tweak: impl FnOnce(&mut Settings)) -> Self {
        let state_dir = tempfile::tempdir().unwrap();
        let admin_token = format!("herd_test_admin_{}", uuid::Uuid::new_v4().simple());
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            state_dir: state_dir.path().to_path_buf(),
            admin_token: Some(admin_token.clone().into()),
            master_key: Some(base64::engine::general_purpose::STANDARD.encode(rand_bytes()).into()),
            // The tests' hook URLs name 127.0.0.1 (nothing listens); other internal
            // addresses stay refused (tests/security.rs).
            hooks: herd_core::config::HookSettings { allowed_hosts: vec!["127.0.0.1".into()] },
            ..Default::default()
        };
        let mut pg_db = None;
        match backend {
            Backend::Sqlite => {
                settings.database_url =
                    Some(format!("sqlite://{}?mode=rwc", state_dir.path().join("herd.db").display()));
            }
            Backend::Postgres => {
                let db = TempPgDb::create("herd_test").await;
                settings.database_url = Some(db.url().to_owned());
                pg_db = Some(db);
            }
        }
        tweak(&mut settings);
        let prepared = prepare(&settings, Mode::Production).await.expect("startup");
        let mut providers = herd_providers::build_providers(&settings.providers, &settings.state_dir).unwrap();
        if nosnap {
            let root = state_dir.path().join("nosnap");
            let local = herd_providers::local::LocalProvider::new("nosnap", &settings.providers.local, &root).unwrap();
            providers.insert(Arc::new(no_snapshots::NoSnapshots(local))).unwrap();
        }
        let providers = Arc::new(providers);
        // API-only: tasks stay queued, which is what these tests assert on.
        let state = AppState::new(&settings, prepared.store, providers, managers(), Arc::new(NoQueue)).await.unwrap();
        let app = Application::build(&settings, state).unwrap();
        let base = format!("http://{}", app.addr());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        Self { base, admin_token, client: Client::new(), settings, state_dir, pg_db, handle }
    }

    /// A second API process on the same database (same master key and admin token),
    /// as behind a load balancer. It leaves the database to the first.
    pub async fn spawn_sharing(first: &TestApp) -> Self {
        let state_dir = tempfile::tempdir().unwrap();
        let settings = Settings { state_dir: state_dir.path().to_path_buf(), ..first.settings.clone() };
        let prepared = prepare(&settings, Mode::Production).await.expect("startup");
        let providers = Arc::new(herd_providers::build_providers(&settings.providers, &settings.state_dir).unwrap());
        let state = AppState::new(&settings, prepared.store, providers, managers(), Arc::new(NoQueue)).await.unwrap();
        let app = Application::build(&settings, state).unwrap();
        let base = format!("http://{}", app.addr());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        let admin_token = first.admin_token.clone();
        Self { base, admin_token, client: Client::new(), settings, state_dir, pg_db: None, handle }
    }

    /// A store on this app's database, to act as a worker would.
    pub async fn store(&self) -> herd_store::Store {
        let key = herd_core::crypto::MasterKey::from_base64(self.settings.master_key.as_ref().unwrap()).unwrap();
        herd_store::Store::open(&self.database_url(), Arc::new(key)).await.unwrap()
    }

    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends and returns status and JSON body (Null when empty).
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path, token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        read(r.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// A new project and a member token in it.
    pub async fn member(&self, project: &str) -> (String, String) {
        let (s, p) = self.post("/v1/projects", &self.admin_token, serde_json::json!({"name": project})).await;
        assert_eq!(s, 201, "{p}");
        let pid = p["id"].as_str().unwrap().to_owned();
        let (s, t) = self.post(&format!("/v1/projects/{pid}/tokens"), &self.admin_token, serde_json::json!({})).await;
        assert_eq!(s, 201, "{t}");
        (pid, t["token"].as_str().unwrap().to_owned())
    }

    pub fn database_url(&self) -> String {
        self.settings.database_url.clone().unwrap()
    }
}

pub async fn read(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let is_problem = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("application/problem+json"));
    let text = res.text().await.unwrap();
    let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    if status >= 400 {
        assert!(is_problem, "error {status} is not problem+json: {v}");
        assert_eq!(v["status"].as_u64(), Some(u64::from(status)), "{v}");
        assert!(v["code"].is_string() && v["title"].is_string() && v["detail"].is_string(), "{v}");
        assert_eq!(v["type"].as_str().unwrap(), format!("/problems/{}", v["code"].as_str().unwrap()));
    }
    (status, v)
}

fn managers() -> Arc<herd_datastores::Managers> {
    Arc::new(herd_datastores::Managers::builtin())
}

fn rand_bytes() -> [u8; 32] {
    let a = uuid::Uuid::new_v4().into_bytes();
    let b = uuid::Uuid::new_v4().into_bytes();
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&a);
    out[16..].copy_from_slice(&b);
    out
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the server; the per-test database goes with the `pg_db` field after
        // this (WITH FORCE closes the pool's connections). Runs on its own thread:
        // Drop cannot await.
        let handle = self.handle.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(handle.stop(false));
        })
        .join()
        .ok();
    }
}

/// Runs each listed async test fn once per backend: `mod sqlite` and `mod postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Sqlite).await })+
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Backend::Postgres).await })+
        }
    };
}
