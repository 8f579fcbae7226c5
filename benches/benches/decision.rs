//! The in-process decision path for the calls the sipp comparison sends: parse + validate +
//! extract + number intelligence (classification, geography, CLI rules) + route, with the parity configuration (`benches/sipp/parity.toml`).
//!
//! Target: under 20 µs median per call. `decide_async` adds what the server wraps
//! around routing (the pipeline's `CallHandler::decide`: span, enrich deadline with the
//! no-op risk and CRM seams, metrics) on a current-thread runtime.
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_bench::{sipp_invite, CALLS};
use tollgate_core::DecisionAction;
use tollgate_sip::extract::extract;
use tollgate_sip::message::{Message, Request};
use tollgate_sip::{Call, CallHandler};

#[path = "common/parity.rs"]
mod common_parity;
use common_parity::{parity, Parity};

const SOURCE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5061);

fn decision(c: &mut Criterion) {
    let Parity {
        plan,
        loaded,
        trunk,
        pipeline,
    } = parity();
    let emergency = loaded.emergency.clone();
    let invites: Vec<String> = CALLS
        .iter()
        .enumerate()
        .map(|(n, call)| sipp_invite(call, n + 1))
        .collect();

    let decide = |bytes: &[u8]| {
        let msg = Message::parse(bytes).expect("split");
        let req = Request::from_message(msg, true).expect("valid");
        let mut facts = extract(&req, &trunk, &plan, &emergency);
        pipeline.decide_now(&mut facts)
    };

    // Check once, outside the timing, that the mix routes the way Kamailio's config does.
    let queues: Vec<String> = invites
        .iter()
        .map(|m| match decide(m.as_bytes()).action {
            DecisionAction::Route(t) => t.queue.into(),
            DecisionAction::Reject { code, .. } => format!("reject {code}"),
        })
        .collect();
    assert_eq!(queues.first().map(String::as_str), Some("support"));
    assert!(queues.iter().any(|q| q == "sales-de"), "{queues:?}");
    assert!(queues.iter().any(|q| q == "general"), "{queues:?}");

    let mut g = c.benchmark_group("decision_path");
    let mut mix = invites.iter().cycle();
    g.bench_function("parse_extract_route", |b| {
        b.iter(|| {
            let m = mix.next().expect("endless");
            decide(black_box(m.as_bytes()))
        });
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut mix = invites.iter().cycle();
    g.bench_function("parse_extract_decide_async", |b| {
        b.iter(|| {
            let m = mix.next().expect("endless");
            let msg = Message::parse(black_box(m.as_bytes())).expect("split");
            let req = Request::from_message(msg, true).expect("valid");
            let mut call = Call {
                facts: extract(&req, &trunk, &plan, &emergency),
                call_ref: String::from("bench"),
                source: SOURCE,
                received: Instant::now(),
            };
            rt.block_on(pipeline.decide(&mut call))
        });
    });
    g.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
