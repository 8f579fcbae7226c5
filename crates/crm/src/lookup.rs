//! The protective stack around a directory: deadline ▸ cache ▸ breaker ▸ rate limit ▸ adapter.

use std::fmt;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::future::Cache;
use moka::Expiry;
use tollgate_core::{CallerProfile, LookupStatus, NumberPlan, E164};

use crate::breaker::{Breaker, BreakerState};
use crate::config::{Kind, LookupConfig};
use crate::template::{Context, Template};
use crate::{Directory, FileDirectory, HttpDirectory, LookupError};

/// CRM lookups as the pipeline uses them: cheap to clone, always answers within the deadline.
#[derive(Clone)]
pub struct Lookup {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    kind: Kind,
    directory: Arc<dyn Directory>,
    file: Option<FileDirectory>,
    cache: Option<Cache<E164, Arc<Entry>>>,
    breaker: Option<Breaker>,
    limiter: Option<DefaultDirectRateLimiter>,
    deadline: Duration,
    ttl: Duration,
    negative_ttl: Duration,
    stale: Duration,
}

/// One cached answer; `Arc` so a cache read copies a pointer, not the profile.
#[derive(Debug)]
struct Entry {
    profile: Option<CallerProfile>,
    stored: Instant,
    fresh_for: Duration,
    /// Set while one background request refreshes this stale entry.
    refreshing: AtomicBool,
}

impl Entry {
    fn answer(&self) -> (LookupStatus, Option<CallerProfile>) {
        match &self.profile {
            Some(p) => (LookupStatus::Found, Some(p.clone())),
            None => (LookupStatus::NotFound, None),
        }
    }
}

/// Found answers live `ttl`, "not found" `negative_ttl`, each plus the stale window.
struct ByAnswer {
    stale: Duration,
}

impl Expiry<E164, Arc<Entry>> for ByAnswer {
    fn expire_after_create(&self, _: &E164, v: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(v.fresh_for.saturating_add(self.stale))
    }

    // A refresh replaces the answer, so the new one's lifetime applies (moka's default keeps
    // the old expiry).
    fn expire_after_update(
        &self,
        _: &E164,
        v: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.fresh_for.saturating_add(self.stale))
    }
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(inner) = &self.inner else {
            return f.write_str("Lookup(none)");
        };
        f.debug_struct("Lookup")
            .field("directory", &inner.directory)
            .field("deadline", &inner.deadline)
            .field(
                "cache_entries",
                &inner.cache.as_ref().map(Cache::entry_count),
            )
            .field("ttl", &inner.ttl)
            .field("negative_ttl", &inner.negative_ttl)
            .field("stale", &inner.stale)
            .field("breaker", &inner.breaker.as_ref().map(Breaker::state))
            .field("rate_limited", &inner.limiter.is_some())
            .finish()
    }
}

impl Lookup {
    /// No CRM: every lookup is `Skipped`.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Builds the configured stack. `base_dir` is the config file's directory: relative
    /// directory files and `file:` header secrets are found from there. The numbering plan is
    /// loaded (about 100 ms) only if `file.region` or a `{national}` template needs it; a server
    /// that has one already should call [`Lookup::from_config_with_plan`].
    pub fn from_config(cfg: &LookupConfig, base_dir: &Path) -> Result<Self, LookupError> {
        Self::from_config_with_plan(cfg, base_dir, None)
    }

    /// As [`Lookup::from_config`], sharing the server's numbering plan.
    pub fn from_config_with_plan(
        cfg: &LookupConfig,
        base_dir: &Path,
        plan: Option<Arc<NumberPlan>>,
    ) -> Result<Self, LookupError> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(LookupError::Config(problems));
        }
        let plan_if = |needed: bool| {
            needed.then(|| plan.clone().unwrap_or_else(|| Arc::new(NumberPlan::load())))
        };
        match cfg.kind {
            Kind::None => Ok(Self::disabled()),
            Kind::File => {
                let file =
                    FileDirectory::open(&cfg.file, base_dir, plan_if(cfg.file.region.is_some()))?;
                // Already in memory: a cache, breaker or rate limit would only add staleness.
                let inner = Inner {
                    kind: Kind::File,
                    directory: Arc::new(file.clone()),
                    file: Some(file),
                    cache: None,
                    breaker: None,
                    limiter: None,
                    deadline: Duration::from_millis(cfg.deadline_ms),
                    ttl: Duration::ZERO,
                    negative_ttl: Duration::ZERO,
                    stale: Duration::ZERO,
                };
                Ok(Self {
                    inner: Some(Arc::new(inner)),
                })
            }
            Kind::Http => {
                let h = &cfg.http;
                let national = Template::parse(&h.url, Context::Url)
                    .is_ok_and(|t| t.needs_national())
                    || h.body.as_deref().is_some_and(|b| {
                        Template::parse(b, Context::Body).is_ok_and(|t| t.needs_national())
                    });
                let http = HttpDirectory::new(h, base_dir, plan_if(national))?;
                Ok(Self::with_directory(Arc::new(http), cfg))
            }
        }
    }

    /// Any directory behind the stack that `cfg`'s cache, rate-limit, breaker and deadline
    /// settings describe (the stack `kind = "http"` gets).
    pub fn with_directory(directory: Arc<dyn Directory>, cfg: &LookupConfig) -> Self {
        let c = &cfg.cache;
        let stale = Duration::from_millis(c.stale_ms);
        let cache = (c.max_entries > 0).then(|| {
            Cache::builder()
                .max_capacity(c.max_entries)
                .expire_after(ByAnswer { stale })
                .build()
        });
        let breaker = (cfg.breaker.failures > 0).then(|| {
            Breaker::new(
                cfg.breaker.failures,
                Duration::from_millis(cfg.breaker.cooldown_ms),
            )
        });
        let limiter = NonZeroU32::new(cfg.rate_limit.per_second).map(|rate| {
            let burst = cfg
                .rate_limit
                .burst
                .and_then(NonZeroU32::new)
                .unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        let inner = Inner {
            kind: Kind::Http,
            directory,
            file: None,
            cache,
            breaker,
            limiter,
            deadline: Duration::from_millis(cfg.deadline_ms.max(1)),
            ttl: Duration::from_millis(c.ttl_ms),
            negative_ttl: Duration::from_millis(c.negative_ttl_ms),
            stale,
        };
        Self {
            inner: Some(Arc::new(inner)),
        }
    }

    /// Which directory this is (`None` for [`Lookup::disabled`]).
    pub fn kind(&self) -> Kind {
        self.inner.as_ref().map_or(Kind::None, |i| i.kind)
    }

    /// The caller's profile and what became of the lookup, within the deadline.
    ///
    /// A cache hit answers at once. A miss waits at most `deadline_ms` (then `Timeout`); the
    /// request goes on in the background and fills the cache for the next call. A failing
    /// CRM yields `Error`, an open breaker `BreakerOpen`, the rate cap `RateLimited`: in
    /// each case the call routes without CRM data. Needs a Tokio runtime with timers.
    pub async fn lookup(&self, ani: &E164) -> (LookupStatus, Option<CallerProfile>) {
        let Some(inner) = &self.inner else {
            return (LookupStatus::Skipped, None);
        };
        let answer = match inner.cached(ani).await {
            Some(hit) => hit,
            None => tokio::time::timeout(inner.deadline, inner.resolve(ani))
                .await
                .unwrap_or((LookupStatus::Timeout, None)),
        };
        metrics::counter!("tollgate_crm_lookups_total", "status" => answer.0.as_str()).increment(1);
        answer
    }

    /// What [`Lookup::lookup`] would answer, for `explain`: a cache hit (fresh or stale) as
    /// is, a miss asked of the CRM through the same breaker, rate cap and deadline, but the
    /// answer is not put in the cache, no stale refresh starts, and with `fill` the answer is
    /// cached as a live call's would be. Counted under `tollgate_crm_lookups_total` with
    /// `mode="dry"`.
    pub async fn lookup_dry(
        &self,
        ani: &E164,
        fill: bool,
    ) -> (LookupStatus, Option<CallerProfile>) {
        if fill {
            return self.lookup(ani).await;
        }
        let Some(inner) = &self.inner else {
            return (LookupStatus::Skipped, None);
        };
        let hit = match &inner.cache {
            Some(cache) => cache.get(ani).await.map(|e| e.answer()),
            None => None,
        };
        let answer = match hit {
            Some(hit) => hit,
            None => tokio::time::timeout(inner.deadline, inner.fetch(ani))
                .await
                .map_or((LookupStatus::Timeout, None), |r| match r {
                    Ok(Some(p)) => (LookupStatus::Found, Some(p)),
                    Ok(None) => (LookupStatus::NotFound, None),
                    Err(e) => (e.status(), None),
                }),
        };
        metrics::counter!("tollgate_crm_lookups_total", "status" => answer.0.as_str(), "mode" => "dry")
            .increment(1);
        answer
    }

    /// Forgets one caller's cached answer (after the CRM record changed).
    pub async fn invalidate(&self, ani: &E164) {
        if let Some(cache) = self.inner.as_ref().and_then(|i| i.cache.as_ref()) {
            cache.invalidate(ani).await;
        }
    }

    /// Forgets every cached answer.
    pub fn invalidate_all(&self) {
        if let Some(cache) = self.inner.as_ref().and_then(|i| i.cache.as_ref()) {
            cache.invalidate_all();
        }
    }

    /// File directory: re-reads the file now and returns its record count (on error the old
    /// data stays live). HTTP: empties the cache and returns 0.
    pub fn reload(&self) -> Result<usize, LookupError> {
        match self.inner.as_ref().and_then(|i| i.file.as_ref()) {
            Some(file) => file.reload(),
            None => {
                self.invalidate_all();
                Ok(0)
            }
        }
    }

    /// The file directory's last failed reload, until one succeeds.
    pub fn last_reload_error(&self) -> Option<LookupError> {
        self.inner
            .as_ref()
            .and_then(|i| i.file.as_ref())
            .and_then(FileDirectory::last_error)
    }

    /// For health and admin views; `None` without a breaker.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.inner
            .as_ref()
            .and_then(|i| i.breaker.as_ref())
            .map(Breaker::state)
    }

    /// Cached answers (approximate: moka counts lazily); 0 without a cache.
    pub fn cached_entries(&self) -> u64 {
        self.inner
            .as_ref()
            .and_then(|i| i.cache.as_ref())
            .map_or(0, Cache::entry_count)
    }
}

impl Inner {
    /// A cache hit, fresh or (within the stale window) stale; stale starts one refresh.
    async fn cached(self: &Arc<Self>, ani: &E164) -> Option<(LookupStatus, Option<CallerProfile>)> {
        let entry = self.cache.as_ref()?.get(ani).await?;
        // With no stale window moka's expiry is the freshness test.
        if self.stale.is_zero() || entry.stored.elapsed() < entry.fresh_for {
            metrics::counter!("tollgate_crm_cache_total", "result" => "hit").increment(1);
        } else {
            metrics::counter!("tollgate_crm_cache_total", "result" => "stale").increment(1);
            self.refresh(ani, &entry);
        }
        Some(entry.answer())
    }

    /// A miss: one request per ANI however many calls wait for it (moka's try_get_with).
    async fn resolve(self: &Arc<Self>, ani: &E164) -> (LookupStatus, Option<CallerProfile>) {
        if self.cache.is_none() {
            return match self.fetch(ani).await {
                Ok(Some(p)) => (LookupStatus::Found, Some(p)),
                Ok(None) => (LookupStatus::NotFound, None),
                Err(e) => (e.status(), None),
            };
        }
        metrics::counter!("tollgate_crm_cache_total", "result" => "miss").increment(1);
        // Each waiting call runs as its own task so that a call giving up at the deadline
        // cancels nothing: were the future running the request dropped, moka would hand the
        // request over to the next waiter and start it again. The request's answer lands in
        // the cache even after every call has stopped waiting.
        let this = Arc::clone(self);
        let key = ani.clone();
        let load = async move {
            let cache = this.cache.as_ref()?;
            let init = async { this.fetch(&key).await.map(|p| this.entry(p)) };
            Some(cache.try_get_with(key.clone(), init).await)
        };
        let loaded = match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt
                .spawn(load)
                .await
                .unwrap_or_else(|e| Some(Err(Arc::new(LookupError::Internal(e.to_string()))))),
            Err(_) => load.await,
        };
        match loaded {
            Some(Ok(entry)) => entry.answer(),
            Some(Err(e)) => (e.status(), None),
            None => (LookupStatus::Error, None),
        }
    }

    fn entry(&self, profile: Option<CallerProfile>) -> Arc<Entry> {
        let fresh_for = if profile.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        Arc::new(Entry {
            profile,
            stored: Instant::now(),
            fresh_for,
            refreshing: AtomicBool::new(false),
        })
    }

    fn refresh(self: &Arc<Self>, ani: &E164, entry: &Arc<Entry>) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            entry.refreshing.store(false, Ordering::Release);
            return;
        };
        let this = Arc::clone(self);
        let key = ani.clone();
        let stale = Arc::clone(entry);
        rt.spawn(async move {
            match this.fetch(&key).await {
                Ok(profile) => {
                    let fresh = this.entry(profile);
                    if let Some(cache) = &this.cache {
                        cache.insert(key, fresh).await;
                    }
                }
                // The stale answer stays until its window ends; a later call may try again.
                Err(_) => stale.refreshing.store(false, Ordering::Release),
            }
        });
    }

    /// One guarded request: breaker, then rate limit, then the adapter.
    async fn fetch(&self, ani: &E164) -> Result<Option<CallerProfile>, LookupError> {
        let permit = match &self.breaker {
            Some(b) => match b.permit() {
                Some(p) => Some(p),
                None => return Err(rejected(LookupError::BreakerOpen)),
            },
            None => None,
        };
        if self.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            return Err(rejected(LookupError::RateLimited));
        }
        let started = Instant::now();
        let result = self.directory.find(ani).await;
        metrics::histogram!("tollgate_crm_request_seconds").record(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(Some(_)) => "found",
            Ok(None) => "not-found",
            Err(e) => e.kind().as_str(),
        };
        metrics::counter!("tollgate_crm_requests_total", "result" => label).increment(1);
        if let Some(p) = permit {
            if result.is_ok() {
                p.success();
            } else {
                p.failure();
            }
        }
        if let Err(e) = &result {
            tracing::debug!(target: "tollgate::crm", error = %e, "CRM lookup failed");
        }
        result
    }
}

fn rejected(e: LookupError) -> LookupError {
    metrics::counter!("tollgate_crm_requests_total", "result" => e.kind().as_str()).increment(1);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn lookup_future_is_send() {
        let lookup = Lookup::disabled();
        let ani = E164::from_digits("12125550100").unwrap();
        assert_send(&lookup.lookup(&ani));
    }

    #[tokio::test]
    async fn disabled_skips() {
        let ani = E164::from_digits("12125550100").unwrap();
        assert_eq!(
            Lookup::disabled().lookup(&ani).await,
            (LookupStatus::Skipped, None)
        );
        assert_eq!(Lookup::disabled().kind(), Kind::None);
    }
}
