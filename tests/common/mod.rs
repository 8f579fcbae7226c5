//! Shared harness: a real server on port 0 with a recording handler, and raw SIP clients.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tollgate_core::{CallFacts, Decision, NumberIntel, NumberPlan};
use tollgate_sip::{Call, CallHandler, Context, Server, SipConfig};

pub fn plan() -> Arc<NumberPlan> {
    static PLAN: OnceLock<Arc<NumberPlan>> = OnceLock::new();
    Arc::clone(PLAN.get_or_init(|| Arc::new(NumberPlan::load())))
}

/// Every example service line is open then: tests do not depend on the wall clock.
pub fn monday_10am_new_york() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_795_446_000).unwrap()
}

pub fn intel() -> Arc<NumberIntel> {
    static INTEL: OnceLock<Arc<NumberIntel>> = OnceLock::new();
    Arc::clone(INTEL.get_or_init(|| Arc::new(NumberIntel::load().unwrap())))
}

/// The example config with listeners on port 0, plus `extra` TOML appended to [sip]/[trunk].
pub fn config_text(trusted: bool, unknown: &str) -> String {
    let base = include_str!("../../config/tollgate.toml");
    let routes = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/routes");
    base.replace("127.0.0.1:5060", "127.0.0.1:0")
        .replace(
            "rules_dir = \"routes\"",
            &format!("rules_dir = \"{routes}\""),
        )
        .replace("trusted = true", &format!("trusted = {trusted}"))
        .replace(
            "unknown_source = \"reject\"",
            &format!("unknown_source = \"{unknown}\""),
        )
        .replace("t1_ms = 500", "t1_ms = 50")
        .replace("t4_ms = 5000", "t4_ms = 200")
        // Shedding by age must stay below T1 (`check` refuses it otherwise).
        .replace("shed_queue_age_ms = 100", "shed_queue_age_ms = 25")
        // The CRM directory beside the example config, wherever the test runs from.
        .replace(
            "path = \"directory.csv\"",
            concat!(
                "path = \"",
                env!("CARGO_MANIFEST_DIR"),
                "/../../config/directory.csv\""
            ),
        )
}

/// Routes with the real pipeline, records every call's facts, optionally after a delay.
#[derive(Debug)]
pub struct Recorder {
    pub inner: tollgate_server::Pipeline,
    pub calls: Mutex<Vec<(CallFacts, String)>>,
    /// Every decision with the facts it was made from, in one list so they never misalign.
    pub decisions: Mutex<Vec<(CallFacts, Decision)>>,
    pub delay: Duration,
    pub count: AtomicUsize,
}

impl CallHandler for Recorder {
    async fn decide(&self, call: &mut Call) -> Decision {
        self.count.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let d = self.inner.decide_now(&mut call.facts);
        self.calls
            .lock()
            .unwrap()
            .push((call.facts.clone(), call.call_ref.clone()));
        self.decisions
            .lock()
            .unwrap()
            .push((call.facts.clone(), d.clone()));
        d
    }
}

pub struct Running {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub server: Arc<Server<Recorder>>,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn recorder(&self) -> &Recorder {
        self.server.handler()
    }

    pub fn facts(&self) -> Vec<(CallFacts, String)> {
        self.recorder().calls.lock().unwrap().clone()
    }

    /// Starts draining; `done` completes when the server has drained.
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start(text: &str, delay: Duration, tweak: impl FnOnce(&mut SipConfig)) -> Running {
    let plan = plan();
    let mut cfg =
        tollgate_server::config::parse(std::path::Path::new("test.toml"), text, &plan).unwrap();
    tweak(&mut cfg.sip);
    let (udp, tcp) = tollgate_sip::bind(&cfg.udp, &cfg.tcp).await.unwrap();
    let udp_addr = udp[0].local_addr().unwrap();
    let tcp_addr = tcp[0].local_addr().unwrap();
    let rules = tollgate_server::rule_store(&cfg).unwrap();
    let mut inner = tollgate_server::pipeline(&cfg, Arc::clone(&plan), intel(), rules);
    inner.clock = monday_10am_new_york;
    let server = Server::new(Context {
        handler: Recorder {
            inner,
            calls: Mutex::new(Vec::new()),
            decisions: Mutex::new(Vec::new()),
            delay,
            count: AtomicUsize::new(0),
        },
        trunks: cfg.trunks,
        plan,
        emergency: cfg.emergency,
        config: cfg.sip,
    });
    let (tx, rx) = oneshot::channel::<()>();
    let run = Arc::clone(&server).run(udp, tcp, async move {
        let _ = rx.await;
    });
    let done = tokio::spawn(run);
    Running {
        udp: udp_addr,
        tcp: tcp_addr,
        server,
        stop: Some(tx),
        done,
    }
}

/// A raw UDP SIP peer.
pub struct Peer {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Peer {
    pub async fn new(server: SocketAddr) -> Self {
        Self {
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
        }
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    pub async fn send(&self, msg: &str) {
        self.sock
            .send_to(msg.as_bytes(), self.server)
            .await
            .unwrap();
    }

    pub async fn send_bytes(&self, msg: &[u8]) {
        self.sock.send_to(msg, self.server).await.unwrap();
    }

    /// The next datagram within `ms`, or None.
    pub async fn recv_within(&self, ms: u64) -> Option<String> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_millis(ms), self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    pub async fn recv(&self) -> String {
        self.recv_within(3000)
            .await
            .expect("no response within 3 s")
    }

    /// The next response that is not 100 Trying.
    pub async fn recv_final(&self) -> String {
        loop {
            let r = self.recv().await;
            if !r.starts_with("SIP/2.0 100 ") {
                return r;
            }
        }
    }
}

pub fn status(resp: &str) -> u16 {
    resp.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A header's value in a response (first occurrence, case-insensitive name).
pub fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// An INVITE with the given extra header lines; `branch` and `call_id` make it unique.
pub fn invite(ruri_user: &str, from_user: &str, extra: &str, branch: &str, port: u16) -> String {
    format!(
        "INVITE sip:{ruri_user}@127.0.0.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:{from_user}@carrier.example.net;user=phone>;tag=f{branch}\r\n\
To: <sip:{ruri_user}@127.0.0.1;user=phone>\r\n\
Call-ID: {branch}@carrier.example.net\r\n\
CSeq: 1 INVITE\r\n\
{extra}\
Content-Length: 0\r\n\r\n"
    )
}

/// The ACK for a non-2xx final: same branch, To with the response's tag.
pub fn ack_for(invite: &str, resp: &str) -> String {
    let to = header(resp, "To").unwrap();
    let mut out = String::new();
    for line in invite.split("\r\n") {
        if line.starts_with("INVITE ") {
            out.push_str(&line.replacen("INVITE", "ACK", 1));
        } else if line.starts_with("To:") {
            out.push_str(&format!("To: {to}"));
        } else if line.starts_with("CSeq:") {
            out.push_str("CSeq: 1 ACK");
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out.truncate(out.len() - 2);
    out
}

/// What one sipp run reported: its final counters, exit status and stderr.
pub struct SippRun {
    pub failed: usize,
    pub successful: usize,
    /// INVITEs sipp sent again (no answer within its T1).
    pub retransmissions: usize,
    /// Messages that reached sipp for no call or for a call already over: a 302 the server
    /// sent again after the call's ACK lands here.
    pub stray: usize,
    pub exit_ok: bool,
    pub stderr: String,
}

/// Runs `tests/data/sipp/invite_302.xml` (INVITE, 302, ACK) against `target` with
/// `dir/calls.csv` injected: `calls` calls at `rate` calls/s, at most `limit` at once, within
/// `timeout` ("60s"). Blocking: call it on a blocking thread. Fails the test when sipp is not
/// installed or left no statistics.
pub fn sipp(
    target: &str,
    dir: &std::path::Path,
    calls: usize,
    rate: usize,
    limit: usize,
    timeout: &str,
) -> SippRun {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/sipp/invite_302.xml");
    let out = std::process::Command::new("sipp")
        .arg(target)
        .args(["-sf", scenario.to_str().unwrap()])
        .args(["-inf", dir.join("calls.csv").to_str().unwrap()])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-l", &limit.to_string(), "-i", "127.0.0.1", "-p", "0"])
        .args(["-timeout", timeout, "-timeout_error"])
        .args(["-recv_timeout", "5000", "-nostdin"])
        .args([
            "-trace_stat",
            "-stf",
            dir.join("stat.csv").to_str().unwrap(),
        ])
        .output()
        .expect("sipp runs (apt-get install sip-tester)");
    let stat = std::fs::read_to_string(dir.join("stat.csv")).unwrap_or_default();
    let rows: Vec<Vec<&str>> = stat.lines().map(|l| l.split(';').collect()).collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(rows.len() >= 2, "sipp stats missing; stderr: {stderr}");
    let col = |name: &str| {
        let i = rows[0].iter().position(|h| *h == name).unwrap();
        rows.last().unwrap()[i].parse::<usize>().unwrap()
    };
    SippRun {
        failed: col("FailedCall(C)"),
        successful: col("SuccessfulCall(C)"),
        retransmissions: col("Retransmissions(C)"),
        stray: col("OutOfCallMsgs(C)") + col("DeadCallMsgs(C)"),
        exit_ok: out.status.success(),
        stderr,
    }
}
