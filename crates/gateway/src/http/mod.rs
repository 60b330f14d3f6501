//! The HTTP surface: one module per feature, each with `router()`; this root only
//! merges them and adds the cross-cutting layers (body limit, metrics, fallbacks).

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
pub mod openapi;
pub mod playground;
pub mod providers;
mod range;
pub mod request_id;
pub mod tasks;
pub mod usage;
pub mod webhooks;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
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
        // A route layer sees the matched route pattern; the fallbacks stay uncounted.
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Outermost: the fallbacks' errors carry the request id too.
        .layer(middleware::from_fn(request_id::layer))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "No such route.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "This method is not allowed on this route.")
}

/// Counts every request by its route pattern (never the raw path: ids would
/// explode the label set) and status, with latency.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    state.metrics.record_request(&method, &route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}
