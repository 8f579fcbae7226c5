//! Verification errors, classified by the SIP response RFC 8224 §6.2.2 gives them: 428, 436,
//! 437, 438 and 403 Stale Date.

use thiserror::Error;

/// The response class of a failure: what a trunk that demands signed calls would answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 428: no Identity header, or none with a supported `ppt`.
    UseIdentity,
    /// 436: the credential could not be acquired (no `info`, `x5u` ≠ `info`, fetch failed).
    BadIdentityInfo,
    /// 437: the credential was obtained but is untrusted or unsupported.
    UnsupportedCredential,
    /// 438: the PASSporT itself is invalid (signature, claims, orig/dest mismatch).
    InvalidIdentity,
    /// 403 "Stale Date": `iat` outside the freshness window.
    StaleDate,
}

impl ErrorKind {
    /// The status code and reason phrase for this class (RFC 8224 §6.2.2).
    pub fn sip_response(&self) -> (u16, &'static str) {
        match self {
            ErrorKind::UseIdentity => (428, "Use Identity Header"),
            ErrorKind::BadIdentityInfo => (436, "Bad Identity Info"),
            ErrorKind::UnsupportedCredential => (437, "Unsupported Credential"),
            ErrorKind::InvalidIdentity => (438, "Invalid Identity Header"),
            ErrorKind::StaleDate => (403, "Stale Date"),
        }
    }

    /// Short stable name for logs and metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::UseIdentity => "use-identity",
            ErrorKind::BadIdentityInfo => "bad-identity-info",
            ErrorKind::UnsupportedCredential => "unsupported-credential",
            ErrorKind::InvalidIdentity => "invalid-identity",
            ErrorKind::StaleDate => "stale-date",
        }
    }
}

/// Why one Identity header (or the whole request) did not verify. Each variant says which SIP
/// response it maps to through [`StirError::kind`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum StirError {
    // --- 428 ---
    #[error("no Identity header")]
    NoIdentity,
    /// RFC 8224 §6.2 step 1: headers with a `ppt` we do not handle are ignored.
    #[error("unsupported ppt {0:?} (only ppt=shaken is verified)")]
    UnsupportedPpt(Option<String>),

    // --- 436 ---
    #[error("Identity header has no info parameter")]
    MissingInfo,
    #[error("PASSporT header has no x5u")]
    MissingX5u,
    #[error("x5u {x5u:?} does not equal info {info:?}")]
    X5uMismatch { x5u: String, info: String },
    #[error("certificate URL {url:?} not allowed: {reason}")]
    UrlNotAllowed { url: String, reason: String },
    #[error("certificate fetch from {url:?} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("no certificate in the body fetched from {url:?}: {reason}")]
    CertificateUnreadable { url: String, reason: String },

    // --- 437 ---
    #[error("unsupported alg {0:?} (SHAKEN requires ES256)")]
    UnsupportedAlg(String),
    #[error("typ is {0:?}, not \"passport\"")]
    WrongTyp(String),
    #[error("certificate key is not EC P-256: {0}")]
    UnsupportedKey(String),
    #[error("certificate has no TNAuthList (1.3.6.1.5.5.7.1.26)")]
    NoTnAuthList,
    #[error("certificate TNAuthList is malformed: {0}")]
    BadTnAuthList(String),
    #[error("certificate expired (notAfter {not_after}, now {now})")]
    CertExpired { not_after: u64, now: u64 },
    #[error("certificate not yet valid (notBefore {not_before}, now {now})")]
    CertNotYetValid { not_before: u64, now: u64 },
    #[error("certificate chain is not trusted: {0}")]
    Untrusted(String),

    // --- 438 ---
    #[error("malformed Identity header: {0}")]
    Malformed(String),
    #[error("bad PASSporT claim: {0}")]
    BadClaim(String),
    #[error("PASSporT ppt {passport:?} does not equal the Identity ppt {identity:?}")]
    PptMismatch { passport: String, identity: String },
    #[error("orig.tn {passport:?} does not match the ANI {ani:?}")]
    OrigMismatch { passport: String, ani: String },
    #[error("dest.tn {passport:?} does not contain the DNIS {dnis:?}")]
    DestMismatch { passport: Vec<String>, dnis: String },
    #[error("ES256 signature does not verify: {0}")]
    BadSignature(String),

    // --- 403 Stale Date ---
    #[error("iat {iat} is {age} s old (freshness window {window} s)")]
    Stale { iat: i64, age: u64, window: u64 },
    #[error("iat {iat} is {ahead} s in the future (allowed skew {skew} s)")]
    FutureIat { iat: i64, ahead: u64, skew: u64 },
}

impl StirError {
    /// The response class (RFC 8224 §6.2.2: 428, 436, 437, 438, 403 Stale Date).
    pub fn kind(&self) -> ErrorKind {
        use StirError::*;
        match self {
            NoIdentity | UnsupportedPpt(_) => ErrorKind::UseIdentity,
            MissingInfo
            | MissingX5u
            | X5uMismatch { .. }
            | UrlNotAllowed { .. }
            | Fetch { .. }
            | CertificateUnreadable { .. } => ErrorKind::BadIdentityInfo,
            UnsupportedAlg(_)
            | WrongTyp(_)
            | UnsupportedKey(_)
            | NoTnAuthList
            | BadTnAuthList(_)
            | CertExpired { .. }
            | CertNotYetValid { .. }
            | Untrusted(_) => ErrorKind::UnsupportedCredential,
            Malformed(_)
            | BadClaim(_)
            | PptMismatch { .. }
            | OrigMismatch { .. }
            | DestMismatch { .. }
            | BadSignature(_) => ErrorKind::InvalidIdentity,
            Stale { .. } | FutureIat { .. } => ErrorKind::StaleDate,
        }
    }

    /// The status code and reason phrase for this error. A 428 for headers that were present
    /// but all of an unsupported `ppt` says "Use Supported PASSporT Format" (RFC 8224 §6.2.2).
    pub fn sip_response(&self) -> (u16, &'static str) {
        match self {
            StirError::UnsupportedPpt(_) => (428, "Use Supported PASSporT Format"),
            other => other.kind().sip_response(),
        }
    }
}

/// Why a [`crate::Verifier`] could not be built from its configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading trust anchors from {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("trust anchor file {path}: {reason}")]
    BadAnchor { path: String, reason: String },
    #[error("no trust anchor certificates found in {0}")]
    NoAnchors(String),
    #[error("building the HTTP client: {0}")]
    Http(String),
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// The `[stir]` key the problem is with, for a `file:line: stir.KEY: message` report.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::Io { .. } | ConfigError::BadAnchor { .. } | ConfigError::NoAnchors(_) => {
                "trust_anchors_dir"
            }
            ConfigError::Http(_) => "allow_http",
            ConfigError::Invalid { key, .. } => key,
        }
    }
}
