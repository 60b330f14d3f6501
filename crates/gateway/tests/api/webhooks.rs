//! Callbacks: a real local receiver verifies Standard Webhooks signatures, fails
//! the first attempts on purpose and records when each attempt came.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, eventually};

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Received>>>,
    /// Status to answer for each request in turn; 200 once the list runs out.
    pub script: Arc<Mutex<Vec<u16>>>,
    /// Seconds to wait before answering.
    pub delay: Arc<Mutex<f64>>,
}

impl Receiver {
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = *r.delay.lock().unwrap();
    r.got.lock().unwrap().push(Received { headers, body, at: Instant::now() });
    if delay > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(delay)).await;
    }
    let code = {
        let mut s = r.script.lock().unwrap();
        if s.is_empty() { 200 } else { s.remove(0) }
    };
    StatusCode::from_u16(code).unwrap()
}

/// Starts a receiver on loopback; returns its URL and handle.
pub async fn start_receiver(script: Vec<u16>) -> (String, Receiver) {
    let r = Receiver { script: Arc::new(Mutex::new(script)), ..Default::default() };
    let app = axum::Router::new().route("/cb", axum::routing::post(receive)).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/cb", listener.local_addr().unwrap().port());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, r)
}

fn verify(secret: &str, got: &Received) -> bool {
    standardwebhooks::Webhook::new(secret).unwrap().verify(&got.body, &got.headers).is_ok()
}

async fn secret(app: &TestApp) -> String {
    let (s, b) = app.get("/v1/webhooks/secret").await;
    assert_eq!(s, 200, "{b}");
    let secret = b["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    secret
}

fn fast_retries(c: &mut vidgate::config::Config) {
    c.webhook_retry_schedule_secs = vec![Duration::from_millis(300), Duration::from_millis(600)];
}

both_backends!(a_completed_task_calls_back_signed_with_its_task_object_after_retries, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, fast_retries).await else { return };
    let (url, rx) = start_receiver(vec![500, 503]).await;
    let (s, task) = app
        .create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3, "callback_url": url}))
        .await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(120, || {
            let rx = rx.clone();
            async move { rx.count() >= 3 }
        })
        .await,
        "three attempts expected"
    );
    let got = rx.all();
    assert_eq!(got.len(), 3);
    let secret = secret(&app).await;
    for g in &got {
        assert!(verify(&secret, g), "signature does not verify");
    }
    let ids: Vec<_> = got.iter().map(|g| g.headers["webhook-id"].to_str().unwrap().to_owned()).collect();
    assert!(ids.iter().all(|i| i == &ids[0]), "webhook-id changed across retries: {ids:?}");
    // Retries wait as scheduled.
    assert!(got[1].at - got[0].at >= Duration::from_millis(280), "{:?}", got[1].at - got[0].at);
    assert!(got[2].at - got[1].at >= Duration::from_millis(580), "{:?}", got[2].at - got[1].at);
    // The body is exactly what GET answers.
    let (_, now) = app.get(&format!("/v1/tasks/{id}")).await;
    let sent: Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(sent, now);
    assert_eq!(sent["status"], "completed");
    // The attempts are on record for the owner (the receiver saw the last one
    // just before vidgate read its answer and recorded it).
    let path = format!("/v1/tasks/{id}/callbacks");
    let recorded = eventually(10, || {
        let (app, path) = (&app, path.clone());
        async move { app.get(&path).await.1["data"][0]["status"] == "delivered" }
    })
    .await;
    assert!(recorded, "the delivery was not marked delivered");
    let (s, cbs) = app.get(&path).await;
    assert_eq!(s, 200, "{cbs}");
    let d = &cbs["data"][0];
    let codes: Vec<_> = d["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, vec![500, 503, 200]);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vidgate_callback_attempts_total{outcome=\"delivered\"} 1"), "{metrics}");
    assert!(!metrics.contains(&secret));
    app.stop().await;
});

both_backends!(a_delivery_that_keeps_failing_is_marked_failed_and_can_be_resent, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.workers = 0;
        fast_retries(c);
    })
    .await
    else {
        return;
    };
    let (url, rx) = start_receiver(vec![500, 500, 500]).await;
    let (_, task) = app
        .create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3, "callback_url": url}))
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    // A cancel is a final state too: it calls back with request_cancelled.
    let (s, _) = app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200);
    let failed = eventually(30, || {
        let app = &app;
        let id = id.clone();
        async move { app.get(&format!("/v1/tasks/{id}/callbacks")).await.1["data"][0]["status"] == "failed" }
    })
    .await;
    assert!(failed);
    assert_eq!(rx.count(), 3);
    let body: Value = serde_json::from_slice(&rx.all()[0].body).unwrap();
    assert_eq!(body["error"]["code"], "request_cancelled");
    let (_, cbs) = app.get(&format!("/v1/tasks/{id}/callbacks")).await;
    let delivery = cbs["data"][0]["id"].as_str().unwrap().to_owned();
    let (s, b) = app.post(&format!("/v1/tasks/{id}/callbacks/{delivery}/retry"), &json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        eventually(30, || {
            let rx = rx.clone();
            async move { rx.count() == 4 }
        })
        .await
    );
    let delivered = eventually(30, || {
        let app = &app;
        let id = id.clone();
        async move { app.get(&format!("/v1/tasks/{id}/callbacks")).await.1["data"][0]["status"] == "delivered" }
    })
    .await;
    assert!(delivered);
    let all = rx.all();
    assert_eq!(all[3].headers["webhook-id"], all[0].headers["webhook-id"]);
    // Another account cannot see or resend it.
    let (_, other) = app.new_account(10.0).await;
    let (s, _) = app.get_with_key(&format!("/v1/tasks/{id}/callbacks"), &other).await;
    assert_eq!(s, 404);
    app.stop().await;
});

both_backends!(after_a_rotation_both_secrets_sign_during_the_overlap, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (url, rx) = start_receiver(vec![]).await;
    let old = secret(&app).await;
    let (s, b) = app.post("/v1/webhooks/secret/rotate", &json!({})).await;
    assert_eq!(s, 200);
    let new = b["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    assert_eq!(secret(&app).await, new);
    let (_, task) = app
        .create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3, "callback_url": url}))
        .await;
    app.post(&format!("/v1/tasks/{}/cancel", task["id"].as_str().unwrap()), &json!({})).await;
    assert!(
        eventually(30, || {
            let rx = rx.clone();
            async move { rx.count() == 1 }
        })
        .await
    );
    let got = &rx.all()[0];
    assert!(verify(&new, got) && verify(&old, got));
    assert_eq!(got.headers["webhook-signature"].to_str().unwrap().split(' ').count(), 2);
    app.stop().await;
});

both_backends!(a_slow_receiver_does_not_hold_up_other_callbacks, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let (slow_url, slow) = start_receiver(vec![]).await;
    *slow.delay.lock().unwrap() = 8.0;
    let (fast_url, fast) = start_receiver(vec![]).await;
    let mut ids = Vec::new();
    for url in [&slow_url, &slow_url, &slow_url, &slow_url, &slow_url, &fast_url] {
        let (_, t) = app
            .create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3, "callback_url": url}))
            .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let start = Instant::now();
    for id in &ids {
        app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    }
    let arrived = eventually(6, || {
        let f = fast.clone();
        async move { f.count() == 1 }
    })
    .await;
    assert!(arrived, "the fast receiver waited behind the slow one");
    assert!(start.elapsed() < Duration::from_secs(6));
    // The slow host gets at most its per-host share at once.
    assert!(slow.count() <= 4, "{} at once", slow.count());
    app.stop().await;
});
