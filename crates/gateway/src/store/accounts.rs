//! Accounts and API keys. An account holds three buckets of credits (available
//! `balance`, `held` by open tasks, `used` by completed ones); a key is stored as
//! the SHA-256 of its secret, with its limits.

use super::ledger::insert_grant;
use super::{Result, Store};
use crate::ids::{AccountId, KeyId};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    pub id: AccountId,
    pub name: String,
    pub user_group: String,
    pub balance: i64,
    pub held: i64,
    pub used: i64,
    pub created_at: i64,
}

/// The models a key may use: all (`None`) or a list, stored comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedModels(pub Option<Vec<String>>);

impl AllowedModels {
    pub fn allows(&self, model: &str) -> bool {
        self.0.as_ref().is_none_or(|list| list.iter().any(|m| m == model))
    }

    fn column(&self) -> Option<String> {
        self.0.as_ref().map(|m| m.join(","))
    }
}

impl From<Option<String>> for AllowedModels {
    fn from(s: Option<String>) -> Self {
        Self(s.map(|s| s.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect()))
    }
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
    pub credit_cap: Option<i64>,
    pub spent: i64,
    #[sqlx(try_from = "Option<String>")]
    pub allowed_models: AllowedModels,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

/// What authentication needs to know about a presented key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthKey {
    #[sqlx(rename = "id")]
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub credit_cap: Option<i64>,
    #[sqlx(try_from = "Option<String>")]
    pub allowed_models: AllowedModels,
    pub revoked_at: Option<i64>,
    pub user_group: String,
}

impl AuthKey {
    pub fn revoked(&self) -> bool {
        self.revoked_at.is_some()
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
    #[sqlx(rename = "credit_cap")]
    pub key_cap: Option<i64>,
    /// Held plus charged by this key (a release gives back).
    #[sqlx(rename = "spent")]
    pub key_spent: i64,
    /// Held by this key's open tasks.
    pub key_held: i64,
}

const ACCOUNT_COLUMNS: &str = "id, name, user_group, balance, held, used, created_at";
const KEY_COLUMNS: &str =
    "id, account_id, key_hash, prefix, name, credit_cap, spent, allowed_models, revoked_at, created_at";

impl Store {
    /// Creates an account holding `credits` (recorded as a grant in the ledger).
    #[tracing::instrument(skip_all)]
    pub async fn create_account(&self, id: &AccountId, name: &str, credits: i64) -> Result<()> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO accounts (id, name, balance, held, used, created_at) \
             VALUES ($1, $2, $3, 0, 0, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(credits)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if credits > 0 {
            insert_grant(&mut tx, id, credits, "signup", now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_account(&self, id: &AccountId) -> Result<Option<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.read).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_accounts(&self) -> Result<Vec<AccountRow>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY created_at, id");
        Ok(sqlx::query_as(&sql).fetch_all(&self.read).await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn create_key(&self, key: &KeyRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, key_hash, prefix, name, credit_cap, spent, \
             allowed_models, revoked_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, NULL, $8)",
        )
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(&key.name)
        .bind(key.credit_cap)
        .bind(key.allowed_models.column())
        .bind(key.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    pub async fn list_keys(&self, account_id: &AccountId) -> Result<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id");
        Ok(sqlx::query_as(&sql).bind(account_id).fetch_all(&self.read).await?)
    }

    /// Revokes a key; returns false when there is no such live key.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_key(&self, key_id: &KeyId) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(crate::util::now_ms())
            .bind(key_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets or clears a key's credit cap and allowed models.
    #[tracing::instrument(skip_all)]
    pub async fn update_key_limits(
        &self,
        key_id: &KeyId,
        credit_cap: Option<i64>,
        allowed_models: &AllowedModels,
    ) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET credit_cap = $1, allowed_models = $2 WHERE id = $3")
            .bind(credit_cap)
            .bind(allowed_models.column())
            .bind(key_id)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The key with this hash, live or revoked, with its account's group.
    #[tracing::instrument(skip_all)]
    pub async fn find_key(&self, key_hash: &str) -> Result<Option<AuthKey>> {
        Ok(sqlx::query_as(
            "SELECT k.id, k.account_id, k.credit_cap, k.allowed_models, k.revoked_at, a.user_group \
             FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.read)
        .await?)
    }

    #[tracing::instrument(skip_all)]
    pub async fn balances(&self, account_id: &AccountId, key_id: &KeyId) -> Result<Option<Balances>> {
        Ok(sqlx::query_as(
            "SELECT a.balance, a.held, a.used, k.credit_cap, k.spent, \
             CAST(COALESCE((SELECT SUM(t.credits_reserved) FROM tasks t WHERE t.key_id = k.id \
             AND t.status IN ('pending', 'processing')), 0) AS BIGINT) AS key_held \
             FROM accounts a JOIN api_keys k ON k.account_id = a.id WHERE a.id = $1 AND k.id = $2",
        )
        .bind(account_id)
        .bind(key_id)
        .fetch_optional(&self.read)
        .await?)
    }
}
