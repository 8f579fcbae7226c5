//! sipp (Debian package sip-tester) drives the running server: INVITE → 302 → ACK, hundreds of
//! calls, zero failed, and every call decided exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fmt::Write as _;
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
    let target = run.udp.to_string();
    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || sipp(&target, &d, CALLS, 200, 400, "60s"))
        .await
        .unwrap();
    assert_eq!(out.failed, 0, "failed calls; stderr: {}", out.stderr);
    assert_eq!(out.successful, CALLS);
    assert!(out.exit_ok, "sipp failed: {}", out.stderr);
    // Every 302 was matched by its ACK (which carries the INVITE's branch, RFC 3261
    // §17.1.1.3): none was sent again, and no INVITE needed sending twice.
    assert_eq!(out.stray, 0, "302s sent again after the ACK");
    assert_eq!(out.retransmissions, 0, "INVITEs sipp had to send twice");
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
