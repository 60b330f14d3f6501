//! `GET /openapi.json`: OpenAPI 3.1 generated from the handlers' `///` text and the
//! wire types, with the create body taken from the loaded model catalog (a
//! `oneOf` of every model's schema, keyed on `model`), so the document and the
//! validation never disagree. Built once at start.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use vidgate_api::catalog::Catalog;

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
        http::admin::disable_account, http::admin::enable_account, http::admin::list_tasks,
        http::admin::task_callbacks, http::admin::audit_log,
        http::usage::my_usage, http::usage::my_ledger, http::usage::admin_usage, http::usage::admin_ledger,
        http::keys::list_keys, http::keys::create_key, http::keys::revoke_key,
        http::codes::create_codes, http::codes::list_codes, http::codes::redeem, http::codes::sign_up,
        http::console::console_page, http::console::asset, http::console::favicon,
        http::health::healthz, http::health::readyz, http::health::metrics,
        http::playground::page, openapi_json,
        http::webhooks::get_secret, http::webhooks::rotate_secret, http::webhooks::list_callbacks,
        http::webhooks::retry_callback,
    ),
    modifiers(&Security),
    tags(
        (name = "tasks", description = "Video generation tasks."),
        (name = "files", description = "Uploads and signed result links."),
        (name = "account", description = "Credits, usage, the ledger, top-up codes, sign-up and the model catalog."),
        (name = "keys", description = "Self-service API keys (keys marked manage_keys)."),
        (name = "webhooks", description = "Signed callbacks: secrets and delivery records."),
        (name = "admin", description = "Accounts, keys, limits, credits, codes, tasks, reports and the audit log (admin key)."),
        (name = "ops", description = "Health, metrics, documents."),
    )
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// The document for `catalog`: the generated one with each model's create
/// schema added to the components and the create body set to their `oneOf`.
pub fn document(catalog: &Catalog) -> anyhow::Result<Bytes> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    let schemas = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow::anyhow!("the OpenAPI document has no components"))?;
    for (name, schema) in catalog.component_schemas() {
        schemas.insert(name, schema);
    }
    let body = doc
        .pointer_mut("/paths/~1v1~1videos~1generations/post/requestBody/content/application~1json")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow::anyhow!("the OpenAPI document has no create body"))?;
    body.insert("schema".to_owned(), catalog.create_body_schema());
    constrain_ids(&mut doc);
    Ok(Bytes::from(serde_json::to_vec(&doc)?))
}

/// The shape of each kind of id a path takes, from the one place each is
/// minted (`ids.rs`), so clients and fuzzers send well-formed ones.
const ID_PATTERNS: &[(&str, &str)] = &[
    ("task_id", "^task-unified-[0-9]{1,12}-[a-z0-9]{8}$"),
    ("account_id", "^acct-[a-z0-9]{16}$"),
    ("key_id", "^key-[a-z0-9]{16}$"),
    ("delivery_id", "^msg_[A-Za-z0-9]{24}$"),
    ("file_id", "^[A-Za-z0-9_-]{1,64}$"),
];

fn constrain_ids(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for item in paths.values_mut() {
        let Some(ops) = item.as_object_mut() else { continue };
        for op in ops.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else { continue };
            for p in params {
                let name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                if p.get("in").and_then(Value::as_str) != Some("path") {
                    continue;
                }
                if let Some((_, pattern)) = ID_PATTERNS.iter().find(|(n, _)| *n == name)
                    && let Some(schema) = p.get_mut("schema").and_then(Value::as_object_mut)
                {
                    schema.insert("pattern".to_owned(), Value::String((*pattern).to_owned()));
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "ops.openapi", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 JSON.", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi.clone())
}
