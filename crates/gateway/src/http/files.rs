//! `POST /v1/files` (uploads usable as `image_start`/`image_end`) and `GET /files/{id}`,
//! the signed, expiring links to uploads and results, streamed with `Range`
//! support (see `range`).

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::io::AsyncWriteExt;
use vidgate_api::error::{ErrorBody, ErrorCode};
use vidgate_api::task::FileObject;

use super::extract::Query;
use super::range::{self, Answer};
use crate::error::ApiError;
use crate::files;
use crate::ids::FileId;
use crate::state::AppState;
use crate::tasks::Caller;
use crate::util;

pub fn router() -> Router<AppState> {
    // Uploads carry videos of up to 200 MB: their own body limit, above the API's.
    Router::new()
        .route("/v1/files", post(upload_file).layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024)))
        .route("/files/{file_id}", get(download_file))
}

/// Upload an image or a video.
///
/// Multipart form with one part named `file`: a JPG or PNG (checked by content,
/// at most 10 MB, or 50 MB for a model that takes larger images; each model's
/// own rules apply when the file is used), or an MP4/MOV video of at most 200 MB.
/// The answered `url` can be given as a frame, a reference image or a video;
/// vidgate reads it from its own storage. It expires with the file after 24 hours.
#[utoipa::path(
    post, path = "/v1/files", operation_id = "v1.files.create", tag = "files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The stored file.", body = FileObject),
        (status = 400, description = "Not an acceptable image or video; `error.param` is `file`.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 413, description = "Larger than the limit.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload_file(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<FileObject>, ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError::invalid("file", e.body_text()))?;
    let max = state.catalog.max_video_bytes().max(state.catalog.max_image_bytes() as u64);
    let mut found: Option<(FileId, std::path::PathBuf, u64)> = None;
    let written = async {
        while let Some(mut field) = multipart.next_field().await.map_err(|e| multipart_error(&e))? {
            if field.name() != Some("file") {
                continue;
            }
            if found.is_some() {
                return Err(ApiError::invalid("file", "Send exactly one file."));
            }
            // Streamed to disk as it arrives: never the whole file in memory.
            let id = FileId::new();
            let tmp = state.blobs.temp_path(&id).ok_or_else(|| ApiError::internal(anyhow::anyhow!("bad file id")))?;
            let mut out = tokio::fs::File::create(&tmp).await?;
            found = Some((id, tmp, 0));
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
                let Some((_, _, size)) = found.as_mut() else { break };
                *size += chunk.len() as u64;
                if *size > max {
                    return Err(ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("The file is larger than {} MB.", max / (1024 * 1024)),
                    )
                    .with_param("file"));
                }
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = written {
        if let Some((_, tmp, _)) = &found {
            let _ = tokio::fs::remove_file(tmp).await;
        }
        return Err(e);
    }
    let (id, tmp, size) = found.ok_or_else(|| ApiError::invalid("file", "A part named 'file' is required."))?;
    Ok(Json(files::store_upload(&state, &caller.account_id, id, tmp, size).await?))
}

/// The form of `POST /v1/files`.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "describes the multipart form for the OpenAPI document only")]
pub struct UploadForm {
    /// The image or video.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "The upload is too large.").with_param("file")
    } else {
        ApiError::invalid("file", e.body_text())
    }
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// Expiry of the link, Unix seconds.
    exp: Option<String>,
    /// The link's signature.
    sig: Option<String>,
}

/// Download a stored file through its signed link (no API key needed: the link is
/// the credential). A tampered or expired link answers 404. One byte range is
/// served as 206; an unknown unit or several ranges get the whole file.
#[utoipa::path(
    get, path = "/files/{file_id}", operation_id = "files.download", tag = "files",
    params(("file_id" = String, Path, description = "The file id, `file-...`."), LinkQuery,
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`.")),
    responses(
        (status = 200, description = "The file.", content_type = "application/octet-stream"),
        (status = 206, description = "Part of the file (Range).", content_type = "application/octet-stream"),
        (status = 400, description = "A query string that cannot be read.", body = ErrorBody),
        (status = 404, description = "Unknown, expired or tampered link.", body = ErrorBody),
        (status = 416, description = "The range is outside the file.", body = ErrorBody),
        (status = 503, description = "The file store does not answer just now.", body = ErrorBody),
    )
)]
pub async fn download_file(
    State(state): State<AppState>,
    Path(file_id): Path<String>,
    Query(q): Query<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "This link is unknown, expired or invalid.");
    let exp = q.exp.as_deref().and_then(|e| e.parse::<i64>().ok()).ok_or_else(not_found)?;
    let sig = q.sig.as_deref().ok_or_else(not_found)?;
    if !state.blobs.verify(&file_id, exp, sig, util::now_ms() / 1000) {
        return Err(not_found());
    }
    let id = FileId::from_raw(file_id);
    let row = state.store.get_file(&id).await?.ok_or_else(not_found)?;
    let stored = |e: std::io::Error| {
        if crate::blobs::is_missing(&e) { not_found() } else { files::store_unavailable(&e) }
    };
    let len = state.blobs.size(&id).await.map_err(stored)?;
    // Files never change, so the id is a strong validator.
    let etag = format!("\"{id}\"");
    let if_range_ok = headers.get(header::IF_RANGE).is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| if_range_ok);
    let mut resp = match range::answer(range, len) {
        Answer::Full => {
            let body = Body::from_stream(state.blobs.read_range(&id, None).await.map_err(stored)?);
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            r
        }
        Answer::Partial { start, end } => {
            let part = end - start + 1;
            let body = Body::from_stream(state.blobs.read_range(&id, Some(start..end + 1)).await.map_err(stored)?);
            let mut r = (StatusCode::PARTIAL_CONTENT, body).into_response();
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(part));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Answer::Unsatisfiable => {
            let mut r = ApiError::new(ErrorCode::RangeNotSatisfiable, "The range is outside the file.")
                .with_param("Range")
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&row.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    let ext = match row.content_type.as_str() {
        "video/mp4" => "mp4",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        _ => "bin",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{id}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    Ok(resp)
}
