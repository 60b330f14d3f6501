//! Upstream providers. `local` is built in: it renders a real MP4 on this machine
//! with the `render` crate, needs no network and costs nothing. The remote ones
//! (`kling`, `fal`, `replicate`, `evolink`) are an enum, `Upstream`, built from
//! the configuration by `build`; each submits to its API, is polled, and sorts
//! every failure its provider documents through one classification table
//! (`Verdict`): retry on the same route, move to the next route (the breaker
//! counts it), or fail the task for the client's own fault. Nothing is ever
//! classified by scanning free text. Providers never touch the store; their
//! input is a `job::StoredRequest` and the media already loaded.

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
    /// The route's model id at the upstream, for this request's quality.
    pub upstream_model: &'a str,
    pub start_image: Option<&'a [u8]>,
    pub end_image: Option<&'a [u8]>,
    /// Reference images (`image_urls` that are not frames), in the request's order.
    pub reference_images: &'a [Vec<u8>],
    /// Links the upstream can fetch the request's stored input videos at (signed
    /// and expiring: `video_url`/`video_urls`, or an element's reference video).
    pub video_links: &'a [String],
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
    /// The upstream task ended without a usable result. A client-side code is
    /// final; any other moves the task to the next route.
    Failed(Failure),
}

/// How soon a refused submit may be tried again on the same route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// The provider's own rate or concurrency limit (Kling 1302, 1303, a 429
    /// without a code): exponential backoff from 1 s, as Kling asks, up to 3
    /// times; the provider is busy, not ill, so its breaker does not count it.
    Throttled,
    /// A brief failure (any other 429, a 5xx, a refused connection): up to 2
    /// retries; the breaker counts it.
    Brief,
}

/// What a documented failure means for the task: the one vocabulary every
/// provider's classification table answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try the same route again after a backoff (a submit); for an upstream task
    /// that already ended this way, it moves on with the code.
    Retry(Pace, TaskErrorCode),
    /// Our trouble at this provider (credentials, account, quota, a missing
    /// model) or a server-side failure: the next route, and the breaker counts it.
    NextRoute(TaskErrorCode),
    /// The request's own fault: the task fails with this code, refunded.
    Final(TaskErrorCode),
}

impl Verdict {
    /// The error a call ends with under this verdict.
    pub fn error(self, message: impl Into<String>) -> ProviderError {
        let message = message.into();
        match self {
            Verdict::Retry(pace, code) => ProviderError::Retry { pace, code, message },
            Verdict::NextRoute(code) => ProviderError::NextRoute { code, message },
            Verdict::Final(code) => ProviderError::Rejected(Failure::new(code, message)),
        }
    }

    /// An upstream task that ended this way: a final failure stays final, any
    /// other is a server-side failure with its code.
    pub fn failure(self, message: impl Into<String>) -> Failure {
        match self {
            Verdict::Retry(_, code) | Verdict::NextRoute(code) | Verdict::Final(code) => Failure::new(code, message),
        }
    }
}

/// Why a call to a provider failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth another try on the same route, after a wait.
    #[error("{message}")]
    Retry { pace: Pace, code: TaskErrorCode, message: String },
    /// Not the request's fault, and not worth retrying here: another route may
    /// well succeed (a timeout, whose outcome upstream is unknown, is one).
    #[error("{message}")]
    NextRoute { code: TaskErrorCode, message: String },
    /// The request itself was refused (invalid parameters, content policy): final.
    #[error("{0}")]
    Rejected(Failure),
}

impl ProviderError {
    /// Our trouble with this answer (malformed, unexpected): the next route.
    pub fn next_route(message: impl Into<String>) -> Self {
        Self::NextRoute { code: TaskErrorCode::ServiceError, message: message.into() }
    }

    pub fn rejected(code: TaskErrorCode, message: impl Into<String>) -> Self {
        Self::Rejected(Failure::new(code, message))
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Retry { message, .. } | Self::NextRoute { message, .. } => message,
            Self::Rejected(f) => &f.message,
        }
    }
}

/// What a credential check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The provider accepted the credentials.
    Ok,
    /// The provider refused them.
    BadCredentials,
    /// The provider could not be reached (connect error, timeout, 5xx).
    Unreachable,
    /// The provider answered something that says neither (a key without the
    /// scope the check needs, an account in trouble, an undocumented answer).
    Unknown,
}

/// A credential check's outcome, with the upstream's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: CheckStatus,
    pub message: String,
}

impl Check {
    pub fn new(status: CheckStatus, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
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

    /// The upstream task's state. `Err` means the provider gave no usable answer
    /// this time (the task may be fine); `Err(Rejected)` is a final refusal.
    pub async fn poll(&self, handle: &Handle) -> Result<Poll, ProviderError> {
        let answer = match self {
            Self::Kling(p) => p.poll(handle).await,
            Self::Fal(p) => p.poll(handle).await,
            Self::Replicate(p) => p.poll(handle).await,
            Self::Evolink(p) => p.poll(handle).await,
        };
        answer.map_err(poll_refusal)
    }

    pub async fn cancel(&self, handle: &Handle) -> Result<(), ProviderError> {
        match self {
            Self::Kling(p) => p.cancel(handle).await,
            Self::Fal(p) => p.cancel(handle).await,
            Self::Replicate(p) => p.cancel(handle).await,
            Self::Evolink(p) => p.cancel(handle).await,
        }
    }

    /// Whether a route of `spec` may send it here as `upstream_model` (refused at
    /// start when not: a misrouted model never reaches the provider).
    pub fn check_route(&self, upstream_model: &str, spec: &vidgate_api::catalog::ModelSpec) -> Result<(), String> {
        match self {
            Self::Kling(p) => p.check_route(upstream_model, spec.shape),
            Self::Fal(_) => fal::check_route(upstream_model, spec),
            Self::Replicate(_) => replicate::check_route(upstream_model, spec),
            // EvoLink hosts every catalog model under its own id.
            Self::Evolink(_) => Ok(()),
        }
    }

    /// The cheapest authenticated call the provider documents that creates
    /// nothing billable; the message never holds a secret.
    pub async fn check(&self) -> Check {
        let (check, secrets) = match self {
            Self::Kling(p) => (p.check().await, p.secrets()),
            Self::Fal(p) => (p.check().await, vec![p.key.expose()]),
            Self::Replicate(p) => (p.check().await, vec![p.token.expose()]),
            Self::Evolink(p) => (p.check().await, vec![p.key.expose()]),
        };
        // An upstream that echoes what it was sent must not make us show it.
        let message =
            secrets.into_iter().filter(|s| s.len() >= 4).fold(check.message, |m, s| m.replace(s, "[redacted]"));
        Check { message, ..check }
    }
}

/// A refused poll (a 400 on the query, an unknown task id) says nothing final
/// about the task, whatever the status would mean for a submit: no answer this
/// time. Only a task's own failure can end it for the client.
fn poll_refusal(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Rejected(f) => {
            ProviderError::next_route(format!("the upstream refused the poll: {}", f.message))
        }
        other => other,
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
            let api = Api::new(c.base_url.as_deref(), fal::QUEUE_URL, c.timeout_secs)?;
            // fal serves its queue, storage and platform APIs on three hosts; a
            // configured base URL (a proxy, the stand-in) serves all three.
            let or_base = |url: &Option<String>, public: &str| match (url, &c.base_url) {
                (Some(u), _) => u.trim_end_matches('/').to_owned(),
                (None, Some(_)) => api.base_url.clone(),
                (None, None) => public.to_owned(),
            };
            Upstream::Fal(fal::Fal {
                storage_url: or_base(&c.storage_url, fal::STORAGE_URL),
                platform_url: or_base(&c.platform_url, fal::PLATFORM_URL),
                api,
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
        ProviderConfig::Fal(c) => c.max_concurrent_polls,
        ProviderConfig::Replicate(c) | ProviderConfig::Evolink(c) => c.max_concurrent_polls,
    };
    n.unwrap_or(64).max(1)
}

/// A transport failure: a refused connection is brief (the same route may be
/// tried again); a timeout or a broken answer leaves the upstream's state
/// unknown (a submit may have been accepted), so it moves on.
pub(crate) fn transport_error(e: reqwest::Error) -> ProviderError {
    let brief = |message: &str| Verdict::Retry(Pace::Brief, TaskErrorCode::ServiceUnavailable).error(message);
    if e.is_timeout() {
        Verdict::NextRoute(TaskErrorCode::ServiceUnavailable).error("the upstream timed out")
    } else if e.is_connect() {
        brief("the upstream refused the connection")
    } else if e.is_decode() || e.is_body() {
        ProviderError::next_route("the upstream sent a broken body")
    } else {
        brief("the upstream connection failed")
    }
}

/// Largest upstream answer read (a result list, an error page): anything bigger
/// is not one of the documented JSON answers.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// One HTTP answer, read whole: its status, the headers a table may need, and
/// the body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Option<serde_json::Value>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A string field of the JSON body, at a JSON pointer.
    pub fn str_at(&self, pointer: &str) -> Option<&str> {
        self.json.as_ref()?.pointer(pointer)?.as_str()
    }
}

/// Sends a request and reads its answer, whatever the status: only a transport
/// failure or an oversized body is an error here; the adapter's table
/// classifies the rest.
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<Answer, ProviderError> {
    let mut resp = req.send().await.map_err(transport_error)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ProviderError::next_route("the upstream answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, headers, json: serde_json::from_slice(&body).ok() })
}

/// What an HTTP status alone says, for answers a table cannot read more from:
/// 429 and 5xx may pass (the same route, after a wait), 401 and 403 are our
/// credentials or account, anything else unexpected moves on.
pub(crate) fn by_status(status: u16) -> Verdict {
    match status {
        429 => Verdict::Retry(Pace::Brief, TaskErrorCode::ResourceExhausted),
        500..=599 => Verdict::Retry(Pace::Brief, TaskErrorCode::ServiceUnavailable),
        401 | 403 => Verdict::NextRoute(TaskErrorCode::ServiceUnavailable),
        404 => Verdict::NextRoute(TaskErrorCode::ResourceNotFound),
        _ => Verdict::NextRoute(TaskErrorCode::ServiceError),
    }
}

/// At most `max` characters of an upstream's words, for messages and logs.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
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

/// The MIME type of an image by its content.
pub(crate) fn image_mime(bytes: &[u8]) -> &'static str {
    vidgate_api::image::sniff_image(bytes).map(|i| i.format.mime()).unwrap_or("image/jpeg")
}

/// `data:` URI of an image, for the APIs that document them as an input.
pub(crate) fn data_uri(bytes: &[u8]) -> String {
    use base64::Engine;
    format!("data:{};base64,{}", image_mime(bytes), base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
pub(crate) mod table_tests {
    //! Invariants every provider's table must keep.

    use super::*;

    /// A stored request read from its JSON form, and the built-in catalog's spec of
    /// its model: what an adapter's request-body tests start from.
    pub fn request(v: serde_json::Value) -> (StoredRequest, vidgate_api::catalog::ModelSpec) {
        let r: StoredRequest = serde_json::from_value(v).expect("a stored request");
        let catalog = vidgate_api::catalog::Catalog::builtin().expect("the built-in catalog");
        let spec = catalog.get(r.model.as_str()).expect("a catalog model").clone();
        (r, spec)
    }

    /// A job for `r` at `upstream_model`, with reference images and input-video links.
    pub fn job<'a>(
        r: &'a StoredRequest,
        spec: &'a vidgate_api::catalog::ModelSpec,
        upstream_model: &'a str,
        references: &'a [Vec<u8>],
        links: &'a [String],
    ) -> Job<'a> {
        Job {
            request: r,
            spec,
            seconds: r.duration.unwrap_or(5),
            upstream_model,
            start_image: None,
            end_image: None,
            reference_images: references,
            video_links: links,
            element_images: &[],
            element_refs: &[],
        }
    }

    /// A final verdict blames the request; a next-route or retry verdict never
    /// does (else the engine would end a task a retry could save, or retry one
    /// it must not).
    pub fn consistent(v: Verdict) -> bool {
        match v {
            Verdict::Final(code) => code.is_client_side(),
            Verdict::NextRoute(code) | Verdict::Retry(_, code) => !code.is_client_side(),
        }
    }

    #[test]
    fn the_status_fallback_keeps_client_codes_out_of_retries() {
        for status in [400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504] {
            assert!(consistent(by_status(status)), "{status}");
        }
    }

    #[test]
    fn a_refused_poll_is_no_answer_never_a_final_failure() {
        let refused = Verdict::Final(TaskErrorCode::InvalidParameters).error("invalid_task_id");
        assert!(matches!(poll_refusal(refused), ProviderError::NextRoute { .. }));
        let busy = Verdict::Retry(Pace::Brief, TaskErrorCode::ServiceUnavailable).error("503");
        assert_eq!(poll_refusal(busy.clone()), busy);
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("héllo", 2), "hé...");
        assert_eq!(clip("ok", 5), "ok");
    }
}
