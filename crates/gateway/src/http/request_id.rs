//! `x-request-id`: every request gets one (the client's when it sends a sane
//! one: 1 to 128 visible ASCII characters; otherwise a new one), echoed in the
//! response, carried by the `request` span (so every log line of the request
//! has it) and put in error bodies. The layer that does it is `observe`.

use std::future::Future;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use tokio::task::futures::TaskLocalFuture;

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id taken from a client.
const MAX_LEN: usize = 128;

tokio::task_local! {
    /// Kept as the header value it is echoed as: it is set once per request
    /// and read only for error bodies, so the text is made only then.
    static CURRENT: HeaderValue;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|v| v.to_str().ok().map(str::to_owned)).ok().flatten()
}

/// The client's id when it is one we can echo and log safely.
fn sane(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty() && b.len() <= MAX_LEN && b.iter().all(u8::is_ascii_graphic)
}

thread_local! {
    /// Ids need to be unique, not secret: a fast generator per thread, seeded
    /// from the OS, is as unique as the thread RNG and cheaper.
    static RNG: std::cell::RefCell<SmallRng> = std::cell::RefCell::new(SmallRng::from_entropy());
}

/// `req_` and 24 characters of 18 random bytes (URL-safe base64: cheaper to
/// make than drawing 24 letters one by one, and as unique).
fn generate() -> HeaderValue {
    use base64::Engine as _;
    let mut bytes = [0u8; 18];
    RNG.with(|rng| rng.borrow_mut().fill_bytes(&mut bytes));
    let mut id = [0u8; 28];
    id[..4].copy_from_slice(b"req_");
    let written = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(bytes, &mut id[4..]);
    // 18 bytes are exactly 24 characters, all letters, digits, `-` or `_`:
    // the slice fits and is always a valid header value.
    debug_assert_eq!(written.ok(), Some(24));
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("req"))
}

/// The request's id as its header value: the client's when sane, else a new one.
pub fn take_or_make(req: &Request) -> HeaderValue {
    match req.headers().get(&HEADER) {
        Some(v) if sane(v) => v.clone(),
        _ => generate(),
    }
}

/// The id as text for log fields (ids are visible ASCII, so never empty).
pub fn text(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or_default()
}

/// Runs `fut` with `id` as the current request's id; the future gives the id
/// back once done (`TaskLocalFuture::take_value`).
pub fn scope<F: Future>(id: HeaderValue, fut: F) -> TaskLocalFuture<HeaderValue, F> {
    CURRENT.scope(id, fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_taken_from_clients() {
        assert!(sane(&HeaderValue::from_static("abc-123_XYZ.:/")));
        assert!(!sane(&HeaderValue::from_static("")));
        assert!(!sane(&HeaderValue::from_static("has space")));
        assert!(sane(&HeaderValue::from_str(&"a".repeat(128)).unwrap_or(HeaderValue::from_static(""))));
        assert!(!sane(&HeaderValue::from_str(&"a".repeat(129)).unwrap_or(HeaderValue::from_static(""))));
        let id = generate();
        let text = text(&id);
        assert!(text.starts_with("req_") && text.len() == 28, "{text}");
        assert!(text[4..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
        assert_ne!(generate(), generate());
    }
}
