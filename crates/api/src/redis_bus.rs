//! Fan-out across nodes through Redis pub/sub: every node publishes its own pops on one channel
//! and delivers everyone else's to its local subscribers. Pub/sub (not streams) because a pop
//! is only useful live; the pop store on each node covers lookups by call reference.
//!
//! Redis being down costs other nodes' pops, never a call or a local pop: publishing goes
//! through a bounded queue with a deadline, and both sides reconnect with backoff.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use crate::error::StartError;
use crate::hub::Hub;

/// Redis fan-out settings.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub url: String,
    pub channel: String,
}

const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the publisher and the subscriber; returns the publisher's queue.
pub(crate) fn start(cfg: &BusConfig, hub: &Arc<Hub>) -> Result<mpsc::Sender<Arc<str>>, StartError> {
    let client = redis::Client::open(cfg.url.as_str())
        .map_err(|_| StartError::Redis("not a redis:// URL".into()))?;
    hub.bus_ready.store(false, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Arc<str>>(4096);
    tokio::spawn(publish(
        client.clone(),
        cfg.channel.clone(),
        rx,
        Arc::clone(hub),
    ));
    tokio::spawn(subscribe(client, cfg.channel.clone(), Arc::clone(hub)));
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
                    Err(_) => {
                        metrics::counter!("tollgate_pops_dropped_total", "reason" => "bad-remote")
                            .increment(1);
                    }
                }
            }
            Ok::<(), ()>(())
        };
        tokio::select! {
            _ = session => {}
            _ = crate::hub::stopped(&mut stop) => return,
        }
        if hub.bus_ready.swap(false, Ordering::Relaxed) {
            backoff = Duration::from_millis(100);
            tracing::warn!("screen pops: Redis subscription lost; reconnecting");
        }
        redis_error("subscribe");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = crate::hub::stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn redis_error(op: &'static str) {
    metrics::counter!("tollgate_redis_errors_total", "component" => "pops", "op" => op)
        .increment(1);
}
