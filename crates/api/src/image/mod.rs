//! Images checked by content, cheaply and completely: the format from magic bytes,
//! the dimensions from the header (PNG IHDR, JPEG SOFn) so that a renamed GIF or a
//! 20000 x 20000 header is refused before any data is looked at, then the data
//! itself (`png`: every chunk CRC and the whole zlib stream; `jpeg`: every segment,
//! the tables the scans use and their entropy-coded data, EOI), so a truncated or
//! damaged file is refused with `image_processing_error` before a task exists.

mod jpeg;
mod png;
#[cfg(test)]
pub(crate) mod tests;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::task::TaskErrorCode;

/// Largest image SPEC 1.1 accepts: 10 MB (10 MiB).
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
pub const MIN_SIDE: u32 = 300;
/// Upper bounds that keep the data check cheap and safe, whatever a model allows.
pub const MAX_SIDE: u32 = 10_000;
pub const MAX_PIXELS: u64 = 40_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 2] = [Self::Jpeg, Self::Png];

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// What the header says about an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub byte_len: usize,
}

/// The rules one model (or an upload) puts on its images.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRules {
    pub max_bytes: usize,
    /// Both sides at least this many pixels.
    pub min_side: u32,
    /// The longer side over the shorter, in thousandths: 2500 is 2.5:1 (and 1:2.5).
    pub max_aspect_milli: u32,
    pub formats: Vec<ImageFormat>,
}

impl Default for ImageRules {
    /// SPEC 1.1: JPG or PNG, at most 10 MB, sides at least 300 px, aspect within 1:2.5..2.5:1.
    fn default() -> Self {
        Self {
            max_bytes: MAX_IMAGE_BYTES,
            min_side: MIN_SIDE,
            max_aspect_milli: 2500,
            formats: ImageFormat::ALL.to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the image is larger than {} MB", max_bytes / (1024 * 1024))]
    TooLarge { max_bytes: usize },
    #[error("the file is not a JPG or PNG image")]
    UnsupportedFormat,
    #[error("{} images are not accepted here; use {allowed}", format.as_str().to_uppercase())]
    FormatNotAllowed { format: ImageFormat, allowed: String },
    #[error("the image header is damaged or incomplete")]
    Malformed,
    #[error("the image data is damaged or incomplete: {0}")]
    Corrupt(&'static str),
    #[error("the image is {width}x{height}; both sides must be at least {min} px")]
    TooSmall { width: u32, height: u32, min: u32 },
    #[error("the image is {width}x{height}; sides above 10000 px or 40 megapixels are not accepted")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the image is {width}x{height}; the aspect ratio must be between 1:{limit} and {limit}:1")]
    BadAspect { width: u32, height: u32, limit: String },
}

impl ImageError {
    /// The task error code of an image refused after the task exists (a URL image).
    pub fn task_error_code(&self) -> TaskErrorCode {
        match self {
            Self::TooSmall { .. } | Self::BadAspect { .. } => TaskErrorCode::ImageDimensionMismatch,
            _ => TaskErrorCode::ImageProcessingError,
        }
    }
}

const PNG_SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Format from the magic bytes, size from the header alone. Cost is bounded by the
/// header walk (JPEG segments are skipped by their length), never by pixel count.
pub fn sniff_image(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let (format, (width, height)) = if bytes.starts_with(&PNG_SIG) {
        (ImageFormat::Png, png::header_size(bytes)?)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        (ImageFormat::Jpeg, jpeg::header_size(bytes)?)
    } else {
        return Err(ImageError::UnsupportedFormat);
    };
    Ok(ImageInfo { format, width, height, byte_len: bytes.len() })
}

/// The model's rules on what the header says: format, bytes, sides and aspect,
/// then the safety caps. The rules a client can fix come first, so a 20000 x 100
/// strip is reported as a bad aspect rather than as too many pixels.
pub fn check_image_rules(info: &ImageInfo, rules: &ImageRules) -> Result<(), ImageError> {
    let (w, h) = (info.width, info.height);
    if !rules.formats.contains(&info.format) {
        let allowed: Vec<String> = rules.formats.iter().map(|f| f.as_str().to_uppercase()).collect();
        return Err(ImageError::FormatNotAllowed { format: info.format, allowed: allowed.join(" or ") });
    }
    if info.byte_len > rules.max_bytes {
        return Err(ImageError::TooLarge { max_bytes: rules.max_bytes });
    }
    if w < rules.min_side || h < rules.min_side {
        return Err(ImageError::TooSmall { width: w, height: h, min: rules.min_side });
    }
    let (long, short) = (u64::from(w.max(h)), u64::from(w.min(h)));
    if long * 1000 > short * u64::from(rules.max_aspect_milli) {
        return Err(ImageError::BadAspect { width: w, height: h, limit: milli_text(rules.max_aspect_milli) });
    }
    check_caps(w, h)
}

/// The caps that keep a data check bounded (10000 px a side, 40 megapixels).
fn check_caps(w: u32, h: u32) -> Result<(), ImageError> {
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(ImageError::TooManyPixels { width: w, height: h });
    }
    Ok(())
}

/// `2500` as `2.5`.
fn milli_text(milli: u32) -> String {
    let (whole, frac) = (milli / 1000, milli % 1000);
    if frac == 0 { whole.to_string() } else { format!("{whole}.{}", format!("{frac:03}").trim_end_matches('0')) }
}

/// The complete data check of an image whose header `sniff_image` read: PNG chunk
/// CRCs and the full zlib stream (adler32, exact size), or the JPEG segments,
/// tables, scans and EOI. Refuses anything beyond the safety caps before reading.
pub fn verify_image_data(bytes: &[u8], info: &ImageInfo) -> Result<(), ImageError> {
    check_caps(info.width, info.height)?;
    match info.format {
        ImageFormat::Png => png::verify(bytes),
        ImageFormat::Jpeg => jpeg::verify(bytes),
    }
}

/// Everything in order: header, the model's rules, then the data. What the
/// gateway runs on an uploaded or fetched image.
pub fn check_image(bytes: &[u8], rules: &ImageRules) -> Result<ImageInfo, ImageError> {
    if bytes.len() > rules.max_bytes {
        return Err(ImageError::TooLarge { max_bytes: rules.max_bytes });
    }
    let info = sniff_image(bytes)?;
    check_image_rules(&info, rules)?;
    verify_image_data(bytes, &info)?;
    Ok(info)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
