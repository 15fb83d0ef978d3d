//! Backups and restores through the real `herd` binary: pgBackRest full and
//! incremental backups of a running cluster, point-in-time and latest restores into new
//! clusters, a restore from a deleted cluster's backups, expiry, and the errors.

mod common;

use common::{Env, as_user, cluster, psql, refused};
use herd_client::Client;
use herd_client::types::{
    AccessStatus, BackupDto, BackupRequest, BackupStatus, BackupType, ClusterStatus, CreateCluster, CreateDatabase,
    CreateUser, DbPrivilege, RestoreRequest,
};
use herd_testkit::eventually_async;
use secrecy::SecretString;
use std::time::Duration;
use uuid::Uuid;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const TASK_WITHIN: Duration = Duration::from_secs(300);

async fn backup(env: &Env, api: &str, token: &str, id: Uuid, kind: BackupType) -> BackupDto {
    let herd = env.client(api, token);
    // A sync_access task applying managed users may still hold the cluster.
    let v = eventually_async("a backup accepted", Duration::from_secs(60), || async {
        match herd.create_backup(id, &BackupRequest { backup_type: Some(kind) }).await {
            Ok(v) => Ok(v),
            Err(e) if e.to_string().contains("cluster_busy") => Err(e.to_string()),
            Err(e) => panic!("backup refused: {e}"),
        }
    })
    .await;
    assert_eq!(v.backup.status, BackupStatus::New, "{v:?}");
    env.wait_succeeded(api, token, v.task_id, TASK_WITHIN).await;
    let b = herd.backup(v.backup.id).await.unwrap();
    assert_eq!(b.status, BackupStatus::Completed, "{b:?}");
    assert_eq!(b.backup_type, kind);
    assert_eq!(b.repository, "posix", "{b:?}");
    assert!(b.encrypted, "{b:?}");
    for (f, set) in [
        ("label", b.label.is_some()),
        ("wal_start", b.wal_start.is_some()),
        ("wal_stop", b.wal_stop.is_some()),
        ("started_at", b.started_at.is_some()),
        ("finished_at", b.finished_at.is_some()),
    ] {
        assert!(set, "{f}: {b:?}");
    }
    assert!(b.size_bytes.unwrap_or(0) > 0 && b.repo_size_bytes.unwrap_or(0) > 0, "{b:?}");
    b
}

async fn restore(env: &Env, api: &str, token: &str, name: &str, restore: RestoreRequest) -> Uuid {
    env.create_cluster(api, token, CreateCluster { restore: Some(restore), ..cluster(name, 1) }).await
}

/// Waits until the cluster's managed user and database are applied.
async fn access_ready(herd: &Client, id: Uuid, user: &str, db: &str) {
    eventually_async(&format!("{user} and {db} applied"), Duration::from_secs(120), || async {
        let u = herd.user(id, user).await.map_err(|e| e.to_string())?;
        let d = herd.database(id, db).await.map_err(|e| e.to_string())?;
        assert!(u.status != AccessStatus::Error && d.status != AccessStatus::Error, "{u:?} {d:?}");
        if u.status == AccessStatus::Ready && d.status == AccessStatus::Ready {
            Ok(())
        } else {
            Err(format!("{u:?} {d:?}"))
        }
    })
    .await;
}

async fn count(env: &Env, api: &str, token: &str, id: Uuid) -> String {
    let (uri, password) = env.credentials(api, token, id).await;
    psql(&uri, &password, "select count(*) || ':' || max(id) from t").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_point_in_time_restore_and_expiry() {
    let env = Env::new();
    let (dev, api, token) = env.dev(&[], "dev.log");
    let herd = env.client(&api, &token);
    let src = env.create_cluster(&api, &token, cluster("src", 1)).await;
    env.wait_status(&api, &token, src, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let (uri, password) = env.credentials(&api, &token, src).await;
    let w = herd.recovery_window(src).await.unwrap();
    assert_eq!((w.earliest, w.latest), (None, None), "{w:?}");

    // A managed database and user, which restored clusters take over.
    const APP_PW: &str = "app's password 1";
    herd.create_database(src, &CreateDatabase { name: "appdb".into(), ..Default::default() }).await.unwrap();
    let app = CreateUser {
        name: "app".into(),
        password: Some(SecretString::from(APP_PW)),
        grants: [("appdb".to_owned(), DbPrivilege::ReadWrite)].into(),
        ..Default::default()
    };
    herd.create_user(src, &app).await.unwrap();
    access_ready(&herd, src, "app", "appdb").await;

    psql(&uri, &password, "create table t (id int primary key); insert into t select generate_series(1, 100)").unwrap();
    let full = backup(&env, &api, &token, src, BackupType::Full).await;
    psql(&uri, &password, "insert into t select generate_series(101, 200)").unwrap();
    // T: after row 200 committed, before row 201 is.
    let t =
        psql(&uri, &password, "select to_char(now() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')").unwrap();
    psql(&uri, &password, "select pg_sleep(0.2); insert into t select generate_series(201, 300)").unwrap();
    // The incremental backup ends with a WAL switch and waits for that WAL to be
    // archived: rows 201–300 are restorable from then on.
    let incr = backup(&env, &api, &token, src, BackupType::Incr).await;
    assert!(incr.repo_size_bytes < full.repo_size_bytes, "an incremental adds less than a full: {incr:?} vs {full:?}");
    let w = herd.recovery_window(src).await.unwrap();
    let (earliest, latest) = (w.earliest.unwrap(), w.latest.unwrap());
    let t_at = chrono::DateTime::parse_from_rfc3339(&t).unwrap().with_timezone(&chrono::Utc);
    assert!(earliest <= t_at && t_at <= latest, "{w:?} vs T={t}");

    // Refused: a target before the window; an unknown source.
    let before = full.finished_at.unwrap() - chrono::Duration::hours(1);
    let early = RestoreRequest { source_cluster_id: Some(src), target_time: Some(before), ..Default::default() };
    let p = refused(herd.create_cluster(&CreateCluster { restore: Some(early), ..cluster("early", 1) }).await);
    assert_eq!((p.status, p.errors.first().map(|e| e.field.as_str())), (422, Some("restore.target_time")), "{p:?}");
    let nowhere = RestoreRequest { source_cluster_id: Some(Uuid::new_v4()), ..Default::default() };
    let p = refused(herd.create_cluster(&CreateCluster { restore: Some(nowhere), ..cluster("nowhere", 1) }).await);
    assert_eq!(
        (p.status, p.errors.first().map(|e| e.field.as_str())),
        (422, Some("restore.source_cluster_id")),
        "{p:?}"
    );

    // Point in time and latest, built side by side.
    let at_t = RestoreRequest { source_cluster_id: Some(src), target_time: Some(t_at), ..Default::default() };
    let pitr = restore(&env, &api, &token, "pitr", at_t).await;
    let latest_id =
        restore(&env, &api, &token, "latest", RestoreRequest { source_cluster_id: Some(src), ..Default::default() })
            .await;
    // A backup of a cluster that is not active yet is refused.
    let p = refused(herd.create_backup(pitr, &BackupRequest::default()).await);
    assert_eq!((p.status, p.code.as_str()), (409, "cluster_not_ready"), "{p:?}");
    env.wait_status(&api, &token, pitr, ClusterStatus::Active, ACTIVE_WITHIN).await;
    env.wait_status(&api, &token, latest_id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(count(&env, &api, &token, pitr).await, "200:200", "exactly the rows committed before T");
    assert_eq!(count(&env, &api, &token, latest_id).await, "300:300", "every archived row");
    // The source's managed database and user, applied in the restored cluster.
    let names = |v: Vec<String>| v.join(",");
    let users = herd.users(latest_id).await.unwrap();
    assert_eq!(names(users.iter().map(|u| u.name.clone()).collect()), "app", "{users:?}");
    assert_eq!(users[0].grants.get("appdb"), Some(&DbPrivilege::ReadWrite), "{users:?}");
    let dbs = herd.databases(latest_id).await.unwrap();
    assert_eq!(names(dbs.iter().map(|d| d.name.clone()).collect()), "appdb", "{dbs:?}");
    access_ready(&herd, latest_id, "app", "appdb").await;
    let (latest_uri, _) = env.credentials(&api, &token, latest_id).await;
    assert_eq!(psql(&as_user(&latest_uri, "app", "appdb"), APP_PW, "select current_user").unwrap(), "app");
    // A restored cluster takes backups of its own.
    backup(&env, &api, &token, pitr, BackupType::Full).await;

    // The source goes; its backups stay, restorable, until expired.
    env.delete_cluster(&api, &token, src, TASK_WITHIN).await;
    let list = herd.backups(Some(src)).await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let from_full = RestoreRequest { source_cluster_id: Some(src), backup_id: Some(full.id), ..Default::default() };
    let after = restore(&env, &api, &token, "after", from_full).await;
    env.wait_status(&api, &token, after, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let n = count(&env, &api, &token, after).await;
    assert_eq!(n, "300:300", "restoring the full backup replays every archived WAL");

    let repo = env.state().join("backups");
    // Encrypted at rest: every file pgBackRest wrote for the source's stanza (info
    // files, manifests, bundles, archived WAL) is ciphertext in OpenSSL's salted
    // format, readable only with the stanza's own passphrase.
    let stanza = format!("herd-{}", src.simple());
    let mut files = Vec::new();
    for top in ["backup", "archive"] {
        let out = std::process::Command::new("find").arg(repo.join(top).join(&stanza)).args(["-type", "f"]).output();
        files.extend(String::from_utf8_lossy(&out.unwrap().stdout).lines().map(std::path::PathBuf::from));
    }
    assert!(files.len() >= 6, "{files:?}");
    for f in &files {
        let head = std::fs::read(f).unwrap();
        assert!(head.starts_with(b"Salted__"), "{} is not encrypted", f.display());
    }
    let in_repo = |label: &str| {
        let out = std::process::Command::new("find").arg(&repo).args(["-name", label]).output().unwrap();
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    };

    // The operator points new clusters at S3 (an endpoint where nothing listens) and
    // restarts Herd: existing clusters keep the repository their WAL is archived into,
    // so their backups still work, and land there.
    drop(dev);
    let s3_elsewhere = [
        ("HERD_BACKUPS__REPOSITORY", "s3"),
        ("HERD_BACKUPS__S3__BUCKET", "elsewhere"),
        ("HERD_BACKUPS__S3__ENDPOINT", "127.0.0.1:9"),
        ("HERD_BACKUPS__S3__ACCESS_KEY_ID", "unused"),
        ("HERD_BACKUPS__S3__SECRET_ACCESS_KEY", "unused-secret"),
    ];
    let (_dev, api, token) = env.dev(&s3_elsewhere, "dev-s3-settings.log");
    let herd = env.client(&api, &token);
    let shown = env.wait_status(&api, &token, pitr, ClusterStatus::Active, ACTIVE_WITHIN).await;
    assert_eq!(shown.backup_repository.as_deref(), Some("posix"), "{shown:?}");
    let kept = backup(&env, &api, &token, pitr, BackupType::Incr).await;
    let kept_label = kept.label.as_deref().unwrap();
    assert!(in_repo(kept_label), "backup {kept_label} is in {}", repo.display());
    // What reads the repository from Herd's side finds it there too.
    let w = herd.recovery_window(pitr).await.unwrap();
    assert!(w.latest.is_some() && w.latest >= kept.finished_at, "{w:?} vs {kept:?}");
    let v = herd.expire_backup(kept.id).await.unwrap();
    env.wait_succeeded(&api, &token, v.task_id, TASK_WITHIN).await;
    assert!(!in_repo(kept_label), "expired backup {kept_label} is still in the repository");

    // Expire the incremental: gone from the repository, shown as expired.
    let label = incr.label.as_deref().unwrap();
    assert!(in_repo(label), "backup {label} is in {}", repo.display());
    let v = herd.expire_backup(incr.id).await.unwrap();
    env.wait_succeeded(&api, &token, v.task_id, TASK_WITHIN).await;
    let b = herd.backup(incr.id).await.unwrap();
    assert_eq!(b.status, BackupStatus::Expired, "{b:?}");
    assert!(!in_repo(label), "expired backup {label} is still in the repository");
    // Expiring it again answers with the task that expired it.
    let again = herd.expire_backup(incr.id).await.unwrap();
    assert_eq!(again.task_id, v.task_id, "{again:?}");

    for id in [pitr, latest_id, after] {
        env.delete_cluster(&api, &token, id, TASK_WITHIN).await;
    }
    assert!(env.servers().is_empty());
}
