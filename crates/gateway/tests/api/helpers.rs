//! Test harness: starts the real application on 127.0.0.1:0 with a fresh database
//! (SQLite in a temp folder, or a new PostgreSQL database) and talks to it over HTTP.

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use vidgate::config::Config;
use vidgate::startup::Application;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub api_key: String,
    pub admin_key: String,
    pub client: reqwest::Client,
    pub state: vidgate::state::AppState,
    pub data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<()>>,
}

pub const ADMIN_KEY: &str = "sk-admin-test-key";

/// The PostgreSQL server tests use; override with VIDGATE_TEST_PG_URL.
pub fn pg_base_url() -> String {
    std::env::var("VIDGATE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh PostgreSQL database for one test, or `None` (with a message) when no
/// server answers outside CI. In CI a missing server fails the test.
pub async fn fresh_pg_database() -> Option<String> {
    use sqlx::Connection;
    let base = pg_base_url();
    match sqlx::postgres::PgConnection::connect(&base).await {
        Ok(mut conn) => {
            let name = format!("vgtest_{}", vidgate::util::random_lower_alnum(12));
            if let Err(e) = sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await {
                panic!("cannot create test database: {e}");
            }
            let _ = conn.close().await;
            let (prefix, _) = base.rsplit_once('/').unwrap_or((&base, ""));
            Some(format!("{prefix}/{name}"))
        }
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("PostgreSQL is required in CI but does not answer at {base}: {e}");
            }
            eprintln!(
                "SKIPPED: PostgreSQL does not answer at {base} ({e}); PostgreSQL tests are skipped on this machine"
            );
            None
        }
    }
}

pub fn base_config(data_dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.listen = "127.0.0.1:0".parse().unwrap_or(c.listen);
    c.data_dir = data_dir.to_owned();
    c.admin_key = Some(vidgate::secret::Secret::new(ADMIN_KEY));
    c.allow_private_urls = true;
    c.signup_credits = vidgate_api::credits::Credits::from_units(1000 * 10_000);
    c.workers = 1;
    c.poll_interval_ms = Duration::from_millis(50);
    c.lease_secs = Duration::from_secs(5);
    c
}

impl TestApp {
    /// Starts an app on `backend`; `None` when that backend is unavailable here.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Self> {
        Self::spawn_with_env(backend, None, tweak).await
    }

    /// `spawn_with`, reading the `AWS_*` variables of an S3 blob store from
    /// `aws_env` rather than from the environment when given.
    pub async fn spawn_with_env(
        backend: Backend,
        aws_env: Option<&[(String, String)]>,
        tweak: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let mut config = base_config(data_dir.path());
        if backend == Backend::Postgres {
            config.database_url = Some(fresh_pg_database().await?);
        }
        tweak(&mut config);
        let app = match aws_env {
            Some(env) => Application::build_with_env(config, env).await,
            None => Application::build(config).await,
        }
        .expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        // A replica joining an existing database makes no key: it shares the first's.
        let api_key = app.bootstrap().api_key.as_ref().map(|k| k.expose().to_owned()).unwrap_or_default();
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            let _ = app.run_until_stopped(token).await;
        });
        Some(Self {
            address,
            api_key,
            admin_key: ADMIN_KEY.to_owned(),
            client: reqwest::Client::builder().no_proxy().build().expect("client"),
            state,
            data_dir,
            shutdown,
            handle: Some(handle),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with_key(path, body, &self.api_key).await
    }

    pub async fn post_with_key(&self, path: &str, body: &Value, key: &str) -> (u16, Value) {
        let resp = self.client.post(self.url(path)).bearer_auth(key).json(body).send().await.expect("request");
        split(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.get_with_key(path, &self.api_key).await
    }

    pub async fn get_with_key(&self, path: &str, key: &str) -> (u16, Value) {
        let resp = self.client.get(self.url(path)).bearer_auth(key).send().await.expect("request");
        split(resp).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with_key(path, body, ADMIN_KEY).await
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        self.get_with_key(path, ADMIN_KEY).await
    }

    pub async fn patch_with_key(&self, path: &str, body: &Value, key: &str) -> (u16, Value) {
        let resp = self.client.patch(self.url(path)).bearer_auth(key).json(body).send().await.expect("request");
        split(resp).await
    }

    pub async fn admin_patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.patch_with_key(path, body, ADMIN_KEY).await
    }

    /// A new account with `credits`: its id, its first key and that key's id.
    pub async fn new_account_with_key_id(&self, credits: f64) -> (String, String, String) {
        let (status, body) = self.admin_post("/admin/accounts", &json!({ "name": "t", "credits": credits })).await;
        assert_eq!(status, 200, "{body}");
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        (s(&body["account"]["id"]), s(&body["api_key"]), s(&body["key"]["id"]))
    }

    /// Sends `n` copies of a request at once; answers each status and body.
    pub async fn burst(&self, n: usize, path: &str, body: &Value, key: &str) -> Vec<(u16, Value, Option<String>)> {
        let mut handles = Vec::new();
        for _ in 0..n {
            let req = self.client.post(self.url(path)).bearer_auth(key).json(body);
            handles.push(tokio::spawn(async move {
                let resp = req.send().await.expect("request");
                let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let (s, b) = split(resp).await;
                (s, b, retry)
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("join"));
        }
        out
    }

    pub async fn create(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/videos/generations", body).await
    }

    /// A new account with `credits` and its key.
    pub async fn new_account(&self, credits: f64) -> (String, String) {
        let (status, body) = self.admin_post("/admin/accounts", &json!({ "name": "t", "credits": credits })).await;
        assert_eq!(status, 200, "{body}");
        (
            body["account"]["id"].as_str().unwrap_or_default().to_owned(),
            body["api_key"].as_str().unwrap_or_default().to_owned(),
        )
    }

    pub async fn remaining(&self, key: &str) -> f64 {
        let (status, body) = self.get_with_key("/v1/credits", key).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["user"]["remaining_credits"].as_f64().expect("remaining")
    }

    /// Polls the task until `pred` holds or the deadline passes.
    pub async fn wait_task(&self, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_task_with_key(id, &self.api_key, secs, pred).await
    }

    pub async fn wait_task_with_key(&self, id: &str, key: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.get_with_key(&format!("/v1/tasks/{id}"), key).await;
            assert_eq!(status, 200, "{body}");
            if pred(&body) {
                return body;
            }
            assert!(tokio::time::Instant::now() < deadline, "task {id} did not reach the state in {secs}s: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), h).await;
        }
    }
}

pub async fn split(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Waits for `check` to return true, polling until `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real PNG of `w` x `h` (a gradient), encoded with the `image` crate.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("png");
    out.into_inner()
}

pub fn data_uri(bytes: &[u8], mime: &str) -> String {
    use base64::Engine;
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Runs a test body on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let f = $body;
                f($crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let f = $body;
                f($crate::helpers::Backend::Postgres).await;
            }
        }
    };
}

/// Uploads `bytes` to `POST /v1/files` as `name`.
pub async fn upload_file(app: &TestApp, bytes: Vec<u8>, name: &str) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let resp =
        app.client.post(app.url("/v1/files")).bearer_auth(&app.api_key).multipart(form).send().await.expect("upload");
    split(resp).await
}

/// A real MP4 (H.264, with an Opus track when `sound`) made by the renderer: a
/// scene seeded by `prompt`, `short_side` pixels high at 16:9, `secs` long.
pub fn clip(prompt: &str, short_side: u32, secs: u32, sound: bool) -> Vec<u8> {
    let spec = vidgate_render::VideoSpec {
        short_side,
        aspect: Some((16, 9)),
        duration_secs: secs,
        prompt: prompt.to_owned(),
        sound,
        ..vidgate_render::VideoSpec::default()
    };
    let mut out = Vec::new();
    vidgate_render::render(&spec, &mut out, &mut |_, _| std::ops::ControlFlow::Continue(())).expect("render");
    out
}

/// A loopback server answering `bytes` at `{url}/video.mp4`.
pub struct Served {
    pub url: String,
    /// Requests received so far.
    pub hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `bytes`; with `gate`, each answer waits until the gate is opened
/// (`Notify::notify_waiters`).
pub async fn serve_bytes(bytes: Vec<u8>, gate: Option<std::sync::Arc<tokio::sync::Notify>>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let bytes = bytes::Bytes::from(bytes);
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/video.mp4",
        axum::routing::get(move || {
            let (bytes, gate, counter) = (bytes.clone(), gate.clone(), counter.clone());
            async move {
                let waiting = gate.as_ref().map(|g| g.notified());
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Some(w) = waiting {
                    w.await;
                }
                ([(axum::http::header::CONTENT_TYPE, "video/mp4")], bytes)
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Served { url, hits, task }
}

/// The luma of a video's first frame as 16x9 block means, and the picture size.
pub fn first_frame_blocks(mp4: &[u8]) -> (Vec<f64>, (usize, usize)) {
    let mut frames = vidgate_render::decode::VideoFrames::open(std::io::Cursor::new(mp4.to_vec())).expect("decodable");
    let f = frames.next_frame().expect("decodes").expect("a first frame");
    let mut blocks = Vec::with_capacity(16 * 9);
    for by in 0..9 {
        for bx in 0..16 {
            let (x0, x1) = (bx * f.width / 16, (bx + 1) * f.width / 16);
            let (y0, y1) = (by * f.height / 9, (by + 1) * f.height / 9);
            let mut sum = 0u64;
            for y in y0..y1 {
                for x in x0..x1 {
                    sum += u64::from(f.y[y * f.width + x]);
                }
            }
            blocks.push(sum as f64 / ((x1 - x0) * (y1 - y0)).max(1) as f64);
        }
    }
    (blocks, (f.width, f.height))
}

/// Mean absolute difference of two block lists.
pub fn block_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len().max(1) as f64
}
