//! Named deployments — transforms and connectors — share one set of handlers: `PUT` to
//! deploy (201 created, 200 updated), list, get, `DELETE` (204), pause and resume. Each kind
//! says how it does these (`Deployments`); the handlers and their OpenAPI entries are the
//! same code for both.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use serde::Serialize;

use sluice_connect::{ConnectorSpec, ConnectorStatus, Connectors};
use sluice_pipeline::{Pipelines, TransformSpec, TransformStatus};

use super::{ApiError, AppState, State, blocking, parse_json};

/// A kind of named deployment.
#[async_trait::async_trait]
pub trait Deployments: Send + Sync + 'static {
    /// The status document of one deployment.
    type Status: Serialize + Send;
    /// `{"<kind>s": [status, …]}`.
    type List: Serialize + Send;

    fn of(state: &AppState) -> Arc<Self>;
    fn list(&self) -> Self::List;
    fn status(&self, name: &str) -> Result<Self::Status, ApiError>;
    /// Creates (true) or updates (false) a deployment from a JSON spec.
    async fn deploy(self: Arc<Self>, name: String, spec: Bytes) -> Result<bool, ApiError>;
    async fn delete(self: Arc<Self>, name: String) -> Result<(), ApiError>;
    async fn set_paused(self: Arc<Self>, name: String, paused: bool) -> Result<(), ApiError>;
}

/// `GET /v1/transforms`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TransformList {
    pub transforms: Vec<TransformStatus>,
}

/// `GET /v1/connectors`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectorList {
    pub connectors: Vec<ConnectorStatus>,
}

#[async_trait::async_trait]
impl Deployments for Pipelines {
    type Status = TransformStatus;
    type List = TransformList;

    fn of(state: &AppState) -> Arc<Self> {
        state.pipelines.clone()
    }

    fn list(&self) -> TransformList {
        TransformList {
            transforms: Pipelines::list(self)
                .iter()
                .map(|t| Pipelines::status(self, t))
                .collect(),
        }
    }

    fn status(&self, name: &str) -> Result<TransformStatus, ApiError> {
        let t = self.get(name)?;
        Ok(Pipelines::status(self, &t))
    }

    async fn deploy(self: Arc<Self>, name: String, spec: Bytes) -> Result<bool, ApiError> {
        let spec: TransformSpec = parse_json(&spec)?;
        blocking(move || Pipelines::deploy(&self, &name, spec)).await
    }

    async fn delete(self: Arc<Self>, name: String) -> Result<(), ApiError> {
        blocking(move || Pipelines::delete(&self, &name)).await
    }

    async fn set_paused(self: Arc<Self>, name: String, paused: bool) -> Result<(), ApiError> {
        // Persisting the flag syncs a file: off the reactor.
        blocking(move || Pipelines::set_paused(&self, &name, paused)).await
    }
}

#[async_trait::async_trait]
impl Deployments for Connectors {
    type Status = ConnectorStatus;
    type List = ConnectorList;

    fn of(state: &AppState) -> Arc<Self> {
        state.connectors.clone()
    }

    fn list(&self) -> ConnectorList {
        ConnectorList {
            connectors: Connectors::list(self)
                .iter()
                .map(|c| Connectors::status(self, c))
                .collect(),
        }
    }

    fn status(&self, name: &str) -> Result<ConnectorStatus, ApiError> {
        let c = self.get(name)?;
        Ok(Connectors::status(self, &c))
    }

    async fn deploy(self: Arc<Self>, name: String, spec: Bytes) -> Result<bool, ApiError> {
        let spec: ConnectorSpec = parse_json(&spec)?;
        Ok(Connectors::deploy(&self, &name, spec).await?)
    }

    async fn delete(self: Arc<Self>, name: String) -> Result<(), ApiError> {
        Ok(Connectors::delete(&self, &name).await?)
    }

    async fn set_paused(self: Arc<Self>, name: String, paused: bool) -> Result<(), ApiError> {
        Ok(Connectors::set_paused(&self, &name, paused).await?)
    }
}

pub async fn put<D: Deployments>(
    state: State,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<D::Status>), ApiError> {
    let name = name?.0;
    let d = D::of(&state);
    let created = d.clone().deploy(name.clone(), body?).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(d.status(&name)?)))
}

pub async fn list<D: Deployments>(state: State) -> Json<D::List> {
    Json(D::of(&state).list())
}

pub async fn get<D: Deployments>(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<D::Status>, ApiError> {
    Ok(Json(D::of(&state).status(&name?.0)?))
}

pub async fn delete<D: Deployments>(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    D::of(&state).delete(name?.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused<D: Deployments>(
    state: State,
    name: Result<Path<String>, PathRejection>,
    paused: bool,
) -> Result<Json<D::Status>, ApiError> {
    let name = name?.0;
    let d = D::of(&state);
    d.clone().set_paused(name.clone(), paused).await?;
    Ok(Json(d.status(&name)?))
}

pub async fn pause<D: Deployments>(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<D::Status>, ApiError> {
    set_paused::<D>(state, name, true).await
}

pub async fn resume<D: Deployments>(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<D::Status>, ApiError> {
    set_paused::<D>(state, name, false).await
}

/// The OpenAPI entries of one kind's routes (the handlers above, described once per kind).
macro_rules! described {
    ($kind:ident, $D:ty, $tag:literal, $spec:ty, $status:ty, $list:ty,
     $all:literal, $one:literal, $pause:literal, $resume:literal) => {
        pub mod $kind {
            use super::*;

            #[utoipa::path(put, path = $one, tag = $tag, params(("name" = String, Path)),
                request_body = $spec,
                responses(
                    (status = 201, description = "deployed", body = $status),
                    (status = 200, description = "updated", body = $status),
                    (status = 400, description = "invalid request or spec", body = crate::openapi::ErrorBody),
                    (status = 404, description = "unknown plugin or version", body = crate::openapi::ErrorBody)))]
            pub async fn put(
                state: State,
                name: Result<Path<String>, PathRejection>,
                body: Result<Bytes, BytesRejection>,
            ) -> Result<(StatusCode, Json<$status>), ApiError> {
                super::put::<$D>(state, name, body).await
            }

            #[utoipa::path(get, path = $all, tag = $tag,
                responses((status = 200, description = "every deployment's status", body = $list)))]
            pub async fn list(state: State) -> Json<$list> {
                super::list::<$D>(state).await
            }

            #[utoipa::path(get, path = $one, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 200, description = "status", body = $status),
                    (status = 400, description = "invalid request (path)", body = crate::openapi::ErrorBody),
                    (status = 404, description = "unknown", body = crate::openapi::ErrorBody)))]
            pub async fn get(
                state: State,
                name: Result<Path<String>, PathRejection>,
            ) -> Result<Json<$status>, ApiError> {
                super::get::<$D>(state, name).await
            }

            #[utoipa::path(delete, path = $one, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 204, description = "deleted"),
                    (status = 400, description = "invalid request (path)", body = crate::openapi::ErrorBody),
                    (status = 404, description = "unknown", body = crate::openapi::ErrorBody)))]
            pub async fn delete(
                state: State,
                name: Result<Path<String>, PathRejection>,
            ) -> Result<StatusCode, ApiError> {
                super::delete::<$D>(state, name).await
            }

            #[utoipa::path(post, path = $pause, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 200, description = "paused", body = $status),
                    (status = 400, description = "invalid request (path)", body = crate::openapi::ErrorBody),
                    (status = 404, description = "unknown", body = crate::openapi::ErrorBody)))]
            pub async fn pause(
                state: State,
                name: Result<Path<String>, PathRejection>,
            ) -> Result<Json<$status>, ApiError> {
                super::pause::<$D>(state, name).await
            }

            #[utoipa::path(post, path = $resume, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 200, description = "resumed", body = $status),
                    (status = 400, description = "invalid request (path)", body = crate::openapi::ErrorBody),
                    (status = 404, description = "unknown", body = crate::openapi::ErrorBody)))]
            pub async fn resume(
                state: State,
                name: Result<Path<String>, PathRejection>,
            ) -> Result<Json<$status>, ApiError> {
                super::resume::<$D>(state, name).await
            }
        }
    };
}

described!(
    transforms,
    Pipelines,
    "transforms",
    TransformSpec,
    TransformStatus,
    TransformList,
    "/v1/transforms",
    "/v1/transforms/{name}",
    "/v1/transforms/{name}/pause",
    "/v1/transforms/{name}/resume"
);

described!(
    connectors,
    Connectors,
    "connectors",
    ConnectorSpec,
    ConnectorStatus,
    ConnectorList,
    "/v1/connectors",
    "/v1/connectors/{name}",
    "/v1/connectors/{name}/pause",
    "/v1/connectors/{name}/resume"
);
