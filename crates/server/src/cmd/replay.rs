//! `tollgate diff --decisions` and `tollgate diff --pcap`: real traffic replayed against
//! candidate rules, through the one decision path.
//!
//! - A decision log (the node's own JSON decision lines): each line's facts are rebuilt as the
//!   live call had them (the numbers, trunk and trust, calling line, CRM answer and profile,
//!   risk verdict with its lists, attestation and policy answers, the caller's previous call)
//!   and decided by [`Pipeline::run`] in dry mode at the line's own time, with adapters that
//!   answer what the log says the live adapters answered ([`Logged`]). The live side is what
//!   the log says was decided; the current rules are run too, and a call they now decide
//!   differently from the log is reported as such (rules changed since, or a fact the log does
//!   not carry).
//! - A capture (pcap or pcapng, [`crate::cmd::capture`]): each INVITE goes through the live
//!   path's own parsing, trunk classification by the packet's source address and extraction
//!   ([`crate::cmd::explain::facts_for`]), then [`Pipeline::run`] in dry mode at the packet's
//!   time, with the live and with the candidate rules, against the configured adapters.

use std::fmt::Write as _;
use std::io::{BufRead as _, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{Map, Value};
use tollgate_core::{
    AniSource, Arrival, Attestation, CallFacts, CallerHistory, CallerProfile, Candidates,
    DnisSource, LookupStatus, PartyNumber, Privacy, QueueName, RejectCause, Rejection,
    RiskAssessment, RiskLevel, RiskSignal, Transport, Verification, Withheld, E164,
};

use crate::cmd::capture::{CaptureReader, Destination};
use crate::cmd::explain::{describe, facts_for, CallSpec, CliError, Explanation};
use crate::decision::{unescape, DecisionRecord};
use crate::pipeline::{
    BoxFuture, CrmCheck, Mode, Outcome, Overrides, Pipeline, RiskAnswer, RiskCheck,
};

/// What a replay counted, for the exit status.
#[derive(Debug, Default)]
pub struct Summary {
    /// Calls whose answer the candidate changes.
    pub moved: usize,
    /// What could not be read, each naming the line or packet; the calls read were still
    /// replayed and reported.
    pub problems: Vec<String>,
}

/// The decision log fields added after the first release of the log: a line without them is
/// replayed without those facts (the summary says so).
const LATER_FIELDS: &[&str] = &[
    "crm_language",
    "crm_tags",
    "crm_open_cases",
    "crm_attributes",
    "repeat_seen",
    "risk_verify_queue",
];

/// The answer of a call as the diff compares it: the status and the queue, or the status and
/// the phrase.
fn answer(status: u64, queue: &str, reason: &str) -> String {
    if status == 302 {
        format!("302 → {queue}")
    } else {
        format!("{status} {reason}")
    }
}

fn record_answer(r: &DecisionRecord<'_>) -> String {
    answer(u64::from(r.status), r.queue, r.reason)
}

/// A number as the decision log writes it ([`PartyNumber`]'s `Display`), read back.
pub fn party(s: &str) -> PartyNumber {
    if let Some(e) = s.strip_prefix('+').and_then(E164::from_digits) {
        return PartyNumber::E164(e);
    }
    match s {
        "anonymous" => return PartyNumber::Withheld(Withheld::Anonymous),
        "restricted" => return PartyNumber::Withheld(Withheld::Restricted),
        "unavailable" => return PartyNumber::Withheld(Withheld::Unavailable),
        _ => {}
    }
    if let Some(u) = s.strip_prefix("unusable:") {
        return PartyNumber::Unusable(u.to_owned());
    }
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        PartyNumber::Short(s.to_owned())
    } else {
        PartyNumber::Unusable(s.to_owned())
    }
}

/// One decision log line.
#[derive(Debug)]
pub struct LoggedCall {
    pub at: Timestamp,
    fields: Map<String, Value>,
}

impl LoggedCall {
    /// A decision line as `tracing-subscriber`'s JSON layer writes it: the fields at the top
    /// (`flatten_event`, what the node writes) or under `fields`.
    pub fn from_json(v: Value) -> Result<Self, String> {
        let Value::Object(mut top) = v else {
            return Err("not a JSON object".into());
        };
        if let Some(Value::Object(inner)) = top.remove("fields") {
            top.extend(inner);
        }
        let at = match top.get("timestamp").and_then(Value::as_str) {
            Some(t) => t
                .parse::<Timestamp>()
                .map_err(|e| format!("timestamp {t:?}: {e}"))?,
            None => return Err("no timestamp".into()),
        };
        for need in ["call_id", "trunk", "ani", "dnis", "status", "decided_by"] {
            if !top.contains_key(need) {
                return Err(format!("no field {need:?}: not a decision line"));
            }
        }
        Ok(Self { at, fields: top })
    }

    fn s(&self, k: &str) -> &str {
        self.fields.get(k).and_then(Value::as_str).unwrap_or("-")
    }

    fn opt(&self, k: &str) -> Option<&str> {
        Some(self.s(k)).filter(|v| *v != "-" && !v.is_empty())
    }

    fn b(&self, k: &str) -> bool {
        self.fields.get(k).and_then(Value::as_bool).unwrap_or(false)
    }

    fn n(&self, k: &str) -> i64 {
        self.fields.get(k).and_then(Value::as_i64).unwrap_or(0)
    }

    fn list(&self, k: &str) -> Vec<String> {
        self.s(k)
            .split(',')
            .filter(|x| !x.is_empty() && *x != "-")
            .map(unescape)
            .collect()
    }

    pub fn call_id(&self) -> &str {
        self.s("call_id")
    }

    /// Whether the line lacks fields later versions log.
    pub fn old_format(&self) -> bool {
        LATER_FIELDS.iter().any(|k| !self.fields.contains_key(*k))
    }

    /// The answer the log says was given.
    pub fn logged_answer(&self) -> String {
        let status = self
            .fields
            .get("status")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        answer(status, self.s("queue"), self.s("reason"))
    }

    /// Whether the rules had a say: calls the SIP layer or a call-rate limit answered first are
    /// not replayed (no rule can change their answer).
    pub fn decided(&self) -> bool {
        matches!(
            self.s("decided_by"),
            "rule"
                | "rule-reject"
                | "risk-block"
                | "risk-verify"
                | "identity-required"
                | "risk-fail-closed"
                | "cli-policy"
        )
    }

    /// The facts extraction gave the live call. Number intelligence and the CLI check are
    /// recomputed by the pipeline from them, as live; a CLI the trunk's policy forced is put
    /// back to the number that came in, so that the policy forces it again.
    pub fn facts(&self) -> CallFacts {
        let ani = self
            .s("cli_reason")
            .strip_prefix("forced CLI replaced ")
            .and_then(|r| r.split(';').next())
            .unwrap_or(self.s("ani"));
        CallFacts {
            call_id: self.s("call_id").to_owned(),
            trunk: self.s("trunk").into(),
            trusted: self.b("trusted"),
            ani: party(ani),
            ani_source: match self.s("ani_source") {
                "pai" => AniSource::Pai,
                "rpid" => AniSource::Rpid,
                _ => AniSource::From,
            },
            ani_verified: self.b("ani_verified"),
            ani_candidates: Candidates::new(),
            sources_disagree: self.b("sources_disagree"),
            presented: party(self.s("presented")),
            display_name: None,
            privacy: Privacy::default(),
            charge_number: self.opt("charge_number").map(party),
            cpc: self.opt("cpc").map(Into::into),
            oli: self.opt("ani_ii").map(Into::into),
            verstat: None,
            identity: Vec::new(),
            dnis: party(self.s("dnis")),
            dnis_source: match self.s("dnis_source") {
                "diversion" => DnisSource::Diversion,
                "history-info" => DnisSource::HistoryInfo,
                "to" => DnisSource::To,
                "p-called-party-id" => DnisSource::PCalledPartyId,
                _ => DnisSource::RequestUri,
            },
            dnis_candidates: Candidates::new(),
            emergency: self.b("emergency"),
            ani_info: None,
            ani_geo: None,
            dnis_info: None,
            cli: None,
            profile: None,
            lookup: LookupStatus::Skipped,
            history: None,
            risk: None,
            arrival: Arrival {
                transport: match self.s("transport") {
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    _ => Transport::Udp,
                },
                tls_peer: self.opt("tls_peer").map(Into::into),
            },
        }
    }

    /// What the CRM answered the live call.
    pub fn lookup(&self) -> (LookupStatus, Option<CallerProfile>) {
        let status = match self.s("crm") {
            "found" => LookupStatus::Found,
            "not-found" => LookupStatus::NotFound,
            "timeout" => LookupStatus::Timeout,
            "error" => LookupStatus::Error,
            "breaker-open" => LookupStatus::BreakerOpen,
            "rate-limited" => LookupStatus::RateLimited,
            _ => LookupStatus::Skipped,
        };
        if status != LookupStatus::Found {
            return (status, None);
        }
        let attributes = self
            .s("crm_attributes")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (unescape(k), unescape(v)))
            .collect();
        let profile = CallerProfile {
            customer_id: self.opt("crm_customer").unwrap_or_default().to_owned(),
            tier: self.opt("crm_tier").map(str::to_owned),
            language: self.opt("crm_language").map(str::to_owned),
            tags: self.list("crm_tags"),
            open_cases: self.opt("crm_open_cases").and_then(|n| n.parse().ok()),
            attributes,
            ..CallerProfile::default()
        };
        (status, Some(profile))
    }

    /// What the risk engine answered the live call: the verdict (with the policy's rejection
    /// and verification queue) and the caller's previous call. `block` is `[risk.block]`'s
    /// answer, for a blocked caller whose rejection a rule that tests risk overrode.
    pub fn risk(&self, block: Option<&Rejection>) -> RiskAnswer {
        let history = self.opt("repeat_of").map(|q| CallerHistory {
            last_queue: q.to_owned(),
            last_seen: match self.fields.get("repeat_seen") {
                Some(v) => v.as_i64().unwrap_or(0),
                // Logged before `repeat_seen`: as recent as can be.
                None => self.at.as_second(),
            },
        });
        let Some(level) = self.opt("risk").and_then(RiskLevel::from_name) else {
            return RiskAnswer {
                assessment: None,
                history,
            };
        };
        let list_hits = self.list("lists");
        let on = |l: &str| list_hits.iter().any(|h| h == l);
        let status = self.fields.get("status").and_then(Value::as_u64);
        let logged = |cause| Rejection {
            code: status.and_then(|s| u16::try_from(s).ok()).unwrap_or(603),
            reason: self.opt("reason").map(str::to_owned),
            call_info: None,
            retry_after: None,
            cause,
        };
        let emergency = self.b("emergency");
        let reject = match self.s("decided_by") {
            "risk-block" => Some(logged(RejectCause::Blocked)),
            "identity-required" => Some(logged(RejectCause::Identity)),
            "risk-fail-closed" => Some(logged(RejectCause::FailClosed)),
            _ if level == RiskLevel::Blocked && !on("allow") && !emergency => {
                Some(block.cloned().unwrap_or(Rejection {
                    code: 603,
                    reason: None,
                    call_info: None,
                    retry_after: None,
                    cause: RejectCause::Blocked,
                }))
            }
            _ => None,
        };
        let verify_queue = match self.fields.get("risk_verify_queue") {
            Some(_) => self.opt("risk_verify_queue"),
            // Logged before `risk_verify_queue`: known only where it decided.
            None => (self.s("decided_by") == "risk-verify")
                .then(|| self.s("queue"))
                .filter(|q| *q != "-"),
        }
        .and_then(|q| QueueName::new(q).ok());
        let signals = self
            .s("risk_signals")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, w) = s.rsplit_once(':').unwrap_or((s, "0"));
                RiskSignal {
                    name: name.to_owned(),
                    weight: w.trim_start_matches('+').parse().unwrap_or(0),
                    detail: String::new(),
                }
            })
            .collect();
        let verification = match self.s("verification") {
            "verified" => Verification::Verified,
            "absent" | "-" => Verification::Absent,
            other => {
                Verification::Failed(other.strip_prefix("failed: ").unwrap_or(other).to_owned())
            }
        };
        RiskAnswer {
            assessment: Some(RiskAssessment {
                level,
                score: i32::try_from(self.n("risk_score")).unwrap_or(0),
                signals,
                attestation: match self.s("attestation") {
                    "A" => Some(Attestation::A),
                    "B" => Some(Attestation::B),
                    "C" => Some(Attestation::C),
                    _ => None,
                },
                verification,
                list_hits,
                reject,
                degraded: self.b("risk_degraded"),
                verify_queue,
            }),
            history,
        }
    }
}

/// The adapters of a decision log replay: they answer, for the call being replayed, what the
/// log says the live adapters answered.
#[derive(Debug, Default)]
pub struct Logged {
    current: Mutex<Option<(RiskAnswer, LookupStatus, Option<CallerProfile>)>>,
    block: Option<Rejection>,
}

impl Logged {
    fn set(&self, call: &LoggedCall) {
        let (status, profile) = call.lookup();
        let risk = call.risk(self.block.as_ref());
        if let Ok(mut g) = self.current.lock() {
            *g = Some((risk, status, profile));
        }
    }

    fn get(&self) -> Option<(RiskAnswer, LookupStatus, Option<CallerProfile>)> {
        self.current.lock().ok().and_then(|g| g.clone())
    }
}

impl RiskCheck for Logged {
    fn assess<'a>(
        &'a self,
        _: &'a CallFacts,
        _: std::time::SystemTime,
        _: Mode,
    ) -> BoxFuture<'a, RiskAnswer> {
        let answer = self.get().map(|a| a.0).unwrap_or_default();
        Box::pin(std::future::ready(answer))
    }

    fn block_rejection(&self) -> Option<Rejection> {
        self.block.clone()
    }
}

impl CrmCheck for Logged {
    fn lookup<'a>(
        &'a self,
        _: &'a CallFacts,
        _: Mode,
    ) -> BoxFuture<'a, (LookupStatus, Option<CallerProfile>)> {
        let answer = self
            .get()
            .map_or((LookupStatus::Skipped, None), |a| (a.1, a.2));
        Box::pin(std::future::ready(answer))
    }
}

/// `pipeline`'s rules, number data, trunks and limits, with the logged adapters.
fn with_logged(pipeline: &Pipeline, logged: &Arc<Logged>) -> Pipeline {
    Pipeline {
        risk: Arc::clone(logged) as Arc<dyn RiskCheck>,
        crm: Arc::clone(logged) as Arc<dyn CrmCheck>,
        ..pipeline.with_rules(Arc::clone(&pipeline.rules))
    }
}

fn io(e: std::io::Error) -> CliError {
    CliError::Other(format!("writing the report: {e}"))
}

/// The rule that now matches, from the trace (or what decided without a rule).
fn matched(o: &Outcome) -> String {
    o.trace
        .as_ref()
        .and_then(|t| t.steps.iter().find(|s| s.matched))
        .map(|s| s.why.clone())
        .unwrap_or_else(|| o.why.as_str().to_owned())
}

/// Replays a decision log against the live rules and `candidate`'s, printing every call whose
/// answer the candidate changes against the log (and every call the live rules now decide
/// differently from the log) to `out`; with `json`, one JSON line per replayed call.
pub async fn diff_decisions(
    path: &Path,
    live: &Pipeline,
    candidate: &Pipeline,
    json: bool,
    out: &mut dyn Write,
) -> Result<Summary, CliError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| CliError::Other(format!("{name}: {e}")))?;
    let logged = Arc::new(Logged {
        current: Mutex::new(None),
        block: live.risk.block_rejection(),
    });
    let now = with_logged(live, &logged);
    let cand = with_logged(candidate, &logged);
    let mut summary = Summary::default();
    let (mut replayed, mut before_rules, mut drift, mut old) = (0usize, 0usize, 0usize, 0usize);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                summary
                    .problems
                    .push(format!("{name}:{n}: cannot read on: {e}"));
                break;
            }
        };
        // A decision line names its target at the end and its message at the start: a line
        // cut short (a full disk, a rotation) still shows the one or the other.
        if !line.contains("tollgate::decision") && !line.contains("\"message\":\"decision\"") {
            continue;
        }
        let call = match serde_json::from_str::<Value>(&line)
            .map_err(|e| {
                if line.trim_start().starts_with('{') {
                    format!("not a JSON line: {e}")
                } else {
                    "not a JSON line: the replay reads the decision log log.format = \"json\" \
                     writes"
                        .to_owned()
                }
            })
            .and_then(|v| {
                let target = v.get("target").and_then(Value::as_str);
                match target {
                    Some(crate::decision::TARGET) => LoggedCall::from_json(v).map(Some),
                    _ => Ok(None),
                }
            }) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                summary.problems.push(format!("{name}:{n}: {e}"));
                continue;
            }
        };
        if !call.decided() {
            before_rules += 1;
            continue;
        }
        replayed += 1;
        old += usize::from(call.old_format());
        logged.set(&call);
        let dry = Mode::Dry { fill_cache: false };
        let none = Overrides::default();
        let mut fa = call.facts();
        let oa = now.run(&mut fa, None, dry, call.at, &none, true).await;
        let mut fb = call.facts();
        let ob = cand.run(&mut fb, None, dry, call.at, &none, true).await;
        let (ra, rb) = (
            DecisionRecord::new(&fa, &oa, "-"),
            DecisionRecord::new(&fb, &ob, "-"),
        );
        let was = call.logged_answer();
        let (is_now, will) = (record_answer(&ra), record_answer(&rb));
        let moved = will != was;
        let drifted = is_now != was;
        summary.moved += usize::from(moved);
        drift += usize::from(drifted);
        if json {
            let v = serde_json::json!({
                "line": n,
                "at": call.at.to_string(),
                "call_id": call.call_id(),
                "logged": {
                    "answer": was,
                    "rule": call.s("rule"),
                    "decided_by": call.s("decided_by"),
                    "rules_version": call.s("rules_version"),
                },
                "live": ra,
                "candidate": rb,
                "moved": moved,
                "live_differs_from_log": drifted,
            });
            writeln!(out, "{v}").map_err(io)?;
        } else if moved || drifted {
            let mut text = format!(
                "line {n}: {} → {} at {} ({})\n  logged    {was} by {} ({})\n",
                ra.ani,
                ra.dnis,
                call.at,
                call.call_id(),
                call.s("rule"),
                call.s("decided_by"),
            );
            if drifted {
                let _ = writeln!(
                    text,
                    "  live now  {is_now} by {} ({})  [the live rules decide differently from the log]",
                    oa.decision.rule, ra.decided_by
                );
            }
            let _ = writeln!(
                text,
                "  candidate {will} by {} ({})  [{}]{}",
                ob.decision.rule,
                rb.decided_by,
                matched(&ob),
                if moved { "" } else { "  (as logged)" }
            );
            out.write_all(text.as_bytes()).map_err(io)?;
        }
    }
    let mut text = format!(
        "{replayed} calls replayed from the decision log, {} change{} against the log \
         (candidate {}); {drift} the live rules ({}) now decide differently from the log",
        summary.moved,
        if summary.moved == 1 { "" } else { "s" },
        candidate.rules.current().version,
        live.rules.current().version,
    );
    if before_rules > 0 {
        let _ = write!(
            text,
            "; {before_rules} answered before the rules (rate limits, the SIP layer) not replayed"
        );
    }
    if old > 0 {
        let _ = write!(
            text,
            "; {old} logged without {} (replayed without those facts)",
            LATER_FIELDS.join(", ")
        );
    }
    summary_line(out, json, &text, &summary)?;
    Ok(summary)
}

fn summary_line(
    out: &mut dyn Write,
    json: bool,
    text: &str,
    summary: &Summary,
) -> Result<(), CliError> {
    if json {
        // The first hundred problems, as on stderr, and how many there were.
        let shown: Vec<&String> = summary.problems.iter().take(100).collect();
        let v = serde_json::json!({
            "summary": text,
            "moved": summary.moved,
            "problems": shown,
            "problems_total": summary.problems.len(),
        });
        writeln!(out, "{v}").map_err(io)
    } else {
        writeln!(out, "{text}").map_err(io)
    }
}

/// The risk seam of a capture replay on a node whose risk store is in memory: a private engine
/// built from the same config (the same lists, weights and policy) whose fresh store the
/// replayed calls fill as they filled the node's, velocity and caller history both, so a repeat
/// caller or a burst in the capture is judged as it was live. Nothing outside the replay is
/// written (a Redis store is only read, dry: see README).
#[derive(Debug)]
struct Accumulating(Arc<dyn RiskCheck>);

impl RiskCheck for Accumulating {
    fn assess<'a>(
        &'a self,
        facts: &'a CallFacts,
        now: std::time::SystemTime,
        _: Mode,
    ) -> BoxFuture<'a, RiskAnswer> {
        self.0.assess(facts, now, Mode::Live)
    }

    fn remember(
        &self,
        facts: &CallFacts,
        decision: &tollgate_core::Decision,
        now: std::time::SystemTime,
    ) {
        self.0.remember(facts, decision, now);
    }

    fn block_rejection(&self) -> Option<Rejection> {
        self.0.block_rejection()
    }
}

/// `pipeline` with a private in-memory risk store of its own ([`Accumulating`]), when the
/// config's store is in memory; `None` otherwise (the configured adapters are used, dry).
async fn accumulating(cfg: &crate::Loaded, pipeline: &Pipeline) -> Option<Pipeline> {
    let risk = cfg.risk.as_ref()?;
    if risk.store != tollgate_risk::StoreKind::Memory {
        return None;
    }
    let built = crate::wiring::adapters(cfg, &pipeline.plan).await.ok()?;
    Some(Pipeline {
        risk: Arc::new(Accumulating(built.risk)),
        ..pipeline.with_rules(Arc::clone(&pipeline.rules))
    })
}

/// After a replayed call: where a live call's decision is remembered (repeat-caller history),
/// the replay's own store remembers it too (a no-op for the configured adapters' dry read
/// of a shared store: only [`Accumulating`] writes, and only to its private store).
fn remember(pipeline: &Pipeline, e: &Explanation, private: bool) {
    let decided = matches!(
        e.outcome.why,
        crate::decision::Why::Decided(d) if d != tollgate_router::DecidedBy::CliPolicy
    );
    if let (true, true, Some(f)) = (private, decided, &e.facts) {
        pipeline
            .risk
            .remember(f, &e.outcome.decision, std::time::SystemTime::from(e.at));
    }
}

/// One captured INVITE decided as the live node decides it: the live path's parsing, trunk
/// classification by source address and extraction ([`facts_for`]), then [`Pipeline::run`]
/// in dry mode at the packet's time.
async fn replay_invite(
    spec: &CallSpec,
    transport: Transport,
    pipeline: &Pipeline,
) -> Result<Explanation, CliError> {
    let at = spec.at.unwrap_or_else(pipeline.clock);
    let mut facts = match facts_for(spec, pipeline)? {
        Ok(f) => f,
        Err((early, outcome)) => {
            return Ok(Explanation {
                facts: None,
                early: Some(early),
                outcome,
                at,
            })
        }
    };
    facts.arrival.transport = transport;
    let outcome = pipeline
        .run(
            &mut facts,
            spec.source,
            Mode::Dry { fill_cache: false },
            at,
            &spec.overrides,
            true,
        )
        .await;
    Ok(Explanation {
        facts: Some(facts),
        early: None,
        outcome,
        at,
    })
}

/// Replays the INVITEs of a capture against the live and the candidate rules, printing every
/// call whose answer changes (with `json`, one JSON line per call). What cannot be read is in
/// [`Summary::problems`], each naming its packet; the calls read before and after are still
/// replayed.
#[allow(clippy::too_many_arguments)]
pub async fn diff_pcap(
    path: &Path,
    to: Option<Destination>,
    cfg: &crate::Loaded,
    live: &Pipeline,
    candidate: &Pipeline,
    json: bool,
    out: &mut dyn Write,
) -> Result<Summary, CliError> {
    let mut reader = CaptureReader::open(path, to).map_err(CliError::Other)?;
    // Each side its own private store, so each remembers where it routed the caller.
    let (own_live, own_candidate) = (
        accumulating(cfg, live).await,
        accumulating(cfg, candidate).await,
    );
    let private = own_live.is_some() && own_candidate.is_some();
    let (live, candidate) = match (&own_live, &own_candidate) {
        (Some(a), Some(b)) => (a, b),
        _ => (live, candidate),
    };
    let mut summary = Summary::default();
    let (mut replayed, mut refused) = (0usize, 0usize);
    // Calls the capture shows the answer of, and those the candidate answers otherwise.
    let (mut with_old, mut unlike_old) = (0usize, 0usize);
    while let Some(inv) = reader.next_invite() {
        let spec = CallSpec {
            sip: Some(inv.text),
            source: Some(inv.source.ip()),
            at: inv.at,
            ..CallSpec::default()
        };
        let decided = match replay_invite(&spec, inv.transport, live).await {
            Ok(a) => replay_invite(&spec, inv.transport, candidate)
                .await
                .map(|b| (a, b)),
            Err(e) => Err(e),
        };
        let (a, b) = match decided {
            Ok(ab) => ab,
            Err(e) => {
                // What the live SIP layer refuses (a malformed INVITE: 400) is no decision.
                refused += 1;
                let line = format!(
                    "packet {}: INVITE from {} not decided: {e}",
                    inv.packet, inv.source
                );
                if json {
                    let v = serde_json::json!({"packet": inv.packet, "not_decided": e.to_string()});
                    writeln!(out, "{v}").map_err(io)?;
                } else {
                    writeln!(out, "{line}").map_err(io)?;
                }
                continue;
            }
        };
        replayed += 1;
        remember(live, &a, private);
        remember(candidate, &b, private);
        let (da, db) = (describe(&a.outcome.decision), describe(&b.outcome.decision));
        let moved = da != db;
        summary.moved += usize::from(moved);
        // What the system the capture was taken in front of answered, when the capture has it.
        let old = inv.old.as_ref();
        let unlike = old.is_some_and(|o| !o.same_as(&b.outcome.decision));
        with_old += usize::from(old.is_some());
        unlike_old += usize::from(unlike);
        let (ra, rb) = (a.record(), b.record());
        if json {
            let v = serde_json::json!({
                "packet": inv.packet,
                "at": a.at.to_string(),
                "source": inv.source.to_string(),
                "destination": inv.destination.to_string(),
                "transport": inv.transport.as_str(),
                "call_id": ra.call_id,
                "live": ra,
                "candidate": rb,
                "moved": moved,
                "captured": old.map(crate::cmd::capture::OldAnswer::describe),
                "live_unlike_captured": old.is_some_and(|o| !o.same_as(&a.outcome.decision)),
                "candidate_unlike_captured": unlike,
            });
            writeln!(out, "{v}").map_err(io)?;
        } else if moved || unlike {
            let mut text = format!(
                "packet {}: {} → {} at {} from {}/{} ({})\n",
                inv.packet,
                ra.ani,
                ra.dnis,
                a.at,
                inv.source,
                inv.transport.as_str(),
                ra.call_id,
            );
            if let Some(o) = old {
                let _ = writeln!(text, "  captured  {}", o.describe());
            }
            let _ = writeln!(
                text,
                "  live      {da} by {}\n  candidate {db} by {}  [{}]",
                a.outcome.decision.rule,
                b.outcome.decision.rule,
                matched(&b.outcome),
            );
            out.write_all(text.as_bytes()).map_err(io)?;
        }
    }
    summary.problems = reader.problems.iter().map(ToString::to_string).collect();
    let s = &reader.stats;
    let mut text = format!(
        "{replayed} calls replayed from {} packets, {} change{} (live {} → candidate {}); \
         {} INVITE retransmission{} skipped",
        s.packets,
        summary.moved,
        if summary.moved == 1 { "" } else { "s" },
        live.rules.current().version,
        candidate.rules.current().version,
        s.retransmissions,
        if s.retransmissions == 1 { "" } else { "s" },
    );
    if with_old > 0 {
        let _ = write!(
            text,
            "; {with_old} answered in the capture, {unlike_old} of them otherwise than the \
             candidate answers"
        );
    }
    if refused > 0 {
        let _ = write!(
            text,
            "; {refused} INVITEs the SIP layer refuses (not decided)"
        );
    }
    if s.filtered > 0 {
        let _ = write!(
            text,
            "; {} packets to other addresses than --to",
            s.filtered
        );
    }
    if !summary.problems.is_empty() {
        let _ = write!(
            text,
            "; {} packet problem{} (on stderr)",
            summary.problems.len(),
            if summary.problems.len() == 1 { "" } else { "s" }
        );
    }
    summary_line(out, json, &text, &summary)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn numbers_read_back_as_the_log_writes_them() {
        for n in ["+4930123456", "911", "anonymous", "unusable:abc", "*67"] {
            assert_eq!(party(n).to_string(), n);
        }
        assert!(matches!(party("+4930123456"), PartyNumber::E164(_)));
        assert!(matches!(party("restricted"), PartyNumber::Withheld(_)));
    }

    #[test]
    fn a_logged_line_gives_back_its_profile_risk_and_history() {
        let line = serde_json::json!({
            "timestamp": "2026-12-07T22:39:26.123456Z",
            "target": "tollgate::decision",
            "call_id": "c1", "trunk": "carrier", "trusted": true, "ani": "+4930123456",
            "dnis": "+18005550100", "status": 302, "queue": "general", "reason": "-",
            "decided_by": "rule", "crm": "found", "crm_customer": "C-1", "crm_tier": "gold",
            "crm_language": "de", "crm_tags": "vip,a%2Cb", "crm_open_cases": "2",
            "crm_attributes": "segment=smb,note=x%3Dy", "risk": "blocked", "lists": "block",
            "risk_signals": "list-block:+100,verify-queue:+0", "attestation": "B",
            "verification": "failed: bad", "repeat_of": "sales", "repeat_seen": 1_700_000_000,
            "risk_verify_queue": "-", "emergency": false
        });
        let call = LoggedCall::from_json(line).unwrap();
        let (status, p) = call.lookup();
        assert_eq!(status, LookupStatus::Found);
        let p = p.unwrap();
        assert_eq!(p.tags, vec!["vip".to_owned(), "a,b".to_owned()]);
        assert_eq!(p.open_cases, Some(2));
        assert_eq!(p.attributes.get("note").map(String::as_str), Some("x=y"));
        assert_eq!(p.language.as_deref(), Some("de"));
        let r = call.risk(None);
        let a = r.assessment.unwrap();
        assert_eq!(a.level, RiskLevel::Blocked);
        assert_eq!(a.attestation, Some(Attestation::B));
        assert_eq!(a.signals[0].weight, 100);
        assert_eq!(a.verification, Verification::Failed("bad".into()));
        // Blocked but decided by a rule: a risk-aware rule overrode the block.
        assert_eq!(a.reject.unwrap().cause, RejectCause::Blocked);
        assert_eq!(r.history.unwrap().last_seen, 1_700_000_000);
        assert!(!call.old_format());
        assert!(call.decided());
    }
}
