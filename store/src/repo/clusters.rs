use herd_core::crypto::generate_password;
use herd_core::names::DnsLabel;
use herd_core::sshkey::KeyMaterial;
use herd_core::status::{ClusterStatus, TaskKind, TaskStatus};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{Page, new_id, now};
use crate::Conflict;
use crate::entity::{backup_policy, cluster, node, ssh_key, task};
use crate::{Store, StoreError};

/// The database role created for users on every cluster.
pub const ADMIN_USER: &str = "admin";

pub(crate) fn admin_password_aad(id: Uuid) -> String {
    format!("clusters.admin_password:{id}")
}

pub(crate) fn secrets_aad(id: Uuid) -> String {
    format!("clusters.secrets:{id}")
}

pub enum KeyChoice {
    Existing(Uuid),
    /// A key generated for this cluster alone.
    Generate(KeyMaterial),
}

pub struct NewCluster {
    pub project_id: Uuid,
    pub name: DnsLabel,
    pub datastore: String,
    pub version: String,
    pub flavor: String,
    pub provider: String,
    pub node_count: u8,
    pub volume_gb: u32,
    pub key: KeyChoice,
    pub policy: super::ha::HaPolicy,
    pub auto_heal: bool,
    pub hooks: herd_core::hooks::Hooks,
    /// (no_failover, priority) by ordinal; missing entries take the defaults.
    pub node_prefs: Vec<(bool, u8)>,
    /// What to restore from (the build task's input), already validated.
    pub restore: Option<serde_json::Value>,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub admin_password: SecretString,
    /// `posix`, `s3` or `none` (`herd_datastores::repo::record_for_new_cluster`).
    pub backup_repo: String,
}

/// A cluster with its nodes and most recent task.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster: cluster::Model,
    pub nodes: Vec<node::Model>,
    pub task: Option<task::Model>,
}

#[derive(Debug, Default)]
pub struct ClusterFilter {
    pub status: Option<ClusterStatus>,
    pub datastore: Option<String>,
    pub name: Option<String>,
}

impl Store {
    /// Writes the cluster, its nodes, its create task and the first history event in
    /// one transaction (the outbox): either all exist or none do, so a queued task
    /// can never point at a missing cluster and a cluster never lacks its task.
    pub async fn create_cluster(&self, new: NewCluster) -> Result<(ClusterView, task::Model), StoreError> {
        let tx = self.write_tx().await?;
        let id = new_id();
        let key_id = match &new.key {
            KeyChoice::Existing(kid) => {
                ssh_key::Entity::find_by_id(*kid)
                    .filter(ssh_key::Column::ProjectId.eq(new.project_id))
                    .one(&tx)
                    .await?
                    .ok_or(StoreError::Invalid { field: "key_id", message: "no such key in this project".into() })?
                    .id
            }
            KeyChoice::Generate(material) => {
                let name = format!("cluster-{}-{}", new.name, &id.simple().to_string()[24..]);
                self.insert_key(&tx, new.project_id, &name, material, Some(id)).await?.id
            }
        };
        let ts = now();
        let c = cluster::ActiveModel {
            id: Set(id),
            project_id: Set(new.project_id),
            name: Set(new.name.to_string()),
            datastore: Set(new.datastore),
            version: Set(new.version),
            flavor: Set(new.flavor),
            provider: Set(new.provider),
            node_count: Set(i32::from(new.node_count)),
            volume_gb: Set(new.volume_gb as i32),
            key_id: Set(key_id),
            synchronous: Set(new.policy.synchronous),
            synchronous_strict: Set(new.policy.synchronous_strict),
            maximum_lag_on_failover: Set(new.policy.maximum_lag_on_failover),
            ha_ttl: Set(new.policy.ttl),
            ha_loop_wait: Set(new.policy.loop_wait),
            ha_retry_timeout: Set(new.policy.retry_timeout),
            auto_heal: Set(new.auto_heal),
            hooks_enc: Set((!new.hooks.is_empty())
                .then(|| self.key().encrypt_str(&new.hooks.to_plaintext(), &super::ha::hooks_aad(id)))),
            primary_node_id: Set(None),
            newest_timeline: Set(0),
            backup_repo: Set(Some(new.backup_repo)),
            parameters: Set(serde_json::Value::Object(new.parameters)),
            status: Set(ClusterStatus::Building),
            admin_user: Set(ADMIN_USER.into()),
            admin_password_enc: Set(self.key().encrypt_str(&new.admin_password, &admin_password_aad(id))),
            secrets_enc: Set(self.key().encrypt(
                serde_json::json!({
                    "superuser": generate_password().expose_secret(),
                    "replication": generate_password().expose_secret(),
                })
                .to_string()
                .as_bytes(),
                &secrets_aad(id),
            )),
            fault_code: Set(None),
            fault_message: Set(None),
            created_at: Set(ts),
            updated_at: Set(ts),
        }
        .insert(&tx)
        .await
        .map_err(|e| {
            StoreError::unique(
                e,
                Conflict::ClusterExists,
                format!("a cluster named '{}' already exists in this project", new.name),
            )
        })?;
        let mut nodes = Vec::new();
        for ordinal in 0..i32::from(new.node_count) {
            let n = super::ha::insert_node(&tx, &c, ordinal, false, ts).await?;
            let n = match new.node_prefs.get(ordinal as usize) {
                Some(&(no_failover, priority)) => {
                    let mut am = n.into_active_model();
                    am.no_failover = Set(no_failover);
                    am.priority = Set(i32::from(priority));
                    am.update(&tx).await?
                }
                None => n,
            };
            nodes.push(n);
        }
        let mut t = insert_task(&tx, new.project_id, id, TaskKind::CreateCluster).await?;
        if let Some(r) = &new.restore {
            let mut am = t.into_active_model();
            am.payload = Set(serde_json::json!({ "input": { "restore": r } }));
            t = am.update(&tx).await?;
        }
        self.add_event(
            &tx,
            new.project_id,
            id,
            Some(t.id),
            "info",
            None,
            &format!(
                "create requested: {} node(s) of {} {} on {}/{}",
                c.node_count, c.datastore, c.version, c.provider, c.flavor
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((ClusterView { cluster: c, nodes, task: Some(t.clone()) }, t))
    }

    pub async fn list_clusters(
        &self,
        project_id: Uuid,
        filter: &ClusterFilter,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<ClusterView>, StoreError> {
        let mut q = cluster::Entity::find().filter(cluster::Column::ProjectId.eq(project_id));
        if let Some(s) = filter.status {
            q = q.filter(cluster::Column::Status.eq(s));
        }
        if let Some(d) = &filter.datastore {
            q = q.filter(cluster::Column::Datastore.eq(d.as_str()));
        }
        if let Some(n) = &filter.name {
            q = q.filter(cluster::Column::Name.eq(n.as_str()));
        }
        let page = super::page_by_id(&self.db, q, cluster::Column::Id, |c| c.id, limit, cursor, false).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for c in page.items {
            items.push(self.view(c).await?);
        }
        let next_cursor = page.next_cursor;
        Ok(Page { items, next_cursor })
    }

    async fn view(&self, c: cluster::Model) -> Result<ClusterView, StoreError> {
        let nodes = node::Entity::find()
            .filter(node::Column::ClusterId.eq(c.id))
            .order_by_asc(node::Column::Ordinal)
            .all(&self.db)
            .await?;
        let task = task::Entity::find()
            .filter(task::Column::ClusterId.eq(c.id))
            .order_by_desc(task::Column::Id)
            .one(&self.db)
            .await?;
        Ok(ClusterView { cluster: c, nodes, task })
    }

    pub async fn get_cluster(&self, project_id: Uuid, id: Uuid) -> Result<ClusterView, StoreError> {
        let c = self.project_cluster(&self.db, project_id, id).await?;
        self.view(c).await
    }

    /// The admin credentials, decrypted for the one endpoint that returns them.
    pub async fn cluster_credentials(
        &self,
        project_id: Uuid,
        id: Uuid,
    ) -> Result<(ClusterView, SecretString), StoreError> {
        let v = self.get_cluster(project_id, id).await?;
        let pw = self.key().decrypt_str(&v.cluster.admin_password_enc, &admin_password_aad(v.cluster.id))?;
        Ok((v, pw))
    }

    /// Marks the cluster for deletion and queues the delete task. Idempotent: a second
    /// request returns the delete task already under way. Queued or running work on
    /// the cluster is cancelled first, so a cluster still building stops building.
    pub async fn request_delete(&self, project_id: Uuid, id: Uuid) -> Result<task::Model, StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        let open = task::Entity::find()
            .filter(task::Column::ClusterId.eq(id))
            .filter(task::Column::Status.is_in([TaskStatus::Queued, TaskStatus::Running]))
            .all(&tx)
            .await?;
        if let Some(existing) = open.iter().find(|t| t.kind == TaskKind::DeleteCluster) {
            let existing = existing.clone();
            tx.commit().await?;
            return Ok(existing);
        }
        for t in open {
            let tid = t.id;
            let mut am = t.into_active_model();
            am.status = Set(TaskStatus::Cancelled);
            am.finished_at = Set(Some(now()));
            am.updated_at = Set(now());
            am.update(&tx).await?;
            self.add_event(&tx, project_id, id, Some(tid), "warn", None, "task cancelled: cluster deletion requested")
                .await?;
        }
        set_cluster_status(&tx, c, ClusterStatus::Deleting).await?;
        // No scheduled backup of a cluster being deleted.
        backup_policy::Entity::delete_by_id(id).exec(&tx).await?;
        let t = insert_task(&tx, project_id, id, TaskKind::DeleteCluster).await?;
        self.add_event(&tx, project_id, id, Some(t.id), "info", None, "delete requested").await?;
        tx.commit().await?;
        Ok(t)
    }
}

/// The one place a cluster's status changes: refuses transitions the domain forbids.
pub async fn set_cluster_status<C: ConnectionTrait>(
    conn: &C,
    c: cluster::Model,
    to: ClusterStatus,
) -> Result<cluster::Model, StoreError> {
    if !c.status.can_become(to) {
        return Err(StoreError::conflict(
            Conflict::InvalidState,
            format!("cluster '{}' is {} and cannot become {to}", c.name, c.status),
        ));
    }
    let mut am = c.into_active_model();
    am.status = Set(to);
    am.updated_at = Set(now());
    Ok(am.update(conn).await?)
}

pub(crate) async fn insert_task<C: ConnectionTrait>(
    conn: &C,
    project_id: Uuid,
    cluster_id: Uuid,
    kind: TaskKind,
) -> Result<task::Model, StoreError> {
    let ts = now();
    Ok(task::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id),
        cluster_id: Set(Some(cluster_id)),
        kind: Set(kind),
        status: Set(TaskStatus::Queued),
        step: Set(None),
        progress: Set(0),
        error_code: Set(None),
        error_message: Set(None),
        attempts: Set(0),
        worker: Set(None),
        heartbeat_at: Set(None),
        payload: Set(serde_json::json!({})),
        created_at: Set(ts),
        updated_at: Set(ts),
        started_at: Set(None),
        finished_at: Set(None),
    }
    .insert(conn)
    .await?)
}
