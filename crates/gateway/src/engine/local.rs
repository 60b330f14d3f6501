//! Running a task on this machine: the built-in renderer for videos, and custom
//! elements kept as their frontal image. Also the loading of a request's images
//! (from storage, or fetched through the guarded client and checked by content),
//! which remote routes share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use vidgate_api::catalog::Shape;
use vidgate_api::create::ElementSpec;
use vidgate_api::image::{ImageRules, check_image};
use vidgate_api::task::TaskErrorCode;

use super::service_error;
use super::settle::Output;
use crate::files;
use crate::ids::{ElementId, FileId, LeaseOwner};
use crate::job::{ImageRef, StoredRequest};
use crate::providers::{Failure, local};
use crate::state::AppState;
use crate::store::{ElementRow, FileKind, TaskRow};
use crate::util;

/// Why a step stopped short of a result.
#[derive(Debug)]
pub(super) enum Stop {
    /// The task fails with this.
    Fail(Failure),
    /// The blob store could not be used (unreachable, refusing): nothing is
    /// wrong with the task, which is tried again shortly.
    StoreDown(String),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Self::Fail(f)
    }
}

/// How long a worker keeps trying to store a finished render while it holds the
/// task's lease, before it gives the task back (to be rendered again later).
const STORE_RETRY_LIMIT: Duration = Duration::from_secs(120);

/// A read of a stored file: a file that is gone fails the task with `gone`; a
/// store that cannot be used stops the step, to be tried again.
fn stored<T>(read: std::io::Result<T>, gone: impl FnOnce() -> Failure) -> Result<T, Stop> {
    read.map_err(|e| if crate::blobs::is_missing(&e) { Stop::Fail(gone()) } else { Stop::StoreDown(e.to_string()) })
}

pub(super) async fn run(
    state: &AppState,
    task: &TaskRow,
    request: &StoredRequest,
    owner: &LeaseOwner,
    progress: Arc<AtomicU32>,
    lost: Arc<AtomicBool>,
) -> Result<Output, Stop> {
    let _ = state.store.set_provider(&task.id, owner, "local").await;
    progress.store(2, Ordering::Relaxed);
    let shape = state.catalog.get(request.model.as_str()).map_or(Shape::ImageToVideo, |m| m.shape);
    if shape == Shape::CustomElement {
        return create_element(state, task, request).await;
    }
    let images = load_images(state, request).await?;
    let insets = element_insets(state, request).await?;
    let not_stored = || Failure::new(TaskErrorCode::InvalidParameters, "The input video is not stored.");
    // The input video at a path here (on S3, a copy removed when the render ends).
    let video_copy = match request.input_videos().next() {
        Some(r) => {
            let id = r.file().ok_or_else(not_stored)?;
            Some(stored(state.blobs.local_copy(id).await, not_stored)?)
        }
        None => None,
    };
    let video = video_copy.as_ref().map(|c| c.path().to_owned());
    progress.store(5, Ordering::Relaxed);
    let seconds = u32::try_from(task.video_duration).unwrap_or(0).max(1);
    let inputs = local::Inputs {
        start: images.start,
        end: images.end,
        references: images.references,
        element_insets: insets,
        video,
    };
    let spec = local::video_spec(request, shape, seconds, inputs);
    let file_id = FileId::new();
    let tmp = state.blobs.temp_path(&file_id).ok_or_else(|| service_error("bad file id"))?;
    let rendered = local::render_to_file(spec, tmp.clone(), progress, lost.clone()).await;
    drop(video_copy);
    match rendered {
        Ok(bytes) => {
            store_result(state, task, &file_id, &tmp, &lost).await?;
            let file = files::new_file(state, file_id, Some(&task.account_id), FileKind::Result, "video/mp4", bytes);
            if let Err(e) = state.store.insert_file(&file).await {
                files::discard(state, &file.id).await;
                return Err(service_error(e).into());
            }
            Ok(Output { file: Some(file), data: None, video_ms: Some(u64::from(seconds) * 1000) })
        }
        Err(failure) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(failure.into())
        }
    }
}

/// Stores a finished render, trying again while the store cannot be used, as
/// long as this worker holds the task's lease (its heartbeat goes on meanwhile)
/// and for at most `STORE_RETRY_LIMIT`: a render is not thrown away because the
/// store was briefly unreachable. Past that the task goes back to the queue.
async fn store_result(
    state: &AppState,
    task: &TaskRow,
    file_id: &FileId,
    tmp: &std::path::Path,
    lost: &AtomicBool,
) -> Result<(), Stop> {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(250);
    loop {
        let Err(e) = state.blobs.commit_temp(file_id).await else { return Ok(()) };
        let give_up = lost.load(Ordering::SeqCst)
            || started.elapsed() >= STORE_RETRY_LIMIT
            || util::now_ms() + (wait.as_millis() as i64) > task.deadline_at;
        if give_up {
            let _ = tokio::fs::remove_file(tmp).await;
            return Err(Stop::StoreDown(e.to_string()));
        }
        tracing::warn!(task_id = %task.id, error = %e, "could not store the result; trying again");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// `kling-custom-element` on the local provider: an image element is its frontal
/// image (kept for as long as the element, inset in renders that name it); a
/// video element keeps nothing to inset.
async fn create_element(state: &AppState, task: &TaskRow, request: &StoredRequest) -> Result<Output, Stop> {
    let element = request
        .element
        .as_ref()
        .ok_or_else(|| Failure::new(TaskErrorCode::InvalidParameters, "The element definition is missing."))?;
    // Every image is checked; the frontal one is kept.
    let images = load_images(state, request).await?;
    let frontal_file = match images.element.first() {
        Some(frontal) => {
            let file_id = FileId::new();
            state.blobs.put(&file_id, frontal).await.map_err(|e| Stop::StoreDown(e.to_string()))?;
            Some(file_id)
        }
        None => None,
    };
    let data = record_element(state, task, Some(element), "local", None, frontal_file)
        .await
        .map_err(|e| Stop::Fail(service_error(e)))?;
    Ok(Output { file: None, data: Some(data), video_ms: None })
}

/// Records an element under our own `el-` id (a client never sees an upstream's)
/// and answers the task's `result_data`.
pub(super) async fn record_element(
    state: &AppState,
    task: &TaskRow,
    element: Option<&ElementSpec<ImageRef>>,
    provider: &str,
    upstream_id: Option<String>,
    frontal_file: Option<FileId>,
) -> anyhow::Result<serde_json::Value> {
    let id = ElementId::new();
    state
        .store
        .insert_element(&ElementRow {
            id: id.clone(),
            account_id: task.account_id.clone(),
            task_id: task.id.clone(),
            provider: provider.to_owned(),
            upstream_id,
            name: element.map(|e| e.name.clone()).unwrap_or_default(),
            description: element.map(|e| e.description.clone()).unwrap_or_default(),
            frontal_file,
            created_at: util::now_ms(),
        })
        .await?;
    Ok(serde_json::json!({ "element_id": id }))
}

/// A request's images: start and end frames, reference images, and for an
/// element being made its frontal then reference images.
pub(super) struct Images {
    pub start: Option<Vec<u8>>,
    pub end: Option<Vec<u8>>,
    pub references: Vec<Vec<u8>>,
    pub element: Vec<Vec<u8>>,
}

pub(super) async fn load_images(state: &AppState, request: &StoredRequest) -> Result<Images, Stop> {
    let rules = state.catalog.get(request.model.as_str()).map(|m| m.image_rules()).unwrap_or_default();
    let rules = &rules;
    let start = load_optional(state, rules, "image_start", request.image_start.as_ref()).await?;
    let end = load_optional(state, rules, "image_end", request.image_end.as_ref()).await?;
    let mut references = Vec::new();
    for (i, r) in request.image_urls.iter().enumerate() {
        references.push(load_image(state, rules, &format!("image_urls[{i}]"), r).await?);
    }
    let mut element = Vec::new();
    if let Some(e) = &request.element {
        if let Some(frontal) = &e.frontal_image {
            element.push(load_image(state, rules, "frontal_image", frontal).await?);
        }
        for (i, r) in e.refer_images.iter().enumerate() {
            element.push(load_image(state, rules, &format!("refer_images[{i}]"), r).await?);
        }
    }
    Ok(Images { start, end, references, element })
}

/// The frontal images of the elements a video names, which the local renderer
/// insets; one that can no longer be read fails the task (as upstream it would).
async fn element_insets(state: &AppState, request: &StoredRequest) -> Result<Vec<Vec<u8>>, Stop> {
    let mut insets = Vec::new();
    for e in state.store.get_elements(&request.element_ids).await.map_err(service_error)? {
        if let Some(id) = &e.frontal_file {
            insets.push(stored(state.blobs.read(id).await, || {
                Failure::new(TaskErrorCode::ResourceNotFound, format!("The image of element {} is gone.", e.id))
            })?);
        }
    }
    Ok(insets)
}

async fn load_optional(
    state: &AppState,
    rules: &ImageRules,
    what: &str,
    r: Option<&ImageRef>,
) -> Result<Option<Vec<u8>>, Stop> {
    match r {
        None => Ok(None),
        Some(r) => load_image(state, rules, what, r).await.map(Some),
    }
}

/// Reads a request image from storage, or fetches it through the guarded client,
/// and checks it by content.
async fn load_image(state: &AppState, rules: &ImageRules, what: &str, r: &ImageRef) -> Result<Vec<u8>, Stop> {
    let bytes =
        match r {
            ImageRef::File(id) => stored(state.blobs.read(id).await, || {
                Failure::new(TaskErrorCode::ImageProcessingError, format!("The {what} file is no longer available."))
            })?,
            ImageRef::Url(url) => state.guard.fetch(url, rules.max_bytes).await.map_err(|e| {
                Failure::new(TaskErrorCode::ImageProcessingError, format!("Could not fetch {what}: {e}."))
            })?,
        };
    // Images fetched now get the complete check an inline one got at create.
    check_image(&bytes, rules)
        .map_err(|e| Failure::new(e.task_error_code(), format!("The {what} is not usable: {e}.")))?;
    Ok(bytes)
}
