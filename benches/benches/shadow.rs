//! The decision path with shadow rules (issue 23): the parity mix decided as the server does
//! it (`CallHandler::decide`: span, enrichment with the no-op seams, the rules, metrics), with
//! no shadow, with a shadow of the same size that agrees on every call (the same table), and
//! with one of the same size that moves every routed call (the table's queues rotated).
//!
//! Target: the shadow costs at most +15 % of the decision path. With `--features dhat`
//! and `SHADOW_ALLOCS=1` (`SHADOW_ALLOCS=1 cargo bench -p tollgate-bench --bench shadow
//! --features dhat`) it counts the allocations per call of each case instead of timing them
//! (dhat's allocator is slow).
#![allow(clippy::expect_used, clippy::indexing_slicing)] // a benchmark stops on a broken fixture

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_bench::{sipp_invite, CALLS};
use tollgate_server::rules::{RuleSource, RuleStore};
use tollgate_server::Pipeline;
use tollgate_sip::extract::extract;
use tollgate_sip::message::{Message, Request};
use tollgate_sip::{Call, CallHandler};

#[path = "common/parity.rs"]
mod common_parity;
use common_parity::{parity, Parity};

#[cfg(feature = "dhat")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const SOURCE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5061);

fn shadow(c: &mut Criterion) {
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
    let store = || {
        Arc::new(
            RuleStore::new(
                RuleSource::Table(loaded.table.clone()),
                loaded.rule_settings.clone(),
            )
            .expect("rules"),
        )
    };
    let agree = pipeline.with_rules(store());
    agree
        .rules
        .install_shadow(tollgate_router::from_table(&loaded.table));
    let mut rotated = loaded.table.clone();
    let queues: Vec<String> = rotated.dnis.values().cloned().collect();
    for (i, q) in rotated.dnis.values_mut().enumerate() {
        *q = queues[(i + 1) % queues.len()].clone();
    }
    let moved = pipeline.with_rules(store());
    moved
        .rules
        .install_shadow(tollgate_router::from_table(&rotated));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let one = |p: &Pipeline, m: &str| {
        let msg = Message::parse(black_box(m.as_bytes())).expect("split");
        let req = Request::from_message(msg, true).expect("valid");
        let mut call = Call {
            facts: extract(&req, &trunk, &plan, &emergency),
            call_ref: String::from("bench"),
            source: SOURCE,
            received: Instant::now(),
        };
        rt.block_on(p.decide(&mut call))
    };

    let cases = [
        ("no_shadow", &pipeline),
        ("shadow_agrees", &agree),
        ("shadow_moves", &moved),
    ];
    for (_, p) in cases {
        // Warm up (metric handles, per-DNIS entries).
        for m in &invites {
            one(p, m);
        }
    }
    #[cfg(feature = "dhat")]
    if std::env::var_os("SHADOW_ALLOCS").is_some() {
        let _profiler = dhat::Profiler::builder().testing().build();
        for (name, p) in cases {
            let before = dhat::HeapStats::get().total_blocks;
            for m in &invites {
                one(p, m);
            }
            let n = dhat::HeapStats::get().total_blocks - before;
            #[allow(clippy::cast_precision_loss)]
            let per_call = n as f64 / invites.len() as f64;
            println!("allocations per call, {name}: {per_call:.2}");
        }
        return;
    }
    let seen = agree.rules.shadow_stats().summary(3);
    assert_eq!(seen["moved"], 0, "the same table agrees: {seen}");
    let seen = moved.rules.shadow_stats().summary(3);
    assert!(
        seen["moved"].as_u64() > Some(0),
        "the rotated table moves calls: {seen}"
    );

    let mut g = c.benchmark_group("shadow");
    for (name, p) in cases {
        let mut mix = invites.iter().cycle();
        g.bench_function(name, |b| {
            b.iter(|| one(p, mix.next().expect("endless")));
        });
    }
    g.finish();
}

criterion_group!(benches, shadow);
criterion_main!(benches);
