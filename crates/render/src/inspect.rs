//! A small MP4 box reader for tests and tools: track sizes, codecs, frame count,
//! duration, and whether the index (moov) comes before the media (mdat).

#[derive(Debug, Clone, PartialEq)]
pub struct Mp4Info {
    pub width: u32,
    pub height: u32,
    pub video_frames: u32,
    pub fps: f64,
    pub duration_secs: f64,
    pub codec: String,
    pub has_audio: bool,
    pub audio_codec: Option<String>,
    pub audio_sample_rate: Option<u32>,
    pub moov_before_mdat: bool,
}

fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let head = data.get(pos..pos + 8)?;
        let mut size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let mut start = pos + 8;
        if size == 1 {
            let big = data.get(pos + 8..pos + 16)?;
            size = u64::from_be_bytes(big.try_into().ok()?) as usize;
            start = pos + 16;
        } else if size == 0 {
            size = data.len() - pos;
        }
        if size < start - pos || pos + size > data.len() {
            return None;
        }
        let body = &data[start..pos + size];
        pos += size;
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, b)| b)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn inspect(bytes: &[u8]) -> Result<Mp4Info, String> {
    let top: Vec<(&[u8], &[u8])> = boxes(bytes).collect();
    let moov_at = top.iter().position(|(k, _)| *k == b"moov").ok_or("no moov box")?;
    let mdat_at = top.iter().position(|(k, _)| *k == b"mdat").ok_or("no mdat box")?;
    let moov = top[moov_at].1;
    let mut info = Mp4Info {
        width: 0,
        height: 0,
        video_frames: 0,
        fps: 0.0,
        duration_secs: 0.0,
        codec: String::new(),
        has_audio: false,
        audio_codec: None,
        audio_sample_rate: None,
        moov_before_mdat: moov_at < mdat_at,
    };
    for (kind, trak) in boxes(moov) {
        if kind != b"trak" {
            continue;
        }
        let mdia = child(trak, b"mdia").ok_or("trak without mdia")?;
        let hdlr = child(mdia, b"hdlr").ok_or("mdia without hdlr")?;
        let handler = hdlr.get(8..12).ok_or("short hdlr")?;
        let mdhd = child(mdia, b"mdhd").ok_or("no mdhd")?;
        let (timescale, duration) = if mdhd.first() == Some(&1) {
            (
                be32(mdhd, 20).ok_or("mdhd")?,
                u64::from_be_bytes(mdhd.get(24..32).ok_or("mdhd")?.try_into().map_err(|_| "mdhd")?),
            )
        } else {
            (be32(mdhd, 12).ok_or("mdhd")?, u64::from(be32(mdhd, 16).ok_or("mdhd")?))
        };
        let stbl = child(child(mdia, b"minf").ok_or("no minf")?, b"stbl").ok_or("no stbl")?;
        let stsd = child(stbl, b"stsd").ok_or("no stsd")?;
        let entry = stsd.get(8..).ok_or("short stsd")?;
        let codec = String::from_utf8_lossy(entry.get(4..8).ok_or("short stsd entry")?).into_owned();
        let count = be32(child(stbl, b"stsz").ok_or("no stsz")?, 8).ok_or("short stsz")?;
        match handler {
            b"vide" => {
                let tkhd = child(trak, b"tkhd").ok_or("no tkhd")?;
                let off = if tkhd.first() == Some(&1) { 88 } else { 76 };
                info.width = be32(tkhd, off).ok_or("short tkhd")? >> 16;
                info.height = be32(tkhd, off + 4).ok_or("short tkhd")? >> 16;
                info.video_frames = count;
                info.duration_secs = duration as f64 / f64::from(timescale.max(1));
                info.fps = if info.duration_secs > 0.0 { f64::from(count) / info.duration_secs } else { 0.0 };
                info.codec = codec;
            }
            b"soun" => {
                info.has_audio = true;
                info.audio_codec = Some(codec);
                // AudioSampleEntry: 8 (entry header) + 6 reserved + 2 dref + 8 + 2 ch + 2 bits + 4 + 4 rate (16.16).
                info.audio_sample_rate = be32(entry, 32).map(|r| r >> 16);
            }
            _ => {}
        }
    }
    if info.codec.is_empty() {
        return Err("no video track".to_owned());
    }
    Ok(info)
}

/// A video track's parameter sets and its samples (AVCC: 4-byte NAL lengths).
#[derive(Debug, Clone)]
pub struct VideoSamples<'a> {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub samples: Vec<&'a [u8]>,
}

/// The video track's parameter sets and samples, for tools and tests that decode
/// a file back. Reads files with one chunk per track or many, using `stsz`,
/// `stsc` (first entry) and `stco`.
pub fn video_samples(bytes: &[u8]) -> Result<VideoSamples<'_>, String> {
    let moov = boxes(bytes).find(|(k, _)| *k == b"moov").map(|(_, b)| b).ok_or("no moov")?;
    for (kind, trak) in boxes(moov) {
        if kind != b"trak" {
            continue;
        }
        let mdia = child(trak, b"mdia").ok_or("no mdia")?;
        if child(mdia, b"hdlr").and_then(|h| h.get(8..12)) != Some(b"vide") {
            continue;
        }
        let stbl = child(child(mdia, b"minf").ok_or("no minf")?, b"stbl").ok_or("no stbl")?;
        let stsd = child(stbl, b"stsd").ok_or("no stsd")?;
        // stsd: version/flags(4) count(4), then the avc1 entry: size(4) type(4) and
        // 78 bytes of visual sample entry before its child boxes.
        let avc1 = stsd.get(16..).ok_or("short stsd")?;
        let avcc = child(avc1.get(78..).ok_or("short avc1")?, b"avcC").ok_or("no avcC")?;
        let sps_len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
        let sps = avcc.get(8..8 + sps_len).ok_or("short sps")?.to_vec();
        let pps_at = 8 + sps_len + 1;
        let pps_len = u16::from_be_bytes([avcc[pps_at], avcc[pps_at + 1]]) as usize;
        let pps = avcc.get(pps_at + 2..pps_at + 2 + pps_len).ok_or("short pps")?.to_vec();
        let stsz = child(stbl, b"stsz").ok_or("no stsz")?;
        let count = be32(stsz, 8).ok_or("stsz")? as usize;
        let sizes: Vec<usize> = (0..count).map(|i| be32(stsz, 12 + 4 * i).unwrap_or(0) as usize).collect();
        let stco = child(stbl, b"stco").ok_or("no stco")?;
        let chunks = be32(stco, 4).ok_or("stco")? as usize;
        let offsets: Vec<usize> = (0..chunks).map(|i| be32(stco, 8 + 4 * i).unwrap_or(0) as usize).collect();
        let stsc = child(stbl, b"stsc").ok_or("no stsc")?;
        let per_chunk = be32(stsc, 12).ok_or("stsc")? as usize;
        let mut samples = Vec::with_capacity(count);
        let mut n = 0;
        for off in offsets {
            let mut at = off;
            for _ in 0..per_chunk {
                let Some(size) = sizes.get(n) else { break };
                samples.push(bytes.get(at..at + size).ok_or("sample outside the file")?);
                at += size;
                n += 1;
            }
        }
        return Ok(VideoSamples { sps, pps, samples });
    }
    Err("no video track".to_owned())
}
