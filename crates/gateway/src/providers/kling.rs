//! The official Kling API (legacy design standard): `POST /v1/videos/{image2video|text2video}`
//! with `model_name: "kling-v3"`, polled at `GET /v1/videos/{kind}/{task_id}`; elements
//! at `/v1/general/advanced-custom-elements`. Auth is a JWT (HS256, iss = AccessKey,
//! exp = now + 1800, nbf = now - 5) signed with the SecretKey, or a static API key.
//! Every answer is the envelope `{code, message, request_id, data}`; failures are
//! classified by the business `code` (`CODES`, Kling's error-code table), never by
//! the HTTP status alone (a 429 may carry 1303, busy, or 1102, an empty account),
//! and a task refused for its content says so in Kling's own words.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use vidgate_api::catalog::{Quality, Shape, Sound};
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

    fn body(job: &Job<'_>) -> (&'static str, Value) {
        let r = job.request;
        let kind = if job.spec.shape == Shape::TextToVideo { "text2video" } else { "image2video" };
        let mut body = json!({
            "model_name": job.upstream_model,
            "prompt": r.prompt.clone().unwrap_or_default(),
            "duration": job.seconds.to_string(),
            "mode": if r.quality == Quality::P1080 { "pro" } else { "std" },
            "sound": if r.sound == Sound::On { "on" } else { "off" },
            "callback_url": "",
        });
        if let Some(n) = &r.negative_prompt {
            body["negative_prompt"] = json!(n);
        }
        if kind == "text2video" {
            body["aspect_ratio"] = json!(r.aspect_ratio.unwrap_or_default().as_str());
        }
        if let Some(img) = job.start_image {
            // Kling takes raw base64 (no data: prefix) or a URL.
            body["image"] = json!(STANDARD.encode(img));
        }
        if let Some(img) = job.end_image {
            body["image_tail"] = json!(STANDARD.encode(img));
        }
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
        if r.watermark {
            body["watermark_info"] = json!({ "enabled": true });
        }
        if !job.element_refs.is_empty() {
            body["element_list"] =
                json!(job.element_refs.iter().map(|id| json!({ "element_id": element_ref(id) })).collect::<Vec<_>>());
        }
        (kind, body)
    }

    /// `POST /v1/general/advanced-custom-elements`: every field the docs mark
    /// required (`element_name`, `element_description`, `reference_type`, and for
    /// `image_refer` the frontal image with 1 to 3 reference images), images as
    /// raw base64 like the video routes.
    fn element_body(job: &Job<'_>) -> Result<Value, ProviderError> {
        let e = job.request.element.as_ref().ok_or_else(|| {
            ProviderError::rejected(TaskErrorCode::InvalidParameters, "the element definition is missing")
        })?;
        let (frontal, refers) = job.element_images.split_first().ok_or_else(|| {
            ProviderError::rejected(TaskErrorCode::InvalidParameters, "the element has no frontal image")
        })?;
        Ok(json!({
            "element_name": e.name,
            "element_description": e.description,
            "reference_type": "image_refer",
            "element_image_list": {
                "frontal_image": STANDARD.encode(frontal),
                "refer_images": refers.iter().map(|i| json!({ "image_url": STANDARD.encode(i) })).collect::<Vec<_>>(),
            },
            "callback_url": "",
        }))
    }
}

/// Where a handle's task is polled: video tasks under their route, element tasks
/// under the elements route.
fn poll_path(handle: &Handle) -> String {
    if handle.kind == ELEMENT {
        format!("/v1/general/advanced-custom-elements/{}", handle.id)
    } else {
        format!("/v1/videos/{}/{}", handle.kind, handle.id)
    }
}

const ELEMENT: &str = "element";

/// A poll's `data` as the task's state.
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
            let shown = if msg.is_empty() { "kling: the generation failed".to_owned() } else { clip(msg, 300) };
            Ok(Poll::Failed(task_failure(msg).failure(shown)))
        }
        Some(other) => {
            Err(ProviderError::next_route(format!("kling sent an unknown task status {:?}", clip(other, 40))))
        }
        None => Err(ProviderError::next_route("kling sent a task without a status")),
    }
}

impl Kling {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let (kind, body, path) = if job.makes_element() {
            (ELEMENT, Self::element_body(job)?, "/v1/general/advanced-custom-elements".to_owned())
        } else {
            let (kind, body) = Self::body(job);
            (kind, body, format!("/v1/videos/{kind}"))
        };
        let answer = send(self.api.client.post(self.api.url(&path)).bearer_auth(self.bearer()).json(&body)).await?;
        let id = data(&answer)?
            .get("task_id")
            .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|n| n.to_string())))
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ProviderError::next_route("kling accepted without a task_id"))?;
        Ok(Handle { id, kind: kind.to_owned(), ..Default::default() })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let url = self.api.url(&poll_path(handle));
        let answer = send(self.api.client.get(url).bearer_auth(self.bearer())).await?;
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
    fn element_ids_go_upstream_as_kling_types_them() {
        assert_eq!(element_ref("1000042"), json!(1000042));
        assert_eq!(element_ref("abc"), json!("abc"));
    }
}
