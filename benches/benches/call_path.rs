//! The whole UDP call path over a real loopback socket: a client sends INVITEs in bursts of 32
//! (so the server's `recvmmsg`/`sendmmsg` batches fill), the server parses, checks the
//! transaction table, extracts the facts, decides (a handler answering at once, as the pipeline
//! does for a call with nothing to wait on), renders and stores the 302 with its timers; the
//! client reads the 302s and sends the ACKs, which the server absorbs. Time per call; with
//! `--features dhat` and `CALL_PATH_ALLOCS=1` the heap allocations per call of the whole
//! process instead (dhat's counting allocator; the client allocates nothing per call).
//!
//! `cargo bench -p tollgate-bench --bench call_path`
//! `CALL_PATH_ALLOCS=1 cargo bench -p tollgate-bench --bench call_path --features dhat`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate_core::{Decision, DecisionAction, NumberPlan, Target};
use tollgate_sip::extract::Emergency;
use tollgate_sip::trunk::{Trunk, Trunks, UnknownSource};
use tollgate_sip::{Call, CallHandler, Context, Server, SipConfig};

#[cfg(feature = "dhat")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Routes every call to one queue at once.
#[derive(Debug)]
struct Route(DecisionAction);

impl CallHandler for Route {
    async fn decide(&self, _call: &mut Call) -> Decision {
        Decision {
            action: self.0.clone(),
            rule: "support".into(),
            version: Default::default(),
        }
    }
}

fn start_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let plan = Arc::new(NumberPlan::load());
            let trunk = Trunk {
                name: "carrier".into(),
                cidrs: vec!["127.0.0.1/32".parse().unwrap()],
                trusted: true,
                ani_precedence: Trunk::DEFAULT_ANI.to_vec(),
                dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
                region: plan.region("US").unwrap().clone(),
                tls_peers: Vec::new(),
            };
            let (udp, _) = tollgate_sip::bind(&["127.0.0.1:0".parse().unwrap()], &[])
                .await
                .unwrap();
            tx.send(udp[0].local_addr().unwrap()).unwrap();
            let server = Server::new(Context {
                handler: Route(DecisionAction::Route(Target::new("support", "acd.example"))),
                trunks: Trunks::new(vec![trunk], UnknownSource::Reject),
                plan,
                emergency: Emergency::default(),
                config: SipConfig {
                    // Nothing is retransmitted within a run: the ACKs come first.
                    t1: Duration::from_millis(500),
                    t4: Duration::from_millis(200),
                    ..SipConfig::default()
                },
            });
            server.run(udp, Vec::new(), std::future::pending()).await;
        });
    });
    rx.recv().unwrap()
}

/// The client: one socket, the INVITE and ACK texts written into reused buffers.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    port: u16,
    out: Vec<u8>,
    buf: Vec<u8>,
    next: u64,
}

const BURST: usize = 32;

impl Client {
    fn new(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        Self {
            socket,
            server,
            port,
            out: Vec::with_capacity(1024),
            buf: vec![0; 65536],
            next: 0,
        }
    }

    fn write(&mut self, method: &str, n: u64) {
        self.out.clear();
        let port = self.port;
        write!(
            self.out,
            "{method} sip:+18005550100@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKcp{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+12125550123@carrier.example;user=phone>;tag=f{n}\r\n\
             To: <sip:+18005550100@127.0.0.1;user=phone>\r\n\
             Call-ID: cp{n}@127.0.0.1\r\n\
             CSeq: 1 {method}\r\n\
             P-Asserted-Identity: <sip:+12125550123@carrier.example;user=phone>\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .unwrap();
    }

    /// `BURST` calls: their INVITEs, their 302s, their ACKs.
    fn burst(&mut self) {
        let first = self.next;
        self.next += BURST as u64;
        for n in first..self.next {
            self.write("INVITE", n);
            self.socket.send_to(&self.out, self.server).unwrap();
        }
        for _ in 0..BURST {
            let (len, _) = self.socket.recv_from(&mut self.buf).expect("a 302");
            assert!(self.buf[..len].starts_with(b"SIP/2.0 302"));
        }
        for n in first..self.next {
            self.write("ACK", n);
            self.socket.send_to(&self.out, self.server).unwrap();
        }
    }
}

fn call_path(c: &mut Criterion) {
    let server = start_server();
    let mut client = Client::new(server);
    for _ in 0..50 {
        client.burst();
    }
    #[cfg(feature = "dhat")]
    if std::env::var_os("CALL_PATH_ALLOCS").is_some() {
        let _profiler = dhat::Profiler::builder().testing().build();
        // Let the warm-up's ACKs land, then count a run of calls.
        std::thread::sleep(Duration::from_millis(300));
        let before = dhat::HeapStats::get().total_blocks;
        let bursts = 300;
        for _ in 0..bursts {
            client.burst();
        }
        std::thread::sleep(Duration::from_millis(300));
        let after = dhat::HeapStats::get().total_blocks;
        #[allow(clippy::cast_precision_loss)]
        let per_call = (after - before) as f64 / (bursts * BURST) as f64;
        println!("call_path: {per_call:.1} heap allocations per call (whole process)");
        return;
    }
    let mut group = c.benchmark_group("call_path");
    group.throughput(Throughput::Elements(BURST as u64));
    group.bench_function("udp_invite_302_ack_burst32", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                client.burst();
            }
            start.elapsed()
        });
    });
    group.finish();
}

criterion_group!(benches, call_path);
criterion_main!(benches);
