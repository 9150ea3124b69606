//! Connector endpoints: deploy, list, status, pause/resume, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, State, parse_json};
use sluice_connect::{ConnectorError, ConnectorSpec};

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

#[utoipa::path(
    put,
    path = "/v1/connectors/{name}",
    tag = "connectors",
    params(("name" = String, Path)),
    request_body = super::openapi::ConnectorSpecDoc,
    responses(
        (status = 201, description = "created", body = super::openapi::StatusDoc), (status = 200, description = "replaced", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody)
    )
)]
pub async fn put(
    state: State,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = name?.0;
    let spec: ConnectorSpec = parse_json(&body?)?;
    let created = state.connectors.deploy(&name, spec).await?;
    let c = state.connectors.get(&name)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(state.connectors.status(&c))))
}

#[utoipa::path(
    get,
    path = "/v1/connectors",
    tag = "connectors",
    responses(
        (status = 200, description = "status of every connector", body = super::openapi::StatusDoc)
    )
)]
pub async fn list(state: State) -> Json<Value> {
    let all: Vec<Value> = state
        .connectors
        .list()
        .iter()
        .map(|c| state.connectors.status(c))
        .collect();
    Json(json!({ "connectors": all }))
}

#[utoipa::path(
    get,
    path = "/v1/connectors/{name}",
    tag = "connectors",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "status (secrets redacted)", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown connector", body = super::openapi::ErrorBody)
    )
)]
pub async fn get(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let c = state.connectors.get(&name?.0)?;
    Ok(Json(state.connectors.status(&c)))
}

#[utoipa::path(
    delete,
    path = "/v1/connectors/{name}",
    tag = "connectors",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "deleted", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown connector", body = super::openapi::ErrorBody)
    )
)]
pub async fn delete(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = name?.0;
    state.connectors.delete(&name).await?;
    Ok(Json(json!({ "deleted": name })))
}

async fn set_paused(state: State, name: String, paused: bool) -> Result<Json<Value>, ApiError> {
    state.connectors.set_paused(&name, paused).await?;
    let c = state.connectors.get(&name)?;
    Ok(Json(state.connectors.status(&c)))
}

#[utoipa::path(
    post,
    path = "/v1/connectors/{name}/pause",
    tag = "connectors",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "paused", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown connector", body = super::openapi::ErrorBody)
    )
)]
pub async fn pause(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, name?.0, true).await
}

#[utoipa::path(
    post,
    path = "/v1/connectors/{name}/resume",
    tag = "connectors",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "resumed", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown connector", body = super::openapi::ErrorBody)
    )
)]
pub async fn resume(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, name?.0, false).await
}
