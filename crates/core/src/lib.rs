//! Tollgate's domain: call facts, numbers and decisions. Pure: no async, no I/O, no clock.
//!
//! Everything the pipeline knows about a call is a plain value defined here, so every rule
//! that reads it can be unit-tested without a socket.

mod classify;
mod clid;
mod facts;
mod geo;
mod identity;
mod intel;
mod metadata;
mod number;
mod problem;
mod queue;
mod secret;
mod shared;

pub use classify::{Classifier, ClassifierError, NumberInfo, NumberKind};
pub use clid::{
    validate as validate_cli, CliAction, CliCheck, CliError, CliPattern, CliPolicy, CliRule,
    CliVerdict, PolicyOutcome, Unapproved,
};
pub use facts::{
    AniCandidate, AniSource, Arrival, Attestation, CallFacts, CallInfo, CallerHistory,
    CallerProfile, Candidates, CompactString, Decision, DecisionAction, DnisCandidate, DnisSource,
    LookupStatus, Privacy, RejectCause, Rejection, RiskAssessment, RiskLevel, RiskSignal, Target,
    Transport, UriScheme, Verification,
};
pub use geo::{caller_zone, zone_for, GeoError, GeoInfo, Geography, ZoneChoice};
pub use identity::{IdentityHeader, IdentityValue};
pub use intel::{CliConfig, CliRejection, IntelError, NumberIntel};
pub use metadata::MetadataError;
pub use number::{NumberPlan, PartyNumber, PlanError, RegionPlan, Withheld, E164};
pub use problem::{Problem, Problems};
pub use queue::{InvalidQueueName, QueueName};
pub use secret::Secret;
pub use shared::{SharedStr, Skills};

/// A boxed future, so the seams between the engine's parts (the CRM directory, the risk stores
/// and verifier, the admin API) stay object-safe and adapters can be chosen from config. The
/// one definition; core itself runs no future.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
