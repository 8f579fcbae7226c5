//! `[log]`: the log's format and level, and the decision log.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// "json" (default) or "text".
    #[serde(default)]
    pub format: Option<String>,
    /// An EnvFilter directive; RUST_LOG overrides it. It never hides the decision log.
    #[serde(default)]
    pub level: Option<String>,
    /// The decision log (one line per INVITE answered, target `tollgate::decision`); default on.
    #[serde(default)]
    pub decisions: Option<bool>,
}
