//! The API on a real listener: streams filtered by queue, tokens, pops by reference, webhooks
//! against a real local receiver, metrics, and the OpenAPI document against the router.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::*;
use tokio::sync::{mpsc, oneshot, Notify};
use tollgate_api::{
    Api, ApiConfig, NoAdmin, PrometheusHandle, Scope, Secret, Token, WebhookConfig, WebhookSettings,
};

const AGENT: &str = "agent-support-token-0001";
const BILLING: &str = "agent-billing-token-0002";
const ADMIN: &str = "admin-token-000000000003";

fn tokens() -> Vec<Token> {
    vec![
        Token {
            name: "support-agent".into(),
            secret: Secret::new(AGENT),
            scope: Scope::Agent {
                queues: vec!["support".into(), "support-de".into()],
            },
        },
        Token {
            name: "billing-agent".into(),
            secret: Secret::new(BILLING),
            scope: Scope::Agent {
                queues: vec!["billing".into()],
            },
        },
        Token {
            name: "ops".into(),
            secret: Secret::new(ADMIN),
            scope: Scope::Admin,
        },
    ]
}

fn metrics_handle() -> PrometheusHandle {
    static H: OnceLock<PrometheusHandle> = OnceLock::new();
    H.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap()
    })
    .clone()
}

struct Running {
    api: Api,
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(cfg: ApiConfig) -> Running {
    let api = Api::start(cfg, Arc::new(NoAdmin), Some(metrics_handle())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(api.clone().run(listener, async move {
        let _ = rx.await;
    }));
    Running {
        api,
        addr,
        _stop: tx,
    }
}

fn cfg() -> ApiConfig {
    ApiConfig {
        tokens: tokens(),
        ..ApiConfig::default()
    }
}

#[tokio::test]
async fn sse_and_websocket_get_their_queues_pops_only() {
    let r = start(cfg()).await;
    let b = base(r.addr);
    let mut support = Sse::open(&format!("{b}/v1/pops/stream?queue=support"), Some(AGENT))
        .await
        .unwrap();
    let mut billing = Sse::open(&format!("{b}/v1/pops/stream"), Some(BILLING))
        .await
        .unwrap();
    let mut ws = ws(&format!("ws://{}/v1/pops/ws?queue=support", r.addr), AGENT).await;
    let publisher = r.api.publisher();
    publisher.publish(pop("ref-1", "support", "Ada Lovelace"));
    publisher.publish(pop("ref-2", "billing", "Grace Hopper"));

    let got = support.pop().await;
    assert_eq!(got["call_ref"], "ref-1");
    assert_eq!(got["crm"]["profile"]["name"], "Ada Lovelace");
    let m = ws_next(&mut ws).await;
    assert_eq!(m["type"], "pop");
    assert_eq!(m["pop"]["call_ref"], "ref-1");
    // The billing stream's first pop is the billing one: it never saw ref-1.
    assert_eq!(billing.pop().await["call_ref"], "ref-2");
    publisher.publish(pop("ref-3", "support", "Alan Turing"));
    // And the support stream's next is ref-3: it never saw ref-2.
    assert_eq!(support.pop().await["call_ref"], "ref-3");
    assert_eq!(ws_next(&mut ws).await["pop"]["call_ref"], "ref-3");
}

#[tokio::test]
async fn a_reconnecting_stream_gets_what_it_missed_once() {
    let r = start(cfg()).await;
    let b = base(r.addr);
    let publisher = r.api.publisher();
    let mut first = Sse::subscribe(&format!("{b}/v1/pops/stream"), AGENT).await;
    publisher.publish(pop("seen-1", "support", "Ada Lovelace"));
    assert_eq!(first.pop().await["call_ref"], "seen-1");
    drop(first);
    // While the agent is away: two pops of theirs, one of another queue.
    publisher.publish(pop("missed-1", "support", "Grace Hopper"));
    publisher.publish(pop("other-1", "billing", "Alan Turing"));
    publisher.publish(pop("missed-2", "support-de", "Emmy Noether"));
    wait_stored(&r, "missed-2").await;

    // EventSource's own reconnect sends Last-Event-ID: the missed pops come first, in order.
    let mut again = Sse::open_with(
        &format!("{b}/v1/pops/stream"),
        Some(AGENT),
        &[("Last-Event-ID", "seen-1")],
    )
    .await
    .unwrap();
    assert_eq!(again.pop().await["call_ref"], "missed-1");
    assert_eq!(again.pop().await["call_ref"], "missed-2");
    publisher.publish(pop("live-1", "support", "Alan Kay"));
    assert_eq!(
        again.pop().await["call_ref"],
        "live-1",
        "then live, nothing twice"
    );

    // A new stream (a new ticket) names the last pop as a parameter, filtered by its queues.
    let mut de = Sse::subscribe(
        &format!("{b}/v1/pops/stream?queue=support-de&last_event_id=seen-1"),
        AGENT,
    )
    .await;
    assert_eq!(de.pop().await["call_ref"], "missed-2");

    // An id no longer stored cannot be replayed: one `lagged` event says so.
    let mut lost = Sse::open_with(
        &format!("{b}/v1/pops/stream"),
        Some(AGENT),
        &[("Last-Event-ID", "long-gone")],
    )
    .await
    .unwrap();
    let (ev, data) = lost.next().await;
    assert_eq!(ev, "lagged");
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["missed"], serde_json::Value::Null);
    assert_eq!(data["last_event_id"], "long-gone");
}

/// Waits until the hub has stored a pop (publishing is asynchronous).
async fn wait_stored(r: &Running, call_ref: &str) {
    for _ in 0..200 {
        if r.api.pop(call_ref).is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{call_ref} never stored");
}

async fn status_and_error(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let s = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn tokens_and_scopes_answer_401_and_403_as_json() {
    let r = start(cfg()).await;
    let b = base(r.addr);
    let c = http();

    let (s, e) = status_and_error(c.get(format!("{b}/v1/pops/stream")).send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert_eq!(e["error"]["code"], "unauthorized");
    let (s, e) = status_and_error(
        c.get(format!("{b}/v1/pops/x"))
            .bearer_auth("not-a-token-at-all-123")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, e) = status_and_error(
        c.get(format!("{b}/v1/pops/stream?queue=billing"))
            .bearer_auth(AGENT)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = status_and_error(
        c.get(format!("{b}/v1/admin/config"))
            .bearer_auth(AGENT)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    // Admin token on an engine without admin operations: a JSON 501.
    let (s, e) = status_and_error(
        c.post(format!("{b}/v1/admin/rules/reload"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (501, Some("not_implemented"))
    );
    // Malformed JSON body: a JSON 400.
    let (s, e) = status_and_error(
        c.post(format!("{b}/v1/admin/explain"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body("{\"ani\":")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("bad_request")));
    // Unknown path: a JSON 404.
    let (s, e) = status_and_error(c.get(format!("{b}/nope")).send().await.unwrap()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));

    // WebSocket without a token: the handshake is refused with 401.
    let err = tokio_tungstenite::connect_async(format!("ws://{}/v1/pops/ws", r.addr))
        .await
        .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        other => panic!("expected an HTTP 401, got {other:?}"),
    }

    // A ticket works once, on the stream endpoint only.
    let t: serde_json::Value = serde_json::from_str(
        &c.post(format!("{b}/v1/pops/ticket"))
            .bearer_auth(AGENT)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let ticket = t["ticket"].as_str().unwrap().to_owned();
    assert_eq!(t["queues"], serde_json::json!(["support", "support-de"]));
    let (s, _) = status_and_error(
        c.get(format!("{b}/v1/pops?ticket={ticket}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401, "tickets are not accepted outside the streams");
    let sse = Sse::open(&format!("{b}/v1/pops/stream?ticket={ticket}"), None).await;
    assert!(sse.is_ok());
    let again = Sse::open(&format!("{b}/v1/pops/stream?ticket={ticket}"), None).await;
    assert_eq!(again.err().map(|e| e.0), Some(401));
}

#[tokio::test]
async fn oversize_and_non_json_bodies_get_413_and_415_as_json() {
    let r = start(cfg()).await;
    let b = base(r.addr);
    let c = http();
    let big = format!("{{\"ani\":\"{}\"}}", "1".repeat(3 << 20));
    for path in [
        "/v1/admin/explain",
        "/v1/admin/lists/block",
        "/v1/admin/crm/invalidate",
    ] {
        let (s, e) = status_and_error(
            c.post(format!("{b}{path}"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body(big.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (413, Some("payload_too_large")),
            "{path}"
        );
        for ct in ["text/plain", "application/x-www-form-urlencoded"] {
            let (s, e) = status_and_error(
                c.post(format!("{b}{path}"))
                    .bearer_auth(ADMIN)
                    .header("content-type", ct)
                    .body("{}")
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (s, e["error"]["code"].as_str()),
                (415, Some("unsupported_media_type")),
                "{path} {ct}"
            );
            assert!(e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json"));
        }
    }
    // Invalidate with no body at all still means "everything" (here: no CRM, a JSON 501).
    let (s, _) = status_and_error(
        c.post(format!("{b}/v1/admin/crm/invalidate"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 501);
}

#[tokio::test]
async fn one_tokens_ticket_flood_does_not_lock_out_another() {
    let r = start(cfg()).await;
    let b = base(r.addr);
    let c = http();
    let ticket = |token: &'static str| {
        let c = c.clone();
        let url = format!("{b}/v1/pops/ticket");
        async move { c.post(url).bearer_auth(token).send().await.unwrap() }
    };
    let mut issued = 0;
    let refused = loop {
        let resp = ticket(AGENT).await;
        if resp.status() != StatusCode::OK {
            break resp;
        }
        issued += 1;
        assert!(issued <= 1_000, "no per-token cap");
    };
    assert_eq!(issued, 1_000);
    let (s, e) = status_and_error(refused).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (429, Some("too_many_tickets"))
    );
    // The flood goes on; the other tokens are served meanwhile.
    for _ in 0..50 {
        assert_eq!(ticket(AGENT).await.status(), 429);
    }
    for other in [BILLING, ADMIN] {
        let resp = ticket(other).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let t: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        let sse = Sse::open(
            &format!(
                "{b}/v1/pops/stream?ticket={}",
                t["ticket"].as_str().unwrap()
            ),
            None,
        )
        .await;
        assert!(sse.is_ok(), "{other}'s ticket works");
    }
}

#[tokio::test]
async fn pop_by_reference_waits_and_respects_queues() {
    let r = start(cfg()).await;
    let b = base(r.addr);
    let c = http();
    let mut live = r.api.subscribe();
    r.api.publisher().publish(pop("ref-a", "support", "Ada"));
    assert_eq!(live.recv().await.unwrap().call_ref, "ref-a");
    let resp = c
        .get(format!("{b}/v1/pops/ref-a"))
        .bearer_auth(AGENT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["crm"]["profile"]["name"], "Ada");
    // Another queue's pop and no pop at all get the same answer, after the same wait: an agent
    // token cannot tell that a pop exists.
    let timed = |url: String| {
        let c = c.clone();
        async move {
            let t = std::time::Instant::now();
            let resp = c.get(url).bearer_auth(BILLING).send().await.unwrap();
            let (s, e) = status_and_error(resp).await;
            (s, e, t.elapsed())
        }
    };
    let (s_other, e_other, _) = timed(format!("{b}/v1/pops/ref-a")).await;
    let (s_none, e_none, _) = timed(format!("{b}/v1/pops/ref-b")).await;
    assert_eq!((s_other, s_none), (404, 404));
    assert_eq!(
        e_other.to_string().replace("ref-a", "REF"),
        e_none.to_string().replace("ref-b", "REF")
    );
    let (s, _, waited) = timed(format!("{b}/v1/pops/ref-a?wait_ms=300")).await;
    assert_eq!(s, 404);
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let (s, e) = status_and_error(
        c.get(format!("{b}/v1/pops/ref-unknown"))
            .bearer_auth(AGENT)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));

    // wait_ms: a request made before the pop exists gets it when it arrives.
    let req = tokio::spawn({
        let c = c.clone();
        let b = b.clone();
        async move {
            c.get(format!("{b}/v1/pops/ref-later?wait_ms=10000"))
                .bearer_auth(AGENT)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Publish only once the request is waiting (it subscribes before looking).
    while r.api.subscribers() < 2 {
        tokio::task::yield_now().await;
    }
    r.api
        .publisher()
        .publish(pop("ref-later", "support", "Late"));
    assert_eq!(req.await.unwrap(), StatusCode::OK);

    // Recent pops, newest first, only the token's queues.
    r.api.publisher().publish(pop("ref-b", "billing", "Bill"));
    while r.api.pop("ref-b").is_none() {
        tokio::task::yield_now().await;
    }
    let list: serde_json::Value = serde_json::from_str(
        &c.get(format!("{b}/v1/pops"))
            .bearer_auth(AGENT)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let refs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["call_ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["ref-later", "ref-a"]);
}

/// A real HTTP receiver: answers each POST with the next status of `script` (then 200), and
/// reports every request.
async fn receiver(
    script: Vec<u16>,
    gate: Option<Arc<Notify>>,
) -> (String, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let script = Arc::clone(&script);
            let gate = gate.clone();
            async move {
                let _ = tx.send((headers, body));
                if let Some(g) = gate {
                    g.notified().await;
                }
                let code = script.lock().unwrap().next().unwrap_or(200);
                StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, rx)
}

async fn next_request(
    rx: &mut mpsc::UnboundedReceiver<(HeaderMap, String)>,
) -> (HeaderMap, String) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no webhook request in time")
        .unwrap()
}

#[tokio::test]
async fn webhook_is_signed_and_retried_after_two_500s() {
    let (url, mut rx) = receiver(vec![500, 500], None).await;
    let (other_url, mut other_rx) = receiver(vec![], None).await;
    let mut c = cfg();
    c.webhooks = vec![
        WebhookConfig {
            name: "crm".into(),
            url,
            secret: Secret::new("whsec-test"),
            queues: vec!["support".into()],
        },
        WebhookConfig {
            name: "billing-only".into(),
            url: other_url,
            secret: Secret::new("other"),
            queues: vec!["billing".into()],
        },
    ];
    c.webhook_settings = WebhookSettings {
        backoff: Duration::from_millis(20),
        ..WebhookSettings::default()
    };
    let r = start(c).await;
    r.api.publisher().publish(pop("ref-w", "support", "Ada"));
    for attempt in 1..=3 {
        let (h, body) = next_request(&mut rx).await;
        assert_eq!(h["x-tollgate-attempt"], attempt.to_string().as_str());
        assert_eq!(h["x-tollgate-call-ref"], "ref-w");
        assert_eq!(h["content-type"], "application/json");
        let ts: u64 = h["x-tollgate-timestamp"].to_str().unwrap().parse().unwrap();
        // Verify as a receiver would: HMAC-SHA256 over "timestamp.body".
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"whsec-test");
        let sig = h["x-tollgate-signature"].to_str().unwrap();
        let hex = sig.strip_prefix("sha256=").unwrap();
        let mac: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, format!("{ts}.{body}").as_bytes(), &mac)
            .expect("signature verifies");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["call_ref"], "ref-w");
    }
    // The per-queue hook for billing got nothing for a support pop: its first request is the
    // billing pop published now.
    r.api.publisher().publish(pop("ref-b", "billing", "Bill"));
    let (h, _) = next_request(&mut other_rx).await;
    assert_eq!(h["x-tollgate-call-ref"], "ref-b");
}

#[tokio::test]
async fn full_webhook_queue_drops_and_counts() {
    let gate = Arc::new(Notify::new());
    let (url, mut rx) = receiver(vec![], Some(Arc::clone(&gate))).await;
    let mut c = cfg();
    c.webhooks = vec![WebhookConfig {
        name: "slow".into(),
        url,
        secret: Secret::new("s"),
        queues: vec![],
    }];
    c.webhook_settings = WebhookSettings {
        queue: 1,
        concurrency: 1,
        ..WebhookSettings::default()
    };
    let r = start(c).await;
    let before = dropped(&r).await;
    // One in flight (blocked by the receiver), one waiting for a slot, one queued: the rest
    // of 10 have nowhere to go.
    for i in 0..10 {
        r.api
            .publisher()
            .publish(pop(&format!("ref-{i}"), "support", "x"));
    }
    let _first = next_request(&mut rx).await;
    let mut live = r.api.subscribe();
    while r.api.pop("ref-9").is_none() {
        let _ = tokio::time::timeout(Duration::from_millis(100), live.recv()).await;
    }
    let after = dropped(&r).await;
    assert!(after >= before + 7, "dropped {before} -> {after}");
    gate.notify_waiters();
}

async fn dropped(r: &Running) -> u64 {
    let text = get(format!("{}/metrics", base(r.addr)))
        .await
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("tollgate_webhook_dropped_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn health_metrics_desktop_and_openapi_are_served() {
    let r = start(cfg()).await;
    let b = base(r.addr);
    assert_eq!(get(format!("{b}/healthz")).await.status(), 200);
    assert_eq!(get(format!("{b}/readyz")).await.status(), 200);
    r.api.publisher().publish(pop("ref-m", "support", "x"));
    let mut live = r.api.subscribe();
    while r.api.pop("ref-m").is_none() {
        let _ = tokio::time::timeout(Duration::from_millis(100), live.recv()).await;
    }
    let m = get(format!("{b}/metrics")).await;
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(m
        .text()
        .await
        .unwrap()
        .contains("tollgate_pops_published_total"));
    let d = get(format!("{b}/desktop")).await;
    assert!(d.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(d.text().await.unwrap().contains("/desktop/app.js"));
    let o: serde_json::Value = serde_json::from_str(
        &get(format!("{b}/v1/openapi.json"))
            .await
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(o["openapi"], "3.1.0");
}

#[test]
fn every_route_is_in_the_openapi_document_and_back() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let api = Api::start(cfg(), Arc::new(NoAdmin), None).unwrap();
    let doc: serde_json::Value = serde_json::from_str(tollgate_api::OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let routes = api.routes();
    for (method, path) in &routes {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is routed but not in openapi.json"
        );
    }
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            assert!(
                routes.iter().any(|(m, p)| m == method && p == path),
                "{method} {path} is in openapi.json but not routed"
            );
        }
    }
}
