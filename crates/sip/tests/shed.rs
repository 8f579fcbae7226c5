//! Over real UDP sockets: overload shedding (issue 20 item 3). The node is stalled (a decision
//! that blocks the server's only thread) while INVITEs pile up in the socket's receive queue;
//! once it runs again, each new INVITE that waited past `shed_queue_age` is answered 503 with
//! Retry-After and reported as `Overloaded`, and never decided, while a retransmission of an
//! INVITE already answered gets its stored answer, an emergency INVITE is decided, and fresh
//! INVITEs after the stall are routed; an INVITE that waited past T1 is dropped unanswered (its
//! sender has retransmitted it) and its retransmission answered. With shedding off nothing is
//! shed. The stall is many times the bound, so nothing here depends on how fast the machine is.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tollgate_core::{Decision, DecisionAction, NumberPlan, Target};
use tollgate_sip::extract::Emergency;
use tollgate_sip::trunk::{Trunk, Trunks, UnknownSource};
use tollgate_sip::{
    Call, CallHandler, Context, EarlyAnswer, EarlyReason, Limits, Server, SipConfig,
};

/// Routes every call to `q@acd.example`. A call whose Call-ID starts with `stall` blocks the
/// thread it runs on (the server's only one) until the test releases it; one starting with
/// `slow` takes a second, without blocking.
#[derive(Debug)]
struct Staller {
    started: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
    /// Call-IDs decided, and whether each was an emergency call.
    decided: Mutex<Vec<(String, bool)>>,
    early: Mutex<Vec<(String, EarlyReason, u16)>>,
    shed: AtomicUsize,
}

impl CallHandler for Staller {
    async fn decide(&self, call: &mut Call) -> Decision {
        let id = call.facts.call_id.to_string();
        self.decided
            .lock()
            .unwrap()
            .push((id.clone(), call.facts.emergency));
        if id.starts_with("stall") {
            self.started.lock().unwrap().send(()).unwrap();
            // Blocks the runtime's one thread: nothing is received meanwhile.
            self.release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(30))
                .unwrap();
        } else if id.starts_with("slow") {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Decision {
            action: DecisionAction::Route(Target::new("q", "acd.example")),
            rule: "r".into(),
            version: Default::default(),
        }
    }

    fn answered_early(&self, a: &EarlyAnswer<'_>) {
        if a.reason == EarlyReason::Overloaded {
            self.shed.fetch_add(1, Ordering::SeqCst);
        }
        self.early
            .lock()
            .unwrap()
            .push((a.call_id.to_owned(), a.reason, a.status));
    }
}

/// A node on its own thread with a current-thread runtime, so that a blocking decision stalls
/// its receive loop.
struct Node {
    addr: SocketAddr,
    server: Arc<Server<Staller>>,
    started: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(tune: impl FnOnce(&mut Limits)) -> Self {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let plan = Arc::new(NumberPlan::load());
        let trunk = Trunk {
            name: "carrier".into(),
            cidrs: vec!["127.0.0.0/8".parse().unwrap()],
            trusted: true,
            ani_precedence: Trunk::DEFAULT_ANI.to_vec(),
            dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
            region: plan.region("US").unwrap().clone(),
            tls_peers: Vec::new(),
        };
        let mut limits = Limits {
            shed_queue_age: Duration::from_millis(100),
            ..Limits::default()
        };
        tune(&mut limits);
        let server = Server::new(Context {
            handler: Staller {
                started: Mutex::new(started_tx),
                release: Mutex::new(release_rx),
                decided: Mutex::default(),
                early: Mutex::default(),
                shed: AtomicUsize::new(0),
            },
            trunks: Trunks::new(vec![trunk], UnknownSource::Reject),
            plan,
            emergency: Emergency::default(),
            config: SipConfig {
                // Timer H (64·T1) outlasts the test: an answered INVITE stays answerable.
                t1: Duration::from_millis(500),
                trying_delay: Duration::from_secs(30),
                decision_timeout: Duration::from_secs(30),
                limits,
                ..SipConfig::default()
            },
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = mpsc::channel();
        let run = Arc::clone(&server);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(udp.local_addr().unwrap()).unwrap();
                run.run(vec![udp], vec![], async move {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Self {
            addr: addr_rx.recv().unwrap(),
            server,
            started,
            release,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn decided(&self) -> Vec<(String, bool)> {
        self.server.handler().decided.lock().unwrap().clone()
    }

    fn early(&self) -> Vec<(String, EarlyReason, u16)> {
        self.server.handler().early.lock().unwrap().clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.release.send(());
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Client {
    sock: UdpSocket,
    server: SocketAddr,
}

impl Client {
    fn new(server: SocketAddr) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Self { sock, server }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    fn send(&self, msg: &str) {
        self.sock.send_to(msg.as_bytes(), self.server).unwrap();
    }

    /// Final responses (no 100s) received until `quiet` passes with nothing, or `within`: by
    /// Call-ID, every copy in order.
    fn finals(&self, within: Duration) -> HashMap<String, Vec<String>> {
        let mut got: HashMap<String, Vec<String>> = HashMap::new();
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 65_536];
        while Instant::now() < deadline {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let r = String::from_utf8_lossy(&buf[..n]).into_owned();
            if status(&r) >= 200 {
                let id = header(&r, "Call-ID").unwrap_or_default().to_owned();
                got.entry(id).or_default().push(r);
            }
        }
        got
    }
}

/// An INVITE with Call-ID and branch `id` for `dialed` (a number, or a `urn:service` URN as
/// the Request-URI, To then naming the toll-free number).
fn invite(port: u16, id: &str, dialed: &str) -> String {
    let (ruri, to) = if dialed.starts_with("urn:") {
        (dialed.to_owned(), TOLL_FREE)
    } else {
        (format!("sip:{dialed}@127.0.0.1;user=phone"), dialed)
    };
    format!(
        "INVITE {ruri} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{id}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12125550001@c.example;user=phone>;tag=f\r\n\
To: <sip:{to}@127.0.0.1;user=phone>\r\n\
Call-ID: {id}\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn status(r: &str) -> u16 {
    r.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn header<'a>(r: &'a str, name: &str) -> Option<&'a str> {
    r.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const TOLL_FREE: &str = "+18005550100";

/// Stalls the node's receive loop for `stall`, sending `during` meanwhile; returns once the
/// stalled decision is released.
fn stall_while(node: &Node, client: &Client, stall: Duration, during: &[String]) {
    client.send(&invite(client.port(), "stall-1", TOLL_FREE));
    node.started
        .recv_timeout(Duration::from_secs(10))
        .expect("the stalling decision started");
    for m in during {
        client.send(m);
    }
    std::thread::sleep(stall);
    node.release.send(()).unwrap();
}

/// The main case: stale INVITEs get 503 with Retry-After at once and are never decided; a
/// retransmission of an answered INVITE gets its stored 302; an emergency INVITE in the same
/// stale batch is decided; a fresh INVITE after the stall is routed.
#[test]
fn stale_invites_are_shed_but_not_retransmissions_emergencies_or_fresh_calls() {
    let node = Node::start(|_| {});
    let client = Client::new(node.addr);
    let port = client.port();

    // Answered before the stall: its 302 is stored until the ACK (none is sent).
    client.send(&invite(port, "answered-1", TOLL_FREE));
    let first = client.finals(Duration::from_millis(600));
    let stored = first["answered-1"][0].clone();
    assert_eq!(status(&stored), 302, "{stored}");

    let during = [
        invite(port, "answered-1", TOLL_FREE), // a retransmission
        invite(port, "new-1", TOLL_FREE),
        invite(port, "new-2", TOLL_FREE),
        invite(port, "sos-911", "911"),
        invite(port, "new-3", TOLL_FREE),
        invite(port, "sos-urn", "urn:service:sos"),
    ];
    // The stall is three times the 100 ms bound.
    stall_while(&node, &client, Duration::from_millis(300), &during);
    let got = client.finals(Duration::from_secs(1));

    for id in ["new-1", "new-2", "new-3"] {
        let r = got
            .get(id)
            .unwrap_or_else(|| panic!("{id} unanswered: {got:?}"));
        assert_eq!(r.len(), 1, "a shed INVITE is answered once: {r:?}");
        assert_eq!(status(&r[0]), 503, "{id}: {}", r[0]);
        assert!(
            r[0].contains("Service Unavailable (overloaded)"),
            "{}",
            r[0]
        );
        assert_eq!(header(&r[0], "Retry-After"), Some("5"), "{}", r[0]);
    }
    let retransmitted = got
        .get("answered-1")
        .expect("the retransmission is answered");
    assert!(
        retransmitted.iter().all(|r| *r == stored),
        "a retransmission gets the stored 302: {retransmitted:?}"
    );
    for id in ["sos-911", "sos-urn", "stall-1"] {
        let r = got
            .get(id)
            .unwrap_or_else(|| panic!("{id} unanswered: {got:?}"));
        assert_eq!(status(&r[0]), 302, "{id}: {}", r[0]);
    }
    let decided = node.decided();
    for id in ["new-1", "new-2", "new-3"] {
        assert!(
            !decided.iter().any(|(d, _)| d == id),
            "{id} was decided: {decided:?}"
        );
    }
    assert!(
        decided.contains(&("sos-911".to_owned(), true)),
        "{decided:?}"
    );
    assert!(
        decided.contains(&("sos-urn".to_owned(), true)),
        "{decided:?}"
    );
    let early = node.early();
    let shed: Vec<&str> = early
        .iter()
        .filter(|(_, why, code)| *why == EarlyReason::Overloaded && *code == 503)
        .map(|(id, _, _)| id.as_str())
        .collect();
    assert_eq!(shed, ["new-1", "new-2", "new-3"], "{early:?}");

    // After the gate's hold (a second with a young queue) a fresh INVITE is routed; one sent
    // at once may be too, but need not be on a loaded machine.
    std::thread::sleep(Duration::from_millis(1200));
    client.send(&invite(port, "fresh-1", TOLL_FREE));
    let fresh = client.finals(Duration::from_millis(800));
    let r = fresh
        .get("fresh-1")
        .unwrap_or_else(|| panic!("fresh-1 unanswered: {fresh:?}"));
    assert_eq!(status(&r[0]), 302, "{}", r[0]);
}

/// With `shedding = false` the same stall sheds nothing: every INVITE is decided and routed.
#[test]
fn with_shedding_off_nothing_is_shed() {
    let node = Node::start(|l| l.shedding = false);
    let client = Client::new(node.addr);
    let port = client.port();
    let during: Vec<String> = (1..=3)
        .map(|i| invite(port, &format!("new-{i}"), TOLL_FREE))
        .collect();
    stall_while(&node, &client, Duration::from_millis(300), &during);
    let got = client.finals(Duration::from_secs(1));
    for id in ["new-1", "new-2", "new-3", "stall-1"] {
        let r = got
            .get(id)
            .unwrap_or_else(|| panic!("{id} unanswered: {got:?}"));
        assert_eq!(status(&r[0]), 302, "{id}: {}", r[0]);
    }
    assert_eq!(node.server.handler().shed.load(Ordering::SeqCst), 0);
    assert_eq!(node.decided().len(), 4);
}

/// The queue-age bound at zero turns shedding by age off; the pending-decisions bound still
/// sheds, but never an emergency call.
#[test]
fn pending_decisions_shed_but_not_an_emergency_call() {
    let node = Node::start(|l| {
        l.shed_queue_age = Duration::ZERO;
        l.max_pending_decisions = 1;
    });
    let client = Client::new(node.addr);
    let port = client.port();
    client.send(&invite(port, "slow-1", TOLL_FREE));
    // slow-1 is being decided (a second) once it is in the handler.
    let deadline = Instant::now() + Duration::from_secs(5);
    while node.decided().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    client.send(&invite(port, "new-1", TOLL_FREE));
    client.send(&invite(port, "sos-112", "112"));
    let got = client.finals(Duration::from_millis(1800));
    assert_eq!(status(&got["new-1"][0]), 503, "{got:?}");
    assert_eq!(header(&got["new-1"][0], "Retry-After"), Some("5"));
    assert_eq!(status(&got["sos-112"][0]), 302, "{got:?}");
    assert_eq!(status(&got["slow-1"][0]), 302, "{got:?}");
    assert_eq!(node.server.handler().shed.load(Ordering::SeqCst), 1);

    // With the stall of the first test and no age bound, nothing is shed by age.
    let during: Vec<String> = vec![invite(port, "new-2", TOLL_FREE)];
    stall_while(&node, &client, Duration::from_millis(300), &during);
    let got = client.finals(Duration::from_secs(1));
    assert_eq!(status(&got["new-2"][0]), 302, "{got:?}");
}

/// An INVITE whose datagram waited past T1 (500 ms here) has been retransmitted by its sender:
/// it is dropped unanswered (but a retransmission of an answered INVITE still gets its stored
/// answer, and an emergency call is decided), and the retransmission that follows is answered.
#[test]
fn invites_older_than_t1_are_dropped_and_their_retransmission_answered() {
    let node = Node::start(|_| {});
    let client = Client::new(node.addr);
    let port = client.port();
    client.send(&invite(port, "answered-1", TOLL_FREE));
    let stored = client.finals(Duration::from_millis(600))["answered-1"][0].clone();
    assert_eq!(status(&stored), 302, "{stored}");

    let during = [
        invite(port, "answered-1", TOLL_FREE),
        invite(port, "old-1", TOLL_FREE),
        invite(port, "sos-933", "933"),
        invite(port, "old-2", TOLL_FREE),
    ];
    // Past T1 (500 ms) by 300 ms.
    stall_while(&node, &client, Duration::from_millis(800), &during);
    let got = client.finals(Duration::from_secs(1));
    for id in ["old-1", "old-2"] {
        assert!(!got.contains_key(id), "{id} answered: {got:?}");
    }
    assert!(got["answered-1"].iter().all(|r| *r == stored), "{got:?}");
    assert_eq!(status(&got["sos-933"][0]), 302, "{got:?}");
    assert_eq!(status(&got["stall-1"][0]), 302, "{got:?}");
    assert!(
        !node.decided().iter().any(|(id, _)| id.starts_with("old")),
        "{:?}",
        node.decided()
    );
    assert_eq!(
        node.server.handler().shed.load(Ordering::SeqCst),
        0,
        "nothing answered 503"
    );

    // The sender's retransmission, read at once: answered.
    client.send(&invite(port, "old-1", TOLL_FREE));
    let again = client.finals(Duration::from_millis(800));
    let r = again
        .get("old-1")
        .unwrap_or_else(|| panic!("the retransmission unanswered: {again:?}"));
    assert!(matches!(status(&r[0]), 302 | 503), "{}", r[0]);
}
