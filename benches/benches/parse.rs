//! Parsing one carrier INVITE four ways in one run: Tollgate parse + validate + extract, parse +
//! validate, split only, and rsip 0.4 with the headers a redirect server needs read and typed.
//!
//! Targets: parse + extract under 1.5 µs median, at least 3x faster than rsip.
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rsip::prelude::*;
use tollgate_bench::CARRIER_INVITE;
use tollgate_core::NumberPlan;
use tollgate_sip::extract::{extract, Emergency};
use tollgate_sip::message::{Message, Request};
use tollgate_sip::trunk::Trunk;

fn trunk(plan: &NumberPlan) -> Trunk {
    Trunk {
        name: "carrier".into(),
        cidrs: Vec::new(),
        trusted: true,
        ani_precedence: Trunk::DEFAULT_ANI.to_vec(),
        dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
        region: plan.region("US").expect("US is in the plan").clone(),
        tls_peers: Vec::new(),
    }
}

/// What the rsip variant reads: the same headers Tollgate's `Request::from_message` validates,
/// typed where rsip has a typed form, plus the P-Asserted-Identity values as rsip leaves them.
#[inline(never)] // a symbol of its own, for profilers
fn rsip_parse(bytes: &[u8]) -> usize {
    let msg = rsip::SipMessage::try_from(bytes).expect("rsip parses the sample");
    let from = msg.from_header().and_then(|h| h.typed()).expect("From");
    let to = msg.to_header().and_then(|h| h.typed()).expect("To");
    let via = msg.via_header().and_then(|h| h.typed()).expect("Via");
    let cseq = msg.cseq_header().and_then(|h| h.typed()).expect("CSeq");
    let call_id = msg.call_id_header().expect("Call-ID");
    let pai = msg
        .headers()
        .iter()
        .filter_map(|h| match h {
            rsip::Header::Other(name, value)
                if name.eq_ignore_ascii_case("P-Asserted-Identity") =>
            {
                Some(value.len())
            }
            _ => None,
        })
        .sum::<usize>();
    black_box((&from, &to, &via, &cseq));
    call_id.value().len() + pai + msg.body().len()
}

fn parse(c: &mut Criterion) {
    let plan = NumberPlan::load();
    let trunk = trunk(&plan);
    let emergency = Emergency::default();
    let bytes = CARRIER_INVITE.as_bytes();

    // Check once, outside the timing, that every variant does the work it claims.
    let req = Request::from_message(Message::parse(bytes).expect("split"), true).expect("valid");
    let facts = extract(&req, &trunk, &plan, &emergency);
    assert_eq!(facts.ani.to_string(), "+12125551212");
    assert_eq!(facts.dnis.to_string(), "+18885550101");
    assert!(facts.ani_verified);
    assert!(rsip_parse(bytes) > 0);

    let mut g = c.benchmark_group("parse_invite");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("tollgate_parse_extract", |b| {
        b.iter(|| {
            let msg = Message::parse(black_box(bytes)).expect("split");
            let req = Request::from_message(msg, true).expect("valid");
            extract(&req, &trunk, &plan, &emergency)
        });
    });
    g.bench_function("tollgate_parse_validate", |b| {
        b.iter(|| Request::from_message(Message::parse(black_box(bytes)).expect("split"), true));
    });
    g.bench_function("tollgate_parse_only", |b| {
        b.iter(|| Message::parse(black_box(bytes)).expect("split"));
    });
    g.bench_function("rsip_0_4", |b| b.iter(|| rsip_parse(black_box(bytes))));
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
