//! Recording observed health from several workers at once (a worker fleet: every
//! worker runs the health poller). A primary move must be reported by exactly one of
//! them, or the history and the post-failover hooks would see one failover twice.
//! Runs on PostgreSQL (`HERD_TEST_POSTGRES_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres), where transactions really overlap;
//! SQLite's write transactions are serial.

mod common;

use std::sync::Arc;

use herd_core::crypto::MasterKey;
use herd_core::status::{NodeRole, NodeStatus};
use herd_store::{NodeObservation, Store};
use herd_testkit::TempPgDb;
use uuid::Uuid;

const WORKERS: usize = 8;
const ROUNDS: usize = 5;

async fn postgres_store() -> (Store, TempPgDb) {
    let db = TempPgDb::create("herd_store").await;
    let store = Store::open(db.url(), Arc::new(MasterKey::generate())).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

fn seen_as(node_id: Uuid, role: NodeRole) -> NodeObservation {
    NodeObservation {
        node_id,
        role,
        status: NodeStatus::Running,
        state: Some("running".into()),
        timeline: Some(1),
        lag_bytes: Some(0),
        pending_restart: false,
        sync_standby: false,
        seen: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_move_is_reported_once_however_many_workers_observe_it() {
    let (store, _db) = postgres_store().await;
    store.seed_datastores().await.expect("seed datastores");
    let project = store.create_project("fleet").await.expect("project");
    let (view, _task) =
        store.create_cluster(common::new_cluster(project.id, "fleet", 2)).await.expect("create cluster");
    let (a, b) = (view.nodes[0].id, view.nodes[1].id);
    // The first primary is learned, not a move.
    let first = store.record_health(view.cluster.id, &[seen_as(a, NodeRole::Primary)], Some(a), true).await.unwrap();
    assert_eq!(first.primary, None);

    // Each round the primary moves (a → b → a …) and every worker records the same
    // observation concurrently.
    let mut from = a;
    for round in 0..ROUNDS {
        let to = if from == a { b } else { a };
        let obs = vec![seen_as(to, NodeRole::Primary), seen_as(from, NodeRole::Replica)];
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..WORKERS {
            let (store, obs, id) = (store.clone(), obs.clone(), view.cluster.id);
            set.spawn(async move { store.record_health(id, &obs, Some(to), true).await });
        }
        let mut reported = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Some(moved) = r.expect("join").expect("record_health").primary {
                reported.push(moved);
            }
        }
        assert_eq!(reported, vec![(from, to)], "round {round}: the move must be reported exactly once");
        let now = store.get_cluster(project.id, view.cluster.id).await.unwrap();
        assert_eq!(now.cluster.primary_node_id, Some(to));
        from = to;
    }
}
