//! Accounts and API keys. A key is shown once when made; only its SHA-256 is kept
//! (keys are 190 bits of randomness, so a fast hash is the right one).

use crate::store::{KeyRow, Store, StoreError};
use crate::util;

/// A key's secret as handed to its owner, and what is stored of it.
#[derive(Debug)]
pub struct NewKey {
    pub row: KeyRow,
    pub secret: String,
}

/// Makes a fresh `sk-vg-...` key secret.
pub fn generate_secret() -> String {
    format!("sk-vg-{}", util::random_alnum(32))
}

pub async fn create_key(
    store: &Store,
    account_id: &str,
    name: &str,
    credit_cap: Option<i64>,
    allowed_models: Option<Vec<String>>,
) -> Result<NewKey, StoreError> {
    let secret = generate_secret();
    let row = KeyRow {
        id: format!("key-{}", util::random_lower_alnum(16)),
        account_id: account_id.to_owned(),
        key_hash: util::sha256_hex(secret.as_bytes()),
        prefix: secret.chars().take(10).collect(),
        name: name.to_owned(),
        credit_cap,
        spent: 0,
        allowed_models,
        revoked_at: None,
        created_at: util::now_ms(),
    };
    store.create_key(&row).await?;
    Ok(NewKey { row, secret })
}

/// A new account holding `credits` units, with one key.
pub async fn create_account(store: &Store, name: &str, credits: i64) -> Result<(String, NewKey), StoreError> {
    let id = format!("acct-{}", util::random_lower_alnum(16));
    store.create_account(&id, name, credits).await?;
    let key = create_key(store, &id, "default", None, None).await?;
    Ok((id, key))
}
