//! The sim over real loopback HTTP: each protocol's documented shapes (bodies copied from the
//! public docs where the docs give them), the fault knobs, and taking a provider down and back.
//! A tiny hyper client keeps this free of an HTTP client crate.

#![expect(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

mod evolink;
mod fal;
mod faults;
mod kling;
mod replicate;

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use vidgate_sim::{SimConfig, SimHandle};

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body));
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request; `Err` when the connection fails.
pub async fn try_send(method: &str, url: &str, auth: Option<&str>, body: Option<&[u8]>) -> std::io::Result<Answer> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".to_owned()));
    let stream = tokio::net::TcpStream::connect(host).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("host", host);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body.unwrap_or(b"")))).map_err(std::io::Error::other)?;
    let resp = sender.send_request(req).await.map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
    Ok(Answer { status, headers, body })
}

pub async fn send(method: &str, url: &str, auth: Option<&str>, body: Option<&Value>) -> Answer {
    let bytes = body.map(|b| b.to_string().into_bytes());
    try_send(method, url, auth, bytes.as_deref()).await.unwrap()
}

pub async fn get(url: &str, auth: Option<&str>) -> Answer {
    send("GET", url, auth, None).await
}

pub async fn post(url: &str, auth: Option<&str>, body: &Value) -> Answer {
    send("POST", url, auth, Some(body)).await
}

pub async fn sim(config: SimConfig) -> SimHandle {
    vidgate_sim::spawn(config).await.unwrap()
}

/// Polls `url` until `done` holds for the JSON answer, at most 50 times.
pub async fn poll_until(url: &str, auth: Option<&str>, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        let a = get(url, auth).await;
        let v = a.json();
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{url} never got there");
}
