//! The `tollgate` binary as a user runs it: `check` on every shipped config, and on bad ones.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

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

/// Golden: every TOML config the project ships validates.
#[test]
fn every_shipped_config_checks() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.push(root().join("benches/sipp/parity.toml"));
    assert!(files.len() >= 2);
    for f in files {
        let (ok, out) = check(&f);
        assert!(ok, "{}: {out}", f.display());
        assert!(out.contains(": ok"), "{out}");
    }
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
    assert!(out.contains(":3: listen: unknown field `listen`"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
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
