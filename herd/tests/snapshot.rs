//! Volume snapshots through the real `herd` binary: a snapshot of a running cluster's
//! primary taken inside an online backup, new clusters started from it (one with
//! replicas, one with the source's own name after the source is deleted), and its
//! deletion at the provider.

mod common;

use common::{Env, cluster, psql, refused};
use herd_client::types::{BackupRequest, ClusterStatus, CreateCluster, RestoreRequest, SnapshotStatus};
use std::time::Duration;
use uuid::Uuid;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const TASK_WITHIN: Duration = Duration::from_secs(300);

async fn count(env: &Env, api: &str, token: &str, id: Uuid) -> String {
    let (uri, password) = env.credentials(api, token, id).await;
    psql(&uri, &password, "select count(*) || ':' || max(id) from t").unwrap()
}

/// A new cluster of `nodes` nodes started from the snapshot.
fn from_snapshot(name: &str, nodes: i64, snapshot: Uuid) -> CreateCluster {
    let restore = RestoreRequest { snapshot_id: Some(snapshot), ..Default::default() };
    CreateCluster { restore: Some(restore), ..cluster(name, nodes) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restore_and_delete() {
    let env = Env::new();
    let (_dev, api, token) = env.dev(&[], "dev.log");
    let herd = env.client(&api, &token);
    let src = env.create_cluster(&api, &token, cluster("snapsrc", 1)).await;
    env.wait_status(&api, &token, src, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let (uri, password) = env.credentials(&api, &token, src).await;
    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 100)").unwrap();

    let v = herd.create_snapshot(src).await.unwrap();
    assert_eq!(v.snapshot.status, SnapshotStatus::Creating, "{v:?}");
    let snap = v.snapshot.id;
    // One task at a time: a backup now waits its turn.
    let p = refused(herd.create_backup(src, &BackupRequest::default()).await);
    assert_eq!((p.status, p.code.as_str()), (409, "cluster_busy"), "{p:?}");
    env.wait_succeeded(&api, &token, v.task_id, TASK_WITHIN).await;
    let sn = herd.snapshot(snap).await.unwrap();
    assert_eq!(sn.status, SnapshotStatus::Available, "{sn:?}");
    assert!(sn.start_lsn.is_some() && sn.stop_lsn.is_some(), "{sn:?}");
    assert_eq!((sn.cluster_id, sn.datastore.as_deref()), (Some(src), Some("postgresql")), "{sn:?}");
    assert_eq!(env.snapshots().len(), 1, "one snapshot at the provider");
    // Rows committed after the snapshot are not in it.
    psql(&uri, &password, "insert into t select generate_series(101, 150)").unwrap();

    // A new cluster with a replica from it: the data as of the snapshot, on both nodes.
    let copy = env.create_cluster(&api, &token, from_snapshot("snapcopy", 2, snap)).await;
    let c = env.wait_status(&api, &token, copy, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(count(&env, &api, &token, copy).await, "100:100", "exactly the rows before the snapshot");
    let (_, password_copy) = env.credentials(&api, &token, copy).await;
    assert_eq!(c.nodes.len(), 2, "{c:?}");
    for n in &c.nodes {
        let conn =
            format!("host={} port=5432 dbname=postgres user=admin {}", n.address.as_deref().unwrap(), env.tls(copy));
        common::poll(Duration::from_secs(30), || match psql(&conn, &password_copy, "select count(*) from t") {
            Ok(v) if v == "100" => Ok(()),
            other => Err(format!("{}: {other:?}", n.name)),
        });
    }
    // It is a cluster of its own: it writes, and backs up into its own stanza.
    let (uri_copy, _) = env.credentials(&api, &token, copy).await;
    psql(&uri_copy, &password_copy, "insert into t values (1000)").unwrap();
    let v = herd.create_backup(copy, &BackupRequest::default()).await.unwrap();
    env.wait_succeeded(&api, &token, v.task_id, TASK_WITHIN).await;
    assert_eq!(count(&env, &api, &token, src).await, "150:150", "the source is untouched");

    // The source goes; its snapshot stays, and restores under the source's own name.
    env.delete_cluster(&api, &token, src, TASK_WITHIN).await;
    let sn = herd.snapshot(snap).await.unwrap();
    assert_eq!(sn.status, SnapshotStatus::Available, "{sn:?}");
    let again = env.create_cluster(&api, &token, from_snapshot("snapsrc", 1, snap)).await;
    env.wait_status(&api, &token, again, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(count(&env, &api, &token, again).await, "100:100");

    // Deleted at the provider; the id is gone.
    let d = herd.delete_snapshot(snap).await.unwrap();
    env.wait_succeeded(&api, &token, d.task_id, TASK_WITHIN).await;
    let p = refused(herd.snapshot(snap).await);
    assert_eq!((p.status, p.code.as_str()), (404, "not_found"), "{p:?}");
    assert!(env.snapshots().is_empty(), "{:?}", env.snapshots());
    // A deleted snapshot cannot be restored.
    let p = refused(herd.create_cluster(&from_snapshot("late", 1, snap)).await);
    assert_eq!((p.status, p.errors.first().map(|e| e.field.as_str())), (422, Some("restore.snapshot_id")), "{p:?}");

    for id in [copy, again] {
        env.delete_cluster(&api, &token, id, TASK_WITHIN).await;
    }
    assert!(env.servers().is_empty() && env.volumes().is_empty(), "{:?} {:?}", env.servers(), env.volumes());
}
