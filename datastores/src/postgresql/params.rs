//! Rules for user parameters: which PostgreSQL settings a user may set, of what type,
//! in what range, and whether changing one takes a restart.
//!
//! The rules are `parameters.json`, taken from `pg_settings` of PostgreSQL 15
//! (`vartype`, `unit`, `min_val`, `max_val`, `enumvals`, `context = 'postmaster'`),
//! restricted to what Herd lets users set (`wal_level` without `minimal`). Optional
//! `min_version` / `max_version` say in which major versions a parameter exists;
//! limits are those of PostgreSQL 15.
//!
//! Values follow PostgreSQL's own parsing: booleans as `on`/`off`/`true`/`yes`/`1`...,
//! integers possibly fractional (rounded), memory and durations with an optional unit
//! (`kB MB GB TB`, `us ms s min h d`, case-sensitive), converted to the parameter's
//! base unit before the range check. The same conversion lets the manager compare
//! what a server reports with what was asked.

use crate::ParameterInfo;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const RULES_JSON: &str = include_str!("parameters.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bool,
    Integer,
    Real,
    String,
    Enum,
    Memory,
    Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Base unit of memory (`B`, `kB`, `8kB`, `MB`) and duration (`ms`, `s`, `min`)
    /// parameters: what a number without unit means.
    #[serde(default)]
    pub unit: Option<String>,
    /// A duration stored as a floating point number (`vacuum_cost_delay`).
    #[serde(default)]
    pub real: bool,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub values: Vec<String>,
    /// PostgreSQL context `postmaster`: takes effect only after a restart.
    #[serde(default)]
    pub restart: bool,
    #[serde(default)]
    pub min_version: Option<u32>,
    #[serde(default)]
    pub max_version: Option<u32>,
}

impl Rule {
    fn exists_in(&self, major: u32) -> bool {
        self.min_version.is_none_or(|v| major >= v) && self.max_version.is_none_or(|v| major <= v)
    }
}

/// Every rule by name. The file is part of the binary; a broken one is a build
/// defect caught by the unit tests, so it panics rather than returning an error.
pub fn rules() -> &'static BTreeMap<String, Rule> {
    static RULES: OnceLock<BTreeMap<String, Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        let list: Vec<Rule> = serde_json::from_str(RULES_JSON).expect("parameters.json parses");
        list.into_iter().map(|r| (r.name.clone(), r)).collect()
    })
}

/// The rule for `name` in major version `major`, if users may set it there.
pub fn rule(name: &str, major: u32) -> Option<&'static Rule> {
    rules().get(name).filter(|r| r.exists_in(major))
}

/// A value in a comparable form: numbers in the parameter's base unit, booleans
/// as `on`/`off`, enum values lower case.
#[derive(Debug, Clone, PartialEq)]
pub enum Canonical {
    Int(i64),
    Real(f64),
    Text(String),
}

impl Canonical {
    /// Equal, with floating point values compared to a relative precision (the
    /// server prints reals with limited digits).
    pub fn same_as(&self, other: &Canonical) -> bool {
        match (self, other) {
            (Canonical::Real(a), Canonical::Real(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
            (Canonical::Int(a), Canonical::Real(b)) | (Canonical::Real(b), Canonical::Int(a)) => {
                (*a as f64 - b).abs() < 1e-9
            }
            (a, b) => a == b,
        }
    }
}

/// A JSON value as PostgreSQL would read it from a config file.
fn as_text(value: &serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(if *b { "on" } else { "off" }.to_owned()),
        serde_json::Value::Null => Err("a value is required (null)".into()),
        _ => Err("must be a string, number or boolean".into()),
    }
}

/// PostgreSQL's boolean spellings (whole words; `parse_bool` also takes unique
/// prefixes, which nobody should rely on).
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Memory units in bytes, duration units in microseconds.
fn unit_factor(kind: Kind, unit: &str) -> Option<f64> {
    let f = match (kind, unit) {
        (Kind::Memory, "B") => 1.0,
        (Kind::Memory, "kB") => 1024.0,
        (Kind::Memory, "8kB") => 8192.0,
        (Kind::Memory, "MB") => 1024.0 * 1024.0,
        (Kind::Memory, "GB") => 1024.0 * 1024.0 * 1024.0,
        (Kind::Memory, "TB") => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        (Kind::Duration, "us") => 1.0,
        (Kind::Duration, "ms") => 1e3,
        (Kind::Duration, "s") => 1e6,
        (Kind::Duration, "min") => 60e6,
        (Kind::Duration, "h") => 3600e6,
        (Kind::Duration, "d") => 86400e6,
        _ => return None,
    };
    Some(f)
}

fn units_hint(kind: Kind) -> &'static str {
    match kind {
        Kind::Memory => "B, kB, MB, GB, TB",
        _ => "us, ms, s, min, h, d",
    }
}

/// Splits `128 MB` into the number and the unit (possibly empty): the longest
/// prefix that is a finite decimal number (`1.5`, `1e3`; never `inf` or `nan`).
fn split_number(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    if !s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        return None;
    }
    let end = (1..=s.len()).rev().filter(|&i| s.is_char_boundary(i)).find(|&i| {
        let prefix = &s[..i];
        !prefix.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
            && prefix.parse::<f64>().is_ok_and(f64::is_finite)
    })?;
    let n: f64 = s[..end].parse().ok()?;
    Some((n, s[end..].trim()))
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// Parses `value` for `rule`, checks it, and returns it in comparable form.
pub fn canonical(rule: &Rule, value: &serde_json::Value) -> Result<Canonical, String> {
    if let serde_json::Value::Bool(b) = value
        && !matches!(rule.kind, Kind::Bool | Kind::String)
        && !(rule.kind == Kind::Enum && has_on_off(rule))
    {
        return Err(format!("expected {}, got a boolean ({b})", describe(rule)));
    }
    let text = as_text(value)?;
    if let Some(c) = text.chars().find(|c| is_forbidden_char(*c)) {
        return Err(format!("value contains the control character {c:?}"));
    }
    canonical_text(rule, &text)
}

/// A character no parameter value may hold: NUL and the control characters but tab.
/// A newline inside a quoted value makes `postgresql.conf` unparsable, so the server
/// would not start after its next restart.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control() && c != '\t'
}

fn has_on_off(rule: &Rule) -> bool {
    rule.values.iter().any(|v| v == "on") && rule.values.iter().any(|v| v == "off")
}

fn describe(rule: &Rule) -> String {
    match rule.kind {
        Kind::Bool => "a boolean (on/off)".into(),
        Kind::Integer => "an integer".into(),
        Kind::Real => "a number".into(),
        Kind::String => "a string".into(),
        Kind::Enum => format!("one of {}", rule.values.join(", ")),
        Kind::Memory => {
            format!("a size (a number of {} or with a unit: {})", rule.unit_str(), units_hint(Kind::Memory))
        }
        Kind::Duration => {
            format!("a duration (a number of {} or with a unit: {})", rule.unit_str(), units_hint(Kind::Duration))
        }
    }
}

impl Rule {
    fn unit_str(&self) -> &str {
        self.unit.as_deref().unwrap_or("")
    }
}

/// Like [`canonical`], for a value as text (a config file entry or `pg_settings`).
pub fn canonical_text(rule: &Rule, text: &str) -> Result<Canonical, String> {
    match rule.kind {
        Kind::Bool => parse_bool(text)
            .map(|b| Canonical::Text(if b { "on" } else { "off" }.into()))
            .ok_or_else(|| format!("expected {}, got {text:?}", describe(rule))),
        Kind::String => Ok(Canonical::Text(text.to_owned())),
        Kind::Enum => {
            let lower = text.trim().to_ascii_lowercase();
            if let Some(v) = rule.values.iter().find(|v| v.eq_ignore_ascii_case(&lower)) {
                return Ok(Canonical::Text(v.clone()));
            }
            // PostgreSQL accepts boolean spellings for enums that have on and off.
            if has_on_off(rule)
                && let Some(b) = parse_bool(&lower)
            {
                return Ok(Canonical::Text(if b { "on" } else { "off" }.into()));
            }
            Err(format!("expected {}, got {text:?}", describe(rule)))
        }
        Kind::Integer | Kind::Real | Kind::Memory | Kind::Duration => {
            let (n, unit) = split_number(text).ok_or_else(|| format!("expected {}, got {text:?}", describe(rule)))?;
            let value = if unit.is_empty() {
                n
            } else {
                let (Some(base), Some(given)) = (
                    rule.unit.as_deref().and_then(|u| unit_factor(rule.kind, u)),
                    unit_factor(rule.kind, unit).filter(|_| unit != "8kB"),
                ) else {
                    return Err(match rule.kind {
                        Kind::Memory | Kind::Duration => {
                            format!("invalid unit {unit:?}: valid units are {}", units_hint(rule.kind))
                        }
                        _ => format!("expected {}, got {text:?}", describe(rule)),
                    });
                };
                n * given / base
            };
            let integer =
                matches!(rule.kind, Kind::Integer | Kind::Memory) || (rule.kind == Kind::Duration && !rule.real);
            // PostgreSQL rounds fractional input for integer parameters (rint).
            let value = if integer { value.round_ties_even() } else { value };
            let (min, max) = (rule.min.unwrap_or(f64::MIN), rule.max.unwrap_or(f64::MAX));
            if value < min || value > max {
                let unit = rule.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
                let shown = if unit.is_empty() || text.trim() == fmt_num(value) {
                    text.trim().to_owned()
                } else {
                    format!("{} (= {}{unit})", text.trim(), fmt_num(value))
                };
                return Err(format!(
                    "{shown} is out of range: must be between {}{unit} and {}{unit}",
                    fmt_num(min),
                    fmt_num(max)
                ));
            }
            if integer {
                // Bounded by the rule's i32 range above.
                Ok(Canonical::Int(value as i64))
            } else {
                Ok(Canonical::Real(value))
            }
        }
    }
}

/// Parameters Herd sets itself: paths under the server root, listen addresses, what
/// replication and Patroni depend on. A user value would break the node or be
/// silently ignored by Patroni (node-local values win over the cluster's), so it is
/// refused instead.
pub const MANAGED_PARAMETERS: &[&str] = &[
    "listen_addresses",
    "port",
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    "unix_socket_directories",
    "logging_collector",
    "log_directory",
    "log_filename",
    "log_file_mode",
    "log_line_prefix",
    "cluster_name",
    "hot_standby",
    "wal_log_hints",
    "synchronous_standby_names",
    "primary_conninfo",
    "primary_slot_name",
    // Continuous archiving belongs to Herd's backups (pgBackRest): a user's command
    // would archive elsewhere, or nowhere, and break point-in-time recovery.
    "archive_mode",
    "archive_command",
    "archive_library",
    "restore_command",
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_timeline",
];

pub fn is_managed(name: &str) -> bool {
    MANAGED_PARAMETERS.contains(&name)
}

/// A PostgreSQL parameter name as `SET` accepts it unquoted (lower case; `.` for extensions' settings).
pub fn valid_parameter_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
}

/// Checks user parameters against the rules (see `params`); every problem at once.
pub fn check_parameters(
    version: &str,
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<ParameterInfo>, Vec<(String, String)>> {
    let Ok(major) = version.trim().parse::<u32>() else {
        return Err(vec![("version".into(), format!("{version:?} is not a PostgreSQL major version"))]);
    };
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in parameters {
        if !valid_parameter_name(name) {
            errors.push((name.clone(), "not a parameter name".into()));
        } else if is_managed(name) {
            errors.push((name.clone(), "managed by Herd; it cannot be set".into()));
        } else {
            match rule(name, major) {
                Some(rule) => match canonical(rule, value) {
                    Ok(_) => ok.push(ParameterInfo { name: name.clone(), restart_required: rule.restart }),
                    Err(e) => errors.push((name.clone(), e)),
                },
                None if rules().contains_key(name) => {
                    errors.push((name.clone(), format!("not available in PostgreSQL {major}")))
                }
                None => errors.push((name.clone(), "unknown parameter (or one Herd does not allow)".into())),
            }
        }
    }
    if errors.is_empty() { Ok(ok) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn check_parameters_reports_every_problem() {
        let ok = check_parameters(
            "15",
            &map(json!({
                "max_connections": 200, "shared_buffers": "1GB", "work_mem": "64MB", "jit": false,
                "statement_timeout": "30s", "random_page_cost": 1.1, "log_statement": "ddl",
                "wal_compression": "on", "autovacuum_naptime": "1min", "idle_session_timeout": 0
            })),
        )
        .unwrap();
        let restart: Vec<&str> = ok.iter().filter(|p| p.restart_required).map(|p| p.name.as_str()).collect();
        assert_eq!(restart, ["max_connections", "shared_buffers"]);
        assert_eq!(ok.len(), 10);

        let errs = check_parameters(
            "15",
            &map(json!({
                "max_connections": "lots", "work_mem": "1kB", "log_statement": "everything",
                "no_such_thing": 1, "unix_socket_directories": "/tmp", "Bad-Name": 1,
                "checkpoint_timeout": "1s", "jit": "perhaps", "wal_keep_segments": 10, "statement_timeout": "5MB",
                "search_path": "public\nlisten_addresses = '*'", "application_name": "a\u{7f}b"
            })),
        )
        .unwrap_err();
        let names: Vec<&str> = errs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(errs.len(), 12, "{errs:?}");
        for n in ["search_path", "application_name"] {
            let (_, e) = errs.iter().find(|(name, _)| name == n).unwrap();
            assert!(e.contains("control character"), "{n}: {e}");
        }
        assert!(check_parameters("15", &map(json!({"application_name": "a\tb"}))).is_ok(), "a tab is fine");
        for n in
            ["max_connections", "work_mem", "log_statement", "no_such_thing", "unix_socket_directories", "Bad-Name"]
        {
            assert!(names.contains(&n), "{n}: {errs:?}");
        }
        let msg = |n: &str| errs.iter().find(|(name, _)| name == n).unwrap().1.clone();
        assert!(msg("unix_socket_directories").contains("managed by Herd"));
        assert!(msg("no_such_thing").contains("unknown"));
        assert!(msg("wal_keep_segments").contains("not available in PostgreSQL 15"));
        assert!(msg("work_mem").contains("out of range"));
        assert!(msg("statement_timeout").contains("invalid unit"));

        assert_eq!(check_parameters("fifteen", &map(json!({"jit": true}))).unwrap_err()[0].0, "version");
        assert_eq!(check_parameters("13", &map(json!({"idle_session_timeout": 0}))).unwrap_err().len(), 1);
        assert!(check_parameters("15", &serde_json::Map::new()).unwrap().is_empty());
    }

    fn check(name: &str, v: serde_json::Value) -> Result<Canonical, String> {
        canonical(rule(name, 15).unwrap_or_else(|| panic!("rule {name}")), &v)
    }

    #[test]
    fn rules_file_is_complete_and_sane() {
        let r = rules();
        assert!(r.len() >= 40, "{}", r.len());
        for (name, rule) in r {
            match rule.kind {
                Kind::Integer | Kind::Real | Kind::Memory | Kind::Duration => {
                    let (min, max) = (rule.min.expect(name), rule.max.expect(name));
                    assert!(min <= max, "{name}");
                }
                Kind::Enum => assert!(!rule.values.is_empty(), "{name}"),
                _ => {}
            }
            if matches!(rule.kind, Kind::Memory | Kind::Duration) {
                assert!(unit_factor(rule.kind, rule.unit_str()).is_some(), "{name}: unit {:?}", rule.unit);
            }
        }
        for name in ["max_connections", "shared_buffers", "max_worker_processes", "wal_level"] {
            assert!(r[name].restart, "{name} needs a restart");
        }
        for name in ["work_mem", "statement_timeout", "jit", "random_page_cost", "autovacuum_naptime"] {
            assert!(!r[name].restart, "{name} needs no restart");
        }
        assert!(rule("idle_session_timeout", 13).is_none());
        assert!(rule("idle_session_timeout", 15).is_some());
        assert!(rule("vacuum_defer_cleanup_age", 16).is_none());
        assert!(rule("wal_keep_segments", 15).is_none());
        assert!(rule("wal_keep_segments", 12).is_some());
    }

    #[test]
    fn memory_converts_to_the_base_unit() {
        assert_eq!(check("work_mem", json!("64MB")), Ok(Canonical::Int(65536)));
        assert_eq!(check("work_mem", json!(" 64 MB ")), Ok(Canonical::Int(65536)));
        assert_eq!(check("work_mem", json!(4096)), Ok(Canonical::Int(4096)));
        assert_eq!(check("work_mem", json!("1.5GB")), Ok(Canonical::Int(1572864)));
        assert_eq!(check("shared_buffers", json!("128MB")), Ok(Canonical::Int(16384)));
        assert_eq!(check("shared_buffers", json!("16384")), Ok(Canonical::Int(16384)));
        assert_eq!(check("max_wal_size", json!("2GB")), Ok(Canonical::Int(2048)));
        assert_eq!(check("log_parameter_max_length", json!("1kB")), Ok(Canonical::Int(1024)));
        let e = check("work_mem", json!("32kB")).unwrap_err();
        assert!(e.contains("out of range") && e.contains("64 kB"), "{e}");
        let e = check("shared_buffers", json!("64kB")).unwrap_err();
        assert!(e.contains("(= 8 8kB)"), "{e}");
        assert!(check("work_mem", json!("64mb")).unwrap_err().contains("invalid unit"));
        assert!(check("work_mem", json!("64 s")).unwrap_err().contains("invalid unit"));
        assert!(check("work_mem", json!("lots")).is_err());
        assert!(check("work_mem", json!(true)).is_err());
        assert!(check("work_mem", json!("3TB")).unwrap_err().contains("out of range"));
        assert_eq!(check("wal_buffers", json!(-1)), Ok(Canonical::Int(-1)));
    }

    #[test]
    fn durations_convert_to_the_base_unit() {
        assert_eq!(check("statement_timeout", json!("5min")), Ok(Canonical::Int(300_000)));
        assert_eq!(check("statement_timeout", json!("1.5s")), Ok(Canonical::Int(1500)));
        assert_eq!(check("statement_timeout", json!(0)), Ok(Canonical::Int(0)));
        assert_eq!(check("checkpoint_timeout", json!("1h")), Ok(Canonical::Int(3600)));
        assert_eq!(check("checkpoint_timeout", json!("300")), Ok(Canonical::Int(300)));
        assert_eq!(check("log_min_duration_statement", json!(-1)), Ok(Canonical::Int(-1)));
        assert_eq!(check("log_min_duration_statement", json!("250ms")), Ok(Canonical::Int(250)));
        assert_eq!(check("autovacuum_naptime", json!("1d")), Ok(Canonical::Int(86400)));
        assert_eq!(check("vacuum_cost_delay", json!("500us")), Ok(Canonical::Real(0.5)));
        assert!(check("checkpoint_timeout", json!("10s")).unwrap_err().contains("between 30 s and 86400 s"));
        assert!(check("checkpoint_timeout", json!("2d")).unwrap_err().contains("out of range"));
        assert!(check("statement_timeout", json!("5 minutes")).unwrap_err().contains("invalid unit"));
        assert!(check("statement_timeout", json!("5MB")).unwrap_err().contains("invalid unit"));
        assert!(check("log_min_duration_statement", json!(-2)).is_err());
    }

    #[test]
    fn numbers_booleans_enums_strings() {
        assert_eq!(check("max_connections", json!(200)), Ok(Canonical::Int(200)));
        assert_eq!(check("max_connections", json!("200")), Ok(Canonical::Int(200)));
        assert!(check("max_connections", json!(0)).unwrap_err().contains("between 1 and 262143"));
        assert!(check("max_connections", json!("many")).is_err());
        assert_eq!(check("random_page_cost", json!(1.1)), Ok(Canonical::Real(1.1)));
        assert_eq!(check("random_page_cost", json!("4")), Ok(Canonical::Real(4.0)));
        assert!(check("random_page_cost", json!(-1)).is_err());
        assert!(check("checkpoint_completion_target", json!(1.5)).is_err());
        for on in [json!(true), json!("on"), json!("TRUE"), json!("yes"), json!("1"), json!(1)] {
            assert_eq!(check("jit", on.clone()), Ok(Canonical::Text("on".into())), "{on}");
        }
        for off in [json!(false), json!("off"), json!("no"), json!(0)] {
            assert_eq!(check("track_io_timing", off.clone()), Ok(Canonical::Text("off".into())), "{off}");
        }
        assert!(check("jit", json!("maybe")).is_err());
        assert_eq!(check("log_statement", json!("DDL")), Ok(Canonical::Text("ddl".into())));
        assert!(check("log_statement", json!("some")).unwrap_err().contains("none, ddl, mod, all"));
        assert_eq!(check("wal_compression", json!(true)), Ok(Canonical::Text("on".into())));
        assert_eq!(check("wal_compression", json!("lz4")), Ok(Canonical::Text("lz4".into())));
        assert_eq!(check("synchronous_commit", json!("remote_apply")), Ok(Canonical::Text("remote_apply".into())));
        assert!(check("wal_level", json!("minimal")).is_err(), "replication needs replica or logical");
        assert!(check("log_statement", json!(true)).is_err());
        assert_eq!(check("search_path", json!("\"$user\", public")), Ok(Canonical::Text("\"$user\", public".into())));
        assert!(check("search_path", json!(null)).is_err());
        assert!(check("search_path", json!(["a"])).is_err());
        assert!(check("application_name", json!("a\0b")).is_err());
    }

    #[test]
    fn server_output_compares_equal_to_input() {
        let r = rule("work_mem", 15).unwrap();
        // pg_settings.setting is in the base unit, a config file may hold a unit.
        assert!(canonical_text(r, "65536").unwrap().same_as(&canonical_text(r, "64MB").unwrap()));
        let r = rule("random_page_cost", 15).unwrap();
        assert!(canonical_text(r, "1.1").unwrap().same_as(&Canonical::Real(1.1000000000001)));
        assert!(!canonical_text(r, "1.2").unwrap().same_as(&Canonical::Real(1.1)));
    }
}
