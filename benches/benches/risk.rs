//! The risk engine per call: `RiskEngine::evaluate` with the embedded stores (in-memory
//! velocity, list snapshot with 3,000 entries), its parts (list check, velocity record: the
//! flood of the evaluate case, 10,000 callers each calling every 10 s, and a million callers
//! calling back every 14 hours or so), and,
//! when `redis-server` is installed, the same call against a local Redis started here (one
//! EVALSHA round trip per call).
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_core::{CallFacts, E164};
use tollgate_risk::{
    ListEntry, ListKind, Observation, RiskConfig, RiskEngine, Secret, StoreKind, Trust,
};

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../crates/risk/tests/common/facts.rs"]
mod plain;

const DNIS: [&str; 4] = ["18005550100", "18005550101", "18665550103", "18885550102"];

/// The risk tests' plain call (trusted trunk, PAI, valid NANP ANI), for the ANI and dialed number.
fn facts(ani: u64, dnis: &str) -> CallFacts {
    plain::facts("", &ani.to_string(), dnis)
}

/// 10,000 callers over 100 exchanges, four dialed numbers.
fn callers() -> Vec<CallFacts> {
    (0..10_000u64)
        .map(|i| {
            let ani = 12_125_000_000 + (i % 100) * 10_000 + i / 100;
            facts(
                ani,
                DNIS.get(usize::try_from(i % 4).unwrap_or(0))
                    .copied()
                    .unwrap_or("18005550100"),
            )
        })
        .collect()
}

async fn fill_lists(engine: &RiskEngine) {
    let now = SystemTime::now();
    let mut entries = Vec::new();
    for i in 0..1000u64 {
        for (list, pattern) in [
            (ListKind::Block, format!("1646{:06}*", i)),
            (ListKind::Gray, format!("1305{:07}", i)),
            (ListKind::Allow, format!("4420{:07}", i)),
        ] {
            entries
                .push(ListEntry::new(list, &pattern, "bench", "bench", now, None).expect("entry"));
        }
    }
    engine.lists().import(entries).await.expect("import");
}

/// A redis-server on a free port, killed on drop.
struct LocalRedis(Child, u16);

impl LocalRedis {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let r = Self(child, port);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(5) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn risk(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = rt
        .block_on(RiskEngine::from_config(&RiskConfig::default(), dir.path()))
        .expect("engine");
    rt.block_on(fill_lists(&engine));
    let mut calls = callers();
    let mut g = c.benchmark_group("risk");

    let mut n = 0u64;
    let mut i = 0usize;
    let now = SystemTime::now();
    g.bench_function("evaluate_memory", |b| {
        b.iter(|| {
            n += 1;
            i = (i + 1) % calls.len();
            let f = calls.get_mut(i).expect("in range");
            f.call_id.clear();
            let _ = write!(f.call_id, "bench-{n}");
            // A millisecond per call, so the windows slide as they do in traffic.
            let t = now + Duration::from_millis(n);
            rt.block_on(engine.evaluate(black_box(f), t))
        });
    });

    let lists = Arc::clone(engine.lists());
    let numbers: Vec<E164> = calls.iter().filter_map(|f| f.ani.e164().cloned()).collect();
    let mut it = numbers.iter().cycle();
    g.bench_function("list_check_3000_entries", |b| {
        b.iter(|| lists.check(black_box(it.next().expect("endless")), now));
    });

    let store = Arc::clone(engine.velocity_store());
    let mut id = String::with_capacity(32);
    g.bench_function("velocity_record_memory", |b| {
        b.iter(|| {
            // The same clock as above: the store already holds evaluate_memory's calls, and
            // time running backwards would be no traffic's pattern.
            n += 1;
            let f = calls
                .get(usize::try_from(n % 10_000).unwrap_or(0))
                .expect("in range");
            id.clear();
            let _ = write!(id, "v-{n}");
            let obs = Observation {
                call_id: &id,
                ani: f.ani.e164().expect("E.164"),
                dnis: f.dnis.key(),
                npa_nxx: f.ani_info.and_then(|i| i.npa.zip(i.nxx)),
                now: now + Duration::from_millis(n),
                trust: Trust::Verified,
            };
            rt.block_on(store.record(obs))
        });
    });

    // The common case: a million distinct callers, each calling back about every 14 hours
    // (a call every 50 ms), so most keys hold one or two calls and few thresholds fire. The
    // store is the default one (1 million keys, 4 million events).
    let typical = rt
        .block_on(RiskEngine::from_config(&RiskConfig::default(), dir.path()))
        .expect("engine");
    let store = Arc::clone(typical.velocity_store());
    let million: Vec<E164> = (0..1_000_000u64)
        .map(|i| E164::from_digits(&(12_000_000_000 + i * 7919 % 10_000_000_000).to_string()))
        .collect::<Option<_>>()
        .expect("E.164");
    let mut m = 0u64;
    g.bench_function("velocity_record_memory_1m_callers", |b| {
        b.iter(|| {
            m += 1;
            let ani = million
                .get(usize::try_from(m % 1_000_000).unwrap_or(0))
                .expect("in range");
            id.clear();
            let _ = write!(id, "t-{m}");
            let d = ani.digits();
            let part = |r: std::ops::Range<usize>| d.get(r).and_then(|s| s.parse().ok());
            let obs = Observation {
                call_id: &id,
                ani,
                dnis: DNIS.get(usize::try_from(m % 4).unwrap_or(0)).copied(),
                npa_nxx: part(1..4).zip(part(4..7)),
                now: now + Duration::from_millis(50 * m),
                trust: Trust::Verified,
            };
            rt.block_on(store.record(obs))
        });
    });

    if let Some(redis) = LocalRedis::start() {
        let mut cfg = RiskConfig {
            store: StoreKind::Redis,
            ..RiskConfig::default()
        };
        cfg.redis.url = Some(Secret::new(format!("redis://127.0.0.1:{}/", redis.1)));
        cfg.redis.deadline_ms = 1000;
        cfg.redis.response_timeout_ms = 1000;
        let engine = rt
            .block_on(RiskEngine::from_config(&cfg, dir.path()))
            .expect("engine");
        rt.block_on(fill_lists(&engine));
        let warm = rt.block_on(engine.assess(&facts(12_125_550_000, "18005550100"), now));
        assert!(!warm.degraded, "local redis answers: {warm:?}");
        g.bench_function("evaluate_redis_local", |b| {
            b.iter(|| {
                n += 1;
                i = (i + 1) % calls.len();
                let f = calls.get_mut(i).expect("in range");
                f.call_id.clear();
                let _ = write!(f.call_id, "bench-{n}");
                let a = rt.block_on(engine.evaluate(black_box(f), now + Duration::from_millis(n)));
                debug_assert!(!a.assessment.degraded);
                a
            });
        });
    } else {
        eprintln!("redis-server not found: skipping evaluate_redis_local");
    }
    g.finish();
}

criterion_group!(benches, risk);
criterion_main!(benches);
