//! `/healthz` (the process answers), `/readyz` (the database answers) and
//! `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "health.live", tag = "ops",
    responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", operation_id = "health.ready", tag = "ops",
    responses((status = 200, description = "Ready."), (status = 503, description = "The database does not answer.")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.store.ping().await {
        (StatusCode::OK, Json(serde_json::json!({ "status": "ready" })))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({ "status": "database unavailable" })))
    }
}

/// Prometheus metrics: requests by route and status, request latency, tasks by
/// model and final status, credits charged, open tasks, upstream tasks held.
#[utoipa::path(get, path = "/metrics", operation_id = "ops.metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let open = state.store.count_open_tasks().await.map(|n| n as f64).unwrap_or(-1.0);
    let held = state.poller.held_count() as f64;
    let mut body = state.metrics.render(&[
        ("vidgate_tasks_open", "Tasks pending or processing.", open),
        ("vidgate_upstream_tasks_held", "Upstream tasks this process holds and polls.", held),
    ]);
    body.push_str("# HELP vidgate_provider_up 1 when the provider's circuit is closed or half-open, 0 when open.\n");
    body.push_str("# TYPE vidgate_provider_up gauge\n");
    for h in state.routing.health() {
        let up = if h.state == crate::routing::BreakerState::Open { 0 } else { 1 };
        body.push_str(&format!("vidgate_provider_up{{provider=\"{}\"}} {up}\n", h.provider));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
