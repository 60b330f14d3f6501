//! Self-service keys: `GET /v1/keys`, `POST /v1/keys` and
//! `POST /v1/keys/{key_id}/revoke`, for keys marked `manage_keys` (an
//! account's first key). A key makes only keys within its own limits and
//! revokes only itself and the keys it made; `accounts` holds the rules.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use vidgate_api::error::ErrorBody;

use crate::accounts;
use crate::error::ApiError;
use crate::http::admin::{CreatedKey, KeyView, limits_body};
use crate::http::auth::ClientAddr;
use crate::http::extract::Json as Body;
use crate::ids::KeyId;
use crate::state::AppState;
use crate::tasks::Caller;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/keys", get(list_keys).post(create_key)).route("/v1/keys/{key_id}/revoke", post(revoke_key))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyView>,
}

limits_body! {
    /// A key made by a key: each limit left out is the maker's own; none may
    /// be higher than the maker's.
    NewKeyBody {
        /// A name for people, 1 to 100 characters.
        #[schema(max_length = 100)]
        name: Option<String>,
    }
}

/// The account's keys with their limits (never their secrets). Only for a key
/// marked `manage_keys`.
#[utoipa::path(get, path = "/v1/keys", operation_id = "v1.keys.list", tag = "keys",
    responses(
        (status = 200, description = "The account's keys, oldest first.", body = KeyList),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 403, description = "This key may not manage keys.", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_keys(State(state): State<AppState>, caller: Caller) -> Result<Json<KeyList>, ApiError> {
    let (_, keys) = accounts::own_keys(&state, &caller.key_id).await?;
    Ok(Json(KeyList { data: keys.into_iter().map(Into::into).collect() }))
}

/// Make a key for the account, within this key's own limits: `allowed_models`
/// a subset, `rpm`, `max_concurrent` and the budget no higher (a limit left
/// out is this key's own). The new key never manages keys. The secret is
/// shown only in this answer.
#[utoipa::path(post, path = "/v1/keys", operation_id = "v1.keys.create", tag = "keys",
    request_body = NewKeyBody,
    responses(
        (status = 200, description = "The new key and its secret.", body = CreatedKey),
        (status = 400, description = "A limit is invalid; `error.param` names it.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 403, description = "This key may not manage keys, or a limit is above its own (`error.param`).", body = ErrorBody),
        (status = 409, description = "The account holds `max_keys_per_account` live keys.", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    addr: ClientAddr,
    Body(body): Body<NewKeyBody>,
) -> Result<Json<CreatedKey>, ApiError> {
    let limits = body.limits();
    let key = accounts::create_own_key(&state, &caller.key_id, body.name, limits, &addr.text()).await?;
    Ok(Json(CreatedKey { key: key.row.into(), api_key: key.secret.expose().to_owned() }))
}

/// Revoke this key itself or a key it made; it stops working at once on this
/// replica, within seconds on others.
#[utoipa::path(post, path = "/v1/keys/{key_id}/revoke", operation_id = "v1.keys.revoke", tag = "keys",
    params(("key_id" = String, Path)),
    responses(
        (status = 200, description = "The key, revoked.", body = KeyView),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 403, description = "This key may not manage keys.", body = ErrorBody),
        (status = 404, description = "No live key this key may revoke.", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    addr: ClientAddr,
    Path(key_id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    let key = accounts::revoke_own_key(&state, &caller.key_id, &KeyId::from_raw(key_id), &addr.text()).await?;
    Ok(Json(key.into()))
}
