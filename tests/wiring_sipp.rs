//! sipp drives a node whose CRM is down (an HTTP CRM on a closed port) with the risk engine on:
//! every call answered, none waiting on the CRM past the breaker.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;
mod node;

use std::fmt::Write as _;
use std::process::Command;

use node::{base_config, Scratch};
use tollgate_core::LookupStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_with_the_crm_down_answers_every_call() {
    // A port nothing listens on: every CRM request is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Scratch::new();
    let text = format!(
        "{}[crm]\nkind = \"http\"\ndeadline_ms = 100\n[crm.http]\nurl = \"http://127.0.0.1:{port}/callers/{{digits}}\"\n\
         [crm.http.mapping]\ncustomer_id = \"id\"\n\
         [risk]\nstore = \"memory\"\nlist_file = \"lists.json\"\n",
        base_config(false)
    );
    let node = s.start(&text).await;
    const CALLS: usize = 300;
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..CALLS {
        writeln!(csv, "1212555{:04};18005550100;{:07}", i % 50, i).unwrap();
    }
    std::fs::write(s.path("calls.csv"), csv).unwrap();
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/sipp/invite_302.xml");
    let (target, dir) = (node.udp.to_string(), s.dir.path().to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sipp")
            .arg(&target)
            .args(["-sf", scenario.to_str().unwrap()])
            .args(["-inf", dir.join("calls.csv").to_str().unwrap()])
            .args(["-m", &CALLS.to_string(), "-r", "150", "-l", "300"])
            .args(["-i", "127.0.0.1", "-p", "0"])
            .args([
                "-timeout",
                "60s",
                "-timeout_error",
                "-recv_timeout",
                "5000",
                "-nostdin",
            ])
            .args([
                "-trace_stat",
                "-stf",
                dir.join("stat.csv").to_str().unwrap(),
            ])
            .output()
            .expect("sipp runs (apt-get install sip-tester)")
    })
    .await
    .unwrap();
    let stat = std::fs::read_to_string(s.path("stat.csv")).unwrap_or_default();
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
    let calls = node.calls();
    assert_eq!(calls.len(), CALLS);
    assert_eq!(node.runs(), CALLS, "each call decided once");
    assert!(calls.iter().all(|(f, d)| matches!(
        f.lookup,
        LookupStatus::Error | LookupStatus::BreakerOpen | LookupStatus::Timeout
    ) && d.queue().is_some()
        && f.risk.is_some()));
    let open = calls
        .iter()
        .filter(|(f, _)| f.lookup == LookupStatus::BreakerOpen)
        .count();
    assert!(
        open > 0,
        "the breaker opened and calls stopped asking the CRM"
    );
}
