//! Logs for operators: `x-request-id` taken, made, echoed and put in error
//! bodies; the real binary's JSON log lines (every one parses, a request's line
//! carries its id, a render leaves no raw third-party line) and its warning
//! about links when listening on every interface without a public URL.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(request_ids_are_taken_or_made_echoed_and_in_error_bodies, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let header =
        |r: &reqwest::Response| r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let resp = app.client.get(app.url("/healthz")).header("x-request-id", "client-id-42").send().await.unwrap();
    assert_eq!(header(&resp).as_deref(), Some("client-id-42"));
    let (a, b) = (
        app.client.get(app.url("/healthz")).send().await.unwrap(),
        app.client.get(app.url("/healthz")).send().await.unwrap(),
    );
    let (a, b) = (header(&a).unwrap_or_default(), header(&b).unwrap_or_default());
    assert!(a.starts_with("req_") && b.starts_with("req_") && a != b, "{a} {b}");
    // An id we would not echo safely is replaced.
    let resp = app.client.get(app.url("/healthz")).header("x-request-id", "x".repeat(200)).send().await.unwrap();
    assert!(header(&resp).is_some_and(|h| h.starts_with("req_")));
    // Error bodies carry it, in the error object, beside the documented fields.
    for (resp, expected) in [
        (app.client.get(app.url("/v1/nope")).header("x-request-id", "trace-404").send().await.unwrap(), "trace-404"),
        (app.client.get(app.url("/v1/credits")).header("x-request-id", "trace-401").send().await.unwrap(), "trace-401"),
    ] {
        assert_eq!(header(&resp).as_deref(), Some(expected));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["request_id"], expected, "{body}");
        assert!(body["error"]["code"].is_string() && body["error"]["type"].is_string(), "{body}");
    }
    let resp = app
        .client
        .post(app.url("/v1/videos/generations"))
        .bearer_auth(&app.api_key)
        .json(&json!({"model": "kling-v3-text-to-video", "duration": 99}))
        .send()
        .await
        .unwrap();
    let id = header(&resp).unwrap_or_default();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], id.as_str(), "{body}");
    app.stop().await;
});

/// Reads the child's standard error line by line on a thread.
fn lines_of(stderr: std::process::ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Collects lines into `seen` until one satisfies `pred` or `secs` pass.
fn wait_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, secs: u64, pred: impl Fn(&str) -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    if seen.iter().any(|l| pred(l)) {
        return true;
    }
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = pred(&line);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_lines_with_request_ids_and_no_raw_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_vidgate"))
            .args(["serve", "--listen", "0.0.0.0:0", "--log-format", "json", "--data-dir"])
            .arg(dir.path())
            .env("VIDGATE_WORKERS", "1")
            .env("VIDGATE_ALLOW_PRIVATE_URLS", "true")
            .env("RUST_LOG", "info,vidgate::http::observe=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = lines_of(child.0.stderr.take().unwrap());
    let mut out = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let (mut api_key, mut port) = (String::new(), String::new());
    for line in out.by_ref() {
        let line = line.unwrap();
        if let Some(k) = line.trim().strip_prefix("API key:") {
            api_key = k.trim().to_owned();
        }
        if let Some(u) = line.trim().strip_prefix("playground:") {
            port = u.trim().trim_end_matches('/').rsplit(':').next().unwrap_or_default().to_owned();
            break;
        }
    }
    std::thread::spawn(move || for _ in out {});
    assert!(!api_key.is_empty() && !port.is_empty());
    let base = format!("http://127.0.0.1:{port}");
    let mut seen = Vec::new();
    let warned = wait_line(&stderr, &mut seen, 10, |l| l.contains("WARN") && l.contains("--public-url"));
    assert!(warned, "no warning about links when listening on 0.0.0.0: {seen:#?}");

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client.get(format!("{base}/v1/nope")).header("x-request-id", "json-log-7").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let logged = wait_line(&stderr, &mut seen, 10, |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["span"]["request_id"] == "json-log-7")
    });
    assert!(logged, "no log line carries the request's id: {seen:#?}");

    // A local render (openh264 inside) adds no line that is not JSON.
    let resp = client
        .post(format!("{base}/v1/videos/generations"))
        .bearer_auth(&api_key)
        .json(&json!({"model": "kling-v3-text-to-video", "prompt": "a lighthouse", "duration": 3}))
        .send()
        .await
        .unwrap();
    let task: Value = resp.json().await.unwrap();
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{task}");
    let finished = wait_line(&stderr, &mut seen, 120, |l| {
        serde_json::from_str::<Value>(l)
            .is_ok_and(|v| v["fields"]["message"] == "task finished" && v["span"]["task_id"] == id.as_str())
    });
    assert!(finished, "the task's end was not logged in its span: {seen:#?}");
    // Stop it and read standard error to its end, then check every line.
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match stderr.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("vidgate did not stop"),
        }
    }
    for line in &seen {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(!seen.iter().any(|l| l.contains("\u{1b}[")), "colour codes in a log");
}
