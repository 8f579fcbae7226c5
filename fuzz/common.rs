//! What several targets share: the number plan and trunks, INVITEs built around chosen header
//! lines, and the check that a response the engine writes is one SIP response with exactly the
//! lines expected. Included by each target with `#[path = "../common.rs"] mod common;`.
#![allow(dead_code)] // not every target uses every helper

use std::net::SocketAddr;
use std::sync::OnceLock;

use tollgate_core::{
    AniSource, CallFacts, Decision, DecisionAction, DnisSource, NumberPlan, RiskAssessment, Target,
    Verification,
};
use tollgate_sip::extract::{extract, Emergency};
use tollgate_sip::message::{frame, Frame, HeaderName, Message, Request, StartLine};
use tollgate_sip::response::{self, Copied};
use tollgate_sip::trunk::Trunk;

pub struct Env {
    pub plan: NumberPlan,
    /// Every identity and redirection header counted.
    pub trusted: Trunk,
    /// The same precedence, untrusted: only From, the Request-URI and To may count.
    pub untrusted: Trunk,
    pub emergency: Emergency,
}

pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let plan = NumberPlan::load();
        let region = plan.region("US").expect("US is in the metadata").clone();
        let trusted = Trunk {
            name: "fuzz-trusted".into(),
            cidrs: Vec::new(),
            trusted: true,
            ani_precedence: vec![AniSource::Pai, AniSource::Rpid, AniSource::From],
            dnis_precedence: vec![
                DnisSource::Diversion,
                DnisSource::HistoryInfo,
                DnisSource::PCalledPartyId,
                DnisSource::RequestUri,
                DnisSource::To,
            ],
            region,
            tls_peers: Vec::new(),
        };
        let untrusted = Trunk {
            name: "fuzz-untrusted".into(),
            trusted: false,
            ..trusted.clone()
        };
        Env {
            plan,
            trusted,
            untrusted,
            emergency: Emergency::default(),
        }
    })
}

/// An INVITE to `ruri` from `from`, with `extra` header lines (each ending in CRLF).
pub fn invite(ruri: &str, from: &str, to: &str, extra: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz\r\n\
Max-Forwards: 70\r\n\
From: {from}\r\n\
To: {to}\r\n\
Call-ID: fuzz@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

/// The facts of `text` (a request) from `trunk`, when it is a valid INVITE.
pub fn facts_of(text: &[u8], trunk: &Trunk) -> Option<CallFacts> {
    let e = env();
    let msg = Message::parse(text).ok()?;
    let req = Request::from_message(msg, true).ok()?;
    Some(extract(&req, trunk, &e.plan, &e.emergency))
}

/// A few fixed calls: a US caller to a toll-free number, a German caller, a withheld caller,
/// 911, and a caller with a national-format From to a short code.
pub fn sample_facts() -> &'static [CallFacts] {
    static FACTS: OnceLock<Vec<CallFacts>> = OnceLock::new();
    FACTS.get_or_init(|| {
        let e = env();
        let calls = [
            invite(
                "sip:+18885550101@tg.example;user=phone",
                "<sip:+12125550001@c.example;user=phone>;tag=1",
                "<sip:+18885550101@tg.example;user=phone>",
                "P-Asserted-Identity: <sip:+12015550001@c.example;user=phone>\r\n",
            ),
            invite(
                "sip:+18005550100@tg.example;user=phone",
                "<sip:+4930123456@c.example;user=phone>;tag=1",
                "<sip:+18005550100@tg.example>",
                "",
            ),
            invite(
                "sip:+18775550102@tg.example;user=phone",
                "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1",
                "<sip:+18775550102@tg.example>",
                "Privacy: id\r\n",
            ),
            invite(
                "sip:911@tg.example;user=phone",
                "<sip:+12125550002@c.example;user=phone>;tag=1",
                "<sip:911@tg.example>",
                "",
            ),
            invite(
                "tel:611",
                "<tel:2125550003;phone-context=+1>;tag=1",
                "<tel:611>",
                "",
            ),
        ];
        let mut out = Vec::new();
        for (i, text) in calls.iter().enumerate() {
            let trunk = if i % 2 == 0 { &e.trusted } else { &e.untrusted };
            out.push(facts_of(text.as_bytes(), trunk).expect("sample calls are valid"));
        }
        out
    })
}

pub const SOURCE: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    5060,
);

/// The 302 (or rejection) the engine writes for `decision` about `facts`, answering `req`.
pub fn respond(req: &Message<'_>, decision: &Decision, facts: &CallFacts) -> Vec<u8> {
    let (code, reason, lines) = response::decision(decision, facts, "c0ffee-1");
    Copied::new(req, SOURCE).response(code, reason, Some("tg1"), &lines)
}

/// A route decision to a fixed queue, with a failed verification whose reason is `why` (which
/// the 302 echoes in X-Identity) when given.
pub fn route_decision(facts: &mut CallFacts, why: Option<&str>) -> Decision {
    if let Some(why) = why {
        facts.risk = Some(RiskAssessment {
            verification: Verification::Failed(why.to_owned()),
            ..RiskAssessment::default()
        });
    }
    Decision {
        action: DecisionAction::Route(Target::new("support", "acd.example.net")),
        rule: "fuzz/rule".into(),
        version: "v1".into(),
    }
}

/// The names of the lines a 302 adds after the copied headers, in order.
pub fn route_lines(facts: &CallFacts) -> Vec<&'static str> {
    let mut names = vec![
        "Contact",
        "X-Call-Ref",
        "X-ANI",
        "X-ANI-Source",
        "X-DNIS",
        "X-Rule",
        "X-Rules-Version",
    ];
    if let Some(r) = &facts.risk {
        if r.verification != Verification::Absent {
            names.push("X-Identity");
        }
    }
    names
}

/// `out` must be exactly one SIP response with status `code`: framed as one whole message of
/// its full length, every line `name: value` with no CR, LF, NUL or other control byte, no
/// folded line, the headers copied from `req` (Via, From, To, Call-ID, CSeq, as many as `req`
/// has of From, To, Call-ID and CSeq), then `extra` lines whose names must be `extra_names`
/// (`None`: any names not owned by the writer), then Server and Content-Length: 0.
pub fn check_response(out: &[u8], code: u16, req: &Message<'_>, extra_names: Option<&[&str]>) {
    let shown = || String::from_utf8_lossy(out).into_owned();
    assert_eq!(
        frame(out),
        Frame::Message {
            skip: 0,
            len: out.len(),
            missing_length: false
        },
        "not one whole message: {:?}",
        shown()
    );
    let text = std::str::from_utf8(out).expect("responses are UTF-8");
    let head = text
        .strip_suffix("\r\n\r\n")
        .expect("ends with the empty line");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    assert!(
        status.starts_with(&format!("SIP/2.0 {code} ")),
        "status line {status:?}"
    );
    let mut names = Vec::new();
    for line in head.split("\r\n") {
        assert!(
            !line.bytes().any(|b| b < 0x20 || b == 0x7f),
            "control byte in {line:?} of {:?}",
            shown()
        );
        assert!(
            !line.is_empty(),
            "empty line inside the head: {:?}",
            shown()
        );
        assert!(
            !line.starts_with([' ', '\t']),
            "folded line {line:?}: {:?}",
            shown()
        );
    }
    for line in lines {
        let (name, _) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not name: value: {line:?} in {:?}", shown()));
        names.push(name);
    }
    let parsed = Message::parse(out).expect("the response parses");
    assert!(
        matches!(parsed.start, StartLine::Response { code: c, .. } if c == code),
        "{:?}",
        parsed.start
    );
    assert!(parsed.body.is_empty());
    assert_eq!(parsed.headers.len(), names.len(), "{:?}", shown());

    let copied = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ];
    let n_copied = names
        .iter()
        .take_while(|n| copied.contains(&HeaderName::from_name(n)))
        .count();
    for kind in &copied[1..] {
        let want = req.headers.iter().filter(|h| h.name == *kind).count();
        let got = names
            .get(..n_copied)
            .unwrap_or_default()
            .iter()
            .filter(|n| HeaderName::from_name(n) == *kind)
            .count();
        assert_eq!(got, want, "{kind:?} lines: {:?}", shown());
    }
    let rest = names.get(n_copied..).unwrap_or_default();
    assert!(rest.len() >= 2, "{:?}", shown());
    let (extra, tail) = rest.split_at(rest.len() - 2);
    assert_eq!(tail, ["Server", "Content-Length"], "{:?}", shown());
    match extra_names {
        Some(want) => assert_eq!(extra, want, "{:?}", shown()),
        None => {
            for n in extra {
                let kind = HeaderName::from_name(n);
                assert!(
                    !copied.contains(&kind)
                        && !matches!(
                            kind,
                            HeaderName::Contact
                                | HeaderName::ContentLength
                                | HeaderName::ContentType
                                | HeaderName::ContentEncoding
                        )
                        && !n.eq_ignore_ascii_case("server"),
                    "owned header {n:?} added: {:?}",
                    shown()
                );
            }
        }
    }
}
