//! A stand-in upstream for tests and benchmarks (never a production route): it
//! speaks the official Kling legacy API (verifying the HS256 JWT, elements too),
//! fal's queue API and Replicate's predictions API on loopback, renders nothing,
//! serves one configured video as every result, and injects faults on request.
//! Tasks are rows in a map whose state follows from their poll count: no timers
//! per task, so 10000 in-flight tasks cost nothing while nobody polls them.
//!
//! Protocol roots under one base URL: `{base}/kling`, `{base}/fal`,
//! `{base}/replicate`; results at `{base}/files/{id}.mp4`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// A small valid MP4 (3 s, 160x90, made by vidgate's own renderer): the default
/// result of every task.
pub const CLIP: &[u8] = include_bytes!("../assets/clip.mp4");

/// How a request can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status (429, 500, 503...).
    Status(u16),
    /// Kling's concurrency code 1303 with HTTP 200 (fal and replicate: 429).
    Kling1303,
    /// HTTP 200 with a body that is not the protocol's JSON.
    Malformed,
    /// Never answer (the client's timeout must fire).
    Hang,
}

impl Fault {
    /// `429`, `503`, `1303`, `malformed`, `hang`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1303" => Some(Self::Kling1303),
            "malformed" => Some(Self::Malformed),
            "hang" => Some(Self::Hang),
            n => n.parse().ok().filter(|c| (400..600).contains(c)).map(Self::Status),
        }
    }
}

/// What the sim does; change it at run time with [`SimHandle::set`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The bytes served as every result video.
    pub video: Vec<u8>,
    pub kling_access_key: String,
    pub kling_secret_key: String,
    /// A static Kling API key, accepted instead of a JWT.
    pub kling_api_key: String,
    /// `Key <fal_key>` for fal, `Bearer <replicate_token>` for replicate.
    pub fal_key: String,
    pub replicate_token: String,
    /// Added before every answer.
    pub latency: Duration,
    /// Polls before a task finishes.
    pub polls_to_finish: u32,
    /// Share of submits that meet `submit_fault` (0..=1).
    pub submit_fault_rate: f64,
    pub submit_fault: Fault,
    /// Share of polls that meet `poll_fault`.
    pub poll_fault_rate: f64,
    pub poll_fault: Fault,
    /// Share of accepted tasks that fail when they finish, with `fail_message`
    /// (server-side unless it mentions a policy).
    pub fail_rate: f64,
    pub fail_message: String,
    /// Share of accepted tasks that never finish.
    pub stuck_rate: f64,
    /// Share of finished tasks whose result file is not a video.
    pub bad_result_rate: f64,
    /// Seed of the fault dice: same seed, same faults in the same order.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            video: CLIP.to_vec(),
            kling_access_key: "ak-sim".to_owned(),
            kling_secret_key: "sk-sim".to_owned(),
            kling_api_key: "kling-key-sim".to_owned(),
            fal_key: "fal-sim".to_owned(),
            replicate_token: "r8-sim".to_owned(),
            latency: Duration::ZERO,
            polls_to_finish: 2,
            submit_fault_rate: 0.0,
            submit_fault: Fault::Status(503),
            poll_fault_rate: 0.0,
            poll_fault: Fault::Status(503),
            fail_rate: 0.0,
            fail_message: "internal error while generating".to_owned(),
            stuck_rate: 0.0,
            bad_result_rate: 0.0,
            seed: 1,
        }
    }
}

/// What the sim has seen, by protocol.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub submits: u64,
    pub accepted: u64,
    pub polls: u64,
    pub faults: u64,
    pub cancels: u64,
    pub downloads: u64,
    /// Accepted tasks by protocol: kling, fal, replicate.
    pub by_protocol: [u64; 3],
    /// Requests whose credentials were wrong.
    pub unauthorized: u64,
    /// The most polls ever in flight at once.
    pub max_polls_in_flight: u64,
}

#[derive(Debug)]
struct Task {
    polls: u32,
    fail: bool,
    stuck: bool,
    bad_result: bool,
    cancelled: bool,
    /// Set for Kling element tasks.
    element: bool,
}

#[derive(Debug)]
struct Inner {
    config: SimConfig,
    tasks: HashMap<String, Task>,
    stats: Stats,
    polls_in_flight: u64,
    next: u64,
    rng: u64,
    base: String,
    /// Last request bodies by protocol, for tests that check what was sent.
    last_bodies: HashMap<&'static str, Value>,
}

impl Inner {
    fn new(config: SimConfig, base: String) -> Self {
        let rng = config.seed.max(1);
        Self {
            config,
            tasks: HashMap::new(),
            stats: Stats::default(),
            polls_in_flight: 0,
            next: 0,
            rng,
            base,
            last_bodies: HashMap::new(),
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
}

type Shared = Arc<Mutex<Inner>>;

/// A running sim.
#[derive(Clone)]
pub struct SimHandle {
    pub base_url: String,
    inner: Shared,
}

impl SimHandle {
    /// Changes the knobs; tasks already accepted keep the fate they were given.
    pub fn set(&self, f: impl FnOnce(&mut SimConfig)) {
        if let Ok(mut i) = self.inner.lock() {
            f(&mut i.config);
            i.rng = i.config.seed.max(1);
        }
    }

    /// A handle for an address where no sim runs (a dead upstream in tests).
    pub fn unreachable(base_url: &str) -> Self {
        let inner = Inner::new(SimConfig::default(), base_url.to_owned());
        Self { base_url: base_url.to_owned(), inner: Arc::new(Mutex::new(inner)) }
    }

    pub fn stats(&self) -> Stats {
        self.inner.lock().map(|i| i.stats.clone()).unwrap_or_default()
    }

    /// The last submit body seen for `kling`, `fal`, `replicate` or `element`.
    pub fn last_body(&self, protocol: &str) -> Option<Value> {
        self.inner.lock().ok().and_then(|i| i.last_bodies.get(protocol).cloned())
    }

    /// Tasks the sim holds (finished or not).
    pub fn task_count(&self) -> usize {
        self.inner.lock().map(|i| i.tasks.len()).unwrap_or(0)
    }
}

/// Binds `addr` (use port 0 for any) and serves until the process ends.
pub async fn spawn_on(addr: std::net::SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let inner = Arc::new(Mutex::new(Inner::new(config, base.clone())));
    let app = Router::new()
        .route("/kling/v1/videos/{kind}", post(kling_submit))
        .route("/kling/v1/videos/{kind}/{id}", get(kling_poll))
        .route("/kling/v1/general/advanced-custom-elements", post(kling_element_submit))
        .route("/kling/v1/general/advanced-custom-elements/{id}", get(kling_element_poll))
        .route("/fal/{*path}", post(fal_submit).get(fal_get).put(fal_cancel))
        .route("/replicate/v1/models/{owner}/{model}/predictions", post(replicate_submit))
        .route("/replicate/v1/predictions/{id}", get(replicate_poll))
        .route("/replicate/v1/predictions/{id}/cancel", post(replicate_cancel))
        .route("/files/{name}", get(file))
        .route("/stats", get(stats))
        .with_state(inner.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(SimHandle { base_url: base, inner })
}

/// Serves on 127.0.0.1 at any free port.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    spawn_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), config).await
}

enum Step {
    Running,
    Done(String),
    Failed(String),
}

/// The latency knob, then the fault dice for a submit or a poll.
async fn enter(s: &Shared, submit: bool) -> Option<Fault> {
    let (latency, fault) = {
        let Ok(mut i) = s.lock() else { return Some(Fault::Status(500)) };
        if submit {
            i.stats.submits += 1;
        } else {
            i.stats.polls += 1;
            i.polls_in_flight += 1;
            i.stats.max_polls_in_flight = i.stats.max_polls_in_flight.max(i.polls_in_flight);
        }
        let (rate, kind) = if submit {
            (i.config.submit_fault_rate, i.config.submit_fault)
        } else {
            (i.config.poll_fault_rate, i.config.poll_fault)
        };
        let fault = i.roll(rate).then_some(kind);
        if fault.is_some() {
            i.stats.faults += 1;
        }
        (i.config.latency, fault)
    };
    // A poll is in flight until its latency (or hang) is over, or its
    // connection is dropped.
    let _in_flight = (!submit).then(|| PollInFlight(s.clone()));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fault == Some(Fault::Hang) {
        // Longer than any client timeout; the connection is dropped with the server.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    fault
}

struct PollInFlight(Shared);

impl Drop for PollInFlight {
    fn drop(&mut self) {
        if let Ok(mut i) = self.0.lock() {
            i.polls_in_flight = i.polls_in_flight.saturating_sub(1);
        }
    }
}

/// Registers an accepted task, rolling its fate.
fn accept(s: &Shared, protocol: usize, element: bool) -> String {
    let Ok(mut i) = s.lock() else { return String::new() };
    i.next += 1;
    i.stats.accepted += 1;
    if let Some(n) = i.stats.by_protocol.get_mut(protocol) {
        *n += 1;
    }
    let id = format!("sim{:08}", i.next);
    let (fail_rate, stuck_rate, bad_rate) = (i.config.fail_rate, i.config.stuck_rate, i.config.bad_result_rate);
    let fail = i.roll(fail_rate);
    let stuck = !fail && i.roll(stuck_rate);
    let bad_result = !fail && !stuck && i.roll(bad_rate);
    i.tasks.insert(id.clone(), Task { polls: 0, fail, stuck, bad_result, cancelled: false, element });
    id
}

fn poll(s: &Shared, id: &str) -> Option<Step> {
    let mut i = s.lock().ok()?;
    let finish = i.config.polls_to_finish;
    let message = i.config.fail_message.clone();
    let base = i.base.clone();
    let t = i.tasks.get_mut(id)?;
    t.polls += 1;
    if t.cancelled {
        return Some(Step::Failed("cancelled".to_owned()));
    }
    if t.polls < finish || t.stuck {
        return Some(Step::Running);
    }
    Some(if t.fail {
        Step::Failed(message)
    } else if t.bad_result {
        Step::Done(format!("{base}/files/{id}.bad"))
    } else {
        Step::Done(format!("{base}/files/{id}.mp4"))
    })
}

fn remember(s: &Shared, protocol: &'static str, body: Value) {
    if let Ok(mut i) = s.lock() {
        i.last_bodies.insert(protocol, body);
    }
}

fn unauthorized(s: &Shared, body: Value) -> Response {
    if let Ok(mut i) = s.lock() {
        i.stats.unauthorized += 1;
    }
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn fault_response(fault: Fault, kling: bool) -> Response {
    match fault {
        Fault::Status(code) => {
            (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), "fault").into_response()
        }
        Fault::Kling1303 if kling => {
            Json(json!({"code": 1303, "message": "parallel task over resource pack limit", "request_id": "r"}))
                .into_response()
        }
        Fault::Kling1303 => (StatusCode::TOO_MANY_REQUESTS, "busy").into_response(),
        Fault::Malformed | Fault::Hang => ([("content-type", "application/json")], "{\"oops\": <html>").into_response(),
    }
}

/// Checks a Kling HS256 JWT: signature, `iss`, `exp` in the future, `nbf` passed.
pub fn verify_jwt(token: &str, access: &str, secret: &str, now_secs: i64) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, sig] = parts.as_slice() else { return false };
    let Ok(header) = URL_SAFE_NO_PAD.decode(h) else { return false };
    if serde_json::from_slice::<Value>(&header).ok().and_then(|v| v.get("alg").cloned()) != Some(json!("HS256")) {
        return false;
    }
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(format!("{h}.{p}").as_bytes());
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else { return false };
    if mac.verify_slice(&sig).is_err() {
        return false;
    }
    let Ok(claims) = URL_SAFE_NO_PAD.decode(p) else { return false };
    let Ok(claims) = serde_json::from_slice::<Value>(&claims) else { return false };
    claims["iss"] == access
        && claims["exp"].as_i64().is_some_and(|e| e > now_secs)
        && claims["nbf"].as_i64().is_some_and(|n| n <= now_secs)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn bearer(h: &HeaderMap) -> &str {
    h.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("")
}

fn kling_authorized(s: &Shared, h: &HeaderMap) -> bool {
    let Ok(i) = s.lock() else { return false };
    let c = &i.config;
    let token = bearer(h);
    (!c.kling_api_key.is_empty() && token == c.kling_api_key)
        || verify_jwt(token, &c.kling_access_key, &c.kling_secret_key, now_secs())
}

/// Credentials first, then the latency and fault dice; `Err` is the answer to
/// send instead of the real one.
async fn gate(s: &Shared, authorized: bool, denied: Value, submit: bool, kling: bool) -> Result<(), Response> {
    if !authorized {
        return Err(unauthorized(s, denied));
    }
    match enter(s, submit).await {
        Some(f) => Err(fault_response(f, kling)),
        None => Ok(()),
    }
}

async fn kling_gate(s: &Shared, h: &HeaderMap, submit: bool) -> Result<(), Response> {
    let denied = json!({"code": 1002, "message": "authorization is invalid"});
    gate(s, kling_authorized(s, h), denied, submit, true).await
}

fn kling_ok(data: Value) -> Response {
    Json(json!({"code": 0, "message": "SUCCEED", "request_id": "sim", "data": data})).into_response()
}

async fn kling_submit(
    State(s): State<Shared>,
    Path(kind): Path<String>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = kling_gate(&s, &h, true).await {
        return r;
    }
    let valid = body["model_name"] == "kling-v3"
        && matches!(kind.as_str(), "image2video" | "text2video")
        && (kind == "text2video" || body["image"].is_string())
        && matches!(body["mode"].as_str(), Some("std" | "pro"));
    remember(&s, "kling", body);
    if !valid {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": 1201, "message": "invalid parameters"}))).into_response();
    }
    let id = accept(&s, 0, false);
    kling_ok(json!({"task_id": id, "task_status": "submitted", "created_at": 0, "updated_at": 0}))
}

async fn kling_poll(State(s): State<Shared>, Path((_kind, id)): Path<(String, String)>, h: HeaderMap) -> Response {
    kling_answer(&s, &h, &id, false).await
}

async fn kling_element_submit(State(s): State<Shared>, h: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(r) = kling_gate(&s, &h, true).await {
        return r;
    }
    let valid = body["element_name"].is_string() && body.pointer("/element_image_list/frontal_image").is_some();
    remember(&s, "element", body);
    if !valid {
        return Json(json!({"code": 1201, "message": "element_name and frontal_image are required"})).into_response();
    }
    let id = accept(&s, 0, true);
    kling_ok(json!({"task_id": id, "task_status": "submitted"}))
}

async fn kling_element_poll(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    kling_answer(&s, &h, &id, true).await
}

/// One poll of a Kling task: a video task on the video routes, an element task
/// on the elements route (each is unknown on the other).
async fn kling_answer(s: &Shared, h: &HeaderMap, id: &str, element: bool) -> Response {
    if let Err(r) = kling_gate(s, h, false).await {
        return r;
    }
    let known = s.lock().ok().and_then(|i| i.tasks.get(id).map(|t| t.element == element)).unwrap_or(false);
    let data = match known.then(|| poll(s, id)).flatten() {
        None => {
            return (StatusCode::NOT_FOUND, Json(json!({"code": 1203, "message": "task not found"}))).into_response();
        }
        Some(Step::Running) => json!({"task_id": id, "task_status": "processing"}),
        Some(Step::Done(_)) if element => json!({
            "task_id": id,
            "task_status": "succeed",
            "task_result": {"elements": [{"element_id": format!("elem-{id}")}]},
        }),
        Some(Step::Done(url)) => json!({
            "task_id": id,
            "task_status": "succeed",
            "task_result": {"videos": [{"id": id, "url": url, "duration": "5"}]},
        }),
        Some(Step::Failed(msg)) => json!({"task_id": id, "task_status": "failed", "task_status_msg": msg}),
    };
    kling_ok(data)
}

fn fal_authorized(s: &Shared, h: &HeaderMap) -> bool {
    let key = s.lock().map(|i| i.config.fal_key.clone()).unwrap_or_default();
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(format!("Key {key}").as_str())
}

async fn fal_submit(
    State(s): State<Shared>,
    Path(model): Path<String>,
    h: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = gate(&s, fal_authorized(&s, &h), json!({"detail": "invalid key"}), true, false).await {
        return r;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": "body is not JSON"}))).into_response();
    };
    let valid = body["prompt"].is_string() && body["duration"].is_string();
    remember(&s, "fal", body);
    if !valid {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": "prompt and duration (string) required"})))
            .into_response();
    }
    let id = accept(&s, 1, false);
    let base = s.lock().map(|i| i.base.clone()).unwrap_or_default();
    let root = format!("{base}/fal/{model}/requests/{id}");
    Json(json!({
        "request_id": id,
        "status_url": format!("{root}/status"),
        "response_url": root,
        "cancel_url": format!("{root}/cancel"),
    }))
    .into_response()
}

/// `.../requests/{id}/status` or `.../requests/{id}`.
fn fal_request_id(path: &str) -> Option<(&str, bool)> {
    let parts: Vec<&str> = path.split('/').collect();
    let pos = parts.iter().position(|p| *p == "requests")?;
    let id = parts.get(pos + 1)?;
    Some((id, parts.get(pos + 2) == Some(&"status")))
}

async fn fal_get(State(s): State<Shared>, Path(path): Path<String>, h: HeaderMap) -> Response {
    if !fal_authorized(&s, &h) {
        return unauthorized(&s, json!({"detail": "invalid key"}));
    }
    let Some((id, is_status)) = fal_request_id(&path) else { return StatusCode::NOT_FOUND.into_response() };
    if is_status {
        if let Some(f) = enter(&s, false).await {
            return fault_response(f, false);
        }
        return match poll(&s, id) {
            None => StatusCode::NOT_FOUND.into_response(),
            Some(Step::Running) => Json(json!({"status": "IN_PROGRESS"})).into_response(),
            Some(_) => Json(json!({"status": "COMPLETED"})).into_response(),
        };
    }
    let (fate, base, message) = {
        let Ok(i) = s.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
        (i.tasks.get(id).map(|t| (t.fail, t.bad_result)), i.base.clone(), i.config.fail_message.clone())
    };
    match fate {
        None => StatusCode::NOT_FOUND.into_response(),
        Some((true, _)) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"detail": message}))).into_response(),
        Some((false, bad)) => {
            let ext = if bad { "bad" } else { "mp4" };
            Json(json!({"video": {"url": format!("{base}/files/{id}.{ext}")}})).into_response()
        }
    }
}

fn mark_cancelled(s: &Shared, id: &str) {
    if let Ok(mut i) = s.lock() {
        i.stats.cancels += 1;
        if let Some(t) = i.tasks.get_mut(id) {
            t.cancelled = true;
        }
    }
}

async fn fal_cancel(State(s): State<Shared>, Path(path): Path<String>, h: HeaderMap) -> Response {
    if !fal_authorized(&s, &h) {
        return unauthorized(&s, json!({"detail": "invalid key"}));
    }
    match fal_request_id(&path) {
        Some((id, _)) => {
            mark_cancelled(&s, id);
            (StatusCode::ACCEPTED, Json(json!({"status": "CANCELLATION_REQUESTED"}))).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn replicate_authorized(s: &Shared, h: &HeaderMap) -> bool {
    let token = s.lock().map(|i| i.config.replicate_token.clone()).unwrap_or_default();
    !token.is_empty() && bearer(h) == token
}

async fn replicate_submit(State(s): State<Shared>, h: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Err(r) = gate(&s, replicate_authorized(&s, &h), json!({"detail": "invalid token"}), true, false).await {
        return r;
    }
    let valid = body.pointer("/input/prompt").is_some()
        && matches!(body.pointer("/input/mode").and_then(Value::as_str), Some("standard" | "pro"));
    remember(&s, "replicate", body);
    if !valid {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"detail": "input.prompt and input.mode required"})))
            .into_response();
    }
    let id = accept(&s, 2, false);
    (StatusCode::CREATED, Json(json!({"id": id, "status": "starting"}))).into_response()
}

async fn replicate_poll(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if let Err(r) = gate(&s, replicate_authorized(&s, &h), json!({"detail": "invalid token"}), false, false).await {
        return r;
    }
    let cancelled = s.lock().ok().and_then(|i| i.tasks.get(&id).map(|t| t.cancelled)).unwrap_or(false);
    match poll(&s, &id) {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(_) if cancelled => Json(json!({"id": id, "status": "canceled"})).into_response(),
        Some(Step::Running) => Json(json!({"id": id, "status": "processing"})).into_response(),
        Some(Step::Done(url)) => Json(json!({"id": id, "status": "succeeded", "output": url})).into_response(),
        Some(Step::Failed(msg)) => Json(json!({"id": id, "status": "failed", "error": msg})).into_response(),
    }
}

async fn replicate_cancel(State(s): State<Shared>, Path(id): Path<String>, h: HeaderMap) -> Response {
    if !replicate_authorized(&s, &h) {
        return unauthorized(&s, json!({"detail": "invalid token"}));
    }
    mark_cancelled(&s, &id);
    Json(json!({"id": id, "status": "canceled"})).into_response()
}

async fn file(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let video = {
        let Ok(mut i) = s.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
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
    let Ok(i) = s.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let st = &i.stats;
    Json(json!({
        "submits": st.submits, "accepted": st.accepted, "polls": st.polls, "faults": st.faults,
        "cancels": st.cancels, "downloads": st.downloads, "unauthorized": st.unauthorized,
        "max_polls_in_flight": st.max_polls_in_flight,
        "tasks": i.tasks.len(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(access: &str, secret: &str, now: i64) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(json!({"iss": access, "exp": now + 1800, "nbf": now - 5}).to_string());
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_jwt_check_refuses_wrong_keys_and_times() {
        let now = 1_000_000;
        assert!(verify_jwt(&jwt("ak", "sk", now), "ak", "sk", now));
        assert!(!verify_jwt(&jwt("ak", "other", now), "ak", "sk", now), "wrong secret");
        assert!(!verify_jwt(&jwt("someone", "sk", now), "ak", "sk", now), "wrong issuer");
        assert!(!verify_jwt(&jwt("ak", "sk", now - 4000), "ak", "sk", now), "expired");
        assert!(!verify_jwt(&jwt("ak", "sk", now + 60), "ak", "sk", now), "not yet valid");
        assert!(!verify_jwt("a.b", "ak", "sk", now));
    }

    #[test]
    fn fault_rates_follow_the_seed() {
        let mut a = Inner::new(SimConfig { seed: 7, ..SimConfig::default() }, String::new());
        let hits = (0..10_000).filter(|_| a.roll(0.3)).count();
        assert!((2700..3300).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| a.roll(0.0)));
        assert!((0..1000).all(|_| a.roll(1.0)));
    }

    #[test]
    fn the_default_clip_is_an_mp4() {
        assert_eq!(CLIP.get(4..8), Some(&b"ftyp"[..]));
    }
}
