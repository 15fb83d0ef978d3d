//! Live progress as Server-Sent Events: a task's state changes and history events
//! until it ends (`/v1/tasks/{id}/stream`), and a cluster's new history events and
//! task changes (`/v1/clusters/{id}/events/stream`). Authenticated and tenant-scoped
//! like every `/v1` route; resumable with `Last-Event-ID` (or `?last_event_id=`, for
//! clients that cannot set headers) after the id of the last history event seen.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use herd_core::status::TaskKind;
use herd_store::{Store, StoreError};
use herd_store::{Task, TaskEvent};
use herd_types::{StreamMessage, TaskDto};
use serde::Deserialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;
use uuid::Uuid;

use super::IntoDto;
use crate::auth::Auth;
use crate::error::{ApiError, Problem};
use crate::feed::Change;
use crate::state::AppState;

/// A comment line this often keeps proxies from closing an idle stream and lets the
/// server notice a client that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// History events read per catch-up query.
const BACKLOG: u64 = 500;
/// Sent event ids a stream keeps for de-duplication before it forgets the old ones.
const REMEMBERED: usize = 4096;

pub fn routes(t: &mut super::Table) {
    t.add::<__path_task_stream>(web::to(task_stream));
    t.add::<__path_cluster_stream>(web::to(cluster_stream));
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this history event (as the `Last-Event-ID` header does).
    #[param(value_type = Option<Uuid>)]
    pub last_event_id: Option<String>,
}

/// Follow a task: its state now and at every change, and its history events, as
/// Server-Sent Events (`event: task` with a `TaskDto`, `event: event` with an
/// `EventDto` and its id). The stream ends after the task does.
#[utoipa::path(get, path = "/v1/tasks/{id}/stream", tag = "tasks",
    params(("id" = Uuid, Path), StreamQuery,
        ("Last-Event-ID" = Option<Uuid>, Header, description = "Resume after this history event")),
    responses(
    (status = 200, content_type = "text/event-stream", body = String,
        description = "`event: task` / `event: event` messages, JSON in `data`"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn task_stream(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<StreamQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let after = last_event_id(&req, &q)?;
    let rx = state.feed.subscribe();
    let t = state.store.get_task(auth.project_id, *id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("task"),
        e => e.into(),
    })?;
    let follow = Follow { store: state.store.clone(), project_id: auth.project_id, task_id: t.id, after };
    Ok(sse(move |out| follow.run(t, rx, out)))
}

/// Follow a cluster: every history event recorded from now on (after `Last-Event-ID`
/// when given), and every change of its tasks, as Server-Sent Events. Ends when the
/// cluster's deletion succeeds.
#[utoipa::path(get, path = "/v1/clusters/{id}/events/stream", tag = "clusters",
    params(("id" = Uuid, Path), StreamQuery,
        ("Last-Event-ID" = Option<Uuid>, Header, description = "Resume after this history event")),
    responses(
    (status = 200, content_type = "text/event-stream", body = String,
        description = "`event: event` / `event: task` messages, JSON in `data`"),
    (status = 404, body = Problem, content_type = "application/problem+json"),
    (status = 422, body = Problem, content_type = "application/problem+json"),
))]
pub async fn cluster_stream(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    q: web::Query<StreamQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let after = last_event_id(&req, &q)?;
    let rx = state.feed.subscribe();
    if !state.store.cluster_exists(auth.project_id, *id).await? {
        return Err(ApiError::not_found("cluster"));
    }
    // Without a resume point the stream shows what happens from now on: after the
    // newest event and task change on record (the feed also replays a few seconds).
    let (newest_event, newest_task) = state.store.cluster_stream_start(auth.project_id, *id).await?;
    let watch = Watch {
        store: state.store.clone(),
        project_id: auth.project_id,
        cluster_id: *id,
        after: after.or(newest_event),
        tasks_after: newest_task,
    };
    Ok(sse(move |out| watch.run(rx, out)))
}

fn last_event_id(req: &HttpRequest, q: &StreamQuery) -> Result<Option<Uuid>, ApiError> {
    let header = req.headers().get("Last-Event-ID").map(|v| v.to_str().unwrap_or("\u{fffd}").trim().to_owned());
    match header.or_else(|| q.last_event_id.clone()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Uuid::parse_str(&s)
            .map(Some)
            .map_err(|_| ApiError::field("last_event_id", "is not the id of an event of this stream")),
    }
}

/// Where a stream's producer writes its frames; closed when the client goes away.
type Out = mpsc::Sender<web::Bytes>;

/// The response, fed by `producer` running on its own task.
fn sse<F, Fut>(producer: F) -> HttpResponse
where
    F: FnOnce(Out) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<web::Bytes>(64);
    tokio::spawn(producer(tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (Ok::<_, Infallible>(frame), rx))
    });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Proxies that buffer (nginx) would hold the events back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// One SSE frame. `data` is JSON, which never contains a raw newline.
fn frame(msg: &StreamMessage) -> web::Bytes {
    let (id, data) = match msg {
        StreamMessage::Task(t) => (None, serde_json::to_string(t)),
        StreamMessage::Event(e) => (Some(e.id), serde_json::to_string(e)),
    };
    let data = data.unwrap_or_default();
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    web::Bytes::from(format!("{id}event: {}\ndata: {data}\n\n", msg.name()))
}

/// The history events already sent, so backlog reads and the feed's look-back never
/// repeat one, nor send one the client had before (`Last-Event-ID`) or that predates
/// the stream.
struct Sent {
    events: HashSet<Uuid>,
    last_event: Option<Uuid>,
    /// Everything up to this id is not for this stream.
    after: Option<Uuid>,
}

impl Sent {
    fn new(after: Option<Uuid>) -> Self {
        Self { events: HashSet::new(), last_event: after, after }
    }

    /// Sends `e` unless it went out already; false once the client has gone.
    async fn event(&mut self, e: TaskEvent, out: &Out) -> bool {
        if self.after.is_some_and(|a| e.id <= a) || !self.events.insert(e.id) {
            return true;
        }
        self.last_event = self.last_event.max(Some(e.id));
        if self.events.len() > REMEMBERED {
            // A stream open for days must not remember every id: repeats can only come
            // from the feed's look-back, so ids well older than the newest sent go.
            let floor = herd_store::v7_floor(chrono::Utc::now() - chrono::Duration::seconds(60));
            self.events.retain(|id| *id >= floor);
        }
        out.send(frame(&StreamMessage::Event(e.into_dto()))).await.is_ok()
    }
}

struct Follow {
    store: Store,
    project_id: Uuid,
    task_id: Uuid,
    after: Option<Uuid>,
}

impl Follow {
    async fn run(self, first: Task, mut rx: broadcast::Receiver<Change>, out: Out) {
        // A task's whole history is small and bounded: all of it, unless resuming.
        let mut sent = Sent::new(self.after);
        let mut last: Option<TaskDto> = None;
        if !send_task(&mut last, first, &out).await || !self.backlog(&mut sent, &out).await {
            return;
        }
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        while !last.as_ref().is_some_and(|t| t.status.is_terminal()) {
            let alive = tokio::select! {
                change = rx.recv() => match change {
                    Ok(Change::Event(e)) if e.task_id == Some(self.task_id) => sent.event((*e).clone(), &out).await,
                    Ok(Change::Task(t)) if t.id == self.task_id => send_task(&mut last, (*t).clone(), &out).await,
                    Ok(_) => true,
                    // Fell behind the feed: read what was missed from the database.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resync(&mut sent, &mut last, &out).await,
                    Err(broadcast::error::RecvError::Closed) => false,
                },
                _ = keepalive.tick() => out.send(web::Bytes::from_static(b": keepalive\n\n")).await.is_ok(),
            };
            if !alive {
                return;
            }
        }
        // The task ended: whatever it recorded last goes out before the stream closes.
        self.backlog(&mut sent, &out).await;
    }

    /// The task's events after the last one sent.
    async fn backlog(&self, sent: &mut Sent, out: &Out) -> bool {
        loop {
            let rows = match self.store.task_events_after(self.project_id, self.task_id, sent.last_event, BACKLOG).await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(task = %self.task_id, error = %e, "task stream: reading events failed");
                    return false;
                }
            };
            let n = rows.len() as u64;
            for e in rows {
                if !sent.event(e, out).await {
                    return false;
                }
            }
            if n < BACKLOG {
                return true;
            }
        }
    }

    async fn resync(&self, sent: &mut Sent, last: &mut Option<TaskDto>, out: &Out) -> bool {
        if !self.backlog(sent, out).await {
            return false;
        }
        match self.store.get_task(self.project_id, self.task_id).await {
            Ok(t) => send_task(last, t, out).await,
            Err(_) => false,
        }
    }
}

/// Sends the task's state if it differs from the last one sent.
async fn send_task(last: &mut Option<TaskDto>, t: Task, out: &Out) -> bool {
    let dto = t.into_dto();
    if last.as_ref() == Some(&dto) {
        return true;
    }
    let ok = out.send(frame(&StreamMessage::Task(dto.clone()))).await.is_ok();
    *last = Some(dto);
    ok
}

struct Watch {
    store: Store,
    project_id: Uuid,
    cluster_id: Uuid,
    after: Option<Uuid>,
    /// Task changes recorded up to this are not news.
    tasks_after: Option<chrono::DateTime<chrono::Utc>>,
}

impl Watch {
    async fn run(self, mut rx: broadcast::Receiver<Change>, out: Out) {
        let mut sent = Sent::new(self.after);
        if !self.backlog(&mut sent, &out).await {
            return;
        }
        let mut tasks: std::collections::HashMap<Uuid, TaskDto> = Default::default();
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let alive = tokio::select! {
                change = rx.recv() => match change {
                    Ok(Change::Event(e)) if e.cluster_id == self.cluster_id && e.project_id == self.project_id => {
                        sent.event((*e).clone(), &out).await
                    }
                    Ok(Change::Task(t))
                        if t.cluster_id == Some(self.cluster_id)
                            && t.project_id == self.project_id
                            && self.tasks_after.is_none_or(|a| t.updated_at > a) =>
                    {
                        let deleted = t.kind == TaskKind::DeleteCluster
                            && t.status == herd_core::status::TaskStatus::Succeeded;
                        let mut last = tasks.remove(&t.id);
                        let ok = send_task(&mut last, (*t).clone(), &out).await;
                        if let Some(l) = last.filter(|l| !l.status.is_terminal()) {
                            tasks.insert(t.id, l);
                        }
                        if deleted {
                            return;
                        }
                        ok
                    }
                    Ok(_) => true,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.backlog(&mut sent, &out).await,
                    Err(broadcast::error::RecvError::Closed) => false,
                },
                _ = keepalive.tick() => out.send(web::Bytes::from_static(b": keepalive\n\n")).await.is_ok(),
            };
            if !alive {
                return;
            }
        }
    }

    /// The cluster's events after the last one sent (or the resume point).
    async fn backlog(&self, sent: &mut Sent, out: &Out) -> bool {
        let Some(mut after) = sent.last_event else { return true };
        loop {
            let rows = match self.store.cluster_events_after(self.project_id, self.cluster_id, after, BACKLOG).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(cluster = %self.cluster_id, error = %e, "cluster stream: reading events failed");
                    return false;
                }
            };
            let n = rows.len() as u64;
            for e in rows {
                after = after.max(e.id);
                if !sent.event(e, out).await {
                    return false;
                }
            }
            if n < BACKLOG {
                return true;
            }
        }
    }
}
