//! A minimal MP4 writer: ftyp, then moov (so players can start before the whole
//! file arrives: "faststart"), then mdat. One H.264 video track (length-prefixed
//! NAL units; SPS and PPS in avcC) and optionally one Opus audio track (per
//! "Encapsulation of Opus in ISO Base Media File Format": an `Opus` entry with
//! `dOps`, an edit list that trims the encoder's pre-skip and end padding, and a
//! `roll` sample group), or an audio track copied from an input file (its
//! sample entry and samples verbatim, with an edit list). The media is
//! interleaved in one-second chunks, so a progressive download has both
//! tracks' data for the first seconds early.

use std::io::Write;
use std::ops::Range;

use crate::audio::{self, AudioTrack};

/// One encoded frame: its AVCC bytes (4-byte lengths) and whether it is a sync frame.
pub struct Sample {
    pub size: u32,
    pub sync: bool,
}

/// An audio track copied from an input file: its sample entry and samples
/// verbatim, and an edit that starts where the input's did and lasts the
/// output's length.
pub struct CopiedAudio {
    /// The whole sample entry box (`mp4a`, `Opus`, ...), as the input had it.
    pub entry: Vec<u8>,
    pub timescale: u32,
    /// Each sample's size and duration (in `timescale` ticks).
    pub sizes: Vec<u32>,
    pub durations: Vec<u32>,
    /// The samples back to back.
    pub data: Vec<u8>,
    /// Where the presentation starts in the media (the input's edit, e.g. AAC
    /// priming), in `timescale` ticks.
    pub media_start: u64,
    /// How long it plays, in the movie timescale (48 kHz).
    pub presented: u64,
}

/// The sound of a file: the generated Opus ambience or a copied track.
pub enum Audio<'a> {
    Opus(&'a AudioTrack),
    Copied(&'a CopiedAudio),
}

impl Audio<'_> {
    fn sizes(&self) -> &[u32] {
        match self {
            Audio::Opus(a) => &a.sizes,
            Audio::Copied(c) => &c.sizes,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Audio::Opus(a) => &a.data,
            Audio::Copied(c) => &c.data,
        }
    }

    /// Its presented length in the movie timescale.
    fn presented(&self) -> u64 {
        match self {
            Audio::Opus(a) => a.valid_samples,
            Audio::Copied(c) => c.presented,
        }
    }

    /// Its samples split into one-second chunks (the last takes the rest).
    fn chunks(&self, seconds: usize) -> Vec<Range<usize>> {
        match self {
            Audio::Opus(a) => split(a.sizes.len(), (audio::SAMPLE_RATE / audio::FRAME) as usize, seconds),
            Audio::Copied(c) => {
                // By decoding time: chunk k holds the samples starting in second k.
                let second = u64::from(c.timescale.max(1));
                let mut starts = Vec::with_capacity(seconds);
                let mut t = 0u64;
                for (i, d) in c.durations.iter().enumerate() {
                    while starts.len() < seconds && t >= starts.len() as u64 * second {
                        starts.push(i);
                    }
                    t += u64::from(*d);
                }
                let n = c.sizes.len();
                (0..seconds)
                    .map(|k| {
                        let start = starts.get(k).copied().unwrap_or(n);
                        let end = if k + 1 == seconds { n } else { starts.get(k + 1).copied().unwrap_or(n) };
                        start..end
                    })
                    .filter(|r| !r.is_empty())
                    .collect()
            }
        }
    }

    fn is_opus(&self) -> bool {
        match self {
            Audio::Opus(_) => true,
            Audio::Copied(c) => c.entry.get(4..8) == Some(b"Opus"),
        }
    }
}

pub struct VideoTrack<'a> {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub sps: &'a [u8],
    pub pps: &'a [u8],
    pub samples: &'a [Sample],
    /// All samples back to back, in order.
    pub data: &'a [u8],
}

/// Video media timescale: 24 fps gives a whole number of ticks per frame.
const VIDEO_TIMESCALE: u32 = 24_000;
/// Movie timescale: the audio's, as the Opus mapping recommends, so the edit
/// list is sample-exact; it divides the video's frame duration too.
const MOVIE_TIMESCALE: u32 = audio::SAMPLE_RATE;
/// Opus needs 80 ms of decoding before a random access point sounds right.
const OPUS_PREROLL_MS: u32 = 80;

pub(crate) fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

pub(crate) fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 4);
    b.push(version);
    b.extend_from_slice(&flags.to_be_bytes()[1..]);
    b.extend_from_slice(body);
    bx(kind, &b)
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn u32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

/// Where a track's chunks go: their samples, their bytes within the track's
/// data, and their offsets in the file.
struct Chunks {
    ranges: Vec<Range<usize>>,
    bytes: Vec<Range<usize>>,
    offsets: Vec<u32>,
}

impl Chunks {
    fn new(sizes: impl Iterator<Item = usize>, ranges: Vec<Range<usize>>) -> Self {
        // Where each sample starts in the track's data: [0, a, a+b, ...].
        let starts: Vec<usize> = std::iter::once(0)
            .chain(sizes.scan(0, |sum, s| {
                *sum += s;
                Some(*sum)
            }))
            .collect();
        let bytes = ranges.iter().map(|r| starts[r.start]..starts[r.end]).collect();
        Self { offsets: vec![0; ranges.len()], ranges, bytes }
    }
}

/// Splits `n` samples into `count` chunks of `per` samples, the last taking the
/// rest; empty chunks are left out (they cannot be described in `stsc`).
fn split(n: usize, per: usize, count: usize) -> Vec<Range<usize>> {
    (0..count)
        .map(|k| {
            let end = if k + 1 == count { n } else { ((k + 1) * per).min(n) };
            (k * per).min(n)..end
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// `stsc`: one entry per run of chunks with the same sample count.
fn stsc(chunks: &Chunks) -> Vec<u8> {
    let mut entries: Vec<u32> = Vec::new();
    let mut last = None;
    for (i, r) in chunks.ranges.iter().enumerate() {
        let n = r.len() as u32;
        if last != Some(n) {
            entries.extend_from_slice(&[i as u32 + 1, n, 1]);
            last = Some(n);
        }
    }
    full(b"stsc", 0, 0, &[&((entries.len() / 3) as u32).to_be_bytes()[..], &u32s(&entries)].concat())
}

fn stco(chunks: &Chunks) -> Vec<u8> {
    full(b"stco", 0, 0, &[&(chunks.offsets.len() as u32).to_be_bytes()[..], &u32s(&chunks.offsets)].concat())
}

fn stsz(sizes: impl ExactSizeIterator<Item = u32>) -> Vec<u8> {
    let mut body = u32s(&[0, sizes.len() as u32]);
    for s in sizes {
        body.extend_from_slice(&s.to_be_bytes());
    }
    full(b"stsz", 0, 0, &body)
}

fn dinf() -> Vec<u8> {
    let dref = full(b"dref", 0, 0, &[&1u32.to_be_bytes()[..], &full(b"url ", 0, 1, &[])].concat());
    bx(b"dinf", &dref)
}

fn hdlr(kind: &[u8; 4], name: &str) -> Vec<u8> {
    let mut body = u32s(&[0]);
    body.extend_from_slice(kind);
    body.extend_from_slice(&[0; 12]);
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    full(b"hdlr", 0, 0, &body)
}

fn mdhd(timescale: u32, duration: u32) -> Vec<u8> {
    let mut body = u32s(&[0, 0, timescale, duration]);
    body.extend_from_slice(&[0x55, 0xc4, 0, 0]); // language "und"
    full(b"mdhd", 0, 0, &body)
}

/// Track header; `volume` is 8.8 fixed point (0 for video, 1.0 for audio).
fn tkhd(id: u32, duration: u32, volume: u16, width: u32, height: u32) -> Vec<u8> {
    let mut body = u32s(&[0, 0, id, 0, duration, 0, 0]);
    body.extend_from_slice(&[0, 0, 0, 0]); // layer, alternate group
    body.extend_from_slice(&volume.to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&u32s(&MATRIX));
    body.extend_from_slice(&u32s(&[width << 16, height << 16]));
    full(b"tkhd", 0, 3, &body)
}

fn video_trak(v: &VideoTrack<'_>, chunks: &Chunks) -> Vec<u8> {
    let n = v.samples.len() as u32;
    let delta = VIDEO_TIMESCALE / v.fps.max(1);
    let media_duration = n * delta;
    let movie_duration = (u64::from(media_duration) * u64::from(MOVIE_TIMESCALE) / u64::from(VIDEO_TIMESCALE)) as u32;

    let mut avcc =
        vec![1, *v.sps.get(1).unwrap_or(&66), *v.sps.get(2).unwrap_or(&0), *v.sps.get(3).unwrap_or(&31), 0xFF, 0xE1];
    avcc.extend_from_slice(&(v.sps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(v.sps);
    avcc.push(1);
    avcc.extend_from_slice(&(v.pps.len() as u16).to_be_bytes());
    avcc.extend_from_slice(v.pps);
    let avcc = bx(b"avcC", &avcc);
    let mut avc1 = vec![0; 6];
    avc1.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    avc1.extend_from_slice(&[0; 16]);
    avc1.extend_from_slice(&(v.width as u16).to_be_bytes());
    avc1.extend_from_slice(&(v.height as u16).to_be_bytes());
    avc1.extend_from_slice(&u32s(&[0x0048_0000, 0x0048_0000, 0]));
    avc1.extend_from_slice(&1u16.to_be_bytes()); // frame count
    avc1.extend_from_slice(&[0; 32]); // compressor name
    avc1.extend_from_slice(&0x18u16.to_be_bytes());
    avc1.extend_from_slice(&0xFFFFu16.to_be_bytes());
    avc1.extend_from_slice(&avcc);
    let avc1 = bx(b"avc1", &avc1);
    let stsd = full(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &avc1].concat());
    let stts = full(b"stts", 0, 0, &u32s(&[1, n, delta]));
    let sync: Vec<u32> = v.samples.iter().enumerate().filter(|(_, s)| s.sync).map(|(i, _)| i as u32 + 1).collect();
    let stss = full(b"stss", 0, 0, &[&(sync.len() as u32).to_be_bytes()[..], &u32s(&sync)].concat());
    let stsz = stsz(v.samples.iter().map(|s| s.size));
    let stbl = bx(b"stbl", &[stsd, stts, stss, stsc(chunks), stsz, stco(chunks)].concat());
    let vmhd = full(b"vmhd", 0, 1, &[0; 8]);
    let minf = bx(b"minf", &[vmhd, dinf(), stbl].concat());
    let mdia = bx(b"mdia", &[mdhd(VIDEO_TIMESCALE, media_duration), hdlr(b"vide", "VideoHandler"), minf].concat());
    bx(b"trak", &[tkhd(1, movie_duration, 0, v.width, v.height), mdia].concat())
}

fn audio_trak(a: &AudioTrack, chunks: &Chunks) -> Vec<u8> {
    let n = a.sizes.len() as u32;
    // The presented length: the real samples only, after the pre-skip.
    let valid = a.valid_samples as u32;
    // The last packet lasts only as long as its real samples (the rest is the
    // padding that flushed the encoder), as the Opus mapping specifies.
    let used = valid + u32::from(a.pre_skip);
    let last = used - (n.max(1) - 1) * audio::FRAME;
    let stts =
        if last == audio::FRAME || n < 2 { u32s(&[1, n, last]) } else { u32s(&[2, n - 1, audio::FRAME, 1, last]) };
    let stts = full(b"stts", 0, 0, &stts);

    let mut dops = vec![0, a.channels];
    dops.extend_from_slice(&a.pre_skip.to_be_bytes());
    dops.extend_from_slice(&audio::SAMPLE_RATE.to_be_bytes()); // input sample rate
    dops.extend_from_slice(&0i16.to_be_bytes()); // output gain
    dops.push(0); // channel mapping family 0: mono or stereo, one stream
    let mut entry = vec![0; 6];
    entry.extend_from_slice(&1u16.to_be_bytes()); // data reference index
    entry.extend_from_slice(&[0; 8]);
    entry.extend_from_slice(&u16::from(a.channels).to_be_bytes());
    entry.extend_from_slice(&16u16.to_be_bytes()); // sample size
    entry.extend_from_slice(&[0; 4]);
    entry.extend_from_slice(&(audio::SAMPLE_RATE << 16).to_be_bytes());
    entry.extend_from_slice(&bx(b"dOps", &dops));
    let entry = bx(b"Opus", &entry);
    let stsd = full(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &entry].concat());
    let stsz = stsz(a.sizes.iter().copied());
    // Every Opus packet is a sync sample (so no stss) that needs 80 ms of
    // pre-roll: a `roll` group with a negative distance in packets, for every
    // packet that has that many before it.
    let distance = (OPUS_PREROLL_MS * audio::SAMPLE_RATE / 1000).div_ceil(audio::FRAME);
    let sgpd = full(b"sgpd", 1, 0, &[&b"roll"[..], &u32s(&[2, 1]), &(-(distance as i16)).to_be_bytes()].concat());
    let head = distance.min(n);
    let runs = if head < n { vec![2, head, 0, n - head, 1] } else { vec![1, n, 0] };
    let sbgp = full(b"sbgp", 0, 0, &[&b"roll"[..], &u32s(&runs)].concat());
    let stbl = bx(b"stbl", &[stsd, stts, stsc(chunks), stsz, stco(chunks), sgpd, sbgp].concat());
    let smhd = full(b"smhd", 0, 0, &[0; 4]);
    let minf = bx(b"minf", &[smhd, dinf(), stbl].concat());
    let mdia = bx(b"mdia", &[mdhd(audio::SAMPLE_RATE, used), hdlr(b"soun", "SoundHandler"), minf].concat());
    // The edit skips the priming samples and ends at the last real one.
    let elst = full(b"elst", 0, 0, &u32s(&[1, valid, u32::from(a.pre_skip), 0x0001_0000]));
    let edts = bx(b"edts", &elst);
    bx(b"trak", &[tkhd(2, valid, 0x0100, 0, 0), edts, mdia].concat())
}

/// A copied audio track: the input's sample entry and samples as they were,
/// with its own timing and an edit list for where it starts and how long it
/// plays.
fn copied_trak(a: &CopiedAudio, chunks: &Chunks) -> Vec<u8> {
    let mut runs: Vec<u32> = Vec::new();
    for d in &a.durations {
        match runs.len() {
            l if l >= 2 && runs[l - 1] == *d => runs[l - 2] += 1,
            _ => runs.extend_from_slice(&[1, *d]),
        }
    }
    let stts = full(b"stts", 0, 0, &[&((runs.len() / 2) as u32).to_be_bytes()[..], &u32s(&runs)].concat());
    let stsd = full(b"stsd", 0, 0, &[&1u32.to_be_bytes()[..], &a.entry].concat());
    let stbl = bx(b"stbl", &[stsd, stts, stsc(chunks), stsz(a.sizes.iter().copied()), stco(chunks)].concat());
    let smhd = full(b"smhd", 0, 0, &[0; 4]);
    let minf = bx(b"minf", &[smhd, dinf(), stbl].concat());
    let media: u64 = a.durations.iter().map(|d| u64::from(*d)).sum();
    let mdia = bx(b"mdia", &[mdhd(a.timescale, media as u32), hdlr(b"soun", "SoundHandler"), minf].concat());
    let elst = full(b"elst", 0, 0, &u32s(&[1, a.presented as u32, a.media_start as u32, 0x0001_0000]));
    bx(b"trak", &[tkhd(2, a.presented as u32, 0x0100, 0, 0), bx(b"edts", &elst), mdia].concat())
}

fn moov(video: &VideoTrack<'_>, vchunks: &Chunks, audio: Option<(&Audio<'_>, &Chunks)>) -> Vec<u8> {
    let video_len = u64::from(VIDEO_TIMESCALE / video.fps.max(1)) * video.samples.len() as u64;
    let mut duration = video_len * u64::from(MOVIE_TIMESCALE) / u64::from(VIDEO_TIMESCALE);
    if let Some((a, _)) = audio {
        duration = duration.max(a.presented());
    }
    let mut mvhd = u32s(&[0, 0, MOVIE_TIMESCALE, duration as u32, 0x0001_0000]);
    mvhd.extend_from_slice(&[0x01, 0x00, 0, 0]);
    mvhd.extend_from_slice(&[0; 8]);
    mvhd.extend_from_slice(&u32s(&MATRIX));
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&(if audio.is_some() { 3u32 } else { 2 }).to_be_bytes()); // next track id
    let mut body = full(b"mvhd", 0, 0, &mvhd);
    body.extend_from_slice(&video_trak(video, vchunks));
    match audio {
        Some((Audio::Opus(a), c)) => body.extend_from_slice(&audio_trak(a, c)),
        Some((Audio::Copied(a), c)) => body.extend_from_slice(&copied_trak(a, c)),
        None => {}
    }
    bx(b"moov", &body)
}

fn ftyp(with_opus: bool) -> Vec<u8> {
    let mut body = [&b"isom"[..], &512u32.to_be_bytes(), b"isomiso2avc1mp41"].concat();
    if with_opus {
        // The Opus mapping's own brand; iso2 (already listed) covers roll groups.
        body.extend_from_slice(b"Opus");
    }
    bx(b"ftyp", &body)
}

/// Writes the whole file and returns its size.
pub fn write_mp4(out: &mut dyn Write, video: &VideoTrack<'_>, audio: Option<&Audio<'_>>) -> std::io::Result<u64> {
    // One-second chunks: `fps` video frames, then the audio packets of that
    // second (the last chunk also takes the audio's padding packets).
    let fps = video.fps.max(1) as usize;
    let seconds = video.samples.len().div_ceil(fps);
    // (chunks, data) per track: the video, then the audio if any.
    let mut tracks = vec![(
        Chunks::new(video.samples.iter().map(|s| s.size as usize), split(video.samples.len(), fps, seconds)),
        video.data,
    )];
    if let Some(a) = audio {
        let chunks = Chunks::new(a.sizes().iter().map(|s| *s as usize), a.chunks(seconds));
        tracks.push((chunks, a.data()));
    }
    // The order in mdat: (track, chunk), second by second.
    let order: Vec<(usize, usize)> = (0..seconds)
        .flat_map(|k| (0..tracks.len()).map(move |t| (t, k)))
        .filter(|&(t, k)| k < tracks[t].0.ranges.len())
        .collect();
    let index = |tracks: &[(Chunks, &[u8])]| moov(video, &tracks[0].0, audio.zip(tracks.get(1).map(|t| &t.0)));

    // The chunk offsets depend on the moov's size, which does not depend on the
    // offsets' values: measure once, then fill them in.
    let ftyp = ftyp(audio.is_some_and(|a| a.is_opus()));
    let head = ftyp.len() + index(&tracks).len() + 8;
    let data_len: usize = tracks.iter().map(|(_, d)| d.len()).sum();
    let total = head + data_len;
    if u32::try_from(total).is_err() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the MP4 would exceed 4 GiB"));
    }
    let mut at = head;
    for &(t, k) in &order {
        let chunks = &mut tracks[t].0;
        chunks.offsets[k] = at as u32;
        at += chunks.bytes[k].len();
    }
    out.write_all(&ftyp)?;
    out.write_all(&index(&tracks))?;
    out.write_all(&((data_len + 8) as u32).to_be_bytes())?;
    out.write_all(b"mdat")?;
    for &(t, k) in &order {
        let (chunks, data) = &tracks[t];
        out.write_all(&data[chunks.bytes[k].clone()])?;
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_by_second_with_the_rest_in_the_last() {
        assert_eq!(split(72, 24, 3), vec![0..24, 24..48, 48..72]);
        assert_eq!(split(151, 50, 3), vec![0..50, 50..100, 100..151]);
        assert_eq!(split(10, 50, 3), vec![0..10]);
    }
}
