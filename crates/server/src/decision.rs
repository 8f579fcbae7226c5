//! The decision record: one per INVITE answered, the same fields in the decision log line
//! (`target: "tollgate::decision"`), in `explain` (CLI and HTTP) and in `diff`. Built by one
//! function from the facts and the [`Outcome`], so the log and explain agree field by field.

use std::borrow::Cow;
use std::fmt::Write as _;
#[cfg(test)]
use std::str::FromStr as _;

use serde::Serialize;
use tollgate_core::{CallFacts, DecisionAction, RiskAssessment, Verification};
use tollgate_router::DecidedBy;
use tollgate_sip::response::phrase;

use crate::pipeline::Outcome;

/// The log target of decision lines: `log.level` never filters it (see `main`'s logging).
pub const TARGET: &str = "tollgate::decision";

/// Which part of the engine gave the answer: a decision ([`DecidedBy`], from the router's
/// [`tollgate_router::decide`] or the CLI policy), or the SIP layer before or instead of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Decided(DecidedBy),
    /// The SIP layer answered before a decision (unknown source, draining, an unsupported
    /// `Require`, a malformed request) or gave one up (the decision timeout, a CANCEL).
    Early(tollgate_sip::EarlyReason),
    /// Over a call-rate limit (the trunk's, one source address's, or the node's): answered
    /// before enrichment and the rules, as that limit's `over_limit` says.
    Limited(crate::limits::Scope),
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Decided(d) => d.as_str(),
            Why::Early(r) => r.as_str(),
            Why::Limited(s) => s.decided_by(),
        }
    }
}

/// Every fact a rule can see and what was decided, flat, for one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecisionRecord<'a> {
    pub call_id: &'a str,
    pub call_ref: &'a str,
    pub trunk: &'a str,
    pub trusted: bool,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    /// Over TLS with a client certificate: the trunk's `tls_peers` entry it matched, or
    /// `unmatched`; "-" otherwise.
    pub tls_peer: &'a str,
    pub ani: String,
    pub ani_source: &'static str,
    pub ani_verified: bool,
    pub sources_disagree: bool,
    pub presented: String,
    pub dnis: String,
    pub dnis_source: &'static str,
    pub emergency: bool,
    pub ani_valid: bool,
    pub ani_kind: &'static str,
    pub ani_region: &'static str,
    pub ani_geo: &'a str,
    /// Every IANA zone libphonenumber lists for the number, `&`-separated.
    pub ani_tz: &'a str,
    /// ISO 3166-2 subdivision ("US-NJ") where the data names one.
    pub ani_subdivision: &'a str,
    /// The zone `caller_time` rules use for this call, and why ("caller": the number's one
    /// zone; "fallback-several", "fallback-none": the dialled line's zone).
    pub caller_zone: &'a str,
    pub caller_zone_choice: String,
    pub dnis_kind: &'static str,
    pub cli: &'static str,
    pub cli_reason: &'a str,
    /// Calling party category and ANI II (trusted trunks only), P-Charge-Info's number.
    pub cpc: &'a str,
    pub ani_ii: &'a str,
    pub charge_number: String,
    pub enrich: &'static str,
    pub crm: &'static str,
    pub crm_customer: &'a str,
    pub crm_tier: &'a str,
    /// The profile's other fields rules match on (`language`, `tag`, `open_cases_*`,
    /// `attribute`), so that `tollgate diff --decisions` replays them: the language, the tags
    /// and the attributes (`key=value`) comma-separated with `%`, `,` and `=` inside a value
    /// written `%25`, `%2C` and `%3D`; "-" without a profile or a value.
    pub crm_language: &'a str,
    pub crm_tags: String,
    pub crm_open_cases: String,
    pub crm_attributes: String,
    pub risk: &'static str,
    pub risk_score: i32,
    pub risk_signals: String,
    pub risk_degraded: bool,
    pub lists: String,
    pub attestation: &'static str,
    pub verification: Cow<'a, str>,
    pub repeat_of: &'a str,
    /// When the caller's previous call was (`repeat_of`), Unix seconds; 0 without one
    /// (`repeat_within` rules compare it with the call's time).
    pub repeat_seen: i64,
    /// The risk policy's verification queue for this caller (gray-listed or high risk), "-"
    /// when it has none; the call went there only when `decided_by` is `risk-verify`.
    pub risk_verify_queue: &'a str,
    /// "302" or "reject".
    pub outcome: &'static str,
    /// The SIP status sent: 302, or the rejection's code.
    pub status: u16,
    /// The queue for a 302, "-" for a rejection.
    pub queue: &'a str,
    /// The rejection's reason phrase, "-" for a 302.
    pub reason: &'a str,
    /// Which part of the engine answered ([`Why`]).
    pub decided_by: &'static str,
    pub rule: &'a str,
    pub rules_version: &'a str,
    /// With shadow rules: "agree" (the same status and queue) or "moved"; "-" without.
    pub shadow: &'static str,
    /// The shadow's answer where it differs ("moved"): its status, queue ("-" for a
    /// rejection) and rule; 0 and "-" otherwise.
    pub shadow_status: u16,
    pub shadow_queue: &'a str,
    pub shadow_rule: &'a str,
}

/// What an INVITE answered before any decision said about itself.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub call_id: &'a str,
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
    pub trunk: Option<&'a str>,
    pub status: u16,
    pub from_user: Option<&'a str>,
    pub ruri_user: Option<&'a str>,
}

/// Every signal with its weight, `name:+w` comma-separated (the explain trace has the details).
fn risk_signals(risk: Option<&RiskAssessment>) -> String {
    let mut out = String::new();
    for s in risk.map(|r| r.signals.as_slice()).unwrap_or_default() {
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}:{:+}", s.name, s.weight);
    }
    out
}

/// `%`, `,` and `=` inside one value of a comma-separated field, percent-encoded
/// ([`unescape`] reads it back).
pub fn escape(v: &str) -> Cow<'_, str> {
    if !v.contains(['%', ',', '=']) {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 4);
    for c in v.chars() {
        match c {
            '%' => out.push_str("%25"),
            ',' => out.push_str("%2C"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The value [`escape`] wrote.
pub fn unescape(v: &str) -> String {
    v.replace("%2C", ",")
        .replace("%2c", ",")
        .replace("%3D", "=")
        .replace("%3d", "=")
        .replace("%25", "%")
}

/// The profile's tags, comma-separated.
fn tags(p: Option<&tollgate_core::CallerProfile>) -> String {
    let mut out = String::new();
    for t in p.map(|p| p.tags.as_slice()).unwrap_or_default() {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&escape(t));
    }
    out
}

/// The profile's attributes, `key=value` comma-separated.
fn attributes(p: Option<&tollgate_core::CallerProfile>) -> String {
    let mut out = String::new();
    for (k, v) in p.iter().flat_map(|p| p.attributes.iter()) {
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}={}", escape(k), escape(v));
    }
    out
}

fn verification(v: &Verification) -> Cow<'_, str> {
    match v {
        Verification::Absent => "absent".into(),
        Verification::Verified => "verified".into(),
        Verification::Failed(why) => format!("failed: {why}").into(),
    }
}

impl<'a> DecisionRecord<'a> {
    /// The record of a decided call.
    pub fn new(f: &'a CallFacts, out: &'a Outcome, call_ref: &'a str) -> Self {
        let ani_info = f.ani_info.as_ref();
        let cli = f.cli.as_ref();
        let risk = f.risk.as_ref();
        let profile = f.profile.as_ref();
        let d = &out.decision;
        let moved = out.shadow.as_ref().filter(|s| !s.agrees);
        let (outcome, status, queue, reason) = match &d.action {
            DecisionAction::Route(t) => ("302", 302, t.queue.as_str(), "-"),
            DecisionAction::Reject { code, reason, .. } => {
                ("reject", *code, "-", phrase(*code, reason.as_deref()))
            }
        };
        Self {
            call_id: &f.call_id,
            call_ref,
            trunk: &f.trunk,
            trusted: f.trusted,
            transport: f.arrival.transport.as_str(),
            tls_peer: f.arrival.tls_peer.as_deref().unwrap_or("-"),
            ani: f.ani.to_string(),
            ani_source: f.ani_source.as_str(),
            ani_verified: f.ani_verified,
            sources_disagree: f.sources_disagree,
            presented: f.presented.to_string(),
            dnis: f.dnis.to_string(),
            dnis_source: f.dnis_source.as_str(),
            emergency: f.emergency,
            ani_valid: ani_info.is_some_and(|i| i.valid),
            ani_kind: ani_info.map_or("-", |i| i.kind.as_str()),
            ani_region: ani_info.and_then(|i| i.region).unwrap_or("-"),
            ani_geo: f
                .ani_geo
                .as_ref()
                .and_then(|g| g.description.as_deref())
                .unwrap_or("-"),
            ani_tz: f
                .ani_geo
                .as_ref()
                .and_then(|g| g.time_zones.as_deref())
                .unwrap_or("-"),
            ani_subdivision: f
                .ani_geo
                .as_ref()
                .and_then(|g| g.subdivision.as_deref())
                .unwrap_or("-"),
            caller_zone: out.caller_zone.0.as_deref().unwrap_or("-"),
            caller_zone_choice: out
                .caller_zone
                .1
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            dnis_kind: f.dnis_info.as_ref().map_or("-", |i| i.kind.as_str()),
            cli: cli.map_or("-", |c| c.verdict.as_str()),
            cli_reason: cli.map_or("-", |c| c.reason.as_str()),
            cpc: f.cpc.as_deref().unwrap_or("-"),
            ani_ii: f.oli.as_deref().unwrap_or("-"),
            charge_number: f
                .charge_number
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            enrich: out.enrich,
            crm: f.lookup.as_str(),
            crm_customer: profile.map_or("-", |p| p.customer_id.as_str()),
            crm_tier: profile.and_then(|p| p.tier.as_deref()).unwrap_or("-"),
            crm_language: profile.and_then(|p| p.language.as_deref()).unwrap_or("-"),
            crm_tags: tags(profile),
            crm_open_cases: profile
                .and_then(|p| p.open_cases)
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            crm_attributes: attributes(profile),
            risk: risk.map_or("-", |r| r.level.as_str()),
            risk_score: risk.map_or(0, |r| r.score),
            risk_signals: risk_signals(risk),
            risk_degraded: risk.is_some_and(|r| r.degraded),
            lists: risk.map_or(String::new(), |r| r.list_hits.join(",")),
            attestation: risk.and_then(|r| r.attestation).map_or("-", |a| a.as_str()),
            verification: risk.map_or(Cow::Borrowed("-"), |r| verification(&r.verification)),
            repeat_of: f.history.as_ref().map_or("-", |h| h.last_queue.as_str()),
            repeat_seen: f.history.as_ref().map_or(0, |h| h.last_seen),
            risk_verify_queue: risk
                .and_then(|r| r.verify_queue.as_ref())
                .map_or("-", |q| q.as_str()),
            outcome,
            status,
            queue,
            reason,
            decided_by: out.why.as_str(),
            rule: &d.rule,
            rules_version: &d.version,
            shadow: out
                .shadow
                .as_ref()
                .map_or("-", crate::shadow::ShadowAnswer::label),
            shadow_status: moved.map_or(0, |m| crate::shadow::answer(&m.decision).0),
            shadow_queue: moved.map_or("-", |m| crate::shadow::answer(&m.decision).1),
            shadow_rule: moved.map_or("-", |m| m.decision.rule.as_str()),
        }
    }

    /// The record of an INVITE the SIP layer answered without a decision: what the request
    /// said (From and Request-URI users) or, when a decision had begun, the facts so far.
    pub fn early(answer: &'a tollgate_sip::EarlyAnswer<'a>, outcome: &'a Outcome) -> Self {
        if let Some(call) = answer.call {
            return Self::new(&call.facts, outcome, &call.call_ref);
        }
        Self::before_decision(
            &Request {
                call_id: answer.call_id,
                transport: answer.transport.as_str(),
                trunk: answer.trunk,
                status: answer.status,
                from_user: answer.from_user.as_deref(),
                ruri_user: answer.ruri_user.as_deref(),
            },
            outcome,
        )
    }

    /// The record of an INVITE answered before any decision, from what the request said.
    pub fn before_decision(req: &Request<'a>, outcome: &'a Outcome) -> Self {
        let d = &outcome.decision;
        let reason = match &d.action {
            DecisionAction::Reject { code, reason, .. } => phrase(*code, reason.as_deref()),
            DecisionAction::Route(_) => "-",
        };
        let user = |u: Option<&str>| u.unwrap_or("-").to_owned();
        Self {
            call_id: req.call_id,
            call_ref: "-",
            trunk: req.trunk.unwrap_or("-"),
            trusted: false,
            transport: req.transport,
            tls_peer: "-",
            ani: user(req.from_user),
            ani_source: "from",
            ani_verified: false,
            sources_disagree: false,
            presented: user(req.from_user),
            dnis: user(req.ruri_user),
            dnis_source: "request-uri",
            emergency: false,
            ani_valid: false,
            ani_kind: "-",
            ani_region: "-",
            ani_geo: "-",
            ani_tz: "-",
            ani_subdivision: "-",
            caller_zone: "-",
            caller_zone_choice: "-".to_owned(),
            dnis_kind: "-",
            cli: "-",
            cli_reason: "-",
            cpc: "-",
            ani_ii: "-",
            charge_number: "-".to_owned(),
            enrich: outcome.enrich,
            crm: "skipped",
            crm_customer: "-",
            crm_tier: "-",
            crm_language: "-",
            crm_tags: String::new(),
            crm_open_cases: "-".to_owned(),
            crm_attributes: String::new(),
            risk: "-",
            risk_score: 0,
            risk_signals: String::new(),
            risk_degraded: false,
            lists: String::new(),
            attestation: "-",
            verification: Cow::Borrowed("-"),
            repeat_of: "-",
            repeat_seen: 0,
            risk_verify_queue: "-",
            outcome: "reject",
            status: req.status,
            queue: "-",
            reason,
            decided_by: outcome.why.as_str(),
            rule: &d.rule,
            rules_version: &d.version,
            shadow: "-",
            shadow_status: 0,
            shadow_queue: "-",
            shadow_rule: "-",
        }
    }

    /// Writes the decision line and counts the call (`tollgate_calls_total` by trunk and
    /// status: configured trunk names and status codes, so the series stay few).
    pub fn log(&self, latency: std::time::Duration) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if crate::logsink::json() {
            // The same line the subscriber's JSON format writes (`tests` below hold them
            // equal), serialized in one pass and queued for the log's writer thread: the
            // subscriber's field visitor cost as much as the rest of the call.
            if enabled() {
                let line = crate::logsink::json_line(
                    "decision",
                    TARGET,
                    self,
                    &[("latency_us", latency_us)],
                );
                let _ = crate::logsink::push(line);
            }
        } else {
            self.trace(latency_us);
        }
        count(self.trunk, self.status, latency);
        count_arrival(self.transport, self.tls_peer);
    }

    /// The decision line through the tracing subscriber (a text log, or no sink installed).
    fn trace(&self, latency_us: u64) {
        tracing::info!(
            target: TARGET,
            call_id = self.call_id,
            call_ref = self.call_ref,
            trunk = self.trunk,
            trusted = self.trusted,
            transport = self.transport,
            tls_peer = self.tls_peer,
            ani = %self.ani,
            ani_source = self.ani_source,
            ani_verified = self.ani_verified,
            sources_disagree = self.sources_disagree,
            presented = %self.presented,
            dnis = %self.dnis,
            dnis_source = self.dnis_source,
            emergency = self.emergency,
            ani_valid = self.ani_valid,
            ani_kind = self.ani_kind,
            ani_region = self.ani_region,
            ani_geo = self.ani_geo,
            ani_tz = self.ani_tz,
            ani_subdivision = self.ani_subdivision,
            caller_zone = self.caller_zone,
            caller_zone_choice = %self.caller_zone_choice,
            dnis_kind = self.dnis_kind,
            cli = self.cli,
            cli_reason = self.cli_reason,
            cpc = self.cpc,
            ani_ii = self.ani_ii,
            charge_number = %self.charge_number,
            enrich = self.enrich,
            crm = self.crm,
            crm_customer = self.crm_customer,
            crm_tier = self.crm_tier,
            crm_language = self.crm_language,
            crm_tags = %self.crm_tags,
            crm_open_cases = %self.crm_open_cases,
            crm_attributes = %self.crm_attributes,
            risk = self.risk,
            risk_score = self.risk_score,
            risk_signals = %self.risk_signals,
            risk_degraded = self.risk_degraded,
            lists = %self.lists,
            attestation = self.attestation,
            verification = %self.verification,
            repeat_of = self.repeat_of,
            repeat_seen = self.repeat_seen,
            risk_verify_queue = self.risk_verify_queue,
            outcome = self.outcome,
            status = self.status,
            queue = self.queue,
            reason = self.reason,
            decided_by = self.decided_by,
            rule = self.rule,
            rules_version = self.rules_version,
            shadow = self.shadow,
            shadow_status = self.shadow_status,
            shadow_queue = self.shadow_queue,
            shadow_rule = self.shadow_rule,
            latency_us,
            "decision"
        );
    }
}

/// Whether decision lines are written (`log.decisions`, or no subscriber at all): the record
/// is only built when they are.
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

/// `tollgate_calls_by_transport_total{transport, tls_peer}`: configured peer names, `unmatched`
/// or `-`, so the series stay few.
pub fn count_arrival(transport: &'static str, tls_peer: &str) {
    metrics::counter!(
        "tollgate_calls_by_transport_total",
        "transport" => transport,
        "tls_peer" => tls_peer.to_owned()
    )
    .increment(1);
}

/// `tollgate_calls_total{trunk, status}` (and `outcome`, "302" or "reject", as before), and
/// the decision latency.
pub fn count(trunk: &str, status: u16, latency: std::time::Duration) {
    metrics::histogram!("tollgate_decision_seconds").record(latency.as_secs_f64());
    let outcome = if status == 302 { "302" } else { "reject" };
    metrics::counter!(
        "tollgate_calls_total",
        "trunk" => trunk.to_owned(),
        "status" => status.to_string(),
        "outcome" => outcome
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The decision line the sink writes ([`crate::logsink::json_line`]) is the line the
    /// tracing subscriber's JSON format writes for the same record, field by field and value
    /// by value (the timestamp aside): operators' parsers and `diff --decisions` read either.
    #[test]
    fn sink_line_is_the_subscribers_line() {
        #[derive(Clone, Default)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let outcome =
            crate::pipeline::Pipeline::early_outcome(503, tollgate_sip::EarlyReason::Overloaded);
        let answer = tollgate_sip::EarlyAnswer {
            call_id: "a\"b\\c\u{7f}é@host",
            source: "192.0.2.1:5060".parse().unwrap(),
            transport: tollgate_core::Transport::Udp,
            trunk: Some("carrier \"one\""),
            status: 503,
            reason: tollgate_sip::EarlyReason::Overloaded,
            from_user: Some("+12125550123".into()),
            ruri_user: Some("18005550100".into()),
            call: None,
        };
        let record = DecisionRecord::early(&answer, &outcome);
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || record.trace(1234));
        let traced = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let ours = crate::logsink::json_line("decision", TARGET, &record, &[("latency_us", 1234)]);
        let ours = String::from_utf8(ours).unwrap();
        assert!(ours.ends_with("}\n") && !ours[..ours.len() - 1].contains('\n'));
        let parse = |line: &str| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line.trim_end()).unwrap();
            let t = v.remove("timestamp").unwrap();
            assert!(
                jiff::Timestamp::from_str(t.as_str().unwrap()).is_ok(),
                "{t}"
            );
            v
        };
        let (a, b) = (parse(&traced), parse(&ours));
        assert!(a.len() > 60, "{traced}");
        assert_eq!(a, b, "\nsubscriber: {traced}\nsink:       {ours}");
    }
}
