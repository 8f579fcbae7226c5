//! sipp (Debian package sip-tester) drives the running server: INVITE → 302 → ACK, hundreds of
//! calls, zero failed, and every call decided exactly once.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_calls_all_succeed() {
    let run = start(&config_text(true, "reject"), Duration::ZERO, |_| {}).await;
    let dir = std::env::temp_dir().join(format!("tollgate-sipp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // ANI;DNIS;presented, over US, UK and German callers and the configured DNIS.
    let mut csv = String::from("SEQUENTIAL\n");
    let dnis = ["18005550100", "18885550101", "18775550102", "18665550103"];
    let anis = ["1212555", "44207260", "4930123"];
    const CALLS: usize = 400;
    for i in 0..CALLS {
        let ani = format!("{}{:04}", anis[i % 3], i);
        writeln!(csv, "{ani};{};{:07}", dnis[i % 4], i).unwrap();
    }
    std::fs::write(dir.join("calls.csv"), csv).unwrap();
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/sipp/invite_302.xml");
    let target = run.udp.to_string();
    let (d, s) = (dir.clone(), scenario.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .arg(&target)
            .args([
                "-sf",
                s.to_str().unwrap(),
                "-inf",
                d.join("calls.csv").to_str().unwrap(),
            ])
            .args([
                "-m",
                &CALLS.to_string(),
                "-r",
                "200",
                "-l",
                "400",
                "-i",
                "127.0.0.1",
                "-p",
                "0",
            ])
            .args([
                "-timeout",
                "60s",
                "-timeout_error",
                "-recv_timeout",
                "5000",
                "-nostdin",
            ])
            .args(["-trace_stat", "-stf", d.join("stat.csv").to_str().unwrap()])
            .output()
            .expect("sipp runs (apt-get install sip-tester)")
    })
    .await
    .unwrap();
    let stat = std::fs::read_to_string(dir.join("stat.csv")).unwrap_or_default();
    let rows: Vec<Vec<&str>> = stat.lines().map(|l| l.split(';').collect()).collect();
    assert!(
        rows.len() >= 2,
        "sipp stats missing; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let col = |name: &str| {
        let i = rows[0].iter().position(|h| *h == name).unwrap();
        rows.last().unwrap()[i].parse::<usize>().unwrap()
    };
    assert_eq!(col("FailedCall(C)"), 0, "failed calls");
    assert_eq!(col("SuccessfulCall(C)"), CALLS);
    assert!(out.status.success(), "sipp exit {:?}", out.status);
    // Retransmitted INVITEs (if any) never ran the pipeline twice.
    assert_eq!(run.recorder().count.load(Ordering::SeqCst), CALLS);
    let facts = run.facts();
    let de = facts
        .iter()
        .filter(|(f, _)| f.ani.to_string().starts_with("+49"))
        .count();
    assert_eq!(de, CALLS / 3, "German callers recognised from PAI");
    // The scenario's From carries a 7-digit local string: presented, but never the ANI.
    assert!(facts.iter().all(|(f, _)| f.ani_verified
        && f.ani_source == tollgate_core::AniSource::Pai
        && f.ani.e164().is_some()));
    let _ = std::fs::remove_dir_all(&dir);
}
