//! The adapters wired into a running node, driven over real UDP: the risk engine (lists,
//! velocity, identity, repeat callers), the CRM (file directory and a real HTTP CRM) and
//! STIR/SHAKEN (a test PKI and a real x5u server).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "../crates/crm/tests/support/crm.rs"]
mod crm;
mod node;
#[path = "../crates/risk/tests/common/mod.rs"]
mod redis_support;
#[path = "../crates/stir/tests/common/mod.rs"]
mod sti;

use std::time::{Duration, Instant, SystemTime};

use common::{header, status, Peer};
use node::*;
use tollgate_core::{Attestation, DecisionAction, LookupStatus, RiskLevel, Verification};
use tollgate_risk::{ListEntry, ListKind};

const RISK: &str =
    "[risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\nlist_refresh_ms = 100\n";

async fn call(node: &Node, msg: &str) -> String {
    let peer = Peer::new(node.udp).await;
    peer.send(msg).await;
    peer.recv_final().await
}

async fn list(node: &Node, kind: ListKind, number: &str) {
    let e = ListEntry::new(kind, number, "test", "wiring", SystemTime::now(), None).unwrap();
    node.engine().lists().add(e).await.unwrap();
}

fn queue(d: &tollgate_core::Decision) -> &str {
    d.queue().unwrap_or("-")
}

#[tokio::test]
async fn a_rule_that_tests_risk_answers_blocked_callers_itself() {
    // The shared rules reject `risk = "blocked"` with 603; [risk.block] says 607: the rule's
    // answer stands, with the rule named.
    let s = Scratch::new();
    let text = format!("{}{RISK}[risk.block]\ncode = 607\n", base_config(false));
    let node = s.start(&text).await;
    list(&node, ListKind::Block, "+12125550112").await;
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550112", "", "rblk", 1),
    )
    .await;
    assert!(r.starts_with("SIP/2.0 603 Decline\r\n"), "{r}");
    assert_eq!(header(&r, "X-Rule"), Some("default/blocked"));
    let (f, d) = node.call(&call_id("rblk"));
    assert_eq!(f.risk.unwrap().level, RiskLevel::Blocked);
    assert_eq!(d.rule, "default/blocked");
}

#[tokio::test]
async fn block_list_answers_the_configured_code_and_emergency_still_routes() {
    for (code, extra, reason) in [
        (603, "", "Decline"),
        (607, "", "Unwanted"),
        (
            608,
            "complaint_url = \"https://complaints.example.com/tg\"\n",
            "Rejected",
        ),
    ] {
        // No rule looks at risk, so the block is [risk.block]'s to answer.
        let s = Scratch::new();
        s.rules(RISK_BLIND_RULES);
        let text = format!(
            "{}{RISK}[risk.block]\ncode = {code}\n{extra}",
            base_config(false)
        );
        let node = s.start(&text).await;
        list(&node, ListKind::Block, "+12125550111").await;
        let r = call(
            &node,
            &invite_pai("+18005550100", "+12125550111", "", &format!("blk{code}"), 1),
        )
        .await;
        assert_eq!(status(&r), code, "{r}");
        assert!(
            r.starts_with(&format!("SIP/2.0 {code} {reason}\r\n")),
            "{r}"
        );
        assert_eq!(header(&r, "X-Rule"), Some("risk"));
        if code == 608 {
            assert_eq!(
                header(&r, "Call-Info"),
                Some("<https://complaints.example.com/tg>;purpose=jwscard"),
                "{r}"
            );
        } else {
            assert_eq!(header(&r, "Call-Info"), None, "{r}");
        }
        let (f, _) = node.call(&call_id(&format!("blk{code}")));
        let risk = f.risk.unwrap();
        assert_eq!(risk.level, RiskLevel::Blocked);
        assert_eq!(risk.list_hits, vec!["block".to_string()]);

        // The same caller dialing 911: routed to the emergency queue, never rejected.
        let r = call(
            &node,
            &invite_pai("911", "+12125550111", "", &format!("sos{code}"), 1),
        )
        .await;
        assert_eq!(status(&r), 302, "{r}");
        assert!(header(&r, "Contact")
            .unwrap()
            .starts_with("<sip:emergency@acd.example.net;"));
        let (f, _) = node.call(&call_id(&format!("sos{code}")));
        assert!(f.emergency);
        let risk = f.risk.unwrap();
        assert_eq!(risk.reject, None);
        assert!(risk.signals.iter().any(|s| s.name == "emergency-exempt"));
    }
}

#[tokio::test]
async fn gray_listed_caller_goes_to_the_verification_queue() {
    let s = Scratch::new();
    let text = format!("{}{RISK}gray_queue = \"verify-ivr\"\n", base_config(false));
    let node = s.start(&text).await;
    list(&node, ListKind::Gray, "+1212555*").await;
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550112", "", "gray1", 1),
    )
    .await;
    assert_eq!(status(&r), 302, "{r}");
    let contact = header(&r, "Contact").unwrap();
    assert!(
        contact.starts_with("<sip:verify-ivr@acd.example.net;") && contact.contains(";verify"),
        "{contact}"
    );
    assert_eq!(header(&r, "X-Rule"), Some("default/everyone+risk-verify"));
    // Not gray-listed: the rules' own queue.
    let r = call(
        &node,
        &invite_pai("+18005550100", "+13125550100", "", "gray2", 1),
    )
    .await;
    assert!(header(&r, "Contact")
        .unwrap()
        .starts_with("<sip:general@acd.example.net;"));
}

#[tokio::test]
async fn crm_profile_from_the_file_directory_reaches_the_rules() {
    let s = Scratch::new();
    let text = format!("{}[crm]\nkind = \"file\"\n", base_config(false));
    let node = s.start(&text).await;
    // Aisha Johnson is gold in config/directory.csv; Ethan Brooks is silver.
    let r = call(
        &node,
        &invite_pai("+18005550100", "+13125550147", "", "gold1", 1),
    )
    .await;
    // The queue's priority, skills and language ride on the Contact URI, after the call
    // reference and before the ANI.
    let call_ref = header(&r, "X-Call-Ref").unwrap();
    assert_eq!(
        header(&r, "Contact"),
        Some(
            format!(
                "<sip:vip@acd.example.net;ref={call_ref};priority=9;skills=gold%2Cen;lang=en;\
                 ani=%2B13125550147>"
            )
            .as_str()
        ),
        "{r}"
    );
    assert_eq!(header(&r, "X-Rule"), Some("default/vip"));
    assert!(
        header(&r, "X-Rules-Version").is_some_and(|v| !v.is_empty()),
        "{r}"
    );
    let (f, _) = node.call(&call_id("gold1"));
    assert_eq!(f.lookup, LookupStatus::Found);
    assert_eq!(f.profile.unwrap().customer_id, "C-2003");

    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550123", "", "silver1", 1),
    )
    .await;
    assert_eq!(header(&r, "X-Rule"), Some("default/everyone"), "{r}");
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550999", "", "nobody1", 1),
    )
    .await;
    assert_eq!(status(&r), 302);
    assert_eq!(
        node.call(&call_id("nobody1")).0.lookup,
        LookupStatus::NotFound
    );
}

#[tokio::test]
async fn retransmissions_count_once_and_a_flood_raises_the_risk() {
    let s = Scratch::new();
    // Two calls a minute are fine, the third is over the threshold (25 points: high).
    let text = format!(
        "{}{RISK}[risk.velocity]\nwindows = [60]\nani = [2]\nani_dnis = [0]\nnpa_nxx = [0]\n\
         [risk.levels]\nelevated = 20\nhigh = 30\n",
        base_config(false)
    );
    let node = s.start(&text).await;
    let peer = Peer::new(node.udp).await;
    let first = invite_pai("+18005550100", "+12125550113", "", "flood1", peer.port());
    peer.send(&first).await;
    let r = peer.recv_final().await;
    assert_eq!(status(&r), 302, "{r}");
    // The carrier did not see our 302: it retransmits the same INVITE three times.
    for _ in 0..3 {
        peer.send(&first).await;
        let again = peer.recv_final().await;
        assert_eq!(header(&again, "X-Call-Ref"), header(&r, "X-Call-Ref"));
    }
    assert_eq!(node.runs(), 1, "retransmissions never reach the pipeline");

    let r2 = call(
        &node,
        &invite_pai("+18005550100", "+12125550113", "", "flood2", 1),
    )
    .await;
    // (A repeat caller by now, so the callback queue; not screening.)
    assert!(
        header(&r2, "Contact")
            .unwrap()
            .starts_with("<sip:callback@"),
        "second call is within the threshold, so the first counted once: {r2}"
    );
    let (f2, _) = node.call(&call_id("flood2"));
    assert!(!f2
        .risk
        .as_ref()
        .unwrap()
        .signals
        .iter()
        .any(|s| s.name.starts_with("velocity")));

    let r3 = call(
        &node,
        &invite_pai("+18005550100", "+12125550113", "", "flood3", 1),
    )
    .await;
    assert!(
        header(&r3, "Contact")
            .unwrap()
            .starts_with("<sip:screening@"),
        "{r3}"
    );
    let (f3, d3) = node.call(&call_id("flood3"));
    let risk = f3.risk.unwrap();
    assert!(risk.level >= RiskLevel::High, "{risk:?}");
    assert!(
        risk.signals.iter().any(|s| s.name.starts_with("velocity")),
        "{:?}",
        risk.signals
    );
    assert_eq!(d3.rule, "default/screening");
    assert!(header(&r3, "Contact").unwrap().contains(";risk=high"));
}

#[tokio::test]
async fn a_risk_policy_applies_its_own_thresholds_and_queue_to_its_dialed_numbers() {
    let s = Scratch::new();
    // No rule looks at risk, so high-risk callers are the policy's to send to verification.
    s.rules(RISK_BLIND_RULES);
    // Default thresholds are loose; the fraud line's policy trips on a second call a minute
    // and sends the caller to its own verification queue.
    let text = format!(
        "{}{RISK}gray_queue = \"verify-ivr\"\n[risk.velocity]\nwindows = [60]\nani = [5]\n\
         ani_dnis = [0]\nnpa_nxx = [0]\n[risk.levels]\nelevated = 20\nhigh = 25\n\
         [[risk.policy]]\nname = \"fraud-line\"\ndnis = [\"18005550100\"]\n\
         gray_queue = \"verify-fraud\"\nvelocity = {{ ani = [1] }}\n",
        base_config(false)
    );
    let node = s.start(&text).await;
    for (i, dnis) in ["+18005550199", "+18005550199", "+18005550100"]
        .iter()
        .enumerate()
    {
        let id = format!("pol{i}");
        let r = call(&node, &invite_pai(dnis, "+12125550177", "", &id, 1)).await;
        assert_eq!(status(&r), 302, "{r}");
        let (f, d) = node.call(&call_id(&id));
        let risk = f.risk.unwrap();
        let policy = risk.signals.iter().find(|s| s.name == "risk-policy");
        if i < 2 {
            // Two calls to another line: within the default five a minute.
            assert!(policy.is_none(), "{:?}", risk.signals);
            assert!(risk.level < RiskLevel::High, "{risk:?}");
            assert!(!header(&r, "Contact").unwrap().contains(";verify"), "{r}");
        } else {
            // The third call from the same ANI, to the fraud line: over its one a minute.
            assert_eq!(policy.map(|p| p.detail.as_str()), Some("fraud-line"));
            assert!(
                risk.signals.iter().any(|s| s.name == "velocity-ani-1m"),
                "{:?}",
                risk.signals
            );
            assert!(risk.level >= RiskLevel::High, "{risk:?}");
            let contact = header(&r, "Contact").unwrap();
            assert!(
                contact.starts_with("<sip:verify-fraud@acd.example.net;")
                    && contact.contains(";verify"),
                "{contact}"
            );
            assert!(d.rule.ends_with("+risk-verify"), "{}", d.rule);
        }
    }
}

#[tokio::test]
async fn a_repeat_caller_is_recognised_from_the_memory_store() {
    let s = Scratch::new();
    let node = s.start(&format!("{}{RISK}", base_config(false))).await;
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550114", "", "rep1", 1),
    )
    .await;
    assert!(header(&r, "Contact").unwrap().starts_with("<sip:general@"));
    assert_eq!(node.call(&call_id("rep1")).0.history, None);
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550114", "", "rep2", 1),
    )
    .await;
    assert!(
        header(&r, "Contact").unwrap().starts_with("<sip:callback@"),
        "{r}"
    );
    let h = node.call(&call_id("rep2")).0.history.unwrap();
    assert_eq!(h.last_queue, "general");
    // Another caller is not a repeat.
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550115", "", "rep3", 1),
    )
    .await;
    assert!(header(&r, "Contact").unwrap().starts_with("<sip:general@"));
}

#[tokio::test]
async fn crm_slower_than_the_deadline_never_delays_a_call() {
    let crm = crm::Crm::start().await;
    crm.set_record("12125550116", r#"{"id":"C-1","tier":"gold"}"#);
    crm.set_mode(crm::Mode::Slow(Duration::from_secs(3)));
    let s = Scratch::new();
    let text = format!(
        "{}[crm]\nkind = \"http\"\ndeadline_ms = 100\n[crm.http]\nurl = \"{}\"\n\
         [crm.http.mapping]\ncustomer_id = \"id\"\ntier = \"tier\"\n",
        base_config(false),
        crm.url("/callers/{digits}")
    );
    let node = s.start(&text).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let udp = node.udp;
        tasks.push(tokio::spawn(async move {
            let peer = Peer::new(udp).await;
            let started = Instant::now();
            peer.send(&invite_pai(
                "+18005550100",
                &format!("+121255501{:02}", 16 + i % 2),
                "",
                &format!("slow{i}"),
                peer.port(),
            ))
            .await;
            let r = peer.recv_final().await;
            (r, started.elapsed())
        }));
    }
    for t in tasks {
        let (r, took) = t.await.unwrap();
        assert_eq!(status(&r), 302, "{r}");
        // Deadline 100 ms; a generous margin for a loaded CI machine, far below the CRM's 3 s.
        assert!(
            took < Duration::from_millis(1100),
            "answered after {took:?}"
        );
    }
    let calls = node.calls();
    assert_eq!(calls.len(), 20);
    assert!(calls
        .iter()
        .all(|(f, d)| f.lookup == LookupStatus::Timeout && queue(d) == "general"));
    assert!(crm.requests() >= 1);
}

// ---------------------------------------------------------------------------------------------
// STIR/SHAKEN

struct Pki {
    _anchors: tempfile::TempDir,
    anchors_path: String,
    x5u: String,
    sp: sti::Sp,
    server: sti::CertServer,
}

async fn pki() -> Pki {
    let ca = sti::Ca::new("Test STI-PA");
    let anchors = ca.anchor_dir();
    let sp = ca.issue(sti::LeafSpec::default());
    let server = sti::CertServer::start().await;
    let x5u = server.serve("/sp.pem", sti::Route::pem(&sp.pem));
    Pki {
        anchors_path: anchors.path().display().to_string(),
        _anchors: anchors,
        x5u,
        sp,
        server,
    }
}

impl Pki {
    fn stir_section(&self) -> String {
        format!(
            "[stir]\ntrust_anchors_dir = \"{}\"\nallowed_hosts = [\"127.0.0.1\"]\nallow_http = true\n",
            self.anchors_path
        )
    }

    /// An Identity header line for ANI → DNIS (E.164 digits), signed `age_s` ago.
    fn identity(&self, attest: &str, ani: &str, dnis: &str, age_s: i64) -> String {
        let iat = sti::unix(SystemTime::now()) - age_s;
        let token = self.sp.sign(
            &sti::shaken_header(&self.x5u),
            &sti::shaken_claims(attest, dnis, iat, ani),
        );
        format!("Identity: {}\r\n", sti::identity(&token, &self.x5u))
    }
}

#[tokio::test]
async fn signed_calls_verify_from_trusted_trunks_only() {
    let pki = pki().await;
    let s = Scratch::new();
    let text = format!("{}{RISK}{}", base_config(false), pki.stir_section());
    let node = s.start(&text).await;
    let identity = pki.identity("A", "12125550117", "18005550100", 0);

    // Trusted carrier: verified, attestation A reaches the rules and the 302.
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550117", &identity, "sig1", 1),
    )
    .await;
    let contact = header(&r, "Contact").unwrap();
    assert!(
        contact.starts_with("<sip:attested@") && contact.contains(";attest=A"),
        "{r}"
    );
    assert_eq!(header(&r, "X-Identity"), Some("verified;attest=A"));
    let (f, d) = node.call(&call_id("sig1"));
    let risk = f.risk.unwrap();
    assert_eq!(risk.attestation, Some(Attestation::A));
    assert_eq!(risk.verification, Verification::Verified);
    assert_eq!(d.rule, "default/attested");

    // The same INVITE from an untrusted source: its Identity is never read.
    let peer = peer_from("127.0.0.2", node.udp).await;
    peer.send(&invite_pai(
        "+18005550100",
        "+12125550117",
        &identity,
        "sig2",
        peer.port(),
    ))
    .await;
    let r = peer.recv_final().await;
    let contact = header(&r, "Contact").unwrap();
    assert!(
        contact.starts_with("<sip:general@") && !contact.contains(";attest="),
        "{r}"
    );
    assert_eq!(header(&r, "X-Identity"), None, "nothing verified: {r}");
    let (f, _) = node.call(&call_id("sig2"));
    assert!(!f.trusted && f.identity.is_empty());
    let risk = f.risk.unwrap();
    assert_eq!(risk.attestation, None);
    assert_eq!(risk.verification, Verification::Absent);

    // A PASSporT for another caller fails (orig mismatch) and is only a fact here.
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550118", &identity, "sig3", 1),
    )
    .await;
    assert_eq!(status(&r), 302, "annotate mode never rejects: {r}");
    assert!(!header(&r, "Contact").unwrap().contains(";attest="), "{r}");
    assert!(
        header(&r, "X-Identity").is_some_and(|h| h.starts_with("failed;reason=\"invalid-identity")),
        "{r}"
    );
    let risk = node.call(&call_id("sig3")).0.risk.unwrap();
    assert!(
        matches!(&risk.verification, Verification::Failed(why) if why.starts_with("invalid-identity")),
        "{:?}",
        risk.verification
    );
}

#[tokio::test]
async fn a_trunk_that_requires_signed_calls_rejects_per_rfc_8224() {
    let pki = pki().await;
    let s = Scratch::new();
    let text = format!("{}{RISK}{}", base_config(true), pki.stir_section());
    let node = s.start(&text).await;
    let peer = peer_from("127.0.0.3", node.udp).await;
    // Each rejection is ACKed, and only the answer to this request counts: an earlier
    // rejection's retransmission (timer G, t1 = 50 ms here) may still be on its way.
    let send = |extra: String, id: &'static str, dnis: &'static str| {
        let msg = invite_pai(dnis, "+12125550119", &extra, id, peer.port());
        let p = &peer;
        async move {
            p.send(&msg).await;
            loop {
                let r = p.recv_final().await;
                if !r.contains(&format!("branch=z9hG4bK{id};")) {
                    continue;
                }
                if status(&r) >= 300 {
                    p.send(&crate::common::ack_for(&msg, &r)).await;
                }
                break r;
            }
        }
    };
    let r = send(String::new(), "req1", "+18005550100").await;
    assert!(r.starts_with("SIP/2.0 428 Use Identity Header\r\n"), "{r}");
    let stale = pki.identity("A", "12125550119", "18005550100", 600);
    let r = send(stale, "req2", "+18005550100").await;
    assert!(r.starts_with("SIP/2.0 403 Stale Date\r\n"), "{r}");
    let wrong_orig = pki.identity("A", "12125550000", "18005550100", 0);
    let r = send(wrong_orig, "req3", "+18005550100").await;
    assert!(r.starts_with("SIP/2.0 438 "), "{r}");
    // x5u on a host we may not fetch from: the credential cannot be had.
    let elsewhere = pki.x5u.replace("127.0.0.1", "localhost");
    let token = pki.sp.sign(
        &sti::shaken_header(&elsewhere),
        &sti::shaken_claims(
            "A",
            "18005550100",
            sti::unix(SystemTime::now()),
            "12125550119",
        ),
    );
    let r = send(
        format!("Identity: {}\r\n", sti::identity(&token, &elsewhere)),
        "req6",
        "+18005550100",
    )
    .await;
    assert!(r.starts_with("SIP/2.0 436 Bad Identity Info\r\n"), "{r}");
    // Signed by a CA that is not a trust anchor: obtained, but untrusted.
    let rogue = sti::Ca::new("Rogue CA").issue(sti::LeafSpec::default());
    let rogue_x5u = pki.server.serve("/rogue.pem", sti::Route::pem(&rogue.pem));
    let token = rogue.sign(
        &sti::shaken_header(&rogue_x5u),
        &sti::shaken_claims(
            "A",
            "18005550100",
            sti::unix(SystemTime::now()),
            "12125550119",
        ),
    );
    let r = send(
        format!("Identity: {}\r\n", sti::identity(&token, &rogue_x5u)),
        "req7",
        "+18005550100",
    )
    .await;
    assert!(
        r.starts_with("SIP/2.0 437 Unsupported Credential\r\n"),
        "{r}"
    );
    let good = pki.identity("B", "12125550119", "18005550100", 0);
    let r = send(good, "req4", "+18005550100").await;
    assert_eq!(status(&r), 302, "{r}");
    // Emergency calls are never rejected, signed or not.
    let r = send(String::new(), "req5", "911").await;
    assert_eq!(status(&r), 302, "{r}");
    assert!(header(&r, "Contact")
        .unwrap()
        .starts_with("<sip:emergency@"));
}

#[tokio::test]
async fn trusted_verstat_counts_only_where_configured() {
    let s = Scratch::new();
    let mut text = base_config(false).replace(
        "region = \"US\"\n",
        "region = \"US\"\ntrust_verstat = true\n",
    );
    text.push_str(RISK);
    let node = s.start(&text).await;
    let msg = crate::common::invite(
        "+18005550100",
        "+12125550120",
        "P-Asserted-Identity: <sip:+12125550120;verstat=TN-Validation-Passed-A@c.example;user=phone>\r\n",
        "vs1",
        1,
    );
    let r = call(&node, &msg).await;
    assert!(
        header(&r, "Contact").unwrap().starts_with("<sip:attested@"),
        "{r}"
    );
    // Without trust_verstat the same header is a fact, not a verification.
    let s2 = Scratch::new();
    let node2 = s2.start(&format!("{}{RISK}", base_config(false))).await;
    let r = call(&node2, &msg).await;
    assert!(
        header(&r, "Contact").unwrap().starts_with("<sip:general@"),
        "{r}"
    );
    assert_eq!(
        node2.call(&call_id("vs1")).0.verstat.as_deref(),
        Some("TN-Validation-Passed-A")
    );
}

// ---------------------------------------------------------------------------------------------
// Redis

fn redis_risk(url: &str) -> String {
    format!(
        "[risk]\nstore = \"redis\"\nlist_refresh_ms = 100\n[risk.redis]\nurl = \"{url}\"\nkey_prefix = \"tgw\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_blocks_counts_once_per_call_and_remembers_callers() {
    let redis = redis_support::RedisServer::start();
    let s = Scratch::new();
    let node = s
        .start(&format!(
            "{}{}",
            base_config(false),
            redis_risk(&redis.url())
        ))
        .await;
    list(&node, ListKind::Block, "+12125550121").await;
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550121", "", "rb1", 1),
    )
    .await;
    assert_eq!(status(&r), 603, "{r}");

    let before = redis.calls("evalsha") + redis.calls("eval");
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550122", "", "rh1", 1),
    )
    .await;
    assert!(header(&r, "Contact").unwrap().starts_with("<sip:general@"));
    assert_eq!(
        redis.calls("evalsha") + redis.calls("eval") - before,
        1,
        "one script round trip per call"
    );
    // The history write goes on after the answer: wait for it to land.
    let key = "tgw:{1212555}:h:12125550122";
    let mut conn = redis.conn();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
        if let Some(v) = v {
            assert!(v.ends_with(" general"), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "history never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).unwrap();
    assert!(ttl > 86_000 && ttl <= 86_400, "{ttl}");
    assert_eq!(
        redis_support::key_slot(key),
        redis_support::key_slot("tgw:{1212555}:a:12125550122")
    );
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550122", "", "rh2", 1),
    )
    .await;
    assert!(
        header(&r, "Contact").unwrap().starts_with("<sip:callback@"),
        "{r}"
    );
    assert_eq!(
        node.call(&call_id("rh2")).0.history.unwrap().last_queue,
        "general"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_fails_open() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Scratch::new();
    let node = s
        .start(&format!(
            "{}{}",
            base_config(false),
            redis_risk(&format!("redis://127.0.0.1:{port}/"))
        ))
        .await;
    for i in 0..3 {
        let r = call(
            &node,
            &invite_pai("+18005550100", "+12125550123", "", &format!("down{i}"), 1),
        )
        .await;
        assert_eq!(status(&r), 302, "{r}");
    }
    assert!(node
        .calls()
        .iter()
        .all(|(f, d)| f.risk.as_ref().is_some_and(|r| r.degraded)
            && matches!(d.action, DecisionAction::Route(_))));
}

/// The spoofing attack of issue 16: 52 INVITEs from an untrusted source with From set to a
/// victim's number, then the victim's real call from the trusted carrier with a verified PAI.
/// The untrusted calls count in their own keys, so the victim is a fresh caller: routed, no
/// velocity signal, no repeat-caller history. (Per store and mode: crates/risk's tests.)
#[tokio::test]
async fn untrusted_spoofed_calls_do_not_move_the_victims_counters_or_history() {
    let s = Scratch::new();
    let node = s.start(&format!("{}{RISK}", base_config(false))).await;
    let spoofer = peer_from("127.0.0.2", node.udp).await;
    for i in 0..52 {
        let msg = crate::common::invite(
            "+18005550100",
            "+12125550166",
            "",
            &format!("spoof{i}"),
            spoofer.port(),
        );
        spoofer.send(&msg).await;
        let r = loop {
            let r = spoofer.recv_final().await;
            if r.contains(&format!("branch=z9hG4bKspoof{i};")) {
                break r;
            }
        };
        // Routed until the flood scores high enough to be blocked in its own keys.
        assert!(matches!(status(&r), 302 | 603), "{r}");
        if status(&r) >= 300 {
            spoofer.send(&crate::common::ack_for(&msg, &r)).await;
        }
    }
    let (f, _) = node.call(&call_id("spoof51"));
    assert!(!f.trusted && !f.ani_verified);
    let spoof_risk = f.risk.unwrap();
    assert!(
        spoof_risk
            .signals
            .iter()
            .any(|s| s.name.starts_with("velocity-")),
        "the flood scores as a flood in its own keys: {:?}",
        spoof_risk.signals
    );
    let r = call(
        &node,
        &invite_pai("+18005550100", "+12125550166", "", "victim", 1),
    )
    .await;
    assert_eq!(status(&r), 302, "{r}");
    assert!(
        header(&r, "Contact").unwrap().starts_with("<sip:general@"),
        "{r}"
    );
    let (f, _) = node.call(&call_id("victim"));
    assert!(f.ani_verified);
    let risk = f.risk.unwrap();
    assert!(
        !risk.signals.iter().any(|s| s.name.starts_with("velocity-")),
        "{:?}",
        risk.signals
    );
    assert!(risk.level < RiskLevel::High, "{risk:?}");
    assert_eq!(f.history, None, "no history from the spoofed calls");
}
