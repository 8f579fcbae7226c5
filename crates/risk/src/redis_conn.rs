//! Redis connections with explicit timeouts, and the hold-off in front of them ([`HoldOff`]).
//!
//! redis 1.8's `ConnectionManager` reconnects but never retries a command, and with default
//! settings a command sent while Redis is down waits ≈ 9.5 s: here every
//! connection has a response and a connect timeout and few reconnect attempts, every call is
//! wrapped in a deadline by its caller, and after a failure calls skip Redis for `breaker_ms`
//! so a dead Redis costs each call nothing rather than a full deadline.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{RedisFuture, TlsCertificates};

use crate::config::{cluster_node_url, RedisConfig};
use crate::error::RiskError;

/// The Redis URL from the config or from the named environment variable.
pub(crate) fn resolve_url(cfg: &RedisConfig) -> Result<String, RiskError> {
    if let Some(url) = &cfg.url {
        return Ok(url.expose().to_owned());
    }
    let var = cfg.url_env.as_deref().unwrap_or_default();
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(RiskError::Config(vec![tollgate_core::Problem::new(
            "risk.redis.url_env",
            format!("environment variable {var} is not set and risk.redis.url is empty"),
        )])),
    }
}

/// One connection type for both deployments: one Redis (`ConnectionManager`, reconnecting) or
/// a Redis Cluster (`cluster_async::ClusterConnection`, following MOVED/ASK and refreshing its
/// slot map after a failover). The stores send scripts and pipelines through it and never know
/// which; every script and MULTI they send touches one hash tag, so one slot.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    /// A connection of its own on each thread that runs a single-threaded runtime (each of the
    /// SIP server's UDP threads), made there on first use ([`connect_per_thread`]), and the
    /// shared one elsewhere.
    PerThread(Arc<PerThread>),
}

impl RedisConn {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Single(_) => "redis",
            Self::Cluster(_) => "redis-cluster",
            Self::PerThread(p) => p.shared.kind(),
        }
    }
}

/// What [`RedisConn::PerThread`] makes its connections from.
pub struct PerThread {
    id: usize,
    cfg: RedisConfig,
    shared: RedisConn,
}

impl std::fmt::Debug for PerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the URL (and its password): only the kind is shown.
        f.debug_struct("PerThread")
            .field("id", &self.id)
            .field("kind", &self.shared.kind())
            .finish()
    }
}

thread_local! {
    /// This thread's own connections, by [`PerThread::id`].
    static LOCAL: RefCell<Vec<(usize, RedisConn)>> = const { RefCell::new(Vec::new()) };
}

impl PerThread {
    /// The connection for this thread. A call decided on a UDP thread sends its script over
    /// that thread's connection, whose reader runs on the same thread: the reply wakes the
    /// call with no hand-off between threads (a shared connection's reader lives on another
    /// runtime, which costs two cross-thread wake-ups per call).
    fn conn(&self) -> RedisConn {
        let own = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !own {
            return self.shared.clone();
        }
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if let Some((_, c)) = local.iter().find(|(id, _)| *id == self.id) {
                return c.clone();
            }
            let c = connect(&self.cfg).unwrap_or_else(|_| self.shared.clone());
            local.push((self.id, c.clone()));
            c
        })
    }
}

/// A [`RedisConn::PerThread`]: the per-call store's connection (velocity), lazily connecting
/// like [`connect`], one per single-threaded runtime's thread.
pub fn connect_per_thread(cfg: &RedisConfig) -> Result<RedisConn, RiskError> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let shared = connect(cfg)?;
    Ok(RedisConn::PerThread(Arc::new(PerThread {
        id: NEXT.fetch_add(1, Ordering::Relaxed),
        cfg: cfg.clone(),
        shared,
    })))
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::PerThread(p) => {
                let mut c = p.conn();
                Box::pin(async move { c.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::PerThread(p) => {
                let mut c = p.conn();
                Box::pin(async move { c.req_packed_commands(pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::PerThread(p) => p.shared.get_db(),
        }
    }
}

/// The Cluster seed nodes from the config or from the named environment variable; `None` when
/// the config names no cluster (one Redis).
pub(crate) fn resolve_cluster(cfg: &RedisConfig) -> Result<Option<Vec<String>>, RiskError> {
    let raw: Vec<String> = if !cfg.cluster.is_empty() {
        cfg.cluster.iter().map(|s| s.expose().to_owned()).collect()
    } else if let Some(var) = &cfg.cluster_env {
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => {
                return Err(RiskError::Config(vec![tollgate_core::Problem::new(
                    "risk.redis.cluster_env",
                    format!("environment variable {var} is not set"),
                )]))
            }
        }
    } else {
        return Ok(None);
    };
    let mut nodes = Vec::with_capacity(raw.len());
    for (i, n) in raw.iter().enumerate() {
        match cluster_node_url(n) {
            Some(u) => nodes.push(u),
            None => {
                return Err(RiskError::Config(vec![tollgate_core::Problem::new(
                    "risk.redis.cluster",
                    format!(
                        "node {}: expected redis://[user:password@]host:port or host:port",
                        i + 1
                    ),
                )]))
            }
        }
    }
    Ok(Some(nodes))
}

/// The CA to trust for `rediss://`, when the config names one (else rustls uses the system's
/// roots).
fn tls_certificates(cfg: &RedisConfig) -> Result<Option<TlsCertificates>, RiskError> {
    let Some(path) = &cfg.tls_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| {
        RiskError::Config(vec![tollgate_core::Problem::new(
            "risk.redis.tls_ca_file",
            format!("{}: {e}", path.display()),
        )])
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// A lazily connecting connection: building it never waits for Redis, so the server starts
/// (and fails open or closed per policy) while Redis is down. Needs a Tokio runtime.
pub fn connect(cfg: &RedisConfig) -> Result<RedisConn, RiskError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RiskError::NoRuntime);
    }
    let ms = Duration::from_millis;
    // rustls needs a process-wide crypto provider before any rediss:// handshake; an already
    // installed one (the HTTP client's, the same ring) is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = tls_certificates(cfg)?;
    if let Some(nodes) = resolve_cluster(cfg)? {
        let mut builder = ClusterClientBuilder::new(nodes);
        if let Some(c) = certs {
            builder = builder.certs(c);
        }
        let client = builder
            .connection_timeout(ms(cfg.connection_timeout_ms))
            .response_timeout(ms(cfg.response_timeout_ms))
            .retries(u32::try_from(cfg.retries).unwrap_or(5))
            .min_retry_wait(10)
            .max_retry_wait(cfg.connection_timeout_ms.max(10))
            .build()
            .map_err(|_| {
                RiskError::Config(vec![tollgate_core::Problem::new(
                    "risk.redis.cluster",
                    "not a valid list of Redis Cluster nodes",
                )])
            })?;
        let cc = ClusterConfig::new()
            .set_connection_timeout(ms(cfg.connection_timeout_ms))
            .set_response_timeout(ms(cfg.response_timeout_ms));
        return Ok(RedisConn::Cluster(
            client.get_pending_async_connection_with_config(cc),
        ));
    }
    let url = resolve_url(cfg)?;
    let client = match certs {
        Some(c) => redis::Client::build_with_tls(url.as_str(), c),
        None => redis::Client::open(url.as_str()),
    }
    .map_err(|_| {
        // The parser's message may quote the URL: keep it out.
        RiskError::Config(vec![tollgate_core::Problem::new(
            "risk.redis.url",
            "not a valid Redis URL",
        )])
    })?;
    let mc = ConnectionManagerConfig::new()
        .set_response_timeout(Some(ms(cfg.response_timeout_ms)))
        .set_connection_timeout(Some(ms(cfg.connection_timeout_ms)))
        .set_number_of_retries(cfg.retries)
        .set_min_delay(ms(10))
        .set_max_delay(ms(cfg.connection_timeout_ms.max(10)));
    ConnectionManager::new_lazy_with_config(client, mc)
        .map(RedisConn::Single)
        .map_err(|e| RiskError::from_redis("redis", &e))
}

/// Refuses a `url` that is one node of a Redis Cluster with other nodes: the single-Redis
/// client would get MOVED for every key that node does not own (a single-node cluster owning
/// every slot works); such a deployment belongs in `cluster`. Best effort at start-up: a Redis that does not answer
/// within the connect timeout is not refused (the node starts degraded and fails open).
pub async fn refuse_multi_node_cluster(cfg: &RedisConfig) -> Result<(), RiskError> {
    if resolve_cluster(cfg)?.is_some() {
        return Ok(());
    }
    let url = resolve_url(cfg)?;
    let Ok(client) = redis::Client::open(url.as_str()) else {
        return Ok(());
    };
    let wait = Duration::from_millis(cfg.connection_timeout_ms.max(100));
    let probe = async {
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut c)
            .await
            .ok()?;
        if !info.contains("cluster_enabled:1") {
            return Some(None);
        }
        let cluster: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut c)
            .await
            .ok()?;
        let field = |name: &str| {
            cluster.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .and_then(|v| v.strip_prefix(':'))
                    .and_then(|v| v.trim().parse::<u32>().ok())
            })
        };
        let (nodes, size) = (field("cluster_known_nodes"), field("cluster_size"));
        Some((nodes.unwrap_or(1) > 1 || size.unwrap_or(1) > 1).then_some((nodes, size)))
    };
    match tokio::time::timeout(wait, probe).await {
        Ok(Some(Some((nodes, size)))) => Err(RiskError::Config(vec![tollgate_core::Problem::new(
            "risk.redis.url",
            format!(
                "is a node of a Redis Cluster ({} known nodes, {} masters): a single-Redis \
                 client would get MOVED for other nodes' keys; list the cluster's nodes in \
                 risk.redis.cluster instead of url",
                nodes.unwrap_or(0),
                size.unwrap_or(0)
            ),
        )])),
        _ => Ok(()),
    }
}

/// Held off for `span` after a failure: callers fail fast instead of queueing on a dead server.
/// One failure holds off, one success lets calls through again: simpler than the CRM's circuit
/// breaker (`tollgate_crm`'s, with a failure threshold and a half-open probe), hence its own
/// name. Configured by `risk.redis.breaker_ms`.
#[derive(Debug)]
pub(crate) struct HoldOff {
    epoch: Instant,
    /// Milliseconds since `epoch` until which calls are refused.
    open_until: AtomicU64,
    span: Duration,
}

impl HoldOff {
    pub(crate) fn new(span: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            open_until: AtomicU64::new(0),
            span,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn allows(&self) -> bool {
        self.now_ms() >= self.open_until.load(Ordering::Relaxed)
    }

    pub(crate) fn trip(&self) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.span.as_millis()).unwrap_or(u64::MAX));
        self.open_until.store(until, Ordering::Relaxed);
    }

    pub(crate) fn close(&self) {
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Relaxed);
        }
    }
}
