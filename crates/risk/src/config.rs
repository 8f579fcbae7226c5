//! The `[risk]` configuration section: strict (unknown keys are errors), every key defaulted,
//! and [`RiskConfig::validate`] reports every problem at once as (key, message).
//!
//! ```toml
//! [risk]
//! store = "memory"                # or "redis"
//! fail_open = true                # store unreachable: route without velocity (false: reject)
//! list_file = "risk-lists.json"   # embedded list store, relative to the config file's folder
//! list_refresh_ms = 1000          # how often each node checks the lists' version
//! identity_deadline_ms = 100      # the identity hook's own deadline
//! # gray_queue = "verify"         # where gray-listed and high-risk calls go (RiskVerdict)
//! history_ttl_s = 86400           # repeat-caller memory: last queue per ANI (0: off)
//! untrusted = "separate"          # ANIs not believed (untrusted source, From, screen=no) count
//!                                 # velocity and history in their own keys; "ignore": not at all
//!
//! [risk.redis]
//! # url = "redis://127.0.0.1:6379/0"   # or leave unset and export the variable below
//! url_env = "TOLLGATE_REDIS_URL"
//! # cluster = ["10.0.0.1:6379", "10.0.0.2:6379"]  # a Redis Cluster instead: seed nodes
//! # cluster_env = "TOLLGATE_REDIS_CLUSTER"       # or the seeds, comma-separated, from the env
//! # tls_ca_file = "redis-ca.pem"   # rediss:// with a private CA (else the system's roots)
//! key_prefix = "tg"
//! response_timeout_ms = 100
//! connection_timeout_ms = 100
//! retries = 1
//! deadline_ms = 120               # whole velocity round trip; below the pipeline's enrich deadline
//! breaker_ms = 1000               # after a failure, skip Redis this long (calls fail open/closed at once)
//! admin_timeout_ms = 5000         # list operations from the CLI
//!
//! [risk.memory]
//! max_keys = 1000000              # ANIs + NPA-NXX tracked; least recently seen evicted
//! max_events = 4000000            # calls remembered in all windows together
//! max_history = 1000000           # callers whose last queue is remembered (history_ttl_s)
//! max_queue_names = 4096          # distinct queue names interned; least recently stored evicted
//! sweep_ms = 10000                # background sweep of expired entries (0: only as calls come)
//!
//! [risk.velocity]
//! windows = [60, 3600, 86400]     # seconds
//! ani = [5, 20, 50]               # more calls than this in the window raises a signal (0: off)
//! ani_dnis = [3, 10, 30]
//! npa_nxx = [100, 1000, 10000]
//!
//! [risk.levels]
//! elevated = 20
//! high = 50
//! blocked = 100                   # a score this high blocks; remove the key to block by list only
//!
//! [risk.block]
//! code = 603                      # 603 Decline, 607 Unwanted, 608 Rejected
//! # complaint_url = "https://example.com/complaints"   # 608 only: Call-Info purpose=jwscard
//!
//! [risk.fail_closed]
//! code = 503
//! retry_after_s = 30              # Retry-After on the fail-closed answer (0: no header)
//!
//! [risk.trunk."carrier-a"]        # per [[trunk]] name
//! sources_disagree = 0            # the sources-disagree weight on this trunk ([risk.weights] otherwise)
//! sources_disagree_from = false   # false: only PAI/RPID naming different numbers count, not From
//!
//! [[risk.policy]]                 # first policy whose DNIS matches wins; else the values above
//! name = "fraud-line"
//! dnis = ["18005550100", "1888555*"]
//! fail_open = false
//! gray_queue = "verify-fraud"
//! velocity = { ani = [2, 5, 10] }
//! ```
//!
//! `[risk.weights]` lists every signal's weight; see [`Weights`] for names and defaults.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;
use tollgate_core::Problem;

use crate::lists::Pattern;

/// Where velocity counters (and lists) live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One node, nothing else to run: counters in process memory, lists in `list_file`.
    #[default]
    Memory,
    /// Shared by every node: counters and lists in Redis (Cluster-safe keys).
    Redis,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis => "redis",
        }
    }
}

/// What velocity and caller history do with an ANI the engine does not believe (an untrusted
/// source's From, a trusted trunk's From or `screen=no` number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UntrustedMode {
    /// Count it, and remember its routes, in keys of its own (`u:` untrusted, `nv:` unverified),
    /// never in a verified number's: a flood from such a source still scores as a flood.
    #[default]
    Separate,
    /// Neither count nor remember it: the call is scored without velocity or history (a
    /// zero-weight `velocity-not-counted` signal says so).
    Ignore,
}

impl UntrustedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UntrustedMode::Separate => "separate",
            UntrustedMode::Ignore => "ignore",
        }
    }
}

/// `[risk.trunk."<name>"]`: scoring for one trunk's calls (the `[[trunk]]` name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrunkRiskConfig {
    /// The `sources-disagree` weight for this trunk; unset: `[risk.weights] sources_disagree`.
    pub sources_disagree: Option<i32>,
    /// Whether From naming another number than the identity headers counts as disagreeing
    /// (unset: true). False: only identity headers (PAI, RPID) naming different numbers count,
    /// for carriers whose From carries a company's main number and PAI the real line.
    pub sources_disagree_from: Option<bool>,
}

/// A Redis URL may carry a password: the one secret type, `Debug` shows `***`.
pub use tollgate_core::Secret;

/// `[risk]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    pub store: StoreKind,
    /// Store unreachable: true routes without velocity (degraded), false rejects with
    /// `[risk.fail_closed]`. Policies may override it.
    pub fail_open: bool,
    /// The list file for the memory store (relative paths are under the config's folder).
    pub list_file: PathBuf,
    /// How often each node checks whether the lists changed.
    pub list_refresh_ms: u64,
    /// The identity hook's deadline; past it the call is scored without attestation.
    pub identity_deadline_ms: u64,
    /// Verification queue for gray-listed and high-risk calls (returned in `RiskVerdict`).
    pub gray_queue: Option<String>,
    /// How long a caller's last routed queue is remembered for repeat-caller rules (0: off).
    pub history_ttl_s: u64,
    /// Velocity and history for ANIs not believed: their own keys, or not counted.
    pub untrusted: UntrustedMode,
    pub redis: RedisConfig,
    pub memory: MemoryConfig,
    pub velocity: VelocityConfig,
    pub weights: Weights,
    pub levels: LevelConfig,
    pub block: BlockConfig,
    pub fail_closed: ResponseConfig,
    pub policy: Vec<PolicyConfig>,
    /// Per trunk scoring, by `[[trunk]]` name.
    pub trunk: BTreeMap<String, TrunkRiskConfig>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            fail_open: true,
            list_file: PathBuf::from("risk-lists.json"),
            list_refresh_ms: 1000,
            identity_deadline_ms: 100,
            gray_queue: None,
            history_ttl_s: 86_400,
            untrusted: UntrustedMode::Separate,
            redis: RedisConfig::default(),
            memory: MemoryConfig::default(),
            velocity: VelocityConfig::default(),
            weights: Weights::default(),
            levels: LevelConfig::default(),
            block: BlockConfig::default(),
            fail_closed: ResponseConfig::default(),
            policy: Vec::new(),
            trunk: BTreeMap::new(),
        }
    }
}

/// `[risk.redis]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db`; never logged. Unset: read `url_env`.
    pub url: Option<Secret>,
    /// The environment variable holding the URL when `url` is unset.
    pub url_env: Option<String>,
    /// A Redis Cluster instead of one Redis: seed nodes as `redis://[user:password@]host:port`
    /// (or `host:port`); the client learns the rest of the cluster from them. Never logged.
    /// Exclusive with `url`; `url_env` is then not read.
    pub cluster: Vec<Secret>,
    /// The environment variable holding the seed nodes, comma-separated, when `cluster` is
    /// empty and the URLs carry a password (unset: not read).
    pub cluster_env: Option<String>,
    /// With `rediss://` URLs: a PEM file of the CA(s) to trust instead of the system's roots
    /// (relative to the config file's folder).
    pub tls_ca_file: Option<PathBuf>,
    /// First part of every key (`tg:{...}:a:...`).
    pub key_prefix: String,
    pub response_timeout_ms: u64,
    pub connection_timeout_ms: u64,
    /// Reconnection attempts per failure (the redis crate never retries a command itself).
    pub retries: usize,
    /// The whole velocity round trip, retries included.
    pub deadline_ms: u64,
    /// After a failure, calls skip Redis for this long instead of each waiting out the deadline.
    pub breaker_ms: u64,
    /// Deadline for list operations (CLI, API, refresh).
    pub admin_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            url_env: Some("TOLLGATE_REDIS_URL".into()),
            cluster: Vec::new(),
            cluster_env: None,
            tls_ca_file: None,
            key_prefix: "tg".into(),
            response_timeout_ms: 100,
            connection_timeout_ms: 100,
            retries: 1,
            deadline_ms: 120,
            breaker_ms: 1000,
            admin_timeout_ms: 5000,
        }
    }
}

/// A Cluster seed node as a URL: `redis://…` or `rediss://…` as given, `host:port` with
/// `redis://` put in front; `None` when it is neither (no host, or a port that is not a port).
pub fn cluster_node_url(node: &str) -> Option<String> {
    let node = node.trim();
    let url = if node.starts_with("redis://") || node.starts_with("rediss://") {
        node.to_owned()
    } else if node.contains("://") {
        return None;
    } else {
        format!("redis://{node}")
    };
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)).then_some(url)
}

/// `[risk.memory]`: the embedded store's bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Keys tracked (one per ANI, one per NPA-NXX); the least recently seen is evicted.
    pub max_keys: usize,
    /// Calls remembered across all keys; past it the least recently seen keys are evicted.
    pub max_events: usize,
    /// Callers whose last routed queue is remembered (per trust space); past it the callers
    /// not called back for longest are forgotten.
    pub max_history: usize,
    /// Distinct queue names the caller history interns; past it the least recently stored
    /// name is evicted (its callers read as having no history).
    pub max_queue_names: usize,
    /// How often a background task frees the entries whose windows (and history TTL) have
    /// passed and gives their memory back; 0: only as calls arrive (two per call).
    pub sweep_ms: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_keys: 1_000_000,
            max_events: 4_000_000,
            max_history: 1_000_000,
            max_queue_names: 4096,
            sweep_ms: 10_000,
        }
    }
}

/// `[risk.velocity]`: windows and, per window, the most calls that raise no signal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelocityConfig {
    /// Sliding windows in seconds, increasing.
    pub windows: Vec<u32>,
    /// Per ANI, one threshold per window (0 turns that window off).
    pub ani: Vec<u32>,
    /// Per ANI and dialed number.
    pub ani_dnis: Vec<u32>,
    /// Per NANP area code + exchange of the ANI.
    pub npa_nxx: Vec<u32>,
}

impl Default for VelocityConfig {
    fn default() -> Self {
        Self {
            windows: vec![60, 3600, 86_400],
            ani: vec![5, 20, 50],
            ani_dnis: vec![3, 10, 30],
            npa_nxx: vec![100, 1000, 10_000],
        }
    }
}

/// A policy's velocity thresholds; unset dimensions keep the defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdOverride {
    pub ani: Option<Vec<u32>>,
    pub ani_dnis: Option<Vec<u32>>,
    pub npa_nxx: Option<Vec<u32>>,
}

/// `[risk.weights]`: points each signal adds to the score (negative lowers it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Identity verified with attestation A (full: the carrier knows the caller owns the number).
    pub attestation_a: i32,
    /// Attestation B (partial: the carrier knows the customer, not the number).
    pub attestation_b: i32,
    /// Attestation C (gateway: the carrier only saw the call enter its network).
    pub attestation_c: i32,
    /// An Identity header (or the upstream verstat) that failed verification.
    pub identity_failed: i32,
    /// No Identity header and no verstat.
    pub identity_absent: i32,
    /// The ANI is not a valid number (libphonenumber), or not a number at all.
    pub ani_invalid: i32,
    /// A toll-free number as the caller: never a real origin.
    pub ani_toll_free: i32,
    /// A premium-rate number as the caller.
    pub ani_premium: i32,
    /// The trunk's CLI rules judged the number invalid for another reason (a deny rule).
    pub cli_invalid: i32,
    /// The ANI is anonymous, restricted or unavailable.
    pub ani_withheld: i32,
    /// The identity headers name different numbers.
    pub sources_disagree: i32,
    /// The call came from a source not configured as a trusted trunk.
    pub untrusted_trunk: i32,
    /// A trusted trunk, but the ANI came from From or an unscreened header.
    pub ani_unverified: i32,
    /// Per velocity window over its ANI threshold.
    pub velocity_ani: i32,
    /// Per velocity window over its ANI+DNIS threshold.
    pub velocity_ani_dnis: i32,
    /// Per velocity window over its NPA-NXX threshold.
    pub velocity_npa_nxx: i32,
    /// Gray list: the level is at least elevated and the call goes to verification.
    pub gray_list: i32,
    /// Block list: the level is blocked whatever the score (unless allow-listed).
    pub block_list: i32,
    /// Allow list: never blocked.
    pub allow_list: i32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            attestation_a: -20,
            attestation_b: 5,
            attestation_c: 15,
            identity_failed: 40,
            identity_absent: 10,
            ani_invalid: 30,
            ani_toll_free: 40,
            ani_premium: 40,
            cli_invalid: 25,
            ani_withheld: 15,
            sources_disagree: 20,
            untrusted_trunk: 10,
            ani_unverified: 5,
            velocity_ani: 25,
            velocity_ani_dnis: 25,
            velocity_npa_nxx: 15,
            gray_list: 30,
            block_list: 100,
            allow_list: -50,
        }
    }
}

/// `[risk.levels]`: the score at which each level starts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LevelConfig {
    pub elevated: i32,
    pub high: i32,
    /// `None`: only the block list blocks.
    pub blocked: Option<i32>,
}

impl Default for LevelConfig {
    fn default() -> Self {
        Self {
            elevated: 20,
            high: 50,
            blocked: Some(100),
        }
    }
}

/// `[risk.block]`: the answer to a blocked call.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    /// 603 Decline, 607 Unwanted (RFC 8197) or 608 Rejected (RFC 8688).
    pub code: u16,
    /// Reason phrase; default the code's standard phrase.
    pub reason: Option<String>,
    /// With 608: sent as `Call-Info: <URL>;purpose=jwscard` so the caller can complain.
    pub complaint_url: Option<String>,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            code: 603,
            reason: None,
            complaint_url: None,
        }
    }
}

/// `[risk.fail_closed]`: the answer when the store is unreachable and the policy fails closed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    pub code: u16,
    pub reason: Option<String>,
    /// Sent as `Retry-After: <seconds>` (RFC 3261 §20.33); 0: no header.
    pub retry_after_s: u32,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            code: 503,
            reason: None,
            retry_after_s: 30,
        }
    }
}

/// `[[risk.policy]]`: per dialed number overrides.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub name: String,
    /// Dialed numbers this policy covers: E.164 digits, or a prefix ending in `*`.
    pub dnis: Vec<String>,
    pub fail_open: Option<bool>,
    pub gray_queue: Option<String>,
    pub velocity: ThresholdOverride,
}

const MAX_WINDOWS: usize = 8;
const MAX_WINDOW_SECS: u32 = 7 * 86_400;

impl RiskConfig {
    /// Every problem in the section, by key; empty when the section is usable.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        let n = self.velocity.windows.len();
        if n == 0 || n > MAX_WINDOWS {
            p.add(
                "risk.velocity.windows",
                format!("between 1 and {MAX_WINDOWS} windows, got {n}"),
            );
        }
        if self
            .velocity
            .windows
            .iter()
            .any(|&w| w == 0 || w > MAX_WINDOW_SECS)
        {
            p.add(
                "risk.velocity.windows",
                format!("each window is 1..={MAX_WINDOW_SECS} seconds"),
            );
        }
        if self
            .velocity
            .windows
            .windows(2)
            .any(|w| w.first() >= w.get(1))
        {
            p.add("risk.velocity.windows", "windows must increase".into());
        }
        for (key, t) in [
            ("risk.velocity.ani", &self.velocity.ani),
            ("risk.velocity.ani_dnis", &self.velocity.ani_dnis),
            ("risk.velocity.npa_nxx", &self.velocity.npa_nxx),
        ] {
            check_thresholds(&mut p, key, t, n);
        }
        if self.list_file.as_os_str().is_empty() {
            p.add("risk.list_file", "empty path".into());
        }
        if !(100..=60_000).contains(&self.list_refresh_ms) {
            p.add("risk.list_refresh_ms", "between 100 and 60000".into());
        }
        if !(1..=10_000).contains(&self.identity_deadline_ms) {
            p.add("risk.identity_deadline_ms", "between 1 and 10000".into());
        }
        if let Some(q) = &self.gray_queue {
            check_queue(&mut p, "risk.gray_queue", q);
        }
        self.validate_redis(&mut p);
        if self.memory.max_keys == 0 {
            p.add("risk.memory.max_keys", "at least 1".into());
        }
        if self.memory.max_history == 0 {
            p.add(
                "risk.memory.max_history",
                "at least 1 (history_ttl_s = 0 turns history off)".into(),
            );
        }
        if self.memory.max_queue_names == 0 {
            p.add("risk.memory.max_queue_names", "at least 1".into());
        }
        if self.memory.max_events == 0 {
            p.add("risk.memory.max_events", "at least 1".into());
        }
        let l = &self.levels;
        if l.elevated >= l.high {
            p.add("risk.levels", "elevated must be below high".into());
        }
        if l.blocked.is_some_and(|b| b <= l.high) {
            p.add("risk.levels.blocked", "must be above high".into());
        }
        self.validate_responses(&mut p);
        let mut names = HashSet::new();
        for (i, pol) in self.policy.iter().enumerate() {
            let key = format!("risk.policy[{i}]");
            if pol.name.trim().is_empty() {
                p.add(&format!("{key}.name"), "required".into());
            } else if !names.insert(pol.name.as_str()) {
                p.add(
                    &format!("{key}.name"),
                    format!("duplicate policy {:?}", pol.name),
                );
            }
            if pol.dnis.is_empty() {
                p.add(
                    &format!("{key}.dnis"),
                    "at least one number or prefix".into(),
                );
            }
            for d in &pol.dnis {
                if let Err(e) = d.parse::<Pattern>() {
                    p.add(&format!("{key}.dnis"), e.to_string());
                }
            }
            if let Some(q) = &pol.gray_queue {
                check_queue(&mut p, &format!("{key}.gray_queue"), q);
            }
            let v = &pol.velocity;
            for (dim, t) in [
                ("ani", &v.ani),
                ("ani_dnis", &v.ani_dnis),
                ("npa_nxx", &v.npa_nxx),
            ] {
                if let Some(t) = t {
                    check_thresholds(&mut p, &format!("{key}.velocity.{dim}"), t, n);
                }
            }
        }
        p.0
    }

    fn validate_redis(&self, p: &mut Problems) {
        let r = &self.redis;
        let clustered = !r.cluster.is_empty() || r.cluster_env.is_some();
        if self.store == StoreKind::Redis && r.url.is_none() && r.url_env.is_none() && !clustered {
            p.add(
                "risk.redis.url",
                "store = \"redis\" needs url, url_env, cluster or cluster_env".into(),
            );
        }
        if clustered && r.url.is_some() {
            p.add(
                "risk.redis.cluster",
                "set either url (one Redis) or cluster (a Redis Cluster), not both".into(),
            );
        }
        if !r.cluster.is_empty() && r.cluster_env.is_some() {
            p.add(
                "risk.redis.cluster_env",
                "set either cluster or cluster_env, not both".into(),
            );
        }
        for (i, node) in r.cluster.iter().enumerate() {
            if cluster_node_url(node.expose()).is_none() {
                // Never echo the node: it may hold a password.
                p.add(
                    "risk.redis.cluster",
                    format!(
                        "node {}: expected redis://[user:password@]host:port or host:port",
                        i + 1
                    ),
                );
            }
        }
        if r.cluster_env
            .as_deref()
            .is_some_and(|v| v.trim().is_empty())
        {
            p.add("risk.redis.cluster_env", "empty variable name".into());
        }
        if let Some(url) = &r.url {
            let u = url.expose();
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                // Never echo the URL: it may hold a password.
                p.add(
                    "risk.redis.url",
                    "must start with redis:// or rediss://".into(),
                );
            }
        }
        if r.url_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
            p.add("risk.redis.url_env", "empty variable name".into());
        }
        if r.key_prefix.is_empty()
            || r.key_prefix
                .chars()
                .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
        {
            p.add(
                "risk.redis.key_prefix",
                "non-empty, without braces or spaces (braces are the Cluster hash tag)".into(),
            );
        }
        for (key, v, max) in [
            (
                "risk.redis.response_timeout_ms",
                r.response_timeout_ms,
                10_000,
            ),
            (
                "risk.redis.connection_timeout_ms",
                r.connection_timeout_ms,
                10_000,
            ),
            ("risk.redis.deadline_ms", r.deadline_ms, 10_000),
            ("risk.redis.admin_timeout_ms", r.admin_timeout_ms, 600_000),
        ] {
            if v == 0 || v > max {
                p.add(key, format!("between 1 and {max}"));
            }
        }
        if r.breaker_ms > 60_000 {
            p.add("risk.redis.breaker_ms", "at most 60000".into());
        }
        if r.retries > 5 {
            p.add(
                "risk.redis.retries",
                "at most 5 (each retry costs a connection timeout)".into(),
            );
        }
    }

    fn validate_responses(&self, p: &mut Problems) {
        let b = &self.block;
        if ![603, 607, 608].contains(&b.code) {
            p.add(
                "risk.block.code",
                format!("603, 607 or 608, got {}", b.code),
            );
        }
        if let Some(reason) = &b.reason {
            check_reason(p, "risk.block.reason", reason);
        }
        if let Some(url) = &b.complaint_url {
            if b.code != 608 {
                p.add(
                    "risk.block.complaint_url",
                    "only sent with code = 608 (RFC 8688)".into(),
                );
            }
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            // The URL goes inside <...> in a header line: no spaces, controls or angle brackets.
            let chars_ok = url
                .bytes()
                .all(|c| (0x21..=0x7e).contains(&c) && c != b'<' && c != b'>' && c != b'"');
            if !scheme_ok || !chars_ok {
                p.add(
                    "risk.block.complaint_url",
                    "an http(s) URL without spaces, quotes or angle brackets".into(),
                );
            }
        }
        let f = &self.fail_closed;
        if !(400..=699).contains(&f.code) {
            p.add(
                "risk.fail_closed.code",
                format!("a SIP rejection (400-699), got {}", f.code),
            );
        }
        if let Some(reason) = &f.reason {
            check_reason(p, "risk.fail_closed.reason", reason);
        }
        if f.retry_after_s > 86_400 {
            p.add(
                "risk.fail_closed.retry_after_s",
                "at most 86400 (0: no Retry-After)".into(),
            );
        }
        for name in self.trunk.keys() {
            if name.trim().is_empty() {
                p.add("risk.trunk", "a trunk name is required".into());
            }
        }
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, msg: String) {
        self.0.push(Problem::new(key, msg));
    }
}

fn check_thresholds(p: &mut Problems, key: &str, t: &[u32], windows: usize) {
    if t.len() != windows {
        p.add(
            key,
            format!(
                "one threshold per window: {windows} expected, got {}",
                t.len()
            ),
        );
    }
    if t.iter().any(|&v| v > 1_000_000) {
        p.add(key, "thresholds above 1000000 are not tracked".into());
    }
}

fn check_queue(p: &mut Problems, key: &str, q: &str) {
    if let Err(e) = tollgate_core::QueueName::new(q) {
        p.add(key, e.to_string());
    }
}

fn check_reason(p: &mut Problems, key: &str, r: &str) {
    if r.is_empty() || r.len() > 64 || r.chars().any(char::is_control) {
        p.add(key, "1-64 printable characters".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RiskConfig, toml::de::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Root {
            risk: RiskConfig,
        }
        toml::from_str::<Root>(s).map(|r| r.risk)
    }

    #[test]
    fn empty_section_is_the_documented_default() {
        let c = parse("[risk]\n").unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.store, StoreKind::Memory);
        assert_eq!(c.velocity.windows, vec![60, 3600, 86_400]);
        assert_eq!(c.redis.response_timeout_ms, 100);
        assert_eq!(c.block.code, 603);
    }

    /// The verification queue is checked by core's `QueueName`, the rule the router and the
    /// routing table use: `a!b` (a SIP user token) passes here as it does there.
    #[test]
    fn gray_queues_follow_the_one_queue_name_rule() {
        for (q, ok) in [
            ("a!b", true),
            ("verify-ivr", true),
            ("a b", false),
            ("a@b", false),
        ] {
            let c = parse(&format!("[risk]\ngray_queue = {q:?}\n")).unwrap();
            let problems = c.validate();
            assert_eq!(problems.is_empty(), ok, "{q}: {problems:?}");
            assert_eq!(tollgate_core::QueueName::is_valid(q), ok);
        }
    }

    #[test]
    fn a_cluster_is_its_seed_nodes_and_excludes_a_url() {
        let keys = |text: &str| -> Vec<String> {
            parse(&format!("[risk]\n{text}"))
                .unwrap()
                .validate()
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        let ok = "[risk.redis]\ncluster = [\"10.0.0.1:6379\", \"redis://u:pw@10.0.0.2:6380\"]\n";
        assert!(keys(&format!("store = \"redis\"\n{ok}")).is_empty());
        assert_eq!(
            keys("store = \"redis\"\n[risk.redis]\nurl = \"redis://a:1\"\ncluster = [\"b:2\"]\n"),
            ["risk.redis.cluster"]
        );
        for bad in ["b", "b:0", "b:99999", ":6379", "http://b:1", "b:port"] {
            assert_eq!(
                keys(&format!("[risk.redis]\ncluster = [\"{bad}\"]\n")),
                ["risk.redis.cluster"],
                "{bad}"
            );
        }
        assert_eq!(
            keys("[risk.redis]\ncluster = [\"b:1\"]\ncluster_env = \"X\"\n"),
            ["risk.redis.cluster_env"]
        );
        assert_eq!(
            cluster_node_url("10.0.0.1:6379").as_deref(),
            Some("redis://10.0.0.1:6379")
        );
        assert_eq!(
            cluster_node_url("rediss://u:p@h:1/0").as_deref(),
            Some("rediss://u:p@h:1/0")
        );
        assert!(
            parse("[risk]\n[risk.redis]\nclustr = []\n").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn module_doc_example_parses_and_validates() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&example).unwrap();
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.policy.len(), 1);
        assert_eq!(c.policy[0].velocity.ani, Some(vec![2, 5, 10]));
        assert_eq!(c.untrusted, UntrustedMode::Separate);
        assert_eq!(c.fail_closed.retry_after_s, 30);
        assert_eq!(
            c.trunk.get("carrier-a"),
            Some(&TrunkRiskConfig {
                sources_disagree: Some(0),
                sources_disagree_from: Some(false),
            })
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(parse("[risk]\nstor = \"redis\"\n").is_err());
        assert!(parse("[risk.weights]\nvelocity = 3\n").is_err());
        let e = parse("[risk.trunk.\"carrier-a\"]\nsources_disagre = 0\n").unwrap_err();
        assert!(e.to_string().contains("sources_disagre"), "{e}");
        let e = parse("[risk]\nuntrusted = \"count\"\n").unwrap_err();
        assert!(e.to_string().contains("untrusted"), "{e}");
        assert_eq!(
            parse("[risk]\nuntrusted = \"ignore\"\n").unwrap().untrusted,
            UntrustedMode::Ignore
        );
    }

    #[test]
    fn memory_bounds_parse_default_and_refuse_zero_and_typos() {
        let c = parse("[risk.memory]\nmax_history = 5000\nmax_queue_names = 8\nsweep_ms = 0\n")
            .unwrap();
        assert_eq!(
            (
                c.memory.max_history,
                c.memory.max_queue_names,
                c.memory.sweep_ms
            ),
            (5000, 8, 0)
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let d = parse("[risk]\n").unwrap().memory;
        assert_eq!(
            (d.max_history, d.max_queue_names, d.sweep_ms),
            (1_000_000, 4096, 10_000)
        );
        let e = parse("[risk.memory]\nmax_histroy = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_histroy"), "{e}");
        let c = parse("[risk.memory]\nmax_history = 0\nmax_queue_names = 0\n").unwrap();
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert!(
            keys.iter().any(|k| k == "risk.memory.max_history"),
            "{keys:?}"
        );
        assert!(
            keys.iter().any(|k| k == "risk.memory.max_queue_names"),
            "{keys:?}"
        );
    }

    #[test]
    fn validate_reports_every_problem() {
        let c = parse(
            r#"[risk]
store = "redis"
gray_queue = "bad queue"
[risk.redis]
url_env = " "
key_prefix = "t{g}"
deadline_ms = 0
[risk.velocity]
windows = [3600, 60]
ani = [1]
[risk.levels]
elevated = 60
high = 50
[risk.block]
code = 603
complaint_url = "https://x.example/a b"
[risk.fail_closed]
code = 302
retry_after_s = 90000
[risk.trunk." "]
sources_disagree = 0
[[risk.policy]]
name = "a"
dnis = ["0800*"]
"#,
        )
        .unwrap();
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        for want in [
            "risk.velocity.windows",
            "risk.velocity.ani",
            "risk.gray_queue",
            "risk.redis.url_env",
            "risk.redis.key_prefix",
            "risk.redis.deadline_ms",
            "risk.levels",
            "risk.block.complaint_url",
            "risk.fail_closed.code",
            "risk.fail_closed.retry_after_s",
            "risk.trunk",
            "risk.policy[0].dnis",
        ] {
            assert!(keys.iter().any(|k| k == want), "{want} missing in {keys:?}");
        }
    }

    #[test]
    fn redis_url_is_never_in_debug_output() {
        let c = parse("[risk.redis]\nurl = \"redis://:hunter2@db:6379\"\n").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let bad = parse("[risk.redis]\nurl = \"http://:hunter2@db\"\n").unwrap();
        let msgs = format!("{:?}", bad.validate());
        assert!(!msgs.contains("hunter2"), "{msgs}");
    }
}
