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

/// Prometheus metrics: requests and their latency by route, tasks by model,
/// provider and final status with their duration, upstream submit and poll
/// latency, callbacks, the queue, open and held tasks, provider health.
#[utoipa::path(get, path = "/metrics", operation_id = "ops.metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let (pending, processing) = state.store.count_open_tasks_by_status().await.unwrap_or((-1, -1));
    let open = if pending < 0 { -1.0 } else { (pending + processing) as f64 };
    let held = state.poller.held_count() as f64;
    let providers: Vec<(String, bool)> = state
        .routing
        .health()
        .into_iter()
        .map(|h| (h.provider.clone(), h.state != crate::routing::BreakerState::Open))
        .collect();
    state.metrics.set_gauges(open, pending as f64, held, &providers);
    let c = &state.connections;
    let load = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    state.metrics.set_connections(
        c.open.load(std::sync::atomic::Ordering::Relaxed),
        c.in_flight.load(std::sync::atomic::Ordering::Relaxed),
        load(&c.accepted),
        load(&c.evicted),
        load(&c.timed_out),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
