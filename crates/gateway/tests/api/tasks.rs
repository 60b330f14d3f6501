//! The task lifecycle: create, progress, completion with a real MP4 behind a
//! signed link, listing, cancelling, and ids that never leak across accounts.

use serde_json::{Value, json};
use sqlx::Connection;

use crate::both_backends;
use crate::helpers::{TestApp, data_uri, png};

fn i2v(duration: u32) -> Value {
    json!({
        "model": "kling-v3-image-to-video",
        "prompt": "a slow zoom in over the hills",
        "image_start": data_uri(&png(640, 360), "image/png"),
        "duration": duration,
    })
}

both_backends!(an_image_to_video_task_completes_with_a_playable_mp4_and_is_charged, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (s, task) = app.create(&i2v(3)).await;
    assert_eq!(s, 200, "{task}");
    let id = task["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("task-unified-"), "{id}");
    assert_eq!(task["status"], "pending");
    assert_eq!(task["object"], "video.generation.task");
    assert_eq!(task["type"], "video");
    assert_eq!(task["usage"]["billing_rule"], "per_second");
    assert_eq!(task["usage"]["credits_reserved"], 162000);
    assert_eq!(task["task_info"]["video_duration"], 3);
    assert_eq!(task["task_info"]["can_cancel"], true);
    assert!(task.get("credits_charged").is_none());
    // Held at once.
    assert!((app.remaining(&app.api_key).await - (before - 16.2)).abs() < 1e-9);

    let done = app.wait_task(&id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["usage"]["credits_charged"], 162000);
    assert_eq!(done["task_info"]["can_cancel"], false);
    let url = done["results"][0].as_str().unwrap();
    let resp = app.client.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "video/mp4");
    let bytes = resp.bytes().await.unwrap();
    let info = vidgate_render::inspect::inspect(&bytes).unwrap();
    assert_eq!((info.width, info.height), (1280, 720));
    assert_eq!(info.video_frames, 72);
    assert!(info.moov_before_mdat);
    assert!(!info.has_audio, "sound is off by default");
    assert!((app.remaining(&app.api_key).await - (before - 16.2)).abs() < 1e-9);
    // Ranges work (browsers seek with them).
    let part = app.client.get(url).header("range", "bytes=0-99").send().await.unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(part.bytes().await.unwrap().len(), 100);
    app.stop().await;
});

both_backends!(a_text_to_video_task_follows_its_aspect_ratio_and_sound, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, task) = app
        .create(&json!({"model": "kling-v3-text-to-video", "prompt": "neon city at night", "duration": 3, "aspect_ratio": "9:16", "sound": "on"}))
        .await;
    assert_eq!(s, 200, "{task}");
    let done = app
        .wait_task(task["id"].as_str().unwrap(), 120, |t| t["status"] != "pending" && t["status"] != "processing")
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let bytes = app.client.get(done["results"][0].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    let info = vidgate_render::inspect::inspect(&bytes).unwrap();
    assert_eq!((info.width, info.height), (720, 1280));
    // sound=on: an Opus ambience exactly as long as the video.
    assert_eq!(info.audio_codec.as_deref(), Some("Opus"));
    assert_eq!(info.audio_sample_rate, Some(48_000));
    assert!((info.audio_duration_secs.unwrap() - 3.0).abs() < 0.021, "{info:?}");
    app.stop().await;
});

both_backends!(progress_rises_while_rendering_and_never_falls, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, task) = app
        .create(&json!({"model": "kling-v3-text-to-video", "prompt": "waves", "duration": 15, "quality": "1080p"}))
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let (_, t) = app.get(&format!("/v1/tasks/{id}")).await;
        seen.push(t["progress"].as_u64().unwrap());
        if t["status"] == "completed" || t["status"] == "failed" {
            assert_eq!(t["status"], "completed", "{t}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress fell: {seen:?}");
    let middle: Vec<_> = seen.iter().filter(|p| **p > 5 && **p < 100).collect();
    assert!(middle.len() >= 2, "progress did not rise during rendering: {seen:?}");
    app.stop().await;
});

both_backends!(a_pending_task_can_be_cancelled_and_is_refunded_in_full, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, task) = app.create(&i2v(5)).await;
    let id = task["id"].as_str().unwrap();
    let (s, t) = app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["error"]["code"], "request_cancelled");
    assert_eq!(t["error"]["type"], "task_error");
    assert_eq!(t["usage"]["credits_charged"], 0);
    assert_eq!(app.remaining(&app.api_key).await, before);
    // A second cancel changes nothing and moves no money.
    let (s, b) = app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(app.remaining(&app.api_key).await, before);
    app.stop().await;
});

both_backends!(a_rendering_task_can_be_cancelled_and_is_refunded_in_full, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (_, task) = app
        .create(&json!({"model": "kling-v3-text-to-video", "prompt": "rain", "duration": 15, "quality": "1080p"}))
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    app.wait_task(&id, 60, |t| t["status"] == "processing" && t["progress"].as_u64().unwrap() > 5).await;
    let (s, t) = app.post(&format!("/v1/tasks/{id}/cancel"), &json!({})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["error"]["code"], "request_cancelled");
    assert_eq!(app.remaining(&app.api_key).await, before);
    // The worker notices and stops: its partial file disappears and no result is kept.
    let files = app.data_dir.path().join("files");
    let stopped = crate::helpers::eventually(30, || {
        let files = files.clone();
        async move { std::fs::read_dir(&files).map(|d| d.count() == 0).unwrap_or(true) }
    })
    .await;
    assert!(stopped, "the render went on after the cancel");
    let (_, t) = app.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(t["status"], "failed");
    assert_eq!(app.remaining(&app.api_key).await, before);
    app.stop().await;
});

both_backends!(another_accounts_task_is_not_found_and_bad_ids_are_400, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (_, task) = app.create(&i2v(3)).await;
    let id = task["id"].as_str().unwrap();
    let (_, other) = app.new_account(100.0).await;
    let (s, b) = app.get_with_key(&format!("/v1/tasks/{id}"), &other).await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["error"]["code"], "task_not_found");
    let (s, _) = app.post_with_key(&format!("/v1/tasks/{id}/cancel"), &json!({}), &other).await;
    assert_eq!(s, 404);
    let (s, b) = app.get("/v1/tasks/not-a-task").await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["code"], "invalid_task_id");
    app.stop().await;
});

// On SQLite a page of tasks comes out of the database as one JSON array (see
// `Store::newest_tasks`): each task listed, pending, failed or completed with
// its results, is the very object its own read answers, whatever its text holds.
both_backends!(a_listed_task_is_the_object_its_own_read_answers, |backend| async move {
    let prompt = "a \"quote\", a back\\slash, a new\nline, a tab\t, ünïcødé 視頻 🎬, {\"json\": [1, 2.5]}";
    for workers in [0, 1] {
        let Some(app) = TestApp::spawn_with(backend, |c| c.workers = workers).await else {
            return;
        };
        let mut ids = Vec::new();
        for duration in [3, 5] {
            let (s, t) =
                app.create(&json!({"model": "kling-v3-text-to-video", "prompt": prompt, "duration": duration})).await;
            assert_eq!(s, 200, "{t}");
            ids.push(t["id"].as_str().unwrap().to_owned());
        }
        if workers == 0 {
            let (s, t) = app.post(&format!("/v1/tasks/{}/cancel", ids[0]), &json!({})).await;
            assert_eq!((s, t["status"].as_str()), (200, Some("failed")), "{t}");
        } else {
            for id in &ids {
                let done = app.wait_task(id, 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
                assert_eq!(done["status"], "completed", "{done}");
                assert!(done["results"][0].is_string(), "{done}");
            }
        }
        let (s, page) = app.get("/v1/tasks?limit=100").await;
        assert_eq!(s, 200, "{page}");
        let listed = page["data"].as_array().unwrap();
        assert_eq!(listed.len(), 2, "{page}");
        for (task, id) in listed.iter().zip(ids.iter().rev()) {
            let (s, alone) = app.get(&format!("/v1/tasks/{id}")).await;
            assert_eq!(s, 200, "{alone}");
            assert_eq!(task, &alone);
        }
        // The operator's list shows each task's prompt, read from its stored request.
        let (s, page) = app.admin_get("/admin/tasks?limit=100").await;
        assert_eq!(s, 200, "{page}");
        let listed = page["data"].as_array().unwrap();
        assert_eq!(listed.len(), 2, "{page}");
        for task in listed {
            assert_eq!(task["prompt"], prompt, "{task}");
            assert_eq!(task["provider"].is_string(), workers > 0, "{task}");
        }
        app.stop().await;
    }
});

both_backends!(tasks_are_listed_newest_first_with_a_cursor, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (s, t) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "x", "duration": 3})).await;
        assert_eq!(s, 200);
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let (s, page1) = app.get("/v1/tasks?limit=2").await;
    assert_eq!(s, 200, "{page1}");
    let got: Vec<_> = page1["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, ids[..2]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = app.get(&format!("/v1/tasks?limit=2&cursor={cursor}")).await;
    let got2: Vec<_> = page2["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got2, ids[2..4]);
    let (_, page3) = app.get(&format!("/v1/tasks?limit=2&cursor={}", page2["next_cursor"].as_str().unwrap())).await;
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert!(page3["next_cursor"].is_null());
    let (_, pending) = app.get("/v1/tasks?status=pending").await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 5);
    let (_, done) = app.get("/v1/tasks?status=completed").await;
    assert_eq!(done["data"].as_array().unwrap().len(), 0);
    let (s, b) = app.get("/v1/tasks?status=weird").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("status")));
    let (s, b) = app.get("/v1/tasks?limit=0").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("limit")));
    let (s, b) = app.get("/v1/tasks?cursor=zzz").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("cursor")));
    app.stop().await;
});

/// Tasks arrive in time order, so the indexes that list them newest first must
/// grow at their right edge and stay dense: declared DESC, new entries went in
/// at the left and split pages half empty (49% full, twice the pages, more of
/// them written per commit). Listing still reads newest first (the test above).
#[tokio::test]
async fn the_time_ordered_indexes_stay_dense_under_creates() {
    let Some(app) = TestApp::spawn_with(crate::helpers::Backend::Sqlite, |c| c.workers = 0).await else {
        return;
    };
    let (_, key) = app.new_account(1_000_000.0).await;
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "x", "duration": 3});
    for _ in 0..40 {
        for (s, b, _) in app.burst(50, "/v1/videos/generations", &body, &key).await {
            assert_eq!(s, 200, "{b}");
        }
    }
    let path = app.data_dir.path().join("vidgate.db");
    let mut db = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=ro", path.display())).await.unwrap();
    for index in ["tasks_by_account", "tasks_by_time"] {
        let (pages, fill): (i64, f64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(SUM(pgsize - unused) AS REAL) / SUM(pgsize) FROM dbstat WHERE name = $1",
        )
        .bind(index)
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert!(pages > 10, "{index}: {pages} pages");
        assert!(fill > 0.75, "{index}: pages {:.0}% full over {pages} pages", fill * 100.0);
    }
    app.stop().await;
}

both_backends!(the_catalog_lists_models_with_prices, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, models) = app.get("/v1/models").await;
    assert_eq!(s, 200);
    let ids: Vec<_> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"kling-v3-image-to-video") && ids.contains(&"kling-v3-text-to-video"), "{ids:?}");
    app.stop().await;
});

both_backends!(a_custom_element_is_made_locally_and_used_by_a_render, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let img = data_uri(&png(400, 400), "image/png");
    let before = app.remaining(&app.api_key).await;
    let (s, t) = app
        .create(&json!({"model": "kling-custom-element", "model_params": {
            "element_name": "fox", "element_description": "a red fox",
            "element_image_list": {"frontal_image": img, "refer_images": [{"image_url": img}]}}}))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["usage"]["billing_rule"], "per_call");
    assert_eq!(t["usage"]["credits_reserved"], 10000);
    let done =
        app.wait_task(t["id"].as_str().unwrap(), 60, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    let element = done["result_data"]["element_id"].as_str().unwrap().to_owned();
    assert!((app.remaining(&app.api_key).await - (before - 1.0)).abs() < 1e-9);
    let (s, v) = app
        .create(&json!({"model": "kling-v3-image-to-video", "prompt": "<<<element_1>>> runs", "image_start": img,
            "duration": 3, "model_params": {"element_list": [{"element_id": element}]}}))
        .await;
    assert_eq!(s, 200, "{v}");
    let done =
        app.wait_task(v["id"].as_str().unwrap(), 120, |t| t["status"] == "completed" || t["status"] == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");
    // Another account cannot use it.
    let (_, other) = app.new_account(100.0).await;
    let (s, b) = app
        .post_with_key(
            "/v1/videos/generations",
            &json!({"model": "kling-v3-image-to-video", "image_start": img, "model_params": {"element_list": [{"element_id": element}]}}),
            &other,
        )
        .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("model_params.element_list[0].element_id")));
    app.stop().await;
});
