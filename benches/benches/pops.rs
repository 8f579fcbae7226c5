//! Screen-pop fan-out: 1,000 subscribers on one queue, each doing what a stream does per pop
//! (receive, filter by queue, read the shared JSON). Throughput is deliveries (pop ×
//! subscriber) per second; pops per second reaching all 1,000 is that over 1,000.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::sync::Notify;
use tollgate_api::{Api, ApiConfig, HubConfig, NoAdmin, ScreenPop};

#[path = "../../crates/api/tests/common/pop.rs"]
mod test_pop;

const SUBSCRIBERS: u64 = 1_000;
const BATCH: u64 = 256;

/// The API tests' pop, with a call reference of its own per pop.
fn pop(n: u64) -> ScreenPop {
    test_pop::pop(&format!("{n:016x}"), "support", "Aisha Johnson")
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(Notify::new());
    let api = rt.block_on(async {
        let cfg = ApiConfig {
            hub: HubConfig {
                subscriber_buffer: 4096,
                capacity: 10_000,
                ..HubConfig::default()
            },
            ..ApiConfig::default()
        };
        let api = Api::start(cfg, Arc::new(NoAdmin), None).unwrap();
        for _ in 0..SUBSCRIBERS {
            let mut rx = api.subscribe();
            let (delivered, target, done) = (
                Arc::clone(&delivered),
                Arc::clone(&target),
                Arc::clone(&done),
            );
            tokio::spawn(async move {
                while let Ok(ev) = rx.recv().await {
                    if ev.queue == "support" && !ev.json().is_empty() {
                        let n = delivered.fetch_add(1, Ordering::AcqRel) + 1;
                        if n == target.load(Ordering::Acquire) {
                            done.notify_one();
                        }
                    }
                }
            });
        }
        api
    });
    assert_eq!(api.subscribers() as u64, SUBSCRIBERS);
    let publisher = api.publisher();
    let mut seq = 0u64;

    let mut g = c.benchmark_group("pops");
    g.throughput(Throughput::Elements(BATCH * SUBSCRIBERS));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("fanout_1000_subscribers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pops: Vec<ScreenPop> = (0..BATCH)
                    .map(|_| {
                        seq += 1;
                        pop(seq)
                    })
                    .collect();
                let want = delivered.load(Ordering::Acquire) + BATCH * SUBSCRIBERS;
                target.store(want, Ordering::Release);
                let start = Instant::now();
                rt.block_on(async {
                    for p in pops {
                        publisher.publish(p);
                    }
                    // A permit left by an earlier batch only costs one more check.
                    while delivered.load(Ordering::Acquire) < want {
                        done.notified().await;
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
