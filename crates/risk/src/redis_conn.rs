//! Redis connections with explicit timeouts, and the circuit breaker in front of them.
//!
//! redis 1.8's `ConnectionManager` reconnects but never retries a command, and with default
//! settings a command sent while Redis is down waits ≈ 9.5 s (DESIGN.md): here every
//! connection has a response and a connect timeout and few reconnect attempts, every call is
//! wrapped in a deadline by its caller, and after a failure calls skip Redis for `breaker_ms`
//! so a dead Redis costs each call nothing rather than a full deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::error::RiskError;

/// The Redis URL from the config or from the named environment variable.
pub(crate) fn resolve_url(cfg: &RedisConfig) -> Result<String, RiskError> {
    if let Some(url) = &cfg.url {
        return Ok(url.expose().to_owned());
    }
    let var = cfg.url_env.as_deref().unwrap_or_default();
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(RiskError::Config(vec![(
            "risk.redis.url_env".into(),
            format!("environment variable {var} is not set and risk.redis.url is empty"),
        )])),
    }
}

/// A lazily connecting manager: building it never waits for Redis, so the server starts (and
/// fails open or closed per policy) while Redis is down. Needs a Tokio runtime.
pub fn connect(cfg: &RedisConfig) -> Result<ConnectionManager, RiskError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RiskError::NoRuntime);
    }
    let url = resolve_url(cfg)?;
    let client = redis::Client::open(url.as_str()).map_err(|_| {
        // The parser's message may quote the URL: keep it out.
        RiskError::Config(vec![(
            "risk.redis.url".into(),
            "not a valid Redis URL".into(),
        )])
    })?;
    let ms = Duration::from_millis;
    let mc = ConnectionManagerConfig::new()
        .set_response_timeout(Some(ms(cfg.response_timeout_ms)))
        .set_connection_timeout(Some(ms(cfg.connection_timeout_ms)))
        .set_number_of_retries(cfg.retries)
        .set_min_delay(ms(10))
        .set_max_delay(ms(cfg.connection_timeout_ms.max(10)));
    ConnectionManager::new_lazy_with_config(client, mc)
        .map_err(|e| RiskError::from_redis("redis", &e))
}

/// Refuses a Redis that is one node of a Redis Cluster with other nodes: this client is not a
/// Cluster client, so such a node answers MOVED for every key it does not own (a single-node
/// cluster owning every slot works). Best effort at start-up: a Redis that does not answer
/// within the connect timeout is not refused (the node starts degraded and fails open).
pub async fn refuse_multi_node_cluster(cfg: &RedisConfig) -> Result<(), RiskError> {
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
        Ok(Some(Some((nodes, size)))) => Err(RiskError::Config(vec![(
            "risk.redis.url".into(),
            format!(
                "is a node of a Redis Cluster ({} known nodes, {} masters): this build's Redis \
                 client is not a Cluster client and would get MOVED for other nodes' keys; use \
                 one Redis (with replicas for failover)",
                nodes.unwrap_or(0),
                size.unwrap_or(0)
            ),
        )])),
        _ => Ok(()),
    }
}

/// Open for `span` after a failure: callers fail fast instead of queueing on a dead server.
#[derive(Debug)]
pub(crate) struct Breaker {
    epoch: Instant,
    /// Milliseconds since `epoch` until which calls are refused.
    open_until: AtomicU64,
    span: Duration,
}

impl Breaker {
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
