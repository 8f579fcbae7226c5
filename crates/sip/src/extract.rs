//! CallFacts from a request: which headers are believed depends on the trunk (STANDARDS.md 1.8).

use tollgate_core::{
    AniCandidate, AniSource, CallFacts, DnisCandidate, DnisSource, NumberPlan, PartyNumber, Privacy,
};

use crate::hdr::NameAddr;
use crate::message::{HeaderName, Request, RequestUri};
use crate::trunk::Trunk;
use crate::uri::{self, Scheme, Uri};

/// Numbers that are always routed, never validated, rejected or blocked.
#[derive(Clone, Debug)]
pub struct Emergency {
    numbers: Vec<String>,
}

impl Emergency {
    pub fn new(numbers: impl IntoIterator<Item = String>) -> Self {
        Self {
            numbers: numbers.into_iter().collect(),
        }
    }

    fn matches(&self, n: &PartyNumber) -> bool {
        match n {
            // Compared as bytes: `E164::digits` would check UTF-8 on every call.
            PartyNumber::E164(e) => self.numbers.iter().any(|x| x.as_bytes() == e.digit_bytes()),
            PartyNumber::Short(s) => self.is_listed(s),
            _ => false,
        }
    }

    fn is_listed(&self, digits: &str) -> bool {
        self.numbers.iter().any(|e| e == digits)
    }

    /// The dialed string itself, before normalization: a region whose national numbers can be
    /// three digits long would otherwise turn 112 into an E.164 number.
    fn matches_raw(&self, user: &str) -> bool {
        // Without separators the filter below keeps every char: compare the strings as they are.
        if !user
            .bytes()
            .any(|b| matches!(b, b'-' | b'.' | b'(' | b')' | b' '))
        {
            let digits = user.trim_start_matches('+');
            return self.numbers.iter().any(|e| e == digits);
        }
        // The user without visual separators and leading `+`s, compared without a copy.
        let digits = || {
            user.chars()
                .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
                .skip_while(|&c| c == '+')
        };
        self.numbers.iter().any(|e| e.chars().eq(digits()))
    }
}

impl Default for Emergency {
    fn default() -> Self {
        Self::new(["911", "112", "933"].map(String::from))
    }
}

/// `PartyNumber::key().is_some()` without building the key.
fn has_key(n: &PartyNumber) -> bool {
    matches!(n, PartyNumber::E164(_) | PartyNumber::Short(_))
}

/// Normalizes URI users for one call, each distinct user (and phone-context) once: a carrier
/// repeats the caller's number in From, P-Asserted-Identity and Remote-Party-ID.
struct Numbers<'r, 'a> {
    plan: &'r NumberPlan,
    trunk: &'r Trunk,
    done: [Option<(&'a str, Option<&'a str>, PartyNumber)>; 6],
}

impl<'r, 'a> Numbers<'r, 'a> {
    fn new(plan: &'r NumberPlan, trunk: &'r Trunk) -> Self {
        Self {
            plan,
            trunk,
            done: Default::default(),
        }
    }

    fn number(&mut self, uri: &Uri<'a>) -> PartyNumber {
        // The raw (escaped) user is the key: equal raw users unescape alike.
        let raw = uri.user.unwrap_or_default();
        let ctx = uri.tel_param("phone-context");
        let mut free = None;
        for slot in &mut self.done {
            match slot {
                Some((r, c, n)) if *r == raw && *c == ctx => return n.clone(),
                Some(_) => {}
                None => {
                    free = Some(slot);
                    break;
                }
            }
        }
        let user = uri.user_unescaped().unwrap_or_default();
        let n = self.plan.normalize(&user, &self.trunk.region, ctx);
        if let Some(slot) = free {
            *slot = Some((raw, ctx, n.clone()));
        }
        n
    }
}

/// Whether a sip URI's user is meant as a telephone number (`user=phone` or digits).
fn telephone_user(uri: &Uri<'_>) -> bool {
    uri.scheme == Scheme::Tel
        || uri
            .param("user")
            .is_some_and(|u| u.eq_ignore_ascii_case("phone"))
        || uri.user.is_some_and(|u| {
            let u = u
                .strip_prefix("%2B")
                .or_else(|| u.strip_prefix('+'))
                .unwrap_or(u);
            !u.is_empty()
                && u.bytes()
                    .all(|b| b.is_ascii_digit() || b"-.()".contains(&b))
        })
}

/// P-Asserted-Identity URIs in the order they count: tel first, then sip/sips with a telephone
/// user; schemes other than sip/sips/tel and second URIs of one scheme ignored (RFC 5876 §4.5).
fn pai_uris<'a>(req: &Request<'a>) -> impl Iterator<Item = Uri<'a>> {
    let mut tel = None;
    let mut sip = None;
    for v in req.msg.values(HeaderName::PAssertedIdentity) {
        let Ok(na) = NameAddr::parse(v) else { continue };
        let Some(uri) = na.uri else { continue };
        match uri.scheme {
            Scheme::Tel if tel.is_none() => tel = Some(uri),
            Scheme::Sip | Scheme::Sips if sip.is_none() => sip = Some(uri),
            _ => {}
        }
    }
    tel.into_iter().chain(sip.filter(telephone_user))
}

/// Extracts the facts of an INVITE from `trunk`.
pub fn extract(
    req: &Request<'_>,
    trunk: &Trunk,
    plan: &NumberPlan,
    emergency: &Emergency,
) -> CallFacts {
    let trusted = trunk.trusted;
    let mut numbers = Numbers::new(plan, trunk);
    let from_uri = req.from.uri;
    let presented = from_uri.map_or(
        PartyNumber::Withheld(tollgate_core::Withheld::Unavailable),
        |u| numbers.number(&u),
    );

    // ANI II and verification status ride on the identity URIs; only a trusted trunk's count.
    // The first identity URI that has each, user part before URI parameters (`Uri::tel_param`),
    // read in one pass over each URI's parameters as the URI is counted.
    let (mut cpc, mut oli, mut verstat) = (None, None, None);
    let mut identity_uri = |u: &Uri<'_>| {
        if !trusted || (cpc.is_some() && oli.is_some() && verstat.is_some()) {
            return;
        }
        let pairs = uri::param_pairs(u.user_params).chain(uri::param_pairs(u.params));
        for (n, v) in pairs {
            let n = uri::trim_fast(n);
            let slot = match n.len() {
                3 if n.eq_ignore_ascii_case("cpc") => &mut cpc,
                3 if n.eq_ignore_ascii_case("oli") => &mut oli,
                7 if n.eq_ignore_ascii_case("verstat") => &mut verstat,
                _ => continue,
            };
            slot.get_or_insert_with(|| uri::trim_fast(v).to_owned());
            if cpc.is_some() && oli.is_some() && verstat.is_some() {
                return;
            }
        }
    };

    let mut candidates = Vec::new();
    let precedence: &[AniSource] = if trusted {
        &trunk.ani_precedence
    } else {
        &[AniSource::From]
    };
    for source in precedence {
        match source {
            AniSource::Pai => {
                for uri in pai_uris(req) {
                    candidates.push(AniCandidate {
                        source: AniSource::Pai,
                        number: numbers.number(&uri),
                        scheme: uri.scheme.as_str(),
                        screened: None,
                        privacy: None,
                    });
                    identity_uri(&uri);
                }
            }
            AniSource::Rpid => {
                for v in req.msg.values(HeaderName::RemotePartyId) {
                    let Ok(na) = NameAddr::parse(v) else { continue };
                    let calling = na
                        .param("party")
                        .is_none_or(|p| p.eq_ignore_ascii_case("calling"));
                    let Some(uri) = na.uri.filter(|_| calling) else {
                        continue;
                    };
                    candidates.push(AniCandidate {
                        source: AniSource::Rpid,
                        number: numbers.number(&uri),
                        scheme: uri.scheme.as_str(),
                        screened: na.param("screen").map(|s| s.eq_ignore_ascii_case("yes")),
                        privacy: na.param("privacy").map(str::to_owned),
                    });
                    identity_uri(&uri);
                    break;
                }
            }
            AniSource::From => {
                if let Some(uri) = from_uri {
                    candidates.push(AniCandidate {
                        source: AniSource::From,
                        number: presented.clone(),
                        scheme: uri.scheme.as_str(),
                        screened: None,
                        privacy: None,
                    });
                    identity_uri(&uri);
                }
            }
        }
    }
    let chosen = candidates
        .iter()
        .find(|c| has_key(&c.number))
        .or_else(|| candidates.first());
    let (ani, ani_source, ani_verified) = match chosen {
        Some(c) => (
            c.number.clone(),
            c.source,
            trusted && c.source != AniSource::From && c.screened != Some(false),
        ),
        None => (presented.clone(), AniSource::From, false),
    };
    let mut e164s = candidates.iter().filter_map(|c| c.number.e164());
    let sources_disagree = match e164s.next() {
        Some(first) => e164s.any(|n| n != first),
        None => false,
    };

    let charge_number = trusted
        .then(|| {
            let v = req.msg.header(HeaderName::PChargeInfo)?;
            let uri = NameAddr::parse(v).ok()?.uri?;
            Some(numbers.number(&uri))
        })
        .flatten();
    let identity = if trusted {
        req.msg
            .lines(HeaderName::Identity)
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };

    let mut privacy = Privacy::default();
    for line in req.msg.lines(HeaderName::Privacy) {
        for v in line.split([';', ',']).map(crate::hdr::trim_lws) {
            let flag = match v.len() {
                2 if v.eq_ignore_ascii_case("id") => &mut privacy.id,
                4 if v.eq_ignore_ascii_case("user") => &mut privacy.user,
                4 if v.eq_ignore_ascii_case("none") => &mut privacy.none,
                6 if v.eq_ignore_ascii_case("header") => &mut privacy.header,
                7 if v.eq_ignore_ascii_case("session") => &mut privacy.session,
                7 if v.eq_ignore_ascii_case("history") => &mut privacy.history,
                8 if v.eq_ignore_ascii_case("critical") => &mut privacy.critical,
                _ => continue,
            };
            *flag = true;
        }
    }

    let mut dnis_candidates = Vec::new();
    let mut sos = false;
    for source in &trunk.dnis_precedence {
        let uri = match source {
            DnisSource::RequestUri => match req.uri {
                RequestUri::Uri(u) => Some(u),
                RequestUri::ServiceUrn(_) => {
                    sos = true;
                    None
                }
            },
            // The bottom-most Diversion is the originally dialed number (RFC 5806 §9.3).
            DnisSource::Diversion => req
                .msg
                .values(HeaderName::Diversion)
                .last()
                .and_then(|v| NameAddr::parse(v).ok()?.uri),
            DnisSource::HistoryInfo => req
                .msg
                .values(HeaderName::HistoryInfo)
                .next()
                .and_then(|v| NameAddr::parse(v).ok()?.uri),
            DnisSource::To => req.to.uri,
            DnisSource::PCalledPartyId => req
                .msg
                .header(HeaderName::PCalledPartyId)
                .and_then(|v| NameAddr::parse(v).ok()?.uri),
        };
        if let Some(uri) = uri.filter(|u| u.user.is_some()) {
            sos |= uri
                .user_unescaped()
                .is_some_and(|u| emergency.matches_raw(&u));
            dnis_candidates.push(DnisCandidate {
                source: *source,
                number: numbers.number(&uri),
            });
        }
    }
    if let RequestUri::ServiceUrn(_) = req.uri {
        sos = true;
    }
    let (dnis, dnis_source) = dnis_candidates
        .iter()
        .find(|c| has_key(&c.number))
        .or_else(|| dnis_candidates.first())
        .map_or(
            (PartyNumber::Unusable(String::new()), DnisSource::RequestUri),
            |c| (c.number.clone(), c.source),
        );
    let emergency = sos || dnis_candidates.iter().any(|c| emergency.matches(&c.number));

    CallFacts {
        call_id: req.call_id.to_owned(),
        trunk: trunk.name.clone(),
        trusted,
        ani,
        ani_source,
        ani_verified,
        ani_candidates: candidates,
        sources_disagree,
        presented,
        display_name: req.from.display.as_deref().map(str::to_owned),
        privacy,
        charge_number,
        cpc,
        oli,
        verstat,
        identity,
        dnis,
        dnis_source,
        dnis_candidates,
        emergency,
        ani_info: None,
        ani_geo: None,
        dnis_info: None,
        cli: None,
        profile: None,
        lookup: tollgate_core::LookupStatus::Skipped,
        history: None,
        risk: None,
    }
}
