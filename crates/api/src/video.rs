//! Video inputs: what a probe of a video says (`VideoFacts`, filled by the gateway,
//! which fetches and probes), a model's documented limits (`VideoLimits`, from the
//! catalog) and the pure check between the two, whose error names the field and the
//! rule broken.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// What a probe of an input video found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoFacts {
    /// Container brand, lowercase: `mp4`, `mov`, `webm`...
    pub container: String,
    /// Video codec, lowercase: `h264`, `hevc`, `av1`... (no model limits it today;
    /// the local renderer has its own needs).
    pub video_codec: String,
    pub duration_ms: u64,
    pub width: u32,
    pub height: u32,
    /// Frames per second in thousandths (29.97 fps is 29970).
    pub fps_milli: u32,
    pub has_audio: bool,
    /// Size of the file in bytes.
    pub byte_len: u64,
}

/// An inclusive range; either end may be open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds<T> {
    pub min: Option<T>,
    pub max: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    pub fn contains(&self, v: T) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }
}

/// The limits a model documents for one video input.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VideoLimits {
    pub max_bytes: u64,
    pub duration_ms: Bounds<u64>,
    /// Both sides, in pixels.
    pub side_px: Bounds<u32>,
    /// The width alone, in pixels.
    pub width_px: Bounds<u32>,
    /// Whole frames per second.
    pub fps: Bounds<u32>,
    /// Accepted container brands, lowercase (`mp4`, `mov`).
    pub containers: Vec<String>,
}

/// `15500` as `15.5`.
fn seconds_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) { (ms / 1000).to_string() } else { format!("{}", ms as f64 / 1000.0) }
}

fn range_text<T: std::fmt::Display + Copy>(b: &Bounds<T>, show: impl Fn(T) -> String, unit: &str) -> String {
    match (b.min, b.max) {
        (Some(lo), Some(hi)) => format!("{} to {} {unit}", show(lo), show(hi)),
        (Some(lo), None) => format!("at least {} {unit}", show(lo)),
        (None, Some(hi)) => format!("at most {} {unit}", show(hi)),
        (None, None) => "any".to_owned(),
    }
}

impl VideoLimits {
    /// Checks a probed video against these limits; `who` names the model in the
    /// message, `param` is the field that carried the video.
    pub fn check(&self, who: &str, param: &str, v: &VideoFacts) -> Result<(), FieldError> {
        let fail = |rule: String| Err(FieldError::new(param, rule));
        if !self.containers.is_empty() && !self.containers.contains(&v.container) {
            let allowed: Vec<String> = self.containers.iter().map(|c| c.to_uppercase()).collect();
            return fail(format!("The video is {}; {who} takes {}.", v.container.to_uppercase(), allowed.join(" or ")));
        }
        if self.max_bytes > 0 && v.byte_len > self.max_bytes {
            return fail(format!("The video is larger than {} MB.", self.max_bytes / (1024 * 1024)));
        }
        if !self.duration_ms.contains(v.duration_ms) {
            return fail(format!(
                "The video is {} s long; {who} takes {}.",
                seconds_text(v.duration_ms),
                range_text(&self.duration_ms, seconds_text, "s")
            ));
        }
        if !self.side_px.contains(v.width) || !self.side_px.contains(v.height) {
            return fail(format!(
                "The video is {}x{}; {who} takes width and height of {}.",
                v.width,
                v.height,
                range_text(&self.side_px, |n| n.to_string(), "px")
            ));
        }
        if !self.width_px.contains(v.width) {
            return fail(format!(
                "The video is {} px wide; {who} takes a width of {}.",
                v.width,
                range_text(&self.width_px, |n| n.to_string(), "px")
            ));
        }
        let fps_ok = self.fps.min.is_none_or(|m| u64::from(v.fps_milli) >= u64::from(m) * 1000)
            && self.fps.max.is_none_or(|m| u64::from(v.fps_milli) <= u64::from(m) * 1000);
        if !fps_ok {
            return fail(format!(
                "The video runs at {} fps; {who} takes {}.",
                f64::from(v.fps_milli) / 1000.0,
                range_text(&self.fps, |n| n.to_string(), "fps")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> VideoLimits {
        VideoLimits {
            max_bytes: 200 * 1024 * 1024,
            duration_ms: Bounds { min: Some(3000), max: Some(15_500) },
            side_px: Bounds { min: Some(720), max: Some(2160) },
            width_px: Bounds::default(),
            fps: Bounds { min: Some(24), max: Some(60) },
            containers: vec!["mp4".to_owned(), "mov".to_owned()],
        }
    }

    fn facts() -> VideoFacts {
        VideoFacts {
            container: "mp4".to_owned(),
            video_codec: "h264".to_owned(),
            duration_ms: 5000,
            width: 1280,
            height: 720,
            fps_milli: 29_970,
            has_audio: true,
            byte_len: 1_000_000,
        }
    }

    #[test]
    fn each_limit_names_the_field_and_the_rule() {
        assert_eq!(limits().check("m", "video_url", &facts()), Ok(()));
        for (change, words) in [
            (VideoFacts { container: "webm".to_owned(), ..facts() }, "WEBM; m takes MP4 or MOV"),
            (VideoFacts { byte_len: 200 * 1024 * 1024 + 1, ..facts() }, "larger than 200 MB"),
            (VideoFacts { duration_ms: 2999, ..facts() }, "2.999 s long; m takes 3 to 15.5 s"),
            (VideoFacts { duration_ms: 15_501, ..facts() }, "15.501 s long"),
            (VideoFacts { width: 640, height: 360, ..facts() }, "640x360; m takes width and height of 720 to 2160 px"),
            (VideoFacts { width: 3840, height: 2160, ..facts() }, "3840x2160"),
            (VideoFacts { fps_milli: 23_976, ..facts() }, "23.976 fps; m takes 24 to 60 fps"),
            (VideoFacts { fps_milli: 60_001, ..facts() }, "60.001 fps"),
        ] {
            let e = limits().check("m", "video_urls[0]", &change);
            assert!(
                matches!(&e, Err(FieldError { param, message, .. }) if param == "video_urls[0]" && message.contains(words)),
                "{words}: {e:?}"
            );
        }
        // The edges are inside.
        for edge in [
            VideoFacts { duration_ms: 3000, fps_milli: 24_000, width: 720, height: 2160, ..facts() },
            VideoFacts { duration_ms: 15_500, fps_milli: 60_000, container: "mov".to_owned(), ..facts() },
        ] {
            assert_eq!(limits().check("m", "video_url", &edge), Ok(()));
        }
    }

    #[test]
    fn a_width_rule_ignores_the_height() {
        let l = VideoLimits { width_px: Bounds { min: Some(720), max: Some(2160) }, ..VideoLimits::default() };
        assert_eq!(l.check("m", "v", &VideoFacts { width: 720, height: 400, ..facts() }), Ok(()));
        assert!(l.check("m", "v", &VideoFacts { width: 700, height: 1280, ..facts() }).is_err());
    }
}
