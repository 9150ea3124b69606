//! Named deployments — transforms and connectors — share one set of handlers: `PUT` to
//! deploy (201 created, 200 updated), list, get, `DELETE` (204), pause and resume. Each kind
//! says how it does these (`Deployments`); the handlers are generic over the kind and over
//! the app that reaches it (`Reach`), so `sluice serve` and `sluice worker` route the same
//! code, and the OpenAPI entries are described once per kind.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use sluice_connect::{ConnectorSpec, ConnectorStatus, Connectors};
use sluice_pipeline::{Pipelines, TransformSpec, TransformStatus};

use crate::error::ErrorBody;
use crate::{ApiError, AppState, blocking, parse_json, parse_spec};

/// An app state (what axum hands every handler) that reaches a `D`.
pub trait Reach<D: ?Sized>: Clone + Send + Sync + 'static {
    fn reach(&self) -> Arc<D>;
    /// Cancelled at shutdown, so streams end.
    fn shutdown(&self) -> CancellationToken;
}

impl Reach<Pipelines> for Arc<AppState> {
    fn reach(&self) -> Arc<Pipelines> {
        self.pipelines.clone()
    }

    fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

impl Reach<Connectors> for Arc<AppState> {
    fn reach(&self) -> Arc<Connectors> {
        self.connectors.clone()
    }

    fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// A kind of named deployment.
#[async_trait::async_trait]
pub trait Deployments: Send + Sync + 'static {
    /// The status document of one deployment.
    type Status: Serialize + Send;
    /// `{"<kind>s": [status, …]}`.
    type List: Serialize + Send;

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
        let spec: TransformSpec = parse_spec(&spec)?;
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

pub async fn put<S: Reach<D>, D: Deployments>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<D::Status>), ApiError> {
    let name = name?.0;
    let d = app.reach();
    let created = d.clone().deploy(name.clone(), body?).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(d.status(&name)?)))
}

pub async fn list<S: Reach<D>, D: Deployments>(State(app): State<S>) -> Json<D::List> {
    Json(app.reach().list())
}

pub async fn get<S: Reach<D>, D: Deployments>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<D::Status>, ApiError> {
    Ok(Json(app.reach().status(&name?.0)?))
}

pub async fn delete<S: Reach<D>, D: Deployments>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    app.reach().delete(name?.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused<S: Reach<D>, D: Deployments>(
    app: S,
    name: Result<Path<String>, PathRejection>,
    paused: bool,
) -> Result<Json<D::Status>, ApiError> {
    let name = name?.0;
    let d = app.reach();
    d.clone().set_paused(name.clone(), paused).await?;
    Ok(Json(d.status(&name)?))
}

pub async fn pause<S: Reach<D>, D: Deployments>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<D::Status>, ApiError> {
    set_paused::<S, D>(app, name, true).await
}

pub async fn resume<S: Reach<D>, D: Deployments>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<D::Status>, ApiError> {
    set_paused::<S, D>(app, name, false).await
}

/// The routes of one kind under `base` (`/v1/transforms`): list, put/get/delete by name,
/// pause and resume.
pub fn routes<S: Reach<D>, D: Deployments>(base: &str) -> axum::Router<S> {
    use axum::routing::{get as on_get, post as on_post};
    axum::Router::new()
        .route(base, on_get(list::<S, D>))
        .route(
            &format!("{base}/{{name}}"),
            on_get(get::<S, D>).put(put::<S, D>).delete(delete::<S, D>),
        )
        .route(&format!("{base}/{{name}}/pause"), on_post(pause::<S, D>))
        .route(&format!("{base}/{{name}}/resume"), on_post(resume::<S, D>))
}

/// The OpenAPI entries of one kind's routes (the handlers above, described once per kind;
/// these functions only carry the descriptions).
macro_rules! described {
    ($kind:ident, $tag:literal, $spec:ty, $status:ty, $list:ty,
     $all:literal, $one:literal, $pause:literal, $resume:literal) => {
        #[allow(dead_code)]
        pub mod $kind {
            use super::*;

            #[utoipa::path(put, path = $one, tag = $tag, params(("name" = String, Path)),
                request_body = $spec,
                responses(
                    (status = 201, description = "deployed", body = $status),
                    (status = 200, description = "updated", body = $status),
                    (status = 400, description = "invalid request or spec", body = ErrorBody),
                    (status = 404, description = "unknown plugin or version", body = ErrorBody)))]
            pub fn put() {}

            #[utoipa::path(get, path = $all, tag = $tag,
                responses((status = 200, description = "every deployment's status", body = $list)))]
            pub fn list() {}

            #[utoipa::path(get, path = $one, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 200, description = "status", body = $status),
                    (status = 400, description = "invalid request (path)", body = ErrorBody),
                    (status = 404, description = "unknown", body = ErrorBody)))]
            pub fn get() {}

            #[utoipa::path(delete, path = $one, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 204, description = "deleted"),
                    (status = 400, description = "invalid request (path)", body = ErrorBody),
                    (status = 404, description = "unknown", body = ErrorBody)))]
            pub fn delete() {}

            #[utoipa::path(post, path = $pause, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 200, description = "paused", body = $status),
                    (status = 400, description = "invalid request (path)", body = ErrorBody),
                    (status = 404, description = "unknown", body = ErrorBody)))]
            pub fn pause() {}

            #[utoipa::path(post, path = $resume, tag = $tag, params(("name" = String, Path)),
                responses(
                    (status = 200, description = "resumed", body = $status),
                    (status = 400, description = "invalid request (path)", body = ErrorBody),
                    (status = 404, description = "unknown", body = ErrorBody)))]
            pub fn resume() {}
        }
    };
}

described!(
    transforms,
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
    "connectors",
    ConnectorSpec,
    ConnectorStatus,
    ConnectorList,
    "/v1/connectors",
    "/v1/connectors/{name}",
    "/v1/connectors/{name}/pause",
    "/v1/connectors/{name}/resume"
);
