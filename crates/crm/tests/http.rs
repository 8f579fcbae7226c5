#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The HTTP adapter and the protective stack against a real HTTP server on 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::crm::{Crm, Mode};
use tollgate_core::{CallerProfile, LookupStatus, E164};
use tollgate_crm::{
    BreakerState, Directory, ErrorKind, HttpDirectory, Kind, Lookup, LookupConfig, LookupError,
};

const BERLIN: &str = "4930123456";
const NYC: &str = "12125550100";

fn ani(digits: &str) -> E164 {
    E164::from_digits(digits).unwrap()
}

/// An HTTP config for this server with the default mapping, generous limits and no breaker,
/// so each test turns on only what it proves.
fn http_config(crm: &Crm) -> LookupConfig {
    let mut cfg = LookupConfig {
        kind: Kind::Http,
        deadline_ms: 2_000,
        ..LookupConfig::default()
    };
    cfg.http.url = crm.url("/callers/{digits}");
    cfg.rate_limit.per_second = 0;
    cfg.breaker.failures = 0;
    cfg
}

fn build(cfg: &LookupConfig) -> Lookup {
    Lookup::from_config(cfg, Path::new(".")).unwrap()
}

fn simple(id: &str, name: &str) -> String {
    format!(r#"{{"customer_id": "{id}", "name": "{name}"}}"#)
}

#[tokio::test]
async fn maps_nested_paths_arrays_and_missing_fields() {
    let crm = Crm::start().await;
    crm.set_record(
        BERLIN,
        r#"{"data": {"results": [{
            "id": 1001,
            "person": {"full_name": "Jonas Weber"},
            "org": {"name": "Weber Logistik GmbH"},
            "plan": {"tier": "gold"},
            "prefs": {"lang": "de"},
            "labels": ["vip", "logistics"],
            "cases": [{"id": 1}, {"id": 2}],
            "owner": {"agents": ["agent-17", "agent-3"]},
            "segment.code": "smb",
            "region": {"name": "Berlin"},
            "seats": 40
        }]}}"#,
    );
    let mut cfg = http_config(&crm);
    cfg.http.url = crm.url("/v1/callers/{digits}?phone={e164}&nsn={national}");
    let m = &mut cfg.http.mapping;
    m.record = "data.results".into();
    m.customer_id = "id".into();
    m.name = "person.full_name".into();
    m.company = "/org/name".into();
    m.tier = "plan.tier".into();
    m.language = "prefs.lang".into();
    m.tags = "labels".into();
    m.open_cases = "cases".into();
    m.last_agent = "owner.agents[0]".into();
    m.last_queue = "routing.last.queue".into();
    m.attributes = BTreeMap::from([
        ("segment".into(), "/segment.code".into()),
        ("region".into(), "region.name".into()),
        ("seats".into(), "seats".into()),
        ("second_agent".into(), "/owner/agents/1".into()),
        ("absent".into(), "no.such.field".into()),
    ]);
    let lookup = build(&cfg);

    let (status, profile) = lookup.lookup(&ani(BERLIN)).await;
    assert_eq!(status, LookupStatus::Found);
    let expected = CallerProfile {
        customer_id: "1001".into(),
        name: Some("Jonas Weber".into()),
        company: Some("Weber Logistik GmbH".into()),
        tier: Some("gold".into()),
        language: Some("de".into()),
        tags: vec!["vip".into(), "logistics".into()],
        open_cases: Some(2),
        last_agent: Some("agent-17".into()),
        last_queue: None,
        attributes: BTreeMap::from([
            ("region".into(), "Berlin".into()),
            ("seats".into(), "40".into()),
            ("second_agent".into(), "agent-3".into()),
            ("segment".into(), "smb".into()),
        ]),
    };
    assert_eq!(profile, Some(expected));
    let seen = crm.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.target,
        "/v1/callers/4930123456?phone=%2B4930123456&nsn=30123456"
    );
    assert_eq!(seen.headers["accept"], "application/json");
}

#[tokio::test]
async fn post_body_template_carries_the_number() {
    let crm = Crm::start().await;
    crm.set_record(NYC, &simple("C-2001", "Maria Lopez"));
    let mut cfg = http_config(&crm);
    cfg.http.url = crm.url("/search");
    cfg.http.method = tollgate_crm::Method::Post;
    cfg.http.body = Some(r#"{"phone": "{e164}", "filter": {"active": true}}"#.into());
    let lookup = build(&cfg);
    let (status, profile) = lookup.lookup(&ani(NYC)).await;
    assert_eq!(status, LookupStatus::Found);
    assert_eq!(profile.unwrap().name.as_deref(), Some("Maria Lopez"));
    let seen = crm.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/search");
    assert_eq!(
        seen.body,
        r#"{"phone": "+12125550100", "filter": {"active": true}}"#
    );
    assert_eq!(seen.headers["content-type"], "application/json");
}

#[tokio::test]
async fn not_found_is_cached_for_the_negative_ttl() {
    let crm = Crm::start().await;
    let mut cfg = http_config(&crm);
    cfg.cache.negative_ttl_ms = 400;
    let lookup = build(&cfg);

    assert_eq!(
        lookup.lookup(&ani(NYC)).await,
        (LookupStatus::NotFound, None)
    );
    assert_eq!(crm.requests(), 1);
    for _ in 0..5 {
        assert_eq!(
            lookup.lookup(&ani(NYC)).await,
            (LookupStatus::NotFound, None)
        );
    }
    assert_eq!(
        crm.requests(),
        1,
        "within the negative TTL the CRM is not asked again"
    );

    // The customer is created in the CRM; after the negative TTL the next call sees them.
    crm.set_record(NYC, &simple("C-2001", "Maria Lopez"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, _) = lookup.lookup(&ani(NYC)).await;
    assert_eq!(status, LookupStatus::Found);
    assert_eq!(crm.requests(), 2);
    // Found answers live the (longer) positive TTL.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(lookup.lookup(&ani(NYC)).await.0, LookupStatus::Found);
    assert_eq!(crm.requests(), 2);
}

#[tokio::test]
async fn empty_answers_mean_not_found() {
    let crm = Crm::start().await;
    let answers = [
        ("4930000001", "null"),
        ("4930000002", "{}"),
        ("4930000003", "[]"),
        ("4930000004", r#"{"results": []}"#),
        ("4930000005", "   "),
    ];
    for (digits, body) in answers {
        crm.set_record(digits, body);
    }
    crm.set_record("4930000006", r#"{"results": [{"customer_id": "C-6"}]}"#);
    let mut cfg = http_config(&crm);
    cfg.http.mapping.record = "results".into();
    let lookup = build(&cfg);
    for (digits, body) in answers {
        assert_eq!(
            lookup.lookup(&ani(digits)).await,
            (LookupStatus::NotFound, None),
            "{body}"
        );
    }
    let (status, profile) = lookup.lookup(&ani("4930000006")).await;
    assert_eq!(status, LookupStatus::Found);
    assert_eq!(profile.unwrap().customer_id, "C-6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_lookups_make_one_request() {
    let crm = Crm::start().await;
    crm.set_record(BERLIN, &simple("C-1001", "Jonas Weber"));
    // Slow enough that every call arrives while the first request is in flight.
    crm.set_mode(Mode::Slow(Duration::from_millis(300)));
    let lookup = build(&http_config(&crm));

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let lookup = lookup.clone();
        calls.spawn(async move { lookup.lookup(&ani(BERLIN)).await });
    }
    let mut found = 0;
    while let Some(answer) = calls.join_next().await {
        let (status, profile) = answer.unwrap();
        assert_eq!(status, LookupStatus::Found);
        assert_eq!(profile.unwrap().customer_id, "C-1001");
        found += 1;
    }
    assert_eq!(found, 1000);
    assert_eq!(
        crm.requests(),
        1,
        "single-flight: one CRM request for 1,000 calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_crm_times_out_within_the_deadline_and_still_fills_the_cache() {
    let crm = Crm::start().await;
    crm.set_mode(Mode::Slow(Duration::from_millis(800)));
    let numbers: Vec<String> = (0..20).map(|i| format!("49301234{i:02}")).collect();
    for n in &numbers {
        crm.set_record(n, &simple(&format!("C-{n}"), "Slow Answer"));
    }
    let mut cfg = http_config(&crm);
    cfg.deadline_ms = 150;
    let lookup = build(&cfg);

    // 20 distinct callers and 20 more for the first one, all at once.
    let mut calls = tokio::task::JoinSet::new();
    for n in numbers.iter().chain(std::iter::repeat_n(&numbers[0], 20)) {
        let lookup = lookup.clone();
        let ani = ani(n);
        calls.spawn(async move {
            let started = Instant::now();
            let answer = lookup.lookup(&ani).await;
            (answer, started.elapsed())
        });
    }
    let bound = Duration::from_millis(150 + 100);
    while let Some(joined) = calls.join_next().await {
        let (answer, took) = joined.unwrap();
        assert_eq!(answer, (LookupStatus::Timeout, None));
        assert!(took <= bound, "a call took {took:?}, bound {bound:?}");
    }
    assert_eq!(crm.requests(), 20, "one request per distinct caller");

    // The requests went on after the calls gave up, and their answers are now cached.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let started = Instant::now();
    let (status, profile) = lookup.lookup(&ani(&numbers[3])).await;
    assert_eq!(status, LookupStatus::Found);
    assert_eq!(profile.unwrap().customer_id, format!("C-{}", numbers[3]));
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(crm.requests(), 20, "served from the cache");
}

#[tokio::test]
async fn breaker_opens_on_failures_and_closes_when_the_crm_recovers() {
    let crm = Crm::start().await;
    crm.set_record(BERLIN, &simple("C-1001", "Jonas Weber"));
    crm.set_mode(Mode::Fail(500));
    let mut cfg = http_config(&crm);
    cfg.breaker.failures = 3;
    cfg.breaker.cooldown_ms = 300;
    let lookup = build(&cfg);

    for _ in 0..3 {
        assert_eq!(
            lookup.lookup(&ani(BERLIN)).await,
            (LookupStatus::Error, None)
        );
    }
    assert_eq!(crm.requests(), 3, "errors are not cached: each call asked");
    assert_eq!(lookup.breaker_state(), Some(BreakerState::Open));
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(
            lookup.lookup(&ani(BERLIN)).await,
            (LookupStatus::BreakerOpen, None)
        );
        assert!(started.elapsed() < Duration::from_millis(50), "fails fast");
    }
    assert_eq!(
        crm.requests(),
        3,
        "an open breaker does not reach the server"
    );

    // Cooled down but still failing: one probe, and the breaker opens again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(lookup.breaker_state(), Some(BreakerState::HalfOpen));
    assert_eq!(
        lookup.lookup(&ani(BERLIN)).await,
        (LookupStatus::Error, None)
    );
    assert_eq!(crm.requests(), 4);
    assert_eq!(
        lookup.lookup(&ani(BERLIN)).await,
        (LookupStatus::BreakerOpen, None)
    );
    assert_eq!(crm.requests(), 4);

    // The CRM recovers: after the cool-down the probe succeeds and the breaker closes.
    crm.set_mode(Mode::Normal);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(lookup.lookup(&ani(BERLIN)).await.0, LookupStatus::Found);
    assert_eq!(crm.requests(), 5);
    assert_eq!(lookup.breaker_state(), Some(BreakerState::Closed));
    assert_eq!(lookup.lookup(&ani(NYC)).await.0, LookupStatus::NotFound);
    assert_eq!(crm.requests(), 6, "closed: requests flow again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_cap_is_honoured_and_over_the_cap_calls_do_not_wait() {
    let crm = Crm::start().await;
    let mut cfg = http_config(&crm);
    cfg.rate_limit.per_second = 5;
    cfg.rate_limit.burst = Some(5);
    let lookup = build(&cfg);

    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..100 {
        let lookup = lookup.clone();
        let ani = ani(&format!("1212555{i:04}"));
        calls.spawn(async move { lookup.lookup(&ani).await.0 });
    }
    let mut limited = 0;
    let mut answered = 0;
    while let Some(status) = calls.join_next().await {
        match status.unwrap() {
            LookupStatus::RateLimited => limited += 1,
            LookupStatus::NotFound => answered += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = started.elapsed();
    let requests = crm.requests();
    assert!(requests <= 5 + 5, "{requests} requests reached the CRM");
    assert_eq!(requests, answered);
    assert!(limited >= 90, "{limited} rate-limited");
    assert!(
        took < Duration::from_millis(1_000),
        "over-cap calls waited: {took:?}"
    );
}

#[tokio::test]
async fn bad_json_is_an_error_and_the_call_still_gets_an_answer() {
    let crm = Crm::start().await;
    crm.set_mode(Mode::BadJson);
    let lookup = build(&http_config(&crm));
    let started = Instant::now();
    assert_eq!(
        lookup.lookup(&ani(BERLIN)).await,
        (LookupStatus::Error, None)
    );
    assert!(started.elapsed() < Duration::from_millis(500));

    // A record that does not fit the mapping is an error too, not a half-filled profile.
    crm.set_mode(Mode::Normal);
    crm.set_record(NYC, r#"{"name": "No Id"}"#);
    crm.set_record(
        "4930000009",
        r#"{"customer_id": "C-9", "name": {"first": "X"}}"#,
    );
    assert_eq!(lookup.lookup(&ani(NYC)).await, (LookupStatus::Error, None));
    assert_eq!(
        lookup.lookup(&ani("4930000009")).await,
        (LookupStatus::Error, None)
    );
}

#[tokio::test]
async fn errors_are_classified() {
    let crm = Crm::start().await;
    let cfg = http_config(&crm);
    let dir = HttpDirectory::new(&cfg.http, Path::new("."), None).unwrap();

    crm.set_mode(Mode::Fail(503));
    let e = dir.find(&ani(BERLIN)).await.unwrap_err();
    assert_eq!(e, LookupError::Status(503));
    assert_eq!(e.status(), LookupStatus::Error);

    crm.set_mode(Mode::BadJson);
    assert_eq!(
        dir.find(&ani(BERLIN)).await.unwrap_err().kind(),
        ErrorKind::Decode
    );

    crm.set_mode(Mode::Slow(Duration::from_millis(500)));
    let mut quick = cfg.http.clone();
    quick.timeout_ms = 100;
    let impatient = HttpDirectory::new(&quick, Path::new("."), None).unwrap();
    let e = impatient.find(&ani(BERLIN)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(e.status(), LookupStatus::Timeout);

    // Nothing listens on a port that was just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let mut down = cfg.http.clone();
    down.url = format!("http://127.0.0.1:{port}/callers/{{digits}}");
    let dead = HttpDirectory::new(&down, Path::new("."), None).unwrap();
    let e = dead.find(&ani(BERLIN)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transport, "{e}");
    assert!(
        !e.to_string().contains(BERLIN),
        "the caller's number stays out of errors: {e}"
    );
}

#[tokio::test]
async fn secrets_from_env_and_file_reach_the_server_but_not_debug_output() {
    let crm = Crm::start().await;
    crm.set_record(BERLIN, &simple("C-1001", "Jonas Weber"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crm.key"), "file-secret-8d41\n").unwrap();
    std::env::set_var("TOLLGATE_TEST_CRM_TOKEN", "env-secret-77aa");
    let mut cfg = http_config(&crm);
    cfg.http.headers = BTreeMap::from([
        (
            "Authorization".into(),
            "Bearer {env:TOLLGATE_TEST_CRM_TOKEN}".into(),
        ),
        ("X-Api-Key".into(), "file:crm.key".into()),
        ("X-Tenant".into(), "literal-secret-19c2".into()),
    ]);
    let lookup = Lookup::from_config(&cfg, dir.path()).unwrap();
    assert_eq!(lookup.lookup(&ani(BERLIN)).await.0, LookupStatus::Found);

    let seen = crm.last();
    assert_eq!(seen.headers["authorization"], "Bearer env-secret-77aa");
    assert_eq!(seen.headers["x-api-key"], "file-secret-8d41");
    assert_eq!(seen.headers["x-tenant"], "literal-secret-19c2");

    let shown = format!("{lookup:?} {lookup:#?} {cfg:?} {cfg:#?}");
    assert!(
        shown.contains("X-Api-Key"),
        "header names are shown: {shown}"
    );
    for secret in ["env-secret-77aa", "file-secret-8d41", "literal-secret-19c2"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[tokio::test]
async fn missing_secret_is_a_config_error_naming_the_key() {
    let crm = Crm::start().await;
    let mut cfg = http_config(&crm);
    cfg.http.headers = BTreeMap::from([
        (
            "Authorization".into(),
            "env:TOLLGATE_TEST_UNSET_TOKEN".into(),
        ),
        ("X-Api-Key".into(), "file:/nonexistent/crm.key".into()),
    ]);
    match Lookup::from_config(&cfg, Path::new(".")) {
        Err(LookupError::Config(problems)) => {
            let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "crm.http.headers.Authorization",
                    "crm.http.headers.X-Api-Key"
                ]
            );
            assert!(problems[0].message.contains("TOLLGATE_TEST_UNSET_TOKEN"));
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn stale_answer_is_served_while_one_request_refreshes_it() {
    let crm = Crm::start().await;
    crm.set_record(BERLIN, &simple("C-1001", "Old Name"));
    let mut cfg = http_config(&crm);
    cfg.cache.ttl_ms = 200;
    cfg.cache.stale_ms = 10_000;
    let lookup = build(&cfg);
    assert_eq!(
        lookup.lookup(&ani(BERLIN)).await.1.unwrap().name.as_deref(),
        Some("Old Name")
    );
    crm.set_record(BERLIN, &simple("C-1001", "New Name"));
    crm.set_mode(Mode::Slow(Duration::from_millis(200)));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Past the TTL: the stale answer comes back at once, and only one refresh is sent.
    for _ in 0..10 {
        let started = Instant::now();
        let (status, profile) = lookup.lookup(&ani(BERLIN)).await;
        assert_eq!(status, LookupStatus::Found);
        assert_eq!(profile.unwrap().name.as_deref(), Some("Old Name"));
        assert!(started.elapsed() < Duration::from_millis(100));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(crm.requests(), 2, "one background refresh");
    let (_, profile) = lookup.lookup(&ani(BERLIN)).await;
    assert_eq!(profile.unwrap().name.as_deref(), Some("New Name"));
    assert_eq!(crm.requests(), 2);
}

#[tokio::test]
async fn invalidate_one_caller_or_all() {
    let crm = Crm::start().await;
    crm.set_record(BERLIN, &simple("C-1001", "Jonas Weber"));
    crm.set_record(NYC, &simple("C-2001", "Maria Lopez"));
    let lookup = build(&http_config(&crm));
    lookup.lookup(&ani(BERLIN)).await;
    lookup.lookup(&ani(NYC)).await;
    lookup.lookup(&ani(BERLIN)).await;
    assert_eq!(crm.requests(), 2);

    lookup.invalidate(&ani(BERLIN)).await;
    lookup.lookup(&ani(BERLIN)).await;
    lookup.lookup(&ani(NYC)).await;
    assert_eq!(
        crm.requests(),
        3,
        "only the invalidated caller is asked again"
    );

    lookup.invalidate_all();
    lookup.lookup(&ani(BERLIN)).await;
    lookup.lookup(&ani(NYC)).await;
    assert_eq!(crm.requests(), 5);
}

#[tokio::test]
async fn any_directory_can_sit_behind_the_stack() {
    let crm = Crm::start().await;
    crm.set_record(NYC, &simple("C-2001", "Maria Lopez"));
    let cfg = http_config(&crm);
    let dir: Arc<dyn Directory> =
        Arc::new(HttpDirectory::new(&cfg.http, Path::new("."), None).unwrap());
    let lookup = Lookup::with_directory(dir, &cfg);
    assert_eq!(lookup.lookup(&ani(NYC)).await.0, LookupStatus::Found);
    assert_eq!(lookup.lookup(&ani(NYC)).await.0, LookupStatus::Found);
    assert_eq!(crm.requests(), 1);
    assert_eq!(lookup.kind(), Kind::Http);
}
