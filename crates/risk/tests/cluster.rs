//! The Redis stores on a real Redis Cluster: 3 masters and 3 replicas started by the test
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`). Velocity,
//! caller history, the lists and their refresh between nodes, every script's keys in one slot
//! as the cluster itself computes it, and a master killed mid-run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
#[path = "../../../tests/support/redis_cluster.rs"]
mod redis_cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::scenarios;
use common::{e164, facts, obs};
use redis_cluster::RedisCluster;
use tollgate_core::E164;
use tollgate_risk::velocity::{history_key, keys_for, Caps};
use tollgate_risk::{
    Caller, ListAdmin, ListKind, ListStore, MemoryVelocity, RedisListStore, RedisVelocity,
    RiskConfig, RiskEngine, Secret, StoreKind, Trust, VelocityStore,
};

const T0: u64 = 1_700_000_000;
const DNIS: &str = "18005550100";

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + s)
}

fn cluster_cfg(c: &RedisCluster) -> RiskConfig {
    let mut cfg = RiskConfig {
        store: StoreKind::Redis,
        ..RiskConfig::default()
    };
    cfg.redis.url_env = None;
    cfg.redis.cluster = c.seeds().into_iter().map(Secret::new).collect();
    cfg.redis.response_timeout_ms = 200;
    cfg.redis.connection_timeout_ms = 200;
    cfg.redis.deadline_ms = 300;
    cfg.redis.breaker_ms = 200;
    cfg.list_refresh_ms = 100;
    cfg
}

fn velocity(c: &RedisCluster) -> RedisVelocity {
    let cfg = cluster_cfg(c);
    RedisVelocity::new(
        tollgate_risk::redis_connect(&cfg.redis).unwrap(),
        "tg",
        vec![60, 3600, 86_400],
        Caps::default(),
        Duration::from_secs(2),
        Duration::from_millis(200),
    )
    .with_history_ttl(3600)
}

/// Callers from many exchanges and countries, so their hash tags land on every master.
fn callers() -> Vec<E164> {
    let mut v: Vec<E164> = (0..40)
        .map(|i| e164(&format!("1212{:03}{:04}", 200 + i * 7, 1000 + i)))
        .collect();
    v.extend(
        ["442072601815", "4930123456", "33142685300", "61293744000"]
            .iter()
            .map(|n| e164(n)),
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velocity_and_history_on_three_masters_agree_with_the_memory_store() {
    let cluster = RedisCluster::start();
    let v = velocity(&cluster);
    let mem = MemoryVelocity::new(vec![60, 3600, 86_400], Caps::default(), 10_000, 100_000)
        .with_history_ttl(3600, 10_000);
    let mut masters_used = BTreeSet::new();
    let mut recorded = 0usize;
    for (i, ani) in callers().iter().enumerate() {
        for (j, t) in [0u64, 30, 61, 4000].iter().enumerate() {
            let call = format!("c{i}-{j}");
            let o = obs(&call, ani, Some(DNIS), *t);
            // Every key the script gets, history included, is in one slot, as the cluster
            // itself computes slots (CLUSTER KEYSLOT), not as our code does.
            let mut keys = keys_for("tg", &o);
            keys.push(history_key("tg", ani.digits(), o.npa_nxx, Trust::Verified));
            let slots: BTreeSet<u16> = keys.iter().map(|k| cluster.keyslot(k)).collect();
            assert_eq!(slots.len(), 1, "{keys:?} span slots {slots:?}");
            let slot = *slots.iter().next().unwrap();
            masters_used.insert(cluster.master_of_slot(slot).unwrap());
            let r = v.record(o).await.unwrap();
            let m = mem.record_now(o);
            assert_eq!(r.ani, m.ani, "{call}");
            assert_eq!(r.ani_dnis, m.ani_dnis, "{call}");
            assert_eq!(r.npa_nxx, m.npa_nxx, "{call}");
            assert_eq!(v.peek(o).await.unwrap().ani, r.ani, "dry run of {call}");
            recorded += 1;
        }
        let o = obs("h", ani, None, 4001);
        let caller = Caller {
            ani: ani.clone(),
            npa_nxx: o.npa_nxx,
            trust: Trust::Verified,
        };
        v.remember(&caller, "support", at(4001)).await.unwrap();
        let next = v.record(obs("after-h", ani, None, 4002)).await.unwrap();
        assert_eq!(next.history.unwrap().last_queue, "support");
    }
    assert_eq!(
        masters_used.len(),
        3,
        "the callers' keys are spread over every master: {masters_used:?}"
    );
    // The keys are where the cluster put them: on each master, only its own slots.
    let per_master: BTreeMap<u16, usize> = cluster
        .masters()
        .into_iter()
        .map(|(p, ranges)| {
            let keys: Vec<String> = redis_cluster::cli(p, &["--scan", "--pattern", "tg:*:a:*"])
                .lines()
                .map(str::to_owned)
                .collect();
            for k in &keys {
                let s = cluster.keyslot(k);
                assert!(ranges.iter().any(|(a, b)| (*a..=*b).contains(&s)), "{k}");
            }
            (p, keys.len())
        })
        .collect();
    assert_eq!(per_master.values().sum::<usize>(), callers().len());
    println!("{recorded} calls recorded; per-ANI keys per master: {per_master:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_refresh_between_nodes_and_the_spoofing_scenario_holds_on_a_cluster() {
    let cluster = RedisCluster::start();
    let cfg = cluster_cfg(&cluster);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = RiskEngine::from_config(&cfg, d1.path()).await.unwrap();
    let node_b = RiskEngine::from_config(&cfg, d2.path()).await.unwrap();
    let now = SystemTime::now();
    let n = e164("12125551212");
    // The CLI path (ListAdmin over the cluster), then node B's refresh.
    let admin = ListAdmin::open(&cfg, d1.path()).unwrap();
    admin
        .add(ListKind::Block, "1212555*", "robocalls", "cli", None, now)
        .await
        .unwrap();
    let start = Instant::now();
    while node_b.lists().check(&n, SystemTime::now()).len() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "node B never saw it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "node B saw the CLI's block entry after {:?}",
        start.elapsed()
    );
    let a = node_b.assess(&facts("b1", "12125551212", DNIS), now).await;
    assert!(a.reject.is_some(), "{a:?}");
    // The list keys and the version share the `{lists}` slot (the MULTI needs it).
    let store = RedisListStore::new(
        tollgate_risk::redis_connect(&cfg.redis).unwrap(),
        "tg",
        Duration::from_secs(2),
    );
    let slots: BTreeSet<u16> = ListKind::ALL
        .iter()
        .map(|&l| cluster.keyslot(&store.list_key(l)))
        .chain([cluster.keyslot(&store.version_key())])
        .collect();
    assert_eq!(slots.len(), 1);
    assert_eq!(store.load().await.unwrap().1.len(), 1);
    // Issue 16's attack, on the cluster: untrusted calls never move a verified caller.
    scenarios::spoofed_flood_leaves_the_verified_caller_fresh(&node_a, "16135550123").await;
}

/// A master killed mid-run: calls fail open (never rejected, never late past the deadline),
/// a replica is promoted, and counting resumes on it. Reports the observations lost: those
/// made while the slot had no master, and those the dead master had acknowledged but not yet
/// replicated. Every call is a new caller of one exchange, so all share one slot and the
/// exchange's distinct-caller set counts them all (its cap, 10,001, is far away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_run_fails_open_and_counting_resumes_on_the_promoted_replica() {
    let mut cluster = RedisCluster::start();
    let cfg = cluster_cfg(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let engine = RiskEngine::from_config(&cfg, dir.path()).await.unwrap();
    let ani = |n: u64| format!("1212555{n:04}");
    let exchange = keys_for("tg", &obs("x", &e164(&ani(0)), None, 0))
        .pop()
        .unwrap();
    assert!(exchange.ends_with(":n"), "{exchange}");
    let slot = cluster.keyslot(&exchange);
    let old = cluster.master_of_slot(slot).unwrap();
    let mut n = 0u64;
    let mut degraded = 0u64;
    let mut slowest = Duration::ZERO;
    let call = |n: u64| facts(&format!("k{n}"), &ani(n), DNIS);
    let now = SystemTime::now();
    for _ in 0..50 {
        n += 1;
        let a = engine.assess(&call(n), now).await;
        assert!(!a.degraded, "{a:?}");
    }
    cluster.kill(old);
    let killed = Instant::now();
    let mut resumed = None;
    while resumed.is_none() {
        n += 1;
        let start = Instant::now();
        let a = engine.assess(&call(n), SystemTime::now()).await;
        slowest = slowest.max(start.elapsed());
        if a.degraded {
            degraded += 1;
            assert!(a.reject.is_none(), "fail open: {a:?}");
        } else if killed.elapsed() > Duration::from_millis(500) {
            resumed = Some(killed.elapsed());
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "counting never resumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resumed = resumed.unwrap();
    let new = cluster.wait_failover(slot, old);
    for _ in 0..20 {
        n += 1;
        let a = engine.assess(&call(n), SystemTime::now()).await;
        assert!(!a.degraded, "{a:?}");
    }
    let kept: u64 = cluster
        .on_key(&exchange, &["ZCARD", &exchange])
        .trim()
        .parse()
        .unwrap();
    let lost = n - kept;
    println!(
        "master {old} killed: replica {new} serves the slot; counting resumed after {resumed:?}; \
         {degraded} calls failed open meanwhile (slowest {slowest:?}); {n} calls, {kept} counted, \
         {lost} observations lost"
    );
    assert!(
        lost >= degraded,
        "every call that failed open is lost: {lost} < {degraded}"
    );
    assert!(kept > 20, "the calls after the failover count: {kept}");
    assert!(
        slowest < Duration::from_secs(2),
        "a call waited {slowest:?}, far past its deadline"
    );
}
