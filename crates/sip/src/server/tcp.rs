//! TCP and TLS: connection admission, the TLS handshake under its timeout, the framing reader
//! with its idle and message timeouts, and the writer with its byte cap and write timeout.
//!
//! A TLS connection is a TCP connection with a handshake first: it takes the same slot (the
//! per-source and total bounds count both), and once the handshake is done it is read, framed,
//! answered and closed exactly as TCP is. Responses go back on the connection the request came
//! in on.
//!
//! What one peer can hold is bounded: a connection slot (per source address and in all), the
//! read buffer (one message, at most `MAX_MESSAGE`, which `frame` enforces), and the responses
//! queued to it (`tcp_write_buffer`): a peer that does not read is closed when its queue passes
//! the cap or a write makes no progress for `tcp_write_timeout`, so a response never waits in
//! memory for a reader that is not there.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{CallHandler, Limits, Reply, Server};
use crate::message::{drain_frames, Framed};
use crate::tls::{Certificates, PeerIdentity};
use tollgate_core::Transport;

/// Why a connection was refused or closed by the server (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Close {
    /// `tcp_max_connections` reached.
    LimitTotal,
    /// `tcp_max_per_source` reached for the peer's address.
    LimitSource,
    /// Nothing read for `tcp_idle_timeout`.
    Idle,
    /// A message begun was not complete within `tcp_message_timeout` (slowloris, a short body).
    SlowMessage,
    /// The responses queued to the peer passed `tcp_write_buffer`: it does not read.
    WriteBuffer,
    /// A write made no progress for `tcp_write_timeout`.
    WriteTimeout,
    /// A write failed (the peer reset).
    WriteError,
    /// The stream could not be framed (400 sent).
    Framing,
}

impl Close {
    fn as_str(self) -> &'static str {
        match self {
            Close::LimitTotal => "limit-total",
            Close::LimitSource => "limit-source",
            Close::Idle => "idle",
            Close::SlowMessage => "slow-message",
            Close::WriteBuffer => "write-buffer",
            Close::WriteTimeout => "write-timeout",
            Close::WriteError => "write-error",
            Close::Framing => "framing",
        }
    }

    fn count(self) {
        metrics::counter!("tollgate_sip_tcp_closed_total", "why" => self.as_str()).increment(1);
    }
}

/// Open connections, in all and per source address, and the bytes queued to all of them.
#[derive(Debug, Default)]
pub(super) struct Conns {
    total: AtomicUsize,
    per_source: Mutex<HashMap<IpAddr, usize>>,
    queued: AtomicUsize,
}

impl Conns {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<Slot, Close> {
        let mut per = self
            .per_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.total.load(Ordering::Relaxed) >= limits.tcp_max_connections {
            return Err(Close::LimitTotal);
        }
        let n = per.entry(ip).or_insert(0);
        if *n >= limits.tcp_max_per_source {
            return Err(Close::LimitSource);
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            conns: Arc::clone(self),
            ip,
        })
    }

    /// Open connections.
    pub(super) fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Response bytes queued to TCP peers and not yet written.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// One admitted connection's slot, given back when the connection is gone.
#[derive(Debug)]
struct Slot {
    conns: Arc<Conns>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per = self
            .conns
            .per_source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = per.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
        self.conns.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sending side of one connection, held by every transaction that may answer on it: the
/// writer ends when the last one is gone.
#[derive(Debug)]
pub(super) struct Link {
    tx: mpsc::UnboundedSender<Arc<[u8]>>,
    outbox: Arc<Outbox>,
    /// TCP or TLS.
    pub(super) transport: Transport,
    /// A TLS peer's verified client certificate.
    pub(super) cert: Option<Arc<PeerIdentity>>,
}

impl Link {
    /// Queues `bytes` for the writer; past the cap the connection is closed instead.
    pub(super) fn push(&self, bytes: &Arc<[u8]>) {
        let outbox = &self.outbox;
        if outbox.is_closed() {
            return;
        }
        let len = bytes.len();
        if outbox.queued.load(Ordering::Relaxed) + len > outbox.cap {
            outbox.close(Close::WriteBuffer);
            return;
        }
        outbox.queued.fetch_add(len, Ordering::Relaxed);
        outbox.conns.queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.send(Arc::clone(bytes)).is_err() {
            outbox.written(len);
        }
    }
}

/// The responses queued to one connection: a byte count against the cap, and a close signal the
/// reader and the writer both watch.
#[derive(Debug)]
struct Outbox {
    queued: AtomicUsize,
    cap: usize,
    closed: AtomicBool,
    notify: Notify,
    conns: Arc<Conns>,
}

impl Outbox {
    fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::Relaxed);
        self.conns.queued.fetch_sub(len, Ordering::Relaxed);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Closes the connection for `why` (counted once).
    fn close(&self, why: Close) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            why.count();
            debug!(why = why.as_str(), "tcp connection closed");
            self.notify.notify_waiters();
        }
    }

    async fn closed(&self) {
        loop {
            let woken = self.notify.notified();
            if self.is_closed() {
                return;
            }
            woken.await;
        }
    }
}

async fn write_loop<S: AsyncWrite>(
    mut wr: WriteHalf<S>,
    mut rx: mpsc::UnboundedReceiver<Arc<[u8]>>,
    outbox: Arc<Outbox>,
    timeout: Duration,
) {
    loop {
        let bytes = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
            () = outbox.closed() => break,
        };
        let written = tokio::select! {
            r = tokio::time::timeout(timeout, wr.write_all(&bytes)) => match r {
                Ok(Ok(())) => None,
                Ok(Err(_)) => Some(Close::WriteError),
                Err(_) => Some(Close::WriteTimeout),
            },
            () = outbox.closed() => Some(Close::WriteBuffer),
        };
        outbox.written(bytes.len());
        if let Some(why) = written {
            outbox.close(why);
            break;
        }
    }
    // What is still queued is dropped with the connection.
    rx.close();
    while let Ok(bytes) = rx.try_recv() {
        outbox.written(bytes.len());
    }
    if !outbox.is_closed() {
        let _ = tokio::time::timeout(timeout, wr.shutdown()).await;
    }
}

impl<H: CallHandler> Server<H> {
    pub(super) async fn tcp_accept(self: Arc<Self>, listener: TcpListener) {
        self.accept_loop(listener, Transport::Tcp, |me, stream, peer, slot| {
            tokio::spawn(me.stream_conn(stream, peer, slot, Transport::Tcp, None));
        })
        .await;
    }

    /// Accepts TLS connections: each takes a slot as TCP does, then has `handshake_timeout`
    /// to finish its handshake (a plain-TCP hello, an expired or unknown client certificate,
    /// or a peer that never finishes is counted, logged and closed), then is served as TCP.
    pub(super) async fn tls_accept(
        self: Arc<Self>,
        listener: TcpListener,
        certs: Arc<Certificates>,
    ) {
        self.accept_loop(listener, Transport::Tls, move |me, stream, peer, slot| {
            let certs = Arc::clone(&certs);
            tokio::spawn(async move {
                let shake =
                    tokio::time::timeout(certs.handshake_timeout, certs.acceptor().accept(stream));
                let tls = match shake.await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return handshake_failed(peer, "error", &e.to_string()),
                    Err(_) => return handshake_failed(peer, "timeout", "no handshake in time"),
                };
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|der| Arc::new(PeerIdentity::of(der.as_ref())));
                metrics::counter!(
                    "tollgate_sip_tls_handshakes_total",
                    "result" => "ok",
                    "client_cert" => if cert.is_some() { "yes" } else { "no" }
                )
                .increment(1);
                debug!(
                    %peer,
                    cert = cert.as_ref().map(|c| c.fingerprint()).as_deref(),
                    "tls connection"
                );
                me.stream_conn(tls, peer, slot, Transport::Tls, cert).await;
            });
        })
        .await;
    }

    /// Accepts connections on `listener` and hands each admitted one, with its slot, to
    /// `serve`; a connection past a bound is closed before a byte is read.
    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        transport: Transport,
        serve: impl Fn(Arc<Self>, TcpStream, SocketAddr, Slot),
    ) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => match self.conns.admit(peer.ip(), &self.ctx.config.limits) {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        serve(Arc::clone(&self), stream, peer, slot);
                    }
                    Err(why) => {
                        // Refused before a byte is read: the peer sees the connection closed.
                        why.count();
                        debug!(%peer, why = why.as_str(), transport = transport.as_str(), "connection refused");
                        drop(stream);
                    }
                },
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, transport = transport.as_str(), "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn stream_conn<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        slot: Slot,
        transport: Transport,
        cert: Option<Arc<PeerIdentity>>,
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let limits = self.ctx.config.limits.clone();
        let (mut rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel::<Arc<[u8]>>();
        let outbox = Arc::new(Outbox {
            queued: AtomicUsize::new(0),
            cap: limits.tcp_write_buffer,
            closed: AtomicBool::new(false),
            notify: Notify::new(),
            conns: Arc::clone(&self.conns),
        });
        let writer = tokio::spawn(write_loop(
            wr,
            rx,
            Arc::clone(&outbox),
            limits.tcp_write_timeout,
        ));
        let reply = Reply::Tcp {
            conn: Arc::new(Link {
                tx,
                outbox: Arc::clone(&outbox),
                transport,
                cert,
            }),
            peer,
        };
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16384];
        let mut last_read = Instant::now();
        // When the partial message now in `buf` began.
        let mut begun: Option<Instant> = None;
        'conn: loop {
            let (deadline, late) = match begun {
                Some(t) => (t + limits.tcp_message_timeout, Close::SlowMessage),
                None => (last_read + limits.tcp_idle_timeout, Close::Idle),
            };
            let n = tokio::select! {
                r = rd.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                () = tokio::time::sleep_until(deadline) => {
                    outbox.close(late);
                    break;
                }
                () = outbox.closed() => break,
            };
            last_read = Instant::now();
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            let drained = drain_frames(&mut buf, |piece| match piece {
                Framed::Message(data) => self.on_message(data, reply.clone(), false),
                Framed::MissingLength(data) => {
                    self.answer_garbage(data, &reply, 400, "Missing Content-Length");
                    Close::Framing.count();
                }
                Framed::Invalid(data, why) => {
                    self.answer_garbage(data, &reply, 400, why);
                    Close::Framing.count();
                }
            });
            let Some(completed) = drained else {
                break 'conn;
            };
            if buf.is_empty() {
                begun = None;
                if buf.capacity() > 16384 {
                    // One large message does not pin its buffer for the connection's life.
                    buf = Vec::with_capacity(4096);
                }
            } else if completed || begun.is_none() {
                begun = Some(last_read);
            }
        }
        drop(reply);
        let _ = writer.await;
        drop(slot);
    }
}

/// A TLS handshake that did not complete: counted and logged; the listener keeps serving.
fn handshake_failed(peer: SocketAddr, why: &'static str, detail: &str) {
    metrics::counter!("tollgate_sip_tls_handshakes_total", "result" => why, "client_cert" => "no")
        .increment(1);
    warn!(%peer, why, error = detail, "tls handshake failed; connection closed");
}
