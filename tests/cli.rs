//! The `tollgate` binary as a user runs it: `check` on every shipped config, and on bad ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(path: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(path)
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
}

/// Every TOML config the project ships: the examples in config/ and the benchmarks' configs.
fn shipped_configs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // Not the bogus-key test's copies, written beside the originals while it runs.
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.push(root().join("benches/sipp/parity.toml"));
    files.push(root().join("benches/sipp/overload/overload.toml"));
    files
}

/// Golden: every TOML config the project ships validates.
#[test]
fn every_shipped_config_checks() {
    let files = shipped_configs();
    assert!(files.len() >= 2);
    for f in files {
        let (ok, out) = check(&f);
        assert!(ok, "{}: {out}", f.display());
        assert!(out.contains(": ok"), "{out}");
    }
}

/// Golden, the other way: a `bogus = 1` put in any table of any shipped config is refused by
/// `check`, at its line, under its full key (`trunk[0].cli.bogus`), whether the table is a
/// struct (unknown field) or a map (a DNIS table: not a number, not a string).
#[test]
fn a_bogus_key_in_any_table_of_any_shipped_config_is_named_with_its_line() {
    let files = shipped_configs();
    let mut checked = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut arrays: std::collections::HashMap<String, usize> = Default::default();
        for (i, l) in lines.iter().enumerate() {
            let l = l.trim();
            let table = if let Some(n) = l.strip_prefix("[[") {
                let n = n.split("]]").next().unwrap().trim().to_owned();
                let k = arrays.entry(n.clone()).or_insert(0);
                *k += 1;
                format!("{n}[{}]", *k - 1)
            } else if let Some(n) = l.strip_prefix('[') {
                let n = n.split(']').next().unwrap().trim().to_owned();
                match n.split_once('.') {
                    Some((head, rest)) if arrays.contains_key(head) => {
                        format!("{head}[{}].{rest}", arrays[head] - 1)
                    }
                    _ => n,
                }
            } else {
                continue;
            };
            // The configs beside the example one are read from their own folder (relative
            // paths: routes/, directory.csv).
            let copy = f.with_file_name(format!(".bogus-{}.toml", std::process::id()));
            let mut out_lines = lines.clone();
            out_lines.insert(i + 1, "bogus = 1");
            std::fs::write(&copy, out_lines.join("\n")).unwrap();
            let (ok, out) = check(&copy);
            let _ = std::fs::remove_file(&copy);
            assert!(!ok, "{}: bogus in [{table}] accepted", f.display());
            let at = format!(":{}: ", i + 2);
            assert!(
                out.contains(&format!("{at}{table}.bogus: ")),
                "{}: bogus in [{table}] (line {}): {out}",
                f.display(),
                i + 2
            );
            checked += 1;
        }
    }
    eprintln!("{checked} tables");
    assert!(checked >= 20, "only {checked} tables");
}

#[test]
fn check_reports_every_error_with_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[sip]\nudp = [\"nowhere\"]\n\n[[trunk]]\nname = \"a\"\ncidrs = [\"10.0.0.0/40\"]\nregion = \"ZZ\"\n\
         ani_precedence = [\"pai\", \"ppi\"]\n\n[routing]\nacd_host = \"acd.example.net\"\ndefault_queue = \"bad queue\"\n",
    )
    .unwrap();
    let (ok, out) = check(&bad);
    assert!(!ok);
    let want = [
        ":2: sip.udp:",
        ":6: trunk[0].cidrs:",
        ":7: trunk[0].region:",
        ":8: trunk[0].ani_precedence: unknown source \"ppi\"",
        ":12: routing.default_queue:",
    ];
    for w in want {
        assert!(out.contains(w), "missing {w:?} in:\n{out}");
    }
    assert_eq!(out.lines().count(), want.len(), "{out}");
    assert!(out.lines().all(|l| l.starts_with(bad.to_str().unwrap())));

    std::fs::write(&bad, "[sip]\nudp = [\"127.0.0.1:5060\"]\nlisten = 1\n[routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n").unwrap();
    let (ok, out) = check(&bad);
    assert!(!ok);
    assert!(
        out.contains(":3: sip.listen: unknown field `listen`"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[stir]` problems are named by their own key (not all under `trust_anchors_dir`): the
/// settings are checked first, without I/O, and the trust anchors read only when they pass.
#[test]
fn check_names_each_stir_key() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-stir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("stir.toml");
    let base =
        "[sip]\nudp = [\"127.0.0.1:5060\"]\n[routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n";
    std::fs::write(
        &bad,
        format!("{base}[stir]\ntrust_anchors_dir = \"no-such-dir\"\nfetch_timeout_ms = 0\nallowed_hosts = [\"a/b\"]\n"),
    )
    .unwrap();
    let (ok, out) = check(&bad);
    assert!(!ok);
    assert!(
        out.contains(":8: stir.fetch_timeout_ms: must be positive"),
        "{out}"
    );
    assert!(out.contains(":9: stir.allowed_hosts:"), "{out}");
    assert!(
        !out.contains("trust_anchors_dir"),
        "anchors not read yet: {out}"
    );
    std::fs::write(
        &bad,
        format!("{base}[stir]\ntrust_anchors_dir = \"no-such-dir\"\n"),
    )
    .unwrap();
    let (ok, out) = check(&bad);
    assert!(!ok);
    assert!(
        out.contains(":7: stir.trust_anchors_dir: reading trust anchors"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[sip.tls]` and `tls_peers`: the files are read by `check` (a missing file, a key that is
/// not the certificate's, an unknown key), each problem under its own key; a good pair is
/// reported with its fingerprint and expiry.
#[test]
fn check_reads_the_tls_files_and_names_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = tollgate_testkit::Ca::new("carrier ca");
    ca.write(&d.join("ca.pem"));
    // Two certificates: a's key is not b's.
    ca.write_leaf(d, "a", "tollgate.test");
    ca.write_leaf(d, "b", "tollgate.test");
    let config = |tls: &str, trunk: &str| {
        let text = format!(
            "[sip]\nudp = [\"127.0.0.1:5060\"]\n\n[sip.tls]\nlisten = [\"127.0.0.1:5061\"]\n{tls}\n\
             [[trunk]]\nname = \"t\"\ncidrs = [\"10.0.0.0/8\"]\n{trunk}\n\
             [routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n"
        );
        let path = d.join("tls.toml");
        std::fs::write(&path, text).unwrap();
        check(&path)
    };
    // Lines: 4 [sip.tls], 5 listen, 6.. the tls keys; the trunk's keys follow.
    let (ok, out) = config("cert = \"missing.pem\"\nkey = \"a.key\"", "");
    assert!(!ok);
    assert!(
        out.contains(":6: sip.tls.cert:") && out.contains("missing.pem"),
        "{out}"
    );
    let (ok, out) = config("cert = \"a.pem\"\nkey = \"b.key\"", "");
    assert!(!ok);
    assert!(
        out.contains(":7: sip.tls.key:") && out.contains("do not go together"),
        "{out}"
    );
    let (ok, out) = config(
        "cert = \"a.pem\"\nkey = \"a.key\"\nbogus = 1",
        "tls_peers = [\"dns:sbc.carrier.test\"]",
    );
    assert!(!ok);
    assert!(out.contains("unknown field `bogus`"), "{out}");
    let (ok, out) = config(
        "cert = \"a.pem\"\nkey = \"a.key\"",
        "tls_peers = [\"dns:sbc.carrier.test\", \"cn:x\"]",
    );
    assert!(!ok);
    assert!(
        out.contains("trunk[0].tls_peers: needs sip.tls with client_ca"),
        "{out}"
    );
    assert!(out.contains("trunk[0].tls_peers: \"cn:x\""), "{out}");
    let (ok, out) = config(
        "cert = \"a.pem\"\nkey = \"a.key\"\nclient_ca = \"ca.pem\"\nrequire_client_cert = true",
        "tls_peers = [\"dns:sbc.carrier.test\"]",
    );
    assert!(ok, "{out}");
    assert!(out.contains("sip.tls certificate sha256:"), "{out}");
    assert!(out.contains(": ok"), "{out}");
}

/// `explain --tls-peer` decides a call as the TLS listener would for a peer whose verified
/// certificate says that: the trunk its `tls_peers` name is trusted; the same address without
/// the certificate is that trunk untrusted.
#[test]
fn explain_takes_the_tls_peer_as_the_listener_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = tollgate_testkit::Ca::new("ca");
    ca.write(&d.join("ca.pem"));
    ca.write_leaf(d, "node", "tollgate.test");
    let path = d.join("tls.toml");
    std::fs::write(
        &path,
        "[sip]\nudp = [\"127.0.0.1:5060\"]\n[sip.tls]\nlisten = [\"127.0.0.1:5061\"]\n\
         cert = \"node.pem\"\nkey = \"node.key\"\nclient_ca = \"ca.pem\"\n\
         [[trunk]]\nname = \"carrier\"\ncidrs = [\"10.0.0.0/8\"]\ntls_peers = [\"dns:sbc.carrier.test\"]\ntrusted = true\n\
         [routing]\nacd_host = \"acd.example.net\"\ndefault_queue = \"q\"\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "explain",
            "--config",
            config,
            "--ani",
            "+12125550123",
            "--dnis",
            "+18005550100",
            "--source",
            "10.1.2.3",
        ];
        a.extend_from_slice(extra);
        a
    };
    let (ok, out, err) = tollgate(&args(&["--tls-peer", "dns:sbc.carrier.test"]));
    assert!(ok, "{err}");
    assert!(out.contains("(carrier via pai, verified)"), "{out}");
    assert!(
        out.contains("tls       peer dns:sbc.carrier.test (trunk carrier, trusted)"),
        "{out}"
    );
    let (ok, out, err) = tollgate(&args(&[]));
    assert!(ok, "{err}");
    assert!(out.contains("(carrier via from, unverified)"), "{out}");
    let (ok, out, err) = tollgate(&args(&["--tls-peer", "dns:other.carrier.test"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("tls       peer unmatched (trunk carrier, untrusted)"),
        "{out}"
    ); // An address no trunk claims, with a certificate none names: the SIP layer's 403, and its
       // record says TLS as the live early answer's log line does.
    let (ok, out, err) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+12125550123",
        "--dnis",
        "+18005550100",
        "--source",
        "192.0.2.1",
        "--tls-peer",
        "dns:other.carrier.test",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains(r#""status": 403"#), "{out}");
    assert!(out.contains(r#""transport": "tls""#), "{out}");
}

#[test]
fn serve_refuses_a_bad_config_without_starting() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config", "/nonexistent/tollgate.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tollgate.toml: -: cannot read")
    );
}

#[test]
fn check_reports_cli_policy_errors() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("cli.toml");
    std::fs::write(
        &bad,
        "[sip]\nudp = [\"127.0.0.1:5060\"]\n[cli]\nrules = [\"permit 1%\", \"deny 2a\"]\n\n[[trunk]]\nname = \"t\"\ncidrs = [\"127.0.0.1\"]\n\
         [trunk.cli]\napproved = [\"1%\"]\nunapproved = \"forced\"\n\n[routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n",
    )
    .unwrap();
    let (ok, out) = check(&bad);
    assert!(!ok);
    for want in [
        ":4: cli.rules: rule \"permit 1%\": expected `allow|validate|deny PATTERN`",
        ":4: cli.rules: pattern \"2a\"",
        ":11: trunk[0].cli.forced: \"forced\" needs",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary from a directory other than the repo's, as an operator would.
fn tollgate(args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = tollgate_status(args);
    (code == Some(0), out, err)
}

/// The exit code (None when killed by a signal), stdout and stderr.
fn tollgate_status(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(std::env::temp_dir())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_prints_the_trace_and_the_decision() {
    let config = root().join("config/tollgate.toml");
    let config = config.to_str().unwrap();
    let monday = "2026-11-23T10:00:00-05:00";
    let (ok, out, err) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+12125550123",
        "--dnis",
        "+18005550100",
        "--at",
        monday,
    ]);
    assert!(ok, "{err}");
    for want in [
        "ANI +12125550123",
        "geo=\"New York, NY\" tz=America/New_York",
        "no  support/german (line ",
        "MATCH support/everyone",
        "decision  302 → support@acd.example.net by support/everyone",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // Saturday 23:00 in New York: the support line is closed, so a German caller overflows...
    let saturday_night = "2026-11-28T23:00:00-05:00";
    let (ok, out, err) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+4940123456",
        "--dnis",
        "+18005550100",
        "--at",
        saturday_night,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("hours     line closed"), "{out}");
    assert!(
        out.contains(
            "decision  302 → after-hours@acd.example.net language=de by support/german+after-hours"
        ),
        "{out}"
    );

    // ...while a gold customer's rule ignores the hours.
    let dir = std::env::temp_dir().join(format!("tollgate-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("gold.toml");
    std::fs::write(&profile, "tier = \"gold\"\nlanguage = \"de\"\n").unwrap();
    let (ok, out, err) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+4930123456",
        "--dnis",
        "+18005550100",
        "--at",
        saturday_night,
        "--profile",
        profile.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("MATCH support/vip (line "), "{out}");
    assert!(
        out.contains("302 → support-vip@acd.example.net priority=9 skills=vip"),
        "{out}"
    );

    // The directory (config/directory.csv) has +4930123456 as a gold customer: explain asks
    // the configured CRM as a live call does, so the caller is a VIP without --profile.
    let (ok, out, err) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+4930123456",
        "--dnis",
        "+18005550100",
        "--at",
        saturday_night,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("crm       found customer=C-1001 tier=gold"),
        "{out}"
    );
    assert!(
        out.contains("302 → support-vip@acd.example.net priority=9 skills=vip by support/vip"),
        "{out}"
    );

    // A block-list hit makes the caller blocked, and the sales line's own rule answers 607.
    let (ok, out, err) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+12125550123",
        "--dnis",
        "+18885550101",
        "--at",
        monday,
        "--lists",
        "block",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("override  lists: given [block]"), "{out}");
    assert!(
        out.contains("decision  607 Unwanted by sales/blocked (rule-reject)"),
        "{out}"
    );

    let (ok, out, _) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+12125550123",
        "--dnis",
        "+18005550100",
        "--at",
        monday,
        "--risk",
        "blocked",
    ]);
    assert!(ok);
    assert!(
        out.contains("decision  603 Decline by support/blocked"),
        "{out}"
    );

    let (ok, _, err) = tollgate(&[
        "explain",
        "--config",
        config,
        "--ani",
        "+12125550123",
        "--dnis",
        "+18005550100",
        "--risk",
        "furious",
    ]);
    assert!(!ok);
    assert!(err.contains("furious"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diff_replays_calls_against_candidate_rules() {
    let config = root().join("config/tollgate.toml");
    let config = config.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-diff-{}", std::process::id()));
    let candidate = dir.join("routes");
    std::fs::create_dir_all(&candidate).unwrap();
    for e in std::fs::read_dir(root().join("config/routes")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, candidate.join(p.file_name().unwrap())).unwrap();
    }
    // The change under review: the support line's catch-all goes to the general queue.
    let support = candidate.join("support.toml");
    let text = std::fs::read_to_string(&support).unwrap();
    assert!(text.contains("\nqueue = \"support\"\n"));
    std::fs::write(
        &support,
        text.replace("\nqueue = \"support\"\n", "\nqueue = \"general\"\n"),
    )
    .unwrap();
    let calls = dir.join("calls.csv");
    std::fs::write(
        &calls,
        "ani,dnis,time,tier\n\
         +12125550123,+18005550100,2026-11-23T10:00:00-05:00,\n\
         +4930123456,+18005550100,2026-11-23T10:00:00-05:00,\n\
         +12125550124,+18005550100,2026-11-23T10:00:00-05:00,gold\n\
         +12125550125,+18885550101,2026-11-23T10:00:00-05:00,\n",
    )
    .unwrap();
    let (rules, calls_s) = (candidate.to_str().unwrap(), calls.to_str().unwrap());
    let (code, out, err) = tollgate_status(&[
        "diff", "--config", config, "--rules", rules, "--calls", calls_s,
    ]);
    assert_eq!(code, Some(1), "calls move: exit 1 as diff(1) does; {err}");
    // Only the plain US caller to support moves: German, gold and sales callers do not.
    assert!(
        out.starts_with("line 2: +12125550123 → +18005550100"),
        "{out}"
    );
    assert!(
        out.contains("live      302 → support@acd.example.net by support/everyone"),
        "{out}"
    );
    assert!(
        out.contains("candidate 302 → general@acd.example.net by support/everyone"),
        "{out}"
    );
    assert!(out.contains("4 calls replayed, 1 change"), "{out}");
    assert_eq!(out.matches("line ").count(), 1, "{out}");

    // The live rules against themselves: nothing moves, exit 0.
    let live = root().join("config/routes");
    let (code, out, err) = tollgate_status(&[
        "diff",
        "--config",
        config,
        "--rules",
        live.to_str().unwrap(),
        "--calls",
        calls_s,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("4 calls replayed, 0 changes"), "{out}");

    // A candidate that does not load is reported with file, line and key, and nothing replays.
    std::fs::write(candidate.join("sales.toml"), "oops = 1\n").unwrap();
    let (code, out, err) = tollgate_status(&[
        "diff", "--config", config, "--rules", rules, "--calls", calls_s,
    ]);
    assert!(code == Some(2) && out.is_empty(), "{code:?}");
    assert!(
        err.contains("sales.toml:1: oops: unknown field `oops`"),
        "{err}"
    );

    // A calls file with an unknown column names the file, line and column.
    std::fs::copy(
        root().join("config/routes/sales.toml"),
        candidate.join("sales.toml"),
    )
    .unwrap();
    std::fs::write(&calls, "ani,dnis,colour\n+12125550123,+18005550100,red\n").unwrap();
    let (ok, _, err) = tollgate(&[
        "diff", "--config", config, "--rules", rules, "--calls", calls_s,
    ]);
    assert!(!ok);
    assert!(
        err.contains("calls.csv:1: unknown column \"colour\""),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` runs what `serve` runs before binding: problems only the adapters see (an unset
/// secret variable, a Redis store without a URL) fail both, each reported once with its
/// file, line and key; a bind error names the address.
#[test]
fn check_refuses_what_serve_refuses_and_bind_errors_name_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    let text = "[sip]\nudp = [\"127.0.0.1:0\"]\n[[trunk]]\nname = \"a\"\ncidrs = [\"127.0.0.1\"]\n\
                [routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n\
                [crm]\nkind = \"http\"\n[crm.http]\nurl = \"http://127.0.0.1:9/x/{digits}\"\n\
                headers = { \"X-Key\" = \"env:TOLLGATE_TEST_UNSET_KEY\" }\n[crm.http.mapping]\ncustomer_id = \"id\"\n\
                [risk]\nstore = \"redis\"\n[risk.redis]\nurl_env = \"TOLLGATE_TEST_UNSET_REDIS\"\n";
    std::fs::write(&cfg, text).unwrap();
    let (ok, out) = check(&cfg);
    assert!(!ok, "{out}");
    let want = [
        ":9: crm:",
        "TOLLGATE_TEST_UNSET_KEY",
        ":16: risk:",
        "TOLLGATE_TEST_UNSET_REDIS",
    ];
    for w in want {
        assert_eq!(out.matches(w).count(), 1, "{w:?} once in:\n{out}");
    }
    assert_eq!(out.lines().count(), 2, "{out}");
    let served = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!served.status.success());
    let err = String::from_utf8_lossy(&served.stderr);
    for w in want {
        assert_eq!(err.matches(w).count(), 1, "serve: {w:?} once in:\n{err}");
    }

    std::fs::write(
        &cfg,
        "[sip]\nudp = [\"127.0.0.1:0\"]\nenrich_deadline_ms = 500\ndecision_timeout_ms = 400\n\
         [[trunk]]\nname = \"a\"\ncidrs = [\"127.0.0.1\"]\n[routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n",
    )
    .unwrap();
    let (ok, out) = check(&cfg);
    assert!(!ok);
    assert!(
        out.contains(":4: sip.decision_timeout_ms: 400 ms is not longer"),
        "{out}"
    );

    // A port already taken: the error says which listener and address.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = [\"127.0.0.1:{port}\"]\n[[trunk]]\nname = \"a\"\ncidrs = [\"127.0.0.1\"]\n\
             [routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n"
        ),
    )
    .unwrap();
    let served = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!served.status.success());
    let err = String::from_utf8_lossy(&served.stderr);
    assert!(err.contains(&format!("sip.udp 127.0.0.1:{port}:")), "{err}");
    drop(taken);
}

/// The overload shedding keys of `[sip.limits]`: a queue-age bound the carrier's T1 would
/// overtake, and a receive buffer past 1 GB, are errors with their file, line and key;
/// `shedding = false` and a zero age bound (off) are not.
#[test]
fn shedding_keys_are_checked_with_their_line() {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-shed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("shed.toml");
    let tail = "[[trunk]]\nname = \"a\"\ncidrs = [\"127.0.0.1\"]\n[routing]\nacd_host = \"a\"\ndefault_queue = \"q\"\n";
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = [\"127.0.0.1:0\"]\nt1_ms = 200\n[sip.limits]\nshed_queue_age_ms = 200\n\
             udp_receive_buffer_kb = 2000000\n{tail}"
        ),
    )
    .unwrap();
    let (ok, out) = check(&cfg);
    assert!(!ok, "{out}");
    assert!(
        out.contains(":5: sip.limits.shed_queue_age_ms: 200 ms is not below sip.t1_ms (200 ms)"),
        "{out}"
    );
    assert!(
        out.contains(":6: sip.limits.udp_receive_buffer_kb: 2000000: at most 1048576"),
        "{out}"
    );
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = [\"127.0.0.1:0\"]\nt1_ms = 200\n[sip.limits]\nshedding = false\n\
             shed_queue_age_ms = 0\nudp_receive_buffer_kb = 0\n{tail}"
        ),
    )
    .unwrap();
    let (ok, out) = check(&cfg);
    assert!(ok, "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// README's first command: `serve` with no config runs on the embedded defaults (SIP on
/// 127.0.0.1:5060, nothing read from disk) from any directory. Here on port 5060 only when it
/// is free; the embedded config itself is checked either way.
#[test]
fn serve_runs_on_the_embedded_defaults_from_any_directory() {
    let (ok, out, err) = tollgate(&["check"]);
    assert!(ok, "{err}");
    assert!(out.contains("(embedded defaults): ok"), "{out}");
    if std::net::UdpSocket::bind("127.0.0.1:5060").is_err()
        || std::net::TcpListener::bind("127.0.0.1:5060").is_err()
    {
        eprintln!("port 5060 is taken here: not starting the embedded defaults");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(std::env::temp_dir())
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let invite = format!(
        "INVITE sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKemb1\r\n\
         From: <sip:+12125550100@127.0.0.1;user=phone>;tag=1\r\nTo: <sip:+18005550100@127.0.0.1>\r\n\
         Call-ID: embedded-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut answer = String::new();
    for _ in 0..50 {
        sock.send_to(invite.as_bytes(), "127.0.0.1:5060").unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            if answer.starts_with("SIP/2.0 302") {
                break;
            }
        }
    }
    // README's sipp command, as written there, from the repository root.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("sipp 127.0.0.1:5060 "))
        .expect("README has a sipp command");
    let words: Vec<&str> = line.split_whitespace().collect();
    let sipp = Command::new(words[0])
        .current_dir(root())
        .args(&words[1..])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .output()
        .expect("sipp runs (apt-get install sip-tester)");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(answer.starts_with("SIP/2.0 302"), "{answer}");
    assert!(answer.contains("<sip:general@acd.example.net;"), "{answer}");
    assert!(
        sipp.status.success(),
        "README's sipp command: {}",
        String::from_utf8_lossy(&sipp.stderr)
    );
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("embedded defaults"), "{log}");
    assert!(log.contains("\"message\":\"decision\""), "{log}");
}

/// No configured secret reaches the config view or the logs: tokens and webhook secrets from
/// the environment and from files, a CRM API key in a header and in the URL's query, a Redis
/// password. The node runs at debug level and takes calls, so every log line a call can
/// cause is scanned.
#[test]
fn no_configured_secret_reaches_the_config_view_or_the_logs() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        "admin-token-from-env-7d1c0a9f",
        "webhook-secret-in-file-55aa",
        "crm-header-key-91b2",
        "crm-query-key-0f3e",
        "redis-password-c4d8",
    ];
    std::fs::write(dir.path().join("hook.secret"), secrets[1]).unwrap();
    let sip = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sip_port = sip.local_addr().unwrap().port();
    drop(sip);
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = http.local_addr().unwrap().port();
    drop(http);
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = [\"127.0.0.1:{sip_port}\"]\n[[trunk]]\nname = \"a\"\ncidrs = [\"127.0.0.1\"]\ntrusted = true\n\
             [routing]\nacd_host = \"acd.example.net\"\ndefault_queue = \"general\"\n\
             [log]\nlevel = \"debug\"\n\
             [crm]\nkind = \"http\"\ndeadline_ms = 50\n[crm.http]\nurl = \"http://127.0.0.1:9/c/{{digits}}?api_key={}\"\n\
             headers = {{ \"X-Key\" = \"env:TG_TEST_CRM_KEY\" }}\n[crm.http.mapping]\ncustomer_id = \"id\"\n\
             [risk]\nstore = \"redis\"\n[risk.redis]\nurl = \"redis://default:{}@127.0.0.1:9/0\"\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\nredis_url = \"redis://default:{}@127.0.0.1:9/0\"\n\
             [[http.token]]\nname = \"ops\"\nscope = \"admin\"\ntoken_env = \"TG_TEST_ADMIN\"\n\
             [[http.webhook]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret_file = \"hook.secret\"\n",
            secrets[3], secrets[4], secrets[4]
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("TG_TEST_ADMIN", secrets[0])
        .env("TG_TEST_CRM_KEY", secrets[2])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let get_config = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http_port)).ok()?;
        write!(
            s,
            "GET /v1/admin/config HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            secrets[0]
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let mut view = None;
    for _ in 0..100 {
        if let Some(v) = get_config().filter(|b| b.starts_with("HTTP/1.1 200")) {
            view = Some(v);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    for i in 0..3 {
        let invite = format!(
            "INVITE sip:+18005550100@127.0.0.1;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsec{i}\r\n\
             From: <sip:+12125550100@127.0.0.1;user=phone>;tag=1\r\nTo: <sip:+18005550100@127.0.0.1>\r\n\
             Call-ID: secrets-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(invite.as_bytes(), ("127.0.0.1", sip_port))
            .unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.recv(&mut buf);
    }
    // The log's writer gathers lines for LINGER before it writes them; kill -9 loses those.
    std::thread::sleep(tollgate_server::logsink::LINGER * 10);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let view = view.expect("the config view answered");
    assert!(view.contains("\"crm\""), "{view}");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.contains("\"message\":\"decision\""), "{logs}");
    for s in secrets {
        assert!(!view.contains(s), "{s} in the config view:\n{view}");
        assert!(!logs.contains(s), "{s} in the logs:\n{logs}");
    }
}
