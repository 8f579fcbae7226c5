//! Wiring of the HTTP API (tollgate-api): the `[http]` config section, the admin operations the
//! API exposes, the Prometheus recorder, and publishing a screen pop per routed call.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tollgate_api::{
    Admin, AdminError, AdminResult, Api, ApiConfig, BoxFuture, BusConfig, BusTarget,
    ExplainRequest, HubConfig, ListAdd, PrometheusHandle, Publisher, Scope, ScreenPop, Secret,
    Token, WebhookConfig, WebhookSettings,
};
use tollgate_core::{Attestation, CallerProfile, Decision, RiskLevel};
use tollgate_sip::Call;
use toml::Spanned;

use crate::config::ConfigError;
use crate::pipeline::Pipeline;

/// `[http]`: the API listener, tokens, webhooks, pop retention and cross-node fan-out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// `IP:port` of the API (its own listener, never the SIP one).
    pub listen: Spanned<String>,
    /// This node's name in pops (default: random per process).
    #[serde(default)]
    pub node: Option<String>,
    /// How long a pop stays fetchable by call reference.
    #[serde(default = "d3600")]
    pub retention_s: u64,
    /// At most this many pops are kept (oldest dropped first).
    #[serde(default = "d100000")]
    pub max_pops: usize,
    /// Fan-out across nodes through Redis pub/sub; absent: pops stay on this node.
    #[serde(default)]
    pub redis_url: Option<Spanned<String>>,
    /// Fan-out through a Redis Cluster instead (seed nodes, `host:port` or URLs): the channel is
    /// a shard channel (`SPUBLISH`/`SSUBSCRIBE`). Exclusive with `redis_url`.
    #[serde(default)]
    pub redis_cluster: Vec<Spanned<String>>,
    #[serde(default = "default_channel")]
    pub redis_channel: String,
    /// How long a desktop's stream ticket is valid.
    #[serde(default = "d60")]
    pub ticket_ttl_s: u64,
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenSection>,
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<WebhookSection>,
    #[serde(default = "d1024")]
    pub webhook_queue: usize,
    #[serde(default = "d5")]
    pub webhook_attempts: u32,
    #[serde(default = "d500")]
    pub webhook_backoff_ms: u64,
    #[serde(default = "d5000")]
    pub webhook_timeout_ms: u64,
}

/// `[[http.token]]`: one bearer token. Its value comes from exactly one of `token_env`,
/// `token_file` or (examples only) `token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    pub name: Spanned<String>,
    /// "agent" (the listed queues' pops) or "admin" (everything).
    pub scope: Spanned<String>,
    #[serde(default)]
    pub queues: Vec<String>,
    #[serde(default)]
    pub token: Option<Spanned<String>>,
    #[serde(default)]
    pub token_env: Option<Spanned<String>>,
    #[serde(default)]
    pub token_file: Option<Spanned<String>>,
}

/// `[[http.webhook]]`: pops POSTed to a URL, signed with a secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    /// Only these queues' pops; empty: every queue.
    #[serde(default)]
    pub queues: Vec<String>,
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
    #[serde(default)]
    pub secret_env: Option<Spanned<String>>,
    #[serde(default)]
    pub secret_file: Option<Spanned<String>>,
}

fn default_channel() -> String {
    "tollgate:pops".into()
}
const fn d60() -> u64 {
    60
}
const fn d3600() -> u64 {
    3600
}
const fn d100000() -> usize {
    100_000
}
const fn d1024() -> usize {
    1024
}
const fn d5() -> u32 {
    5
}
const fn d500() -> u64 {
    500
}
const fn d5000() -> u64 {
    5000
}

/// The validated `[http]` section.
#[derive(Debug)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub api: ApiConfig,
    /// The config file and its text: the API's explain re-reads it, and its config view shows
    /// it with secrets redacted.
    pub source: (PathBuf, String),
    /// Names of tokens written inline in the config (warned about at start-up).
    pub inline_tokens: Vec<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// Validates `[http]`; problems are appended to `errors`.
pub fn settings(
    section: Option<&HttpSection>,
    path: &Path,
    text: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<HttpSettings> {
    let s = section?;
    let err =
        |errors: &mut Vec<ConfigError>, span: std::ops::Range<usize>, key: String, m: String| {
            errors.push(ConfigError {
                file: path.to_owned(),
                line: (span.end > 0).then(|| line_of(text, span.start)),
                key,
                message: m,
            });
        };
    let before = errors.len();
    let listen = match s.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            err(
                errors,
                s.listen.span(),
                "http.listen".into(),
                format!("{:?} is not an IP:port address", s.listen.get_ref()),
            );
            None
        }
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    // One of inline / env / file: the secret's value, or an error message.
    let value = |inline: &Option<Spanned<String>>,
                 env: &Option<Spanned<String>>,
                 file: &Option<Spanned<String>>,
                 what: &str|
     -> Result<(String, bool), String> {
        match (inline, env, file) {
            (Some(v), None, None) => Ok((v.get_ref().clone(), true)),
            (None, Some(var), None) => std::env::var(var.get_ref())
                .map(|v| (v.trim().to_owned(), false))
                .map_err(|_| format!("environment variable {:?} is not set", var.get_ref())),
            (None, None, Some(f)) => std::fs::read_to_string(base.join(f.get_ref()))
                .map(|v| (v.trim().to_owned(), false))
                .map_err(|e| format!("cannot read {:?}: {e}", f.get_ref())),
            _ => Err(format!(
                "set exactly one of `{what}_env`, `{what}_file` or `{what}`"
            )),
        }
    };
    let mut tokens = Vec::new();
    let mut inline_tokens = Vec::new();
    let mut names = HashSet::new();
    for (i, t) in s.tokens.iter().enumerate() {
        let key = |k: &str| format!("http.token[{i}].{k}");
        let name = t.name.get_ref().clone();
        if !names.insert(name.clone()) {
            err(
                errors,
                t.name.span(),
                key("name"),
                format!("duplicate token name {name:?}"),
            );
        }
        let scope = match t.scope.get_ref().as_str() {
            "admin" => Some(Scope::Admin),
            "agent" if t.queues.is_empty() => {
                err(
                    errors,
                    t.scope.span(),
                    key("queues"),
                    "an agent token needs `queues` (the queues it may read, or [\"*\"])".into(),
                );
                None
            }
            "agent" => Some(Scope::Agent {
                queues: t.queues.clone(),
            }),
            other => {
                err(
                    errors,
                    t.scope.span(),
                    key("scope"),
                    format!("{other:?}: expected \"agent\" or \"admin\""),
                );
                None
            }
        };
        match value(&t.token, &t.token_env, &t.token_file, "token") {
            Ok((v, _)) if v.len() < 16 => err(
                errors,
                t.name.span(),
                key("token"),
                "the token is shorter than 16 characters".into(),
            ),
            Ok((v, inline)) => {
                if inline {
                    inline_tokens.push(name.clone());
                }
                if let Some(scope) = scope {
                    tokens.push(Token {
                        name,
                        secret: Secret::new(v),
                        scope,
                    });
                }
            }
            Err(m) => err(errors, t.name.span(), key("token"), m),
        }
    }
    let mut webhooks = Vec::new();
    for (i, w) in s.webhooks.iter().enumerate() {
        let key = |k: &str| format!("http.webhook[{i}].{k}");
        let url = w.url.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            err(
                errors,
                w.url.span(),
                key("url"),
                "expected an http:// or https:// URL".into(),
            );
        }
        match value(&w.secret, &w.secret_env, &w.secret_file, "secret") {
            Ok((secret, _)) => webhooks.push(WebhookConfig {
                name: w.name.get_ref().clone(),
                url: url.clone(),
                secret: Secret::new(secret),
                queues: w.queues.clone(),
            }),
            Err(m) => err(errors, w.name.span(), key("secret"), m),
        }
    }
    if let Some(u) = &s.redis_url {
        if redis_url_ok(u.get_ref()).is_err() {
            err(
                errors,
                u.span(),
                "http.redis_url".into(),
                "expected redis://[user:password@]host[:port][/db]".into(),
            );
        }
    }
    if let (Some(u), Some(_)) = (&s.redis_url, s.redis_cluster.first()) {
        err(
            errors,
            u.span(),
            "http.redis_cluster".into(),
            "set either redis_url (one Redis) or redis_cluster (a Redis Cluster), not both".into(),
        );
    }
    let mut cluster = Vec::with_capacity(s.redis_cluster.len());
    for (i, n) in s.redis_cluster.iter().enumerate() {
        match tollgate_risk::cluster_node_url(n.get_ref()) {
            Some(u) => cluster.push(u),
            None => err(
                errors,
                n.span(),
                "http.redis_cluster".into(),
                format!(
                    "node {}: expected redis://[user:password@]host:port or host:port",
                    i + 1
                ),
            ),
        }
    }
    if errors.len() > before {
        return None;
    }
    let bus_target = match &s.redis_url {
        Some(u) => Some(BusTarget::Single(u.get_ref().clone())),
        None if !cluster.is_empty() => Some(BusTarget::Cluster(cluster)),
        None => None,
    };
    let mut tokens_seen = HashSet::new();
    for t in &tokens {
        if !tokens_seen.insert(t.secret.expose().to_owned()) {
            errors.push(ConfigError {
                file: path.to_owned(),
                line: None,
                key: "http.token".into(),
                message: format!("token {:?} has the same value as another token", t.name),
            });
            return None;
        }
    }
    Some(HttpSettings {
        listen: listen?,
        api: ApiConfig {
            hub: HubConfig {
                retention: Duration::from_secs(s.retention_s),
                capacity: s.max_pops.max(1),
                node: s.node.clone().unwrap_or_else(tollgate_api::default_node),
                ..HubConfig::default()
            },
            tokens,
            ticket_ttl: Duration::from_secs(s.ticket_ttl_s.max(1)),
            webhooks,
            webhook_settings: WebhookSettings {
                queue: s.webhook_queue.max(1),
                attempts: s.webhook_attempts.max(1),
                backoff: Duration::from_millis(s.webhook_backoff_ms),
                timeout: Duration::from_millis(s.webhook_timeout_ms.max(1)),
                ..WebhookSettings::default()
            },
            bus: bus_target.map(|target| BusConfig {
                target,
                channel: s.redis_channel.clone(),
            }),
        },
        source: (path.to_owned(), text.to_owned()),
        inline_tokens,
    })
}

fn redis_url_ok(url: &str) -> Result<(), ()> {
    redis_url_parts(url).map(|_| ())
}

fn redis_url_parts(url: &str) -> Result<&str, ()> {
    url.strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .filter(|rest| !rest.is_empty())
        .ok_or(())
}

/// The process-wide Prometheus recorder, installed on first use; `None` when another recorder
/// was installed first (an embedding program's, or a test's).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latency histograms in seconds, from 10 µs (a routed call) to 5 s (a timeout).
            let buckets = [
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15,
                0.25, 0.5, 1.0, 2.0, 5.0,
            ];
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .ok()?;
            init_alerted_series();
            Some(handle)
        })
        .clone()
}

/// The counters and gauges the shipped alerts (deploy/prometheus/alerts.yml) watch, present
/// at zero from the start: an alert on a series that does not exist yet cannot fire, and a
/// series that appears only with its first event has no rate until its second.
/// `tests/deploy.rs` fails if the alerts or the dashboard name a metric a node does not export.
fn init_alerted_series() {
    for name in [
        "tollgate_sip_shed_total",
        "tollgate_decision_timeouts_total",
        "tollgate_sip_drain_abandoned_total",
        "tollgate_risk_store_errors_total",
        "tollgate_risk_lists_emptied_total",
        "tollgate_pops_dropped_total",
        "tollgate_redis_errors_total",
        "tollgate_rules_reloads_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("tollgate_crm_breaker_open").set(0.0);
}

/// Drains the recorder's histogram samples into their buckets every 5 s. The recorder keeps
/// each sample until a scrape or an upkeep folds it in, so without this a node nobody scrapes
/// grows by every call's latencies: 8 bytes per sample, five samples per call, about 40 MB per
/// million calls, for good (issue 18, found with dhat). Ends with the runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// The screen pop for a routed call, handed to the hub without waiting.
pub fn publish_pop(publisher: &Publisher, call: &Call, decision: &Decision) {
    if let Some(pop) = ScreenPop::build(
        &call.facts,
        decision,
        &call.call_ref,
        publisher.node(),
        jiff::Timestamp::now(),
        call.received.elapsed(),
    ) {
        publisher.publish(pop);
    }
}

/// The admin operations this engine has.
#[derive(Debug)]
pub struct ServerAdmin {
    /// The live pipeline: explain decides with it, in dry-run mode.
    pipeline: Arc<Pipeline>,
    /// The config text, for the redacted config view.
    source_text: String,
    /// The configured list store (`[risk]`), as `tollgate list` opens it.
    lists: Option<tollgate_risk::ListAdmin>,
    /// The CRM cache (`[crm]`).
    lookup: Option<tollgate_lookup::Lookup>,
    /// Secret values the config reads from the environment or files, so that the config
    /// view can never show them, whatever key holds them.
    secrets: Vec<String>,
    /// Set when SIP starts draining: `/readyz` answers 503 from then on, so a load balancer
    /// or Kubernetes takes the node out while it finishes its calls.
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl ServerAdmin {
    /// With list management and CRM invalidation for what `[risk]` and `[crm]` configure.
    /// Must run inside a Tokio runtime (a Redis list store connects on open).
    pub fn new(
        settings: &HttpSettings,
        pipeline: Arc<Pipeline>,
        cfg: &crate::Loaded,
        adapters: &crate::adapters::Adapters,
        draining: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let lists = cfg.risk.as_ref().and_then(|risk| {
            tollgate_risk::ListAdmin::open(risk, &cfg.base_dir)
                .map_err(|e| tracing::warn!(error = %e, "admin API: list management unavailable"))
                .ok()
        });
        Self {
            pipeline,
            source_text: settings.source.1.clone(),
            lists,
            lookup: adapters.lookup.clone(),
            secrets: settings
                .api
                .tokens
                .iter()
                .map(|t| t.secret.expose().to_owned())
                .chain(
                    settings
                        .api
                        .webhooks
                        .iter()
                        .map(|w| w.secret.expose().to_owned()),
                )
                .collect(),
            draining,
        }
    }

    fn lists(&self) -> Result<&tollgate_risk::ListAdmin, AdminError> {
        self.lists.as_ref().ok_or_else(|| {
            AdminError::NotImplemented("no [risk] section: there are no lists to manage".into())
        })
    }
}

fn list_kind(name: &str) -> Result<tollgate_risk::ListKind, AdminError> {
    name.parse()
        .map_err(|_| AdminError::BadRequest(format!("list {name:?}: block, gray or allow")))
}

fn risk_error(e: &tollgate_risk::RiskError) -> AdminError {
    match e {
        tollgate_risk::RiskError::InvalidEntry(_) => AdminError::BadRequest(e.to_string()),
        _ => AdminError::Unavailable(e.to_string()),
    }
}

fn entry_json(e: &tollgate_risk::ListEntry) -> serde_json::Value {
    serde_json::json!({
        "list": e.list.to_string(),
        "pattern": e.pattern.to_string(),
        "reason": e.reason,
        "who": e.who,
        "added_at": e.added_at,
        "expires_at": e.expires_at,
    })
}

fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, T> {
    Box::pin(std::future::ready(v))
}

impl Admin for ServerAdmin {
    fn ready(&self) -> Result<(), String> {
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("draining: new calls are answered 503".into());
        }
        Ok(())
    }

    fn lists_show(&self, list: Option<String>) -> BoxFuture<'_, AdminResult> {
        Box::pin(async move {
            let kind = list.as_deref().map(list_kind).transpose()?;
            let entries = self.lists()?.show().await.map_err(|e| risk_error(&e))?;
            let shown: Vec<_> = entries
                .iter()
                .filter(|e| kind.is_none_or(|k| e.list == k))
                .map(entry_json)
                .collect();
            Ok(serde_json::json!({ "entries": shown }))
        })
    }

    fn lists_add(&self, list: String, entry: ListAdd) -> BoxFuture<'_, AdminResult> {
        Box::pin(async move {
            let kind = list_kind(&list)?;
            let who = entry.who.unwrap_or_else(|| "api".into());
            let e = self
                .lists()?
                .add(
                    kind,
                    &entry.pattern,
                    &entry.reason,
                    &who,
                    entry.expires_at,
                    std::time::SystemTime::now(),
                )
                .await
                .map_err(|e| risk_error(&e))?;
            Ok(entry_json(&e))
        })
    }

    fn lists_remove(&self, list: String, pattern: String) -> BoxFuture<'_, AdminResult> {
        Box::pin(async move {
            let kind = list_kind(&list)?;
            let removed = self
                .lists()?
                .remove(kind, &pattern)
                .await
                .map_err(|e| risk_error(&e))?;
            if removed {
                Ok(serde_json::json!({ "removed": true }))
            } else {
                Err(AdminError::NotFound(format!(
                    "{list} {pattern}: no such entry"
                )))
            }
        })
    }

    fn crm_invalidate(&self, number: Option<String>) -> BoxFuture<'_, AdminResult> {
        Box::pin(async move {
            let lookup = self.lookup.as_ref().ok_or_else(|| {
                AdminError::NotImplemented("no [crm] section: there is no CRM cache".into())
            })?;
            match number {
                None => {
                    lookup.invalidate_all();
                    Ok(serde_json::json!({ "invalidated": "all" }))
                }
                Some(n) => {
                    let e164 = n
                        .strip_prefix('+')
                        .and_then(tollgate_core::E164::from_digits)
                        .ok_or_else(|| {
                            AdminError::BadRequest(format!("{n:?}: expected E.164 with +"))
                        })?;
                    lookup.invalidate(&e164).await;
                    Ok(serde_json::json!({ "invalidated": n }))
                }
            }
        })
    }

    fn reload_rules(&self) -> BoxFuture<'_, AdminResult> {
        let result = match self.pipeline.rules.reload() {
            Ok(version) => Ok(serde_json::json!({ "version": version })),
            Err(errors) => Err(AdminError::Failed {
                message: "the rules have errors; the old rules stay live".into(),
                details: errors.iter().map(ToString::to_string).collect(),
            }),
        };
        ready(result)
    }

    fn explain(&self, call: ExplainRequest) -> BoxFuture<'_, AdminResult> {
        Box::pin(self.explain_call(call))
    }

    fn config(&self) -> AdminResult {
        let value: toml::Table = toml::from_str(&self.source_text)
            .map_err(|e| AdminError::Unavailable(format!("config: {}", e.message())))?;
        let mut json = serde_json::to_value(value)
            .map_err(|e| AdminError::Unavailable(format!("config: {e}")))?;
        redact(&mut json, false);
        redact_values(&mut json, &self.secrets);
        Ok(json)
    }
}

impl ServerAdmin {
    async fn explain_call(&self, call: ExplainRequest) -> AdminResult {
        let bad = |m: String| AdminError::BadRequest(m);
        let at = call
            .at
            .as_deref()
            .map(|s| {
                s.parse::<jiff::Timestamp>()
                    .map_err(|e| bad(format!("at: {e}")))
            })
            .transpose()?;
        let risk = call
            .risk
            .as_deref()
            .map(|r| {
                RiskLevel::from_name(r)
                    .ok_or_else(|| bad(format!("risk {r:?}: low, elevated, high or blocked")))
            })
            .transpose()?;
        let attestation = match call.attestation.as_deref() {
            None => None,
            Some("A") => Some(Attestation::A),
            Some("B") => Some(Attestation::B),
            Some("C") => Some(Attestation::C),
            Some(o) => return Err(bad(format!("attestation {o:?}: A, B or C"))),
        };
        let source = call
            .source
            .as_deref()
            .map(|s| {
                s.parse::<std::net::IpAddr>()
                    .map_err(|_| bad(format!("source {s:?} is not an IP address")))
            })
            .transpose()?;
        if call.sip.is_none() && (call.ani.is_empty() || call.dnis.is_empty()) {
            return Err(bad("give `ani` and `dnis`, or `sip`".into()));
        }
        let profile = call.profile.map(|p| CallerProfile {
            customer_id: p.customer_id.unwrap_or_default(),
            name: p.name,
            tier: p.tier,
            language: p.language,
            tags: p.tags,
            open_cases: p.open_cases,
            attributes: p.attributes,
            ..CallerProfile::default()
        });
        let spec = crate::cli::CallSpec {
            ani: call.ani,
            dnis: call.dnis,
            trunk: call.trunk,
            source,
            sip: call.sip,
            at,
            overrides: crate::cli::overrides(profile, risk, call.lists, attestation, None),
            fill_cache: call.fill_cache,
        };
        let e = crate::cli::explain_call(&spec, &self.pipeline)
            .await
            .map_err(|e| bad(e.to_string()))?;
        let version = self.pipeline.rules.current().version.clone();
        let record = serde_json::to_value(e.record())
            .map_err(|e| AdminError::Unavailable(format!("explain: {e}")))?;
        Ok(serde_json::json!({
            "decision": format!("{} by {}", e.describe(), e.outcome.decision.rule),
            "rules_version": version,
            "record": record,
            "trace": e.trace(),
            "overridden": e.outcome.overridden,
            "text": crate::cli::render(&e, &version),
        }))
    }
}

/// Replaces secrets in a config tree: token/secret/password values, every header value, and
/// passwords and query values inside URLs.
fn redact(v: &mut serde_json::Value, secret: bool) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                // `token_env`/`token_file` name where a secret lives, not the secret.
                let named = [
                    "token",
                    "secret",
                    "password",
                    "authorization",
                    "api_key",
                    "apikey",
                ]
                .iter()
                .any(|s| k == *s || k.ends_with(&format!("_{s}")));
                if k == "headers" {
                    redact(child, true);
                } else if named && child.is_string() {
                    *child = serde_json::Value::String("***".into());
                } else {
                    redact(child, secret);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|c| redact(c, secret)),
        serde_json::Value::String(s) if secret => *s = "***".into(),
        serde_json::Value::String(s) => {
            if let Some(clean) = redact_url(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host/path?k=v#f` → `scheme://user:***@host/path?k=***#f`: a URL's
/// password and every query value (CRM URLs often carry an API key there), the rest kept.
/// `None` when the string is no URL or has nothing to hide.
pub fn redact_url(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..authority_end)?;
    let tail = rest.get(authority_end..).unwrap_or("");
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}:***@{host}")
        }
        _ => authority.to_owned(),
    };
    let (before_frag, frag) = match tail.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (tail, None),
    };
    let tail = match before_frag.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) if !v.is_empty() => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", q.join("&"))
        }
        None => before_frag.to_owned(),
    };
    let out = match frag {
        Some(f) => format!("{scheme}://{authority}{tail}#{f}"),
        None => format!("{scheme}://{authority}{tail}"),
    };
    (out != s).then_some(out)
}

/// Replaces every occurrence of a known secret value in any string of the tree.
fn redact_values(v: &mut serde_json::Value, secrets: &[String]) {
    match v {
        serde_json::Value::Object(map) => map.values_mut().for_each(|c| redact_values(c, secrets)),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|c| redact_values(c, secrets)),
        serde_json::Value::String(s) => {
            for secret in secrets.iter().filter(|x| x.len() >= 4) {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "***");
                }
            }
        }
        _ => {}
    }
}

/// The API, built and bound (not yet serving).
#[derive(Debug)]
pub struct Http {
    pub api: Api,
    pub listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
}

/// Binds `[http].listen` and starts the pop hub (webhooks, Redis). `None` without `[http]`.
pub async fn start(
    settings: Option<&HttpSettings>,
    admin: Arc<dyn Admin>,
) -> std::io::Result<Option<Http>> {
    let Some(s) = settings else {
        return Ok(None);
    };
    for name in &s.inline_tokens {
        tracing::warn!(token = %name, "http token written inline in the config: use token_env or token_file outside examples");
    }
    let handle = metrics_handle();
    if let Some(h) = handle.clone() {
        spawn_upkeep(h);
    }
    let api = Api::start(s.api.clone(), admin, handle).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(s.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(http = %addr, node = %s.api.hub.node, "HTTP API listening");
    Ok(Some(Http {
        api,
        listener,
        addr,
    }))
}

impl Http {
    /// Serves in a task until [`Serving::stop`].
    pub fn spawn(self) -> Serving {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.api.run(self.listener, async move {
            let _ = rx.await;
        }));
        Serving { stop, task }
    }
}

/// The API serving in the background.
#[derive(Debug)]
pub struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    /// Ends every stream, stops the listener and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "HTTP API stopped with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_secrets_and_url_passwords() {
        let mut v = serde_json::json!({
            "http": {"redis_url": "redis://u:pw@r:6379/0",
                     "token": [{"name": "a", "token": "abc", "token_env": "VAR"}]},
            "crm": {"http": {"headers": {"X-Key": "k"}, "url": "https://crm/x"}}
        });
        redact(&mut v, false);
        assert_eq!(v["http"]["redis_url"], "redis://u:***@r:6379/0");
        assert_eq!(v["http"]["token"][0]["token"], "***");
        assert_eq!(v["http"]["token"][0]["token_env"], "VAR");
        assert_eq!(v["http"]["token"][0]["name"], "a");
        assert_eq!(v["crm"]["http"]["headers"]["X-Key"], "***");
        assert_eq!(v["crm"]["http"]["url"], "https://crm/x");
    }

    #[test]
    fn url_query_values_and_passwords_are_redacted() {
        assert_eq!(
            redact_url("https://crm.example/callers/{digits}?api_key=s3cr3t&fmt=json").as_deref(),
            Some("https://crm.example/callers/{digits}?api_key=***&fmt=***")
        );
        assert_eq!(
            redact_url("rediss://default:pw@r:6380/1?x=1#frag").as_deref(),
            Some("rediss://default:***@r:6380/1?x=***#frag")
        );
        assert_eq!(redact_url("https://crm.example/x"), None);
        assert_eq!(redact_url("not a url"), None);
        let mut v = serde_json::json!({"crm": {"http": {"body": "{\"key\":\"tok-123456\"}"}}});
        redact_values(&mut v, &["tok-123456".to_owned()]);
        assert_eq!(v["crm"]["http"]["body"], "{\"key\":\"***\"}");
    }
}
