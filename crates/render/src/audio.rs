//! The sound track: a procedural ambience seeded by the prompt (detuned pad
//! voices, soft bells on a slow beat and coloured "wind" noise, faded in and
//! out), encoded as 48 kHz stereo Opus in 20 ms packets. It is synthesised one
//! packet at a time, so no raw audio is held; the packets themselves are small.

use std::sync::atomic::{AtomicBool, Ordering};

use opus_pure::{Application, MAX_PACKET_BYTES, OpusEncoder, RateControl, Signal};

use crate::RenderError;

/// Opus always decodes at 48 kHz, and MP4 Opus tracks use it as their timescale.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one packet (20 ms), the duration of every MP4 sample.
pub const FRAME: u32 = 960;
const CHANNELS: usize = 2;
/// Plenty for a soft ambience in stereo, and small next to the video.
const BITRATE: i32 = 96_000;

/// An encoded Opus stream ready to mux.
pub struct AudioTrack {
    pub channels: u8,
    /// Samples (at 48 kHz) the decoder outputs before the first real one: the
    /// encoder's lookahead, trimmed by the MP4 edit list and noted in `dOps`.
    pub pre_skip: u16,
    /// Samples per channel that are real audio: exactly the video's length.
    pub valid_samples: u64,
    /// Each packet's size; every packet codes `FRAME` samples (the muxer
    /// shortens the last one's duration to the real audio).
    pub sizes: Vec<u32>,
    /// The packets back to back.
    pub data: Vec<u8>,
}

fn opus_err(e: opus_pure::Error) -> RenderError {
    RenderError::Encode(format!("opus: {e}"))
}

/// Synthesises and encodes `duration_secs` of ambience for `prompt`; gives up
/// with [`RenderError::Cancelled`] as soon as `stop` is set.
pub fn encode(prompt: &str, duration_secs: u32, stop: &AtomicBool) -> Result<AudioTrack, RenderError> {
    let mut enc = OpusEncoder::new(SAMPLE_RATE as i32, CHANNELS, Application::Audio).map_err(opus_err)?;
    enc.bitrate_bps = BITRATE;
    // A file has no channel to fit, so let each packet be what it needs; and
    // the content is music-like, so keep the analysis from picking speech mode.
    enc.rate_control = RateControl::Vbr;
    enc.signal_type = Some(Signal::Music);
    let pre_skip =
        u16::try_from(enc.lookahead()).map_err(|_| RenderError::Encode("opus lookahead out of range".to_owned()))?;
    let valid_samples = u64::from(duration_secs) * u64::from(SAMPLE_RATE);
    // The encoder runs `pre_skip` behind its input, so encode that much more
    // (as silence) to get the last real samples out, rounded up to whole packets.
    let packets = (valid_samples + u64::from(pre_skip)).div_ceil(u64::from(FRAME));

    let mut synth = Synth::new(prompt, valid_samples);
    let mut pcm = vec![0.0f32; FRAME as usize * CHANNELS];
    let mut packet = vec![0u8; MAX_PACKET_BYTES];
    let mut sizes = Vec::with_capacity(packets as usize);
    let mut data = Vec::new();
    for _ in 0..packets {
        if stop.load(Ordering::Relaxed) {
            return Err(RenderError::Cancelled);
        }
        synth.fill(&mut pcm);
        let n = enc.encode(&pcm, FRAME as usize, &mut packet).map_err(opus_err)?;
        sizes.push(n as u32);
        data.extend_from_slice(&packet[..n]);
    }
    Ok(AudioTrack { channels: CHANNELS as u8, pre_skip, valid_samples, sizes, data })
}

/// splitmix64: small, fast and the same everywhere, so a prompt always seeds the
/// same sound.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TAU: f64 = std::f64::consts::TAU;

/// Chord shapes in semitones above the root: open, warm voicings for a pad.
const CHORDS: [[f64; 4]; 5] = [
    [0.0, 7.0, 12.0, 16.0],
    [0.0, 7.0, 10.0, 15.0],
    [0.0, 5.0, 12.0, 19.0],
    [0.0, 3.0, 7.0, 14.0],
    [0.0, 4.0, 11.0, 14.0],
];

/// A pad voice: two slightly detuned oscillators under a slow swell.
struct Voice {
    step: [f64; 2],
    phase: [f64; 2],
    gain: f64,
    pan: (f64, f64),
    swell_step: f64,
    swell_phase: f64,
}

/// A decaying bell (a partial pair, the upper one inharmonic), struck on the beat.
struct Bell {
    step: [f64; 2],
    phase: [f64; 2],
    amp: f64,
    decay: f64,
    pan: (f64, f64),
}

struct Synth {
    /// Stereo-independent white noise; seeded, so deterministic.
    noise: Rng,
    /// Picks which beats ring and which note.
    pattern: Rng,
    pos: u64,
    total: u64,
    fade_in: u64,
    fade_out: u64,
    voices: Vec<Voice>,
    /// Two cascaded one-pole low-passes per channel colour the noise.
    lp: [[f64; 2]; 2],
    lp_coeff: f64,
    noise_gain: f64,
    wind_step: f64,
    wind_phase: f64,
    beat: u64,
    bell_notes: Vec<f64>,
    bells: Vec<Bell>,
}

fn pan(p: f64) -> (f64, f64) {
    // Equal-power pan, p in -1..=1.
    let a = (p + 1.0) * std::f64::consts::FRAC_PI_4;
    (a.cos(), a.sin())
}

fn midi_hz(note: f64) -> f64 {
    440.0 * 2f64.powf((note - 69.0) / 12.0)
}

impl Synth {
    fn new(prompt: &str, total: u64) -> Self {
        let seed = crate::scene::hash(&prompt.trim().to_lowercase());
        let mut rng = Rng(seed);
        let sr = f64::from(SAMPLE_RATE);
        let root = 36.0 + rng.pick(12) as f64;
        let chord = CHORDS[rng.pick(CHORDS.len())];
        let voices = chord
            .iter()
            .enumerate()
            .map(|(i, iv)| {
                let f = midi_hz(root + iv);
                let cents = rng.range(3.0, 9.0);
                let detune = 2f64.powf(cents / 1200.0);
                Voice {
                    step: [TAU * f * detune / sr, TAU * f / detune / sr],
                    phase: [rng.range(0.0, TAU), rng.range(0.0, TAU)],
                    gain: 0.09 / (1.0 + 0.35 * i as f64),
                    pan: pan(rng.range(-0.6, 0.6)),
                    swell_step: TAU * rng.range(0.04, 0.25) / sr,
                    swell_phase: rng.range(0.0, TAU),
                }
            })
            .collect();
        // Noise colour: a dark rumble to a brighter hiss.
        let cutoff = rng.range(250.0, 2500.0);
        let bpm = rng.range(48.0, 96.0);
        let bell_notes = chord.iter().map(|iv| midi_hz(root + iv + 24.0)).collect();
        Synth {
            noise: Rng(seed ^ 0x6e6f_6973_6500_0000),
            pattern: Rng(seed.rotate_left(17)),
            pos: 0,
            total,
            fade_in: (sr * 0.6) as u64,
            fade_out: ((sr * 1.0) as u64).min(total / 4),
            voices,
            lp: [[0.0; 2]; 2],
            lp_coeff: 1.0 - (-TAU * cutoff / sr).exp(),
            noise_gain: rng.range(0.05, 0.12),
            wind_step: TAU * rng.range(0.05, 0.2) / sr,
            wind_phase: rng.range(0.0, TAU),
            beat: (sr * 60.0 / bpm) as u64,
            bell_notes,
            bells: Vec::new(),
        }
    }

    /// The fade envelope at the current sample: smooth in, smooth out, and
    /// silence past the end (the padding that flushes the encoder).
    fn envelope(&self) -> f64 {
        if self.pos >= self.total {
            return 0.0;
        }
        let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
        let fin = if self.pos < self.fade_in { smooth(self.pos as f64 / self.fade_in as f64) } else { 1.0 };
        let left = self.total - self.pos;
        let fout = if left < self.fade_out { smooth(left as f64 / self.fade_out as f64) } else { 1.0 };
        fin * fout
    }

    fn strike(&mut self) {
        // About two beats in three ring, so the rhythm is not mechanical.
        if self.pattern.pick(3) == 0 {
            return;
        }
        let f = self.bell_notes[self.pattern.pick(self.bell_notes.len())];
        let ring = self.pattern.range(1.2, 2.8) * f64::from(SAMPLE_RATE);
        self.bells.push(Bell {
            step: [TAU * f / f64::from(SAMPLE_RATE), TAU * f * 2.76 / f64::from(SAMPLE_RATE)],
            phase: [0.0; 2],
            amp: self.pattern.range(0.04, 0.08),
            decay: (-1.0 / ring).exp(),
            pan: pan(self.pattern.range(-0.8, 0.8)),
        });
    }

    /// Fills one interleaved stereo packet's worth of samples.
    fn fill(&mut self, out: &mut [f32]) {
        for frame in out.chunks_exact_mut(CHANNELS) {
            if self.beat > 0 && self.pos.is_multiple_of(self.beat) && self.pos < self.total {
                self.strike();
            }
            let (mut l, mut r) = (0.0, 0.0);
            for v in &mut self.voices {
                let swell = 0.55 + 0.45 * v.swell_phase.sin();
                let s = (v.phase[0].sin() + v.phase[1].sin() + 0.3 * (2.0 * v.phase[0]).sin()) * v.gain * swell;
                l += s * v.pan.0;
                r += s * v.pan.1;
                for (p, step) in v.phase.iter_mut().zip(v.step) {
                    *p = (*p + step) % TAU;
                }
                v.swell_phase = (v.swell_phase + v.swell_step) % TAU;
            }
            let wind = 0.35 + 0.65 * (0.5 + 0.5 * self.wind_phase.sin());
            self.wind_phase = (self.wind_phase + self.wind_step) % TAU;
            for (c, acc) in [&mut l, &mut r].into_iter().enumerate() {
                let white = self.noise.range(-1.0, 1.0);
                let lp = &mut self.lp[c];
                lp[0] += self.lp_coeff * (white - lp[0]);
                lp[1] += self.lp_coeff * (lp[0] - lp[1]);
                *acc += lp[1] * self.noise_gain * wind * 2.0;
            }
            for b in &mut self.bells {
                let s = (b.phase[0].sin() + 0.2 * b.phase[1].sin()) * b.amp;
                l += s * b.pan.0;
                r += s * b.pan.1;
                for (p, step) in b.phase.iter_mut().zip(b.step) {
                    *p = (*p + step) % TAU;
                }
                b.amp *= b.decay;
            }
            self.bells.retain(|b| b.amp > 1e-5);
            let env = self.envelope();
            // A gentle soft clip keeps rare peaks from crackling.
            frame[0] = ((l * env).tanh()) as f32;
            frame[1] = ((r * env).tanh()) as f32;
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm(prompt: &str, secs: u32) -> Vec<f32> {
        let total = u64::from(secs * SAMPLE_RATE);
        let mut s = Synth::new(prompt, total);
        let mut out = vec![0.0f32; total as usize * CHANNELS];
        for block in out.chunks_mut(FRAME as usize * CHANNELS) {
            s.fill(block);
        }
        out
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn the_ambience_fades_in_and_out_and_moves() {
        let x = pcm("a misty forest at dawn", 3);
        let at = |sec: f64, len: f64| {
            let a = (sec * f64::from(SAMPLE_RATE)) as usize * CHANNELS;
            rms(&x[a..a + (len * f64::from(SAMPLE_RATE)) as usize * CHANNELS])
        };
        let start = at(0.0, 0.02);
        let middle = at(1.4, 0.2);
        let end = at(2.98, 0.02);
        assert!(middle > 0.02, "audible: {middle}");
        assert!(start < middle / 4.0 && end < middle / 4.0, "fades: {start} {middle} {end}");
        assert!(x.iter().all(|v| v.abs() < 1.0));
        // Not a constant tone: the level wanders between windows.
        let levels: Vec<f64> = (0..10).map(|i| at(0.7 + 0.15 * f64::from(i), 0.05)).collect();
        let (lo, hi) = levels.iter().fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        assert!(hi / lo > 1.05, "levels {levels:?}");
    }

    #[test]
    fn different_prompts_sound_different_and_one_prompt_the_same() {
        assert_eq!(pcm("ocean waves", 1), pcm("ocean waves", 1));
        assert_ne!(pcm("ocean waves", 1), pcm("city at night", 1));
    }
}
