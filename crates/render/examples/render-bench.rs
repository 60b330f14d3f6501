//! `cargo run -p vidgate-render --release --example render-bench`: renders a 5 s
//! 720p and a 15 s 1080p clip (start image with camera motion, fade to an end
//! image) and, in the same run, has ffmpeg make the equivalent clip (zoompan over
//! the start image, xfade to the end image, libx264 -preset veryfast) as the
//! yardstick. Prints wall times, the time and size ratios and our peak memory.
//! ffmpeg is only the yardstick here; vidgate never uses it.

#![expect(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool")]

use std::ops::ControlFlow;
use std::process::Command;
use std::time::Instant;

use vidgate_render::{ShotPlan, VideoSpec, render};

/// A photo-like picture: smooth gradients, soft shapes and fine noise.
fn photo(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let fx = x as f32 / w as f32;
        let fy = y as f32 / h as f32;
        let mut n = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed.wrapping_mul(83_492_791)) % 23;
        n = n.saturating_sub(11);
        let base = [
            90.0 + 120.0 * fy + 30.0 * (fx * 9.0 + seed as f32).sin(),
            110.0 + 80.0 * (1.0 - fy) + 40.0 * (fy * 7.0).cos(),
            150.0 + 70.0 * fx - 50.0 * fy,
        ];
        let d = ((fx - 0.6).powi(2) + (fy - 0.45).powi(2)).sqrt();
        let sun = (1.0 - d * 3.0).max(0.0) * 90.0;
        image::Rgb(base.map(|c| (c + sun + n as f32).clamp(0.0, 255.0) as u8))
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::env::temp_dir().join("vidgate-render-bench");
    std::fs::create_dir_all(&dir).unwrap();
    if args.get(1).map(String::as_str) == Some("one") {
        // Child mode: one render, then report time, size and peak memory.
        let short: u32 = args[2].parse().unwrap();
        let secs: u32 = args[3].parse().unwrap();
        let spec = VideoSpec {
            short_side: short,
            aspect: None,
            duration_secs: secs,
            prompt: "slow zoom in".to_owned(),
            start_image: Some(std::fs::read(dir.join("start.jpg")).unwrap()),
            end_image: Some(std::fs::read(dir.join("end.jpg")).unwrap()),
            element_images: Vec::new(),
            shots: ShotPlan::Single,
            sound: false,
            watermark: false,
            ..VideoSpec::default()
        };
        let path = dir.join(format!("ours-{short}.mp4"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let t = Instant::now();
        let out = render(&spec, &mut file, &mut |_, _| ControlFlow::Continue(())).unwrap();
        let secs_taken = t.elapsed().as_secs_f64();
        println!("{secs_taken} {} {}", out.bytes, peak_rss_mb());
        return;
    }
    std::fs::write(dir.join("start.jpg"), photo(2400, 1600, 1)).unwrap();
    std::fs::write(dir.join("end.jpg"), photo(2400, 1600, 7)).unwrap();
    let exe = std::env::current_exe().unwrap();
    println!(
        "{:<12} {:>9} {:>9} {:>7} {:>10} {:>10} {:>6} {:>9}",
        "clip", "ours s", "ffmpeg s", "time", "ours MB", "ffmpeg MB", "size", "peak MB"
    );
    for (short, secs, w, h) in [(720u32, 5u32, 1080u32, 720u32), (1080, 15, 1620, 1080)] {
        let child = Command::new(&exe).args(["one", &short.to_string(), &secs.to_string()]).output().unwrap();
        let line = String::from_utf8_lossy(&child.stdout);
        let parts: Vec<f64> = line.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        let (ours_s, ours_bytes, peak) = (parts[0], parts[1], parts[2]);
        let frames = secs * 24;
        let ff_out = dir.join(format!("ffmpeg-{short}.mp4"));
        let filter = format!(
            "[0:v]scale={sw}:{sh},zoompan=z='min(zoom+0.0008,1.12)':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={frames}:s={w}x{h}:fps=24,setsar=1[a];\
             [1:v]scale={w}:{h},setsar=1,fps=24,trim=duration={secs}[b];\
             [a][b]xfade=transition=fade:duration=1:offset={off},format=yuv420p[v]",
            sw = w * 2,
            sh = h * 2,
            off = secs - 1
        );
        let t = Instant::now();
        let status = Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-loop", "1", "-framerate", "24", "-t", &secs.to_string(), "-i"])
            .arg(dir.join("start.jpg"))
            .args(["-loop", "1", "-framerate", "24", "-t", &secs.to_string(), "-i"])
            .arg(dir.join("end.jpg"))
            .args([
                "-filter_complex",
                &filter,
                "-map",
                "[v]",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-t",
                &secs.to_string(),
            ])
            .arg(&ff_out)
            .status()
            .expect("ffmpeg (Debian's) is needed as the yardstick");
        let ff_s = t.elapsed().as_secs_f64();
        assert!(status.success(), "ffmpeg failed");
        let ff_bytes = std::fs::metadata(&ff_out).unwrap().len() as f64;
        println!(
            "{:<12} {:>9.2} {:>9.2} {:>6.2}x {:>10.2} {:>10.2} {:>5.2}x {:>9.1}",
            format!("{secs} s {short}p"),
            ours_s,
            ff_s,
            ours_s / ff_s,
            ours_bytes / 1e6,
            ff_bytes / 1e6,
            ours_bytes / ff_bytes,
            peak
        );
    }
    println!("targets: time <= 0.5x ffmpeg, size <= 3x ffmpeg, peak < 150 MB for 15 s 1080p");
}
