//! The HTTP adapter: one request per lookup, over one pooled client.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, ACCEPT, CONTENT_TYPE};
use tollgate_core::{CallerProfile, NumberPlan, E164};

use crate::config::{HttpConfig, Method};
use crate::headers::HeaderSpec;
use crate::mapping::Mapping;
use crate::template::{Context, Template};
use crate::{BoxFuture, Directory, LookupError};

/// A CRM reached over HTTP(S): URL and body templates, secret headers, a JSON field mapping.
///
/// 404 and an empty answer (`null`, `{}`, `[]`, no body) are "not found"; any other status
/// outside 2xx is [`LookupError::Status`].
pub struct HttpDirectory {
    client: reqwest::Client,
    method: reqwest::Method,
    url_source: String,
    url: Template,
    body: Option<Template>,
    json_body: bool,
    header_names: Vec<String>,
    mapping: Mapping,
    plan: Option<Arc<NumberPlan>>,
    timeout: Duration,
    max_response_bytes: u64,
}

/// Header values are secrets: only their names are shown.
impl fmt::Debug for HttpDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDirectory")
            .field("method", &self.method)
            .field("url", &self.url_source)
            .field("headers", &self.header_names)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpDirectory {
    /// Resolves header secrets now (a missing variable or file is a start-up error, not a
    /// per-call one). `plan` is needed only when a template uses `{national}`.
    pub fn new(
        cfg: &HttpConfig,
        base_dir: &Path,
        plan: Option<Arc<NumberPlan>>,
    ) -> Result<Self, LookupError> {
        let url = Template::parse(&cfg.url, Context::Url)
            .map_err(|e| LookupError::config("crm.http.url", e))?;
        let body = cfg
            .body
            .as_deref()
            .map(|b| Template::parse(b, Context::Body))
            .transpose()
            .map_err(|e| LookupError::config("crm.http.body", e))?;
        let needs_plan =
            url.needs_national() || body.as_ref().is_some_and(Template::needs_national);
        if needs_plan && plan.is_none() {
            return Err(LookupError::config(
                "crm.http.url",
                "{national} needs the numbering plan (HttpDirectory::new got none)",
            ));
        }
        let mapping =
            Mapping::compile(&cfg.mapping, "crm.http.mapping").map_err(LookupError::Config)?;

        let mut headers = HeaderMap::new();
        let mut problems = Vec::new();
        for (name, spec) in &cfg.headers {
            let key = format!("crm.http.headers.{name}");
            let resolved = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| "not a valid header name".to_owned())
                .and_then(|n| Ok((n, HeaderSpec::parse(spec)?.resolve(base_dir)?)));
            match resolved {
                Ok((n, v)) => {
                    headers.insert(n, v);
                }
                Err(e) => problems.push(tollgate_core::Problem::new(key, e)),
            }
        }
        if !problems.is_empty() {
            return Err(LookupError::Config(problems));
        }
        let json_body = body.is_some() && !headers.contains_key(CONTENT_TYPE);
        if !headers.contains_key(ACCEPT) {
            headers.insert(
                ACCEPT,
                reqwest::header::HeaderValue::from_static("application/json"),
            );
        }

        let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config()?)
            .default_headers(headers)
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms.max(1)))
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LookupError::config("crm.http", format!("HTTP client: {}", chain(&e))))?;
        Ok(Self {
            client,
            method: match cfg.method {
                Method::Get => reqwest::Method::GET,
                Method::Post => reqwest::Method::POST,
            },
            url_source: cfg.url.clone(),
            url,
            body,
            json_body,
            header_names: cfg.headers.keys().cloned().collect(),
            mapping,
            plan,
            timeout,
            max_response_bytes: cfg.max_response_bytes,
        })
    }

    async fn fetch(&self, ani: &E164) -> Result<Option<CallerProfile>, LookupError> {
        let plan = self.plan.as_deref();
        let url = self.url.render(ani, plan, Context::Url);
        let mut request = self.client.request(self.method.clone(), url);
        if let Some(body) = &self.body {
            if self.json_body {
                request = request.header(CONTENT_TYPE, "application/json");
            }
            request = request.body(body.render(ani, plan, Context::Body));
        }
        let mut response = request.send().await.map_err(|e| self.classify(e))?;
        let status = response.status();
        // The body is read even when it is not used, so the connection goes back to the pool.
        let body = self.read_body(&mut response).await;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(LookupError::Status(status.as_u16()));
        }
        let body = body?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| LookupError::Decode(format!("not JSON: {e}")))?;
        self.mapping.apply(&value)
    }

    async fn read_body(&self, response: &mut reqwest::Response) -> Result<Vec<u8>, LookupError> {
        let too_large = || {
            LookupError::Decode(format!(
                "answer larger than {} bytes (http.max_response_bytes)",
                self.max_response_bytes
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response_bytes)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.classify(e))? {
            body.extend_from_slice(&chunk);
            if u64::try_from(body.len()).unwrap_or(u64::MAX) > self.max_response_bytes {
                return Err(too_large());
            }
        }
        Ok(body)
    }

    fn classify(&self, e: reqwest::Error) -> LookupError {
        if e.is_timeout() {
            LookupError::Timeout(self.timeout)
        } else if e.is_decode() {
            LookupError::Decode(chain(&e.without_url()))
        } else {
            // The URL carries the caller's number: keep it out of errors and logs.
            LookupError::Transport(chain(&e.without_url()))
        }
    }
}

impl Directory for HttpDirectory {
    fn find<'a>(
        &'a self,
        ani: &'a E164,
    ) -> BoxFuture<'a, Result<Option<CallerProfile>, LookupError>> {
        Box::pin(self.fetch(ani))
    }
}

/// reqwest's own message is often just "error sending request": the cause is further down.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// rustls on ring with the platform's roots: reqwest is built without a default provider, so
/// no second crypto library is compiled and no process-wide default is installed behind the
/// server's back.
fn tls_config() -> Result<rustls::ClientConfig, LookupError> {
    let tls_err = |e: rustls::Error| LookupError::config("crm.http", format!("TLS setup: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(tls_err)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}
