//! Managed databases and users through the real `herd` binary and psql: privileges
//! per database, connection isolation between databases, password rotation, a drop
//! refused while sessions are connected and forced, drift repaired, and the API's
//! refusals.

mod common;

use common::{Env, as_user, cluster, psql, refused};
use herd_client::Client;
use herd_client::types::{
    AccessStatus, ClusterStatus, CreateDatabase, CreateUser, DbPrivilege, TaskStatus, UpdateUser,
};
use herd_testkit::eventually_async;
use secrecy::SecretString;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

const ACTIVE_WITHIN: Duration = Duration::from_secs(300);
const APPLIED_WITHIN: Duration = Duration::from_secs(120);

async fn user_ready(herd: &Client, id: Uuid, name: &str) {
    eventually_async(&format!("user {name} ready"), APPLIED_WITHIN, || async {
        let u = herd.user(id, name).await.map_err(|e| e.to_string())?;
        match u.status {
            AccessStatus::Ready => Ok(()),
            AccessStatus::Error => panic!("user {name} failed: {u:?}"),
            _ => Err(format!("{u:?}")),
        }
    })
    .await;
}

async fn database_ready(herd: &Client, id: Uuid, name: &str) {
    eventually_async(&format!("database {name} ready"), APPLIED_WITHIN, || async {
        let d = herd.database(id, name).await.map_err(|e| e.to_string())?;
        match d.status {
            AccessStatus::Ready => Ok(()),
            AccessStatus::Error => panic!("database {name} failed: {d:?}"),
            _ => Err(format!("{d:?}")),
        }
    })
    .await;
}

fn user(name: &str, password: Option<&str>, grants: &[(&str, DbPrivilege)]) -> CreateUser {
    CreateUser {
        name: name.into(),
        password: password.map(|p| SecretString::from(p.to_owned())),
        grants: grants.iter().map(|(d, p)| ((*d).to_owned(), *p)).collect(),
        ..Default::default()
    }
}

fn denied(r: Result<String, String>, what: &str) -> String {
    match r {
        Err(e) => e,
        Ok(out) => panic!("{what} should have been refused; it returned {out:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_databases_and_users() {
    let env = Env::new();
    let (_dev, api, token) = env.dev(&[], "dev.log");
    let herd = env.client(&api, &token);
    let id = env.create_cluster(&api, &token, cluster("acc", 1)).await;
    env.wait_status(&api, &token, id, ClusterStatus::Active, ACTIVE_WITHIN).await;
    let (uri, admin_pw) = env.credentials(&api, &token, id).await;

    // --- what the API refuses, before anything reaches the server ---
    for (req, field) in [
        (CreateDatabase { name: "postgres".into(), ..Default::default() }, "name"),
        (CreateDatabase { name: "Shop".into(), ..Default::default() }, "name"),
        (CreateDatabase { name: "x".into(), encoding: Some("KLINGON".into()), ..Default::default() }, "encoding"),
        (CreateDatabase { name: "x".into(), locale: Some("C'; DROP".into()), ..Default::default() }, "locale"),
    ] {
        let p = refused(herd.create_database(id, &req).await);
        assert_eq!((p.status, p.code.as_str()), (422, "validation_failed"), "{req:?}: {p:?}");
        assert!(p.errors.iter().any(|e| e.field == field), "{req:?}: {p:?}");
    }
    let p = refused(
        herd.create_database(
            id,
            &CreateDatabase { name: "x".into(), owner: Some("nobody".into()), ..Default::default() },
        )
        .await,
    );
    assert_eq!(p.status, 422, "{p:?}");
    for (req, why) in [
        (user("replicator", None, &[]), "reserved"),
        (user("admin", None, &[]), "the admin role"),
        (user("pg_x", None, &[]), "reserved"),
        (user("short", Some("too-short"), &[]), "password"),
        (user("app", None, &[("nowhere", DbPrivilege::ReadOnly)]), "no managed database"),
        (CreateUser { roles: vec!["pg_execute_server_program".into()], ..user("app", None, &[]) }, "roles"),
        (CreateUser { connection_limit: Some(-5), ..user("app", None, &[]) }, "connection_limit"),
    ] {
        let p = refused(herd.create_user(id, &req).await);
        assert_eq!(p.status, 422, "{why}: {p:?}");
    }
    assert!(herd.users(id).await.unwrap().is_empty() && herd.databases(id).await.unwrap().is_empty());

    // --- databases and users, created in quick succession ---
    let d = herd.create_database(id, &CreateDatabase { name: "shop".into(), ..Default::default() }).await.unwrap();
    assert_eq!(d.database.status, AccessStatus::Pending);
    assert_eq!((d.database.encoding.as_str(), d.database.locale.as_deref()), ("UTF8", Some("C.UTF-8")));
    assert!(d.task_id.is_some(), "a free cluster gets a sync at once: {d:?}");
    let p = refused(herd.create_database(id, &CreateDatabase { name: "shop".into(), ..Default::default() }).await);
    assert_eq!((p.status, p.code.as_str()), (409, "database_exists"), "{p:?}");
    let reader = herd.create_user(id, &user("reader", None, &[("shop", DbPrivilege::ReadOnly)])).await.unwrap();
    let reader_pw = reader.password.clone().expect("a generated password is shown once");
    assert!(reader_pw.len() >= 20, "{reader_pw}");
    let writer_pw = "writer-password-1";
    let writer = herd
        .create_user(
            id,
            &CreateUser {
                connection_limit: Some(3),
                ..user("writer", Some(writer_pw), &[("shop", DbPrivilege::ReadWrite)])
            },
        )
        .await
        .unwrap();
    assert!(writer.password.is_none(), "a given password is not echoed: {writer:?}");
    let crm_pw = "crm-owner-password";
    herd.create_user(id, &user("crm_owner", Some(crm_pw), &[])).await.unwrap();
    herd.create_database(
        id,
        &CreateDatabase { name: "crm".into(), owner: Some("crm_owner".into()), ..Default::default() },
    )
    .await
    .unwrap();
    for db in ["shop", "crm"] {
        database_ready(&herd, id, db).await;
    }
    for u in ["reader", "writer", "crm_owner"] {
        user_ready(&herd, id, u).await;
    }
    let users = herd.users(id).await.unwrap();
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["crm_owner", "reader", "writer"]);
    assert_eq!(users[0].grants, BTreeMap::from([("crm".to_owned(), DbPrivilege::Owner)]), "{users:?}");
    assert_eq!(users[2].connection_limit, Some(3));

    // --- privileges through psql ---
    let admin_shop = as_user(&uri, "admin", "shop");
    psql(&admin_shop, &admin_pw, "create table t (id int primary key, v text); insert into t values (1, 'a')").unwrap();
    let w = as_user(&uri, "writer", "shop");
    assert_eq!(
        psql(&w, writer_pw, "with i as (insert into t values (2, 'b') returning id) select id from i").unwrap(),
        "2"
    );
    let e = denied(psql(&w, writer_pw, "create table mine (x int)"), "writer creating a table");
    assert!(e.contains("permission denied for schema public"), "{e}");
    let r = as_user(&uri, "reader", "shop");
    assert_eq!(psql(&r, &reader_pw, "select count(*) from t").unwrap(), "2");
    let e = denied(psql(&r, &reader_pw, "insert into t values (3, 'c')"), "reader writing");
    assert!(e.contains("permission denied for table t"), "{e}");
    // A table the owner makes later is readable too (default privileges).
    psql(&admin_shop, &admin_pw, "create table later (x int); insert into later values (7)").unwrap();
    assert_eq!(psql(&r, &reader_pw, "select x from later").unwrap(), "7");
    // A user of one database cannot reach another.
    let e = denied(psql(&as_user(&uri, "reader", "crm"), &reader_pw, "select 1"), "reader in crm");
    assert!(e.contains("permission denied for database \"crm\""), "{e}");
    let owner = as_user(&uri, "crm_owner", "crm");
    psql(&owner, crm_pw, "create table leads (id int)").unwrap();
    let e = denied(psql(&as_user(&uri, "crm_owner", "shop"), crm_pw, "select 1"), "crm_owner in shop");
    assert!(e.contains("permission denied for database \"shop\""), "{e}");
    // Nothing reaches the OS: no program, no server file, no role making.
    for sql in [
        "copy (select 1) to program 'id'",
        "select pg_read_file('/etc/passwd')",
        "create role sneaky",
        "alter system set work_mem = '1GB'",
    ] {
        denied(psql(&owner, crm_pw, sql), sql);
    }

    // --- privileges changed: the reader becomes a writer, loses nothing else ---
    let up = herd
        .update_user(
            id,
            "reader",
            &UpdateUser {
                grants: Some(BTreeMap::from([("shop".into(), DbPrivilege::ReadWrite)])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(up.password.is_none());
    user_ready(&herd, id, "reader").await;
    assert_eq!(
        psql(&r, &reader_pw, "with i as (insert into t values (3, 'c') returning id) select id from i").unwrap(),
        "3"
    );

    // --- rotation: the old password stops working ---
    let rot =
        herd.update_user(id, "reader", &UpdateUser { rotate_password: true, ..Default::default() }).await.unwrap();
    let new_pw = rot.password.clone().expect("a rotated password is shown once");
    assert_ne!(new_pw, reader_pw);
    user_ready(&herd, id, "reader").await;
    let e = denied(psql(&r, &reader_pw, "select 1"), "the old password");
    assert!(e.contains("password authentication failed"), "{e}");
    assert_eq!(psql(&r, &new_pw, "select current_user").unwrap(), "reader");
    assert!(herd.user(id, "reader").await.unwrap().password_set_at > users[1].password_set_at);

    // --- a user that owns a database is not dropped ---
    let p = refused(herd.delete_user(id, "crm_owner").await);
    assert_eq!((p.status, p.code.as_str()), (409, "user_owns_database"), "{p:?}");

    // --- drift: the admin drops a database it owns behind Herd's back; the next sync
    // makes it again ---
    herd.create_database(id, &CreateDatabase { name: "scratch".into(), ..Default::default() }).await.unwrap();
    database_ready(&herd, id, "scratch").await;
    psql(&as_user(&uri, "admin", "postgres"), &admin_pw, "drop database scratch").unwrap();
    let t = herd
        .update_user(id, "writer", &UpdateUser { connection_limit: Some(-1), ..Default::default() })
        .await
        .unwrap()
        .task_id
        .expect("a sync");
    env.wait_succeeded(&api, &token, t, APPLIED_WITHIN).await;
    assert_eq!(psql(&as_user(&uri, "admin", "scratch"), &admin_pw, "select current_database()").unwrap(), "scratch");
    assert_eq!(herd.user(id, "writer").await.unwrap().connection_limit, None);

    // --- a database in use is not dropped unless forced ---
    let mut session = Command::new("psql")
        .args([&w, "-c", "select pg_sleep(120)"])
        .env("PGPASSWORD", writer_pw)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually_async("the writer's session connected", Duration::from_secs(20), || async {
        let n = psql(&admin_shop, &admin_pw, "select count(*) from pg_stat_activity where usename = 'writer'")?;
        if n == "1" { Ok(()) } else { Err(n) }
    })
    .await;
    let del = herd.delete_database(id, "shop", false).await.unwrap();
    let t = env.wait_task(&api, &token, del.task_id.expect("a sync"), APPLIED_WITHIN).await;
    assert_eq!(t.status, TaskStatus::Failed, "{t:?}");
    assert_eq!(t.error.as_ref().map(|e| e.code.as_str()), Some("access_refused"), "{t:?}");
    let d = herd.database(id, "shop").await.unwrap();
    assert_eq!(d.status, AccessStatus::Error, "{d:?}");
    assert!(d.error.as_deref().unwrap_or_default().contains("force=true"), "{d:?}");
    assert!(session.try_wait().unwrap().is_none(), "the session was not ended");
    assert_eq!(psql(&admin_shop, &admin_pw, "select count(*) from t").unwrap(), "3");
    // Forced: the session ends, the database goes, the grants with it.
    let del = herd.delete_database(id, "shop", true).await.unwrap();
    env.wait_succeeded(&api, &token, del.task_id.expect("a sync"), APPLIED_WITHIN).await;
    let p = refused(herd.database(id, "shop").await);
    assert_eq!(p.status, 404, "{p:?}");
    let code = tokio::task::spawn_blocking(move || session.wait().unwrap()).await.unwrap();
    assert!(!code.success(), "the forced drop ended the session");
    assert!(herd.user(id, "writer").await.unwrap().grants.is_empty());
    denied(psql(&w, writer_pw, "select 1"), "connecting to a dropped database");

    // --- users go: the sessions end and the role no longer logs in ---
    let t = herd.delete_user(id, "reader").await.unwrap().task_id.expect("a sync");
    env.wait_succeeded(&api, &token, t, APPLIED_WITHIN).await;
    assert_eq!(refused(herd.user(id, "reader").await).status, 404);
    let e = denied(psql(&as_user(&uri, "reader", "postgres"), &new_pw, "select 1"), "a dropped user");
    assert!(e.contains("password authentication failed"), "{e}");
    assert_eq!(
        psql(&as_user(&uri, "admin", "postgres"), &admin_pw, "select count(*) from pg_roles where rolname = 'reader'")
            .unwrap(),
        "0"
    );

    // --- the same through the CLI, as an operator types it ---
    let cli = |args: &[&str]| {
        let out = common::herd_cmd()
            .args(args)
            .env("HERD_URL", &api)
            .env("HERD_TOKEN", &token)
            .env("HERD_CLI_CONFIG", env.state().join("cli.toml"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "herd {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    cli(&["database", "create", "acc", "books", "--wait"]);
    let made = cli(&["user", "create", "acc", "librarian", "--grant", "books=read_write", "-o", "json"]);
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let lib_pw = made["password"].as_str().expect("the generated password, once").to_owned();
    user_ready(&herd, id, "librarian").await;
    let listed = cli(&["user", "list", "acc"]);
    assert!(listed.contains("librarian") && listed.contains("books=read_write"), "{listed}");
    let lib = as_user(&uri, "librarian", "books");
    psql(&lib, &lib_pw, "create temp table x (i int)").unwrap();
    assert_eq!(psql(&lib, &lib_pw, "select current_database()").unwrap(), "books");
    env.delete_cluster(&api, &token, id, Duration::from_secs(120)).await;
}
