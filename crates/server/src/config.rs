//! The TOML configuration: strict (unknown keys rejected), every semantic error reported at
//! once with file, line and key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use tollgate_core::{
    AniSource, CliConfig, CliPolicy, CliRule, DnisSource, NumberPlan, PartyNumber, Unapproved, E164,
};
use tollgate_sip::extract::Emergency;
use tollgate_sip::trunk::{Trunk, Trunks, UnknownSource};
use tollgate_sip::SipConfig;
use toml::Spanned;

mod tls;
pub use tls::{TlsSection, TlsSettings};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipSection,
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkSection>,
    pub routing: RoutingSection,
    /// CLI validation for every trunk that does not set its own.
    #[serde(default)]
    pub cli: CliSection,
    #[serde(default)]
    pub log: LogSection,
    /// The HTTP API: screen pops, admin, metrics (absent: no API).
    #[serde(default)]
    pub http: Option<crate::http::HttpSection>,
    /// CRM lookups (tollgate-crm); absent: no CRM.
    #[serde(default)]
    pub crm: Option<Spanned<tollgate_crm::LookupConfig>>,
    /// Velocity, lists and the score (tollgate-risk); absent: calls are not assessed.
    #[serde(default)]
    pub risk: Option<Spanned<tollgate_risk::RiskConfig>>,
    /// STIR/SHAKEN verification of Identity headers from trusted trunks (tollgate-stir).
    #[serde(default)]
    pub stir: Option<Spanned<tollgate_stir::StirConfig>>,
}

/// CLI validation rules and approved-CLI policy (global, or per trunk as `[trunk.cli]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliSection {
    /// Ordered `allow|validate|deny PATTERN` rules; unset inherits the global rules.
    #[serde(default)]
    pub rules: Option<Spanned<Vec<String>>>,
    /// Approved CLIs (numbers and patterns); empty means no approved-CLI policy.
    #[serde(default)]
    pub approved: Option<Spanned<Vec<String>>>,
    /// What happens to an unapproved CLI: "mark-invalid" (default), "reject" or "forced".
    #[serde(default)]
    pub unapproved: Option<Spanned<String>>,
    /// The number that replaces an unapproved CLI in "forced" mode (E.164 with +).
    #[serde(default)]
    pub forced: Option<Spanned<String>>,
    /// SIP status for "reject" mode (default 403).
    #[serde(default)]
    pub reject_code: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    #[serde(default)]
    pub udp: Vec<Spanned<String>>,
    #[serde(default)]
    pub tcp: Vec<Spanned<String>>,
    /// "reject" (403) or "untrusted" (handled, only From counts).
    #[serde(default = "default_unknown")]
    pub unknown_source: Spanned<String>,
    /// Region for national numbers from unknown sources handled as untrusted.
    #[serde(default = "default_region")]
    pub unknown_region: Spanned<String>,
    #[serde(default = "default_emergency")]
    pub emergency_numbers: Vec<String>,
    #[serde(default = "d100")]
    pub trying_delay_ms: u64,
    #[serde(default = "d2000")]
    pub decision_timeout_ms: u64,
    /// Budget for risk and CRM work together; the call routes without them when it runs out.
    #[serde(default = "d150")]
    pub enrich_deadline_ms: u64,
    #[serde(default = "d10000")]
    pub drain_timeout_ms: u64,
    #[serde(default = "d500")]
    pub t1_ms: u64,
    #[serde(default = "d4000")]
    pub t2_ms: u64,
    #[serde(default = "d5000")]
    pub t4_ms: u64,
    /// An INVITE or OPTIONS whose `Require` names an unsupported option tag: "ignore" (RFC 3261
    /// §8.3, redirect servers; the default) or "reject" (420 Bad Extension, §8.2.2.3).
    #[serde(default = "default_require")]
    pub unsupported_require: Spanned<String>,
    /// `[sip.limits]`: what the transport may hold, whatever is offered.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[sip.tls]`: SIP over TLS.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Calls per second the whole node takes (every trunk and unknown sources together);
    /// absent: no node-wide limit. Over it a call gets 503 with `Retry-After`.
    #[serde(default)]
    pub max_cps: Option<Spanned<f64>>,
    /// Calls the node takes at once (default: `max_cps` rounded up).
    #[serde(default)]
    pub max_burst: Option<Spanned<i64>>,
    /// `Retry-After` seconds of the node's 503s: draining, overload and the rate limits.
    #[serde(default)]
    pub retry_after_s: Option<Spanned<i64>>,
}

/// `[sip.limits]`. Every key is a positive whole number (but `shedding`, and
/// `shed_queue_age_ms` and `udp_receive_buffer_kb`, where 0 is off); the defaults are
/// `tollgate_sip::Limits::default()`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_transactions: Spanned<u64>,
    pub transaction_memory_mb: Spanned<u64>,
    pub max_pending_decisions: Spanned<u64>,
    pub tcp_max_connections: Spanned<u64>,
    pub tcp_max_per_source: Spanned<u64>,
    pub tcp_idle_timeout_ms: Spanned<u64>,
    pub tcp_message_timeout_ms: Spanned<u64>,
    pub tcp_write_buffer_kb: Spanned<u64>,
    pub tcp_write_timeout_ms: Spanned<u64>,
    pub shedding: bool,
    pub shed_queue_age_ms: Spanned<u64>,
    pub udp_receive_buffer_kb: Spanned<u64>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = tollgate_sip::Limits::default();
        let n = |v: usize| Spanned::new(0..0, v as u64);
        let ms = |v: Duration| Spanned::new(0..0, u64::try_from(v.as_millis()).unwrap_or(u64::MAX));
        Self {
            max_transactions: n(d.max_transactions),
            transaction_memory_mb: n(d.max_transaction_bytes >> 20),
            max_pending_decisions: n(d.max_pending_decisions),
            tcp_max_connections: n(d.tcp_max_connections),
            tcp_max_per_source: n(d.tcp_max_per_source),
            tcp_idle_timeout_ms: ms(d.tcp_idle_timeout),
            tcp_message_timeout_ms: ms(d.tcp_message_timeout),
            tcp_write_buffer_kb: n(d.tcp_write_buffer >> 10),
            tcp_write_timeout_ms: ms(d.tcp_write_timeout),
            shedding: d.shedding,
            shed_queue_age_ms: ms(d.shed_queue_age),
            udp_receive_buffer_kb: n(d.udp_receive_buffer >> 10),
        }
    }
}

impl LimitsSection {
    /// The keys with their values, for the positivity check.
    fn all(&self) -> [(&'static str, &Spanned<u64>); 9] {
        [
            ("max_transactions", &self.max_transactions),
            ("transaction_memory_mb", &self.transaction_memory_mb),
            ("max_pending_decisions", &self.max_pending_decisions),
            ("tcp_max_connections", &self.tcp_max_connections),
            ("tcp_max_per_source", &self.tcp_max_per_source),
            ("tcp_idle_timeout_ms", &self.tcp_idle_timeout_ms),
            ("tcp_message_timeout_ms", &self.tcp_message_timeout_ms),
            ("tcp_write_buffer_kb", &self.tcp_write_buffer_kb),
            ("tcp_write_timeout_ms", &self.tcp_write_timeout_ms),
        ]
    }

    fn limits(&self) -> tollgate_sip::Limits {
        let n = |v: &Spanned<u64>| usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        let ms = |v: &Spanned<u64>| Duration::from_millis(*v.get_ref());
        tollgate_sip::Limits {
            max_transactions: n(&self.max_transactions),
            max_transaction_bytes: n(&self.transaction_memory_mb).saturating_mul(1 << 20),
            max_pending_decisions: n(&self.max_pending_decisions),
            tcp_max_connections: n(&self.tcp_max_connections),
            tcp_max_per_source: n(&self.tcp_max_per_source),
            tcp_idle_timeout: ms(&self.tcp_idle_timeout_ms),
            tcp_message_timeout: ms(&self.tcp_message_timeout_ms),
            tcp_write_buffer: n(&self.tcp_write_buffer_kb).saturating_mul(1 << 10),
            tcp_write_timeout: ms(&self.tcp_write_timeout_ms),
            shedding: self.shedding,
            shed_queue_age: ms(&self.shed_queue_age_ms),
            udp_receive_buffer: n(&self.udp_receive_buffer_kb).saturating_mul(1 << 10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSection {
    pub name: Spanned<String>,
    /// Source addresses of the trunk; may be empty when `tls_peers` names it.
    #[serde(default)]
    pub cidrs: Vec<Spanned<String>>,
    /// TLS client certificates that are this trunk (`dns:…`, `uri:…`, `sha256:…`); with any,
    /// `trusted` needs the certificate (and the address, when `cidrs` are given too).
    #[serde(default)]
    pub tls_peers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub trusted: bool,
    #[serde(default = "default_region")]
    pub region: Spanned<String>,
    #[serde(default)]
    pub ani_precedence: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub dnis_source: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub cli: Option<CliSection>,
    /// Take the carrier's own STIR/SHAKEN result (`verstat`) as this trunk's verification.
    #[serde(default)]
    pub trust_verstat: bool,
    /// "annotate" (default: route with the verdict as a fact) or "require" (answer unsigned or
    /// unverifiable calls 428/436/437/438/403 Stale Date).
    #[serde(default)]
    pub identity: Option<Spanned<String>>,
    /// Send every final answer to this trunk's INVITEs once over UDP, without timer G (for a
    /// trunk whose UDP source could be spoofed; sources no trunk claims always are).
    #[serde(default)]
    pub stateless_rejects: bool,
    /// Calls per second this trunk may send (an integer or not); absent: no trunk limit.
    #[serde(default)]
    pub max_cps: Option<Spanned<f64>>,
    /// Calls it may send at once (default: `max_cps` rounded up, at least 1).
    #[serde(default)]
    pub max_burst: Option<Spanned<i64>>,
    /// A call over the trunk's limit: "503" (default, with `Retry-After`), "486", "480" or
    /// "queue:NAME" (a 302 to that overflow queue).
    #[serde(default)]
    pub over_limit: Option<Spanned<String>>,
    /// Calls per second one source address inside the trunk's CIDRs may send (pike-like).
    #[serde(default)]
    pub max_cps_per_source: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_burst_per_source: Option<Spanned<i64>>,
    /// A call over the per-source limit (default: what `over_limit` says).
    #[serde(default)]
    pub over_limit_per_source: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    pub acd_host: Spanned<String>,
    /// A directory of rule files (relative to this file); without it the table below routes.
    #[serde(default)]
    pub rules_dir: Option<Spanned<String>>,
    /// Candidate rules (relative to this file) every live call is also decided by, without
    /// changing its answer (`GET /v1/admin/shadow`); a shadow that does not load is reported
    /// and ignored.
    #[serde(default)]
    pub shadow_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub default_queue: Option<Spanned<String>>,
    #[serde(default)]
    pub emergency_queue: Option<Spanned<String>>,
    #[serde(default)]
    pub dnis: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub country_suffix: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// "json" (default) or "text".
    #[serde(default)]
    pub format: Option<String>,
    /// An EnvFilter directive; RUST_LOG overrides it. It never hides the decision log.
    #[serde(default)]
    pub level: Option<String>,
    /// The decision log (one line per INVITE answered, target `tollgate::decision`); default on.
    #[serde(default)]
    pub decisions: Option<bool>,
}

fn default_require() -> Spanned<String> {
    Spanned::new(0..0, "ignore".into())
}

fn default_unknown() -> Spanned<String> {
    Spanned::new(0..0, "reject".into())
}
fn default_region() -> Spanned<String> {
    Spanned::new(0..0, "US".into())
}
fn default_emergency() -> Vec<String> {
    vec!["911".into(), "112".into(), "933".into()]
}
const fn d100() -> u64 {
    100
}
const fn d150() -> u64 {
    150
}
const fn d500() -> u64 {
    500
}
const fn d2000() -> u64 {
    2000
}
const fn d4000() -> u64 {
    4000
}
const fn d5000() -> u64 {
    5000
}
const fn d10000() -> u64 {
    10000
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(
                f,
                "{}:{l}: {}: {}",
                self.file.display(),
                self.key,
                self.message
            ),
            None => write!(f, "{}: {}: {}", self.file.display(), self.key, self.message),
        }
    }
}

/// All the problems found in a config, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A validated configuration, ready to wire.
#[derive(Debug)]
pub struct Loaded {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// `[sip.tls]`: its addresses and the certificate, read once.
    pub tls: Option<TlsSettings>,
    pub trunks: Trunks,
    pub emergency: Emergency,
    pub sip: SipConfig,
    pub enrich_deadline: Duration,
    pub table: tollgate_router::Table,
    /// Where routing rules come from, and what they need from this file.
    pub rules: crate::rules::RuleSource,
    pub rule_settings: tollgate_router::Settings,
    /// `routing.shadow_dir`, resolved against the config's folder.
    pub shadow_dir: Option<PathBuf>,
    /// Rule-file errors found while checking (reported with the config's own).
    pub rule_errors: Vec<tollgate_router::RuleError>,
    /// CLI validation per trunk name; `cli_default` for calls from unknown sources.
    pub cli: std::collections::HashMap<String, CliConfig>,
    pub cli_default: CliConfig,
    pub log: LogSection,
    /// `[http]`; None: no HTTP API.
    pub http: Option<crate::http::HttpSettings>,
    /// The config file's folder: relative paths in `[crm]` and `[risk]` are resolved from it.
    pub base_dir: PathBuf,
    /// `[crm]`; None: no CRM.
    pub crm: Option<tollgate_crm::LookupConfig>,
    /// `[risk]`; None: calls are not assessed.
    pub risk: Option<tollgate_risk::RiskConfig>,
    /// `[stir]`, its `trust_anchors_dir` resolved against `base_dir`.
    pub stir: Option<tollgate_stir::StirConfig>,
    /// How each trunk's caller identity is judged (by trunk name).
    pub identity: std::collections::HashMap<String, crate::adapters::TrunkIdentity>,
    /// The call-rate limits (`max_cps` and friends, per trunk and in `[sip]`).
    pub limits: crate::limits::LimitsConfig,
    /// Each overflow queue an `over_limit` names, with where: `prepare` checks it against the
    /// rules' `queues.toml`.
    pub overflow_queues: Vec<(tollgate_core::QueueName, ConfigError)>,
    /// The config file and its text, for errors found after parsing (adapters, binding).
    pub path: PathBuf,
    pub text: String,
}

impl Loaded {
    /// A problem found after parsing, placed at the line that sets `key` (or its table).
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: line_of_key(&self.text, key),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

struct Errors<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push<T>(&mut self, at: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        let span = at.span();
        let line = (span.end > 0).then(|| line_of(self.text, span.start));
        self.list.push(ConfigError {
            file: self.file.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// The configuration `tollgate serve` runs without `--config`: SIP on 127.0.0.1:5060 over UDP
/// and TCP, one trusted trunk for loopback, every call to the queue `general` at
/// `acd.example.net`; no CRM, no risk engine, no HTTP API, nothing read from disk.
pub const EMBEDDED: &str = include_str!("embedded.toml");

/// The embedded defaults ([`EMBEDDED`]), validated like a file.
pub fn embedded(plan: &NumberPlan) -> Result<Loaded, ConfigErrors> {
    parse(Path::new("(embedded defaults)"), EMBEDDED, plan)
}

/// Reads and validates a config file.
pub fn load(path: &Path, plan: &NumberPlan) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: None,
            key: "-".into(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse(path, &text, plan)
}

/// Validates config text; `path` names it in errors. A `routing.rules_dir` is read (relative
/// to `path`'s folder) and its rule files checked.
pub fn parse(path: &Path, text: &str, plan: &NumberPlan) -> Result<Loaded, ConfigErrors> {
    parse_with_rules(path, text, plan, |dir, settings| {
        crate::rules::load_dir(dir, settings)
            .err()
            .unwrap_or_default()
    })
}

/// [`parse`] with the rules directory's check given: `rule_errors` gets the directory (already
/// joined to `path`'s folder) and the settings, and returns the problems in its rule files.
/// Nothing else reads a file or opens a socket, so `|_, _| Vec::new()` makes this a pure
/// function of the text (the config fuzz target uses it so).
pub fn parse_with_rules(
    path: &Path,
    text: &str,
    plan: &NumberPlan,
    rule_errors: impl FnOnce(&Path, &tollgate_router::Settings) -> Vec<tollgate_router::RuleError>,
) -> Result<Loaded, ConfigErrors> {
    let raw: Config = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let on_line = line.and_then(|l| key_on_line(text, l));
        let key = match (tollgate_router::toml_key(e.message()), on_line) {
            // A value of the wrong type names no key: the one its line sets.
            ("toml", Some(full)) => full,
            // An unknown field is named by serde alone (`listen`): its line gives the table
            // (`sip.listen`, `trunk[1].bogus`).
            (k, Some(full)) if full == k || full.ends_with(&format!(".{k}")) => full,
            (k, _) => k.into(),
        };
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line,
            key,
            message: e.message().to_owned(),
        }])
    })?;
    let mut errs = Errors {
        file: path,
        text,
        list: Vec::new(),
    };
    let addrs = |errs: &mut Errors<'_>, list: &[Spanned<String>], key: &str| -> Vec<SocketAddr> {
        list.iter()
            .filter_map(|a| match a.get_ref().parse::<SocketAddr>() {
                Ok(sa) => Some(sa),
                Err(_) => {
                    errs.push(
                        a,
                        key,
                        format!("{:?} is not an IP:port address", a.get_ref()),
                    );
                    None
                }
            })
            .collect()
    };
    let udp = addrs(&mut errs, &raw.sip.udp, "sip.udp");
    let tcp = addrs(&mut errs, &raw.sip.tcp, "sip.tcp");
    if raw.sip.udp.is_empty() && raw.sip.tcp.is_empty() && raw.sip.tls.is_none() {
        errs.list.push(ConfigError {
            file: path.to_owned(),
            line: None,
            key: "sip".into(),
            message: "no listener: set sip.udp, sip.tcp or sip.tls".into(),
        });
    }
    let config_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tls = tls::settings(&mut errs, raw.sip.tls.as_ref(), config_dir);
    let client_ca = raw.sip.tls.as_ref().is_some_and(|t| t.client_ca.is_some());

    let region =
        |errs: &mut Errors<'_>, r: &Spanned<String>, key: &str| match plan.region(r.get_ref()) {
            Ok(p) => Some(p.clone()),
            Err(e) => {
                errs.push(r, key, e.to_string());
                None
            }
        };
    let mut trunks = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, t) in raw.trunks.iter().enumerate() {
        let key = |k: &str| format!("trunk[{i}].{k}");
        if !names.insert(t.name.get_ref().clone()) {
            errs.push(
                &t.name,
                key("name"),
                format!("duplicate trunk name {:?}", t.name.get_ref()),
            );
        }
        let mut cidrs = Vec::new();
        for c in &t.cidrs {
            let parsed = c
                .get_ref()
                .parse::<IpNet>()
                .or_else(|_| c.get_ref().parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => cidrs.push(n),
                Err(_) => errs.push(
                    c,
                    key("cidrs"),
                    format!("{:?} is not a CIDR or IP address", c.get_ref()),
                ),
            }
        }
        let tls_peers = tls::peers(
            &mut errs,
            t.tls_peers.as_ref(),
            &key("tls_peers"),
            client_ca,
        );
        if t.cidrs.is_empty() && tls_peers.is_empty() {
            errs.push(
                &t.name,
                key("cidrs"),
                "a trunk needs cidrs, tls_peers, or both",
            );
        }
        let ani_precedence = match &t.ani_precedence {
            None => Trunk::DEFAULT_ANI.to_vec(),
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|s| match s.as_str() {
                    "pai" => Some(AniSource::Pai),
                    "rpid" => Some(AniSource::Rpid),
                    "from" => Some(AniSource::From),
                    other => {
                        errs.push(
                            list,
                            key("ani_precedence"),
                            format!("unknown source {other:?}: expected pai, rpid or from"),
                        );
                        None
                    }
                })
                .collect(),
        };
        let dnis_precedence = match &t.dnis_source {
            None => Trunk::DEFAULT_DNIS.to_vec(),
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|s| match s.as_str() {
                    "request-uri" => Some(DnisSource::RequestUri),
                    "diversion" => Some(DnisSource::Diversion),
                    "history-info" => Some(DnisSource::HistoryInfo),
                    "to" => Some(DnisSource::To),
                    "p-called-party-id" => Some(DnisSource::PCalledPartyId),
                    other => {
                        errs.push(
                            list,
                            key("dnis_source"),
                            format!("unknown source {other:?}: expected request-uri, diversion, history-info, to or p-called-party-id"),
                        );
                        None
                    }
                })
                .collect(),
        };
        if let Some(region) = region(&mut errs, &t.region, &key("region")) {
            trunks.push(Trunk {
                name: t.name.get_ref().as_str().into(),
                cidrs,
                trusted: t.trusted,
                ani_precedence,
                dnis_precedence,
                region,
                tls_peers,
            });
        }
    }
    let unknown = match raw.sip.unknown_source.get_ref().as_str() {
        "reject" => UnknownSource::Reject,
        "untrusted" => match region(&mut errs, &raw.sip.unknown_region, "sip.unknown_region") {
            Some(region) => UnknownSource::Untrusted(std::sync::Arc::new(Trunk {
                name: "unknown".into(),
                cidrs: Vec::new(),
                trusted: false,
                ani_precedence: vec![AniSource::From],
                dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
                region,
                tls_peers: Vec::new(),
            })),
            None => UnknownSource::Reject,
        },
        other => {
            errs.push(
                &raw.sip.unknown_source,
                "sip.unknown_source",
                format!("{other:?}: expected \"reject\" or \"untrusted\""),
            );
            UnknownSource::Reject
        }
    };

    let cli_default = cli_config(&mut errs, &raw.cli, None, "cli");
    let mut cli = std::collections::HashMap::new();
    for (i, t) in raw.trunks.iter().enumerate() {
        let own = t
            .cli
            .as_ref()
            .map(|c| cli_config(&mut errs, c, Some(&cli_default), &format!("trunk[{i}].cli")));
        cli.insert(
            t.name.get_ref().clone(),
            own.unwrap_or_else(|| cli_default.clone()),
        );
    }

    let r = &raw.routing;
    if tollgate_sip::uri::split_hostport(r.acd_host.get_ref()).is_err() {
        errs.push(&r.acd_host, "routing.acd_host", "not a host or host:port");
    }
    let queue = |errs: &mut Errors<'_>, q: &Spanned<String>, key: String| {
        if let Err(bad) = tollgate_core::QueueName::new(q.get_ref().as_str()) {
            errs.push(q, key, bad.to_string());
        }
        q.get_ref().clone()
    };
    let default_queue = match (&r.default_queue, &r.rules_dir) {
        (Some(q), _) => queue(&mut errs, q, "routing.default_queue".into()),
        (None, Some(_)) => String::new(),
        (None, None) => {
            errs.push(
                &r.acd_host,
                "routing",
                "set `rules_dir` (a directory of rule files) or `default_queue`",
            );
            String::new()
        }
    };
    let emergency_queue = r
        .emergency_queue
        .as_ref()
        .map(|q| queue(&mut errs, q, "routing.emergency_queue".into()));
    let us = plan.region("US").ok().cloned();
    let mut dnis = std::collections::HashMap::new();
    for (k, q) in &r.dnis {
        let key = format!("routing.dnis.\"{k}\"");
        let qn = queue(&mut errs, q, key.clone());
        let digits = k.trim_start_matches('+');
        let number = match &us {
            Some(us) if k.starts_with('+') => plan.normalize(k, us, None),
            _ if digits.len() <= 6
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                PartyNumber::Short(digits.to_owned())
            }
            Some(us) => plan.normalize(&format!("+{digits}"), us, None),
            None => PartyNumber::Unusable(k.clone()),
        };
        match number.key() {
            Some(d) => {
                if dnis.insert(d.to_owned(), qn).is_some() {
                    errs.push(q, key, format!("number {k:?} is listed twice"));
                }
            }
            None => errs.push(
                q,
                key,
                format!("{k:?} is not an E.164 number (+CC...) or a short code"),
            ),
        }
    }
    let mut country_suffix = std::collections::HashMap::new();
    for (cc, suffix) in &r.country_suffix {
        match cc.parse::<u16>() {
            Ok(code) if plan.calling_code(cc) == Some(cc.as_str()) => {
                country_suffix.insert(code, suffix.get_ref().clone());
            }
            _ => errs.push(
                suffix,
                format!("routing.country_suffix.\"{cc}\""),
                format!("{cc:?} is not a calling code"),
            ),
        }
    }

    let table = tollgate_router::Table {
        acd_host: r.acd_host.get_ref().clone(),
        dnis,
        default_queue,
        emergency_queue: emergency_queue.clone(),
        country_suffix,
    };
    let rule_settings = tollgate_router::Settings {
        acd_host: r.acd_host.get_ref().clone(),
        emergency_queue,
    };
    let (rules, rule_errors) = match &r.rules_dir {
        Some(dir) => {
            let base = path.parent().unwrap_or_else(|| std::path::Path::new("."));
            let dir = base.join(dir.get_ref());
            let errors = rule_errors(&dir, &rule_settings);
            (crate::rules::RuleSource::Dir(dir), errors)
        }
        None => (crate::rules::RuleSource::Table(table.clone()), Vec::new()),
    };
    let shadow_dir = r.shadow_dir.as_ref().map(|d| {
        path.parent()
            .unwrap_or_else(|| Path::new("."))
            .join(d.get_ref())
    });

    let base_dir = path.parent().unwrap_or_else(|| Path::new(".")).to_owned();
    let (crm, risk, stir, identity) = adapter_sections(&mut errs, &raw, &base_dir);

    let http = crate::http::settings(raw.http.as_ref(), path, text, &mut errs.list);

    // A call whose enrichment may run past the decision timeout would be answered 503 while
    // its risk and CRM answers are still allowed to arrive.
    if raw.sip.decision_timeout_ms <= raw.sip.enrich_deadline_ms {
        errs.list.push(ConfigError {
            file: path.to_owned(),
            line: line_of_key(text, "sip.decision_timeout_ms")
                .or_else(|| line_of_key(text, "sip.enrich_deadline_ms")),
            key: "sip.decision_timeout_ms".into(),
            message: format!(
                "{} ms is not longer than sip.enrich_deadline_ms ({} ms): every call that waits \
                 for enrichment would time out",
                raw.sip.decision_timeout_ms, raw.sip.enrich_deadline_ms
            ),
        });
    }

    let require = &raw.sip.unsupported_require;
    if !matches!(require.get_ref().as_str(), "ignore" | "reject") {
        errs.push(
            require,
            "sip.unsupported_require",
            format!("{:?}: expected \"ignore\" or \"reject\"", require.get_ref()),
        );
    }

    for (key, value) in raw.sip.limits.all() {
        if *value.get_ref() == 0 {
            errs.push(
                value,
                format!("sip.limits.{key}"),
                "must be at least 1 (a bound of 0 would refuse everything)",
            );
        }
    }
    if raw.sip.limits.tcp_max_per_source.get_ref() > raw.sip.limits.tcp_max_connections.get_ref() {
        errs.push(
            &raw.sip.limits.tcp_max_per_source,
            "sip.limits.tcp_max_per_source",
            format!(
                "{} is more than sip.limits.tcp_max_connections ({})",
                raw.sip.limits.tcp_max_per_source.get_ref(),
                raw.sip.limits.tcp_max_connections.get_ref()
            ),
        );
    }

    // A carrier retransmits an unanswered INVITE at T1: shedding by age must answer before
    // (checked where the key is written; the default stands beside a shortened test T1).
    let age = &raw.sip.limits.shed_queue_age_ms;
    if age.span().end > 0 && *age.get_ref() >= raw.sip.t1_ms {
        errs.push(
            age,
            "sip.limits.shed_queue_age_ms",
            format!(
                "{} ms is not below sip.t1_ms ({} ms): the carrier would retransmit every \
                 INVITE before it is shed (0 turns shedding by age off)",
                age.get_ref(),
                raw.sip.t1_ms
            ),
        );
    }
    let rcvbuf = &raw.sip.limits.udp_receive_buffer_kb;
    if *rcvbuf.get_ref() > 1 << 20 {
        errs.push(
            rcvbuf,
            "sip.limits.udp_receive_buffer_kb",
            format!("{}: at most 1048576 (1 GB)", rcvbuf.get_ref()),
        );
    }

    // Draining waits for pending decisions; one shorter than a decision may take would drop
    // the calls it cuts off.
    if raw.sip.drain_timeout_ms < raw.sip.decision_timeout_ms {
        errs.list.push(ConfigError {
            file: path.to_owned(),
            line: line_of_key(text, "sip.drain_timeout_ms")
                .or_else(|| line_of_key(text, "sip.decision_timeout_ms")),
            key: "sip.drain_timeout_ms".into(),
            message: format!(
                "{} ms is shorter than sip.decision_timeout_ms ({} ms): a drain could cut off \
                 calls still being decided",
                raw.sip.drain_timeout_ms, raw.sip.decision_timeout_ms
            ),
        });
    }

    let (limits, overflow_queues) = rate_limits(&mut errs, &raw);

    if !errs.list.is_empty() || !rule_errors.is_empty() {
        errs.list.sort_by_key(|e| e.line);
        errs.list
            .extend(rule_errors.into_iter().map(|e| ConfigError {
                file: e.file.into(),
                line: e.line,
                key: e.key,
                message: e.message,
            }));
        return Err(ConfigErrors(errs.list));
    }
    let s = &raw.sip;
    Ok(Loaded {
        udp,
        tcp,
        tls,
        trunks: Trunks::new(trunks, unknown).stateless_rejects(
            &raw.trunks
                .iter()
                .filter(|t| t.stateless_rejects)
                .map(|t| t.name.get_ref().as_str())
                .collect::<Vec<_>>(),
        ),
        emergency: Emergency::new(s.emergency_numbers.iter().cloned()),
        sip: SipConfig {
            t1: Duration::from_millis(s.t1_ms),
            t2: Duration::from_millis(s.t2_ms),
            t4: Duration::from_millis(s.t4_ms),
            trying_delay: Duration::from_millis(s.trying_delay_ms),
            decision_timeout: Duration::from_millis(s.decision_timeout_ms),
            drain_timeout: Duration::from_millis(s.drain_timeout_ms),
            retry_after: limits.retry_after,
            enforce_require: raw.sip.unsupported_require.get_ref() == "reject",
            limits: raw.sip.limits.limits(),
        },
        enrich_deadline: Duration::from_millis(s.enrich_deadline_ms),
        table,
        rules,
        rule_settings,
        shadow_dir,
        rule_errors: Vec::new(),
        cli,
        cli_default,
        log: raw.log,
        http,
        base_dir,
        crm,
        risk,
        stir,
        identity,
        limits,
        overflow_queues,
        path: path.to_owned(),
        text: text.to_owned(),
    })
}

/// The most calls per second a limit may name, and the largest burst.
const MAX_CPS: f64 = 100_000.0;
const MAX_BURST: i64 = 1_000_000;

/// One limit's `max_cps` and `max_burst` (`burst_key` without `cps_key` is an error).
fn rate(
    errs: &mut Errors<'_>,
    cps: Option<&Spanned<f64>>,
    burst: Option<&Spanned<i64>>,
    cps_key: &str,
    burst_key: &str,
) -> Option<crate::limits::Rate> {
    let Some(cps) = cps else {
        if let Some(b) = burst {
            errs.push(
                b,
                burst_key,
                format!("needs {cps_key}: a burst of what rate?"),
            );
        }
        return None;
    };
    let per_second = *cps.get_ref();
    if !(per_second.is_finite() && (0.001..=MAX_CPS).contains(&per_second)) {
        errs.push(
            cps,
            cps_key,
            format!("{per_second}: calls per second must be from 0.001 to {MAX_CPS}"),
        );
        return None;
    }
    let burst = match burst {
        None => None,
        Some(b) => match u32::try_from(*b.get_ref()) {
            Ok(n) if (1..=MAX_BURST).contains(b.get_ref()) => Some(n),
            _ => {
                errs.push(
                    b,
                    burst_key,
                    format!(
                        "{}: calls at once must be from 1 to {MAX_BURST}",
                        b.get_ref()
                    ),
                );
                return None;
            }
        },
    };
    Some(crate::limits::Rate::new(per_second, burst))
}

/// The call-rate limits: `[sip] max_cps`, `max_burst`, `retry_after_s`, and each trunk's
/// `max_cps`, `max_burst`, `over_limit` and their `_per_source` forms; with every overflow
/// queue and where it is named.
fn rate_limits(
    errs: &mut Errors<'_>,
    raw: &Config,
) -> (
    crate::limits::LimitsConfig,
    Vec<(tollgate_core::QueueName, ConfigError)>,
) {
    use crate::limits::{LimitsConfig, OverLimit, TrunkLimits};
    let node = rate(
        errs,
        raw.sip.max_cps.as_ref(),
        raw.sip.max_burst.as_ref(),
        "sip.max_cps",
        "sip.max_burst",
    );
    let retry_after = match &raw.sip.retry_after_s {
        None => 5,
        Some(r) => match u32::try_from(*r.get_ref()) {
            Ok(n) if (1..=86_400).contains(&n) => n,
            _ => {
                errs.push(
                    r,
                    "sip.retry_after_s",
                    format!("{}: seconds must be from 1 to 86400", r.get_ref()),
                );
                5
            }
        },
    };
    let mut trunks = std::collections::HashMap::new();
    let mut queues = Vec::new();
    for (i, t) in raw.trunks.iter().enumerate() {
        let key = |k: &str| format!("trunk[{i}].{k}");
        let trunk = rate(
            errs,
            t.max_cps.as_ref(),
            t.max_burst.as_ref(),
            &key("max_cps"),
            &key("max_burst"),
        );
        let per_source = rate(
            errs,
            t.max_cps_per_source.as_ref(),
            t.max_burst_per_source.as_ref(),
            &key("max_cps_per_source"),
            &key("max_burst_per_source"),
        );
        let mut over = |errs: &mut Errors<'_>, v: Option<&Spanned<String>>, name: &str| {
            let v = v?;
            match OverLimit::parse(v.get_ref()) {
                Ok(o) => {
                    if let OverLimit::Queue(q) = &o {
                        let line = (v.span().end > 0).then(|| line_of(errs.text, v.span().start));
                        queues.push((
                            q.clone(),
                            ConfigError {
                                file: errs.file.to_owned(),
                                line,
                                key: key(name),
                                message: String::new(),
                            },
                        ));
                    }
                    Some(o)
                }
                Err(e) => {
                    errs.push(v, key(name), e);
                    None
                }
            }
        };
        let over_limit = over(errs, t.over_limit.as_ref(), "over_limit");
        let over_source = over(
            errs,
            t.over_limit_per_source.as_ref(),
            "over_limit_per_source",
        );
        if let (Some(v), None, None) = (&t.over_limit, trunk, per_source) {
            if t.max_cps.is_none() && t.max_cps_per_source.is_none() {
                errs.push(
                    v,
                    key("over_limit"),
                    "nothing to be over: set max_cps or max_cps_per_source",
                );
            }
        }
        if let (Some(v), None) = (&t.over_limit_per_source, per_source) {
            if t.max_cps_per_source.is_none() {
                errs.push(
                    v,
                    key("over_limit_per_source"),
                    "nothing to be over: set max_cps_per_source",
                );
            }
        }
        if trunk.is_none() && per_source.is_none() {
            continue;
        }
        let over_limit = over_limit.unwrap_or(OverLimit::Reject(503));
        trunks.insert(
            t.name.get_ref().clone(),
            TrunkLimits {
                trunk,
                over_limit_per_source: over_source.unwrap_or_else(|| over_limit.clone()),
                over_limit,
                per_source,
            },
        );
    }
    (
        LimitsConfig {
            node,
            trunks,
            retry_after,
        },
        queues,
    )
}

type AdapterSections = (
    Option<tollgate_crm::LookupConfig>,
    Option<tollgate_risk::RiskConfig>,
    Option<tollgate_stir::StirConfig>,
    std::collections::HashMap<String, crate::adapters::TrunkIdentity>,
);

/// `[crm]`, `[risk]`, `[stir]` and the trunks' identity settings. The adapter crates validate
/// their own sections and name keys rather than spans: the line is found from the key.
fn adapter_sections(errs: &mut Errors<'_>, raw: &Config, base: &Path) -> AdapterSections {
    let report = |errs: &mut Errors<'_>, section: usize, problems: Vec<(String, String)>| {
        for (key, message) in problems {
            let line = line_of_key(errs.text, &key).or(Some(section));
            errs.list.push(ConfigError {
                file: errs.file.to_owned(),
                line,
                key,
                message,
            });
        }
    };
    let section_line =
        |errs: &Errors<'_>, span: std::ops::Range<usize>| line_of(errs.text, span.start);
    let crm = raw.crm.as_ref().map(|c| {
        let at = section_line(errs, c.span());
        let cfg = c.get_ref().clone();
        let problems = cfg.validate();
        if problems.is_empty() && cfg.kind == tollgate_crm::Kind::File {
            // Read the directory once now so `check` reports bad rows with their lines.
            let mut probe = cfg.clone();
            probe.file.poll_ms = 0;
            if let Err(e) = tollgate_crm::Lookup::from_config(&probe, base) {
                report(errs, at, vec![("crm.file.path".into(), e.to_string())]);
            }
        }
        report(errs, at, problems);
        cfg
    });
    let risk = raw.risk.as_ref().map(|r| {
        let at = section_line(errs, r.span());
        let mut problems = r.get_ref().validate();
        // `[risk.trunk."NAME"]` must name a `[[trunk]]` (the risk crate cannot see the trunks).
        for name in r.get_ref().trunk.keys() {
            if !raw.trunks.iter().any(|t| t.name.get_ref() == name) {
                problems.push((
                    format!("risk.trunk.{name}"),
                    format!("{name:?} is not a [[trunk]] name"),
                ));
            }
        }
        report(errs, at, problems);
        let mut cfg = r.get_ref().clone();
        if let Some(ca) = &mut cfg.redis.tls_ca_file {
            *ca = base.join(&*ca);
        }
        cfg
    });
    let stir = raw.stir.as_ref().map(|s| {
        let at = section_line(errs, s.span());
        let mut cfg = s.get_ref().clone();
        cfg.trust_anchors_dir = base.join(&cfg.trust_anchors_dir);
        // The settings first, each under its own key; the trust anchors only when they pass.
        let problems: Vec<(String, String)> = cfg
            .validate()
            .into_iter()
            .map(|(key, message)| (format!("stir.{key}"), message))
            .collect();
        if !problems.is_empty() {
            report(errs, at, problems);
        } else if let Err(e) = tollgate_stir::Verifier::new(&cfg) {
            report(errs, at, vec![(format!("stir.{}", e.key()), e.to_string())]);
        }
        cfg
    });
    let mut identity = std::collections::HashMap::new();
    for (i, t) in raw.trunks.iter().enumerate() {
        let require = match t.identity.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "annotate")) => false,
            Some((s, "require")) => {
                if !t.trusted {
                    errs.push(
                        s,
                        format!("trunk[{i}].identity"),
                        "\"require\" needs trusted = true: Identity headers from an untrusted trunk are ignored",
                    );
                } else if raw.stir.is_none() && !t.trust_verstat {
                    errs.push(
                        s,
                        format!("trunk[{i}].identity"),
                        "\"require\" needs a [stir] section (or trust_verstat = true) to verify with",
                    );
                }
                true
            }
            Some((s, other)) => {
                errs.push(
                    s,
                    format!("trunk[{i}].identity"),
                    format!("{other:?}: expected \"annotate\" or \"require\""),
                );
                false
            }
        };
        if t.trust_verstat && !t.trusted {
            errs.push(
                &t.name,
                format!("trunk[{i}].trust_verstat"),
                "needs trusted = true: verstat from an untrusted trunk is never read",
            );
        }
        if (require || t.trust_verstat) && raw.risk.is_none() {
            errs.push(
                &t.name,
                format!("trunk[{i}]"),
                "identity checks run in the risk engine: add a [risk] section",
            );
        }
        identity.insert(
            t.name.get_ref().clone(),
            crate::adapters::TrunkIdentity {
                trust_verstat: t.trust_verstat,
                require_signed: require,
            },
        );
    }
    (crm, risk, stir, identity)
}

/// The dotted key line `line` (1-based) sets, under its table (`sip.max_cps`,
/// `trunk[1].max_cps` for the second `[[trunk]]`); `None` when the line sets no key.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut arrays: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if i + 1 == line {
            let (k, _) = l.split_once('=')?;
            let k = k.trim().replace([' ', '"'], "");
            if l.starts_with('[') || l.starts_with('#') || k.is_empty() {
                return None;
            }
            return Some(if table.is_empty() {
                k
            } else {
                format!("{table}.{k}")
            });
        }
        if let Some(name) = l.strip_prefix("[[") {
            let name = name
                .split("]]")
                .next()
                .unwrap_or("")
                .replace([' ', '"'], "");
            let n = arrays.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[') {
            let name = name.split(']').next().unwrap_or("").replace([' ', '"'], "");
            // A sub-table of the latest array element (`[trunk.cli]`) belongs to it.
            table = match name.split_once('.') {
                Some((head, rest)) => match arrays.get(head) {
                    Some(n) => format!("{head}[{}].{rest}", n.saturating_sub(1)),
                    None => name.clone(),
                },
                None => name.clone(),
            };
        }
    }
    None
}

/// The line that sets a dotted key (`crm.http.url`, `risk.policy[0].name`), else the line of
/// the deepest table header it is under.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let key: String = {
        let mut out = String::new();
        let mut depth = 0usize;
        for c in key.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                c if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    let under =
        |prefix: &str| prefix.is_empty() || key == prefix || key.starts_with(&format!("{prefix}."));
    let mut table = String::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            table = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .replace([' ', '"'], "");
            if !table.is_empty() && under(&table) && best.is_none_or(|(len, _)| table.len() > len) {
                best = Some((table.len(), i + 1));
            }
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        if line.starts_with('#') {
            continue;
        }
        let k = k.trim().replace([' ', '"'], "");
        let full = if table.is_empty() {
            k
        } else {
            format!("{table}.{k}")
        };
        if full == key {
            return Some(i + 1);
        }
        if under(&full) && !full.is_empty() && best.is_none_or(|(len, _)| full.len() > len) {
            best = Some((full.len(), i + 1));
        }
    }
    best.map(|(_, line)| line)
}

/// Builds one CLI config; `inherit` supplies rules a trunk does not set.
fn cli_config(
    errs: &mut Errors<'_>,
    c: &CliSection,
    inherit: Option<&CliConfig>,
    key: &str,
) -> CliConfig {
    let rules = match &c.rules {
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|r| match r.parse::<CliRule>() {
                Ok(rule) => Some(rule),
                Err(e) => {
                    errs.push(list, format!("{key}.rules"), e.to_string());
                    None
                }
            })
            .collect(),
        None => inherit.map(|i| i.rules.clone()).unwrap_or_default(),
    };
    let approved: Vec<_> = c
        .approved
        .as_ref()
        .map(|list| {
            list.get_ref()
                .iter()
                .filter_map(|p| match p.parse() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        errs.push(list, format!("{key}.approved"), format!("{e}"));
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let unapproved = match c.unapproved.as_ref().map(|u| (u, u.get_ref().as_str())) {
        None | Some((_, "mark-invalid")) => Unapproved::MarkInvalid,
        Some((_, "reject")) => {
            let code = c.reject_code.as_ref().map_or(403, |c| *c.get_ref());
            if !(400..=699).contains(&code) {
                if let Some(span) = &c.reject_code {
                    errs.push(
                        span,
                        format!("{key}.reject_code"),
                        format!("{code} is not a 4xx-6xx status"),
                    );
                }
            }
            Unapproved::Reject(code)
        }
        Some((u, "forced")) => match c.forced.as_ref() {
            Some(f) => match f.get_ref().strip_prefix('+').and_then(E164::from_digits) {
                Some(n) => Unapproved::Forced(n),
                None => {
                    errs.push(
                        f,
                        format!("{key}.forced"),
                        format!("{:?} is not an E.164 number (+CC...)", f.get_ref()),
                    );
                    Unapproved::MarkInvalid
                }
            },
            None => {
                errs.push(
                    u,
                    format!("{key}.forced"),
                    "\"forced\" needs `forced = \"+CC...\"`",
                );
                Unapproved::MarkInvalid
            }
        },
        Some((u, other)) => {
            errs.push(
                u,
                format!("{key}.unapproved"),
                format!("{other:?}: expected \"mark-invalid\", \"reject\" or \"forced\""),
            );
            Unapproved::MarkInvalid
        }
    };
    CliConfig {
        rules,
        policy: (!approved.is_empty()).then_some(CliPolicy {
            approved,
            unapproved,
        }),
    }
}
