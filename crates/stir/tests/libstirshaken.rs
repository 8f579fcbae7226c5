#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Reference material from signalwire/libstirshaken (tests/data/README.md): a real third-party
//! signer's certificate, CA and PASSporT, with known defects.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tollgate_sip::identity::{identity_value, parse_identity};
use tollgate_stir::{StiCertificate, StirConfig, StirError, StirVerification, Verifier};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap()
}

/// The line after `label` in sp_passport.txt.
fn line_after(label: &str) -> String {
    let text = String::from_utf8(read("sp_passport.txt")).unwrap();
    let mut lines = text.lines();
    lines.find(|l| l.trim() == label).unwrap();
    lines.next().unwrap().trim().to_string()
}

/// iat 1603458131 (2020-10-23) plus ten seconds.
fn signing_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_603_458_141)
}

/// A verifier trusting only ca_ca.pem.
fn verifier() -> (tempfile::TempDir, Verifier) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data("ca_ca.pem"), dir.path().join("ca.pem")).unwrap();
    // Nothing may be fetched from the header's real host: the allow list stays empty.
    let v = Verifier::new(&StirConfig::new(dir.path())).unwrap();
    (dir, v)
}

#[test]
fn reference_signatures_verify_with_sp_key_only() {
    let sp = StiCertificate::parse(&read("sp_sp.pem")).unwrap();
    let wrong = StiCertificate::parse(&read("sp_wrongsp.pem")).unwrap();
    let header = parse_identity(&line_after("SIP Identity Header with PASSporT is:")).unwrap();
    assert_eq!(
        header.info.as_deref(),
        Some("http://shaken.signalwire.cloud/sp.pem")
    );
    assert_eq!(header.ppt.as_deref(), Some("shaken"));
    let printed = line_after("PASSporT signed is:");
    assert_ne!(printed, header.token, "ECDSA signatures are randomized");

    for token in [&header.token, &printed] {
        sp.verify_signature(token).unwrap();
        let e = wrong.verify_signature(token).unwrap_err();
        assert!(matches!(e, StirError::BadSignature(_)), "{e}");
    }
    // One flipped payload character breaks it.
    let mut tampered = header.token.clone().into_bytes();
    let i = tampered.iter().position(|&b| b == b'.').unwrap() + 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let e = sp
        .verify_signature(&String::from_utf8(tampered).unwrap())
        .unwrap_err();
    assert_eq!(e.sip_response().0, 438);
}

#[test]
fn sp_chains_to_ca_and_wrongsp_does_not() {
    let (_dir, v) = verifier();
    let sp = StiCertificate::parse(&read("sp_sp.pem")).unwrap();
    let wrong = StiCertificate::parse(&read("sp_wrongsp.pem")).unwrap();
    for now in [signing_time(), SystemTime::now()] {
        v.check_chain(&sp, now).unwrap();
        let e = v.check_chain(&wrong, now).unwrap_err();
        assert!(matches!(e, StirError::Untrusted(_)), "{e}");
        assert_eq!(e.sip_response(), (437, "Unsupported Credential"));
    }
    // Before sp.pem's notBefore (2020-10-22 22:14:38).
    let e = v
        .check_chain(&sp, UNIX_EPOCH + Duration::from_secs(1_600_000_000))
        .unwrap_err();
    assert!(matches!(e, StirError::CertNotYetValid { .. }), "{e}");
}

#[test]
fn sp_tn_auth_list_is_a_url_not_a_tn_auth_list() {
    let sp = StiCertificate::parse(&read("sp_sp.pem")).unwrap();
    let e = sp.tn_auth_list().unwrap_err();
    assert!(
        matches!(&e, StirError::BadTnAuthList(r) if r.contains("IA5String")),
        "{e}"
    );
    assert_eq!(e.sip_response().0, 437);
    assert_eq!(sp.public_key().unwrap().len(), 65);
}

#[tokio::test]
async fn full_verify_fails_438_on_string_orig_and_dest() {
    let (_dir, v) = verifier();
    let header = identity_value(&line_after("SIP Identity Header with PASSporT is:"));
    for now in [signing_time(), SystemTime::now()] {
        let out = v
            .verify(
                std::slice::from_ref(&header),
                "01256789999",
                "01256500600",
                now,
            )
            .await;
        let StirVerification::Failed(e) = &out.verification else {
            panic!("{out:?}");
        };
        assert!(
            matches!(e, StirError::BadClaim(r) if r.contains("is the string")),
            "{e}"
        );
        assert_eq!(out.sip_response(), Some((438, "Invalid Identity Header")));
    }
}
