//! Renders one text-to-video clip to a file, to look at or to check with other
//! tools (e.g. `ffprobe -show_streams`, `ffmpeg -v error -i OUT -f null -`):
//!
//! `cargo run -p vidgate-render --release --example render-one -- OUT.mp4
//!  [--sound] [--watermark] [--secs N] [--short N] [--aspect W:H] [--prompt TEXT]
//!  [--start IMAGE] [--reference IMAGE]... [--input VIDEO --mode edit|reference|motion [--keep-sound]]
//!  [--probe VIDEO]` (`--probe` only prints what the probe finds).

#![expect(clippy::print_stdout, reason = "a command-line tool")]

use std::ops::ControlFlow;

use vidgate_render::{InputVideo, ShotPlan, VideoMode, VideoSpec, probe, render};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: render-one OUT.mp4 [options]")?;
    let mut spec = VideoSpec {
        short_side: 720,
        aspect: Some((16, 9)),
        duration_secs: 5,
        prompt: "a quiet harbour at dusk, slow drift".to_owned(),
        start_image: None,
        end_image: None,
        element_images: Vec::new(),
        shots: ShotPlan::Single,
        sound: false,
        watermark: false,
        ..VideoSpec::default()
    };
    let mut input: Option<std::path::PathBuf> = None;
    let mut mode = VideoMode::Edit;
    let mut keep_sound = false;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--probe" => {
                println!("{:#?}", probe::probe_path(std::path::Path::new(&value()?))?);
                return Ok(());
            }
            "--start" => spec.start_image = Some(std::fs::read(value()?)?),
            "--reference" => spec.reference_images.push(std::fs::read(value()?)?),
            "--input" => input = Some(value()?.into()),
            "--keep-sound" => keep_sound = true,
            "--mode" => {
                mode = match value()?.as_str() {
                    "edit" => VideoMode::Edit,
                    "reference" => VideoMode::Reference,
                    "motion" => VideoMode::MotionControl,
                    other => return Err(format!("unknown mode {other}").into()),
                }
            }
            "--sound" => spec.sound = true,
            "--watermark" => spec.watermark = true,
            "--secs" => spec.duration_secs = value()?.parse()?,
            "--short" => spec.short_side = value()?.parse()?,
            "--prompt" => spec.prompt = value()?,
            "--aspect" => {
                let v = value()?;
                let (w, h) = v.split_once(':').ok_or("--aspect takes W:H")?;
                spec.aspect = Some((w.parse()?, h.parse()?));
            }
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if let Some(path) = input {
        if mode == VideoMode::Edit {
            // An edit follows the input's shape.
            spec.aspect = None;
        }
        spec.input_video = Some(InputVideo { path, mode, keep_original_sound: keep_sound });
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let out = render(&spec, &mut file, &mut |_, _| ControlFlow::Continue(()))?;
    println!("{path}: {out:?}");
    Ok(())
}
