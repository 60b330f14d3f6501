//! `GET /`: the playground page, embedded in the binary (no CDN, no internet); its
//! script and styles are files under `/assets`, so it runs under the same strict
//! Content-Security-Policy as the console.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const PAGE: &str = include_str!("../../assets/playground.html");

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(page))
}

/// The playground: try a model in the browser.
#[utoipa::path(get, path = "/", operation_id = "playground", tag = "ops",
    responses((status = 200, description = "The playground page.", content_type = "text/html")))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, crate::http::console::CSP),
        ],
        PAGE,
    )
}
