//! Managed databases and users: desired state per cluster, applied on its primary by
//! `sync_access` tasks. A change is recorded `pending` and a sync task is opened when
//! the cluster is free (one already queued or running takes the change too; a busy
//! cluster gets one from the reconciler once it is free). A user's password is
//! encrypted bound to its row; `owner` grants are the databases' `owner` column, so a
//! database has exactly one owner.

use herd_core::access::{DbPrivilege, Grants};
use herd_core::status::{AccessStatus, ClusterStatus, TaskKind};
use herd_core::task::TaskInput;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use secrecy::SecretString;
use std::collections::BTreeSet;
use uuid::Uuid;

use super::tasks::{insert_task, open_task};
use super::{new_id, now};
use crate::entity::{cluster, cluster_database as dbe, cluster_user as ue, task};
use crate::{Conflict, Store, StoreError};

/// The most databases, and users, Herd manages in one cluster.
pub const MAX_PER_CLUSTER: u64 = 200;

pub struct NewDatabase {
    pub name: String,
    pub owner: Option<String>,
    pub encoding: String,
    pub locale: Option<String>,
}

pub struct NewUser {
    pub name: String,
    pub password: SecretString,
    pub connection_limit: Option<i32>,
    pub roles: Vec<String>,
    pub grants: Grants,
}

/// What to change; None leaves a field as it is.
#[derive(Default)]
pub struct UserPatch {
    pub password: Option<SecretString>,
    /// Some(None): no limit.
    pub connection_limit: Option<Option<i32>>,
    pub roles: Option<Vec<String>>,
    pub grants: Option<Grants>,
}

/// A managed user as the API shows it: `grants` includes `owner` for the databases
/// it owns.
#[derive(Debug, Clone)]
pub struct ManagedUserView {
    pub id: Uuid,
    pub name: String,
    pub connection_limit: Option<i32>,
    pub roles: Vec<String>,
    pub grants: Grants,
    pub status: AccessStatus,
    pub error: Option<String>,
    pub password_set_at: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Everything a sync needs: every row of the cluster, the users with their passwords.
pub struct AccessPlan {
    pub databases: Vec<dbe::Model>,
    pub users: Vec<(ManagedUserView, SecretString)>,
}

/// Which table an outcome is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessItem {
    Database,
    User,
}

pub(crate) fn user_password_aad(id: Uuid) -> String {
    format!("cluster_users.password:{id}")
}

fn roles_of(u: &ue::Model) -> Vec<String> {
    serde_json::from_value(u.roles.clone()).unwrap_or_default()
}

fn grants_of(u: &ue::Model) -> Grants {
    serde_json::from_value(u.grants.clone()).unwrap_or_default()
}

fn view(u: &ue::Model, dbs: &[dbe::Model]) -> ManagedUserView {
    let mut grants = grants_of(u);
    for d in dbs.iter().filter(|d| d.owner.as_deref() == Some(u.name.as_str()) && d.status != AccessStatus::Deleting) {
        grants.insert(d.name.clone(), DbPrivilege::Owner);
    }
    ManagedUserView {
        id: u.id,
        name: u.name.clone(),
        connection_limit: u.connection_limit,
        roles: roles_of(u),
        grants,
        status: u.status,
        error: u.error.clone(),
        password_set_at: u.password_set_at,
        created_at: u.created_at,
        updated_at: u.updated_at,
    }
}

fn transition(from: AccessStatus, to: AccessStatus, what: &str) -> Result<(), StoreError> {
    if from.can_become(to) {
        Ok(())
    } else {
        Err(StoreError::conflict(Conflict::InvalidState, format!("{what} is {from}; it cannot become {to}")))
    }
}

async fn databases_of<C: ConnectionTrait>(conn: &C, cluster_id: Uuid) -> Result<Vec<dbe::Model>, StoreError> {
    Ok(dbe::Entity::find()
        .filter(dbe::Column::ClusterId.eq(cluster_id))
        .order_by_asc(dbe::Column::Name)
        .all(conn)
        .await?)
}

async fn users_of<C: ConnectionTrait>(conn: &C, cluster_id: Uuid) -> Result<Vec<ue::Model>, StoreError> {
    Ok(ue::Entity::find().filter(ue::Column::ClusterId.eq(cluster_id)).order_by_asc(ue::Column::Name).all(conn).await?)
}

fn find_db<'a>(dbs: &'a [dbe::Model], name: &str) -> Result<&'a dbe::Model, StoreError> {
    dbs.iter().find(|d| d.name == name).ok_or(StoreError::NotFound)
}

/// Checks a user's grants name live databases of the cluster; returns the names it
/// is to own and the rest.
fn split_grants(grants: &Grants, dbs: &[dbe::Model]) -> Result<(BTreeSet<String>, Grants), StoreError> {
    let mut owned = BTreeSet::new();
    let mut rest = Grants::new();
    for (name, p) in grants {
        if !dbs.iter().any(|d| &d.name == name && d.status != AccessStatus::Deleting) {
            return Err(StoreError::Invalid {
                field: "grants",
                message: format!("the cluster has no managed database '{name}'"),
            });
        }
        if *p == DbPrivilege::Owner {
            owned.insert(name.clone());
        } else {
            rest.insert(name.clone(), *p);
        }
    }
    Ok((owned, rest))
}

async fn set_db<C: ConnectionTrait>(
    conn: &C,
    d: &dbe::Model,
    to: AccessStatus,
    change: impl FnOnce(&mut dbe::ActiveModel),
) -> Result<dbe::Model, StoreError> {
    transition(d.status, to, &format!("database '{}'", d.name))?;
    let mut am = d.clone().into_active_model();
    am.status = Set(to);
    am.error = Set(None);
    am.updated_at = Set(now());
    change(&mut am);
    Ok(am.update(conn).await?)
}

async fn set_user<C: ConnectionTrait>(
    conn: &C,
    u: &ue::Model,
    to: AccessStatus,
    change: impl FnOnce(&mut ue::ActiveModel),
) -> Result<ue::Model, StoreError> {
    transition(u.status, to, &format!("user '{}'", u.name))?;
    let mut am = u.clone().into_active_model();
    am.status = Set(to);
    am.error = Set(None);
    am.updated_at = Set(now());
    change(&mut am);
    Ok(am.update(conn).await?)
}

impl Store {
    /// The cluster, locked for the change, when it can take one: running, or being
    /// updated (its sync then comes after).
    async fn access_cluster<C: ConnectionTrait>(
        &self,
        conn: &C,
        project_id: Uuid,
        id: Uuid,
    ) -> Result<cluster::Model, StoreError> {
        self.project_cluster(conn, project_id, id).await?;
        let c = cluster::Entity::find_by_id(id).lock_exclusive().one(conn).await?.ok_or(StoreError::NotFound)?;
        if !matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded | ClusterStatus::Updating) {
            return Err(StoreError::conflict(
                Conflict::ClusterNotReady,
                format!("cluster '{}' is {}; databases and users change while it runs", c.name, c.status),
            ));
        }
        Ok(c)
    }

    /// The sync task that will apply a change: the one already open, a new one when the
    /// cluster is free, None when another task holds it (the reconciler opens one
    /// after).
    async fn schedule_sync<C: ConnectionTrait>(
        &self,
        conn: &C,
        c: &cluster::Model,
    ) -> Result<Option<task::Model>, StoreError> {
        match open_task(conn, c.id).await? {
            Some(t) if t.kind == TaskKind::SyncAccess => Ok(Some(t)),
            Some(_) => Ok(None),
            None if !matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded) => Ok(None),
            None => {
                let t = insert_task(conn, c.project_id, c.id, TaskInput::SyncAccess {}).await?;
                self.add_event(
                    conn,
                    c.project_id,
                    c.id,
                    Some(t.id),
                    "info",
                    None,
                    "applying database and user changes",
                )
                .await?;
                Ok(Some(t))
            }
        }
    }

    /// A cluster restored from another takes over that cluster's managed databases
    /// and users (as they are now, not as they were at the restore target), pending:
    /// the reconciler applies them once the build is done. Passwords are re-encrypted
    /// for the new rows. Returns how many databases and users were carried over.
    pub(crate) async fn inherit_access<C: ConnectionTrait>(
        &self,
        conn: &C,
        source: Uuid,
        target: &cluster::Model,
    ) -> Result<(usize, usize), StoreError> {
        let live = |s: AccessStatus| s != AccessStatus::Deleting;
        let in_project = |project: Uuid| project == target.project_id;
        let ts = now();
        let dbs: Vec<dbe::Model> = databases_of(conn, source)
            .await?
            .into_iter()
            .filter(|d| live(d.status) && in_project(d.project_id))
            .collect();
        for d in &dbs {
            dbe::ActiveModel {
                id: Set(new_id()),
                project_id: Set(target.project_id),
                cluster_id: Set(target.id),
                name: Set(d.name.clone()),
                owner: Set(d.owner.clone()),
                encoding: Set(d.encoding.clone()),
                locale: Set(d.locale.clone()),
                status: Set(AccessStatus::Pending),
                force_drop: Set(false),
                error: Set(None),
                created_at: Set(ts),
                updated_at: Set(ts),
            }
            .insert(conn)
            .await?;
        }
        let users: Vec<ue::Model> =
            users_of(conn, source).await?.into_iter().filter(|u| live(u.status) && in_project(u.project_id)).collect();
        for u in &users {
            let id = new_id();
            let password = self.key().decrypt_str(&u.password_enc, &user_password_aad(u.id))?;
            ue::ActiveModel {
                id: Set(id),
                project_id: Set(target.project_id),
                cluster_id: Set(target.id),
                name: Set(u.name.clone()),
                password_enc: Set(self.key().encrypt_str(&password, &user_password_aad(id))),
                connection_limit: Set(u.connection_limit),
                roles: Set(u.roles.clone()),
                grants: Set(u.grants.clone()),
                status: Set(AccessStatus::Pending),
                error: Set(None),
                password_set_at: Set(u.password_set_at),
                created_at: Set(ts),
                updated_at: Set(ts),
            }
            .insert(conn)
            .await?;
        }
        Ok((dbs.len(), users.len()))
    }

    pub async fn add_database(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        new: NewDatabase,
    ) -> Result<(dbe::Model, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.access_cluster(&tx, project_id, cluster_id).await?;
        let count = dbe::Entity::find().filter(dbe::Column::ClusterId.eq(c.id)).count(&tx).await?;
        if count >= MAX_PER_CLUSTER {
            return Err(StoreError::Invalid {
                field: "name",
                message: format!("the cluster has {count} managed databases, the most Herd manages"),
            });
        }
        if let Some(o) = &new.owner {
            let owner = ue::Entity::find()
                .filter(ue::Column::ClusterId.eq(c.id))
                .filter(ue::Column::Name.eq(o.as_str()))
                .one(&tx)
                .await?;
            if !owner.is_some_and(|u| u.status != AccessStatus::Deleting) {
                return Err(StoreError::Invalid {
                    field: "owner",
                    message: format!("the cluster has no managed user '{o}'"),
                });
            }
        }
        let ts = now();
        let name = new.name.clone();
        let d = dbe::ActiveModel {
            id: Set(new_id()),
            project_id: Set(c.project_id),
            cluster_id: Set(c.id),
            name: Set(new.name),
            owner: Set(new.owner.filter(|o| o != &c.admin_user)),
            encoding: Set(new.encoding),
            locale: Set(new.locale),
            status: Set(AccessStatus::Pending),
            force_drop: Set(false),
            error: Set(None),
            created_at: Set(ts),
            updated_at: Set(ts),
        }
        .insert(&tx)
        .await
        .map_err(|e| StoreError::unique(e, Conflict::DatabaseExists, format!("database '{name}' exists")))?;
        let t = self.schedule_sync(&tx, &c).await?;
        tx.commit().await?;
        Ok((d, t))
    }

    pub async fn list_databases(&self, project_id: Uuid, cluster_id: Uuid) -> Result<Vec<dbe::Model>, StoreError> {
        let c = self.project_cluster(&self.db, project_id, cluster_id).await?;
        databases_of(&self.db, c.id).await
    }

    pub async fn get_database(&self, project_id: Uuid, cluster_id: Uuid, name: &str) -> Result<dbe::Model, StoreError> {
        let dbs = self.list_databases(project_id, cluster_id).await?;
        find_db(&dbs, name).cloned()
    }

    /// Marks the database to be dropped (`force`: even with sessions connected) and
    /// takes it out of every user's grants.
    pub async fn delete_database(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        name: &str,
        force: bool,
    ) -> Result<(dbe::Model, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.access_cluster(&tx, project_id, cluster_id).await?;
        let dbs = databases_of(&tx, c.id).await?;
        let d = find_db(&dbs, name)?;
        let to = AccessStatus::Deleting;
        let d = if d.status == to {
            let mut am = d.clone().into_active_model();
            am.force_drop = Set(d.force_drop || force);
            am.update(&tx).await?
        } else {
            set_db(&tx, d, to, |am| am.force_drop = Set(force)).await?
        };
        for u in users_of(&tx, c.id).await? {
            let mut g = grants_of(&u);
            if g.remove(name).is_some() {
                let mut am = u.into_active_model();
                am.grants = Set(serde_json::to_value(g).unwrap_or_default());
                am.update(&tx).await?;
            }
        }
        let t = self.schedule_sync(&tx, &c).await?;
        tx.commit().await?;
        Ok((d, t))
    }

    pub async fn add_user(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        new: NewUser,
    ) -> Result<(ManagedUserView, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.access_cluster(&tx, project_id, cluster_id).await?;
        if new.name == c.admin_user {
            return Err(StoreError::Invalid { field: "name", message: "is the cluster's admin role".into() });
        }
        let count = ue::Entity::find().filter(ue::Column::ClusterId.eq(c.id)).count(&tx).await?;
        if count >= MAX_PER_CLUSTER {
            return Err(StoreError::Invalid {
                field: "name",
                message: format!("the cluster has {count} managed users, the most Herd manages"),
            });
        }
        let dbs = databases_of(&tx, c.id).await?;
        let (owned, grants) = split_grants(&new.grants, &dbs)?;
        let id = new_id();
        let ts = now();
        let name = new.name.clone();
        let u = ue::ActiveModel {
            id: Set(id),
            project_id: Set(c.project_id),
            cluster_id: Set(c.id),
            name: Set(new.name),
            password_enc: Set(self.key().encrypt_str(&new.password, &user_password_aad(id))),
            connection_limit: Set(new.connection_limit),
            roles: Set(serde_json::to_value(&new.roles).unwrap_or_default()),
            grants: Set(serde_json::to_value(&grants).unwrap_or_default()),
            status: Set(AccessStatus::Pending),
            error: Set(None),
            password_set_at: Set(ts),
            created_at: Set(ts),
            updated_at: Set(ts),
        }
        .insert(&tx)
        .await
        .map_err(|e| StoreError::unique(e, Conflict::UserExists, format!("user '{name}' exists")))?;
        self.reown(&tx, &dbs, &u.name, &owned).await?;
        let t = self.schedule_sync(&tx, &c).await?;
        let dbs = databases_of(&tx, c.id).await?;
        tx.commit().await?;
        Ok((view(&u, &dbs), t))
    }

    /// Makes `user` the owner of exactly `owned` among the live databases (those it
    /// stops owning go back to the admin); each database that changes is pending.
    async fn reown<C: ConnectionTrait>(
        &self,
        conn: &C,
        dbs: &[dbe::Model],
        user: &str,
        owned: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        for d in dbs.iter().filter(|d| d.status != AccessStatus::Deleting) {
            let owns = d.owner.as_deref() == Some(user);
            let wants = owned.contains(&d.name);
            if owns != wants {
                let owner = if wants { Some(user.to_owned()) } else { None };
                set_db(conn, d, AccessStatus::Pending, |am| am.owner = Set(owner)).await?;
            }
        }
        Ok(())
    }

    pub async fn list_users(&self, project_id: Uuid, cluster_id: Uuid) -> Result<Vec<ManagedUserView>, StoreError> {
        let c = self.project_cluster(&self.db, project_id, cluster_id).await?;
        let dbs = databases_of(&self.db, c.id).await?;
        Ok(users_of(&self.db, c.id).await?.iter().map(|u| view(u, &dbs)).collect())
    }

    pub async fn get_user(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        name: &str,
    ) -> Result<ManagedUserView, StoreError> {
        self.list_users(project_id, cluster_id).await?.into_iter().find(|u| u.name == name).ok_or(StoreError::NotFound)
    }

    pub async fn update_user(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        name: &str,
        patch: UserPatch,
    ) -> Result<(ManagedUserView, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.access_cluster(&tx, project_id, cluster_id).await?;
        let u = users_of(&tx, c.id).await?.into_iter().find(|u| u.name == name).ok_or(StoreError::NotFound)?;
        let dbs = databases_of(&tx, c.id).await?;
        let split = match &patch.grants {
            Some(g) => Some(split_grants(g, &dbs)?),
            None => None,
        };
        let key = self.key();
        let u = set_user(&tx, &u, AccessStatus::Pending, |am| {
            if let Some(p) = &patch.password {
                am.password_enc = Set(key.encrypt_str(p, &user_password_aad(u.id)));
                am.password_set_at = Set(now());
            }
            if let Some(l) = patch.connection_limit {
                am.connection_limit = Set(l);
            }
            if let Some(r) = &patch.roles {
                am.roles = Set(serde_json::to_value(r).unwrap_or_default());
            }
            if let Some((_, g)) = &split {
                am.grants = Set(serde_json::to_value(g).unwrap_or_default());
            }
        })
        .await?;
        if let Some((owned, _)) = &split {
            self.reown(&tx, &dbs, &u.name, owned).await?;
        }
        let t = self.schedule_sync(&tx, &c).await?;
        let dbs = databases_of(&tx, c.id).await?;
        tx.commit().await?;
        Ok((view(&u, &dbs), t))
    }

    /// Marks the user to be dropped; refused while it owns a database.
    pub async fn delete_user(
        &self,
        project_id: Uuid,
        cluster_id: Uuid,
        name: &str,
    ) -> Result<(ManagedUserView, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.access_cluster(&tx, project_id, cluster_id).await?;
        let u = users_of(&tx, c.id).await?.into_iter().find(|u| u.name == name).ok_or(StoreError::NotFound)?;
        let dbs = databases_of(&tx, c.id).await?;
        let owned: Vec<&str> = dbs
            .iter()
            .filter(|d| d.owner.as_deref() == Some(name) && d.status != AccessStatus::Deleting)
            .map(|d| d.name.as_str())
            .collect();
        if !owned.is_empty() {
            return Err(StoreError::conflict(
                Conflict::UserOwnsDatabase,
                format!("user '{name}' owns {}; give it another owner or delete it first", owned.join(", ")),
            ));
        }
        let u = if u.status == AccessStatus::Deleting {
            u
        } else {
            set_user(&tx, &u, AccessStatus::Deleting, |_| {}).await?
        };
        let t = self.schedule_sync(&tx, &c).await?;
        tx.commit().await?;
        Ok((view(&u, &dbs), t))
    }

    /// Every managed row of the cluster, with the users' passwords decrypted.
    pub async fn access_plan(&self, cluster_id: Uuid) -> Result<AccessPlan, StoreError> {
        let databases = databases_of(&self.db, cluster_id).await?;
        let mut users = vec![];
        for u in users_of(&self.db, cluster_id).await? {
            let pw = self.key().decrypt_str(&u.password_enc, &user_password_aad(u.id))?;
            users.push((view(&u, &databases), pw));
        }
        Ok(AccessPlan { databases, users })
    }

    /// Records a sync's outcome for one row, unless the row changed since the sync
    /// read it (`seen`: its `updated_at` then): that change is still to apply.
    /// `Ok` on a row being deleted removes it.
    pub async fn access_applied(
        &self,
        item: AccessItem,
        id: Uuid,
        seen: chrono::DateTime<chrono::Utc>,
        outcome: Result<(), String>,
    ) -> Result<(), StoreError> {
        let tx = self.write_tx().await?;
        match item {
            AccessItem::Database => {
                let Some(d) = dbe::Entity::find_by_id(id).one(&tx).await? else { return Ok(()) };
                if d.updated_at != seen {
                    return Ok(());
                }
                match (d.status, outcome) {
                    (AccessStatus::Deleting, Ok(())) => {
                        dbe::Entity::delete_by_id(id).exec(&tx).await?;
                    }
                    // Re-applied after drift: already ready.
                    (AccessStatus::Ready, Ok(())) => {}
                    (_, Ok(())) => {
                        set_db(&tx, &d, AccessStatus::Ready, |_| {}).await?;
                    }
                    (_, Err(e)) => {
                        set_db(&tx, &d, AccessStatus::Error, |am| am.error = Set(Some(e))).await?;
                    }
                }
            }
            AccessItem::User => {
                let Some(u) = ue::Entity::find_by_id(id).one(&tx).await? else { return Ok(()) };
                if u.updated_at != seen {
                    return Ok(());
                }
                match (u.status, outcome) {
                    (AccessStatus::Deleting, Ok(())) => {
                        ue::Entity::delete_by_id(id).exec(&tx).await?;
                    }
                    (AccessStatus::Ready, Ok(())) => {}
                    (_, Ok(())) => {
                        set_user(&tx, &u, AccessStatus::Ready, |_| {}).await?;
                    }
                    (_, Err(e)) => {
                        set_user(&tx, &u, AccessStatus::Error, |am| am.error = Set(Some(e))).await?;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets every ready row of the cluster back to pending: the next sync checks and
    /// re-applies them (after a failover, which may have lost recent changes).
    pub async fn recheck_access(&self, cluster_id: Uuid) -> Result<u64, StoreError> {
        let ts = now();
        let mut n = dbe::Entity::update_many()
            .col_expr(dbe::Column::Status, Expr::value(AccessStatus::Pending.as_str()))
            .col_expr(dbe::Column::UpdatedAt, Expr::value(ts))
            .filter(dbe::Column::ClusterId.eq(cluster_id))
            .filter(dbe::Column::Status.eq(AccessStatus::Ready))
            .exec(&self.db)
            .await?
            .rows_affected;
        n += ue::Entity::update_many()
            .col_expr(ue::Column::Status, Expr::value(AccessStatus::Pending.as_str()))
            .col_expr(ue::Column::UpdatedAt, Expr::value(ts))
            .filter(ue::Column::ClusterId.eq(cluster_id))
            .filter(ue::Column::Status.eq(AccessStatus::Ready))
            .exec(&self.db)
            .await?
            .rows_affected;
        Ok(n)
    }

    /// Opens a sync for every running, free cluster with changes not yet applied (made
    /// while another task held it, or left by a sync that stopped); returns the tasks.
    pub async fn open_pending_syncs(&self) -> Result<Vec<task::Model>, StoreError> {
        let waiting = [AccessStatus::Pending, AccessStatus::Deleting];
        let mut ids: BTreeSet<Uuid> = dbe::Entity::find()
            .filter(dbe::Column::Status.is_in(waiting))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| d.cluster_id)
            .collect();
        ids.extend(
            ue::Entity::find()
                .filter(ue::Column::Status.is_in(waiting))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|u| u.cluster_id),
        );
        let mut out = vec![];
        for id in ids {
            let tx = self.write_tx().await?;
            let Some(c) = cluster::Entity::find_by_id(id).lock_exclusive().one(&tx).await? else { continue };
            if open_task(&tx, id).await?.is_none()
                && let Some(t) = self.schedule_sync(&tx, &c).await?
            {
                out.push(t);
            }
            tx.commit().await?;
        }
        Ok(out)
    }
}
