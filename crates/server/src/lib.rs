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
pub mod pipeline;
pub mod rules;
pub mod shadow;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tollgate_core::{NumberIntel, NumberPlan};
use tollgate_sip::{Context, Server};

pub use config::{Loaded, Problem, Problems};
pub use pipeline::{CrmCheck, Live, Mode, NoCrm, NoRisk, Overrides, Pipeline, RiskCheck};

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

/// Builds the live rule store for a loaded config.
pub fn rule_store(cfg: &Loaded) -> Result<Arc<rules::RuleStore>, Problems> {
    rules::RuleStore::new(cfg.rules.clone(), cfg.rule_settings.clone())
        .map(|mut store| {
            store.require_queues(
                cfg.overflow_queues
                    .iter()
                    .map(|(q, _)| q.as_str().to_owned())
                    .collect(),
            );
            // A shadow that does not load is reported (log, metric, the admin API) and
            // ignored: the node starts with the live rules alone.
            if let Some(dir) = &cfg.shadow_dir {
                let _ = store.load_shadow(dir);
            }
            Arc::new(store)
        })
        .map_err(|errs| Problems(errs.into_iter().map(rules::problem).collect()))
}

/// Builds the pipeline for a loaded config with the no-op risk and CRM seams (tests and
/// benchmarks; [`prepare`] wires the configured adapters).
pub fn pipeline(
    cfg: &Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
    rules: Arc<rules::RuleStore>,
) -> Pipeline {
    Pipeline {
        plan,
        intel,
        trunks: cfg.trunks.clone(),
        emergency: cfg.emergency.clone(),
        enforce_require: cfg.sip.enforce_require,
        cli: cfg.cli.clone(),
        cli_default: cfg.cli_default.clone(),
        rules,
        risk: Arc::new(NoRisk),
        crm: Arc::new(NoCrm),
        enrich_deadline: cfg.enrich_deadline,
        clock: jiff::Timestamp::now,
        pops: std::sync::OnceLock::new(),
        limits: Arc::new(limits::Limits::new(&cfg.limits)),
    }
}

/// Builds the pipeline with the adapters `[crm]`, `[risk]` and `[stir]` configure (the no-op
/// seams for absent sections).
pub async fn wired_pipeline(
    cfg: &Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
    rules: Arc<rules::RuleStore>,
) -> Result<(Pipeline, adapters::Adapters), adapters::AdapterErrors> {
    let built = adapters::build(cfg, &plan).await?;
    let mut p = pipeline(cfg, plan, intel, rules);
    p.risk = Arc::clone(&built.risk);
    p.crm = Arc::clone(&built.crm);
    Ok((p, built))
}

/// Everything `serve` builds before it binds a socket: the live rules, the adapters and the
/// pipeline. `tollgate check` runs exactly this and stops, so it refuses what `serve` would.
#[derive(Debug)]
pub struct Prepared {
    pub rules: Arc<rules::RuleStore>,
    pub pipeline: Arc<Pipeline>,
    pub adapters: adapters::Adapters,
}

/// Builds the rules, adapters and pipeline for `cfg`; every problem as `file:line: key:`.
/// Must run inside a Tokio runtime (the risk engine refreshes its lists in the background).
pub async fn prepare(
    cfg: &Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
) -> Result<Prepared, Problems> {
    let rules = rule_store(cfg)?;
    overflow_queues_declared(cfg, &rules)?;
    let (pipeline, adapters) = wired_pipeline(cfg, plan, intel, Arc::clone(&rules))
        .await
        .map_err(|errs| {
            Problems(
                errs.0
                    .iter()
                    .map(|e| {
                        let (key, message) = match e {
                            adapters::AdapterError::Crm(e) => ("crm", e.to_string()),
                            adapters::AdapterError::Risk(e) => ("risk", e.to_string()),
                        };
                        cfg.error_at(key, message)
                    })
                    .collect(),
            )
        })?;
    Ok(Prepared {
        rules,
        pipeline: Arc::new(pipeline),
        adapters,
    })
}

/// Every `over_limit = "queue:NAME"` names a queue of the rules' `queues.toml` (a rules
/// directory declares every queue a call may be sent to; the table of `[routing]` has none).
fn overflow_queues_declared(cfg: &Loaded, rules: &rules::RuleStore) -> Result<(), Problems> {
    if !matches!(cfg.rules, rules::RuleSource::Dir(_)) {
        return Ok(());
    }
    let current = rules.current();
    let missing: Vec<Problem> = cfg
        .overflow_queues
        .iter()
        .filter(|(q, _)| !current.queues.contains(q.as_str()))
        .map(|(q, at)| Problem {
            message: format!(
                "overflow queue {:?} is not in {}",
                q.as_str(),
                tollgate_router::QUEUES_FILE
            ),
            ..at.clone()
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Problems(missing))
    }
}

/// Binds every configured address, naming the one that failed.
async fn bind_all(cfg: &Loaded) -> std::io::Result<tollgate_sip::Listeners> {
    let (mut udp, mut tcp) = (Vec::new(), Vec::new());
    for a in &cfg.udp {
        let (mut u, _) = tollgate_sip::bind(std::slice::from_ref(a), &[])
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("sip.udp {a}: {e}")))?;
        udp.append(&mut u);
    }
    for a in &cfg.tcp {
        let (_, mut t) = tollgate_sip::bind(&[], std::slice::from_ref(a))
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("sip.tcp {a}: {e}")))?;
        tcp.append(&mut t);
    }
    let mut tls = Vec::new();
    if let Some(settings) = &cfg.tls {
        for a in &settings.listen {
            let (_, mut t) = tollgate_sip::bind(&[], std::slice::from_ref(a))
                .await
                .map_err(|e| std::io::Error::new(e.kind(), format!("sip.tls.listen {a}: {e}")))?;
            tls.extend(t.drain(..).map(|l| (l, Arc::clone(&settings.certs))));
        }
    }
    Ok(tollgate_sip::Listeners { udp, tcp, tls })
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
    let listeners = bind_all(&cfg).await?;
    let mut bound = Bound {
        udp: listeners
            .udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect(),
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
    let api = match &cfg.http {
        Some(settings) => {
            let admin = admin::ServerAdmin::new(
                settings,
                Arc::clone(&pipeline),
                &adapters,
                Arc::clone(&draining),
            );
            http::start(Some(settings), Arc::new(admin))
                .await
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("http.listen {}: {e}", settings.listen))
                })?
        }
        None => None,
    };
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
