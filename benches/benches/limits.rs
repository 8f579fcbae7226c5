//! The call-rate limits' check (`tollgate_server::limits::Limits::check`), what every call
//! pays before enrichment: nothing configured; a trunk and the node (two GCRA buckets, one
//! atomic word each) passing and refusing; and a per-source limit with 10,000 addresses
//! tracked (one mutex and a SipHash lookup more). Time comes from governor's fake clock,
//! moved 1 ms a call so the passing cases keep passing whatever the speed of the loop.
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::FakeRelativeClock;
use tollgate_server::limits::{Charge, Limits, LimitsConfig, OverLimit, Rate, TrunkLimits};

fn config(trunk: Rate, per_source: Option<Rate>, node: Rate) -> LimitsConfig {
    let mut trunks = HashMap::new();
    trunks.insert(
        "carrier".to_owned(),
        TrunkLimits {
            trunk: Some(trunk),
            over_limit: OverLimit::Reject(503),
            per_source,
            over_limit_per_source: OverLimit::Reject(503),
        },
    );
    LimitsConfig {
        node: Some(node),
        trunks,
        retry_after: 5,
    }
}

fn limits(c: &mut Criterion) {
    let fast = Rate::new(100_000.0, Some(1000));
    let ip = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
    let mut g = c.benchmark_group("limits");

    let none = Limits::with_clock(&LimitsConfig::default(), &FakeRelativeClock::default());
    g.bench_function("none_configured", |b| {
        b.iter(|| black_box(none.check("carrier", Some(ip(1)), false, Charge::Live, false)))
    });

    let clock = FakeRelativeClock::default();
    let passing = Limits::with_clock(&config(fast, None, fast), &clock);
    g.bench_function("trunk_and_node_pass", |b| {
        b.iter(|| {
            clock.advance(Duration::from_millis(1));
            let c = passing.check("carrier", Some(ip(1)), false, Charge::Live, false);
            assert!(c.limited.is_none());
            black_box(c)
        })
    });

    let slow = Rate::new(0.001, Some(1));
    let refusing = Limits::with_clock(&config(slow, None, fast), &clock);
    g.bench_function("trunk_over", |b| {
        b.iter(|| black_box(refusing.check("carrier", Some(ip(1)), false, Charge::Live, false)))
    });

    let sources = Limits::with_clock(&config(fast, Some(fast), fast), &clock);
    for n in 0..10_000 {
        sources.check("carrier", Some(ip(n)), false, Charge::Live, false);
    }
    assert_eq!(sources.sources("carrier"), 10_000);
    let mut n = 0u32;
    g.bench_function("source_trunk_node_pass_10k_sources", |b| {
        b.iter(|| {
            clock.advance(Duration::from_millis(1));
            n = (n + 7919) % 10_000;
            let c = sources.check("carrier", Some(ip(n)), false, Charge::Live, false);
            assert!(c.limited.is_none());
            black_box(c)
        })
    });

    g.bench_function("explain_dry_with_report", |b| {
        b.iter(|| black_box(sources.check("carrier", Some(ip(1)), false, Charge::Dry, true)))
    });
    g.finish();
}

criterion_group!(benches, limits);
criterion_main!(benches);
