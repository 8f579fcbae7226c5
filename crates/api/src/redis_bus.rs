//! Fan-out across nodes through Redis pub/sub: every node publishes its own pops on one channel
//! and delivers everyone else's to its local subscribers. Pub/sub (not streams) because a pop
//! is only useful live; the pop store on each node covers lookups by call reference.
//!
//! On a Redis Cluster the channel is a shard channel (`SPUBLISH`/`SSUBSCRIBE`, Redis 7): classic
//! `PUBLISH` is broadcast to every node of the cluster, a shard channel lives on the one shard
//! that owns its slot (and its replicas), so fan-out costs the cluster one shard's work. redis-rs
//! 1.8's async Cluster client subscribes over RESP3 with a push sender and subscribes again by
//! itself after a reconnect or a failover (its subscription tracker); `SPUBLISH` is routed by
//! its channel like a key.
//!
//! Redis being down costs other nodes' pops, never a call or a local pop: publishing goes
//! through a bounded queue with a deadline, and both sides reconnect with backoff.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::{ProtocolVersion, PushKind, Value};
use tokio::sync::mpsc;

use crate::error::StartError;
use crate::hub::Hub;

/// Where the fan-out runs: one Redis, or a Redis Cluster (seed nodes).
#[derive(Debug, Clone)]
pub enum BusTarget {
    Single(String),
    Cluster(Vec<String>),
}

/// Redis fan-out settings.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub target: BusTarget,
    pub channel: String,
}

const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A cluster's subscriber retries sooner: a failover takes a few seconds, not a restart.
const CLUSTER_BACKOFF: Duration = Duration::from_secs(1);

/// Starts the publisher and the subscriber; returns the publisher's queue.
pub(crate) fn start(cfg: &BusConfig, hub: &Arc<Hub>) -> Result<mpsc::Sender<Arc<str>>, StartError> {
    hub.bus_ready.store(false, Ordering::Relaxed);
    // A rediss:// URL needs rustls's process-wide provider (kept if one is installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tx, rx) = mpsc::channel::<Arc<str>>(4096);
    match &cfg.target {
        BusTarget::Single(url) => {
            let client = redis::Client::open(url.as_str())
                .map_err(|_| StartError::Redis("not a redis:// URL".into()))?;
            tokio::spawn(publish(
                client.clone(),
                cfg.channel.clone(),
                rx,
                Arc::clone(hub),
            ));
            tokio::spawn(subscribe(client, cfg.channel.clone(), Arc::clone(hub)));
        }
        BusTarget::Cluster(nodes) => {
            let client = ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(COMMAND_TIMEOUT)
                .response_timeout(COMMAND_TIMEOUT)
                .retries(1)
                .build()
                .map_err(|_| StartError::Redis("not a list of Redis Cluster nodes".into()))?;
            tokio::spawn(cluster_publish(
                client,
                cfg.channel.clone(),
                rx,
                Arc::clone(hub),
            ));
            tokio::spawn(cluster_subscribe(
                nodes.clone(),
                cfg.channel.clone(),
                Arc::clone(hub),
            ));
        }
    }
    Ok(tx)
}

async fn publish(
    client: redis::Client,
    channel: String,
    mut rx: mpsc::Receiver<Arc<str>>,
    hub: Arc<Hub>,
) {
    let mut stop = hub.stopping();
    let mut conn: Option<ConnectionManager> = None;
    loop {
        let json = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => return },
            _ = crate::hub::stopped(&mut stop) => return,
        };
        if conn.is_none() {
            let cfg = ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_response_timeout(Some(COMMAND_TIMEOUT))
                .set_connection_timeout(Some(COMMAND_TIMEOUT));
            match tokio::time::timeout(
                COMMAND_TIMEOUT * 2,
                ConnectionManager::new_with_config(client.clone(), cfg),
            )
            .await
            {
                Ok(Ok(c)) => conn = Some(c),
                _ => {
                    redis_error("connect");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent = tokio::time::timeout(
            COMMAND_TIMEOUT,
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&*json)
                .query_async::<i64>(c),
        )
        .await;
        if !matches!(sent, Ok(Ok(_))) {
            redis_error("publish");
        }
    }
}

async fn subscribe(client: redis::Client, channel: String, hub: Arc<Hub>) {
    let mut stop = hub.stopping();
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut pubsub = tokio::time::timeout(COMMAND_TIMEOUT * 2, client.get_async_pubsub())
                .await
                .map_err(|_| ())?
                .map_err(|_| ())?;
            pubsub.subscribe(&channel).await.map_err(|_| ())?;
            hub.bus_ready.store(true, Ordering::Relaxed);
            tracing::info!(channel = %channel, "screen pops: subscribed to Redis");
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                match msg.get_payload::<String>() {
                    Ok(json) => hub.deliver_remote(&json),
                    Err(_) => bad_remote(),
                }
            }
            Ok::<(), ()>(())
        };
        tokio::select! {
            _ = session => {}
            _ = crate::hub::stopped(&mut stop) => return,
        }
        if !session_lost(&hub, &mut stop, &mut backoff, MAX_BACKOFF).await {
            return;
        }
    }
}

/// `SPUBLISH` through the Cluster client, which follows MOVED after a failover.
async fn cluster_publish(
    client: ClusterClient,
    channel: String,
    mut rx: mpsc::Receiver<Arc<str>>,
    hub: Arc<Hub>,
) {
    let mut stop = hub.stopping();
    let cfg = ClusterConfig::new()
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(COMMAND_TIMEOUT);
    let mut conn = client.get_pending_async_connection_with_config(cfg);
    loop {
        let json = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => return },
            _ = crate::hub::stopped(&mut stop) => return,
        };
        let sent = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            redis::cmd("SPUBLISH")
                .arg(&channel)
                .arg(&*json)
                .query_async::<i64>(&mut conn),
        )
        .await;
        if !matches!(sent, Ok(Ok(_))) {
            redis_error("publish");
        }
    }
}

/// `SSUBSCRIBE` over RESP3. At any disconnection the session starts over with a new client
/// from the seed nodes (the old client would resubscribe to the node it knew, dead after a
/// failover), retrying every `CLUSTER_BACKOFF` at most until the channel's slot has a master;
/// `bus_ready` is down meanwhile.
async fn cluster_subscribe(nodes: Vec<String>, channel: String, hub: Arc<Hub>) {
    let mut stop = hub.stopping();
    let mut backoff = Duration::from_millis(100);
    loop {
        let (tx, mut pushes) = mpsc::unbounded_channel();
        let session = async {
            let client = ClusterClientBuilder::new(nodes.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(tx)
                .connection_timeout(COMMAND_TIMEOUT)
                .response_timeout(COMMAND_TIMEOUT)
                .build()
                .map_err(|_| ())?;
            let mut conn = tokio::time::timeout(COMMAND_TIMEOUT * 2, client.get_async_connection())
                .await
                .map_err(|_| ())?
                .map_err(|_| ())?;
            tokio::time::timeout(COMMAND_TIMEOUT * 2, conn.ssubscribe(&channel))
                .await
                .map_err(|_| ())?
                .map_err(|_| ())?;
            hub.bus_ready.store(true, Ordering::Relaxed);
            tracing::info!(channel = %channel, "screen pops: subscribed to the Redis Cluster shard channel");
            while let Some(push) = pushes.recv().await {
                match push.kind {
                    PushKind::SMessage => match push.data.get(1) {
                        Some(Value::BulkString(b)) => match std::str::from_utf8(b) {
                            Ok(json) => hub.deliver_remote(json),
                            Err(_) => bad_remote(),
                        },
                        _ => bad_remote(),
                    },
                    // The client's own resubscription goes back to the node it knew, which
                    // after a failover is dead: start over from the seeds, which learns the
                    // new owner of the channel's slot.
                    PushKind::Disconnection => break,
                    _ => {}
                }
            }
            // Keep the connection (and with it the subscription) alive until the pushes end.
            drop(conn);
            Ok::<(), ()>(())
        };
        tokio::select! {
            _ = session => {}
            _ = crate::hub::stopped(&mut stop) => return,
        }
        if !session_lost(&hub, &mut stop, &mut backoff, CLUSTER_BACKOFF).await {
            return;
        }
    }
}

/// After a subscription session ends: down in `/readyz`, counted, then a wait of `backoff`
/// (reset after a session that had been up, doubled up to `cap` otherwise). False when the hub
/// stops meanwhile.
async fn session_lost(
    hub: &Hub,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    backoff: &mut Duration,
    cap: Duration,
) -> bool {
    if hub.bus_ready.swap(false, Ordering::Relaxed) {
        *backoff = Duration::from_millis(100);
        tracing::warn!("screen pops: Redis subscription lost; subscribing again");
    }
    redis_error("subscribe");
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        _ = crate::hub::stopped(stop) => return false,
    }
    *backoff = (*backoff * 2).min(cap);
    true
}

fn bad_remote() {
    metrics::counter!("tollgate_pops_dropped_total", "reason" => "bad-remote").increment(1);
}

fn redis_error(op: &'static str) {
    metrics::counter!("tollgate_redis_errors_total", "component" => "pops", "op" => op)
        .increment(1);
}
