//! Top-up codes and sign-up: batches of codes kept only as SHA-256 hashes, each
//! redeemed at most `uses_per_code` times and once per account (the decrement
//! and the account's redemption row are one transaction, so concurrent
//! redemptions can never pass the count), sign-up with a code, and the
//! fixed-window counters that rate-limit sign-up across replicas.

use serde_json::json;
use sqlx::{AnyConnection, Row};

use super::accounts::{KeyRow, insert_account};
use super::audit::{self, Actor, Entry};
use super::ledger::insert_grant;
use super::{Result, Store};
use crate::ids::{AccountId, BatchId};

/// A batch of codes as the operator made it, with how much of it is used.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeBatchRow {
    pub id: BatchId,
    /// Units each redemption adds.
    pub value: i64,
    pub count: i64,
    pub uses_per_code: i64,
    pub expires_at: Option<i64>,
    pub note: Option<String>,
    pub created_at: i64,
    /// Redemptions so far, across the batch's codes.
    pub redeemed: i64,
}

/// A code of a new batch: its hash and the first characters people see.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub hash: String,
    pub prefix: String,
}

/// Why a code was not redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    Unknown,
    Expired,
    UsedUp,
    /// This account has redeemed this code before.
    AlreadyRedeemed,
}

/// A redemption that went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redeemed {
    /// Units added.
    pub value: i64,
    /// The account's available balance afterwards.
    pub balance: i64,
}

/// Redeems a code for an account inside `tx`; on a refusal the caller rolls
/// the transaction back.
async fn redeem_in(
    tx: &mut AnyConnection,
    code_hash: &str,
    account_id: &AccountId,
    actor: &Actor,
    now: i64,
) -> Result<std::result::Result<Redeemed, CodeRefusal>> {
    let taken = sqlx::query(
        "UPDATE topup_codes SET uses_left = uses_left - 1 \
         WHERE code_hash = $1 AND uses_left > 0 AND (expires_at IS NULL OR expires_at > $2) \
         RETURNING value, prefix, batch_id",
    )
    .bind(code_hash)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(taken) = taken else {
        let row = sqlx::query("SELECT uses_left, expires_at FROM topup_codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await?;
        return Ok(Err(match row {
            None => CodeRefusal::Unknown,
            Some(r) => {
                let expires_at: Option<i64> = r.try_get("expires_at")?;
                if expires_at.is_some_and(|at| at <= now) { CodeRefusal::Expired } else { CodeRefusal::UsedUp }
            }
        }));
    };
    let value: i64 = taken.try_get("value")?;
    let prefix: String = taken.try_get("prefix")?;
    let batch: String = taken.try_get("batch_id")?;
    let first = sqlx::query(
        "INSERT INTO code_redemptions (code_hash, account_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (code_hash, account_id) DO NOTHING",
    )
    .bind(code_hash)
    .bind(account_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if first.rows_affected() != 1 {
        return Ok(Err(CodeRefusal::AlreadyRedeemed));
    }
    let balance: i64 = sqlx::query("UPDATE accounts SET balance = balance + $1 WHERE id = $2 RETURNING balance")
        .bind(value)
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("balance")?;
    insert_grant(tx, account_id, value, &format!("code {prefix}"), now).await?;
    let entry = Entry {
        action: "code.redeem",
        target: &prefix,
        account_id: Some(account_id),
        before: Some(json!({"balance": balance - value})),
        after: Some(json!({"balance": balance, "amount": value, "batch": batch})),
    };
    audit::record(tx, actor, entry, now).await?;
    Ok(Ok(Redeemed { value, balance }))
}

impl Store {
    /// Stores a batch and its codes (hashes only), audited.
    #[tracing::instrument(skip_all)]
    pub async fn create_code_batch(&self, batch: &CodeBatchRow, codes: &[NewCode], actor: &Actor) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO code_batches (id, value, count, uses_per_code, expires_at, note, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&batch.id)
        .bind(batch.value)
        .bind(batch.count)
        .bind(batch.uses_per_code)
        .bind(batch.expires_at)
        .bind(&batch.note)
        .bind(batch.created_at)
        .execute(&mut *tx)
        .await?;
        for code in codes {
            sqlx::query(
                "INSERT INTO topup_codes (code_hash, batch_id, prefix, value, uses_left, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&code.hash)
            .bind(&batch.id)
            .bind(&code.prefix)
            .bind(batch.value)
            .bind(batch.uses_per_code)
            .bind(batch.expires_at)
            .bind(batch.created_at)
            .execute(&mut *tx)
            .await?;
        }
        let entry = Entry {
            action: "codes.create",
            target: batch.id.as_str(),
            account_id: None,
            before: None,
            after: Some(json!({
                "value": batch.value, "count": batch.count, "uses_per_code": batch.uses_per_code,
                "expires_at": batch.expires_at, "note": batch.note,
            })),
        };
        audit::record(&mut tx, actor, entry, batch.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every batch, newest first, with its redemptions so far.
    #[tracing::instrument(skip_all)]
    pub async fn list_code_batches(&self) -> Result<Vec<CodeBatchRow>> {
        Ok(sqlx::query_as(
            "SELECT b.id, b.value, b.count, b.uses_per_code, b.expires_at, b.note, b.created_at, \
             CAST(b.count * b.uses_per_code - COALESCE((SELECT SUM(c.uses_left) FROM topup_codes c \
             WHERE c.batch_id = b.id), 0) AS BIGINT) AS redeemed \
             FROM code_batches b ORDER BY b.created_at DESC, b.id DESC",
        )
        .fetch_all(&self.read)
        .await?)
    }

    /// Redeems a code for an existing account.
    #[tracing::instrument(skip_all)]
    pub async fn redeem_code(
        &self,
        code_hash: &str,
        account_id: &AccountId,
        actor: &Actor,
    ) -> Result<std::result::Result<Redeemed, CodeRefusal>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let outcome = redeem_in(&mut tx, code_hash, account_id, actor, now).await?;
        if outcome.is_ok() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    /// Opens an account with `credits` and its first key, and redeems the code
    /// for it, all or nothing.
    #[tracing::instrument(skip_all)]
    pub async fn sign_up_with_code(
        &self,
        code_hash: &str,
        account_id: &AccountId,
        name: &str,
        credits: i64,
        first_key: &KeyRow,
        actor: &Actor,
    ) -> Result<std::result::Result<Redeemed, CodeRefusal>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        insert_account(&mut tx, account_id, name, credits, first_key, actor, now).await?;
        let outcome = redeem_in(&mut tx, code_hash, account_id, actor, now).await?;
        if outcome.is_ok() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    /// Counts one event for `subject` in the window starting at `window_start`
    /// (shared by every replica); answers the count including this one. Windows
    /// that ended before `forget_before` are deleted on the way.
    #[tracing::instrument(skip_all)]
    pub async fn count_in_window(
        &self,
        scope: &str,
        subject: &str,
        window_start: i64,
        forget_before: i64,
    ) -> Result<i64> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM rate_counters WHERE scope = $1 AND window_start < $2")
            .bind(scope)
            .bind(forget_before)
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query(
            "INSERT INTO rate_counters (scope, subject, window_start, count) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (scope, subject, window_start) DO UPDATE SET count = rate_counters.count + 1 \
             RETURNING count",
        )
        .bind(scope)
        .bind(subject)
        .bind(window_start)
        .fetch_one(&mut *tx)
        .await?
        .try_get("count")?;
        tx.commit().await?;
        Ok(count)
    }
}
