//! The ledger: every movement of credits, written in the same transaction as the
//! account buckets it changes. A task's price is held at create (`hold`) and
//! settled once when it ends (`settle`: charged on completion, released on
//! failure); the unique (task, kind) index makes a second settlement impossible.

use sqlx::{AnyConnection, Row};

use vidgate_api::task::TaskStatus;

use super::tasks::TaskRow;
use super::{Result, Store};
use crate::ids::{AccountId, KeyId, TaskId};

/// Records a grant (or, negative, a take-back) of credits to an account.
pub(super) async fn insert_grant(
    tx: &mut AnyConnection,
    account_id: &AccountId,
    amount: i64,
    note: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO ledger (account_id, kind, amount, note, created_at) VALUES ($1, 'grant', $2, $3, $4)")
        .bind(account_id)
        .bind(amount)
        .bind(note)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Whether a hold went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Held,
    InsufficientQuota,
    KeyCapExceeded,
}

/// Moves `amount` from the account's balance to held and counts it against the
/// key's cap; a refused hold undoes its own changes, leaving the transaction as
/// it found it (so several creates can share one transaction).
pub(super) async fn hold(
    tx: &mut AnyConnection,
    account_id: &AccountId,
    key_id: &KeyId,
    task_id: &TaskId,
    amount: i64,
    now: i64,
) -> Result<Hold> {
    let held = sqlx::query(
        "UPDATE accounts SET balance = balance - $1, held = held + $1 \
         WHERE id = $2 AND balance >= $1",
    )
    .bind(amount)
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    if held.rows_affected() != 1 {
        return Ok(Hold::InsufficientQuota);
    }
    let capped = sqlx::query(
        "UPDATE api_keys SET spent = spent + $1 \
         WHERE id = $2 AND (credit_cap IS NULL OR spent + $1 <= credit_cap)",
    )
    .bind(amount)
    .bind(key_id)
    .execute(&mut *tx)
    .await?;
    if capped.rows_affected() != 1 {
        sqlx::query("UPDATE accounts SET balance = balance + $1, held = held - $1 WHERE id = $2")
            .bind(amount)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        return Ok(Hold::KeyCapExceeded);
    }
    sqlx::query("INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES ($1, $2, 'hold', $3, $4)")
        .bind(account_id)
        .bind(task_id)
        .bind(amount)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(Hold::Held)
}

/// Settles a task that has just ended (its row already final): a completed task
/// is charged `credits_charged` and the rest of its hold, if any, goes back; a
/// failed one gets its whole hold back. The unique (task, kind) entries are the
/// last line of defence against a double settlement: a second one fails and
/// rolls everything back.
pub(super) async fn settle(tx: &mut AnyConnection, task: &TaskRow, now: i64) -> Result<()> {
    let held = task.credits_reserved;
    let completed = task.status == TaskStatus::Completed;
    let charged = if completed { task.credits_charged.unwrap_or(held).clamp(0, held) } else { 0 };
    let refund = held - charged;
    if completed {
        task_entry(tx, task, "settle", charged, "charge", now).await?;
        if refund > 0 {
            task_entry(tx, task, "refund", refund, "the output cost less than was held", now).await?;
        }
    } else {
        task_entry(tx, task, "settle", held, "release", now).await?;
    }
    sqlx::query("UPDATE accounts SET held = held - $1, used = used + $2, balance = balance + $3 WHERE id = $4")
        .bind(held)
        .bind(charged)
        .bind(refund)
        .bind(&task.account_id)
        .execute(&mut *tx)
        .await?;
    if refund > 0 {
        sqlx::query("UPDATE api_keys SET spent = spent - $1 WHERE id = $2")
            .bind(refund)
            .bind(&task.key_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// One ledger entry of a task's money.
async fn task_entry(
    tx: &mut AnyConnection,
    task: &TaskRow,
    kind: &str,
    amount: i64,
    note: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO ledger (account_id, task_id, kind, amount, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&task.account_id)
    .bind(&task.id)
    .bind(kind)
    .bind(amount)
    .bind(note)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Adds (or, with a negative amount, removes) credits; never below zero.
    /// Returns the new balance, or `None` when the account does not exist or the
    /// removal would make the balance negative.
    #[tracing::instrument(skip_all)]
    pub async fn grant_credits(&self, account_id: &AccountId, amount: i64, note: &str) -> Result<Option<i64>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND balance + $1 >= 0 \
             RETURNING balance",
        )
        .bind(amount)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let balance: i64 = row.try_get("balance")?;
        insert_grant(&mut tx, account_id, amount, note, now).await?;
        tx.commit().await?;
        Ok(Some(balance))
    }

    /// Sum of every grant and the account's three buckets, for audits: grants
    /// must equal balance + held + used.
    #[tracing::instrument(skip_all)]
    pub async fn ledger_check(&self, account_id: &AccountId) -> Result<(i64, i64)> {
        let grants = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS s FROM ledger \
             WHERE account_id = $1 AND kind = 'grant'",
        )
        .bind(account_id)
        .fetch_one(&self.write)
        .await?;
        let acct = sqlx::query("SELECT balance + held + used AS t FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&self.write)
            .await?;
        Ok((grants.try_get("s")?, acct.try_get("t")?))
    }

    /// The kinds of the ledger entries of a task, oldest first (for audits and tests).
    #[tracing::instrument(skip_all)]
    pub async fn ledger_entries(&self, task_id: &TaskId) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT kind FROM ledger WHERE task_id = $1 ORDER BY id")
            .bind(task_id)
            .fetch_all(&self.write)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("kind")?)).collect()
    }
}
