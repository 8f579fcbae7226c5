//! Test PKI (rcgen), PASSporT signing (ring) and a real HTTP server on 127.0.0.1 that serves
//! certificates and counts requests. Nothing here mocks crypto or HTTP.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// TNAuthList ::= SEQUENCE OF TNEntry; TNEntry spc [0] EXPLICIT IA5String (RFC 8226 §9).
pub fn tn_auth_list_spc(spc: &str) -> Vec<u8> {
    let ia5_len = u8::try_from(spc.len()).unwrap();
    let mut der = vec![0x30, ia5_len + 4, 0xa0, ia5_len + 2, 0x16, ia5_len];
    der.extend(spc.as_bytes());
    der
}

pub struct Ca {
    pub pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            params,
            key,
        }
    }

    /// Writes this CA as the only anchor of a fresh directory.
    pub fn anchor_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sti-ca.pem"), &self.pem).unwrap();
        dir
    }

    pub fn issue(&self, spec: LeafSpec) -> Sp {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn("Test STI-SP");
        if let Some(tn) = spec.tn_auth_list {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 5, 5, 7, 1, 26],
                    tn,
                ));
        }
        if let Some((from, until)) = spec.validity {
            params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
            params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        }
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let pkcs8 = key.serialize_der();
        Sp {
            pem: cert.pem(),
            signer: EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &pkcs8,
                &SystemRandom::new(),
            )
            .unwrap(),
        }
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::CommonName, cn);
    dn
}

/// (year, month, day).
pub type Ymd = (i32, u8, u8);

pub struct LeafSpec {
    pub tn_auth_list: Option<Vec<u8>>,
    /// (notBefore, notAfter).
    pub validity: Option<(Ymd, Ymd)>,
}

impl Default for LeafSpec {
    fn default() -> Self {
        LeafSpec {
            tn_auth_list: Some(tn_auth_list_spc("709J")),
            validity: None,
        }
    }
}

/// A service provider: its certificate and the key that signs its PASSporTs.
pub struct Sp {
    pub pem: String,
    pub signer: EcdsaKeyPair,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Sp {
    /// Signs `hdr.payload` (JSON texts) and returns the compact JWS.
    pub fn sign(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = self
            .signer
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

pub const ANI: &str = "12155551212";
pub const DNIS: &str = "18005550100";

pub fn unix(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

pub fn shaken_header(x5u: &str) -> String {
    format!(r#"{{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"{x5u}"}}"#)
}

pub fn shaken_claims(attest: &str, dest: &str, iat: i64, orig: &str) -> String {
    format!(
        r#"{{"attest":"{attest}","dest":{{"tn":["{dest}"]}},"iat":{iat},"orig":{{"tn":"{orig}"}},"origid":"123e4567-e89b-12d3-a456-426655440000"}}"#
    )
}

pub fn identity(token: &str, info: &str) -> String {
    format!("{token};info=<{info}>;alg=ES256;ppt=shaken")
}

#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
    /// Hold the response this long (to exercise the fetch timeout).
    pub delay: Duration,
}

impl Route {
    pub fn pem(pem: &str) -> Route {
        Route {
            status: 200,
            body: pem.as_bytes().to_vec(),
            cache_control: None,
            delay: Duration::ZERO,
        }
    }
}

/// A minimal HTTP/1.1 server (one request per connection) on 127.0.0.1:0.
pub struct CertServer {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
}

impl CertServer {
    pub async fn start() -> CertServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let total = Arc::new(AtomicUsize::new(0));
        let (r, h, t) = (routes.clone(), hits.clone(), total.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (r, h, t) = (r.clone(), h.clone(), t.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    t.fetch_add(1, Ordering::SeqCst);
                    *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let route = r.lock().unwrap().get(&path).cloned();
                    let route = route.unwrap_or(Route {
                        status: 404,
                        body: b"not found".to_vec(),
                        cache_control: None,
                        delay: Duration::ZERO,
                    });
                    tokio::time::sleep(route.delay).await;
                    let mut resp = format!(
                        "HTTP/1.1 {} X\r\nContent-Type: application/x-pem-file\r\nContent-Length: {}\r\nConnection: close\r\n",
                        route.status,
                        route.body.len()
                    );
                    if let Some(cc) = &route.cache_control {
                        resp.push_str(&format!("Cache-Control: {cc}\r\n"));
                    }
                    resp.push_str("\r\n");
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.write_all(&route.body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        CertServer {
            base,
            routes,
            hits,
            total,
        }
    }

    /// Serves `route` at `path` and returns its URL.
    pub fn serve(&self, path: &str, route: Route) -> String {
        self.routes.lock().unwrap().insert(path.to_string(), route);
        format!("{}{path}", self.base)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

/// Config for tests: plain http to 127.0.0.1 only.
pub fn test_config(anchors: &Path) -> tollgate_stir::StirConfig {
    let mut c = tollgate_stir::StirConfig::new(anchors);
    c.allowed_hosts = vec!["127.0.0.1".into()];
    c.allow_http = true;
    c
}
