//! A routed call costs no allocation (issue 23): `decide` without a trace, on the shipped rules
//! (config/routes), after warm-up, allocates nothing: the decision's text is shared with the
//! rules. A rule's own rejection, the line's after-hours overflow, `$last` and the risk
//! policy's verification queue too.
//!
//! The allocator counts process-wide (dhat's: the workspace forbids `unsafe`, so no allocator
//! of our own), so this test binary has no harness: `main` is its only thread, and every
//! allocation counted is the decision's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    // The test reads the shipped rule files from disk; the crate itself never does.
    clippy::disallowed_methods
)]

use std::hint::black_box;
use std::sync::Arc;

use jiff::Timestamp;
use tollgate_core::{
    CallFacts, CallerHistory, CallerProfile, DecisionAction, GeoInfo, NumberInfo, NumberKind,
    QueueName, RiskAssessment, RiskLevel,
};
use tollgate_router::{decide, parse, DecidedBy, Rules, Settings, Source};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Decisions per case while counting.
const ROUNDS: u64 = 200;

fn shipped_rules() -> Rules {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/routes");
    let mut sources: Vec<Source> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| Source {
            path: p.display().to_string(),
            text: std::fs::read_to_string(&p).unwrap(),
        })
        .collect();
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    let settings = Settings {
        acd_host: "acd.example.net".into(),
        emergency_queue: Some("emergency".into()),
    };
    parse(&sources, &settings).unwrap_or_else(|e| panic!("{e:?}"))
}

use tollgate_testkit::facts::us_caller as facts;

const SUPPORT: &str = "18005550100";
const SALES: &str = "18885550101";
const BILLING: &str = "12125550102";
const NOWHERE: &str = "18005559999";

struct Case {
    name: &'static str,
    facts: CallFacts,
    now: Timestamp,
    /// The rule and decided-by the case is meant to reach (checked before counting).
    rule: &'static str,
    by: DecidedBy,
}

fn cases() -> Vec<Case> {
    // Monday 2026-11-23, 10:00 in New York (09:00 in Chicago); the Sunday before at 20:00 in
    // New York (support's line is closed); Monday at 19:00 in Chicago.
    let monday: Timestamp = "2026-11-23T15:00:00Z".parse().unwrap();
    let sunday_night: Timestamp = "2026-11-23T01:00:00Z".parse().unwrap();
    let evening: Timestamp = "2026-11-24T01:00:00Z".parse().unwrap();
    let case = |name, facts, now, rule, by| Case {
        name,
        facts,
        now,
        rule,
        by,
    };
    let mut german = facts("4930123456", SUPPORT);
    german.ani_info = Some(NumberInfo {
        valid: true,
        region: Some("DE"),
        calling_code: 49,
        kind: NumberKind::FixedLine,
        nsn_len: 9,
        npa: None,
        nxx: None,
    });
    german.ani_geo = None;
    let mut vip = facts("12015550123", SUPPORT);
    vip.profile = Some(CallerProfile {
        tier: Some("gold".into()),
        ..CallerProfile::default()
    });
    let mut repeat = facts("12015550123", SUPPORT);
    repeat.history = Some(CallerHistory {
        last_queue: "support-de".into(),
        last_seen: monday.as_second() - 600,
    });
    let mut gray = facts("12015550123", SUPPORT);
    gray.risk = Some(RiskAssessment {
        list_hits: vec!["gray".into()],
        ..RiskAssessment::default()
    });
    let mut blocked = facts("12015550123", SUPPORT);
    blocked.risk = Some(RiskAssessment {
        level: RiskLevel::Blocked,
        ..RiskAssessment::default()
    });
    let mut moved = facts("12015550123", SUPPORT);
    moved.risk = Some(RiskAssessment {
        level: RiskLevel::Elevated,
        verify_queue: Some(QueueName::new("verify-ivr").unwrap()),
        ..RiskAssessment::default()
    });
    let mut mobile = facts("13125550123", SALES);
    mobile.ani_info.as_mut().unwrap().npa = Some(312);
    mobile.ani_geo = Some(GeoInfo {
        description: Some(Arc::from("Chicago, IL")),
        description_prefix: 7,
        time_zones: Some(Arc::from("America/Chicago")),
        subdivision: Some(Arc::from("US-IL")),
    });
    vec![
        case(
            "plain",
            facts("12015550123", SUPPORT),
            monday,
            "support/everyone",
            DecidedBy::Rule,
        ),
        case(
            "language",
            german,
            monday,
            "support/german",
            DecidedBy::Rule,
        ),
        case("skills", vip, monday, "support/vip", DecidedBy::Rule),
        case(
            "last",
            repeat,
            monday,
            "support/called-back",
            DecidedBy::Rule,
        ),
        case(
            "verify",
            gray,
            monday,
            "support/suspicious",
            DecidedBy::Rule,
        ),
        case(
            "reject",
            blocked,
            monday,
            "support/blocked",
            DecidedBy::RuleReject,
        ),
        case(
            "after-hours",
            facts("12015550123", SUPPORT),
            sunday_night,
            "support/everyone+after-hours",
            DecidedBy::Rule,
        ),
        case(
            "risk-verify",
            moved,
            monday,
            "support/everyone+risk-verify",
            DecidedBy::RiskVerify,
        ),
        case(
            "caller-time",
            mobile,
            evening,
            "sales/mobile-evening",
            DecidedBy::Rule,
        ),
        case(
            "clock-rules",
            facts("13125550123", BILLING),
            monday,
            "billing/everyone",
            DecidedBy::Rule,
        ),
        case(
            "default-set",
            facts("12015550123", NOWHERE),
            monday,
            "default/everyone",
            DecidedBy::Rule,
        ),
    ]
}

fn main() {
    let rules = shipped_rules();
    let cases = cases();
    for c in &cases {
        let r = decide(&c.facts, &rules, c.now, false);
        assert_eq!(
            (r.decision.rule.as_str(), r.decided_by),
            (c.rule, c.by),
            "{}: {:?}",
            c.name,
            r.decision
        );
        if c.by == DecidedBy::RuleReject {
            assert!(matches!(r.decision.action, DecisionAction::Reject { .. }));
        }
        // Warm-up: whatever a first call fills once (time-zone caches) is filled.
        for _ in 0..10 {
            black_box(decide(black_box(&c.facts), &rules, c.now, false));
        }
    }
    let profiler = dhat::Profiler::builder().testing().build();
    let mut allocating = Vec::new();
    for c in &cases {
        let before = dhat::HeapStats::get().total_blocks;
        for _ in 0..ROUNDS {
            black_box(decide(black_box(&c.facts), &rules, c.now, false));
        }
        let n = dhat::HeapStats::get().total_blocks - before;
        if n > 0 {
            #[allow(clippy::cast_precision_loss)]
            allocating.push(format!(
                "{} ({}): {:.1} allocations per decision",
                c.name,
                c.rule,
                n as f64 / ROUNDS as f64
            ));
        }
    }
    drop(profiler);
    assert!(
        allocating.is_empty(),
        "decide allocates:\n{}",
        allocating.join("\n")
    );
    println!(
        "alloc: {} cases, {ROUNDS} decisions each, no allocation",
        cases.len()
    );
    println!("1 passed, 0 failed");
}
