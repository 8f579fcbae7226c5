//! STI certificates: reading what x5u serves, the TNAuthList extension (RFC 8226 §9), the
//! signing key, and the chain to the configured trust anchors (rustls-webpki).

use std::sync::OnceLock;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyPurposeIdIter};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::StirError;
use crate::passport::{b64_decode, split_token, verify_es256};

/// id-pe-TNAuthList, 1.3.6.1.5.5.7.1.26, as DER OID content bytes.
const OID_TN_AUTH_LIST: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1a];
/// id-ecPublicKey 1.2.840.10045.2.1 and prime256v1 1.2.840.10045.3.1.7.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Chain signature algorithms: STI certificates are ECDSA (ATIS-1000080); RSA is not accepted.
static CHAIN_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
];

/// One entry of a TNAuthList (RFC 8226 §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TnEntry {
    /// `spc [0]`: the Service Provider Code (SHAKEN's OCN), the usual SHAKEN form.
    Spc(String),
    /// `range [1]`: `count` numbers from `start`.
    Range { start: String, count: u64 },
    /// `one [2]`: a single telephone number.
    One(String),
}

/// The telephone-number authority the certificate grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TnAuthList(pub Vec<TnEntry>);

/// An STI certificate (leaf first, then any intermediates) as x5u serves it, read once and
/// shared by every call that cites it. Key and TNAuthList problems are kept, not raised, so a
/// certificate can still be inspected and chain-checked (the reference material has a URL for
/// a TNAuthList, for one).
#[derive(Debug)]
pub struct StiCertificate {
    leaf: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    /// Uncompressed P-256 point (65 bytes) for ring, or why the key is unsupported.
    public_key: Result<Vec<u8>, StirError>,
    tn_auth_list: Result<TnAuthList, StirError>,
    /// The validity window (unix seconds, inclusive) of a chain already validated: inside it a
    /// call needs no chain work, only this comparison (signatures do not change with time).
    validated: OnceLock<(u64, u64)>,
}

impl StiCertificate {
    /// Reads PEM (one or more CERTIFICATE blocks, leaf first) or one DER certificate.
    /// An unreadable body is a 436 (the credential could not be acquired).
    pub fn parse(body: &[u8]) -> Result<Self, StirError> {
        Self::from_body(body, "")
    }

    pub(crate) fn from_body(body: &[u8], url: &str) -> Result<Self, StirError> {
        let unreadable = |reason: String| StirError::CertificateUnreadable {
            url: url.to_string(),
            reason,
        };
        let mut certs = read_certificates(body).map_err(unreadable)?.into_iter();
        let leaf = certs
            .next()
            .ok_or_else(|| unreadable("no certificate".into()))?;
        let intermediates: Vec<_> = certs.collect();
        let (_, x509) = X509Certificate::from_der(&leaf)
            .map_err(|e| unreadable(format!("leaf certificate does not parse: {e}")))?;
        let public_key = p256_key(&x509);
        let tn_auth_list = x509
            .extensions()
            .iter()
            .find(|e| e.oid.as_bytes() == OID_TN_AUTH_LIST)
            .ok_or(StirError::NoTnAuthList)
            .and_then(|ext| parse_tn_auth_list(ext.value).map_err(StirError::BadTnAuthList));
        Ok(StiCertificate {
            leaf,
            intermediates,
            public_key,
            tn_auth_list,
            validated: OnceLock::new(),
        })
    }

    /// The leaf's P-256 public key point, or why it is unsupported (437).
    pub fn public_key(&self) -> Result<&[u8], StirError> {
        self.public_key.as_deref().map_err(Clone::clone)
    }

    /// The leaf's TNAuthList, or why it is missing or malformed (437).
    pub fn tn_auth_list(&self) -> Result<&TnAuthList, StirError> {
        self.tn_auth_list.as_ref().map_err(Clone::clone)
    }

    /// Checks a compact JWS's ES256 signature with this certificate's key, without reading
    /// its claims.
    pub fn verify_signature(&self, token: &str) -> Result<(), StirError> {
        let seg = split_token(token)?;
        let signature = b64_decode(seg.signature, "signature")?;
        verify_es256(seg.signing_input.as_bytes(), &signature, self.public_key()?)
    }

    /// Checks the chain to `anchors` with validity dates at `now` (unix seconds).
    pub(crate) fn check_chain(
        &self,
        anchors: &[TrustAnchor<'static>],
        now: u64,
    ) -> Result<(), StirError> {
        if let Some(&(from, until)) = self.validated.get() {
            if (from..=until).contains(&now) {
                return Ok(());
            }
        }
        let ee = EndEntityCert::try_from(&self.leaf)
            .map_err(|e| StirError::Untrusted(format!("leaf certificate: {e}")))?;
        let path = ee
            .verify_for_usage(
                CHAIN_ALGS,
                anchors,
                &self.intermediates,
                UnixTime::since_unix_epoch(Duration::from_secs(now)),
                AnyEku,
                None,
                None,
            )
            .map_err(|e| chain_error(e, now))?;

        // Remember the window the path is valid in: the intersection of its certificates'.
        let mut window = validity(&self.leaf);
        for der in path.intermediate_certificates().map(|c| c.der()) {
            let (from, until) = validity(&der);
            window = (window.0.max(from), window.1.min(until));
        }
        let _ = self.validated.set(window);
        Ok(())
    }
}

/// The uncompressed point of an EC P-256 subject public key.
fn p256_key(x509: &X509Certificate<'_>) -> Result<Vec<u8>, StirError> {
    let spki = x509.public_key();
    if spki.algorithm.algorithm.as_bytes() != OID_EC_PUBLIC_KEY {
        return Err(StirError::UnsupportedKey(format!(
            "key algorithm {}",
            spki.algorithm.algorithm
        )));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if curve.as_ref().map(|c| c.as_bytes()) != Some(OID_P256) {
        return Err(StirError::UnsupportedKey(format!(
            "curve {}",
            curve.map_or_else(|| "missing".to_string(), |c| c.to_id_string())
        )));
    }
    let point = spki.subject_public_key.data.to_vec();
    if point.len() != 65 || point.first() != Some(&4) {
        return Err(StirError::UnsupportedKey(
            "P-256 point is not 65-byte uncompressed".into(),
        ));
    }
    Ok(point)
}

/// SHAKEN leaf certificates carry no TLS EKU (ATIS-1000080 leaves it out, some CAs add their
/// own): EKU says nothing about STI use, so any EKU set, or none, is accepted. What makes the
/// certificate an STI credential is the chain to the STI-PA anchors and the TNAuthList.
struct AnyEku;

impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        // Still reject a malformed EKU extension.
        for id in iter {
            id?;
        }
        Ok(())
    }
}

fn chain_error(e: webpki::Error, now: u64) -> StirError {
    match e {
        webpki::Error::CertExpired { not_after, .. } => StirError::CertExpired {
            not_after: not_after.as_secs(),
            now,
        },
        webpki::Error::CertNotValidYet { not_before, .. } => StirError::CertNotYetValid {
            not_before: not_before.as_secs(),
            now,
        },
        webpki::Error::UnknownIssuer => {
            StirError::Untrusted("no path to a configured trust anchor".into())
        }
        other => StirError::Untrusted(other.to_string()),
    }
}

/// notBefore/notAfter of a certificate in unix seconds; an unparsable one gets an empty window
/// (so nothing is cached on its account).
fn validity(der: &CertificateDer<'_>) -> (u64, u64) {
    match X509Certificate::from_der(der) {
        Ok((_, c)) => {
            let v = c.validity();
            (
                u64::try_from(v.not_before.timestamp()).unwrap_or(0),
                u64::try_from(v.not_after.timestamp()).unwrap_or(0),
            )
        }
        Err(_) => (1, 0),
    }
}

/// Certificates from an x5u body or an anchor file: PEM (one or more CERTIFICATE blocks, leaf
/// first) or a single DER certificate (`application/pkix-cert`).
pub(crate) fn read_certificates(body: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let looks_pem = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| body.get(i..))
        .is_some_and(|b| b.starts_with(b"-----BEGIN"));
    if looks_pem {
        let certs = CertificateDer::pem_slice_iter(body)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad PEM: {e}"))?;
        if certs.is_empty() {
            return Err("PEM holds no CERTIFICATE block".into());
        }
        return Ok(certs);
    }
    if body.first() == Some(&0x30) {
        return Ok(vec![CertificateDer::from(body.to_vec())]);
    }
    Err("neither PEM nor a DER certificate".into())
}

/// Parses the TNAuthList extension value (RFC 8226 §9, EXPLICIT TAGS):
///
/// ```text
/// TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
/// TNEntry ::= CHOICE { spc [0] ServiceProviderCode, range [1] TelephoneNumberRange,
///                      one [2] TelephoneNumber }
/// ServiceProviderCode ::= IA5String
/// TelephoneNumberRange ::= SEQUENCE { start TelephoneNumber, count INTEGER (2..MAX), ... }
/// TelephoneNumber ::= IA5String (SIZE (1..15)) (FROM ("0123456789#*"))
/// ```
///
/// An implicitly tagged IA5String (`[0]` primitive) is also read, as some issuers encode it so.
pub fn parse_tn_auth_list(der: &[u8]) -> Result<TnAuthList, String> {
    let (tag, content, rest) = tlv(der)?;
    if tag != 0x30 {
        return Err(format!(
            "expected SEQUENCE OF TNEntry, found tag 0x{tag:02x}{}",
            if tag == 0x16 {
                " (a bare IA5String, e.g. a TNAuthList URL, is not a TNAuthList)"
            } else {
                ""
            }
        ));
    }
    if !rest.is_empty() {
        return Err("trailing bytes after TNAuthList".into());
    }
    let mut entries = Vec::new();
    let mut content = content;
    while !content.is_empty() {
        let (tag, inner, rest) = tlv(content)?;
        content = rest;
        let entry = match tag {
            0xa0 => TnEntry::Spc(explicit_ia5(inner)?),
            0x80 => TnEntry::Spc(ia5(inner)?),
            0xa1 => {
                let (t, seq, after) = tlv(inner)?;
                if t != 0x30 || !after.is_empty() {
                    return Err("range is not a SEQUENCE".into());
                }
                let (t, start, seq) = tlv(seq)?;
                if t != 0x16 {
                    return Err("range start is not an IA5String".into());
                }
                let (t, count, _extensions) = tlv(seq)?;
                if t != 0x02 {
                    return Err("range count is not an INTEGER".into());
                }
                TnEntry::Range {
                    start: telephone_number(start)?,
                    count: der_uint(count)?,
                }
            }
            0xa2 => TnEntry::One(telephone_number_from(&explicit_ia5(inner)?)?),
            other => return Err(format!("unknown TNEntry tag 0x{other:02x}")),
        };
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err("empty TNAuthList".into());
    }
    Ok(TnAuthList(entries))
}

/// One DER TLV: (tag, content, rest). Single-byte tags only (all TNAuthList needs).
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte DER tag".into());
    }
    let (&len0, rest) = rest.split_first().ok_or("truncated DER length")?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 {
            return Err("unsupported DER length".into());
        }
        let (bytes, rest) = rest.split_at_checked(n).ok_or("truncated DER length")?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len).ok_or("truncated DER value")?;
    Ok((tag, content, rest))
}

fn explicit_ia5(inner: &[u8]) -> Result<String, String> {
    let (t, v, after) = tlv(inner)?;
    if t != 0x16 || !after.is_empty() {
        return Err(format!("expected IA5String, found tag 0x{t:02x}"));
    }
    ia5(v)
}

fn ia5(v: &[u8]) -> Result<String, String> {
    if !v.is_ascii() {
        return Err("IA5String is not ASCII".into());
    }
    String::from_utf8(v.to_vec()).map_err(|e| e.to_string())
}

fn telephone_number(v: &[u8]) -> Result<String, String> {
    telephone_number_from(&ia5(v)?)
}

fn telephone_number_from(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 15
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || c == '#' || c == '*')
    {
        return Err(format!("{s:?} is not a TelephoneNumber"));
    }
    Ok(s.to_string())
}

fn der_uint(v: &[u8]) -> Result<u64, String> {
    if v.is_empty() || v.len() > 9 || v.first().is_some_and(|b| b & 0x80 != 0) {
        return Err("range count is not a small positive INTEGER".into());
    }
    let n = v.iter().fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
    u64::try_from(n).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spc_explicit_and_implicit() {
        // 30 08 A0 06 16 04 "709J": the usual SHAKEN form.
        let der = [0x30, 0x08, 0xa0, 0x06, 0x16, 0x04, b'7', b'0', b'9', b'J'];
        assert_eq!(
            parse_tn_auth_list(&der).unwrap(),
            TnAuthList(vec![TnEntry::Spc("709J".into())])
        );
        let der = [0x30, 0x06, 0x80, 0x04, b'7', b'0', b'9', b'J'];
        assert_eq!(
            parse_tn_auth_list(&der).unwrap(),
            TnAuthList(vec![TnEntry::Spc("709J".into())])
        );
    }

    #[test]
    fn range_and_one() {
        let mut der = vec![0x30, 0x00];
        // [1] { SEQUENCE { IA5 "12025550100", INTEGER 100 } }
        let start = b"12025550100";
        let seq_len = 2 + start.len() + 3;
        der.extend([
            0xa1,
            (seq_len + 2) as u8,
            0x30,
            seq_len as u8,
            0x16,
            start.len() as u8,
        ]);
        der.extend(start);
        der.extend([0x02, 0x01, 100]);
        // [2] IA5 "12025550199"
        let one = b"12025550199";
        der.extend([0xa2, (one.len() + 2) as u8, 0x16, one.len() as u8]);
        der.extend(one);
        der[1] = (der.len() - 2) as u8;
        assert_eq!(
            parse_tn_auth_list(&der).unwrap(),
            TnAuthList(vec![
                TnEntry::Range {
                    start: "12025550100".into(),
                    count: 100
                },
                TnEntry::One("12025550199".into()),
            ])
        );
    }

    #[test]
    fn rejects_url_empty_and_garbage() {
        let url = b"\x16\x05https";
        assert!(parse_tn_auth_list(url).unwrap_err().contains("IA5String"));
        assert!(parse_tn_auth_list(&[0x30, 0x00]).is_err());
        assert!(parse_tn_auth_list(&[0x30, 0x05, 0xa0]).is_err());
        assert!(parse_tn_auth_list(&[0x30, 0x02, 0xa5, 0x00]).is_err());
        assert!(parse_tn_auth_list(&[]).is_err());
    }

    #[test]
    fn read_certificates_rejects_junk() {
        assert!(read_certificates(b"hello").is_err());
        assert!(
            read_certificates(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }
}
