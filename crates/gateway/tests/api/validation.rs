//! Every rule of SPEC 1.1 over HTTP: a bad field is a 400 naming it in
//! `error.param`, and neither a task nor a hold is created.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, data_uri, png};

fn gif() -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend_from_slice(&[0x40, 0x01, 0x40, 0x01, 0, 0, 0]);
    g
}

/// A PNG header claiming 20000 x 20000 pixels: must be refused without decoding.
fn huge_png_header() -> Vec<u8> {
    let mut p = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];
    p.extend_from_slice(&20000u32.to_be_bytes());
    p.extend_from_slice(&20000u32.to_be_bytes());
    p.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    p
}

fn cases() -> Vec<(Value, &'static str)> {
    let img = data_uri(&png(400, 400), "image/png");
    let i2v = |extra: Value| {
        let mut b = json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_start": img.clone()});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let t2v = |extra: Value| {
        let mut b = json!({"model": "kling-v3-text-to-video", "prompt": "p"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    vec![
        (json!([1, 2]), "body"),
        (json!({"prompt": "p"}), "model"),
        (json!({"model": "sora-9"}), "model"),
        (json!({"model": 5}), "model"),
        (i2v(json!({"prompt": "x".repeat(2501)})), "prompt"),
        (i2v(json!({"negative_prompt": "x".repeat(2501)})), "negative_prompt"),
        (i2v(json!({"prompt": 7})), "prompt"),
        (json!({"model": "kling-v3-image-to-video", "prompt": "p"}), "image_start"),
        (i2v(json!({"image_start": "ftp://example.com/a.png"})), "image_start"),
        (i2v(json!({"image_start": data_uri(&gif(), "image/png")})), "image_start"),
        (i2v(json!({"image_start": data_uri(&huge_png_header(), "image/png")})), "image_start"),
        (i2v(json!({"image_start": data_uri(&png(200, 400), "image/png")})), "image_start"),
        (i2v(json!({"image_start": data_uri(&png(1000, 300), "image/png")})), "image_start"),
        (i2v(json!({"image_start": "data:image/png;base64,!!!"})), "image_start"),
        (i2v(json!({"image_end": data_uri(&gif(), "image/png")})), "image_end"),
        // image_end needs image_start: the missing start frame is the field at fault.
        (json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_end": img.clone()}), "image_start"),
        (i2v(json!({"duration": 2})), "duration"),
        (i2v(json!({"duration": 16})), "duration"),
        (i2v(json!({"duration": 5.5})), "duration"),
        (i2v(json!({"duration": "5"})), "duration"),
        (i2v(json!({"quality": "8k"})), "quality"),
        (i2v(json!({"sound": true})), "sound"),
        (i2v(json!({"callback_url": "http://example.com/cb"})), "callback_url"),
        (i2v(json!({"callback_url": format!("https://example.com/{}", "a".repeat(2050))})), "callback_url"),
        (i2v(json!({"callback_url": "https://127.0.0.1/cb"})), "callback_url"),
        (i2v(json!({"callback_url": "https://[::1]/cb"})), "callback_url"),
        (i2v(json!({"callback_url": "https://169.254.169.254/latest"})), "callback_url"),
        (i2v(json!({"callback_url": "https://localhost/cb"})), "callback_url"),
        (i2v(json!({"model_params": {"multi_shot": "yes"}})), "model_params.multi_shot"),
        (i2v(json!({"model_params": {"multi_shot": true}})), "model_params.shot_type"),
        (i2v(json!({"model_params": {"multi_shot": true, "shot_type": "random"}})), "model_params.shot_type"),
        (i2v(json!({"model_params": {"multi_shot": true, "shot_type": "customize"}})), "model_params.multi_prompt"),
        (
            i2v(json!({"duration": 5, "model_params": {"multi_shot": true, "shot_type": "customize",
                "multi_prompt": [{"index": 1, "prompt": "a", "duration": "2"}, {"index": 2, "prompt": "b", "duration": "2"}]}})),
            "model_params.multi_prompt",
        ),
        (
            i2v(json!({"duration": 5, "model_params": {"multi_shot": true, "shot_type": "customize",
                "multi_prompt": [{"index": 1, "prompt": "x".repeat(513), "duration": "5"}]}})),
            "model_params.multi_prompt[0].prompt",
        ),
        (
            i2v(json!({"duration": 6, "model_params": {"multi_shot": true, "shot_type": "customize",
                "multi_prompt": (1..=7).map(|i| json!({"index": i, "prompt": "s", "duration": "1"})).collect::<Vec<_>>()}})),
            "model_params.multi_prompt",
        ),
        (
            i2v(json!({"image_end": img.clone(), "model_params": {"multi_shot": true, "shot_type": "intelligence"}})),
            "image_end",
        ),
        (
            i2v(
                json!({"model_params": {"element_list": [{"element_id": "a"}, {"element_id": "b"}, {"element_id": "c"}, {"element_id": "d"}]}}),
            ),
            "model_params.element_list",
        ),
        (
            i2v(json!({"model_params": {"element_list": [{"element_id": "el-unknown"}]}})),
            "model_params.element_list[0].element_id",
        ),
        (i2v(json!({"model_params": {"watermark_info": {"enabled": "yes"}}})), "model_params.watermark_info.enabled"),
        (json!({"model": "kling-v3-text-to-video"}), "prompt"),
        (t2v(json!({"aspect_ratio": "4:3"})), "aspect_ratio"),
        (t2v(json!({"image_start": img.clone()})), "image_start"),
        (
            json!({"model": "kling-custom-element", "model_params": {"element_description": "d", "element_image_list": {"frontal_image": img.clone(), "refer_images": [{"image_url": img.clone()}]}}}),
            "model_params.element_name",
        ),
        (
            json!({"model": "kling-custom-element", "model_params": {"element_name": "x".repeat(21), "element_description": "d", "element_image_list": {"frontal_image": img.clone(), "refer_images": [{"image_url": img.clone()}]}}}),
            "model_params.element_name",
        ),
        (
            json!({"model": "kling-custom-element", "model_params": {"element_name": "n", "element_description": "x".repeat(101), "element_image_list": {"frontal_image": img.clone(), "refer_images": [{"image_url": img.clone()}]}}}),
            "model_params.element_description",
        ),
        (
            json!({"model": "kling-custom-element", "model_params": {"element_name": "n", "element_description": "d", "reference_type": "video_refer", "element_image_list": {"frontal_image": img.clone(), "refer_images": [{"image_url": img.clone()}]}}}),
            "model_params.reference_type",
        ),
        (
            json!({"model": "kling-custom-element", "model_params": {"element_name": "n", "element_description": "d", "element_image_list": {"frontal_image": img.clone(), "refer_images": []}}}),
            "model_params.element_image_list.refer_images",
        ),
    ]
}

both_backends!(each_bad_field_is_a_400_naming_it_with_nothing_created, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.workers = 0;
        c.allow_private_urls = false;
    })
    .await
    else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let mut failures = Vec::new();
    for (body, param) in cases() {
        let (s, b) = app.create(&body).await;
        let got = b["error"]["param"].as_str().unwrap_or("<none>").to_owned();
        if s != 400
            || got != param
            || b["error"]["code"] != "invalid_request"
            || b["error"]["type"] != "invalid_request_error"
        {
            let shown: String = body.to_string().chars().take(160).collect();
            failures.push(format!("{shown} -> {s} param={got} (wanted {param}) {}", b["error"]["message"]));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
    let (_, list) = app.get("/v1/tasks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    assert_eq!(app.remaining(&app.api_key).await, before);
    assert_eq!(std::fs::read_dir(app.data_dir.path().join("files")).unwrap().count(), 0, "files were left behind");
    app.stop().await;
});

both_backends!(unknown_fields_are_ignored_and_defaults_apply, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (s, t) =
        app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "color": "blue", "seed": 4})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["task_info"]["video_duration"], 5);
    assert_eq!(t["usage"]["credits_reserved"], 270000);
    app.stop().await;
});

both_backends!(a_body_over_the_limit_is_413, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.workers = 0;
        c.max_body_bytes = 64 * 1024;
    })
    .await
    else {
        return;
    };
    let (s, b) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "x".repeat(100_000)})).await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large");
    let (s, b) = app.post("/v1/videos/generations", &json!("not an object")).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("body")));
    let resp = app
        .client
        .post(app.url("/v1/videos/generations"))
        .bearer_auth(&app.api_key)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    app.stop().await;
});

both_backends!(a_key_limited_to_other_models_gets_403, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (account, _) = app.new_account(100.0).await;
    let (_, k) = app
        .admin_post(&format!("/admin/accounts/{account}/keys"), &json!({"allowed_models": ["kling-v3-image-to-video"]}))
        .await;
    let key = k["api_key"].as_str().unwrap();
    let (s, b) = app
        .post_with_key("/v1/videos/generations", &json!({"model": "kling-v3-text-to-video", "prompt": "p"}), key)
        .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["code"], "model_access_denied");
    app.stop().await;
});
