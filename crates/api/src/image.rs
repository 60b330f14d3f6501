//! Images checked by content: format from magic bytes, dimensions from the header
//! alone (PNG IHDR, JPEG SOFn), so a renamed GIF or a 20000 x 20000 header is
//! refused before any pixel is decoded.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::task::TaskErrorCode;

/// Largest accepted image: 10 MB.
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
pub const MIN_SIDE: u32 = 300;
/// Upper bounds that keep decoding cheap and safe.
pub const MAX_SIDE: u32 = 10_000;
pub const MAX_PIXELS: u64 = 40_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
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
}

/// What the header says about an image; nothing here required decoding pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub byte_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the image is larger than 10 MB")]
    TooLarge,
    #[error("the file is not a JPG or PNG image")]
    UnsupportedFormat,
    #[error("the image header is damaged or incomplete")]
    Malformed,
    #[error("the image is {width}x{height}; both sides must be at least 300 px")]
    TooSmall { width: u32, height: u32 },
    #[error("the image is {width}x{height}; sides above 10000 px or 40 megapixels are not accepted")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the image is {width}x{height}; the aspect ratio must be between 1:2.5 and 2.5:1")]
    BadAspect { width: u32, height: u32 },
}

impl ImageError {
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
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge);
    }
    if bytes.starts_with(&PNG_SIG) {
        let (width, height) = png_size(bytes)?;
        return Ok(ImageInfo { format: ImageFormat::Png, width, height, byte_len: bytes.len() });
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (width, height) = jpeg_size(bytes)?;
        return Ok(ImageInfo { format: ImageFormat::Jpeg, width, height, byte_len: bytes.len() });
    }
    Err(ImageError::UnsupportedFormat)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn png_size(b: &[u8]) -> Result<(u32, u32), ImageError> {
    // The first chunk must be IHDR: length 13, then width and height.
    if b.get(12..16) != Some(b"IHDR") || be_u32(b, 8) != Some(13) {
        return Err(ImageError::Malformed);
    }
    let w = be_u32(b, 16).ok_or(ImageError::Malformed)?;
    let h = be_u32(b, 20).ok_or(ImageError::Malformed)?;
    if w == 0 || h == 0 {
        return Err(ImageError::Malformed);
    }
    Ok((w, h))
}

fn jpeg_size(b: &[u8]) -> Result<(u32, u32), ImageError> {
    let mut i = 2;
    loop {
        // Skip to the next marker, allowing fill bytes (0xFF repeated).
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            return Err(ImageError::Malformed);
        }
        let marker = *b.get(i + 1).ok_or(ImageError::Malformed)?;
        i += 2;
        match marker {
            // Standalone markers: TEM, RSTn, SOI.
            0x01 | 0xD0..=0xD8 => continue,
            // EOI or SOS before any frame header, or a stuffed 0x00 out of place.
            0x00 | 0xD9 | 0xDA => return Err(ImageError::Malformed),
            // SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC).
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                if be_u16(b, i).is_none_or(|len| len < 8) {
                    return Err(ImageError::Malformed);
                }
                let h = be_u16(b, i + 3).ok_or(ImageError::Malformed)?;
                let w = be_u16(b, i + 5).ok_or(ImageError::Malformed)?;
                if w == 0 || h == 0 {
                    return Err(ImageError::Malformed);
                }
                return Ok((u32::from(w), u32::from(h)));
            }
            _ => {
                let len = be_u16(b, i).ok_or(ImageError::Malformed)? as usize;
                if len < 2 {
                    return Err(ImageError::Malformed);
                }
                i += len;
            }
        }
    }
}

/// SPEC 1.1's rules: <= 10 MB, both sides >= 300 px, aspect within 1:2.5..2.5:1,
/// plus caps that keep decoding safe.
pub fn check_image_rules(info: &ImageInfo) -> Result<(), ImageError> {
    let (w, h) = (info.width, info.height);
    if info.byte_len > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge);
    }
    // The SPEC's own rules first, so a 20000 x 100 strip is reported as a bad
    // aspect (the client's fix) rather than as too many pixels.
    if w < MIN_SIDE || h < MIN_SIDE {
        return Err(ImageError::TooSmall { width: w, height: h });
    }
    let (long, short) = (u64::from(w.max(h)), u64::from(w.min(h)));
    if 2 * long > 5 * short {
        return Err(ImageError::BadAspect { width: w, height: h });
    }
    if w > MAX_SIDE || h > MAX_SIDE || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(ImageError::TooManyPixels { width: w, height: h });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut p = PNG_SIG.to_vec();
        p.extend_from_slice(&13u32.to_be_bytes());
        p.extend_from_slice(b"IHDR");
        p.extend_from_slice(&w.to_be_bytes());
        p.extend_from_slice(&h.to_be_bytes());
        p.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        p
    }

    pub fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        j.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        j.extend_from_slice(&[0xFF, 0xFF, 0xC0, 0x00, 0x11, 0x08]);
        j.extend_from_slice(&h.to_be_bytes());
        j.extend_from_slice(&w.to_be_bytes());
        j.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        j
    }

    #[test]
    fn reads_png_and_jpeg_sizes_from_headers() {
        assert_eq!(sniff_image(&png_header(640, 480)).map(|i| (i.width, i.height)), Ok((640, 480)));
        let j = sniff_image(&jpeg_header(1920, 1080));
        assert_eq!(j.map(|i| (i.format, i.width, i.height)), Ok((ImageFormat::Jpeg, 1920, 1080)));
    }

    /// SOI, fill bytes, an APP1 and a COM segment, a stray RST marker, DQT, then SOF2.
    fn busy_jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x08]);
        j.extend_from_slice(b"Exif\0\0");
        j.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFE, 0x00, 0x05, b'h', b'i', b'!']);
        j.extend_from_slice(&[0xFF, 0xD3]);
        j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x04, 0x00, 0x01]);
        j.extend_from_slice(&[0xFF, 0xC2, 0x00, 0x11, 0x08]);
        j.extend_from_slice(&h.to_be_bytes());
        j.extend_from_slice(&w.to_be_bytes());
        j.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        j
    }

    #[test]
    fn walks_jpeg_segments_to_the_frame_header() {
        let j = sniff_image(&busy_jpeg(1024, 768));
        assert_eq!(j.map(|i| (i.format, i.width, i.height)), Ok((ImageFormat::Jpeg, 1024, 768)));
        // DHT (C4) is not a frame header and must be skipped, not read as one.
        let mut d = vec![0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x04, 0x12, 0x34];
        d.extend_from_slice(&jpeg_header(500, 400)[2..]);
        assert_eq!(sniff_image(&d).map(|i| (i.width, i.height)), Ok((500, 400)));
    }

    #[test]
    fn jpeg_without_a_frame_header_is_malformed() {
        // Scan data before any SOF.
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]), Err(ImageError::Malformed));
        // A segment length running off the end.
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xF0, 0x00]), Err(ImageError::Malformed));
        // A zero-length segment cannot advance the walk.
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00]), Err(ImageError::Malformed));
        // Zero width.
        assert_eq!(sniff_image(&jpeg_header(0, 400)), Err(ImageError::Malformed));
    }

    #[test]
    fn format_is_read_from_magic_bytes_not_names() {
        // A GIF87a header (what a renamed .png would carry) is refused.
        let mut gif = b"GIF87a".to_vec();
        gif.extend_from_slice(&[0x20, 0x03, 0x20, 0x03, 0, 0, 0]);
        assert_eq!(sniff_image(&gif), Err(ImageError::UnsupportedFormat));
        assert_eq!(sniff_image(b""), Err(ImageError::UnsupportedFormat));
        // PNG whose first chunk is not IHDR.
        let mut p = png_header(400, 400);
        p[12..16].copy_from_slice(b"IDAT");
        assert_eq!(sniff_image(&p), Err(ImageError::Malformed));
        assert_eq!(sniff_image(&png_header(0, 400)), Err(ImageError::Malformed));
        assert_eq!(sniff_image(&png_header(400, 400)[..20]), Err(ImageError::Malformed));
    }

    #[test]
    fn a_huge_header_is_rejected_without_decoding() {
        let info = sniff_image(&png_header(20_000, 20_000));
        assert!(matches!(info, Ok(ImageInfo { width: 20_000, height: 20_000, byte_len: 33, .. })), "{info:?}");
        let err = info.map_err(|e| e.to_string()).and_then(|i| check_image_rules(&i).map_err(|e| e.to_string()));
        assert!(matches!(err, Err(ref m) if m.contains("megapixels")), "{err:?}");
        assert_eq!(
            check_image_rules(&ImageInfo { format: ImageFormat::Png, width: 10_001, height: 5_000, byte_len: 1 }),
            Err(ImageError::TooManyPixels { width: 10_001, height: 5_000 })
        );
        assert_eq!(
            check_image_rules(&ImageInfo { format: ImageFormat::Png, width: 8_000, height: 6_000, byte_len: 1 }),
            Err(ImageError::TooManyPixels { width: 8_000, height: 6_000 })
        );
        assert_eq!(
            check_image_rules(&ImageInfo { format: ImageFormat::Png, width: 8_000, height: 5_000, byte_len: 1 }),
            Ok(())
        );
    }

    #[test]
    fn byte_size_is_capped_at_ten_megabytes() {
        let at = ImageInfo { format: ImageFormat::Jpeg, width: 400, height: 400, byte_len: MAX_IMAGE_BYTES };
        assert_eq!(check_image_rules(&at), Ok(()));
        let over = ImageInfo { byte_len: MAX_IMAGE_BYTES + 1, ..at };
        assert_eq!(check_image_rules(&over), Err(ImageError::TooLarge));
        assert_eq!(ImageError::TooLarge.task_error_code(), TaskErrorCode::ImageProcessingError);
        let mut big = png_header(400, 400);
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        assert_eq!(sniff_image(&big), Err(ImageError::TooLarge));
    }

    #[test]
    fn error_codes_split_unreadable_from_wrong_shape() {
        use ImageError::*;
        for e in [TooLarge, UnsupportedFormat, Malformed, TooManyPixels { width: 1, height: 1 }] {
            assert_eq!(e.task_error_code(), TaskErrorCode::ImageProcessingError, "{e}");
        }
        for e in [TooSmall { width: 1, height: 1 }, BadAspect { width: 1, height: 1 }] {
            assert_eq!(e.task_error_code(), TaskErrorCode::ImageDimensionMismatch, "{e}");
        }
    }

    #[test]
    fn refuses_other_formats_and_damage() {
        assert_eq!(sniff_image(b"GIF89a\x40\x01\x40\x01"), Err(ImageError::UnsupportedFormat));
        assert_eq!(sniff_image(b"RIFF....WEBPVP8 "), Err(ImageError::UnsupportedFormat));
        assert_eq!(sniff_image(b"BM...."), Err(ImageError::UnsupportedFormat));
        assert_eq!(sniff_image(&PNG_SIG), Err(ImageError::Malformed));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), Err(ImageError::Malformed));
    }

    #[test]
    fn applies_the_size_and_aspect_rules() {
        let check = |w, h| {
            check_image_rules(&sniff_image(&png_header(w, h)).map_err(|e| e.to_string()).unwrap_or(ImageInfo {
                format: ImageFormat::Png,
                width: 0,
                height: 0,
                byte_len: 0,
            }))
        };
        assert_eq!(check(300, 300), Ok(()));
        assert_eq!(check(750, 300), Ok(()));
        assert_eq!(check(300, 750), Ok(()));
        assert!(matches!(check(751, 300), Err(ImageError::BadAspect { .. })));
        assert!(matches!(check(300, 751), Err(ImageError::BadAspect { .. })));
        assert!(matches!(check(400, 299), Err(ImageError::TooSmall { .. })));
        assert!(matches!(check(20_000, 300), Err(ImageError::BadAspect { .. })));
        assert!(matches!(check(299, 400), Err(ImageError::TooSmall { .. })));
        assert!(matches!(check(20_000, 20_000), Err(ImageError::TooManyPixels { .. })));
        assert_eq!(
            ImageError::TooSmall { width: 1, height: 1 }.task_error_code(),
            TaskErrorCode::ImageDimensionMismatch
        );
        assert_eq!(ImageError::UnsupportedFormat.task_error_code(), TaskErrorCode::ImageProcessingError);
    }
}
