//! Support for the HTTP API's end-to-end tests: an engine (in-process `serve`, or a real
//! `tollgate serve` process), a redis-server on its own port, SSE / WebSocket / webhook peers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tollgate_core::{NumberIntel, NumberPlan};

pub const WAIT: Duration = Duration::from_secs(15);

// The SSE, WebSocket and HTTP clients, shared with the API crate's own tests.
#[path = "../../crates/api/tests/common/clients.rs"]
mod clients;
pub use clients::*;
pub const AGENT_GENERAL: &str = "agent-general-token-0001";
pub const AGENT_DE: &str = "agent-general-de-token-02";
pub const ADMIN: &str = "admin-token-0000000000003";

pub fn plan() -> Arc<NumberPlan> {
    static PLAN: OnceLock<Arc<NumberPlan>> = OnceLock::new();
    Arc::clone(PLAN.get_or_init(|| Arc::new(NumberPlan::load())))
}

pub fn intel() -> Arc<NumberIntel> {
    static INTEL: OnceLock<Arc<NumberIntel>> = OnceLock::new();
    Arc::clone(INTEL.get_or_init(|| Arc::new(NumberIntel::load().unwrap())))
}

pub fn routes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/routes")
}

/// SIP on port 0 (trunk `local`, trusted), the example rules, and `[http]` on port 0 with an
/// agent token for `general`, one for `general-de`, and an admin token; `extra` is appended
/// inside `[http]` (webhooks, redis_url, node).
pub fn config(http_extra: &str) -> String {
    format!(
        r#"[sip]
udp = ["127.0.0.1:0"]
t1_ms = 50
t4_ms = 200

[[trunk]]
name = "local"
cidrs = ["127.0.0.1/32"]
trusted = true

[routing]
acd_host = "acd.example.net"
emergency_queue = "emergency"
rules_dir = "{routes}"

[log]
format = "json"
level = "info"

[http]
listen = "127.0.0.1:0"
{http_extra}

[[http.token]]
name = "general-agent"
scope = "agent"
queues = ["general"]
token = "{AGENT_GENERAL}"

[[http.token]]
name = "de-agent"
scope = "agent"
queues = ["general-de"]
token = "{AGENT_DE}"

[[http.token]]
name = "ops"
scope = "admin"
token = "{ADMIN}"
"#,
        routes = routes_dir().display()
    )
}

/// A whole engine in this process, as `tollgate serve` runs it.
pub struct Engine {
    pub udp: SocketAddr,
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl Engine {
    pub async fn start(text: &str) -> Self {
        let cfg = tollgate_server::config::parse(Path::new("pops-test.toml"), text, &plan())
            .unwrap_or_else(|e| panic!("{e}"));
        Self::from_config(cfg).await
    }

    /// From a config file (relative paths in it resolve beside it).
    pub async fn start_file(path: &Path) -> Self {
        let cfg = tollgate_server::config::load(path, &plan()).unwrap_or_else(|e| panic!("{e}"));
        Self::from_config(cfg).await
    }

    async fn from_config(cfg: tollgate_server::Loaded) -> Self {
        let plan = plan();
        let (tx, rx) = oneshot::channel::<()>();
        let (bound, run) = tollgate_server::serve(cfg, plan, intel(), async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        Self {
            udp: bound.udp[0],
            http: bound.http.expect("[http] is configured"),
            stop: Some(tx),
            done: tokio::spawn(run),
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(WAIT, self.done)
            .await
            .expect("engine stopped")
            .unwrap();
    }
}

/// An INVITE from a trusted trunk with the caller in P-Asserted-Identity.
pub fn invite(dnis: &str, ani: &str, call: &str, port: u16) -> String {
    let user = |s: &str| s.replace('+', "%2B");
    format!(
        "INVITE sip:{d}@127.0.0.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:{a}@carrier.example.net;user=phone>;tag=f{call}\r\n\
To: <sip:{d}@127.0.0.1;user=phone>\r\n\
Call-ID: {call}@carrier.example.net\r\n\
CSeq: 1 INVITE\r\n\
P-Asserted-Identity: <tel:{ani}>\r\n\
Content-Length: 0\r\n\r\n",
        d = user(dnis),
        a = user(ani),
    )
}

/// Sends an INVITE over UDP and returns the final response (after any 100 Trying).
pub async fn call(sip: SocketAddr, dnis: &str, ani: &str, call_id: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.send_to(invite(dnis, ani, call_id, port).as_bytes(), sip)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("no SIP response")
            .unwrap();
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !r.starts_with("SIP/2.0 100 ") {
            return r;
        }
    }
}

/// The `ref=` parameter of a 302's Contact.
pub fn contact_ref(resp: &str) -> String {
    assert!(resp.starts_with("SIP/2.0 302 "), "expected a 302:\n{resp}");
    let contact = resp
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("contact:"))
        .expect("Contact");
    contact
        .split(';')
        .find_map(|p| p.trim().strip_prefix("ref="))
        .map(|r| r.trim_end_matches('>').to_owned())
        .expect("ref= in Contact")
}

/// Status and JSON body of a request.
pub async fn json(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// A real HTTP webhook receiver: answers the n-th POST with `script[n]` (then 200).
pub async fn receiver(script: Vec<u16>) -> (String, mpsc::UnboundedReceiver<(HeaderMap, String)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let script = Arc::clone(&script);
            async move {
                let _ = tx.send((headers, body));
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

/// Checks `X-Tollgate-Signature` as a receiver would: HMAC-SHA256 over "timestamp.body".
pub fn verify_signature(secret: &str, headers: &HeaderMap, body: &str) {
    let ts = headers["x-tollgate-timestamp"].to_str().unwrap();
    let sig = headers["x-tollgate-signature"].to_str().unwrap();
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let mac: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, format!("{ts}.{body}").as_bytes(), &mac)
        .expect("the webhook signature verifies");
}

/// A redis-server child on a free loopback port; killed on drop.
pub struct RedisServer {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server; .ci/run does)");
        let s = Self {
            port,
            _dir: dir,
            child,
        };
        let start = Instant::now();
        while !s.pings() {
            assert!(start.elapsed() < WAIT, "redis-server never answered PING");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok()
            && s.read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops a forking daemon (Kamailio): SIGTERM, so the main process stops the workers it forked
/// (a SIGKILL would leave them running); SIGKILL only if it has not exited within 5 s.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `tollgate serve` process with its config in a scratch folder; killed on drop.
pub struct Process {
    child: Child,
    pub udp: SocketAddr,
    pub http: SocketAddr,
    /// Every JSON line the process writes after its start-up lines (decision lines too).
    pub log: std::sync::mpsc::Receiver<serde_json::Value>,
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn start(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate.toml");
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--config"])
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The bound addresses come from the start-up log lines (everything listens on port 0).
        let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let (mut udp, mut http) = (None, None);
        let deadline = Instant::now() + WAIT;
        while udp.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = rx
                .recv_timeout(left)
                .expect("tollgate serve logged its addresses");
            let addr = |k: &str| -> Option<SocketAddr> {
                v[k].as_str()?
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            };
            match v["message"].as_str() {
                Some("listening") => udp = addr("udp"),
                Some("HTTP API listening") => http = addr("http"),
                _ => {}
            }
        }
        Self {
            child,
            udp: udp.unwrap(),
            http: http.unwrap(),
            log: rx,
            _dir: dir,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Sends `sig` (`"-TERM"`, `"-KILL"`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Waits for the process to exit (after a signal); its exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `GET /readyz` answers 200 (for a node with Redis: subscribed).
pub async fn ready(base: &str) {
    let c = http();
    let start = Instant::now();
    loop {
        if let Ok(r) = c.get(format!("{base}/readyz")).send().await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        assert!(start.elapsed() < WAIT, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
