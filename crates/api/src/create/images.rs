//! Media and URL fields: the shared user-URL rule, `data:` image URIs decoded and
//! checked completely against the model's image rules, and video URLs (URLs only:
//! the gateway fetches and probes them).

use base64::Engine;
use serde_json::Value;

use super::fields::err;
use super::{MAX_URL_CHARS, MediaSource, ParseOptions};
use crate::addr::{check_user_url, is_file_link};
use crate::error::{ErrorCode, FieldError};
use crate::image::{ImageError, ImageRules, check_image};

/// The shared user-URL rule (`addr::check_user_url`), naming the field.
pub(super) fn check_url(raw: &str, param: &str, opts: &ParseOptions) -> Result<url::Url, FieldError> {
    check_user_url(raw, opts.allow_private_urls).map_err(|e| err(param, e.to_string()))
}

/// Standard alphabet; padding optional, as browsers and SDKs differ.
const LENIENT_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// A URL a medium may come from: one of our own file links (when trusted), or a
/// URL of at most 2048 characters that passes the address rule.
fn media_url(s: &str, param: &str, opts: &ParseOptions, what: &str) -> Result<MediaSource, FieldError> {
    if s.chars().count() > MAX_URL_CHARS {
        return Err(err(param, format!("The {what} URL is limited to 2048 characters.")));
    }
    if !(opts.trust_file_links && is_file_link(s)) {
        check_url(s, param, opts)?;
    }
    Ok(MediaSource::Url(s.to_owned()))
}

/// An image field: a `data:` URI decoded and checked completely (format, size,
/// sides, aspect, data) against `rules`, or a URL whose shape and literal address
/// are checked here (its content is checked when the gateway fetches it).
pub(super) fn parse_image(
    v: &Value,
    param: &str,
    rules: &ImageRules,
    opts: &ParseOptions,
) -> Result<MediaSource, FieldError> {
    let s = v.as_str().ok_or_else(|| err(param, "The image must be a URL or a data: URI string."))?;
    let Some(rest) = s.strip_prefix("data:") else {
        return media_url(s, param, opts, "image");
    };
    let (meta, data) = rest.split_once(',').ok_or_else(|| err(param, "The data: URI is malformed."))?;
    let mime = meta.strip_suffix(";base64").ok_or_else(|| err(param, "The data: URI must be base64 encoded."))?;
    if !matches!(mime.to_ascii_lowercase().as_str(), "image/png" | "image/jpeg" | "image/jpg") {
        return Err(err(param, "Only image/png and image/jpeg data: URIs are accepted."));
    }
    // Bound the work before decoding: base64 is 4 characters per 3 bytes.
    let limit_mb = rules.max_bytes / (1024 * 1024);
    if data.len() / 4 * 3 > rules.max_bytes + 3 {
        return Err(err(param, format!("The image is larger than {limit_mb} MB.")));
    }
    let bytes = LENIENT_B64.decode(data.trim()).map_err(|_| err(param, "The data: URI is not valid base64."))?;
    let info = check_image(&bytes, rules).map_err(|e| {
        let unreadable = matches!(e, ImageError::Malformed | ImageError::Corrupt(_));
        let code = if unreadable { ErrorCode::ImageProcessingError } else { ErrorCode::InvalidRequest };
        err(param, format!("The image is not usable: {e}.")).with_code(code)
    })?;
    Ok(MediaSource::Inline { bytes, info })
}

/// A video field: a URL only (our own file links included); the gateway fetches
/// it, streams it to storage and probes it against the model's limits.
pub(super) fn parse_video_url(v: &Value, param: &str, opts: &ParseOptions) -> Result<MediaSource, FieldError> {
    let s = v.as_str().ok_or_else(|| err(param, "The video must be a URL string."))?;
    if s.starts_with("data:") {
        return Err(err(param, "Videos are taken by URL only: upload the file to /v1/files and send its link."));
    }
    media_url(s, param, opts, "video")
}
