//! CRM lookups (`tollgate-crm`) on a current-thread runtime, as the per-call path pays them:
//!
//! - `cache_hit`: a caller already in the moka cache (HTTP stack). Target: under 1 µs median.
//! - `file_hit`: the embedded directory (`config/directory.csv`), the default adapter.
//! - `miss_http`: the cache entry is dropped first, so every lookup is one real HTTP/1.1
//!   request to a CRM on 127.0.0.1 (pooled keep-alive connection, JSON answer, field mapping).
//!   Client and server share the one thread, so this is the whole CPU cost of a miss plus
//!   loopback latency: what a cache hit saves.
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_core::{LookupStatus, E164};
use tollgate_crm::{Kind, Lookup, LookupConfig};

#[path = "../../crates/crm/tests/support/crm.rs"]
mod crm;

fn lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ani = E164::from_digits("4930123456").expect("number");

    let (server, http) = rt.block_on(async {
        let server = crm::Crm::start().await;
        server.set_record(
            ani.digits(),
            r#"{"data": {"id": "C-1001", "name": "Jonas Weber", "company": "Weber Logistik GmbH",
                "tier": "gold", "language": "de", "tags": ["vip", "logistics"], "cases": [1, 2],
                "last_agent": "agent-17", "last_queue": "support-de", "segment": "smb"}}"#,
        );
        let mut cfg = LookupConfig {
            kind: Kind::Http,
            ..LookupConfig::default()
        };
        cfg.http.url = server.url("/callers/{e164}");
        cfg.http.mapping.record = "data".into();
        cfg.http.mapping.customer_id = "id".into();
        cfg.http.mapping.open_cases = "cases".into();
        cfg.http
            .mapping
            .attributes
            .insert("segment".into(), "segment".into());
        // The miss benchmark sends thousands of requests a second: no cap, no breaker.
        cfg.rate_limit.per_second = 0;
        cfg.breaker.failures = 0;
        let http = Lookup::from_config(&cfg, Path::new(".")).expect("lookup");
        let (status, _) = http.lookup(&ani).await;
        assert_eq!(status, LookupStatus::Found, "the CRM answers");
        (server, http)
    });
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut file_cfg = LookupConfig::default();
    file_cfg.file.poll_ms = 0;
    let file = Lookup::from_config(&file_cfg, &config_dir).expect("config/directory.csv");

    let mut g = c.benchmark_group("lookup");
    // Timed inside one block_on so the runtime's entry cost is not counted per lookup.
    g.bench_function("cache_hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(http.lookup(black_box(&ani)).await);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("file_hit", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(file.lookup(black_box(&ani)).await);
                }
                start.elapsed()
            })
        })
    });
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    let before = server.requests();
    g.bench_function("miss_http", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    http.invalidate(&ani).await;
                    let (status, profile) = http.lookup(black_box(&ani)).await;
                    assert_eq!(status, LookupStatus::Found);
                    black_box(profile);
                }
                start.elapsed()
            })
        })
    });
    g.finish();
    assert!(server.requests() > before, "misses reached the CRM");
}

criterion_group!(benches, lookup);
criterion_main!(benches);
