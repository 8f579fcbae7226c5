//! Sliding-window call counts per ANI, per ANI + dialed number and per NANP NPA-NXX.
//!
//! A call is one event, identified by its Call-ID: recording the same Call-ID again (a carrier
//! retrying the INVITE after a failover) returns the counts without adding to them. SIP
//! retransmissions never get here; the transaction layer answers them. Every window counts the
//! calls whose time `t` satisfies `now - window < t`, this call included; a signal fires when a
//! count is *over* the window's threshold.
//!
//! The NPA-NXX dimension counts distinct callers, not calls: each ANI counts once per window,
//! at its latest call, so one redialer moves its exchange's count by one.
//!
//! Every observation carries its [`Trust`]: a verified ANI (a trusted trunk's identity header)
//! counts in the number's own keys; an ANI the engine does not believe (From, `screen=no`, an
//! untrusted source) counts in keys of its own namespace, never in a verified caller's, so
//! spoofed traffic cannot raise a real caller's velocity or invent their history.

mod history;
mod memory;
mod redis_store;

use std::time::SystemTime;

use tollgate_core::{CallFacts, CallerHistory, E164};

use crate::error::RiskError;
use crate::BoxFuture;

pub use history::MemoryHistory;
pub use history::{HistorySweep, DEFAULT_MAX_QUEUE_NAMES};
pub use memory::{MemoryStats, MemoryVelocity, SweepReport, SWEEP_BATCH};
pub use redis_store::{call_member, history_key, keys_for, RedisVelocity};

/// How far the engine believes a call's ANI; each level counts in its own keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Trust {
    /// A trusted trunk's identity header (PAI, screened RPID): the number's own keys.
    #[default]
    Verified,
    /// A trusted trunk, but the ANI came from From or an unscreened header.
    Unverified,
    /// Not a trusted trunk: only From counted.
    Untrusted,
}

impl Trust {
    /// `Verified` only when the trunk is trusted and the ANI came from its identity headers.
    pub fn of(facts: &CallFacts) -> Self {
        match (facts.trusted, facts.ani_verified) {
            (true, true) => Trust::Verified,
            (true, false) => Trust::Unverified,
            (false, _) => Trust::Untrusted,
        }
    }

    /// "verified", "unverified", "untrusted": for signals and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Verified => "verified",
            Trust::Unverified => "unverified",
            Trust::Untrusted => "untrusted",
        }
    }

    /// The Redis key part after the hash tag: none for verified numbers (their keys are what
    /// they always were), `nv:` for unverified, `u:` for untrusted.
    pub fn key_part(self) -> &'static str {
        match self {
            Trust::Verified => "",
            Trust::Unverified => "nv:",
            Trust::Untrusted => "u:",
        }
    }
}

/// The caller as the store keys it: what [`crate::RiskEngine::remember`] needs, owned, so a
/// background write can outlive the call's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub ani: E164,
    /// The ANI's NANP area code and exchange, when it is a NANP number.
    pub npa_nxx: Option<(u16, u16)>,
    pub trust: Trust,
}

impl Caller {
    /// The call's caller: `None` without an E.164 ANI (withheld, unusable, short code).
    pub fn of(facts: &CallFacts) -> Option<Self> {
        let ani = facts.ani.e164()?;
        Some(Self {
            ani: ani.clone(),
            npa_nxx: npa_nxx(facts),
            trust: Trust::of(facts),
        })
    }
}

/// The ANI's NPA-NXX (from `facts.ani_info`), for NANP numbers only.
pub(crate) fn npa_nxx(facts: &CallFacts) -> Option<(u16, u16)> {
    facts
        .ani_info
        .as_ref()
        .and_then(|i| i.npa.zip(i.nxx))
        .filter(|_| {
            facts
                .ani
                .e164()
                .is_some_and(|a| a.digits().starts_with('1'))
        })
}

/// One call as the counters see it.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    pub call_id: &'a str,
    pub ani: &'a E164,
    /// The dialed number's key (E.164 digits or a short code), when there is one.
    pub dnis: Option<&'a str>,
    /// The ANI's NANP area code and exchange (from `facts.ani_info`).
    pub npa_nxx: Option<(u16, u16)>,
    pub now: SystemTime,
    /// Which namespace the call counts in (and reads its history from).
    pub trust: Trust,
}

/// Counts per window, in the store's window order, this call included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VelocityCounts {
    pub ani: Vec<u32>,
    /// Present when the observation had a dialed number.
    pub ani_dnis: Option<Vec<u32>>,
    /// Present when the observation had an NPA-NXX: distinct callers of the exchange.
    pub npa_nxx: Option<Vec<u32>>,
    /// The ANI's previous routed call ([`VelocityStore::remember`]), read in the same round
    /// trip as the counts.
    pub history: Option<CallerHistory>,
}

/// How many calls per key a store keeps: one more than the largest threshold, so every
/// threshold decision is exact while a flood cannot grow a key without bound (counts past the
/// cap read as the cap). 0: no threshold of that dimension is set, so it is not counted at all
/// (its counts come back `None`; the ANI's own calls are always kept, they decide Call-ID
/// dedup).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub ani: u32,
    pub ani_dnis: u32,
    pub npa_nxx: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            ani: 1000,
            ani_dnis: 1000,
            npa_nxx: 10_001,
        }
    }
}

/// Where the counters live. `record` adds the call (once per Call-ID) and returns the counts;
/// `peek` returns the same counts without adding anything (explain's dry run).
pub trait VelocityStore: Send + Sync + std::fmt::Debug {
    /// "memory" or "redis", for signals, logs and metrics.
    fn kind(&self) -> &'static str;
    /// The windows, in seconds, in the order counts come back.
    fn windows(&self) -> &[u32];
    fn record<'a>(
        &'a self,
        obs: Observation<'a>,
    ) -> BoxFuture<'a, Result<VelocityCounts, RiskError>>;
    /// Exactly what `record` would return for `obs`, this call included (+1 where `record`
    /// would add it, nothing for a Call-ID already counted), with the store left unchanged:
    /// no event added, no trim, no expiry or recency moved.
    fn peek<'a>(&'a self, obs: Observation<'a>)
        -> BoxFuture<'a, Result<VelocityCounts, RiskError>>;
    /// Remembers where the caller's call was routed, for the next call's
    /// [`VelocityCounts::history`] (repeat-caller rules), in the caller's [`Trust`] namespace.
    fn remember<'a>(
        &'a self,
        caller: &'a Caller,
        queue: &'a str,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), RiskError>>;
    /// Frees what has left every window (and the history TTL) by `now` and gives its memory
    /// back: the in-memory store's background sweep. Stores that expire keys themselves
    /// (Redis) have nothing to do. `None`: nothing to sweep.
    fn sweep(&self, _now: SystemTime) -> Option<memory::SweepReport> {
        None
    }
}

/// "1m", "1h", "1d", "90s": for signal names.
pub fn window_label(secs: u32) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(window_label(60), "1m");
        assert_eq!(window_label(3600), "1h");
        assert_eq!(window_label(86_400), "1d");
        assert_eq!(window_label(90), "90s");
        assert_eq!(window_label(900), "15m");
    }
}
