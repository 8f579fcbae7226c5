//! The UDP socket: batched receive (`recvmmsg`, [`Batch`]) and send (`sendmmsg`, [`Outbox`]),
//! and its side of overload: the receive buffer's size, each datagram's age in the socket's
//! receive queue (the kernel's receive timestamp, `SO_TIMESTAMPNS`), the gate that turns that
//! age into "shed new INVITEs now", and a bounded queue for responses a full send buffer
//! refused.

use std::cell::RefCell;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    getsockopt, recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned,
    MsgFlags, MultiHeaders, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Responses waiting for room in a socket's send buffer, at most: past it a response is
/// dropped and counted (`tollgate_sip_send_dropped_total`); the peer's retransmission, or timer
/// G, sends it again. About 4,096 × a response's ~0.5 kB: ~2 MB a socket at worst.
pub(super) const SEND_BACKLOG: usize = 4096;

/// Once shedding, the gate sheds INVITEs older than this fraction of the bound, until
/// [`SHED_HOLD`] passes with no datagram that old.
const SHED_LOW_DIVISOR: u32 = 4;

/// How long the queue must stay young before the gate goes back to the full bound.
const SHED_HOLD: Duration = Duration::from_secs(1);

/// One UDP socket of the transport: the socket and the queue of responses it could not send at
/// once.
#[derive(Debug)]
pub(super) struct Udp {
    socket: Arc<UdpSocket>,
    backlog: mpsc::Sender<(Arc<[u8]>, SocketAddr)>,
}

impl Udp {
    /// Wraps a bound socket: sets its receive buffer to `receive_buffer` bytes (0: the
    /// system's default) and turns on receive timestamps, then starts the task that sends
    /// what the send buffer refused. Failures are logged, not fatal: without timestamps
    /// nothing is shed by age.
    pub(super) fn new(
        socket: UdpSocket,
        receive_buffer: usize,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        tune(&socket, receive_buffer);
        let socket = Arc::new(socket);
        let (backlog, mut rx) = mpsc::channel::<(Arc<[u8]>, SocketAddr)>(SEND_BACKLOG);
        let sender = Arc::clone(&socket);
        let task = tokio::spawn(async move {
            while let Some((bytes, peer)) = rx.recv().await {
                if let Err(e) = sender.send_to(&bytes, peer).await {
                    warn!(%peer, error = %e, "udp send failed");
                }
            }
        });
        (Arc::new(Self { socket, backlog }), task)
    }

    pub(super) fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sends now, without waiting: while this thread handles a received batch of this
    /// socket's ([`Outbox::open`]), onto the batch's `sendmmsg`; else one `sendto`. A full
    /// send buffer puts the datagram on the socket's bounded backlog, and past
    /// [`SEND_BACKLOG`] it is dropped and counted.
    pub(super) fn send(&self, bytes: &Arc<[u8]>, peer: SocketAddr) {
        let fd = self.socket.as_raw_fd();
        let batched = OPEN.with(|open| match &mut *open.borrow_mut() {
            Some((at, items)) if *at == fd => {
                items.push((Arc::clone(bytes), peer));
                true
            }
            _ => false,
        });
        if !batched {
            self.send_now(bytes, peer);
        }
    }

    fn send_now(&self, bytes: &Arc<[u8]>, peer: SocketAddr) {
        match self.socket.try_send_to(bytes, peer) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.backlog.try_send((Arc::clone(bytes), peer)).is_err() {
                    metrics::counter!("tollgate_sip_send_dropped_total").increment(1);
                }
            }
            Err(e) => warn!(%peer, error = %e, "udp send failed"),
        }
    }

    /// Responses waiting in the backlog.
    pub(super) fn backlogged(&self) -> usize {
        SEND_BACKLOG.saturating_sub(self.backlog.capacity())
    }

    /// Receives up to [`BATCH`] datagrams into `rx` (one `recvmmsg`), waiting until at least
    /// one is there; returns how many.
    ///
    /// A batch short of [`BATCH`] emptied the socket's queue: the closure then reports
    /// `WouldBlock` to tokio, which clears the socket's readiness, so the next call waits for
    /// the kernel's next event instead of spending a `recvmmsg` to learn the queue is empty
    /// (one system call per wake-up saved at low rates). No datagram is missed: one that
    /// arrives after the `recvmmsg` raises a new edge-triggered event, which the runtime reads
    /// at its next poll of the kernel.
    pub(super) async fn recv_batch(&self, rx: &mut Batch) -> io::Result<usize> {
        let fd = self.socket.as_raw_fd();
        loop {
            self.socket.readable().await?;
            let read = self.socket.try_io(Interest::READABLE, || {
                let n = recv_many(fd, rx)?;
                if n < BATCH {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !rx.got.is_empty() {
                        return Ok(rx.got.len());
                    }
                }
                other => return other,
            }
        }
    }
}

/// Datagrams read by one `recvmmsg`, and responses sent by one `sendmmsg`, at most.
pub(super) const BATCH: usize = 32;

/// What one receive loop reuses from batch to batch: [`BATCH`] buffers (each one byte more
/// than a message may have, so an oversized one is seen as such), the kernel's headers with
/// room for each datagram's timestamp, and what the last batch held.
pub(super) struct Batch {
    bufs: Vec<Vec<u8>>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Per datagram of the last batch: length, source, wait in the receive queue.
    got: Vec<(usize, SocketAddr, Option<Duration>)>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("got", &self.got).finish()
    }
}

impl Batch {
    pub(super) fn new(size: usize) -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0u8; size]).collect(),
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec))),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// The `i`-th datagram of the last batch: its bytes, source and wait.
    pub(super) fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, Option<Duration>)> {
        let (n, peer, age) = *self.got.get(i)?;
        Some((self.bufs.get(i)?.get(..n)?, peer, age))
    }
}

fn recv_many(fd: RawFd, rx: &mut Batch) -> io::Result<usize> {
    rx.got.clear();
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> = rx
        .bufs
        .iter_mut()
        .map(|b| [IoSliceMut::new(b.as_mut_slice())])
        .collect();
    let received = recvmmsg(
        fd,
        &mut rx.headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok();
    for msg in received {
        let peer = msg.address.and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::from(*v4))
                .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6)))
        });
        let mut age = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    age = now.and_then(|now| age_at(ts, now));
                }
            }
        }
        // A datagram without an IP source cannot be answered: its slot stays, empty.
        let peer = peer.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let n = if peer.port() == 0 { 0 } else { msg.bytes };
        rx.got.push((n, peer, age));
    }
    Ok(rx.got.len())
}

/// Responses collected for one `sendmmsg`: their bytes and where they go.
type Collected = Vec<(Arc<[u8]>, SocketAddr)>;

thread_local! {
    /// The batch of responses this thread is collecting for one socket (by its descriptor),
    /// between [`Outbox::open`] and [`Outbox::flush`].
    static OPEN: RefCell<Option<(RawFd, Collected)>> = const { RefCell::new(None) };
}

/// The responses to one received batch, sent together: [`Outbox::open`] before handling the
/// batch, and every [`Udp::send`] on this thread for that socket is collected; then
/// [`Outbox::flush`] sends them in `sendmmsg` calls of up to [`BATCH`].
pub(super) struct Outbox {
    items: Collected,
    headers: MultiHeaders<SockaddrStorage>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("items", &self.items.len())
            .finish()
    }
}

impl Outbox {
    pub(super) fn new() -> Self {
        Self {
            items: Vec::with_capacity(BATCH * 2),
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Collects this thread's sends on `udp` from now until [`Outbox::flush`].
    pub(super) fn open(&mut self, udp: &Udp) {
        let items = std::mem::take(&mut self.items);
        let fd = udp.socket.as_raw_fd();
        OPEN.with(|open| *open.borrow_mut() = Some((fd, items)));
    }

    /// Sends what was collected since [`Outbox::open`]: `sendmmsg` in chunks of [`BATCH`]; a
    /// full send buffer puts the rest on the socket's backlog, a datagram the kernel refuses
    /// otherwise is logged and skipped.
    pub(super) fn flush(&mut self, udp: &Udp) {
        if let Some((_, items)) = OPEN.with(|open| open.borrow_mut().take()) {
            self.items = items;
        }
        let fd = udp.socket.as_raw_fd();
        let mut from = 0;
        while from < self.items.len() {
            let chunk = self.items.get(from..).unwrap_or_default();
            let chunk = chunk.get(..chunk.len().min(BATCH)).unwrap_or_default();
            let sent = send_many(fd, &mut self.headers, chunk);
            match sent {
                Ok(n) if n > 0 => {
                    metrics::counter!("tollgate_sip_responses_batched_total").increment(n as u64);
                    from += n;
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    for (bytes, peer) in self.items.get(from..).unwrap_or_default() {
                        udp.send_now(bytes, *peer);
                    }
                    break;
                }
                Err(e) => {
                    if let Some((_, peer)) = chunk.first() {
                        warn!(%peer, error = %e, "udp send failed");
                    }
                    from += 1;
                }
            }
        }
        self.items.clear();
    }
}

fn send_many(
    fd: RawFd,
    headers: &mut MultiHeaders<SockaddrStorage>,
    chunk: &[(Arc<[u8]>, SocketAddr)],
) -> io::Result<usize> {
    let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = chunk
        .iter()
        .map(|(_, p)| Some(SockaddrStorage::from(*p)))
        .collect();
    let none: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(
        fd,
        headers,
        slices.iter(),
        &addrs,
        none,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(sent.count())
}

/// How long before `now` (the realtime clock's, as the kernel's stamps are) the kernel
/// stamped a datagram. A stamp in the future (the clock stepped back) reads as no wait.
fn age_at(ts: TimeSpec, now: Duration) -> Option<Duration> {
    let stamped = Duration::new(
        u64::try_from(ts.tv_sec()).ok()?,
        u32::try_from(ts.tv_nsec()).ok()?,
    );
    Some(now.saturating_sub(stamped))
}

/// Sets the receive buffer (`SO_RCVBUFFORCE` first, which may pass `net.core.rmem_max` with
/// CAP_NET_ADMIN, else `SO_RCVBUF`, which the kernel caps there) and turns on the kernel's
/// receive timestamps; logs what the socket got.
fn tune(socket: &UdpSocket, receive_buffer: usize) {
    if receive_buffer > 0 {
        // The kernel doubles what it is given (its bookkeeping); ask for half.
        let want = receive_buffer / 2;
        if setsockopt(socket, sockopt::RcvBufForce, &want).is_err() {
            if let Err(e) = setsockopt(socket, sockopt::RcvBuf, &want) {
                warn!(error = %e, "udp: cannot set the receive buffer");
            }
        }
    }
    let got = getsockopt(socket, sockopt::RcvBuf).unwrap_or(0);
    if receive_buffer > 0 && got < receive_buffer {
        warn!(
            requested = receive_buffer,
            got, "udp: the receive buffer is smaller than configured (net.core.rmem_max caps it)"
        );
    } else {
        info!(bytes = got, "udp receive buffer");
    }
    #[allow(clippy::cast_precision_loss)]
    metrics::gauge!("tollgate_sip_udp_receive_buffer_bytes").set(got as f64);
    if let Err(e) = setsockopt(socket, sockopt::ReceiveTimestampns, &true) {
        warn!(error = %e, "udp: no receive timestamps: INVITEs are not shed by queue age");
    }
}

/// How long a datagram's INVITE would have waited, as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Within the bound: taken on.
    Fresh,
    /// Past the bound ([`AgeGate`]): answered 503 at once.
    Stale,
    /// Past T1 too: the peer has retransmitted it by now, so it is dropped unanswered and its
    /// retransmission answered instead. A node that answers copies already superseded spends
    /// as much on each as on a fresh 503 (the response, and the ACK it draws) and falls
    /// further behind with every retransmission: this lets a queue that old drain at the cost
    /// of a read and a parse per INVITE.
    Superseded,
}

/// Turns each datagram's age in the receive queue into "shed new INVITEs". Past `bound` the
/// node is not keeping up; it then sheds every INVITE older than a quarter of the bound, which
/// empties the standing queue instead of holding it at the bound (so the calls it does admit
/// wait little), until a second passes with no datagram that old: a queue near the bound does
/// not flap between shedding and not. Pure: the time is an argument.
#[derive(Debug)]
pub(super) struct AgeGate {
    bound: Duration,
    /// While shedding: until when (extended by every datagram older than the low mark).
    until: Option<Instant>,
}

impl AgeGate {
    /// `bound` zero: never stale.
    pub(super) fn new(bound: Duration) -> Self {
        Self { bound, until: None }
    }

    /// Whether a datagram that waited `age` is stale: a new INVITE in it is shed.
    pub(super) fn stale(&mut self, age: Duration, now: Instant) -> bool {
        if self.bound.is_zero() {
            return false;
        }
        let shedding = self.until.is_some_and(|u| now < u);
        if !shedding && self.until.take().is_some() {
            info!("udp receive queue is young again: no longer shedding");
            metrics::gauge!("tollgate_sip_shedding").set(0.0);
        }
        let limit = if shedding {
            self.bound / SHED_LOW_DIVISOR
        } else {
            self.bound
        };
        if age <= limit {
            return false;
        }
        if !shedding {
            warn!(
                age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                "udp receive queue too old: shedding new INVITEs with 503"
            );
            metrics::gauge!("tollgate_sip_shedding").set(1.0);
        }
        self.until = Some(now + SHED_HOLD);
        true
    }
}

/// A lag sample older than this no longer counts: when everything is shed no decision starts
/// to measure it, so the next INVITE young enough is taken on and measures it anew.
const LAG_FRESH: Duration = Duration::from_millis(100);

/// The runtime's side of "the work waiting": how long the last decision taken on waited for
/// the runtime between its INVITE being read and its task first running. The socket's queue is
/// not the only one: a receive loop that reads faster than the decisions it spawns can run
/// moves the backlog into the runtime's run queue, where the socket's age cannot see it. An
/// INVITE's wait is therefore estimated as its datagram's age plus this lag.
#[derive(Debug)]
pub(super) struct Lag {
    start: Instant,
    last_us: AtomicU64,
    /// When `last_us` was measured, in ms since `start`.
    at_ms: AtomicU64,
}

impl Lag {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_us: AtomicU64::new(0),
            at_ms: AtomicU64::new(0),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// A decision task began `waited` after its INVITE was read.
    pub(super) fn observe(&self, waited: Duration, now: Instant) {
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.last_us.store(us, Ordering::Relaxed);
        self.at_ms.store(self.ms(now), Ordering::Relaxed);
    }

    /// The last lag measured, if it is fresh ([`LAG_FRESH`]); else zero.
    pub(super) fn current(&self, now: Instant) -> Duration {
        let age = self
            .ms(now)
            .saturating_sub(self.at_ms.load(Ordering::Relaxed));
        if u128::from(age) > LAG_FRESH.as_millis() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.last_us.load(Ordering::Relaxed))
    }
}

/// Shed INVITEs reported to [`crate::CallHandler::answered_early`] (the decision log's line) in
/// one second, at most; the rest are counted (`tollgate_sip_shed_total` counts them all) and
/// summed in one warning a second. Under a flood a line per shed INVITE would cost about as
/// much CPU as shedding itself (formatting ~1 kB of JSON and writing it) and fill the disk.
pub(super) const SHED_LOG_PER_SECOND: u64 = 100;

/// The per-second budget of [`SHED_LOG_PER_SECOND`].
#[derive(Debug)]
pub(super) struct ShedLog {
    start: Instant,
    /// The current second (since `start`) and the lines reported in it: `second << 32 | n`.
    window: AtomicU64,
    unlogged: AtomicU64,
}

impl ShedLog {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            window: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// Whether a shed INVITE at `now` gets its line; if not, it is counted as unlogged.
    pub(super) fn allow(&self, now: Instant) -> bool {
        let second = now.saturating_duration_since(self.start).as_secs() & 0xffff_ffff;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let next = if cur >> 32 == second {
                cur + 1
            } else {
                (second << 32) | 1
            };
            if next & 0xffff_ffff > SHED_LOG_PER_SECOND {
                self.unlogged.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match self
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
    }

    /// The shed INVITEs not reported since the last call.
    pub(super) fn take_unlogged(&self) -> u64 {
        self.unlogged.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn gate_sheds_past_the_bound_then_below_a_quarter_until_a_quiet_second() {
        let t0 = Instant::now();
        let mut g = AgeGate::new(100 * MS);
        assert!(!g.stale(100 * MS, t0), "at the bound: admitted");
        assert!(!g.stale(40 * MS, t0));
        assert!(g.stale(101 * MS, t0), "past it: shed");
        // Shedding: the low mark (25 ms) applies.
        assert!(g.stale(30 * MS, t0 + 10 * MS));
        assert!(!g.stale(20 * MS, t0 + 20 * MS));
        // A datagram past the low mark extends the hold.
        assert!(g.stale(26 * MS, t0 + 900 * MS));
        assert!(
            g.stale(26 * MS, t0 + 1800 * MS),
            "still within a second of the last"
        );
        // A quiet second: back to the full bound.
        assert!(!g.stale(99 * MS, t0 + 2900 * MS));
        assert!(!g.stale(30 * MS, t0 + 2901 * MS));
    }

    #[test]
    fn shed_log_reports_at_most_its_budget_a_second() {
        let log = ShedLog::new();
        let t0 = log.start;
        let allowed = (0..250).filter(|_| log.allow(t0)).count();
        assert_eq!(allowed as u64, SHED_LOG_PER_SECOND);
        assert_eq!(log.take_unlogged(), 250 - SHED_LOG_PER_SECOND);
        assert_eq!(log.take_unlogged(), 0);
        assert!(log.allow(t0 + Duration::from_millis(1001)), "a new second");
        assert!(log.allow(t0 + Duration::from_millis(1999)));
    }

    #[test]
    fn lag_counts_while_fresh() {
        let lag = Lag::new();
        let t0 = lag.start;
        assert_eq!(lag.current(t0), Duration::ZERO);
        lag.observe(40 * MS, t0 + 10 * MS);
        assert_eq!(lag.current(t0 + 60 * MS), 40 * MS);
        assert_eq!(
            lag.current(t0 + 200 * MS),
            Duration::ZERO,
            "stale: forgotten"
        );
    }

    #[test]
    fn gate_with_no_bound_never_sheds() {
        let mut g = AgeGate::new(Duration::ZERO);
        assert!(!g.stale(Duration::from_secs(10), Instant::now()));
    }

    #[test]
    fn age_of_a_future_stamp_is_zero() {
        let future = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(5);
        let ts = TimeSpec::new(
            i64::try_from(future.as_secs()).unwrap(),
            i64::from(future.subsec_nanos()),
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(age_at(ts, now), Some(Duration::ZERO));
    }
}
