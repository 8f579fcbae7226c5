//! `stream`: offers INVITEs over TCP or TLS on a few long-lived connections (as a carrier's SBC
//! does: connection reuse) at a fixed rate, ACKs each final response, and reports the server's
//! CPU per 1000 calls. The load side of `benches/tls.sh` (issue 20: CPU per call over TLS side
//! by side with TCP); sipp here has no TLS.
//!
//! ```text
//! stream --target 127.0.0.1:5061 --tls --ca ca.pem [--cert c.pem --key c.key] \
//!        --rate 2000 --calls 20000 --conns 4 --pid PID [--settle 6]
//! stream --make-pki DIR      # ca.pem, tollgate.pem/.key (tollgate.test), sbc.pem/.key (sbc.carrier.test)
//! ```
//!
//! Prints one JSON line: calls sent, 302s and other finals received, the server's CPU ms over
//! the run plus `--settle` seconds (its timers included), and CPU ms per 1000 calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of `pid` in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn make_pki(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ca = tollgate_testkit::Ca::new("bench ca");
    ca.write(&dir.join("ca.pem"));
    ca.write_leaf(dir, "tollgate", "tollgate.test");
    ca.write_leaf(dir, "sbc", "sbc.carrier.test");
}

fn invite(n: u64, conn: usize) -> String {
    let ani = 2_000_000 + n;
    format!(
        "INVITE sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bKs{conn}x{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+1212{ani:07}@carrier.example;user=phone>;tag=f{n}\r\n\
         To: <sip:+18005550100@127.0.0.1;user=phone>\r\n\
         Call-ID: s{conn}x{n}@stream\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:sbc@127.0.0.1:5099>\r\n\
         P-Asserted-Identity: <sip:+1212{ani:07}@carrier.example;user=phone>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The ACK for a final response: the INVITE's branch (its Via), From, To with the tag,
/// Call-ID, CSeq 1 ACK (RFC 3261 §17.1.1.3).
fn ack_for(resp: &str) -> String {
    let mut out = String::from("ACK sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\n");
    for l in resp.split("\r\n") {
        let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
        if matches!(name.as_str(), "via" | "from" | "to" | "call-id") {
            // The response's Via has received/rport added; the branch is what matters.
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out.push_str("CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    out
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    redirected: AtomicU64,
    other: AtomicU64,
}

async fn drive<S>(stream: S, conn: usize, per_conn: u64, interval: Duration, counts: Arc<Counts>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if wr.write_all(m.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let reader = {
        let tx = tx.clone();
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            let mut chunk = vec![0u8; 65536];
            let mut finals = 0u64;
            while finals < per_conn {
                let n = match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let msg: Vec<u8> = buf.drain(..end + 4).collect();
                    let text = String::from_utf8_lossy(&msg);
                    if text.starts_with("SIP/2.0 1") {
                        continue;
                    }
                    finals += 1;
                    if text.starts_with("SIP/2.0 302") {
                        counts.redirected.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counts.other.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = tx.send(ack_for(&text));
                }
            }
        })
    };
    let mut tick = tokio::time::interval(interval);
    for i in 0..per_conn {
        tick.tick().await;
        let _ = tx.send(invite(i, conn));
        counts.sent.fetch_add(1, Ordering::Relaxed);
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
    writer.abort();
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = arg(&args, "--make-pki") {
        make_pki(Path::new(&dir));
        return;
    }
    let target: SocketAddr = arg(&args, "--target").expect("--target").parse().unwrap();
    let tls = args.iter().any(|a| a == "--tls");
    let rate: u64 = num(&args, "--rate", 2000);
    let calls: u64 = num(&args, "--calls", 20000);
    let conns: usize = num(&args, "--conns", 4);
    let settle: u64 = num(&args, "--settle", 6);
    let pid: Option<u32> = arg(&args, "--pid").and_then(|p| p.parse().ok());
    let per_conn = calls / conns as u64;
    let interval = Duration::from_secs_f64(conns as f64 / rate as f64);

    let connector = tls.then(|| {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(arg(&args, "--ca").expect("--ca")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let cfg = match (arg(&args, "--cert"), arg(&args, "--key")) {
            (Some(c), Some(k)) => b
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(c)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(k).unwrap(),
                )
                .unwrap(),
            _ => b.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    });

    // Connections (and TLS handshakes) are made before the CPU count starts: reuse is the point.
    let mut streams = Vec::new();
    for _ in 0..conns {
        let tcp = TcpStream::connect(target).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        streams.push(tcp);
    }
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();
    let mut tls_streams = Vec::new();
    if let Some(c) = &connector {
        for tcp in streams.drain(..) {
            let s = c
                .connect(ServerName::try_from("tollgate.test").unwrap(), tcp)
                .await
                .unwrap();
            tls_streams.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu0 = pid.map(cpu_ticks);
    let start = Instant::now();
    for (i, s) in tls_streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(drive(
            s,
            i,
            per_conn,
            interval,
            Arc::clone(&counts),
        )));
    }
    for (i, s) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(drive(
            s,
            i,
            per_conn,
            interval,
            Arc::clone(&counts),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let cpu_ms = match (pid, cpu0) {
        (Some(p), Some(c0)) => (cpu_ticks(p) - c0) * 10,
        _ => 0,
    };
    let sent = counts.sent.load(Ordering::Relaxed);
    let redirected = counts.redirected.load(Ordering::Relaxed);
    println!(
        "{{\"transport\":\"{}\",\"sent\":{sent},\"redirected\":{redirected},\"other\":{},\"seconds\":{:.2},\"cpu_ms\":{cpu_ms},\"cpu_ms_per_1000\":{:.1}}}",
        if tls { "tls" } else { "tcp" },
        counts.other.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        cpu_ms as f64 * 1000.0 / redirected.max(1) as f64
    );
}
