//! Another EvoLink-compatible gateway (EvoLink itself, or another vidgate) as an
//! upstream: `POST /v1/videos/generations`, polled at `GET /v1/tasks/{id}`. Polls
//! are read as EvoLink documents them (`TaskDetailResponse`: `status`, `progress`,
//! `results`, `error{code, message}`; no `usage`, no `estimated_time`), field by
//! field, so a missing optional field or one EvoLink adds later never fails a
//! poll. Errors are `{"error": {code, message, type}}`, classified by the HTTP
//! status EvoLink documents for each and, for a failed task, by its business code.
//! Every catalog model goes as itself (`body`): EvoLink hosts the whole Kling family.

use serde_json::{Value, json};
use vidgate_api::catalog::{ImageListRole, KeepSoundField, Setting, VideoField};
use vidgate_api::create::MultiShot;
use vidgate_api::task::TaskErrorCode;

use super::{Answer, Api, Check, CheckStatus, Failure, Handle, Job, Pace, Poll, ProviderError, Verdict, clip};
use super::{data_uri, send};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Evolink {
    pub api: Api,
    pub key: Secret,
}

use TaskErrorCode as E;

/// The create errors EvoLink documents (kling-v3-*.json: 400, 401, 402, 403, 429,
/// 500; 502 on kling-custom-element) and what each means: the request's fault
/// when its parameters are refused, ours for the key, the quota or the model.
pub const STATUSES: [(u16, Verdict); 9] = [
    (400, Verdict::Final(E::InvalidParameters)),
    (413, Verdict::Final(E::InvalidParameters)),
    (401, Verdict::NextRoute(E::ServiceUnavailable)),
    (402, Verdict::NextRoute(E::QuotaExceeded)),
    (403, Verdict::NextRoute(E::ServiceUnavailable)),
    (404, Verdict::NextRoute(E::ResourceNotFound)),
    (429, Verdict::Retry(Pace::Brief, E::ResourceExhausted)),
    (500, Verdict::Retry(Pace::Brief, E::ServiceError)),
    (502, Verdict::Retry(Pace::Brief, E::ServiceUnavailable)),
];

/// A failed task's `error.code` (EvoLink "Error Codes Reference"): the client
/// errors end the task, the server errors move it on. `request_cancelled` moves
/// on too: our client never asked for it.
pub const TASK_CODES: [(&str, Verdict); 13] = [
    ("content_policy_violation", Verdict::Final(E::ContentPolicyViolation)),
    ("invalid_parameters", Verdict::Final(E::InvalidParameters)),
    ("image_processing_error", Verdict::Final(E::ImageProcessingError)),
    ("image_dimension_mismatch", Verdict::Final(E::ImageDimensionMismatch)),
    ("request_cancelled", Verdict::NextRoute(E::ServiceError)),
    ("generation_failed_no_content", Verdict::NextRoute(E::GenerationFailedNoContent)),
    ("service_error", Verdict::NextRoute(E::ServiceError)),
    ("generation_timeout", Verdict::NextRoute(E::GenerationTimeout)),
    ("resource_exhausted", Verdict::NextRoute(E::ResourceExhausted)),
    ("quota_exceeded", Verdict::NextRoute(E::QuotaExceeded)),
    ("service_unavailable", Verdict::NextRoute(E::ServiceUnavailable)),
    ("resource_not_found", Verdict::NextRoute(E::ResourceNotFound)),
    ("unknown_error", Verdict::NextRoute(E::UnknownError)),
];

pub fn classify(status: u16) -> Verdict {
    STATUSES.iter().find(|(s, _)| *s == status).map_or_else(|| super::by_status(status), |(_, v)| *v)
}

pub fn task_failure(code: &str) -> Verdict {
    TASK_CODES.iter().find(|(c, _)| *c == code).map_or(Verdict::NextRoute(E::UnknownError), |(_, v)| *v)
}

/// `error.message` (and `error.code`, a string or, on `/v1/credits`, a number).
fn error_text(a: &Answer) -> String {
    let code = a.json.as_ref().and_then(|v| v.pointer("/error/code")).map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let message = clip(a.str_at("/error/message").unwrap_or(""), 300);
    match code {
        Some(code) => format!("the upstream gateway answered HTTP {} ({code}): {message}", a.status),
        None => format!("the upstream gateway answered HTTP {}", a.status),
    }
}

/// The create body of this very API for the job's model, field by field as the
/// catalog describes that model: only the parameters it takes (a fixed quality or
/// sound is not sent), frames as `image_start`/`image_end` or, for a model whose
/// `image_urls` are its frames, as `image_urls`; reference images as `image_urls`,
/// images as `data:` URIs; input videos as links in the model's own field.
fn body(job: &Job<'_>) -> Value {
    let r = job.request;
    let spec = job.spec;
    let mut b = json!({ "model": job.upstream_model });
    if let Some(p) = &r.prompt {
        b["prompt"] = json!(p);
    }
    if let Some(n) = &r.negative_prompt {
        b["negative_prompt"] = json!(n);
    }
    if r.duration.is_some() {
        b["duration"] = json!(job.seconds);
    }
    if matches!(spec.quality, Some(Setting::Choice { .. })) {
        b["quality"] = json!(r.quality.as_str());
    }
    if matches!(spec.sound, Some(Setting::Choice { .. })) {
        b["sound"] = json!(r.sound.as_str());
    }
    if let Some(a) = r.aspect_ratio.filter(|_| spec.aspect_ratio.is_some()) {
        b["aspect_ratio"] = json!(a.as_str());
    }
    let frames: Vec<String> = job.start_image.iter().chain(job.end_image.iter()).map(|i| data_uri(i)).collect();
    let frames_are_image_urls = spec.image_urls.as_ref().is_some_and(|l| l.role == ImageListRole::Frames);
    let mut image_urls: Vec<String> = job.reference_images.iter().map(|i| data_uri(i)).collect();
    if frames_are_image_urls {
        image_urls.splice(0..0, frames);
    } else {
        if let Some(img) = job.start_image {
            b["image_start"] = json!(data_uri(img));
        }
        if let Some(img) = job.end_image {
            b["image_end"] = json!(data_uri(img));
        }
    }
    if !image_urls.is_empty() {
        b["image_urls"] = json!(image_urls);
    }
    let mut params = serde_json::Map::new();
    if let Some(v) = &spec.video {
        match v.field {
            VideoField::VideoUrl => {
                if let Some(link) = job.video_links.first() {
                    b["video_url"] = json!(link);
                }
            }
            VideoField::VideoUrls => {
                if !job.video_links.is_empty() {
                    b["video_urls"] = json!(job.video_links);
                }
            }
        }
    }
    if let (Some(k), Some(keep)) = (&spec.keep_sound, r.keep_original_sound) {
        match k.field {
            KeepSoundField::KeepOriginalSound => b["keep_original_sound"] = json!(keep),
            KeepSoundField::ModelParamsKeepSound => {
                params.insert("keep_sound".into(), json!(keep));
            }
        }
    }
    if let Some(o) = r.character_orientation {
        params.insert("character_orientation".into(), json!(o.as_str()));
    }
    match &r.multi_shot {
        Some(MultiShot::Customize(shots)) => {
            params.insert("multi_shot".into(), json!(true));
            params.insert("shot_type".into(), json!("customize"));
            params.insert(
                "multi_prompt".into(),
                json!(
                    shots
                        .iter()
                        .map(|s| json!({"index": s.index, "prompt": s.prompt, "duration": s.duration.to_string()}))
                        .collect::<Vec<_>>()
                ),
            );
        }
        Some(MultiShot::Intelligence) => {
            params.insert("multi_shot".into(), json!(true));
            params.insert("shot_type".into(), json!("intelligence"));
        }
        None => {}
    }
    if !job.element_refs.is_empty() {
        params.insert(
            "element_list".into(),
            json!(job.element_refs.iter().map(|id| json!({ "element_id": id })).collect::<Vec<_>>()),
        );
    }
    if r.watermark {
        params.insert("watermark_info".into(), json!({"enabled": true}));
    }
    if !params.is_empty() {
        b["model_params"] = Value::Object(params);
    }
    b
}

/// A `TaskDetailResponse` as the task's state. Only `status` is required;
/// `progress` may be missing or fractional, `results` is read when completed,
/// anything else EvoLink adds is ignored.
pub fn task_state(v: &Value) -> Result<Poll, ProviderError> {
    let progress = v
        .get("progress")
        .and_then(|p| p.as_u64().or_else(|| p.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as u64)))
        .map(|p| p.min(100) as u8);
    match v.get("status").and_then(Value::as_str) {
        Some("pending") => Ok(Poll::Running { progress: Some(progress.unwrap_or(0)) }),
        Some("processing") => Ok(Poll::Running { progress }),
        Some("completed") => {
            let url = v.get("results").and_then(Value::as_array).and_then(|r| r.first()).and_then(Value::as_str);
            Ok(match url.filter(|u| !u.is_empty()) {
                Some(u) => Poll::Succeeded { video_url: u.to_owned() },
                None => Poll::Failed(Failure::new(E::ServiceError, "the upstream gateway completed without a result")),
            })
        }
        Some("failed") => {
            let code = v.pointer("/error/code").and_then(Value::as_str).unwrap_or("unknown_error");
            let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("");
            let shown =
                if message.is_empty() { format!("the upstream task failed: {code}") } else { clip(message, 300) };
            Ok(Poll::Failed(task_failure(code).failure(shown)))
        }
        Some(other) => {
            Err(ProviderError::next_route(format!("the upstream gateway sent an unknown status {:?}", clip(other, 40))))
        }
        None => Err(ProviderError::next_route("the upstream gateway sent a task without a status")),
    }
}

impl Evolink {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let url = self.api.url("/v1/videos/generations");
        let answer = send(self.api.client.post(url).bearer_auth(self.key.expose()).json(&body(job))).await?;
        if !answer.is_success() {
            return Err(classify(answer.status).error(error_text(&answer)));
        }
        let id = answer
            .str_at("/id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProviderError::next_route("the upstream gateway accepted without a task id"))?;
        Ok(Handle { id: id.to_owned(), ..Default::default() })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let url = self.api.url(&format!("/v1/tasks/{}", handle.id));
        let answer = send(self.api.client.get(url).bearer_auth(self.key.expose())).await?;
        if !answer.is_success() {
            return Err(classify(answer.status).error(error_text(&answer)));
        }
        let v = answer
            .json
            .ok_or_else(|| ProviderError::next_route("the upstream gateway sent a task that is not JSON"))?;
        task_state(&v)
    }

    /// EvoLink documents no cancel; another vidgate serves this one. Errors only
    /// cost upstream money.
    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        let url = self.api.url(&format!("/v1/tasks/{}/cancel", handle.id));
        send(self.api.client.post(url).bearer_auth(self.key.expose())).await?;
        Ok(())
    }

    /// `GET /v1/credits`: the account's balance, read-only.
    pub async fn check(&self) -> Check {
        let url = self.api.url("/v1/credits");
        let answer = match send(self.api.client.get(url).bearer_auth(self.key.expose())).await {
            Ok(a) => a,
            Err(e) => return Check::new(CheckStatus::Unreachable, e.message()),
        };
        match answer.status {
            200..=299 => {
                let left = answer.json.as_ref().and_then(|v| v.pointer("/data/user/remaining_credits")).cloned();
                let message = left.map(|c| format!("{c} credits left")).unwrap_or_default();
                Check::new(CheckStatus::Ok, message)
            }
            401 => Check::new(CheckStatus::BadCredentials, error_text(&answer)),
            500..=599 => Check::new(CheckStatus::Unreachable, error_text(&answer)),
            _ => Check::new(CheckStatus::Unknown, error_text(&answer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::table_tests::consistent;

    #[test]
    fn every_row_is_consistent() {
        for (s, v) in STATUSES {
            assert!(consistent(v), "{s}");
        }
        for (c, v) in TASK_CODES {
            assert!(consistent(v), "{c}");
            assert!(TaskErrorCode::parse(c).is_some(), "{c} is one of SPEC's codes");
        }
    }

    #[test]
    fn the_documented_task_detail_example_parses_without_usage_or_estimated_time() {
        // get-task-detail.json, verbatim (an image task; the video shape differs only in `results`).
        let done = json!({"created": 1756817821, "id": "task-unified-1756817821-4x3rx6ny", "model": "gpt-4o-image",
            "object": "image.generation.task", "progress": 100, "results": ["http://example.com/image.jpg"],
            "status": "completed", "task_info": {"can_cancel": false}, "type": "image"});
        assert_eq!(task_state(&done), Ok(Poll::Succeeded { video_url: "http://example.com/image.jpg".to_owned() }));
        let running =
            json!({"id": "task-unified-1", "status": "processing", "progress": 65, "task_info": {"can_cancel": true}});
        assert_eq!(task_state(&running), Ok(Poll::Running { progress: Some(65) }));
        // Missing optional fields, unknown extra ones, a fractional progress.
        assert_eq!(task_state(&json!({"status": "pending"})), Ok(Poll::Running { progress: Some(0) }));
        let extra = json!({"status": "processing", "progress": 12.5, "brand_new": {"x": 1}, "usage": null});
        assert_eq!(task_state(&extra), Ok(Poll::Running { progress: Some(12) }));
    }

    #[test]
    fn a_failed_task_is_classified_by_its_code() {
        // The error-codes page's example.
        let refused = json!({"id": "task-unified-x", "object": "image.generation.task", "status": "failed", "model": "m",
            "progress": 0, "error": {"code": "content_policy_violation",
            "message": "Content policy violation.\nYour request was blocked by safety filters...", "type": "task_error"}});
        assert!(matches!(task_state(&refused), Ok(Poll::Failed(Failure { code: E::ContentPolicyViolation, .. }))));
        let broke =
            json!({"status": "failed", "error": {"code": "service_error", "message": "x", "type": "task_error"}});
        assert!(matches!(task_state(&broke), Ok(Poll::Failed(Failure { code: E::ServiceError, .. }))));
        let bare = json!({"status": "failed"});
        assert!(matches!(task_state(&bare), Ok(Poll::Failed(Failure { code: E::UnknownError, .. }))));
        let no_result = json!({"status": "completed"});
        assert!(matches!(task_state(&no_result), Ok(Poll::Failed(Failure { code: E::ServiceError, .. }))));
        assert!(task_state(&json!({"status": ["completed"]})).is_err());
    }

    #[test]
    fn create_errors_follow_the_documented_statuses() {
        assert_eq!(classify(400), Verdict::Final(E::InvalidParameters));
        assert_eq!(classify(401), Verdict::NextRoute(E::ServiceUnavailable));
        assert_eq!(classify(402), Verdict::NextRoute(E::QuotaExceeded));
        assert_eq!(classify(403), Verdict::NextRoute(E::ServiceUnavailable));
        assert_eq!(classify(429), Verdict::Retry(Pace::Brief, E::ResourceExhausted));
        assert_eq!(classify(500), Verdict::Retry(Pace::Brief, E::ServiceError));
        assert_eq!(classify(502), Verdict::Retry(Pace::Brief, E::ServiceUnavailable));
        let a = Answer {
            status: 402,
            headers: Default::default(),
            json: Some(
                json!({"error": {"code": "insufficient_quota", "message": "Insufficient quota. Please top up your account.", "type": "insufficient_quota"}}),
            ),
        };
        assert_eq!(
            error_text(&a),
            "the upstream gateway answered HTTP 402 (insufficient_quota): Insufficient quota. Please top up your account."
        );
    }
}
