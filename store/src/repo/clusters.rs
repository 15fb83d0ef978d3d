//! Clusters: created with their nodes and build task, listed, read, changed, deleted.
//! Every function that takes a `project_id` sees only that project's rows.

use herd_core::crypto::generate_password;
use herd_core::hooks::Hooks;
use herd_core::names::DnsLabel;
use herd_core::quota::Quota;
use herd_core::sshkey::KeyMaterial;
use herd_core::status::{ClusterStatus, TaskKind, TaskStatus};
use herd_core::task::{CreateInput, RestoreInput, TaskInput};
use herd_core::values::{AdminPassword, NodePreference};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::in_project;
use super::nodes::insert_node;
use super::secrets::{admin_password_aad, hooks_aad, secrets_aad};
use super::states::set_cluster_status;
use super::tasks::insert_task;
use super::{Page, new_id, now};
use crate::Conflict;
use crate::entity::{
    backup_policy, cluster, cluster_database, cluster_user, datastore, node, ssh_key, task, task_event, volume,
};
use crate::{Store, StoreError};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};

/// The database role created for users on every cluster.
pub const ADMIN_USER: &str = "admin";

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
    pub policy: HaPolicy,
    pub auto_heal: bool,
    pub hooks: herd_core::hooks::Hooks,
    /// (no_failover, priority) by ordinal; missing entries take the defaults.
    pub node_prefs: Vec<NodePreference>,
    /// What to restore from (the build task's input), already validated.
    pub restore: Option<RestoreInput>,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub admin_password: AdminPassword,
    /// `posix+aes`, `s3+aes` or `none` (`herd_datastores::repo::record_for_new_cluster`).
    pub backup_repo: String,
}

/// A cluster with its nodes and most recent task.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster: cluster::Model,
    /// The datastore's manager (how clients connect depends on it).
    pub manager: String,
    pub nodes: Vec<node::Model>,
    pub task: Option<task::Model>,
}

#[derive(Debug, Default)]
pub struct ClusterFilter {
    pub status: Option<ClusterStatus>,
    pub datastore: Option<String>,
    pub name: Option<String>,
}

/// Failover policy: what Patroni's dynamic configuration carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaPolicy {
    pub synchronous: bool,
    pub synchronous_strict: bool,
    pub maximum_lag_on_failover: i64,
    pub ttl: i32,
    pub loop_wait: i32,
    pub retry_timeout: i32,
}

/// A `PATCH /v1/clusters/{id}`, already validated. None: unchanged.
#[derive(Debug, Default)]
pub struct ClusterPatch {
    pub policy: Option<HaPolicy>,
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    pub auto_heal: Option<bool>,
    /// Some(empty) removes every hook.
    pub hooks: Option<Hooks>,
}

pub fn policy_of(c: &cluster::Model) -> HaPolicy {
    HaPolicy {
        synchronous: c.synchronous,
        synchronous_strict: c.synchronous_strict,
        maximum_lag_on_failover: c.maximum_lag_on_failover,
        ttl: c.ha_ttl,
        loop_wait: c.ha_loop_wait,
        retry_timeout: c.ha_retry_timeout,
    }
}

/// The manager of the datastore named `datastore_name` (datastores are never
/// deleted; empty only if the row is missing altogether).
async fn manager_of(db: &impl ConnectionTrait, datastore_name: &str) -> Result<String, StoreError> {
    Ok(datastore::Entity::find()
        .filter(datastore::Column::Name.eq(datastore_name))
        .one(db)
        .await?
        .map(|d| d.manager)
        .unwrap_or_default())
}

impl Store {
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
        let manager = manager_of(&self.db, &c.datastore).await?;
        Ok(ClusterView { cluster: c, manager, nodes, task })
    }

    /// Writes the cluster, its nodes, its create task and the first history event in
    /// one transaction (the outbox): either all exist or none do, so a queued task
    /// can never point at a missing cluster and a cluster never lacks its task.
    pub async fn create_cluster(&self, new: NewCluster) -> Result<(ClusterView, task::Model), StoreError> {
        let tx = self.write_tx().await?;
        let nodes = u64::from(new.node_count);
        self.check_quotas(
            &tx,
            new.project_id,
            &[(Quota::Clusters, 1), (Quota::Nodes, nodes), (Quota::VolumeGb, nodes * u64::from(new.volume_gb))],
        )
        .await?;
        let id = new_id();
        let key_id = match &new.key {
            KeyChoice::Existing(kid) => {
                in_project::<ssh_key::Entity>(new.project_id)
                    .filter(ssh_key::Column::Id.eq(*kid))
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
            hooks_enc: Set(
                (!new.hooks.is_empty()).then(|| self.key().encrypt_str(&new.hooks.to_plaintext(), &hooks_aad(id)))
            ),
            primary_node_id: Set(None),
            newest_timeline: Set(0),
            backup_repo: Set(Some(new.backup_repo)),
            parameters: Set(serde_json::Value::Object(new.parameters)),
            status: Set(ClusterStatus::Building),
            admin_user: Set(ADMIN_USER.into()),
            admin_password_enc: Set(self.key().encrypt_str(new.admin_password.secret(), &admin_password_aad(id))),
            secrets_enc: Set(self.key().encrypt(
                serde_json::json!({
                    "superuser": generate_password().expose_secret(),
                    "replication": generate_password().expose_secret(),
                })
                .to_string()
                .as_bytes(),
                &secrets_aad(id),
            )),
            certs_renew_at: Set(None),
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
            let n = insert_node(&tx, &c, ordinal, false, ts).await?;
            let n = match new.node_prefs.get(ordinal as usize) {
                Some(pref) => {
                    let mut am = n.into_active_model();
                    am.no_failover = Set(pref.no_failover);
                    am.priority = Set(i32::from(pref.priority.get()));
                    am.update(&tx).await?
                }
                None => n,
            };
            nodes.push(n);
        }
        let inherited = match new.restore.as_ref().and_then(|r| r.source_cluster_id) {
            Some(source) => self.inherit_access(&tx, source, &c).await?,
            None => (0, 0),
        };
        let input = TaskInput::CreateCluster(CreateInput { restore: new.restore.clone().map(Box::new) });
        let t = insert_task(&tx, new.project_id, id, input).await?;
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
        if inherited != (0, 0) {
            let (dbs, users) = inherited;
            let msg = format!(
                "managed databases and users carried over from the source cluster: {dbs} database(s), {users} user(s); \
                 applied once the cluster is active"
            );
            self.add_event(&tx, new.project_id, id, Some(t.id), "info", None, &msg).await?;
        }
        let manager = manager_of(&tx, &c.datastore).await?;
        tx.commit().await?;
        Ok((ClusterView { cluster: c, manager, nodes, task: Some(t.clone()) }, t))
    }

    pub async fn list_clusters(
        &self,
        project_id: Uuid,
        filter: &ClusterFilter,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<ClusterView>, StoreError> {
        let mut q = in_project::<cluster::Entity>(project_id);
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
        let t = insert_task(&tx, project_id, id, TaskInput::DeleteCluster {}).await?;
        self.add_event(&tx, project_id, id, Some(t.id), "info", None, "delete requested").await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Applies a settings change. Herd-only settings (hooks, auto_heal) take effect at
    /// once; policy and parameters are recorded as desired and pushed into the cluster
    /// by the returned task.
    pub async fn update_cluster(
        &self,
        project_id: Uuid,
        id: Uuid,
        patch: ClusterPatch,
    ) -> Result<(ClusterView, Option<task::Model>), StoreError> {
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        let needs_task = patch.policy.is_some_and(|p| p != policy_of(&c))
            || patch.parameters.as_ref().is_some_and(|p| serde_json::Value::Object(p.clone()) != c.parameters);
        if needs_task {
            self.check_ready(&tx, &c).await?;
        }
        let mut am = c.clone().into_active_model();
        let mut changed = Vec::new();
        if let Some(p) = patch.policy {
            am.synchronous = Set(p.synchronous);
            am.synchronous_strict = Set(p.synchronous_strict);
            am.maximum_lag_on_failover = Set(p.maximum_lag_on_failover);
            am.ha_ttl = Set(p.ttl);
            am.ha_loop_wait = Set(p.loop_wait);
            am.ha_retry_timeout = Set(p.retry_timeout);
            changed.push("failover policy");
        }
        if let Some(p) = patch.parameters {
            am.parameters = Set(serde_json::Value::Object(p));
            changed.push("parameters");
        }
        if let Some(a) = patch.auto_heal {
            am.auto_heal = Set(a);
            changed.push("auto_heal");
        }
        if let Some(h) = &patch.hooks {
            am.hooks_enc = Set((!h.is_empty()).then(|| self.key().encrypt_str(&h.to_plaintext(), &hooks_aad(id))));
            changed.push("hooks");
        }
        am.updated_at = Set(now());
        let c = am.update(&tx).await?;
        let t = if needs_task {
            Some(
                self.open_day2_task(
                    &tx,
                    c,
                    TaskInput::UpdateCluster {},
                    &format!("update requested: {}", changed.join(", ")),
                    true,
                )
                .await?,
            )
        } else {
            if !changed.is_empty() {
                self.add_event(&tx, project_id, id, None, "info", None, &format!("updated: {}", changed.join(", ")))
                    .await?;
            }
            None
        };
        tx.commit().await?;
        Ok((self.get_cluster(project_id, id).await?, t))
    }

    pub async fn cluster_by_id(&self, id: Uuid) -> Result<cluster::Model, StoreError> {
        cluster::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)
    }

    /// Moves the cluster to `to` (if the transition is legal) and sets or clears its fault.
    pub async fn set_cluster_state(
        &self,
        id: Uuid,
        to: ClusterStatus,
        fault: Option<(herd_core::faults::FaultCode, &str)>,
    ) -> Result<cluster::Model, StoreError> {
        let c = self.cluster_by_id(id).await?;
        let c = set_cluster_status(&self.db, c, to).await?;
        let mut am = c.into_active_model();
        am.fault_code = Set(fault.map(|f| f.0.as_str().to_owned()));
        am.fault_message = Set(fault.map(|f| f.1.to_owned()));
        Ok(am.update(&self.db).await?)
    }

    /// Removes every row of a deleted cluster except its tasks (the audit trail that
    /// `GET /v1/tasks/{id}` still answers from).
    pub async fn purge_cluster(&self, id: Uuid) -> Result<(), StoreError> {
        let tx = self.write_tx().await?;
        let c = cluster::Entity::find_by_id(id).one(&tx).await?;
        volume::Entity::delete_many().filter(volume::Column::ClusterId.eq(id)).exec(&tx).await?;
        node::Entity::delete_many().filter(node::Column::ClusterId.eq(id)).exec(&tx).await?;
        task_event::Entity::delete_many().filter(task_event::Column::ClusterId.eq(id)).exec(&tx).await?;
        backup_policy::Entity::delete_by_id(id).exec(&tx).await?;
        cluster_database::Entity::delete_many().filter(cluster_database::Column::ClusterId.eq(id)).exec(&tx).await?;
        cluster_user::Entity::delete_many().filter(cluster_user::Column::ClusterId.eq(id)).exec(&tx).await?;
        cluster::Entity::delete_by_id(id).exec(&tx).await?;
        if let Some(c) = c {
            // A key generated for this cluster alone goes with it.
            ssh_key::Entity::delete_many()
                .filter(ssh_key::Column::Id.eq(c.key_id))
                .filter(ssh_key::Column::GeneratedForCluster.eq(id))
                .exec(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
