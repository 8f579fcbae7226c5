//! CallFacts extraction from arbitrary header values inside a valid INVITE, from a trusted and
//! an untrusted trunk, and the 302 and rejection written from those facts.
//!
//! Input: a flags byte, then fields separated by 0xFF (never a byte of UTF-8 text):
//! 0 Request-URI user, 1 From, 2 To, 3 P-Asserted-Identity, 4 Remote-Party-ID, 5 Diversion,
//! 6 History-Info, 7 P-Called-Party-ID, 8 P-Charge-Info, 9 Identity, 10 Privacy, 11 URI
//! parameters (`;cpc=...;oli=...;verstat=...`), 12 a verification failure reason, 13 a
//! rejection's extra header line, 14 a rejection's reason phrase.
//! Flags bit 0: fields 1 to 8 are URI users, written as `<sip:USER@host;user=phone PARAMS>`
//! (bit 1: as `<tel:USER PARAMS>`); otherwise they are whole header values. CR, LF and NUL in
//! fields 0 to 11 become spaces (framing is the `parse` target's); 12 to 14 are raw.
//!
//! Checks:
//! - from the untrusted trunk: the ANI and every ANI candidate come from From, never PAI or
//!   RPID; it is never verified; no cpc, oli, verstat, charge number or Identity is taken; the
//!   DNIS and every DNIS candidate come from the Request-URI or To, never Diversion,
//!   History-Info or P-Called-Party-ID (RFC 3325 §8, `Trunk::trusted`);
//! - from either trunk: a verified ANI never comes from From; the candidates lists hold only
//!   sources of the trunk's precedence;
//! - the 302 for the facts (X-ANI, X-DNIS, X-Identity with the raw failure reason, Contact's
//!   `;ani=`) and a rejection with the raw reason and extra line are each one SIP response, every
//!   line free of CR/LF/NUL, with exactly the lines expected.
#![no_main]

#[path = "../common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use tollgate_core::{AniSource, Decision, DnisSource};
use tollgate_sip::message::{Message, Request};

fn clean(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace(['\r', '\n', '\0'], " ")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let fields: Vec<&[u8]> = rest.split(|&b| b == 0xff).collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    let text = |i: usize| clean(field(i));
    let params = text(11);
    let users = flags & 1 == 1;
    let as_value = |i: usize| {
        let v = text(i);
        if v.is_empty() {
            None
        } else if !users {
            Some(v)
        } else if flags & 2 == 2 {
            Some(format!("<tel:{v}{params}>"))
        } else {
            Some(format!("<sip:{v}@c.example;user=phone{params}>"))
        }
    };
    let ruri_user = text(0).replace([' ', '\t'], "");
    let ruri = if ruri_user.is_empty() {
        "sip:+18005550100@tg.example;user=phone".to_owned()
    } else if flags & 2 == 2 {
        format!("tel:{ruri_user}")
    } else {
        format!("sip:{ruri_user}@tg.example;user=phone")
    };
    let from = as_value(1).map_or_else(
        || "<sip:+12125550001@c.example;user=phone>;tag=1".to_owned(),
        |v| if users { format!("{v};tag=1") } else { v },
    );
    let to = as_value(2).unwrap_or_else(|| "<sip:+18005550100@tg.example>".to_owned());
    let mut extra = String::new();
    for (i, name) in [
        (3, "P-Asserted-Identity"),
        (4, "Remote-Party-ID"),
        (5, "Diversion"),
        (6, "History-Info"),
        (7, "P-Called-Party-ID"),
        (8, "P-Charge-Info"),
    ] {
        if let Some(v) = as_value(i) {
            extra.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    for (i, name) in [(9, "Identity"), (10, "Privacy")] {
        let v = text(i);
        if !v.is_empty() {
            extra.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    let invite = common::invite(&ruri, &from, &to, &extra);
    let Ok(msg) = Message::parse(invite.as_bytes()) else {
        return;
    };
    let Ok(req) = Request::from_message(msg.clone(), true) else {
        return;
    };
    let env = common::env();
    let why = String::from_utf8_lossy(field(12)).into_owned();
    for trunk in [&env.trusted, &env.untrusted] {
        let mut facts = tollgate_sip::extract::extract(&req, trunk, &env.plan, &env.emergency);
        if trunk.trusted {
            assert!(
                !(facts.ani_verified && facts.ani_source == AniSource::From),
                "{facts:?}"
            );
        } else {
            assert_eq!(facts.ani_source, AniSource::From, "{facts:?}");
            assert!(!facts.ani_verified, "{facts:?}");
            assert!(
                facts
                    .ani_candidates
                    .iter()
                    .all(|c| c.source == AniSource::From),
                "{facts:?}"
            );
            assert!(
                facts.cpc.is_none() && facts.oli.is_none() && facts.verstat.is_none(),
                "{facts:?}"
            );
            assert!(facts.charge_number.is_none(), "{facts:?}");
            assert!(facts.identity.is_empty(), "{facts:?}");
            let own = |s: DnisSource| matches!(s, DnisSource::RequestUri | DnisSource::To);
            assert!(own(facts.dnis_source), "{facts:?}");
            assert!(
                facts.dnis_candidates.iter().all(|c| own(c.source)),
                "{facts:?}"
            );
        }
        assert!(facts
            .ani_candidates
            .iter()
            .all(|c| trunk.ani_precedence.contains(&c.source)));
        assert!(facts
            .dnis_candidates
            .iter()
            .all(|c| trunk.dnis_precedence.contains(&c.source)));

        let reason = (!why.is_empty()).then_some(why.as_str());
        let decision = common::route_decision(&mut facts, reason);
        let out = common::respond(&req.msg, &decision, &facts);
        common::check_response(&out, 302, &msg, Some(&common::route_lines(&facts)));

        // A rejection with a Call-Info URL and a Retry-After from the input (typed values the
        // SIP writer escapes, as `[risk.block] complaint_url` and `[risk.fail_closed]` give).
        let reject = Decision::rejected(
            &tollgate_core::Rejection {
                code: 603,
                reason: Some(String::from_utf8_lossy(field(14)).into_owned()),
                call_info: Some(tollgate_core::CallInfo {
                    url: String::from_utf8_lossy(field(13)).into_owned(),
                }),
                retry_after: field(12).first().map(|b| u32::from(*b) * 1000),
                cause: tollgate_core::RejectCause::Blocked,
            },
            "fuzz/reject",
        );
        let out = common::respond(&req.msg, &reject, &facts);
        common::check_response(&out, 603, &msg, None);
    }
});
