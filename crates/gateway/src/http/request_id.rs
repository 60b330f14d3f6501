//! `x-request-id`: every request gets one (the client's when it sends a sane
//! one: 1 to 128 visible ASCII characters; otherwise a new one), echoed in the
//! response, carried by the `request` span (so every log line of the request
//! has it) and put in error bodies. The layer that does it is `observe`.

use std::future::Future;

use axum::extract::Request;
use axum::http::HeaderValue;

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

/// `req_` and 24 characters of 18 random bytes (URL-safe base64: cheaper to
/// make than drawing 24 letters one by one, and as unique).
fn generate() -> String {
    use base64::Engine as _;
    let bytes: [u8; 18] = rand::random();
    let mut id = String::with_capacity(28);
    id.push_str("req_");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut id);
    id
}

/// The request's id and its header value: the client's when sane, else a new one.
pub fn take_or_make(req: &Request) -> (String, HeaderValue) {
    match req.headers().get(HEADER) {
        Some(v) if let Some(s) = sane(v) => (s.to_owned(), v.clone()),
        _ => {
            let id = generate();
            // Letters, digits, `-` and `_` only: always a valid header value.
            let header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("req"));
            (id, header)
        }
    }
}

/// Runs `f` with `id` as the current request's id.
pub fn sync_scope<R>(id: String, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

/// Runs `fut` with `id` as the current request's id.
pub async fn scope<F: Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
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
