//! A stand-in upstream for vidgate's tests and benchmarks (never a production route). It speaks
//! four providers on loopback as their public docs and SDKs describe them, not as vidgate's
//! adapters assume: Kling's official API ([`kling`]), fal's queue, storage and platform APIs
//! ([`fal`]), Replicate's predictions API ([`replicate`]) and EvoLink's unified API
//! ([`evolink`]). It renders nothing: every result is one configured video. Faults come from
//! seeded dice, for all protocols or per protocol, and a provider can be taken down (5xx on every
//! call, or the listener refusing connections) and brought back at run time.
//!
//! Tasks are rows in one table whose state follows from their poll count: no timer per task, so
//! 10000 in-flight tasks cost nothing while nobody polls them.
//!
//! Protocol roots under one base URL: `{base}/kling`, `{base}/fal`, `{base}/replicate`,
//! `{base}/evolink`; result files at `{base}/files/{name}`; counters at `GET {base}/stats`; the
//! `vidgate-sim` process is steered at `POST {base}/control/...` (see [`router`]).

pub mod evolink;
pub mod fal;
pub mod kling;
pub mod replicate;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub use kling::verify_jwt;

/// A small valid MP4 (3 s, 160x90, made by vidgate's own renderer): the default
/// result of every task.
pub const CLIP: &[u8] = include_bytes!("../assets/clip.mp4");

/// The four protocols the sim speaks, each under its own root (`/kling`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Kling,
    Fal,
    Replicate,
    Evolink,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [Protocol::Kling, Protocol::Fal, Protocol::Replicate, Protocol::Evolink];

    /// `kling`, `fal`, `replicate`, `evolink`: the root path and the stats key.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Kling => "kling",
            Protocol::Fal => "fal",
            Protocol::Replicate => "replicate",
            Protocol::Evolink => "evolink",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The index into [`Stats::by_protocol`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a request can go wrong before it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status, the body in the protocol's documented error shape for it
    /// (Kling: the business code its docs pair with that status).
    Status(u16),
    /// A Kling business code at the HTTP status Kling documents for it (1100-1102 and 1302-1304
    /// are 429, 1103 is 403, ...). Other protocols answer that HTTP status in their own shape.
    KlingCode(u32),
    /// Kling's concurrency code 1303 arriving with HTTP 200, as a third party observed (LiteLLM's
    /// Kling tests); other protocols answer 429.
    Kling1303,
    /// HTTP 200 with a body that is not the protocol's JSON.
    Malformed,
    /// Never answer (the client's timeout must fire).
    Hang,
}

impl Fault {
    /// `429`, `503` (any 4xx/5xx status); `1100`..`5002` (a Kling code at its documented
    /// status); `1303@200`; `malformed`; `hang`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1303@200" => Some(Self::Kling1303),
            "malformed" => Some(Self::Malformed),
            "hang" => Some(Self::Hang),
            n => {
                let n: u32 = n.parse().ok()?;
                if kling::http_status(n).is_some() {
                    Some(Self::KlingCode(n))
                } else {
                    u16::try_from(n).ok().filter(|c| (400..600).contains(c)).map(Self::Status)
                }
            }
        }
    }

    /// The HTTP status a protocol other than Kling answers for this fault.
    pub(crate) fn http_status(self) -> u16 {
        match self {
            Fault::Status(s) => s,
            Fault::KlingCode(c) => kling::http_status(c).unwrap_or(500),
            Fault::Kling1303 => 429,
            Fault::Malformed | Fault::Hang => 200,
        }
    }
}

/// The fault knobs of one protocol (or of all of them, see [`SimConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Share of submits that meet `submit_fault` (0..=1).
    pub submit_fault_rate: f64,
    pub submit_fault: Fault,
    /// Share of polls that meet `poll_fault`.
    pub poll_fault_rate: f64,
    pub poll_fault: Fault,
    /// Share of accepted tasks that fail for a server-side reason, in the provider's own words.
    pub fail_rate: f64,
    /// Share of accepted tasks refused for their content, in the provider's own words and shape
    /// (Kling "Failure to pass the risk control system", fal `content_policy_violation`,
    /// Replicate E005, EvoLink `content_policy_violation`).
    pub refuse_rate: f64,
    /// Share of accepted tasks that never finish.
    pub stuck_rate: f64,
    /// Share of finished tasks whose result file is not a video.
    pub bad_result_rate: f64,
    /// Share of finished tasks whose success answer is not what the docs describe (fal: a
    /// COMPLETED request whose result is not JSON; the others: no result in the success body).
    pub bad_body_rate: f64,
    /// `Some(status)`: the provider is down and answers every call (submit, poll, cancel,
    /// credential check) with this status in its own error shape.
    pub down: Option<u16>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            submit_fault_rate: 0.0,
            submit_fault: Fault::Status(503),
            poll_fault_rate: 0.0,
            poll_fault: Fault::Status(503),
            fail_rate: 0.0,
            refuse_rate: 0.0,
            stuck_rate: 0.0,
            bad_result_rate: 0.0,
            bad_body_rate: 0.0,
            down: None,
        }
    }
}

/// What the sim does; change it at run time with [`SimHandle::set`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The bytes served as every result video.
    pub video: Vec<u8>,
    /// Kling AK/SK for the HS256 JWT (legacy design standard only, as Kling documents).
    pub kling_access_key: String,
    pub kling_secret_key: String,
    /// A static Kling API key, accepted on every Kling API (the only credential the new design
    /// standard takes).
    pub kling_api_key: String,
    /// `Authorization: Key <fal_key>`.
    pub fal_key: String,
    /// Whether the fal key has admin (billing read) scope; without it fal's billing endpoint
    /// answers 403, as fal's platform API does for an inference-only key.
    pub fal_key_admin: bool,
    /// `Bearer <replicate_token>` (or the older `Token <replicate_token>`).
    pub replicate_token: String,
    /// `Bearer <evolink_key>`.
    pub evolink_key: String,
    /// Added before every answer.
    pub latency: Duration,
    /// Polls before a task finishes.
    pub polls_to_finish: u32,
    /// Global fault knobs (used by every protocol without an entry in `per_protocol`).
    pub submit_fault_rate: f64,
    pub submit_fault: Fault,
    pub poll_fault_rate: f64,
    pub poll_fault: Fault,
    /// Accepted tasks that fail server-side; see [`Faults::fail_rate`].
    pub fail_rate: f64,
    /// The failure text of those tasks; empty means each provider's own realistic wording.
    pub fail_message: String,
    pub refuse_rate: f64,
    pub stuck_rate: f64,
    pub bad_result_rate: f64,
    pub bad_body_rate: f64,
    pub down: Option<u16>,
    /// Protocols with their own knobs: an entry replaces all the global fault knobs above for
    /// that protocol. [`SimConfig::protocol`] makes one starting from the global values.
    pub per_protocol: BTreeMap<Protocol, Faults>,
    /// The fal error type a server-side failure (`fail_rate`) ends with: a model error type
    /// (`internal_server_error`, `generation_timeout`, `downstream_service_error`,
    /// `no_media_generated`, `image_too_small`, ...) or a request error type
    /// (`runner_disconnected`, `request_timeout`, ...). See [`fal::ERROR_TYPES`].
    pub fal_failure: String,
    /// Overrides the `X-Fal-Retryable` header fal sends with a model error.
    pub fal_retryable: Option<bool>,
    /// Whether the fal models take `data:` URIs as image inputs. fal's docs say only "some models
    /// also accept data URIs"; when false they fail with `file_download_error`.
    pub fal_accept_data_uris: bool,
    /// The Replicate models that exist (`owner/name`); any other answers 404.
    pub replicate_models: Vec<String>,
    /// Seed of the fault dice: same seed, same faults in the same order.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        let f = Faults::default();
        Self {
            video: CLIP.to_vec(),
            kling_access_key: "ak-sim".to_owned(),
            kling_secret_key: "sk-sim".to_owned(),
            kling_api_key: "kling-key-sim".to_owned(),
            fal_key: "fal-sim".to_owned(),
            fal_key_admin: true,
            replicate_token: "r8-sim".to_owned(),
            evolink_key: "sk-evo-sim".to_owned(),
            latency: Duration::ZERO,
            polls_to_finish: 2,
            submit_fault_rate: f.submit_fault_rate,
            submit_fault: f.submit_fault,
            poll_fault_rate: f.poll_fault_rate,
            poll_fault: f.poll_fault,
            fail_rate: f.fail_rate,
            fail_message: String::new(),
            refuse_rate: f.refuse_rate,
            stuck_rate: f.stuck_rate,
            bad_result_rate: f.bad_result_rate,
            bad_body_rate: f.bad_body_rate,
            down: f.down,
            per_protocol: BTreeMap::new(),
            fal_failure: fal::DEFAULT_FAILURE.to_owned(),
            fal_retryable: None,
            fal_accept_data_uris: true,
            replicate_models: replicate::DEFAULT_MODELS.iter().map(|m| (*m).to_owned()).collect(),
            seed: 1,
        }
    }
}

impl SimConfig {
    /// The global fault knobs.
    pub fn global_faults(&self) -> Faults {
        Faults {
            submit_fault_rate: self.submit_fault_rate,
            submit_fault: self.submit_fault,
            poll_fault_rate: self.poll_fault_rate,
            poll_fault: self.poll_fault,
            fail_rate: self.fail_rate,
            refuse_rate: self.refuse_rate,
            stuck_rate: self.stuck_rate,
            bad_result_rate: self.bad_result_rate,
            bad_body_rate: self.bad_body_rate,
            down: self.down,
        }
    }

    /// The knobs protocol `p` runs with.
    pub fn faults(&self, p: Protocol) -> Faults {
        self.per_protocol.get(&p).copied().unwrap_or_else(|| self.global_faults())
    }

    /// Protocol `p`'s own knobs, created from the global ones on first use.
    pub fn protocol(&mut self, p: Protocol) -> &mut Faults {
        let global = self.global_faults();
        self.per_protocol.entry(p).or_insert(global)
    }
}

/// What the sim has seen.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Submits that reached the sim (counted before credentials and faults).
    pub submits: u64,
    pub accepted: u64,
    pub polls: u64,
    pub faults: u64,
    pub cancels: u64,
    pub downloads: u64,
    /// Accepted tasks by protocol, indexed by [`Protocol::index`] (kling, fal, replicate, evolink).
    pub by_protocol: [u64; 4],
    /// Requests whose credentials were wrong.
    pub unauthorized: u64,
    /// The most polls ever in flight at once.
    pub max_polls_in_flight: u64,
    /// Every submit by `"{protocol}:{endpoint}"`, accepted or not. The endpoint is the path
    /// below the protocol root: fal's model id (`fal-ai/kling-video/v3/standard/image-to-video`),
    /// Kling's `v1/videos/image2video` or `text-to-video/kling-3.0-turbo`, Replicate's
    /// `kwaivgi/kling-v3-video`, EvoLink's `v1/videos/generations`.
    pub endpoints: BTreeMap<String, u64>,
    /// Accepted tasks by `"{protocol}:{model}"`: fal's model id, Kling's `model_name` (legacy)
    /// or path model (new standard), Replicate's `owner/name`, EvoLink's `model`.
    pub by_model: BTreeMap<String, u64>,
    /// Files uploaded to fal storage and completed.
    pub uploads: u64,
    /// Credential checks answered (Kling `/account/costs`, fal billing, Replicate account,
    /// EvoLink credits), whatever the answer.
    pub credential_checks: u64,
}

impl Stats {
    /// Submits that hit `endpoint` of protocol `p` (see [`Stats::endpoints`]).
    pub fn hits(&self, p: Protocol, endpoint: &str) -> u64 {
        self.endpoints.get(&format!("{}:{endpoint}", p.name())).copied().unwrap_or(0)
    }

    /// Tasks accepted for `model` on protocol `p` (see [`Stats::by_model`]).
    pub fn accepted_for(&self, p: Protocol, model: &str) -> u64 {
        self.by_model.get(&format!("{}:{model}", p.name())).copied().unwrap_or(0)
    }
}

/// One submit as the sim saw it.
#[derive(Debug, Clone)]
pub struct Submit {
    pub protocol: Protocol,
    /// The path below the protocol root (see [`Stats::endpoints`]).
    pub endpoint: String,
    /// The request body as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
}

/// How an accepted task ends.
#[derive(Debug, Clone)]
pub(crate) enum Fate {
    Succeed,
    /// A server-side failure.
    ServerFail,
    /// A content refusal.
    Refuse,
    Stuck,
    /// Finishes with a link to a file that is not a video.
    BadResult,
    /// Finishes with a success answer that lacks the documented result.
    BadBody,
    /// fal only: an input the model's schema rejects, found when the request is processed (fal
    /// queues first and validates in the runner), carrying the `detail` array.
    Invalid(Arc<Value>),
}

#[derive(Debug)]
struct Task {
    protocol: Protocol,
    /// The resource that serves it, e.g. `v1/videos/text2video`; a task is found only there.
    resource: &'static str,
    model: String,
    polls: u32,
    fate: Fate,
    cancelled: bool,
    created_ms: i64,
    duration: u32,
    seq: u64,
    external_id: Option<String>,
    /// What the protocol echoes back (fal's input on errors, Replicate's `input`, a Kling element).
    echo: Option<Arc<Value>>,
}

/// Where a polled task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued,
    Running,
    Finished,
}

/// A snapshot of one task, taken under the lock.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub id: String,
    pub model: String,
    pub phase: Phase,
    pub fate: Fate,
    pub cancelled: bool,
    pub created_ms: i64,
    pub duration: u32,
    pub seq: u64,
    pub external_id: Option<String>,
    pub echo: Option<Arc<Value>>,
}

/// A task to register.
pub(crate) struct NewTask {
    pub protocol: Protocol,
    pub resource: &'static str,
    pub model: String,
    pub duration: u32,
    pub external_id: Option<String>,
    /// A fate decided by the request itself (fal's late validation), not by the dice.
    pub forced: Option<Fate>,
    pub echo: Option<Value>,
    /// Keep `echo` whatever the fate (else only for failing fates).
    pub echo_always: bool,
}

/// A fal storage upload: initiated, then filled by `PUT`.
#[derive(Debug)]
pub(crate) struct Upload {
    pub file_name: String,
    pub content_type: String,
    pub bytes: Option<Arc<Vec<u8>>>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub config: SimConfig,
    tasks: HashMap<String, Task>,
    /// Kling's `external_task_id`s: unique per account, and a task can be queried by one.
    external: HashMap<String, String>,
    pub uploads: HashMap<String, Upload>,
    pub stats: Stats,
    polls_in_flight: u64,
    next: u64,
    rng: u64,
    pub base: String,
    last: HashMap<&'static str, Submit>,
}

impl Inner {
    fn new(config: SimConfig, base: String) -> Self {
        let rng = config.seed.max(1);
        Self {
            config,
            tasks: HashMap::new(),
            external: HashMap::new(),
            uploads: HashMap::new(),
            stats: Stats::default(),
            polls_in_flight: 0,
            next: 0,
            rng,
            base,
            last: HashMap::new(),
        }
    }

    /// xorshift64*: deterministic dice for the fault rates.
    fn roll(&mut self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        r < rate
    }

    /// A fresh sequence number (ids, request ids, upload tokens).
    pub fn seq(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Whether `external_id` is already taken (Kling: unique within an account).
    pub fn external_taken(&self, external_id: &str) -> bool {
        self.external.contains_key(external_id)
    }

    /// The task id behind a task id or an external id.
    pub fn resolve(&self, id: &str) -> Option<String> {
        if self.tasks.contains_key(id) { Some(id.to_owned()) } else { self.external.get(id).cloned() }
    }
}

pub(crate) type Shared = Arc<Mutex<Inner>>;

/// The sim's state; a panic elsewhere never makes it unusable.
pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What kind of call a request is, for the counters and the fault dice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Submit,
    Poll,
    /// Cancels, credential checks, uploads: no dice.
    Other,
}

/// Why a call is not served normally; each protocol renders it in its own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Down(u16),
    Unauthorized,
    Fault(Fault),
}

/// The door every call goes through: down, then credentials, then latency and the fault dice.
pub(crate) async fn admit(s: &Shared, p: Protocol, call: Call, authorized: bool) -> Result<(), Refusal> {
    let (latency, fault) = {
        let mut i = lock(s);
        let faults = i.config.faults(p);
        match call {
            Call::Submit => i.stats.submits += 1,
            Call::Poll => i.stats.polls += 1,
            Call::Other => {}
        }
        if let Some(status) = faults.down {
            i.stats.faults += 1;
            return Err(Refusal::Down(status));
        }
        if !authorized {
            i.stats.unauthorized += 1;
            return Err(Refusal::Unauthorized);
        }
        let (rate, kind) = match call {
            Call::Submit => (faults.submit_fault_rate, faults.submit_fault),
            Call::Poll => (faults.poll_fault_rate, faults.poll_fault),
            Call::Other => (0.0, faults.submit_fault),
        };
        let fault = i.roll(rate).then_some(kind);
        if fault.is_some() {
            i.stats.faults += 1;
        }
        if call == Call::Poll {
            i.polls_in_flight += 1;
            i.stats.max_polls_in_flight = i.stats.max_polls_in_flight.max(i.polls_in_flight);
        }
        (i.config.latency, fault)
    };
    // A poll is in flight until its latency (or hang) is over, or its connection is dropped.
    let _in_flight = (call == Call::Poll).then(|| PollInFlight(s.clone()));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Hang) => {
            // Longer than any client timeout; the connection is dropped with the server.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Err(Refusal::Fault(Fault::Hang))
        }
        Some(f) => Err(Refusal::Fault(f)),
        None => Ok(()),
    }
}

struct PollInFlight(Shared);

impl Drop for PollInFlight {
    fn drop(&mut self) {
        let mut i = lock(&self.0);
        i.polls_in_flight = i.polls_in_flight.saturating_sub(1);
    }
}

/// Counts a submit under its endpoint and keeps its body as the last one for `key`.
pub(crate) fn record_submit(s: &Shared, key: &'static str, protocol: Protocol, endpoint: &str, body: &Value) {
    let mut i = lock(s);
    *i.stats.endpoints.entry(format!("{}:{endpoint}", protocol.name())).or_default() += 1;
    i.last.insert(key, Submit { protocol, endpoint: endpoint.to_owned(), body: body.clone() });
}

/// Registers an accepted task, rolling its fate; returns its view.
pub(crate) fn accept(s: &Shared, t: NewTask) -> View {
    let mut i = lock(s);
    let seq = i.seq();
    let id = new_id(t.protocol, seq, i.config.seed);
    i.stats.accepted += 1;
    if let Some(n) = i.stats.by_protocol.get_mut(t.protocol.index()) {
        *n += 1;
    }
    *i.stats.by_model.entry(format!("{}:{}", t.protocol.name(), t.model)).or_default() += 1;
    let f = i.config.faults(t.protocol);
    let fate = match t.forced {
        Some(fate) => fate,
        None if i.roll(f.fail_rate) => Fate::ServerFail,
        None if i.roll(f.refuse_rate) => Fate::Refuse,
        None if i.roll(f.stuck_rate) => Fate::Stuck,
        None if i.roll(f.bad_result_rate) => Fate::BadResult,
        None if i.roll(f.bad_body_rate) => Fate::BadBody,
        None => Fate::Succeed,
    };
    let keep = t.echo_always || matches!(fate, Fate::ServerFail | Fate::Refuse | Fate::Invalid(_));
    let echo = t.echo.filter(|_| keep).map(Arc::new);
    if let Some(ext) = &t.external_id {
        i.external.insert(ext.clone(), id.clone());
    }
    let task = Task {
        protocol: t.protocol,
        resource: t.resource,
        model: t.model,
        polls: 0,
        fate,
        cancelled: false,
        created_ms: now_ms(),
        duration: t.duration,
        seq,
        external_id: t.external_id,
        echo,
    };
    let view = view_of(&id, &task, Phase::Queued);
    i.tasks.insert(id, task);
    view
}

fn view_of(id: &str, t: &Task, phase: Phase) -> View {
    View {
        id: id.to_owned(),
        model: t.model.clone(),
        phase,
        fate: t.fate.clone(),
        cancelled: t.cancelled,
        created_ms: t.created_ms,
        duration: t.duration,
        seq: t.seq,
        external_id: t.external_id.clone(),
        echo: t.echo.clone(),
    }
}

/// Looks at task `id` (or the task behind external id `id`) of protocol `p`, served by
/// `resource` when given; `count` makes it a poll that moves the task on.
pub(crate) fn observe(s: &Shared, p: Protocol, resource: Option<&str>, id: &str, count: bool) -> Option<View> {
    let mut i = lock(s);
    let id = i.resolve(id)?;
    let finish = i.config.polls_to_finish;
    let t = i.tasks.get_mut(&id).filter(|t| t.protocol == p && resource.is_none_or(|r| r == t.resource))?;
    if count {
        t.polls = t.polls.saturating_add(1);
    }
    let phase = if t.cancelled || (t.polls >= finish && !matches!(t.fate, Fate::Stuck)) {
        Phase::Finished
    } else if t.polls <= 1 && finish > 2 || t.polls == 0 {
        Phase::Queued
    } else {
        Phase::Running
    };
    Some(view_of(&id, t, phase))
}

/// Marks a task cancelled; false when it is unknown (or of another protocol).
pub(crate) fn cancel(s: &Shared, p: Protocol, id: &str) -> bool {
    let mut i = lock(s);
    i.stats.cancels += 1;
    match i.tasks.get_mut(id).filter(|t| t.protocol == p) {
        Some(t) => {
            t.cancelled = true;
            true
        }
        None => false,
    }
}

/// The base URL results and links are built on.
pub(crate) fn base(s: &Shared) -> String {
    lock(s).base.clone()
}

/// The link a finished task serves as its video.
pub(crate) fn result_url(base: &str, v: &View) -> String {
    let ext = if matches!(v.fate, Fate::BadResult) { "bad" } else { "mp4" };
    format!("{base}/files/{}.{ext}", v.id)
}

/// The configured failure text, or the provider's own wording when none is set.
pub(crate) fn fail_message(s: &Shared, own: &str) -> String {
    let i = lock(s);
    if i.config.fail_message.is_empty() { own.to_owned() } else { i.config.fail_message.clone() }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// splitmix64: a bijection, so distinct sequence numbers give distinct ids.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Ids in each provider's own format: Kling's numeric strings ("867283741759111202"), fal's
/// UUIDs, Replicate's 26 lowercase base32 characters ("gm3qorzdhgbfurvjtvhg6dckhu") and
/// EvoLink's `task-unified-{unix}-{8 chars}`.
fn new_id(p: Protocol, seq: u64, seed: u64) -> String {
    match p {
        Protocol::Kling => format!("{}", 860_000_000_000_000_000u64 + seq),
        Protocol::Fal => uuid(seq ^ seed.rotate_left(32)),
        Protocol::Replicate => {
            const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
            let (a, b) = (mix(seq ^ seed), mix(seq.wrapping_add(0x5151)));
            (0..26)
                .map(|k| {
                    let bits = if k < 13 { a >> (k * 5) } else { b >> ((k - 13) * 5) };
                    ALPHABET.get((bits & 31) as usize).copied().map(char::from).unwrap_or('a')
                })
                .collect()
        }
        Protocol::Evolink => {
            const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
            // An odd multiplier prime to 3 is a bijection modulo 36^8.
            let mut n = seq.wrapping_mul(2_654_435_761).wrapping_add(seed) % 36u64.pow(8);
            let tail: String = (0..8)
                .map(|_| {
                    let c = ALPHABET.get((n % 36) as usize).copied().map(char::from).unwrap_or('0');
                    n /= 36;
                    c
                })
                .collect();
            format!("task-unified-{}-{tail}", now_ms() / 1000)
        }
    }
}

/// A version-4-shaped UUID from a number.
pub(crate) fn uuid(n: u64) -> String {
    let (a, b) = (mix(n), mix(!n));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// The body as JSON, if it is JSON.
pub(crate) fn parse_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

/// HTTP 200 with a body that claims to be JSON and is not.
pub(crate) fn malformed() -> Response {
    ([("content-type", "application/json")], "{\"oops\": <html>").into_response()
}

pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A running sim.
#[derive(Clone)]
pub struct SimHandle {
    pub base_url: String,
    inner: Shared,
    server: Option<Arc<server::Server>>,
}

impl SimHandle {
    /// Changes the knobs; tasks already accepted keep the fate they were given. The dice start
    /// again from the seed.
    pub fn set(&self, f: impl FnOnce(&mut SimConfig)) {
        let mut i = lock(&self.inner);
        f(&mut i.config);
        i.rng = i.config.seed.max(1);
    }

    /// The knobs now.
    pub fn config(&self) -> SimConfig {
        lock(&self.inner).config.clone()
    }

    /// A handle for an address where no sim runs (a dead upstream in tests).
    pub fn unreachable(base_url: &str) -> Self {
        let inner = Inner::new(SimConfig::default(), base_url.to_owned());
        Self { base_url: base_url.to_owned(), inner: Arc::new(Mutex::new(inner)), server: None }
    }

    pub fn stats(&self) -> Stats {
        lock(&self.inner).stats.clone()
    }

    /// The last submit body seen for `kling` (any Kling video create, legacy or new standard),
    /// `element` (Kling element creation), `fal`, `fal-upload` (fal storage initiation),
    /// `replicate` or `evolink`.
    pub fn last_body(&self, key: &str) -> Option<Value> {
        lock(&self.inner).last.get(key).map(|s| s.body.clone())
    }

    /// The last submit seen under `key` (see [`SimHandle::last_body`]), with the endpoint it hit.
    pub fn last_submit(&self, key: &str) -> Option<Submit> {
        lock(&self.inner).last.get(key).cloned()
    }

    /// Tasks the sim holds (finished or not).
    pub fn task_count(&self) -> usize {
        lock(&self.inner).tasks.len()
    }

    /// The bytes uploaded to fal storage under a `file_url` the sim handed out.
    pub fn uploaded(&self, file_url: &str) -> Option<Vec<u8>> {
        let token = fal::upload_token(file_url)?;
        lock(&self.inner).uploads.get(token).and_then(|u| u.bytes.as_ref().map(|b| b.to_vec()))
    }

    /// Takes every protocol off the network: the listening socket is closed (new connections are
    /// refused once this returns) and open connections are dropped. [`SimHandle::start_listening`]
    /// undoes it; tasks survive.
    pub async fn stop_listening(&self) {
        if let Some(s) = &self.server {
            s.stop().await;
        }
    }

    /// Listens again on the same address after [`SimHandle::stop_listening`].
    pub async fn start_listening(&self) -> std::io::Result<()> {
        match &self.server {
            Some(s) => s.restart().await,
            None => Err(std::io::Error::new(std::io::ErrorKind::NotConnected, "no sim runs here")),
        }
    }

    pub fn is_listening(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.is_listening())
    }
}

/// Binds `addr` (use port 0 for any) and serves until the process ends.
pub async fn spawn_on(addr: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let base = format!("http://{local}");
    let inner = Arc::new(Mutex::new(Inner::new(config, base.clone())));
    let server = Arc::new(server::Server::new(local, router(inner.clone())));
    server.serve(listener);
    Ok(SimHandle { base_url: base, inner, server: Some(server) })
}

/// Serves on 127.0.0.1 at any free port.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
}

/// Every route: the four protocol roots, result files, counters, and the control endpoints a
/// `vidgate-sim` process is steered with: `POST /control/down/{protocol}/{status}` (that protocol
/// answers every call with `status`), `POST /control/up/{protocol}`, `POST /control/set/{protocol}/{knob}/{value}`
/// for the rate knobs of [`Faults`].
fn router(inner: Shared) -> Router {
    Router::new()
        .nest("/kling", kling::routes())
        .nest("/fal", fal::routes())
        .nest("/replicate", replicate::routes())
        .nest("/evolink", evolink::routes())
        .route("/files/{name}", get(file))
        .route("/stats", get(stats))
        .route("/control/down/{protocol}/{status}", post(control_down))
        .route("/control/up/{protocol}", post(control_up))
        .route("/control/set/{protocol}/{knob}/{value}", post(control_set))
        .with_state(inner)
}

async fn file(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let video = {
        let mut i = lock(&s);
        i.stats.downloads += 1;
        if name.ends_with(".bad") {
            return ([("content-type", "text/html")], "<html>expired</html>").into_response();
        }
        i.config.video.clone()
    };
    ([("content-type", "video/mp4")], video).into_response()
}

/// The counters as JSON, for scripts driving a sim process.
async fn stats(State(s): State<Shared>) -> Response {
    let i = lock(&s);
    let st = &i.stats;
    axum::Json(json!({
        "submits": st.submits, "accepted": st.accepted, "polls": st.polls, "faults": st.faults,
        "cancels": st.cancels, "downloads": st.downloads, "unauthorized": st.unauthorized,
        "max_polls_in_flight": st.max_polls_in_flight, "uploads": st.uploads,
        "credential_checks": st.credential_checks,
        "by_protocol": Protocol::ALL.iter().map(|p| (p.name(), st.by_protocol[p.index()])).collect::<BTreeMap<_, _>>(),
        "endpoints": st.endpoints, "by_model": st.by_model,
        "tasks": i.tasks.len(),
    }))
    .into_response()
}

fn with_protocol(s: &Shared, protocol: &str, f: impl FnOnce(&mut Faults)) -> Response {
    match Protocol::parse(protocol) {
        Some(p) => {
            f(lock(s).config.protocol(p));
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::NOT_FOUND, "unknown protocol").into_response(),
    }
}

async fn control_down(State(s): State<Shared>, Path((protocol, code)): Path<(String, u16)>) -> Response {
    if !(400..600).contains(&code) {
        return (StatusCode::BAD_REQUEST, "a 4xx or 5xx status").into_response();
    }
    with_protocol(&s, &protocol, |f| f.down = Some(code))
}

async fn control_up(State(s): State<Shared>, Path(protocol): Path<String>) -> Response {
    with_protocol(&s, &protocol, |f| f.down = None)
}

async fn control_set(
    State(s): State<Shared>,
    Path((protocol, knob, value)): Path<(String, String, String)>,
) -> Response {
    let Some(rate) = value.parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)) else {
        return (StatusCode::BAD_REQUEST, "a rate in 0..=1").into_response();
    };
    let slot: fn(&mut Faults) -> &mut f64 = match knob.as_str() {
        "submit-fault-rate" => |f| &mut f.submit_fault_rate,
        "poll-fault-rate" => |f| &mut f.poll_fault_rate,
        "fail-rate" => |f| &mut f.fail_rate,
        "refuse-rate" => |f| &mut f.refuse_rate,
        "stuck-rate" => |f| &mut f.stuck_rate,
        "bad-result-rate" => |f| &mut f.bad_result_rate,
        "bad-body-rate" => |f| &mut f.bad_body_rate,
        _ => return (StatusCode::NOT_FOUND, "unknown knob").into_response(),
    };
    with_protocol(&s, &protocol, |f| *slot(f) = rate)
}

/// The accept loop, ours rather than `axum::serve`, so the sim can stop listening and drop every
/// open connection (a provider whose host is gone), then listen again on the same port.
mod server {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use axum::Router;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tokio::net::TcpListener;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    pub struct Server {
        addr: SocketAddr,
        app: Router,
        /// Dropping the sender stops the accept loop and every connection it spawned; the handle
        /// says when the loop (and with it the listening socket) is gone.
        running: Mutex<Option<(watch::Sender<()>, JoinHandle<()>)>>,
    }

    impl Server {
        pub fn new(addr: SocketAddr, app: Router) -> Self {
            Self { addr, app, running: Mutex::new(None) }
        }

        fn slot(&self) -> std::sync::MutexGuard<'_, Option<(watch::Sender<()>, JoinHandle<()>)>> {
            self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub fn serve(&self, listener: TcpListener) {
            let (tx, rx) = watch::channel(());
            let handle = tokio::spawn(accept_loop(listener, self.app.clone(), rx));
            *self.slot() = Some((tx, handle));
        }

        /// Returns once the socket is closed, so a connect right after is refused.
        pub async fn stop(&self) {
            let running = self.slot().take();
            if let Some((tx, handle)) = running {
                drop(tx);
                let _ = handle.await;
            }
        }

        pub fn is_listening(&self) -> bool {
            self.slot().is_some()
        }

        pub async fn restart(&self) -> std::io::Result<()> {
            if self.is_listening() {
                return Ok(());
            }
            let listener = TcpListener::bind(self.addr).await?;
            self.serve(listener);
            Ok(())
        }
    }

    async fn accept_loop(listener: TcpListener, app: Router, mut stop: watch::Receiver<()>) {
        loop {
            tokio::select! {
                // Resolves (with an error) once the sender is dropped.
                _ = stop.changed() => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else {
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    };
                    let service = TowerToHyperService::new(app.clone());
                    let mut stop = stop.clone();
                    tokio::spawn(async move {
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.changed() => {}
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rates_follow_the_seed() {
        let mut a = Inner::new(SimConfig { seed: 7, ..SimConfig::default() }, String::new());
        let hits = (0..10_000).filter(|_| a.roll(0.3)).count();
        assert!((2700..3300).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| a.roll(0.0)));
        assert!((0..1000).all(|_| a.roll(1.0)));
        let mut b = Inner::new(SimConfig { seed: 7, ..SimConfig::default() }, String::new());
        let mut c = Inner::new(SimConfig { seed: 7, ..SimConfig::default() }, String::new());
        let seq_b: Vec<bool> = (0..200).map(|_| b.roll(0.5)).collect();
        let seq_c: Vec<bool> = (0..200).map(|_| c.roll(0.5)).collect();
        assert_eq!(seq_b, seq_c, "same seed, same dice");
    }

    #[test]
    fn the_default_clip_is_an_mp4() {
        assert_eq!(CLIP.get(4..8), Some(&b"ftyp"[..]));
    }

    #[test]
    fn faults_parse_statuses_kling_codes_and_words() {
        assert_eq!(Fault::parse("429"), Some(Fault::Status(429)));
        assert_eq!(Fault::parse("1303"), Some(Fault::KlingCode(1303)));
        assert_eq!(Fault::parse("1304"), Some(Fault::KlingCode(1304)));
        assert_eq!(Fault::parse("1303@200"), Some(Fault::Kling1303));
        assert_eq!(Fault::parse("malformed"), Some(Fault::Malformed));
        assert_eq!(Fault::parse("hang"), Some(Fault::Hang));
        assert_eq!(Fault::parse("200"), None, "not a fault");
        assert_eq!(Fault::parse("1999"), None, "not a Kling code");
        assert_eq!(Fault::KlingCode(1102).http_status(), 429);
        assert_eq!(Fault::KlingCode(1103).http_status(), 403);
    }

    #[test]
    fn per_protocol_knobs_start_from_the_global_ones_and_replace_them() {
        let mut c = SimConfig { fail_rate: 0.5, ..SimConfig::default() };
        c.protocol(Protocol::Fal).down = Some(503);
        assert_eq!(c.faults(Protocol::Fal).fail_rate, 0.5);
        assert_eq!(c.faults(Protocol::Fal).down, Some(503));
        assert_eq!(c.faults(Protocol::Kling).down, None);
        c.fail_rate = 0.0;
        assert_eq!(c.faults(Protocol::Fal).fail_rate, 0.5, "an entry replaces the globals");
        assert_eq!(c.faults(Protocol::Kling).fail_rate, 0.0);
    }

    #[test]
    fn ids_take_each_providers_format_and_never_repeat() {
        let mut seen = std::collections::HashSet::new();
        for seq in 1..2000 {
            let k = new_id(Protocol::Kling, seq, 1);
            assert!(k.len() == 18 && k.bytes().all(|b| b.is_ascii_digit()), "{k}");
            let f = new_id(Protocol::Fal, seq, 1);
            assert_eq!(f.len(), 36, "{f}");
            assert_eq!(f.matches('-').count(), 4, "{f}");
            let r = new_id(Protocol::Replicate, seq, 1);
            assert!(r.len() == 26 && r.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{r}");
            let e = new_id(Protocol::Evolink, seq, 1);
            assert!(e.starts_with("task-unified-"), "{e}");
            for id in [k, f, r, e] {
                assert!(seen.insert(id.clone()), "repeated {id}");
            }
        }
    }
}
