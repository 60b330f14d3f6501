//! fal's queue API: `POST {queue}/{model_id}` with `Authorization: Key <key>` answers
//! `request_id`, `status_url`, `response_url`, `cancel_url` (used as given: they live
//! under the app, not the full model id); the status goes `IN_QUEUE` -> `IN_PROGRESS`
//! -> `COMPLETED`, and the result is `{"video": {"url"}}`. Standard and pro are
//! different fal endpoints: the route names one per quality. Images are uploaded to
//! fal's storage first (`POST {storage}/storage/upload/initiate`, then `PUT` the
//! bytes), which is how fal's own client sends binary inputs; the input then holds
//! the file's URL. Failures come in fal's two documented shapes, model errors
//! `{"detail": [{loc, msg, type, ...}]}` (with `X-Fal-Retryable`) and request errors
//! `{"detail": "<text>", "error_type"}` (with `X-Fal-Error-Type`); `classify` reads
//! `detail[].type`, then the error type, then `X-Fal-Retryable`, then the HTTP
//! status, and never the text. fal echoes the whole input (prompt and images) in
//! `detail[].input`: it never reaches a message or a log.

use serde_json::{Value, json};
use vidgate_api::catalog::{ModelSpec, Shape, Sound};
use vidgate_api::task::TaskErrorCode;

use super::{Answer, Api, Check, CheckStatus, Failure, Handle, Job, Pace, Poll, ProviderError, Verdict, clip, send};
use crate::secret::Secret;

/// fal's public hosts: the queue, storage and platform APIs.
pub const QUEUE_URL: &str = "https://queue.fal.run";
pub const STORAGE_URL: &str = "https://rest.fal.ai";
pub const PLATFORM_URL: &str = "https://api.fal.ai";

#[derive(Debug, Clone)]
pub struct Fal {
    pub api: Api,
    pub key: Secret,
    pub storage_url: String,
    pub platform_url: String,
}

use TaskErrorCode as E;

/// fal's documented error types (the "Model Errors" and "Request Error Types"
/// pages) and what each means for a task. Content refusals and images the model
/// cannot use are the request's; everything else is fal's (or our mapping's)
/// and moves on; a runner that could not take the request is worth one more
/// try at the same route.
pub const ERROR_TYPES: [(&str, Verdict); 26] = [
    // Model errors.
    ("content_policy_violation", Verdict::Final(E::ContentPolicyViolation)),
    ("image_too_small", Verdict::Final(E::ImageProcessingError)),
    ("image_too_large", Verdict::Final(E::ImageProcessingError)),
    ("image_load_error", Verdict::Final(E::ImageProcessingError)),
    ("face_detection_error", Verdict::Final(E::ImageProcessingError)),
    ("file_too_large", Verdict::Final(E::ImageProcessingError)),
    // The file is one we uploaded: fetching it is fal's business, not the image's.
    ("file_download_error", Verdict::NextRoute(E::ServiceError)),
    ("no_media_generated", Verdict::NextRoute(E::GenerationFailedNoContent)),
    ("generation_timeout", Verdict::NextRoute(E::GenerationTimeout)),
    ("internal_server_error", Verdict::NextRoute(E::ServiceError)),
    ("downstream_service_error", Verdict::NextRoute(E::ServiceError)),
    ("downstream_service_unavailable", Verdict::NextRoute(E::ServiceUnavailable)),
    ("feature_not_supported", Verdict::NextRoute(E::ServiceError)),
    // Request errors.
    ("request_timeout", Verdict::Retry(Pace::Brief, E::GenerationTimeout)),
    ("startup_timeout", Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
    ("runner_scheduling_failure", Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
    ("runner_connection_timeout", Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
    ("runner_disconnected", Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
    ("runner_connection_refused", Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
    ("runner_connection_error", Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
    ("runner_incomplete_response", Verdict::Retry(Pace::Brief, E::ServiceError)),
    ("runner_server_error", Verdict::Retry(Pace::Brief, E::ServiceError)),
    ("internal_error", Verdict::Retry(Pace::Brief, E::ServiceError)),
    ("client_disconnected", Verdict::NextRoute(E::ServiceError)),
    ("client_cancelled", Verdict::NextRoute(E::ServiceError)),
    ("bad_request", Verdict::NextRoute(E::ServiceError)),
];

fn by_type(t: &str) -> Option<Verdict> {
    ERROR_TYPES.iter().find(|(name, _)| *name == t).map(|(_, v)| *v)
}

/// A fal failure, read from its documented fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub verdict: Verdict,
    /// The type's name, fal's `msg` and the fields it points at; never `input`.
    pub message: String,
    /// Whether the answer carried fal's own error fields (else only its status spoke).
    pub typed: bool,
}

/// The first model error item: `{loc, msg, type}`; its `input` is not read.
fn first_item(a: &Answer) -> Option<&Value> {
    a.json.as_ref()?.get("detail")?.as_array()?.iter().find(|i| i.get("type").is_some_and(Value::is_string))
}

/// `detail[].type`, then `error_type` (body or `X-Fal-Error-Type`), then
/// `X-Fal-Retryable`, then the HTTP status.
pub fn classify(a: &Answer) -> Classified {
    let item = first_item(a);
    let item_type = item.and_then(|i| i.get("type")).and_then(Value::as_str);
    let error_type = a.str_at("/error_type").or_else(|| a.header("x-fal-error-type"));
    let retryable = a.header("x-fal-retryable").map(|v| v.trim().eq_ignore_ascii_case("true"));
    let message = match (item, item_type) {
        (Some(i), Some(t)) => {
            let msg = i.get("msg").and_then(Value::as_str).unwrap_or("");
            let at: Vec<&str> =
                i.get("loc").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            let at = at.iter().filter(|p| **p != "body").copied().collect::<Vec<_>>().join(".");
            let at = if at.is_empty() { String::new() } else { format!(" (at {at})") };
            format!("fal {t}: {}{at}", clip(msg, 200))
        }
        _ => {
            // A request error's `detail` is fal's sentence, never the input.
            let text = a.str_at("/detail").map(|d| clip(d, 200)).unwrap_or_default();
            match error_type {
                Some(t) => format!("fal {t}: {text}"),
                None if text.is_empty() => format!("fal answered HTTP {}", a.status),
                None => format!("fal answered HTTP {}: {text}", a.status),
            }
        }
    };
    let typed = |verdict| Classified { verdict, message: message.clone(), typed: true };
    if let Some(v) = item_type.and_then(by_type) {
        return typed(v);
    }
    if let Some(v) = error_type.and_then(by_type) {
        return typed(v);
    }
    match retryable {
        Some(true) => return typed(Verdict::NextRoute(E::ServiceError)),
        // Not worth retrying, and about the input when fal says it is unprocessable.
        Some(false) if a.status == 422 => return typed(Verdict::Final(E::InvalidParameters)),
        Some(false) => return typed(Verdict::NextRoute(E::ServiceError)),
        None => {}
    }
    // Unprocessable is about the input, whatever the type; else the status speaks.
    let verdict = if a.status == 422 { Verdict::Final(E::InvalidParameters) } else { super::by_status(a.status) };
    Classified { verdict, message, typed: item_type.is_some() || error_type.is_some() }
}

/// The start image's field: O3 and v3 Turbo take `image_url`, the v3, O1 and
/// older endpoints `start_image_url` (fal's O3 page: "uses `image_url` (not
/// `start_image_url`)"; the v3 Turbo i2v page: "`image_url` ... First-frame
/// reference image").
fn start_image_key(model: &str) -> &'static str {
    if model.contains("/o3/") || model.contains("/turbo/") { "image_url" } else { "start_image_url" }
}

/// The fal endpoints that serve each catalog model taking an input video, exactly
/// as fal's model pages name them (one per tier: standard makes 720p, pro 1080p).
/// Text and image to video go to the v3, v3 Turbo, O3 and O1 generation endpoints
/// (`.../text-to-video`, `.../image-to-video`) and are not listed here.
///
/// - `kling-o3-video-edit`: "Kling O3 Edit Video", inputs `prompt` (required,
///   "Reference video as @Video1"), `video_url` (required; .mp4/.mov, 3-10 s,
///   720-2160 px, <= 200 MB), `image_urls` ("Maximum 4 total (elements + reference
///   images) when using video"), `keep_audio` (default true), `elements`; output
///   `video`. https://fal.ai/models/fal-ai/kling-video/o3/pro/video-to-video/edit/llms.txt,
///   https://fal.ai/docs/model-api-reference/video-generation-api/kling-video-o3-standard-video-to-video.md
/// - `kling-o3-reference-to-video` (a reference video, not only images): "Kling O3
///   Reference Video to Video", inputs `prompt` and `video_url` (required),
///   `image_urls`, `elements`, `keep_audio` (default true), `aspect_ratio`
///   (16:9, 9:16, 1:1), `duration` ("3".."15", a string), `shot_type`; output `video`.
///   https://fal.ai/models/fal-ai/kling-video/o3/standard/video-to-video/reference/llms.txt,
///   https://fal.ai/models/fal-ai/kling-video/o3/pro/video-to-video/reference/llms.txt
///   (fal's `.../o3/{tier}/reference-to-video` takes images only: not this model).
/// - `kling-o1-video-edit`: "Kling O1 Video To Video - Edit", inputs `prompt` and
///   `video_url` (required; .mp4/.mov, 3-10 s, 720-2160 px, <= 200 MB), `keep_audio`
///   (default false), `image_urls`, `elements`; output `video`.
///   https://fal.ai/docs/model-api-reference/video-generation-api/kling-video-o1-video-to-video
/// - `kling-v3-motion-control`: "Kling Video v3 Motion Control", inputs `image_url`,
///   `video_url` and `character_orientation` (`image`, up to 10 s of video, or
///   `video`, up to 30 s) required, `prompt`, `keep_original_sound` (default true),
///   `elements`; output `video`. fal's page
///   https://fal.ai/models/fal-ai/kling-video/v3/pro/motion-control/llms.txt (and the
///   `v3/standard` sibling), read through its copies (forgedemy.org "fal.ai Models
///   Reference"; the same field names as fal's v2.6 page, copied in
///   github.com/coduy96/taophim `motion-control.md`). fal's `v2.6/{tier}/motion-control`
///   is Kling 2.6: not this model.
pub const VIDEO_INPUT_ENDPOINTS: [(&str, &[&str]); 4] = [
    (
        "kling-o3-video-edit",
        &["fal-ai/kling-video/o3/standard/video-to-video/edit", "fal-ai/kling-video/o3/pro/video-to-video/edit"],
    ),
    (
        "kling-o3-reference-to-video",
        &[
            "fal-ai/kling-video/o3/standard/video-to-video/reference",
            "fal-ai/kling-video/o3/pro/video-to-video/reference",
        ],
    ),
    ("kling-o1-video-edit", &["fal-ai/kling-video/o1/video-to-video/edit"]),
    (
        "kling-v3-motion-control",
        &["fal-ai/kling-video/v3/standard/motion-control", "fal-ai/kling-video/v3/pro/motion-control"],
    ),
];

/// Whether a route of `spec` may send it to fal as `upstream_model`. Text and image
/// to video go to the generation endpoint the route names (v3, v3 Turbo, O3, O1);
/// a model taking an input video only to an endpoint of [`VIDEO_INPUT_ENDPOINTS`].
/// Anything else fal does not host is refused at start: the O1 "fast" edit (fal has
/// no such endpoint) and custom elements (fal takes elements inline, it makes none).
pub fn check_route(upstream_model: &str, spec: &ModelSpec) -> Result<(), String> {
    let model = spec.id.as_str();
    match spec.shape {
        Shape::TextToVideo | Shape::ImageToVideo => return Ok(()),
        Shape::CustomElement => return Err(format!("fal makes no elements ({model} is served by kling or local)")),
        _ => {}
    }
    let Some((_, endpoints)) = VIDEO_INPUT_ENDPOINTS.iter().find(|(m, _)| *m == model) else {
        return Err(format!(
            "fal hosts no endpoint for {model} (a {}): fal serves {}",
            spec.shape.as_str(),
            VIDEO_INPUT_ENDPOINTS.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
        ));
    };
    if endpoints.contains(&upstream_model.trim_matches('/')) {
        Ok(())
    } else {
        Err(format!(
            "{upstream_model:?} is not a fal endpoint for {model} (a {}): use {}",
            spec.shape.as_str(),
            endpoints.join(" or ")
        ))
    }
}

/// An O3 or O1 video-to-video body (`.../video-to-video/edit` or `/reference`, see
/// [`VIDEO_INPUT_ENDPOINTS`]) but its `image_urls`: `prompt` and `video_url` (a signed
/// link of ours), `keep_audio`; a reference also takes `duration` (a string) and
/// `aspect_ratio`. An edit's length
/// follows its input: it has no duration. fal marks `prompt` required: a request
/// without one is left to another route.
fn video_body(job: &Job<'_>) -> Result<Value, ProviderError> {
    let r = job.request;
    let prompt = r.prompt.as_deref().filter(|p| !p.is_empty()).ok_or_else(|| {
        ProviderError::next_route(format!("fal's {} requires a prompt and the request has none", job.upstream_model))
    })?;
    // An edit's seconds are its input's, rounded up: past 11 the input is surely longer
    // than the 10.05 s fal's edit pages allow, which another route may still take.
    if job.spec.shape == Shape::VideoEdit && job.seconds > 11 {
        return Err(ProviderError::next_route(format!(
            "fal's {} takes input videos of 3 to 10 s; this one is about {} s",
            job.upstream_model, job.seconds
        )));
    }
    let mut body = json!({ "prompt": prompt, "video_url": input_video(job)? });
    if let Some(keep) = r.keep_original_sound {
        body["keep_audio"] = json!(keep);
    }
    if job.spec.shape == Shape::ReferenceToVideo {
        body["duration"] = json!(job.seconds.to_string());
        if let Some(a) = r.aspect_ratio {
            body["aspect_ratio"] = json!(a.as_str());
        }
    }
    Ok(body)
}

/// A v3 motion-control body: the subject's image (the request's one reference image,
/// already in fal's storage) as `image_url`, the motion as `video_url`,
/// `character_orientation`, `keep_original_sound` and the optional `prompt`.
fn motion_body(job: &Job<'_>, image_url: String) -> Result<Value, ProviderError> {
    let r = job.request;
    let orientation = r
        .character_orientation
        .ok_or_else(|| ProviderError::next_route("a motion-control job without character_orientation"))?;
    let mut body = json!({
        "image_url": image_url,
        "video_url": input_video(job)?,
        "character_orientation": orientation.as_str(),
    });
    if let Some(p) = r.prompt.as_ref().filter(|p| !p.is_empty()) {
        body["prompt"] = json!(p);
    }
    if let Some(keep) = r.keep_original_sound {
        body["keep_original_sound"] = json!(keep);
    }
    Ok(body)
}

/// The job's input video: a signed link of ours that fal fetches itself.
fn input_video<'a>(job: &'a Job<'_>) -> Result<&'a str, ProviderError> {
    job.video_links
        .first()
        .map(String::as_str)
        .ok_or_else(|| ProviderError::next_route("a video-input job without a link to its video"))
}

/// A file name for an upload, by the image's type.
fn file_name(mime: &str) -> String {
    format!("input.{}", mime.rsplit('/').next().unwrap_or("bin"))
}

impl Fal {
    fn auth(&self) -> String {
        format!("Key {}", self.key.expose())
    }

    /// Uploads one image to fal's storage and answers its URL: initiate with its
    /// type and name, then `PUT` the bytes to the signed upload URL (fal-js
    /// `storage.ts`).
    async fn upload(&self, bytes: &[u8]) -> Result<String, ProviderError> {
        let mime = super::image_mime(bytes);
        let url = format!("{}/storage/upload/initiate?storage_type=fal-cdn-v3", self.storage_url);
        let body = json!({ "content_type": mime, "file_name": file_name(mime) });
        let answer = send(self.api.client.post(url).header("authorization", self.auth()).json(&body)).await?;
        if !answer.is_success() {
            let c = classify(&answer);
            return Err(c.verdict.error(format!("uploading an image: {}", c.message)));
        }
        let (Some(upload_url), Some(file_url)) = (answer.str_at("/upload_url"), answer.str_at("/file_url")) else {
            return Err(ProviderError::next_route("fal storage answered without upload_url and file_url"));
        };
        let file_url = file_url.to_owned();
        let put = self.api.client.put(upload_url).header("content-type", mime).body(bytes.to_vec());
        let stored = send(put).await?;
        if !stored.is_success() {
            return Err(super::by_status(stored.status)
                .error(format!("fal storage refused the upload (HTTP {})", stored.status)));
        }
        Ok(file_url)
    }

    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let body = match job.spec.shape {
            Shape::VideoEdit | Shape::ReferenceToVideo => self.video_to_video(job).await?,
            Shape::MotionControl => self.motion_control(job).await?,
            _ => self.generation(job).await?,
        };
        let url = self.api.url(&format!("/{}", job.upstream_model.trim_start_matches('/')));
        let answer = send(self.api.client.post(url).header("authorization", self.auth()).json(&body)).await?;
        if !answer.is_success() {
            let c = classify(&answer);
            return Err(c.verdict.error(c.message));
        }
        let field = |k: &str| answer.str_at(&format!("/{k}")).filter(|s| !s.is_empty()).map(str::to_owned);
        let id = field("request_id").ok_or_else(|| ProviderError::next_route("fal accepted without a request_id"))?;
        let (status_url, response_url) = (field("status_url"), field("response_url"));
        if status_url.is_none() || response_url.is_none() {
            return Err(ProviderError::next_route("fal accepted without status and response URLs"));
        }
        Ok(Handle { id, kind: String::new(), status_url, response_url, cancel_url: field("cancel_url") })
    }

    /// A text or image to video body (v3, v3 Turbo, O3, O1 generation endpoints).
    async fn generation(&self, job: &Job<'_>) -> Result<Value, ProviderError> {
        let r = job.request;
        let mut body = json!({
            "duration": job.seconds.to_string(),
            "generate_audio": r.sound == Sound::On,
        });
        if let Some(p) = r.prompt.as_ref().filter(|p| !p.is_empty()) {
            body["prompt"] = json!(p);
        }
        if let Some(n) = &r.negative_prompt {
            body["negative_prompt"] = json!(n);
        }
        if let Some(img) = job.start_image {
            body[start_image_key(job.upstream_model)] = json!(self.upload(img).await?);
        } else {
            body["aspect_ratio"] = json!(r.aspect_ratio.unwrap_or_default().as_str());
        }
        if let Some(img) = job.end_image {
            body["end_image_url"] = json!(self.upload(img).await?);
        }
        Ok(body)
    }

    /// An O3 or O1 video-to-video body (see [`video_body`]), its reference images
    /// uploaded to fal's storage as `image_urls` once the request is known to fit.
    async fn video_to_video(&self, job: &Job<'_>) -> Result<Value, ProviderError> {
        let mut body = video_body(job)?;
        if !job.reference_images.is_empty() {
            body["image_urls"] = json!(self.upload_all(job.reference_images).await?);
        }
        Ok(body)
    }

    /// A v3 motion-control body, its subject's image uploaded (see [`motion_body`]).
    async fn motion_control(&self, job: &Job<'_>) -> Result<Value, ProviderError> {
        let image = job
            .reference_images
            .first()
            .ok_or_else(|| ProviderError::next_route("a motion-control job without its reference image"))?;
        let image_url = self.upload(image).await?;
        motion_body(job, image_url)
    }

    async fn upload_all(&self, images: &[Vec<u8>]) -> Result<Vec<String>, ProviderError> {
        let mut urls = Vec::with_capacity(images.len());
        for img in images {
            urls.push(self.upload(img).await?);
        }
        Ok(urls)
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let status_url =
            handle.status_url.as_deref().ok_or_else(|| ProviderError::next_route("fal handle without status_url"))?;
        let answer = send(self.api.client.get(status_url).header("authorization", self.auth())).await?;
        if !answer.is_success() {
            // No word on the request: poll again later.
            return Err(classify(&answer).verdict.error(format!("fal status answered HTTP {}", answer.status)));
        }
        let status = answer.str_at("/status").map(str::to_owned);
        let ended_in_error = answer.str_at("/error_type").is_some() || answer.str_at("/error").is_some();
        match status.as_deref() {
            Some("IN_QUEUE") => Ok(Poll::Running { progress: Some(5) }),
            Some("IN_PROGRESS") => Ok(Poll::Running { progress: None }),
            Some("COMPLETED") if ended_in_error => {
                // Ended in a request error, given on the status itself (fal_client's
                // `Completed.error`): its type classifies it, its text is fal's.
                let text = answer.str_at("/error").map(|e| clip(e, 200)).unwrap_or_default();
                let c = classify(&Answer {
                    status: 500,
                    json: Some(json!({
                    "detail": text, "error_type": answer.str_at("/error_type") })),
                    ..answer
                });
                Ok(Poll::Failed(c.verdict.failure(c.message)))
            }
            Some("COMPLETED") => self.result(handle).await,
            Some(other) => Err(ProviderError::next_route(format!("fal sent an unknown status {:?}", clip(other, 40)))),
            None => Err(ProviderError::next_route("fal sent a status answer without a status")),
        }
    }

    /// The result of a completed request: the video, or the error it ended with.
    async fn result(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let response_url = handle
            .response_url
            .as_deref()
            .ok_or_else(|| ProviderError::next_route("fal handle without response_url"))?;
        let answer = send(self.api.client.get(response_url).header("authorization", self.auth())).await?;
        if answer.is_success() {
            return Ok(match answer.str_at("/video/url").filter(|u| !u.is_empty()) {
                Some(url) => Poll::Succeeded { video_url: url.to_owned() },
                // Completed, but not the result fal documents: this attempt failed.
                None => {
                    Poll::Failed(Failure::new(E::ServiceError, "fal completed without the documented video result"))
                }
            });
        }
        let c = classify(&answer);
        if !c.typed && matches!(c.verdict, Verdict::Retry(..)) {
            // A bare 429 or 5xx says nothing about the request: ask again later.
            return Err(c.verdict.error(c.message));
        }
        Ok(Poll::Failed(c.verdict.failure(c.message)))
    }

    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        if let Some(url) = &handle.cancel_url {
            send(self.api.client.put(url).header("authorization", self.auth())).await?;
        }
        Ok(())
    }

    /// `GET {platform}/v1/account/billing`: authenticated, read-only. It needs a
    /// key with billing read access; an inference-only key gets 403, which says
    /// the key exists but not that it may run models.
    pub async fn check(&self) -> Check {
        let url = format!("{}/v1/account/billing", self.platform_url);
        let answer = match send(self.api.client.get(url).header("authorization", self.auth())).await {
            Ok(a) => a,
            Err(e) => return Check::new(CheckStatus::Unreachable, e.message()),
        };
        let detail = clip(answer.str_at("/detail").unwrap_or(""), 300);
        match answer.status {
            200..=299 => {
                let who = answer.str_at("/username").unwrap_or("");
                Check::new(CheckStatus::Ok, if who.is_empty() { String::new() } else { format!("account {who}") })
            }
            401 => Check::new(CheckStatus::BadCredentials, detail),
            500..=599 => Check::new(CheckStatus::Unreachable, format!("HTTP {}: {detail}", answer.status)),
            s => Check::new(CheckStatus::Unknown, format!("HTTP {s}: {detail}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;
    use crate::providers::table_tests::{consistent, job, request};

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: Value) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_static(v));
        }
        Answer { status, headers: h, json: Some(body) }
    }

    #[test]
    fn every_documented_type_is_consistent() {
        for (name, v) in ERROR_TYPES {
            assert!(consistent(v), "{name}");
        }
    }

    #[test]
    fn model_errors_are_classified_by_type_and_never_show_the_echoed_input() {
        // The content-policy example of fal's "Model Errors" page, with the input
        // echoed as fal's toolkit does (a prompt that mentions a timeout, and an image).
        let body = json!({"detail": [{
            "loc": ["body", "prompt"],
            "msg": "The content could not be processed because it contained material flagged by a content checker.",
            "type": "content_policy_violation",
            "url": "https://docs.fal.ai/errors/#content_policy_violation",
            "input": "a timeout at the station, data:image/png;base64,bnNmdw=="
        }]});
        let c = classify(&answer(422, &[("x-fal-retryable", "false")], body));
        assert_eq!(c.verdict, Verdict::Final(E::ContentPolicyViolation));
        assert!(
            c.message.starts_with("fal content_policy_violation: The content could not be processed"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("station") && !c.message.contains("base64"), "{}", c.message);
        // A server-side error whose echoed input (the whole body) says "safety" and "policy".
        let body = json!({"detail": [{"loc": ["body"], "msg": "Internal server error", "type": "internal_server_error",
            "input": {"prompt": "a safety policy poster", "start_image_url": "https://x/y.png"}}]});
        let c = classify(&answer(500, &[("x-fal-retryable", "true")], body));
        assert_eq!(c.verdict, Verdict::NextRoute(E::ServiceError));
        assert!(!c.message.contains("safety"), "{}", c.message);
        let body = json!({"detail": [{"loc": ["body", "start_image_url"], "msg": "Image too small", "type": "image_too_small",
            "ctx": {"min_height": 300, "min_width": 300}, "input": "https://x/y.png"}]});
        let c = classify(&answer(422, &[("x-fal-retryable", "false")], body));
        assert_eq!(c.verdict, Verdict::Final(E::ImageProcessingError));
        assert_eq!(c.message, "fal image_too_small: Image too small (at start_image_url)");
        let none = json!({"detail": [{"loc": ["body"], "msg": "No media generated", "type": "no_media_generated", "input": {}}]});
        assert_eq!(classify(&answer(422, &[], none)).verdict, Verdict::NextRoute(E::GenerationFailedNoContent));
    }

    #[test]
    fn request_errors_are_classified_by_their_type_then_retryable_then_status() {
        // The "Request Error Types" example: body and header agree.
        let timeout = json!({"detail": "Request timed out", "error_type": "request_timeout"});
        let c = classify(&answer(504, &[("x-fal-error-type", "request_timeout")], timeout));
        assert_eq!(c.verdict, Verdict::Retry(Pace::Brief, E::GenerationTimeout));
        assert_eq!(c.message, "fal request_timeout: Request timed out");
        // Only the header names the type.
        let c = classify(&answer(503, &[("x-fal-error-type", "runner_disconnected")], json!({"detail": "gone"})));
        assert_eq!(c.verdict, Verdict::Retry(Pace::Brief, E::ServiceUnavailable));
        // An undocumented type: the retryable header decides.
        let novel =
            json!({"detail": [{"loc": ["body", "prompt"], "msg": "m", "type": "brand_new_kind", "input": "p"}]});
        assert_eq!(
            classify(&answer(422, &[("x-fal-retryable", "true")], novel.clone())).verdict,
            Verdict::NextRoute(E::ServiceError)
        );
        assert_eq!(
            classify(&answer(422, &[("x-fal-retryable", "false")], novel)).verdict,
            Verdict::Final(E::InvalidParameters)
        );
        // Nothing but the status: fal's locked account (403) and a missing key (401).
        let locked = json!({"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."});
        assert_eq!(classify(&answer(403, &[], locked)).verdict, Verdict::NextRoute(E::ServiceUnavailable));
        let c = classify(&answer(401, &[], json!({"detail": "No user found for Key ID and Secret"})));
        assert_eq!(c.verdict, Verdict::NextRoute(E::ServiceUnavailable));
        assert!(!c.typed);
        assert_eq!(classify(&answer(429, &[], json!({"detail": "x"}))).verdict, crate::providers::by_status(429));
        // A pydantic validation error (fal's late validation): not retryable, about the input.
        let missing = json!({"detail": [{"loc": ["body", "start_image_url"], "msg": "Field required", "type": "missing",
            "input": {"prompt": "p"}}]});
        assert_eq!(
            classify(&answer(422, &[("x-fal-retryable", "false")], missing)).verdict,
            Verdict::Final(E::InvalidParameters)
        );
    }

    #[test]
    fn o3_and_turbo_take_their_start_image_as_image_url() {
        assert_eq!(start_image_key("fal-ai/kling-video/o3/standard/image-to-video"), "image_url");
        assert_eq!(start_image_key("fal-ai/kling-video/v3/turbo/standard/image-to-video"), "image_url");
        assert_eq!(start_image_key("fal-ai/kling-video/v3/pro/image-to-video"), "start_image_url");
        assert_eq!(file_name("image/png"), "input.png");
    }

    #[test]
    fn each_video_input_model_goes_only_to_the_fal_endpoints_that_host_it() {
        let catalog = vidgate_api::catalog::Catalog::builtin().unwrap();
        let spec = |m: &str| catalog.get(m).unwrap().clone();
        for (model, endpoints) in VIDEO_INPUT_ENDPOINTS {
            for e in endpoints {
                assert_eq!(check_route(e, &spec(model)), Ok(()), "{model} {e}");
            }
        }
        // Kling 2.6 motion control is another model; O3's image-only reference-to-video too.
        let e = check_route("fal-ai/kling-video/v2.6/pro/motion-control", &spec("kling-v3-motion-control"));
        assert!(e.unwrap_err().contains("fal-ai/kling-video/v3/pro/motion-control"));
        let e = check_route("fal-ai/kling-video/o3/pro/reference-to-video", &spec("kling-o3-reference-to-video"));
        assert!(e.unwrap_err().contains("video-to-video/reference"));
        // fal hosts no O1 fast edit and makes no elements.
        let e = check_route("fal-ai/kling-video/o1/video-to-video/edit", &spec("kling-o1-video-edit-fast"));
        assert!(e.unwrap_err().contains("fal hosts no endpoint for kling-o1-video-edit-fast"));
        assert!(check_route("x", &spec("kling-custom-element")).is_err());
        assert_eq!(check_route("fal-ai/kling-video/o3/pro/text-to-video", &spec("kling-o3-text-to-video")), Ok(()));
    }

    #[test]
    fn an_edit_sends_the_link_and_keep_audio_but_no_duration() {
        let (r, spec) = request(json!({"model": "kling-o3-video-edit", "prompt": "make it winter",
            "keep_original_sound": false}));
        let links = ["https://gw.example/v1/files/f_1/content?sig=x".to_owned()];
        let refs = [vec![1u8]];
        let j = job(&r, &spec, "fal-ai/kling-video/o3/standard/video-to-video/edit", &refs, &links);
        let body = video_body(&j).unwrap();
        assert_eq!(body, json!({"prompt": "make it winter", "video_url": links[0], "keep_audio": false}));
        // O1's edit: keep_audio left to fal's default when the request says nothing.
        let (r, spec) = request(json!({"model": "kling-o1-video-edit", "prompt": "sepia"}));
        let j = job(&r, &spec, "fal-ai/kling-video/o1/video-to-video/edit", &[], &links);
        assert_eq!(video_body(&j).unwrap(), json!({"prompt": "sepia", "video_url": links[0]}));
        // fal requires a prompt: without one the request is another route's.
        let (r, spec) = request(json!({"model": "kling-o3-video-edit"}));
        let j = job(&r, &spec, "fal-ai/kling-video/o3/pro/video-to-video/edit", &[], &links);
        assert!(matches!(video_body(&j), Err(ProviderError::NextRoute { .. })));
        // An input surely past fal's 10 s (O3 takes up to 15.5 s elsewhere) is another route's.
        let (r, spec) = request(json!({"model": "kling-o3-video-edit", "prompt": "p"}));
        let mut j = job(&r, &spec, "fal-ai/kling-video/o3/pro/video-to-video/edit", &[], &links);
        j.seconds = 11;
        assert!(video_body(&j).is_ok());
        j.seconds = 12;
        assert!(matches!(video_body(&j), Err(ProviderError::NextRoute { .. })));
    }

    #[test]
    fn a_reference_also_sends_its_duration_as_a_string_and_the_aspect_ratio() {
        let (r, spec) = request(json!({"model": "kling-o3-reference-to-video", "prompt": "follow @Video1",
            "duration": 7, "aspect_ratio": "9:16", "keep_original_sound": true}));
        let links = ["https://gw.example/v".to_owned()];
        let j = job(&r, &spec, "fal-ai/kling-video/o3/pro/video-to-video/reference", &[], &links);
        assert_eq!(
            video_body(&j).unwrap(),
            json!({"prompt": "follow @Video1", "video_url": "https://gw.example/v", "keep_audio": true,
                "duration": "7", "aspect_ratio": "9:16"})
        );
    }

    #[test]
    fn motion_control_sends_the_subject_image_the_motion_and_the_orientation() {
        let (r, spec) = request(json!({"model": "kling-v3-motion-control", "character_orientation": "video",
            "keep_original_sound": true, "prompt": "on a stage"}));
        let links = ["https://gw.example/m".to_owned()];
        let j = job(&r, &spec, "fal-ai/kling-video/v3/standard/motion-control", &[], &links);
        assert_eq!(
            motion_body(&j, "https://fal.media/files/s.png".to_owned()).unwrap(),
            json!({"image_url": "https://fal.media/files/s.png", "video_url": "https://gw.example/m",
                "character_orientation": "video", "keep_original_sound": true, "prompt": "on a stage"})
        );
    }
}
