//! The `tollgate` command: `serve` and `check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tollgate_core::{NumberIntel, NumberPlan};

/// jemalloc, with its background threads purging freed pages (dirty pages decay back to the OS
/// within seconds even when no call arrives): glibc malloc kept the peak of a 1 M-caller run
/// resident for good (issue 18; README "Memory").
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--features dhat-heap`: every allocation recorded, `dhat-heap.json` written when `serve`
/// returns (README "Memory": how the breakdown per structure was measured).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[derive(Parser, Debug)]
#[command(
    name = "tollgate",
    version,
    about = "Contact-center ANI routing engine for inbound SIP trunks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve SIP until SIGINT or SIGTERM, then drain. Without --config: the embedded defaults.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file, its rules and its adapters exactly as `serve` does before it
    /// binds; prints every error as file:line: key: message and exits non-zero on any.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Decide a call as the live engine would (the same pipeline, dry run: nothing is
    /// recorded) and show every fact, every rule tried and why.
    Explain {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Caller number (E.164 with +, or national for the trunk's region).
        #[arg(long, required_unless_present = "sip")]
        ani: Option<String>,
        /// Dialed number.
        #[arg(long, required_unless_present = "sip")]
        dnis: Option<String>,
        /// A file holding a whole INVITE (as captured): its headers decide.
        #[arg(long, conflicts_with_all = ["ani", "dnis"])]
        sip: Option<PathBuf>,
        /// When the call arrives (RFC 3339, e.g. 2026-11-23T10:00:00-05:00); default now.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
        /// The trunk it arrives on (default: the trunk of --source, else the first configured).
        #[arg(long)]
        trunk: Option<String>,
        /// The source IP address it arrives from (picks the trunk as the SIP server does).
        #[arg(long)]
        source: Option<std::net::IpAddr>,
        /// The call came over TLS with a client certificate saying this (dns:NAME, uri:URI or
        /// sha256:HEX): picks and trusts the trunk as the SIP server does.
        #[arg(long)]
        tls_peer: Option<String>,
        /// A CRM record for the caller instead of the CRM's (TOML: tier, language, tags, ...).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Risk level instead of the risk engine's: low, elevated, high or blocked.
        #[arg(long)]
        risk: Option<String>,
        /// Lists the caller is on instead of the list store's (block, gray, allow).
        #[arg(long, value_delimiter = ',')]
        lists: Option<Vec<String>>,
        /// Rules directory to use instead of the configured one.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Cache a CRM answer fetched for this explain, as a live call would.
        #[arg(long)]
        fill_cache: bool,
        /// Print the decision record and trace as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay calls against the live and a candidate rules directory; print what would change.
    /// The calls: a CSV (--calls), the node's own JSON decision log (--decisions) or a SIP
    /// capture, pcap or pcapng (--pcap). Exit status as diff(1): 0 no call moves, 1 some do,
    /// 2 an error (for a log or a capture also: a line or packet that could not be read, named
    /// on stderr; the calls read were still replayed and reported).
    #[command(group(clap::ArgGroup::new("input").required(true)))]
    Diff {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The candidate rules directory.
        #[arg(long)]
        rules: PathBuf,
        /// The rules to compare with instead of the config's: a directory, such as a past
        /// version a node kept (`tollgate rules fetch VERSION --out DIR`).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Calls CSV: header row with ani,dnis[,time,trunk,tier,language,tags,open_cases,risk,lists,attestation,last_queue,last_seen_ago_s].
        #[arg(long, group = "input")]
        calls: Option<PathBuf>,
        /// A decision log (the JSON lines `log.format = "json"` writes; other lines are
        /// skipped): every decided call replayed on its logged facts at its logged time.
        #[arg(long, group = "input")]
        decisions: Option<PathBuf>,
        /// A SIP capture (pcap or pcapng; UDP, and TCP reassembled): every INVITE replayed as
        /// the node would take it from the packet's source address, at the packet's time.
        #[arg(long, group = "input")]
        pcap: Option<PathBuf>,
        /// With --pcap: only INVITEs sent to this address (IP or IP:PORT) are calls; what it
        /// answers and the INVITEs it sends on are read as what it did with them.
        #[arg(long, requires = "pcap")]
        to: Option<tollgate_server::cmd::capture::Destination>,
        /// With --decisions or --pcap: one JSON line per replayed call (the live and candidate
        /// decision records), then a summary line.
        #[arg(long, conflicts_with = "calls")]
        json: bool,
    },
    /// Manage the block, gray and allow lists in the configured store (file or Redis); running
    /// nodes see changes within risk.list_refresh_ms.
    List {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: tollgate_server::cmd::list::ListAction,
    },
    /// A running node's rules through its admin API: promote the shadow, roll back, the
    /// history of live versions, the shadow summary (nothing on disk changes).
    Rules {
        #[command(subcommand)]
        action: tollgate_server::cmd::rules::RulesAction,
    },
}

/// The config file, or the embedded defaults without `--config`.
fn load(
    config: Option<&std::path::Path>,
    plan: &NumberPlan,
) -> Result<tollgate_server::Loaded, tollgate_server::Problems> {
    match config {
        Some(path) => tollgate_server::config::load(path, plan),
        None => tollgate_server::config::embedded(plan),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = Arc::new(NumberPlan::load());
    match cli.cmd {
        Cmd::Check { config } => {
            let name = config
                .as_deref()
                .map_or_else(|| "(embedded defaults)".into(), |c| c.display().to_string());
            let checked = load(config.as_deref(), &plan)
                .map_err(|e| e.to_string())
                .and_then(|cfg| {
                    let intel = Arc::new(NumberIntel::load().map_err(|e| e.to_string())?);
                    runtime()?.block_on(async {
                        tollgate_server::prepare(&cfg, Arc::clone(&plan), intel)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })?;
                    Ok(cfg.tls.as_ref().map(|t| t.certs.live()))
                });
            match checked {
                Ok(tls) => {
                    if let Some((fingerprint, not_after)) = tls {
                        let expiry = not_after.map_or_else(
                            || "unknown".to_owned(),
                            |t| {
                                let at = jiff::Timestamp::try_from(t)
                                    .map_or_else(|_| "?".to_owned(), |t| t.to_string());
                                if t < std::time::SystemTime::now() {
                                    format!("{at} (EXPIRED: carriers will refuse it)")
                                } else {
                                    at
                                }
                            },
                        );
                        println!(
                            "{name}: sip.tls certificate sha256:{fingerprint}, expires {expiry}"
                        );
                    }
                    println!("{name}: ok");
                    ExitCode::SUCCESS
                }
                Err(errs) => {
                    eprintln!("{errs}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Explain {
            config,
            ani,
            dnis,
            sip,
            at,
            trunk,
            source,
            tls_peer,
            profile,
            risk,
            lists,
            rules,
            fill_cache,
            json,
        } => {
            let spec = || -> Result<tollgate_server::cmd::explain::CallSpec, String> {
                let profile = profile
                    .as_deref()
                    .map(tollgate_server::cmd::explain::profile_from_toml)
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let risk = risk
                    .as_deref()
                    .map(|r| {
                        tollgate_core::RiskLevel::from_name(r)
                            .ok_or(format!("--risk {r:?}: low, elevated, high or blocked"))
                    })
                    .transpose()?;
                let sip = sip
                    .as_deref()
                    .map(|p| {
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
                    })
                    .transpose()?;
                Ok(tollgate_server::cmd::explain::CallSpec {
                    ani: ani.clone().unwrap_or_default(),
                    dnis: dnis.clone().unwrap_or_default(),
                    trunk: trunk.clone(),
                    source,
                    tls_peer: tls_peer.clone(),
                    sip,
                    at,
                    overrides: tollgate_server::cmd::explain::overrides(
                        profile,
                        risk,
                        lists.clone(),
                        None,
                        None,
                    ),
                    fill_cache,
                })
            };
            let spec = match spec() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            report(offline(
                config.as_deref(),
                &plan,
                rules.as_deref(),
                move |live, _| {
                    Box::pin(async move {
                        let e = tollgate_server::cmd::explain::explain_call(&spec, live)
                            .await
                            .map_err(|e| e.to_string())?;
                        let version = live.rules.current().version.clone();
                        if json {
                            let v = serde_json::json!({
                                "decision": format!("{} by {}", e.describe(), e.outcome.decision.rule),
                                "rules_version": version,
                                "record": e.record(),
                                "trace": e.trace(),
                                "overridden": e.outcome.overridden,
                            });
                            Ok(format!("{v:#}\n"))
                        } else {
                            Ok(tollgate_server::cmd::explain::render(&e, &version))
                        }
                    })
                },
            ))
        }
        Cmd::Diff {
            config,
            rules,
            baseline,
            calls,
            decisions,
            pcap,
            to,
            json,
        } => {
            let stdout = std::io::stdout();
            let result = offline(config.as_deref(), &plan, None, move |live, cfg| {
                Box::pin(async move {
                    let candidate = tollgate_server::rules::RuleStore::new(
                        tollgate_server::rules::RuleSource::Dir(rules.clone()),
                        cfg.rule_settings.clone(),
                    )
                    .map_err(|errs| {
                        let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
                        format!("the candidate rules do not load:\n{}", list.join("\n"))
                    })?;
                    let candidate = live.with_rules(Arc::new(candidate));
                    let baseline = match &baseline {
                        None => None,
                        Some(dir) => Some(
                            live.with_rules(Arc::new(
                                tollgate_server::rules::RuleStore::new(
                                    tollgate_server::rules::RuleSource::Dir(dir.clone()),
                                    cfg.rule_settings.clone(),
                                )
                                .map_err(|errs| {
                                    let list: Vec<String> =
                                        errs.iter().map(ToString::to_string).collect();
                                    format!("the baseline rules do not load:\n{}", list.join("\n"))
                                })?,
                            )),
                        ),
                    };
                    let live = baseline.as_ref().unwrap_or(live);
                    let mut out = stdout.lock();
                    let replayed = match (&decisions, &pcap, &calls) {
                        (Some(log), _, _) => {
                            tollgate_server::cmd::replay::diff_decisions(
                                log, live, &candidate, json, &mut out,
                            )
                            .await
                        }
                        (None, Some(capture), _) => {
                            tollgate_server::cmd::replay::diff_pcap(
                                capture, to, cfg, live, &candidate, json, &mut out,
                            )
                            .await
                        }
                        (None, None, Some(calls)) => {
                            let calls = tollgate_server::cmd::explain::calls_from_csv(calls)
                                .map_err(|e| e.to_string())?;
                            tollgate_server::cmd::explain::diff(&calls, live, &candidate)
                                .await
                                .map(|(text, moved)| {
                                    let _ = std::io::Write::write_all(&mut out, text.as_bytes());
                                    tollgate_server::cmd::replay::Summary {
                                        moved,
                                        problems: Vec::new(),
                                    }
                                })
                        }
                        (None, None, None) => {
                            return Err("diff needs --calls, --decisions or --pcap".to_owned())
                        }
                    };
                    replayed.map_err(|e| e.to_string())
                })
            });
            // As diff(1) does, so a review script can gate on it: 0 nothing moves, 1 some
            // calls move, 2 trouble (a line or packet that could not be read included: the
            // report is still printed, the problems go to stderr).
            match result {
                Ok(summary) => {
                    // The first hundred, then how many more: a log of the wrong format must
                    // not print a line per call.
                    const SHOWN: usize = 100;
                    for p in summary.problems.iter().take(SHOWN) {
                        eprintln!("tollgate diff: {p}");
                    }
                    if summary.problems.len() > SHOWN {
                        eprintln!(
                            "tollgate diff: … and {} more",
                            summary.problems.len() - SHOWN
                        );
                    }
                    if summary.problems.is_empty() {
                        ExitCode::from(u8::from(summary.moved > 0))
                    } else {
                        ExitCode::from(2)
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Rules { action } => report(tollgate_server::cmd::rules::run(action)),
        Cmd::List { config, action } => match config {
            Some(config) => report(tollgate_server::cmd::list::run(&config, &plan, action)),
            None => report(Err(
                "tollgate list needs --config: the embedded defaults have no [risk] section, so \
                 no lists"
                    .into(),
            )),
        },
        Cmd::Serve { config } => {
            #[cfg(feature = "dhat-heap")]
            let _profiler = dhat::Profiler::new_heap();
            let cfg = match load(config.as_deref(), &plan) {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("{errs}");
                    return ExitCode::FAILURE;
                }
            };
            // Held to the end: what is queued for stdout is written before the process exits.
            let _log = init_logging(&cfg.log);
            if config.is_none() {
                tracing::info!("no --config: running on the embedded defaults");
            }
            // Compile the numbering tables before the first call, never on it.
            let started = std::time::Instant::now();
            let intel = match NumberIntel::load() {
                Ok(i) => Arc::new(i),
                Err(e) => {
                    eprintln!("tollgate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (geo, tz, bytes) = intel.geography.stats();
            tracing::info!(
                load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                geo_prefixes = geo,
                tz_prefixes = tz,
                geo_bytes = bytes,
                "number intelligence ready"
            );
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(serve(cfg, plan, intel)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tollgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints the command's output, or its error on stderr with a failing exit status.
fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

type Job<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + 'a>>;

/// Builds what `serve` builds before binding (config, number tables, rules, adapters; the
/// rules of `rules_override` instead when given) and runs `run` with the live pipeline, in a
/// runtime, without binding anything.
fn offline<T>(
    config: Option<&std::path::Path>,
    plan: &Arc<NumberPlan>,
    rules_override: Option<&std::path::Path>,
    run: impl for<'a> FnOnce(&'a tollgate_server::Pipeline, &'a tollgate_server::Loaded) -> Job<'a, T>,
) -> Result<T, String> {
    let cfg = load(config, plan).map_err(|e| e.to_string())?;
    let intel = Arc::new(NumberIntel::load().map_err(|e| e.to_string())?);
    runtime()?.block_on(async {
        let prepared = tollgate_server::prepare(&cfg, Arc::clone(plan), intel)
            .await
            .map_err(|e| e.to_string())?;
        let pipeline = match rules_override {
            Some(dir) => {
                let source = tollgate_server::rules::RuleSource::Dir(dir.to_owned());
                let store =
                    tollgate_server::rules::RuleStore::new(source, cfg.rule_settings.clone())
                        .map_err(|errs| {
                            errs.iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join("\n")
                        })?;
                prepared.pipeline.with_rules(Arc::new(store))
            }
            None => prepared.pipeline.with_rules(Arc::clone(&prepared.rules)),
        };
        run(&pipeline, &cfg).await
    })
}

async fn serve(
    cfg: tollgate_server::Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
) -> anyhow::Result<()> {
    let (bound, run) = tollgate_server::serve(cfg, plan, intel, shutdown_signal()).await?;
    tracing::info!(udp = ?bound.udp, tcp = ?bound.tcp, tls = ?bound.tls, "listening");
    #[cfg(not(feature = "dhat-heap"))]
    tokio::spawn(allocator_gauges());
    run.await;
    tracing::info!("stopped");
    Ok(())
}

/// The allocator's own view, every 5 s: `tollgate_memory_allocated_bytes` (live heap),
/// `tollgate_memory_resident_bytes` (pages jemalloc holds resident) and
/// `tollgate_memory_retained_bytes` (address space kept but returned to the OS).
#[cfg(not(feature = "dhat-heap"))]
async fn allocator_gauges() {
    use tikv_jemalloc_ctl::{epoch, stats};
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        if epoch::advance().is_err() {
            return;
        }
        let read = |r: tikv_jemalloc_ctl::Result<usize>| r.map_or(0.0, |v| v as f64);
        metrics::gauge!("tollgate_memory_allocated_bytes").set(read(stats::allocated::read()));
        metrics::gauge!("tollgate_memory_resident_bytes").set(read(stats::resident::read()));
        metrics::gauge!("tollgate_memory_retained_bytes").set(read(stats::retained::read()));
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logging: `log.level` (or `RUST_LOG`) for everything but the decision log, which has its
/// own target (`tollgate::decision`) that the level never hides; `log.decisions = false` turns
/// it off. ANSI colours only on a terminal, so a log written to a file stays plain text.
fn init_logging(cfg: &tollgate_server::config::LogSection) -> tollgate_server::logsink::Guard {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(cfg.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let decisions = if cfg.decisions.unwrap_or(true) {
        "info"
    } else {
        "off"
    };
    let filter = match format!("{}={decisions}", tollgate_server::decision::TARGET).parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let json = cfg.format.as_deref() != Some("text");
    let guard = tollgate_server::logsink::install(json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(tollgate_server::logsink::make_writer);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    guard
}
