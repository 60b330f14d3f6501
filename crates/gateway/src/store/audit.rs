//! The audit log: one row per action that moves money or access (grants,
//! account and key changes, limits, code batches), written in the same
//! transaction as the change itself, so a change without its row (or a row
//! without its change) cannot exist.

use serde_json::Value;
use sqlx::AnyConnection;

use super::{Result, Store};
use crate::ids::AccountId;

/// Who acts, and from where: `admin` or `key:<key id>` (never a key itself),
/// and the client address the request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub who: String,
    pub source: String,
}

impl Actor {
    pub fn admin(source: impl Into<String>) -> Self {
        Self { who: "admin".to_owned(), source: source.into() }
    }

    pub fn key(key_id: &crate::ids::KeyId, source: impl Into<String>) -> Self {
        Self { who: format!("key:{key_id}"), source: source.into() }
    }

    /// The server itself (the first account of a fresh database, the command line).
    pub fn system() -> Self {
        Self { who: "system".to_owned(), source: "local".to_owned() }
    }
}

/// One action to record.
#[derive(Debug, Clone)]
pub(super) struct Entry<'a> {
    pub action: &'a str,
    pub target: &'a str,
    pub account_id: Option<&'a AccountId>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub(super) async fn record(tx: &mut AnyConnection, actor: &Actor, e: Entry<'_>, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (created_at, actor, action, target, account_id, before_state, after_state, source) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(now)
    .bind(&actor.who)
    .bind(e.action)
    .bind(e.target)
    .bind(e.account_id)
    .bind(e.before.map(|v| v.to_string()))
    .bind(e.after.map(|v| v.to_string()))
    .bind(&actor.source)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub created_at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub account_id: Option<AccountId>,
    /// JSON.
    pub before_state: Option<String>,
    /// JSON.
    pub after_state: Option<String>,
    pub source: String,
}

impl Store {
    /// One page of the audit log, newest first, below `before_id` if given.
    #[tracing::instrument(skip_all)]
    pub async fn list_audit(
        &self,
        account_id: Option<&AccountId>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, created_at, actor, action, target, account_id, before_state, after_state, source \
             FROM audit_log WHERE ($1 = '' OR account_id = $1) AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(account_id.map(AccountId::as_str).unwrap_or_default())
        .bind(before_id.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }
}
