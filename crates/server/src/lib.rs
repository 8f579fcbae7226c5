//! Tollgate's server: configuration, the per-call pipeline and wiring of the adapters.
//!
//! The `tollgate` binary is a thin CLI over [`serve`] and [`config::load`]; tests start the
//! same [`serve`] in-process on port 0.

pub mod adapters;
pub mod admin;
pub mod cmd;
pub mod config;
pub mod decision;
pub mod http;
pub mod limits;
pub mod logsink;
pub mod pipeline;
pub mod rules;
pub mod shadow;
pub mod wiring;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tollgate_core::{NumberIntel, NumberPlan};
use tollgate_sip::{Context, Server};

pub use config::{Loaded, Problem, Problems};
pub use pipeline::{CrmCheck, Live, Mode, NoCrm, NoRisk, Overrides, Pipeline, RiskCheck};
pub use wiring::{pipeline, prepare, rule_store, wired_pipeline, Prepared};

/// Addresses actually bound (port 0 resolved), for tests and the start-up log.
#[derive(Debug, Clone)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// `[sip.tls]` listeners.
    pub tls: Vec<SocketAddr>,
    /// The HTTP API, when `[http]` is configured.
    pub http: Option<SocketAddr>,
}

/// Binds the configured listeners and returns the bound addresses and a future that serves
/// until `shutdown`, then drains.
pub async fn serve(
    cfg: Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(Bound, impl Future<Output = ()> + Send)> {
    let prepared = prepare(&cfg, Arc::clone(&plan), intel)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    serve_prepared(cfg, plan, prepared, shutdown).await
}

/// [`serve`] for what [`prepare`] built (tests adjust the pipeline in between).
pub async fn serve_prepared(
    cfg: Loaded,
    plan: Arc<NumberPlan>,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(Bound, impl Future<Output = ()> + Send)> {
    let Prepared {
        rules,
        pipeline,
        adapters,
    } = prepared;
    let listeners = wiring::bind_all(&cfg).await?;
    // Each UDP address has a socket per CPU (SO_REUSEPORT): named once.
    let mut udp: Vec<std::net::SocketAddr> = listeners
        .udp
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .collect();
    udp.dedup();
    let mut bound = Bound {
        udp,
        tcp: listeners
            .tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect(),
        tls: listeners
            .tls
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect(),
        http: None,
    };
    // The certificate follows its files (and SIGHUP) while the node runs.
    let cert_watch = cfg.tls.as_ref().map(|t| {
        tokio::spawn(Arc::clone(&t.certs).watch(t.reload_poll, std::future::pending::<()>()))
    });
    let watch_stop = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(
        Arc::clone(&rules).watch(std::time::Duration::from_secs(1), {
            let stop = Arc::clone(&watch_stop);
            async move { stop.notified().await }
        }),
    );
    if let (Some(engine), Some(risk)) = (&adapters.engine, &cfg.risk) {
        adapters::spawn_sweep(
            engine,
            std::time::Duration::from_millis(risk.memory.sweep_ms),
        );
    }
    limits::spawn_sweep(&pipeline.limits, std::time::Duration::from_secs(1));
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = {
        let draining = Arc::clone(&draining);
        async move {
            shutdown.await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let api = wiring::api(&cfg, &pipeline, &adapters, &draining).await?;
    if let Some(h) = &api {
        let _ = pipeline.pops.set(h.api.publisher());
        bound.http = Some(h.addr);
    }
    let server = Server::new(Context {
        handler: Live(pipeline),
        trunks: cfg.trunks,
        plan,
        emergency: cfg.emergency,
        config: cfg.sip,
    });
    let run = async move {
        // The API serves until SIP has drained, so desktops see the last calls' pops.
        let api = api.map(http::Http::spawn);
        server.serve(listeners, shutdown).await;
        watch_stop.notify_one();
        if let Some(w) = cert_watch {
            w.abort();
        }
        if let Some(api) = api {
            api.stop().await;
        }
        drop(adapters);
    };
    Ok((bound, run))
}
