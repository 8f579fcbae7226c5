//! What the pipeline knows about one call, and what it decided.

use crate::classify::NumberInfo;
use crate::clid::CliCheck;
use crate::geo::GeoInfo;
use crate::number::PartyNumber;
use crate::shared::{SharedStr, Skills};

pub use compact_str::CompactString;

/// The candidates one header kind's claims make: at most four for the ANI (two P-Asserted-Identity
/// URIs, Remote-Party-ID, From) and, as a rule, for the DNIS; held inline so that extracting a call
/// allocates nothing for them.
pub type Candidates<T> = smallvec::SmallVec<[T; 4]>;

/// Where the network ANI was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AniSource {
    /// P-Asserted-Identity (RFC 3325), tel URI first.
    Pai,
    /// Remote-Party-ID with party=calling (or no party).
    Rpid,
    /// The From header: the only source counted from an untrusted trunk.
    From,
}

impl AniSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AniSource::Pai => "pai",
            AniSource::Rpid => "rpid",
            AniSource::From => "from",
        }
    }
}

/// Where the dialed number was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnisSource {
    RequestUri,
    /// Bottom-most Diversion: the originally dialed number (RFC 5806 §9.3).
    Diversion,
    /// First History-Info entry: the original target (RFC 7044).
    HistoryInfo,
    To,
    PCalledPartyId,
}

impl DnisSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DnisSource::RequestUri => "request-uri",
            DnisSource::Diversion => "diversion",
            DnisSource::HistoryInfo => "history-info",
            DnisSource::To => "to",
            DnisSource::PCalledPartyId => "p-called-party-id",
        }
    }
}

/// One header's claim about who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AniCandidate {
    pub source: AniSource,
    pub number: PartyNumber,
    /// The URI scheme the number came in (`tel`, `sip`, `sips`).
    pub scheme: &'static str,
    /// RPID `screen=no` says the network did not screen the number.
    pub screened: Option<bool>,
    /// RPID `privacy=` value, verbatim.
    pub privacy: Option<CompactString>,
}

/// One header's claim about the dialed number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnisCandidate {
    pub source: DnisSource,
    pub number: PartyNumber,
}

/// The Privacy header's values (RFC 3323, 3325 `id`, 7044 `history`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Privacy {
    pub id: bool,
    pub user: bool,
    pub header: bool,
    pub session: bool,
    pub history: bool,
    pub critical: bool,
    pub none: bool,
}

impl Privacy {
    /// Whether the caller asked for the number to be kept from the agent's screen.
    pub fn restricts_presentation(&self) -> bool {
        !self.none && (self.id || self.user || self.header)
    }
}

/// A CRM record for the caller (the lookup crate fills it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallerProfile {
    pub customer_id: String,
    pub name: Option<String>,
    pub company: Option<String>,
    pub tier: Option<String>,
    /// Preferred language (BCP 47 tag or the CRM's own code).
    pub language: Option<String>,
    pub tags: Vec<String>,
    pub open_cases: Option<u32>,
    pub last_agent: Option<String>,
    pub last_queue: Option<String>,
    /// Any other mapped field, for rules to match on.
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// What became of the CRM lookup for this call (the decision says it: "crm: timeout").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LookupStatus {
    /// No lookup: no directory configured, or no E.164 ANI.
    #[default]
    Skipped,
    Found,
    NotFound,
    Timeout,
    Error,
    BreakerOpen,
    RateLimited,
}

impl LookupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupStatus::Skipped => "skipped",
            LookupStatus::Found => "found",
            LookupStatus::NotFound => "not-found",
            LookupStatus::Timeout => "timeout",
            LookupStatus::Error => "error",
            LookupStatus::BreakerOpen => "breaker-open",
            LookupStatus::RateLimited => "rate-limited",
        }
    }
}

/// How risky the call looks (the risk crate fills it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskLevel {
    #[default]
    Low,
    Elevated,
    High,
    Blocked,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Elevated => "elevated",
            RiskLevel::High => "high",
            RiskLevel::Blocked => "blocked",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        [
            RiskLevel::Low,
            RiskLevel::Elevated,
            RiskLevel::High,
            RiskLevel::Blocked,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// STIR/SHAKEN attestation (RFC 8588).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attestation {
    A,
    B,
    C,
}

impl Attestation {
    pub fn as_str(self) -> &'static str {
        match self {
            Attestation::A => "A",
            Attestation::B => "B",
            Attestation::C => "C",
        }
    }
}

/// The outcome of identity verification (our own, or the carrier's verstat when trusted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Verification {
    /// No Identity header (and no trusted verstat).
    #[default]
    Absent,
    Verified,
    Failed(String),
}

/// One signal that contributed to the score, for explain and the decision log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskSignal {
    pub name: String,
    pub weight: i32,
    pub detail: String,
}

/// The risk verdict with its signals (the risk crate fills it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskAssessment {
    pub level: RiskLevel,
    pub score: i32,
    pub signals: Vec<RiskSignal>,
    pub attestation: Option<Attestation>,
    pub verification: Verification,
    /// Names of the lists that matched ("block", "gray", "allow").
    pub list_hits: Vec<String>,
    /// The response the risk policy wants instead of routing (603/607/608, 428/436/437/438,
    /// 403 Stale Date); never applied to emergency calls.
    pub reject: Option<Rejection>,
    /// The risk store could not be reached (or the lists are not loaded): the call was judged
    /// without its counts, whether the policy then failed open or closed.
    pub degraded: bool,
    /// The risk policy's verification queue for this caller (gray-listed, or high risk and not
    /// rejected; never for an emergency call). The router sends the call there unless the rule
    /// that decided tests risk itself; it is also the zero-weight signal `verify-queue`, so
    /// explain and the decision log show it.
    pub verify_queue: Option<crate::QueueName>,
}

/// A final non-2xx response the risk policy wants instead of routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: u16,
    /// The reason phrase the operator configured; `None`: the status's standard phrase, which
    /// the SIP layer writes (`tollgate_sip::response::reason_phrase`, the one table).
    pub reason: Option<String>,
    /// Where the caller can complain (RFC 8688: with 608, `Call-Info: <URL>;purpose=jwscard`).
    pub call_info: Option<CallInfo>,
    /// `Retry-After` seconds (RFC 3261 §20.33), as `[risk.fail_closed]` may ask.
    pub retry_after: Option<u32>,
    /// Which of the policy's reasons it is: the router names it in `decided_by`.
    pub cause: RejectCause,
}

/// Why the risk policy rejects a call. The engine checks them in this order and the first
/// that holds is the rejection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RejectCause {
    /// On the block list (`[risk.block]`).
    #[default]
    Blocked,
    /// The trunk requires signed calls and this one did not verify (RFC 8224 §6.2.2: 428,
    /// 436, 437, 438, 403 Stale Date).
    Identity,
    /// The risk store failed under `fail_open = false` (`[risk.fail_closed]`).
    FailClosed,
}

/// A rejection's `Call-Info` (RFC 8688 §3): the URL of a jCard where the caller can
/// complain; the SIP layer writes it as `Call-Info: <URL>;purpose=jwscard`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallInfo {
    pub url: String,
}

/// Everything known about one inbound call, extracted from headers the trunk may be trusted for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFacts {
    pub call_id: String,
    /// The trunk's name, copied inline (up to 24 bytes): a shared `Arc<str>` cost two atomic
    /// operations per call, more than the copy.
    pub trunk: CompactString,
    pub trusted: bool,
    /// The network ANI the engine believes.
    pub ani: PartyNumber,
    pub ani_source: AniSource,
    /// True when the ANI came from a trusted trunk's identity header (not From, not screen=no).
    pub ani_verified: bool,
    /// Every identity header counted, in the trunk's precedence order.
    pub ani_candidates: Candidates<AniCandidate>,
    /// Counted sources name different numbers.
    pub sources_disagree: bool,
    /// The caller ID presented in From, and its display name.
    pub presented: PartyNumber,
    pub display_name: Option<CompactString>,
    pub privacy: Privacy,
    /// P-Charge-Info: the billing number (RFC 8496), never the ANI.
    pub charge_number: Option<PartyNumber>,
    /// Calling party category and ANI II (originating line information).
    pub cpc: Option<CompactString>,
    pub oli: Option<CompactString>,
    /// Upstream STIR/SHAKEN verification status (3GPP `verstat`).
    pub verstat: Option<CompactString>,
    /// Identity headers (RFC 8224), parsed by the SIP layer, verified by the risk crate (through
    /// the stir crate).
    pub identity: Vec<crate::IdentityValue>,
    pub dnis: PartyNumber,
    pub dnis_source: DnisSource,
    pub dnis_candidates: Candidates<DnisCandidate>,
    /// Emergency or PSAP traffic: never validated, rejected or blocked.
    pub emergency: bool,
    /// Number intelligence, filled before routing ([`crate::NumberIntel::annotate`]).
    pub ani_info: Option<NumberInfo>,
    pub ani_geo: Option<GeoInfo>,
    pub dnis_info: Option<NumberInfo>,
    /// The caller number's CLI validation verdict.
    pub cli: Option<CliCheck>,
    pub profile: Option<CallerProfile>,
    pub lookup: LookupStatus,
    /// The caller's previous call, when the risk store knows it.
    pub history: Option<CallerHistory>,
    pub risk: Option<RiskAssessment>,
    /// How the INVITE arrived: its transport and, over TLS, who the peer's certificate names.
    pub arrival: Arrival,
}

/// The transport an INVITE arrived on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2): the 302's Contact keeps the `sips:` scheme.
    Tls,
}

impl Transport {
    /// `udp`, `tcp`, `tls`: the decision log's and the metrics' word.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// How a call reached the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Arrival {
    pub transport: Transport,
    /// Over TLS with a client certificate: the trunk identity it matched (`dns:…`, `uri:…`,
    /// `sha256:…`), or `unmatched` when it matched none. `None` without a certificate.
    pub tls_peer: Option<CompactString>,
}

/// What to do with the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecisionAction {
    /// Redirect (302) to `queue@host`, with what the ACD needs to pick an agent.
    Route(Target),
    /// Reject with a final status; for a 608 where the caller can complain (RFC 8688), and
    /// when to try again.
    Reject {
        code: u16,
        /// `None`: the status's standard phrase (the SIP layer's table).
        reason: Option<SharedStr>,
        call_info: Option<CallInfo>,
        retry_after: Option<u32>,
    },
}

/// A queue on the ACD and how to hand the call to it. Its text is shared with the rules that
/// chose it ([`SharedStr`]): routing a call copies none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub queue: SharedStr,
    pub host: SharedStr,
    pub priority: Option<u8>,
    pub skills: Skills,
    pub language: Option<SharedStr>,
    /// A verification / IVR queue rather than agents.
    pub verify: bool,
    /// The Contact's scheme when the rule names one (`queue = { …, scheme = "sips" }`);
    /// `None`: `sips:` for a call that came in over TLS, `sip:` otherwise.
    pub scheme: Option<UriScheme>,
}

/// A 302 Contact's URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriScheme {
    Sip,
    /// RFC 3261 §19.1 / RFC 5630: every hop to the target over TLS.
    Sips,
}

impl UriScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            UriScheme::Sip => "sip",
            UriScheme::Sips => "sips",
        }
    }
}

impl Target {
    pub fn new(queue: impl Into<SharedStr>, host: impl Into<SharedStr>) -> Self {
        Self {
            queue: queue.into(),
            host: host.into(),
            ..Self::default()
        }
    }
}

/// The router's answer, with why. A rule's decision shares its text with the rules
/// ([`SharedStr`]): making, cloning and dropping one allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: DecisionAction,
    /// The rule that decided ("support/vip", "cli-policy", "risk"), for the log, the 302 and
    /// explain.
    pub rule: SharedStr,
    /// The rule set version that decided (empty when no rule set was involved).
    pub version: SharedStr,
}

impl Decision {
    /// A plain rejection: a status and its reason phrase.
    pub fn reject(code: u16, reason: impl Into<SharedStr>, rule: impl Into<SharedStr>) -> Self {
        Self {
            action: DecisionAction::Reject {
                code,
                reason: Some(reason.into()),
                call_info: None,
                retry_after: None,
            },
            rule: rule.into(),
            version: SharedStr::default(),
        }
    }

    /// The risk policy's rejection, with its `Call-Info` and `Retry-After`.
    pub fn rejected(r: &Rejection, rule: impl Into<SharedStr>) -> Self {
        Self {
            action: DecisionAction::Reject {
                code: r.code,
                reason: r.reason.as_deref().map(SharedStr::from),
                call_info: r.call_info.clone(),
                retry_after: r.retry_after,
            },
            rule: rule.into(),
            version: SharedStr::default(),
        }
    }

    /// The queue, when the call is routed.
    pub fn queue(&self) -> Option<&str> {
        match &self.action {
            DecisionAction::Route(t) => Some(t.queue.as_str()),
            DecisionAction::Reject { .. } => None,
        }
    }
}

/// What the risk store remembers of the caller's previous call, for repeat-caller rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerHistory {
    pub last_queue: String,
    /// Unix seconds of the previous call.
    pub last_seen: i64,
}
