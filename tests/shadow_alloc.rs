//! Shadow rules cost no allocation when they agree (issue 23): with the shipped rules
//! (config/routes) live and the same rules as the shadow, what `Pipeline::run` and
//! `decide_live` add for the shadow (`ShadowAnswer::decide`: the shadow's decision and the
//! comparison; `ShadowStats::record`, with the Prometheus recorder the node installs) allocates
//! nothing after warm-up; nor does the live decision beside it.
//!
//! The allocator counts process-wide (dhat's: the workspace forbids `unsafe`, so no allocator
//! of our own), so this test binary has no harness: `main` is its only thread, and every
//! allocation counted is the code's under test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::path::Path;

use jiff::Timestamp;
use tollgate_core::{CallFacts, CallerProfile, RiskAssessment, RiskLevel};
use tollgate_router::Settings;
use tollgate_server::rules::{load_dir, RuleSource, RuleStore};
use tollgate_server::shadow::ShadowAnswer;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Calls per case while counting.
const ROUNDS: u64 = 200;

use tollgate_testkit::facts::us_caller as facts;

fn main() {
    // The node's recorder: the shadow's counters go where a live node's go.
    assert!(tollgate_server::http::metrics_handle().is_some());
    let routes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/routes");
    let settings = Settings {
        acd_host: "acd.example.net".into(),
        emergency_queue: Some("emergency".into()),
    };
    let store = RuleStore::new(RuleSource::Dir(routes.clone()), settings.clone()).unwrap();
    store.install_shadow(load_dir(&routes, &settings).unwrap());
    let stats = store.shadow_stats();

    // Monday 2026-11-23 10:00 in New York; the Sunday before at 20:00 (support is closed).
    let monday: Timestamp = "2026-11-23T15:00:00Z".parse().unwrap();
    let sunday_night: Timestamp = "2026-11-23T01:00:00Z".parse().unwrap();
    let mut vip = facts("12015550123", "18005550100");
    vip.profile = Some(CallerProfile {
        tier: Some("gold".into()),
        ..CallerProfile::default()
    });
    let mut blocked = facts("12015550123", "18005550100");
    blocked.risk = Some(RiskAssessment {
        level: RiskLevel::Blocked,
        ..RiskAssessment::default()
    });
    let cases = [
        ("support", facts("12015550123", "18005550100"), monday),
        ("skills", vip, monday),
        ("reject", blocked, monday),
        (
            "after-hours",
            facts("12015550123", "18005550100"),
            sunday_night,
        ),
        ("sales", facts("12015550123", "18885550101"), monday),
        ("billing", facts("13125550123", "12125550102"), monday),
        ("default-set", facts("12015550123", "18005559999"), monday),
    ];

    // What the pipeline does for a call with a shadow: the live decision, then the shadow's,
    // compared (Pipeline::run), then counted (decide_live).
    let live = |f: &CallFacts, now| tollgate_router::decide(f, &store.current(), now, false);
    let shadow = |f: &CallFacts, now, live: &tollgate_router::Routed| {
        let answer = store
            .shadow()
            .as_ref()
            .map(|rules| ShadowAnswer::decide(f, rules, now, &live.decision))
            .expect("a shadow is installed");
        stats.record(f.dnis.key(), &live.decision, &answer, "call-ref");
        answer
    };
    for (name, f, now) in &cases {
        let l = live(f, *now);
        let s = shadow(f, *now, &l);
        assert!(s.agrees, "{name}: the same rules agree: {s:?}");
        for _ in 0..10 {
            let l = live(f, *now);
            black_box(shadow(f, *now, &l));
        }
    }

    let profiler = dhat::Profiler::builder().testing().build();
    let mut allocating = Vec::new();
    for (name, f, now) in &cases {
        let mut in_shadow = 0;
        let mut in_live = 0;
        for _ in 0..ROUNDS {
            let start = dhat::HeapStats::get().total_blocks;
            let l = live(black_box(f), *now);
            let mid = dhat::HeapStats::get().total_blocks;
            black_box(shadow(black_box(f), *now, &l));
            drop(l);
            let end = dhat::HeapStats::get().total_blocks;
            in_live += mid - start;
            in_shadow += end - mid;
        }
        if in_shadow + in_live > 0 {
            #[allow(clippy::cast_precision_loss)]
            allocating.push(format!(
                "{name}: {:.1} allocations per call for the shadow, {:.1} for the live decision",
                in_shadow as f64 / ROUNDS as f64,
                in_live as f64 / ROUNDS as f64,
            ));
        }
    }
    drop(profiler);
    assert!(
        allocating.is_empty(),
        "a call with an agreeing shadow allocates:\n{}",
        allocating.join("\n")
    );
    let summary = stats.summary(3);
    assert_eq!(summary["moved"], 0, "{summary}");
    assert!(summary["calls"].as_u64() > Some(ROUNDS), "{summary}");
    println!(
        "shadow_alloc: {} cases, {ROUNDS} calls each, no allocation",
        cases.len()
    );
    println!("1 passed, 0 failed");
}
