//! UDP and TCP transport with RFC 3261 §17.2 server transactions for a redirect server.
//!
//! Every INVITE runs the [`CallHandler`] once; retransmissions get the stored response, the ACK
//! for a non-2xx final is absorbed, CANCEL ends a pending INVITE with 487, and timers G and H
//! retransmit the final response over UDP until it is acknowledged.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tollgate_core::{CallFacts, Decision, DecisionAction, NumberPlan, Verification};
use tracing::{debug, warn};

use crate::extract::{extract, Emergency};
use crate::message::{frame, Frame, Message, Method, Request, StartLine, MAX_MESSAGE};
use crate::response::{self, reason_phrase};
use crate::trunk::Trunks;

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
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    Tcp {
        tx: mpsc::UnboundedSender<Arc<[u8]>>,
        peer: SocketAddr,
    },
}

impl Reply {
    fn reliable(&self) -> bool {
        matches!(self, Reply::Tcp { .. })
    }

    fn peer(&self) -> SocketAddr {
        match self {
            Reply::Udp { peer, .. } | Reply::Tcp { peer, .. } => *peer,
        }
    }

    async fn send(&self, bytes: &Arc<[u8]>) {
        metrics::counter!("tollgate_sip_responses_sent_total").increment(1);
        match self {
            Reply::Udp { socket, peer } => {
                if let Err(e) = socket.send_to(bytes, peer).await {
                    warn!(%peer, error = %e, "udp send failed");
                }
            }
            Reply::Tcp { tx, .. } => {
                let _ = tx.send(Arc::clone(bytes));
            }
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct TxKey {
    branch: Box<str>,
    sent_by: Box<str>,
    invite: bool,
}

#[derive(Debug)]
enum TxState {
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

const SHARDS: usize = 16;

/// The transaction table, sharded so receive loops and deciders rarely contend.
#[derive(Debug)]
struct Table {
    shards: Vec<Mutex<HashMap<TxKey, TxState>>>,
    hasher: RandomState,
}

impl Table {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn with<R>(&self, key: &TxKey, f: impl FnOnce(&mut HashMap<TxKey, TxState>) -> R) -> R {
        let idx = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let shard = self.shards.get(idx).unwrap_or_else(|| unreachable_shard());
        let mut guard = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .sum()
    }
}

fn unreachable_shard() -> ! {
    // idx is always < SHARDS; kept out of line so the hot path has no panic branch inline.
    std::process::abort()
}

/// A running SIP server: shared state between listeners and transactions.
#[derive(Debug)]
pub struct Server<H> {
    ctx: Context<H>,
    table: Table,
    draining: AtomicBool,
    pending: AtomicUsize,
    drained: Notify,
    refs: AtomicU64,
    ref_prefix: u32,
}

impl<H: CallHandler> Server<H> {
    pub fn new(ctx: Context<H>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            table: Table::new(),
            draining: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            drained: Notify::new(),
            refs: AtomicU64::new(0),
            ref_prefix: rand::random(),
        })
    }

    pub fn handler(&self) -> &H {
        &self.ctx.handler
    }

    /// Live transactions (for tests and metrics).
    pub fn transactions(&self) -> usize {
        self.table.len()
    }

    /// Serves until `shutdown` completes, then drains: new INVITEs get 503, OPTIONS 503, and
    /// pending decisions are answered (up to the drain timeout) before returning.
    pub async fn run(
        self: Arc<Self>,
        udp: Vec<UdpSocket>,
        tcp: Vec<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut tasks = Vec::new();
        for socket in udp {
            let me = Arc::clone(&self);
            tasks.push(tokio::spawn(me.udp_loop(Arc::new(socket))));
        }
        for listener in tcp {
            let me = Arc::clone(&self);
            tasks.push(tokio::spawn(me.tcp_accept(listener)));
        }
        shutdown.await;
        self.draining.store(true, Ordering::SeqCst);
        tracing::info!(pending = self.pending.load(Ordering::SeqCst), "draining");
        let deadline = tokio::time::Instant::now() + self.ctx.config.drain_timeout;
        while self.pending.load(Ordering::SeqCst) > 0 {
            let notified = self.drained.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                warn!(
                    pending = self.pending.load(Ordering::SeqCst),
                    "drain timeout"
                );
                break;
            }
        }
        for t in tasks {
            t.abort();
        }
    }

    async fn udp_loop(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP port unreachable surfaces here on Linux; keep serving.
                    debug!(error = %e, "udp recv");
                    continue;
                }
            };
            let Some(data) = buf.get(..n) else { continue };
            let reply = Reply::Udp {
                socket: Arc::clone(&socket),
                peer,
            };
            self.on_message(data, reply, true);
        }
    }

    async fn tcp_accept(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(Arc::clone(&self).tcp_conn(stream, peer));
                }
                Err(e) => {
                    warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn tcp_conn(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Arc<[u8]>>();
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let reply = Reply::Tcp { tx, peer };
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 16384];
        'conn: loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            loop {
                match frame(&buf) {
                    Frame::Incomplete => break,
                    Frame::KeepAlive(skip) => {
                        buf.drain(..skip);
                    }
                    Frame::Message {
                        skip,
                        len,
                        missing_length,
                    } => {
                        let end = skip + len;
                        if let Some(data) = buf.get(skip..end) {
                            if missing_length {
                                // A stream cannot be framed without Content-Length (RFC 3261 §18.3).
                                self.answer_garbage(data, &reply, 400, "Missing Content-Length");
                                break 'conn;
                            }
                            self.on_message(data, reply.clone(), false);
                        }
                        buf.drain(..end.min(buf.len()));
                    }
                    Frame::Invalid(why) => {
                        self.answer_garbage(&buf, &reply, 400, why);
                        break 'conn;
                    }
                }
            }
        }
        drop(reply);
        let _ = writer.await;
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
                let bytes: Arc<[u8]> =
                    response::build(&msg, reply.peer(), code, why, Some(&self.tag()), &[]).into();
                let reply = reply.clone();
                tokio::spawn(async move { reply.send(&bytes).await });
            }
        }
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
        let req = match Request::from_message(msg.clone(), datagram) {
            Ok(r) => r,
            Err(rej) => {
                metrics::counter!("tollgate_sip_parse_errors_total").increment(1);
                debug!(peer = %reply.peer(), status = rej.status, reason = %rej.reason, "rejected malformed request");
                let is_ack = matches!(msg.start, StartLine::Request { method: "ACK", .. });
                if can_answer && !is_ack {
                    let bytes: Arc<[u8]> = response::build(
                        &msg,
                        reply.peer(),
                        rej.status,
                        &rej.reason,
                        Some(&self.tag()),
                        &[],
                    )
                    .into();
                    tokio::spawn(async move { reply.send(&bytes).await });
                }
                return;
            }
        };
        metrics::counter!("tollgate_sip_requests_total", "method" => method_label(req.method))
            .increment(1);
        let key = tx_key(&req);
        match req.method {
            Method::Ack => self.on_ack(key),
            Method::Invite => self.on_invite(req, key, reply),
            Method::Cancel => self.on_cancel(&req, key, reply),
            Method::Options | Method::Other => self.on_non_invite(&req, key, reply),
        }
    }

    fn on_ack(&self, mut key: TxKey) {
        key.invite = true;
        self.table.with(&key, |t| {
            if let Some(state) = t.get_mut(&key) {
                if let TxState::Completed { acked, .. } = state {
                    acked.notify_one();
                    *state = TxState::Confirmed;
                }
            }
        });
    }

    /// Resends what a retransmitted request's transaction last sent; true if it was one.
    fn retransmission(&self, key: &TxKey, reply: &Reply) -> bool {
        let last = self.table.with(key, |t| match t.get(key) {
            None => None,
            Some(TxState::Proceeding { provisional, .. }) => Some(provisional.clone()),
            Some(TxState::Completed { response, .. } | TxState::Done { response }) => {
                Some(Some(Arc::clone(response)))
            }
            Some(TxState::Confirmed) => Some(None),
        });
        match last {
            None => false,
            Some(bytes) => {
                metrics::counter!("tollgate_sip_retransmissions_total").increment(1);
                if let Some(bytes) = bytes {
                    let reply = reply.clone();
                    tokio::spawn(async move { reply.send(&bytes).await });
                }
                true
            }
        }
    }

    fn on_invite(self: &Arc<Self>, req: Request<'_>, key: TxKey, reply: Reply) {
        if self.retransmission(&key, &reply) {
            return;
        }
        let tag = self.tag();
        let source = reply.peer();
        let early = if self.draining.load(Ordering::Relaxed) {
            Some((
                503,
                "Service Unavailable".to_owned(),
                format!("Retry-After: {}\r\n", self.ctx.config.retry_after),
            ))
        } else {
            None
        };
        let trunk = self.ctx.trunks.classify(source.ip());
        let early = early.or_else(|| {
            trunk
                .is_none()
                .then(|| (403, "Forbidden (unknown source)".to_owned(), String::new()))
        });
        let cancel = Arc::new(Notify::new());
        // What every response copies from the request, read once; both answers that do not need
        // the pipeline are built now.
        let copied = response::Copied::new(&req.msg, source);
        let cancelled: Arc<[u8]> = copied
            .response(487, reason_phrase(487), Some(&tag), "")
            .into();
        let trying: Arc<[u8]> = copied.response(100, reason_phrase(100), None, "").into();
        if let Some((code, reason, extra)) = early {
            let bytes: Arc<[u8]> = copied.response(code, &reason, Some(&tag), &extra).into();
            self.table.with(&key, |t| {
                t.insert(
                    key.clone(),
                    TxState::Proceeding {
                        provisional: None,
                        cancel: Arc::clone(&cancel),
                        cancelled: false,
                    },
                )
            });
            let me = Arc::clone(self);
            tokio::spawn(async move { me.complete_invite(key, reply, bytes).await });
            return;
        }
        let Some(trunk) = trunk else { return };
        let facts = extract(&req, trunk, &self.ctx.plan, &self.ctx.emergency);
        let call = Call {
            facts,
            call_ref: self.call_ref(),
            source,
            received: Instant::now(),
        };
        // Keep what the 302 needs from the request, as owned bytes: the datagram buffer is reused.
        let template = ResponseTemplate { copied, tag };
        self.table.with(&key, |t| {
            t.insert(
                key.clone(),
                TxState::Proceeding {
                    provisional: None,
                    cancel: Arc::clone(&cancel),
                    cancelled: false,
                },
            )
        });
        self.pending.fetch_add(1, Ordering::SeqCst);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut call = call;
            let cfg = &me.ctx.config;
            let outcome = {
                let decide =
                    tokio::time::timeout(cfg.decision_timeout, me.ctx.handler.decide(&mut call));
                tokio::pin!(decide);
                let trying_timer = tokio::time::sleep(cfg.trying_delay);
                tokio::pin!(trying_timer);
                let mut trying_sent = false;
                loop {
                    tokio::select! {
                        biased;
                        d = &mut decide => break d.ok(),
                        () = cancel.notified() => break None,
                        () = &mut trying_timer, if !trying_sent => {
                            trying_sent = true;
                            me.table.with(&key, |t| {
                                if let Some(TxState::Proceeding { provisional, .. }) = t.get_mut(&key) {
                                    *provisional = Some(Arc::clone(&trying));
                                }
                            });
                            reply.send(&trying).await;
                        }
                    }
                }
            };
            let cancelled_now = outcome.is_none() && me.cancel_seen(&key);
            let bytes: Arc<[u8]> = match outcome {
                Some(decision) => template.render(&decision, &call).into(),
                None if cancelled_now => Arc::clone(&cancelled),
                None => {
                    warn!(call_id = %call.facts.call_id, "decision timeout: answering 503");
                    metrics::counter!("tollgate_decision_timeouts_total").increment(1);
                    let retry = format!("Retry-After: {}\r\n", cfg.retry_after);
                    template
                        .with_status(503, "Service Unavailable (decision timeout)", &retry)
                        .into()
                }
            };
            if me.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
                me.drained.notify_waiters();
            }
            me.complete_invite(key, reply, bytes).await;
        });
    }

    /// Sends the final response, retransmits it on UDP (timer G) until the ACK or timer H,
    /// then keeps the transaction for T4 to absorb ACK retransmissions (timer I).
    async fn complete_invite(&self, key: TxKey, reply: Reply, bytes: Arc<[u8]>) {
        let acked = Arc::new(Notify::new());
        self.table.with(&key, |t| {
            t.insert(
                key.clone(),
                TxState::Completed {
                    response: Arc::clone(&bytes),
                    acked: Arc::clone(&acked),
                },
            )
        });
        reply.send(&bytes).await;
        let cfg = &self.ctx.config;
        let timer_h = tokio::time::sleep(cfg.t1 * 64);
        tokio::pin!(timer_h);
        let mut interval = cfg.t1;
        let reliable = reply.reliable();
        let got_ack = loop {
            let g = tokio::time::sleep(if reliable { cfg.t1 * 64 } else { interval });
            tokio::select! {
                () = acked.notified() => break true,
                () = &mut timer_h => break false,
                () = g, if !reliable => {
                    metrics::counter!("tollgate_sip_final_retransmits_total").increment(1);
                    reply.send(&bytes).await;
                    interval = (interval * 2).min(cfg.t2);
                }
            }
        };
        if !got_ack {
            metrics::counter!("tollgate_sip_ack_timeouts_total").increment(1);
        } else if !reliable {
            tokio::time::sleep(cfg.t4).await;
        }
        self.table.with(&key, |t| t.remove(&key));
    }

    fn cancel_seen(&self, key: &TxKey) -> bool {
        self.table.with(key, |t| {
            matches!(
                t.get(key),
                Some(TxState::Proceeding {
                    cancelled: true,
                    ..
                })
            )
        })
    }

    fn on_cancel(self: &Arc<Self>, req: &Request<'_>, key: TxKey, reply: Reply) {
        if self.retransmission(&key, &reply) {
            return;
        }
        let invite_key = TxKey {
            invite: true,
            ..key.clone()
        };
        let found = self
            .table
            .with(&invite_key, |t| match t.get_mut(&invite_key) {
                Some(TxState::Proceeding {
                    cancel, cancelled, ..
                }) => {
                    *cancelled = true;
                    cancel.notify_one();
                    true
                }
                Some(_) => true,
                None => false,
            });
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
            Method::Options => {
                self.finish_non_invite(
                    req,
                    key,
                    reply,
                    200,
                    "OK",
                    &[allow, "Accept: application/sdp".to_owned()],
                );
            }
            _ => self.finish_non_invite(req, key, reply, 405, reason_phrase(405), &[allow]),
        }
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
        let bytes: Arc<[u8]> = response::build(
            &req.msg,
            reply.peer(),
            code,
            reason,
            Some(&self.tag()),
            extra,
        )
        .into();
        self.table.with(&key, |t| {
            t.insert(
                key.clone(),
                TxState::Done {
                    response: Arc::clone(&bytes),
                },
            )
        });
        let me = Arc::clone(self);
        tokio::spawn(async move {
            reply.send(&bytes).await;
            // Timer J: absorb retransmissions for 64*T1 on UDP.
            if !reply.reliable() {
                tokio::time::sleep(me.ctx.config.t1 * 64).await;
            }
            me.table.with(&key, |t| t.remove(&key));
        });
    }
}

/// `v` in lower-case hex, at least `width` digits (as `{:0width$x}` writes it): tags and call
/// references are made per call, where the formatting machinery cost more than the rest.
fn push_hex(out: &mut String, v: u64, width: usize) {
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
    let sent_by = match req.via.port {
        Some(p) => format!("{}:{p}", req.via.host.to_ascii_lowercase()),
        None => req.via.host.to_ascii_lowercase(),
    };
    let branch = match req.via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => b.to_owned(),
        _ => {
            let from_tag = req.from.param("tag").unwrap_or_default();
            format!("2543|{}|{}|{}", req.call_id, req.cseq.seq, from_tag)
        }
    };
    TxKey {
        branch: branch.into(),
        sent_by: sent_by.into(),
        invite: matches!(req.method, Method::Invite | Method::Ack),
    }
}

/// What the final response needs from the request (its copied headers, owned so the datagram
/// buffer can be reused) and the To-tag chosen for it.
#[derive(Debug)]
struct ResponseTemplate {
    copied: response::Copied,
    tag: String,
}

impl ResponseTemplate {
    /// A final response; `extra` is complete lines, each ending in CRLF.
    fn with_status(&self, code: u16, reason: &str, extra: &str) -> Vec<u8> {
        self.copied.response(code, reason, Some(&self.tag), extra)
    }

    /// The final response for a decision: one block of extra lines written in place (each
    /// line a `format!` of its own cost more than the rest of the response).
    fn render(&self, decision: &Decision, call: &Call) -> Vec<u8> {
        let facts = &call.facts;
        let rule = response::sanitize(&decision.rule);
        let mut x = String::with_capacity(384);
        match &decision.action {
            DecisionAction::Route(t) => {
                let _ = write!(
                    x,
                    "Contact: <sip:{}@{};ref={}",
                    t.queue, t.host, call.call_ref
                );
                if let Some(p) = t.priority {
                    let _ = write!(x, ";priority={p}");
                }
                if !t.skills.is_empty() {
                    x.push_str(";skills=");
                    for (i, skill) in t.skills.iter().enumerate() {
                        if i > 0 {
                            x.push_str("%2C");
                        }
                        x.push_str(skill);
                    }
                }
                if let Some(l) = &t.language {
                    x.push_str(";lang=");
                    x.push_str(l);
                }
                if t.verify {
                    x.push_str(";verify");
                }
                if let Some(e) = facts.ani.e164() {
                    x.push_str(";ani=%2B");
                    x.push_str(e.digits());
                }
                // The verification outcome for the ACD (STIR/SHAKEN or the carrier's trusted
                // verstat): an attestation only when the signature verified.
                let mut identity = None;
                if let Some(risk) = &facts.risk {
                    x.push_str(";risk=");
                    x.push_str(risk.level.as_str());
                    identity = match (&risk.verification, risk.attestation) {
                        (Verification::Verified, Some(a)) => {
                            x.push_str(";attest=");
                            x.push_str(a.as_str());
                            Some(format!("X-Identity: verified;attest={}", a.as_str()))
                        }
                        (Verification::Verified, None) => Some("X-Identity: verified".to_owned()),
                        (Verification::Failed(why), _) => Some(format!(
                            "X-Identity: failed;reason=\"{}\"",
                            response::sanitize(why).replace(['"', '\\'], "'")
                        )),
                        (Verification::Absent, _) => None,
                    };
                }
                let _ = write!(
                    x,
                    ">\r\nX-Call-Ref: {}\r\nX-ANI: {}\r\nX-ANI-Source: {}{}\r\nX-DNIS: {}\r\n\
                     X-Rule: {rule}\r\nX-Rules-Version: {}\r\n",
                    call.call_ref,
                    facts.ani,
                    facts.ani_source.as_str(),
                    if facts.ani_verified {
                        ""
                    } else {
                        ";unverified"
                    },
                    facts.dnis,
                    response::sanitize(&decision.version),
                );
                if let Some(line) = identity {
                    x.push_str(&line);
                    x.push_str("\r\n");
                }
                self.with_status(302, reason_phrase(302), &x)
            }
            DecisionAction::Reject {
                code,
                reason,
                headers,
            } => {
                let _ = write!(x, "X-Call-Ref: {}\r\nX-Rule: {rule}\r\n", call.call_ref);
                for h in headers {
                    x.push_str(&response::sanitize(h));
                    x.push_str("\r\n");
                }
                self.with_status(*code, reason, &x)
            }
        }
    }
}

/// Binds UDP sockets and TCP listeners for the given addresses.
pub async fn bind(
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
) -> std::io::Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let mut u = Vec::new();
    for a in udp {
        u.push(UdpSocket::bind(a).await?);
    }
    let mut t = Vec::new();
    for a in tcp {
        t.push(TcpListener::bind(a).await?);
    }
    Ok((u, t))
}

#[cfg(test)]
mod tests {
    use super::*;

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
