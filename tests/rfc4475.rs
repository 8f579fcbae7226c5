//! RFC 4475 torture messages sent over UDP to a running server; each gets the treatment its
//! SOURCE.md lists (tests/data/rfc4475, copied byte for byte from RFC 4475 Appendix A).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;

/// What a redirect server must do with each message.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Parsed and acted on: anything but a 4xx about syntax (INVITE 302, OPTIONS 200, others 405).
    Parse,
    Status(&'static [u16]),
    Drop,
}

const CASES: &[(&str, Want)] = &[
    // 3.1.1 valid messages
    ("wsinv", Want::Parse),
    ("intmeth", Want::Parse),
    ("esc01", Want::Parse),
    ("escnull", Want::Parse),
    ("esc02", Want::Parse),
    ("lwsdisp", Want::Parse),
    ("longreq", Want::Parse),
    ("dblreq", Want::Parse),
    ("semiuri", Want::Parse),
    ("transports", Want::Parse),
    ("mpart01", Want::Parse),
    ("unksm2", Want::Parse),
    ("regaut01", Want::Parse),
    ("zeromf", Want::Parse),
    ("inv2543", Want::Parse),
    // 3.3.5 (an OPTIONS) expects 420 from a UAS (RFC 3261 §8.2.2.3), but "redirect servers MUST ignore ...
    // unknown option tags in Require" (§8.3): answered 200 by default. With
    // `sip.unsupported_require = "reject"` it gets 420; the test below checks that answer.
    ("bext01", Want::Status(&[200])),
    // Responses a server never asked for: dropped, including the valid ones.
    ("unreason", Want::Drop),
    ("noreason", Want::Drop),
    ("scalarlg", Want::Drop),
    ("bigcode", Want::Drop),
    ("bcast", Want::Drop),
    // 3.1.2 invalid messages
    ("badinv01", Want::Status(&[400])),
    ("clerr", Want::Status(&[400])),
    ("scalar02", Want::Status(&[400])),
    ("quotbal", Want::Status(&[400])),
    ("lwsruri", Want::Status(&[400])),
    ("escruri", Want::Status(&[400])),
    ("regbadct", Want::Status(&[400])),
    ("badaspec", Want::Status(&[400])),
    ("baddn", Want::Status(&[400])),
    ("mismatch01", Want::Status(&[400])),
    ("ncl", Want::Status(&[400])),
    ("insuf", Want::Status(&[400])),
    ("multi01", Want::Status(&[400])),
    ("mcl01", Want::Status(&[400])),
    ("badvers", Want::Status(&[505])),
    ("mismatch02", Want::Status(&[501, 400])),
    ("unkscm", Want::Status(&[416])),
    ("novelsc", Want::Status(&[416])),
    // "reject, or accept liberally": we reject with 400.
    ("ltgtruri", Want::Status(&[400])),
    ("lwsstart", Want::Status(&[400])),
    ("trws", Want::Status(&[400])),
    ("baddate", Want::Parse),
    // Must not break the parser: 400 or RFC 2543 matching; we match as RFC 2543.
    ("badbranch", Want::Parse),
    // Bodies a redirect server does not read: routed (documented in README).
    ("invut", Want::Parse),
    ("sdp01", Want::Parse),
    // Registrar-only tests: a redirect server answers REGISTER 405.
    ("cparam01", Want::Parse),
    ("cparam02", Want::Parse),
    ("regescrt", Want::Parse),
    // Undocumented archive member, malformed and without a Via: nowhere to answer, dropped.
    ("test", Want::Drop),
];

#[tokio::test]
async fn every_torture_message_gets_its_treatment() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/rfc4475");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 50, "all 50 messages present");
    let names: Vec<_> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for (name, _) in CASES {
        assert!(names.iter().any(|n| n == name), "{name}.dat missing");
    }
    assert_eq!(CASES.len(), names.len(), "every file has an expectation");

    let run = start(&config_text(true, "reject"), Duration::ZERO, |_| {}).await;
    let mut failures = Vec::new();
    for (name, want) in CASES {
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).unwrap();
        let peer = Peer::new(run.udp).await;
        peer.send_bytes(&bytes).await;
        let got = peer.recv_within(400).await;
        let ok = match (want, &got) {
            (Want::Drop, None) => true,
            (Want::Drop, Some(_)) => false,
            (_, None) => false,
            (Want::Status(codes), Some(r)) => codes.contains(&status(r)),
            (Want::Parse, Some(r)) => {
                let s = status(r);
                // A final or provisional answer that is not a syntax error.
                s != 400 && s != 416 && s != 505 && (100..700).contains(&s)
            }
        };
        if !ok {
            failures.push(format!(
                "{name}: want {want:?}, got {:?}",
                got.as_deref().map(|r| r.lines().next().unwrap_or(""))
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // With Require enforced, bext01's 420 lists exactly its Require tags, not Proxy-Require's.
    let strict = start(&config_text(true, "reject"), Duration::ZERO, |c| {
        c.enforce_require = true;
    })
    .await;
    let peer = Peer::new(strict.udp).await;
    peer.send_bytes(&std::fs::read(dir.join("bext01.dat")).unwrap())
        .await;
    let r = peer.recv().await;
    assert_eq!(status(&r), 420, "{r}");
    assert_eq!(
        header(&r, "Unsupported"),
        Some("nothingSupportsThis, nothingSupportsThisEither"),
        "{r}"
    );
    // The server is still alive and routing after all of them; an INVITE requiring an unknown
    // extension is redirected by default (RFC 3261 §8.3), 420 where enforced.
    for (server, want) in [(run.udp, 302), (strict.udp, 420)] {
        let peer = Peer::new(server).await;
        peer.send(&invite(
            "+18005550100",
            "+12125550000",
            "Require: nothingSupportsThis\r\n",
            "after",
            peer.port(),
        ))
        .await;
        assert_eq!(status(&peer.recv_final().await), want);
    }
}
