//! Usage and money reports read from the ledger itself, so they agree with it to
//! the unit: usage grouped by day, key, model or account (each completed task's
//! charge, counted when it was charged), pages of ledger entries, the margin
//! over time and each provider's recent latency.

use super::{Result, Store};
use crate::ids::AccountId;

/// What usage is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// The UTC day of the charge.
    Day,
    Key,
    Model,
    Account,
}

/// One group of usage: completed tasks charged in the range.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    /// The day (days since 1970-01-01, as text), key id, model or account id.
    pub grp: String,
    pub tasks: i64,
    /// Units of 1/10000 credit.
    pub credits_charged: i64,
    pub video_seconds: i64,
}

/// One movement of credits.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LedgerRow {
    pub id: i64,
    pub account_id: AccountId,
    pub task_id: Option<String>,
    /// `grant`, `hold`, `settle` (note `charge` or `release`) or `refund`.
    pub kind: String,
    pub amount: i64,
    pub note: Option<String>,
    pub created_at: i64,
}

/// Revenue against upstream cost of the tasks completed on one UTC day.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MarginDay {
    /// Days since 1970-01-01.
    pub day: i64,
    pub tasks: i64,
    pub credits_charged: i64,
    pub cost_micro_usd: i64,
}

/// A provider's recent upstream attempts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderStats {
    pub provider: String,
    pub attempts: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Mean time from submit to a successful end, milliseconds.
    pub mean_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

impl Store {
    /// Completed tasks charged in `[from, to)` (epoch ms), grouped; with
    /// `account`, that account's only.
    #[tracing::instrument(skip_all)]
    pub async fn usage(
        &self,
        account: Option<&AccountId>,
        from: i64,
        to: i64,
        group: UsageGroup,
    ) -> Result<Vec<UsageRow>> {
        let grp = match group {
            UsageGroup::Day => "CAST(CAST(l.created_at / 86400000 AS BIGINT) AS TEXT)",
            UsageGroup::Key => "t.key_id",
            UsageGroup::Model => "t.model",
            UsageGroup::Account => "l.account_id",
        };
        let sql = format!(
            "SELECT {grp} AS grp, CAST(COUNT(*) AS BIGINT) AS tasks, \
             CAST(COALESCE(SUM(l.amount), 0) AS BIGINT) AS credits_charged, \
             CAST(COALESCE(SUM(t.video_duration), 0) AS BIGINT) AS video_seconds \
             FROM ledger l JOIN tasks t ON t.id = l.task_id \
             WHERE l.kind = 'settle' AND l.note = 'charge' AND ($1 = '' OR l.account_id = $1) \
             AND l.created_at >= $2 AND l.created_at < $3 GROUP BY {grp} ORDER BY {grp}"
        );
        let mut rows: Vec<UsageRow> = sqlx::query_as(&sql)
            .bind(account.map(AccountId::as_str).unwrap_or_default())
            .bind(from)
            .bind(to)
            .fetch_all(&self.read)
            .await?;
        if group == UsageGroup::Day {
            // Text order is not day order ("9" > "10").
            rows.sort_by_key(|r| r.grp.parse::<i64>().unwrap_or(i64::MAX));
        }
        Ok(rows)
    }

    /// One page of ledger entries, newest first, below `before_id` if given.
    #[tracing::instrument(skip_all)]
    pub async fn ledger_page(
        &self,
        account: Option<&AccountId>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LedgerRow>> {
        Ok(sqlx::query_as(
            "SELECT id, account_id, task_id, kind, amount, note, created_at FROM ledger \
             WHERE ($1 = '' OR account_id = $1) AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(account.map(AccountId::as_str).unwrap_or_default())
        .bind(before_id.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    /// Revenue and upstream cost of the tasks completed in `[from, to)`, by UTC day.
    #[tracing::instrument(skip_all)]
    pub async fn margin_by_day(&self, from: i64, to: i64) -> Result<Vec<MarginDay>> {
        Ok(sqlx::query_as(
            "SELECT CAST(finished_at / 86400000 AS BIGINT) AS day, CAST(COUNT(*) AS BIGINT) AS tasks, \
             CAST(COALESCE(SUM(credits_charged), 0) AS BIGINT) AS credits_charged, \
             CAST(COALESCE(SUM(upstream_cost_micro_usd), 0) AS BIGINT) AS cost_micro_usd \
             FROM tasks WHERE status = 'completed' AND finished_at >= $1 AND finished_at < $2 \
             GROUP BY CAST(finished_at / 86400000 AS BIGINT) ORDER BY day",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.read)
        .await?)
    }

    /// Each provider's upstream attempts made since `since` (epoch ms).
    #[tracing::instrument(skip_all)]
    pub async fn provider_stats(&self, since: i64) -> Result<Vec<ProviderStats>> {
        Ok(sqlx::query_as(
            "SELECT provider, CAST(COUNT(*) AS BIGINT) AS attempts, \
             CAST(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT) AS succeeded, \
             CAST(SUM(CASE WHEN status IN ('failed', 'error', 'abandoned') THEN 1 ELSE 0 END) AS BIGINT) AS failed, \
             CAST(AVG(CASE WHEN status = 'succeeded' THEN finished_at - created_at END) AS BIGINT) AS mean_ms, \
             CAST(MAX(CASE WHEN status = 'succeeded' THEN finished_at - created_at END) AS BIGINT) AS max_ms \
             FROM task_attempts WHERE created_at >= $1 GROUP BY provider ORDER BY provider",
        )
        .bind(since)
        .fetch_all(&self.read)
        .await?)
    }
}
