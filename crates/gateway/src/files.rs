//! Stored files as the service sees them: a blob plus its row (owner, kind,
//! type, size, expiry). Made in one place (`new_file`), kept together (`keep`:
//! no row without its blob), removed together (`discard`), and uploads checked
//! by content before anything is written (`store_upload`).

use vidgate_api::image::{ImageInfo, check_image_rules, sniff_image};
use vidgate_api::task::FileObject;

use crate::error::ApiError;
use crate::ids::{AccountId, FileId};
use crate::state::AppState;
use crate::store::{FileKind, FileRow};
use crate::tasks::Caller;
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
    state.blobs.put(&file.id, bytes).await?;
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

/// Checks an uploaded image by content and stores it for the caller; the
/// answered link can be used as `image_start`/`image_end`.
pub async fn store_upload(state: &AppState, caller: &Caller, bytes: &[u8]) -> Result<FileObject, ApiError> {
    let info: ImageInfo = sniff_image(bytes).map_err(|e| image_error("file", &e))?;
    check_image_rules(&info).map_err(|e| image_error("file", &e))?;
    let file = new_file(
        state,
        FileId::new(),
        Some(&caller.account_id),
        FileKind::Upload,
        info.format.mime(),
        bytes.len() as u64,
    );
    keep(state, &file, bytes).await?;
    let expires_at = file.expires_at / 1000;
    Ok(FileObject { url: state.blobs.signed_url(&file.id, expires_at), id: file.id.to_string(), expires_at })
}

/// An unreadable image is `image_processing_error`; a readable one that breaks a
/// rule (size, aspect) is an ordinary invalid request.
pub fn image_error(param: &str, e: &vidgate_api::image::ImageError) -> ApiError {
    use vidgate_api::error::ErrorCode;
    let code = match e.task_error_code() {
        vidgate_api::task::TaskErrorCode::ImageProcessingError => ErrorCode::ImageProcessingError,
        _ => ErrorCode::InvalidRequest,
    };
    let message = e.to_string();
    let mut chars = message.chars();
    let message = chars.next().map(|c| c.to_uppercase().chain(chars).collect::<String>() + ".").unwrap_or_default();
    ApiError::new(code, message).with_param(param)
}
