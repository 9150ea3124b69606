//! The one HTTP error type: a status, a stable code and a message, as JSON.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use sluice_connect::ConnectorError;
use sluice_log::LogError;
use sluice_pipeline::plugins::PluginError;
use sluice_pipeline::{DeployError, PipelineError};
use sluice_runtime::RuntimeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u32>,
    /// What a request that failed part way did do (e.g. the records of a produce that were
    /// written before the disk filled).
    pub details: Option<Box<serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            details: None,
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

/// Every error: a stable code and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// e.g. `unknown_topic`, `invalid_json`, `forbidden`.
    pub code: &'static str,
    pub message: String,
    /// What a request that failed part way did do.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Box<serde_json::Value>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
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
            LogError::Owned { .. } => Self::new(StatusCode::CONFLICT, "topic_in_use", msg),
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
            LogError::StorageFull { .. } => {
                let mut e = Self::new(StatusCode::INSUFFICIENT_STORAGE, "storage_full", msg);
                e.retry_after = Some(5);
                e
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

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        let msg = e.to_string();
        match e {
            PluginError::Unknown(_) | PluginError::UnknownVersion { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_plugin", msg)
            }
            PluginError::BadName(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", msg),
            PluginError::Runtime(RuntimeError::TooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "plugin_too_large", msg)
            }
            PluginError::Runtime(RuntimeError::Init(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "plugin_init_failed", msg)
            }
            PluginError::Runtime(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_plugin", msg)
            }
            PluginError::Io { .. } => ApiError::internal(msg),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        let msg = e.to_string();
        match e {
            PipelineError::BadName(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", msg)
            }
            PipelineError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_transform", msg)
            }
            PipelineError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_transform", msg)
            }
            PipelineError::UnknownInput(_) | PipelineError::UnknownOutput(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_topic", msg)
            }
            PipelineError::PluginInUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "plugin_in_use", msg)
            }
            PipelineError::Deploy(d) => d.into(),
            PipelineError::Plugin(p) => p.into(),
            PipelineError::Log(l) => l.into(),
            PipelineError::Runtime(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "plugin_failed", msg)
            }
            PipelineError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        let msg = e.to_string();
        let (status, code) = match e {
            DeployError::BadName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            DeployError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_transform"),
            DeployError::UnknownInput(_) | DeployError::UnknownOutput(_) => {
                (StatusCode::BAD_REQUEST, "unknown_topic")
            }
            DeployError::UnknownPlugin(_) | DeployError::UnknownVersion { .. } => {
                (StatusCode::NOT_FOUND, "unknown_plugin")
            }
            DeployError::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported_here"),
        };
        ApiError::new(status, code, msg)
    }
}

impl From<sluice_worker::WorkerError> for ApiError {
    fn from(e: sluice_worker::WorkerError) -> Self {
        match e {
            sluice_worker::WorkerError::Request(e) => e.into(),
            sluice_worker::WorkerError::Cluster(e) => {
                tracing::warn!(error = %e, "control-plane request failed");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cluster_unavailable",
                    e.to_string(),
                );
                err.retry_after = Some(1);
                err
            }
        }
    }
}

impl From<ConnectorError> for ApiError {
    fn from(e: ConnectorError) -> Self {
        let msg = e.to_string();
        match e {
            ConnectorError::BadName(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", msg)
            }
            ConnectorError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_connector", msg)
            }
            ConnectorError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_connector", msg)
            }
            ConnectorError::UnknownTopic(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_topic", msg)
            }
            ConnectorError::Log(l) => l.into(),
            ConnectorError::Io(_) => ApiError::internal(msg),
        }
    }
}
