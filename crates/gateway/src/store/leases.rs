//! Task leases, the lock of the engine: a worker claims an open task until a
//! time, extends it while it works, and may hand it to this process's upstream
//! poller or give it back; only the holder may finish the task, and an expired
//! lease lets anyone (here after a restart, or another replica) take it over.

use sqlx::Row;

use super::tasks::{TASK_COLUMNS, TaskRow};
use super::{Backend, Result, Store};
use crate::ids::{LeaseOwner, TaskId};

impl Store {
    /// Takes the oldest open task whose lease is free or expired, marks it processing
    /// and leases it to `owner` until `lease_until`.
    #[tracing::instrument(skip_all)]
    pub async fn claim_task(&self, owner: &LeaseOwner, now: i64, lease_until: i64) -> Result<Option<TaskRow>> {
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE tasks SET status = 'processing', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT id FROM tasks WHERE status IN ('pending', 'processing') \
             AND lease_until < $3 ORDER BY lease_until, created_at LIMIT 1{lock}) \
             AND status IN ('pending', 'processing') AND lease_until < $3 RETURNING {TASK_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql).bind(owner).bind(lease_until).bind(now).fetch_optional(&self.write).await?)
    }

    /// Extends the lease and raises progress (never lowers it). False when the task
    /// is no longer this owner's open task (cancelled, or taken over).
    #[tracing::instrument(skip_all)]
    pub async fn heartbeat(&self, id: &TaskId, owner: &LeaseOwner, progress: i64, lease_until: i64) -> Result<bool> {
        let sql = format!(
            "UPDATE tasks SET progress = {}(progress, $1), lease_until = $2, updated_at = $5 \
             WHERE id = $3 AND lease_owner = $4 AND status = 'processing'",
            self.greatest()
        );
        let done = sqlx::query(&sql)
            .bind(progress)
            .bind(lease_until)
            .bind(id)
            .bind(owner)
            .bind(crate::util::now_ms())
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands a task back without finishing it (shutdown): it can be claimed at once.
    #[tracing::instrument(skip_all)]
    pub async fn release_lease(&self, id: &TaskId, owner: &LeaseOwner) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET lease_owner = NULL, lease_until = 0 WHERE id = $1 AND lease_owner = $2 \
             AND status = 'processing'",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands a task back to be claimed again no sooner than `not_before` (ms): the
    /// lease's end is when a task may next be claimed, so a retry waits in the
    /// queue, not in a worker.
    #[tracing::instrument(skip_all)]
    pub async fn defer_task(&self, id: &TaskId, owner: &LeaseOwner, not_before: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tasks SET lease_owner = NULL, lease_until = $1 WHERE id = $2 AND lease_owner = $3 \
             AND status = 'processing'",
        )
        .bind(not_before)
        .bind(id)
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands a task's lease from a worker to this process's upstream poller.
    #[tracing::instrument(skip_all)]
    pub async fn transfer_lease(
        &self,
        id: &TaskId,
        from: &LeaseOwner,
        to: &LeaseOwner,
        until: i64,
        progress: i64,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE tasks SET lease_owner = $1, lease_until = $2, progress = {}(progress, $3), updated_at = $4 \
             WHERE id = $5 AND lease_owner = $6 AND status = 'processing'",
            self.greatest()
        );
        let done = sqlx::query(&sql)
            .bind(to)
            .bind(until)
            .bind(progress)
            .bind(crate::util::now_ms())
            .bind(id)
            .bind(from)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// True while `owner` holds the open task's lease.
    #[tracing::instrument(skip_all)]
    pub async fn holds_lease(&self, id: &TaskId, owner: &LeaseOwner) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 AS one FROM tasks WHERE id = $1 AND lease_owner = $2 AND status = 'processing'")
                .bind(id)
                .bind(owner)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.is_some())
    }

    /// Extends every lease `owner` holds in one statement; answers the tasks it
    /// still holds (a cancelled task is no longer among them).
    #[tracing::instrument(skip_all)]
    pub async fn renew_leases(&self, owner: &LeaseOwner, until: i64) -> Result<Vec<TaskId>> {
        let rows = sqlx::query(
            "UPDATE tasks SET lease_until = $1 WHERE lease_owner = $2 AND status = 'processing' RETURNING id",
        )
        .bind(until)
        .bind(owner)
        .fetch_all(&self.write)
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<TaskId, _>("id")?)).collect()
    }

    /// Gives back every lease `owner` holds, so any worker (here after a restart,
    /// or on another replica) takes the tasks over at once.
    #[tracing::instrument(skip_all)]
    pub async fn release_leases(&self, owner: &LeaseOwner) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1 AND status = 'processing'",
        )
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }
}
