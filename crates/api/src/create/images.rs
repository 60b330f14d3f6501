//! URL and image fields: address rules, `data:` URIs decoded and checked by content.

use base64::Engine;
use serde_json::Value;

use super::*;
use crate::addr::{check_user_url, is_file_link};

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

/// An image field: a checked `data:` URI, or a URL whose shape and literal address
/// are checked here (its content is checked when the task fetches it).
pub fn parse_image(v: &Value, param: &str, opts: &ParseOptions) -> Result<ImageSource, FieldError> {
    let s = v.as_str().ok_or_else(|| err(param, "The image must be a URL or a data: URI string."))?;
    if opts.trust_file_links && s.len() <= MAX_URL_CHARS && is_file_link(s) {
        return Ok(ImageSource::Url(s.to_owned()));
    }
    if let Some(rest) = s.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| err(param, "The data: URI is malformed."))?;
        let mime = meta.strip_suffix(";base64").ok_or_else(|| err(param, "The data: URI must be base64 encoded."))?;
        if !matches!(mime.to_ascii_lowercase().as_str(), "image/png" | "image/jpeg" | "image/jpg") {
            return Err(err(param, "Only image/png and image/jpeg data: URIs are accepted."));
        }
        // Bound the work before decoding: base64 is 4 characters per 3 bytes.
        if data.len() / 4 * 3 > MAX_IMAGE_BYTES + 3 {
            return Err(err(param, "The image is larger than 10 MB."));
        }
        let bytes = LENIENT_B64.decode(data.trim()).map_err(|_| err(param, "The data: URI is not valid base64."))?;
        let info = check_image(&bytes, &ImageRules::default())
            .map_err(|e| err(param, format!("The image is not usable: {e}.")))?;
        return Ok(ImageSource::Inline { bytes, info });
    }
    if s.chars().count() > MAX_URL_CHARS {
        return Err(err(param, "The image URL is limited to 2048 characters."));
    }
    check_url(s, param, opts)?;
    Ok(ImageSource::Url(s.to_owned()))
}
