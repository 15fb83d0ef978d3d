//! Layered configuration: built-in defaults < `herd.toml` < `HERD_*` environment.
//!
//! Nested keys use a double underscore in the environment
//! (`HERD_PROVIDERS__LOCAL__ADDRESS_POOL`). Secrets are `SecretString` so they cannot
//! reach a log line through `Debug`.

mod providers;

pub use providers::*;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The environment variable naming the config file; not itself a setting.
pub const CONFIG_FILE_ENV: &str = "HERD_CONFIG";
pub const DEFAULT_CONFIG_FILE: &str = "herd.toml";
/// The `herd` CLI's variables (`HERD_URL`, ...), lowercased without the prefix: they
/// configure the client commands, never the server, so settings ignore them.
pub const CLIENT_ENV: &[&str] = &["url", "token", "context", "cli_config", "output"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Where the embedded database, keys and local servers live.
    pub state_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite in the state dir.
    pub database_url: Option<String>,
    /// Queue for `herd serve` + `herd worker`.
    pub redis_url: String,
    /// Base64 of 32 random bytes; encrypts secrets at rest. Dev generates one.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub master_key: Option<SecretString>,
    /// Bootstrap admin token. Dev generates one.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub admin_token: Option<SecretString>,
    pub log_format: LogFormat,
    /// `tracing` filter, e.g. `info,herd_api=debug`.
    pub log_level: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    pub providers: ProvidersSettings,
    pub worker: WorkerSettings,
    pub backups: BackupSettings,
    pub hooks: HookSettings,
    /// Each project's default limits (`[quotas]`: clusters, nodes, volume_gb,
    /// snapshots, backups, keys); operators override them per project.
    pub quotas: crate::quota::Limits,
}

/// Where failover webhooks may go (see `egress`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HookSettings {
    /// Hosts (names or address literals, as written in the URL) a webhook may reach
    /// although they resolve to a loopback, private, link-local or other internal
    /// address: an operator's own receivers inside the network.
    pub allowed_hosts: Vec<String>,
}

/// Where clusters' backups (pgBackRest repositories) live.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    /// Which repository new clusters archive into.
    pub repository: RepositoryChoice,
    /// The posix repository's directory: for loopback hosts, a directory of this
    /// machine (they share its filesystem); default `<state_dir>/backups`.
    pub path: Option<PathBuf>,
    /// The S3 repository; without it clusters on cloud providers have no backups.
    pub s3: Option<S3RepoSettings>,
}

/// `backups.repository`: which pgBackRest repository a new cluster archives into.
/// Backups already taken stay in the repository their row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryChoice {
    /// posix (`backups.path`) for loopback hosts, S3 (`backups.s3`, when set) for
    /// cloud providers.
    #[default]
    Auto,
    /// `backups.path` for every cluster: on cloud servers only if it is a shared
    /// filesystem mounted at the same path on Herd's host and every node.
    Posix,
    /// `backups.s3` for every cluster, loopback hosts included; needs `[backups.s3]`.
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3RepoSettings {
    pub bucket: String,
    /// host[:port] without scheme, default `s3.amazonaws.com`.
    #[serde(default = "default_s3_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Prefix inside the bucket.
    #[serde(default = "default_s3_path")]
    pub path: String,
    pub access_key_id: String,
    #[serde(serialize_with = "serialize_secret")]
    pub secret_access_key: SecretString,
    #[serde(default)]
    pub path_style: bool,
    #[serde(default = "default_true")]
    pub verify_tls: bool,
    /// PEM file of the CA(s) that signed the endpoint's certificate, instead of the
    /// system's trust store (a private CA). pgBackRest reads it on Herd's host and on
    /// every node, so it must exist at this path on both (loopback hosts share this
    /// machine's filesystem) and be readable by the database user.
    pub ca_file: Option<PathBuf>,
}

impl Default for S3RepoSettings {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            endpoint: default_s3_endpoint(),
            region: default_s3_region(),
            path: default_s3_path(),
            access_key_id: String::new(),
            secret_access_key: SecretString::from(String::new()),
            path_style: false,
            verify_tls: true,
            ca_file: None,
        }
    }
}

fn default_s3_endpoint() -> String {
    "s3.amazonaws.com".into()
}
fn default_s3_region() -> String {
    "us-east-1".into()
}
fn default_s3_path() -> String {
    "/herd".into()
}
fn default_true() -> bool {
    true
}

fn serialize_secret<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}

/// How workers run tasks. The defaults suit production; tests shorten the timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Tasks one worker process runs at once.
    pub concurrency: usize,
    /// How often a running task records that its worker is alive.
    pub heartbeat_secs: u64,
    /// A running task whose heartbeat is older than this is taken over.
    pub stale_after_secs: u64,
    /// A queued task not picked up for this long is pushed to the queue again.
    pub requeue_after_secs: u64,
    /// How often the sweeper looks for such tasks.
    pub sweep_interval_secs: u64,
    /// Attempts (claims) of one task before it fails.
    pub max_attempts: i32,
    /// How long a transient failure of one step is retried before the task fails.
    pub step_retry_secs: u64,
    /// Deadline for a new cluster to elect a leader and stream to every replica.
    pub converge_timeout_secs: u64,
    /// How often the health poller looks at every running cluster.
    pub health_interval_ms: u64,
    /// Clusters the poller checks at once.
    pub health_concurrency: usize,
    /// How often the reconciler compares desired with actual (daemons, servers).
    pub reconcile_interval_secs: u64,
    /// Base URL of the API as the clusters' nodes reach it, for their role-change
    /// callbacks (`http://203.0.113.5:8080`). `herd dev` uses its own address; unset
    /// elsewhere, Herd learns of role changes by polling only.
    pub callback_url: Option<String>,
    /// Per-call timeout of a failover webhook.
    pub hook_timeout_ms: u64,
    /// Calls of a failover webhook before giving up (with backoff between).
    pub hook_attempts: u32,
    /// How often the nodes' TLS certificates are renewed (each is valid three times
    /// as long); the worker reconfigures a cluster when its period ends. Default 30 days.
    pub cert_renew_secs: u64,
}

/// Bounds of `worker.cert_renew_secs`: shorter would have every cluster reconfiguring
/// all the time; a year is as long as a certificate should live unrenewed.
pub const CERT_RENEW_SECS: std::ops::RangeInclusive<u64> = 10..=365 * 24 * 3600;

impl WorkerSettings {
    /// `cert_renew_secs` as a duration, held to [`CERT_RENEW_SECS`] (which `validate`
    /// enforces on loaded settings).
    pub fn cert_renew_every(&self) -> chrono::Duration {
        let secs = self.cert_renew_secs.clamp(*CERT_RENEW_SECS.start(), *CERT_RENEW_SECS.end());
        chrono::Duration::seconds(secs as i64)
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            heartbeat_secs: 5,
            stale_after_secs: 30,
            requeue_after_secs: 10,
            sweep_interval_secs: 5,
            max_attempts: 5,
            step_retry_secs: 300,
            converge_timeout_secs: 180,
            health_interval_ms: 1000,
            health_concurrency: 16,
            reconcile_interval_secs: 10,
            callback_url: None,
            hook_timeout_ms: 5000,
            hook_attempts: 3,
            cert_renew_secs: 30 * 24 * 3600,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            state_dir: PathBuf::from(".herd"),
            database_url: None,
            redis_url: "redis://127.0.0.1:6379".into(),
            master_key: None,
            admin_token: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            max_body_bytes: 1024 * 1024,
            providers: ProvidersSettings::default(),
            worker: WorkerSettings::default(),
            backups: BackupSettings::default(),
            hooks: HookSettings::default(),
            quotas: crate::quota::Limits::default(),
        }
    }
}

/// Secrets are never serialized with their value: the serialized form is only used
/// to enumerate settings and to describe configuration.
fn serialize_secret_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("<redacted>"),
        None => s.serialize_none(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// Defaults, then the config file (`HERD_CONFIG` or `./herd.toml` if present), then env.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let mut s: Self = Self::figment(&file, true).extract().map_err(|e| ConfigError(e.to_string()))?;
        s.absolutize_paths()?;
        s.validate()?;
        Ok(s)
    }

    /// The layers without the environment (tests use it to stay hermetic).
    pub fn load_file_only(file: &Path) -> Result<Self, ConfigError> {
        let mut s: Self = Self::figment(file, false).extract().map_err(|e| ConfigError(e.to_string()))?;
        s.absolutize_paths()?;
        s.validate()?;
        Ok(s)
    }

    /// Makes every path setting absolute, relative to the working directory, so a
    /// relative `state_dir` (the default `.herd`) never reaches a component that
    /// needs an absolute path (pgBackRest's repository, sshd's config, a daemon that
    /// changes directory). `load` calls it; call it again after overriding a path
    /// (`herd dev --state-dir`). Idempotent. `sshd_path` without a `/` is looked up
    /// in `PATH`, as a shell would.
    pub fn absolutize_paths(&mut self) -> Result<(), ConfigError> {
        let abs = |p: &Path| {
            std::path::absolute(p).map_err(|e| ConfigError(format!("cannot make {} absolute: {e}", p.display())))
        };
        self.state_dir = abs(&self.state_dir)?;
        if let Some(p) = &self.backups.path {
            self.backups.path = Some(abs(p)?);
        }
        if let Some(p) = self.backups.s3.as_ref().and_then(|s| s.ca_file.as_ref()) {
            let p = abs(p)?;
            self.backups.s3.as_mut().expect("checked above").ca_file = Some(p);
        }
        let local = &mut self.providers.local;
        if let Some(p) = &local.root {
            local.root = Some(abs(p)?);
        }
        if let Some(p) = &local.cgroup_root {
            local.cgroup_root = Some(abs(p)?);
        }
        if !local.sshd_path.is_absolute() {
            local.sshd_path = if local.sshd_path.components().count() == 1 {
                find_in_path(&local.sshd_path).ok_or_else(|| {
                    ConfigError(format!("providers.local.sshd_path {:?} is not in PATH", local.sshd_path))
                })?
            } else {
                abs(&local.sshd_path)?
            };
        }
        Ok(())
    }

    /// Rules across keys that types cannot express; `load` applies them, so a bad
    /// combination stops Herd at start-up rather than failing its first backup.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some((q, v)) = self.quotas.out_of_range() {
            return Err(ConfigError(format!("quotas.{q} is {v}: a limit may be at most {}", crate::quota::MAX_LIMIT)));
        }
        if !CERT_RENEW_SECS.contains(&self.worker.cert_renew_secs) {
            return Err(ConfigError(format!(
                "worker.cert_renew_secs is {}: it must be between 10 seconds and a year",
                self.worker.cert_renew_secs
            )));
        }
        let b = &self.backups;
        if b.repository == RepositoryChoice::S3 && b.s3.is_none() {
            return Err(ConfigError(
                "backups.repository is \"s3\" but there is no [backups.s3] section (set at least bucket, \
                 access_key_id and secret_access_key, or HERD_BACKUPS__S3__BUCKET, ...)"
                    .into(),
            ));
        }
        if let Some(s3) = &b.s3
            && let Some(ca) = &s3.ca_file
        {
            if !s3.verify_tls {
                return Err(ConfigError(
                    "backups.s3.ca_file is set but backups.s3.verify_tls is false: the CA would not be used".into(),
                ));
            }
            if !ca.is_absolute() {
                return Err(ConfigError(format!(
                    "backups.s3.ca_file {} is not an absolute path (pgBackRest also reads it on the nodes)",
                    ca.display()
                )));
            }
            let pem = std::fs::read_to_string(ca)
                .map_err(|e| ConfigError(format!("backups.s3.ca_file {}: {e}", ca.display())))?;
            if !pem.contains("CERTIFICATE-----") {
                return Err(ConfigError(format!("backups.s3.ca_file {} holds no PEM certificate", ca.display())));
            }
        }
        Ok(())
    }

    fn figment(file: &Path, with_env: bool) -> Figment {
        let mut f = Figment::from(Serialized::defaults(Settings::default())).merge(Toml::file(file));
        if with_env {
            // HERD_CONFIG names the file, HERD_TEST_* are test hooks, and the CLI's own
            // variables (HERD_URL, HERD_TOKEN, ...) say which API a client talks to:
            // none is a setting. Keys arrive in their original case.
            f = f.merge(
                Env::prefixed("HERD_")
                    .filter(|k| {
                        let k = k.as_str().to_ascii_lowercase();
                        k != "config" && !k.starts_with("test_") && !CLIENT_ENV.contains(&k.as_str())
                    })
                    .split("__"),
            );
        }
        f
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}?mode=rwc", self.state_dir.join("herd.db").display()),
        }
    }

    /// Every setting as its environment variable name (`HERD_LISTEN`,
    /// `HERD_PROVIDERS__LOCAL__ADDRESS_POOL`, ...). Derived from the struct itself so
    /// the README table and the compose check cannot drift from the code.
    pub fn env_var_names() -> Vec<String> {
        let mut v = serde_json::to_value(Settings {
            // Optional sections must be present to be enumerated.
            providers: ProvidersSettings { ec2: Some(Ec2ProviderSettings::default()), ..Default::default() },
            backups: BackupSettings { s3: Some(S3RepoSettings::default()), ..Default::default() },
            ..Default::default()
        })
        .expect("settings serialize");
        let mut out = Vec::new();
        collect_keys(&mut v, "HERD_", &mut out);
        out.sort();
        out
    }
}

/// The first executable `name` in `PATH`.
fn find_in_path(name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&std::env::var_os("PATH")?)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn collect_keys(v: &mut serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = v {
        for (k, child) in map.iter_mut() {
            let name = format!("{prefix}{}", k.to_uppercase());
            if child.is_object() {
                collect_keys(child, &format!("{name}__"), out);
            } else {
                out.push(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile_dir();
        let path = dir.join("herd.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\nadmin_token = \"s3cret-token\"\n[providers.local]\naddress_pool = \"127.88.0.0/16\"\n").unwrap();
        let s = Settings::load_file_only(&path).unwrap();
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(s.admin_token.unwrap().expose_secret(), "s3cret-token");
        assert_eq!(s.providers.local.address_pool, "127.88.0.0/16");
        assert_eq!(s.providers.local.flavors.len(), 2);

        std::fs::write(&path, "lisen = \"127.0.0.1:9999\"\n").unwrap();
        let err = Settings::load_file_only(&path).unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn relative_paths_become_absolute_against_the_working_directory() {
        let dir = tempfile_dir();
        let path = dir.join("herd.toml");
        let cwd = std::env::current_dir().unwrap();
        // The defaults: `.herd`, and everything derived from it.
        std::fs::write(&path, "").unwrap();
        let s = Settings::load_file_only(&path).unwrap();
        assert_eq!(s.state_dir, cwd.join(".herd"));
        assert!(
            s.database_url().starts_with(&format!("sqlite://{}/", cwd.join(".herd").display())),
            "{}",
            s.database_url()
        );
        assert_eq!(s.providers.local.sshd_path, PathBuf::from("/usr/sbin/sshd"));

        std::fs::write(
            &path,
            "state_dir = \"st/./x\"\n[backups]\npath = \"../bk\"\n[providers.local]\nroot = \"r\"\nsshd_path = \"sh\"\n",
        )
        .unwrap();
        let mut s = Settings::load_file_only(&path).unwrap();
        assert!(s.state_dir.is_absolute() && s.state_dir.starts_with(&cwd), "{}", s.state_dir.display());
        assert_eq!(s.backups.path.as_deref(), Some(cwd.join("../bk").as_path()));
        assert_eq!(s.providers.local.root.as_deref(), Some(cwd.join("r").as_path()));
        // A bare program name is found in PATH, as a shell finds it.
        let sh = &s.providers.local.sshd_path;
        assert!(sh.is_absolute() && sh.ends_with("sh") && sh.is_file(), "{}", sh.display());
        // A path set after loading (`herd dev --state-dir`) is made absolute the same way.
        s.state_dir = PathBuf::from("later");
        s.absolutize_paths().unwrap();
        assert_eq!(s.state_dir, cwd.join("later"));

        std::fs::write(&path, "[providers.local]\nsshd_path = \"no-such-sshd-anywhere\"\n").unwrap();
        let err = Settings::load_file_only(&path).unwrap_err().to_string();
        assert!(err.contains("no-such-sshd-anywhere") && err.contains("PATH"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_never_show_in_debug_or_serialization() {
        let s = Settings { master_key: Some("c2VjcmV0LW1hc3Rlci1rZXk=".to_string().into()), ..Default::default() };
        assert!(!format!("{s:?}").contains("c2VjcmV0"));
        assert!(!serde_json::to_string(&s).unwrap().contains("c2VjcmV0"));
    }

    #[test]
    fn env_var_names_cover_nested_settings() {
        let names = Settings::env_var_names();
        for n in [
            "HERD_LISTEN",
            "HERD_DATABASE_URL",
            "HERD_MASTER_KEY",
            "HERD_ADMIN_TOKEN",
            "HERD_PROVIDERS__LOCAL__ADDRESS_POOL",
            "HERD_PROVIDERS__EC2__REGION",
            "HERD_BACKUPS__REPOSITORY",
            "HERD_BACKUPS__S3__CA_FILE",
            "HERD_BACKUPS__S3__SECRET_ACCESS_KEY",
        ] {
            assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
        }
        assert!(!names.contains(&"HERD_CONFIG".to_string()));
    }

    #[test]
    fn backup_repository_choice_and_s3_rules() {
        let dir = tempfile_dir();
        let path = dir.join("herd.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Settings::load_file_only(&path)
        };
        assert_eq!(load("").unwrap().backups.repository, RepositoryChoice::Auto);
        assert_eq!(load("[backups]\nrepository = \"posix\"\n").unwrap().backups.repository, RepositoryChoice::Posix);
        let err = load("[backups]\nrepository = \"nfs\"\n").unwrap_err().to_string();
        assert!(err.contains("nfs"), "{err}");
        // s3 without its section stops start-up, saying what is missing.
        let err = load("[backups]\nrepository = \"s3\"\n").unwrap_err().to_string();
        assert!(err.contains("backups.repository") && err.contains("[backups.s3]"), "{err}");

        let s3 = "[backups]\nrepository = \"s3\"\n[backups.s3]\nbucket = \"b\"\naccess_key_id = \"k\"\n\
                  secret_access_key = \"very-secret\"\n";
        let s = load(s3).unwrap();
        let repo = s.backups.s3.as_ref().unwrap();
        assert!(repo.verify_tls && repo.ca_file.is_none());
        assert!(!serde_json::to_string(&s).unwrap().contains("very-secret"));
        assert!(!format!("{s:?}").contains("very-secret"));

        // ca_file: an absolute path to a PEM certificate, only with verification on.
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let with_ca = format!("{s3}ca_file = \"{}\"\n", ca.display());
        assert_eq!(load(&with_ca).unwrap().backups.s3.unwrap().ca_file.as_deref(), Some(ca.as_path()));
        let err = load(&format!("{with_ca}verify_tls = false\n")).unwrap_err().to_string();
        assert!(err.contains("verify_tls"), "{err}");
        // A relative ca_file is read from the working directory, like every path setting.
        let cwd = std::env::current_dir().unwrap();
        let err = load(&format!("{s3}ca_file = \"no-such-ca.pem\"\n")).unwrap_err().to_string();
        assert!(err.contains(&cwd.join("no-such-ca.pem").display().to_string()), "{err}");
        let err = load(&format!("{s3}ca_file = \"{}\"\n", dir.join("missing.pem").display())).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = load(&with_ca).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("herd-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
