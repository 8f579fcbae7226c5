//! Shadow rules: what the candidate rules would have answered each live call, beside the
//! live answer (which they never change), and the running summary of where they disagree.
//!
//! The shadow is decided by the same [`tollgate_router::decide`] on the same facts and clock,
//! after the live decision ([`crate::pipeline::Pipeline::run`], through [`ShadowAnswer::decide`]);
//! this module compares and counts. When the answers agree, neither allocates: the shadow's
//! decision shares its text with the shadow rules, and counting is three atomic additions (one
//! on a metric handle registered once) and the per-DNIS count found by its existing key (a new
//! DNIS is added once, up to [`MAX_DNIS`]). `tests/shadow_alloc.rs` holds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tollgate_core::{CallFacts, Decision, DecisionAction, SharedStr};
use tollgate_router::Rules;

/// Dialled numbers the summary counts one by one; past it they count under "other".
pub const MAX_DNIS: usize = 1000;
/// Live rule → shadow rule pairs the summary keeps; past it a new pair counts under "other".
pub const MAX_PAIRS: usize = 256;
/// Call references kept per moved pair.
pub const SAMPLES: usize = 5;

/// What the shadow rules answered one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowAnswer {
    pub decision: Decision,
    /// The same status and queue as the live answer.
    pub agrees: bool,
}

impl ShadowAnswer {
    /// What the shadow `rules` answer a call the live rules answered `live`: the same
    /// [`tollgate_router::decide`] on the same facts and clock, compared. Allocates nothing for
    /// a call a rule decides (the decision's text is the rules'; `tests/shadow_alloc.rs`).
    pub fn decide(facts: &CallFacts, rules: &Rules, now: jiff::Timestamp, live: &Decision) -> Self {
        Self::new(
            live,
            tollgate_router::decide(facts, rules, now, false).decision,
        )
    }

    pub fn new(live: &Decision, shadow: Decision) -> Self {
        let agrees = answer(live) == answer(&shadow);
        Self {
            decision: shadow,
            agrees,
        }
    }

    /// `agree` or `moved`.
    pub fn label(&self) -> &'static str {
        if self.agrees {
            "agree"
        } else {
            "moved"
        }
    }
}

/// A decision's SIP answer: the status and, for a 302, the queue.
pub fn answer(d: &Decision) -> (u16, &str) {
    match &d.action {
        DecisionAction::Route(t) => (302, t.queue.as_str()),
        DecisionAction::Reject { code, .. } => (*code, "-"),
    }
}

#[derive(Debug, Default)]
struct Pair {
    calls: u64,
    /// The shadow's answer ("302 queue" or the status) and the live one, from the first call.
    live_answer: String,
    shadow_answer: String,
    samples: Vec<String>,
}

#[derive(Debug, Default)]
struct Moves {
    since: Option<jiff::Timestamp>,
    version: String,
    /// (live rule, shadow rule) → count and samples.
    pairs: HashMap<(SharedStr, SharedStr), Pair>,
    pairs_other: u64,
    /// DNIS → (calls, moved).
    dnis: HashMap<String, (u64, u64)>,
    dnis_other: (u64, u64),
}

/// The running summary since the shadow was loaded (`GET /v1/admin/shadow`).
#[derive(Debug, Default)]
pub struct ShadowStats {
    seen: AtomicU64,
    moved: AtomicU64,
    moves: Mutex<Moves>,
    /// `tollgate_shadow_calls_total` by result (agree, moved), registered with the recorder at
    /// the first call counted (a node installs its recorder before it takes a call): counting
    /// is then one atomic addition, where the macro builds the key (and the Prometheus
    /// recorder copies it, an allocation) every time.
    calls: OnceLock<[metrics::Counter; 2]>,
}

fn show(d: &Decision) -> String {
    match answer(d) {
        (302, q) => format!("302 {q}"),
        (code, _) => code.to_string(),
    }
}

impl ShadowStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Moves> {
        self.moves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts over for a new shadow (or none).
    pub fn reset(&self, version: Option<&str>) {
        let mut m = self.lock();
        *m = Moves::default();
        if let Some(v) = version {
            m.version = v.to_owned();
            m.since = Some(jiff::Timestamp::now());
        }
        self.seen.store(0, Ordering::Relaxed);
        self.moved.store(0, Ordering::Relaxed);
    }

    /// Counts one live call the shadow also decided.
    pub fn record(
        &self,
        dnis: Option<&str>,
        live: &Decision,
        shadow: &ShadowAnswer,
        call_ref: &str,
    ) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        let [agree, moved] = self.calls.get_or_init(|| {
            [
                metrics::counter!("tollgate_shadow_calls_total", "result" => "agree"),
                metrics::counter!("tollgate_shadow_calls_total", "result" => "moved"),
            ]
        });
        if shadow.agrees { agree } else { moved }.increment(1);
        if !shadow.agrees {
            self.moved.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(
                "tollgate_shadow_moved_total",
                "live_rule" => live.rule.to_string(),
                "shadow_rule" => shadow.decision.rule.to_string()
            )
            .increment(1);
        }
        let moved = u64::from(!shadow.agrees);
        let mut m = self.lock();
        let dnis = dnis.unwrap_or("-");
        if let Some(c) = m.dnis.get_mut(dnis) {
            c.0 += 1;
            c.1 += moved;
        } else if m.dnis.len() < MAX_DNIS {
            m.dnis.insert(dnis.to_owned(), (1, moved));
        } else {
            m.dnis_other.0 += 1;
            m.dnis_other.1 += moved;
        }
        if shadow.agrees {
            return;
        }
        let key = (live.rule.clone(), shadow.decision.rule.clone());
        let full = m.pairs.len() >= MAX_PAIRS;
        match m.pairs.get_mut(&key) {
            Some(p) => {
                p.calls += 1;
                if p.samples.len() < SAMPLES {
                    p.samples.push(call_ref.to_owned());
                }
            }
            None if full => m.pairs_other += 1,
            None => {
                m.pairs.insert(
                    key,
                    Pair {
                        calls: 1,
                        live_answer: show(live),
                        shadow_answer: show(&shadow.decision),
                        samples: vec![call_ref.to_owned()],
                    },
                );
            }
        }
    }

    /// The summary: calls seen, the share that moved, the top moved pairs with sample call
    /// references, the dialled numbers with most moved calls, and since when.
    pub fn summary(&self, top: usize) -> serde_json::Value {
        let m = self.lock();
        let seen = self.seen.load(Ordering::Relaxed);
        let moved = self.moved.load(Ordering::Relaxed);
        let mut pairs: Vec<_> = m.pairs.iter().collect();
        pairs.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(b.0)));
        let pairs: Vec<_> = pairs
            .into_iter()
            .take(top)
            .map(|((live, shadow), p)| {
                serde_json::json!({
                    "live_rule": live.as_str(),
                    "shadow_rule": shadow.as_str(),
                    "live_answer": p.live_answer,
                    "shadow_answer": p.shadow_answer,
                    "calls": p.calls,
                    "samples": p.samples,
                })
            })
            .collect();
        let mut dnis: Vec<_> = m.dnis.iter().collect();
        dnis.sort_by(|a, b| {
            (b.1 .1, b.1 .0)
                .cmp(&(a.1 .1, a.1 .0))
                .then_with(|| a.0.cmp(b.0))
        });
        let dnis: Vec<_> = dnis
            .into_iter()
            .take(top)
            .map(|(d, (calls, moved))| serde_json::json!({"dnis": d, "calls": calls, "moved": moved}))
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let share = if seen == 0 {
            0.0
        } else {
            moved as f64 / seen as f64
        };
        serde_json::json!({
            "since": m.since.map(|t| t.to_string()),
            "version": m.version,
            "calls": seen,
            "moved": moved,
            "moved_share": share,
            "top_pairs": pairs,
            "other_pairs_calls": m.pairs_other,
            "by_dnis": dnis,
            "other_dnis": {"calls": m.dnis_other.0, "moved": m.dnis_other.1},
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn route(queue: &str, rule: &str) -> Decision {
        Decision {
            action: DecisionAction::Route(tollgate_core::Target {
                queue: queue.into(),
                ..tollgate_core::Target::default()
            }),
            rule: rule.into(),
            version: "v".into(),
        }
    }

    #[test]
    fn agreements_and_moves_are_counted_by_pair_and_dnis() {
        let s = ShadowStats::default();
        s.reset(Some("shadow-v"));
        let live = route("support", "support/main");
        s.record(
            Some("18005550100"),
            &live,
            &ShadowAnswer::new(&live, route("support", "x/other")),
            "r1",
        );
        let rej = Decision::reject(403, "Forbidden", "support/no");
        let moved = ShadowAnswer::new(&live, rej);
        assert!(!moved.agrees);
        s.record(Some("18005550100"), &live, &moved, "r2");
        s.record(Some("18885550101"), &live, &moved, "r3");
        let v = s.summary(10);
        assert_eq!(v["calls"], 3);
        assert_eq!(v["moved"], 2);
        assert_eq!(v["version"], "shadow-v");
        assert_eq!(v["top_pairs"][0]["live_rule"], "support/main");
        assert_eq!(v["top_pairs"][0]["shadow_rule"], "support/no");
        assert_eq!(v["top_pairs"][0]["calls"], 2);
        assert_eq!(v["top_pairs"][0]["shadow_answer"], "403");
        assert_eq!(
            v["top_pairs"][0]["samples"],
            serde_json::json!(["r2", "r3"])
        );
        assert_eq!(v["by_dnis"][0]["dnis"], "18005550100");
        assert_eq!(v["by_dnis"][0]["calls"], 2);
        s.reset(None);
        assert_eq!(s.summary(10)["calls"], 0);
    }
}
