//! Extractors whose every refusal is the API's JSON error (never axum's plain
//! text): a JSON body that must be an object, its type errors naming the field
//! path (`credits`, `allowed_models[2]`); and a query string.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use vidgate_api::error::ErrorCode;

use crate::error::ApiError;

/// Maps a body that could not be read (too large, cut off) to our error.
pub fn body_error(e: &BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "The request body is too large.").with_param("body")
    } else {
        ApiError::invalid("body", "The request body could not be read.")
    }
}

/// A JSON object body deserialized into `T`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| body_error(&e))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid("body", format!("The body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::invalid("body", "The body must be a JSON object."));
        }
        serde_path_to_error::deserialize(value).map(Json).map_err(|e| {
            let path = e.path().to_string();
            let param = if path == "." { "body".to_owned() } else { path };
            ApiError::invalid(param, format!("{}.", e.into_inner()))
        })
    }
}

/// A query string deserialized into `T`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e: QueryRejection| ApiError::invalid("query", format!("The query string is not valid: {e}")))
    }
}
