//! The `tollgate` command: `serve` and `check`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tollgate_core::{NumberIntel, NumberPlan};

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
    /// Serve SIP until SIGINT or SIGTERM, then drain.
    Serve {
        #[arg(long, default_value = "config/tollgate.toml")]
        config: PathBuf,
    },
    /// Validate a config file and its rules; prints every error and exits non-zero if there is one.
    Check {
        #[arg(long, default_value = "config/tollgate.toml")]
        config: PathBuf,
    },
    /// Show which rule a caller would hit, and why, without a network.
    Explain {
        #[arg(long, default_value = "config/tollgate.toml")]
        config: PathBuf,
        /// Caller number (E.164 with +, or national for the trunk's region).
        #[arg(long)]
        ani: String,
        /// Dialed number.
        #[arg(long)]
        dnis: String,
        /// When the call arrives (RFC 3339, e.g. 2026-11-23T10:00:00-05:00); default now.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
        /// The trunk it arrives on (default: the first configured).
        #[arg(long)]
        trunk: Option<String>,
        /// A CRM record for the caller (TOML: tier, language, tags, open_cases, [attributes]).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Risk level: low, elevated, high or blocked.
        #[arg(long)]
        risk: Option<String>,
        /// Lists the caller is on (block, gray, allow), comma-separated.
        #[arg(long, value_delimiter = ',')]
        lists: Vec<String>,
        /// Rules directory to use instead of the configured one.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Replay calls against the live and a candidate rules directory; print what would change.
    /// Exit status as diff(1): 0 no call moves, 1 some do, 2 an error.
    Diff {
        #[arg(long, default_value = "config/tollgate.toml")]
        config: PathBuf,
        /// The candidate rules directory.
        #[arg(long)]
        rules: PathBuf,
        /// Calls CSV: header row with ani,dnis[,time,trunk,tier,language,tags,open_cases,risk,lists,attestation,last_queue,last_seen_ago_s].
        #[arg(long)]
        calls: PathBuf,
    },
    /// Manage the block, gray and allow lists in the configured store (file or Redis); running
    /// nodes see changes within risk.list_refresh_ms.
    List {
        #[arg(long, global = true, default_value = "config/tollgate.toml")]
        config: PathBuf,
        #[command(subcommand)]
        action: tollgate_server::list_cmd::ListAction,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let plan = Arc::new(NumberPlan::load());
    match cli.cmd {
        Cmd::Check { config } => match tollgate_server::config::load(&config, &plan) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{errs}");
                ExitCode::FAILURE
            }
        },
        Cmd::Explain {
            config,
            ani,
            dnis,
            at,
            trunk,
            profile,
            risk,
            lists,
            rules,
        } => {
            let spec = || -> Result<tollgate_server::cli::CallSpec, String> {
                Ok(tollgate_server::cli::CallSpec {
                    ani,
                    dnis,
                    trunk,
                    at,
                    profile: profile
                        .as_deref()
                        .map(tollgate_server::cli::profile_from_toml)
                        .transpose()
                        .map_err(|e| e.to_string())?,
                    risk: risk
                        .as_deref()
                        .map(|r| {
                            tollgate_core::RiskLevel::from_name(r)
                                .ok_or(format!("--risk {r:?}: low, elevated, high or blocked"))
                        })
                        .transpose()?,
                    lists,
                    ..Default::default()
                })
            };
            report(offline(
                &config,
                &plan,
                rules.as_deref(),
                |cfg, pipeline, live| {
                    let spec = spec()?;
                    tollgate_server::cli::explain(&spec, cfg, pipeline, live)
                        .map_err(|e| e.to_string())
                },
            ))
        }
        Cmd::Diff {
            config,
            rules,
            calls,
        } => {
            let result = offline(&config, &plan, None, |cfg, pipeline, live| {
                let candidate = tollgate_server::rules::load_dir(&rules, &cfg.rule_settings)
                    .map_err(|errs| {
                        let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
                        format!("the candidate rules do not load:\n{}", list.join("\n"))
                    })?;
                let calls =
                    tollgate_server::cli::calls_from_csv(&calls).map_err(|e| e.to_string())?;
                tollgate_server::cli::diff(&calls, cfg, pipeline, live, &candidate)
                    .map_err(|e| e.to_string())
            });
            // As diff(1) does, so a review script can gate on it: 0 nothing moves, 1 some
            // calls move, 2 trouble.
            match result {
                Ok((text, changed)) => {
                    print!("{text}");
                    ExitCode::from(u8::from(changed > 0))
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::List { config, action } => {
            report(tollgate_server::list_cmd::run(&config, &plan, action))
        }
        Cmd::Serve { config } => {
            let cfg = match tollgate_server::config::load(&config, &plan) {
                Ok(c) => c,
                Err(errs) => {
                    eprintln!("{errs}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&cfg.log);
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
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start runtime: {e}");
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

/// Loads config, numbering tables and rules for a command that runs no server, prints what `run`
/// returns, and exits non-zero on any error.
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

/// Loads the config, the number tables and the rules (the configured ones or `rules_override`)
/// as `serve` would, without binding anything, and hands them to `run`.
fn offline<T>(
    config: &std::path::Path,
    plan: &Arc<NumberPlan>,
    rules_override: Option<&std::path::Path>,
    run: impl FnOnce(
        &tollgate_server::Loaded,
        &tollgate_server::Pipeline,
        &tollgate_router::Rules,
    ) -> Result<T, String>,
) -> Result<T, String> {
    let cfg = tollgate_server::config::load(config, plan).map_err(|e| e.to_string())?;
    let intel = Arc::new(NumberIntel::load().map_err(|e| e.to_string())?);
    let store = match rules_override {
        Some(dir) => {
            let source = tollgate_server::rules::RuleSource::Dir(dir.to_owned());
            tollgate_server::rules::RuleStore::new(source, cfg.rule_settings.clone())
                .map(Arc::new)
                .map_err(|errs| {
                    errs.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                })?
        }
        None => tollgate_server::rule_store(&cfg).map_err(|e| e.to_string())?,
    };
    let pipeline = tollgate_server::pipeline(&cfg, Arc::clone(plan), intel, Arc::clone(&store));
    let live = store.current();
    run(&cfg, &pipeline, &live)
}

async fn serve(
    cfg: tollgate_server::Loaded,
    plan: Arc<NumberPlan>,
    intel: Arc<NumberIntel>,
) -> anyhow::Result<()> {
    let (bound, run) = tollgate_server::serve(cfg, plan, intel, shutdown_signal()).await?;
    tracing::info!(udp = ?bound.udp, tcp = ?bound.tcp, "listening");
    run.await;
    tracing::info!("stopped");
    Ok(())
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

fn init_logging(cfg: &tollgate_server::config::LogSection) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(cfg.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    if cfg.format.as_deref() == Some("text") {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}
