//! `/admin`: accounts (search, create, grant, disable), API keys and their
//! limits, tasks across accounts with their attempts and callbacks, provider
//! health, the margin report over time and the audit log, behind the admin
//! key. Key secrets are shown only when made. Handlers extract and shape; the
//! rules live in `accounts`, `usage` and `limits`.

use axum::extract::{Path, State};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vidgate_api::credits::Credits;
use vidgate_api::error::ErrorBody;
use vidgate_api::task::{TaskObject, TaskStatus};

use crate::accounts;
use crate::error::ApiError;
use crate::http::auth::{Admin, ClientAddr};
use crate::http::extract::{Json as Body, Query};
use crate::http::webhooks::{DeliveryAttemptView, DeliveryList, DeliveryView};
use crate::ids::{AccountId, KeyId, TaskId};
use crate::limits::{BudgetPeriod, format_utc_date};
use crate::routing::ProviderHealth;
use crate::state::AppState;
use crate::store::{AccountRow, Actor, AttemptStatus, AuditRow, DeliveryStatus, KeyRow, TaskFilter};
use crate::usage::{self, Range};
use crate::util;

/// Credits as a JSON number or string, read exactly (at most 4 decimals): money
/// never passes through a float.
pub(crate) mod credits_json {
    use serde::{Deserialize, Deserializer};
    use vidgate_api::credits::Credits;

    use crate::accounts::Patch;

    fn parse<E: serde::de::Error>(text: &str) -> Result<Credits, E> {
        Credits::parse_decimal(text)
            .ok_or_else(|| E::custom(format!("{text} is not a number of credits with at most 4 decimals")))
    }

    fn value<E: serde::de::Error>(v: serde_json::Value) -> Result<Option<Credits>, E> {
        match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => parse(&n.to_string()).map(Some),
            serde_json::Value::String(s) => parse(s.trim()).map(Some),
            other => Err(E::custom(format!("expected a number of credits, got {other}"))),
        }
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Credits, D::Error> {
        value(serde_json::Value::deserialize(d)?)?
            .ok_or_else(|| serde::de::Error::custom("expected a number of credits, got null"))
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Credits>, D::Error> {
        value(serde_json::Value::deserialize(d)?)
    }

    /// A present field of a partial update: `null` clears, a number sets.
    pub fn patch<'de, D: Deserializer<'de>>(d: D) -> Result<Patch<Credits>, D::Error> {
        Ok(match value(serde_json::Value::deserialize(d)?)? {
            None => Patch::Null,
            Some(c) => Patch::Set(c),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/accounts", post(create_account).get(list_accounts))
        .route("/admin/accounts/{account_id}", get(get_account))
        .route("/admin/accounts/{account_id}/keys", post(create_key).get(list_keys))
        .route("/admin/accounts/{account_id}/credits", post(grant_credits))
        .route("/admin/accounts/{account_id}/disable", post(disable_account))
        .route("/admin/accounts/{account_id}/enable", post(enable_account))
        .route("/admin/keys/{key_id}/revoke", post(revoke_key))
        .route("/admin/keys/{key_id}", patch(update_key))
        .route("/admin/providers", get(provider_health))
        .route("/admin/tasks", get(list_tasks))
        .route("/admin/tasks/{task_id}/attempts", get(task_attempts))
        .route("/admin/tasks/{task_id}/callbacks", get(task_callbacks))
        .route("/admin/reports/margin", get(margin_report))
        .route("/admin/audit", get(audit_log))
}

fn dec(units: i64) -> f64 {
    Credits::from_units(units).to_credits_f64()
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateAccountBody {
    /// A name for people, 1 to 100 characters.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Starting credits (decimal, at most 4 places); the signup amount when absent.
    #[serde(default, deserialize_with = "credits_json::optional")]
    #[schema(value_type = Option<f64>, minimum = 0)]
    pub credits: Option<Credits>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    #[schema(value_type = String)]
    pub id: AccountId,
    pub name: String,
    pub user_group: String,
    pub remaining_credits: f64,
    pub held_credits: f64,
    pub used_credits: f64,
    /// A disabled account's keys do not work.
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<AccountRow> for AccountView {
    fn from(a: AccountRow) -> Self {
        Self {
            id: a.id,
            name: a.name,
            user_group: a.user_group,
            remaining_credits: dec(a.balance),
            held_credits: dec(a.held),
            used_credits: dec(a.used),
            disabled: a.disabled_at.is_some(),
            created_at: a.created_at / 1000,
        }
    }
}

/// A key with its limits (never its secret). Credits are decimal numbers here.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    #[schema(value_type = String)]
    pub id: KeyId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub name: String,
    /// The first characters of the key.
    pub prefix: String,
    /// Models this key may use; null for all.
    pub allowed_models: Option<Vec<String>>,
    /// Creates per minute; null for no limit.
    pub rpm: Option<i64>,
    /// Tasks pending or processing at once; null for no limit.
    pub max_concurrent: Option<i64>,
    /// Most credits held or charged per `budget_period`; null for no budget.
    pub budget_credits: Option<f64>,
    pub budget_period: Option<BudgetPeriod>,
    /// Held or charged in the current period (0 without a budget).
    pub budget_used_credits: f64,
    /// Unix seconds when the budget next starts afresh; null for a total budget or none.
    pub budget_resets_at: Option<i64>,
    /// The old name of a total budget: `budget_credits` when the period is `total`.
    pub credit_cap: Option<f64>,
    /// Held or charged over the key's life (a release gives back).
    pub spent_credits: f64,
    /// May list, make and revoke the account's keys through `/v1/keys`.
    pub manage_keys: bool,
    /// The key that made this one through `/v1/keys`.
    #[schema(value_type = Option<String>)]
    pub created_by: Option<KeyId>,
    pub revoked: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<KeyRow> for KeyView {
    fn from(k: KeyRow) -> Self {
        let now = util::now_ms();
        let budget = k.budget();
        let used = budget.map_or(0, |b| k.budget_use().used(b.period, now));
        Self {
            budget_credits: budget.map(|b| dec(b.credits)),
            budget_period: budget.map(|b| b.period),
            budget_used_credits: dec(used),
            budget_resets_at: budget.and_then(|b| b.period.next_reset(now)).map(|ms| ms / 1000),
            credit_cap: budget.filter(|b| b.period == BudgetPeriod::Total).map(|b| dec(b.credits)),
            spent_credits: dec(k.spent),
            manage_keys: k.manages_keys(),
            id: k.id,
            account_id: k.account_id,
            name: k.name,
            prefix: k.prefix,
            allowed_models: k.allowed_models.0,
            rpm: k.rpm,
            max_concurrent: k.max_concurrent,
            created_by: k.created_by,
            revoked: k.revoked_at.is_some(),
            created_at: k.created_at / 1000,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAccount {
    pub account: AccountView,
    pub key: KeyView,
    /// The API key itself: shown only this once.
    pub api_key: String,
}

/// Create an account with credits and a first API key (which may manage the
/// account's keys through `/v1/keys`). Audited.
#[utoipa::path(post, path = "/admin/accounts", operation_id = "admin.accounts.create", tag = "admin",
    request_body = CreateAccountBody,
    responses((status = 200, body = CreatedAccount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn create_account(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Body(body): Body<CreateAccountBody>,
) -> Result<Json<CreatedAccount>, ApiError> {
    let credits = body.credits.unwrap_or(state.config.signup_credits);
    if credits.units() < 0 {
        return Err(ApiError::invalid("credits", "Starting credits cannot be negative."));
    }
    let name = accounts::checked_name("name", body.name, "account")?;
    let (id, key) = accounts::open_account(&state.store, &name, credits.units(), &Actor::admin(addr.text())).await?;
    let account = accounts::existing(&state.store, &id).await?;
    Ok(Json(CreatedAccount { account: account.into(), key: key.row.into(), api_key: key.secret.expose().to_owned() }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// An account id, or part of a name (any case).
    #[param(max_length = 200)]
    pub search: Option<String>,
    /// At most this many, 1..=1000 (default 200).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// List accounts with their balances, oldest first; search by id or name.
#[utoipa::path(get, path = "/admin/accounts", operation_id = "admin.accounts.list", tag = "admin",
    params(AccountQuery),
    responses((status = 200, body = Vec<AccountView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_accounts(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<AccountQuery>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let limit = usage::parse_limit(q.limit.as_deref(), 200, 1000)?;
    if q.search.as_ref().is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::invalid("search", "search must be at most 200 characters."));
    }
    Ok(Json(state.store.list_accounts(q.search.as_deref(), limit).await?.into_iter().map(Into::into).collect()))
}

/// One account.
#[utoipa::path(get, path = "/admin/accounts/{account_id}", operation_id = "admin.accounts.get", tag = "admin",
    params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn get_account(
    State(state): State<AppState>,
    _admin: Admin,
    Path(account_id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(accounts::existing(&state.store, &AccountId::from_raw(account_id)).await?.into()))
}

/// Disable an account: its keys stop working at once (on other replicas within
/// seconds); its running tasks finish. Audited.
#[utoipa::path(post, path = "/admin/accounts/{account_id}/disable", operation_id = "admin.accounts.disable", tag = "admin",
    params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn disable_account(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Path(account_id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let id = AccountId::from_raw(account_id);
    Ok(Json(accounts::set_disabled(&state, &id, true, &Actor::admin(addr.text())).await?.into()))
}

/// Enable a disabled account again. Audited.
#[utoipa::path(post, path = "/admin/accounts/{account_id}/enable", operation_id = "admin.accounts.enable", tag = "admin",
    params(("account_id" = String, Path)),
    responses((status = 200, body = AccountView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn enable_account(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Path(account_id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let id = AccountId::from_raw(account_id);
    Ok(Json(accounts::set_disabled(&state, &id, false, &Actor::admin(addr.text())).await?.into()))
}

/// Declares a body type carrying a key's limits, each a partial-update field.
macro_rules! limits_body {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, ::serde::Deserialize, ::utoipa::ToSchema)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Models the key may use (`null`: all).
            #[serde(default)]
            #[schema(value_type = Option<Vec<String>>)]
            pub allowed_models: $crate::accounts::Patch<Vec<String>>,
            /// Creates per minute, 1..=1000000 (`null`: no limit).
            #[serde(default)]
            #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
            pub rpm: $crate::accounts::Patch<i64>,
            /// Tasks pending or processing at once, 1..=1000000 (`null`: no limit).
            #[serde(default)]
            #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
            pub max_concurrent: $crate::accounts::Patch<i64>,
            /// Most credits held or charged per `budget_period` (decimal, at most 4
            /// places; `null`: no budget).
            #[serde(default, deserialize_with = "crate::http::admin::credits_json::patch")]
            #[schema(value_type = Option<f64>, minimum = 0)]
            pub budget_credits: $crate::accounts::Patch<::vidgate_api::credits::Credits>,
            /// `day` or `month` (UTC calendar periods) or `total`; with a new
            /// budget and no period, the key's current period or `total`.
            #[serde(default)]
            #[schema(value_type = Option<crate::limits::BudgetPeriod>)]
            pub budget_period: $crate::accounts::Patch<$crate::limits::BudgetPeriod>,
            /// The old name of a `total` budget (give it or `budget_credits`).
            #[serde(default, deserialize_with = "crate::http::admin::credits_json::patch")]
            #[schema(value_type = Option<f64>, minimum = 0)]
            pub credit_cap: $crate::accounts::Patch<::vidgate_api::credits::Credits>,
        }

        impl $name {
            fn limits(&self) -> $crate::accounts::LimitsPatch {
                $crate::accounts::LimitsPatch {
                    allowed_models: self.allowed_models.clone(),
                    rpm: self.rpm.clone(),
                    max_concurrent: self.max_concurrent.clone(),
                    budget_credits: self.budget_credits.clone(),
                    budget_period: self.budget_period.clone(),
                    credit_cap: self.credit_cap.clone(),
                }
            }
        }
    };
}
pub(crate) use limits_body;

limits_body! {
    /// A new key: absent limits are none.
    CreateKeyBody {
        /// A name for people, 1 to 100 characters.
        #[schema(max_length = 100)]
        name: Option<String>,
        /// May it list, make and revoke the account's keys through `/v1/keys`
        /// (default false).
        manage_keys: Option<bool>,
    }
}

limits_body! {
    /// A partial update: absent fields stay as they are, `null` clears one.
    UpdateKeyBody {}
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// The API key itself: shown only this once.
    pub api_key: String,
}

/// Create another API key for an account, with limits. Audited.
#[utoipa::path(post, path = "/admin/accounts/{account_id}/keys", operation_id = "admin.keys.create", tag = "admin",
    params(("account_id" = String, Path)), request_body = CreateKeyBody,
    responses((status = 200, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The account holds `max_keys_per_account` live keys.", body = ErrorBody)),
    security(("admin" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Path(account_id): Path<String>,
    Body(body): Body<CreateKeyBody>,
) -> Result<Json<CreatedKey>, ApiError> {
    let account = accounts::existing(&state.store, &AccountId::from_raw(account_id)).await?;
    let limits = body.limits().apply_to(&state.catalog, &Default::default())?;
    let name = accounts::checked_name("name", body.name, "key")?;
    let actor = Actor::admin(addr.text());
    let key = accounts::create_key(&state, &account.id, &name, limits, body.manage_keys.unwrap_or(false), None, &actor)
        .await?;
    Ok(Json(CreatedKey { key: key.row.into(), api_key: key.secret.expose().to_owned() }))
}

/// List an account's keys with their limits (never their secrets).
#[utoipa::path(get, path = "/admin/accounts/{account_id}/keys", operation_id = "admin.keys.list", tag = "admin",
    params(("account_id" = String, Path)),
    responses((status = 200, body = Vec<KeyView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    _admin: Admin,
    Path(account_id): Path<String>,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    let account = accounts::existing(&state.store, &AccountId::from_raw(account_id)).await?;
    Ok(Json(state.store.list_keys(&account.id).await?.into_iter().map(Into::into).collect()))
}

/// Revoke a key; it stops working at once on this replica, within seconds on
/// others. Audited.
#[utoipa::path(post, path = "/admin/keys/{key_id}/revoke", operation_id = "admin.keys.revoke", tag = "admin",
    params(("key_id" = String, Path)),
    responses((status = 200, body = KeyView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = accounts::revoke(&state, &KeyId::from_raw(key_id), None, &Actor::admin(addr.text())).await?;
    Ok(Json(key.into()))
}

/// Change a key's limits: `rpm`, `max_concurrent`, `budget_credits` with
/// `budget_period` (`credit_cap` is the old name of a `total` budget) and
/// `allowed_models`. A partial update: a field left out stays as it is, a
/// field sent as `null` is cleared. Answers the key as it is now. Audited.
#[utoipa::path(patch, path = "/admin/keys/{key_id}", operation_id = "admin.keys.update", tag = "admin",
    params(("key_id" = String, Path)), request_body = UpdateKeyBody,
    responses((status = 200, body = KeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn update_key(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Path(key_id): Path<String>,
    Body(body): Body<UpdateKeyBody>,
) -> Result<Json<KeyView>, ApiError> {
    let key =
        accounts::update_limits(&state, &KeyId::from_raw(key_id), body.limits(), &Actor::admin(addr.text())).await?;
    Ok(Json(key.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct GrantBody {
    /// Credits to add (decimal, at most 4 places); negative to take back (never
    /// below zero).
    #[serde(deserialize_with = "credits_json::required")]
    #[schema(value_type = f64)]
    pub credits: Credits,
    /// Up to 500 characters.
    #[schema(max_length = 500)]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GrantResult {
    pub remaining_credits: f64,
}

/// Grant credits to an account (or take some back). Audited.
#[utoipa::path(post, path = "/admin/accounts/{account_id}/credits", operation_id = "admin.credits.grant", tag = "admin",
    params(("account_id" = String, Path)), request_body = GrantBody,
    responses((status = 200, body = GrantResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn grant_credits(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Path(account_id): Path<String>,
    Body(body): Body<GrantBody>,
) -> Result<Json<GrantResult>, ApiError> {
    let actor = Actor::admin(addr.text());
    let balance =
        accounts::grant(&state.store, &AccountId::from_raw(account_id), body.credits, body.note, &actor).await?;
    Ok(Json(GrantResult { remaining_credits: dec(balance) }))
}

/// A provider's health and its last day of upstream attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    #[serde(flatten)]
    pub health: ProviderHealth,
    /// Upstream attempts in the last 24 hours.
    pub attempts_24h: i64,
    pub succeeded_24h: i64,
    /// Failed, never accepted, or abandoned while the provider stopped answering.
    pub failed_24h: i64,
    /// Mean time from submit to a successful result, milliseconds.
    pub mean_latency_ms: Option<i64>,
    pub max_latency_ms: Option<i64>,
}

/// Health of each provider: its circuit breaker's state, recent outcomes, and
/// the last day's attempts and latency.
#[utoipa::path(get, path = "/admin/providers", operation_id = "admin.providers.health", tag = "admin",
    responses((status = 200, body = Vec<ProviderView>), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn provider_health(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<ProviderView>>, ApiError> {
    let stats = state.store.provider_stats(util::now_ms() - 86_400_000).await?;
    let views = state
        .routing
        .health()
        .into_iter()
        .map(|health| {
            let s = stats.iter().find(|s| s.provider == health.provider);
            ProviderView {
                attempts_24h: s.map_or(0, |s| s.attempts),
                succeeded_24h: s.map_or(0, |s| s.succeeded),
                failed_24h: s.map_or(0, |s| s.failed),
                mean_latency_ms: s.and_then(|s| s.mean_ms),
                max_latency_ms: s.and_then(|s| s.max_ms),
                health,
            }
        })
        .collect();
    Ok(Json(views))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminTaskQuery {
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    pub status: Option<String>,
    /// Only tasks of this model.
    #[param(max_length = 200)]
    pub model: Option<String>,
    /// Only tasks run by this provider.
    #[param(max_length = 200)]
    pub provider: Option<String>,
    /// Only this account's tasks.
    #[param(max_length = 200)]
    pub account: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// Page size, 1..=200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

/// A task as the operator sees it: the client's task object, whose it is and
/// which provider ran it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminTask {
    #[serde(flatten)]
    pub task: TaskObject,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = String)]
    pub key_id: KeyId,
    pub provider: Option<String>,
    /// The request's prompt, if it had one.
    pub prompt: Option<String>,
    /// Unix milliseconds.
    pub finished_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminTaskList {
    pub data: Vec<AdminTask>,
    pub next_cursor: Option<String>,
}

fn text_filter(param: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > 200 => Err(ApiError::invalid(param, format!("{param} is too long."))),
        other => Ok(other),
    }
}

/// Tasks across accounts, newest first, filtered by status, model, provider
/// and account.
#[utoipa::path(get, path = "/admin/tasks", operation_id = "admin.tasks.list", tag = "admin",
    params(AdminTaskQuery),
    responses((status = 200, body = AdminTaskList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_tasks(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<AdminTaskQuery>,
) -> Result<Json<AdminTaskList>, ApiError> {
    let limit = usage::parse_limit(q.limit.as_deref(), 50, 200)?;
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::invalid("status", "status must be one of pending, processing, completed, failed.")
        })?),
    };
    let filter = TaskFilter {
        status,
        model: text_filter("model", q.model)?,
        provider: text_filter("provider", q.provider)?,
        account_id: text_filter("account", q.account)?.map(AccountId::from_raw),
    };
    let after = match q.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            crate::tasks::decode_cursor(c).ok_or_else(|| ApiError::invalid("cursor", "The cursor is not valid."))?,
        ),
    };
    let rows = state.store.list_all_tasks(&filter, after.as_ref().map(|(t, id)| (*t, id.as_str())), limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows.iter().take(limit as usize) {
        let prompt = serde_json::from_str::<serde_json::Value>(&row.request)
            .ok()
            .and_then(|r| r.get("prompt").and_then(|p| p.as_str()).map(str::to_owned));
        data.push(AdminTask {
            task: crate::tasks::task_object(row, &state.catalog)?,
            account_id: row.account_id.clone(),
            key_id: row.key_id.clone(),
            provider: row.provider.clone(),
            prompt,
            finished_at: row.finished_at,
        });
    }
    let next_cursor = if more {
        rows.get(limit as usize - 1).map(|r| crate::tasks::encode_cursor(r.created_us, &r.id))
    } else {
        None
    };
    Ok(Json(AdminTaskList { data, next_cursor }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub seq: i64,
    pub provider: String,
    pub upstream_model: String,
    pub upstream_id: Option<String>,
    pub status: AttemptStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub polls: i64,
    pub cost_usd: f64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskAttempts {
    pub task_id: String,
    pub status: vidgate_api::task::TaskStatus,
    pub provider: Option<String>,
    pub attempts: Vec<AttemptView>,
}

/// Every upstream attempt of a task: provider, upstream id, outcome and error.
#[utoipa::path(get, path = "/admin/tasks/{task_id}/attempts", operation_id = "admin.tasks.attempts", tag = "admin",
    params(("task_id" = String, Path)),
    responses((status = 200, body = TaskAttempts), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn task_attempts(
    State(state): State<AppState>,
    _admin: Admin,
    Path(task_id): Path<String>,
) -> Result<Json<TaskAttempts>, ApiError> {
    let id = TaskId::parse(&task_id).ok_or_else(ApiError::task_not_found)?;
    let task = state.store.get_task_any(&id).await?.ok_or_else(ApiError::task_not_found)?;
    let attempts = state
        .store
        .upstream_attempts(&id)
        .await?
        .into_iter()
        .map(|a| AttemptView {
            seq: a.seq,
            provider: a.provider,
            upstream_model: a.upstream_model,
            upstream_id: a.upstream_id,
            status: a.status,
            error_code: a.error_code,
            error_message: a.error_message,
            polls: a.polls,
            cost_usd: a.cost_micro_usd as f64 / 1e6,
            created_at: a.created_at,
            finished_at: a.finished_at,
        })
        .collect();
    Ok(Json(TaskAttempts { task_id, status: task.status, provider: task.provider, attempts }))
}

/// The callbacks of any task and every attempt to deliver them.
#[utoipa::path(get, path = "/admin/tasks/{task_id}/callbacks", operation_id = "admin.tasks.callbacks", tag = "admin",
    params(("task_id" = String, Path)),
    responses((status = 200, body = DeliveryList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn task_callbacks(
    State(state): State<AppState>,
    _admin: Admin,
    Path(task_id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = TaskId::parse(&task_id).ok_or_else(ApiError::task_not_found)?;
    state.store.get_task_any(&id).await?.ok_or_else(ApiError::task_not_found)?;
    let mut data = Vec::new();
    for d in state.store.list_deliveries(&id).await? {
        let attempts = state
            .store
            .delivery_attempts(&d.id)
            .await?
            .into_iter()
            .map(|a| DeliveryAttemptView {
                attempted_at: a.attempted_at,
                status_code: a.status_code,
                error: a.error,
                latency_ms: a.latency_ms,
            })
            .collect();
        data.push(DeliveryView {
            next_attempt_at: (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at),
            id: d.id.to_string(),
            url: d.url,
            status: d.status,
            attempts,
        });
    }
    Ok(Json(DeliveryList { data }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarginLine {
    pub model: String,
    pub provider: String,
    pub tasks: i64,
    pub credits_charged: f64,
    /// Revenue at 72 credits = $1.
    pub revenue_usd: f64,
    pub upstream_cost_usd: f64,
    pub margin_usd: f64,
}

/// Revenue against upstream cost of the tasks completed on one UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct MarginDayLine {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub tasks: i64,
    /// Units of 1/10000 credit.
    pub credits_charged: i64,
    pub revenue_usd: f64,
    pub upstream_cost_usd: f64,
    pub margin_usd: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarginReport {
    /// Every completed task, by model and provider.
    pub data: Vec<MarginLine>,
    pub total_revenue_usd: f64,
    pub total_upstream_cost_usd: f64,
    /// The tasks completed in `[from, to)`, by day (days without any are left out).
    pub days: Vec<MarginDayLine>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start of `days` (UTC date `YYYY-MM-DD` or Unix seconds); 30 days before `to` by default.
    #[param(max_length = 20)]
    pub from: Option<String>,
    /// End of `days`, exclusive; now by default.
    #[param(max_length = 20)]
    pub to: Option<String>,
}

fn usd(micro: f64) -> f64 {
    (micro * 1e6).round() / 1e6
}

/// Revenue against upstream cost of completed tasks, per model and provider,
/// and day by day over a range (the console charts it).
#[utoipa::path(get, path = "/admin/reports/margin", operation_id = "admin.reports.margin", tag = "admin",
    params(RangeQuery),
    responses((status = 200, body = MarginReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn margin_report(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<RangeQuery>,
) -> Result<Json<MarginReport>, ApiError> {
    let range = Range::parse(q.from.as_deref(), q.to.as_deref(), util::now_ms())?;
    let mut data = Vec::new();
    for r in state.store.margin_report().await? {
        let credits = Credits::from_units(r.credits_charged);
        let revenue = credits.to_usd_f64();
        let cost = r.cost_micro_usd as f64 / 1e6;
        data.push(MarginLine {
            model: r.model,
            provider: r.provider,
            tasks: r.tasks,
            credits_charged: credits.to_credits_f64(),
            revenue_usd: usd(revenue),
            upstream_cost_usd: cost,
            margin_usd: usd(revenue - cost),
        });
    }
    let total_revenue_usd = data.iter().map(|l| l.revenue_usd).sum();
    let total_upstream_cost_usd = data.iter().map(|l| l.upstream_cost_usd).sum();
    let days = state
        .store
        .margin_by_day(range.from, range.to)
        .await?
        .into_iter()
        .map(|d| {
            let revenue = Credits::from_units(d.credits_charged).to_usd_f64();
            let cost = d.cost_micro_usd as f64 / 1e6;
            MarginDayLine {
                date: format_utc_date(d.day * 86_400_000),
                tasks: d.tasks,
                credits_charged: d.credits_charged,
                revenue_usd: usd(revenue),
                upstream_cost_usd: cost,
                margin_usd: usd(revenue - cost),
            }
        })
        .collect();
    Ok(Json(MarginReport { data, total_revenue_usd, total_upstream_cost_usd, days }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only rows about this account.
    #[param(max_length = 200)]
    pub account: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// One action that moved money or access.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// `admin`, `key:<key id>`, `signup` or `system`.
    pub actor: String,
    /// `account.create`, `account.grant`, `account.disable`, `account.enable`,
    /// `key.create`, `key.revoke`, `key.limits`, `codes.create`, `code.redeem`.
    pub action: String,
    /// The account, key, batch or code the action was about.
    pub target: String,
    pub account_id: Option<String>,
    /// The target's state before (JSON), when it existed.
    pub before: Option<serde_json::Value>,
    /// The target's state after (JSON).
    pub after: Option<serde_json::Value>,
    /// The client address the request came from.
    pub source: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        Self {
            id: r.id,
            created_at: r.created_at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            account_id: r.account_id.map(|a| a.to_string()),
            before: json(r.before_state),
            after: json(r.after_state),
            source: r.source,
        }
    }
}

/// The audit log, newest first: every action that moved money or access, with
/// who, from where, and the state before and after.
#[utoipa::path(get, path = "/admin/audit", operation_id = "admin.audit.list", tag = "admin",
    params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn audit_log(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = usage::parse_limit(q.limit.as_deref(), 100, 500)?;
    let before = usage::decode_cursor(q.cursor.as_deref())?;
    let account = text_filter("account", q.account)?.map(AccountId::from_raw);
    let rows = state.store.list_audit(account.as_ref(), before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let data: Vec<AuditEntry> = rows.into_iter().take(limit as usize).map(Into::into).collect();
    let next_cursor = if more { data.last().map(|e| usage::encode_cursor(e.id)) } else { None };
    Ok(Json(AuditPage { data, next_cursor }))
}
