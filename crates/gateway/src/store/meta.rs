//! The `meta` table: a few process-wide values (the link-signing secret, the admin
//! key's hash, whether the first account was made) that replicas must share.

use sqlx::Row;

use super::{Result, Store, StoreError};

impl Store {
    #[tracing::instrument(skip_all)]
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.write).await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    /// Stores `value` under `key` unless the key exists; returns the value in force.
    #[tracing::instrument(skip_all)]
    pub async fn meta_get_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.write)
            .await?;
        self.meta_get(key).await?.ok_or_else(|| StoreError::Corrupt(format!("meta key {key} vanished")))
    }

    #[tracing::instrument(skip_all)]
    pub async fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
