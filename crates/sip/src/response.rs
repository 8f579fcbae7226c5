//! Building responses (RFC 3261 §8.2.6): headers copied from the request, a To-tag added.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use tollgate_core::{
    CallFacts, Decision, DecisionAction, PartyNumber, Transport, UriScheme, Verification,
};

use crate::hdr;
use crate::message::{HeaderName, Message};

/// Standard reason phrases (RFC 3261 §21, RFC 8224 §6.2.2, RFC 8197, RFC 8688) for
/// the statuses this engine sends: the one table. A rule's `reject` and the risk policy's
/// answers carry a phrase only when the operator wrote one; otherwise this is it. A status
/// not listed gets "Rejected".
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        428 => "Use Identity Header",
        436 => "Bad Identity Info",
        437 => "Unsupported Credential",
        438 => "Invalid Identity Header",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        603 => "Decline",
        607 => "Unwanted",
        608 => "Rejected",
        _ => "Rejected",
    }
}

/// A rejection's phrase: the one the operator configured, else the status's standard one.
pub fn phrase(code: u16, configured: Option<&str>) -> &str {
    configured.unwrap_or(reason_phrase(code))
}

/// Writes a response to `msg` (a request). `to_tag` is added to To when it has none and the
/// status is above 100. `extra` lines (each without CRLF) go through [`Lines::line`].
pub fn build(
    msg: &Message<'_>,
    source: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[String],
) -> Vec<u8> {
    let mut lines = Lines::default();
    for line in extra {
        lines.line(line);
    }
    Copied::new(msg, source).response(code, reason, to_tag, &lines)
}

/// The header lines every response to one request copies from it (RFC 3261 §8.2.6.2): each Via
/// value (the top one with `received` and `rport`), From, Call-ID, CSeq and To, in the request's
/// order, unfolded. Built once per request: an INVITE's 100, 487 and final responses all start
/// from it, so the request is not read again for each.
#[derive(Clone, Debug)]
pub struct Copied {
    text: String,
    /// Where a To-tag goes (the end of the first To value), when that To has none.
    tag_at: Option<usize>,
}

impl Copied {
    /// What the copy holds on the heap (its text's capacity).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
    }

    pub fn new(msg: &Message<'_>, source: SocketAddr) -> Self {
        let mut text = String::with_capacity(384);
        let mut tag_at = None;
        let mut first_via = true;
        for h in &msg.headers {
            match h.name {
                HeaderName::Via => {
                    for v in hdr::split_list(h.value) {
                        text.push_str("Via: ");
                        if first_via {
                            top_via(&mut text, &clean_text(v), source);
                            first_via = false;
                        } else {
                            push_text(&mut text, v);
                        }
                        text.push_str("\r\n");
                    }
                }
                HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    text.push_str(h.name.as_str());
                    text.push_str(": ");
                    push_text(&mut text, h.value);
                    text.push_str("\r\n");
                }
                HeaderName::To => {
                    text.push_str("To: ");
                    push_text(&mut text, h.value);
                    let has_tag = hdr::NameAddr::parse(h.value)
                        .map(|na| na.param("tag").is_some())
                        .unwrap_or(true);
                    // Only a request rejected for it has a second To: the first one is tagged.
                    if !has_tag && tag_at.is_none() {
                        tag_at = Some(text.len());
                    }
                    text.push_str("\r\n");
                }
                _ => {}
            }
        }
        Self { text, tag_at }
    }

    /// A whole response: the status line, the copied headers (To tagged with `to_tag` when it
    /// has no tag and `code` is above 100), `extra`, then `Server` and an empty body. The reason
    /// phrase goes through [`push_text`] and the tag through [`Lines::token`]'s class.
    pub fn response(
        &self,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &Lines,
    ) -> Vec<u8> {
        const TAIL: &str = "Server: tollgate\r\nContent-Length: 0\r\n\r\n";
        let reason = clean_text(reason);
        let tag = to_tag.map(|t| escaped(t, &TOKEN));
        let extra = extra.text.as_bytes();
        let mut out = Vec::with_capacity(
            16 + reason.len()
                + self.text.len()
                + 8
                + tag.as_deref().map_or(0, str::len)
                + extra.len()
                + TAIL.len(),
        );
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(decimal(code, &mut [0; 5]).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let text = self.text.as_bytes();
        match (self.tag_at, tag.filter(|_| code > 100)) {
            (Some(at), Some(tag)) => {
                let (before, after) = text.split_at(at.min(text.len()));
                out.extend_from_slice(before);
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(tag.as_bytes());
                out.extend_from_slice(after);
            }
            _ => out.extend_from_slice(text),
        }
        out.extend_from_slice(extra);
        out.extend_from_slice(TAIL.as_bytes());
        out
    }
}

/// Extra header lines of a response, built only through methods that make each value safe for
/// its place: the one way a request's or a decision's value reaches a response, so no value
/// can end a line, add a header or end the head (no CR, LF, NUL or other control byte ever
/// passes). Values already clean (the rule) are copied as they are, after one test of their
/// bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lines {
    text: String,
}

impl Lines {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            text: String::with_capacity(n),
        }
    }

    /// The lines written so far, each ending in CRLF.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Starts a header line: `name: `. Names are the program's constants.
    pub fn start(&mut self, name: &'static str) -> &mut Self {
        debug_assert!(hdr::is_token(name), "{name}");
        self.text.push_str(name);
        self.text.push_str(": ");
        self
    }

    /// Ends the line.
    pub fn end(&mut self) -> &mut Self {
        self.text.push_str("\r\n");
        self
    }

    /// Text of the program's own (separators, parameter names).
    pub fn lit(&mut self, s: &'static str) -> &mut Self {
        debug_assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b)), "{s:?}");
        self.text.push_str(s);
        self
    }

    /// Header text (a rule name, a version): see [`push_text`].
    pub fn text(&mut self, s: &str) -> &mut Self {
        push_text(&mut self.text, s);
        self
    }

    /// Inside a quoted string: [`Lines::text`], with `"` and `\` as `'`.
    pub fn quoted(&mut self, s: &str) -> &mut Self {
        let clean = clean_text(s);
        if clean.bytes().any(|b| b == b'"' || b == b'\\') {
            self.text.push_str(&clean.replace(['"', '\\'], "'"));
        } else {
            self.text.push_str(&clean);
        }
        self
    }

    /// A URI's user part (a queue): bytes outside unreserved and `&=+$,` percent-escaped.
    pub fn user(&mut self, s: &str) -> &mut Self {
        push_escaped(&mut self.text, s, &USER);
        self
    }

    /// A URI's host: bytes outside alphanumerics and `-.:[]` percent-escaped.
    pub fn host(&mut self, s: &str) -> &mut Self {
        push_escaped(&mut self.text, s, &HOST);
        self
    }

    /// A URI parameter's value: bytes outside unreserved and `[]/:&+$` percent-escaped.
    pub fn param(&mut self, s: &str) -> &mut Self {
        push_escaped(&mut self.text, s, &PARAM);
        self
    }

    /// An absolute URI between `<` and `>` (a `Call-Info` URL): bytes outside RFC 3986's
    /// unreserved and reserved characters percent-escaped, `<`, `>`, `"` and spaces among them.
    pub fn uri(&mut self, s: &str) -> &mut Self {
        push_escaped(&mut self.text, s, &URI);
        self
    }

    /// A `token` (RFC 3261 §25.1): other bytes percent-escaped (`%` is a token byte).
    pub fn token(&mut self, s: &str) -> &mut Self {
        push_escaped(&mut self.text, s, &TOKEN);
        self
    }

    /// A party number as `Display` writes it, the text of an unusable one (the URI user as the
    /// request had it, unescaped) with every byte outside visible ASCII, and `%`, escaped.
    pub fn number(&mut self, n: &PartyNumber) -> &mut Self {
        match n {
            PartyNumber::E164(e) => {
                self.text.push('+');
                push_escaped(&mut self.text, e.digits(), &NUMBER);
            }
            PartyNumber::Short(s) => push_escaped(&mut self.text, s, &NUMBER),
            PartyNumber::Withheld(w) => self.text.push_str(w.as_str()),
            PartyNumber::Unusable(s) => {
                self.text.push_str("unusable:");
                push_escaped(&mut self.text, s, &NUMBER);
            }
        }
        self
    }

    /// `n` in decimal.
    pub fn decimal(&mut self, n: u16) -> &mut Self {
        self.text.push_str(decimal(n, &mut [0; 5]));
        self
    }

    /// A whole line given as text (a rejection's extra headers such as `Call-Info` or
    /// `Retry-After`): the name must be a `token` of two or more bytes and not one the writer
    /// owns (Via, From, To, Call-ID, CSeq, Contact, Content-*, Server, in any form), the value
    /// goes through [`push_text`]. Returns false (and writes nothing) when the line is refused.
    pub fn line(&mut self, line: &str) -> bool {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let name = hdr::trim_lws(name);
        if name.len() < 2 || !hdr::is_token(name) || owned(name) {
            return false;
        }
        self.text.push_str(name);
        self.text.push_str(": ");
        push_text(&mut self.text, hdr::trim_lws(value));
        self.end();
        true
    }
}

/// Header names the response writer writes itself: a second one from elsewhere would change
/// what the response means (a second Contact is a second target; Content-Length frames it).
fn owned(name: &str) -> bool {
    matches!(
        HeaderName::from_name(name),
        HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::Contact
            | HeaderName::ContentLength
            | HeaderName::ContentType
            | HeaderName::ContentEncoding
    ) || name.eq_ignore_ascii_case("server")
}

/// The response lines of a decision: the status, its reason phrase and the extra lines (the
/// 302's Contact and `X-` headers, or a rejection's). Every value passes [`Lines`].
pub fn decision<'d>(
    decision: &'d Decision,
    facts: &CallFacts,
    call_ref: &str,
) -> (u16, &'d str, Lines) {
    let mut x = Lines::with_capacity(384);
    match &decision.action {
        DecisionAction::Route(t) => {
            // RFC 5630: a call that came in over TLS is sent on as sips: unless the rule names
            // the scheme.
            let scheme = t.scheme.unwrap_or(match facts.arrival.transport {
                Transport::Tls => UriScheme::Sips,
                Transport::Udp | Transport::Tcp => UriScheme::Sip,
            });
            x.start("Contact")
                .lit("<")
                .lit(scheme.as_str())
                .lit(":")
                .user(&t.queue)
                .lit("@")
                .host(&t.host)
                .lit(";ref=")
                .param(call_ref);
            if let Some(p) = t.priority {
                x.lit(";priority=").decimal(u16::from(p));
            }
            if !t.skills.is_empty() {
                x.lit(";skills=");
                for (i, skill) in t.skills.iter().enumerate() {
                    if i > 0 {
                        x.lit("%2C");
                    }
                    x.param(skill);
                }
            }
            if let Some(l) = &t.language {
                x.lit(";lang=").param(l);
            }
            if t.verify {
                x.lit(";verify");
            }
            if let Some(e) = facts.ani.e164() {
                x.lit(";ani=%2B").param(e.digits());
            }
            // The verification outcome for the ACD (STIR/SHAKEN or the carrier's trusted
            // verstat): an attestation only when the signature verified.
            let risk = facts.risk.as_ref();
            if let Some(risk) = risk {
                x.lit(";risk=").lit(risk.level.as_str());
                if let (Verification::Verified, Some(a)) = (&risk.verification, risk.attestation) {
                    x.lit(";attest=").lit(a.as_str());
                }
            }
            x.lit(">").end();
            x.start("X-Call-Ref").param(call_ref).end();
            x.start("X-ANI").number(&facts.ani).end();
            x.start("X-ANI-Source").lit(facts.ani_source.as_str());
            if !facts.ani_verified {
                x.lit(";unverified");
            }
            x.end();
            x.start("X-DNIS").number(&facts.dnis).end();
            x.start("X-Rule").text(&decision.rule).end();
            x.start("X-Rules-Version").text(&decision.version).end();
            if let Some(risk) = risk {
                match (&risk.verification, risk.attestation) {
                    (Verification::Verified, Some(a)) => {
                        x.start("X-Identity")
                            .lit("verified;attest=")
                            .lit(a.as_str())
                            .end();
                    }
                    (Verification::Verified, None) => {
                        x.start("X-Identity").lit("verified").end();
                    }
                    (Verification::Failed(why), _) => {
                        x.start("X-Identity")
                            .lit("failed;reason=\"")
                            .quoted(why)
                            .lit("\"")
                            .end();
                    }
                    (Verification::Absent, _) => {}
                }
            }
            (302, reason_phrase(302), x)
        }
        DecisionAction::Reject {
            code,
            reason,
            call_info,
            retry_after,
        } => {
            x.start("X-Call-Ref").param(call_ref).end();
            x.start("X-Rule").text(&decision.rule).end();
            if let Some(ci) = call_info {
                // RFC 8688 §3: where the caller of a rejected call can complain.
                x.start("Call-Info")
                    .lit("<")
                    .uri(&ci.url)
                    .lit(">;purpose=jwscard")
                    .end();
            }
            if let Some(secs) = retry_after {
                x.start("Retry-After").text(&secs.to_string()).end();
            }
            (*code, phrase(*code, reason.as_deref()), x)
        }
    }
}

/// `n` in decimal, written in `buf`: responses are written per call, and the formatting
/// machinery costs more than the rest of a status line.
fn decimal(mut n: u16, buf: &mut [u8; 5]) -> &str {
    let mut start = buf.len();
    while let Some(slot) = start.checked_sub(1).and_then(|i| buf.get_mut(i)) {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(buf.get(start..).unwrap_or_default()).unwrap_or_default()
}

/// The address as `received` gives it: IPv4 octets written by hand (the common case), IPv6 by
/// its `Display`.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            let mut buf = [0; 5];
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(decimal(u16::from(o), &mut buf));
            }
            out
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

/// Adds `received` and fills `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581). `v` is clean
/// ([`clean_text`]).
fn top_via(out: &mut String, v: &str, source: SocketAddr) {
    let ip = ip_text(source.ip());
    let mut rport_done = false;
    let mut parts = v.split(';');
    out.push_str(parts.next().unwrap_or_default().trim_end());
    for p in parts {
        let name = hdr::trim_lws(p.split('=').next().unwrap_or_default());
        if name.eq_ignore_ascii_case("rport") {
            out.push_str(";rport=");
            out.push_str(decimal(source.port(), &mut [0; 5]));
            rport_done = true;
        } else if name.eq_ignore_ascii_case("received") {
        } else {
            out.push(';');
            out.push_str(hdr::trim_lws(p));
        }
    }
    let sent_by_host =
        crate::hdr::Via::parse(v).map_or("", |via| via.host.trim_matches(['[', ']']));
    if rport_done || sent_by_host != ip {
        out.push_str(";received=");
        out.push_str(&ip);
    }
}

/// Whether every byte of `s` is printable ASCII: one pass with no early exit, which the
/// compiler runs over many bytes at once.
#[inline]
fn printable_ascii(s: &str) -> bool {
    s.bytes()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x20) < 0x5f))
}

/// `s` as header text: each run of control characters (C0 and C1, DEL; CR LF of a folded
/// value among them) with the white space around it becomes one space, and the ends are
/// trimmed of them. Printable ASCII, the rule, is borrowed after one test.
pub fn clean_text(s: &str) -> Cow<'_, str> {
    if printable_ascii(s) || !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for piece in s
        .split(char::is_control)
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(piece);
    }
    Cow::Owned(out)
}

/// [`clean_text`] into `out`.
#[inline]
fn push_text(out: &mut String, s: &str) {
    out.push_str(&clean_text(s));
}

/// The bytes of a class, as a table of 256.
const fn keep(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut yes = c.is_ascii_alphanumeric();
        let mut j = 0;
        while j < extra.len() {
            #[allow(clippy::indexing_slicing)] // const evaluation: out of range fails the build
            if extra[j] == c {
                yes = true;
            }
            j += 1;
        }
        #[allow(clippy::indexing_slicing)] // const evaluation: out of range fails the build
        {
            t[i] = yes;
        }
        i += 1;
    }
    t
}

/// RFC 3261 `unreserved` and the `user-unreserved` marks that cannot end a user or a URI.
static USER: [bool; 256] = keep(b"-_.!~*'()&=+$,");
/// `paramchar` (RFC 3261 §25.1) without `%`.
static PARAM: [bool; 256] = keep(b"-_.!~*'()[]/:&+$");
/// Hostnames, IPv4 and IPv6 references.
static HOST: [bool; 256] = keep(b"-.:[]");
/// An absolute URI inside `<>` (RFC 3986 unreserved and reserved characters) but `%`, which
/// is escaped like the rest so an escape in the URL stays one.
static URI: [bool; 256] = keep(b"-._~:/?#[]@!$&'()*+,;=");
/// RFC 3261 `token`.
static TOKEN: [bool; 256] = keep(b"-.!%*_+`'~");
/// Visible ASCII but `%`: what a number (or the text of an unusable one) is shown with.
static NUMBER: [bool; 256] = keep(b"!\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~");

#[inline(always)]
fn kept(class: &[bool; 256], b: u8) -> bool {
    class.get(usize::from(b)).copied().unwrap_or(false)
}

/// `s` with each byte outside `class` as `%XX`; borrowed when there is none.
fn escaped<'s>(s: &'s str, class: &[bool; 256]) -> Cow<'s, str> {
    if s.bytes().fold(true, |ok, b| ok & kept(class, b)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if kept(class, b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(
                HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
            ));
            out.push(char::from(
                HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'),
            ));
        }
    }
    Cow::Owned(out)
}

/// [`escaped`] into `out`.
#[inline]
fn push_escaped(out: &mut String, s: &str, class: &[bool; 256]) {
    out.push_str(&escaped(s, class));
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+18005550100@tollgate.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKa;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKc\r\n\
From: \"A\"\r\n <sip:+12125551212@carrier.example>;tag=1\r\n\
To: <sip:+18005550100@tollgate.example>\r\n\
Call-ID: abc@x\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:a@198.51.100.10>\r\n\
Content-Length: 0\r\n\r\n";

    fn source() -> SocketAddr {
        "192.0.2.7:5062".parse().expect("address")
    }

    /// The response to `request` as text, To-tag `t9` offered.
    fn respond(request: &str, code: u16, reason: &str, extra: &[String]) -> String {
        let msg = Message::parse(request.as_bytes()).expect("parse");
        String::from_utf8(build(&msg, source(), code, reason, Some("t9"), extra)).expect("text")
    }

    /// The 302 Contact is `sips:` for a call that came in over TLS, `sip:` otherwise, unless the
    /// rule named the scheme (RFC 5630).
    #[test]
    fn contact_scheme_follows_the_transport_unless_the_rule_names_it() {
        use tollgate_core::{Arrival, Target};
        let msg = Message::parse(INVITE.as_bytes()).expect("parse");
        let req = crate::message::Request::from_message(msg, true).expect("valid");
        let plan = tollgate_core::NumberPlan::load();
        let trunk = crate::trunk::Trunk {
            name: "t".into(),
            cidrs: Vec::new(),
            trusted: true,
            ani_precedence: crate::trunk::Trunk::DEFAULT_ANI.to_vec(),
            dnis_precedence: crate::trunk::Trunk::DEFAULT_DNIS.to_vec(),
            region: plan.region("US").expect("US").clone(),
            tls_peers: Vec::new(),
        };
        let mut facts =
            crate::extract::extract(&req, &trunk, &plan, &crate::extract::Emergency::default());
        for (transport, scheme, want) in [
            (Transport::Udp, None, "<sip:q@acd;"),
            (Transport::Tcp, None, "<sip:q@acd;"),
            (Transport::Tls, None, "<sips:q@acd;"),
            (Transport::Tls, Some(UriScheme::Sip), "<sip:q@acd;"),
            (Transport::Udp, Some(UriScheme::Sips), "<sips:q@acd;"),
        ] {
            facts.arrival = Arrival {
                transport,
                tls_peer: None,
            };
            let d = Decision {
                action: DecisionAction::Route(Target {
                    scheme,
                    ..Target::new("q", "acd")
                }),
                rule: "r".into(),
                version: Default::default(),
            };
            let (_, _, lines) = decision(&d, &facts, "ref1");
            assert!(
                lines.as_str().starts_with(&format!("Contact: {want}")),
                "{transport:?} {scheme:?}: {}",
                lines.as_str()
            );
        }
    }

    /// Each copied header once, in the request's order; the top Via gets `received` and `rport`,
    /// folding is undone, To gets the tag above 100 only, and extra lines come before Server.
    #[test]
    fn responses_copy_the_request_headers() {
        let head =
            "Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKa;rport=5062;received=192.0.2.7\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKc\r\n\
From: \"A\" <sip:+12125551212@carrier.example>;tag=1\r\n";
        assert_eq!(
            respond(INVITE, 100, "Trying", &[]),
            format!(
                "SIP/2.0 100 Trying\r\n{head}To: <sip:+18005550100@tollgate.example>\r\n\
Call-ID: abc@x\r\nCSeq: 1 INVITE\r\nServer: tollgate\r\nContent-Length: 0\r\n\r\n"
            )
        );
        let extra = ["Retry-After: 5".to_owned(), "X-A:1 ".to_owned()];
        assert_eq!(
            respond(INVITE, 302, "Moved\r\nTemporarily", &extra),
            format!(
                "SIP/2.0 302 Moved Temporarily\r\n{head}To: <sip:+18005550100@tollgate.example>;tag=t9\r\n\
Call-ID: abc@x\r\nCSeq: 1 INVITE\r\nRetry-After: 5\r\nX-A: 1\r\n\
Server: tollgate\r\nContent-Length: 0\r\n\r\n"
            )
        );
        // A To that has a tag keeps it.
        let tagged = INVITE.replace(
            "tollgate.example>\r\nCall",
            "tollgate.example>;tag=x\r\nCall",
        );
        let text = respond(&tagged, 486, "Busy Here", &[]);
        assert!(
            text.contains("\r\nTo: <sip:+18005550100@tollgate.example>;tag=x\r\n"),
            "{text}"
        );
        assert!(!text.contains("t9"), "{text}");
        // A request with two To headers (answered 400) gets the tag on the first.
        let two = INVITE.replace("Call-ID:", "To: <sip:b@x>\r\nCall-ID:");
        let text = respond(&two, 400, "Bad Request", &[]);
        assert!(
            text.contains("tollgate.example>;tag=t9\r\nTo: <sip:b@x>\r\n"),
            "{text}"
        );
    }

    #[test]
    fn numbers_and_addresses_as_display_writes_them() {
        for n in [0u16, 7, 10, 100, 302, 487, 699, 9999, 65535] {
            assert_eq!(decimal(n, &mut [0; 5]), n.to_string());
        }
        for ip in [
            "0.0.0.0",
            "192.0.2.7",
            "255.255.255.255",
            "10.20.0.3",
            "2001:db8::1",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().expect("address");
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    /// Extra lines the writer owns, or that have no valid name, are refused; the rest are
    /// written on one line each.
    #[test]
    fn extra_lines_cannot_name_what_the_writer_owns() {
        for bad in [
            "Contact: <sip:evil@x>",
            "m: <sip:evil@x>",
            "Via: SIP/2.0/UDP evil",
            "v: SIP/2.0/UDP evil",
            "l: 10",
            "Content-Length: 10",
            "content-type: text/plain",
            "To: <sip:x@y>",
            "t: <sip:x@y>",
            "CSeq: 2 INVITE",
            "Call-ID: other",
            "i: other",
            "From: <sip:x@y>",
            "f: <sip:x@y>",
            "Server: evil",
            "X: single letter",
            "no colon",
            "Bad Name: x",
            ": empty name",
            "X\r\nContact: <sip:evil@x>",
        ] {
            let mut l = Lines::default();
            assert!(!l.line(bad), "{bad:?}");
            assert_eq!(l.as_str(), "", "{bad:?}");
        }
        let mut l = Lines::default();
        assert!(l.line("Call-Info: <https://x/c>;purpose=jwscard\r\nContact: <sip:evil@x>"));
        assert_eq!(
            l.as_str(),
            "Call-Info: <https://x/c>;purpose=jwscard Contact: <sip:evil@x>\r\n"
        );
    }

    /// Every class keeps exactly its bytes, escapes the others as `%XX` (so the escaped text
    /// unescapes to the input), and borrows clean text.
    #[test]
    fn escaping_classes() {
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain(['é', '\u{85}'])
            .collect();
        for class in [&USER, &PARAM, &HOST, &TOKEN, &NUMBER] {
            let out = escaped(&all, class);
            assert!(printable_ascii(&out), "{out:?}");
            let back = crate::uri::unescape(&out);
            if !kept(class, b'%') {
                assert_eq!(back, all, "{out}");
            }
        }
        assert!(matches!(escaped("support-de", &USER), Cow::Borrowed(_)));
        assert!(matches!(clean_text("support/vip"), Cow::Borrowed(_)));
        assert!(matches!(clean_text("Ünïcode ok"), Cow::Borrowed(_)));
        assert_eq!(clean_text(" a\r\n\tb\0c\u{7f}\u{85}d \r\n"), "a b c d");
        assert_eq!(clean_text("\r\n"), "");
        assert_eq!(escaped("x\r\n", &NUMBER), "x%0D%0A");
    }

    mod shape {
        use super::*;
        use proptest::prelude::*;
        use tollgate_core::{
            Attestation, NumberPlan, RiskAssessment, RiskLevel, Target, Verification,
        };

        /// Text rich in what breaks messages: CR, LF, NUL, other controls (C0, DEL, C1),
        /// separators of headers, URIs and lists, escapes, and any other char.
        fn nasty() -> impl Strategy<Value = String> {
            let ch = prop_oneof![
                4 => proptest::sample::select(vec![
                    '\r', '\n', '\0', '\t', '\u{7f}', '\u{85}', '\u{1b}', ' ', ':', ';', ',', '<',
                    '>', '"', '\\', '%', '@', '=', '?', '&', '[', ']', '/',
                ]),
                3 => proptest::char::range('a', 'z'),
                1 => any::<char>(),
            ];
            proptest::collection::vec(ch, 0..24).prop_map(|v| v.into_iter().collect())
        }

        /// Any bytes as the parser's number text would be: arbitrary, made UTF-8.
        fn bytes() -> impl Strategy<Value = String> {
            proptest::collection::vec(any::<u8>(), 0..32)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
        }

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![nasty(), bytes()]
        }

        fn number() -> impl Strategy<Value = PartyNumber> {
            prop_oneof![
                text().prop_map(PartyNumber::Unusable),
                text().prop_map(PartyNumber::Short),
                Just(PartyNumber::Withheld(tollgate_core::Withheld::Anonymous)),
            ]
        }

        fn facts() -> CallFacts {
            static FACTS: std::sync::OnceLock<CallFacts> = std::sync::OnceLock::new();
            FACTS.get_or_init(extracted).clone()
        }

        fn extracted() -> CallFacts {
            let msg = Message::parse(INVITE.as_bytes()).expect("parse");
            let req = crate::message::Request::from_message(msg, true).expect("valid");
            let plan = NumberPlan::load();
            let trunk = crate::trunk::Trunk {
                name: "t".into(),
                cidrs: Vec::new(),
                trusted: true,
                ani_precedence: crate::trunk::Trunk::DEFAULT_ANI.to_vec(),
                dnis_precedence: crate::trunk::Trunk::DEFAULT_DNIS.to_vec(),
                region: plan.region("US").expect("US").clone(),
                tls_peers: Vec::new(),
            };
            crate::extract::extract(&req, &trunk, &plan, &crate::extract::Emergency::default())
        }

        /// What one rendered response must be, whatever the values: one message, its head
        /// ended once at the very end, CR only before LF and LF only after CR, no other
        /// control character, and, parsed back by this crate's parser, a response with `code`
        /// whose header names are `names` exactly, in order.
        fn check_shape(bytes: &[u8], code: u16, names: &[&str]) -> Result<(), TestCaseError> {
            let text =
                std::str::from_utf8(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let end = text.find("\r\n\r\n").map(|i| i + 4);
            prop_assert_eq!(
                end,
                Some(text.len()),
                "one head, ended once, no body: {:?}",
                text
            );
            for (i, b) in bytes.iter().enumerate() {
                match b {
                    b'\r' => prop_assert_eq!(bytes.get(i + 1), Some(&b'\n'), "{:?}", text),
                    b'\n' => {
                        prop_assert_eq!(bytes.get(i.wrapping_sub(1)), Some(&b'\r'), "{:?}", text)
                    }
                    _ => {}
                }
            }
            prop_assert!(
                !text
                    .chars()
                    .any(|c| c.is_control() && c != '\r' && c != '\n'),
                "control character in {:?}",
                text
            );
            let msg = Message::parse(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(msg.problem.is_none(), "{:?} in {:?}", msg.problem, text);
            prop_assert!(
                matches!(msg.start, crate::message::StartLine::Response { code: c, .. } if c == code),
                "{:?}",
                text
            );
            let got: Vec<&str> = msg.headers.iter().map(|h| h.raw_name).collect();
            prop_assert_eq!(&got, &names.to_vec(), "{:?}", text);
            prop_assert!(msg.body.is_empty());
            Ok(())
        }

        const COPIED: [&str; 7] = ["Via", "Via", "Via", "From", "To", "Call-ID", "CSeq"];

        fn with(mid: &[&'static str]) -> Vec<&'static str> {
            let mut v = COPIED.to_vec();
            v.extend_from_slice(mid);
            v.extend_from_slice(&["Server", "Content-Length"]);
            v
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Every value a 302 echoes (queue, host, skills, language, call reference, ANI,
            /// DNIS, rule, version, a failed verification's reason, the To-tag): whatever its
            /// bytes, the 302 has the same header lines, one Contact whose user is the queue.
            #[test]
            fn a_302_keeps_its_shape(
                queue in text(), host in text(), skills in proptest::collection::vec(text(), 0..3),
                lang in proptest::option::of(text()), call_ref in text(), ani in number(),
                dnis in number(), rule in text(), version in text(), why in text(),
                tag in text(), verified in any::<bool>(), plain_host in "[a-z][a-z0-9.-]{0,12}|",
            ) {
                let mut f = facts();
                f.ani = ani;
                f.dnis = dnis;
                f.risk = Some(RiskAssessment {
                    level: RiskLevel::Low,
                    attestation: Some(Attestation::A),
                    verification: if verified { Verification::Verified } else { Verification::Failed(why) },
                    ..RiskAssessment::default()
                });
                let d = Decision {
                    action: DecisionAction::Route(Target {
                        queue: queue.clone().into(),
                        host: host.into(),
                        priority: Some(7),
                        skills: skills.into_iter().map(Into::into).collect(),
                        language: lang.map(Into::into),
                        verify: true,
                        scheme: None,
                    }),
                    rule: rule.into(),
                    version: version.into(),
                };
                let (code, reason, lines) = decision(&d, &f, &call_ref);
                let msg = Message::parse(INVITE.as_bytes()).expect("parse");
                let bytes = Copied::new(&msg, source()).response(code, reason, Some(&tag), &lines);
                check_shape(&bytes, 302, &with(&[
                    "Contact", "X-Call-Ref", "X-ANI", "X-ANI-Source", "X-DNIS", "X-Rule",
                    "X-Rules-Version", "X-Identity",
                ]))?;
                // With a hostname and a queue, the Contact is a URI whose user unescapes to the
                // queue: escaping loses nothing.
                if !queue.is_empty() && !plain_host.is_empty() {
                    let d = Decision {
                        action: DecisionAction::Route(Target::new(queue.clone(), plain_host)),
                        rule: Default::default(),
                        version: Default::default(),
                    };
                    let (_, _, lines) = decision(&d, &f, "r");
                    let bytes = Copied::new(&msg, source()).response(302, "x", None, &lines);
                    let resp = Message::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let contact = resp.header(HeaderName::Contact).unwrap_or_default();
                    let na = hdr::NameAddr::parse(contact)
                        .map_err(|e| TestCaseError::fail(format!("{e:?}: {contact}")))?;
                    let user = na.uri.and_then(|u| u.user_unescaped());
                    prop_assert_eq!(user.as_deref(), Some(queue.as_str()), "{}", contact);
                }
            }

            /// A rejection's reason phrase, rule, Call-Info URL and Retry-After, whatever
            /// their text: the response has X-Call-Ref, X-Rule, then Call-Info and Retry-After
            /// once each when given, nothing else, and the URL stays inside its `<>`.
            #[test]
            fn a_rejection_keeps_its_shape(
                code in 300u16..700, reason in text(), rule in text(), call_ref in text(),
                url in proptest::option::of(text()), retry in proptest::option::of(0u32..100_000),
            ) {
                let d = Decision {
                    action: DecisionAction::Reject {
                        code,
                        reason: Some(reason.into()),
                        call_info: url.clone().map(|url| tollgate_core::CallInfo { url }),
                        retry_after: retry,
                    },
                    rule: rule.into(),
                    version: Default::default(),
                };
                let mut mid = vec!["X-Call-Ref", "X-Rule"];
                if url.is_some() {
                    mid.push("Call-Info");
                }
                if retry.is_some() {
                    mid.push("Retry-After");
                }
                let f = facts();
                let (code, reason, lines) = decision(&d, &f, &call_ref);
                let msg = Message::parse(INVITE.as_bytes()).expect("parse");
                let bytes = Copied::new(&msg, source()).response(code, reason, Some("t"), &lines);
                let resp = Message::parse(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let names: Vec<&str> = resp.headers.iter().map(|h| h.raw_name).collect();
                check_shape(&bytes, code, &names)?;
                let (head, rest) = names.split_at(COPIED.len().min(names.len()));
                prop_assert_eq!(head, &COPIED[..], "{:?}", names);
                prop_assert_eq!(rest, &[&mid[..], &["Server", "Content-Length"]].concat()[..]);
                if let Some(h) = resp.headers.iter().find(|h| h.raw_name == "Call-Info") {
                    let inner = h.value.strip_prefix('<').and_then(|v| v.strip_suffix(">;purpose=jwscard"));
                    prop_assert!(inner.is_some_and(|u| !u.contains(['<', '>', '"', ' '])), "{:?}", h.value);
                }
                if let (Some(h), Some(secs)) = (resp.headers.iter().find(|h| h.raw_name == "Retry-After"), retry) {
                    prop_assert_eq!(h.value, secs.to_string());
                }
            }

            /// The request's own headers (Via, From, To, Call-ID, CSeq) with any value, and any
            /// reason phrase and To-tag: the response still has each once per request line.
            #[test]
            fn copied_headers_keep_their_shape(
                from in text(), to in text(), call_id in text(), cseq in text(), via in text(),
                reason in text(), tag in text(),
            ) {
                let mut msg = Message::parse(INVITE.as_bytes()).expect("parse");
                for h in &mut msg.headers {
                    match h.name {
                        HeaderName::From => h.value = &from,
                        HeaderName::To => h.value = &to,
                        HeaderName::CallId => h.value = &call_id,
                        HeaderName::CSeq => h.value = &cseq,
                        _ => {}
                    }
                }
                // The second Via line, when the value is one list item (as every Via value the
                // parser passes is).
                if let Some(h) = msg.headers.iter_mut().filter(|h| h.name == HeaderName::Via).nth(1) {
                    if hdr::split_list(&via).count() == 1 {
                        h.value = &via;
                    }
                }
                let mut extra = Lines::default();
                extra.start("X-T").text(&reason).end();
                let bytes = Copied::new(&msg, source()).response(486, &reason, Some(&tag), &extra);
                check_shape(&bytes, 486, &with(&["X-T"]))?;
            }
        }
    }
}
