//! What workers do to the database: claim tasks, heartbeat, checkpoint, finish, and
//! record what they built. None of these take a project: workers act for the system.

use chrono::Duration;
use herd_core::status::{ClusterStatus, TaskStatus, VolumeStatus};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::clusters::{admin_password_aad, secrets_aad, set_cluster_status};
use super::{new_id, now};
use crate::Conflict;
use crate::entity::{backup_policy, cluster, node, ssh_key, task, task_event, volume};
use crate::{Store, StoreError};

/// The passwords a cluster runs with, decrypted for the worker.
pub struct ClusterPasswords {
    pub admin: SecretString,
    pub superuser: SecretString,
    pub replication: SecretString,
}

impl Store {
    /// Takes a task for `worker` if it is queued, or running under a worker whose
    /// heartbeat is older than `stale` (that worker is presumed dead). Returns None
    /// when someone else holds it or it is finished: the caller just drops the job.
    pub async fn claim_task(&self, id: Uuid, worker: &str, stale: Duration) -> Result<Option<task::Model>, StoreError> {
        let ts = now();
        let claimable = Condition::any().add(task::Column::Status.eq(TaskStatus::Queued)).add(
            Condition::all().add(task::Column::Status.eq(TaskStatus::Running)).add(
                Condition::any().add(task::Column::HeartbeatAt.is_null()).add(task::Column::HeartbeatAt.lt(ts - stale)),
            ),
        );
        let res = task::Entity::update_many()
            .col_expr(task::Column::Status, Expr::value(TaskStatus::Running.as_str()))
            .col_expr(task::Column::Worker, Expr::value(worker))
            .col_expr(task::Column::HeartbeatAt, Expr::value(ts))
            .col_expr(task::Column::UpdatedAt, Expr::value(ts))
            .col_expr(task::Column::Attempts, Expr::col(task::Column::Attempts).add(1))
            .filter(task::Column::Id.eq(id))
            .filter(claimable)
            .exec(&self.db)
            .await?;
        if res.rows_affected != 1 {
            return Ok(None);
        }
        let t = task::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)?;
        if t.started_at.is_none() {
            let mut am = t.clone().into_active_model();
            am.started_at = Set(Some(ts));
            return Ok(Some(am.update(&self.db).await?));
        }
        Ok(Some(t))
    }

    /// Records that `worker` still runs the task; returns the task's status so the
    /// worker learns of a cancellation. Err(NotFound) if another worker took it over.
    pub async fn heartbeat(&self, id: Uuid, worker: &str) -> Result<TaskStatus, StoreError> {
        task::Entity::update_many()
            .col_expr(task::Column::HeartbeatAt, Expr::value(now()))
            .filter(task::Column::Id.eq(id))
            .filter(task::Column::Worker.eq(worker))
            .exec(&self.db)
            .await?;
        let t = task::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)?;
        if t.worker.as_deref() != Some(worker) {
            return Err(StoreError::NotFound);
        }
        Ok(t.status)
    }

    /// Saves progress after a step: the step name, 0–100, and the step checkpoints.
    pub async fn checkpoint(
        &self,
        id: Uuid,
        worker: &str,
        step: &str,
        progress: i32,
        payload: serde_json::Value,
    ) -> Result<(), StoreError> {
        task::Entity::update_many()
            .col_expr(task::Column::Step, Expr::value(step))
            .col_expr(task::Column::Progress, Expr::value(progress.clamp(0, 100)))
            .col_expr(task::Column::Payload, Expr::value(payload))
            .col_expr(task::Column::HeartbeatAt, Expr::value(now()))
            .col_expr(task::Column::UpdatedAt, Expr::value(now()))
            .filter(task::Column::Id.eq(id))
            .filter(task::Column::Worker.eq(worker))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Ends a task. Only the worker holding it can; a cancelled task stays cancelled.
    pub async fn finish_task(
        &self,
        id: Uuid,
        worker: &str,
        status: TaskStatus,
        error: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let mut q = task::Entity::update_many()
            .col_expr(task::Column::Worker, Expr::value(Option::<String>::None))
            .col_expr(task::Column::FinishedAt, Expr::value(now()))
            .col_expr(task::Column::UpdatedAt, Expr::value(now()))
            .filter(task::Column::Id.eq(id))
            .filter(task::Column::Worker.eq(worker));
        if status != TaskStatus::Cancelled {
            q = q
                .col_expr(task::Column::Status, Expr::value(status.as_str()))
                .filter(task::Column::Status.eq(TaskStatus::Running));
        }
        if status == TaskStatus::Succeeded {
            q = q.col_expr(task::Column::Progress, Expr::value(100));
        }
        if let Some((code, message)) = error {
            q = q
                .col_expr(task::Column::ErrorCode, Expr::value(code))
                .col_expr(task::Column::ErrorMessage, Expr::value(message));
        }
        q.exec(&self.db).await?;
        Ok(())
    }

    /// Ends a successful build: the task succeeds and the cluster becomes `active` in
    /// one transaction, so nobody ever sees one without the other.
    pub async fn complete_build(&self, task_id: Uuid, worker: &str, cluster_id: Uuid) -> Result<(), StoreError> {
        let tx = self.write_tx().await?;
        let ts = now();
        let res = task::Entity::update_many()
            .col_expr(task::Column::Status, Expr::value(TaskStatus::Succeeded.as_str()))
            .col_expr(task::Column::Progress, Expr::value(100))
            .col_expr(task::Column::Worker, Expr::value(Option::<String>::None))
            .col_expr(task::Column::FinishedAt, Expr::value(ts))
            .col_expr(task::Column::UpdatedAt, Expr::value(ts))
            .filter(task::Column::Id.eq(task_id))
            .filter(task::Column::Worker.eq(worker))
            .filter(task::Column::Status.eq(TaskStatus::Running))
            .exec(&tx)
            .await?;
        if res.rows_affected != 1 {
            // Cancelled or taken over meanwhile: leave everything as it is.
            return Err(StoreError::NotFound);
        }
        let c = cluster::Entity::find_by_id(cluster_id).one(&tx).await?.ok_or(StoreError::NotFound)?;
        let mut am = set_cluster_status(&tx, c, ClusterStatus::Active).await?.into_active_model();
        am.fault_code = Set(None);
        am.fault_message = Set(None);
        am.update(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Tasks the sweeper should push again: queued for longer than `queued_for`, or
    /// running with a heartbeat older than `stale`.
    pub async fn tasks_to_requeue(
        &self,
        queued_for: Duration,
        stale: Duration,
    ) -> Result<Vec<task::Model>, StoreError> {
        let ts = now();
        Ok(task::Entity::find()
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(task::Column::Status.eq(TaskStatus::Queued))
                            .add(task::Column::UpdatedAt.lt(ts - queued_for)),
                    )
                    .add(
                        Condition::all().add(task::Column::Status.eq(TaskStatus::Running)).add(
                            Condition::any()
                                .add(task::Column::HeartbeatAt.is_null())
                                .add(task::Column::HeartbeatAt.lt(ts - stale)),
                        ),
                    ),
            )
            .order_by_asc(task::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// For a process that knows every previous worker is gone: running tasks become
    /// claimable at once, and finished (cancelled) tasks stop counting as held.
    pub async fn orphan_running_tasks(&self) -> Result<u64, StoreError> {
        let none = Option::<chrono::DateTime<chrono::Utc>>::None;
        let res = task::Entity::update_many()
            .col_expr(task::Column::HeartbeatAt, Expr::value(none))
            .filter(task::Column::Status.eq(TaskStatus::Running))
            .exec(&self.db)
            .await?;
        task::Entity::update_many()
            .col_expr(task::Column::Worker, Expr::value(Option::<String>::None))
            .filter(task::Column::Status.ne(TaskStatus::Running))
            .filter(task::Column::Worker.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }

    /// Marks a queued task as pushed again now, so the sweeper waits before the next push.
    pub async fn touch_task(&self, id: Uuid) -> Result<(), StoreError> {
        task::Entity::update_many()
            .col_expr(task::Column::UpdatedAt, Expr::value(now()))
            .filter(task::Column::Id.eq(id))
            .filter(task::Column::Status.eq(TaskStatus::Queued))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Other tasks of the cluster still held by a live worker (a cancelled build that
    /// has not yet stopped, say). Delete waits for these before touching resources.
    pub async fn busy_tasks(
        &self,
        cluster_id: Uuid,
        except: Uuid,
        stale: Duration,
    ) -> Result<Vec<task::Model>, StoreError> {
        Ok(task::Entity::find()
            .filter(task::Column::ClusterId.eq(cluster_id))
            .filter(task::Column::Id.ne(except))
            .filter(task::Column::Worker.is_not_null())
            .filter(task::Column::HeartbeatAt.gt(now() - stale))
            .all(&self.db)
            .await?)
    }

    pub async fn cluster_by_id(&self, id: Uuid) -> Result<cluster::Model, StoreError> {
        cluster::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)
    }

    pub async fn nodes_of(&self, cluster_id: Uuid) -> Result<Vec<node::Model>, StoreError> {
        Ok(node::Entity::find()
            .filter(node::Column::ClusterId.eq(cluster_id))
            .order_by_asc(node::Column::Ordinal)
            .all(&self.db)
            .await?)
    }

    pub async fn volumes_of(&self, cluster_id: Uuid) -> Result<Vec<volume::Model>, StoreError> {
        Ok(volume::Entity::find().filter(volume::Column::ClusterId.eq(cluster_id)).all(&self.db).await?)
    }

    pub async fn save_node(&self, n: node::ActiveModel) -> Result<node::Model, StoreError> {
        let mut n = n;
        n.updated_at = Set(now());
        Ok(n.update(&self.db).await?)
    }

    /// The volume row of a node, created on first use (before the provider call, so a
    /// crash after the call still finds the row and retries with the same token).
    pub async fn node_volume(&self, c: &cluster::Model, n: &node::Model) -> Result<volume::Model, StoreError> {
        if let Some(v) = volume::Entity::find().filter(volume::Column::NodeId.eq(n.id)).one(&self.db).await? {
            return Ok(v);
        }
        let ts = now();
        Ok(volume::ActiveModel {
            id: Set(new_id()),
            project_id: Set(c.project_id),
            cluster_id: Set(Some(c.id)),
            node_id: Set(Some(n.id)),
            provider: Set(c.provider.clone()),
            provider_ref: Set(None),
            size_gb: Set(c.volume_gb),
            status: Set(VolumeStatus::Creating),
            attachment: Set(None),
            created_at: Set(ts),
            updated_at: Set(ts),
        }
        .insert(&self.db)
        .await?)
    }

    pub async fn save_volume(&self, v: volume::ActiveModel) -> Result<volume::Model, StoreError> {
        let mut v = v;
        v.updated_at = Set(now());
        Ok(v.update(&self.db).await?)
    }

    pub async fn cluster_passwords(&self, c: &cluster::Model) -> Result<ClusterPasswords, StoreError> {
        let admin = self.key().decrypt_str(&c.admin_password_enc, &admin_password_aad(c.id))?;
        let raw = self.key().decrypt(&c.secrets_enc, &secrets_aad(c.id))?;
        let v: serde_json::Value =
            serde_json::from_slice(raw.expose_secret()).map_err(|_| herd_core::crypto::CryptoError::Decrypt)?;
        let get = |k: &str| -> Result<SecretString, StoreError> {
            v[k].as_str()
                .map(|s| SecretString::from(s.to_owned()))
                .ok_or(StoreError::Crypto(herd_core::crypto::CryptoError::Decrypt))
        };
        Ok(ClusterPasswords { admin, superuser: get("superuser")?, replication: get("replication")? })
    }

    /// The cluster's SSH private key, decrypted.
    pub async fn cluster_private_key(&self, c: &cluster::Model) -> Result<(ssh_key::Model, SecretString), StoreError> {
        let k = ssh_key::Entity::find_by_id(c.key_id).one(&self.db).await?.ok_or(StoreError::NotFound)?;
        let pk = self.key_private(&k).await?;
        Ok((k, pk))
    }

    /// Moves the cluster to `to` (if the transition is legal) and sets or clears its fault.
    pub async fn set_cluster_state(
        &self,
        id: Uuid,
        to: ClusterStatus,
        fault: Option<(&str, &str)>,
    ) -> Result<cluster::Model, StoreError> {
        let c = self.cluster_by_id(id).await?;
        let c = set_cluster_status(&self.db, c, to).await?;
        let mut am = c.into_active_model();
        am.fault_code = Set(fault.map(|f| f.0.to_owned()));
        am.fault_message = Set(fault.map(|f| f.1.to_owned()));
        Ok(am.update(&self.db).await?)
    }

    pub async fn set_node_health(&self, o: &crate::NodeObservation) -> Result<(), StoreError> {
        let Some(n) = node::Entity::find_by_id(o.node_id).one(&self.db).await? else { return Ok(()) };
        // The node state machine lives in one place: a move it forbids is refused.
        if !n.status.can_become(o.status) {
            return Err(StoreError::conflict(
                Conflict::InvalidState,
                format!("node {} is {} and cannot become {}", n.name, n.status, o.status),
            ));
        }
        let mut am = n.into_active_model();
        am.role = Set(o.role);
        am.status = Set(o.status);
        am.state = Set(o.state.clone());
        am.timeline = Set(o.timeline);
        am.lag_bytes = Set(o.lag_bytes);
        am.pending_restart = Set(o.pending_restart);
        am.sync_standby = Set(o.sync_standby);
        if o.seen {
            am.last_seen_at = Set(Some(now()));
        }
        am.updated_at = Set(now());
        am.update(&self.db).await?;
        Ok(())
    }

    /// Appends to the history of a cluster (project taken from the cluster row).
    pub async fn log_event(
        &self,
        c: &cluster::Model,
        task_id: Option<Uuid>,
        level: &str,
        step: Option<&str>,
        message: &str,
    ) -> Result<(), StoreError> {
        self.add_event(&self.db, c.project_id, c.id, task_id, level, step, message).await.map(|_| ())
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
