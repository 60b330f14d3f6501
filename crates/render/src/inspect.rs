//! A convenience view of an MP4 for tests and tools, on top of [`crate::probe`]
//! (one box parser): track sizes, codecs, frame count, duration, the audio
//! track's format and length, whether the index (moov) comes before the media
//! (mdat), and the samples themselves for decoding a file back.

use crate::h264;
use crate::probe::{Cursor, Movie, Track};

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

fn movie(bytes: &[u8]) -> Result<Movie, String> {
    Movie::read(&mut std::io::Cursor::new(bytes)).map_err(|e| e.to_string())
}

pub fn inspect(bytes: &[u8]) -> Result<Mp4Info, String> {
    let m = movie(bytes)?;
    let v = &m.info.video;
    let duration_secs = m.video.total_ticks as f64 / f64::from(m.video.timescale);
    let audio = m.info.audio.as_ref().zip(m.audio.as_ref());
    Ok(Mp4Info {
        width: v.width,
        height: v.height,
        video_frames: v.frames,
        fps: if duration_secs > 0.0 { f64::from(v.frames) / duration_secs } else { 0.0 },
        duration_secs,
        codec: v.codec.clone(),
        has_audio: audio.is_some(),
        audio_codec: audio.map(|(a, _)| a.codec.clone()),
        audio_sample_rate: audio.map(|(a, _)| a.sample_rate),
        audio_channels: audio.map(|(a, _)| a.channels),
        audio_duration_secs: audio.map(|(_, t)| match t.edit {
            Some(e) => e.duration as f64 / f64::from(m.movie_timescale.max(1)),
            None => t.total_ticks as f64 / f64::from(t.timescale),
        }),
        audio_packets: audio.map(|(a, _)| a.samples),
        audio_pre_skip: audio.and_then(|(a, _)| a.opus_pre_skip),
        moov_before_mdat: m.info.moov_before_mdat,
    })
}

/// A track's samples, in order, as slices of the file.
fn samples<'a>(bytes: &'a [u8], track: &Track) -> Result<Vec<&'a [u8]>, String> {
    let mut cursor = Cursor::new();
    let mut out = Vec::new();
    while let Some(s) = cursor.next(track).map_err(|e| e.to_string())? {
        let start = usize::try_from(s.offset).map_err(|e| e.to_string())?;
        out.push(bytes.get(start..start + s.size as usize).ok_or("a sample lies outside the file")?);
    }
    Ok(out)
}

/// A video track's parameter sets and its samples (length-prefixed NAL units).
#[derive(Debug, Clone)]
pub struct VideoSamples<'a> {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub samples: Vec<&'a [u8]>,
}

/// The video track's parameter sets and samples, for tools and tests that decode
/// a file back.
pub fn video_samples(bytes: &[u8]) -> Result<VideoSamples<'_>, String> {
    let m = movie(bytes)?;
    let avcc = crate::probe::child(m.video.entry_children(), b"avcC").map_err(|e| e.to_string())?.ok_or("no avcC")?;
    let (_, sets) = h264::parse_avcc_sets(avcc.body).map_err(|e| e.to_string())?;
    let sps = sets.sps.into_iter().next().ok_or("no SPS")?;
    let pps = sets.pps.into_iter().next().ok_or("no PPS")?;
    Ok(VideoSamples { sps, pps, samples: samples(bytes, &m.video)? })
}

/// The audio track's samples (for Opus, one packet each), for tests and tools
/// that decode the sound back.
pub fn audio_samples(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let m = movie(bytes)?;
    samples(bytes, m.audio.as_ref().ok_or("no audio track")?)
}
