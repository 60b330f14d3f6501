//! Uploads usable as frames, signed links that refuse tampering and expiry, and
//! the janitor that deletes expired files.

use std::time::Duration;

use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, eventually, png, split};

async fn upload(app: &TestApp, bytes: Vec<u8>, name: &str) -> (u16, serde_json::Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
    let form = reqwest::multipart::Form::new().part("file", part);
    let resp = app.client.post(app.url("/v1/files")).bearer_auth(&app.api_key).multipart(form).send().await.unwrap();
    split(resp).await
}

both_backends!(an_uploaded_image_works_as_the_start_frame, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.allow_private_urls = false).await else {
        return;
    };
    let (s, file) = upload(&app, png(500, 400), "start.png").await;
    assert_eq!(s, 200, "{file}");
    let url = file["url"].as_str().unwrap();
    assert!(file["expires_at"].as_i64().unwrap() > 0);
    // Our own link is read from storage: the address guard does not stand in the way.
    let (s, task) = app
        .create(&json!({"model": "kling-v3-image-to-video", "prompt": "pan left", "image_start": url, "duration": 3}))
        .await;
    assert_eq!(s, 200, "{task}");
    let done = app
        .wait_task(task["id"].as_str().unwrap(), 120, |t| t["status"] == "completed" || t["status"] == "failed")
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let bytes = app.client.get(done["results"][0].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    let info = vidgate_render::inspect::inspect(&bytes).unwrap();
    assert_eq!((info.width, info.height), (900, 720));
    app.stop().await;
});

both_backends!(uploads_are_checked_by_content, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (s, b) = upload(&app, b"GIF89a\x40\x01\x40\x01\0\0\0".to_vec(), "renamed.png").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("file")), "{b}");
    let (s, b) = upload(&app, png(100, 100), "small.png").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("file")), "{b}");
    let (s, b) = upload(&app, vec![0u8; 11 * 1024 * 1024], "noise.mp4").await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("file")), "neither an image nor a video: {b}");
    // Images are taken up to the largest any model allows (50 MB).
    let mut big = png(400, 400);
    big.resize(50 * 1024 * 1024 + 1, 0);
    let (s, b) = upload(&app, big, "big.png").await;
    assert_eq!(s, 413, "{b}");
    let mut truncated = png(400, 400);
    truncated.truncate(truncated.len() / 2);
    let (s, b) = upload(&app, truncated, "cut.png").await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("image_processing_error")), "{b}");
    app.stop().await;
});

both_backends!(a_tampered_or_expired_link_is_refused, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.link_ttl_secs = Duration::from_secs(2)).await else {
        return;
    };
    let (_, file) = upload(&app, png(400, 400), "a.png").await;
    let url = file["url"].as_str().unwrap().to_owned();
    assert_eq!(app.client.get(&url).send().await.unwrap().status().as_u16(), 200);
    let tampered = url.replace("sig=", "sig=A");
    assert_eq!(app.client.get(&tampered).send().await.unwrap().status().as_u16(), 404);
    let exp = file["expires_at"].as_i64().unwrap();
    let longer = url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600));
    assert_eq!(app.client.get(&longer).send().await.unwrap().status().as_u16(), 404);
    let expired = eventually(10, || {
        let url = url.clone();
        let client = app.client.clone();
        async move { client.get(&url).send().await.unwrap().status().as_u16() == 404 }
    })
    .await;
    assert!(expired, "the link still works after it expired");
    app.stop().await;
});

both_backends!(the_janitor_deletes_expired_files, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.link_ttl_secs = Duration::from_secs(1);
        c.janitor_interval_secs = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let (_, file) = upload(&app, png(400, 400), "a.png").await;
    let id = file["id"].as_str().unwrap().to_owned();
    let path = app.data_dir.path().join("files").join(&id);
    assert!(path.exists());
    // The janitor removes the bytes, then the row: wait for both.
    let gone = eventually(15, || {
        let (path, app, id) = (path.clone(), &app, id.clone());
        async move {
            !path.exists() && app.state.store.get_file(&vidgate::ids::FileId::from_raw(&id)).await.unwrap().is_none()
        }
    })
    .await;
    assert!(gone, "the expired file was not deleted");
    app.stop().await;
});
