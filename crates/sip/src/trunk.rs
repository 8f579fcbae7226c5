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
#[derive(Clone, Debug)]
pub struct Trunks {
    by_prefix: Vec<(IpNet, Arc<Trunk>)>,
    unknown: UnknownSource,
}

impl Trunks {
    pub fn new(trunks: Vec<Trunk>, unknown: UnknownSource) -> Self {
        let mut by_prefix: Vec<(IpNet, Arc<Trunk>)> = Vec::new();
        for t in trunks {
            let t = Arc::new(t);
            for net in &t.cidrs {
                by_prefix.push((*net, Arc::clone(&t)));
            }
        }
        by_prefix.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self { by_prefix, unknown }
    }

    /// A configured trunk by name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Trunk>> {
        self.by_prefix
            .iter()
            .map(|(_, t)| t)
            .find(|t| *t.name == *name)
            .or(match &self.unknown {
                UnknownSource::Untrusted(t) if *t.name == *name => Some(t),
                _ => None,
            })
    }

    /// Every configured trunk's name, once each, in configuration order of their first CIDR.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for (_, t) in &self.by_prefix {
            if !v.contains(&&*t.name) {
                v.push(&t.name);
            }
        }
        v
    }

    /// The trunk for a source address; `None` means answer 403.
    pub fn classify(&self, ip: IpAddr) -> Option<&Arc<Trunk>> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.by_prefix
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, t)| t)
            .or(match &self.unknown {
                UnknownSource::Reject => None,
                UnknownSource::Untrusted(t) => Some(t),
            })
    }
}
