//! Accounts, API keys and credit grants: the rules an operator's actions follow,
//! whoever asks (the admin API, the command line, the bootstrap). A key is shown
//! once when made; only its SHA-256 is kept (keys are 190 bits of randomness, so
//! a fast hash is the right one).

use vidgate_api::catalog::Catalog;
use vidgate_api::credits::Credits;
use vidgate_api::error::ErrorCode;

use crate::error::ApiError;
use crate::ids::{AccountId, KeyId};
use crate::secret::Secret;
use crate::store::{AccountRow, AllowedModels, KeyRow, Store, StoreError};
use crate::util;

/// The longest account or key name.
pub const MAX_NAME_CHARS: usize = 100;

/// A key's secret as handed to its owner, and what is stored of it.
#[derive(Debug)]
pub struct NewKey {
    pub row: KeyRow,
    pub secret: Secret,
}

/// Makes a fresh `sk-vg-...` key secret.
pub fn generate_secret() -> Secret {
    Secret::new(format!("sk-vg-{}", util::random_alnum(32)))
}

/// A key's limits as an operator sets them.
#[derive(Debug, Clone, Default)]
pub struct KeyLimits {
    /// Most credits this key may spend (units); none when `None`.
    pub credit_cap: Option<i64>,
    pub allowed_models: AllowedModels,
}

impl KeyLimits {
    /// Checks the limits: caps are not negative, models are in the catalog.
    pub fn checked(
        catalog: &Catalog,
        credit_cap: Option<Credits>,
        allowed_models: Option<Vec<String>>,
    ) -> Result<Self, ApiError> {
        if let Some(cap) = credit_cap
            && cap.units() < 0
        {
            return Err(ApiError::invalid("credit_cap", "The credit cap cannot be negative."));
        }
        if let Some(models) = &allowed_models {
            for (i, m) in models.iter().enumerate() {
                if catalog.get(m).is_none() {
                    return Err(ApiError::invalid(format!("allowed_models[{i}]"), format!("Unknown model {m:?}.")));
                }
            }
        }
        Ok(Self { credit_cap: credit_cap.map(Credits::units), allowed_models: AllowedModels(allowed_models) })
    }
}

/// A name for people: trimmed, 1 to 100 characters, or the default.
pub fn checked_name(param: &str, name: Option<String>, default: &str) -> Result<String, ApiError> {
    let name = name.map(|n| n.trim().to_owned()).unwrap_or_else(|| default.to_owned());
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(param, format!("The {param} must be 1 to {MAX_NAME_CHARS} characters.")));
    }
    Ok(name)
}

pub async fn create_key(
    store: &Store,
    account_id: &AccountId,
    name: &str,
    limits: KeyLimits,
) -> Result<NewKey, StoreError> {
    let secret = generate_secret();
    let row = KeyRow {
        id: KeyId::new(),
        account_id: account_id.clone(),
        key_hash: util::sha256_hex(secret.expose().as_bytes()),
        prefix: secret.expose().chars().take(10).collect(),
        name: name.to_owned(),
        credit_cap: limits.credit_cap,
        spent: 0,
        allowed_models: limits.allowed_models,
        revoked_at: None,
        created_at: util::now_ms(),
    };
    store.create_key(&row).await?;
    Ok(NewKey { row, secret })
}

/// A new account holding `credits` units, with one key.
pub async fn create_account(store: &Store, name: &str, credits: i64) -> Result<(AccountId, NewKey), StoreError> {
    let id = AccountId::new();
    store.create_account(&id, name, credits).await?;
    let key = create_key(store, &id, "default", KeyLimits::default()).await?;
    Ok((id, key))
}

/// An account that must exist, or a 404 naming it.
pub async fn existing(store: &Store, id: &AccountId) -> Result<AccountRow, ApiError> {
    store
        .get_account(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "No such account.").with_param("account_id"))
}

/// Adds credits to an account, or takes some back (never below zero); answers the
/// new balance in units.
pub async fn grant(store: &Store, id: &AccountId, credits: Credits, note: Option<String>) -> Result<i64, ApiError> {
    existing(store, id).await?;
    let note = note.unwrap_or_else(|| "admin grant".to_owned());
    if note.chars().count() > 500 {
        return Err(ApiError::invalid("note", "The note must be at most 500 characters."));
    }
    store
        .grant_credits(id, credits.units(), &note)
        .await?
        .ok_or_else(|| ApiError::invalid("credits", "The account does not have that many credits to take back."))
}
