//! vidgate's local preview renderer: images and a shot plan in, an H.264 MP4 out.
//! It is not an AI model: it moves a camera over the start image (or over a
//! procedural scene seeded by the prompt), fades into the end image, and encodes
//! yuv420p at 24 fps with exactly 24 x duration frames. Frames are streamed:
//! one thread draws the next frames while another encodes, through a small ring
//! of reused buffers, so memory stays flat; the same spec always gives the same
//! bytes. With `sound`, an Opus ambience seeded by the prompt runs exactly as long.
//!
//! With an [`InputVideo`] (an H.264 MP4/MOV on disk, see [`probe`] and
//! [`decode`]) it edits that video, uses it as reference footage, or takes its
//! camera motion for the start image, decoding the input frame by frame as it
//! draws (never holding it whole), and can copy its audio track unchanged.
//! Specs without an input video render exactly the bytes they always did.

mod audio;
pub mod decode;
mod footage;
mod h264;
pub mod inspect;
mod motion;
mod mp4;
pub mod probe;
mod remux;
mod scene;

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange, RateControlMode,
};
use openh264::formats::YUVSource;

pub use scene::Motion;

pub const FPS: u32 = 24;

#[derive(Debug, Clone)]
pub struct VideoSpec {
    /// 720 or 1080: the output's short side.
    pub short_side: u32,
    /// `Some((16, 9))` etc. for text-to-video; `None` follows the start image.
    pub aspect: Option<(u32, u32)>,
    /// 3..=15 seconds; the output has exactly 24 x this many frames.
    pub duration_secs: u32,
    pub prompt: String,
    pub start_image: Option<Vec<u8>>,
    pub end_image: Option<Vec<u8>>,
    pub element_images: Vec<Vec<u8>>,
    pub shots: ShotPlan,
    /// Adds a 48 kHz stereo Opus ambience seeded by the prompt, exactly as long
    /// as the video.
    pub sound: bool,
    pub watermark: bool,
    /// Reference images (the O-series' `image_urls`): shown as insets like the
    /// elements, or, with no start image and no input video, the first one is
    /// the scene the camera moves over.
    pub reference_images: Vec<Vec<u8>>,
    /// A video to edit, to use as reference footage, or to take motion from.
    pub input_video: Option<InputVideo>,
}

impl Default for VideoSpec {
    /// A 5 s 720p text-to-video clip with no prompt: set what you need with
    /// `VideoSpec { ..VideoSpec::default() }`.
    fn default() -> Self {
        VideoSpec {
            short_side: 720,
            aspect: None,
            duration_secs: 5,
            prompt: String::new(),
            start_image: None,
            end_image: None,
            element_images: Vec::new(),
            shots: ShotPlan::Single,
            sound: false,
            watermark: false,
            reference_images: Vec::new(),
            input_video: None,
        }
    }
}

/// A video the render starts from: an MP4/MOV file on disk whose video track
/// is H.264 that openh264 reads (see [`decode`]); it is streamed, never held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputVideo {
    pub path: std::path::PathBuf,
    pub mode: VideoMode,
    /// Copy the input's audio track into the output unchanged (codec, sample
    /// entry and sample bytes), cut to the output's length, instead of the
    /// generated ambience. Without an audio track in the input, `sound`
    /// decides as usual.
    pub keep_original_sound: bool,
}

/// What a render does with its input video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoMode {
    /// Video edit (kling-o3-video-edit, kling-o1-video-edit[-fast]): the
    /// input's frames in time order at 24 fps, scaled to the output, under a
    /// colour grade seeded by the prompt that ramps in over the first second
    /// (so the first frame is the input's).
    Edit,
    /// Reference to video (kling-o3-reference-to-video): the input is the
    /// footage the prompt's camera moves over, looped to the duration.
    Reference,
    /// Motion control (kling-v3-motion-control): the start image (or first
    /// reference image) moved along the camera path estimated from the input.
    MotionControl,
}

#[derive(Debug, Clone)]
pub enum ShotPlan {
    Single,
    Customize(Vec<ShotSpec>),
    Intelligence,
}

#[derive(Debug, Clone)]
pub struct ShotSpec {
    pub prompt: String,
    pub duration_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOutput {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub has_audio: bool,
    /// The audio is the input video's track, copied (`keep_original_sound`).
    pub audio_copied: bool,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the render was cancelled")]
    Cancelled,
    #[error("invalid image: {0}")]
    InvalidImage(String),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The input video cannot be read: not an MP4/MOV, corrupt, or a codec or
    /// H.264 profile the local decoder does not read (the message names it).
    #[error("invalid input video: {0}")]
    InvalidVideo(String),
    #[error("encoder error: {0}")]
    Encode(String),
    #[error("write error: {0}")]
    Io(#[from] std::io::Error),
}

/// Output size for a short side and an aspect (w, h): the short side exact, the
/// long side rounded to an even number.
pub fn output_size(short_side: u32, aspect: (u32, u32)) -> (u32, u32) {
    let (aw, ah) = (aspect.0.max(1), aspect.1.max(1));
    let even = |v: u64| (v.div_ceil(2) * 2) as u32;
    if aw >= ah {
        (even((u64::from(short_side) * u64::from(aw) + u64::from(ah) / 2) / u64::from(ah)), short_side)
    } else {
        (short_side, even((u64::from(short_side) * u64::from(ah) + u64::from(aw) / 2) / u64::from(aw)))
    }
}

fn decode(bytes: &[u8]) -> Result<image::RgbImage, RenderError> {
    let img =
        image::load_from_memory(bytes).map(|i| i.into_rgb8()).map_err(|e| RenderError::InvalidImage(e.to_string()))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(RenderError::InvalidImage("the image is empty".to_owned()));
    }
    Ok(img)
}

/// Renders the video described by `spec` into `out`.
pub fn render(
    spec: &VideoSpec,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u32, u32) -> ControlFlow<()>,
) -> Result<RenderOutput, RenderError> {
    if !(1..=60).contains(&spec.duration_secs) || !(144..=2160).contains(&spec.short_side) {
        return Err(RenderError::InvalidSpec("duration or size out of range".to_owned()));
    }
    // 4:2:0 frames have whole chroma samples only at even sizes (the long side
    // is always made even).
    if !spec.short_side.is_multiple_of(2) {
        return Err(RenderError::InvalidSpec("the short side must be even".to_owned()));
    }
    let (start, end) = std::thread::scope(|scope| {
        let end = scope.spawn(|| spec.end_image.as_deref().map(decode).transpose());
        let start = spec.start_image.as_deref().map(decode).transpose();
        (start, end.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    });
    let (start, end) = (start?, end?);
    let input = match &spec.input_video {
        Some(v) => Some((v, probe_input(&v.path)?)),
        None => None,
    };
    let mode = input.as_ref().map(|(v, _)| v.mode);
    let footage = matches!(mode, Some(VideoMode::Edit | VideoMode::Reference));
    // With no start image and no footage, the first reference image is the
    // scene; the others are shown as insets.
    let (scene_image, inset_refs) = match (start, spec.reference_images.split_first()) {
        (None, Some((first, rest))) if !footage => (Some(decode(first)?), rest),
        (start, _) => (start, &spec.reference_images[..]),
    };
    let input_size = input.as_ref().map(|(_, info)| info.video.display_size());
    let aspect = match (spec.aspect, footage, &scene_image, input_size) {
        (Some(a), ..) => a,
        (None, true, _, Some(size)) => size,
        (None, _, Some(img), _) => (img.width(), img.height()),
        (None, _, None, Some(size)) => size,
        (None, _, None, None) => (16, 9),
    };
    let (width, height) = output_size(spec.short_side, aspect);
    let total = FPS * spec.duration_secs;
    let path = match &input {
        Some((v, _)) if v.mode == VideoMode::MotionControl => {
            let mut poll = || progress(0, total);
            Some(motion::camera_path(&v.path, total, scene::PATH_ROOM, &mut poll)?)
        }
        _ => None,
    };
    let backdrop = match (footage, scene_image) {
        (true, _) => scene::Backdrop::Footage,
        (false, Some(img)) => scene::Backdrop::Picture(img),
        (false, None) => scene::Backdrop::Procedural,
    };
    let insets: Vec<&[u8]> = spec.element_images.iter().take(3).chain(inset_refs).map(Vec::as_slice).collect();
    let plan = scene::Plan::new(spec, backdrop, end, width, height, path, &insets)?;
    let copied = match &input {
        Some((v, _)) if v.keep_original_sound => remux::copy_audio(&v.path, spec.duration_secs)?,
        _ => None,
    };
    let source = match &input {
        Some((v, _)) if footage => Source::Footage { mode: v.mode, path: &v.path },
        _ => Source::Picture,
    };

    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), encoder_config(width, height))
        .map_err(|e| RenderError::Encode(e.to_string()))?;
    quiet(&mut encoder);

    // The ambience (if any) is made on its own thread while the video renders;
    // the video itself takes two (see `encode_video`).
    let stop_sound = AtomicBool::new(false);
    let generate = spec.sound && copied.is_none();
    let (video, sound) = std::thread::scope(|scope| {
        let sound = generate.then(|| scope.spawn(|| audio::encode(&spec.prompt, spec.duration_secs, &stop_sound)));
        let video =
            encode_video(&plan, &source, &spec.prompt, &mut encoder, width as usize, height as usize, total, progress);
        if video.is_err() {
            stop_sound.store(true, Ordering::Relaxed);
        }
        (video, sound.map(|handle| handle.join()))
    });
    let video = video?;
    let sound = match sound {
        None => None,
        Some(Ok(track)) => Some(track?),
        Some(Err(panic)) => std::panic::resume_unwind(panic),
    };
    let (Some(sps), Some(pps)) = (&video.sps, &video.pps) else {
        return Err(RenderError::Encode("the encoder produced no SPS/PPS".to_owned()));
    };
    let _ = progress(total, total);
    let track = mp4::VideoTrack { width, height, fps: FPS, sps, pps, samples: &video.samples, data: &video.data };
    let audio = match (&sound, &copied) {
        (Some(s), _) => Some(mp4::Audio::Opus(s)),
        (None, Some(c)) => Some(mp4::Audio::Copied(c)),
        (None, None) => None,
    };
    let bytes = mp4::write_mp4(out, &track, audio.as_ref())?;
    Ok(RenderOutput { width, height, frames: total, has_audio: audio.is_some(), audio_copied: copied.is_some(), bytes })
}

/// Probes an input video and checks that the local decoder reads it.
fn probe_input(path: &std::path::Path) -> Result<probe::MediaInfo, RenderError> {
    let info = probe::probe_path(path).map_err(|e| match e {
        probe::ProbeError::Io(io) => RenderError::Io(io),
        e => RenderError::InvalidVideo(e.to_string()),
    })?;
    info.video.check_decodable().map_err(|e| RenderError::InvalidVideo(e.to_string()))?;
    Ok(info)
}

/// Where the frames' pictures come from.
enum Source<'a> {
    /// The plan's own picture (a start image, a reference image or the
    /// prompt's), under its camera.
    Picture,
    /// An input video's frames.
    Footage { mode: VideoMode, path: &'a std::path::Path },
}

/// Bits per pixel per frame the rate control may spend at most: about 2.7 Mbit/s
/// for 1280x720 and 6 Mbit/s for 1920x1080 at 24 fps.
const MAX_BITS_PER_PIXEL: f64 = 0.12;
/// The lowest bitrate ceiling, for the smallest sizes.
const MIN_BITRATE: u32 = 250_000;
/// The finest quantiser the encoder may use. Without a floor the rate control,
/// far under its ceiling on these smooth pictures, keeps refining P frames: on
/// the 720p bench clip no floor made 15 times the bytes of QP 22 for +1.9 dB,
/// and QP 18 2.7 times for +0.5 dB, at levels where neither shows. At 22 that
/// clip measures 47.4 dB luma against the frames we drew (ffmpeg's libx264
/// output of the same scene: 45.0 dB against its unencoded frames).
const MIN_QP: u8 = 22;

/// The encoder's settings for a `width` x `height` video: the rate control keeps
/// under a bitrate that scales with the pixel rate, never quantising finer than
/// `MIN_QP`. Background detection is off: it is made for a still camera, and
/// over our always-moving one it measured worse at every size (0.3-0.4 dB less
/// luma at equal bits). The low complexity mode encodes 10-20% faster with the
/// same quality and slightly smaller files. One encoder thread: openh264 only
/// threads across slices, and its fixed-count slices rebalance by measured time,
/// so the bytes would change from run to run.
fn encoder_config(width: u32, height: u32) -> EncoderConfig {
    let bitrate = (f64::from(width) * f64::from(height) * f64::from(FPS) * MAX_BITS_PER_PIXEL) as u32;
    EncoderConfig::new()
        .bitrate(BitRate::from_bps(bitrate.max(MIN_BITRATE)))
        .max_frame_rate(FrameRate::from_hz(FPS as f32))
        .rate_control_mode(RateControlMode::Bitrate)
        .qp(QpRange::new(MIN_QP, 51))
        .skip_frames(false)
        .background_detection(false)
        .complexity(Complexity::Low)
        .num_threads(1)
        .intra_frame_period(IntraFramePeriod::from_num_frames(FPS * 2))
}

/// Silences openh264's own log before its first frame. It checks the
/// parameters then and writes a warning straight to standard error for every
/// render (frame skipping is off on purpose, see `encoder_config`), before the
/// `openh264` crate applies its (quiet) trace level; a server's log must hold
/// only its own lines.
fn quiet(encoder: &mut Encoder) {
    let mut level = openh264_sys2::WELS_LOG_QUIET as std::ffi::c_int;
    // SAFETY: the encoder exists (made by `with_api_config`); the trace level
    // is an option the library reads from an `int` during the call, and it
    // changes no parameter the crate relies on.
    let _ = unsafe { encoder.raw_api().set_option(openh264_sys2::ENCODER_OPTION_TRACE_LEVEL, (&raw mut level).cast()) };
}

/// The encoded video, ready to mux.
#[derive(Default)]
struct EncodedVideo {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    samples: Vec<mp4::Sample>,
    /// All samples back to back (AVCC: 4-byte lengths).
    data: Vec<u8>,
}

/// Draws and encodes all `total` frames. This thread encodes while another draws
/// the next frames into a small ring of reusable buffers, so frames are streamed
/// and memory stays flat. Each frame is drawn independently of the others and
/// encoded in order, so the bytes do not depend on the scheduling.
#[expect(clippy::too_many_arguments, reason = "what to draw, how to encode it, and where to report")]
fn encode_video(
    plan: &scene::Plan,
    source: &Source<'_>,
    prompt: &str,
    encoder: &mut Encoder,
    w: usize,
    h: usize,
    total: u32,
    progress: &mut dyn FnMut(u32, u32) -> ControlFlow<()>,
) -> Result<EncodedVideo, RenderError> {
    let mut video = EncodedVideo { samples: Vec::with_capacity(total as usize), ..EncodedVideo::default() };
    let frame_len = w * h + 2 * (w / 2) * (h / 2);
    std::thread::scope(|scope| {
        let (drawn_tx, drawn_rx) = mpsc::sync_channel::<Result<Vec<u8>, RenderError>>(FRAME_BUFFERS);
        let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(FRAME_BUFFERS);
        for _ in 0..FRAME_BUFFERS {
            let _ = free_tx.send(vec![0u8; frame_len]);
        }
        scope.spawn(move || {
            let painter = match source {
                Source::Picture => Ok(footage::Painter::Picture(scene::Painter::new(plan))),
                Source::Footage { mode, path } => footage::FootagePainter::new(plan, *mode, path, prompt, w, h)
                    .map(|p| footage::Painter::Footage(Box::new(p))),
            };
            let mut painter = match painter {
                Ok(p) => p,
                Err(e) => {
                    let _ = drawn_tx.send(Err(e));
                    return;
                }
            };
            for i in 0..total {
                // Either channel closing means the encoder stopped (an error or a
                // cancel): stop drawing too.
                let Ok(mut yuv) = free_rx.recv() else { return };
                let drawn = painter.frame(i, total, &mut yuv).map(|()| yuv);
                let failed = drawn.is_err();
                if drawn_tx.send(drawn).is_err() || failed {
                    return;
                }
            }
        });
        for i in 0..total {
            if progress(i, total).is_break() {
                return Err(RenderError::Cancelled);
            }
            let yuv = drawn_rx.recv().map_err(|_| RenderError::Encode("the drawing thread stopped".to_owned()))??;
            let frame = Frame { w, h, yuv };
            let encoded = encoder.encode(&frame).map_err(|e| RenderError::Encode(e.to_string()))?;
            let sync = matches!(encoded.frame_type(), FrameType::IDR | FrameType::I);
            let before = video.data.len();
            for l in 0..encoded.num_layers() {
                let Some(layer) = encoded.layer(l) else { continue };
                for n in 0..layer.nal_count() {
                    let Some(nal) = layer.nal_unit(n) else { continue };
                    let nal = strip_start_code(nal);
                    match nal.first().map(|b| b & 0x1f) {
                        Some(7) => video.sps = Some(nal.to_vec()),
                        Some(8) => video.pps = Some(nal.to_vec()),
                        Some(_) => {
                            video.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                            video.data.extend_from_slice(nal);
                        }
                        None => {}
                    }
                }
            }
            if video.data.len() == before {
                return Err(RenderError::Encode(format!("frame {i} produced no picture")));
            }
            video.samples.push(mp4::Sample { size: (video.data.len() - before) as u32, sync });
            // The drawing thread may be done already and not need it back.
            let _ = free_tx.send(frame.yuv);
        }
        Ok(())
    })?;
    Ok(video)
}

/// Frames in flight between the drawing thread and the encoder: one being
/// drawn, one waiting, one being encoded.
const FRAME_BUFFERS: usize = 3;

/// One I420 frame as the encoder reads it, without copying.
struct Frame {
    w: usize,
    h: usize,
    yuv: Vec<u8>,
}

impl YUVSource for Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.w, self.h)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.w, self.w / 2, self.w / 2)
    }

    fn y(&self) -> &[u8] {
        &self.yuv[..self.w * self.h]
    }

    fn u(&self) -> &[u8] {
        let at = self.w * self.h;
        &self.yuv[at..at + (self.w / 2) * (self.h / 2)]
    }

    fn v(&self) -> &[u8] {
        &self.yuv[self.w * self.h + (self.w / 2) * (self.h / 2)..]
    }
}

fn strip_start_code(nal: &[u8]) -> &[u8] {
    if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        nal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A checkerboard: fine detail, so any change of framing shows.
    fn checker_png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let v = if (x / 6 + y / 6) % 2 == 0 { 40 } else { 210 };
            image::Rgb([v, (x * 255 / w) as u8, v])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A flat grey picture, nothing like `png`'s gradient.
    fn flat_png(w: u32, h: u32, v: u8) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(w, h, image::Rgb([v, v, v])).write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn spec() -> VideoSpec {
        VideoSpec {
            short_side: 720,
            aspect: None,
            duration_secs: 3,
            prompt: "slow zoom in".to_owned(),
            start_image: Some(png(800, 600)),
            end_image: None,
            element_images: Vec::new(),
            shots: ShotPlan::Single,
            sound: false,
            watermark: false,
            ..VideoSpec::default()
        }
    }

    fn run(spec: &VideoSpec) -> (Vec<u8>, RenderOutput) {
        try_run(spec).unwrap()
    }

    fn try_run(spec: &VideoSpec) -> Result<(Vec<u8>, RenderOutput), RenderError> {
        let mut out = Vec::new();
        let r = render(spec, &mut out, &mut |_, _| ControlFlow::Continue(()))?;
        Ok((out, r))
    }

    #[test]
    fn sizes_keep_the_short_side_and_are_even() {
        assert_eq!(output_size(720, (16, 9)), (1280, 720));
        assert_eq!(output_size(1080, (9, 16)), (1080, 1920));
        assert_eq!(output_size(720, (1, 1)), (720, 720));
        assert_eq!(output_size(720, (801, 600)), (962, 720));
    }

    #[test]
    fn an_image_to_video_render_is_a_faststart_mp4_with_exact_frames() {
        let (bytes, r) = run(&spec());
        assert_eq!((r.width, r.height, r.frames), (960, 720, 72));
        let info = inspect::inspect(&bytes).unwrap();
        assert_eq!((info.width, info.height, info.video_frames), (960, 720, 72));
        assert_eq!(info.codec, "avc1");
        assert!(info.moov_before_mdat);
        assert!((info.duration_secs - 3.0).abs() < 1e-9);
        assert!((info.fps - 24.0).abs() < 1e-9);
        assert!(!info.has_audio);
    }

    #[test]
    fn the_same_spec_gives_the_same_bytes() {
        let mut s = spec();
        s.end_image = Some(png(600, 600));
        assert_eq!(run(&s).0, run(&s).0);
    }

    #[test]
    fn text_to_video_follows_the_aspect_and_differs_by_prompt() {
        let mut s = spec();
        s.start_image = None;
        s.aspect = Some((9, 16));
        s.prompt = "ocean".to_owned();
        let (a, r) = run(&s);
        assert_eq!((r.width, r.height), (720, 1280));
        s.prompt = "desert".to_owned();
        assert_ne!(a, run(&s).0);
    }

    /// Decodes the first and last frames' luma back from an MP4 we wrote.
    fn first_and_last_luma(bytes: &[u8]) -> (Vec<u8>, Vec<u8>, usize, usize) {
        let frames = decoded(bytes);
        assert_eq!(frames.len() as u32, inspect::inspect(bytes).unwrap().video_frames, "every frame decodes");
        let first = frames.first().unwrap();
        (first.y.clone(), frames.last().unwrap().y.clone(), first.width, first.height)
    }

    /// Every frame of an MP4, decoded.
    fn decoded(bytes: &[u8]) -> Vec<decode::Frame> {
        decode::VideoFrames::open(std::io::Cursor::new(bytes)).unwrap().map(Result::unwrap).collect()
    }

    fn psnr(a: &[u8], b: &[u8]) -> f64 {
        let mse = a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>() / a.len() as f64;
        if mse == 0.0 { 99.0 } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
    }

    /// The image fitted to the output size, as BT.601 luma.
    fn fitted_luma(bytes: &[u8], w: usize, h: usize) -> Vec<u8> {
        let img = image::load_from_memory(bytes).unwrap().to_rgb8();
        let scale = (w as f32 / img.width() as f32).max(h as f32 / img.height() as f32);
        let (sw, sh) = ((img.width() as f32 * scale).ceil() as u32, (img.height() as f32 * scale).ceil() as u32);
        let r = image::imageops::resize(&img, sw, sh, image::imageops::FilterType::Triangle);
        let c = image::imageops::crop_imm(&r, (sw - w as u32) / 2, (sh - h as u32) / 2, w as u32, h as u32).to_image();
        c.pixels()
            .map(|p| {
                let [r, g, b] = p.0.map(i32::from);
                (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
            })
            .collect()
    }

    #[test]
    fn the_first_frame_is_the_start_image_and_the_last_the_end_image() {
        let mut s = spec();
        let end = png(600, 600);
        s.end_image = Some(end.clone());
        let (bytes, r) = run(&s);
        let (first, last, w, h) = first_and_last_luma(&bytes);
        assert_eq!((w as u32, h as u32), (r.width, r.height));
        let p_first = psnr(&first, &fitted_luma(s.start_image.as_ref().unwrap(), w, h));
        let p_last = psnr(&last, &fitted_luma(&end, w, h));
        assert!(p_first >= 30.0, "first frame PSNR {p_first:.1} dB");
        assert!(p_last >= 30.0, "last frame PSNR {p_last:.1} dB");
    }

    #[test]
    fn a_custom_element_appears_in_the_video() {
        let mut s = spec();
        let plain = run(&s).0;
        s.element_images = vec![png(400, 400)];
        let (with, r) = run(&s);
        assert_ne!(plain, with);
        assert_eq!(r.frames, 72);
    }

    /// The smallest clip the API allows: 1 s, 256x144 text-to-video.
    fn tiny() -> VideoSpec {
        VideoSpec {
            short_side: 144,
            aspect: Some((16, 9)),
            duration_secs: 1,
            prompt: "a lighthouse on a cliff".to_owned(),
            start_image: None,
            ..spec()
        }
    }

    #[test]
    fn the_watermark_marks_the_corner_and_leaves_the_rest() {
        let mut s = tiny();
        let (plain, _, w, h) = first_and_last_luma(&run(&s).0);
        s.watermark = true;
        let (marked, _, _, _) = first_and_last_luma(&run(&s).0);
        // The mark's box (see scene::mark), and a macroblock of slack around it
        // for the encoder's own differences.
        let size = (h / 12).max(24);
        let (x0, y0) = (w - size * 2 - size / 2, h - size - size / 2);
        let (mut corner, mut rest) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if x >= x0 && y >= y0 && x < x0 + 2 * size && y < y0 + size {
                    corner.0.push(plain[i]);
                    corner.1.push(marked[i]);
                } else if x + 16 < x0 || y + 16 < y0 {
                    rest.0.push(plain[i]);
                    rest.1.push(marked[i]);
                }
            }
        }
        let p_corner = psnr(&corner.0, &corner.1);
        let p_rest = psnr(&rest.0, &rest.1);
        assert!(p_corner < 20.0, "the corner changes: {p_corner:.1} dB");
        assert!(p_rest > 35.0, "the rest stays: {p_rest:.1} dB");
    }

    #[test]
    fn the_prompt_picks_the_camera_move_over_a_start_image() {
        assert_eq!(Motion::from_prompt("Slow ZOOM IN on the face"), Motion::ZoomIn);
        assert_eq!(Motion::from_prompt("pan left across the valley"), Motion::PanLeft);
        let mut s = tiny();
        s.aspect = None;
        s.start_image = Some(checker_png(320, 180));
        s.prompt = "zoom in".to_owned();
        let (zoom_first, zoom_last, _, _) = first_and_last_luma(&run(&s).0);
        s.prompt = "pan left".to_owned();
        let (pan_first, pan_last, _, _) = first_and_last_luma(&run(&s).0);
        // Both moves start from the same framing and end somewhere else.
        assert!(psnr(&zoom_first, &pan_first) > 45.0);
        let p = psnr(&zoom_last, &pan_last);
        assert!(p < 20.0, "last frames differ: {p:.1} dB");
    }

    #[test]
    fn an_end_image_changes_the_end_only() {
        let mut s = tiny();
        s.aspect = None;
        s.start_image = Some(png(320, 180));
        let (first, last, _, _) = first_and_last_luma(&run(&s).0);
        s.end_image = Some(flat_png(200, 200, 30));
        let (first_e, last_e, _, _) = first_and_last_luma(&run(&s).0);
        assert_eq!(first, first_e, "the start is untouched");
        let p = psnr(&last, &last_e);
        assert!(p < 20.0, "the last frame becomes the end image: {p:.1} dB");
    }

    #[test]
    fn a_shot_plan_changes_the_motion_per_shot() {
        let mut s = tiny();
        s.aspect = None;
        s.start_image = Some(checker_png(320, 180));
        s.duration_secs = 2;
        s.prompt = "zoom in".to_owned();
        let (single_bytes, r) = run(&s);
        let (_, single_last, _, _) = first_and_last_luma(&single_bytes);
        s.shots = ShotPlan::Customize(vec![
            ShotSpec { prompt: "zoom in".to_owned(), duration_secs: 1 },
            ShotSpec { prompt: "pan left".to_owned(), duration_secs: 1 },
        ]);
        let (custom_bytes, rc) = run(&s);
        let (_, custom_last, _, _) = first_and_last_luma(&custom_bytes);
        assert_eq!((r.frames, rc.frames), (48, 48));
        let p = psnr(&single_last, &custom_last);
        assert!(p < 20.0, "the second shot pans instead: {p:.1} dB");
        s.shots = ShotPlan::Intelligence;
        let smart = run(&s).0;
        assert_ne!(smart, single_bytes);
        assert_ne!(smart, custom_bytes);
        s.shots = ShotPlan::Customize(vec![ShotSpec { prompt: "pan left".to_owned(), duration_secs: 1 }]);
        assert!(matches!(try_run(&s), Err(RenderError::InvalidSpec(_))));
    }

    #[test]
    fn the_quality_sets_the_short_side() {
        let mut s = tiny();
        for (short, size) in [(144, (256, 144)), (288, (512, 288))] {
            s.short_side = short;
            let (bytes, r) = run(&s);
            let info = inspect::inspect(&bytes).unwrap();
            assert_eq!((r.width, r.height), size);
            assert_eq!((info.width, info.height), size);
        }
    }

    #[test]
    fn the_duration_sets_the_frame_count() {
        let mut s = tiny();
        for secs in [1, 2] {
            s.duration_secs = secs;
            let (bytes, r) = run(&s);
            let info = inspect::inspect(&bytes).unwrap();
            assert_eq!((r.frames, info.video_frames), (24 * secs, 24 * secs));
            assert!((info.duration_secs - f64::from(secs)).abs() < 1e-9);
        }
    }

    #[test]
    fn the_aspect_sets_the_text_to_video_size() {
        let mut s = tiny();
        for (aspect, size) in [((16, 9), (256, 144)), ((9, 16), (144, 256)), ((1, 1), (144, 144))] {
            s.aspect = Some(aspect);
            let info = inspect::inspect(&run(&s).0).unwrap();
            assert_eq!((info.width, info.height), size, "{aspect:?}");
        }
    }

    /// One audio frame (20 ms) in seconds: the tolerance for "as long as".
    const AUDIO_FRAME_SECS: f64 = 960.0 / 48_000.0;

    #[test]
    fn sound_adds_an_opus_track_exactly_as_long_as_the_video() {
        let mut s = tiny();
        s.duration_secs = 2;
        s.sound = true;
        let (bytes, r) = run(&s);
        assert!(r.has_audio);
        let info = inspect::inspect(&bytes).unwrap();
        assert!(info.has_audio && info.moov_before_mdat);
        assert_eq!(info.audio_codec.as_deref(), Some("Opus"));
        assert_eq!((info.audio_sample_rate, info.audio_channels), (Some(48_000), Some(2)));
        let audio = info.audio_duration_secs.unwrap();
        assert!(
            (audio - info.duration_secs).abs() <= AUDIO_FRAME_SECS,
            "audio {audio} s, video {} s",
            info.duration_secs
        );
        // Enough 20 ms packets for the pre-skip plus the whole clip, and no more.
        let pre_skip = u32::from(info.audio_pre_skip.unwrap());
        assert!(pre_skip > 0);
        assert_eq!(info.audio_packets, Some((2 * 48_000 + pre_skip).div_ceil(960)));
        assert_eq!(inspect::audio_samples(&bytes).unwrap().len() as u32, info.audio_packets.unwrap());
        assert_eq!(info.video_frames, 48);
    }

    #[test]
    fn without_sound_there_is_no_audio_track() {
        let (bytes, r) = run(&tiny());
        assert!(!r.has_audio);
        let info = inspect::inspect(&bytes).unwrap();
        assert!(!info.has_audio);
        assert_eq!((info.audio_codec, info.audio_packets), (None, None));
        assert!(inspect::audio_samples(&bytes).is_err());
    }

    /// Decodes the file's Opus track back to interleaved stereo, pre-skip and
    /// padding removed.
    fn decoded_sound(bytes: &[u8]) -> Vec<f32> {
        let info = inspect::inspect(bytes).unwrap();
        let mut dec = opus_pure::OpusDecoder::new(48_000, 2).unwrap();
        let mut buf = vec![0.0f32; 960 * 2];
        let mut pcm = Vec::new();
        for p in inspect::audio_samples(bytes).unwrap() {
            let n = dec.decode(p, 960, &mut buf).unwrap();
            pcm.extend_from_slice(&buf[..n * 2]);
        }
        let skip = usize::from(info.audio_pre_skip.unwrap()) * 2;
        let len = (info.audio_duration_secs.unwrap() * 48_000.0).round() as usize * 2;
        pcm[skip..skip + len].to_vec()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn the_sound_is_an_ambience_that_fades_in_and_out() {
        let mut s = tiny();
        s.duration_secs = 3;
        s.sound = true;
        let bytes = run(&s).0;
        let sizes: Vec<usize> = inspect::audio_samples(&bytes).unwrap().iter().map(|p| p.len()).collect();
        // Silence codes as a few bytes a packet; this needs real bits, and VBR
        // makes them vary with the content.
        assert!(sizes.iter().sum::<usize>() / sizes.len() > 40, "{sizes:?}");
        assert!(sizes.iter().any(|n| *n != sizes[0]));
        let pcm = decoded_sound(&bytes);
        assert_eq!(pcm.len(), 3 * 48_000 * 2);
        let window = |sec: f64, len: f64| {
            let a = (sec * 48_000.0) as usize * 2;
            rms(&pcm[a..a + (len * 48_000.0) as usize * 2])
        };
        let (start, middle, end) = (window(0.0, 0.02), window(1.0, 1.0), window(2.98, 0.02));
        assert!(middle > 0.01, "audible: {middle}");
        assert!(start < middle / 4.0 && end < middle / 4.0, "fades: {start} {middle} {end}");
        // Not a constant tone: the level wanders from one tenth of a second to the next.
        let levels: Vec<f64> = (0..10).map(|i| window(1.0 + 0.1 * f64::from(i), 0.1)).collect();
        let (lo, hi) = levels.iter().fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        assert!(hi / lo > 1.05, "levels {levels:?}");
    }

    #[test]
    fn the_sound_follows_the_prompt_and_repeats_exactly() {
        let mut s = tiny();
        s.sound = true;
        let (a, _) = run(&s);
        assert_eq!(a, run(&s).0, "the same spec gives the same bytes");
        s.prompt = "a busy night market".to_owned();
        let b = run(&s).0;
        assert_ne!(inspect::audio_samples(&a).unwrap(), inspect::audio_samples(&b).unwrap());
    }

    #[test]
    fn a_break_from_progress_cancels() {
        let mut out = Vec::new();
        let r = render(&spec(), &mut out, &mut |i, _| {
            if i >= 5 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        });
        assert!(matches!(r, Err(RenderError::Cancelled)));
    }

    #[test]
    fn a_break_from_progress_cancels_the_sound_too() {
        let mut s = spec();
        s.sound = true;
        s.duration_secs = 60;
        let mut out = Vec::new();
        let r =
            render(&s, &mut out, &mut |i, _| if i >= 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) });
        assert!(matches!(r, Err(RenderError::Cancelled)));
        assert!(out.is_empty());
    }

    /// FNV-1a: a stable fingerprint of a file's bytes.
    fn fingerprint(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// The bytes of renders without an input video are pinned: adding video
    /// inputs must not change a single byte of what the existing specs make.
    #[test]
    fn specs_without_an_input_video_render_the_same_bytes_as_before() {
        let mut still = tiny();
        still.aspect = None;
        still.start_image = Some(checker_png(320, 180));
        still.end_image = Some(png(200, 200));
        still.element_images = vec![png(100, 100)];
        still.watermark = true;
        let mut text = tiny();
        text.duration_secs = 2;
        // No sound: the Opus encoder picks its SIMD code by the CPU at run time,
        // so an audio track's bytes differ between machines (AVX-512 or not).
        text.sound = false;
        text.shots = ShotPlan::Intelligence;
        let got: Vec<String> = [still, text].iter().map(|s| format!("{:016x}", fingerprint(&run(s).0))).collect();
        assert_eq!(got, ["c1d98061ae716a57", "7e0cf546867c7ca7"]);
    }

    /// A file in the temp directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn with(name: &str, bytes: &[u8]) -> TempFile {
            let path = std::env::temp_dir().join(format!("vidgate-render-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
    }

    /// A spec that renders `input` in `mode`.
    fn with_input(path: &std::path::Path, mode: VideoMode, keep_original_sound: bool) -> VideoSpec {
        VideoSpec {
            short_side: 144,
            aspect: None,
            duration_secs: 2,
            prompt: "make it warm".to_owned(),
            input_video: Some(InputVideo { path: path.to_owned(), mode, keep_original_sound }),
            ..VideoSpec::default()
        }
    }

    /// Our own 2 s, 256x144 text-to-video clip as an input file.
    fn input_clip(name: &str, prompt: &str, start: Option<Vec<u8>>, sound: bool) -> TempFile {
        let s = VideoSpec {
            prompt: prompt.to_owned(),
            duration_secs: 2,
            aspect: if start.is_some() { None } else { Some((16, 9)) },
            start_image: start,
            sound,
            ..tiny()
        };
        TempFile::with(name, &run(&s).0)
    }

    fn mean(p: &[u8]) -> f64 {
        p.iter().map(|v| f64::from(*v)).sum::<f64>() / p.len() as f64
    }

    /// Pearson correlation: whether two pictures show the same thing, whatever
    /// their grade.
    fn correlation(a: &[u8], b: &[u8]) -> f64 {
        let (ma, mb) = (mean(a), mean(b));
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (f64::from(*x) - ma, f64::from(*y) - mb);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa * bb).sqrt()
    }

    /// The bound on the first frame: it is the input's first decoded picture
    /// copied unchanged (the grade's weight is 0 there and scaling to the
    /// input's own size is exact), so only our own re-encode separates them:
    /// at the encoder's finest quantiser (`MIN_QP`, 47 dB on the bench clip)
    /// this clip measures about 55 dB. 40 dB leaves room for harder content
    /// and is far above a different picture (under 20 dB here).
    #[test]
    fn a_local_edit_starts_on_the_input_first_frame_then_grades_it() {
        let input = input_clip("edit-in.mp4", "a harbour at dusk, pan right", None, false);
        let (bytes, r) = run(&with_input(&input.0, VideoMode::Edit, false));
        assert_eq!((r.width, r.height, r.frames, r.has_audio), (256, 144, 48, false));
        let (src, out) = (decoded(&std::fs::read(&input.0).unwrap()), decoded(&bytes));
        assert_eq!(out.len(), 48);
        let first = psnr(&out[0].y, &src[0].y);
        assert!(first >= 40.0, "first frame PSNR {first:.1} dB");
        // From one second on the grade is whole: warm (less blue, more red),
        // darker corners, and still the same picture.
        for i in [30, 47] {
            let (o, s) = (&out[i], &src[i]);
            let p = psnr(&o.y, &s.y);
            let c = correlation(&o.y, &s.y);
            let (du, dv) = (mean(&o.u) - mean(&s.u), mean(&o.v) - mean(&s.v));
            assert!(c > 0.9, "frame {i} is still the input's picture: {c:.3}");
            assert!(p < 35.0, "frame {i}'s luma is graded too (contrast, vignette): {p:.1} dB");
            assert!(du < -8.0 && dv > 8.0, "frame {i} is warmer: {du:.1} {dv:.1}");
        }
    }

    #[test]
    fn an_edit_follows_the_inputs_duration_aspect_and_time_at_24_fps() {
        // 160x90 at 30 fps, 2 s: a 16:9 output whose frame i shows input frame i * 30 / 24.
        let mut s = with_input(&fixture("high-bframes-aac.mp4"), VideoMode::Edit, false);
        s.prompt = "black and white".to_owned();
        let (bytes, r) = run(&s);
        assert_eq!((r.width, r.height, r.frames), (256, 144, 48));
        let info = inspect::inspect(&bytes).unwrap();
        assert_eq!((info.video_frames, info.duration_secs), (48, 2.0));
        let src: Vec<decode::Frame> =
            decode::VideoFrames::open(std::fs::File::open(fixture("high-bframes-aac.mp4")).unwrap())
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let scaler = footage::FrameScaler::new((160, 90), 0, 256, 144);
        let scaled: Vec<Vec<u8>> = src.iter().map(|f| scaler.scale(f).y).collect();
        for (i, o) in decoded(&bytes).iter().enumerate() {
            let want = i * 30 / 24;
            let best = (want.saturating_sub(2)..(want + 3).min(scaled.len()))
                .max_by(|a, b| correlation(&o.y, &scaled[*a]).total_cmp(&correlation(&o.y, &scaled[*b])))
                .unwrap();
            assert_eq!(best, want, "output frame {i}");
            // Black and white, once the grade is in.
            if i >= 24 {
                assert!((mean(&o.u) - 128.0).abs() < 2.0 && (mean(&o.v) - 128.0).abs() < 2.0, "frame {i}");
            }
        }
    }

    #[test]
    fn keep_original_sound_copies_the_inputs_audio_track_byte_for_byte() {
        let path = fixture("main-aac.mov");
        let mut s = with_input(&path, VideoMode::Edit, true);
        s.duration_secs = 1;
        s.sound = true;
        let (bytes, r) = run(&s);
        assert!(r.has_audio && r.audio_copied);
        let input = std::fs::read(&path).unwrap();
        let (ours, theirs) = (
            probe::Movie::read(&mut std::io::Cursor::new(&bytes)).unwrap(),
            probe::Movie::read(&mut std::io::Cursor::new(&input)).unwrap(),
        );
        let (a, b) = (ours.audio.as_ref().unwrap(), theirs.audio.as_ref().unwrap());
        // The same sample entry (codec and configuration), verbatim.
        assert_eq!(a.entry, b.entry);
        assert_eq!(a.timescale, b.timescale);
        // The input's first samples, as they were, for the output's second.
        let (copied, original) = (inspect::audio_samples(&bytes).unwrap(), inspect::audio_samples(&input).unwrap());
        // AAC frames of 1024 samples, from the start of the media up to the
        // edit's start (the encoder's priming) plus one second.
        let start = b.edit.map_or(0, |e| e.media_time);
        assert_eq!(copied.len() as u64, (start + u64::from(b.timescale)).div_ceil(1024));
        assert_eq!(copied[..], original[..copied.len()]);
        let durations = |m: &probe::Movie| {
            let t = m.audio.as_ref().unwrap();
            let mut c = probe::Cursor::new();
            std::iter::from_fn(|| c.next(t).unwrap()).map(|s| s.duration).collect::<Vec<u32>>()
        };
        assert_eq!(durations(&ours)[..], durations(&theirs)[..copied.len()]);
        // Played for exactly the video's second, from where the input starts it.
        let info = inspect::inspect(&bytes).unwrap();
        assert_eq!((info.audio_codec.as_deref(), info.audio_duration_secs), (Some("mp4a"), Some(1.0)));
        assert_eq!(a.edit.map(|e| e.media_time), b.edit.map(|e| e.media_time));
        // The same spec gives the same bytes.
        assert_eq!(bytes, run(&s).0);
    }

    #[test]
    fn without_audio_in_the_input_sound_decides() {
        let input = input_clip("silent.mp4", "a quiet field", None, false);
        let mut s = with_input(&input.0, VideoMode::Edit, true);
        let (_, r) = run(&s);
        assert!(!r.has_audio && !r.audio_copied);
        s.sound = true;
        let (bytes, r) = run(&s);
        assert!(r.has_audio && !r.audio_copied);
        assert_eq!(inspect::inspect(&bytes).unwrap().audio_codec.as_deref(), Some("Opus"));
        // An input with sound, not kept: the generated ambience instead.
        let mut s = with_input(&fixture("main-aac.mov"), VideoMode::Edit, false);
        s.sound = true;
        let (bytes, r) = run(&s);
        assert!(r.has_audio && !r.audio_copied);
        assert_eq!(inspect::inspect(&bytes).unwrap().audio_codec.as_deref(), Some("Opus"));
    }

    #[test]
    fn reference_footage_loops_under_the_prompts_camera() {
        let input = input_clip("ref-in.mp4", "a market street", Some(checker_png(320, 180)), false);
        let mut s = with_input(&input.0, VideoMode::Reference, false);
        s.duration_secs = 5;
        s.aspect = Some((9, 16));
        s.prompt = "zoom in on the crowd".to_owned();
        let (zoom, r) = run(&s);
        assert_eq!((r.width, r.height, r.frames), (144, 256, 120));
        s.prompt = "pan left along the street".to_owned();
        let (pan, _) = run(&s);
        let (zoom, pan, src) = (decoded(&zoom), decoded(&pan), decoded(&std::fs::read(&input.0).unwrap()));
        // Both start on the same framing of the footage's first frame and end
        // apart; the footage plays (it is not a still).
        assert!(psnr(&zoom[0].y, &pan[0].y) > 40.0);
        assert!(psnr(&zoom[119].y, &pan[119].y) < 25.0);
        assert!(psnr(&zoom[10].y, &zoom[40].y) < 30.0);
        // After 2 s the footage starts again: frame 48 shows the input's first
        // frame through the camera, like frame 0 (the camera has moved a little).
        let scaler = footage::FrameScaler::new((256, 144), 0, 144, 256);
        let first = scaler.scale(&src[0]).y;
        let c0 = correlation(&zoom[48].y, &first);
        let c1 = correlation(&zoom[47].y, &first);
        assert!(c0 > c1, "the loop restarts at 2 s: {c0:.3} vs {c1:.3}");
    }

    /// A camera path's horizontal drift: last point minus first.
    fn drift(path: &[(f32, f32)]) -> (f32, f32) {
        let (a, b) = (path[0], path[path.len() - 1]);
        (b.0 - a.0, b.1 - a.1)
    }

    #[test]
    fn motion_control_moves_the_subject_like_the_inputs_camera() {
        let subject = checker_png(320, 180);
        let right = input_clip("pan-right.mp4", "pan right", Some(checker_png(320, 180)), false);
        let left = input_clip("pan-left.mp4", "pan left", Some(checker_png(320, 180)), false);
        let still = input_clip("still.mp4", "a static locked shot", Some(checker_png(320, 180)), false);
        let mut go = || ControlFlow::Continue(());
        let mut path = |p: &std::path::Path| motion::camera_path(p, 48, scene::PATH_ROOM, &mut go).unwrap();
        let (r, l, s) = (drift(&path(&right.0)), drift(&path(&left.0)), drift(&path(&still.0)));
        assert!(r.0 > 0.5 && l.0 < -0.5, "right {r:?}, left {l:?}");
        // Mostly sideways (the renderer's pans also zoom a little).
        assert!(r.1.abs() < 0.15 * r.0.abs() && l.1.abs() < 0.15 * l.0.abs(), "no tilt: {r:?} {l:?}");
        assert!(s.0.abs() < 0.05 && s.1.abs() < 0.05, "a still input keeps still: {s:?}");
        let mut spec = with_input(&right.0, VideoMode::MotionControl, false);
        spec.start_image = Some(subject);
        spec.prompt = "the character dances".to_owned();
        let (right_bytes, out) = run(&spec);
        assert_eq!((out.width, out.height, out.frames), (256, 144, 48));
        assert_eq!(right_bytes, run(&spec).0, "deterministic");
        spec.input_video =
            Some(InputVideo { path: still.0.clone(), mode: VideoMode::MotionControl, keep_original_sound: false });
        let still_frames = decoded(&run(&spec).0);
        let right_frames = decoded(&right_bytes);
        // A still subject differs only by its coding (an I frame against a P
        // frame on a checkerboard, about 38 dB); a moving one by far more.
        assert!(psnr(&still_frames[0].y, &still_frames[47].y) > 35.0, "a still input, a still subject");
        assert!(psnr(&right_frames[0].y, &right_frames[47].y) < 22.0, "a panning input moves the subject");
    }

    #[test]
    fn the_first_reference_image_is_the_scene_without_a_start_image_and_the_rest_are_insets() {
        let mut s = tiny();
        s.aspect = None;
        s.reference_images = vec![png(320, 180)];
        let (bytes, r) = run(&s);
        assert_eq!((r.width, r.height), (256, 144));
        let (first, _, w, h) = first_and_last_luma(&bytes);
        s.start_image = Some(png(320, 180));
        s.reference_images = Vec::new();
        let (as_start, _, _, _) = first_and_last_luma(&run(&s).0);
        assert!(psnr(&first, &as_start) > 45.0, "like a start image");
        s.reference_images = vec![flat_png(64, 64, 20)];
        let (with_inset, _, _, _) = first_and_last_luma(&run(&s).0);
        // The inset sits in the top-left corner (see scene::inset_planes).
        let side = ((w.min(h) / 4) & !1).max(32);
        let corner = |p: &[u8]| {
            (16..16 + side)
                .flat_map(|y| (16..16 + side).map(move |x| (y, x)))
                .map(|(y, x)| p[y * w + x])
                .collect::<Vec<u8>>()
        };
        assert!(psnr(&corner(&with_inset), &corner(&as_start)) < 20.0);
    }

    #[test]
    fn progress_and_cancellation_work_with_an_input_video() {
        let input = fixture("main-aac.mov");
        let mut seen = Vec::new();
        let mut out = Vec::new();
        render(&with_input(&input, VideoMode::Edit, true), &mut out, &mut |i, n| {
            seen.push((i, n));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(seen.first(), Some(&(0, 48)));
        assert_eq!(seen.last(), Some(&(48, 48)));
        assert!(seen.windows(2).all(|p| p[0].0 <= p[1].0));
        for mode in [VideoMode::Edit, VideoMode::Reference, VideoMode::MotionControl] {
            let mut out = Vec::new();
            let mut calls = 0;
            let r = render(&with_input(&input, mode, true), &mut out, &mut |_, _| {
                calls += 1;
                if calls > 5 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            assert!(matches!(r, Err(RenderError::Cancelled)), "{mode:?}: {r:?}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn an_input_the_decoder_cannot_read_is_an_invalid_video_naming_it() {
        for (name, says) in [("hevc.mp4", "HEVC (hvc1)"), ("high10.mp4", "High 10"), ("interlaced.mp4", "interlaced")] {
            match try_run(&with_input(&fixture(name), VideoMode::Edit, false)) {
                Err(RenderError::InvalidVideo(msg)) => assert!(msg.contains(says), "{name}: {msg}"),
                other => panic!("{name}: {:?}", other.map(|r| r.1)),
            }
        }
        let garbage = TempFile::with("garbage.mp4", b"not a video at all");
        assert!(matches!(
            try_run(&with_input(&garbage.0, VideoMode::Reference, false)),
            Err(RenderError::InvalidVideo(_))
        ));
        let missing = std::env::temp_dir().join("vidgate-render-no-such-file.mp4");
        assert!(matches!(try_run(&with_input(&missing, VideoMode::Edit, false)), Err(RenderError::Io(_))));
    }

    #[test]
    fn an_odd_short_side_is_an_invalid_spec() {
        let mut s = tiny();
        s.short_side = 145;
        assert!(matches!(try_run(&s), Err(RenderError::InvalidSpec(_))));
    }

    #[test]
    fn a_broken_image_is_an_invalid_image() {
        let mut s = spec();
        s.start_image = Some(b"\x89PNG\r\n\x1a\nnope".to_vec());
        assert!(matches!(try_run(&s), Err(RenderError::InvalidImage(_))));
    }
}
