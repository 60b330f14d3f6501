//! The `local` provider: turns a stored request into a render plan and runs the
//! renderer on a blocking thread, reporting progress and stopping when the task is
//! cancelled or its lease lost. It is a preview renderer, not an AI model.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vidgate_api::catalog::{Shape, Sound};
use vidgate_api::create::MultiShot;
use vidgate_api::task::TaskErrorCode;
use vidgate_render::{InputVideo, RenderError, ShotPlan, ShotSpec, VideoMode, VideoSpec};

use super::Failure;
use crate::job::StoredRequest;

/// What a local render works from, already loaded or located.
#[derive(Debug, Default)]
pub struct Inputs {
    pub start: Option<Vec<u8>>,
    pub end: Option<Vec<u8>>,
    /// Reference images (`image_urls` of the O-series, motion control's subject).
    pub references: Vec<Vec<u8>>,
    /// The frontal images of the elements the request names.
    pub element_insets: Vec<Vec<u8>>,
    /// The stored input video, on local disk.
    pub video: Option<PathBuf>,
}

/// The render plan for a request of a model of `shape`, lasting `seconds`.
pub fn video_spec(request: &StoredRequest, shape: Shape, seconds: u32, inputs: Inputs) -> VideoSpec {
    let shots = match &request.multi_shot {
        None => ShotPlan::Single,
        Some(MultiShot::Intelligence) => ShotPlan::Intelligence,
        Some(MultiShot::Customize(shots)) => ShotPlan::Customize(
            shots.iter().map(|s| ShotSpec { prompt: s.prompt.clone(), duration_secs: s.duration }).collect(),
        ),
    };
    let mode = match shape {
        Shape::VideoEdit => Some(VideoMode::Edit),
        Shape::ReferenceToVideo => Some(VideoMode::Reference),
        Shape::MotionControl => Some(VideoMode::MotionControl),
        Shape::TextToVideo | Shape::ImageToVideo | Shape::CustomElement => None,
    };
    let input_video = match (inputs.video, mode) {
        (Some(path), Some(mode)) => {
            Some(InputVideo { path, mode, keep_original_sound: request.keep_original_sound.unwrap_or(false) })
        }
        _ => None,
    };
    // The shape follows the start image or the input video when there is one;
    // otherwise the requested aspect (16:9 by default).
    let aspect = match (&inputs.start, &input_video, shape) {
        (None, None, _) | (_, _, Shape::TextToVideo) => Some(request.aspect_ratio.unwrap_or_default().ratio()),
        _ => None,
    };
    VideoSpec {
        short_side: request.quality.short_side(),
        aspect,
        duration_secs: seconds,
        prompt: request.prompt.clone().unwrap_or_default(),
        start_image: inputs.start,
        end_image: inputs.end,
        element_images: inputs.element_insets,
        shots,
        sound: request.sound == Sound::On,
        watermark: request.watermark,
        reference_images: inputs.references,
        input_video,
    }
}

/// Renders into `path`; returns the file's size. Progress goes 5..95 while frames
/// are encoded; setting `lost` stops the render.
pub async fn render_to_file(
    spec: VideoSpec,
    path: PathBuf,
    progress: Arc<AtomicU32>,
    lost: Arc<AtomicBool>,
) -> Result<u64, Failure> {
    let joined = tokio::task::spawn_blocking(move || -> Result<u64, RenderError> {
        let file = std::fs::File::create(&path).map_err(RenderError::Io)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut on_progress = |done: u32, total: u32| {
            if lost.load(Ordering::Relaxed) {
                return ControlFlow::Break(());
            }
            let pct = 5 + (u64::from(done) * 90 / u64::from(total.max(1))) as u32;
            progress.fetch_max(pct, Ordering::Relaxed);
            ControlFlow::Continue(())
        };
        let output = vidgate_render::render(&spec, &mut out, &mut on_progress)?;
        out.flush().map_err(RenderError::Io)?;
        out.into_inner().map_err(|e| RenderError::Io(e.into_error()))?.sync_all().map_err(RenderError::Io)?;
        Ok(output.bytes)
    })
    .await;
    match joined {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(RenderError::Cancelled)) => {
            Err(Failure::new(TaskErrorCode::RequestCancelled, "The task was cancelled."))
        }
        Ok(Err(RenderError::InvalidVideo(msg))) => {
            Err(Failure::new(TaskErrorCode::InvalidParameters, format!("The input video could not be used: {msg}")))
        }
        Ok(Err(RenderError::InvalidImage(msg))) => {
            Err(Failure::new(TaskErrorCode::ImageProcessingError, format!("The image could not be used: {msg}")))
        }
        Ok(Err(RenderError::InvalidSpec(msg))) => {
            Err(Failure::new(TaskErrorCode::InvalidParameters, format!("The request cannot be rendered: {msg}")))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "local render failed");
            Err(Failure::new(TaskErrorCode::GenerationFailedNoContent, "The renderer produced no video."))
        }
        Err(e) => {
            tracing::error!(error = %e, "local render thread failed");
            Err(Failure::new(TaskErrorCode::ServiceError, "The renderer failed."))
        }
    }
}
