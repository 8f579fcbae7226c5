//! One decision path: for every call of a mixed sipp run (CRM hits, block and gray lists, a
//! repeat caller, a closed line, STIR/SHAKEN, ANI II, a velocity burst, an untrusted source,
//! an emergency call), `POST /v1/admin/explain` on the live node, asked just before the call,
//! gives the decision record the node's decision log then writes for it, field by field.
//!
//! The node is the real `serve` (config file, adapters, HTTP API, SIP on UDP), its decision
//! log captured from the real tracing output; sipp sends each call.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../crates/stir/tests/common/mod.rs"]
mod sti;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const ADMIN: &str = "test-admin-token-0123456789";

/// A tracing writer that keeps every line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The decision lines logged so far, as JSON (those of `early_answers_…` only when asked).
    fn decisions(&self) -> Vec<serde_json::Value> {
        self.all()
            .into_iter()
            .filter(|v| !v["call_id"].as_str().unwrap_or("").starts_with("early-"))
            .collect()
    }

    fn all(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "tollgate::decision")
            .collect()
    }
}

/// The test binary's one tracing subscriber, writing to memory.
fn captured() -> &'static Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter("warn,tollgate::decision=info")
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

fn rules(dir: &std::path::Path) {
    let routes = dir.join("routes");
    std::fs::create_dir_all(&routes).unwrap();
    std::fs::write(
        routes.join("queues.toml"),
        "queues = [\"general\", \"support-vip\", \"verify-ivr\", \"after-hours\", \"sales\", \
         \"attested\", \"payphone\", \"emergency\"]\n",
    )
    .unwrap();
    std::fs::write(
        routes.join("default.toml"),
        r#"name = "default"
time_zone = "America/New_York"

[[rule]]
name = "blocked"
when = { risk = "blocked" }
reject = 607

[[rule]]
name = "vip"
when = { tier = ["gold", "platinum"] }
queue = { name = "support-vip", priority = 9 }

[[rule]]
name = "payphone"
when = { ani_ii = [27, 29, 70] }
queue = "payphone"

[[rule]]
name = "attested"
when = { attestation = "A" }
queue = "attested"

[[rule]]
name = "back"
when = { repeat_within = "1h" }
queue = { name = "$last", fallback = "general", priority = 5 }

[[rule]]
name = "everyone"
queue = "general"
"#,
    )
    .unwrap();
    // A line that is closed all day today (yesterday to tomorrow are holidays).
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let days: Vec<String> = [-1i64, 0, 1]
        .iter()
        .map(|d| {
            today
                .checked_add(jiff::Span::new().days(*d))
                .unwrap()
                .to_string()
        })
        .map(|d| format!("\"{d}\""))
        .collect();
    std::fs::write(
        routes.join("sales.toml"),
        format!(
            "name = \"sales\"\ndnis = [\"+18885550101\"]\ntime_zone = \"UTC\"\noverflow = \"after-hours\"\n\n\
             [hours]\nmon = \"08:00-18:00\"\ntue = \"08:00-18:00\"\nwed = \"08:00-18:00\"\n\
             thu = \"08:00-18:00\"\nfri = \"08:00-18:00\"\nsat = \"08:00-18:00\"\nsun = \"08:00-18:00\"\n\
             holidays = [{}]\n\n[[rule]]\nname = \"everyone\"\nqueue = \"sales\"\n",
            days.join(", ")
        ),
    )
    .unwrap();
}

/// One call: who, to where, from which address, and extra header lines.
struct Spec {
    what: &'static str,
    ani: String,
    dnis: &'static str,
    /// `;oli=..` and such, inside the PAI URI.
    pai_params: &'static str,
    extra: String,
    source: &'static str,
}

fn spec(what: &'static str, ani: &str, dnis: &'static str) -> Spec {
    Spec {
        what,
        ani: ani.to_owned(),
        dnis,
        pai_params: "",
        extra: String::new(),
        source: "127.0.0.1",
    }
}

/// The INVITE with sipp's keywords left in (`[remote_ip]` …) for sipp, or filled in for explain.
fn invite(s: &Spec, fill: Option<(&str, SocketAddr)>) -> String {
    let text = format!(
        "INVITE sip:{dnis}@[remote_ip]:[remote_port];user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]\r\n\
         From: <sip:{ani}@carrier.example.net;user=phone>;tag=[call_number]\r\n\
         To: <sip:{dnis}@[remote_ip]:[remote_port];user=phone>\r\n\
         Call-ID: [call_id]\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:trunk@[local_ip]:[local_port]>\r\n\
         Max-Forwards: 70\r\n\
         P-Asserted-Identity: <sip:{ani}@carrier.example.net;user=phone{params}>\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        dnis = s.dnis,
        ani = s.ani,
        params = s.pai_params,
        extra = s.extra,
    );
    match fill {
        None => text,
        Some((call_id, server)) => text
            .replace("[remote_ip]", &server.ip().to_string())
            .replace("[remote_port]", &server.port().to_string())
            .replace("[local_ip]", s.source)
            .replace("[local_port]", "5070")
            .replace("[branch]", "z9hG4bKexplain")
            .replace("[call_number]", "1")
            .replace("[call_id]", call_id),
    }
}

/// Sends one call with sipp, expecting `status`, and ACKs it.
fn sipp_call(dir: &std::path::Path, s: &Spec, server: SocketAddr, status: u64) {
    let scenario = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"one\">\n\
         <send retrans=\"500\"><![CDATA[\n{}\n]]></send>\n\
         <recv response=\"100\" optional=\"true\"/>\n<recv response=\"{status}\"/>\n\
         <send><![CDATA[\nACK sip:{dnis}@[remote_ip]:[remote_port];user=phone SIP/2.0\n\
         Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch-3]\n\
         From: <sip:{ani}@carrier.example.net;user=phone>;tag=[call_number]\n\
         To: <sip:{dnis}@[remote_ip]:[remote_port];user=phone>[peer_tag_param]\n\
         Call-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n\
         </scenario>\n",
        invite(s, None).replace("\r\n", "\n"),
        dnis = s.dnis,
        ani = s.ani,
    );
    let path = dir.join("one.xml");
    std::fs::write(&path, scenario).unwrap();
    let out = std::process::Command::new("sipp")
        .arg(server.to_string())
        .args(["-sf", path.to_str().unwrap()])
        .args(["-m", "1", "-i", s.source, "-p", "0"])
        .args(["-timeout", "10s", "-timeout_error", "-recv_timeout", "5000"])
        .arg("-nostdin")
        .output()
        .expect("sipp runs (apt-get install sip-tester)");
    assert!(
        out.status.success(),
        "{}: sipp did not get {status}: {}",
        s.what,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_on_the_live_node_equals_the_decision_log_for_every_call() {
    let captured = captured();

    // STIR/SHAKEN: a test STI-PA, a service provider certificate and an x5u server.
    let ca = sti::Ca::new("Test STI-PA");
    let anchors = ca.anchor_dir();
    let sp = ca.issue(sti::LeafSpec::default());
    let certs = sti::CertServer::start().await;
    let x5u = certs.serve("/sp.pem", sti::Route::pem(&sp.pem));

    let dir = tempfile::tempdir().unwrap();
    rules(dir.path());
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/directory.csv"),
        dir.path().join("directory.csv"),
    )
    .unwrap();
    let config = format!(
        "[sip]\nudp = [\"127.0.0.1:0\"]\nunknown_source = \"untrusted\"\nt1_ms = 50\nt4_ms = 200\n\
         enrich_deadline_ms = 1000\ndecision_timeout_ms = 3000\n\n\
         [[trunk]]\nname = \"carrier\"\ncidrs = [\"127.0.0.1/32\"]\ntrusted = true\nregion = \"US\"\n\n\
         [routing]\nacd_host = \"acd.example.net\"\nemergency_queue = \"emergency\"\nrules_dir = \"routes\"\n\n\
         [crm]\nkind = \"file\"\n[crm.file]\npath = \"directory.csv\"\n\n\
         [risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\nlist_refresh_ms = 100\ngray_queue = \"verify-ivr\"\n\n\
         [stir]\ntrust_anchors_dir = \"{}\"\nallowed_hosts = [\"127.0.0.1\"]\nallow_http = true\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[[http.token]]\nname = \"admin\"\nscope = \"admin\"\ntoken = \"{ADMIN}\"\n",
        anchors.path().display()
    );
    let path = dir.path().join("tollgate.toml");
    std::fs::write(&path, config).unwrap();
    let plan = Arc::new(tollgate_core::NumberPlan::load());
    let cfg = tollgate_server::config::load(&path, &plan).unwrap_or_else(|e| panic!("{e}"));
    let intel = Arc::new(tollgate_core::NumberIntel::load().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, run) = tollgate_server::serve(cfg, plan, intel, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let served = tokio::spawn(run);
    let sip = bound.udp[0];
    let api = format!("http://{}", bound.http.unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    for (list, number) in [("block", "+12125550111"), ("gray", "+12125550122")] {
        let r = http
            .post(format!("{api}/v1/admin/lists/{list}"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(serde_json::json!({"pattern": number, "reason": "test"}).to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{list} {number}: {}", r.status());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let identity = |ani: &str, dnis: &str| {
        let iat = sti::unix(SystemTime::now());
        let token = sp.sign(
            &sti::shaken_header(&x5u),
            &sti::shaken_claims("A", dnis, iat, ani),
        );
        format!("Identity: {}\r\n", sti::identity(&token, &x5u))
    };
    let mut calls = vec![
        spec("crm gold", "+4930123456", "+18005550100"),
        spec("blocked", "+12125550111", "+18005550100"),
        spec("gray", "+12125550122", "+18005550100"),
        Spec {
            pai_params: ";oli=27",
            ..spec("payphone, then remembered", "+16175550100", "+18005550100")
        },
        spec(
            "repeat caller back to its last queue",
            "+16175550100",
            "+18005550100",
        ),
        spec("closed line", "+13055550100", "+18885550101"),
        Spec {
            extra: identity("13035550100", "18005550100"),
            ..spec("signed A", "+13035550100", "+18005550100")
        },
        Spec {
            source: "127.0.0.2",
            ..spec("untrusted source", "+14045550100", "+18005550100")
        },
        spec("emergency from a blocked number", "+12125550111", "911"),
    ];
    for i in 0..7 {
        calls.push(spec(
            [
                "burst 1", "burst 2", "burst 3", "burst 4", "burst 5", "burst 6", "burst 7",
            ][i],
            "+15125550100",
            "+18005550100",
        ));
    }

    let mut seen = std::collections::BTreeSet::new();
    for (n, s) in calls.iter().enumerate() {
        let explained: serde_json::Value = http
            .post(format!("{api}/v1/admin/explain"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "sip": invite(s, Some((&format!("explain-{n}"), sip))),
                    "source": s.source,
                })
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}")))
            .unwrap();
        let record = explained["record"].clone();
        assert!(record.is_object(), "{}: {explained}", s.what);
        // Where the risk policy moved the call, explain's text says so in its `policy` line
        // (tollgate_router::decide's own step, the function the live call runs too).
        if record["decided_by"] == "risk-verify" {
            let text = explained["text"].as_str().unwrap();
            let want = format!(
                "policy    risk-verify: {} instead of ",
                record["queue"].as_str().unwrap()
            );
            assert!(text.contains(&want), "{}: {text}", s.what);
        }
        let status = record["status"].as_u64().unwrap();
        let before = captured.decisions().len();
        let (d, spec_ref, server) = (dir.path().to_owned(), s, sip);
        tokio::task::block_in_place(|| sipp_call(&d, spec_ref, server, status));
        let logged = captured.decisions();
        assert_eq!(logged.len(), before + 1, "{}: one decision line", s.what);
        let live = logged.last().unwrap();
        for (k, v) in record.as_object().unwrap() {
            if k == "call_id" || k == "call_ref" {
                continue;
            }
            assert_eq!(
                &live[k], v,
                "{}: field {k}: live {} explain {}\nlive: {live}\nexplain: {record}",
                s.what, live[k], v
            );
        }
        seen.insert(format!(
            "{} {} {}",
            record["decided_by"].as_str().unwrap(),
            record["status"],
            record["queue"].as_str().unwrap()
        ));
        eprintln!(
            "{}: {} {} by {}",
            s.what, record["status"], record["queue"], record["rule"]
        );
    }
    // The mix really covered what it claims.
    for want in [
        "rule 302 support-vip",
        "rule-reject 607 -",
        "risk-verify 302 verify-ivr",
        "rule 302 payphone",
        "rule 302 after-hours",
        "rule 302 attested",
        "rule 302 emergency",
    ] {
        assert!(seen.contains(want), "no call decided {want:?}: {seen:?}");
    }
    let log = captured.decisions();
    let burst: Vec<&serde_json::Value> =
        log.iter().filter(|v| v["ani"] == "+15125550100").collect();
    assert!(
        burst
            .last()
            .is_some_and(|v| v["risk_signals"].as_str().unwrap().contains("velocity")),
        "the burst's last call raised a velocity signal: {:?}",
        burst.last()
    );
    let repeat = log
        .iter()
        .filter(|v| v["ani"] == "+16175550100")
        .nth(1)
        .unwrap();
    assert_eq!(repeat["queue"], "payphone", "$last: {repeat}");
    assert_eq!(repeat["repeat_of"], "payphone");
    let _ = std::io::stderr().flush();
    let _ = stop.send(());
    served.await.unwrap();
}

/// Answers the SIP layer gives without a decision leave a decision line too: the 403 for a
/// source no trunk claims, and the 420 for an unsupported `Require` (RFC 3261 §8.2.2.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_leave_one_decision_line_each() {
    let captured = captured();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tollgate.toml");
    std::fs::write(
        &path,
        "[sip]\nudp = [\"127.0.0.1:0\"]\nunknown_source = \"reject\"\nunsupported_require = \"reject\"\n\
         [[trunk]]\nname = \"carrier\"\ncidrs = [\"127.0.0.1/32\"]\ntrusted = true\n\
         [routing]\nacd_host = \"acd.example.net\"\ndefault_queue = \"general\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[[http.token]]\nname = \"admin\"\nscope = \"admin\"\ntoken = \"test-admin-token-0123456789\"\n",
    )
    .unwrap();
    let plan = Arc::new(tollgate_core::NumberPlan::load());
    let cfg = tollgate_server::config::load(&path, &plan).unwrap();
    let intel = Arc::new(tollgate_core::NumberIntel::load().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, run) = tollgate_server::serve(cfg, plan, intel, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let served = tokio::spawn(run);
    let server = bound.udp[0];
    let api = format!("http://{}", bound.http.unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let msg_for = |from_ip: &str, port: u16, id: &str, extra: &str| {
        format!(
            "INVITE sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP {from_ip}:{port};branch=z9hG4bK{id}\r\n\
             From: <sip:+12125550100@x.example;user=phone>;tag=1\r\nTo: <sip:+18005550100@127.0.0.1>\r\n\
             Call-ID: {id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let explain = |from_ip: &'static str, id: &'static str, extra: &'static str| {
        let (http, api) = (http.clone(), api.clone());
        let msg = msg_for(from_ip, 5070, id, extra);
        async move {
            let t = http
                .post(format!("{api}/v1/admin/explain"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body(serde_json::json!({"sip": msg, "source": from_ip}).to_string())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
            v["record"].clone()
        }
    };
    let send = |from_ip: &'static str, id: &'static str, extra: &'static str| async move {
        let sock = tokio::net::UdpSocket::bind(format!("{from_ip}:0"))
            .await
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let msg = msg_for(from_ip, port, id, extra);
        sock.send_to(msg.as_bytes(), server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let explained = [
        explain("127.0.0.9", "early-unknown", "").await,
        explain(
            "127.0.0.1",
            "early-require",
            "Require: no-such-extension\r\n",
        )
        .await,
    ];
    let r = send("127.0.0.9", "early-unknown", "").await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    let r = send(
        "127.0.0.1",
        "early-require",
        "Require: no-such-extension\r\n",
    )
    .await;
    assert!(r.starts_with("SIP/2.0 420"), "{r}");
    let lines: Vec<serde_json::Value> = captured
        .all()
        .into_iter()
        .filter(|v| v["call_id"].as_str().unwrap_or("").starts_with("early-"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let unknown = &lines[0];
    assert_eq!(unknown["call_id"], "early-unknown");
    assert_eq!(unknown["status"], 403);
    assert_eq!(unknown["outcome"], "reject");
    assert_eq!(unknown["decided_by"], "unknown-source");
    assert_eq!(unknown["trunk"], "-");
    assert_eq!(unknown["ani"], "+12125550100");
    let require = &lines[1];
    assert_eq!(require["status"], 420);
    assert_eq!(require["decided_by"], "bad-extension");
    assert_eq!(require["trunk"], "carrier");
    assert_eq!(require["reason"], "Bad Extension");
    // explain, asked with the same INVITEs and sources, said exactly this.
    for (record, live) in explained.iter().zip(&lines) {
        assert!(record.is_object(), "{record}");
        for (k, v) in record.as_object().unwrap() {
            if k != "call_ref" {
                assert_eq!(&live[k], v, "field {k}: live {live} explain {record}");
            }
        }
    }
    let _ = stop.send(());
    served.await.unwrap();
}
