//! Renewal of the clusters' node certificates. A certificate belongs to a window of
//! `worker.cert_renew_secs` and is valid for three; the worker records the end of the
//! window it pushed to every member (`certs_renew_at`), and once that has passed it
//! opens an `update_cluster` task that pushes the next window's certificates.
//!
//! Claiming: the cluster row is locked (FOR UPDATE on PostgreSQL; SQLite's write
//! transactions are serial), checked to be still due, and its due time moved to when a
//! failed renewal is retried, in the transaction that opens the task; so with any
//! number of workers one renewal starts, and the others find it no longer due. A cluster that cannot take
//! a task now (busy, not active or degraded) is not claimed and stays due.

use chrono::{DateTime, Utc};
use herd_core::status::ClusterStatus;
use herd_core::task::TaskInput;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::entity::{cluster, task};
use crate::{Store, StoreError};

/// What a renewal attempt came to.
#[derive(Debug)]
pub enum Renewal {
    Started(Box<task::Model>),
    /// The cluster cannot take a task now; it stays due.
    Waiting(String),
    /// Not due any more (another worker claimed it, or the cluster is gone).
    Lost,
}

impl Store {
    /// Active or degraded clusters whose certificates are due at `at` (or never recorded).
    pub async fn due_certificate_renewals(&self, at: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        Ok(cluster::Entity::find()
            .select_only()
            .column(cluster::Column::Id)
            .filter(cluster::Column::Status.is_in([ClusterStatus::Active, ClusterStatus::Degraded]))
            .filter(
                Condition::any()
                    .add(cluster::Column::CertsRenewAt.is_null())
                    .add(cluster::Column::CertsRenewAt.lte(at)),
            )
            .order_by_asc(cluster::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Claims the due renewal of cluster `id` and opens its `update_cluster` task; if it
    /// fails, the next try is at `retry_at` (unless a later push records a new window).
    pub async fn start_certificate_renewal(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        summary: &str,
    ) -> Result<Renewal, StoreError> {
        let tx = self.write_tx().await?;
        let Some(c) = cluster::Entity::find_by_id(id).lock_exclusive().one(&tx).await? else {
            return Ok(Renewal::Lost);
        };
        // Another worker claimed it first (this lock waited for its commit).
        if c.certs_renew_at.is_some_and(|t| t > at) {
            return Ok(Renewal::Lost);
        }
        match self.check_ready(&tx, &c).await {
            Ok(()) => {}
            Err(StoreError::Conflict { message, .. }) => {
                tx.rollback().await?;
                return Ok(Renewal::Waiting(message));
            }
            Err(e) => return Err(e),
        }
        cluster::Entity::update_many()
            .col_expr(cluster::Column::CertsRenewAt, Expr::value(Some(retry_at)))
            .filter(cluster::Column::Id.eq(id))
            .exec(&tx)
            .await?;
        let t = self.open_day2_task(&tx, c, TaskInput::UpdateCluster {}, summary, true).await?;
        tx.commit().await?;
        Ok(Renewal::Started(Box::new(t)))
    }

    /// Every member of cluster `id` now has the certificates due for renewal at `renew_at`.
    pub async fn certificates_pushed(&self, id: Uuid, renew_at: DateTime<Utc>) -> Result<(), StoreError> {
        cluster::Entity::update_many()
            .col_expr(cluster::Column::CertsRenewAt, Expr::value(Some(renew_at)))
            .filter(cluster::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
