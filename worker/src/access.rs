//! `sync_access`: brings a cluster's managed databases and users to their desired
//! state on the primary, and the loop that opens such a sync for changes made while
//! the cluster was busy. Each row's outcome is recorded on the row (ready, removed,
//! or error with PostgreSQL's reason); a row changed while the sync ran stays pending
//! and the next round takes it.

use herd_core::faults::FaultCode;
use herd_core::status::AccessStatus;
use herd_datastores::{ManagedDatabase, ManagedUser, ManagerError};
use herd_store::{AccessItem, ManagedDatabaseRow};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::Ctx;
use crate::create::Build;
use crate::day2::running_spec;
use crate::steps::{Job, StepError};

/// Rounds of one sync: changes that arrive while it runs are taken by the next round.
const ROUNDS: usize = 5;
/// How often every worker looks for changes no sync has taken.
const SCAN_EVERY: Duration = Duration::from_secs(10);

fn desired(d: &ManagedDatabaseRow) -> ManagedDatabase {
    ManagedDatabase {
        name: d.name.clone(),
        owner: d.owner.clone(),
        encoding: d.encoding.clone(),
        locale: d.locale.clone(),
    }
}

fn reason(e: &ManagerError) -> String {
    format!("{}: {e}", e.code())
}

pub async fn run_sync(job: &Job) -> Result<(), StepError> {
    let b = Build::load(job).await?;
    let (spec, _) = running_spec(&b).await?;
    let (c, access, store) = (&b.cluster, &b.manager.access, &job.ctx.store);
    let mut failed: Vec<String> = vec![];
    for _ in 0..ROUNDS {
        job.check_cancelled()?;
        let plan = store.access_plan(c.id).await?;
        let ready = |s: AccessStatus| s == AccessStatus::Ready;
        let ready_users: Vec<String> =
            plan.users.iter().filter(|(u, _)| ready(u.status)).map(|(u, _)| u.name.clone()).collect();
        let ready_dbs: Vec<String> =
            plan.databases.iter().filter(|d| ready(d.status)).map(|d| d.name.clone()).collect();
        let (lost_users, lost_dbs) = match access.missing(&spec, &ready_users, &ready_dbs).await {
            Ok(m) => m,
            Err(e) => return Err(give_up(job, c.id, &plan, e).await),
        };
        if !lost_users.is_empty() || !lost_dbs.is_empty() {
            let msg = format!(
                "the primary lacks {}; applying them again",
                lost_users
                    .iter()
                    .map(|u| format!("user {u}"))
                    .chain(lost_dbs.iter().map(|d| format!("database {d}")))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            store.log_event(c, Some(job.task.id), "warn", Some("sync_access"), &msg).await?;
        }
        let todo_db = |d: &ManagedDatabaseRow| d.status == AccessStatus::Pending || lost_dbs.contains(&d.name);
        let db_work: Vec<&ManagedDatabaseRow> = plan.databases.iter().filter(|d| todo_db(d)).collect();
        let remade: BTreeSet<&str> = db_work.iter().map(|d| d.name.as_str()).collect();
        // Users whose own row changed, who were lost, or who hold grants in a database
        // being (re)made.
        let user_work: Vec<_> = plan
            .users
            .iter()
            .filter(|(u, _)| {
                u.status == AccessStatus::Pending
                    || lost_users.contains(&u.name)
                    || (u.status == AccessStatus::Ready && u.grants.keys().any(|g| remade.contains(g.as_str())))
            })
            .collect();
        let drop_dbs: Vec<&ManagedDatabaseRow> =
            plan.databases.iter().filter(|d| d.status == AccessStatus::Deleting).collect();
        let drop_users: Vec<_> = plan.users.iter().filter(|(u, _)| u.status == AccessStatus::Deleting).collect();
        if db_work.is_empty() && user_work.is_empty() && drop_dbs.is_empty() && drop_users.is_empty() {
            break;
        }
        let mut outcome = |what: String, r: &Result<(), ManagerError>| -> Result<(), String> {
            match r {
                Ok(()) => Ok(()),
                Err(e) => {
                    failed.push(what);
                    Err(reason(e))
                }
            }
        };
        let mut transient: Option<ManagerError> = None;
        // 1. Roles first: a database's owner must exist.
        let mut user_ok = BTreeSet::new();
        for (u, pw) in &user_work {
            let m = ManagedUser {
                name: u.name.clone(),
                password: pw.clone(),
                connection_limit: u.connection_limit,
                roles: u.roles.clone(),
            };
            match access.ensure_user(&spec, &m).await {
                Err(e @ ManagerError::Transient(_)) => {
                    transient = Some(e);
                    break;
                }
                Ok(()) => {
                    user_ok.insert(u.name.clone());
                }
                Err(e) => {
                    let r = outcome(format!("user {}", u.name), &Err(e));
                    store.access_applied(AccessItem::User, u.id, u.updated_at, r).await?;
                }
            }
        }
        // 2. Databases.
        let mut db_failed = BTreeSet::new();
        if transient.is_none() {
            for d in &db_work {
                let r = access.ensure_database(&spec, &desired(d)).await;
                if let Err(e @ ManagerError::Transient(_)) = r {
                    transient = Some(e);
                    break;
                }
                if r.is_err() {
                    db_failed.insert(d.name.clone());
                }
                let r = outcome(format!("database {}", d.name), &r);
                store.access_applied(AccessItem::Database, d.id, d.updated_at, r).await?;
            }
        }
        // 3. Grants, in every database that exists now.
        if transient.is_none() {
            let live: Vec<ManagedDatabase> = plan
                .databases
                .iter()
                .filter(|d| d.status != AccessStatus::Deleting && !db_failed.contains(&d.name))
                .filter(|d| d.status != AccessStatus::Error)
                .map(desired)
                .collect();
            for (u, _) in user_work.iter().filter(|(u, _)| user_ok.contains(&u.name)) {
                let r = access.apply_grants(&spec, &u.name, &u.grants, &live).await;
                if let Err(e @ ManagerError::Transient(_)) = r {
                    transient = Some(e);
                    break;
                }
                let r = outcome(format!("user {}", u.name), &r);
                store.access_applied(AccessItem::User, u.id, u.updated_at, r).await?;
            }
        }
        // 4. Drops: databases, then users (who may have owned objects in them).
        if transient.is_none() {
            for d in &drop_dbs {
                let r = access.drop_database(&spec, &d.name, d.force_drop).await;
                if let Err(e @ ManagerError::Transient(_)) = r {
                    transient = Some(e);
                    break;
                }
                let r = outcome(format!("database {}", d.name), &r);
                store.access_applied(AccessItem::Database, d.id, d.updated_at, r).await?;
            }
        }
        if transient.is_none() {
            for (u, _) in &drop_users {
                let r = access.drop_user(&spec, &u.name).await;
                if let Err(e @ ManagerError::Transient(_)) = r {
                    transient = Some(e);
                    break;
                }
                let r = outcome(format!("user {}", u.name), &r);
                store.access_applied(AccessItem::User, u.id, u.updated_at, r).await?;
            }
        }
        if let Some(e) = transient {
            let plan = store.access_plan(c.id).await?;
            return Err(give_up(job, c.id, &plan, e).await);
        }
    }
    if !failed.is_empty() {
        return Err(StepError::failed(
            FaultCode::AccessRefused,
            format!("not applied: {} (each row's error says why)", failed.join(", ")),
        ));
    }
    Ok(())
}

/// The primary could not be reached: every row still waiting gets the reason (so the
/// reconciler does not start sync after sync against a server that is down); the next
/// change, or an operator's retry, applies them.
async fn give_up(job: &Job, cluster_id: uuid::Uuid, plan: &herd_store::AccessPlan, e: ManagerError) -> StepError {
    let store = &job.ctx.store;
    let why = format!("not applied, the primary was unreachable: {e}");
    let _ = cluster_id;
    for d in plan.databases.iter().filter(|d| matches!(d.status, AccessStatus::Pending | AccessStatus::Deleting)) {
        let _ = store.access_applied(AccessItem::Database, d.id, d.updated_at, Err(why.clone())).await;
    }
    for (u, _) in plan.users.iter().filter(|(u, _)| matches!(u.status, AccessStatus::Pending | AccessStatus::Deleting))
    {
        let _ = store.access_applied(AccessItem::User, u.id, u.updated_at, Err(why.clone())).await;
    }
    StepError::from(e)
}

/// Opens a sync for changes no sync has taken (made while another task held the
/// cluster, or after a failover asked for a re-check).
pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(SCAN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ctx.store.open_pending_syncs().await {
            Ok(tasks) => {
                for t in tasks {
                    tracing::info!(task = %t.id, "opened a sync for waiting database and user changes");
                    if let Err(e) = ctx.queue.push(t.id).await {
                        tracing::warn!(task = %t.id, error = %e, "enqueue failed; the sweeper will deliver it");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "access sync scan failed"),
        }
    }
}
