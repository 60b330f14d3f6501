//! `GET /admin/providers/check`: each configured provider's credentials, checked
//! with the cheapest authenticated call its API documents that creates nothing
//! billable (Kling's account costs, fal's billing, Replicate's account,
//! EvoLink's credits). Per provider: ok, bad credentials, unreachable or unknown,
//! with the upstream's own message; a secret never appears in the answer.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use vidgate_api::error::ErrorBody;

use crate::http::auth::Admin;
use crate::providers::CheckStatus;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/providers/check", get(check_providers))
}

/// One provider's credential check.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderCheckView {
    /// The provider's name in the configuration.
    pub provider: String,
    /// `local`, `kling`, `fal`, `replicate` or `evolink`.
    pub kind: String,
    pub status: CheckStatus,
    /// What the upstream said (or why it could not be asked).
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderChecks {
    pub data: Vec<ProviderCheckView>,
}

/// Checks every configured provider's credentials now (each call bounded by its
/// provider's timeout).
#[utoipa::path(get, path = "/admin/providers/check", operation_id = "admin.providers.check", tag = "admin",
    responses((status = 200, body = ProviderChecks), (status = 401, body = ErrorBody)),
    security(("admin" = [])))]
pub async fn check_providers(State(state): State<AppState>, _admin: Admin) -> Json<ProviderChecks> {
    let data = state
        .routing
        .check_providers()
        .await
        .into_iter()
        .map(|c| ProviderCheckView {
            provider: c.provider,
            kind: c.kind.to_owned(),
            status: c.check.status,
            message: c.check.message,
        })
        .collect();
    Json(ProviderChecks { data })
}
