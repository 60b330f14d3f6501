//! Replicate's HTTP API as its docs and SDKs describe it. Sources: `replicate/replicate-python`
//! (`replicate/exceptions.py`: errors are RFC 7807 problem details `{type, title, status, detail,
//! instance}`; `prediction.py`; `account.py`: `GET /v1/account`); replicate.com's docs pages
//! "Predictions" (the prediction object) and "Rate limits" (the 429 body); the
//! `kwaivgi/kling-v3-video`, `kwaivgi/kling-v3-omni-video` and `kwaivgi/kling-o1` version API
//! pages (input schemas, output a URI string); public error
//! bodies in `replicate/replicate-javascript#342` (402), `#347` (404 on the models route),
//! `replicate/replicate-python#47` (401), and captured 422 "Input validation failed" bodies with
//! `invalid_fields`.
//!
//! Guarantees: `POST /v1/models/{owner}/{name}/predictions` answers 201 with a prediction;
//! predictions go `starting` → `processing` → `succeeded` | `failed` | `canceled`; every error
//! is `application/problem+json` in the shape Replicate sends for that status: 401, 402 (billing
//! required), 403, 404 (model not found), 422 naming the invalid input, 429.

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

/// The Kling models Replicate hosts under Kuaishou's `kwaivgi` account (seen in public clients).
pub const DEFAULT_MODELS: &[&str] = &[
    "kwaivgi/kling-v3-video",
    "kwaivgi/kling-v3-omni-video",
    "kwaivgi/kling-o1",
    "kwaivgi/kling-v2.6",
    "kwaivgi/kling-v2.5-turbo-pro",
];

/// A failed prediction refused for its content: Replicate's E005 text, as public logs show it.
pub const SENSITIVE: &str = "The input or output was flagged as sensitive (E005)";

/// A failed prediction for a server-side reason, Replicate's retryable "PA" text.
pub const INTERRUPTED: &str = "Prediction interrupted; please retry (code: PA)";

/// Replicate's 402 body (replicate-javascript#342).
pub const BILLING_REQUIRED: &str = "You need to set up billing to run this model. Go to https://replicate.com/account/billing#billing to set it up. If you have recently set up billing, please wait a few minutes before trying again.";

/// A problem details answer (`application/problem+json`): RFC 7807, the format
/// replicate-python's `ReplicateError` reads.
fn problem(http: u16, body: Value) -> Response {
    (status(http), [("content-type", "application/problem+json")], body.to_string()).into_response()
}

fn not_found() -> Response {
    problem(404, json!({"detail": "The requested resource could not be found.", "status": 404}))
}

fn unauthenticated(missing: bool) -> Response {
    let detail = if missing {
        "You did not pass an authentication token"
    } else {
        "You did not pass a valid authentication token"
    };
    problem(401, json!({"title": "Unauthenticated", "detail": detail, "status": 401}))
}

/// The body Replicate answers status `st` with. 401, 402, 404 and 429 as public sources show
/// them; Replicate publishes no 403 or 5xx body: those are problem details with our wording.
fn status_problem(st: u16) -> Response {
    match st {
        401 => unauthenticated(false),
        402 => problem(402, json!({"title": "Billing required", "detail": BILLING_REQUIRED, "status": 402})),
        403 => problem(
            403,
            json!({"title": "Forbidden", "detail": "You do not have permission to perform this action.", "status": 403}),
        ),
        404 => not_found(),
        422 => invalid(&[("invalid", "input", "input is invalid")]),
        429 => problem(429, json!({"detail": "Request was throttled. Your rate limit resets in ~30s."})),
        other => problem(
            other,
            json!({"title": status(other).canonical_reason().unwrap_or("Error"), "detail": "Internal server error", "status": other}),
        ),
    }
}

fn refusal(r: Refusal, missing: bool) -> Response {
    match r {
        Refusal::Unauthorized => unauthenticated(missing),
        Refusal::Fault(Fault::Malformed | Fault::Hang) => malformed(),
        Refusal::Down(st) => status_problem(st),
        Refusal::Fault(f) => status_problem(f.http_status()),
    }
}

/// 422 "Input validation failed": `detail` lists each problem as `- {field}: {description}`,
/// `invalid_fields` holds `{type, field, description}` (as captured from api.replicate.com).
fn invalid(fields: &[(&str, &str, &str)]) -> Response {
    let detail: String = fields.iter().map(|(_, f, d)| format!("- {f}: {d}\n")).collect();
    let items: Vec<Value> = fields.iter().map(|(t, f, d)| json!({"type": t, "field": f, "description": d})).collect();
    problem(422, json!({"detail": detail, "status": 422, "title": "Input validation failed", "invalid_fields": items}))
}

/// `Authorization: Bearer <token>` (the older docs' `Token <token>` too). `Err(true)` when no
/// token came at all.
fn authorize(s: &Shared, h: &HeaderMap) -> Result<(), bool> {
    let token = lock(s).config.replicate_token.clone();
    let Some(value) = h.get("authorization").and_then(|v| v.to_str().ok()) else { return Err(true) };
    let given = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("Token ")).unwrap_or("");
    if !token.is_empty() && given == token { Ok(()) } else { Err(given.is_empty()) }
}

async fn gate(s: &Shared, h: &HeaderMap, call: Call) -> Result<(), Response> {
    let auth = authorize(s, h);
    let missing = auth.err().unwrap_or(false);
    admit(s, Protocol::Replicate, call, auth.is_ok()).await.map_err(|r| refusal(r, missing))
}

pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/models/{owner}/{name}/predictions", post(create))
        .route("/v1/predictions/{id}", get(get_prediction))
        .route("/v1/predictions/{id}/cancel", post(cancel))
        .route("/v1/account", get(account))
        .fallback(|| async { not_found() })
}

/// `(type, field, description)` of one invalid input.
type Problem = (&'static str, String, String);

/// The input checks of a model. `kwaivgi/kling-v3-video` follows its version's schema: `prompt`
/// required (≤ 2500), `mode` standard | pro, `aspect_ratio` 16:9 | 9:16 | 1:1, `duration` an
/// integer 3..15, `generate_audio` a boolean, `negative_prompt`, `start_image`, `end_image`,
/// `multi_prompt` strings. The other models' schemas were not retrieved: only `prompt` is
/// required of them.
fn check_input(model: &str, input: &Value) -> Vec<Problem> {
    let mut problems = Vec::new();
    let present = |k: &str| input.get(k).filter(|v| !v.is_null());
    if present("prompt").and_then(Value::as_str).is_none_or(str::is_empty) {
        problems.push(("required", "input".to_owned(), "prompt is required".to_owned()));
    }
    if matches!(model, "kwaivgi/kling-v3-omni-video" | "kwaivgi/kling-o1") {
        omni_input(model, input, &mut problems);
        return problems;
    }
    if model != "kwaivgi/kling-v3-video" {
        return problems;
    }
    let enums: [(&str, &[&str]); 2] = [("mode", &["standard", "pro"]), ("aspect_ratio", &["16:9", "9:16", "1:1"])];
    for (key, allowed) in enums {
        if let Some(v) = present(key)
            && !v.as_str().is_some_and(|v| allowed.contains(&v))
        {
            let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
            let description = format!("{key} must be one of the following: {}", quoted.join(", "));
            problems.push(("enum", format!("input.{key}"), description));
        }
    }
    for key in ["prompt", "negative_prompt", "start_image", "end_image", "multi_prompt"] {
        if present(key).is_some_and(|v| !v.is_string()) {
            problems.push(("invalid_type", format!("input.{key}"), "Invalid type. Expected: string".to_owned()));
        }
    }
    if present("generate_audio").is_some_and(|v| !v.is_boolean()) {
        problems.push((
            "invalid_type",
            "input.generate_audio".to_owned(),
            "Invalid type. Expected: boolean".to_owned(),
        ));
    }
    if let Some(d) = present("duration") {
        match d.as_u64() {
            None => problems.push((
                "invalid_type",
                "input.duration".to_owned(),
                "Invalid type. Expected: integer".to_owned(),
            )),
            Some(d) if d < 3 => problems.push((
                "number_gte",
                "input.duration".to_owned(),
                "Must be greater than or equal to 3".to_owned(),
            )),
            Some(d) if d > 15 => problems.push((
                "number_lte",
                "input.duration".to_owned(),
                "Must be less than or equal to 15".to_owned(),
            )),
            Some(_) => {}
        }
    }
    problems
}

/// The Omni models' inputs, from their version API pages
/// (replicate.com/kwaivgi/kling-v3-omni-video/versions/1d449e25.../api and
/// replicate.com/kwaivgi/kling-o1/versions/6d5f2d4b.../api): `mode` standard | pro
/// (`std` | `pro` on kling-o1), `video_reference_type` feature | base, `aspect_ratio`
/// 16:9 | 9:16 | 1:1, `reference_video` and the images strings, `reference_images` an
/// array, `keep_original_sound` and `generate_audio` (kling-v3-omni-video only)
/// booleans, `duration` an integer 3..15 (kling-o1: 3..10); `video_reference_type`
/// needs a `reference_video`, and generated audio is "Mutually exclusive with
/// reference video".
fn omni_input(model: &str, input: &Value, problems: &mut Vec<Problem>) {
    let present = |k: &str| input.get(k).filter(|v| !v.is_null());
    let o1 = model == "kwaivgi/kling-o1";
    let modes: &[&str] = if o1 { &["std", "pro"] } else { &["standard", "pro"] };
    let enums: [(&str, &[&str]); 3] =
        [("mode", modes), ("video_reference_type", &["feature", "base"]), ("aspect_ratio", &["16:9", "9:16", "1:1"])];
    for (key, allowed) in enums {
        if let Some(v) = present(key)
            && !v.as_str().is_some_and(|v| allowed.contains(&v))
        {
            let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
            let description = format!("{key} must be one of the following: {}", quoted.join(", "));
            problems.push(("enum", format!("input.{key}"), description));
        }
    }
    for key in ["prompt", "start_image", "end_image", "reference_video"] {
        if present(key).is_some_and(|v| !v.is_string()) {
            problems.push(("invalid_type", format!("input.{key}"), "Invalid type. Expected: string".to_owned()));
        }
    }
    if present("reference_images").is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
        problems.push((
            "invalid_type",
            "input.reference_images".to_owned(),
            "Invalid type. Expected: array".to_owned(),
        ));
    }
    let booleans: &[&str] = if o1 { &["keep_original_sound"] } else { &["keep_original_sound", "generate_audio"] };
    for key in booleans {
        if present(key).is_some_and(|v| !v.is_boolean()) {
            problems.push(("invalid_type", format!("input.{key}"), "Invalid type. Expected: boolean".to_owned()));
        }
    }
    let top = if o1 { 10 } else { 15 };
    if let Some(d) = present("duration") {
        match d.as_u64() {
            None => problems.push((
                "invalid_type",
                "input.duration".to_owned(),
                "Invalid type. Expected: integer".to_owned(),
            )),
            Some(d) if d < 3 => problems.push((
                "number_gte",
                "input.duration".to_owned(),
                "Must be greater than or equal to 3".to_owned(),
            )),
            Some(d) if d > top => problems.push((
                "number_lte",
                "input.duration".to_owned(),
                format!("Must be less than or equal to {top}"),
            )),
            Some(_) => {}
        }
    }
    let video = present("reference_video").is_some();
    if present("video_reference_type").is_some() && !video {
        problems.push((
            "required",
            "input".to_owned(),
            "reference_video is required with video_reference_type".to_owned(),
        ));
    }
    if video && present("generate_audio").and_then(Value::as_bool) == Some(true) {
        let why = "generate_audio is mutually exclusive with reference_video".to_owned();
        problems.push(("invalid", "input.generate_audio".to_owned(), why));
    }
}

/// A version id for a model (the official-model route hides it; predictions still carry one).
fn version(model: &str) -> String {
    let seed = model.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    (0..4).map(|k| format!("{:016x}", crate::mix(seed.wrapping_add(k)))).collect()
}

/// The prediction object (replicate.com "Predictions"): `id`, `model`, `version`, `input`,
/// `logs`, `output`, `error`, `status`, `created_at`, `started_at`, `completed_at`, `urls`,
/// `metrics`.
fn prediction(base: &str, v: &View, st: &str, output: Value, error: Value) -> Value {
    let get = format!("{base}/replicate/v1/predictions/{}", v.id);
    let started = st != "starting";
    let done = matches!(st, "succeeded" | "failed" | "canceled");
    json!({
        "id": v.id,
        "model": v.model,
        "version": version(&v.model),
        "input": v.echo.as_deref().cloned().unwrap_or(json!({})),
        "logs": "",
        "output": output,
        "data_removed": false,
        "error": error,
        "status": st,
        "created_at": rfc3339(v.created_ms),
        "started_at": if started { json!(rfc3339(v.created_ms + 500)) } else { Value::Null },
        "completed_at": if done { json!(rfc3339(crate::now_ms())) } else { Value::Null },
        "urls": {"get": get, "cancel": format!("{get}/cancel"), "web": format!("https://replicate.com/p/{}", v.id)},
        "metrics": if st == "succeeded" { json!({"predict_time": f64::from(v.duration) * 10.0}) } else { json!({}) },
    })
}

/// Where a prediction stands, as Replicate shows it.
fn state(s: &Shared, base: &str, v: &View) -> Value {
    if v.cancelled {
        return prediction(base, v, "canceled", Value::Null, Value::Null);
    }
    match (v.phase, &v.fate) {
        (Phase::Queued, _) => prediction(base, v, "starting", Value::Null, Value::Null),
        (Phase::Running, _) | (_, Fate::Stuck) => prediction(base, v, "processing", Value::Null, Value::Null),
        // kling-v3-video's output schema: `{"format": "uri", "type": "string"}`.
        (Phase::Finished, Fate::Succeed | Fate::BadResult) => {
            prediction(base, v, "succeeded", json!(result_url(base, v)), Value::Null)
        }
        (Phase::Finished, Fate::BadBody) => prediction(base, v, "succeeded", Value::Null, Value::Null),
        (Phase::Finished, Fate::Refuse) => prediction(base, v, "failed", Value::Null, json!(SENSITIVE)),
        (Phase::Finished, Fate::ServerFail | Fate::Invalid(_)) => {
            prediction(base, v, "failed", Value::Null, json!(fail_message(s, INTERRUPTED)))
        }
    }
}

async fn create(
    State(s): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let model = format!("{owner}/{name}");
    let parsed = parse_json(&body);
    record_submit(&s, "replicate", Protocol::Replicate, &model, parsed.as_ref().unwrap_or(&Value::Null));
    if let Err(r) = gate(&s, &h, Call::Submit).await {
        return r;
    }
    if !lock(&s).config.replicate_models.contains(&model) {
        return not_found();
    }
    let Some(input) = parsed.as_ref().and_then(|b| b.get("input")).filter(|i| i.is_object()).cloned() else {
        return invalid(&[("required", "", "input is required")]);
    };
    let problems = check_input(&model, &input);
    if !problems.is_empty() {
        let fields: Vec<(&str, &str, &str)> = problems.iter().map(|(t, f, d)| (*t, f.as_str(), d.as_str())).collect();
        return invalid(&fields);
    }
    let duration = input.get("duration").and_then(Value::as_u64).and_then(|d| u32::try_from(d).ok()).unwrap_or(5);
    let v = accept(
        &s,
        NewTask {
            protocol: Protocol::Replicate,
            resource: "predictions",
            model,
            duration,
            external_id: None,
            forced: None,
            echo: Some(input),
            echo_always: true,
        },
    );
    let body = prediction(&base(&s), &v, "starting", Value::Null, Value::Null);
    (status(201), axum::Json(body)).into_response()
}

async fn get_prediction(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &h, Call::Poll).await {
        return r;
    }
    match observe(&s, Protocol::Replicate, None, &id, true) {
        Some(v) => axum::Json(state(&s, &base(&s), &v)).into_response(),
        None => not_found(),
    }
}

/// `POST /v1/predictions/{id}/cancel`: the prediction, canceled unless it had already ended.
async fn cancel(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &h, Call::Other).await {
        return r;
    }
    let Some(v) = observe(&s, Protocol::Replicate, None, &id, false) else { return not_found() };
    if v.phase != Phase::Finished {
        crate::cancel(&s, Protocol::Replicate, &id);
    }
    match observe(&s, Protocol::Replicate, None, &id, false) {
        Some(v) => axum::Json(state(&s, &base(&s), &v)).into_response(),
        None => not_found(),
    }
}

/// `GET /v1/account` (replicate-python `accounts.current()`): `{type, username, name,
/// github_url}`. Creates nothing: the credential check.
async fn account(State(s): State<Shared>, h: HeaderMap) -> Response {
    lock(&s).stats.credential_checks += 1;
    if let Err(r) = gate(&s, &h, Call::Other).await {
        return r;
    }
    axum::Json(json!({"type": "user", "username": "vidgate-sim", "name": "vidgate sim", "github_url": null}))
        .into_response()
}

/// `2023-09-08T16:19:34.765Z` from Unix milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // The predictions page's example, 2023-09-08T16:19:34.765994Z, at millisecond precision.
        assert_eq!(rfc3339(1_694_189_974_765), "2023-09-08T16:19:34.765Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn kling_v3_inputs_are_checked_against_the_version_schema() {
        let good = json!({"prompt": "p", "mode": "pro", "duration": 5, "generate_audio": true, "start_image": "data:image/png;base64,AA"});
        assert!(check_input("kwaivgi/kling-v3-video", &good).is_empty());
        let bad = json!({"mode": "1080p", "duration": "5"});
        let problems = check_input("kwaivgi/kling-v3-video", &bad);
        let fields: Vec<&str> = problems.iter().map(|p| p.1.as_str()).collect();
        assert_eq!(fields, ["input", "input.mode", "input.duration"]);
        assert_eq!(problems[0].2, "prompt is required");
        let long = json!({"prompt": "p", "duration": 20});
        assert_eq!(check_input("kwaivgi/kling-v3-video", &long)[0].0, "number_lte");
    }

    #[test]
    fn omni_inputs_are_checked_against_their_version_schemas() {
        let edit = json!({"prompt": "p", "reference_video": "https://x/v.mp4", "video_reference_type": "base",
            "keep_original_sound": true, "mode": "pro", "reference_images": ["data:image/png;base64,AA"]});
        assert!(check_input("kwaivgi/kling-v3-omni-video", &edit).is_empty());
        // kling-o1 spells standard `std`; the 3.0 Omni model `standard`.
        let std = json!({"prompt": "p", "mode": "std"});
        assert!(check_input("kwaivgi/kling-o1", &std).is_empty());
        assert_eq!(check_input("kwaivgi/kling-v3-omni-video", &std)[0].1, "input.mode");
        let typeless = json!({"prompt": "p", "video_reference_type": "base"});
        assert_eq!(
            check_input("kwaivgi/kling-o1", &typeless)[0].2,
            "reference_video is required with video_reference_type"
        );
        let loud = json!({"prompt": "p", "reference_video": "https://x/v.mp4", "generate_audio": true});
        assert_eq!(check_input("kwaivgi/kling-v3-omni-video", &loud)[0].1, "input.generate_audio");
        let long = json!({"prompt": "p", "duration": 12});
        assert!(check_input("kwaivgi/kling-v3-omni-video", &long).is_empty());
        assert_eq!(check_input("kwaivgi/kling-o1", &long)[0].0, "number_lte");
    }
}
