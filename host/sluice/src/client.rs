//! A thin JSON client for the HTTP API whose errors quote the server and name the next step.

use anyhow::bail;
use serde_json::Value;

/// The server's base URL from `--server`/`SLUICE_SERVER`: `http://` is assumed when no
/// scheme is given (`localhost:8080`), anything else that is not a URL is refused.
pub fn server_url(given: &str) -> anyhow::Result<String> {
    let s = given.trim();
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    match reqwest::Url::parse(&with_scheme) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(with_scheme.trim_end_matches('/').to_string())
        }
        _ => bail!(
            "--server / SLUICE_SERVER {given:?} is not a server address; expected \
             http://HOST:PORT (e.g. http://127.0.0.1:8080)"
        ),
    }
}

/// What to try after an error with this code.
fn hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "unknown_topic" => "see `sluice topic list`",
        "unknown_transform" => "see `sluice transform list`",
        "unknown_connector" => "see `sluice connector list`",
        "unknown_plugin" => "see `sluice plugin list`",
        "topic_exists" => "see `sluice topic describe NAME`",
        "plugin_in_use" => "delete the transforms that use it first",
        "unauthorized" => "set SLUICE_TOKEN to your token",
        _ => return None,
    })
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `base` (a URL as `server_url` accepts it).
    pub fn new(base: &str) -> Self {
        sluice_auth::tls::install_provider();
        Client {
            // A server with identities wants `Authorization: Bearer`; the token comes from
            // the environment so it never shows in `ps` or shell history.
            token: std::env::var("SLUICE_TOKEN").ok().filter(|t| !t.is_empty()),
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether something listens at the server's host and port (a TCP connect within 2 s).
    async fn answers_tcp(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(&self.base) else {
            return false;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), connect).await,
            Ok(Ok(_))
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with the token; a response that is not a success becomes an error that quotes
    /// the server's message (and says what to try next, when there is something).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() => {
                if self.base.starts_with("https://") && self.answers_tcp().await {
                    bail!(
                        "the server at {} accepts connections but no TLS handshake — is it \
                         serving plain HTTP? Use http:// (--server / SLUICE_SERVER)",
                        self.base
                    );
                }
                bail!(
                    "cannot reach the server at {} — is `sluice serve` running? (pass --server \
                     or set SLUICE_SERVER for another address)",
                    self.base
                )
            }
            Err(e) => bail!("request to {} failed: {e}", self.base),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let code = body["error"]["code"].as_str().unwrap_or("");
        // Sluice's `{"error": {code, message}}`, or the schema registry's (Confluent's)
        // `{"error_code", "message"}`.
        let msg = body["error"]["message"]
            .as_str()
            .or_else(|| body["message"].as_str())
            .map_or_else(|| body.to_string(), str::to_owned);
        match hint(code) {
            Some(h) => bail!("{msg} — {h}"),
            None => bail!("{msg} ({status})"),
        }
    }

    async fn json(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let text = self.send(req).await?.text().await?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn post_ndjson(&self, path: &str, body: String) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-ndjson")
            .body(body);
        self.json(req).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(self.http.put(self.url(path)).json(body)).await
    }

    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let req = self
            .http
            .put(self.url(path))
            .header("content-type", "application/wasm")
            .body(body);
        self.json(req).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.json(self.http.delete(self.url(path))).await
    }

    /// A streaming GET (server-sent events).
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.send(self.http.get(self.url(path))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_without_a_scheme_get_http_and_nonsense_is_refused() {
        assert_eq!(
            server_url("localhost:8080").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(
            server_url("https://sluice.example.com/").unwrap(),
            "https://sluice.example.com"
        );
        let e = server_url("ftp://x").unwrap_err().to_string();
        assert!(e.contains("expected http://HOST:PORT"), "{e}");
        assert!(server_url("http://").is_err());
    }
}
