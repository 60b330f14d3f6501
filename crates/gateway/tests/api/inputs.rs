//! Bad input found by a fuzzer and a new user (issue 9.6): corrupt images, a
//! result link given as a frame, query strings and bodies of the wrong shape,
//! ranges read as RFC 9110 says, and the credits answer meaning one thing.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_KEY, Backend, TestApp, data_uri, png, split, upload_file};

/// A PNG with a bad checksum in its first data chunk.
fn bad_crc_png() -> Vec<u8> {
    let mut p = png(400, 400);
    let idat = p.windows(4).position(|w| w == b"IDAT").unwrap();
    let len = u32::from_be_bytes(p[idat - 4..idat].try_into().unwrap()) as usize;
    let crc = idat + 4 + len;
    p[crc] ^= 0xff;
    p
}

/// A JPEG with its header but no picture data (SOI, an APP0, an SOF0, then EOI).
fn jpeg_without_data() -> Vec<u8> {
    let img = image::RgbImage::from_fn(400, 400, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 9]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    let jpeg = out.into_inner();
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    let mut cut = jpeg[..sos].to_vec();
    cut.extend_from_slice(&[0xFF, 0xD9]);
    cut
}

fn corrupt_images() -> Vec<(&'static str, Vec<u8>)> {
    let whole = png(400, 400);
    let header_only = whole[..33].to_vec();
    let truncated = whole[..whole.len() / 2].to_vec();
    vec![
        ("truncated png", truncated),
        ("png header only", header_only),
        ("png with a bad crc", bad_crc_png()),
        ("jpeg without image data", jpeg_without_data()),
    ]
}

both_backends!(corrupt_images_are_refused_at_create_and_upload_with_nothing_held, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    for (what, bytes) in corrupt_images() {
        let mime = if what.starts_with("jpeg") { "image/jpeg" } else { "image/png" };
        let body = json!({"model": "kling-v3-image-to-video", "image_start": data_uri(&bytes, mime)});
        let (s, b) = app.create(&body).await;
        assert_eq!(
            (s, b["error"]["code"].as_str(), b["error"]["param"].as_str()),
            (400, Some("image_processing_error"), Some("image_start")),
            "{what} at create: {b}"
        );
        let (s, b) = upload_file(&app, bytes, "x.png").await;
        assert_eq!((s, b["error"]["code"].as_str()), (400, Some("image_processing_error")), "{what} at upload: {b}");
    }
    assert_eq!(app.remaining(&app.api_key).await, before, "nothing was held");
    let (_, list) = app.get("/v1/tasks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    app.stop().await;
});

/// Makes a completed task and answers its result link.
async fn a_result(app: &TestApp) -> String {
    let (s, t) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 3})).await;
    assert_eq!(s, 200, "{t}");
    let done = app.wait_task(t["id"].as_str().unwrap(), 60, |t| t["status"] == "completed").await;
    done["results"][0].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_link_of_ours_is_not_accepted_as_a_frame() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let video = a_result(&app).await;
    let (s, b) = app.create(&json!({"model": "kling-v3-image-to-video", "image_start": video})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("image_start")), "{b}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_follow_rfc_9110() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    let url = a_result(&app).await;
    let get = |range: &'static str| {
        let (client, url) = (app.client.clone(), url.clone());
        async move { client.get(url).header("range", range).send().await.unwrap() }
    };
    let whole = app.client.get(&url).send().await.unwrap().bytes().await.unwrap();
    let part = get("bytes=0-9").await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 0-9/{}", whole.len()).as_str());
    assert_eq!(part.bytes().await.unwrap(), whole[..10]);
    let tail = get("bytes=-4").await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), whole[whole.len() - 4..]);
    for ignored in ["items=0-5", "bytes=0-1,4-5", "bytes=5-2"] {
        let r = get(ignored).await;
        assert_eq!(r.status(), 200, "{ignored}");
        assert_eq!(r.bytes().await.unwrap().len(), whole.len(), "{ignored}");
    }
    let past = get("bytes=999999999-").await;
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], format!("bytes */{}", whole.len()).as_str());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_strings_that_cannot_be_read_get_the_json_error() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    for path in ["/v1/tasks?limit=1&limit=2", "/files/file-x?exp=1&exp=2&sig=s", "/v1/tasks?status=nope"] {
        let resp = app.client.get(app.url(path)).bearer_auth(&app.api_key).send().await.unwrap();
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let (s, b) = split(resp).await;
        assert_eq!(s, 400, "{path}: {b}");
        assert!(ct.starts_with("application/json") && b["error"]["type"] == "invalid_request_error", "{path}: {b}");
    }
    app.stop().await;
}

both_backends!(admin_bodies_of_the_wrong_shape_are_refused, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let post = |path: &'static str, body: Value| {
        let app = &app;
        async move {
            let resp = app.client.post(app.url(path)).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap();
            split(resp).await
        }
    };
    let (s, b) = post("/admin/accounts", json!([null, null])).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("body")), "{b}");
    let (s, b) = post("/admin/accounts", json!({"credits": "lots"})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("credits")), "{b}");
    let (s, b) = post("/admin/accounts", json!({"credits": 1.23456})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("credits")), "more than 4 decimals: {b}");
    let (s, b) = post("/admin/accounts", json!({"credits": 12.3456, "name": "exact"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["account"]["remaining_credits"], 12.3456, "money is read exactly: {b}");
    let (_, accounts) = app.get_with_key("/admin/accounts", ADMIN_KEY).await;
    assert_eq!(accounts.as_array().unwrap().len(), 2, "no account was made by a refused body");
    app.stop().await;
});

both_backends!(credits_show_held_and_used_alike_for_the_key_and_the_account, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| c.workers = 0).await else {
        return;
    };
    let (s, t) = app.create(&json!({"model": "kling-v3-text-to-video", "prompt": "p", "duration": 5})).await;
    assert_eq!(s, 200, "{t}");
    assert!(t["task_info"]["estimated_time"].as_u64().unwrap() < 30, "the local renderer is quick: {t}");
    let (_, c) = app.get("/v1/credits").await;
    for who in ["token", "user"] {
        assert_eq!(c["data"][who]["held_credits"], 27.0, "{who}: {c}");
        assert_eq!(c["data"][who]["used_credits"], 27.0, "{who}: used counts what is held: {c}");
    }
    assert_eq!(c["data"]["token"]["remaining_credits"], c["data"]["user"]["remaining_credits"]);
    app.stop().await;
});
