//! The embedded velocity store: bounded, in process, the same semantics as Redis.
//!
//! One entry per ANI holds that ANI's recent calls as 12-byte events (time, Call-ID hash,
//! dialed-number hash), so the ANI + DNIS counts come from the same entry; one entry per
//! NPA-NXX holds the exchange's callers, one event per ANI at its latest call (the ANI's
//! digits in the event's two 32-bit fields: exact, no hash), so its counts are distinct
//! callers. A redialer's event is found by its previous call's time (from its ANI entry, a
//! binary search); a new caller's absence costs a scan of the exchange's entry, at most its
//! cap (10,001 events by default), usually a few. Entries sit in 16 shards (a short mutex each, never held
//! across an await), each an index plus a slab with an intrusive least-recently-seen list:
//! - at most `max_keys` entries: a new key evicts the least recently seen one;
//! - at most `max_events` events: past it the least recently seen entries go;
//! - events older than the longest window are dropped, and entries whose newest call is that
//!   old are freed as calls come in;
//! - per entry at most `cap` events (one more than the largest threshold).
//!
//! An entry is 32 bytes in its shard's slab (a spilled event vector is boxed) plus about 10 in
//! the index, which holds 4-byte slab positions and reads keys from the slab. Measured
//! (`tests/memory_footprint.rs`, RSS of a release-like run): about 60 bytes per ANI seen once
//! with the exchanges' events, so 1 million ANIs take about 60 MB; each further remembered call
//! of a key adds 12 bytes (plus vector slack). The worst case is bounded by
//! `max_keys × ~60 B + max_events × ~16 B` (defaults: ≈ 60 MB + ≈ 64 MB).
//!
//! [`MemoryVelocity::sweep`] (the server runs it every `[risk.memory] sweep_ms`) frees the
//! entries whose calls have all left the longest window, drops the old events of the rest, and
//! rebuilds a shard's slab and index once most of it is free, so the memory goes back after a
//! flood of callers even when no further call arrives.
//!
//! Verified ANIs live in one space, every ANI the engine does not believe (unverified or
//! untrusted, told apart by two key bits) in a second one with its own bounds and its own
//! caller history, so a spoofed flood can neither raise a verified caller's counts nor evict
//! them; the worst case above is per space.
//!
//! [`MemoryVelocity::peek_now`] computes what [`MemoryVelocity::record_now`] would return on a
//! copy of the entries it reads, and changes nothing (not even recency).
//!
//! Call-ID dedup is decided on the ANI entry (a repeated Call-ID means the same ANI): a
//! duplicate adds to no count. Call-IDs are kept as 32-bit hashes under a per-process random
//! key, so two different calls of one ANI collide with odds of about n²/2³³ (n calls of that
//! ANI in the longest window), which would count one call too few.

use std::hash::BuildHasher;

// Keyed per process like std's SipHash, at a fraction of its cost per call.
use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::{Caller, Caps, MemoryHistory, Observation, Trust, VelocityCounts, VelocityStore};
use crate::error::RiskError;
use crate::{unix_secs, BoxFuture};

const NIL: u32 = u32::MAX;
/// NPA-NXX keys live beside ANI keys (< 10^15 < 2^50) without colliding.
const NPA_TAG: u64 = 1 << 62;
/// Bits 60-61 of a key: the [`Trust`] level (0 for verified numbers).
const TRUST_SHIFT: u32 = 60;
const NUMBER_MASK: u64 = (1 << TRUST_SHIFT) - 1;
const SHARDS: usize = 16;
/// Entries whose calls all left the longest window, freed per call (amortised cleanup).
const EXPIRE_PER_CALL: usize = 2;
/// Entries one sweep frees under one shard lock before letting calls in.
pub const SWEEP_BATCH: usize = 4096;
/// Repeat-caller memory when the config does not say (a day).
const DEFAULT_HISTORY_TTL_S: u64 = 86_400;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Event {
    /// Unix seconds.
    at: u32,
    call: u32,
    /// 0 for calls without a dialed number. On NPA-NXX entries `call` and `dnis` are the
    /// low and high halves of the caller's digits.
    dnis: u32,
}

/// Most keys see one call: that one lives inline, without a heap allocation.
#[derive(Debug)]
enum Events {
    One(Event),
    /// Sorted by time, oldest first. Boxed, so an entry is 32 bytes, not 40: most entries
    /// never spill, and 8 bytes on each of a million entries is 8 MB.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Event>>),
}

impl Events {
    fn as_slice(&self) -> &[Event] {
        match self {
            Events::One(e) => std::slice::from_ref(e),
            Events::Many(v) => v,
        }
    }

    fn newest(&self) -> u32 {
        self.as_slice().last().map_or(0, |e| e.at)
    }

    fn spill(&self) -> usize {
        match self {
            Events::One(_) => 0,
            // The box holds the vector's 24-byte header: two events' worth.
            Events::Many(v) => v.capacity() + 2,
        }
    }

    /// Applies what one call does to this entry; returns (a repeated Call-ID, events added).
    fn apply(&mut self, ev: Event, add: Add) -> (bool, usize) {
        match add {
            Add::Dedup => {
                if self.as_slice().iter().any(|e| e.call == ev.call) {
                    (true, 0)
                } else {
                    self.insert(ev);
                    (false, 1)
                }
            }
            Add::Replace(hint) => {
                let same = |e: &Event| e.call == ev.call && e.dnis == ev.dnis;
                let evs = self.as_slice();
                // The caller's event is at its previous call's time (unless calls raced or
                // its ANI entry was evicted: then scan from the newest end); a caller with no
                // earlier call in the window has none.
                let found = match hint {
                    Hint::First => None,
                    Hint::At(t) => {
                        let from = evs.partition_point(|e| e.at < t);
                        let to = evs.partition_point(|e| e.at <= t);
                        (from..to)
                            .find(|&i| evs.get(i).is_some_and(same))
                            .or_else(|| evs.iter().rposition(same))
                    }
                    Hint::Unknown => evs.iter().rposition(same),
                };
                match found {
                    Some(i) => {
                        self.replace(i, ev);
                        (false, 0)
                    }
                    None => {
                        self.insert(ev);
                        (false, 1)
                    }
                }
            }
            Add::No => (false, 0),
        }
    }

    /// Replaces the event at `i` with `e`, keeping time order.
    fn replace(&mut self, i: usize, e: Event) {
        match self {
            Events::One(a) => *a = e,
            Events::Many(v) => {
                if i < v.len() {
                    v.remove(i);
                }
                let pos = v.iter().rposition(|x| x.at <= e.at).map_or(0, |p| p + 1);
                v.insert(pos, e);
            }
        }
    }

    fn insert(&mut self, e: Event) {
        match self {
            Events::One(a) => {
                let a = *a;
                *self = Events::Many(Box::new(if a.at <= e.at { vec![a, e] } else { vec![e, a] }));
            }
            Events::Many(v) => {
                // Calls arrive in time order but threads race: insert from the back.
                let pos = v.iter().rposition(|x| x.at <= e.at).map_or(0, |p| p + 1);
                v.insert(pos, e);
            }
        }
    }

    /// Drops every event at or before `cutoff` now (the sweep: no batching); keeps at least
    /// one (an entry with none left is freed by the sweep itself, from the list's tail).
    fn trim_before(&mut self, cutoff: u32) -> usize {
        let Events::Many(v) = self else { return 0 };
        let old = v
            .partition_point(|e| e.at <= cutoff)
            .min(v.len().saturating_sub(1));
        v.drain(..old);
        if let [only] = v.as_slice() {
            *self = Events::One(*only);
        } else if v.capacity() > 8 && v.capacity() > 2 * v.len() {
            v.shrink_to_fit();
        }
        old
    }

    /// Drops events at or before `cutoff`, then the oldest past `cap`, once at least
    /// [`batch`]`(cap)` of them are due; returns how many went.
    ///
    /// Dropping from the front of a vector moves the rest, so dropping one event per call
    /// would cost a busy exchange (10,000 events) a 120 kB move per call. In batches the cost
    /// is a few bytes per call; the extra events are never counted (they are older than every
    /// window, and counts read at most `cap`, see [`capped`]).
    fn trim(&mut self, cutoff: Option<u32>, cap: usize) -> usize {
        let Events::Many(v) = self else { return 0 };
        let old = cutoff.map_or(0, |c| v.partition_point(|e| e.at <= c));
        let over = v.len().saturating_sub(old).saturating_sub(cap.max(1));
        let n = old + over;
        if n == 0 || (n < batch(cap) && n < v.len()) {
            return 0;
        }
        v.drain(..n);
        if v.capacity() > 8 && v.capacity() > 4 * v.len() {
            v.shrink_to(v.len() * 2);
        }
        if let [only] = v.as_slice() {
            *self = Events::One(*only);
        }
        n
    }
}

/// Key → slab position. The table holds only the 4-byte positions and reads each key from the
/// slab: 5 bytes a bucket where a map of (u64, u32) pairs takes 17 (1 million keys: about
/// 10 MB instead of 35).
#[derive(Debug, Default)]
struct Index {
    table: hashbrown::HashTable<u32>,
    hasher: RandomState,
}

impl Index {
    fn key_at(nodes: &[Node], i: u32) -> Option<u64> {
        nodes.get(usize::try_from(i).ok()?).map(|n| n.key)
    }

    fn get(&self, key: u64, nodes: &[Node]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.table
            .find(h, |&i| Self::key_at(nodes, i) == Some(key))
            .copied()
    }

    /// `nodes[at]` must hold `key` already (a resize rehashes every entry from the slab).
    fn insert(&mut self, key: u64, at: u32, nodes: &[Node]) {
        let h = self.hasher.hash_one(key);
        let hasher = &self.hasher;
        self.table.insert_unique(h, at, |&i| {
            Self::key_at(nodes, i).map_or(0, |k| hasher.hash_one(k))
        });
    }

    fn remove(&mut self, key: u64, nodes: &[Node]) {
        let h = self.hasher.hash_one(key);
        if let Ok(e) = self
            .table
            .find_entry(h, |&i| Self::key_at(nodes, i) == Some(key))
        {
            e.remove();
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }
}

#[derive(Debug)]
struct Node {
    key: u64,
    prev: u32,
    next: u32,
    events: Events,
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    keys: usize,
    events: usize,
}

#[derive(Debug)]
struct Shard {
    index: Index,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Most recently seen.
    head: u32,
    /// Least recently seen: evicted first.
    tail: u32,
    events: usize,
    /// Capacity of all spilled event vectors, for the byte estimate.
    spill: usize,
    evictions: u64,
    /// Entries freed by [`MemoryVelocity::sweep`] (all their calls older than every window).
    expired: u64,
    /// When an entry last went for the key or event budget (0: never): until the longest
    /// window has passed since, an ANI without an entry may still have an exchange event.
    pressure_at: u32,
}

/// What one call does to one entry.
#[derive(Clone, Copy)]
enum Add {
    /// Add the event unless its Call-ID is already there (the ANI entry decides dedup).
    Dedup,
    /// The call is new: replace this caller's event with it, or add it (NPA-NXX entries: one
    /// event per caller).
    Replace(Hint),
    /// Only read the counts (the call is a duplicate).
    No,
}

/// Where an exchange entry holds the caller's event, as its ANI entry tells.
#[derive(Clone, Copy)]
enum Hint {
    /// At the caller's previous call's time.
    At(u32),
    /// Nowhere counted: the ANI has no earlier call and no entry was evicted for the budget
    /// within the longest window (an older event is outside every window).
    First,
    /// An entry was evicted for the budget recently: it may be anywhere.
    Unknown,
}

impl Shard {
    fn new() -> Self {
        Self {
            index: Index::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            events: 0,
            spill: 0,
            evictions: 0,
            expired: 0,
            pressure_at: 0,
        }
    }

    fn node(&self, i: u32) -> Option<&Node> {
        self.nodes.get(usize::try_from(i).ok()?)
    }

    fn node_mut(&mut self, i: u32) -> Option<&mut Node> {
        self.nodes.get_mut(usize::try_from(i).ok()?)
    }

    fn unlink(&mut self, i: u32) {
        let Some((prev, next)) = self.node(i).map(|n| (n.prev, n.next)) else {
            return;
        };
        match self.node_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.node_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let head = self.head;
        if let Some(n) = self.node_mut(i) {
            n.prev = NIL;
            n.next = head;
        }
        match self.node_mut(head) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    fn evict_tail(&mut self) {
        let i = self.tail;
        if i == NIL {
            return;
        }
        self.unlink(i);
        let Some(n) = self.node_mut(i) else { return };
        let key = n.key;
        let events = std::mem::replace(&mut n.events, Events::One(Event::default()));
        self.events -= events.as_slice().len();
        self.spill -= events.spill();
        self.index.remove(key, &self.nodes);
        self.free.push(i);
        self.evictions += 1;
    }

    fn expire(&mut self, cutoff: Option<u32>) {
        let Some(cutoff) = cutoff else { return };
        for _ in 0..EXPIRE_PER_CALL {
            match self.node(self.tail) {
                Some(n) if n.events.newest() <= cutoff => {
                    self.evict_tail();
                    self.evictions -= 1;
                    self.expired += 1;
                }
                _ => break,
            }
        }
    }

    /// Adds (or not) `ev` to `key`'s entry and hands its events to `count`; true when the
    /// Call-ID was already there.
    #[allow(clippy::too_many_arguments)]
    fn touch<R>(
        &mut self,
        key: u64,
        ev: Event,
        add: Add,
        cutoff: Option<u32>,
        cap: usize,
        lim: Limits,
        count: impl FnOnce(&[Event]) -> R,
    ) -> (R, bool) {
        self.expire(cutoff);
        let i = match self.index.get(key, &self.nodes) {
            Some(i) => {
                self.unlink(i);
                self.push_front(i);
                i
            }
            None => {
                if self.index.len() >= lim.keys {
                    self.pressure_at = ev.at;
                    self.evict_tail();
                }
                let node = Node {
                    key,
                    prev: NIL,
                    next: NIL,
                    events: Events::One(ev),
                };
                let i = match self.free.pop() {
                    Some(i) => {
                        if let Some(slot) = self.node_mut(i) {
                            *slot = node;
                        }
                        i
                    }
                    None => {
                        self.nodes.push(node);
                        u32::try_from(self.nodes.len() - 1).unwrap_or(NIL)
                    }
                };
                self.index.insert(key, i, &self.nodes);
                self.push_front(i);
                self.events += 1;
                let r = count(std::slice::from_ref(&ev));
                self.enforce_budget(i, lim, ev.at);
                return (r, false);
            }
        };
        let Some(n) = self.nodes.get_mut(usize::try_from(i).unwrap_or(usize::MAX)) else {
            return (count(&[]), false);
        };
        let before = n.events.spill();
        let (dup, added) = n.events.apply(ev, add);
        let removed = n.events.trim(cutoff, cap);
        let after = n.events.spill();
        let r = count(n.events.as_slice());
        self.events = self.events + added - removed;
        self.spill = self.spill + after - before;
        self.enforce_budget(i, lim, ev.at);
        (r, dup)
    }

    /// What [`Shard::touch`] would hand to `count`, computed on a copy: nothing changes.
    fn peek<R>(
        &self,
        key: u64,
        ev: Event,
        add: Add,
        count: impl FnOnce(&[Event]) -> R,
    ) -> (R, bool) {
        let Some(n) = self.index.get(key, &self.nodes).and_then(|i| self.node(i)) else {
            return (count(std::slice::from_ref(&ev)), false);
        };
        let mut copy = Events::Many(Box::new(n.events.as_slice().to_vec()));
        let (dup, _) = copy.apply(ev, add);
        (count(copy.as_slice()), dup)
    }

    /// Frees up to `max` entries from the least recently seen end whose newest call is at or
    /// before `cutoff`; returns how many went (fewer than `max`: none is left).
    fn sweep(&mut self, cutoff: u32, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.node(self.tail) {
                Some(node) if node.events.newest() <= cutoff => {
                    self.evict_tail();
                    self.evictions -= 1;
                    self.expired += 1;
                    n += 1;
                }
                _ => break,
            }
        }
        n
    }

    /// Drops, from every entry left, the events at or before `cutoff` (outside every window),
    /// which a call would trim only in batches and only when it touches the entry.
    fn drop_old(&mut self, cutoff: u32) {
        let mut removed = 0;
        let mut spill_delta: isize = 0;
        for n in &mut self.nodes {
            let Events::Many(v) = &n.events else { continue };
            if v.first().is_none_or(|e| e.at > cutoff) {
                continue;
            }
            let before = n.events.spill();
            removed += n.events.trim_before(cutoff);
            spill_delta += n.events.spill() as isize - before as isize;
        }
        self.events -= removed;
        self.spill = self.spill.saturating_add_signed(spill_delta);
    }

    /// Gives back the slab and index memory of freed entries once most of the slab is free:
    /// the live entries move to a new slab in recency order (the list stays what it was).
    fn compact(&mut self) {
        let live = self.index.len();
        if self.nodes.len() <= 64 || live * 4 > self.nodes.len() {
            return;
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(live);
        let mut index = Index::default();
        let mut i = self.head;
        while let Some(n) = self.node_mut(i) {
            let next = n.next;
            let events = std::mem::replace(&mut n.events, Events::One(Event::default()));
            let at = u32::try_from(nodes.len()).unwrap_or(NIL);
            nodes.push(Node {
                key: n.key,
                prev: if at == 0 { NIL } else { at - 1 },
                next: at.saturating_add(1),
                events,
            });
            index.insert(n.key, at, &nodes);
            i = next;
        }
        if let Some(last) = nodes.last_mut() {
            last.next = NIL;
        }
        self.head = if nodes.is_empty() { NIL } else { 0 };
        self.tail = u32::try_from(nodes.len())
            .ok()
            .and_then(|n| n.checked_sub(1))
            .unwrap_or(NIL);
        self.nodes = nodes;
        self.index = index;
        self.free = Vec::new();
    }

    fn enforce_budget(&mut self, current: u32, lim: Limits, now: u32) {
        while self.events > lim.events && self.tail != current && self.tail != NIL {
            self.pressure_at = now;
            self.evict_tail();
        }
    }

    fn approx_bytes(&self) -> usize {
        let cap = self.index.table.capacity();
        let buckets = if cap == 0 {
            0
        } else {
            (cap * 8 / 7).next_power_of_two()
        };
        buckets * (std::mem::size_of::<u32>() + 1)
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.free.capacity() * std::mem::size_of::<u32>()
            + self.spill * std::mem::size_of::<Event>()
    }
}

/// Counters and size of a [`MemoryVelocity`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// ANI and NPA-NXX entries.
    pub keys: usize,
    /// Calls remembered across all entries.
    pub events: usize,
    /// Heap bytes by capacity (index, slab, spilled events, caller history); RSS tracks it
    /// (see the test).
    pub approx_bytes: usize,
    pub evictions: u64,
    /// Entries freed because all their calls left every window (by calls or the sweep).
    pub expired: u64,
}

/// What one [`MemoryVelocity::sweep`] freed, and what is left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Entries whose calls had all left the longest window.
    pub keys_freed: usize,
    /// Caller-history entries past the TTL (or of an evicted queue name).
    pub history_dropped: usize,
    pub store: MemoryStats,
    /// Callers remembered, both spaces.
    pub history_callers: usize,
    /// Queue names interned, both spaces.
    pub queue_names: usize,
}

/// One space's entries and caller history.
#[derive(Debug)]
struct Space {
    shards: Box<[Mutex<Shard>]>,
    history: MemoryHistory,
}

impl Space {
    fn new(shards: usize, history: MemoryHistory) -> Self {
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::new())).collect(),
            history,
        }
    }
}

/// The in-memory [`VelocityStore`].
#[derive(Debug)]
pub struct MemoryVelocity {
    windows: Vec<u32>,
    max_window: u32,
    caps: Caps,
    limits: Limits,
    /// Verified ANIs, then every ANI not believed: separate bounds, separate history.
    spaces: [Space; 2],
    /// Picks a key's shard. foldhash's quality variant: the fast one's bits 32-35 over this
    /// store's sequential numeric keys were seen to crowd a few shards (up to 179,000 early
    /// evictions for a million keys), so the shard pick gets the extra mixing round.
    hasher: foldhash::quality::RandomState,
    calls: AtomicU64,
}

impl MemoryVelocity {
    /// `windows` in seconds; `max_keys` and `max_events` bound the whole store.
    pub fn new(windows: Vec<u32>, caps: Caps, max_keys: usize, max_events: usize) -> Self {
        Self::with_shards(windows, caps, max_keys, max_events, SHARDS)
    }

    /// With one shard, eviction is exactly least-recently-seen over the whole store; with more,
    /// it is per shard (keys spread evenly by a keyed hash).
    pub fn with_shards(
        windows: Vec<u32>,
        caps: Caps,
        max_keys: usize,
        max_events: usize,
        shards: usize,
    ) -> Self {
        let shards = shards.clamp(1, max_keys.max(1));
        let per = |total: usize| total.div_ceil(shards).max(1);
        Self {
            max_window: windows.iter().copied().max().unwrap_or(0),
            windows,
            caps,
            limits: Limits {
                keys: per(max_keys),
                events: per(max_events),
            },
            spaces: [0, 1]
                .map(|_| Space::new(shards, MemoryHistory::new(max_keys, DEFAULT_HISTORY_TTL_S))),
            hasher: foldhash::quality::RandomState::default(),
            calls: AtomicU64::new(0),
        }
    }

    /// How long a routed call is remembered for repeat-caller rules (0: not at all); the
    /// history holds at most `max_keys` callers per space.
    pub fn with_history_ttl(self, ttl_s: u64, max_keys: usize) -> Self {
        self.with_history(ttl_s, max_keys, super::history::DEFAULT_MAX_QUEUE_NAMES)
    }

    /// Caller history kept `ttl_s` (0: not at all), for at most `max_callers` callers and
    /// `max_queue_names` distinct queue names per space (`[risk.memory] max_history`,
    /// `max_queue_names`).
    pub fn with_history(mut self, ttl_s: u64, max_callers: usize, max_queue_names: usize) -> Self {
        for s in &mut self.spaces {
            s.history = MemoryHistory::with_names(max_callers, ttl_s, max_queue_names);
        }
        self
    }

    fn space(&self, trust: Trust) -> &Space {
        let [verified, not_believed] = &self.spaces;
        match trust {
            Trust::Verified => verified,
            Trust::Unverified | Trust::Untrusted => not_believed,
        }
    }

    fn shard<'s>(&self, space: &'s Space, key: u64) -> MutexGuard<'s, Shard> {
        let h = self.hasher.hash_one(key);
        let n = space.shards.len().max(1);
        let i = usize::try_from((h >> 32) % n as u64).unwrap_or(0);
        #[allow(clippy::expect_used)]
        let m = space
            .shards
            .get(i)
            .expect("with_shards builds at least one shard and i < len");
        // A panic while holding the lock leaves consistent-enough counters: keep counting.
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one call and returns its counts (the same as [`VelocityStore::record`], sync).
    pub fn record_now(&self, obs: Observation<'_>) -> VelocityCounts {
        self.observe(obs, true)
    }

    /// What [`MemoryVelocity::record_now`] would return for `obs`, this call included,
    /// without changing the store (the same as [`VelocityStore::peek`], sync).
    pub fn peek_now(&self, obs: Observation<'_>) -> VelocityCounts {
        self.observe(obs, false)
    }

    fn observe(&self, obs: Observation<'_>, write: bool) -> VelocityCounts {
        let now = u32::try_from(unix_secs(obs.now)).unwrap_or(u32::MAX);
        let cutoff = now.checked_sub(self.max_window);
        let space = self.space(obs.trust);
        let level = trust_bits(obs.trust);
        let number = obs
            .ani
            .digits()
            .parse::<u64>()
            .unwrap_or_else(|_| self.hasher.hash_one(obs.ani.digits()))
            & NUMBER_MASK;
        let ani_key = number | level;
        let dnis = obs
            .dnis
            .map(|d| (self.hasher.hash_one(("dnis", d)) as u32) | 1);
        let ev = Event {
            at: now,
            call: self.hasher.hash_one(obs.call_id) as u32,
            dnis: dnis.unwrap_or(0),
        };
        let windows = &self.windows;
        // The ANI's entry carries the ANI + DNIS counts too, and always exists: it decides
        // Call-ID dedup for the exchange's count.
        let ani_cap = self.caps.ani.max(self.caps.ani_dnis).max(1) as usize;
        let dnis = dnis.filter(|_| self.caps.ani_dnis > 0);
        let count_ani = |evs: &[Event]| {
            let previous = evs.iter().rev().find(|e| e.call != ev.call).map(|e| e.at);
            let evs = capped(evs, ani_cap);
            let ani = windows.iter().map(|&w| since(evs, now, w)).collect();
            let by_dnis = dnis.map(|d| {
                windows
                    .iter()
                    .map(|&w| {
                        let from = now
                            .checked_sub(w)
                            .map_or(0, |c| evs.partition_point(|e| e.at <= c));
                        let n = evs
                            .get(from..)
                            .unwrap_or_default()
                            .iter()
                            .filter(|e| e.dnis == d)
                            .count();
                        u32::try_from(n).unwrap_or(u32::MAX)
                    })
                    .collect()
            });
            ((ani, by_dnis), previous)
        };
        let mut ani_shard = self.shard(space, ani_key);
        let (((ani, ani_dnis), previous), dup) = if write {
            ani_shard.touch(
                ani_key,
                ev,
                Add::Dedup,
                cutoff,
                ani_cap,
                self.limits,
                count_ani,
            )
        } else {
            ani_shard.peek(ani_key, ev, Add::Dedup, count_ani)
        };
        let hint = match previous {
            Some(t) => Hint::At(t),
            None if ani_shard.pressure_at == 0
                || now.saturating_sub(ani_shard.pressure_at) >= self.max_window =>
            {
                Hint::First
            }
            None => Hint::Unknown,
        };
        drop(ani_shard);
        let npa_cap = self.caps.npa_nxx as usize;
        let npa_nxx = obs.npa_nxx.filter(|_| npa_cap > 0).map(|(npa, nxx)| {
            let key = NPA_TAG | level | (u64::from(npa) * 1000 + u64::from(nxx));
            // The caller itself, exactly: its digits split over the two 32-bit fields.
            let ev = Event {
                at: now,
                call: number as u32,
                dnis: (number >> 32) as u32,
            };
            let add = if dup { Add::No } else { Add::Replace(hint) };
            let count = |evs: &[Event]| {
                let evs = capped(evs, npa_cap);
                windows.iter().map(|&w| since(evs, now, w)).collect()
            };
            let mut shard = self.shard(space, key);
            let (counts, _) = if write {
                shard.touch(key, ev, add, cutoff, npa_cap, self.limits, count)
            } else {
                shard.peek(key, ev, add, count)
            };
            counts
        });
        if write
            && self
                .calls
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(4096)
        {
            let s = self.stats();
            self.publish(&s);
        }
        VelocityCounts {
            ani,
            ani_dnis,
            npa_nxx,
            history: space.history.get(obs.ani, obs.trust, i64::from(now)),
        }
    }

    /// Frees every entry whose calls have all left the longest window, and every caller-history
    /// entry past its TTL, then gives the freed tables' memory back (slabs compacted, tables
    /// shrunk). Calls free two stale entries each as they come; this frees the rest when calls
    /// stop, so memory falls once the windows have passed. Locks one shard at a time, for at
    /// most [`SWEEP_BATCH`] entries (calls wait no longer than that); the server runs it every
    /// `[risk.memory] sweep_ms`.
    pub fn sweep(&self, now: SystemTime) -> SweepReport {
        let now_s = u32::try_from(unix_secs(now)).unwrap_or(u32::MAX);
        let mut r = SweepReport::default();
        if let Some(cutoff) = now_s.checked_sub(self.max_window) {
            for m in self.spaces.iter().flat_map(|sp| sp.shards.iter()) {
                loop {
                    let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                    let n = g.sweep(cutoff, SWEEP_BATCH);
                    r.keys_freed += n;
                    if n < SWEEP_BATCH {
                        g.drop_old(cutoff);
                        g.compact();
                        break;
                    }
                }
            }
        }
        for sp in &self.spaces {
            let h = sp.history.sweep(i64::from(now_s));
            r.history_dropped += h.dropped;
            r.history_callers += h.callers;
            r.queue_names += h.queue_names;
        }
        r.store = self.stats();
        self.publish(&r.store);
        metrics::gauge!("tollgate_risk_history_callers").set(r.history_callers as f64);
        metrics::gauge!("tollgate_risk_history_queue_names").set(r.queue_names as f64);
        r
    }

    fn publish(&self, s: &MemoryStats) {
        metrics::gauge!("tollgate_risk_memory_keys").set(s.keys as f64);
        metrics::gauge!("tollgate_risk_memory_events").set(s.events as f64);
        metrics::gauge!("tollgate_risk_memory_bytes").set(s.approx_bytes as f64);
    }

    /// Callers remembered for repeat-caller rules, both spaces.
    pub fn history_len(&self) -> usize {
        self.spaces.iter().map(|sp| sp.history.len()).sum()
    }

    /// Both spaces together.
    pub fn stats(&self) -> MemoryStats {
        let mut s = MemoryStats::default();
        for m in self.spaces.iter().flat_map(|sp| sp.shards.iter()) {
            let g = m.lock().unwrap_or_else(|e| e.into_inner());
            s.keys += g.index.len();
            s.events += g.events;
            s.approx_bytes += g.approx_bytes();
            s.evictions += g.evictions;
            s.expired += g.expired;
        }
        for sp in &self.spaces {
            s.approx_bytes += sp.history.approx_bytes();
        }
        s
    }

    /// Whether the verified `ani` (E.164 digits) is still tracked.
    pub fn tracks(&self, ani: &str) -> bool {
        let space = self.space(Trust::Verified);
        ani.parse::<u64>().is_ok_and(|k| {
            let g = self.shard(space, k);
            g.index.get(k, &g.nodes).is_some()
        })
    }
}

/// The key bits of a trust level (0 for verified numbers).
fn trust_bits(t: Trust) -> u64 {
    let level: u64 = match t {
        Trust::Verified => 0,
        Trust::Unverified => 1,
        Trust::Untrusted => 2,
    };
    level << TRUST_SHIFT
}

/// How many due events [`Events::trim`] lets gather before it drops them: one sixteenth of
/// the cap, so a key holds at most about 6 % more events than its cap.
fn batch(cap: usize) -> usize {
    cap / 16 + 1
}

/// A key holds the newest `cap` events and up to a batch more; counting only the newest `cap`
/// keeps every count what it would be with exactly `cap` held.
fn capped(evs: &[Event], cap: usize) -> &[Event] {
    evs.get(evs.len().saturating_sub(cap.max(1))..)
        .unwrap_or(evs)
}

/// Events newer than `now - window`.
fn since(evs: &[Event], now: u32, window: u32) -> u32 {
    let n = match now.checked_sub(window) {
        Some(c) => evs.len() - evs.partition_point(|e| e.at <= c),
        None => evs.len(),
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl VelocityStore for MemoryVelocity {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn windows(&self) -> &[u32] {
        &self.windows
    }

    fn record<'a>(
        &'a self,
        obs: Observation<'a>,
    ) -> BoxFuture<'a, Result<VelocityCounts, RiskError>> {
        Box::pin(std::future::ready(Ok(self.record_now(obs))))
    }

    fn peek<'a>(
        &'a self,
        obs: Observation<'a>,
    ) -> BoxFuture<'a, Result<VelocityCounts, RiskError>> {
        Box::pin(std::future::ready(Ok(self.peek_now(obs))))
    }

    fn remember<'a>(
        &'a self,
        caller: &'a Caller,
        queue: &'a str,
        now: std::time::SystemTime,
    ) -> BoxFuture<'a, Result<(), RiskError>> {
        let at = i64::try_from(unix_secs(now)).unwrap_or(i64::MAX);
        self.space(caller.trust)
            .history
            .put(&caller.ani, caller.trust, queue, at);
        Box::pin(std::future::ready(Ok(())))
    }

    fn sweep(&self, now: SystemTime) -> Option<SweepReport> {
        Some(MemoryVelocity::sweep(self, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use tollgate_core::E164;

    const T0: u64 = 1_700_000_000;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + s)
    }

    fn obs<'a>(call: &'a str, ani: &'a E164, dnis: &'a str, t: u64) -> Observation<'a> {
        Observation {
            call_id: call,
            ani,
            dnis: Some(dnis),
            npa_nxx: Some((212, 555)),
            now: at(t),
            trust: Trust::Verified,
        }
    }

    fn store() -> MemoryVelocity {
        MemoryVelocity::new(vec![60, 3600, 86_400], Caps::default(), 1000, 10_000)
    }

    #[test]
    fn node_is_small() {
        // The per-key cost in the crate docs rests on this.
        assert!(
            std::mem::size_of::<Node>() <= 32,
            "{}",
            std::mem::size_of::<Node>()
        );
        assert_eq!(std::mem::size_of::<Event>(), 12);
    }

    #[test]
    fn counts_per_window_and_dimension() {
        let s = store();
        let a = E164::from_digits("12125551212").unwrap();
        let b = E164::from_digits("12125550000").unwrap();
        s.record_now(obs("c1", &a, "18005550100", 0));
        s.record_now(obs("c2", &a, "18005550100", 30));
        s.record_now(obs("c3", &a, "18005550199", 100));
        s.record_now(obs("c4", &b, "18005550100", 100));
        let c = s.record_now(obs("c5", &a, "18005550100", 4000));
        assert_eq!(c.ani, vec![1, 1, 4]);
        assert_eq!(c.ani_dnis, Some(vec![1, 1, 3]));
        assert_eq!(c.npa_nxx, Some(vec![1, 1, 2]), "two callers, five calls");
        // The window is half-open: a call exactly `window` old has left it.
        let c = s.record_now(obs("c6", &a, "18005550100", 4060));
        assert_eq!(c.ani[0], 1);
        let c = s.record_now(obs("c7", &a, "18005550100", 86_400 + 30));
        assert_eq!(c.ani, vec![1, 1, 4], "c1 and c2 have left the day window");
    }

    #[test]
    fn the_same_call_id_counts_once_everywhere() {
        let s = store();
        let a = E164::from_digits("12125551212").unwrap();
        let first = s.record_now(obs("retry-me", &a, "18005550100", 0));
        let again = s.record_now(obs("retry-me", &a, "18005550100", 5));
        assert_eq!(first, again);
        assert_eq!(again.ani, vec![1, 1, 1]);
        assert_eq!(again.npa_nxx, Some(vec![1, 1, 1]));
        assert_eq!(s.stats().events, 2, "one event per key");
    }

    #[test]
    fn a_flood_is_capped_per_key() {
        let caps = Caps {
            ani: 11,
            ani_dnis: 11,
            npa_nxx: 21,
        };
        let s = MemoryVelocity::new(vec![60, 3600], caps, 100, 10_000);
        let a = E164::from_digits("12125551212").unwrap();
        let mut last = VelocityCounts::default();
        for i in 0..500 {
            last = s.record_now(obs(&format!("c{i}"), &a, "18005550100", i / 10));
        }
        assert_eq!(last.ani, vec![11, 11]);
        assert_eq!(last.npa_nxx, Some(vec![1, 1]), "one caller");
        // The ANI holds its cap plus at most a trim batch less one; the exchange one event.
        let held = s.stats().events;
        assert!((12..12 + batch(11)).contains(&held), "{held}");
        for i in 0..500 {
            let b = E164::from_digits(&format!("1212555{i:04}")).unwrap();
            last = s.record_now(obs(&format!("d{i}"), &b, "18005550100", 50));
        }
        assert_eq!(last.npa_nxx, Some(vec![21, 21]), "distinct callers, capped");
    }

    /// Trimming in batches must count exactly as holding the newest `cap` events would.
    #[test]
    fn batched_trim_counts_as_an_exact_cap() {
        let caps = Caps {
            ani: 7,
            ani_dnis: 7,
            npa_nxx: 13,
        };
        let windows = vec![5, 20, 50];
        let s = MemoryVelocity::with_shards(windows.clone(), caps, 100, 100_000, 1);
        let anis: Vec<E164> = ["12125550001", "12125550002", "12125550003"]
            .iter()
            .map(|d| E164::from_digits(d).unwrap())
            .collect();
        let dnis = ["18005550100", "18005550101", "18005550102"];
        // (time, ani, dnis) of every call so far: the reference model.
        let mut seen: Vec<(u64, usize, usize)> = Vec::new();
        let (mut t, mut x) = (0u64, 12_345u64);
        for i in 0..3000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            t += (x >> 60) % 4;
            let (a, d) = (((x >> 40) % 3) as usize, ((x >> 20) % 3) as usize);
            seen.push((t, a, d));
            let c = s.record_now(Observation {
                call_id: &format!("c{i}"),
                ani: &anis[a],
                dnis: Some(dnis[d]),
                npa_nxx: Some((212, 555)),
                now: at(t),
                trust: Trust::Verified,
            });
            let newest = |cap: usize, keep: &dyn Fn(&(u64, usize, usize)) -> bool| {
                let all: Vec<_> = seen.iter().filter(|e| keep(e)).collect();
                all[all.len().saturating_sub(cap)..].to_vec()
            };
            let count = |held: &[&(u64, usize, usize)], w: u64, d: Option<usize>| {
                held.iter()
                    .filter(|e| e.0 + w > t && d.is_none_or(|d| e.2 == d))
                    .count() as u32
            };
            let by_ani = newest(7, &|e| e.1 == a);
            // The exchange: each caller once, at its latest call, the newest 13 callers.
            let mut latest: Vec<(u64, usize, usize)> = (0..3)
                .filter_map(|x| seen.iter().rev().find(|e| e.1 == x).copied())
                .collect();
            latest.sort();
            let by_npa: Vec<&(u64, usize, usize)> =
                latest[latest.len().saturating_sub(13)..].iter().collect();
            let want_ani: Vec<u32> = windows
                .iter()
                .map(|&w| count(&by_ani, w.into(), None))
                .collect();
            let want_dnis: Vec<u32> = windows
                .iter()
                .map(|&w| count(&by_ani, w.into(), Some(d)))
                .collect();
            let want_npa: Vec<u32> = windows
                .iter()
                .map(|&w| count(&by_npa, w.into(), None))
                .collect();
            assert_eq!(c.ani, want_ani, "call {i}");
            assert_eq!(c.ani_dnis, Some(want_dnis), "call {i}");
            assert_eq!(c.npa_nxx, Some(want_npa), "call {i}");
        }
    }

    #[test]
    fn peek_counts_as_record_would_and_changes_nothing() {
        let s = MemoryVelocity::with_shards(vec![60, 3600], Caps::default(), 3, 1000, 1);
        let a = E164::from_digits("12125551212").unwrap();
        let b = E164::from_digits("12125550000").unwrap();
        s.record_now(obs("c1", &a, "18005550100", 0));
        s.record_now(obs("c2", &b, "18005550100", 1));
        let before = s.stats();
        let p = s.peek_now(obs("c3", &a, "18005550100", 2));
        assert_eq!(s.stats(), before);
        assert_eq!(p, s.peek_now(obs("c3", &a, "18005550100", 2)));
        // A peek at an unknown caller evicts nobody (3 keys: a, b, the exchange).
        let c = E164::from_digits("12125559999").unwrap();
        assert_eq!(s.peek_now(obs("x", &c, "18005550100", 2)).ani, vec![1, 1]);
        assert!(s.tracks("12125551212") && s.tracks("12125550000"));
        assert_eq!(s.stats(), before);
        assert_eq!(p, s.record_now(obs("c3", &a, "18005550100", 2)));
        assert_eq!(p.npa_nxx, Some(vec![2, 2]), "a again: still two callers");
        // A repeated Call-ID: the peek adds nothing, as record would not.
        let again = s.peek_now(obs("c3", &a, "18005550100", 3));
        assert_eq!(again, s.record_now(obs("c3", &a, "18005550100", 3)));
        assert_eq!(again.ani, vec![2, 2]);
    }

    #[test]
    fn a_caller_whose_ani_entry_was_evicted_still_counts_once_in_its_exchange() {
        // Three keys: the exchange (touched by every call) and two ANIs.
        let s = MemoryVelocity::with_shards(vec![3600], Caps::default(), 3, 1000, 1);
        let n: Vec<E164> = (0..4)
            .map(|i| E164::from_digits(&format!("121255500{i:02}")).unwrap())
            .collect();
        for (i, a) in n.iter().enumerate() {
            s.record_now(obs(&format!("c{i}"), a, "18005550100", i as u64));
        }
        assert!(
            !s.tracks("12125550000"),
            "the first caller's entry was evicted"
        );
        let c = s.record_now(obs("again", &n[0], "18005550100", 10));
        assert_eq!(c.ani, vec![1], "a fresh ANI entry");
        assert_eq!(c.npa_nxx, Some(vec![4]), "still four callers, not five");
        // With its ANI entry in place, the previous call's time finds the event.
        let c = s.record_now(obs("again-2", &n[0], "18005550100", 11));
        assert_eq!((c.ani, c.npa_nxx), (vec![2], Some(vec![4])));
    }

    #[test]
    fn each_trust_level_counts_in_its_own_keys() {
        let s = store();
        let a = E164::from_digits("12125551212").unwrap();
        let spoof = |id: &'static str, t| Observation {
            trust: Trust::Untrusted,
            ..obs(id, &a, "18005550100", t)
        };
        for (i, id) in ["s1", "s2", "s3"].into_iter().enumerate() {
            let c = s.record_now(spoof(id, i as u64));
            assert_eq!(c.ani[0], i as u32 + 1);
        }
        let unverified = s.record_now(Observation {
            trust: Trust::Unverified,
            ..obs("f1", &a, "18005550100", 4)
        });
        assert_eq!(unverified.ani, vec![1, 1, 1]);
        let real = s.record_now(obs("r1", &a, "18005550100", 5));
        assert_eq!(real.ani, vec![1, 1, 1]);
        assert_eq!(real.npa_nxx, Some(vec![1, 1, 1]));
        s.space(Trust::Untrusted)
            .history
            .put(&a, Trust::Untrusted, "spoofed", T0 as i64 + 6);
        assert_eq!(s.record_now(obs("r2", &a, "18005550100", 7)).history, None);
        assert!(s.record_now(spoof("s4", 8)).history.is_some());
    }

    #[test]
    fn dimensions_without_thresholds_are_not_counted() {
        let caps = Caps {
            ani: 6,
            ani_dnis: 0,
            npa_nxx: 0,
        };
        let s = MemoryVelocity::new(vec![60], caps, 100, 1000);
        let a = E164::from_digits("12125551212").unwrap();
        let c = s.record_now(obs("c1", &a, "18005550100", 0));
        let c2 = s.record_now(obs("c2", &a, "18005550100", 1));
        assert_eq!((c.ani, c2.ani), (vec![1], vec![2]));
        assert_eq!((c2.ani_dnis, c2.npa_nxx), (None, None));
        assert_eq!(s.stats().keys, 1, "no exchange entry");
    }

    #[test]
    fn least_recently_seen_is_evicted_at_the_key_cap() {
        let s = MemoryVelocity::with_shards(vec![60], Caps::default(), 3, 1000, 1);
        let n: Vec<E164> = (0..4)
            .map(|i| E164::from_digits(&format!("4420700000{i}")).unwrap())
            .collect();
        let o = |i: usize, t: u64| Observation {
            call_id: "x",
            ani: &n[i],
            dnis: None,
            npa_nxx: None,
            now: at(t),
            trust: Trust::Verified,
        };
        s.record_now(o(0, 0));
        s.record_now(o(1, 1));
        s.record_now(o(2, 2));
        s.record_now(o(0, 3)); // 0 seen again: 1 is now the least recently seen
        s.record_now(o(3, 4));
        assert!(s.tracks("44207000000"));
        assert!(!s.tracks("44207000001"));
        assert!(s.tracks("44207000002") && s.tracks("44207000003"));
        assert_eq!(s.stats().keys, 3);
        assert_eq!(s.stats().evictions, 1);
    }

    #[test]
    fn the_event_budget_evicts_whole_entries() {
        let s = MemoryVelocity::with_shards(vec![3600], Caps::default(), 100, 10, 1);
        for k in 0..5u64 {
            let a = E164::from_digits(&format!("4420700000{k}")).unwrap();
            for c in 0..4u64 {
                s.record_now(Observation {
                    call_id: &format!("{k}-{c}"),
                    ani: &a,
                    dnis: None,
                    npa_nxx: None,
                    now: at(k * 10 + c),
                    trust: Trust::Verified,
                });
            }
        }
        let st = s.stats();
        assert!(st.events <= 10, "{st:?}");
        assert!(s.tracks("44207000004"), "the newest key survives");
        assert!(!s.tracks("44207000000"));
    }

    #[test]
    fn stale_entries_are_freed_as_calls_arrive() {
        let s = MemoryVelocity::with_shards(vec![60], Caps::default(), 100, 1000, 1);
        for k in 0..4u64 {
            let a = E164::from_digits(&format!("4420700000{k}")).unwrap();
            s.record_now(Observation {
                call_id: "c",
                ani: &a,
                dnis: None,
                npa_nxx: None,
                now: at(k),
                trust: Trust::Verified,
            });
        }
        let a = E164::from_digits("442070000099").unwrap();
        for t in [200, 201] {
            s.record_now(Observation {
                call_id: &t.to_string(),
                ani: &a,
                dnis: None,
                npa_nxx: None,
                now: at(t),
                trust: Trust::Verified,
            });
        }
        assert_eq!(s.stats().keys, 1, "four stale ANIs freed, two per call");
    }

    #[test]
    fn the_sweep_frees_what_left_every_window_and_gives_the_memory_back() {
        let s = MemoryVelocity::new(vec![10, 60], Caps::default(), 1_000_000, 4_000_000)
            .with_history(60, 1_000_000, 16);
        let anis: Vec<E164> = (0..20_000u64)
            .map(|i| E164::from_digits(&format!("1212555{i:04}")).unwrap())
            .collect();
        for (i, a) in anis.iter().enumerate() {
            s.record_now(obs(&format!("c{i}"), a, "18005550100", 0));
            s.space(Trust::Verified)
                .history
                .put(a, Trust::Verified, "support", T0 as i64);
        }
        let late = E164::from_digits("19175550000").unwrap();
        s.record_now(obs("late", &late, "18005550100", 30));
        let full = s.stats();
        assert_eq!(full.keys, 20_002, "20,001 ANIs and their exchange");
        let r = s.sweep(at(59));
        assert_eq!(r.keys_freed, 0, "inside the longest window: kept");
        assert_eq!(r.history_callers, 20_000);
        let r = s.sweep(at(61));
        assert_eq!(r.keys_freed, 20_000, "{r:?}");
        assert_eq!(r.history_dropped, 20_000);
        assert_eq!(
            r.store.keys, 2,
            "the caller of t=30 and its exchange are left"
        );
        assert_eq!(
            r.store.events, 2,
            "the exchange's callers of t=0 were dropped"
        );
        assert!(
            r.store.approx_bytes < full.approx_bytes / 20,
            "{} of {}",
            r.store.approx_bytes,
            full.approx_bytes
        );
        assert!(s.tracks("19175550000") && !s.tracks("12125550000"));
        // What is left still counts and dedups as before the sweep (the slab was rebuilt).
        let c = s.record_now(obs("late", &late, "18005550100", 62));
        assert_eq!(c.ani, vec![0, 1]);
        let c = s.record_now(obs("late-2", &late, "18005550100", 63));
        assert_eq!((c.ani, c.npa_nxx), (vec![1, 2], Some(vec![1, 1])));
        assert_eq!(s.sweep(at(200)).store.keys, 0);
    }
}
