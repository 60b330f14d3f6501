//! vidgate against the stand-in upstream (`vidgate-sim`, which speaks each
//! provider as its public docs describe it) over real HTTP: each protocol's happy
//! path; each provider's documented failures sorted as the classification tables
//! say (retried on the same route, moved to the next route, or final for the
//! client); fal's tiers and uploads; a provider that stops answering; revisits
//! within the attempts budget; the credential check; and a soak of 500 tasks
//! across three providers with random faults that must all complete, settled once,
//! with the ledger balanced to the unit.

use std::time::Duration;

use serde_json::{Value, json};
use vidgate::config::{
    Config, CostTable, FalProviderConfig, KeyedProviderConfig, KlingProviderConfig, ProviderConfig, RouteConfig,
};
use vidgate::ids::{AccountId, TaskId};
use vidgate_sim::{Fault, Protocol, SimConfig, SimHandle};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, Backend, TestApp, data_uri, eventually, png};

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
            ("evolink", d.evolink_key),
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

/// A provider of `kind` (kling, fal, replicate, evolink) at the sim.
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
        "fal" => ProviderConfig::Fal(FalProviderConfig {
            base_url: base_url.clone(),
            api_key_file: secrets.file("fal"),
            max_concurrent_polls: Some(16),
            timeout_secs: Some(2),
            ..Default::default()
        }),
        "replicate" => ProviderConfig::Replicate(keyed("replicate")),
        _ => ProviderConfig::Evolink(keyed("evolink")),
    }
}

fn set_timeout(p: &mut ProviderConfig, secs: u64) {
    match p {
        ProviderConfig::Kling(k) => k.timeout_secs = Some(secs),
        ProviderConfig::Fal(k) => k.timeout_secs = Some(secs),
        ProviderConfig::Replicate(k) | ProviderConfig::Evolink(k) => k.timeout_secs = Some(secs),
        ProviderConfig::Local {} => {}
    }
}

/// The route of `model` via provider `name` of `kind`, at `usd` a second. fal
/// routes name one endpoint per tier, as its standard and pro models are.
fn route(model: &str, name: &str, kind: &str, usd: f64) -> RouteConfig {
    let fal_tiers = |mode: &str| {
        [("720p", "standard"), ("1080p", "pro")]
            .iter()
            .map(|(q, tier)| ((*q).to_owned(), format!("fal-ai/kling-video/v3/{tier}/{mode}")))
            .collect()
    };
    let (upstream_model, upstream_models) = match (kind, model) {
        ("kling", _) => ("kling-v3".to_owned(), Default::default()),
        ("fal", "kling-v3-text-to-video") => (String::new(), fal_tiers("text-to-video")),
        ("fal", _) => (String::new(), fal_tiers("image-to-video")),
        ("replicate", _) => ("kwaivgi/kling-v3-video".to_owned(), Default::default()),
        _ => (model.to_owned(), Default::default()),
    };
    RouteConfig {
        model: model.to_owned(),
        provider: name.to_owned(),
        upstream_model,
        upstream_models,
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

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

async fn finished(app: &TestApp, id: &str) -> Value {
    app.wait_task(id, 90, |t| t["status"] == "completed" || t["status"] == "failed").await
}

fn t2v() -> Value {
    json!({"model": "kling-v3-text-to-video", "prompt": "a lighthouse at dusk", "duration": 3})
}

/// Creates a task and waits for its end: the create's answer, the task's id and
/// its final state.
async fn run(app: &TestApp, body: &Value) -> (Value, String, Value) {
    let (s, t) = app.create(body).await;
    assert_eq!(s, 200, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let done = finished(app, &id).await;
    (t, id, done)
}

async fn one_task(app: &TestApp) -> (Value, String, Value) {
    run(app, &t2v()).await
}

/// The task was settled exactly once: one hold, one settlement.
async fn settled_once(app: &TestApp, id: &str) {
    assert_eq!(app.state.store.ledger_entries(&TaskId::from_raw(id)).await.unwrap(), ["hold", "settle"], "task {id}");
}

/// The provider's recent errors as its breaker counts them.
async fn breaker_errors(app: &TestApp, provider: &str) -> u64 {
    let (_, h) = app.get_with_key("/admin/providers", ADMIN_KEY).await;
    let p = h.as_array().unwrap().iter().find(|p| p["provider"] == provider).cloned().unwrap();
    p["recent_errors"].as_u64().unwrap() + p["times_opened"].as_u64().unwrap()
}

/// Milliseconds between consecutive attempts' starts.
fn gaps(attempts: &[Value]) -> Vec<i64> {
    attempts.windows(2).map(|w| w[1]["created_at"].as_i64().unwrap() - w[0]["created_at"].as_i64().unwrap()).collect()
}

fn i2v_body(start: &[u8], end: &[u8]) -> Value {
    json!({
        "model": "kling-v3-image-to-video",
        "prompt": "slow zoom in",
        "negative_prompt": "blur",
        "image_start": data_uri(start, "image/png"),
        "image_end": data_uri(end, "image/png"),
        "duration": 5,
        "quality": "1080p",
        "sound": "on",
    })
}

both_backends!(each_protocol_completes_a_task_and_the_result_is_kept, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let (start, end) = (png(640, 360), png(640, 360));
    for kind in ["kling", "fal", "replicate", "evolink"] {
        let Some(app) = gateway(backend, &secrets, &[(kind, kind, &upstream, 0.05)], |_| {}).await else { return };
        let before = app.remaining(&app.api_key).await;
        let (t, id, done) = run(&app, &i2v_body(&start, &end)).await;
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
        settled_once(&app, &id).await;
        let a = attempts(&app, &id).await;
        assert_eq!(outline(&a), pairs(&[(kind, "succeeded")]));
        // The upstream's own id format.
        let upstream_id = a[0]["upstream_id"].as_str().unwrap();
        match kind {
            "kling" => assert!(upstream_id.bytes().all(|b| b.is_ascii_digit()), "{upstream_id}"),
            "fal" => assert_eq!(upstream_id.len(), 36, "{upstream_id}"),
            "replicate" => assert_eq!(upstream_id.len(), 26, "{upstream_id}"),
            _ => assert!(upstream_id.starts_with("task-unified-"), "{upstream_id}"),
        }
        // What each protocol was sent.
        let body = upstream.last_body(kind).unwrap();
        match kind {
            "kling" => {
                assert_eq!(body["model_name"], "kling-v3");
                assert_eq!(body["mode"], "pro");
                assert_eq!(body["sound"], "on");
                assert_eq!(body["duration"], "5");
                assert_eq!(body["negative_prompt"], "blur");
                assert!(body["image"].as_str().unwrap().len() > 100 && body["image_tail"].is_string());
            }
            "fal" => {
                assert_eq!(upstream.last_submit("fal").unwrap().endpoint, "fal-ai/kling-video/v3/pro/image-to-video");
                assert_eq!(a[0]["upstream_model"], "fal-ai/kling-video/v3/pro/image-to-video");
                assert_eq!(body["duration"], "5");
                assert_eq!(body["generate_audio"], true);
                // Uploaded to fal's storage, as fal's client sends binary inputs.
                let url = body["start_image_url"].as_str().unwrap();
                assert_eq!(upstream.uploaded(url).as_deref(), Some(&start[..]), "{url}");
                assert!(upstream.uploaded(body["end_image_url"].as_str().unwrap()).is_some());
            }
            "replicate" => {
                assert_eq!(body["input"]["mode"], "pro");
                assert_eq!(body["input"]["generate_audio"], true);
                assert!(body["input"]["start_image"].is_string() && body["input"]["end_image"].is_string());
            }
            _ => {
                assert_eq!(body["model"], "kling-v3-image-to-video");
                assert_eq!(body["quality"], "1080p");
                assert!(body["image_start"].is_string());
            }
        }
        app.stop().await;
    }
    assert_eq!(upstream.stats().unauthorized, 0);
});

both_backends!(fal_images_are_uploaded_to_fal_storage_not_sent_as_data_uris, |backend| async move {
    let secrets = Secrets::new();
    // A fal model that, as fal's docs allow, does not take data: URIs.
    let upstream = sim(SimConfig { fal_accept_data_uris: false, ..SimConfig::default() }).await;
    let Some(app) = gateway(backend, &secrets, &[("fal", "fal", &upstream, 0.05)], |_| {}).await else { return };
    let (start, end) = (png(500, 400), png(500, 400));
    let (_, id, done) = run(&app, &i2v_body(&start, &end)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("fal", "succeeded")]));
    let stats = upstream.stats();
    assert_eq!(stats.uploads, 2, "{stats:?}");
    let body = upstream.last_body("fal").unwrap();
    assert!(!body.to_string().contains("data:"), "no data: URI reaches fal");
    assert_eq!(upstream.uploaded(body["start_image_url"].as_str().unwrap()).as_deref(), Some(&start[..]));
    let upload = upstream.last_body("fal-upload").unwrap();
    assert_eq!(upload["content_type"], "image/png");
    app.stop().await;
});

both_backends!(a_720p_task_runs_on_fals_standard_tier_and_a_1080p_one_on_pro_each_at_its_price, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let Some(app) = TestApp::spawn_with(backend, |c| {
        quick(c);
        c.providers.insert("fal".to_owned(), provider(&upstream, "fal", &secrets));
        let mut r = route("kling-v3-text-to-video", "fal", "fal", 0.0);
        // fal's published prices: v3 standard $0.084/s, pro $0.112/s (audio off).
        r.cost_usd_per_second =
            CostTable { p720: 0.084, p720_sound: 0.126, p1080: 0.112, p1080_sound: 0.168, p4k: 0.0 };
        c.routes.push(r);
    })
    .await
    else {
        return;
    };
    let mut ids = Vec::new();
    for quality in ["720p", "1080p"] {
        let (_, id, done) =
            run(&app, &json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 5, "quality": quality}))
                .await;
        assert_eq!(done["status"], "completed", "{done}");
        ids.push(id);
    }
    let stats = upstream.stats();
    assert_eq!(stats.hits(Protocol::Fal, "fal-ai/kling-video/v3/standard/text-to-video"), 1, "{stats:?}");
    assert_eq!(stats.hits(Protocol::Fal, "fal-ai/kling-video/v3/pro/text-to-video"), 1, "{stats:?}");
    let standard = &attempts(&app, &ids[0]).await[0];
    assert_eq!(standard["upstream_model"], "fal-ai/kling-video/v3/standard/text-to-video");
    assert!((standard["cost_usd"].as_f64().unwrap() - 0.42).abs() < 1e-9, "{standard}");
    let pro = &attempts(&app, &ids[1]).await[0];
    assert_eq!(pro["upstream_model"], "fal-ai/kling-video/v3/pro/text-to-video");
    assert!((pro["cost_usd"].as_f64().unwrap() - 0.56).abs() < 1e-9, "{pro}");
    app.stop().await;
});

/// Submit refusals the providers document as passing: `(what, kind, fault)`.
const BRIEF_REFUSALS: [(&str, &str, Fault); 4] = [
    ("Kling 1303 at its documented HTTP 429", "kling", Fault::KlingCode(1303)),
    ("Kling 1303 with HTTP 200", "kling", Fault::Kling1303),
    ("fal 503", "fal", Fault::Status(503)),
    ("replicate 429", "replicate", Fault::Status(429)),
];

both_backends!(a_submit_refused_briefly_is_retried_on_the_same_route_after_a_backoff, |backend| async move {
    let secrets = Secrets::new();
    for (what, kind, fault) in BRIEF_REFUSALS {
        let flaky = sim(SimConfig { submit_fault_rate: 1.0, submit_fault: fault, ..SimConfig::default() }).await;
        let other = sim(SimConfig::default()).await;
        let Some(app) =
            gateway(backend, &secrets, &[("flaky", kind, &flaky, 0.01), ("other", "fal", &other, 0.09)], |_| {}).await
        else {
            return;
        };
        let (_, t) = app.create(&t2v()).await;
        let id = t["id"].as_str().unwrap().to_owned();
        // Refused twice; the provider recovers before the second retry is due.
        assert!(eventually(20, || async { flaky.stats().submits >= 2 }).await, "{what}");
        flaky.set(|c| c.submit_fault_rate = 0.0);
        let done = finished(&app, &id).await;
        assert_eq!(done["status"], "completed", "{what}: {done}");
        let a = attempts(&app, &id).await;
        assert_eq!(outline(&a), pairs(&[("flaky", "error"), ("flaky", "error"), ("flaky", "succeeded")]), "{what}");
        // Exponential backoff from 1 s, waited in the queue.
        let g = gaps(&a);
        assert!(g[0] >= 1000 && g[1] >= 2000, "{what}: {g:?}");
        assert_eq!(other.stats().submits, 0, "{what}: never moved on");
        settled_once(&app, &id).await;
        // The same story in /metrics: outcomes, latencies, the task's duration.
        let m = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        for line in [
            r#"vidgate_upstream_submits_total{provider="flaky",outcome="refused"} 2"#,
            r#"vidgate_upstream_submits_total{provider="flaky",outcome="accepted"} 1"#,
            r#"vidgate_upstream_submit_duration_seconds_count{provider="flaky"} 3"#,
            r#"vidgate_task_duration_seconds_count{model="kling-v3-text-to-video",provider="flaky"} 1"#,
            r#"vidgate_tasks_finished_total{model="kling-v3-text-to-video",provider="flaky",status="completed",error_code=""} 1"#,
        ] {
            assert!(m.contains(line), "{what}: no {line} in {m}");
        }
        assert!(m.contains(r#"vidgate_upstream_poll_duration_seconds_count{provider="flaky"}"#), "{what}: {m}");
        assert!(!m.contains(r#"vidgate_upstream_submits_total{provider="other""#), "{what}: {m}");
        app.stop().await;
    }
});

both_backends!(a_kling_throttle_is_retried_three_times_then_the_route_is_spent, |backend| async move {
    let secrets = Secrets::new();
    let busy =
        sim(SimConfig { submit_fault_rate: 1.0, submit_fault: Fault::KlingCode(1303), ..SimConfig::default() }).await;
    let good = sim(SimConfig::default()).await;
    let Some(app) =
        gateway(backend, &secrets, &[("busy", "kling", &busy, 0.01), ("other", "fal", &good, 0.09)], |_| {}).await
    else {
        return;
    };
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "completed", "{done}");
    let a = attempts(&app, &id).await;
    let expected = [("busy", "error"), ("busy", "error"), ("busy", "error"), ("busy", "error"), ("other", "succeeded")];
    assert_eq!(outline(&a), pairs(&expected));
    let g = gaps(&a);
    assert!(g[0] >= 1000 && g[1] >= 2000 && g[2] >= 4000, "{g:?}");
    assert!(a[0]["error_message"].as_str().unwrap().contains("1303"), "{a:?}");
    // Busy is not ill: the breaker does not count a throttle.
    assert_eq!(breaker_errors(&app, "busy").await, 0);
    app.stop().await;
});

/// Submit refusals that are ours to fix or whose outcome is unknown: the task
/// moves to the next route at once and the provider's breaker counts them.
/// `(what, kind, sim config)`.
fn our_refusals() -> Vec<(&'static str, &'static str, SimConfig)> {
    let fault = |f: Fault| SimConfig { submit_fault_rate: 1.0, submit_fault: f, ..SimConfig::default() };
    vec![
        ("Kling 1102, resource pack exhausted (HTTP 429)", "kling", fault(Fault::KlingCode(1102))),
        ("Kling 1304, IP whitelist (HTTP 429)", "kling", fault(Fault::KlingCode(1304))),
        ("Kling 1103, no access to the model (HTTP 403)", "kling", fault(Fault::KlingCode(1103))),
        ("fal 403, a locked account", "fal", fault(Fault::Status(403))),
        ("replicate 401", "replicate", fault(Fault::Status(401))),
        ("replicate 402, billing required", "replicate", fault(Fault::Status(402))),
        ("replicate 403", "replicate", fault(Fault::Status(403))),
        (
            "replicate 404, the model does not exist",
            "replicate",
            SimConfig { replicate_models: Vec::new(), ..SimConfig::default() },
        ),
        ("evolink 402, insufficient quota", "evolink", fault(Fault::Status(402))),
        ("an undocumented status", "fal", fault(Fault::Status(418))),
        ("a malformed body", "kling", fault(Fault::Malformed)),
        ("a hang past the timeout", "replicate", fault(Fault::Hang)),
    ]
}

both_backends!(a_submit_refused_for_our_own_reasons_moves_to_the_next_route_at_once, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    for (what, kind, config) in our_refusals() {
        let bad = sim(config).await;
        let Some(app) = gateway(backend, &secrets, &[("cheap", kind, &bad, 0.03), ("dear", "fal", &good, 0.09)], |c| {
            set_timeout(c.providers.get_mut("cheap").unwrap(), 1);
        })
        .await
        else {
            return;
        };
        let (_, id, done) = one_task(&app).await;
        assert_eq!(done["status"], "completed", "{what}: {done}");
        let a = attempts(&app, &id).await;
        assert_eq!(outline(&a), pairs(&[("cheap", "error"), ("dear", "succeeded")]), "{what}");
        assert!(a[0]["error_message"].is_string(), "{what}: the attempt records why");
        assert_eq!(bad.stats().accepted, 0, "{what}");
        assert!(breaker_errors(&app, "cheap").await >= 1, "{what}: the breaker counts it");
        settled_once(&app, &id).await;
        app.stop().await;
    }
});

both_backends!(nothing_listening_is_retried_twice_then_the_task_moves_on, |backend| async move {
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
    assert_eq!(outline(&a), pairs(&[("down", "error"), ("down", "error"), ("down", "error"), ("up", "succeeded")]));
    assert!(a[0]["error_message"].as_str().unwrap().contains("refused"), "{a:?}");
    app.stop().await;
});

both_backends!(
    a_content_refusal_in_each_providers_own_words_is_final_refunded_and_never_resubmitted,
    |backend| async move {
        let secrets = Secrets::new();
        let good = sim(SimConfig::default()).await;
        for kind in ["kling", "fal", "replicate", "evolink"] {
            let strict = sim(SimConfig { refuse_rate: 1.0, ..SimConfig::default() }).await;
            let Some(app) = gateway(
                backend,
                &secrets,
                &[("strict", kind, &strict, 0.01), ("other", "replicate", &good, 0.09)],
                |_| {},
            )
            .await
            else {
                return;
            };
            let before = app.remaining(&app.api_key).await;
            let (_, id, done) = one_task(&app).await;
            assert_eq!(done["status"], "failed", "{kind}: {done}");
            assert_eq!(done["error"]["code"], "content_policy_violation", "{kind}: {done}");
            assert_eq!(done["usage"]["credits_charged"], 0, "{kind}");
            assert_eq!(app.remaining(&app.api_key).await, before, "{kind}: refunded in full");
            assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("strict", "failed")]), "{kind}");
            if kind == "kling" {
                let message = done["error"]["message"].as_str().unwrap();
                assert!(message.contains(vidgate_sim::kling::RISK_CONTROL), "Kling's own words: {message}");
            }
            settled_once(&app, &id).await;
            app.stop().await;
        }
        assert_eq!(good.stats().submits, 0, "a refusal of the request is not retried elsewhere");
    }
);

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
    assert_eq!(outline(&a), pairs(&[("a", "failed"), ("b", "failed"), ("c", "succeeded")]));
    assert_eq!(a[0]["error_code"], "service_error");
    assert!(a[1]["error_message"].as_str().unwrap().contains("not an MP4"), "{a:?}");
    // Only the route that delivered is paid for, and the client pays once.
    assert!(a[2]["cost_usd"].as_f64().unwrap() > 0.0 && a[0]["cost_usd"].as_f64() == Some(0.0));
    let reserved = t["usage"]["credits_reserved"].as_f64().unwrap();
    assert!((before - app.remaining(&app.api_key).await - reserved / UNITS).abs() < 1e-6);
    settled_once(&app, &id).await;
    app.stop().await;
});

both_backends!(fal_failures_are_classified_by_type_and_the_echoed_input_never_shows, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    // fal echoes the whole input into `detail[].input`: a prompt that speaks of
    // safety, policy and timeouts must not decide anything, nor be shown.
    let prompt = "a safety policy poster announcing a timeout";
    for (fal_failure, code) in [
        ("downstream_service_error", "service_error"),
        ("no_media_generated", "generation_failed_no_content"),
        ("generation_timeout", "generation_timeout"),
        ("runner_disconnected", "service_unavailable"),
    ] {
        let mut config = SimConfig { fal_failure: fal_failure.to_owned(), ..SimConfig::default() };
        config.protocol(Protocol::Fal).fail_rate = 1.0;
        let fal = sim(config).await;
        let Some(app) =
            gateway(backend, &secrets, &[("fal", "fal", &fal, 0.01), ("kling", "kling", &good, 0.09)], |_| {}).await
        else {
            return;
        };
        let (_, id, done) =
            run(&app, &json!({"model": "kling-v3-text-to-video", "prompt": prompt, "duration": 3})).await;
        assert_eq!(done["status"], "completed", "{fal_failure}: {done}");
        let a = attempts(&app, &id).await;
        assert_eq!(outline(&a), pairs(&[("fal", "failed"), ("kling", "succeeded")]), "{fal_failure}");
        assert_eq!(a[0]["error_code"], code, "{fal_failure}: {a:?}");
        let message = a[0]["error_message"].as_str().unwrap();
        assert!(message.contains(fal_failure), "{message}");
        assert!(!message.contains("poster"), "the echoed input is never shown: {message}");
        app.stop().await;
    }
});

both_backends!(a_success_without_the_documented_result_fails_that_attempt_and_moves_on, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    for kind in ["kling", "fal", "replicate", "evolink"] {
        // fal: COMPLETED, then a result that is not JSON; the others: a success
        // answer without its video.
        let odd = sim(SimConfig { bad_body_rate: 1.0, ..SimConfig::default() }).await;
        let Some(app) = gateway(backend, &secrets, &[("odd", kind, &odd, 0.01), ("good", "kling", &good, 0.09)], |c| {
            c.task_deadline_secs = Duration::from_secs(60);
        })
        .await
        else {
            return;
        };
        let (_, id, done) = one_task(&app).await;
        assert_eq!(done["status"], "completed", "{kind}: {done}");
        let a = attempts(&app, &id).await;
        assert_eq!(outline(&a), pairs(&[("odd", "failed"), ("good", "succeeded")]), "{kind}");
        assert_eq!(a[0]["error_code"], "service_error", "{kind}");
        app.stop().await;
    }
});

both_backends!(a_replicate_input_error_is_final, |backend| async move {
    let secrets = Secrets::new();
    let good = sim(SimConfig::default()).await;
    let strict =
        sim(SimConfig { submit_fault_rate: 1.0, submit_fault: Fault::Status(422), ..SimConfig::default() }).await;
    let Some(app) =
        gateway(backend, &secrets, &[("strict", "replicate", &strict, 0.01), ("other", "fal", &good, 0.09)], |_| {})
            .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "invalid_parameters", "{done}");
    assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("strict", "failed")]));
    assert_eq!(good.stats().submits, 0);
    assert_eq!(app.remaining(&app.api_key).await, before);
    app.stop().await;
});

both_backends!(a_task_goes_back_to_providers_it_tried_until_the_attempts_budget_is_spent, |backend| async move {
    let secrets = Secrets::new();
    let failing = sim(SimConfig { fail_rate: 1.0, ..SimConfig::default() }).await;
    let good = sim(SimConfig::default()).await;
    let Some(app) = gateway(
        backend,
        &secrets,
        &[("a", "kling", &failing, 0.01), ("b", "fal", &failing, 0.02), ("c", "replicate", &failing, 0.03)],
        |c| c.max_attempts_per_task = 5,
    )
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, id, done) = one_task(&app).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "service_error", "{done}");
    let a = attempts(&app, &id).await;
    // Each tried once, cheapest first, then back to the cheapest, within 5 attempts.
    let expected = [("a", "failed"), ("b", "failed"), ("c", "failed"), ("a", "failed"), ("b", "failed")];
    assert_eq!(outline(&a), pairs(&expected));
    assert_eq!(good.stats().submits, 0);
    assert_eq!(app.remaining(&app.api_key).await, before);
    settled_once(&app, &id).await;
    app.stop().await;
});

/// How a provider stops answering.
#[derive(Debug, Clone, Copy)]
enum Silence {
    ConnectionRefused,
    ServerErrors,
}

both_backends!(
    a_task_on_a_provider_that_stops_answering_is_resubmitted_after_the_grace_and_charged_once,
    |backend| async move {
        let secrets = Secrets::new();
        for silence in [Silence::ConnectionRefused, Silence::ServerErrors] {
            // The cheap provider accepts the task and never finishes it.
            let dying = sim(SimConfig { stuck_rate: 1.0, ..SimConfig::default() }).await;
            let good = sim(SimConfig::default()).await;
            let Some(app) = gateway(
                backend,
                &secrets,
                &[("dying", "replicate", &dying, 0.02), ("good", "kling", &good, 0.05)],
                |c| {
                    c.upstream_dead_grace_secs = Duration::from_secs(2);
                    set_timeout(c.providers.get_mut("dying").unwrap(), 1);
                },
            )
            .await
            else {
                return;
            };
            let before = app.remaining(&app.api_key).await;
            let (_, task) = app.create(&t2v()).await;
            let id = task["id"].as_str().unwrap().to_owned();
            assert!(eventually(20, || async { dying.stats().polls >= 1 }).await, "{silence:?}");
            match silence {
                Silence::ConnectionRefused => dying.stop_listening().await,
                Silence::ServerErrors => dying.set(|c| c.down = Some(503)),
            }
            let done = finished(&app, &id).await;
            assert_eq!(done["status"], "completed", "{silence:?}: {done}");
            let a = attempts(&app, &id).await;
            assert_eq!(outline(&a), pairs(&[("dying", "abandoned"), ("good", "succeeded")]), "{silence:?}");
            assert_eq!(a[0]["error_code"], "service_unavailable");
            // Charged once, the price of the request.
            let reserved = task["usage"]["credits_reserved"].as_f64().unwrap();
            assert!((before - app.remaining(&app.api_key).await - reserved / UNITS).abs() < 1e-6);
            settled_once(&app, &id).await;
            // The margin report shows what we may owe both: 3 s x $0.02 + 3 s x $0.05.
            let (_, m) = app.get_with_key("/admin/reports/margin", ADMIN_KEY).await;
            let line = m["data"].as_array().unwrap().iter().find(|l| l["provider"] == "good").cloned().unwrap();
            assert!((line["upstream_cost_usd"].as_f64().unwrap() - 0.21).abs() < 1e-9, "{silence:?}: {m}");
            assert!((a[0]["cost_usd"].as_f64().unwrap() - 0.06).abs() < 1e-9, "{a:?}");
            app.stop().await;
        }
    }
);

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
    assert!(eventually(10, || held(1)).await, "the poller does not show the task it holds");
    let done = finished(&app, id).await;
    assert_eq!(done["error"]["code"], "generation_timeout", "{done}");
    assert!(eventually(10, || held(0)).await, "the poller still shows the task");
    assert_eq!(app.remaining(&app.api_key).await, before);
    settled_once(&app, id).await;
    // It was polled, and the upstream task was told to stop.
    assert!(stuck.stats().polls >= 2);
    let cancelled = eventually(10, || async { stuck.stats().cancels == 1 }).await;
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
        |c| c.routes.push(route("kling-custom-element", "kling", "kling", 0.0)),
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
    // Every field Kling's element management marks required.
    let sent = upstream.last_body("element").unwrap();
    assert_eq!(sent["element_name"], "hero");
    assert_eq!(sent["element_description"], "a red fox");
    assert_eq!(sent["reference_type"], "image_refer");
    assert!(sent["element_image_list"]["frontal_image"].is_string());
    assert_eq!(sent["element_image_list"]["refer_images"].as_array().unwrap().len(), 1);
    // A video naming the element goes to Kling, with Kling's (numeric) element id.
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
    assert_eq!(outline(&attempts(&app, id).await), pairs(&[("kling", "succeeded")]));
    let body = upstream.last_body("kling").unwrap();
    assert!(body["element_list"][0]["element_id"].is_u64(), "{body}");
    // Without the element, the cheaper fal serves.
    let (_, plain) = app
        .create(&json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_start": img, "duration": 3}))
        .await;
    let plain = plain["id"].as_str().unwrap();
    assert_eq!(finished(&app, plain).await["status"], "completed");
    assert_eq!(outline(&attempts(&app, plain).await)[0].0, "fal");
    app.stop().await;
});

both_backends!(soak_500_tasks_across_three_providers_with_random_faults_all_complete, |backend| async move {
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
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
    // The faults were real; with same-route retries and revisits every task made it.
    let stats = upstream.stats();
    assert!(stats.faults > 20, "{stats:?}");
    let failed: Vec<&Value> = tasks.values().filter(|t| t["status"] != "completed").collect();
    assert_eq!(completed, 500, "failed: {failed:?}");
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
    assert!(eventually(10, || async { failing.stats().polls == 1 }).await);
    let (s, c) = app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{c}");
    // The poller, still holding the task, sees its upstream attempt fail but
    // moves it to no other route.
    let resubmitted = eventually(6, || {
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
        let text = app.state.metrics.render();
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
    assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("kling", "succeeded")]));
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

/// A gateway with one provider of each kind at the sim, plus `extra` ones.
async fn every_kind(
    backend: Backend,
    secrets: &Secrets,
    upstream: &SimHandle,
    extra: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| {
        for kind in ["kling", "fal", "replicate", "evolink"] {
            c.providers.insert(kind.to_owned(), provider(upstream, kind, secrets));
        }
        c.providers.insert("local".to_owned(), ProviderConfig::Local {});
        extra(c);
    })
    .await
}

both_backends!(the_credential_check_reports_each_provider_in_its_own_words_and_never_a_secret, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    // A fal key without billing read access, as fal's inference-only keys are.
    let inference_only = sim(SimConfig { fal_key_admin: false, ..SimConfig::default() }).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = SimHandle::unreachable(&format!("http://{}", socket.local_addr().unwrap()));
    let Some(app) = every_kind(backend, &secrets, &upstream, |c| {
        let Some(ProviderConfig::Replicate(p)) = c.providers.get_mut("replicate") else { panic!("configured") };
        p.api_key_file = secrets.file("wrong");
        c.providers.insert("fal_inference".to_owned(), provider(&inference_only, "fal", &secrets));
        c.providers.insert("gone".to_owned(), provider(&dead, "evolink", &secrets));
    })
    .await
    else {
        return;
    };
    let checks_before = upstream.stats().credential_checks;
    let (s, body) = app.get_with_key("/admin/providers/check", ADMIN_KEY).await;
    assert_eq!(s, 200, "{body}");
    let status = |name: &str| {
        let line = body["data"].as_array().unwrap().iter().find(|l| l["provider"] == name).cloned();
        let line = line.unwrap_or_else(|| panic!("{name} is listed: {body}"));
        (line["status"].as_str().unwrap().to_owned(), line["message"].as_str().unwrap().to_owned())
    };
    for ok in ["kling", "fal", "evolink", "local"] {
        assert_eq!(status(ok).0, "ok", "{ok}: {body}");
    }
    let (s, m) = status("replicate");
    assert_eq!(s, "bad_credentials", "{body}");
    assert!(m.contains("You did not pass a valid authentication token"), "the upstream's words: {m}");
    let (s, m) = status("fal_inference");
    assert_eq!(s, "unknown", "{body}");
    assert!(m.contains("403"), "{m}");
    assert_eq!(status("gone").0, "unreachable", "{body}");
    // The calls were made, each created nothing, and no secret is shown.
    assert_eq!(upstream.stats().credential_checks - checks_before, 4);
    assert_eq!(upstream.task_count(), 0);
    let text = body.to_string();
    let d = SimConfig::default();
    for secret in [d.kling_access_key, d.kling_secret_key, d.fal_key, d.replicate_token, d.evolink_key] {
        assert!(!text.contains(&secret), "{secret} shown: {text}");
    }
    // Admins only.
    let (s, _) = app.get("/admin/providers/check").await;
    assert_eq!(s, 401);
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vidgate_providers_check_asks_the_running_server_and_exits_non_zero_when_one_is_not_ok() {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let Some(app) = every_kind(Backend::Sqlite, &secrets, &upstream, |_| {}).await else { return };
    let cli = |key: &str, url: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vidgate"));
        cmd.args(["providers", "check"]).env("VIDGATE_URL", url).env("VIDGATE_ADMIN_KEY", key).env("RUST_LOG", "off");
        async move { tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap() }
    };
    let out = cli(ADMIN_KEY, &app.address).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for kind in ["kling", "fal", "replicate", "evolink", "local"] {
        let line = stdout.lines().find(|l| l.starts_with(kind)).unwrap_or_else(|| panic!("{kind}: {stdout}"));
        assert!(line.contains(" ok"), "{line}");
    }
    // One provider down: the line says so and the command fails.
    upstream.set(|c| c.protocol(Protocol::Replicate).down = Some(503));
    let out = cli(ADMIN_KEY, &app.address).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("replicate") && l.contains("unreachable")), "{stdout}");
    // A wrong admin key is the server's 401.
    let out = cli("sk-not-admin", &app.address).await;
    assert!(!out.status.success());
    app.stop().await;
}

/// A minimal valid body for every catalog model, with uploaded media.
async fn every_model(app: &TestApp) -> Vec<Value> {
    let upload = |bytes: Vec<u8>, name: &'static str| async move {
        let (s, b) = crate::helpers::upload_file(app, bytes, name).await;
        assert_eq!(s, 200, "{b}");
        b["url"].as_str().unwrap().to_owned()
    };
    let image = upload(png(640, 360), "a.png").await;
    let end = upload(png(640, 360), "b.png").await;
    let video = upload(crate::helpers::clip("a harbour at dawn", 720, 3, false), "input.mp4").await;
    vec![
        json!({"model": "kling-v3-text-to-video", "prompt": "a neon city", "duration": 3}),
        json!({"model": "kling-v3-image-to-video", "image_start": image, "image_end": end, "duration": 3}),
        json!({"model": "kling-v3-turbo-text-to-video", "prompt": "a neon city", "duration": 3}),
        json!({"model": "kling-v3-turbo-image-to-video", "image_start": image, "duration": 3}),
        json!({"model": "kling-v3-motion-control", "image_urls": [image], "video_urls": [video],
            "model_params": {"character_orientation": "image"}}),
        json!({"model": "kling-o3-text-to-video", "prompt": "a neon city", "duration": 3}),
        json!({"model": "kling-o3-image-to-video", "prompt": "pan left", "image_start": image, "image_end": end, "duration": 3}),
        json!({"model": "kling-o3-reference-to-video", "prompt": "follow <<<video_1>>>", "video_url": video,
            "duration": 3}),
        json!({"model": "kling-o3-video-edit", "prompt": "make it winter", "video_url": video}),
        json!({"model": "kling-o1-image-to-video", "prompt": "slow zoom", "image_urls": [image]}),
        json!({"model": "kling-o1-video-edit", "prompt": "make it sepia", "video_urls": [video]}),
        json!({"model": "kling-o1-video-edit-fast", "prompt": "make it neon", "video_urls": [video]}),
        json!({"model": "kling-custom-element", "model_params": {"element_name": "hero",
            "element_description": "a person in a white shirt", "reference_type": "image_refer",
            "element_image_list": {"frontal_image": image, "refer_images": [{"image_url": end}]}}}),
    ]
}

/// Kling's official endpoint for each catalog model: `(model, upstream_model,
/// endpoint at the sim)`, as Kling's docs serve them (api-specs section 2).
const KLING_MAPPING: [(&str, &str, &str); 13] = [
    ("kling-v3-text-to-video", "kling-v3", "v1/videos/text2video"),
    ("kling-v3-image-to-video", "kling-v3", "v1/videos/image2video"),
    ("kling-v3-turbo-text-to-video", "kling-3.0-turbo", "text-to-video/kling-3.0-turbo"),
    ("kling-v3-turbo-image-to-video", "kling-3.0-turbo", "image-to-video/kling-3.0-turbo"),
    ("kling-v3-motion-control", "kling-v3", "v1/videos/motion-control"),
    ("kling-o3-text-to-video", "kling-v3-omni", "v1/videos/omni-video"),
    ("kling-o3-image-to-video", "kling-v3-omni", "v1/videos/omni-video"),
    ("kling-o3-reference-to-video", "kling-v3-omni", "v1/videos/omni-video"),
    ("kling-o3-video-edit", "kling-v3-omni", "v1/videos/omni-video"),
    ("kling-o1-image-to-video", "kling-video-o1", "v1/videos/omni-video"),
    ("kling-o1-video-edit", "kling-video-o1", "v1/videos/omni-video"),
    ("kling-o1-video-edit-fast", "kling-video-o1", "v1/videos/omni-video"),
    ("kling-custom-element", "kling-v3", "v1/general/advanced-custom-elements"),
];

/// A gateway whose only routes are `(model, upstream_model)` via `kind` at the sim.
async fn mapped(
    backend: Backend,
    secrets: &Secrets,
    upstream: &SimHandle,
    kind: &str,
    routes: &[(&str, &str)],
    tweak: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| {
        quick(c);
        c.providers.insert(kind.to_owned(), provider(upstream, kind, secrets));
        for (model, upstream_model) in routes {
            let mut r = route(model, kind, kind, 0.05);
            (r.upstream_model, r.upstream_models) = ((*upstream_model).to_owned(), Default::default());
            c.routes.push(r);
        }
        tweak(c);
    })
    .await
}

both_backends!(every_kling_model_goes_to_the_official_endpoint_that_serves_it, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let routes: Vec<(&str, &str)> = KLING_MAPPING.iter().map(|(m, u, _)| (*m, *u)).collect();
    // The new-standard paths (Turbo) take only the static API key.
    let Some(app) = mapped(backend, &secrets, &upstream, "kling", &routes, |c| {
        let Some(ProviderConfig::Kling(p)) = c.providers.get_mut("kling") else { panic!("kling is configured") };
        (p.access_key_file, p.secret_key_file) = (None, None);
        p.api_key_file = secrets.file("kling-key");
    })
    .await
    else {
        return;
    };
    for (body, (model, upstream_model, endpoint)) in every_model(&app).await.iter().zip(KLING_MAPPING) {
        let (_, id, done) = run(&app, body).await;
        assert_eq!(done["status"], "completed", "{model}: {done}");
        assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("kling", "succeeded")]), "{model}");
        let key = if model == "kling-custom-element" { "element" } else { "kling" };
        let sent = upstream.last_submit(key).unwrap();
        assert_eq!(sent.endpoint, endpoint, "{model}");
        let b = &sent.body;
        match model {
            "kling-v3-turbo-text-to-video" => assert_eq!(b["settings"]["duration"], 3, "{b}"),
            "kling-v3-turbo-image-to-video" => assert_eq!(b["contents"][0]["type"], "first_frame", "{b}"),
            "kling-custom-element" => assert_eq!(b["reference_type"], "image_refer"),
            _ => assert_eq!(b["model_name"], upstream_model, "{model}"),
        }
        let video = b["video_url"].as_str().or(b["video_list"][0]["video_url"].as_str());
        match model {
            "kling-v3-motion-control" => {
                assert_eq!(b["character_orientation"], "image");
                assert!(b["image_url"].as_str().is_some_and(|i| !i.starts_with("data:")), "raw base64: {b}");
                assert!(video.unwrap().starts_with(&app.address), "a link of ours: {b}");
            }
            "kling-o3-reference-to-video" => assert_eq!(b["video_list"][0]["refer_type"], "feature", "{b}"),
            "kling-o3-video-edit" | "kling-o1-video-edit" | "kling-o1-video-edit-fast" => {
                assert_eq!(b["video_list"][0]["refer_type"], "base", "{b}");
                assert!(video.unwrap().starts_with(&app.address), "{b}");
            }
            "kling-o3-image-to-video" => {
                let types: Vec<&str> =
                    b["image_list"].as_array().unwrap().iter().filter_map(|i| i["type"].as_str()).collect();
                assert_eq!(types, ["first_frame", "end_frame"], "{b}");
            }
            "kling-o1-image-to-video" => assert_eq!(b["image_list"][0]["type"], "first_frame", "{b}"),
            _ => {}
        }
    }
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_standard_kling_route_with_a_jwt_only_provider_is_refused_at_start() {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = crate::helpers::base_config(dir.path());
    c.providers.insert("kling".to_owned(), provider(&upstream, "kling", &secrets));
    let mut r = route("kling-v3-turbo-text-to-video", "kling", "kling", 0.05);
    r.upstream_model = "kling-3.0-turbo".to_owned();
    c.routes.push(r);
    let e = vidgate::startup::Application::build(c).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("API key"), "{e}");
}

both_backends!(every_model_but_the_element_goes_to_an_evolink_upstream_as_itself, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let models: Vec<&str> = KLING_MAPPING.iter().map(|(m, _, _)| *m).filter(|m| *m != "kling-custom-element").collect();
    let routes: Vec<(&str, &str)> = models.iter().map(|m| (*m, *m)).collect();
    let Some(app) = mapped(backend, &secrets, &upstream, "evolink", &routes, |_| {}).await else { return };
    for body in every_model(&app).await.iter().filter(|b| b["model"] != "kling-custom-element") {
        let model = body["model"].as_str().unwrap();
        let (_, id, done) = run(&app, body).await;
        assert_eq!(done["status"], "completed", "{model}: {done}");
        assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("evolink", "succeeded")]), "{model}");
        let b = upstream.last_body("evolink").unwrap();
        assert_eq!(b["model"], model);
        match model {
            "kling-v3-motion-control" => {
                assert_eq!(b["model_params"]["character_orientation"], "image", "{b}");
                assert!(b["video_urls"][0].as_str().unwrap().starts_with(&app.address), "{b}");
                assert_eq!(b["image_urls"].as_array().unwrap().len(), 1, "{b}");
            }
            "kling-o1-image-to-video" => {
                assert_eq!(b["image_urls"].as_array().unwrap().len(), 1, "frames as image_urls: {b}");
                assert!(b.get("quality").is_none() && b.get("image_start").is_none(), "{b}");
            }
            "kling-o3-video-edit" | "kling-o3-reference-to-video" => {
                assert!(b["video_url"].as_str().unwrap().starts_with(&app.address), "{b}")
            }
            "kling-o1-video-edit" | "kling-o1-video-edit-fast" => assert!(b["video_urls"].is_array(), "{b}"),
            "kling-v3-image-to-video" => assert!(b["image_start"].is_string() && b["image_end"].is_string(), "{b}"),
            _ => {}
        }
    }
    app.stop().await;
});

both_backends!(text_and_image_models_go_to_the_fal_endpoints_that_host_them, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig { fal_accept_data_uris: false, ..SimConfig::default() }).await;
    // fal model ids (fal.ai/models/fal-ai/kling-video/...), standard tier for 720p.
    let routes = [
        ("kling-v3-turbo-text-to-video", "fal-ai/kling-video/v3/turbo/standard/text-to-video"),
        ("kling-v3-turbo-image-to-video", "fal-ai/kling-video/v3/turbo/standard/image-to-video"),
        ("kling-o3-text-to-video", "fal-ai/kling-video/o3/standard/text-to-video"),
        ("kling-o3-image-to-video", "fal-ai/kling-video/o3/standard/image-to-video"),
        ("kling-o1-image-to-video", "fal-ai/kling-video/o1/image-to-video"),
    ];
    let Some(app) = mapped(backend, &secrets, &upstream, "fal", &routes, |_| {}).await else { return };
    let bodies = every_model(&app).await;
    for (model, endpoint) in routes {
        let body = bodies.iter().find(|b| b["model"] == model).unwrap();
        let (_, id, done) = run(&app, body).await;
        assert_eq!(done["status"], "completed", "{model}: {done}");
        assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("fal", "succeeded")]), "{model}");
        let sent = upstream.last_submit("fal").unwrap();
        assert_eq!(sent.endpoint, endpoint);
        let b = &sent.body;
        match model {
            // O3 and v3 Turbo take the first frame as `image_url`, uploaded.
            "kling-v3-turbo-image-to-video" | "kling-o3-image-to-video" => {
                assert!(upstream.uploaded(b["image_url"].as_str().unwrap()).is_some(), "{b}")
            }
            "kling-o1-image-to-video" => assert!(upstream.uploaded(b["start_image_url"].as_str().unwrap()).is_some()),
            _ => assert!(b["prompt"].is_string(), "{b}"),
        }
    }
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_fal_and_replicate_are_not_mapped_for_are_refused_at_start() {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    for kind in ["fal", "replicate"] {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::helpers::base_config(dir.path());
        c.providers.insert(kind.to_owned(), provider(&upstream, kind, &secrets));
        let mut r = route("kling-o3-video-edit", kind, kind, 0.05);
        (r.upstream_model, r.upstream_models) = ("some/model".to_owned(), Default::default());
        c.routes.push(r);
        let e = vidgate::startup::Application::build(c).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains("video_edit"), "{kind}: {e}");
    }
}

both_backends!(omni_and_motion_control_also_go_to_klings_new_standard_paths, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let routes = [
        ("kling-o3-video-edit", "kling-3.0-omni", "omni-video/kling-3.0-omni", "base_video"),
        ("kling-o3-reference-to-video", "kling-3.0-omni", "omni-video/kling-3.0-omni", "feature_video"),
        ("kling-o1-image-to-video", "kling-o1", "omni-video/kling-o1", "first_frame"),
        ("kling-v3-motion-control", "kling-3.0", "motion-control/kling-3.0", "video"),
    ];
    let pairs_of: Vec<(&str, &str)> = routes.iter().map(|(m, u, _, _)| (*m, *u)).collect();
    let Some(app) = mapped(backend, &secrets, &upstream, "kling", &pairs_of, |c| {
        let Some(ProviderConfig::Kling(p)) = c.providers.get_mut("kling") else { panic!("kling is configured") };
        (p.access_key_file, p.secret_key_file) = (None, None);
        p.api_key_file = secrets.file("kling-key");
    })
    .await
    else {
        return;
    };
    let bodies = every_model(&app).await;
    for (model, _, endpoint, content) in routes {
        let body = bodies.iter().find(|b| b["model"] == model).unwrap();
        let (_, id, done) = run(&app, body).await;
        assert_eq!(done["status"], "completed", "{model}: {done}");
        assert_eq!(outline(&attempts(&app, &id).await), pairs(&[("kling", "succeeded")]), "{model}");
        let sent = upstream.last_submit("kling").unwrap();
        assert_eq!(sent.endpoint, endpoint, "{model}");
        let kinds: Vec<&str> =
            sent.body["contents"].as_array().unwrap().iter().filter_map(|c| c["type"].as_str()).collect();
        assert!(kinds.contains(&content), "{model}: {}", sent.body);
    }
    app.stop().await;
});

/// An uploaded image and an uploaded 3 s 720p clip: a request's media.
async fn media(app: &TestApp) -> (String, String) {
    let (s, i) = crate::helpers::upload_file(app, png(640, 360), "ref.png").await;
    assert_eq!(s, 200, "{i}");
    let (s, v) =
        crate::helpers::upload_file(app, crate::helpers::clip("a harbour at dawn", 720, 3, false), "in.mp4").await;
    assert_eq!(s, 200, "{v}");
    (i["url"].as_str().unwrap().to_owned(), v["url"].as_str().unwrap().to_owned())
}

/// A gateway whose only route is `model` via `kind` at the sim: one upstream model per
/// quality (`tiers`), or `single` for every quality.
async fn hosted(
    backend: Backend,
    secrets: &Secrets,
    upstream: &SimHandle,
    kind: &str,
    model: &str,
    single: &str,
    tiers: &[(&str, &str)],
) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| {
        quick(c);
        c.providers.insert(kind.to_owned(), provider(upstream, kind, secrets));
        let mut r = route(model, kind, kind, 0.05);
        r.upstream_model = single.to_owned();
        r.upstream_models = tiers.iter().map(|(q, m)| ((*q).to_owned(), (*m).to_owned())).collect();
        c.routes.push(r);
    })
    .await
}

/// Runs `body` to completion on `kind`'s one route and answers what the sim got: the
/// endpoint (the platform's model id) and the body.
async fn served(app: &TestApp, upstream: &SimHandle, kind: &str, body: &Value) -> (String, Value) {
    let (_, id, done) = run(app, body).await;
    assert_eq!(done["status"], "completed", "{body}: {done}");
    assert_eq!(outline(&attempts(app, &id).await), pairs(&[(kind, "succeeded")]), "{body}");
    let sent = upstream.last_submit(kind).unwrap();
    (sent.endpoint, sent.body)
}

/// fal's O3 edit endpoints per tier (fal.ai/models/fal-ai/kling-video/o3/pro/video-to-video/edit).
const FAL_O3_EDIT: [(&str, &str); 2] = [
    ("720p", "fal-ai/kling-video/o3/standard/video-to-video/edit"),
    ("1080p", "fal-ai/kling-video/o3/pro/video-to-video/edit"),
];

both_backends!(an_o3_video_edit_goes_to_fals_o3_edit_endpoint_of_its_tier, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig { fal_accept_data_uris: false, ..SimConfig::default() }).await;
    let Some(app) = hosted(backend, &secrets, &upstream, "fal", "kling-o3-video-edit", "", &FAL_O3_EDIT).await else {
        return;
    };
    let (image, video) = media(&app).await;
    for (quality, endpoint) in FAL_O3_EDIT {
        let body = json!({"model": "kling-o3-video-edit", "prompt": "make it winter in the style of <<<image_1>>>",
            "video_url": video, "image_urls": [image], "keep_original_sound": false, "quality": quality});
        let (sent_to, b) = served(&app, &upstream, "fal", &body).await;
        assert_eq!(sent_to, endpoint, "{quality}");
        assert!(b["video_url"].as_str().unwrap().starts_with(&app.address), "a signed link of ours: {b}");
        assert!(upstream.uploaded(b["image_urls"][0].as_str().unwrap()).is_some(), "uploaded to fal: {b}");
        assert_eq!(b["keep_audio"], false, "{b}");
        assert!(b["prompt"].as_str().unwrap().starts_with("make it winter"), "{b}");
        assert!(b.get("duration").is_none(), "an edit's length follows its input: {b}");
    }
    app.stop().await;
});

both_backends!(an_o3_reference_to_video_goes_to_fals_o3_reference_video_endpoint, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig { fal_accept_data_uris: false, ..SimConfig::default() }).await;
    let endpoint = "fal-ai/kling-video/o3/standard/video-to-video/reference";
    let tiers = [("720p", endpoint), ("1080p", "fal-ai/kling-video/o3/pro/video-to-video/reference")];
    let Some(app) = hosted(backend, &secrets, &upstream, "fal", "kling-o3-reference-to-video", "", &tiers).await else {
        return;
    };
    let (_, video) = media(&app).await;
    let body = json!({"model": "kling-o3-reference-to-video", "prompt": "the next shot of <<<video_1>>>",
        "video_url": video, "duration": 4, "aspect_ratio": "9:16"});
    let (sent_to, b) = served(&app, &upstream, "fal", &body).await;
    assert_eq!(sent_to, endpoint);
    assert!(b["video_url"].as_str().unwrap().starts_with(&app.address), "{b}");
    // fal's duration is a string enum; the O3 default keeps the input's sound.
    assert_eq!((&b["duration"], &b["aspect_ratio"], &b["keep_audio"]), (&json!("4"), &json!("9:16"), &json!(true)));
    app.stop().await;
});

both_backends!(an_o1_video_edit_goes_to_fals_o1_edit_endpoint, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig { fal_accept_data_uris: false, ..SimConfig::default() }).await;
    let endpoint = "fal-ai/kling-video/o1/video-to-video/edit";
    let Some(app) = hosted(backend, &secrets, &upstream, "fal", "kling-o1-video-edit", endpoint, &[]).await else {
        return;
    };
    let (image, video) = media(&app).await;
    let body = json!({"model": "kling-o1-video-edit", "prompt": "make it sepia like <<<image_1>>>",
        "video_urls": [video], "image_urls": [image], "keep_original_sound": true});
    let (sent_to, b) = served(&app, &upstream, "fal", &body).await;
    assert_eq!(sent_to, endpoint);
    assert!(b["video_url"].as_str().unwrap().starts_with(&app.address), "{b}");
    assert!(upstream.uploaded(b["image_urls"][0].as_str().unwrap()).is_some(), "{b}");
    assert_eq!(b["keep_audio"], true, "{b}");
    app.stop().await;
});

both_backends!(a_v3_motion_control_goes_to_fals_v3_motion_control_endpoint, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig { fal_accept_data_uris: false, ..SimConfig::default() }).await;
    let endpoint = "fal-ai/kling-video/v3/standard/motion-control";
    let tiers = [("720p", endpoint), ("1080p", "fal-ai/kling-video/v3/pro/motion-control")];
    let Some(app) = hosted(backend, &secrets, &upstream, "fal", "kling-v3-motion-control", "", &tiers).await else {
        return;
    };
    let (image, video) = media(&app).await;
    let body = json!({"model": "kling-v3-motion-control", "prompt": "on a stage", "image_urls": [image],
        "video_urls": [video], "model_params": {"character_orientation": "image"}});
    let (sent_to, b) = served(&app, &upstream, "fal", &body).await;
    assert_eq!(sent_to, endpoint);
    assert!(upstream.uploaded(b["image_url"].as_str().unwrap()).is_some(), "the subject, uploaded: {b}");
    assert!(b["video_url"].as_str().unwrap().starts_with(&app.address), "{b}");
    assert_eq!((&b["character_orientation"], &b["keep_original_sound"]), (&json!("image"), &json!(true)), "{b}");
    app.stop().await;
});

both_backends!(o3_edits_and_references_go_to_replicates_kling_v3_omni_video, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let omni = "kwaivgi/kling-v3-omni-video";
    let Some(app) = TestApp::spawn_with(backend, |c| {
        quick(c);
        c.providers.insert("replicate".to_owned(), provider(&upstream, "replicate", &secrets));
        for model in ["kling-o3-video-edit", "kling-o3-reference-to-video"] {
            let mut r = route(model, "replicate", "replicate", 0.05);
            r.upstream_model = omni.to_owned();
            c.routes.push(r);
        }
    })
    .await
    else {
        return;
    };
    let (image, video) = media(&app).await;
    let edit = json!({"model": "kling-o3-video-edit", "prompt": "make it winter", "video_url": video,
        "image_urls": [image], "quality": "1080p"});
    let (sent_to, b) = served(&app, &upstream, "replicate", &edit).await;
    assert!(sent_to.contains(omni), "{sent_to}");
    let i = &b["input"];
    assert!(i["reference_video"].as_str().unwrap().starts_with(&app.address), "{i}");
    assert_eq!((&i["video_reference_type"], &i["mode"]), (&json!("base"), &json!("pro")), "{i}");
    assert!(i["reference_images"][0].as_str().unwrap().starts_with("data:image/png"), "{i}");
    assert!(i.get("duration").is_none() && i.get("generate_audio").is_none(), "{i}");
    let reference = json!({"model": "kling-o3-reference-to-video", "prompt": "the next shot", "video_url": video,
        "duration": 4});
    let (sent_to, b) = served(&app, &upstream, "replicate", &reference).await;
    assert!(sent_to.contains(omni), "{sent_to}");
    let i = &b["input"];
    assert_eq!(
        (&i["video_reference_type"], &i["mode"], &i["duration"]),
        (&json!("feature"), &json!("standard"), &json!(4))
    );
    assert_eq!(i["keep_original_sound"], true, "{i}");
    app.stop().await;
});

both_backends!(an_o1_video_edit_goes_to_replicates_kling_o1_as_a_base_video, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let o1 = "kwaivgi/kling-o1";
    let Some(app) = hosted(backend, &secrets, &upstream, "replicate", "kling-o1-video-edit", o1, &[]).await else {
        return;
    };
    let (_, video) = media(&app).await;
    let body = json!({"model": "kling-o1-video-edit", "prompt": "make it sepia", "video_urls": [video]});
    let (sent_to, b) = served(&app, &upstream, "replicate", &body).await;
    assert!(sent_to.contains(o1), "{sent_to}");
    let i = &b["input"];
    assert!(i["reference_video"].as_str().unwrap().starts_with(&app.address), "{i}");
    // kling-o1 spells its modes std | pro; O1 is made at 1080p.
    assert_eq!((&i["video_reference_type"], &i["mode"]), (&json!("base"), &json!("pro")), "{i}");
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_fal_and_replicate_do_not_host_are_refused_at_start_naming_what_they_host() {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let cases = [
        // fal has no O1 fast edit; its image-only O3 reference-to-video is not the video reference.
        ("fal", "kling-o1-video-edit-fast", "fal-ai/kling-video/o1/video-to-video/edit", "fal hosts no endpoint"),
        (
            "fal",
            "kling-o3-reference-to-video",
            "fal-ai/kling-video/o3/pro/reference-to-video",
            "video-to-video/reference",
        ),
        ("fal", "kling-v3-motion-control", "fal-ai/kling-video/v2.6/pro/motion-control", "v3/pro/motion-control"),
        // Replicate hosts only Kling 2.6 motion control, and no O1 fast edit.
        ("replicate", "kling-v3-motion-control", "kwaivgi/kling-v2.6-motion-control", "Replicate hosts no model"),
        ("replicate", "kling-o1-video-edit-fast", "kwaivgi/kling-o1", "Replicate hosts no model"),
        ("replicate", "kling-o3-video-edit", "kwaivgi/kling-v3-video", "kwaivgi/kling-v3-omni-video"),
    ];
    for (kind, model, upstream_model, said) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::helpers::base_config(dir.path());
        c.providers.insert(kind.to_owned(), provider(&upstream, kind, &secrets));
        let mut r = route(model, kind, kind, 0.05);
        (r.upstream_model, r.upstream_models) = (upstream_model.to_owned(), Default::default());
        c.routes.push(r);
        let e = vidgate::startup::Application::build(c).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(e.contains(said) && e.contains(model), "{kind} {model}: {e}");
    }
}

both_backends!(o3_and_o1_image_to_video_go_to_replicates_omni_and_o1_models, |backend| async move {
    let secrets = Secrets::new();
    let upstream = sim(SimConfig::default()).await;
    let routes =
        [("kling-o3-image-to-video", "kwaivgi/kling-v3-omni-video"), ("kling-o1-image-to-video", "kwaivgi/kling-o1")];
    let Some(app) = mapped(backend, &secrets, &upstream, "replicate", &routes, |_| {}).await else { return };
    let bodies = every_model(&app).await;
    for (model, hosted) in routes {
        let body = bodies.iter().find(|b| b["model"] == model).unwrap();
        let (sent_to, b) = served(&app, &upstream, "replicate", body).await;
        assert!(sent_to.contains(hosted), "{model}: {sent_to}");
        let i = &b["input"];
        assert!(i["start_image"].as_str().unwrap().starts_with("data:image/png"), "{i}");
        match model {
            // kling-o1 has no generate_audio input; O1 is made at 1080p.
            "kling-o1-image-to-video" => assert!(i.get("generate_audio").is_none() && i["mode"] == "pro", "{i}"),
            _ => assert_eq!((&i["mode"], &i["generate_audio"]), (&json!("standard"), &json!(false)), "{i}"),
        }
    }
    app.stop().await;
});
