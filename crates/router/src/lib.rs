//! Tollgate routing: per-DNIS rule sets and the pure `route(&facts, &rules, now) -> Decision`,
//! with an explain trace. No async, no I/O, no clock: files arrive as text, time as an argument.

mod eval;
mod model;
mod parse;
mod policy;

use std::collections::HashMap;

pub use eval::{evaluate, explain, Explained, Step};
pub use model::{Action, Cond, Hours, Matcher, QueueSpec, Rule, RuleSet, Rules};
pub use parse::{
    from_table, parse, toml_key, RuleError, Settings, Source, DEFAULT_FILE, LAST, QUEUES_FILE,
};
pub use policy::{decide, route, DecidedBy, Routed};

/// The main config's simple routing table, for deployments without a rules directory.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Host of the ACD the 302 points to.
    pub acd_host: String,
    /// DNIS (E.164 digits or short code) → queue.
    pub dnis: HashMap<String, String>,
    pub default_queue: String,
    /// Queue for emergency traffic; `None` routes it by the rules (never to a rejection).
    pub emergency_queue: Option<String>,
    /// Caller calling code → suffix appended to the queue name (49 → "-de").
    pub country_suffix: HashMap<u16, String>,
}
