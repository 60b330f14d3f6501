//! Tests of the image checks: headers, rules, and the complete data check against
//! real encoder output and against each kind of damage issue 9.6 names.

use super::*;

/// A PNG header alone (signature and IHDR, no CRC, no data): enough for `sniff_image`.
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut p = PNG_SIG.to_vec();
    p.extend_from_slice(&13u32.to_be_bytes());
    p.extend_from_slice(b"IHDR");
    p.extend_from_slice(&w.to_be_bytes());
    p.extend_from_slice(&h.to_be_bytes());
    p.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    p
}

/// A JPEG whose segments stop at the frame header: enough for `sniff_image`.
pub fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    j.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    j.extend_from_slice(&[0xFF, 0xFF, 0xC0, 0x00, 0x11, 0x08]);
    j.extend_from_slice(&h.to_be_bytes());
    j.extend_from_slice(&w.to_be_bytes());
    j.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    j
}

/// The CRC-32 a PNG chunk carries over its type and data.
pub fn crc(typed: &[u8]) -> u32 {
    png::crc32(typed)
}

fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    c.extend_from_slice(&typed);
    c.extend_from_slice(&png::crc32(&typed).to_be_bytes());
    c
}

/// A PNG built chunk by chunk: colour type, bit depth and interlace as given, and
/// `raw` as the uncompressed scanline bytes (filter bytes included).
pub fn png_from_raw(w: u32, h: u32, colour: u8, depth: u8, interlace: u8, raw: &[u8]) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[depth, colour, 0, 0, interlace]);
    let mut p = PNG_SIG.to_vec();
    p.extend(chunk(b"IHDR", &ihdr));
    if colour == 3 {
        p.extend(chunk(b"PLTE", &[0, 0, 0, 255, 255, 255]));
    }
    p.extend(chunk(b"IDAT", &miniz_oxide::deflate::compress_to_vec_zlib(raw, 6)));
    p.extend(chunk(b"IEND", &[]));
    p
}

/// A complete, valid 8-bit RGB PNG of the given size (real encoder output).
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    match img.write_to(&mut out, image::ImageFormat::Png) {
        Ok(()) => out.into_inner(),
        Err(e) => unreachable!("the png encoder failed: {e}"),
    }
}

/// A complete, valid baseline JPEG of the given size (real encoder output).
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    match img.write_to(&mut out, image::ImageFormat::Jpeg) {
        Ok(()) => out.into_inner(),
        Err(e) => unreachable!("the jpeg encoder failed: {e}"),
    }
}

fn full(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    check_image(bytes, &ImageRules::default())
}

fn is_corrupt(r: Result<ImageInfo, ImageError>) -> bool {
    matches!(r, Err(ImageError::Corrupt(_)))
}

#[test]
fn reads_png_and_jpeg_sizes_from_headers() {
    assert_eq!(sniff_image(&png_header(640, 480)).map(|i| (i.width, i.height)), Ok((640, 480)));
    let j = sniff_image(&jpeg_header(1920, 1080));
    assert_eq!(j.map(|i| (i.format, i.width, i.height)), Ok((ImageFormat::Jpeg, 1920, 1080)));
}

#[test]
fn real_png_and_jpeg_files_pass_the_complete_check() {
    for (bytes, format) in [(png(400, 300), ImageFormat::Png), (jpeg(640, 360), ImageFormat::Jpeg)] {
        let info = full(&bytes);
        assert_eq!(info.map(|i| (i.format, i.byte_len)), Ok((format, bytes.len())));
    }
    // Odd sizes exercise partial bytes per row and partial MCUs.
    assert!(full(&png(301, 749)).is_ok());
    assert!(full(&jpeg(333, 517)).is_ok());
}

#[test]
fn every_png_colour_type_depth_and_interlace_is_sized_exactly() {
    // (colour type, bit depth, bits per pixel)
    for (colour, depth, bpp) in [(0, 1, 1), (0, 4, 4), (0, 16, 16), (2, 8, 24), (3, 2, 2), (4, 8, 16), (6, 16, 64)] {
        for interlace in [0u8, 1] {
            let (w, h) = (301u32, 302u32);
            let rows: Vec<(u64, u64)> = if interlace == 0 {
                vec![(u64::from(h), 1 + (u64::from(w) * bpp).div_ceil(8))]
            } else {
                [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
                    .iter()
                    .map(|&(x0, y0, dx, dy): &(u64, u64, u64, u64)| {
                        let pw = (u64::from(w) - x0).div_ceil(dx);
                        (((u64::from(h)) - y0).div_ceil(dy), 1 + (pw * bpp).div_ceil(8))
                    })
                    .collect()
            };
            let raw: Vec<u8> = rows
                .iter()
                .flat_map(|&(n, len)| {
                    (0..n).flat_map(move |r| (0..len).map(move |i| if i == 0 { (r % 5) as u8 } else { 9 }))
                })
                .collect();
            let good = png_from_raw(w, h, colour, depth, interlace, &raw);
            assert!(full(&good).is_ok(), "colour {colour} depth {depth} interlace {interlace}: {:?}", full(&good));
            // One byte short or one byte long is refused.
            let short = png_from_raw(w, h, colour, depth, interlace, &raw[..raw.len() - 1]);
            assert!(is_corrupt(full(&short)), "short: colour {colour} depth {depth}");
            let mut longer = raw.clone();
            longer.push(0);
            assert!(is_corrupt(full(&png_from_raw(w, h, colour, depth, interlace, &longer))));
        }
    }
}

#[test]
fn a_truncated_png_is_refused() {
    let p = png(400, 400);
    for cut in [p.len() - 1, p.len() - 12, p.len() / 2, 60] {
        assert!(is_corrupt(full(&p[..cut])), "cut at {cut}");
    }
}

#[test]
fn a_png_with_only_its_header_is_refused() {
    let p = png(400, 400);
    // Signature and IHDR chunk with its CRC: 8 + 25 bytes.
    assert!(is_corrupt(full(&p[..33])));
    // The header-only test image of older tests has no CRC at all.
    assert!(matches!(full(&png_header(400, 400)), Err(ImageError::Corrupt(_))));
    // IHDR then IEND, no IDAT.
    let mut no_data = p[..33].to_vec();
    no_data.extend(chunk(b"IEND", &[]));
    assert_eq!(full(&no_data), Err(ImageError::Corrupt("there is no image data (IDAT)")));
}

#[test]
fn a_png_with_a_bad_crc_is_refused() {
    let mut p = png(400, 400);
    // Flip a bit inside the IDAT data; the CRC no longer matches.
    let at = p.len() - 30;
    p[at] ^= 0x01;
    assert_eq!(full(&p), Err(ImageError::Corrupt("a chunk CRC does not match")));
    // A damaged CRC field itself.
    let mut q = png(400, 400);
    q[29] ^= 0xFF;
    assert_eq!(full(&q), Err(ImageError::Corrupt("a chunk CRC does not match")));
}

#[test]
fn png_stream_damage_behind_a_valid_crc_is_found() {
    let raw: Vec<u8> = (0..300u32).flat_map(|_| std::iter::once(0).chain(std::iter::repeat_n(5, 300))).collect();
    // Recompute the chunk around a damaged zlib stream, so only inflate can tell.
    let mut z = miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6);
    let last = z.len() - 1;
    z[last] ^= 0x55; // the adler32
    let mut ihdr = 300u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&300u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let build = |z: &[u8]| {
        let mut p = PNG_SIG.to_vec();
        p.extend(chunk(b"IHDR", &ihdr));
        p.extend(chunk(b"IDAT", z));
        p.extend(chunk(b"IEND", &[]));
        p
    };
    assert_eq!(full(&build(&z)), Err(ImageError::Corrupt("the image data checksum does not match")));
    // A scanline whose filter byte is 7.
    let mut bad_filter = raw.clone();
    bad_filter[301 * 10] = 7;
    let z = miniz_oxide::deflate::compress_to_vec_zlib(&bad_filter, 6);
    assert_eq!(full(&build(&z)), Err(ImageError::Corrupt("a scanline has an unknown filter type")));
    // Not zlib at all.
    assert!(is_corrupt(full(&build(b"\x00\x01\x02\x03garbage"))));
}

#[test]
fn png_structure_rules_are_enforced() {
    let ok = png(400, 400);
    // No IEND.
    let iend = ok.len() - 12;
    assert!(is_corrupt(full(&ok[..iend])));
    // Bytes after IEND are ignored, as decoders do.
    let mut trailing = ok.clone();
    trailing.extend_from_slice(b"junk");
    assert!(full(&trailing).is_ok());
    // A palette image without PLTE.
    let raw: Vec<u8> = (0..300).flat_map(|_| std::iter::once(0).chain(std::iter::repeat_n(0, 300))).collect();
    let mut ihdr = 300u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&300u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    let mut p = PNG_SIG.to_vec();
    p.extend(chunk(b"IHDR", &ihdr));
    p.extend(chunk(b"IDAT", &miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6)));
    p.extend(chunk(b"IEND", &[]));
    assert_eq!(full(&p), Err(ImageError::Corrupt("a palette image has no PLTE chunk")));
    // With the PLTE it passes.
    assert!(full(&png_from_raw(300, 300, 3, 8, 0, &raw)).is_ok());
    // An impossible colour type / depth pair.
    let mut bad = PNG_SIG.to_vec();
    let mut ihdr = 300u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&300u32.to_be_bytes());
    ihdr.extend_from_slice(&[3, 2, 0, 0, 0]);
    bad.extend(chunk(b"IHDR", &ihdr));
    assert_eq!(full(&bad), Err(ImageError::Corrupt("unknown colour type or bit depth")));
}

/// A structurally valid JPEG built by hand: APP0, DQT, SOF, DHT (DC and AC), SOS,
/// `data` as entropy-coded bytes, EOI.
fn jpeg_parts(w: u16, h: u16, sof: u8, data: &[u8], with_tables: bool) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    if with_tables {
        j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
        j.extend_from_slice(&[1; 64]);
    }
    j.extend_from_slice(&[0xFF, sof, 0x00, 0x0B, 0x08]);
    j.extend_from_slice(&h.to_be_bytes());
    j.extend_from_slice(&w.to_be_bytes());
    j.extend_from_slice(&[1, 1, 0x11, 0]);
    if with_tables {
        for class in [0x00u8, 0x10] {
            let mut counts = [0u8; 16];
            counts[0] = 1;
            j.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class]);
            j.extend_from_slice(&counts);
            j.push(0);
        }
    }
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 63, 0]);
    j.extend_from_slice(data);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

#[test]
fn a_jpeg_without_image_data_is_refused() {
    // Headers only, then EOI: no scan at all.
    let mut headers = jpeg_header(400, 400);
    headers.extend_from_slice(&[0xFF, 0xD9]);
    assert_eq!(full(&headers), Err(ImageError::Corrupt("there is no image data (SOS)")));
    let mut no_scan = jpeg_parts(400, 400, 0xC0, &[], true);
    let sos = no_scan.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap_or(0);
    no_scan.truncate(sos);
    no_scan.extend_from_slice(&[0xFF, 0xD9]);
    assert_eq!(full(&no_scan), Err(ImageError::Corrupt("there is no image data (SOS)")));
    // A scan header followed directly by EOI.
    assert_eq!(full(&jpeg_parts(400, 400, 0xC0, &[], true)), Err(ImageError::Corrupt("a scan has no image data")));
    // With data it passes; stuffed bytes and restart markers are part of the data.
    assert!(full(&jpeg_parts(400, 400, 0xC0, &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56], true)).is_ok());
}

#[test]
fn a_truncated_jpeg_is_refused() {
    let j = jpeg(400, 400);
    for cut in [j.len() - 1, j.len() - 2, j.len() / 2, 30] {
        assert!(is_corrupt(full(&j[..cut])), "cut at {cut}");
    }
}

#[test]
fn jpeg_scans_need_their_tables_and_a_known_coding() {
    assert_eq!(
        full(&jpeg_parts(400, 400, 0xC0, &[1, 2, 3], false)),
        Err(ImageError::Corrupt("a quantisation table is used before it is defined"))
    );
    assert!(full(&jpeg_parts(400, 400, 0xC2, &[1, 2, 3], true)).is_ok());
    assert_eq!(
        full(&jpeg_parts(400, 400, 0xC9, &[1, 2, 3], true)),
        Err(ImageError::Corrupt("only baseline, extended and progressive Huffman JPEGs are accepted"))
    );
    let mut two_frames = jpeg_parts(400, 400, 0xC0, &[1], true);
    let sof = two_frames.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap_or(0);
    let frame = two_frames[sof..sof + 13].to_vec();
    two_frames.splice(sof..sof, frame);
    assert_eq!(full(&two_frames), Err(ImageError::Corrupt("more than one frame header")));
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
    assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]), Err(ImageError::Malformed));
    assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xF0, 0x00]), Err(ImageError::Malformed));
    assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00]), Err(ImageError::Malformed));
    assert_eq!(sniff_image(&jpeg_header(0, 400)), Err(ImageError::Malformed));
}

#[test]
fn format_is_read_from_magic_bytes_not_names() {
    let mut gif = b"GIF87a".to_vec();
    gif.extend_from_slice(&[0x20, 0x03, 0x20, 0x03, 0, 0, 0]);
    assert_eq!(sniff_image(&gif), Err(ImageError::UnsupportedFormat));
    assert_eq!(sniff_image(b""), Err(ImageError::UnsupportedFormat));
    let mut p = png_header(400, 400);
    p[12..16].copy_from_slice(b"IDAT");
    assert_eq!(sniff_image(&p), Err(ImageError::Malformed));
    assert_eq!(sniff_image(&png_header(0, 400)), Err(ImageError::Malformed));
    assert_eq!(sniff_image(&png_header(400, 400)[..20]), Err(ImageError::Malformed));
}

#[test]
fn a_huge_header_is_rejected_without_looking_at_data() {
    let info = sniff_image(&png_header(20_000, 20_000));
    assert!(matches!(info, Ok(ImageInfo { width: 20_000, height: 20_000, byte_len: 33, .. })), "{info:?}");
    // The caps come before the data check, which never starts.
    assert_eq!(full(&png_header(20_000, 20_000)), Err(ImageError::TooManyPixels { width: 20_000, height: 20_000 }));
    let rules = ImageRules::default();
    let png_info = |width, height| ImageInfo { format: ImageFormat::Png, width, height, byte_len: 1 };
    assert_eq!(
        check_image_rules(&png_info(10_001, 5_000), &rules),
        Err(ImageError::TooManyPixels { width: 10_001, height: 5_000 })
    );
    assert_eq!(
        check_image_rules(&png_info(8_000, 6_000), &rules),
        Err(ImageError::TooManyPixels { width: 8_000, height: 6_000 })
    );
    assert_eq!(check_image_rules(&png_info(8_000, 5_000), &rules), Ok(()));
    assert!(matches!(verify_image_data(&[], &png_info(20_000, 20_000)), Err(ImageError::TooManyPixels { .. })));
}

#[test]
fn byte_size_is_capped_by_the_rules() {
    let rules = ImageRules::default();
    let at = ImageInfo { format: ImageFormat::Jpeg, width: 400, height: 400, byte_len: MAX_IMAGE_BYTES };
    assert_eq!(check_image_rules(&at, &rules), Ok(()));
    let over = ImageInfo { byte_len: MAX_IMAGE_BYTES + 1, ..at };
    let e = check_image_rules(&over, &rules);
    assert_eq!(e, Err(ImageError::TooLarge { max_bytes: MAX_IMAGE_BYTES }));
    assert!(e.map_err(|e| e.to_string()).err().is_some_and(|m| m.contains("10 MB")));
    let fifty = ImageRules { max_bytes: 50 * 1024 * 1024, ..ImageRules::default() };
    assert_eq!(check_image_rules(&over, &fifty), Ok(()));
    let mut big = png(400, 400);
    big.resize(MAX_IMAGE_BYTES + 1, 0);
    assert_eq!(check_image(&big, &rules), Err(ImageError::TooLarge { max_bytes: MAX_IMAGE_BYTES }));
}

#[test]
fn formats_a_model_does_not_take_are_refused() {
    let png_only = ImageRules { formats: vec![ImageFormat::Png], ..ImageRules::default() };
    let e = check_image(&jpeg(400, 400), &png_only);
    assert!(matches!(e, Err(ImageError::FormatNotAllowed { format: ImageFormat::Jpeg, .. })), "{e:?}");
    assert!(check_image(&png(400, 400), &png_only).is_ok());
}

#[test]
fn error_codes_split_unreadable_from_wrong_shape() {
    use ImageError::*;
    for e in [
        TooLarge { max_bytes: 1 },
        UnsupportedFormat,
        Malformed,
        Corrupt("x"),
        FormatNotAllowed { format: ImageFormat::Png, allowed: "JPEG".to_owned() },
        TooManyPixels { width: 1, height: 1 },
    ] {
        assert_eq!(e.task_error_code(), TaskErrorCode::ImageProcessingError, "{e}");
    }
    for e in [TooSmall { width: 1, height: 1, min: 300 }, BadAspect { width: 1, height: 1, limit: "2.5".to_owned() }] {
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
    let rules = ImageRules::default();
    let check =
        |w, h| check_image_rules(&ImageInfo { format: ImageFormat::Png, width: w, height: h, byte_len: 9 }, &rules);
    assert_eq!(check(300, 300), Ok(()));
    assert_eq!(check(750, 300), Ok(()));
    assert_eq!(check(300, 750), Ok(()));
    assert!(matches!(check(751, 300), Err(ImageError::BadAspect { .. })));
    assert!(matches!(check(300, 751), Err(ImageError::BadAspect { .. })));
    assert!(matches!(check(400, 299), Err(ImageError::TooSmall { .. })));
    assert!(matches!(check(20_000, 300), Err(ImageError::BadAspect { .. })));
    assert!(matches!(check(299, 400), Err(ImageError::TooSmall { .. })));
    assert!(matches!(check(20_000, 20_000), Err(ImageError::TooManyPixels { .. })));
    let msg = check(751, 300).map_err(|e| e.to_string()).err().unwrap_or_default();
    assert!(msg.contains("1:2.5") && msg.contains("2.5:1"), "{msg}");
}
