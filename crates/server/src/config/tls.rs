//! `[sip.tls]`: the TLS listener's addresses, certificate files and client-certificate policy,
//! and each trunk's `tls_peers`. The files are read here, once: a config that passes
//! `tollgate check` is a certificate that loads, and `serve` runs what was read.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tollgate_sip::tls::{Certificates, PeerMatch, TlsError, TlsFiles};
use toml::Spanned;

use super::Errors;

/// `[sip.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Addresses to accept SIP over TLS on (5061 is SIP's TLS port).
    #[serde(default)]
    pub listen: Vec<Spanned<String>>,
    /// PEM: the node's certificate then its intermediates; relative to the config file.
    pub cert: Spanned<String>,
    /// PEM: the certificate's private key.
    pub key: Spanned<String>,
    /// PEM: CAs that client certificates must chain to. Needed for `tls_peers`.
    #[serde(default)]
    pub client_ca: Option<Spanned<String>>,
    /// Refuse handshakes without a client certificate (only with `client_ca`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// A handshake not finished within this is closed.
    #[serde(default = "d5000")]
    pub handshake_timeout_ms: u64,
    /// How often the files are checked for changes (SIGHUP reloads at once).
    #[serde(default = "d2000")]
    pub reload_poll_ms: u64,
}

const fn d5000() -> u64 {
    5000
}
const fn d2000() -> u64 {
    2000
}

/// A TLS listener ready to serve: where, and the certificate read from the files.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    pub certs: Arc<Certificates>,
    pub reload_poll: Duration,
}

/// Checks `[sip.tls]` and reads its files (relative to `base`).
pub(super) fn settings(
    errs: &mut Errors<'_>,
    tls: Option<&TlsSection>,
    base: &Path,
) -> Option<TlsSettings> {
    let tls = tls?;
    let mut listen = Vec::new();
    for a in &tls.listen {
        match a.get_ref().parse::<SocketAddr>() {
            Ok(sa) => listen.push(sa),
            Err(_) => errs.push(
                a,
                "sip.tls.listen",
                format!("{:?} is not an IP:port address", a.get_ref()),
            ),
        }
    }
    if tls.listen.is_empty() {
        errs.push(&tls.cert, "sip.tls.listen", "no address to listen on");
    }
    if tls.require_client_cert && tls.client_ca.is_none() {
        errs.push(
            &tls.cert,
            "sip.tls.require_client_cert",
            "needs sip.tls.client_ca: the CAs client certificates are checked against",
        );
    }
    for (key, v) in [
        ("sip.tls.handshake_timeout_ms", tls.handshake_timeout_ms),
        ("sip.tls.reload_poll_ms", tls.reload_poll_ms),
    ] {
        if v == 0 {
            errs.push(&tls.cert, key, "must be at least 1");
        }
    }
    let files = TlsFiles {
        cert: base.join(tls.cert.get_ref()),
        key: base.join(tls.key.get_ref()),
        client_ca: tls.client_ca.as_ref().map(|c| base.join(c.get_ref())),
        require_client_cert: tls.require_client_cert,
    };
    let certs = Certificates::new(
        files.clone(),
        Duration::from_millis(tls.handshake_timeout_ms),
    );
    match certs {
        Ok(certs) => Some(TlsSettings {
            listen,
            certs,
            reload_poll: Duration::from_millis(tls.reload_poll_ms),
        }),
        Err(e) => {
            // The key of the file at fault.
            let (at, key) = match &e {
                TlsError::ClientCa { .. } => (
                    tls.client_ca.as_ref().unwrap_or(&tls.cert),
                    "sip.tls.client_ca",
                ),
                _ if e.path() == files.key => (&tls.key, "sip.tls.key"),
                _ if Some(e.path()) == files.client_ca.as_deref() => (
                    tls.client_ca.as_ref().unwrap_or(&tls.cert),
                    "sip.tls.client_ca",
                ),
                _ => (&tls.cert, "sip.tls.cert"),
            };
            errs.push(at, key, e.to_string());
            None
        }
    }
}

/// A trunk's `tls_peers`, each `dns:NAME`, `uri:URI` or `sha256:HEX`.
pub(super) fn peers(
    errs: &mut Errors<'_>,
    list: Option<&Spanned<Vec<String>>>,
    key: &str,
    client_ca: bool,
) -> Vec<PeerMatch> {
    let Some(list) = list else {
        return Vec::new();
    };
    if !client_ca && !list.get_ref().is_empty() {
        errs.push(
            list,
            key,
            "needs sip.tls with client_ca: only a verified client certificate can name a trunk",
        );
    }
    list.get_ref()
        .iter()
        .filter_map(|p| match PeerMatch::parse(p) {
            Ok(m) => Some(m),
            Err(e) => {
                errs.push(list, key, e);
                None
            }
        })
        .collect()
}
