//! The rule engine at size: 100 service lines of 10 rules each (1,000 rules, every kind of
//! matcher the example lines use) plus a default set.
//!
//! - `route/*`: the pure `route()` for calls already through number intelligence (the sipp
//!   mix, and a caller that tries every rule of its line before the catch-all). issue
//!   target: under 2 µs median for a typical call.
//! - `reload/*`: building a new snapshot, from texts in memory and from a directory on disk
//!   (what a file change or SIGHUP costs, off the call path).
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_bench::{sipp_invite, CALLS};
use tollgate_core::CallFacts;
use tollgate_router::{Settings, Source};
use tollgate_sip::extract::extract;
use tollgate_sip::message::{Message, Request};

#[path = "common/parity.rs"]
mod common_parity;
use common_parity::{parity, Parity};

const LINES: usize = 100;

/// Queue names the generated lines use (declared in queues.toml, as the loader demands).
fn queues() -> Vec<String> {
    let mut q: Vec<String> = ["verify-ivr", "after-hours", "general", "general-de"]
        .map(String::from)
        .to_vec();
    for i in 0..LINES {
        for s in ["", "-vip", "-de", "-uk", "-mobile", "-es", "-nj", "-repeat"] {
            q.push(format!("line{i}{s}"));
        }
    }
    q
}

/// One service line: DNIS +1800555{0100 + i}, business hours, holidays, ten rules.
fn line(i: usize) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"name = "line{i}"
dnis = ["+1800555{dnis:04}"]
time_zone = "America/New_York"
overflow = "after-hours"

[hours]
mon = "08:00-20:00"
tue = "08:00-20:00"
wed = "08:00-20:00"
thu = "08:00-20:00"
fri = "08:00-20:00"
sat = "09:00-13:00"
holidays = ["2026-12-25", "2027-01-01"]

[[rule]]
name = "blocked"
when = {{ risk = "blocked" }}
reject = {{ code = 603, reason = "Decline" }}

[[rule]]
name = "suspicious"
when = {{ any = [{{ risk_at_least = "high" }}, {{ list = "gray" }}] }}
verify = {{ name = "verify-ivr", priority = 1 }}

[[rule]]
name = "vip"
when = {{ any = [{{ tier = ["gold", "platinum"] }}, {{ list = "allow" }}] }}
queue = {{ name = "line{i}-vip", priority = 9, skills = ["vip"] }}
hours = "ignore"

[[rule]]
name = "called-back"
when = {{ repeat_within = "1h", last_queue = ["line{i}"] }}
queue = {{ name = "line{i}-repeat", priority = 5 }}

[[rule]]
name = "german"
when = {{ calling_code = 49, valid = true }}
queue = {{ name = "line{i}-de", language = "de" }}

[[rule]]
name = "uk"
when = {{ all = [{{ country = "GB" }}, {{ not = {{ kind = "premium" }} }}] }}
queue = "line{i}-uk"

[[rule]]
name = "nj"
when = {{ npa = [201, 551, 973] }}
queue = "line{i}-nj"

[[rule]]
name = "mobile"
when = {{ kind = "mobile", valid = true }}
queue = "line{i}-mobile"

[[rule]]
name = "spanish"
when = {{ language = "es" }}
queue = {{ name = "line{i}-es", language = "es" }}

[[rule]]
name = "everyone"
queue = "line{i}"
"#,
        dnis = 100 + i
    );
    s
}

fn sources() -> Vec<Source> {
    let mut v = vec![
        Source {
            path: "queues.toml".into(),
            text: format!("queues = {:?}\n", queues()),
        },
        Source {
            path: "default.toml".into(),
            text: "time_zone = \"America/New_York\"\n\n[[rule]]\nname = \"german\"\n\
                   when = { calling_code = 49 }\nqueue = \"general-de\"\n\n[[rule]]\n\
                   name = \"everyone\"\nqueue = \"general\"\n"
                .into(),
        },
    ];
    v.extend((0..LINES).map(|i| Source {
        path: format!("line{i:03}.toml"),
        text: line(i),
    }));
    v
}

fn settings() -> Settings {
    Settings {
        acd_host: "acd.example.net".into(),
        emergency_queue: Some("general".into()),
    }
}

fn rules(c: &mut Criterion) {
    let Parity {
        plan,
        loaded,
        trunk,
        pipeline,
    } = parity();
    let sources = sources();
    let rules = tollgate_router::parse(&sources, &settings()).expect("generated rules load");
    assert_eq!(rules.rule_count(), LINES * 10 + 2);

    // Facts as the pipeline hands them to the router: parsed, extracted, annotated.
    let facts_of = |msg: &str| -> CallFacts {
        let m = Message::parse(msg.as_bytes()).expect("split");
        let req = Request::from_message(m, true).expect("valid");
        let mut f = extract(&req, &trunk, &plan, &loaded.emergency);
        assert!(pipeline.annotate(&mut f).is_none());
        f
    };
    let mix: Vec<CallFacts> = CALLS
        .iter()
        .enumerate()
        .map(|(n, call)| facts_of(&sipp_invite(call, n + 1)))
        .collect();
    // A US landline caller to line 57: every rule of the line is tried before the catch-all.
    let mut row = CALLS[0];
    row.dnis = "18005550157";
    row.ani = "12125550123";
    let fall_through = facts_of(&sipp_invite(&row, 1));
    let monday = jiff::Timestamp::from_second(1_795_446_000).expect("valid time");
    let d = tollgate_router::route(&fall_through, &rules, monday);
    assert_eq!(d.rule, "line57/everyone", "{d:?}");
    let routed_by_lines = mix
        .iter()
        .filter(|f| {
            tollgate_router::route(f, &rules, monday)
                .rule
                .starts_with("line")
        })
        .count();
    assert!(routed_by_lines > 0, "the mix reaches the generated lines");

    let mut g = c.benchmark_group("rules_100_lines_1000_rules");
    let mut it = mix.iter().cycle();
    g.bench_function("route/sipp_mix", |b| {
        b.iter(|| tollgate_router::route(black_box(it.next().expect("cycle")), &rules, monday))
    });
    g.bench_function("route/all_ten_rules_tried", |b| {
        b.iter(|| tollgate_router::route(black_box(&fall_through), &rules, monday))
    });
    g.bench_function("explain/all_ten_rules_tried", |b| {
        b.iter(|| tollgate_router::explain(black_box(&fall_through), &rules, monday))
    });
    g.sample_size(20);
    g.bench_function("reload/parse_from_memory", |b| {
        b.iter(|| tollgate_router::parse(black_box(&sources), &settings()).expect("loads"))
    });
    let dir = tempfile::tempdir().expect("temp dir");
    for s in &sources {
        std::fs::write(dir.path().join(&s.path), &s.text).expect("write");
    }
    g.bench_function("reload/load_dir_from_disk", |b| {
        b.iter(|| tollgate_server::rules::load_dir(dir.path(), &settings()).expect("loads"))
    });
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
