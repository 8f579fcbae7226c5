//! Over real UDP sockets: every INVITE answered without a decision reaches
//! `CallHandler::answered_early` exactly once (a retransmission never), with its reason; an
//! unsupported `Require` gets 420 with `Unsupported` (RFC 3261 §8.2.2.3).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tollgate_core::{Decision, DecisionAction, NumberPlan, Target};
use tollgate_sip::extract::Emergency;
use tollgate_sip::trunk::{Trunk, Trunks, UnknownSource};
use tollgate_sip::{Call, CallHandler, Context, EarlyAnswer, EarlyReason, Server, SipConfig};

/// What one `answered_early` call said.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    reason: EarlyReason,
    status: u16,
    call_id: String,
    trunk: Option<String>,
    from_user: Option<String>,
    ruri_user: Option<String>,
    /// The call reference, when the answer came after `decide` began.
    call_ref: Option<String>,
}

/// Routes every call to `q@acd.example` after `delay`, counting decisions and early answers.
#[derive(Debug, Default)]
struct Counting {
    delay: Duration,
    decided: AtomicUsize,
    early: Mutex<Vec<Seen>>,
}

impl CallHandler for Counting {
    async fn decide(&self, _call: &mut Call) -> Decision {
        self.decided.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        Decision {
            action: DecisionAction::Route(Target::new("q", "acd.example")),
            rule: "r".into(),
            version: Default::default(),
        }
    }

    fn answered_early(&self, a: &EarlyAnswer<'_>) {
        self.early.lock().unwrap().push(Seen {
            reason: a.reason,
            status: a.status,
            call_id: a.call_id.to_owned(),
            trunk: a.trunk.map(str::to_owned),
            from_user: a.from_user.as_deref().map(str::to_owned),
            ruri_user: a.ruri_user.as_deref().map(str::to_owned),
            call_ref: a.call.map(|c| c.call_ref.clone()),
        });
    }
}

struct Running {
    addr: SocketAddr,
    server: Arc<Server<Counting>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Running {
    fn early(&self) -> Vec<Seen> {
        self.server.handler().early.lock().unwrap().clone()
    }

    fn decided(&self) -> usize {
        self.server.handler().decided.load(Ordering::SeqCst)
    }
}

/// A server whose one trunk is `cidr`, answering unknown sources 403.
async fn start(cidr: &str, delay: Duration, decision_timeout: Duration) -> Running {
    let plan = Arc::new(NumberPlan::load());
    let trunk = Trunk {
        name: "carrier".into(),
        cidrs: vec![cidr.parse().unwrap()],
        trusted: true,
        ani_precedence: Trunk::DEFAULT_ANI.to_vec(),
        dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
        region: plan.region("US").unwrap().clone(),
        tls_peers: Vec::new(),
    };
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let server = Server::new(Context {
        handler: Counting {
            delay,
            ..Counting::default()
        },
        trunks: Trunks::new(vec![trunk], UnknownSource::Reject),
        plan,
        emergency: Emergency::default(),
        config: SipConfig {
            t1: Duration::from_millis(50),
            t4: Duration::from_millis(100),
            trying_delay: Duration::from_secs(5),
            decision_timeout,
            drain_timeout: Duration::from_secs(3),
            enforce_require: true,
            ..SipConfig::default()
        },
    });
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&server).run(vec![udp], Vec::new(), async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        server,
        stop: Some(tx),
    }
}

struct Peer(UdpSocket, SocketAddr);

impl Peer {
    async fn new(server: SocketAddr) -> Self {
        Self(UdpSocket::bind("127.0.0.1:0").await.unwrap(), server)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    async fn send(&self, msg: &str) {
        self.0.send_to(msg.as_bytes(), self.1).await.unwrap();
    }

    async fn recv_within(&self, ms: u64) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_millis(ms), self.0.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    async fn recv(&self) -> String {
        self.recv_within(3000).await.expect("a response within 3 s")
    }
}

fn invite(port: u16, branch: &str, extra: &str) -> String {
    format!(
        "INVITE sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12125550001@c.example;user=phone>;tag=f\r\n\
To: <sip:+18005550100@127.0.0.1;user=phone>\r\n\
Call-ID: {branch}@c.example\r\n\
CSeq: 1 INVITE\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

fn status(r: &str) -> u16 {
    r.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn header<'a>(r: &'a str, name: &str) -> Vec<&'a str> {
    r.split("\r\n")
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

fn seen(reason: EarlyReason, status: u16, call_id: &str, trunk: Option<&str>) -> Seen {
    Seen {
        reason,
        status,
        call_id: call_id.to_owned(),
        trunk: trunk.map(str::to_owned),
        from_user: Some("+12125550001".to_owned()),
        ruri_user: Some("+18005550100".to_owned()),
        call_ref: None,
    }
}

#[tokio::test]
async fn unknown_source_403_is_reported_once_and_never_for_a_retransmission() {
    let run = start("192.0.2.0/24", Duration::ZERO, Duration::from_secs(2)).await;
    let peer = Peer::new(run.addr).await;
    let msg = invite(peer.port(), "unk", "");
    peer.send(&msg).await;
    let r = peer.recv().await;
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden (unknown source)\r\n"),
        "{r}"
    );
    peer.send(&msg).await;
    // The retransmission gets the stored 403 (timer G may send it too), and no second report.
    assert_eq!(peer.recv().await, r);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        run.early(),
        [seen(EarlyReason::UnknownSource, 403, "unk@c.example", None)]
    );
    assert_eq!(run.decided(), 0);
}

#[tokio::test]
async fn unsupported_require_is_420_with_the_tags_and_reported() {
    let run = start("127.0.0.1/32", Duration::ZERO, Duration::from_secs(2)).await;
    let peer = Peer::new(run.addr).await;
    let msg = invite(
        peer.port(),
        "ext1",
        "Require: foo, 100rel\r\nRequire: bar,foo\r\nProxy-Require: noProxiesSupportThis\r\n",
    );
    peer.send(&msg).await;
    let r = peer.recv().await;
    assert!(r.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{r}");
    // Each unsupported tag once, in order; the supported 100rel and Proxy-Require's are not.
    assert_eq!(header(&r, "Unsupported"), ["foo, bar"], "{r}");
    assert!(header(&r, "To")[0].contains(";tag="), "{r}");
    peer.send(&msg).await;
    assert_eq!(peer.recv().await, r);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        run.early(),
        [seen(
            EarlyReason::BadExtension,
            420,
            "ext1@c.example",
            Some("carrier")
        )]
    );
    assert_eq!(run.decided(), 0);

    // Only supported tags (any case), or Proxy-Require alone: routed.
    for (branch, extra) in [
        ("ext2", "Require: 100rel, TIMER\r\n"),
        ("ext3", "Proxy-Require: foo\r\n"),
    ] {
        let peer = Peer::new(run.addr).await;
        peer.send(&invite(peer.port(), branch, extra)).await;
        let r = peer.recv().await;
        assert_eq!(status(&r), 302, "{extra}: {r}");
        assert!(header(&r, "Unsupported").is_empty());
    }
    assert_eq!(run.decided(), 2);
    assert_eq!(run.early().len(), 1);

    // OPTIONS is bound by Require too; CANCEL is exempt (here: no transaction, 481). A fresh
    // peer: timer G retransmits the unacknowledged 420 to the first.
    let peer = Peer::new(run.addr).await;
    let options = invite(peer.port(), "ext4", "Require: foo\r\n")
        .replacen("INVITE sip", "OPTIONS sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
    peer.send(&options).await;
    let r = peer.recv().await;
    assert_eq!(status(&r), 420, "{r}");
    assert_eq!(header(&r, "Unsupported"), ["foo"]);
    let cancel = invite(peer.port(), "ext5", "Require: foo\r\n")
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    peer.send(&cancel).await;
    assert_eq!(status(&peer.recv().await), 481);
    // Non-INVITE answers are not INVITEs answered early.
    assert_eq!(run.early().len(), 1);
}

#[tokio::test]
async fn decision_timeout_and_cancel_are_reported_with_the_call() {
    let run = start(
        "127.0.0.1/32",
        Duration::from_millis(600),
        Duration::from_millis(100),
    )
    .await;
    let peer = Peer::new(run.addr).await;
    let msg = invite(peer.port(), "dto", "");
    peer.send(&msg).await;
    let r = peer.recv().await;
    assert!(
        r.starts_with("SIP/2.0 503 Service Unavailable (decision timeout)\r\n"),
        "{r}"
    );
    assert_eq!(header(&r, "Retry-After"), ["5"]);
    peer.send(&msg).await;
    assert_eq!(peer.recv().await, r);

    let other = Peer::new(run.addr).await;
    let msg = invite(other.port(), "canc", "");
    other.send(&msg).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cancel = msg
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    other.send(&cancel).await;
    let mut got = [other.recv().await, other.recv().await];
    got.sort();
    assert_eq!(status(&got[0]), 200, "{got:?}");
    assert_eq!(status(&got[1]), 487, "{got:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let early = run.early();
    assert_eq!(early.len(), 2, "{early:?}");
    assert_eq!(run.decided(), 2);
    let (dto, canc) = (&early[0], &early[1]);
    assert_eq!(
        (dto.reason, dto.status, dto.call_id.as_str()),
        (EarlyReason::DecisionTimeout, 503, "dto@c.example")
    );
    assert_eq!(
        (canc.reason, canc.status, canc.call_id.as_str()),
        (EarlyReason::Cancelled, 487, "canc@c.example")
    );
    for e in &early {
        assert_eq!(e.trunk.as_deref(), Some("carrier"));
        assert_eq!(e.call_ref.as_ref().map(String::len), Some(16), "{e:?}");
    }
}

#[tokio::test]
async fn malformed_and_draining_invites_are_reported_and_routed_calls_are_not() {
    let mut run = start(
        "127.0.0.1/32",
        Duration::from_millis(300),
        Duration::from_secs(2),
    )
    .await;
    let peer = Peer::new(run.addr).await;
    let bad = invite(peer.port(), "bad", "").replace("CSeq: 1 INVITE", "CSeq: x INVITE");
    peer.send(&bad).await;
    assert_eq!(status(&peer.recv().await), 400);
    // A malformed OPTIONS is no INVITE.
    let bad_options = bad
        .replacen("INVITE sip", "OPTIONS sip", 1)
        .replace("x INVITE", "x OPTIONS");
    peer.send(&bad_options).await;
    assert_eq!(status(&peer.recv().await), 400);

    // A call pending when draining begins is routed (no report); one after it gets 503.
    let pending = Peer::new(run.addr).await;
    pending.send(&invite(pending.port(), "ok", "")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = run.stop.take().unwrap().send(());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let late = Peer::new(run.addr).await;
    late.send(&invite(late.port(), "late", "")).await;
    let r = late.recv().await;
    assert_eq!(status(&r), 503, "{r}");
    assert_eq!(header(&r, "Retry-After"), ["5"]);
    assert_eq!(status(&pending.recv().await), 302);

    let early = run.early();
    assert_eq!(early.len(), 2, "{early:?}");
    assert_eq!(
        early[0],
        Seen {
            from_user: None,
            ruri_user: None,
            ..seen(
                EarlyReason::Malformed,
                400,
                "bad@c.example",
                Some("carrier")
            )
        }
    );
    assert_eq!(
        early[1],
        seen(
            EarlyReason::Draining,
            503,
            "late@c.example",
            Some("carrier")
        )
    );
    assert_eq!(run.decided(), 1);
}
