//! `flood`: offers INVITEs over UDP at a fixed rate and reports what came back and what the
//! server's RSS did. It is the load side of `benches/flood.sh` (issue 18: memory is bounded
//! whatever is offered; the server sheds, it never grows).
//!
//! ```text
//! flood --target 127.0.0.1:5060 --rate 8000 --seconds 60 [--pid PID] [--no-ack] [--settle 40]
//! ```
//!
//! Each call has its own Call-ID and branch. A final response is ACKed (as a carrier does)
//! unless `--no-ack`, which leaves every transaction to timer H: the worst case for the table.
//! Every second it prints the server's RSS (from /proc/PID/status) and the answers so far;
//! at the end one JSON line with the totals, the peak RSS and the RSS after `--settle` seconds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SOCKETS: usize = 8;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    redirected: AtomicU64,
    unavailable: AtomicU64,
    other: AtomicU64,
    trying: AtomicU64,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn invite(port: u16, n: u64, worker: usize) -> String {
    // Every call of the run its own ANI (up to 7 million): the senders interleave their
    // numbers instead of each counting from the same start.
    let ani = 2_000_000 + ((n * SOCKETS as u64 + worker as u64) % 7_000_000);
    format!(
        "INVITE sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKfl{worker}x{n}\r\n\
Max-Forwards: 70\r\n\
From: <sip:+1212{ani:07}@carrier.example.net;user=phone>;tag=f{n}\r\n\
To: <sip:+18005550100@127.0.0.1;user=phone>\r\n\
Call-ID: fl{worker}x{n}@carrier.example.net\r\n\
CSeq: 1 INVITE\r\n\
P-Asserted-Identity: <sip:+1212{ani:07}@carrier.example.net;user=phone>\r\n\
Content-Length: 0\r\n\r\n"
    )
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The ACK for a non-2xx final: the INVITE's branch (from the response's Via), its To with the tag.
fn ack(resp: &str) -> Option<String> {
    let via = header(resp, "Via")?;
    let from = header(resp, "From")?;
    let to = header(resp, "To")?;
    let call = header(resp, "Call-ID")?;
    Some(format!(
        "ACK sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target: SocketAddr = arg(&args, "--target", "127.0.0.1:5060".parse().unwrap());
    let rate: u64 = arg(&args, "--rate", 1000);
    let seconds: u64 = arg(&args, "--seconds", 10);
    let settle: u64 = arg(&args, "--settle", 0);
    let pid: u32 = arg(&args, "--pid", 0);
    let no_ack = args.iter().any(|a| a == "--no-ack");
    let counts = Arc::new(Counts::default());
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut threads = Vec::new();
    for w in 0..SOCKETS {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let port = sock.local_addr().unwrap().port();
        let rx = sock.try_clone().unwrap();
        let (counts_tx, counts_rx) = (Arc::clone(&counts), Arc::clone(&counts));
        let (done_tx, done_rx) = (Arc::clone(&done), Arc::clone(&done));
        // Sender: rate/SOCKETS per second, in 1 ms slices.
        threads.push(std::thread::spawn(move || {
            let per_ms = rate as f64 / SOCKETS as f64 / 1000.0;
            let end = started + Duration::from_secs(seconds);
            let mut n = 0u64;
            while Instant::now() < end {
                let due = (started.elapsed().as_secs_f64() * 1000.0 * per_ms) as u64;
                while n < due {
                    let msg = invite(port, n, w);
                    if sock.send_to(msg.as_bytes(), target).is_ok() {
                        counts_tx.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            done_tx.store(true, Ordering::Relaxed);
        }));
        // Receiver: the first final per call counts; each final is ACKed unless --no-ack.
        threads.push(std::thread::spawn(move || {
            let mut seen = HashSet::new();
            let mut buf = vec![0u8; 65536];
            let grace = Duration::from_secs(seconds + 3);
            loop {
                match rx.recv_from(&mut buf) {
                    Ok((len, _)) => {
                        let resp = String::from_utf8_lossy(&buf[..len]);
                        let code: u16 = resp.get(8..11).and_then(|s| s.parse().ok()).unwrap_or(0);
                        if code == 100 {
                            counts_rx.trying.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let call = header(&resp, "Call-ID").unwrap_or_default().to_owned();
                        if !no_ack {
                            if let Some(a) = ack(&resp) {
                                let _ = rx.send_to(a.as_bytes(), target);
                            }
                        }
                        if !seen.insert(call) {
                            continue;
                        }
                        match code {
                            302 => &counts_rx.redirected,
                            503 => &counts_rx.unavailable,
                            _ => &counts_rx.other,
                        }
                        .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        if done_rx.load(Ordering::Relaxed) && started.elapsed() > grace {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let peak = Arc::new(Mutex::new(0u64));
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(seconds + 3) {
        std::thread::sleep(Duration::from_secs(1));
        let rss = if pid > 0 { rss_kb(pid).unwrap_or(0) } else { 0 };
        {
            let mut p = peak.lock().unwrap();
            *p = (*p).max(rss);
        }
        let ok = counts.redirected.load(Ordering::Relaxed);
        eprintln!(
            "t={:>3}s sent={} 302={} (+{}/s) 503={} other={} rss={} MB",
            started.elapsed().as_secs(),
            counts.sent.load(Ordering::Relaxed),
            ok,
            ok - last,
            counts.unavailable.load(Ordering::Relaxed),
            counts.other.load(Ordering::Relaxed),
            rss / 1024
        );
        last = ok;
    }
    for t in threads {
        let _ = t.join();
    }
    let mut after = Vec::new();
    for _ in 0..settle {
        std::thread::sleep(Duration::from_secs(1));
        if pid > 0 {
            after.push(rss_kb(pid).unwrap_or(0));
        }
    }
    let sent = counts.sent.load(Ordering::Relaxed);
    let ok = counts.redirected.load(Ordering::Relaxed);
    let unavailable = counts.unavailable.load(Ordering::Relaxed);
    let answered = ok + unavailable + counts.other.load(Ordering::Relaxed);
    println!(
        "{{\"rate\":{rate},\"seconds\":{seconds},\"ack\":{},\"sent\":{sent},\"answered\":{answered},\"302\":{ok},\"503\":{unavailable},\"unanswered\":{},\"goodput_per_s\":{:.0},\"peak_rss_mb\":{},\"rss_after_settle_mb\":{}}}",
        !no_ack,
        sent.saturating_sub(answered),
        ok as f64 / seconds.max(1) as f64,
        *peak.lock().unwrap() / 1024,
        after.last().copied().unwrap_or(0) / 1024,
    );
}
