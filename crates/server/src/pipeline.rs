//! The per-call pipeline: number intelligence, enrichment (risk and CRM in parallel under one
//! deadline), routing with the risk policy's precedence, and the decision log line.
//!
//! One function decides, [`Pipeline::run`]: a live call runs it in [`Mode::Live`] (velocity is
//! recorded, the CRM cache filled, the caller remembered), `explain` and `diff` in
//! [`Mode::Dry`] against the same adapters, which then only read. Both produce the same
//! [`crate::decision::DecisionRecord`], so the decision log and `explain` cannot drift apart.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tollgate_core::{
    Attestation, CallFacts, CallerHistory, CallerProfile, CliConfig, Decision, DecisionAction,
    LookupStatus, NumberIntel, NumberPlan, RejectCause, Rejection, RiskAssessment, RiskLevel,
};
use tollgate_router::{DecidedBy, Explained};
use tollgate_sip::extract::Emergency;
use tollgate_sip::trunk::Trunks;
use tollgate_sip::{Call, CallHandler};
use tracing::Instrument;

use crate::decision::{DecisionRecord, Why};

pub use tollgate_core::BoxFuture;

/// Whether a decision is a live call's or a dry run's (`explain`, `diff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Velocity recorded, CRM cache filled, the caller remembered, the decision logged.
    Live,
    /// The same reads, no writes: velocity read-only (the call counted as the live call would
    /// count it), the CRM asked through its cache without filling it unless `fill_cache`.
    Dry { fill_cache: bool },
}

/// What the risk seam knows about a call: the assessment, and the caller's previous routed
/// call (read from the risk store with the velocity counters).
#[derive(Clone, Debug, Default)]
pub struct RiskAnswer {
    pub assessment: Option<RiskAssessment>,
    pub history: Option<CallerHistory>,
}

/// The risk seam: velocity, lists, STIR/SHAKEN and the score ([`crate::adapters::RiskAdapter`]).
pub trait RiskCheck: Send + Sync + std::fmt::Debug {
    fn assess<'a>(
        &'a self,
        facts: &'a CallFacts,
        now: std::time::SystemTime,
        mode: Mode,
    ) -> BoxFuture<'a, RiskAnswer>;

    /// After a live decision: remember where the caller went (repeat-caller rules). Must not
    /// block.
    fn remember(&self, _facts: &CallFacts, _decision: &Decision, _now: std::time::SystemTime) {}

    /// The answer `[risk.block]` gives a blocked caller (for `explain --risk blocked`).
    fn block_rejection(&self) -> Option<Rejection> {
        None
    }
}

/// The CRM seam: a caller profile for the ANI (the lookup crate implements it).
pub trait CrmCheck: Send + Sync + std::fmt::Debug {
    fn lookup<'a>(
        &'a self,
        facts: &'a CallFacts,
        mode: Mode,
    ) -> BoxFuture<'a, (LookupStatus, Option<CallerProfile>)>;
}

/// No risk engine configured: every call is unassessed.
#[derive(Debug, Default)]
pub struct NoRisk;

impl RiskCheck for NoRisk {
    fn assess<'a>(
        &'a self,
        _: &'a CallFacts,
        _: std::time::SystemTime,
        _: Mode,
    ) -> BoxFuture<'a, RiskAnswer> {
        Box::pin(std::future::ready(RiskAnswer::default()))
    }
}

/// No CRM configured.
#[derive(Debug, Default)]
pub struct NoCrm;

impl CrmCheck for NoCrm {
    fn lookup<'a>(
        &'a self,
        _: &'a CallFacts,
        _: Mode,
    ) -> BoxFuture<'a, (LookupStatus, Option<CallerProfile>)> {
        Box::pin(std::future::ready((LookupStatus::Skipped, None)))
    }
}

/// Facts an `explain` or `diff` caller states instead of what the adapters say (`--profile`,
/// `--risk`, `--lists`, attestation, history). Each one applied is named in the output.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub profile: Option<CallerProfile>,
    pub risk: Option<RiskLevel>,
    /// Lists the caller is on; `Some(empty)` says "on none".
    pub lists: Option<Vec<String>>,
    pub attestation: Option<Attestation>,
    pub history: Option<CallerHistory>,
}

impl Overrides {
    pub fn is_empty(&self) -> bool {
        self.profile.is_none()
            && self.risk.is_none()
            && self.lists.is_none()
            && self.attestation.is_none()
            && self.history.is_none()
    }

    /// Puts the stated facts in place of the enriched ones; returns what it replaced.
    /// A stated block-list hit or `blocked` level carries `[risk.block]`'s answer, as the
    /// risk engine's own verdict would (allow-listed and emergency callers excepted).
    fn apply(&self, facts: &mut CallFacts, block: Option<&Rejection>) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(p) = &self.profile {
            facts.profile = Some(p.clone());
            facts.lookup = LookupStatus::Found;
            notes.push(format!("profile: given (customer {:?})", p.customer_id));
        }
        if let Some(h) = &self.history {
            facts.history = Some(h.clone());
            notes.push(format!("history: given (last queue {})", h.last_queue));
        }
        if self.risk.is_none() && self.lists.is_none() && self.attestation.is_none() {
            return notes;
        }
        let r = facts.risk.get_or_insert_with(RiskAssessment::default);
        if let Some(lists) = &self.lists {
            r.list_hits.clone_from(lists);
            notes.push(format!("lists: given [{}]", lists.join(",")));
        }
        if let Some(a) = self.attestation {
            r.attestation = Some(a);
            notes.push(format!("attestation: given {}", a.as_str()));
        }
        let on = |l: &str| r.list_hits.iter().any(|h| h == l);
        let level = match self.risk {
            Some(level) => {
                notes.push(format!("risk: given {}", level.as_str()));
                level
            }
            None if on("block") && !on("allow") => RiskLevel::Blocked,
            None => r.level,
        };
        r.level = level;
        r.reject = if level == RiskLevel::Blocked && !on("allow") && !facts.emergency {
            Some(block.cloned().unwrap_or(Rejection {
                code: 603,
                reason: None,
                call_info: None,
                retry_after: None,
                cause: RejectCause::Blocked,
            }))
        } else {
            None
        };
        notes
    }
}

/// One decision with what explains it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// Which part of the engine answered.
    pub why: Why,
    /// "ok", "risk-timeout", "crm-timeout", "timeout"; "skipped" when no enrichment ran.
    pub enrich: &'static str,
    /// The router's trace, when asked for.
    pub trace: Option<Explained>,
    /// What the risk policy did after the rules, when a trace was asked for.
    pub policy: Option<String>,
    /// Facts the caller stated instead of the adapters' ([`Overrides`]).
    pub overridden: Vec<String>,
    /// The zone a rule on the caller's local time uses (`caller_time`), and why: the caller's
    /// one zone, else the dialled line's (`tollgate_core::caller_zone`).
    pub caller_zone: (Option<String>, Option<tollgate_core::ZoneChoice>),
    /// What each call-rate limit said (explain's `limits` line; dry runs only, and only where
    /// a limit applies to the call's trunk or the node).
    pub limits: Option<String>,
    /// What the shadow rules answered (when there are shadow rules and the rules decided the
    /// call): never the answer sent.
    pub shadow: Option<crate::shadow::ShadowAnswer>,
}

/// The call handler the SIP layer calls (through [`Live`]), and `explain`'s engine.
#[derive(Debug)]
pub struct Pipeline {
    pub plan: Arc<NumberPlan>,
    pub intel: Arc<NumberIntel>,
    /// The trunks and emergency numbers the SIP server classifies with, for `explain` (the
    /// same values the server got).
    pub trunks: Trunks,
    pub emergency: Emergency,
    /// `sip.unsupported_require = "reject"`: explain answers 420 as the SIP layer does.
    pub enforce_require: bool,
    /// CLI validation per trunk name, and for calls from unknown sources.
    pub cli: HashMap<String, CliConfig>,
    pub cli_default: CliConfig,
    pub rules: Arc<crate::rules::RuleStore>,
    pub risk: Arc<dyn RiskCheck>,
    pub crm: Arc<dyn CrmCheck>,
    /// Risk and CRM together get this long; the call routes without them after.
    pub enrich_deadline: Duration,
    /// The wall clock rules see (business hours, repeat windows); tests pin it.
    pub clock: fn() -> jiff::Timestamp,
    /// Screen pops for routed calls (the HTTP API's hub, set once it runs); publishing never
    /// waits.
    pub pops: OnceLock<tollgate_api::Publisher>,
    /// The call-rate limits, built once at start-up: a rules reload keeps their buckets.
    pub limits: Arc<crate::limits::Limits>,
}

impl Pipeline {
    /// The same pipeline deciding by other rules (`diff`'s candidate, `explain --rules`).
    pub fn with_rules(&self, rules: Arc<crate::rules::RuleStore>) -> Pipeline {
        Pipeline {
            plan: Arc::clone(&self.plan),
            intel: Arc::clone(&self.intel),
            trunks: self.trunks.clone(),
            emergency: self.emergency.clone(),
            enforce_require: self.enforce_require,
            cli: self.cli.clone(),
            cli_default: self.cli_default.clone(),
            rules,
            risk: Arc::clone(&self.risk),
            crm: Arc::clone(&self.crm),
            enrich_deadline: self.enrich_deadline,
            clock: self.clock,
            pops: OnceLock::new(),
            limits: Arc::clone(&self.limits),
        }
    }

    /// Routes facts that are already enriched by the live rules: the pure part.
    pub fn route(&self, facts: &CallFacts) -> Decision {
        tollgate_router::route(facts, &self.rules.current(), (self.clock)())
    }

    /// Number intelligence and the trunk's CLI policy; `Some` is a policy rejection.
    pub fn annotate(&self, facts: &mut CallFacts) -> Option<Decision> {
        let cli = self.cli.get(&*facts.trunk).unwrap_or(&self.cli_default);
        self.intel
            .annotate(facts, cli)
            .err()
            .map(|rej| Decision::reject(rej.code, rej.reason, "cli-policy"))
    }

    /// The zone `caller_time` rules of the call's line use, and why.
    fn caller_zone(
        &self,
        facts: &CallFacts,
    ) -> (Option<String>, Option<tollgate_core::ZoneChoice>) {
        let rules = self.rules.current();
        let line = rules.set_for(facts.dnis.key());
        let fallback = line.hours.as_ref().map(|h| h.tz_name.as_str());
        let (zone, why) = tollgate_core::caller_zone(facts, fallback);
        (zone.map(str::to_owned), Some(why))
    }

    /// The decision for facts fresh from extraction without the async enrichment (what the
    /// parse-to-route benchmark and the synchronous test harness run): the same annotate and
    /// finish as [`Pipeline::run`].
    pub fn decide_now(&self, facts: &mut CallFacts) -> Decision {
        match self.annotate(facts) {
            Some(reject) => reject,
            None => self.route(facts),
        }
    }

    /// Risk and CRM in parallel, each cut off at the shared deadline on its own, so a slow CRM
    /// never costs the call its risk verdict (or the reverse).
    async fn enrich(
        &self,
        facts: &mut CallFacts,
        mode: Mode,
        now: jiff::Timestamp,
    ) -> &'static str {
        let deadline = tokio::time::Instant::now() + self.enrich_deadline;
        let f = &*facts;
        let now = std::time::SystemTime::from(now);
        let (risk, lookup) = tokio::join!(
            tokio::time::timeout_at(deadline, self.risk.assess(f, now, mode)),
            tokio::time::timeout_at(deadline, self.crm.lookup(f, mode)),
        );
        let note = match (&risk, &lookup) {
            (Ok(_), Ok(_)) => "ok",
            (Err(_), Ok(_)) => "risk-timeout",
            (Ok(_), Err(_)) => "crm-timeout",
            (Err(_), Err(_)) => "timeout",
        };
        let risk = risk.unwrap_or_default();
        facts.risk = risk.assessment;
        facts.history = risk.history;
        let (status, profile) = lookup.unwrap_or((LookupStatus::Timeout, None));
        facts.lookup = status;
        facts.profile = profile;
        note
    }

    /// The one decision path: number intelligence and CLI policy, the call-rate limits (from
    /// `source`, the address the INVITE came from), enrichment under the deadline, the stated
    /// overrides (dry runs only have any), rules and risk precedence. A dry run reads the
    /// limits' buckets and charges none.
    pub async fn run(
        &self,
        facts: &mut CallFacts,
        source: Option<std::net::IpAddr>,
        mode: Mode,
        now: jiff::Timestamp,
        overrides: &Overrides,
        trace: bool,
    ) -> Outcome {
        let stage = |name: &'static str, since: std::time::Instant| {
            if mode == Mode::Live {
                metrics::histogram!("tollgate_stage_seconds", "stage" => name)
                    .record(since.elapsed().as_secs_f64());
            }
        };
        let t = std::time::Instant::now();
        let annotated = self.annotate(facts);
        stage("numbers", t);
        if let Some(reject) = annotated {
            let caller_zone = self.caller_zone(facts);
            return Outcome {
                decision: reject,
                why: Why::Decided(DecidedBy::CliPolicy),
                enrich: "skipped",
                trace: None,
                policy: None,
                overridden: Vec::new(),
                caller_zone,
                limits: None,
                shadow: None,
            };
        }
        // The rate limits: after extraction (an emergency call is never limited) and the
        // CLI policy (a call it rejects costs no token), before any enrichment is spent.
        let charge = match mode {
            Mode::Live => crate::limits::Charge::Live,
            Mode::Dry { .. } => crate::limits::Charge::Dry,
        };
        let checked = self.limits.check(
            &facts.trunk,
            source,
            facts.emergency,
            charge,
            mode != Mode::Live,
        );
        if let Some(limited) = checked.limited {
            let rules = self.rules.current();
            if mode == Mode::Live {
                metrics::counter!(
                    "tollgate_rate_limited_total",
                    "trunk" => facts.trunk.to_string(),
                    "limit" => limited.scope.as_str(),
                    "action" => limited.action.label()
                )
                .increment(1);
            }
            return Outcome {
                decision: limited.decision(&rules.acd_host, &rules.version),
                why: Why::Limited(limited.scope),
                enrich: "skipped",
                trace: None,
                policy: None,
                overridden: Vec::new(),
                caller_zone: self.caller_zone(facts),
                limits: checked.report,
                shadow: None,
            };
        }
        let t = std::time::Instant::now();
        let enrich = self.enrich(facts, mode, now).await;
        stage("enrich", t);
        let overridden = overrides.apply(facts, self.risk.block_rejection().as_ref());
        let t = std::time::Instant::now();
        // The rules, then the risk policy (tollgate_router::decide has the precedence).
        let routed = tollgate_router::decide(facts, &self.rules.current(), now, trace);
        stage("route", t);
        // The shadow rules: the same function on the same facts and clock, after the live
        // answer is made; nothing here can change it.
        let shadow =
            self.rules.shadow().as_ref().map(|rules| {
                crate::shadow::ShadowAnswer::decide(facts, rules, now, &routed.decision)
            });
        let caller_zone = self.caller_zone(facts);
        Outcome {
            decision: routed.decision,
            why: Why::Decided(routed.decided_by),
            enrich,
            trace: routed.trace,
            policy: routed.policy,
            overridden,
            caller_zone,
            limits: checked.report,
            shadow,
        }
    }

    /// A live call: [`Pipeline::run`], then the caller remembered, the decision logged and the
    /// screen pop handed over.
    pub async fn decide_live(&self, call: &mut Call) -> Decision {
        let now = (self.clock)();
        let out = self
            .run(
                &mut call.facts,
                Some(call.source.ip()),
                Mode::Live,
                now,
                &Overrides::default(),
                false,
            )
            .await;
        // A call the CLI policy or a rate limit answered was not assessed: nothing to remember.
        if matches!(out.why, Why::Decided(d) if d != DecidedBy::CliPolicy) {
            self.risk
                .remember(&call.facts, &out.decision, std::time::SystemTime::from(now));
        }
        if let Some(shadow) = &out.shadow {
            self.rules.shadow_stats().record(
                call.facts.dnis.key(),
                &out.decision,
                shadow,
                &call.call_ref,
            );
        }
        let latency = call.received.elapsed();
        if crate::decision::enabled() {
            DecisionRecord::new(&call.facts, &out, &call.call_ref).log(latency);
        } else {
            let status = match &out.decision.action {
                DecisionAction::Route(_) => 302,
                DecisionAction::Reject { code, .. } => *code,
            };
            crate::decision::count(&call.facts.trunk, status, latency);
        }
        if let Some(pops) = self.pops.get() {
            publish_pop(pops, call, &out.decision);
        }
        out.decision
    }
}

impl Pipeline {
    /// The outcome of an answer the SIP layer gave without a decision (logged, or explained).
    pub fn early_outcome(status: u16, reason: tollgate_sip::EarlyReason) -> Outcome {
        let phrase = tollgate_sip::response::reason_phrase(status);
        Outcome {
            decision: Decision::reject(status, phrase, reason.as_str()),
            why: Why::Early(reason),
            enrich: "skipped",
            trace: None,
            policy: None,
            overridden: Vec::new(),
            caller_zone: (None, None),
            limits: None,
            shadow: None,
        }
    }

    /// An INVITE the SIP layer answered without a decision: one decision line and the call
    /// counted, like every other answer.
    pub fn log_early(&self, answer: &tollgate_sip::EarlyAnswer<'_>) {
        let outcome = Self::early_outcome(answer.status, answer.reason);
        let latency = answer.call.map_or(Duration::ZERO, |c| c.received.elapsed());
        DecisionRecord::early(answer, &outcome).log(latency);
    }
}

/// The pipeline as the SIP server's handler; the same `Arc` serves `explain` in the API.
#[derive(Debug, Clone)]
pub struct Live(pub Arc<Pipeline>);

impl CallHandler for Live {
    fn decide(&self, call: &mut Call) -> impl Future<Output = Decision> + Send {
        CallHandler::decide(&*self.0, call)
    }

    fn answered_early(&self, answer: &tollgate_sip::EarlyAnswer<'_>) {
        self.0.log_early(answer);
    }
}

impl CallHandler for Pipeline {
    fn decide(&self, call: &mut Call) -> impl Future<Output = Decision> + Send {
        let span = tracing::info_span!(
            "call",
            call_id = %call.facts.call_id,
            ani = %call.facts.ani,
            dnis = %call.facts.dnis,
        );
        self.decide_live(call).instrument(span)
    }

    fn answered_early(&self, answer: &tollgate_sip::EarlyAnswer<'_>) {
        self.log_early(answer);
    }
}

/// The screen pop for a routed call, handed to the hub without waiting.
fn publish_pop(publisher: &tollgate_api::Publisher, call: &Call, decision: &Decision) {
    if let Some(pop) = tollgate_api::ScreenPop::build(
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
