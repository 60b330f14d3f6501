//! vidgate against the stand-in upstream (`vidgate-sim`) over real HTTP: each
//! protocol's happy path, one test per failure kind (before and after the
//! upstream accepts), custom elements on Kling, and a soak of 500 tasks across
//! three providers with random faults that must end with every task settled once
//! and the ledger balanced to the unit.

use std::time::Duration;

use serde_json::{Value, json};
use vidgate::config::{Config, CostTable, KeyedProviderConfig, KlingProviderConfig, ProviderConfig, RouteConfig};
use vidgate::ids::{AccountId, TaskId};
use vidgate_sim::{Fault, SimConfig, SimHandle};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, Backend, TestApp, data_uri, png};

/// `usage.credits_*` count 1/10000 credits; `remaining_credits` counts credits.
const UNITS: f64 = 10_000.0;

/// Credentials the sim expects, written where the gateway reads them at start.
struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = SimConfig::default();
        for (name, value) in [
            ("kling-ak", d.kling_access_key),
            ("kling-sk", d.kling_secret_key),
            ("fal", d.fal_key),
            ("replicate", d.replicate_token),
            ("kling-key", d.kling_api_key),
            ("wrong", "not-the-secret".to_owned()),
        ] {
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        Self { dir }
    }

    fn file(&self, name: &str) -> Option<std::path::PathBuf> {
        Some(self.dir.path().join(name))
    }
}

/// A provider of `kind` (kling, fal, replicate) at the sim.
fn provider(sim: &SimHandle, kind: &str, secrets: &Secrets) -> ProviderConfig {
    let base_url = Some(format!("{}/{kind}", sim.base_url));
    let keyed = |file: &str| KeyedProviderConfig {
        base_url: base_url.clone(),
        api_key_file: secrets.file(file),
        max_concurrent_polls: Some(16),
        timeout_secs: Some(2),
        ..Default::default()
    };
    match kind {
        "kling" => ProviderConfig::Kling(KlingProviderConfig {
            base_url: base_url.clone(),
            access_key_file: secrets.file("kling-ak"),
            secret_key_file: secrets.file("kling-sk"),
            max_concurrent_polls: Some(16),
            timeout_secs: Some(2),
            ..Default::default()
        }),
        "fal" => ProviderConfig::Fal(keyed("fal")),
        "replicate" => ProviderConfig::Replicate(keyed("replicate")),
        other => ProviderConfig::Evolink(keyed(other)),
    }
}

fn set_timeout(p: &mut ProviderConfig, secs: u64) {
    match p {
        ProviderConfig::Kling(k) => k.timeout_secs = Some(secs),
        ProviderConfig::Fal(k) | ProviderConfig::Replicate(k) | ProviderConfig::Evolink(k) => {
            k.timeout_secs = Some(secs)
        }
        ProviderConfig::Local {} => {}
    }
}

fn upstream_model(kind: &str, model: &str) -> String {
    match (kind, model) {
        ("kling", _) => "kling-v3".to_owned(),
        ("fal", "kling-v3-text-to-video") => "fal-ai/kling-video/v3/pro/text-to-video".to_owned(),
        ("fal", _) => "fal-ai/kling-video/v3/pro/image-to-video".to_owned(),
        _ => "kwaivgi/kling-v3-video".to_owned(),
    }
}

fn route(model: &str, name: &str, kind: &str, usd: f64) -> RouteConfig {
    RouteConfig {
        model: model.to_owned(),
        provider: name.to_owned(),
        upstream_model: upstream_model(kind, model),
        cost_usd_per_second: CostTable { p720: usd, p720_sound: usd, p1080: usd, p1080_sound: usd, p4k: usd },
        supports: ["end_frame", "multi_shot", "sound", "1080p", "elements"].map(str::to_owned).to_vec(),
    }
}

/// Fast polling for tests.
fn quick(c: &mut Config) {
    c.upstream_poll_min_ms = Duration::from_millis(20);
    c.upstream_poll_max_ms = Duration::from_millis(100);
}

/// A gateway whose routes for text- and image-to-video are `(name, kind, sim,
/// usd)`, in that order of cost.
async fn gateway(
    backend: Backend,
    secrets: &Secrets,
    routes: &[(&str, &str, &SimHandle, f64)],
    tweak: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| {
        quick(c);
        for (name, kind, sim, usd) in routes {
            c.providers.insert((*name).to_owned(), provider(sim, kind, secrets));
            for model in ["kling-v3-text-to-video", "kling-v3-image-to-video"] {
                c.routes.push(route(model, name, kind, *usd));
            }
        }
        tweak(c);
    })
    .await
}

async fn sim(config: SimConfig) -> SimHandle {
    vidgate_sim::spawn(config).await.unwrap()
}

async fn attempts(app: &TestApp, id: &str) -> Vec<Value> {
    let (s, b) = app.get_with_key(&format!("/admin/tasks/{id}/attempts"), ADMIN_KEY).await;
    assert_eq!(s, 200, "{b}");
    b["attempts"].as_array().cloned().unwrap_or_default()
}

fn outline(attempts: &[Value]) -> Vec<(String, String)> {
    attempts
        .iter()
        .map(|a| (a["provider"].as_str().unwrap_or("").to_owned(), a["status"].as_str().unwrap_or("").to_owned()))
        .collect()
}

async fn finished(app: &TestApp, id: &str) -> Value {
    app.wait_task(id, 60, |t| t["status"] == "completed" || t["status"] == "failed").await
}

fn t2v() -> Value {
    json!({"model": "kling-v3-text-to-video", "prompt": "a lighthouse at dusk", "duration": 3})
}

/// Creates a text-to-video task and waits for its end: the create's answer, the
/// task's id and its final state.
async fn one_task(app: &TestApp) -> (Value, String, Value) {
    let (_, t) = app.create(&t2v()).await;
    let id = t["id"].as_str().unwrap().to_owned();
    let done = finished(app, &id).await;
    (t, id, done)
}

/// The task was settled exactly once: one hold, one settlement.
async fn settled_once(app: &TestApp, id: &str) {
    assert_eq!(app.state.store.ledger_entries(&TaskId::from_raw(id)).await.unwrap(), ["hold", "settle"], "task {id}");
}

both_backends!(each_protocol_completes_a_task_and_the_result_is_kept, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let start = png(640, 360);
    let end = png(640, 360);
    for kind in ["kling", "fal", "replicate"] {
        let Some(app) = gateway(backend, &secrets, &[(kind, kind, &upstream, 0.05)], |_| {}).await else { return };
        let before = app.remaining(&app.api_key).await;
        let (s, t) = app
            .create(&json!({
                "model": "kling-v3-image-to-video",
                "prompt": "slow zoom in",
                "negative_prompt": "blur",
                "image_start": data_uri(&start, "image/png"),
                "image_end": data_uri(&end, "image/png"),
                "duration": 5,
                "quality": "1080p",
                "sound": "on",
            }))
            .await;
        assert_eq!(s, 200, "{t}");
        let id = t["id"].as_str().unwrap();
        let done = finished(&app, id).await;
        assert_eq!(done["status"], "completed", "{kind}: {done}");
        // The client's link is ours, and serves the upstream's bytes.
        let link = done["results"][0].as_str().unwrap();
        assert!(link.starts_with(&app.address), "{link}");
        assert!(!link.contains(&upstream.base_url));
        let video = app.client.get(link).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(&video[..], vidgate_sim::CLIP);
        let reserved = t["usage"]["credits_reserved"].as_f64().unwrap();
        assert_eq!(done["usage"]["credits_charged"].as_f64(), Some(reserved));
        assert!((before - app.remaining(&app.api_key).await - reserved / UNITS).abs() < 1e-6);
        settled_once(&app, id).await;
        let a = attempts(&app, id).await;
        assert_eq!(outline(&a), [(kind.to_owned(), "succeeded".to_owned())]);
        assert!(a[0]["upstream_id"].as_str().unwrap().starts_with("sim"));
        // What each protocol was sent.
        let body = upstream.last_body(kind).unwrap();
        match kind {
            "kling" => {
                assert_eq!(body["model_name"], "kling-v3");
                assert_eq!(body["mode"], "pro");
                assert_eq!(body["sound"], "on");
                assert_eq!(body["duration"], "5");
                assert_eq!(body["negative_prompt"], "blur");
                assert_eq!(body["callback_url"], "");
                assert!(body["image"].as_str().unwrap().len() > 100 && body["image_tail"].is_string());
            }
            "fal" => {
                assert_eq!(body["duration"], "5");
                assert_eq!(body["generate_audio"], true);
                assert!(body["start_image_url"].as_str().unwrap().starts_with("data:image/png;base64,"));
                assert!(body["end_image_url"].is_string());
            }
            _ => {
                assert_eq!(body["input"]["mode"], "pro");
                assert_eq!(body["input"]["generate_audio"], true);
                assert!(body["input"]["start_image"].is_string() && body["input"]["end_image"].is_string());
            }
        }
        app.stop().await;
    }
    assert_eq!(upstream.stats().unauthorized, 0);
});

/// The submit faults that must move a task to the next route at once.
const SUBMIT_FAULTS: [(&str, Fault); 6] = [
    ("429", Fault::Status(429)),
    ("500", Fault::Status(500)),
    ("503", Fault::Status(503)),
    ("1303 with HTTP 200", Fault::Kling1303),
    ("malformed body", Fault::Malformed),
    ("hang past the timeout", Fault::Hang),
];

both_backends!(every_submit_fault_moves_the_task_to_the_next_route, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    for (what, fault) in SUBMIT_FAULTS {
        // The cheapest route is Kling at a faulty sim; fal at a good one is dearer.
        let bad = sim(SimConfig { submit_fault_rate: 1.0, submit_fault: fault, ..SimConfig::default() }).await;
        let Some(app) =
            gateway(backend, &secrets, &[("cheap", "kling", &bad, 0.03), ("dear", "fal", &good, 0.09)], |c| {
                set_timeout(c.providers.get_mut("cheap").unwrap(), 1);
            })
            .await
        else {
            return;
        };
        let (_, id, done) = one_task(&app).await;
        assert_eq!(done["status"], "completed", "{what}: {done}");
        assert_eq!(done["progress"], 100);
        let a = attempts(&app, &id).await;
        assert_eq!(
            outline(&a),
            [("cheap".to_owned(), "error".to_owned()), ("dear".to_owned(), "succeeded".to_owned())],
            "{what}"
        );
        assert!(a[0]["error_message"].is_string(), "{what}: the attempt records why");
        assert_eq!(bad.stats().accepted, 0);
        settled_once(&app, &id).await;
        app.stop().await;
    }
});

both_backends!(nothing_listening_moves_the_task_to_the_next_route, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    // A port bound but never listening: connections are refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = SimHandle::unreachable(&format!("http://{}", socket.local_addr().unwrap()));
    let Some(app) =
        gateway(backend, &secrets, &[("down", "replicate", &dead, 0.01), ("up", "kling", &good, 0.09)], |_| {}).await
    else {
        return;
    };
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "completed");
    let a = attempts(&app, &id).await;
    assert_eq!(outline(&a), [("down".to_owned(), "error".to_owned()), ("up".to_owned(), "succeeded".to_owned())]);
    assert!(a[0]["error_message"].as_str().unwrap().contains("refused"), "{a:?}");
    app.stop().await;
});

both_backends!(a_server_side_failure_after_acceptance_is_resubmitted_elsewhere, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    // Accepted, then failed for a server-side reason; then accepted with a result
    // that is no video (an error page behind the link).
    let failing = sim(SimConfig { fail_rate: 1.0, ..SimConfig::default() }).await;
    let bad_result = sim(SimConfig { bad_result_rate: 1.0, ..SimConfig::default() }).await;
    let Some(app) = gateway(
        backend,
        &secrets,
        &[("a", "fal", &failing, 0.02), ("b", "replicate", &bad_result, 0.03), ("c", "kling", &good, 0.09)],
        |_| {},
    )
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (t, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "completed", "{done}");
    let a = attempts(&app, &id).await;
    assert_eq!(
        outline(&a),
        [
            ("a".to_owned(), "failed".to_owned()),
            ("b".to_owned(), "failed".to_owned()),
            ("c".to_owned(), "succeeded".to_owned())
        ]
    );
    assert_eq!(a[0]["error_code"], "service_error");
    assert!(a[1]["error_message"].as_str().unwrap().contains("not an MP4"), "{a:?}");
    // Only the route that delivered is paid for, and the client pays once.
    assert!(a[2]["cost_usd"].as_f64().unwrap() > 0.0 && a[0]["cost_usd"].as_f64() == Some(0.0));
    let reserved = t["usage"]["credits_reserved"].as_f64().unwrap();
    assert!((before - app.remaining(&app.api_key).await - reserved / UNITS).abs() < 1e-6);
    settled_once(&app, &id).await;
    app.stop().await;
});

both_backends!(a_client_side_failure_is_final_and_refunded, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    let strict = sim(SimConfig {
        fail_rate: 1.0,
        fail_message: "the prompt violates the content policy".to_owned(),
        ..SimConfig::default()
    })
    .await;
    let Some(app) =
        gateway(backend, &secrets, &[("strict", "kling", &strict, 0.01), ("other", "fal", &good, 0.09)], |_| {}).await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "content_policy_violation", "{done}");
    assert_eq!(good.stats().submits, 0, "a refusal of the request is not retried elsewhere");
    assert_eq!(app.remaining(&app.api_key).await, before);
    settled_once(&app, &id).await;
    app.stop().await;
});

both_backends!(at_most_the_configured_number_of_routes_is_tried, |backend| async move {
    let secrets = Secrets::new();
    let failing = sim(SimConfig { fail_rate: 1.0, ..SimConfig::default() }).await;
    let good = sim(SimConfig::default()).await;
    let Some(app) = gateway(
        backend,
        &secrets,
        &[
            ("r1", "kling", &failing, 0.01),
            ("r2", "fal", &failing, 0.02),
            ("r3", "replicate", &failing, 0.03),
            ("r4", "fal", &good, 0.04),
        ],
        |c| c.max_routes_per_task = 3,
    )
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "service_error", "{done}");
    assert_eq!(attempts(&app, &id).await.len(), 3);
    assert_eq!(good.stats().submits, 0);
    assert_eq!(app.remaining(&app.api_key).await, before);
    app.stop().await;
});

both_backends!(an_upstream_task_stuck_past_the_deadline_times_out_with_a_refund, |backend| async move {
    let secrets = Secrets::new();
    let stuck = sim(SimConfig { stuck_rate: 1.0, ..SimConfig::default() }).await;
    let Some(app) = gateway(backend, &secrets, &[("slow", "replicate", &stuck, 0.05)], |c| {
        c.task_deadline_secs = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, t) = app.create(&t2v()).await;
    let id = t["id"].as_str().unwrap();
    let held = |n: u32| {
        let app = &app;
        async move {
            let m = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
            m.contains(&format!("vidgate_upstream_tasks_held {n}\n"))
        }
    };
    assert!(crate::helpers::eventually(10, || held(1)).await, "the poller does not show the task it holds");
    let done = finished(&app, id).await;
    assert_eq!(done["error"]["code"], "generation_timeout", "{done}");
    assert!(crate::helpers::eventually(10, || held(0)).await, "the poller still shows the task");
    assert_eq!(app.remaining(&app.api_key).await, before);
    settled_once(&app, id).await;
    // It was polled, and the upstream task was told to stop.
    assert!(stuck.stats().polls >= 2);
    let cancelled = crate::helpers::eventually(10, || async { stuck.stats().cancels == 1 }).await;
    assert!(cancelled, "the stuck upstream task was not cancelled");
    app.stop().await;
});

both_backends!(malformed_and_failing_polls_are_polled_again, |backend| async move {
    let secrets = Secrets::new();
    let flaky =
        sim(SimConfig { poll_fault_rate: 0.5, poll_fault: Fault::Malformed, seed: 3, ..SimConfig::default() }).await;
    let Some(app) = gateway(backend, &secrets, &[("flaky", "kling", &flaky, 0.05)], |_| {}).await else { return };
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (_, t) = app.create(&t2v()).await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(finished(&app, id).await["status"], "completed");
        assert_eq!(attempts(&app, id).await.len(), 1, "a bad poll answer does not resubmit");
    }
    assert!(flaky.stats().faults > 0);
    app.stop().await;
});

both_backends!(a_wrong_kling_secret_is_refused_by_the_jwt_check_and_routed_around, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let Some(app) =
        gateway(backend, &secrets, &[("miskeyed", "kling", &upstream, 0.01), ("fal", "fal", &upstream, 0.05)], |c| {
            let Some(ProviderConfig::Kling(p)) = c.providers.get_mut("miskeyed") else { panic!("a kling provider") };
            p.secret_key_file = secrets.file("wrong");
        })
        .await
    else {
        return;
    };
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "completed");
    let a = attempts(&app, &id).await;
    assert_eq!(outline(&a)[0], ("miskeyed".to_owned(), "error".to_owned()));
    assert!(a[0]["error_message"].as_str().unwrap().contains("1002"), "{a:?}");
    assert!(!a[0]["error_message"].as_str().unwrap().contains("not-the-secret"));
    assert_eq!(upstream.stats().unauthorized, 1);
    app.stop().await;
});

both_backends!(a_kling_element_is_made_upstream_and_pins_the_tasks_that_use_it, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let Some(app) = gateway(
        backend,
        &secrets,
        // fal is cheaper for videos, but cannot use a Kling element.
        &[("fal", "fal", &upstream, 0.01), ("kling", "kling", &upstream, 0.09)],
        |c| {
            let mut r = route("kling-custom-element", "kling", "kling", 0.0);
            r.upstream_model = "kling-v3".to_owned();
            c.routes.push(r);
        },
    )
    .await
    else {
        return;
    };
    let img = data_uri(&png(512, 512), "image/png");
    let (s, t) = app
        .create(&json!({
            "model": "kling-custom-element",
            "model_params": {
                "element_name": "hero",
                "element_description": "a red fox",
                "element_image_list": {"frontal_image": img, "refer_images": [{"image_url": img}]},
            },
        }))
        .await;
    assert_eq!(s, 200, "{t}");
    let done = finished(&app, t["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let element_id = done["result_data"]["element_id"].as_str().unwrap().to_owned();
    assert!(element_id.starts_with("el-"), "our id, not the upstream's: {element_id}");
    let sent = upstream.last_body("element").unwrap();
    assert_eq!(sent["element_name"], "hero");
    assert_eq!(sent["element_image_list"]["refer_images"].as_array().unwrap().len(), 1);
    // A video naming the element goes to Kling, with Kling's element id.
    let (s, v) = app
        .create(&json!({
            "model": "kling-v3-image-to-video",
            "prompt": "<<<element_1>>> runs",
            "image_start": img,
            "duration": 3,
            "model_params": {"element_list": [{"element_id": element_id}]},
        }))
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(finished(&app, id).await["status"], "completed");
    assert_eq!(outline(&attempts(&app, id).await), [("kling".to_owned(), "succeeded".to_owned())]);
    let body = upstream.last_body("kling").unwrap();
    let upstream_element = body["element_list"][0]["element_id"].as_str().unwrap();
    assert!(upstream_element.starts_with("elem-sim"), "{body}");
    // Without the element, the cheaper fal serves.
    let (_, plain) = app
        .create(&json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_start": img, "duration": 3}))
        .await;
    let plain = plain["id"].as_str().unwrap();
    assert_eq!(finished(&app, plain).await["status"], "completed");
    assert_eq!(outline(&attempts(&app, plain).await)[0].0, "fal");
    app.stop().await;
});

both_backends!(soak_500_tasks_across_three_providers_with_random_faults, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig {
        submit_fault_rate: 0.08,
        submit_fault: Fault::Status(503),
        poll_fault_rate: 0.05,
        poll_fault: Fault::Malformed,
        fail_rate: 0.10,
        bad_result_rate: 0.02,
        seed: 42,
        ..SimConfig::default()
    })
    .await;
    // Each provider is the cheapest for one kind of request.
    let Some(app) = TestApp::spawn_with(backend, |c| {
        quick(c);
        c.workers = 4;
        for kind in ["kling", "fal", "replicate"] {
            c.providers.insert(kind.to_owned(), provider(&upstream, kind, &secrets));
        }
        let costs = [
            ("kling", CostTable { p720: 0.01, p720_sound: 0.05, p1080: 0.05, p1080_sound: 0.05, p4k: 0.05 }),
            ("fal", CostTable { p720: 0.05, p720_sound: 0.01, p1080: 0.05, p1080_sound: 0.05, p4k: 0.05 }),
            ("replicate", CostTable { p720: 0.05, p720_sound: 0.05, p1080: 0.01, p1080_sound: 0.01, p4k: 0.01 }),
        ];
        for (kind, cost) in costs {
            let mut r = route("kling-v3-text-to-video", kind, kind, 0.0);
            r.cost_usd_per_second = cost;
            c.routes.push(r);
        }
    })
    .await
    else {
        return;
    };
    let (account, key) = app.new_account(100_000.0).await;
    let before = app.remaining(&key).await;
    let mut ids = Vec::new();
    let bodies: Vec<Value> = (0..500)
        .map(|i| {
            let (quality, sound) = [("720p", "off"), ("720p", "on"), ("1080p", "off")][i % 3];
            json!({"model": "kling-v3-text-to-video", "prompt": format!("soak {i}"), "duration": 3 + (i % 4),
                   "quality": quality, "sound": sound})
        })
        .collect();
    for chunk in bodies.chunks(50) {
        let sends = chunk.iter().map(|b| {
            let (client, url, key) = (app.client.clone(), app.url("/v1/videos/generations"), key.clone());
            let b = b.clone();
            async move { crate::helpers::split(client.post(url).bearer_auth(key).json(&b).send().await.unwrap()).await }
        });
        for (s, t) in futures_util::future::join_all(sends).await {
            assert_eq!(s, 200, "{t}");
            ids.push(t["id"].as_str().unwrap().to_owned());
        }
    }
    // Every task ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut open: Vec<String> = ids.clone();
    let mut tasks = std::collections::HashMap::new();
    while !open.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{} tasks never ended", open.len());
        let mut still = Vec::new();
        for id in open {
            let (_, t) = app.get_with_key(&format!("/v1/tasks/{id}"), &key).await;
            if t["status"] == "completed" || t["status"] == "failed" {
                tasks.insert(id, t);
            } else {
                still.push(id);
            }
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // None is charged twice; only completed tasks are charged; the ledger balances.
    let mut charged = 0.0;
    let mut completed = 0;
    let mut providers = std::collections::BTreeMap::<String, usize>::new();
    for (id, t) in &tasks {
        settled_once(&app, id).await;
        if t["status"] == "completed" {
            completed += 1;
            assert_eq!(t["usage"]["credits_charged"], t["usage"]["credits_reserved"]);
            charged += t["usage"]["credits_charged"].as_f64().unwrap();
            let a = attempts(&app, id).await;
            let winner = a.iter().filter(|a| a["status"] == "succeeded").count();
            assert_eq!(winner, 1, "one upstream delivered: {a:?}");
            *providers.entry(a.last().unwrap()["provider"].as_str().unwrap().to_owned()).or_default() += 1;
        } else {
            assert_eq!(t["usage"]["credits_charged"], 0, "{t}");
        }
    }
    let after = app.remaining(&key).await;
    let charged = charged / UNITS;
    assert!((before - after - charged).abs() < 1e-6, "before {before}, after {after}, charged {charged}");
    let (grants, buckets) = app.state.store.ledger_check(&AccountId::from_raw(&account)).await.unwrap();
    assert_eq!(grants, buckets, "the ledger does not balance");
    // The faults were real, most tasks still made it, and all three served.
    let stats = upstream.stats();
    assert!(stats.faults > 20, "{stats:?}");
    assert!(completed > 450, "only {completed} of 500 completed");
    assert_eq!(providers.len(), 3, "{providers:?}");
    eprintln!("soak: {completed}/500 completed; by provider {providers:?}; sim {stats:?}");
    app.stop().await;
});

both_backends!(a_task_cancelled_while_polled_is_never_resubmitted, |backend| async move {
    let secrets = Secrets::new();
    // The legacy Kling API cannot cancel: the upstream task runs on, and its
    // first poll (slow to answer) reports a server-side failure.
    let failing =
        sim(SimConfig { fail_rate: 1.0, polls_to_finish: 1, latency: Duration::from_secs(2), ..SimConfig::default() })
            .await;
    let good = sim(SimConfig::default()).await;
    let Some(app) = gateway(backend, &secrets, &[("a", "kling", &failing, 0.01), ("b", "fal", &good, 0.09)], |c| {
        // Renewals (which tell the poller of the cancel) come long after the failure.
        c.lease_secs = Duration::from_secs(60);
        set_timeout(c.providers.get_mut("a").unwrap(), 10);
    })
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, t) = app.create(&t2v()).await;
    let id = t["id"].as_str().unwrap().to_owned();
    // Cancel while the first poll waits for its (failing) answer.
    assert!(crate::helpers::eventually(10, || async { failing.stats().polls == 1 }).await);
    let (s, c) = app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{c}");
    // The poller, still holding the task, sees its upstream attempt fail but
    // moves it to no other route.
    let resubmitted = crate::helpers::eventually(6, || {
        let (app, id, good) = (&app, id.clone(), &good);
        async move { attempts(app, &id).await.len() > 1 || good.stats().submits > 0 }
    })
    .await;
    assert!(!resubmitted, "a cancelled task was submitted again: {:?}", attempts(&app, &id).await);
    assert_eq!(app.remaining(&app.api_key).await, before);
    settled_once(&app, &id).await;
    app.stop().await;
});

/// Scale-out: two replicas on one PostgreSQL database, both with workers and an
/// upstream poller. Every task is submitted upstream once, completes once and
/// is settled once, whichever replica took it and whichever one the client asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_share_upstream_tasks_and_settle_each_once() {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig { polls_to_finish: 3, ..SimConfig::default() }).await;
    let routes = |c: &mut Config| {
        quick(c);
        c.workers = 2;
        for kind in ["kling", "fal", "replicate"] {
            c.providers.insert(kind.to_owned(), provider(&upstream, kind, &secrets));
            c.routes.push(route("kling-v3-text-to-video", kind, kind, 0.05));
        }
    };
    let Some(a) = TestApp::spawn_with(Backend::Postgres, routes).await else { return };
    let url = a.state.config.database_url.clone().unwrap();
    let Some(b) = TestApp::spawn_with(Backend::Postgres, |c| {
        routes(c);
        c.database_url = Some(url.clone());
    })
    .await
    else {
        return;
    };
    let (account, key) = a.new_account(10_000.0).await;
    let before = a.remaining(&key).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        // Alternate the replica that takes the create.
        let app = if i % 2 == 0 { &a } else { &b };
        let (s, t) = app.post_with_key("/v1/videos/generations", &t2v(), &key).await;
        assert_eq!(s, 200, "{t}");
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    let mut charged = 0.0;
    for (i, id) in ids.iter().enumerate() {
        // Ask the other replica than the one that took it.
        let app = if i % 2 == 0 { &b } else { &a };
        let done = app
            .wait_task_with_key(id, &key, 60, |t: &Value| t["status"] == "completed" || t["status"] == "failed")
            .await;
        assert_eq!(done["status"], "completed", "{done}");
        charged += done["usage"]["credits_charged"].as_f64().unwrap() / UNITS;
        settled_once(&a, id).await;
        assert_eq!(attempts(&a, id).await.len(), 1, "task {id} was submitted more than once");
    }
    assert_eq!(upstream.stats().accepted, 60, "{:?}", upstream.stats());
    assert!((before - a.remaining(&key).await - charged).abs() < 1e-6);
    let (grants, buckets) = a.state.store.ledger_check(&AccountId::from_raw(&account)).await.unwrap();
    assert_eq!(grants, buckets);
    // Both replicas finished some of the tasks.
    let finished_by = |app: &TestApp| -> f64 {
        let text = app.state.metrics.render(&[]);
        text.lines()
            .filter(|l| l.starts_with("vidgate_tasks_finished_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let (fa, fb) = (finished_by(&a), finished_by(&b));
    assert_eq!(fa + fb, 60.0);
    assert!(fa > 0.0 && fb > 0.0, "one replica did all the work: {fa} / {fb}");
    a.stop().await;
    b.stop().await;
}

both_backends!(a_static_kling_api_key_works_instead_of_the_jwt, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let Some(app) = gateway(backend, &secrets, &[("kling", "kling", &upstream, 0.05)], |c| {
        let Some(ProviderConfig::Kling(p)) = c.providers.get_mut("kling") else { panic!("kling is configured") };
        (p.access_key_file, p.secret_key_file) = (None, None);
        p.api_key_file = secrets.file("kling-key");
    })
    .await
    else {
        return;
    };
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(outline(&attempts(&app, &id).await), [("kling".to_owned(), "succeeded".to_owned())]);
    assert_eq!(upstream.stats().unauthorized, 0);
    app.stop().await;
});

both_backends!(polls_stay_within_the_providers_concurrency_bound, |backend| async move {
    let secrets = Secrets::new();
    // Every answer takes 100 ms, so due polls pile up behind the bound.
    let slow = sim(SimConfig { latency: Duration::from_millis(100), polls_to_finish: 3, ..SimConfig::default() }).await;
    let Some(app) = gateway(backend, &secrets, &[("slow", "replicate", &slow, 0.05)], |c| {
        c.workers = 4;
        let Some(ProviderConfig::Replicate(p)) = c.providers.get_mut("slow") else { panic!("slow is configured") };
        p.max_concurrent_polls = Some(2);
    })
    .await
    else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..8 {
        let (_, t) = app.create(&t2v()).await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(finished(&app, id).await["status"], "completed");
    }
    assert_eq!(slow.stats().max_polls_in_flight, 2, "{:?}", slow.stats());
    app.stop().await;
});
