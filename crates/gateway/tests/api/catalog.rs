//! The whole Kling family behind one API (issue 13): every model of the catalog
//! created, rendered by the local provider and decoded back; the documents built
//! from the catalog agree with it; each billing rule holds and charges as
//! documented; input videos are fetched, probed and checked before anything is
//! held; and an operator's overrides reach prices and documents.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, block_distance, clip, data_uri, first_frame_blocks, png, serve_bytes, upload_file,
};

const UNITS: f64 = 10_000.0;

async fn upload_url(app: &TestApp, bytes: Vec<u8>, name: &str) -> String {
    let (s, b) = upload_file(app, bytes, name).await;
    assert_eq!(s, 200, "{b}");
    b["url"].as_str().unwrap().to_owned()
}

async fn download(app: &TestApp, url: &str) -> Vec<u8> {
    app.client.get(url).send().await.unwrap().bytes().await.unwrap().to_vec()
}

/// A minimal valid body for each model, with uploaded media.
async fn bodies(app: &TestApp) -> Vec<Value> {
    let image = upload_url(app, png(640, 360), "a.png").await;
    let end = upload_url(app, png(640, 360), "b.png").await;
    let video = upload_url(app, clip("a harbour at dawn", 720, 3, true), "input.mp4").await;
    vec![
        json!({"model": "kling-v3-text-to-video", "prompt": "a neon city", "duration": 3}),
        json!({"model": "kling-v3-image-to-video", "image_start": image, "image_end": end, "duration": 3}),
        json!({"model": "kling-v3-turbo-text-to-video", "prompt": "a neon city", "duration": 3}),
        json!({"model": "kling-v3-turbo-image-to-video", "image_start": image, "duration": 3}),
        json!({"model": "kling-v3-motion-control", "image_urls": [image], "video_urls": [video],
            "model_params": {"character_orientation": "image"}}),
        json!({"model": "kling-o3-text-to-video", "prompt": "a neon city", "duration": 3}),
        json!({"model": "kling-o3-image-to-video", "prompt": "pan left", "image_start": image, "duration": 3}),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_list_and_the_openapi_create_body_agree_for_every_model() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let (s, models) = app.get("/v1/models").await;
    assert_eq!(s, 200, "{models}");
    let (s, doc) = app.get("/openapi.json").await;
    assert_eq!(s, 200);
    let one_of =
        doc.pointer("/paths/~1v1~1videos~1generations/post/requestBody/content/application~1json/schema/oneOf");
    let refs: Vec<String> = one_of.and_then(Value::as_array).unwrap().iter().map(|r| r["$ref"].to_string()).collect();
    let entries = models["data"].as_array().unwrap();
    assert_eq!(entries.len(), 13, "the thirteen Kling models EvoLink sells");
    assert_eq!(refs.len(), entries.len());
    for m in entries {
        let id = m["id"].as_str().unwrap();
        let name = format!("CreateRequest.{id}");
        assert!(refs.iter().any(|r| r.contains(&name)), "{id} is not a branch of the create body");
        let branch = &doc["components"]["schemas"][&name];
        assert_eq!(&m["parameters"], branch, "/v1/models and /openapi.json disagree on {id}");
        assert!(m["billing_rule"].is_string() && m["pricing"].is_array() || m["billing_rule"] == "per_call", "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_model_renders_locally_and_decodes_back() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.workers = 2).await else { return };
    let mut ids = Vec::new();
    for body in bodies(&app).await {
        let (s, t) = app.create(&body).await;
        assert_eq!(s, 200, "{} -> {t}", body["model"]);
        ids.push((body["model"].as_str().unwrap().to_owned(), t["id"].as_str().unwrap().to_owned()));
    }
    for (model, id) in ids {
        let done = app.wait_task(&id, 240, |t| t["status"] == "completed" || t["status"] == "failed").await;
        assert_eq!(done["status"], "completed", "{model}: {done}");
        if model == "kling-custom-element" {
            assert!(done["result_data"]["element_id"].as_str().unwrap().starts_with("el-"), "{done}");
            continue;
        }
        let bytes = download(&app, done["results"][0].as_str().unwrap()).await;
        let info = vidgate_render::inspect::inspect(&bytes).unwrap();
        let seconds = done["task_info"]["video_duration"].as_f64().unwrap();
        assert_eq!(f64::from(info.video_frames), seconds * 24.0, "{model}: {info:?}");
        assert!(info.width.min(info.height) >= 720, "{model}: {info:?}");
        let (blocks, _) = first_frame_blocks(&bytes);
        assert!(blocks.iter().any(|b| *b > 8.0), "{model}: the first frame is black");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_edit_starts_on_the_input_first_frame_and_keeps_its_sound() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let input = clip("a red lighthouse on a cliff", 720, 3, true);
    let other = clip("a green forest at night", 720, 3, false);
    let video = upload_url(&app, input.clone(), "input.mp4").await;
    let body = json!({"model": "kling-o3-video-edit", "prompt": "make it sepia", "video_url": video});
    let (s, t) = app.create(&body).await;
    assert_eq!(s, 200, "{t}");
    let done = app
        .wait_task(t["id"].as_str().unwrap(), 120, |t| t["status"] != "pending" && t["status"] != "processing")
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let output = download(&app, done["results"][0].as_str().unwrap()).await;
    let (out_blocks, _) = first_frame_blocks(&output);
    let (in_blocks, _) = first_frame_blocks(&input);
    let (other_blocks, _) = first_frame_blocks(&other);
    let same = block_distance(&out_blocks, &in_blocks);
    let different = block_distance(&out_blocks, &other_blocks);
    assert!(same < 4.0, "the edit's first frame is not the input's: {same:.2} levels apart");
    assert!(different > 4.0 * same.max(1.0), "the comparison cannot tell frames apart: {different:.2} vs {same:.2}");
    // keep_original_sound defaults to true: the input's Opus track is copied.
    let out_info = vidgate_render::probe::probe(&mut std::io::Cursor::new(&output)).unwrap();
    let in_info = vidgate_render::probe::probe(&mut std::io::Cursor::new(&input)).unwrap();
    assert_eq!(out_info.audio.map(|a| a.codec), in_info.audio.map(|a| a.codec));
    app.stop().await;
}

/// Creates with workers paused and answers (status, body).
async fn hold(app: &TestApp, body: Value) -> (u16, Value) {
    app.create(&body).await
}

both_backends!(each_billing_rule_holds_and_charges_as_documented, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let image = upload_url(&app, png(640, 360), "a.png").await;
    // 4 s of 720p input video.
    let video = upload_url(&app, clip("a quiet street", 720, 4, false), "street.mp4").await;
    let short = upload_url(&app, clip("a quiet street", 720, 3, false), "short.mp4").await;
    let cases = [
        // Per second by the requested duration: 5 s x 5.4 (the seed's table).
        (json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 5}), 270_000, "per_second"),
        (
            json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 5, "quality": "1080p", "sound": "on"}),
            540_000,
            "per_second",
        ),
        // O3 image to video with its own 1.334 multiplier: 5 s x 7.2036.
        (
            json!({"model": "kling-o3-image-to-video", "prompt": "p", "image_start": image, "quality": "1080p"}),
            360_180,
            "per_second",
        ),
        // Per call.
        (
            json!({"model": "kling-custom-element", "model_params": {"element_name": "e", "element_description": "d",
            "element_image_list": {"frontal_image": image, "refer_images": [{"image_url": image}]}}}),
            10_000,
            "per_call",
        ),
        // By the probed input: 4 s of 720p x 8.1.
        (json!({"model": "kling-o3-video-edit", "video_url": video}), 324_000, "per_second"),
        // Rounded up into the billed range: O1 edit of 3 s is billed 3 x 12; the fast one at least 6 x 10.8.
        (json!({"model": "kling-o1-video-edit", "prompt": "p", "video_urls": [short]}), 360_000, "per_second"),
        (json!({"model": "kling-o1-video-edit-fast", "prompt": "p", "video_urls": [short]}), 648_000, "per_second"),
        // Held on the requested duration, settled on the output: 5 s x 8.1.
        (
            json!({"model": "kling-o3-reference-to-video", "prompt": "p", "video_url": video, "duration": 5}),
            405_000,
            "per_second",
        ),
    ];
    let before = app.remaining(&app.api_key).await;
    let mut held = 0.0;
    for (body, units, rule) in cases {
        let (s, t) = hold(&app, body.clone()).await;
        assert_eq!(s, 200, "{body} -> {t}");
        assert_eq!(t["usage"]["credits_reserved"], units, "{}", body["model"]);
        assert_eq!(t["usage"]["billing_rule"], rule, "{}", body["model"]);
        held += units as f64 / UNITS;
    }
    assert!((before - app.remaining(&app.api_key).await - held).abs() < 1e-9);
    app.stop().await;
});

both_backends!(a_model_billed_by_its_output_is_charged_for_what_was_made, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let video = upload_url(&app, clip("a quiet street", 720, 3, false), "street.mp4").await;
    let body = json!({"model": "kling-o3-reference-to-video", "prompt": "p", "video_url": video, "duration": 4});
    let (s, t) = app.create(&body).await;
    assert_eq!(s, 200, "{t}");
    let done =
        app.wait_task(t["id"].as_str().unwrap(), 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    // The local render makes exactly the 4 s asked: charged what was held.
    assert_eq!(done["usage"]["credits_charged"], done["usage"]["credits_reserved"]);
    assert_eq!(done["usage"]["credits_charged"], 324_000);
    app.stop().await;
});

both_backends!(a_video_url_is_fetched_probed_and_checked_before_anything_is_held, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let good = serve_bytes(clip("a harbour", 720, 3, false), None).await;
    let tiny = serve_bytes(clip("a harbour", 144, 3, false), None).await;
    let noise = serve_bytes(vec![7u8; 4096], None).await;
    let edit = |url: &str| json!({"model": "kling-o3-video-edit", "video_url": format!("{url}/video.mp4")});
    let (s, t) = app.create(&edit(&good.url)).await;
    assert_eq!(s, 200, "a fetched video works: {t}");
    assert_eq!(t["task_info"]["video_duration"], 3);
    let held = t["usage"]["credits_reserved"].as_f64().unwrap() / UNITS;
    let (s, b) = app.create(&edit(&tiny.url)).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("video_url")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("720"), "the rule is named: {b}");
    let (s, b) = app.create(&edit(&noise.url)).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("video_url")), "{b}");
    let (s, b) = app.create(&json!({"model": "kling-o3-video-edit", "video_url": "http://127.0.0.1:1/gone.mp4"})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("video_url")), "{b}");
    assert!((before - app.remaining(&app.api_key).await - held).abs() < 1e-9, "only the good create holds");
    app.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_video_fetch_at_once_is_refused_with_429() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.workers = 0).await else { return };
    let gate = Arc::new(tokio::sync::Notify::new());
    let server = serve_bytes(clip("a harbour", 720, 3, false), Some(gate.clone())).await;
    let body = json!({"model": "kling-o3-video-edit", "video_url": format!("{}/video.mp4", server.url)});
    let app = Arc::new(app);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            tokio::spawn(async move { app.create(&body).await })
        })
        .collect();
    let both_fetching = crate::helpers::eventually(20, || {
        let hits = server.hits.clone();
        async move { hits.load(std::sync::atomic::Ordering::SeqCst) == 2 }
    })
    .await;
    assert!(both_fetching, "the two fetches did not start");
    let (s, b) = app.create(&body).await;
    assert_eq!(
        (s, b["error"]["code"].as_str(), b["error"]["param"].as_str()),
        (429, Some("rate_limit_exceeded"), Some("video_url")),
        "{b}"
    );
    gate.notify_waiters();
    for t in slow {
        let (s, b) = tokio::time::timeout(Duration::from_secs(60), t).await.unwrap().unwrap();
        assert_eq!(s, 200, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_the_local_renderer_cannot_read_is_refused_naming_the_codec() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.workers = 0).await else { return };
    let hevc =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/tests/data/hevc.mp4")).unwrap();
    let url = upload_url(&app, hevc, "hevc.mp4").await;
    let (s, b) = app.create(&json!({"model": "kling-o1-video-edit", "prompt": "p", "video_urls": [url]})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("video_urls[0]")), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("HEVC"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_overrides_from_the_config_file_reach_prices_and_documents() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vidgate.toml");
    std::fs::write(
        &file,
        "[[catalog.models]]\nid = \"kling-v3-text-to-video\"\n[catalog.models.pricing]\nbase_credits = \"6\"\n",
    )
    .unwrap();
    let overrides = vidgate::config::Config::load(Some(&file), |_| None).unwrap().catalog;
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, move |c| {
        c.workers = 0;
        c.catalog = overrides;
    })
    .await
    else {
        return;
    };
    let (s, t) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 5})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["usage"]["credits_reserved"], 300_000, "5 s at the overridden 6 credits/s");
    let (_, models) = app.get("/v1/models").await;
    let v3 = models["data"].as_array().unwrap().iter().find(|m| m["id"] == "kling-v3-text-to-video").unwrap();
    assert!(v3.to_string().contains("60000"), "the list shows the new price: {v3}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evolinks_generic_shape_fills_the_v3_frames_and_sound() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.workers = 0).await else { return };
    let a = data_uri(&png(640, 360), "image/png");
    let body = json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_urls": [a, a], "generate_audio": true,
        "duration": 5, "quality": "720p"});
    let (s, t) = app.create(&body).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["usage"]["credits_reserved"], 405_000, "5 s of 720p with sound");
    let (s, b) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "quality": "480p"})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("quality")), "{b}");
}
