//! Building the node from a checked config, in one place: the live rules, the adapters behind
//! the pipeline's seams, the pipeline, the listeners and the HTTP API with its admin
//! operations. `serve` binds and runs what
//! [`prepare`] built; `tollgate check`, `explain` and `diff` run [`prepare`] and stop.

use std::sync::Arc;

use tollgate_core::{NumberIntel, NumberPlan};
use tollgate_crm::Lookup;
use tollgate_risk::RiskEngine;

use crate::adapters::{self, Adapters};
use crate::config::{Loaded, Problem, Problems};
use crate::pipeline::{NoCrm, NoRisk, Pipeline};
use crate::{limits, rules};

/// Why an adapter could not be built (what the config check cannot see: an HTTP CRM's secret
/// variables and files, the risk engine's stores). The files the config names (a CRM
/// directory, the trust anchors) were read by the check, and are not read again.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("[crm]: {0}")]
    Crm(#[from] tollgate_crm::LookupError),
    #[error("[risk]: {0}")]
    Risk(#[from] tollgate_risk::RiskError),
}

/// Every adapter that could not be built, so that `check` reports them all at once.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct AdapterErrors(pub Vec<AdapterError>);

/// Builds what `[crm]`, `[risk]` and `[stir]` configure, with the CRM directory and the
/// verifier the config check already made. Must run inside a Tokio runtime (the risk engine
/// refreshes its lists in the background). Redis being down is not an error.
pub async fn adapters(cfg: &Loaded, plan: &Arc<NumberPlan>) -> Result<Adapters, AdapterErrors> {
    let mut out = Adapters::none();
    let mut errors = Vec::new();
    if let Some(crm) = &cfg.crm {
        let lookup = match &cfg.crm_lookup {
            Some(read) => Ok(read.clone()),
            None => Lookup::from_config_with_plan(crm, &cfg.base_dir, Some(Arc::clone(plan))),
        };
        match lookup {
            Ok(lookup) if lookup.kind() != tollgate_crm::Kind::None => {
                out.crm = Arc::new(adapters::CrmAdapter(lookup.clone()));
                out.lookup = Some(lookup);
            }
            Ok(_) => {}
            Err(e) => errors.push(AdapterError::Crm(e)),
        }
    }
    let verifier = cfg.verifier.clone();
    if let Some(risk) = &cfg.risk {
        match RiskEngine::from_config(risk, &cfg.base_dir).await {
            Ok(mut engine) => {
                let any_trunk = cfg
                    .identity
                    .values()
                    .any(|t| t.trust_verstat || t.require_signed);
                if verifier.is_some() || any_trunk {
                    engine = engine.with_identity_verifier(Arc::new(adapters::StirIdentity {
                        verifier,
                        trunks: cfg.identity.clone(),
                    }));
                }
                let engine = Arc::new(engine);
                out.risk = Arc::new(adapters::RiskAdapter {
                    engine: Arc::clone(&engine),
                });
                out.engine = Some(engine);
            }
            Err(e) => errors.push(AdapterError::Risk(e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(AdapterErrors(errors))
    }
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
) -> Result<(Pipeline, Adapters), AdapterErrors> {
    let built = adapters(cfg, &plan).await?;
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
    pub adapters: Adapters,
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
                            AdapterError::Crm(e) => ("crm", e.to_string()),
                            AdapterError::Risk(e) => ("risk", e.to_string()),
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

/// The HTTP API `[http]` configures, bound (not yet serving), its admin operations over the
/// pipeline and the adapters already built; `draining` turns `/readyz` to 503. `None` without
/// `[http]`; a listener that cannot bind is named.
pub(crate) async fn api(
    cfg: &Loaded,
    pipeline: &Arc<Pipeline>,
    adapters: &Adapters,
    draining: &Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<Option<crate::http::Http>> {
    let Some(settings) = &cfg.http else {
        return Ok(None);
    };
    let admin = crate::admin::ServerAdmin::new(
        settings,
        Arc::clone(pipeline),
        adapters,
        Arc::clone(draining),
    );
    crate::http::start(Some(settings), Arc::new(admin))
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("http.listen {}: {e}", settings.listen)))
}

/// Binds every configured address, naming the one that failed.
pub(crate) async fn bind_all(cfg: &Loaded) -> std::io::Result<tollgate_sip::Listeners> {
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
