//! The operations behind the admin endpoints, as a trait the server implements: this crate
//! knows nothing of the risk, lookup or router crates.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

pub use tollgate_core::BoxFuture;

/// What an admin operation returns: JSON for the client, or an error with its status.
pub type AdminResult = Result<Value, AdminError>;

/// Why an admin operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The engine was built or configured without this feature.
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A backend (Redis, the CRM) did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// The request was valid but the operation failed (for example, rules with errors).
    #[error("{message}")]
    Failed {
        message: String,
        details: Vec<String>,
    },
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotImplemented(m) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", m)
            }
            AdminError::BadRequest(m) => ApiError::bad_request(m),
            AdminError::NotFound(m) => ApiError::not_found(m),
            AdminError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            AdminError::Failed { message, details } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "failed",
                if details.is_empty() {
                    message
                } else {
                    format!("{message}: {}", details.join("; "))
                },
            ),
        }
    }
}

/// `POST /v1/admin/lists/{list}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListAdd {
    /// A number (E.164 with `+`) or a prefix ending in `*`.
    pub pattern: String,
    #[serde(default)]
    pub reason: String,
    /// Who added it; defaults to the admin token's name.
    #[serde(default)]
    pub who: Option<String>,
    /// Unix seconds after which the entry no longer counts.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// `POST /v1/admin/rules/promote` and `/rollback`: the body, and which.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RulesSwap {
    /// Set by the route, not the body.
    #[serde(skip)]
    pub rollback: bool,
    /// Why (kept in the history).
    #[serde(default)]
    pub reason: String,
    /// Who; defaults to the admin token's name.
    #[serde(default)]
    pub who: Option<String>,
}

/// `POST /v1/admin/shadow`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShadowLoad {
    /// A rules directory on the node.
    pub dir: String,
}

/// `POST /v1/admin/explain`: a call described by its numbers and CRM/risk facts.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Caller and dialed number; ignored (and may be empty) when `sip` is given.
    #[serde(default)]
    pub ani: String,
    #[serde(default)]
    pub dnis: String,
    /// A whole INVITE as captured: its headers decide, as a live call's would.
    #[serde(default)]
    pub sip: Option<String>,
    #[serde(default)]
    pub trunk: Option<String>,
    /// The source address the call comes from: picks the trunk as the SIP server does.
    #[serde(default)]
    pub source: Option<String>,
    /// The call came over TLS with a verified client certificate saying this (`dns:NAME`,
    /// `uri:URI`, `sha256:HEX`): picks and trusts the trunk as the SIP server does.
    #[serde(default)]
    pub tls_peer: Option<String>,
    /// Cache a CRM answer fetched for this explain, as a live call would (default: no).
    #[serde(default)]
    pub fill_cache: bool,
    /// RFC 3339; default now.
    #[serde(default)]
    pub at: Option<String>,
    /// "low", "elevated", "high" or "blocked".
    #[serde(default)]
    pub risk: Option<String>,
    /// Lists the caller is on ("block", "gray", "allow"); absent: the list store decides.
    #[serde(default)]
    pub lists: Option<Vec<String>>,
    /// "A", "B" or "C".
    #[serde(default)]
    pub attestation: Option<String>,
    #[serde(default)]
    pub profile: Option<ExplainProfile>,
}

/// The CRM record an explained call has.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExplainProfile {
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub open_cases: Option<u32>,
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// The engine operations the admin endpoints expose. Object-safe; every method has a default
/// that answers 501, so an engine implements what it has.
pub trait Admin: Send + Sync + std::fmt::Debug + 'static {
    /// Every list entry (`list` = None) or those of one list.
    fn lists_show(&self, list: Option<String>) -> BoxFuture<'_, AdminResult> {
        let _ = list;
        not_implemented("list management")
    }

    fn lists_add(&self, list: String, entry: ListAdd) -> BoxFuture<'_, AdminResult> {
        let _ = (list, entry);
        not_implemented("list management")
    }

    fn lists_remove(&self, list: String, pattern: String) -> BoxFuture<'_, AdminResult> {
        let _ = (list, pattern);
        not_implemented("list management")
    }

    /// Rebuilds the routing rules; the old rules stay live on error.
    fn reload_rules(&self) -> BoxFuture<'_, AdminResult> {
        not_implemented("rules reload")
    }

    /// The shadow rules' running summary (`GET /v1/admin/shadow`).
    fn shadow(&self) -> AdminResult {
        Err(AdminError::NotImplemented("shadow rules".into()))
    }

    /// Loads a candidate rules directory (on the node) as the shadow; on error the previous
    /// shadow (or none) stays.
    fn shadow_load(&self, dir: String) -> BoxFuture<'_, AdminResult> {
        let _ = dir;
        not_implemented("shadow rules")
    }

    /// Stops evaluating the shadow.
    fn shadow_clear(&self) -> BoxFuture<'_, AdminResult> {
        not_implemented("shadow rules")
    }

    /// Makes the shadow live (`promote`) or brings back the previous version (`rollback`),
    /// atomically, recording who and why.
    fn rules_swap(&self, swap: RulesSwap) -> BoxFuture<'_, AdminResult> {
        let _ = swap;
        not_implemented("promote and rollback")
    }

    /// One version that has been live, with its rule files (a `diff` baseline).
    fn rules_version(&self, version: String) -> AdminResult {
        let _ = version;
        Err(AdminError::NotImplemented("rules history".into()))
    }

    /// Every rules version that has been live (bounded).
    fn rules_history(&self) -> AdminResult {
        Err(AdminError::NotImplemented("rules history".into()))
    }

    fn explain(&self, call: ExplainRequest) -> BoxFuture<'_, AdminResult> {
        let _ = call;
        not_implemented("explain")
    }

    /// Drops cached CRM records: one number, or all of them.
    fn crm_invalidate(&self, number: Option<String>) -> BoxFuture<'_, AdminResult> {
        let _ = number;
        not_implemented("CRM cache invalidation")
    }

    /// The running configuration with every secret replaced by `"***"`.
    fn config(&self) -> AdminResult {
        Err(AdminError::NotImplemented("config view".into()))
    }

    /// Whether the engine can take calls (for `/readyz`); `Err` names what is missing.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

fn not_implemented(what: &str) -> BoxFuture<'static, AdminResult> {
    let e = AdminError::NotImplemented(format!("{what} is not available in this engine"));
    Box::pin(std::future::ready(Err(e)))
}

/// An engine without admin operations (every endpoint answers 501).
#[derive(Debug, Default)]
pub struct NoAdmin;

impl Admin for NoAdmin {}
