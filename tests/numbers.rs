//! Number intelligence end to end: classification, geography and CLI policy over real sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use tollgate_core::{CliVerdict, NumberKind};

fn with_cli(cli: &str) -> String {
    let base = config_text(true, "reject");
    // The trunk's own [trunk.cli] table must follow its keys, before [routing].
    base.replacen("[routing]", &format!("{cli}\n\n[routing]"), 1)
}

#[tokio::test]
async fn facts_carry_classification_geography_and_cli_verdict() {
    let run = start(
        &with_cli("[trunk.cli]\nrules = [\"deny 1900%\", \"validate %\"]"),
        Duration::ZERO,
        |_| {},
    )
    .await;
    let peer = Peer::new(run.udp).await;
    let extra = "P-Asserted-Identity: <tel:+12012001234>\r\n";
    peer.send(&invite(
        "+18005550100",
        "+12012001234",
        extra,
        "geo1",
        peer.port(),
    ))
    .await;
    assert_eq!(status(&peer.recv_final().await), 302);
    let (f, _) = run.facts().pop().unwrap();
    let info = f.ani_info.unwrap();
    assert!(info.valid);
    assert_eq!(
        (info.region, info.kind, info.npa, info.nxx),
        (
            Some("US"),
            NumberKind::FixedLineOrMobile,
            Some(201),
            Some(200)
        )
    );
    let geo = f.ani_geo.unwrap();
    assert_eq!(geo.description.as_deref(), Some("Jersey City, NJ"));
    assert_eq!(geo.time_zone(), Some("America/New_York"));
    assert_eq!(geo.zones().collect::<Vec<_>>(), ["America/New_York"]);
    assert_eq!(geo.subdivision.as_deref(), Some("US-NJ"));
    assert_eq!(f.dnis_info.unwrap().kind, NumberKind::TollFree);
    let cli = f.cli.unwrap();
    assert_eq!(cli.verdict, CliVerdict::Valid);
    assert!(
        cli.reason.starts_with("rule 2 `validate %`"),
        "{}",
        cli.reason
    );

    let extra = "P-Asserted-Identity: <tel:+19005550100>\r\n";
    peer.send(&invite(
        "+18005550100",
        "+12012001234",
        extra,
        "geo2",
        peer.port(),
    ))
    .await;
    assert_eq!(
        status(&peer.recv_final().await),
        302,
        "an invalid CLI still routes"
    );
    let (f, _) = run.facts().pop().unwrap();
    assert_eq!(f.cli.unwrap().reason, "rule 1 `deny 1900%`");
}

#[tokio::test]
async fn forced_cli_replaces_an_unapproved_caller_and_says_so() {
    let cli = "[trunk.cli]\napproved = [\"1212555%\"]\nunapproved = \"forced\"\nforced = \"+18005550199\"";
    let run = start(&with_cli(cli), Duration::ZERO, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    peer.send(&invite(
        "+18005550100",
        "+13125550100",
        "P-Asserted-Identity: <tel:+13125550100>\r\n",
        "forced1",
        peer.port(),
    ))
    .await;
    let r = peer.recv_final().await;
    assert_eq!(header(&r, "X-ANI"), Some("+18005550199"), "{r}");
    let (f, _) = run.facts().pop().unwrap();
    let cli = f.cli.unwrap();
    assert_eq!(cli.forced_from.unwrap().to_string(), "+13125550100");
    assert!(
        cli.reason.starts_with("forced CLI replaced +13125550100"),
        "{}",
        cli.reason
    );
    // The forced number is toll-free: as a CLI it is not valid, and the verdict says so.
    assert_eq!(cli.verdict, CliVerdict::Invalid);

    peer.send(&invite(
        "+18005550100",
        "+12125550100",
        "P-Asserted-Identity: <tel:+12125550100>\r\n",
        "forced2",
        peer.port(),
    ))
    .await;
    let r = peer.recv_final().await;
    assert_eq!(
        header(&r, "X-ANI"),
        Some("+12125550100"),
        "approved numbers pass unchanged"
    );
}

#[tokio::test]
async fn unapproved_cli_rejected_but_emergency_still_routed() {
    let cli = "[trunk.cli]\napproved = [\"1212555%\"]\nunapproved = \"reject\"\nreject_code = 608";
    let run = start(&with_cli(cli), Duration::ZERO, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    peer.send(&invite(
        "+18005550100",
        "+13125550100",
        "",
        "rej1",
        peer.port(),
    ))
    .await;
    let r = peer.recv_final().await;
    assert!(
        r.starts_with("SIP/2.0 608 CLI +13125550100 not approved\r\n"),
        "{r}"
    );
    assert_eq!(header(&r, "X-Rule"), Some("cli-policy"));
    peer.send(&invite("911", "+13125550100", "", "rej2", peer.port()))
        .await;
    let r = peer.recv_final().await;
    assert!(
        header(&r, "Contact")
            .unwrap()
            .starts_with("<sip:emergency@"),
        "{r}"
    );
    let (f, _) = run.facts().pop().unwrap();
    assert_eq!(f.cli.unwrap().verdict, CliVerdict::Exempt);
}

#[tokio::test]
async fn mark_invalid_keeps_the_number() {
    let cli = "[trunk.cli]\napproved = [\"1212555%\"]";
    let run = start(&with_cli(cli), Duration::ZERO, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    peer.send(&invite(
        "+18005550100",
        "+13125550100",
        "",
        "mark1",
        peer.port(),
    ))
    .await;
    let r = peer.recv_final().await;
    assert_eq!(header(&r, "X-ANI"), Some("+13125550100"));
    let (f, _) = run.facts().pop().unwrap();
    let cli = f.cli.unwrap();
    assert_eq!(
        (cli.verdict, cli.reason.as_str()),
        (CliVerdict::Invalid, "not an approved CLI")
    );
}

#[tokio::test]
async fn german_caller_suffix_needs_a_valid_number() {
    let run = start(&config_text(true, "reject"), Duration::ZERO, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    peer.send(&invite(
        "+18005550100",
        "+4930123456",
        "",
        "de1",
        peer.port(),
    ))
    .await;
    assert!(header(&peer.recv_final().await, "Contact")
        .unwrap()
        .starts_with("<sip:support-de@"));
    // An E.164 number under +49 that libphonenumber finds invalid: no "-de".
    peer.send(&invite(
        "+18005550100",
        "+49000000000",
        "",
        "de2",
        peer.port(),
    ))
    .await;
    assert!(header(&peer.recv_final().await, "Contact")
        .unwrap()
        .starts_with("<sip:support@"));
}

#[tokio::test]
async fn invalid_german_number_is_e164_but_invalid() {
    let run = start(&config_text(true, "reject"), Duration::ZERO, |_| {}).await;
    let peer = Peer::new(run.udp).await;
    peer.send(&invite(
        "+18005550100",
        "+49000000000",
        "",
        "de3",
        peer.port(),
    ))
    .await;
    let _ = peer.recv_final().await;
    let (f, _) = run.facts().pop().unwrap();
    // libphonenumber 9.0.43 drops the national prefix after +49 (as in `+49 (0)…`):
    // parse("+49000000000") is +4900000000, invalid.
    assert_eq!(f.ani.to_string(), "+4900000000");
    let info = f.ani_info.unwrap();
    assert!(!info.valid);
    assert_eq!(info.calling_code, 49);
}
