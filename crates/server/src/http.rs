//! Starting the HTTP API (tollgate-api) from its settings (`config::HttpSettings`): the
//! Prometheus recorder and its upkeep, binding the listener, serving until stopped.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tollgate_api::{Admin, Api, PrometheusHandle};

use crate::config::HttpSettings;

/// The process-wide Prometheus recorder, installed on first use; `None` when another recorder
/// was installed first (an embedding program's, or a test's).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Latency histograms in seconds, from 10 µs (a routed call) to 5 s (a timeout).
            let buckets = [
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15,
                0.25, 0.5, 1.0, 2.0, 5.0,
            ];
            let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&buckets)
                .ok()?
                .install_recorder()
                .ok()?;
            init_alerted_series();
            Some(handle)
        })
        .clone()
}

/// The counters and gauges the shipped alerts (deploy/prometheus/alerts.yml) watch, present
/// at zero from the start: an alert on a series that does not exist yet cannot fire, and a
/// series that appears only with its first event has no rate until its second.
/// `tests/deploy.rs` fails if the alerts or the dashboard name a metric a node does not export.
fn init_alerted_series() {
    for name in [
        "tollgate_sip_shed_total",
        "tollgate_decision_timeouts_total",
        "tollgate_sip_drain_abandoned_total",
        "tollgate_risk_store_errors_total",
        "tollgate_risk_lists_emptied_total",
        "tollgate_pops_dropped_total",
        "tollgate_redis_errors_total",
        "tollgate_rules_reloads_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("tollgate_crm_breaker_open").set(0.0);
}

/// Drains the recorder's histogram samples into their buckets every 5 s. The recorder keeps
/// each sample until a scrape or an upkeep folds it in, so without this a node nobody scrapes
/// grows by every call's latencies: 8 bytes per sample, five samples per call, about 40 MB per
/// million calls, for good (issue 18, found with dhat). Ends with the runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// The API, built and bound (not yet serving).
#[derive(Debug)]
pub struct Http {
    pub api: Api,
    pub listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
}

/// Binds `[http].listen` and starts the pop hub (webhooks, Redis). `None` without `[http]`.
pub async fn start(
    settings: Option<&HttpSettings>,
    admin: Arc<dyn Admin>,
) -> std::io::Result<Option<Http>> {
    let Some(s) = settings else {
        return Ok(None);
    };
    for name in &s.inline_tokens {
        tracing::warn!(token = %name, "http token written inline in the config: use token_env or token_file outside examples");
    }
    let handle = metrics_handle();
    if let Some(h) = handle.clone() {
        spawn_upkeep(h);
    }
    let api = Api::start(s.api.clone(), admin, handle).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(s.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(http = %addr, node = %s.api.hub.node, "HTTP API listening");
    Ok(Some(Http {
        api,
        listener,
        addr,
    }))
}

impl Http {
    /// Serves in a task until [`Serving::stop`].
    pub fn spawn(self) -> Serving {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.api.run(self.listener, async move {
            let _ = rx.await;
        }));
        Serving { stop, task }
    }
}

/// The API serving in the background.
#[derive(Debug)]
pub struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Serving {
    /// Ends every stream, stops the listener and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "HTTP API stopped with an error");
        }
    }
}
