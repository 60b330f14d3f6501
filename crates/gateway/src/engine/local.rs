//! Running a task on this machine: the built-in renderer for videos, and custom
//! elements kept as their frontal image. Also the loading of a request's images
//! (from storage, or fetched through the guarded client and checked by content),
//! which remote routes share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use vidgate_api::catalog::ModelId;
use vidgate_api::image::{check_image_rules, sniff_image};
use vidgate_api::task::TaskErrorCode;

use super::service_error;
use super::settle::{Output, RunResult};
use crate::files;
use crate::ids::{ElementId, FileId, LeaseOwner};
use crate::job::{ImageRef, StoredElement, StoredRequest};
use crate::providers::{Failure, local};
use crate::state::AppState;
use crate::store::{ElementRow, FileKind, TaskRow};
use crate::util;

pub(super) async fn run(
    state: &AppState,
    task: &TaskRow,
    request: &StoredRequest,
    owner: &LeaseOwner,
    progress: Arc<AtomicU32>,
    lost: Arc<AtomicBool>,
) -> RunResult {
    let _ = state.store.set_provider(&task.id, owner, "local").await;
    progress.store(2, Ordering::Relaxed);
    if request.model == ModelId::KlingCustomElement {
        return create_element(state, task, request).await;
    }
    let images = load_images(state, request).await?;
    let insets = element_insets(state, request).await?;
    progress.store(5, Ordering::Relaxed);
    let spec = local::video_spec(request, images.start, images.end, insets);
    let file_id = FileId::new();
    let tmp = state.blobs.temp_path(&file_id).ok_or_else(|| service_error("bad file id"))?;
    match local::render_to_file(spec, tmp.clone(), progress, lost).await {
        Ok(bytes) => {
            state.blobs.commit_temp(&file_id).await.map_err(service_error)?;
            let file = files::new_file(state, file_id, Some(&task.account_id), FileKind::Result, "video/mp4", bytes);
            if let Err(e) = state.store.insert_file(&file).await {
                files::discard(state, &file.id).await;
                return Err(service_error(e));
            }
            Ok(Output { file: Some(file), data: None })
        }
        Err(failure) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(failure)
        }
    }
}

/// `kling-custom-element` on the local provider: the element is its frontal image.
async fn create_element(state: &AppState, task: &TaskRow, request: &StoredRequest) -> RunResult {
    let element = request
        .element
        .as_ref()
        .ok_or_else(|| Failure::new(TaskErrorCode::InvalidParameters, "The element definition is missing."))?;
    // Every image is checked; the frontal one is kept (for as long as the element).
    let images = load_images(state, request).await?;
    let frontal = images.element.first().map(Vec::as_slice).unwrap_or_default();
    let file_id = FileId::new();
    state.blobs.put(&file_id, frontal).await.map_err(service_error)?;
    let data = record_element(state, task, Some(element), "local", None, Some(file_id)).await.map_err(service_error)?;
    Ok(Output { file: None, data: Some(data) })
}

/// Records an element under our own `el-` id (a client never sees an upstream's)
/// and answers the task's `result_data`.
pub(super) async fn record_element(
    state: &AppState,
    task: &TaskRow,
    element: Option<&StoredElement>,
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

/// A request's images: start and end frames, and for an element being made its
/// frontal then reference images.
pub(super) struct Images {
    pub start: Option<Vec<u8>>,
    pub end: Option<Vec<u8>>,
    pub element: Vec<Vec<u8>>,
}

pub(super) async fn load_images(state: &AppState, request: &StoredRequest) -> Result<Images, Failure> {
    let start = load_optional(state, "image_start", request.image_start.as_ref()).await?;
    let end = load_optional(state, "image_end", request.image_end.as_ref()).await?;
    let mut element = Vec::new();
    if let Some(e) = &request.element {
        element.push(load_image(state, "frontal_image", &e.frontal_image).await?);
        for (i, r) in e.refer_images.iter().enumerate() {
            element.push(load_image(state, &format!("refer_images[{i}]"), r).await?);
        }
    }
    Ok(Images { start, end, element })
}

/// The frontal images of the elements a video names, which the local renderer
/// insets; one that can no longer be read fails the task (as upstream it would).
async fn element_insets(state: &AppState, request: &StoredRequest) -> Result<Vec<Vec<u8>>, Failure> {
    let mut insets = Vec::new();
    for e in state.store.get_elements(&request.element_ids).await.map_err(service_error)? {
        if let Some(id) = &e.frontal_file {
            insets.push(state.blobs.read(id).await.map_err(|_| {
                Failure::new(TaskErrorCode::ResourceNotFound, format!("The image of element {} is gone.", e.id))
            })?);
        }
    }
    Ok(insets)
}

async fn load_optional(state: &AppState, what: &str, r: Option<&ImageRef>) -> Result<Option<Vec<u8>>, Failure> {
    match r {
        None => Ok(None),
        Some(r) => load_image(state, what, r).await.map(Some),
    }
}

/// Reads a request image from storage, or fetches it through the guarded client,
/// and checks it by content.
async fn load_image(state: &AppState, what: &str, r: &ImageRef) -> Result<Vec<u8>, Failure> {
    let bytes =
        match r {
            ImageRef::File(id) => state.blobs.read(id).await.map_err(|_| {
                Failure::new(TaskErrorCode::ImageProcessingError, format!("The {what} file is no longer available."))
            })?,
            ImageRef::Url(url) => state.guard.fetch(url, vidgate_api::image::MAX_IMAGE_BYTES).await.map_err(|e| {
                Failure::new(TaskErrorCode::ImageProcessingError, format!("Could not fetch {what}: {e}."))
            })?,
        };
    let info = sniff_image(&bytes)
        .map_err(|e| Failure::new(e.task_error_code(), format!("The {what} is not usable: {e}.")))?;
    check_image_rules(&info)
        .map_err(|e| Failure::new(e.task_error_code(), format!("The {what} is not usable: {e}.")))?;
    Ok(bytes)
}
