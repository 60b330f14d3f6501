//! Replicate's predictions API: `POST /v1/models/{owner}/{model}/predictions` with
//! `{input}`, polled at `GET /v1/predictions/{id}` (`starting`, `processing`,
//! `succeeded`, `failed`, `canceled`); the output is one URL, which expires after an
//! hour, so the engine copies it before reporting completion.

use serde_json::{Value, json};
use vidgate_api::catalog::{Quality, Sound};
use vidgate_api::task::TaskErrorCode;

use super::{Api, Failure, Handle, Job, Poll, ProviderError, data_uri, send_json, transport_error};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Replicate {
    pub api: Api,
    pub token: Secret,
}

impl Replicate {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let r = job.request;
        let mut input = json!({
            "prompt": r.prompt.clone().unwrap_or_default(),
            "duration": job.seconds,
            "mode": if r.quality == Quality::P1080 { "pro" } else { "standard" },
            "generate_audio": r.sound == Sound::On,
        });
        if let Some(n) = &r.negative_prompt {
            input["negative_prompt"] = json!(n);
        }
        if let Some(img) = job.start_image {
            input["start_image"] = json!(data_uri(img));
        } else {
            input["aspect_ratio"] = json!(r.aspect_ratio.unwrap_or_default().as_str());
        }
        if let Some(img) = job.end_image {
            input["end_image"] = json!(data_uri(img));
        }
        let url = self.api.url(&format!("/v1/models/{}/predictions", job.upstream_model));
        let (status, v) =
            send_json(self.api.client.post(url).bearer_auth(self.token.expose()).json(&json!({ "input": input })))
                .await?;
        if status.is_client_error() {
            let message = v.get("detail").and_then(Value::as_str).unwrap_or("refused").to_owned();
            return Err(if matches!(status.as_u16(), 401..=403) {
                ProviderError::transient(format!("replicate refused our token or account ({status})"))
            } else {
                ProviderError::rejected(TaskErrorCode::InvalidParameters, message)
            });
        }
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::transient("replicate answer without id"))?;
        Ok(Handle { id: id.to_owned(), ..Default::default() })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let url = self.api.url(&format!("/v1/predictions/{}", handle.id));
        let (_, v) = send_json(self.api.client.get(url).bearer_auth(self.token.expose())).await?;
        match v.get("status").and_then(Value::as_str) {
            Some("starting") => Ok(Poll::Running { progress: Some(5) }),
            Some("processing") => Ok(Poll::Running { progress: None }),
            Some("succeeded") => {
                let url = match v.get("output") {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                };
                url.map(|video_url| Poll::Succeeded { video_url })
                    .ok_or_else(|| ProviderError::transient("replicate succeeded without output"))
            }
            Some("failed") => {
                let message = v.get("error").and_then(Value::as_str).unwrap_or("prediction failed").to_owned();
                Ok(Poll::Failed(Failure { code: super::classify_message(&message), message }))
            }
            Some("canceled") => {
                Ok(Poll::Failed(Failure::new(TaskErrorCode::ServiceError, "the prediction was cancelled upstream")))
            }
            _ => Err(ProviderError::transient("replicate sent an unknown status")),
        }
    }

    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        let url = self.api.url(&format!("/v1/predictions/{}/cancel", handle.id));
        self.api.client.post(url).bearer_auth(self.token.expose()).send().await.map_err(transport_error)?;
        Ok(())
    }
}
