//! Top-up codes and sign-up: `POST /admin/codes` and `GET /admin/codes` for the
//! operator, `POST /v1/credits/redeem` for an account, and `POST /v1/signup`
//! (when sign-up is set to `code`) for anyone holding a code. `codes` holds
//! the rules.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vidgate_api::credits::Credits;
use vidgate_api::error::ErrorBody;

use crate::codes::{self, BatchRequest};
use crate::error::ApiError;
use crate::http::admin::{KeyView, credits_json};
use crate::http::auth::{Admin, ClientAddr};
use crate::http::extract::Json as Body;
use crate::ids::{AccountId, BatchId};
use crate::state::AppState;
use crate::store::{Actor, CodeBatchRow};
use crate::tasks::Caller;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/codes", post(create_codes).get(list_codes))
        .route("/v1/credits/redeem", post(redeem))
        .route("/v1/signup", post(sign_up))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateCodesBody {
    /// Credits each redemption adds (decimal, at most 4 places).
    #[serde(deserialize_with = "credits_json::required")]
    #[schema(value_type = f64, minimum = 0.0001, maximum = 1000000000)]
    pub value: Credits,
    /// How many codes, 1..=1000 (default 1).
    #[schema(minimum = 1, maximum = 1000)]
    pub count: Option<i64>,
    /// How many times each code may be redeemed (each account once), 1..=1000000 (default 1).
    #[schema(minimum = 1, maximum = 1000000)]
    pub uses_per_code: Option<i64>,
    /// Unix seconds after which the codes no longer work; never when absent.
    #[schema(minimum = 0, maximum = 253402300799_i64)]
    pub expires_at: Option<i64>,
    /// Up to 200 characters.
    #[schema(max_length = 200)]
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    #[schema(value_type = String)]
    pub id: BatchId,
    /// Units of 1/10000 credit each redemption adds.
    pub value: i64,
    pub count: i64,
    pub uses_per_code: i64,
    /// Redemptions so far across the batch.
    pub redeemed: i64,
    /// Unix seconds; null for never.
    pub expires_at: Option<i64>,
    pub note: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<CodeBatchRow> for BatchView {
    fn from(b: CodeBatchRow) -> Self {
        Self {
            id: b.id,
            value: b.value,
            count: b.count,
            uses_per_code: b.uses_per_code,
            redeemed: b.redeemed,
            expires_at: b.expires_at.map(|ms| ms / 1000),
            note: b.note,
            created_at: b.created_at / 1000,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedCodes {
    pub batch: BatchView,
    /// The codes themselves: shown only this once (only their hashes are kept).
    pub codes: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchList {
    pub data: Vec<BatchView>,
}

/// Make a batch of top-up codes. The codes are in this answer only. Audited.
#[utoipa::path(post, path = "/admin/codes", operation_id = "admin.codes.create", tag = "admin",
    request_body = CreateCodesBody,
    responses((status = 200, body = CreatedCodes), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn create_codes(
    State(state): State<AppState>,
    _admin: Admin,
    addr: ClientAddr,
    Body(body): Body<CreateCodesBody>,
) -> Result<Json<CreatedCodes>, ApiError> {
    let expires_at = match body.expires_at {
        Some(secs) if !(0..=253_402_300_799).contains(&secs) => {
            return Err(ApiError::invalid("expires_at", "expires_at must be Unix seconds."));
        }
        other => other.map(|s| s * 1000),
    };
    let req = BatchRequest {
        value: body.value,
        count: body.count.unwrap_or(1),
        uses_per_code: body.uses_per_code.unwrap_or(1),
        expires_at,
        note: body.note,
    };
    let (batch, codes) = codes::create_batch(&state, req, &Actor::admin(addr.text())).await?;
    Ok(Json(CreatedCodes { batch: batch.into(), codes }))
}

/// Every batch of codes, newest first, with how much of it is redeemed (never
/// the codes).
#[utoipa::path(get, path = "/admin/codes", operation_id = "admin.codes.list", tag = "admin",
    responses((status = 200, body = BatchList), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn list_codes(State(state): State<AppState>, _admin: Admin) -> Result<Json<BatchList>, ApiError> {
    Ok(Json(BatchList { data: state.store.list_code_batches().await?.into_iter().map(Into::into).collect() }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RedeemBody {
    /// The code as printed (`VG-XXXX-XXXX-XXXX-XXXX`; case, spaces and dashes do not matter).
    #[schema(max_length = 100, pattern = "^[A-Za-z0-9 -]*[A-Za-z0-9][A-Za-z0-9 -]*$")]
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedeemResult {
    /// Units of 1/10000 credit added.
    pub amount: i64,
    /// The account's available balance now, in units.
    pub balance: i64,
}

/// Redeem a top-up code: its value is added to the account at once. Each
/// account may redeem a code once.
#[utoipa::path(post, path = "/v1/credits/redeem", operation_id = "v1.credits.redeem", tag = "account",
    request_body = RedeemBody,
    responses(
        (status = 200, description = "Credits added.", body = RedeemResult),
        (status = 400, description = "No code given.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "No such code (`not_found`).", body = ErrorBody),
        (status = 409, description = "The code's uses are spent, or this account redeemed it (`code_used_up`).", body = ErrorBody),
        (status = 410, description = "The code has expired (`code_expired`).", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn redeem(
    State(state): State<AppState>,
    caller: Caller,
    addr: ClientAddr,
    Body(body): Body<RedeemBody>,
) -> Result<Json<RedeemResult>, ApiError> {
    let r = codes::redeem(&state, &caller.account_id, &caller.key_id, &body.code, &addr.text()).await?;
    Ok(Json(RedeemResult { amount: r.value, balance: r.balance }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupBody {
    /// A valid top-up code; its value is the new account's first credits
    /// (with the server's sign-up credits).
    #[schema(max_length = 100, pattern = "^[A-Za-z0-9 -]*[A-Za-z0-9][A-Za-z0-9 -]*$")]
    pub code: String,
    /// A name for the account, 1 to 100 characters.
    #[schema(max_length = 100)]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedUp {
    #[schema(value_type = String)]
    pub account_id: AccountId,
    /// The account's first key (it manages the account's keys).
    pub key: KeyView,
    /// The API key itself: shown only this once.
    pub api_key: String,
    /// The account's available balance, in units of 1/10000 credit.
    pub balance: i64,
}

/// Open an account with a top-up code, when the operator has set sign-up to
/// `code`. Attempts are limited per client address per hour.
#[utoipa::path(post, path = "/v1/signup", operation_id = "v1.signup", tag = "account",
    request_body = SignupBody,
    responses(
        (status = 200, description = "The new account and its key.", body = SignedUp),
        (status = 400, description = "No code, or a bad name.", body = ErrorBody),
        (status = 403, description = "Sign-up is closed (`permission_denied`).", body = ErrorBody),
        (status = 404, description = "No such code.", body = ErrorBody),
        (status = 409, description = "The code's uses are spent.", body = ErrorBody),
        (status = 410, description = "The code has expired.", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address this hour; see `Retry-After`.", body = ErrorBody),
    ),
    security(()))]
pub async fn sign_up(
    State(state): State<AppState>,
    addr: ClientAddr,
    Body(body): Body<SignupBody>,
) -> Result<Json<SignedUp>, ApiError> {
    let done = codes::sign_up(&state, &body.code, body.name, &addr.subject(), &addr.text()).await?;
    Ok(Json(SignedUp {
        account_id: done.account_id,
        key: done.key.row.into(),
        api_key: done.key.secret.expose().to_owned(),
        balance: done.redeemed.balance,
    }))
}
