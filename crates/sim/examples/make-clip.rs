//! Makes `assets/clip.mp4`, the sim's default result video, with vidgate's own
//! renderer: `cargo run -p vidgate-sim --example make-clip`.

use std::ops::ControlFlow;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = vidgate_render::VideoSpec {
        short_side: 144,
        aspect: Some((16, 9)),
        duration_secs: 3,
        prompt: "a stand-in upstream's result, slow drift".to_owned(),
        start_image: None,
        end_image: None,
        element_images: Vec::new(),
        shots: vidgate_render::ShotPlan::Single,
        sound: false,
        watermark: false,
        ..vidgate_render::VideoSpec::default()
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/clip.mp4");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let made = vidgate_render::render(&spec, &mut out, &mut |_, _| ControlFlow::Continue(()))?;
    std::io::Write::flush(&mut out)?;
    eprintln!("{}: {made:?}", path.display());
    Ok(())
}
