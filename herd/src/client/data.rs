//! `herd backup …`, `herd snapshot …`, `herd backup-policy …`.

use herd_client::Client;
use herd_client::types::{BackupDto, BackupPolicyDto, BackupPolicyRequest, BackupRequest, BackupType, SnapshotDto};

use super::output::{Out, ago, fields, mb, note, opt, table};
use super::{finish, parse_id, started};
use crate::cli::{BackupCmd, PolicyCmd, SnapshotCmd};

pub async fn backup(api: &Client, cmd: BackupCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Create { cluster, backup_type, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let backup_type = backup_type.parse::<BackupType>().map_err(super::usage)?;
            let created = api.create_backup(c.id, &BackupRequest { backup_type: Some(backup_type) }).await?;
            let show = || out.result(&created, |o| backup_text(o, &created.backup));
            let now = || async {
                let b = api.backup(created.backup.id).await?;
                out.result(&b, |o| backup_text(o, &b))
            };
            started(api, out, &wait, created.task_id, &format!("{backup_type} backup of {}", c.name), show, now).await
        }
        BackupCmd::List { cluster } => {
            let id = match cluster {
                Some(c) => Some(api.find_cluster(&c).await?.id),
                None => None,
            };
            let all = api.backups(id).await?;
            out.result(&all, |o| backups_table(o, &all))
        }
        BackupCmd::Show { id } => {
            let b = api.backup(parse_id(&id, "backup")?).await?;
            out.result(&b, |o| backup_text(o, &b))
        }
        BackupCmd::Expire { id, wait } => {
            let t = api.expire_backup(parse_id(&id, "backup")?).await?;
            out.result(&t, |_| String::new())?;
            finish(api, t.task_id, &format!("expire backup {id}"), &wait, out).await
        }
    }
}

fn backups_table(out: &Out, all: &[BackupDto]) -> String {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| {
            vec![
                b.id.to_string(),
                b.backup_type.to_string(),
                out.state(b.status.as_str()),
                opt(b.label.as_ref()),
                b.size_bytes.map_or("-".into(), mb),
                b.repo_size_bytes.map_or("-".into(), mb),
                b.repository.clone(),
                b.finished_at.map_or("-".into(), |t| format!("{} ago", ago(t))),
            ]
        })
        .collect();
    table(&["ID", "TYPE", "STATUS", "LABEL", "SIZE MB", "REPO MB", "REPOSITORY", "FINISHED"], &rows)
}

fn backup_text(out: &Out, b: &BackupDto) -> String {
    fields(&[
        ("id", b.id.to_string()),
        ("cluster", b.cluster_id.to_string()),
        ("type", b.backup_type.to_string()),
        ("status", out.state(b.status.as_str())),
        ("label", opt(b.label.as_ref())),
        ("size", b.size_bytes.map_or("-".into(), |s| format!("{} MB", mb(s)))),
        ("added to repository", b.repo_size_bytes.map_or("-".into(), |s| format!("{} MB", mb(s)))),
        ("wal", format!("{} → {}", opt(b.wal_start.as_ref()), opt(b.wal_stop.as_ref()))),
        ("repository", b.repository.clone()),
        ("started", opt(b.started_at.map(|t| t.to_rfc3339()))),
        ("finished", opt(b.finished_at.map(|t| t.to_rfc3339()))),
        ("error", opt(b.error.as_ref())),
        ("task", opt(b.task_id)),
    ])
}

pub async fn snapshot(api: &Client, cmd: SnapshotCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Create { cluster, wait } => {
            let c = api.find_cluster(&cluster).await?;
            let created = api.create_snapshot(c.id).await?;
            let show = || out.result(&created, |o| snapshot_text(o, &created.snapshot));
            let now = || async {
                let s = api.snapshot(created.snapshot.id).await?;
                out.result(&s, |o| snapshot_text(o, &s))
            };
            started(api, out, &wait, created.task_id, &format!("snapshot of {}", c.name), show, now).await
        }
        SnapshotCmd::List { cluster } => {
            let id = match cluster {
                Some(c) => Some(api.find_cluster(&c).await?.id),
                None => None,
            };
            let all = api.snapshots(id).await?;
            out.result(&all, |o| {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            out.state(s.status.as_str()),
                            s.size_gb.to_string(),
                            opt(s.cluster_id),
                            opt(s.stop_lsn.as_ref()),
                            format!("{} ago", ago(s.created_at)),
                        ]
                    })
                    .collect();
                let _ = o;
                table(&["ID", "STATUS", "SIZE GB", "CLUSTER", "CONSISTENT AT", "CREATED"], &rows)
            })
        }
        SnapshotCmd::Show { id } => {
            let s = api.snapshot(parse_id(&id, "snapshot")?).await?;
            out.result(&s, |o| snapshot_text(o, &s))
        }
        SnapshotCmd::Delete { id, wait } => {
            let t = api.delete_snapshot(parse_id(&id, "snapshot")?).await?;
            out.result(&t, |_| String::new())?;
            finish(api, t.task_id, &format!("delete snapshot {id}"), &wait, out).await
        }
    }
}

fn snapshot_text(out: &Out, s: &SnapshotDto) -> String {
    fields(&[
        ("id", s.id.to_string()),
        ("status", out.state(s.status.as_str())),
        ("cluster", opt(s.cluster_id)),
        ("provider", s.provider.clone()),
        ("size", format!("{} GB", s.size_gb)),
        ("version", format!("{} {}", opt(s.datastore.as_ref()), opt(s.version.as_ref()))),
        ("lsn", format!("{} → {}", opt(s.start_lsn.as_ref()), opt(s.stop_lsn.as_ref()))),
        ("error", opt(s.error.as_ref())),
        ("created", s.created_at.to_rfc3339()),
    ])
}

pub async fn policy(api: &Client, cmd: PolicyCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Get { cluster } => {
            let c = api.find_cluster(&cluster).await?;
            match api.backup_policy(c.id).await? {
                Some(p) => out.result(&p, |_| policy_text(&p)),
                None => {
                    note(format!("{} has no backup policy", c.name));
                    out.result(&serde_json::Value::Null, |_| String::new())
                }
            }
        }
        PolicyCmd::Set { cluster, full, diff, incr, keep } => {
            let c = api.find_cluster(&cluster).await?;
            let req = BackupPolicyRequest {
                full_schedule: full,
                diff_schedule: diff,
                incremental_schedule: incr,
                retention_full: keep,
            };
            let p = api.set_backup_policy(c.id, &req).await?;
            out.result(&p, |_| policy_text(&p))
        }
        PolicyCmd::Delete { cluster } => {
            let c = api.find_cluster(&cluster).await?;
            api.delete_backup_policy(c.id).await?;
            note(format!("{}: backup policy removed", c.name));
            Ok(())
        }
    }
}

fn policy_text(p: &BackupPolicyDto) -> String {
    let next = |t: Option<chrono::DateTime<chrono::Utc>>| opt(t.map(|t| t.to_rfc3339()));
    fields(&[
        ("full", format!("{}  (next {})", p.full_schedule, next(p.next_full_at))),
        ("diff", p.diff_schedule.as_ref().map_or("-".into(), |s| format!("{s}  (next {})", next(p.next_diff_at)))),
        (
            "incremental",
            p.incremental_schedule
                .as_ref()
                .map_or("-".into(), |s| format!("{s}  (next {})", next(p.next_incremental_at))),
        ),
        ("keep full backups", p.retention_full.to_string()),
        ("waiting since", next(p.waiting_since)),
    ])
}
