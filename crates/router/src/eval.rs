//! `route(facts, rules, now)`: walk the line's rules in order, first match wins; with a trace
//! of every rule tried and why it matched or not, for `explain`.

use std::fmt::Write as _;

use jiff::{Timestamp, Zoned};
use tollgate_core::{CallFacts, Decision, DecisionAction, PartyNumber, SharedStr, Target};

use crate::model::{Action, Cond, Hours, Matcher, QueueSpec, Rule, RuleSet, Rules};

/// The decision's rule name for an emergency call routed to the emergency queue.
static EMERGENCY: SharedStr = SharedStr::from_static("emergency");
/// The safety net's name (the parser guarantees the default set ends with a catch-all).
static FALLBACK: SharedStr = SharedStr::from_static("fallback");
static FALLBACK_VERIFY: SharedStr = SharedStr::from_static("fallback+risk-verify");

/// One rule tried, for explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub set: String,
    pub rule: String,
    pub line: usize,
    pub matched: bool,
    pub why: String,
}

/// A decision with the trace that produced it.
#[derive(Clone, Debug)]
pub struct Explained {
    pub decision: Decision,
    pub steps: Vec<Step>,
    /// Whether the line was open at `now` (None: the line has no hours).
    pub open: Option<bool>,
    /// The rule that decided tests the risk verdict (`risk`, `risk_at_least`, `list`): its
    /// answer stands for blocked, gray-listed and high-risk callers (see the server's
    /// precedence), where a rule that does not look at risk leaves them to the risk policy.
    pub risk_aware: bool,
}

struct Ctx<'a> {
    facts: &'a CallFacts,
    now: Timestamp,
    hours: Option<&'a Hours>,
    local: std::cell::OnceCell<Option<Zoned>>,
}

impl Ctx<'_> {
    fn local(&self) -> Option<&Zoned> {
        self.local
            .get_or_init(|| self.hours.map(|h| self.now.to_zoned(h.tz.clone())))
            .as_ref()
    }

    /// The zone `caller_time` uses and why (`tollgate_core::caller_zone`): the caller's one
    /// zone, else the rule set's own `time_zone`.
    fn caller_zone(&self) -> (Option<&str>, tollgate_core::ZoneChoice) {
        let line = self.hours.map(|h| h.tz_name.as_str());
        tollgate_core::caller_zone(self.facts, line)
    }

    fn minutes(z: &Zoned) -> u16 {
        let t = z.time();
        u16::try_from(i32::from(t.hour()) * 60 + i32::from(t.minute())).unwrap_or(0)
    }

    fn open(&self) -> Option<bool> {
        let h = self.hours?;
        let z = self.local()?;
        if h.holidays.contains(&z.date()) {
            return Some(false);
        }
        let day = usize::from(z.weekday().to_monday_zero_offset().unsigned_abs());
        let m = Self::minutes(z);
        Some(
            h.weekly
                .get(day)
                .is_some_and(|r| r.iter().any(|&(a, b)| a <= m && m < b)),
        )
    }
}

/// `region`: an ISO 3166-2 subdivision ("US-NJ"), a bare subdivision code of the caller's own
/// country ("NJ"), or (places without a subdivision code) the geography text in full or its
/// last comma-separated part ("London", "Jersey City, NJ").
fn region_matches(list: &[String], g: &tollgate_core::GeoInfo) -> bool {
    let sub = g.subdivision.as_deref();
    let code = g.subdivision_code();
    let text = g.description.as_deref();
    let last = text.and_then(|d| d.rsplit(',').next()).map(str::trim);
    list.iter().any(|x| {
        let is = |v: Option<&str>| v.is_some_and(|v| x.eq_ignore_ascii_case(v));
        is(sub) || is(code) || is(text) || is(last)
    })
}

fn eq_any(list: &[String], v: Option<&str>) -> bool {
    v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
}

/// The ANI II digits of the call (`oli=` of a trusted identity URI), as a number.
fn ani_ii(f: &CallFacts) -> Option<u16> {
    f.oli.as_deref()?.trim().parse().ok()
}

fn in_ranges(ranges: &[(u16, u16)], m: u16) -> bool {
    ranges.iter().any(|&(a, b)| a <= m && m < b)
}

impl Matcher {
    fn test(&self, cx: &Ctx<'_>) -> bool {
        let f = cx.facts;
        let ani = f.ani.e164().map(|e| e.digits());
        let info = f.ani_info.as_ref();
        let profile = f.profile.as_ref();
        let risk = f.risk.as_ref();
        match self {
            Matcher::Ani(l) => ani.is_some_and(|a| l.iter().any(|x| x == a)),
            Matcher::AniPrefix(l) => {
                ani.is_some_and(|a| l.iter().any(|x| a.starts_with(x.as_str())))
            }
            Matcher::AniPattern(l) => f.ani.key().is_some_and(|a| l.iter().any(|p| p.matches(a))),
            Matcher::Dnis(l) => f.dnis.key().is_some_and(|d| l.iter().any(|x| x == d)),
            Matcher::CallingCode(l) => info.is_some_and(|i| l.contains(&i.calling_code)),
            Matcher::Country(l) => eq_any(l, info.and_then(|i| i.region)),
            Matcher::Region(l) => f.ani_geo.as_ref().is_some_and(|g| region_matches(l, g)),
            Matcher::Npa(l) => info.and_then(|i| i.npa).is_some_and(|n| l.contains(&n)),
            Matcher::Kind(l) => info.is_some_and(|i| l.contains(&i.kind)),
            Matcher::Valid(b) => info.is_some_and(|i| i.valid) == *b,
            Matcher::Cli(l) => f.cli.as_ref().is_some_and(|c| l.contains(&c.verdict)),
            Matcher::Trusted(b) => f.trusted == *b,
            Matcher::Verified(b) => f.ani_verified == *b,
            Matcher::Withheld(b) => matches!(f.ani, PartyNumber::Withheld(_)) == *b,
            Matcher::Emergency(b) => f.emergency == *b,
            Matcher::Crm(b) => profile.is_some() == *b,
            Matcher::Tier(l) => eq_any(l, profile.and_then(|p| p.tier.as_deref())),
            Matcher::Language(l) => eq_any(l, profile.and_then(|p| p.language.as_deref())),
            Matcher::Tag(l) => profile.is_some_and(|p| p.tags.iter().any(|t| eq_any(l, Some(t)))),
            Matcher::OpenCases { min, max } => profile
                .and_then(|p| p.open_cases)
                .is_some_and(|n| min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)),
            Matcher::Attribute(pairs) => profile.is_some_and(|p| {
                pairs.iter().all(|(k, v)| {
                    p.attributes
                        .get(k)
                        .is_some_and(|x| x.eq_ignore_ascii_case(v))
                })
            }),
            Matcher::Risk(l) => risk.is_some_and(|r| l.contains(&r.level)),
            Matcher::RiskAtLeast(level) => risk.is_some_and(|r| r.level >= *level),
            Matcher::List(l) => {
                risk.is_some_and(|r| r.list_hits.iter().any(|h| eq_any(l, Some(h))))
            }
            Matcher::Attestation(l) => l.contains(&risk.and_then(|r| r.attestation)),
            Matcher::RepeatWithin(secs) => f
                .history
                .as_ref()
                .is_some_and(|h| cx.now.as_second().saturating_sub(h.last_seen) <= *secs),
            Matcher::LastQueue(l) => eq_any(l, f.history.as_ref().map(|h| h.last_queue.as_str())),
            Matcher::AniIi(l) => ani_ii(f).is_some_and(|d| l.contains(&d)),
            Matcher::Cpc(l) => eq_any(l, f.cpc.as_deref()),
            Matcher::Open(b) => cx.open().unwrap_or(true) == *b,
            Matcher::Weekday(days) => cx.local().is_some_and(|z| days.contains(&z.weekday())),
            Matcher::Time(r) => cx.local().is_some_and(|z| in_ranges(r, Ctx::minutes(z))),
            Matcher::Holiday(b) => {
                let hol = cx
                    .hours
                    .zip(cx.local())
                    .is_some_and(|(h, z)| h.holidays.contains(&z.date()));
                hol == *b
            }
            Matcher::CallerTime(r) => cx
                .caller_zone()
                .0
                .and_then(|tz| jiff::tz::TimeZone::get(tz).ok())
                .is_some_and(|tz| in_ranges(r, Ctx::minutes(&cx.now.to_zoned(tz)))),
        }
    }

    /// What the matcher looked at, for the trace.
    fn observed(&self, cx: &Ctx<'_>) -> String {
        let f = cx.facts;
        let info = f.ani_info.as_ref();
        let p = f.profile.as_ref();
        let r = f.risk.as_ref();
        match self {
            Matcher::Ani(_) | Matcher::AniPrefix(_) | Matcher::AniPattern(_) => {
                format!("ani={}", f.ani)
            }
            Matcher::Dnis(_) => format!("dnis={}", f.dnis),
            Matcher::CallingCode(_) => {
                format!("calling_code={}", info.map_or(0, |i| i.calling_code))
            }
            Matcher::Country(_) => {
                format!("country={}", info.and_then(|i| i.region).unwrap_or("-"))
            }
            Matcher::Region(_) => {
                let g = f.ani_geo.as_ref();
                format!(
                    "region={} {:?}",
                    g.and_then(|g| g.subdivision.as_deref()).unwrap_or("-"),
                    g.and_then(|g| g.description.as_deref()).unwrap_or("-")
                )
            }
            Matcher::Npa(_) => format!(
                "npa={}",
                info.and_then(|i| i.npa)
                    .map_or("-".into(), |n| n.to_string())
            ),
            Matcher::Kind(_) => format!("kind={}", info.map_or("-", |i| i.kind.as_str())),
            Matcher::Valid(_) => format!("valid={}", info.is_some_and(|i| i.valid)),
            Matcher::Cli(_) => {
                format!("cli={}", f.cli.as_ref().map_or("-", |c| c.verdict.as_str()))
            }
            Matcher::Trusted(_) => format!("trusted={}", f.trusted),
            Matcher::Verified(_) => format!("verified={}", f.ani_verified),
            Matcher::Withheld(_) => format!("ani={}", f.ani),
            Matcher::Emergency(_) => format!("emergency={}", f.emergency),
            Matcher::Crm(_) => format!("crm={}", f.lookup.as_str()),
            Matcher::Tier(_) => {
                format!("tier={}", p.and_then(|p| p.tier.as_deref()).unwrap_or("-"))
            }
            Matcher::Language(_) => format!(
                "language={}",
                p.and_then(|p| p.language.as_deref()).unwrap_or("-")
            ),
            Matcher::Tag(_) => format!("tags={:?}", p.map(|p| p.tags.clone()).unwrap_or_default()),
            Matcher::OpenCases { .. } => format!(
                "open_cases={}",
                p.and_then(|p| p.open_cases)
                    .map_or("-".into(), |n| n.to_string())
            ),
            Matcher::Attribute(pairs) => pairs
                .iter()
                .map(|(k, _)| {
                    format!(
                        "{k}={}",
                        p.and_then(|p| p.attributes.get(k))
                            .map_or("-", String::as_str)
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            Matcher::Risk(_) | Matcher::RiskAtLeast(_) => {
                format!("risk={}", r.map_or("-", |r| r.level.as_str()))
            }
            Matcher::List(_) => format!(
                "lists={:?}",
                r.map(|r| r.list_hits.clone()).unwrap_or_default()
            ),
            Matcher::Attestation(_) => format!(
                "attestation={}",
                r.and_then(|r| r.attestation).map_or("none", |a| a.as_str())
            ),
            Matcher::RepeatWithin(_) | Matcher::LastQueue(_) => match &f.history {
                Some(h) => format!(
                    "last call {}s ago to {}",
                    cx.now.as_second().saturating_sub(h.last_seen),
                    h.last_queue
                ),
                None => "no previous call".into(),
            },
            Matcher::AniIi(_) => format!("ani_ii={}", f.oli.as_deref().unwrap_or("-")),
            Matcher::Cpc(_) => format!("cpc={}", f.cpc.as_deref().unwrap_or("-")),
            Matcher::Open(_) => format!(
                "open={}",
                cx.open().map_or("always".into(), |o| o.to_string())
            ),
            Matcher::Weekday(_) | Matcher::Time(_) | Matcher::Holiday(_) => {
                cx.local().map_or("no time zone".into(), |z| {
                    z.strftime("%a %Y-%m-%d %H:%M %Z").to_string()
                })
            }
            Matcher::CallerTime(_) => {
                let (zone, why) = cx.caller_zone();
                format!("caller tz={} ({})", zone.unwrap_or("unknown"), why.reason())
            }
        }
    }
}

impl Cond {
    fn test(&self, cx: &Ctx<'_>) -> bool {
        match self {
            Cond::All(v) => v.iter().all(|c| c.test(cx)),
            Cond::Any(v) => v.iter().any(|c| c.test(cx)),
            Cond::Not(c) => !c.test(cx),
            Cond::M(m) => m.test(cx),
        }
    }

    /// Like `test`, writing each leaf's verdict and what it saw.
    fn explain(&self, cx: &Ctx<'_>, out: &mut String) -> bool {
        match self {
            Cond::All(v) | Cond::Any(v) => {
                let all = matches!(self, Cond::All(_));
                out.push_str(if all { "all(" } else { "any(" });
                let mut result = all;
                for (i, c) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let r = c.explain(cx, out);
                    if all && !r {
                        result = false;
                    }
                    if !all && r {
                        result = true;
                    }
                }
                out.push(')');
                result
            }
            Cond::Not(c) => {
                out.push_str("not(");
                let r = !c.explain(cx, out);
                out.push(')');
                r
            }
            Cond::M(m) => {
                let r = m.test(cx);
                let _ = write!(out, "{} [{}]", if r { "✓" } else { "✗" }, m.observed(cx));
                r
            }
        }
    }
}

/// The target of a queue rule, to `queue` (the rule's own, `$last`'s or the line's overflow):
/// every string shared with the rules.
fn target(rules: &Rules, q: &QueueSpec, queue: &SharedStr, verify: bool) -> DecisionAction {
    DecisionAction::Route(Target {
        queue: queue.clone(),
        host: rules.shared_host.clone(),
        priority: q.priority,
        skills: q.skills.clone(),
        language: q.language.clone(),
        verify,
        scheme: q.scheme,
    })
}

/// The rules alone, recording every rule tried and why.
pub fn explain(facts: &CallFacts, rules: &Rules, now: Timestamp) -> Explained {
    evaluate(facts, rules, now, true)
}

/// The rules alone: the first matching rule of the DNIS's rule set, then of the default set,
/// with whether the deciding rule looked at risk, and the trace of every rule tried when
/// `trace` is set. [`crate::decide`] runs it and then the risk policy.
pub fn evaluate(facts: &CallFacts, rules: &Rules, now: Timestamp, trace: bool) -> Explained {
    evaluated(facts, rules, now, trace).0
}

/// [`evaluate`], with the rule name the decision takes if the risk policy moves the call to its
/// verification queue (`None`: the decision is no rule's route).
pub(crate) fn evaluated<'r>(
    facts: &CallFacts,
    rules: &'r Rules,
    now: Timestamp,
    trace: bool,
) -> (Explained, Option<&'r SharedStr>) {
    let mut steps = Vec::new();
    run(facts, rules, now, trace.then_some(&mut steps))
}

/// `queue = { name = "$last", fallback }`: the caller's previous queue when it is a known one
/// and not the line's overflow (an after-hours queue is no place to send an open-hours call),
/// as the rules hold its name; with `note`, what it chose, for the trace.
fn resolve<'q>(
    q: &'q QueueSpec,
    facts: &CallFacts,
    rules: &'q Rules,
    set: &RuleSet,
    note: bool,
) -> (&'q SharedStr, Option<String>) {
    if !q.back_to_last {
        return (&q.name, None);
    }
    let last = facts.history.as_ref().map(|h| h.last_queue.as_str());
    let known = last.and_then(|l| {
        rules
            .queues
            .get(l)
            .filter(|_| set.overflow.as_deref() != Some(l))
    });
    let why = note.then(|| match (known, last) {
        (Some(k), _) => format!("$last: back to {k}, the previous call's queue"),
        (None, Some(l)) => format!(
            "$last: previous queue {l} is not a routable queue here; fallback {}",
            q.name
        ),
        (None, None) => format!("$last: no previous call; fallback {}", q.name),
    });
    (known.unwrap_or(&q.name), why)
}

/// The walk over the rules. Besides the rules' answer, the name its decision takes if the risk
/// policy moves the call to the verification queue. Without a trace it copies no text: every
/// string of the decision is shared with `rules`.
fn run<'r>(
    facts: &CallFacts,
    rules: &'r Rules,
    now: Timestamp,
    mut steps: Option<&mut Vec<Step>>,
) -> (Explained, Option<&'r SharedStr>) {
    let decide = |action: DecisionAction, rule: &SharedStr| Decision {
        action,
        rule: rule.clone(),
        version: rules.shared_version.clone(),
    };
    if facts.emergency {
        if let Some(q) = &rules.emergency_queue {
            if let Some(s) = steps.as_deref_mut() {
                s.push(Step {
                    set: "-".into(),
                    rule: "emergency".into(),
                    line: 0,
                    matched: true,
                    why: "emergency call: routed to the emergency queue".into(),
                });
            }
            let action = DecisionAction::Route(Target {
                queue: q.clone(),
                host: rules.shared_host.clone(),
                ..Target::default()
            });
            let e = Explained {
                decision: decide(action, &EMERGENCY),
                steps: Vec::new(),
                open: None,
                risk_aware: false,
            };
            return (e.with_steps(steps), None);
        }
    }
    let line = rules.set_for(facts.dnis.key());
    let default = rules.default_set();
    let sets: &[&RuleSet] = if std::ptr::eq(line, default) {
        &[line]
    } else {
        &[line, default]
    };
    let mut first_open = None;
    for set in sets {
        let cx = Ctx {
            facts,
            now,
            hours: set.hours.as_ref(),
            local: std::cell::OnceCell::new(),
        };
        if first_open.is_none() {
            first_open = Some(cx.open());
        }
        for rule in &set.rules {
            let matched = match (&rule.when, steps.as_deref_mut()) {
                (None, None) => true,
                (Some(c), None) => c.test(&cx),
                (when, Some(s)) => {
                    let mut why = String::new();
                    let m = match when {
                        Some(c) => c.explain(&cx, &mut why),
                        None => {
                            why.push_str("no condition");
                            true
                        }
                    };
                    let skipped =
                        m && facts.emergency && matches!(rule.action, Action::Reject { .. });
                    if skipped {
                        why.push_str("; skipped: emergency calls are never rejected");
                    }
                    s.push(Step {
                        set: set.name.clone(),
                        rule: rule.name.clone(),
                        line: rule.line,
                        matched: m && !skipped,
                        why,
                    });
                    m
                }
            };
            if !matched || (facts.emergency && matches!(rule.action, Action::Reject { .. })) {
                continue;
            }
            let mut after_hours = false;
            let action = match &rule.action {
                Action::Reject { code, reason } => DecisionAction::Reject {
                    code: *code,
                    reason: reason.clone(),
                    call_info: None,
                    retry_after: None,
                },
                Action::Verify(q) => target(rules, q, &q.name, true),
                Action::Queue(q) => {
                    let (queue, note) = resolve(q, facts, rules, set, steps.is_some());
                    if let (Some(note), Some(s)) = (note, steps.as_deref_mut()) {
                        if let Some(last) = s.last_mut() {
                            last.why.push_str("; ");
                            last.why.push_str(&note);
                        }
                    }
                    let closed = rule.respect_hours && cx.open() == Some(false);
                    match rule
                        .overflow
                        .as_ref()
                        .or(set.overflow.as_ref())
                        .filter(|_| closed)
                    {
                        Some(of) => {
                            if let Some(s) = steps.as_deref_mut() {
                                if let Some(last) = s.last_mut() {
                                    let _ = write!(last.why, "; line closed: overflow to {of}");
                                }
                            }
                            after_hours = true;
                            target(rules, q, of, false)
                        }
                        None => target(rules, q, queue, false),
                    }
                }
            };
            let e = Explained {
                decision: decide(action, rule.names.get(after_hours, false)),
                steps: Vec::new(),
                open: first_open.flatten(),
                risk_aware: rule.risk_aware,
            };
            return (e.with_steps(steps), Some(rule.names.get(after_hours, true)));
        }
    }
    // The parser guarantees the default set ends with a catch-all queue; this is a safe net.
    let action = DecisionAction::Route(Target {
        queue: rules.queues.iter().next().cloned().unwrap_or_default(),
        host: rules.shared_host.clone(),
        ..Target::default()
    });
    let e = Explained {
        decision: decide(action, &FALLBACK),
        steps: Vec::new(),
        open: first_open.flatten(),
        risk_aware: false,
    };
    (e.with_steps(steps), Some(&FALLBACK_VERIFY))
}

impl Explained {
    fn with_steps(mut self, steps: Option<&mut Vec<Step>>) -> Self {
        if let Some(s) = steps {
            self.steps = std::mem::take(s);
        }
        self
    }

    /// The trace as text, one rule per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let _ = writeln!(
                out,
                "{} {}/{} (line {}): {}",
                if s.matched { "MATCH" } else { "  no " },
                s.set,
                s.rule,
                s.line,
                s.why
            );
        }
        out
    }
}

/// Whether the rule (by its position) can ever be reached: used by the semantic checks.
pub(crate) fn always_matches(rule: &Rule) -> bool {
    rule.when.is_none()
}
