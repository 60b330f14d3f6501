//! A small MP4 box reader for tests and tools: track sizes, codecs, frame count,
//! duration, the audio track's format and length, and whether the index (moov)
//! comes before the media (mdat).

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
    pub audio_channels: Option<u16>,
    /// How long the audio plays: its edit list's length when it has one (Opus
    /// trims the encoder's pre-skip and padding that way), else the media's.
    pub audio_duration_secs: Option<f64>,
    /// Audio samples in the track: for Opus, one packet each.
    pub audio_packets: Option<u32>,
    /// The `dOps` pre-skip, for Opus tracks.
    pub audio_pre_skip: Option<u16>,
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

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// (timescale, duration) from an mvhd or mdhd body, version 0 or 1.
fn timescale_duration(hd: &[u8]) -> Option<(u32, u64)> {
    if hd.first() == Some(&1) {
        Some((be32(hd, 20)?, be64(hd, 24)?))
    } else {
        Some((be32(hd, 12)?, u64::from(be32(hd, 16)?)))
    }
}

/// The presented length of a track's edit list, in movie ticks.
fn edit_duration(trak: &[u8]) -> Option<u64> {
    let elst = child(child(trak, b"edts")?, b"elst")?;
    let v1 = elst.first() == Some(&1);
    let count = be32(elst, 4)? as usize;
    let entry = if v1 { 20 } else { 12 };
    (0..count).map(|i| if v1 { be64(elst, 8 + i * entry) } else { be32(elst, 8 + i * entry).map(u64::from) }).sum()
}

fn handler(trak: &[u8]) -> Option<&[u8]> {
    child(child(trak, b"mdia")?, b"hdlr")?.get(8..12)
}

fn stbl(trak: &[u8]) -> Result<&[u8], String> {
    let mdia = child(trak, b"mdia").ok_or("trak without mdia")?;
    Ok(child(child(mdia, b"minf").ok_or("no minf")?, b"stbl").ok_or("no stbl")?)
}

fn moov(bytes: &[u8]) -> Result<&[u8], String> {
    Ok(boxes(bytes).find(|(k, _)| *k == b"moov").map(|(_, b)| b).ok_or("no moov")?)
}

/// The first track with this handler ("vide", "soun").
fn track<'a>(moov: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(moov).filter(|(k, _)| *k == b"trak").map(|(_, t)| t).find(|t| handler(t) == Some(kind))
}

pub fn inspect(bytes: &[u8]) -> Result<Mp4Info, String> {
    let top: Vec<(&[u8], &[u8])> = boxes(bytes).collect();
    let moov_at = top.iter().position(|(k, _)| *k == b"moov").ok_or("no moov box")?;
    let mdat_at = top.iter().position(|(k, _)| *k == b"mdat").ok_or("no mdat box")?;
    let moov = top[moov_at].1;
    let (movie_timescale, _) = timescale_duration(child(moov, b"mvhd").ok_or("no mvhd")?).ok_or("short mvhd")?;
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
        audio_channels: None,
        audio_duration_secs: None,
        audio_packets: None,
        audio_pre_skip: None,
        moov_before_mdat: moov_at < mdat_at,
    };
    for (kind, trak) in boxes(moov) {
        if kind != b"trak" {
            continue;
        }
        let mdia = child(trak, b"mdia").ok_or("trak without mdia")?;
        let handler = handler(trak).ok_or("mdia without hdlr")?;
        let (timescale, duration) = timescale_duration(child(mdia, b"mdhd").ok_or("no mdhd")?).ok_or("mdhd")?;
        let stbl = stbl(trak)?;
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
                // AudioSampleEntry: 8 (entry header) + 6 reserved + 2 dref + 8 + 2 ch + 2 bits + 4 + 4 rate (16.16),
                // then its child boxes.
                info.audio_channels = be16(entry, 24);
                info.audio_sample_rate = be32(entry, 32).map(|r| r >> 16);
                info.audio_pre_skip =
                    entry.get(36..).and_then(|children| child(children, b"dOps")).and_then(|d| be16(d, 2));
                info.audio_duration_secs = Some(match edit_duration(trak) {
                    Some(ticks) => ticks as f64 / f64::from(movie_timescale.max(1)),
                    None => duration as f64 / f64::from(timescale.max(1)),
                });
                info.audio_packets = Some(count);
                info.audio_codec = Some(codec);
            }
            _ => {}
        }
    }
    if info.codec.is_empty() {
        return Err("no video track".to_owned());
    }
    Ok(info)
}

/// A track's samples, in order, using `stsz`, `stsc` and `stco` or `co64`.
fn samples<'a>(bytes: &'a [u8], stbl: &[u8]) -> Result<Vec<&'a [u8]>, String> {
    let stsz = child(stbl, b"stsz").ok_or("no stsz")?;
    let fixed = be32(stsz, 4).ok_or("stsz")? as usize;
    let count = be32(stsz, 8).ok_or("stsz")? as usize;
    let sizes: Vec<usize> = (0..count)
        .map(|i| if fixed > 0 { Some(fixed) } else { be32(stsz, 12 + 4 * i).map(|s| s as usize) })
        .collect::<Option<_>>()
        .ok_or("short stsz")?;
    let offsets: Vec<usize> = if let Some(stco) = child(stbl, b"stco") {
        (0..be32(stco, 4).ok_or("stco")?)
            .map(|i| be32(stco, 8 + 4 * i as usize).map(|o| o as usize))
            .collect::<Option<_>>()
    } else {
        let co64 = child(stbl, b"co64").ok_or("no stco or co64")?;
        (0..be32(co64, 4).ok_or("co64")?)
            .map(|i| be64(co64, 8 + 8 * i as usize).map(|o| o as usize))
            .collect::<Option<_>>()
    }
    .ok_or("short chunk offsets")?;
    let stsc = child(stbl, b"stsc").ok_or("no stsc")?;
    // (first chunk, samples per chunk), first chunks 1-based and increasing.
    let runs: Vec<(usize, usize)> = (0..be32(stsc, 4).ok_or("stsc")? as usize)
        .map(|i| Some((be32(stsc, 8 + 12 * i)? as usize, be32(stsc, 12 + 12 * i)? as usize)))
        .collect::<Option<_>>()
        .ok_or("short stsc")?;
    let mut out = Vec::with_capacity(count);
    for (c, off) in offsets.into_iter().enumerate() {
        let per = runs.iter().rev().find(|(first, _)| *first <= c + 1).map_or(0, |r| r.1);
        let mut at = off;
        for _ in 0..per {
            let Some(size) = sizes.get(out.len()) else { break };
            out.push(bytes.get(at..at + size).ok_or("sample outside the file")?);
            at += size;
        }
    }
    if out.len() != count {
        return Err(format!("the chunks hold {} of {count} samples", out.len()));
    }
    Ok(out)
}

/// A video track's parameter sets and its samples (AVCC: 4-byte NAL lengths).
#[derive(Debug, Clone)]
pub struct VideoSamples<'a> {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub samples: Vec<&'a [u8]>,
}

/// The video track's parameter sets and samples, for tools and tests that decode
/// a file back.
pub fn video_samples(bytes: &[u8]) -> Result<VideoSamples<'_>, String> {
    let trak = track(moov(bytes)?, b"vide").ok_or("no video track")?;
    let stbl = stbl(trak)?;
    let stsd = child(stbl, b"stsd").ok_or("no stsd")?;
    // stsd: version/flags(4) count(4), then the avc1 entry: size(4) type(4) and
    // 78 bytes of visual sample entry before its child boxes.
    let avc1 = stsd.get(16..).ok_or("short stsd")?;
    let avcc = child(avc1.get(78..).ok_or("short avc1")?, b"avcC").ok_or("no avcC")?;
    let sps_len = be16(avcc, 6).ok_or("short avcC")? as usize;
    let sps = avcc.get(8..8 + sps_len).ok_or("short sps")?.to_vec();
    let pps_at = 8 + sps_len + 1;
    let pps_len = be16(avcc, pps_at).ok_or("short avcC")? as usize;
    let pps = avcc.get(pps_at + 2..pps_at + 2 + pps_len).ok_or("short pps")?.to_vec();
    Ok(VideoSamples { sps, pps, samples: samples(bytes, stbl)? })
}

/// The audio track's samples (for Opus, one packet each), for tests and tools
/// that decode the sound back.
pub fn audio_samples(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let trak = track(moov(bytes)?, b"soun").ok_or("no audio track")?;
    samples(bytes, stbl(trak)?)
}
