//! Probing MP4 and QuickTime (MOV) files from any `Read + Seek` source without
//! reading the media: the top-level boxes are walked with seeks (over `mdat`),
//! only `ftyp` and `moov` (the index, capped in size) are read. The same parse
//! gives the sample tables the demuxer walks on demand. Every size in the file
//! is checked against the file's length and a cap before anything is read or
//! allocated, and every read is bounds-checked: a garbled file is an error,
//! never a panic. Fragmented MP4 (`moof`, `mvex`) is refused.

use std::io::{Read, Seek, SeekFrom};

pub use crate::h264::{H264Info, MAX_MACROBLOCKS};

use crate::h264;

/// The most `moov` we read: real indexes are far smaller (a 200 MB phone
/// video's is well under 2 MiB), so anything larger is refused as absurd.
pub const MAX_MOOV_BYTES: u64 = 64 << 20;
/// The most a single sample may take (a 4K intra frame is a few MiB).
pub const MAX_SAMPLE_BYTES: u32 = 32 << 20;
/// The most samples a track may have: over 4 hours at 60 fps, far beyond any
/// input the models take, and it bounds what a walk over the tables costs.
pub const MAX_SAMPLES: u32 = 1 << 20;
/// The largest picture side we accept from a file at all.
pub const MAX_SIDE: u32 = 16_384;
/// Top-level boxes walked before the file is called absurd.
const MAX_TOP_BOXES: u32 = 100_000;
const MAX_FTYP_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The bytes are not an MP4/MOV file at all (another format, or garbage).
    #[error("not an MP4/MOV file: {0}")]
    NotMp4(String),
    #[error("the file has no video track")]
    NoVideoTrack,
    /// The file ends inside a box, or a sample lies past its end.
    #[error("the file is truncated: {0}")]
    Truncated(String),
    /// A box or table contradicts itself or the file.
    #[error("the file is corrupt: {0}")]
    Corrupt(String),
    /// A size, count or dimension beyond any sane file (and beyond our caps).
    #[error("the file is too large to read: {0}")]
    TooLarge(String),
    /// Fragmented MP4 keeps its samples in `moof` boxes, which we do not read.
    #[error(
        "fragmented MP4 (moof/mvex) is not supported; remux it as a regular MP4 (e.g. ffmpeg -movflags +faststart)"
    )]
    Fragmented,
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// ISO base media (MP4, M4V, 3GP): an `ftyp` with an ISO brand.
    Mp4,
    /// Apple QuickTime: major brand `qt  `, or no `ftyp` at all (older MOV).
    QuickTime,
}

/// What a probe of an MP4/MOV file found.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    pub container: Container,
    /// `ftyp`'s major brand ("isom", "qt  ", "mp42"...); empty without `ftyp`.
    pub major_brand: String,
    pub compatible_brands: Vec<String>,
    /// The movie's duration (`mvhd`); the longest track's when `mvhd` has none.
    pub duration_ms: u64,
    /// Whether the index comes before the media ("faststart").
    pub moov_before_mdat: bool,
    pub video: VideoInfo,
    pub audio: Option<AudioInfo>,
}

/// The first video track.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// The sample entry's four-character code: `avc1`, `avc3`, `hvc1`, `hev1`,
    /// `vp09`, `av01`, `apcn`...
    pub codec: String,
    /// For H.264 (`avc1`/`avc3`): profile, level and the stream's features.
    pub h264: Option<H264Info>,
    /// The picture size as coded in the sample entry (for H.264, the SPS's
    /// cropped size when it has one), before any rotation.
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation the track header asks players to apply: 0, 90, 180
    /// or 270 (phones record portrait video as rotated landscape).
    pub rotation: u32,
    /// Samples (frames) in the track.
    pub frames: u32,
    /// Average frames per second: frames over the summed sample durations.
    pub frame_rate: f64,
    /// Whether the sample durations differ (the last sample is not counted:
    /// muxers often give it whatever is left).
    pub variable_frame_rate: bool,
    /// The media's own length: the summed sample durations.
    pub duration_ms: u64,
    pub timescale: u32,
}

impl VideoInfo {
    /// The size a player shows: `width` x `height` turned by `rotation`.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 { (self.height, self.width) } else { (self.width, self.height) }
    }

    /// Whether vidgate's local renderer can decode this track (see
    /// [`crate::decode`] for what openh264 reads); the error names the codec
    /// and, for H.264, the profile or feature it cannot read.
    pub fn check_decodable(&self) -> Result<(), Unsupported> {
        match (self.codec.as_str(), &self.h264) {
            ("avc1" | "avc3", Some(h)) => h.check_decodable(),
            ("avc1" | "avc3", None) => Err(Unsupported {
                codec: "H.264".to_owned(),
                detail: "the track has no readable avcC configuration".to_owned(),
            }),
            (other, _) => Err(Unsupported { codec: codec_name(other), detail: "only H.264 is decoded".to_owned() }),
        }
    }
}

/// An input the local renderer cannot decode: which codec, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec} video cannot be read by the local renderer: {detail}")]
pub struct Unsupported {
    /// A human name: "H.264 High 10 (profile_idc 110)", "HEVC (hvc1)"...
    pub codec: String,
    pub detail: String,
}

fn codec_name(fourcc: &str) -> String {
    let name = match fourcc {
        "hvc1" | "hev1" => "HEVC",
        "vp09" => "VP9",
        "vp08" => "VP8",
        "av01" => "AV1",
        "mp4v" => "MPEG-4 Part 2",
        "apcn" | "apch" | "apcs" | "apco" | "ap4h" | "ap4x" => "ProRes",
        "jpeg" | "mjpa" | "mjpb" => "Motion JPEG",
        "encv" => "Encrypted",
        "dvh1" | "dvhe" | "dva1" | "dvav" => "Dolby Vision",
        "avc2" | "avc4" => "H.264",
        _ => return format!("'{fourcc}'"),
    };
    format!("{name} ({fourcc})")
}

/// The first audio track.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// The sample entry's code: `mp4a` (AAC), `Opus`, `ac-3`, `ec-3`, `fLaC`,
    /// `alac`, `lpcm`, `sowt`...
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Samples (for most codecs, packets) in the track.
    pub samples: u32,
    /// How long it plays: its edit list's length when it has one, else the
    /// media's.
    pub duration_ms: u64,
    pub timescale: u32,
    /// For Opus, the `dOps` pre-skip.
    pub opus_pre_skip: Option<u16>,
}

/// Probes an MP4/MOV file, reading only its boxes' headers, `ftyp` and `moov`.
pub fn probe<R: Read + Seek>(r: &mut R) -> Result<MediaInfo, ProbeError> {
    Ok(Movie::read(r)?.info)
}

/// Probes the file at `path`.
pub fn probe_path(path: &std::path::Path) -> Result<MediaInfo, ProbeError> {
    probe(&mut std::io::BufReader::new(std::fs::File::open(path)?))
}

// ---------------------------------------------------------------------------
// Boxes

/// One box in a byte slice: its type and its body.
pub(crate) struct Bx<'a> {
    pub kind: [u8; 4],
    pub body: &'a [u8],
    /// The whole box, header included.
    pub raw: &'a [u8],
}

/// A box header: its type, the header's length and the whole box's length
/// (`None`: to the end of the enclosing space).
fn header(head: &[u8]) -> Option<([u8; 4], u64, Option<u64>)> {
    let size = be32(head, 0)?;
    let kind: [u8; 4] = head.get(4..8)?.try_into().ok()?;
    match size {
        0 => Some((kind, 8, None)),
        1 => Some((kind, 16, Some(be64(head, 8)?))),
        n => Some((kind, 8, Some(u64::from(n)))),
    }
}

/// The boxes in `data`, in order. A box that does not fit is an error (and the
/// last item); fewer than 8 bytes left over are tolerated (QuickTime ends some
/// containers with a 32-bit zero).
pub(crate) fn boxes(data: &[u8]) -> impl Iterator<Item = Result<Bx<'_>, ProbeError>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || data.len().saturating_sub(pos) < 8 {
            return None;
        }
        let rest = &data[pos..];
        let item = (|| {
            let (kind, head, size) = header(rest).ok_or_else(|| corrupt("a box header is cut off"))?;
            let size = size.unwrap_or(rest.len() as u64);
            if size < head || size > rest.len() as u64 {
                return Err(corrupt(format!("box '{}' of {size} bytes does not fit its parent", fourcc(&kind))));
            }
            let raw = &rest[..size as usize];
            Ok(Bx { kind, body: &raw[head as usize..], raw })
        })();
        match &item {
            Ok(b) => pos += b.raw.len(),
            Err(_) => failed = true,
        }
        Some(item)
    })
}

/// The first child of type `kind`.
pub(crate) fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<Option<Bx<'a>>, ProbeError> {
    for b in boxes(data) {
        let b = b?;
        if &b.kind == kind {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

fn need<'a>(data: &'a [u8], kind: &[u8; 4], parent: &str) -> Result<&'a [u8], ProbeError> {
    child(data, kind)?.map(|b| b.body).ok_or_else(|| corrupt(format!("{parent} has no {}", fourcc(kind))))
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

pub(crate) fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn corrupt(msg: impl Into<String>) -> ProbeError {
    ProbeError::Corrupt(msg.into())
}

pub(crate) fn fourcc(kind: &[u8]) -> String {
    kind.iter().map(|&c| if (0x20..0x7f).contains(&c) { char::from(c) } else { '?' }).collect()
}

/// (timescale, duration) from an `mvhd` or `mdhd` body, version 0 or 1.
fn timescale_duration(hd: &[u8], what: &str) -> Result<(u32, u64), ProbeError> {
    let short = || corrupt(format!("{what} is cut short"));
    let (ts, d) = if hd.first() == Some(&1) {
        (be32(hd, 20).ok_or_else(short)?, be64(hd, 24).ok_or_else(short)?)
    } else {
        (be32(hd, 12).ok_or_else(short)?, u64::from(be32(hd, 16).ok_or_else(short)?))
    };
    // An all-ones duration means "unknown".
    let d = if d == u64::from(u32::MAX) || d == u64::MAX { 0 } else { d };
    Ok((ts, d))
}

fn ticks_to_ms(ticks: u64, timescale: u32) -> u64 {
    (u128::from(ticks) * 1000 / u128::from(timescale.max(1))).min(u128::from(u64::MAX)) as u64
}

// ---------------------------------------------------------------------------
// The file

/// A parsed file: what it holds, and the sample tables of its first video and
/// audio tracks.
pub(crate) struct Movie {
    pub info: MediaInfo,
    pub movie_timescale: u32,
    pub video: Track,
    pub audio: Option<Track>,
}

/// What the first bytes look like when they are not MP4, for a useful error.
fn sniff(head: &[u8]) -> &'static str {
    let starts = |sig: &[u8]| head.starts_with(sig);
    if starts(&[0x1a, 0x45, 0xdf, 0xa3]) {
        "it is Matroska/WebM"
    } else if starts(b"RIFF") {
        "it is a RIFF file (AVI or WAV)"
    } else if starts(b"\x89PNG") {
        "it is a PNG image"
    } else if starts(&[0xff, 0xd8, 0xff]) {
        "it is a JPEG image"
    } else if starts(b"GIF8") {
        "it is a GIF image"
    } else if starts(b"FLV") {
        "it is Flash video"
    } else if starts(&[0, 0, 0, 1]) || starts(&[0, 0, 1]) {
        "it looks like a raw H.264/H.265 stream without a container"
    } else if head.first() == Some(&0x47) {
        "it may be an MPEG transport stream"
    } else {
        "it does not start with an MP4/MOV box"
    }
}

/// Boxes that may open an MP4/MOV file.
const FIRST_BOXES: [&[u8; 4]; 9] = [b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp"];

impl Movie {
    pub(crate) fn read<R: Read + Seek>(r: &mut R) -> Result<Movie, ProbeError> {
        let file_len = r.seek(SeekFrom::End(0))?;
        r.seek(SeekFrom::Start(0))?;
        let mut ftyp: Option<Vec<u8>> = None;
        let mut moov: Option<Vec<u8>> = None;
        let mut moov_before_mdat = None;
        let mut pos = 0u64;
        let mut count = 0u32;
        while pos < file_len {
            count += 1;
            if count > MAX_TOP_BOXES {
                return Err(ProbeError::TooLarge(format!("more than {MAX_TOP_BOXES} top-level boxes")));
            }
            let left = file_len - pos;
            let mut head = [0u8; 16];
            let n = left.min(16) as usize;
            r.read_exact(&mut head[..n])?;
            if pos == 0 && (n < 8 || !FIRST_BOXES.iter().any(|k| head[4..8] == k[..])) {
                return Err(ProbeError::NotMp4(sniff(&head[..n]).to_owned()));
            }
            let Some((kind, head_len, size)) = header(&head[..n]) else {
                return Err(ProbeError::Truncated(format!("the file ends inside a box header at byte {pos}")));
            };
            let size = size.unwrap_or(left);
            if size < head_len {
                return Err(corrupt(format!("box '{}' at byte {pos} has an impossible size {size}", fourcc(&kind))));
            }
            if size > left {
                return Err(ProbeError::Truncated(format!(
                    "box '{}' at byte {pos} needs {size} bytes, the file has {left} left",
                    fourcc(&kind)
                )));
            }
            let body_len = size - head_len;
            match &kind {
                b"ftyp" if ftyp.is_none() => {
                    if body_len > MAX_FTYP_BYTES {
                        return Err(ProbeError::TooLarge(format!("an ftyp of {body_len} bytes")));
                    }
                    ftyp = Some(read_body(r, pos + head_len, body_len)?);
                }
                b"moov" => {
                    if moov.is_some() {
                        return Err(corrupt("the file has two moov boxes"));
                    }
                    if body_len > MAX_MOOV_BYTES {
                        return Err(ProbeError::TooLarge(format!(
                            "a moov of {body_len} bytes (the cap is {MAX_MOOV_BYTES})"
                        )));
                    }
                    moov = Some(read_body(r, pos + head_len, body_len)?);
                    moov_before_mdat.get_or_insert(true);
                }
                b"mdat" => {
                    moov_before_mdat.get_or_insert(false);
                }
                b"moof" | b"mfra" => return Err(ProbeError::Fragmented),
                _ => {}
            }
            pos += size;
            r.seek(SeekFrom::Start(pos))?;
        }
        let Some(moov) = moov else {
            return Err(if pos == 0 {
                ProbeError::NotMp4("the file is empty".to_owned())
            } else {
                ProbeError::Truncated(
                    "the file has no moov box (the index): the upload or recording did not finish".to_owned(),
                )
            });
        };
        let (container, major_brand, compatible_brands) = match &ftyp {
            None => (Container::QuickTime, String::new(), Vec::new()),
            Some(f) => {
                let major = f.get(..4).map(fourcc).unwrap_or_default();
                let compatible: Vec<String> = f.get(8..).unwrap_or(&[]).chunks_exact(4).take(64).map(fourcc).collect();
                let container = if major == "qt  " { Container::QuickTime } else { Container::Mp4 };
                (container, major, compatible)
            }
        };
        let movie = parse_moov(&moov, container, file_len)?;
        let info = MediaInfo {
            container,
            major_brand,
            compatible_brands,
            duration_ms: movie.duration_ms,
            moov_before_mdat: moov_before_mdat.unwrap_or(true),
            video: movie.video_info,
            audio: movie.audio_info,
        };
        Ok(Movie { info, movie_timescale: movie.movie_timescale, video: movie.video, audio: movie.audio })
    }
}

/// Reads `len` bytes at `at`; `len` has been checked against the file and a cap.
fn read_body<R: Read + Seek>(r: &mut R, at: u64, len: u64) -> Result<Vec<u8>, ProbeError> {
    r.seek(SeekFrom::Start(at))?;
    let mut out = Vec::new();
    // `take` + `read_to_end` grows with what is really there.
    r.take(len).read_to_end(&mut out)?;
    if (out.len() as u64) < len {
        return Err(ProbeError::Truncated("the file ends inside a box".to_owned()));
    }
    Ok(out)
}

struct ParsedMoov {
    duration_ms: u64,
    movie_timescale: u32,
    video_info: VideoInfo,
    video: Track,
    audio_info: Option<AudioInfo>,
    audio: Option<Track>,
}

fn parse_moov(moov: &[u8], container: Container, file_len: u64) -> Result<ParsedMoov, ProbeError> {
    if child(moov, b"mvex")?.is_some() {
        return Err(ProbeError::Fragmented);
    }
    let (movie_ts, movie_duration) = timescale_duration(need(moov, b"mvhd", "moov")?, "mvhd")?;
    let mut video: Option<(VideoInfo, Track)> = None;
    let mut audio: Option<(AudioInfo, Track)> = None;
    for b in boxes(moov) {
        let b = b?;
        if &b.kind != b"trak" {
            continue;
        }
        let trak = b.body;
        let mdia = need(trak, b"mdia", "trak")?;
        let handler = need(mdia, b"hdlr", "mdia")?.get(8..12).ok_or_else(|| corrupt("hdlr is cut short"))?;
        let want = match handler {
            b"vide" if video.is_none() => true,
            b"soun" if audio.is_none() => true,
            _ => false,
        };
        if !want {
            continue;
        }
        let track = Track::parse(trak, mdia, handler == b"vide", container, file_len)?;
        if handler == b"vide" {
            video = Some((video_info(trak, &track)?, track));
        } else {
            audio = Some((audio_info(&track, movie_ts)?, track));
        }
    }
    let (video_info, video) = video.ok_or(ProbeError::NoVideoTrack)?;
    let audio_ms = audio.as_ref().map_or(0, |(a, _)| a.duration_ms);
    let duration_ms = match movie_duration {
        0 => video_info.duration_ms.max(audio_ms),
        d if movie_ts == 0 => return Err(corrupt(format!("mvhd has a duration of {d} but no timescale"))),
        d => ticks_to_ms(d, movie_ts),
    };
    let (audio_info, audio) = audio.unzip();
    Ok(ParsedMoov { duration_ms, movie_timescale: movie_ts, video_info, video, audio_info, audio })
}

fn video_info(trak: &[u8], track: &Track) -> Result<VideoInfo, ProbeError> {
    let entry = track.entry_body();
    // VisualSampleEntry: 6 reserved, data reference, 16 pre-defined/reserved,
    // then width and height; its child boxes start 78 bytes in.
    let width = u32::from(be16(entry, 24).ok_or_else(|| corrupt("the video sample entry is cut short"))?);
    let height = u32::from(be16(entry, 26).ok_or_else(|| corrupt("the video sample entry is cut short"))?);
    let codec = fourcc(&track.entry_kind);
    let h264 = match codec.as_str() {
        "avc1" | "avc3" => match child(track.entry_children(), b"avcC")? {
            Some(avcc) => Some(h264::parse_avcc(avcc.body)?),
            None => None,
        },
        _ => None,
    };
    let tkhd = need(trak, b"tkhd", "trak")?;
    let matrix_at = if tkhd.first() == Some(&1) { 52 } else { 40 };
    let m = |i: usize| be32(tkhd, matrix_at + 4 * i).map(|v| v as i32);
    let rotation = match (m(0), m(1)) {
        (Some(a), Some(b)) => match (a.signum(), b.signum()) {
            (0, 1) => 90,
            (-1, 0) => 180,
            (0, -1) => 270,
            _ => 0,
        },
        _ => 0,
    };
    // The SPS knows the real (cropped) picture size; the sample entry may round.
    let (width, height) = match &h264 {
        Some(h) if h.width > 0 && h.height > 0 => (h.width, h.height),
        _ => (width, height),
    };
    if width == 0 || height == 0 {
        return Err(corrupt("the video track has no picture size"));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(ProbeError::TooLarge(format!("a {width}x{height} picture")));
    }
    let frames = track.sample_count;
    let ticks = track.total_ticks;
    let frame_rate = if ticks > 0 { f64::from(frames) * f64::from(track.timescale) / ticks as f64 } else { 0.0 };
    Ok(VideoInfo {
        codec,
        h264,
        width,
        height,
        rotation,
        frames,
        frame_rate,
        variable_frame_rate: track.variable_durations,
        duration_ms: ticks_to_ms(ticks, track.timescale),
        timescale: track.timescale,
    })
}

fn audio_info(track: &Track, movie_ts: u32) -> Result<AudioInfo, ProbeError> {
    let entry = track.entry_body();
    let short = || corrupt("the audio sample entry is cut short");
    let (channels, sample_rate) = if track.audio_layout == AudioLayout::QuickTimeV2 {
        let rate = f64::from_bits(be64(entry, 32).ok_or_else(short)?);
        let rate = if rate.is_finite() && rate > 0.0 && rate < 1e7 { rate as u32 } else { 0 };
        (be32(entry, 40).ok_or_else(short)?.min(u32::from(u16::MAX)) as u16, rate)
    } else {
        (be16(entry, 16).ok_or_else(short)?, be32(entry, 24).ok_or_else(short)? >> 16)
    };
    let opus_pre_skip = match child(track.entry_children(), b"dOps") {
        Ok(Some(d)) => be16(d.body, 2),
        _ => None,
    };
    // AAC's sample entry often says 2 channels whatever the stream has; its
    // AudioSpecificConfig knows.
    let (sample_rate, channels) = match aac_config(track.entry_children()) {
        Some((rate, ch)) => (if rate > 0 { rate } else { sample_rate }, if ch > 0 { ch } else { channels }),
        None => (sample_rate, channels),
    };
    let duration_ms = match track.edit {
        Some(e) if movie_ts > 0 => ticks_to_ms(e.duration, movie_ts),
        _ => ticks_to_ms(track.total_ticks, track.timescale),
    };
    Ok(AudioInfo {
        codec: fourcc(&track.entry_kind),
        sample_rate,
        channels,
        samples: track.sample_count,
        duration_ms,
        timescale: track.timescale,
        opus_pre_skip,
    })
}

/// (sample rate, channels) from an `esds` (directly among the entry's
/// children, or inside QuickTime's `wave`): the AudioSpecificConfig's
/// sampling frequency and channel configuration (0 where it defers).
fn aac_config(children: &[u8]) -> Option<(u32, u16)> {
    let esds = match child(children, b"esds").ok()? {
        Some(e) => e.body,
        None => child(child(children, b"wave").ok()??.body, b"esds").ok()??.body,
    };
    // Descriptors: a tag, a size in up to four 7-bit groups, the payload.
    fn descriptor(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let mut size = 0usize;
        let mut at = 1;
        loop {
            let c = *b.get(at)?;
            size = (size << 7) | usize::from(c & 0x7f);
            at += 1;
            if c & 0x80 == 0 || at > 4 {
                break;
            }
        }
        let body = b.get(at..at.checked_add(size)?)?;
        Some((tag, body, &b[at + size..]))
    }
    let (tag, es, _) = descriptor(esds.get(4..)?)?;
    if tag != 3 {
        return None;
    }
    // ES_Descriptor: ES_ID, flags, then optional fields the flags announce.
    let flags = *es.get(2)?;
    let mut at = 3;
    if flags & 0x80 != 0 {
        at += 2;
    }
    if flags & 0x40 != 0 {
        at += 1 + usize::from(*es.get(at)?);
    }
    if flags & 0x20 != 0 {
        at += 2;
    }
    let (tag, dc, _) = descriptor(es.get(at..)?)?;
    if tag != 4 {
        return None;
    }
    // DecoderConfigDescriptor: 13 bytes, then the DecoderSpecificInfo.
    let (tag, asc, _) = descriptor(dc.get(13..)?)?;
    if tag != 5 || asc.len() < 2 {
        return None;
    }
    let bits = u32::from(be16(asc, 0)?);
    let object = bits >> 11;
    let index = (bits >> 7) & 0xf;
    const RATES: [u32; 13] =
        [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];
    // An escaped object type or an explicit rate (both rare): leave it to the
    // sample entry.
    if object == 31 || index == 15 {
        return None;
    }
    let rate = RATES.get(index as usize).copied().unwrap_or(0);
    let channels = ((bits >> 3) & 0xf) as u16;
    // Channel configuration 7 is 8 channels; 0 means "in the stream".
    Some((rate, if channels == 7 { 8 } else { channels }))
}

// ---------------------------------------------------------------------------
// Sample tables

/// How an audio sample entry is laid out after its first 8 bytes of body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioLayout {
    /// ISO AudioSampleEntry (and QuickTime sound description version 0).
    Iso,
    /// QuickTime version 1: 16 more bytes before the children.
    QuickTimeV1,
    /// QuickTime version 2: a different layout, 36 more bytes.
    QuickTimeV2,
}

/// A track's first edit: where in the media it starts and how long it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Edit {
    /// In the media's timescale; 0 when the edit starts with the media.
    pub media_time: u64,
    /// The edit list's total length, in the movie's timescale.
    pub duration: u64,
}

/// One track's sample tables, validated, kept as their raw bodies.
pub(crate) struct Track {
    pub timescale: u32,
    /// The first sample entry, verbatim (header included).
    pub entry: Vec<u8>,
    pub entry_kind: [u8; 4],
    /// A video track (its entry is a VisualSampleEntry).
    pub visual: bool,
    pub audio_layout: AudioLayout,
    pub sample_count: u32,
    /// The summed sample durations, in `timescale` ticks.
    pub total_ticks: u64,
    pub variable_durations: bool,
    pub edit: Option<Edit>,
    sizes: Sizes,
    /// Chunk offsets: the `stco`/`co64` entries.
    offsets: Vec<u8>,
    offset_width: usize,
    chunk_count: u32,
    /// `stsc` entries (first chunk, samples per chunk), 12 bytes each.
    stsc: Vec<u8>,
    /// `stts` entries (count, delta).
    stts: Vec<u8>,
    /// `ctts` entries (count, offset), when the track has one.
    ctts: Option<Vec<u8>>,
    /// `stss` sample numbers (1-based), when not every sample is a sync sample.
    stss: Option<Vec<u8>>,
}

enum Sizes {
    Fixed(u32),
    /// `stsz` entries, 4 bytes each.
    Table(Vec<u8>),
    /// `stz2` entries of 4, 8 or 16 bits.
    Compact(Vec<u8>, u8),
}

/// A full box's entries after its version/flags and a 32-bit count, checked to
/// be all there: (count, entries).
fn table<'a>(body: &'a [u8], entry: usize, what: &str) -> Result<(u32, &'a [u8]), ProbeError> {
    let count = be32(body, 4).ok_or_else(|| corrupt(format!("{what} is cut short")))?;
    let need = (count as u64) * entry as u64;
    let entries = &body[8.min(body.len())..];
    if need > entries.len() as u64 {
        return Err(corrupt(format!("{what} claims {count} entries but holds {}", entries.len() / entry)));
    }
    Ok((count, &entries[..need as usize]))
}

impl Track {
    fn parse(trak: &[u8], mdia: &[u8], visual: bool, container: Container, file_len: u64) -> Result<Track, ProbeError> {
        let (timescale, _) = timescale_duration(need(mdia, b"mdhd", "mdia")?, "mdhd")?;
        if timescale == 0 {
            return Err(corrupt("a track has a timescale of 0"));
        }
        let stbl = need(need(mdia, b"minf", "mdia")?, b"stbl", "minf")?;
        let stsd = need(stbl, b"stsd", "stbl")?;
        let stsd_version = stsd.first().copied().unwrap_or(0);
        let entry = boxes(stsd.get(8..).unwrap_or(&[]))
            .next()
            .transpose()?
            .ok_or_else(|| corrupt("stsd has no sample entry"))?;
        // A QuickTime sound description says its layout in its version; an
        // ISO file's v1 entry (under a v1 stsd) keeps the v0 layout.
        let entry_version = be16(entry.body, 8).unwrap_or(0);
        let audio_layout = match (container, stsd_version, entry_version) {
            (_, 0, 1) | (Container::QuickTime, _, 1) => AudioLayout::QuickTimeV1,
            (_, 0, 2) | (Container::QuickTime, _, 2) => AudioLayout::QuickTimeV2,
            _ => AudioLayout::Iso,
        };

        let sizes = if let Some(stsz) = child(stbl, b"stsz")? {
            let fixed = be32(stsz.body, 4).ok_or_else(|| corrupt("stsz is cut short"))?;
            let count = be32(stsz.body, 8).ok_or_else(|| corrupt("stsz is cut short"))?;
            if fixed > 0 {
                (count, Sizes::Fixed(fixed))
            } else {
                let (_, entries) = table(&stsz.body[4..], 4, "stsz")?;
                (count, Sizes::Table(entries.to_vec()))
            }
        } else if let Some(stz2) = child(stbl, b"stz2")? {
            let field = *stz2.body.get(7).ok_or_else(|| corrupt("stz2 is cut short"))?;
            if !matches!(field, 4 | 8 | 16) {
                return Err(corrupt(format!("stz2 with {field}-bit sizes")));
            }
            let count = be32(stz2.body, 8).ok_or_else(|| corrupt("stz2 is cut short"))?;
            let need = (u64::from(count) * u64::from(field)).div_ceil(8);
            let entries = stz2.body.get(12..).unwrap_or(&[]);
            if need > entries.len() as u64 {
                return Err(corrupt(format!("stz2 claims {count} entries but is shorter")));
            }
            (count, Sizes::Compact(entries[..need as usize].to_vec(), field))
        } else {
            return Err(corrupt("stbl has no stsz or stz2"));
        };
        let (sample_count, sizes) = sizes;
        if sample_count > MAX_SAMPLES {
            return Err(ProbeError::TooLarge(format!("a track of {sample_count} samples (the cap is {MAX_SAMPLES})")));
        }

        let (offsets, offset_width, chunk_count) = if let Some(stco) = child(stbl, b"stco")? {
            let (n, e) = table(stco.body, 4, "stco")?;
            (e.to_vec(), 4, n)
        } else if let Some(co64) = child(stbl, b"co64")? {
            let (n, e) = table(co64.body, 8, "co64")?;
            (e.to_vec(), 8, n)
        } else {
            return Err(corrupt("stbl has no stco or co64"));
        };
        let (_, stsc) = table(need(stbl, b"stsc", "stbl")?, 12, "stsc")?;
        let (_, stts) = table(need(stbl, b"stts", "stbl")?, 8, "stts")?;
        let ctts = match child(stbl, b"ctts")? {
            Some(c) => Some(table(c.body, 8, "ctts")?.1.to_vec()),
            None => None,
        };
        let stss = match child(stbl, b"stss")? {
            Some(s) => Some(table(s.body, 4, "stss")?.1.to_vec()),
            None => None,
        };
        let edit = first_edit(trak)?;

        let mut track = Track {
            timescale,
            entry_kind: entry.kind,
            entry: entry.raw.to_vec(),
            visual,
            audio_layout,
            sample_count,
            total_ticks: 0,
            variable_durations: false,
            edit,
            sizes,
            offsets,
            offset_width,
            chunk_count,
            stsc: stsc.to_vec(),
            stts: stts.to_vec(),
            ctts,
            stss,
        };
        track.validate(file_len)?;
        Ok(track)
    }

    /// The sample entry's body after its 8-byte box header.
    pub(crate) fn entry_body(&self) -> &[u8] {
        self.entry.get(8..).unwrap_or(&[])
    }

    /// The sample entry's child boxes (`avcC`, `esds`, `dOps`...).
    pub(crate) fn entry_children(&self) -> &[u8] {
        // The fields before the children: 78 bytes in a visual entry, 28, 44
        // or 64 in an audio one.
        let skip = match (self.visual, self.audio_layout) {
            (true, _) => 78,
            (false, AudioLayout::Iso) => 28,
            (false, AudioLayout::QuickTimeV1) => 44,
            (false, AudioLayout::QuickTimeV2) => 64,
        };
        self.entry_body().get(skip..).unwrap_or(&[])
    }

    fn size_of(&self, i: u32) -> Option<u32> {
        match &self.sizes {
            Sizes::Fixed(s) => Some(*s),
            Sizes::Table(t) => be32(t, 4 * i as usize),
            Sizes::Compact(t, 16) => be16(t, 2 * i as usize).map(u32::from),
            Sizes::Compact(t, 8) => t.get(i as usize).map(|b| u32::from(*b)),
            Sizes::Compact(t, _) => {
                t.get(i as usize / 2).map(|b| u32::from(if i.is_multiple_of(2) { b >> 4 } else { b & 0x0f }))
            }
        }
    }

    fn chunk_offset(&self, chunk: u32) -> Option<u64> {
        if self.offset_width == 8 {
            be64(&self.offsets, 8 * chunk as usize)
        } else {
            be32(&self.offsets, 4 * chunk as usize).map(u64::from)
        }
    }

    /// Checks that the tables agree with each other and that every sample lies
    /// inside the file; sums the durations.
    fn validate(&mut self, file_len: u64) -> Result<(), ProbeError> {
        let n = self.sample_count;
        // stsc: first chunks 1-based and increasing, counts non-zero, and
        // enough chunks for every sample.
        let runs = self.stsc.len() / 12;
        let mut held = 0u64;
        for k in 0..runs {
            let first = be32(&self.stsc, 12 * k).unwrap_or(0);
            let per = be32(&self.stsc, 12 * k + 4).unwrap_or(0);
            let next = if k + 1 < runs { be32(&self.stsc, 12 * (k + 1)).unwrap_or(0) } else { self.chunk_count + 1 };
            if first == 0 || next <= first || (k + 1 == runs && first > self.chunk_count) {
                return Err(corrupt("stsc's chunk runs are out of order"));
            }
            if per == 0 {
                return Err(corrupt("stsc has a run of empty chunks"));
            }
            held += u64::from(next - first) * u64::from(per);
        }
        if held < u64::from(n) {
            return Err(corrupt(format!("the chunks hold {held} of {n} samples")));
        }
        // stts: enough durations for every sample.
        let mut counted = 0u64;
        let mut total = 0u64;
        let mut deltas: Option<u32> = None;
        let entries = self.stts.len() / 8;
        for k in 0..entries {
            let count = be32(&self.stts, 8 * k).unwrap_or(0);
            let delta = be32(&self.stts, 8 * k + 4).unwrap_or(0);
            let take = u64::from(count).min(u64::from(n).saturating_sub(counted));
            counted += take;
            total += take * u64::from(delta);
            // The last sample's duration is often whatever was left over.
            let last_single = k + 1 == entries && count == 1;
            if take > 0 && !last_single {
                match deltas {
                    None => deltas = Some(delta),
                    Some(d) if d != delta => self.variable_durations = true,
                    Some(_) => {}
                }
            }
        }
        if counted < u64::from(n) {
            return Err(corrupt(format!("stts times {counted} of {n} samples")));
        }
        self.total_ticks = total;
        // Every sample inside the file, and no absurd sample.
        let mut cursor = Cursor::new();
        while let Some(s) = cursor.next(self)? {
            if s.size > MAX_SAMPLE_BYTES {
                return Err(ProbeError::TooLarge(format!("sample {} claims {} bytes", s.index + 1, s.size)));
            }
            if s.offset.checked_add(u64::from(s.size)).is_none_or(|end| end > file_len) {
                return Err(ProbeError::Truncated(format!(
                    "sample {} of {n} lies past the end of the file (byte {} of {file_len})",
                    s.index + 1,
                    s.offset.saturating_add(u64::from(s.size))
                )));
            }
        }
        Ok(())
    }
}

fn first_edit(trak: &[u8]) -> Result<Option<Edit>, ProbeError> {
    let Some(edts) = child(trak, b"edts")? else { return Ok(None) };
    let Some(elst) = child(edts.body, b"elst")? else { return Ok(None) };
    let v1 = elst.body.first() == Some(&1);
    let size = if v1 { 20 } else { 12 };
    let (count, entries) = table(elst.body, size, "elst")?;
    let mut duration = 0u64;
    let mut media_time = None;
    for k in 0..count as usize {
        let at = k * size;
        let (d, t) = if v1 {
            (be64(entries, at).unwrap_or(0), be64(entries, at + 8).unwrap_or(0) as i64)
        } else {
            (u64::from(be32(entries, at).unwrap_or(0)), i64::from(be32(entries, at + 4).unwrap_or(0) as i32))
        };
        duration = duration.saturating_add(d);
        // An empty edit (-1) delays the track; the first real one says where
        // the media starts.
        if t >= 0 && media_time.is_none() {
            media_time = Some(t as u64);
        }
    }
    Ok(Some(Edit { media_time: media_time.unwrap_or(0), duration }))
}

/// One sample: where it is, how large, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub index: u32,
    pub offset: u64,
    pub size: u32,
    /// Decoding time, in the track's timescale.
    pub dts: u64,
    /// Presentation time: `dts` plus the `ctts` offset.
    pub pts: i64,
    pub duration: u32,
    pub sync: bool,
}

/// Walks a track's samples in decoding order, reading only the tables.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cursor {
    index: u32,
    chunk: u32,
    in_chunk: u32,
    chunk_len: u32,
    offset: u64,
    stsc_run: usize,
    stts_entry: usize,
    stts_left: u32,
    dts: u64,
    ctts_entry: usize,
    ctts_left: u32,
    stss_at: usize,
}

impl Cursor {
    pub(crate) fn new() -> Cursor {
        Cursor { chunk: u32::MAX, ..Cursor::default() }
    }

    /// The next sample, or `None` after the last.
    pub(crate) fn next(&mut self, t: &Track) -> Result<Option<Sample>, ProbeError> {
        if self.index >= t.sample_count {
            return Ok(None);
        }
        // Move to the next chunk when this one is used up.
        while self.chunk == u32::MAX || self.in_chunk >= self.chunk_len {
            self.chunk = self.chunk.wrapping_add(1);
            if self.chunk >= t.chunk_count {
                return Err(corrupt("the samples run past the last chunk"));
            }
            let runs = t.stsc.len() / 12;
            while self.stsc_run + 1 < runs
                && be32(&t.stsc, 12 * (self.stsc_run + 1)).unwrap_or(u32::MAX) <= self.chunk + 1
            {
                self.stsc_run += 1;
            }
            self.chunk_len = be32(&t.stsc, 12 * self.stsc_run + 4).unwrap_or(0);
            self.in_chunk = 0;
            self.offset = t.chunk_offset(self.chunk).ok_or_else(|| corrupt("a chunk has no offset"))?;
        }
        let size = t.size_of(self.index).ok_or_else(|| corrupt("a sample has no size"))?;
        while self.stts_left == 0 {
            let count = be32(&t.stts, 8 * self.stts_entry).ok_or_else(|| corrupt("a sample has no duration"))?;
            self.stts_left = count;
            if count == 0 {
                self.stts_entry += 1;
            }
        }
        let duration = be32(&t.stts, 8 * self.stts_entry + 4).unwrap_or(0);
        let mut cto = 0i64;
        if let Some(ctts) = &t.ctts {
            while self.ctts_left == 0 && 8 * self.ctts_entry < ctts.len() {
                self.ctts_left = be32(ctts, 8 * self.ctts_entry).unwrap_or(0);
                if self.ctts_left == 0 {
                    self.ctts_entry += 1;
                }
            }
            if self.ctts_left > 0 {
                // Version 0 is unsigned on paper, but muxers write negative
                // offsets there too; read both as signed, as players do.
                cto = i64::from(be32(ctts, 8 * self.ctts_entry + 4).unwrap_or(0) as i32);
                self.ctts_left -= 1;
                if self.ctts_left == 0 {
                    self.ctts_entry += 1;
                }
            }
        }
        let sync = match &t.stss {
            None => true,
            Some(stss) => {
                while be32(stss, 4 * self.stss_at).is_some_and(|n| n < self.index + 1) {
                    self.stss_at += 1;
                }
                be32(stss, 4 * self.stss_at) == Some(self.index + 1)
            }
        };
        let sample = Sample {
            index: self.index,
            offset: self.offset,
            size,
            dts: self.dts,
            pts: self.dts as i64 + cto,
            duration,
            sync,
        };
        self.index += 1;
        self.in_chunk += 1;
        self.offset = self.offset.saturating_add(u64::from(size));
        self.dts = self.dts.saturating_add(u64::from(duration));
        self.stts_left -= 1;
        if self.stts_left == 0 {
            self.stts_entry += 1;
        }
        Ok(Some(sample))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor as Bytes;
    use std::ops::ControlFlow;

    use super::*;
    use crate::mp4::{bx, full};
    use crate::{ShotPlan, VideoSpec};

    /// A clip from our own renderer: 256x144, 24 fps.
    pub(crate) fn own_clip(secs: u32, sound: bool) -> Vec<u8> {
        let spec = VideoSpec {
            short_side: 144,
            aspect: Some((16, 9)),
            duration_secs: secs,
            prompt: "a lighthouse, pan right".to_owned(),
            shots: ShotPlan::Single,
            sound,
            ..VideoSpec::default()
        };
        let mut out = Vec::new();
        crate::render(&spec, &mut out, &mut |_, _| ControlFlow::Continue(())).unwrap();
        out
    }

    fn data(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
    }

    fn probe_bytes(bytes: &[u8]) -> Result<MediaInfo, ProbeError> {
        probe(&mut Bytes::new(bytes))
    }

    /// Replaces the first `from` in `bytes` with `to` (same length).
    fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = bytes.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn our_own_render_probes_as_a_faststart_h264_mp4_with_opus() {
        let info = probe_bytes(&own_clip(2, true)).unwrap();
        assert_eq!((info.container, info.major_brand.as_str()), (Container::Mp4, "isom"));
        assert!(info.compatible_brands.iter().any(|b| b == "avc1"));
        assert!(info.moov_before_mdat);
        assert_eq!(info.duration_ms, 2000);
        let v = &info.video;
        assert_eq!((v.codec.as_str(), v.width, v.height, v.rotation, v.frames), ("avc1", 256, 144, 0, 48));
        assert_eq!((v.frame_rate, v.variable_frame_rate, v.duration_ms, v.timescale), (24.0, false, 2000, 24_000));
        let h = v.h264.as_ref().unwrap();
        assert_eq!((h.profile_idc, h.chroma_format_idc, h.bit_depth_luma, h.progressive), (66, 1, 8, true));
        assert_eq!((h.nal_length_size, h.cabac, h.width, h.height), (4, Some(false), 256, 144));
        assert!(h.profile_name().contains("Baseline"), "{}", h.profile_name());
        assert_eq!(v.check_decodable(), Ok(()));
        let a = info.audio.unwrap();
        assert_eq!((a.codec.as_str(), a.sample_rate, a.channels, a.duration_ms), ("Opus", 48_000, 2, 2000));
        assert!(a.opus_pre_skip.is_some());
    }

    #[test]
    fn x264_and_quicktime_files_give_their_profiles_brands_and_audio() {
        let high = probe_bytes(&data("high-bframes-aac.mp4")).unwrap();
        let h = high.video.h264.as_ref().unwrap();
        assert_eq!((h.profile_name(), h.level(), h.cabac), ("High".to_owned(), "1.1".to_owned(), Some(true)));
        assert_eq!((high.video.width, high.video.height, high.video.frames), (160, 90, 60));
        assert!((high.video.frame_rate - 30.0).abs() < 1e-9);
        let a = high.audio.unwrap();
        assert_eq!((a.codec.as_str(), a.sample_rate, a.channels), ("mp4a", 44_100, 1));
        let mov = probe_bytes(&data("main-aac.mov")).unwrap();
        assert_eq!((mov.container, mov.major_brand.as_str()), (Container::QuickTime, "qt  "));
        assert_eq!(mov.video.h264.as_ref().unwrap().profile_name(), "Main");
        assert!(!mov.moov_before_mdat);
        // ffmpeg writes AAC in MOV as a version 1 sound description.
        let a = mov.audio.unwrap();
        assert_eq!((a.codec.as_str(), a.sample_rate, a.channels), ("mp4a", 48_000, 2));
        let hevc = probe_bytes(&data("hevc.mp4")).unwrap();
        assert_eq!((hevc.video.codec.as_str(), hevc.video.h264.is_none()), ("hvc1", true));
        assert!(hevc.video.check_decodable().unwrap_err().to_string().contains("HEVC (hvc1)"));
    }

    #[test]
    fn a_qt_brand_or_no_ftyp_is_quicktime() {
        let clip = own_clip(1, false);
        let qt = probe_bytes(&patch(&clip, b"ftypisom", b"ftypqt  ")).unwrap();
        assert_eq!((qt.container, qt.major_brand.as_str()), (Container::QuickTime, "qt  "));
        // Old MOV files start without ftyp.
        let bare = probe_bytes(&patch(&clip, b"ftypisom", b"freeisom")).unwrap();
        assert_eq!((bare.container, bare.major_brand.as_str()), (Container::QuickTime, ""));
        assert_eq!(bare.video.frames, 24);
    }

    #[test]
    fn a_file_without_a_video_track_is_refused_as_such() {
        let clip = own_clip(1, true);
        // The video handler becomes a text track; the Opus track remains.
        let no_video = patch(&clip, b"vide", b"text");
        assert!(matches!(probe_bytes(&no_video), Err(ProbeError::NoVideoTrack)));
    }

    #[test]
    fn truncated_files_are_refused_as_truncated() {
        let clip = own_clip(1, false);
        let moov_end = clip.windows(4).position(|w| w == b"mdat").unwrap() - 4;
        // Cut inside moov, and cut inside mdat (the last samples are missing).
        for cut in [moov_end - 10, 200, clip.len() - 1] {
            let e = probe_bytes(&clip[..cut]).unwrap_err();
            assert!(matches!(e, ProbeError::Truncated(_)), "cut at {cut}: {e}");
        }
        // Without its moov (a recording that never finished).
        let mdat_only = [&clip[..32], &clip[moov_end..]].concat();
        let e = probe_bytes(&mdat_only).unwrap_err();
        assert!(e.to_string().contains("no moov"), "{e}");
    }

    #[test]
    fn other_formats_and_garbage_are_not_mp4() {
        for (bytes, says) in [
            (&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..], "PNG"),
            (&[0x1a, 0x45, 0xdf, 0xa3, 1, 2, 3, 4, 5][..], "WebM"),
            (&b"RIFF\0\0\0\0AVI LIST"[..], "RIFF"),
            (&b"hello world, not a video"[..], "MP4/MOV box"),
            (&[][..], "empty"),
        ] {
            match probe_bytes(bytes) {
                Err(ProbeError::NotMp4(msg)) => assert!(msg.contains(says), "{msg}"),
                other => panic!("{says}: {other:?}"),
            }
        }
    }

    #[test]
    fn fragmented_mp4_is_refused_with_a_clear_message() {
        let clip = own_clip(1, false);
        let with_moof = [&clip[..], &bx(b"moof", &full(b"mfhd", 0, 0, &[0, 0, 0, 1]))].concat();
        let e = probe_bytes(&with_moof).unwrap_err();
        assert!(matches!(e, ProbeError::Fragmented) && e.to_string().contains("fragmented"), "{e}");
    }

    /// A reader of `len` bytes that holds only `head`: the rest reads as zeros.
    struct Sparse {
        head: Vec<u8>,
        len: u64,
        pos: u64,
    }

    impl Read for Sparse {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = self.head.get((self.pos + i as u64) as usize).copied().unwrap_or(0);
            }
            self.pos += n as u64;
            Ok(n)
        }
    }

    impl Seek for Sparse {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.pos = match to {
                SeekFrom::Start(p) => p,
                SeekFrom::End(d) => self.len.saturating_add_signed(d),
                SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
            };
            Ok(self.pos)
        }
    }

    #[test]
    fn absurd_sizes_are_refused_before_anything_is_read() {
        let ftyp = bx(b"ftyp", b"isom\0\0\x02\0isom");
        // A 1 TiB file whose moov claims 100 GiB: refused by the cap, not read.
        let mut head = ftyp.clone();
        head.extend_from_slice(&1u32.to_be_bytes());
        head.extend_from_slice(b"moov");
        head.extend_from_slice(&(100u64 << 30).to_be_bytes());
        let e = probe(&mut Sparse { head, len: 1 << 40, pos: 0 }).unwrap_err();
        assert!(matches!(e, ProbeError::TooLarge(_)), "{e}");
        // A box claiming more than the file has.
        let mut short = ftyp.clone();
        short.extend_from_slice(&bx(b"moov", &[0; 16])[..20]);
        assert!(matches!(probe_bytes(&short), Err(ProbeError::Truncated(_))));
        // A table claiming a billion entries in a few bytes.
        let clip = own_clip(1, false);
        let stsz_at = clip.windows(4).position(|w| w == b"stsz").unwrap();
        let mut huge = clip.clone();
        huge[stsz_at + 12..stsz_at + 16].copy_from_slice(&1_000_000_000u32.to_be_bytes());
        let e = probe_bytes(&huge).unwrap_err();
        assert!(matches!(e, ProbeError::Corrupt(_)), "{e}");
    }

    /// Writes a one-track MP4 by hand: ftyp, mdat, then moov (so the chunk
    /// offsets are known), with the tables this test asks for.
    struct Handmade {
        brand: &'static [u8; 4],
        entry: Vec<u8>,
        samples: Vec<Vec<u8>>,
        durations: Vec<u32>,
        /// Samples per chunk, repeating.
        chunking: Vec<u32>,
        co64: bool,
        stz2: bool,
        rotation_matrix: [u32; 4],
        sync: Option<Vec<u32>>,
    }

    impl Handmade {
        fn build(&self) -> Vec<u8> {
            let u32s = |v: &[u32]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
            let ftyp = bx(b"ftyp", &[&self.brand[..], &[0, 0, 2, 0], b"isomavc1"].concat());
            let data: Vec<u8> = self.samples.concat();
            let mdat_at = ftyp.len() as u64 + 8;
            // Chunks: `chunking` samples each, cycling.
            let (mut chunks, mut per) = (Vec::new(), Vec::new());
            let (mut i, mut k, mut at) = (0usize, 0usize, mdat_at);
            while i < self.samples.len() {
                let n = (self.chunking[k % self.chunking.len()] as usize).min(self.samples.len() - i);
                chunks.push(at);
                per.push(n as u32);
                at += self.samples[i..i + n].iter().map(|s| s.len() as u64).sum::<u64>();
                i += n;
                k += 1;
            }
            let mut stsc = Vec::new();
            for (c, n) in per.iter().enumerate() {
                if c == 0 || per[c - 1] != *n {
                    stsc.extend_from_slice(&[c as u32 + 1, *n, 1]);
                }
            }
            let stsc = full(b"stsc", 0, 0, &[u32s(&[(stsc.len() / 3) as u32]), u32s(&stsc)].concat());
            let offsets = if self.co64 {
                let body: Vec<u8> = chunks.iter().flat_map(|o| o.to_be_bytes()).collect();
                full(b"co64", 0, 0, &[u32s(&[chunks.len() as u32]), body].concat())
            } else {
                let o: Vec<u32> = chunks.iter().map(|o| *o as u32).collect();
                full(b"stco", 0, 0, &[u32s(&[o.len() as u32]), u32s(&o)].concat())
            };
            let n = self.samples.len() as u32;
            let sizes = if self.stz2 {
                let body: Vec<u8> = self.samples.iter().flat_map(|s| (s.len() as u16).to_be_bytes()).collect();
                full(b"stz2", 0, 0, &[vec![0, 0, 0, 16], u32s(&[n]), body].concat())
            } else {
                let s: Vec<u32> = self.samples.iter().map(|s| s.len() as u32).collect();
                full(b"stsz", 0, 0, &[u32s(&[0, n]), u32s(&s)].concat())
            };
            let mut stts = Vec::new();
            for d in &self.durations {
                match stts.len() {
                    l if l >= 2 && stts[l - 1] == *d => stts[l - 2] += 1,
                    _ => stts.extend_from_slice(&[1, *d]),
                }
            }
            let stts = full(b"stts", 0, 0, &[u32s(&[(stts.len() / 2) as u32]), u32s(&stts)].concat());
            let stss = self.sync.as_ref().map(|s| full(b"stss", 0, 0, &[u32s(&[s.len() as u32]), u32s(s)].concat()));
            let stsd = full(b"stsd", 0, 0, &[u32s(&[1]), self.entry.clone()].concat());
            let stbl = bx(b"stbl", &[stsd, stts, stss.unwrap_or_default(), stsc, sizes, offsets].concat());
            let minf = bx(b"minf", &[full(b"vmhd", 0, 1, &[0; 8]), stbl].concat());
            let total: u32 = self.durations.iter().sum();
            let mdhd = full(b"mdhd", 0, 0, &[u32s(&[0, 0, 24_000, total]), vec![0x55, 0xc4, 0, 0]].concat());
            let hdlr = full(b"hdlr", 0, 0, &[u32s(&[0]), b"vide".to_vec(), vec![0; 13]].concat());
            let mdia = bx(b"mdia", &[mdhd, hdlr, minf].concat());
            let [a, b, c, d] = self.rotation_matrix;
            let matrix = u32s(&[a, b, 0, c, d, 0, 0, 0, 0x4000_0000]);
            let tkhd = full(b"tkhd", 0, 3, &[u32s(&[0, 0, 1, 0, total, 0, 0, 0, 0]), matrix, u32s(&[0, 0])].concat());
            let trak = bx(b"trak", &[tkhd, mdia].concat());
            let mvhd = full(b"mvhd", 0, 0, &[u32s(&[0, 0, 24_000, total, 0x0001_0000]), vec![0; 80]].concat());
            let moov = bx(b"moov", &[mvhd, trak].concat());
            [ftyp, bx(b"mdat", &data), moov].concat()
        }
    }

    /// Our clip's samples and sample entry, to lay out differently.
    fn parts(clip: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>, Vec<bool>) {
        let m = Movie::read(&mut Bytes::new(clip)).unwrap();
        let mut cursor = super::Cursor::new();
        let (mut samples, mut sync) = (Vec::new(), Vec::new());
        while let Some(s) = cursor.next(&m.video).unwrap() {
            samples.push(clip[s.offset as usize..s.offset as usize + s.size as usize].to_vec());
            sync.push(s.sync);
        }
        (m.video.entry.clone(), samples, sync)
    }

    fn frames(bytes: &[u8]) -> Vec<crate::decode::Frame> {
        crate::decode::VideoFrames::open(Bytes::new(bytes)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn co64_stz2_and_uneven_chunks_demux_to_the_same_frames() {
        let clip = own_clip(1, false);
        let (entry, samples, sync) = parts(&clip);
        let made = Handmade {
            brand: b"mp42",
            entry,
            durations: vec![1000; samples.len()],
            samples,
            chunking: vec![1, 5, 2, 7],
            co64: true,
            stz2: true,
            rotation_matrix: [0x0001_0000, 0, 0, 0x0001_0000],
            sync: Some(sync.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i as u32 + 1).collect()),
        }
        .build();
        let info = probe_bytes(&made).unwrap();
        assert_eq!((info.major_brand.as_str(), info.moov_before_mdat, info.video.frames), ("mp42", false, 24));
        assert_eq!(frames(&made), frames(&clip));
    }

    #[test]
    fn variable_durations_give_the_average_rate_and_rotation_turns_the_display() {
        let clip = own_clip(1, false);
        let (entry, samples, _) = parts(&clip);
        // 24 frames: 12 at 1/24 s and 12 at 1/12 s = 1.5 s, 16 fps on average.
        let durations: Vec<u32> = (0..24).map(|i| if i < 12 { 1000 } else { 2000 }).collect();
        let made = Handmade {
            brand: b"isom",
            entry,
            samples,
            durations,
            chunking: vec![24],
            co64: false,
            stz2: false,
            // 90 degrees clockwise, as phones record portrait video.
            rotation_matrix: [0, 0x0001_0000, 0xffff_0000, 0],
            sync: None,
        }
        .build();
        let v = probe_bytes(&made).unwrap().video;
        assert!(v.variable_frame_rate);
        assert!((v.frame_rate - 16.0).abs() < 1e-9, "{}", v.frame_rate);
        assert_eq!((v.duration_ms, v.rotation, v.display_size()), (1500, 90, (144, 256)));
        let times: Vec<f64> = frames(&made).iter().map(|f| f.time()).collect();
        assert_eq!((times[12], times[13]), (0.5, 0.5 + 1.0 / 12.0));
    }

    /// splitmix64, for repeatable garbage.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Walks every sample a probe accepted, as the decoder would.
    fn demux_all(bytes: &[u8]) {
        if let Ok(m) = Movie::read(&mut Bytes::new(bytes)) {
            for t in std::iter::once(&m.video).chain(m.audio.as_ref()) {
                let mut c = super::Cursor::new();
                while let Ok(Some(_)) = c.next(t) {}
            }
        }
    }

    #[test]
    fn truncated_and_garbled_files_never_panic() {
        let clips = [own_clip(1, true), data("main-aac.mov"), data("high-bframes-aac.mp4")];
        let mut seed = 7u64;
        for clip in &clips {
            // Every length up to the end of the index, then a spread beyond.
            let index_end = clip.len().min(8192);
            for cut in (0..index_end).chain((index_end..clip.len()).step_by(97)) {
                let _ = probe_bytes(&clip[..cut]);
            }
            let moov = clip.windows(4).position(|w| w == b"moov").unwrap();
            for round in 0..3000 {
                let mut bad = clip.clone();
                // Mostly inside moov, where the sizes and counts are.
                for _ in 0..1 + round % 4 {
                    let at = if rng(&mut seed).is_multiple_of(8) {
                        (rng(&mut seed) % bad.len() as u64) as usize
                    } else {
                        moov + (rng(&mut seed) % (bad.len() - moov).min(4096) as u64) as usize
                    };
                    bad[at] = match rng(&mut seed) % 4 {
                        0 => 0,
                        1 => 0xff,
                        _ => rng(&mut seed) as u8,
                    };
                }
                demux_all(&bad);
            }
        }
    }
}
