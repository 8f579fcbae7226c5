//! Call-rate limits (issue 20): per trunk (`max_cps`, `max_burst`), per source address inside
//! a trunk (`max_cps_per_source`, like Kamailio's `pike`) and for the whole node
//! (`sip.max_cps`). Built once at start-up from the config and kept across rules reloads;
//! [`crate::Pipeline::run`] consults them after extraction and number intelligence, before any
//! enrichment work is spent on the call.
//!
//! Each limit is a GCRA bucket of governor's (`max_cps` tokens a second, `max_burst` at most).
//! A call is checked against its source, then its trunk, then the node, and stops at the first
//! limit it is over; it is charged only when it passes all three (a level that let it through
//! is refunded when a later one refuses it), so a trunk over its own limit never spends the
//! node's budget, and a refused call costs no bucket a token. Emergency calls are never checked
//! and never charged. A dry run (`explain`, `diff`) reads the buckets and charges nothing.
//!
//! The per-source buckets are one map per trunk of at most [`MAX_SOURCES`] addresses; past it
//! a new address is not tracked (it passes as a first-seen address would, and is counted in
//! `tollgate_rate_limit_untracked_total`), so a flood of spoofed addresses cannot grow memory:
//! it is the trunk's and the node's limits that hold it. [`spawn_sweep`] drops, every second,
//! the addresses whose bucket is full again.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use tollgate_core::{Decision, DecisionAction, QueueName, Target};

/// The most source addresses one trunk's per-source limit tracks at once.
pub const MAX_SOURCES: usize = 10_000;

/// One limit: calls per second, and how many may come at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// `burst` defaults to `per_second` rounded up, at least 1.
    pub fn new(per_second: f64, burst: Option<u32>) -> Self {
        Self {
            per_second,
            burst: burst.unwrap_or_else(|| Self::default_burst(per_second)),
        }
    }

    pub fn default_burst(per_second: f64) -> u32 {
        let up = per_second.ceil();
        if up >= f64::from(u32::MAX) {
            u32::MAX
        } else if up >= 1.0 {
            up as u32
        } else {
            1
        }
    }

    /// The time one token takes to come back.
    fn period(self) -> Duration {
        Duration::try_from_secs_f64(1.0 / self.per_second)
            .unwrap_or(Duration::from_secs(1000))
            .max(Duration::from_nanos(1))
    }

    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.period())
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cps burst {}", self.per_second, self.burst)
    }
}

/// What a call over a limit gets (`over_limit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OverLimit {
    /// 503 (with `Retry-After`), 486 or 480.
    Reject(u16),
    /// A 302 to this queue, as any rule's 302 to it.
    Queue(QueueName),
}

impl OverLimit {
    /// The statuses `over_limit` may name.
    pub const CODES: [u16; 3] = [503, 486, 480];

    /// `"503"`, `"486"`, `"480"` or `"queue:NAME"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(q) = s.strip_prefix("queue:") {
            return QueueName::new(q)
                .map(OverLimit::Queue)
                .map_err(|e| e.to_string());
        }
        match s.parse::<u16>() {
            Ok(code) if Self::CODES.contains(&code) => Ok(OverLimit::Reject(code)),
            _ => Err(format!(
                "{s:?}: expected \"503\", \"486\", \"480\" or \"queue:NAME\""
            )),
        }
    }

    /// The metric label: the status, or "queue".
    pub fn label(&self) -> &'static str {
        match self {
            OverLimit::Reject(480) => "480",
            OverLimit::Reject(486) => "486",
            OverLimit::Reject(_) => "503",
            OverLimit::Queue(_) => "queue",
        }
    }
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverLimit::Reject(code) => write!(f, "{code}"),
            OverLimit::Queue(q) => write!(f, "queue:{q}"),
        }
    }
}

/// One trunk's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct TrunkLimits {
    pub trunk: Option<Rate>,
    pub over_limit: OverLimit,
    pub per_source: Option<Rate>,
    pub over_limit_per_source: OverLimit,
}

/// The limits the config sets, by trunk name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitsConfig {
    /// `sip.max_cps`, `sip.max_burst`.
    pub node: Option<Rate>,
    pub trunks: HashMap<String, TrunkLimits>,
    /// The `Retry-After` seconds of a 503 over a limit (`sip.retry_after_s`).
    pub retry_after: u32,
}

impl LimitsConfig {
    pub fn is_empty(&self) -> bool {
        self.node.is_none() && self.trunks.is_empty()
    }

    /// Every overflow queue, with its trunk, for the check against `queues.toml`.
    pub fn queues(&self) -> Vec<(&str, &QueueName)> {
        let mut out = Vec::new();
        for (name, t) in &self.trunks {
            for o in [&t.over_limit, &t.over_limit_per_source] {
                if let OverLimit::Queue(q) = o {
                    out.push((name.as_str(), q));
                }
            }
        }
        out
    }
}

/// Which limit a call was over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Source,
    Trunk,
    Node,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Source => "source",
            Scope::Trunk => "trunk",
            Scope::Node => "node",
        }
    }

    /// `decided_by` in the decision log.
    pub fn decided_by(self) -> &'static str {
        match self {
            Scope::Source => "rate-limit-source",
            Scope::Trunk => "rate-limit-trunk",
            Scope::Node => "rate-limit-node",
        }
    }
}

/// Whether a check takes a token (a live call) or only reads (a dry run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Charge {
    Live,
    Dry,
}

/// A call over a limit: which, and what it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub action: OverLimit,
    /// `Retry-After` for a 503.
    pub retry_after: u32,
}

impl Limited {
    /// The rule name the decision carries (`X-Rule`, the log's `rule`).
    pub fn rule(&self) -> &'static str {
        match self.scope {
            Scope::Source => "rate-limit/source",
            Scope::Trunk => "rate-limit/trunk",
            Scope::Node => "rate-limit/node",
        }
    }

    /// The answer: a 503 with `Retry-After`, a 486 or 480 with the standard phrase, or a 302
    /// to the overflow queue at the rules' ACD host, as any rule's 302 to it.
    pub fn decision(&self, acd_host: &str, version: &str) -> Decision {
        match &self.action {
            OverLimit::Reject(code) => Decision {
                action: DecisionAction::Reject {
                    code: *code,
                    reason: None,
                    call_info: None,
                    retry_after: (*code == 503).then_some(self.retry_after),
                },
                rule: self.rule().into(),
                version: version.into(),
            },
            OverLimit::Queue(q) => Decision {
                action: DecisionAction::Route(Target::new(q.as_str(), acd_host)),
                rule: self.rule().into(),
                version: version.into(),
            },
        }
    }
}

/// What [`Limits::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The first limit the call is over; `None`: it passes (and, live, was charged).
    pub limited: Option<Limited>,
    /// What each limit said, for explain (only when asked for).
    pub report: Option<String>,
}

/// A single bucket (a trunk's, the node's): governor's GCRA state, one atomic word shared
/// with its [`Limit`] for refunds, read without a write by a dry run.
#[derive(Clone, Debug, Default)]
struct Bucket(Arc<AtomicU64>);

impl StateStore for Bucket {
    type Key = Charge;

    fn measure_and_replace<T, F, E>(&self, key: &Charge, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut prev = self.0.load(Ordering::Acquire);
        loop {
            let (out, next) = f(NonZeroU64::new(prev).map(|n| Nanos::from(n.get())))?;
            if *key == Charge::Dry {
                return Ok(out);
            }
            match self.0.compare_exchange_weak(
                prev,
                u64::from(next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(out),
                Err(p) => prev = p,
            }
        }
    }
}

/// The source address a per-source check is for, and whether it charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SourceKey {
    ip: IpAddr,
    charge: Charge,
}

/// One trunk's per-source buckets: a bounded map (SipHash: the keys are chosen by whoever
/// sends) under one mutex, held for one lookup.
#[derive(Debug)]
struct Sources {
    map: Mutex<HashMap<IpAddr, u64>>,
    cap: usize,
    /// New addresses not tracked because the map was full, since the last sweep.
    untracked: AtomicU64,
}

/// The per-source store, shared with its [`Limit`] for refunds and the sweep.
#[derive(Clone, Debug)]
struct SourceStore(Arc<Sources>);

impl SourceStore {
    fn new(cap: usize) -> Self {
        Self(Arc::new(Sources {
            map: Mutex::new(HashMap::new()),
            cap,
            untracked: AtomicU64::new(0),
        }))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u64>> {
        self.0.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for SourceStore {
    type Key = SourceKey;

    fn measure_and_replace<T, F, E>(&self, key: &SourceKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = self.map();
        let prev = map.get(&key.ip).copied();
        let (out, next) = f(prev.and_then(NonZeroU64::new).map(|n| Nanos::from(n.get())))?;
        if key.charge == Charge::Live {
            if let Some(v) = map.get_mut(&key.ip) {
                *v = u64::from(next);
            } else if map.len() < self.0.cap {
                map.insert(key.ip, u64::from(next));
            } else {
                self.0.untracked.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(out)
    }
}

impl ShrinkableKeyedStateStore<SourceKey> for SourceStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let below = u64::from(drop_below);
        self.map().retain(|_, tat| *tat > below);
    }

    fn shrink_to_fit(&self) {
        let mut map = self.map();
        if map.capacity() > 4 * map.len().max(64) {
            map.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.map().len()
    }

    fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

/// A limit: its rate, governor's limiter over a store, the store itself (shared, for refunds)
/// and one token's time.
#[derive(Debug)]
struct Limit<K, S, C>
where
    S: StateStore<Key = K>,
    C: Clock,
{
    rate: Rate,
    gate: RateLimiter<K, S, C, StateInformationMiddleware>,
    store: S,
    period: u64,
}

/// What one limit said of a call.
enum Verdict {
    /// Within the limit; `left` tokens remain after this call.
    Pass { left: u32 },
    /// Over it; the next token comes in `wait`.
    Over { wait: Duration },
}

impl<K, S, C> Limit<K, S, C>
where
    K: Hash + Eq + Clone,
    S: StateStore<Key = K> + Clone,
    C: Clock,
{
    fn new(rate: Rate, store: S, clock: C) -> Self {
        let period = u64::try_from(rate.period().as_nanos()).unwrap_or(u64::MAX);
        Self {
            rate,
            gate: RateLimiter::<K, S, C, StateInformationMiddleware>::new(
                rate.quota(),
                store.clone(),
                clock,
            ),
            store,
            period,
        }
    }

    fn check(&self, key: &K) -> Verdict {
        match self.gate.check_key(key) {
            Ok(snapshot) => Verdict::Pass {
                left: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => Verdict::Over {
                wait: not_until.wait_time_from(self.gate.clock().now()),
            },
        }
    }
}

impl<C: Clock> Limit<Charge, Bucket, C> {
    /// Gives back the token a live check took: GCRA's arrival time moves back one token's time
    /// (a bucket that was full stays full).
    fn refund(&self) {
        let _ = self
            .store
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(self.period))
            });
    }
}

impl<C: Clock> Limit<SourceKey, SourceStore, C> {
    fn refund(&self, ip: IpAddr) {
        if let Some(tat) = self.store.map().get_mut(&ip) {
            *tat = tat.saturating_sub(self.period);
        }
    }
}

/// The limits of one trunk, built.
#[derive(Debug)]
struct TrunkGates<C: Clock> {
    trunk: Option<Limit<Charge, Bucket, C>>,
    over_limit: OverLimit,
    per_source: Option<Limit<SourceKey, SourceStore, C>>,
    over_limit_per_source: OverLimit,
}

/// Every limit of the node, built once at start-up (a rules reload keeps it).
#[derive(Debug)]
pub struct Limits<C: Clock = DefaultClock> {
    node: Option<Limit<Charge, Bucket, C>>,
    trunks: HashMap<String, TrunkGates<C>>,
    retry_after: u32,
}

impl Limits<DefaultClock> {
    pub fn new(cfg: &LimitsConfig) -> Self {
        Self::with_clock(cfg, &DefaultClock::default())
    }
}

impl Default for Limits<DefaultClock> {
    /// No limits.
    fn default() -> Self {
        Self::new(&LimitsConfig::default())
    }
}

/// The end of explain's `limits` line.
const DRY: &str = " (read, not charged: a dry run)";

/// Appends one part of explain's `limits` line.
fn note(out: &mut Option<String>, part: std::fmt::Arguments<'_>) {
    if let Some(s) = out {
        if !s.is_empty() {
            s.push_str("; ");
        }
        let _ = s.write_fmt(part);
    }
}

fn verdict_text(v: &Verdict, over: &OverLimit) -> String {
    match v {
        Verdict::Pass { left } => format!("passes, {left} left after it"),
        Verdict::Over { wait } => format!(
            "over it (next token in {:.2} s): {over}",
            wait.as_secs_f64()
        ),
    }
}

impl<C: Clock + Clone> Limits<C> {
    /// The limits `cfg` sets, timed by `clock` (tests give governor's fake clock).
    pub fn with_clock(cfg: &LimitsConfig, clock: &C) -> Self {
        let trunks = cfg
            .trunks
            .iter()
            .map(|(name, t)| {
                let gates = TrunkGates {
                    trunk: t
                        .trunk
                        .map(|r| Limit::new(r, Bucket::default(), clock.clone())),
                    over_limit: t.over_limit.clone(),
                    per_source: t
                        .per_source
                        .map(|r| Limit::new(r, SourceStore::new(MAX_SOURCES), clock.clone())),
                    over_limit_per_source: t.over_limit_per_source.clone(),
                };
                (name.clone(), gates)
            })
            .collect();
        Self {
            node: cfg
                .node
                .map(|r| Limit::new(r, Bucket::default(), clock.clone())),
            trunks,
            retry_after: cfg.retry_after,
        }
    }

    /// Whether any limit is configured.
    pub fn is_empty(&self) -> bool {
        self.node.is_none() && self.trunks.is_empty()
    }

    /// Checks a call from `trunk` (and `source`) against its source's, its trunk's and the
    /// node's limits, in that order, and stops at the first it is over. [`Charge::Live`] takes
    /// a token from each only when the call passes all three; [`Charge::Dry`] only reads.
    /// Emergency calls are never limited and never charged. `report` asks for explain's line.
    pub fn check(
        &self,
        trunk: &str,
        source: Option<IpAddr>,
        emergency: bool,
        charge: Charge,
        report: bool,
    ) -> Checked {
        if self.is_empty() {
            return Checked::default();
        }
        let gates = self.trunks.get(trunk);
        if self.node.is_none() && gates.is_none() {
            return Checked::default();
        }
        let mut notes = report.then(String::new);
        if emergency {
            note(
                &mut notes,
                format_args!("emergency call: never limited, nothing charged"),
            );
            return Checked {
                limited: None,
                report: notes,
            };
        }
        let live = charge == Charge::Live;
        let limited = |scope, action: &OverLimit, mut notes: Option<String>| {
            if let (false, Some(n)) = (live, notes.as_mut()) {
                n.push_str(DRY);
            }
            Checked {
                limited: Some(Limited {
                    scope,
                    action: action.clone(),
                    retry_after: self.retry_after,
                }),
                report: notes,
            }
        };
        let mut charged_source = None;
        if let Some((g, l)) = gates.and_then(|g| g.per_source.as_ref().map(|l| (g, l))) {
            match source {
                Some(ip) => {
                    let v = l.check(&SourceKey { ip, charge });
                    note(
                        &mut notes,
                        format_args!(
                            "source {ip} {}: {}",
                            l.rate,
                            verdict_text(&v, &g.over_limit_per_source)
                        ),
                    );
                    if let Verdict::Over { .. } = v {
                        return limited(Scope::Source, &g.over_limit_per_source, notes);
                    }
                    charged_source = Some((l, ip));
                }
                None => note(
                    &mut notes,
                    format_args!("source {}: not checked (no source address)", l.rate),
                ),
            }
        }
        let refund_source = |charged: Option<(&Limit<SourceKey, SourceStore, C>, IpAddr)>| {
            if let (true, Some((l, ip))) = (live, charged) {
                l.refund(ip);
            }
        };
        let mut charged_trunk = None;
        if let Some((g, l)) = gates.and_then(|g| g.trunk.as_ref().map(|l| (g, l))) {
            let v = l.check(&charge);
            note(
                &mut notes,
                format_args!(
                    "trunk {trunk} {}: {}",
                    l.rate,
                    verdict_text(&v, &g.over_limit)
                ),
            );
            if let Verdict::Over { .. } = v {
                refund_source(charged_source);
                return limited(Scope::Trunk, &g.over_limit, notes);
            }
            charged_trunk = Some(l);
        }
        if let Some(l) = &self.node {
            const NODE: OverLimit = OverLimit::Reject(503);
            let v = l.check(&charge);
            note(
                &mut notes,
                format_args!("node {}: {}", l.rate, verdict_text(&v, &NODE)),
            );
            if let Verdict::Over { .. } = v {
                if live {
                    if let Some(t) = charged_trunk {
                        t.refund();
                    }
                }
                refund_source(charged_source);
                return limited(Scope::Node, &NODE, notes);
            }
        }
        if let (false, Some(n)) = (live, notes.as_mut()) {
            n.push_str(DRY);
        }
        Checked {
            limited: None,
            report: notes,
        }
    }

    /// Drops the source addresses whose buckets are full again and gives the memory back;
    /// sets `tollgate_rate_limit_sources{trunk}` and counts the addresses left untracked since
    /// the last sweep (`tollgate_rate_limit_untracked_total{trunk}`).
    pub fn sweep(&self) {
        for (name, g) in &self.trunks {
            let Some(l) = &g.per_source else { continue };
            l.gate.retain_recent();
            l.gate.shrink_to_fit();
            metrics::gauge!("tollgate_rate_limit_sources", "trunk" => name.clone())
                .set(l.gate.len() as f64);
            let untracked = l.store.0.untracked.swap(0, Ordering::Relaxed);
            if untracked > 0 {
                metrics::counter!("tollgate_rate_limit_untracked_total", "trunk" => name.clone())
                    .increment(untracked);
            }
        }
    }

    /// The source addresses `trunk`'s per-source limit tracks now.
    pub fn sources(&self, trunk: &str) -> usize {
        self.trunks
            .get(trunk)
            .and_then(|g| g.per_source.as_ref())
            .map_or(0, |l| l.gate.len())
    }

    /// Whether any trunk limits per source (the sweep has work).
    pub fn per_source(&self) -> bool {
        self.trunks.values().any(|g| g.per_source.is_some())
    }
}

/// Sweeps the per-source buckets every `every` until the limits are dropped.
pub fn spawn_sweep(limits: &Arc<Limits>, every: Duration) {
    if !limits.per_source() {
        return;
    }
    let weak: Weak<Limits> = Arc::downgrade(limits);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(limits) = weak.upgrade() else { break };
            limits.sweep();
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn cfg(node: Option<Rate>, trunk: Option<Rate>, per_source: Option<Rate>) -> LimitsConfig {
        let mut trunks = HashMap::new();
        trunks.insert(
            "carrier".to_owned(),
            TrunkLimits {
                trunk,
                over_limit: OverLimit::Reject(486),
                per_source,
                over_limit_per_source: OverLimit::Reject(480),
            },
        );
        LimitsConfig {
            node,
            trunks,
            retry_after: 7,
        }
    }

    fn scope(c: &Checked) -> Option<Scope> {
        c.limited.as_ref().map(|l| l.scope)
    }

    #[test]
    fn the_burst_passes_then_one_call_per_token() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(&cfg(None, Some(Rate::new(5.0, Some(5))), None), &clock);
        let live = |src| l.check("carrier", ip(src), false, Charge::Live, false);
        for _ in 0..5 {
            assert_eq!(scope(&live("10.0.0.1")), None);
        }
        let over = live("10.0.0.1");
        assert_eq!(
            over.limited,
            Some(Limited {
                scope: Scope::Trunk,
                action: OverLimit::Reject(486),
                retry_after: 7
            })
        );
        clock.advance(Duration::from_millis(199));
        assert_eq!(scope(&live("10.0.0.1")), Some(Scope::Trunk));
        clock.advance(Duration::from_millis(1));
        assert_eq!(scope(&live("10.0.0.1")), None);
        assert_eq!(scope(&live("10.0.0.1")), Some(Scope::Trunk));
        // Other trunks (and the unknown pseudo-trunk) have no limit here.
        assert_eq!(
            scope(&l.check("other", ip("10.0.0.1"), false, Charge::Live, false)),
            None
        );
    }

    #[test]
    fn emergency_calls_are_never_limited_nor_charged() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(
            &cfg(
                Some(Rate::new(1.0, Some(1))),
                Some(Rate::new(1.0, Some(1))),
                Some(Rate::new(1.0, Some(1))),
            ),
            &clock,
        );
        for _ in 0..10 {
            let c = l.check("carrier", ip("10.0.0.1"), true, Charge::Live, true);
            assert_eq!(c.limited, None);
            assert!(c.report.unwrap().contains("emergency"));
        }
        // Nothing was charged: the one token of each bucket is still there.
        assert_eq!(
            scope(&l.check("carrier", ip("10.0.0.1"), false, Charge::Live, false)),
            None
        );
        assert_eq!(
            scope(&l.check("carrier", ip("10.0.0.1"), false, Charge::Live, false)),
            Some(Scope::Source)
        );
    }

    #[test]
    fn a_dry_run_reads_and_charges_nothing() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(
            &cfg(
                Some(Rate::new(2.0, Some(2))),
                Some(Rate::new(2.0, Some(2))),
                Some(Rate::new(2.0, Some(2))),
            ),
            &clock,
        );
        for _ in 0..20 {
            let c = l.check("carrier", ip("10.0.0.1"), false, Charge::Dry, true);
            assert_eq!(c.limited, None);
            let r = c.report.unwrap();
            assert!(
                r.contains("trunk carrier 2 cps burst 2: passes, 1 left"),
                "{r}"
            );
            assert!(r.ends_with("(read, not charged: a dry run)"), "{r}");
        }
        assert_eq!(l.sources("carrier"), 0, "a dry run adds no source");
        for _ in 0..2 {
            assert_eq!(
                scope(&l.check("carrier", ip("10.0.0.1"), false, Charge::Live, false)),
                None
            );
        }
        // Now the live call would be limited, and explain says so, without charging.
        let c = l.check("carrier", ip("10.0.0.1"), false, Charge::Dry, true);
        assert_eq!(scope(&c), Some(Scope::Source));
        assert!(c
            .report
            .unwrap()
            .contains("over it (next token in 0.50 s): 480"));
    }

    #[test]
    fn per_source_limits_one_address_and_not_another() {
        let clock = FakeRelativeClock::default();
        let l = Limits::with_clock(
            &cfg(
                None,
                Some(Rate::new(100.0, None)),
                Some(Rate::new(1.0, Some(3))),
            ),
            &clock,
        );
        let live = |src| scope(&l.check("carrier", ip(src), false, Charge::Live, false));
        for _ in 0..3 {
            assert_eq!(live("10.0.0.1"), None);
        }
        for _ in 0..5 {
            assert_eq!(live("10.0.0.1"), Some(Scope::Source));
        }
        for _ in 0..3 {
            assert_eq!(live("10.0.0.2"), None);
        }
        assert_eq!(l.sources("carrier"), 2);
        // Full again after 3 s: the sweep forgets both.
        clock.advance(Duration::from_secs(4));
        l.sweep();
        assert_eq!(l.sources("carrier"), 0);
    }

    #[test]
    fn a_refused_call_costs_no_bucket_a_token() {
        let clock = FakeRelativeClock::default();
        // Node: 2 at once; trunk: 3 at once; source: 10 at once.
        let l = Limits::with_clock(
            &cfg(
                Some(Rate::new(1.0, Some(2))),
                Some(Rate::new(1.0, Some(3))),
                Some(Rate::new(1.0, Some(10))),
            ),
            &clock,
        );
        let live = || scope(&l.check("carrier", ip("10.0.0.1"), false, Charge::Live, false));
        assert_eq!(live(), None);
        assert_eq!(live(), None);
        // The node is empty: refused by it, and the trunk's and source's tokens given back.
        for _ in 0..10 {
            assert_eq!(live(), Some(Scope::Node));
        }
        // Another trunk has nothing of this one's, but the node is shared.
        assert_eq!(
            scope(&l.check("other", ip("10.0.0.9"), false, Charge::Live, false)),
            Some(Scope::Node)
        );
        clock.advance(Duration::from_secs(2));
        // Two node tokens back: the trunk still has the 1 it had left plus the 2 that came back
        // (capped at 3), so both pass; had the refused calls been charged it would be empty.
        assert_eq!(live(), None);
        assert_eq!(live(), None);
        let c = l.check("carrier", ip("10.0.0.1"), false, Charge::Dry, true);
        let r = c.report.clone().unwrap();
        assert!(
            r.contains("trunk carrier 1 cps burst 3: passes, 0 left"),
            "{r}"
        );
        assert!(
            r.contains("source 10.0.0.1 1 cps burst 10: passes, 7 left"),
            "{r}"
        );
        assert!(r.contains("node 1 cps burst 2: over it"), "{r}");
        assert_eq!(scope(&c), Some(Scope::Node));
    }

    #[test]
    fn the_source_map_is_bounded_and_a_new_address_past_it_passes_untracked() {
        let clock = FakeRelativeClock::default();
        let store = SourceStore::new(3);
        let l = Limit::new(Rate::new(1.0, Some(1)), store.clone(), clock.clone());
        for i in 0..10u8 {
            let key = SourceKey {
                ip: IpAddr::from([10, 0, 0, i]),
                charge: Charge::Live,
            };
            assert!(matches!(l.check(&key), Verdict::Pass { .. }));
        }
        assert_eq!(store.map().len(), 3);
        assert_eq!(store.0.untracked.load(Ordering::Relaxed), 7);
        // A tracked address is still limited.
        let known = SourceKey {
            ip: IpAddr::from([10, 0, 0, 0]),
            charge: Charge::Live,
        };
        assert!(matches!(l.check(&known), Verdict::Over { .. }));
    }

    #[test]
    fn over_limit_parses_codes_and_queues_by_the_one_queue_rule() {
        assert_eq!(OverLimit::parse("503"), Ok(OverLimit::Reject(503)));
        assert_eq!(OverLimit::parse("486"), Ok(OverLimit::Reject(486)));
        assert_eq!(OverLimit::parse("480"), Ok(OverLimit::Reject(480)));
        assert_eq!(
            OverLimit::parse("queue:over.flow!"),
            Ok(OverLimit::Queue(QueueName::new("over.flow!").unwrap()))
        );
        assert!(OverLimit::parse("404").is_err());
        assert!(OverLimit::parse("queue:a b").is_err());
        assert!(OverLimit::parse("queue:").is_err());
        assert_eq!(Rate::default_burst(0.1), 1);
        assert_eq!(Rate::default_burst(2.5), 3);
        assert_eq!(Rate::default_burst(20.0), 20);
    }

    #[test]
    fn the_decision_is_a_503_with_retry_after_or_a_302_to_the_queue() {
        let l = Limited {
            scope: Scope::Node,
            action: OverLimit::Reject(503),
            retry_after: 9,
        };
        let d = l.decision("acd.example.net", "v1");
        assert_eq!(
            d.action,
            DecisionAction::Reject {
                code: 503,
                reason: None,
                call_info: None,
                retry_after: Some(9)
            }
        );
        assert_eq!(d.rule, "rate-limit/node");
        let busy = Limited {
            action: OverLimit::Reject(486),
            ..l.clone()
        };
        assert!(matches!(
            busy.decision("h", "v").action,
            DecisionAction::Reject {
                code: 486,
                retry_after: None,
                ..
            }
        ));
        let q = Limited {
            scope: Scope::Trunk,
            action: OverLimit::Queue(QueueName::new("overflow").unwrap()),
            retry_after: 9,
        };
        assert_eq!(
            q.decision("acd.example.net", "v1").action,
            DecisionAction::Route(Target::new("overflow", "acd.example.net"))
        );
    }
}
