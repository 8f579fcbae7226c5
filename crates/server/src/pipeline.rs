//! The per-call pipeline: enrich (risk and CRM, in parallel under one deadline), route, log.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use tollgate_core::{
    CallFacts, CallerProfile, CliConfig, Decision, DecisionAction, NumberIntel, NumberPlan,
    RiskAssessment,
};
use tollgate_sip::{Call, CallHandler};
use tracing::Instrument;

/// A boxed future: the seams are object-safe so adapters can be chosen from config.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The risk seam: velocity, lists, STIR/SHAKEN and the score (the risk crate implements it).
pub trait RiskCheck: Send + Sync + std::fmt::Debug {
    fn assess<'a>(&'a self, facts: &'a CallFacts) -> BoxFuture<'a, Option<RiskAssessment>>;
}

/// The CRM seam: a caller profile for the ANI (the lookup crate implements it).
pub trait Directory: Send + Sync + std::fmt::Debug {
    fn lookup<'a>(&'a self, facts: &'a CallFacts) -> BoxFuture<'a, Option<CallerProfile>>;
}

/// No risk engine configured: every call is unassessed.
#[derive(Debug, Default)]
pub struct NoRisk;

impl RiskCheck for NoRisk {
    fn assess<'a>(&'a self, _: &'a CallFacts) -> BoxFuture<'a, Option<RiskAssessment>> {
        Box::pin(std::future::ready(None))
    }
}

/// No CRM configured.
#[derive(Debug, Default)]
pub struct NoDirectory;

impl Directory for NoDirectory {
    fn lookup<'a>(&'a self, _: &'a CallFacts) -> BoxFuture<'a, Option<CallerProfile>> {
        Box::pin(std::future::ready(None))
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
    pub table: tollgate_router::Table,
    pub risk: Arc<dyn RiskCheck>,
    pub directory: Arc<dyn Directory>,
    /// Risk and CRM together get this long; the call routes without them after.
    pub enrich_deadline: Duration,
}

impl Pipeline {
    /// Routes facts that are already enriched: the pure part, shared with benchmarks and explain.
    pub fn route(&self, facts: &CallFacts) -> Decision {
        tollgate_router::route(facts, &self.table, &self.plan)
    }

    /// Number intelligence and the trunk's CLI policy; `Some` is a policy rejection.
    pub fn annotate(&self, facts: &mut CallFacts) -> Option<Decision> {
        let cli = self.cli.get(&facts.trunk).unwrap_or(&self.cli_default);
        self.intel.annotate(facts, cli).err().map(|rej| Decision {
            action: DecisionAction::Reject {
                code: rej.code,
                reason: rej.reason,
            },
            rule: "cli-policy".into(),
        })
    }

    /// The whole decision for facts fresh from extraction, without the async enrichment:
    /// what benchmarks and `explain` run.
    pub fn decide_now(&self, facts: &mut CallFacts) -> Decision {
        match self.annotate(facts) {
            Some(reject) => reject,
            None => self.route(facts),
        }
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
            let rejected = self.annotate(&mut call.facts);
            let facts = &call.facts;
            let enrich =
                async { tokio::join!(self.risk.assess(facts), self.directory.lookup(facts)) };
            let (risk, profile, enrich_note) =
                match tokio::time::timeout(self.enrich_deadline, enrich).await {
                    Ok((r, p)) => (r, p, "ok"),
                    Err(_) => (None, None, "timeout"),
                };
            call.facts.risk = risk;
            call.facts.profile = profile;
            let decision = rejected.unwrap_or_else(|| self.route(&call.facts));
            let f = &call.facts;
            let ani_info = f.ani_info.as_ref();
            let cli = f.cli.as_ref();
            let latency_us = u64::try_from(call.received.elapsed().as_micros()).unwrap_or(u64::MAX);
            let (outcome, queue) = match &decision.action {
                DecisionAction::Route { queue, .. } => ("302", queue.as_str()),
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
                enrich = enrich_note,
                outcome,
                queue,
                rule = %decision.rule,
                latency_us,
                "decision"
            );
            metrics::counter!("tollgate_calls_total", "outcome" => outcome).increment(1);
            metrics::histogram!("tollgate_decision_seconds")
                .record(call.received.elapsed().as_secs_f64());
            decision
        }
        .instrument(span)
    }
}
