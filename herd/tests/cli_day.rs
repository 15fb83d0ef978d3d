//! An operator's day with the `herd` CLI, through the real binary against `herd dev`:
//! login, a 3-node cluster with --wait, status, switchover, backup, restore into a new
//! cluster, delete; its tables, its JSON, its exit codes and its error lines.

mod common;

use common::{Env, herd_cmd, psql};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Exit codes the CLI documents.
const USAGE: i32 = 2;
const API: i32 = 3;
const SERVER: i32 = 4;
const TASK: i32 = 5;
const TIMEOUT: i32 = 6;

struct Cli<'a> {
    env: &'a Env,
    config: std::path::PathBuf,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Cli<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = herd_cmd();
        c.args(args).env("HERD_CLI_CONFIG", &self.config).current_dir(self.env.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        self.cmd(args).output().unwrap().into()
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn an_operators_day_through_the_cli() {
    let env = Env::new();
    let (_dev, url, token) = env.dev(&[], "dev.log");
    let cli = Cli { env: &env, config: env.dir.path().join("cli/config.toml") };

    // No API configured yet: a usage error that says what to do.
    let r = cli.run(&["cluster", "list"]);
    assert_eq!(r.code, USAGE, "{}", r.stderr);
    assert!(r.stderr.contains("herd login"), "{}", r.stderr);

    // Login from the token file; the file is the owner's alone and the token is never printed.
    let token_file = env.state().join("admin.token");
    let r = cli.run(&["login", "--url", &url, "--token-file", token_file.to_str().unwrap()]).ok();
    assert!(!r.stdout.contains(&token) && !r.stderr.contains(&token));
    assert_eq!(mode(&cli.config), 0o600);
    assert_eq!(mode(cli.config.parent().unwrap()), 0o700);
    let r = cli.run(&["context", "list", "-o", "json"]).ok();
    assert_eq!(r.json()[0]["name"], "default");
    assert!(!r.stdout.contains(&token), "context list shows no token");
    // A wrong token is refused at login, and nothing is saved.
    let bad = env.dir.path().join("bad.token");
    std::fs::write(&bad, "herd_wrong").unwrap();
    let r = cli.run(&["login", "--url", &url, "--token-file", bad.to_str().unwrap(), "--name", "bad"]);
    assert_eq!(r.code, API, "{}", r.stderr);
    assert!(r.stderr.starts_with("error: unauthorized:"), "{}", r.stderr);
    assert!(!std::fs::read_to_string(&cli.config).unwrap().contains("herd_wrong"));

    // The catalogue, as a table.
    let r = cli.run(&["datastore", "list"]).ok();
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(r.stdout.lines().next().unwrap()), ["DATASTORE", "VERSION", "ACTIVE", "PACKAGES"]);
    assert!(r.stdout.lines().any(|l| words(l)[..3] == ["postgresql", "15", "yes"]), "{}", r.stdout);
    // Columns line up: every row's second column starts where VERSION does.
    let col = r.stdout.lines().next().unwrap().find("VERSION").unwrap();
    assert!(r.stdout.lines().skip(1).all(|l| l[col..].starts_with("15")), "{}", r.stdout);

    // Quotas: the table, an operator's limit that refuses a key (exit 3, the limit
    // named), and back to the default.
    let r = cli.run(&["project", "quota", "admin"]).ok();
    assert_eq!(words(r.stdout.lines().next().unwrap()), ["QUOTA", "USED", "LIMIT", "SET", "BY"]);
    assert!(r.stdout.lines().any(|l| words(l) == ["keys", "0", "50", "default"]), "{}", r.stdout);
    let q = cli.run(&["project", "quota", "admin", "--set", "keys=0", "--set", "clusters=7", "-o", "json"]).ok().json();
    assert_eq!(q["keys"], serde_json::json!({"limit": 0, "used": 0, "overridden": true}), "{q}");
    let r = cli.run(&["key", "create", "laptop"]);
    assert_eq!(r.code, API, "{}", r.stderr);
    assert!(r.stderr.contains("error: quota_exceeded: the project's keys quota is 0"), "{}", r.stderr);
    // --reset keeps the other override.
    let q = cli.run(&["project", "quota", "admin", "--reset", "keys", "-o", "json"]).ok().json();
    assert_eq!((q["keys"]["overridden"].as_bool(), q["clusters"]["limit"].as_u64()), (Some(false), Some(7)), "{q}");
    let r = cli.run(&["project", "quota", "admin", "--set", "pods=3"]);
    assert_eq!(r.code, USAGE, "{}", r.stderr);
    assert!(r.stderr.contains("no quota \"pods\""), "{}", r.stderr);

    // Bad input: one readable line per field, exit 3, nothing created.
    let r = cli.run(&["cluster", "create", "Bad_Name", "--nodes", "99"]);
    assert_eq!(r.code, API);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(lines.contains(&"error: validation_failed: nodes: must be from 1 to 9"), "{}", r.stderr);
    assert!(lines.iter().any(|l| l.starts_with("error: validation_failed: name: ")), "{}", r.stderr);
    // Usage errors are clap's (exit 2): --timeout needs --wait.
    assert_eq!(cli.run(&["cluster", "create", "x", "--timeout", "5s"]).code, USAGE);
    // A server nobody answers at: exit 4.
    let r = cli.cmd(&["cluster", "list"]).env("HERD_URL", "http://127.0.0.1:9").output().unwrap();
    let r = Run::from(r);
    assert_eq!(r.code, SERVER, "{}", r.stderr);
    assert!(r.stderr.contains("cannot reach Herd at http://127.0.0.1:9"), "{}", r.stderr);

    // A 3-node cluster, waited for: the progress goes to stderr (plain lines, no TTY),
    // the cluster to stdout.
    let r = cli.run(&["cluster", "create", "day", "--nodes", "3", "--wait", "--timeout", "5m"]).ok();
    assert!(r.stderr.contains("create day: succeeded in"), "{}", r.stderr);
    assert!(r.stderr.contains("start_patroni"), "the steps are shown: {}", r.stderr);
    assert!(!r.stdout.contains('\x1b') && !r.stderr.contains('\x1b'), "no colours without a terminal");
    assert!(
        r.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["status:", "active"]),
        "{}",
        r.stdout
    );
    let node_rows: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("day-")).collect();
    assert_eq!(node_rows.len(), 3, "{}", r.stdout);

    // status: the one-screen view, as a table and as JSON.
    let r = cli.run(&["cluster", "status", "day"]).ok();
    let header = r.stdout.lines().find(|l| l.starts_with("NODE")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NODE", "ROLE", "STATE", "STATUS", "TIMELINE", "LAG", "MB", "SYNC", "ADDRESS", "LAST", "SEEN"]
    );
    assert!(r.stdout.contains("Recent events:") && r.stdout.contains("cluster is active"), "{}", r.stdout);
    let status = cli.run(&["cluster", "status", "day", "-o", "json"]).ok().json();
    assert_eq!(status["cluster"]["status"], "active");
    let nodes = status["cluster"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let primary =
        nodes.iter().find(|n| n["role"] == "primary").expect("a primary")["name"].as_str().unwrap().to_owned();
    let replica =
        nodes.iter().find(|n| n["role"] == "replica").expect("a replica")["name"].as_str().unwrap().to_owned();
    // The table's primary row says so too.
    let primary_row = r.stdout.lines().find(|l| l.starts_with(&format!("{primary} "))).unwrap();
    assert_eq!(primary_row.split_whitespace().nth(1), Some("primary"), "{primary_row}");
    // YAML is the same document.
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&cli.run(&["cluster", "show", "day", "-o", "yaml"]).ok().stdout).unwrap();
    assert_eq!(yaml["name"].as_str(), Some("day"));

    // Some data, through the credentials the CLI prints.
    let cred = cli.run(&["cluster", "credentials", "day", "-o", "json"]).ok().json();
    let (uri, password) = (cred["uri"].as_str().unwrap().to_owned(), cred["password"].as_str().unwrap().to_owned());
    psql(&uri, &password, "CREATE TABLE day(v int); INSERT INTO day SELECT generate_series(1, 100)").unwrap();
    // `cluster connect` is psql on the primary, the password in its environment.
    let mut connect = cli.cmd(&["cluster", "connect", "day", "--", "-tAc", "SELECT count(*) FROM day"]);
    let r = Run::from(connect.env_remove("PGPASSWORD").output().unwrap()).ok();
    assert_eq!(r.stdout.trim(), "100", "{}", r.stderr);

    // A switchover to a chosen replica.
    let r = cli.run(&["cluster", "switchover", "day", "--to", &replica, "--wait"]).ok();
    assert!(r.stderr.contains(&format!("day: primary is now {replica}")), "{}", r.stderr);
    let show = cli.run(&["cluster", "show", "day", "-o", "json"]).ok().json();
    let now_primary = show["nodes"].as_array().unwrap().iter().find(|n| n["role"] == "primary").unwrap();
    assert_eq!(now_primary["name"], replica.as_str());
    // A node that does not exist is a usage error naming the nodes.
    let r = cli.run(&["cluster", "switchover", "day", "--to", "day-9"]);
    assert_eq!(r.code, USAGE);
    assert!(r.stderr.contains("has no node \"day-9\""), "{}", r.stderr);

    // A backup, waited for, as JSON.
    let b = cli.run(&["backup", "create", "day", "--wait", "-o", "json"]).ok().json();
    assert_eq!((b["status"].as_str(), b["type"].as_str()), (Some("completed"), Some("full")), "{b}");
    let r = cli.run(&["backup", "list", "--cluster", "day"]).ok();
    assert!(
        r.stdout.lines().nth(1).is_some_and(|l| l.contains("completed") && l.contains(b["label"].as_str().unwrap()))
    );

    // Restore into a new cluster: the same rows.
    let c = cli.run(&["restore", "day-copy", "--from", "day", "--nodes", "1", "--wait", "-o", "json"]).ok().json();
    assert_eq!(c["status"], "active", "{c}");
    let cred = cli.run(&["cluster", "credentials", "day-copy", "-o", "json"]).ok().json();
    assert_eq!(
        psql(cred["uri"].as_str().unwrap(), cred["password"].as_str().unwrap(), "SELECT count(*) FROM day").unwrap(),
        "100"
    );

    // A wait that runs out exits 6, and says how to go on following.
    let r = cli.run(&["cluster", "restart", "day", "--wait", "--timeout", "0s"]);
    assert_eq!(r.code, TIMEOUT, "{}", r.stderr);
    assert!(r.stderr.contains("herd task watch"), "{}", r.stderr);
    let task =
        cli.run(&["cluster", "show", "day", "-o", "json"]).ok().json()["task"]["id"].as_str().unwrap().to_owned();
    let t = cli.run(&["task", "watch", &task, "-o", "json"]).ok().json();
    assert_eq!((t["kind"].as_str(), t["status"].as_str()), (Some("cluster_action"), Some("succeeded")));

    // A task that does not succeed: a build cancelled by a deletion exits 5 with its reason.
    let r = cli.run(&["cluster", "create", "doomed", "-o", "json"]).ok();
    let build = r.json()["task_id"].as_str().unwrap().to_owned();
    cli.run(&["cluster", "delete", "doomed"]).ok();
    let r = cli.run(&["task", "watch", &build]);
    assert_eq!(r.code, TASK, "{}", r.stderr);
    assert!(
        r.stderr.lines().any(|l| l.starts_with("error: create_cluster") && l.contains("cancelled")),
        "{}",
        r.stderr
    );

    // Delete both; then they are gone (exit 3, not_found).
    for name in ["day", "day-copy"] {
        let r = cli.run(&["cluster", "delete", name, "--wait"]).ok();
        assert!(r.stderr.contains(&format!("delete {name}: succeeded")), "{}", r.stderr);
        let r = cli.run(&["cluster", "show", name]);
        assert_eq!(r.code, API);
        assert_eq!(r.stderr.trim(), format!("error: not_found: cluster \"{name}\" not found"));
    }
    env.wait_no_servers(std::time::Duration::from_secs(60));

    // Colour only on a terminal, and never with NO_COLOR.
    // (`backup list` shows a state word; the expired/completed colours need a TTY.)
    let list_tty = |no_color: bool| {
        let mut c = Command::new("script");
        c.args(["-qec", &format!("{} backup list", common::BIN), "/dev/null"]);
        c.env("HERD_CLI_CONFIG", &cli.config);
        if no_color {
            c.env("NO_COLOR", "1");
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    };
    assert!(list_tty(false).contains("\x1b[32mcompleted"), "coloured on a terminal: {:?}", list_tty(false));
    assert!(!list_tty(true).contains('\x1b'), "NO_COLOR: {:?}", list_tty(true));

    let r = cli.run(&["completions", "bash"]).ok();
    assert!(r.stdout.contains("_herd()") && r.stdout.contains("backup-policy"));
}
