//! The one HTTP error type: a status, a stable code and a message, as JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use sluice_log::LogError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(error = %message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        let msg = e.to_string();
        match e {
            LogError::InvalidTopicName { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_topic_name", msg)
            }
            LogError::TopicExists(_) => Self::new(StatusCode::CONFLICT, "topic_exists", msg),
            LogError::UnknownTopic(_) | LogError::TopicDeleted(_) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_topic", msg)
            }
            LogError::UnknownPartition { .. } => {
                Self::new(StatusCode::NOT_FOUND, "unknown_partition", msg)
            }
            LogError::OffsetOutOfRange { .. } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "offset_out_of_range",
                msg,
            ),
            LogError::InvalidBatch(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_batch", msg),
            LogError::InvalidConfig(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_config", msg),
            LogError::Corrupt { .. } => {
                tracing::error!(error = %msg, "corrupt data requested");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt_data", msg)
            }
            LogError::Io { .. } => {
                Self::internal(format!("{msg}: {:?}", std::error::Error::source(&e)))
            }
        }
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is larger than the configured limit",
            )
        } else {
            Self::bad_request(r.body_text())
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_query", r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_path", r.body_text())
    }
}
