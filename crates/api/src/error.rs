//! The error body of SPEC 1.4: `{"error":{"code","message","type","param"}}`, with
//! each code's HTTP status and type. The server adds `request_id` (its
//! `x-request-id`) beside those four; clients that ignore it see the SPEC body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidTaskId,
    /// An image that cannot be read (corrupt, truncated, not an image).
    ImageProcessingError,
    Unauthorized,
    InsufficientQuota,
    ModelAccessDenied,
    /// The key may not do this (manage keys, revoke another's key, sign up
    /// while sign-up is closed).
    PermissionDenied,
    TaskNotFound,
    NotFound,
    MethodNotAllowed,
    IdempotencyConflict,
    /// An account already holds as many live keys as it may.
    TooManyKeys,
    /// A top-up code whose uses are spent (or that this account redeemed).
    CodeUsedUp,
    /// A top-up code past its expiry.
    CodeExpired,
    PayloadTooLarge,
    RangeNotSatisfiable,
    RateLimitExceeded,
    InternalError,
    UpstreamError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::InvalidTaskId | Self::ImageProcessingError => 400,
            Self::Unauthorized => 401,
            Self::InsufficientQuota => 402,
            Self::ModelAccessDenied | Self::PermissionDenied => 403,
            Self::TaskNotFound | Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::IdempotencyConflict | Self::TooManyKeys | Self::CodeUsedUp => 409,
            Self::CodeExpired => 410,
            Self::PayloadTooLarge => 413,
            Self::RangeNotSatisfiable => 416,
            Self::RateLimitExceeded => 429,
            Self::InternalError => 500,
            Self::UpstreamError => 502,
            Self::ServiceUnavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidTaskId => "invalid_task_id",
            Self::ImageProcessingError => "image_processing_error",
            Self::Unauthorized => "unauthorized",
            Self::InsufficientQuota => "insufficient_quota",
            Self::ModelAccessDenied => "model_access_denied",
            Self::PermissionDenied => "permission_denied",
            Self::TaskNotFound => "task_not_found",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::TooManyKeys => "too_many_keys",
            Self::CodeUsedUp => "code_used_up",
            Self::CodeExpired => "code_expired",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::InternalError => "internal_error",
            Self::UpstreamError => "upstream_error",
            Self::ServiceUnavailable => "service_unavailable",
        }
    }

    pub fn error_type(self) -> &'static str {
        match self {
            Self::Unauthorized => "authentication_error",
            Self::InsufficientQuota => "insufficient_quota",
            Self::RateLimitExceeded => "rate_limit_error",
            Self::InternalError => "api_error",
            Self::UpstreamError | Self::ServiceUnavailable => "upstream_error",
            _ => "invalid_request_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, when one is at fault.
    pub param: Option<String>,
    /// The request's `x-request-id` (also in the response header and the
    /// server's log lines), to quote when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>, param: Option<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
                kind: code.error_type().to_owned(),
                param,
                request_id: None,
            },
        }
    }
}

/// A rejected request field: `param` is its path (`model_params.multi_prompt[1].duration`),
/// `message` says what is wrong. Answered as `400 invalid_request` with `param` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub param: String,
    pub message: String,
    /// `invalid_request`, or `image_processing_error` for an image that cannot be read.
    pub code: ErrorCode,
}

impl FieldError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self { param: param.into(), message: message.into(), code: ErrorCode::InvalidRequest }
    }

    /// The same error with another code.
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

impl std::error::Error for FieldError {}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        Self::InvalidRequest,
        Self::InvalidTaskId,
        Self::ImageProcessingError,
        Self::Unauthorized,
        Self::InsufficientQuota,
        Self::ModelAccessDenied,
        Self::PermissionDenied,
        Self::TaskNotFound,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::IdempotencyConflict,
        Self::TooManyKeys,
        Self::CodeUsedUp,
        Self::CodeExpired,
        Self::PayloadTooLarge,
        Self::RangeNotSatisfiable,
        Self::RateLimitExceeded,
        Self::InternalError,
        Self::UpstreamError,
        Self::ServiceUnavailable,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_spec_table() {
        let b = ErrorBody::new(ErrorCode::InsufficientQuota, "no", None);
        assert_eq!(
            serde_json::to_string(&b).ok().as_deref(),
            Some(r#"{"error":{"code":"insufficient_quota","message":"no","type":"insufficient_quota","param":null}}"#)
        );
        assert_eq!(ErrorCode::TaskNotFound.status(), 404);
        assert_eq!(ErrorCode::UpstreamError.error_type(), "upstream_error");
    }

    #[test]
    fn every_code_has_the_spec_status_and_type() {
        use ErrorCode::*;
        let table = [
            (InvalidRequest, 400, "invalid_request", "invalid_request_error"),
            (InvalidTaskId, 400, "invalid_task_id", "invalid_request_error"),
            (ImageProcessingError, 400, "image_processing_error", "invalid_request_error"),
            (Unauthorized, 401, "unauthorized", "authentication_error"),
            (InsufficientQuota, 402, "insufficient_quota", "insufficient_quota"),
            (ModelAccessDenied, 403, "model_access_denied", "invalid_request_error"),
            (PermissionDenied, 403, "permission_denied", "invalid_request_error"),
            (TaskNotFound, 404, "task_not_found", "invalid_request_error"),
            (NotFound, 404, "not_found", "invalid_request_error"),
            (MethodNotAllowed, 405, "method_not_allowed", "invalid_request_error"),
            (IdempotencyConflict, 409, "idempotency_conflict", "invalid_request_error"),
            (TooManyKeys, 409, "too_many_keys", "invalid_request_error"),
            (CodeUsedUp, 409, "code_used_up", "invalid_request_error"),
            (CodeExpired, 410, "code_expired", "invalid_request_error"),
            (PayloadTooLarge, 413, "payload_too_large", "invalid_request_error"),
            (RangeNotSatisfiable, 416, "range_not_satisfiable", "invalid_request_error"),
            (RateLimitExceeded, 429, "rate_limit_exceeded", "rate_limit_error"),
            (InternalError, 500, "internal_error", "api_error"),
            (UpstreamError, 502, "upstream_error", "upstream_error"),
            (ServiceUnavailable, 503, "service_unavailable", "upstream_error"),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (code, status, s, kind) in table {
            assert_eq!((code.status(), code.as_str(), code.error_type()), (status, s, kind), "{code:?}");
            assert_eq!(ErrorCode::parse(s), Some(code));
        }
    }

    #[test]
    fn field_errors_display_their_path() {
        let e = FieldError::new("model_params.multi_prompt[1].duration", "bad");
        assert_eq!(e.to_string(), "model_params.multi_prompt[1].duration: bad");
    }
}
