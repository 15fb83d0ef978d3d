//! The PostgreSQL manager against real PostgreSQL 15, Patroni and etcd on loopback
//! hosts of the local provider (each with its own sshd, address and root). Needs
//! root and the Debian packages postgresql-15, patroni, etcd-server and
//! openssh-server. Run with `--test-threads=1`: clusters are heavy for 2 cores.
//!
//! Each test uses its own loopback /24 (`herd_testkit::Subnet`) and a `Fixture` whose Drop deletes
//! every server of its provider (killing all their processes), pass or fail.

mod common;

use common::*;
use herd_core::status::NodeRole;
use herd_datastores::postgresql::PostgresManager;
use herd_datastores::ssh::{Session, wait_reachable};
use herd_datastores::{Backups, Lifecycle, ManagerError, SshTarget};
use herd_providers::Provider;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn one_node_cluster_serves_sql_and_survives_power_cycle() {
    one_node(Fixture::new());
}

/// Without cgroups the provider finds daemons by the environment marker they
/// inherit: PostgreSQL, which Patroni detaches, must still be found and killed.
#[test]
fn one_node_cluster_with_marker_process_tracking() {
    let fx = Fixture::with_tracking("marker");
    assert_eq!(fx.provider.process_tracking(), "marker");
    one_node(fx);
}

fn one_node(fx: Fixture) {
    let m = Arc::new(PostgresManager::default());
    let (mut c, servers) = fx.cluster("solo", 1, false);
    // Every statement is logged, except the one that carries the admin password.
    c.parameters.insert("log_statement".into(), "all".into());
    eprintln!("process tracking: {}", fx.provider.process_tracking());
    let (health, took) = bring_up(&fx, &m, &c);
    eprintln!("1-node: prepare -> converged in {took:?}");
    assert_eq!(health.leader.as_deref(), Some("solo-0"));
    assert_eq!(health.nodes.len(), 1);
    assert_eq!(health.nodes[0].role, NodeRole::Primary);
    assert_eq!(health.nodes[0].state, "running");
    assert_eq!(health.nodes[0].timeline, Some(1));

    let addr = c.members[0].address.to_string();
    admin_sql(&addr, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    admin_sql(&addr, "INSERT INTO t VALUES (1, 'one'), (2, 'it''s two')");
    assert_eq!(admin_sql(&addr, "SELECT string_agg(v, ',' ORDER BY id) FROM t"), "one,it's two");
    // The admin role got what was asked, and user parameters reached the server.
    assert_eq!(
        admin_sql(
            &addr,
            "SELECT rolcreatedb AND NOT rolcreaterole AND NOT rolsuper FROM pg_roles WHERE rolname = current_user"
        ),
        "t"
    );
    // Nothing the admin runs reaches the server's OS (on loopback hosts every cluster's
    // server user could read the others' files).
    let refused = |sql: &str| {
        let e = psql(&addr, "herd_admin", ADMIN_PW, sql).expect_err(sql);
        let denied = ["permission denied", "must be superuser", "must have admin option"];
        assert!(denied.iter().any(|d| e.contains(d)), "{sql}: {e}");
    };
    refused("GRANT pg_execute_server_program TO CURRENT_USER");
    refused("CREATE ROLE escape LOGIN");
    refused("COPY (SELECT 1) TO PROGRAM 'id'");
    refused("COPY t FROM PROGRAM 'id'");
    refused("COPY t FROM '/etc/passwd'");
    refused("COPY t TO '/tmp/herd-escape'");
    refused("SELECT lo_import('/etc/passwd')");
    refused("SELECT pg_read_file('/etc/passwd')");
    refused("ALTER SYSTEM SET work_mem = '1MB'");
    // A cluster made when the admin had CREATEROLE may hold such grants: the next
    // password change takes them back, from the admin and from roles it made.
    let su = |sql: &str| psql(&addr, "postgres", SUPERUSER_PW, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    su("CREATE ROLE made_by_admin LOGIN CREATEROLE");
    su("GRANT pg_execute_server_program, pg_read_server_files TO herd_admin, made_by_admin");
    su("ALTER ROLE herd_admin CREATEROLE");
    assert_eq!(admin_sql(&addr, "SELECT pg_has_role('pg_execute_server_program', 'MEMBER')"), "t", "the setup took");
    fx.rt.block_on(m.set_admin_password(&c)).expect("admin password again");
    refused("COPY (SELECT 1) TO PROGRAM 'id'");
    refused("GRANT pg_execute_server_program TO CURRENT_USER");
    assert_eq!(
        su("SELECT count(*) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid \
            WHERE g.rolname LIKE 'pg\\_%server\\_%'"),
        "0"
    );
    assert_eq!(su("SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolcreaterole AND NOT rolsuper"), "");
    assert_eq!(admin_sql(&addr, "SHOW work_mem"), "8MB");
    assert_eq!(admin_sql(&addr, "SHOW max_connections"), "50");
    assert_eq!(admin_sql(&addr, "SHOW data_checksums"), "on");

    // A wrong password is refused (the server really checks).
    assert!(psql(&addr, "herd_admin", "wrong", "SELECT 1").is_err());
    // Idempotent, and a changed password takes effect.
    fx.rt.block_on(m.set_admin_password(&c)).expect("admin password again");
    assert_eq!(admin_sql(&addr, "SELECT count(*) FROM t"), "2");

    // Layout: data on the volume, config and logs under the root, secrets private.
    let root = &servers[0].root_prefix;
    let vol = c.members[0].volume.as_ref().unwrap().path.clone();
    assert!(Path::new(&vol).join("15/solo/PG_VERSION").exists());
    assert!(Path::new(&vol).join("15/solo/postgresql.conf").exists());
    assert!(root.join("var/log/postgresql/postgresql-15-solo.log").exists());
    assert!(root.join("var/run/postgresql/.s.PGSQL.5432").exists());
    let conf = root.join("etc/patroni/15-solo.yml");
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), service_uid(&servers[0]));
    let pg_log = std::fs::read_to_string(root.join("var/log/postgresql/postgresql-15-solo.log")).unwrap();
    assert!(pg_log.contains("CREATE TABLE t"), "log_statement = all is in force");
    for dir in ["var/log/postgresql", "var/log/etcd", "var/log/herd"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            for secret in ["$HOME `id`", "\"pw\" $(touch", "repl: 'pw'"] {
                assert!(!text.contains(secret), "{} contains a password", entry.path().display());
            }
        }
    }
    assert!(!Path::new("/tmp/herd-pwned").exists(), "a password was run by a shell");
    assert_daemons_unprivileged(&fx, &servers[0]);

    // Power cut: every process dies; power on: the boot list brings it all back.
    fx.rt.block_on(fx.provider.stop_server(&servers[0].id, true)).expect("power off");
    assert!(daemons(&fx, &servers[0]).is_empty());
    assert!(psql(&addr, "herd_admin", ADMIN_PW, "SELECT 1").is_err());
    let started = Instant::now();
    fx.rt.block_on(fx.provider.start_server(&servers[0].id)).expect("power on");
    let after = fx.rt.block_on(m.wait_converged(&c, CONVERGE_TIMEOUT)).expect("converged after power cycle");
    eprintln!("1-node: power on -> converged in {:?}", started.elapsed());
    assert_eq!(after.leader.as_deref(), Some("solo-0"));
    let rows = eventually("admin login after restart", Duration::from_secs(30), || {
        psql(&addr, "herd_admin", ADMIN_PW, "SELECT count(*) FROM t").ok()
    });
    assert_eq!(rows, "2");
    assert_daemons_unprivileged(&fx, &servers[0]);

    stop_and_delete(&fx, &m, &c, &servers);
}

#[test]
fn three_node_synchronous_cluster_replicates_and_steps_are_idempotent() {
    let fx = Fixture::new();
    let m = Arc::new(PostgresManager::default());
    let (c, servers) = fx.cluster("trio", 3, true);
    let (health, took) = bring_up(&fx, &m, &c);
    eprintln!("3-node: prepare -> converged in {took:?}");
    assert!(health.is_converged(3));
    let (primary, replicas) = primary_and_replicas(&health, &c);
    assert_eq!(replicas.len(), 2, "{health:?}");
    assert!(health.nodes.iter().filter(|n| n.role == NodeRole::Replica).all(|n| n.state == "streaming"));
    let timeline = health.nodes.iter().find(|n| n.role == NodeRole::Primary).unwrap().timeline;
    assert!(timeline.is_some());

    let p = primary.address.to_string();
    // The superuser may connect from members (pg_rewind needs it); on loopback
    // hosts that source is 127.0.0.1.
    let su = |sql: &str| psql(&p, "postgres", SUPERUSER_PW, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(su("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"), "2");
    let names = su("SHOW synchronous_standby_names");
    assert!(!names.is_empty(), "synchronous_mode must set synchronous_standby_names");
    assert_eq!(su("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"), "1");

    admin_sql(&p, "CREATE TABLE r (id int PRIMARY KEY, v text)");
    admin_sql(&p, "INSERT INTO r VALUES (42, 'replicated')");
    for r in &replicas {
        let a = r.address.to_string();
        let got = eventually(&format!("row on {}", r.name), Duration::from_secs(15), || {
            psql(&a, "herd_admin", ADMIN_PW, "SELECT v FROM r WHERE id = 42").ok().filter(|v| v == "replicated")
        });
        assert_eq!(got, "replicated");
        assert_eq!(admin_sql(&a, "SELECT pg_is_in_recovery()"), "t");
        assert!(psql(&a, "herd_admin", ADMIN_PW, "INSERT INTO r VALUES (1, 'x')").is_err(), "replicas are read-only");
    }
    for s in &servers {
        assert_daemons_unprivileged(&fx, s);
    }

    // Every step again on the converged cluster: still converged, same leader and
    // timeline, no daemon restarted.
    let before: Vec<Vec<i32>> = servers.iter().map(|s| daemons(&fx, s).iter().map(|d| d.0).collect()).collect();
    let started = Instant::now();
    fx.rt.block_on(provision(&m, &c)).expect("provision again");
    let again = fx.rt.block_on(m.wait_converged(&c, CONVERGE_TIMEOUT)).expect("still converged");
    eprintln!("3-node: second run of every step took {:?}", started.elapsed());
    assert_eq!(again.leader, health.leader);
    let tl_again = again.nodes.iter().find(|n| n.role == NodeRole::Primary).unwrap().timeline;
    assert_eq!(tl_again, timeline);
    for (s, pids) in servers.iter().zip(&before) {
        let now: Vec<i32> = daemons(&fx, s).iter().map(|d| d.0).collect();
        for pid in pids.iter().filter(|p| ["etcd", "patroni"].contains(&comm_of(**p).as_str())) {
            assert!(now.contains(pid), "daemon {pid} was restarted on {}", s.name);
        }
    }
    assert_eq!(admin_sql(&p, "SELECT v FROM r WHERE id = 42"), "replicated");

    // health() is one shot and reports the same view.
    let h = fx.rt.block_on(m.health(&c)).expect("health");
    assert!(h.is_converged(3), "{h:?}");

    stop_and_delete(&fx, &m, &c, &servers);
}

#[test]
fn unknown_package_fails_fast_and_permanently() {
    let fx = Fixture::new();
    let m = PostgresManager::default();
    let (mut c, _servers) = fx.cluster("pkgs", 1, false);
    c.packages.push("herd-no-such-package-xyz".into());
    let started = Instant::now();
    let err = fx.rt.block_on(m.prepare(&c, &c.members[0])).unwrap_err();
    let took = started.elapsed();
    eprintln!("unknown package: failed in {took:?}: {err}");
    match &err {
        ManagerError::Permanent { code, message } => {
            assert_eq!(*code, "package_install_failed");
            assert!(message.contains("herd-no-such-package-xyz"), "{message}");
            assert!(message.contains("Unable to locate package"), "{message}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // An invalid name never reaches a shell.
    c.packages = vec!["postgresql-15; touch /tmp/herd-pwned".into()];
    let err = fx.rt.block_on(m.prepare(&c, &c.members[0])).unwrap_err();
    assert_eq!(err.code(), "package_install_failed");
    assert!(!Path::new("/tmp/herd-pwned").exists());

    // Steps out of order say so instead of hanging.
    c.packages.clear();
    let err = fx.rt.block_on(m.start_dcs(&c, &c.members[0])).unwrap_err();
    assert_eq!(err.code(), "not_configured", "{err}");
}

#[test]
fn ssh_session_checks_host_keys_and_moves_bytes_exactly() {
    let fx = Fixture::new();
    let info = fx.create_server("ssh");
    let mut target = fx.target(&info);

    // First contact without a recorded key: the key seen is returned.
    let recorded = target.host_key.take().unwrap();
    let seen = fx.rt.block_on(wait_reachable(&target, Duration::from_secs(10))).expect("reachable");
    assert_eq!(
        seen.split_whitespace().take(2).collect::<Vec<_>>(),
        recorded.split_whitespace().take(2).collect::<Vec<_>>()
    );

    // Another host key: refused at once, never retried.
    let other = herd_core::sshkey::generate_ed25519().public_key;
    let wrong = SshTarget { host_key: Some(other), ..target.clone() };
    let started = Instant::now();
    let err = fx.rt.block_on(wait_reachable(&wrong, Duration::from_secs(10))).unwrap_err();
    assert_eq!(err.code(), "host_key_mismatch", "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Nobody listening: transient, within the deadline.
    let nobody = SshTarget { address: fx.subnet.host(250).into(), ..target.clone() };
    let started = Instant::now();
    let err = fx.rt.block_on(wait_reachable(&nobody, Duration::from_secs(1))).unwrap_err();
    assert!(matches!(err, ManagerError::Transient(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    target.host_key = Some(recorded);
    let dir = info.root_prefix.join("tmp/it's a dir");
    let (dir_s, file_s) = (dir.display().to_string(), dir.join("f $(x).txt").display().to_string());
    let content: Vec<u8> = (0..=255u8).chain(b"line\n'quoted' $(id)\n".iter().copied()).collect();
    let expected = content.clone();
    let (d2, f2) = (dir_s.clone(), file_s.clone());
    std::thread::spawn(move || {
        let s = Session::connect(&target, Duration::from_secs(10)).expect("connect");
        let out = s.exec(&format!("mkdir -p {}", herd_datastores::shell::quote(&d2)), None).unwrap();
        assert!(out.success(), "{out:?}");
        s.upload(&f2, &content, 0o640, "postgres:postgres").expect("upload");
        // stdin arrives byte for byte, stdout and stderr are separate.
        let out = s.exec("cat; echo err >&2; exit 7", Some(b"from stdin\n")).unwrap();
        assert_eq!((out.exit_status, out.stdout.as_str(), out.stderr.as_str()), (7, "from stdin\n", "err\n"));
        assert_eq!(s.read_file(&f2).unwrap().as_deref(), Some(expected.as_slice()));
        assert_eq!(s.read_file(&format!("{d2}/missing")).unwrap(), None);
    })
    .join()
    .expect("ssh thread");
    let meta = std::fs::metadata(&file_s).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), user_id("postgres"));
    assert_eq!(std::fs::read(&file_s).unwrap().len(), 256 + 20);
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary upload files left: {leftovers:?}");
}

/// `args` run as `user` (with its groups), as a database login that reached the
/// OS would: (exit status, stderr).
fn run_as(user: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("setpriv")
        .args([&format!("--reuid={user}"), &format!("--regid={user}"), "--init-groups", "--"])
        .args(args)
        .current_dir("/")
        .output()
        .expect("setpriv");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn clusters_on_one_machine_run_as_users_that_cannot_read_each_other() {
    let fx = Fixture::new();
    let m = Arc::new(PostgresManager::default());
    let repo = Repo::new();
    let (mut a, a_servers) = fx.cluster("iso-a", 1, false);
    let (mut b, b_servers) = fx.cluster("iso-b", 1, false);
    a.backup = Some(repo.config(&a));
    b.backup = Some(repo.config(&b));
    for c in [&a, &b] {
        bring_up(&fx, &m, c);
        fx.rt.block_on(m.init_backups(c)).expect("init backups");
    }
    let (ua, ub) = (a.service_user().unwrap().to_owned(), b.service_user().unwrap().to_owned());
    assert_ne!(ua, ub, "each cluster has a user of its own");
    assert_daemons_unprivileged(&fx, &a_servers[0]);
    assert_daemons_unprivileged(&fx, &b_servers[0]);

    let (a_root, b_root) = (&a_servers[0].root_prefix, &b_servers[0].root_prefix);
    let path = |root: &Path, rel: &str| root.join(rel).display().to_string();
    let [a_archive, a_backup] =
        herd_datastores::repo::stanza_dirs(&repo.path().display().to_string(), &a.backup.as_ref().unwrap().stanza);
    let a_info = a_backup.join("backup.info").display().to_string();
    let (a_archive, a_backup) = (a_archive.display().to_string(), a_backup.display().to_string());
    let a_data = a.members[0].volume.as_ref().unwrap().path.clone() + "/15/iso-a";

    // Its own files: readable (the assertions below could not fail otherwise).
    for own in [path(a_root, "etc/patroni/15-iso-a.yml"), path(a_root, "etc/pgbackrest/15-iso-a.conf"), a_info.clone()]
    {
        let (ok, err) = run_as(&ua, &["cat", &own]);
        assert!(ok, "{ua} cannot read its own {own}: {err}");
    }
    assert!(run_as(&ua, &["ls", &a_data]).0, "{ua} cannot list its own data directory");

    // Another cluster's: nothing, not even a listing.
    let d = |p: &Path| p.display().to_string();
    let forbidden: Vec<(&str, String)> = vec![
        ("cat", path(a_root, "etc/patroni/15-iso-a.yml")),
        ("cat", path(a_root, "etc/pgbackrest/15-iso-a.conf")),
        ("cat", path(a_root, "etc/patroni/15-iso-a.key")),
        ("ls", d(a_root)),
        ("ls", a_data.clone()),
        ("ls", a_archive.clone()),
        ("ls", a_backup.clone()),
        ("cat", a_info.clone()),
        // The repository's and the provider's top directories are not listed.
        ("ls", d(&repo.path())),
        ("ls", d(&fx.provider.root().join("servers"))),
    ];
    for (cmd, target) in &forbidden {
        let (ok, err) = run_as(&ub, &[cmd, target]);
        assert!(!ok && err.contains("Permission denied"), "{ub} ran {cmd} {target}: ok={ok} {err}");
    }
    // And the other way round.
    let (ok, err) = run_as(&ua, &["cat", &path(b_root, "etc/patroni/15-iso-b.yml")]);
    assert!(!ok && err.contains("Permission denied"), "{ua} read iso-b's patroni.yml: {err}");

    stop_and_delete(&fx, &m, &a, &a_servers);
    stop_and_delete(&fx, &m, &b, &b_servers);
    for u in [&ua, &ub] {
        let out = std::process::Command::new("getent").args(["passwd", u]).output().unwrap();
        assert!(!out.status.success(), "{u} outlived its cluster's servers");
    }
}
