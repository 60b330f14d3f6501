//! Copying an input file's audio track into the output unchanged: the sample
//! entry box (codec and its configuration: `esds`, `dOps`, QuickTime's
//! `wave`...) and every sample's bytes and duration as the input has them,
//! from where the input's edit list starts its audio (AAC priming, Opus
//! pre-skip) up to the output's length; the output's edit list presents
//! exactly that span. Samples are read one at a time; the copy is capped.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::RenderError;
use crate::mp4::CopiedAudio;
use crate::probe::{Cursor, Movie, ProbeError};

/// The most audio bytes copied: 30 s of 1.5 Mbit/s PCM fits, anything past it
/// is not a sound track worth copying into a preview.
pub(crate) const MAX_COPIED_AUDIO_BYTES: u64 = 64 << 20;

/// The output's movie timescale (the writer's).
const MOVIE_TIMESCALE: u64 = 48_000;

/// The input's audio cut to `secs` seconds from where it starts playing, or
/// `None` when the input has no audio track.
pub(crate) fn copy_audio(path: &Path, secs: u32) -> Result<Option<CopiedAudio>, RenderError> {
    let mut file = BufReader::new(File::open(path)?);
    let movie = Movie::read(&mut file).map_err(|e| RenderError::InvalidVideo(e.to_string()))?;
    let Some(track) = &movie.audio else { return Ok(None) };
    let timescale = track.timescale;
    let start = track.edit.map_or(0, |e| e.media_time);
    let end = start + u64::from(secs) * u64::from(timescale);
    let (mut sizes, mut durations, mut data) = (Vec::new(), Vec::new(), Vec::new());
    let mut cursor = Cursor::new();
    let mut last_end = 0u64;
    while let Some(s) = cursor.next(track).map_err(|e| RenderError::InvalidVideo(e.to_string()))? {
        // Every sample that starts before the end: the last may run past it,
        // and the edit list stops the sound exactly there.
        if s.dts >= end {
            break;
        }
        if data.len() as u64 + u64::from(s.size) > MAX_COPIED_AUDIO_BYTES {
            return Err(RenderError::InvalidVideo("the audio track is too large to copy".to_owned()));
        }
        file.seek(SeekFrom::Start(s.offset))?;
        let at = data.len();
        data.resize(at + s.size as usize, 0);
        file.read_exact(&mut data[at..]).map_err(|e| {
            RenderError::InvalidVideo(ProbeError::Truncated(format!("audio sample {}: {e}", s.index + 1)).to_string())
        })?;
        sizes.push(s.size);
        durations.push(s.duration);
        last_end = s.dts + u64::from(s.duration);
    }
    if sizes.is_empty() {
        return Ok(None);
    }
    let playable = last_end.saturating_sub(start).min(end - start);
    let presented = playable * MOVIE_TIMESCALE / u64::from(timescale.max(1));
    if presented == 0 {
        return Ok(None);
    }
    Ok(Some(CopiedAudio {
        entry: track.entry.clone(),
        timescale,
        sizes,
        durations,
        data,
        media_start: start,
        presented,
    }))
}
