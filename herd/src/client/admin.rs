//! `herd login`, `herd context …`, keys, tasks, projects and tokens, the catalogue.

use anyhow::Context as _;
use herd_client::Client;
use herd_client::types::{CreateKey, CreateToken, Quota, SetQuotas, TokenRole};
use std::path::PathBuf;
use uuid::Uuid;

use super::context::{CliConfig, ContextEntry};
use super::output::{Out, ago, fields, note, opt, table};
use super::{parse_id, progress, read_stdin_secret, usage};
use crate::cli::{ConnArgs, ContextCmd, KeyCmd, ProjectCmd, TaskCmd, TokenCmd};

/// Saves a context after checking that the URL answers and the token is valid. The
/// token is never printed.
pub async fn login(
    conn: &ConnArgs,
    token_file: Option<PathBuf>,
    token_stdin: bool,
    name: &str,
    out: &Out,
) -> anyhow::Result<()> {
    let url = conn.url.clone().ok_or_else(|| usage("herd login needs --url (or HERD_URL)"))?;
    let token = match (token_file, token_stdin, &conn.token) {
        (Some(f), _, _) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading the token from {}", f.display()))?
            .trim()
            .to_owned(),
        (None, true, _) => read_stdin_secret("token")?,
        (None, false, Some(t)) => t.clone(),
        (None, false, None) => return Err(usage("herd login needs --token-file, --token-stdin or --token")),
    };
    let api = Client::new(&url, &token)?;
    // Any authenticated read proves both; 401 says the token is wrong.
    api.datastores().await?;
    let mut config = CliConfig::load()?;
    config.contexts.insert(name.to_owned(), ContextEntry { url: url.clone(), token });
    config.current = Some(name.to_owned());
    let path = config.save()?;
    let _ = out;
    note(format!("logged in to {url}; context {name:?} saved in {} and made current", path.display()));
    Ok(())
}

pub fn context(cmd: ContextCmd, out: &Out) -> anyhow::Result<()> {
    let mut config = CliConfig::load()?;
    match cmd {
        ContextCmd::List => {
            #[derive(serde::Serialize)]
            struct Ctx<'a> {
                name: &'a str,
                url: &'a str,
                current: bool,
            }
            let list: Vec<Ctx> = config
                .contexts
                .iter()
                .map(|(n, c)| Ctx { name: n, url: &c.url, current: config.current.as_deref() == Some(n) })
                .collect();
            out.result(&list, |_| {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|c| {
                        vec![if c.current { "*".into() } else { String::new() }, c.name.to_owned(), c.url.to_owned()]
                    })
                    .collect();
                table(&["CURRENT", "NAME", "URL"], &rows)
            })
        }
        ContextCmd::Use { name } => {
            config.get(&name).map_err(usage)?;
            config.current = Some(name.clone());
            config.save()?;
            note(format!("using context {name:?}"));
            Ok(())
        }
        ContextCmd::Delete { name } => {
            config.get(&name).map_err(usage)?;
            config.contexts.remove(&name);
            if config.current.as_deref() == Some(&name) {
                config.current = None;
            }
            config.save()?;
            note(format!("context {name:?} deleted"));
            Ok(())
        }
    }
}

/// A key by name or id.
pub async fn find_key(api: &Client, name_or_id: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(name_or_id) {
        return Ok(id);
    }
    let keys = api.keys().await?;
    keys.iter()
        .find(|k| k.name == name_or_id)
        .map(|k| k.id)
        .ok_or_else(|| usage(format!("no key {name_or_id:?} (see `herd key list`)")))
}

pub async fn key(api: &Client, cmd: KeyCmd, out: &Out) -> anyhow::Result<()> {
    let key_text = |k: &herd_client::types::KeyDto| {
        fields(&[
            ("id", k.id.to_string()),
            ("name", k.name.clone()),
            ("algorithm", k.algorithm.clone()),
            ("fingerprint", k.fingerprint.clone()),
            ("public key", k.public_key.clone()),
            ("created", k.created_at.to_rfc3339()),
        ])
    };
    match cmd {
        KeyCmd::Create { name, private_key_file } => {
            let private_key = private_key_file
                .map(|f| std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display())))
                .transpose()?
                .map(Into::into);
            let k = api.create_key(&CreateKey { name, private_key, passphrase: None }).await?;
            out.result(&k, |_| key_text(&k))
        }
        KeyCmd::List => {
            let keys = api.keys().await?;
            out.result(&keys, |_| {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            k.algorithm.clone(),
                            k.fingerprint.clone(),
                            ago(k.created_at),
                            k.id.to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "ALGORITHM", "FINGERPRINT", "AGE", "ID"], &rows)
            })
        }
        KeyCmd::Show { key } => {
            let k = api.key(find_key(api, &key).await?).await?;
            out.result(&k, |_| key_text(&k))
        }
        KeyCmd::Delete { key } => {
            api.delete_key(find_key(api, &key).await?).await?;
            note(format!("key {key} deleted"));
            Ok(())
        }
    }
}

pub async fn task(api: &Client, cmd: TaskCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        TaskCmd::Show { id } => {
            let t = api.task(parse_id(&id, "task")?).await?;
            out.result(&t, |o| {
                fields(&[
                    ("id", t.id.to_string()),
                    ("kind", t.kind.to_string()),
                    ("cluster", opt(t.cluster_id)),
                    ("status", o.state(t.status.as_str())),
                    ("step", opt(t.step.as_ref())),
                    ("progress", format!("{}%", t.progress)),
                    ("error", t.error.as_ref().map_or("-".into(), |e| format!("{}: {}", e.code, e.message))),
                    ("created", t.created_at.to_rfc3339()),
                    ("started", opt(t.started_at.map(|t| t.to_rfc3339()))),
                    ("finished", opt(t.finished_at.map(|t| t.to_rfc3339()))),
                ])
            })
        }
        TaskCmd::Watch { id, timeout } => {
            let id = parse_id(&id, "task")?;
            let t = api.task(id).await?;
            let what = format!("{} {id}", t.kind);
            let t = progress::follow(api, id, &what, out, timeout).await?;
            out.result(&t, |_| String::new())
        }
    }
}

pub async fn project(api: &Client, cmd: ProjectCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        ProjectCmd::Create { name } => {
            let p = api.create_project(&name).await?;
            out.result(&p, |_| fields(&[("id", p.id.to_string()), ("name", p.name.clone())]))
        }
        ProjectCmd::List => {
            let ps = api.projects().await?;
            out.result(&ps, |_| {
                let rows: Vec<Vec<String>> =
                    ps.iter().map(|p| vec![p.name.clone(), ago(p.created_at), p.id.to_string()]).collect();
                table(&["NAME", "AGE", "ID"], &rows)
            })
        }
        ProjectCmd::Quota { project, set, reset } => {
            let pid = find_project(api, &project).await?;
            let mut q = api.quotas(pid).await?;
            if !set.is_empty() || !reset.is_empty() {
                // PUT replaces every override: start from the ones the project has.
                let mut own: Vec<(Quota, Option<u64>)> =
                    Quota::ALL.iter().map(|&k| (k, q.get(k).overridden.then_some(q.get(k).limit))).collect();
                for s in &set {
                    let (name, n) = s.split_once('=').ok_or_else(|| usage(format!("--set {s:?}: use NAME=N")))?;
                    let n = n.trim().parse::<u64>().map_err(|_| usage(format!("--set {s:?}: N is not a number")))?;
                    let k = quota_named(name)?;
                    own.iter_mut().filter(|(x, _)| *x == k).for_each(|e| e.1 = Some(n));
                }
                for name in &reset {
                    let k = quota_named(name)?;
                    own.iter_mut().filter(|(x, _)| *x == k).for_each(|e| e.1 = None);
                }
                let get = |k: Quota| own.iter().find(|(x, _)| *x == k).and_then(|(_, v)| *v);
                let req = SetQuotas {
                    clusters: get(Quota::Clusters),
                    nodes: get(Quota::Nodes),
                    volume_gb: get(Quota::VolumeGb),
                    snapshots: get(Quota::Snapshots),
                    backups: get(Quota::Backups),
                    keys: get(Quota::Keys),
                };
                q = api.set_quotas(pid, &req).await?;
            }
            out.result(&q, |_| {
                let rows: Vec<Vec<String>> = Quota::ALL
                    .iter()
                    .map(|&k| {
                        let l = q.get(k);
                        let whose = if l.overridden { "project" } else { "default" };
                        vec![k.to_string(), l.used.to_string(), l.limit.to_string(), whose.into()]
                    })
                    .collect();
                table(&["QUOTA", "USED", "LIMIT", "SET BY"], &rows)
            })
        }
    }
}

/// A quota by the name the API gives it, or a usage error listing them.
fn quota_named(name: &str) -> anyhow::Result<Quota> {
    let name = name.trim();
    Quota::ALL.iter().copied().find(|k| k.as_str() == name).ok_or_else(|| {
        let all: Vec<&str> = Quota::ALL.iter().map(|k| k.as_str()).collect();
        usage(format!("no quota {name:?}: one of {}", all.join(", ")))
    })
}

/// A project by name or id.
async fn find_project(api: &Client, name_or_id: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(name_or_id) {
        return Ok(id);
    }
    api.projects()
        .await?
        .into_iter()
        .find(|p| p.name == name_or_id)
        .map(|p| p.id)
        .ok_or_else(|| usage(format!("no project {name_or_id:?} (see `herd project list`)")))
}

pub async fn token(api: &Client, cmd: TokenCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create { project, name, role } => {
            let pid = find_project(api, &project).await?;
            let role = match role.as_str() {
                "operator" => TokenRole::Operator,
                "admin" => TokenRole::Admin,
                _ => TokenRole::Member,
            };
            let t = api.create_token(pid, &CreateToken { name, role: Some(role) }).await?;
            note("the token is shown only now; Herd keeps only its hash");
            out.result(&t, |_| format!("{}\n", t.token))
        }
        TokenCmd::List { project } => {
            let pid = find_project(api, &project).await?;
            let ts = api.tokens(pid).await?;
            out.result(&ts, |_| {
                let rows: Vec<Vec<String>> = ts
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.role.to_string(),
                            t.last_used_at.map_or("never".into(), |l| format!("{} ago", ago(l))),
                            t.revoked_at.map_or("-".into(), |r| r.to_rfc3339()),
                            t.id.to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "ROLE", "LAST USED", "REVOKED", "ID"], &rows)
            })
        }
        TokenCmd::Revoke { project, token } => {
            let pid = find_project(api, &project).await?;
            api.revoke_token(pid, parse_id(&token, "token")?).await?;
            note(format!("token {token} revoked"));
            Ok(())
        }
    }
}

pub async fn datastores(api: &Client, out: &Out) -> anyhow::Result<()> {
    let ds = api.datastores().await?;
    out.result(&ds, |_| {
        let rows: Vec<Vec<String>> = ds
            .iter()
            .flat_map(|d| {
                d.versions.iter().map(move |v| {
                    vec![
                        d.name.clone(),
                        v.version.clone(),
                        if v.active { "yes".into() } else { "no".into() },
                        v.packages.join(" "),
                    ]
                })
            })
            .collect();
        table(&["DATASTORE", "VERSION", "ACTIVE", "PACKAGES"], &rows)
    })
}

pub async fn flavors(api: &Client, out: &Out) -> anyhow::Result<()> {
    let fs = api.flavors().await?;
    out.result(&fs, |_| {
        let rows: Vec<Vec<String>> = fs
            .iter()
            .map(|f| vec![f.id.clone(), f.provider.clone(), f.vcpus.to_string(), f.ram_mb.to_string()])
            .collect();
        table(&["FLAVOR", "PROVIDER", "VCPUS", "RAM MB"], &rows)
    })
}

pub async fn providers(api: &Client, out: &Out) -> anyhow::Result<()> {
    let ps = api.providers().await?;
    out.result(&ps, |_| {
        let yes = |b: bool| if b { "yes".to_owned() } else { "no".to_owned() };
        let rows: Vec<Vec<String>> = ps
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.kind.clone(),
                    yes(p.capabilities.volumes),
                    yes(p.capabilities.snapshots),
                    yes(p.capabilities.power_control),
                ]
            })
            .collect();
        table(&["PROVIDER", "KIND", "VOLUMES", "SNAPSHOTS", "POWER"], &rows)
    })
}
