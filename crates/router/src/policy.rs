//! The decision: the rules, then the risk policy where the rules left it the call. One function
//! for live calls, `explain`, `diff` and replays, so they cannot disagree.

use jiff::Timestamp;
use tollgate_core::{CallFacts, Decision, DecisionAction, RejectCause, RiskLevel, SharedStr};

use crate::eval::{evaluated, Explained};
use crate::model::Rules;

/// Which part of the engine gave the answer (the decision log's `decided_by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecidedBy {
    /// A rule routed the call.
    Rule,
    /// A rule rejected the call (its own code).
    RuleReject,
    /// The trunk's CLI policy rejected the caller number (before routing).
    CliPolicy,
    /// `[risk.block]`: blocked, and no rule that tests risk decided.
    RiskBlock,
    /// The risk policy's verification queue replaced the rule's agent queue.
    RiskVerify,
    /// `identity = "require"` and the call did not verify (RFC 8224 §6.2.2).
    Identity,
    /// The risk store failed under `fail_open = false`.
    FailClosed,
}

impl DecidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Rule => "rule",
            DecidedBy::RuleReject => "rule-reject",
            DecidedBy::CliPolicy => "cli-policy",
            DecidedBy::RiskBlock => "risk-block",
            DecidedBy::RiskVerify => "risk-verify",
            DecidedBy::Identity => "identity-required",
            DecidedBy::FailClosed => "risk-fail-closed",
        }
    }
}

/// The rule name of the risk policy's rejections.
static RISK: SharedStr = SharedStr::from_static("risk");

/// Decides a call ([`decide`] without the trace).
pub fn route(facts: &CallFacts, rules: &Rules, now: Timestamp) -> Decision {
    decide(facts, rules, now, false).decision
}

/// A call's decision, who gave it, and (when asked) why.
#[derive(Clone, Debug)]
pub struct Routed {
    pub decision: Decision,
    pub decided_by: DecidedBy,
    /// The rules' trace: every rule tried (with `trace` only).
    pub trace: Option<Explained>,
    /// What the risk policy did after the rules, as explain prints it (with `trace` only;
    /// `None` when it left the rules' answer alone).
    pub policy: Option<String>,
}

/// Decides a call whose facts are enriched: [`evaluate`] the line's rules, then the risk
/// policy, in this order of precedence:
///
/// 1. A rule whose condition tests the risk verdict (`risk`, `risk_at_least`, `list`) decides
///    for the callers it matches, blocked ones included, so a line's own reject code or
///    verification queue wins over the policy's.
/// 2. Otherwise the policy's rejection stands (`facts.risk.reject`: a block, then a failed
///    identity, then a failed store under `fail_open = false`). Identity and fail-closed
///    rejections are not the rules' to override, even a risk-aware rule's.
/// 3. Otherwise a gray-listed or high-risk caller goes to the policy's verification queue
///    (`facts.risk.verify_queue`), unless the rule already routes to a verification queue.
///
/// Emergency calls are never rejected and never moved.
///
/// A call a rule routes or rejects costs no allocation without `trace`: the decision's text is
/// shared with `rules` (`tollgate_core::SharedStr`; `crates/router/tests/alloc.rs` holds it).
pub fn decide(facts: &CallFacts, rules: &Rules, now: Timestamp, trace: bool) -> Routed {
    let (e, verify_name) = evaluated(facts, rules, now, trace);
    let risk_aware = e.risk_aware;
    // The live path (no trace) moves the rules' decision out; only explain keeps a copy.
    let (mut decision, trace) = if trace {
        (e.decision.clone(), Some(e))
    } else {
        (e.decision, None)
    };
    let by_rule = match decision.action {
        DecisionAction::Route(_) => DecidedBy::Rule,
        DecisionAction::Reject { .. } => DecidedBy::RuleReject,
    };
    let risk = facts.risk.as_ref().filter(|_| !facts.emergency);
    let Some(risk) = risk else {
        return Routed {
            decision,
            decided_by: by_rule,
            policy: (trace.is_some() && facts.emergency && facts.risk.is_some())
                .then(|| "emergency call: the risk policy neither rejects nor moves it".into()),
            trace,
        };
    };
    if let Some(rej) = &risk.reject {
        let blocked = risk.level == RiskLevel::Blocked;
        if !(blocked && risk_aware) {
            let decided_by = match rej.cause {
                RejectCause::Blocked => DecidedBy::RiskBlock,
                RejectCause::Identity => DecidedBy::Identity,
                RejectCause::FailClosed => DecidedBy::FailClosed,
            };
            let policy = trace.is_some().then(|| {
                let reason = rej
                    .reason
                    .as_deref()
                    .map_or(String::new(), |r| format!(" {r}"));
                format!(
                    "{}: {}{reason} instead of the rules' answer",
                    decided_by.as_str(),
                    rej.code,
                )
            });
            return Routed {
                decision: Decision::rejected(rej, RISK.clone()),
                decided_by,
                trace,
                policy,
            };
        }
    }
    let mut decided_by = by_rule;
    let mut policy = None;
    if let (DecisionAction::Route(t), Some(q)) = (&mut decision.action, &risk.verify_queue) {
        if risk_aware {
            if trace.is_some() {
                policy = Some(format!(
                    "risk-verify: the rule tests risk, so it keeps {} (not {q})",
                    t.queue
                ));
            }
        } else if !t.verify {
            if trace.is_some() {
                policy = Some(format!("risk-verify: {q} instead of {}", t.queue));
            }
            t.queue = q.shared().clone();
            t.verify = true;
            t.priority = None;
            t.skills = tollgate_core::Skills::default();
            decision.rule = match verify_name {
                Some(name) => name.clone(),
                None => format!("{}+risk-verify", decision.rule).into(),
            };
            decided_by = DecidedBy::RiskVerify;
        }
    }
    Routed {
        decision,
        decided_by,
        trace,
        policy,
    }
}
