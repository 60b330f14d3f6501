//! `POST /v1/files` (uploads usable as `image_start`/`image_end`) and `GET /files/{id}`,
//! the signed, expiring links to uploads and results.

use axum::body::Body;
use axum::extract::{Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower::ServiceExt;
use vidgate_api::error::{ErrorBody, ErrorCode};
use vidgate_api::image::{MAX_IMAGE_BYTES, check_image_rules, sniff_image};
use vidgate_api::task::FileObject;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::FileRow;
use crate::tasks::{Caller, image_content_type};
use crate::util;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/files", post(upload_file)).route("/files/{file_id}", get(download_file))
}

/// Upload an image.
///
/// Multipart form with one part named `file`: a JPG or PNG (checked by content),
/// at most 10 MB, at least 300 px on each side, aspect between 1:2.5 and 2.5:1. The
/// answered `url` can be given as `image_start` or `image_end`; vidgate reads it
/// from its own storage. It expires with the file after 24 hours.
#[utoipa::path(
    post, path = "/v1/files", operation_id = "v1.files.create", tag = "files",
    request_body(content_type = "multipart/form-data", description = "A part named `file` holding the image."),
    responses(
        (status = 200, description = "The stored file.", body = FileObject),
        (status = 400, description = "Not an acceptable image.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
        (status = 413, description = "Larger than 10 MB.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload_file(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<FileObject>, ApiError> {
    let mut multipart = multipart.map_err(|e| ApiError::invalid("file", e.body_text()))?;
    let mut found: Option<Vec<u8>> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&e)),
        };
        if field.name() != Some("file") {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::invalid("file", "Send exactly one file."));
        }
        let mut field = field;
        let mut bytes = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_IMAGE_BYTES {
                        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "The file is larger than 10 MB.")
                            .with_param("file"));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(multipart_error(&e)),
            }
        }
        found = Some(bytes);
    }
    let bytes = found.ok_or_else(|| ApiError::invalid("file", "A part named 'file' is required."))?;
    let info = sniff_image(&bytes).map_err(|e| ApiError::invalid("file", e.to_string()))?;
    check_image_rules(&info).map_err(|e| ApiError::invalid("file", e.to_string()))?;

    let now = util::now_ms();
    let id = crate::blobs::Blobs::new_id();
    let expires_at = now + state.config.link_ttl.as_millis() as i64;
    state.blobs.put(&id, &bytes).await?;
    let row = FileRow {
        id: id.clone(),
        account_id: Some(caller.account_id.clone()),
        kind: "upload".to_owned(),
        content_type: image_content_type(info.format).to_owned(),
        bytes: bytes.len() as i64,
        created_at: now,
        expires_at,
    };
    if let Err(e) = state.store.insert_file(&row).await {
        let _ = state.blobs.delete(&id).await;
        return Err(e.into());
    }
    Ok(Json(FileObject { url: state.blobs.signed_url(&id, expires_at / 1000), id, expires_at: expires_at / 1000 }))
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "The upload is too large.").with_param("file")
    } else {
        ApiError::invalid("file", e.body_text())
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct LinkQuery {
    exp: Option<String>,
    sig: Option<String>,
}

/// Download a stored file through its signed link (no API key needed: the link is
/// the credential). A tampered or expired link answers 404. Supports ranges.
#[utoipa::path(
    get, path = "/files/{file_id}", operation_id = "files.download", tag = "files",
    params(("file_id" = String, Path), ("exp" = i64, Query), ("sig" = String, Query)),
    responses(
        (status = 200, description = "The file.", content_type = "video/mp4"),
        (status = 206, description = "Part of the file (Range)."),
        (status = 404, description = "Unknown, expired or tampered link.", body = ErrorBody),
    )
)]
pub async fn download_file(
    State(state): State<AppState>,
    Path(file_id): Path<String>,
    Query(q): Query<LinkQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "This link is unknown, expired or invalid.");
    let exp = q.exp.as_deref().and_then(|e| e.parse::<i64>().ok()).ok_or_else(not_found)?;
    let sig = q.sig.as_deref().ok_or_else(not_found)?;
    if !state.blobs.verify(&file_id, exp, sig, util::now_ms() / 1000) {
        return Err(not_found());
    }
    let row = state.store.get_file(&file_id).await?.ok_or_else(not_found)?;
    let path = state.blobs.path(&file_id).ok_or_else(not_found)?;
    let served = tower_http::services::ServeFile::new(path).oneshot(request).await.map_err(ApiError::internal)?;
    if served.status() == axum::http::StatusCode::NOT_FOUND {
        return Err(not_found());
    }
    let mut resp = served.map(Body::new).into_response();
    if let Ok(v) = HeaderValue::from_str(&row.content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    let ext = if row.content_type == "video/mp4" {
        "mp4"
    } else if row.content_type == "image/png" {
        "png"
    } else {
        "jpg"
    };
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{file_id}.{ext}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    Ok(resp)
}
