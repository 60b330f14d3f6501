//! Another EvoLink-compatible gateway (EvoLink itself, or another vidgate) as an
//! upstream: this very API. Requests are written by hand; answers are read with
//! the shared `api` crate's task object.

use serde_json::{Value, json};
use vidgate_api::create::MultiShot;
use vidgate_api::task::{TaskObject, TaskStatus};

use super::{Api, Failure, Handle, Job, Poll, ProviderError, data_uri, send_json, transport_error};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Evolink {
    pub api: Api,
    pub key: Secret,
}

fn body(job: &Job<'_>) -> Value {
    let r = job.request;
    let mut b = json!({
        "model": job.upstream_model,
        "duration": job.seconds,
        "quality": r.quality.as_str(),
        "sound": r.sound.as_str(),
    });
    if let Some(p) = &r.prompt {
        b["prompt"] = json!(p);
    }
    if let Some(n) = &r.negative_prompt {
        b["negative_prompt"] = json!(n);
    }
    if let Some(img) = job.start_image {
        b["image_start"] = json!(data_uri(img));
    } else {
        b["aspect_ratio"] = json!(r.aspect_ratio.unwrap_or_default().as_str());
    }
    if let Some(img) = job.end_image {
        b["image_end"] = json!(data_uri(img));
    }
    let mut params = serde_json::Map::new();
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
    if r.watermark {
        params.insert("watermark_info".into(), json!({"enabled": true}));
    }
    if !params.is_empty() {
        b["model_params"] = Value::Object(params);
    }
    b
}

fn task(v: Value) -> Result<TaskObject, ProviderError> {
    serde_json::from_value(v).map_err(|_| ProviderError::transient("the upstream gateway sent a malformed task"))
}

impl Evolink {
    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        let url = self.api.url("/v1/videos/generations");
        let (status, v) = send_json(self.api.client.post(url).bearer_auth(self.key.expose()).json(&body(job))).await?;
        if status.is_client_error() {
            let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("refused").to_owned();
            return Err(match status.as_u16() {
                400 | 413 => ProviderError::rejected(vidgate_api::task::TaskErrorCode::InvalidParameters, message),
                _ => ProviderError::transient(format!("the upstream gateway refused ({status}): {message}")),
            });
        }
        Ok(Handle { id: task(v)?.id, ..Default::default() })
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let url = self.api.url(&format!("/v1/tasks/{}", handle.id));
        let (status, v) = send_json(self.api.client.get(url).bearer_auth(self.key.expose())).await?;
        if !status.is_success() {
            return Err(ProviderError::transient(format!("the upstream gateway answered {status}")));
        }
        let t = task(v)?;
        Ok(match t.status {
            TaskStatus::Pending | TaskStatus::Processing => Poll::Running { progress: Some(t.progress) },
            TaskStatus::Completed => match t.results.and_then(|r| r.into_iter().next()) {
                Some(video_url) => Poll::Succeeded { video_url },
                None => return Err(ProviderError::transient("the upstream gateway completed without a result")),
            },
            TaskStatus::Failed => {
                let e = t.error;
                Poll::Failed(Failure {
                    code: e.as_ref().map(|e| e.code).unwrap_or(vidgate_api::task::TaskErrorCode::UnknownError),
                    message: e.map(|e| e.message).unwrap_or_default(),
                })
            }
        })
    }

    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        let url = self.api.url(&format!("/v1/tasks/{}/cancel", handle.id));
        self.api.client.post(url).bearer_auth(self.key.expose()).send().await.map_err(transport_error)?;
        Ok(())
    }
}
