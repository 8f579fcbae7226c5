//! [`RiskEngine`]: velocity and identity in parallel, lists from the local snapshot, one score,
//! and the policy's answer (reject, verification queue, or route).
//!
//! [`RiskEngine::evaluate`] (a live call) and [`RiskEngine::evaluate_dry`] (explain) are one
//! function: the same lists, identity, score, policy and answer; only the velocity step
//! differs (`record` or the read-only `peek`, which counts the call itself as recording
//! would, so explain shows the verdict the live call would get).
//!
//! Precedence: a blocked call (block list, or a score at `levels.blocked`) has level
//! `Blocked` and `reject` = the `[risk.block]` answer, so a routing rule can match
//! `risk = "blocked"` and answer itself; `reject` is the default when no rule decides.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tollgate_core::{
    CallFacts, CallInfo, QueueName, RejectCause, Rejection, RiskAssessment, RiskLevel, RiskSignal,
};

use crate::config::{LevelConfig, RiskConfig, StoreKind, UntrustedMode, Weights};
use crate::error::RiskError;
use crate::identity::{IdentityOutcome, IdentityVerifier};
use crate::lists::{FileListStore, ListHit, ListKind, ListStore, Lists, Pattern, RedisListStore};
use crate::redis_conn;
use crate::score::{self, IdentityInput, Inputs, Thresholds, TrunkScoring, VelocityInput};
use crate::velocity::{
    self, Caller, Caps, MemoryVelocity, Observation, RedisVelocity, Trust, VelocityStore,
};

/// The engine's full answer: the assessment the pipeline stores in `facts.risk`, plus what
/// `RiskAssessment` has no field for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskVerdict {
    pub assessment: RiskAssessment,
    /// The policy that applied ("default" or a `[[risk.policy]]` name).
    pub policy: String,
    /// The caller's previous routed call ([`RiskEngine::remember`]), for repeat-caller rules.
    pub history: Option<tollgate_core::CallerHistory>,
}

#[derive(Clone, Debug)]
struct Policy {
    name: String,
    dnis: Vec<Pattern>,
    fail_open: bool,
    gray_queue: Option<QueueName>,
    thresholds: Thresholds,
}

/// Velocity, lists, identity and the score for one call at a time, from any number of tasks.
#[derive(Debug)]
pub struct RiskEngine {
    velocity: Arc<dyn VelocityStore>,
    lists: Arc<Lists>,
    identity: Option<Arc<dyn IdentityVerifier>>,
    identity_deadline: Duration,
    policies: Vec<Policy>,
    default_policy: Policy,
    weights: Weights,
    levels: LevelConfig,
    block: Rejection,
    fail_closed: Rejection,
    untrusted: UntrustedMode,
    /// `[risk.trunk."name"]`, resolved against the weights.
    trunks: HashMap<String, TrunkScoring>,
    default_trunk: TrunkScoring,
}

/// Whether the call is recorded (live) or only read (explain's dry run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Live,
    Dry,
}

/// Opens the list store the config names (the file relative to `base_dir`, or Redis).
pub fn open_list_store(cfg: &RiskConfig, base_dir: &Path) -> Result<Arc<dyn ListStore>, RiskError> {
    Ok(match cfg.store {
        StoreKind::Memory => Arc::new(FileListStore::new(base_dir.join(&cfg.list_file))),
        StoreKind::Redis => Arc::new(RedisListStore::new(
            redis_conn::connect(&cfg.redis)?,
            &cfg.redis.key_prefix,
            Duration::from_millis(cfg.redis.admin_timeout_ms),
        )),
    })
}

fn check(cfg: &RiskConfig) -> Result<(), RiskError> {
    let problems = cfg.validate();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RiskError::Config(problems))
    }
}

impl RiskEngine {
    /// Builds the configured stores (memory + list file, or Redis for both), reads the lists
    /// once and starts their background refresh. Redis being down is not an error here: calls
    /// fail open or closed per policy until it is back. Must run inside a Tokio runtime.
    pub async fn from_config(cfg: &RiskConfig, base_dir: &Path) -> Result<Self, RiskError> {
        check(cfg)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RiskError::NoRuntime);
        }
        if cfg.store == StoreKind::Redis {
            redis_conn::refuse_multi_node_cluster(&cfg.redis).await?;
        }
        let caps = caps(cfg);
        let velocity: Arc<dyn VelocityStore> = match cfg.store {
            StoreKind::Memory => Arc::new(
                MemoryVelocity::new(
                    cfg.velocity.windows.clone(),
                    caps,
                    cfg.memory.max_keys,
                    cfg.memory.max_events,
                )
                .with_history(
                    cfg.history_ttl_s,
                    cfg.memory.max_history,
                    cfg.memory.max_queue_names,
                ),
            ),
            StoreKind::Redis => Arc::new(
                RedisVelocity::new(
                    redis_conn::connect_per_thread(&cfg.redis)?,
                    &cfg.redis.key_prefix,
                    cfg.velocity.windows.clone(),
                    caps,
                    Duration::from_millis(cfg.redis.deadline_ms),
                    Duration::from_millis(cfg.redis.breaker_ms),
                )
                .with_history_ttl(cfg.history_ttl_s),
            ),
        };
        // Lists get their own connection: a large HGETALL must not delay a call's script.
        let lists = open_list_store(cfg, base_dir)?;
        Self::with_stores(cfg, velocity, lists).await
    }

    /// With stores built elsewhere (tests, benchmarks, a shared connection).
    pub async fn with_stores(
        cfg: &RiskConfig,
        velocity: Arc<dyn VelocityStore>,
        lists: Arc<dyn ListStore>,
    ) -> Result<Self, RiskError> {
        check(cfg)?;
        let lists = Lists::open(lists, Duration::from_millis(cfg.list_refresh_ms)).await;
        let v = &cfg.velocity;
        let default_policy = Policy {
            name: "default".into(),
            dnis: Vec::new(),
            fail_open: cfg.fail_open,
            gray_queue: queue(cfg.gray_queue.as_deref()),
            thresholds: Thresholds {
                ani: v.ani.clone(),
                ani_dnis: v.ani_dnis.clone(),
                npa_nxx: v.npa_nxx.clone(),
            },
        };
        let policies = cfg
            .policy
            .iter()
            .map(|p| Policy {
                name: p.name.clone(),
                dnis: p.dnis.iter().filter_map(|d| d.parse().ok()).collect(),
                fail_open: p.fail_open.unwrap_or(cfg.fail_open),
                gray_queue: queue(p.gray_queue.as_deref().or(cfg.gray_queue.as_deref())),
                thresholds: Thresholds {
                    ani: p.velocity.ani.clone().unwrap_or_else(|| v.ani.clone()),
                    ani_dnis: p
                        .velocity
                        .ani_dnis
                        .clone()
                        .unwrap_or_else(|| v.ani_dnis.clone()),
                    npa_nxx: p
                        .velocity
                        .npa_nxx
                        .clone()
                        .unwrap_or_else(|| v.npa_nxx.clone()),
                },
            })
            .collect();
        let b = &cfg.block;
        let block = Rejection {
            code: b.code,
            reason: b.reason.clone(),
            call_info: match (b.code, &b.complaint_url) {
                (608, Some(url)) => Some(CallInfo { url: url.clone() }),
                _ => None,
            },
            retry_after: None,
            cause: RejectCause::Blocked,
        };
        let f = &cfg.fail_closed;
        let fail_closed = Rejection {
            code: f.code,
            reason: f.reason.clone(),
            call_info: None,
            retry_after: (f.retry_after_s > 0).then_some(f.retry_after_s),
            cause: RejectCause::FailClosed,
        };
        let default_trunk = TrunkScoring {
            sources_disagree: cfg.weights.sources_disagree,
            disagree_from: true,
        };
        let trunks = cfg
            .trunk
            .iter()
            .map(|(name, t)| {
                let scoring = TrunkScoring {
                    sources_disagree: t.sources_disagree.unwrap_or(default_trunk.sources_disagree),
                    disagree_from: t.sources_disagree_from.unwrap_or(true),
                };
                (name.clone(), scoring)
            })
            .collect();
        Ok(Self {
            velocity,
            lists,
            identity: None,
            identity_deadline: Duration::from_millis(cfg.identity_deadline_ms),
            policies,
            default_policy,
            weights: cfg.weights.clone(),
            levels: cfg.levels.clone(),
            block,
            fail_closed,
            untrusted: cfg.untrusted,
            trunks,
            default_trunk,
        })
    }

    /// Plugs in STIR/SHAKEN verification (tollgate-stir); without one, calls are scored on
    /// whether identity was presented at all.
    pub fn with_identity_verifier(mut self, verifier: Arc<dyn IdentityVerifier>) -> Self {
        self.identity = Some(verifier);
        self
    }

    pub fn lists(&self) -> &Arc<Lists> {
        &self.lists
    }

    pub fn velocity_store(&self) -> &Arc<dyn VelocityStore> {
        &self.velocity
    }

    /// What `[risk.block]` answers a blocked caller.
    pub fn block_rejection(&self) -> &Rejection {
        &self.block
    }

    /// The assessment for `facts.risk` (see [`RiskEngine::evaluate`] for the queue).
    pub async fn assess(&self, facts: &CallFacts, now: SystemTime) -> RiskAssessment {
        self.evaluate(facts, now).await.assessment
    }

    /// Scores one call and records it in the velocity store. Never fails and never waits
    /// past the store deadline (Redis) or the identity deadline: what could not be judged is
    /// a zero-weight signal.
    pub async fn evaluate(&self, facts: &CallFacts, now: SystemTime) -> RiskVerdict {
        self.run(facts, now, Mode::Live).await
    }

    /// Exactly what [`RiskEngine::evaluate`] would answer for this call at `now` (same lists,
    /// identity, score, policy and answer), without recording it: velocity counts and the
    /// caller's history are read, not written. The counts include this call as recording it
    /// would (+1, or nothing for a Call-ID already counted), so they compare with the
    /// thresholds as the live call's would. Not counted in the assessment metrics.
    pub async fn evaluate_dry(&self, facts: &CallFacts, now: SystemTime) -> RiskVerdict {
        self.run(facts, now, Mode::Dry).await
    }

    async fn run(&self, facts: &CallFacts, now: SystemTime, mode: Mode) -> RiskVerdict {
        let policy = self.policy_for(facts);
        let ani = facts.ani.e164();
        let hits = ani.map(|n| self.lists.check(n, now)).unwrap_or_default();
        let snapshot_loaded = self.lists.snapshot().is_loaded();
        let trust = Trust::of(facts);
        let not_counted =
            ani.is_some() && trust != Trust::Verified && self.untrusted == UntrustedMode::Ignore;
        let velocity = async {
            let ani = ani.filter(|_| !not_counted)?;
            let obs = Observation {
                call_id: &facts.call_id,
                ani,
                dnis: facts.dnis.key(),
                npa_nxx: velocity::npa_nxx(facts),
                now,
                trust,
            };
            Some(match mode {
                Mode::Live => self.velocity.record(obs).await,
                Mode::Dry => self.velocity.peek(obs).await,
            })
        };
        let identity = async {
            let v = self.identity.as_ref()?;
            Some(
                tokio::time::timeout(self.identity_deadline, v.verify(facts, now))
                    .await
                    .ok(),
            )
        };
        let (velocity, identity): (_, Option<Option<IdentityOutcome>>) =
            tokio::join!(velocity, identity);

        let store = self.velocity.kind();
        let vel_input = match &velocity {
            None if not_counted => VelocityInput::NotCounted(trust),
            None => VelocityInput::Skipped,
            Some(Ok(c)) => VelocityInput::Counts(c, trust),
            Some(Err(e)) => {
                metrics::counter!("tollgate_risk_store_errors_total", "store" => store, "kind" => e.metric_label())
                    .increment(1);
                // One warning per breaker trip, not one per call while Redis is down.
                if !matches!(e, RiskError::CircuitOpen { .. }) {
                    tracing::warn!(store, error = %e, class = ?e.class(), "velocity store failed");
                }
                VelocityInput::Failed { store, error: e }
            }
        };
        let id_input = match &identity {
            None => IdentityInput::NotConfigured,
            Some(None) => IdentityInput::TimedOut,
            Some(Some(o)) => IdentityInput::Outcome(o),
        };
        let scored = score::score(
            &Inputs {
                facts,
                trunk: self
                    .trunks
                    .get(facts.trunk.as_str())
                    .copied()
                    .unwrap_or(self.default_trunk),
                identity: id_input,
                velocity: vel_input,
                windows: self.velocity.windows(),
                thresholds: &policy.thresholds,
                hits: &hits,
                lists_loaded: snapshot_loaded,
            },
            &self.weights,
            &self.levels,
        );
        let mut signals = scored.signals;
        let allowed = hits.iter().any(|h| h.list == ListKind::Allow);
        let store_failed = matches!(velocity, Some(Err(_)));
        let identity_reject = identity.as_ref().and_then(|o| o.as_ref()?.reject.clone());
        // The first that applies wins: block, identity, fail-closed.
        let wanted = if scored.would_block {
            Some(self.block.clone())
        } else if let Some(r) = identity_reject {
            Some(r)
        } else if store_failed && !policy.fail_open {
            Some(self.fail_closed.clone())
        } else {
            None
        };
        let reject = match wanted {
            Some(r) if facts.emergency => {
                signals.push(info(
                    "emergency-exempt",
                    format!(
                        "would reject {}; emergency calls are always routed",
                        status(&r)
                    ),
                ));
                None
            }
            Some(r) if allowed => {
                signals.push(info(
                    "allow-overrides",
                    format!("would reject {}; allow-listed", status(&r)),
                ));
                None
            }
            other => other,
        };
        let gray = hits.iter().any(|h| h.list == ListKind::Gray);
        let verify_queue =
            if reject.is_none() && !facts.emergency && (gray || scored.level >= RiskLevel::High) {
                policy.gray_queue.clone()
            } else {
                None
            };
        if let Some(q) = &verify_queue {
            signals.push(info("verify-queue", q.to_string()));
        }
        if !std::ptr::eq(policy, &self.default_policy) {
            // Which thresholds and fail mode applied, for explain and the decision log.
            signals.push(info("risk-policy", policy.name.clone()));
        }
        let history = match &velocity {
            Some(Ok(c)) => c.history.clone(),
            _ => None,
        };
        let (attestation, verification) = identity
            .flatten()
            .map(|o| (o.attestation, o.verification))
            .unwrap_or_default();
        let assessment = RiskAssessment {
            level: scored.level,
            score: scored.score,
            signals,
            attestation,
            verification,
            list_hits: hits.iter().map(|h| h.list.as_str().to_owned()).collect(),
            reject,
            // Whatever the policy did about it, the call was judged without its counts.
            degraded: store_failed || !snapshot_loaded,
            verify_queue,
        };
        if mode == Mode::Live {
            // A dry run (explain) is no call: it counts in no metric.
            self.count(&assessment, &hits, ani.is_some().then_some(trust));
        }
        RiskVerdict {
            assessment,
            policy: policy.name.clone(),
            history,
        }
    }

    /// Remembers where the caller's call was routed ([`Caller::of`] the call's facts), so
    /// the next call of the same caller, at the same trust, carries it (`history`): an ANI
    /// not believed is remembered in its own namespace (`risk.untrusted = "separate"`) or not
    /// at all (`"ignore"`), never as a verified caller's history. Best effort: a store error
    /// is logged at debug level and dropped.
    pub async fn remember(&self, caller: &Caller, queue: &str, now: SystemTime) {
        if caller.trust != Trust::Verified && self.untrusted == UntrustedMode::Ignore {
            return;
        }
        if let Err(e) = self.velocity.remember(caller, queue, now).await {
            tracing::debug!(error = %e, "caller history not stored");
        }
    }

    fn count(&self, a: &RiskAssessment, hits: &[ListHit], trust: Option<Trust>) {
        metrics::counter!("tollgate_risk_assessments_total", "level" => a.level.as_str())
            .increment(1);
        if let Some(t) = trust.filter(|&t| t != Trust::Verified) {
            // Calls counted in their own keys (or, with untrusted = "ignore", not at all).
            metrics::counter!("tollgate_risk_unbelieved_total", "trust" => t.as_str(), "mode" => self.untrusted.as_str())
                .increment(1);
        }
        for h in hits {
            metrics::counter!("tollgate_risk_list_hits_total", "list" => h.list.as_str())
                .increment(1);
        }
        if let Some(r) = &a.reject {
            metrics::counter!("tollgate_risk_rejections_total", "code" => r.code.to_string())
                .increment(1);
        }
    }

    fn policy_for(&self, facts: &CallFacts) -> &Policy {
        let Some(dnis) = facts.dnis.key() else {
            return &self.default_policy;
        };
        self.policies
            .iter()
            .find(|p| p.dnis.iter().any(|d| d.matches(dnis)))
            .unwrap_or(&self.default_policy)
    }
}

/// A rejection's status for the signals' text: the code, and the reason phrase where the
/// operator configured one (the standard phrase is the SIP layer's).
fn status(r: &Rejection) -> String {
    match &r.reason {
        Some(reason) => format!("{} {reason}", r.code),
        None => r.code.to_string(),
    }
}

/// A verification queue from the config, which `validate` has checked by [`QueueName::new`].
fn queue(name: Option<&str>) -> Option<QueueName> {
    name.and_then(|q| QueueName::new(q).ok())
}

fn info(name: &str, detail: String) -> RiskSignal {
    RiskSignal {
        name: name.into(),
        weight: 0,
        detail,
    }
}

/// One more than the largest threshold of each dimension, over every policy; 0 for a
/// dimension with no threshold anywhere (not counted).
fn caps(cfg: &RiskConfig) -> Caps {
    let v = &cfg.velocity;
    let cap =
        |top: &[u32], per_policy: &dyn Fn(&crate::config::PolicyConfig) -> Option<&Vec<u32>>| {
            let max = top
                .iter()
                .chain(cfg.policy.iter().filter_map(per_policy).flatten())
                .copied()
                .max()
                .unwrap_or(0);
            if max == 0 {
                0
            } else {
                max.saturating_add(1)
            }
        };
    Caps {
        ani: cap(&v.ani, &|p| p.velocity.ani.as_ref()),
        ani_dnis: cap(&v.ani_dnis, &|p| p.velocity.ani_dnis.as_ref()),
        npa_nxx: cap(&v.npa_nxx, &|p| p.velocity.npa_nxx.as_ref()),
    }
}
