//! The pop hub: the call path hands a pop over with one `try_send`; a task off the call path
//! serializes it once, stores it by call reference, broadcasts it to local subscribers and
//! passes it to webhooks and to Redis for the other nodes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, watch};

use crate::pop::ScreenPop;

/// One pop as subscribers get it: serialized once, shared by every stream.
#[derive(Debug)]
pub struct PopEvent {
    pub call_ref: String,
    pub queue: String,
    body: Body,
    pub stored_at: Instant,
}

/// A pop's JSON: as is for live streams, webhooks and Redis (short-lived), deflated (raw
/// DEFLATE, RFC 1951) while stored for fetches by call reference, where up to `max_pops` of
/// them sit for the retention: a stored pop takes about 40 % of its JSON's bytes (1.3 kB of
/// JSON a pop, 100,000 pops: 128 MB as text; README "Memory").
#[derive(Debug)]
enum Body {
    Plain(Arc<str>),
    Packed(Box<[u8]>),
}

impl PopEvent {
    /// A live pop (as streamed, and as handed to webhooks and Redis).
    pub fn new(call_ref: String, queue: String, json: Arc<str>, stored_at: Instant) -> Self {
        Self {
            call_ref,
            queue,
            body: Body::Plain(json),
            stored_at,
        }
    }

    /// The same pop, its JSON deflated, for the store.
    fn packed(&self) -> Self {
        let body = match &self.body {
            Body::Plain(json) => match deflate(json.as_bytes()) {
                Some(packed) => Body::Packed(packed),
                // The compressor failed (it does not, on a Vec): kept as it is.
                None => Body::Plain(Arc::clone(json)),
            },
            Body::Packed(b) => Body::Packed(b.clone()),
        };
        Self {
            call_ref: self.call_ref.clone(),
            queue: self.queue.clone(),
            body,
            stored_at: self.stored_at,
        }
    }

    /// The pop's JSON (inflated when stored).
    pub fn json(&self) -> std::borrow::Cow<'_, str> {
        match &self.body {
            Body::Plain(json) => std::borrow::Cow::Borrowed(json),
            Body::Packed(b) => std::borrow::Cow::Owned(inflate(b)),
        }
    }

    /// Heap bytes the pop's body holds.
    pub fn body_bytes(&self) -> usize {
        match &self.body {
            Body::Plain(json) => json.len(),
            Body::Packed(b) => b.len(),
        }
    }
}

/// Raw DEFLATE of `json` with this thread's compressor, reset between pops. A compressor of
/// its own per pop allocated and zeroed ~300 kB of tables, and freeing them unmapped pages on
/// every core: perf on the soak run of 2026-12-07 put that at about a fifth of the node's CPU
/// at 4,000 calls/s, more than the compression itself.
fn deflate(json: &[u8]) -> Option<Box<[u8]>> {
    use std::cell::RefCell;
    thread_local! {
        static COMPRESS: RefCell<flate2::Compress> =
            RefCell::new(flate2::Compress::new(flate2::Compression::fast(), false));
    }
    COMPRESS.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let mut out = Vec::with_capacity(json.len() / 2 + 64);
        loop {
            let read = usize::try_from(c.total_in()).ok()?;
            let rest = json.get(read..).unwrap_or_default();
            match c.compress_vec(rest, &mut out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => return Some(out.into_boxed_slice()),
                // Out of room: compress_vec writes only into the spare capacity.
                Ok(_) => out.reserve(out.capacity().max(256)),
                Err(_) => return None,
            }
        }
    })
}

fn inflate(packed: &[u8]) -> String {
    use std::io::Read as _;
    let mut out = String::with_capacity(packed.len() * 3);
    // Only `deflate` wrote these bytes, from a str: they inflate to valid UTF-8.
    let _ = flate2::read::DeflateDecoder::new(packed).read_to_string(&mut out);
    out
}

/// The fields a node needs to route a pop it got as JSON (from Redis).
#[derive(Deserialize)]
pub(crate) struct Head {
    pub node: String,
    pub call_ref: String,
    pub queue: String,
}

/// Pops by call reference, oldest evicted first (past the retention or the capacity).
#[derive(Debug, Default)]
struct Store {
    by_ref: HashMap<String, Arc<PopEvent>>,
    order: VecDeque<Arc<PopEvent>>,
}

impl Store {
    fn insert(&mut self, ev: Arc<PopEvent>, retention: Duration, capacity: usize) {
        let now = ev.stored_at;
        self.by_ref.insert(ev.call_ref.clone(), Arc::clone(&ev));
        self.order.push_back(ev);
        self.evict(now, retention, capacity);
    }

    /// Drops the pops past the retention at `now` (when no pop arrives to push them out) and
    /// gives the tables' memory back once they are mostly empty.
    fn sweep(&mut self, now: Instant, retention: Duration, capacity: usize) {
        self.evict(now, retention, capacity);
        if self.order.capacity() > 64 && self.order.len() < self.order.capacity() / 4 {
            self.order.shrink_to_fit();
        }
        if self.by_ref.capacity() > 64 && self.by_ref.len() < self.by_ref.capacity() / 4 {
            self.by_ref.shrink_to_fit();
        }
    }

    fn evict(&mut self, now: Instant, retention: Duration, capacity: usize) {
        while let Some(front) = self.order.front() {
            let expired = now.saturating_duration_since(front.stored_at) > retention;
            if !expired && self.order.len() <= capacity {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                // A call ref stored twice (a pop relayed back) keeps its newest entry.
                if self
                    .by_ref
                    .get(&old.call_ref)
                    .is_some_and(|cur| Arc::ptr_eq(cur, &old))
                {
                    self.by_ref.remove(&old.call_ref);
                }
            }
        }
    }
}

/// How often the hub drops expired pops when none arrive to push them out.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Limits of the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How long a pop stays fetchable by call reference.
    pub retention: Duration,
    /// At most this many pops are kept (the oldest go first).
    pub capacity: usize,
    /// Pops waiting for the hub task; a full queue drops the pop (counted), never the call.
    pub queue: usize,
    /// Pops a slow subscriber may fall behind before it skips (and is told how many).
    pub subscriber_buffer: usize,
    /// This node's name in pops, so a node ignores its own pops coming back from Redis.
    pub node: String,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(3600),
            capacity: 100_000,
            queue: 8192,
            subscriber_buffer: 1024,
            node: default_node(),
        }
    }
}

/// A random node name: unique per process unless configured.
pub fn default_node() -> String {
    let bytes: [u8; 4] = rand::random();
    format!("node-{}", crate::auth::hex(&bytes))
}

/// Shared state of the hub.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    store: Mutex<Store>,
    live: broadcast::Sender<Arc<PopEvent>>,
    /// Redis subscription up (always true without Redis): `/readyz` reports it.
    pub(crate) bus_ready: AtomicBool,
    stop: watch::Sender<bool>,
}

impl Hub {
    pub(crate) fn new(cfg: HubConfig) -> Arc<Self> {
        let (live, _) = broadcast::channel(cfg.subscriber_buffer.max(1));
        let (stop, _) = watch::channel(false);
        Arc::new(Self {
            cfg,
            store: Mutex::new(Store::default()),
            live,
            bus_ready: AtomicBool::new(true),
            stop,
        })
    }

    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PopEvent>> {
        self.live.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Resolves when the API shuts down.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A stored pop, unless older than the retention.
    pub fn get(&self, call_ref: &str) -> Option<Arc<PopEvent>> {
        let store = self.store.lock().ok()?;
        store
            .by_ref
            .get(call_ref)
            .filter(|e| e.stored_at.elapsed() <= self.cfg.retention)
            .cloned()
    }

    /// The newest stored pops first, at most `limit`, that `allow` lets through.
    pub fn recent(&self, limit: usize, allow: impl Fn(&str) -> bool) -> Vec<Arc<PopEvent>> {
        let Ok(store) = self.store.lock() else {
            return Vec::new();
        };
        store
            .order
            .iter()
            .rev()
            .filter(|e| e.stored_at.elapsed() <= self.cfg.retention)
            .filter(|e| allow(&e.queue))
            .filter(|e| {
                store
                    .by_ref
                    .get(&e.call_ref)
                    .is_some_and(|cur| Arc::ptr_eq(cur, e))
            })
            .take(limit)
            .cloned()
            .collect()
    }

    /// The stored pops published after `last` (a call reference), oldest first, that `allow`
    /// lets through: what a reconnecting stream missed. `None` when `last` is no longer stored
    /// (past the retention or the capacity), so the gap cannot be filled.
    pub fn since(&self, last: &str, allow: impl Fn(&str) -> bool) -> Option<Vec<Arc<PopEvent>>> {
        let store = self.store.lock().ok()?;
        let current = store.by_ref.get(last)?;
        let at = store.order.iter().rposition(|e| Arc::ptr_eq(e, current))?;
        Some(
            store
                .order
                .iter()
                .skip(at + 1)
                .filter(|e| e.stored_at.elapsed() <= self.cfg.retention)
                .filter(|e| allow(&e.queue))
                .cloned()
                .collect(),
        )
    }

    /// Stores and broadcasts; returns the event for webhooks and Redis.
    /// Drops expired pops without waiting for new ones; the hub task runs it every few seconds.
    pub(crate) fn sweep(&self) {
        if let Ok(mut store) = self.store.lock() {
            store.sweep(Instant::now(), self.cfg.retention, self.cfg.capacity);
            metrics::gauge!("tollgate_pops_stored").set(store.by_ref.len() as f64);
        }
    }

    pub(crate) fn deliver(&self, call_ref: String, queue: String, json: Arc<str>) -> Arc<PopEvent> {
        let ev = Arc::new(PopEvent::new(call_ref, queue, json, Instant::now()));
        let stored = Arc::new(ev.packed());
        if let Ok(mut store) = self.store.lock() {
            store.insert(stored, self.cfg.retention, self.cfg.capacity);
        }
        // No subscriber is not an error: the pop stays fetchable.
        let _ = self.live.send(Arc::clone(&ev));
        metrics::counter!("tollgate_pops_delivered_total").increment(1);
        ev
    }

    /// A pop from another node (JSON from Redis); its own come back too and are skipped.
    pub(crate) fn deliver_remote(&self, json: &str) {
        let Ok(head) = serde_json::from_str::<Head>(json) else {
            metrics::counter!("tollgate_pops_dropped_total", "reason" => "bad-remote").increment(1);
            return;
        };
        if head.node == self.cfg.node {
            return;
        }
        self.deliver(head.call_ref, head.queue, json.into());
    }
}

/// Resolves once the API is stopping (the watch guard is not held across an await).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The call path's handle: cheap to clone, never waits.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<ScreenPop>,
    node: Arc<str>,
}

impl Publisher {
    /// This node's name, for [`ScreenPop::build`].
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Hands the pop to the hub. Never blocks: when the hub is behind, the pop is dropped and
    /// counted, and the call goes on.
    pub fn publish(&self, pop: ScreenPop) {
        match self.tx.try_send(pop) {
            Ok(()) => metrics::counter!("tollgate_pops_published_total").increment(1),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("tollgate_pops_dropped_total", "reason" => "queue-full")
                    .increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::counter!("tollgate_pops_dropped_total", "reason" => "stopped")
                    .increment(1);
            }
        }
    }
}

/// Where a local pop goes after the hub.
pub(crate) struct Outlets {
    pub webhooks: Option<crate::webhook::Webhooks>,
    pub bus: Option<mpsc::Sender<Arc<str>>>,
}

/// Starts the hub task; it runs until the hub stops or every publisher is gone.
pub(crate) fn spawn(hub: &Arc<Hub>, outlets: Outlets) -> Publisher {
    let (tx, mut rx) = mpsc::channel::<ScreenPop>(hub.cfg.queue.max(1));
    let publisher = Publisher {
        tx,
        node: hub.cfg.node.as_str().into(),
    };
    let hub = Arc::clone(hub);
    let mut stop = hub.stopping();
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let pop = tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => break },
                _ = sweep.tick() => {
                    hub.sweep();
                    continue;
                }
                _ = crate::hub::stopped(&mut stop) => break,
            };
            let json: Arc<str> = match serde_json::to_string(&pop) {
                Ok(s) => s.into(),
                Err(e) => {
                    tracing::warn!(error = %e, "screen pop not serializable");
                    continue;
                }
            };
            let ev = hub.deliver(pop.call_ref, pop.queue, Arc::clone(&json));
            if let Some(w) = &outlets.webhooks {
                w.enqueue(&ev);
            }
            if let Some(bus) = &outlets.bus {
                if bus.try_send(json).is_err() {
                    metrics::counter!("tollgate_pops_dropped_total", "reason" => "redis-queue-full")
                        .increment(1);
                }
            }
        }
    });
    publisher
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(r: &str, at: Instant) -> Arc<PopEvent> {
        Arc::new(PopEvent::new(r.into(), "q".into(), "{}".into(), at))
    }

    #[test]
    fn a_stored_pop_is_deflated_and_reads_back_the_same() {
        let json: String = format!(
            "{{\"call_ref\":\"r1\",\"ani\":\"+12125550100\",\"geo\":{{\"region\":\"US\",\
             \"description\":\"New York, NY\"}},\"skills\":[{}]}}",
            (0..40)
                .map(|i| format!("\"skill-{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let live = PopEvent::new(
            "r1".into(),
            "q".into(),
            json.as_str().into(),
            Instant::now(),
        );
        let stored = live.packed();
        assert_eq!(stored.json(), json.as_str());
        assert_eq!(live.json(), json.as_str());
        assert!(
            stored.body_bytes() < json.len() / 2,
            "{} of {}",
            stored.body_bytes(),
            json.len()
        );
    }

    /// One compressor serves every pop of a thread: each, short or long, alike or not, reads
    /// back as written (a compressor not reset would carry one pop's state into the next).
    #[test]
    fn pops_deflated_one_after_another_each_read_back() {
        let mut seed = 7u64;
        for n in 0..300 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = usize::try_from(seed >> 52).unwrap() * (1 + n % 7);
            let json: String = (0..len)
                .map(|i| char::from(b'a' + u8::try_from((seed >> (i % 48)) % 26).unwrap()))
                .collect();
            let live = PopEvent::new("r".into(), "q".into(), json.as_str().into(), Instant::now());
            let stored = live.packed();
            assert!(matches!(stored.body, Body::Packed(_)), "pop {n}");
            assert_eq!(stored.json(), json.as_str(), "pop {n} of {len} bytes");
        }
    }

    #[test]
    fn store_evicts_by_age_and_capacity() {
        let mut s = Store::default();
        let t0 = Instant::now();
        s.insert(ev("a", t0), Duration::from_secs(10), 2);
        s.insert(ev("b", t0), Duration::from_secs(10), 2);
        s.insert(ev("c", t0), Duration::from_secs(10), 2);
        assert!(!s.by_ref.contains_key("a"));
        assert!(s.by_ref.contains_key("b") && s.by_ref.contains_key("c"));
        s.insert(
            ev("d", t0 + Duration::from_secs(11)),
            Duration::from_secs(10),
            5,
        );
        assert_eq!(s.by_ref.len(), 1);
        assert_eq!(s.order.len(), 1);
    }

    #[test]
    fn sweep_drops_expired_pops_without_a_new_one_and_shrinks() {
        let mut s = Store::default();
        let t0 = Instant::now();
        let keep = Duration::from_secs(10);
        for i in 0..1000 {
            s.insert(ev(&format!("r{i}"), t0), keep, 10_000);
        }
        let cap = s.by_ref.capacity();
        s.sweep(t0 + Duration::from_secs(5), keep, 10_000);
        assert_eq!(s.by_ref.len(), 1000, "within the retention: kept");
        s.sweep(t0 + Duration::from_secs(11), keep, 10_000);
        assert_eq!((s.by_ref.len(), s.order.len()), (0, 0));
        assert!(
            s.by_ref.capacity() < cap / 4,
            "{} of {cap}",
            s.by_ref.capacity()
        );
    }
}
