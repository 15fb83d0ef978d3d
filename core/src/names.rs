//! Names validated at the edge: once parsed, a `DnsLabel` is safe to use in host names,
//! file paths and shell commands without further checks.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Lowercase a-z, 0-9 and '-', 1–63 characters, not starting or ending with '-'.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsLabel(String);

impl DnsLabel {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() || s.len() > 63 {
            return Err("must be 1 to 63 characters");
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("may contain only lowercase letters, digits and '-'");
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err("must not start or end with '-'");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DnsLabel {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<DnsLabel> for String {
    fn from(n: DnsLabel) -> String {
        n.0
    }
}

impl fmt::Display for DnsLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Display names of keys, projects and tokens: 1–100 printable characters, no control
/// characters, trimmed. They are shown, never interpolated into commands.
pub fn validate_display_name(s: &str) -> Result<(), &'static str> {
    if s.trim().is_empty() || s.chars().count() > 100 {
        return Err("must be 1 to 100 characters");
    }
    if s.trim() != s {
        return Err("must not start or end with whitespace");
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

/// Datastore and version identifiers (`postgresql`, `15`, `15.4`): they end up in
/// package names and paths, so only `[a-z0-9][a-z0-9._-]{0,31}`.
pub fn validate_identifier(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err("must match [a-z0-9][a-z0-9._-]{0,31}") }
}

/// Debian package names (policy §5.6.1), optionally pinned `name=version`.
pub fn validate_package(s: &str) -> Result<(), &'static str> {
    let (name, version) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    let name_ok = name.len() >= 2
        && name.len() <= 100
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.~:".contains(&b))
    });
    if name_ok && version_ok { Ok(()) } else { Err("is not a valid Debian package name") }
}

/// Server configuration parameter names (`shared_buffers`, `auto_explain.log_min_duration`).
pub fn validate_parameter_name(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if ok { Ok(()) } else { Err("is not a valid parameter name") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "pg-1", "0abc", &"x".repeat(63)] {
            assert!(DnsLabel::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "a b", "é", &"x".repeat(64), "a;rm"] {
            assert!(DnsLabel::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn packages_and_identifiers() {
        assert!(validate_package("postgresql-15").is_ok());
        assert!(validate_package("libpq5=15.4-1").is_ok());
        assert!(validate_package("x").is_err());
        assert!(validate_package("foo; rm -rf /").is_err());
        assert!(validate_identifier("15.4").is_ok());
        assert!(validate_identifier("Postgres").is_err());
        assert!(validate_parameter_name("auto_explain.log_min_duration").is_ok());
        assert!(validate_parameter_name("x'; drop").is_err());
        assert!(validate_display_name(" a").is_err());
        assert!(validate_display_name("laptop key").is_ok());
        assert!(validate_display_name("a\nb").is_err());
    }
}
