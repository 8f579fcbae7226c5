//! `[http]`: the API listener, its tokens, webhooks, pop retention and cross-node fan-out. The
//! token and secret files and variables are read here, once.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tollgate_api::{
    ApiConfig, BusConfig, BusTarget, HubConfig, Scope, Secret, Token, WebhookConfig,
    WebhookSettings,
};
use toml::Spanned;

use super::Errors;

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

/// Validates `[http]` (reading the token and secret files and variables it names).
pub(super) fn settings(
    errs: &mut Errors<'_>,
    section: Option<&HttpSection>,
    path: &Path,
    text: &str,
) -> Option<HttpSettings> {
    let s = section?;
    let err = |errs: &mut Errors<'_>, span: std::ops::Range<usize>, key: String, m: String| {
        errs.push_span(span, key, m);
    };
    let before = errs.count();
    let listen = match s.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            err(
                errs,
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
                errs,
                t.name.span(),
                key("name"),
                format!("duplicate token name {name:?}"),
            );
        }
        let scope = match t.scope.get_ref().as_str() {
            "admin" => Some(Scope::Admin),
            "agent" if t.queues.is_empty() => {
                err(
                    errs,
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
                    errs,
                    t.scope.span(),
                    key("scope"),
                    format!("{other:?}: expected \"agent\" or \"admin\""),
                );
                None
            }
        };
        match value(&t.token, &t.token_env, &t.token_file, "token") {
            Ok((v, _)) if v.len() < 16 => err(
                errs,
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
            Err(m) => err(errs, t.name.span(), key("token"), m),
        }
    }
    let mut webhooks = Vec::new();
    for (i, w) in s.webhooks.iter().enumerate() {
        let key = |k: &str| format!("http.webhook[{i}].{k}");
        let url = w.url.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            err(
                errs,
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
            Err(m) => err(errs, w.name.span(), key("secret"), m),
        }
    }
    if let Some(u) = &s.redis_url {
        if redis_url_ok(u.get_ref()).is_err() {
            err(
                errs,
                u.span(),
                "http.redis_url".into(),
                "expected redis://[user:password@]host[:port][/db]".into(),
            );
        }
    }
    if let (Some(u), Some(_)) = (&s.redis_url, s.redis_cluster.first()) {
        err(
            errs,
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
                errs,
                n.span(),
                "http.redis_cluster".into(),
                format!(
                    "node {}: expected redis://[user:password@]host:port or host:port",
                    i + 1
                ),
            ),
        }
    }
    if errs.count() > before {
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
            errs.unplaced(
                "http.token",
                format!("token {:?} has the same value as another token", t.name),
            );
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
