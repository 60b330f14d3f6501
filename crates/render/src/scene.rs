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

/// A picture as planes: full-resolution luma and chroma (chroma is sampled at
/// half resolution positions when a frame is made).
struct Planes {
    w: usize,
    h: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

fn rgb_to_planes(img: &RgbImage) -> Planes {
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
    Planes { w, h, y, u, v }
}

/// Scales `img` to cover `w` x `h` and crops the centre.
fn cover(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let scale = (w as f32 / img.width() as f32).max(h as f32 / img.height() as f32);
    let sw = ((img.width() as f32 * scale).ceil() as u32).max(w);
    let sh = ((img.height() as f32 * scale).ceil() as u32).max(h);
    let resized = image::imageops::resize(img, sw, sh, FilterType::Triangle);
    image::imageops::crop_imm(&resized, (sw - w) / 2, (sh - h) / 2, w, h).to_image()
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

/// One shot: frames [start, start + len) with one motion.
struct Shot {
    start: u32,
    len: u32,
    motion: Motion,
}

pub(crate) struct Plan {
    w: usize,
    h: usize,
    work: Planes,
    /// The end image fitted to the frame: luma, then chroma at half resolution.
    end: Option<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    shots: Vec<Shot>,
    fade_frames: u32,
    watermark: bool,
    /// Custom elements' frontal images, shown as insets: (x, y, planes).
    insets: Vec<(usize, usize, Planes)>,
}

impl Plan {
    pub(crate) fn new(
        spec: &VideoSpec,
        start: Option<RgbImage>,
        end: Option<RgbImage>,
        width: u32,
        height: u32,
    ) -> Result<Self, RenderError> {
        let total = crate::FPS * spec.duration_secs;
        let ww = ((width as f32 * MARGIN).ceil() as u32 + 1) & !1;
        let wh = ((height as f32 * MARGIN).ceil() as u32 + 1) & !1;
        let work = match &start {
            Some(img) => cover(img, ww, wh),
            None => procedural(&spec.prompt, ww, wh),
        };
        let end = end.map(|img| {
            let p = rgb_to_planes(&cover(&img, width, height));
            let u = downsample(&p.u, p.w, p.h);
            let v = downsample(&p.v, p.w, p.h);
            (p.y, u, v)
        });
        let shots = plan_shots(spec, total)?;
        Ok(Self {
            w: width as usize,
            h: height as usize,
            work: rgb_to_planes(&work),
            fade_frames: if end.is_some() { (total / 4).clamp(1, 36) } else { 0 },
            end,
            shots,
            watermark: spec.watermark,
            insets: insets(spec, width, height)?,
        })
    }

    /// Writes frame `i` of `total` as I420 into `yuv`.
    pub(crate) fn frame_yuv(&self, i: u32, total: u32, yuv: &mut [u8]) {
        let shot = self.shots.iter().rev().find(|s| i >= s.start).unwrap_or(&self.shots[0]);
        let t = if shot.len > 1 { (i - shot.start) as f32 / (shot.len - 1) as f32 } else { 0.0 };
        let (zoom, fx, fy) = shot.motion.camera(t.clamp(0.0, 1.0));
        // The view window in working-picture pixels, kept inside the picture.
        let (pw, ph) = (self.work.w as f32, self.work.h as f32);
        let vw = pw / zoom;
        let vh = ph / zoom;
        let cx = pw / 2.0 + fx * (pw - vw) / 2.0;
        let cy = ph / 2.0 + fy * (ph - vh) / 2.0;
        let (x0, y0) = (cx - vw / 2.0, cy - vh / 2.0);
        let (w, h) = (self.w, self.h);
        let (y_plane, rest) = yuv.split_at_mut(w * h);
        let (u_plane, v_plane) = rest.split_at_mut((w / 2) * (h / 2));
        sample_plane(&self.work.y, self.work.w, self.work.h, x0, y0, vw / w as f32, vh / h as f32, w, h, y_plane);
        let (cw, ch) = (w / 2, h / 2);
        sample_plane(&self.work.u, self.work.w, self.work.h, x0, y0, vw / cw as f32, vh / ch as f32, cw, ch, u_plane);
        sample_plane(&self.work.v, self.work.w, self.work.h, x0, y0, vw / cw as f32, vh / ch as f32, cw, ch, v_plane);

        if let Some((ey, eu, ev)) = &self.end {
            let fade_start = total.saturating_sub(self.fade_frames);
            if i >= fade_start {
                let t =
                    if self.fade_frames > 1 { (i - fade_start) as f32 / (self.fade_frames - 1) as f32 } else { 1.0 };
                let a = (t * t * (3.0 - 2.0 * t) * 256.0) as u32;
                blend(y_plane, ey, a);
                blend(u_plane, eu, a);
                blend(v_plane, ev, a);
            }
        }
        for (ix, iy, p) in &self.insets {
            paste(y_plane, u_plane, v_plane, w, *ix, *iy, p);
        }
        if self.watermark {
            mark(y_plane, w, h);
        }
    }
}

/// The referenced elements' frontal images, each fitted into a square a quarter
/// of the frame's short side, along the top-left edge with a light border.
fn insets(spec: &VideoSpec, width: u32, height: u32) -> Result<Vec<(usize, usize, Planes)>, RenderError> {
    let side = ((width.min(height) / 4) & !1).max(32);
    let border = 4u32;
    let mut out = Vec::new();
    for (i, bytes) in spec.element_images.iter().take(3).enumerate() {
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

/// Copies a picture into the frame at (x, y) (even coordinates): luma at full
/// resolution, chroma from the picture's 2x2 blocks.
fn paste(y: &mut [u8], u: &mut [u8], v: &mut [u8], w: usize, x0: usize, y0: usize, p: &Planes) {
    for row in 0..p.h {
        let dst = (y0 + row) * w + x0;
        y[dst..dst + p.w].copy_from_slice(&p.y[row * p.w..row * p.w + p.w]);
    }
    let cw = w / 2;
    for row in 0..p.h / 2 {
        for col in 0..p.w / 2 {
            let s = 2 * row * p.w + 2 * col;
            let at = (y0 / 2 + row) * cw + x0 / 2 + col;
            u[at] = p.u[s];
            v[at] = p.v[s];
        }
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

/// Bilinear resampling of a window of `src` into `dst` (axis-aligned, so the
/// per-column positions and weights are computed once per frame).
#[allow(clippy::too_many_arguments)]
fn sample_plane(
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
    let cols: Vec<(usize, u32)> = (0..dw)
        .map(|x| {
            let fx = (x0 + (x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 2) as f32);
            let ix = fx as usize;
            (ix, ((fx - ix as f32) * 256.0) as u32)
        })
        .collect();
    for y in 0..dh {
        let fy = (y0 + (y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 2) as f32);
        let iy = fy as usize;
        let wy = ((fy - iy as f32) * 256.0) as u32;
        let r0 = &src[iy * sw..iy * sw + sw];
        let r1 = &src[(iy + 1) * sw..(iy + 1) * sw + sw];
        let row = &mut dst[y * dw..y * dw + dw];
        for (d, &(ix, wx)) in row.iter_mut().zip(&cols) {
            let a = u32::from(r0[ix]) * (256 - wx) + u32::from(r0[ix + 1]) * wx;
            let b = u32::from(r1[ix]) * (256 - wx) + u32::from(r1[ix + 1]) * wx;
            *d = ((a * (256 - wy) + b * wy + (1 << 15)) >> 16) as u8;
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
fn blend(dst: &mut [u8], src: &[u8], a: u32) {
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
