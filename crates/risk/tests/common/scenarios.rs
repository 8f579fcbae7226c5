//! Scenarios both stores must pass the same way (tests/engine.rs runs them on the memory
//! store, tests/redis.rs on a real redis-server).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate_core::{AniCandidate, AniSource, CallFacts, RiskAssessment, RiskLevel};
use tollgate_risk::{Caller, RiskEngine, RiskVerdict};

use super::facts;

pub const T0: u64 = 1_700_000_000;
pub const DNIS: &str = "18005550100";

pub fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + s)
}

/// A call from a source that is not a trusted trunk: only From counts, "from" `ani`.
pub fn spoofed(call_id: &str, ani: &str) -> CallFacts {
    let mut f = facts(call_id, ani, DNIS);
    f.trunk = "".into();
    f.trusted = false;
    f.ani_verified = false;
    f.ani_source = AniSource::From;
    f.ani_candidates = [AniCandidate {
        source: AniSource::From,
        number: f.ani.clone(),
        scheme: "sip",
        screened: None,
        privacy: None,
    }]
    .into_iter()
    .collect();
    f
}

fn velocity_signals(a: &RiskAssessment) -> Vec<&str> {
    a.signals
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("velocity"))
        .collect()
}

/// Issue 16's attack: 52 INVITEs from an untrusted source with From = the victim's number
/// (each routed and remembered), and 200 spoofed neighbours in the victim's exchange; then the
/// victim's real call, from the trusted carrier with a verified PAI, must score exactly as a
/// fresh caller's: no velocity signal, no repeat history. The spoofed calls themselves still
/// score as the flood they are, in their own keys.
pub async fn spoofed_flood_leaves_the_verified_caller_fresh(e: &RiskEngine, victim: &str) {
    let fresh = e.evaluate_dry(&facts("fresh", victim, DNIS), at(55)).await;
    let mut last = None;
    for i in 0..52u64 {
        let f = spoofed(&format!("spoof-{i}"), victim);
        let v = e.evaluate(&f, at(i)).await;
        e.remember(&Caller::of(&f).unwrap(), "spoofed-queue", at(i))
            .await;
        last = Some(v);
    }
    let flood = last.unwrap().assessment;
    assert!(!flood.degraded, "{flood:?}");
    for s in ["velocity-ani-1m", "velocity-ani-1h", "velocity-ani-1d"] {
        assert!(
            velocity_signals(&flood).contains(&s),
            "a flood from an untrusted source still scores: {flood:?}"
        );
    }
    let s = flood
        .signals
        .iter()
        .find(|s| s.name == "velocity-ani-1m")
        .unwrap();
    // Counts stop at one more than the largest threshold (50).
    assert_eq!(
        s.detail,
        "51 calls in 1m, threshold 5 (untrusted ANIs' own count)"
    );
    assert_eq!(flood.level, RiskLevel::Blocked);
    // The spoofed caller's own history is there, in its namespace.
    let again = e.evaluate(&spoofed("spoof-52", victim), at(53)).await;
    assert_eq!(
        again.history.map(|h| h.last_queue).as_deref(),
        Some("spoofed-queue")
    );
    // 200 spoofed neighbours in the victim's exchange (threshold 100 distinct callers a
    // minute).
    let prefix = victim.get(..7).unwrap();
    for i in 0..200u64 {
        let ani = format!("{prefix}{:04}", 9000 + i);
        e.evaluate(&spoofed(&format!("n-{i}"), &ani), at(54)).await;
    }

    let real = e.evaluate(&facts("real", victim, DNIS), at(55)).await;
    assert!(!real.assessment.degraded);
    assert_eq!(
        velocity_signals(&real.assessment),
        Vec::<&str>::new(),
        "{real:?}"
    );
    assert_eq!(
        real.history, None,
        "no repeat-caller history from spoofed calls"
    );
    assert_eq!(real.assessment.level, RiskLevel::Low);
    assert_eq!(
        (real.assessment.score, &real.assessment.signals),
        (fresh.assessment.score, &fresh.assessment.signals),
        "the verified call scores as a fresh caller"
    );
    // A trusted trunk's unverified (From) "+X" has its own keys too: not the untrusted ones.
    let mut from_only = facts("from-only", victim, DNIS);
    from_only.ani_verified = false;
    from_only.ani_source = AniSource::From;
    let v = e.evaluate(&from_only, at(56)).await;
    assert_eq!(velocity_signals(&v.assessment), Vec::<&str>::new(), "{v:?}");
    assert_eq!(v.history, None);
}

/// A plain verified call (the trusted carrier, PAI).
pub fn caller(call_id: &str, ani: &str) -> CallFacts {
    facts(call_id, ani, DNIS)
}

/// The dry run answers what the live call then gets (same level, score, signals, queue,
/// history) and leaves the counters as they were: two dry runs agree, and the live call after
/// them counts as if they had not happened.
pub async fn dry_run_is_the_live_verdict_without_recording(e: &RiskEngine, ani: &str) {
    // ani threshold 5 a minute: calls 1-5 are quiet, the 6th trips it.
    for i in 0..5u64 {
        e.evaluate(&caller(&format!("d-{i}"), ani), at(i)).await;
    }
    e.remember(&Caller::of(&caller("d-4", ani)).unwrap(), "support", at(4))
        .await;
    let next = caller("d-5", ani);
    let dry: RiskVerdict = e.evaluate_dry(&next, at(10)).await;
    let dry2 = e.evaluate_dry(&next, at(10)).await;
    assert_eq!(
        dry, dry2,
        "a dry run changes nothing another dry run could see"
    );
    assert!(
        dry.assessment
            .signals
            .iter()
            .any(|s| s.name == "velocity-ani-1m" && s.detail.starts_with("6 calls")),
        "the dry run counts the call itself: {dry:?}"
    );
    let live = e.evaluate(&next, at(10)).await;
    assert_eq!(dry, live, "evaluate_dry is evaluate without the write");
    assert_eq!(live.history.unwrap().last_queue, "support");
    // A retry of a recorded Call-ID: dry and live both count it once.
    let retry = e.evaluate_dry(&next, at(11)).await;
    assert_eq!(retry.assessment, e.evaluate(&next, at(11)).await.assessment);
    // Distinct callers: a redialer's dry run adds no caller to its exchange; a new one does.
    let neighbour = format!("{}9999", ani.get(..7).unwrap());
    let d = e.evaluate_dry(&caller("d-n", &neighbour), at(12)).await;
    assert_eq!(d, e.evaluate(&caller("d-n", &neighbour), at(12)).await);
}
