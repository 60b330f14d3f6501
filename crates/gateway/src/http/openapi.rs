//! `GET /openapi.json`: OpenAPI 3.1 generated from the handlers' `///` text and the
//! wire types; every route and its errors are listed.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http;
use crate::state::AppState;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An API key.")).build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("The admin key.")).build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "vidgate", description = "A self-hosted, EvoLink-compatible gateway for AI video generation."),
    paths(
        http::tasks::create_task, http::tasks::get_task, http::tasks::list_tasks, http::tasks::cancel_task,
        http::files::upload_file, http::files::download_file,
        http::account::get_credits, http::account::list_models,
        http::admin::create_account, http::admin::list_accounts, http::admin::get_account,
        http::admin::create_key, http::admin::list_keys, http::admin::revoke_key, http::admin::update_key,
        http::admin::grant_credits, http::admin::provider_health, http::admin::task_attempts,
        http::admin::margin_report, http::providers::check_providers,
        http::health::healthz, http::health::readyz, http::health::metrics,
        http::playground::page, openapi_json,
        http::webhooks::get_secret, http::webhooks::rotate_secret, http::webhooks::list_callbacks,
        http::webhooks::retry_callback,
    ),
    modifiers(&Security),
    tags(
        (name = "tasks", description = "Video generation tasks."),
        (name = "files", description = "Uploads and signed result links."),
        (name = "account", description = "Credits and the model catalog."),
        (name = "webhooks", description = "Signed callbacks: secrets and delivery records."),
        (name = "admin", description = "Accounts, keys and credits (admin key)."),
        (name = "ops", description = "Health, metrics, documents."),
    )
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "ops.openapi", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 JSON.")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
