//! Errors, classified so a caller can tell "the store is down" (apply the fail-open/closed
//! policy) from "the input or the configuration is wrong" (report it, never retry).

use std::path::PathBuf;
use std::time::Duration;

/// What a caller should do about a [`RiskError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The store could not answer in time (down, timed out, circuit open): transient. The
    /// per-call path applies the policy's fail-open or fail-closed choice.
    Unavailable,
    /// Bad configuration or bad input (a list entry, a CSV line): fix it, retrying won't help.
    Invalid,
    /// The store answered something this code does not understand (a corrupt list file, an
    /// unexpected Redis reply): an operator has to look.
    Corrupt,
}

/// One risk-crate failure.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// The configuration failed [`crate::RiskConfig::validate`]: every problem, by key.
    #[error("invalid risk configuration: {}", join(.0))]
    Config(Vec<tollgate_core::Problem>),
    /// `from_config` needs a Tokio runtime for Redis connections and list refresh.
    #[error("the risk engine must be built inside a Tokio runtime")]
    NoRuntime,
    /// Redis did not answer within the call's deadline.
    #[error("{store} timed out after {after:?}")]
    Timeout {
        store: &'static str,
        after: Duration,
    },
    /// Redis refused, dropped or failed the request (the URL is never part of the message).
    #[error("{store} unavailable: {message}")]
    Unavailable {
        store: &'static str,
        message: String,
    },
    /// Recent failures opened the circuit: calls skip Redis until it closes.
    #[error("{store} skipped: circuit open after recent failures")]
    CircuitOpen { store: &'static str },
    /// Redis answered with something the script or the list format does not produce.
    #[error("{store} replied unexpectedly: {message}")]
    Protocol {
        store: &'static str,
        message: String,
    },
    /// Reading or writing the list file failed.
    #[error("list file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The list file exists but cannot be parsed.
    #[error("list file {}: {message}", path.display())]
    CorruptFile { path: PathBuf, message: String },
    /// A list entry (number, prefix, list name, text) is not acceptable.
    #[error("invalid list entry: {0}")]
    InvalidEntry(String),
    /// A CSV import had bad lines (line number, message); nothing was imported.
    #[error("import rejected, nothing imported: {}", join_lines(.0))]
    Import(Vec<(usize, String)>),
}

impl RiskError {
    /// How to react to this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            RiskError::Timeout { .. }
            | RiskError::Unavailable { .. }
            | RiskError::CircuitOpen { .. }
            | RiskError::Io { .. } => ErrorClass::Unavailable,
            RiskError::Config(_)
            | RiskError::NoRuntime
            | RiskError::InvalidEntry(_)
            | RiskError::Import(_) => ErrorClass::Invalid,
            RiskError::Protocol { .. } | RiskError::CorruptFile { .. } => ErrorClass::Corrupt,
        }
    }

    /// Whether the policy's fail-open/fail-closed choice applies (the store is unreachable).
    pub fn is_unavailable(&self) -> bool {
        self.class() == ErrorClass::Unavailable
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RiskError::Timeout { .. } => "timeout",
            RiskError::Unavailable { .. } => "unavailable",
            RiskError::CircuitOpen { .. } => "circuit-open",
            RiskError::Protocol { .. } => "protocol",
            RiskError::Io { .. } => "io",
            RiskError::CorruptFile { .. } => "corrupt-file",
            RiskError::Config(_) | RiskError::NoRuntime => "config",
            RiskError::InvalidEntry(_) | RiskError::Import(_) => "invalid",
        }
    }

    /// Maps a redis-crate error; its Display never includes the connection URL.
    pub(crate) fn from_redis(store: &'static str, e: &redis::RedisError) -> Self {
        let transient = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_cluster_error()
            || matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading
                        | redis::ServerErrorKind::MasterDown
                        | redis::ServerErrorKind::ReadOnly
                )
            );
        if transient {
            RiskError::Unavailable {
                store,
                message: e.to_string(),
            }
        } else {
            RiskError::Protocol {
                store,
                message: e.to_string(),
            }
        }
    }
}

fn join(problems: &[tollgate_core::Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn join_lines(problems: &[(usize, String)]) -> String {
    problems
        .iter()
        .map(|(l, m)| format!("line {l}: {m}"))
        .collect::<Vec<_>>()
        .join("; ")
}
