//! The `[crm]` section: which directory, and how it is protected.
//!
//! Every key has a default, so an empty `[crm]` section means the embedded file directory at
//! `directory.csv` beside the config file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use tollgate_core::Problem;

use crate::headers::HeaderSpec;
use crate::mapping::Mapping;
use crate::template::{Context, Template};

/// Which directory answers lookups.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The embedded directory file ([`FileConfig`]): the default, needs nothing else running.
    #[default]
    File,
    /// A CRM over HTTP(S) ([`HttpConfig`]), behind the cache, breaker and rate limit.
    Http,
    /// No CRM: every call's lookup status is `skipped`.
    None,
}

/// `[crm]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LookupConfig {
    /// `"file"` (default), `"http"` or `"none"`.
    pub kind: Kind,
    /// A call waits at most this long for CRM data, then routes without it (status `timeout`);
    /// the request itself may go on and fill the cache. Default 150.
    pub deadline_ms: u64,
    pub file: FileConfig,
    pub http: HttpConfig,
    pub cache: CacheConfig,
    pub rate_limit: RateLimitConfig,
    pub breaker: BreakerConfig,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            kind: Kind::File,
            deadline_ms: 150,
            file: FileConfig::default(),
            http: HttpConfig::default(),
            cache: CacheConfig::default(),
            rate_limit: RateLimitConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// File formats for the embedded directory.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Json,
}

/// `[crm.file]`: the embedded directory, reloaded when the file changes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Relative to the config file's directory. Default `directory.csv`.
    pub path: PathBuf,
    /// `"csv"` or `"json"`; default: by extension (`.json` is JSON, anything else CSV).
    pub format: Option<FileFormat>,
    /// Region for numbers written in national form in the file (`"US"`: `212 555 0100`).
    /// Default: none, so every number must be in `+E.164` form.
    pub region: Option<String>,
    /// How often the file's modification time is checked; 0 turns reloading off. Default 1000.
    pub poll_ms: u64,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("directory.csv"),
            format: None,
            region: None,
            poll_ms: 1000,
        }
    }
}

/// HTTP methods a CRM lookup may use.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum Method {
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    #[serde(rename = "POST", alias = "post")]
    Post,
}

/// `[crm.http]`: one request per lookup.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `http://` or `https://` URL with `{e164}` (`%2B` and digits), `{digits}` (E.164 digits,
    /// no `+`) or `{national}` (national significant number). Required for `kind = "http"`.
    pub url: String,
    /// `"GET"` (default) or `"POST"`.
    pub method: Method,
    /// POST body, with the same placeholders (`{e164}` is `+…` here); sent as
    /// `application/json` unless a Content-Type header is set. Default: none.
    pub body: Option<String>,
    /// Header name → value. A value `env:NAME` is read from the environment and `file:PATH`
    /// from a file (relative to the config directory, trailing newline dropped); `{env:NAME}`
    /// and `{file:PATH}` may also appear inside a value (`"Bearer {env:CRM_TOKEN}"`). Values
    /// are never logged.
    pub headers: BTreeMap<String, String>,
    /// Default 300.
    pub connect_timeout_ms: u64,
    /// The whole request, connect to last byte. Longer than `deadline_ms` so a slow answer
    /// still fills the cache for the next call. Default 2000.
    pub timeout_ms: u64,
    /// Answers larger than this are an error. Default 1 MiB.
    pub max_response_bytes: u64,
    pub mapping: MappingConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            method: Method::Get,
            body: None,
            headers: BTreeMap::new(),
            connect_timeout_ms: 300,
            timeout_ms: 2000,
            max_response_bytes: 1 << 20,
            mapping: MappingConfig::default(),
        }
    }
}

/// Header values and the body may hold secrets: Debug shows names and sizes only.
impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("HttpConfig")
            .field("url", &self.url)
            .field("method", &self.method)
            .field(
                "body",
                &self.body.as_ref().map(|b| format!("<{} bytes>", b.len())),
            )
            .field("headers", &headers)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("mapping", &self.mapping)
            .finish()
    }
}

/// `[crm.http.mapping]`: where each profile field is in the CRM's JSON answer.
///
/// A path is dotted (`data.owner.name`, `phones[0].number`, `items.0`) or a JSON pointer
/// (`/data/first.last`). Paths are relative to `record`. Empty means "not mapped". Each field
/// defaults to its own name, so a CRM answering in the profile's own shape needs no mapping.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    /// Where the caller's record is in the answer; default: the whole answer. If it is a list
    /// of matches, the first is the caller. Absent, `null`, `{}` or `[]` means "not found".
    pub record: String,
    /// Required (a string or number).
    pub customer_id: String,
    pub name: String,
    pub company: String,
    pub tier: String,
    pub language: String,
    /// An array of strings, or one string of comma- or semicolon-separated tags.
    pub tags: String,
    /// A non-negative integer, a numeric string, or an array (its length).
    pub open_cases: String,
    pub last_agent: String,
    pub last_queue: String,
    /// Attribute name → path: extra fields for routing rules (scalars as text, arrays and
    /// objects as compact JSON). Default: none.
    pub attributes: BTreeMap<String, String>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        Self {
            record: String::new(),
            customer_id: "customer_id".into(),
            name: "name".into(),
            company: "company".into(),
            tier: "tier".into(),
            language: "language".into(),
            tags: "tags".into(),
            open_cases: "open_cases".into(),
            last_agent: "last_agent".into(),
            last_queue: "last_queue".into(),
            attributes: BTreeMap::new(),
        }
    }
}

/// `[crm.cache]` (HTTP only: the file directory is already in memory).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Most ANIs kept; 0 turns the cache off (and with it single-flight). Default 100000.
    pub max_entries: u64,
    /// How long a found profile is fresh. Default 300000 (5 minutes).
    pub ttl_ms: u64,
    /// How long "not found" is remembered; 0 does not remember it. Default 30000.
    pub negative_ttl_ms: u64,
    /// Stale-while-revalidate: for this long after expiry the old answer is served at once
    /// while one background request refreshes it; 0 turns it off. Default 0.
    pub stale_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl_ms: 300_000,
            negative_ttl_ms: 30_000,
            stale_ms: 0,
        }
    }
}

/// `[crm.rate_limit]`: requests per second the CRM may receive from this node (HTTP only).
/// A lookup over the cap does not wait: the call routes without CRM data (`rate-limited`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// 0 means unlimited. Default 50.
    pub per_second: u32,
    /// Requests allowed at once after a quiet spell. Default: `per_second`.
    pub burst: Option<u32>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: None,
        }
    }
}

/// `[crm.breaker]`: stop asking a failing CRM (HTTP only).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed requests (timeout, transport, non-2xx other than 404, bad answer)
    /// that open the breaker; 0 turns it off. Default 5.
    pub failures: u32,
    /// How long it stays open before one probe request is let through; the probe's success
    /// closes it, its failure opens it again. Default 5000.
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown_ms: 5_000,
        }
    }
}

impl LookupConfig {
    /// No CRM at all.
    pub fn none() -> Self {
        Self {
            kind: Kind::None,
            ..Self::default()
        }
    }

    /// Every problem found without touching the environment or the file system, with keys in
    /// the form `crm.http.url`. Only the selected kind's section
    /// is checked.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems: Vec<Problem> = Vec::new();
        let mut add =
            |key: &str, message: String| problems.push(Problem::new(format!("crm.{key}"), message));
        match self.kind {
            Kind::None => return Vec::new(),
            Kind::File => {
                if self.file.path.as_os_str().is_empty() {
                    add("file.path", "must name the directory file".into());
                }
                if let Some(region) = &self.file.region {
                    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_alphabetic()) {
                        add(
                            "file.region",
                            format!("{region:?} is not an ISO 3166 region code such as \"US\""),
                        );
                    }
                }
            }
            Kind::Http => {
                let h = &self.http;
                if h.url.is_empty() {
                    add("http.url", "required for kind = \"http\"".into());
                } else {
                    match Template::parse(&h.url, Context::Url) {
                        Err(e) => add("http.url", e),
                        Ok(t) => {
                            let sample = tollgate_core::E164::from_digits("12125550100")
                                .map(|n| t.render(&n, None, Context::Url))
                                .unwrap_or_default();
                            match reqwest::Url::parse(&sample) {
                                Err(e) => add("http.url", format!("not a valid URL: {e}")),
                                Ok(u) if !matches!(u.scheme(), "http" | "https") => add(
                                    "http.url",
                                    format!("scheme {:?}: only http and https", u.scheme()),
                                ),
                                Ok(_) => {}
                            }
                            if !t.has_placeholder() && h.body.is_none() {
                                add(
                                    "http.url",
                                    "has no {e164}, {digits} or {national}: every caller would \
                                     get the same answer"
                                        .into(),
                                );
                            }
                        }
                    }
                }
                if h.body.is_some() && h.method == Method::Get {
                    add("http.body", "a body needs method = \"POST\"".into());
                }
                for (name, value) in &h.headers {
                    let key = format!("http.headers.{name}");
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        add(&key, "not a valid header name".into());
                    }
                    if let Err(e) = HeaderSpec::parse(value) {
                        add(&key, e);
                    }
                }
                if h.connect_timeout_ms == 0 {
                    add("http.connect_timeout_ms", "must be at least 1".into());
                }
                if h.timeout_ms == 0 {
                    add("http.timeout_ms", "must be at least 1".into());
                }
                if h.max_response_bytes == 0 {
                    add("http.max_response_bytes", "must be at least 1".into());
                }
                if let Err(mapping) = Mapping::compile(&h.mapping, "crm.http.mapping") {
                    problems.extend(mapping);
                }
                let mut add = |key: &str, message: String| {
                    problems.push(Problem::new(format!("crm.{key}"), message));
                };
                if self.cache.max_entries > 0 && self.cache.ttl_ms == 0 {
                    add(
                        "cache.ttl_ms",
                        "must be at least 1 (or max_entries = 0)".into(),
                    );
                }
                if self.rate_limit.burst == Some(0) {
                    add("rate_limit.burst", "must be at least 1".into());
                }
                if self.breaker.failures > 0 && self.breaker.cooldown_ms == 0 {
                    add(
                        "breaker.cooldown_ms",
                        "must be at least 1 (or failures = 0)".into(),
                    );
                }
            }
        }
        if self.deadline_ms == 0 {
            problems.push(Problem::new("crm.deadline_ms", "must be at least 1"));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_is_the_file_default() {
        let cfg: LookupConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, LookupConfig::default());
        assert_eq!(cfg.kind, Kind::File);
        assert!(cfg.validate().is_empty());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<LookupConfig>("kind = \"http\"\n[http]\nurll = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn validate_reports_every_problem() {
        let cfg: LookupConfig = toml::from_str(
            r#"
            kind = "http"
            deadline_ms = 0
            [http]
            url = "ftp://crm/{ani}"
            body = "{}"
            connect_timeout_ms = 0
            [http.headers]
            "Bad Name" = "env:"
            [http.mapping]
            customer_id = ""
            name = "a..b"
            [http.mapping.attributes]
            segment = "x[y]"
            [rate_limit]
            burst = 0
            "#,
        )
        .unwrap();
        let keys: Vec<String> = cfg.validate().into_iter().map(|p| p.key).collect();
        for want in [
            "crm.http.url",
            "crm.http.body",
            "crm.http.headers.Bad Name",
            "crm.http.connect_timeout_ms",
            "crm.http.mapping.customer_id",
            "crm.http.mapping.name",
            "crm.http.mapping.attributes.segment",
            "crm.rate_limit.burst",
            "crm.deadline_ms",
        ] {
            assert!(keys.iter().any(|k| k == want), "missing {want} in {keys:?}");
        }
    }

    #[test]
    fn debug_redacts_header_values_and_body() {
        let mut cfg = LookupConfig::default();
        cfg.http
            .headers
            .insert("Authorization".into(), "Bearer s3cret-literal".into());
        cfg.http.body = Some("{\"key\":\"s3cret-body\"}".into());
        let shown = format!("{cfg:?}");
        assert!(shown.contains("Authorization"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
