//! The HTTP server under abuse: a flood of idle and half-sent connections does
//! not starve `/healthz` or the API, slow headers and idle connections are
//! closed by their timeouts, a slow body that keeps moving is served while a
//! stalled one is refused, and a shutdown lets the request in flight finish.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, eventually};

fn addr(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or the deadline passes);
/// answers what was read and whether the close came.
async fn read_to_close(stream: &mut TcpStream, secs: u64) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(secs), stream.read_to_end(&mut out)).await.is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Whether the server has closed `stream`, asked of the kernel without waiting
/// (anything the server sent first is read and dropped).
fn is_closed(stream: &TcpStream) -> bool {
    use rustix::net::{RecvFlags, recv};
    let mut buf = [0u8; 512];
    loop {
        match recv(stream, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return true,
            Ok(_) => continue,
            Err(e) if e == rustix::io::Errno::AGAIN => return false,
            Err(_) => return true,
        }
    }
}

const FLOOD: usize = 10_000;
const CAP: usize = 512;

/// SQLite only: the flood is the transport's business, not the database's, and
/// two floods at once would take 20000 descriptors in this one test process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_and_half_sent_connections_does_not_starve_the_api() {
    // This process holds both ends of every connection.
    let limit = vidgate::server::raise_fd_limit();
    assert!(limit.is_none_or(|l| l >= (FLOOD + CAP + 1024) as u64), "the open-file limit is too low: {limit:?}");
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.max_connections = CAP;
        // Long timeouts: only the cap keeps the server answering here.
        c.http_header_timeout_ms = Duration::from_secs(300);
        c.http_idle_timeout_ms = Duration::from_secs(300);
    })
    .await
    else {
        return;
    };
    let target = addr(&app);
    let mut flood = Vec::with_capacity(FLOOD);
    for batch in 0..FLOOD / 250 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..250 {
            let target = target.clone();
            set.spawn(async move {
                let mut s = TcpStream::connect(target).await.expect("connect");
                if (batch * 250 + i) % 2 == 0 {
                    // Half-sent headers: the request never completes.
                    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.expect("write");
                }
                s
            });
        }
        while let Some(s) = set.join_next().await {
            flood.push(s.expect("join"));
        }
    }
    assert_eq!(flood.len(), FLOOD);
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap();
    let answered = eventually(20, || async {
        let health = client.get(app.url("/healthz")).send().await.map(|r| r.status().as_u16());
        let credits =
            client.get(app.url("/v1/credits")).bearer_auth(&app.api_key).send().await.map(|r| r.status().as_u16());
        matches!((health, credits), (Ok(200), Ok(200)))
    })
    .await;
    assert!(answered, "the API did not answer under a flood of {FLOOD} idle connections");
    // The cap holds: the oldest idle connections were closed to make room. (The
    // client cannot tell: a connect the kernel's full backlog dropped still
    // looks open from this side, so the server's own counts are read.)
    let metric = |text: &str, name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(-1.0)
    };
    let text = client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let (open, accepted, evicted) = (
        metric(&text, "vidgate_http_connections_open"),
        metric(&text, "vidgate_http_connections_accepted_total"),
        metric(&text, "vidgate_http_connections_evicted_total"),
    );
    assert!(open > 0.0 && open <= CAP as f64, "{open} connections open: {text}");
    assert!(accepted >= (FLOOD / 2) as f64, "the flood never reached the server: {accepted} accepted");
    assert!(evicted >= accepted - CAP as f64 - 10.0, "{evicted} evicted of {accepted}");
    // Connections the server closed are closed for the client too.
    let closed = flood.iter().filter(|s| is_closed(s)).count();
    assert!(closed as f64 >= evicted - 10.0, "{closed} closed, {evicted} evicted");
    drop(flood);
    app.stop().await;
}

both_backends!(slow_headers_and_idle_connections_are_closed_by_their_timeouts, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.http_header_timeout_ms = Duration::from_millis(400);
        c.http_idle_timeout_ms = Duration::from_millis(1500);
    })
    .await
    else {
        return;
    };
    let opened = Instant::now();
    let quiet = TcpStream::connect(addr(&app)).await.unwrap();
    let mut half = TcpStream::connect(addr(&app)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, closed) = read_to_close(&mut half, 10).await;
    assert!(closed, "half-sent headers were never timed out");
    assert!(opened.elapsed() >= Duration::from_millis(400), "closed before the header timeout");
    assert!(!is_closed(&quiet), "a connection that sent nothing has the longer idle timeout");
    let mut quiet = quiet;
    let (_, closed) = read_to_close(&mut quiet, 10).await;
    assert!(closed, "an idle connection was never closed");
    assert!(opened.elapsed() >= Duration::from_millis(1500), "closed before the idle timeout");
    // A connection that keeps asking is served past both timeouts.
    let mut keep = TcpStream::connect(addr(&app)).await.unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2000) {
        keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), keep.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "keep-alive request failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
});

/// Sends `body` in `pieces` with `gap` between them after the headers.
async fn paced_post(app: &TestApp, body: &[u8], pieces: usize, gap: Duration, stop_after: Option<usize>) -> String {
    let mut s = TcpStream::connect(addr(app)).await.unwrap();
    let head = format!(
        "POST /v1/videos/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.api_key,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for (i, piece) in body.chunks(body.len().div_ceil(pieces)).enumerate() {
        if stop_after == Some(i) {
            break;
        }
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(gap).await;
    }
    let (text, closed) = read_to_close(&mut s, 10).await;
    assert!(closed || !text.is_empty(), "no answer");
    text
}

both_backends!(a_slow_body_that_keeps_moving_is_served_and_a_stalled_one_refused, |backend| async move {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.http_body_timeout_secs = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    // 2.4 s in all, never more than 0.3 s between pieces: longer than the
    // body timeout, yet always moving.
    let mut body = json!({"model": "kling-v3-text-to-video", "prompt": "a slow upload", "duration": 5}).to_string();
    body.push_str(&" ".repeat(400));
    let started = Instant::now();
    let text = paced_post(&app, body.as_bytes(), 8, Duration::from_millis(300), None).await;
    assert!(started.elapsed() > Duration::from_secs(1));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The same body stopping halfway is refused in the error format.
    let text = paced_post(&app, body.as_bytes(), 8, Duration::from_millis(10), Some(4)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("\"param\":\"body\""), "{text}");
    app.stop().await;
});

both_backends!(a_request_in_flight_finishes_during_a_graceful_shutdown, |backend| async move {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let target = addr(&app);
    let body = json!({"model": "kling-v3-text-to-video", "prompt": "in flight at shutdown", "duration": 5}).to_string();
    let mut s = TcpStream::connect(&target).await.unwrap();
    let head = format!(
        "POST /v1/videos/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.api_key,
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    // In flight: its headers were read and the handler waits for the rest.
    let state = app.state.clone();
    let reading = eventually(10, || {
        let n = state.connections.in_flight.load(std::sync::atomic::Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    assert!(reading, "the request never reached its handler");
    let stopping = tokio::spawn(app.stop());
    // Shutdown has begun once the listener is gone.
    let refused = eventually(10, || {
        let target = target.clone();
        async move { TcpStream::connect(target).await.is_err() }
    })
    .await;
    assert!(refused, "the server kept accepting connections after the shutdown began");
    s.write_all(rest).await.unwrap();
    let (text, closed) = read_to_close(&mut s, 10).await;
    assert!(closed, "the connection was not closed after its response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"task_id\"") || text.contains("\"id\""), "{text}");
    tokio::time::timeout(Duration::from_secs(20), stopping).await.unwrap().unwrap();
});
