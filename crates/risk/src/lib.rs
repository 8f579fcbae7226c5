//! Tollgate's risk engine: velocity counters, block/gray/allow lists, the STIR/SHAKEN hook and
//! one explainable score per call.
//!
//! The server builds a [`RiskEngine`] from the `[risk]` section ([`RiskConfig`]) and calls
//! [`RiskEngine::evaluate`] (or [`RiskEngine::assess`]) per call, inside the pipeline's enrich
//! deadline; explain calls [`RiskEngine::evaluate_dry`], the same code without recording the
//! call. The engine
//! - records the call in the [`VelocityStore`] (one Lua round trip to Redis, or the bounded
//!   in-memory store) and gets sliding-window counts per ANI, ANI + DNIS and distinct callers
//!   per NPA-NXX; a repeated Call-ID counts once; an ANI it does not believe ([`Trust`])
//!   counts in keys of its own, never in a verified caller's;
//! - checks the ANI against the local [`ListSnapshot`] (no I/O), refreshed in the background
//!   from the [`ListStore`] (a JSON file, or Redis hashes);
//! - asks the optional [`IdentityVerifier`] (tollgate-stir) about Identity and verstat;
//! - sums the weighted signals into a score and a level (see [`score`] for the
//!   table) and picks the answer: the block response, the verifier's rejection, the
//!   fail-closed response, a verification queue, or nothing.
//!
//! Emergency calls are assessed but never rejected; allow-listed numbers are never rejected.
//! A store that cannot answer within its deadline makes the call fail open (`degraded`, signal
//! `redis-unavailable`) or closed (the configured rejection), per policy; nothing waits longer
//! than `risk.redis.deadline_ms`.
//!
//! Memory (in-memory store, measured by RSS in `tests/memory_footprint.rs`): about 70 bytes
//! per ANI seen once, ≈ 70 MB for 1 million ANIs; 12 bytes per further remembered call.

mod admin;
mod config;
mod engine;
mod error;
mod identity;
pub mod lists;
mod redis_conn;
pub mod score;
pub mod velocity;

use std::time::{SystemTime, UNIX_EPOCH};

pub use admin::ListAdmin;
pub use config::{
    cluster_node_url, BlockConfig, LevelConfig, MemoryConfig, PolicyConfig, RedisConfig,
    ResponseConfig, RiskConfig, Secret, StoreKind, ThresholdOverride, TrunkRiskConfig,
    UntrustedMode, VelocityConfig, Weights,
};
pub use engine::{open_list_store, RiskEngine, RiskVerdict};
pub use error::{ErrorClass, RiskError};
pub use identity::{FixedIdentity, IdentityOutcome, IdentitySource, IdentityVerifier};
pub use lists::{
    FileListStore, ListEntry, ListHit, ListKind, ListSnapshot, ListStore, Lists, Pattern,
    RedisListStore,
};
pub use redis_conn::{connect as redis_connect, RedisConn};
pub use velocity::{
    Caller, MemoryVelocity, Observation, RedisVelocity, Trust, VelocityCounts, VelocityStore,
};

pub use tollgate_core::BoxFuture;

/// Whole seconds since the Unix epoch (0 before it).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
