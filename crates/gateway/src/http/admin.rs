//! `/admin`: accounts, API keys (create, list, revoke, credit cap, allowed models),
//! credit grants, provider health, task attempts and the margin report, behind
//! the admin key. Key secrets are shown only when made. Handlers extract and
//! shape; the rules live in `accounts`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vidgate_api::credits::Credits;
use vidgate_api::error::{ErrorBody, ErrorCode};

use crate::accounts::{self, KeyLimits};
use crate::error::ApiError;
use crate::http::auth::Admin;
use crate::http::extract::Json as Body;
use crate::ids::{AccountId, KeyId, TaskId};
use crate::routing::ProviderHealth;
use crate::state::AppState;
use crate::store::{AccountRow, AttemptStatus, KeyRow};

/// Credits as a JSON number or string, read exactly (at most 4 decimals): money
/// never passes through a float.
mod credits_json {
    use serde::{Deserialize, Deserializer};
    use vidgate_api::credits::Credits;

    fn parse<E: serde::de::Error>(text: &str) -> Result<Credits, E> {
        Credits::parse_decimal(text)
            .ok_or_else(|| E::custom(format!("{text} is not a number of credits with at most 4 decimals")))
    }

    pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Credits, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => parse(&n.to_string()),
            serde_json::Value::String(s) => parse(s.trim()),
            other => Err(serde::de::Error::custom(format!("expected a number of credits, got {other}"))),
        }
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Credits>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) => parse(&n.to_string()).map(Some),
            serde_json::Value::String(s) => parse(s.trim()).map(Some),
            other => Err(serde::de::Error::custom(format!("expected a number of credits, got {other}"))),
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/accounts", post(create_account).get(list_accounts))
        .route("/admin/accounts/{account_id}", get(get_account))
        .route("/admin/accounts/{account_id}/keys", post(create_key).get(list_keys))
        .route("/admin/accounts/{account_id}/credits", post(grant_credits))
        .route("/admin/keys/{key_id}/revoke", post(revoke_key))
        .route("/admin/keys/{key_id}", axum::routing::patch(update_key))
        .route("/admin/providers", get(provider_health))
        .route("/admin/tasks/{task_id}/attempts", get(task_attempts))
        .route("/admin/reports/margin", get(margin_report))
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
    pub created_at: i64,
}

impl From<AccountRow> for AccountView {
    fn from(a: AccountRow) -> Self {
        let dec = |u: i64| Credits::from_units(u).to_credits_f64();
        Self {
            id: a.id,
            name: a.name,
            user_group: a.user_group,
            remaining_credits: dec(a.balance),
            held_credits: dec(a.held),
            used_credits: dec(a.used),
            created_at: a.created_at / 1000,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    #[schema(value_type = String)]
    pub id: KeyId,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub name: String,
    /// The first characters of the key.
    pub prefix: String,
    pub credit_cap: Option<f64>,
    pub spent_credits: f64,
    pub allowed_models: Option<Vec<String>>,
    pub revoked: bool,
    pub created_at: i64,
}

impl From<KeyRow> for KeyView {
    fn from(k: KeyRow) -> Self {
        let dec = |u: i64| Credits::from_units(u).to_credits_f64();
        Self {
            id: k.id,
            account_id: k.account_id,
            name: k.name,
            prefix: k.prefix,
            credit_cap: k.credit_cap.map(dec),
            spent_credits: dec(k.spent),
            allowed_models: k.allowed_models.0,
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

/// Create an account with credits and a first API key.
#[utoipa::path(post, path = "/admin/accounts", operation_id = "admin.accounts.create", tag = "admin",
    request_body = CreateAccountBody,
    responses((status = 200, body = CreatedAccount), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn create_account(
    State(state): State<AppState>,
    _admin: Admin,
    Body(body): Body<CreateAccountBody>,
) -> Result<Json<CreatedAccount>, ApiError> {
    let credits = body.credits.unwrap_or(state.config.signup_credits);
    if credits.units() < 0 {
        return Err(ApiError::invalid("credits", "Starting credits cannot be negative."));
    }
    let name = accounts::checked_name("name", body.name, "account")?;
    let (id, key) = accounts::create_account(&state.store, &name, credits.units()).await?;
    let account = accounts::existing(&state.store, &id).await?;
    Ok(Json(CreatedAccount { account: account.into(), key: key.row.into(), api_key: key.secret.expose().to_owned() }))
}

/// List accounts with their balances.
#[utoipa::path(get, path = "/admin/accounts", operation_id = "admin.accounts.list", tag = "admin",
    responses((status = 200, body = Vec<AccountView>), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_accounts(State(state): State<AppState>, _admin: Admin) -> Result<Json<Vec<AccountView>>, ApiError> {
    Ok(Json(state.store.list_accounts().await?.into_iter().map(Into::into).collect()))
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyBody {
    /// A name for people, 1 to 100 characters.
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Most credits this key may spend (decimal); no cap when absent.
    #[serde(default, deserialize_with = "credits_json::optional")]
    #[schema(value_type = Option<f64>, minimum = 0)]
    pub credit_cap: Option<Credits>,
    /// Models this key may use; all when absent.
    pub allowed_models: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// The API key itself: shown only this once.
    pub api_key: String,
}

/// Create another API key for an account.
#[utoipa::path(post, path = "/admin/accounts/{account_id}/keys", operation_id = "admin.keys.create", tag = "admin",
    params(("account_id" = String, Path)), request_body = CreateKeyBody,
    responses((status = 200, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    _admin: Admin,
    Path(account_id): Path<String>,
    Body(body): Body<CreateKeyBody>,
) -> Result<Json<CreatedKey>, ApiError> {
    let account = accounts::existing(&state.store, &AccountId::from_raw(account_id)).await?;
    let limits = KeyLimits::checked(&state.catalog, body.credit_cap, body.allowed_models)?;
    let name = accounts::checked_name("name", body.name, "key")?;
    let key = accounts::create_key(&state.store, &account.id, &name, limits).await?;
    Ok(Json(CreatedKey { key: key.row.into(), api_key: key.secret.expose().to_owned() }))
}

/// List an account's keys (never their secrets).
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: bool,
}

/// Revoke a key; it stops working at once on this replica.
#[utoipa::path(post, path = "/admin/keys/{key_id}/revoke", operation_id = "admin.keys.revoke", tag = "admin",
    params(("key_id" = String, Path)),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    _admin: Admin,
    Path(key_id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    if !state.store.revoke_key(&KeyId::from_raw(key_id)).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "No such live key.").with_param("key_id"));
    }
    state.keys.clear();
    Ok(Json(Revoked { revoked: true }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateKeyBody {
    /// New cap (decimal credits); absent or null for none.
    #[serde(default, deserialize_with = "credits_json::optional")]
    #[schema(value_type = Option<f64>, minimum = 0)]
    pub credit_cap: Option<Credits>,
    /// Models allowed; absent or null for all.
    pub allowed_models: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Updated {
    pub updated: bool,
}

/// Set a key's credit cap and allowed models (both are replaced).
#[utoipa::path(patch, path = "/admin/keys/{key_id}", operation_id = "admin.keys.update", tag = "admin",
    params(("key_id" = String, Path)), request_body = UpdateKeyBody,
    responses((status = 200, body = Updated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn update_key(
    State(state): State<AppState>,
    _admin: Admin,
    Path(key_id): Path<String>,
    Body(body): Body<UpdateKeyBody>,
) -> Result<Json<Updated>, ApiError> {
    let limits = KeyLimits::checked(&state.catalog, body.credit_cap, body.allowed_models)?;
    let key_id = KeyId::from_raw(key_id);
    if !state.store.update_key_limits(&key_id, limits.credit_cap, &limits.allowed_models).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "No such key.").with_param("key_id"));
    }
    state.keys.clear();
    Ok(Json(Updated { updated: true }))
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

/// Grant credits to an account (or take some back).
#[utoipa::path(post, path = "/admin/accounts/{account_id}/credits", operation_id = "admin.credits.grant", tag = "admin",
    params(("account_id" = String, Path)), request_body = GrantBody,
    responses((status = 200, body = GrantResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn grant_credits(
    State(state): State<AppState>,
    _admin: Admin,
    Path(account_id): Path<String>,
    Body(body): Body<GrantBody>,
) -> Result<Json<GrantResult>, ApiError> {
    let balance = accounts::grant(&state.store, &AccountId::from_raw(account_id), body.credits, body.note).await?;
    Ok(Json(GrantResult { remaining_credits: Credits::from_units(balance).to_credits_f64() }))
}

/// Health of each provider: its circuit breaker's state and recent outcomes.
#[utoipa::path(get, path = "/admin/providers", operation_id = "admin.providers.health", tag = "admin",
    responses((status = 200, body = Vec<ProviderHealth>), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn provider_health(State(state): State<AppState>, _admin: Admin) -> Json<Vec<ProviderHealth>> {
    Json(state.routing.health())
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

#[derive(Debug, Serialize, ToSchema)]
pub struct MarginReport {
    pub data: Vec<MarginLine>,
    pub total_revenue_usd: f64,
    pub total_upstream_cost_usd: f64,
}

/// Revenue against upstream cost of completed tasks, per model and provider.
#[utoipa::path(get, path = "/admin/reports/margin", operation_id = "admin.reports.margin", tag = "admin",
    responses((status = 200, body = MarginReport), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn margin_report(State(state): State<AppState>, _admin: Admin) -> Result<Json<MarginReport>, ApiError> {
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
            revenue_usd: (revenue * 1e6).round() / 1e6,
            upstream_cost_usd: cost,
            margin_usd: ((revenue - cost) * 1e6).round() / 1e6,
        });
    }
    let total_revenue_usd = data.iter().map(|l| l.revenue_usd).sum();
    let total_upstream_cost_usd = data.iter().map(|l| l.upstream_cost_usd).sum();
    Ok(Json(MarginReport { data, total_revenue_usd, total_upstream_cost_usd }))
}
