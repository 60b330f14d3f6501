//! `/v1/videos/generations` and `/v1/tasks`: create, get, list, cancel.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use vidgate_api::error::ErrorBody;
use vidgate_api::task::{TaskList, TaskObject};

use super::extract::{Query, body_error};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tasks::{self, Caller, Created, ListQuery};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/videos/generations", post(create_task))
        .route("/v1/tasks", get(list_tasks))
        .route("/v1/tasks/{task_id}", get(get_task))
        .route("/v1/tasks/{task_id}/cancel", post(cancel_task))
}

/// Create a video generation task.
///
/// One endpoint for every model: only `model` and its parameters differ. The price
/// is held from the account at once (`usage.credits_reserved`), charged when the
/// task completes and released in full when it fails or is cancelled. With an
/// `Idempotency-Key`, a retry with the same body returns the first response.
#[utoipa::path(
    post, path = "/v1/videos/generations", operation_id = "v1.tasks.create", tag = "tasks",
    request_body(content_type = "application/json", description = "The model's parameters: one schema per model, chosen by `model`."),
    params(("Idempotency-Key" = Option<String>, Header, description = "Up to 255 characters; remembered for 24 h per account.")),
    responses(
        (status = 200, description = "The task, pending.", body = TaskObject),
        (status = 400, description = "A field is invalid; `error.param` names it.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 402, description = "Not enough credits; nothing was created.", body = ErrorBody),
        (status = 403, description = "The key may not use this model.", body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused with another body.", body = ErrorBody),
        (status = 413, description = "Body too large.", body = ErrorBody),
        (status = 429, description = "Too many requests for this key.", body = ErrorBody),
        (status = 500, description = "Server error.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| body_error(&e))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::invalid("Idempotency-Key", "The Idempotency-Key header must be printable ASCII.")
        })?),
    };
    match tasks::create(&state, &caller, &body, key).await? {
        Created::New(task) => Ok(Json(task).into_response()),
        Created::Replay(stored) => {
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], stored).into_response())
        }
    }
}

/// Get a task.
///
/// Another account's task answers 404, exactly like a task that does not exist.
#[utoipa::path(
    get, path = "/v1/tasks/{task_id}", operation_id = "v1.tasks.get", tag = "tasks",
    params(("task_id" = String, Path, description = "The task id, `task-unified-...`.")),
    responses(
        (status = 200, description = "The task.", body = TaskObject),
        (status = 400, description = "Malformed task id.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "No such task for this account.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
) -> Result<Response, ApiError> {
    let body = tasks::get_json(&state, &caller, task_id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// List the caller's tasks, newest first.
#[utoipa::path(
    get, path = "/v1/tasks", operation_id = "v1.tasks.list", tag = "tasks",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of tasks.", body = TaskList),
        (status = 400, description = "Bad limit, cursor or status.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<TaskList>, ApiError> {
    Ok(Json(tasks::list(&state, &caller, &query).await?))
}

/// Cancel a task.
///
/// Works while `task_info.can_cancel` is true (pending or processing); the task
/// becomes `failed` with `request_cancelled` and its credits are released in full.
#[utoipa::path(
    post, path = "/v1/tasks/{task_id}/cancel", operation_id = "v1.tasks.cancel", tag = "tasks",
    params(("task_id" = String, Path, description = "The task id.")),
    responses(
        (status = 200, description = "The cancelled task.", body = TaskObject),
        (status = 400, description = "Malformed id, or the task already ended.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 404, description = "No such task for this account.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(task_id): Path<String>,
) -> Result<Json<TaskObject>, ApiError> {
    Ok(Json(tasks::cancel(&state, &caller, &task_id).await?))
}
