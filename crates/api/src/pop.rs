//! The screen-pop record: what an agent's desktop or a CRM gets for one routed call.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tollgate_core::{CallFacts, Decision, DecisionAction, Verification};

/// One routed call, as pushed to desktops and webhooks and kept for lookup by call reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScreenPop {
    /// The `ref=` parameter of the 302's Contact (also `X-Call-Ref`).
    pub call_ref: String,
    pub call_id: String,
    /// The engine node that routed the call.
    pub node: String,
    pub trunk: String,
    /// The network ANI the engine believes (E.164 with `+`, a short code, or `anonymous`...).
    pub ani: String,
    pub ani_source: String,
    pub ani_verified: bool,
    /// The caller ID presented in From, and whether the caller asked to hide it.
    pub presented: Presented,
    pub dnis: String,
    pub geo: Geo,
    /// What the carrier says about the calling line (trusted trunks only).
    pub line: Line,
    pub crm: Crm,
    pub risk: Option<Risk>,
    /// STIR/SHAKEN attestation ("A", "B", "C"), when verified or asserted by a trusted trunk.
    pub attestation: Option<String>,
    pub emergency: bool,
    pub queue: String,
    pub priority: Option<u8>,
    pub skills: Vec<String>,
    pub language: Option<String>,
    pub rule: String,
    pub rules_version: String,
    /// RFC 3339 timestamps: when the INVITE arrived and when the decision was made.
    pub received_at: String,
    pub decided_at: String,
    pub latency_us: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Presented {
    pub number: String,
    pub display_name: Option<String>,
    /// RFC 3323/3325 privacy asks that the number be kept from the agent's screen.
    pub restricted: bool,
    /// The Privacy header's values ("id", "user", "header", "session", "history", "critical").
    pub privacy: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Geo {
    /// ISO region of the caller's number ("US", "DE"), or "001" for non-geographic codes.
    pub region: Option<String>,
    pub calling_code: Option<u16>,
    /// Number kind ("mobile", "fixed-line", ...).
    pub kind: Option<String>,
    pub valid: Option<bool>,
    /// City, state or region ("Jersey City, NJ"), or the country for non-geographic numbers.
    pub description: Option<String>,
    /// The number's time zone when it has exactly one (the caller's local time on the card).
    pub time_zone: Option<String>,
    /// Every IANA zone libphonenumber lists for the number, in its order.
    #[serde(default)]
    pub time_zones: Vec<String>,
    /// ISO 3166-2 subdivision ("US-NJ") where the data names one.
    #[serde(default)]
    pub subdivision: Option<String>,
}

/// The calling line as the carrier describes it: calling party category, ANI II (originating
/// line information: 27 payphone, 29 prison, 70 pay station, …) and the P-Charge-Info number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub cpc: Option<String>,
    pub ani_ii: Option<String>,
    pub charge_number: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Crm {
    /// "found", "not-found", "timeout", "skipped", ...
    pub status: String,
    pub profile: Option<Profile>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub customer_id: String,
    pub name: Option<String>,
    pub company: Option<String>,
    pub tier: Option<String>,
    pub language: Option<String>,
    pub tags: Vec<String>,
    pub open_cases: Option<u32>,
    pub last_agent: Option<String>,
    pub last_queue: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// "low", "elevated", "high", "blocked".
    pub level: String,
    pub score: i32,
    pub signals: Vec<Signal>,
    pub list_hits: Vec<String>,
    /// "absent", "verified" or "failed: <why>".
    pub verification: String,
    /// The risk store was unreachable and the policy failed open.
    pub degraded: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub name: String,
    pub weight: i32,
    pub detail: String,
}

impl ScreenPop {
    /// The pop for a routed call; `None` for a rejection (no agent will take it).
    ///
    /// `decided_at` is the wall clock at the decision and `latency` the time since the INVITE
    /// arrived, so both timestamps come from one clock reading.
    pub fn build(
        facts: &CallFacts,
        decision: &Decision,
        call_ref: &str,
        node: &str,
        decided_at: jiff::Timestamp,
        latency: Duration,
    ) -> Option<Self> {
        let DecisionAction::Route(target) = &decision.action else {
            return None;
        };
        let p = &facts.privacy;
        let privacy = [
            (p.id, "id"),
            (p.user, "user"),
            (p.header, "header"),
            (p.session, "session"),
            (p.history, "history"),
            (p.critical, "critical"),
            (p.none, "none"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_owned())
        .collect();
        let info = facts.ani_info.as_ref();
        let geo = facts.ani_geo.as_ref();
        let received_at = jiff::SignedDuration::try_from(latency)
            .ok()
            .and_then(|d| decided_at.checked_sub(d).ok())
            .unwrap_or(decided_at);
        Some(Self {
            call_ref: call_ref.to_owned(),
            call_id: facts.call_id.clone(),
            node: node.to_owned(),
            trunk: facts.trunk.to_string(),
            ani: facts.ani.to_string(),
            ani_source: facts.ani_source.as_str().to_owned(),
            ani_verified: facts.ani_verified,
            presented: Presented {
                number: facts.presented.to_string(),
                display_name: facts.display_name.as_deref().map(str::to_owned),
                restricted: p.restricts_presentation(),
                privacy,
            },
            dnis: facts.dnis.to_string(),
            geo: Geo {
                region: info.and_then(|i| i.region).map(str::to_owned),
                calling_code: info.map(|i| i.calling_code).filter(|c| *c != 0),
                kind: info.map(|i| i.kind.as_str().to_owned()),
                valid: info.map(|i| i.valid),
                description: geo
                    .and_then(|g| g.description.as_deref())
                    .map(str::to_owned),
                time_zone: geo.and_then(|g| g.time_zone()).map(str::to_owned),
                time_zones: geo
                    .map(|g| g.zones().map(str::to_owned).collect())
                    .unwrap_or_default(),
                subdivision: geo
                    .and_then(|g| g.subdivision.as_deref())
                    .map(str::to_owned),
            },
            line: Line {
                cpc: facts.cpc.as_deref().map(str::to_owned),
                ani_ii: facts.oli.as_deref().map(str::to_owned),
                charge_number: facts.charge_number.as_ref().map(ToString::to_string),
            },
            crm: Crm {
                status: facts.lookup.as_str().to_owned(),
                profile: facts.profile.as_ref().map(|c| Profile {
                    customer_id: c.customer_id.clone(),
                    name: c.name.clone(),
                    company: c.company.clone(),
                    tier: c.tier.clone(),
                    language: c.language.clone(),
                    tags: c.tags.clone(),
                    open_cases: c.open_cases,
                    last_agent: c.last_agent.clone(),
                    last_queue: c.last_queue.clone(),
                }),
            },
            risk: facts.risk.as_ref().map(|r| Risk {
                level: r.level.as_str().to_owned(),
                score: r.score,
                signals: r
                    .signals
                    .iter()
                    .map(|s| Signal {
                        name: s.name.clone(),
                        weight: s.weight,
                        detail: s.detail.clone(),
                    })
                    .collect(),
                list_hits: r.list_hits.clone(),
                verification: match &r.verification {
                    Verification::Absent => "absent".to_owned(),
                    Verification::Verified => "verified".to_owned(),
                    Verification::Failed(why) => format!("failed: {why}"),
                },
                degraded: r.degraded,
            }),
            attestation: facts
                .risk
                .as_ref()
                .and_then(|r| r.attestation)
                .map(|a| a.as_str().to_owned()),
            emergency: facts.emergency,
            queue: target.queue.to_string(),
            priority: target.priority,
            skills: target.skills.iter().map(ToString::to_string).collect(),
            language: target.language.as_deref().map(str::to_owned),
            rule: decision.rule.to_string(),
            rules_version: decision.version.to_string(),
            received_at: format!("{received_at:.3}"),
            decided_at: format!("{decided_at:.3}"),
            latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        })
    }
}
