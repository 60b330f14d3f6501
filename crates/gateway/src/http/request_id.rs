//! `x-request-id`: every request gets one (the client's when it sends a sane
//! one: 1 to 128 visible ASCII characters; otherwise a new one), echoed in the
//! response, carried by the `request` span (so every log line of the request
//! has it) and put in error bodies.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// The longest id taken from a client.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The client's id when it is one we can echo and log safely.
fn sane(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    (!s.is_empty() && s.len() <= MAX_LEN && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

fn generate() -> String {
    format!("req_{}", crate::util::random_alnum(24))
}

pub async fn layer(req: Request, next: Next) -> Response {
    let id = req.headers().get(HEADER).and_then(sane).map_or_else(generate, str::to_owned);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method());
    let handled = async move {
        let started = std::time::Instant::now();
        let resp = next.run(req).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        tracing::debug!(status = resp.status().as_u16(), latency_ms, "request finished");
        resp
    };
    let mut resp = CURRENT.scope(id.clone(), handled).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_taken_from_clients() {
        assert_eq!(sane(&HeaderValue::from_static("abc-123_XYZ.:/")), Some("abc-123_XYZ.:/"));
        assert_eq!(sane(&HeaderValue::from_static("")), None);
        assert_eq!(sane(&HeaderValue::from_static("has space")), None);
        assert_eq!(sane(&HeaderValue::from_str(&"a".repeat(129)).unwrap_or(HeaderValue::from_static(""))), None);
        assert!(generate().starts_with("req_") && generate() != generate());
    }
}
