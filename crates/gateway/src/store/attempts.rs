//! SQL for upstream attempts (one row per route a task tried), deferring a task
//! until its next poll, and the margin report.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Result, Store};

#[derive(Debug, Clone)]
pub struct UpstreamAttempt {
    pub id: String,
    pub task_id: String,
    pub seq: i64,
    pub route_index: i64,
    pub provider: String,
    pub upstream_model: String,
    pub upstream_id: Option<String>,
    pub handle: Option<String>,
    /// `running`, `succeeded`, `failed` (upstream said so) or `error` (could not submit).
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub polls: i64,
    pub cost_micro_usd: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl UpstreamAttempt {
    fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: r.try_get("id")?,
            task_id: r.try_get("task_id")?,
            seq: r.try_get("seq")?,
            route_index: r.try_get("route_index")?,
            provider: r.try_get("provider")?,
            upstream_model: r.try_get("upstream_model")?,
            upstream_id: r.try_get("upstream_id")?,
            handle: r.try_get("handle")?,
            status: r.try_get("status")?,
            error_code: r.try_get("error_code")?,
            error_message: r.try_get("error_message")?,
            polls: r.try_get("polls")?,
            cost_micro_usd: r.try_get("cost_micro_usd")?,
            created_at: r.try_get("created_at")?,
            finished_at: r.try_get("finished_at")?,
        })
    }
}

/// Revenue against upstream cost for one model and provider.
#[derive(Debug, Clone)]
pub struct MarginRow {
    pub model: String,
    pub provider: String,
    pub tasks: i64,
    pub credits_charged: i64,
    pub cost_micro_usd: i64,
}

const COLUMNS: &str = "id, task_id, seq, route_index, provider, upstream_model, upstream_id, handle, status, \
    error_code, error_message, polls, cost_micro_usd, created_at, finished_at";

impl Store {
    #[tracing::instrument(skip_all)]
    pub async fn upstream_attempts(&self, task_id: &str) -> Result<Vec<UpstreamAttempt>> {
        let sql = format!("SELECT {COLUMNS} FROM task_attempts WHERE task_id = $1 ORDER BY seq");
        let rows = sqlx::query(&sql).bind(task_id).fetch_all(&self.write).await?;
        rows.iter().map(UpstreamAttempt::from_row).collect()
    }

    #[tracing::instrument(skip_all)]
    pub async fn insert_upstream_attempt(&self, a: &UpstreamAttempt) -> Result<()> {
        sqlx::query(
            "INSERT INTO task_attempts (id, task_id, seq, route_index, provider, upstream_model, upstream_id, \
             handle, status, error_code, error_message, polls, cost_micro_usd, created_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&a.id)
        .bind(&a.task_id)
        .bind(a.seq)
        .bind(a.route_index)
        .bind(&a.provider)
        .bind(&a.upstream_model)
        .bind(&a.upstream_id)
        .bind(&a.handle)
        .bind(&a.status)
        .bind(&a.error_code)
        .bind(&a.error_message)
        .bind(a.polls)
        .bind(a.cost_micro_usd)
        .bind(a.created_at)
        .bind(a.finished_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Ends a running attempt.
    #[tracing::instrument(skip_all)]
    pub async fn end_upstream_attempt(
        &self,
        id: &str,
        status: &str,
        error: Option<(&str, &str)>,
        cost_micro_usd: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE task_attempts SET status = $1, error_code = $2, error_message = $3, cost_micro_usd = $4, \
             finished_at = $5 WHERE id = $6 AND status = 'running'",
        )
        .bind(status)
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .bind(cost_micro_usd)
        .bind(crate::util::now_ms())
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Adds polls made since the last count (the poller counts in memory and
    /// writes only now and then).
    #[tracing::instrument(skip_all)]
    pub async fn add_polls(&self, id: &str, polls: i64) -> Result<()> {
        if polls > 0 {
            sqlx::query("UPDATE task_attempts SET polls = polls + $1 WHERE id = $2")
                .bind(polls)
                .bind(id)
                .execute(&self.write)
                .await?;
        }
        Ok(())
    }

    /// Hands a task's lease from a worker to this process's upstream poller.
    #[tracing::instrument(skip_all)]
    pub async fn transfer_lease(&self, id: &str, from: &str, to: &str, until: i64, progress: i64) -> Result<bool> {
        let max = if self.backend == Backend::Sqlite { "MAX" } else { "GREATEST" };
        let sql = format!(
            "UPDATE tasks SET lease_owner = $1, lease_until = $2, progress = {max}(progress, $3), updated_at = $4 \
             WHERE id = $5 AND lease_owner = $6 AND status = 'processing'"
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
    pub async fn holds_lease(&self, id: &str, owner: &str) -> Result<bool> {
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
    pub async fn renew_leases(&self, owner: &str, until: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "UPDATE tasks SET lease_until = $1 WHERE lease_owner = $2 AND status = 'processing' RETURNING id",
        )
        .bind(until)
        .bind(owner)
        .fetch_all(&self.write)
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect()
    }

    /// Gives back every lease `owner` holds, so any worker (here after a restart,
    /// or on another replica) takes the tasks over at once.
    #[tracing::instrument(skip_all)]
    pub async fn release_leases(&self, owner: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE tasks SET lease_owner = NULL, lease_until = 0 WHERE lease_owner = $1 AND status = 'processing'",
        )
        .bind(owner)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected())
    }

    #[tracing::instrument(skip_all)]
    pub async fn set_task_cost(&self, id: &str, owner: &str, cost_micro_usd: i64) -> Result<()> {
        sqlx::query("UPDATE tasks SET upstream_cost_micro_usd = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(cost_micro_usd)
            .bind(id)
            .bind(owner)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Completed tasks' revenue and upstream cost by model and provider.
    #[tracing::instrument(skip_all)]
    pub async fn margin_report(&self) -> Result<Vec<MarginRow>> {
        let rows = sqlx::query(
            "SELECT model, COALESCE(provider, 'local') AS provider, CAST(COUNT(*) AS BIGINT) AS tasks, \
             CAST(COALESCE(SUM(credits_charged), 0) AS BIGINT) AS charged, \
             CAST(COALESCE(SUM(upstream_cost_micro_usd), 0) AS BIGINT) AS cost \
             FROM tasks WHERE status = 'completed' GROUP BY model, COALESCE(provider, 'local') ORDER BY model, provider",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MarginRow {
                    model: r.try_get("model")?,
                    provider: r.try_get("provider")?,
                    tasks: r.try_get("tasks")?,
                    credits_charged: r.try_get("charged")?,
                    cost_micro_usd: r.try_get("cost")?,
                })
            })
            .collect()
    }
}
