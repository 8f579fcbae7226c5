//! sipp drives a node whose CRM is down (an HTTP CRM on a closed port) with the risk engine on:
//! every call answered, none waiting on the CRM past the breaker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod node;

use std::fmt::Write as _;

use common::{sipp, SippRun};
use node::{base_config, Scratch};
use tollgate_core::LookupStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_with_the_crm_down_answers_every_call() {
    // A port nothing listens on: every CRM request is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Scratch::new();
    let text = format!(
        "{}[crm]\nkind = \"http\"\ndeadline_ms = 100\n[crm.http]\nurl = \"http://127.0.0.1:{port}/callers/{{digits}}\"\n\
         [crm.http.mapping]\ncustomer_id = \"id\"\n\
         [risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\n",
        base_config(false)
    );
    let node = s.start(&text).await;
    const CALLS: usize = 300;
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..CALLS {
        writeln!(csv, "1212555{:04};18005550100;{:07}", i % 50, i).unwrap();
    }
    std::fs::write(s.path("calls.csv"), csv).unwrap();
    let (target, dir) = (node.udp.to_string(), s.dir.path().to_owned());
    let out = tokio::task::spawn_blocking(move || sipp(&target, &dir, CALLS, 150, 300, "60s"))
        .await
        .unwrap();
    assert_eq!(out.failed, 0, "failed calls; stderr: {}", out.stderr);
    assert_eq!(out.successful, CALLS);
    assert!(out.exit_ok, "sipp failed: {}", out.stderr);
    let calls = node.calls();
    assert_eq!(calls.len(), CALLS);
    assert_eq!(node.runs(), CALLS, "each call decided once");
    assert!(calls.iter().all(|(f, d)| matches!(
        f.lookup,
        LookupStatus::Error | LookupStatus::BreakerOpen | LookupStatus::Timeout
    ) && d.queue().is_some()
        && f.risk.is_some()));
    eprintln!("slowest decision with the CRM down: {:?}", node.slowest());
    let open = calls
        .iter()
        .filter(|(f, _)| f.lookup == LookupStatus::BreakerOpen)
        .count();
    assert!(
        open > 0,
        "the breaker opened and calls stopped asking the CRM"
    );
}

#[path = "support/redis_cluster.rs"]
mod redis_cluster;
#[path = "../crates/risk/tests/common/mod.rs"]
mod redis_support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_every_call_answered_and_counting_resumes() {
    let mut redis = redis_support::RedisServer::start();
    let s = Scratch::new();
    let text = format!(
        "{}[risk]\nstore = \"redis\"\n[risk.redis]\nurl = \"{}\"\nkey_prefix = \"tgk\"\n",
        base_config(false),
        redis.url()
    );
    let node = s.start(&text).await;
    const CALLS: usize = 600;
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..CALLS {
        writeln!(csv, "1312555{:04};18005550100;{:07}", i % 100, i).unwrap();
    }
    std::fs::write(s.path("calls.csv"), csv).unwrap();
    let (target, dir) = (node.udp.to_string(), s.dir.path().to_owned());
    let run = tokio::task::spawn_blocking(move || sipp(&target, &dir, CALLS, 100, 300, "120s"));
    let wait_for = |n: usize| {
        let node = &node;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while node.calls().len() < n {
                assert!(std::time::Instant::now() < deadline, "sipp stalled");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(150).await;
    redis.kill();
    let killed_at = node.calls().len();
    wait_for(350).await;
    redis.restart();
    let restarted_at = node.calls().len();
    let SippRun {
        failed,
        successful: ok,
        stderr,
        ..
    } = run.await.unwrap();
    assert_eq!(failed, 0, "failed calls; {stderr}");
    assert_eq!(ok, CALLS);
    let calls = node.calls();
    assert_eq!(calls.len(), CALLS);
    let degraded = |range: std::ops::Range<usize>| {
        calls[range]
            .iter()
            .filter(|(f, _)| f.risk.as_ref().unwrap().degraded)
            .count()
    };
    assert_eq!(
        degraded(0..killed_at.saturating_sub(5)),
        0,
        "Redis up: counted"
    );
    assert!(
        degraded(killed_at + 5..restarted_at) > 0,
        "Redis down: calls routed with the fail-open flag"
    );
    assert_eq!(
        degraded(CALLS - 20..CALLS),
        0,
        "Redis back: counting resumed without a restart"
    );
    assert!(calls.iter().all(|(_, d)| d.queue().is_some()));
    // The risk deadline is 120 ms (inside the 150 ms enrich deadline); a wide margin for CI.
    let slowest = node.slowest();
    assert!(
        slowest < std::time::Duration::from_millis(1000),
        "slowest decision {slowest:?}"
    );
    eprintln!("slowest decision with Redis killed mid-run: {slowest:?}");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tgk:*")
        .query(&mut redis.conn())
        .unwrap();
    assert!(!keys.is_empty(), "counters written after the restart");
}

/// sipp through a node whose risk store is a real Redis Cluster (3 masters, 3 replicas); the
/// master owning the callers' slot is killed -9 mid-run. Every call is answered (fail open),
/// a replica takes over, counting resumes on it without a restart, and the test reports how
/// many observations were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_master_killed_mid_run_every_call_answered_and_counting_resumes() {
    let mut cluster = redis_cluster::RedisCluster::start();
    let s = Scratch::new();
    let text = format!(
        "{}[risk]\nstore = \"redis\"\n[risk.redis]\ncluster = {}\nkey_prefix = \"tgc\"\n",
        base_config(false),
        cluster.seeds_toml()
    );
    let node = s.start(&text).await;
    const CALLS: usize = 600;
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..CALLS {
        writeln!(csv, "1312555{:04};18005550100;{:07}", i % 100, i).unwrap();
    }
    std::fs::write(s.path("calls.csv"), csv).unwrap();
    // Every caller is in exchange 312-555: one hash tag, one slot, one master to kill.
    let slot = cluster.keyslot("tgc:{1312555}:n");
    let master = cluster.master_of_slot(slot).unwrap();
    let (target, dir) = (node.udp.to_string(), s.dir.path().to_owned());
    let run = tokio::task::spawn_blocking(move || sipp(&target, &dir, CALLS, 100, 300, "120s"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while node.calls().len() < 150 {
        assert!(std::time::Instant::now() < deadline, "sipp stalled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cluster.kill(master);
    let killed_at = node.calls().len();
    let promoted = cluster.wait_failover(slot, master);
    let SippRun {
        failed,
        successful: ok,
        stderr,
        ..
    } = run.await.unwrap();
    assert_eq!(failed, 0, "failed calls; {stderr}");
    assert_eq!(ok, CALLS);
    let calls = node.calls();
    assert_eq!(calls.len(), CALLS);
    assert!(calls.iter().all(|(_, d)| d.queue().is_some()));
    let degraded: Vec<usize> = (0..CALLS)
        .filter(|&i| calls[i].0.risk.as_ref().unwrap().degraded)
        .collect();
    assert!(
        degraded.iter().all(|&i| i + 5 >= killed_at),
        "counted before the kill: {degraded:?} (killed at {killed_at})"
    );
    assert!(!degraded.is_empty(), "the kill was felt");
    assert_eq!(
        degraded.iter().filter(|&&i| i >= CALLS - 20).count(),
        0,
        "counting resumed on the promoted replica"
    );
    let counted: usize = cluster
        .keys("tgc:*:a:*")
        .iter()
        .map(|k| {
            cluster
                .on_key(k, &["ZCARD", k])
                .trim()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    let window = degraded.last().unwrap() - degraded.first().unwrap() + 1;
    eprintln!(
        "Redis Cluster master {master} killed at call {killed_at}; replica {promoted} took over; \
         {} calls failed open (calls {}..={}, {window} calls at 100/s), {counted} of {CALLS} \
         observations kept, {} lost; slowest decision {:?}",
        degraded.len(),
        degraded.first().unwrap(),
        degraded.last().unwrap(),
        CALLS - counted,
        node.slowest()
    );
    assert!(
        counted <= CALLS - degraded.len(),
        "a degraded call was counted"
    );
}
