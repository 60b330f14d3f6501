//! Accounts, API keys, limits and credit grants: the rules an operator's and a
//! key's actions follow, whoever asks (the admin API, `/v1/keys`, the command
//! line, the bootstrap). A key is shown once when made; only its SHA-256 is kept
//! (keys are 190 bits of randomness, so a fast hash is the right one). Every
//! change that moves money or access is audited by the store in its own
//! transaction.

use serde::{Deserialize, Deserializer};
use vidgate_api::catalog::Catalog;
use vidgate_api::credits::Credits;
use vidgate_api::error::ErrorCode;

use crate::error::ApiError;
use crate::ids::{AccountId, KeyId};
use crate::limits::{AllowedModels, Budget, BudgetPeriod, KeyLimits, Refusal};
use crate::secret::Secret;
use crate::state::AppState;
use crate::store::{AccountRow, Actor, KeyRow, NewKeyOutcome, Store, StoreError};
use crate::util;

/// The longest account or key name.
pub const MAX_NAME_CHARS: usize = 100;
/// The largest `rpm` a key may have.
pub const MAX_RPM: i64 = 1_000_000;
/// The largest `max_concurrent` a key may have.
pub const MAX_CONCURRENT: i64 = 1_000_000;

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

/// A field of a partial update: absent (unchanged), `null` (cleared) or a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<T> Patch<T> {
    /// The patched value of a field that is `current` now.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Self::Absent => current,
            Self::Null => None,
            Self::Set(v) => Some(v),
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    /// A present field is `null` or a value; an absent one never reaches here
    /// (it takes the `Default`, with `#[serde(default)]`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Self::Null,
            Some(v) => Self::Set(v),
        })
    }
}

/// Limits as a request states them. On `PATCH`, absent fields stay as they are
/// and `null` clears; when a key is made, absent means the maker's value (none
/// for the operator). `credit_cap` is the old name of a `total` budget.
#[derive(Debug, Clone, Default)]
pub struct LimitsPatch {
    pub allowed_models: Patch<Vec<String>>,
    pub rpm: Patch<i64>,
    pub max_concurrent: Patch<i64>,
    pub budget_credits: Patch<Credits>,
    pub budget_period: Patch<BudgetPeriod>,
    pub credit_cap: Patch<Credits>,
}

fn positive(param: &str, value: Patch<i64>, max: i64) -> Result<Patch<i64>, ApiError> {
    match value {
        Patch::Set(n) if !(1..=max).contains(&n) => {
            Err(ApiError::invalid(param, format!("{param} must be an integer from 1 to {max} (null for no limit).")))
        }
        other => Ok(other),
    }
}

impl LimitsPatch {
    /// The limits `current` becomes under this patch, every value checked
    /// (models against the catalog served).
    pub fn apply_to(self, catalog: &Catalog, current: &KeyLimits) -> Result<KeyLimits, ApiError> {
        let allowed_models = match self.allowed_models {
            Patch::Absent => current.allowed_models.clone(),
            Patch::Null => AllowedModels(None),
            Patch::Set(models) => {
                if let Some((i, m)) = models.iter().enumerate().find(|(_, m)| catalog.get(m).is_none()) {
                    return Err(ApiError::invalid(format!("allowed_models[{i}]"), format!("Unknown model {m:?}.")));
                }
                let mut unique: Vec<String> = Vec::with_capacity(models.len());
                for m in models {
                    if !unique.contains(&m) {
                        unique.push(m);
                    }
                }
                AllowedModels(Some(unique))
            }
        };
        let rpm = positive("rpm", self.rpm, MAX_RPM)?.apply(current.rpm);
        let max_concurrent =
            positive("max_concurrent", self.max_concurrent, MAX_CONCURRENT)?.apply(current.max_concurrent);
        let (budget_credits, budget_period) = match (self.credit_cap, self.budget_credits, self.budget_period) {
            (Patch::Absent, credits, period) => (credits, period),
            (Patch::Set(cap), Patch::Absent, Patch::Absent) => (Patch::Set(cap), Patch::Set(BudgetPeriod::Total)),
            (Patch::Null, Patch::Absent, Patch::Absent) => (Patch::Null, Patch::Absent),
            (_, Patch::Absent, _) => {
                return Err(ApiError::invalid(
                    "credit_cap",
                    "credit_cap is a total budget: give budget_credits with budget_period instead.",
                ));
            }
            _ => {
                return Err(ApiError::invalid(
                    "credit_cap",
                    "Give budget_credits or its old name credit_cap, not both.",
                ));
            }
        };
        if let Patch::Set(c) = budget_credits
            && c.units() < 0
        {
            return Err(ApiError::invalid("budget_credits", "The budget cannot be negative."));
        }
        let budget = match (budget_credits, budget_period) {
            (Patch::Null, _) => None,
            (Patch::Set(c), Patch::Set(period)) => Some(Budget { credits: c.units(), period }),
            (Patch::Set(c), Patch::Absent) => {
                Some(Budget { credits: c.units(), period: current.budget.map_or(BudgetPeriod::Total, |b| b.period) })
            }
            (Patch::Set(_), Patch::Null) => {
                return Err(ApiError::invalid("budget_period", "A budget needs a period: day, month or total."));
            }
            (Patch::Absent, Patch::Absent) => current.budget,
            (Patch::Absent, Patch::Set(period)) => match current.budget {
                Some(b) => Some(Budget { credits: b.credits, period }),
                None => {
                    return Err(ApiError::invalid(
                        "budget_period",
                        "This key has no budget: give budget_credits with budget_period.",
                    ));
                }
            },
            (Patch::Absent, Patch::Null) => match current.budget {
                Some(_) => {
                    return Err(ApiError::invalid(
                        "budget_period",
                        "A budget needs a period; clear budget_credits to remove the budget.",
                    ));
                }
                None => None,
            },
        };
        Ok(KeyLimits { allowed_models, rpm, max_concurrent, budget })
    }
}

/// The answer to a refused create: 429 for `rpm` and `max_concurrent` (with
/// `Retry-After`), 402 for the balance and the budget (naming it and when it
/// resets), 401 for a key revoked meanwhile. Each is logged with the key id.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let credits = |u: i64| Credits::from_units(u).to_string();
        match r {
            Refusal::InsufficientQuota { key_id, needed } => {
                tracing::info!(%key_id, limit = "balance", needed, "create refused");
                ApiError::new(
                    ErrorCode::InsufficientQuota,
                    format!("Insufficient credits: this request needs {} credits.", credits(needed)),
                )
            }
            Refusal::Rpm { key_id, limit, retry_after } => {
                tracing::info!(%key_id, limit = "rpm", rpm = limit, retry_after, "create refused");
                ApiError::new(
                    ErrorCode::RateLimitExceeded,
                    format!(
                        "Rate limit exceeded: this API key may create at most {limit} tasks per minute \
                         (rpm = {limit}). Retry in {retry_after} s."
                    ),
                )
                .with_retry_after(retry_after)
            }
            Refusal::Concurrency { key_id, limit, retry_after } => {
                tracing::info!(%key_id, limit = "max_concurrent", max_concurrent = limit, "create refused");
                ApiError::new(
                    ErrorCode::RateLimitExceeded,
                    format!(
                        "Rate limit exceeded: this API key may have at most {limit} tasks pending or processing \
                         at once (max_concurrent = {limit}). Retry when one of them has finished."
                    ),
                )
                .with_retry_after(retry_after)
            }
            Refusal::Budget { key_id, budget, used, needed, resets_at } => {
                tracing::info!(%key_id, limit = "budget", period = budget.period.as_str(), used, needed, "create refused");
                let reset = match resets_at {
                    Some(at) => format!("It resets at {}.", crate::limits::format_utc(at)),
                    None => "A total budget never resets; an operator can raise it.".to_owned(),
                };
                ApiError::new(
                    ErrorCode::InsufficientQuota,
                    format!(
                        "This API key's {} budget of {} credits (budget_credits, budget_period = {}) does not cover \
                         this request: {} used, {} needed. {reset}",
                        budget.period.adjective(),
                        credits(budget.credits),
                        budget.period.as_str(),
                        credits(used),
                        credits(needed),
                    ),
                )
            }
            Refusal::Revoked { key_id } => {
                tracing::info!(%key_id, limit = "revoked", "create refused");
                ApiError::unauthorized()
            }
        }
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

/// A key row to store, with a fresh secret.
fn new_key(
    account_id: &AccountId,
    name: &str,
    limits: KeyLimits,
    manage_keys: bool,
    created_by: Option<KeyId>,
) -> NewKey {
    let secret = generate_secret();
    let row = KeyRow {
        id: KeyId::new(),
        account_id: account_id.clone(),
        key_hash: util::sha256_hex(secret.expose().as_bytes()),
        prefix: secret.expose().chars().take(10).collect(),
        name: name.to_owned(),
        budget_credits: limits.budget.map(|b| b.credits),
        budget_period: limits.budget.map(|b| b.period.as_str().to_owned()),
        spent: 0,
        period_start: limits.budget.map_or(0, |b| b.period.start(util::now_ms())),
        period_spent: 0,
        rpm: limits.rpm,
        max_concurrent: limits.max_concurrent,
        allowed_models: limits.allowed_models,
        manage_keys: i64::from(manage_keys),
        created_by,
        revoked_at: None,
        created_at: util::now_ms(),
    };
    NewKey { row, secret }
}

/// A new account holding `credits` units, with its first key (which manages
/// the account's keys), made by the server itself (bootstrap, command line).
pub async fn create_account(store: &Store, name: &str, credits: i64) -> Result<(AccountId, NewKey), StoreError> {
    open_account(store, name, credits, &Actor::system()).await
}

/// The first key of a new account: no limits, and it manages the account's keys.
pub fn first_key(account_id: &AccountId) -> NewKey {
    new_key(account_id, "default", KeyLimits::default(), true, None)
}

/// A new account holding `credits` units, with its first key, audited as `actor`'s.
pub async fn open_account(
    store: &Store,
    name: &str,
    credits: i64,
    actor: &Actor,
) -> Result<(AccountId, NewKey), StoreError> {
    let id = AccountId::new();
    let key = first_key(&id);
    store.create_account(&id, name, credits, &key.row, actor).await?;
    Ok((id, key))
}

/// An account that must exist, or a 404 naming it.
pub async fn existing(store: &Store, id: &AccountId) -> Result<AccountRow, ApiError> {
    store
        .get_account(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "No such account.").with_param("account_id"))
}

/// Adds credits to an account, or takes some back (never below zero); answers
/// the new balance in units.
pub async fn grant(
    store: &Store,
    id: &AccountId,
    credits: Credits,
    note: Option<String>,
    actor: &Actor,
) -> Result<i64, ApiError> {
    existing(store, id).await?;
    let note = note.unwrap_or_else(|| "admin grant".to_owned());
    if note.chars().count() > 500 {
        return Err(ApiError::invalid("note", "The note must be at most 500 characters."));
    }
    store
        .grant_credits(id, credits.units(), &note, actor)
        .await?
        .ok_or_else(|| ApiError::invalid("credits", "The account does not have that many credits to take back."))
}

/// Disables an account (its keys stop working at once on this replica, within
/// seconds on others) or enables it again.
pub async fn set_disabled(
    state: &AppState,
    id: &AccountId,
    disabled: bool,
    actor: &Actor,
) -> Result<AccountRow, ApiError> {
    let account = state
        .store
        .set_account_disabled(id, disabled, actor)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "No such account.").with_param("account_id"))?;
    state.keys.clear();
    Ok(account)
}

/// Makes a key for an account, within `max_keys_per_account` live keys.
pub async fn create_key(
    state: &AppState,
    account_id: &AccountId,
    name: &str,
    limits: KeyLimits,
    manage_keys: bool,
    created_by: Option<KeyId>,
    actor: &Actor,
) -> Result<NewKey, ApiError> {
    let key = new_key(account_id, name, limits, manage_keys, created_by);
    match state.store.create_key(&key.row, state.config.max_keys_per_account as i64, actor).await? {
        NewKeyOutcome::Created => Ok(key),
        NewKeyOutcome::NoSuchAccount => {
            Err(ApiError::new(ErrorCode::NotFound, "No such account.").with_param("account_id"))
        }
        NewKeyOutcome::TooManyKeys(live) => Err(ApiError::new(
            ErrorCode::TooManyKeys,
            format!(
                "This account already holds {live} live keys, the most it may (max_keys_per_account); revoke one first."
            ),
        )),
    }
}

/// Changes a key's limits as `patch` says (absent fields stay); answers the key
/// as it is now.
pub async fn update_limits(
    state: &AppState,
    key_id: &KeyId,
    patch: LimitsPatch,
    actor: &Actor,
) -> Result<KeyRow, ApiError> {
    let (_, after) = state
        .store
        .update_key(key_id, |current| patch.apply_to(&state.catalog, &current.limits()), actor)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "No such key.").with_param("key_id"))?;
    state.keys.clear();
    Ok(after)
}

/// Revokes a key; with `by`, only that key itself or one it made.
pub async fn revoke(state: &AppState, key_id: &KeyId, by: Option<&KeyRow>, actor: &Actor) -> Result<KeyRow, ApiError> {
    match state.store.revoke_key(key_id, by, actor).await? {
        Some(row) => {
            state.keys.clear();
            Ok(row)
        }
        None => Err(match by {
            None => ApiError::new(ErrorCode::NotFound, "No such live key.").with_param("key_id"),
            Some(_) => ApiError::new(
                ErrorCode::NotFound,
                "No such live key that this key may revoke (itself, or a key it made).",
            )
            .with_param("key_id"),
        }),
    }
}

/// The asking key, which must be marked `manage_keys`.
pub async fn key_manager(state: &AppState, key_id: &KeyId) -> Result<KeyRow, ApiError> {
    let key = state.store.get_key(key_id).await?.ok_or_else(ApiError::unauthorized)?;
    if key.revoked_at.is_some() {
        return Err(ApiError::unauthorized());
    }
    if !key.manages_keys() {
        tracing::info!(key_id = %key.id, "key management refused: the key lacks manage_keys");
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            "This API key may not manage keys: only keys marked manage_keys (an account's first key) may.",
        ));
    }
    Ok(key)
}

/// The account's keys, for a key that manages them.
pub async fn own_keys(state: &AppState, caller_key: &KeyId) -> Result<(KeyRow, Vec<KeyRow>), ApiError> {
    let me = key_manager(state, caller_key).await?;
    let keys = state.store.list_keys(&me.account_id).await?;
    Ok((me, keys))
}

/// A key made by a key: within the maker's own limits (absent fields take the
/// maker's value), never itself a key manager.
pub async fn create_own_key(
    state: &AppState,
    caller_key: &KeyId,
    name: Option<String>,
    patch: LimitsPatch,
    source: &str,
) -> Result<NewKey, ApiError> {
    let me = key_manager(state, caller_key).await?;
    let name = checked_name("name", name, "key")?;
    let mine = me.limits();
    let limits = patch.apply_to(&state.catalog, &mine)?;
    if let Some(field) = limits.first_excess(&mine) {
        tracing::info!(key_id = %me.id, field, "key creation refused: above the maker's own limits");
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("A key may only make keys within its own limits: {field} is above this key's."),
        )
        .with_param(field));
    }
    let actor = Actor::key(&me.id, source);
    create_key(state, &me.account_id, &name, limits, false, Some(me.id.clone()), &actor).await
}

/// Revokes the caller itself or a key it made.
pub async fn revoke_own_key(
    state: &AppState,
    caller_key: &KeyId,
    key_id: &KeyId,
    source: &str,
) -> Result<KeyRow, ApiError> {
    let me = key_manager(state, caller_key).await?;
    revoke(state, key_id, Some(&me), &Actor::key(&me.id, source)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: serde_json::Value) -> LimitsPatch {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            allowed_models: Patch<Vec<String>>,
            #[serde(default)]
            rpm: Patch<i64>,
            #[serde(default)]
            max_concurrent: Patch<i64>,
            #[serde(default)]
            budget_credits: Patch<i64>,
            #[serde(default)]
            budget_period: Patch<BudgetPeriod>,
            #[serde(default)]
            credit_cap: Patch<i64>,
        }
        let credits = |p: Patch<i64>| match p {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Set(c) => Patch::Set(Credits::from_units(c)),
        };
        let b: Body = serde_json::from_value(json).unwrap();
        LimitsPatch {
            allowed_models: b.allowed_models,
            rpm: b.rpm,
            max_concurrent: b.max_concurrent,
            budget_credits: credits(b.budget_credits),
            budget_period: b.budget_period,
            credit_cap: credits(b.credit_cap),
        }
    }

    fn catalog() -> Catalog {
        Catalog::builtin().unwrap()
    }

    fn current() -> KeyLimits {
        KeyLimits {
            allowed_models: AllowedModels(Some(vec!["kling-v3-text-to-video".to_owned()])),
            rpm: Some(10),
            max_concurrent: Some(2),
            budget: Some(Budget { credits: 500, period: BudgetPeriod::Day }),
        }
    }

    #[test]
    fn absent_fields_stay_and_null_clears() {
        let c = current();
        assert_eq!(patch(serde_json::json!({})).apply_to(&catalog(), &c).ok(), Some(c.clone()));
        let cleared = patch(serde_json::json!({"rpm": null, "allowed_models": null})).apply_to(&catalog(), &c).ok();
        assert_eq!(cleared, Some(KeyLimits { rpm: None, allowed_models: AllowedModels(None), ..c.clone() }));
        let budget =
            patch(serde_json::json!({"budget_credits": 700})).apply_to(&catalog(), &c).ok().and_then(|l| l.budget);
        assert_eq!(budget, Some(Budget { credits: 700, period: BudgetPeriod::Day }), "the period stays");
        let period =
            patch(serde_json::json!({"budget_period": "month"})).apply_to(&catalog(), &c).ok().and_then(|l| l.budget);
        assert_eq!(period, Some(Budget { credits: 500, period: BudgetPeriod::Month }));
        assert_eq!(
            patch(serde_json::json!({"budget_credits": null})).apply_to(&catalog(), &c).ok().map(|l| l.budget),
            Some(None)
        );
    }

    #[test]
    fn credit_cap_is_the_old_name_of_a_total_budget() {
        let c = current();
        let l = patch(serde_json::json!({"credit_cap": 300, "rpm": 5})).apply_to(&catalog(), &c).ok();
        assert_eq!(l.as_ref().and_then(|l| l.budget), Some(Budget { credits: 300, period: BudgetPeriod::Total }));
        assert_eq!(l.and_then(|l| l.rpm), Some(5));
        assert_eq!(
            patch(serde_json::json!({"credit_cap": null})).apply_to(&catalog(), &c).ok().map(|l| l.budget),
            Some(None)
        );
        let both = patch(serde_json::json!({"credit_cap": 1, "budget_credits": 1})).apply_to(&catalog(), &c);
        assert_eq!(both.err().and_then(|e| e.param).as_deref(), Some("credit_cap"));
    }

    #[test]
    fn bad_limits_name_their_field() {
        let c = KeyLimits::default();
        let param = |j| patch(j).apply_to(&catalog(), &c).err().and_then(|e| e.param);
        assert_eq!(param(serde_json::json!({"rpm": 0})).as_deref(), Some("rpm"));
        assert_eq!(param(serde_json::json!({"max_concurrent": -1})).as_deref(), Some("max_concurrent"));
        assert_eq!(param(serde_json::json!({"budget_credits": -1})).as_deref(), Some("budget_credits"));
        assert_eq!(param(serde_json::json!({"budget_period": "day"})).as_deref(), Some("budget_period"));
        assert_eq!(
            param(serde_json::json!({"allowed_models": ["kling-v3-text-to-video", "nope"]})).as_deref(),
            Some("allowed_models[1]")
        );
        let fresh =
            patch(serde_json::json!({"budget_credits": 5})).apply_to(&catalog(), &c).ok().and_then(|l| l.budget);
        assert_eq!(fresh, Some(Budget { credits: 5, period: BudgetPeriod::Total }), "a new budget is total by default");
    }
}
