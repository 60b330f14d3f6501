//! The `local` provider: turns a stored request into a render plan and runs the
//! renderer on a blocking thread, reporting progress and stopping when the task is
//! cancelled or its lease lost. It is a preview renderer, not an AI model.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vidgate_api::catalog::{ModelId, Sound};
use vidgate_api::create::MultiShot;
use vidgate_api::task::TaskErrorCode;
use vidgate_render::{RenderError, ShotPlan, ShotSpec, VideoSpec};

use super::Failure;
use crate::job::StoredRequest;

/// The render plan for a request whose images are already loaded.
pub fn video_spec(
    request: &StoredRequest,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    element_images: Vec<Vec<u8>>,
) -> VideoSpec {
    let shots = match &request.multi_shot {
        None => ShotPlan::Single,
        Some(MultiShot::Intelligence) => ShotPlan::Intelligence,
        Some(MultiShot::Customize(shots)) => ShotPlan::Customize(
            shots.iter().map(|s| ShotSpec { prompt: s.prompt.clone(), duration_secs: s.duration }).collect(),
        ),
    };
    let aspect = match request.model {
        ModelId::KlingV3TextToVideo => Some(request.aspect_ratio.ratio()),
        _ if start.is_none() => Some(request.aspect_ratio.ratio()),
        _ => None,
    };
    VideoSpec {
        short_side: request.quality.short_side(),
        aspect,
        duration_secs: request.duration,
        prompt: request.prompt.clone().unwrap_or_default(),
        start_image: start,
        end_image: end,
        element_images,
        shots,
        sound: request.sound == Sound::On,
        watermark: request.watermark,
        ..VideoSpec::default()
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
