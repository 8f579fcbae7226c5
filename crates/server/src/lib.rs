//! Tollgate's server: configuration, the per-call pipeline and wiring of the adapters.
//!
//! The `tollgate` binary is a thin CLI over [`serve`] and [`config::load`]; tests start the
//! same [`serve`] in-process on port 0.

pub mod adapters;
pub mod cli;
pub mod config;
pub mod http;
pub mod list_cmd;
pub mod pipeline;
pub mod rules;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tollgate_core::{NumberIntel, NumberPlan};
use tollgate_sip::{Context, Server};

pub use config::{ConfigError, ConfigErrors, Loaded};
pub use pipeline::{Directory, NoDirectory, NoRisk, Pipeline, RiskCheck};

/// Addresses actually bound (port 0 resolved), for tests and the start-up log.
#[derive(Debug, Clone)]
pub struct Bound {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// The HTTP API, when `[http]` is configured.
    pub http: Option<SocketAddr>,
}

/// Builds the live rule store for a loaded config.
pub fn rule_store(cfg: &Loaded) -> Result<Arc<rules::RuleStore>, ConfigErrors> {
    rules::RuleStore::new(cfg.rules.clone(), cfg.rule_settings.clone())
        .map(Arc::new)
        .map_err(|errs| {
            ConfigErrors(
                errs.into_iter()
                    .map(|e| ConfigError {
                        file: e.file.into(),
                        line: e.line,
                        key: e.key,
                        message: e.message,
                    })
                    .collect(),
            )
        })
}

/// Builds the pipeline for a loaded config with the embedded defaults for risk and CRM.
pub fn pipeline(
    cfg: &Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
    rules: Arc<rules::RuleStore>,
) -> Pipeline {
    Pipeline {
        plan,
        intel,
        cli: cfg.cli.clone(),
        cli_default: cfg.cli_default.clone(),
        rules,
        risk: Arc::new(NoRisk),
        directory: Arc::new(NoDirectory),
        enrich_deadline: cfg.enrich_deadline,
        clock: jiff::Timestamp::now,
        pops: None,
    }
}

/// Builds the pipeline with the adapters `[crm]`, `[risk]` and `[stir]` configure (the no-op
/// seams for absent sections); what `serve` runs.
pub async fn wired_pipeline(
    cfg: &Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
    rules: Arc<rules::RuleStore>,
) -> Result<(Pipeline, adapters::Adapters), adapters::AdapterError> {
    let built = adapters::build(cfg, &plan).await?;
    let mut p = pipeline(cfg, plan, intel, rules);
    p.risk = Arc::clone(&built.risk);
    p.directory = Arc::clone(&built.directory);
    Ok((p, built))
}

/// Binds the configured listeners and returns the bound addresses and a future that serves
/// until `shutdown`, then drains.
pub async fn serve(
    cfg: Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(Bound, impl Future<Output = ()> + Send)> {
    let (udp, tcp) = tollgate_sip::bind(&cfg.udp, &cfg.tcp).await?;
    let mut bound = Bound {
        udp: udp.iter().filter_map(|s| s.local_addr().ok()).collect(),
        tcp: tcp.iter().filter_map(|s| s.local_addr().ok()).collect(),
        http: None,
    };
    let rules = rule_store(&cfg).map_err(|e| std::io::Error::other(e.to_string()))?;
    let watch_stop = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(
        Arc::clone(&rules).watch(std::time::Duration::from_secs(1), {
            let stop = Arc::clone(&watch_stop);
            async move { stop.notified().await }
        }),
    );
    let admin = cfg.http.as_ref().map(|h| {
        http::ServerAdmin::new(h, Arc::clone(&plan), Arc::clone(&intel), Arc::clone(&rules))
    });
    let (mut handler, adapters) = wired_pipeline(&cfg, Arc::clone(&plan), intel, rules)
        .await
        .map_err(std::io::Error::other)?;
    let api = match admin {
        Some(admin) => {
            let admin = Arc::new(admin.with_adapters(&cfg, &adapters));
            http::start(cfg.http.as_ref(), admin).await?
        }
        None => None,
    };
    if let Some(h) = &api {
        handler.pops = Some(h.api.publisher());
        bound.http = Some(h.addr);
    }
    let server = Server::new(Context {
        handler,
        trunks: cfg.trunks,
        plan,
        emergency: cfg.emergency,
        config: cfg.sip,
    });
    let run = async move {
        // The API serves until SIP has drained, so desktops see the last calls' pops.
        let api = api.map(http::Http::spawn);
        server.run(udp, tcp, shutdown).await;
        watch_stop.notify_one();
        if let Some(api) = api {
            api.stop().await;
        }
    };
    Ok((bound, run))
}
