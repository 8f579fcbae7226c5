//! A circuit breaker on atomics: the miss path takes no lock.
//!
//! Closed: requests flow, consecutive failures are counted. N in a row open it: requests fail
//! fast until the cool-down ends. Then one probe is let through (half-open): its success closes
//! the breaker, its failure opens it for another cool-down.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What an outside observer (health, admin) sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// Cooled down: the next request is the probe (or the probe is in flight).
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Nanoseconds since `epoch` when the cool-down ends; 0 while closed.
    open_until: AtomicU64,
    probing: AtomicBool,
}

/// Leave to make one request; dropping it unused (rate-limited, cancelled) frees the probe.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown: cooldown.max(Duration::from_millis(1)),
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        // +1 so that "now" is never the closed sentinel 0.
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.open_until.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            until if self.now() < until => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// `None` while open, and while cooled down but another request is the probe.
    pub(crate) fn permit(&self) -> Option<Permit<'_>> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Some(Permit {
                breaker: self,
                probe: false,
            });
        }
        if self.now() < until {
            return None;
        }
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Permit {
                breaker: self,
                probe: true,
            })
    }

    fn open(&self, from: u64) -> bool {
        let until = self
            .now()
            .saturating_add(u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX / 2));
        self.open_until
            .compare_exchange(from, until, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Permit<'_> {
    /// The CRM answered (found or not found).
    pub(crate) fn success(self) {
        let b = self.breaker;
        b.failures.store(0, Ordering::Release);
        let was = b.open_until.swap(0, Ordering::AcqRel);
        if was != 0 {
            tracing::info!(target: "tollgate::crm", "CRM circuit breaker closed");
            metrics::gauge!("tollgate_crm_breaker_open").set(0.0);
        }
    }

    /// The CRM failed (timeout, transport, bad status, bad answer).
    pub(crate) fn failure(self) {
        let b = self.breaker;
        let opened = if self.probe {
            let until = b.open_until.load(Ordering::Acquire);
            until != 0 && b.open(until)
        } else {
            let n = b.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            n >= b.threshold && b.open(0)
        };
        if opened {
            tracing::warn!(
                target: "tollgate::crm",
                cooldown_ms = u64::try_from(b.cooldown.as_millis()).unwrap_or(u64::MAX),
                probe = self.probe,
                "CRM circuit breaker open"
            );
            metrics::gauge!("tollgate_crm_breaker_open").set(1.0);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_once_and_closes() {
        let b = Breaker::new(2, Duration::from_millis(30));
        b.permit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.permit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.permit().is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.permit().unwrap();
        assert!(b.permit().is_none(), "only one probe at a time");
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open, "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(40));
        b.permit().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.permit().is_some());
    }

    #[test]
    fn an_unused_probe_is_released() {
        let b = Breaker::new(1, Duration::from_millis(1));
        b.permit().unwrap().failure();
        std::thread::sleep(Duration::from_millis(5));
        drop(b.permit().unwrap());
        assert!(b.permit().is_some());
    }

    #[test]
    fn success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        b.permit().unwrap().failure();
        b.permit().unwrap().success();
        b.permit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
