//! Kling's official API as its docs describe it. Sources: the vendor Markdown of
//! kling.ai/document-api mirrored in `aself101/kling-api` `docs/api/*.md` (error codes,
//! authentication, 3.0 / 3.0 Turbo / 3.0 Omni / O1 / motion control pages, element management,
//! account usage) and, for the legacy pages the mirror lacks, the Chinese copy in
//! `WHQ25/rawgenai` `docs/research/kling/*.md` (text-to-video, image-to-video, omni-video-o1,
//! motion-control).
//!
//! Guarantees: every answer is the envelope `{code, message, request_id, data}`; every business
//! code comes at the HTTP status Kling documents for it; required fields are checked as the docs
//! mark them and a missing or invalid one is 1201 naming it; the legacy design standard
//! (`model_name` in the body) takes an HS256 JWT or the static API key, the new design standard
//! (model in the path) only the API key; a content refusal after acceptance ends `failed` with
//! Kling's own words.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    Call, Fate, Fault, NewTask, Phase, Protocol, Refusal, Shared, View, accept, admit, base, fail_message, lock,
    malformed, now_ms, observe, parse_json, record_submit, result_url, status,
};

/// Every documented business code with its HTTP status and the docs' explanation
/// (`kling-get-started-error-codes.md`; 1303's wording from `kling-get-started-concurrency-rules.md`).
pub const CODES: [(u32, u16, &str); 21] = [
    (1000, 401, "Authentication failed"),
    (1001, 401, "Authorization is empty"),
    (1002, 401, "Authorization is invalid"),
    (1003, 401, "Authorization is not yet valid"),
    (1004, 401, "Authorization has expired"),
    (1100, 429, "Abnormal account status"),
    (1101, 429, "Account in arrears (postpaid scenario)"),
    (1102, 429, "Resource pack exhausted or expired (prepaid scenario)"),
    (1103, 403, "Unauthorized access to requested resource, such as API/model"),
    (1200, 400, "Invalid request parameters"),
    (1201, 400, "Invalid parameters, such as an incorrect key or invalid value"),
    (1202, 404, "The requested method is invalid"),
    (1203, 404, "The requested resource does not exist, such as the model"),
    (1300, 400, "Request blocked by platform policy"),
    (1301, 400, "Trigger the platform's content security policy"),
    (1302, 429, "Too many requests; rate limit exceeded"),
    (1303, 429, "parallel task over resource pack limit"),
    (1304, 429, "Trigger the platform's IP whitelist policy"),
    (5000, 500, "Server internal error"),
    (5001, 503, "Server temporarily unavailable, usually due to maintenance"),
    (5002, 504, "Server internal timeout, usually due to a backlog"),
];

/// `task_status_msg` of a task refused for its content, verbatim as Kling sends it (public
/// clients match it exactly: a Go Kling SDK maps it to 1301, a TS adapter test treats it as a
/// final content-policy failure; see `../shared/research/upstreams.md` mismatch 1).
pub const RISK_CONTROL: &str = "Failure to pass the risk control system";

/// `task_status_msg` of a server-side failure. Kling documents no wording for it (only "the
/// failure reason"), so the sim uses the docs' own definition of code 5000: it is not a policy.
pub const SERVER_FAILURE: &str = "Server internal error";

/// The documented HTTP status of business code `code`.
pub fn http_status(code: u32) -> Option<u16> {
    CODES.iter().find(|c| c.0 == code).map(|c| c.1)
}

fn explanation(code: u32) -> &'static str {
    CODES.iter().find(|c| c.0 == code).map_or("Server internal error", |c| c.2)
}

/// The code Kling pairs with an HTTP status, for faults given as a bare status.
fn code_for_status(status: u16) -> u32 {
    match status {
        400 => 1200,
        401 => 1000,
        403 => 1103,
        404 => 1203,
        429 => 1302,
        503 => 5001,
        504 => 5002,
        _ => 5000,
    }
}

/// Legacy `model_name` values per create path: `WHQ25/rawgenai` text-to-video.md and
/// image-to-video.md enums, plus `kling-v3` (changelog 04/23/2026, `kling-updates-api.md`).
const T2V_MODELS: &[&str] =
    &["kling-v1", "kling-v1-6", "kling-v2-master", "kling-v2-1-master", "kling-v2-5-turbo", "kling-v2-6", "kling-v3"];
const I2V_MODELS: &[&str] = &[
    "kling-v1",
    "kling-v1-5",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
];
/// `/v1/videos/omni-video`: O1 (`omni-video-o1.md`) and 3.0 Omni (changelog: "Supported model
/// ranges: kling-v3-omni").
const OMNI_MODELS: &[&str] = &["kling-video-o1", "kling-v3-omni"];
/// `/v1/videos/motion-control`: "Add model_name parameter to distinguish model versions, default
/// kling-v2-6" (changelog 03/04/2026, V3.0 Motion Control).
const MOTION_MODELS: &[&str] = &["kling-v2-6", "kling-v3"];

/// Each request gets a fresh UUID-shaped `request_id`, as Kling's do.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    crate::uuid(NEXT.fetch_add(1, Ordering::Relaxed))
}

fn envelope(http: u16, code: u32, message: &str, data: Option<Value>) -> Response {
    let mut body = json!({"code": code, "message": message, "request_id": request_id()});
    if let Some(d) = data {
        body["data"] = d;
    }
    (status(http), axum::Json(body)).into_response()
}

/// Success: code 0 with `message: "SUCCEED"`, as live answers show (a captured text2video create
/// and QuantumNous/new-api#2532).
fn ok(data: Value) -> Response {
    envelope(200, 0, "SUCCEED", Some(data))
}

/// A business error at its documented status, with the docs' explanation.
fn error(code: u32) -> Response {
    error_with(code, explanation(code))
}

/// A business error whose message says what was wrong, as 1201's suggested solution implies
/// ("Refer to the specific information in the message field").
fn error_with(code: u32, message: &str) -> Response {
    envelope(http_status(code).unwrap_or(500), code, message, None)
}

fn refusal(r: Refusal, denied: u32) -> Response {
    match r {
        Refusal::Down(st) | Refusal::Fault(Fault::Status(st)) => {
            let code = code_for_status(st);
            envelope(st, code, explanation(code), None)
        }
        Refusal::Unauthorized => error(denied),
        Refusal::Fault(Fault::KlingCode(code)) => error(code),
        // The third-party observed form: the code in the body, HTTP 200.
        Refusal::Fault(Fault::Kling1303) => envelope(200, 1303, explanation(1303), None),
        Refusal::Fault(Fault::Malformed | Fault::Hang) => malformed(),
    }
}

/// Which of Kling's two design standards a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standard {
    Legacy,
    New,
}

/// Checks a Kling HS256 JWT: signature, `iss`, `exp` in the future, `nbf` passed.
pub fn verify_jwt(token: &str, access: &str, secret: &str, now_secs: i64) -> bool {
    check_jwt(token, access, secret, now_secs).is_ok()
}

/// The JWT check with the code Kling answers on failure: 1002 for a token that is not ours,
/// 1003 before `nbf`, 1004 after `exp` (`kling-get-started-authentication.md`: HS256, `iss` =
/// AccessKey, `exp` = now + 1800, `nbf` = now - 5, signed with the SecretKey).
fn check_jwt(token: &str, access: &str, secret: &str, now_secs: i64) -> Result<(), u32> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, sig] = parts.as_slice() else { return Err(1002) };
    let header = URL_SAFE_NO_PAD.decode(h).map_err(|_| 1002u32)?;
    if serde_json::from_slice::<Value>(&header).ok().and_then(|v| v.get("alg").cloned()) != Some(json!("HS256")) {
        return Err(1002);
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|_| 1002u32)?;
    mac.update(format!("{h}.{p}").as_bytes());
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| 1002u32)?;
    mac.verify_slice(&sig).map_err(|_| 1002u32)?;
    let claims = URL_SAFE_NO_PAD.decode(p).map_err(|_| 1002u32)?;
    let claims = serde_json::from_slice::<Value>(&claims).map_err(|_| 1002u32)?;
    if claims["iss"] != access {
        return Err(1002);
    }
    match (claims["nbf"].as_i64(), claims["exp"].as_i64()) {
        (Some(nbf), _) if nbf > now_secs => Err(1003),
        (_, Some(exp)) if exp <= now_secs => Err(1004),
        (Some(_), Some(_)) => Ok(()),
        _ => Err(1002),
    }
}

/// Checks the credentials; `Err` is the business code to answer with (0 never).
fn authorize(s: &Shared, h: &HeaderMap, standard: Standard) -> Result<(), u32> {
    let i = lock(s);
    let c = &i.config;
    let Some(value) = h.get("authorization").and_then(|v| v.to_str().ok()).filter(|v| !v.trim().is_empty()) else {
        return Err(1001);
    };
    // "There should be a space between Bearer and XXX."
    let token = value.strip_prefix("Bearer ").ok_or(1002u32)?;
    if !c.kling_api_key.is_empty() && token == c.kling_api_key {
        return Ok(());
    }
    if standard == Standard::New {
        // "The new API supports authentication via API Key only" (changelog 06/17/2026).
        return Err(1002);
    }
    let now = now_ms() / 1000;
    check_jwt(token, &c.kling_access_key, &c.kling_secret_key, now)
}

/// The door for every Kling call: down, credentials, faults; `Err` is the answer to send.
async fn gate(s: &Shared, h: &HeaderMap, standard: Standard, call: Call) -> Result<(), Response> {
    let auth = authorize(s, h, standard);
    let denied = auth.err().unwrap_or(1000);
    admit(s, Protocol::Kling, call, auth.is_ok()).await.map_err(|r| refusal(r, denied))
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/videos/{kind}", post(legacy_create))
        .route("/v1/videos/{kind}/{id}", get(legacy_query))
        .route("/v1/general/advanced-custom-elements", post(element_create))
        .route("/v1/general/advanced-custom-elements/{id}", get(element_query))
        .route("/tasks", get(new_query))
        .route("/account/costs", get(costs))
        .route("/{product}/{model}", post(new_create))
        .fallback(unknown)
}

/// A path Kling does not serve: 1202 "The requested method is invalid" (HTTP 404).
async fn unknown() -> Response {
    error(1202)
}

type Check = Result<(), String>;

/// A field that is present (JSON `null` counts as absent).
fn field<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn required_str(body: &Value, key: &str) -> Check {
    match field(body, key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(()),
        Some(Value::String(_)) | None => Err(format!("{key} is required")),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// A field that, when present, must be one of `allowed`.
fn one_of(body: &Value, key: &str, allowed: &[&str]) -> Check {
    match field(body, key) {
        None => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(_) => Err(format!("{key} must be one of: {}", allowed.join(", "))),
    }
}

/// Images are "Base64 or URL"; Base64 goes without the `data:image/...;base64,` prefix
/// ("不要添加 data:image/png;base64, 前缀", image-to-video.md).
fn image(body: &Value, key: &str) -> Check {
    match field(body, key) {
        None => Ok(()),
        Some(Value::String(s)) if s.starts_with("data:") => {
            Err(format!("{key} must be a URL or raw Base64 without the data: prefix"))
        }
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(_) => Err(format!("{key} must be a non-empty string")),
    }
}

/// The legacy `duration`, a string ("5"), within `allowed`; the task's length in seconds.
fn legacy_duration(body: &Value, allowed: &[u32]) -> Result<u32, String> {
    match field(body, "duration") {
        None => Ok(5),
        Some(Value::String(s)) => s
            .parse::<u32>()
            .ok()
            .filter(|d| allowed.contains(d))
            .ok_or_else(|| format!("duration must be one of: {}", list(allowed))),
        Some(_) => Err("duration must be a string, e.g. \"5\"".to_owned()),
    }
}

fn list(values: &[u32]) -> String {
    values.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

fn range(r: RangeInclusive<u32>) -> Vec<u32> {
    r.collect()
}

/// Durations per legacy model: 3..15 for kling-v3 and kling-v3-omni (third-party docs; the
/// vendor legacy text for v3 was not retrieved), 3..10 for O1 (`omni-video-o1.md`), 5 or 10
/// for the rest (`text-to-video.md`).
fn legacy_durations(model: &str) -> Vec<u32> {
    match model {
        "kling-v3" | "kling-v3-omni" => range(3..=15),
        "kling-video-o1" => range(3..=10),
        _ => vec![5, 10],
    }
}

/// `mode`: std or pro; `4k` for kling-v3 and kling-v3-omni (changelog 04/23/2026).
fn legacy_mode(body: &Value, model: &str) -> Check {
    if matches!(model, "kling-v3" | "kling-v3-omni") {
        one_of(body, "mode", &["std", "pro", "4k"])
    } else {
        one_of(body, "mode", &["std", "pro"])
    }
}

/// Whether the body asks for a customized multi-shot video, whose shots carry the prompts.
fn customized_shots(body: &Value) -> bool {
    body["multi_shot"] == true && body["shot_type"] == "customize"
}

/// `multi_shot`, `shot_type`, `multi_prompt[{index, prompt, duration}]` (kling-v3 legacy: COMFY's
/// `MultiPromptEntry(index:int, prompt:str, duration:str)`; 1..6 shots, each ≤ 512 characters,
/// durations summing to the total, as the 3.0 pages state for their prompt form).
fn multi_shot(body: &Value, total: u32) -> Check {
    if body["multi_shot"] != true {
        return Ok(());
    }
    one_of(body, "shot_type", &["customize", "intelligence"])?;
    required_str(body, "shot_type")?;
    if body["shot_type"] != "customize" {
        return Ok(());
    }
    let shots = body["multi_prompt"].as_array().filter(|a| (1..=6).contains(&a.len()));
    let Some(shots) = shots else { return Err("multi_prompt must hold 1 to 6 shots".to_owned()) };
    let mut sum = 0;
    for shot in shots {
        if !shot["index"].is_u64() {
            return Err("multi_prompt[].index must be an integer".to_owned());
        }
        let prompt = shot["prompt"].as_str().unwrap_or("");
        if prompt.trim().is_empty() || prompt.chars().count() > 512 {
            return Err("multi_prompt[].prompt must be 1 to 512 characters".to_owned());
        }
        let Some(d) = shot["duration"].as_str().and_then(|d| d.parse::<u32>().ok()) else {
            return Err("multi_prompt[].duration must be a string of seconds".to_owned());
        };
        sum += d;
    }
    if sum != total {
        return Err("the multi_prompt durations must sum to duration".to_owned());
    }
    Ok(())
}

/// A business code and the message to send with it.
type Denial = (u32, String);

/// The legacy `model_name`: the documented default when absent; 1203 for a model Kling does
/// not have, 1201 for one this path does not take.
fn legacy_model(body: &Value, allowed: &[&str], default: &str) -> Result<String, Denial> {
    let model = match field(body, "model_name") {
        None if default.is_empty() => return Err((1201, "model_name is required".to_owned())),
        None => default.to_owned(),
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err((1201, "model_name must be a string".to_owned())),
    };
    if allowed.contains(&model.as_str()) {
        return Ok(model);
    }
    let known = [T2V_MODELS, I2V_MODELS, OMNI_MODELS, MOTION_MODELS].iter().any(|l| l.contains(&model.as_str()));
    Err(if known {
        (1201, format!("model_name {model} is not supported by this API"))
    } else {
        (1203, format!("model_name {model} does not exist"))
    })
}

/// The rules of one legacy create path; the task's duration.
fn legacy_rules(kind: &str, body: &Value, model: &str) -> Result<u32, String> {
    match kind {
        "text2video" => {
            // text-to-video.md: prompt 必须 (required); a customized multi-shot carries it in its
            // shots instead (kling-v3; the docs leave the top-level prompt open, so it may be empty).
            if !customized_shots(body) {
                required_str(body, "prompt")?;
            }
            legacy_mode(body, model)?;
            let duration = legacy_duration(body, &legacy_durations(model))?;
            one_of(body, "sound", &["on", "off"])?;
            one_of(body, "aspect_ratio", &["16:9", "9:16", "1:1"])?;
            multi_shot(body, duration)?;
            Ok(duration)
        }
        "image2video" => {
            // One of `image` and `image_tail` is needed (first frame, last frame or both); the
            // Chinese copy marks `image` 必须, older English docs said "at least one", so the sim
            // takes either.
            if field(body, "image").is_none() && field(body, "image_tail").is_none() {
                return Err("image or image_tail is required".to_owned());
            }
            image(body, "image")?;
            image(body, "image_tail")?;
            // "以下三组参数三选一": first/last frame, motion brush, camera control exclude each other.
            let brush = field(body, "static_mask").is_some() || field(body, "dynamic_masks").is_some();
            let camera = field(body, "camera_control").is_some();
            if field(body, "image_tail").is_some() && (brush || camera) || brush && camera {
                return Err("image_tail, the motion brush and camera_control cannot be combined".to_owned());
            }
            legacy_mode(body, model)?;
            let duration = legacy_duration(body, &legacy_durations(model))?;
            one_of(body, "sound", &["on", "off"])?;
            multi_shot(body, duration)?;
            Ok(duration)
        }
        "omni-video" => omni_rules(body, model),
        "motion-control" => {
            // motion-control.md: image_url, video_url, character_orientation and mode 必须.
            required_str(body, "image_url")?;
            image(body, "image_url")?;
            required_str(body, "video_url")?;
            required_str(body, "character_orientation")?;
            one_of(body, "character_orientation", &["image", "video"])?;
            required_str(body, "mode")?;
            one_of(body, "mode", &["std", "pro"])?;
            one_of(body, "keep_original_sound", &["yes", "no"])?;
            // The output follows the motion video, whose length the sim does not probe.
            Ok(5)
        }
        _ => Err("unknown resource".to_owned()),
    }
}

/// `/v1/videos/omni-video` (`omni-video-o1.md`): prompt required (≤ 2500); `image_list[{image_url,
/// type?}]` (type `first_frame` | `end_frame`), `video_list[{video_url, refer_type, keep_original_sound}]`
/// (refer_type `feature` | `base`, at most one), `element_list[{element_id}]`; images + elements
/// ≤ 7, ≤ 4 with a video; no end frame beyond 2 images; `aspect_ratio` required without a first
/// frame or a video to edit.
fn omni_rules(body: &Value, model: &str) -> Result<u32, String> {
    if !(model == "kling-v3-omni" && customized_shots(body)) {
        required_str(body, "prompt")?;
    }
    let images = body["image_list"].as_array().cloned().unwrap_or_default();
    let videos = body["video_list"].as_array().cloned().unwrap_or_default();
    let elements = body["element_list"].as_array().cloned().unwrap_or_default();
    for img in &images {
        required_str(img, "image_url").map_err(|e| format!("image_list[].{e}"))?;
        image(img, "image_url").map_err(|e| format!("image_list[].{e}"))?;
        one_of(img, "type", &["first_frame", "end_frame"]).map_err(|e| format!("image_list[].{e}"))?;
    }
    let first = images.iter().any(|i| i["type"] == "first_frame");
    let end = images.iter().any(|i| i["type"] == "end_frame");
    if end && !first {
        return Err("image_list: an end_frame needs a first_frame".to_owned());
    }
    if end && images.len() > 2 {
        return Err("image_list: no end_frame with more than 2 images".to_owned());
    }
    if videos.len() > 1 {
        return Err("video_list holds at most 1 video".to_owned());
    }
    for v in &videos {
        required_str(v, "video_url").map_err(|e| format!("video_list[].{e}"))?;
        required_str(v, "refer_type").map_err(|e| format!("video_list[].{e}"))?;
        one_of(v, "refer_type", &["feature", "base"]).map_err(|e| format!("video_list[].{e}"))?;
        one_of(v, "keep_original_sound", &["yes", "no"]).map_err(|e| format!("video_list[].{e}"))?;
    }
    for e in &elements {
        // `element_id: long` in the docs; the examples also show strings, so both pass.
        if !(e["element_id"].is_u64() || e["element_id"].as_str().is_some_and(|s| !s.is_empty())) {
            return Err("element_list[].element_id is required".to_owned());
        }
    }
    let cap = if videos.is_empty() { 7 } else { 4 };
    if images.len() + elements.len() > cap {
        return Err(format!("image_list and element_list hold at most {cap} items together"));
    }
    let base_video = videos.iter().any(|v| v["refer_type"] == "base");
    if !first && !base_video {
        required_str(body, "aspect_ratio")?;
    }
    one_of(body, "aspect_ratio", &["16:9", "9:16", "1:1"])?;
    legacy_mode(body, model)?;
    one_of(body, "sound", &["on", "off"])?;
    let duration = legacy_duration(body, &legacy_durations(model))?;
    multi_shot(body, duration)?;
    Ok(duration)
}

/// `external_task_id`: optional, but "must be unique within a single user account".
fn external_id(s: &Shared, value: Option<&Value>) -> Result<Option<String>, Denial> {
    match value {
        Some(Value::String(e)) if !e.is_empty() => {
            if lock(s).external_taken(e) {
                Err((1201, "external_task_id already exists".to_owned()))
            } else {
                Ok(Some(e.clone()))
            }
        }
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(None),
        Some(_) => Err((1201, "external_task_id must be a string".to_owned())),
    }
}

fn legacy_resource(kind: &str) -> Option<&'static str> {
    match kind {
        "text2video" => Some("v1/videos/text2video"),
        "image2video" => Some("v1/videos/image2video"),
        "omni-video" => Some("v1/videos/omni-video"),
        "motion-control" => Some("v1/videos/motion-control"),
        _ => None,
    }
}

/// The legacy create answer (`{task_id, task_info{external_task_id}, task_status, created_at,
/// updated_at}`, as element management and the live capture show).
fn legacy_created(v: &View) -> Response {
    ok(json!({
        "task_id": v.id,
        "task_info": {"external_task_id": v.external_id.clone().unwrap_or_default()},
        "task_status": "submitted",
        "created_at": v.created_ms,
        "updated_at": v.created_ms,
    }))
}

async fn legacy_create(State(s): State<Shared>, Path(kind): Path<String>, h: HeaderMap, body: Bytes) -> Response {
    let Some(resource) = legacy_resource(&kind) else { return error(1202) };
    let parsed = parse_json(&body);
    record_submit(&s, "kling", Protocol::Kling, resource, parsed.as_ref().unwrap_or(&Value::Null));
    if let Err(r) = gate(&s, &h, Standard::Legacy, Call::Submit).await {
        return r;
    }
    let Some(body) = parsed.filter(Value::is_object) else { return error(1200) };
    let (allowed, default) = match kind.as_str() {
        "text2video" => (T2V_MODELS, "kling-v1"),
        "image2video" => (I2V_MODELS, "kling-v1"),
        "motion-control" => (MOTION_MODELS, "kling-v2-6"),
        // The Chinese copy gives `kling-v1` as the default, which is no omni model: the sim asks
        // for one of the two.
        _ => (OMNI_MODELS, ""),
    };
    let model = match legacy_model(&body, allowed, default) {
        Ok(m) => m,
        Err((code, message)) => return error_with(code, &message),
    };
    let duration = match legacy_rules(&kind, &body, &model) {
        Ok(d) => d,
        Err(message) => return error_with(1201, &message),
    };
    let external_id = match external_id(&s, field(&body, "external_task_id")) {
        Ok(e) => e,
        Err((code, message)) => return error_with(code, &message),
    };
    let v = accept(
        &s,
        NewTask {
            protocol: Protocol::Kling,
            resource,
            model,
            duration,
            external_id,
            forced: None,
            echo: None,
            echo_always: false,
        },
    );
    legacy_created(&v)
}

/// What a finished (or running) Kling task reports: status, message, whether it carries a video.
fn outcome(s: &Shared, v: &View) -> (&'static str, String, bool) {
    match (v.phase, &v.fate) {
        (Phase::Queued, _) => ("submitted", String::new(), false),
        (Phase::Running, _) | (_, Fate::Stuck) => ("processing", String::new(), false),
        (Phase::Finished, Fate::Succeed | Fate::BadResult) => ("succeed", String::new(), true),
        (Phase::Finished, Fate::BadBody) => ("succeed", String::new(), false),
        (Phase::Finished, Fate::Refuse) => ("failed", RISK_CONTROL.to_owned(), false),
        (Phase::Finished, Fate::ServerFail | Fate::Invalid(_)) => ("failed", fail_message(s, SERVER_FAILURE), false),
    }
}

/// Units a task deducts: Kling 3.0 720p is 0.6 units a second (`kling-pricing-video.md`).
fn units(v: &View) -> String {
    format!("{:.1}", f64::from(v.duration) * 0.6)
}

/// The legacy query answer (`text-to-video.md` query: `task_status` submitted | processing |
/// succeed | failed, `task_status_msg`, `task_result.videos[{id, url, duration}]`).
fn legacy_task(s: &Shared, base: &str, v: &View) -> Value {
    let (task_status, msg, video) = outcome(s, v);
    let mut data = json!({
        "task_id": v.id,
        "task_status": task_status,
        "task_status_msg": msg,
        "task_info": {"external_task_id": v.external_id.clone().unwrap_or_default()},
        "task_result": {},
        "created_at": v.created_ms,
        "updated_at": now_ms(),
    });
    if video {
        data["task_result"] = json!({"videos": [{"id": format!("{}01", v.id), "url": result_url(base, v), "duration": v.duration.to_string()}]});
    }
    if task_status == "succeed" {
        data["final_unit_deduction"] = json!(units(v));
    }
    data
}

async fn legacy_query(State(s): State<Shared>, Path((kind, id)): Path<(String, String)>, h: HeaderMap) -> Response {
    let Some(resource) = legacy_resource(&kind) else { return error(1202) };
    if let Err(r) = gate(&s, &h, Standard::Legacy, Call::Poll).await {
        return r;
    }
    // A task is queried where it was created (each create path has its own query path).
    match observe(&s, Protocol::Kling, Some(resource), &id, true) {
        Some(v) => ok(legacy_task(&s, &base(&s), &v)),
        None => error_with(1203, "task not found"),
    }
}

const ELEMENTS: &str = "v1/general/advanced-custom-elements";

/// `POST /v1/general/advanced-custom-elements` (`kling-omni-3.0-element-mgt.md`): `element_name`
/// (≤ 20), `element_description` (≤ 100) and `reference_type` (`video_refer` | `image_refer`) are
/// required; `image_refer` needs `element_image_list{frontal_image, refer_images[1..3]{image_url}}`,
/// `video_refer` needs `element_video_list{refer_videos[1]{video_url}}`.
fn element_rules(body: &Value) -> Check {
    required_str(body, "element_name")?;
    if body["element_name"].as_str().is_some_and(|n| n.chars().count() > 20) {
        return Err("element_name must not exceed 20 characters".to_owned());
    }
    required_str(body, "element_description")?;
    if body["element_description"].as_str().is_some_and(|n| n.chars().count() > 100) {
        return Err("element_description must not exceed 100 characters".to_owned());
    }
    required_str(body, "reference_type")?;
    one_of(body, "reference_type", &["video_refer", "image_refer"])?;
    if body["reference_type"] == "image_refer" {
        let list = field(body, "element_image_list").ok_or("element_image_list is required for image_refer")?;
        required_str(list, "frontal_image").map_err(|e| format!("element_image_list.{e}"))?;
        image(list, "frontal_image").map_err(|e| format!("element_image_list.{e}"))?;
        let refs = list["refer_images"].as_array().filter(|r| (1..=3).contains(&r.len()));
        let refs = refs.ok_or("element_image_list.refer_images must hold 1 to 3 images")?;
        for r in refs {
            required_str(r, "image_url").map_err(|e| format!("element_image_list.refer_images[].{e}"))?;
            image(r, "image_url").map_err(|e| format!("element_image_list.refer_images[].{e}"))?;
        }
    } else {
        let list = field(body, "element_video_list").ok_or("element_video_list is required for video_refer")?;
        let videos = list["refer_videos"].as_array().filter(|v| v.len() == 1);
        let videos = videos.ok_or("element_video_list.refer_videos must hold 1 video")?;
        for v in videos {
            required_str(v, "video_url").map_err(|e| format!("element_video_list.refer_videos[].{e}"))?;
        }
    }
    Ok(())
}

async fn element_create(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    let parsed = parse_json(&body);
    record_submit(&s, "element", Protocol::Kling, ELEMENTS, parsed.as_ref().unwrap_or(&Value::Null));
    if let Err(r) = gate(&s, &h, Standard::Legacy, Call::Submit).await {
        return r;
    }
    let Some(body) = parsed.filter(Value::is_object) else { return error(1200) };
    if let Err(message) = element_rules(&body) {
        return error_with(1201, &message);
    }
    let external_id = match external_id(&s, field(&body, "external_task_id")) {
        Ok(e) => e,
        Err((code, message)) => return error_with(code, &message),
    };
    let echo = json!({
        "element_name": body["element_name"],
        "element_description": body["element_description"],
        "reference_type": body["reference_type"],
        "element_image_list": field(&body, "element_image_list").cloned().unwrap_or(json!({})),
        "element_video_list": field(&body, "element_video_list").cloned().unwrap_or(json!({})),
        "tag_list": field(&body, "tag_list").cloned().unwrap_or(json!([])),
    });
    let v = accept(
        &s,
        NewTask {
            protocol: Protocol::Kling,
            resource: ELEMENTS,
            model: "advanced-custom-elements".to_owned(),
            duration: 0,
            external_id,
            forced: None,
            echo: Some(echo),
            echo_always: true,
        },
    );
    legacy_created(&v)
}

/// The element id of a finished element task: a number, as the query example shows
/// (`"element_id": 0`).
pub fn element_id(seq: u64) -> u64 {
    1_000_000 + seq
}

async fn element_query(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &h, Standard::Legacy, Call::Poll).await {
        return r;
    }
    let Some(v) = observe(&s, Protocol::Kling, Some(ELEMENTS), &id, true) else {
        return error_with(1203, "task not found");
    };
    let (task_status, msg, _) = outcome(&s, &v);
    let mut data = json!({
        "task_id": v.id,
        "task_status": task_status,
        "task_status_msg": msg,
        "task_info": {"external_task_id": v.external_id.clone().unwrap_or_default()},
        "task_result": {},
        "created_at": v.created_ms,
        "updated_at": now_ms(),
    });
    // An element has no file: a "bad result" element succeeds as a good one would.
    if task_status == "succeed" && !matches!(v.fate, Fate::BadBody) {
        let e = v.echo.as_deref().cloned().unwrap_or(json!({}));
        data["task_result"] = json!({"elements": [{
            "element_id": element_id(v.seq),
            "element_name": e["element_name"],
            "element_description": e["element_description"],
            "reference_type": e["reference_type"],
            "element_image_list": e["element_image_list"],
            "element_video_list": e["element_video_list"],
            "tag_list": e["tag_list"],
            "owned_by": "8001",
            "status": "succeed",
        }]});
        data["final_unit_deduction"] = json!("0");
    }
    ok(data)
}

/// The models each new-standard product serves (pages `kling-omni-3.0-t2v.md`, `-i2v.md`,
/// `-ovg.md`, `kling-3.0-turbo-*.md`, `kling-o1-video.md`, `kling-motion-control-3.0.md`; 2.6
/// and 2.5 Turbo from the changelog of 07/15/2026).
fn new_models(product: &str) -> Option<&'static [&'static str]> {
    match product {
        "text-to-video" | "image-to-video" => Some(&["kling-3.0", "kling-3.0-turbo", "kling-2.6", "kling-2.5-turbo"]),
        "omni-video" => Some(&["kling-3.0-omni", "kling-o1"]),
        "motion-control" => Some(&["kling-3.0", "kling-2.6"]),
        _ => None,
    }
}

/// `settings.duration`: an integer of seconds; 3..15 for 3.0, 3.0 Turbo and 3.0 Omni, 3..10 for
/// O1 and 2.6, 5 or 10 for 2.5 Turbo (`kling-guide-capability-map-video.md`).
fn new_duration(settings: &Value, model: &str) -> Result<u32, String> {
    let allowed = match model {
        "kling-3.0" | "kling-3.0-turbo" | "kling-3.0-omni" => range(3..=15),
        "kling-o1" | "kling-2.6" => range(3..=10),
        _ => vec![5, 10],
    };
    match field(settings, "duration") {
        None => Ok(5),
        Some(d) => d
            .as_u64()
            .and_then(|d| u32::try_from(d).ok())
            .filter(|d| allowed.contains(d))
            .ok_or_else(|| format!("settings.duration must be one of: {}", list(&allowed))),
    }
}

fn new_resolutions(model: &str) -> &'static [&'static str] {
    match model {
        "kling-3.0" | "kling-3.0-omni" => &["720p", "1080p", "4k"],
        _ => &["720p", "1080p"],
    }
}

/// The rules of one new-standard create; the task's duration.
fn new_rules(product: &str, model: &str, body: &Value) -> Result<u32, String> {
    let settings = field(body, "settings").cloned().unwrap_or(json!({}));
    if !settings.is_object() {
        return Err("settings must be an object".to_owned());
    }
    let s = |e: String| format!("settings.{e}");
    one_of(&settings, "resolution", new_resolutions(model)).map_err(s)?;
    one_of(&settings, "aspect_ratio", &["16:9", "9:16", "1:1"]).map_err(s)?;
    let audio: &[&str] = match (product, model) {
        ("motion-control", _) | (_, "kling-o1") => &["original", "off"],
        ("omni-video", _) => &["native", "original", "off"],
        _ => &["native", "off"],
    };
    one_of(&settings, "audio", audio).map_err(s)?;
    if field(&settings, "multi_shot").is_some_and(|m| !m.is_boolean()) {
        return Err("settings.multi_shot must be a boolean".to_owned());
    }
    if product == "text-to-video" {
        required_str(body, "prompt")?;
        if body["prompt"].as_str().is_some_and(|p| p.chars().count() > 3072) {
            return Err("prompt must not exceed 3072 characters".to_owned());
        }
        return new_duration(&settings, model);
    }
    let Some(contents) = body["contents"].as_array().filter(|c| !c.is_empty()) else {
        return Err("contents is required".to_owned());
    };
    let allowed: &[&str] = match (product, model) {
        // "Currently, only First Frame is supported" (3.0 Turbo i2v).
        ("image-to-video", "kling-3.0-turbo") => &["prompt", "first_frame"],
        ("image-to-video", "kling-3.0") => &["prompt", "first_frame", "last_frame", "element"],
        // 2.6 and 2.5 Turbo pages were not read: the sim takes the frames leniently.
        ("image-to-video", _) => &["prompt", "first_frame", "last_frame"],
        ("omni-video", _) => {
            &["prompt", "first_frame", "last_frame", "refer_image", "feature_video", "base_video", "element"]
        }
        _ => &["prompt", "image", "video", "element"],
    };
    let mut count = HashMap::<&str, usize>::new();
    for item in contents {
        let kind = item["type"].as_str().unwrap_or("");
        let Some(kind) = allowed.iter().find(|k| **k == kind) else {
            return Err(format!("contents[].type must be one of: {}", allowed.join(", ")));
        };
        *count.entry(kind).or_default() += 1;
        match *kind {
            "prompt" => required_str(item, "text").map_err(|e| format!("contents[].{e}"))?,
            "element" => {
                required_str(item, "element_id").map_err(|e| format!("contents[].{e}"))?;
                required_str(item, "id").map_err(|e| format!("contents[].{e}"))?;
            }
            _ => required_str(item, "url").map_err(|e| format!("contents[].{e}"))?,
        }
    }
    let n = |k: &str| count.get(k).copied().unwrap_or(0);
    match product {
        "image-to-video" => {
            // "Required in the first_frame, optional in the last_frame"; no last-frame-only video.
            if n("first_frame") != 1 || n("last_frame") > 1 {
                return Err("contents needs exactly one first_frame (and at most one last_frame)".to_owned());
            }
            if n("element") > 3 {
                return Err("contents holds at most 3 elements".to_owned());
            }
            new_duration(&settings, model)
        }
        "omni-video" => {
            let videos = n("feature_video") + n("base_video");
            if videos > 1 {
                return Err("contents holds at most 1 reference video".to_owned());
            }
            if n("last_frame") > 0 && n("first_frame") == 0 {
                return Err("a last_frame needs a first_frame".to_owned());
            }
            if n("base_video") > 0 && n("first_frame") + n("last_frame") > 0 {
                return Err("a base_video cannot have first or last frames".to_owned());
            }
            // `settings.aspect_ratio` is "required when there is no first frame or reference
            // video" yet defaults to 16:9: the docs leave it open, the sim takes the default.
            new_duration(&settings, model)
        }
        _ => {
            // Motion control: an appearance image and a motion video, both required; at most 1
            // element; `settings.character_orientation` required.
            if n("image") != 1 || n("video") != 1 {
                return Err("contents needs one image and one video".to_owned());
            }
            if n("element") > 1 {
                return Err("contents holds at most 1 element".to_owned());
            }
            required_str(&settings, "character_orientation").map_err(s)?;
            one_of(&settings, "character_orientation", &["image", "video"]).map_err(s)?;
            Ok(5)
        }
    }
}

const NEW_TASKS: &str = "tasks";

async fn new_create(
    State(s): State<Shared>,
    Path((product, model)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = parse_json(&body);
    let endpoint = format!("{product}/{model}");
    let Some(models) = new_models(&product) else { return error(1202) };
    record_submit(&s, "kling", Protocol::Kling, &endpoint, parsed.as_ref().unwrap_or(&Value::Null));
    if let Err(r) = gate(&s, &h, Standard::New, Call::Submit).await {
        return r;
    }
    if !models.contains(&model.as_str()) {
        return error_with(1203, &format!("model {model} does not exist"));
    }
    let Some(body) = parsed.filter(Value::is_object) else { return error(1200) };
    let duration = match new_rules(&product, &model, &body) {
        Ok(d) => d,
        Err(message) => return error_with(1201, &message),
    };
    let external_id = match external_id(&s, body.pointer("/options/external_task_id")) {
        Ok(e) => e,
        Err((code, message)) => return error_with(code, &message),
    };
    let v = accept(
        &s,
        NewTask {
            protocol: Protocol::Kling,
            resource: NEW_TASKS,
            model,
            duration,
            external_id,
            forced: None,
            echo: None,
            echo_always: false,
        },
    );
    ok(json!({
        "id": v.id,
        "status": "submitted",
        "create_time": v.created_ms,
        "update_time": v.created_ms,
        "external_id": v.external_id.clone().unwrap_or_default(),
    }))
}

/// One task as `GET /tasks` shows it: `status` submitted | processing | succeeded | failed,
/// `message` (the failure reason), `outputs[{type: "video", id, url, duration}]`, `billing[]`.
fn new_task(s: &Shared, base: &str, v: &View) -> Value {
    let (legacy_status, message, video) = outcome(s, v);
    let task_status = if legacy_status == "succeed" { "succeeded" } else { legacy_status };
    let mut outputs = Vec::new();
    if video {
        outputs.push(json!({
            "type": "video",
            "id": format!("{}01", v.id),
            "url": result_url(base, v),
            "duration": v.duration.to_string(),
        }));
    }
    let billing = if task_status == "succeeded" {
        json!([{"charge_type": "unit", "amount": units(v), "package_type": "video"}])
    } else {
        json!([])
    };
    json!({
        "id": v.id,
        "status": task_status,
        "message": message,
        "create_time": v.created_ms,
        "update_time": now_ms(),
        "external_id": v.external_id.clone().unwrap_or_default(),
        "outputs": outputs,
        "billing": billing,
    })
}

/// `GET /tasks?task_ids=a,b` or `?external_task_ids=...`, "but you cannot use them
/// simultaneously". Ids the account does not have are left out of `data` (the docs leave that
/// case open).
async fn new_query(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>, h: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &h, Standard::New, Call::Poll).await {
        return r;
    }
    let ids = match (q.get("task_ids"), q.get("external_task_ids")) {
        (Some(_), Some(_)) => return error_with(1201, "use task_ids or external_task_ids, not both"),
        (Some(ids), None) | (None, Some(ids)) if !ids.is_empty() => ids.clone(),
        _ => return error_with(1201, "task_ids or external_task_ids is required"),
    };
    let base = base(&s);
    let data: Vec<Value> = ids
        .split(',')
        .filter_map(|id| observe(&s, Protocol::Kling, Some(NEW_TASKS), id.trim(), true))
        .map(|v| new_task(&s, &base, &v))
        .collect();
    ok(Value::Array(data))
}

/// `GET /account/costs?start_time&end_time` (`kling-assets-account-usage.md`): "free to call",
/// both times required; answers the resource packs. The cheapest authenticated call Kling
/// documents, so it serves credential checks.
async fn costs(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>, h: HeaderMap) -> Response {
    lock(&s).stats.credential_checks += 1;
    if let Err(r) = gate(&s, &h, Standard::Legacy, Call::Other).await {
        return r;
    }
    let time = |k: &str| q.get(k).and_then(|t| t.parse::<i64>().ok());
    let (Some(start), Some(end)) = (time("start_time"), time("end_time")) else {
        return error_with(1201, "start_time and end_time are required");
    };
    ok(json!({
        "code": 0,
        "msg": "",
        "resource_pack_subscribe_infos": [{
            "resource_pack_name": "Video Generation - 10,000 entries",
            "resource_pack_id": "509f3fd3d4ab4a3f9eec5db27aa44f27",
            "resource_pack_type": "decreasing_total",
            "total_quantity": 200.0,
            "remaining_quantity": 118.0,
            "purchase_time": start,
            "effective_time": start,
            "invalid_time": end,
            "status": "online",
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(access: &str, secret: &str, iat: i64) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(json!({"iss": access, "exp": iat + 1800, "nbf": iat - 5}).to_string());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_jwt_check_refuses_wrong_keys_and_times_with_kling_codes() {
        let now = 1_000_000;
        assert!(verify_jwt(&jwt("ak", "sk", now), "ak", "sk", now));
        assert_eq!(check_jwt(&jwt("ak", "other", now), "ak", "sk", now), Err(1002), "wrong secret");
        assert_eq!(check_jwt(&jwt("someone", "sk", now), "ak", "sk", now), Err(1002), "wrong issuer");
        assert_eq!(check_jwt(&jwt("ak", "sk", now - 4000), "ak", "sk", now), Err(1004), "expired");
        assert_eq!(check_jwt(&jwt("ak", "sk", now + 60), "ak", "sk", now), Err(1003), "not yet valid");
        assert_eq!(check_jwt("a.b", "ak", "sk", now), Err(1002));
    }

    #[test]
    fn every_code_has_the_status_the_error_table_gives() {
        // kling-get-started-error-codes.md, row by row.
        let table = [
            (1000..=1004, 401),
            (1100..=1102, 429),
            (1103..=1103, 403),
            (1200..=1201, 400),
            (1202..=1203, 404),
            (1300..=1301, 400),
            (1302..=1304, 429),
            (5000..=5000, 500),
            (5001..=5001, 503),
            (5002..=5002, 504),
        ];
        for (codes, http) in table {
            for code in codes {
                assert_eq!(http_status(code), Some(http), "{code}");
            }
        }
        assert_eq!(CODES.len(), 21);
        assert_eq!(http_status(1999), None);
    }

    #[test]
    fn the_custom_element_example_needs_its_reference_type() {
        // The "Create Multi-Image Elements" example of kling-omni-3.0-element-mgt.md.
        let mut body = json!({
            "element_name": "xxx",
            "element_description": "xxx",
            "reference_type": "image_refer",
            "element_image_list": {"frontal_image": "xxx", "refer_images": [{"image_url": "xxx"}, {"image_url": "xxx"}]},
            "callback_url": "xxx",
            "external_task_id": "",
            "tag_list": [{"tag_id": "xxx"}],
        });
        assert_eq!(element_rules(&body), Ok(()));
        body.as_object_mut().unwrap().remove("reference_type");
        assert_eq!(element_rules(&body), Err("reference_type is required".to_owned()));
        let video = json!({"element_name": "a", "element_description": "b", "reference_type": "video_refer"});
        assert!(element_rules(&video).unwrap_err().contains("element_video_list"));
    }

    #[test]
    fn legacy_image2video_takes_raw_base64_or_urls_but_no_data_uri() {
        let ok = json!({"model_name": "kling-v3", "image": "aGVsbG8=", "duration": "5", "mode": "pro"});
        assert_eq!(legacy_rules("image2video", &ok, "kling-v3"), Ok(5));
        let tail_only = json!({"image_tail": "https://x/y.png"});
        assert_eq!(legacy_rules("image2video", &tail_only, "kling-v1"), Ok(5));
        let data_uri = json!({"image": "data:image/png;base64,aGVsbG8="});
        assert!(legacy_rules("image2video", &data_uri, "kling-v3").unwrap_err().contains("data:"));
        let neither = json!({"prompt": "p"});
        assert_eq!(
            legacy_rules("image2video", &neither, "kling-v3"),
            Err("image or image_tail is required".to_owned())
        );
        let number = json!({"image": "x", "duration": 5});
        assert!(legacy_rules("image2video", &number, "kling-v3").unwrap_err().contains("string"));
        let camera = json!({"image": "x", "image_tail": "y", "camera_control": {"type": "down_back"}});
        assert!(legacy_rules("image2video", &camera, "kling-v1").is_err());
    }

    #[test]
    fn legacy_multi_shot_durations_must_add_up() {
        let shots = |d: &str| {
            json!({"model_name": "kling-v3", "prompt": "", "duration": "8", "multi_shot": true, "shot_type": "customize",
                   "multi_prompt": [{"index": 1, "prompt": "a", "duration": "4"}, {"index": 2, "prompt": "b", "duration": d}]})
        };
        assert_eq!(legacy_rules("text2video", &shots("4"), "kling-v3"), Ok(8));
        assert!(legacy_rules("text2video", &shots("3"), "kling-v3").is_err());
        // Without shots the prompt is required.
        let plain = json!({"model_name": "kling-v3", "duration": "5"});
        assert_eq!(legacy_rules("text2video", &plain, "kling-v3"), Err("prompt is required".to_owned()));
        // Older models only take 5 or 10 seconds; kling-v3 takes 3 to 15.
        let three = json!({"prompt": "p", "duration": "3"});
        assert!(legacy_rules("text2video", &three, "kling-v2-6").is_err());
        assert_eq!(legacy_rules("text2video", &three, "kling-v3"), Ok(3));
    }

    #[test]
    fn omni_video_follows_its_list_rules() {
        // The "文生视频" and "首尾帧" examples of omni-video-o1.md.
        let t2v = json!({"model_name": "kling-video-o1", "prompt": "视频中的人跳舞", "mode": "pro", "aspect_ratio": "1:1", "duration": "7"});
        assert_eq!(omni_rules(&t2v, "kling-video-o1"), Ok(7));
        let frames = json!({"model_name": "kling-video-o1", "prompt": "视频中的人跳舞", "mode": "pro",
                            "image_list": [{"image_url": "xxx", "type": "first_frame"}, {"image_url": "xxx", "type": "end_frame"}]});
        assert_eq!(omni_rules(&frames, "kling-video-o1"), Ok(5));
        let no_ratio = json!({"prompt": "p"});
        assert_eq!(omni_rules(&no_ratio, "kling-video-o1"), Err("aspect_ratio is required".to_owned()));
        let edit = json!({"prompt": "p", "video_list": [{"video_url": "v", "refer_type": "base", "keep_original_sound": "yes"}]});
        assert_eq!(omni_rules(&edit, "kling-v3-omni"), Ok(5));
        let two_videos = json!({"prompt": "p", "aspect_ratio": "1:1",
            "video_list": [{"video_url": "v", "refer_type": "feature"}, {"video_url": "w", "refer_type": "feature"}]});
        assert!(omni_rules(&two_videos, "kling-v3-omni").is_err());
        let too_long = json!({"prompt": "p", "aspect_ratio": "1:1", "duration": "15"});
        assert!(omni_rules(&too_long, "kling-video-o1").is_err(), "O1 stops at 10 s");
        assert_eq!(omni_rules(&too_long, "kling-v3-omni"), Ok(15));
    }

    #[test]
    fn new_standard_bodies_from_the_docs_pass_and_broken_ones_do_not() {
        // The request examples of kling-3.0-turbo-t2v.md, kling-3.0-turbo-i2v.md and kling-omni-3.0-i2v.md.
        let turbo_t2v = json!({"prompt": "A girl sat on the train", "options": {"callback_url": "https://xxx/callback",
            "watermark_info": {"enabled": false}, "external_task_id": ""}, "settings": {"duration": 3, "resolution": "720p", "aspect_ratio": "9:16"}});
        assert_eq!(new_rules("text-to-video", "kling-3.0-turbo", &turbo_t2v), Ok(3));
        let turbo_i2v = json!({"contents": [{"type": "prompt", "text": "A girl"}, {"type": "first_frame", "url": "https://x/i.png"}],
            "settings": {"resolution": "1080p", "duration": 10}});
        assert_eq!(new_rules("image-to-video", "kling-3.0-turbo", &turbo_i2v), Ok(10));
        let with_element = json!({"contents": [{"type": "prompt", "text": "A girl"}, {"type": "first_frame", "url": "u"},
            {"type": "last_frame", "url": "u"}, {"type": "element", "element_id": "163", "id": "element_1"}],
            "settings": {"resolution": "1080p", "duration": 10, "audio": "native", "multi_shot": false}});
        assert_eq!(new_rules("image-to-video", "kling-3.0", &with_element), Ok(10));
        assert!(new_rules("image-to-video", "kling-3.0-turbo", &with_element).is_err(), "Turbo takes no last frame");
        let four_k = json!({"prompt": "p", "settings": {"resolution": "4k"}});
        assert!(new_rules("text-to-video", "kling-3.0-turbo", &four_k).is_err(), "Turbo has no 4k");
        assert_eq!(new_rules("text-to-video", "kling-3.0", &four_k), Ok(5));
        let last_only = json!({"contents": [{"type": "last_frame", "url": "u"}]});
        assert!(new_rules("image-to-video", "kling-3.0", &last_only).is_err());
        let motion = json!({"contents": [{"type": "prompt", "text": "t"}, {"type": "image", "url": "i"}, {"type": "video", "url": "v"}],
            "settings": {"character_orientation": "video", "resolution": "1080p", "audio": "original"}});
        assert_eq!(new_rules("motion-control", "kling-3.0", &motion), Ok(5));
        let no_orientation = json!({"contents": [{"type": "image", "url": "i"}, {"type": "video", "url": "v"}]});
        assert!(
            new_rules("motion-control", "kling-3.0", &no_orientation).unwrap_err().contains("character_orientation")
        );
    }
}
