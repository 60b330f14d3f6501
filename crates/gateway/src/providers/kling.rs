//! The official Kling API (legacy routes): `POST /v1/videos/{image2video|text2video}`
//! with `model_name: "kling-v3"`, polled at `GET /v1/videos/{kind}/{task_id}`; auth
//! is a JWT (HS256, iss = AccessKey, exp = now + 1800, nbf = now - 5) signed with the
//! SecretKey, or a static API key. Service codes arrive in the body, sometimes with
//! HTTP 200 (1303: concurrency), and are mapped here.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use vidgate_api::catalog::{Quality, Shape, Sound};
use vidgate_api::create::MultiShot;
use vidgate_api::task::TaskErrorCode;

use super::{Api, Failure, Handle, Job, Poll, ProviderError, send_json};
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

impl Kling {
    fn bearer(&self) -> String {
        match &self.auth {
            KlingAuth::Jwt { access_key, secret_key } => {
                jwt(access_key.expose(), secret_key.expose(), util::now_ms() / 1000)
            }
            KlingAuth::ApiKey(k) => k.expose().to_owned(),
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
                json!(job.element_refs.iter().map(|id| json!({ "element_id": id })).collect::<Vec<_>>());
        }
        (kind, body)
    }

    /// `POST /v1/general/advanced-custom-elements`: the element's name, description
    /// and images (raw base64, like the video routes).
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

/// Maps a Kling service code (non-zero) to our error kind.
pub fn service_code_error(code: i64, message: &str) -> ProviderError {
    match code {
        // Auth (1000-1004), account/balance (1100-1103), rate and concurrency
        // (1302-1304), server (5000-5002): not the request's fault.
        1000..=1004 | 1100..=1103 | 1302..=1304 | 5000..=5002 => {
            ProviderError::transient(format!("kling service code {code}: {message}"))
        }
        1200..=1203 => ProviderError::rejected(TaskErrorCode::InvalidParameters, message),
        1300 | 1301 => ProviderError::rejected(TaskErrorCode::ContentPolicyViolation, message),
        _ => ProviderError::transient(format!("kling service code {code}: {message}")),
    }
}

fn envelope(status: reqwest::StatusCode, v: &Value) -> Result<&Value, ProviderError> {
    let code = v.get("code").and_then(Value::as_i64).ok_or_else(|| ProviderError::transient("malformed kling body"))?;
    if code != 0 {
        let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(service_code_error(code, msg));
    }
    if !status.is_success() {
        return Err(ProviderError::transient(format!("kling answered {status}")));
    }
    v.get("data").ok_or_else(|| ProviderError::transient("kling body without data"))
}

impl Kling {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let (kind, body, path) = if job.makes_element() {
            (ELEMENT, Self::element_body(job)?, "/v1/general/advanced-custom-elements".to_owned())
        } else {
            let (kind, body) = Self::body(job);
            (kind, body, format!("/v1/videos/{kind}"))
        };
        let url = self.api.url(&path);
        let (status, v) = send_json(self.api.client.post(url).bearer_auth(self.bearer()).json(&body)).await?;
        let data = envelope(status, &v)?;
        let id = data
            .get("task_id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::transient("kling answer without task_id"))?;
        Ok(Handle { id: id.to_owned(), kind: kind.to_owned(), ..Default::default() })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let url = self.api.url(&poll_path(handle));
        let (status, v) = send_json(self.api.client.get(url).bearer_auth(self.bearer())).await?;
        let data = envelope(status, &v)?;
        match data.get("task_status").and_then(Value::as_str) {
            Some("submitted") => Ok(Poll::Running { progress: Some(5) }),
            Some("processing") => Ok(Poll::Running { progress: None }),
            Some("succeed") if handle.kind == ELEMENT => data
                .pointer("/task_result/elements/0/element_id")
                .or_else(|| data.pointer("/task_result/element_id"))
                .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|n| n.to_string())))
                .map(|element_id| Poll::Element { element_id })
                .ok_or_else(|| ProviderError::transient("kling made an element without an id")),
            Some("succeed") => data
                .pointer("/task_result/videos/0/url")
                .and_then(Value::as_str)
                .map(|u| Poll::Succeeded { video_url: u.to_owned() })
                .ok_or_else(|| ProviderError::transient("kling succeeded without a video")),
            Some("failed") => {
                let msg = data.get("task_status_msg").and_then(Value::as_str).unwrap_or("generation failed");
                Ok(Poll::Failed(Failure::new(super::classify_message(msg), msg)))
            }
            _ => Err(ProviderError::transient("kling sent an unknown task status")),
        }
    }

    pub async fn cancel(&self, _handle: &Handle) -> Result<(), ProviderError> {
        // The legacy API has no cancel: the task runs out upstream; we stop polling.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn service_codes_map_to_retry_or_final() {
        assert!(matches!(service_code_error(1303, "busy"), ProviderError::Transient(_)));
        assert!(matches!(service_code_error(5001, "x"), ProviderError::Transient(_)));
        assert!(matches!(service_code_error(1102, "balance"), ProviderError::Transient(_)));
        assert!(matches!(
            service_code_error(1301, "nsfw"),
            ProviderError::Rejected(Failure { code: TaskErrorCode::ContentPolicyViolation, .. })
        ));
        assert!(matches!(
            service_code_error(1201, "bad"),
            ProviderError::Rejected(Failure { code: TaskErrorCode::InvalidParameters, .. })
        ));
    }
}
