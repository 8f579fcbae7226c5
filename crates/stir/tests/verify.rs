#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! End to end: certificates made here, PASSporTs signed with ring, certificates served over
//! real HTTP on 127.0.0.1; each failure class gives its SIP response.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use tollgate_core::{Attestation, Verification};
use tollgate_sip::identity::{identity_value, parse_identity};
use tollgate_stir::{
    ErrorKind, StirConfig, StirError, StirOutcome, StirVerification, TnAuthList, TnEntry, Verifier,
};

/// One CA in the anchors, one SP certificate it issued, served at /sp.pem.
struct Fixture {
    ca: Ca,
    _anchors: tempfile::TempDir,
    sp: Sp,
    server: CertServer,
    x5u: String,
    verifier: Verifier,
    now: SystemTime,
}

impl Fixture {
    async fn new() -> Fixture {
        Self::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut StirConfig)) -> Fixture {
        let ca = Ca::new("Test STI-CA");
        let anchors = ca.anchor_dir();
        let sp = ca.issue(LeafSpec::default());
        let server = CertServer::start().await;
        let x5u = server.serve("/sp.pem", Route::pem(&sp.pem));
        let mut config = test_config(anchors.path());
        tweak(&mut config);
        let verifier = Verifier::new(&config).unwrap();
        assert_eq!(verifier.trust_anchor_count(), 1);
        Fixture {
            ca,
            _anchors: anchors,
            sp,
            server,
            x5u,
            verifier,
            now: SystemTime::now(),
        }
    }

    /// A good token for this call, signed by the fixture's SP.
    fn good_token(&self) -> String {
        self.sp.sign(
            &shaken_header(&self.x5u),
            &shaken_claims("A", DNIS, unix(self.now), ANI),
        )
    }

    /// Verifies header lines as a call carries them: parsed by the SIP layer first.
    async fn verify(&self, headers: &[String]) -> StirOutcome {
        let values: Vec<_> = headers.iter().map(|h| identity_value(h)).collect();
        self.verifier.verify(&values, ANI, DNIS, self.now).await
    }

    /// Verifies one header and returns the error, checking its SIP response.
    async fn expect(&self, header: String, code: u16) -> StirError {
        let out = self.verify(&[header]).await;
        let StirVerification::Failed(e) = &out.verification else {
            panic!("expected failure {code}, got {out:?}");
        };
        assert_eq!(e.sip_response().0, code, "{e}");
        assert_eq!(out.sip_response().map(|r| r.0), Some(code));
        assert_eq!(out.attestation, None);
        assert!(matches!(out.core_verification(), Verification::Failed(_)));
        e.clone()
    }
}

#[tokio::test]
async fn good_token_verifies_with_attestation_a() {
    let f = Fixture::new().await;
    let header = identity(&f.good_token(), &f.x5u);
    let out = f.verify(std::slice::from_ref(&header)).await;
    assert_eq!(out.verification, StirVerification::Verified, "{out:?}");
    assert_eq!(out.attestation, Some(Attestation::A));
    assert_eq!(
        out.origid.as_deref(),
        Some("123e4567-e89b-12d3-a456-426655440000")
    );
    assert_eq!(out.core_verification(), Verification::Verified);
    assert_eq!(out.sip_response(), None);

    let v = f
        .verifier
        .verify_one(&parse_identity(&header).unwrap(), ANI, DNIS, f.now)
        .await
        .unwrap();
    assert_eq!(
        v.tn_auth_list,
        TnAuthList(vec![TnEntry::Spc("709J".into())])
    );
    assert_eq!(v.x5u, f.x5u);
    assert_eq!(v.claims.orig_tn, ANI);
}

#[tokio::test]
async fn attestation_b_and_c_and_formatted_numbers() {
    let f = Fixture::new().await;
    for (attest, want) in [("B", Attestation::B), ("C", Attestation::C)] {
        let token = f.sp.sign(
            &shaken_header(&f.x5u),
            &shaken_claims(attest, DNIS, unix(f.now) - 59, ANI),
        );
        let out = f
            .verifier
            // The caller's digits may still carry + or separators: compared canonically.
            .verify(
                &[identity_value(&identity(&token, &f.x5u))],
                "+1-215-555-1212",
                "+18005550100",
                f.now,
            )
            .await;
        assert_eq!(out.verification, StirVerification::Verified, "{out:?}");
        assert_eq!(out.attestation, Some(want));
    }
}

#[tokio::test]
async fn no_identity_is_absent_428() {
    let f = Fixture::new().await;
    let out = f.verify(&[]).await;
    assert_eq!(out.verification, StirVerification::Absent);
    assert_eq!(out.sip_response(), Some((428, "Use Identity Header")));
    assert_eq!(out.core_verification(), Verification::Absent);
}

#[tokio::test]
async fn unsupported_ppt_is_ignored_428() {
    let f = Fixture::new().await;
    let token = f.good_token();
    let div = format!("{token};info=<{}>;alg=ES256;ppt=div", f.x5u);
    let e = f.expect(div, 428).await;
    assert_eq!(e, StirError::UnsupportedPpt(Some("div".into())));
    assert_eq!(e.sip_response(), (428, "Use Supported PASSporT Format"));
    // No ppt at all: not a SHAKEN Identity either.
    let e = f
        .expect(format!("{token};info=<{}>;alg=ES256", f.x5u), 428)
        .await;
    assert_eq!(e, StirError::UnsupportedPpt(None));
    // A PASSporT header whose ppt disagrees with the Identity's is invalid.
    let token = f.sp.sign(
        &shaken_header(&f.x5u).replace("shaken", "div"),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&token, &f.x5u), 438).await;
    assert!(matches!(e, StirError::PptMismatch { .. }), "{e}");
    assert_eq!(
        f.server.total(),
        0,
        "ignored or invalid headers fetch nothing"
    );
}

#[tokio::test]
async fn wrong_alg_is_437() {
    let f = Fixture::new().await;
    let claims = shaken_claims("A", DNIS, unix(f.now), ANI);
    let token =
        f.sp.sign(&shaken_header(&f.x5u).replace("ES256", "ES384"), &claims);
    let e = f.expect(identity(&token, &f.x5u), 437).await;
    assert_eq!(e, StirError::UnsupportedAlg("ES384".into()));
    // The Identity's alg parameter too.
    let header = format!("{};info=<{}>;alg=RS256;ppt=shaken", f.good_token(), f.x5u);
    let e = f.expect(header, 437).await;
    assert_eq!(e, StirError::UnsupportedAlg("RS256".into()));
    // alg absent from the Identity means ES256 (RFC 8224 §4).
    let header = format!("{};info=<{}>;ppt=shaken", f.good_token(), f.x5u);
    assert_eq!(
        f.verify(&[header]).await.verification,
        StirVerification::Verified
    );
}

#[tokio::test]
async fn wrong_typ_is_437() {
    let f = Fixture::new().await;
    let token = f.sp.sign(
        &shaken_header(&f.x5u).replace("passport", "JWT"),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&token, &f.x5u), 437).await;
    assert_eq!(e, StirError::WrongTyp("JWT".into()));
}

#[tokio::test]
async fn x5u_not_info_and_missing_info_are_436() {
    let f = Fixture::new().await;
    let other = f.server.url("/other.pem");
    let e = f.expect(identity(&f.good_token(), &other), 436).await;
    assert!(matches!(e, StirError::X5uMismatch { .. }), "{e}");
    let e = f
        .expect(format!("{};alg=ES256;ppt=shaken", f.good_token()), 436)
        .await;
    assert_eq!(e, StirError::MissingInfo);
    assert_eq!(f.server.total(), 0);
}

#[tokio::test]
async fn fetch_404_is_436_and_not_cached() {
    let f = Fixture::new().await;
    let missing = f.server.url("/missing.pem");
    let token = f.sp.sign(
        &shaken_header(&missing),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&token, &missing), 436).await;
    assert!(
        matches!(&e, StirError::Fetch { reason, .. } if reason.contains("404")),
        "{e}"
    );
    // A failed fetch is retried by the next call (transient outages must not stick).
    f.expect(identity(&token, &missing), 436).await;
    assert_eq!(f.server.hits("/missing.pem"), 2);
}

#[tokio::test]
async fn non_certificate_body_is_436() {
    let f = Fixture::new().await;
    let url = f
        .server
        .serve("/junk.pem", Route::pem("<html>hello</html>"));
    let token = f.sp.sign(
        &shaken_header(&url),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&token, &url), 436).await;
    assert!(matches!(e, StirError::CertificateUnreadable { .. }), "{e}");
}

#[tokio::test]
async fn fetch_timeout_is_436_and_bounded() {
    let f = Fixture::with(|c| c.fetch_timeout_ms = 200).await;
    let url = f.server.serve(
        "/slow.pem",
        Route {
            delay: Duration::from_secs(3),
            ..Route::pem(&f.sp.pem)
        },
    );
    let token = f.sp.sign(
        &shaken_header(&url),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let started = Instant::now();
    let e = f.expect(identity(&token, &url), 436).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, StirError::Fetch { .. }), "{e}");
}

#[tokio::test]
async fn untrusted_ca_is_437() {
    let f = Fixture::new().await;
    let rogue = Ca::new("Rogue CA").issue(LeafSpec::default());
    let url = f.server.serve("/rogue.pem", Route::pem(&rogue.pem));
    let token = rogue.sign(
        &shaken_header(&url),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&token, &url), 437).await;
    assert!(matches!(e, StirError::Untrusted(_)), "{e}");
}

#[tokio::test]
async fn expired_and_not_yet_valid_certs_are_437() {
    let f = Fixture::new().await;
    for (name, validity, expired) in [
        ("/expired.pem", ((2019, 1, 1), (2020, 1, 1)), true),
        ("/future.pem", ((2090, 1, 1), (2091, 1, 1)), false),
    ] {
        let sp = f.ca.issue(LeafSpec {
            validity: Some(validity),
            ..LeafSpec::default()
        });
        let url = f.server.serve(name, Route::pem(&sp.pem));
        let token = sp.sign(
            &shaken_header(&url),
            &shaken_claims("A", DNIS, unix(f.now), ANI),
        );
        let e = f.expect(identity(&token, &url), 437).await;
        if expired {
            assert!(matches!(e, StirError::CertExpired { .. }), "{e}");
        } else {
            assert!(matches!(e, StirError::CertNotYetValid { .. }), "{e}");
        }
    }
}

#[tokio::test]
async fn chain_validity_is_judged_at_now_even_when_cached() {
    let f = Fixture::new().await;
    let sp = f.ca.issue(LeafSpec {
        validity: Some(((2020, 1, 1), (2030, 1, 1))),
        ..LeafSpec::default()
    });
    let url = f.server.serve("/short.pem", Route::pem(&sp.pem));
    // 2025-06-01: valid, and the chain verdict is cached.
    let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_736_000);
    let token = sp.sign(
        &shaken_header(&url),
        &shaken_claims("A", DNIS, unix(t1), ANI),
    );
    let out = f
        .verifier
        .verify(&[identity_value(&identity(&token, &url))], ANI, DNIS, t1)
        .await;
    assert_eq!(out.verification, StirVerification::Verified, "{out:?}");
    // 2031-01-01: same cached certificate, now expired.
    let t2 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_924_992_000);
    let token = sp.sign(
        &shaken_header(&url),
        &shaken_claims("A", DNIS, unix(t2), ANI),
    );
    let out = f
        .verifier
        .verify(&[identity_value(&identity(&token, &url))], ANI, DNIS, t2)
        .await;
    assert!(
        matches!(
            &out.verification,
            StirVerification::Failed(StirError::CertExpired { .. })
        ),
        "{out:?}"
    );
    assert_eq!(f.server.hits("/short.pem"), 1);
}

#[tokio::test]
async fn missing_tn_auth_list_is_437() {
    let f = Fixture::new().await;
    let sp = f.ca.issue(LeafSpec {
        tn_auth_list: None,
        ..LeafSpec::default()
    });
    let url = f.server.serve("/notn.pem", Route::pem(&sp.pem));
    let token = sp.sign(
        &shaken_header(&url),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&token, &url), 437).await;
    assert_eq!(e, StirError::NoTnAuthList);
}

#[tokio::test]
async fn stale_and_future_iat_are_403_stale_date() {
    let f = Fixture::new().await;
    let stale = f.sp.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("A", DNIS, unix(f.now) - 61, ANI),
    );
    let e = f.expect(identity(&stale, &f.x5u), 403).await;
    assert_eq!(e.sip_response(), (403, "Stale Date"));
    assert!(matches!(e, StirError::Stale { age: 61, .. }), "{e}");

    let future = f.sp.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("A", DNIS, unix(f.now) + 30, ANI),
    );
    let e = f.expect(identity(&future, &f.x5u), 403).await;
    assert!(matches!(e, StirError::FutureIat { ahead: 30, .. }), "{e}");

    // A few seconds of clock skew are tolerated.
    let skewed = f.sp.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("A", DNIS, unix(f.now) + 3, ANI),
    );
    let out = f.verify(&[identity(&skewed, &f.x5u)]).await;
    assert_eq!(out.verification, StirVerification::Verified);
}

#[tokio::test]
async fn string_iat_is_438_with_a_reason() {
    let f = Fixture::new().await;
    let claims = shaken_claims("A", DNIS, unix(f.now), ANI).replace(
        &format!("\"iat\":{}", unix(f.now)),
        &format!("\"iat\":\"{}\"", unix(f.now)),
    );
    let token = f.sp.sign(&shaken_header(&f.x5u), &claims);
    let e = f.expect(identity(&token, &f.x5u), 438).await;
    assert!(e.to_string().contains("erratum"), "{e}");
}

#[tokio::test]
async fn orig_and_dest_mismatch_are_438() {
    let f = Fixture::new().await;
    let orig = f.sp.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("A", DNIS, unix(f.now), "12155550000"),
    );
    let e = f.expect(identity(&orig, &f.x5u), 438).await;
    assert!(matches!(e, StirError::OrigMismatch { .. }), "{e}");

    let dest = f.sp.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("A", "18005559999", unix(f.now), ANI),
    );
    let e = f.expect(identity(&dest, &f.x5u), 438).await;
    assert!(matches!(e, StirError::DestMismatch { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidIdentity);
}

#[tokio::test]
async fn tampered_payload_is_438() {
    let f = Fixture::new().await;
    let token = f.sp.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("C", DNIS, unix(f.now), ANI),
    );
    // Upgrade the attestation without re-signing.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = b64(shaken_claims("A", DNIS, unix(f.now), ANI).as_bytes());
    let tampered = parts.join(".");
    let e = f.expect(identity(&tampered, &f.x5u), 438).await;
    assert!(matches!(e, StirError::BadSignature(_)), "{e}");

    // A signature by another key over the same content.
    let other = f.ca.issue(LeafSpec::default());
    let forged = other.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&forged, &f.x5u), 438).await;
    assert!(matches!(e, StirError::BadSignature(_)), "{e}");
}

#[tokio::test]
async fn any_valid_header_verifies_the_request() {
    let f = Fixture::new().await;
    let bad = f.sp.sign(
        &shaken_header(&f.x5u),
        &shaken_claims("A", DNIS, unix(f.now), "19995550000"),
    );
    let div = format!("{};info=<{}>;ppt=div", f.good_token(), f.x5u);
    let good = identity(&f.good_token(), &f.x5u);
    let out = f.verify(&[div.clone(), identity(&bad, &f.x5u), good]).await;
    assert_eq!(out.verification, StirVerification::Verified, "{out:?}");
    assert_eq!(out.attestation, Some(Attestation::A));

    // With none valid, the real failure is reported, not the ignored div header's 428.
    let out = f.verify(&[div, identity(&bad, &f.x5u)]).await;
    assert_eq!(out.sip_response().map(|r| r.0), Some(438), "{out:?}");
}

#[tokio::test]
async fn certificate_is_fetched_once_then_refetched_after_max_age() {
    let f = Fixture::new().await;
    let url = f.server.serve(
        "/ttl.pem",
        Route {
            cache_control: Some("public, max-age=1".into()),
            ..Route::pem(&f.sp.pem)
        },
    );
    let verifier = Arc::new(f.verifier);
    let header = identity(
        &f.sp.sign(
            &shaken_header(&url),
            &shaken_claims("A", DNIS, unix(f.now), ANI),
        ),
        &url,
    );
    // 20 at once (single-flight), then 20 in a row.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (v, h, now) = (verifier.clone(), header.clone(), f.now);
        tasks.spawn(async move { v.verify(&[identity_value(&h)], ANI, DNIS, now).await });
    }
    while let Some(out) = tasks.join_next().await {
        assert_eq!(out.unwrap().verification, StirVerification::Verified);
    }
    for _ in 0..20 {
        let out = verifier
            .verify(&[identity_value(&header)], ANI, DNIS, f.now)
            .await;
        assert_eq!(out.verification, StirVerification::Verified);
    }
    assert_eq!(f.server.hits("/ttl.pem"), 1);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let out = verifier
        .verify(&[identity_value(&header)], ANI, DNIS, f.now)
        .await;
    assert_eq!(out.verification, StirVerification::Verified);
    assert_eq!(f.server.hits("/ttl.pem"), 2, "refetched after max-age");
}

#[tokio::test]
async fn without_max_age_the_default_ttl_applies() {
    let f = Fixture::with(|c| c.default_cert_ttl_s = 1).await;
    let header = identity(&f.good_token(), &f.x5u);
    for _ in 0..5 {
        assert_eq!(
            f.verify(std::slice::from_ref(&header)).await.verification,
            StirVerification::Verified
        );
    }
    assert_eq!(f.server.hits("/sp.pem"), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        f.verify(&[header]).await.verification,
        StirVerification::Verified
    );
    assert_eq!(f.server.hits("/sp.pem"), 2);
}

#[tokio::test]
async fn host_not_allowed_is_436_without_a_request() {
    // localhost is the same server, but only 127.0.0.1 is allowed.
    let f = Fixture::new().await;
    let url = f.x5u.replace("127.0.0.1", "localhost");
    let token = f.sp.sign(
        &shaken_header(&url),
        &shaken_claims("A", DNIS, unix(f.now), ANI),
    );
    let e = f.expect(identity(&token, &url), 436).await;
    assert!(matches!(e, StirError::UrlNotAllowed { .. }), "{e}");
    assert_eq!(f.server.total(), 0);

    // The default allow list is empty: nothing is fetched.
    let f = Fixture::with(|c| c.allowed_hosts.clear()).await;
    let e = f.expect(identity(&f.good_token(), &f.x5u), 436).await;
    assert!(e.to_string().contains("allowed_hosts is empty"), "{e}");
    // And without allow_http, plain http is refused.
    let f2 = Fixture::with(|c| c.allow_http = false).await;
    let e = f2.expect(identity(&f2.good_token(), &f2.x5u), 436).await;
    assert!(e.to_string().contains("https"), "{e}");
    assert_eq!(f.server.total() + f2.server.total(), 0);
}

#[tokio::test]
async fn malformed_tokens_are_438() {
    let f = Fixture::new().await;
    // Not base64url JSON; a header that is JSON but not an object; claims that are not JSON.
    let hdr = b64(shaken_header(&f.x5u).as_bytes());
    for token in [
        "a.b.c".to_string(),
        "bm90anNvbg.e30.AAAA".to_string(),
        "WzFd.e30.AAAA".to_string(),
        format!("{hdr}.bm90anNvbg.AAAA"),
    ] {
        let e = f.expect(identity(&token, &f.x5u), 438).await;
        assert!(matches!(e, StirError::Malformed(_)), "{token}: {e}");
    }
    // An empty JOSE header has no typ: 437, like any wrong typ.
    f.expect(identity("e30.e30.AAAA", &f.x5u), 437).await;
    // A DER-encoded signature instead of raw R||S.
    let good = f.good_token();
    let (input, _) = good.rsplit_once('.').unwrap();
    let der_sig = b64(&[0x30u8; 71]);
    let e = f
        .expect(identity(&format!("{input}.{der_sig}"), &f.x5u), 438)
        .await;
    assert!(e.to_string().contains("R||S"), "{e}");
}

#[test]
fn anchors_directory_must_hold_a_certificate() {
    let empty = tempfile::tempdir().unwrap();
    let e = Verifier::new(&StirConfig::new(empty.path())).unwrap_err();
    assert!(e.to_string().contains("no trust anchor"), "{e}");
    let e = Verifier::new(&StirConfig::new(empty.path().join("nope"))).unwrap_err();
    assert!(e.to_string().contains("reading trust anchors"), "{e}");
    std::fs::write(
        empty.path().join("bad.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(Verifier::new(&StirConfig::new(empty.path())).is_err());
}

/// An Identity header the SIP layer could not parse reaches the verifier as `Malformed` and
/// fails 438 Invalid Identity Header (RFC 8224 §6.2.2), like a bad token.
#[tokio::test]
async fn a_header_the_sip_layer_could_not_parse_fails_438() {
    let f = Fixture::new().await;
    for bad in [
        "a.b;info=<https://x>",
        "a.b.c;ppt=shaken;ppt=div",
        "a.b.c;info=<https://x",
        "a.b.c!;ppt=shaken",
    ] {
        let e = f.expect(bad.to_owned(), 438).await;
        assert!(matches!(e, StirError::Malformed(_)), "{bad}: {e}");
    }
}
