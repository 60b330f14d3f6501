//! Decoding an MP4/MOV's H.264 video track frame by frame, in presentation
//! order, with bounded memory: samples are read from the file one at a time
//! (the sample tables say where), turned from length-prefixed NAL units into
//! Annex B with the `avcC` parameter sets in front of the first one, and
//! decoded by openh264; only the decoder's own reorder buffer holds frames.
//!
//! What openh264's decoder reads (the copy the `openh264` crate builds, cisco
//! commit 1bca623; its README lists only "Constrained Baseline Profile up to
//! Level 5.2", but its source also parses Main and High): progressive 8-bit
//! 4:2:0 streams in the Baseline, Main and High profiles, with CAVLC or CABAC,
//! P and B slices (reordered into presentation order), 8x8 transforms,
//! scaling matrices and weighted prediction, up to 36864 macroblocks a picture.
//! It refuses interlaced coding (`frame_mbs_only_flag` 0: field pictures and
//! MBAFF), bit depths over 8 (High 10), 4:2:2 and 4:4:4 chroma, and the
//! Extended profile's SP/SI slices. [`crate::probe::VideoInfo::check_decodable`]
//! says this before any decoding; the tests decode x264 High (CABAC, B-pyramid)
//! and Main (QuickTime) files bit-exactly against ffmpeg's decoder.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{Read, Seek, SeekFrom};

use openh264::OpenH264API;
use openh264::decoder::{DecodedYUV, Decoder, DecoderConfig, Flush};
use openh264::formats::YUVSource;

use crate::h264;
use crate::probe::{Cursor, MediaInfo, Movie, ProbeError, Unsupported, child};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Unsupported(#[from] Unsupported),
    #[error("the H.264 stream could not be decoded: {0}")]
    Decode(String),
}

impl From<std::io::Error> for DecodeError {
    fn from(e: std::io::Error) -> Self {
        DecodeError::Probe(ProbeError::Io(e))
    }
}

/// One decoded picture: I420, tightly packed, in the track's coded
/// orientation (see [`crate::probe::VideoInfo::rotation`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    /// Presentation time from the first frame, in the track's timescale.
    pub pts: u64,
    pub timescale: u32,
    pub y: Vec<u8>,
    /// `(width + 1) / 2` x `(height + 1) / 2`.
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Frame {
    /// The presentation time in seconds from the first frame.
    pub fn time(&self) -> f64 {
        self.pts as f64 / f64::from(self.timescale.max(1))
    }

    /// The picture as RGB (BT.601 limited range, as H.264 streams without
    /// colour information are).
    pub fn to_rgb(&self) -> image::RgbImage {
        let cw = self.width.div_ceil(2);
        image::RgbImage::from_fn(self.width as u32, self.height as u32, |x, y| {
            let (x, y) = (x as usize, y as usize);
            let c = (y / 2) * cw + x / 2;
            let luma = i32::from(self.y.get(y * self.width + x).copied().unwrap_or(16)) - 16;
            let cb = i32::from(self.u.get(c).copied().unwrap_or(128)) - 128;
            let cr = i32::from(self.v.get(c).copied().unwrap_or(128)) - 128;
            let l = 298 * luma + 128;
            let px = |v: i32| (v >> 8).clamp(0, 255) as u8;
            image::Rgb([px(l + 409 * cr), px(l - 100 * cb - 208 * cr), px(l + 516 * cb)])
        })
    }
}

/// The frames of a file's video track, decoded on demand.
pub struct VideoFrames<R> {
    file: R,
    movie: Movie,
    nal_length_size: u8,
    /// The `avcC` parameter sets as Annex B, sent before the first sample.
    head: Vec<u8>,
    decoder: Decoder,
    cursor: Cursor,
    started: bool,
    sample: Vec<u8>,
    stream: Vec<u8>,
    /// Presentation times of the samples sent and not yet output: the decoder
    /// returns pictures in presentation order, so each takes the smallest.
    pending: BinaryHeap<Reverse<i64>>,
    origin: Option<i64>,
    ready: VecDeque<Frame>,
    flushed: bool,
    /// Samples the decoder refused so far.
    errors: u32,
}

/// Samples that may fail to decode before a stream is refused (or a tenth of
/// the samples read, if more).
const MAX_BAD_SAMPLES: u32 = 8;

fn decoder() -> Result<Decoder, DecodeError> {
    // No flush after each picture: flushing early would hand out pictures
    // before the reorder buffer knows their order. The stream's end flushes.
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    Decoder::with_api_config(OpenH264API::from_source(), config).map_err(|e| DecodeError::Decode(e.to_string()))
}

impl<R: Read + Seek> VideoFrames<R> {
    /// Probes `file` and gets ready to decode its video track; refuses a track
    /// openh264 cannot read, naming the codec and profile.
    pub fn open(mut file: R) -> Result<Self, DecodeError> {
        let movie = Movie::read(&mut file)?;
        movie.info.video.check_decodable()?;
        let avcc = child(movie.video.entry_children(), b"avcC")?
            .ok_or_else(|| ProbeError::Corrupt("the H.264 track has no avcC".to_owned()))?;
        let (info, sets) = h264::parse_avcc_sets(avcc.body)?;
        let mut head = Vec::new();
        for set in sets.sps.iter().chain(&sets.pps) {
            head.extend_from_slice(&[0, 0, 0, 1]);
            head.extend_from_slice(set);
        }
        Ok(VideoFrames {
            file,
            movie,
            nal_length_size: info.nal_length_size,
            head,
            decoder: decoder()?,
            cursor: Cursor::new(),
            started: false,
            sample: Vec::new(),
            stream: Vec::new(),
            pending: BinaryHeap::new(),
            origin: None,
            ready: VecDeque::new(),
            flushed: false,
            errors: 0,
        })
    }

    pub fn info(&self) -> &MediaInfo {
        &self.movie.info
    }

    /// Starts again from the first frame, with a fresh decoder.
    pub fn rewind(&mut self) -> Result<(), DecodeError> {
        self.decoder = decoder()?;
        self.cursor = Cursor::new();
        self.started = false;
        self.pending.clear();
        self.origin = None;
        self.ready.clear();
        self.flushed = false;
        self.errors = 0;
        Ok(())
    }

    /// The next frame in presentation order, or `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Ok(Some(f));
            }
            if self.flushed {
                return Ok(None);
            }
            let Some(s) = self.cursor.next(&self.movie.video)? else {
                let timescale = self.movie.video.timescale;
                let remaining = self.decoder.flush_remaining().map_err(|e| DecodeError::Decode(e.to_string()))?;
                for yuv in &remaining {
                    let pts = take_pts(&mut self.pending, &mut self.origin);
                    self.ready.push_back(copy_frame(yuv, pts, timescale));
                }
                self.flushed = true;
                continue;
            };
            self.file.seek(SeekFrom::Start(s.offset))?;
            self.sample.resize(s.size as usize, 0);
            self.file.read_exact(&mut self.sample).map_err(|e| {
                DecodeError::Probe(ProbeError::Truncated(format!("sample {} could not be read: {e}", s.index + 1)))
            })?;
            self.stream.clear();
            if !self.started {
                self.stream.extend_from_slice(&self.head);
                self.started = true;
            }
            h264::annexb(&self.sample, self.nal_length_size, &mut self.stream)
                .map_err(|e| DecodeError::Decode(format!("sample {}: {e}", s.index + 1)))?;
            let timescale = self.movie.video.timescale;
            match self.decoder.decode(&self.stream) {
                Ok(picture) => {
                    self.pending.push(Reverse(s.pts));
                    if let Some(yuv) = picture {
                        let pts = take_pts(&mut self.pending, &mut self.origin);
                        self.ready.push_back(copy_frame(&yuv, pts, timescale));
                    }
                }
                // openh264 reports damage it conceals (a lost reference, a
                // broken slice) as an error for that picture; a few are
                // skipped, as players do, but a stream it mostly cannot read
                // is refused.
                Err(e) => {
                    self.errors += 1;
                    if self.errors > MAX_BAD_SAMPLES.max(s.index / 10) {
                        return Err(DecodeError::Decode(format!(
                            "{} of the first {} samples failed to decode, the last: {e}",
                            self.errors,
                            s.index + 1
                        )));
                    }
                }
            }
        }
    }
}

impl<R: Read + Seek> Iterator for VideoFrames<R> {
    type Item = Result<Frame, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// The presentation time of the picture just output, from the first one.
fn take_pts(pending: &mut BinaryHeap<Reverse<i64>>, origin: &mut Option<i64>) -> u64 {
    let pts = pending.pop().map_or(0, |Reverse(p)| p);
    let origin = *origin.get_or_insert(pts);
    pts.saturating_sub(origin).max(0) as u64
}

fn copy_frame(yuv: &DecodedYUV<'_>, pts: u64, timescale: u32) -> Frame {
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let plane = |src: &[u8], stride: usize, pw: usize, ph: usize| {
        let mut out = Vec::with_capacity(pw * ph);
        for row in 0..ph {
            match src.get(row * stride..row * stride + pw) {
                Some(r) => out.extend_from_slice(r),
                None => out.resize(out.len() + pw, 128),
            }
        }
        out
    };
    Frame {
        width: w,
        height: h,
        pts,
        timescale,
        y: plane(yuv.y(), sy, w, h),
        u: plane(yuv.u(), su, cw, ch),
        v: plane(yuv.v(), sv, cw, ch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
    }

    fn fingerprint(parts: &[&[u8]]) -> String {
        let h = parts
            .iter()
            .flat_map(|p| p.iter())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        format!("{h:016x}")
    }

    /// The luma as 16 x 9 rounded block means, as the `.frames` files hold it.
    fn thumbnail(f: &Frame) -> Vec<u8> {
        let (bw, bh) = (f.width / 16, f.height / 9);
        let mut out = Vec::new();
        for by in 0..9 {
            for bx in 0..16 {
                let sum: usize = (0..bh)
                    .flat_map(|y| (0..bw).map(move |x| (by * bh + y, bx * bw + x)))
                    .map(|(y, x)| usize::from(f.y[y * f.width + x]))
                    .sum();
                out.push(((sum + bw * bh / 2) / (bw * bh)) as u8);
            }
        }
        out
    }

    /// Decodes a file made by ffmpeg/x264 and compares every frame with what
    /// ffmpeg's decoder made of it: the first (an IDR picture) bit-exactly;
    /// every frame's 16x9 luma block means within one level, in order. openh264
    /// is not bit-exact on B slices (the Main file's two unreferenced B frames
    /// differ in ~25 pixels by 1-2 levels; in the High file's B-pyramid,
    /// referenced B frames differ by up to 6 levels in under 1% of the pixels,
    /// 65 dB or better, drifting a little until the next IDR).
    fn decodes_like_ffmpeg(name: &str, size: (usize, usize), fps: f64) {
        let expected: Vec<(String, Vec<u8>)> = std::fs::read_to_string(data(&format!("{name}.frames")))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (hash, thumb) = l.split_once(' ').unwrap();
                let thumb = (0..thumb.len()).step_by(2).map(|i| u8::from_str_radix(&thumb[i..i + 2], 16).unwrap());
                (hash.to_owned(), thumb.collect())
            })
            .collect();
        let frames = VideoFrames::open(std::fs::File::open(data(name)).unwrap()).unwrap();
        let mut count = 0;
        for (i, f) in frames.enumerate() {
            let f = f.unwrap();
            assert_eq!((f.width, f.height), size);
            assert!((f.time() - i as f64 / fps).abs() < 1e-6, "frame {i} at {} s", f.time());
            let (hash, thumb) = &expected[i];
            if i == 0 {
                assert_eq!(&fingerprint(&[&f.y, &f.u, &f.v]), hash, "the IDR frame is exact");
            }
            let worst = thumbnail(&f).iter().zip(thumb).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 1, "frame {i} is off by {worst}");
            count += 1;
        }
        assert_eq!(count, expected.len());
    }

    #[test]
    fn x264_high_profile_with_cabac_and_b_pyramid_decodes_in_order() {
        decodes_like_ffmpeg("high-bframes-aac.mp4", (160, 90), 30.0);
    }

    #[test]
    fn a_quicktime_main_profile_file_decodes_in_order() {
        decodes_like_ffmpeg("main-aac.mov", (176, 144), 25.0);
    }

    #[test]
    fn unreadable_inputs_are_refused_at_open_naming_the_codec() {
        let refusal = |name: &str| match VideoFrames::open(std::fs::File::open(data(name)).unwrap()) {
            Err(DecodeError::Unsupported(u)) => u,
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name} opened"),
        };
        let hevc = refusal("hevc.mp4");
        assert!(hevc.codec.contains("HEVC (hvc1)"), "{hevc}");
        let ten = refusal("high10.mp4");
        assert!(ten.codec.contains("High 10") && ten.detail.contains("8-bit"), "{ten}");
        let interlaced = refusal("interlaced.mp4");
        assert!(interlaced.detail.contains("interlaced"), "{interlaced}");
    }

    #[test]
    fn frames_convert_to_rgb_as_bt601_limited_range() {
        let frame = |y: u8, u: u8, v: u8| Frame {
            width: 2,
            height: 2,
            pts: 0,
            timescale: 1,
            y: vec![y; 4],
            u: vec![u],
            v: vec![v],
        };
        let px = |f: Frame| f.to_rgb().get_pixel(1, 1).0;
        assert_eq!(px(frame(235, 128, 128)), [255, 255, 255]);
        assert_eq!(px(frame(16, 128, 128)), [0, 0, 0]);
        let [r, g, b] = px(frame(81, 90, 240));
        assert!(r >= 250 && g <= 5 && b <= 5, "red: {r} {g} {b}");
    }

    #[test]
    fn damaged_samples_are_skipped_and_a_ruined_stream_is_refused() {
        let clip = std::fs::read(data("main-aac.mov")).unwrap();
        let movie = Movie::read(&mut std::io::Cursor::new(&clip)).unwrap();
        let mut cursor = Cursor::new();
        let mut samples = Vec::new();
        while let Some(s) = cursor.next(&movie.video).unwrap() {
            samples.push(s);
        }
        let garble = |which: &mut dyn Iterator<Item = usize>| {
            let mut bad = clip.clone();
            for i in which {
                let s = samples[i];
                // Keep the NAL length and header; scramble the slice data.
                for at in (s.offset + 8)..(s.offset + u64::from(s.size)) {
                    bad[at as usize] ^= 0x5a;
                }
            }
            VideoFrames::open(std::io::Cursor::new(bad)).unwrap().collect::<Result<Vec<Frame>, DecodeError>>()
        };
        // A damaged last picture (nothing refers to it): skipped, the rest
        // comes out in order. (Damage earlier in a group of pictures loses the
        // references of every picture after it: without concealment, openh264
        // refuses them all until the next IDR.)
        let last = samples.len() - 1;
        let frames = garble(&mut std::iter::once(last)).unwrap();
        assert_eq!(frames.len(), last);
        assert!(frames.windows(2).all(|p| p[0].pts < p[1].pts));
        // Every picture after the first damaged: refused.
        assert!(matches!(garble(&mut (1..samples.len())), Err(DecodeError::Decode(_))));
    }

    #[test]
    fn rewinding_gives_the_same_frames_again() {
        let mut frames = VideoFrames::open(std::fs::File::open(data("main-aac.mov")).unwrap()).unwrap();
        let first: Vec<Frame> = frames.by_ref().take(3).map(Result::unwrap).collect();
        frames.rewind().unwrap();
        let again: Vec<Frame> = frames.by_ref().take(3).map(Result::unwrap).collect();
        assert_eq!(first, again);
    }
}
