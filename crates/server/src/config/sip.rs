//! `[sip]` and `[sip.limits]`: the listeners, the transaction timers, how a source no trunk
//! claims is taken, and what the transport may hold. (`[sip.tls]` is [`super::tls`]; the
//! node's call-rate keys, `max_cps` and friends, are [`super::rate`].)

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tollgate_core::{AniSource, NumberPlan};
use tollgate_sip::trunk::{Trunk, UnknownSource};
use tollgate_sip::SipConfig;
use toml::Spanned;

use super::tls::TlsSection;
use super::Errors;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    #[serde(default)]
    pub udp: Vec<Spanned<String>>,
    #[serde(default)]
    pub tcp: Vec<Spanned<String>>,
    /// "reject" (403) or "untrusted" (handled, only From counts).
    #[serde(default = "default_unknown")]
    pub unknown_source: Spanned<String>,
    /// Region for national numbers from unknown sources handled as untrusted.
    #[serde(default = "super::trunk::default_region")]
    pub unknown_region: Spanned<String>,
    #[serde(default = "default_emergency")]
    pub emergency_numbers: Vec<String>,
    #[serde(default = "d100")]
    pub trying_delay_ms: u64,
    #[serde(default = "d2000")]
    pub decision_timeout_ms: u64,
    /// Budget for risk and CRM work together; the call routes without them when it runs out.
    #[serde(default = "d150")]
    pub enrich_deadline_ms: u64,
    #[serde(default = "d10000")]
    pub drain_timeout_ms: u64,
    #[serde(default = "d500")]
    pub t1_ms: u64,
    #[serde(default = "d4000")]
    pub t2_ms: u64,
    #[serde(default = "d5000")]
    pub t4_ms: u64,
    /// An INVITE or OPTIONS whose `Require` names an unsupported option tag: "ignore" (RFC 3261
    /// §8.3, redirect servers; the default) or "reject" (420 Bad Extension, §8.2.2.3).
    #[serde(default = "default_require")]
    pub unsupported_require: Spanned<String>,
    /// `[sip.limits]`: what the transport may hold, whatever is offered.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[sip.tls]`: SIP over TLS.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// Calls per second the whole node takes (every trunk and unknown sources together);
    /// absent: no node-wide limit. Over it a call gets 503 with `Retry-After`.
    #[serde(default)]
    pub max_cps: Option<Spanned<f64>>,
    /// Calls the node takes at once (default: `max_cps` rounded up).
    #[serde(default)]
    pub max_burst: Option<Spanned<i64>>,
    /// `Retry-After` seconds of the node's 503s: draining, overload and the rate limits.
    #[serde(default)]
    pub retry_after_s: Option<Spanned<i64>>,
}

/// `[sip.limits]`. Every key is a positive whole number (but `shedding`, and
/// `shed_queue_age_ms` and `udp_receive_buffer_kb`, where 0 is off); the defaults are
/// `tollgate_sip::Limits::default()`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub max_transactions: Spanned<u64>,
    pub transaction_memory_mb: Spanned<u64>,
    pub max_pending_decisions: Spanned<u64>,
    pub tcp_max_connections: Spanned<u64>,
    pub tcp_max_per_source: Spanned<u64>,
    pub tcp_idle_timeout_ms: Spanned<u64>,
    pub tcp_message_timeout_ms: Spanned<u64>,
    pub tcp_write_buffer_kb: Spanned<u64>,
    pub tcp_write_timeout_ms: Spanned<u64>,
    pub shedding: bool,
    pub shed_queue_age_ms: Spanned<u64>,
    pub udp_receive_buffer_kb: Spanned<u64>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let d = tollgate_sip::Limits::default();
        let n = |v: usize| Spanned::new(0..0, v as u64);
        let ms = |v: Duration| Spanned::new(0..0, u64::try_from(v.as_millis()).unwrap_or(u64::MAX));
        Self {
            max_transactions: n(d.max_transactions),
            transaction_memory_mb: n(d.max_transaction_bytes >> 20),
            max_pending_decisions: n(d.max_pending_decisions),
            tcp_max_connections: n(d.tcp_max_connections),
            tcp_max_per_source: n(d.tcp_max_per_source),
            tcp_idle_timeout_ms: ms(d.tcp_idle_timeout),
            tcp_message_timeout_ms: ms(d.tcp_message_timeout),
            tcp_write_buffer_kb: n(d.tcp_write_buffer >> 10),
            tcp_write_timeout_ms: ms(d.tcp_write_timeout),
            shedding: d.shedding,
            shed_queue_age_ms: ms(d.shed_queue_age),
            udp_receive_buffer_kb: n(d.udp_receive_buffer >> 10),
        }
    }
}

impl LimitsSection {
    /// The keys with their values, for the positivity check.
    fn all(&self) -> [(&'static str, &Spanned<u64>); 9] {
        [
            ("max_transactions", &self.max_transactions),
            ("transaction_memory_mb", &self.transaction_memory_mb),
            ("max_pending_decisions", &self.max_pending_decisions),
            ("tcp_max_connections", &self.tcp_max_connections),
            ("tcp_max_per_source", &self.tcp_max_per_source),
            ("tcp_idle_timeout_ms", &self.tcp_idle_timeout_ms),
            ("tcp_message_timeout_ms", &self.tcp_message_timeout_ms),
            ("tcp_write_buffer_kb", &self.tcp_write_buffer_kb),
            ("tcp_write_timeout_ms", &self.tcp_write_timeout_ms),
        ]
    }

    fn limits(&self) -> tollgate_sip::Limits {
        let n = |v: &Spanned<u64>| usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        let ms = |v: &Spanned<u64>| Duration::from_millis(*v.get_ref());
        tollgate_sip::Limits {
            max_transactions: n(&self.max_transactions),
            max_transaction_bytes: n(&self.transaction_memory_mb).saturating_mul(1 << 20),
            max_pending_decisions: n(&self.max_pending_decisions),
            tcp_max_connections: n(&self.tcp_max_connections),
            tcp_max_per_source: n(&self.tcp_max_per_source),
            tcp_idle_timeout: ms(&self.tcp_idle_timeout_ms),
            tcp_message_timeout: ms(&self.tcp_message_timeout_ms),
            tcp_write_buffer: n(&self.tcp_write_buffer_kb).saturating_mul(1 << 10),
            tcp_write_timeout: ms(&self.tcp_write_timeout_ms),
            shedding: self.shedding,
            shed_queue_age: ms(&self.shed_queue_age_ms),
            udp_receive_buffer: n(&self.udp_receive_buffer_kb).saturating_mul(1 << 10),
        }
    }
}

fn default_require() -> Spanned<String> {
    Spanned::new(0..0, "ignore".into())
}
fn default_unknown() -> Spanned<String> {
    Spanned::new(0..0, "reject".into())
}
fn default_emergency() -> Vec<String> {
    vec!["911".into(), "112".into(), "933".into()]
}
const fn d100() -> u64 {
    100
}
const fn d150() -> u64 {
    150
}
const fn d500() -> u64 {
    500
}
const fn d2000() -> u64 {
    2000
}
const fn d4000() -> u64 {
    4000
}
const fn d5000() -> u64 {
    5000
}
const fn d10000() -> u64 {
    10000
}

/// `sip.udp` and `sip.tcp`; with no listener at all (nor `[sip.tls]`), a problem.
pub(super) fn listeners(
    errs: &mut Errors<'_>,
    s: &SipSection,
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let udp = addrs(errs, &s.udp, "sip.udp");
    let tcp = addrs(errs, &s.tcp, "sip.tcp");
    if s.udp.is_empty() && s.tcp.is_empty() && s.tls.is_none() {
        errs.unplaced("sip", "no listener: set sip.udp, sip.tcp or sip.tls");
    }
    (udp, tcp)
}

/// `IP:port` addresses.
pub(super) fn addrs(errs: &mut Errors<'_>, list: &[Spanned<String>], key: &str) -> Vec<SocketAddr> {
    list.iter()
        .filter_map(|a| match a.get_ref().parse::<SocketAddr>() {
            Ok(sa) => Some(sa),
            Err(_) => {
                errs.push(
                    a,
                    key,
                    format!("{:?} is not an IP:port address", a.get_ref()),
                );
                None
            }
        })
        .collect()
}

/// `sip.unknown_source` (and `sip.unknown_region` when it says "untrusted").
pub(super) fn unknown_source(
    errs: &mut Errors<'_>,
    s: &SipSection,
    plan: &NumberPlan,
) -> UnknownSource {
    match s.unknown_source.get_ref().as_str() {
        "reject" => UnknownSource::Reject,
        "untrusted" => {
            match super::trunk::region(errs, plan, &s.unknown_region, "sip.unknown_region") {
                Some(region) => UnknownSource::Untrusted(std::sync::Arc::new(Trunk {
                    name: "unknown".into(),
                    cidrs: Vec::new(),
                    trusted: false,
                    ani_precedence: vec![AniSource::From],
                    dnis_precedence: Trunk::DEFAULT_DNIS.to_vec(),
                    region,
                    tls_peers: Vec::new(),
                })),
                None => UnknownSource::Reject,
            }
        }
        other => {
            errs.push(
                &s.unknown_source,
                "sip.unknown_source",
                format!("{other:?}: expected \"reject\" or \"untrusted\""),
            );
            UnknownSource::Reject
        }
    }
}

/// The timers against each other, `unsupported_require`, and `[sip.limits]`.
pub(super) fn check(errs: &mut Errors<'_>, s: &SipSection) {
    // A call whose enrichment may run past the decision timeout would be answered 503 while
    // its risk and CRM answers are still allowed to arrive.
    if s.decision_timeout_ms <= s.enrich_deadline_ms {
        errs.at_key(
            "sip.decision_timeout_ms",
            format!(
                "{} ms is not longer than sip.enrich_deadline_ms ({} ms): every call that waits \
                 for enrichment would time out",
                s.decision_timeout_ms, s.enrich_deadline_ms
            ),
        );
    }

    let require = &s.unsupported_require;
    if !matches!(require.get_ref().as_str(), "ignore" | "reject") {
        errs.push(
            require,
            "sip.unsupported_require",
            format!("{:?}: expected \"ignore\" or \"reject\"", require.get_ref()),
        );
    }

    for (key, value) in s.limits.all() {
        if *value.get_ref() == 0 {
            errs.push(
                value,
                format!("sip.limits.{key}"),
                "must be at least 1 (a bound of 0 would refuse everything)",
            );
        }
    }
    if s.limits.tcp_max_per_source.get_ref() > s.limits.tcp_max_connections.get_ref() {
        errs.push(
            &s.limits.tcp_max_per_source,
            "sip.limits.tcp_max_per_source",
            format!(
                "{} is more than sip.limits.tcp_max_connections ({})",
                s.limits.tcp_max_per_source.get_ref(),
                s.limits.tcp_max_connections.get_ref()
            ),
        );
    }

    // A carrier retransmits an unanswered INVITE at T1: shedding by age must answer before
    // (checked where the key is written; the default stands beside a shortened test T1).
    let age = &s.limits.shed_queue_age_ms;
    if age.span().end > 0 && *age.get_ref() >= s.t1_ms {
        errs.push(
            age,
            "sip.limits.shed_queue_age_ms",
            format!(
                "{} ms is not below sip.t1_ms ({} ms): the carrier would retransmit every \
                 INVITE before it is shed (0 turns shedding by age off)",
                age.get_ref(),
                s.t1_ms
            ),
        );
    }
    let rcvbuf = &s.limits.udp_receive_buffer_kb;
    if *rcvbuf.get_ref() > 1 << 20 {
        errs.push(
            rcvbuf,
            "sip.limits.udp_receive_buffer_kb",
            format!("{}: at most 1048576 (1 GB)", rcvbuf.get_ref()),
        );
    }

    // Draining waits for pending decisions; one shorter than a decision may take would drop
    // the calls it cuts off.
    if s.drain_timeout_ms < s.decision_timeout_ms {
        errs.at_key(
            "sip.drain_timeout_ms",
            format!(
                "{} ms is shorter than sip.decision_timeout_ms ({} ms): a drain could cut off \
                 calls still being decided",
                s.drain_timeout_ms, s.decision_timeout_ms
            ),
        );
    }
}

/// The transport's settings, `retry_after` from the rate limits' check.
pub(super) fn sip_config(s: &SipSection, retry_after: u32) -> SipConfig {
    SipConfig {
        t1: Duration::from_millis(s.t1_ms),
        t2: Duration::from_millis(s.t2_ms),
        t4: Duration::from_millis(s.t4_ms),
        trying_delay: Duration::from_millis(s.trying_delay_ms),
        decision_timeout: Duration::from_millis(s.decision_timeout_ms),
        drain_timeout: Duration::from_millis(s.drain_timeout_ms),
        retry_after,
        enforce_require: s.unsupported_require.get_ref() == "reject",
        limits: s.limits.limits(),
    }
}
