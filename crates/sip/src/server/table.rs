//! The transaction table: sharded, and bounded by entries and bytes.
//!
//! Every change goes through [`Table::insert`], [`Table::update`] and [`Table::remove`], which
//! keep the live entry count and the bytes the entries hold (keys and stored responses) in two
//! counters; the tasks that decide and time the transactions charge their own bytes to a third
//! ([`Table::hold`]) while they live. The admission check on every new request reads three
//! atomics and takes no lock.

use std::cmp::{Ordering as Order, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

const SHARDS: usize = 16;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(super) struct TxKey {
    pub(super) branch: Box<str>,
    pub(super) sent_by: Box<str>,
    pub(super) invite: bool,
}

impl TxKey {
    fn weight(&self) -> usize {
        self.branch.len() + self.sent_by.len()
    }
}

#[derive(Debug)]
pub(super) enum TxState {
    /// Deciding; holds the 100 Trying once sent.
    Proceeding {
        provisional: Option<Arc<[u8]>>,
        cancel: Arc<Notify>,
        cancelled: bool,
    },
    Completed {
        response: Arc<[u8]>,
        acked: Arc<Notify>,
    },
    Confirmed,
    /// Non-INVITE final response, kept for retransmissions (timer J).
    Done {
        response: Arc<[u8]>,
    },
}

impl TxState {
    fn weight(&self) -> usize {
        let held = match self {
            TxState::Proceeding { provisional, .. } => provisional.as_ref().map_or(0, |p| p.len()),
            TxState::Completed { response, .. } | TxState::Done { response } => response.len(),
            TxState::Confirmed => 0,
        };
        // The map's own slot: key, state and the hash table's control byte, roughly.
        held + std::mem::size_of::<(TxKey, TxState)>() + 1
    }
}

/// Why a new transaction is refused ([`Table::full`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Full {
    Entries,
    Bytes,
}

impl Full {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Full::Entries => "transactions",
            Full::Bytes => "transaction-bytes",
        }
    }
}

#[derive(Debug)]
pub(super) struct Table {
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    /// Bytes of the tasks that decide and time the transactions ([`Table::hold`]): their
    /// futures (the call's facts and the decision's state among them) and tokio's task cells.
    tasks: Arc<AtomicUsize>,
    max_entries: usize,
    max_bytes: usize,
}

/// One shard: its transactions, and the keys waiting to leave ([`Table::expire_after`]) in a
/// min-heap by deadline.
#[derive(Debug, Default)]
struct Shard {
    map: HashMap<TxKey, TxState>,
    expiring: BinaryHeap<Reverse<Expiring>>,
}

/// A key and when it leaves; ordered by the time alone.
#[derive(Debug)]
struct Expiring {
    at: Instant,
    key: TxKey,
}

impl PartialEq for Expiring {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Expiring {}

impl PartialOrd for Expiring {
    fn partial_cmp(&self, other: &Self) -> Option<Order> {
        Some(self.cmp(other))
    }
}

impl Ord for Expiring {
    fn cmp(&self, other: &Self) -> Order {
        self.at.cmp(&other.at)
    }
}

/// What a key waiting in a shard's expiry queue costs beyond its entry: the heap slot and the
/// key's second copy.
fn expiring_weight(key: &TxKey) -> usize {
    key.weight() + std::mem::size_of::<Expiring>()
}

/// A task's bytes, charged to [`Table`] while the task lives (released on drop, also when the
/// runtime drops the task unfinished).
#[derive(Debug)]
pub(super) struct Held {
    tasks: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.tasks.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Table {
    pub(super) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            hasher: RandomState::new(),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            tasks: Arc::default(),
            max_entries,
            max_bytes,
        }
    }

    fn shard(&self, key: &TxKey) -> std::sync::MutexGuard<'_, Shard> {
        let idx = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        // idx < SHARDS always; shard 0 stands in so the path has no panic branch.
        let [first, ..] = &self.shards;
        lock(self.shards.get(idx).unwrap_or(first))
    }

    fn account(&self, before: usize, after: usize) {
        if after >= before {
            self.bytes.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Whether a new entry would pass a bound (an existing key's replacement always may).
    pub(super) fn full(&self) -> Option<Full> {
        if self.entries.load(Ordering::Relaxed) >= self.max_entries {
            Some(Full::Entries)
        } else if self.bytes() >= self.max_bytes {
            Some(Full::Bytes)
        } else {
            None
        }
    }

    /// Inserts or replaces `key`'s state.
    pub(super) fn insert(&self, key: &TxKey, state: TxState) {
        let after = key.weight() + state.weight();
        let old = self.shard(key).map.insert(key.clone(), state);
        match old {
            Some(old) => self.account(key.weight() + old.weight(), after),
            None => {
                self.entries.fetch_add(1, Ordering::Relaxed);
                self.account(0, after);
            }
        }
    }

    /// Runs `f` on `key`'s state, if any, keeping the byte count right whatever `f` changes.
    pub(super) fn update<R>(&self, key: &TxKey, f: impl FnOnce(&mut TxState) -> R) -> Option<R> {
        let mut shard = self.shard(key);
        let state = shard.map.get_mut(key)?;
        let before = state.weight();
        let r = f(state);
        let after = state.weight();
        drop(shard);
        self.account(before, after);
        Some(r)
    }

    pub(super) fn remove(&self, key: &TxKey) {
        let mut shard = self.shard(key);
        self.take(&mut shard, key);
    }

    /// Removes `key` from its (locked) shard and its bytes and count from the totals.
    fn take(&self, shard: &mut Shard, key: &TxKey) -> bool {
        let Some(old) = shard.map.remove(key) else {
            return false;
        };
        self.entries.fetch_sub(1, Ordering::Relaxed);
        self.account(key.weight() + old.weight(), 0);
        true
    }

    /// Removes `key` once `delay` has passed (at the next [`Table::expire`] after it), without a
    /// task waiting for it: a confirmed INVITE transaction waits out timer I here, a stateless
    /// answer its T4 and a non-INVITE final response timer J. Keys leave in deadline order,
    /// whatever delays they were given.
    pub(super) fn expire_after(&self, key: TxKey, delay: std::time::Duration) {
        let weight = expiring_weight(&key);
        let at = Instant::now() + delay;
        self.shard(&key)
            .expiring
            .push(Reverse(Expiring { at, key }));
        self.account(0, weight);
    }

    /// Removes the transactions whose [`Table::expire_after`] time has come; returns how many.
    pub(super) fn expire(&self, now: Instant) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut shard = lock(shard);
            while shard.expiring.peek().is_some_and(|e| e.0.at <= now) {
                let Some(Reverse(Expiring { key, .. })) = shard.expiring.pop() else {
                    break;
                };
                self.account(expiring_weight(&key), 0);
                if self.take(&mut shard, &key) {
                    removed += 1;
                }
            }
        }
        removed
    }

    pub(super) fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Bytes held: the entries' and the tasks'. The bound of [`Table::full`] is on this sum.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
            .load(Ordering::Relaxed)
            .saturating_add(self.task_bytes())
    }

    /// The part of [`Table::bytes`] that the tasks hold.
    pub(super) fn task_bytes(&self) -> usize {
        self.tasks.load(Ordering::Relaxed)
    }

    /// Charges `bytes` of a task until the returned guard drops.
    pub(super) fn hold(&self, bytes: usize) -> Held {
        self.tasks.fetch_add(bytes, Ordering::Relaxed);
        Held {
            tasks: Arc::clone(&self.tasks),
            bytes,
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> TxKey {
        TxKey {
            branch: format!("z9hG4bK{n}").into(),
            sent_by: "192.0.2.1:5060".into(),
            invite: true,
        }
    }

    fn done(len: usize) -> TxState {
        TxState::Done {
            response: vec![b'x'; len].into(),
        }
    }

    /// The counters follow every insert, replacement, update and removal back to zero, and
    /// `full` trips at either bound.
    #[test]
    fn counts_entries_and_bytes_back_to_zero() {
        let t = Table::new(3, 10_000);
        t.insert(&key(1), done(100));
        t.insert(&key(2), TxState::Confirmed);
        let two = t.bytes();
        assert_eq!(t.len(), 2);
        assert!(two > 100);
        // Replacing an entry changes bytes, not entries.
        t.insert(&key(2), done(1000));
        assert_eq!(t.len(), 2);
        assert_eq!(t.bytes(), two + 1000);
        assert_eq!(t.full(), None);
        t.insert(&key(3), done(10));
        assert_eq!(t.full(), Some(Full::Entries));
        t.update(&key(2), |s| *s = TxState::Confirmed);
        t.remove(&key(3));
        assert_eq!(t.bytes(), two);
        assert_eq!(t.update(&key(9), |_| ()), None);
        t.remove(&key(1));
        t.insert(&key(4), done(20_000));
        assert_eq!(t.full(), Some(Full::Bytes));
        for k in [1, 2, 4, 9] {
            t.remove(&key(k));
        }
        assert_eq!((t.len(), t.bytes()), (0, 0));
    }

    /// A task's bytes count toward the byte bound while its guard lives, and only then.
    #[test]
    fn held_task_bytes_count_toward_the_bound_until_dropped() {
        let t = Table::new(10, 10_000);
        t.insert(&key(1), TxState::Confirmed);
        let entry = t.bytes();
        let a = t.hold(4_000);
        let b = t.hold(6_000);
        assert_eq!(t.task_bytes(), 10_000);
        assert_eq!(t.bytes(), entry + 10_000);
        assert_eq!(t.full(), Some(Full::Bytes));
        drop(b);
        assert_eq!(t.full(), None);
        assert_eq!(t.bytes(), entry + 4_000);
        drop(a);
        t.remove(&key(1));
        assert_eq!((t.len(), t.bytes(), t.task_bytes()), (0, 0, 0));
    }

    /// A key given to `expire_after` is removed by the first `expire` at or after its time, with
    /// its queue slot; earlier calls leave it, and the counters go back to zero.
    #[test]
    fn expiring_keys_leave_at_their_time_and_free_their_bytes() {
        let t = Table::new(10, 1 << 20);
        t.insert(&key(1), TxState::Confirmed);
        t.insert(&key(2), TxState::Confirmed);
        let entries = t.bytes();
        let start = Instant::now();
        t.expire_after(key(1), std::time::Duration::from_secs(5));
        t.expire_after(key(2), std::time::Duration::from_secs(10));
        assert!(t.bytes() > entries);
        assert_eq!(t.expire(start), 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.expire(start + std::time::Duration::from_secs(6)), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.update(&key(1), |_| ()), None);
        assert!(t.update(&key(2), |_| ()).is_some());
        assert_eq!(t.expire(start + std::time::Duration::from_secs(11)), 1);
        assert_eq!((t.len(), t.bytes()), (0, 0));
        // A key already gone (removed another way) leaves its slot without a trace.
        t.insert(&key(3), TxState::Confirmed);
        t.expire_after(key(3), std::time::Duration::ZERO);
        t.remove(&key(3));
        assert_eq!(t.expire(Instant::now()), 0);
        assert_eq!((t.len(), t.bytes()), (0, 0));
    }

    /// Keys leave by deadline, not by the order they were given: a short delay given after a
    /// long one (a stateless answer's T4 after a non-INVITE's timer J in the same shard) is
    /// not held back. 64 keys of each put long ones ahead of short ones in every shard.
    #[test]
    fn expiry_follows_the_deadline_not_the_order_given() {
        let t = Table::new(1_000, 1 << 20);
        let long = std::time::Duration::from_secs(32);
        let short = std::time::Duration::from_secs(5);
        for n in 0..128 {
            t.insert(&key(n), TxState::Confirmed);
        }
        let start = Instant::now();
        for n in 0..64 {
            t.expire_after(key(n), long);
        }
        for n in 64..128 {
            t.expire_after(key(n), short);
        }
        assert_eq!(t.expire(start + std::time::Duration::from_secs(6)), 64);
        assert!((0..64).all(|n| t.update(&key(n), |_| ()).is_some()));
        assert!((64..128).all(|n| t.update(&key(n), |_| ()).is_none()));
        assert_eq!(t.expire(start + std::time::Duration::from_secs(33)), 64);
        assert_eq!((t.len(), t.bytes()), (0, 0));
    }
}
