//! Black-box mutational fuzzing of the real `tollgate serve` binary over UDP and TCP (issue 18
//! item 4): mutations of the RFC 4475 torture messages and of valid INVITEs (bit flips,
//! truncations, duplicated and removed header lines, huge values, CR/LF games, random
//! Content-Length, spliced messages, escaped CR/LF in the URI users the 302 echoes).
//!
//! `TOLLGATE_FUZZ_COUNT` messages (default 2,000) in batches of 200, from a seed
//! `TOLLGATE_FUZZ_SEED` (default 1; printed), half from the trusted trunk's address and half
//! from an address no trunk claims, about one in four over TCP. After every batch the node must
//! still answer OPTIONS with 200 and a valid INVITE with the right 302, over UDP and over TCP;
//! at the end the process must be alive. Every response received, to the mutated messages
//! too, must be one SIP response: framed as one whole message, each line `name: value` without
//! control bytes or folding, only the header names the writer writes, one Content-Length (0:
//! an empty body), a Contact only in a 302 and once, and in a 200 or 302 From, To, Call-ID and
//! CSeq once each (a refusal copies the duplicates of the request it refuses).
//!
//! The long run by hand is in fuzz/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tollgate_sip::message::{drain_frames, frame, Frame, Framed, HeaderName, Message, StartLine};

/// `tollgate serve` as a child process, killed when dropped.
struct Proc {
    child: Child,
    udp: SocketAddr,
    tcp: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first address of a `?Vec<SocketAddr>` log field (`[127.0.0.1:4000]`).
fn first_addr(v: &serde_json::Value) -> Option<SocketAddr> {
    v.as_str()?
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn serve(config: &Path) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["fields"]["message"] == "listening" || v["message"] == "listening" {
                    let _ = tx.send(v);
                }
            }
        }
    });
    let v = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("tollgate serve logs \"listening\"");
    let fields = if v["fields"].is_object() {
        &v["fields"]
    } else {
        &v
    };
    Proc {
        udp: first_addr(&fields["udp"]).expect("a UDP address"),
        tcp: first_addr(&fields["tcp"]).expect("a TCP address"),
        child,
    }
}

const CONFIG: &str = "[sip]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n\
unknown_source = \"untrusted\"\nt1_ms = 50\nt4_ms = 200\n\n\
[[trunk]]\nname = \"carrier\"\ncidrs = [\"127.0.0.1/32\"]\ntrusted = true\nregion = \"US\"\n\n\
[routing]\nacd_host = \"acd.example.net\"\nrules_dir = \"routes\"\n";

const RULES: &str = "name = \"default\"\ntime_zone = \"America/New_York\"\n\n\
[[rule]]\nname = \"everyone\"\nqueue = \"general\"\n";

/// splitmix64: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A valid INVITE from `port`, with `extra` header lines; `id` makes it unique.
fn invite(id: &str, port: u16, from_user: &str, ruri_user: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{ruri_user}@127.0.0.1;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{id};rport\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:{from_user}@carrier.example.net;user=phone>;tag=f{id}\r\n\
To: <sip:{ruri_user}@127.0.0.1;user=phone>\r\n\
Call-ID: {id}@carrier.example.net\r\n\
CSeq: 1 INVITE\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )
}

fn options(id: &str, port: u16) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{id}\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@127.0.0.1>;tag=p{id}\r\n\
To: <sip:127.0.0.1>\r\n\
Call-ID: {id}@probe\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// The messages mutations start from: every RFC 4475 torture message and a few valid INVITEs
/// with the identity and redirection headers the engine reads.
fn bases() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/rfc4475");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(out.len() > 30, "the RFC 4475 messages are in {dir:?}");
    let extras = [
        "",
        "P-Asserted-Identity: <sip:+12125550002@carrier.example.net;user=phone;cpc=ordinary>\r\n",
        "Remote-Party-ID: <sip:+12125550003@c.example;user=phone>;party=calling;screen=yes;privacy=off\r\n",
        "Diversion: <sip:+18005550111@c.example>;reason=unconditional\r\nHistory-Info: <sip:+18005550112@c.example>;index=1\r\n",
        "P-Called-Party-ID: <sip:+18005550113@c.example>\r\nPrivacy: id;user\r\nP-Charge-Info: <sip:+12125550004@c.example>\r\n",
        "Identity: eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln;info=<https://cert.example.org/a.cer>;alg=ES256;ppt=shaken\r\n",
        "Require: 100rel, foo\r\nSupported: timer\r\n",
    ];
    for (i, extra) in extras.iter().enumerate() {
        out.push(
            invite(
                &format!("base{i}"),
                5060,
                "+12125550001",
                "+18005550100",
                extra,
            )
            .into_bytes(),
        );
    }
    out.push(options("baseo", 5060).into_bytes());
    out
}

/// Header lines of `m` as (start, end) byte ranges, the start line excluded.
fn header_lines(m: &[u8]) -> Vec<(usize, usize)> {
    let end = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(m.len());
    let mut out = Vec::new();
    let mut at = m.iter().position(|&b| b == b'\n').map_or(end, |i| i + 1);
    while at < end {
        let next = m[at..end]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(end, |i| at + i);
        out.push((at, (next + 2).min(m.len())));
        at = next + 2;
    }
    out
}

const HUGE_NAMES: [&str; 6] = [
    "Subject",
    "From",
    "Via",
    "P-Asserted-Identity",
    "Contact",
    "X-Junk",
];

/// One mutation of `m`, chosen by `rng`.
fn mutate_once(rng: &mut Rng, m: &mut Vec<u8>, other: &[u8]) {
    let len = m.len();
    match rng.below(11) {
        // Bit flips.
        0 => {
            for _ in 0..=rng.below(8) {
                if len > 0 {
                    let at = rng.below(len);
                    m[at] ^= 1 << rng.below(8);
                }
            }
        }
        // Truncation.
        1 => m.truncate(rng.below(len + 1)),
        // A header line duplicated.
        2 => {
            let lines = header_lines(m);
            if !lines.is_empty() {
                let (s, e) = *rng.pick(&lines);
                let line = m[s..e].to_vec();
                let at = rng.pick(&lines).0;
                m.splice(at..at, line);
            }
        }
        // A header line removed.
        3 => {
            let lines = header_lines(m);
            if !lines.is_empty() {
                let (s, e) = *rng.pick(&lines);
                m.drain(s..e);
            }
        }
        // A huge value.
        4 => {
            let size = *rng.pick(&[300, 1_000, 8_000, 40_000, 70_000]);
            let fill = *rng.pick(b"a9% ,;<");
            let name = rng.pick(&HUGE_NAMES);
            let mut line = format!("{name}: ").into_bytes();
            line.extend(std::iter::repeat_n(fill, size));
            line.extend_from_slice(b"\r\n");
            let lines = header_lines(m);
            let at = lines.first().map_or(0, |l| l.0);
            m.splice(at..at, line);
        }
        // CR/LF games: bare CR or LF, an early empty line, folding, NUL.
        5 => {
            let junks: [&[u8]; 8] = [
                b"\r\n",
                b"\r",
                b"\n",
                b"\r\n\r\n",
                b"\r\n \r\n",
                b"\r\n\t",
                b"\0",
                b"\r\n\r\nSIP/2.0 200 OK\r\n",
            ];
            let junk = *rng.pick(&junks);
            let at = rng.below(len + 1);
            m.splice(at..at, junk.iter().copied());
        }
        // Every CRLF as LF, or as CR.
        6 => {
            let to: &[u8] = if rng.below(2) == 0 { b"\n" } else { b"\r" };
            let text = String::from_utf8_lossy(m).replace("\r\n", std::str::from_utf8(to).unwrap());
            *m = text.into_bytes();
        }
        // A random Content-Length, replacing or added to the one there.
        7 => {
            let value = *rng.pick(&[
                "0",
                "1",
                "5000",
                "65535",
                "65536",
                "-1",
                "99999999999999999999",
                "4294967296",
                " 12 ",
                "0x10",
                "",
                "1, 2",
            ]);
            let line = format!("Content-Length: {value}\r\n").into_bytes();
            let lines = header_lines(m);
            let existing = lines.iter().find(|&&(s, _)| {
                m[s..].starts_with(b"Content-Length") || m[s..].starts_with(b"l:")
            });
            match existing {
                Some(&(s, e)) if rng.below(2) == 0 => {
                    m.splice(s..e, line);
                }
                _ => {
                    let at = lines.last().map_or(0, |l| l.1);
                    m.splice(at..at, line);
                }
            }
        }
        // Random bytes somewhere.
        8 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            m.splice(at..at, bytes);
        }
        // Spliced with another message.
        9 => {
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            m.truncate(cut);
            m.extend_from_slice(&other[from..]);
        }
        // Escaped CR/LF (and other bytes) in the URI users the 302 echoes.
        _ => {
            let inject = *rng.pick(&[
                "x%0D%0AContact%3A%20%3Csip%3Aattacker%40evil.example%3E",
                "%0D%0A%0D%0ASIP%2F2.0%20200%20OK",
                "1%00%0A%0D2",
                "%E2%80%A8%C2%85",
                "%FF%FE",
            ]);
            let text = String::from_utf8_lossy(m).into_owned();
            let target = *rng.pick(&["sip:+1212", "sip:+1800", "sip:"]);
            *m = text
                .replacen(target, &format!("{target}{inject}"), 1 + rng.below(3))
                .into_bytes();
        }
    }
}

fn mutate(rng: &mut Rng, bases: &[Vec<u8>]) -> Vec<u8> {
    let mut m = rng.pick(bases).clone();
    for _ in 0..=rng.below(3) {
        let other = rng.pick(bases).clone();
        mutate_once(rng, &mut m, &other);
    }
    m
}

const WRITTEN: [&str; 22] = [
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "X-Call-Ref",
    "X-ANI",
    "X-ANI-Source",
    "X-DNIS",
    "X-Rule",
    "X-Rules-Version",
    "X-Identity",
    "Server",
    "Content-Length",
    "Allow",
    "Accept",
    "Supported",
    "Unsupported",
    "Retry-After",
    "Call-Info",
    "Warning",
];

/// `r` must be one SIP response as the module docs say; returns its status.
fn check_response(r: &[u8]) -> u16 {
    let shown = || String::from_utf8_lossy(r).into_owned();
    assert_eq!(
        frame(r),
        Frame::Message {
            skip: 0,
            len: r.len(),
            missing_length: false
        },
        "not one whole message: {:?}",
        shown()
    );
    let msg = Message::parse(r).unwrap_or_else(|e| panic!("{e}: {:?}", shown()));
    let StartLine::Response { code, .. } = msg.start else {
        panic!("not a response: {:?}", shown());
    };
    assert!(msg.body.is_empty(), "a body: {:?}", shown());
    let text = std::str::from_utf8(r).unwrap();
    let head = text.strip_suffix("\r\n\r\n").unwrap();
    let lines: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(lines.len(), msg.headers.len() + 1, "{:?}", shown());
    for line in &lines {
        assert!(
            !line.bytes().any(|b| b < 0x20 || b == 0x7f) && !line.starts_with([' ', '\t']),
            "line {line:?} of {:?}",
            shown()
        );
    }
    let count = |name| msg.headers.iter().filter(|h| h.name == name).count();
    assert_eq!(count(HeaderName::ContentLength), 1, "{:?}", shown());
    assert!(
        count(HeaderName::Contact) <= (code == 302) as usize,
        "{:?}",
        shown()
    );
    // A refusal copies the From, To, Call-ID and CSeq lines of the request it refuses, two of
    // one kind when the request had two; a 200 or 302 answers a valid request, which has one.
    if code == 200 || code == 302 {
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            let n = count(name);
            assert!(n <= 1, "{n} {name:?} lines: {:?}", shown());
        }
    }
    for h in &msg.headers {
        assert!(
            WRITTEN.contains(&h.raw_name),
            "header {:?} the writer does not write: {:?}",
            h.raw_name,
            shown()
        );
    }
    code
}

/// Reads every datagram on `sock` until `quiet_ms` pass with none; checks each.
async fn drain_udp(sock: &UdpSocket, quiet_ms: u64) -> usize {
    let mut buf = vec![0u8; 70_000];
    let mut n = 0;
    while let Ok(Ok((len, _))) =
        tokio::time::timeout(Duration::from_millis(quiet_ms), sock.recv_from(&mut buf)).await
    {
        check_response(&buf[..len]);
        n += 1;
    }
    n
}

/// Writes `messages` on one TCP connection (a new one when the node closes it), then reads
/// what comes back until the node closes or `quiet_ms` pass; every response is checked.
async fn tcp_batch(addr: SocketAddr, messages: &[Vec<u8>], quiet_ms: u64) -> usize {
    let mut responses = 0;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    for m in messages {
        if conn.write_all(m).await.is_err() {
            // The node closed it (a stream that cannot be framed): what it sent first counts.
            responses += read_responses(&mut conn, quiet_ms).await;
            conn = TcpStream::connect(addr).await.unwrap();
        }
    }
    responses + read_responses(&mut conn, quiet_ms).await
}

/// Reads responses on `conn` until the node closes it or `quiet_ms` pass; checks each, and
/// that the stream ends between responses.
async fn read_responses(conn: &mut TcpStream, quiet_ms: u64) -> usize {
    let mut got = 0;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_millis(quiet_ms), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                let open = drain_frames(&mut buf, |piece| match piece {
                    Framed::Message(r) => {
                        check_response(r);
                        got += 1;
                    }
                    other => panic!("the node sent a stream that does not frame: {other:?}"),
                });
                assert!(open.is_some());
            }
            _ => break,
        }
    }
    assert!(
        buf.is_empty(),
        "a partial response: {:?}",
        String::from_utf8_lossy(&buf)
    );
    got
}

/// The node still serves: OPTIONS gets 200 and a valid INVITE from the trusted trunk gets the
/// 302 to `general` with the caller's number, over UDP and over TCP.
async fn probe(node: &Proc, probe: &UdpSocket, round: usize) {
    let port = probe.local_addr().unwrap().port();
    let expect = |r: &[u8], code: u16, id: &str| {
        assert_eq!(check_response(r), code, "{:?}", String::from_utf8_lossy(r));
        let text = String::from_utf8_lossy(r);
        assert!(text.contains(&format!("Call-ID: {id}@")), "{text}");
        if code == 302 {
            assert!(
                text.contains("\r\nContact: <sip:general@acd.example.net;"),
                "{text}"
            );
            assert!(text.contains("\r\nX-ANI: +12125550001\r\n"), "{text}");
            assert!(text.contains("\r\nX-DNIS: +18005550100\r\n"), "{text}");
        }
    };
    let mut buf = vec![0u8; 70_000];
    for (code, id) in [(200, format!("po{round}")), (302, format!("pi{round}"))] {
        let msg = if code == 200 {
            options(&id, port)
        } else {
            invite(&id, port, "+12125550001", "+18005550100", "")
        };
        probe.send_to(msg.as_bytes(), node.udp).await.unwrap();
        // Skip (after checking) what else arrives: the last round's 302, retransmitted.
        let r = loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(10), probe.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("round {round}: no answer to the {code} probe over UDP"))
                .unwrap();
            let r = &buf[..n];
            check_response(r);
            let mine = String::from_utf8_lossy(r).contains(&format!("Call-ID: {id}@"));
            if mine && !r.starts_with(b"SIP/2.0 100 ") {
                break r.to_vec();
            }
        };
        expect(&r, code, &id);
    }
    // The same over TCP, on one connection.
    let mut conn = TcpStream::connect(node.tcp).await.unwrap();
    let tport = conn.local_addr().unwrap().port();
    let (o, i) = (format!("to{round}"), format!("ti{round}"));
    let both = format!(
        "{}{}",
        options(&o, tport).replace("SIP/2.0/UDP", "SIP/2.0/TCP"),
        invite(&i, tport, "+12125550001", "+18005550100", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP")
    );
    conn.write_all(both.as_bytes()).await.unwrap();
    let mut stream = Vec::new();
    let mut finals: Vec<Vec<u8>> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    while finals.len() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("round {round}: no answer over TCP"))
            .unwrap();
        assert!(n > 0, "round {round}: the node closed the probe connection");
        stream.extend_from_slice(&chunk[..n]);
        drain_frames(&mut stream, |piece| match piece {
            Framed::Message(r) if !r.starts_with(b"SIP/2.0 100 ") => finals.push(r.to_vec()),
            Framed::Message(_) => {}
            other => panic!("{other:?}"),
        })
        .unwrap();
    }
    let (a, b) = if finals[0].starts_with(b"SIP/2.0 200") {
        (&finals[0], &finals[1])
    } else {
        (&finals[1], &finals[0])
    };
    expect(a, 200, &o);
    expect(b, 302, &i);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_messages_never_break_the_node() {
    let count: usize = std::env::var("TOLLGATE_FUZZ_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seed: u64 = std::env::var("TOLLGATE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    println!("blackbox fuzz: TOLLGATE_FUZZ_COUNT={count} TOLLGATE_FUZZ_SEED={seed}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("routes")).unwrap();
    std::fs::write(dir.path().join("routes/default.toml"), RULES).unwrap();
    std::fs::write(
        dir.path().join("routes/queues.toml"),
        "queues = [\"general\"]\n",
    )
    .unwrap();
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let mut node = serve(&cfg);

    let bases = bases();
    let mut rng = Rng(seed);
    let trusted = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // No trunk claims 127.0.0.2: handled as the untrusted pseudo-trunk.
    let untrusted = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let prober = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    probe(&node, &prober, 0).await;

    let (mut sent, mut responses, mut round) = (0, 0, 0);
    while sent < count {
        round += 1;
        let batch = 200.min(count - sent);
        let mut tcp = Vec::new();
        for k in 0..batch {
            let m = mutate(&mut rng, &bases);
            if rng.below(4) == 0 {
                tcp.push(m);
            } else {
                let sock = if k % 2 == 0 { &trusted } else { &untrusted };
                // A datagram too large for UDP is refused by the kernel: not sent, not counted.
                let _ = sock.send_to(&m, node.udp).await;
                // Paced, so the batch tests the parser rather than the receive queue's limit.
                if k % 25 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        responses += tcp_batch(node.tcp, &tcp, 300).await;
        // The trusted trunk's unacknowledged responses are retransmitted until Timer H (64 * T1
        // = 3.2 s): those that come later are read and checked with the next batch's.
        responses += drain_udp(&trusted, 300).await + drain_udp(&untrusted, 300).await;
        sent += batch;
        probe(&node, &prober, round).await;
        assert!(
            node.child.try_wait().unwrap().is_none(),
            "the node exited after round {round}"
        );
    }
    responses += drain_udp(&trusted, 500).await + drain_udp(&untrusted, 500).await;
    println!("blackbox fuzz: {sent} messages in {round} batches, {responses} responses checked");
    assert!(responses > 0, "no response to any mutated message");
    assert!(
        node.child.try_wait().unwrap().is_none(),
        "the node is alive at the end"
    );
}
