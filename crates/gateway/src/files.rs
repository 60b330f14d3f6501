//! Stored files as the service sees them: a blob plus its row (owner, kind,
//! type, size, expiry). Made in one place (`new_file`), kept together (`keep`:
//! no row without its blob), removed together (`discard`), and uploads checked
//! by content before they are kept (`store_upload`).

use vidgate_api::image::{ImageInfo, ImageRules, check_image};
use vidgate_api::task::FileObject;

use crate::error::ApiError;
use crate::ids::{AccountId, FileId};
use crate::state::AppState;
use crate::store::{FileKind, FileRow};
use crate::util;

/// The row of a file made now, living for the configured link lifetime.
pub fn new_file(
    state: &AppState,
    id: FileId,
    account_id: Option<&AccountId>,
    kind: FileKind,
    content_type: &str,
    bytes: u64,
) -> FileRow {
    let now = util::now_ms();
    FileRow {
        id,
        account_id: account_id.cloned(),
        kind,
        content_type: content_type.to_owned(),
        bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        created_at: now,
        expires_at: now + state.config.link_ttl_secs.as_millis() as i64,
    }
}

/// Writes the blob, then its row; if the row cannot be written the blob goes.
pub async fn keep(state: &AppState, file: &FileRow, bytes: &[u8]) -> Result<(), ApiError> {
    state.blobs.put(&file.id, bytes).await.map_err(|e| store_unavailable(&e))?;
    if let Err(e) = state.store.insert_file(file).await {
        let _ = state.blobs.delete(&file.id).await;
        return Err(e.into());
    }
    Ok(())
}

/// Removes a file's row and blob (best effort: the janitor removes what is left
/// once it expires).
pub async fn discard(state: &AppState, id: &FileId) {
    if let Err(e) = state.store.delete_file(id).await {
        tracing::warn!(file_id = %id, error = %e, "could not delete a file row");
    }
    if let Err(e) = state.blobs.delete(id).await {
        tracing::warn!(file_id = %id, error = %e, "could not delete a blob");
    }
}

/// Checks an uploaded file by content and stores it for the caller: a JPG or
/// PNG (checked completely, at most the largest image any model takes) or an
/// MP4/MOV video (probed, at most the largest video any model takes). The
/// bytes are already in `tmp`, a temporary file of the blob store for `id`;
/// the answered link can be given as a frame, a reference image or a video.
pub async fn store_upload(
    state: &AppState,
    account: &AccountId,
    id: FileId,
    tmp: std::path::PathBuf,
    size: u64,
) -> Result<FileObject, ApiError> {
    let stored = async {
        let mut head = [0u8; 12];
        let n = {
            use tokio::io::AsyncReadExt;
            let mut f = tokio::fs::File::open(&tmp).await?;
            f.read(&mut head).await?
        };
        let head = &head[..n];
        let is_image = head.starts_with(&[0x89, b'P', b'N', b'G']) || head.starts_with(&[0xFF, 0xD8, 0xFF]);
        let content_type = if is_image {
            let max = state.catalog.max_image_bytes();
            if size > max as u64 {
                return Err(ApiError::new(
                    vidgate_api::error::ErrorCode::PayloadTooLarge,
                    format!("The image is larger than {} MB.", max / (1024 * 1024)),
                )
                .with_param("file"));
            }
            let bytes = tokio::fs::read(&tmp).await?;
            let rules = ImageRules { max_bytes: max, ..ImageRules::default() };
            let info: ImageInfo = check_image(&bytes, &rules).map_err(|e| image_error("file", &e))?;
            info.format.mime()
        } else {
            let probed = tokio::task::spawn_blocking({
                let tmp = tmp.clone();
                move || vidgate_render::probe::probe_path(&tmp)
            })
            .await
            .map_err(ApiError::internal)?;
            match probed {
                Ok(info) => container_mime(&info),
                Err(vidgate_render::probe::ProbeError::NotMp4(_)) => {
                    return Err(ApiError::invalid("file", "The file is not a JPG or PNG image or an MP4/MOV video."));
                }
                Err(e) => return Err(ApiError::invalid("file", format!("The video cannot be read: {e}."))),
            }
        };
        Ok(content_type)
    }
    .await;
    let content_type = match stored {
        Ok(t) => t,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if let Err(e) = state.blobs.commit_or_discard_temp(&id).await {
        return Err(store_unavailable(&e));
    }
    let file = new_file(state, id, Some(account), FileKind::Upload, content_type, size);
    if let Err(e) = state.store.insert_file(&file).await {
        discard(state, &file.id).await;
        return Err(e.into());
    }
    let expires_at = file.expires_at / 1000;
    Ok(FileObject { url: state.blobs.signed_url(&file.id, expires_at), id: file.id.to_string(), expires_at })
}

/// The blob store could not be used (unreachable, refusing): the client may
/// try again shortly.
pub fn store_unavailable(e: &std::io::Error) -> ApiError {
    tracing::warn!(error = %e, "the blob store cannot be used");
    ApiError::new(
        vidgate_api::error::ErrorCode::ServiceUnavailable,
        "Stored files cannot be reached just now; try again shortly.",
    )
}

/// The type a stored video is served with.
pub fn container_mime(info: &vidgate_render::probe::MediaInfo) -> &'static str {
    match info.container {
        vidgate_render::probe::Container::Mp4 => "video/mp4",
        vidgate_render::probe::Container::QuickTime => "video/quicktime",
    }
}

/// An unreadable image is `image_processing_error`; a readable one that breaks a
/// rule (size, aspect) is an ordinary invalid request.
pub fn image_error(param: &str, e: &vidgate_api::image::ImageError) -> ApiError {
    use vidgate_api::error::ErrorCode;
    let code = match e {
        vidgate_api::image::ImageError::Malformed | vidgate_api::image::ImageError::Corrupt(_) => {
            ErrorCode::ImageProcessingError
        }
        _ => ErrorCode::InvalidRequest,
    };
    let message = e.to_string();
    let mut chars = message.chars();
    let message = chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>() + ".").unwrap_or_default();
    ApiError::new(code, message).with_param(param)
}
