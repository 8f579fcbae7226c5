//! Replay of real traffic (`tollgate diff --decisions` and `--pcap`), with real parts: a real
//! `tollgate serve` (the binary, its JSON decision log on stdout written to a file), sipp
//! sending a call mix over UDP and TCP (CRM profiles matched by language, tags, attributes and
//! open cases, a block and a gray list, a repeat caller, an emergency call, an untrusted
//! source), and tcpdump recording the traffic on the loopback interface and on `any` (Linux
//! cooked headers). The captures are real: tcpdump's own pcap files; the test derives from the
//! loopback one the same capture as pcapng (rewritten block by block), as a network might have
//! delivered it (a UDP INVITE retransmitted, a TCP segment split, reordered and repeated), and
//! damaged. Then:
//!
//! - `diff --pcap` and `diff --decisions` with the live rules as candidate report no move, and
//!   every replayed call's decision record equals the node's decision log line, field by field
//!   (the call reference aside);
//! - with a candidate that moves German speakers, exactly the German speakers' calls move;
//! - a capture chopped mid-packet, one with a corrupt IP header and one with a corrupt record
//!   header name the packet (and its byte offset) on stderr, exit 2, and still report every
//!   call they could read.
//!
//! - a capture taken in front of Kamailio (deploy/kamailio's dispatcher, asking the node and
//!   following its 302 to an ACD) replays, with `--to` Kamailio, to decisions that name the
//!   queue Kamailio sent each call to, and equal the node's decision log.
//!
//! tcpdump must be installed (`.ci/run` installs it, and Kamailio); the tests run as root, as
//! CI does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn rules(dir: &Path, german_queue: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("queues.toml"),
        "queues = [\"general\", \"german\", \"deutsch\", \"enterprise\", \"busy\", \"legal\", \
         \"untrusted\", \"verify-ivr\", \"emergency\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("default.toml"),
        format!(
            r#"name = "default"
time_zone = "America/New_York"

[[rule]]
name = "german"
when = {{ language = "de" }}
queue = "{german_queue}"

[[rule]]
name = "enterprise"
when = {{ attribute = {{ segment = "enterprise" }} }}
queue = "enterprise"

[[rule]]
name = "busy"
when = {{ open_cases_min = 3 }}
queue = "busy"

[[rule]]
name = "legal"
when = {{ tag = "legal" }}
queue = "legal"

[[rule]]
name = "untrusted"
when = {{ trusted = false }}
queue = "untrusted"

[[rule]]
name = "back"
when = {{ repeat_within = "1h" }}
queue = {{ name = "$last", fallback = "general" }}

[[rule]]
name = "everyone"
queue = "general"
"#
        ),
    )
    .unwrap();
}

const CONFIG: &str = r#"[sip]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
unknown_source = "untrusted"

[[trunk]]
name = "carrier"
cidrs = ["127.0.0.1/32"]
trusted = true
region = "US"

[routing]
acd_host = "acd.example.net"
emergency_queue = "emergency"
rules_dir = "routes"

[crm]
kind = "file"
[crm.file]
path = "directory.csv"

[risk]
store = "memory"
list_file = "lists.json"
gray_queue = "verify-ivr"

[log]
format = "json"
"#;

/// A sipp scenario: the INVITE (PAI from field0, DNIS field1, From user field2), a 302 or a
/// 603, the ACK.
const SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="replay">
  <send retrans="500">
    <![CDATA[
INVITE sip:[field1]@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[field2]@carrier.example.net;user=phone>;tag=[pid]T[call_number]
To: <sip:[field1]@[remote_ip]:[remote_port];user=phone>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:trunk@[local_ip]:[local_port]>
Max-Forwards: 70
P-Asserted-Identity: <sip:+[field0]@carrier.example.net;user=phone>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="302" optional="true" next="1"/>
  <recv response="603"/>
  <label id="1"/>
  <send>
    <![CDATA[
ACK sip:[field1]@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
From: <sip:[field2]@carrier.example.net;user=phone>;tag=[pid]T[call_number]
To: <sip:[field1]@[remote_ip]:[remote_port];user=phone>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// The node: `tollgate serve` with its stdout (the decision log) in a file.
struct Node {
    child: Child,
    udp: SocketAddr,
    tcp: SocketAddr,
    log: PathBuf,
}

impl Node {
    // The child is waited for by `Node`'s Drop, or here before a panic.
    #[allow(clippy::zombie_processes)]
    fn start(dir: &Path) -> Self {
        let log = dir.join("decisions.log");
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(dir.join("tollgate.toml"))
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let listening = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == "listening");
            if let Some(v) = listening {
                let addr = |k: &str| -> SocketAddr {
                    v[k].as_str()
                        .unwrap()
                        .trim_matches(|c| c == '[' || c == ']')
                        .split(',')
                        .next()
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap()
                };
                return Self {
                    udp: addr("udp"),
                    tcp: addr("tcp"),
                    child,
                    log,
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the node never listened: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The decision lines so far, by call id.
    fn decisions(&self) -> BTreeMap<String, Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "tollgate::decision")
            .map(|v| (v["call_id"].as_str().unwrap().to_owned(), v))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tcpdump on an interface, writing `file`.
struct Tcpdump(Child);

impl Tcpdump {
    fn start(interface: &str, file: &Path, filter: &str) -> Self {
        let mut child = Command::new("tcpdump")
            .args(["-i", interface, "--immediate-mode", "-U", "-s", "0", "-w"])
            .arg(file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump runs (apt-get install tcpdump; .ci/run installs it)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut said = Vec::new();
        while !said.iter().any(|l: &String| l.contains("listening on")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("tcpdump never listened: {said:?}");
                }
            }
        }
        Self(child)
    }

    /// Lets the last packets reach the file, then stops tcpdump (SIGTERM: it flushes).
    fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(500));
        let ok = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let _ = self.0.wait();
    }
}

impl Drop for Tcpdump {
    /// A test that fails before `stop` leaves no tcpdump running.
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn sipp(dir: &Path, server: SocketAddr, calls: &[(&str, &str)], tcp: bool, source: &str) {
    let csv = dir.join(format!("calls-{}-{source}.csv", calls.len()));
    let mut text = String::from("SEQUENTIAL\n");
    for (ani, dnis) in calls {
        text.push_str(&format!("{ani};{dnis};+{ani}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let scenario = dir.join("replay.xml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let mut cmd = Command::new("sipp");
    cmd.arg(server.to_string())
        .arg("-sf")
        .arg(&scenario)
        .arg("-inf")
        .arg(&csv)
        .args(["-m", &calls.len().to_string(), "-r", "10", "-l", "1"])
        .args(["-i", source, "-p", "0"])
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"]);
    if tcp {
        cmd.args(["-t", "t1"]);
    }
    let out = cmd
        .output()
        .expect("sipp runs (apt-get install sip-tester)");
    assert!(
        out.status.success(),
        "sipp: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `tollgate diff` with these arguments: exit code, stdout, stderr.
fn diff(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .arg("diff")
        .arg("--config")
        .arg(dir.join("tollgate.toml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The per-call JSON lines of `diff --json`.
fn calls(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v.get("live").is_some())
        .collect()
}

/// Every field of a replayed record equals the node's line for the same call.
fn assert_same(what: &str, replayed: &Value, logged: &Value) {
    for (k, v) in replayed.as_object().unwrap() {
        if k == "call_ref" {
            continue;
        }
        assert_eq!(
            &logged[k], v,
            "{what}: field {k}: logged {} replayed {v}\nlogged: {logged}\nreplayed: {replayed}",
            logged[k]
        );
    }
}

fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

/// The byte offsets of a pcap file's records (after the 24-byte file header).
fn records(pcap: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push((at, caplen));
        at += 16 + caplen;
    }
    out
}

/// A record's bytes with its pcap record header (the timestamp of `like`).
fn record(like: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = like[..8].to_vec();
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The capture as the network might have delivered it: the first packet (the first INVITE,
/// over UDP) retransmitted, the first TCP segment with data sent to `port` split in two, its
/// second half first and its first half twice, and the next such segment retransmitted.
/// Ethernet and IPv4 as tcpdump wrote them on the loopback.
fn reorder_tcp(pcap: &[u8], port: u16) -> Vec<u8> {
    let mut out = pcap[..24].to_vec();
    let mut done = 0;
    for (i, (at, caplen)) in records(pcap).into_iter().enumerate() {
        let rec = &pcap[at..at + 16 + caplen];
        if i == 0 {
            out.extend_from_slice(rec);
        }
        let data = &rec[16..];
        let tcp_data = (data[12..14] == [8, 0] && data[23] == 6).then(|| {
            let ihl = usize::from(data[14] & 0xf) * 4;
            let tcp = 14 + ihl;
            let payload = tcp + usize::from(data[tcp + 12] >> 4) * 4;
            let dst = u16::from_be_bytes([data[tcp + 2], data[tcp + 3]]);
            (tcp, payload, dst)
        });
        match tcp_data {
            Some((tcp, payload, dst)) if dst == port && data.len() > payload && done < 2 => {
                if done == 0 {
                    let k = (data.len() - payload) / 2;
                    let mut first = data[..payload + k].to_vec();
                    let total = u16::from_be_bytes([data[16], data[17]]);
                    first[16..18].copy_from_slice(
                        &(total - (data.len() - payload - k) as u16).to_be_bytes(),
                    );
                    let mut second = data[..payload].to_vec();
                    second.extend_from_slice(&data[payload + k..]);
                    second[16..18].copy_from_slice(&(total - k as u16).to_be_bytes());
                    let seq = u32::from_be_bytes(data[tcp + 4..tcp + 8].try_into().unwrap());
                    second[tcp + 4..tcp + 8]
                        .copy_from_slice(&seq.wrapping_add(k as u32).to_be_bytes());
                    out.extend(record(rec, &second));
                    out.extend(record(rec, &first));
                    out.extend(record(rec, &first));
                } else {
                    out.extend_from_slice(rec);
                    out.extend_from_slice(rec);
                }
                done += 1;
            }
            _ => out.extend_from_slice(rec),
        }
    }
    assert_eq!(done, 2, "two TCP segments with data to port {port}");
    out
}

/// The same capture as pcapng: a section header, one interface (the pcap's link type,
/// microseconds), and an enhanced packet block per record.
fn to_pcapng(pcap: &[u8]) -> Vec<u8> {
    let link = u32::from_le_bytes(pcap[20..24].try_into().unwrap());
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(0u8, pad));
        out.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&(link as u16).to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    block(&mut out, 1, &idb);
    for (at, caplen) in records(pcap) {
        let sec = u64::from(u32::from_le_bytes(pcap[at..at + 4].try_into().unwrap()));
        let usec = u64::from(u32::from_le_bytes(pcap[at + 4..at + 8].try_into().unwrap()));
        let ts = sec * 1_000_000 + usec;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(caplen as u32).to_le_bytes());
        epb.extend_from_slice(&(caplen as u32).to_le_bytes());
        epb.extend_from_slice(&pcap[at + 16..at + 16 + caplen]);
        block(&mut out, 6, &epb);
    }
    out
}

#[test]
fn a_captured_sipp_run_and_the_decision_log_replay_to_the_live_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rules(&d.join("routes"), "german");
    rules(&d.join("candidate"), "deutsch");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/directory.csv"),
        d.join("directory.csv"),
    )
    .unwrap();
    std::fs::write(d.join("tollgate.toml"), CONFIG).unwrap();
    let cfg = d.join("tollgate.toml");
    for (list, number) in [("block", "+12125550111"), ("gray", "+12125550122")] {
        let ok = Command::new(BIN)
            .args(["list", "add", list, number, "--reason", "test", "--config"])
            .arg(&cfg)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tollgate list add {list}");
    }

    let node = Node::start(d);
    let pcap = d.join("capture.pcap");
    let filter = format!("port {} or port {}", node.udp.port(), node.tcp.port());
    let tcpdump = Tcpdump::start("lo", &pcap, &filter);
    // The same traffic on every interface: Linux cooked headers (SLL2), as a capture with
    // `-i any` has it.
    let any = d.join("any.pcap");
    let tcpdump_any = Tcpdump::start("any", &any, &filter);
    let german = ["4930123456", "4989123456789"];
    sipp(
        d,
        node.udp,
        &[
            (german[0], "+18005550100"),     // CRM language de
            ("12125550100", "+18005550100"), // attribute segment=enterprise
            ("13125550147", "+18005550100"), // 3 open cases
            ("12125550111", "+18005550100"), // block list: 603
            ("12125550122", "+18005550100"), // gray list: the verification queue
            ("16175550100", "+18005550100"), // no profile
            ("16175550100", "+18005550100"), // the same caller again: back to its last queue
            ("12125550111", "911"),          // emergency, from a blocked number
            (german[1], "+18005550100"),     // CRM language de
        ],
        false,
        "127.0.0.1",
    );
    sipp(
        d,
        node.tcp,
        &[
            ("442072601815", "+18005550100"), // tag legal, over TCP
            ("34912345678", "+18005550100"),  // segment enterprise, over TCP
            ("16175550100", "+18005550100"),  // a third time
        ],
        true,
        "127.0.0.1",
    );
    sipp(
        d,
        node.udp,
        &[("14045550100", "+18005550100")],
        false,
        "127.0.0.2",
    );
    tcpdump.stop();
    tcpdump_any.stop();
    let logged = node.decisions();
    assert_eq!(logged.len(), 13, "one decision line per call: {logged:#?}");
    // The mix covers what it claims.
    let seen: BTreeSet<String> = logged
        .values()
        .map(|v| format!("{} {}", v["decided_by"], v["queue"]))
        .collect();
    for want in [
        "\"rule\" \"german\"",
        "\"rule\" \"enterprise\"",
        "\"rule\" \"busy\"",
        "\"rule\" \"legal\"",
        "\"rule\" \"untrusted\"",
        "\"rule\" \"emergency\"",
        "\"risk-block\" \"-\"",
        "\"risk-verify\" \"verify-ivr\"",
    ] {
        assert!(seen.contains(want), "{want} not in {seen:?}");
    }
    assert!(logged.values().any(|v| v["rule"] == "default/back"));
    assert!(logged.values().any(|v| v["transport"] == "tcp"));
    let german_calls: BTreeSet<String> = logged
        .iter()
        .filter(|(_, v)| german.iter().any(|g| v["ani"] == format!("+{g}")))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(german_calls.len(), 2);
    let (node_udp, node_tcp) = (node.udp, node.tcp);
    drop(node);

    // The capture with the live rules as candidate: nothing moves, and every call is decided
    // as the node decided it, field by field.
    let capture = pcap.to_str().unwrap();
    let bytes = std::fs::read(&pcap).unwrap();
    let (code, out, err) = diff(d, &["--rules", "routes", "--pcap", capture, "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let replayed = calls(&out);
    assert_eq!(replayed.len(), logged.len(), "{out}");
    let mut packets = BTreeMap::new();
    for c in &replayed {
        let id = c["call_id"].as_str().unwrap();
        let live = logged.get(id).unwrap_or_else(|| panic!("{id} not logged"));
        assert_same(&format!("pcap {id}"), &c["live"], live);
        assert_eq!(c["candidate"], c["live"], "{id}");
        assert_eq!(c["moved"], false);
        // The capture holds the node's own answer: the same as the replayed decision.
        let captured = c["captured"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: {c}"));
        let want = match live["status"].as_u64().unwrap() {
            302 => format!("302 → {}@acd.example.net", live["queue"].as_str().unwrap()),
            code => format!("{code} {}", live["reason"].as_str().unwrap()),
        };
        assert_eq!(captured, want, "{id}");
        assert_eq!(c["live_unlike_captured"], false, "{c}");
        // Decided at the packet's time: the node logged its line right after.
        let at = ts(&c["at"]);
        let logged_at = ts(&live["timestamp"]);
        let lag = logged_at.duration_since(at);
        assert!(
            lag >= jiff::SignedDuration::ZERO && lag < jiff::SignedDuration::from_secs(1),
            "{id}: packet at {at}, logged at {logged_at}"
        );
        packets.insert(id.to_owned(), c["packet"].as_u64().unwrap());
    }

    // The `-i any` capture: the same calls, each once.
    let (code, out, err) = diff(
        d,
        &[
            "--rules",
            "routes",
            "--pcap",
            any.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let any_calls = calls(&out);
    assert_eq!(any_calls.len(), logged.len(), "{out}");
    for c in &any_calls {
        let id = c["call_id"].as_str().unwrap();
        assert_same(&format!("any {id}"), &c["live"], &logged[id]);
    }
    let any_link = u32::from_le_bytes(std::fs::read(&any).unwrap()[20..24].try_into().unwrap());
    assert!(any_link == 113 || any_link == 276, "link type {any_link}");

    // TCP as a network may deliver it: a segment split, out of order, retransmitted.
    let shuffled = d.join("shuffled.pcap");
    std::fs::write(&shuffled, reorder_tcp(&bytes, node_tcp.port())).unwrap();
    let (code, out, err) = diff(
        d,
        &[
            "--rules",
            "routes",
            "--pcap",
            shuffled.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let again = calls(&out);
    assert_eq!(again.len(), logged.len(), "{out}");
    assert!(out.contains("; 1 INVITE retransmission skipped"), "{out}");
    for c in &again {
        let id = c["call_id"].as_str().unwrap();
        assert_same(&format!("shuffled {id}"), &c["live"], &logged[id]);
    }

    // Only what was sent to the node's UDP address: the TCP calls are left out.
    let to = node_udp.to_string();
    let (code, out, err) = diff(
        d,
        &[
            "--rules", "routes", "--pcap", capture, "--to", &to, "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let udp_calls: BTreeSet<String> = calls(&out)
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = logged
        .iter()
        .filter(|(_, v)| v["transport"] == "udp")
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(udp_calls, want);
    assert_eq!(udp_calls.len(), 10);

    // The same capture as pcapng.
    let ng = d.join("capture.pcapng");
    std::fs::write(&ng, to_pcapng(&bytes)).unwrap();
    let (code, out, err) = diff(
        d,
        &[
            "--rules",
            "routes",
            "--pcap",
            ng.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let ng_calls = calls(&out);
    assert_eq!(ng_calls.len(), logged.len());
    for c in &ng_calls {
        let id = c["call_id"].as_str().unwrap();
        assert_same(&format!("pcapng {id}"), &c["live"], &logged[id]);
    }

    // A candidate that sends German speakers elsewhere: exactly their calls move.
    let (code, out, err) = diff(d, &["--rules", "candidate", "--pcap", capture]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("13 calls replayed"), "{out}");
    assert!(out.contains(", 2 changes"), "{out}");
    for id in &german_calls {
        assert!(
            out.contains(&format!("packet {}: ", packets[id])),
            "{id}: {out}"
        );
    }
    assert_eq!(
        out.matches("  candidate 302 → deutsch@").count(),
        2,
        "{out}"
    );
    assert_eq!(
        out.matches("  captured  302 → german@acd.example.net")
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("13 answered in the capture, 2 of them otherwise than the candidate answers"),
        "{out}"
    );
    let (code, out, _) = diff(d, &["--rules", "candidate", "--pcap", capture, "--json"]);
    assert_eq!(code, 1);
    let moved: BTreeSet<String> = calls(&out)
        .iter()
        .filter(|c| c["moved"] == true)
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(moved, german_calls);
    let unlike: BTreeSet<String> = calls(&out)
        .iter()
        .filter(|c| c["candidate_unlike_captured"] == true)
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unlike, german_calls);

    // The node's own decision log: the same, each call at its own time on its logged facts.
    let log = d.join("decisions.log");
    let log = log.to_str().unwrap();
    let (code, out, err) = diff(d, &["--rules", "routes", "--decisions", log, "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let replayed = calls(&out);
    assert_eq!(replayed.len(), logged.len(), "{out}");
    for c in &replayed {
        let id = c["call_id"].as_str().unwrap();
        assert_same(&format!("log {id}"), &c["live"], &logged[id]);
        assert_eq!(c["live_differs_from_log"], false, "{c}");
        assert_eq!(c["moved"], false, "{c}");
        // Replayed at its own time.
        assert_eq!(ts(&c["at"]), ts(&logged[id]["timestamp"]), "{id}");
    }

    // A log cut in the middle of a line: that line is named, the others are replayed.
    let text = std::fs::read_to_string(d.join("decisions.log")).unwrap();
    let cut_log = d.join("cut.log");
    let last = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("tollgate::decision"))
        .last()
        .unwrap();
    let lines = last.0 + 1;
    let kept: Vec<&str> = text.lines().take(last.0).collect();
    let half = &last.1[..last.1.len() / 2];
    std::fs::write(&cut_log, format!("{}\n{half}", kept.join("\n"))).unwrap();
    let (code, out, err) = diff(
        d,
        &[
            "--rules",
            "routes",
            "--decisions",
            cut_log.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(&format!("cut.log:{lines}: not a JSON line")),
        "{err}"
    );
    assert_eq!(calls(&out).len(), logged.len() - 1, "{out}");
    let (code, out, err) = diff(d, &["--rules", "candidate", "--decisions", log, "--json"]);
    assert_eq!(code, 1, "{out}\n{err}");
    let moved: BTreeSet<String> = calls(&out)
        .iter()
        .filter(|c| c["moved"] == true)
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(moved, german_calls, "{out}");
    let (code, out, _) = diff(d, &["--rules", "candidate", "--decisions", log]);
    assert_eq!(code, 1);
    assert!(
        out.contains("13 calls replayed from the decision log, 2 changes"),
        "{out}"
    );
    assert_eq!(
        out.matches("  candidate 302 → deutsch by ").count(),
        2,
        "{out}"
    );

    // Damaged captures: the packet is named, the exit status is 2, the rest is reported.
    let recs = records(&bytes);
    let index = |packet: u64| usize::try_from(packet - 1).unwrap();
    let mut order: Vec<(u64, String)> = packets.iter().map(|(k, v)| (*v, k.clone())).collect();
    order.sort();
    let (cut_packet, _) = order[5];
    let (cut_at, cut_len) = recs[index(cut_packet)];
    let damaged = |name: &str, data: &[u8]| -> (i32, String, String) {
        let path = d.join(name);
        std::fs::write(&path, data).unwrap();
        diff(
            d,
            &[
                "--rules",
                "routes",
                "--pcap",
                path.to_str().unwrap(),
                "--json",
            ],
        )
    };

    // Chopped in the middle of the sixth call's packet.
    let (code, out, err) = damaged("chopped.pcap", &bytes[..cut_at + 16 + cut_len / 2]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "packet {cut_packet} (byte offset {cut_at}): the file ends inside this packet's record"
        )),
        "{err}"
    );
    let read: Vec<u64> = calls(&out)
        .iter()
        .map(|c| c["packet"].as_u64().unwrap())
        .collect();
    let before: Vec<u64> = order
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| *p < cut_packet)
        .collect();
    assert_eq!(read, before, "{out}");
    assert_eq!(read.len(), 5);

    // The IP header of the sixth call's packet made unreadable (Ethernet: the IP version at
    // byte 14): that call is lost, every other one is still replayed.
    let mut flipped = bytes.clone();
    flipped[cut_at + 16 + 14] = 0x00;
    let (code, out, err) = damaged("flipped.pcap", &flipped);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "packet {cut_packet} (byte offset {cut_at}): a corrupt packet"
        )),
        "{err}"
    );
    let read: BTreeSet<u64> = calls(&out)
        .iter()
        .map(|c| c["packet"].as_u64().unwrap())
        .collect();
    let all_but: BTreeSet<u64> = order
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| *p != cut_packet)
        .collect();
    assert_eq!(read, all_but, "{out}");

    // A record header claiming 4 GB: the reading stops there, the calls before it stand.
    let mut huge = bytes.clone();
    huge[cut_at + 8..cut_at + 12].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    let (code, out, err) = damaged("huge.pcap", &huge);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "packet {cut_packet} (byte offset {cut_at}): the record claims more than"
        )),
        "{err}"
    );
    assert_eq!(calls(&out).len(), 5, "{out}");

    // pcapng frames each block with its length: a packet block whose content is corrupt (its
    // captured length past the block's end) is named and stepped over, the calls after it are
    // still read.
    let mut ng_bytes = to_pcapng(&bytes);
    let mut blocks = Vec::new();
    let mut at = 0;
    while at + 8 <= ng_bytes.len() {
        let kind = u32::from_le_bytes(ng_bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(ng_bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        blocks.push((at, kind));
        at += len;
    }
    let epb = blocks
        .iter()
        .filter(|(_, k)| *k == 6)
        .nth(index(cut_packet))
        .unwrap()
        .0;
    ng_bytes[epb + 20..epb + 24].copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
    let (code, out, err) = damaged("bad-block.pcapng", &ng_bytes);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(&format!("packet {cut_packet} (byte offset {epb}): ")),
        "{err}"
    );
    assert!(err.contains("the block is skipped"), "{err}");
    let read: BTreeSet<u64> = calls(&out)
        .iter()
        .map(|c| c["packet"].as_u64().unwrap())
        .collect();
    assert_eq!(read, all_but, "{out}");

    // Not a capture at all.
    let (code, _, err) = diff(d, &["--rules", "routes", "--pcap", log]);
    assert_eq!(code, 2);
    assert!(err.contains("not a pcap or pcapng capture"), "{err}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process stopped on drop: SIGTERM (Kamailio's main process then stops the workers it
/// forked), SIGKILL after 5 s.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The migration case with real parts: a capture taken in front of a Kamailio proxy (the
/// dispatcher of deploy/kamailio, as shipped, asking a Tollgate node and following its 302 to
/// an ACD, a sipp UAS), replayed with `--to` Kamailio's address. The calls are the carrier's
/// INVITEs to Kamailio; what Kamailio did with each is where it last sent it (the ACD queue),
/// and the replayed decision of every call names that same queue and host, and equals the
/// node's decision log line.
#[test]
fn a_capture_in_front_of_kamailio_replays_to_where_kamailio_sent_each_call() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(repo().join("config/directory.csv"), d.join("directory.csv")).unwrap();
    let (node_port, acd_port, kamailio_port) = (udp_port(), udp_port(), udp_port());
    std::fs::write(
        d.join("tollgate.toml"),
        format!(
            r#"[sip]
udp = ["127.0.0.1:{node_port}"]
tcp = ["127.0.0.1:0"]

[[trunk]]
name = "sbc"
cidrs = ["127.0.0.1/32"]
trusted = true

[routing]
acd_host = "127.0.0.1:{acd_port}"
emergency_queue = "emergency"
rules_dir = "{routes}"

[crm]
kind = "file"
[crm.file]
path = "directory.csv"

[log]
format = "json"
"#,
            routes = repo().join("config/routes").display()
        ),
    )
    .unwrap();
    let node = Node::start(d);
    let _acd = Stopped(
        Command::new("sipp")
            .arg("-sf")
            .arg(repo().join("tests/data/sipp/acd_uas.xml"))
            .args(["-i", "127.0.0.1", "-p", &acd_port.to_string(), "-nostdin"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp runs (apt-get install sip-tester)"),
    );
    let list = d.join("dispatcher.list");
    std::fs::write(&list, format!("1 sip:127.0.0.1:{node_port} 0 0\n")).unwrap();
    let run = d.join("kamailio-run");
    std::fs::create_dir_all(&run).unwrap();
    let _kamailio = Stopped(
        Command::new("kamailio")
            .arg("-f")
            .arg(repo().join("deploy/kamailio/kamailio.cfg"))
            .args(["-DD", "-E", "-A"])
            .arg(format!("LISTEN=udp:127.0.0.1:{kamailio_port}"))
            .arg("-A")
            .arg(format!("DISPATCHER_LIST=\"{}\"", list.display()))
            .arg("-Y")
            .arg(&run)
            .arg("-w")
            .arg(&run)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("kamailio.log")).unwrap())
            .spawn()
            .expect("kamailio is installed (apt-get install kamailio; .ci/run does)"),
    );
    // The dispatcher probes the node before it sends it calls.
    std::thread::sleep(Duration::from_millis(1500));
    let pcap = d.join("kamailio.pcap");
    let tcpdump = Tcpdump::start(
        "lo",
        &pcap,
        &format!("udp and (port {kamailio_port} or port {node_port} or port {acd_port})"),
    );
    let calls_csv = d.join("carrier.csv");
    std::fs::write(
        &calls_csv,
        "SEQUENTIAL\n\
         +4930123456;+18005550100;+4930123456\n\
         +12125550100;+18005550100;+12125550100\n\
         +34912345678;+18005550100;+34912345678\n\
         +13125550147;+18885550101;+13125550147\n\
         +16175550100;+18885550101;+16175550100\n",
    )
    .unwrap();
    let out = Command::new("sipp")
        .arg(format!("127.0.0.1:{kamailio_port}"))
        .arg("-sf")
        .arg(repo().join("tests/data/sipp/carrier_call.xml"))
        .arg("-inf")
        .arg(&calls_csv)
        .args(["-m", "5", "-r", "5", "-l", "5"])
        .args(["-i", "127.0.0.1", "-p", "0", "-nostdin"])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-recv_timeout",
            "10000",
        ])
        .current_dir(d)
        .output()
        .expect("sipp runs");
    assert!(
        out.status.success(),
        "carrier calls through Kamailio: {}\n{}\nkamailio: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(d.join("kamailio.log")).unwrap_or_default()
    );
    tcpdump.stop();
    let logged = node.decisions();
    assert_eq!(logged.len(), 5, "{logged:#?}");

    let to = format!("127.0.0.1:{kamailio_port}");
    let (code, out, err) = diff(
        d,
        &[
            "--rules",
            repo().join("config/routes").to_str().unwrap(),
            "--pcap",
            pcap.to_str().unwrap(),
            "--to",
            &to,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let replayed = calls(&out);
    assert_eq!(replayed.len(), 5, "{out}");
    let queues: BTreeSet<&str> = logged
        .values()
        .map(|v| v["queue"].as_str().unwrap())
        .collect();
    assert!(queues.len() >= 2, "a mix of queues: {queues:?}");
    for c in &replayed {
        let id = c["call_id"].as_str().unwrap();
        let live = logged
            .get(id)
            .unwrap_or_else(|| panic!("{id} not logged: {c}"));
        assert_same(&format!("kamailio {id}"), &c["live"], live);
        assert_eq!(
            c["captured"],
            format!(
                "forwarded to {}@127.0.0.1:{acd_port}",
                live["queue"].as_str().unwrap()
            ),
            "{c}"
        );
        assert_eq!(c["live_unlike_captured"], false, "{c}");
    }
    assert!(
        out.contains("5 answered in the capture, 0 of them otherwise than the candidate answers"),
        "{out}"
    );
}
