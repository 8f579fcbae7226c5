//! The adapters behind the pipeline's seams, built from the config: CRM lookups
//! (tollgate-crm) as the [`CrmCheck`], the risk engine (tollgate-risk) as the
//! [`RiskCheck`], and STIR/SHAKEN (tollgate-stir) as the risk engine's identity verifier. The
//! adapter crates never see each other; this module is where they meet.
//!
//! Every adapter fails open: a dead CRM or Redis changes what the router knows, never whether
//! the call is answered, and neither stops the server from starting.

use std::collections::HashMap;
use std::future::Future as _;
use std::sync::Arc;
use std::time::SystemTime;

use tollgate_core::{
    CallFacts, CallerProfile, Decision, DecisionAction, LookupStatus, RejectCause, Rejection,
    Verification,
};
use tollgate_crm::Lookup;
use tollgate_risk::{Caller, IdentityOutcome, IdentitySource, IdentityVerifier, RiskEngine};
use tollgate_stir::Verifier;

use crate::config::TrunkIdentity;
use crate::pipeline::{BoxFuture, CrmCheck, Mode, NoCrm, NoRisk, RiskAnswer, RiskCheck};

/// The built adapters; the handles are kept for admin commands and tests.
#[derive(Debug)]
pub struct Adapters {
    pub risk: Arc<dyn RiskCheck>,
    pub crm: Arc<dyn CrmCheck>,
    pub engine: Option<Arc<RiskEngine>>,
    pub lookup: Option<Lookup>,
}

impl Adapters {
    /// Nothing configured: the no-op seams.
    pub fn none() -> Self {
        Self {
            risk: Arc::new(NoRisk),
            crm: Arc::new(NoCrm),
            engine: None,
            lookup: None,
        }
    }
}

/// The in-memory risk store's background sweep (`[risk.memory] sweep_ms`): every period it
/// frees the callers whose windows and history TTL have passed and gives the memory back, so
/// memory falls after a flood of callers even when no further call arrives. Ends when the
/// engine is dropped; a Redis store has nothing to sweep (Redis expires its keys) and gets no
/// task. The clock lives here, not in the risk crate's core.
pub fn spawn_sweep(engine: &Arc<RiskEngine>, period: std::time::Duration) {
    if period.is_zero() || engine.velocity_store().kind() != "memory" {
        return;
    }
    let engine = Arc::downgrade(engine);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            // A sweep of a million callers takes tens of milliseconds: off the runtime's
            // workers, so no call waits behind it.
            let swept = tokio::task::spawn_blocking(move || {
                engine.velocity_store().sweep(SystemTime::now())
            })
            .await;
            if let Ok(Some(r)) = swept {
                if r.keys_freed + r.history_dropped > 0 {
                    tracing::debug!(
                        keys_freed = r.keys_freed,
                        history_dropped = r.history_dropped,
                        keys = r.store.keys,
                        "risk store swept"
                    );
                }
            }
        }
    });
}

/// The CRM seam over tollgate-crm's protected stack (cache, breaker, rate cap, deadline).
#[derive(Debug)]
pub struct CrmAdapter(pub Lookup);

impl CrmCheck for CrmAdapter {
    fn lookup<'a>(
        &'a self,
        facts: &'a CallFacts,
        mode: Mode,
    ) -> BoxFuture<'a, (LookupStatus, Option<CallerProfile>)> {
        Box::pin(async move {
            match (facts.ani.e164(), mode) {
                (Some(ani), Mode::Live) => self.0.lookup(ani).await,
                (Some(ani), Mode::Dry { fill_cache }) => self.0.lookup_dry(ani, fill_cache).await,
                // Withheld or unusable numbers have no CRM record to find.
                (None, _) => (LookupStatus::Skipped, None),
            }
        })
    }
}

/// The risk seam over tollgate-risk's engine.
#[derive(Debug)]
pub struct RiskAdapter {
    pub engine: Arc<RiskEngine>,
}

impl RiskCheck for RiskAdapter {
    fn assess<'a>(
        &'a self,
        facts: &'a CallFacts,
        now: SystemTime,
        mode: Mode,
    ) -> BoxFuture<'a, RiskAnswer> {
        Box::pin(async move {
            let v = match mode {
                Mode::Live => self.engine.evaluate(facts, now).await,
                Mode::Dry { .. } => self.engine.evaluate_dry(facts, now).await,
            };
            RiskAnswer {
                assessment: Some(v.assessment),
                history: v.history,
            }
        })
    }

    fn block_rejection(&self) -> Option<Rejection> {
        Some(self.engine.block_rejection().clone())
    }

    fn remember(&self, facts: &CallFacts, decision: &Decision, now: SystemTime) {
        let (DecisionAction::Route(target), Some(caller)) = (&decision.action, Caller::of(facts))
        else {
            return;
        };
        let engine = Arc::clone(&self.engine);
        let queue = target.queue.clone();
        let mut write = Box::pin(async move { engine.remember(&caller, &queue, now).await });
        // The memory store finishes on the first poll, so the caller's next call sees it; a
        // Redis write goes on in the background: the answer never waits for it.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if write.as_mut().poll(&mut cx).is_pending() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(write);
            }
        }
    }
}

/// STIR/SHAKEN for the risk engine: the PASSporTs in Identity headers (tollgate-stir), and the
/// carrier's verstat on trunks that trust it. Both come only from trusted trunks: extraction
/// drops them elsewhere, and this checks again.
#[derive(Debug)]
pub struct StirIdentity {
    pub verifier: Option<Arc<Verifier>>,
    pub trunks: HashMap<String, TrunkIdentity>,
}

impl IdentityVerifier for StirIdentity {
    fn verify<'a>(
        &'a self,
        facts: &'a CallFacts,
        now: SystemTime,
    ) -> BoxFuture<'a, IdentityOutcome> {
        Box::pin(async move {
            if !facts.trusted {
                return IdentityOutcome::default();
            }
            let trunk = self.trunks.get(&*facts.trunk).copied().unwrap_or_default();
            let passport = match &self.verifier {
                Some(v) if !facts.identity.is_empty() => {
                    let ani = facts.ani.e164().map_or("", |a| a.digits());
                    let dnis = facts.dnis.key().unwrap_or("");
                    Some(v.verify(&facts.identity, ani, dnis, now).await)
                }
                _ => None,
            };
            let verstat = facts
                .verstat
                .as_deref()
                .filter(|_| trunk.trust_verstat)
                .map(tollgate_stir::from_verstat);
            let mut out = match (&passport, &verstat) {
                (Some(p), _) if p.attestation.is_some() => IdentityOutcome {
                    attestation: p.attestation,
                    verification: p.core_verification(),
                    source: IdentitySource::Passport,
                    reject: None,
                },
                (_, Some((att, ver))) if *ver != Verification::Absent || passport.is_none() => {
                    IdentityOutcome {
                        attestation: *att,
                        verification: ver.clone(),
                        source: IdentitySource::Verstat,
                        reject: None,
                    }
                }
                (Some(p), _) => IdentityOutcome {
                    attestation: None,
                    verification: p.core_verification(),
                    source: IdentitySource::Passport,
                    reject: None,
                },
                _ => IdentityOutcome::default(),
            };
            if trunk.require_signed && out.verification != Verification::Verified {
                // RFC 8224 §6.2.2: the PASSporT's own failure class, else 438 for a failed
                // carrier verification, else 428 (nothing signed).
                let (code, reason) = match (&passport, &out.verification) {
                    (Some(p), _) => p.sip_response().unwrap_or((428, "Use Identity Header")),
                    (None, Verification::Failed(_)) => (438, "Invalid Identity Header"),
                    (None, _) => (428, "Use Identity Header"),
                };
                out.reject = Some(Rejection {
                    code,
                    reason: Some(reason.into()),
                    call_info: None,
                    retry_after: None,
                    cause: RejectCause::Identity,
                });
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;
    use tollgate_core::E164;
    use tollgate_risk::{Observation, RiskConfig, Trust};

    /// The wiring's sweep frees a caller whose calls all left the windows, with no further
    /// call arriving: a second call of that caller then counts as its first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweep_task_frees_callers_whose_windows_have_passed() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = RiskConfig::default();
        cfg.velocity.windows = vec![30, 60];
        cfg.velocity.ani = vec![5, 10];
        cfg.velocity.ani_dnis = vec![3, 6];
        cfg.velocity.npa_nxx = vec![100, 200];
        cfg.memory.sweep_ms = 50;
        let engine = Arc::new(RiskEngine::from_config(&cfg, dir.path()).await.unwrap());
        let store = Arc::clone(engine.velocity_store());
        let ani = E164::from_digits("12125550100").unwrap();
        // A call 100 s ago: outside both windows by the time the sweep looks.
        let then = SystemTime::now() - Duration::from_secs(100);
        let obs = |id: &'static str, now| Observation {
            call_id: id,
            ani: &ani,
            dnis: Some("18005550100"),
            npa_nxx: None,
            now,
            trust: Trust::Verified,
        };
        store.record(obs("first", then)).await.unwrap();
        let later = then + Duration::from_secs(1);
        let held = store.peek(obs("second", later)).await.unwrap();
        assert_eq!(held.ani, vec![2, 2], "the first call is held");
        spawn_sweep(&engine, Duration::from_millis(cfg.memory.sweep_ms));
        let mut counts = held;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            counts = store.peek(obs("second", later)).await.unwrap();
            if counts.ani == vec![1, 1] {
                break;
            }
        }
        assert_eq!(counts.ani, vec![1, 1], "the sweep never freed the caller");
    }
}
