//! Wiring of the HTTP API (tollgate-api): the `[http]` config section, the admin operations the
//! API exposes, the Prometheus recorder, and publishing a screen pop per routed call.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tollgate_api::{
    Admin, Api, ApiConfig, BusConfig, BusTarget, HubConfig, PrometheusHandle, Scope, Secret, Token,
    WebhookConfig, WebhookSettings,
};
use toml::Spanned;

use crate::config::ConfigError;

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
