//! Building responses (RFC 3261 §8.2.6): headers copied from the request, a To-tag added.

use std::net::{IpAddr, SocketAddr};

use crate::hdr;
use crate::message::{HeaderName, Message};

/// Standard reason phrases for the statuses this server sends.
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
        _ => "Unknown",
    }
}

/// Writes a response to `msg` (a request). `to_tag` is added to To when it has none and the
/// status is above 100. `extra` lines are written verbatim (each without CRLF).
pub fn build(
    msg: &Message<'_>,
    source: SocketAddr,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[String],
) -> Vec<u8> {
    let mut lines = String::new();
    for line in extra {
        lines.push_str(line);
        lines.push_str("\r\n");
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
                            top_via(&mut text, v, source);
                            first_via = false;
                        } else {
                            text.push_str(v);
                        }
                        text.push_str("\r\n");
                    }
                }
                HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    text.push_str(h.name.as_str());
                    text.push_str(": ");
                    text.push_str(&unfold(h.value));
                    text.push_str("\r\n");
                }
                HeaderName::To => {
                    text.push_str("To: ");
                    text.push_str(&unfold(h.value));
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
    /// has no tag and `code` is above 100), `extra` (complete lines, each ending in CRLF), then
    /// `Server` and an empty body.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>, extra: &str) -> Vec<u8> {
        const TAIL: &str = "Server: tollgate\r\nContent-Length: 0\r\n\r\n";
        let reason = sanitize(reason);
        let mut out = Vec::with_capacity(
            16 + reason.len()
                + self.text.len()
                + 8
                + to_tag.map_or(0, str::len)
                + extra.len()
                + TAIL.len(),
        );
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(decimal(code, &mut [0; 5]).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let text = self.text.as_bytes();
        match (self.tag_at, to_tag.filter(|_| code > 100)) {
            (Some(at), Some(tag)) => {
                let (before, after) = text.split_at(at.min(text.len()));
                out.extend_from_slice(before);
                out.extend_from_slice(b";tag=");
                out.extend_from_slice(tag.as_bytes());
                out.extend_from_slice(after);
            }
            _ => out.extend_from_slice(text),
        }
        out.extend_from_slice(extra.as_bytes());
        out.extend_from_slice(TAIL.as_bytes());
        out
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

/// Adds `received` and fills `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581).
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

/// Folded values go out on one line.
fn unfold(v: &str) -> std::borrow::Cow<'_, str> {
    // A byte test: `contains` with a char set costs several times more per value.
    if v.bytes().any(|b| b == b'\r' || b == b'\n') {
        v.split(['\r', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .into()
    } else {
        v.into()
    }
}

/// A reason phrase or header value must not break the message.
pub fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_control()) {
        s.chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
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
        let extra = ["Contact: <sip:q@acd>".to_owned(), "X-A: 1".to_owned()];
        assert_eq!(
            respond(INVITE, 302, "Moved\r\nTemporarily", &extra),
            format!(
                "SIP/2.0 302 MovedTemporarily\r\n{head}To: <sip:+18005550100@tollgate.example>;tag=t9\r\n\
Call-ID: abc@x\r\nCSeq: 1 INVITE\r\nContact: <sip:q@acd>\r\nX-A: 1\r\n\
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
}
