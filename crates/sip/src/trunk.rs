//! Trunks: which source addresses are which carrier, and how far their headers are trusted.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tollgate_core::{AniSource, DnisSource, RegionPlan};

use crate::tls::{PeerIdentity, PeerMatch};

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
    /// TLS peers that are this trunk (a verified client certificate's SAN DNS name or URI, or
    /// its SHA-256). With any, `trusted` needs the certificate: a call from the trunk's CIDRs
    /// without it (over UDP, TCP, or TLS with no or another certificate) is this trunk,
    /// untrusted; with both CIDRs and peers, trust needs both.
    pub tls_peers: Vec<PeerMatch>,
}

impl Trunk {
    /// Which of the trunk's `tls_peers` a certificate matched (the decision log's and the
    /// metrics' `tls_peer`), or `unmatched`: a bounded set of words.
    pub fn peer_label(&self, peer: &PeerIdentity) -> String {
        self.tls_peers
            .iter()
            .find(|m| m.matches(peer))
            .map_or_else(|| "unmatched".to_owned(), ToString::to_string)
    }

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

/// One trunk as classified: itself, and the untrusted form it takes when the identity its
/// trust needs is missing.
#[derive(Clone, Debug)]
struct Entry {
    trunk: Arc<Trunk>,
    /// `trunk` with `trusted = false`, for a trunk with `tls_peers` met without its certificate.
    untrusted: Arc<Trunk>,
    stateless: bool,
}

/// Which trunk a source is, and whether its answers are stateless.
pub type Classified<'a> = (Option<&'a Arc<Trunk>>, bool);

/// Source address (and TLS peer) → trunk, longest prefix first.
///
/// Each source is also stateful or stateless for its answers over UDP: a stateless source's
/// final responses to INVITE are sent once, never retransmitted by timer G (as Kamailio's
/// `sl_send_reply`), so a spoofed request can never draw more than one response per datagram.
/// A source no trunk claims, and the `unknown_source = "untrusted"` pseudo-trunk, are always
/// stateless; a configured trunk is stateful unless named in [`Trunks::stateless_rejects`].
#[derive(Clone, Debug)]
pub struct Trunks {
    /// The prefix and its trunk.
    by_prefix: Vec<(IpNet, Entry)>,
    /// Trunks named by TLS peer, in configuration order.
    by_peer: Vec<Entry>,
    unknown: UnknownSource,
}

impl Trunks {
    pub fn new(trunks: Vec<Trunk>, unknown: UnknownSource) -> Self {
        let mut by_prefix: Vec<(IpNet, Entry)> = Vec::new();
        let mut by_peer = Vec::new();
        for t in trunks {
            let untrusted = Arc::new(Trunk {
                trusted: false,
                ..t.clone()
            });
            let entry = Entry {
                trunk: Arc::new(t),
                untrusted,
                stateless: false,
            };
            for net in &entry.trunk.cidrs {
                by_prefix.push((*net, entry.clone()));
            }
            if !entry.trunk.tls_peers.is_empty() {
                by_peer.push(entry);
            }
        }
        by_prefix.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        Self {
            by_prefix,
            by_peer,
            unknown,
        }
    }

    /// Makes the named trunks' answers stateless (`[[trunk]] stateless_rejects = true`): every
    /// final response to their INVITEs over UDP is sent once, without timer G. For trunks whose
    /// UDP source address could be spoofed.
    #[must_use]
    pub fn stateless_rejects(mut self, names: &[&str]) -> Self {
        let entries = self
            .by_prefix
            .iter_mut()
            .map(|(_, e)| e)
            .chain(self.by_peer.iter_mut());
        for e in entries {
            if names.contains(&&*e.trunk.name) {
                e.stateless = true;
            }
        }
        self
    }

    /// Whether any trunk is named by TLS peer (then the TLS listener must verify client
    /// certificates).
    pub fn names_tls_peers(&self) -> bool {
        !self.by_peer.is_empty()
    }

    /// A configured trunk by name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Trunk>> {
        self.by_prefix
            .iter()
            .map(|(_, e)| &e.trunk)
            .chain(self.by_peer.iter().map(|e| &e.trunk))
            .find(|t| *t.name == *name)
            .or(match &self.unknown {
                UnknownSource::Untrusted(t) if *t.name == *name => Some(t),
                _ => None,
            })
    }

    /// Every configured trunk's name, once each, in configuration order of their first CIDR.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        let trunks = self.by_prefix.iter().map(|(_, e)| &e.trunk);
        for t in trunks.chain(self.by_peer.iter().map(|e| &e.trunk)) {
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
    pub fn source(&self, ip: IpAddr) -> Classified<'_> {
        self.source_with(ip, None)
    }

    /// [`Trunks::source`] for a source that may have shown a verified TLS client certificate.
    ///
    /// A certificate a trunk's `tls_peers` name makes the call that trunk's (the first in
    /// configuration order), trusted as configured when its address is also in the trunk's
    /// CIDRs (or the trunk has none). Otherwise the address decides, as without TLS; a trunk
    /// with `tls_peers` reached that way is untrusted (its trust needs the certificate).
    pub fn source_with(&self, ip: IpAddr, peer: Option<&PeerIdentity>) -> Classified<'_> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if let Some(peer) = peer {
            let named = self
                .by_peer
                .iter()
                .find(|e| e.trunk.tls_peers.iter().any(|m| m.matches(peer)));
            if let Some(e) = named {
                let at_home =
                    e.trunk.cidrs.is_empty() || e.trunk.cidrs.iter().any(|n| n.contains(&ip));
                let t = if at_home { &e.trunk } else { &e.untrusted };
                return (Some(t), e.stateless);
            }
        }
        match self.by_prefix.iter().find(|(net, _)| net.contains(&ip)) {
            Some((_, e)) if e.trunk.tls_peers.is_empty() => (Some(&e.trunk), e.stateless),
            Some((_, e)) => (Some(&e.untrusted), e.stateless),
            None => match &self.unknown {
                UnknownSource::Reject => (None, true),
                UnknownSource::Untrusted(t) => (Some(t), true),
            },
        }
    }
}
