//! The HTTP surface: one module per feature, each with `router()`; this root only
//! merges them and adds the cross-cutting layer (`observe`: ids, metrics, body limit) and the fallbacks.

pub mod account;
pub mod admin;
pub mod auth;
pub mod codes;
pub mod console;
pub mod error;
pub mod extract;
pub mod files;
pub mod health;
pub mod keys;
mod observe;
pub mod openapi;
pub mod playground;
pub mod providers;
mod range;
pub mod request_id;
pub mod tasks;
pub mod usage;
pub mod webhooks;

use axum::Router;
use vidgate_api::error::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .merge(tasks::router())
        .merge(files::router())
        .merge(account::router())
        .merge(admin::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(playground::router())
        .merge(providers::router())
        .merge(webhooks::router())
        .merge(keys::router())
        .merge(usage::router())
        .merge(codes::router())
        .merge(console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Around every route and the fallbacks (whose errors carry the request
        // id too): ids, the request span, metrics by route pattern, and the
        // body limit.
        .layer(observe::Observe::new(state.clone(), limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "No such route.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "This method is not allowed on this route.")
}
