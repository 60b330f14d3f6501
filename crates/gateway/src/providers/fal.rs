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
use vidgate_api::catalog::{Shape, Sound};
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

/// The shapes vidgate maps to fal: text and image to video (v3, v3 Turbo, O3, O1
/// endpoints). fal's reference, edit and motion-control inputs are not verified
/// against its docs here, so such routes are refused at start.
pub fn check_route(shape: Shape) -> Result<(), String> {
    match shape {
        Shape::TextToVideo | Shape::ImageToVideo => Ok(()),
        other => Err(format!("vidgate does not send a {} to fal", other.as_str())),
    }
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
    use crate::providers::table_tests::consistent;

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
}
