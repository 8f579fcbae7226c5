//! The seam for STIR/SHAKEN: the engine asks an [`IdentityVerifier`] (implemented over
//! tollgate-stir) what the call's Identity headers and upstream verstat are worth, and scores
//! the answer. This crate verifies nothing itself.

use std::fmt;
use std::time::SystemTime;

use tollgate_core::{Attestation, CallFacts, Rejection, Verification};

use crate::BoxFuture;

/// Where an identity verdict came from, for the explain trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IdentitySource {
    /// Nothing to go on: no Identity header, no (trusted) verstat.
    #[default]
    None,
    /// This node verified `facts.identity` (PASSporT signature, certificate, freshness, TNs).
    Passport,
    /// The trusted trunk's `verstat` (`TN-Validation-Passed-A`, `-Failed`, ...).
    Verstat,
}

impl IdentitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentitySource::None => "none",
            IdentitySource::Passport => "passport",
            IdentitySource::Verstat => "verstat",
        }
    }
}

/// What the verifier concluded about one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityOutcome {
    /// The attestation that verified (None when nothing verified).
    pub attestation: Option<Attestation>,
    /// Verified, failed (with the reason), or absent.
    pub verification: Verification,
    pub source: IdentitySource,
    /// A response the verifier demands instead of routing, on trunks that require signed calls
    /// (428 Use Identity Header, 436 Bad Identity Info, 437 Unsupported Credential, 438 Invalid
    /// Identity Header, 403 Stale Date). Never applied to emergency or allow-listed calls.
    pub reject: Option<Rejection>,
}

/// Verifies a call's identity: reads `facts.identity` (raw Identity headers) and
/// `facts.verstat` (only ever set from trusted trunks), and must answer within its own deadline
/// (the engine cuts it off at `identity_deadline_ms` and scores the call without it).
///
/// Implement it over tollgate-stir and hand it to
/// [`RiskEngine::with_identity_verifier`](crate::RiskEngine::with_identity_verifier).
pub trait IdentityVerifier: Send + Sync + fmt::Debug {
    fn verify<'a>(
        &'a self,
        facts: &'a CallFacts,
        now: SystemTime,
    ) -> BoxFuture<'a, IdentityOutcome>;
}

/// A verifier that always answers the same: for tests and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct FixedIdentity(pub IdentityOutcome);

impl IdentityVerifier for FixedIdentity {
    fn verify<'a>(&'a self, _: &'a CallFacts, _: SystemTime) -> BoxFuture<'a, IdentityOutcome> {
        Box::pin(std::future::ready(self.0.clone()))
    }
}
