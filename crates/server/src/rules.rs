//! The live rule set: loaded from the rules directory (or the main config's simple table),
//! rebuilt off the call path and swapped atomically; a bad reload keeps the old rules live.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tollgate_core::Problem;
use tollgate_router::{RuleError, Rules, Settings, Source, Table};

/// Where the rules come from.
#[derive(Clone, Debug)]
pub enum RuleSource {
    /// A directory of rule files (`queues.toml`, `default.toml`, one file per service line).
    Dir(PathBuf),
    /// The main config's `[routing]` table.
    Table(Table),
}

/// A rule file's problem as a [`Problem`], the one shape every config problem is reported in
/// (the router's `RuleError` has the same fields).
pub fn problem(e: RuleError) -> Problem {
    Problem::new(e.key, e.message).at(e.file, e.line)
}

/// Reads every `*.toml` in a rules directory, sorted, and builds the rules.
pub fn load_dir(dir: &Path, settings: &Settings) -> Result<Rules, Vec<RuleError>> {
    tollgate_router::parse(&read_dir(dir)?, settings)
}

/// A version's rule files: (file name, text), sorted; empty for the config's routing table.
pub type Files = Arc<Vec<(String, String)>>;

fn files_of(sources: &[Source]) -> Files {
    Arc::new(
        sources
            .iter()
            .map(|s| {
                let name = Path::new(&s.path)
                    .file_name()
                    .map_or_else(|| s.path.clone(), |n| n.to_string_lossy().into_owned());
                (name, s.text.clone())
            })
            .collect(),
    )
}

/// Every `*.toml` in a rules directory, sorted, with its text.
fn read_dir(dir: &Path) -> Result<Vec<Source>, Vec<RuleError>> {
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
    Ok(sources)
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

/// How many rule versions that have been live the store remembers (with their snapshots,
/// for rollback).
pub const MAX_HISTORY: usize = 32;

/// One rules version that went live.
#[derive(Clone, Debug)]
pub struct HistoryEntry {
    pub version: String,
    /// When it went live.
    pub live_since: jiff::Timestamp,
    /// "start", "reload", "promote" or "rollback".
    pub action: &'static str,
    /// Who made it live: the admin token's name, `--who`, or "node" for start and reloads.
    pub by: String,
    pub reason: String,
    /// The snapshot, so that a rollback can bring it back.
    pub rules: Arc<Rules>,
    /// The files it was built from (`GET /v1/admin/rules/history/{version}`, a `diff`
    /// baseline).
    pub files: Files,
}

impl HistoryEntry {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version,
            "live_since": self.live_since.to_string(),
            "action": self.action,
            "by": self.by,
            "reason": self.reason,
        })
    }
}

/// The candidate rules evaluated beside the live ones ([`RuleStore::load_shadow`]).
#[derive(Debug, Default)]
pub struct ShadowState {
    /// Where the shadow was last loaded from.
    pub dir: Option<PathBuf>,
    /// The last load's errors (the previous shadow, or none, stayed).
    pub errors: Vec<String>,
    pub failed_at: Option<jiff::Timestamp>,
}

/// Why a promote or rollback did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapError {
    /// There is no shadow to promote, or no earlier version to roll back to.
    Nothing(String),
}

impl std::fmt::Display for SwapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwapError::Nothing(m) => f.write_str(m),
        }
    }
}

/// The live rules and how to rebuild them; the shadow rules beside them; the versions that
/// have been live.
#[derive(Debug)]
pub struct RuleStore {
    current: ArcSwap<Rules>,
    /// Candidate rules every live call is also decided by (never answering it).
    shadow: ArcSwapOption<Rules>,
    shadow_state: std::sync::Mutex<ShadowState>,
    /// The shadow's files, for the history once it is promoted.
    shadow_files: std::sync::Mutex<Files>,
    /// Every version that has been live, oldest first, at most [`MAX_HISTORY`]. Written only
    /// by reload, promote and rollback (never on the call path); also serializes them, so a
    /// swap and its history entry are one step.
    history: std::sync::Mutex<std::collections::VecDeque<HistoryEntry>>,
    /// What the shadow said, since it was loaded.
    stats: crate::shadow::ShadowStats,
    source: RuleSource,
    settings: Settings,
    /// Queues the config sends calls to outside the rules (`over_limit = "queue:NAME"`); a
    /// rules directory must keep declaring them.
    required: Vec<String>,
}

impl RuleStore {
    /// Builds the first snapshot; an error here stops start-up (there are no old rules to keep).
    pub fn new(source: RuleSource, settings: Settings) -> Result<Self, Vec<RuleError>> {
        let (rules, files) = build(&source, &settings)?;
        let rules = Arc::new(rules);
        let first = HistoryEntry {
            files,
            version: rules.version.clone(),
            live_since: jiff::Timestamp::now(),
            action: "start",
            by: "node".into(),
            reason: String::new(),
            rules: Arc::clone(&rules),
        };
        Ok(Self {
            current: ArcSwap::new(rules),
            shadow: ArcSwapOption::empty(),
            shadow_state: std::sync::Mutex::new(ShadowState::default()),
            shadow_files: std::sync::Mutex::new(Files::default()),
            history: std::sync::Mutex::new(std::collections::VecDeque::from([first])),
            stats: crate::shadow::ShadowStats::default(),
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
    fn build(&self) -> Result<(Rules, Files), Vec<RuleError>> {
        let (rules, files) = build(&self.source, &self.settings)?;
        if !matches!(self.source, RuleSource::Dir(_)) {
            return Ok((rules, files));
        }
        let missing = missing_queues(&rules, &self.required);
        if missing.is_empty() {
            Ok((rules, files))
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
            Ok((rules, files)) => {
                let version = rules.version.clone();
                let rules = Arc::new(rules);
                let mut history = self.lock_history();
                let old = self.current.swap(Arc::clone(&rules));
                if old.version != version {
                    push(&mut history, "reload", "node", "", rules, files);
                }
                drop(history);
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

    fn lock_history(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<HistoryEntry>> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_shadow(&self) -> std::sync::MutexGuard<'_, ShadowState> {
        self.shadow_state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the shadow said since it was loaded.
    pub fn shadow_stats(&self) -> &crate::shadow::ShadowStats {
        &self.stats
    }

    /// The shadow rules, if any. Cheap: one atomic load.
    pub fn shadow(&self) -> arc_swap::Guard<Option<Arc<Rules>>> {
        self.shadow.load()
    }

    /// Loads a candidate rules directory as the shadow, checked as a reload is (the
    /// overflow queues included). On error the previous shadow (or none) stays, and the
    /// errors are logged, counted and kept for the admin API.
    pub fn load_shadow(&self, dir: &Path) -> Result<String, Vec<RuleError>> {
        let built = read_dir(dir).and_then(|sources| {
            let r = tollgate_router::parse(&sources, &self.settings)?;
            let missing = missing_queues(&r, &self.required);
            if missing.is_empty() {
                Ok((r, files_of(&sources)))
            } else {
                Err(missing)
            }
        });
        let mut state = self.lock_shadow();
        match built {
            Ok((rules, files)) => {
                let version = self.install_shadow(rules);
                *self
                    .shadow_files
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = files;
                state.dir = Some(dir.to_owned());
                state.errors.clear();
                state.failed_at = None;
                metrics::counter!("tollgate_rules_shadow_loads_total", "result" => "ok")
                    .increment(1);
                tracing::info!(dir = %dir.display(), version = %version, "shadow rules loaded");
                Ok(version)
            }
            Err(errors) => {
                metrics::counter!("tollgate_rules_shadow_loads_total", "result" => "error")
                    .increment(1);
                for e in &errors {
                    tracing::error!(error = %e, dir = %dir.display(),
                        "shadow rules rejected; the previous shadow (or none) stays");
                }
                state.errors = errors.iter().map(ToString::to_string).collect();
                state.failed_at = Some(jiff::Timestamp::now());
                Err(errors)
            }
        }
    }

    /// Makes `rules` the shadow (already checked), its summary started afresh; returns its
    /// version.
    pub fn install_shadow(&self, rules: Rules) -> String {
        let version = rules.version.clone();
        *self
            .shadow_files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Files::default();
        self.shadow.store(Some(Arc::new(rules)));
        self.stats.reset(Some(&version));
        version
    }

    /// Stops evaluating a shadow.
    pub fn clear_shadow(&self) {
        let _state = self.lock_shadow();
        self.shadow.store(None);
        self.stats.reset(None);
    }

    /// Where the shadow came from and the last failed load's errors.
    pub fn shadow_status(&self) -> (Option<PathBuf>, Vec<String>, Option<jiff::Timestamp>) {
        let s = self.lock_shadow();
        (s.dir.clone(), s.errors.clone(), s.failed_at)
    }

    /// Makes the shadow live, atomically (one swap, as a reload), and records it. The shadow
    /// is then cleared: it is the live rules.
    pub fn promote(&self, by: &str, reason: &str) -> Result<HistoryEntry, SwapError> {
        let mut history = self.lock_history();
        let Some(rules) = self.shadow.swap(None) else {
            return Err(SwapError::Nothing("there is no shadow to promote".into()));
        };
        let old = self.current.swap(Arc::clone(&rules));
        self.stats.reset(None);
        let files = std::mem::take(
            &mut *self
                .shadow_files
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let entry = push(&mut history, "promote", by, reason, rules, files);
        metrics::counter!("tollgate_rules_promotions_total", "action" => "promote").increment(1);
        tracing::info!(old = %old.version, new = %entry.version, by, reason, "shadow rules promoted");
        Ok(entry)
    }

    /// Brings back the version that was live before the current one, atomically, and
    /// records it.
    pub fn rollback(&self, by: &str, reason: &str) -> Result<HistoryEntry, SwapError> {
        let mut history = self.lock_history();
        let live = self.current.load_full();
        let (previous, files) = history
            .iter()
            .rev()
            .find(|e| e.version != live.version)
            .map(|e| (Arc::clone(&e.rules), Arc::clone(&e.files)))
            .ok_or_else(|| {
                SwapError::Nothing("no earlier rules version is kept to roll back to".into())
            })?;
        self.current.store(Arc::clone(&previous));
        let entry = push(&mut history, "rollback", by, reason, previous, files);
        metrics::counter!("tollgate_rules_promotions_total", "action" => "rollback").increment(1);
        tracing::info!(old = %live.version, new = %entry.version, by, reason, "rules rolled back");
        Ok(entry)
    }

    /// Every version that has been live, oldest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.lock_history().iter().cloned().collect()
    }

    /// A version that has been live, by its hash (or a unique prefix of it): the latest
    /// entry of that version.
    pub fn past_version(&self, version: &str) -> Option<HistoryEntry> {
        let history = self.lock_history();
        let mut hits = history
            .iter()
            .rev()
            .filter(|e| !version.is_empty() && e.version.starts_with(version));
        let first = hits.next()?;
        hits.all(|e| e.version == first.version)
            .then(|| first.clone())
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

fn build(source: &RuleSource, settings: &Settings) -> Result<(Rules, Files), Vec<RuleError>> {
    match source {
        RuleSource::Dir(dir) => {
            let sources = read_dir(dir)?;
            let rules = tollgate_router::parse(&sources, settings)?;
            Ok((rules, files_of(&sources)))
        }
        RuleSource::Table(t) => Ok((tollgate_router::from_table(t), Files::default())),
    }
}

/// The overflow queues the config routes to that `rules` do not declare.
fn missing_queues(rules: &Rules, required: &[String]) -> Vec<RuleError> {
    required
        .iter()
        .filter(|q| !rules.queues.contains(q.as_str()))
        .map(|q| RuleError {
            file: tollgate_router::QUEUES_FILE.into(),
            line: None,
            key: "queues".into(),
            message: format!("the overflow queue {q:?} (a trunk's over_limit) is not declared"),
        })
        .collect()
}

/// Records a version going live, dropping the oldest past [`MAX_HISTORY`].
fn push(
    history: &mut std::collections::VecDeque<HistoryEntry>,
    action: &'static str,
    by: &str,
    reason: &str,
    rules: Arc<Rules>,
    files: Files,
) -> HistoryEntry {
    let entry = HistoryEntry {
        files,
        version: rules.version.clone(),
        live_since: jiff::Timestamp::now(),
        action,
        by: by.to_owned(),
        reason: reason.to_owned(),
        rules,
    };
    history.push_back(entry.clone());
    while history.len() > MAX_HISTORY {
        history.pop_front();
    }
    entry
}
