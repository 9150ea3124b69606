//! `/v1/plugins`: upload, list, look at and delete plugin versions — the same handlers on
//! `sluice serve` (the local plugin store) and `sluice worker` (the group's control topic),
//! generic over a `PluginHost`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use sluice_pipeline::Pipelines;
use sluice_pipeline::plugins::PluginVersion;

use crate::deployments::Reach;
use crate::error::ErrorBody;
use crate::{ApiError, blocking};

/// Where plugin versions are kept.
#[async_trait::async_trait]
pub trait PluginHost: Send + Sync + 'static {
    /// The largest component accepted.
    fn max_plugin_bytes(&self) -> usize;
    /// Stores the next version (or finds the stored one with these bytes) and moves the
    /// deployments that follow `latest`.
    async fn upload(self: Arc<Self>, name: String, bytes: Bytes) -> Result<Uploaded, ApiError>;
    fn plugins(&self) -> Vec<(String, Vec<PluginVersion>)>;
    /// A plugin's versions and the deployments that use it.
    fn plugin(&self, name: &str) -> Result<(Vec<PluginVersion>, Vec<String>), ApiError>;
    async fn delete_plugin(self: Arc<Self>, name: String) -> Result<(), ApiError>;
}

/// What an upload did.
#[derive(Debug)]
pub struct Uploaded {
    pub version: PluginVersion,
    /// A new version (false: these bytes are a stored version).
    pub created: bool,
    pub followers: Vec<Follower>,
}

/// `PUT /v1/plugins/{name}`: the version the upload made or found.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedPlugin {
    pub name: String,
    pub version: u32,
    /// `sha256:<hex of the uploaded bytes>`.
    pub digest: String,
    pub size_bytes: usize,
    /// False when the bytes equal a stored version's: that version, nothing new (200).
    pub created: bool,
    /// The deployments that follow `"latest"` of this plugin, and whether each moved to
    /// the new version.
    pub deployments: Vec<Follower>,
}

/// A deployment that follows `"latest"` of an uploaded plugin.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Follower {
    pub transform: String,
    /// `switched` (runs the new version now), `switching` (moves to it between
    /// transactions: workers) or `kept` (the new version did not start; see `error`).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One plugin in `GET /v1/plugins`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginSummary {
    pub name: String,
    /// How many versions are stored.
    pub versions: usize,
    pub latest: Option<PluginVersion>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginSummary>,
}

/// `GET /v1/plugins/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDetail {
    pub name: String,
    pub versions: Vec<PluginVersion>,
    /// Transforms that use it (it cannot be deleted while there are any).
    pub used_by: Vec<String>,
}

#[async_trait::async_trait]
impl PluginHost for Pipelines {
    fn max_plugin_bytes(&self) -> usize {
        self.plugins.runtime().max_plugin_bytes()
    }

    async fn upload(self: Arc<Self>, name: String, bytes: Bytes) -> Result<Uploaded, ApiError> {
        let p = self.clone();
        let n = name.clone();
        let (version, created) = blocking(move || p.plugins.upload(&n, &bytes)).await?;
        let followers = if created {
            let v = version.version;
            // Deployments that follow `latest` swap now; a failure shows in their status.
            tokio::task::spawn_blocking(move || self.plugin_uploaded(&name, v))
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(transform, r)| Follower {
                    transform,
                    outcome: if r.is_ok() { "switched" } else { "kept" },
                    error: r.err(),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Uploaded {
            version,
            created,
            followers,
        })
    }

    fn plugins(&self) -> Vec<(String, Vec<PluginVersion>)> {
        self.plugins.list().into_iter().collect()
    }

    fn plugin(&self, name: &str) -> Result<(Vec<PluginVersion>, Vec<String>), ApiError> {
        Ok((self.plugins.versions(name)?, self.users_of(name)))
    }

    async fn delete_plugin(self: Arc<Self>, name: String) -> Result<(), ApiError> {
        blocking(move || Pipelines::delete_plugin(&self, &name)).await
    }
}

/// The plugin routes, with the upload limit of `host`.
pub fn routes<S: Reach<P>, P: PluginHost>(host: &P) -> axum::Router<S> {
    use axum::routing::{get, put};
    axum::Router::new()
        .route("/v1/plugins", get(list_plugins::<S, P>))
        .route(
            "/v1/plugins/{name}",
            put(upload_plugin::<S, P>)
                .layer(DefaultBodyLimit::max(host.max_plugin_bytes() + 1))
                .get(get_plugin::<S, P>)
                .delete(delete_plugin::<S, P>),
        )
}

#[utoipa::path(
    put,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    request_body(content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 201, description = "the new version", body = UploadedPlugin),
        (status = 200, description = "the bytes are a stored version: that version", body = UploadedPlugin),
        (status = 400, description = "not a valid component of the transform world", body = ErrorBody),
        (status = 413, description = "over the upload limit", body = ErrorBody)
    )
)]
pub async fn upload_plugin<S: Reach<P>, P: PluginHost>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UploadedPlugin>), ApiError> {
    let name = name?.0;
    let host = app.reach();
    let body = plugin_body(body, host.max_plugin_bytes())?;
    let up = host.upload(name.clone(), body).await?;
    let code = if up.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(UploadedPlugin {
            name,
            version: up.version.version,
            digest: up.version.digest,
            size_bytes: up.version.size_bytes,
            created: up.created,
            deployments: up.followers,
        }),
    ))
}

/// An uploaded component's bytes; over the plugin limit is `plugin_too_large` (413).
fn plugin_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "plugin_too_large",
                format!("the component is larger than the {limit}-byte plugin limit"),
            )
        } else {
            r.into()
        }
    })
}

#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "plugins and their latest versions", body = PluginList)
    )
)]
pub async fn list_plugins<S: Reach<P>, P: PluginHost>(State(app): State<S>) -> Json<PluginList> {
    let plugins = app
        .reach()
        .plugins()
        .into_iter()
        .map(|(name, versions)| PluginSummary {
            name,
            versions: versions.len(),
            latest: versions.last().cloned(),
        })
        .collect();
    Json(PluginList { plugins })
}

#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "versions and users", body = PluginDetail),
        (status = 400, description = "invalid request (body, path or query)", body = ErrorBody),
        (status = 404, description = "unknown plugin", body = ErrorBody)
    )
)]
pub async fn get_plugin<S: Reach<P>, P: PluginHost>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PluginDetail>, ApiError> {
    let name = name?.0;
    let (versions, used_by) = app.reach().plugin(&name)?;
    Ok(Json(PluginDetail {
        name,
        versions,
        used_by,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid request (body, path or query)", body = ErrorBody),
        (status = 404, description = "unknown plugin", body = ErrorBody),
        (status = 409, description = "in use by a transform", body = ErrorBody)
    )
)]
pub async fn delete_plugin<S: Reach<P>, P: PluginHost>(
    State(app): State<S>,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    app.reach().delete_plugin(name?.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
