//! Shadow rules against the real binary over real sockets: a shadow whose every rule rejects
//! never changes a live answer (each call is sent to a node without a shadow and to one with
//! it, and the answers must be the same, byte for byte once the per-call parts are set
//! aside), while the shadow's own answers show in the decision log, the metrics and
//! `GET /v1/admin/shadow`; a shadow that fails to load is reported and ignored; promote and
//! rollback through the admin API with the history.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod http_support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use http_support::*;

/// A rules directory whose every rule a call can reach rejects: the default set (the only
/// set, so every dialled number uses it) rejects valid callers 403 and the rest 404. The
/// parser insists a default set ends with a routing rule without `when`; no call reaches it
/// (every caller is valid or not), and the test checks that none did.
fn all_reject(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(routes_dir().join("queues.toml"), dir.join("queues.toml")).unwrap();
    std::fs::write(
        dir.join("default.toml"),
        r#"name = "default"
time_zone = "America/New_York"

[[rule]]
name = "reject-valid"
when = { valid = true }
reject = 403

[[rule]]
name = "reject-invalid"
when = { valid = false }
reject = { code = 404, reason = "Not Found" }

[[rule]]
name = "unreachable"
queue = "general"
"#,
    )
    .unwrap();
}

/// The answer with its per-call parts (Via branch, tags, Call-ID, the Contact's `ref=`) set
/// aside: the status line and the Contact's queue and host.
fn answer(resp: &str) -> String {
    let status = resp.lines().next().unwrap().to_owned();
    let contact = resp
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("contact:"))
        .map(|c| c.split(';').next().unwrap().to_owned());
    format!("{status} {contact:?}")
}

/// Decision lines until `n` have come (or the wait runs out), by Call-ID.
fn decisions(p: &Process, n: usize) -> HashMap<String, serde_json::Value> {
    let mut out = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(v) = p.log.recv_timeout(left) else {
            break;
        };
        if v["message"] == "decision" {
            out.insert(v["call_id"].as_str().unwrap().to_owned(), v);
        }
    }
    out
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_rejects_every_call_never_changes_a_live_answer() {
    let dir = tempfile::tempdir().unwrap();
    let shadow = dir.path().join("shadow");
    all_reject(&shadow);
    let text = config("");
    let plain = Process::start(&text);
    let with_shadow = Process::start(&text.replace(
        "[log]",
        &format!("shadow_dir = \"{}\"\n\n[log]", shadow.display()),
    ));

    // US, UK, German, invalid and foreign callers to every line and to an unknown number.
    let anis = [
        "+12125550123",
        "+442072601234",
        "+4930123456",
        "+1212",
        "+33142685300",
    ];
    let dnises = ["18005550100", "18885550101", "18775550102", "18009990000"];
    const CALLS: usize = 200;
    let mut routed = 0;
    for i in 0..CALLS {
        let ani = anis[i % anis.len()];
        let dnis = dnises[(i / anis.len()) % dnises.len()];
        let id = format!("shadow-{i}");
        let a = call(plain.udp, dnis, ani, &id).await;
        let b = call(with_shadow.udp, dnis, ani, &id).await;
        assert_eq!(
            answer(&a),
            answer(&b),
            "call {i} ({ani} → {dnis}): the shadow changed the answer"
        );
        routed += usize::from(a.starts_with("SIP/2.0 302 "));
    }
    assert!(
        routed > CALLS / 2,
        "only {routed} calls routed: a weak proof"
    );

    // The shadow did decide every call, and every one of its answers was a rejection.
    let plain_log = decisions(&plain, CALLS);
    let shadow_log = decisions(&with_shadow, CALLS);
    assert_eq!(shadow_log.len(), CALLS);
    assert_eq!(plain_log.len(), CALLS);
    for (id, line) in &shadow_log {
        let live = &plain_log[id];
        for k in ["status", "queue", "rule", "decided_by", "rules_version"] {
            assert_eq!(line[k], live[k], "{id}: {k}");
        }
        assert_eq!(live["shadow"], "-", "{id}: no shadow on the plain node");
        assert_eq!(line["shadow"], "moved", "{id}: {line}");
        let status = line["shadow_status"].as_u64().unwrap();
        assert!(status == 403 || status == 404, "{id}: {line}");
        assert_eq!(line["shadow_queue"], "-");
        let rule = line["shadow_rule"].as_str().unwrap();
        assert!(rule.starts_with("default/reject-"), "{id}: {rule}");
    }

    let c = http();
    let (code, v) = json(
        c.get(format!("{}/v1/admin/shadow", with_shadow.base()))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["active"], true);
    let s = &v["summary"];
    assert_eq!(s["calls"], CALLS, "{v}");
    assert_eq!(s["moved"], CALLS, "{v}");
    assert_eq!(s["moved_share"], 1.0);
    assert!(s["since"].is_string());
    let top = s["top_pairs"].as_array().unwrap();
    assert!(!top.is_empty());
    assert!(top[0]["samples"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(s["by_dnis"].as_array().unwrap().len() >= dnises.len());
    let (code, _) = json(
        c.get(format!("{}/v1/admin/shadow", with_shadow.base()))
            .bearer_auth(AGENT_GENERAL),
    )
    .await;
    assert_eq!(code, 403, "an agent token may not read the shadow");

    let metrics = c
        .get(format!("{}/metrics", with_shadow.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "tollgate_shadow_calls_total{result=\"moved\"}"),
        CALLS as f64,
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_shadow_moved_total{"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_fails_to_load_is_reported_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(routes_dir().join("queues.toml"), bad.join("queues.toml")).unwrap();
    std::fs::write(
        bad.join("default.toml"),
        "name = \"default\"\n[[rule]]\nnope = 1\n",
    )
    .unwrap();
    let good = dir.path().join("good");
    all_reject(&good);

    // At start: the node runs on its live rules alone, and says why.
    let node = Process::start(&config("").replace(
        "[log]",
        &format!("shadow_dir = \"{}\"\n\n[log]", bad.display()),
    ));
    let c = http();
    let shadow = || {
        c.get(format!("{}/v1/admin/shadow", node.base()))
            .bearer_auth(ADMIN)
    };
    let (code, v) = json(shadow()).await;
    assert_eq!(code, 200);
    assert_eq!(v["active"], false, "{v}");
    assert!(!v["load_errors"].as_array().unwrap().is_empty(), "{v}");
    let r = call(node.udp, "18005550100", "+12125550123", "bad-1").await;
    assert!(r.starts_with("SIP/2.0 302 "), "{r}");

    // Through the API: a good shadow loads, a bad one after it is refused and leaves it.
    let load = |d: &Path| {
        c.post(format!("{}/v1/admin/shadow", node.base()))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "dir": d }).to_string())
    };
    let (code, v) = json(load(&good)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["active"], true);
    assert!(v["load_errors"].as_array().unwrap().is_empty());
    let version = v["version"].clone();
    let (code, v) = json(load(&bad)).await;
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );
    let (_, v) = json(shadow()).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["version"], version, "the good shadow stays");
    assert!(!v["load_errors"].as_array().unwrap().is_empty());
    let r = call(node.udp, "18005550100", "+12125550123", "bad-2").await;
    assert!(r.starts_with("SIP/2.0 302 "), "{r}");
    let (_, v) = json(shadow()).await;
    assert_eq!(v["summary"]["calls"], 1, "{v}");

    // Promote: the shadow is live (every call now rejected), recorded with who and why;
    // rollback brings the previous version back. An agent token may do neither.
    let swap = |what: &str, token: &str| {
        c.post(format!("{}/v1/admin/rules/{what}", node.base()))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "reason": format!("test {what}") }).to_string())
    };
    let (code, _) = json(swap("promote", AGENT_GENERAL)).await;
    assert_eq!(code, 403);
    let (_, h) = json(
        c.get(format!("{}/v1/admin/rules/history", node.base()))
            .bearer_auth(ADMIN),
    )
    .await;
    let first = h["live"].clone();
    let (code, v) = json(swap("promote", ADMIN)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["version"], version);
    assert_eq!(v["by"], "ops");
    let r = call(node.udp, "18005550100", "+12125550123", "bad-3").await;
    assert!(
        r.starts_with("SIP/2.0 403 "),
        "the promoted rules answer: {r}"
    );
    let (code, v) = json(swap("promote", ADMIN)).await;
    assert_eq!(code, 422, "nothing left to promote: {v}");
    let (code, v) = json(swap("rollback", ADMIN)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["version"], first);
    let r = call(node.udp, "18005550100", "+12125550123", "bad-4").await;
    assert!(r.starts_with("SIP/2.0 302 "), "rolled back: {r}");
    let (code, h) = json(
        c.get(format!("{}/v1/admin/rules/history", node.base()))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(code, 200);
    let versions = h["versions"].as_array().unwrap();
    let actions: Vec<_> = versions
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["start", "promote", "rollback"], "{h}");
    assert_eq!(versions[1]["reason"], "test promote");
    assert_eq!(versions[2]["by"], "ops");
    assert_eq!(h["live"], first);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_commands_promote_and_roll_back_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let shadow = dir.path().join("shadow");
    all_reject(&shadow);
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{ADMIN}\n")).unwrap();
    let node = Process::start(&config(""));
    let base = node.base();
    let tollgate = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("rules")
            .args(args)
            .args(["--url", &base, "--token-file", token.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = tollgate(&["promote", "--reason", "nothing yet"]);
    assert!(!ok, "no shadow to promote");
    assert!(err.contains("no shadow"), "{err}");
    let (ok, out, err) = tollgate(&["shadow", "--load", shadow.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["active"], true);
    let (ok, out, err) = tollgate(&["promote", "--reason", "ticket 42"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("promote "), "{out}");
    assert!(out.contains("by ops: ticket 42"), "{out}");
    let r = call(node.udp, "18005550100", "+12125550123", "cli-1").await;
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    let (ok, out, err) = tollgate(&["rollback", "--reason", "too strict", "--who", "alice"]);
    assert!(ok, "{err}");
    assert!(out.contains("by alice: too strict"), "{out}");
    let r = call(node.udp, "18005550100", "+12125550123", "cli-2").await;
    assert!(r.starts_with("SIP/2.0 302 "), "{r}");
    let (ok, out, err) = tollgate(&["history"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].contains("promote") && lines[1].contains("ticket 42"),
        "{out}"
    );
    assert!(
        lines[2].contains("rollback") && lines[2].contains("alice"),
        "{out}"
    );

    // The promoted version's files, fetched back, are a diff baseline: against the shipped
    // rules every call moves (the baseline rejects them all); against itself none does.
    let promoted = lines[1].split_whitespace().nth(2).unwrap().to_owned();
    let fetched = dir.path().join("fetched");
    let (ok, out, err) = tollgate(&["fetch", &promoted, "--out", fetched.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("version {promoted}")), "{out}");
    assert!(fetched.join("default.toml").is_file());
    let cfg = dir.path().join("tollgate.toml");
    std::fs::write(&cfg, config("")).unwrap();
    let calls = dir.path().join("calls.csv");
    std::fs::write(
        &calls,
        "ani,dnis\n+12125550123,+18005550100\n+4930123456,+18885550101\n",
    )
    .unwrap();
    let diff = |candidate: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["diff", "--config", cfg.to_str().unwrap(), "--rules"])
            .arg(candidate)
            .args([
                "--baseline",
                fetched.to_str().unwrap(),
                "--calls",
                calls.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let out = diff(&routes_dir());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "calls move: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("403"), "{text}");
    let out = diff(&fetched);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (ok, _, err) = tollgate(&[
        "fetch",
        "0123",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("404"), "{err}");

    std::fs::write(&token, AGENT_GENERAL).unwrap();
    let (ok, _, err) = tollgate(&["history"]);
    assert!(!ok && err.contains("403"), "{err}");
}
