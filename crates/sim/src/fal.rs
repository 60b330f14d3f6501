//! fal as its docs and SDKs describe it. Sources: `fal-ai/fal-js` `libs/client/src/{queue,storage,
//! response,retry}.ts` and `types/common.ts`; `fal-ai/fal` `projects/fal/src/fal/apps.py` and
//! `projects/fal_client/src/fal_client/client.py` (+ its unit tests); fal's docs pages "Model
//! Errors" (docs.fal.ai/errors, mirrored in `henjicc/Henji-AI` `docs/api/fal/base/errors.md`),
//! "Request Error Types" (docs.fal.ai/documentation/model-apis/request-errors), "Queue",
//! "Webhooks", the Kling model pages (`fal-ai/kling-video/v3/...`, `.../o3/...`, `.../o1/...`,
//! including the O3/O1 `video-to-video/{edit,reference}` and v3 `motion-control` endpoints)
//! and the platform API "Account Billing" (`GET https://api.fal.ai/v1/account/billing`).
//!
//! Guarantees: every model id is its own endpoint (`fal-ai/kling-video/v3/standard/...` and
//! `.../v3/pro/...` are different models, and the sim counts each); the queue answers
//! `{request_id, status_url, response_url, cancel_url}` with the status, result and cancel URLs
//! under `{owner}/{alias}` as fal-js builds them; inputs are validated when the request is
//! processed, not at submit (a missing field comes back as a 422 on the result, as fal's webhook
//! docs show); failures come in fal's two documented shapes, model errors
//! `{"detail": [{loc, msg, type, url, ctx, input}]}` with `X-Fal-Retryable` and request errors
//! `{"detail": "<text>", "error_type"}` with `X-Fal-Error-Type`.
//!
//! Hosts: fal serves the queue at `queue.fal.run`, storage at `rest.fal.ai`, the platform API at
//! `api.fal.ai` and files on its CDN; the sim serves all under `{base}/fal`:
//! `POST /fal/{model_id}`, `/fal/storage/upload/initiate`, `/fal/v1/account/billing`,
//! `/fal/cdn/{token}/{name}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use crate::{
    Call, Fate, Fault, NewTask, Phase, Protocol, Refusal, Shared, Upload, View, accept, admit, base, fail_message,
    lock, malformed, observe, parse_json, record_submit, result_url, status,
};

/// The failure a server-side failure ends with unless [`crate::SimConfig::fal_failure`] says
/// otherwise: fal's documented 500 model error.
pub const DEFAULT_FAILURE: &str = "internal_server_error";

/// One documented fal error type.
#[derive(Debug, Clone, Copy)]
pub struct ErrorType {
    pub name: &'static str,
    /// A request error (`{"detail": text, "error_type"}` + `X-Fal-Error-Type`) rather than a
    /// model error (`{"detail": [..]}` + `X-Fal-Retryable`).
    pub request_error: bool,
    pub status: u16,
    /// The `X-Fal-Retryable` header fal documents for the type (`None`: not sent).
    pub retryable: Option<bool>,
    pub msg: &'static str,
    /// Where the error points: `None` is `["body"]` (the whole input is echoed), else the field.
    pub field: Option<Field>,
    /// The documented `ctx`, as JSON text.
    pub ctx: Option<&'static str>,
}

/// The input field a model error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Prompt,
    /// The model's start image (`image_url` on O3, `start_image_url` elsewhere).
    StartImage,
}

const fn model(name: &'static str, status: u16, retryable: Option<bool>, msg: &'static str) -> ErrorType {
    ErrorType { name, request_error: false, status, retryable, msg, field: None, ctx: None }
}

const fn request(name: &'static str, status: u16, msg: &'static str) -> ErrorType {
    ErrorType { name, request_error: true, status, retryable: None, msg, field: None, ctx: None }
}

/// fal's error catalogue. Model errors from the "Model Errors" page (status, retryable, msg and
/// ctx as documented; "Can be true or false" is sent as `true`, overridable with
/// [`crate::SimConfig::fal_retryable`]); `no_media_generated` is not on that page but observed as
/// a 422 model error in public clients (no `X-Fal-Retryable` documented). Request errors from
/// the "Request Error Types" table (typical status; `detail` is the table's description, except
/// `request_timeout` whose example says "Request timed out").
pub const ERROR_TYPES: &[ErrorType] = &[
    model("internal_server_error", 500, Some(true), "Internal server error"),
    model("generation_timeout", 504, Some(true), "Generation timeout"),
    model("downstream_service_error", 400, Some(true), "Downstream service error"),
    model("downstream_service_unavailable", 500, Some(true), "Downstream service unavailable"),
    ErrorType {
        field: Some(Field::Prompt),
        ..model(
            "content_policy_violation",
            422,
            Some(false),
            "The content could not be processed because it contained material flagged by a content checker.",
        )
    },
    model("no_media_generated", 422, None, "No media generated"),
    ErrorType {
        field: Some(Field::StartImage),
        ctx: Some(r#"{"min_height": 300, "min_width": 300}"#),
        ..model("image_too_small", 422, Some(false), "Image too small")
    },
    ErrorType {
        field: Some(Field::StartImage),
        ctx: Some(r#"{"max_height": 4096, "max_width": 4096}"#),
        ..model("image_too_large", 422, Some(false), "Image too large")
    },
    ErrorType { field: Some(Field::StartImage), ..model("image_load_error", 422, Some(false), "Image load error") },
    ErrorType {
        field: Some(Field::StartImage),
        ..model("file_download_error", 422, Some(false), "File download error")
    },
    ErrorType {
        field: Some(Field::StartImage),
        ..model("face_detection_error", 422, Some(false), "Could not detect face in the image")
    },
    ErrorType {
        field: Some(Field::StartImage),
        ctx: Some(r#"{"max_size": 10485760}"#),
        ..model("file_too_large", 422, Some(false), "File too large")
    },
    model("feature_not_supported", 422, Some(false), "Feature not supported"),
    request("request_timeout", 504, "Request timed out"),
    request("startup_timeout", 504, "The runner did not start within the allowed time."),
    request("runner_scheduling_failure", 503, "No runner could be allocated to handle the request."),
    request("runner_connection_timeout", 503, "The connection to the runner timed out."),
    request("runner_disconnected", 503, "The runner disconnected unexpectedly during processing."),
    request("runner_connection_refused", 503, "The runner refused the connection."),
    request("runner_connection_error", 503, "A general connection error occurred with the runner."),
    request("runner_incomplete_response", 502, "The runner sent an incomplete response payload."),
    request("runner_server_error", 500, "The runner encountered an internal server error."),
    request("client_disconnected", 499, "The client closed the connection before the response was sent."),
    request("client_cancelled", 499, "The request was cancelled by the client."),
    request("bad_request", 400, "The request was malformed (e.g., invalid timeout header)."),
    request("internal_error", 500, "An unexpected internal error occurred."),
];

/// A documented error type by name.
pub fn error_type(name: &str) -> Option<ErrorType> {
    ERROR_TYPES.iter().copied().find(|e| e.name == name)
}

/// fal's answer to a wrong or missing key (fal-ai/fal#1068, fal-ai/fal-swift#8).
pub const UNAUTHORIZED: &str = "No user found for Key ID and Secret";

/// fal's answer for an account whose balance ran out (fal-ai/fal#1112, #1147).
pub const LOCKED: &str = "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.";

fn detail(http: u16, text: &str) -> Response {
    (status(http), axum::Json(json!({"detail": text}))).into_response()
}

/// A request error: `{"detail": text, "error_type"}` and the same type in `X-Fal-Error-Type`.
fn request_error(t: &ErrorType) -> Response {
    let body = json!({"detail": t.msg, "error_type": t.name});
    (status(t.status), [("x-fal-error-type", t.name)], axum::Json(body)).into_response()
}

/// A model error: `{"detail": [items]}`, with `X-Fal-Retryable` when there is one.
fn model_error(http: u16, items: Value, retryable: Option<bool>) -> Response {
    let body = axum::Json(json!({"detail": items}));
    match retryable {
        Some(r) => (status(http), [("x-fal-retryable", if r { "true" } else { "false" })], body).into_response(),
        None => (status(http), body).into_response(),
    }
}

/// The start image field of a model: O3 and v3 Turbo take `image_url`, the v3, O1 and older
/// endpoints `start_image_url` (fal's O3 standard i2v page: "This endpoint uses `image_url` (not
/// `start_image_url`)"; the v3 Turbo standard i2v llms.txt: "`image_url` (string, required):
/// First-frame reference image").
fn start_image_key(model: &str) -> &'static str {
    if model.contains("/o3/") || model.contains("/turbo/") { "image_url" } else { "start_image_url" }
}

/// One model error item, echoing the input as fal's toolkit does: the field's value when the
/// error points at a field, the whole input when it points at the body.
fn item(t: &ErrorType, msg: &str, model: &str, input: &Value) -> Value {
    let (loc, echoed) = match t.field {
        Some(Field::Prompt) => (json!(["body", "prompt"]), input.get("prompt").cloned().unwrap_or(Value::Null)),
        Some(Field::StartImage) => {
            let key = start_image_key(model);
            (json!(["body", key]), input.get(key).cloned().unwrap_or(Value::Null))
        }
        None => (json!(["body"]), input.clone()),
    };
    let mut item = json!({
        "loc": loc,
        "msg": msg,
        "type": t.name,
        "url": format!("https://docs.fal.ai/errors/#{}", t.name),
        "input": echoed,
    });
    if let Some(ctx) = t.ctx.and_then(|c| serde_json::from_str::<Value>(c).ok()) {
        item["ctx"] = ctx;
    }
    item
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Unauthorized => detail(401, UNAUTHORIZED),
        Refusal::Fault(Fault::Malformed | Fault::Hang) => malformed(),
        Refusal::Down(st) => status_error(st),
        Refusal::Fault(f) => status_error(f.http_status()),
    }
}

/// An answer with HTTP status `st` in the shape fal uses for it: request errors for the statuses
/// the request error table covers, the locked-account text for 403. fal documents no body for
/// 404, 422-at-submit or 429: the sim sends `{"detail": text}` like fal's other plain errors.
fn status_error(st: u16) -> Response {
    let by_status = |name| error_type(name).map(|t| request_error(&t));
    let typed = match st {
        400 => by_status("bad_request"),
        499 => by_status("client_disconnected"),
        500 => by_status("internal_error"),
        502 => by_status("runner_incomplete_response"),
        503 => by_status("runner_scheduling_failure"),
        504 => by_status("request_timeout"),
        _ => None,
    };
    typed.unwrap_or_else(|| match st {
        401 => detail(401, UNAUTHORIZED),
        403 => detail(403, LOCKED),
        404 => detail(404, "Not Found"),
        429 => detail(429, "Too many requests"),
        other => detail(other, status(other).canonical_reason().unwrap_or("Error")),
    })
}

fn authorized(s: &Shared, h: &HeaderMap) -> bool {
    let key = lock(s).config.fal_key.clone();
    !key.is_empty() && h.get("authorization").and_then(|v| v.to_str().ok()) == Some(format!("Key {key}").as_str())
}

async fn gate(s: &Shared, h: &HeaderMap, call: Call) -> Result<(), Response> {
    let ok = authorized(s, h);
    admit(s, Protocol::Fal, call, ok).await.map_err(refusal)
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/storage/upload/initiate", post(initiate))
        .route("/storage/upload/{token}", put(upload))
        .route("/cdn/{token}/{name}", get(cdn))
        .route("/v1/account/billing", get(billing))
        .route("/{*path}", post(submit).get(fetch).put(cancel))
}

/// The app part of a model id that status, result and cancel URLs live under: `{owner}/{alias}`
/// (with the `workflows`/`comfy` namespace in front), never the full multi-segment id
/// (fal-js `queue.ts` `parseEndpointId`).
fn app(model: &str) -> String {
    let parts: Vec<&str> = model.split('/').collect();
    let n = if matches!(parts.first(), Some(&"workflows" | &"comfy")) { 3 } else { 2 };
    parts.iter().take(n).copied().collect::<Vec<_>>().join("/")
}

/// `(response_url, status_url, cancel_url)` of a request.
fn urls(base: &str, model: &str, id: &str) -> (String, String, String) {
    let root = format!("{base}/fal/{}/requests/{id}", app(model));
    (root.clone(), format!("{root}/status"), format!("{root}/cancel"))
}

/// The model families whose inputs the sim checks, from fal's Kling pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `fal-ai/kling-video/v3/...`: `prompt` xor `multi_prompt`; i2v needs `start_image_url`.
    V3,
    /// `fal-ai/kling-video/o3/...`: `prompt` xor `multi_prompt`; i2v needs `image_url`.
    O3,
    /// `fal-ai/kling-video/o1/...`: i2v needs `prompt` and `start_image_url`, 3..10 s.
    O1,
    /// Anything else: taken as it comes.
    Other,
}

fn family(model: &str) -> Family {
    if !model.starts_with("fal-ai/kling-video/") {
        Family::Other
    } else if model.contains("/v3/") {
        Family::V3
    } else if model.contains("/o3/") {
        Family::O3
    } else if model.contains("/o1/") {
        Family::O1
    } else {
        Family::Other
    }
}

fn validation(loc: &str, msg: &str, kind: &str, input: Value, ctx: Option<Value>) -> Value {
    let mut v = json!({
        "loc": ["body", loc],
        "msg": msg,
        "type": kind,
        "url": format!("https://docs.fal.ai/errors/#{kind}"),
        "input": input,
    });
    if let Some(ctx) = ctx {
        v["ctx"] = ctx;
    }
    v
}

/// The input checks a fal model runs when it processes the request; `Some(detail)` is the 422
/// `detail` array it answers. Missing fields follow pydantic (`missing`, "Field required", the
/// input echoed); wrong enum values fal's documented `one_of` with `ctx.expected`.
fn validate(model: &str, body: &Value, accept_data_uris: bool) -> Option<Value> {
    let f = family(model);
    let mut errors = Vec::new();
    let nonempty = |k: &str| body.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let image_to_video = model.ends_with("/image-to-video");
    if image_to_video && f != Family::Other {
        let key = start_image_key(model);
        if !nonempty(key) {
            errors.push(validation(key, "Field required", "missing", body.clone(), None));
        }
    }
    let generation = ["/text-to-video", "/image-to-video", "/reference-to-video"].iter().any(|e| model.ends_with(e));
    // v3 Turbo image to video: "Optional text prompt ... Mutually exclusive with `multi_prompt`".
    let optional_prompt = model.contains("/turbo/") && image_to_video;
    if matches!(f, Family::V3 | Family::O3) && generation {
        let multi = body.get("multi_prompt").and_then(Value::as_array).is_some_and(|m| !m.is_empty());
        let prompt = nonempty("prompt");
        // Both given, or neither when one is required.
        if (prompt && multi) || (!prompt && !multi && !optional_prompt) {
            errors.push(validation(
                "prompt",
                "Either prompt or multi_prompt must be provided, but not both.",
                "value_error",
                body.get("prompt").cloned().unwrap_or(Value::Null),
                None,
            ));
        }
    }
    if f == Family::O1 && image_to_video && !nonempty("prompt") {
        errors.push(validation("prompt", "Field required", "missing", body.clone(), None));
    }
    // O3 and O1 video to video (edit, reference): `prompt` and `video_url` required
    // (fal's "Kling O3 Edit Video", "Kling O3 Reference Video to Video" and "Kling O1
    // Video To Video" pages); v3 motion control: `image_url`, `video_url` and
    // `character_orientation` (`image` | `video`) required ("Kling Video v3 Motion
    // Control", as v2.6's page names the same fields).
    let video_to_video = ["/video-to-video/edit", "/video-to-video/reference"].iter().any(|e| model.ends_with(e));
    let motion_control = model.ends_with("/motion-control");
    let required: &[&str] = match f {
        Family::O3 | Family::O1 if video_to_video => &["prompt", "video_url"],
        Family::V3 if motion_control => &["image_url", "video_url", "character_orientation"],
        _ => &[],
    };
    for key in required {
        if !nonempty(key) {
            errors.push(validation(key, "Field required", "missing", body.clone(), None));
        }
    }
    if f == Family::V3
        && motion_control
        && let Some(o) = body.get("character_orientation").filter(|o| !o.is_null())
        && !o.as_str().is_some_and(|o| ["image", "video"].contains(&o))
    {
        let ctx = json!({"expected": ["image", "video"]});
        let msg = "Input should be 'image' or 'video'";
        errors.push(validation("character_orientation", msg, "one_of", o.clone(), Some(ctx)));
    }
    for key in ["keep_audio", "keep_original_sound"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null() && !v.is_boolean()) {
            errors.push(validation(key, "Input should be a valid boolean", "bool_type", v.clone(), None));
        }
    }
    if let Some(urls) = body.get("image_urls").filter(|u| !u.is_null()) {
        let strings = urls.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !strings {
            errors.push(validation("image_urls", "Input should be a valid list", "list_type", urls.clone(), None));
        }
    }
    if f != Family::Other {
        // `duration` is a string enum: "3".."15" ("3".."10" on O1); a number is no member of it.
        let top = if f == Family::O1 { 10 } else { 15 };
        let expected: Vec<String> = (3..=top).map(|d: u32| d.to_string()).collect();
        if let Some(d) = body.get("duration").filter(|d| !d.is_null())
            && !d.as_str().is_some_and(|d| expected.iter().any(|e| e == d))
        {
            let ctx = json!({"expected": expected});
            let quoted: Vec<String> = expected.iter().map(|e| format!("'{e}'")).collect();
            let msg = format!("Input should be {}", quoted.join(", "));
            errors.push(validation("duration", &msg, "one_of", d.clone(), Some(ctx)));
        }
        if let Some(a) = body.get("aspect_ratio").filter(|a| !a.is_null()) {
            let expected = ["16:9", "9:16", "1:1"];
            if !a.as_str().is_some_and(|a| expected.contains(&a)) {
                let ctx = json!({"expected": expected});
                errors.push(validation(
                    "aspect_ratio",
                    "Input should be '16:9', '9:16' or '1:1'",
                    "one_of",
                    a.clone(),
                    Some(ctx),
                ));
            }
        }
        if body.get("generate_audio").is_some_and(|g| !g.is_null() && !g.is_boolean()) {
            let input = body.get("generate_audio").cloned().unwrap_or(Value::Null);
            errors.push(validation("generate_audio", "Input should be a valid boolean", "bool_type", input, None));
        }
    }
    if !accept_data_uris {
        let keys = ["start_image_url", "end_image_url", "image_url", "video_url"];
        let listed = body.get("image_urls").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str);
        let uris = keys.iter().filter_map(|k| body.get(*k).and_then(Value::as_str).map(|u| (*k, u)));
        for (key, uri) in uris.chain(listed.map(|u| ("image_urls", u))) {
            if uri.starts_with("data:") {
                errors.push(validation(key, "File download error", "file_download_error", json!(uri), None));
            }
        }
    }
    (!errors.is_empty()).then_some(Value::Array(errors))
}

/// The requested length in seconds (fal's `duration` is a string, default "5").
fn duration(body: &Value) -> u32 {
    body.get("duration")
        .and_then(|d| {
            d.as_str().and_then(|d| d.parse().ok()).or_else(|| d.as_u64().and_then(|d| u32::try_from(d).ok()))
        })
        .unwrap_or(5)
}

/// `POST /{model_id}`: queues the request and answers fal-js's `InQueueQueueStatus`
/// (`status: "IN_QUEUE"`, `request_id`, `response_url`, `status_url`, `cancel_url`,
/// `queue_position`).
async fn submit(State(s): State<Shared>, Path(path): Path<String>, h: HeaderMap, body: Bytes) -> Response {
    let model = path.trim_matches('/').to_owned();
    let parsed = parse_json(&body);
    record_submit(&s, "fal", Protocol::Fal, &model, parsed.as_ref().unwrap_or(&Value::Null));
    if let Err(r) = gate(&s, &h, Call::Submit).await {
        return r;
    }
    if model.split('/').count() < 2 {
        return detail(404, "Not Found");
    }
    let Some(body) = parsed.filter(Value::is_object) else {
        let item = validation("body", "Invalid JSON", "json_invalid", Value::Null, None);
        return model_error(422, json!([item]), Some(false));
    };
    let accept_data_uris = lock(&s).config.fal_accept_data_uris;
    let invalid = validate(&model, &body, accept_data_uris);
    let v = accept(
        &s,
        NewTask {
            protocol: Protocol::Fal,
            resource: "queue",
            model: model.clone(),
            duration: duration(&body),
            external_id: None,
            forced: invalid.map(|d| Fate::Invalid(Arc::new(d))),
            echo: Some(body),
            echo_always: false,
        },
    );
    let (response_url, status_url, cancel_url) = urls(&base(&s), &model, &v.id);
    axum::Json(json!({
        "status": "IN_QUEUE",
        "request_id": v.id,
        "response_url": response_url,
        "status_url": status_url,
        "cancel_url": cancel_url,
        "queue_position": 0,
    }))
    .into_response()
}

/// `.../requests/{id}` and what follows it (`status`, `cancel`, or nothing for the result).
fn request_path(path: &str) -> Option<(&str, Option<&str>)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pos = parts.iter().position(|p| *p == "requests")?;
    let id = *parts.get(pos + 1)?;
    Some((id, parts.get(pos + 2).copied()))
}

/// The request error a finished request carries on its status, if it ended in one.
fn ended_in_request_error(s: &Shared, v: &View) -> Option<ErrorType> {
    if v.cancelled {
        return error_type("client_cancelled");
    }
    match v.fate {
        Fate::ServerFail => {
            let name = lock(s).config.fal_failure.clone();
            error_type(&name).filter(|t| t.request_error)
        }
        _ => None,
    }
}

async fn fetch(State(s): State<Shared>, Path(path): Path<String>, h: HeaderMap) -> Response {
    match request_path(&path) {
        Some((id, Some("status"))) => request_status(&s, &h, id).await,
        Some((id, None)) => request_result(&s, &h, id).await,
        _ => detail(404, "Not Found"),
    }
}

/// `GET .../requests/{id}/status`: `IN_QUEUE` (with `queue_position`), `IN_PROGRESS` (with
/// `logs`), `COMPLETED` (with `logs`, `metrics`, and `error`/`error_type` when it failed with a
/// request error: fal_client's `Completed`). HTTP 202 until completed, 200 after: fal's own
/// `RequestHandle.status` (`fal/apps.py`) tells the two apart by that.
async fn request_status(s: &Shared, h: &HeaderMap, id: &str) -> Response {
    if let Err(r) = gate(s, h, Call::Poll).await {
        return r;
    }
    let Some(v) = observe(s, Protocol::Fal, None, id, true) else { return detail(404, "Request not found") };
    let (response_url, status_url, cancel_url) = urls(&base(s), &v.model, &v.id);
    let mut body = json!({
        "request_id": v.id,
        "response_url": response_url,
        "status_url": status_url,
        "cancel_url": cancel_url,
    });
    let code = match v.phase {
        Phase::Queued => {
            body["status"] = json!("IN_QUEUE");
            body["queue_position"] = json!(0);
            202
        }
        Phase::Running => {
            body["status"] = json!("IN_PROGRESS");
            body["logs"] = json!([]);
            202
        }
        Phase::Finished => {
            body["status"] = json!("COMPLETED");
            body["logs"] = json!([]);
            body["metrics"] = json!({"inference_time": f64::from(v.duration) * 10.0});
            if let Some(t) = ended_in_request_error(s, &v) {
                body["error"] = json!(t.msg);
                body["error_type"] = json!(t.name);
            }
            200
        }
    };
    (status(code), axum::Json(body)).into_response()
}

/// `GET .../requests/{id}`: the model's output (`{"video": File}`, the Kling pages' output
/// schema), or the error it ended with.
async fn request_result(s: &Shared, h: &HeaderMap, id: &str) -> Response {
    if let Err(r) = gate(s, h, Call::Other).await {
        return r;
    }
    let Some(v) = observe(s, Protocol::Fal, None, id, false) else { return detail(404, "Request not found") };
    if v.phase != Phase::Finished {
        // Undocumented; the sim answers like fal's other plain errors.
        return detail(400, "Request is still in progress");
    }
    if let Some(t) = ended_in_request_error(s, &v) {
        return request_error(&t);
    }
    let input = v.echo.as_deref().cloned().unwrap_or(Value::Null);
    let retryable_override = lock(s).config.fal_retryable;
    let typed = |t: ErrorType, msg: &str| {
        model_error(t.status, json!([item(&t, msg, &v.model, &input)]), retryable_override.or(t.retryable))
    };
    match &v.fate {
        Fate::Succeed | Fate::BadResult | Fate::Stuck => {
            let size = lock(s).config.video.len();
            axum::Json(json!({"video": {
                "url": result_url(&base(s), &v),
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": size,
            }}))
            .into_response()
        }
        // COMPLETED, but the result is not the JSON the docs describe.
        Fate::BadBody => ([("content-type", "text/html")], "<html><body>502 Bad Gateway</body></html>").into_response(),
        Fate::Refuse => match error_type("content_policy_violation") {
            Some(t) => typed(t, t.msg),
            None => detail(500, "content_policy_violation"),
        },
        Fate::ServerFail => {
            let name = lock(s).config.fal_failure.clone();
            let t = error_type(&name).or_else(|| error_type(DEFAULT_FAILURE));
            match t {
                Some(t) => {
                    let msg = fail_message(s, t.msg);
                    typed(t, &msg)
                }
                None => detail(500, "Internal server error"),
            }
        }
        Fate::Invalid(d) => model_error(422, d.as_ref().clone(), retryable_override.or(Some(false))),
    }
}

/// `PUT .../requests/{id}/cancel`: `CANCELLATION_REQUESTED` (202), `ALREADY_COMPLETED` or
/// `NOT_FOUND` (fal's cancel page names these answers; the statuses of the last two are not
/// documented: 400 and 404 here).
async fn cancel(State(s): State<Shared>, Path(path): Path<String>, h: HeaderMap) -> Response {
    let Some((id, Some("cancel"))) = request_path(&path) else { return detail(404, "Not Found") };
    if let Err(r) = gate(&s, &h, Call::Other).await {
        return r;
    }
    let answer = |code: u16, st: &str| (status(code), axum::Json(json!({"status": st}))).into_response();
    match observe(&s, Protocol::Fal, None, id, false) {
        None => answer(404, "NOT_FOUND"),
        Some(v) if v.phase == Phase::Finished => answer(400, "ALREADY_COMPLETED"),
        Some(v) => {
            crate::cancel(&s, Protocol::Fal, &v.id);
            answer(202, "CANCELLATION_REQUESTED")
        }
    }
}

/// The token in a `file_url` the sim handed out (`{base}/fal/cdn/{token}/{name}`).
pub(crate) fn upload_token(file_url: &str) -> Option<&str> {
    let (_, rest) = file_url.split_once("/fal/cdn/")?;
    rest.split('/').next().filter(|t| !t.is_empty())
}

/// `POST /storage/upload/initiate?storage_type=fal-cdn-v3` with `{content_type, file_name}`:
/// fal-js `storage.ts` `initiateUpload`, which answers `{upload_url, file_url}`; the client then
/// `PUT`s the bytes to `upload_url` and sends `file_url` as the input. That is how fal's client
/// sends `Blob`/`File` inputs; it sends `data:` URIs as they are (fal-js dropped their
/// auto-upload in "fix(client): remove auto-upload of data uri (#73)"). The multipart path fal-js
/// takes above 90 MB is not emulated.
async fn initiate(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    let parsed = parse_json(&body);
    record_submit(&s, "fal-upload", Protocol::Fal, "storage/upload/initiate", parsed.as_ref().unwrap_or(&Value::Null));
    if let Err(r) = gate(&s, &h, Call::Other).await {
        return r;
    }
    let body = parsed.unwrap_or(Value::Null);
    let Some(content_type) = body.get("content_type").and_then(Value::as_str).map(str::to_owned) else {
        let item = validation("content_type", "Field required", "missing", body.clone(), None);
        return model_error(422, json!([item]), Some(false));
    };
    let file_name: String = body
        .get("file_name")
        .and_then(Value::as_str)
        .unwrap_or("upload.bin")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .collect();
    let (token, base) = {
        let mut i = lock(&s);
        let token = crate::uuid(i.seq() ^ 0xfa1).replace('-', "");
        i.uploads.insert(token.clone(), Upload { file_name: file_name.clone(), content_type, bytes: None });
        (token, i.base.clone())
    };
    axum::Json(json!({
        "upload_url": format!("{base}/fal/storage/upload/{token}"),
        "file_url": format!("{base}/fal/cdn/{token}/{file_name}"),
    }))
    .into_response()
}

/// `PUT {upload_url}`: the signed upload URL takes the bytes without an `Authorization` header.
async fn upload(State(s): State<Shared>, Path(token): Path<String>, body: Bytes) -> Response {
    if let Err(r) = admit(&s, Protocol::Fal, Call::Other, true).await {
        return refusal(r);
    }
    let mut i = lock(&s);
    let Some(u) = i.uploads.get_mut(&token) else { return detail(404, "Not Found") };
    u.bytes = Some(Arc::new(body.to_vec()));
    i.stats.uploads += 1;
    axum::http::StatusCode::OK.into_response()
}

/// The uploaded file, as the CDN serves it.
async fn cdn(State(s): State<Shared>, Path((token, name)): Path<(String, String)>) -> Response {
    let i = lock(&s);
    match i.uploads.get(&token) {
        Some(Upload { bytes: Some(bytes), content_type, file_name }) if *file_name == name => {
            ([("content-type", content_type.clone())], bytes.to_vec()).into_response()
        }
        _ => detail(404, "Not Found"),
    }
}

/// `GET /v1/account/billing[?expand=credits]` (fal's platform API, "Account Billing"):
/// `{username, credits: {current_balance, currency}}`, `credits` only when expanded. It needs an
/// admin key ("Admin API key must be prefixed with Key"); an inference-only key gets 403
/// (reported by CodexBar's fal notes). The cheapest authenticated call fal documents that
/// creates nothing billable. The platform API's error bodies are not documented: `{"detail"}`.
async fn billing(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>, h: HeaderMap) -> Response {
    lock(&s).stats.credential_checks += 1;
    if let Err(r) = gate(&s, &h, Call::Other).await {
        return r;
    }
    if !lock(&s).config.fal_key_admin {
        return detail(403, "Admin API key required");
    }
    let mut body = json!({"username": "vidgate-sim"});
    if q.get("expand").is_some_and(|e| e.split(',').any(|x| x == "credits")) {
        body["credits"] = json!({"current_balance": 24.5, "currency": "USD"});
    }
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_result_urls_live_under_owner_and_alias() {
        let (response, status, cancel) = urls("http://h", "fal-ai/kling-video/v3/pro/image-to-video", "r1");
        assert_eq!(response, "http://h/fal/fal-ai/kling-video/requests/r1");
        assert_eq!(status, "http://h/fal/fal-ai/kling-video/requests/r1/status");
        assert_eq!(cancel, "http://h/fal/fal-ai/kling-video/requests/r1/cancel");
        assert_eq!(app("workflows/me/flow/sub"), "workflows/me/flow");
        assert_eq!(request_path("fal-ai/kling-video/requests/r1/status"), Some(("r1", Some("status"))));
        assert_eq!(request_path("fal-ai/kling-video/requests/r1"), Some(("r1", None)));
    }

    #[test]
    fn the_documented_examples_pass_and_missing_inputs_are_pydantic_errors() {
        // The input example of fal's O3 standard i2v page.
        let o3 = json!({"prompt": "The character walks forward slowly, with the camera following from behind.",
            "image_url": "https://v3b.fal.media/files/b/0a8cfd5a/8ABMp4n9rh3kfD2Rq8fHd_start_frame.png",
            "end_image_url": "https://v3b.fal.media/files/b/0a8d0248/S415GcxackjjLKom6f3jq_VTImWrNO.png",
            "duration": "10", "generate_audio": false, "multi_prompt": null, "shot_type": "customize"});
        assert_eq!(validate("fal-ai/kling-video/o3/standard/image-to-video", &o3, true), None);
        // The same input on a v3 endpoint lacks `start_image_url`.
        let detail = validate("fal-ai/kling-video/v3/standard/image-to-video", &o3, true).unwrap();
        assert_eq!(detail[0]["type"], "missing");
        assert_eq!(detail[0]["loc"], json!(["body", "start_image_url"]));
        assert_eq!(detail[0]["input"]["prompt"], o3["prompt"], "the input is echoed");
        let number = json!({"prompt": "p", "duration": 5});
        let detail = validate("fal-ai/kling-video/v3/pro/text-to-video", &number, true).unwrap();
        assert_eq!(detail[0]["type"], "one_of");
        assert_eq!(detail[0]["ctx"]["expected"][0], "3");
        let both = json!({"prompt": "p", "multi_prompt": [{"prompt": "a", "duration": "5"}]});
        assert!(validate("fal-ai/kling-video/v3/pro/text-to-video", &both, true).is_some());
        let data_uri = json!({"prompt": "p", "start_image_url": "data:image/png;base64,AAAA"});
        assert_eq!(validate("fal-ai/kling-video/v3/pro/image-to-video", &data_uri, true), None);
        let detail = validate("fal-ai/kling-video/v3/pro/image-to-video", &data_uri, false).unwrap();
        assert_eq!(detail[0]["type"], "file_download_error");
    }

    #[test]
    fn video_to_video_and_motion_control_need_their_documented_inputs() {
        // The input example of fal's O1 video-to-video edit page passes.
        let o1 = json!({"prompt": "Replace the character in the video with @Element1, maintaining the same movements and camera angles. Transform the landscape into @Image1",
            "video_url": "https://v3b.fal.media/files/b/rabbit/ku8_Wdpf-oTbGRq4lB5DU_output.mp4"});
        assert_eq!(validate("fal-ai/kling-video/o1/video-to-video/edit", &o1, true), None);
        for model in
            ["fal-ai/kling-video/o3/standard/video-to-video/edit", "fal-ai/kling-video/o3/pro/video-to-video/reference"]
        {
            let detail = validate(model, &json!({"prompt": "p"}), true).unwrap();
            assert_eq!((&detail[0]["loc"], &detail[0]["type"]), (&json!(["body", "video_url"]), &json!("missing")));
            let detail = validate(model, &json!({"video_url": "https://x/v.mp4", "keep_audio": "yes"}), true).unwrap();
            let locs: Vec<&Value> = detail.as_array().unwrap().iter().map(|d| &d["loc"][1]).collect();
            assert_eq!(locs, [&json!("prompt"), &json!("keep_audio")], "{model}");
        }
        let motion = "fal-ai/kling-video/v3/pro/motion-control";
        let ok =
            json!({"image_url": "https://x/i.png", "video_url": "https://x/v.mp4", "character_orientation": "video"});
        assert_eq!(validate(motion, &ok, false), None);
        let detail = validate(motion, &json!({"image_url": "https://x/i.png", "video_url": "v"}), true).unwrap();
        assert_eq!(detail[0]["loc"], json!(["body", "character_orientation"]));
        let sideways = json!({"image_url": "https://x/i.png", "video_url": "v", "character_orientation": "left"});
        assert_eq!(validate(motion, &sideways, true).unwrap()[0]["type"], "one_of");
        let inline =
            json!({"image_url": "data:image/png;base64,AA", "video_url": "v", "character_orientation": "image"});
        assert_eq!(validate(motion, &inline, false).unwrap()[0]["type"], "file_download_error");
    }

    #[test]
    fn model_errors_echo_the_field_or_the_whole_input() {
        let input = json!({"prompt": "a forbidden prompt", "start_image_url": "data:image/png;base64,QUFB"});
        let policy = error_type("content_policy_violation").unwrap();
        let i = item(&policy, policy.msg, "fal-ai/kling-video/v3/pro/image-to-video", &input);
        // The documented example of the "Model Errors" page, field by field.
        assert_eq!(i["loc"], json!(["body", "prompt"]));
        assert_eq!(i["type"], "content_policy_violation");
        assert_eq!(i["url"], "https://docs.fal.ai/errors/#content_policy_violation");
        assert_eq!(i["input"], "a forbidden prompt");
        let internal = error_type("internal_server_error").unwrap();
        let i = item(&internal, internal.msg, "m", &input);
        assert_eq!(i["loc"], json!(["body"]));
        assert_eq!(i["input"], input, "the whole input, data URI included");
        let small = error_type("image_too_small").unwrap();
        let i = item(&small, small.msg, "fal-ai/kling-video/o3/pro/image-to-video", &json!({"image_url": "u"}));
        assert_eq!(i["loc"], json!(["body", "image_url"]));
        assert_eq!(i["ctx"]["min_width"], 300);
    }

    #[test]
    fn the_catalogue_has_both_shapes_with_their_documented_statuses() {
        for (name, request_error, http) in [
            ("content_policy_violation", false, 422),
            ("generation_timeout", false, 504),
            ("downstream_service_error", false, 400),
            ("internal_server_error", false, 500),
            ("request_timeout", true, 504),
            ("runner_disconnected", true, 503),
            ("runner_incomplete_response", true, 502),
            ("client_cancelled", true, 499),
        ] {
            let t = error_type(name).unwrap();
            assert_eq!((t.request_error, t.status), (request_error, http), "{name}");
        }
        assert_eq!(error_type("content_policy_violation").unwrap().retryable, Some(false));
        assert!(error_type(DEFAULT_FAILURE).is_some());
    }
}
