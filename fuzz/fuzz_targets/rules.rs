//! The rules-file parser (`tollgate_router::parse`) never panics; rules it accepts, evaluated
//! on a few fixed calls at a few fixed times, never panic either, `explain` gives the decision
//! `route` gives, and the response written from each decision is one SIP response with the
//! lines expected (the rule name and version ride in it).
//!
//! Input: a byte choosing the file's role, then the file text. Even: the text is
//! `default.toml`, with the example `queues.toml` (config/routes); odd: it is a DNIS rule file
//! `fuzz.toml` next to the example `default.toml` and `queues.toml`.
#![no_main]

#[path = "../common.rs"]
mod common;

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use tollgate_core::DecisionAction;
use tollgate_router::{explain, parse, route, Settings, Source};
use tollgate_sip::message::Message;

const QUEUES: &str = include_str!("../../config/routes/queues.toml");
const DEFAULT: &str = include_str!("../../config/routes/default.toml");

fn times() -> [Timestamp; 3] {
    // A Tuesday noon in New York, a Sunday night, Christmas Day 2026.
    [
        "2026-12-01T17:00:00Z",
        "2026-12-06T03:00:00Z",
        "2026-12-25T15:00:00Z",
    ]
    .map(|t| t.parse().expect("fixed timestamp"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&role, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let src = |path: &str, text: &str| Source {
        path: format!("routes/{path}"),
        text: text.to_owned(),
    };
    let mut sources = vec![src("queues.toml", QUEUES)];
    if role % 2 == 0 {
        sources.push(src("default.toml", text));
    } else {
        sources.push(src("default.toml", DEFAULT));
        sources.push(src("fuzz.toml", text));
    }
    let settings = Settings {
        acd_host: "acd.example.net".into(),
        emergency_queue: (role & 2 == 2).then(|| "emergency".to_owned()),
    };
    let rules = match parse(&sources, &settings) {
        Ok(r) => r,
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(!e.file.is_empty() && !e.key.is_empty(), "{e:?}");
                let _ = e.to_string();
            }
            return;
        }
    };
    let _ = rules.rule_count();
    let invite = common::invite(
        "sip:+18005550100@tg.example;user=phone",
        "<sip:+12125550001@c.example;user=phone>;tag=1",
        "<sip:+18005550100@tg.example>",
        "",
    );
    let req = Message::parse(invite.as_bytes()).expect("fixed INVITE");
    for facts in common::sample_facts() {
        for now in times() {
            let decision = route(facts, &rules, now);
            let explained = explain(facts, &rules, now);
            assert_eq!(explained.decision, decision);
            let _ = explained.render();
            let out = common::respond(&req, &decision, facts);
            match &decision.action {
                DecisionAction::Route(_) => {
                    common::check_response(&out, 302, &req, Some(&common::route_lines(facts)))
                }
                DecisionAction::Reject { code, .. } => {
                    common::check_response(&out, *code, &req, None)
                }
            }
        }
    }
});
