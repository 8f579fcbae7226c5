//! The score: a plain sum of weighted signals, every one of which is kept with its weight and
//! a detail, so explain shows exactly why a call scored what it did. Pure: no I/O, no clock.
//!
//! | signal | when | default weight |
//! |---|---|---|
//! | `attestation-a` / `-b` / `-c` | identity verified (PASSporT or trusted verstat) with that attestation | -20 / 5 / 15 |
//! | `identity-failed` | an Identity header or verstat failed | 40 |
//! | `identity-absent` | no Identity header and no verstat | 10 |
//! | `ani-withheld` | ANI anonymous / restricted / unavailable | 15 |
//! | `ani-invalid` | not a valid number (or not a number) | 30 |
//! | `ani-toll-free`, `ani-premium` | a toll-free or premium number as the caller | 40 |
//! | `cli-invalid` | the trunk's CLI rules said invalid for another reason | 25 |
//! | `untrusted-trunk` | call from a source that is not a trusted trunk | 10 |
//! | `ani-unverified` | trusted trunk, but the ANI came from From or an unscreened header | 5 |
//! | `sources-disagree` | the counted headers name different numbers (per trunk: weight, and whether From counts, `[risk.trunk."name"]`) | 20 |
//! | `velocity-ani-1m`, `velocity-ani-dnis-1h`, `velocity-npa-nxx-1d`, ... | per window over its threshold (NPA-NXX: distinct callers) | 25 / 25 / 15 |
//! | `gray-list` | on the gray list: level at least elevated, verification queue | 30 |
//! | `block-list` | on the block list: level blocked whatever the score | 100 |
//! | `allow-list` | on the allow list: never blocked (level at most high) | -50 |
//!
//! Zero-weight signals record what could not be judged: `redis-unavailable` (velocity
//! skipped, `degraded`), `lists-unavailable`, `identity-timeout`, `identity-not-checked`,
//! `velocity-not-counted` (an ANI not believed, with `risk.untrusted = "ignore"`).
//!
//! `sources-disagree` applies when the headers the trunk may be trusted for (extraction counts
//! PAI, RPID and From on a trusted trunk, only From elsewhere, so never on an untrusted one)
//! name different E.164 numbers. A trunk whose From carries a company's main number and PAI
//! the real line sets `sources_disagree_from = false` (only PAI and RPID disagreeing count) or
//! its own weight (`sources_disagree = 0` keeps the signal for explain, scoring nothing).
//! Levels: score ≥ `levels.elevated` → elevated, ≥ `high` → high, ≥ `blocked` → blocked; then
//! the lists override as above.

use tollgate_core::{
    Attestation, CallFacts, CliVerdict, NumberKind, PartyNumber, RiskLevel, RiskSignal,
    Verification,
};

use crate::config::{LevelConfig, Weights};
use crate::error::RiskError;
use crate::identity::{IdentityOutcome, IdentitySource};
use crate::lists::{ListHit, ListKind};
use crate::velocity::{window_label, Trust, VelocityCounts};
use tollgate_core::AniSource;

/// Velocity thresholds per dimension, one per window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Thresholds {
    pub ani: Vec<u32>,
    pub ani_dnis: Vec<u32>,
    pub npa_nxx: Vec<u32>,
}

/// How one trunk's calls are scored where that differs per trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TrunkScoring {
    pub sources_disagree: i32,
    /// From naming another number counts as disagreeing.
    pub disagree_from: bool,
}

/// What the velocity step produced.
#[derive(Debug)]
pub(crate) enum VelocityInput<'a> {
    /// No E.164 ANI to count.
    Skipped,
    /// The ANI is not believed and `risk.untrusted = "ignore"`.
    NotCounted(Trust),
    /// Counts in the namespace of the ANI's trust.
    Counts(&'a VelocityCounts, Trust),
    Failed {
        store: &'static str,
        error: &'a RiskError,
    },
}

/// What the identity step produced.
#[derive(Debug)]
pub(crate) enum IdentityInput<'a> {
    /// No verifier configured.
    NotConfigured,
    TimedOut,
    Outcome(&'a IdentityOutcome),
}

#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    pub facts: &'a CallFacts,
    pub trunk: TrunkScoring,
    pub identity: IdentityInput<'a>,
    pub velocity: VelocityInput<'a>,
    pub windows: &'a [u32],
    pub thresholds: &'a Thresholds,
    pub hits: &'a [ListHit],
    pub lists_loaded: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Scored {
    pub score: i32,
    pub level: RiskLevel,
    pub signals: Vec<RiskSignal>,
    /// The level was blocked before an allow-list hit capped it (explain says so).
    pub would_block: bool,
}

impl Scored {
    fn add(&mut self, name: impl Into<String>, weight: i32, detail: impl Into<String>) {
        self.score = self.score.saturating_add(weight);
        self.signals.push(RiskSignal {
            name: name.into(),
            weight,
            detail: detail.into(),
        });
    }
}

pub(crate) fn score(inp: &Inputs<'_>, w: &Weights, levels: &LevelConfig) -> Scored {
    let mut s = Scored::default();
    identity(&mut s, inp, w);
    number(&mut s, inp.facts, w);
    trunk(&mut s, inp.facts, inp.trunk, w);
    velocity(&mut s, inp, w);
    if !inp.lists_loaded {
        s.add(
            "lists-unavailable",
            0,
            "list store not read yet: lists not applied",
        );
    }
    let has = |k: ListKind| inp.hits.iter().find(|h| h.list == k);
    for (kind, name, weight) in [
        (ListKind::Block, "block-list", w.block_list),
        (ListKind::Gray, "gray-list", w.gray_list),
        (ListKind::Allow, "allow-list", w.allow_list),
    ] {
        if let Some(h) = has(kind) {
            let e = &h.entry;
            s.add(
                name,
                weight,
                format!("{}: {} (by {})", e.pattern, e.reason, e.who),
            );
        }
    }
    let mut level = level_for(s.score, levels);
    if has(ListKind::Block).is_some() {
        level = RiskLevel::Blocked;
    }
    if has(ListKind::Gray).is_some() {
        level = level.max(RiskLevel::Elevated);
    }
    s.would_block = level == RiskLevel::Blocked;
    if has(ListKind::Allow).is_some() {
        level = level.min(RiskLevel::High);
    }
    s.level = level;
    s
}

pub(crate) fn level_for(score: i32, l: &LevelConfig) -> RiskLevel {
    match score {
        s if l.blocked.is_some_and(|b| s >= b) => RiskLevel::Blocked,
        s if s >= l.high => RiskLevel::High,
        s if s >= l.elevated => RiskLevel::Elevated,
        _ => RiskLevel::Low,
    }
}

fn identity(s: &mut Scored, inp: &Inputs<'_>, w: &Weights) {
    let f = inp.facts;
    let nothing_presented = f.identity.is_empty() && f.verstat.is_none();
    match &inp.identity {
        IdentityInput::NotConfigured if nothing_presented => {
            s.add(
                "identity-absent",
                w.identity_absent,
                "no Identity header, no verstat",
            );
        }
        IdentityInput::NotConfigured => s.add(
            "identity-not-checked",
            0,
            "Identity/verstat present but no verifier configured",
        ),
        IdentityInput::TimedOut => s.add(
            "identity-timeout",
            0,
            "identity verification missed its deadline",
        ),
        IdentityInput::Outcome(o) => {
            let src = match o.source {
                IdentitySource::Verstat => {
                    format!("verstat {}", f.verstat.as_deref().unwrap_or("(unnamed)"))
                }
                other => other.as_str().to_owned(),
            };
            match &o.verification {
                Verification::Verified => {
                    let (name, weight, att) = match o.attestation {
                        Some(Attestation::A) => ("attestation-a", w.attestation_a, "A"),
                        Some(Attestation::B) => ("attestation-b", w.attestation_b, "B"),
                        Some(Attestation::C) => ("attestation-c", w.attestation_c, "C"),
                        // Verified without a level claims no more than gateway attestation.
                        None => ("attestation-c", w.attestation_c, "none"),
                    };
                    s.add(name, weight, format!("{src}: verified, attestation {att}"));
                }
                Verification::Failed(reason) => {
                    s.add(
                        "identity-failed",
                        w.identity_failed,
                        format!("{src}: {reason}"),
                    );
                }
                Verification::Absent => s.add(
                    "identity-absent",
                    w.identity_absent,
                    "no Identity header, no verstat",
                ),
            }
        }
    }
}

fn number(s: &mut Scored, f: &CallFacts, w: &Weights) {
    let mut judged = false;
    match &f.ani {
        PartyNumber::Withheld(h) => {
            s.add("ani-withheld", w.ani_withheld, h.as_str());
            judged = true;
        }
        PartyNumber::Unusable(_) => {
            s.add("ani-invalid", w.ani_invalid, "not a number");
            judged = true;
        }
        PartyNumber::Short(code) => {
            s.add(
                "ani-invalid",
                w.ani_invalid,
                format!("short code {code} as caller"),
            );
            judged = true;
        }
        PartyNumber::E164(_) => match f.ani_info {
            Some(info) if !info.valid => {
                s.add("ani-invalid", w.ani_invalid, "not a valid number");
                judged = true;
            }
            Some(info) if info.kind == NumberKind::TollFree => {
                s.add(
                    "ani-toll-free",
                    w.ani_toll_free,
                    "toll-free number as caller",
                );
                judged = true;
            }
            Some(info) if info.kind == NumberKind::PremiumRate => {
                s.add(
                    "ani-premium",
                    w.ani_premium,
                    "premium-rate number as caller",
                );
                judged = true;
            }
            _ => {}
        },
    }
    // The CLI verdict repeats validity and kind; count it only for what it adds (deny rules).
    if let Some(cli) = &f.cli {
        if cli.verdict == CliVerdict::Invalid && !judged {
            s.add("cli-invalid", w.cli_invalid, cli.reason.clone());
        }
    }
}

fn trunk(s: &mut Scored, f: &CallFacts, t: TrunkScoring, w: &Weights) {
    if !f.trusted {
        let src = if f.trunk.is_empty() {
            "unknown source"
        } else {
            &f.trunk
        };
        s.add("untrusted-trunk", w.untrusted_trunk, src);
    } else if !f.ani_verified {
        s.add(
            "ani-unverified",
            w.ani_unverified,
            format!("ANI from {}", f.ani_source.as_str()),
        );
    }
    let disagree = if t.disagree_from {
        f.sources_disagree
    } else {
        let mut numbers = f
            .ani_candidates
            .iter()
            .filter(|c| c.source != AniSource::From)
            .filter_map(|c| c.number.e164());
        numbers
            .next()
            .is_some_and(|first| numbers.any(|n| n != first))
    };
    if disagree {
        let detail = f
            .ani_candidates
            .iter()
            .filter(|c| t.disagree_from || c.source != AniSource::From)
            .take(4)
            .map(|c| format!("{}={}", c.source.as_str(), c.number))
            .collect::<Vec<_>>()
            .join(" ");
        s.add("sources-disagree", t.sources_disagree, detail);
    }
}

fn velocity(s: &mut Scored, inp: &Inputs<'_>, w: &Weights) {
    let (counts, trust) = match &inp.velocity {
        VelocityInput::Skipped => return,
        VelocityInput::NotCounted(trust) => {
            s.add(
                "velocity-not-counted",
                0,
                format!(
                    "{} ANI: velocity and history not counted (risk.untrusted = \"ignore\")",
                    trust.as_str()
                ),
            );
            return;
        }
        VelocityInput::Failed { store, error } => {
            s.add(
                format!("{store}-unavailable"),
                0,
                format!("velocity not counted: {error}"),
            );
            return;
        }
        VelocityInput::Counts(c, trust) => (c, *trust),
    };
    // An ANI not believed counts in its own keys: the detail says whose count it is.
    let whose = match trust {
        Trust::Verified => String::new(),
        t => format!(" ({} ANIs' own count)", t.as_str()),
    };
    let t = inp.thresholds;
    let dims = [
        ("ani", Some(&counts.ani), &t.ani, w.velocity_ani),
        (
            "ani-dnis",
            counts.ani_dnis.as_ref(),
            &t.ani_dnis,
            w.velocity_ani_dnis,
        ),
        (
            "npa-nxx",
            counts.npa_nxx.as_ref(),
            &t.npa_nxx,
            w.velocity_npa_nxx,
        ),
    ];
    for (dim, got, limits, weight) in dims {
        let Some(got) = got else { continue };
        let what = if dim == "npa-nxx" { "callers" } else { "calls" };
        for ((&n, &limit), &win) in got.iter().zip(limits).zip(inp.windows) {
            if limit > 0 && n > limit {
                let label = window_label(win);
                s.add(
                    format!("velocity-{dim}-{label}"),
                    weight,
                    format!("{n} {what} in {label}, threshold {limit}{whose}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_thresholds() {
        let l = LevelConfig::default();
        assert_eq!(level_for(19, &l), RiskLevel::Low);
        assert_eq!(level_for(20, &l), RiskLevel::Elevated);
        assert_eq!(level_for(50, &l), RiskLevel::High);
        assert_eq!(level_for(100, &l), RiskLevel::Blocked);
        let no_block = LevelConfig { blocked: None, ..l };
        assert_eq!(level_for(1000, &no_block), RiskLevel::High);
    }
}
