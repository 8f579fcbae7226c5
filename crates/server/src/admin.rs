//! The admin API's operations over this node's own adapters ([`ServerAdmin`]): explain with the
//! live pipeline in dry-run mode, list management, CRM cache invalidation, the redacted config
//! view and readiness.

use std::sync::Arc;

use tollgate_api::{Admin, AdminError, AdminResult, BoxFuture, ExplainRequest, ListAdd, RulesSwap};
use tollgate_core::{Attestation, CallerProfile, RiskLevel};

use crate::adapters::Adapters;
use crate::config::HttpSettings;
use crate::pipeline::Pipeline;

/// The admin operations this engine has.
#[derive(Debug)]
pub struct ServerAdmin {
    /// The live pipeline: explain decides with it, in dry-run mode.
    pipeline: Arc<Pipeline>,
    /// The config text, for the redacted config view.
    source_text: String,
    /// The risk engine's own list store (`[risk]`).
    lists: Option<tollgate_risk::ListAdmin>,
    /// The CRM cache (`[crm]`).
    lookup: Option<tollgate_crm::Lookup>,
    /// Secret values the config reads from the environment or files, so that the config
    /// view can never show them, whatever key holds them.
    secrets: Vec<String>,
    /// Set when SIP starts draining: `/readyz` answers 503 from then on, so a load balancer
    /// or Kubernetes takes the node out while it finishes its calls.
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl ServerAdmin {
    /// Over the adapters the node already built: list management through the risk engine's
    /// own list store (`[risk]`), CRM invalidation through its lookup (`[crm]`). Nothing is
    /// opened or read again.
    pub fn new(
        settings: &HttpSettings,
        pipeline: Arc<Pipeline>,
        adapters: &Adapters,
        draining: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let lists = adapters
            .engine
            .as_ref()
            .map(|e| tollgate_risk::ListAdmin::new(Arc::clone(e.lists().store())));
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

    fn shadow(&self) -> AdminResult {
        Ok(shadow_json(&self.pipeline.rules))
    }

    fn shadow_load(&self, dir: String) -> BoxFuture<'_, AdminResult> {
        let rules = &self.pipeline.rules;
        let result = match rules.load_shadow(std::path::Path::new(&dir)) {
            Ok(_) => Ok(shadow_json(rules)),
            Err(errors) => Err(AdminError::Failed {
                message: "the shadow rules have errors; the previous shadow (or none) stays".into(),
                details: errors.iter().map(ToString::to_string).collect(),
            }),
        };
        ready(result)
    }

    fn shadow_clear(&self) -> BoxFuture<'_, AdminResult> {
        self.pipeline.rules.clear_shadow();
        ready(Ok(shadow_json(&self.pipeline.rules)))
    }

    fn rules_swap(&self, swap: RulesSwap) -> BoxFuture<'_, AdminResult> {
        let rules = &self.pipeline.rules;
        let who = swap.who.as_deref().unwrap_or("api");
        let done = if swap.rollback {
            rules.rollback(who, &swap.reason)
        } else {
            rules.promote(who, &swap.reason)
        };
        ready(done.map(|e| e.to_json()).map_err(|e| AdminError::Failed {
            message: e.to_string(),
            details: Vec::new(),
        }))
    }

    fn rules_version(&self, version: String) -> AdminResult {
        let e = self.pipeline.rules.past_version(&version).ok_or_else(|| {
            AdminError::NotFound(format!(
                "{version:?}: no kept version has this hash (or the prefix is not unique)"
            ))
        })?;
        if e.files.is_empty() {
            return Err(AdminError::NotFound(format!(
                "{}: built from the config's routing table, not from rule files",
                e.version
            )));
        }
        let mut v = e.to_json();
        if let Some(map) = v.as_object_mut() {
            map.insert(
                "files".into(),
                e.files
                    .iter()
                    .map(|(name, text)| serde_json::json!({ "name": name, "text": text }))
                    .collect(),
            );
        }
        Ok(v)
    }

    fn rules_history(&self) -> AdminResult {
        let rules = &self.pipeline.rules;
        let live = rules.current().version.clone();
        let versions: Vec<_> = rules.history().iter().map(|e| e.to_json()).collect();
        Ok(serde_json::json!({
            "live": live,
            "max": crate::rules::MAX_HISTORY,
            "versions": versions,
        }))
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
        let spec = crate::cmd::explain::CallSpec {
            ani: call.ani,
            dnis: call.dnis,
            trunk: call.trunk,
            source,
            tls_peer: call.tls_peer,
            sip: call.sip,
            at,
            overrides: crate::cmd::explain::overrides(profile, risk, call.lists, attestation, None),
            fill_cache: call.fill_cache,
        };
        let e = crate::cmd::explain::explain_call(&spec, &self.pipeline)
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
            "text": crate::cmd::explain::render(&e, &version),
        }))
    }
}

/// The shadow's state and running summary.
fn shadow_json(rules: &crate::rules::RuleStore) -> serde_json::Value {
    let (dir, errors, failed_at) = rules.shadow_status();
    let shadow = rules.shadow();
    serde_json::json!({
        "active": shadow.is_some(),
        "version": shadow.as_ref().map(|r| r.version.clone()),
        "dir": dir.map(|d| d.display().to_string()),
        "live_version": rules.current().version.clone(),
        "load_errors": errors,
        "load_failed_at": failed_at.map(|t| t.to_string()),
        "summary": rules.shadow_stats().summary(10),
    })
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
