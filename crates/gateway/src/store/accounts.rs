//! Accounts and API keys. An account holds three buckets of credits (available
//! `balance`, `held` by open tasks, `used` by completed ones) and may be
//! disabled; a key is stored as the SHA-256 of its secret, with its limits and
//! what it has spent against its budget. Every change an operator or a key
//! makes is audited in its own transaction.

use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use super::audit::{self, Actor, Entry};
use super::ledger::insert_grant;
use super::{Result, Store};
use crate::ids::{AccountId, KeyId};
use crate::limits::{AllowedModels, Budget, BudgetPeriod, BudgetUse, KeyLimits};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: AccountId,
    pub name: String,
    pub user_group: String,
    pub balance: i64,
    pub held: i64,
    pub used: i64,
    pub created_at: i64,
    /// When an operator disabled it; its keys stop working.
    pub disabled_at: Option<i64>,
}

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyRow {
    pub id: KeyId,
    pub account_id: AccountId,
    pub key_hash: String,
    /// The first characters of the key, for people to tell keys apart.
    pub prefix: String,
    pub name: String,
    pub budget_credits: Option<i64>,
    pub budget_period: Option<String>,
    /// Held plus charged over the key's life (a release gives back).
    pub spent: i64,
    pub period_start: i64,
    /// Held plus charged since `period_start` (kept while a day or month budget is set).
    pub period_spent: i64,
    pub rpm: Option<i64>,
    pub max_concurrent: Option<i64>,
    #[sqlx(try_from = "Option<String>")]
    pub allowed_models: AllowedModels,
    /// 1 when the key may list, make and revoke keys through `/v1/keys`.
    pub manage_keys: i64,
    /// The key that made this one through `/v1/keys`.
    pub created_by: Option<KeyId>,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

impl KeyRow {
    pub fn budget(&self) -> Option<Budget> {
        budget_of(self.budget_credits, self.budget_period.as_deref())
    }

    pub fn limits(&self) -> KeyLimits {
        KeyLimits {
            allowed_models: self.allowed_models.clone(),
            rpm: self.rpm,
            max_concurrent: self.max_concurrent,
            budget: self.budget(),
        }
    }

    pub fn budget_use(&self) -> BudgetUse {
        BudgetUse { spent: self.spent, period_start: self.period_start, period_spent: self.period_spent }
    }

    pub fn manages_keys(&self) -> bool {
        self.manage_keys != 0
    }

    /// What the audit log shows of a key.
    fn state(&self) -> Value {
        json!({
            "name": self.name,
            "allowed_models": self.allowed_models.0,
            "rpm": self.rpm,
            "max_concurrent": self.max_concurrent,
            "budget_credits": self.budget_credits,
            "budget_period": self.budget_period,
            "manage_keys": self.manages_keys(),
            "revoked": self.revoked_at.is_some(),
        })
    }
}

/// A stored budget; a period that does not parse reads as `total` (the
/// strictest), never as no budget.
pub(super) fn budget_of(credits: Option<i64>, period: Option<&str>) -> Option<Budget> {
    credits
        .map(|credits| Budget { credits, period: period.and_then(BudgetPeriod::parse).unwrap_or(BudgetPeriod::Total) })
}

/// What authentication needs to know about a presented key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthKey {
    #[sqlx(rename = "id")]
    pub key_id: KeyId,
    pub account_id: AccountId,
    #[sqlx(try_from = "Option<String>")]
    pub allowed_models: AllowedModels,
    pub revoked_at: Option<i64>,
    /// When the key's account was disabled.
    pub disabled_at: Option<i64>,
    pub user_group: String,
}

impl AuthKey {
    /// A revoked key, or one of a disabled account, no longer works.
    pub fn revoked(&self) -> bool {
        self.revoked_at.is_some() || self.disabled_at.is_some()
    }
}

/// Balances of an account and of the key asking.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Balances {
    #[sqlx(rename = "balance")]
    pub account_remaining: i64,
    #[sqlx(rename = "held")]
    pub account_held: i64,
    #[sqlx(rename = "used")]
    pub account_used: i64,
    pub budget_credits: Option<i64>,
    pub budget_period: Option<String>,
    /// Held plus charged by this key over its life (a release gives back).
    #[sqlx(rename = "spent")]
    pub key_spent: i64,
    pub period_start: i64,
    pub period_spent: i64,
    /// Held by this key's open tasks.
    pub key_held: i64,
}

impl Balances {
    pub fn budget(&self) -> Option<Budget> {
        budget_of(self.budget_credits, self.budget_period.as_deref())
    }

    pub fn budget_use(&self) -> BudgetUse {
        BudgetUse { spent: self.key_spent, period_start: self.period_start, period_spent: self.period_spent }
    }
}

/// How an attempt to make a key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKeyOutcome {
    Created,
    NoSuchAccount,
    /// The account already holds this many live keys.
    TooManyKeys(i64),
}

const ACCOUNT_COLUMNS: &str = "id, name, user_group, balance, held, used, created_at, disabled_at";
pub(super) const KEY_COLUMNS: &str = "id, account_id, key_hash, prefix, name, budget_credits, budget_period, spent, \
    period_start, period_spent, rpm, max_concurrent, allowed_models, manage_keys, created_by, revoked_at, created_at";

fn account_state(a: &AccountRow) -> Value {
    json!({"name": a.name, "balance": a.balance, "disabled": a.disabled_at.is_some()})
}

async fn insert_key(tx: &mut AnyConnection, key: &KeyRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, key_hash, prefix, name, budget_credits, budget_period, spent, \
         period_start, period_spent, rpm, max_concurrent, allowed_models, manage_keys, created_by, revoked_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, 0, $9, $10, $11, $12, $13, NULL, $14)",
    )
    .bind(&key.id)
    .bind(&key.account_id)
    .bind(&key.key_hash)
    .bind(&key.prefix)
    .bind(&key.name)
    .bind(key.budget_credits)
    .bind(&key.budget_period)
    .bind(key.period_start)
    .bind(key.rpm)
    .bind(key.max_concurrent)
    .bind(key.allowed_models.column())
    .bind(key.manage_keys)
    .bind(&key.created_by)
    .bind(key.created_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Inserts an account holding `credits` (a `signup` grant in the ledger) and its
/// first key, and audits it.
pub(super) async fn insert_account(
    tx: &mut AnyConnection,
    id: &AccountId,
    name: &str,
    credits: i64,
    first_key: &KeyRow,
    actor: &Actor,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO accounts (id, name, balance, held, used, created_at) VALUES ($1, $2, $3, 0, 0, $4)")
        .bind(id)
        .bind(name)
        .bind(credits)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    if credits > 0 {
        insert_grant(tx, id, credits, "signup", now).await?;
    }
    insert_key(tx, first_key).await?;
    let after = json!({"name": name, "balance": credits, "first_key": first_key.id});
    let entry =
        Entry { action: "account.create", target: id.as_str(), account_id: Some(id), before: None, after: Some(after) };
    audit::record(tx, actor, entry, now).await
}

/// Held plus charged by a key's tasks made since `since` (what a day or month
/// budget counts), read through the account's index of tasks by time.
async fn spent_since(tx: &mut AnyConnection, key: &KeyRow, since: i64) -> Result<i64> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'completed' THEN COALESCE(credits_charged, credits_reserved) \
         WHEN status = 'failed' THEN 0 ELSE credits_reserved END), 0) AS BIGINT) AS s FROM tasks \
         WHERE account_id = $1 AND created_us >= $2 AND key_id = $3 AND created_at >= $4",
    )
    .bind(&key.account_id)
    // Task times in microseconds run a little ahead of the clock, never behind
    // it by more than a replica's skew: a minute of slack covers it.
    .bind(since.saturating_mul(1000).saturating_sub(60_000_000))
    .bind(&key.id)
    .bind(since)
    .fetch_one(&mut *tx)
    .await?;
    Ok(row.try_get("s")?)
}

impl Store {
    /// Creates an account holding `credits` (recorded as a grant in the ledger)
    /// with its first key, in one transaction, audited.
    #[tracing::instrument(skip_all)]
    pub async fn create_account(
        &self,
        id: &AccountId,
        name: &str,
        credits: i64,
        first_key: &KeyRow,
        actor: &Actor,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        insert_account(&mut tx, id, name, credits, first_key, actor, crate::util::now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_account(&self, id: &AccountId) -> Result<Option<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.read).await?)
    }

    /// Accounts, oldest first; with `search`, those whose id is it or whose name
    /// contains it (any case).
    #[tracing::instrument(skip_all)]
    pub async fn list_accounts(&self, search: Option<&str>, limit: i64) -> Result<Vec<AccountRow>> {
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        let pattern = search.map(|s| {
            let escaped = s.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            format!("%{escaped}%")
        });
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE ($1 = '' OR id = $2 OR LOWER(name) LIKE $1 ESCAPE '\\') \
             ORDER BY created_at, id LIMIT $3"
        );
        Ok(sqlx::query_as(&sql)
            .bind(pattern.unwrap_or_default())
            .bind(search.unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }

    /// Disables an account (its keys stop working) or enables it again; returns
    /// the account as it is now, or `None` when there is no such account.
    #[tracing::instrument(skip_all)]
    pub async fn set_account_disabled(
        &self,
        id: &AccountId,
        disabled: bool,
        actor: &Actor,
    ) -> Result<Option<AccountRow>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let lock = format!("UPDATE accounts SET name = name WHERE id = $1 RETURNING {ACCOUNT_COLUMNS}");
        let Some(before): Option<AccountRow> = sqlx::query_as(&lock).bind(id).fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let sql = format!(
            "UPDATE accounts SET disabled_at = CASE WHEN $1 = 1 THEN COALESCE(disabled_at, $2) ELSE NULL END \
             WHERE id = $3 RETURNING {ACCOUNT_COLUMNS}"
        );
        let after: AccountRow =
            sqlx::query_as(&sql).bind(i64::from(disabled)).bind(now).bind(id).fetch_one(&mut *tx).await?;
        let action = if disabled { "account.disable" } else { "account.enable" };
        let entry = Entry {
            action,
            target: id.as_str(),
            account_id: Some(id),
            before: Some(account_state(&before)),
            after: Some(account_state(&after)),
        };
        audit::record(&mut tx, actor, entry, now).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    /// Makes a key unless its account holds `max_live_keys` live keys already
    /// (counted under a lock on the account, so concurrent makes cannot pass it).
    #[tracing::instrument(skip_all)]
    pub async fn create_key(&self, key: &KeyRow, max_live_keys: i64, actor: &Actor) -> Result<NewKeyOutcome> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let locked = sqlx::query("UPDATE accounts SET name = name WHERE id = $1")
            .bind(&key.account_id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() != 1 {
            return Ok(NewKeyOutcome::NoSuchAccount);
        }
        let live: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL",
        )
        .bind(&key.account_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if live >= max_live_keys {
            return Ok(NewKeyOutcome::TooManyKeys(live));
        }
        insert_key(&mut tx, key).await?;
        let entry = Entry {
            action: "key.create",
            target: key.id.as_str(),
            account_id: Some(&key.account_id),
            before: None,
            after: Some(key.state()),
        };
        audit::record(&mut tx, actor, entry, now).await?;
        tx.commit().await?;
        Ok(NewKeyOutcome::Created)
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_keys(&self, account_id: &AccountId) -> Result<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id");
        Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(&self.read).await?)
    }

    /// A key by id, fresh from the writer.
    #[tracing::instrument(skip_all)]
    pub async fn get_key(&self, key_id: &KeyId) -> Result<Option<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(key_id).fetch_optional(&self.write).await?)
    }

    /// Revokes a live key and answers it, revoked. With `by`, only that key
    /// itself or a key it made (in its account) may be revoked; `None` when
    /// there is no such live key (or none `by` may revoke).
    #[tracing::instrument(skip_all)]
    pub async fn revoke_key(&self, key_id: &KeyId, by: Option<&KeyRow>, actor: &Actor) -> Result<Option<KeyRow>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let sql = format!(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND ($3 = '' OR (account_id = $4 AND (id = $3 OR created_by = $3))) RETURNING {KEY_COLUMNS}"
        );
        let revoked: Option<KeyRow> = sqlx::query_as(&sql)
            .bind(now)
            .bind(key_id)
            .bind(by.map(|k| k.id.as_str()).unwrap_or_default())
            .bind(by.map(|k| k.account_id.as_str()).unwrap_or_default())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(after) = revoked else {
            return Ok(None);
        };
        let mut before = after.state();
        before["revoked"] = Value::Bool(false);
        let entry = Entry {
            action: "key.revoke",
            target: key_id.as_str(),
            account_id: Some(&after.account_id),
            before: Some(before),
            after: Some(after.state()),
        };
        audit::record(&mut tx, actor, entry, now).await?;
        tx.commit().await?;
        Ok(Some(after))
    }

    /// Changes a key's limits: `apply` sees the key as it is (under a lock) and
    /// says what its limits become, or refuses. A day or month budget that is set
    /// or changed starts from what the key's tasks hold or were charged in the
    /// current period. Returns the key before and after, or `None` when there is
    /// no such key.
    #[tracing::instrument(skip_all)]
    pub async fn update_key<E: From<super::StoreError>>(
        &self,
        key_id: &KeyId,
        apply: impl FnOnce(&KeyRow) -> Result<KeyLimits, E>,
        actor: &Actor,
    ) -> Result<Option<(KeyRow, KeyRow)>, E> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await.map_err(super::StoreError::from)?;
        let lock = format!("UPDATE api_keys SET name = name WHERE id = $1 RETURNING {KEY_COLUMNS}");
        let before: Option<KeyRow> =
            sqlx::query_as(&lock).bind(key_id).fetch_optional(&mut *tx).await.map_err(super::StoreError::from)?;
        let Some(before) = before else {
            return Ok(None);
        };
        let limits = apply(&before)?;
        let (period_start, period_spent) = match limits.budget {
            Some(b) if b.period != BudgetPeriod::Total && limits.budget != before.budget() => {
                let start = b.period.start(now);
                (start, spent_since(&mut tx, &before, start).await?)
            }
            _ => (before.period_start, before.period_spent),
        };
        let sql = format!(
            "UPDATE api_keys SET allowed_models = $1, rpm = $2, max_concurrent = $3, budget_credits = $4, \
             budget_period = $5, period_start = $6, period_spent = $7 WHERE id = $8 RETURNING {KEY_COLUMNS}"
        );
        let after: KeyRow = sqlx::query_as(&sql)
            .bind(limits.allowed_models.column())
            .bind(limits.rpm)
            .bind(limits.max_concurrent)
            .bind(limits.budget.map(|b| b.credits))
            .bind(limits.budget.map(|b| b.period.as_str()))
            .bind(period_start)
            .bind(period_spent)
            .bind(key_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(super::StoreError::from)?;
        let entry = Entry {
            action: "key.limits",
            target: key_id.as_str(),
            account_id: Some(&after.account_id),
            before: Some(before.state()),
            after: Some(after.state()),
        };
        audit::record(&mut tx, actor, entry, now).await?;
        tx.commit().await.map_err(super::StoreError::from)?;
        Ok(Some((before, after)))
    }

    /// The key with this hash, live or revoked, with its account's group and state.
    #[tracing::instrument(skip_all)]
    pub async fn find_key(&self, key_hash: &str) -> Result<Option<AuthKey>> {
        Ok(sqlx::query_as(
            "SELECT k.id, k.account_id, k.allowed_models, k.revoked_at, a.disabled_at, a.user_group \
             FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.read)
        .await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn balances(&self, account_id: &AccountId, key_id: &KeyId) -> Result<Option<Balances>> {
        Ok(sqlx::query_as(
            "SELECT a.balance, a.held, a.used, k.budget_credits, k.budget_period, k.spent, k.period_start, \
             k.period_spent, CAST(COALESCE((SELECT SUM(t.credits_reserved) FROM tasks t WHERE t.key_id = k.id \
             AND t.status IN ('pending', 'processing')), 0) AS BIGINT) AS key_held \
             FROM accounts a JOIN api_keys k ON k.account_id = a.id WHERE a.id = $1 AND k.id = $2",
        )
        .bind(account_id)
        .bind(key_id)
        .fetch_optional(&self.read)
        .await?)
    }
}
