//! `herd database …` and `herd user …`: a cluster's managed databases and users.

use herd_client::Client;
use herd_client::types::{CreateDatabase, CreateUser, DatabaseDto, DbPrivilege, UpdateUser, UserAccepted, UserDto};
use secrecy::SecretString;
use std::collections::BTreeMap;
use uuid::Uuid;

use super::output::{Out, fields, note, opt, table};
use super::{finish, usage};
use crate::cli::{DatabaseCmd, UserCmd, WaitArgs};

/// `shop=read_only` → (`shop`, ReadOnly).
fn parse_grants(all: &[String]) -> anyhow::Result<BTreeMap<String, DbPrivilege>> {
    let mut out = BTreeMap::new();
    for g in all {
        let (db, p) = g.split_once('=').ok_or_else(|| usage(format!("--grant {g}: expected DB=PRIVILEGE")))?;
        let p: DbPrivilege = serde_json::from_value(serde_json::Value::String(p.to_owned())).map_err(|_| {
            usage(format!("--grant {g}: the privilege is one of connect, read_only, read_write, create, owner"))
        })?;
        out.insert(db.to_owned(), p);
    }
    Ok(out)
}

/// The change is applied by a sync task: follow it with --wait, or say it waits for
/// the task holding the cluster.
async fn applied(api: &Client, task: Option<Uuid>, what: &str, wait: &WaitArgs, out: &Out) -> anyhow::Result<()> {
    match task {
        Some(t) => finish(api, t, what, wait, out).await,
        None => {
            note(format!("{what}: recorded; it is applied once the task holding the cluster ends"));
            Ok(())
        }
    }
}

pub async fn database(api: &Client, cmd: DatabaseCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        DatabaseCmd::Create { cluster, name, owner, encoding, locale, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let a = api.create_database(c.id, &CreateDatabase { name: name.clone(), owner, encoding, locale }).await?;
            out.result(&a, |o| database_text(o, &a.database))?;
            applied(api, a.task_id, &format!("database {name} in {}", c.name), &wait, out).await
        }
        DatabaseCmd::List { cluster } => {
            let c = api.find_cluster(&cluster).await?;
            let all = api.databases(c.id).await?;
            out.result(&all, |o| databases_table(o, &all))
        }
        DatabaseCmd::Delete { cluster, name, force, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let a = api.delete_database(c.id, &name, force).await?;
            out.result(&a, |_| String::new())?;
            applied(api, a.task_id, &format!("drop database {name} in {}", c.name), &wait, out).await
        }
    }
}

fn databases_table(out: &Out, all: &[DatabaseDto]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                out.state(d.status.as_str()),
                d.owner.clone().unwrap_or_else(|| "(admin)".into()),
                d.encoding.clone(),
                opt(d.locale.as_ref()),
                opt(d.error.as_ref()),
            ]
        })
        .collect();
    table(&["NAME", "STATUS", "OWNER", "ENCODING", "LOCALE", "ERROR"], &rows)
}

fn database_text(out: &Out, d: &DatabaseDto) -> String {
    fields(&[
        ("name", d.name.clone()),
        ("status", out.state(d.status.as_str())),
        ("owner", d.owner.clone().unwrap_or_else(|| "(admin)".into())),
        ("encoding", d.encoding.clone()),
        ("locale", opt(d.locale.as_ref())),
        ("error", opt(d.error.as_ref())),
    ])
}

fn grants_text(u: &UserDto) -> String {
    if u.grants.is_empty() {
        return "-".into();
    }
    u.grants.iter().map(|(d, p)| format!("{d}={}", p.as_str())).collect::<Vec<_>>().join(",")
}

fn user_text(out: &Out, a: &UserAccepted) -> String {
    let u = &a.user;
    let mut f = vec![
        ("name", u.name.clone()),
        ("status", out.state(u.status.as_str())),
        ("grants", grants_text(u)),
        ("roles", if u.roles.is_empty() { "-".into() } else { u.roles.join(",") }),
        ("connection limit", opt(u.connection_limit)),
        ("error", opt(u.error.as_ref())),
    ];
    if let Some(p) = &a.password {
        f.push(("password", format!("{p}  (shown once)")));
    }
    fields(&f)
}

pub async fn user(api: &Client, cmd: UserCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Create { cluster, name, grants, roles, connection_limit, password_stdin, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                Some(SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned()))
            } else {
                None
            };
            let req =
                CreateUser { name: name.clone(), password, connection_limit, roles, grants: parse_grants(&grants)? };
            let a = api.create_user(c.id, &req).await?;
            out.result(&a, |o| user_text(o, &a))?;
            applied(api, a.task_id, &format!("user {name} in {}", c.name), &wait, out).await
        }
        UserCmd::List { cluster } => {
            let c = api.find_cluster(&cluster).await?;
            let all = api.users(c.id).await?;
            out.result(&all, |o| {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|u| {
                        vec![
                            u.name.clone(),
                            o.state(u.status.as_str()),
                            grants_text(u),
                            if u.roles.is_empty() { "-".into() } else { u.roles.join(",") },
                            opt(u.connection_limit),
                            opt(u.error.as_ref()),
                        ]
                    })
                    .collect();
                table(&["NAME", "STATUS", "GRANTS", "ROLES", "LIMIT", "ERROR"], &rows)
            })
        }
        UserCmd::Update { cluster, name, grants, no_grants, roles, connection_limit, rotate_password, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let grants = if no_grants {
                Some(BTreeMap::new())
            } else if grants.is_empty() {
                None
            } else {
                Some(parse_grants(&grants)?)
            };
            let roles = if roles.is_empty() { None } else { Some(roles) };
            let req = UpdateUser { password: None, rotate_password, connection_limit, roles, grants };
            let a = api.update_user(c.id, &name, &req).await?;
            out.result(&a, |o| user_text(o, &a))?;
            applied(api, a.task_id, &format!("user {name} in {}", c.name), &wait, out).await
        }
        UserCmd::Delete { cluster, name, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let a = api.delete_user(c.id, &name).await?;
            out.result(&a, |_| String::new())?;
            applied(api, a.task_id, &format!("drop user {name} in {}", c.name), &wait, out).await
        }
    }
}
