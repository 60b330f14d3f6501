//! `ApiError` on the wire: the SPEC 1.4 body and status. A 5xx logs its cause
//! chain here and shows the client nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vidgate_api::error::{ErrorBody, ErrorCode};

use crate::error::ApiError;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            match &self.source {
                Some(cause) => tracing::error!(code = self.code.as_str(), error = ?cause, "request failed"),
                None => tracing::error!(code = self.code.as_str(), "request failed"),
            }
        }
        let mut body = ErrorBody::new(self.code, self.message, self.param);
        body.error.request_id = super::request_id::current();
        let mut resp = (status, axum::Json(body)).into_response();
        if self.code == ErrorCode::Unauthorized {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        resp
    }
}
