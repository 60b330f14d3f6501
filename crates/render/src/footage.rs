//! Frames drawn from an input video: the video edit (the input's frames in
//! time order at 24 fps, scaled to cover the output, under a colour grade
//! seeded by the prompt that ramps in over the first second) and reference
//! footage (the input, looped, as the working picture the prompt's camera
//! moves over). Input frames are decoded as they are needed and at most two
//! are held (the one shown and the one after), so memory stays flat whatever
//! the input's length.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::decode::{DecodeError, Frame, VideoFrames};
use crate::scene::{self, Plan, Planes, Taps, resize};
use crate::{FPS, RenderError, VideoMode};

impl From<DecodeError> for RenderError {
    fn from(e: DecodeError) -> Self {
        RenderError::InvalidVideo(e.to_string())
    }
}

/// How long the edit's grade takes to ramp in, in frames (one second).
pub(crate) const GRADE_RAMP_FRAMES: u32 = FPS;

/// An input video read in time order, looped or held on its last frame.
pub(crate) struct Footage {
    frames: VideoFrames<BufReader<File>>,
    looped: bool,
    /// The length of one pass, in seconds (a loop starts again after it).
    period: f64,
    /// When the current pass started.
    base: f64,
    current: Frame,
    /// Changes whenever `current` does.
    serial: u64,
    next: Option<Frame>,
    ended: bool,
}

impl Footage {
    pub(crate) fn open(path: &Path, looped: bool) -> Result<Footage, RenderError> {
        let mut frames = VideoFrames::open(BufReader::new(File::open(path)?))?;
        let info = frames.info().video.clone();
        let current =
            frames.next_frame()?.ok_or_else(|| RenderError::InvalidVideo("the video has no frames".into()))?;
        // A pass lasts as long as the track says, and at least one output
        // frame, so a loop starts again at most once per frame drawn.
        let period = (info.duration_ms as f64 / 1000.0).max(1.0 / f64::from(FPS));
        Ok(Footage { frames, looped, period, base: 0.0, current, serial: 0, next: None, ended: false })
    }

    /// The frame on screen at `t` seconds (the latest one that started by
    /// then), and its serial number. Times must not go backwards.
    pub(crate) fn at(&mut self, t: f64) -> Result<(&Frame, u64), RenderError> {
        // A 24th of a tick of slack, so a frame due exactly at `t` is shown.
        let t = t + 1e-9;
        loop {
            if self.next.is_none() && !self.ended {
                self.next = self.frames.next_frame()?;
                self.ended = self.next.is_none();
            }
            match self.next.take() {
                Some(f) if self.base + f.time() <= t => {
                    self.current = f;
                    self.serial += 1;
                }
                Some(f) => {
                    self.next = Some(f);
                    break;
                }
                None if self.looped && t >= self.base + self.period => {
                    self.frames.rewind()?;
                    self.ended = false;
                    self.base += self.period;
                }
                None => break,
            }
        }
        Ok((&self.current, self.serial))
    }
}

/// Scales decoded frames, turned upright as their track asks, to cover
/// `w` x `h` and crops the centre: the same geometry and filter as the
/// pictures (`scene::cover_planes`). At the frame's own size it is exact.
pub(crate) struct FrameScaler {
    rotation: u32,
    w: usize,
    h: usize,
    luma: (Taps, Taps),
    chroma: (Taps, Taps),
}

impl FrameScaler {
    /// For frames of `coded` size turned by `rotation` degrees clockwise.
    pub(crate) fn new(coded: (usize, usize), rotation: u32, w: usize, h: usize) -> FrameScaler {
        let (iw, ih) = if rotation % 180 == 90 { (coded.1, coded.0) } else { coded };
        let scale = (w as f32 / iw as f32).max(h as f32 / ih as f32);
        let sw = ((iw as f32 * scale).ceil() as usize).max(w);
        let sh = ((ih as f32 * scale).ceil() as usize).max(h);
        let (step_x, step_y) = (iw as f32 / sw as f32, ih as f32 / sh as f32);
        let (origin_x, origin_y) = (((sw - w) / 2) as f32 * step_x, ((sh - h) / 2) as f32 * step_y);
        FrameScaler {
            rotation,
            w,
            h,
            luma: (Taps::triangle(iw, w, origin_x, step_x), Taps::triangle(ih, h, origin_y, step_y)),
            chroma: (
                Taps::triangle(iw.div_ceil(2), w / 2, origin_x / 2.0, step_x),
                Taps::triangle(ih.div_ceil(2), h / 2, origin_y / 2.0, step_y),
            ),
        }
    }

    pub(crate) fn scale(&self, f: &Frame) -> Planes {
        let (cw, ch) = (f.width.div_ceil(2), f.height.div_ceil(2));
        let (y, u, v, w, c) = match self.rotation {
            0 => (None, None, None, f.width, cw),
            r => (
                Some(rotate(&f.y, f.width, f.height, r)),
                Some(rotate(&f.u, cw, ch, r)),
                Some(rotate(&f.v, cw, ch, r)),
                if r == 180 { f.width } else { f.height },
                if r == 180 { cw } else { ch },
            ),
        };
        Planes {
            w: self.w,
            h: self.h,
            y: resize(y.as_deref().unwrap_or(&f.y), w, &self.luma.0, &self.luma.1),
            u: resize(u.as_deref().unwrap_or(&f.u), c, &self.chroma.0, &self.chroma.1),
            v: resize(v.as_deref().unwrap_or(&f.v), c, &self.chroma.0, &self.chroma.1),
        }
    }
}

/// A `w` x `h` plane turned clockwise by 90, 180 or 270 degrees.
pub(crate) fn rotate(p: &[u8], w: usize, h: usize, rotation: u32) -> Vec<u8> {
    let at = |r: usize, c: usize| p.get(r * w + c).copied().unwrap_or(0);
    match rotation {
        90 => (0..w).flat_map(|r| (0..h).map(move |c| (h - 1 - c, r))).map(|(r, c)| at(r, c)).collect(),
        180 => (0..h).flat_map(|r| (0..w).map(move |c| (h - 1 - r, w - 1 - c))).map(|(r, c)| at(r, c)).collect(),
        _ => (0..w).flat_map(|r| (0..h).map(move |c| (c, w - 1 - r))).map(|(r, c)| at(r, c)).collect(),
    }
}

/// A colour grade picked by the prompt's words (or seeded by it): lookup
/// tables for the full-strength grade and a vignette.
pub(crate) struct Grade {
    y: [u8; 256],
    u: [u8; 256],
    v: [u8; 256],
    /// Per luma sample, what the vignette leaves of it (0..=256).
    vignette: Vec<u16>,
}

/// A look: contrast, lift and saturation, a chroma tint and a vignette.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Look {
    pub contrast: f32,
    pub lift: f32,
    pub saturation: f32,
    pub du: f32,
    pub dv: f32,
    /// How much the corners darken (0..1).
    pub vignette: f32,
}

impl Look {
    pub(crate) fn from_prompt(prompt: &str) -> Look {
        let p = prompt.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| p.contains(w));
        let base = Look { contrast: 1.1, lift: 0.0, saturation: 1.1, du: 0.0, dv: 0.0, vignette: 0.2 };
        if has(&["black and white", "black-and-white", "monochrome", "grayscale", "greyscale", "noir"]) {
            Look { contrast: 1.2, saturation: 0.0, ..base }
        } else if has(&["sepia", "vintage", "old film", "retro", "aged"]) {
            Look { contrast: 1.05, lift: 6.0, saturation: 0.3, du: -14.0, dv: 12.0, vignette: 0.3 }
        } else if has(&["warm", "sunset", "golden", "autumn"]) {
            Look { du: -14.0, dv: 16.0, ..base }
        } else if has(&["cold", "cool", "winter", "night", "icy", "blue"]) {
            Look { lift: -6.0, du: 18.0, dv: -10.0, ..base }
        } else if has(&["neon", "cyberpunk", "synthwave"]) {
            Look { contrast: 1.2, saturation: 1.3, du: 16.0, dv: 18.0, ..base }
        } else if has(&["vibrant", "saturated", "colorful", "colourful", "vivid"]) {
            Look { saturation: 1.5, ..base }
        } else {
            // A tint of fixed strength in a direction the prompt picks.
            let angle = (scene::hash(&p) % 360) as f32 * std::f32::consts::PI / 180.0;
            Look { du: 16.0 * angle.cos(), dv: 16.0 * angle.sin(), ..base }
        }
    }
}

impl Grade {
    pub(crate) fn new(look: Look, w: usize, h: usize) -> Grade {
        let table = |f: &dyn Fn(f32) -> f32, lo: f32, hi: f32| {
            let mut t = [0u8; 256];
            for (i, v) in t.iter_mut().enumerate() {
                *v = f(i as f32).clamp(lo, hi).round() as u8;
            }
            t
        };
        let y = table(&|y| 128.0 + (y - 128.0) * look.contrast + look.lift, 16.0, 235.0);
        let u = table(&|u| 128.0 + (u - 128.0) * look.saturation + look.du, 16.0, 240.0);
        let v = table(&|v| 128.0 + (v - 128.0) * look.saturation + look.dv, 16.0, 240.0);
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let reach = cx * cx + cy * cy;
        let vignette = (0..h)
            .flat_map(|r| (0..w).map(move |c| (r, c)))
            .map(|(r, c)| {
                let d = ((c as f32 + 0.5 - cx).powi(2) + (r as f32 + 0.5 - cy).powi(2)) / reach;
                (256.0 * (1.0 - look.vignette * d * d)).round().clamp(0.0, 256.0) as u16
            })
            .collect();
        Grade { y, u, v, vignette }
    }

    /// Grades an I420 frame by `weight` (0..=256 of the full grade).
    pub(crate) fn apply(&self, weight: u32, yuv: &mut [u8], w: usize, h: usize) {
        if weight == 0 {
            return;
        }
        let mix = |from: u8, to: u32| ((u32::from(from) * (256 - weight) + to * weight + 128) >> 8) as u8;
        let (y_plane, chroma) = yuv.split_at_mut(w * h);
        for (p, m) in y_plane.iter_mut().zip(&self.vignette) {
            let graded = (u32::from(self.y[usize::from(*p)]) * u32::from(*m) + 128) >> 8;
            *p = mix(*p, graded.max(16));
        }
        let (u_plane, v_plane) = chroma.split_at_mut((w / 2) * (h / 2));
        for p in u_plane.iter_mut() {
            *p = mix(*p, u32::from(self.u[usize::from(*p)]));
        }
        for p in v_plane.iter_mut() {
            *p = mix(*p, u32::from(self.v[usize::from(*p)]));
        }
    }
}

/// How much of the grade frame `i` gets: none on the first frame, all of it
/// from one second on, eased in between.
pub(crate) fn grade_weight(i: u32) -> u32 {
    let t = (i as f32 / GRADE_RAMP_FRAMES as f32).min(1.0);
    (t * t * (3.0 - 2.0 * t) * 256.0).round() as u32
}

/// Draws the frames of a plan whose working picture is an input video.
pub(crate) struct FootagePainter<'a> {
    plan: &'a Plan,
    mode: VideoMode,
    footage: Footage,
    scaler: FrameScaler,
    grade: Option<Grade>,
    /// The current input frame, scaled, and its serial number.
    scaled: Option<(u64, Planes)>,
    /// The decoded size the scaler is made for.
    coded: (usize, usize),
    w: usize,
    h: usize,
}

impl<'a> FootagePainter<'a> {
    pub(crate) fn new(
        plan: &'a Plan,
        mode: VideoMode,
        path: &Path,
        prompt: &str,
        w: usize,
        h: usize,
    ) -> Result<Self, RenderError> {
        let footage = Footage::open(path, mode == VideoMode::Reference)?;
        let rotation = footage.frames.info().video.rotation;
        let coded = (footage.current.width, footage.current.height);
        let (scaler, grade) = match mode {
            VideoMode::Edit => {
                (FrameScaler::new(coded, rotation, w, h), Some(Grade::new(Look::from_prompt(prompt), w, h)))
            }
            _ => (FrameScaler::new(coded, rotation, plan.work_w, plan.work_h), None),
        };
        Ok(FootagePainter { plan, mode, footage, scaler, grade, scaled: None, coded, w, h })
    }

    /// Writes frame `i` of `total` as I420 into `yuv`.
    pub(crate) fn frame(&mut self, i: u32, total: u32, yuv: &mut [u8]) -> Result<(), RenderError> {
        let (frame, serial) = self.footage.at(f64::from(i) / f64::from(FPS))?;
        if self.scaled.as_ref().is_none_or(|(s, _)| *s != serial) {
            if (frame.width, frame.height) != self.coded {
                return Err(RenderError::InvalidVideo("the video changes its picture size midway".into()));
            }
            self.scaled = Some((serial, self.scaler.scale(frame)));
        }
        let Some((_, picture)) = &self.scaled else { return Ok(()) };
        let fade = self.plan.fade(i, total);
        match self.mode {
            VideoMode::Edit => {
                let (y, rest) = yuv.split_at_mut(self.w * self.h);
                let (u, v) = rest.split_at_mut((self.w / 2) * (self.h / 2));
                y.copy_from_slice(&picture.y);
                u.copy_from_slice(&picture.u);
                v.copy_from_slice(&picture.v);
                let weight = grade_weight(i);
                if let Some(g) = &self.grade {
                    g.apply(weight, yuv, self.w, self.h);
                }
                // The insets come in with the grade, so the first frame is the input's.
                self.plan.finish_with(fade, weight, yuv);
            }
            _ => {
                self.plan.view(picture, self.plan.window(i), yuv);
                self.plan.finish(fade, yuv);
            }
        }
        Ok(())
    }
}

/// What draws a render's frames, in order, on the drawing thread.
pub(crate) enum Painter<'a> {
    Picture(scene::Painter<'a>),
    Footage(Box<FootagePainter<'a>>),
}

impl Painter<'_> {
    pub(crate) fn frame(&mut self, i: u32, total: u32, yuv: &mut [u8]) -> Result<(), RenderError> {
        match self {
            Painter::Picture(p) => {
                p.frame(i, total, yuv);
                Ok(())
            }
            Painter::Footage(p) => p.frame(i, total, yuv),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
    }

    #[test]
    fn footage_at_24_fps_shows_the_latest_input_frame_and_loops() {
        // 30 fps in: output frame i shows input frame floor(i * 30 / 24).
        let mut held = Footage::open(&fixture("high-bframes-aac.mp4"), false).unwrap();
        for i in 0..72u32 {
            let (f, _) = held.at(f64::from(i) / 24.0).unwrap();
            let want = (u64::from(i) * 30 / 24).min(59);
            assert_eq!(f.pts, want * 512, "output frame {i}");
        }
        // Looped, a 2 s input starts again at 2 s, with fresh serial numbers.
        let mut looped = Footage::open(&fixture("high-bframes-aac.mp4"), true).unwrap();
        let (first, s0) = looped.at(0.0).map(|(f, s)| (f.clone(), s)).unwrap();
        let (again, s1) = looped.at(2.0).map(|(f, s)| (f.clone(), s)).unwrap();
        assert_eq!((again.pts, again.y == first.y), (0, true));
        assert!(s1 > s0);
        let (later, _) = looped.at(2.5).unwrap();
        assert_eq!(later.pts, 15 * 512);
    }

    #[test]
    fn the_scaler_is_exact_at_the_frames_own_size() {
        let mut footage = Footage::open(&fixture("main-aac.mov"), false).unwrap();
        let (f, _) = footage.at(0.0).unwrap();
        let p = FrameScaler::new((176, 144), 0, 176, 144).scale(f);
        assert!(p.y == f.y && p.u == f.u && p.v == f.v);
        // Turned a quarter, a landscape frame covers a portrait output.
        let turned = FrameScaler::new((176, 144), 90, 144, 176).scale(f);
        assert_eq!(turned.y, rotate(&f.y, 176, 144, 90));
    }

    #[test]
    fn rotation_turns_planes_clockwise() {
        // 3 x 2:  a b c / d e f
        let p = [1, 2, 3, 4, 5, 6];
        assert_eq!(rotate(&p, 3, 2, 90), [4, 1, 5, 2, 6, 3]);
        assert_eq!(rotate(&p, 3, 2, 180), [6, 5, 4, 3, 2, 1]);
        assert_eq!(rotate(&p, 3, 2, 270), [3, 6, 2, 5, 1, 4]);
    }

    #[test]
    fn the_grade_starts_at_nothing_and_is_whole_after_a_second() {
        assert_eq!(grade_weight(0), 0);
        assert!(grade_weight(6) > 0 && grade_weight(6) < 128);
        assert_eq!((grade_weight(FPS), grade_weight(5 * FPS)), (256, 256));
        let g = Grade::new(Look::from_prompt("make it warm"), 4, 2);
        let frame = vec![100u8; 4 * 2 + 2 * 2];
        let mut none = frame.clone();
        g.apply(0, &mut none, 4, 2);
        assert_eq!(none, frame);
        let mut full = frame.clone();
        g.apply(256, &mut full, 4, 2);
        // Warm: less blue (U down), more red (V up).
        assert!(full[8] < 100 && full[10] > 100, "{full:?}");
    }

    #[test]
    fn words_pick_the_look_and_other_prompts_get_a_tint_of_their_own() {
        assert_eq!(Look::from_prompt("turn it black and white").saturation, 0.0);
        assert!(Look::from_prompt("a cold winter night").du > 0.0);
        let a = Look::from_prompt("replace the sky with fireworks");
        let b = Look::from_prompt("add a red scarf");
        assert!(a != b && (a.du.hypot(a.dv) - 16.0).abs() < 1e-3);
    }
}
