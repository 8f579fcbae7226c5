//! Block, gray and allow lists: exact numbers and prefixes of E.164 digits, each with a reason,
//! who added it, when, and an optional expiry.
//!
//! Calls never wait for a list store: every node keeps a [`ListSnapshot`] in memory and a
//! background task reloads it when the store's version changes (checked every
//! `list_refresh_ms`), so a change made on one node is live everywhere within about a second.
//! [`ListStore`] has two implementations: [`FileListStore`] (the embedded default, a JSON
//! file replaced atomically) and [`RedisListStore`] (one hash per list and a version counter).

mod csv_import;
mod file;
mod redis_store;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tollgate_core::E164;

use crate::error::RiskError;
use crate::{unix_secs, BoxFuture};

pub use csv_import::{parse_csv, write_csv};
pub use file::FileListStore;
pub use redis_store::RedisListStore;

/// Which list an entry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    /// Rejected with the configured block response.
    Block,
    /// Extra verification: elevated level and the verification queue.
    Gray,
    /// VIP: never blocked, whatever else matched.
    Allow,
}

impl ListKind {
    pub const ALL: [ListKind; 3] = [ListKind::Block, ListKind::Gray, ListKind::Allow];

    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Block => "block",
            ListKind::Gray => "gray",
            ListKind::Allow => "allow",
        }
    }

    fn index(self) -> usize {
        match self {
            ListKind::Block => 0,
            ListKind::Gray => 1,
            ListKind::Allow => 2,
        }
    }
}

impl fmt::Display for ListKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ListKind {
    type Err = RiskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "block" => Ok(ListKind::Block),
            "gray" | "grey" => Ok(ListKind::Gray),
            "allow" => Ok(ListKind::Allow),
            other => Err(RiskError::InvalidEntry(format!(
                "unknown list {other:?} (block, gray or allow)"
            ))),
        }
    }
}

/// An exact E.164 number or a prefix of one (digits, no `+`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    Exact(String),
    /// Matches every number starting with these digits (written `1212555*`).
    Prefix(String),
}

impl Pattern {
    pub fn digits(&self) -> &str {
        match self {
            Pattern::Exact(d) | Pattern::Prefix(d) => d,
        }
    }

    pub fn is_prefix(&self) -> bool {
        matches!(self, Pattern::Prefix(_))
    }

    /// Whether the number (E.164 digits) is covered.
    pub fn matches(&self, digits: &str) -> bool {
        match self {
            Pattern::Exact(d) => d == digits,
            Pattern::Prefix(p) => digits.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(d) => f.write_str(d),
            Pattern::Prefix(d) => write!(f, "{d}*"),
        }
    }
}

impl FromStr for Pattern {
    type Err = RiskError;

    /// `+12125551212` or `12125551212` (exact), `1212555*` (prefix); visual separators are not
    /// accepted, so what an operator types is what matches.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix('+').unwrap_or(t);
        let (digits, prefix) = match t.strip_suffix('*') {
            Some(d) => (d, true),
            None => (t, false),
        };
        let ok = !digits.is_empty()
            && digits.len() <= 15
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !ok {
            return Err(RiskError::InvalidEntry(format!(
                "{s:?} is not E.164 digits (1-15, no leading 0) with an optional trailing *"
            )));
        }
        Ok(if prefix {
            Pattern::Prefix(digits.to_owned())
        } else {
            Pattern::Exact(digits.to_owned())
        })
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One list entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    pub list: ListKind,
    pub pattern: Pattern,
    pub reason: String,
    pub who: String,
    /// Unix seconds.
    pub added_at: u64,
    /// Unix seconds; from then on the entry is ignored.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

impl ListEntry {
    /// Builds and checks an entry; `pattern` as [`Pattern::from_str`] reads it.
    pub fn new(
        list: ListKind,
        pattern: &str,
        reason: &str,
        who: &str,
        added_at: SystemTime,
        expires_at: Option<u64>,
    ) -> Result<Self, RiskError> {
        let e = Self {
            list,
            pattern: pattern.parse()?,
            reason: reason.trim().to_owned(),
            who: who.trim().to_owned(),
            added_at: unix_secs(added_at),
            expires_at,
        };
        e.check()?;
        Ok(e)
    }

    /// Text fields are bounded and single-line (they end up in logs and CSV).
    pub fn check(&self) -> Result<(), RiskError> {
        for (name, v) in [("reason", &self.reason), ("who", &self.who)] {
            if v.len() > 200 || v.chars().any(char::is_control) {
                return Err(RiskError::InvalidEntry(format!(
                    "{name} must be at most 200 characters on one line"
                )));
            }
        }
        if self.who.is_empty() {
            return Err(RiskError::InvalidEntry("who is required".into()));
        }
        Ok(())
    }

    /// Whether the entry is still in force at `now` (unix seconds).
    pub fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// One list that matched a number: its most specific live entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListHit {
    pub list: ListKind,
    pub entry: Arc<ListEntry>,
}

/// All lists, indexed for the per-call check: at most one hash lookup per distinct pattern
/// length present (≤ 15), no allocation unless something matches.
#[derive(Debug, Default)]
pub struct ListSnapshot {
    by_digits: HashMap<Box<str>, Vec<Arc<ListEntry>>>,
    /// Bit `n` set when some pattern has `n` digits.
    lengths: u16,
    counts: [usize; 3],
    version: u64,
    /// False until the store has been read once (Redis down at start).
    loaded: bool,
}

impl ListSnapshot {
    pub fn new(version: u64, entries: Vec<ListEntry>) -> Self {
        let mut by_digits: HashMap<Box<str>, Vec<Arc<ListEntry>>> = HashMap::new();
        let mut lengths = 0u16;
        let mut counts = [0usize; 3];
        for e in entries {
            let d = e.pattern.digits();
            lengths |= 1u16
                .checked_shl(u32::try_from(d.len()).unwrap_or(16))
                .unwrap_or(0);
            if let Some(c) = counts.get_mut(e.list.index()) {
                *c += 1;
            }
            by_digits.entry(d.into()).or_default().push(Arc::new(e));
        }
        for v in by_digits.values_mut() {
            // An exact entry is more specific than a prefix of the same digits.
            v.sort_by_key(|e| e.pattern.is_prefix());
        }
        Self {
            by_digits,
            lengths,
            counts,
            version,
            loaded: true,
        }
    }

    /// The lists that cover `number` at `now`: per list, the longest live match (an exact entry
    /// before a prefix of the same length); expired entries are skipped, so a shorter live
    /// prefix still applies. Hits come in the order block, gray, allow.
    pub fn check(&self, number: &E164, now: SystemTime) -> Vec<ListHit> {
        if self.by_digits.is_empty() {
            return Vec::new();
        }
        let now = unix_secs(now);
        let digits = number.digits();
        let mut found: [Option<&Arc<ListEntry>>; 3] = [None, None, None];
        for len in (1..=digits.len()).rev() {
            let has_len = u32::try_from(len)
                .ok()
                .and_then(|l| 1u16.checked_shl(l))
                .is_some_and(|bit| self.lengths & bit != 0);
            if !has_len {
                continue;
            }
            let Some(entries) = digits.get(..len).and_then(|k| self.by_digits.get(k)) else {
                continue;
            };
            for e in entries {
                if !e.is_live(now) || (!e.pattern.is_prefix() && len != digits.len()) {
                    continue;
                }
                if let Some(slot @ None) = found.get_mut(e.list.index()) {
                    *slot = Some(e);
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        found
            .into_iter()
            .flatten()
            .map(|e| ListHit {
                list: e.list,
                entry: Arc::clone(e),
            })
            .collect()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Entries per list (expired ones included until removed).
    pub fn len(&self, list: ListKind) -> usize {
        self.counts.get(list.index()).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.by_digits.is_empty()
    }
}

/// Where the lists are kept. Every write bumps the version so other nodes reload.
pub trait ListStore: Send + Sync + fmt::Debug {
    /// "file" or "redis", for logs and metrics.
    fn kind(&self) -> &'static str;
    /// A number that changes whenever an entry changes (cheap: one GET or one stat).
    fn version(&self) -> BoxFuture<'_, Result<u64, RiskError>>;
    /// Every entry, with the version it was read at.
    fn load(&self) -> BoxFuture<'_, Result<(u64, Vec<ListEntry>), RiskError>>;
    /// Adds or replaces the entry for (list, pattern).
    fn add(&self, entry: ListEntry) -> BoxFuture<'_, Result<(), RiskError>>;
    /// Removes (list, pattern); false when there was no such entry.
    fn remove<'a>(
        &'a self,
        list: ListKind,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<bool, RiskError>>;
    /// Adds or replaces all entries in one write (all or nothing).
    fn import(&self, entries: Vec<ListEntry>) -> BoxFuture<'_, Result<usize, RiskError>>;
}

/// A node's view of the lists: the store, and the snapshot calls check against.
#[derive(Debug)]
pub struct Lists {
    store: Arc<dyn ListStore>,
    snapshot: ArcSwap<ListSnapshot>,
    /// Forces a full reload now and then, in case a store's version went back (Redis flushed).
    refresh: Duration,
    /// The store came back with no trace of ever having been written (see [`Lists::reload`])
    /// while this node held entries: the last snapshot stays live until the store is written.
    held: AtomicBool,
}

/// Reload regardless of the version every this many refresh ticks.
const FORCED_RELOAD_TICKS: u32 = 30;

impl Lists {
    /// Reads the store once (an unreachable store leaves an empty, not-loaded snapshot that the
    /// refresher fills later) and starts the background refresher, which stops when the
    /// returned `Lists` is dropped. Needs a Tokio runtime.
    pub async fn open(store: Arc<dyn ListStore>, refresh: Duration) -> Arc<Self> {
        let lists = Arc::new(Self {
            store,
            snapshot: ArcSwap::from_pointee(ListSnapshot {
                loaded: false,
                ..ListSnapshot::default()
            }),
            refresh,
            held: AtomicBool::new(false),
        });
        if let Err(e) = lists.reload().await {
            tracing::warn!(store = lists.store.kind(), error = %e, "risk lists not loaded yet; calls are checked against empty lists until they are");
        }
        tokio::spawn(refresher(Arc::downgrade(&lists), refresh));
        lists
    }

    /// The lists covering a number: no I/O, no lock.
    pub fn check(&self, number: &E164, now: SystemTime) -> Vec<ListHit> {
        self.snapshot.load().check(number, now)
    }

    pub fn snapshot(&self) -> Arc<ListSnapshot> {
        self.snapshot.load_full()
    }

    pub fn store(&self) -> &Arc<dyn ListStore> {
        &self.store
    }

    /// Reloads when the store's version differs from the snapshot's; true when it reloaded.
    pub async fn refresh(&self) -> Result<bool, RiskError> {
        let current = self.snapshot.load();
        let v = self.store.version().await?;
        if current.loaded && v == current.version {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    /// Reads every entry and swaps the snapshot in.
    ///
    /// Except when the store comes back *emptied*: version 0 (Redis: no version key; file: no
    /// file) and no entries, while this node's snapshot has entries and was read at a version.
    /// Every write leaves a version behind, and removing every entry does too, so only a store
    /// that lost its data (Redis restarted without persistence, FLUSHALL, the file deleted)
    /// looks like that. Then the last snapshot stays live, an error is logged and
    /// `tollgate_risk_lists_emptied_total` counted, and `tollgate_risk_lists_held` is 1 until
    /// an operator writes the store again (`tollgate list import` of a backup, or any add or
    /// remove): that write is the confirmation, and what the store then holds is live.
    pub async fn reload(&self) -> Result<(), RiskError> {
        let (version, entries) = self.store.load().await?;
        let current = self.snapshot.load();
        if version == 0
            && entries.is_empty()
            && current.loaded
            && current.version != 0
            && !current.is_empty()
        {
            if !self.held.swap(true, Ordering::Relaxed) {
                metrics::counter!("tollgate_risk_lists_emptied_total", "store" => self.store.kind())
                    .increment(1);
                metrics::gauge!("tollgate_risk_lists_held").set(1.0);
                tracing::error!(
                    store = self.store.kind(),
                    held_version = current.version,
                    block = current.len(ListKind::Block),
                    gray = current.len(ListKind::Gray),
                    allow = current.len(ListKind::Allow),
                    "the risk list store came back empty (data lost?); keeping the last lists live until the store is written again (restore with `tollgate list import`)"
                );
            }
            return Ok(());
        }
        if self.held.swap(false, Ordering::Relaxed) {
            metrics::gauge!("tollgate_risk_lists_held").set(0.0);
            tracing::warn!(
                store = self.store.kind(),
                version,
                entries = entries.len(),
                "the risk list store was written again; its lists replace the held ones"
            );
        }
        let snap = ListSnapshot::new(version, entries);
        for list in ListKind::ALL {
            metrics::gauge!("tollgate_risk_list_entries", "list" => list.as_str())
                .set(snap.len(list) as f64);
        }
        self.snapshot.store(Arc::new(snap));
        Ok(())
    }

    /// Adds an entry and makes it live on this node at once (others follow on refresh).
    pub async fn add(&self, entry: ListEntry) -> Result<(), RiskError> {
        entry.check()?;
        self.store.add(entry).await?;
        self.reload().await
    }

    pub async fn remove(&self, list: ListKind, pattern: &Pattern) -> Result<bool, RiskError> {
        let removed = self.store.remove(list, pattern).await?;
        self.reload().await?;
        Ok(removed)
    }

    pub async fn import(&self, entries: Vec<ListEntry>) -> Result<usize, RiskError> {
        let n = self.store.import(entries).await?;
        self.reload().await?;
        Ok(n)
    }

    pub fn refresh_interval(&self) -> Duration {
        self.refresh
    }

    /// True while the store is emptied and the last snapshot is kept live ([`Lists::reload`]).
    pub fn is_holding_emptied_store(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }
}

async fn refresher(lists: Weak<Lists>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut n: u32 = 0;
    loop {
        tick.tick().await;
        let Some(lists) = lists.upgrade() else { return };
        n = n.wrapping_add(1);
        let result = if n.is_multiple_of(FORCED_RELOAD_TICKS) {
            lists.reload().await.map(|()| true)
        } else {
            lists.refresh().await
        };
        match result {
            Ok(true) => tracing::debug!(
                store = lists.store.kind(),
                version = lists.snapshot.load().version,
                "risk lists reloaded"
            ),
            Ok(false) => {}
            Err(e) => {
                metrics::counter!("tollgate_risk_list_refresh_errors_total").increment(1);
                tracing::warn!(store = lists.store.kind(), error = %e, "risk list refresh failed; keeping the last snapshot");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn entry(list: ListKind, p: &str, expires_at: Option<u64>) -> ListEntry {
        ListEntry::new(list, p, "test", "ops", at(1000), expires_at).unwrap()
    }

    fn n(d: &str) -> E164 {
        E164::from_digits(d).unwrap()
    }

    #[test]
    fn patterns_parse_and_print() {
        assert_eq!(
            "+12125551212".parse::<Pattern>().unwrap(),
            Pattern::Exact("12125551212".into())
        );
        assert_eq!(
            "1212555*".parse::<Pattern>().unwrap().to_string(),
            "1212555*"
        );
        for bad in ["", "*", "0800*", "12a4", "1234567890123456", "+"] {
            assert!(bad.parse::<Pattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn longest_prefix_per_list_and_exact_first() {
        let s = ListSnapshot::new(
            1,
            vec![
                entry(ListKind::Block, "1212*", None),
                entry(ListKind::Block, "1212555*", None),
                entry(ListKind::Block, "12125551212", None),
                entry(ListKind::Gray, "1*", None),
                entry(ListKind::Allow, "1999*", None),
            ],
        );
        let hits = s.check(&n("12125551212"), at(2000));
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].list, ListKind::Block);
        assert_eq!(hits[0].entry.pattern, Pattern::Exact("12125551212".into()));
        assert_eq!(hits[1].list, ListKind::Gray);
        let hits = s.check(&n("12125550000"), at(2000));
        assert_eq!(hits[0].entry.pattern, Pattern::Prefix("1212555".into()));
        let hits = s.check(&n("12120000000"), at(2000));
        assert_eq!(hits[0].entry.pattern, Pattern::Prefix("1212".into()));
        // An exact entry never matches a longer number.
        let hits = s.check(&n("121255512120"), at(2000));
        assert_eq!(hits[0].entry.pattern, Pattern::Prefix("1212555".into()));
        assert!(s.check(&n("442071234567"), at(2000)).is_empty());
    }

    #[test]
    fn expired_entries_are_ignored_and_shorter_prefixes_apply() {
        let s = ListSnapshot::new(
            1,
            vec![
                entry(ListKind::Block, "12125551212", Some(1500)),
                entry(ListKind::Block, "1212*", None),
            ],
        );
        let before = s.check(&n("12125551212"), at(1499));
        assert_eq!(
            before[0].entry.pattern,
            Pattern::Exact("12125551212".into())
        );
        let after = s.check(&n("12125551212"), at(1500));
        assert_eq!(after[0].entry.pattern, Pattern::Prefix("1212".into()));
    }

    #[test]
    fn entries_reject_multiline_text() {
        assert!(ListEntry::new(ListKind::Block, "1", "a\nb", "ops", at(0), None).is_err());
        assert!(ListEntry::new(ListKind::Block, "1", "a", "", at(0), None).is_err());
    }
}
