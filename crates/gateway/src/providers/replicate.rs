//! Replicate's predictions API: `POST /v1/models/{owner}/{model}/predictions` with
//! `{input}`, polled at `GET /v1/predictions/{id}` (`starting`, `processing`,
//! `succeeded`, `failed`, `canceled`); the output is one URL, which expires after an
//! hour, so the engine copies it before reporting completion. Errors are problem
//! details (`{title, detail, status}`, plus `invalid_fields` on a 422); `classify`
//! sorts them by status: 401, 402 (billing), 403 and 404 (model) are ours and move
//! on, only a 422 naming an input is the request's fault. A failed prediction
//! carries Replicate's error code in its text (`E005` sensitive content; E#### codes
//! per replicate.com "Error codes").

use serde_json::{Value, json};
use vidgate_api::catalog::{ModelSpec, Quality, Shape, Sound};
use vidgate_api::task::TaskErrorCode;

use super::{Answer, Api, Check, CheckStatus, Failure, Handle, Job, Pace, Poll, ProviderError, Verdict, clip};
use super::{data_uri, send};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Replicate {
    pub api: Api,
    pub token: Secret,
}

use TaskErrorCode as E;

/// Replicate's HTTP statuses (problem details; replicate-python `exceptions.py`,
/// replicate-javascript#342 for 402) and what each means for a task.
pub const STATUSES: [(u16, Verdict); 6] = [
    (401, Verdict::NextRoute(E::ServiceUnavailable)),
    (402, Verdict::NextRoute(E::QuotaExceeded)),
    (403, Verdict::NextRoute(E::ServiceUnavailable)),
    (404, Verdict::NextRoute(E::ResourceNotFound)),
    (422, Verdict::Final(E::InvalidParameters)),
    (429, Verdict::Retry(Pace::Brief, E::ResourceExhausted)),
];

/// Codes in a failed prediction's `error` and what each means: E005 is
/// Replicate's sensitive-content refusal; E1001 (out of memory) and E6716 (timeout
/// starting) are Replicate's trouble, like any other code.
pub const PREDICTION_CODES: [(&str, Verdict); 3] = [
    ("E005", Verdict::Final(E::ContentPolicyViolation)),
    ("E1001", Verdict::NextRoute(E::ResourceExhausted)),
    ("E6716", Verdict::NextRoute(E::GenerationTimeout)),
];

/// Whether a 422 names an input: a field `input` or `input.<name>` in
/// `invalid_fields`, or a `- input...:` line in `detail`, as Replicate writes them.
fn names_an_input(a: &Answer) -> bool {
    let is_input = |f: &str| f == "input" || f.starts_with("input.");
    let fields = a.json.as_ref().and_then(|v| v.get("invalid_fields")).and_then(Value::as_array);
    if let Some(fields) = fields {
        return fields.iter().filter_map(|f| f.get("field").and_then(Value::as_str)).any(is_input);
    }
    a.str_at("/detail").is_some_and(|d| {
        d.lines().filter_map(|l| l.trim().strip_prefix("- ")).any(|l| l.split(':').next().is_some_and(is_input))
    })
}

/// The Replicate models that serve each catalog model taking an input video, as
/// their version API pages document them (`kwaivgi` is Kuaishou's account):
///
/// - `kwaivgi/kling-v3-omni-video` (Kling 3.0 Omni, i.e. O3): `prompt`,
///   `reference_video` (.mp4/.mov, 3-10 s, 720-2160 px, <= 200 MB),
///   `video_reference_type` (`feature` for a style/camera reference, `base` for video
///   editing), `keep_original_sound` (default true), `reference_images` ("Max 7 without
///   video, 4 with video"), `mode` (`standard` 720p | `pro` 1080p), `aspect_ratio`,
///   `duration` 3..15 ("Ignored for video editing (base)"), `generate_audio`
///   ("Mutually exclusive with reference video"); output a URI string.
///   https://replicate.com/kwaivgi/kling-v3-omni-video/versions/1d449e255319a7c07feca688cf0596cb82cc8a96ceddff6c44fd0d090b4e830c/api
/// - `kwaivgi/kling-o1` (Kling O1): the same video fields, `mode` `std` | `pro`,
///   `duration` 5 or 10 for text/image, 3..10 with a feature video, ignored for an
///   edit; no `generate_audio`; output a URI string.
///   https://replicate.com/kwaivgi/kling-o1/versions/6d5f2d4becc7f734d190d17f13f776229c359cafc1c1898d78945e8d87c57538/api
///
/// Replicate hosts no Kling 3.0 motion control (only `kwaivgi/kling-v2.6-motion-control`,
/// a Kling 2.6 model) and no O1 "fast" edit: those stay refused at start.
pub const VIDEO_INPUT_MODELS: [(&str, &str); 3] = [
    ("kling-o3-video-edit", "kwaivgi/kling-v3-omni-video"),
    ("kling-o3-reference-to-video", "kwaivgi/kling-v3-omni-video"),
    ("kling-o1-video-edit", "kwaivgi/kling-o1"),
];

/// Whether a route of `spec` may send it to Replicate as `upstream_model`: text and
/// image to video to the model the route names (`kwaivgi/kling-v3-video`,
/// `kwaivgi/kling-v3-omni-video`, `kwaivgi/kling-o1`), a model taking an input video
/// only to the Replicate model of [`VIDEO_INPUT_MODELS`]; any other is refused.
pub fn check_route(upstream_model: &str, spec: &ModelSpec) -> Result<(), String> {
    let model = spec.id.as_str();
    match spec.shape {
        Shape::TextToVideo | Shape::ImageToVideo => return Ok(()),
        Shape::CustomElement => {
            return Err(format!("Replicate makes no elements ({model} is served by kling or local)"));
        }
        _ => {}
    }
    match VIDEO_INPUT_MODELS.iter().find(|(m, _)| *m == model) {
        None => Err(format!(
            "Replicate hosts no model for {model} (a {}): vidgate sends {} there",
            spec.shape.as_str(),
            VIDEO_INPUT_MODELS.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
        )),
        Some((_, hosted)) if *hosted == upstream_model => Ok(()),
        Some((_, hosted)) => Err(format!(
            "{upstream_model:?} is not the Replicate model for {model} (a {}): use {hosted}",
            spec.shape.as_str()
        )),
    }
}

/// The `mode` value of a Replicate Kling model: `kwaivgi/kling-o1` spells standard
/// `std`, the 3.0 models `standard` (their version API pages).
fn mode(upstream_model: &str, quality: Quality) -> &'static str {
    match quality {
        Quality::P720 if upstream_model == "kwaivgi/kling-o1" => "std",
        Quality::P720 => "standard",
        _ => "pro",
    }
}

/// What an error answer means for the task.
pub fn classify(a: &Answer) -> Verdict {
    if a.status == 422 && !names_an_input(a) {
        // Unprocessable, but not for any input of the request: ours to fix.
        return Verdict::NextRoute(E::ServiceError);
    }
    STATUSES.iter().find(|(s, _)| *s == a.status).map_or_else(|| super::by_status(a.status), |(_, v)| *v)
}

/// What a failed prediction's `error` means, by the code in its text.
pub fn prediction_failure(error: &str) -> Verdict {
    let code = error
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| w.len() >= 4 && w.starts_with('E') && w[1..].bytes().all(|b| b.is_ascii_digit()));
    code.and_then(|c| PREDICTION_CODES.iter().find(|(k, _)| *k == c))
        .map_or(Verdict::NextRoute(E::ServiceError), |(_, v)| *v)
}

/// The message of a problem-details answer (`detail`, else `title`).
fn problem(a: &Answer) -> String {
    let text = a.str_at("/detail").or_else(|| a.str_at("/title")).unwrap_or("");
    format!("replicate answered HTTP {}: {}", a.status, clip(text.trim(), 300))
}

/// A prediction as the task's state.
fn state(v: &Value) -> Result<Poll, ProviderError> {
    match v.get("status").and_then(Value::as_str) {
        Some("starting") => Ok(Poll::Running { progress: Some(5) }),
        Some("processing") => Ok(Poll::Running { progress: None }),
        Some("succeeded") => {
            let url = match v.get("output") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            Ok(match url.filter(|u| !u.is_empty()) {
                Some(video_url) => Poll::Succeeded { video_url },
                None => Poll::Failed(Failure::new(E::ServiceError, "replicate succeeded without an output URL")),
            })
        }
        Some("failed") => {
            let error = v.get("error").and_then(Value::as_str).unwrap_or("");
            let shown = if error.is_empty() { "replicate: the prediction failed".to_owned() } else { clip(error, 300) };
            Ok(Poll::Failed(prediction_failure(error).failure(shown)))
        }
        Some("canceled") => Ok(Poll::Failed(Failure::new(E::ServiceError, "the prediction was cancelled upstream"))),
        Some(other) => {
            Err(ProviderError::next_route(format!("replicate sent an unknown status {:?}", clip(other, 40))))
        }
        None => Err(ProviderError::next_route("replicate sent a prediction without a status")),
    }
}

/// A prediction's `input` for `job`, by the model's version schema (see
/// [`VIDEO_INPUT_MODELS`] and `kwaivgi/kling-v3-video`'s page: `prompt`, `mode`,
/// `duration` an integer, `generate_audio`, `negative_prompt`, `start_image`,
/// `end_image`, `aspect_ratio` ignored with a start image). Images go as data URIs,
/// as replicate-python sends file inputs (its base64 strategy); an input video as a
/// signed link of ours, which Replicate fetches.
fn input(job: &Job<'_>) -> Result<Value, ProviderError> {
    let r = job.request;
    let o1 = job.upstream_model == "kwaivgi/kling-o1";
    let mut input = json!({
        "prompt": r.prompt.clone().unwrap_or_default(),
        "mode": mode(job.upstream_model, r.quality),
    });
    if let Some(n) = &r.negative_prompt {
        input["negative_prompt"] = json!(n);
    }
    if !job.reference_images.is_empty() {
        input["reference_images"] = json!(job.reference_images.iter().map(|i| data_uri(i)).collect::<Vec<_>>());
    }
    if matches!(job.spec.shape, Shape::VideoEdit | Shape::ReferenceToVideo) {
        if r.prompt.as_deref().is_none_or(str::is_empty) {
            // The schemas mark `prompt` required: another route may serve it without.
            return Err(ProviderError::next_route(format!(
                "replicate's {} requires a prompt and the request has none",
                job.upstream_model
            )));
        }
        if job.spec.shape == Shape::VideoEdit && job.seconds > 11 {
            // An edit's seconds are its input's, rounded up: surely past the schemas' 3-10 s.
            return Err(ProviderError::next_route(format!(
                "replicate's {} takes reference videos of 3 to 10 s; this one is about {} s",
                job.upstream_model, job.seconds
            )));
        }
        let video = job
            .video_links
            .first()
            .ok_or_else(|| ProviderError::next_route("a video-input job without a link to its video"))?;
        input["reference_video"] = json!(video);
        let edit = job.spec.shape == Shape::VideoEdit;
        input["video_reference_type"] = json!(if edit { "base" } else { "feature" });
        if let Some(keep) = r.keep_original_sound {
            input["keep_original_sound"] = json!(keep);
        }
        if !edit {
            // An edit's length follows its input; a feature reference's is asked for.
            input["duration"] = json!(job.seconds);
            if let Some(a) = r.aspect_ratio {
                input["aspect_ratio"] = json!(a.as_str());
            }
        }
        return Ok(input);
    }
    input["duration"] = json!(job.seconds);
    if !o1 {
        // kling-o1 has no generate_audio input.
        input["generate_audio"] = json!(r.sound == Sound::On);
    }
    if let Some(img) = job.start_image {
        input["start_image"] = json!(data_uri(img));
    } else {
        input["aspect_ratio"] = json!(r.aspect_ratio.unwrap_or_default().as_str());
    }
    if let Some(img) = job.end_image {
        input["end_image"] = json!(data_uri(img));
    }
    Ok(input)
}

impl Replicate {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let input = input(job)?;
        let url = self.api.url(&format!("/v1/models/{}/predictions", job.upstream_model));
        let req = self.api.client.post(url).bearer_auth(self.token.expose()).json(&json!({ "input": input }));
        let answer = send(req).await?;
        if !answer.is_success() {
            return Err(classify(&answer).error(problem(&answer)));
        }
        let id = answer
            .str_at("/id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProviderError::next_route("replicate accepted without a prediction id"))?;
        Ok(Handle { id: id.to_owned(), ..Default::default() })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let url = self.api.url(&format!("/v1/predictions/{}", handle.id));
        let answer = send(self.api.client.get(url).bearer_auth(self.token.expose())).await?;
        if !answer.is_success() {
            return Err(classify(&answer).error(problem(&answer)));
        }
        let v = answer.json.ok_or_else(|| ProviderError::next_route("replicate sent a prediction that is not JSON"))?;
        state(&v)
    }

    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        let url = self.api.url(&format!("/v1/predictions/{}/cancel", handle.id));
        send(self.api.client.post(url).bearer_auth(self.token.expose())).await?;
        Ok(())
    }

    /// `GET /v1/account` (replicate-python `accounts.current()`): who the token is.
    pub async fn check(&self) -> Check {
        let answer = match send(self.api.client.get(self.api.url("/v1/account")).bearer_auth(self.token.expose())).await
        {
            Ok(a) => a,
            Err(e) => return Check::new(CheckStatus::Unreachable, e.message()),
        };
        match answer.status {
            200..=299 => Check::new(CheckStatus::Ok, format!("account {}", answer.str_at("/username").unwrap_or("?"))),
            401 => Check::new(CheckStatus::BadCredentials, problem(&answer)),
            500..=599 => Check::new(CheckStatus::Unreachable, problem(&answer)),
            _ => Check::new(CheckStatus::Unknown, problem(&answer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::table_tests::{consistent, job, request};

    fn answer(status: u16, body: Value) -> Answer {
        Answer { status, headers: Default::default(), json: Some(body) }
    }

    #[test]
    fn every_row_is_consistent() {
        for (s, v) in STATUSES {
            assert!(consistent(v), "{s}");
        }
        for (c, v) in PREDICTION_CODES {
            assert!(consistent(v), "{c}");
        }
    }

    #[test]
    fn account_and_model_trouble_moves_on_and_only_an_input_error_is_final() {
        // replicate-javascript#342.
        let billing = json!({"title": "Billing required", "detail": "You need to set up billing to run this model. Go to https://replicate.com/account/billing#billing to set it up.", "status": 402});
        assert_eq!(classify(&answer(402, billing)), Verdict::NextRoute(E::QuotaExceeded));
        let unauthenticated = json!({"title": "Unauthenticated", "detail": "You did not pass a valid authentication token", "status": 401});
        assert_eq!(classify(&answer(401, unauthenticated)), Verdict::NextRoute(E::ServiceUnavailable));
        let forbidden = json!({"title": "Forbidden", "detail": "You do not have permission to perform this action.", "status": 403});
        assert_eq!(classify(&answer(403, forbidden)), Verdict::NextRoute(E::ServiceUnavailable));
        let missing = json!({"detail": "The requested resource could not be found.", "status": 404});
        assert_eq!(classify(&answer(404, missing)), Verdict::NextRoute(E::ResourceNotFound));
        // A captured "Input validation failed" body.
        let invalid = json!({"detail": "- input.duration: Must be less than or equal to 15\n", "status": 422,
            "title": "Input validation failed", "invalid_fields": [{"type": "number_lte", "field": "input.duration",
            "description": "Must be less than or equal to 15"}]});
        assert_eq!(classify(&answer(422, invalid)), Verdict::Final(E::InvalidParameters));
        let detail_only = json!({"detail": "- input: prompt is required\n", "status": 422});
        assert_eq!(classify(&answer(422, detail_only)), Verdict::Final(E::InvalidParameters));
        let version = json!({"detail": "Invalid version or not permitted", "status": 422});
        assert_eq!(classify(&answer(422, version)), Verdict::NextRoute(E::ServiceError));
        // The rate-limits page's 429 body.
        let throttled = json!({"detail": "Request was throttled. Your rate limit resets in ~30s."});
        assert_eq!(classify(&answer(429, throttled)), Verdict::Retry(Pace::Brief, E::ResourceExhausted));
        assert_eq!(classify(&answer(503, json!({}))), Verdict::Retry(Pace::Brief, E::ServiceUnavailable));
    }

    #[test]
    fn a_failed_prediction_is_classified_by_its_code() {
        assert_eq!(
            prediction_failure("The input or output was flagged as sensitive (E005)"),
            Verdict::Final(E::ContentPolicyViolation)
        );
        assert_eq!(
            prediction_failure("Prediction interrupted; please retry (code: PA)"),
            Verdict::NextRoute(E::ServiceError)
        );
        assert_eq!(prediction_failure("E1001: Model out of memory"), Verdict::NextRoute(E::ResourceExhausted));
        // Words are not codes.
        assert_eq!(prediction_failure("unsafe, nsfw, policy"), Verdict::NextRoute(E::ServiceError));
    }

    #[test]
    fn a_success_without_output_fails_the_attempt() {
        let v = json!({"id": "x", "status": "succeeded", "output": null});
        assert!(matches!(state(&v), Ok(Poll::Failed(Failure { code: E::ServiceError, .. }))));
        let v = json!({"id": "x", "status": "succeeded", "output": ["https://replicate.delivery/x.mp4"]});
        assert_eq!(state(&v), Ok(Poll::Succeeded { video_url: "https://replicate.delivery/x.mp4".to_owned() }));
        assert!(state(&json!({"status": 7})).is_err());
    }

    #[test]
    fn video_input_models_go_only_to_the_replicate_models_that_host_them() {
        let catalog = vidgate_api::catalog::Catalog::builtin().unwrap();
        let spec = |m: &str| catalog.get(m).unwrap().clone();
        for (model, hosted) in VIDEO_INPUT_MODELS {
            assert_eq!(check_route(hosted, &spec(model)), Ok(()), "{model}");
        }
        let e = check_route("kwaivgi/kling-v3-video", &spec("kling-o3-video-edit")).unwrap_err();
        assert!(e.contains("use kwaivgi/kling-v3-omni-video"), "{e}");
        for model in ["kling-v3-motion-control", "kling-o1-video-edit-fast", "kling-custom-element"] {
            assert!(check_route("kwaivgi/kling-v2.6-motion-control", &spec(model)).is_err(), "{model}");
        }
    }

    #[test]
    fn an_edit_is_a_base_reference_video_and_a_reference_a_feature_with_its_duration() {
        let links = ["https://gw.example/v".to_owned()];
        let refs = [vec![0x89, b'P', b'N', b'G']];
        let (r, spec) = request(json!({"model": "kling-o3-video-edit", "prompt": "winter", "quality": "1080p",
            "keep_original_sound": false}));
        let i = input(&job(&r, &spec, "kwaivgi/kling-v3-omni-video", &refs, &links)).unwrap();
        assert_eq!(i["reference_video"], links[0]);
        assert_eq!(i["video_reference_type"], "base");
        assert_eq!((i["mode"].as_str(), i["keep_original_sound"].as_bool()), (Some("pro"), Some(false)));
        assert!(i["reference_images"][0].as_str().unwrap().starts_with("data:"), "{i}");
        // An edit's length follows its input; a reference video rules out generated audio.
        assert!(i.get("duration").is_none() && i.get("generate_audio").is_none(), "{i}");
        let (r, spec) = request(json!({"model": "kling-o3-reference-to-video", "prompt": "p", "duration": 6}));
        let i = input(&job(&r, &spec, "kwaivgi/kling-v3-omni-video", &[], &links)).unwrap();
        assert_eq!((i["video_reference_type"].as_str(), i["duration"].as_u64()), (Some("feature"), Some(6)));
        assert_eq!(i["mode"], "standard");
        // kling-o1 spells standard `std`, and has no generate_audio.
        let (r, spec) = request(json!({"model": "kling-o1-video-edit", "prompt": "p", "quality": "720p"}));
        let i = input(&job(&r, &spec, "kwaivgi/kling-o1", &[], &links)).unwrap();
        assert_eq!((i["mode"].as_str(), i["video_reference_type"].as_str()), (Some("std"), Some("base")));
        let (r, spec) = request(json!({"model": "kling-o1-image-to-video", "prompt": "p", "duration": 10}));
        let i = input(&job(&r, &spec, "kwaivgi/kling-o1", &[], &[])).unwrap();
        assert!(i.get("generate_audio").is_none() && i["duration"] == 10, "{i}");
        let (r, spec) = request(json!({"model": "kling-o3-video-edit", "prompt": "p"}));
        let mut j = job(&r, &spec, "kwaivgi/kling-v3-omni-video", &[], &links);
        j.seconds = 14;
        assert!(matches!(input(&j), Err(ProviderError::NextRoute { .. })), "a 14 s input is past 3-10 s");
        // No prompt: another route's.
        let (r, spec) = request(json!({"model": "kling-o3-video-edit"}));
        let e = input(&job(&r, &spec, "kwaivgi/kling-v3-omni-video", &[], &links));
        assert!(matches!(e, Err(ProviderError::NextRoute { .. })));
    }
}
