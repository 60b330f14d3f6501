//! The official Kling API. Each catalog model goes where Kling's docs serve it, by
//! the route's `upstream_model` (`endpoint`): legacy paths with `model_name`
//! (`/v1/videos/{text2video,image2video}` for `kling-v3`, `/v1/videos/omni-video`
//! for `kling-v3-omni` and `kling-video-o1`, `/v1/videos/motion-control`), polled
//! at `GET /v1/videos/{kind}/{task_id}`; the new design standard with the model in
//! the path (`/{text-to-video,image-to-video,motion-control,omni-video}/{model}`,
//! e.g. `kling-3.0-turbo`, which has no legacy name), polled at
//! `GET /tasks?task_ids=`; elements at `/v1/general/advanced-custom-elements`.
//! Images go as raw base64, input videos as links Kling fetches. Auth is a JWT
//! (HS256, iss = AccessKey, exp = now + 1800, nbf = now - 5) signed with the
//! SecretKey (legacy paths only), or a static API key (all paths).
//! Every answer is the envelope `{code, message, request_id, data}`; failures are
//! classified by the business `code` (`CODES`, Kling's error-code table), never by
//! the HTTP status alone (a 429 may carry 1303, busy, or 1102, an empty account),
//! and a task refused for its content says so in Kling's own words.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use vidgate_api::catalog::{Quality, ReferenceType, Shape, Sound};
use vidgate_api::create::MultiShot;
use vidgate_api::task::TaskErrorCode;

use super::{Answer, Api, Check, CheckStatus, Failure, Handle, Job, Pace, Poll, ProviderError, Verdict, clip, send};
use crate::secret::Secret;
use crate::util;

#[derive(Debug, Clone)]
pub enum KlingAuth {
    Jwt { access_key: Secret, secret_key: Secret },
    ApiKey(Secret),
}

#[derive(Debug, Clone)]
pub struct Kling {
    pub api: Api,
    pub auth: KlingAuth,
}

/// An HS256 JWT for Kling: `iss` = access key, valid from 5 s ago for 30 minutes.
pub fn jwt(access_key: &str, secret_key: &str, now_secs: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({ "iss": access_key, "exp": now_secs + 1800, "nbf": now_secs - 5 });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(util::hmac_sha256(secret_key.as_bytes(), signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

use TaskErrorCode as E;

/// Kling's business codes (kling.ai/document-api "Error codes", mirrored in
/// `aself101/kling-api` `kling-get-started-error-codes.md`) and what each means
/// for a task. Concurrency (1303) and rate (1302) are retried on the same route
/// with exponential backoff from 1 s, as Kling's concurrency rules ask; auth,
/// account and IP-whitelist trouble (1000-1004, 1100-1103, 1304) and a missing
/// method or model (1202, 1203) are ours to fix, so the task moves on; invalid
/// parameters (1200, 1201) and policy refusals (1300, 1301) are the request's.
pub const CODES: [(i64, Verdict); 21] = [
    (1000, Verdict::NextRoute(E::ServiceUnavailable)),
    (1001, Verdict::NextRoute(E::ServiceUnavailable)),
    (1002, Verdict::NextRoute(E::ServiceUnavailable)),
    (1003, Verdict::NextRoute(E::ServiceUnavailable)),
    (1004, Verdict::NextRoute(E::ServiceUnavailable)),
    (1100, Verdict::NextRoute(E::ServiceUnavailable)),
    (1101, Verdict::NextRoute(E::QuotaExceeded)),
    (1102, Verdict::NextRoute(E::QuotaExceeded)),
    (1103, Verdict::NextRoute(E::ServiceUnavailable)),
    (1200, Verdict::Final(E::InvalidParameters)),
    (1201, Verdict::Final(E::InvalidParameters)),
    (1202, Verdict::NextRoute(E::ServiceError)),
    (1203, Verdict::NextRoute(E::ResourceNotFound)),
    (1300, Verdict::Final(E::ContentPolicyViolation)),
    (1301, Verdict::Final(E::ContentPolicyViolation)),
    (1302, Verdict::Retry(Pace::Throttled, E::ResourceExhausted)),
    (1303, Verdict::Retry(Pace::Throttled, E::ResourceExhausted)),
    (1304, Verdict::NextRoute(E::ServiceUnavailable)),
    (5000, Verdict::Retry(Pace::Brief, E::ServiceError)),
    (5001, Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
    (5002, Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
];

/// `task_status_msg` of a task refused for its content, as Kling sends it
/// (public clients match it verbatim and map it to 1301).
pub const RISK_CONTROL: &str = "Failure to pass the risk control system";

/// What a Kling answer with HTTP `status` and business `code` means. An
/// undocumented code, or none, falls back to the status: a 429 is Kling's
/// throttle (backoff, as for 1302), a 5xx is brief.
pub fn classify(status: u16, code: Option<i64>) -> Verdict {
    if let Some(v) = code.and_then(|c| CODES.iter().find(|(k, _)| *k == c)).map(|(_, v)| *v) {
        return v;
    }
    match status {
        429 => Verdict::Retry(Pace::Throttled, E::ResourceExhausted),
        _ => super::by_status(status),
    }
}

/// What a `failed` task means: Kling's risk-control refusal is the content's
/// fault; it documents no other failure text, so any other is server-side.
pub fn task_failure(task_status_msg: &str) -> Verdict {
    if task_status_msg.trim().eq_ignore_ascii_case(RISK_CONTROL) {
        Verdict::Final(E::ContentPolicyViolation)
    } else {
        Verdict::NextRoute(E::ServiceError)
    }
}

/// The `data` of a successful envelope, or the error the answer means.
fn data(a: &Answer) -> Result<&Value, ProviderError> {
    let code = a.json.as_ref().and_then(|v| v.get("code")).and_then(Value::as_i64);
    let message = clip(a.str_at("/message").unwrap_or(""), 300);
    match code {
        Some(0) if a.is_success() => a
            .json
            .as_ref()
            .and_then(|v| v.get("data"))
            .filter(|d| d.is_object())
            .ok_or_else(|| ProviderError::next_route("kling answered without data")),
        Some(0) => Err(super::by_status(a.status).error(format!("kling answered HTTP {} with code 0", a.status))),
        Some(c) => Err(classify(a.status, Some(c)).error(format!("kling service code {c}: {message}"))),
        None if a.is_success() => Err(ProviderError::next_route("kling sent a body that is not its envelope")),
        None => Err(classify(a.status, None).error(format!("kling answered HTTP {} without a code", a.status))),
    }
}

/// A Kling element id as Kling types it (`long`), when it is one.
fn element_ref(id: &str) -> Value {
    id.parse::<i64>().map_or_else(|_| json!(id), |n| json!(n))
}

impl Kling {
    fn bearer(&self) -> String {
        match &self.auth {
            KlingAuth::Jwt { access_key, secret_key } => {
                jwt(access_key.expose(), secret_key.expose(), util::now_ms() / 1000)
            }
            KlingAuth::ApiKey(k) => k.expose().to_owned(),
        }
    }

    pub(super) fn secrets(&self) -> Vec<&str> {
        match &self.auth {
            KlingAuth::Jwt { access_key, secret_key } => vec![access_key.expose(), secret_key.expose()],
            KlingAuth::ApiKey(k) => vec![k.expose()],
        }
    }

    /// Whether this provider can serve a route of a model of `shape` as
    /// `upstream_model` (checked at start, so a misrouted model never reaches Kling).
    pub fn check_route(&self, upstream_model: &str, shape: Shape) -> Result<(), String> {
        match endpoint(upstream_model, shape) {
            Err(e) => Err(e),
            Ok(Endpoint::New(_)) if matches!(self.auth, KlingAuth::Jwt { .. }) => Err(format!(
                "{upstream_model} is a model of Kling's new API, which takes only an API key (api_key_env or api_key_file)"
            )),
            Ok(_) => Ok(()),
        }
    }
}

/// Models of Kling's new design standard (the model in the path; changelog
/// 07/15/2026): any other `upstream_model` is a legacy `model_name`.
pub const NEW_STANDARD_MODELS: [&str; 6] =
    ["kling-3.0", "kling-3.0-turbo", "kling-3.0-omni", "kling-o1", "kling-2.6", "kling-2.5-turbo"];

/// Legacy `model_name`s served by `/v1/videos/omni-video` (3.0 Omni and O1).
const OMNI_MODEL_NAMES: [&str; 2] = ["kling-v3-omni", "kling-video-o1"];

/// Where a job goes at Kling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// A legacy path `/v1/videos/{kind}` (`text2video`, `image2video`,
    /// `omni-video`, `motion-control`), polled at `/v1/videos/{kind}/{id}`.
    Legacy(&'static str),
    /// The elements API.
    Element,
    /// A new-standard path `/{product}/{model}`, polled at `/tasks?task_ids=`.
    New(&'static str),
}

/// The endpoint that makes a model of `shape` as `upstream_model`, as Kling's
/// docs lay them out: O-series and 3.0 Omni on omni-video, motion control on its
/// own path, Kling 3.0 text and image to video on the legacy routes with
/// `model_name`, Turbo (which has no legacy name) on the new ones.
fn endpoint(upstream_model: &str, shape: Shape) -> Result<Endpoint, String> {
    if shape == Shape::CustomElement {
        return Ok(Endpoint::Element);
    }
    let omni = OMNI_MODEL_NAMES.contains(&upstream_model);
    if NEW_STANDARD_MODELS.contains(&upstream_model) {
        let omni = matches!(upstream_model, "kling-3.0-omni" | "kling-o1");
        return match shape {
            _ if omni => Ok(Endpoint::New("omni-video")),
            Shape::TextToVideo => Ok(Endpoint::New("text-to-video")),
            Shape::ImageToVideo => Ok(Endpoint::New("image-to-video")),
            Shape::MotionControl => Ok(Endpoint::New("motion-control")),
            other => Err(format!("{upstream_model} cannot make a {} (use kling-3.0-omni or kling-o1)", other.as_str())),
        };
    }
    match shape {
        _ if omni => Ok(Endpoint::Legacy("omni-video")),
        Shape::MotionControl => Ok(Endpoint::Legacy("motion-control")),
        Shape::TextToVideo => Ok(Endpoint::Legacy("text2video")),
        Shape::ImageToVideo => Ok(Endpoint::Legacy("image2video")),
        other => Err(format!(
            "{upstream_model} cannot make a {} (Kling serves it on omni-video: kling-v3-omni or kling-video-o1)",
            other.as_str()
        )),
    }
}

/// Kling's `mode`: std is 720p, pro 1080p, and `4k` for the 3.0 models.
fn mode(q: Quality) -> &'static str {
    match q {
        Quality::P720 => "std",
        Quality::P1080 => "pro",
        Quality::P4k => "4k",
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Images go as raw base64 ("no data: prefix"), which every Kling image field takes.
fn b64(img: &[u8]) -> String {
    STANDARD.encode(img)
}

/// The legacy multi-shot fields (`multi_shot`, `shot_type`, `multi_prompt`).
fn legacy_shots(body: &mut Value, r: &crate::job::StoredRequest) {
    match &r.multi_shot {
        Some(MultiShot::Customize(shots)) => {
            body["multi_shot"] = json!(true);
            body["shot_type"] = json!("customize");
            body["multi_prompt"] = json!(
                shots
                    .iter()
                    .map(|s| json!({"index": s.index, "prompt": s.prompt, "duration": s.duration.to_string()}))
                    .collect::<Vec<_>>()
            );
        }
        Some(MultiShot::Intelligence) => {
            body["multi_shot"] = json!(true);
            body["shot_type"] = json!("intelligence");
        }
        None => {}
    }
}

/// A legacy body: `model_name` and the fields of its path (text-to-video.md,
/// image-to-video.md, omni-video-o1.md, motion-control.md).
fn legacy_body(kind: &str, job: &Job<'_>) -> Value {
    let r = job.request;
    let mut body = json!({ "model_name": job.upstream_model, "callback_url": "" });
    if let Some(p) = r.prompt.as_ref().filter(|p| !p.is_empty()) {
        body["prompt"] = json!(p);
    } else if kind == "text2video" {
        // A customized multi-shot carries its prompts in the shots.
        body["prompt"] = json!("");
    }
    if let Some(n) = &r.negative_prompt {
        body["negative_prompt"] = json!(n);
    }
    if r.watermark {
        body["watermark_info"] = json!({ "enabled": true });
    }
    if !job.element_refs.is_empty() {
        body["element_list"] =
            json!(job.element_refs.iter().map(|id| json!({ "element_id": element_ref(id) })).collect::<Vec<_>>());
    }
    let keep_sound = r.keep_original_sound.unwrap_or(true);
    match kind {
        "motion-control" => {
            body["mode"] = json!(mode(r.quality));
            // The subject's appearance: the one reference image.
            if let Some(img) = job.reference_images.first() {
                body["image_url"] = json!(b64(img));
            }
            if let Some(v) = job.video_links.first() {
                body["video_url"] = json!(v);
            }
            if let Some(o) = r.character_orientation {
                body["character_orientation"] = json!(o.as_str());
            }
            body["keep_original_sound"] = json!(yes_no(keep_sound));
        }
        "omni-video" => {
            body["mode"] = json!(mode(r.quality));
            let mut images = Vec::new();
            if let Some(img) = job.start_image {
                images.push(json!({"image_url": b64(img), "type": "first_frame"}));
            }
            if let Some(img) = job.end_image {
                images.push(json!({"image_url": b64(img), "type": "end_frame"}));
            }
            images.extend(job.reference_images.iter().map(|img| json!({"image_url": b64(img)})));
            if !images.is_empty() {
                body["image_list"] = Value::Array(images);
            }
            // A video to edit is the base; one to follow is a feature reference.
            let refer_type = if job.spec.shape == Shape::VideoEdit { "base" } else { "feature" };
            if let Some(v) = job.video_links.first() {
                body["video_list"] =
                    json!([{"video_url": v, "refer_type": refer_type, "keep_original_sound": yes_no(keep_sound)}]);
            }
            if r.duration.is_some() {
                body["duration"] = json!(job.seconds.to_string());
            }
            if let Some(a) = r.aspect_ratio {
                body["aspect_ratio"] = json!(a.as_str());
            }
            if job.video_links.is_empty() {
                body["sound"] = json!(on_off(r.sound == Sound::On));
            }
            legacy_shots(&mut body, r);
        }
        _ => {
            body["mode"] = json!(mode(r.quality));
            body["duration"] = json!(job.seconds.to_string());
            body["sound"] = json!(on_off(r.sound == Sound::On));
            if kind == "text2video" {
                body["aspect_ratio"] = json!(r.aspect_ratio.unwrap_or_default().as_str());
            }
            if let Some(img) = job.start_image {
                body["image"] = json!(b64(img));
            }
            if let Some(img) = job.end_image {
                body["image_tail"] = json!(b64(img));
            }
            legacy_shots(&mut body, r);
        }
    }
    body
}

/// A new-standard body (kling-omni-3.0-t2v.md, -i2v.md, kling-3.0-turbo-*.md):
/// `prompt` or `contents[]`, `settings`, `options`.
fn new_body(product: &str, job: &Job<'_>) -> Value {
    let r = job.request;
    let resolution = r.quality.as_str();
    let mut settings = json!({ "resolution": resolution });
    if r.duration.is_some() {
        settings["duration"] = json!(job.seconds);
    }
    // Turbo has no audio setting: it always makes its own ("With Native Audio").
    let turbo = job.upstream_model.ends_with("-turbo");
    match product {
        "motion-control" => {
            settings["audio"] = json!(if r.keep_original_sound.unwrap_or(true) { "original" } else { "off" });
            if let Some(o) = r.character_orientation {
                settings["character_orientation"] = json!(o.as_str());
            }
        }
        _ if !turbo && job.video_links.is_empty() => {
            settings["audio"] = json!(if r.sound == Sound::On { "native" } else { "off" });
        }
        _ => {}
    }
    let mut options = json!({});
    if r.watermark {
        options["watermark_info"] = json!({ "enabled": true });
    }
    if product == "text-to-video" {
        if let Some(a) = r.aspect_ratio {
            settings["aspect_ratio"] = json!(a.as_str());
        }
        return json!({ "prompt": r.prompt.clone().unwrap_or_default(), "settings": settings, "options": options });
    }
    let mut contents = Vec::new();
    if let Some(p) = r.prompt.as_ref().filter(|p| !p.is_empty()) {
        contents.push(json!({"type": "prompt", "text": p}));
    }
    let image_kind = if product == "motion-control" { "image" } else { "refer_image" };
    if let Some(img) = job.start_image {
        contents.push(json!({"type": "first_frame", "url": b64(img)}));
    }
    if let Some(img) = job.end_image {
        contents.push(json!({"type": "last_frame", "url": b64(img)}));
    }
    contents.extend(job.reference_images.iter().map(|img| json!({"type": image_kind, "url": b64(img)})));
    let video_kind = match (product, job.spec.shape) {
        ("motion-control", _) => "video",
        (_, Shape::VideoEdit) => "base_video",
        _ => "feature_video",
    };
    contents.extend(job.video_links.iter().map(|v| json!({"type": video_kind, "url": v})));
    contents.extend(
        job.element_refs
            .iter()
            .enumerate()
            .map(|(i, id)| json!({"type": "element", "element_id": id, "id": format!("element_{}", i + 1)})),
    );
    if let Some(a) = r.aspect_ratio.filter(|_| product == "omni-video") {
        settings["aspect_ratio"] = json!(a.as_str());
    }
    json!({ "contents": contents, "settings": settings, "options": options })
}

/// `POST /v1/general/advanced-custom-elements`: every field the docs mark
/// required (`element_name`, `element_description`, `reference_type`, and for
/// `image_refer` the frontal image with 1 to 3 reference images, for
/// `video_refer` the one reference video), images as raw base64.
fn element_body(job: &Job<'_>) -> Result<Value, ProviderError> {
    let e = job.request.element.as_ref().ok_or_else(|| {
        ProviderError::rejected(TaskErrorCode::InvalidParameters, "the element definition is missing")
    })?;
    let mut body = json!({
        "element_name": e.name,
        "element_description": e.description,
        "reference_type": e.reference_type.as_str(),
        "callback_url": "",
    });
    match e.reference_type {
        ReferenceType::ImageRefer => {
            let (frontal, refers) = job.element_images.split_first().ok_or_else(|| {
                ProviderError::rejected(TaskErrorCode::InvalidParameters, "the element has no frontal image")
            })?;
            body["element_image_list"] = json!({
                "frontal_image": b64(frontal),
                "refer_images": refers.iter().map(|i| json!({ "image_url": b64(i) })).collect::<Vec<_>>(),
            });
        }
        ReferenceType::VideoRefer => {
            let video = job.video_links.first().ok_or_else(|| {
                ProviderError::rejected(TaskErrorCode::InvalidParameters, "the element has no reference video")
            })?;
            body["element_video_list"] = json!({ "refer_videos": [{ "video_url": video }] });
            if let Some(voice) = &e.voice_id {
                body["element_voice_id"] = json!(voice);
            }
        }
    }
    Ok(body)
}

const ELEMENT: &str = "element";
/// The handle kind of a new-standard task (polled at `/tasks`).
const NEW_TASK: &str = "tasks";

/// Where a handle's task is polled.
fn poll_path(handle: &Handle) -> String {
    match handle.kind.as_str() {
        ELEMENT => format!("/v1/general/advanced-custom-elements/{}", handle.id),
        NEW_TASK => format!("/tasks?task_ids={}", handle.id),
        kind => format!("/v1/videos/{kind}/{}", handle.id),
    }
}

/// A legacy poll's `data` as the task's state.
fn task_state(handle: &Handle, data: &Value) -> Result<Poll, ProviderError> {
    let status = data.get("task_status").and_then(Value::as_str);
    match status {
        Some("submitted") => Ok(Poll::Running { progress: Some(5) }),
        Some("processing") => Ok(Poll::Running { progress: None }),
        Some("succeed") if handle.kind == ELEMENT => Ok(data
            .pointer("/task_result/elements/0/element_id")
            .and_then(|v| v.as_i64().map(|n| n.to_string()).or_else(|| v.as_str().map(str::to_owned)))
            .filter(|id| !id.is_empty())
            .map(|element_id| Poll::Element { element_id })
            .unwrap_or_else(|| Poll::Failed(Failure::new(E::ServiceError, "kling made an element without an id")))),
        Some("succeed") => Ok(data
            .pointer("/task_result/videos/0/url")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(|u| Poll::Succeeded { video_url: u.to_owned() })
            .unwrap_or_else(|| Poll::Failed(Failure::new(E::ServiceError, "kling reported success without a video")))),
        Some("failed") => {
            let msg = data.get("task_status_msg").and_then(Value::as_str).unwrap_or("");
            Ok(Poll::Failed(task_failure(msg).failure(failure_text(msg))))
        }
        Some(other) => {
            Err(ProviderError::next_route(format!("kling sent an unknown task status {:?}", clip(other, 40))))
        }
        None => Err(ProviderError::next_route("kling sent a task without a status")),
    }
}

fn failure_text(msg: &str) -> String {
    if msg.is_empty() { "kling: the generation failed".to_owned() } else { clip(msg, 300) }
}

/// A new-standard query's `data` (an array of tasks) as the state of task `id`:
/// `status` submitted | processing | succeeded | failed, `message`, `outputs[]`.
fn new_task_state(id: &str, data: &Value) -> Result<Poll, ProviderError> {
    let task = data
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t.get("id").and_then(Value::as_str) == Some(id)))
        .ok_or_else(|| ProviderError::next_route("kling's task list does not hold the task"))?;
    match task.get("status").and_then(Value::as_str) {
        Some("submitted") => Ok(Poll::Running { progress: Some(5) }),
        Some("processing") => Ok(Poll::Running { progress: None }),
        Some("succeeded") => Ok(task
            .get("outputs")
            .and_then(Value::as_array)
            .and_then(|o| o.iter().find(|x| x.get("type").and_then(Value::as_str) == Some("video")))
            .and_then(|v| v.get("url").and_then(Value::as_str))
            .filter(|u| !u.is_empty())
            .map(|u| Poll::Succeeded { video_url: u.to_owned() })
            .unwrap_or_else(|| Poll::Failed(Failure::new(E::ServiceError, "kling reported success without a video")))),
        Some("failed") => {
            let msg = task.get("message").and_then(Value::as_str).unwrap_or("");
            Ok(Poll::Failed(task_failure(msg).failure(failure_text(msg))))
        }
        Some(other) => {
            Err(ProviderError::next_route(format!("kling sent an unknown task status {:?}", clip(other, 40))))
        }
        None => Err(ProviderError::next_route("kling sent a task without a status")),
    }
}

impl Kling {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let endpoint = endpoint(job.upstream_model, job.spec.shape).map_err(ProviderError::next_route)?;
        let (kind, path, body) = match endpoint {
            Endpoint::Element => (ELEMENT, "/v1/general/advanced-custom-elements".to_owned(), element_body(job)?),
            Endpoint::Legacy(kind) => (kind, format!("/v1/videos/{kind}"), legacy_body(kind, job)),
            Endpoint::New(product) => (NEW_TASK, format!("/{product}/{}", job.upstream_model), new_body(product, job)),
        };
        let answer = send(self.api.client.post(self.api.url(&path)).bearer_auth(self.bearer()).json(&body)).await?;
        let data = data(&answer)?;
        // Legacy creates answer `task_id`; the new standard `id`.
        let id = data
            .get("task_id")
            .or_else(|| data.get("id"))
            .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|n| n.to_string())))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProviderError::next_route("kling accepted without a task id"))?;
        Ok(Handle { id, kind: kind.to_owned(), ..Default::default() })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let url = self.api.url(&poll_path(handle));
        let answer = send(self.api.client.get(url).bearer_auth(self.bearer())).await?;
        if handle.kind == NEW_TASK {
            let data = answer.json.as_ref().and_then(|v| v.get("data")).filter(|d| d.is_array());
            return match (answer.json.as_ref().and_then(|v| v.get("code")).and_then(Value::as_i64), data) {
                (Some(0), Some(list)) if answer.is_success() => new_task_state(&handle.id, list),
                _ => Err(self::data(&answer)
                    .err()
                    .unwrap_or_else(|| ProviderError::next_route("kling sent no task list"))),
            };
        }
        task_state(handle, data(&answer)?)
    }

    pub async fn cancel(&self, _handle: &Handle) -> Result<(), ProviderError> {
        // The legacy API has no cancel: the task runs out upstream; we stop polling.
        Ok(())
    }

    /// `GET /account/costs` for the last day: free to call, authenticated, and it
    /// creates nothing (Kling's account docs).
    pub async fn check(&self) -> Check {
        let end = util::now_ms();
        let url = self.api.url(&format!("/account/costs?start_time={}&end_time={end}", end - 86_400_000));
        let answer = match send(self.api.client.get(url).bearer_auth(self.bearer())).await {
            Ok(a) => a,
            Err(e) => return Check::new(CheckStatus::Unreachable, e.message()),
        };
        let code = answer.json.as_ref().and_then(|v| v.get("code")).and_then(Value::as_i64);
        let message = clip(answer.str_at("/message").unwrap_or(""), 300);
        match code {
            Some(0) if answer.is_success() => Check::new(CheckStatus::Ok, message),
            Some(c @ 1000..=1004) => Check::new(CheckStatus::BadCredentials, format!("{c}: {message}")),
            Some(c) => Check::new(CheckStatus::Unknown, format!("{c}: {message}")),
            None if answer.status >= 500 => Check::new(CheckStatus::Unreachable, format!("HTTP {}", answer.status)),
            None => Check::new(CheckStatus::Unknown, format!("HTTP {} without Kling's envelope", answer.status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::table_tests::consistent;

    #[test]
    fn the_jwt_is_hs256_with_iss_exp_nbf() {
        let t = jwt("ak", "sk", 1000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims, json!({"iss": "ak", "exp": 2800, "nbf": 995}));
        let sig = URL_SAFE_NO_PAD.encode(util::hmac_sha256(b"sk", format!("{}.{}", parts[0], parts[1]).as_bytes()));
        assert_eq!(parts[2], sig);
    }

    fn answer(status: u16, body: Value) -> Answer {
        Answer { status, headers: Default::default(), json: Some(body) }
    }

    /// Each row of Kling's error-code table, with the HTTP status the docs give
    /// it, and the verdict the issue asks for.
    #[test]
    fn every_documented_code_is_classified_by_the_code_not_the_status() {
        let rows: [(u16, i64, Verdict); 21] = [
            (401, 1000, Verdict::NextRoute(E::ServiceUnavailable)),
            (401, 1001, Verdict::NextRoute(E::ServiceUnavailable)),
            (401, 1002, Verdict::NextRoute(E::ServiceUnavailable)),
            (401, 1003, Verdict::NextRoute(E::ServiceUnavailable)),
            (401, 1004, Verdict::NextRoute(E::ServiceUnavailable)),
            (429, 1100, Verdict::NextRoute(E::ServiceUnavailable)),
            (429, 1101, Verdict::NextRoute(E::QuotaExceeded)),
            (429, 1102, Verdict::NextRoute(E::QuotaExceeded)),
            (403, 1103, Verdict::NextRoute(E::ServiceUnavailable)),
            (400, 1200, Verdict::Final(E::InvalidParameters)),
            (400, 1201, Verdict::Final(E::InvalidParameters)),
            (404, 1202, Verdict::NextRoute(E::ServiceError)),
            (404, 1203, Verdict::NextRoute(E::ResourceNotFound)),
            (400, 1300, Verdict::Final(E::ContentPolicyViolation)),
            (400, 1301, Verdict::Final(E::ContentPolicyViolation)),
            (429, 1302, Verdict::Retry(Pace::Throttled, E::ResourceExhausted)),
            (429, 1303, Verdict::Retry(Pace::Throttled, E::ResourceExhausted)),
            (429, 1304, Verdict::NextRoute(E::ServiceUnavailable)),
            (500, 5000, Verdict::Retry(Pace::Brief, E::ServiceError)),
            (503, 5001, Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
            (504, 5002, Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
        ];
        for (status, code, verdict) in rows {
            assert_eq!(classify(status, Some(code)), verdict, "{code}");
            assert!(consistent(verdict), "{code}");
            // The same code at HTTP 200 (a third party saw 1303 so) means the same.
            assert_eq!(classify(200, Some(code)), verdict, "{code} at 200");
        }
        // A 429 without a code is Kling's throttle; an unknown code falls back on the status.
        assert_eq!(classify(429, None), Verdict::Retry(Pace::Throttled, E::ResourceExhausted));
        assert_eq!(classify(502, Some(9999)), Verdict::Retry(Pace::Brief, E::ServiceUnavailable));
    }

    #[test]
    fn the_documented_error_bodies_become_their_verdicts() {
        // The concurrency example of kling-get-started-concurrency-rules.md.
        let busy = json!({"code": 1303, "message": "parallel task over resource pack limit", "request_id": "9984d27b"});
        assert!(matches!(data(&answer(429, busy.clone())), Err(ProviderError::Retry { pace: Pace::Throttled, .. })));
        assert!(matches!(data(&answer(200, busy)), Err(ProviderError::Retry { pace: Pace::Throttled, .. })));
        let ip = json!({"code": 1304, "message": "Trigger the platform's IP whitelist policy", "request_id": "r"});
        assert!(matches!(data(&answer(429, ip)), Err(ProviderError::NextRoute { .. })));
        let arrears = json!({"code": 1101, "message": "Account in arrears (postpaid scenario)", "request_id": "r"});
        assert!(matches!(data(&answer(429, arrears)), Err(ProviderError::NextRoute { code: E::QuotaExceeded, .. })));
        let policy =
            json!({"code": 1301, "message": "Trigger the platform's content security policy", "request_id": "r"});
        assert!(matches!(
            data(&answer(400, policy)),
            Err(ProviderError::Rejected(Failure { code: E::ContentPolicyViolation, .. }))
        ));
        // The live text2video create answer (api-specs 2.4).
        let created = json!({"code": 0, "message": "SUCCEED", "request_id": "r", "data": {"task_id": "867283741759111202",
            "task_status": "submitted", "task_info": {"external_task_id": "x"}, "created_at": 1, "updated_at": 1}});
        assert_eq!(data(&answer(200, created)).unwrap()["task_id"], "867283741759111202");
        // Not the envelope at all: a proxy's page, a truncated body.
        let page = Answer { status: 200, headers: Default::default(), json: None };
        assert!(matches!(data(&page), Err(ProviderError::NextRoute { .. })));
        let gateway = Answer { status: 502, headers: Default::default(), json: None };
        assert!(matches!(data(&gateway), Err(ProviderError::Retry { pace: Pace::Brief, .. })));
    }

    #[test]
    fn a_risk_control_refusal_is_final_and_other_failures_move_on() {
        let handle = Handle { id: "1".to_owned(), kind: "image2video".to_owned(), ..Default::default() };
        let failed =
            |msg: &str| json!({"task_id": "1", "task_status": "failed", "task_status_msg": msg, "task_result": {}});
        assert_eq!(
            task_state(&handle, &failed(RISK_CONTROL)),
            Ok(Poll::Failed(Failure::new(E::ContentPolicyViolation, RISK_CONTROL)))
        );
        // Words that merely sound like a policy are not Kling's refusal.
        assert!(matches!(
            task_state(&handle, &failed("safety check of the server failed")),
            Ok(Poll::Failed(Failure { code: E::ServiceError, .. }))
        ));
        assert_eq!(task_failure(""), Verdict::NextRoute(E::ServiceError));
    }

    #[test]
    fn a_success_without_the_documented_result_fails_the_attempt() {
        let handle = Handle { id: "1".to_owned(), kind: "text2video".to_owned(), ..Default::default() };
        let no_video = json!({"task_id": "1", "task_status": "succeed", "task_result": {}});
        assert!(matches!(task_state(&handle, &no_video), Ok(Poll::Failed(Failure { code: E::ServiceError, .. }))));
        let wrong_type = json!({"task_id": "1", "task_status": 3});
        assert!(matches!(task_state(&handle, &wrong_type), Err(ProviderError::NextRoute { .. })));
        let element = Handle { kind: ELEMENT.to_owned(), ..handle };
        let made =
            json!({"task_status": "succeed", "task_result": {"elements": [{"element_id": 0, "status": "succeed"}]}});
        assert_eq!(task_state(&element, &made), Ok(Poll::Element { element_id: "0".to_owned() }));
    }

    #[test]
    fn each_model_goes_to_the_endpoint_kling_serves_it_on() {
        use Shape::*;
        let cases = [
            ("kling-v3", TextToVideo, Ok(Endpoint::Legacy("text2video"))),
            ("kling-v3", ImageToVideo, Ok(Endpoint::Legacy("image2video"))),
            ("kling-v3", MotionControl, Ok(Endpoint::Legacy("motion-control"))),
            ("kling-v3-omni", TextToVideo, Ok(Endpoint::Legacy("omni-video"))),
            ("kling-v3-omni", VideoEdit, Ok(Endpoint::Legacy("omni-video"))),
            ("kling-video-o1", ReferenceToVideo, Ok(Endpoint::Legacy("omni-video"))),
            ("kling-3.0-turbo", TextToVideo, Ok(Endpoint::New("text-to-video"))),
            ("kling-3.0-turbo", ImageToVideo, Ok(Endpoint::New("image-to-video"))),
            ("kling-3.0", MotionControl, Ok(Endpoint::New("motion-control"))),
            ("kling-3.0-omni", VideoEdit, Ok(Endpoint::New("omni-video"))),
            ("kling-v3", CustomElement, Ok(Endpoint::Element)),
        ];
        for (model, shape, expected) in cases {
            assert_eq!(endpoint(model, shape), expected, "{model} {shape}");
        }
        // Only the omni models edit or follow a video.
        assert!(endpoint("kling-v3", VideoEdit).is_err());
        assert!(endpoint("kling-3.0-turbo", ReferenceToVideo).is_err());
    }

    #[test]
    fn a_new_standard_task_list_is_read_as_the_task_state() {
        // The query answer of kling-omni-3.0-t2v.md: `data` is an array of tasks.
        let done = json!([{"id": "913827032734642185", "status": "succeeded", "message": "", "create_time": 1,
            "update_time": 2, "external_id": "", "outputs": [{"type": "video", "id": "v1",
            "url": "https://cdn.klingai.com/x.mp4", "duration": "5"}], "billing": []}]);
        assert_eq!(
            new_task_state("913827032734642185", &done),
            Ok(Poll::Succeeded { video_url: "https://cdn.klingai.com/x.mp4".to_owned() })
        );
        let refused = json!([{"id": "1", "status": "failed", "message": RISK_CONTROL, "outputs": []}]);
        assert!(matches!(
            new_task_state("1", &refused),
            Ok(Poll::Failed(Failure { code: E::ContentPolicyViolation, .. }))
        ));
        assert!(new_task_state("2", &refused).is_err(), "a list without the task is no answer");
    }

    #[test]
    fn element_ids_go_upstream_as_kling_types_them() {
        assert_eq!(element_ref("1000042"), json!(1000042));
        assert_eq!(element_ref("abc"), json!("abc"));
    }
}
