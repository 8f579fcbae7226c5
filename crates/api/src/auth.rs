//! Bearer tokens with scopes, and short-lived stream tickets for browsers.
//!
//! Token values are kept only as SHA-256 digests and compared in constant time; neither a
//! token nor a ticket is ever logged or echoed. `EventSource` cannot send an `Authorization`
//! header, so a desktop trades its token for a single-use ticket (`POST /v1/pops/ticket`) and
//! passes that in the stream URL; the token itself never appears in a URL or an access log.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use rand::Rng;

use crate::error::ApiError;

/// Tokens and webhook keys: the one secret type, `Debug` shows `***`.
pub use tollgate_core::Secret;

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything: every queue's pops and the admin endpoints.
    Admin,
    /// Pops of the listed queues only (`"*"` means every queue); no admin endpoints.
    Agent { queues: Vec<String> },
}

/// One configured token.
#[derive(Clone, Debug)]
pub struct Token {
    /// Shown in logs and errors instead of the value.
    pub name: String,
    pub secret: Secret,
    pub scope: Scope,
}

/// Who is calling, once authenticated.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: Arc<str>,
    pub scope: Scope,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    pub fn may_read(&self, queue: &str) -> bool {
        match &self.scope {
            Scope::Admin => true,
            Scope::Agent { queues } => queues.iter().any(|q| q == "*" || q == queue),
        }
    }

    /// The queues a stream delivers: the requested ones (each must be allowed), or everything
    /// the token may read.
    pub fn filter(&self, requested: &[String]) -> Result<QueueFilter, ApiError> {
        if requested.is_empty() {
            return Ok(match &self.scope {
                Scope::Admin => QueueFilter::All,
                Scope::Agent { queues } if queues.iter().any(|q| q == "*") => QueueFilter::All,
                Scope::Agent { queues } => QueueFilter::Only(queues.iter().cloned().collect()),
            });
        }
        if let Some(q) = requested.iter().find(|q| !self.may_read(q)) {
            return Err(ApiError::forbidden(format!(
                "token {:?} may not read queue {q:?}",
                self.name
            )));
        }
        Ok(QueueFilter::Only(requested.iter().cloned().collect()))
    }
}

/// Which queues a subscriber gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueFilter {
    All,
    Only(HashSet<String>),
}

impl QueueFilter {
    pub fn allows(&self, queue: &str) -> bool {
        match self {
            QueueFilter::All => true,
            QueueFilter::Only(set) => set.contains(queue),
        }
    }

    /// For the stream's hello message.
    pub fn names(&self) -> Vec<String> {
        match self {
            QueueFilter::All => vec!["*".to_owned()],
            QueueFilter::Only(set) => {
                let mut v: Vec<String> = set.iter().cloned().collect();
                v.sort();
                v
            }
        }
    }
}

/// The configured tokens and the live tickets.
#[derive(Debug)]
pub struct Auth {
    tokens: Vec<(ring::digest::Digest, Principal)>,
    tickets: Mutex<HashMap<String, (Principal, Instant)>>,
    ticket_ttl: Duration,
    /// Outstanding tickets in all: room for every token's own cap, and at least
    /// [`MIN_TICKETS`].
    max_tickets: usize,
}

/// Tickets one token may have outstanding at once; more means its client is looping. Per
/// token, so one looping desktop (or a leaked agent token) cannot lock the others out.
pub(crate) const MAX_TICKETS_PER_TOKEN: usize = 1_000;
/// The floor of the global cap, which is also `MAX_TICKETS_PER_TOKEN` × the token count.
const MIN_TICKETS: usize = 10_000;

impl Auth {
    pub fn new(tokens: &[Token], ticket_ttl: Duration) -> Result<Self, String> {
        let mut seen = HashSet::new();
        let mut list = Vec::with_capacity(tokens.len());
        for t in tokens {
            if t.secret.expose().len() < 16 {
                return Err(format!("token {:?} is shorter than 16 characters", t.name));
            }
            if !seen.insert(t.secret.expose().to_owned()) {
                return Err(format!("token {:?} has the same value as another", t.name));
            }
            list.push((
                digest(t.secret.expose()),
                Principal {
                    name: t.name.as_str().into(),
                    scope: t.scope.clone(),
                },
            ));
        }
        Ok(Self {
            max_tickets: MIN_TICKETS.max(list.len().saturating_mul(MAX_TICKETS_PER_TOKEN)),
            tokens: list,
            tickets: Mutex::new(HashMap::new()),
            ticket_ttl,
        })
    }

    pub fn ticket_ttl(&self) -> Duration {
        self.ticket_ttl
    }

    /// The principal of an `Authorization: Bearer` header: 401 when missing or unknown.
    pub fn bearer(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
        self.check(token)
            .ok_or_else(|| ApiError::unauthorized("unknown token"))
    }

    /// Bearer token, else (on stream endpoints only) a ticket.
    pub fn bearer_or_ticket(
        &self,
        headers: &HeaderMap,
        ticket: Option<&str>,
    ) -> Result<Principal, ApiError> {
        match (
            headers.contains_key(axum::http::header::AUTHORIZATION),
            ticket,
        ) {
            (false, Some(t)) => self
                .redeem(t)
                .ok_or_else(|| ApiError::unauthorized("unknown or expired ticket")),
            _ => self.bearer(headers),
        }
    }

    pub fn admin(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let p = self.bearer(headers)?;
        if p.is_admin() {
            Ok(p)
        } else {
            Err(ApiError::forbidden(format!(
                "token {:?} is not an admin token",
                p.name
            )))
        }
    }

    fn check(&self, presented: &str) -> Option<Principal> {
        let d = digest(presented);
        // Compare against every token so the time taken does not say which one matched.
        let mut found = None;
        for (want, p) in &self.tokens {
            if ct_eq(want.as_ref(), d.as_ref()) {
                found = Some(p.clone());
            }
        }
        found
    }

    /// A single-use ticket for `principal`, valid for the ticket TTL.
    pub fn issue(&self, principal: Principal) -> Result<String, ApiError> {
        let bytes: [u8; 24] = rand::rng().random();
        let ticket = hex(&bytes);
        let now = Instant::now();
        let mut map = self.tickets.lock().map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "ticket store poisoned",
            )
        })?;
        map.retain(|_, (_, exp)| *exp > now);
        let mine = map
            .values()
            .filter(|(p, _)| p.name == principal.name)
            .count();
        if mine >= MAX_TICKETS_PER_TOKEN || map.len() >= self.max_tickets {
            metrics::counter!("tollgate_api_tickets_refused_total").increment(1);
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too_many_tickets",
                if mine >= MAX_TICKETS_PER_TOKEN {
                    "too many outstanding tickets for this token; retry shortly"
                } else {
                    "too many outstanding tickets; retry shortly"
                },
            ));
        }
        map.insert(ticket.clone(), (principal, now + self.ticket_ttl));
        Ok(ticket)
    }

    fn redeem(&self, ticket: &str) -> Option<Principal> {
        let mut map = self.tickets.lock().ok()?;
        let (p, exp) = map.remove(ticket)?;
        (exp > Instant::now()).then_some(p)
    }
}

fn digest(s: &str) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            &[
                Token {
                    name: "agent".into(),
                    secret: Secret::new("agent-token-0123456789"),
                    scope: Scope::Agent {
                        queues: vec!["support".into()],
                    },
                },
                Token {
                    name: "admin".into(),
                    secret: Secret::new("admin-token-0123456789"),
                    scope: Scope::Admin,
                },
            ],
            Duration::from_secs(30),
        )
        .unwrap()
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn bearer_scopes_and_tickets() {
        let a = auth();
        assert_eq!(
            a.bearer(&HeaderMap::new()).unwrap_err().status,
            axum::http::StatusCode::UNAUTHORIZED
        );
        assert!(a.bearer(&headers("Bearer nope-nope-nope-nope")).is_err());
        assert!(a.bearer(&headers("Basic agent-token-0123456789")).is_err());
        let agent = a.bearer(&headers("Bearer agent-token-0123456789")).unwrap();
        assert!(agent.may_read("support") && !agent.may_read("billing"));
        assert_eq!(
            agent.filter(&["billing".into()]).unwrap_err().status,
            axum::http::StatusCode::FORBIDDEN
        );
        assert_eq!(
            a.admin(&headers("bearer agent-token-0123456789"))
                .unwrap_err()
                .status,
            axum::http::StatusCode::FORBIDDEN
        );
        assert!(a.admin(&headers("Bearer admin-token-0123456789")).is_ok());
        let t = a.issue(agent).unwrap();
        assert!(a.bearer_or_ticket(&HeaderMap::new(), Some(&t)).is_ok());
        // Single use.
        assert!(a.bearer_or_ticket(&HeaderMap::new(), Some(&t)).is_err());
    }

    #[test]
    fn short_or_duplicate_tokens_are_refused_and_never_shown() {
        let t = |v: &str| Token {
            name: "x".into(),
            secret: Secret::new(v),
            scope: Scope::Admin,
        };
        assert!(Auth::new(&[t("short")], Duration::from_secs(1)).is_err());
        let long = "0123456789abcdef-long";
        assert!(Auth::new(&[t(long), t(long)], Duration::from_secs(1)).is_err());
        assert!(!format!("{:?}", t(long)).contains(long));
    }
}
