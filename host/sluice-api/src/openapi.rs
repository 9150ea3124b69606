//! `GET /openapi.json`: the OpenAPI document, generated (utoipa) from the `#[utoipa::path]`
//! annotations on the handlers and the types they read and write (each derives
//! `ToSchema` where it is defined); schemathesis checks it against the running server in CI.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{
    alerts, deployments, groups, history, lineage, plugins, records, shadow, state, topics,
    transforms,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Request types that are composed in the document — the connector kinds under their
/// `kind` tag, a topic's settings beside its `name` — refuse unknown fields on the server,
/// but "no other property" in a part of a composition would forbid the other part's
/// properties and make the composed schema unsatisfiable. Their parts are documented open.
struct OpenComposed;

const COMPOSED_PARTS: &[&str] = &[
    "TopicConfig",
    "PullSpec",
    "HttpSinkSpec",
    "PostgresSinkSpec",
];

impl Modify for OpenComposed {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = api.components.as_mut() else {
            return;
        };
        for name in COMPOSED_PARTS {
            if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(*name) {
                o.additional_properties = None;
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "A streaming log that runs WebAssembly transforms over every record. \
            With identities configured every endpoint but /healthz and /openapi.json needs \
            `Authorization: Bearer TOKEN` (401 without, 403 when the role does not allow it)."
    ),
    modifiers(&BearerAuth, &OpenComposed),
    security(("bearer" = [])),
    paths(
        super::health,
        super::metrics::metrics,
        super::disk,
        alerts::list,
        history::get,
        topics::create,
        topics::list,
        topics::describe,
        topics::delete,
        topics::set_schema,
        records::produce,
        records::consume,
        records::stream,
        transforms::table_key,
        lineage::lineage,
        groups::list,
        groups::describe,
        groups::delete,
        groups::reset_offsets,
        plugins::list_plugins,
        plugins::upload_plugin,
        plugins::get_plugin,
        plugins::delete_plugin,
        deployments::transforms::list,
        deployments::transforms::put,
        deployments::transforms::get,
        deployments::transforms::delete,
        deployments::transforms::pause,
        deployments::transforms::resume,
        transforms::logs,
        state::read,
        shadow::start,
        shadow::get,
        shadow::delete,
        shadow::promote,
        deployments::connectors::list,
        deployments::connectors::put,
        deployments::connectors::get,
        deployments::connectors::delete,
        deployments::connectors::pause,
        deployments::connectors::resume,
    )
)]
pub struct ApiDoc;

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
