//! STIR/SHAKEN verification of a fresh PASSporT with the certificate already cached.
//!
//! Target: under 100 µs median. The certificate (made here with rcgen, chained to a
//! CA in a temporary anchor directory) is served once from a local HTTP server on 127.0.0.1;
//! every timed call then hits the cache, so the cost is parsing, the claim checks, the cached
//! chain verdict and ring's ES256 verify. `es256_only` times that last step alone.
#![allow(clippy::expect_used)] // a benchmark stops on a broken fixture

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tollgate_sip::identity::{identity_value, parse_identity};
use tollgate_stir::{StiCertificate, StirConfig, StirVerification, Verifier};

const ANI: &str = "12155551212";
const DNIS: &str = "18005550100";

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// (CA PEM, SP PEM, SP signing key).
fn pki() -> (String, String, EcdsaKeyPair) {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.distinguished_name = dn("Bench STI-CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();

    let sp_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut sp = CertificateParams::new(Vec::<String>::new()).expect("params");
    sp.distinguished_name = dn("Bench STI-SP");
    // TNAuthList: SEQUENCE { [0] EXPLICIT IA5String "709J" }.
    sp.custom_extensions.push(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 26],
        vec![0x30, 0x08, 0xa0, 0x06, 0x16, 0x04, b'7', b'0', b'9', b'J'],
    ));
    let sp_pem = sp
        .signed_by(&sp_key, &Issuer::from_params(&ca, &ca_key))
        .expect("sp")
        .pem();
    let signer = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &sp_key.serialize_der(),
        &SystemRandom::new(),
    )
    .expect("pkcs8");
    (ca_pem, sp_pem, signer)
}

/// Serves `body` for any GET, one request per connection.
async fn serve(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/sp.pem", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = sock.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=3600\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        }
    });
    url
}

fn stir(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (ca_pem, sp_pem, signer) = pki();
    let anchors = tempfile::tempdir().expect("tempdir");
    std::fs::write(anchors.path().join("ca.pem"), &ca_pem).expect("write anchor");
    let x5u = rt.block_on(serve(sp_pem.clone()));

    let mut config = StirConfig::new(anchors.path());
    config.allowed_hosts = vec!["127.0.0.1".into()];
    config.allow_http = true;
    let verifier = Verifier::new(&config).expect("verifier");

    // A fresh PASSporT: `now` is its iat plus one second for every iteration.
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let now = UNIX_EPOCH + Duration::from_secs(iat + 1);
    let hdr = format!(r#"{{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"{x5u}"}}"#);
    let claims = format!(
        r#"{{"attest":"A","dest":{{"tn":["{DNIS}"]}},"iat":{iat},"orig":{{"tn":"{ANI}"}},"origid":"123e4567-e89b-12d3-a456-426655440000"}}"#
    );
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hdr),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig = signer
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let line = format!("{token};info=<{x5u}>;alg=ES256;ppt=shaken");
    // Parsed by the SIP layer at extraction (the `parse_identity` figure below), as live.
    let headers = vec![identity_value(&line)];

    // Warm the cache (one fetch) and check the token verifies at all.
    let out = rt.block_on(verifier.verify(&headers, ANI, DNIS, now));
    assert_eq!(out.verification, StirVerification::Verified, "{out:?}");

    let mut g = c.benchmark_group("stir");
    g.bench_function("verify_cached_cert", |b| {
        b.iter(|| {
            let out = rt.block_on(verifier.verify(black_box(&headers), ANI, DNIS, now));
            debug_assert_eq!(out.verification, StirVerification::Verified);
            out
        });
    });

    let cert = StiCertificate::parse(sp_pem.as_bytes()).expect("cert");
    g.bench_function("es256_only", |b| {
        b.iter(|| cert.verify_signature(black_box(&token)).expect("verifies"));
    });
    g.bench_function("parse_identity", |b| {
        b.iter(|| parse_identity(black_box(&line)).expect("parses"));
    });
    g.finish();
}

criterion_group!(benches, stir);
criterion_main!(benches);
