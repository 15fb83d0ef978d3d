//! Per-project quotas (`herd_core::quota`): usage counted from the rows themselves,
//! checked inside the transaction that adds a resource.

use herd_core::quota::{Limits, Quota, QuotaSet};
use herd_core::status::BackupStatus;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::in_project;
use crate::entity::{backup, cluster, node, project, snapshot, ssh_key};
use crate::{Store, StoreError};

pub type Overrides = QuotaSet<Option<u64>>;

/// A project's limits, which of them it was given, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectQuotas {
    /// Effective limits: the overrides over the settings' defaults.
    pub limits: Limits,
    pub overrides: Overrides,
    pub used: QuotaSet<u64>,
}

fn overrides_of(p: &project::Model) -> Overrides {
    let u = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    QuotaSet {
        clusters: u(p.quota_clusters),
        nodes: u(p.quota_nodes),
        volume_gb: u(p.quota_volume_gb),
        snapshots: u(p.quota_snapshots),
        backups: u(p.quota_backups),
        keys: u(p.quota_keys),
    }
}

/// What the project holds now, counted from its rows.
async fn usage<C: ConnectionTrait>(conn: &C, project_id: Uuid) -> Result<QuotaSet<u64>, StoreError> {
    let clusters: Vec<(Uuid, i32)> = in_project::<cluster::Entity>(project_id)
        .select_only()
        .columns([cluster::Column::Id, cluster::Column::VolumeGb])
        .into_tuple()
        .all(conn)
        .await?;
    let node_clusters: Vec<Uuid> = if clusters.is_empty() {
        Vec::new()
    } else {
        node::Entity::find()
            .filter(node::Column::ClusterId.is_in(clusters.iter().map(|(id, _)| *id)))
            .select_only()
            .column(node::Column::ClusterId)
            .into_tuple()
            .all(conn)
            .await?
    };
    let volume_gb = node_clusters
        .iter()
        .filter_map(|c| clusters.iter().find(|(id, _)| id == c))
        .map(|(_, gb)| u64::try_from(*gb).unwrap_or(0))
        .sum();
    Ok(QuotaSet {
        clusters: clusters.len() as u64,
        nodes: node_clusters.len() as u64,
        volume_gb,
        snapshots: in_project::<snapshot::Entity>(project_id).count(conn).await?,
        backups: in_project::<backup::Entity>(project_id)
            .filter(backup::Column::Status.is_in([BackupStatus::New, BackupStatus::Running, BackupStatus::Completed]))
            .count(conn)
            .await?,
        keys: in_project::<ssh_key::Entity>(project_id)
            .filter(ssh_key::Column::GeneratedForCluster.is_null())
            .count(conn)
            .await?,
    })
}

impl Store {
    /// Checks that adding `wants` keeps the project within its limits. Call it in the
    /// write transaction that adds them, before the insert: it locks the project's row
    /// (on PostgreSQL; SQLite's write transaction is exclusive already), so two
    /// concurrent requests are counted one after the other.
    pub(crate) async fn check_quotas<C: ConnectionTrait>(
        &self,
        conn: &C,
        project_id: Uuid,
        wants: &[(Quota, u64)],
    ) -> Result<(), StoreError> {
        let p =
            project::Entity::find_by_id(project_id).lock_exclusive().one(conn).await?.ok_or(StoreError::NotFound)?;
        let limits = self.quota_defaults().with_overrides(&overrides_of(&p));
        let used = usage(conn, project_id).await?;
        herd_core::quota::check(&limits, &used, wants).map_err(StoreError::QuotaExceeded)
    }

    pub async fn project_quotas(&self, project_id: Uuid) -> Result<ProjectQuotas, StoreError> {
        let p = project::Entity::find_by_id(project_id).one(&self.db).await?.ok_or(StoreError::NotFound)?;
        let overrides = overrides_of(&p);
        Ok(ProjectQuotas {
            limits: self.quota_defaults().with_overrides(&overrides),
            overrides,
            used: usage(&self.db, project_id).await?,
        })
    }

    /// Replaces the project's overrides (`None`: the default applies). A limit below
    /// what the project holds is allowed: nothing is removed, new requests are refused.
    pub async fn set_project_quotas(&self, project_id: Uuid, o: &Overrides) -> Result<ProjectQuotas, StoreError> {
        let tx = self.write_tx().await?;
        let p = project::Entity::find_by_id(project_id).lock_exclusive().one(&tx).await?.ok_or(StoreError::NotFound)?;
        let i = |v: Option<u64>| v.map(|v| v.min(herd_core::quota::MAX_LIMIT) as i64);
        let mut am = p.into_active_model();
        am.quota_clusters = Set(i(o.clusters));
        am.quota_nodes = Set(i(o.nodes));
        am.quota_volume_gb = Set(i(o.volume_gb));
        am.quota_snapshots = Set(i(o.snapshots));
        am.quota_backups = Set(i(o.backups));
        am.quota_keys = Set(i(o.keys));
        am.update(&tx).await?;
        tx.commit().await?;
        self.project_quotas(project_id).await
    }
}
