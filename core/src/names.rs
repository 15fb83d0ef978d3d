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

/// A Debian package as apt takes it: `name`, `name:arch`, `name=version` or
/// `name:arch=version`. The one rule for package names: the API checks datastore
/// versions with it, the datastore manager checks again before it installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageSpec<'a> {
    /// Policy §5.6.1: `[a-z0-9][a-z0-9+.-]+`.
    pub name: &'a str,
    /// `amd64`, `arm64`, `all`, ...
    pub arch: Option<&'a str>,
    /// Policy §5.6.12: `[epoch:]upstream[-revision]`.
    pub version: Option<&'a str>,
}

impl<'a> PackageSpec<'a> {
    pub fn parse(s: &'a str) -> Result<Self, &'static str> {
        // The version may hold a colon (an epoch), the name never an '='.
        let (head, version) = match s.split_once('=') {
            Some((h, v)) => (h, Some(v)),
            None => (s, None),
        };
        let (name, arch) = match head.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (head, None),
        };
        let name_ok = (2..=100).contains(&name.len())
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        if !name_ok {
            return Err("is not a Debian package name ([a-z0-9][a-z0-9+.-]+, optionally :arch and =version)");
        }
        if let Some(a) = arch
            && !(!a.is_empty()
                && a.len() <= 32
                && a.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            return Err("has an invalid architecture (after ':', e.g. amd64)");
        }
        if let Some(v) = version
            && !valid_debian_version(v)
        {
            return Err("has an invalid version (after '=', e.g. 15.4-1 or 1:2.3)");
        }
        Ok(Self { name, arch, version })
    }

    /// How dpkg-query is asked about it: the name, with its architecture if given.
    pub fn query_name(&self) -> String {
        match self.arch {
            Some(a) => format!("{}:{a}", self.name),
            None => self.name.to_owned(),
        }
    }
}

fn valid_debian_version(v: &str) -> bool {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, r)) => (Some(e), r),
        None => (None, v),
    };
    epoch.is_none_or(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
        && !rest.is_empty()
        && rest.len() <= 100
        && rest.as_bytes()[0].is_ascii_digit()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.~".contains(&b))
}

/// Checks a package as [`PackageSpec::parse`] reads it.
pub fn validate_package(s: &str) -> Result<(), &'static str> {
    PackageSpec::parse(s).map(drop)
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
        // Every form apt takes, as the manager will install it.
        let spec = |s| PackageSpec::parse(s).unwrap();
        assert_eq!(spec("postgresql-15"), PackageSpec { name: "postgresql-15", arch: None, version: None });
        assert_eq!(spec("libpq5:amd64"), PackageSpec { name: "libpq5", arch: Some("amd64"), version: None });
        assert_eq!(
            spec("postgresql-15=15.4-1"),
            PackageSpec { name: "postgresql-15", arch: None, version: Some("15.4-1") }
        );
        assert_eq!(
            spec("libpq5:amd64=1:15.4-1~bpo12+1"),
            PackageSpec { name: "libpq5", arch: Some("amd64"), version: Some("1:15.4-1~bpo12+1") }
        );
        assert!(validate_package("g++").is_ok());
        for bad in [
            "",
            "x",
            "-o",
            "Foo",
            "a b",
            "foo; rm -rf /",
            "pkg:",
            "pkg=",
            "pkg=a1",
            "pkg=1 2",
            "$(id)",
            "pkg:x=y=z",
            "pkg=:1",
        ] {
            assert!(validate_package(bad).is_err(), "{bad:?}");
        }
        assert!(validate_identifier("15.4").is_ok());
        assert!(validate_identifier("Postgres").is_err());
        assert!(validate_display_name(" a").is_err());
        assert!(validate_display_name("laptop key").is_ok());
        assert!(validate_display_name("a\nb").is_err());
    }
}
