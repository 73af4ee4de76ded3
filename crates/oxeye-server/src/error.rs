//! Errors of the Prometheus-style JSON APIs and their one mapping to status codes and bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oxeye_model::storage::{ErrorKind, StorageError};

/// An error answered in the Prometheus API envelope:
/// `{"status":"error","errorType":"bad_data","error":"..."}`.
///
/// Status codes follow Prometheus' `web/api/v1`: `bad_data` 400, `execution` 422, `timeout` and
/// `canceled` and `unavailable` 503, `not_found` 404, `internal` 500
/// (<https://prometheus.io/docs/prometheus/latest/querying/api/#format-overview>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The Prometheus `errorType`.
    pub error_type: &'static str,
    /// The message; names the parameter or position at fault.
    pub message: String,
}

impl ApiError {
    /// A `bad_data` (400) error.
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError { error_type: "bad_data", message: message.into() }
    }

    /// An `unavailable` (503) error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError { error_type: "unavailable", message: message.into() }
    }

    /// An `internal` (500) error.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { error_type: "internal", message: message.into() }
    }

    /// An `execution` (422) error.
    pub fn execution(message: impl Into<String>) -> Self {
        ApiError { error_type: "execution", message: message.into() }
    }

    /// The error for a parameter that does not parse, worded as Prometheus: `invalid parameter "time": ...`.
    pub fn invalid_parameter(name: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {reason}"))
    }

    /// The HTTP status of this error type.
    pub fn status(&self) -> StatusCode {
        match self.error_type {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" | "canceled" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "not_found" => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        let error_type = match error.kind() {
            ErrorKind::BadData | ErrorKind::Invalid => "bad_data",
            ErrorKind::Limit => "execution",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        };
        ApiError { error_type, message: error.to_string() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": "error",
            "errorType": self.error_type,
            "error": self.message,
        });
        (self.status(), Json(body)).into_response()
    }
}

/// The status code for an error kind on the write paths (remote_write, OTLP), where bodies are plain text
/// or `google.rpc.Status`: 400 bad data, 422 invalid, 429 limits, 503 unavailable, 500 otherwise.
pub fn write_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadData => StatusCode::BAD_REQUEST,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Limit => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
