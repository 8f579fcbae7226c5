//! `tollgate list` as a user runs it, against the embedded list file, and a running
//! `tollgate serve` that blocks a newly listed number without a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
mod node;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{status, Peer};
use node::{base_config, invite_pai, Scratch};

const RISK: &str =
    "[risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\nlist_refresh_ms = 100\n";

fn tollgate(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn add_show_import_remove() {
    let s = Scratch::new();
    let cfg = s.write_config(&format!("{}{RISK}", base_config(false)));
    let (ok, out, err) = tollgate(
        &cfg,
        &[
            "list",
            "add",
            "block",
            "+12125550130",
            "--reason",
            "robocaller",
            "--who",
            "alice",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "added block +12125550130\n");
    assert!(
        s.path("lists.json").exists(),
        "the embedded store is the list file"
    );

    let csv = s.path("import.csv");
    std::fs::write(
        &csv,
        "list,number_or_prefix,reason,who,expires_at\ngray,+1900*,premium range,,\nallow,+12125550131,vip,bob,\n",
    )
    .unwrap();
    let (ok, out, err) = tollgate(
        &cfg,
        &["list", "import", csv.to_str().unwrap(), "--who", "ops"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "imported 2 entries\n");

    let (ok, out, _) = tollgate(&cfg, &["list", "show"]);
    assert!(ok);
    assert!(out.contains("3 entries"), "{out}");
    let line = |number: &str| {
        out.lines()
            .find(|l| l.contains(number))
            .unwrap_or_else(|| panic!("{number} missing in:\n{out}"))
            .to_owned()
    };
    assert!(line("+12125550130").starts_with("block") && line("+12125550130").contains("alice"));
    assert!(line("+1900*").starts_with("gray") && line("+1900*").contains("ops"));
    assert!(line("+12125550131").starts_with("allow") && line("+12125550131").contains("bob"));

    // CSV output imports back.
    let (ok, out, _) = tollgate(&cfg, &["list", "show", "--csv"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("gray,1900*,premium range,ops,"), "{out}");

    let (ok, out, _) = tollgate(&cfg, &["list", "remove", "gray", "+1900*"]);
    assert!(ok);
    assert_eq!(out, "removed gray +1900*\n");
    let (ok, _, err) = tollgate(&cfg, &["list", "remove", "gray", "+1900*"]);
    assert!(!ok);
    assert!(err.contains("no such entry"), "{err}");

    let (ok, _, err) = tollgate(&cfg, &["list", "add", "black", "+12125550130"]);
    assert!(!ok);
    assert!(err.contains("expected block, gray or allow"), "{err}");
    let (ok, _, err) = tollgate(&cfg, &["list", "add", "block", "12x"]);
    assert!(!ok, "{err}");
    let bad = s.path("bad.csv");
    std::fs::write(&bad, "block,+12125550140,a,b,\nnope,+1,a,b,\n").unwrap();
    let (ok, _, err) = tollgate(&cfg, &["list", "import", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("bad.csv"), "{err}");
    let (_, out, _) = tollgate(&cfg, &["list", "show"]);
    assert!(
        out.contains("2 entries"),
        "a bad import writes nothing:\n{out}"
    );

    let plain = s.path("plain.toml");
    std::fs::write(&plain, base_config(false)).unwrap();
    let (ok, _, err) = tollgate(&plain, &["list", "show"]);
    assert!(!ok);
    assert!(err.contains("no [risk] section"), "{err}");
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tollgate serve` and returns it with its UDP address (from the "listening" log line).
fn serve(config: &Path) -> (Served, std::net::SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let served = Served(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("tollgate serve logs \"listening\"");
    let udp = line
        .split("\"udp\":\"[")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("no udp address in {line}"));
    (served, udp.parse().unwrap())
}

#[tokio::test]
async fn a_running_server_blocks_a_newly_listed_number_without_restart() {
    let s = Scratch::new();
    let cfg = s.write_config(&format!("{}{RISK}", base_config(false)));
    let (_server, udp) = serve(&cfg);
    let peer = Peer::new(udp).await;
    let mut n = 0;
    let mut call = || {
        n += 1;
        invite_pai(
            "+18005550100",
            "+12125550132",
            "",
            &format!("live{n}"),
            peer.port(),
        )
    };
    peer.send(&call()).await;
    assert_eq!(status(&peer.recv_final().await), 302);

    let (ok, _, err) = tollgate(
        &cfg,
        &["list", "add", "block", "+12125550132", "--reason", "fraud"],
    );
    assert!(ok, "{err}");
    // The node re-reads the list within list_refresh_ms; calls keep being answered meanwhile.
    let started = Instant::now();
    loop {
        peer.send(&call()).await;
        let code = status(&peer.recv_final().await);
        if code == 603 {
            break;
        }
        assert_eq!(code, 302);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the block never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (ok, _, err) = tollgate(&cfg, &["list", "remove", "block", "+12125550132"]);
    assert!(ok, "{err}");
    let started = Instant::now();
    loop {
        peer.send(&call()).await;
        if status(&peer.recv_final().await) == 302 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the removal never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
