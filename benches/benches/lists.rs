//! The list file store under bulk writes: `tollgate list import` of 1,000,000 and of 200,000
//! CSV lines into an empty list file (parse, check, merge by (list, pattern), encode, write,
//! fsync, rename: what the CLI does), and one `list add` against a file that already holds
//! 1,000,000 entries (what any other write costs while lists are that large).
//!
//! `cargo bench -p tollgate-bench --bench lists`
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tollgate_risk::{FileListStore, ListAdmin, ListKind};

/// `n` lines as an operator's carrier list looks: mostly exact numbers, one in 50 a prefix,
/// over the three lists.
fn csv(n: u64) -> String {
    let mut s = String::with_capacity(usize::try_from(n).unwrap_or(0) * 48);
    s.push_str("list,number_or_prefix,reason,who,expires_at\n");
    for i in 0..n {
        let list = match i % 10 {
            0..=6 => "block",
            7 | 8 => "gray",
            _ => "allow",
        };
        let number = 12_000_000_000 + i * 7;
        if i % 50 == 0 {
            let _ = writeln!(s, "{list},{}*,carrier range,import,", number / 1000);
        } else {
            let _ = writeln!(s, "{list},+{number},carrier list 2026-12,import,");
        }
    }
    s
}

fn admin(dir: &tempfile::TempDir) -> ListAdmin {
    ListAdmin::new(Arc::new(FileListStore::new(
        dir.path().join("risk-lists.json"),
    )))
}

fn lists(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let now = SystemTime::now();
    let mut g = c.benchmark_group("lists");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(20));
    for n in [1_000_000u64, 200_000] {
        let text = csv(n);
        g.bench_function(format!("import {n} into an empty file"), |b| {
            b.iter_batched(
                || tempfile::tempdir().expect("tempdir"),
                |dir| {
                    let written = rt
                        .block_on(admin(&dir).import_csv(text.as_bytes(), "bench", now))
                        .expect("import");
                    assert_eq!(written as u64, n);
                    dir
                },
                BatchSize::PerIteration,
            );
        });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let big = admin(&dir);
    rt.block_on(big.import_csv(csv(1_000_000).as_bytes(), "bench", now))
        .expect("import");
    let mut i = 0u64;
    g.bench_function("add 1 to a file of 1000000", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(big.add(
                ListKind::Block,
                &format!("1999{i:07}"),
                "bench",
                "bench",
                None,
                now,
            ))
            .expect("add")
        });
    });
    g.finish();
}

criterion_group!(benches, lists);
criterion_main!(benches);
