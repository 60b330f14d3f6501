//! SQL for callbacks: account secrets, the delivery outbox (claimed with leases,
//! like tasks, so no delivery is sent by two dispatchers at once) and its attempts.

use sqlx::AnyConnection;

use super::tasks::{NewDelivery, TaskRow};
use super::{Backend, Result, Store};
use crate::ids::{AccountId, DeliveryId, LeaseOwner, TaskId};

super::text_enum! {
    /// Where a callback delivery stands.
    DeliveryStatus {
        /// Waiting for its next attempt.
        Pending = "pending",
        /// A 2xx answer was received.
        Delivered = "delivered",
        /// Every retry is spent, or the address is not allowed.
        Failed = "failed",
    }
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct WebhookSecrets {
    #[sqlx(rename = "webhook_secret")]
    pub current: Option<String>,
    #[sqlx(rename = "webhook_secret_prev")]
    pub previous: Option<String>,
    /// Until when (ms) the previous secret still signs.
    #[sqlx(rename = "webhook_secret_prev_until")]
    pub previous_until: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub task_id: TaskId,
    pub account_id: AccountId,
    pub url: String,
    pub body: String,
    #[sqlx(try_from = "super::Text")]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One try to deliver a callback.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryAttemptRow {
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub latency_ms: i64,
}

const DELIVERY_COLUMNS: &str =
    "id, task_id, account_id, url, body, status, attempts, next_attempt_at, created_at, updated_at";

/// Writes a task's callback into the outbox, inside the transaction that ends it.
pub(super) async fn insert_delivery(tx: &mut AnyConnection, task: &TaskRow, d: &NewDelivery, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO deliveries (id, task_id, account_id, url, body, status, attempts, \
         next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
    )
    .bind(&d.id)
    .bind(&task.id)
    .bind(&task.account_id)
    .bind(&d.url)
    .bind(&d.body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    #[tracing::instrument(skip_all)]
    pub async fn webhook_secrets(&self, account_id: &AccountId) -> Result<WebhookSecrets> {
        let row = sqlx::query_as(
            "SELECT webhook_secret, webhook_secret_prev, webhook_secret_prev_until FROM accounts WHERE id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.write)
        .await?;
        Ok(row.unwrap_or_default())
    }

    /// Sets the account's first secret unless one exists; returns the one in force.
    #[tracing::instrument(skip_all)]
    pub async fn init_webhook_secret(&self, account_id: &AccountId, secret: &str) -> Result<Option<String>> {
        sqlx::query("UPDATE accounts SET webhook_secret = $1 WHERE id = $2 AND webhook_secret IS NULL")
            .bind(secret)
            .bind(account_id)
            .execute(&self.write)
            .await?;
        Ok(self.webhook_secrets(account_id).await?.current)
    }

    /// Makes `secret` current; the old one keeps signing until `previous_until`.
    #[tracing::instrument(skip_all)]
    pub async fn rotate_webhook_secret(&self, account_id: &AccountId, secret: &str, previous_until: i64) -> Result<()> {
        sqlx::query(
            "UPDATE accounts SET webhook_secret_prev = webhook_secret, webhook_secret_prev_until = $1, \
             webhook_secret = $2 WHERE id = $3",
        )
        .bind(previous_until)
        .bind(secret)
        .bind(account_id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Leases the oldest due delivery to `owner`.
    #[tracing::instrument(skip_all)]
    pub async fn claim_delivery(&self, owner: &LeaseOwner, now: i64, lease_until: i64) -> Result<Option<DeliveryRow>> {
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2, updated_at = $3 \
             WHERE id = (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at, id LIMIT 1{lock}) \
             AND status = 'pending' AND (lease_until IS NULL OR lease_until < $3) RETURNING {DELIVERY_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql).bind(owner).bind(lease_until).bind(now).fetch_optional(&self.write).await?)
    }

    /// Records one attempt and the delivery's next state (`delivered`, `failed`,
    /// or `pending` again at `next_attempt_at`), if `owner` still holds the lease.
    #[tracing::instrument(skip_all)]
    pub async fn record_attempt(
        &self,
        delivery_id: &DeliveryId,
        owner: &LeaseOwner,
        attempt: &DeliveryAttemptRow,
        status: DeliveryStatus,
        next_attempt_at: i64,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
             lease_owner = NULL, lease_until = NULL, updated_at = $3 WHERE id = $4 AND lease_owner = $5",
        )
        .bind(status.as_str())
        .bind(next_attempt_at)
        .bind(attempt.attempted_at)
        .bind(delivery_id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, error, latency_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(delivery_id)
        .bind(attempt.attempted_at)
        .bind(attempt.status_code)
        .bind(&attempt.error)
        .bind(attempt.latency_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_deliveries(&self, task_id: &TaskId) -> Result<Vec<DeliveryRow>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE task_id = $1 ORDER BY created_at, id");
        Ok(sqlx::query_as(&sql).bind(task_id).fetch_all(&self.write).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn delivery_attempts(&self, delivery_id: &DeliveryId) -> Result<Vec<DeliveryAttemptRow>> {
        Ok(sqlx::query_as(
            "SELECT attempted_at, status_code, error, latency_ms FROM delivery_attempts \
             WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(delivery_id)
        .fetch_all(&self.write)
        .await?)
    }

    /// Queues a finished (failed or delivered) delivery of the account again.
    /// Returns false when there is no such delivery or it is still pending.
    #[tracing::instrument(skip_all)]
    pub async fn retry_delivery(
        &self,
        account_id: &AccountId,
        task_id: &TaskId,
        delivery_id: &DeliveryId,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1 \
             WHERE id = $2 AND task_id = $3 AND account_id = $4 AND status <> 'pending'",
        )
        .bind(now)
        .bind(delivery_id)
        .bind(task_id)
        .bind(account_id)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
