//! Routing to upstreams, for real: a second vidgate (rendering locally) is the
//! `evolink` upstream of the first. Routes fail before acceptance (nothing
//! listening) and after acceptance (the upstream task fails server-side); the
//! client sees one task, moving forward, charged once, with every attempt recorded.

use std::time::Duration;

use serde_json::{Value, json};
use vidgate::config::{Config, CostTable, KeyedProviderConfig, ProviderConfig, RouteConfig};
use vidgate::ids::{LeaseOwner, TaskId};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, Backend, TestApp};

fn evolink(base_url: &str, key_file: &std::path::Path) -> ProviderConfig {
    ProviderConfig::Evolink(KeyedProviderConfig {
        base_url: Some(base_url.to_owned()),
        api_key_file: Some(key_file.to_owned()),
        max_concurrent_polls: Some(8),
        timeout_secs: Some(5),
        ..Default::default()
    })
}

fn route(provider: &str, usd: f64) -> RouteConfig {
    RouteConfig {
        model: "kling-v3-text-to-video".to_owned(),
        provider: provider.to_owned(),
        upstream_model: "kling-v3-text-to-video".to_owned(),
        upstream_models: Default::default(),
        cost_usd_per_second: CostTable { p720: usd, p720_sound: usd, p1080: usd, p1080_sound: usd, p4k: usd },
        supports: vec!["sound".to_owned(), "1080p".to_owned(), "multi_shot".to_owned()],
    }
}

async fn attempts(app: &TestApp, id: &str) -> Value {
    let (s, b) = app.get_with_key(&format!("/admin/tasks/{id}/attempts"), ADMIN_KEY).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// A port where nothing listens: bound but never listening, so connections are
/// refused and no other test can take the port while the socket lives.
fn dead_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

async fn gateway_in_front_of(
    backend: Backend,
    upstreams: Vec<(&str, String, f64)>,
    key_file: &std::path::Path,
    tweak: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| {
        for (name, url, usd) in &upstreams {
            c.providers.insert((*name).to_owned(), evolink(url, key_file));
            c.routes.push(route(name, *usd));
        }
        c.upstream_poll_min_ms = Duration::from_millis(50);
        c.upstream_poll_max_ms = Duration::from_millis(200);
        tweak(c);
    })
    .await
}

both_backends!(a_task_goes_to_the_cheapest_route_and_falls_over_when_it_is_down, |backend| async move {
    let Some(upstream) = TestApp::spawn(backend).await else { return };
    let key_file = upstream.data_dir.path().join("upstream.key");
    std::fs::write(&key_file, &upstream.api_key).unwrap();
    let (_dead_socket, port) = dead_port();
    let dead = format!("http://127.0.0.1:{port}");
    // "cheap" is the cheapest but down; "live" is dearer and up.
    let Some(app) = gateway_in_front_of(
        backend,
        vec![("cheap", dead, 0.05), ("live", upstream.address.clone(), 0.07)],
        &key_file,
        |_| {},
    )
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (s, task) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "waves", "duration": 3})).await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let done = app.wait_task(&id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    // The link is ours, not the upstream's, and the file is a real MP4.
    let url = done["results"][0].as_str().unwrap();
    assert!(url.starts_with(&app.address), "{url}");
    let bytes = app.client.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(vidgate_render::inspect::inspect(&bytes).unwrap().video_frames, 72);
    // Charged once, the price of the request.
    assert!((app.remaining(&app.api_key).await - (before - 16.2)).abs() < 1e-9);
    let a = attempts(&app, &id).await;
    let list = a["attempts"].as_array().unwrap();
    // A refused connection is retried twice on the same route, then it moves on.
    assert_eq!(list.len(), 4, "{a}");
    for tried in &list[..3] {
        assert_eq!((tried["provider"].as_str(), tried["status"].as_str()), (Some("cheap"), Some("error")));
    }
    assert_eq!((list[3]["provider"].as_str(), list[3]["status"].as_str()), (Some("live"), Some("succeeded")));
    assert!(list[3]["upstream_id"].as_str().unwrap().starts_with("task-unified-"));
    assert_eq!(a["provider"], "live");
    // The margin report knows what it cost us: 3 s x $0.07.
    let (_, m) = app.get_with_key("/admin/reports/margin", ADMIN_KEY).await;
    let line = m["data"].as_array().unwrap().iter().find(|l| l["provider"] == "live").cloned().unwrap();
    assert!((line["upstream_cost_usd"].as_f64().unwrap() - 0.21).abs() < 1e-9, "{m}");
    assert!((line["revenue_usd"].as_f64().unwrap() - 16.2 / 72.0).abs() < 1e-6, "{m}");
    app.stop().await;
    upstream.stop().await;
});

both_backends!(a_task_that_fails_upstream_server_side_moves_to_the_next_route, |backend| async move {
    // The first upstream accepts, then fails its task for a server-side reason
    // (its deadline passes: generation_timeout); the second renders it.
    let Some(failing) = TestApp::spawn_with(backend, |c| {
        c.workers = 0;
        c.task_deadline_secs = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let Some(good) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let failing_key = dir.path().join("failing.key");
    std::fs::write(&failing_key, &failing.api_key).unwrap();
    let good_key = dir.path().join("good.key");
    std::fs::write(&good_key, &good.api_key).unwrap();
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.providers.insert("failing".to_owned(), evolink(&failing.address, &failing_key));
        c.providers.insert("good".to_owned(), evolink(&good.address, &good_key));
        c.routes.push(route("failing", 0.01));
        c.routes.push(route("good", 0.09));
        c.upstream_poll_min_ms = Duration::from_millis(50);
        c.upstream_poll_max_ms = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    // The failing upstream has no workers: its task only times out once someone
    // claims it, so run one worker step there after the deadline has passed.
    let before = app.remaining(&app.api_key).await;
    let (_, task) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "x", "duration": 3})).await;
    let id = task["id"].as_str().unwrap().to_owned();
    let submitted = crate::helpers::eventually(30, || {
        let app = &app;
        let id = id.clone();
        async move { attempts(app, &id).await["attempts"][0]["upstream_id"].is_string() }
    })
    .await;
    assert!(submitted);
    // Wait for the upstream task's own deadline to pass.
    let upstream_id = attempts(&app, &id).await["attempts"][0]["upstream_id"].as_str().unwrap().to_owned();
    let deadline =
        failing.state.store.get_task_any(&TaskId::from_raw(&upstream_id)).await.unwrap().unwrap().deadline_at;
    assert!(crate::helpers::eventually(5, || async { vidgate::util::now_ms() > deadline }).await);
    let state = failing.state.clone();
    tokio::spawn(async move {
        let token = tokio_util::sync::CancellationToken::new();
        let _ = vidgate::engine::try_execute_one(&state, &LeaseOwner::named("test-worker"), &token).await;
    });
    let done = app.wait_task(&id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    let a = attempts(&app, &id).await;
    let list = a["attempts"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{a}");
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(list[0]["error_code"], "generation_timeout");
    assert_eq!(list[1]["status"], "succeeded");
    assert!((app.remaining(&app.api_key).await - (before - 16.2)).abs() < 1e-9);
    app.stop().await;
    failing.stop().await;
    good.stop().await;
});

both_backends!(a_client_side_failure_upstream_is_final_and_refunded, |backend| async move {
    // The first upstream refuses the body (it takes only small requests: 413, the
    // request's own fault); the second would accept it but must not be tried.
    let Some(strict) = TestApp::spawn_with(backend, |c| c.max_body_bytes = 2000).await else { return };
    let Some(other) = TestApp::spawn(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let k1 = dir.path().join("1.key");
    std::fs::write(&k1, &strict.api_key).unwrap();
    let k2 = dir.path().join("2.key");
    std::fs::write(&k2, &other.api_key).unwrap();
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.providers.insert("strict".to_owned(), evolink(&strict.address, &k1));
        c.providers.insert("other".to_owned(), evolink(&other.address, &k2));
        for (name, usd) in [("strict", 0.01), ("other", 0.02)] {
            let mut r = route(name, usd);
            r.model = "kling-v3-image-to-video".to_owned();
            r.upstream_model = "kling-v3-image-to-video".to_owned();
            c.routes.push(r);
        }
        c.upstream_poll_min_ms = Duration::from_millis(50);
        c.upstream_poll_max_ms = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let img = crate::helpers::data_uri(&crate::helpers::png(400, 400), "image/png");
    let (s, task) = app
        .create(&json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_start": img, "duration": 3}))
        .await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    let done = app.wait_task(&id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "invalid_parameters", "{done}");
    assert_eq!(done["usage"]["credits_charged"], 0);
    let a = attempts(&app, &id).await;
    assert_eq!(a["attempts"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(app.remaining(&app.api_key).await, before);
    app.stop().await;
    strict.stop().await;
    other.stop().await;
});

both_backends!(provider_health_is_visible_to_the_admin_and_in_metrics, |backend| async move {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "sk-none").unwrap();
    let (_dead_socket, port) = dead_port();
    let dead = format!("http://127.0.0.1:{port}");
    let Some(app) = gateway_in_front_of(backend, vec![("down", dead, 0.01)], &key, |_| {}).await else { return };
    for _ in 0..5 {
        let (_, t) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "x", "duration": 3})).await;
        let done = app
            .wait_task(t["id"].as_str().unwrap(), 60, |t| t["status"] == "failed" || t["status"] == "completed")
            .await;
        assert_eq!(done["error"]["code"], "service_unavailable", "{done}");
    }
    let (s, h) = app.get_with_key("/admin/providers", ADMIN_KEY).await;
    assert_eq!(s, 200);
    let down = h.as_array().unwrap().iter().find(|p| p["provider"] == "down").cloned().unwrap();
    assert_eq!(down["state"], "open", "{h}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vidgate_provider_up{provider=\"down\"} 0"), "{metrics}");
    assert!(!metrics.contains("sk-none"));
    app.stop().await;
});

both_backends!(cancelling_a_task_cancels_it_upstream_and_refunds, |backend| async move {
    // The upstream has no workers, so its task stays pending until cancelled.
    let Some(upstream) = TestApp::spawn_with(backend, |c| c.workers = 0).await else { return };
    let key_file = upstream.data_dir.path().join("k");
    std::fs::write(&key_file, &upstream.api_key).unwrap();
    let Some(app) = gateway_in_front_of(backend, vec![("up", upstream.address.clone(), 0.05)], &key_file, |_| {}).await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, task) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "x", "duration": 3})).await;
    let id = task["id"].as_str().unwrap().to_owned();
    let submitted = crate::helpers::eventually(30, || {
        let app = &app;
        let id = id.clone();
        async move { attempts(app, &id).await["attempts"][0]["upstream_id"].is_string() }
    })
    .await;
    assert!(submitted);
    let upstream_id = attempts(&app, &id).await["attempts"][0]["upstream_id"].as_str().unwrap().to_owned();
    let (s, t) = app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(app.remaining(&app.api_key).await, before);
    // The upstream task is cancelled too (and so refunded there).
    let cancelled = crate::helpers::eventually(30, || {
        let upstream = &upstream;
        let upstream_id = upstream_id.clone();
        async move { upstream.get(&format!("/v1/tasks/{upstream_id}")).await.1["error"]["code"] == "request_cancelled" }
    })
    .await;
    assert!(cancelled, "the upstream task was not cancelled");
    app.stop().await;
    upstream.stop().await;
});
