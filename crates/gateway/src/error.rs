//! The one error type of the service core. It carries a stable wire code, a message
//! fit for the client, the offending field, and (for 5xx) the internal cause, which
//! is logged but never shown. `http::error` turns it into the SPEC 1.4 JSON body.

use vidgate_api::error::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// Seconds after which a refused request may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Internal cause of a server-side error; logged, never sent.
    pub source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), param: None, retry_after: None, source: None }
    }

    /// Tells the client when to try again (`Retry-After`, at least one second).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// A 400 naming the field at fault.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message).with_param(param)
    }

    pub fn task_not_found() -> Self {
        Self::new(ErrorCode::TaskNotFound, "No task with this id exists for this API key.").with_param("task_id")
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "Missing or invalid API key. Send it as 'Authorization: Bearer <key>'.")
    }

    /// A server-side failure: the client sees a generic message only.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            code: ErrorCode::InternalError,
            message: "The server failed to handle the request. Try again later.".to_owned(),
            param: None,
            retry_after: None,
            source: Some(cause.into()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(e)
    }
}
