//! The compiled rule sets: what `route` walks. Built by [`crate::parse`], shared read-only.

use std::collections::{BTreeSet, HashMap};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use tollgate_core::{
    Attestation, CliPattern, CliVerdict, NumberKind, RiskLevel, SharedStr, Skills,
};

/// All rule sets of one version: a snapshot swapped whole on reload.
#[derive(Debug)]
pub struct Rules {
    /// Content hash of the files it was built from: the same files give the same version.
    pub version: String,
    pub acd_host: String,
    /// Emergency calls go here when set; otherwise through the rules, never to a rejection.
    pub emergency_queue: Option<SharedStr>,
    pub sets: Vec<RuleSet>,
    pub(crate) by_dnis: HashMap<String, usize>,
    pub(crate) default: usize,
    pub queues: BTreeSet<SharedStr>,
    /// `version` and `acd_host` as every decision of this snapshot carries them (shared).
    pub(crate) shared_version: SharedStr,
    pub(crate) shared_host: SharedStr,
}

impl Rules {
    /// The rule set for a dialed number (E.164 digits or short code), or the default set.
    pub fn set_for(&self, dnis: Option<&str>) -> &RuleSet {
        let idx = dnis
            .and_then(|d| self.by_dnis.get(d))
            .copied()
            .unwrap_or(self.default);
        self.sets.get(idx).unwrap_or_else(|| self.default_set())
    }

    pub fn default_set(&self) -> &RuleSet {
        // `default` always indexes `sets` (the parser guarantees a default set exists).
        match self.sets.get(self.default) {
            Some(s) => s,
            None => &EMPTY_SET,
        }
    }

    pub fn rule_count(&self) -> usize {
        self.sets.iter().map(|s| s.rules.len()).sum()
    }
}

static EMPTY_SET: RuleSet = RuleSet {
    name: String::new(),
    file: String::new(),
    dnis: Vec::new(),
    hours: None,
    overflow: None,
    rules: Vec::new(),
};

/// One service line (one or more DNIS) or the default set.
#[derive(Debug)]
pub struct RuleSet {
    pub name: String,
    pub file: String,
    /// E.164 digits (no `+`) or short codes.
    pub dnis: Vec<String>,
    pub hours: Option<Hours>,
    /// Queue for queue rules while the line is closed.
    pub overflow: Option<SharedStr>,
    pub rules: Vec<Rule>,
}

/// A weekly schedule and holidays in the line's time zone.
#[derive(Debug)]
pub struct Hours {
    pub tz: TimeZone,
    pub tz_name: String,
    /// Monday first; minutes since midnight, half-open `[start, end)`.
    pub weekly: [Vec<(u16, u16)>; 7],
    pub holidays: BTreeSet<Date>,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// Line of the rule's `[[rule]]` header in its file.
    pub line: usize,
    pub when: Option<Cond>,
    pub action: Action,
    /// False: route to the queue even while the line is closed.
    pub respect_hours: bool,
    pub overflow: Option<SharedStr>,
    /// The condition tests the risk verdict (`risk`, `risk_at_least`, `list`): the rule decides
    /// for blocked, gray-listed and high-risk callers, so the risk policy's own answer
    /// (`[risk.block]`, the verification queue) does not replace its answer.
    pub risk_aware: bool,
    /// What a decision by this rule names it ("set/rule" and its variants), built once with the
    /// rules so that a decision shares them.
    pub(crate) names: RuleNames,
}

/// A rule's name in a decision: `set/rule`, with `+after-hours` when it overflowed to the
/// line's after-hours queue and `+risk-verify` when the risk policy moved the call to its
/// verification queue. `[open, after-hours]`, each `[as is, +risk-verify]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct RuleNames(pub(crate) [[SharedStr; 2]; 2]);

impl RuleNames {
    pub(crate) fn new(set: &str, rule: &str) -> Self {
        let base = format!("{set}/{rule}");
        let name = |suffix: &str| SharedStr::from(format!("{base}{suffix}"));
        Self([
            [name(""), name("+risk-verify")],
            [name("+after-hours"), name("+after-hours+risk-verify")],
        ])
    }

    /// The name for a decision that overflowed after hours or not, moved by the risk policy or
    /// not.
    pub(crate) fn get(&self, after_hours: bool, risk_verify: bool) -> &SharedStr {
        let [open, closed] = &self.0;
        let [plain, verify] = if after_hours { closed } else { open };
        if risk_verify {
            verify
        } else {
            plain
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue; with `back_to_last`, the fallback for callers with no usable previous queue.
    pub name: SharedStr,
    pub priority: Option<u8>,
    pub skills: Skills,
    pub language: Option<SharedStr>,
    /// `queue = { name = "$last", fallback = "…" }`: the queue of the caller's previous call
    /// (the risk store's caller history), when it is a known queue other than the line's
    /// overflow; `name` otherwise.
    pub back_to_last: bool,
    /// The 302 Contact's scheme (`scheme = "sip" | "sips"`); `None` follows the transport.
    pub scheme: Option<tollgate_core::UriScheme>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Queue(QueueSpec),
    /// A verification / IVR queue.
    Verify(QueueSpec),
    Reject {
        code: u16,
        /// `None`: the status's standard phrase.
        reason: Option<SharedStr>,
    },
}

/// A condition tree.
#[derive(Debug)]
pub enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    M(Matcher),
}

/// One test on the facts. Strings are compared ASCII-case-insensitively.
#[derive(Debug)]
pub enum Matcher {
    Ani(Vec<String>),
    AniPrefix(Vec<String>),
    AniPattern(Vec<CliPattern>),
    Dnis(Vec<String>),
    CallingCode(Vec<u16>),
    Country(Vec<String>),
    /// Geography: the description, or its last comma-separated part ("NJ" in "Jersey City, NJ").
    Region(Vec<String>),
    Npa(Vec<u16>),
    Kind(Vec<NumberKind>),
    Valid(bool),
    Cli(Vec<CliVerdict>),
    Trusted(bool),
    Verified(bool),
    Withheld(bool),
    Emergency(bool),
    Crm(bool),
    Tier(Vec<String>),
    Language(Vec<String>),
    Tag(Vec<String>),
    OpenCases {
        min: Option<u32>,
        max: Option<u32>,
    },
    Attribute(Vec<(String, String)>),
    Risk(Vec<RiskLevel>),
    RiskAtLeast(RiskLevel),
    List(Vec<String>),
    /// `None` stands for "no attestation".
    Attestation(Vec<Option<Attestation>>),
    RepeatWithin(i64),
    LastQueue(Vec<String>),
    /// ANI II (originating line information) digits, e.g. 27 payphone, 29 prison, 70 pay station.
    AniIi(Vec<u16>),
    /// Calling party category (`cpc=` of the identity URI), e.g. "payphone", "operator".
    Cpc(Vec<String>),
    Open(bool),
    Weekday(Vec<jiff::civil::Weekday>),
    Time(Vec<(u16, u16)>),
    Holiday(bool),
    CallerTime(Vec<(u16, u16)>),
}

impl Matcher {
    /// Whether this matcher looks at the risk verdict.
    pub fn is_risk(&self) -> bool {
        matches!(
            self,
            Matcher::Risk(_) | Matcher::RiskAtLeast(_) | Matcher::List(_)
        )
    }
}

impl Cond {
    /// Whether any matcher of the tree looks at the risk verdict.
    pub fn mentions_risk(&self) -> bool {
        match self {
            Cond::All(v) | Cond::Any(v) => v.iter().any(Cond::mentions_risk),
            Cond::Not(c) => c.mentions_risk(),
            Cond::M(m) => m.is_risk(),
        }
    }
}
