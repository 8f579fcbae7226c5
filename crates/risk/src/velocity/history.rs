//! Repeat-caller memory for the in-memory store: where each ANI's last routed call went, and
//! when. Bounded: each shard keeps two generations of at most `cap / 2 / shards` entries
//! (rounded down to fill their tables, see `fill`); when
//! the current one fills, the older is dropped, so at most `cap` callers are remembered and the
//! ones dropped are those not called back since the generation before last. An entry is 16
//! bytes (the caller's key, the call's time, the queue's id); [`MemoryHistory::sweep`] drops the
//! entries past the TTL and gives their tables' memory back.
//!
//! Queue names are interned: each distinct name is stored once and entries hold its id. The
//! table of names is bounded too (`max_queue_names`): past it the least recently stored name is
//! evicted, and the callers remembered with it read as having no history (their entry is
//! dropped when next read or swept), so a rule set with ever new queue names costs a bounded
//! table, never a refusal to remember.
//!
//! Each [`Trust`] level has its own keys (the level is part of the key), so a call remembered
//! for an unverified "+X" is never the history of a verified +X.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

// Keyed per process like std's SipHash, at a fraction of its cost per call.
use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex};

use tollgate_core::{CallerHistory, E164};

use super::Trust;

const SHARDS: usize = 16;
/// Distinct queue names interned when the config does not say.
pub const DEFAULT_MAX_QUEUE_NAMES: usize = 4096;

/// One remembered call: unix seconds (u32 lasts until 2106) and the queue name's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    at: u32,
    queue: u32,
}

type Table = HashMap<u64, Entry, RandomState>;

#[derive(Debug, Default)]
struct Shard {
    current: Table,
    previous: Table,
}

/// Queue names by id and ids by name; ids are never reused, so an evicted name's id finds
/// nothing rather than another queue.
#[derive(Debug, Default)]
struct Names {
    by_name: HashMap<Arc<str>, u32, RandomState>,
    by_id: HashMap<u32, (Arc<str>, u64), RandomState>,
    /// (id, tick of that store), oldest first; a position whose tick is not the name's latest
    /// is stale (the name was stored again later, further back).
    order: VecDeque<(u32, u64)>,
    next: u32,
    tick: u64,
    evicted: u64,
}

impl Names {
    fn id(&mut self, queue: &str, cap: usize) -> u32 {
        self.tick += 1;
        let tick = self.tick;
        let id = match self.by_name.get(queue) {
            Some(&id) => id,
            None => {
                while self.by_name.len() >= cap && self.evict_oldest() {}
                let id = self.next;
                self.next = self.next.wrapping_add(1);
                let name: Arc<str> = Arc::from(queue);
                self.by_name.insert(Arc::clone(&name), id);
                self.by_id.insert(id, (name, tick));
                id
            }
        };
        if let Some((_, t)) = self.by_id.get_mut(&id) {
            *t = tick;
        }
        match self.order.back_mut() {
            // Calls to one queue in a row move nothing.
            Some((last, t)) if *last == id => *t = tick,
            _ => self.order.push_back((id, tick)),
        }
        // Stale positions pile up as names are stored again: drop them once they are most.
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let by_id = &self.by_id;
            self.order
                .retain(|(id, t)| by_id.get(id).is_some_and(|(_, latest)| latest == t));
        }
        id
    }

    /// Evicts the least recently stored name; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((id, t)) = self.order.pop_front() {
            if self.by_id.get(&id).is_some_and(|(_, latest)| *latest == t) {
                if let Some((name, _)) = self.by_id.remove(&id) {
                    self.by_name.remove(&name);
                }
                self.evicted += 1;
                return true;
            }
        }
        false
    }

    fn name(&self, id: u32) -> Option<&Arc<str>> {
        self.by_id.get(&id).map(|(n, _)| n)
    }
}

/// Last queue and time per ANI, in memory.
#[derive(Debug)]
pub struct MemoryHistory {
    shards: Box<[Mutex<Shard>]>,
    per_generation: usize,
    ttl_s: i64,
    hasher: RandomState,
    names: Mutex<Names>,
    max_names: usize,
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

/// A generation's size: `target` rounded down to what a table holds without spare room (7/8 of a
/// power of two buckets), so no table is allocated with up to half its buckets never used: the
/// default 1,000,000 callers become 917,504 (2 × 16 × 28,672) in 18 MB instead of 1,000,000 in
/// 35 MB.
fn fill(target: usize) -> usize {
    if target < 14 {
        return target.max(1);
    }
    let mut n: usize = 7;
    while n * 2 <= target {
        n *= 2;
    }
    n
}

/// Gives a table's memory back once it holds far fewer entries than it has room for.
fn shrink(t: &mut Table) {
    if t.capacity() > 64 && t.len() < t.capacity() / 4 {
        t.shrink_to_fit();
    }
}

/// What [`MemoryHistory::sweep`] found and left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistorySweep {
    /// Entries dropped: past the TTL, or of an evicted queue name.
    pub dropped: usize,
    /// Callers still remembered.
    pub callers: usize,
    /// Queue names interned.
    pub queue_names: usize,
}

impl MemoryHistory {
    /// At most `cap` callers, each forgotten `ttl_s` after the call (0: remember nothing), and
    /// [`DEFAULT_MAX_QUEUE_NAMES`] queue names.
    pub fn new(cap: usize, ttl_s: u64) -> Self {
        Self::with_names(cap, ttl_s, DEFAULT_MAX_QUEUE_NAMES)
    }

    /// At most `cap` callers and `max_names` distinct queue names (the least recently stored
    /// name is evicted past it).
    pub fn with_names(cap: usize, ttl_s: u64, max_names: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_generation: fill(cap / 2 / SHARDS),
            ttl_s: i64::try_from(ttl_s).unwrap_or(i64::MAX),
            hasher: RandomState::default(),
            names: Mutex::new(Names::default()),
            max_names: max_names.max(1),
        }
    }

    fn shard(&self, k: u64) -> Option<std::sync::MutexGuard<'_, Shard>> {
        let i = usize::try_from(self.hasher.hash_one(k) % SHARDS as u64).ok()?;
        // A panic while holding the lock leaves a consistent map: keep using it.
        self.shards
            .get(i)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The caller's last routed call, if within the TTL at `now` (unix seconds).
    pub fn get(&self, ani: &E164, trust: Trust, now: i64) -> Option<CallerHistory> {
        if self.ttl_s == 0 {
            return None;
        }
        let k = key(ani, trust);
        let e = {
            let s = self.shard(k)?;
            *s.current.get(&k).or_else(|| s.previous.get(&k))?
        };
        let at = i64::from(e.at);
        if now.saturating_sub(at) > self.ttl_s {
            return None;
        }
        let queue = self.names().name(e.queue)?.to_string();
        Some(CallerHistory {
            last_queue: queue,
            last_seen: at,
        })
    }

    /// Remembers a routed call.
    pub fn put(&self, ani: &E164, trust: Trust, queue: &str, at: i64) {
        if self.ttl_s == 0 {
            return;
        }
        let queue = self.names().id(queue, self.max_names);
        let at = u32::try_from(at.max(0)).unwrap_or(u32::MAX);
        let k = key(ani, trust);
        let Some(mut s) = self.shard(k) else { return };
        if s.current.len() >= self.per_generation && !s.current.contains_key(&k) {
            s.previous = std::mem::take(&mut s.current);
        }
        s.previous.remove(&k);
        s.current.insert(k, Entry { at, queue });
    }

    /// Drops every entry past the TTL at `now` (unix seconds) or of an evicted queue name, and
    /// shrinks tables left mostly empty. One shard locked at a time.
    pub fn sweep(&self, now: i64) -> HistorySweep {
        let mut out = HistorySweep::default();
        if self.ttl_s == 0 {
            return out;
        }
        let oldest = now.saturating_sub(self.ttl_s);
        let live: std::collections::HashSet<u32, RandomState> =
            self.names().by_id.keys().copied().collect();
        for m in self.shards.iter() {
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            let before = s.current.len() + s.previous.len();
            let keep =
                |_: &u64, e: &mut Entry| i64::from(e.at) >= oldest && live.contains(&e.queue);
            s.current.retain(keep);
            s.previous.retain(keep);
            shrink(&mut s.current);
            shrink(&mut s.previous);
            let after = s.current.len() + s.previous.len();
            out.dropped += before - after;
            out.callers += after;
        }
        out.queue_names = live.len();
        out
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

    /// Queue names interned, and how many were evicted past the cap.
    pub fn queue_names(&self) -> (usize, u64) {
        let n = self.names();
        (n.by_id.len(), n.evicted)
    }

    /// Heap bytes of the callers' tables, by capacity.
    pub fn approx_bytes(&self) -> usize {
        let per = |t: &Table| {
            let cap = t.capacity();
            if cap == 0 {
                0
            } else {
                (cap * 8 / 7).next_power_of_two() * (std::mem::size_of::<(u64, Entry)>() + 1)
            }
        };
        self.shards
            .iter()
            .map(|m| {
                let s = m.lock().unwrap_or_else(|e| e.into_inner());
                per(&s.current) + per(&s.previous)
            })
            .sum()
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

    #[test]
    fn past_the_queue_name_cap_the_least_recently_stored_name_goes() {
        let h = MemoryHistory::with_names(1000, 3600, 2);
        h.put(&n("12125550001"), V, "alpha", 10);
        h.put(&n("12125550002"), V, "beta", 11);
        h.put(&n("12125550003"), V, "alpha", 12); // alpha stored again: beta is now oldest
        h.put(&n("12125550004"), V, "gamma", 13); // a third name: beta goes, not refused
        assert_eq!(h.queue_names(), (2, 1));
        let q = |d: &str| h.get(&n(d), V, 20).map(|x| x.last_queue);
        assert_eq!(
            q("12125550004"),
            Some("gamma".into()),
            "the new name is remembered"
        );
        assert_eq!(q("12125550001"), Some("alpha".into()));
        assert_eq!(q("12125550002"), None, "its queue name was evicted");
        // A name evicted and stored again gets a new id: old entries never read as it.
        h.put(&n("12125550005"), V, "beta", 14);
        assert_eq!(q("12125550002"), None);
        assert_eq!(q("12125550005"), Some("beta".into()));
        // Storing beta again evicted alpha; the sweep drops the three entries whose name went.
        assert_eq!(q("12125550001"), None);
        let r = h.sweep(20);
        assert_eq!((r.dropped, r.callers, r.queue_names), (3, 2, 2), "{r:?}");
    }

    #[test]
    fn many_names_keep_the_name_table_bounded() {
        let h = MemoryHistory::with_names(100_000, 3600, 16);
        for i in 0..10_000u64 {
            h.put(
                &n(&format!("1212{:07}", i)),
                V,
                &format!("q{}", i % 1000),
                1,
            );
        }
        let (names, evicted) = h.queue_names();
        assert!(names <= 16, "{names}");
        assert_eq!(evicted, 10_000 - 16);
        let order = h.names().order.len();
        assert!(order <= 2 * 16 + 65, "{order}");
    }

    #[test]
    fn sweep_forgets_callers_past_the_ttl_and_gives_memory_back() {
        let h = MemoryHistory::new(1_000_000, 100);
        for i in 0..50_000u64 {
            h.put(&n(&format!("1212{:07}", i)), V, "q", 1000);
        }
        h.put(&n("12129999999"), V, "q", 1090);
        let full = h.approx_bytes();
        assert_eq!(h.sweep(1100).dropped, 0, "within the TTL");
        let r = h.sweep(1101);
        assert_eq!((r.dropped, r.callers), (50_000, 1));
        assert!(
            h.approx_bytes() < full / 10,
            "{} of {full}",
            h.approx_bytes()
        );
        assert!(h.get(&n("12129999999"), V, 1101).is_some());
    }
}
