//! Header-value grammar (RFC 3261 §25): lists, name-addr, parameters, Via, CSeq.
//!
//! Values are slices of the datagram; a folded line's CRLF stays inside the slice and counts as
//! linear whitespace here, so folding costs no copy.

use std::borrow::Cow;

use crate::uri::{self, Uri, UriError};

/// Why a header value did not parse; the caller names the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("malformed value")]
    Malformed,
    #[error("unbalanced quotes")]
    Quotes,
    #[error("bad display name")]
    DisplayName,
    #[error("malformed URI")]
    Uri,
    #[error("value out of range")]
    Range,
}

#[inline(always)]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing spaces, tabs, CRs and LFs.
#[inline]
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    // Most values need no trimming: two byte checks instead of two scans.
    if b.first().is_some_and(|&c| !is_lws(c)) && b.last().is_some_and(|&c| !is_lws(c)) {
        return s;
    }
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |i| i + 1);
    // Both cuts are next to ASCII bytes, so on char boundaries.
    s.get(start..end).unwrap_or_default()
}

#[inline(always)]
pub(crate) fn is_token_char(b: u8) -> bool {
    uri::is(b, uri::class::TOKEN)
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// Splits a comma-separated header value, ignoring commas inside quotes and angle brackets.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    // Most values hold one item: without a comma there is nothing to split. Values are tens of
    // bytes: searched sixteen at a time.
    let mut one = crate::scan::find_in_value(s.as_bytes(), b',').is_none();
    let mut rest = Some(s);
    std::iter::from_fn(move || loop {
        let s = rest?;
        if one {
            rest = None;
            one = false;
            let item = trim_lws(s);
            if item.is_empty() {
                return None;
            }
            return Some(item);
        }
        let b = s.as_bytes();
        let (mut quoted, mut angle, mut i) = (false, false, 0);
        let mut cut = None;
        while let Some(&c) = b.get(i) {
            match c {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let item = match cut {
            Some(i) => {
                rest = s.get(i + 1..);
                s.get(..i).unwrap_or_default()
            }
            None => {
                rest = None;
                s
            }
        };
        let item = trim_lws(item);
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// Reads a quoted-string at the start of `s` (which starts with `"`); returns the content
/// (escapes resolved) and the rest after the closing quote.
pub(crate) fn quoted_string(s: &str) -> Result<(Cow<'_, str>, &str), ValueError> {
    let b = s.as_bytes();
    let mut i = 1;
    let mut escaped = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => {
                let inner = s.get(1..i).ok_or(ValueError::Quotes)?;
                let rest = s.get(i + 1..).unwrap_or_default();
                let content = if escaped {
                    let mut out = String::with_capacity(inner.len());
                    let mut chars = inner.chars();
                    while let Some(ch) = chars.next() {
                        if ch == '\\' {
                            if let Some(n) = chars.next() {
                                out.push(n);
                            }
                        } else {
                            out.push(ch);
                        }
                    }
                    Cow::Owned(out)
                } else {
                    Cow::Borrowed(inner)
                };
                return Ok((content, rest));
            }
            _ => i += 1,
        }
    }
    Err(ValueError::Quotes)
}

/// `name-addr` or `addr-spec`, followed by header parameters (From, To, PAI, RPID, Contact...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<Cow<'a, str>>,
    /// The URI text as written.
    pub uri_text: &'a str,
    /// The parsed URI when its scheme is sip, sips or tel.
    pub uri: Option<Uri<'a>>,
    /// Header parameters, raw, starting with `;` (or empty).
    pub params: &'a str,
}

impl<'a> NameAddr<'a> {
    pub fn parse(s: &'a str) -> Result<Self, ValueError> {
        Self::parse_reusing(s, &[])
    }

    /// [`Self::parse`], taking the URI from `known` when its text is there: a carrier repeats
    /// the caller's URI in From, P-Asserted-Identity and Remote-Party-ID, and the dialed one in
    /// the Request-URI and To, so each is parsed once per call.
    #[inline]
    pub fn parse_reusing(
        s: &'a str,
        known: &[(&'a str, Option<Uri<'a>>)],
    ) -> Result<Self, ValueError> {
        let s = trim_lws(s);
        // Identity headers start at the `<` as a rule: no display name to look for.
        let (display, rest) = if s.starts_with('<') {
            (None, s)
        } else if s.starts_with('"') {
            let (d, rest) = quoted_string(s)?;
            let rest = trim_lws(rest);
            if !rest.starts_with('<') {
                return Err(ValueError::Malformed);
            }
            (Some(d), rest)
        } else if let Some(lt) = uri::pos(s, b'<') {
            let d = trim_lws(s.get(..lt).unwrap_or_default());
            // Tokens separated by LWS.
            if !d
                .bytes()
                .all(|b| uri::is(b, uri::class::TOKEN | uri::class::LWS))
            {
                return Err(ValueError::DisplayName);
            }
            (
                (!d.is_empty()).then_some(Cow::Borrowed(d)),
                s.get(lt..).unwrap_or_default(),
            )
        } else {
            (None, s)
        };
        let (uri_text, params) = if let Some(inner) = rest.strip_prefix('<') {
            // A URI is tens of bytes: searched sixteen at a time.
            let gt =
                crate::scan::find_in_value(inner.as_bytes(), b'>').ok_or(ValueError::Malformed)?;
            let (u, p) = inner.split_at(gt);
            (u, trim_lws(p.get(1..).unwrap_or_default()))
        } else {
            match uri::pos(rest, b';') {
                Some(i) => {
                    let (u, p) = rest.split_at(i);
                    (trim_lws(u), p)
                }
                None => (rest, ""),
            }
        };
        // In addr-spec form a '?' or ',' would be ambiguous: such URIs need <> (RFC 3261 §20).
        if !rest.starts_with('<') && uri_text.contains(['?', ',']) {
            return Err(ValueError::Uri);
        }
        let reused = known.iter().find_map(|(t, u)| u.filter(|_| *t == uri_text));
        let uri = match reused.map_or_else(|| Uri::parse(uri_text), Ok) {
            Ok(u) => Some(u),
            Err(UriError::UnsupportedScheme) => {
                if uri_text.bytes().any(|b| is_lws(b) || b"<>\"".contains(&b)) {
                    return Err(ValueError::Uri);
                }
                None
            }
            Err(UriError::Malformed) => return Err(ValueError::Uri),
        };
        check_generic_params(params)?;
        Ok(Self {
            display,
            uri_text,
            uri,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        generic_param(self.params, name)
    }
}

/// Checks `*( SEMI generic-param )` with LWS around separators, in one pass of byte indices.
fn check_generic_params(p: &str) -> Result<(), ValueError> {
    let b = p.as_bytes();
    let skip_lws = |mut i: usize| {
        while b.get(i).is_some_and(|&c| is_lws(c)) {
            i += 1;
        }
        i
    };
    let mut i = skip_lws(0);
    while i < b.len() {
        if b.get(i) != Some(&b';') {
            return Err(ValueError::Malformed);
        }
        i = skip_lws(i + 1);
        let start = i;
        while b.get(i).is_some_and(|&c| is_token_char(c)) {
            i += 1;
        }
        if i == start {
            return Err(ValueError::Malformed);
        }
        i = skip_lws(i);
        if b.get(i) == Some(&b'=') {
            i = skip_lws(i + 1);
            if b.get(i) == Some(&b'"') {
                let rest = quoted_string(p.get(i..).unwrap_or_default())?.1;
                i = skip_lws(p.len() - rest.len());
            } else {
                let start = i;
                while b.get(i).is_some_and(|&c| uri::is(c, uri::class::GEN_VALUE)) {
                    i += 1;
                }
                if i == start {
                    return Err(ValueError::Malformed);
                }
                i = skip_lws(i);
            }
        }
    }
    Ok(())
}

/// A header parameter's value (quotes kept off), or `Some("")` for a flag.
pub fn generic_param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    // A match needs `;` and the name: shorter parameter strings need no scan.
    if params.len() <= name.len() {
        return None;
    }
    uri::param_pairs(params).find_map(|(n, v)| {
        trim_lws(n)
            .eq_ignore_ascii_case(name)
            .then(|| trim_lws(v).trim_matches('"'))
    })
}

/// The top Via's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: &'a str,
}

impl<'a> Via<'a> {
    /// Parses one via-parm (`SIP / 2.0 / UDP host[:port] *(;param)`), LWS allowed around `/`.
    pub fn parse(s: &'a str) -> Result<Self, ValueError> {
        let s = trim_lws(s);
        let rest = match s.strip_prefix("SIP/2.0/") {
            // The protocol name and version almost every Via has: tokens without LWS, what the
            // general split below would find.
            Some(rest) => trim_lws(rest),
            None => {
                // `splitn(3, '/')` at byte positions ('/' is ASCII).
                let (name, after) = uri::split_once_b(s, b'/').ok_or(ValueError::Malformed)?;
                let (version, rest) =
                    uri::split_once_b(after, b'/').ok_or(ValueError::Malformed)?;
                if !is_token(trim_lws(name)) || !is_token(trim_lws(version)) {
                    return Err(ValueError::Malformed);
                }
                trim_lws(rest)
            }
        };
        let tend = rest.bytes().position(is_lws).ok_or(ValueError::Malformed)?;
        let (transport, rest) = rest.split_at(tend);
        if !is_token(transport) {
            return Err(ValueError::Malformed);
        }
        let rest = trim_lws(rest);
        let params = uri::pos(rest, b';').map_or("", |i| rest.get(i..).unwrap_or_default());
        let raw = trim_lws(rest.get(..rest.len() - params.len()).unwrap_or_default());
        // LWS is allowed around the ':' of sent-by.
        let (host, port) = if crate::scan::any_lws(raw.as_bytes()) {
            let hostport: String = raw.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let (host_tmp, port) =
                uri::split_hostport(&hostport).map_err(|_| ValueError::Malformed)?;
            // Keep `host` borrowed from the message: find it in the original text.
            let host = match rest.find(host_tmp) {
                Some(i) => rest.get(i..i + host_tmp.len()).unwrap_or_default(),
                None => return Err(ValueError::Malformed),
            };
            (host, port)
        } else {
            // `raw` starts where `rest` does, so the host is already a slice of the message.
            uri::split_hostport(raw).map_err(|_| ValueError::Malformed)?
        };
        check_generic_params(params)?;
        Ok(Self {
            transport,
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&'a str> {
        generic_param(self.params, "branch")
    }

    pub fn param(&self, name: &str) -> Option<&'a str> {
        generic_param(self.params, name)
    }
}

/// CSeq: sequence number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: &'a str,
}

impl<'a> CSeq<'a> {
    pub fn parse(s: &'a str) -> Result<Self, ValueError> {
        let s = trim_lws(s);
        let b = s.as_bytes();
        // The number is read as its digits are found, in one pass, held at 2^32 once past u32
        // (out of range, as `parse::<u32>` says, but only reported after the checks below).
        const PAST: u64 = 1 << 32;
        let (mut end, mut seq) = (0, 0u64);
        while let Some(&c) = b.get(end).filter(|c| c.is_ascii_digit()) {
            seq = (seq * 10 + u64::from(c - b'0')).min(PAST);
            end += 1;
        }
        // Digits, then LWS, then the method.
        if end == 0 || !b.get(end).is_some_and(|&c| is_lws(c)) {
            return Err(ValueError::Malformed);
        }
        let method = trim_lws(s.get(end..).unwrap_or_default());
        if !is_token(method) {
            return Err(ValueError::Malformed);
        }
        let seq = u32::try_from(seq).map_err(|_| ValueError::Range)?;
        Ok(Self { seq, method })
    }
}

/// A decimal header value with an upper bound (Max-Forwards ≤ 255, Content-Length), in one
/// pass: any non-digit is malformed, any value above `max` (which is below 10^19) out of range.
pub fn bounded_number(s: &str, max: u64) -> Result<u64, ValueError> {
    let s = trim_lws(s);
    if s.is_empty() {
        return Err(ValueError::Malformed);
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return Err(ValueError::Malformed);
        }
        // Saturates: a value too large for u64 is still above `max`.
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    if n > max {
        return Err(ValueError::Range);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"J \\\"Q\\\" Public\" <sip:+12125551212@h;user=phone>;tag=1a")
            .expect("quoted");
        assert_eq!(n.display.as_deref(), Some("J \"Q\" Public"));
        assert_eq!(n.uri.map(|u| u.user), Some(Some("+12125551212")));
        assert_eq!(n.param("tag"), Some("1a"));
        let n = NameAddr::parse("Main Office <tel:+18005551234>").expect("token dn");
        assert_eq!(n.display.as_deref(), Some("Main Office"));
        let n = NameAddr::parse("sip:alice@example.com;tag=x").expect("addr-spec");
        assert_eq!(n.uri_text, "sip:alice@example.com");
        assert_eq!(n.param("tag"), Some("x"));
        let n = NameAddr::parse("<urn:service:sos>").expect("urn");
        assert!(n.uri.is_none());
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a@b>"),
            Err(ValueError::DisplayName)
        );
        assert_eq!(
            NameAddr::parse("\"unbalanced <sip:a@b>"),
            Err(ValueError::Quotes)
        );
    }

    /// A URI taken from `known` gives the same name-addr as parsing it; a different text is
    /// parsed, never swapped for the known one.
    #[test]
    fn parse_reusing_gives_what_parse_gives() {
        let from =
            NameAddr::parse("\"A\" <sip:+12125551212@c.example;user=phone>;tag=1").expect("from");
        let known = [(from.uri_text, from.uri)];
        for v in [
            "<sip:+12125551212@c.example;user=phone>;party=calling",
            "<sip:+12125551213@c.example;user=phone>",
            "<sip:+12125551212@c.example>",
            "<tel:+12125551212>",
        ] {
            let reused = NameAddr::parse_reusing(v, &known).expect("valid");
            assert_eq!(reused, NameAddr::parse(v).expect("valid"), "{v}");
        }
        // A known text with no parsed URI (unsupported scheme) is parsed as usual.
        let urn = [("urn:service:sos", None)];
        assert_eq!(
            NameAddr::parse_reusing("<urn:service:sos>", &urn),
            NameAddr::parse("<urn:service:sos>")
        );
    }

    #[test]
    fn lists_respect_quotes_and_brackets() {
        let v: Vec<_> = split_list("\"a, b\" <sip:x@y>, <tel:+1;x=1,2>,tel:+2").collect();
        assert_eq!(v, ["\"a, b\" <sip:x@y>", "<tel:+1;x=1,2>", "tel:+2"]);
    }

    /// The usual "SIP/2.0/" prefix and the same with LWS or other tokens parse alike.
    #[test]
    fn via_protocol_forms() {
        let usual = Via::parse("SIP/2.0/UDP h:5060;branch=z9hG4bK1").expect("usual");
        for v in [
            " SIP/2.0/UDP h:5060;branch=z9hG4bK1",
            "SIP /2.0/UDP h:5060;branch=z9hG4bK1",
            "SIP/ 2.0 / UDP h:5060;branch=z9hG4bK1",
            "sip/2.0/UDP h:5060;branch=z9hG4bK1",
            "SIP/2.0/\r\n UDP h:5060;branch=z9hG4bK1",
        ] {
            let via = Via::parse(v).expect("parses");
            assert_eq!(
                (via.transport, via.host, via.port),
                ("UDP", "h", Some(5060)),
                "{v:?}"
            );
            assert_eq!(via.params, usual.params);
        }
        for bad in [
            "SIP/2.0/",
            "SIP/2.0/UDP",
            "SIP/2.0/U@P h",
            "S@P/2.0/UDP h",
            "SIP//UDP h",
            "SIP/2.0",
        ] {
            assert_eq!(Via::parse(bad), Err(ValueError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn via_with_lws() {
        let v = Via::parse("SIP / 2.0 / UDP\r\n host.example.com : 5070 ; branch=z9hG4bK1;rport")
            .expect("via");
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        assert_eq!(v.param("rport"), Some(""));
    }

    #[test]
    fn cseq_and_numbers() {
        assert_eq!(CSeq::parse("  9 INVITE").expect("cseq").seq, 9);
        assert_eq!(
            CSeq::parse("36893488147419103232 INVITE"),
            Err(ValueError::Range)
        );
        assert_eq!(CSeq::parse("1INVITE"), Err(ValueError::Malformed));
        assert_eq!(CSeq::parse("4294967295 A").expect("max").seq, u32::MAX);
        assert_eq!(CSeq::parse("4294967296 A"), Err(ValueError::Range));
        assert_eq!(
            CSeq::parse("00000000000000000000001 A").expect("zeros").seq,
            1
        );
        // A malformed method wins over a number out of range, as before.
        assert_eq!(CSeq::parse("4294967296 A@"), Err(ValueError::Malformed));
        for bad in ["", " ", "12", "12 ", "x1 A", "1\u{e9} A", "1 \u{e9}"] {
            assert_eq!(CSeq::parse(bad), Err(ValueError::Malformed), "{bad:?}");
        }
        assert_eq!(bounded_number("0070", 255), Ok(70));
        assert_eq!(bounded_number("300", 255), Err(ValueError::Range));
        assert_eq!(bounded_number("-1", 255), Err(ValueError::Malformed));
        // Leading zeros do not count; a value past u64 is out of range, not malformed.
        assert_eq!(bounded_number("000000000000000000000070", 255), Ok(70));
        assert_eq!(
            bounded_number("99999999999999999999999", 65_535),
            Err(ValueError::Range)
        );
        assert_eq!(
            bounded_number("99999999999999999999999x", 65_535),
            Err(ValueError::Malformed)
        );
        assert_eq!(bounded_number("", 255), Err(ValueError::Malformed));
    }
}
