//! The engine with the embedded stores (memory velocity, list file): signals, levels, answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::facts;
use tollgate_core::{
    AniCandidate, AniSource, Attestation, CallFacts, CallInfo, CliCheck, CliVerdict, NumberKind,
    PartyNumber, RejectCause, Rejection, RiskAssessment, RiskLevel, Verification, Withheld,
};
use tollgate_risk::{
    Caller, FixedIdentity, IdentityOutcome, IdentitySource, IdentityVerifier, ListEntry, ListKind,
    PolicyConfig, RiskConfig, RiskEngine, RiskError, ThresholdOverride, TrunkRiskConfig,
    UntrustedMode,
};

const T0: u64 = 1_700_000_000;
const ANI: &str = "12125551212";
const DNIS: &str = "18005550100";

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + s)
}

async fn engine(cfg: &RiskConfig, dir: &Path) -> RiskEngine {
    RiskEngine::from_config(cfg, dir).await.unwrap()
}

fn names(a: &RiskAssessment) -> Vec<(&str, i32)> {
    a.signals
        .iter()
        .map(|s| (s.name.as_str(), s.weight))
        .collect()
}

fn sum(a: &RiskAssessment) -> i32 {
    a.signals.iter().map(|s| s.weight).sum()
}

async fn block(e: &RiskEngine, list: ListKind, pattern: &str) {
    e.lists()
        .add(ListEntry::new(list, pattern, "test", "ops", at(0), None).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn each_signal_contributes_its_weight_and_the_score_is_their_sum() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&RiskConfig::default(), dir.path()).await;

    let plain = e.assess(&facts("p", ANI, DNIS), at(0)).await;
    assert_eq!(names(&plain), vec![("identity-absent", 10)]);
    assert_eq!((plain.score, plain.level), (10, RiskLevel::Low));

    // Untrusted source, a toll-free number as caller, headers disagreeing; the CLI verdict
    // repeats the toll-free finding and is not counted twice.
    let mut f = facts("t", "18005559999", DNIS);
    f.trusted = false;
    f.ani_verified = false;
    f.sources_disagree = true;
    f.ani_info.as_mut().unwrap().kind = NumberKind::TollFree;
    f.cli = Some(CliCheck {
        verdict: CliVerdict::Invalid,
        reason: "toll-free number as CLI".into(),
        forced_from: None,
    });
    let a = e.assess(&f, at(0)).await;
    assert_eq!(
        names(&a),
        vec![
            ("identity-absent", 10),
            ("ani-toll-free", 40),
            ("untrusted-trunk", 10),
            ("sources-disagree", 20),
        ]
    );
    assert_eq!((a.score, a.level), (80, RiskLevel::High));
    assert_eq!(a.score, sum(&a));

    let mut f = facts("w", ANI, DNIS);
    f.ani = PartyNumber::Withheld(Withheld::Anonymous);
    f.ani_verified = false;
    let a = e.assess(&f, at(0)).await;
    assert_eq!(
        names(&a),
        vec![
            ("identity-absent", 10),
            ("ani-withheld", 15),
            ("ani-unverified", 5)
        ]
    );
    assert_eq!(a.level, RiskLevel::Elevated);

    let mut f = facts("i", ANI, DNIS);
    f.ani_info.as_mut().unwrap().valid = false;
    assert!(names(&e.assess(&f, at(0)).await).contains(&("ani-invalid", 30)));

    let mut f = facts("p2", ANI, DNIS);
    f.ani_info.as_mut().unwrap().kind = NumberKind::PremiumRate;
    assert!(names(&e.assess(&f, at(0)).await).contains(&("ani-premium", 40)));

    let mut f = facts("c", "12125550001", DNIS);
    f.cli = Some(CliCheck {
        verdict: CliVerdict::Invalid,
        reason: "deny 1212555%".into(),
        forced_from: None,
    });
    let a = e.assess(&f, at(0)).await;
    assert!(names(&a).contains(&("cli-invalid", 25)));
    assert_eq!(a.signals[1].detail, "deny 1212555%");
}

#[tokio::test]
async fn velocity_signals_per_window_per_policy_and_call_ids_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RiskConfig::default();
    cfg.velocity.ani = vec![2, 3, 50];
    cfg.velocity.npa_nxx = vec![3, 0, 0];
    cfg.policy = vec![PolicyConfig {
        name: "hotline".into(),
        dnis: vec!["1888*".into()],
        velocity: ThresholdOverride {
            ani_dnis: Some(vec![1, 1, 1]),
            ..ThresholdOverride::default()
        },
        ..PolicyConfig::default()
    }];
    let e = engine(&cfg, dir.path()).await;
    let calls = |id: &str| facts(id, ANI, DNIS);
    e.assess(&calls("v1"), at(0)).await;
    e.assess(&calls("v2"), at(10)).await;
    // A retry of v2 (same Call-ID): no new count, no signal.
    let retry = e.assess(&calls("v2"), at(11)).await;
    assert!(!names(&retry).iter().any(|(n, _)| n.starts_with("velocity")));
    let third = e.assess(&calls("v3"), at(20)).await;
    assert_eq!(
        names(&third),
        vec![("identity-absent", 10), ("velocity-ani-1m", 25)]
    );
    assert_eq!(third.signals[1].detail, "3 calls in 1m, threshold 2");
    let fourth = e.assess(&calls("v4"), at(100)).await;
    let n = names(&fourth);
    assert!(n.contains(&("velocity-ani-1h", 25)), "{n:?}");
    assert!(
        !n.contains(&("velocity-ani-1m", 25)),
        "v1-v3 left the minute"
    );
    // The exchange 212-555 counts distinct callers: one neighbour redialing (v4's caller
    // and 0000 three times: two callers) does not trip it, four callers within a minute do.
    for (i, t) in [(5, 101), (6, 102), (7, 103)] {
        let a = e
            .assess(&facts(&format!("n{i}"), "12125550000", DNIS), at(t))
            .await;
        assert!(!names(&a).contains(&("velocity-npa-nxx-1m", 15)), "{a:?}");
    }
    let a = e.assess(&facts("n8", "12125550001", DNIS), at(104)).await;
    assert!(
        !names(&a).contains(&("velocity-npa-nxx-1m", 15)),
        "3 callers"
    );
    let a = e.assess(&facts("n9", "12125550002", DNIS), at(105)).await;
    assert!(names(&a).contains(&("velocity-npa-nxx-1m", 15)), "{a:?}");
    let s = a.signals.iter().find(|s| s.name == "velocity-npa-nxx-1m");
    assert_eq!(s.unwrap().detail, "4 callers in 1m, threshold 3");

    // The hotline policy: a second call to the same 1888 number trips ANI+DNIS at once.
    let other = "14155550100";
    let v = e.evaluate(&facts("h1", other, "18885550101"), at(0)).await;
    assert_eq!(v.policy, "hotline");
    assert!(
        names(&v.assessment).contains(&("risk-policy", 0)),
        "explain names the policy"
    );
    let v = e.evaluate(&facts("h2", other, "18885550101"), at(1)).await;
    let n = names(&v.assessment);
    for w in [
        "velocity-ani-dnis-1m",
        "velocity-ani-dnis-1h",
        "velocity-ani-dnis-1d",
    ] {
        assert!(n.contains(&(w, 25)), "{n:?}");
    }
}

#[tokio::test]
async fn block_list_answers_with_the_configured_response() {
    // No reason configured: the rejection carries none, and the SIP layer writes the status's
    // standard phrase (tests/wiring.rs reads it off the wire).
    for (code, url, call_info) in [
        (603, None, None),
        (607, None, None),
        (608, None, None),
        (
            608,
            Some("https://tollgate.example/complain"),
            Some("https://tollgate.example/complain"),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RiskConfig::default();
        cfg.block.code = code;
        cfg.block.complaint_url = url.map(str::to_owned);
        let e = engine(&cfg, dir.path()).await;
        block(&e, ListKind::Block, "1212555*").await;
        let a = e.assess(&facts("b", ANI, DNIS), at(0)).await;
        assert_eq!(a.level, RiskLevel::Blocked);
        assert_eq!(a.list_hits, vec!["block"]);
        assert!(names(&a).contains(&("block-list", 100)));
        assert_eq!(
            a.reject,
            Some(Rejection {
                code,
                reason: None,
                call_info: call_info.map(|url| CallInfo { url: url.into() }),
                retry_after: None,
                cause: RejectCause::Blocked,
            })
        );
    }
}

#[tokio::test]
async fn allow_overrides_block_and_emergency_is_never_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RiskConfig {
        gray_queue: Some("verify".into()),
        ..RiskConfig::default()
    };
    let e = engine(&cfg, dir.path()).await;
    block(&e, ListKind::Block, "1212*").await;
    block(&e, ListKind::Allow, ANI).await;

    let vip = e.evaluate(&facts("a", ANI, DNIS), at(0)).await;
    let a = &vip.assessment;
    assert_eq!(a.list_hits, vec!["block", "allow"]);
    assert!(a.reject.is_none());
    assert_eq!(
        a.level,
        RiskLevel::High,
        "allow caps the level below blocked"
    );
    assert!(names(a).contains(&("allow-list", -50)));
    assert!(names(a).contains(&("allow-overrides", 0)));
    assert_eq!(vip.assessment.verify_queue.as_deref(), Some("verify"));

    let mut sos = facts("e", "12125550000", "911");
    sos.dnis = PartyNumber::Short("911".into());
    sos.emergency = true;
    let v = e.evaluate(&sos, at(0)).await;
    assert_eq!(v.assessment.level, RiskLevel::Blocked, "still assessed");
    assert!(v.assessment.reject.is_none());
    assert!(v.assessment.verify_queue.is_none());
    assert!(names(&v.assessment).contains(&("emergency-exempt", 0)));
}

#[tokio::test]
async fn gray_and_high_risk_go_to_the_verification_queue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RiskConfig {
        gray_queue: Some("verify".into()),
        policy: vec![PolicyConfig {
            name: "fraud".into(),
            dnis: vec!["18885550101".into()],
            gray_queue: Some("verify-fraud".into()),
            ..PolicyConfig::default()
        }],
        ..RiskConfig::default()
    };
    let e = engine(&cfg, dir.path()).await;
    block(&e, ListKind::Gray, "1646*").await;

    let g = e.evaluate(&facts("g", "16465550100", DNIS), at(0)).await;
    assert_eq!(g.assessment.level, RiskLevel::Elevated);
    assert_eq!(g.assessment.verify_queue.as_deref(), Some("verify"));
    let q = g.assessment.signals.last().unwrap();
    assert_eq!(
        (q.name.as_str(), q.weight, q.detail.as_str()),
        ("verify-queue", 0, "verify")
    );

    let g = e
        .evaluate(&facts("g2", "16465550100", "18885550101"), at(0))
        .await;
    assert_eq!(g.assessment.verify_queue.as_deref(), Some("verify-fraud"));

    let mut f = facts("h", ANI, DNIS);
    f.trusted = false;
    f.sources_disagree = true;
    f.ani_info.as_mut().unwrap().valid = false;
    let h = e.evaluate(&f, at(0)).await;
    assert_eq!(h.assessment.level, RiskLevel::High);
    assert_eq!(h.assessment.verify_queue.as_deref(), Some("verify"));

    let low = e.evaluate(&facts("l", ANI, DNIS), at(0)).await;
    assert!(low.assessment.verify_queue.is_none());
}

#[tokio::test]
async fn a_high_enough_score_blocks_without_a_list() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&RiskConfig::default(), dir.path())
        .await
        .with_identity_verifier(Arc::new(FixedIdentity(IdentityOutcome {
            verification: Verification::Failed("signature".into()),
            source: IdentitySource::Passport,
            ..IdentityOutcome::default()
        })));
    let mut f = facts("s", "18005559999", DNIS);
    f.identity = presented("eyJ...");
    f.ani_info.as_mut().unwrap().kind = NumberKind::TollFree;
    f.sources_disagree = true;
    let a = e.assess(&f, at(0)).await;
    assert_eq!(a.score, 100, "{:?}", names(&a));
    assert_eq!(a.level, RiskLevel::Blocked);
    assert_eq!(a.reject.unwrap().code, 603);
}

#[tokio::test]
async fn the_identity_hook_is_scored_and_its_rejection_applied() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RiskConfig::default();
    let with = |o: IdentityOutcome| {
        let cfg = cfg.clone();
        let dir = dir.path().to_owned();
        async move {
            engine(&cfg, &dir)
                .await
                .with_identity_verifier(Arc::new(FixedIdentity(o)))
        }
    };
    let mut f = facts("id", ANI, DNIS);
    f.identity = presented("eyJhbGciOiJFUzI1NiJ9...");

    let e = with(IdentityOutcome {
        attestation: Some(Attestation::A),
        verification: Verification::Verified,
        source: IdentitySource::Passport,
        reject: None,
    })
    .await;
    let a = e.assess(&f, at(0)).await;
    assert_eq!(names(&a), vec![("attestation-a", -20)]);
    assert_eq!(a.attestation, Some(Attestation::A));
    assert_eq!(a.verification, Verification::Verified);
    assert_eq!(a.score, -20);

    for (att, name, w) in [
        (Attestation::B, "attestation-b", 5),
        (Attestation::C, "attestation-c", 15),
    ] {
        let mut v = facts("v", ANI, DNIS);
        v.verstat = Some(format!("TN-Validation-Passed-{}", att.as_str()).into());
        let e = with(IdentityOutcome {
            attestation: Some(att),
            verification: Verification::Verified,
            source: IdentitySource::Verstat,
            reject: None,
        })
        .await;
        let a = e.assess(&v, at(0)).await;
        assert_eq!(names(&a), vec![(name, w)]);
        assert!(a.signals[0]
            .detail
            .starts_with("verstat TN-Validation-Passed-"));
    }

    let e = with(IdentityOutcome {
        attestation: None,
        verification: Verification::Failed("x5u host not allowed".into()),
        source: IdentitySource::Passport,
        reject: Some(Rejection {
            code: 438,
            reason: Some("Invalid Identity Header".into()),
            call_info: None,
            retry_after: None,
            cause: RejectCause::Identity,
        }),
    })
    .await;
    let a = e.assess(&f, at(0)).await;
    assert_eq!(names(&a), vec![("identity-failed", 40)]);
    assert_eq!(a.signals[0].detail, "passport: x5u host not allowed");
    assert_eq!(a.reject.as_ref().unwrap().code, 438);
    let mut sos = f.clone();
    sos.emergency = true;
    assert!(e.assess(&sos, at(0)).await.reject.is_none());

    // Without a verifier, presented identity is noted but not judged.
    let plain = engine(&cfg, dir.path()).await;
    let a = plain.assess(&f, at(0)).await;
    assert_eq!(names(&a), vec![("identity-not-checked", 0)]);
}

#[derive(Debug)]
struct Slow;

impl IdentityVerifier for Slow {
    fn verify<'a>(
        &'a self,
        _: &'a CallFacts,
        _: SystemTime,
    ) -> tollgate_risk::BoxFuture<'a, IdentityOutcome> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            IdentityOutcome::default()
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_verifier_is_cut_off_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&RiskConfig::default(), dir.path())
        .await
        .with_identity_verifier(Arc::new(Slow));
    let start = tokio::time::Instant::now();
    let a = e.assess(&facts("slow", ANI, DNIS), at(0)).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(200));
    assert_eq!(names(&a), vec![("identity-timeout", 0)]);
    assert_eq!(a.verification, Verification::Absent);
}

#[tokio::test]
async fn the_list_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RiskConfig {
        list_file: "lists/risk.json".into(),
        ..RiskConfig::default()
    };
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    {
        let first = engine(&cfg, dir.path()).await;
        block(&first, ListKind::Block, ANI).await;
        block(&first, ListKind::Gray, "1646*").await;
        assert_eq!(
            first.assess(&facts("1", ANI, DNIS), at(0)).await.level,
            RiskLevel::Blocked
        );
    }
    let second = engine(&cfg, dir.path()).await;
    let a = second.assess(&facts("2", ANI, DNIS), at(0)).await;
    assert_eq!(a.level, RiskLevel::Blocked);
    assert_eq!(second.lists().snapshot().len(ListKind::Gray), 1);
    // The CLI's view of the same file.
    let admin = tollgate_risk::ListAdmin::open(&cfg, dir.path()).unwrap();
    let mut csv = Vec::new();
    assert_eq!(admin.show_csv(&mut csv).await.unwrap(), 2);
    let text = String::from_utf8(csv).unwrap();
    assert!(text.starts_with("list,number_or_prefix,reason,who,expires_at,added_at\n"));
    assert!(
        text.contains("block,12125551212,test,ops,,1700000000"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_configuration_is_reported_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RiskConfig::default();
    cfg.velocity.ani = vec![1];
    cfg.block.code = 486;
    match RiskEngine::from_config(&cfg, dir.path()).await {
        Err(RiskError::Config(p)) => {
            let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(keys, vec!["risk.velocity.ani", "risk.block.code"]);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn spoofed_calls_never_move_a_verified_callers_velocity_or_history() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&RiskConfig::default(), dir.path()).await;
    common::scenarios::spoofed_flood_leaves_the_verified_caller_fresh(&e, ANI).await;
}

#[tokio::test]
async fn untrusted_ignore_counts_and_remembers_nothing_for_unbelieved_anis() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RiskConfig {
        untrusted: UntrustedMode::Ignore,
        ..RiskConfig::default()
    };
    let e = engine(&cfg, dir.path()).await;
    let mut last = RiskAssessment::default();
    for i in 0..52u64 {
        let f = common::scenarios::spoofed(&format!("s-{i}"), ANI);
        last = e.assess(&f, at(i)).await;
        e.remember(&Caller::of(&f).unwrap(), "spoofed", at(i)).await;
    }
    assert_eq!(
        names(&last),
        vec![
            ("identity-absent", 10),
            ("untrusted-trunk", 10),
            ("velocity-not-counted", 0)
        ]
    );
    let again = e
        .evaluate(&common::scenarios::spoofed("s-x", ANI), at(53))
        .await;
    assert_eq!(again.history, None, "not remembered");
    let real = e.evaluate(&facts("real", ANI, DNIS), at(54)).await;
    assert_eq!(names(&real.assessment), vec![("identity-absent", 10)]);
    assert_eq!(real.history, None);
    // Verified calls are counted as always.
    for i in 0..6u64 {
        last = e
            .assess(&facts(&format!("v-{i}"), ANI, DNIS), at(60 + i))
            .await;
    }
    assert!(names(&last).contains(&("velocity-ani-1m", 25)), "{last:?}");
}

#[tokio::test]
async fn evaluate_dry_is_the_live_verdict_without_recording_memory() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&RiskConfig::default(), dir.path()).await;
    common::scenarios::dry_run_is_the_live_verdict_without_recording(&e, ANI).await;
    // Lists and policy are the live ones too.
    block(&e, ListKind::Block, ANI).await;
    let f = facts("b", ANI, DNIS);
    let dry = e.evaluate_dry(&f, at(20)).await;
    assert_eq!(dry.assessment.level, RiskLevel::Blocked);
    assert_eq!(dry, e.evaluate(&f, at(20)).await);
}

#[tokio::test]
async fn sources_disagree_is_weighted_per_trunk_and_from_can_be_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = RiskConfig::default();
    cfg.trunk.insert(
        "main-number".into(),
        TrunkRiskConfig {
            sources_disagree_from: Some(false),
            ..TrunkRiskConfig::default()
        },
    );
    cfg.trunk.insert(
        "quiet".into(),
        TrunkRiskConfig {
            sources_disagree: Some(0),
            ..TrunkRiskConfig::default()
        },
    );
    let e = engine(&cfg, dir.path()).await;
    let cand = |source, d: &str| AniCandidate {
        source,
        number: PartyNumber::E164(common::e164(d)),
        scheme: "tel",
        screened: None,
        privacy: None,
    };
    // PAI the real line, From the company's main number.
    let call = |trunk: &str, other: AniSource| {
        let mut f = facts("d", ANI, DNIS);
        f.trunk = trunk.into();
        f.ani_candidates = [cand(AniSource::Pai, ANI), cand(other, "12125550000")]
            .into_iter()
            .collect();
        f.sources_disagree = true;
        f
    };
    let disagree = |a: &RiskAssessment| {
        a.signals
            .iter()
            .find(|s| s.name == "sources-disagree")
            .map(|s| (s.weight, s.detail.clone()))
    };
    let a = e.assess(&call("carrier-a", AniSource::From), at(0)).await;
    assert_eq!(
        disagree(&a),
        Some((20, "pai=+12125551212 from=+12125550000".into())),
        "other trunks: as before"
    );
    let a = e.assess(&call("main-number", AniSource::From), at(0)).await;
    assert_eq!(disagree(&a), None, "From left out: PAI alone agrees");
    assert_eq!(a.score, 10);
    let a = e.assess(&call("main-number", AniSource::Rpid), at(0)).await;
    assert_eq!(
        disagree(&a),
        Some((20, "pai=+12125551212 rpid=+12125550000".into())),
        "PAI and RPID disagreeing still counts"
    );
    let a = e.assess(&call("quiet", AniSource::From), at(0)).await;
    assert_eq!(
        disagree(&a).map(|d| d.0),
        Some(0),
        "kept for explain, no points"
    );
    assert_eq!(a.score, 10);
}

#[tokio::test]
async fn a_blocked_call_has_level_blocked_and_the_block_answer_even_with_an_identity_reject() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&RiskConfig::default(), dir.path())
        .await
        .with_identity_verifier(Arc::new(FixedIdentity(IdentityOutcome {
            attestation: None,
            verification: Verification::Failed("signature".into()),
            source: IdentitySource::Passport,
            reject: Some(Rejection {
                code: 438,
                reason: Some("Invalid Identity Header".into()),
                call_info: None,
                retry_after: None,
                cause: RejectCause::Identity,
            }),
        })));
    block(&e, ListKind::Block, ANI).await;
    let mut f = facts("b", ANI, DNIS);
    f.identity = presented("eyJ...");
    let a = e.assess(&f, at(0)).await;
    assert_eq!(a.level, RiskLevel::Blocked);
    assert_eq!(a.reject.unwrap().code, 603, "the block answer comes first");
    // Not blocked: the identity answer, and the level says nothing of a block.
    let a = e.assess(&facts("o", "12125550000", DNIS), at(0)).await;
    assert_ne!(a.level, RiskLevel::Blocked);
    assert_eq!(a.reject.unwrap().code, 438);
}

/// One Identity header, as the SIP layer hands it over (the fixed verifiers never read it).
fn presented(token: &str) -> Vec<tollgate_core::IdentityValue> {
    vec![tollgate_core::IdentityValue::Parsed(
        tollgate_core::IdentityHeader {
            token: token.into(),
            info: Some("https://cert.example/sp.pem".into()),
            alg: None,
            ppt: Some("shaken".into()),
            other: Vec::new(),
        },
    )]
}
