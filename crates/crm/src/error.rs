//! Errors, classified so a caller can fail open: every kind maps onto a [`LookupStatus`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tollgate_core::{LookupStatus, Problem};

/// Why a directory could not answer, or could not be built.
///
/// `Clone` because the cache shares one error among every call waiting on the same request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The CRM request exceeded its own timeout (`http.timeout_ms` or `http.connect_timeout_ms`).
    #[error("CRM request timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed (refused, reset, TLS, DNS).
    #[error("CRM transport error: {0}")]
    Transport(String),
    /// The CRM answered with a status that is neither success nor 404.
    #[error("CRM answered HTTP {0}")]
    Status(u16),
    /// The CRM's answer is not JSON, too large, or does not fit the field mapping.
    #[error("CRM response not usable: {0}")]
    Decode(String),
    /// The circuit breaker is open: the CRM was not asked.
    #[error("CRM circuit breaker is open")]
    BreakerOpen,
    /// The request-rate cap was reached: the CRM was not asked.
    #[error("CRM request rate limit reached")]
    RateLimited,
    /// The background request task ended without an answer (runtime shutting down).
    #[error("CRM lookup task ended: {0}")]
    Internal(String),
    /// The configuration is invalid: every problem, by key.
    #[error("invalid CRM lookup configuration: {}", ConfigProblems(.0))]
    Config(Vec<Problem>),
    /// A directory file could not be read or has bad rows.
    #[error("{0}")]
    File(FileError),
}

/// The broad class of a [`LookupError`], for metrics labels and fail-open decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Timeout,
    Transport,
    Status,
    Decode,
    BreakerOpen,
    RateLimited,
    Internal,
    Config,
    File,
}

impl ErrorKind {
    /// The `result` label used in `tollgate_crm_requests_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::Status => "status",
            ErrorKind::Decode => "decode",
            ErrorKind::BreakerOpen => "breaker-open",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Internal => "internal",
            ErrorKind::Config => "config",
            ErrorKind::File => "file",
        }
    }
}

impl LookupError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LookupError::Timeout(_) => ErrorKind::Timeout,
            LookupError::Transport(_) => ErrorKind::Transport,
            LookupError::Status(_) => ErrorKind::Status,
            LookupError::Decode(_) => ErrorKind::Decode,
            LookupError::BreakerOpen => ErrorKind::BreakerOpen,
            LookupError::RateLimited => ErrorKind::RateLimited,
            LookupError::Internal(_) => ErrorKind::Internal,
            LookupError::Config(_) => ErrorKind::Config,
            LookupError::File(_) => ErrorKind::File,
        }
    }

    /// What the call's decision records when this error is all the lookup produced.
    pub fn status(&self) -> LookupStatus {
        match self {
            LookupError::Timeout(_) => LookupStatus::Timeout,
            LookupError::BreakerOpen => LookupStatus::BreakerOpen,
            LookupError::RateLimited => LookupStatus::RateLimited,
            _ => LookupStatus::Error,
        }
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        LookupError::Config(vec![Problem::new(key, message)])
    }
}

struct ConfigProblems<'a>(&'a [Problem]);

impl fmt::Display for ConfigProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// One problem in a directory file, located as precisely as the format allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProblem {
    /// 1-based line of the record (or of the syntax error).
    pub line: Option<u64>,
    /// 1-based column: the field's position in a CSV record, the character in JSON.
    pub column: Option<u64>,
    /// The field's name (CSV header or JSON key).
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            if let Some(column) = self.column {
                write!(f, ", column {column}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A directory file that could not be loaded, with every problem found (up to a cap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    pub problems: Vec<FileProblem>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "directory file {}: ", self.path.display())?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileError {}
