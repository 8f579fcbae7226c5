//! The production topology end to end: carrier (sipp UAC) → Kamailio with `dispatcher`
//! (deploy/kamailio/kamailio.cfg, run as shipped) → two `tollgate serve` nodes sharing one
//! Redis → the 302 followed by Kamailio → the ACD (sipp UAS), which answers 200. Shared state
//! across the nodes, a node killed -9 under load, and a rolling restart: the carrier must see
//! no failed call.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod http_support;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_support::*;

const DNIS: &str = "+18005550199";

fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A node's config: SIP and HTTP on fixed ports (so a restart comes back where the dispatcher
/// expects it), the proxy's address as the one trusted trunk, the example rules, risk and pops
/// in the shared Redis.
fn node_config(name: &str, sip: u16, http: u16, acd: u16, redis: &str) -> String {
    format!(
        r#"[sip]
udp = ["127.0.0.1:{sip}"]
drain_timeout_ms = 2000

[[trunk]]
name = "sbc"
cidrs = ["127.0.0.1/32"]
trusted = true

[routing]
acd_host = "127.0.0.1:{acd}"
emergency_queue = "emergency"
rules_dir = "{routes}"

[log]
format = "json"
level = "info"

[risk]
store = "redis"
[risk.redis]
url = "{redis}"
[risk.velocity]
windows = [60]
ani = [1000]
ani_dnis = [0]
npa_nxx = [0]

[http]
listen = "127.0.0.1:{http}"
node = "{name}"
redis_url = "{redis}"

[[http.token]]
name = "general-agent"
scope = "agent"
queues = ["general"]
token = "{AGENT_GENERAL}"

[[http.token]]
name = "ops"
scope = "admin"
token = "{ADMIN}"
"#,
        routes = repo().join("config/routes").display()
    )
}

struct Node {
    name: &'static str,
    sip: u16,
    http: u16,
    text: String,
    proc: Option<Process>,
}

impl Node {
    fn start(&mut self) {
        self.proc = Some(Process::start(&self.text));
    }

    fn proc(&self) -> &Process {
        self.proc.as_ref().unwrap()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

struct Kamailio {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Kamailio {
    fn start(dir: &Path, nodes: &[&Node]) -> Self {
        let list = dir.join("dispatcher.list");
        let lines: String = nodes
            .iter()
            .map(|n| format!("1 sip:127.0.0.1:{} 0 0\n", n.sip))
            .collect();
        std::fs::write(&list, lines).unwrap();
        let port = udp_port();
        let log = dir.join("kamailio.log");
        let run = dir.join("kamailio-run");
        std::fs::create_dir_all(&run).unwrap();
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(repo().join("deploy/kamailio/kamailio.cfg"))
            .args(["-DD", "-E", "-A"])
            .arg(format!("LISTEN=udp:127.0.0.1:{port}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .arg("-Y")
            .arg(&run)
            .arg("-w")
            .arg(&run)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio is installed (apt-get install kamailio; .ci/run does)");
        Self { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the dispatcher has probed every node and holds it active: a call through
    /// Kamailio then reaches each node in turn.
    fn wait_active(&self) {
        std::thread::sleep(Duration::from_millis(1500));
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The ACD: a sipp UAS that checks the Request-URI of each INVITE and answers 200; its
/// message trace is read back to check the values.
struct Acd {
    child: Child,
    port: u16,
    trace: PathBuf,
}

impl Acd {
    fn start(dir: &Path) -> Self {
        let port = udp_port();
        let trace = dir.join("acd_messages.log");
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(repo().join("tests/data/sipp/acd_uas.xml"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
            .args(["-trace_msg", "-message_file"])
            .arg(&trace)
            .args(["-trace_err", "-error_file"])
            .arg(dir.join("acd_errors.log"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp runs (apt-get install sip-tester)");
        Self { child, port, trace }
    }

    /// The Request-URIs of the INVITEs the ACD received, with the P-Asserted-Identity each
    /// carried.
    fn invites(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.trace).unwrap_or_default();
        let mut out = Vec::new();
        for msg in text.split("----------------------------------------------") {
            let Some(start) = msg.find("INVITE sip:") else {
                continue;
            };
            let m = &msg[start..];
            let ruri = m
                .lines()
                .next()
                .unwrap()
                .trim_start_matches("INVITE ")
                .trim_end_matches(" SIP/2.0")
                .trim()
                .to_owned();
            let pai = m
                .lines()
                .find_map(|l| l.strip_prefix("P-Asserted-Identity:"))
                .unwrap_or("")
                .trim()
                .to_owned();
            out.push((ruri, pai));
        }
        out
    }
}

impl Drop for Acd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sipp UAC run against Kamailio: counters and every call's INVITE→200 time.
struct CarrierRun {
    successful: usize,
    failed: usize,
    rtt_ms: Vec<f64>,
    stderr: String,
}

/// `calls` carrier calls at `rate`/s, each from its own caller (distinct exchanges).
fn carrier(dir: &Path, kamailio: u16, calls: usize, rate: usize, tag: &str) -> CarrierRun {
    let run = dir.join(format!("carrier-{tag}"));
    std::fs::create_dir_all(&run).unwrap();
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..calls {
        let nxx = 200 + i % 700;
        let line = 1000 + i / 700;
        csv.push_str(&format!("+1212{nxx}{line};{DNIS};+1212{nxx}{line}\n"));
    }
    std::fs::write(run.join("calls.csv"), csv).unwrap();
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{kamailio}"))
        .arg("-sf")
        .arg(repo().join("tests/data/sipp/carrier_call.xml"))
        .arg("-inf")
        .arg(run.join("calls.csv"))
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-l",
            "500",
        ])
        .args(["-i", "127.0.0.1", "-p", "0", "-nostdin"])
        .args([
            "-timeout",
            "120s",
            "-timeout_error",
            "-recv_timeout",
            "10000",
        ])
        .args(["-trace_stat", "-stf"])
        .arg(run.join("stat.csv"))
        .args(["-trace_rtt", "-rtt_freq", "1"])
        .current_dir(&run)
        .output()
        .expect("sipp runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stat = std::fs::read_to_string(run.join("stat.csv")).unwrap_or_default();
    let rows: Vec<Vec<&str>> = stat.lines().map(|l| l.split(';').collect()).collect();
    assert!(rows.len() >= 2, "sipp stats missing; stderr: {stderr}");
    let col = |name: &str| {
        let i = rows[0].iter().position(|h| *h == name).unwrap();
        rows.last().unwrap()[i].parse::<usize>().unwrap()
    };
    let mut rtt_ms = Vec::new();
    for e in std::fs::read_dir(&run).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with("_rtt.csv") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            rtt_ms.extend(
                text.lines()
                    .skip(1)
                    .filter_map(|l| l.split(';').nth(1)?.trim().parse::<f64>().ok()),
            );
        }
    }
    CarrierRun {
        successful: col("SuccessfulCall(C)"),
        failed: col("FailedCall(C)"),
        rtt_ms,
        stderr,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct Rig {
    dir: tempfile::TempDir,
    redis: RedisServer,
    a: Node,
    b: Node,
    acd: Acd,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start();
        let acd = Acd::start(dir.path());
        let node = |name: &'static str| {
            let (sip, http) = (udp_port(), tcp_port());
            Node {
                name,
                sip,
                http,
                text: node_config(name, sip, http, acd.port, &redis.url()),
                proc: None,
            }
        };
        let (mut a, mut b) = (node("node-a"), node("node-b"));
        a.start();
        b.start();
        Self {
            dir,
            redis,
            a,
            b,
            acd,
        }
    }

    fn kamailio(&self) -> Kamailio {
        let k = Kamailio::start(self.dir.path(), &[&self.a, &self.b]);
        k.wait_active();
        k
    }
}

/// Calls through Kamailio reach the ACD with the queue, a call reference and the ANI the node
/// believed (the PAI) in the Request-URI; both nodes take calls; the state is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_kamailio_reach_the_acd_with_queue_reference_and_ani_and_state_is_shared() {
    let rig = Rig::new();
    ready(&rig.a.base()).await;
    ready(&rig.b.base()).await;
    let mut desk_a = Sse::subscribe(
        &format!("{}/v1/pops/stream?queue=general", rig.a.base()),
        AGENT_GENERAL,
    )
    .await;
    let k = rig.kamailio();
    let dir = rig.dir.path().to_owned();
    let port = k.port;
    let run = tokio::task::spawn_blocking(move || carrier(&dir, port, 40, 20, "basic"))
        .await
        .unwrap();
    assert_eq!(
        (run.successful, run.failed),
        (40, 0),
        "carrier side: {}\n{}",
        run.stderr,
        k.log()
    );
    let invites = rig.acd.invites();
    assert_eq!(invites.len(), 40, "{invites:?}");
    let mut refs = std::collections::HashSet::new();
    for (ruri, pai) in &invites {
        // sip:general@127.0.0.1:PORT;ref=<16 hex>;ani=%2B1212…
        let (user_host, params) = ruri.split_once(';').unwrap();
        assert_eq!(
            user_host,
            format!("sip:general@127.0.0.1:{}", rig.acd.port),
            "{ruri}"
        );
        let param = |k: &str| {
            params
                .split(';')
                .find_map(|p| p.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} in {ruri}"))
        };
        let call_ref = param("ref");
        assert!(
            call_ref.len() == 16 && call_ref.bytes().all(|b| b.is_ascii_hexdigit()),
            "{ruri}"
        );
        assert!(refs.insert(call_ref.to_owned()), "call refs are unique");
        let ani = param("ani").replace("%2B", "+");
        assert!(
            pai.contains(&format!("<sip:{ani}@")),
            "the ANI in the R-URI is the PAI's: {ruri} vs {pai}"
        );
    }
    // Both nodes routed calls (round robin), and node A's desktop saw node B's calls.
    let mut nodes = std::collections::HashSet::new();
    for _ in 0..40 {
        let pop = desk_a.pop().await;
        nodes.insert(pop["node"].as_str().unwrap().to_owned());
    }
    assert_eq!(nodes.len(), 2, "pops from both nodes on node A: {nodes:?}");

    // A number blocked through node A's API is blocked on node B (called directly).
    let (s, v) = json(
        http()
            .post(format!("{}/v1/admin/lists/block", rig.a.base()))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(r#"{"pattern": "+12125550123", "reason": "test"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = call(rig.b.proc().udp, DNIS, "+12125550123", "blocked-on-b").await;
        if r.starts_with("SIP/2.0 603") {
            break;
        }
        assert!(Instant::now() < deadline, "node B never blocked it: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Velocity counted through both nodes is one count: 3 calls on A, 3 on B, one key of 6.
    for i in 0..3 {
        call(rig.a.proc().udp, DNIS, "+16465550177", &format!("v-a-{i}")).await;
        call(rig.b.proc().udp, DNIS, "+16465550177", &format!("v-b-{i}")).await;
    }
    let mut c = rig.redis_conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tg:*:a:16465550177")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let n: usize = redis::cmd("ZCARD").arg(&keys[0]).query(&mut c).unwrap();
    assert_eq!(n, 6, "one count across both nodes");
}

impl Rig {
    fn redis_conn(&self) -> redis::Connection {
        redis::Client::open(self.redis.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

/// kill -9 of one node during a steady carrier run: Kamailio's INVITE to the dead node times out
/// (FR_NODE_MS, 500 ms), the call goes to the other node, and the dead node leaves the rotation
/// at its first missed probe. The carrier sees no failed call; the retried calls took about the
/// failover timeout longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_load_fails_no_call() {
    let rig = Rig::new();
    ready(&rig.a.base()).await;
    ready(&rig.b.base()).await;
    let k = rig.kamailio();
    let dir = rig.dir.path().to_owned();
    let port = k.port;
    const CALLS: usize = 400;
    let run = tokio::task::spawn_blocking(move || carrier(&dir, port, CALLS, 50, "kill"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.a.proc().signal("-KILL");
    let run = run.await.unwrap();
    let log = k.log();
    let retried = log.matches("tollgate: retry ").count();
    let slow: Vec<f64> = run.rtt_ms.iter().copied().filter(|&t| t >= 400.0).collect();
    eprintln!(
        "node A killed -9 at ~3 s of {CALLS} calls at 50/s: {} ok, {} failed; {retried} calls \
         retried on node B; INVITE→200 median {:.1} ms over all calls, {} calls ≥ 400 ms with \
         median {:.0} ms (the 500 ms failover timeout)",
        run.successful,
        run.failed,
        median(&run.rtt_ms),
        slow.len(),
        median(&slow)
    );
    assert_eq!(run.failed, 0, "carrier side: {}\n{log}", run.stderr);
    assert_eq!(run.successful, CALLS);
    assert!(retried > 0, "the dispatcher saw the dead node: {log}");
    assert_eq!(rig.acd.invites().len(), CALLS);
}

/// A rolling restart under load: SIGTERM node A (it drains: 503 to new INVITEs and probes),
/// start it again on the same ports, wait until the dispatcher probes it back in, then the same
/// for node B. The carrier sees no failed call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_fails_no_call() {
    let mut rig = Rig::new();
    ready(&rig.a.base()).await;
    ready(&rig.b.base()).await;
    let k = rig.kamailio();
    let dir = rig.dir.path().to_owned();
    let port = k.port;
    const CALLS: usize = 600;
    let run = tokio::task::spawn_blocking(move || carrier(&dir, port, CALLS, 50, "rolling"));
    let mut drains = Vec::new();
    for which in [0, 1] {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let node = if which == 0 { &mut rig.a } else { &mut rig.b };
        let started = Instant::now();
        node.proc().signal("-TERM");
        let mut p = node.proc.take().unwrap();
        let status = tokio::task::spawn_blocking(move || p.wait()).await.unwrap();
        assert!(status.success(), "{} exit {status:?}", node.name);
        drains.push((node.name, started.elapsed()));
        node.start();
        ready(&node.base()).await;
        // Back in the rotation at the dispatcher's next probe (every second).
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let run = run.await.unwrap();
    let log = k.log();
    let retried = log.matches("tollgate: retry ").count();
    let saw_503 = log.matches("(status 503)").count();
    eprintln!(
        "rolling restart under {CALLS} calls at 50/s: {} ok, {} failed; drains {drains:?}; \
         {retried} calls retried ({saw_503} on a 503 from a draining node, the rest on no \
         answer); INVITE→200 median {:.1} ms",
        run.successful,
        run.failed,
        median(&run.rtt_ms)
    );
    assert_eq!(run.failed, 0, "carrier side: {}\n{log}", run.stderr);
    assert_eq!(run.successful, CALLS);
    assert_eq!(rig.acd.invites().len(), CALLS);
}
