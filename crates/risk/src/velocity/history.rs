//! Repeat-caller memory for the in-memory store: where each ANI's last routed call went, and
//! when. Bounded: each shard keeps two generations of at most `cap / 2 / shards` entries; when
//! the current one fills, the older is dropped, so at most `cap` callers are remembered and the
//! ones dropped are those not called back since the generation before last.
//!
//! Each [`Trust`] level has its own keys (the level is part of the key), so a call remembered
//! for an unverified "+X" is never the history of a verified +X.

use std::collections::HashMap;
use std::hash::BuildHasher;

// Keyed per process like std's SipHash, at a fraction of its cost per call.
use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex};

use tollgate_core::{CallerHistory, E164};

use super::Trust;

const SHARDS: usize = 16;
/// Distinct queue names shared between entries; a queue name is stored once.
const MAX_QUEUE_NAMES: usize = 4096;

#[derive(Debug, Default)]
struct Shard {
    current: HashMap<u64, (i64, Arc<str>), RandomState>,
    previous: HashMap<u64, (i64, Arc<str>), RandomState>,
}

/// Last queue and time per ANI, in memory.
#[derive(Debug)]
pub struct MemoryHistory {
    shards: Box<[Mutex<Shard>]>,
    per_generation: usize,
    ttl_s: i64,
    hasher: RandomState,
    names: Mutex<HashMap<Arc<str>, ()>>,
}

fn key(ani: &E164, trust: Trust) -> u64 {
    // E.164 has at most 15 digits (< 2^50): always fits below the trust bits.
    let n: u64 = ani.digits().parse().unwrap_or((1 << 60) - 1);
    let level = match trust {
        Trust::Verified => 0,
        Trust::Unverified => 1,
        Trust::Untrusted => 2,
    };
    n | (level << 60)
}

impl MemoryHistory {
    /// At most `cap` callers, each forgotten `ttl_s` after the call (0: remember nothing).
    pub fn new(cap: usize, ttl_s: u64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_generation: (cap / 2 / SHARDS).max(1),
            ttl_s: i64::try_from(ttl_s).unwrap_or(i64::MAX),
            hasher: RandomState::default(),
            names: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, k: u64) -> Option<std::sync::MutexGuard<'_, Shard>> {
        let i = usize::try_from(self.hasher.hash_one(k) % SHARDS as u64).ok()?;
        // A panic while holding the lock leaves a consistent map: keep using it.
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn intern(&self, queue: &str) -> Arc<str> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, ())) = names.get_key_value(queue) {
            return Arc::clone(k);
        }
        let name: Arc<str> = Arc::from(queue);
        if names.len() < MAX_QUEUE_NAMES {
            names.insert(Arc::clone(&name), ());
        }
        name
    }

    /// The caller's last routed call, if within the TTL at `now` (unix seconds).
    pub fn get(&self, ani: &E164, trust: Trust, now: i64) -> Option<CallerHistory> {
        if self.ttl_s == 0 {
            return None;
        }
        let k = key(ani, trust);
        let s = self.shard(k)?;
        let (at, queue) = s.current.get(&k).or_else(|| s.previous.get(&k))?;
        (now.saturating_sub(*at) <= self.ttl_s).then(|| CallerHistory {
            last_queue: queue.to_string(),
            last_seen: *at,
        })
    }

    /// Remembers a routed call.
    pub fn put(&self, ani: &E164, trust: Trust, queue: &str, at: i64) {
        if self.ttl_s == 0 {
            return;
        }
        let queue = self.intern(queue);
        let k = key(ani, trust);
        let Some(mut s) = self.shard(k) else { return };
        if s.current.len() >= self.per_generation && !s.current.contains_key(&k) {
            s.previous = std::mem::take(&mut s.current);
        }
        s.previous.remove(&k);
        s.current.insert(k, (at, queue));
    }

    /// Callers remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| {
                let s = m.lock().unwrap_or_else(|e| e.into_inner());
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(d: &str) -> E164 {
        E164::from_digits(d).unwrap_or_else(|| unreachable!("test number {d}"))
    }

    const V: Trust = Trust::Verified;

    #[test]
    fn each_trust_level_has_its_own_history() {
        let h = MemoryHistory::new(1000, 3600);
        h.put(&n("12125550100"), Trust::Untrusted, "spoofed", 100);
        h.put(&n("12125550100"), Trust::Unverified, "from-only", 110);
        assert_eq!(h.get(&n("12125550100"), V, 120), None);
        assert_eq!(
            h.get(&n("12125550100"), Trust::Untrusted, 120)
                .map(|h| h.last_queue),
            Some("spoofed".into())
        );
        h.put(&n("12125550100"), V, "support", 130);
        assert_eq!(
            h.get(&n("12125550100"), Trust::Unverified, 140)
                .map(|h| h.last_queue),
            Some("from-only".into())
        );
        assert_eq!(
            h.get(&n("12125550100"), V, 140).map(|h| h.last_queue),
            Some("support".into())
        );
    }

    #[test]
    fn remembers_the_last_queue_within_the_ttl() {
        let h = MemoryHistory::new(1000, 3600);
        assert_eq!(h.get(&n("12125550100"), V, 100), None);
        h.put(&n("12125550100"), V, "support", 100);
        h.put(&n("12125550100"), V, "billing", 200);
        let got = h.get(&n("12125550100"), V, 300);
        assert_eq!(
            got,
            Some(CallerHistory {
                last_queue: "billing".into(),
                last_seen: 200
            })
        );
        assert_eq!(
            h.get(&n("12125550100"), V, 200 + 3600).map(|h| h.last_seen),
            Some(200)
        );
        assert_eq!(
            h.get(&n("12125550100"), V, 201 + 3600),
            None,
            "past the TTL"
        );
        assert_eq!(h.get(&n("12125550101"), V, 300), None);
    }

    #[test]
    fn bounded() {
        let h = MemoryHistory::new(320, 3600);
        for i in 0..10_000u64 {
            h.put(&n(&format!("1212{:07}", i)), V, "q", 1);
        }
        assert!(h.len() <= 320, "{} remembered", h.len());
        // The most recent callers are still there.
        assert!(h.get(&n("12120009999"), V, 2).is_some());
    }

    #[test]
    fn ttl_zero_remembers_nothing() {
        let h = MemoryHistory::new(100, 0);
        h.put(&n("12125550100"), V, "q", 1);
        assert!(h.is_empty());
        assert_eq!(h.get(&n("12125550100"), V, 1), None);
    }
}
