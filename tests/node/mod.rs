//! A whole node as `tollgate serve` wires it (config file in a scratch folder, the adapters
//! `[crm]`, `[risk]` and `[stir]` build, real sockets), with every decided call recorded.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tollgate_core::{CallFacts, Decision};
use tollgate_server::adapters::Adapters;
use tollgate_sip::{Call, CallHandler, Context, Server};

// Every test that builds a node also has the SIP harness (tests/common): one copy of the
// tables per test binary.
pub use crate::common::{intel, plan};

/// Rules every wiring test routes by: no business hours, one queue per fact under test.
pub const RULES: &str = r#"name = "default"
time_zone = "America/New_York"

[[rule]]
name = "blocked"
when = { risk = "blocked" }
reject = { code = 603, reason = "Decline" }

[[rule]]
name = "vip"
when = { tier = "gold" }
queue = { name = "vip", priority = 9, skills = ["gold", "en"], language = "en" }

[[rule]]
name = "attested"
when = { attestation = "A" }
queue = "attested"

[[rule]]
name = "screening"
when = { risk_at_least = "high" }
queue = "screening"

[[rule]]
name = "callback"
when = { repeat_within = "1h", last_queue = "general" }
queue = "callback"

[[rule]]
name = "everyone"
queue = "general"
"#;

/// Rules that never look at risk: the risk policy's own answers (`[risk.block]`, the
/// verification queue) apply to every call they route.
pub const RISK_BLIND_RULES: &str = r#"name = "default"
time_zone = "America/New_York"

[[rule]]
name = "vip"
when = { tier = "gold" }
queue = "vip"

[[rule]]
name = "everyone"
queue = "general"
"#;

pub const QUEUES: &str =
    "queues = [\"general\", \"vip\", \"attested\", \"screening\", \"callback\", \"emergency\"]\n";

/// The `[sip]`, `[[trunk]]` and `[routing]` part; tests append `[crm]`, `[risk]`, `[stir]`.
/// Trunks: `carrier` (127.0.0.1, trusted), `strict` (127.0.0.3, trusted, signed calls only,
/// only when `strict` is true); anything else (127.0.0.2) is untrusted.
pub fn base_config(strict: bool) -> String {
    let mut s = String::from(
        "[sip]\nudp = [\"127.0.0.1:0\"]\nunknown_source = \"untrusted\"\nt1_ms = 50\nt4_ms = 200\n\
         enrich_deadline_ms = 150\n\n\
         [[trunk]]\nname = \"carrier\"\ncidrs = [\"127.0.0.1/32\"]\ntrusted = true\nregion = \"US\"\n\n",
    );
    if strict {
        s.push_str(
            "[[trunk]]\nname = \"strict\"\ncidrs = [\"127.0.0.3/32\"]\ntrusted = true\n\
             identity = \"require\"\n\n",
        );
    }
    s.push_str(
        "[routing]\nacd_host = \"acd.example.net\"\nemergency_queue = \"emergency\"\n\
         rules_dir = \"routes\"\n\n",
    );
    s
}

/// A scratch folder holding the config, the rules and the CRM directory file.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let routes = dir.path().join("routes");
        std::fs::create_dir_all(&routes).unwrap();
        std::fs::write(routes.join("default.toml"), RULES).unwrap();
        std::fs::write(routes.join("queues.toml"), QUEUES).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/directory.csv");
        std::fs::copy(shipped, dir.path().join("directory.csv")).unwrap();
        Self { dir }
    }

    /// Replaces the default rule set.
    pub fn rules(&self, text: &str) {
        std::fs::write(self.path("routes").join("default.toml"), text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `tollgate.toml` and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.path("tollgate.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    pub async fn start(&self, text: &str) -> Node {
        let path = self.write_config(text);
        Node::start(&path).await
    }
}

/// The real pipeline (enrichment, risk, CRM, routing), recording what each call decided.
#[derive(Debug)]
pub struct Rec {
    pub inner: tollgate_server::Pipeline,
    pub calls: Mutex<Vec<(CallFacts, Decision)>>,
    /// Pipeline runs: a retransmission must not add one.
    pub runs: AtomicUsize,
    /// The longest any decision took (enrichment included).
    pub slowest: Mutex<std::time::Duration>,
}

impl CallHandler for Rec {
    async fn decide(&self, call: &mut Call) -> Decision {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let d = CallHandler::decide(&self.inner, call).await;
        let took = started.elapsed();
        let mut slowest = self.slowest.lock().unwrap();
        *slowest = (*slowest).max(took);
        drop(slowest);
        self.calls
            .lock()
            .unwrap()
            .push((call.facts.clone(), d.clone()));
        d
    }
}

pub struct Node {
    pub udp: SocketAddr,
    pub server: Arc<Server<Rec>>,
    pub adapters: Adapters,
    stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl Node {
    pub async fn start(config: &Path) -> Node {
        let plan = plan();
        let cfg = tollgate_server::config::load(config, &plan).unwrap_or_else(|e| panic!("{e}"));
        let (udp, tcp) = tollgate_sip::bind(&cfg.udp, &cfg.tcp).await.unwrap();
        let udp_addr = udp[0].local_addr().unwrap();
        let rules = tollgate_server::rule_store(&cfg).unwrap();
        let (inner, adapters) =
            tollgate_server::wired_pipeline(&cfg, Arc::clone(&plan), intel(), rules)
                .await
                .unwrap();
        let server = Server::new(Context {
            handler: Rec {
                inner,
                calls: Mutex::new(Vec::new()),
                runs: AtomicUsize::new(0),
                slowest: Mutex::new(std::time::Duration::ZERO),
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
        Node {
            udp: udp_addr,
            server,
            adapters,
            stop: Some(tx),
            done: tokio::spawn(run),
        }
    }

    pub fn calls(&self) -> Vec<(CallFacts, Decision)> {
        self.server.handler().calls.lock().unwrap().clone()
    }

    /// The recorded call with this Call-ID.
    pub fn call(&self, call_id: &str) -> (CallFacts, Decision) {
        self.calls()
            .into_iter()
            .find(|(f, _)| f.call_id == call_id)
            .unwrap_or_else(|| panic!("no call {call_id} recorded"))
    }

    pub fn slowest(&self) -> std::time::Duration {
        *self.server.handler().slowest.lock().unwrap()
    }

    pub fn runs(&self) -> usize {
        self.server.handler().runs.load(Ordering::SeqCst)
    }

    pub fn engine(&self) -> &Arc<tollgate_risk::RiskEngine> {
        self.adapters.engine.as_ref().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A UDP peer on a chosen loopback address (127.0.0.2 is an untrusted source here).
pub async fn peer_from(ip: &str, server: SocketAddr) -> crate::common::Peer {
    crate::common::Peer {
        sock: UdpSocket::bind(format!("{ip}:0")).await.unwrap(),
        server,
    }
}

/// An INVITE from a trusted carrier: PAI names the caller; `extra` adds header lines.
pub fn invite_pai(dnis: &str, ani: &str, extra: &str, id: &str, port: u16) -> String {
    crate::common::invite(
        dnis,
        ani,
        &format!("P-Asserted-Identity: <sip:{ani}@carrier.example.net;user=phone>\r\n{extra}"),
        id,
        port,
    )
}

/// The Call-ID `common::invite` gives a branch.
pub fn call_id(branch: &str) -> String {
    format!("{branch}@carrier.example.net")
}
