//! Number intelligence: classification of a 50-country mix with one and two threads in the same
//! run (target under 1 µs median per number, two threads at least 1.6x one), phonenumber on the
//! same mix for comparison, geography lookup, and the start-up cost of building the tables.
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::hint::black_box;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_core::{Classifier, Geography, NumberPlan, E164};

/// Up to four example numbers of each kind for the first 50 regions by calling code (the first
/// region per code), with their last digit varied: valid and invalid numbers, all kinds.
fn mix() -> Vec<E164> {
    let db = &*phonenumber::metadata::DATABASE;
    let mut metas: Vec<_> = db
        .iter()
        .filter(|m| m.id() != "001" && m.is_main_country_for_code())
        .collect();
    metas.sort_by_key(|m| m.country_code());
    metas.dedup_by_key(|m| m.country_code());
    let mut out = Vec::new();
    for meta in metas.into_iter().take(50) {
        let d = meta.descriptors();
        for desc in [d.fixed_line(), d.mobile(), d.toll_free(), d.voip()]
            .into_iter()
            .flatten()
        {
            let Some(ex) = desc.example() else { continue };
            for last in ['0', '5'] {
                let mut n = format!("{}{ex}", meta.country_code());
                n.pop();
                n.push(last);
                out.extend(E164::from_digits(&n));
            }
        }
    }
    // Interleave countries so consecutive calls never share a region, as real traffic does not.
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..out.len()).rev() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        out.swap(i, usize::try_from(rng % (i as u64 + 1)).unwrap_or(0));
    }
    out
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Threads that classify the mix on request: `run` hands each of the first `counts.len()`
/// workers its count and returns the wall time until all are done.
struct Workers {
    jobs: Vec<mpsc::Sender<u64>>,
    done: mpsc::Receiver<()>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(n: usize, classifier: &Arc<Classifier>, numbers: &[E164]) -> Self {
        let (done_tx, done) = mpsc::channel();
        let mut jobs = Vec::new();
        let mut threads = Vec::new();
        for t in 0..n {
            let (tx, rx) = mpsc::channel::<u64>();
            let (classifier, numbers, done_tx) =
                (Arc::clone(classifier), numbers.to_vec(), done_tx.clone());
            threads.push(std::thread::spawn(move || {
                let mut it = numbers.iter().cycle().skip(t * 17);
                for count in rx {
                    for _ in 0..count {
                        black_box(classifier.classify(it.next().expect("cycle")));
                    }
                    if done_tx.send(()).is_err() {
                        return;
                    }
                }
            }));
            jobs.push(tx);
        }
        Self {
            jobs,
            done,
            threads,
        }
    }

    fn run(&self, counts: &[u64]) -> Duration {
        let start = Instant::now();
        for (tx, &count) in self.jobs.iter().zip(counts) {
            tx.send(count).expect("worker alive");
        }
        for _ in counts {
            self.done.recv().expect("worker alive");
        }
        start.elapsed()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.jobs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn numbers(c: &mut Criterion) {
    let before = rss_kib();
    let t = Instant::now();
    let classifier = Arc::new(Classifier::load().expect("metadata"));
    let classifier_ms = t.elapsed().as_millis();
    let mid = rss_kib();
    let t = Instant::now();
    let geography = Geography::load().expect("geo");
    let geo_ms = t.elapsed().as_millis();
    let after = rss_kib();
    let (g, tz, bytes) = geography.stats();
    let numbers = mix();
    // Warm every region's lazy DFA caches once, as serve's start-up does not need to.
    for n in &numbers {
        black_box(classifier.classify(n));
    }
    let warm = rss_kib();
    eprintln!(
        "start-up: classifier {classifier_ms} ms, +{} KiB RSS (+{} KiB after warming on the mix); \
         geography {geo_ms} ms, +{} KiB RSS ({g} geo + {tz} tz prefixes, ~{} KiB estimated); mix {} numbers",
        mid.saturating_sub(before),
        warm.saturating_sub(after),
        after.saturating_sub(mid),
        bytes / 1024,
        numbers.len()
    );

    let mut g = c.benchmark_group("classify_50_countries");
    let mut it = numbers.iter().cycle();
    g.bench_function("fast/1_thread", |b| {
        b.iter(|| classifier.classify(black_box(it.next().expect("cycle"))))
    });
    // Two long-lived threads (as the server's workers are), each classifying half of the
    // iterations: time per number across both. The one-thread figure beside it runs on one of
    // the same workers, so the two differ only in the number of threads.
    let workers = Workers::start(2, &classifier, &numbers);
    g.bench_function("fast/2_threads_per_number", |b| {
        b.iter_custom(|iters| workers.run(&[iters / 2 + 1, iters / 2 + 1]));
    });
    g.bench_function("fast/1_thread_per_number_same_harness", |b| {
        b.iter_custom(|iters| workers.run(&[iters]));
    });
    drop(workers);
    let mut it = numbers.iter().cycle();
    g.bench_function("geography_lookup", |b| {
        b.iter(|| geography.lookup(black_box(it.next().expect("cycle"))))
    });
    // What a call pays since issue 17: geography as libphonenumber's geocoder gives it
    // (classification included), and `+` E.164 text parsed as libphonenumber parses it.
    let mut it = numbers.iter().cycle();
    g.bench_function("classify_and_locate", |b| {
        b.iter(|| {
            let n = black_box(it.next().expect("cycle"));
            let info = classifier.classify(n);
            geography.locate(n, &info, &classifier)
        })
    });
    let plan = NumberPlan::load();
    let us = plan.region("US").expect("US");
    let texts: Vec<String> = numbers.iter().map(|n| format!("+{}", n.digits())).collect();
    let mut it = texts.iter().cycle();
    g.bench_function("normalize_plus_e164", |b| {
        b.iter(|| plan.normalize(black_box(it.next().expect("cycle")), us, None))
    });
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let mut it = texts.iter().cycle();
    g.bench_function("phonenumber/1_thread", |b| {
        b.iter(|| {
            let p = phonenumber::parse(None, black_box(it.next().expect("cycle"))).ok();
            p.map(|p| {
                (
                    p.is_valid(),
                    p.number_type(&phonenumber::metadata::DATABASE),
                    p.country().id(),
                )
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("startup");
    g.sample_size(10);
    g.bench_function("classifier_load", |b| {
        b.iter(|| Classifier::load().expect("metadata"))
    });
    g.bench_function("geography_load", |b| {
        b.iter(|| Geography::load().expect("geo"))
    });
    g.finish();
}

criterion_group!(benches, numbers);
criterion_main!(benches);
