//! Tasks: created with their typed input, claimed, heartbeated, checkpointed and
//! finished by workers, swept when a worker dies.
//!
//! Every request that changes a running cluster becomes one task, and a cluster has at
//! most one such task open at a time: two concurrent switchovers, or a scale-out during
//! a rolling restart, would fight over the same members.

use chrono::Duration;
use herd_core::status::{ClusterStatus, TaskKind, TaskStatus};
use herd_core::task::{Payload, TaskInput};
use uuid::Uuid;

use super::find_in_project;
use super::states::set_cluster_status;
use super::{new_id, now};
use crate::Conflict;
use crate::entity::{cluster, node, task};
use crate::{Store, StoreError};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

pub(crate) async fn insert_task<C: ConnectionTrait>(
    conn: &C,
    project_id: Uuid,
    cluster_id: Uuid,
    input: TaskInput,
) -> Result<task::Model, StoreError> {
    let ts = now();
    Ok(task::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id),
        cluster_id: Set(Some(cluster_id)),
        kind: Set(input.kind()),
        status: Set(TaskStatus::Queued),
        step: Set(None),
        progress: Set(0),
        error_code: Set(None),
        error_message: Set(None),
        attempts: Set(0),
        worker: Set(None),
        heartbeat_at: Set(None),
        payload: Set(Payload::new(input).encode()),
        created_at: Set(ts),
        updated_at: Set(ts),
        started_at: Set(None),
        finished_at: Set(None),
    }
    .insert(conn)
    .await?)
}

/// The task open (queued or running) on the cluster, if any: at most one day-2 task
/// runs per cluster.
pub(crate) async fn open_task<C: ConnectionTrait>(
    conn: &C,
    cluster_id: Uuid,
) -> Result<Option<task::Model>, StoreError> {
    Ok(task::Entity::find()
        .filter(task::Column::ClusterId.eq(cluster_id))
        .filter(task::Column::Status.is_in([TaskStatus::Queued, TaskStatus::Running]))
        .one(conn)
        .await?)
}

fn cluster_busy(t: &task::Model) -> StoreError {
    StoreError::conflict(
        Conflict::ClusterBusy,
        format!("task {} ({}) is {} on this cluster; wait for it to finish", t.id, t.kind, t.status),
    )
}

impl Store {
    /// Every task of a cluster, oldest first.
    pub async fn tasks_of(&self, cluster_id: Uuid) -> Result<Vec<task::Model>, StoreError> {
        Ok(task::Entity::find()
            .filter(task::Column::ClusterId.eq(cluster_id))
            .order_by_asc(task::Column::Id)
            .all(&self.db)
            .await?)
    }

    pub async fn get_task(&self, project_id: Uuid, id: Uuid) -> Result<task::Model, StoreError> {
        find_in_project::<task::Entity, _>(&self.db, project_id, id).await
    }

    /// Checks the cluster can take a day-2 task now: it runs, and nothing else is open.
    /// On PostgreSQL the cluster row is locked (`FOR UPDATE`) until the caller's
    /// transaction ends, so two transactions (an API request and a worker's scheduler,
    /// say) cannot both find the cluster free and both add a task; SQLite's write
    /// transactions are serial already.
    pub(crate) async fn check_ready<C: ConnectionTrait>(&self, conn: &C, c: &cluster::Model) -> Result<(), StoreError> {
        let c = &cluster::Entity::find_by_id(c.id).lock_exclusive().one(conn).await?.ok_or(StoreError::NotFound)?;
        if !matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded) {
            return Err(StoreError::conflict(
                Conflict::ClusterNotReady,
                format!("cluster '{}' is {}; day-2 operations need it active or degraded", c.name, c.status),
            ));
        }
        match open_task(conn, c.id).await? {
            Some(t) => Err(cluster_busy(&t)),
            None => Ok(()),
        }
    }

    pub(crate) async fn open_day2_task<C: ConnectionTrait>(
        &self,
        conn: &C,
        c: cluster::Model,
        input: TaskInput,
        summary: &str,
        updating: bool,
    ) -> Result<task::Model, StoreError> {
        let t = insert_task(conn, c.project_id, c.id, input).await?;
        self.add_event(conn, c.project_id, c.id, Some(t.id), "info", None, summary).await?;
        if updating {
            set_cluster_status(conn, c, ClusterStatus::Updating).await?;
        }
        Ok(t)
    }

    /// Queues an action, a power change or another day-2 task for a running cluster.
    /// `node_ids` must belong to the cluster.
    pub async fn request_task(
        &self,
        project_id: Uuid,
        id: Uuid,
        node_ids: &[Uuid],
        input: TaskInput,
        summary: &str,
    ) -> Result<task::Model, StoreError> {
        let kind = input.kind();
        let tx = self.write_tx().await?;
        let c = self.project_cluster(&tx, project_id, id).await?;
        for n in node_ids {
            node::Entity::find_by_id(*n)
                .filter(node::Column::ClusterId.eq(id))
                .one(&tx)
                .await?
                .ok_or(StoreError::Invalid { field: "node_id", message: format!("cluster has no node {n}") })?;
        }
        // Powering a server is allowed whatever the cluster's health: it is how an
        // operator brings a lost node back.
        if kind == TaskKind::PowerNode {
            if !matches!(c.status, ClusterStatus::Active | ClusterStatus::Degraded | ClusterStatus::Failed) {
                self.check_ready(&tx, &c).await?;
            } else if let Some(t) = open_task(&tx, id).await? {
                return Err(cluster_busy(&t));
            }
        } else {
            self.check_ready(&tx, &c).await?;
        }
        let updating = matches!(kind, TaskKind::ClusterAction | TaskKind::ReplaceNode);
        let t = self.open_day2_task(&tx, c, input, summary, updating).await?;
        tx.commit().await?;
        Ok(t)
    }

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
        payload: &herd_core::task::Payload,
    ) -> Result<(), StoreError> {
        task::Entity::update_many()
            .col_expr(task::Column::Step, Expr::value(step))
            .col_expr(task::Column::Progress, Expr::value(progress.clamp(0, 100)))
            .col_expr(task::Column::Payload, Expr::value(payload.encode()))
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
        error: Option<(herd_core::faults::FaultCode, &str)>,
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
                .col_expr(task::Column::ErrorCode, Expr::value(code.as_str()))
                .col_expr(task::Column::ErrorMessage, Expr::value(message));
        }
        q.exec(&self.db).await?;
        Ok(())
    }

    /// Ends a successful build: the task succeeds and the cluster becomes `active`, with
    /// the renewal time of the certificates the build pushed, in one transaction: nobody
    /// sees one without the other, and no renewal scan an active cluster without a time.
    pub async fn complete_build(
        &self,
        task_id: Uuid,
        worker: &str,
        cluster_id: Uuid,
        certs_renew_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
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
        am.certs_renew_at = Set(Some(certs_renew_at));
        am.update(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a day-2 task: the task gets its outcome and an `updating` cluster returns to
    /// `active` in the same transaction (the poller then says whether it is degraded).
    pub async fn finish_day2(
        &self,
        task_id: Uuid,
        worker: &str,
        cluster_id: Uuid,
        status: TaskStatus,
        error: Option<(herd_core::faults::FaultCode, &str)>,
    ) -> Result<(), StoreError> {
        self.finish_task(task_id, worker, status, error).await?;
        let tx = self.write_tx().await?;
        if let Some(c) = cluster::Entity::find_by_id(cluster_id).one(&tx).await?
            && c.status == ClusterStatus::Updating
        {
            set_cluster_status(&tx, c, ClusterStatus::Active).await?;
        }
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
}
