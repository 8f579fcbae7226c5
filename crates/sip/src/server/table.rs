//! The transaction table: sharded, and bounded by entries and bytes.
//!
//! Every change goes through [`Table::insert`], [`Table::update`] and [`Table::remove`], which
//! keep the live entry count and the bytes the entries hold (keys and stored responses) in two
//! counters; the tasks that decide and time the transactions charge their own bytes to a third
//! ([`Table::hold`]) while they live. The admission check on every new request reads three
//! atomics and takes no lock.

use std::cmp::{Ordering as Order, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hasher;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Reply;

const SHARDS: usize = 16;

/// A transaction's key (RFC 3261 §17.2.3: the top Via's branch and sent-by, and whether the
/// method is INVITE/ACK or another): a 128-bit keyed hash of the branch and sent-by bytes,
/// made without allocating or formatting. The two SipHash keys are random per process and
/// secret, so no peer can make two transactions collide on purpose; by chance, two of 2^64
/// pairs would. Copy, so the table and its timer queue hold it inline.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct TxKey {
    id: u128,
    pub(super) invite: bool,
}

impl std::hash::Hash for TxKey {
    /// The key is a hash already: the maps take its low bits as they are ([`PassThrough`]).
    fn hash<H: Hasher>(&self, state: &mut H) {
        #[allow(clippy::cast_possible_truncation)]
        state.write_u64(self.id as u64 ^ u64::from(self.invite));
    }
}

/// The hasher of maps keyed by [`TxKey`]: its one `u64` passes through.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type KeyMap = HashMap<TxKey, TxState, std::hash::BuildHasherDefault<PassThrough>>;

/// The per-process secret keys of [`TxKey`]'s hash.
fn key_hashers() -> &'static (RandomState, RandomState) {
    static KEYS: OnceLock<(RandomState, RandomState)> = OnceLock::new();
    KEYS.get_or_init(|| (RandomState::new(), RandomState::new()))
}

/// Feeds both halves of a [`TxKey`] hash.
struct KeyHasher(std::hash::DefaultHasher, std::hash::DefaultHasher);

impl KeyHasher {
    fn new() -> Self {
        let (a, b) = key_hashers();
        Self(a.build_hasher(), b.build_hasher())
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.write(b);
        self.1.write(b);
        // A separator no header byte is, so ("ab","c") and ("a","bc") differ.
        self.0.write_u8(0xff);
        self.1.write_u8(0xff);
        self
    }

    /// `b` as lower-case ASCII (host names compare ignoring case), in stack-sized pieces.
    fn lower(&mut self, b: &[u8]) -> &mut Self {
        let mut buf = [0u8; 64];
        for chunk in b.chunks(buf.len()) {
            let out = buf.get_mut(..chunk.len()).unwrap_or_default();
            for (o, c) in out.iter_mut().zip(chunk) {
                *o = c.to_ascii_lowercase();
            }
            self.0.write(out);
            self.1.write(out);
        }
        self.0.write_u8(0xff);
        self.1.write_u8(0xff);
        self
    }

    fn number(&mut self, n: u64) -> &mut Self {
        self.0.write_u64(n);
        self.1.write_u64(n);
        self
    }

    fn finish(&self, invite: bool) -> TxKey {
        TxKey {
            id: (u128::from(self.0.finish()) << 64) | u128::from(self.1.finish()),
            invite,
        }
    }
}

impl TxKey {
    /// The key of an RFC 3261 request: its branch (with the magic cookie) and sent-by (host
    /// ignoring case, and port when given).
    pub(super) fn rfc3261(branch: &str, host: &str, port: Option<u16>, invite: bool) -> Self {
        KeyHasher::new()
            .number(3261)
            .bytes(branch.as_bytes())
            .lower(host.as_bytes())
            .number(port.map_or(u64::MAX, u64::from))
            .finish(invite)
    }

    /// The key of an RFC 2543 request (no magic cookie): Call-ID, CSeq number and From tag
    /// with the sent-by.
    pub(super) fn rfc2543(
        call_id: &str,
        cseq: u32,
        from_tag: &str,
        host: &str,
        port: Option<u16>,
        invite: bool,
    ) -> Self {
        KeyHasher::new()
            .number(2543)
            .bytes(call_id.as_bytes())
            .number(u64::from(cseq))
            .bytes(from_tag.as_bytes())
            .lower(host.as_bytes())
            .number(port.map_or(u64::MAX, u64::from))
            .finish(invite)
    }

    /// The same transaction's INVITE side (a CANCEL's INVITE, an ACK's).
    pub(super) fn as_invite(self) -> Self {
        Self {
            invite: true,
            ..self
        }
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
    /// The final response sent and kept for retransmissions until the ACK; over a reliable
    /// transport the ACK ends the transaction at once.
    Completed {
        response: Arc<[u8]>,
        reliable: bool,
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

/// What happens to a key when its time in the queue comes ([`Table::expire_after`],
/// [`Table::complete`]).
#[derive(Debug)]
pub(super) enum Due {
    /// It leaves the table (timers I and J, a stateless answer's T4).
    Remove,
    /// Timers G and H of a final response ([`Table::expire`] does them).
    Final(FinalTimer),
}

/// Timer G (resend the final response over `reply`, every `interval`, doubling up to `t2`,
/// at most `left` more times) and timer H (`h_at`: give up waiting for the ACK). A reliable
/// transport gets no `reply` and `left` 0: timer H only.
#[derive(Debug)]
pub(super) struct FinalTimer {
    pub(super) reply: Option<Reply>,
    pub(super) interval: Duration,
    pub(super) t2: Duration,
    pub(super) left: u32,
    pub(super) h_at: Instant,
}

/// What one sweep of the queue found to do outside the locks ([`Table::expire`]).
#[derive(Debug, Default)]
pub(super) struct Swept {
    /// Keys removed.
    pub(super) removed: usize,
    /// Final responses to send again (timer G).
    pub(super) resend: Vec<(Reply, Arc<[u8]>)>,
    /// Transactions that timer H ended without an ACK.
    pub(super) unacked: usize,
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
    map: KeyMap,
    expiring: BinaryHeap<Reverse<Expiring>>,
}

/// A key and when it leaves; ordered by the time alone.
#[derive(Debug)]
struct Expiring {
    at: Instant,
    key: TxKey,
    due: Due,
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

/// What a key waiting in a shard's queue costs beyond its entry: the heap slot (key, time and
/// what is due, inline).
const EXPIRING_WEIGHT: usize = std::mem::size_of::<Expiring>();

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
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            tasks: Arc::default(),
            max_entries,
            max_bytes,
        }
    }

    fn shard(&self, key: &TxKey) -> std::sync::MutexGuard<'_, Shard> {
        // The high bits pick the shard, the low ones the map's bucket.
        let idx = usize::try_from((key.id >> 64) % SHARDS as u128).unwrap_or(0);
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
        let mut shard = self.shard(key);
        self.put(&mut shard, *key, state);
    }

    /// Inserts or replaces `key`'s state in its (locked) shard, keeping the counts.
    fn put(&self, shard: &mut Shard, key: TxKey, state: TxState) {
        let after = state.weight();
        match shard.map.insert(key, state) {
            Some(old) => self.account(old.weight(), after),
            None => {
                self.entries.fetch_add(1, Ordering::Relaxed);
                self.account(0, after);
            }
        }
    }

    /// Inserts or replaces `key`'s state and queues what is due for it after `delay`, under one
    /// lock: a final response with its timers G and H, or an entry with its end.
    pub(super) fn insert_due(&self, key: TxKey, state: TxState, delay: Duration, due: Due) {
        let at = Instant::now() + delay;
        let mut shard = self.shard(&key);
        self.put(&mut shard, key, state);
        shard.expiring.push(Reverse(Expiring { at, key, due }));
        drop(shard);
        self.account(0, EXPIRING_WEIGHT);
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
        self.account(old.weight(), 0);
        true
    }

    /// Removes `key` once `delay` has passed (at the next [`Table::expire`] after it), without a
    /// task waiting for it: a confirmed INVITE transaction waits out timer I here, a stateless
    /// answer its T4 and a non-INVITE final response timer J. Keys leave in deadline order,
    /// whatever delays they were given.
    pub(super) fn expire_after(&self, key: TxKey, delay: Duration) {
        let at = Instant::now() + delay;
        self.shard(&key).expiring.push(Reverse(Expiring {
            at,
            key,
            due: Due::Remove,
        }));
        self.account(0, EXPIRING_WEIGHT);
    }

    /// Does what is due by `now`: removes the keys whose time has come, and runs the final
    /// responses' timers: timer G hands back a response to send again (and queues its next
    /// firing), timer H removes a transaction still waiting for its ACK. A final response
    /// acknowledged meanwhile (its state is no longer `Completed`) has no timer left.
    pub(super) fn expire(&self, now: Instant) -> Swept {
        let mut swept = Swept::default();
        for shard in &self.shards {
            let mut shard = lock(shard);
            while shard.expiring.peek().is_some_and(|e| e.0.at <= now) {
                let Some(Reverse(Expiring { key, due, at: was })) = shard.expiring.pop() else {
                    break;
                };
                self.account(EXPIRING_WEIGHT, 0);
                match due {
                    Due::Remove => {
                        if self.take(&mut shard, &key) {
                            swept.removed += 1;
                        }
                    }
                    Due::Final(mut timer) => {
                        let Some(TxState::Completed { response, .. }) = shard.map.get(&key) else {
                            continue;
                        };
                        if now >= timer.h_at {
                            if self.take(&mut shard, &key) {
                                swept.removed += 1;
                                swept.unacked += 1;
                            }
                            continue;
                        }
                        let at = if timer.left == 0 {
                            timer.h_at
                        } else {
                            if let Some(reply) = &timer.reply {
                                swept.resend.push((reply.clone(), Arc::clone(response)));
                            }
                            timer.left -= 1;
                            // From when it was due, not from this sweep: no drift.
                            timer.interval = (timer.interval * 2).min(timer.t2);
                            let next = was + timer.interval;
                            if timer.left == 0 {
                                timer.h_at
                            } else {
                                next.min(timer.h_at)
                            }
                        };
                        shard.expiring.push(Reverse(Expiring {
                            at,
                            key,
                            due: Due::Final(timer),
                        }));
                        self.account(0, EXPIRING_WEIGHT);
                    }
                }
            }
        }
        swept
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
        TxKey::rfc3261(&format!("z9hG4bK{n}"), "192.0.2.1", Some(5060), true)
    }

    fn done(len: usize) -> TxState {
        TxState::Done {
            response: vec![b'x'; len].into(),
        }
    }

    /// Keys are equal exactly when RFC 3261 §17.2.3 matches: sent-by's host ignoring case, the
    /// branch and port exactly, and the method's side.
    #[test]
    fn keys_match_as_rfc3261_says() {
        let k = TxKey::rfc3261("z9hG4bKa", "Host.Example", Some(5060), true);
        assert_eq!(
            k,
            TxKey::rfc3261("z9hG4bKa", "host.example", Some(5060), true)
        );
        assert_ne!(
            k,
            TxKey::rfc3261("z9hG4bKA", "host.example", Some(5060), true)
        );
        assert_ne!(k, TxKey::rfc3261("z9hG4bKa", "host.example", None, true));
        assert_ne!(
            k,
            TxKey::rfc3261("z9hG4bKa", "host.example", Some(5061), true)
        );
        assert_ne!(
            k,
            TxKey::rfc3261("z9hG4bKa", "host.example", Some(5060), false)
        );
        assert_eq!(
            k,
            TxKey::rfc3261("z9hG4bKa", "host.example", Some(5060), false).as_invite()
        );
        // Where one field ends and the next begins counts.
        assert_ne!(
            TxKey::rfc3261("z9hG4bKab", "c", None, true),
            TxKey::rfc3261("z9hG4bKa", "bc", None, true)
        );
        let long = "h".repeat(200);
        assert_eq!(
            TxKey::rfc3261("z9hG4bKa", &long.to_uppercase(), None, true),
            TxKey::rfc3261("z9hG4bKa", &long, None, true)
        );
        let old = TxKey::rfc2543("id@x", 1, "t1", "host", Some(5060), true);
        assert_eq!(
            old,
            TxKey::rfc2543("id@x", 1, "t1", "HOST", Some(5060), true)
        );
        assert_ne!(
            old,
            TxKey::rfc2543("id@x", 2, "t1", "host", Some(5060), true)
        );
        assert_ne!(
            old,
            TxKey::rfc2543("id@x", 1, "t2", "host", Some(5060), true)
        );
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
        assert_eq!(t.expire(start).removed, 0);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.expire(start + std::time::Duration::from_secs(6)).removed,
            1
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.update(&key(1), |_| ()), None);
        assert!(t.update(&key(2), |_| ()).is_some());
        assert_eq!(
            t.expire(start + std::time::Duration::from_secs(11)).removed,
            1
        );
        assert_eq!((t.len(), t.bytes()), (0, 0));
        // A key already gone (removed another way) leaves its slot without a trace.
        t.insert(&key(3), TxState::Confirmed);
        t.expire_after(key(3), std::time::Duration::ZERO);
        t.remove(&key(3));
        assert_eq!(t.expire(Instant::now()).removed, 0);
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
        assert_eq!(
            t.expire(start + std::time::Duration::from_secs(6)).removed,
            64
        );
        assert!((0..64).all(|n| t.update(&key(n), |_| ()).is_some()));
        assert!((64..128).all(|n| t.update(&key(n), |_| ()).is_none()));
        assert_eq!(
            t.expire(start + std::time::Duration::from_secs(33)).removed,
            64
        );
        assert_eq!((t.len(), t.bytes()), (0, 0));
    }
}
