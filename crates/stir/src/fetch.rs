//! Fetching x5u certificates: which URLs may be fetched, the HTTP client, Cache-Control.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, CACHE_CONTROL};
use reqwest::Url;

use crate::error::{ConfigError, StirError};

/// Certificate bodies are a few KiB; anything much larger is not a certificate chain.
pub(crate) const MAX_CERT_BYTES: usize = 64 * 1024;

/// One `allowed_hosts` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any DNS name (never an IP literal: those must be listed one by one).
    AnyName,
    /// `*.example.com`: any name under example.com (not example.com itself).
    Suffix(String),
    /// `cert.example.com`, `127.0.0.1`, `[::1]`.
    Exact(String),
}

/// Which x5u URLs the verifier will fetch: a fetch is a request to a host the caller chose, so
/// the default allows nothing, and redirects are never followed.
#[derive(Clone, Debug)]
pub(crate) struct UrlPolicy {
    hosts: Vec<HostPattern>,
    allow_http: bool,
}

impl UrlPolicy {
    pub fn new(allowed_hosts: &[String], allow_http: bool) -> Result<Self, ConfigError> {
        let hosts = allowed_hosts
            .iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                if h == "*" {
                    Ok(HostPattern::AnyName)
                } else if let Some(suffix) = h.strip_prefix("*.") {
                    Ok(HostPattern::Suffix(format!(".{suffix}")))
                } else if h.is_empty() || h.contains(['*', '/', ':']) && !h.starts_with('[') {
                    Err(ConfigError::Invalid {
                        key: "allowed_hosts".into(),
                        reason: format!("{h:?} is not a host name, *.domain or *"),
                    })
                } else {
                    Ok(HostPattern::Exact(
                        h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(UrlPolicy { hosts, allow_http })
    }

    /// Parses `url` and checks scheme, credentials and host; the error is a 436.
    pub fn check(&self, url: &str) -> Result<Url, StirError> {
        let refuse = |reason: &str| StirError::UrlNotAllowed {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let parsed = Url::parse(url).map_err(|e| refuse(&format!("not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err(refuse("plain http (x5u must be https)")),
            _ => return Err(refuse("scheme is not https")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refuse("URL carries credentials"));
        }
        let host = match parsed.host_str() {
            Some(h) => {
                let bare = h.trim_start_matches('[').trim_end_matches(']');
                match bare.parse::<IpAddr>() {
                    Ok(ip) => Host::Ip(ip),
                    Err(_) => Host::Name(h.to_ascii_lowercase()),
                }
            }
            None => return Err(refuse("no host")),
        };
        if self.hosts.iter().any(|p| host.matches(p)) {
            Ok(parsed)
        } else if self.hosts.is_empty() {
            Err(refuse("allowed_hosts is empty"))
        } else {
            Err(refuse("host is not in allowed_hosts"))
        }
    }
}

enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    fn matches(&self, p: &HostPattern) -> bool {
        match (self, p) {
            (Host::Name(_), HostPattern::AnyName) => true,
            (Host::Name(n), HostPattern::Suffix(s)) => n.ends_with(s.as_str()),
            (Host::Name(n), HostPattern::Exact(e)) => n == e,
            (Host::Ip(ip), HostPattern::Exact(e)) => e.parse::<IpAddr>().is_ok_and(|x| x == *ip),
            (Host::Ip(_), _) => false,
        }
    }
}

/// The HTTP client: rustls on ring (the crypto the rest of the crate uses), the platform's
/// roots for the x5u server's TLS certificate, short timeouts, no redirects.
pub(crate) fn http_client(
    timeout: Duration,
    allow_http: bool,
) -> Result<reqwest::Client, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
        .map_err(|e| ConfigError::Http(format!("platform certificate verifier: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Http(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(!allow_http)
        .user_agent(concat!("tollgate-stir/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::Http(e.to_string()))
}

/// GETs `url` and returns the body and the TTL its Cache-Control allows (None: no max-age).
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: Url,
) -> Result<(Vec<u8>, Option<Duration>), StirError> {
    let url_s = url.to_string();
    let fail = |reason: String| StirError::Fetch {
        url: url_s.clone(),
        reason,
    };
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_CERT_BYTES as u64)
    {
        return Err(fail(format!("body larger than {MAX_CERT_BYTES} bytes")));
    }
    let ttl = max_age(resp.headers());
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_CERT_BYTES {
            return Err(fail(format!("body larger than {MAX_CERT_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, ttl))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The freshness lifetime Cache-Control grants: `max-age=N`; `no-store`/`no-cache` give zero
/// (fetch per use, as the server asked). None when the header says nothing about it.
pub(crate) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                if let Some(secs) = arg.and_then(|a| a.parse::<u64>().ok()) {
                    age = Some(Duration::from_secs(secs));
                }
            }
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy(hosts: &[&str], http: bool) -> UrlPolicy {
        UrlPolicy::new(
            &hosts.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            http,
        )
        .unwrap()
    }

    #[test]
    fn url_policy() {
        let p = policy(&["cert.example.com", "*.sticr.example", "127.0.0.1"], false);
        assert!(p.check("https://cert.example.com/a.pem").is_ok());
        assert!(p.check("https://CERT.example.com:8443/a.pem").is_ok());
        assert!(p.check("https://x.y.sticr.example/a.pem").is_ok());
        assert!(p.check("https://sticr.example/a.pem").is_err());
        assert!(p.check("https://evil.example.com/a.pem").is_err());
        assert!(p.check("http://cert.example.com/a.pem").is_err());
        assert!(p.check("ftp://cert.example.com/a.pem").is_err());
        assert!(p.check("https://u:p@cert.example.com/a.pem").is_err());
        assert!(p.check("https://127.0.0.1/a.pem").is_ok());
        assert!(p.check("https://127.0.0.2/a.pem").is_err());
        assert!(p.check("not a url").is_err());

        let any = policy(&["*"], false);
        assert!(any.check("https://anything.example/a.pem").is_ok());
        assert!(
            any.check("https://10.0.0.1/a.pem").is_err(),
            "* never matches an IP"
        );

        let none = policy(&[], true);
        let e = none.check("https://cert.example.com/a.pem").unwrap_err();
        assert_eq!(e.sip_response().0, 436);
        assert!(e.to_string().contains("empty"), "{e}");

        assert!(policy(&["127.0.0.1"], true)
            .check("http://127.0.0.1:8080/c.pem")
            .is_ok());
        assert!(UrlPolicy::new(&["https://x".to_string()], false).is_err());
    }

    #[test]
    fn cache_control() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(max_age(&HeaderMap::new()), None);
        assert_eq!(
            max_age(&h("public, max-age=300")),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age(&h("max-age=\"60\"")), Some(Duration::from_secs(60)));
        assert_eq!(max_age(&h("no-cache")), Some(Duration::ZERO));
        assert_eq!(max_age(&h("max-age=300, no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(&h("public")), None);
        assert_eq!(max_age(&h("max-age=abc")), None);
    }
}
