//! Replicate's predictions API: `POST /v1/models/{owner}/{model}/predictions` with
//! `{input}`, polled at `GET /v1/predictions/{id}` (`starting`, `processing`,
//! `succeeded`, `failed`, `canceled`); the output is one URL, which expires after an
//! hour, so the engine copies it before reporting completion.

use serde_json::{Value, json};
use vidgate_api::catalog::{Quality, Sound};
use vidgate_api::task::TaskErrorCode;

use super::{BoxFuture, Handle, Job, Poll, Provider, ProviderError, data_uri, send_json, transport_error};

#[derive(Clone)]
pub struct Replicate {
    pub base_url: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl std::fmt::Debug for Replicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicate").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl Provider for Replicate {
    fn submit<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Handle, ProviderError>> {
        Box::pin(async move {
            let r = job.request;
            let mut input = json!({
                "prompt": r.prompt.clone().unwrap_or_default(),
                "duration": r.duration,
                "mode": if r.quality == Quality::P1080 { "pro" } else { "standard" },
                "generate_audio": r.sound == Sound::On,
            });
            if let Some(n) = &r.negative_prompt {
                input["negative_prompt"] = json!(n);
            }
            if let Some(img) = job.start_image {
                input["start_image"] = json!(data_uri(img));
            } else {
                input["aspect_ratio"] = json!(r.aspect_ratio.as_str());
            }
            if let Some(img) = job.end_image {
                input["end_image"] = json!(data_uri(img));
            }
            let url = format!("{}/v1/models/{}/predictions", self.base_url.trim_end_matches('/'), job.upstream_model);
            let (status, v) =
                send_json(self.client.post(url).bearer_auth(&self.token).json(&json!({ "input": input }))).await?;
            if status.is_client_error() {
                let message = v.get("detail").and_then(Value::as_str).unwrap_or("refused").to_owned();
                return Err(if matches!(status.as_u16(), 401..=403) {
                    ProviderError::transient(format!("replicate refused our token or account ({status})"))
                } else {
                    ProviderError::Rejected { code: TaskErrorCode::InvalidParameters, message }
                });
            }
            let id = v
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::transient("replicate answer without id"))?;
            Ok(Handle { id: id.to_owned(), ..Default::default() })
        })
    }

    fn poll<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, Result<Poll, ProviderError>> {
        Box::pin(async move {
            let url = format!("{}/v1/predictions/{}", self.base_url.trim_end_matches('/'), handle.id);
            let (_, v) = send_json(self.client.get(url).bearer_auth(&self.token)).await?;
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
                    Ok(Poll::Failed { code: super::classify_message(&message), message })
                }
                Some("canceled") => Ok(Poll::Failed {
                    code: TaskErrorCode::ServiceError,
                    message: "the prediction was cancelled upstream".to_owned(),
                }),
                _ => Err(ProviderError::transient("replicate sent an unknown status")),
            }
        })
    }

    fn cancel<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let url = format!("{}/v1/predictions/{}/cancel", self.base_url.trim_end_matches('/'), handle.id);
            self.client.post(url).bearer_auth(&self.token).send().await.map_err(transport_error)?;
            Ok(())
        })
    }
}
