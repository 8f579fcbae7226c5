//! STIR/SHAKEN for Tollgate: verifies the SHAKEN PASSporTs in RFC 8224 `Identity` headers
//! (RFC 8225, RFC 8588), and reads the carrier's `verstat`. The headers arrive parsed: the SIP
//! layer reads their parameters (`tollgate_sip::identity`) into `tollgate_core::IdentityValue`.
//!
//! The risk crate calls [`Verifier::verify`] with `CallFacts::identity`, the canonical ANI and
//! DNIS digits and the call's time, and gets a [`StirOutcome`] (attestation, verified / failed
//! / absent, origid). Failures are [`StirError`]s classified per RFC 8224 §6.2.2 so a trunk that
//! demands signed calls can answer with [`StirError::sip_response`] (428/436/437/438, 403 Stale
//! Date); by default the call is routed with the verdict as a fact (RFC 8224 leaves rejecting
//! to local policy: only trunks whose contract requires signing reject).
//!
//! Steps (RFC 8224 §6.2), cheapest first:
//! 1. `ppt` must be `shaken` (others are ignored, 428 if nothing else is left), `alg` ES256
//!    (absent means ES256, RFC 8224 §4), `info` present (436).
//! 2. JOSE header: `typ` `passport`, `alg` ES256 (437), `ppt` `shaken` (438), `x5u` == `info`
//!    (436).
//! 3. Claims: `attest` A/B/C, integer `iat`, `orig.tn`, `dest.tn` array (438).
//! 4. `iat` no older than `freshness_s` and not ahead by more than `max_future_skew_s` (403).
//! 5. `orig.tn` == ANI, `dest.tn` contains the DNIS, compared in canonical form (438).
//! 6. The certificate from x5u: host allow list and https checked before any request, fetched
//!    once per URL and cached for its Cache-Control max-age (436 when it cannot be had); EC
//!    P-256 key and a TNAuthList (437); chain to the trust anchors with validity at `now`,
//!    by rustls-webpki (437).
//! 7. ES256 over `b64u(hdr).b64u(payload)` with the raw 64-byte R‖S signature, by ring (438).
//!
//! Not done: CRL/OCSP revocation checks, the `Date` header freshness (the caller's), `ppt=div`
//! (RFC 8946) PASSporTs for retargeted calls, and a check of the TNAuthList SPC against the
//! originating carrier.

mod cert;
mod config;
mod error;
mod fetch;
mod passport;
mod verify;
mod verstat;

pub use cert::{parse_tn_auth_list, StiCertificate, TnAuthList, TnEntry};
pub use config::StirConfig;
pub use error::{ConfigError, ErrorKind, StirError};
pub use passport::{Claims, Passport, PassportHeader};
pub use tollgate_core::{IdentityHeader, IdentityValue};
pub use verify::{StirOutcome, StirVerification, VerifiedPassport, Verifier};
pub use verstat::from_verstat;
