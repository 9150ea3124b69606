//! `/v1/transforms/{name}/shadow`: a candidate version run next to the live one on the
//! same input, compared record by record, writing nothing; promoted or dropped.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use sluice_pipeline::TransformStatus;
use sluice_pipeline::shadow::ShadowView;
use utoipa::ToSchema;

use crate::{ApiError, State, blocking, parse_json};

/// A plugin version: a number or `"latest"`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ShadowVersion {
    Number(u32),
    Named(String),
}

/// `PUT /v1/transforms/{name}/shadow`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// The candidate's version of the deployment's plugin (default `"latest"`).
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub version: Option<ShadowVersion>,
    /// The candidate's plugin config (default: the deployment's).
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
}

fn none(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_shadow",
        format!("transform {name} has no shadow; start one with PUT /v1/transforms/{name}/shadow"),
    )
}

#[utoipa::path(
    put,
    path = "/v1/transforms/{name}/shadow",
    tag = "transforms",
    params(("name" = String, Path, description = "deployment name")),
    request_body = ShadowRequest,
    responses(
        (status = 201, description = "the shadow runs from the live position on", body = ShadowView),
        (status = 400, description = "invalid request, or the candidate cannot start", body = crate::error::ErrorBody),
        (status = 404, description = "unknown transform or version", body = crate::error::ErrorBody),
        (status = 409, description = "the deployment cannot be shadowed (stateful or schema-aware)", body = crate::error::ErrorBody)
    )
)]
pub async fn start(
    state: State,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ShadowView>), ApiError> {
    let name = name?.0;
    let req: ShadowRequest = parse_json(&body?)?;
    let version = match req.version {
        None => None,
        Some(ShadowVersion::Number(n)) => Some(n),
        Some(ShadowVersion::Named(s)) if s == "latest" => None,
        Some(ShadowVersion::Named(s)) => {
            return Err(ApiError::bad_request(format!(
                "`version` must be a number or \"latest\", not {s:?}"
            )));
        }
    };
    let p = state.pipelines.clone();
    let view = blocking(move || {
        p.shadow_start(&name, version, req.config)?;
        p.shadow_view(&name)?.ok_or_else(|| none(&name))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    get,
    path = "/v1/transforms/{name}/shadow",
    tag = "transforms",
    params(("name" = String, Path, description = "deployment name")),
    responses(
        (status = 200, description = "counts per class, examples with diffs, both versions' costs, the candidate's errors", body = ShadowView),
        (status = 404, description = "unknown transform, or it has no shadow", body = crate::error::ErrorBody)
    )
)]
pub async fn get(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ShadowView>, ApiError> {
    let name = name?.0;
    let p = state.pipelines.clone();
    Ok(Json(
        blocking(move || p.shadow_view(&name)?.ok_or_else(|| none(&name))).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/v1/transforms/{name}/shadow",
    tag = "transforms",
    params(("name" = String, Path, description = "deployment name")),
    responses(
        (status = 204, description = "the shadow stopped; the live version never changed"),
        (status = 404, description = "unknown transform, or it has no shadow", body = crate::error::ErrorBody)
    )
)]
pub async fn delete(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = name?.0;
    let p = state.pipelines.clone();
    blocking(move || {
        if p.shadow_stop(&name)? {
            Ok(())
        } else {
            Err(none(&name))
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/transforms/{name}/shadow/promote",
    tag = "transforms",
    params(("name" = String, Path, description = "deployment name")),
    responses(
        (status = 200, description = "the candidate is live (swapped at a batch boundary); the shadow is gone", body = TransformStatus),
        (status = 404, description = "unknown transform", body = crate::error::ErrorBody),
        (status = 409, description = "it has no shadow", body = crate::error::ErrorBody)
    )
)]
pub async fn promote(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<TransformStatus>, ApiError> {
    let name = name?.0;
    let p = state.pipelines.clone();
    let status = blocking(move || {
        p.shadow_promote(&name)?;
        let t = p.get(&name)?;
        Ok::<_, ApiError>(p.status(&t))
    })
    .await?;
    Ok(Json(status))
}
