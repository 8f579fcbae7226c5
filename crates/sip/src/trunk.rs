//! Trunks: which source addresses are which carrier, and how far their headers are trusted.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tollgate_core::{AniSource, DnisSource, RegionPlan};

/// One carrier or SBC connection, as configured.
#[derive(Clone, Debug)]
pub struct Trunk {
    /// Copied into every call's facts ([`tollgate_core::CallFacts::trunk`]).
    pub name: Arc<str>,
    pub cidrs: Vec<IpNet>,
    /// Identity headers (PAI, RPID, P-Charge-Info, cpc/oli, verstat, Identity) and the dialed
    /// number's redirection headers (Diversion, History-Info, P-Called-Party-ID) count only when
    /// true (RFC 3325 §8): an untrusted trunk's caller is named by From, its dialed number by the
    /// Request-URI or To.
    pub trusted: bool,
    /// Which headers name the caller, first that holds a usable number wins.
    pub ani_precedence: Vec<AniSource>,
    /// Which headers name the dialed number, first that holds a usable number wins; on an
    /// untrusted trunk only `RequestUri` and `To` of it count (the Request-URI when it names
    /// neither).
    pub dnis_precedence: Vec<DnisSource>,
    /// Region for national-format numbers.
    pub region: RegionPlan,
}

impl Trunk {
    pub const DEFAULT_ANI: [AniSource; 3] = [AniSource::Pai, AniSource::Rpid, AniSource::From];
    pub const DEFAULT_DNIS: [DnisSource; 4] = [
        DnisSource::Diversion,
        DnisSource::HistoryInfo,
        DnisSource::RequestUri,
        DnisSource::To,
    ];
}

/// What to do with traffic from an address no trunk claims.
#[derive(Clone, Debug)]
pub enum UnknownSource {
    /// Answer 403.
    Reject,
    /// Handle as this (untrusted) trunk.
    Untrusted(Arc<Trunk>),
}

/// Source address → trunk, longest prefix first.
///
/// Each source is also stateful or stateless for its answers over UDP: a stateless source's
/// final responses to INVITE are sent once, never retransmitted by timer G (as Kamailio's
/// `sl_send_reply`), so a spoofed request can never draw more than one response per datagram.
/// A source no trunk claims, and the `unknown_source = "untrusted"` pseudo-trunk, are always
/// stateless; a configured trunk is stateful unless named in [`Trunks::stateless_rejects`].
#[derive(Clone, Debug)]
pub struct Trunks {
    /// The prefix, its trunk, and whether that trunk's answers are stateless.
    by_prefix: Vec<(IpNet, Arc<Trunk>, bool)>,
    unknown: UnknownSource,
}

impl Trunks {
    pub fn new(trunks: Vec<Trunk>, unknown: UnknownSource) -> Self {
        let mut by_prefix: Vec<(IpNet, Arc<Trunk>, bool)> = Vec::new();
        for t in trunks {
            let t = Arc::new(t);
            for net in &t.cidrs {
                by_prefix.push((*net, Arc::clone(&t), false));
            }
        }
        by_prefix.sort_by_key(|(net, _, _)| std::cmp::Reverse(net.prefix_len()));
        Self { by_prefix, unknown }
    }

    /// Makes the named trunks' answers stateless (`[[trunk]] stateless_rejects = true`): every
    /// final response to their INVITEs over UDP is sent once, without timer G. For trunks whose
    /// UDP source address could be spoofed.
    #[must_use]
    pub fn stateless_rejects(mut self, names: &[&str]) -> Self {
        for (_, t, stateless) in &mut self.by_prefix {
            if names.contains(&&*t.name) {
                *stateless = true;
            }
        }
        self
    }

    /// A configured trunk by name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Trunk>> {
        self.by_prefix
            .iter()
            .map(|(_, t, _)| t)
            .find(|t| *t.name == *name)
            .or(match &self.unknown {
                UnknownSource::Untrusted(t) if *t.name == *name => Some(t),
                _ => None,
            })
    }

    /// Every configured trunk's name, once each, in configuration order of their first CIDR.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for (_, t, _) in &self.by_prefix {
            if !v.contains(&&*t.name) {
                v.push(&t.name);
            }
        }
        v
    }

    /// The trunk for a source address; `None` means answer 403.
    pub fn classify(&self, ip: IpAddr) -> Option<&Arc<Trunk>> {
        self.source(ip).0
    }

    /// The trunk for a source address (`None`: answer 403) and whether answers to it are
    /// stateless (sent once over UDP): true for a source no configured trunk claims, and for a
    /// trunk named in [`Trunks::stateless_rejects`].
    pub fn source(&self, ip: IpAddr) -> (Option<&Arc<Trunk>>, bool) {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match self.by_prefix.iter().find(|(net, _, _)| net.contains(&ip)) {
            Some((_, t, stateless)) => (Some(t), *stateless),
            None => match &self.unknown {
                UnknownSource::Reject => (None, true),
                UnknownSource::Untrusted(t) => (Some(t), true),
            },
        }
    }
}
