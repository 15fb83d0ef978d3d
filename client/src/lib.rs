//! A typed async client for Herd's REST API.
//!
//! Requests and responses are `herd-types`, the structs the server itself serializes,
//! so this client and the server cannot drift. Errors keep the API's problem details
//! (`Error::Api`) apart from transport failures (`Error::Network`). Long work is a
//! task: [`Client::wait_for_task`] follows it over the server's event stream and falls
//! back to polling when the stream is unavailable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd_client::Error> {
//! use herd_client::{Client, types::CreateCluster};
//! let herd = Client::new("http://127.0.0.1:8080", "herd_...")?;
//! let created = herd
//!     .create_cluster(&CreateCluster {
//!         name: "orders".into(),
//!         datastore: "postgresql".into(),
//!         version: "15".into(),
//!         flavor: "local.small".into(),
//!         nodes: Some(3),
//!         ..Default::default()
//!     })
//!     .await?;
//! let task = herd.wait_for_task(created.task_id, Default::default(), |_| {}).await?;
//! assert_eq!(task.status, herd_client::types::TaskStatus::Succeeded);
//! # Ok(()) }
//! ```

mod error;
pub mod sse;
mod wait;

pub use error::{ApiProblem, Error};
pub use herd_types as types;
pub use wait::{Progress, WaitOptions};

use herd_types::*;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use uuid::Uuid;

pub type Result<T> = std::result::Result<T, Error>;

/// A Herd API endpoint and the token to call it with.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// Filters of `GET /v1/clusters`.
#[derive(Debug, Clone, Default)]
pub struct ClusterFilter {
    pub status: Option<ClusterStatus>,
    pub datastore: Option<String>,
    pub name: Option<String>,
}

impl Client {
    /// `base` is the API's URL (`http://127.0.0.1:8080`); `token` a bearer token.
    pub fn new(base: &str, token: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("herd-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Network { url: base.to_owned(), source: e })?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(&self.token).timeout(Duration::from_secs(60))
    }

    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response> {
        let res = req.send().await.map_err(|e| Error::Network { url: self.base.clone(), source: e })?;
        let status = res.status();
        if status.is_client_error() || status.is_server_error() {
            let body = res.text().await.unwrap_or_default();
            return Err(Error::Api(ApiProblem::from_body(status.as_u16(), &body)));
        }
        Ok(res)
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let res = self.send(req).await?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| Error::Network { url: self.base.clone(), source: e })?;
        serde_json::from_str(&text).map_err(|e| Error::Decode { status, message: e.to_string() })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.json(self.request(Method::GET, path)).await
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.json(self.request(method, path).json(body)).await
    }

    async fn no_content(&self, method: Method, path: &str) -> Result<()> {
        self.send(self.request(method, path)).await.map(drop)
    }

    // --- health ----------------------------------------------------------------------

    /// Readiness (`GET /readyz`): answers once the API and its database do.
    pub async fn ready(&self) -> Result<Health> {
        self.get("/readyz").await
    }

    // --- catalogue -------------------------------------------------------------------

    /// The whole catalogue (every page).
    pub async fn datastores(&self) -> Result<Vec<DatastoreDto>> {
        self.all_pages("/v1/datastores", &[]).await
    }

    /// Adds a datastore with its versions (admin).
    pub async fn create_datastore(&self, req: &CreateDatastore) -> Result<DatastoreDto> {
        self.call(Method::POST, "/v1/datastores", req).await
    }

    pub async fn flavors(&self) -> Result<Vec<FlavorDto>> {
        self.get("/v1/flavors").await
    }

    pub async fn providers(&self) -> Result<Vec<ProviderDto>> {
        self.get("/v1/providers").await
    }

    // --- keys --------------------------------------------------------------------------

    pub async fn create_key(&self, req: &CreateKey) -> Result<KeyDto> {
        self.call(Method::POST, "/v1/keys", req).await
    }

    /// Every key of the project (every page).
    pub async fn keys(&self) -> Result<Vec<KeyDto>> {
        self.all_pages("/v1/keys", &[]).await
    }

    pub async fn key(&self, id: Uuid) -> Result<KeyDto> {
        self.get(&format!("/v1/keys/{id}")).await
    }

    pub async fn delete_key(&self, id: Uuid) -> Result<()> {
        self.no_content(Method::DELETE, &format!("/v1/keys/{id}")).await
    }

    // --- clusters ----------------------------------------------------------------------

    pub async fn create_cluster(&self, req: &CreateCluster) -> Result<CreatedCluster> {
        self.call(Method::POST, "/v1/clusters", req).await
    }

    /// One page of clusters, oldest first.
    pub async fn clusters_page(
        &self,
        filter: &ClusterFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<ClusterDto>> {
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(s) = filter.status {
            q.push(("status", s.to_string()));
        }
        if let Some(d) = &filter.datastore {
            q.push(("datastore", d.clone()));
        }
        if let Some(n) = &filter.name {
            q.push(("name", n.clone()));
        }
        page_query(&mut q, limit, cursor);
        self.json(self.request(Method::GET, "/v1/clusters").query(&q)).await
    }

    /// Every cluster that matches, all pages.
    pub async fn clusters(&self, filter: &ClusterFilter) -> Result<Vec<ClusterDto>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.clusters_page(filter, Some(100), cursor.as_deref()).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    pub async fn cluster(&self, id: Uuid) -> Result<ClusterDto> {
        self.get(&format!("/v1/clusters/{id}")).await
    }

    /// A cluster by id or by name (names are unique in a project). A name that matches
    /// nothing is a `not_found` problem, like an unknown id.
    pub async fn find_cluster(&self, name_or_id: &str) -> Result<ClusterDto> {
        if let Ok(id) = Uuid::parse_str(name_or_id) {
            return self.cluster(id).await;
        }
        let filter = ClusterFilter { name: Some(name_or_id.to_owned()), ..Default::default() };
        let page = self.clusters_page(&filter, Some(1), None).await?;
        page.items.into_iter().next().ok_or_else(|| not_found(format!("cluster {name_or_id:?} not found")))
    }

    pub async fn update_cluster(&self, id: Uuid, req: &UpdateCluster) -> Result<UpdatedCluster> {
        self.call(Method::PATCH, &format!("/v1/clusters/{id}"), req).await
    }

    pub async fn delete_cluster(&self, id: Uuid) -> Result<TaskRef> {
        self.json(self.request(Method::DELETE, &format!("/v1/clusters/{id}"))).await
    }

    pub async fn credentials(&self, id: Uuid) -> Result<Credentials> {
        self.get(&format!("/v1/clusters/{id}/credentials")).await
    }

    /// The cluster's CA certificate (PEM), what its servers verify against.
    pub async fn cluster_ca(&self, id: Uuid) -> Result<ClusterCa> {
        self.get(&format!("/v1/clusters/{id}/ca")).await
    }

    /// The cluster's history, newest first.
    pub async fn events(&self, id: Uuid, limit: Option<u32>, cursor: Option<&str>) -> Result<Page<EventDto>> {
        let mut q = Vec::new();
        page_query(&mut q, limit, cursor);
        self.json(self.request(Method::GET, &format!("/v1/clusters/{id}/events")).query(&q)).await
    }

    pub async fn action(&self, id: Uuid, req: &ActionRequest) -> Result<TaskRef> {
        self.call(Method::POST, &format!("/v1/clusters/{id}/actions"), req).await
    }

    pub async fn power(&self, id: Uuid, node: Uuid, req: &PowerRequest) -> Result<TaskRef> {
        self.call(Method::POST, &format!("/v1/clusters/{id}/nodes/{node}/power"), req).await
    }

    pub async fn add_nodes(&self, id: Uuid, count: i64) -> Result<AddedNodes> {
        self.call(Method::POST, &format!("/v1/clusters/{id}/nodes"), &AddNodesRequest { count }).await
    }

    pub async fn remove_node(&self, id: Uuid, node: Uuid) -> Result<TaskRef> {
        self.json(self.request(Method::DELETE, &format!("/v1/clusters/{id}/nodes/{node}"))).await
    }

    pub async fn update_node(&self, id: Uuid, node: Uuid, req: &UpdateNode) -> Result<UpdatedNode> {
        self.call(Method::PATCH, &format!("/v1/clusters/{id}/nodes/{node}"), req).await
    }

    // --- backups, snapshots, policies ---------------------------------------------------

    pub async fn create_backup(&self, id: Uuid, req: &BackupRequest) -> Result<CreatedBackup> {
        self.call(Method::POST, &format!("/v1/clusters/{id}/backups"), req).await
    }

    /// Every backup (of one cluster, when given), all pages, oldest first.
    pub async fn backups(&self, cluster: Option<Uuid>) -> Result<Vec<BackupDto>> {
        self.all_pages("/v1/backups", &cluster_filter(cluster)).await
    }

    pub async fn backup(&self, id: Uuid) -> Result<BackupDto> {
        self.get(&format!("/v1/backups/{id}")).await
    }

    pub async fn expire_backup(&self, id: Uuid) -> Result<TaskRef> {
        self.json(self.request(Method::DELETE, &format!("/v1/backups/{id}"))).await
    }

    pub async fn recovery_window(&self, id: Uuid) -> Result<RecoveryWindowDto> {
        self.get(&format!("/v1/clusters/{id}/recovery-window")).await
    }

    pub async fn create_snapshot(&self, id: Uuid) -> Result<CreatedSnapshot> {
        self.call(Method::POST, &format!("/v1/clusters/{id}/snapshots"), &SnapshotRequest {}).await
    }

    pub async fn snapshots(&self, cluster: Option<Uuid>) -> Result<Vec<SnapshotDto>> {
        self.all_pages("/v1/snapshots", &cluster_filter(cluster)).await
    }

    pub async fn snapshot(&self, id: Uuid) -> Result<SnapshotDto> {
        self.get(&format!("/v1/snapshots/{id}")).await
    }

    pub async fn delete_snapshot(&self, id: Uuid) -> Result<TaskRef> {
        self.json(self.request(Method::DELETE, &format!("/v1/snapshots/{id}"))).await
    }

    // --- managed databases and users ---------------------------------------------------

    pub async fn create_database(&self, cluster: Uuid, req: &CreateDatabase) -> Result<DatabaseAccepted> {
        self.call(Method::POST, &format!("/v1/clusters/{cluster}/databases"), req).await
    }

    pub async fn databases(&self, cluster: Uuid) -> Result<Vec<DatabaseDto>> {
        self.all_pages(&format!("/v1/clusters/{cluster}/databases"), &[]).await
    }

    pub async fn database(&self, cluster: Uuid, name: &str) -> Result<DatabaseDto> {
        self.get(&format!("/v1/clusters/{cluster}/databases/{}", segment(name))).await
    }

    /// `force` ends the sessions connected to it.
    pub async fn delete_database(&self, cluster: Uuid, name: &str, force: bool) -> Result<DatabaseAccepted> {
        let path = format!("/v1/clusters/{cluster}/databases/{}", segment(name));
        self.json(self.request(Method::DELETE, &path).query(&[("force", force.to_string())])).await
    }

    pub async fn create_user(&self, cluster: Uuid, req: &CreateUser) -> Result<UserAccepted> {
        self.call(Method::POST, &format!("/v1/clusters/{cluster}/users"), req).await
    }

    pub async fn users(&self, cluster: Uuid) -> Result<Vec<UserDto>> {
        self.all_pages(&format!("/v1/clusters/{cluster}/users"), &[]).await
    }

    pub async fn user(&self, cluster: Uuid, name: &str) -> Result<UserDto> {
        self.get(&format!("/v1/clusters/{cluster}/users/{}", segment(name))).await
    }

    pub async fn update_user(&self, cluster: Uuid, name: &str, req: &UpdateUser) -> Result<UserAccepted> {
        self.call(Method::PATCH, &format!("/v1/clusters/{cluster}/users/{}", segment(name)), req).await
    }

    pub async fn delete_user(&self, cluster: Uuid, name: &str) -> Result<UserAccepted> {
        self.json(self.request(Method::DELETE, &format!("/v1/clusters/{cluster}/users/{}", segment(name)))).await
    }

    /// The cluster's backup policy; `None` when it has none.
    pub async fn backup_policy(&self, id: Uuid) -> Result<Option<BackupPolicyDto>> {
        match self.get(&format!("/v1/clusters/{id}/backup-policy")).await {
            Ok(p) => Ok(Some(p)),
            // The API answers 404 both for a missing cluster and for a cluster without
            // a policy; only the second is `None`, so a 404 is told apart by asking for
            // the cluster (one more request, on this path only).
            Err(Error::Api(p)) if p.status == 404 => {
                self.cluster(id).await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub async fn set_backup_policy(&self, id: Uuid, req: &BackupPolicyRequest) -> Result<BackupPolicyDto> {
        self.call(Method::PUT, &format!("/v1/clusters/{id}/backup-policy"), req).await
    }

    pub async fn delete_backup_policy(&self, id: Uuid) -> Result<()> {
        self.no_content(Method::DELETE, &format!("/v1/clusters/{id}/backup-policy")).await
    }

    /// Every item of a paginated list, following `next_cursor`.
    async fn all_pages<T: DeserializeOwned>(&self, path: &str, filter: &[(&str, String)]) -> Result<Vec<T>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<(&str, String)> = filter.to_vec();
            page_query(&mut q, Some(100), cursor.as_deref());
            let page: Page<T> = self.json(self.request(Method::GET, path).query(&q)).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    // --- tasks -------------------------------------------------------------------------

    pub async fn task(&self, id: Uuid) -> Result<TaskDto> {
        self.get(&format!("/v1/tasks/{id}")).await
    }

    // --- projects and tokens (admin) ------------------------------------------------------

    pub async fn create_project(&self, name: &str) -> Result<ProjectDto> {
        self.call(Method::POST, "/v1/projects", &CreateProject { name: name.to_owned() }).await
    }

    /// Every project the caller sees (every page).
    pub async fn projects(&self) -> Result<Vec<ProjectDto>> {
        self.all_pages("/v1/projects", &[]).await
    }

    pub async fn create_token(&self, project: Uuid, req: &CreateToken) -> Result<CreatedToken> {
        self.call(Method::POST, &format!("/v1/projects/{project}/tokens"), req).await
    }

    /// Every token of the project (every page).
    pub async fn tokens(&self, project: Uuid) -> Result<Vec<TokenDto>> {
        self.all_pages(&format!("/v1/projects/{project}/tokens"), &[]).await
    }

    /// A project's limits and usage.
    pub async fn quotas(&self, project: Uuid) -> Result<QuotasDto> {
        self.get(&format!("/v1/projects/{project}/quotas")).await
    }

    /// Sets a project's own limits (operator); absent ones return to the defaults.
    pub async fn set_quotas(&self, project: Uuid, req: &SetQuotas) -> Result<QuotasDto> {
        self.call(Method::PUT, &format!("/v1/projects/{project}/quotas"), req).await
    }

    pub async fn revoke_token(&self, project: Uuid, token: Uuid) -> Result<()> {
        self.no_content(Method::DELETE, &format!("/v1/projects/{project}/tokens/{token}")).await
    }

    // --- streams -----------------------------------------------------------------------

    /// Opens a Server-Sent Events stream (`path` under `/v1`), resuming after
    /// `last_event_id` when given. No overall timeout: streams stay open.
    pub async fn open_stream(
        &self,
        path: &str,
        last_event_id: Option<Uuid>,
    ) -> Result<impl futures_util::Stream<Item = Result<StreamItem>> + Unpin + use<>> {
        use futures_util::StreamExt;
        let mut req = self.http.get(self.url(path)).bearer_auth(&self.token).header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let res = self.send(req).await?;
        let base = self.base.clone();
        Ok(Box::pin(sse::messages(res.bytes_stream()).filter_map(move |m| {
            let base = base.clone();
            async move {
                match m {
                    Err(e) => Some(Err(Error::Network { url: base, source: e })),
                    Ok(m) => match StreamMessage::parse(&m.event, &m.data) {
                        Ok(Some(msg)) => Some(Ok(StreamItem { message: msg, last_event_id: m.last_id })),
                        Ok(None) => None,
                        Err(e) => Some(Err(Error::Decode { status: 200, message: e.to_string() })),
                    },
                }
            }
        })))
    }

    /// A task's live stream (`GET /v1/tasks/{id}/stream`).
    pub async fn task_stream(
        &self,
        id: Uuid,
        last_event_id: Option<Uuid>,
    ) -> Result<impl futures_util::Stream<Item = Result<StreamItem>> + Unpin + use<>> {
        self.open_stream(&format!("/v1/tasks/{id}/stream"), last_event_id).await
    }

    /// A cluster's live stream of history events and task changes.
    pub async fn cluster_stream(
        &self,
        id: Uuid,
        last_event_id: Option<Uuid>,
    ) -> Result<impl futures_util::Stream<Item = Result<StreamItem>> + Unpin + use<>> {
        self.open_stream(&format!("/v1/clusters/{id}/events/stream"), last_event_id).await
    }
}

/// A message of a live stream and the id to resume after.
#[derive(Debug, Clone)]
pub struct StreamItem {
    pub message: StreamMessage,
    pub last_event_id: Option<String>,
}

fn page_query(q: &mut Vec<(&str, String)>, limit: Option<u32>, cursor: Option<&str>) {
    if let Some(l) = limit {
        q.push(("limit", l.to_string()));
    }
    if let Some(c) = cursor {
        q.push(("cursor", c.to_owned()));
    }
}

fn cluster_filter(cluster: Option<Uuid>) -> Vec<(&'static str, String)> {
    cluster.map(|c| ("cluster_id", c.to_string())).into_iter().collect()
}

fn not_found(detail: String) -> Error {
    Error::Api(ApiProblem {
        status: StatusCode::NOT_FOUND.as_u16(),
        code: ErrorCode::NotFound.as_str().to_owned(),
        title: ErrorCode::NotFound.title().to_owned(),
        detail,
        errors: Vec::new(),
        quota: None,
    })
}

/// A name as one URL path segment (names are validated by the API; this keeps a bad
/// one from changing the path).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}
