//! Screen pops end to end: INVITEs over UDP to a whole engine, pops on SSE and WebSocket
//! filtered by queue, tokens, the pop by the 302's call reference, a signed and retried
//! webhook, admin endpoints, metrics, and two `tollgate serve` processes sharing one Redis.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod http_support;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;

use http_support::*;
use std::time::{Duration, Instant};

/// A US caller to a number no service line lists routes to `general` (config/routes/default.toml);
/// a German one to `general-de`.
const DNIS: &str = "+18005550199";
const US: &str = "+12125550123";
const DE: &str = "+4930123456";

#[tokio::test]
async fn a_routed_call_pops_on_its_queue_streams_webhook_and_by_reference() {
    let (hook_url, mut hook) = receiver(vec![500, 500]).await;
    let extra = format!(
        "node = \"node-e2e\"\nwebhook_backoff_ms = 20\n\n[[http.webhook]]\nname = \"crm\"\nurl = \"{hook_url}\"\nqueues = [\"general\"]\nsecret = \"whsec-e2e\"\n"
    );
    let engine = Engine::start(&config(&extra)).await;
    let b = engine.base();
    let mut sse = Sse::subscribe(&format!("{b}/v1/pops/stream?queue=general"), AGENT_GENERAL).await;
    let mut ws = ws(
        &format!("ws://{}/v1/pops/ws?queue=general", engine.http),
        AGENT_GENERAL,
    )
    .await;
    let mut other = Sse::subscribe(&format!("{b}/v1/pops/stream"), AGENT_DE).await;

    let r = call(engine.udp, DNIS, US, "pop-us-1").await;
    let call_ref = contact_ref(&r);
    assert!(r.contains("<sip:general@acd.example.net;"), "{r}");

    let pop = sse.pop().await;
    assert_eq!(pop["call_ref"], call_ref.as_str());
    assert_eq!(pop["queue"], "general");
    assert_eq!(pop["ani"], US);
    assert_eq!(pop["ani_source"], "pai");
    assert_eq!(pop["dnis"], DNIS);
    assert_eq!(pop["node"], "node-e2e");
    assert_eq!(pop["geo"]["region"], "US");
    assert_eq!(pop["presented"]["display_name"], "Caller");
    assert_eq!(pop["rule"], "default/everyone");
    let m = ws_next(&mut ws).await;
    assert_eq!(m["type"], "pop");
    assert_eq!(m["pop"]["call_ref"], call_ref.as_str());

    // The webhook: signed, answered 500 twice, delivered on the third try. Only general calls.
    for attempt in 1..=3 {
        let (h, body) = tokio::time::timeout(WAIT, hook.recv())
            .await
            .expect("webhook request")
            .unwrap();
        assert_eq!(h["x-tollgate-call-ref"], call_ref.as_str());
        assert_eq!(h["x-tollgate-attempt"], attempt.to_string().as_str());
        verify_signature("whsec-e2e", &h, &body);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["call_ref"], call_ref.as_str());
    }
    // The general-de desk never saw the general call: its first pop is the German caller's.
    let r2 = call(engine.udp, DNIS, DE, "pop-de-1").await;
    let de_ref = contact_ref(&r2);
    let de = other.pop().await;
    assert_eq!(de["call_ref"], de_ref.as_str());
    assert_eq!(de["queue"], "general-de");
    // ...and the general desk's next pop will not be it: publish another general call.
    let r3 = call(engine.udp, DNIS, US, "pop-us-2").await;
    assert_eq!(sse.pop().await["call_ref"], contact_ref(&r3).as_str());
    assert_eq!(
        ws_next(&mut ws).await["pop"]["call_ref"],
        contact_ref(&r3).as_str()
    );

    // The pop by the call reference from the 302's Contact.
    let c = http();
    let (s, p) = json(
        c.get(format!("{b}/v1/pops/{call_ref}"))
            .bearer_auth(AGENT_GENERAL),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p["call_ref"], call_ref.as_str());
    assert_eq!(p["ani"], US);
    // Tokens: none or unknown → 401; a desk for another queue or the wrong scope → 403.
    let (s, e) = json(c.get(format!("{b}/v1/pops/{call_ref}"))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, _) = json(
        c.get(format!("{b}/v1/pops/{call_ref}"))
            .bearer_auth("wrong-token-wrong-token"),
    )
    .await;
    assert_eq!(s, 401);
    let (s, e) = json(
        c.get(format!("{b}/v1/pops/{call_ref}"))
            .bearer_auth(AGENT_DE),
    )
    .await;
    // Another queue's pop answers as an unknown one would: nothing says that it exists.
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = json(
        c.get(format!("{b}/v1/pops/stream?queue=general"))
            .bearer_auth(AGENT_DE),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = json(
        c.post(format!("{b}/v1/admin/rules/reload"))
            .bearer_auth(AGENT_GENERAL),
    )
    .await;
    assert_eq!(s, 403);
    match tokio_tungstenite::connect_async(format!("ws://{}/v1/pops/ws", engine.http)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("a WebSocket without a token must get 401, got {other:?}"),
    }

    // The next webhook request is the third call's: the general-de call is not for this hook.
    let (h, _) = tokio::time::timeout(WAIT, hook.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        h["x-tollgate-call-ref"],
        contact_ref(&r3).as_str(),
        "the general-de call is not sent to a general-only hook"
    );

    // Admin: reload, explain, config with secrets redacted.
    let (s, v) = json(
        c.post(format!("{b}/v1/admin/rules/reload"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["version"].is_string());
    let (s, v) = json(
        c.post(format!("{b}/v1/admin/explain"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(serde_json::json!({"ani": DE, "dnis": DNIS}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["decision"].as_str().unwrap().contains("general-de"),
        "{v}"
    );
    let (s, v) = json(c.get(format!("{b}/v1/admin/config")).bearer_auth(ADMIN)).await;
    assert_eq!(s, 200);
    let shown = v.to_string();
    for secret in [AGENT_GENERAL, AGENT_DE, ADMIN, "whsec-e2e"] {
        assert!(!shown.contains(secret), "config view shows a secret");
    }
    assert_eq!(v["http"]["token"][0]["name"], "general-agent");

    // Metrics: calls by outcome and the pop counters, in Prometheus text.
    let text = c
        .get(format!("{b}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Labelled by trunk and status (configured names and codes: few series).
    assert!(
        text.lines().any(|l| l.starts_with("tollgate_calls_total{")
            && l.contains("outcome=\"302\"")
            && l.contains("status=\"302\"")
            && l.contains("trunk=\"")),
        "{text}"
    );
    assert!(text.contains("tollgate_pops_published_total"), "{text}");
    assert!(text.contains("tollgate_decision_seconds_bucket"), "{text}");
    for stage in ["numbers", "enrich", "route"] {
        assert!(
            text.contains(&format!("tollgate_stage_seconds_bucket{{stage=\"{stage}\"")),
            "{text}"
        );
    }

    engine.stop().await;
}

#[tokio::test]
async fn a_call_through_node_a_reaches_a_desktop_stream_on_node_b() {
    let redis = RedisServer::start();
    let node = |name: &str| {
        config(&format!(
            "node = \"{name}\"\nredis_url = \"{}\"\n",
            redis.url()
        ))
    };
    let a = Process::start(&node("node-a"));
    let b = Process::start(&node("node-b"));
    // Node B is ready once its Redis subscription is up.
    ready(&b.base()).await;
    ready(&a.base()).await;
    let mut desk_b = Sse::subscribe(
        &format!("{}/v1/pops/stream?queue=general", b.base()),
        AGENT_GENERAL,
    )
    .await;
    let mut ws_b = ws(
        &format!("ws://{}/v1/pops/ws?queue=general", b.http),
        AGENT_GENERAL,
    )
    .await;
    let r = call(a.udp, DNIS, US, "two-nodes-1").await;
    let call_ref = contact_ref(&r);
    let pop = desk_b.pop().await;
    assert_eq!(pop["call_ref"], call_ref.as_str());
    assert_eq!(pop["node"], "node-a");
    assert_eq!(
        ws_next(&mut ws_b).await["pop"]["call_ref"],
        call_ref.as_str()
    );
    // Node B keeps it too: fetchable by reference there.
    let (s, p) = json(
        http()
            .get(format!("{}/v1/pops/{call_ref}", b.base()))
            .bearer_auth(AGENT_GENERAL),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(p["ani"], US);
}

#[tokio::test]
async fn admin_manages_lists_and_the_crm_cache() {
    let dir = tempfile::tempdir().unwrap();
    let directory =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/directory.csv");
    let text = format!(
        "{}\n[crm]\nkind = \"file\"\n[crm.file]\npath = \"{}\"\n\n[risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\n",
        config(""),
        directory.display()
    );
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, &text).unwrap();
    let engine = Engine::start_file(&path).await;
    let b = engine.base();
    let c = http();
    let post = |url: String, body: serde_json::Value| {
        c.post(url)
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body.to_string())
    };

    let (s, v) = json(post(
        format!("{b}/v1/admin/lists/gray"),
        serde_json::json!({"pattern": "+1646555*", "reason": "test"}),
    ))
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["who"], "ops", "who defaults to the admin token's name");
    let (s, v) = json(
        c.get(format!("{b}/v1/admin/lists?list=gray"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["entries"][0]["list"], "gray");
    assert_eq!(v["entries"][0]["reason"], "test");
    let (s, _) = json(
        c.delete(format!("{b}/v1/admin/lists/gray/%2B1646555*"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = json(c.get(format!("{b}/v1/admin/lists")).bearer_auth(ADMIN)).await;
    assert_eq!((s, v["entries"].as_array().map(Vec::len)), (200, Some(0)));
    let (s, e) = json(post(
        format!("{b}/v1/admin/lists/purple"),
        serde_json::json!({"pattern": "+1646555*"}),
    ))
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("bad_request")));

    let (s, v) = json(post(
        format!("{b}/v1/admin/crm/invalidate"),
        serde_json::json!({"number": "+13125550147"}),
    ))
    .await;
    assert_eq!((s, v["invalidated"].as_str()), (200, Some("+13125550147")));
    let (s, _) = json(
        c.post(format!("{b}/v1/admin/crm/invalidate"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(s, 200);
    engine.stop().await;

    // Without [risk] and [crm] the same endpoints say so with a JSON 501.
    let bare = Engine::start(&config("")).await;
    let (s, e) = json(
        c.get(format!("{}/v1/admin/lists", bare.base()))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (501, Some("not_implemented"))
    );
    bare.stop().await;
}

/// Two nodes on a real Redis Cluster (3 masters, 3 replicas): velocity and lists in the
/// cluster, pops on a shard channel. A call through node A pops on node B's desktop; then the
/// master owning the channel's slot is killed: every call is still answered, and once a
/// replica has taken over, node B's subscription is back (the client subscribes again by
/// itself) and pops flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pops_and_risk_on_a_redis_cluster_survive_a_master_failover() {
    let mut cluster = redis_cluster::RedisCluster::start();
    let seeds = cluster.seeds_toml();
    let node = |name: &str| {
        format!(
            "{}\n[risk]\nstore = \"redis\"\n[risk.redis]\ncluster = {seeds}\n",
            config(&format!("node = \"{name}\"\nredis_cluster = {seeds}\n"))
        )
    };
    let a = Process::start(&node("node-a"));
    let b = Process::start(&node("node-b"));
    ready(&b.base()).await;
    ready(&a.base()).await;
    let mut desk_b = Sse::subscribe(
        &format!("{}/v1/pops/stream?queue=general", b.base()),
        AGENT_GENERAL,
    )
    .await;
    let r = call(a.udp, DNIS, US, "cluster-1").await;
    assert!(r.starts_with("SIP/2.0 302"), "{r}");
    let pop = desk_b.pop().await;
    assert_eq!(pop["call_ref"], contact_ref(&r).as_str());
    assert_eq!(pop["node"], "node-a");
    // The call was counted in the cluster, under its caller's hash tag.
    assert_eq!(cluster.keys("tg:*:a:*").len(), 1, "{:?}", cluster.keys("*"));

    let slot = cluster.keyslot("tollgate:pops");
    let old = cluster.master_of_slot(slot).unwrap();
    cluster.kill(old);
    let killed = Instant::now();
    let mut n = 1;
    let delivered = loop {
        n += 1;
        // A new caller each time: velocity (now in the cluster) would block one caller's flood.
        let ani = format!("+1212555{n:04}");
        let r = call(a.udp, DNIS, &ani, &format!("cluster-{n}")).await;
        assert!(
            r.starts_with("SIP/2.0 302"),
            "every call answered during the failover: {r}"
        );
        let want = contact_ref(&r);
        let got = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let p = desk_b.pop().await;
                if p["call_ref"] == want.as_str() {
                    return;
                }
            }
        })
        .await;
        if got.is_ok() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "pops never reached node B again after the failover"
        );
    };
    let new = cluster.wait_failover(slot, old);
    println!(
        "channel master {old} killed; replica {new} took over; node B got pops again after \
         {delivered:?}; {n} calls, all answered"
    );
}
