//! SQL text built by Herd. Values are escaped as SQL literals or identifiers and the
//! text travels on psql's stdin, never on a command line.

use super::as_user;
use super::layout::{Layout, PG_PORT};
use crate::ManagerError;
use crate::shell::quote;
use herd_core::faults::FaultCode;

/// A standard SQL string literal (`standard_conforming_strings` is on since
/// PostgreSQL 9.1, so backslashes are plain characters and only `'` is doubled).
pub fn literal(s: &str) -> Result<String, ManagerError> {
    if s.contains('\0') {
        return Err(ManagerError::permanent(FaultCode::InvalidValue, "text values cannot contain NUL"));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// A quoted SQL identifier.
pub fn ident(s: &str) -> Result<String, ManagerError> {
    if s.contains('\0') {
        return Err(ManagerError::permanent(FaultCode::InvalidValue, "identifiers cannot contain NUL"));
    }
    Ok(format!("\"{}\"", s.replace('"', "\"\"")))
}

/// Roles Herd itself relies on; the admin must be another one.
const RESERVED_ROLES: &[&str] = &["postgres", "replicator", "public", "none", "current_user", "session_user"];

/// Takes back from every role but the superusers what reaches the server's OS: running
/// programs and reading or writing server files (the `pg_*_server_*` roles), and
/// `CREATEROLE`, with which a role could grant those to itself. Clusters made before
/// the admin lost `CREATEROLE` may hold such grants (on the admin or on roles it
/// made); this runs with every password set, so they go.
const LOCK_DOWN: &str = "SELECT pg_catalog.format('REVOKE %I FROM %I', g.rolname, m.rolname)\n\
     FROM pg_catalog.pg_auth_members a\n\
     JOIN pg_catalog.pg_roles g ON g.oid = a.roleid\n\
     JOIN pg_catalog.pg_roles m ON m.oid = a.member\n\
     WHERE g.rolname IN ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files')\n\
     AND NOT m.rolsuper\n\
     \\gexec\n\
     SELECT pg_catalog.format('ALTER ROLE %I NOCREATEROLE', rolname)\n\
     FROM pg_catalog.pg_roles WHERE rolcreaterole AND NOT rolsuper\n\
     \\gexec\n";

/// Creates the admin role when it is missing and (re)sets its password. Since
/// PostgreSQL 15 only a database's owner may create objects in its `public` schema,
/// so the admin gets that right in the default database (databases it creates are
/// its own), plus monitoring and the right to cancel other sessions; never
/// `CREATEROLE` or anything else that reaches the OS ([`LOCK_DOWN`]). The session
/// first turns statement logging off, so the password reaches no server log even
/// when `log_statement = all` or when a statement fails.
pub fn admin_password_script(user: &str, password: &str) -> Result<String, ManagerError> {
    if user.is_empty() || user.len() > 63 || RESERVED_ROLES.contains(&user) || user.starts_with("pg_") {
        return Err(ManagerError::permanent(
            FaultCode::InvalidAdminUser,
            format!("{user:?} cannot be the admin role (empty, too long, reserved or pg_*)"),
        ));
    }
    if password.is_empty() {
        return Err(ManagerError::permanent(FaultCode::InvalidSecrets, "the admin password must not be empty"));
    }
    let (name_lit, name_id, pw) = (literal(user)?, ident(user)?, literal(password)?);
    Ok(format!(
        "SET log_statement = 'none';\n\
         SET log_min_duration_statement = -1;\n\
         SET log_min_error_statement = 'panic';\n\
         SET password_encryption = 'scram-sha-256';\n\
         SELECT pg_catalog.format('CREATE ROLE %I LOGIN CREATEDB NOCREATEROLE', {name_lit})\n\
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name_lit})\n\
         \\gexec\n\
         ALTER ROLE {name_id} WITH LOGIN CREATEDB NOCREATEROLE PASSWORD {pw};\n\
         GRANT CREATE, USAGE ON SCHEMA public TO {name_id};\n\
         GRANT pg_monitor, pg_signal_backend TO {name_id};\n\
         {LOCK_DOWN}"
    ))
}

/// Removes `secret` from text shown to people (error messages with psql output).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() { text.to_owned() } else { text.replace(secret, "***") }
}

/// psql as the superuser over the node's own socket (peer authentication through
/// the `herd` ident map, as the node's service user), SQL on stdin.
pub(super) fn psql_command(l: &Layout) -> String {
    format!(
        "{} env HOME={} {} -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=terse -h {} -p {PG_PORT} -U postgres -d postgres -f -",
        as_user(l.pg_user()),
        quote(&l.pg_home),
        quote(&format!("{}/psql", l.bin_dir)),
        quote(&l.socket_dir),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers_are_escaped() {
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert_eq!(literal(r"a\b").unwrap(), r"'a\b'");
        assert_eq!(ident("we\"ird").unwrap(), "\"we\"\"ird\"");
        assert!(literal("a\0b").is_err());
    }

    #[test]
    fn admin_script_is_idempotent_sql() {
        let sql = admin_password_script("app_admin", "p'w").unwrap();
        assert!(sql.starts_with("SET log_statement = 'none';"), "{sql}");
        assert!(sql.contains("WHERE rolname = 'app_admin'"), "{sql}");
        assert!(sql.contains("ALTER ROLE \"app_admin\" WITH LOGIN CREATEDB NOCREATEROLE PASSWORD 'p''w';"), "{sql}");
        assert!(sql.ends_with(LOCK_DOWN), "{sql}");
        for bad in ["postgres", "replicator", "pg_monitor", ""] {
            assert_eq!(admin_password_script(bad, "x").unwrap_err().code(), "invalid_admin_user", "{bad}");
        }
        assert_eq!(redact("bad p'w here", "p'w"), "bad *** here");
    }
}
