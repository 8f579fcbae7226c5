//! INVITEs over real UDP and TCP sockets: carrier header styles, trunk trust, transactions.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_core::{AniSource, DnisSource, PartyNumber};

const NO_DELAY: Duration = Duration::ZERO;

async fn call(run: &Running, msg: &str) -> String {
    let peer = Peer::new(run.udp).await;
    peer.send(msg).await;
    peer.recv_final().await
}

#[tokio::test]
async fn pai_tel_first_wins_over_sip_and_from() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let extra = "P-Asserted-Identity: <sip:+12125550001@carrier.example.net;user=phone>\r\n\
                 P-Asserted-Identity: <tel:+1-212-555-0002;cpc=payphone;oli=27>\r\n";
    let r = call(
        &run,
        &invite("+18005550100", "+13125559999", extra, "pai1", 1),
    )
    .await;
    assert_eq!(status(&r), 302, "{r}");
    assert_eq!(header(&r, "X-ANI"), Some("+12125550002"));
    assert_eq!(header(&r, "X-ANI-Source"), Some("pai"));
    let contact = header(&r, "Contact").unwrap();
    let call_ref = header(&r, "X-Call-Ref").unwrap();
    assert_eq!(
        contact,
        format!("<sip:support@acd.example.net;ref={call_ref};ani=%2B12125550002>")
    );
    let (f, recorded_ref) = run.facts().pop().unwrap();
    assert_eq!(recorded_ref, call_ref);
    assert_eq!(f.cpc.as_deref(), Some("payphone"));
    assert_eq!(f.oli.as_deref(), Some("27"));
    assert!(f.ani_verified);
    assert!(
        f.sources_disagree,
        "PAI sip, PAI tel and From name three numbers"
    );
    assert_eq!(f.presented.to_string(), "+13125559999");
    assert_eq!(f.display_name.as_deref(), Some("Caller"));
}

#[tokio::test]
async fn rpid_only_and_screen_no_is_unverified() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let extra = "Remote-Party-ID: \"Called\" <sip:+18005550100@x>;party=called\r\n\
                 Remote-Party-ID: <sip:+14155550123@gw.example.net;user=phone>;party=calling;screen=no;privacy=off\r\n";
    let r = call(&run, &invite("18885550101", "anonymous", extra, "rpid1", 1)).await;
    assert_eq!(header(&r, "X-ANI"), Some("+14155550123"));
    assert_eq!(header(&r, "X-ANI-Source"), Some("rpid;unverified"));
    assert!(header(&r, "Contact")
        .unwrap()
        .starts_with("<sip:sales@acd.example.net;"));
    let (f, _) = run.facts().pop().unwrap();
    assert_eq!(f.ani_source, AniSource::Rpid);
    assert!(!f.ani_verified, "screen=no");
    assert_eq!(
        f.presented,
        PartyNumber::Withheld(tollgate_core::Withheld::Anonymous)
    );
    assert_eq!(f.ani_candidates[0].privacy.as_deref(), Some("off"));
}

#[tokio::test]
async fn charge_info_privacy_and_verstat_are_facts_not_the_ani() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let extra = "P-Asserted-Identity: <sip:+12125550003;verstat=TN-Validation-Passed@c.example;user=phone>\r\n\
                 P-Charge-Info: <sip:+14075550134@example.net;user=phone>\r\n\
                 Privacy: id;critical\r\n\
                 Identity: eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln;info=<https://cert.example.org/a.cer>;alg=ES256;ppt=shaken\r\n";
    let from = "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=x";
    let msg = invite("+18775550102", "anonymous", extra, "chg1", 1).replace(
        "From: \"Caller\" <sip:anonymous@carrier.example.net;user=phone>;tag=fchg1",
        &format!("From: {from}"),
    );
    let r = call(&run, &msg).await;
    assert_eq!(header(&r, "X-ANI"), Some("+12125550003"));
    let (f, _) = run.facts().pop().unwrap();
    assert_eq!(
        f.charge_number.as_ref().map(ToString::to_string).as_deref(),
        Some("+14075550134")
    );
    assert!(f.privacy.id && f.privacy.critical && f.privacy.restricts_presentation());
    assert_eq!(f.verstat.as_deref(), Some("TN-Validation-Passed"));
    assert_eq!(f.identity.len(), 1);
    // Parsed by the SIP layer: the stir crate gets the parameters, not the raw line.
    match &f.identity[0] {
        tollgate_core::IdentityValue::Parsed(h) => assert_eq!(h.ppt.as_deref(), Some("shaken")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.presented,
        PartyNumber::Withheld(tollgate_core::Withheld::Anonymous)
    );
}

#[tokio::test]
async fn diversion_names_the_dialed_toll_free_number() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    // Carrier translated 1-800 to a ring-to number; bottom-most Diversion is the original.
    let extra = "Diversion: <sip:+16175550000@c.example>;reason=unconditional;counter=1\r\n\
                 Diversion: <sip:+18005550100@c.example;user=phone>;reason=unconditional\r\n\
                 P-Asserted-Identity: <tel:+12125550004>\r\n";
    let r = call(
        &run,
        &invite("+16175551111", "+12125550004", extra, "div1", 1),
    )
    .await;
    assert_eq!(header(&r, "X-DNIS"), Some("+18005550100"));
    assert!(header(&r, "Contact").unwrap().starts_with("<sip:support@"));
    let (f, _) = run.facts().pop().unwrap();
    assert_eq!(f.dnis_source, DnisSource::Diversion);
    let sources: Vec<_> = f.dnis_candidates.iter().map(|c| c.source).collect();
    assert_eq!(
        sources,
        [
            DnisSource::Diversion,
            DnisSource::RequestUri,
            DnisSource::To
        ]
    );
}

#[tokio::test]
async fn history_info_first_entry_and_national_formats() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let extra = "History-Info: <sip:18775550102@ims.example.com>;index=1, <sip:6175551111@x>;index=1.1;rc=1\r\n\
                 P-Asserted-Identity: <tel:2125550005;phone-context=+1>\r\n";
    let r = call(&run, &invite("6175551111", "2125550005", extra, "hi1", 1)).await;
    assert_eq!(header(&r, "X-DNIS"), Some("+18775550102"));
    assert_eq!(header(&r, "X-ANI"), Some("+12125550005"));
    assert!(header(&r, "Contact").unwrap().starts_with("<sip:billing@"));
}

#[tokio::test]
async fn compact_forms_and_folding() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    let msg = format!(
        "INVITE sip:%2B18005550100@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bKcompact1\r\n\
f: <sip:+4930123456@de.example>\r\n ;tag=a1\r\n\
t: <sip:+18005550100@127.0.0.1>\r\n\
i: compact1@x\r\n\
CSeq: 7 INVITE\r\n\
m: <sip:trunk@127.0.0.1>\r\n\
l: 0\r\n\r\n",
        peer.port()
    );
    peer.send(&msg).await;
    let r = peer.recv_final().await;
    assert_eq!(status(&r), 302, "{r}");
    assert_eq!(header(&r, "X-ANI"), Some("+4930123456"));
    assert!(
        header(&r, "Contact")
            .unwrap()
            .starts_with("<sip:support-de@"),
        "{r}"
    );
    assert_eq!(header(&r, "CSeq"), Some("7 INVITE"));
    assert_eq!(header(&r, "Call-ID"), Some("compact1@x"));
}

#[tokio::test]
async fn pai_from_an_untrusted_trunk_is_ignored() {
    let run = start(&config_text(false, "reject"), NO_DELAY, |_| {}).await;
    let extra = "P-Asserted-Identity: <tel:+12125550006;cpc=operator>\r\nP-Charge-Info: <tel:+14075550134>\r\n\
                 Identity: abc.def.ghi;info=<https://x/y>\r\n";
    let r = call(
        &run,
        &invite("+18005550100", "+13125550007", extra, "untr1", 1),
    )
    .await;
    assert_eq!(header(&r, "X-ANI"), Some("+13125550007"));
    assert_eq!(header(&r, "X-ANI-Source"), Some("from;unverified"));
    let (f, _) = run.facts().pop().unwrap();
    assert!(!f.trusted && !f.ani_verified);
    assert_eq!(f.cpc, None);
    assert_eq!(f.charge_number, None);
    assert!(f.identity.is_empty());
    assert_eq!(f.ani_candidates.len(), 1);
}

#[tokio::test]
async fn unknown_source_rejected_or_untrusted_by_config() {
    let text = config_text(true, "reject").replace(
        "cidrs = [\"127.0.0.1/32\", \"::1/128\"]",
        "cidrs = [\"192.0.2.0/24\"]",
    );
    let run = start(&text, NO_DELAY, |_| {}).await;
    let r = call(&run, &invite("+18005550100", "+13125550007", "", "unk1", 1)).await;
    assert_eq!(status(&r), 403);
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (unknown source)"),
        "{r}"
    );
    assert_eq!(
        run.recorder()
            .count
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    let text = text.replace(
        "unknown_source = \"reject\"",
        "unknown_source = \"untrusted\"",
    );
    let run = start(&text, NO_DELAY, |_| {}).await;
    let extra = "P-Asserted-Identity: <tel:+12125550006>\r\n";
    let r = call(
        &run,
        &invite("+18005550100", "+13125550007", extra, "unk2", 1),
    )
    .await;
    assert_eq!(status(&r), 302);
    assert_eq!(header(&r, "X-ANI-Source"), Some("from;unverified"));
}

#[tokio::test]
async fn emergency_is_always_routed() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let r = call(&run, &invite("911", "anonymous", "", "sos1", 1)).await;
    assert!(
        header(&r, "Contact")
            .unwrap()
            .starts_with("<sip:emergency@"),
        "{r}"
    );
    let peer = Peer::new(run.udp).await;
    let msg = invite("x", "+12125550008", "", "sos2", peer.port()).replace(
        "INVITE sip:x@127.0.0.1;user=phone",
        "INVITE urn:service:sos.fire",
    );
    peer.send(&msg).await;
    let r = peer.recv_final().await;
    assert!(
        header(&r, "Contact")
            .unwrap()
            .starts_with("<sip:emergency@"),
        "{r}"
    );
}

#[tokio::test]
async fn retransmitted_invite_gets_the_identical_response_without_a_second_decision() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    let msg = invite("+18005550100", "+12125550009", "", "retr1", peer.port());
    peer.send(&msg).await;
    let first = peer.recv_final().await;
    peer.send(&msg).await;
    let second = peer.recv_final().await;
    assert_eq!(first, second);
    assert_eq!(
        run.recorder()
            .count
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // The ACK is absorbed: no answer, and timer G stops retransmitting the 302.
    peer.send(&ack_for(&msg, &first)).await;
    assert_eq!(peer.recv_within(400).await, None, "nothing after the ACK");
}

#[tokio::test]
async fn timer_g_retransmits_the_302_until_acked() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    let msg = invite("+18005550100", "+12125550010", "", "timg1", peer.port());
    peer.send(&msg).await;
    let first = peer.recv_final().await;
    // T1 = 50 ms in the test config: a retransmission arrives at ~50 ms, then ~100 ms.
    let again = peer.recv_within(500).await.expect("timer G retransmission");
    assert_eq!(again, first);
    peer.send(&ack_for(&msg, &first)).await;
    // At most one retransmission already in flight; then silence.
    let _ = peer.recv_within(150).await;
    assert_eq!(peer.recv_within(500).await, None);
}

#[tokio::test]
async fn slow_decision_sends_100_trying_then_cancel_gives_487() {
    let run = start(
        &config_text(true, "reject"),
        Duration::from_millis(800),
        |c| {
            c.trying_delay = Duration::from_millis(50);
        },
    )
    .await;
    let peer = Peer::new(run.udp).await;
    let msg = invite("+18005550100", "+12125550011", "", "canc1", peer.port());
    peer.send(&msg).await;
    let trying = peer.recv().await;
    assert!(trying.starts_with("SIP/2.0 100 Trying"), "{trying}");
    assert!(
        !header(&trying, "To").unwrap().contains("tag="),
        "no To-tag on 100"
    );
    let cancel = msg
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    peer.send(&cancel).await;
    let mut got = vec![peer.recv().await, peer.recv().await];
    got.sort();
    assert!(
        got[0].starts_with("SIP/2.0 200 OK") && header(&got[0], "CSeq") == Some("1 CANCEL"),
        "{got:?}"
    );
    assert!(
        got[1].starts_with("SIP/2.0 487 Request Terminated")
            && header(&got[1], "CSeq") == Some("1 INVITE"),
        "{got:?}"
    );
}

#[tokio::test]
async fn fast_decision_sends_no_100_trying() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    peer.send(&invite(
        "+18005550100",
        "+12125550012",
        "",
        "fast1",
        peer.port(),
    ))
    .await;
    assert_eq!(status(&peer.recv().await), 302);
}

#[tokio::test]
async fn cancel_without_transaction_is_481_and_options_200() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    let cancel = invite("+18005550100", "+12125550013", "", "nocanc", peer.port())
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    peer.send(&cancel).await;
    assert_eq!(status(&peer.recv().await), 481);
    let options = invite("+18005550100", "+12125550013", "", "opt1", peer.port())
        .replacen("INVITE sip", "OPTIONS sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    peer.send(&options).await;
    let r = peer.recv().await;
    assert_eq!(status(&r), 200);
    assert_eq!(header(&r, "Allow"), Some("INVITE, ACK, CANCEL, OPTIONS"));
    let bye = options
        .replacen("OPTIONS sip", "BYE sip", 1)
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 BYE")
        .replace("opt1", "bye1");
    peer.send(&bye).await;
    assert_eq!(status(&peer.recv().await), 405);
}

#[tokio::test]
async fn draining_answers_pending_calls_and_refuses_new_ones() {
    let mut run = start(
        &config_text(true, "reject"),
        Duration::from_millis(400),
        |_| {},
    )
    .await;
    let peer = Peer::new(run.udp).await;
    peer.send(&invite(
        "+18005550100",
        "+12125550014",
        "",
        "drain1",
        peer.port(),
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    run.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let options = invite("+18005550100", "+12125550014", "", "drainopt", peer.port())
        .replacen("INVITE sip", "OPTIONS sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    let other = Peer::new(run.udp).await;
    other
        .send(&options.replace(
            &format!(":{};", peer.port()),
            &format!(":{};", other.port()),
        ))
        .await;
    let r = other.recv().await;
    assert_eq!(status(&r), 503, "{r}");
    assert!(header(&r, "Retry-After").is_some());
    other
        .send(&invite(
            "+18005550100",
            "+12125550015",
            "",
            "drain2",
            other.port(),
        ))
        .await;
    assert_eq!(status(&other.recv_final().await), 503);
    // The call that was pending when draining began still gets its 302.
    assert_eq!(status(&peer.recv_final().await), 302);
    tokio::time::timeout(Duration::from_secs(3), &mut run.done)
        .await
        .expect("drained")
        .unwrap();
}

#[tokio::test]
async fn decision_timeout_answers_503() {
    let run = start(
        &config_text(true, "reject"),
        Duration::from_millis(1000),
        |c| {
            c.decision_timeout = Duration::from_millis(100);
        },
    )
    .await;
    let r = call(&run, &invite("+18005550100", "+12125550016", "", "dto1", 1)).await;
    assert!(
        r.starts_with("SIP/2.0 503 Service Unavailable (decision timeout)"),
        "{r}"
    );
    assert!(header(&r, "Retry-After").is_some());
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_problem() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    let msg = invite("+18005550100", "+12125550017", "", "bad1", peer.port())
        .replace("CSeq: 1 INVITE", "CSeq: one INVITE");
    peer.send(&msg).await;
    let r = peer.recv().await;
    assert!(
        r.starts_with("SIP/2.0 400 CSeq header is malformed\r\n"),
        "{r}"
    );
    peer.send_bytes(b"\x00\x01garbage\r\n\r\n").await;
    peer.send_bytes(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bKq\r\n\r\n")
        .await;
    assert_eq!(
        peer.recv_within(300).await,
        None,
        "garbage and responses are dropped"
    );
}

#[tokio::test]
async fn tcp_two_messages_in_one_segment_and_one_over_two_reads() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(run.tcp).await.unwrap();
    let port = s.local_addr().unwrap().port();
    let a = invite("+18005550100", "+12125550018", "", "tcpa", port)
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let b = invite("+18885550101", "+12125550019", "", "tcpb", port)
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.write_all(format!("{a}{b}").as_bytes()).await.unwrap();
    let c = invite("+18775550102", "+12125550020", "", "tcpc", port)
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let (x, y) = c.as_bytes().split_at(c.len() / 2);
    s.write_all(x).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(y).await.unwrap();
    let mut got = String::new();
    let mut buf = vec![0u8; 8192];
    while got.matches("SIP/2.0 302").count() < 3 {
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("tcp responses")
            .unwrap();
        assert!(n > 0, "closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    for q in ["<sip:support@", "<sip:sales@", "<sip:billing@"] {
        assert!(got.contains(q), "{q} in {got}");
    }
}

#[tokio::test]
async fn tcp_without_content_length_is_400_and_closed() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let mut s = tokio::net::TcpStream::connect(run.tcp).await.unwrap();
    let port = s.local_addr().unwrap().port();
    let a = invite("+18005550100", "+12125550021", "", "ncl", port)
        .replace("Content-Length: 0\r\n", "");
    s.write_all(a.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut got))
        .await
        .expect("closed")
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("SIP/2.0 400 Missing Content-Length"),
        "{got}"
    );
}

#[tokio::test]
async fn emergency_matches_the_dialed_digits_even_where_they_look_national() {
    // Niue's national numbers are four digits long: "5000" normalizes to +6835000, yet a
    // configured emergency number must still bypass everything.
    let text = config_text(true, "reject")
        .replace("region = \"US\"", "region = \"NU\"")
        .replace(
            "emergency_numbers = [\"911\", \"112\", \"933\"]",
            "emergency_numbers = [\"911\", \"112\", \"5000\"]",
        );
    let run = start(&text, NO_DELAY, |_| {}).await;
    let r = call(&run, &invite("5000", "anonymous", "", "sosnu", 1)).await;
    assert!(
        header(&r, "Contact")
            .unwrap()
            .starts_with("<sip:emergency@"),
        "{r}"
    );
    let (f, _) = run.facts().pop().unwrap();
    assert_eq!(f.dnis.to_string(), "+6835000");
    assert!(f.emergency);
}

/// Diversion, History-Info and P-Called-Party-ID name the dialed number only from a trusted
/// trunk: from an untrusted one (or an unknown source handled as untrusted) the Request-URI
/// does, so a caller cannot pick the line its call lands on.
#[tokio::test]
async fn redirection_headers_pick_the_dnis_only_from_trusted_trunks() {
    const DIVERTED: [&str; 3] = [
        "Diversion: <sip:+18885550101@c.example;user=phone>;reason=unconditional\r\n",
        "History-Info: <sip:+18885550101@c.example>;index=1\r\n",
        "P-Called-Party-ID: <sip:+18885550101@c.example>\r\n",
    ];
    let with_pcpi = |text: String| {
        text.replace(
            "dnis_source = [\"diversion\", \"history-info\", \"request-uri\", \"to\"]",
            "dnis_source = [\"p-called-party-id\", \"diversion\", \"history-info\", \"request-uri\", \"to\"]",
        )
    };
    let untrusted_source = with_pcpi(config_text(true, "untrusted")).replace(
        "cidrs = [\"127.0.0.1/32\", \"::1/128\"]",
        "cidrs = [\"192.0.2.0/24\"]",
    );
    for (text, trusted) in [
        (with_pcpi(config_text(true, "reject")), true),
        (with_pcpi(config_text(false, "reject")), false),
        (untrusted_source, false),
    ] {
        let run = start(&text, NO_DELAY, |_| {}).await;
        for (i, extra) in DIVERTED.iter().enumerate() {
            let r = call(
                &run,
                &invite(
                    "+18005550100",
                    "+12125550030",
                    extra,
                    &format!("div{trusted}{i}"),
                    1,
                ),
            )
            .await;
            let (dnis, queue) = if trusted {
                ("+18885550101", "<sip:sales@")
            } else {
                ("+18005550100", "<sip:support@")
            };
            assert_eq!(header(&r, "X-DNIS"), Some(dnis), "{extra}{r}");
            assert!(
                header(&r, "Contact").unwrap().starts_with(queue),
                "{extra}{r}"
            );
        }
        let facts = run.facts();
        assert_eq!(facts.len(), 3);
        for (f, _) in &facts {
            assert_eq!(f.trusted, trusted);
            let want = if trusted { 3 } else { 2 };
            assert_eq!(f.dnis_candidates.len(), want, "{:?}", f.dnis_candidates);
        }
    }
}

/// The header block of one response: exactly one status line, the head ended once (at the
/// end), CR only in CRLF, and no other control byte.
fn assert_one_clean_response(r: &str) {
    assert!(r.starts_with("SIP/2.0 "), "{r}");
    assert_eq!(r.matches("SIP/2.0 ").count(), 1, "{r}");
    assert_eq!(r.find("\r\n\r\n").map(|i| i + 4), Some(r.len()), "{r}");
    assert_eq!(r.matches('\r').count(), r.matches("\r\n").count(), "{r}");
    assert_eq!(r.matches('\n').count(), r.matches("\r\n").count(), "{r}");
    assert!(
        !r.chars().any(|c| c.is_control() && c != '\r' && c != '\n'),
        "{r:?}"
    );
}

/// Issue 18's attack: escaped CR LF in the From, Request-URI and To users. The 302 carries
/// one Contact, the ACD's, and the numbers shown escaped on their own lines.
#[tokio::test]
async fn escaped_crlf_in_from_ruri_or_to_injects_nothing() {
    let run = start(&config_text(true, "reject"), NO_DELAY, |_| {}).await;
    let contact = "x%0D%0AContact%3A%20%3Csip%3Aattacker%40evil.example%3E";
    let split = "x%0D%0A%0D%0ASIP%2F2.0%20200%20OK%0D%0AContact%3A%20%3Csip%3Aa%40evil.example%3E";
    for (i, user) in [contact, split].into_iter().enumerate() {
        let from = format!("From: <sip:{user}@evil.example>;tag=1");
        let msg = invite("+18005550100", "+12125550031", "", &format!("inj{i}"), 1).replace(
            &format!(
                "From: \"Caller\" <sip:+12125550031@carrier.example.net;user=phone>;tag=finj{i}"
            ),
            &from,
        );
        assert!(msg.contains(&from));
        let r = call(&run, &msg).await;
        assert_one_clean_response(&r);
        let contacts: Vec<_> = r
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("contact"))
            .collect();
        assert_eq!(contacts.len(), 1, "{r}");
        assert!(
            contacts[0].starts_with("Contact: <sip:support@acd.example.net;"),
            "{r}"
        );
        assert!(
            header(&r, "X-ANI").unwrap().starts_with("unusable:x%0D%0A"),
            "{r}"
        );
        assert_eq!(status(&r), 302);

        // The dialed number, through the Request-URI and To (X-DNIS).
        let r = call(
            &run,
            &invite(user, "+12125550031", "", &format!("injd{i}"), 1),
        )
        .await;
        assert_one_clean_response(&r);
        let contacts: Vec<_> = r
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("contact"))
            .collect();
        assert_eq!(contacts.len(), 1, "{r}");
        assert!(contacts[0].contains("@acd.example.net;"), "{r}");
        assert!(
            header(&r, "X-DNIS")
                .unwrap()
                .starts_with("unusable:x%0D%0A"),
            "{r}"
        );
    }
}

/// Every datagram `peer` receives within `ms`.
async fn all_within(peer: &Peer, ms: u64) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    let mut got = Vec::new();
    while let Some(r) = peer
        .recv_within(
            deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_millis()
                .try_into()
                .unwrap(),
        )
        .await
    {
        got.push(r);
    }
    got
}

/// `[[trunk]] stateless_rejects = true` (issue 18): the trunk's unACKed 302 goes once over UDP,
/// where the same trunk without it retransmits (T1 = 50 ms: copies at 0, 50, 150, 350 ms); an
/// unknown source's 403 goes once; and the key is strict.
#[tokio::test]
async fn stateless_rejects_by_config_sends_each_answer_once() {
    let stateful = config_text(true, "reject");
    let stateless = stateful.replacen(
        "trusted = true\n",
        "trusted = true\nstateless_rejects = true\n",
        1,
    );
    assert_ne!(stateless, stateful);
    for (text, copies) in [(&stateful, 4), (&stateless, 1)] {
        let run = start(text, NO_DELAY, |_| {}).await;
        let peer = Peer::new(run.udp).await;
        let msg = invite("+18005550100", "+12125550011", "", "sl1", peer.port());
        peer.send(&msg).await;
        let got = all_within(&peer, 600).await;
        assert_eq!(got.len(), copies, "{got:?}");
        assert!(got.iter().all(|r| status(r) == 302), "{got:?}");
    }

    let unknown = stateful.replace(
        "cidrs = [\"127.0.0.1/32\", \"::1/128\"]",
        "cidrs = [\"192.0.2.0/24\"]",
    );
    let run = start(&unknown, NO_DELAY, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    let msg = invite("+18005550100", "+12125550011", "", "sl2", peer.port());
    peer.send(&msg).await;
    let got = all_within(&peer, 600).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(status(&got[0]), 403);

    let bad = stateful.replacen(
        "trusted = true\n",
        "trusted = true\nstateless_rejects = \"yes\"\n",
        1,
    );
    assert!(tollgate_server::config::parse(std::path::Path::new("t.toml"), &bad, &plan()).is_err());
}
