//! Managed databases and users on the primary. Every statement is built by PostgreSQL
//! itself from literals (`format('%I', …)` then `\gexec`), so a name is quoted by the
//! server's own rules; names were also checked against `herd_core::access` at the
//! API and are checked again here. The SQL travels on psql's stdin as postgres over
//! the primary's own socket, with statement logging off (it carries passwords).

use super::PostgresManager;
use super::layout::Layout;
use super::sql::{self, literal};
use crate::ssh::with_session;
use crate::{Access, ClusterSpec, DbPrivilege, Grants, ManagedDatabase, ManagedUser, ManagerError};
use async_trait::async_trait;
use herd_core::access::{self, GRANTABLE_ROLES};
use herd_core::faults::FaultCode;
use secrecy::{ExposeSecret, SecretString};

const QUIET: &str = "SET log_statement = 'none';\n\
     SET log_min_duration_statement = -1;\n\
     SET log_min_error_statement = 'panic';\n";

fn refused(what: &str, e: impl std::fmt::Display) -> ManagerError {
    ManagerError::permanent(FaultCode::AccessRefused, format!("{what}: {e}"))
}

fn check_user(name: &str) -> Result<(), ManagerError> {
    access::validate_role_name(name).map_err(|e| refused(&format!("user {name:?}"), e))
}

fn check_database(name: &str) -> Result<(), ManagerError> {
    access::validate_database_name(name).map_err(|e| refused(&format!("database {name:?}"), e))
}

/// `SELECT format(<template>, <args>…) <tail>` then `\gexec`: one statement PostgreSQL
/// quotes itself.
fn exec(template: &str, args: &[&str], tail: &str) -> Result<String, ManagerError> {
    let mut lits = vec![literal(template)?];
    for a in args {
        lits.push(literal(a)?);
    }
    Ok(format!("SELECT pg_catalog.format({}){tail}\n\\gexec\n", lits.join(", ")))
}

/// The user's attributes, password and predefined roles.
pub(crate) fn user_script(u: &ManagedUser, admin: &str) -> Result<String, ManagerError> {
    check_user(&u.name)?;
    if u.name == admin {
        return Err(refused(&format!("user {:?}", u.name), "is the cluster's admin role"));
    }
    for r in &u.roles {
        access::validate_grantable_role(r).map_err(|e| refused(&format!("role {r:?}"), e))?;
    }
    let n = &u.name;
    let limit = u.connection_limit.unwrap_or(-1).to_string();
    let mut s = format!("{QUIET}SET password_encryption = 'scram-sha-256';\n");
    s += &exec(
        "CREATE ROLE %I LOGIN",
        &[n],
        &format!(" WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {})", literal(n)?),
    )?;
    s += &exec(
        "ALTER ROLE %I WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
         CONNECTION LIMIT %s PASSWORD %L",
        &[n, &limit, u.password.expose_secret()],
        "",
    )?;
    for r in GRANTABLE_ROLES {
        let verb = if u.roles.iter().any(|x| x == r) { "GRANT %I TO %I" } else { "REVOKE %I FROM %I" };
        s += &exec(verb, &[r, n], "")?;
    }
    Ok(s)
}

pub(crate) fn database_script(d: &ManagedDatabase, admin: &str) -> Result<String, ManagerError> {
    check_database(&d.name)?;
    access::validate_encoding(&d.encoding).map_err(|e| refused("encoding", e))?;
    let owner = d.owner.as_deref().unwrap_or(admin);
    let n = &d.name;
    let mut create = "CREATE DATABASE %I OWNER %I ENCODING %L TEMPLATE template0".to_owned();
    let mut args = vec![n.as_str(), owner, d.encoding.as_str()];
    if let Some(l) = &d.locale {
        access::validate_locale(l).map_err(|e| refused("locale", e))?;
        create.push_str(" LOCALE %L");
        args.push(l);
    }
    let mut s = QUIET.to_owned();
    s += &exec(
        &create,
        &args,
        &format!(" WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = {})", literal(n)?),
    )?;
    s += &exec("ALTER DATABASE %I OWNER TO %I", &[n, owner], "")?;
    // PostgreSQL lets every role connect to a new database (PUBLIC has CONNECT).
    s += &exec("REVOKE ALL ON DATABASE %I FROM PUBLIC", &[n], "")?;
    s += &exec("GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I", &[n, admin], "")?;
    Ok(s)
}

/// Per database: revoke everything the user holds there, then grant its level, in one
/// transaction (no moment with neither the old nor the new privileges).
pub(crate) fn grants_script(
    user: &str,
    grants: &Grants,
    databases: &[ManagedDatabase],
    admin: &str,
) -> Result<String, ManagerError> {
    check_user(user)?;
    let mut s = QUIET.to_owned();
    for d in databases {
        check_database(&d.name)?;
        let owner = d.owner.as_deref().unwrap_or(admin);
        if owner == user {
            continue;
        }
        let n = d.name.as_str();
        let level = grants.get(n).copied();
        s += &format!("\\connect {}\nBEGIN;\n", sql::ident(n)?);
        s += &exec("REVOKE ALL ON DATABASE %I FROM %I", &[n, user], "")?;
        for on in ["SCHEMA public", "ALL TABLES IN SCHEMA public", "ALL SEQUENCES IN SCHEMA public"] {
            s += &exec(&format!("REVOKE ALL ON {on} FROM %I"), &[user], "")?;
        }
        for on in ["TABLES", "SEQUENCES"] {
            s += &exec(
                &format!("ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public REVOKE ALL ON {on} FROM %I"),
                &[owner, user],
                "",
            )?;
        }
        let grant = |what: &str, on: &str| exec(&format!("GRANT {what} ON {on} TO %I"), &[user], "");
        let (tables, seqs) = match level {
            None | Some(DbPrivilege::Owner) => (None, None),
            Some(DbPrivilege::Connect) => (None, None),
            Some(DbPrivilege::ReadOnly) => (Some("SELECT"), Some("SELECT")),
            Some(DbPrivilege::ReadWrite | DbPrivilege::Create) => {
                (Some("SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"), Some("USAGE, SELECT, UPDATE"))
            }
        };
        if level.is_some_and(|l| l != DbPrivilege::Owner) {
            s += &exec("GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I", &[n, user], "")?;
            s += &grant("USAGE", "SCHEMA public")?;
        }
        if let (Some(t), Some(q)) = (tables, seqs) {
            s += &grant(t, "ALL TABLES IN SCHEMA public")?;
            s += &grant(q, "ALL SEQUENCES IN SCHEMA public")?;
            for (what, on) in [(t, "TABLES"), (q, "SEQUENCES")] {
                s += &exec(
                    &format!("ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT {what} ON {on} TO %I"),
                    &[owner, user],
                    "",
                )?;
            }
        }
        if level == Some(DbPrivilege::Create) {
            s += &exec("GRANT CREATE ON DATABASE %I TO %I", &[n, user], "")?;
            s += &grant("CREATE", "SCHEMA public")?;
        }
        s += "COMMIT;\n";
    }
    Ok(s)
}

impl PostgresManager {
    /// Runs `script` on the primary; `secret` (a password it holds) is kept out of the
    /// error text.
    async fn run_sql(
        &self,
        cluster: &ClusterSpec,
        what: &str,
        script: String,
        secret: Option<SecretString>,
    ) -> Result<String, ManagerError> {
        let node = self.leader_node(cluster).await?;
        let l = Layout::new(cluster, &node)?;
        let cmd = sql::psql_command(&l);
        let out = with_session(&node.ssh, move |s| s.exec(&cmd, Some(script.as_bytes()))).await?;
        if out.success() {
            return Ok(out.stdout);
        }
        let tail = out.error_tail();
        let tail = match &secret {
            Some(p) => sql::redact(&tail, p.expose_secret()),
            None => tail,
        };
        if tail.contains("is being accessed by other users") {
            return Err(ManagerError::permanent(
                FaultCode::DatabaseInUse,
                format!("{what}: sessions are connected to it; delete it with force=true to end them"),
            ));
        }
        // psql reached PostgreSQL and it said no (an ERROR line): asking again will not
        // help. Anything else (SSH, no leader) may pass.
        if tail.contains("ERROR:") {
            return Err(refused(what, tail));
        }
        Err(ManagerError::Transient(format!("{what} on {}: {tail}", node.name)))
    }
}

#[async_trait]
impl Access for PostgresManager {
    async fn ensure_user(&self, cluster: &ClusterSpec, user: &ManagedUser) -> Result<(), ManagerError> {
        let script = user_script(user, &cluster.secrets.admin_user)?;
        let what = format!("user {}", user.name);
        self.run_sql(cluster, &what, script, Some(user.password.clone())).await.map(drop)
    }

    async fn ensure_database(&self, cluster: &ClusterSpec, db: &ManagedDatabase) -> Result<(), ManagerError> {
        let script = database_script(db, &cluster.secrets.admin_user)?;
        self.run_sql(cluster, &format!("database {}", db.name), script, None).await.map(drop)
    }

    async fn apply_grants(
        &self,
        cluster: &ClusterSpec,
        user: &str,
        grants: &Grants,
        databases: &[ManagedDatabase],
    ) -> Result<(), ManagerError> {
        let script = grants_script(user, grants, databases, &cluster.secrets.admin_user)?;
        self.run_sql(cluster, &format!("grants of {user}"), script, None).await.map(drop)
    }

    async fn drop_database(&self, cluster: &ClusterSpec, name: &str, force: bool) -> Result<(), ManagerError> {
        check_database(name)?;
        let template = if force { "DROP DATABASE IF EXISTS %I WITH (FORCE)" } else { "DROP DATABASE IF EXISTS %I" };
        let script = format!("{QUIET}{}", exec(template, &[name], "")?);
        self.run_sql(cluster, &format!("database {name}"), script, None).await.map(drop)
    }

    async fn drop_user(&self, cluster: &ClusterSpec, name: &str) -> Result<(), ManagerError> {
        check_user(name)?;
        let admin = cluster.secrets.admin_user.as_str();
        // Ownership and privileges are per database: find every one it can hold them in.
        let list = "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn AND datname <> 'template1' \
                    ORDER BY datname;\n";
        let dbs = self.run_sql(cluster, "listing databases", list.to_owned(), None).await?;
        let exists = format!(" WHERE EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {})", literal(name)?);
        let mut s = QUIET.to_owned();
        s += &format!(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = {};\n",
            literal(name)?
        );
        for db in dbs.lines().map(str::trim).filter(|l| !l.is_empty()) {
            s += &format!("\\connect {}\n", sql::ident(db)?);
            s += &exec("REASSIGN OWNED BY %I TO %I", &[name, admin], &exists)?;
            s += &exec("DROP OWNED BY %I", &[name], &exists)?;
        }
        s += &exec("DROP ROLE IF EXISTS %I", &[name], "")?;
        self.run_sql(cluster, &format!("user {name}"), s, None).await.map(drop)
    }

    async fn missing(
        &self,
        cluster: &ClusterSpec,
        users: &[String],
        databases: &[String],
    ) -> Result<(Vec<String>, Vec<String>), ManagerError> {
        if users.is_empty() && databases.is_empty() {
            return Ok((vec![], vec![]));
        }
        let q = "SELECT 'u ' || rolname FROM pg_catalog.pg_roles UNION ALL \
                 SELECT 'd ' || datname FROM pg_catalog.pg_database;\n";
        let out = self.run_sql(cluster, "reading roles and databases", q.to_owned(), None).await?;
        let have: std::collections::HashSet<&str> = out.lines().map(str::trim).collect();
        let users = users.iter().filter(|u| !have.contains(format!("u {u}").as_str())).cloned().collect();
        let dbs = databases.iter().filter(|d| !have.contains(format!("d {d}").as_str())).cloned().collect();
        Ok((users, dbs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> ManagedUser {
        ManagedUser {
            name: name.into(),
            password: SecretString::from("pa'ss".to_owned()),
            connection_limit: Some(5),
            roles: vec!["pg_monitor".into()],
        }
    }

    #[test]
    fn scripts_quote_through_format() {
        let s = user_script(&user("app"), "admin").unwrap();
        assert!(s.starts_with(QUIET), "{s}");
        assert!(s.contains("format('ALTER ROLE %I WITH LOGIN"), "{s}");
        assert!(s.contains("'app', '5', 'pa''ss')"), "{s}");
        assert!(s.contains("format('GRANT %I TO %I', 'pg_monitor', 'app')"), "{s}");
        assert!(s.contains("format('REVOKE %I FROM %I', 'pg_read_all_data', 'app')"), "{s}");
        assert!(!s.contains("pg_execute_server_program"), "{s}");
        assert_eq!(user_script(&user("admin"), "admin").unwrap_err().code(), "access_refused");
        assert_eq!(user_script(&user("Bad-Name"), "admin").unwrap_err().code(), "access_refused");
        let mut u = user("app");
        u.roles = vec!["pg_read_server_files".into()];
        assert!(user_script(&u, "admin").is_err());

        let d = ManagedDatabase {
            name: "shop".into(),
            owner: None,
            encoding: "UTF8".into(),
            locale: Some("C.UTF-8".into()),
        };
        let s = database_script(&d, "admin").unwrap();
        assert!(s.contains("'shop', 'admin', 'UTF8', 'C.UTF-8')"), "{s}");
        assert!(s.contains("REVOKE ALL ON DATABASE %I FROM PUBLIC"), "{s}");
        let bad = ManagedDatabase { locale: Some("x'y".into()), ..d.clone() };
        assert!(database_script(&bad, "admin").is_err());

        let other = ManagedDatabase { name: "crm".into(), owner: Some("app".into()), ..d.clone() };
        let grants = Grants::from([("shop".to_owned(), DbPrivilege::ReadOnly)]);
        let s = grants_script("app", &grants, &[d, other], "admin").unwrap();
        assert!(s.contains("\\connect \"shop\"\nBEGIN;"), "{s}");
        assert!(!s.contains("\\connect \"crm\""), "the database it owns is left alone: {s}");
        assert!(s.contains("format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', 'app')"), "{s}");
        assert!(!s.contains("INSERT"), "{s}");
    }
}
