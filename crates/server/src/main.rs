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
    /// Validate a config file; prints every error and exits non-zero if there is one.
    Check {
        #[arg(long, default_value = "config/tollgate.toml")]
        config: PathBuf,
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
