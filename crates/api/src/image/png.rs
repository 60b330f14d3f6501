//! PNG: the header's size, and a complete check of the file. Every chunk's CRC is
//! verified, IHDR comes first and is consistent, a palette image has its PLTE, the
//! IDAT stream inflates completely (zlib adler32 checked) to exactly the bytes the
//! header implies, each scanline starts with a known filter, and IEND is present.
//! The inflated bytes pass through a 32 KiB ring and are never kept.

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use super::{ImageError, PNG_SIG, be_u32};

/// Width and height from IHDR, which must be the first chunk.
pub(super) fn header_size(b: &[u8]) -> Result<(u32, u32), ImageError> {
    if b.get(12..16) != Some(b"IHDR") || be_u32(b, 8) != Some(13) {
        return Err(ImageError::Malformed);
    }
    let w = be_u32(b, 16).ok_or(ImageError::Malformed)?;
    let h = be_u32(b, 20).ok_or(ImageError::Malformed)?;
    if w == 0 || h == 0 || w > i32::MAX as u32 || h > i32::MAX as u32 {
        return Err(ImageError::Malformed);
    }
    Ok((w, h))
}

struct Header {
    width: u32,
    height: u32,
    bits_per_pixel: u64,
    palette: bool,
    interlaced: bool,
}

fn read_ihdr(data: &[u8]) -> Result<Header, ImageError> {
    let (Some(width), Some(height)) = (be_u32(data, 0), be_u32(data, 4)) else {
        return Err(ImageError::Malformed);
    };
    let [depth, colour, compression, filter, interlace] =
        data.get(8..13).and_then(|s| s.try_into().ok()).ok_or(ImageError::Malformed)?;
    let channels: u64 = match (colour, depth) {
        (0, 1 | 2 | 4 | 8 | 16) => 1,
        (2, 8 | 16) => 3,
        (3, 1 | 2 | 4 | 8) => 1,
        (4, 8 | 16) => 2,
        (6, 8 | 16) => 4,
        _ => return Err(ImageError::Corrupt("unknown colour type or bit depth")),
    };
    if compression != 0 || filter != 0 || interlace > 1 {
        return Err(ImageError::Corrupt("unknown compression, filter or interlace method"));
    }
    Ok(Header {
        width,
        height,
        bits_per_pixel: channels * u64::from(depth),
        palette: colour == 3,
        interlaced: interlace == 1,
    })
}

/// Bytes of one scanline of `w` pixels, its filter byte included.
fn row_bytes(w: u64, bits_per_pixel: u64) -> u64 {
    1 + (w * bits_per_pixel).div_ceil(8)
}

/// The scanlines the stream must hold, in order: (count, bytes each). Adam7
/// passes with no pixels have no scanlines at all.
fn scanlines(h: &Header) -> Vec<(u64, u64)> {
    let (w, ht) = (u64::from(h.width), u64::from(h.height));
    if !h.interlaced {
        return vec![(ht, row_bytes(w, h.bits_per_pixel))];
    }
    // (x start, y start, x step, y step) of the seven Adam7 passes.
    const PASSES: [(u64, u64, u64, u64); 7] =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];
    PASSES
        .iter()
        .filter_map(|&(x0, y0, dx, dy)| {
            let pw = w.saturating_sub(x0).div_ceil(dx);
            let ph = ht.saturating_sub(y0).div_ceil(dy);
            (pw > 0 && ph > 0).then(|| (ph, row_bytes(pw, h.bits_per_pixel)))
        })
        .collect()
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// The CRC-32 PNG puts after each chunk (over its type and data).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}

/// The complete check of a PNG file (see the module header).
pub(super) fn verify(b: &[u8]) -> Result<(), ImageError> {
    if !b.starts_with(&PNG_SIG) {
        return Err(ImageError::UnsupportedFormat);
    }
    let mut at = PNG_SIG.len();
    let mut header: Option<Header> = None;
    let mut has_palette = false;
    let mut idat = Vec::new();
    // IDAT chunks must follow one another; `Some(false)` once a run has ended.
    let mut idat_open: Option<bool> = None;
    loop {
        let len = be_u32(b, at).ok_or(ImageError::Corrupt("the file ends before IEND"))? as usize;
        if len > i32::MAX as usize {
            return Err(ImageError::Corrupt("a chunk length is out of range"));
        }
        let body = at + 4..at + 8 + len;
        let crc_at = at + 8 + len;
        let (Some(typed), Some(crc)) = (b.get(body.clone()), be_u32(b, crc_at)) else {
            return Err(ImageError::Corrupt("the file ends inside a chunk"));
        };
        if crc32(typed) != crc {
            return Err(ImageError::Corrupt("a chunk CRC does not match"));
        }
        let (kind, data) = typed.split_at(4);
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(ImageError::Corrupt("a chunk type is not valid"));
        }
        if header.is_none() && kind != b"IHDR" {
            return Err(ImageError::Malformed);
        }
        if kind != b"IDAT" && idat_open == Some(true) {
            idat_open = Some(false);
        }
        match kind {
            b"IHDR" if header.is_none() && len == 13 => header = Some(read_ihdr(data)?),
            b"IHDR" => return Err(ImageError::Corrupt("IHDR is repeated or has the wrong size")),
            b"PLTE" => has_palette = true,
            b"IDAT" => {
                if idat_open == Some(false) {
                    return Err(ImageError::Corrupt("IDAT chunks are not consecutive"));
                }
                idat_open = Some(true);
                idat.extend_from_slice(data);
            }
            b"IEND" => break,
            _ => {}
        }
        at = crc_at + 4;
    }
    let header = header.ok_or(ImageError::Malformed)?;
    if header.palette && !has_palette {
        return Err(ImageError::Corrupt("a palette image has no PLTE chunk"));
    }
    if idat.is_empty() {
        return Err(ImageError::Corrupt("there is no image data (IDAT)"));
    }
    inflate_scanlines(&idat, &scanlines(&header))
}

/// Inflates the zlib stream through a ring buffer, checking that it ends exactly
/// after the scanlines the header implies and that each scanline's filter byte is
/// one of the five PNG defines.
fn inflate_scanlines(stream: &[u8], lines: &[(u64, u64)]) -> Result<(), ImageError> {
    const RING: usize = 32 * 1024;
    let expected: u64 = lines.iter().map(|(n, len)| n * len).sum();
    // Offsets in the inflated stream where a filter byte sits: walk them in order.
    let mut filters = lines.iter().flat_map(|&(n, len)| std::iter::repeat_n(len, n as usize));
    let mut next_filter_at: u64 = 0;
    let mut next_len = filters.next();

    let mut inflater = Box::<DecompressorOxide>::default();
    let mut ring = vec![0u8; RING];
    let (mut in_at, mut out_pos, mut total) = (0usize, 0usize, 0u64);
    let flags = inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER;
    loop {
        let (status, read, written) = decompress(&mut inflater, &stream[in_at..], &mut ring, out_pos, flags);
        in_at += read;
        // Visit only the filter bytes among the new output: one per scanline.
        while let Some(len) = next_len {
            let Some(i) = next_filter_at.checked_sub(total).filter(|&i| i < written as u64) else { break };
            if ring[(out_pos + i as usize) & (RING - 1)] > 4 {
                return Err(ImageError::Corrupt("a scanline has an unknown filter type"));
            }
            next_filter_at += len;
            next_len = filters.next();
        }
        total += written as u64;
        out_pos = (out_pos + written) & (RING - 1);
        if total > expected {
            return Err(ImageError::Corrupt("the image data is longer than the header says"));
        }
        match status {
            TINFLStatus::Done => break,
            TINFLStatus::HasMoreOutput => continue,
            TINFLStatus::Adler32Mismatch => return Err(ImageError::Corrupt("the image data checksum does not match")),
            TINFLStatus::FailedCannotMakeProgress | TINFLStatus::NeedsMoreInput => {
                return Err(ImageError::Corrupt("the image data is truncated"));
            }
            _ => return Err(ImageError::Corrupt("the image data does not inflate")),
        }
    }
    if total != expected {
        return Err(ImageError::Corrupt("the image data is shorter than the header says"));
    }
    Ok(())
}
