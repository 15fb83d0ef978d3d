//! The live streams (Server-Sent Events) through HTTP: order, the delivery bound,
//! resumption with Last-Event-ID, tenancy, and several API processes on one database.
//! The test acts as the worker, writing task progress and history through the store.

mod common;

use common::{Backend, TestApp};
use herd_client::sse::{SseMessage, SseParser};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use uuid::Uuid;

on_both_backends!(
    a_task_stream_follows_the_task_to_its_end_and_resumes,
    a_cluster_stream_delivers_its_own_new_events_and_closes_on_deletion,
    streams_need_a_token_and_a_resource_of_the_callers_project,
);

/// The bound: a change is on the wire within 250 ms of being recorded.
const BOUND: Duration = Duration::from_millis(250);

/// An open event stream.
struct Sse {
    res: reqwest::Response,
    parser: SseParser,
    queued: VecDeque<SseMessage>,
}

impl Sse {
    async fn open(app: &TestApp, path: &str, token: &str, last_event_id: Option<&str>) -> Self {
        let mut r = app.req(Method::GET, path, Some(token));
        if let Some(id) = last_event_id {
            r = r.header("Last-Event-ID", id);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["cache-control"], "no-store");
        Self { res, parser: SseParser::default(), queued: VecDeque::new() }
    }

    /// The next message within `timeout`; None when the server closed the stream.
    async fn next(&mut self, timeout: Duration) -> Option<SseMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(m) = self.queued.pop_front() {
                return Some(m);
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .unwrap_or_else(|_| panic!("no message within {timeout:?}"))
                .unwrap()?;
            self.queued.extend(self.parser.feed(&chunk));
        }
    }

    /// The next message, which must arrive within `BOUND` of `since` and be `event`.
    async fn expect(&mut self, event: &str, since: Instant) -> Value {
        let m = self.next(Duration::from_secs(5)).await.expect("stream still open");
        let lag = since.elapsed();
        assert_eq!(m.event, event, "{m:?}");
        assert!(lag <= BOUND, "{event} delivered after {lag:?} (bound {BOUND:?})");
        let v: Value = serde_json::from_str(&m.data).unwrap();
        if event == "event" {
            assert_eq!(m.last_id.as_deref(), v["id"].as_str(), "an event's id is its SSE id");
        }
        v
    }

    async fn closes(&mut self) {
        assert!(self.next(Duration::from_secs(5)).await.is_none(), "the stream should have ended");
    }
}

async fn new_cluster(app: &TestApp, token: &str, name: &str) -> (Uuid, Uuid) {
    let body = json!({"name": name, "datastore": "postgresql", "version": "15", "flavor": "local.small"});
    let (s, v) = app.post("/v1/clusters", token, body).await;
    assert_eq!(s, 202, "{v}");
    (v["cluster"]["id"].as_str().unwrap().parse().unwrap(), v["task_id"].as_str().unwrap().parse().unwrap())
}

async fn a_task_stream_follows_the_task_to_its_end_and_resumes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("streams").await;
    let pid: Uuid = pid.parse().unwrap();
    let (cluster, task) = new_cluster(&app, &tok, "followed").await;
    let store = app.store().await;
    let path = format!("/v1/tasks/{task}/stream");

    // First the task as it is, then its history so far.
    let mut s = Sse::open(&app, &path, &tok, None).await;
    let t = s.expect("task", Instant::now()).await;
    assert_eq!((t["id"].as_str(), t["status"].as_str()), (Some(task.to_string().as_str()), Some("queued")));
    let first = s.expect("event", Instant::now()).await;
    assert_eq!(first["task_id"], task.to_string());

    // A worker claims it, checkpoints a step, records history, and finishes.
    assert!(store.claim_task(task, "w1", chrono::Duration::seconds(30)).await.unwrap().is_some());
    let at = Instant::now();
    assert_eq!(s.expect("task", at).await["status"], "running");
    store.checkpoint(task, "w1", "create_servers", 30, &build_payload()).await.unwrap();
    let at = Instant::now();
    let t = s.expect("task", at).await;
    assert_eq!((t["step"].as_str(), t["progress"].as_i64()), (Some("create_servers"), Some(30)));
    let mut recorded = Vec::new();
    for i in 0..3 {
        let e = store
            .record_event(pid, cluster, Some(task), "info", Some("create_servers"), &format!("server {i} made"))
            .await
            .unwrap();
        recorded.push(e.id);
        let at = Instant::now();
        let got = s.expect("event", at).await;
        assert_eq!(
            (got["id"].as_str(), got["message"].as_str()),
            (Some(e.id.to_string().as_str()), Some(&*format!("server {i} made")))
        );
    }
    // Another task's history is not this stream's.
    let (_, other_task) = new_cluster(&app, &tok, "other").await;
    store.record_event(pid, cluster, Some(other_task), "info", None, "not mine").await.unwrap();
    store.checkpoint(task, "w1", "configure", 60, &build_payload()).await.unwrap();
    let at = Instant::now();
    assert_eq!(s.expect("task", at).await["progress"], 60);
    store.finish_task(task, "w1", herd_core::status::TaskStatus::Succeeded, None).await.unwrap();
    let at = Instant::now();
    let t = s.expect("task", at).await;
    assert_eq!((t["status"].as_str(), t["progress"].as_i64()), (Some("succeeded"), Some(100)));
    s.closes().await;

    // Resuming after the second event: the final state, then only what came after it.
    let mut s = Sse::open(&app, &path, &tok, Some(&recorded[0].to_string())).await;
    assert_eq!(s.expect("task", Instant::now()).await["status"], "succeeded");
    for id in &recorded[1..] {
        assert_eq!(s.expect("event", Instant::now()).await["id"], id.to_string());
    }
    s.closes().await;
    // The same through the query parameter (for clients that cannot set headers).
    let mut s = Sse::open(&app, &format!("{path}?last_event_id={}", recorded[1]), &tok, None).await;
    s.expect("task", Instant::now()).await;
    assert_eq!(s.expect("event", Instant::now()).await["id"], recorded[2].to_string());
    s.closes().await;
    // The whole history when not resuming: the first event, then the three.
    let mut s = Sse::open(&app, &path, &tok, None).await;
    s.expect("task", Instant::now()).await;
    assert_eq!(s.expect("event", Instant::now()).await["id"], first["id"]);
    for id in &recorded {
        assert_eq!(s.expect("event", Instant::now()).await["id"], id.to_string());
    }
    s.closes().await;
}

async fn a_cluster_stream_delivers_its_own_new_events_and_closes_on_deletion(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (pid, tok) = app.member("watchers").await;
    let pid: Uuid = pid.parse().unwrap();
    let (cluster, build) = new_cluster(&app, &tok, "watched").await;
    let (neighbour, _) = new_cluster(&app, &tok, "neighbour").await;
    let store = app.store().await;
    let path = format!("/v1/clusters/{cluster}/events/stream");

    // Only what is recorded from now on: the creation event is not replayed.
    let mut s = Sse::open(&app, &path, &tok, None).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        store.record_event(pid, cluster, None, "info", None, &format!("note {i}")).await.unwrap();
        let at = Instant::now();
        let got = s.expect("event", at).await;
        assert_eq!(got["message"], format!("note {i}"));
        ids.push(got["id"].as_str().unwrap().to_owned());
        // A neighbour's history never shows here: the next message is ours.
        store.record_event(pid, neighbour, None, "info", None, "neighbour's").await.unwrap();
    }
    // Its tasks' changes come through as `task` messages.
    assert!(store.claim_task(build, "w1", chrono::Duration::seconds(30)).await.unwrap().is_some());
    let at = Instant::now();
    let t = s.expect("task", at).await;
    assert_eq!((t["id"].as_str(), t["status"].as_str()), (Some(build.to_string().as_str()), Some("running")));

    // A client that lost the connection after the first note gets the rest, then live.
    let mut resumed = Sse::open(&app, &path, &tok, Some(&ids[0])).await;
    for id in &ids[1..] {
        assert_eq!(resumed.expect("event", Instant::now()).await["id"], id.as_str());
    }
    let e = store.record_event(pid, cluster, None, "warn", Some("probe"), "after resuming").await.unwrap();
    let at = Instant::now();
    assert_eq!(resumed.expect("event", at).await["id"], e.id.to_string());
    assert_eq!(s.expect("event", at).await["id"], e.id.to_string());

    // Deleting the cluster: the request's history arrives, and once the deletion
    // succeeds the stream ends.
    let (st, d) = app.call(Method::DELETE, &format!("/v1/clusters/{cluster}"), Some(&tok), None).await;
    assert_eq!(st, 202, "{d}");
    let delete: Uuid = d["task_id"].as_str().unwrap().parse().unwrap();
    let mut saw_delete_task = false;
    let mut messages = Vec::new();
    while !saw_delete_task {
        let m = s.next(Duration::from_secs(5)).await.expect("stream open until the deletion succeeds");
        let v: Value = serde_json::from_str(&m.data).unwrap();
        saw_delete_task = m.event == "task" && v["id"] == delete.to_string();
        messages.push((m.event, v));
    }
    assert!(
        messages.iter().any(|(k, v)| k == "event" && v["message"].as_str().unwrap_or("").contains("cancelled")),
        "the build's cancellation is in the history: {messages:?}"
    );
    assert!(store.claim_task(delete, "w1", chrono::Duration::seconds(30)).await.unwrap().is_some());
    store.finish_task(delete, "w1", herd_core::status::TaskStatus::Succeeded, None).await.unwrap();
    loop {
        match s.next(Duration::from_secs(5)).await {
            None => break,
            Some(m) => assert!(m.event == "task" || m.event == "event", "{m:?}"),
        }
    }
}

async fn streams_need_a_token_and_a_resource_of_the_callers_project(b: Backend) {
    let app = TestApp::spawn(b).await;
    let (_, mine) = app.member("owner").await;
    let (_, theirs) = app.member("stranger").await;
    let (cluster, task) = new_cluster(&app, &mine, "private").await;
    for path in [format!("/v1/tasks/{task}/stream"), format!("/v1/clusters/{cluster}/events/stream")] {
        let (s, v) = app.call(Method::GET, &path, None, None).await;
        assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "{path}");
        let (s, v) = app.call(Method::GET, &path, Some("herd_not_a_token"), None).await;
        assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")), "{path}");
        // Another project's resource does not exist for this caller.
        let (s, v) = app.call(Method::GET, &path, Some(&theirs), None).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{path}");
        let r = app.req(Method::GET, &path, Some(&mine)).header("Last-Event-ID", "not-an-id").send().await.unwrap();
        let (s, v) = common::read(r).await;
        assert_eq!((s, v["errors"][0]["field"].as_str()), (422, Some("last_event_id")), "{path}: {v}");
    }
    for path in
        [format!("/v1/tasks/{}/stream", Uuid::now_v7()), format!("/v1/clusters/{}/events/stream", Uuid::now_v7())]
    {
        let (s, v) = app.call(Method::GET, &path, Some(&mine), None).await;
        assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{path}");
    }
}

/// Two API processes behind one database: a stream on one shows what the other
/// (and the workers, through the database) recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_one_api_process_shows_what_another_recorded() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = TestApp::spawn_sharing(&a).await;
    let (_, tok) = a.member("fleet").await;
    let (cluster, _) = new_cluster(&a, &tok, "shared").await;
    let mut s = Sse::open(&b, &format!("/v1/clusters/{cluster}/events/stream"), &tok, None).await;
    let policy = json!({"full_schedule": "0 3 * * 0", "retention_full": 2});
    let r = a.req(Method::PUT, &format!("/v1/clusters/{cluster}/backup-policy"), Some(&tok)).json(&policy);
    let at = Instant::now();
    let (st, v) = common::read(r.send().await.unwrap()).await;
    assert_eq!(st, 200, "{v}");
    let e = s.expect("event", at).await;
    assert_eq!(e["step"], "backup_policy", "{e}");
}

/// `herd-client`'s `wait_for_task` over this server: following the stream (task
/// changes and history events, in order, then the end) and, when told to, by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_waits_for_a_task_over_the_stream_or_by_polling() {
    use herd_client::{Progress, WaitOptions};
    use herd_core::status::TaskStatus;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (pid, tok) = app.member("waiters").await;
    let pid: Uuid = pid.parse().unwrap();
    let api = herd_client::Client::new(&app.base, &tok).unwrap();
    for poll_only in [false, true] {
        let (cluster, task) = new_cluster(&app, &tok, if poll_only { "polled" } else { "streamed" }).await;
        let store = app.store().await;
        // The "worker": claims, checkpoints two steps with an event each, succeeds.
        let worker = tokio::spawn(async move {
            let pause = || tokio::time::sleep(Duration::from_millis(300));
            pause().await;
            assert!(store.claim_task(task, "w", chrono::Duration::seconds(30)).await.unwrap().is_some());
            for (step, progress) in [("create_servers", 40), ("start_patroni", 80)] {
                pause().await;
                store.checkpoint(task, "w", step, progress, &build_payload()).await.unwrap();
                store
                    .record_event(pid, cluster, Some(task), "info", Some(step), &format!("{step} done"))
                    .await
                    .unwrap();
            }
            pause().await;
            store.finish_task(task, "w", TaskStatus::Succeeded, None).await.unwrap();
        });
        let mut seen = Vec::new();
        let opts =
            WaitOptions { timeout: Some(Duration::from_secs(20)), poll_only, poll_interval: Duration::from_millis(50) };
        let done = api
            .wait_for_task(task, opts, |p| match p {
                Progress::Task(t) => seen.push(format!("task {} {}", t.status, t.step.as_deref().unwrap_or("-"))),
                Progress::Event(e) => seen.push(format!("event {}", e.message)),
            })
            .await
            .unwrap();
        worker.await.unwrap();
        assert_eq!((done.status, done.progress), (TaskStatus::Succeeded, 100));
        let tasks: Vec<&String> = seen.iter().filter(|s| s.starts_with("task ")).collect();
        assert_eq!(tasks.first().map(|s| s.as_str()), Some("task queued -"), "{seen:?}");
        assert_eq!(tasks.last().map(|s| s.as_str()), Some("task succeeded start_patroni"), "{seen:?}");
        for step in ["task running create_servers", "task running start_patroni"] {
            assert!(seen.iter().any(|s| s == step), "{step} not seen: {seen:?}");
        }
        let events: Vec<&String> = seen.iter().filter(|s| s.starts_with("event ")).collect();
        if poll_only {
            assert!(events.is_empty(), "polling reads the task only: {seen:?}");
        } else {
            // The stream: the whole history in order, each step's event after its change.
            assert_eq!(events.len(), 3, "{seen:?}");
            assert_eq!(&events[1..], ["event create_servers done", "event start_patroni done"]);
            let at = |needle: &str| seen.iter().position(|s| s == needle).unwrap();
            assert!(at("task running create_servers") < at("event create_servers done"), "{seen:?}");
            assert!(at("event create_servers done") < at("task running start_patroni"), "{seen:?}");
        }
    }
    // An unknown task is the API's 404, not a hang.
    let err = api.wait_for_task(Uuid::now_v7(), WaitOptions::default(), |_| {}).await.unwrap_err();
    assert_eq!(err.code(), Some("not_found"), "{err}");
}

/// More events at once than the feed reads per query and than a stream buffers: all
/// arrive, once each, in order (the stream re-reads the database when it falls behind).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_arrives_whole_and_in_order() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (pid, tok) = app.member("burst").await;
    let pid: Uuid = pid.parse().unwrap();
    let (cluster, _) = new_cluster(&app, &tok, "busy").await;
    let store = app.store().await;
    let mut s = Sse::open(&app, &format!("/v1/clusters/{cluster}/events/stream"), &tok, None).await;
    const N: usize = 1500;
    let writer = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(N);
        for i in 0..N {
            ids.push(store.record_event(pid, cluster, None, "info", None, &format!("e{i}")).await.unwrap().id);
        }
        ids
    });
    let mut got = Vec::with_capacity(N);
    while got.len() < N {
        let m = s.next(Duration::from_secs(10)).await.expect("stream open");
        assert_eq!(m.event, "event", "{m:?}");
        let v: Value = serde_json::from_str(&m.data).unwrap();
        got.push(v["id"].as_str().unwrap().parse::<Uuid>().unwrap());
    }
    let written = writer.await.unwrap();
    assert_eq!(got, written, "every event once, in the order written");
}

/// What a build task's checkpoint stores (no restore, no steps recorded by this test).
fn build_payload() -> herd_core::task::Payload {
    herd_core::task::Payload::new(herd_core::task::TaskInput::CreateCluster(Default::default()))
}
