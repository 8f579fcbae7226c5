//! The live rule set: loaded from the rules directory (or the main config's simple table),
//! rebuilt off the call path and swapped atomically; a bad reload keeps the old rules live.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tollgate_router::{RuleError, Rules, Settings, Source, Table};

/// Where the rules come from.
#[derive(Clone, Debug)]
pub enum RuleSource {
    /// A directory of rule files (`queues.toml`, `default.toml`, one file per service line).
    Dir(PathBuf),
    /// The main config's `[routing]` table.
    Table(Table),
}

/// Reads every `*.toml` in a rules directory, sorted, and builds the rules.
pub fn load_dir(dir: &Path, settings: &Settings) -> Result<Rules, Vec<RuleError>> {
    let io_err = |m: String| {
        vec![RuleError {
            file: dir.display().to_string(),
            line: None,
            key: "-".into(),
            message: m,
        }]
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(format!("cannot read the rules directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut sources = Vec::new();
    for p in paths {
        let text =
            std::fs::read_to_string(&p).map_err(|e| io_err(format!("{}: {e}", p.display())))?;
        sources.push(Source {
            path: p.display().to_string(),
            text,
        });
    }
    tollgate_router::parse(&sources, settings)
}

/// A fingerprint of the directory's files, to notice edits without a platform watcher.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    // Through symlinks: a Kubernetes ConfigMap volume's files are links into
                    // a `..data` link it swaps on every update.
                    let m = std::fs::metadata(e.path()).ok()?;
                    Some((e.path(), m.len(), m.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The live rules and how to rebuild them.
#[derive(Debug)]
pub struct RuleStore {
    current: ArcSwap<Rules>,
    source: RuleSource,
    settings: Settings,
    /// Queues the config sends calls to outside the rules (`over_limit = "queue:NAME"`); a
    /// rules directory must keep declaring them.
    required: Vec<String>,
}

impl RuleStore {
    /// Builds the first snapshot; an error here stops start-up (there are no old rules to keep).
    pub fn new(source: RuleSource, settings: Settings) -> Result<Self, Vec<RuleError>> {
        let rules = build(&source, &settings)?;
        Ok(Self {
            current: ArcSwap::from_pointee(rules),
            source,
            settings,
            required: Vec::new(),
        })
    }

    /// Queues the config routes to itself (the rate limits' overflow queues): a reload whose
    /// `queues.toml` no longer declares one is refused like any other error, and the live rules
    /// stay. (The first load is checked by `prepare`, with the config line that names them.)
    pub fn require_queues(&mut self, queues: Vec<String>) {
        self.required = queues;
    }

    /// The rules from the source, with the required queues declared.
    fn build(&self) -> Result<Rules, Vec<RuleError>> {
        let rules = build(&self.source, &self.settings)?;
        if !matches!(self.source, RuleSource::Dir(_)) {
            return Ok(rules);
        }
        let missing: Vec<RuleError> = self
            .required
            .iter()
            .filter(|q| !rules.queues.contains(q.as_str()))
            .map(|q| RuleError {
                file: tollgate_router::QUEUES_FILE.into(),
                line: None,
                key: "queues".into(),
                message: format!("the overflow queue {q:?} (a trunk's over_limit) is not declared"),
            })
            .collect();
        if missing.is_empty() {
            Ok(rules)
        } else {
            Err(missing)
        }
    }

    /// The rules a call routes by. Cheap: one atomic load.
    pub fn current(&self) -> arc_swap::Guard<Arc<Rules>> {
        self.current.load()
    }

    /// Rebuilds from the source; on success swaps and returns the new version, on failure keeps
    /// the live rules and returns every error.
    pub fn reload(&self) -> Result<String, Vec<RuleError>> {
        let started = Instant::now();
        match self.build() {
            Ok(rules) => {
                let version = rules.version.clone();
                let old = self.current.swap(Arc::new(rules));
                metrics::counter!("tollgate_rules_reloads_total", "result" => "ok").increment(1);
                tracing::info!(
                    old = %old.version,
                    new = %version,
                    ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "rules reloaded"
                );
                Ok(version)
            }
            Err(errors) => {
                metrics::counter!("tollgate_rules_reloads_total", "result" => "error").increment(1);
                for e in &errors {
                    tracing::error!(error = %e, "rules reload rejected; the live rules stay");
                }
                Err(errors)
            }
        }
    }

    /// Reloads when a rule file changes (polled) or on SIGHUP, until `shutdown`.
    pub async fn watch(
        self: Arc<Self>,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let RuleSource::Dir(dir) = &self.source else {
            shutdown.await;
            return;
        };
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = fingerprint(dir);
        let mut tick = tokio::time::interval(poll);
        tokio::pin!(shutdown);
        loop {
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                _ = hangup => {
                    tracing::info!("SIGHUP: reloading rules");
                    let _ = self.reload();
                    seen = fingerprint(dir);
                }
                _ = tick.tick() => {
                    let now = fingerprint(dir);
                    if now != seen {
                        seen = now;
                        let _ = self.reload();
                    }
                }
            }
        }
    }
}

fn build(source: &RuleSource, settings: &Settings) -> Result<Rules, Vec<RuleError>> {
    match source {
        RuleSource::Dir(dir) => load_dir(dir, settings),
        RuleSource::Table(t) => Ok(tollgate_router::from_table(t)),
    }
}
