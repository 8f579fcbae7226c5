//! CallFacts from a request: which headers are believed depends on the trunk (RFC 3325 §8).

use tollgate_core::{
    AniCandidate, AniSource, CallFacts, Candidates, CompactString, DnisCandidate, DnisSource,
    NumberPlan, PartyNumber, Privacy,
};

use crate::hdr::{self, NameAddr};
use crate::message::{HeaderName, Message, Request, RequestUri, StartLine};
use crate::trunk::Trunk;
use crate::uri::{self, Scheme, TelParams, Uri};

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
        // Without separators the filter below keeps every char: compare the strings as they are,
        // without the leading `+`s. Every separator (and `*`, `#`) is below `0`, so one compare
        // per byte tells (a `*` or `#` takes the general path, which gives the same answer).
        let b = user.as_bytes();
        let digits = b.get(b.iter().take_while(|&&c| c == b'+').count()..);
        if let Some(digits) = digits.filter(|d| d.iter().all(|&c| c >= b'0')) {
            return self.numbers.iter().any(|e| e.as_bytes() == digits);
        }
        // The user without visual separators and leading `+`s, compared without a copy.
        let digits = || {
            user.chars()
                .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
                .skip_while(|&c| c == '+')
        };
        self.numbers.iter().any(|e| e.chars().eq(digits()))
    }

    /// Whether a request dials an emergency number as the transport can tell before any
    /// extraction: a `urn:service` Request-URI, or a Request-URI or To user that is one of the
    /// numbers as dialed. Overload shedding asks this so that an emergency call is never shed;
    /// `extract` decides `CallFacts::emergency` with every header the trunk may be trusted for.
    pub fn dialed(&self, req: &Request<'_>) -> bool {
        let ruri = match req.uri {
            RequestUri::ServiceUrn(_) => return true,
            RequestUri::Uri(u) => Some(u),
        };
        [ruri, req.to.uri].into_iter().flatten().any(|u| {
            u.user_unescaped()
                .is_some_and(|user| self.matches_raw(&user))
        })
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

    /// `ctx` is the URI's `phone-context` ([`TelParams::phone_context`]).
    fn number(&mut self, uri: &Uri<'a>, ctx: Option<&'a str>) -> PartyNumber {
        // The raw (escaped) user is the key: equal raw users unescape alike.
        let raw = uri.user.unwrap_or_default();
        let mut free = None;
        for slot in &mut self.done {
            match slot {
                Some((r, c, n)) if same(r, raw) && *c == ctx => return n.clone(),
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

/// `a == b`, at once when both are the same slice (a URI reused across headers). Users of 8 to
/// 16 bytes (E.164 numbers with their `+`) are compared as two overlapping words: numbers of one
/// call have the same length as a rule and differ in their first digits, where a `memcmp` call
/// would cost more than the comparison.
#[inline]
fn same(a: &str, b: &str) -> bool {
    if std::ptr::eq(a, b) {
        return true;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        s.get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map(|w| u64::from_ne_bytes(*w))
    };
    if (8..=16).contains(&a.len()) {
        let end = a.len() - 8;
        return word(a, 0) == word(b, 0) && word(a, end) == word(b, end);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Whether a sip URI's user is meant as a telephone number (`user=phone` or digits).
fn telephone_user(uri: &Uri<'_>, params: &TelParams<'_>) -> bool {
    uri.scheme == Scheme::Tel
        || params.user.is_some_and(|u| u.eq_ignore_ascii_case("phone"))
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
fn pai_uris<'a>(
    msg: &Message<'a>,
    known: &Known<'a>,
    tel_params: &KnownParams<'a>,
) -> [Option<(Uri<'a>, TelParams<'a>)>; 2] {
    let mut tel = None;
    let mut sip = None;
    // Lines, then the values of each: nested loops cost less than `values`' flattening iterator.
    for line in msg.lines(HeaderName::PAssertedIdentity) {
        for v in hdr::split_list(line) {
            let Ok(na) = NameAddr::parse_reusing(v, known) else {
                continue;
            };
            let Some(uri) = na.uri else { continue };
            match uri.scheme {
                Scheme::Tel if tel.is_none() => tel = Some(uri),
                Scheme::Sip | Scheme::Sips if sip.is_none() => sip = Some(uri),
                _ => {}
            }
        }
    }
    let with_params = |u: Uri<'a>| (u, tel_params.of(&u));
    [
        tel.map(with_params),
        sip.map(with_params).filter(|(u, p)| telephone_user(u, p)),
    ]
}

/// The tel parameters of the From and Request-URI URIs, read once: the URIs reused from them
/// ([`NameAddr::parse_reusing`]) share their parameter slices, so a pointer comparison finds them.
struct KnownParams<'a>([(&'a str, &'a str, TelParams<'a>); 2]);

impl<'a> KnownParams<'a> {
    /// Known by its `user_params` and `params` slices (`None`: nothing to reuse).
    fn new(uris: [Option<&Uri<'a>>; 2]) -> Self {
        // An empty slice no URI's parameters can be: it starts outside the message.
        let entry = |u: Option<&Uri<'a>>| match u {
            Some(u) => (u.user_params, u.params, u.tel_params()),
            None => ("\0", "\0", TelParams::default()),
        };
        let [a, b] = uris;
        Self([entry(a), entry(b)])
    }

    fn of(&self, uri: &Uri<'a>) -> TelParams<'a> {
        for (user_params, params, known) in &self.0 {
            if std::ptr::eq(*params, uri.params) && std::ptr::eq(*user_params, uri.user_params) {
                return *known;
            }
        }
        uri.tel_params()
    }
}

/// The URIs From, To and the Request-URI already hold, by their text, for
/// [`NameAddr::parse_reusing`].
type Known<'a> = [(&'a str, Option<Uri<'a>>); 3];

/// Remote-Party-ID's `party`, `screen` and `privacy` in one pass over its parameters, each as
/// [`NameAddr::param`] gives it.
fn rpid_params(params: &str) -> [Option<&str>; 3] {
    let mut out = [None; 3];
    for (n, v) in uri::param_pairs(params) {
        let n = hdr::trim_lws(n);
        let i = match n.len() {
            5 if n.eq_ignore_ascii_case("party") => 0,
            6 if n.eq_ignore_ascii_case("screen") => 1,
            7 if n.eq_ignore_ascii_case("privacy") => 2,
            _ => continue,
        };
        if let Some(slot @ None) = out.get_mut(i) {
            let v = hdr::trim_lws(v);
            // Quoted values are rare: a check of both ends before the general trim.
            let quoted = v.starts_with('"') || v.ends_with('"');
            *slot = Some(if quoted { v.trim_matches('"') } else { v });
        }
    }
    out
}

/// Extracts the facts of an INVITE from `trunk`.
pub fn extract<'a>(
    req: &Request<'a>,
    trunk: &Trunk,
    plan: &NumberPlan,
    emergency: &Emergency,
) -> CallFacts {
    let trusted = trunk.trusted;
    let msg = &req.msg;
    let mut numbers = Numbers::new(plan, trunk);
    let from_uri = req.from.uri;
    let request_uri = match (req.msg.start, req.uri) {
        (StartLine::Request { uri: text, .. }, RequestUri::Uri(u)) => (text, Some(u)),
        _ => ("", None),
    };
    let tel = KnownParams::new([from_uri.as_ref(), request_uri.1.as_ref()]);
    let from_params = from_uri.map(|u| tel.of(&u)).unwrap_or_default();
    let presented = from_uri.map_or(
        PartyNumber::Withheld(tollgate_core::Withheld::Unavailable),
        |u| numbers.number(&u, from_params.phone_context),
    );
    let known: Known<'a> = [
        (req.from.uri_text, from_uri),
        (req.to.uri_text, req.to.uri),
        request_uri,
    ];

    // ANI II and verification status ride on the identity URIs; only a trusted trunk's count.
    // The first identity URI that has each, user part before URI parameters (`Uri::tel_param`).
    let (mut cpc, mut oli, mut verstat) = (None, None, None);
    let mut identity_uri = |p: &TelParams<'a>| {
        if trusted {
            cpc = cpc.or(p.cpc);
            oli = oli.or(p.oli);
            verstat = verstat.or(p.verstat);
        }
    };

    let mut candidates = Candidates::new();
    let precedence: &[AniSource] = if trusted {
        &trunk.ani_precedence
    } else {
        &[AniSource::From]
    };
    for source in precedence {
        match source {
            AniSource::Pai => {
                for (uri, params) in pai_uris(msg, &known, &tel).iter().flatten() {
                    candidates.push(AniCandidate {
                        source: AniSource::Pai,
                        number: numbers.number(uri, params.phone_context),
                        scheme: uri.scheme.as_str(),
                        screened: None,
                        privacy: None,
                    });
                    identity_uri(params);
                }
            }
            AniSource::Rpid => {
                'rpid: for line in msg.lines(HeaderName::RemotePartyId) {
                    for v in hdr::split_list(line) {
                        let Ok(na) = NameAddr::parse_reusing(v, &known) else {
                            continue;
                        };
                        let [party, screen, privacy] = rpid_params(na.params);
                        let calling = party.is_none_or(|p| p.eq_ignore_ascii_case("calling"));
                        let Some(uri) = na.uri.filter(|_| calling) else {
                            continue;
                        };
                        let params = tel.of(&uri);
                        candidates.push(AniCandidate {
                            source: AniSource::Rpid,
                            number: numbers.number(&uri, params.phone_context),
                            scheme: uri.scheme.as_str(),
                            screened: screen.map(|s| s.eq_ignore_ascii_case("yes")),
                            privacy: privacy.map(CompactString::from),
                        });
                        identity_uri(&params);
                        break 'rpid;
                    }
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
                    identity_uri(&from_params);
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
            let v = msg.header(HeaderName::PChargeInfo)?;
            let uri = NameAddr::parse_reusing(v, &known).ok()?.uri?;
            Some(numbers.number(&uri, tel.of(&uri).phone_context))
        })
        .flatten();
    let identity = if trusted {
        msg.lines(HeaderName::Identity)
            .map(crate::identity::identity_value)
            .collect()
    } else {
        Vec::new()
    };

    let mut privacy = Privacy::default();
    for line in msg.lines(HeaderName::Privacy) {
        // priv-values separated by ';' (RFC 3323) or, leniently, ','.
        let b = line.as_bytes();
        let mut start = 0;
        while start <= b.len() {
            let end = uri::skip_while(b, start, |c| c != b';' && c != b',');
            let v = hdr::trim_lws(line.get(start..end).unwrap_or_default());
            start = end + 1;
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

    // Only a trusted trunk's redirection headers (Diversion, History-Info, P-Called-Party-ID)
    // name the dialed number: from anywhere else the caller would pick its own queue. The
    // Request-URI, which the caller's own network routed on, and To count from any trunk; one
    // whose precedence names neither gets the Request-URI.
    let counted = |s: &&DnisSource| trusted || matches!(s, DnisSource::RequestUri | DnisSource::To);
    let precedence: &[DnisSource] = if trusted || trunk.dnis_precedence.iter().any(|s| counted(&s))
    {
        &trunk.dnis_precedence
    } else {
        &[DnisSource::RequestUri]
    };
    let mut dnis_candidates = Candidates::new();
    let mut sos = false;
    for source in precedence.iter().filter(counted) {
        let uri = match source {
            DnisSource::RequestUri => match req.uri {
                RequestUri::Uri(u) => Some(u),
                RequestUri::ServiceUrn(_) => {
                    sos = true;
                    None
                }
            },
            // The bottom-most Diversion is the originally dialed number (RFC 5806 §9.3).
            DnisSource::Diversion => {
                let mut last = None;
                for line in msg.lines(HeaderName::Diversion) {
                    last = hdr::split_list(line).last().or(last);
                }
                last.and_then(|v| NameAddr::parse_reusing(v, &known).ok()?.uri)
            }
            DnisSource::HistoryInfo => msg
                .lines(HeaderName::HistoryInfo)
                .find_map(|line| hdr::split_list(line).next())
                .and_then(|v| NameAddr::parse_reusing(v, &known).ok()?.uri),
            DnisSource::To => req.to.uri,
            DnisSource::PCalledPartyId => msg
                .header(HeaderName::PCalledPartyId)
                .and_then(|v| NameAddr::parse_reusing(v, &known).ok()?.uri),
        };
        if let Some(uri) = uri.filter(|u| u.user.is_some()) {
            sos |= uri
                .user_unescaped()
                .is_some_and(|u| emergency.matches_raw(&u));
            dnis_candidates.push(DnisCandidate {
                source: *source,
                number: numbers.number(&uri, tel.of(&uri).phone_context),
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
        trunk: CompactString::from(&*trunk.name),
        trusted,
        ani,
        ani_source,
        ani_verified,
        ani_candidates: candidates,
        sources_disagree,
        presented,
        display_name: req.from.display.as_deref().map(CompactString::from),
        privacy,
        charge_number,
        cpc: cpc.map(CompactString::from),
        oli: oli.map(CompactString::from),
        verstat: verstat.map(CompactString::from),
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
        arrival: tollgate_core::Arrival::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trunk(trusted: bool, dnis: &[DnisSource]) -> Trunk {
        let plan = NumberPlan::load();
        Trunk {
            name: "t".into(),
            cidrs: Vec::new(),
            trusted,
            ani_precedence: Trunk::DEFAULT_ANI.to_vec(),
            dnis_precedence: dnis.to_vec(),
            region: plan.region("US").expect("US").clone(),
            tls_peers: Vec::new(),
        }
    }

    /// The facts of an INVITE to +18005550100 carrying `extra` header lines.
    fn facts_of(extra: &str, trunk: &Trunk) -> CallFacts {
        let text = format!(
            "INVITE sip:+18005550100@tg.example;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
From: <sip:+12125550001@c.example;user=phone>;tag=1\r\n\
To: <sip:+18005550100@tg.example;user=phone>\r\n\
Call-ID: x@c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        let msg = Message::parse(text.as_bytes()).expect("parse");
        let req = Request::from_message(msg, true).expect("valid");
        extract(&req, trunk, &NumberPlan::load(), &Emergency::default())
    }

    const REDIRECTIONS: [(DnisSource, &str); 3] = [
        (
            DnisSource::Diversion,
            "Diversion: <sip:+18005550111@c>;reason=unconditional\r\n",
        ),
        (
            DnisSource::HistoryInfo,
            "History-Info: <sip:+18005550111@c>;index=1\r\n",
        ),
        (
            DnisSource::PCalledPartyId,
            "P-Called-Party-ID: <sip:+18005550111@c>\r\n",
        ),
    ];

    /// Diversion, History-Info and P-Called-Party-ID name the dialed number from a trusted
    /// trunk only: from an untrusted one the Request-URI does, whatever the precedence says, and
    /// the redirection header is not even a candidate.
    #[test]
    fn redirection_headers_count_from_trusted_trunks_only() {
        for (source, line) in REDIRECTIONS {
            let precedence = [source, DnisSource::RequestUri, DnisSource::To];
            let f = facts_of(line, &trunk(true, &precedence));
            assert_eq!(f.dnis.to_string(), "+18005550111", "{line}");
            assert_eq!(f.dnis_source, source);

            let f = facts_of(line, &trunk(false, &precedence));
            assert_eq!(f.dnis.to_string(), "+18005550100", "{line}");
            assert_eq!(f.dnis_source, DnisSource::RequestUri);
            assert!(
                f.dnis_candidates.iter().all(|c| c.source != source),
                "{line}: {:?}",
                f.dnis_candidates
            );
            // A precedence of that header alone: the Request-URI still names the number.
            let f = facts_of(line, &trunk(false, &[source]));
            assert_eq!(f.dnis.to_string(), "+18005550100", "{line}");
            assert_eq!(f.dnis_source, DnisSource::RequestUri);
            // Nor does an untrusted redirection header make a call an emergency call.
            let sos = line.replace("+18005550111", "911");
            assert!(!facts_of(&sos, &trunk(false, &precedence)).emergency);
            assert!(facts_of(&sos, &trunk(true, &precedence)).emergency);
        }
        // To, from an untrusted trunk whose precedence puts it first, still counts.
        let f = facts_of("", &trunk(false, &[DnisSource::To]));
        assert_eq!(f.dnis_source, DnisSource::To);
    }

    /// `same` is string equality at every length and for a difference at every position (the
    /// word compare covers 8 to 16 bytes with two overlapping words).
    #[test]
    fn same_is_equality() {
        for len in 0..24 {
            let a: String = (0..len)
                .map(|i| char::from(b'0' + (i % 10) as u8))
                .collect();
            assert!(same(&a, &a.clone()), "{a}");
            for at in 0..len {
                let mut b = a.clone().into_bytes();
                if let Some(c) = b.get_mut(at) {
                    *c = b'x';
                }
                let b = String::from_utf8(b).expect("ASCII");
                assert!(!same(&a, &b), "{a} {b}");
            }
            assert!(!same(&a, &format!("{a}0")));
        }
    }

    /// The dialed string matches an emergency number with its visual separators and leading
    /// `+`s removed, on both paths (with and without separators).
    #[test]
    fn emergency_dialed_strings() {
        let e = Emergency::default();
        for user in [
            "911", "+911", "++911", "9-1-1", "(911)", "9 1 1", "+1.1.2", "-+112", "933",
        ] {
            assert!(e.matches_raw(user), "{user}");
        }
        for user in [
            "",
            "+",
            "91",
            "9111",
            "+1-911",
            "1911",
            "911#",
            "*911",
            "9+11",
            "+18005550100",
            "abc",
            "91١",
        ] {
            assert!(!e.matches_raw(user), "{user}");
        }
        let custom = Emergency::new(["*99".to_owned(), "1+1".to_owned()]);
        assert!(custom.matches_raw("*99"));
        assert!(custom.matches_raw("+*9-9"));
        assert!(custom.matches_raw("1+1"));
        assert!(!custom.matches_raw("99"));
    }
}
