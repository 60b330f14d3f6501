//! A small client of the vidgate API for the command line (`vidgate generate`,
//! `vidgate tasks ...`): no axum types, errors carry the API's message and field.

use std::path::Path;

use serde_json::Value;
use vidgate_api::error::ErrorBody;
use vidgate_api::task::{FileObject, TaskList, TaskObject};

/// An error as the API reported it, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message}{}", param.as_ref().map(|p| format!(" (field: {p})")).unwrap_or_default())]
    Api { status: u16, code: String, message: String, param: Option<String> },
    #[error("cannot reach {0}: is vidgate running there? (set VIDGATE_URL)")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

pub struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, key: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder().build().map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), key: key.to_owned(), http })
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = req.bearer_auth(&self.key).send().await.map_err(|e| {
            if e.is_connect() { ClientError::Unreachable(self.base.clone()) } else { ClientError::Other(e.to_string()) }
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Other(e.to_string()))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Other(format!("unexpected answer: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => {
                Err(ClientError::Api { status, code: b.error.code, message: b.error.message, param: b.error.param })
            }
            Err(_) => Err(ClientError::Other(format!("HTTP {status}"))),
        }
    }

    /// `GET {path}`, read as `T` (the admin routes, with an admin key).
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn upload(&self, path: &Path) -> Result<FileObject, ClientError> {
        let bytes = tokio::fs::read(path).await.map_err(|e| ClientError::Other(format!("{}: {e}", path.display())))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "image".to_owned());
        let form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
        self.send(self.http.post(format!("{}/v1/files", self.base)).multipart(form)).await
    }

    pub async fn create(&self, body: &Value) -> Result<TaskObject, ClientError> {
        self.send(self.http.post(format!("{}/v1/videos/generations", self.base)).json(body)).await
    }

    pub async fn task(&self, id: &str) -> Result<TaskObject, ClientError> {
        self.send(self.http.get(format!("{}/v1/tasks/{id}", self.base))).await
    }

    pub async fn cancel(&self, id: &str) -> Result<TaskObject, ClientError> {
        self.send(self.http.post(format!("{}/v1/tasks/{id}/cancel", self.base))).await
    }

    pub async fn list(&self, limit: u32, status: Option<&str>) -> Result<TaskList, ClientError> {
        let mut url = format!("{}/v1/tasks?limit={limit}", self.base);
        if let Some(s) = status {
            url.push_str(&format!("&status={s}"));
        }
        self.send(self.http.get(url)).await
    }

    /// Downloads a result link (signed; no key needed) into `path`.
    pub async fn download(&self, url: &str, path: &Path) -> Result<u64, ClientError> {
        let resp = self.http.get(url).send().await.map_err(|e| ClientError::Other(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(ClientError::Other(format!("download failed: HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| ClientError::Other(e.to_string()))?;
        tokio::fs::write(path, &bytes).await.map_err(|e| ClientError::Other(format!("{}: {e}", path.display())))?;
        Ok(bytes.len() as u64)
    }
}
