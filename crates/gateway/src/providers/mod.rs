//! Upstream providers. `local` is built in: it renders a real MP4 on this machine
//! with the `render` crate, needs no network and costs nothing. The remote ones
//! (`kling`, `fal`, `replicate`, `evolink`) are an enum, `Upstream`, built from
//! the configuration by `build`; each submits to its API, is polled, and maps its
//! statuses and errors onto SPEC's task error codes, saying whether a failure may
//! move the task to another route. Providers never touch the store; their input
//! is a `job::StoredRequest` and the media already loaded.

pub mod evolink;
pub mod fal;
pub mod kling;
pub mod local;
pub mod replicate;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vidgate_api::task::TaskErrorCode;

use crate::config::ProviderConfig;
use crate::job::StoredRequest;
use crate::secret::Secret;

/// A task-level failure: a SPEC error code and a message fit for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: TaskErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: TaskErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// What a remote provider is asked to make.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub request: &'a StoredRequest,
    /// The catalog's description of the request's model.
    pub spec: &'a vidgate_api::catalog::ModelSpec,
    /// Seconds of video to make (the request's duration, or its input video's).
    pub seconds: u32,
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
        self.spec.shape == vidgate_api::catalog::Shape::CustomElement
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
    Failed(Failure),
}

/// Why a call to a provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Connect error, timeout, 429, 5xx, malformed body, account or auth trouble on
    /// our side: another route may well succeed.
    #[error("{0}")]
    Transient(String),
    /// The request itself was refused (invalid parameters, content policy): final.
    #[error("{0}")]
    Rejected(Failure),
}

impl ProviderError {
    pub fn transient(msg: impl Into<String>) -> Self {
        Self::Transient(msg.into())
    }

    pub fn rejected(code: TaskErrorCode, message: impl Into<String>) -> Self {
        Self::Rejected(Failure::new(code, message))
    }
}

/// A remote upstream API, one variant per kind (static dispatch: no boxed futures).
#[derive(Debug)]
pub enum Upstream {
    Kling(kling::Kling),
    Fal(fal::Fal),
    Replicate(replicate::Replicate),
    Evolink(evolink::Evolink),
}

impl Upstream {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kling(_) => "kling",
            Self::Fal(_) => "fal",
            Self::Replicate(_) => "replicate",
            Self::Evolink(_) => "evolink",
        }
    }

    pub async fn submit(&self, job: &Job<'_>) -> Result<Handle, ProviderError> {
        match self {
            Self::Kling(p) => p.submit(job).await,
            Self::Fal(p) => p.submit(job).await,
            Self::Replicate(p) => p.submit(job).await,
            Self::Evolink(p) => p.submit(job).await,
        }
    }

    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        match self {
            Self::Kling(p) => p.poll(handle).await,
            Self::Fal(p) => p.poll(handle).await,
            Self::Replicate(p) => p.poll(handle).await,
            Self::Evolink(p) => p.poll(handle).await,
        }
    }

    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        match self {
            Self::Kling(p) => p.cancel(handle).await,
            Self::Fal(p) => p.cancel(handle).await,
            Self::Replicate(p) => p.cancel(handle).await,
            Self::Evolink(p) => p.cancel(handle).await,
        }
    }
}

/// The connection every adapter shares: its base URL (no trailing slash) and an
/// HTTP client with the provider's timeout.
#[derive(Debug, Clone)]
pub struct Api {
    pub base_url: String,
    pub client: reqwest::Client,
}

impl Api {
    fn new(base_url: Option<&str>, default: &str, timeout_secs: Option<u64>) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(timeout_secs.unwrap_or(30).max(1));
        let base_url = base_url.unwrap_or(default).trim_end_matches('/').to_owned();
        Ok(Self { base_url, client: upstream_client(timeout)? })
    }

    /// `{base_url}{path}`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// Builds the provider named `name` from its configuration; credentials are read
/// from the files or env variables the configuration names. `None` for `local`.
pub fn build(
    name: &str,
    config: &ProviderConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Upstream>> {
    // A credential from its file when one is named, else from its env variable.
    let secret = |var: &Option<String>, file: &Option<PathBuf>, what: &str| -> anyhow::Result<Secret> {
        if let Some(path) = file {
            return std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim()))
                .map_err(|e| anyhow::anyhow!("provider {name}: cannot read {what}_file: {e}"));
        }
        let var = var.as_deref().ok_or_else(|| anyhow::anyhow!("provider {name}: {what}_env is not set"))?;
        env(var)
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| anyhow::anyhow!("provider {name}: env variable {var} is empty"))
    };
    Ok(Some(match config {
        ProviderConfig::Local {} => return Ok(None),
        ProviderConfig::Kling(c) => {
            let auth = if c.access_key_env.is_some() || c.access_key_file.is_some() {
                kling::KlingAuth::Jwt {
                    access_key: secret(&c.access_key_env, &c.access_key_file, "access_key")?,
                    secret_key: secret(&c.secret_key_env, &c.secret_key_file, "secret_key")?,
                }
            } else {
                kling::KlingAuth::ApiKey(secret(&c.api_key_env, &c.api_key_file, "api_key")?)
            };
            let api = Api::new(c.base_url.as_deref(), "https://api-singapore.klingai.com", c.timeout_secs)?;
            Upstream::Kling(kling::Kling { api, auth })
        }
        ProviderConfig::Fal(c) => {
            let key = secret(&c.api_key_env, &c.api_key_file, "api_key")?;
            Upstream::Fal(fal::Fal {
                api: Api::new(c.base_url.as_deref(), "https://queue.fal.run", c.timeout_secs)?,
                key,
            })
        }
        ProviderConfig::Replicate(c) => {
            let token = secret(&c.api_key_env, &c.api_key_file, "api_key")?;
            let api = Api::new(c.base_url.as_deref(), "https://api.replicate.com", c.timeout_secs)?;
            Upstream::Replicate(replicate::Replicate { api, token })
        }
        ProviderConfig::Evolink(c) => {
            let base = c.base_url.as_deref().ok_or_else(|| anyhow::anyhow!("provider {name}: base_url is required"))?;
            let key = secret(&c.api_key_env, &c.api_key_file, "api_key")?;
            Upstream::Evolink(evolink::Evolink { api: Api::new(Some(base), base, c.timeout_secs)?, key })
        }
    }))
}

/// Polls in flight at once that a provider's configuration allows.
pub fn max_concurrent_polls(config: &ProviderConfig) -> usize {
    let n = match config {
        ProviderConfig::Local {} => None,
        ProviderConfig::Kling(c) => c.max_concurrent_polls,
        ProviderConfig::Fal(c) | ProviderConfig::Replicate(c) | ProviderConfig::Evolink(c) => c.max_concurrent_polls,
    };
    n.unwrap_or(64).max(1)
}

/// Maps a transport failure to our error kinds.
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

/// Sends a request and reads a JSON body; 429, 5xx and unreadable bodies are
/// transient. Every other status comes back as `Ok` with its body, for the
/// adapter to classify.
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
    let mime = vidgate_api::image::sniff_image(bytes).map(|i| i.format.mime()).unwrap_or("image/jpeg");
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
