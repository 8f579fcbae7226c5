//! Building responses (RFC 3261 §8.2.6): headers copied from the request, a To-tag added.

use std::fmt::Write as _;
use std::net::SocketAddr;

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
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {code} {}\r\n", sanitize(reason));
    let mut first_via = true;
    for h in &msg.headers {
        match h.name {
            HeaderName::Via => {
                for v in hdr::split_list(h.value) {
                    out.push_str("Via: ");
                    if first_via {
                        top_via(&mut out, v, source);
                        first_via = false;
                    } else {
                        out.push_str(v);
                    }
                    out.push_str("\r\n");
                }
            }
            HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                let _ = write!(out, "{}: {}\r\n", h.name.as_str(), unfold(h.value));
            }
            HeaderName::To => {
                let _ = write!(out, "To: {}", unfold(h.value));
                if let Some(tag) = to_tag.filter(|_| code > 100) {
                    let has_tag = hdr::NameAddr::parse(h.value)
                        .map(|na| na.param("tag").is_some())
                        .unwrap_or(true);
                    if !has_tag {
                        let _ = write!(out, ";tag={tag}");
                    }
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Server: tollgate\r\nContent-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// Adds `received` and fills `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581).
fn top_via(out: &mut String, v: &str, source: SocketAddr) {
    let ip = source.ip().to_string();
    let mut rport_done = false;
    let mut parts = v.split(';');
    out.push_str(parts.next().unwrap_or_default().trim_end());
    for p in parts {
        let name = hdr::trim_lws(p.split('=').next().unwrap_or_default());
        if name.eq_ignore_ascii_case("rport") {
            let _ = write!(out, ";rport={}", source.port());
            rport_done = true;
        } else if name.eq_ignore_ascii_case("received") {
        } else {
            out.push(';');
            out.push_str(hdr::trim_lws(p));
        }
    }
    let sent_by_host = crate::hdr::Via::parse(v)
        .map(|via| via.host.trim_matches(['[', ']']).to_owned())
        .unwrap_or_default();
    if rport_done || sent_by_host != ip {
        let _ = write!(out, ";received={ip}");
    }
}

/// Folded values go out on one line.
fn unfold(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains(['\r', '\n']) {
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
