//! JPEG: the header's size, and a complete structural check of the file without
//! decoding pixels: SOI, exactly one baseline, extended or progressive Huffman
//! frame (SOF0/1/2) with sane dimensions and components, every segment inside the
//! file, the quantisation and Huffman tables each scan uses defined before it,
//! entropy-coded data after every SOS, and EOI.

use super::{ImageError, be_u16};

/// Width and height from the first frame header.
pub(super) fn header_size(b: &[u8]) -> Result<(u32, u32), ImageError> {
    let mut i = 2;
    loop {
        let (marker, after) = next_marker(b, i).ok_or(ImageError::Malformed)?;
        i = after;
        match marker {
            // Standalone markers: TEM, RSTn, SOI.
            0x01 | 0xD0..=0xD8 => continue,
            // EOI or SOS before any frame header, or a stuffed 0x00 out of place.
            0x00 | 0xD9 | 0xDA => return Err(ImageError::Malformed),
            m if is_sof(m) => {
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
            _ => i += segment_len(b, i).ok_or(ImageError::Malformed)?,
        }
    }
}

/// SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
fn is_sof(m: u8) -> bool {
    (0xC0..=0xCF).contains(&m) && m != 0xC4 && m != 0xC8 && m != 0xCC
}

/// The marker at `i` (fill bytes 0xFF allowed before it) and the offset after it.
fn next_marker(b: &[u8], mut i: usize) -> Option<(u8, usize)> {
    if b.get(i) != Some(&0xFF) {
        return None;
    }
    while b.get(i + 1) == Some(&0xFF) {
        i += 1;
    }
    Some((*b.get(i + 1)?, i + 2))
}

/// A segment's length field (which counts itself), when at least 2.
fn segment_len(b: &[u8], i: usize) -> Option<usize> {
    be_u16(b, i).map(usize::from).filter(|&len| len >= 2)
}

struct Component {
    id: u8,
    quant_table: u8,
}

#[derive(Default)]
struct State {
    frame: Option<Vec<Component>>,
    quant: [bool; 4],
    /// Huffman tables defined: [class][id], class 0 = DC, 1 = AC.
    huffman: [[bool; 4]; 2],
    scans: usize,
}

fn corrupt(what: &'static str) -> ImageError {
    ImageError::Corrupt(what)
}

/// The complete check of a JPEG file (see the module header).
pub(super) fn verify(b: &[u8]) -> Result<(), ImageError> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err(ImageError::UnsupportedFormat);
    }
    let mut st = State::default();
    let mut i = 2;
    loop {
        let (marker, after) = next_marker(b, i).ok_or(corrupt("the file ends before EOI"))?;
        i = after;
        match marker {
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 => return Err(corrupt("a second SOI")),
            0xD9 if st.scans == 0 => return Err(corrupt("there is no image data (SOS)")),
            0xD9 => return Ok(()),
            0x00 => return Err(corrupt("a stuffed byte outside a scan")),
            _ => {}
        }
        let len = segment_len(b, i).ok_or(corrupt("a segment length is not valid"))?;
        let seg = b.get(i + 2..i + len).ok_or(corrupt("the file ends inside a segment"))?;
        match marker {
            0xC0..=0xC2 => read_frame(&mut st, seg)?,
            m if is_sof(m) => {
                return Err(corrupt("only baseline, extended and progressive Huffman JPEGs are accepted"));
            }
            0xC4 => read_huffman(&mut st, seg)?,
            0xDB => read_quant(&mut st, seg)?,
            0xDA => {
                read_scan(&st, seg)?;
                st.scans += 1;
                i = skip_entropy_data(b, i + len)?;
                continue;
            }
            _ => {}
        }
        i += len;
    }
}

fn read_frame(st: &mut State, seg: &[u8]) -> Result<(), ImageError> {
    if st.frame.is_some() {
        return Err(corrupt("more than one frame header"));
    }
    let [precision, ..] = *seg else { return Err(corrupt("a frame header is too short")) };
    let (h, w) = (be_u16(seg, 1).unwrap_or(0), be_u16(seg, 3).unwrap_or(0));
    let count = usize::from(seg.get(5).copied().unwrap_or(0));
    if precision != 8 && precision != 12 {
        return Err(corrupt("the sample precision is not 8 or 12 bits"));
    }
    if w == 0 || h == 0 {
        return Err(ImageError::Malformed);
    }
    if !(1..=4).contains(&count) || seg.len() != 6 + 3 * count {
        return Err(corrupt("the frame header's components do not add up"));
    }
    let mut components = Vec::with_capacity(count);
    for c in seg[6..].chunks_exact(3) {
        let (hs, vs) = (c[1] >> 4, c[1] & 0x0F);
        if !(1..=4).contains(&hs) || !(1..=4).contains(&vs) || c[2] > 3 {
            return Err(corrupt("a frame component is not valid"));
        }
        components.push(Component { id: c[0], quant_table: c[2] });
    }
    st.frame = Some(components);
    Ok(())
}

fn read_quant(st: &mut State, mut seg: &[u8]) -> Result<(), ImageError> {
    while let [pq_tq, rest @ ..] = seg {
        let (precision, id) = (pq_tq >> 4, pq_tq & 0x0F);
        let size = match precision {
            0 => 64,
            1 => 128,
            _ => return Err(corrupt("a quantisation table's precision is not valid")),
        };
        if id > 3 || rest.len() < size {
            return Err(corrupt("a quantisation table is not valid"));
        }
        st.quant[usize::from(id)] = true;
        seg = &rest[size..];
    }
    Ok(())
}

fn read_huffman(st: &mut State, mut seg: &[u8]) -> Result<(), ImageError> {
    while let [tc_th, rest @ ..] = seg {
        let (class, id) = (tc_th >> 4, tc_th & 0x0F);
        let counts = rest.get(..16).ok_or(corrupt("a Huffman table is too short"))?;
        let symbols: usize = counts.iter().map(|&n| usize::from(n)).sum();
        if class > 1 || id > 3 || symbols == 0 || symbols > 256 || rest.len() < 16 + symbols {
            return Err(corrupt("a Huffman table is not valid"));
        }
        st.huffman[usize::from(class)][usize::from(id)] = true;
        seg = &rest[16 + symbols..];
    }
    Ok(())
}

fn read_scan(st: &State, seg: &[u8]) -> Result<(), ImageError> {
    let frame = st.frame.as_ref().ok_or(corrupt("a scan comes before the frame header"))?;
    let count = usize::from(seg.first().copied().unwrap_or(0));
    if !(1..=4).contains(&count) || seg.len() != 4 + 2 * count {
        return Err(corrupt("a scan header's components do not add up"));
    }
    let (start, end) = (seg[1 + 2 * count], seg[2 + 2 * count]);
    if start > 63 || end > 63 || start > end {
        return Err(corrupt("a scan's spectral range is not valid"));
    }
    for c in seg[1..1 + 2 * count].chunks_exact(2) {
        let component = frame.iter().find(|f| f.id == c[0]).ok_or(corrupt("a scan names an unknown component"))?;
        let (dc, ac) = (usize::from(c[1] >> 4), usize::from(c[1] & 0x0F));
        if !st.quant.get(usize::from(component.quant_table)).copied().unwrap_or(false) {
            return Err(corrupt("a quantisation table is used before it is defined"));
        }
        let dc_ok = start != 0 || st.huffman[0].get(dc).copied().unwrap_or(false);
        let ac_ok = end == 0 || st.huffman[1].get(ac).copied().unwrap_or(false);
        if !dc_ok || !ac_ok {
            return Err(corrupt("a Huffman table is used before it is defined"));
        }
    }
    Ok(())
}

/// Walks the entropy-coded data after a scan header to the next real marker
/// (a 0xFF not followed by a stuffed 0x00 or a restart marker); there must be data.
fn skip_entropy_data(b: &[u8], mut i: usize) -> Result<usize, ImageError> {
    let mut data = 0usize;
    loop {
        let rest = b.get(i..).unwrap_or_default();
        let Some(ff) = rest.iter().position(|&x| x == 0xFF) else {
            return Err(corrupt("the file ends inside the image data"));
        };
        data += ff;
        i += ff;
        match b.get(i + 1) {
            None => return Err(corrupt("the file ends inside the image data")),
            Some(0x00) => {
                data += 1;
                i += 2;
            }
            Some(0xD0..=0xD7) => i += 2,
            Some(_) if data == 0 => return Err(corrupt("a scan has no image data")),
            Some(_) => return Ok(i),
        }
    }
}
