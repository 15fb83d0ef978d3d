//! Certificate renewals claimed by a worker fleet: every worker scans, exactly one
//! opens the renewal task; a busy cluster waits; a renewal that did not complete is
//! tried again at its retry time, not at every scan. On PostgreSQL (see health.rs).

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use herd_core::crypto::MasterKey;
use herd_core::status::{ClusterStatus, TaskKind, TaskStatus};
use herd_store::{Renewal, Store};
use herd_testkit::TempPgDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_worker_of_many_starts_a_due_renewal_and_a_busy_cluster_waits() {
    let db = TempPgDb::create("herd_certs").await;
    let store = Store::open(db.url(), Arc::new(MasterKey::generate())).await.expect("connect");
    store.migrate().await.expect("migrate");
    store.seed_datastores().await.expect("seed datastores");
    let project = store.create_project("certs").await.expect("project");
    let (view, build) =
        store.create_cluster(common::new_cluster(project.id, "certs", 1)).await.expect("create cluster");
    let id = view.cluster.id;
    let now = Utc::now();
    // Being built: never due, whatever its (unrecorded) renewal time.
    assert!(store.due_certificate_renewals(now).await.unwrap().is_empty());
    assert!(store.claim_task(build.id, "w", Duration::seconds(30)).await.unwrap().is_some());
    let renew_at = now + Duration::seconds(30);
    store.complete_build(build.id, "w", id, renew_at).await.unwrap();
    assert!(store.due_certificate_renewals(now).await.unwrap().is_empty(), "not due before its time");
    let later = renew_at + Duration::seconds(1);
    assert_eq!(store.due_certificate_renewals(later).await.unwrap(), vec![id]);

    // Eight workers scan at once: one renewal task.
    let retry_at = later + Duration::seconds(60);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        set.spawn(async move { store.start_certificate_renewal(id, later, retry_at, "renewing").await });
    }
    let mut started = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap().unwrap() {
            Renewal::Started(t) => started.push(*t),
            Renewal::Lost => {}
            Renewal::Waiting(why) => panic!("nothing else runs on the cluster: {why}"),
        }
    }
    assert_eq!(started.len(), 1, "{started:?}");
    let task = &started[0];
    assert_eq!(task.kind, TaskKind::UpdateCluster);
    assert_eq!(store.cluster_by_id(id).await.unwrap().status, ClusterStatus::Updating);
    // Not due again until the retry time, even though the task has not finished.
    assert!(store.due_certificate_renewals(later + Duration::seconds(5)).await.unwrap().is_empty());

    // The task fails (a node was unreachable): the retry time comes, but while a task
    // is open the cluster waits; once it is free the renewal starts again.
    assert!(store.claim_task(task.id, "w", Duration::seconds(30)).await.unwrap().is_some());
    let after_retry = retry_at + Duration::seconds(1);
    assert_eq!(store.due_certificate_renewals(after_retry).await.unwrap(), Vec::<uuid::Uuid>::new(), "updating");
    store.finish_day2(task.id, "w", id, TaskStatus::Failed, None).await.unwrap();
    assert_eq!(store.due_certificate_renewals(after_retry).await.unwrap(), vec![id]);
    let busy = store
        .request_task(project.id, id, &[], herd_core::task::TaskInput::UpdateCluster {}, "someone's update")
        .await
        .unwrap();
    match store.start_certificate_renewal(id, after_retry, after_retry + Duration::seconds(60), "renewing").await {
        Ok(Renewal::Waiting(why)) => assert!(!why.is_empty()),
        other => panic!("a busy cluster waits: {other:?}"),
    }
    assert!(store.claim_task(busy.id, "w", Duration::seconds(30)).await.unwrap().is_some());
    store.finish_day2(busy.id, "w", id, TaskStatus::Succeeded, None).await.unwrap();
    let again = store.start_certificate_renewal(id, after_retry, after_retry + Duration::seconds(60), "renewing");
    assert!(matches!(again.await.unwrap(), Renewal::Started(_)), "free again: renewed");
    // A completed push records the next window, which is what the scan goes by.
    store.certificates_pushed(id, after_retry + Duration::days(1)).await.unwrap();
    assert!(store.due_certificate_renewals(after_retry + Duration::hours(2)).await.unwrap().is_empty());
}
