//! The TOML configuration: strict (unknown keys rejected), every problem found reported at
//! once, each a [`Problem`] with file, line and key.
//!
//! One module per section ([`sip`], [`tls`], [`trunk`], [`cli`], [`routing`], [`rate`] for
//! the call-rate keys, [`log`], [`http`], [`crm`], [`risk`], [`stir`]); this one reads the
//! file, runs each section's check and assembles [`Loaded`]. Lines come from the parser's
//! spans ([`Spans`]), never from scanning the text.

mod cli;
mod crm;
mod http;
mod log;
mod rate;
mod risk;
mod routing;
mod sip;
mod spans;
mod stir;
mod tls;
mod trunk;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tollgate_core::{CliConfig, NumberPlan};
use tollgate_sip::extract::Emergency;
use tollgate_sip::trunk::Trunks;
use tollgate_sip::SipConfig;
use toml::Spanned;

pub use cli::CliSection;
pub use http::{HttpSection, HttpSettings, TokenSection, WebhookSection};
pub use log::LogSection;
pub use routing::RoutingSection;
pub use sip::{LimitsSection, SipSection};
pub use spans::Spans;
pub use tls::{TlsSection, TlsSettings};
pub use tollgate_core::{Problem, Problems};
pub use trunk::{TrunkIdentity, TrunkSection};

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
    pub http: Option<HttpSection>,
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

/// A validated configuration, ready to wire, with what its sections read from disk (the TLS
/// certificate, the CRM directory file, the STIR trust anchors), read once.
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
    /// CLI validation per trunk name; `cli_default` for calls from unknown sources.
    pub cli: HashMap<String, CliConfig>,
    pub cli_default: CliConfig,
    pub log: LogSection,
    /// `[http]`; None: no HTTP API.
    pub http: Option<HttpSettings>,
    /// The config file's folder: relative paths in `[crm]` and `[risk]` are resolved from it.
    pub base_dir: PathBuf,
    /// `[crm]`; None: no CRM.
    pub crm: Option<tollgate_crm::LookupConfig>,
    /// The lookup over `[crm]`'s directory file, as read while checking (`kind = "file"`).
    pub crm_lookup: Option<tollgate_crm::Lookup>,
    /// `[risk]`; None: calls are not assessed.
    pub risk: Option<tollgate_risk::RiskConfig>,
    /// `[stir]`, its `trust_anchors_dir` resolved against `base_dir`.
    pub stir: Option<tollgate_stir::StirConfig>,
    /// The verifier over `[stir]`'s trust anchors, as read while checking.
    pub verifier: Option<Arc<tollgate_stir::Verifier>>,
    /// How each trunk's caller identity is judged (by trunk name).
    pub identity: HashMap<String, TrunkIdentity>,
    /// The call-rate limits (`max_cps` and friends, per trunk and in `[sip]`).
    pub limits: crate::limits::LimitsConfig,
    /// Each overflow queue an `over_limit` names, with where: `prepare` checks it against the
    /// rules' `queues.toml`.
    pub overflow_queues: Vec<(tollgate_core::QueueName, Problem)>,
    /// The config file, and where each of its keys is, for problems found after parsing
    /// (adapters, binding).
    pub path: PathBuf,
    pub spans: Spans,
}

impl Loaded {
    /// A problem found after parsing, placed at the line that sets `key` (or its table).
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> Problem {
        Problem::new(key, message).at(&self.path, self.spans.line_of_key(key))
    }
}

/// The problems of one file as the sections find them.
struct Errors<'a> {
    file: &'a Path,
    spans: &'a Spans,
    list: Vec<Problem>,
}

impl Errors<'_> {
    /// A problem with the value `at` (`None` for a line when the value is a default: no span).
    fn push<T>(&mut self, at: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        self.push_span(at.span(), key, message);
    }

    /// A problem with the value at `span`.
    fn push_span(
        &mut self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let p = self.problem_span(span, key, message);
        self.list.push(p);
    }

    /// The problem [`Errors::push`] would report, kept for later.
    fn problem<T>(
        &self,
        at: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        self.problem_span(at.span(), key, message)
    }

    fn problem_span(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        let line = (span.end > 0).then(|| self.spans.line(span.start));
        Problem::new(key, message).at(self.file, line)
    }

    /// A problem at the line that sets `key` (or its table).
    fn at_key(&mut self, key: &str, message: impl Into<String>) {
        let line = self.spans.line_of_key(key);
        self.list
            .push(Problem::new(key, message).at(self.file, line));
    }

    /// A problem with no one line (a section missing, two values alike).
    fn unplaced(&mut self, key: &str, message: impl Into<String>) {
        self.list
            .push(Problem::new(key, message).at(self.file, None));
    }

    /// An adapter crate's problems, each at the line of its key, else at its section's line.
    fn place_all(&mut self, problems: Vec<Problem>, section: usize) {
        for p in problems {
            let line = self.spans.line_of_key(&p.key).or(Some(section));
            let file = self.file;
            self.list.push(p.at(file, line));
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.spans.line(offset)
    }

    fn count(&self) -> usize {
        self.list.len()
    }
}

/// The configuration `tollgate serve` runs without `--config`: SIP on 127.0.0.1:5060 over UDP
/// and TCP, one trusted trunk for loopback, every call to the queue `general` at
/// `acd.example.net`; no CRM, no risk engine, no HTTP API, nothing read from disk.
pub const EMBEDDED: &str = include_str!("embedded.toml");

/// The embedded defaults ([`EMBEDDED`]), validated like a file.
pub fn embedded(plan: &NumberPlan) -> Result<Loaded, Problems> {
    parse(Path::new("(embedded defaults)"), EMBEDDED, plan)
}

/// Reads and validates a config file.
pub fn load(path: &Path, plan: &NumberPlan) -> Result<Loaded, Problems> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Problems(vec![
            Problem::new("-", format!("cannot read: {e}")).at(path, None)
        ])
    })?;
    parse(path, &text, plan)
}

/// Validates config text; `path` names it in errors. A `routing.rules_dir` is read (relative
/// to `path`'s folder) and its rule files checked.
pub fn parse(path: &Path, text: &str, plan: &NumberPlan) -> Result<Loaded, Problems> {
    parse_with_rules(path, text, plan, |dir, settings| {
        crate::rules::load_dir(dir, settings)
            .err()
            .unwrap_or_default()
    })
}

/// [`parse`] with the rules directory's check given: `rule_errors` gets the directory (already
/// joined to `path`'s folder) and the settings, and returns the problems in its rule files.
/// Besides that, the files the config names are read (`[sip.tls]`'s certificate, a `[crm]`
/// directory file, `[stir]`'s trust anchors, `[http]`'s token files); without them
/// `|_, _| Vec::new()` makes this a pure function of the text (the config fuzz target uses it
/// so).
pub fn parse_with_rules(
    path: &Path,
    text: &str,
    plan: &NumberPlan,
    rule_errors: impl FnOnce(&Path, &tollgate_router::Settings) -> Vec<tollgate_router::RuleError>,
) -> Result<Loaded, Problems> {
    let spans = Spans::new(text);
    let raw: Config = toml::from_str(text).map_err(|e| {
        let p = spans.parse_error(&e);
        Problems(vec![Problem {
            file: path.to_owned(),
            ..p
        }])
    })?;
    let mut errs = Errors {
        file: path,
        spans: &spans,
        list: Vec::new(),
    };
    let base_dir = path.parent().unwrap_or_else(|| Path::new(".")).to_owned();

    let (udp, tcp) = sip::listeners(&mut errs, &raw.sip);
    let tls = tls::settings(&mut errs, raw.sip.tls.as_ref(), &base_dir);
    let client_ca = raw.sip.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let trunks = trunk::trunks(&mut errs, &raw.trunks, plan, client_ca);
    let unknown = sip::unknown_source(&mut errs, &raw.sip, plan);
    let (cli, cli_default) = cli::cli(&mut errs, &raw.cli, &raw.trunks);
    let routing = routing::routing(&mut errs, &raw.routing, plan, &base_dir, rule_errors);

    let crm = raw
        .crm
        .as_ref()
        .map(|c| crm::crm(&mut errs, c, &base_dir, plan));
    let risk = raw
        .risk
        .as_ref()
        .map(|r| risk::risk(&mut errs, r, &raw.trunks, &base_dir));
    let stir = raw
        .stir
        .as_ref()
        .map(|s| stir::stir(&mut errs, s, &base_dir));
    let identity = trunk::identity(
        &mut errs,
        &raw.trunks,
        raw.stir.is_some(),
        raw.risk.is_some(),
    );
    let http = http::settings(&mut errs, raw.http.as_ref(), path, text);
    sip::check(&mut errs, &raw.sip);
    let (limits, overflow_queues) = rate::rate_limits(&mut errs, &raw);

    let mut list = errs.list;
    if !list.is_empty() || !routing.rule_errors.is_empty() {
        list.sort_by_key(|e| e.line);
        list.extend(routing.rule_errors);
        return Err(Problems(list));
    }
    let (crm, crm_lookup) = crm.unzip();
    let (stir, verifier) = stir.unzip();
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
        sip: sip::sip_config(s, limits.retry_after),
        enrich_deadline: Duration::from_millis(s.enrich_deadline_ms),
        table: routing.table,
        rules: routing.rules,
        rule_settings: routing.rule_settings,
        shadow_dir: routing.shadow_dir,
        cli,
        cli_default,
        log: raw.log,
        http,
        base_dir,
        crm,
        crm_lookup: crm_lookup.flatten(),
        risk,
        stir,
        verifier: verifier.flatten(),
        identity,
        limits,
        overflow_queues,
        path: path.to_owned(),
        spans,
    })
}
