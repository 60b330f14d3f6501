//! The operator console at `/admin` and the static files of the browser pages
//! (`/assets/...`, `/favicon.ico`), all embedded in the binary: nothing comes
//! from the internet. Pages are served with a Content-Security-Policy that
//! allows only this origin and no inline script or style, so text a client or
//! an upstream supplied can never run as code even if it reached the page.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

const CONSOLE_HTML: &str = include_str!("../../assets/console.html");

/// The embedded files under `/assets/`: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.js", "text/javascript; charset=utf-8", include_str!("../../assets/console.js")),
    ("console.css", "text/css; charset=utf-8", include_str!("../../assets/console.css")),
    ("playground.js", "text/javascript; charset=utf-8", include_str!("../../assets/playground.js")),
    ("playground.css", "text/css; charset=utf-8", include_str!("../../assets/playground.css")),
    ("favicon.svg", "image/svg+xml", include_str!("../../assets/favicon.svg")),
];

/// Only this origin, no inline script or style, no plugins, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
    media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(console_page))
        .route("/admin/", get(console_page))
        .route("/assets/{name}", get(asset))
        .route("/favicon.ico", get(favicon))
}

fn with_headers(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    resp
}

/// The operator console: accounts, keys and limits, tasks, providers, the
/// margin over time, top-up codes and the audit log. Sign in with the admin
/// key (kept in this browser tab's session storage only); pages are hash
/// routes such as `/admin#/accounts`.
#[utoipa::path(get, path = "/admin", operation_id = "admin.console", tag = "ops",
    responses((status = 200, description = "The console page.", content_type = "text/html")))]
pub async fn console_page() -> Response {
    with_headers("text/html; charset=utf-8", CONSOLE_HTML)
}

/// A file of the browser pages (the console's and the playground's script and
/// styles, the icon), embedded in the binary.
#[utoipa::path(get, path = "/assets/{name}", operation_id = "ops.asset", tag = "ops",
    params(("name" = String, Path, description = "console.js, console.css, playground.js, playground.css or favicon.svg")),
    responses(
        (status = 200, description = "The file.", content(
            (String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"))),
        (status = 404, description = "No such file.", body = vidgate_api::error::ErrorBody),
    ))]
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ty, body)| with_headers(ty, body))
        .ok_or_else(|| ApiError::new(vidgate_api::error::ErrorCode::NotFound, "No such file."))
}

/// The icon browsers ask for on their own (an SVG).
#[utoipa::path(get, path = "/favicon.ico", operation_id = "ops.favicon", tag = "ops",
    responses((status = 200, description = "The icon.", content_type = "image/svg+xml")))]
pub async fn favicon() -> Response {
    with_headers("image/svg+xml", include_str!("../../assets/favicon.svg"))
}
