//! Repository functions, one module per resource.

//! Split by aggregate. The layering (no module imports one that imports it back):
//! `states`, `secrets`, `events` use nothing here but this file; `tasks` uses `states`;
//! `nodes` and `health` use `states`; `clusters` uses `nodes`, `tasks`, `states` and
//! `secrets`; `backups`, `snapshots`, `backup_policies`, `certificates` and `access` use `tasks`.

pub mod access;
pub mod backup_policies;
pub mod backups;
pub mod certificates;
pub mod clusters;
pub mod datastores;
pub mod events;
pub mod feed;
pub mod health;
pub mod keys;
pub mod nodes;
pub mod projects;
pub mod quotas;
pub mod secrets;
pub mod snapshots;
mod states;
pub mod tasks;
pub mod tokens;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PrimaryKeyTrait, QueryFilter, Select,
    TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use crate::entity::{api_token, backup, cluster, snapshot, ssh_key, task, task_event};

use crate::{Store, StoreError};

pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    // Microsecond precision: what both SQLite text and Postgres timestamptz keep, so a
    // value read back compares equal to the value written.
    let n = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(n.timestamp_micros()).unwrap_or(n)
}

/// Time-ordered ids: ordering by id is ordering by creation, which keyset pagination uses.
pub(crate) fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

impl Store {
    /// A write transaction. On SQLite it takes the write lock up front (IMMEDIATE), so
    /// two writers queue on the busy timeout instead of one failing mid-transaction.
    /// A cluster of this project (NotFound for another project's: tenancy). Plain
    /// read; `check_ready` is what locks the row.
    pub(crate) async fn project_cluster<C: ConnectionTrait>(
        &self,
        conn: &C,
        project_id: Uuid,
        id: Uuid,
    ) -> Result<crate::entity::cluster::Model, StoreError> {
        find_in_project::<crate::entity::cluster::Entity, _>(conn, project_id, id).await
    }

    pub async fn write_tx(&self) -> Result<DatabaseTransaction, StoreError> {
        Ok(self
            .db
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?)
    }
}

/// Rows that belong to one project. Repository code filters by tenant only through
/// [`in_project`] and [`find_in_project`], so the rule is written once.
pub(crate) trait Tenanted: EntityTrait {
    fn project_column() -> Self::Column;
}

macro_rules! tenanted {
    ($($m:ident),+) => {$(
        impl Tenanted for $m::Entity {
            fn project_column() -> Self::Column {
                $m::Column::ProjectId
            }
        }
    )+};
}
tenanted!(api_token, backup, cluster, snapshot, ssh_key, task, task_event);

/// Every row of `E` in the project.
pub(crate) fn in_project<E: Tenanted>(project_id: Uuid) -> Select<E> {
    E::find().filter(E::project_column().eq(project_id))
}

/// Row `id` of `E` when it is the project's; NotFound for another project's, so a
/// tenant cannot learn that someone else's id exists.
pub(crate) async fn find_in_project<E, C>(conn: &C, project_id: Uuid, id: Uuid) -> Result<E::Model, StoreError>
where
    E: Tenanted,
    E::PrimaryKey: PrimaryKeyTrait<ValueType = Uuid>,
    C: ConnectionTrait,
{
    E::find_by_id(id).filter(E::project_column().eq(project_id)).one(conn).await?.ok_or(StoreError::NotFound)
}

/// A page of results and the cursor for the next one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<uuid::Uuid>,
}

pub const MAX_PAGE: u64 = 100;

/// Keyset pagination on a time-ordered id column: the rows after `cursor` (before it
/// when `newest_first`), at most `limit` (clamped to 1..=MAX_PAGE), and the cursor of
/// the next page when there is one.
pub(crate) async fn page_by_id<E, C>(
    db: &impl sea_orm::ConnectionTrait,
    q: sea_orm::Select<E>,
    id: C,
    id_of: impl Fn(&E::Model) -> uuid::Uuid,
    limit: u64,
    cursor: Option<uuid::Uuid>,
    newest_first: bool,
) -> Result<Page<E::Model>, StoreError>
where
    E: sea_orm::EntityTrait,
    C: sea_orm::ColumnTrait,
{
    use sea_orm::{QueryFilter, QueryOrder, QuerySelect};
    let q = match (cursor, newest_first) {
        (Some(c), false) => q.filter(id.gt(c)),
        (Some(c), true) => q.filter(id.lt(c)),
        (None, _) => q,
    };
    let q = if newest_first { q.order_by_desc(id) } else { q.order_by_asc(id) };
    let limit = limit.clamp(1, MAX_PAGE);
    let mut rows = q.limit(limit + 1).all(db).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(id_of)
    } else {
        None
    };
    Ok(Page { items: rows, next_cursor })
}

pub use access::{AccessItem, AccessPlan, ManagedUserView, NewDatabase, NewUser, UserPatch};
pub use backup_policies::{Advance, PolicySpec, ScheduledRun};
pub use backups::BackupResult;
pub use certificates::Renewal;
pub use clusters::{ADMIN_USER, ClusterFilter, ClusterPatch, ClusterView, HaPolicy, KeyChoice, NewCluster, policy_of};
pub use datastores::{VersionPatch, VersionSpec, default_postgresql_15};
pub use feed::v7_floor;
pub use health::{HealthChange, NodeObservation};
pub use projects::ADMIN_PROJECT;
pub use quotas::{Overrides, ProjectQuotas};
pub use secrets::ClusterPasswords;
pub use snapshots::SnapshotResult;
pub use tokens::BOOTSTRAP_TOKEN_NAME;
