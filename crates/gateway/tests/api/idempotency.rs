//! `Idempotency-Key`: a retry returns the first response and creates nothing; the
//! same key with another body is 409; concurrent retries create one task.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, split};

async fn create_with_key(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/v1/videos/generations"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    split(resp).await
}

both_backends!(a_retry_with_the_same_key_returns_the_first_response, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "once", "duration": 3});
    let before = app.remaining(&app.api_key).await;
    let (s1, first) = create_with_key(&app, "retry-1", &body).await;
    let (s2, second) = create_with_key(&app, "retry-1", &body).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first, second);
    assert!((app.remaining(&app.api_key).await - (before - 16.2)).abs() < 1e-9);
    let (_, list) = app.get("/v1/tasks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    app.stop().await;
});

both_backends!(the_same_key_with_another_body_is_a_conflict, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (s, _) =
        create_with_key(&app, "k", &json!({"model": "kling-v3-text-to-video", "prompt": "a", "duration": 3})).await;
    assert_eq!(s, 200);
    let (s, b) =
        create_with_key(&app, "k", &json!({"model": "kling-v3-text-to-video", "prompt": "b", "duration": 3})).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"]["code"], "idempotency_conflict");
    let (_, list) = app.get("/v1/tasks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let long = "x".repeat(256);
    let (s, b) = create_with_key(&app, &long, &json!({"model": "kling-v3-text-to-video", "prompt": "a"})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("Idempotency-Key")));
    app.stop().await;
});

both_backends!(concurrent_retries_create_one_task, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "storm", "duration": 3});
    let before = app.remaining(&app.api_key).await;
    let mut handles = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url("/v1/videos/generations");
        let key = app.api_key.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let resp =
                client.post(url).bearer_auth(key).header("Idempotency-Key", "same").json(&body).send().await.unwrap();
            split(resp).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for h in handles {
        let (s, b) = h.await.unwrap();
        assert_eq!(s, 200, "{b}");
        ids.insert(b["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert!((app.remaining(&app.api_key).await - (before - 16.2)).abs() < 1e-9);
    app.stop().await;
});

both_backends!(keys_are_per_account, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (_, other) = app.new_account(100.0).await;
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "a", "duration": 3});
    let (_, a) = create_with_key(&app, "shared", &body).await;
    let resp = app
        .client
        .post(app.url("/v1/videos/generations"))
        .bearer_auth(&other)
        .header("Idempotency-Key", "shared")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (s, b) = split(resp).await;
    assert_eq!(s, 200);
    assert_ne!(a["id"], b["id"]);
    app.stop().await;
});
