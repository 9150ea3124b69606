//! The Schema Registry's HTTP API — Confluent's REST API v1, on a listener of its own
//! (`sluice serve --schema-registry ADDR`) so that unmodified clients (confluent-kafka's
//! `SchemaRegistryClient`, kafkajs' `@kafkajs/confluent-schema-registry`, Kafka Connect
//! converters) work against it: the same paths, bodies, status codes and
//! `{"error_code","message"}` errors. Each endpoint is one method of
//! `sluice_schema::Registry`; identities are the server's (`Authorization: Bearer TOKEN`, or
//! HTTP basic auth with the identity's name and token as clients send it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Serialize;

use sluice_auth::Action;
use sluice_schema::{
    ConfigUpdate, ModeUpdate, RegisterRequest, Registry, RegistryError, VersionId, parse_query_bool,
};

/// What the registry's handlers reach.
#[derive(Debug)]
pub struct RegistryApp {
    pub registry: Arc<Registry>,
    pub auth: Option<Arc<sluice_auth::Auth>>,
    pub max_body_bytes: usize,
}

type St = State<Arc<RegistryApp>>;
type Params = Query<HashMap<String, String>>;

/// Confluent's media type for every JSON answer.
const MEDIA: &str = "application/vnd.schemaregistry.v1+json";

/// A registry answer: JSON under Confluent's media type.
struct Sr<T>(T);

impl<T: Serialize> IntoResponse for Sr<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => (
                [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA))],
                body,
            )
                .into_response(),
            Err(e) => SrError(RegistryError::new(500, 50001, e.to_string())).into_response(),
        }
    }
}

/// A registry error as Confluent answers it: `{"error_code": N, "message": "…"}`.
struct SrError(RegistryError);

impl IntoResponse for SrError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = e.error_code, message = %e.message, "schema registry error");
        }
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA))],
            e.body().to_string(),
        )
            .into_response()
    }
}

fn error(e: RegistryError) -> Response {
    SrError(e).into_response()
}

type Answer = Result<Response, SrError>;

fn ok<T: Serialize>(r: Result<T, RegistryError>) -> Answer {
    r.map(|v| Sr(v).into_response()).map_err(SrError)
}

/// A raw text answer (`…/schema` endpoints).
fn text(r: Result<String, RegistryError>) -> Answer {
    r.map(|t| ([(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA))], t).into_response())
        .map_err(SrError)
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    parse_query_bool(q.get(name).map(String::as_str))
}

fn number<T: std::str::FromStr>(q: &HashMap<String, String>, name: &str, default: T) -> T {
    q.get(name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn paging(q: &HashMap<String, String>) -> (usize, i64) {
    (number(q, "offset", 0usize), number(q, "limit", -1i64))
}

fn format(q: &HashMap<String, String>) -> Option<&str> {
    q.get("format")
        .map(String::as_str)
        .filter(|f| !f.is_empty())
}

/// A path segment (percent-decoded by axum); a path that does not parse is Confluent's
/// plain 404.
fn segment<T>(p: Result<Path<T>, PathRejection>) -> Result<T, SrError> {
    p.map(|Path(v)| v)
        .map_err(|_| SrError(RegistryError::new(404, 404, "HTTP 404 Not Found")))
}

fn version(v: &str) -> Result<VersionId, SrError> {
    VersionId::parse(v).map_err(SrError)
}

fn id(v: &str) -> Result<i32, SrError> {
    v.trim()
        .parse()
        .map_err(|_| SrError(RegistryError::new(404, 404, "HTTP 404 Not Found")))
}

/// A JSON body (none reads as `{}`); malformed JSON is Confluent's 400, JSON of the wrong
/// shape its 422.
fn body<T: serde::de::DeserializeOwned>(b: &Bytes) -> Result<T, SrError> {
    let text: &[u8] = if b.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        b
    };
    serde_json::from_slice(text).map_err(|e| {
        let code = if e.is_data() { 422 } else { 400 };
        let status = if e.is_data() { 422 } else { 400 };
        SrError(RegistryError::new(
            status,
            code,
            format!("Unrecognized request body: {e}"),
        ))
    })
}

/// Registry work that may wait on the journal (an append to `_schemas`): off the reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(RegistryError::store(format!("registry task failed: {e}"))))
}

/// The registry's whole HTTP API.
pub fn router(app: Arc<RegistryApp>) -> Router {
    Router::new()
        .route("/", get(root).post(root))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route(
            "/subjects/{subject}/versions/{version}",
            get(get_version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route("/schemas", get(list_schemas))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_for_id))
        .route("/schemas/ids/{id}/versions", get(versions_for_id))
        .route("/schemas/guids/{guid}", get(schema_by_guid))
        .route(
            "/config",
            get(get_global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/mode",
            get(get_global_mode)
                .put(put_global_mode)
                .delete(delete_global_mode),
        )
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_one),
        )
        .route("/contexts", get(contexts))
        .route(
            "/associations/resources/{namespace}/{name}",
            get(associations),
        )
        .route("/v1/metadata/id", get(metadata_id))
        .route("/openapi.json", get(openapi))
        .route_layer(axum::middleware::from_fn(crate::observe))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(app.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(app.clone(), authorize))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

async fn not_found() -> Response {
    error(RegistryError::new(404, 404, "HTTP 404 Not Found"))
}

async fn method_not_allowed() -> Response {
    error(RegistryError::new(405, 405, "HTTP 405 Method Not Allowed"))
}

async fn root() -> Sr<serde_json::Value> {
    Sr(serde_json::json!({}))
}

async fn metadata_id() -> Sr<serde_json::Value> {
    Sr(serde_json::json!({"id": "sluice", "scope": {"path": [], "clusters": {}}}))
}

async fn openapi() -> axum::Json<serde_json::Value> {
    match serde_json::from_str(include_str!("registry-openapi.json")) {
        Ok(v) => axum::Json(v),
        Err(_) => axum::Json(serde_json::json!({})),
    }
}

// Subjects and versions.

async fn list_subjects(s: St, Query(q): Params) -> Answer {
    let (offset, limit) = paging(&q);
    let prefix = q.get("subjectPrefix").map(String::as_str);
    let deleted_only = flag(&q, "deletedOnly") || flag(&q, "deleted_only");
    ok(Ok(s.registry.list_subjects(
        prefix,
        flag(&q, "deleted"),
        deleted_only,
        offset,
        limit,
    )))
}

async fn lookup(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
    b: Bytes,
) -> Answer {
    let subject = segment(subject)?;
    let req: RegisterRequest = body(&b)?;
    ok(s.registry
        .lookup(&subject, &req, flag(&q, "normalize"), flag(&q, "deleted")))
}

async fn delete_subject(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let subject = segment(subject)?;
    let permanent = flag(&q, "permanent");
    let r = s.registry.clone();
    ok(blocking(move || r.delete_subject(&subject, permanent)).await)
}

async fn list_versions(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let subject = segment(subject)?;
    let (offset, limit) = paging(&q);
    ok(s.registry.list_versions(
        &subject,
        flag(&q, "deleted"),
        flag(&q, "deletedOnly") || flag(&q, "deleted_only"),
        flag(&q, "deletedAsNegative"),
        offset,
        limit,
    ))
}

async fn register(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
    b: Bytes,
) -> Answer {
    let subject = segment(subject)?;
    let req: RegisterRequest = body(&b)?;
    let (normalize, force) = (flag(&q, "normalize"), flag(&q, "force"));
    let r = s.registry.clone();
    ok(blocking(move || r.register(&subject, &req, normalize, force)).await)
}

async fn get_version(
    s: St,
    path: Result<Path<(String, String)>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let (subject, v) = segment(path)?;
    ok(s.registry
        .get_version(&subject, version(&v)?, flag(&q, "deleted"), format(&q)))
}

async fn get_version_schema(
    s: St,
    path: Result<Path<(String, String)>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let (subject, v) = segment(path)?;
    text(
        s.registry
            .get_version_schema(&subject, version(&v)?, flag(&q, "deleted"), format(&q)),
    )
}

async fn referenced_by(
    s: St,
    path: Result<Path<(String, String)>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let (subject, v) = segment(path)?;
    ok(s.registry
        .referenced_by(&subject, version(&v)?, flag(&q, "deleted")))
}

async fn delete_version(
    s: St,
    path: Result<Path<(String, String)>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let (subject, v) = segment(path)?;
    let v = version(&v)?;
    let permanent = flag(&q, "permanent");
    let r = s.registry.clone();
    ok(blocking(move || r.delete_version(&subject, v, permanent)).await)
}

// Schemas by id.

async fn list_schemas(s: St, Query(q): Params) -> Answer {
    let (offset, limit) = paging(&q);
    ok(Ok(s.registry.list_schemas(
        q.get("subjectPrefix").map(String::as_str),
        flag(&q, "deleted"),
        flag(&q, "latestOnly"),
        offset,
        limit,
    )))
}

async fn schema_types(s: St) -> Answer {
    ok(Ok(s.registry.schema_types()))
}

async fn schema_by_id(s: St, i: Result<Path<String>, PathRejection>, Query(q): Params) -> Answer {
    let i = id(&segment(i)?)?;
    ok(s.registry.schema_by_id(
        i,
        q.get("subject").map(String::as_str),
        format(&q),
        flag(&q, "fetchMaxId"),
    ))
}

async fn schema_text_by_id(
    s: St,
    i: Result<Path<String>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let i = id(&segment(i)?)?;
    text(s.registry.schema_text_by_id(i, format(&q)))
}

async fn subjects_for_id(
    s: St,
    i: Result<Path<String>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let i = id(&segment(i)?)?;
    let (offset, limit) = paging(&q);
    ok(s.registry
        .subjects_for_id(i, flag(&q, "deleted"), offset, limit))
}

async fn versions_for_id(
    s: St,
    i: Result<Path<String>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let i = id(&segment(i)?)?;
    let (offset, limit) = paging(&q);
    ok(s.registry
        .versions_for_id(i, flag(&q, "deleted"), offset, limit))
}

async fn schema_by_guid(s: St, g: Result<Path<String>, PathRejection>, Query(q): Params) -> Answer {
    let g = segment(g)?;
    ok(s.registry.schema_by_guid(&g, format(&q)))
}

// Config and mode.

async fn get_global_config(s: St) -> Answer {
    ok(Ok(s.registry.get_global_config()))
}

async fn put_global_config(s: St, b: Bytes) -> Answer {
    let update: ConfigUpdate = body(&b)?;
    let r = s.registry.clone();
    ok(blocking(move || r.put_global_config(&update)).await)
}

async fn delete_global_config(s: St) -> Answer {
    let r = s.registry.clone();
    ok(blocking(move || r.delete_global_config()).await)
}

async fn get_subject_config(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let subject = segment(subject)?;
    ok(s.registry
        .get_subject_config(&subject, flag(&q, "defaultToGlobal")))
}

async fn put_subject_config(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    b: Bytes,
) -> Answer {
    let subject = segment(subject)?;
    let update: ConfigUpdate = body(&b)?;
    let r = s.registry.clone();
    ok(blocking(move || r.put_subject_config(&subject, &update)).await)
}

async fn delete_subject_config(s: St, subject: Result<Path<String>, PathRejection>) -> Answer {
    let subject = segment(subject)?;
    let r = s.registry.clone();
    ok(blocking(move || r.delete_subject_config(&subject)).await)
}

async fn get_global_mode(s: St) -> Answer {
    ok(Ok(s.registry.get_global_mode()))
}

async fn put_global_mode(s: St, Query(q): Params, b: Bytes) -> Answer {
    let update: ModeUpdate = body(&b)?;
    let force = flag(&q, "force");
    let r = s.registry.clone();
    ok(blocking(move || r.put_global_mode(&update, force)).await)
}

async fn delete_global_mode(s: St) -> Answer {
    let r = s.registry.clone();
    ok(blocking(move || r.delete_global_mode()).await)
}

async fn get_subject_mode(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
) -> Answer {
    let subject = segment(subject)?;
    ok(s.registry
        .get_subject_mode(&subject, flag(&q, "defaultToGlobal")))
}

async fn put_subject_mode(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
    b: Bytes,
) -> Answer {
    let subject = segment(subject)?;
    let update: ModeUpdate = body(&b)?;
    let force = flag(&q, "force");
    let r = s.registry.clone();
    ok(blocking(move || r.put_subject_mode(&subject, &update, force)).await)
}

async fn delete_subject_mode(s: St, subject: Result<Path<String>, PathRejection>) -> Answer {
    let subject = segment(subject)?;
    let r = s.registry.clone();
    ok(blocking(move || r.delete_subject_mode(&subject)).await)
}

// Compatibility.

async fn check_all(
    s: St,
    subject: Result<Path<String>, PathRejection>,
    Query(q): Params,
    b: Bytes,
) -> Answer {
    let subject = segment(subject)?;
    let req: RegisterRequest = body(&b)?;
    ok(s.registry.check_compatibility(
        &subject,
        None,
        &req,
        flag(&q, "normalize"),
        flag(&q, "verbose"),
    ))
}

async fn check_one(
    s: St,
    path: Result<Path<(String, String)>, PathRejection>,
    Query(q): Params,
    b: Bytes,
) -> Answer {
    let (subject, v) = segment(path)?;
    let req: RegisterRequest = body(&b)?;
    ok(s.registry.check_compatibility(
        &subject,
        Some(version(&v)?),
        &req,
        flag(&q, "normalize"),
        flag(&q, "verbose"),
    ))
}

async fn contexts(s: St) -> Answer {
    ok(Ok(s.registry.contexts()))
}

async fn associations(s: St, path: Result<Path<(String, String)>, PathRejection>) -> Answer {
    let (ns, name) = segment(path)?;
    ok(Ok(s.registry.associations(&ns, &name)))
}

// Access.

/// What a registry request asks: registering or checking a schema under a subject, reading,
/// or changing the registry (deletes, config, mode: admins).
fn classify(method: &Method, path: &str) -> Option<Action> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = method == Method::GET || method == Method::HEAD;
    let subject = |s: &str| percent_decode(s);
    Some(match segs.as_slice() {
        [""] | ["openapi.json"] => return None,
        _ if read => Action::ReadSchemas,
        ["subjects", s] if method == Method::POST => Action::RegisterSchema(subject(s)),
        ["subjects", s, "versions"] if method == Method::POST => Action::RegisterSchema(subject(s)),
        ["compatibility", "subjects", s, ..] if method == Method::POST => {
            Action::RegisterSchema(subject(s))
        }
        _ => Action::Admin,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The identity of a request: `Authorization: Bearer TOKEN`, or `Basic base64(name:token)`
/// as Schema Registry clients send it (`basic.auth.user.info`).
fn principal(auth: &sluice_auth::Auth, req: &Request) -> Option<Arc<sluice_auth::Principal>> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return auth.authenticate(cred.trim());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(cred.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, token) = text.split_once(':')?;
        return auth.authenticate_plain(user, token);
    }
    None
}

async fn authorize(State(app): St, req: Request, next: Next) -> Response {
    let Some(auth) = &app.auth else {
        return next.run(req).await;
    };
    let Some(action) = classify(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(p) = principal(auth, &req) else {
        let mut resp = error(RegistryError::new(
            401,
            40101,
            "Unauthorized: this registry requires `Authorization: Bearer TOKEN` or basic auth with an identity's name and token",
        ));
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sluice schema registry\""),
        );
        return resp;
    };
    if !p.allows(&action) {
        return error(RegistryError::new(403, 40301, p.denial(&action)));
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    if !matches!(action, Action::ReadSchemas) {
        tracing::info!(identity = %p.name, %method, path, status = resp.status().as_u16(), "schema registry change");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_actions() {
        let c = |m: Method, p: &str| classify(&m, p);
        assert_eq!(c(Method::GET, "/subjects"), Some(Action::ReadSchemas));
        assert_eq!(
            c(Method::POST, "/subjects/orders-value/versions"),
            Some(Action::RegisterSchema("orders-value".into()))
        );
        assert_eq!(
            c(Method::POST, "/subjects/common%2Faddress.proto/versions"),
            Some(Action::RegisterSchema("common/address.proto".into()))
        );
        assert_eq!(
            c(
                Method::POST,
                "/compatibility/subjects/orders-value/versions/latest"
            ),
            Some(Action::RegisterSchema("orders-value".into()))
        );
        assert_eq!(
            c(Method::DELETE, "/subjects/orders-value"),
            Some(Action::Admin)
        );
        assert_eq!(c(Method::PUT, "/config"), Some(Action::Admin));
        assert_eq!(c(Method::GET, "/"), None);
    }
}
