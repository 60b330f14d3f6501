//! The address guard: user-given URLs cannot reach loopback, private, link-local
//! or metadata addresses, by literal, by name, or by redirect.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;
use vidgate::net::{FetchError, GuardedClient};

use crate::both_backends;
use crate::helpers::TestApp;

fn guarded(hosts: &[(&str, &str)]) -> GuardedClient {
    let hosts: HashMap<String, Vec<IpAddr>> =
        hosts.iter().map(|(h, ip)| ((*h).to_owned(), vec![ip.parse().unwrap()])).collect();
    GuardedClient::with_hosts(false, Duration::from_secs(5), hosts).unwrap()
}

#[tokio::test]
async fn literal_private_and_loopback_addresses_are_refused() {
    let client = guarded(&[]);
    for url in [
        "http://127.0.0.1/x.png",
        "https://127.0.0.1/x.png",
        "https://[::1]/x.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.8/x.png",
        "https://192.168.1.1/x.png",
        "https://100.64.0.1/x.png",
        "https://2130706433/x.png",
        "https://0x7f.0.0.1/x.png",
        "https://017700000001/x.png",
        "https://[::ffff:127.0.0.1]/x.png",
        "https://[fd00::1]/x.png",
        "https://[fe80::1]/x.png",
        "https://0.0.0.0/x.png",
    ] {
        let err = client.fetch(url, 1024).await.err();
        assert!(
            matches!(err, Some(FetchError::Forbidden) | Some(FetchError::Scheme)),
            "{url} was not refused: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_refused() {
    let client =
        guarded(&[("intranet.example", "10.1.2.3"), ("meta.example", "169.254.169.254"), ("v6.example", "fd12::1")]);
    for url in ["https://intranet.example/x.png", "https://meta.example/", "https://v6.example/"] {
        let err = client.fetch(url, 1024).await.err();
        assert!(matches!(err, Some(FetchError::Forbidden)), "{url}: {err:?}");
    }
    let err = client.fetch("https://localhost:9/x.png", 1024).await.err();
    assert!(matches!(err, Some(FetchError::Forbidden)), "localhost: {err:?}");
    let err = client.check_resolves_public("https://localhost/cb").await.err();
    assert!(matches!(err, Some(FetchError::Forbidden)), "{err:?}");
}

/// A one-shot HTTP server on loopback answering every request with `response`.
async fn serve_raw(response: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response.as_bytes()).await;
        }
    });
    port
}

#[tokio::test]
async fn redirects_are_never_followed() {
    // Private URLs are allowed here only so the first hop (loopback) can be reached;
    // the redirect to the metadata address must still not be followed.
    let port =
        serve_raw("HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n").await;
    let client = GuardedClient::new(true, Duration::from_secs(5)).unwrap();
    let err = client.fetch(&format!("http://127.0.0.1:{port}/img.png"), 1024).await.err();
    assert!(matches!(err, Some(FetchError::Redirect)), "{err:?}");
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let port = serve_raw("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n").await;
    let client = GuardedClient::new(true, Duration::from_secs(5)).unwrap();
    let err = client.fetch(&format!("http://127.0.0.1:{port}/big"), 1000).await.err();
    assert!(matches!(err, Some(FetchError::TooLarge(1000))), "{err:?}");
}

both_backends!(an_image_url_that_cannot_be_fetched_fails_the_task_with_a_full_refund, |backend| async move {
    // Private URLs are allowed so the fetch reaches loopback, where nothing listens
    // on port 9: the fetch fails in the task's first step.
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let before = app.remaining(&app.api_key).await;
    let (s, task) = app
        .create(&json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_start": "http://127.0.0.1:9/start.png", "duration": 3}))
        .await;
    assert_eq!(s, 200, "{task}");
    let done = app
        .wait_task(task["id"].as_str().unwrap(), 60, |t| t["status"] == "failed" || t["status"] == "completed")
        .await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "image_processing_error", "{done}");
    assert_eq!(done["usage"]["credits_charged"], 0);
    assert_eq!(app.remaining(&app.api_key).await, before);
    app.stop().await;
});

both_backends!(a_fetched_image_of_the_wrong_size_fails_with_dimension_mismatch, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let small = crate::helpers::png(100, 100);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n", small.len());
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(&small).await;
        }
    });
    let before = app.remaining(&app.api_key).await;
    let (s, task) = app
        .create(&json!({"model": "kling-v3-image-to-video", "prompt": "p", "image_start": format!("http://127.0.0.1:{port}/s.png"), "duration": 3}))
        .await;
    assert_eq!(s, 200, "{task}");
    let done = app
        .wait_task(task["id"].as_str().unwrap(), 60, |t| t["status"] == "failed" || t["status"] == "completed")
        .await;
    assert_eq!(done["error"]["code"], "image_dimension_mismatch", "{done}");
    assert_eq!(app.remaining(&app.api_key).await, before);
    app.stop().await;
});
