//! Callback secrets and delivery records: `GET /v1/webhooks/secret`,
//! `POST /v1/webhooks/secret/rotate`, `GET /v1/tasks/{id}/callbacks` and
//! `POST /v1/tasks/{id}/callbacks/{delivery_id}/retry`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use vidgate_api::error::{ErrorBody, ErrorCode};

use crate::error::ApiError;
use crate::ids::DeliveryId;
use crate::state::AppState;
use crate::store::DeliveryStatus;
use crate::tasks::Caller;
use crate::{util, webhooks};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks/secret", get(get_secret))
        .route("/v1/webhooks/secret/rotate", post(rotate_secret))
        .route("/v1/tasks/{task_id}/callbacks", get(list_callbacks))
        .route("/v1/tasks/{task_id}/callbacks/{delivery_id}/retry", post(retry_callback))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretBody {
    /// `whsec_...`: verify `webhook-signature` with it (Standard Webhooks).
    pub secret: String,
}

/// The account's callback signing secret.
#[utoipa::path(get, path = "/v1/webhooks/secret", operation_id = "v1.webhooks.secret", tag = "webhooks",
    responses((status = 200, body = SecretBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_secret(State(state): State<AppState>, caller: Caller) -> Result<Json<SecretBody>, ApiError> {
    Ok(Json(SecretBody { secret: webhooks::current_secret(&state, &caller.account_id).await? }))
}

/// Make a new signing secret. During the overlap (24 h by default) callbacks carry
/// signatures by both the new and the previous secret, space-separated.
#[utoipa::path(post, path = "/v1/webhooks/secret/rotate", operation_id = "v1.webhooks.rotate", tag = "webhooks",
    responses((status = 200, body = SecretBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_secret(State(state): State<AppState>, caller: Caller) -> Result<Json<SecretBody>, ApiError> {
    Ok(Json(SecretBody { secret: webhooks::rotate_secret(&state, &caller.account_id).await? }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttemptView {
    /// Unix milliseconds.
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub latency_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` header of every attempt of this delivery.
    pub id: String,
    pub url: String,
    pub status: DeliveryStatus,
    /// Unix milliseconds of the next attempt while pending.
    pub next_attempt_at: Option<i64>,
    pub attempts: Vec<DeliveryAttemptView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<DeliveryView>,
}

/// The callbacks of a task and every attempt to deliver them.
#[utoipa::path(get, path = "/v1/tasks/{task_id}/callbacks", operation_id = "v1.tasks.callbacks", tag = "webhooks",
    params(("task_id" = String, Path)),
    responses((status = 200, body = DeliveryList), (status = 400, description = "Malformed task id.", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_callbacks(
    State(state): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
) -> Result<Json<DeliveryList>, ApiError> {
    let task_id = crate::tasks::owns(&state, &caller, &task_id).await?;
    let mut data = Vec::new();
    for d in state.store.list_deliveries(&task_id).await? {
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

/// Send a delivery again (after it failed, or to replay it).
#[utoipa::path(post, path = "/v1/tasks/{task_id}/callbacks/{delivery_id}/retry", operation_id = "v1.tasks.callbacks.retry", tag = "webhooks",
    params(("task_id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_callback(
    State(state): State<AppState>,
    caller: Caller,
    Path((task_id, delivery_id)): Path<(String, String)>,
) -> Result<Json<DeliveryList>, ApiError> {
    let task = crate::tasks::owns(&state, &caller, &task_id).await?;
    let delivery_id = DeliveryId::from_raw(delivery_id);
    if !state.store.retry_delivery(&caller.account_id, &task, &delivery_id, util::now_ms()).await? {
        let known = state.store.list_deliveries(&task).await?.into_iter().any(|d| d.id == delivery_id);
        return Err(if known {
            ApiError::invalid("delivery_id", "This delivery is still pending.")
        } else {
            ApiError::new(ErrorCode::NotFound, "No such delivery for this task.").with_param("delivery_id")
        });
    }
    state.webhooks.wake.notify_one();
    list_callbacks(State(state), caller, Path(task_id)).await
}
