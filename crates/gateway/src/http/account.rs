//! `GET /v1/credits` and `GET /v1/models`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use vidgate_api::catalog::ModelList;
use vidgate_api::credits::Credits;
use vidgate_api::error::ErrorBody;
use vidgate_api::task::{CreditsData, CreditsResponse, TokenCredits, UserCredits};

use crate::error::ApiError;
use crate::state::AppState;
use crate::tasks::Caller;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/credits", get(get_credits)).route("/v1/models", get(list_models))
}

/// Remaining and used credits of the account and of the key asking.
///
/// Credits are decimal numbers here, as EvoLink answers them. For the key and
/// the account alike, `remaining_credits` is what can be held for new tasks now,
/// `used_credits` what is committed (charged for completed tasks plus held by
/// running ones) and `held_credits` the held part of it, given back if those
/// tasks fail or are cancelled.
#[utoipa::path(
    get, path = "/v1/credits", operation_id = "v1.credits.get", tag = "account",
    responses(
        (status = 200, description = "Balances.", body = CreditsResponse),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_credits(State(state): State<AppState>, caller: Caller) -> Result<Json<CreditsResponse>, ApiError> {
    let b = state.store.balances(&caller.account_id, &caller.key_id).await?.ok_or_else(ApiError::unauthorized)?;
    let dec = |units: i64| Credits::from_units(units).to_credits_f64();
    let key_remaining = match b.key_cap {
        Some(cap) => (cap - b.key_spent).max(0).min(b.account_remaining),
        None => b.account_remaining,
    };
    Ok(Json(CreditsResponse {
        data: CreditsData {
            token: TokenCredits {
                remaining_credits: dec(key_remaining),
                unlimited_credits: b.key_cap.is_none(),
                used_credits: dec(b.key_spent),
                held_credits: dec(b.key_held),
            },
            user: UserCredits {
                remaining_credits: dec(b.account_remaining),
                used_credits: dec(b.account_used + b.account_held),
                held_credits: dec(b.account_held),
            },
        },
        message: String::new(),
        success: true,
    }))
}

/// The model catalog with prices per second for each quality and sound.
#[utoipa::path(
    get, path = "/v1/models", operation_id = "v1.models.list", tag = "account",
    responses(
        (status = 200, description = "The catalog.", body = ModelList),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_models(State(state): State<AppState>, _caller: Caller) -> Json<ModelList> {
    Json(state.catalog.model_list())
}
