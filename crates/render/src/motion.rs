//! Motion control's camera path: the global motion of an input video,
//! estimated frame to frame on small luma thumbnails (the shift that best
//! lines one frame up with the next, to a fraction of a pixel), summed into a
//! camera path and fitted to the room the camera has over the subject image.
//! Deterministic integer work on thumbnails; the input is streamed once.

use std::fs::File;
use std::io::BufReader;
use std::ops::ControlFlow;
use std::path::Path;

use crate::decode::{Frame, VideoFrames};
use crate::footage::rotate;
use crate::{FPS, RenderError};

/// Thumbnail width the motion is measured on.
const THUMB_W: usize = 96;
/// The largest shift looked for between two frames, in thumbnail pixels (4%
/// of the width a frame: a fast pan at 24-60 fps).
const SEARCH: i32 = 4;

/// The luma of `f` box-averaged to `tw` x `th`.
fn thumbnail(f: &Frame, tw: usize, th: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(tw * th);
    for ty in 0..th {
        let (y0, y1) = (ty * f.height / th, ((ty + 1) * f.height / th).max(ty * f.height / th + 1));
        for tx in 0..tw {
            let (x0, x1) = (tx * f.width / tw, ((tx + 1) * f.width / tw).max(tx * f.width / tw + 1));
            let mut sum = 0u32;
            let mut n = 0u32;
            for y in y0..y1.min(f.height) {
                for x in x0..x1.min(f.width) {
                    sum += u32::from(f.y.get(y * f.width + x).copied().unwrap_or(0));
                    n += 1;
                }
            }
            out.push(((sum + n / 2) / n.max(1)) as u8);
        }
    }
    out
}

/// How far the picture moved from `prev` to `cur` (both `w` x `h`), in pixels:
/// the shift with the least mean absolute difference over the frames' inner
/// part, refined to a fraction of a pixel by a parabola through its
/// neighbours. Ties go to the smaller shift, so a still or flat picture
/// stays still.
pub(crate) fn shift(prev: &[u8], cur: &[u8], w: usize, h: usize) -> (f32, f32) {
    let s = SEARCH as usize;
    if w <= 2 * s + 2 || h <= 2 * s + 2 {
        return (0.0, 0.0);
    }
    let cost = |dx: i32, dy: i32| -> u64 {
        let mut sum = 0u64;
        for y in s..h - s {
            let cy = (y as i32 + dy) as usize;
            for x in s..w - s {
                let cx = (x as i32 + dx) as usize;
                sum += u64::from(cur[cy * w + cx].abs_diff(prev[y * w + x]));
            }
        }
        sum
    };
    let side = (2 * SEARCH + 1) as usize;
    let mut costs = vec![0u64; side * side];
    let mut best = (0i32, 0i32);
    let mut best_cost = u64::MAX;
    for dy in -SEARCH..=SEARCH {
        for dx in -SEARCH..=SEARCH {
            let c = cost(dx, dy);
            costs[((dy + SEARCH) as usize) * side + (dx + SEARCH) as usize] = c;
            let better = c < best_cost || (c == best_cost && dx.abs() + dy.abs() < best.0.abs() + best.1.abs());
            if better {
                best = (dx, dy);
                best_cost = c;
            }
        }
    }
    let at = |dx: i32, dy: i32| costs[((dy + SEARCH) as usize) * side + (dx + SEARCH) as usize] as f32;
    let refine = |minus: Option<f32>, centre: f32, plus: Option<f32>| match (minus, plus) {
        (Some(m), Some(p)) if m + p - 2.0 * centre > 0.0 => ((m - p) / (2.0 * (m + p - 2.0 * centre))).clamp(-0.5, 0.5),
        _ => 0.0,
    };
    let (bx, by) = best;
    let c = at(bx, by);
    let fx = refine((bx > -SEARCH).then(|| at(bx - 1, by)), c, (bx < SEARCH).then(|| at(bx + 1, by)));
    let fy = refine((by > -SEARCH).then(|| at(bx, by - 1)), c, (by < SEARCH).then(|| at(bx, by + 1)));
    (bx as f32 + fx, by as f32 + fy)
}

/// The camera path for `frames` output frames at 24 fps from the video at
/// `path`: per frame, the window's centre as a fraction of the free room
/// (-1..=1), given that the room reaches `room` of the frame's size either
/// side. The input's camera moves are followed one to one while they fit and
/// scaled down to fit when they do not; the path is centred on its range.
/// `poll` is asked once per input frame whether to go on.
pub(crate) fn camera_path(
    path: &Path,
    frames: u32,
    room: f32,
    poll: &mut dyn FnMut() -> ControlFlow<()>,
) -> Result<Vec<(f32, f32)>, RenderError> {
    let mut video = VideoFrames::open(BufReader::new(File::open(path)?))?;
    let rotation = video.info().video.rotation;
    let (cw, ch) = (video.info().video.width as usize, video.info().video.height as usize);
    let tw = THUMB_W;
    let th = ((tw * ch + cw / 2) / cw.max(1)).clamp(16, 4 * THUMB_W);
    // The measurements are made upright.
    let (uw, uh) = if rotation % 180 == 90 { (th, tw) } else { (tw, th) };
    // (time, camera x, camera y), the camera in fractions of the frame.
    let mut track: Vec<(f64, f32, f32)> = Vec::new();
    // Each frame is measured against a reference frame, not the one before,
    // so the small errors of each measurement do not add up while the camera
    // holds still or moves slowly; the reference moves on when the picture
    // has moved most of the way the search reaches.
    let mut reference: Option<(Vec<u8>, f32, f32)> = None;
    // Past the output's last frame, the input's motion is not needed.
    let last = f64::from(frames) / f64::from(FPS);
    while let Some(f) = video.next_frame()? {
        if poll().is_break() {
            return Err(RenderError::Cancelled);
        }
        if f.time() > last {
            break;
        }
        let mut thumb = thumbnail(&f, tw, th);
        if rotation != 0 {
            thumb = rotate(&thumb, tw, th, rotation);
        }
        let (cx, cy, renew) = match &reference {
            None => (0.0, 0.0, true),
            Some((r, rx, ry)) => {
                // The picture moving right is the camera moving left.
                let (dx, dy) = shift(r, &thumb, uw, uh);
                let far = dx.abs().max(dy.abs()) >= (SEARCH - 2) as f32;
                (rx - dx / uw as f32, ry - dy / uh as f32, far)
            }
        };
        track.push((f.time(), cx, cy));
        if renew {
            reference = Some((thumb, cx, cy));
        }
    }
    // Sampled at the output's frame times, between the input's frames.
    let at = |t: f64| -> (f32, f32) {
        let i = track.partition_point(|(time, _, _)| *time <= t);
        match (i.checked_sub(1).and_then(|k| track.get(k)), track.get(i)) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let u = ((t - a.0) / (b.0 - a.0)) as f32;
                (a.1 + (b.1 - a.1) * u, a.2 + (b.2 - a.2) * u)
            }
            (Some(a), _) => (a.1, a.2),
            (None, Some(b)) => (b.1, b.2),
            (None, None) => (0.0, 0.0),
        }
    };
    let mut out: Vec<(f32, f32)> = (0..frames).map(|k| at(f64::from(k) / f64::from(FPS))).collect();
    let span = |f: &dyn Fn(&(f32, f32)) -> f32| {
        out.iter().map(f).fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (x_lo, x_hi) = span(&|p| p.0);
    let (y_lo, y_hi) = span(&|p| p.1);
    let (mx, my) = ((x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0);
    let reach = ((x_hi - x_lo).max(y_hi - y_lo) / 2.0 / room.max(1e-6)).max(1.0);
    for p in &mut out {
        *p = ((p.0 - mx) / room / reach, (p.1 - my) / room / reach);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured picture, and the same picture moved by (dx, dy) pixels.
    fn textured(w: usize, h: usize, dx: i32, dy: i32) -> Vec<u8> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| (x as i32 - dx, y as i32 - dy)))
            .map(|(x, y)| {
                let (x, y) = (x as f32, y as f32);
                (128.0 + 50.0 * (x * 0.31).sin() * (y * 0.23).cos() + 40.0 * ((x + 2.0 * y) * 0.11).sin()) as u8
            })
            .collect()
    }

    #[test]
    fn the_shift_between_two_frames_is_found() {
        let (w, h) = (96, 54);
        let a = textured(w, h, 0, 0);
        for (dx, dy) in [(0, 0), (3, -2), (-4, 1), (1, 4)] {
            let (x, y) = shift(&a, &textured(w, h, dx, dy), w, h);
            assert!((x - dx as f32).abs() < 0.26 && (y - dy as f32).abs() < 0.26, "({dx},{dy}) -> ({x},{y})");
        }
        let flat = vec![90u8; w * h];
        assert_eq!(shift(&flat, &flat, w, h), (0.0, 0.0));
    }
}
