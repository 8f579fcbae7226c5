//! `[risk.stir]` settings.

use std::path::PathBuf;

use serde::Deserialize;
use tollgate_core::Problem;

/// Verifier settings. Only `trust_anchors_dir` is required.
///
/// ```toml
/// [risk.stir]
/// trust_anchors_dir = "/etc/tollgate/sti-ca"   # PEM files of the STI-PA trust list
/// allowed_hosts = ["*.sticr.example", "cr.example.net"]  # [] (default) fetches nothing; "*" any name
/// freshness_s = 60            # max iat age (RFC 8224 §6.2 step 4 recommends 60)
/// max_future_skew_s = 5       # an iat further ahead than this is refused
/// fetch_timeout_ms = 1000     # connect + whole request, per x5u fetch
/// cert_cache_entries = 1024   # distinct x5u URLs kept
/// default_cert_ttl_s = 3600   # when the response has no Cache-Control max-age
/// max_cert_ttl_s = 86400      # cap on max-age
/// allow_http = false          # tests only: also fetch plain http:// x5u
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StirConfig {
    /// Directory of PEM (`.pem`, `.crt`, `.cer`) trust anchors, read once at construction.
    pub trust_anchors_dir: PathBuf,
    /// Hosts x5u may name: exact names or IPs, `*.domain` for subdomains, `*` for any DNS name
    /// (IP literals must be listed exactly). Empty, the default, fetches nothing: every call
    /// then fails 436, which is safer than letting callers make us request arbitrary URLs.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default = "defaults::freshness_s")]
    pub freshness_s: u64,
    #[serde(default = "defaults::max_future_skew_s")]
    pub max_future_skew_s: u64,
    #[serde(default = "defaults::fetch_timeout_ms")]
    pub fetch_timeout_ms: u64,
    #[serde(default = "defaults::cert_cache_entries")]
    pub cert_cache_entries: u64,
    #[serde(default = "defaults::default_cert_ttl_s")]
    pub default_cert_ttl_s: u64,
    #[serde(default = "defaults::max_cert_ttl_s")]
    pub max_cert_ttl_s: u64,
    /// Plain-http x5u, for tests against a local server only.
    #[serde(default)]
    pub allow_http: bool,
}

impl StirConfig {
    /// Every problem the settings have on their own, without reading a file or the network,
    /// each under its own key inside the section (`fetch_timeout_ms`): the server names the
    /// section. [`crate::Verifier::new`] then reads the
    /// trust anchors, whose problems [`crate::ConfigError::key`] names `trust_anchors_dir`.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.trust_anchors_dir.as_os_str().is_empty() {
            problems.push(Problem::new("trust_anchors_dir", "empty path"));
        }
        if self.fetch_timeout_ms == 0 {
            problems.push(Problem::new("fetch_timeout_ms", "must be positive"));
        }
        if self.default_cert_ttl_s > self.max_cert_ttl_s {
            problems.push(Problem::new(
                "default_cert_ttl_s",
                format!("above max_cert_ttl_s ({})", self.max_cert_ttl_s),
            ));
        }
        if let Err(e) = crate::fetch::UrlPolicy::new(&self.allowed_hosts, self.allow_http) {
            problems.push(Problem::new(e.key(), e.to_string()));
        }
        problems
    }

    /// The defaults, with the required anchor directory.
    pub fn new(trust_anchors_dir: impl Into<PathBuf>) -> Self {
        StirConfig {
            trust_anchors_dir: trust_anchors_dir.into(),
            allowed_hosts: Vec::new(),
            freshness_s: defaults::freshness_s(),
            max_future_skew_s: defaults::max_future_skew_s(),
            fetch_timeout_ms: defaults::fetch_timeout_ms(),
            cert_cache_entries: defaults::cert_cache_entries(),
            default_cert_ttl_s: defaults::default_cert_ttl_s(),
            max_cert_ttl_s: defaults::max_cert_ttl_s(),
            allow_http: false,
        }
    }
}

mod defaults {
    pub fn freshness_s() -> u64 {
        60
    }
    pub fn max_future_skew_s() -> u64 {
        5
    }
    pub fn fetch_timeout_ms() -> u64 {
        1000
    }
    pub fn cert_cache_entries() -> u64 {
        1024
    }
    pub fn default_cert_ttl_s() -> u64 {
        3600
    }
    pub fn max_cert_ttl_s() -> u64 {
        86_400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Root {
        risk: Risk,
    }
    #[derive(Deserialize)]
    struct Risk {
        stir: StirConfig,
    }

    #[test]
    fn toml_defaults_and_unknown_keys() {
        let r: Root = toml::from_str("[risk.stir]\ntrust_anchors_dir = \"/etc/sti\"\n").unwrap();
        assert_eq!(r.risk.stir, StirConfig::new("/etc/sti"));
        assert_eq!(r.risk.stir.freshness_s, 60);
        assert!(r.risk.stir.allowed_hosts.is_empty());
        assert!(!r.risk.stir.allow_http);

        let r: Root = toml::from_str(
            "[risk.stir]\ntrust_anchors_dir = \"a\"\nallowed_hosts = [\"*.x\"]\nfreshness_s = 30\nallow_http = true\n",
        )
        .unwrap();
        assert_eq!(r.risk.stir.allowed_hosts, vec!["*.x".to_string()]);
        assert_eq!(r.risk.stir.freshness_s, 30);
        assert!(r.risk.stir.allow_http);

        assert!(
            toml::from_str::<Root>("[risk.stir]\ntrust_anchors_dir = \"a\"\nfreshnes_s = 1\n")
                .is_err()
        );
        assert!(toml::from_str::<Root>("[risk.stir]\nfreshness_s = 1\n").is_err());
    }

    #[test]
    fn doc_example_parses() {
        let doc = "[risk.stir]
trust_anchors_dir = \"/etc/tollgate/sti-ca\"
allowed_hosts = [\"*.sticr.example\", \"cr.example.net\"]
freshness_s = 60
max_future_skew_s = 5
fetch_timeout_ms = 1000
cert_cache_entries = 1024
default_cert_ttl_s = 3600
max_cert_ttl_s = 86400
allow_http = false
";
        let r: Root = toml::from_str(doc).unwrap();
        assert_eq!(r.risk.stir.allowed_hosts.len(), 2);
    }
}
