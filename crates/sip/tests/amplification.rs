//! Over real UDP sockets: no reflection amplifier (issue 18 item 2). An INVITE from a source no
//! trunk claims, or from a trunk with `stateless_rejects`, draws exactly one response however
//! long it goes unacknowledged (no timer G, no 100 Trying); a configured trunk keeps RFC 3261
//! retransmissions until the ACK, and timer G is bounded whatever the timers. Each test prints
//! the amplification factor (response bytes / request bytes over the whole window).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tollgate_core::{Decision, DecisionAction, NumberPlan, Target};
use tollgate_sip::extract::Emergency;
use tollgate_sip::trunk::{Trunk, Trunks, UnknownSource};
use tollgate_sip::{Call, CallHandler, Context, Server, SipConfig, MAX_FINAL_RETRANSMITS};

/// Answers every call with `action` after `delay`.
#[derive(Debug)]
struct Answer {
    action: DecisionAction,
    delay: Duration,
}

impl CallHandler for Answer {
    async fn decide(&self, _call: &mut Call) -> Decision {
        tokio::time::sleep(self.delay).await;
        Decision {
            action: self.action.clone(),
            rule: "r".into(),
            version: Default::default(),
        }
    }
}

fn route() -> DecisionAction {
    DecisionAction::Route(Target::new("q", "acd.example"))
}

fn reject() -> DecisionAction {
    DecisionAction::Reject {
        code: 603,
        reason: None,
        call_info: None,
        retry_after: None,
    }
}

fn trunk(plan: &NumberPlan, cidr: &str) -> Trunk {
    Trunk {
        name: "carrier".into(),
        cidrs: vec![cidr.parse().unwrap()],
        trusted: true,
        ani_precedence: Trunk::DEFAULT_ANI.to_vec(),
        dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
        region: plan.region("US").unwrap().clone(),
        tls_peers: Vec::new(),
    }
}

/// T1 = 50 ms: timer G fires at 50, 150, 350 ms... and timer H at 3.2 s.
const T1: Duration = Duration::from_millis(50);
/// Longer than several timer-G intervals (copies at 0, 50, 150, 350 ms when stateful).
const WINDOW_MS: u64 = 600;

/// A server on 127.0.0.1 with `trunks` (`trunks(plan)`), answering `action` after `delay`.
async fn start(
    trunks: impl FnOnce(&NumberPlan) -> Trunks,
    action: DecisionAction,
    delay: Duration,
    t1: Duration,
    t2: Duration,
) -> SocketAddr {
    let plan = Arc::new(NumberPlan::load());
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let server = Server::new(Context {
        handler: Answer { action, delay },
        trunks: trunks(&plan),
        plan,
        emergency: Emergency::default(),
        config: SipConfig {
            t1,
            t2,
            t4: Duration::from_millis(200),
            trying_delay: Duration::from_millis(10),
            ..SipConfig::default()
        },
    });
    tokio::spawn(server.run(vec![udp], Vec::new(), std::future::pending()));
    addr
}

async fn start_default(
    trunks: impl FnOnce(&NumberPlan) -> Trunks,
    action: DecisionAction,
    delay: Duration,
) -> SocketAddr {
    start(trunks, action, delay, T1, Duration::from_secs(4)).await
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

    /// Every datagram received within `ms`.
    async fn collect(&self, ms: u64) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(deadline, self.0.recv_from(&mut buf)).await
        {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got
    }
}

fn invite(port: u16, branch: &str) -> String {
    format!(
        "INVITE sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12125550001@c.example;user=phone>;tag=f\r\n\
To: <sip:+18005550100@127.0.0.1;user=phone>\r\n\
Call-ID: {branch}@c.example\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// The ACK for a non-2xx final (RFC 3261 §17.1.1.3): the INVITE's branch, the response's To.
fn ack(port: u16, branch: &str, response: &str) -> String {
    let to = response
        .split("\r\n")
        .find(|l| l.starts_with("To:"))
        .unwrap();
    format!(
        "ACK sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+12125550001@c.example;user=phone>;tag=f\r\n\
{to}\r\n\
Call-ID: {branch}@c.example\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn status(r: &str) -> u16 {
    r.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn statuses(got: &[String]) -> Vec<u16> {
    got.iter().map(|r| status(r)).collect()
}

/// Response bytes / request bytes, printed with the source class.
fn factor(class: &str, request: &str, got: &[String]) -> f64 {
    let bytes: usize = got.iter().map(String::len).sum();
    #[allow(clippy::cast_precision_loss)]
    let f = bytes as f64 / request.len() as f64;
    println!(
        "amplification {class}: {} responses, {bytes} bytes for a {}-byte INVITE: {f:.2}x",
        got.len(),
        request.len()
    );
    f
}

#[tokio::test]
async fn unknown_source_gets_one_403_however_long_it_goes_unacked() {
    let addr = start_default(
        |p| Trunks::new(vec![trunk(p, "192.0.2.0/24")], UnknownSource::Reject),
        route(),
        Duration::ZERO,
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "unk1");
    peer.send(&msg).await;
    let got = peer.collect(WINDOW_MS).await;
    assert_eq!(statuses(&got), [403], "{got:?}");
    assert!(factor("unknown source (403)", &msg, &got) < 1.5);

    // The entry lived T4 (200 ms here), not 64·T1: a late retransmission is a new request, and
    // gets one answer of its own (a new To-tag).
    peer.send(&msg).await;
    let late = peer.collect(WINDOW_MS).await;
    assert_eq!(statuses(&late), [403], "{late:?}");
    assert_ne!(late, got);

    // A retransmission within T4 gets the stored answer again: one per datagram received.
    let msg = invite(peer.port(), "unk1b");
    peer.send(&msg).await;
    let first = peer.collect(50).await;
    assert_eq!(statuses(&first), [403], "{first:?}");
    peer.send(&msg).await;
    let again = peer.collect(WINDOW_MS).await;
    assert_eq!(again, first, "one answer per datagram received");
}

#[tokio::test]
async fn unknown_untrusted_source_gets_one_302_and_no_100_trying() {
    // The decision outlasts trying_delay: a stateful source would get 100 Trying first.
    let addr = start_default(
        |p| {
            let mut unknown = trunk(p, "192.0.2.1/32");
            unknown.name = "unknown".into();
            unknown.trusted = false;
            Trunks::new(
                vec![trunk(p, "192.0.2.0/24")],
                UnknownSource::Untrusted(Arc::new(unknown)),
            )
        },
        route(),
        Duration::from_millis(60),
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "unk2");
    peer.send(&msg).await;
    let got = peer.collect(WINDOW_MS).await;
    assert_eq!(statuses(&got), [302], "{got:?}");
    factor("unknown source, untrusted (302)", &msg, &got);
}

#[tokio::test]
async fn stateless_rejects_trunk_gets_one_rejection_and_one_302() {
    let addr = start_default(
        |p| {
            Trunks::new(vec![trunk(p, "127.0.0.1/32")], UnknownSource::Reject)
                .stateless_rejects(&["carrier"])
        },
        reject(),
        Duration::ZERO,
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "sl1");
    peer.send(&msg).await;
    let got = peer.collect(WINDOW_MS).await;
    assert_eq!(statuses(&got), [603], "{got:?}");
    assert!(factor("stateless_rejects trunk (603)", &msg, &got) < 1.5);

    let addr = start_default(
        |p| {
            Trunks::new(vec![trunk(p, "127.0.0.1/32")], UnknownSource::Reject)
                .stateless_rejects(&["carrier"])
        },
        route(),
        Duration::from_millis(60),
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "sl2");
    peer.send(&msg).await;
    let got = peer.collect(WINDOW_MS).await;
    assert_eq!(statuses(&got), [302], "{got:?}");
    factor("stateless_rejects trunk (302)", &msg, &got);
}

#[tokio::test]
async fn configured_trunk_retransmits_an_unacked_rejection_until_the_ack() {
    let addr = start_default(
        |p| Trunks::new(vec![trunk(p, "127.0.0.1/32")], UnknownSource::Reject),
        reject(),
        Duration::ZERO,
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "rfc1");
    peer.send(&msg).await;
    let got = peer.collect(WINDOW_MS).await;
    // The first copy and timer G at 50, 150 and 350 ms (the next is due at 750 ms).
    assert_eq!(statuses(&got), [603; 4], "{got:?}");
    factor("configured trunk (603, 600 ms unACKed)", &msg, &got);
    peer.send(&ack(peer.port(), "rfc1", &got[0])).await;
    let after = peer.collect(1000).await;
    assert!(after.is_empty(), "retransmitted after the ACK: {after:?}");
}

#[tokio::test]
async fn trusted_trunk_302_retransmits_until_the_ack() {
    let addr = start_default(
        |p| Trunks::new(vec![trunk(p, "127.0.0.1/32")], UnknownSource::Reject),
        route(),
        Duration::ZERO,
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "rfc2");
    peer.send(&msg).await;
    let got = peer.collect(WINDOW_MS).await;
    assert_eq!(statuses(&got), [302; 4], "{got:?}");
    factor("configured trunk (302, 600 ms unACKed)", &msg, &got);
    peer.send(&ack(peer.port(), "rfc2", &got[0])).await;
    let after = peer.collect(1000).await;
    assert!(after.is_empty(), "retransmitted after the ACK: {after:?}");
}

fn options(port: u16, branch: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: <sip:ping@c.example>;tag=f\r\n\
To: <sip:127.0.0.1>\r\n\
Call-ID: {branch}@c.example\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// The waits the table's expiry queue times, over real sockets, from a configured trunk:
/// timer J (a non-INVITE's final kept 64·T1 = 3.2 s here: a retransmission within it gets the
/// very same response, one after it a new one) and timer I (after the ACK the INVITE's
/// transaction absorbs ACKs for T4 = 200 ms, then a retransmitted INVITE is a new request).
#[tokio::test]
async fn timers_i_and_j_keep_their_transactions_as_long_as_the_rfc_says() {
    let addr = start_default(
        |p| Trunks::new(vec![trunk(p, "127.0.0.1/32")], UnknownSource::Reject),
        route(),
        Duration::ZERO,
    )
    .await;
    let peer = Peer::new(addr).await;

    let ping = options(peer.port(), "tj1");
    peer.send(&ping).await;
    let first = peer.collect(100).await;
    assert_eq!(statuses(&first), [200], "{first:?}");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    peer.send(&ping).await;
    let within = peer.collect(100).await;
    assert_eq!(within, first, "within timer J: the stored response");
    // 64·T1 after the first answer, plus the expiry sweep (100 ms) and slack.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    peer.send(&ping).await;
    let after = peer.collect(100).await;
    assert_eq!(statuses(&after), [200], "{after:?}");
    assert_ne!(
        after, first,
        "after timer J: a new transaction, a new To-tag"
    );

    let msg = invite(peer.port(), "ti1");
    peer.send(&msg).await;
    let got = peer.collect(30).await;
    assert_eq!(statuses(&got).first(), Some(&302), "{got:?}");
    let ack = ack(peer.port(), "ti1", &got[0]);
    peer.send(&ack).await;
    peer.send(&msg).await;
    let within = peer.collect(100).await;
    assert!(
        within.is_empty(),
        "a confirmed transaction answers nothing: {within:?}"
    );
    // T4 (200 ms) and the sweep have passed: the INVITE is a new request again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    peer.send(&msg).await;
    let again = peer.collect(100).await;
    assert_eq!(statuses(&again).first(), Some(&302), "{again:?}");
    assert_ne!(again[0], got[0], "a new transaction, a new To-tag");
}

#[tokio::test]
async fn timer_g_is_bounded_whatever_the_timers() {
    // T1 = T2 = 2 ms: timer H at 128 ms, so an unbounded timer G would send about 64 copies.
    let ms2 = Duration::from_millis(2);
    let addr = start(
        |p| Trunks::new(vec![trunk(p, "127.0.0.1/32")], UnknownSource::Reject),
        reject(),
        Duration::ZERO,
        ms2,
        ms2,
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "cap1");
    peer.send(&msg).await;
    let got = peer.collect(WINDOW_MS).await;
    assert_eq!(got.len(), 1 + MAX_FINAL_RETRANSMITS as usize, "{got:?}");
    factor("configured trunk, whole transaction (bound)", &msg, &got);
}

/// With RFC 3261's default timers (T1 = 500 ms, T2 = 4 s) an unACKed final to a configured trunk
/// is sent 11 times before timer H (32 s): measured over the whole transaction with T1 = 50 ms,
/// T2 = 400 ms, the same schedule scaled down (copies at 0, 0.05, 0.15, 0.35, 0.75, 1.15 ... 3.15 s,
/// timer H at 3.2 s).
#[tokio::test]
async fn whole_transaction_count_at_rfc_timer_ratio() {
    let addr = start(
        |p| Trunks::new(vec![trunk(p, "127.0.0.1/32")], UnknownSource::Reject),
        reject(),
        Duration::ZERO,
        T1,
        Duration::from_millis(400),
    )
    .await;
    let peer = Peer::new(addr).await;
    let msg = invite(peer.port(), "rfc3");
    peer.send(&msg).await;
    let got = peer.collect(3500).await;
    assert_eq!(got.len(), 11, "{got:?}");
    factor("configured trunk, whole transaction to timer H", &msg, &got);
}
