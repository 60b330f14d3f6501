//! Upstream attempts: one row per try of a task at a provider route, with the
//! provider's handle (so any replica can poll it after a takeover), its outcome
//! and what it cost us; and the margin report built on them.

use vidgate_api::task::TaskErrorCode;

use super::{Result, Store};
use crate::ids::{AttemptId, TaskId};

super::text_enum! {
    /// Where an upstream attempt stands.
    AttemptStatus {
        /// Accepted upstream and not finished yet.
        Running = "running",
        Succeeded = "succeeded",
        /// The upstream said it failed (or its result was unusable).
        Failed = "failed",
        /// Never accepted: the submit itself failed.
        Error = "error",
        /// Accepted, then given up on while its provider stopped answering: it may
        /// still run (and be billed) there, so its cost counts.
        Abandoned = "abandoned",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UpstreamAttempt {
    pub id: AttemptId,
    pub task_id: TaskId,
    pub seq: i64,
    pub route_index: i64,
    pub provider: String,
    pub upstream_model: String,
    pub upstream_id: Option<String>,
    /// The provider's `Handle` as JSON.
    pub handle: Option<String>,
    #[sqlx(try_from = "super::Text")]
    pub status: AttemptStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub polls: i64,
    pub cost_micro_usd: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    /// On a refused submit worth a retry on the same route: its pace
    /// (`throttled` or `brief`); else `None`.
    pub retry: Option<String>,
}

/// How a running attempt ended.
#[derive(Debug, Clone)]
pub enum AttemptEnd {
    Succeeded {
        cost_micro_usd: i64,
    },
    Failed {
        code: TaskErrorCode,
        message: String,
    },
    /// Given up on while it may still run upstream; what it may cost us.
    Abandoned {
        code: TaskErrorCode,
        message: String,
        cost_micro_usd: i64,
    },
}

/// Revenue against upstream cost for one model and provider.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MarginRow {
    pub model: String,
    pub provider: String,
    pub tasks: i64,
    pub credits_charged: i64,
    pub cost_micro_usd: i64,
}

const COLUMNS: &str = "id, task_id, seq, route_index, provider, upstream_model, upstream_id, handle, status, \
    error_code, error_message, polls, cost_micro_usd, created_at, finished_at, retry";

impl Store {
    #[tracing::instrument(skip_all)]
    pub async fn upstream_attempts(&self, task_id: &TaskId) -> Result<Vec<UpstreamAttempt>> {
        let sql = format!("SELECT {COLUMNS} FROM task_attempts WHERE task_id = $1 ORDER BY seq");
        Ok(sqlx::query_as(&sql).bind(task_id).fetch_all(&self.write).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn insert_upstream_attempt(&self, a: &UpstreamAttempt) -> Result<()> {
        sqlx::query(
            "INSERT INTO task_attempts (id, task_id, seq, route_index, provider, upstream_model, upstream_id, \
             handle, status, error_code, error_message, polls, cost_micro_usd, created_at, finished_at, retry) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&a.id)
        .bind(&a.task_id)
        .bind(a.seq)
        .bind(a.route_index)
        .bind(&a.provider)
        .bind(&a.upstream_model)
        .bind(&a.upstream_id)
        .bind(&a.handle)
        .bind(a.status.as_str())
        .bind(&a.error_code)
        .bind(&a.error_message)
        .bind(a.polls)
        .bind(a.cost_micro_usd)
        .bind(a.created_at)
        .bind(a.finished_at)
        .bind(&a.retry)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Ends a running attempt (an attempt already ended stays as it was).
    #[tracing::instrument(skip_all)]
    pub async fn end_upstream_attempt(&self, id: &AttemptId, end: &AttemptEnd) -> Result<()> {
        let (status, code, message, cost) = match end {
            AttemptEnd::Succeeded { cost_micro_usd } => (AttemptStatus::Succeeded, None, None, *cost_micro_usd),
            AttemptEnd::Failed { code, message } => {
                (AttemptStatus::Failed, Some(code.as_str()), Some(message.as_str()), 0)
            }
            AttemptEnd::Abandoned { code, message, cost_micro_usd } => {
                (AttemptStatus::Abandoned, Some(code.as_str()), Some(message.as_str()), *cost_micro_usd)
            }
        };
        sqlx::query(
            "UPDATE task_attempts SET status = $1, error_code = $2, error_message = $3, cost_micro_usd = $4, \
             finished_at = $5 WHERE id = $6 AND status = 'running'",
        )
        .bind(status.as_str())
        .bind(code)
        .bind(message)
        .bind(cost)
        .bind(crate::util::now_ms())
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Adds polls made since the last count (the poller counts in memory and
    /// writes only now and then).
    #[tracing::instrument(skip_all)]
    pub async fn add_polls(&self, id: &AttemptId, polls: i64) -> Result<()> {
        if polls > 0 {
            sqlx::query("UPDATE task_attempts SET polls = polls + $1 WHERE id = $2")
                .bind(polls)
                .bind(id)
                .execute(&self.write)
                .await?;
        }
        Ok(())
    }

    /// Completed tasks' revenue and upstream cost by model and provider.
    #[tracing::instrument(skip_all)]
    pub async fn margin_report(&self) -> Result<Vec<MarginRow>> {
        Ok(sqlx::query_as(
            "SELECT model, COALESCE(provider, 'local') AS provider, CAST(COUNT(*) AS BIGINT) AS tasks, \
             CAST(COALESCE(SUM(credits_charged), 0) AS BIGINT) AS credits_charged, \
             CAST(COALESCE(SUM(upstream_cost_micro_usd), 0) AS BIGINT) AS cost_micro_usd \
             FROM tasks WHERE status = 'completed' GROUP BY model, COALESCE(provider, 'local') ORDER BY model, provider",
        )
        .fetch_all(&self.read)
        .await?)
    }
}
