//! Upstream providers behind one trait. `local` is built in: it renders a real MP4
//! on this machine with the `render` crate, needs no network and costs nothing;
//! the others (`kling`, `fal`, `replicate`, `evolink`) submit to a remote API and
//! are polled. Every adapter maps its upstream's statuses and errors onto SPEC's
//! task error codes and says whether a failure may move the task to another route.
//! Providers never touch the store.

pub mod evolink;
pub mod fal;
pub mod kling;
pub mod local;
pub mod replicate;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vidgate_api::task::TaskErrorCode;

use crate::tasks::StoredRequest;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a remote provider is asked to make.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub request: &'a StoredRequest,
    /// The route's model id at the upstream.
    pub upstream_model: &'a str,
    pub start_image: Option<&'a [u8]>,
    pub end_image: Option<&'a [u8]>,
    /// For `kling-custom-element`: the frontal image, then the reference images.
    pub element_images: &'a [Vec<u8>],
    /// The upstream ids of the elements the request names, in its order.
    pub element_refs: &'a [String],
}

impl Job<'_> {
    /// True when this job makes an element rather than a video (only `kling`
    /// gets such jobs: routing refuses to send them elsewhere at start).
    pub fn makes_element(&self) -> bool {
        self.request.model == vidgate_api::catalog::ModelId::KlingCustomElement
    }
}

/// Where a submitted task lives upstream; stored with the attempt, so any replica
/// can poll it after a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Handle {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_url: Option<String>,
}

/// The upstream task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Running {
        progress: Option<u8>,
    },
    Succeeded {
        video_url: String,
    },
    /// A custom element was made; its id at the upstream.
    Element {
        element_id: String,
    },
    Failed {
        code: TaskErrorCode,
        message: String,
    },
}

/// Why a call to a provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Connect error, timeout, 429, 5xx, malformed body, account or auth trouble on
    /// our side: another route may well succeed.
    #[error("{0}")]
    Transient(String),
    /// The request itself was refused (invalid parameters, content policy): final.
    #[error("{code:?}: {message}")]
    Rejected { code: TaskErrorCode, message: String },
}

impl ProviderError {
    pub fn transient(msg: impl Into<String>) -> Self {
        Self::Transient(msg.into())
    }
}

/// One upstream API.
pub trait Provider: Send + Sync + std::fmt::Debug {
    fn submit<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Handle, ProviderError>>;
    fn poll<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, Result<Poll, ProviderError>>;
    fn cancel<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, Result<(), ProviderError>>;
}

/// Maps a transport failure or status to our error kinds.
pub(crate) fn transport_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::transient("the upstream timed out")
    } else if e.is_connect() {
        ProviderError::transient("the upstream refused the connection")
    } else if e.is_decode() {
        ProviderError::transient("the upstream sent a malformed body")
    } else {
        ProviderError::transient("the upstream connection failed")
    }
}

/// Sends a request and reads a JSON body; 429, 5xx, unreadable bodies are transient.
/// 4xx other than 429 come back as `Err(Rejected)` only when `classify_4xx` says so.
pub(crate) async fn send_json(
    req: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, serde_json::Value), ProviderError> {
    let resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    if status.as_u16() == 429 {
        return Err(ProviderError::transient("the upstream is rate limiting (429)"));
    }
    if status.is_server_error() {
        return Err(ProviderError::transient(format!("the upstream failed ({status})")));
    }
    let bytes = resp.bytes().await.map_err(transport_error)?;
    if bytes.len() > 4 * 1024 * 1024 {
        return Err(ProviderError::transient("the upstream body is too large"));
    }
    let value =
        serde_json::from_slice(&bytes).map_err(|_| ProviderError::transient("the upstream sent a malformed body"))?;
    Ok((status, value))
}

/// A plain HTTP client for configured upstream APIs (operator-given addresses, not
/// user-given ones; result downloads go through the guarded client).
pub fn upstream_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("vidgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `data:` URI of an image for APIs that take URLs.
pub(crate) fn data_uri(bytes: &[u8]) -> String {
    use base64::Engine;
    let mime = if bytes.starts_with(&[0x89, b'P', b'N', b'G']) { "image/png" } else { "image/jpeg" };
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Server-side failure codes from free text, when an upstream gives no code.
pub(crate) fn classify_message(msg: &str) -> TaskErrorCode {
    let m = msg.to_lowercase();
    if m.contains("policy") || m.contains("sensitive") || m.contains("nsfw") || m.contains("safety") {
        TaskErrorCode::ContentPolicyViolation
    } else if m.contains("timeout") || m.contains("timed out") {
        TaskErrorCode::GenerationTimeout
    } else if m.contains("invalid") || m.contains("parameter") {
        TaskErrorCode::InvalidParameters
    } else if m.contains("resource") || m.contains("capacity") || m.contains("overload") {
        TaskErrorCode::ResourceExhausted
    } else {
        TaskErrorCode::ServiceError
    }
}
