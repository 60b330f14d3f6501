//! What each frame shows: a camera (zoom, pan, tilt, drift) moving with eased,
//! sub-pixel motion over a working picture that is larger than the frame, so the
//! picture's edge never shows; shots with their own motion; a fade into the end
//! image; an optional corner mark. Pictures are kept as YUV planes so a frame is
//! one bilinear lookup per plane sample.

use image::RgbImage;
use image::imageops::FilterType;

use crate::{RenderError, ShotPlan, VideoSpec};

/// Extra size of the working picture, so the camera has room to move.
const MARGIN: f32 = 1.15;
/// Most zoom the camera uses (1.0 shows the whole working picture).
const MAX_ZOOM: f32 = 1.12;
/// How far a camera path at full zoom can move the view either side, as a
/// fraction of the frame: the room `MAX_ZOOM` leaves.
pub(crate) const PATH_ROOM: f32 = (MAX_ZOOM - 1.0) / 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    ZoomIn,
    ZoomOut,
    PanLeft,
    PanRight,
    TiltUp,
    TiltDown,
    Drift,
    Static,
}

impl Motion {
    /// The camera move a prompt asks for; a deterministic default otherwise.
    pub fn from_prompt(prompt: &str) -> Motion {
        let p = prompt.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| p.contains(w));
        if has(&["static", "still shot", "locked", "no camera"]) {
            Motion::Static
        } else if has(&["zoom out", "pull back", "pull out", "dolly out", "widen"]) {
            Motion::ZoomOut
        } else if has(&["zoom in", "push in", "dolly in", "close up", "close-up", "closer"]) {
            Motion::ZoomIn
        } else if has(&["pan left", "to the left", "leftward"]) {
            Motion::PanLeft
        } else if has(&["pan right", "to the right", "rightward"]) {
            Motion::PanRight
        } else if has(&["tilt up", "look up", "upward", "rise", "rising"]) {
            Motion::TiltUp
        } else if has(&["tilt down", "look down", "downward", "descend"]) {
            Motion::TiltDown
        } else if has(&["orbit", "drift", "float", "circle", "around"]) {
            Motion::Drift
        } else {
            [Motion::ZoomIn, Motion::PanRight, Motion::Drift, Motion::ZoomOut][(hash(&p) % 4) as usize]
        }
    }

    /// Camera at eased time `t` in 0..=1: (zoom, centre x, centre y), the centre as
    /// a fraction of the free room (-1..=1).
    fn camera(self, t: f32) -> (f32, f32, f32) {
        let e = t * t * (3.0 - 2.0 * t);
        let z = 1.0 + (MAX_ZOOM - 1.0) * e;
        match self {
            Motion::Static => (1.0, 0.0, 0.0),
            Motion::ZoomIn => (z, 0.0, 0.0),
            Motion::ZoomOut => (MAX_ZOOM - (MAX_ZOOM - 1.0) * e, 0.0, 0.0),
            Motion::PanLeft => (z, -e, 0.0),
            Motion::PanRight => (z, e, 0.0),
            Motion::TiltUp => (z, 0.0, -e),
            Motion::TiltDown => (z, 0.0, e),
            Motion::Drift => {
                let a = e * std::f32::consts::PI * 1.5;
                (z, a.sin() * e, (1.0 - a.cos()) * 0.5 * e)
            }
        }
    }
}

pub(crate) fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A picture as YUV 4:2:0 planes, like the frames: full-resolution luma, and
/// chroma at half resolution (`w / 2` x `h / 2`), each sample the mean of a 2x2
/// block, so resampling it for a frame filters rather than skips.
pub(crate) struct Planes {
    pub w: usize,
    pub h: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

pub(crate) fn rgb_to_planes(img: &RgbImage) -> Planes {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut y = Vec::with_capacity(w * h);
    let mut u = Vec::with_capacity(w * h);
    let mut v = Vec::with_capacity(w * h);
    for p in img.pixels() {
        let [r, g, b] = p.0.map(i32::from);
        // BT.601 limited range, integer arithmetic.
        y.push((((66 * r + 129 * g + 25 * b + 128) >> 8) + 16).clamp(0, 255) as u8);
        u.push((((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8);
        v.push((((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8);
    }
    Planes { w, h, y, u: downsample(&u, w, h), v: downsample(&v, w, h) }
}

/// Scales `img` to cover `w` x `h` and crops the centre.
pub(crate) fn cover(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let scale = (w as f32 / img.width() as f32).max(h as f32 / img.height() as f32);
    let sw = ((img.width() as f32 * scale).ceil() as u32).max(w);
    let sh = ((img.height() as f32 * scale).ceil() as u32).max(h);
    let resized = image::imageops::resize(img, sw, sh, FilterType::Triangle);
    image::imageops::crop_imm(&resized, (sw - w) / 2, (sh - h) / 2, w, h).to_image()
}

/// Scales `img` to cover `w` x `h`, crops the centre and converts it to planes:
/// the same picture as `rgb_to_planes(&cover(img, w, h))`, but converted first
/// and resized as planes in fixed point, several times faster, and with the
/// chroma resized straight from full resolution to half.
pub(crate) fn cover_planes(img: &RgbImage, w: u32, h: u32) -> Planes {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let scale = (w as f32 / iw as f32).max(h as f32 / ih as f32);
    let sw = ((iw as f32 * scale).ceil() as u32).max(w);
    let sh = ((ih as f32 * scale).ceil() as u32).max(h);
    // Source pixels per output pixel, and where the crop starts in the source.
    let (step_x, step_y) = (iw as f32 / sw as f32, ih as f32 / sh as f32);
    let (origin_x, origin_y) = (((sw - w) / 2) as f32 * step_x, ((sh - h) / 2) as f32 * step_y);
    let mut y = Vec::with_capacity(iw * ih);
    let mut u = Vec::with_capacity(iw * ih);
    let mut v = Vec::with_capacity(iw * ih);
    for p in img.pixels() {
        let [r, g, b] = p.0.map(i32::from);
        y.push((((66 * r + 129 * g + 25 * b + 128) >> 8) + 16).clamp(0, 255) as u8);
        u.push((((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128).clamp(0, 255) as u8);
        v.push((((112 * r - 94 * g - 18 * b + 128) >> 8) + 128).clamp(0, 255) as u8);
    }
    let (w, h) = (w as usize, h as usize);
    let luma = |p: &[u8]| {
        let tx = Taps::triangle(iw, w, origin_x, step_x);
        let ty = Taps::triangle(ih, h, origin_y, step_y);
        resize(p, iw, &tx, &ty)
    };
    let chroma = |p: &[u8]| {
        let tx = Taps::triangle(iw, w / 2, origin_x, 2.0 * step_x);
        let ty = Taps::triangle(ih, h / 2, origin_y, 2.0 * step_y);
        resize(p, iw, &tx, &ty)
    };
    Planes { w, h, y: luma(&y), u: chroma(&u), v: chroma(&v) }
}

/// Fixed-point bits of the resampling weights.
const TAP_BITS: u32 = 14;

/// One axis of a separable resampling: for each output sample, its first source
/// sample and `n` weights (non-negative, summing to exactly `1 << TAP_BITS`).
pub(crate) struct Taps {
    n: usize,
    first: Vec<usize>,
    weights: Vec<u32>,
}

impl Taps {
    /// The triangle filter (as `FilterType::Triangle`): output sample `x` sits at
    /// source position `origin + (x + 0.5) * step` and reaches `max(step, 1)`
    /// source samples either side.
    pub(crate) fn triangle(src_len: usize, out_len: usize, origin: f32, step: f32) -> Taps {
        let support = step.max(1.0);
        let n = ((2.0 * support).ceil() as usize + 1).min(src_len).max(1);
        let mut first = Vec::with_capacity(out_len);
        let mut weights = vec![0u32; out_len * n];
        let mut real = vec![0f32; n];
        for (x, fixed) in weights.chunks_exact_mut(n).enumerate() {
            let centre = origin + (x as f32 + 0.5) * step;
            let start = ((centre - support).floor().max(0.0) as usize).min(src_len - n);
            for (j, r) in real.iter_mut().enumerate() {
                *r = (1.0 - ((start + j) as f32 + 0.5 - centre).abs() / support).max(0.0);
            }
            let sum: f32 = real.iter().sum();
            let one = 1u32 << TAP_BITS;
            if sum > 0.0 {
                for (f, r) in fixed.iter_mut().zip(&real) {
                    *f = (r / sum * one as f32).round() as u32;
                }
            }
            // Rounding (or an empty window) leaves the sum a little off: give the
            // difference to the largest weight.
            let total: u32 = fixed.iter().sum();
            let (big, _) = fixed.iter().enumerate().fold((0, 0), |m, (j, f)| if *f > m.1 { (j, *f) } else { m });
            fixed[big] = (fixed[big] + one).saturating_sub(total);
            first.push(start);
        }
        Taps { n, first, weights }
    }
}

/// Resamples a plane `src_w` samples wide along both axes: horizontally into
/// 8.8 fixed point (exact in a `u16`: the weights are non-negative), then
/// vertically, vectorised across the row.
pub(crate) fn resize(src: &[u8], src_w: usize, tx: &Taps, ty: &Taps) -> Vec<u8> {
    let (ow, oh) = (tx.first.len(), ty.first.len());
    let mut out = vec![0u8; ow * oh];
    let (Some(&lo), Some(&hi)) = (ty.first.first(), ty.first.last()) else { return out };
    let hi = hi + ty.n;
    // Only the source rows the output needs.
    let mut mid = vec![0u16; ow * (hi - lo)];
    for (row, dst) in src.chunks_exact(src_w).skip(lo).take(hi - lo).zip(mid.chunks_exact_mut(ow)) {
        for ((d, &start), w) in dst.iter_mut().zip(&tx.first).zip(tx.weights.chunks_exact(tx.n)) {
            let taps = &row[start..start + tx.n];
            let sum: u32 = taps.iter().zip(w).map(|(&p, &w)| u32::from(p) * w).sum();
            *d = ((sum + (1 << (TAP_BITS - 9))) >> (TAP_BITS - 8)) as u16;
        }
    }
    let mut acc = vec![0u32; ow];
    for ((dst, &start), w) in out.chunks_exact_mut(ow).zip(&ty.first).zip(ty.weights.chunks_exact(ty.n)) {
        acc.fill(1 << (TAP_BITS + 7));
        for (j, &wj) in w.iter().enumerate() {
            let r = &mid[(start - lo + j) * ow..(start - lo + j + 1) * ow];
            for (a, &m) in acc.iter_mut().zip(r) {
                *a += u32::from(m) * wj;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&acc) {
            *d = (a >> (TAP_BITS + 8)).min(255) as u8;
        }
    }
    out
}

/// A procedural picture seeded by the prompt: two colours, a gradient and soft
/// shapes, so different prompts look visibly different.
fn procedural(prompt: &str, w: u32, h: u32) -> RgbImage {
    let seed = hash(prompt);
    let hue = |s: u64| -> [f32; 3] {
        let hh = (s % 360) as f32 / 60.0;
        let x = 1.0 - (hh % 2.0 - 1.0).abs();
        let (r, g, b) = match hh as u32 {
            0 => (1.0, x, 0.0),
            1 => (x, 1.0, 0.0),
            2 => (0.0, 1.0, x),
            3 => (0.0, x, 1.0),
            4 => (x, 0.0, 1.0),
            _ => (1.0, 0.0, x),
        };
        [r, g, b]
    };
    let a = hue(seed);
    let b = hue(seed >> 17);
    let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..6u64)
        .map(|i| {
            let s = seed.rotate_left((i * 11) as u32) ^ (i * 0x9e37_79b9);
            let cx = (s % 1000) as f32 / 1000.0 * w as f32;
            let cy = ((s >> 10) % 1000) as f32 / 1000.0 * h as f32;
            let r = (0.08 + ((s >> 20) % 100) as f32 / 100.0 * 0.2) * w.min(h) as f32;
            (cx, cy, r, hue(s >> 30))
        })
        .collect();
    RgbImage::from_fn(w, h, |x, y| {
        let t = (x as f32 / w as f32 * 0.6 + y as f32 / h as f32 * 0.4).clamp(0.0, 1.0);
        let mut c = [0.0f32; 3];
        for k in 0..3 {
            c[k] = (a[k] * (1.0 - t) + b[k] * t) * 0.55 + 0.1;
        }
        for (bx, by, r, col) in &blobs {
            let d2 = ((x as f32 - bx).powi(2) + (y as f32 - by).powi(2)) / (r * r);
            let f = (-d2).exp() * 0.6;
            for k in 0..3 {
                c[k] = c[k] * (1.0 - f) + col[k] * f;
            }
        }
        // A fine texture gives the encoder and the eye something to track.
        let n = ((hash_xy(seed, x, y) & 0xff) as f32 / 255.0 - 0.5) * 0.04;
        image::Rgb(c.map(|v| ((v + n).clamp(0.0, 1.0) * 255.0) as u8))
    })
}

fn hash_xy(seed: u64, x: u32, y: u32) -> u64 {
    let mut h = seed ^ (u64::from(x) << 32) ^ u64::from(y);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Where the camera looks: shots with their moves, or a path of its own.
enum Camera {
    Shots(Vec<Shot>),
    /// Per frame, the window's centre as a fraction of the free room (-1..=1)
    /// at the widest zoom: motion control's path taken from an input video.
    Path(Vec<(f32, f32)>),
}

/// What the camera looks at.
pub(crate) enum Backdrop {
    Picture(RgbImage),
    /// A picture drawn from the prompt.
    Procedural,
    /// Frames of an input video, which its painter brings itself.
    Footage,
}

/// One shot: frames [start, start + len) with one motion.
struct Shot {
    start: u32,
    len: u32,
    motion: Motion,
}

pub(crate) struct Plan {
    w: usize,
    h: usize,
    /// The working picture's size: the frame plus room for the camera.
    pub(crate) work_w: usize,
    pub(crate) work_h: usize,
    /// The working picture, unless footage brings its own.
    picture: Option<Planes>,
    /// The end image fitted to the frame.
    end: Option<Planes>,
    camera: Camera,
    fade_frames: u32,
    watermark: bool,
    /// Custom elements' frontal images, shown as insets: (x, y, planes).
    insets: Vec<(usize, usize, Planes)>,
}

impl Plan {
    /// The plan for `spec` over `backdrop`; `path` replaces the shots' moves
    /// with a camera path (one point per frame); `insets` are the images shown
    /// along the top edge (elements first).
    pub(crate) fn new(
        spec: &VideoSpec,
        backdrop: Backdrop,
        end: Option<RgbImage>,
        width: u32,
        height: u32,
        path: Option<Vec<(f32, f32)>>,
        insets: &[&[u8]],
    ) -> Result<Self, RenderError> {
        let total = crate::FPS * spec.duration_secs;
        let ww = ((width as f32 * MARGIN).ceil() as u32 + 1) & !1;
        let wh = ((height as f32 * MARGIN).ceil() as u32 + 1) & !1;
        // The end picture is prepared beside the working one.
        let (picture, end) = std::thread::scope(|scope| {
            let end = end.map(|img| scope.spawn(move || cover_planes(&img, width, height)));
            let picture = match &backdrop {
                Backdrop::Picture(img) => Some(cover_planes(img, ww, wh)),
                Backdrop::Procedural => Some(rgb_to_planes(&procedural(&spec.prompt, ww, wh))),
                Backdrop::Footage => None,
            };
            (picture, end.map(|handle| handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))))
        });
        let camera = match path {
            Some(p) => Camera::Path(p),
            None => Camera::Shots(plan_shots(spec, total)?),
        };
        Ok(Self {
            w: width as usize,
            h: height as usize,
            work_w: ww as usize,
            work_h: wh as usize,
            picture,
            fade_frames: if end.is_some() { (total / 4).clamp(1, 36) } else { 0 },
            end,
            camera,
            watermark: spec.watermark,
            insets: inset_planes(insets, width, height)?,
        })
    }

    /// The camera's view window for frame `i`, in working-picture pixels.
    pub(crate) fn window(&self, i: u32) -> Window {
        let (zoom, fx, fy) = match &self.camera {
            Camera::Shots(shots) => {
                let shot = shots.iter().rev().find(|s| i >= s.start).unwrap_or(&shots[0]);
                let t = if shot.len > 1 { (i - shot.start) as f32 / (shot.len - 1) as f32 } else { 0.0 };
                shot.motion.camera(t.clamp(0.0, 1.0))
            }
            Camera::Path(path) => {
                let (fx, fy) = path.get(i as usize).or(path.last()).copied().unwrap_or((0.0, 0.0));
                (MAX_ZOOM, fx.clamp(-1.0, 1.0), fy.clamp(-1.0, 1.0))
            }
        };
        // Kept inside the picture.
        let (pw, ph) = (self.work_w as f32, self.work_h as f32);
        let vw = pw / zoom;
        let vh = ph / zoom;
        let cx = pw / 2.0 + fx * (pw - vw) / 2.0;
        let cy = ph / 2.0 + fy * (ph - vh) / 2.0;
        Window { x0: cx - vw / 2.0, y0: cy - vh / 2.0, vw, vh }
    }

    /// How far frame `i` has faded into the end image: 0..=256.
    pub(crate) fn fade(&self, i: u32, total: u32) -> u32 {
        let fade_start = total.saturating_sub(self.fade_frames);
        if self.end.is_none() || i < fade_start {
            return 0;
        }
        let t = if self.fade_frames > 1 { (i - fade_start) as f32 / (self.fade_frames - 1) as f32 } else { 1.0 };
        (t * t * (3.0 - 2.0 * t) * 256.0) as u32
    }

    /// Writes what the camera sees of `work` (a working picture) through
    /// `window` as I420 into `yuv`.
    pub(crate) fn view(&self, work: &Planes, window: Window, yuv: &mut [u8]) {
        let Window { x0, y0, vw, vh } = window;
        let (w, h) = (self.w, self.h);
        let (y_plane, rest) = yuv.split_at_mut(w * h);
        let (u_plane, v_plane) = rest.split_at_mut((w / 2) * (h / 2));
        sample_plane(&work.y, work.w, work.h, x0, y0, vw / w as f32, vh / h as f32, w, h, y_plane);
        // Chroma: the same window in the half-resolution chroma planes.
        let (cw, ch) = (w / 2, h / 2);
        let (pcw, pch) = (work.w / 2, work.h / 2);
        let (cx0, cy0, csx, csy) = (x0 / 2.0, y0 / 2.0, vw / 2.0 / cw as f32, vh / 2.0 / ch as f32);
        sample_plane(&work.u, pcw, pch, cx0, cy0, csx, csy, cw, ch, u_plane);
        sample_plane(&work.v, pcw, pch, cx0, cy0, csx, csy, cw, ch, v_plane);
    }

    /// Draws over the camera's view in `yuv`: the fade into the end image (by
    /// `fade`), the insets and the mark.
    pub(crate) fn finish(&self, fade: u32, yuv: &mut [u8]) {
        self.finish_with(fade, 256, yuv);
    }

    /// As [`Plan::finish`], with the insets blended in by `inset_alpha`
    /// (0..=256; 256 pastes them).
    pub(crate) fn finish_with(&self, fade: u32, inset_alpha: u32, yuv: &mut [u8]) {
        let (w, h) = (self.w, self.h);
        let (y_plane, rest) = yuv.split_at_mut(w * h);
        let (u_plane, v_plane) = rest.split_at_mut((w / 2) * (h / 2));
        if let Some(end) = self.end.as_ref().filter(|_| fade > 0) {
            blend(y_plane, &end.y, fade);
            blend(u_plane, &end.u, fade);
            blend(v_plane, &end.v, fade);
        }
        for (ix, iy, p) in &self.insets {
            match inset_alpha {
                0 => {}
                256.. => paste(y_plane, u_plane, v_plane, w, *ix, *iy, p),
                a => blend_at(y_plane, u_plane, v_plane, w, *ix, *iy, p, a),
            }
        }
        if self.watermark {
            mark(y_plane, w, h);
        }
    }

    /// Writes frame `i` of `total` as I420 into `yuv`.
    #[cfg(test)]
    pub(crate) fn frame_yuv(&self, i: u32, total: u32, yuv: &mut [u8]) {
        if let Some(work) = &self.picture {
            self.view(work, self.window(i), yuv);
        }
        self.finish(self.fade(i, total), yuv);
    }
}

/// The part of the working picture a frame shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    x0: f32,
    y0: f32,
    vw: f32,
    vh: f32,
}

/// Draws a plan's frames in order, skipping work that would not change them:
/// while the camera holds still (a static shot) its view is copied rather than
/// resampled, and a frame that has faded all the way shows just the end image.
/// Every frame comes out exactly as if drawn from scratch.
pub(crate) struct Painter<'a> {
    plan: &'a Plan,
    /// The camera's view while it holds still, and its window.
    still: Option<(Window, Vec<u8>)>,
}

impl<'a> Painter<'a> {
    pub(crate) fn new(plan: &'a Plan) -> Self {
        Self { plan, still: None }
    }

    /// Writes frame `i` of `total` as I420 into `yuv`.
    pub(crate) fn frame(&mut self, i: u32, total: u32, yuv: &mut [u8]) {
        let plan = self.plan;
        let fade = plan.fade(i, total);
        if fade < 256 {
            let window = plan.window(i);
            match &self.still {
                Some((still, view)) if *still == window => yuv.copy_from_slice(view),
                _ => {
                    if let Some(work) = &plan.picture {
                        plan.view(work, window, yuv);
                    }
                    let holds = i + 1 < total && plan.window(i + 1) == window;
                    self.still = holds.then(|| (window, yuv.to_vec()));
                }
            }
        }
        // Fully faded, the blend replaces every sample: the view is not needed.
        plan.finish(fade, yuv);
    }
}

/// The inset images (the referenced elements' frontal images, then any
/// reference images), each fitted into a square a quarter of the frame's short
/// side, along the top-left edge with a light border, as many as fit.
fn inset_planes(images: &[&[u8]], width: u32, height: u32) -> Result<Vec<(usize, usize, Planes)>, RenderError> {
    let side = ((width.min(height) / 4) & !1).max(32);
    let border = 4u32;
    let mut out = Vec::new();
    for (i, bytes) in images.iter().enumerate() {
        let img = image::load_from_memory(bytes).map_err(|e| RenderError::InvalidImage(e.to_string()))?.to_rgb8();
        let fitted = cover(&img, side - 2 * border, side - 2 * border);
        let mut framed = RgbImage::from_pixel(side, side, image::Rgb([240, 240, 240]));
        image::imageops::replace(&mut framed, &fitted, i64::from(border), i64::from(border));
        let x = (16 + i as u32 * (side + 16)) & !1;
        if x + side <= width && 16 + side <= height {
            out.push((x as usize, 16, rgb_to_planes(&framed)));
        }
    }
    Ok(out)
}

/// Blends a picture into the frame at (x, y) (even coordinates) by `a` (0..=256).
#[expect(clippy::too_many_arguments, reason = "three planes, where and what, and how much")]
fn blend_at(y: &mut [u8], u: &mut [u8], v: &mut [u8], w: usize, x0: usize, y0: usize, p: &Planes, a: u32) {
    for row in 0..p.h {
        let dst = (y0 + row) * w + x0;
        blend(&mut y[dst..dst + p.w], &p.y[row * p.w..row * p.w + p.w], a);
    }
    let (cw, pcw) = (w / 2, p.w / 2);
    for row in 0..p.h / 2 {
        let at = (y0 / 2 + row) * cw + x0 / 2;
        blend(&mut u[at..at + pcw], &p.u[row * pcw..row * pcw + pcw], a);
        blend(&mut v[at..at + pcw], &p.v[row * pcw..row * pcw + pcw], a);
    }
}

/// Copies a picture into the frame at (x, y) (even coordinates).
fn paste(y: &mut [u8], u: &mut [u8], v: &mut [u8], w: usize, x0: usize, y0: usize, p: &Planes) {
    for row in 0..p.h {
        let dst = (y0 + row) * w + x0;
        y[dst..dst + p.w].copy_from_slice(&p.y[row * p.w..row * p.w + p.w]);
    }
    let (cw, pcw) = (w / 2, p.w / 2);
    for row in 0..p.h / 2 {
        let at = (y0 / 2 + row) * cw + x0 / 2;
        u[at..at + pcw].copy_from_slice(&p.u[row * pcw..row * pcw + pcw]);
        v[at..at + pcw].copy_from_slice(&p.v[row * pcw..row * pcw + pcw]);
    }
}

fn plan_shots(spec: &VideoSpec, total: u32) -> Result<Vec<Shot>, RenderError> {
    let fps = crate::FPS;
    let shots = match &spec.shots {
        ShotPlan::Single => vec![Shot { start: 0, len: total, motion: Motion::from_prompt(&spec.prompt) }],
        ShotPlan::Customize(list) => {
            let mut start = 0;
            let mut out = Vec::new();
            for s in list {
                let len = s.duration_secs * fps;
                out.push(Shot { start, len, motion: Motion::from_prompt(&s.prompt) });
                start += len;
            }
            if start != total || out.is_empty() {
                return Err(RenderError::InvalidSpec("the shots' durations do not add up to the duration".to_owned()));
            }
            out
        }
        ShotPlan::Intelligence => {
            // Two shots up to 6 s, three beyond, each with a distinct move.
            let n = if spec.duration_secs > 6 { 3 } else { 2 };
            let base = Motion::from_prompt(&spec.prompt);
            let cycle =
                [Motion::ZoomIn, Motion::PanRight, Motion::Drift, Motion::ZoomOut, Motion::TiltUp, Motion::PanLeft];
            let first = cycle.iter().position(|m| *m == base).unwrap_or(0);
            let len = total / n;
            (0..n)
                .map(|k| Shot {
                    start: k * len,
                    len: if k == n - 1 { total - k * len } else { len },
                    motion: cycle[(first + k as usize) % cycle.len()],
                })
                .collect()
        }
    };
    Ok(shots)
}

/// Bilinear resampling of a window of `src` into `dst`. The window is
/// axis-aligned, so the filter is separable. Each output row first blends its
/// two source rows (over the columns the window spans) into 8.8 fixed point,
/// exact in a `u16` and vectorised; the columns are then picked and blended
/// from that. No intermediate is rounded, so the result is the exact
/// two-dimensional fixed-point bilinear value.
#[expect(
    clippy::too_many_arguments,
    reason = "the sampler takes the plane, its geometry and the point as plain numbers for speed"
)]
pub(crate) fn sample_plane(
    src: &[u8],
    sw: usize,
    sh: usize,
    x0: f32,
    y0: f32,
    sx: f32,
    sy: f32,
    dw: usize,
    dh: usize,
    dst: &mut [u8],
) {
    // Per output column: the left source sample and its neighbour's weight (0..256).
    let (idx, wts): (Vec<usize>, Vec<u32>) = (0..dw)
        .map(|x| {
            let fx = (x0 + (x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 2) as f32);
            let ix = fx as usize;
            (ix, ((fx - ix as f32) * 256.0) as u32)
        })
        .unzip();
    let lo = idx.iter().copied().min().unwrap_or(0);
    let hi = idx.iter().copied().max().map_or(lo, |i| i + 2);
    let idx: Vec<usize> = idx.iter().map(|i| i - lo).collect();
    let mut mid = vec![0u16; hi - lo];
    for (y, out) in dst.chunks_exact_mut(dw).take(dh).enumerate() {
        let fy = (y0 + (y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 2) as f32);
        let iy = fy as usize;
        let wy = ((fy - iy as f32) * 256.0) as u16;
        let r0 = &src[iy * sw + lo..iy * sw + hi];
        let r1 = &src[(iy + 1) * sw + lo..(iy + 1) * sw + hi];
        for ((m, &a), &b) in mid.iter_mut().zip(r0).zip(r1) {
            *m = u16::from(a) * (256 - wy) + u16::from(b) * wy;
        }
        for ((d, &ix), &wx) in out.iter_mut().zip(&idx).zip(&wts) {
            if let Some(&[a, b]) = mid.get(ix..ix + 2) {
                *d = ((u32::from(a) * (256 - wx) + u32::from(b) * wx + (1 << 15)) >> 16) as u8;
            }
        }
    }
}

fn downsample(p: &[u8], w: usize, h: usize) -> Vec<u8> {
    let (cw, ch) = (w / 2, h / 2);
    let mut out = Vec::with_capacity(cw * ch);
    for y in 0..ch {
        for x in 0..cw {
            let s = u32::from(p[2 * y * w + 2 * x])
                + u32::from(p[2 * y * w + 2 * x + 1])
                + u32::from(p[(2 * y + 1) * w + 2 * x])
                + u32::from(p[(2 * y + 1) * w + 2 * x + 1]);
            out.push(((s + 2) / 4) as u8);
        }
    }
    out
}

/// `dst = dst * (1 - a) + src * a`, with `a` in 0..=256.
pub(crate) fn blend(dst: &mut [u8], src: &[u8], a: u32) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = ((u32::from(*d) * (256 - a) + u32::from(*s) * a + 128) >> 8) as u8;
    }
}

/// A visible mark in the bottom-right corner: a light frame with a play triangle.
fn mark(y: &mut [u8], w: usize, h: usize) {
    let size = (h / 12).max(24);
    let (x0, y0) = (w - size * 2 - size / 2, h - size - size / 2);
    let (mw, mh) = (size * 2, size);
    for yy in 0..mh {
        for xx in 0..mw {
            let border = yy < 3 || yy >= mh - 3 || xx < 3 || xx >= mw - 3;
            // Triangle pointing right, centred in the box.
            let tx = xx as i64 - (mw as i64 / 2 - mh as i64 / 4);
            let ty = (yy as i64 - mh as i64 / 2).abs();
            let tri = tx >= 0 && tx <= mh as i64 / 2 && ty * 2 <= (mh as i64 / 2 - tx) * 2 / 2 + 1;
            let p = &mut y[(y0 + yy) * w + x0 + xx];
            if border || tri {
                *p = 235;
            } else {
                *p = ((u32::from(*p) * 3) / 5) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShotSpec;

    /// The direct two-dimensional form of the fixed-point bilinear lookup.
    #[expect(clippy::too_many_arguments, reason = "the same plain-number form as sample_plane")]
    fn sample_direct(
        src: &[u8],
        sw: usize,
        sh: usize,
        x0: f32,
        y0: f32,
        sx: f32,
        sy: f32,
        dw: usize,
        dh: usize,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(dw * dh);
        for y in 0..dh {
            let fy = (y0 + (y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 2) as f32);
            let (iy, wy) = (fy as usize, ((fy - (fy as usize) as f32) * 256.0) as u32);
            for x in 0..dw {
                let fx = (x0 + (x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 2) as f32);
                let (ix, wx) = (fx as usize, ((fx - (fx as usize) as f32) * 256.0) as u32);
                let p = |r: usize, c: usize| u32::from(src[r * sw + c]);
                let a = p(iy, ix) * (256 - wx) + p(iy, ix + 1) * wx;
                let b = p(iy + 1, ix) * (256 - wx) + p(iy + 1, ix + 1) * wx;
                out.push(((a * (256 - wy) + b * wy + (1 << 15)) >> 16) as u8);
            }
        }
        out
    }

    #[test]
    fn the_separable_lookup_equals_the_direct_bilinear_formula() {
        let (sw, sh) = (97, 61);
        let src: Vec<u8> = (0..sw * sh).map(|i| (hash_xy(7, i as u32, 3) & 0xff) as u8).collect();
        // Zooming out, zooming in, shifted, and a window running off the edges.
        for (x0, y0, sx, sy, dw, dh) in [
            (0.0, 0.0, 1.15, 1.15, 80, 50),
            (3.3, 2.7, 0.61, 0.73, 90, 70),
            (10.25, 5.5, 1.0, 1.0, 60, 40),
            (-4.0, -3.0, 1.3, 1.4, 90, 60),
        ] {
            let mut fast = vec![0u8; dw * dh];
            sample_plane(&src, sw, sh, x0, y0, sx, sy, dw, dh, &mut fast);
            assert_eq!(fast, sample_direct(&src, sw, sh, x0, y0, sx, sy, dw, dh), "{x0} {y0} {sx} {sy}");
        }
    }

    /// The plan `render` makes for a spec without an input video.
    fn plan_of(spec: &VideoSpec, w: u32, h: u32) -> Plan {
        let decode = |b: &[u8]| image::load_from_memory(b).unwrap().to_rgb8();
        let backdrop = spec.start_image.as_deref().map_or(Backdrop::Procedural, |b| Backdrop::Picture(decode(b)));
        let insets: Vec<&[u8]> = spec.element_images.iter().map(Vec::as_slice).collect();
        Plan::new(spec, backdrop, spec.end_image.as_deref().map(decode), w, h, None, &insets).unwrap()
    }

    fn png(w: u32, h: u32, seed: u64) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            let n = (hash_xy(seed, x, y) & 0x3f) as u8;
            image::Rgb([(x * 180 / w) as u8 + n, (y * 180 / h) as u8 + n, 90 + n])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn the_painter_draws_every_frame_as_if_from_scratch() {
        let spec = VideoSpec {
            short_side: 144,
            aspect: None,
            duration_secs: 4,
            prompt: String::new(),
            start_image: Some(png(320, 200, 1)),
            end_image: Some(png(200, 200, 2)),
            element_images: vec![png(100, 100, 3)],
            // A still shot, a moving one, a still one again (faded out at the end).
            shots: ShotPlan::Customize(vec![
                ShotSpec { prompt: "static".to_owned(), duration_secs: 1 },
                ShotSpec { prompt: "zoom in".to_owned(), duration_secs: 1 },
                ShotSpec { prompt: "locked off, static".to_owned(), duration_secs: 2 },
            ]),
            sound: false,
            watermark: true,
            ..VideoSpec::default()
        };
        let (w, h) = crate::output_size(144, (320, 200));
        let plan = plan_of(&spec, w, h);
        let total = 4 * crate::FPS;
        let len = (w * h + 2 * (w / 2) * (h / 2)) as usize;
        let mut painter = Painter::new(&plan);
        // The painter's buffers are reused, so start from garbage.
        let mut painted = vec![0x5a_u8; len];
        let mut fresh = vec![0u8; len];
        for i in 0..total {
            painter.frame(i, total, &mut painted);
            plan.frame_yuv(i, total, &mut fresh);
            assert!(painted == fresh, "frame {i}");
        }
        assert_eq!(plan.fade(total - 1, total), 256, "the last frame is all end image");
    }

    #[test]
    fn the_plane_resize_matches_the_image_crate() {
        // A smooth picture with some detail, scaled down, up and cropped.
        let img = RgbImage::from_fn(300, 200, |x, y| {
            let n = (hash_xy(3, x, y) & 0x1f) as u8;
            image::Rgb([(x * 255 / 300) as u8 / 2 + n, (y * 255 / 200) as u8 / 2 + n, 100 + n])
        });
        for (w, h) in [(240, 160), (200, 200), (500, 280), (64, 36)] {
            let ours = cover_planes(&img, w, h);
            let theirs = rgb_to_planes(&cover(&img, w, h));
            assert_eq!((ours.w, ours.h, ours.u.len()), (theirs.w, theirs.h, theirs.u.len()));
            for (a, b) in [(&ours.y, &theirs.y), (&ours.u, &theirs.u), (&ours.v, &theirs.v)] {
                let worst = a.iter().zip(b.iter()).map(|(p, q)| p.abs_diff(*q)).max().unwrap_or(0);
                assert!(worst <= 2, "{w}x{h}: off by {worst}");
            }
        }
    }

    #[test]
    fn each_named_move_comes_from_its_words_and_the_default_is_fixed() {
        let cases = [
            ("a slow zoom in on the face", Motion::ZoomIn),
            ("pull back to reveal the valley", Motion::ZoomOut),
            ("pan left across the skyline", Motion::PanLeft),
            ("pan right over the harbour", Motion::PanRight),
            ("tilt up to the summit", Motion::TiltUp),
            ("tilt down to the river", Motion::TiltDown),
            ("orbit the statue", Motion::Drift),
            ("a locked static shot", Motion::Static),
        ];
        for (prompt, motion) in cases {
            assert_eq!(Motion::from_prompt(prompt), motion, "{prompt}");
        }
        let default = Motion::from_prompt("a quiet lake at dawn");
        assert_eq!(Motion::from_prompt("a quiet lake at dawn"), default);
        assert_ne!(default, Motion::Static, "no move named is not a still picture");
    }

    #[test]
    fn every_move_stays_inside_the_picture_and_glides_without_jumps() {
        let moves = ["zoom in", "zoom out", "pan left", "pan right", "tilt up", "tilt down", "orbit", "static"];
        for prompt in moves {
            let spec = VideoSpec {
                short_side: 144,
                aspect: None,
                duration_secs: 3,
                prompt: prompt.to_owned(),
                start_image: Some(png(320, 200, 1)),
                end_image: None,
                element_images: Vec::new(),
                shots: ShotPlan::Single,
                sound: false,
                watermark: false,
                ..VideoSpec::default()
            };
            let (w, h) = crate::output_size(144, (320, 200));
            let plan = plan_of(&spec, w, h);
            let (pw, ph) = (plan.work_w as f32, plan.work_h as f32);
            let total = 3 * crate::FPS;
            let mut last: Option<Window> = None;
            for i in 0..total {
                let win = plan.window(i);
                // Never past the picture's edge.
                assert!(win.x0 >= -1e-3 && win.y0 >= -1e-3, "{prompt} frame {i}: {win:?}");
                assert!(win.x0 + win.vw <= pw + 1e-3 && win.y0 + win.vh <= ph + 1e-3, "{prompt} frame {i}: {win:?}");
                // Sub-pixel steps between frames, easing to rest at both ends.
                if let Some(prev) = last {
                    let step = (win.x0 - prev.x0).abs().max((win.y0 - prev.y0).abs()).max((win.vw - prev.vw).abs());
                    assert!(step < 1.0, "{prompt} jumps {step:.2} px at frame {i}");
                    if i == 1 || i == total - 1 {
                        assert!(step < 0.05, "{prompt} does not ease at frame {i}: {step:.3} px");
                    }
                }
                last = Some(win);
            }
        }
    }

    #[test]
    fn intelligence_plans_two_or_three_shots_that_fill_the_clip_with_distinct_moves() {
        for (secs, n) in [(3, 2), (6, 2), (7, 3), (15, 3)] {
            let spec = VideoSpec {
                short_side: 144,
                aspect: Some((16, 9)),
                duration_secs: secs,
                prompt: "a harbour at dusk".to_owned(),
                start_image: None,
                end_image: None,
                element_images: Vec::new(),
                shots: ShotPlan::Intelligence,
                sound: false,
                watermark: false,
                ..VideoSpec::default()
            };
            let total = secs * crate::FPS;
            let shots = plan_shots(&spec, total).unwrap();
            assert_eq!(shots.len(), n, "{secs} s");
            assert_eq!(shots.iter().map(|s| s.len).sum::<u32>(), total);
            assert!(shots.windows(2).all(|p| p[0].start + p[0].len == p[1].start && p[0].motion != p[1].motion));
        }
    }
}
