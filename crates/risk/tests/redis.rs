//! The Redis stores against a real redis-server that each test starts on its own port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{e164, facts, key_slot, obs, Monitor, RedisServer};
use tollgate_core::{RiskLevel, E164};
use tollgate_risk::velocity::{keys_for, Caps};
use tollgate_risk::{
    Caller, ListAdmin, ListKind, ListStore, MemoryVelocity, Observation, PolicyConfig,
    RedisListStore, RedisVelocity, ResponseConfig, RiskConfig, RiskEngine, Secret, StoreKind,
    Trust, VelocityStore,
};

const T0: u64 = 1_700_000_000;
const ANI: &str = "12125551212";
const DNIS: &str = "18005550100";

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + s)
}

fn redis_cfg(server: &RedisServer) -> RiskConfig {
    let mut c = RiskConfig {
        store: StoreKind::Redis,
        ..RiskConfig::default()
    };
    c.redis.url = Some(Secret::new(server.url()));
    c.redis.response_timeout_ms = 80;
    c.redis.deadline_ms = 100;
    c.redis.breaker_ms = 300;
    c
}

fn velocity(server: &RedisServer, deadline: Duration) -> RedisVelocity {
    let cfg = redis_cfg(server);
    RedisVelocity::new(
        tollgate_risk::redis_connect(&cfg.redis).unwrap(),
        "tg",
        vec![60, 3600, 86_400],
        Caps::default(),
        deadline,
        Duration::from_millis(300),
    )
}

#[tokio::test]
async fn counts_per_window_match_the_memory_store_and_call_ids_count_once() {
    let server = RedisServer::start();
    let redis = velocity(&server, Duration::from_millis(500));
    let mem = MemoryVelocity::new(vec![60, 3600, 86_400], Caps::default(), 1000, 10_000);
    let a = e164(ANI);
    let b = e164("12125550000");
    let uk = e164("442072601815");
    let calls: &[(&str, &E164, Option<&str>, u64)] = &[
        ("c1", &a, Some(DNIS), 0),
        ("c2", &a, Some(DNIS), 30),
        ("c2", &a, Some(DNIS), 31), // the carrier retried c2: counts once
        ("c3", &a, Some("18885550101"), 100),
        ("c4", &b, Some(DNIS), 100),
        ("c5", &uk, None, 100),
        ("c6", &a, Some(DNIS), 160), // c3 is exactly 60 s old: out of the 1m window
        ("c7", &a, Some(DNIS), 4000),
        ("c8", &a, Some(DNIS), 86_400 + 31), // c1, c2 left the day window
    ];
    let mut last = None;
    for &(call, ani, dnis, t) in calls {
        let o = obs(call, ani, dnis, t);
        let r = redis.record(o).await.unwrap();
        assert_eq!(
            r,
            mem.record_now(o),
            "redis and memory disagree at {call} t={t}"
        );
        last = Some(r.clone());
        if call == "c6" {
            assert_eq!(r.ani, vec![1, 4, 4]);
            assert_eq!(r.ani_dnis, Some(vec![1, 3, 3]));
            assert_eq!(
                r.npa_nxx,
                Some(vec![1, 2, 2]),
                "callers a and b, five calls"
            );
        }
    }
    let last = last.unwrap();
    assert_eq!(last.ani, vec![1, 1, 4]);
    assert_eq!(last.ani_dnis, Some(vec![1, 1, 3]));
    // The retried c2 is one member, with its first arrival time.
    let mut c = server.conn();
    let key = keys_for("tg", &obs("x", &a, None, 0))[0].clone();
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(&key)
        .arg("c2")
        .query(&mut c)
        .unwrap();
    assert_eq!(score, None, "c2 left the day window and was trimmed");
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut c).unwrap();
    assert!(ttl > 86_400_000 && ttl <= 86_460_000, "expiry set: {ttl}");
}

#[tokio::test]
async fn one_round_trip_per_call_all_windows_and_dimensions() {
    let server = RedisServer::start();
    let v = velocity(&server, Duration::from_millis(500));
    let a = e164(ANI);
    v.record(obs("warm-up", &a, Some(DNIS), 0)).await.unwrap();
    let evalsha_before = server.calls("evalsha");
    let mon = Monitor::start(server.port);
    let r = v.record(obs("measured", &a, Some(DNIS), 1)).await.unwrap();
    let lines = mon.lines(Duration::from_millis(300));
    assert_eq!(r.ani, vec![2, 2, 2]);
    let from_client: Vec<&String> = lines.iter().filter(|l| !l.contains("lua]")).collect();
    assert_eq!(from_client.len(), 1, "one command on the wire: {lines:#?}");
    assert!(
        from_client[0].to_lowercase().contains("\"evalsha\""),
        "{}",
        from_client[0]
    );
    assert!(from_client[0].contains(v.script_sha()));
    // Inside the script: ZADD, ZREMRANGEBYSCORE, ZCARD, 2 ZCOUNT (the day's count is the
    // set's size), PEXPIRE for each of 3 keys, then one GET of the caller's history.
    let in_script = lines.iter().filter(|l| l.contains("lua]")).count();
    assert_eq!(in_script, 3 * 6 + 1, "{lines:#?}");
    assert_eq!(server.calls("evalsha") - evalsha_before, 1);
}

#[tokio::test]
async fn only_the_dimensions_with_thresholds_cost_redis_work() {
    // Kamailio's reference work: calls per ANI over one minute, nothing else.
    let server = RedisServer::start();
    let cfg = redis_cfg(&server);
    let caps = Caps {
        ani: 11,
        ani_dnis: 0,
        npa_nxx: 0,
    };
    let v = RedisVelocity::new(
        tollgate_risk::redis_connect(&cfg.redis).unwrap(),
        "tg",
        vec![60],
        caps,
        Duration::from_millis(500),
        Duration::from_millis(300),
    )
    .with_history_ttl(0);
    let a = e164(ANI);
    v.record(obs("warm-up", &a, Some(DNIS), 0)).await.unwrap();
    let mon = Monitor::start(server.port);
    let r = v.record(obs("measured", &a, Some(DNIS), 1)).await.unwrap();
    let again = v.record(obs("measured", &a, Some(DNIS), 2)).await.unwrap();
    let late = v.record(obs("late", &a, Some(DNIS), 61)).await.unwrap();
    let lines = mon.lines(Duration::from_millis(300));
    assert_eq!(
        (r.ani.clone(), r.ani_dnis, r.npa_nxx, r.history),
        (vec![2], None, None, None)
    );
    assert_eq!(again.ani, vec![2], "the same Call-ID counts once");
    assert_eq!(
        late.ani,
        vec![1],
        "warm-up (t=0) and `measured` (t=1) have left the minute"
    );
    let in_script: Vec<&String> = lines.iter().filter(|l| l.contains("lua]")).collect();
    // ZADD, ZREMRANGEBYSCORE, ZCARD, PEXPIRE on the ANI's set, for each of the three calls.
    assert_eq!(in_script.len(), 3 * 4, "{lines:#?}");
    assert!(
        in_script
            .iter()
            .all(|l| l.contains(":a:") && !l.contains("ZCOUNT")),
        "{in_script:#?}"
    );
}

#[tokio::test]
async fn the_last_routed_queue_comes_back_with_the_next_calls_counts() {
    let server = RedisServer::start_cluster();
    let v = velocity(&server, Duration::from_millis(500)).with_history_ttl(3600);
    let a = e164(ANI);
    let first = v.record(obs("h1", &a, Some(DNIS), 0)).await.unwrap();
    assert_eq!(first.history, None);
    let o = obs("h1", &a, Some(DNIS), 0);
    let caller = Caller {
        ani: a.clone(),
        npa_nxx: o.npa_nxx,
        trust: Trust::Verified,
    };
    v.remember(&caller, "support", at(10)).await.unwrap();
    let second = v.record(obs("h2", &a, Some(DNIS), 20)).await.unwrap();
    let h = second.history.unwrap();
    assert_eq!(h.last_queue, "support");
    assert_eq!(h.last_seen, i64::try_from(T0 + 10).unwrap());
    assert_eq!(second.ani, vec![2, 2, 2], "counting unchanged");
    // One slot with the counters (the cluster would refuse the script otherwise), with a TTL.
    let key = tollgate_risk::velocity::history_key("tg", ANI, o.npa_nxx, Trust::Verified);
    assert_eq!(key_slot(&key), key_slot(&keys_for("tg", &o)[0]));
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query(&mut server.conn())
        .unwrap();
    assert!(ttl > 3500 && ttl <= 3600, "{ttl}");
    // Another caller has none; TTL 0 turns remembering off.
    let b = e164("12125550000");
    assert_eq!(
        v.record(obs("h3", &b, None, 30)).await.unwrap().history,
        None
    );
    let off = velocity(&server, Duration::from_millis(500)).with_history_ttl(0);
    let b_caller = Caller {
        ani: b.clone(),
        npa_nxx: None,
        trust: Trust::Verified,
    };
    off.remember(&b_caller, "sales", at(40)).await.unwrap();
    assert_eq!(
        v.record(obs("h4", &b, None, 50)).await.unwrap().history,
        None
    );
}

#[tokio::test]
async fn a_calls_keys_share_one_cluster_slot() {
    let server = RedisServer::start_cluster();
    let v = velocity(&server, Duration::from_millis(500));
    let mut c = server.conn();
    for ani in [ANI, "16135550123", "442072601815"] {
        let n = e164(ani);
        let o = obs("c1", &n, Some(DNIS), 0);
        let keys = keys_for("tg", &o);
        let slots: Vec<u16> = keys
            .iter()
            .map(|k| {
                let s: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(k)
                    .query(&mut c)
                    .unwrap();
                assert_eq!(s, key_slot(k), "CRC16 agrees with CLUSTER KEYSLOT for {k}");
                s
            })
            .collect();
        assert!(slots.windows(2).all(|w| w[0] == w[1]), "{keys:?} {slots:?}");
        // The cluster node refuses cross-slot scripts, so this succeeding is the proof.
        let r = v.record(o).await.unwrap();
        assert_eq!(r.ani, vec![1, 1, 1]);
        // The dry run's script and an untrusted call's keys: the same slot.
        assert_eq!(v.peek(o).await.unwrap(), r);
        let spoofed = Observation {
            trust: Trust::Untrusted,
            ..o
        };
        assert!(keys_for("tg", &spoofed)
            .iter()
            .all(|k| key_slot(k) == slots[0] && k.contains(":u:")));
        assert_eq!(v.record(spoofed).await.unwrap().ani, vec![1, 1, 1]);
        assert_eq!(v.peek(spoofed).await.unwrap().ani, vec![1, 1, 1]);
    }
    // Negative control: the same node rejects a script whose keys span two slots.
    let err = redis::cmd("EVAL")
        .arg("return 1")
        .arg(2)
        .arg("tg:{a}:x")
        .arg("tg:{b}:x")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot),
        "{err}"
    );
    // The lists' MULTI (three hashes and the version) is one slot too.
    let cfg = redis_cfg(&server);
    let store = RedisListStore::new(
        tollgate_risk::redis_connect(&cfg.redis).unwrap(),
        "tg",
        Duration::from_secs(2),
    );
    let admin = ListAdmin::new(Arc::new(store.clone()));
    admin
        .add(ListKind::Block, "1212555*", "test", "ops", None, at(0))
        .await
        .unwrap();
    let (version, entries) = store.load().await.unwrap();
    assert_eq!((version, entries.len()), (1, 1));
    let tags: Vec<u16> = ListKind::ALL
        .iter()
        .map(|&l| key_slot(&store.list_key(l)))
        .chain([key_slot(&store.version_key())])
        .collect();
    assert!(tags.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_within_the_deadline_and_counting_resumes() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = redis_cfg(&server);
    let engine = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    let ok = engine.assess(&facts("up-1", ANI, DNIS), at(0)).await;
    assert!(!ok.degraded, "{ok:?}");

    server.kill();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let start = Instant::now();
        let a = engine
            .assess(&facts(&format!("down-{i}"), ANI, DNIS), at(1))
            .await;
        slowest = slowest.max(start.elapsed());
        assert!(a.degraded, "{a:?}");
        assert!(a.reject.is_none());
        let s = a
            .signals
            .iter()
            .find(|s| s.name == "redis-unavailable")
            .unwrap();
        assert_eq!(s.weight, 0);
    }
    println!("Redis killed: slowest assess {slowest:?} (deadline 100 ms)");
    assert!(slowest < Duration::from_millis(600), "{slowest:?}");

    server.restart();
    let start = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let a = engine
            .assess(&facts(&format!("back-{n}"), ANI, DNIS), at(2))
            .await;
        if !a.degraded {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "Redis restarted: counting again after {:?}",
        start.elapsed()
    );
    engine
        .assess(&facts(&format!("back-{n}"), ANI, DNIS), at(3))
        .await;
    engine.assess(&facts("after", ANI, DNIS), at(3)).await;
    // The new server has an empty dataset: the recovered call, its retry (once) and one more.
    let key = keys_for("tg", &obs("x", &e164(ANI), None, 0))[0].clone();
    let card: u64 = redis::cmd("ZCARD")
        .arg(&key)
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(card, 2);
    // The restart emptied the script cache: EVALSHA got NOSCRIPT and the script was reloaded.
    assert!(server.calls("script|load") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_one_deadline_then_the_breaker_answers_at_once() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = RiskEngine::from_config(&redis_cfg(&server), dir.path())
        .await
        .unwrap();
    assert!(!engine.assess(&facts("up", ANI, DNIS), at(0)).await.degraded);
    server.pause(true);
    let start = Instant::now();
    let a = engine.assess(&facts("hung-1", ANI, DNIS), at(1)).await;
    let first = start.elapsed();
    let start = Instant::now();
    let b = engine.assess(&facts("hung-2", ANI, DNIS), at(1)).await;
    let second = start.elapsed();
    server.pause(false);
    println!("hung Redis: first call {first:?}, second {second:?}");
    assert!(a.degraded && b.degraded);
    assert!(first >= Duration::from_millis(75) && first < Duration::from_millis(600));
    assert!(second < Duration::from_millis(20), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_policy_rejects_but_never_emergency_or_allow_listed_calls() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = redis_cfg(&server);
    cfg.fail_closed = ResponseConfig {
        code: 480,
        reason: None,
        retry_after_s: 120,
    };
    cfg.policy = vec![PolicyConfig {
        name: "strict".into(),
        dnis: vec![DNIS.into()],
        fail_open: Some(false),
        ..PolicyConfig::default()
    }];
    let engine = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    engine
        .lists()
        .add(
            tollgate_risk::ListEntry::new(
                ListKind::Allow,
                "12125559999",
                "VIP",
                "ops",
                at(0),
                None,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    server.kill();

    let start = Instant::now();
    let strict = engine.evaluate(&facts("s1", ANI, DNIS), at(1)).await;
    assert!(start.elapsed() < Duration::from_millis(600));
    assert_eq!(strict.policy, "strict");
    let rej = strict.assessment.reject.clone().unwrap();
    assert_eq!(
        (rej.code, rej.reason.as_deref()),
        (480, None),
        "no reason configured: the SIP layer writes 480's standard phrase"
    );
    assert_eq!(rej.retry_after, Some(120));
    assert_eq!(rej.cause, tollgate_core::RejectCause::FailClosed);
    assert!(
        strict.assessment.degraded,
        "judged without counts: degraded, whatever the policy did"
    );
    assert!(strict
        .assessment
        .signals
        .iter()
        .any(|s| s.name == "redis-unavailable"));

    let other = engine.assess(&facts("o1", ANI, "18885550101"), at(1)).await;
    assert!(
        other.reject.is_none() && other.degraded,
        "default policy fails open"
    );

    let mut sos = facts("e1", ANI, DNIS);
    sos.emergency = true;
    let e = engine.assess(&sos, at(1)).await;
    assert!(e.reject.is_none() && e.degraded);
    assert!(e.signals.iter().any(|s| s.name == "emergency-exempt"));

    let vip = engine
        .assess(&facts("v1", "12125559999", DNIS), at(1))
        .await;
    assert!(vip.reject.is_none(), "{vip:?}");
    assert_eq!(vip.list_hits, vec!["allow"]);

    // The default fail-closed answer: 503 with Retry-After: 30 (an engine built while Redis
    // is down, which is not an error either).
    let mut cfg = redis_cfg(&server);
    cfg.fail_open = false;
    let closed = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    let a = closed.assess(&facts("c1", ANI, DNIS), at(1)).await;
    let rej = a.reject.clone().unwrap();
    assert_eq!(
        (rej.code, rej.reason.as_deref(), rej.retry_after),
        (503, None, Some(30))
    );
    assert!(a.degraded);
    let mut sos = facts("e2", ANI, DNIS);
    sos.emergency = true;
    assert!(closed.assess(&sos, at(1)).await.reject.is_none());
}

async fn wait_for(engine: &RiskEngine, n: &E164, want: usize) -> Duration {
    let start = Instant::now();
    while engine.lists().check(n, SystemTime::now()).len() != want {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the other node never saw the change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_shared_between_nodes_and_follow_prefix_and_expiry_rules() {
    let server = RedisServer::start();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = redis_cfg(&server);
    cfg.block.code = 608;
    cfg.block.complaint_url = Some("https://complaints.example/jws".into());
    let node_a = RiskEngine::from_config(&cfg, d1.path()).await.unwrap();
    let node_b = RiskEngine::from_config(&cfg, d2.path()).await.unwrap();
    let now = SystemTime::now();
    let n = e164(ANI);

    // Added on A (as the API would): live on A at once, on B after its next refresh.
    node_a
        .lists()
        .add(
            tollgate_risk::ListEntry::new(
                ListKind::Block,
                "1212555*",
                "robocalls",
                "ops",
                now,
                None,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(node_a.lists().check(&n, now).len(), 1);
    let seen = wait_for(&node_b, &n, 1).await;
    println!("node B saw node A's block entry after {seen:?}");
    assert!(seen < Duration::from_millis(2500), "{seen:?}");
    let a = node_b.assess(&facts("b1", ANI, DNIS), now).await;
    assert_eq!(a.level, RiskLevel::Blocked);
    let rej = a.reject.unwrap();
    assert_eq!(rej.code, 608);
    assert_eq!(
        rej.call_info.map(|c| c.url).as_deref(),
        Some("https://complaints.example/jws")
    );

    // The CLI path: the same store through ListAdmin, without an engine.
    let admin = ListAdmin::open(&cfg, d1.path()).unwrap();
    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    admin
        .add(ListKind::Allow, "12125551212", "VIP", "cli", None, now)
        .await
        .unwrap();
    admin
        .add(
            ListKind::Gray,
            "1212*",
            "new range",
            "cli",
            Some(secs + 3600),
            now,
        )
        .await
        .unwrap();
    wait_for(&node_b, &n, 3).await;
    let a = node_b.assess(&facts("b2", ANI, DNIS), now).await;
    assert_eq!(a.list_hits, vec!["block", "gray", "allow"]);
    assert!(a.reject.is_none(), "allow overrides block");
    assert_eq!(a.level, RiskLevel::High);
    // Expiry: the gray entry lapses, the others stay.
    let later = now + Duration::from_secs(3601);
    let hits = node_b.lists().check(&n, later);
    assert_eq!(
        hits.iter().map(|h| h.list).collect::<Vec<_>>(),
        vec![ListKind::Block, ListKind::Allow]
    );
    // Longest prefix: a neighbour in the exchange matches the prefix, not the exact entry.
    let hits = node_b.lists().check(&e164("12125550000"), now);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].entry.pattern.to_string(), "1212555*");

    assert!(admin.remove(ListKind::Block, "1212555*").await.unwrap());
    assert!(!admin.remove(ListKind::Block, "1212555*").await.unwrap());
    wait_for(&node_a, &n, 2).await;
    wait_for(&node_b, &n, 2).await;

    let csv = "block,+13105550000,fraud ring,,\nallow,1310555*,partner,alice,\n";
    let n_imported = admin
        .import_csv(csv.as_bytes(), "import", now)
        .await
        .unwrap();
    assert_eq!(n_imported, 2);
    let shown = admin.show().await.unwrap();
    assert_eq!(shown.len(), 4);
    assert_eq!(shown[0].list, ListKind::Block);
    assert_eq!(shown[0].who, "import");
}

#[tokio::test]
async fn redis_down_at_start_is_not_fatal() {
    let mut server = RedisServer::start();
    let cfg = redis_cfg(&server);
    server.kill();
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let engine = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    let a = engine.assess(&facts("c", ANI, DNIS), at(0)).await;
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert!(a.degraded);
    let names: Vec<&str> = a.signals.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"lists-unavailable") && names.contains(&"redis-unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_calls_never_move_a_verified_callers_redis_keys() {
    let server = RedisServer::start_cluster();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = redis_cfg(&server);
    cfg.redis.deadline_ms = 1000;
    cfg.redis.response_timeout_ms = 1000;
    let e = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    common::scenarios::spoofed_flood_leaves_the_verified_caller_fresh(&e, ANI).await;
    // Where the spoofed calls went: their own keys, in the victim's slot (the cluster node
    // ran every script, so one slot per script).
    let mut c = server.conn();
    let card = |key: &str| -> u64 {
        redis::cmd("ZCARD")
            .arg(key)
            .query(&mut server.conn())
            .unwrap()
    };
    assert_eq!(card("tg:{1212555}:u:a:12125551212"), 51, "capped at 51");
    assert_eq!(card("tg:{1212555}:a:12125551212"), 1, "the real call only");
    assert_eq!(
        card("tg:{1212555}:n"),
        1,
        "one verified caller in the exchange"
    );
    assert_eq!(
        card("tg:{1212555}:u:n"),
        201,
        "the spoofed victim and 200 spoofed neighbours"
    );
    let h: Option<String> = redis::cmd("GET")
        .arg("tg:{1212555}:u:h:12125551212")
        .query(&mut c)
        .unwrap();
    assert!(h.unwrap().ends_with(" spoofed-queue"));
    let h: Option<String> = redis::cmd("GET")
        .arg("tg:{1212555}:h:12125551212")
        .query(&mut c)
        .unwrap();
    assert_eq!(h, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_dry_is_the_live_verdict_without_recording_redis() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = redis_cfg(&server);
    cfg.redis.deadline_ms = 1000;
    cfg.redis.response_timeout_ms = 1000;
    let e = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    common::scenarios::dry_run_is_the_live_verdict_without_recording(&e, ANI).await;

    // The dry run's script only reads, and the dataset is the same after it.
    let dump = || {
        let mut c = server.conn();
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.sort();
        keys.iter()
            .map(|k| {
                let t: String = redis::cmd("TYPE").arg(k).query(&mut c).unwrap();
                let v: Vec<String> = if t == "zset" {
                    redis::cmd("ZRANGE")
                        .arg(k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(&mut c)
                        .unwrap()
                } else {
                    vec![redis::cmd("GET").arg(k).query(&mut c).unwrap()]
                };
                (k.clone(), v)
            })
            .collect::<Vec<_>>()
    };
    let before = dump();
    assert!(before.len() >= 4, "{before:?}");
    let mon = Monitor::start(server.port);
    let next = facts("dry-only", ANI, DNIS);
    let a = e.evaluate_dry(&next, at(30)).await;
    let b = e.evaluate_dry(&next, at(30)).await;
    let lines = mon.lines(Duration::from_millis(300));
    assert_eq!(a, b);
    assert_eq!(dump(), before, "the dry run wrote nothing");
    let in_script: Vec<&String> = lines.iter().filter(|l| l.contains("lua]")).collect();
    assert!(!in_script.is_empty(), "{lines:#?}");
    for l in &in_script {
        let cmd = l.split('"').nth(1).unwrap_or("").to_uppercase();
        assert!(
            ["ZSCORE", "ZCOUNT", "GET"].contains(&cmd.as_str()),
            "a write in the dry run: {l}"
        );
    }
    // Then the live call sees what the dry run said.
    assert_eq!(e.evaluate(&next, at(30)).await, a);
}

#[tokio::test]
async fn npa_nxx_counts_distinct_callers_in_both_stores() {
    let server = RedisServer::start();
    let redis = velocity(&server, Duration::from_millis(2000)).with_history_ttl(0);
    let mem = MemoryVelocity::new(vec![60, 3600, 86_400], Caps::default(), 100_000, 1_000_000);
    let redialer = e164(ANI);
    let mut last = (None, None);
    for i in 0..1000u64 {
        let id = format!("r-{i}");
        let o = obs(&id, &redialer, Some(DNIS), i / 20);
        let (r, m) = (redis.record(o).await.unwrap(), mem.record_now(o));
        assert_eq!(r.npa_nxx, m.npa_nxx, "call {i}");
        last = (r.npa_nxx, Some(r.ani));
    }
    assert_eq!(last.0, Some(vec![1, 1, 1]), "one redialer is one caller");
    assert_eq!(
        last.1,
        Some(vec![1000, 1000, 1000]),
        "its own calls are counted as calls"
    );
    // 200 distinct callers of 646-555 (the redialer's exchange is another one).
    let mut counts = None;
    for i in 0..200u64 {
        let n = e164(&format!("1646555{i:04}"));
        let id = format!("d-{i}");
        let o = obs(&id, &n, Some(DNIS), 100);
        let (r, m) = (redis.record(o).await.unwrap(), mem.record_now(o));
        assert_eq!(r.npa_nxx, m.npa_nxx, "caller {i}");
        counts = r.npa_nxx;
    }
    assert_eq!(
        counts,
        Some(vec![200, 200, 200]),
        "exact: a sorted set, not an estimate"
    );
    // Each calls again: still 200 callers; the peek agrees with the next record.
    for i in 0..200u64 {
        let n = e164(&format!("1646555{i:04}"));
        let id = format!("d2-{i}");
        let o = obs(&id, &n, Some(DNIS), 130);
        let peeked = redis.peek(o).await.unwrap();
        assert_eq!(peeked, mem.peek_now(o));
        let r = redis.record(o).await.unwrap();
        assert_eq!(peeked, r, "caller {i}");
        assert_eq!(r, mem.record_now(o));
        counts = r.npa_nxx;
    }
    assert_eq!(counts, Some(vec![200, 200, 200]));
    let n = e164("16465559999");
    let o = obs("new", &n, None, 131);
    assert_eq!(
        redis.peek(o).await.unwrap().npa_nxx,
        Some(vec![201, 201, 201])
    );
    assert_eq!(mem.peek_now(o).npa_nxx, Some(vec![201, 201, 201]));
    // One member per caller.
    let card: u64 = redis::cmd("ZCARD")
        .arg("tg:{1646555}:n")
        .query(&mut server.conn())
        .unwrap();
    assert_eq!(card, 200);
}

/// A Redis that is one node of a several-node Redis Cluster is refused at start (this client
/// would get MOVED for the other nodes' keys); a one-node cluster owning every slot, a plain
/// Redis, and a Redis that is down are not.
#[tokio::test]
async fn a_multi_node_redis_cluster_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let single = RedisServer::start_cluster();
    assert!(RiskEngine::from_config(&redis_cfg(&single), dir.path())
        .await
        .is_ok());
    let other = RedisServer::start_cluster();
    let mut c = single.conn();
    let _: () = redis::cmd("CLUSTER")
        .arg("MEET")
        .arg("127.0.0.1")
        .arg(other.port)
        .query(&mut c)
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).unwrap();
        if info.contains("cluster_known_nodes:2") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = RiskEngine::from_config(&redis_cfg(&single), dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("risk.redis.url") && err.contains("Redis Cluster"),
        "{err}"
    );
    let plain = RedisServer::start();
    assert!(RiskEngine::from_config(&redis_cfg(&plain), dir.path())
        .await
        .is_ok());
    drop(plain);
    let mut down = redis_cfg(&single);
    down.redis.url = Some(Secret::new("redis://127.0.0.1:9/".to_owned()));
    assert!(RiskEngine::from_config(&down, dir.path()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_comes_back_empty_keeps_the_last_lists_until_written_again() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = redis_cfg(&server);
    cfg.list_refresh_ms = 100;
    let engine = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    let admin = ListAdmin::open(&cfg, dir.path()).unwrap();
    let now = SystemTime::now();
    let n = e164(ANI);
    admin
        .add(ListKind::Block, "1212555*", "robocalls", "ops", None, now)
        .await
        .unwrap();
    wait_for(&engine, &n, 1).await;
    assert!(!engine.lists().is_holding_emptied_store());

    // 1. FLUSHALL: the store has no entries and no version any more.
    let _: () = redis::cmd("FLUSHALL").query(&mut server.conn()).unwrap();
    let start = Instant::now();
    while !engine.lists().is_holding_emptied_store() {
        assert!(start.elapsed() < Duration::from_secs(5), "never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several refreshes (and more) later the blocked number is still blocked.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(engine.lists().check(&n, now).len(), 1);
    let a = engine.assess(&facts("e1", ANI, DNIS), now).await;
    assert_eq!(
        a.level,
        RiskLevel::Blocked,
        "a flushed Redis unblocked the number"
    );

    // The operator restores the lists: that write ends the hold, and the store is live again.
    let csv = "block,1212555*,robocalls,ops,\nblock,13105550000,fraud,ops,\n";
    admin.import_csv(csv.as_bytes(), "ops", now).await.unwrap();
    wait_for(&engine, &e164("13105550000"), 1).await;
    assert!(!engine.lists().is_holding_emptied_store());
    assert_eq!(engine.lists().snapshot().len(ListKind::Block), 2);

    // 2. A restart without persistence (this server runs with --save "" --appendonly no).
    server.kill();
    server.restart();
    let start = Instant::now();
    while !engine.lists().is_holding_emptied_store() {
        assert!(start.elapsed() < Duration::from_secs(10), "never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(engine.lists().snapshot().len(ListKind::Block), 2);
    assert_eq!(engine.lists().check(&n, now).len(), 1);

    // An operator who means the lists to be empty confirms with any write: here a removal
    // (by a new CLI run: the old connection died with the server).
    let admin = ListAdmin::open(&cfg, dir.path()).unwrap();
    assert!(!admin.remove(ListKind::Block, "1212555*").await.unwrap());
    wait_for(&engine, &n, 0).await;
    assert!(!engine.lists().is_holding_emptied_store());
    // And emptying the lists by removal is not mistaken for lost data.
    admin
        .add(ListKind::Gray, "1646*", "range", "ops", None, now)
        .await
        .unwrap();
    wait_for(&engine, &e164("16465550000"), 1).await;
    assert!(admin.remove(ListKind::Gray, "1646*").await.unwrap());
    wait_for(&engine, &e164("16465550000"), 0).await;
    assert!(!engine.lists().is_holding_emptied_store());
}
