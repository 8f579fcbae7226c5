//! `[[trunk]]`: who a carrier is (its addresses and TLS peers), whether it is trusted, where
//! its numbers come from, and how its callers' identity is judged. (A trunk's `[trunk.cli]`
//! is [`super::cli`]; its call-rate keys are [`super::rate`].)

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;
use serde::Deserialize;
use tollgate_core::{AniSource, DnisSource, NumberPlan, RegionPlan};
use tollgate_sip::trunk::Trunk;
use toml::Spanned;

use super::cli::CliSection;
use super::Errors;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkSection {
    pub name: Spanned<String>,
    /// Source addresses of the trunk; may be empty when `tls_peers` names it.
    #[serde(default)]
    pub cidrs: Vec<Spanned<String>>,
    /// TLS client certificates that are this trunk (`dns:…`, `uri:…`, `sha256:…`); with any,
    /// `trusted` needs the certificate (and the address, when `cidrs` are given too).
    #[serde(default)]
    pub tls_peers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub trusted: bool,
    #[serde(default = "default_region")]
    pub region: Spanned<String>,
    #[serde(default)]
    pub ani_precedence: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub dnis_source: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub cli: Option<CliSection>,
    /// Take the carrier's own STIR/SHAKEN result (`verstat`) as this trunk's verification.
    #[serde(default)]
    pub trust_verstat: bool,
    /// "annotate" (default: route with the verdict as a fact) or "require" (answer unsigned or
    /// unverifiable calls 428/436/437/438/403 Stale Date).
    #[serde(default)]
    pub identity: Option<Spanned<String>>,
    /// Send every final answer to this trunk's INVITEs once over UDP, without timer G (for a
    /// trunk whose UDP source could be spoofed; sources no trunk claims always are).
    #[serde(default)]
    pub stateless_rejects: bool,
    /// Calls per second this trunk may send (an integer or not); absent: no trunk limit.
    #[serde(default)]
    pub max_cps: Option<Spanned<f64>>,
    /// Calls it may send at once (default: `max_cps` rounded up, at least 1).
    #[serde(default)]
    pub max_burst: Option<Spanned<i64>>,
    /// A call over the trunk's limit: "503" (default, with `Retry-After`), "486", "480" or
    /// "queue:NAME" (a 302 to that overflow queue).
    #[serde(default)]
    pub over_limit: Option<Spanned<String>>,
    /// Calls per second one source address inside the trunk's CIDRs may send (pike-like).
    #[serde(default)]
    pub max_cps_per_source: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_burst_per_source: Option<Spanned<i64>>,
    /// A call over the per-source limit (default: what `over_limit` says).
    #[serde(default)]
    pub over_limit_per_source: Option<Spanned<String>>,
}

/// How one trunk's caller identity is judged (`[[trunk]] trust_verstat`, `identity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrunkIdentity {
    /// The carrier's `verstat` counts as verification (only ever read from trusted trunks).
    pub trust_verstat: bool,
    /// Calls that do not verify are answered 428/436/437/438/403 (never emergency calls).
    pub require_signed: bool,
}

pub(super) fn default_region() -> Spanned<String> {
    Spanned::new(0..0, "US".into())
}

/// A region code the numbering plan knows.
pub(super) fn region(
    errs: &mut Errors<'_>,
    plan: &NumberPlan,
    r: &Spanned<String>,
    key: &str,
) -> Option<RegionPlan> {
    match plan.region(r.get_ref()) {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            errs.push(r, key, e.to_string());
            None
        }
    }
}

/// Every trunk that checks; `client_ca`: `[sip.tls]` verifies client certificates, which
/// `tls_peers` needs.
pub(super) fn trunks(
    errs: &mut Errors<'_>,
    raw: &[TrunkSection],
    plan: &NumberPlan,
    client_ca: bool,
) -> Vec<Trunk> {
    let mut trunks = Vec::new();
    let mut names = HashSet::new();
    for (i, t) in raw.iter().enumerate() {
        let key = |k: &str| format!("trunk[{i}].{k}");
        if !names.insert(t.name.get_ref().clone()) {
            errs.push(
                &t.name,
                key("name"),
                format!("duplicate trunk name {:?}", t.name.get_ref()),
            );
        }
        let mut cidrs = Vec::new();
        for c in &t.cidrs {
            let parsed = c
                .get_ref()
                .parse::<IpNet>()
                .or_else(|_| c.get_ref().parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => cidrs.push(n),
                Err(_) => errs.push(
                    c,
                    key("cidrs"),
                    format!("{:?} is not a CIDR or IP address", c.get_ref()),
                ),
            }
        }
        let tls_peers = super::tls::peers(errs, t.tls_peers.as_ref(), &key("tls_peers"), client_ca);
        if t.cidrs.is_empty() && tls_peers.is_empty() {
            errs.push(
                &t.name,
                key("cidrs"),
                "a trunk needs cidrs, tls_peers, or both",
            );
        }
        let ani_precedence = match &t.ani_precedence {
            None => Trunk::DEFAULT_ANI.to_vec(),
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|s| match s.as_str() {
                    "pai" => Some(AniSource::Pai),
                    "rpid" => Some(AniSource::Rpid),
                    "from" => Some(AniSource::From),
                    other => {
                        errs.push(
                            list,
                            key("ani_precedence"),
                            format!("unknown source {other:?}: expected pai, rpid or from"),
                        );
                        None
                    }
                })
                .collect(),
        };
        let dnis_precedence = match &t.dnis_source {
            None => Trunk::DEFAULT_DNIS.to_vec(),
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|s| match s.as_str() {
                    "request-uri" => Some(DnisSource::RequestUri),
                    "diversion" => Some(DnisSource::Diversion),
                    "history-info" => Some(DnisSource::HistoryInfo),
                    "to" => Some(DnisSource::To),
                    "p-called-party-id" => Some(DnisSource::PCalledPartyId),
                    other => {
                        errs.push(
                            list,
                            key("dnis_source"),
                            format!("unknown source {other:?}: expected request-uri, diversion, history-info, to or p-called-party-id"),
                        );
                        None
                    }
                })
                .collect(),
        };
        if let Some(region) = region(errs, plan, &t.region, &key("region")) {
            trunks.push(Trunk {
                name: t.name.get_ref().as_str().into(),
                cidrs,
                trusted: t.trusted,
                ani_precedence,
                dnis_precedence,
                region,
                tls_peers,
            });
        }
    }
    trunks
}

/// Each trunk's `identity` and `trust_verstat`, by trunk name; `stir`/`risk`: whether those
/// sections are present (a trunk that verifies needs them).
pub(super) fn identity(
    errs: &mut Errors<'_>,
    raw: &[TrunkSection],
    stir: bool,
    risk: bool,
) -> HashMap<String, TrunkIdentity> {
    let mut identity = HashMap::new();
    for (i, t) in raw.iter().enumerate() {
        let require = match t.identity.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "annotate")) => false,
            Some((s, "require")) => {
                if !t.trusted {
                    errs.push(
                        s,
                        format!("trunk[{i}].identity"),
                        "\"require\" needs trusted = true: Identity headers from an untrusted trunk are ignored",
                    );
                } else if !stir && !t.trust_verstat {
                    errs.push(
                        s,
                        format!("trunk[{i}].identity"),
                        "\"require\" needs a [stir] section (or trust_verstat = true) to verify with",
                    );
                }
                true
            }
            Some((s, other)) => {
                errs.push(
                    s,
                    format!("trunk[{i}].identity"),
                    format!("{other:?}: expected \"annotate\" or \"require\""),
                );
                false
            }
        };
        if t.trust_verstat && !t.trusted {
            errs.push(
                &t.name,
                format!("trunk[{i}].trust_verstat"),
                "needs trusted = true: verstat from an untrusted trunk is never read",
            );
        }
        if (require || t.trust_verstat) && !risk {
            errs.push(
                &t.name,
                format!("trunk[{i}]"),
                "identity checks run in the risk engine: add a [risk] section",
            );
        }
        identity.insert(
            t.name.get_ref().clone(),
            TrunkIdentity {
                trust_verstat: t.trust_verstat,
                require_signed: require,
            },
        );
    }
    identity
}
