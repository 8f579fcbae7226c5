//! The STIR/SHAKEN parsers never panic: the Identity header (RFC 8224), the PASSporT in it
//! (RFC 8225, RFC 8588) and its ES256 signature checked against a fixed test key, a
//! certificate body (PEM or DER) and its TNAuthList (RFC 8226), and `verstat`.
//!
//! Input: a mode byte, then the text or bytes. Mode 0: an Identity header value, parsed, its
//! token decoded, and its signature checked both with the fixed key (`stir/public.bin`) and
//! through the fixed certificate (`stir/cert.der`, self-signed, made by `stir/make.py`): the
//! two checks must agree. Mode 1: a certificate body, its key and TNAuthList read and a fixed
//! signed token checked with it (only the fixed key may verify it). Mode 2: a
//! TNAuthList extension value. Mode 3: a `verstat` value.
//!
//! The network part of verification (fetching `x5u`, the chain to the trust anchors) is not
//! here: `Verifier::verify` is async and fetches.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tollgate_sip::identity::parse_identity;
use tollgate_stir::{from_verstat, parse_tn_auth_list, Passport, StiCertificate};

const PUBLIC: &[u8] = include_bytes!("../stir/public.bin");
const CERT: &[u8] = include_bytes!("../stir/cert.der");
/// A token signed with the fixed key (the `a` seed).
const SIGNED: &str = include_str!("../seeds/stir/a");

fn cert() -> &'static StiCertificate {
    static CERT_PARSED: OnceLock<StiCertificate> = OnceLock::new();
    CERT_PARSED.get_or_init(|| {
        let c = StiCertificate::parse(CERT).expect("the fixed certificate parses");
        assert_eq!(c.public_key().expect("P-256 key"), PUBLIC);
        c
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let Ok(identity) = parse_identity(text) else {
                return;
            };
            let through_cert = cert().verify_signature(&identity.token);
            if let Ok(passport) = Passport::decode(&identity.token) {
                let with_key = passport.verify_signature(PUBLIC);
                assert_eq!(
                    with_key.is_ok(),
                    through_cert.is_ok(),
                    "{with_key:?} {through_cert:?}"
                );
                let _ = format!("{:?}", passport.claims);
            }
            for e in [through_cert.err()].into_iter().flatten() {
                let _ = e.to_string();
                let _ = e.sip_response();
            }
        }
        1 => {
            if let Ok(c) = StiCertificate::parse(rest) {
                let _ = c.tn_auth_list();
                let token = SIGNED
                    .trim_start_matches('\0')
                    .split(';')
                    .next()
                    .unwrap_or_default();
                let verified = c.verify_signature(token);
                // Only a certificate with the fixed key verifies the fixed token.
                if verified.is_ok() {
                    assert_eq!(c.public_key().ok(), Some(PUBLIC));
                }
            }
        }
        2 => {
            let _ = parse_tn_auth_list(rest);
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = from_verstat(text);
            }
        }
    }
});
