//! Authentication and authorization of every HTTP request (when identities are configured):
//! `Authorization: Bearer TOKEN` → an identity → may it do what the method and path ask?
//! 401 without a valid token, 403 when the identity's role does not allow it. Every change
//! (a non-GET on the admin surface) is logged with the identity that made it.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::ApiError;
use sluice_auth::Action;

/// What a request asks for; None = public (health, API description).
pub fn classify(method: &Method, path: &str) -> Option<Action> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = method == Method::GET || method == Method::HEAD;
    let topic = |t: &str| t.to_string();
    Some(match segs.as_slice() {
        // The console's page holds no data: its API calls carry the caller's token.
        ["healthz"] | ["openapi.json"] | ["ui"] => return None,
        ["v1", "whoami"] if read => Action::Identify,
        ["metrics"] => Action::View,
        ["v1", "topics"] if read => Action::View,
        ["v1", "topics", t] if read => Action::Describe(topic(t)),
        ["v1", "topics", t, "records"] if method == Method::POST => Action::Produce(topic(t)),
        ["v1", "topics", t, "partitions", _, "records"] if read => Action::Consume(topic(t)),
        ["v1", "topics", t, "stream"] if read => Action::Consume(topic(t)),
        ["v1", "topics", t, "keys", _] if read => Action::Consume(topic(t)),
        // The record's key and value are shown (the rest of its lineage is offsets).
        ["v1", "lineage", t, ..] if read => Action::Consume(topic(t)),
        ["v1", "transforms", _, "state"] if read => Action::ReadState,
        // A shadow's examples hold record contents, as state does.
        ["v1", "transforms", _, "shadow"] if read => Action::ReadState,
        ["v1", "transforms" | "connectors", _, "pause" | "resume"] if method == Method::POST => {
            Action::Operate
        }
        ["v1", ..] if read => Action::View,
        _ => Action::Admin,
    })
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// What the authorization middleware decides with: the identities, and which topics the
/// server keeps for itself (read with the state permission).
#[derive(Clone)]
pub struct Gate {
    pub auth: Option<Arc<sluice_auth::Auth>>,
    pub owned: sluice_auth::OwnedTopics,
}

impl Gate {
    /// A gate for a surface that serves no topic's records (the worker's API).
    pub fn without_topics(auth: Option<Arc<sluice_auth::Auth>>) -> Gate {
        Gate {
            auth,
            owned: Arc::new(|_: &str| false),
        }
    }
}

pub async fn authorize(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let auth = gate.auth;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(action) = classify(&method, &path) else {
        return next.run(req).await;
    };
    let action = action.refine(&*gate.owned);
    let mut identity = "anonymous".to_string();
    if let Some(auth) = &auth {
        let Some(principal) = bearer(&req).and_then(|t| auth.authenticate(t)) else {
            let msg = if bearer(&req).is_some() {
                "the bearer token matches no identity"
            } else {
                "this server requires `Authorization: Bearer TOKEN`"
            };
            let mut resp =
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg).into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
            return resp;
        };
        if !principal.allows(&action) {
            tracing::info!(identity = %principal.name, role = %principal.role, %method, path, "forbidden");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                principal.denial(&action),
            )
            .into_response();
        }
        identity = principal.name.clone();
        req.extensions_mut().insert(principal);
    }
    if action == Action::Identify {
        // Who the caller is, and its role: what the console shows and hides by.
        let (name, role) = match req.extensions().get::<Arc<sluice_auth::Principal>>() {
            Some(p) => (p.name.clone(), p.role.to_string()),
            None => ("anonymous".to_string(), "admin".to_string()),
        };
        let body = serde_json::json!({"name": name, "role": role, "auth": auth.is_some()});
        return axum::Json(body).into_response();
    }
    let resp = next.run(req).await;
    if matches!(action, Action::Admin | Action::Operate) {
        tracing::info!(identity, %method, path, status = resp.status().as_u16(), "admin change");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_actions() {
        let c = |m: Method, p: &str| classify(&m, p);
        assert_eq!(c(Method::GET, "/healthz"), None);
        assert_eq!(c(Method::POST, "/v1/topics"), Some(Action::Admin));
        assert_eq!(
            c(Method::GET, "/v1/topics/a"),
            Some(Action::Describe("a".into()))
        );
        assert_eq!(c(Method::DELETE, "/v1/topics/a"), Some(Action::Admin));
        assert_eq!(
            c(Method::POST, "/v1/topics/a/records"),
            Some(Action::Produce("a".into()))
        );
        assert_eq!(
            c(Method::GET, "/v1/topics/a/partitions/0/records"),
            Some(Action::Consume("a".into()))
        );
        assert_eq!(
            c(Method::GET, "/v1/topics/a/keys/k"),
            Some(Action::Consume("a".into()))
        );
        assert_eq!(c(Method::GET, "/v1/transforms/x/logs"), Some(Action::View));
        assert_eq!(c(Method::PUT, "/v1/plugins/x"), Some(Action::Admin));
        assert_eq!(
            c(Method::POST, "/v1/connectors/x/pause"),
            Some(Action::Operate)
        );
        assert_eq!(
            c(Method::GET, "/v1/transforms/x/state"),
            Some(Action::ReadState)
        );
        assert_eq!(c(Method::DELETE, "/v1/transforms/x"), Some(Action::Admin));
        assert_eq!(c(Method::GET, "/metrics"), Some(Action::View));
        // Record contents: a shadow's examples, a lineage's record.
        assert_eq!(
            c(Method::GET, "/v1/transforms/x/shadow"),
            Some(Action::ReadState)
        );
        assert_eq!(
            c(Method::PUT, "/v1/transforms/x/shadow"),
            Some(Action::Admin)
        );
        assert_eq!(
            c(Method::GET, "/v1/lineage/t/0/5"),
            Some(Action::Consume("t".into()))
        );
        assert_eq!(c(Method::GET, "/v1/groups"), Some(Action::View));
        assert_eq!(c(Method::POST, "/v1/groups/g/reset"), Some(Action::Admin));
        assert_eq!(c(Method::GET, "/v1/alerts"), Some(Action::View));
    }
}
