//! CRM lookups for Tollgate: who the caller is, without ever making a call wait on the CRM.
//!
//! A [`Directory`] answers "which customer has this number?". Two adapters ship: the embedded
//! [`FileDirectory`] (CSV or JSON, reloaded when it changes; the default) and
//! [`HttpDirectory`] (a CRM's REST API through a JSON field mapping). [`Lookup`] wraps the
//! configured one in the protective stack, outermost first:
//!
//! ```text
//! deadline ▸ cache (moka: TTL, negative TTL, single-flight, stale-while-revalidate)
//!          ▸ circuit breaker ▸ rate limit (governor) ▸ adapter
//! ```
//!
//! and always answers with a [`LookupStatus`]: a slow, failing or saturated CRM changes what
//! the router knows about the caller, never whether the call is answered.
//!
//! Metrics: `tollgate_crm_requests_total{result}` (one per adapter attempt: `found`,
//! `not-found`, or the [`ErrorKind`]), `tollgate_crm_request_seconds`,
//! `tollgate_crm_cache_total{result=hit|miss|stale}`, `tollgate_crm_lookups_total{status}`
//! (one per call), `tollgate_crm_breaker_open`, `tollgate_crm_reload_total{result}` and
//! `tollgate_crm_directory_records`.

use tollgate_core::{CallerProfile, E164};

mod breaker;
mod config;
mod error;
mod file;
mod headers;
mod http;
mod lookup;
mod mapping;
mod template;

pub use breaker::BreakerState;
pub use config::{
    BreakerConfig, CacheConfig, FileConfig, FileFormat, HttpConfig, Kind, LookupConfig,
    MappingConfig, Method, RateLimitConfig,
};
pub use error::{ErrorKind, FileError, FileProblem, LookupError};
pub use file::FileDirectory;
pub use http::HttpDirectory;
pub use lookup::Lookup;
pub use tollgate_core::LookupStatus;

pub use tollgate_core::BoxFuture;

/// A source of caller profiles keyed by normalized ANI.
///
/// `Ok(Some(_))` is found, `Ok(None)` is "the CRM does not know this number", and `Err` says
/// why there is no answer ([`LookupError::kind`]).
pub trait Directory: Send + Sync + std::fmt::Debug {
    fn find<'a>(
        &'a self,
        ani: &'a E164,
    ) -> BoxFuture<'a, Result<Option<CallerProfile>, LookupError>>;
}
