//! Call-rate limits (`max_cps` per trunk, per source address and for the node) over real UDP:
//! a node as `tollgate serve` wires it (tests/node) and the real binary (its decision log,
//! `/metrics`, `POST /v1/admin/explain` and `tollgate check`). The rates are far below one
//! call a second (0.01 cps: a token every 100 s), so no token comes back while a test runs and
//! every count is exact whatever the machine's speed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod http_support;
mod node;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{header, status};
use node::{invite_pai, peer_from, Node, Scratch};

const DNIS: &str = "+18005550100";

/// `[sip]` for the node harness, with `extra` lines (node limits), and `[routing]` by the
/// harness's rules (queues general, vip, attested, screening, callback, emergency).
fn config(sip_extra: &str, trunks: &str) -> String {
    format!(
        "[sip]\nudp = [\"127.0.0.1:0\"]\nt1_ms = 50\nt4_ms = 200\n{sip_extra}\n\n{trunks}\n\
         [routing]\nacd_host = \"acd.example.net\"\nemergency_queue = \"emergency\"\n\
         rules_dir = \"routes\"\n"
    )
}

fn trunk(name: &str, cidr: &str, extra: &str) -> String {
    format!("[[trunk]]\nname = \"{name}\"\ncidrs = [\"{cidr}\"]\ntrusted = true\n{extra}\n\n")
}

/// Sends every INVITE from one socket bound to `ip` at once, then collects one final answer
/// per Call-ID (retransmissions of a final are the same answer).
async fn flood(node: &Node, ip: &str, calls: &[(String, String)]) -> HashMap<String, String> {
    let peer = peer_from(ip, node.udp).await;
    let port = peer.port();
    let mut ids = Vec::new();
    for (id, dnis) in calls {
        peer.send(&invite_pai(dnis, "+12125550123", "", id, port))
            .await;
        ids.push(node::call_id(id));
    }
    let mut finals = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while finals.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} answered: {:?}",
            finals.len(),
            ids.len(),
            finals.keys()
        );
        let Some(r) = peer.recv_within(1000).await else {
            continue;
        };
        if r.starts_with("SIP/2.0 100 ") {
            continue;
        }
        let id = header(&r, "Call-ID").unwrap().to_owned();
        finals.entry(id).or_insert(r);
    }
    finals
}

/// `n` calls to the toll-free line, Call-IDs `{tag}-{i}`.
fn calls(tag: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{tag}-{i}"), DNIS.to_owned()))
        .collect()
}

fn count(finals: &HashMap<String, String>, code: u16) -> usize {
    finals.values().filter(|r| status(r) == code).count()
}

#[tokio::test]
async fn a_trunk_passes_its_burst_and_answers_the_rest_503_with_retry_after_but_routes_an_emergency_call(
) {
    let s = Scratch::new();
    let node = s
        .start(&config(
            "retry_after_s = 7",
            &trunk("carrier", "127.0.0.1/32", "max_cps = 0.01\nmax_burst = 5"),
        ))
        .await;
    let mut offered = calls("burst", 30);
    // An emergency call in the middle of the flood.
    offered.insert(15, ("sos".to_owned(), "911".to_owned()));
    let finals = flood(&node, "127.0.0.1", &offered).await;
    assert_eq!(finals.len(), 31);
    let sos = &finals[&node::call_id("sos")];
    assert!(sos.starts_with("SIP/2.0 302 "), "{sos}");
    assert!(
        header(sos, "Contact")
            .unwrap()
            .starts_with("<sip:emergency@acd.example.net"),
        "{sos}"
    );
    let rest: HashMap<_, _> = finals
        .into_iter()
        .filter(|(id, _)| id != &node::call_id("sos"))
        .collect();
    assert_eq!(count(&rest, 302), 5, "exactly the burst is routed");
    assert_eq!(count(&rest, 503), 25);
    for r in rest.values().filter(|r| status(r) == 503) {
        assert!(r.starts_with("SIP/2.0 503 Service Unavailable\r\n"), "{r}");
        assert_eq!(header(r, "Retry-After"), Some("7"), "{r}");
        assert_eq!(header(r, "X-Rule"), Some("rate-limit/trunk"), "{r}");
    }
    // The limited calls never reached enrichment or the rules; each was decided once.
    assert_eq!(node.runs(), 31);
}

#[tokio::test]
async fn over_limit_answers_486_480_or_routes_to_the_overflow_queue_as_any_302() {
    let s = Scratch::new();
    // An overflow queue no rule routes to, declared as every queue is.
    let declared = node::QUEUES.replace("\"emergency\"", "\"emergency\", \"overflow\"");
    std::fs::write(s.path("routes").join("queues.toml"), &declared).unwrap();
    let node = s
        .start(&config(
            "",
            &[
                trunk(
                    "overflowing",
                    "127.0.0.1/32",
                    "max_cps = 0.01\nmax_burst = 1\nover_limit = \"queue:overflow\"",
                ),
                trunk(
                    "busy",
                    "127.0.0.4/32",
                    "max_cps = 0.01\nmax_burst = 1\nover_limit = \"486\"",
                ),
                trunk(
                    "away",
                    "127.0.0.5/32",
                    "max_cps = 0.01\nmax_burst = 1\nover_limit = \"480\"",
                ),
            ]
            .concat(),
        ))
        .await;
    let finals = flood(&node, "127.0.0.1", &calls("q", 3)).await;
    assert_eq!(count(&finals, 302), 3, "{finals:?}");
    let mut queues: Vec<_> = finals
        .values()
        .map(|r| {
            let contact = header(r, "Contact").unwrap();
            let user = contact
                .trim_start_matches("<sip:")
                .split('@')
                .next()
                .unwrap();
            (user.to_owned(), header(r, "X-Rule").unwrap().to_owned())
        })
        .collect();
    queues.sort();
    assert_eq!(
        queues,
        [
            ("general".to_owned(), "default/everyone".to_owned()),
            ("overflow".to_owned(), "rate-limit/trunk".to_owned()),
            ("overflow".to_owned(), "rate-limit/trunk".to_owned()),
        ]
    );
    // The overflow 302 is any 302: the Contact at the ACD with the call ref and the ANI, and
    // the same X- headers as the rules' 302.
    let overflow = finals
        .values()
        .find(|r| header(r, "X-Rule") == Some("rate-limit/trunk"))
        .unwrap();
    let routed = finals
        .values()
        .find(|r| header(r, "X-Rule") == Some("default/everyone"))
        .unwrap();
    let contact = header(overflow, "Contact").unwrap();
    assert!(
        contact.starts_with("<sip:overflow@acd.example.net;ref="),
        "{contact}"
    );
    assert!(contact.contains(";ani=%2B12125550123"), "{contact}");
    let names = |r: &str| -> Vec<String> {
        r.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
            .collect()
    };
    assert_eq!(names(overflow), names(routed));

    // A rules reload that stops declaring the overflow queue is refused; the live rules stay.
    let rules = &node.server.handler().inner.rules;
    let version = rules.current().version.clone();
    std::fs::write(
        s.path("routes").join("queues.toml"),
        declared.replace(", \"overflow\"", ""),
    )
    .unwrap();
    let errors = rules.reload().unwrap_err();
    assert!(
        errors[0]
            .message
            .contains("the overflow queue \"overflow\" (a trunk's over_limit) is not declared"),
        "{errors:?}"
    );
    assert_eq!(rules.current().version, version);
    assert!(rules.current().queues.contains("overflow"));

    let busy = flood(&node, "127.0.0.4", &calls("busy", 3)).await;
    assert_eq!(count(&busy, 302), 1);
    assert_eq!(count(&busy, 486), 2);
    let away = flood(&node, "127.0.0.5", &calls("away", 3)).await;
    assert_eq!(count(&away, 302), 1);
    assert_eq!(count(&away, 480), 2);
    for r in busy
        .values()
        .chain(away.values())
        .filter(|r| status(r) != 302)
    {
        assert!(
            r.starts_with("SIP/2.0 486 Busy Here\r\n")
                || r.starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"),
            "{r}"
        );
        assert_eq!(header(r, "Retry-After"), None, "only a 503 says when: {r}");
        assert_eq!(header(r, "X-Rule"), Some("rate-limit/trunk"));
    }
}

#[tokio::test]
async fn a_per_source_limit_holds_one_address_and_not_another_of_the_same_trunk() {
    let s = Scratch::new();
    let node = s
        .start(&config(
            "",
            &trunk(
                "carrier",
                "127.0.0.0/29",
                "max_cps = 100\nmax_cps_per_source = 0.01\nmax_burst_per_source = 2\n\
                 over_limit_per_source = \"480\"",
            ),
        ))
        .await;
    let flooding = flood(&node, "127.0.0.2", &calls("flood", 10)).await;
    assert_eq!(count(&flooding, 302), 2);
    assert_eq!(count(&flooding, 480), 8);
    for r in flooding.values().filter(|r| status(r) == 480) {
        assert_eq!(header(r, "X-Rule"), Some("rate-limit/source"), "{r}");
    }
    // Another address of the same trunk has its own bucket.
    let other = flood(&node, "127.0.0.3", &calls("other", 2)).await;
    assert_eq!(count(&other, 302), 2, "{other:?}");
    // Both calls went to the same trunk.
    assert!(node.calls().iter().all(|(f, _)| f.trunk == "carrier"));
}

#[tokio::test]
async fn the_node_limit_holds_every_trunk_and_a_trunk_over_its_own_limit_spends_none_of_it() {
    let s = Scratch::new();
    let node = s
        .start(&config(
            "max_cps = 0.01\nmax_burst = 4",
            &[
                trunk("a", "127.0.0.1/32", "max_cps = 0.01\nmax_burst = 1"),
                trunk("b", "127.0.0.2/32", ""),
            ]
            .concat(),
        ))
        .await;
    // Trunk a: one call passes, nine are over a's own limit and cost the node nothing.
    let a = flood(&node, "127.0.0.1", &calls("a", 10)).await;
    assert_eq!(count(&a, 302), 1);
    assert_eq!(count(&a, 503), 9);
    assert!(a
        .values()
        .filter(|r| status(r) == 503)
        .all(|r| header(r, "X-Rule") == Some("rate-limit/trunk")));
    // Trunk b has no limit of its own: the node's three tokens left pass, then the node's 503.
    let b = flood(&node, "127.0.0.2", &calls("b", 6)).await;
    assert_eq!(count(&b, 302), 3, "{b:?}");
    assert_eq!(count(&b, 503), 3);
    for r in b.values().filter(|r| status(r) == 503) {
        assert_eq!(header(r, "X-Rule"), Some("rate-limit/node"), "{r}");
        assert_eq!(header(r, "Retry-After"), Some("5"), "the default: {r}");
    }
    // Emergency calls pass the empty node bucket.
    let sos = flood(
        &node,
        "127.0.0.2",
        &[("sos-b".to_owned(), "911".to_owned())],
    )
    .await;
    assert_eq!(count(&sos, 302), 1);
}

#[tokio::test]
async fn explain_reads_the_live_buckets_and_charges_none() {
    let s = Scratch::new();
    let node = s
        .start(&config(
            "",
            &trunk("carrier", "127.0.0.1/32", "max_cps = 0.01\nmax_burst = 3"),
        ))
        .await;
    let pipeline = &node.server.handler().inner;
    let spec = tollgate_server::cmd::explain::CallSpec {
        ani: "+12125550123".into(),
        dnis: DNIS.into(),
        source: Some("127.0.0.1".parse().unwrap()),
        ..Default::default()
    };
    let explain = || async {
        let e = tollgate_server::cmd::explain::explain_call(&spec, pipeline)
            .await
            .unwrap();
        let text = tollgate_server::cmd::explain::render(&e, "v");
        (e, text)
    };
    for _ in 0..10 {
        let (e, text) = explain().await;
        assert_eq!(e.outcome.decision.queue(), Some("general"), "{text}");
        assert!(
            text.contains(
                "limits    trunk carrier 0.01 cps burst 3: passes, 2 left after it \
                 (read, not charged: a dry run)"
            ),
            "{text}"
        );
    }
    // Ten explains later the three tokens are all there for live calls.
    let live = flood(&node, "127.0.0.1", &calls("live", 4)).await;
    assert_eq!(count(&live, 302), 3, "{live:?}");
    assert_eq!(count(&live, 503), 1);
    // Now explain says what a live call gets: the limit's answer, not the rules'.
    let (e, text) = explain().await;
    let record = e.record();
    assert_eq!(record.status, 503);
    assert_eq!(record.decided_by, "rate-limit-trunk");
    assert_eq!(record.rule, "rate-limit/trunk");
    assert!(
        text.contains("limits    trunk carrier 0.01 cps burst 3: over it (next token in"),
        "{text}"
    );
    assert!(
        text.contains("decision  503 Service Unavailable by rate-limit/trunk (rate-limit-trunk)"),
        "{text}"
    );
    // An emergency call is never limited, and explain says so.
    let sos = tollgate_server::cmd::explain::CallSpec {
        dnis: "911".into(),
        ..spec.clone()
    };
    let e = tollgate_server::cmd::explain::explain_call(&sos, pipeline)
        .await
        .unwrap();
    assert_eq!(e.outcome.decision.queue(), Some("emergency"));
    assert_eq!(
        e.outcome.limits.as_deref(),
        Some("emergency call: never limited, nothing charged")
    );
}

/// `tollgate serve` with every stdout line kept (the decision log) and its addresses.
struct Served {
    child: Child,
    udp: SocketAddr,
    http: SocketAddr,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(text: &str) -> Served {
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
    let lines = Arc::new(Mutex::new(Vec::new()));
    // Killed on drop from here on, whatever happens below.
    let unbound: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let mut served = Served {
        child,
        udp: unbound,
        http: unbound,
        lines: Arc::clone(&lines),
        _dir: dir,
    };
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                kept.lock().unwrap().push(v);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = |v: &serde_json::Value, k: &str| -> Option<SocketAddr> {
        v[k].as_str()?
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()
    };
    loop {
        let (udp, http) = {
            let l = lines.lock().unwrap();
            let find = |m: &str, k: &str| {
                l.iter()
                    .find(|v| v["message"] == m)
                    .and_then(|v| addr(v, k))
            };
            (find("listening", "udp"), find("HTTP API listening", "http"))
        };
        if let (Some(udp), Some(http)) = (udp, http) {
            served.udp = udp;
            served.http = http;
            return served;
        }
        assert!(Instant::now() < deadline, "tollgate serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_node_logs_one_line_per_limited_call_counts_it_and_explains_it() {
    let text = http_support::config("").replace(
        "trusted = true\n",
        "trusted = true\nmax_cps = 0.01\nmax_burst = 2\nover_limit = \"486\"\n\
         max_cps_per_source = 0.01\nmax_burst_per_source = 10\n",
    );
    let node = serve(&text);
    let base = format!("http://{}", node.http);
    http_support::ready(&base).await;
    let mut answers = Vec::new();
    for i in 0..3 {
        let r = http_support::call(node.udp, DNIS, "+12125550123", &format!("real-{i}")).await;
        answers.push(status(&r));
    }
    assert_eq!(answers, [302, 302, 486]);

    // One decision line for the limited call, saying which limit and what it got.
    let limited = {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<serde_json::Value> = node
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|v| v["target"] == "tollgate::decision")
                .filter(|v| v["call_id"] == "real-2@carrier.example.net")
                .cloned()
                .collect();
            if !found.is_empty() || Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert_eq!(limited.len(), 1, "{limited:?}");
    let line = &limited[0];
    assert_eq!(line["decided_by"], "rate-limit-trunk", "{line}");
    assert_eq!(line["status"], 486, "{line}");
    assert_eq!(line["rule"], "rate-limit/trunk", "{line}");
    assert_eq!(line["outcome"], "reject", "{line}");
    assert_eq!(line["enrich"], "skipped", "{line}");
    assert_eq!(line["trunk"], "local", "{line}");

    // Counted by trunk, limit and action.
    let scrape = http_support::http()
        .get(format!("{base}/metrics"))
        .bearer_auth(http_support::ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = scrape
        .lines()
        .find(|l| l.starts_with("tollgate_rate_limited_total{"))
        .unwrap_or_else(|| panic!("no tollgate_rate_limited_total in\n{scrape}"));
    for label in ["trunk=\"local\"", "limit=\"trunk\"", "action=\"486\""] {
        assert!(sample.contains(label), "{sample}");
    }
    assert!(sample.ends_with(" 1"), "{sample}");

    // The admin API's explain, on the running node: the limit's answer, nothing charged.
    for _ in 0..3 {
        let (code, body) = http_support::json(
            http_support::http()
                .post(format!("{base}/v1/admin/explain"))
                .bearer_auth(http_support::ADMIN)
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"ani": "+12125550123", "dnis": "{DNIS}", "trunk": "local"}}"#
                )),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["record"]["decided_by"], "rate-limit-trunk", "{body}");
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains(
                "limits    source 0.01 cps burst 10: not checked (no source address); \
                 trunk local 0.01 cps burst 2: over it"
            ),
            "{text}"
        );
    }
    // The sweep reports the addresses the per-source limit tracks: 127.0.0.1 only (its bucket
    // will not be full again for 300 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = http_support::http()
            .get(format!("{base}/metrics"))
            .bearer_auth(http_support::ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if scrape
            .lines()
            .any(|l| l == "tollgate_rate_limit_sources{trunk=\"local\"} 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no tollgate_rate_limit_sources{{trunk=\"local\"}} 1 in\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sample_after = http_support::http()
        .get(format!("{base}/metrics"))
        .bearer_auth(http_support::ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sample_after.contains(sample),
        "explain counted a limited call:\n{sample_after}"
    );
}

#[test]
fn check_reports_every_bad_limit_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    std::fs::write(routes.join("default.toml"), node::RULES).unwrap();
    std::fs::write(routes.join("queues.toml"), node::QUEUES).unwrap();
    let bad = dir.path().join("limits.toml");
    let check = |text: &str| {
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["check", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let text = "[sip]\nudp = [\"127.0.0.1:5060\"]\nmax_cps = 0\nmax_burst = 3\n\
                retry_after_s = 0\n\n\
                [[trunk]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\nmax_cps = -1\nmax_burst = 0\n\
                over_limit = \"404\"\nmax_cps_per_source = 1e9\n\n\
                [[trunk]]\nname = \"b\"\ncidrs = [\"10.1.0.0/16\"]\nover_limit = \"queue:a b\"\n\
                max_burst_per_source = 2\n\n\
                [routing]\nacd_host = \"acd.example.net\"\nrules_dir = \"routes\"\n";
    let (ok, out) = check(text);
    assert!(!ok, "{out}");
    let want = [
        ":3: sip.max_cps: 0: calls per second must be from 0.001 to 100000",
        ":5: sip.retry_after_s: 0: seconds must be from 1 to 86400",
        ":10: trunk[0].max_cps: -1: calls per second",
        ":12: trunk[0].over_limit: \"404\": expected \"503\", \"486\", \"480\" or \"queue:NAME\"",
        ":13: trunk[0].max_cps_per_source: 1000000000: calls per second",
        ":18: trunk[1].over_limit: queue \"a b\" must be",
        ":19: trunk[1].max_burst_per_source: needs trunk[1].max_cps_per_source",
    ];
    for w in want {
        assert!(out.contains(w), "missing {w:?} in:\n{out}");
    }
    assert!(
        out.lines().all(|l| l.starts_with(bad.to_str().unwrap())),
        "{out}"
    );
    // A burst is checked once its rate is good.
    let (ok, out) = check(&text.replace("max_cps = -1", "max_cps = 2.5"));
    assert!(!ok);
    assert!(
        out.contains(":11: trunk[0].max_burst: 0: calls at once must be from 1 to 1000000"),
        "{out}"
    );
    // A string where a number belongs is the TOML parser's error, with its line.
    let (ok, out) = check(&text.replace("max_cps = 0\n", "max_cps = \"fast\"\n"));
    assert!(!ok);
    assert!(
        out.contains(":3: sip.max_cps: invalid type: string \"fast\", expected f64"),
        "{out}"
    );
    let (ok, out) = check(&text.replace("max_burst = 0\n", "max_burst = 1.5\n"));
    assert!(!ok);
    assert!(
        out.contains(":11: trunk[0].max_burst: invalid type: floating point `1.5`"),
        "{out}"
    );

    // An overflow queue must be declared in the rules' queues.toml, as every queue is.
    let good = "[sip]\nudp = [\"127.0.0.1:5060\"]\nmax_cps = 200\n\n\
                [[trunk]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\"]\nmax_cps = 20.5\n\
                over_limit = \"queue:overflow\"\nmax_cps_per_source = 2\n\n\
                [routing]\nacd_host = \"acd.example.net\"\nrules_dir = \"routes\"\n";
    let (ok, out) = check(good);
    assert!(!ok);
    assert!(
        out.contains(":9: trunk[0].over_limit: overflow queue \"overflow\" is not in queues.toml"),
        "{out}"
    );
    let (ok, out) = check(&good.replace("queue:overflow", "queue:callback"));
    assert!(ok, "{out}");
}

/// sipp as a carrier: 40 calls at 400 calls a second against a trunk of 10 at once. Exactly 10
/// are redirected (sipp's successful calls); the 30 others get 503 (sipp's failed calls, an
/// unexpected answer for its 302 scenario), and none of them ran enrichment or the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_offered_four_times_the_burst_gets_exactly_the_burst_routed() {
    let s = Scratch::new();
    let node = s
        .start(&config(
            "",
            &trunk("carrier", "127.0.0.1/32", "max_cps = 0.01\nmax_burst = 10"),
        ))
        .await;
    let dir = s.path("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..40 {
        csv.push_str(&format!("1212555{i:04};18005550100;{i:07}\n"));
    }
    std::fs::write(dir.join("calls.csv"), csv).unwrap();
    let target = node.udp.to_string();
    let d = dir.clone();
    let run = tokio::task::spawn_blocking(move || common::sipp(&target, &d, 40, 400, 400, "60s"))
        .await
        .unwrap();
    assert_eq!(run.successful, 10, "sipp: {}", run.stderr);
    assert_eq!(run.failed, 30, "sipp: {}", run.stderr);
    let decided = node.calls();
    assert_eq!(decided.len(), 40);
    let limited = decided
        .iter()
        .filter(|(_, d)| d.rule == "rate-limit/trunk")
        .count();
    assert_eq!(limited, 30);
}
