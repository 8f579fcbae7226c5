//! The per-call pipeline: number intelligence, enrichment (risk and CRM in parallel under one
//! deadline), routing, and the decision log line.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{
    CallFacts, CallerHistory, CallerProfile, CliConfig, Decision, DecisionAction, LookupStatus,
    NumberIntel, NumberPlan, RiskAssessment,
};
use tollgate_sip::{Call, CallHandler};
use tracing::Instrument;

/// A boxed future: the seams are object-safe so adapters can be chosen from config.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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
    ) -> BoxFuture<'a, RiskAnswer>;

    /// After a decision: remember where the caller went (repeat-caller rules). Must not block.
    fn remember(&self, _facts: &CallFacts, _decision: &Decision, _now: std::time::SystemTime) {}
}

/// The CRM seam: a caller profile for the ANI (the lookup crate implements it).
pub trait Directory: Send + Sync + std::fmt::Debug {
    fn lookup<'a>(
        &'a self,
        facts: &'a CallFacts,
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
    ) -> BoxFuture<'a, RiskAnswer> {
        Box::pin(std::future::ready(RiskAnswer::default()))
    }
}

/// No CRM configured.
#[derive(Debug, Default)]
pub struct NoDirectory;

impl Directory for NoDirectory {
    fn lookup<'a>(
        &'a self,
        _: &'a CallFacts,
    ) -> BoxFuture<'a, (LookupStatus, Option<CallerProfile>)> {
        Box::pin(std::future::ready((LookupStatus::Skipped, None)))
    }
}

/// The call handler the SIP layer calls.
#[derive(Debug)]
pub struct Pipeline {
    pub plan: Arc<NumberPlan>,
    pub intel: Arc<NumberIntel>,
    /// CLI validation per trunk name, and for calls from unknown sources.
    pub cli: HashMap<String, CliConfig>,
    pub cli_default: CliConfig,
    pub rules: Arc<crate::rules::RuleStore>,
    pub risk: Arc<dyn RiskCheck>,
    pub directory: Arc<dyn Directory>,
    /// Risk and CRM together get this long; the call routes without them after.
    pub enrich_deadline: Duration,
    /// The wall clock rules see (business hours, repeat windows); tests pin it.
    pub clock: fn() -> jiff::Timestamp,
    /// Screen pops for routed calls (the HTTP API's hub); publishing never waits.
    pub pops: Option<tollgate_api::Publisher>,
}

impl Pipeline {
    /// Routes facts that are already enriched: the pure part, shared with benchmarks and explain.
    pub fn route(&self, facts: &CallFacts) -> Decision {
        tollgate_router::route(facts, &self.rules.current(), (self.clock)())
    }

    /// Number intelligence and the trunk's CLI policy; `Some` is a policy rejection.
    pub fn annotate(&self, facts: &mut CallFacts) -> Option<Decision> {
        let cli = self.cli.get(&*facts.trunk).unwrap_or(&self.cli_default);
        self.intel
            .annotate(facts, cli)
            .err()
            .map(|rej| Decision::reject(rej.code, rej.reason, Vec::new(), "cli-policy"))
    }

    /// After enrichment: a risk rejection (never for emergency calls), else the router.
    pub fn finish(&self, facts: &CallFacts) -> Decision {
        if !facts.emergency {
            if let Some(rej) = facts.risk.as_ref().and_then(|r| r.reject.as_ref()) {
                return Decision::reject(rej.code, rej.reason.clone(), rej.headers.clone(), "risk");
            }
        }
        let mut decision = self.route(facts);
        // The risk policy's verification queue (gray list, high risk) takes the call from an
        // agent queue; a rule that already verifies, and emergency calls, keep theirs.
        let verify = facts.risk.as_ref().and_then(|r| {
            r.signals
                .iter()
                .find(|s| s.name == "verify-queue")
                .map(|s| s.detail.clone())
        });
        if let (DecisionAction::Route(t), Some(q), false) =
            (&mut decision.action, verify, facts.emergency)
        {
            if !t.verify {
                t.queue = q;
                t.verify = true;
                t.priority = None;
                t.skills.clear();
                decision.rule = format!("{}+risk-verify", decision.rule);
            }
        }
        decision
    }

    /// The whole decision for facts fresh from extraction, without the async enrichment:
    /// what benchmarks and `explain` run.
    pub fn decide_now(&self, facts: &mut CallFacts) -> Decision {
        match self.annotate(facts) {
            Some(reject) => reject,
            None => self.finish(facts),
        }
    }

    /// Risk and CRM in parallel, each cut off at the shared deadline on its own, so a slow CRM
    /// never costs the call its risk verdict (or the reverse).
    async fn enrich(&self, facts: &mut CallFacts) -> &'static str {
        let deadline = tokio::time::Instant::now() + self.enrich_deadline;
        let f = &*facts;
        let now = std::time::SystemTime::from((self.clock)());
        let (risk, lookup) = tokio::join!(
            tokio::time::timeout_at(deadline, self.risk.assess(f, now)),
            tokio::time::timeout_at(deadline, self.directory.lookup(f)),
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
}

impl CallHandler for Pipeline {
    fn decide(&self, call: &mut Call) -> impl Future<Output = Decision> + Send {
        let span = tracing::info_span!(
            "call",
            call_id = %call.facts.call_id,
            ani = %call.facts.ani,
            dnis = %call.facts.dnis,
        );
        async move {
            // Per-stage latency, so /metrics shows where a slow call spent its time.
            let stage = |name: &'static str, since: std::time::Instant| {
                metrics::histogram!("tollgate_stage_seconds", "stage" => name)
                    .record(since.elapsed().as_secs_f64());
            };
            let t = std::time::Instant::now();
            let annotated = self.annotate(&mut call.facts);
            stage("numbers", t);
            let decision = match annotated {
                Some(reject) => (reject, "skipped"),
                None => {
                    let t = std::time::Instant::now();
                    let note = self.enrich(&mut call.facts).await;
                    stage("enrich", t);
                    let t = std::time::Instant::now();
                    let decision = self.finish(&call.facts);
                    stage("route", t);
                    let now = std::time::SystemTime::from((self.clock)());
                    self.risk.remember(&call.facts, &decision, now);
                    (decision, note)
                }
            };
            log_decision(call, &decision.0, decision.1);
            if let Some(pops) = &self.pops {
                crate::http::publish_pop(pops, call, &decision.0);
            }
            decision.0
        }
        .instrument(span)
    }
}

/// Every signal with its weight, `name:+w` comma-separated (the explain trace has the details).
fn risk_signals(risk: Option<&RiskAssessment>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for s in risk.map(|r| r.signals.as_slice()).unwrap_or_default() {
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}:{:+}", s.name, s.weight);
    }
    out
}

fn verification(v: &tollgate_core::Verification) -> std::borrow::Cow<'_, str> {
    match v {
        tollgate_core::Verification::Absent => "absent".into(),
        tollgate_core::Verification::Verified => "verified".into(),
        tollgate_core::Verification::Failed(why) => format!("failed: {why}").into(),
    }
}

/// The one structured line per call.
fn log_decision(call: &Call, decision: &Decision, enrich: &str) {
    let f = &call.facts;
    let ani_info = f.ani_info.as_ref();
    let cli = f.cli.as_ref();
    let latency_us = u64::try_from(call.received.elapsed().as_micros()).unwrap_or(u64::MAX);
    let (outcome, queue) = match &decision.action {
        DecisionAction::Route(t) => ("302", t.queue.as_str()),
        DecisionAction::Reject { reason, .. } => ("reject", reason.as_str()),
    };
    tracing::info!(
        target: "tollgate::decision",
        call_id = %f.call_id,
        call_ref = %call.call_ref,
        trunk = %f.trunk,
        trusted = f.trusted,
        ani = %f.ani,
        ani_source = f.ani_source.as_str(),
        ani_verified = f.ani_verified,
        sources_disagree = f.sources_disagree,
        presented = %f.presented,
        dnis = %f.dnis,
        dnis_source = f.dnis_source.as_str(),
        emergency = f.emergency,
        ani_valid = ani_info.is_some_and(|i| i.valid),
        ani_kind = ani_info.map_or("-", |i| i.kind.as_str()),
        ani_region = ani_info.and_then(|i| i.region).unwrap_or("-"),
        ani_geo = f.ani_geo.as_ref().and_then(|g| g.description.as_deref()).unwrap_or("-"),
        ani_tz = f.ani_geo.as_ref().and_then(|g| g.time_zone()).unwrap_or("-"),
        dnis_kind = f.dnis_info.as_ref().map_or("-", |i| i.kind.as_str()),
        cli = cli.map_or("-", |c| c.verdict.as_str()),
        cli_reason = cli.map_or("-", |c| c.reason.as_str()),
        enrich,
        crm = f.lookup.as_str(),
        risk = f.risk.as_ref().map_or("-", |r| r.level.as_str()),
        risk_score = f.risk.as_ref().map_or(0, |r| r.score),
        risk_signals = %risk_signals(f.risk.as_ref()),
        risk_degraded = f.risk.as_ref().is_some_and(|r| r.degraded),
        lists = %f.risk.as_ref().map_or(String::new(), |r| r.list_hits.join(",")),
        attestation = f.risk.as_ref().and_then(|r| r.attestation).map_or("-", |a| a.as_str()),
        verification = %f.risk.as_ref().map_or(std::borrow::Cow::Borrowed("-"), |r| verification(&r.verification)),
        repeat_of = f.history.as_ref().map_or("-", |h| h.last_queue.as_str()),
        outcome,
        queue,
        rule = %decision.rule,
        rules_version = %decision.version,
        latency_us,
        "decision"
    );
    metrics::counter!("tollgate_calls_total", "outcome" => outcome).increment(1);
    metrics::histogram!("tollgate_decision_seconds").record(call.received.elapsed().as_secs_f64());
}
