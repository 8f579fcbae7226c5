//! UDP and TCP transport with RFC 3261 §17.2 server transactions for a redirect server.
//!
//! Every INVITE runs the [`CallHandler`] once; retransmissions get the stored response, the ACK
//! for a non-2xx final is absorbed, CANCEL ends a pending INVITE with 487, and timers G and H
//! retransmit the final response over UDP until it is acknowledged, at most
//! [`MAX_FINAL_RETRANSMITS`] times. A stateless source ([`Trunks::source`]: one no trunk claims,
//! or a trunk with `stateless_rejects`) gets one response per datagram it sends over UDP: the
//! final once, no 100 Trying and no timer G, so a spoofed INVITE is no amplifier.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tollgate_core::{CallFacts, CompactString, Decision, NumberPlan, Transport};
use tracing::{debug, warn};

use crate::extract::{extract, Emergency};
use crate::message::{HeaderName, Message, Method, Request, RequestUri, StartLine, MAX_MESSAGE};
use crate::response::{self, clean_text, reason_phrase, Lines};
use crate::tls::{Certificates, PeerIdentity};
use crate::trunk::Trunks;

mod table;
mod tcp;
mod udp;

use table::{Due, FinalTimer, Table, TxKey, TxState};

/// One call handed to the pipeline.
#[derive(Debug)]
pub struct Call {
    pub facts: CallFacts,
    /// Unique per call; sent in the 302 and keys the screen pop.
    pub call_ref: String,
    pub source: SocketAddr,
    pub received: Instant,
}

/// The pipeline: decides what to do with a call. Implemented by the server crate.
pub trait CallHandler: Send + Sync + 'static {
    fn decide(&self, call: &mut Call) -> impl Future<Output = Decision> + Send;

    /// An INVITE answered without a decision of [`CallHandler::decide`]'s: before it ran (an
    /// unknown source, a draining node, an unsupported `Require`, a malformed request) or after
    /// it was given up (the decision timeout, a CANCEL; the `decide` future is then dropped).
    /// Called once per INVITE transaction, never for a retransmission; a malformed INVITE has
    /// no transaction, so each copy that arrives is answered and reported. Runs on the receive
    /// path (or the call's task, after a decision began): keep it short (a log line, a counter).
    fn answered_early(&self, answer: &EarlyAnswer<'_>) {
        let _ = answer;
    }
}

/// Why an INVITE was answered without a decision ([`CallHandler::answered_early`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EarlyReason {
    /// 403: no trunk claims the source address (`unknown_source = "reject"`).
    UnknownSource,
    /// 503: the node is draining.
    Draining,
    /// 420: `Require` names an option tag the engine does not support (RFC 3261 §8.2.2.3).
    BadExtension,
    /// 503: no decision within the decision timeout.
    DecisionTimeout,
    /// 487: a CANCEL ended the INVITE before its decision.
    Cancelled,
    /// 400 (or 416, 501, 505): the request failed validation.
    Malformed,
    /// 503: a transport bound was reached (transactions, their bytes, or decisions running);
    /// nothing was kept for the INVITE.
    Overloaded,
    /// 503: the drain timeout passed while the call was being decided.
    DrainTimeout,
}

impl EarlyReason {
    /// The machine-readable name: `unknown-source`, `draining`, `bad-extension`,
    /// `decision-timeout`, `cancelled`, `malformed`, `overloaded`, `drain-timeout` (a bounded set, fit for a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            EarlyReason::UnknownSource => "unknown-source",
            EarlyReason::Draining => "draining",
            EarlyReason::BadExtension => "bad-extension",
            EarlyReason::DecisionTimeout => "decision-timeout",
            EarlyReason::Cancelled => "cancelled",
            EarlyReason::Malformed => "malformed",
            EarlyReason::Overloaded => "overloaded",
            EarlyReason::DrainTimeout => "drain-timeout",
        }
    }
}

/// One INVITE answered without a decision. Text from the request is as [`clean_text`] leaves
/// it (no control characters).
#[derive(Debug)]
pub struct EarlyAnswer<'a> {
    /// The Call-ID as the request had it (empty when a malformed request had none).
    pub call_id: &'a str,
    pub source: SocketAddr,
    /// The transport the INVITE came in on.
    pub transport: Transport,
    /// The trunk the source maps to (the unknown-source trunk's name with
    /// `unknown_source = "untrusted"`); `None` when no trunk claims it.
    pub trunk: Option<&'a str>,
    /// The status sent: 403, 420, 487, 503, or a malformed request's 4xx/5xx.
    pub status: u16,
    pub reason: EarlyReason,
    /// The From URI's and the Request-URI's user parts as the request had them (escaped), when
    /// the request was read that far (not for a malformed request, nor after a decision began:
    /// `call` has the facts then).
    pub from_user: Option<Cow<'a, str>>,
    pub ruri_user: Option<Cow<'a, str>>,
    /// The call as extracted and handed to `decide`, for the answers after it was given up
    /// (`DecisionTimeout`, `Cancelled`).
    pub call: Option<&'a Call>,
}

/// Option tags a `Require` may name (RFC 3261 §8.2.2.3). Both bind only responses a redirect
/// server never sends: `100rel` (RFC 3262 §3) provisional responses other than 100, `timer`
/// (RFC 4028 §9) 2xx responses. Compared ignoring case.
pub const SUPPORTED_OPTIONS: [&str; 2] = ["100rel", "timer"];

/// At most this many tags are named in an `Unsupported` line: a request with thousands of
/// `Require` tags gets a 420 of bounded size, and the duplicate check stays linear.
pub const MAX_UNSUPPORTED: usize = 16;

/// The `Unsupported` line for a request whose `Require` names tags outside
/// [`SUPPORTED_OPTIONS`] (each once, in the request's order, the first [`MAX_UNSUPPORTED`]),
/// or `None`. `Proxy-Require` is for proxies (§20.29) and not read.
fn unsupported(msg: &Message<'_>) -> Option<Lines> {
    let mut lines: Option<Lines> = None;
    let mut seen: Vec<&str> = Vec::new();
    for tag in msg.values(HeaderName::Require) {
        let tag = tag.trim_matches([' ', '\t', '\r', '\n']);
        if tag.is_empty()
            || SUPPORTED_OPTIONS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(tag))
            || seen.contains(&tag)
        {
            continue;
        }
        let l = lines.get_or_insert_with(|| {
            let mut l = Lines::with_capacity(64);
            l.start("Unsupported");
            l
        });
        if !seen.is_empty() {
            l.lit(", ");
        }
        l.token(tag);
        seen.push(tag);
        if seen.len() == MAX_UNSUPPORTED {
            break;
        }
    }
    lines.map(|mut l| {
        l.end();
        l
    })
}

/// The answers an INVITE gets before any decision, draining aside: 403 for a source no trunk
/// claims, then (with `enforce_require`) 420 for an unsupported `Require`. The server and
/// `explain` both ask this, so explain says what the wire would.
pub fn precheck(
    has_trunk: bool,
    msg: &Message<'_>,
    enforce_require: bool,
) -> Option<(u16, &'static str, EarlyReason, Lines)> {
    if !has_trunk {
        return Some((
            403,
            "Forbidden (unknown source)",
            EarlyReason::UnknownSource,
            Lines::default(),
        ));
    }
    if enforce_require {
        return unsupported(msg)
            .map(|lines| (420, reason_phrase(420), EarlyReason::BadExtension, lines));
    }
    None
}

/// Timers and behaviour of the transaction layer.
#[derive(Clone, Debug)]
pub struct SipConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// 100 Trying goes out only if the decision takes longer than this.
    pub trying_delay: Duration,
    /// A decision later than this is answered 503 so no call waits forever.
    pub decision_timeout: Duration,
    /// How long shutdown waits for pending decisions.
    pub drain_timeout: Duration,
    /// Retry-After seconds on 503 while draining.
    pub retry_after: u32,
    /// Answer 420 (Bad Extension) when `Require` names a tag outside [`SUPPORTED_OPTIONS`], as
    /// a UAS must (RFC 3261 §8.2.2.3). Off by default: a redirect server "MUST ignore ...
    /// unknown option tags in Require" and redirect (§8.3).
    pub enforce_require: bool,
    /// What the transport may hold, whatever is offered.
    pub limits: Limits,
}

/// The bounds on what the transport holds. A request past a table bound is answered 503
/// statelessly (once, nothing stored); a TCP peer past a connection bound is closed.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Live transactions (pending, completed, and kept for retransmissions).
    pub max_transactions: usize,
    /// Bytes the transactions hold: keys, the responses kept for retransmission, and the
    /// tasks that decide them and time their retransmissions (each task's future and cell).
    pub max_transaction_bytes: usize,
    /// INVITEs being decided at once.
    pub max_pending_decisions: usize,
    /// Open TCP connections in all.
    pub tcp_max_connections: usize,
    /// Open TCP connections from one source address.
    pub tcp_max_per_source: usize,
    /// A connection with nothing read for this long is closed (CRLF keep-alives count).
    pub tcp_idle_timeout: Duration,
    /// A message begun must be complete within this (headers and body).
    pub tcp_message_timeout: Duration,
    /// Bytes of responses queued to one peer; past it the peer is closed.
    pub tcp_write_buffer: usize,
    /// A write that makes no progress for this long closes the connection.
    pub tcp_write_timeout: Duration,
    /// Overload shedding: a new INVITE is answered 503 with Retry-After at once, before any
    /// work is spent on it, when `max_pending_decisions` are running or when its datagram
    /// waited longer than `shed_queue_age` in the socket's receive queue. Off, only the
    /// table's bounds (`max_transactions`, `max_transaction_bytes`) answer 503. Emergency
    /// calls are never shed.
    pub shedding: bool,
    /// The receive queue's age past which new INVITEs are shed (the kernel's receive
    /// timestamp against now); once shedding, a quarter of it, until the queue has stayed
    /// that young for a second. Zero: no shedding by age.
    pub shed_queue_age: Duration,
    /// Each UDP socket's receive buffer (`SO_RCVBUF`), in bytes; 0 leaves the system's.
    pub udp_receive_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_transactions: 200_000,
            max_transaction_bytes: 64 << 20,
            max_pending_decisions: 10_000,
            tcp_max_connections: 1024,
            tcp_max_per_source: 64,
            tcp_idle_timeout: Duration::from_secs(60),
            tcp_message_timeout: Duration::from_secs(10),
            tcp_write_buffer: 256 << 10,
            tcp_write_timeout: Duration::from_secs(10),
            shedding: true,
            shed_queue_age: Duration::from_millis(100),
            udp_receive_buffer: 4 << 20,
        }
    }
}

/// What the transport holds now ([`Server::stats`]; the same figures are the
/// `tollgate_sip_*` gauges).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    pub transactions: usize,
    /// Bytes held by the transactions: keys, stored responses, and the tasks that decide and
    /// time them (the part in `task_bytes`). `max_transaction_bytes` bounds this.
    pub transaction_bytes: usize,
    /// The tasks' part of `transaction_bytes`.
    pub task_bytes: usize,
    pub pending_decisions: usize,
    pub tcp_connections: usize,
    pub tcp_queued_bytes: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(100),
            decision_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            retry_after: 5,
            enforce_require: false,
            limits: Limits::default(),
        }
    }
}

/// Everything a listener needs, shared by all sockets.
#[derive(Debug)]
pub struct Context<H> {
    pub handler: H,
    pub trunks: Trunks,
    pub plan: Arc<NumberPlan>,
    pub emergency: Emergency,
    pub config: SipConfig,
}

#[derive(Clone, Debug)]
enum Reply {
    Udp {
        socket: Arc<udp::Udp>,
        peer: SocketAddr,
    },
    Tcp {
        conn: Arc<tcp::Link>,
        peer: SocketAddr,
    },
}

impl Reply {
    fn reliable(&self) -> bool {
        matches!(self, Reply::Tcp { .. })
    }

    fn transport(&self) -> Transport {
        match self {
            Reply::Udp { .. } => Transport::Udp,
            Reply::Tcp { conn, .. } => conn.transport,
        }
    }

    /// The verified client certificate of a TLS peer.
    fn cert(&self) -> Option<&PeerIdentity> {
        match self {
            Reply::Udp { .. } => None,
            Reply::Tcp { conn, .. } => conn.cert.as_deref(),
        }
    }

    fn peer(&self) -> SocketAddr {
        match self {
            Reply::Udp { peer, .. } | Reply::Tcp { peer, .. } => *peer,
        }
    }

    /// Sends now, without waiting: over UDP one `sendto` (a full socket buffer puts the
    /// datagram on the socket's bounded backlog, [`udp::SEND_BACKLOG`]), over TCP onto the
    /// connection's capped queue. An answer is on its way when this returns, which is what
    /// draining counts on.
    fn send(&self, bytes: &Arc<[u8]>) {
        metrics::counter!("tollgate_sip_responses_sent_total").increment(1);
        match self {
            Reply::Udp { socket, peer } => socket.send(bytes, *peer),
            Reply::Tcp { conn, .. } => conn.push(bytes),
        }
    }
}

/// What a spawned task costs beyond its future, roughly: tokio's task cell (header, scheduler
/// links, trailer) and the allocator's rounding. Charged with each transaction task.
const TASK_CELL_BYTES: usize = 128;

/// Timer G's retransmissions of one final response, at most: with RFC 3261's T2 = 8·T1 it fires
/// exactly this often before timer H (64·T1), so this only bounds other timers (T2 < 8·T1, or
/// T1 = 0). A stateful INVITE transaction over UDP thus sends at most 1 + 10 copies of its final
/// response, plus one per retransmitted request received.
pub const MAX_FINAL_RETRANSMITS: u32 = 10;

/// A running SIP server: shared state between listeners and transactions.
#[derive(Debug)]
pub struct Server<H> {
    ctx: Context<H>,
    table: Table,
    conns: Arc<tcp::Conns>,
    draining: AtomicBool,
    /// Decisions running now; with `max_pending_decisions` the admission bound.
    pending: AtomicUsize,
    drained: Notify,
    /// Set when the drain timeout passes: the decisions still running give up and answer 503.
    abandoned: AtomicBool,
    abandon: Notify,
    refs: AtomicU64,
    ref_prefix: u32,
    /// The decision log's budget for shed INVITEs.
    shed_log: udp::ShedLog,
    /// How long the last decision waited for the runtime (part of an INVITE's wait).
    lag: udp::Lag,
}

impl<H: CallHandler> Server<H> {
    pub fn new(ctx: Context<H>) -> Arc<Self> {
        let limits = &ctx.config.limits;
        let table = Table::new(limits.max_transactions, limits.max_transaction_bytes);
        Arc::new(Self {
            ctx,
            table,
            conns: Arc::default(),
            draining: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            drained: Notify::new(),
            abandoned: AtomicBool::new(false),
            abandon: Notify::new(),
            refs: AtomicU64::new(0),
            ref_prefix: rand::random(),
            shed_log: udp::ShedLog::new(),
            lag: udp::Lag::new(),
        })
    }

    pub fn handler(&self) -> &H {
        &self.ctx.handler
    }

    /// Live transactions (for tests and metrics).
    pub fn transactions(&self) -> usize {
        self.table.len()
    }

    /// What the transport holds now.
    pub fn stats(&self) -> TransportStats {
        TransportStats {
            transactions: self.table.len(),
            transaction_bytes: self.table.bytes(),
            task_bytes: self.table.task_bytes(),
            pending_decisions: self.pending.load(Ordering::Relaxed),
            tcp_connections: self.conns.open(),
            tcp_queued_bytes: self.conns.queued(),
        }
    }

    /// Sets the `tollgate_sip_*` gauges from [`Server::stats`] (a sampler calls this; the call
    /// path only moves atomics).
    fn publish_stats(&self) {
        let s = self.stats();
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("tollgate_sip_transactions").set(s.transactions as f64);
            metrics::gauge!("tollgate_sip_transaction_bytes").set(s.transaction_bytes as f64);
            metrics::gauge!("tollgate_sip_task_bytes").set(s.task_bytes as f64);
            metrics::gauge!("tollgate_sip_pending_decisions").set(s.pending_decisions as f64);
            metrics::gauge!("tollgate_sip_tcp_connections").set(s.tcp_connections as f64);
            metrics::gauge!("tollgate_sip_tcp_queued_bytes").set(s.tcp_queued_bytes as f64);
        }
        let unlogged = self.shed_log.take_unlogged();
        if unlogged > 0 {
            warn!(
                unlogged,
                per_second = udp::SHED_LOG_PER_SECOND,
                "overloaded: INVITEs shed with 503 past the decision log's budget (counted in \
                 tollgate_sip_shed_total)"
            );
        }
    }

    /// Serves until `shutdown` completes, then drains: new INVITEs and OPTIONS get 503 with
    /// Retry-After, and pending decisions are answered. At the drain timeout the decisions
    /// still running are given up and answered 503 too; then the receive loops stop, what the
    /// UDP sockets have already queued is answered (503), and queued TCP answers get a moment
    /// to be written. Every INVITE that reached the node is answered.
    pub async fn run(
        self: Arc<Self>,
        udp: Vec<UdpSocket>,
        tcp: Vec<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let listeners = Listeners {
            udp,
            tcp,
            tls: Vec::new(),
        };
        self.serve(listeners, shutdown).await;
    }

    /// [`Server::run`] with TLS listeners too.
    pub async fn serve(self: Arc<Self>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
        let Listeners { udp, tcp, tls } = listeners;
        let mut tasks = Vec::new();
        for (listener, certs) in tls {
            let me = Arc::clone(&self);
            tasks.push(tokio::spawn(me.tls_accept(listener, certs)));
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let udp_done: Vec<_> = udp
            .into_iter()
            .enumerate()
            .map(|(i, socket)| self.start_udp(i, socket, stopped.clone()))
            .collect();
        for listener in tcp {
            let me = Arc::clone(&self);
            tasks.push(tokio::spawn(me.tcp_accept(listener)));
        }
        let sampler = {
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    me.publish_stats();
                }
            })
        };
        // The table's queue (Table::expire: timers G and H of the final responses, timer I,
        // timer J, a stateless answer's T4), at most one tick late.
        let expiry = {
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(expiry_tick(me.ctx.config.t1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    me.sweep(tokio::time::Instant::now());
                }
            })
        };
        shutdown.await;
        self.draining.store(true, Ordering::SeqCst);
        tracing::info!(pending = self.pending.load(Ordering::SeqCst), "draining");
        let deadline = tokio::time::Instant::now() + self.ctx.config.drain_timeout;
        if !self.wait_pending(deadline).await {
            let left = self.pending.load(Ordering::SeqCst);
            warn!(
                pending = left,
                "drain timeout: answering the calls still being decided 503"
            );
            metrics::counter!("tollgate_sip_drain_abandoned_total").increment(left as u64);
            self.abandoned.store(true, Ordering::SeqCst);
            self.abandon.notify_waiters();
            // Each gives up at its next poll; this bound only guards against a stuck runtime.
            self.wait_pending(tokio::time::Instant::now() + Duration::from_secs(1))
                .await;
        }
        for t in tasks {
            t.abort();
        }
        // The UDP sockets answer what they have already queued (503 while draining) and flush
        // their backlogs; then their threads end.
        let _ = stop.send(true);
        for done in udp_done {
            let _ = done.await;
        }
        let flush_until = tokio::time::Instant::now() + Duration::from_secs(1);
        while self.conns.queued() > 0 && tokio::time::Instant::now() < flush_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.publish_stats();
        sampler.abort();
        expiry.abort();
    }

    /// One sweep of the table's queue: what timer G resends goes out, timer H's give-ups are
    /// counted.
    fn sweep(&self, now: tokio::time::Instant) {
        let swept = self.table.expire(now);
        for (reply, bytes) in &swept.resend {
            metrics::counter!("tollgate_sip_final_retransmits_total").increment(1);
            reply.send(bytes);
        }
        if swept.unacked > 0 {
            metrics::counter!("tollgate_sip_ack_timeouts_total").increment(swept.unacked as u64);
        }
    }

    /// Starts serving one UDP socket on a thread of its own with a single-threaded runtime (the
    /// socket's receive loop, the decisions that wait on I/O, its send backlog), so that a call
    /// is read, decided and answered on one thread with no hand-off. The receiver completes
    /// when the socket, told to stop, has answered what it had queued.
    fn start_udp(
        self: &Arc<Self>,
        index: usize,
        socket: UdpSocket,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let me = Arc::clone(self);
        let std_socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "udp: cannot hand the socket to its thread");
                return finished;
            }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-udp-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        warn!(error = %e, "udp: cannot start the socket's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match UdpSocket::from_std(std_socket) {
                        Ok(socket) => me.udp_worker(socket, stop).await,
                        Err(e) => warn!(error = %e, "udp: cannot register the socket"),
                    }
                });
                let _ = done.send(());
            });
        if let Err(e) = spawned {
            warn!(error = %e, "udp: cannot start the socket's thread");
        }
        finished
    }

    /// Serves one UDP socket until told to stop, then answers the datagrams already queued in
    /// it (503 while draining) until it is quiet, for at most 200 ms, and gives its send
    /// backlog a second to drain.
    async fn udp_worker(
        self: Arc<Self>,
        socket: UdpSocket,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let (udp, sender) = udp::Udp::new(socket, self.ctx.config.limits.udp_receive_buffer);
        tokio::select! {
            () = Arc::clone(&self).udp_loop(Arc::clone(&udp)) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        let quiet_until = tokio::time::Instant::now() + Duration::from_millis(200);
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        while let Ok(Ok((n, peer))) = tokio::time::timeout_at(
            quiet_until.min(tokio::time::Instant::now() + Duration::from_millis(20)),
            udp.socket().recv_from(&mut buf),
        )
        .await
        {
            if let Some(data) = buf.get(..n) {
                let reply = Reply::Udp {
                    socket: Arc::clone(&udp),
                    peer,
                };
                self.on_message(data, reply, true);
            }
        }
        let flush_until = tokio::time::Instant::now() + Duration::from_secs(1);
        while udp.backlogged() > 0 && tokio::time::Instant::now() < flush_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sender.abort();
    }

    /// Waits until no decision is running, or `deadline`; true if none is.
    async fn wait_pending(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let notified = self.drained.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.pending.load(Ordering::SeqCst) == 0;
            }
        }
    }

    /// Completes once the drain timeout has given up on the decisions still running.
    async fn abandoned(&self) {
        loop {
            let woken = self.abandon.notified();
            if self.abandoned.load(Ordering::SeqCst) {
                return;
            }
            woken.await;
        }
    }

    /// Receives datagrams in batches ([`udp::Batch`], one `recvmmsg`) with their age in the
    /// socket's receive queue, handles each on this thread, and sends what they answered in
    /// one `sendmmsg` ([`udp::Outbox`]). Past the queue-age bound ([`udp::AgeGate`]), counting
    /// the runtime's lag ([`udp::Lag`]) too, a new INVITE is shed (`on_invite`).
    async fn udp_loop(self: Arc<Self>, socket: Arc<udp::Udp>) {
        let mut rx = udp::Batch::new(MAX_MESSAGE + 1);
        let mut out = udp::Outbox::new();
        let limits = &self.ctx.config.limits;
        let mut gate = udp::AgeGate::new(if limits.shedding {
            limits.shed_queue_age
        } else {
            Duration::ZERO
        });
        loop {
            let n = match socket.recv_batch(&mut rx).await {
                Ok(n) => n,
                Err(e) => {
                    // ICMP port unreachable surfaces here on Linux; keep serving.
                    debug!(error = %e, "udp recv");
                    continue;
                }
            };
            // The wait an INVITE would see: its time in the socket's queue, and then in the
            // runtime's (the last asynchronous decision's lag).
            let now = Instant::now();
            let lag = self.lag.current(now);
            out.open(&socket);
            for i in 0..n {
                let Some((data, peer, age)) = rx.get(i) else {
                    continue;
                };
                let waited = age.unwrap_or_default() + lag;
                let wait = if !gate.stale(waited, now) {
                    udp::Wait::Fresh
                } else if waited > self.ctx.config.t1 {
                    udp::Wait::Superseded
                } else {
                    udp::Wait::Stale
                };
                let reply = Reply::Udp {
                    socket: Arc::clone(&socket),
                    peer,
                };
                self.on_received(data, reply, true, wait);
            }
            out.flush(&socket);
        }
    }

    /// Best-effort 400 for a stream message that cannot be framed, then the caller closes.
    fn answer_garbage(&self, data: &[u8], reply: &Reply, code: u16, why: &str) {
        metrics::counter!("tollgate_sip_parse_errors_total").increment(1);
        let head = data.get(..data.len().min(MAX_MESSAGE)).unwrap_or_default();
        let end = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(head.len(), |i| i + 4);
        if let Ok(msg) = Message::parse(head.get(..end).unwrap_or_default()) {
            if msg.is_request() && msg.header(crate::message::HeaderName::Via).is_some() {
                self.malformed_invite(&msg, reply, code);
                let bytes: Arc<[u8]> =
                    response::build(&msg, reply.peer(), code, why, Some(&self.tag()), &[]).into();
                reply.send(&bytes);
            }
        }
    }

    /// Tells the handler of a malformed INVITE's answer (other methods are not reported).
    fn malformed_invite(&self, msg: &Message<'_>, reply: &Reply, status: u16) {
        let source = reply.peer();
        if !matches!(
            msg.start,
            StartLine::Request {
                method: "INVITE",
                ..
            }
        ) {
            return;
        }
        self.ctx.handler.answered_early(&EarlyAnswer {
            call_id: &clean_text(msg.header(HeaderName::CallId).unwrap_or_default()),
            source,
            transport: reply.transport(),
            trunk: self
                .ctx
                .trunks
                .source_with(source.ip(), reply.cert())
                .0
                .map(|t| &*t.name),
            status,
            reason: EarlyReason::Malformed,
            from_user: None,
            ruri_user: None,
            call: None,
        });
    }

    fn tag(&self) -> String {
        let mut tag = String::with_capacity(26);
        tag.push_str("tg");
        push_hex(&mut tag, u64::from(self.ref_prefix), 8);
        push_hex(&mut tag, self.refs.fetch_add(1, Ordering::Relaxed), 1);
        tag
    }

    fn call_ref(&self) -> String {
        let mut r = String::with_capacity(24);
        push_hex(&mut r, u64::from(self.ref_prefix), 8);
        push_hex(&mut r, self.refs.fetch_add(1, Ordering::Relaxed), 8);
        r
    }

    /// Handles one complete message from either transport.
    fn on_message(self: &Arc<Self>, data: &[u8], reply: Reply, datagram: bool) {
        self.on_received(data, reply, datagram, udp::Wait::Fresh);
    }

    /// [`Server::on_message`] for a message that may have waited past the shedding bound
    /// (`wait`), so that a new INVITE in it is shed.
    fn on_received(self: &Arc<Self>, data: &[u8], reply: Reply, datagram: bool, wait: udp::Wait) {
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(g) => {
                metrics::counter!("tollgate_sip_dropped_total", "why" => g.to_string())
                    .increment(1);
                debug!(peer = %reply.peer(), why = %g, "dropped");
                return;
            }
        };
        if let StartLine::Response { .. } = msg.start {
            // A redirect server sends no requests, so responses are strays.
            metrics::counter!("tollgate_sip_dropped_total", "why" => "response").increment(1);
            return;
        }
        let can_answer = msg.header(crate::message::HeaderName::Via).is_some();
        let req = match Request::validate(msg, datagram) {
            Ok(r) => r,
            Err(refused) => {
                let (rej, msg) = *refused;
                metrics::counter!("tollgate_sip_parse_errors_total").increment(1);
                debug!(peer = %reply.peer(), status = rej.status, reason = %rej.reason, "rejected malformed request");
                let is_ack = matches!(msg.start, StartLine::Request { method: "ACK", .. });
                if can_answer && !is_ack {
                    self.malformed_invite(&msg, &reply, rej.status);
                    let bytes: Arc<[u8]> = response::build(
                        &msg,
                        reply.peer(),
                        rej.status,
                        &rej.reason,
                        Some(&self.tag()),
                        &[],
                    )
                    .into();
                    reply.send(&bytes);
                }
                return;
            }
        };
        metrics::counter!("tollgate_sip_requests_total", "method" => method_label(req.method))
            .increment(1);
        let key = tx_key(&req);
        match req.method {
            Method::Ack => self.on_ack(key),
            Method::Invite => self.on_invite(req, key, reply, wait),
            Method::Cancel => self.on_cancel(&req, key, reply),
            Method::Options | Method::Other => self.on_non_invite(&req, key, reply),
        }
    }

    /// The ACK of a final response: over UDP the transaction absorbs retransmitted ACKs for
    /// T4 (timer I), in the table's queue; over TCP it ends now. Timers G and H, queued with
    /// the response, find it confirmed and do nothing.
    fn on_ack(&self, key: TxKey) {
        let key = key.as_invite();
        let acked = self.table.update(&key, |state| match state {
            TxState::Completed { reliable, .. } => {
                let reliable = *reliable;
                *state = TxState::Confirmed;
                Some(reliable)
            }
            _ => None,
        });
        match acked {
            Some(Some(true)) => self.table.remove(&key),
            Some(Some(false)) => self.table.expire_after(key, self.ctx.config.t4),
            _ => {}
        }
    }

    /// Resends what a retransmitted request's transaction last sent; true if it was one.
    fn retransmission(&self, key: &TxKey, reply: &Reply) -> bool {
        let last = self.table.update(key, |state| match state {
            TxState::Proceeding { provisional, .. } => provisional.clone(),
            TxState::Completed { response, .. } | TxState::Done { response } => {
                Some(Arc::clone(response))
            }
            TxState::Confirmed => None,
        });
        match last {
            None => false,
            Some(bytes) => {
                metrics::counter!("tollgate_sip_retransmissions_total").increment(1);
                if let Some(bytes) = bytes {
                    reply.send(&bytes);
                }
                true
            }
        }
    }

    /// Spawns a transaction's task (its decision, or the timers of its final response) with its
    /// bytes charged to the table's byte bound while it lives: the future's own size (for a
    /// decision, the call's facts and the pipeline's state across its awaits) and tokio's task
    /// cell. Under a flood these tasks, not the stored responses, are most of what the
    /// transport holds.
    /// `heap` is what the task's captures hold on the heap beyond the responses the table
    /// already counts.
    fn spawn_held<F>(&self, heap: usize, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let held = self
            .table
            .hold(std::mem::size_of::<F>() + TASK_CELL_BYTES + heap);
        tokio::spawn(async move {
            let _held = held;
            task.await;
        });
    }

    /// Why a new INVITE cannot be taken on now: a table bound (memory: always), or, with
    /// shedding on, its datagram was `stale` (it waited past the queue-age bound) or too many
    /// decisions are running. An emergency call (`emergency` is asked only then) is never shed
    /// for those two.
    fn overloaded(&self, stale: bool, emergency: impl FnOnce() -> bool) -> Option<&'static str> {
        if let Some(full) = self.table.full() {
            return Some(full.as_str());
        }
        let limits = &self.ctx.config.limits;
        if !limits.shedding {
            return None;
        }
        let why = if stale {
            "queue-age"
        } else if self.pending.load(Ordering::Relaxed) >= limits.max_pending_decisions {
            "pending-decisions"
        } else {
            return None;
        };
        if emergency() {
            metrics::counter!("tollgate_sip_shed_exempt_total", "why" => why).increment(1);
            return None;
        }
        Some(why)
    }

    fn retry_after(&self) -> Lines {
        let mut retry = Lines::default();
        retry
            .start("Retry-After")
            .decimal(self.ctx.config.retry_after.try_into().unwrap_or(u16::MAX))
            .end();
        retry
    }

    /// A new INVITE: shed if its datagram waited past the queue-age bound (`wait`; dropped
    /// unanswered past T1 too), unless it is a retransmission or an emergency call.
    fn on_invite(self: &Arc<Self>, req: Request<'_>, key: TxKey, reply: Reply, wait: udp::Wait) {
        if self.retransmission(&key, &reply) {
            return;
        }
        if wait == udp::Wait::Superseded && !self.ctx.emergency.dialed(&req) {
            metrics::counter!("tollgate_sip_shed_total", "why" => "superseded").increment(1);
            return;
        }
        let stale = wait != udp::Wait::Fresh;
        let tag = self.tag();
        let source = reply.peer();
        let (trunk, stateless) = self.ctx.trunks.source_with(source.ip(), reply.cert());
        // Sent once: one response per datagram received (no 100 Trying, no timer G).
        let once = stateless && !reply.reliable();
        // Answers that need no decision, in RFC 3261 §8.2's order after the policy ones: a
        // draining node and an unknown source first, then the Require check (§8.2.2.3), then
        // the transport's own bounds: past them the INVITE is answered 503 and nothing is kept.
        let mut shed = None;
        let early = if self.draining.load(Ordering::Relaxed) {
            Some((
                503,
                reason_phrase(503),
                EarlyReason::Draining,
                self.retry_after(),
            ))
        } else if let Some(pre) =
            precheck(trunk.is_some(), &req.msg, self.ctx.config.enforce_require)
        {
            Some(pre)
        } else if let Some(why) = self.overloaded(stale, || self.ctx.emergency.dialed(&req)) {
            metrics::counter!("tollgate_sip_shed_total", "why" => why).increment(1);
            shed = Some(why);
            Some((
                503,
                "Service Unavailable (overloaded)",
                EarlyReason::Overloaded,
                self.retry_after(),
            ))
        } else {
            None
        };
        // What every response copies from the request, read once; both answers that do not need
        // the pipeline are built now.
        let copied = response::Copied::new(&req.msg, source);
        if let Some((code, reason, why, extra)) = early {
            let bytes: Arc<[u8]> = copied.response(code, reason, Some(&tag), &extra).into();
            if shed.is_some() {
                // Answered first; reported within the decision log's budget.
                metrics::counter!("tollgate_sip_stateless_finals_total").increment(1);
                reply.send(&bytes);
                if !self.shed_log.allow(Instant::now()) {
                    return;
                }
            }
            self.ctx.handler.answered_early(&EarlyAnswer {
                call_id: &clean_text(req.call_id),
                source,
                transport: reply.transport(),
                trunk: trunk.map(|t| &*t.name),
                status: code,
                reason: why,
                from_user: req.from.uri.and_then(|u| u.user).map(clean_text),
                ruri_user: match req.uri {
                    RequestUri::Uri(u) => u.user.map(clean_text),
                    RequestUri::ServiceUrn(_) => None,
                },
                call: None,
            });
            if shed.is_some() {
                // Sent above; nothing is kept.
                return;
            }
            if self.table.full().is_some() {
                // Nothing is kept: the answer goes once, as from a stateless source.
                metrics::counter!("tollgate_sip_stateless_finals_total").increment(1);
                reply.send(&bytes);
            } else {
                self.finalize(key, reply, bytes, once);
            }
            return;
        }
        let Some(trunk) = trunk else { return };
        let mut facts = extract(&req, trunk, &self.ctx.plan, &self.ctx.emergency);
        facts.arrival.transport = reply.transport();
        facts.arrival.tls_peer = reply
            .cert()
            .map(|peer| CompactString::from(trunk.peer_label(peer)));
        let received = Instant::now();
        let call = Call {
            facts,
            call_ref: self.call_ref(),
            source,
            received,
        };
        // Keep what the 302 needs from the request, as owned bytes: the datagram buffer is reused.
        let template = ResponseTemplate { copied, tag };
        let heap = template.heap_bytes() + call.facts.call_id.capacity();
        let mut transaction =
            Box::pin(Arc::clone(self).transaction(call, template, key, reply, once));
        // Its first poll, here on the receiving thread: a decision that waits on nothing
        // (no Redis, no HTTP CRM, no x5u fetch) is made, answered and stored now.
        let mut cx = TaskContext::from_waker(Waker::noop());
        if transaction.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        // It waits on I/O: a task of this thread's runtime carries on.
        let me = Arc::clone(self);
        let size = std::mem::size_of_val(&*transaction);
        self.spawn_held(size + heap, async move {
            let started = Instant::now();
            me.lag
                .observe(started.saturating_duration_since(received), started);
            transaction.await;
        });
    }

    /// One INVITE's decision and answer. Its first poll ([`Server::on_invite`]) asks the
    /// handler; a decision ready at once is answered in that poll, with no entry in the table
    /// before its final response, no timer and no task. A decision that waits is given the
    /// rest: the transaction kept as proceeding (so a CANCEL finds it), the decision timeout
    /// from the INVITE's arrival, 100 Trying after `trying_delay`, CANCEL and the drain
    /// timeout.
    async fn transaction(
        self: Arc<Self>,
        mut call: Call,
        template: ResponseTemplate,
        key: TxKey,
        reply: Reply,
        once: bool,
    ) {
        let received = tokio::time::Instant::from_std(call.received);
        let mut waited = false;
        let outcome = {
            let decide = self.ctx.handler.decide(&mut call);
            tokio::pin!(decide);
            match std::future::poll_fn(|cx| Poll::Ready(decide.as_mut().poll(cx))).await {
                Poll::Ready(decision) => Ok(decision),
                Poll::Pending => {
                    waited = true;
                    let cancel = Arc::new(Notify::new());
                    self.table.insert(
                        &key,
                        TxState::Proceeding {
                            provisional: None,
                            cancel: Arc::clone(&cancel),
                            cancelled: false,
                        },
                    );
                    self.pending.fetch_add(1, Ordering::SeqCst);
                    let cfg = &self.ctx.config;
                    let decide =
                        tokio::time::timeout_at(received + cfg.decision_timeout, decide.as_mut());
                    tokio::pin!(decide);
                    let trying_timer = tokio::time::sleep_until(received + cfg.trying_delay);
                    tokio::pin!(trying_timer);
                    let mut trying_sent = once;
                    loop {
                        tokio::select! {
                            biased;
                            d = &mut decide => break d.map_err(|_| GaveUp::Timeout),
                            () = cancel.notified() => break Err(GaveUp::Cancel),
                            () = self.abandoned() => break Err(GaveUp::Drain),
                            () = &mut trying_timer, if !trying_sent => {
                                trying_sent = true;
                                let trying: Arc<[u8]> = template
                                    .copied
                                    .response(100, reason_phrase(100), None, &Lines::default())
                                    .into();
                                self.table.update(&key, |state| {
                                    if let TxState::Proceeding { provisional, .. } = state {
                                        *provisional = Some(Arc::clone(&trying));
                                    }
                                });
                                reply.send(&trying);
                            }
                        }
                    }
                }
            }
        };
        let bytes: Arc<[u8]> = match outcome {
            Ok(decision) => template.render(&decision, &call).into(),
            Err(gave_up) => {
                // The handler's decision was given up: it learns of the answer here.
                let (status, why, bytes) = if gave_up == GaveUp::Cancel && self.cancel_seen(&key) {
                    let bytes = template
                        .with_status(487, reason_phrase(487), &Lines::default())
                        .into();
                    (487, EarlyReason::Cancelled, bytes)
                } else if gave_up == GaveUp::Drain {
                    warn!(call_id = %call.facts.call_id, "drain timeout: answering 503");
                    let bytes = template
                        .with_status(
                            503,
                            "Service Unavailable (shutting down)",
                            &self.retry_after(),
                        )
                        .into();
                    (503, EarlyReason::DrainTimeout, bytes)
                } else {
                    warn!(call_id = %call.facts.call_id, "decision timeout: answering 503");
                    metrics::counter!("tollgate_decision_timeouts_total").increment(1);
                    let bytes = template
                        .with_status(
                            503,
                            "Service Unavailable (decision timeout)",
                            &self.retry_after(),
                        )
                        .into();
                    (503, EarlyReason::DecisionTimeout, bytes)
                };
                self.ctx.handler.answered_early(&EarlyAnswer {
                    call_id: &clean_text(&call.facts.call_id),
                    source: call.source,
                    transport: call.facts.arrival.transport,
                    trunk: Some(&call.facts.trunk),
                    status,
                    reason: why,
                    from_user: None,
                    ruri_user: None,
                    call: Some(&call),
                });
                bytes
            }
        };
        // Sent before the decision stops counting as pending, so a drain that sees none
        // pending has nothing left unanswered.
        self.finalize(key, reply, bytes, once);
        if waited && self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Stores and sends the final response now, with its timers queued in the table under
    /// the same lock ([`Table::insert_due`]; [`Server::sweep`] runs them): over UDP timer G
    /// resends it (at most [`MAX_FINAL_RETRANSMITS`] times) until the ACK or timer H, then the
    /// transaction stays T4 to absorb ACK retransmissions (timer I); over TCP it waits for the
    /// ACK or timer H, holding no reference to the connection. `once` (a stateless source
    /// over UDP): sent once, the transaction kept T4 only, so a retransmitted INVITE gets the
    /// same single answer and the ACK is absorbed.
    fn finalize(self: &Arc<Self>, key: TxKey, reply: Reply, bytes: Arc<[u8]>, once: bool) {
        let cfg = &self.ctx.config;
        let reliable = reply.reliable();
        let state = TxState::Completed {
            response: Arc::clone(&bytes),
            reliable,
        };
        if once {
            metrics::counter!("tollgate_sip_stateless_finals_total").increment(1);
            self.table
                .insert_due(key, state, cfg.t4.min(cfg.t1 * 64), Due::Remove);
        } else {
            let timer_h = cfg.t1 * 64;
            let (first, left) = if reliable {
                (timer_h, 0)
            } else {
                (cfg.t1, MAX_FINAL_RETRANSMITS)
            };
            let timer = FinalTimer {
                reply: (!reliable).then(|| reply.clone()),
                interval: cfg.t1,
                t2: cfg.t2,
                left,
                h_at: tokio::time::Instant::now() + timer_h,
            };
            self.table.insert_due(key, state, first, Due::Final(timer));
        }
        reply.send(&bytes);
    }

    fn cancel_seen(&self, key: &TxKey) -> bool {
        self.table
            .update(key, |state| {
                matches!(
                    state,
                    TxState::Proceeding {
                        cancelled: true,
                        ..
                    }
                )
            })
            .unwrap_or(false)
    }

    fn on_cancel(self: &Arc<Self>, req: &Request<'_>, key: TxKey, reply: Reply) {
        if self.retransmission(&key, &reply) {
            return;
        }
        let invite_key = key.as_invite();
        let found = self
            .table
            .update(&invite_key, |state| {
                if let TxState::Proceeding {
                    cancel, cancelled, ..
                } = state
                {
                    *cancelled = true;
                    cancel.notify_one();
                }
            })
            .is_some();
        let code = if found { 200 } else { 481 };
        self.finish_non_invite(req, key, reply, code, reason_phrase(code), &[]);
    }

    fn on_non_invite(self: &Arc<Self>, req: &Request<'_>, key: TxKey, reply: Reply) {
        if self.retransmission(&key, &reply) {
            return;
        }
        let allow = "Allow: INVITE, ACK, CANCEL, OPTIONS".to_owned();
        match req.method {
            Method::Options if self.draining.load(Ordering::Relaxed) => {
                let retry = format!("Retry-After: {}", self.ctx.config.retry_after);
                self.finish_non_invite(req, key, reply, 503, reason_phrase(503), &[retry]);
            }
            Method::Options
                if self.ctx.config.enforce_require
                    && req.msg.header(HeaderName::Require).is_some() =>
            {
                // RFC 3261 §8.2.2.3 binds every request but CANCEL and ACK; a method this server
                // does not serve gets its 405 first (§8.2.1).
                match unsupported(&req.msg) {
                    Some(lines) => {
                        self.finish_lines(req, key, reply, 420, reason_phrase(420), &lines);
                    }
                    None => self.options_ok(req, key, reply),
                }
            }
            Method::Options => self.options_ok(req, key, reply),
            _ => self.finish_non_invite(req, key, reply, 405, reason_phrase(405), &[allow]),
        }
    }

    fn options_ok(self: &Arc<Self>, req: &Request<'_>, key: TxKey, reply: Reply) {
        let allow = "Allow: INVITE, ACK, CANCEL, OPTIONS".to_owned();
        self.finish_non_invite(
            req,
            key,
            reply,
            200,
            "OK",
            &[allow, "Accept: application/sdp".to_owned()],
        );
    }

    fn finish_non_invite(
        self: &Arc<Self>,
        req: &Request<'_>,
        key: TxKey,
        reply: Reply,
        code: u16,
        reason: &str,
        extra: &[String],
    ) {
        let mut lines = Lines::default();
        for line in extra {
            lines.line(line);
        }
        self.finish_lines(req, key, reply, code, reason, &lines);
    }

    fn finish_lines(
        self: &Arc<Self>,
        req: &Request<'_>,
        key: TxKey,
        reply: Reply,
        code: u16,
        reason: &str,
        extra: &Lines,
    ) {
        let bytes: Arc<[u8]> = response::Copied::new(&req.msg, reply.peer())
            .response(code, reason, Some(&self.tag()), extra)
            .into();
        // Sent once in any case; kept for timer J over UDP (64·T1, or T4 from a stateless
        // source) unless the table is full, when a retransmission is answered anew.
        let keep = if reply.reliable() || self.table.full().is_some() {
            Duration::ZERO
        } else if self.ctx.trunks.source(reply.peer().ip()).1 {
            self.ctx.config.t4.min(self.ctx.config.t1 * 64)
        } else {
            self.ctx.config.t1 * 64
        };
        reply.send(&bytes);
        if keep.is_zero() {
            return;
        }
        self.table.insert(&key, TxState::Done { response: bytes });
        self.table.expire_after(key, keep);
    }
}

/// Why a decision was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GaveUp {
    Timeout,
    Cancel,
    Drain,
}

/// `v` in lower-case hex, at least `width` digits (as `{:0width$x}` writes it): tags and call
/// references are made per call, where the formatting machinery cost more than the rest.
pub(crate) fn push_hex(out: &mut String, v: u64, width: usize) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in (0..digits.max(width)).rev() {
        let nibble = if i < 16 { (v >> (4 * i)) & 0xf } else { 0 };
        out.push(char::from(
            b"0123456789abcdef"
                .get(nibble as usize)
                .copied()
                .unwrap_or(b'0'),
        ));
    }
}

fn method_label(m: Method) -> &'static str {
    match m {
        Method::Invite => "INVITE",
        Method::Ack => "ACK",
        Method::Cancel => "CANCEL",
        Method::Options => "OPTIONS",
        Method::Other => "other",
    }
}

/// RFC 3261 §17.2.3 matching key; RFC 2543 requests (no magic cookie) fall back to dialog data.
fn tx_key(req: &Request<'_>) -> TxKey {
    let invite = matches!(req.method, Method::Invite | Method::Ack);
    match req.via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => {
            TxKey::rfc3261(b, req.via.host, req.via.port, invite)
        }
        _ => TxKey::rfc2543(
            req.call_id,
            req.cseq.seq,
            req.from.param("tag").unwrap_or_default(),
            req.via.host,
            req.via.port,
            invite,
        ),
    }
}

/// How often the table's queue is swept: timer G fires at most this late. A tenth of T1,
/// between 1 and 20 ms (20 ms with RFC 3261's T1 of 500 ms).
fn expiry_tick(t1: Duration) -> Duration {
    (t1 / 10).clamp(Duration::from_millis(1), Duration::from_millis(20))
}

/// What the final response needs from the request (its copied headers, owned so the datagram
/// buffer can be reused) and the To-tag chosen for it.
#[derive(Debug)]
struct ResponseTemplate {
    copied: response::Copied,
    tag: String,
}

impl ResponseTemplate {
    /// What the template holds on the heap.
    fn heap_bytes(&self) -> usize {
        self.copied.heap_bytes() + self.tag.capacity()
    }

    /// A final response with `extra` lines.
    fn with_status(&self, code: u16, reason: &str, extra: &Lines) -> Vec<u8> {
        self.copied.response(code, reason, Some(&self.tag), extra)
    }

    /// The final response for a decision ([`response::decision`]).
    fn render(&self, decision: &Decision, call: &Call) -> Vec<u8> {
        let (code, reason, extra) = response::decision(decision, &call.facts, &call.call_ref);
        self.with_status(code, reason, &extra)
    }
}

/// Every socket a server serves: UDP sockets, TCP listeners, and TLS listeners with their
/// certificates.
#[derive(Debug, Default)]
pub struct Listeners {
    pub udp: Vec<UdpSocket>,
    pub tcp: Vec<TcpListener>,
    pub tls: Vec<(TcpListener, Arc<Certificates>)>,
}

/// Binds UDP sockets and TCP listeners for the given addresses: [`udp_workers`] UDP sockets
/// per address, sharing it with `SO_REUSEPORT` (the kernel spreads datagrams over them by a
/// hash of source and destination address and port, so one peer's datagrams, a
/// retransmission among them, reach the same socket; [`Server::serve`] gives each socket its
/// own thread).
pub async fn bind(
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
) -> std::io::Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let workers = udp_workers();
    let mut u = Vec::new();
    for a in udp {
        u.extend(bind_udp(*a, workers)?);
    }
    let mut t = Vec::new();
    for a in tcp {
        t.push(TcpListener::bind(a).await?);
    }
    Ok((u, t))
}

/// UDP sockets per listening address: one per CPU this process may run on (its affinity mask
/// and cgroup quota count).
pub fn udp_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `n` UDP sockets bound to `addr` with `SO_REUSEPORT` (one without it when `n` is 1); with
/// port 0 the first socket's port is the others'.
pub fn bind_udp(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    use nix::sys::socket::{
        bind as bind_fd, getsockname, setsockopt, socket, sockopt, AddressFamily, SockFlag,
        SockType, SockaddrStorage,
    };
    if n <= 1 {
        let s = std::net::UdpSocket::bind(addr)?;
        s.set_nonblocking(true)?;
        return Ok(vec![UdpSocket::from_std(s)?]);
    }
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let mut at = SockaddrStorage::from(addr);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let fd = socket(
            family,
            SockType::Datagram,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        setsockopt(&fd, sockopt::ReusePort, &true)?;
        bind_fd(std::os::fd::AsRawFd::as_raw_fd(&fd), &at)?;
        if out.is_empty() {
            at = getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        }
        out.push(UdpSocket::from_std(std::net::UdpSocket::from(fd))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_names_each_tag_once_and_at_most_max_unsupported() {
        let mut req = String::from(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\n\
             To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nRequire: 100rel, foo, Foo, foo\r\n",
        );
        let many: Vec<String> = (0..3000).map(|i| format!("t{i}")).collect();
        req.push_str(&format!("Require: {}\r\n", many.join(",")));
        req.push_str("Content-Length: 0\r\n\r\n");
        let msg = Message::parse(req.as_bytes()).unwrap();
        let line = unsupported(&msg).unwrap();
        let text = line.as_str();
        let tags: Vec<&str> = text
            .trim_start_matches("Unsupported: ")
            .trim_end()
            .split(", ")
            .collect();
        assert_eq!(tags.len(), MAX_UNSUPPORTED, "{text}");
        assert_eq!(
            &tags[..3],
            ["foo", "Foo", "t0"],
            "case-sensitive, in order, once"
        );
        let small = Message::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\n\
              To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nRequire: timer\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert!(unsupported(&small).is_none(), "timer is supported");
    }

    /// `push_hex` writes what `{:0width$x}` writes, at every digit count and width used.
    #[test]
    fn hex_as_format_writes_it() {
        for v in [
            0u64,
            1,
            0xf,
            0x10,
            0xdead_beef,
            u64::from(u32::MAX),
            u64::MAX,
            1 << 63,
        ] {
            for width in [1, 8, 17] {
                let mut out = String::new();
                push_hex(&mut out, v, width);
                assert_eq!(out, format!("{v:0width$x}"));
            }
        }
    }
}
