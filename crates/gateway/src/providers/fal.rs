//! fal's queue API: `POST {base}/{model_id}` with `Authorization: Key <key>` answers
//! `request_id`, `status_url`, `response_url`, `cancel_url`; the status goes
//! `IN_QUEUE` -> `IN_PROGRESS` -> `COMPLETED`, and the response holds
//! `{"video":{"url"}}` (or, for a failed request, an error `detail`).

use serde_json::{Value, json};
use vidgate_api::catalog::Sound;
use vidgate_api::task::TaskErrorCode;

use super::{Api, Failure, Handle, Job, Poll, ProviderError, data_uri, send_json, transport_error};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Fal {
    pub api: Api,
    pub key: Secret,
}

impl Fal {
    fn auth(&self) -> String {
        format!("Key {}", self.key.expose())
    }
}

fn detail(v: &Value) -> String {
    match v.get("detail") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => v.get("error").and_then(Value::as_str).unwrap_or("generation failed").to_owned(),
    }
}

impl Fal {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let r = job.request;
        let mut body = json!({
            "prompt": r.prompt.clone().unwrap_or_default(),
            "duration": job.seconds.to_string(),
            "generate_audio": r.sound == Sound::On,
        });
        if let Some(n) = &r.negative_prompt {
            body["negative_prompt"] = json!(n);
        }
        if let Some(img) = job.start_image {
            body["start_image_url"] = json!(data_uri(img));
        } else {
            body["aspect_ratio"] = json!(r.aspect_ratio.unwrap_or_default().as_str());
        }
        if let Some(img) = job.end_image {
            body["end_image_url"] = json!(data_uri(img));
        }
        let url = self.api.url(&format!("/{}", job.upstream_model.trim_start_matches('/')));
        let (status, v) = send_json(self.api.client.post(url).header("authorization", self.auth()).json(&body)).await?;
        if status.is_client_error() {
            return Err(if status.as_u16() == 401 || status.as_u16() == 403 {
                ProviderError::transient(format!("fal refused our key ({status})"))
            } else {
                ProviderError::rejected(TaskErrorCode::InvalidParameters, detail(&v))
            });
        }
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let id = field("request_id").ok_or_else(|| ProviderError::transient("fal answer without request_id"))?;
        Ok(Handle {
            id,
            kind: String::new(),
            status_url: field("status_url"),
            response_url: field("response_url"),
            cancel_url: field("cancel_url"),
        })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let status_url =
            handle.status_url.as_deref().ok_or_else(|| ProviderError::transient("fal handle without status_url"))?;
        let (_, v) = send_json(self.api.client.get(status_url).header("authorization", self.auth())).await?;
        match v.get("status").and_then(Value::as_str) {
            Some("IN_QUEUE") => Ok(Poll::Running { progress: Some(5) }),
            Some("IN_PROGRESS") => Ok(Poll::Running { progress: None }),
            Some("COMPLETED") => {
                let response_url = handle
                    .response_url
                    .as_deref()
                    .ok_or_else(|| ProviderError::transient("fal handle without response_url"))?;
                let resp = self
                    .api
                    .client
                    .get(response_url)
                    .header("authorization", self.auth())
                    .send()
                    .await
                    .map_err(transport_error)?;
                let code = resp.status();
                let v: Value =
                    resp.json().await.map_err(|_| ProviderError::transient("fal sent a malformed result"))?;
                if let Some(url) = v.pointer("/video/url").and_then(Value::as_str) {
                    return Ok(Poll::Succeeded { video_url: url.to_owned() });
                }
                let message = detail(&v);
                let code = if code.as_u16() == 422 {
                    let c = super::classify_message(&message);
                    if c == TaskErrorCode::ServiceError { TaskErrorCode::InvalidParameters } else { c }
                } else {
                    super::classify_message(&message)
                };
                Ok(Poll::Failed(Failure { code, message }))
            }
            _ => Err(ProviderError::transient("fal sent an unknown status")),
        }
    }

    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        if let Some(url) = &handle.cancel_url {
            self.api.client.put(url).header("authorization", self.auth()).send().await.map_err(transport_error)?;
        }
        Ok(())
    }
}
