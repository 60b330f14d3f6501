//! EvoLink's unified API as EvoLink documents it. Source: EvoLink's own OpenAPI files in
//! `Pharmacist9527/mintlify-docs` (`servers: https://api.evolink.ai`):
//! `en/api-manual/video-series/kling/*.json` (`POST /v1/videos/generations`: per-model required
//! fields, `VideoGenerationResponse`, the create error table),
//! `en/api-manual/task-management/get-task-detail.json` (`GET /v1/tasks/{task_id}`:
//! `TaskDetailResponse` and its error table), `.../task-management/error-codes.mdx` (the task
//! `error.code` values) and `en/api-manual/account-management/get-credits.json` (`GET
//! /v1/credits`, whose errors carry an integer `code`).
//!
//! Guarantees: Bearer auth; the create answer is `VideoGenerationResponse` (with `usage` and
//! `task_info.estimated_time`); the task answer is `TaskDetailResponse`, which has no `usage`
//! and no `estimated_time`, only `task_info.can_cancel`, `results` once completed and
//! `error{code, message, type: "task_error"}` once failed; errors are `{"error": {code, message,
//! type, param?}}` with each endpoint's documented codes. EvoLink documents no cancel endpoint,
//! so the sim has none.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::{
    Call, Fate, Fault, NewTask, Phase, Protocol, Refusal, Shared, View, accept, admit, base, fail_message, lock,
    malformed, observe, parse_json, record_submit, result_url, status,
};

/// How a model's duration is given.
#[derive(Debug, Clone, Copy)]
enum Durations {
    Range(u32, u32),
    OneOf(&'static [u32]),
    /// The model takes no `duration` (edits follow their input, elements make no video).
    None,
}

/// One EvoLink Kling model, from its JSON file: the `required` list of `VideoGenerationRequest`
/// (and of `model_params`), the `quality` enum and the `duration` bounds.
#[derive(Debug, Clone, Copy)]
struct Model {
    id: &'static str,
    required: &'static [&'static str],
    params_required: &'static [&'static str],
    qualities: &'static [&'static str],
    durations: Durations,
    per_call: bool,
}

const Q3: &[&str] = &["720p", "1080p", "4k"];
const Q2: &[&str] = &["720p", "1080p"];

const fn m(
    id: &'static str,
    required: &'static [&'static str],
    qualities: &'static [&'static str],
    durations: Durations,
) -> Model {
    Model { id, required, params_required: &[], qualities, durations, per_call: false }
}

const MODELS: &[Model] = &[
    m("kling-v3-text-to-video", &["prompt"], Q3, Durations::Range(3, 15)),
    m("kling-v3-image-to-video", &["image_start"], Q3, Durations::Range(3, 15)),
    m("kling-v3-turbo-text-to-video", &["prompt"], Q2, Durations::Range(3, 15)),
    m("kling-v3-turbo-image-to-video", &["image_start"], Q2, Durations::Range(3, 15)),
    Model {
        params_required: &["character_orientation"],
        ..m("kling-v3-motion-control", &["image_urls", "video_urls", "model_params"], Q2, Durations::None)
    },
    m("kling-o3-text-to-video", &["prompt"], Q3, Durations::Range(3, 15)),
    m("kling-o3-image-to-video", &["prompt"], Q3, Durations::Range(3, 15)),
    m("kling-o3-reference-to-video", &["prompt"], Q2, Durations::Range(3, 10)),
    m("kling-o3-video-edit", &[], Q2, Durations::None),
    m("kling-o1-image-to-video", &["prompt", "image_urls"], &[], Durations::OneOf(&[5, 10])),
    m("kling-o1-video-edit", &["prompt", "video_urls"], &[], Durations::None),
    m("kling-o1-video-edit-fast", &["prompt", "video_urls"], &[], Durations::None),
    Model {
        params_required: &["element_name", "element_description", "reference_type"],
        per_call: true,
        ..m("kling-custom-element", &["model_params"], &[], Durations::None)
    },
];

/// Which documented error table an answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Create,
    Task,
    Credits,
}

fn error(http: u16, code: &str, message: &str, kind: &str, param: Option<&str>) -> Response {
    let mut e = json!({"code": code, "message": message, "type": kind});
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    (status(http), axum::Json(json!({"error": e}))).into_response()
}

/// `/v1/credits` errors carry the HTTP status as an integer `code`, and a `fallback_suggestion`.
fn credits_error(http: u16, message: &str, kind: &str, suggestion: Option<&str>) -> Response {
    let mut e = json!({"code": http, "message": message, "type": kind});
    if let Some(s) = suggestion {
        e["fallback_suggestion"] = json!(s);
    }
    (status(http), axum::Json(json!({"error": e}))).into_response()
}

/// The documented answer for HTTP status `st` at an endpoint. 503 is no longer in the create and
/// task tables (a 2026-03-10 docs commit removed it); the sim answers it in the credits table's
/// shape.
fn status_error(ep: Endpoint, st: u16, model: &str) -> Response {
    match (ep, st) {
        (Endpoint::Credits, 400) => credits_error(400, "Invalid request", "invalid_request_error", None),
        (Endpoint::Credits, 401) => credits_error(401, "Invalid or expired token", "authentication_error", None),
        (Endpoint::Credits, 403) => credits_error(403, "Access denied", "permission_error", None),
        (Endpoint::Credits, 429) => {
            credits_error(429, "Rate limit exceeded", "rate_limit_error", Some("retry after 60 seconds"))
        }
        (Endpoint::Credits, 502) => {
            credits_error(502, "Upstream service error", "upstream_error", Some("try again later"))
        }
        (_, 503) => credits_error(
            503,
            "Service temporarily unavailable",
            "service_unavailable_error",
            Some("retry after 30 seconds"),
        ),
        (Endpoint::Credits, other) => {
            credits_error(other, "Internal server error", "internal_server_error", Some("try again later"))
        }
        (Endpoint::Task, 400) => error(
            400,
            "invalid_task_id",
            "Invalid task ID format, must start with 'task-unified-'",
            "invalid_request_error",
            Some("task_id"),
        ),
        (Endpoint::Task, 401) => error(401, "unauthorized", "Authentication required", "authentication_error", None),
        (Endpoint::Task, 402) => {
            error(402, "quota_exceeded", "Insufficient quota. Please top up your account.", "insufficient_quota", None)
        }
        (Endpoint::Task, 403) => error(
            403,
            "permission_denied",
            "You don't have permission to access this task",
            "invalid_request_error",
            None,
        ),
        (Endpoint::Task, 404) => {
            error(404, "task_not_found", "The requested task could not be found", "invalid_request_error", None)
        }
        (Endpoint::Task, 429) => error(429, "rate_limit_exceeded", "Rate limit exceeded", "evo_api_error", None),
        (Endpoint::Task, 500) => error(500, "internal_error", "Failed to retrieve task status", "api_error", None),
        (_, 400) => error(400, "invalid_request", "Invalid request parameters", "invalid_request_error", None),
        (_, 401) => error(401, "unauthorized", "Invalid or expired token", "authentication_error", None),
        (_, 402) => error(
            402,
            "insufficient_quota",
            "Insufficient quota. Please top up your account.",
            "insufficient_quota",
            None,
        ),
        (_, 403) => error(
            403,
            "model_access_denied",
            &format!("Token does not have access to model: {model}"),
            "invalid_request_error",
            None,
        ),
        (_, 429) => {
            error(429, "rate_limit_exceeded", "Too many requests, please try again later", "rate_limit_error", None)
        }
        (_, 502) => error(502, "upstream_error", "Upstream AI service unavailable", "upstream_error", None),
        (_, other) => error(other, "internal_error", "Internal server error", "api_error", None),
    }
}

fn refusal(ep: Endpoint, r: Refusal, model: &str) -> Response {
    match r {
        Refusal::Unauthorized => status_error(ep, 401, model),
        Refusal::Fault(Fault::Malformed | Fault::Hang) => malformed(),
        Refusal::Down(st) => status_error(ep, st, model),
        Refusal::Fault(f) => status_error(ep, f.http_status(), model),
    }
}

fn authorized(s: &Shared, h: &HeaderMap) -> bool {
    let key = lock(s).config.evolink_key.clone();
    !key.is_empty() && h.get("authorization").and_then(|v| v.to_str().ok()) == Some(format!("Bearer {key}").as_str())
}

async fn gate(s: &Shared, h: &HeaderMap, ep: Endpoint, call: Call, model: &str) -> Result<(), Response> {
    let ok = authorized(s, h);
    admit(s, Protocol::Evolink, call, ok).await.map_err(|r| refusal(ep, r, model))
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/videos/generations", post(create))
        .route("/v1/tasks/{id}", get(task))
        .route("/v1/credits", get(credits))
}

fn invalid(message: &str, param: &str) -> Response {
    error(400, "invalid_request", message, "invalid_request_error", Some(param))
}

fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| match x {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    })
}

/// The checks of one model; `Err((message, param))`. The multi-shot example of
/// kling-v3-text-to-video omits `prompt` although the schema requires it: with
/// `model_params.shot_type: customize` the sim takes it without one.
fn check(model: &Model, body: &Value) -> Result<u32, (String, String)> {
    let params = body.get("model_params").cloned().unwrap_or(Value::Null);
    let customized = params["multi_shot"] == true && params["shot_type"] == "customize";
    for key in model.required {
        if *key == "prompt" && customized {
            continue;
        }
        if present(body, key).is_none() {
            return Err((format!("{key} is required"), (*key).to_owned()));
        }
    }
    for key in model.params_required {
        if present(&params, key).is_none() {
            return Err((format!("model_params.{key} is required"), format!("model_params.{key}")));
        }
    }
    if model.id == "kling-custom-element" {
        element(&params)?;
    }
    if let Some(q) = body.get("quality").filter(|q| !q.is_null())
        && !q.as_str().is_some_and(|q| model.qualities.contains(&q))
    {
        return Err((format!("quality must be one of: {}", model.qualities.join(", ")), "quality".to_owned()));
    }
    let duration = match body.get("duration").filter(|d| !d.is_null()) {
        None => 5,
        Some(d) => {
            let d = d.as_u64().and_then(|d| u32::try_from(d).ok());
            let ok = match (model.durations, d) {
                (Durations::Range(lo, hi), Some(d)) => (lo..=hi).contains(&d),
                (Durations::OneOf(set), Some(d)) => set.contains(&d),
                // Edits follow their input video; a duration is not part of their schema.
                (Durations::None, _) => true,
                (_, None) => false,
            };
            if !ok {
                return Err(("duration is out of range for this model".to_owned(), "duration".to_owned()));
            }
            d.unwrap_or(5)
        }
    };
    Ok(duration)
}

/// kling-custom-element: `reference_type` image_refer needs `element_image_list.frontal_image`
/// and 1..3 `refer_images` ("omitting either one will cause the request to fail"); video_refer
/// needs one `element_video_list.refer_videos` entry.
fn element(params: &Value) -> Result<(), (String, String)> {
    let e = |m: &str, p: &str| Err((m.to_owned(), p.to_owned()));
    match params["reference_type"].as_str() {
        Some("image_refer") => {
            let list = &params["element_image_list"];
            if present(list, "frontal_image").is_none() {
                return e(
                    "model_params.element_image_list.frontal_image is required",
                    "model_params.element_image_list.frontal_image",
                );
            }
            if !list["refer_images"].as_array().is_some_and(|r| (1..=3).contains(&r.len())) {
                return e(
                    "model_params.element_image_list.refer_images must hold 1 to 3 images",
                    "model_params.element_image_list.refer_images",
                );
            }
            Ok(())
        }
        Some("video_refer") => {
            if params["element_video_list"]["refer_videos"].as_array().is_some_and(|v| v.len() == 1) {
                Ok(())
            } else {
                e(
                    "model_params.element_video_list.refer_videos must hold 1 video",
                    "model_params.element_video_list.refer_videos",
                )
            }
        }
        _ => e("model_params.reference_type must be image_refer or video_refer", "model_params.reference_type"),
    }
}

/// `POST /v1/videos/generations`: `VideoGenerationResponse`. `credits_reserved` counts in a unit
/// EvoLink does not name; the sim uses the kling-v3 example's scale (270000 for 5 s at 720p) and
/// 10000 for a per-call element.
async fn create(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    let parsed = parse_json(&body);
    record_submit(&s, "evolink", Protocol::Evolink, "v1/videos/generations", parsed.as_ref().unwrap_or(&Value::Null));
    let model_name = parsed.as_ref().and_then(|b| b["model"].as_str()).unwrap_or("").to_owned();
    if let Err(r) = gate(&s, &h, Endpoint::Create, Call::Submit, &model_name).await {
        return r;
    }
    let Some(body) = parsed.filter(Value::is_object) else {
        return error(400, "invalid_request", "Invalid request parameters", "invalid_request_error", None);
    };
    if model_name.is_empty() {
        return invalid("model is required", "model");
    }
    let Some(model) = MODELS.iter().find(|m| m.id == model_name) else {
        return invalid(&format!("Unsupported model: {model_name}"), "model");
    };
    let duration = match check(model, &body) {
        Ok(d) => d,
        Err((message, param)) => return invalid(&message, &param),
    };
    let v = accept(
        &s,
        NewTask {
            protocol: Protocol::Evolink,
            resource: "tasks",
            model: model.id.to_owned(),
            duration,
            external_id: None,
            forced: None,
            echo: None,
            echo_always: false,
        },
    );
    let hd = body["quality"] == "1080p";
    let (rule, credits) = if model.per_call {
        ("per_call", 10_000.0)
    } else {
        ("per_second", 54_000.0 * f64::from(duration) * if hd { 1.333 } else { 1.0 })
    };
    axum::Json(json!({
        "created": v.created_ms / 1000,
        "id": v.id,
        "model": v.model,
        "object": "video.generation.task",
        "progress": 0,
        "status": "pending",
        "task_info": {"can_cancel": true, "estimated_time": 300, "video_duration": duration},
        "type": "video",
        "usage": {"billing_rule": rule, "credits_reserved": credits, "user_group": "default"},
    }))
    .into_response()
}

/// The `TaskDetailResponse` of a task: no `usage`, no `estimated_time`.
fn detail(s: &Shared, base: &str, v: &View) -> Value {
    let mut body = json!({
        "created": v.created_ms / 1000,
        "id": v.id,
        "model": v.model,
        "object": "video.generation.task",
        "type": "video",
    });
    let finished = v.phase == Phase::Finished && !matches!(v.fate, Fate::Stuck);
    let (task_status, progress) = match (finished, v.phase) {
        (false, Phase::Queued) => ("pending", 0),
        (false, _) => ("processing", 50),
        (true, _) => match v.fate {
            Fate::Succeed | Fate::BadResult | Fate::BadBody => ("completed", 100),
            _ => ("failed", 0),
        },
    };
    body["status"] = json!(task_status);
    body["progress"] = json!(progress);
    body["task_info"] = json!({"can_cancel": !finished});
    match (task_status, &v.fate) {
        ("completed", Fate::BadBody) => {}
        ("completed", _) if v.model == "kling-custom-element" => {
            // "Upon task completion, result_data will contain the element_id": the shape is not
            // documented; the sim gives an object, as vidgate's own API does.
            body["result_data"] = json!({"element_id": format!("{}", crate::kling::element_id(v.seq))});
        }
        ("completed", _) => body["results"] = json!([result_url(base, v)]),
        ("failed", Fate::Refuse) => {
            body["error"] = json!({
                "code": "content_policy_violation",
                "message": "Content policy violation.\nYour request was blocked by safety filters.",
                "type": "task_error",
            });
        }
        ("failed", _) => {
            body["error"] = json!({
                "code": "service_error",
                "message": fail_message(s, "Internal service error"),
                "type": "task_error",
            });
        }
        _ => {}
    }
    body
}

/// `GET /v1/tasks/{task_id}`. Ids "must start with 'task-unified-'" (400 otherwise).
async fn task(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &h, Endpoint::Task, Call::Poll, "").await {
        return r;
    }
    if !id.starts_with("task-unified-") {
        return status_error(Endpoint::Task, 400, "");
    }
    match observe(&s, Protocol::Evolink, None, &id, true) {
        Some(v) => axum::Json(detail(&s, &base(&s), &v)).into_response(),
        None => status_error(Endpoint::Task, 404, ""),
    }
}

/// `GET /v1/credits`: the documented example; the credential check.
async fn credits(State(s): State<Shared>, h: HeaderMap) -> Response {
    lock(&s).stats.credential_checks += 1;
    if let Err(r) = gate(&s, &h, Endpoint::Credits, Call::Other, "").await {
        return r;
    }
    axum::Json(json!({
        "data": {
            "token": {"remaining_credits": 99416.4429, "unlimited_credits": false, "used_credits": 583.5571},
            "user": {"remaining_credits": 1095.3996, "used_credits": 135.9048},
        },
        "message": "",
        "success": true,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str) -> Model {
        MODELS.iter().copied().find(|m| m.id == id).unwrap()
    }

    #[test]
    fn the_documented_request_examples_pass() {
        // kling-v3-text-to-video.json examples "basic" and "multi_shot".
        let basic = json!({"model": "kling-v3-text-to-video", "prompt": "A cat running on a grass field under bright sunshine",
            "duration": 5, "aspect_ratio": "16:9", "quality": "720p"});
        assert_eq!(check(&model("kling-v3-text-to-video"), &basic), Ok(5));
        let shots = json!({"model": "kling-v3-text-to-video", "duration": 10, "aspect_ratio": "16:9", "quality": "1080p", "sound": "on",
            "model_params": {"multi_shot": true, "shot_type": "customize", "multi_prompt": [
                {"index": 1, "prompt": "A person standing on a mountaintop gazing at the sunrise", "duration": "5"},
                {"index": 2, "prompt": "Camera pulls back to reveal the magnificent mountain landscape", "duration": "5"}]}});
        assert_eq!(check(&model("kling-v3-text-to-video"), &shots), Ok(10));
        // The kling-custom-element example (api-specs 1.9).
        let element = json!({"model": "kling-custom-element", "model_params": {"element_name": "My Character",
            "element_description": "A young male character with short hair, wearing a white T-shirt", "reference_type": "image_refer",
            "element_image_list": {"frontal_image": "https://example.com/front.jpg", "refer_images": [{"image_url": "https://example.com/side.jpg"}]}}});
        assert_eq!(check(&model("kling-custom-element"), &element), Ok(5));
    }

    #[test]
    fn required_fields_and_ranges_name_their_param() {
        let no_start = json!({"model": "kling-v3-image-to-video", "prompt": "p"});
        assert_eq!(
            check(&model("kling-v3-image-to-video"), &no_start),
            Err(("image_start is required".into(), "image_start".into()))
        );
        let turbo_4k = json!({"prompt": "p", "quality": "4k"});
        assert_eq!(check(&model("kling-v3-turbo-text-to-video"), &turbo_4k).unwrap_err().1, "quality");
        let o1_seven = json!({"prompt": "p", "image_urls": ["u"], "duration": 7});
        assert_eq!(check(&model("kling-o1-image-to-video"), &o1_seven).unwrap_err().1, "duration");
        let motion = json!({"image_urls": ["i"], "video_urls": ["v"], "model_params": {}});
        assert_eq!(
            check(&model("kling-v3-motion-control"), &motion).unwrap_err().1,
            "model_params.character_orientation"
        );
        let no_type = json!({"model_params": {"element_name": "a", "element_description": "b"}});
        assert_eq!(check(&model("kling-custom-element"), &no_type).unwrap_err().1, "model_params.reference_type");
    }

    #[test]
    fn error_tables_follow_each_endpoint() {
        let body = |r: Response| async move {
            let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let e = body(status_error(Endpoint::Create, 402, "m")).await;
            assert_eq!(e["error"]["code"], "insufficient_quota");
            let e = body(status_error(Endpoint::Task, 402, "")).await;
            assert_eq!(e["error"]["code"], "quota_exceeded");
            let e = body(status_error(Endpoint::Create, 403, "kling-v3-text-to-video")).await;
            assert_eq!(e["error"]["message"], "Token does not have access to model: kling-v3-text-to-video");
            let e = body(status_error(Endpoint::Credits, 429, "")).await;
            assert_eq!(e["error"]["code"], 429, "an integer on /v1/credits");
            assert_eq!(e["error"]["fallback_suggestion"], "retry after 60 seconds");
        });
    }
}
