//! Managed databases and users: the rules for their names and what a user may be
//! granted. The API checks requests with them, the datastore manager checks again
//! before it writes SQL, so a rule lives here once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Names Herd or PostgreSQL itself rely on. The cluster's admin role is refused too,
/// by the caller that knows it.
const RESERVED_ROLES: &[&str] =
    &["postgres", "replicator", "herd", "public", "none", "current_user", "session_user", "current_role"];
const RESERVED_DATABASES: &[&str] = &["postgres", "template0", "template1"];

/// Lower-case SQL identifiers only (`[a-z_][a-z0-9_]{0,62}`): they read the same
/// quoted or not, fit PostgreSQL's 63-byte limit, and are safe in psql meta-commands.
fn identifier(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && (s.as_bytes()[0].is_ascii_lowercase() || s.as_bytes()[0] == b'_')
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(()) } else { Err("must match [a-z_][a-z0-9_]{0,62}") }
}

pub fn validate_role_name(s: &str) -> Result<(), &'static str> {
    identifier(s)?;
    if s.starts_with("pg_") || RESERVED_ROLES.contains(&s) {
        return Err("is reserved (postgres, replicator, herd, pg_*, …)");
    }
    Ok(())
}

pub fn validate_database_name(s: &str) -> Result<(), &'static str> {
    identifier(s)?;
    if s.starts_with("pg_") || RESERVED_DATABASES.contains(&s) {
        return Err("is reserved (postgres, template0, template1, pg_*)");
    }
    Ok(())
}

/// Encodings a new database may use (PostgreSQL's server encodings that matter).
pub const ENCODINGS: &[&str] =
    &["UTF8", "SQL_ASCII", "LATIN1", "LATIN2", "LATIN9", "WIN1250", "WIN1251", "WIN1252", "EUC_JP", "EUC_KR"];

pub fn validate_encoding(s: &str) -> Result<(), String> {
    if ENCODINGS.contains(&s) { Ok(()) } else { Err(format!("must be one of: {}", ENCODINGS.join(", "))) }
}

/// A locale name as the server's C library knows it (`C`, `C.UTF-8`, `en_US.UTF-8`,
/// `de_DE@euro`); whether it is installed is found when the database is created.
pub fn validate_locale(s: &str) -> Result<(), &'static str> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok { Ok(()) } else { Err("must be a locale name such as C, C.UTF-8 or en_US.UTF-8") }
}

/// The predefined roles a managed user may be a member of: none of them reaches the
/// server's files or programs (`pg_read_server_files`, `pg_write_server_files`,
/// `pg_execute_server_program` are never granted).
pub const GRANTABLE_ROLES: &[&str] = &[
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_monitor",
    "pg_read_all_settings",
    "pg_read_all_stats",
    "pg_stat_scan_tables",
    "pg_signal_backend",
    "pg_checkpoint",
];

pub fn validate_grantable_role(s: &str) -> Result<(), String> {
    if GRANTABLE_ROLES.contains(&s) { Ok(()) } else { Err(format!("must be one of: {}", GRANTABLE_ROLES.join(", "))) }
}

/// What a user may do in one managed database. Each level includes the ones before
/// it; `owner` is the database's owner (there is one per database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbPrivilege {
    /// Connect, and use the `public` schema's objects it is granted nothing on.
    Connect,
    /// Read every table and sequence in `public`, now and those its owner makes later.
    ReadOnly,
    /// Read, insert, update, delete and truncate them, and use sequences.
    ReadWrite,
    /// Read-write, plus create schemas and objects in `public`.
    Create,
    /// Own the database (and its `public` schema).
    Owner,
}

impl DbPrivilege {
    pub fn as_str(self) -> &'static str {
        match self {
            DbPrivilege::Connect => "connect",
            DbPrivilege::ReadOnly => "read_only",
            DbPrivilege::ReadWrite => "read_write",
            DbPrivilege::Create => "create",
            DbPrivilege::Owner => "owner",
        }
    }
}

/// A user's privileges per database name.
pub type Grants = BTreeMap<String, DbPrivilege>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["app", "_x", "a1_b", &"a".repeat(63)] {
            assert!(validate_role_name(ok).is_ok(), "{ok}");
            assert!(validate_database_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "App", "1a", "a-b", "a b", "a\"b", &"a".repeat(64), "pg_x", "postgres", "replicator"] {
            assert!(validate_role_name(bad).is_err(), "{bad}");
        }
        for bad in ["template1", "postgres", "pg_db", "x;y"] {
            assert!(validate_database_name(bad).is_err(), "{bad}");
        }
        assert!(validate_locale("en_US.UTF-8").is_ok() && validate_locale("C").is_ok());
        assert!(validate_locale("C'; DROP").is_err() && validate_locale("").is_err());
        assert!(validate_encoding("UTF8").is_ok() && validate_encoding("utf8").is_err());
        assert!(validate_grantable_role("pg_monitor").is_ok());
        for bad in ["pg_execute_server_program", "pg_read_server_files", "pg_write_server_files", "postgres"] {
            assert!(validate_grantable_role(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn privileges_are_ordered_and_named() {
        assert!(DbPrivilege::Connect < DbPrivilege::ReadOnly && DbPrivilege::Create < DbPrivilege::Owner);
        assert_eq!(serde_json::to_string(&DbPrivilege::ReadWrite).unwrap(), "\"read_write\"");
        for p in [DbPrivilege::Connect, DbPrivilege::ReadOnly, DbPrivilege::ReadWrite, DbPrivilege::Create] {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
    }
}
