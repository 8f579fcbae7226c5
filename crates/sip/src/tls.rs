//! SIP over TLS (RFC 3261 §26.2): the listener's certificate, swapped without a restart, the
//! optional verification of client certificates, and what a peer's certificate says about it.
//!
//! The certificate chain, its key and the client CA bundle are PEM files. [`TlsFiles::load`]
//! reads them (a config check runs exactly this); [`Certificates`] holds the live
//! `rustls::ServerConfig` behind an `ArcSwap`, so a reload changes what new handshakes present
//! and never touches a connection already established. A reload that fails keeps the old
//! certificate and says why.
//!
//! A trunk can be named by its TLS peer ([`PeerMatch`]): a SAN DNS name, a SAN URI, or the
//! SHA-256 fingerprint of the certificate. The certificate is only read once rustls has verified
//! it against the client CA bundle, so a name in it can be believed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The files of a TLS listener, as configured.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM: the node's certificate first, then the intermediates (its chain).
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: CA certificates client certificates are verified against. Without it no client
    /// certificate is asked for, and no trunk can be named by its certificate.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse a handshake without a client certificate (otherwise a peer
    /// without one is served, and is identified by address only).
    pub require_client_cert: bool,
}

/// Why TLS files could not be used. Fail-closed: at start-up the node does not start; on a
/// reload the old certificate stays.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: the certificate chain and the key do not go together: {message}")]
    Mismatch { path: PathBuf, message: String },
    #[error("{path}: client CA bundle: {message}")]
    ClientCa { path: PathBuf, message: String },
}

impl TlsError {
    /// The file the problem is in (for a config error's key).
    pub fn path(&self) -> &Path {
        match self {
            TlsError::File { path, .. }
            | TlsError::NoCertificate { path }
            | TlsError::Mismatch { path, .. }
            | TlsError::ClientCa { path, .. } => path,
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The `notAfter` of a DER certificate, when it parses.
fn not_after(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// What a load read: the server config and facts for the log and `tollgate check`.
#[derive(Debug)]
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the node's own certificate (the first of the chain), hex.
    pub fingerprint: String,
    /// When the node's certificate expires.
    pub not_after: Option<SystemTime>,
}

impl TlsFiles {
    /// Reads and checks the files: the chain parses, the key matches it, the CA bundle holds
    /// at least one usable CA. An expired certificate loads (with `not_after` in the past):
    /// the caller decides whether that is an error.
    pub fn load(&self) -> Result<Loaded, TlsError> {
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| TlsError::File {
            path: self.key.clone(),
            message: format!("no usable private key: {e}"),
        })?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::File {
                path: self.cert.clone(),
                message: e.to_string(),
            })?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(|e| TlsError::ClientCa {
                        path: ca.clone(),
                        message: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| {
                    TlsError::ClientCa {
                        path: ca.clone(),
                        message: e.to_string(),
                    }
                })?)
            }
        };
        let first = chain.first().cloned();
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Mismatch {
                path: self.key.clone(),
                message: e.to_string(),
            })?;
        let (fingerprint, not_after) = match &first {
            Some(c) => (hex(&sha256(c.as_ref())), not_after(c)),
            None => (String::new(), None),
        };
        Ok(Loaded {
            config: Arc::new(config),
            fingerprint,
            not_after,
        })
    }

    /// What identifies the files' current contents (modification time and length of each):
    /// a change means reload.
    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        let mut paths: Vec<&Path> = vec![&self.cert, &self.key];
        if let Some(ca) = &self.client_ca {
            paths.push(ca);
        }
        paths
            .into_iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

/// A TLS listener's live certificate: read at start-up, swapped by [`Certificates::reload`].
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    live: ArcSwap<ServerConfig>,
    /// The live certificate's fingerprint and expiry.
    info: std::sync::Mutex<(String, Option<SystemTime>)>,
    stamp: std::sync::Mutex<Vec<Option<(SystemTime, u64)>>>,
    /// Bounds the handshake: a peer that starts one and never finishes is closed after this.
    pub handshake_timeout: Duration,
}

impl Certificates {
    pub fn new(files: TlsFiles, handshake_timeout: Duration) -> Result<Arc<Self>, TlsError> {
        let stamp = files.stamp();
        let loaded = files.load()?;
        tracing::info!(
            cert = %files.cert.display(),
            fingerprint = %loaded.fingerprint,
            "tls certificate loaded"
        );
        publish_expiry(loaded.not_after);
        Ok(Arc::new(Self {
            files,
            info: std::sync::Mutex::new((loaded.fingerprint.clone(), loaded.not_after)),
            live: ArcSwap::new(loaded.config),
            stamp: std::sync::Mutex::new(stamp),
            handshake_timeout,
        }))
    }

    /// The acceptor for the next handshake (the certificate live now).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.live.load_full())
    }

    /// The live certificate's SHA-256 (hex) and when it expires.
    pub fn live(&self) -> (String, Option<SystemTime>) {
        self.info
            .lock()
            .map(|i| i.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Whether client certificates are asked for.
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Reads the files again and swaps them in; on an error the live certificate stays.
    /// Connections already established keep the session they have.
    pub fn reload(&self) -> Result<Loaded, TlsError> {
        let stamp = self.files.stamp();
        match self.files.load() {
            Ok(loaded) => {
                self.live.store(Arc::clone(&loaded.config));
                publish_expiry(loaded.not_after);
                if let Ok(mut info) = self.info.lock() {
                    *info = (loaded.fingerprint.clone(), loaded.not_after);
                }
                if let Ok(mut s) = self.stamp.lock() {
                    *s = stamp;
                }
                metrics::counter!("tollgate_sip_tls_reloads_total", "result" => "ok").increment(1);
                tracing::info!(
                    cert = %self.files.cert.display(),
                    fingerprint = %loaded.fingerprint,
                    "tls certificate reloaded"
                );
                Ok(loaded)
            }
            Err(e) => {
                // Retried at the next change or SIGHUP; the stamp stays, so a half-written pair
                // (the certificate before its key) is read again when the key lands.
                metrics::counter!("tollgate_sip_tls_reloads_total", "result" => "error")
                    .increment(1);
                tracing::error!(error = %e, "tls reload rejected; the live certificate stays");
                Err(e)
            }
        }
    }

    /// True when a file changed since the last successful load.
    fn changed(&self) -> bool {
        let now = self.files.stamp();
        self.stamp.lock().map(|s| *s != now).unwrap_or(true)
    }

    /// Reloads when a file changes (polled every `every`) or on SIGHUP, until `stop`.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = hangup => {
                    tracing::info!("SIGHUP: reloading the tls certificate");
                    let _ = self.reload();
                }
                _ = tick.tick() => {
                    if self.changed() {
                        let _ = self.reload();
                    }
                    // Time left counts down: the gauge follows every tick (and so is there
                    // once the metrics recorder is, whenever that was installed).
                    set_expiry_gauge(self.live().1);
                }
            }
        }
    }
}

/// `tollgate_sip_tls_cert_expiry_seconds`: seconds until the live certificate expires
/// (negative once it has), for an alert well before carriers start refusing it.
fn set_expiry_gauge(not_after: Option<SystemTime>) -> Option<f64> {
    let t = not_after?;
    let left = match t.duration_since(SystemTime::now()) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    metrics::gauge!("tollgate_sip_tls_cert_expiry_seconds").set(left);
    Some(left)
}

/// The gauge, and a warning when a certificate is loaded with under 14 days left.
fn publish_expiry(not_after: Option<SystemTime>) {
    if let Some(left) = set_expiry_gauge(not_after) {
        if left < 14.0 * 86_400.0 {
            tracing::warn!(days_left = left / 86_400.0, "tls certificate expires soon");
        }
    }
}

/// What a verified client certificate says: its SAN DNS names and URIs, and its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub sha256: [u8; 32],
}

impl PeerIdentity {
    /// The identity of a DER certificate (its names when it parses; the fingerprint always).
    pub fn of(der: &[u8]) -> Self {
        let mut dns = Vec::new();
        let mut uris = Vec::new();
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::DNSName(d) => {
                            dns.push(d.to_ascii_lowercase());
                        }
                        x509_parser::extensions::GeneralName::URI(u) => uris.push((*u).to_owned()),
                        _ => {}
                    }
                }
            }
        }
        Self {
            dns,
            uris,
            sha256: sha256(der),
        }
    }

    /// `sha256:<hex>`: how the log names a certificate no trunk claims.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex(&self.sha256))
    }
}

/// One way a trunk names its TLS peer (`tls_peers = ["dns:…", "uri:…", "sha256:…"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMatch {
    /// A SAN dNSName, compared ignoring case; `*.example.net` matches one label.
    Dns(String),
    /// A SAN URI, compared exactly.
    Uri(String),
    /// The certificate's SHA-256 fingerprint.
    Sha256([u8; 32]),
}

impl PeerMatch {
    /// Parses `dns:NAME`, `uri:URI` or `sha256:HEX` (64 hex digits, `:` between bytes allowed).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected dns:NAME, uri:URI or sha256:HEX"))?;
        match kind {
            "dns" if !value.is_empty() && !value.contains(char::is_whitespace) => {
                Ok(PeerMatch::Dns(value.to_ascii_lowercase()))
            }
            "uri" if !value.is_empty() && !value.contains(char::is_whitespace) => {
                Ok(PeerMatch::Uri(value.to_owned()))
            }
            "sha256" => {
                let digits: String = value.chars().filter(|c| *c != ':').collect();
                let mut out = [0u8; 32];
                if digits.len() != 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("{s:?}: a SHA-256 fingerprint is 64 hex digits"));
                }
                for (i, byte) in out.iter_mut().enumerate() {
                    let pair = digits.get(2 * i..2 * i + 2).unwrap_or("00");
                    *byte = u8::from_str_radix(pair, 16).unwrap_or(0);
                }
                Ok(PeerMatch::Sha256(out))
            }
            _ => Err(format!("{s:?}: expected dns:NAME, uri:URI or sha256:HEX")),
        }
    }

    /// A certificate identity that says exactly this (for `explain --tls-peer`: the call as
    /// if that certificate had been shown).
    pub fn certificate(&self) -> PeerIdentity {
        let mut peer = PeerIdentity {
            dns: Vec::new(),
            uris: Vec::new(),
            sha256: [0; 32],
        };
        match self {
            PeerMatch::Dns(d) => peer.dns.push(match d.strip_prefix("*.") {
                Some(rest) => format!("explain.{rest}"),
                None => d.clone(),
            }),
            PeerMatch::Uri(u) => peer.uris.push(u.clone()),
            PeerMatch::Sha256(h) => peer.sha256 = *h,
        }
        peer
    }

    /// Whether the peer's certificate says this.
    pub fn matches(&self, peer: &PeerIdentity) -> bool {
        match self {
            PeerMatch::Dns(want) => peer.dns.iter().any(|d| dns_matches(want, d)),
            PeerMatch::Uri(want) => peer.uris.iter().any(|u| u == want),
            PeerMatch::Sha256(want) => *want == peer.sha256,
        }
    }
}

impl std::fmt::Display for PeerMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerMatch::Dns(d) => write!(f, "dns:{d}"),
            PeerMatch::Uri(u) => write!(f, "uri:{u}"),
            PeerMatch::Sha256(h) => write!(f, "sha256:{}", hex(h)),
        }
    }
}

/// `want` (configured, lower case, maybe `*.x`) against a certificate's name.
fn dns_matches(want: &str, name: &str) -> bool {
    match want.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => want == name,
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        crate::server::push_hex(&mut s, u64::from(*b), 2);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_matches_parse_and_compare() {
        let peer = PeerIdentity {
            dns: vec!["sbc1.carrier.example".into()],
            uris: vec!["sip:sbc1@carrier.example".into()],
            sha256: [0xab; 32],
        };
        for (text, hit) in [
            ("dns:SBC1.carrier.example", true),
            ("dns:*.carrier.example", true),
            ("dns:*.example", false),
            ("dns:sbc2.carrier.example", false),
            ("uri:sip:sbc1@carrier.example", true),
            ("uri:sip:SBC1@carrier.example", false),
            (&format!("sha256:{}", "ab".repeat(32)), true),
            (&format!("sha256:{}", vec!["AB"; 32].join(":")), true),
            (&format!("sha256:{}", "cd".repeat(32)), false),
        ] {
            let m = PeerMatch::parse(text).unwrap();
            assert_eq!(m.matches(&peer), hit, "{text}");
        }
        for bad in ["dns:", "sha256:abcd", "cn:x", "nothing", "uri:a b"] {
            assert!(PeerMatch::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            PeerMatch::parse(&format!("sha256:{}", "AB".repeat(32)))
                .unwrap()
                .to_string(),
            format!("sha256:{}", "ab".repeat(32))
        );
    }
}
