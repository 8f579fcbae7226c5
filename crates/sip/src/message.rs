//! SIP message framing and request validation (RFC 3261 §7, §8.2, §18.3), zero-copy.
//!
//! [`Message::parse`] splits a datagram into start line, header lines and body and never fails
//! on content it can still answer; [`Request::from_message`] then checks what a redirect server
//! needs and says what is wrong with a status and a reason phrase naming the problem.

use std::borrow::Cow;

use crate::hdr::{self, CSeq, NameAddr, ValueError, Via};
use crate::scan::{self, find_byte, find_either, find_from, HI};
use crate::uri::{split_once_b, Uri, UriError};

/// Largest message accepted on any transport.
pub const MAX_MESSAGE: usize = 65_535;

/// Known header names, compact forms folded in (RFC 3261 §7.3.3 and the IANA registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    CallId,
    From,
    To,
    Via,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Supported,
    Subject,
    ContentEncoding,
    PAssertedIdentity,
    PPreferredIdentity,
    RemotePartyId,
    PChargeInfo,
    Privacy,
    Diversion,
    HistoryInfo,
    Identity,
    Require,
    PCalledPartyId,
    ResourcePriority,
    Other,
}

impl HeaderName {
    pub fn from_name(n: &str) -> Self {
        Self::lookup(n.as_bytes())
    }

    /// [`HeaderName::from_name`], inlined into the parser's loop.
    #[inline(always)]
    fn lookup(b: &[u8]) -> Self {
        use HeaderName as H;
        let Some(&first) = b.first() else {
            return H::Other;
        };
        // `| 0x20` lower-cases a letter and turns no other byte into a lower-case letter, so it
        // picks the same arm as `to_ascii_lowercase` at the cost of one instruction.
        let f = first | 0x20;
        // One candidate per length and first letter (Call-ID and Contact differ at the second),
        // compared a word at a time against a literal the compiler folds into constants.
        let is = |name: &[u8], h: HeaderName| {
            if eq_lowercase(b, name) {
                h
            } else {
                H::Other
            }
        };
        match (b.len(), f) {
            (1, b'i') => H::CallId,
            (1, b'f') => H::From,
            (1, b't') => H::To,
            (1, b'v') => H::Via,
            (1, b'm') => H::Contact,
            (1, b'l') => H::ContentLength,
            (1, b'c') => H::ContentType,
            (1, b'k') => H::Supported,
            (1, b's') => H::Subject,
            (1, b'e') => H::ContentEncoding,
            (1, b'y') => H::Identity,
            (2, b't') => is(b"to", H::To),
            (3, b'v') => is(b"via", H::Via),
            (4, b'f') => is(b"from", H::From),
            (4, b'c') => is(b"cseq", H::CSeq),
            (7, b'c') => {
                if b.get(1).map(|c| c | 0x20) == Some(b'a') {
                    is(b"call-id", H::CallId)
                } else {
                    is(b"contact", H::Contact)
                }
            }
            (7, b'p') => is(b"privacy", H::Privacy),
            (7, b'r') => is(b"require", H::Require),
            (7, b's') => is(b"subject", H::Subject),
            (8, b'i') => is(b"identity", H::Identity),
            (9, b'd') => is(b"diversion", H::Diversion),
            (9, b's') => is(b"supported", H::Supported),
            (12, b'm') => is(b"max-forwards", H::MaxForwards),
            (12, b'c') => is(b"content-type", H::ContentType),
            (12, b'h') => is(b"history-info", H::HistoryInfo),
            (13, b'p') => is(b"p-charge-info", H::PChargeInfo),
            (14, b'c') => is(b"content-length", H::ContentLength),
            (15, b'r') => is(b"remote-party-id", H::RemotePartyId),
            (16, b'c') => is(b"content-encoding", H::ContentEncoding),
            (17, b'p') => is(b"p-called-party-id", H::PCalledPartyId),
            (17, b'r') => is(b"resource-priority", H::ResourcePriority),
            (19, b'p') => is(b"p-asserted-identity", H::PAssertedIdentity),
            (20, b'p') => is(b"p-preferred-identity", H::PPreferredIdentity),
            _ => H::Other,
        }
    }

    /// This name's bit in a set of header names.
    const fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// Every kind but `Other`, in declaration order.
    const KNOWN: [HeaderName; HeaderName::Other as usize] = [
        HeaderName::CallId,
        HeaderName::From,
        HeaderName::To,
        HeaderName::Via,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
        HeaderName::ContentType,
        HeaderName::Contact,
        HeaderName::Supported,
        HeaderName::Subject,
        HeaderName::ContentEncoding,
        HeaderName::PAssertedIdentity,
        HeaderName::PPreferredIdentity,
        HeaderName::RemotePartyId,
        HeaderName::PChargeInfo,
        HeaderName::Privacy,
        HeaderName::Diversion,
        HeaderName::HistoryInfo,
        HeaderName::Identity,
        HeaderName::Require,
        HeaderName::PCalledPartyId,
        HeaderName::ResourcePriority,
    ];

    /// Headers that may appear once only (RFC 3261 §7.3.1, §20), one bit each.
    const SINGLE: u32 = HeaderName::CallId.bit()
        | HeaderName::From.bit()
        | HeaderName::To.bit()
        | HeaderName::CSeq.bit()
        | HeaderName::MaxForwards.bit()
        | HeaderName::ContentLength.bit()
        | HeaderName::ContentType.bit();

    /// Canonical name, for error reasons.
    pub const fn as_str(self) -> &'static str {
        match self {
            HeaderName::CallId => "Call-ID",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::Via => "Via",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Contact => "Contact",
            HeaderName::Supported => "Supported",
            HeaderName::Subject => "Subject",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::PPreferredIdentity => "P-Preferred-Identity",
            HeaderName::RemotePartyId => "Remote-Party-ID",
            HeaderName::PChargeInfo => "P-Charge-Info",
            HeaderName::Privacy => "Privacy",
            HeaderName::Diversion => "Diversion",
            HeaderName::HistoryInfo => "History-Info",
            HeaderName::Identity => "Identity",
            HeaderName::Require => "Require",
            HeaderName::PCalledPartyId => "P-Called-Party-ID",
            HeaderName::ResourcePriority => "Resource-Priority",
            HeaderName::Other => "header",
        }
    }
}

/// One header line (folded continuation lines included in `value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: HeaderName,
    pub raw_name: &'a str,
    pub value: &'a str,
}

/// The first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Response {
        code: u16,
        reason: &'a str,
    },
}

/// A problem found while splitting the message that still allows an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub reason: Cow<'static, str>,
}

impl Problem {
    fn bad(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status: 400,
            reason: reason.into(),
        }
    }
}

/// Why a message is dropped without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Garbage {
    #[error("empty or keep-alive")]
    Empty,
    #[error("no end of headers")]
    NoEndOfHeaders,
    #[error("headers are not UTF-8")]
    NotUtf8,
    #[error("malformed status line")]
    BadStatusLine,
    #[error("message too large")]
    TooLarge,
}

/// A split SIP message borrowing from the datagram.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    pub start: StartLine<'a>,
    pub headers: Vec<Header<'a>>,
    pub body: &'a [u8],
    /// The first problem found, if the message is still answerable (a request).
    pub problem: Option<Problem>,
    /// The kinds in `headers`, one bit each (`1 << name as u32`), so a lookup of an absent kind
    /// costs no walk. [`Message::parse`] fills it; code that edits `headers` must keep it in step.
    pub present: u32,
}

/// Eight bytes from `b[i..]` as a little-endian word (0 when fewer remain).
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u64 {
    match b.get(i..i + 8) {
        Some(&[b0, b1, b2, b3, b4, b5, b6, b7]) => {
            u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
        }
        _ => 0,
    }
}

/// 0x20 in each byte of `x` that is an ASCII lower-case letter: OR-ed into a word of input it
/// maps both cases of those letters onto `x` and leaves every other byte to compare exactly.
#[inline(always)]
const fn case_bits(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let h = x & LOW7;
    // Per byte, without carries between bytes: high bit set when h >= 'a', and when h > 'z'.
    let ge_a = h + 0x1f1f_1f1f_1f1f_1f1f;
    let gt_z = h + 0x0505_0505_0505_0505;
    (ge_a & !gt_z & !x & HI) >> 2
}

/// A word of input equals a word of a lower-case name, ignoring ASCII case (the name's words
/// are constants once inlined, so this is an OR and a compare).
#[inline(always)]
fn eq_word(input: u64, lower: u64) -> bool {
    input | case_bits(lower) == lower
}

/// Four bytes from `b[i..]` as a little-endian word (0 when fewer remain).
#[inline(always)]
fn word4_at(b: &[u8], i: usize) -> u64 {
    match b.get(i..i + 4) {
        Some(&[b0, b1, b2, b3]) => u64::from(u32::from_le_bytes([b0, b1, b2, b3])),
        _ => 0,
    }
}

/// Two bytes from `b[i..]` as a little-endian word (0 when fewer remain).
#[inline(always)]
fn word2_at(b: &[u8], i: usize) -> u64 {
    match b.get(i..i + 2) {
        Some(&[b0, b1]) => u64::from(u16::from_le_bytes([b0, b1])),
        _ => 0,
    }
}

/// `s.eq_ignore_ascii_case(lower)` for an all-lower-case `lower`, a word at a time (two
/// overlapping loads for short names), as header names are compared on every line.
#[inline(always)]
fn eq_lowercase(s: &[u8], lower: &[u8]) -> bool {
    let n = s.len();
    if n != lower.len() {
        return false;
    }
    match n {
        0 => true,
        1 => s.first().map(u8::to_ascii_lowercase) == lower.first().copied(),
        2..=3 => {
            eq_word(word2_at(s, 0), word2_at(lower, 0))
                && eq_word(word2_at(s, n - 2), word2_at(lower, n - 2))
        }
        4..=7 => {
            eq_word(word4_at(s, 0), word4_at(lower, 0))
                && eq_word(word4_at(s, n - 4), word4_at(lower, n - 4))
        }
        _ => {
            let mut i = 0;
            while i + 8 < n {
                if !eq_word(word_at(s, i), word_at(lower, i)) {
                    return false;
                }
                i += 8;
            }
            eq_word(word_at(s, n - 8), word_at(lower, n - 8))
        }
    }
}

/// The first CRLF in `b` at or after `from`, as an index into `b`. Not inlined, as
/// [`find_either`] is not.
#[inline(never)]
fn find_crlf(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let lf = find_from(b, at, b'\n')?;
        if lf > from && b.get(lf - 1) == Some(&b'\r') {
            return Some(lf - 1);
        }
        at = lf + 1;
    }
}

/// The first ':' or CR at or after `from`, by [`find_either`] with constants (not inlined, as
/// [`find_crlf`] is not).
#[inline(never)]
fn find_colon_or_cr(b: &[u8], from: usize) -> Option<usize> {
    find_either(b, from, b':', b'\r')
}

fn find_crlfcrlf(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let lf = at + find_byte(b.get(at..)?, b'\n')?;
        if lf >= 3 && b.get(lf - 3..=lf) == Some(b"\r\n\r\n") {
            return Some(lf - 3);
        }
        at = lf + 1;
    }
}

/// TCP framing result for [`frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not all of the message has arrived.
    Incomplete,
    /// `skip` bytes of leading CRLF keep-alives, then a message of `len` bytes.
    Message {
        skip: usize,
        len: usize,
        missing_length: bool,
    },
    /// Leading CRLFs only.
    KeepAlive(usize),
    /// The stream cannot be framed: answer if possible, then close.
    Invalid(&'static str),
}

/// Finds one message in a stream buffer using Content-Length (RFC 3261 §18.3).
pub fn frame(buf: &[u8]) -> Frame {
    let skip = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = buf.get(skip..).unwrap_or_default();
    if rest.is_empty() {
        return if skip > 0 {
            Frame::KeepAlive(skip)
        } else {
            Frame::Incomplete
        };
    }
    let Some(head) = find_crlfcrlf(rest) else {
        return if rest.len() > MAX_MESSAGE {
            Frame::Invalid("headers too large")
        } else {
            Frame::Incomplete
        };
    };
    let head_len = head + 4;
    let (text, true) = scan::utf8_prefix(rest.get(..head).unwrap_or_default()) else {
        return Frame::Invalid("headers are not UTF-8");
    };
    let mut length = None;
    for line in text.split("\r\n").skip(1) {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if HeaderName::from_name(name.trim_end_matches([' ', '\t'])) == HeaderName::ContentLength {
            match hdr::bounded_number(value, MAX_MESSAGE as u64) {
                Ok(n) if length.is_none_or(|l| l == n) => length = Some(n),
                Ok(_) => return Frame::Invalid("conflicting Content-Length headers"),
                Err(_) => return Frame::Invalid("malformed Content-Length"),
            }
        }
    }
    let body = usize::try_from(length.unwrap_or(0)).unwrap_or(usize::MAX);
    let len = head_len.saturating_add(body);
    if len > MAX_MESSAGE {
        return Frame::Invalid("message too large");
    }
    if rest.len() < len {
        return Frame::Incomplete;
    }
    Frame::Message {
        skip,
        len,
        missing_length: length.is_none(),
    }
}

/// One piece of a stream buffer, as [`drain_frames`] hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framed<'b> {
    /// A whole message, keep-alive CRLFs before it stepped over.
    Message(&'b [u8]),
    /// A whole message without Content-Length, which a stream cannot be framed without
    /// (RFC 3261 §18.3): answer 400, then close.
    MissingLength(&'b [u8]),
    /// The buffer (all of it) cannot be framed, for the reason given: answer 400, then close.
    Invalid(&'b [u8], &'static str),
}

/// Takes every whole message and keep-alive off the front of a TCP stream buffer, in order,
/// handing each message to `on`: what the TCP read loop does after every read. Returns `None`
/// when the connection must close (after [`Framed::MissingLength`] or [`Framed::Invalid`]),
/// else whether a message was completed; what is left in `buf` is the start of the next one.
pub fn drain_frames(buf: &mut Vec<u8>, mut on: impl FnMut(Framed<'_>)) -> Option<bool> {
    let mut completed = false;
    loop {
        match frame(buf) {
            Frame::Incomplete => return Some(completed),
            Frame::KeepAlive(skip) => {
                buf.drain(..skip.min(buf.len()));
            }
            Frame::Message {
                skip,
                len,
                missing_length,
            } => {
                let end = skip.saturating_add(len);
                if let Some(data) = buf.get(skip..end) {
                    if missing_length {
                        on(Framed::MissingLength(data));
                        return None;
                    }
                    on(Framed::Message(data));
                }
                buf.drain(..end.min(buf.len()));
                completed = true;
            }
            Frame::Invalid(why) => {
                on(Framed::Invalid(buf, why));
                return None;
            }
        }
    }
}

/// `trim_lws(text[from..end])` for a header value: the one space after the colon that most
/// lines have is stepped over first, so `trim_lws` finds nothing to trim and returns at once.
#[inline(always)]
fn header_value(text: &str, from: usize, end: usize) -> &str {
    let from = if text.as_bytes().get(from) == Some(&b' ') {
        from + 1
    } else {
        from
    };
    hdr::trim_lws(text.get(from..end).unwrap_or_default())
}

/// By first letter (`a` to `z`), the lengths of the known names that start with it, one bit
/// each, built from [`HeaderName::KNOWN`]; length 1 for every letter, as compact forms are
/// single letters (a letter that is no compact form is then looked up and found unknown).
#[allow(clippy::indexing_slicing)] // const evaluation: out of range fails the build
static NAME_LENGTHS: [u32; 26] = {
    let mut t = [1u32 << 1; 26];
    let mut i = 0;
    while i < HeaderName::KNOWN.len() {
        let name = HeaderName::KNOWN[i].as_str().as_bytes();
        t[((name[0] | 0x20) - b'a') as usize] |= 1 << name.len();
        i += 1;
    }
    t
};

/// The lengths of the known names (compact forms included) that start with the letter `f`
/// (lower case), one bit each: where a colon may follow a known name.
fn name_lengths(f: u8) -> u32 {
    f.checked_sub(b'a')
        .and_then(|i| NAME_LENGTHS.get(usize::from(i)))
        .copied()
        .unwrap_or(0)
}

/// What [`header_name`] gives for the line at `ls`, with where its colon is, when the line
/// starts with a known name and a colon right after it: found without a search for the colon,
/// by trying the lengths of the known names that start with the line's first letter. A known
/// name holds no ':' or CR, so that colon is the line's first, as the search would find.
/// `None` sends the line to the search.
#[inline(always)]
fn known_name_at(text: &str, ls: usize) -> Option<((HeaderName, &str), usize)> {
    let tb = text.as_bytes();
    let mut lens = name_lengths(*tb.get(ls)? | 0x20);
    while lens != 0 {
        let colon = ls + lens.trailing_zeros() as usize;
        lens &= lens - 1;
        if tb.get(colon) == Some(&b':') {
            let name = text.get(ls..colon)?;
            let kind = HeaderName::lookup(name.as_bytes());
            if kind != HeaderName::Other {
                return Some(((kind, name), colon));
            }
        }
    }
    None
}

/// The header name of the line at `ls` whose first ':' is at `colon`: `(kind, name)`, or
/// `None` unless the line starts with a token, then optional spaces and tabs, then the colon.
#[inline(always)]
fn header_name(text: &str, ls: usize, colon: usize) -> Option<(HeaderName, &str)> {
    let before = text.as_bytes().get(ls..colon)?;
    // Most names end right at the colon: only a space or tab there needs the scan back.
    let len = match before.last() {
        Some(&c) if c != b' ' && c != b'\t' => before.len(),
        _ => before.iter().rposition(|&c| c != b' ' && c != b'\t')? + 1,
    };
    let name = text.get(ls..ls + len)?;
    let kind = HeaderName::lookup(name.as_bytes());
    // A known name matched letter for letter, so only an unknown one needs the token check.
    if kind == HeaderName::Other && !name.bytes().all(hdr::is_token_char) {
        return None;
    }
    Some((kind, name))
}

impl<'a> Message<'a> {
    /// Splits a whole message. `stream` is true on TCP, where the body is exactly Content-Length.
    pub fn parse(buf: &'a [u8]) -> Result<Self, Garbage> {
        if buf.len() > MAX_MESSAGE {
            return Err(Garbage::TooLarge);
        }
        let skip = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .ok_or(Garbage::Empty)?;
        let buf = buf.get(skip..).unwrap_or_default();
        // The whole datagram is checked as UTF-8 at once (bodies are text too, as a rule), so the
        // walk below can slice header lines as it meets them; behind a binary body only the valid
        // prefix is walked, and the head must end inside it.
        let (text, complete) = scan::utf8_prefix(buf);
        let tb = text.as_bytes();
        let mut headers: Vec<Header<'a>> = Vec::with_capacity(24);
        let mut present = 0u32;
        let mut problem = None;
        // One pass over the header lines: each name is checked and looked up as it is read, and
        // the first empty line (the first CRLF CRLF) ends the head. A header is pushed as soon
        // as its line is read; a folded continuation then widens the last one's value.
        let first_end = find_crlf(tb, 0);
        // Where the value of the last header pushed starts, while continuation lines may extend it.
        let mut open: Option<usize> = None;
        let mut head_end = None; // (end of the head, start of the body)
        if let Some(first_end) = first_end {
            let mut ls = first_end + 2;
            loop {
                let line_end = match tb.get(ls) {
                    None => {
                        // Headers ended by a CRLF but no empty line: a datagram with no body (RFC
                        // 4475's baddn.dat is such a message), accepted rather than drop an
                        // answerable request.
                        if complete {
                            head_end = Some((ls - 2, ls));
                        }
                        break;
                    }
                    Some(b'\r') if tb.get(ls + 1) == Some(&b'\n') => {
                        head_end = Some((ls - 2, ls + 2));
                        break;
                    }
                    Some(b' ' | b'\t') => {
                        // Folded: the value runs on to this line's end.
                        let end = find_crlf(tb, ls);
                        match (open, end, headers.last_mut()) {
                            (Some(vstart), Some(end), Some(h)) => {
                                h.value = hdr::trim_lws(text.get(vstart..end).unwrap_or_default());
                            }
                            (Some(_), _, _) => {}
                            (None, _, _) => {
                                problem.get_or_insert(Problem::bad(
                                    "Continuation line without a header",
                                ));
                            }
                        }
                        end
                    }
                    Some(_) => {
                        open = None;
                        // A known name right before its colon, else the first ':' or CR (names
                        // hold neither, and a CR stops the search at the line's end).
                        let named = known_name_at(text, ls).or_else(|| {
                            let colon =
                                find_colon_or_cr(tb, ls).filter(|&c| tb.get(c) == Some(&b':'))?;
                            Some((header_name(text, ls, colon)?, colon))
                        });
                        match named {
                            Some(((name, raw_name), colon)) => {
                                let end = find_crlf(tb, colon + 1);
                                if let Some(end) = end {
                                    headers.push(Header {
                                        name,
                                        raw_name,
                                        value: header_value(text, colon + 1, end),
                                    });
                                    present |= name.bit();
                                    open = Some(colon + 1);
                                }
                                end
                            }
                            None => {
                                let end = find_crlf(tb, ls);
                                let line =
                                    text.get(ls..end.unwrap_or(tb.len())).unwrap_or_default();
                                problem.get_or_insert(Problem::bad(
                                    if crate::uri::pos(line, b':').is_some() {
                                        "Malformed header name"
                                    } else {
                                        "Header line without a colon"
                                    },
                                ));
                                end
                            }
                        }
                    }
                };
                let Some(line_end) = line_end else { break };
                ls = line_end + 2;
            }
        }
        let Some((head, body_start)) = head_end else {
            // The valid prefix holds no end of headers: say why as a split of the bytes would.
            if !complete && (find_crlfcrlf(buf).is_some() || buf.ends_with(b"\r\n")) {
                return Err(Garbage::NotUtf8);
            }
            return Err(Garbage::NoEndOfHeaders);
        };
        let rest = buf.get(body_start..).unwrap_or_default();
        let first = text
            .get(..first_end.unwrap_or(head).min(head))
            .unwrap_or_default();

        // A start-line problem comes first: it replaces any the header walk found.
        let start = if let Some(status) = first.strip_prefix("SIP/2.0 ") {
            let (code, reason) = status.split_once(' ').unwrap_or((status, ""));
            if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Garbage::BadStatusLine);
            }
            let code: u16 = code.parse().map_err(|_| Garbage::BadStatusLine)?;
            if !(100..=699).contains(&code) {
                return Err(Garbage::BadStatusLine);
            }
            StartLine::Response { code, reason }
        } else if first.starts_with("SIP/") {
            return Err(Garbage::BadStatusLine);
        } else {
            // `splitn(3, ' ')` at byte positions (a str pattern search costs more than the rest
            // of the start line's checks).
            let (method, rest) = split_once_b(first, b' ').unwrap_or((first, ""));
            let (uri, version) = split_once_b(rest, b' ').unwrap_or((rest, ""));
            if !hdr::is_token(method) {
                return Err(Garbage::BadStatusLine);
            }
            // The usual version holds no space, so only another needs the search for one.
            let sip_2_0 = eq_lowercase(version.as_bytes(), b"sip/2.0");
            if uri.is_empty()
                || version.is_empty()
                || (!sip_2_0 && version.contains(' '))
                // `b | 2` is '>' for '<' and '>' only. A fold over bytes rather than `any`:
                // without an early exit the compiler tests many bytes at once.
                || uri.bytes().fold(0u8, |bad, b| {
                    bad | u8::from(b == b'\t') | u8::from(b | 2 == b'>')
                }) != 0
            {
                problem = Some(Problem::bad("Malformed Request-Line"));
            } else if !sip_2_0 {
                problem = Some(if is_sip_version(version) {
                    Problem {
                        status: 505,
                        reason: "Version Not Supported".into(),
                    }
                } else {
                    Problem::bad("Malformed SIP-Version")
                });
            }
            StartLine::Request {
                method,
                uri,
                version,
            }
        };

        Ok(Self {
            start,
            headers,
            body: rest,
            problem,
            present,
        })
    }

    /// The headers to search for a kind: none when `present` says it is absent.
    #[inline]
    fn of_kind(&self, name: HeaderName) -> &[Header<'a>] {
        if self.present & name.bit() == 0 {
            &[]
        } else {
            &self.headers
        }
    }

    /// The first header of a kind.
    pub fn header(&self, name: HeaderName) -> Option<&'a str> {
        self.of_kind(name)
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.value)
    }

    /// Every value of a kind, in order, list headers split at top-level commas.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        self.of_kind(name)
            .iter()
            .filter(move |h| h.name == name)
            .flat_map(|h| hdr::split_list(h.value))
    }

    /// Every header line of a kind, unsplit (for headers whose values contain commas).
    pub fn lines(&self, name: HeaderName) -> impl Iterator<Item = &'a str> + '_ {
        self.of_kind(name)
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Serializes the message: start line, each header as `raw_name: value` with folded values
    /// unfolded onto one line ([`unfold`]), an empty line, then the body.
    ///
    /// Header lines the parser dropped (and recorded as [`Message::problem`]) are not written,
    /// and separators are normalized, so the output is not byte-for-byte the input; parsing it
    /// again gives the same start line, headers (unfolded) and body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self.start {
            StartLine::Request {
                method,
                uri,
                version,
            } => {
                for (i, part) in [method, uri, version].into_iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(part.as_bytes());
                }
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {code} ").as_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
        for h in &self.headers {
            out.extend_from_slice(h.raw_name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(unfold(h.value).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body);
    }
}

/// A header value on one line: each CRLF and the run of spaces and tabs after it (a folded
/// continuation, RFC 3261 §7.3.1) becomes a single space.
pub fn unfold(value: &str) -> Cow<'_, str> {
    if !value.contains("\r\n") {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("\r\n") {
        out.push_str(rest.get(..i).unwrap_or_default());
        out.push(' ');
        rest = rest
            .get(i + 2..)
            .unwrap_or_default()
            .trim_start_matches([' ', '\t']);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn is_sip_version(v: &str) -> bool {
    let Some(num) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("SIP/"))
        .and_then(|_| v.get(4..))
    else {
        return false;
    };
    let Some((major, minor)) = num.split_once('.') else {
        return false;
    };
    !major.is_empty()
        && !minor.is_empty()
        && major
            .bytes()
            .chain(minor.bytes())
            .all(|b| b.is_ascii_digit())
}

/// Methods with special transaction handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    Options,
    Other,
}

impl Method {
    pub fn from_name(m: &str) -> Self {
        match m {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// The Request-URI: a sip/sips/tel URI, or an emergency service URN (RFC 5031).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestUri<'a> {
    Uri(Uri<'a>),
    ServiceUrn(&'a str),
}

/// A request checked far enough for a redirect server to act on it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub msg: Message<'a>,
    pub method: Method,
    pub method_name: &'a str,
    pub uri: RequestUri<'a>,
    pub via: Via<'a>,
    pub call_id: &'a str,
    pub cseq: CSeq<'a>,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
    pub max_forwards: Option<u8>,
}

/// A request's fields as [`Request::validate`] read them, before the message joins them.
#[derive(Debug)]
struct Checked<'a> {
    method: Method,
    method_name: &'a str,
    uri: RequestUri<'a>,
    via: Via<'a>,
    call_id: &'a str,
    cseq: CSeq<'a>,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    max_forwards: Option<u8>,
}

/// The reason a request is answered with an error instead of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: Cow<'static, str>,
}

fn bad(reason: impl Into<Cow<'static, str>>) -> Rejection {
    Rejection {
        status: 400,
        reason: reason.into(),
    }
}

fn malformed(name: HeaderName, e: ValueError) -> Rejection {
    let what = match e {
        ValueError::Range => "out of range",
        ValueError::Quotes => "has unbalanced quotes",
        ValueError::DisplayName => "has a bad display name",
        ValueError::Uri => "has a malformed URI",
        ValueError::Malformed => "is malformed",
    };
    bad(format!("{} header {what}", name.as_str()))
}

impl<'a> Request<'a> {
    /// Validates a request. `datagram` is true on UDP, where a body shorter than Content-Length
    /// is an error and a longer one is truncated (RFC 3261 §18.3).
    pub fn from_message(msg: Message<'a>, datagram: bool) -> Result<Self, Rejection> {
        Self::validate(msg, datagram).map_err(|refused| refused.0)
    }

    /// [`Request::from_message`] that hands the message back with the rejection, so that the
    /// transport answers from it without having copied it first.
    pub fn validate(
        mut msg: Message<'a>,
        datagram: bool,
    ) -> Result<Self, Box<(Rejection, Message<'a>)>> {
        match Self::check(&mut msg, datagram) {
            Ok(c) => Ok(Self {
                msg,
                method: c.method,
                method_name: c.method_name,
                uri: c.uri,
                via: c.via,
                call_id: c.call_id,
                cseq: c.cseq,
                from: c.from,
                to: c.to,
                max_forwards: c.max_forwards,
            }),
            // Boxed: only a refused request pays for it, and `Ok` stays small.
            Err(rejection) => Err(Box::new((rejection, msg))),
        }
    }

    fn check(msg: &mut Message<'a>, datagram: bool) -> Result<Checked<'a>, Rejection> {
        let StartLine::Request { method, uri, .. } = msg.start else {
            return Err(bad("Not a request"));
        };
        if let Some(p) = msg.problem.take() {
            return Err(Rejection {
                status: p.status,
                reason: p.reason,
            });
        }
        // One pass: which kinds repeat, and the first of each kind read below (with where the
        // first Via and Contact are, so their later lines are looked for from there only).
        let (mut seen, mut again) = (0u32, 0u32);
        let (mut via, mut call_id, mut cseq, mut from, mut to) = (None, None, None, None, None);
        let (mut max_forwards, mut content_length, mut contact) = (None, None, None);
        let mut via_at = 0;
        for (i, h) in msg.headers.iter().enumerate() {
            let bit = h.name.bit();
            if seen & bit != 0 {
                again |= bit;
                continue;
            }
            seen |= bit;
            match h.name {
                HeaderName::Via => (via, via_at) = (Some(h.value), i),
                HeaderName::CallId => call_id = Some(h.value),
                HeaderName::CSeq => cseq = Some(h.value),
                HeaderName::From => from = Some(h.value),
                HeaderName::To => to = Some(h.value),
                HeaderName::MaxForwards => max_forwards = Some(h.value),
                HeaderName::ContentLength => content_length = Some(h.value),
                HeaderName::Contact => contact = Some(i),
                _ => {}
            }
        }
        let repeated = again & HeaderName::SINGLE;
        if repeated != 0 {
            // Named after the first header line whose kind repeats.
            if let Some(h) = msg.headers.iter().find(|h| repeated & h.name.bit() != 0) {
                return Err(bad(format!("Multiple {} headers", h.name.as_str())));
            }
        }
        let req_uri = match Uri::parse(uri) {
            Ok(u) => RequestUri::Uri(u),
            Err(UriError::UnsupportedScheme) => {
                let lower = uri.get(..12).map(str::to_ascii_lowercase);
                if lower.as_deref() == Some("urn:service:")
                    && uri.get(12..).is_some_and(|s| s.starts_with("sos"))
                {
                    RequestUri::ServiceUrn(uri)
                } else if uri.bytes().all(|b| b.is_ascii_graphic()) && uri.contains(':') {
                    return Err(Rejection {
                        status: 416,
                        reason: "Unsupported URI Scheme".into(),
                    });
                } else {
                    return Err(bad("Malformed Request-URI"));
                }
            }
            Err(UriError::Malformed) => return Err(bad("Malformed Request-URI")),
        };
        if let RequestUri::Uri(u) = req_uri {
            // Header components are not allowed in a Request-URI (RFC 3261 §19.1.5).
            if !u.headers.is_empty() {
                return Err(bad("Request-URI has headers"));
            }
        }
        let via = via.ok_or_else(|| bad("Missing Via header"))?;
        // The top via-parm is kept; every other one (the rest of the first line, then the later
        // Via lines) must parse too.
        let mut first_line = hdr::split_list(via);
        let via = Via::parse(first_line.next().unwrap_or_default())
            .map_err(|e| malformed(HeaderName::Via, e))?;
        for v in first_line {
            Via::parse(v).map_err(|e| malformed(HeaderName::Via, e))?;
        }
        if again & HeaderName::Via.bit() != 0 {
            for h in msg.headers.get(via_at + 1..).unwrap_or_default() {
                if h.name == HeaderName::Via {
                    for v in hdr::split_list(h.value) {
                        Via::parse(v).map_err(|e| malformed(HeaderName::Via, e))?;
                    }
                }
            }
        }
        let call_id = call_id.ok_or_else(|| bad("Missing Call-ID header"))?;
        if call_id.is_empty() || scan::any_lws(call_id.as_bytes()) {
            return Err(bad("Malformed Call-ID header"));
        }
        let cseq = cseq.ok_or_else(|| bad("Missing CSeq header"))?;
        let cseq = CSeq::parse(cseq).map_err(|e| malformed(HeaderName::CSeq, e))?;
        let from = from.ok_or_else(|| bad("Missing From header"))?;
        let from = NameAddr::parse(from).map_err(|e| malformed(HeaderName::From, e))?;
        let to = to.ok_or_else(|| bad("Missing To header"))?;
        // To names the dialed URI as a rule: its text repeats the Request-URI's.
        let ruri = match req_uri {
            RequestUri::Uri(u) => Some(u),
            RequestUri::ServiceUrn(_) => None,
        };
        let to = NameAddr::parse_reusing(to, &[(uri, ruri)])
            .map_err(|e| malformed(HeaderName::To, e))?;
        if let Some(at) = contact {
            for h in msg.headers.get(at..).unwrap_or_default() {
                if h.name != HeaderName::Contact {
                    continue;
                }
                for c in hdr::split_list(h.value) {
                    if c != "*" {
                        NameAddr::parse(c).map_err(|e| malformed(HeaderName::Contact, e))?;
                    }
                }
            }
        }
        let max_forwards = match max_forwards {
            Some(v) => Some(
                u8::try_from(
                    hdr::bounded_number(v, 255)
                        .map_err(|e| malformed(HeaderName::MaxForwards, e))?,
                )
                .map_err(|_| malformed(HeaderName::MaxForwards, ValueError::Range))?,
            ),
            None => None,
        };
        let m = Method::from_name(method);
        if cseq.method != method {
            return Err(if m == Method::Other {
                Rejection {
                    status: 501,
                    reason: "Not Implemented (CSeq method mismatch)".into(),
                }
            } else {
                bad("CSeq method does not match the Request-Line")
            });
        }
        if let Some(cl) = content_length {
            let n = hdr::bounded_number(cl, MAX_MESSAGE as u64)
                .map_err(|e| malformed(HeaderName::ContentLength, e))?;
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > msg.body.len() {
                return Err(bad("Content-Length larger than the body"));
            }
            if datagram {
                msg.body = msg.body.get(..n).unwrap_or_default();
            }
        }
        Ok(Checked {
            method: m,
            method_name: method,
            uri: req_uri,
            via,
            call_id,
            cseq,
            from,
            to,
            max_forwards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+18005550100@tollgate.example;user=phone SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n\
Max-Forwards: 70\r\n\
f: \"Main\" <sip:+12125551212@carrier.example;user=phone>;tag=1\r\n\
t: <sip:+18005550100@tollgate.example>\r\n\
i: abc@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Subject: folded\r\n  continues here\r\n\
l: 4\r\n\r\nbody";

    /// The stream loop's framing: keep-alives stepped over, whole messages handed over in
    /// order, the partial one left in the buffer; a message without Content-Length closes.
    #[test]
    fn drain_frames_takes_whole_messages() {
        let mut buf = format!("\r\n\r\n{INVITE}{INVITE}\r\n{}", &INVITE[..40]).into_bytes();
        let mut got = Vec::new();
        let r = drain_frames(&mut buf, |f| got.push(format!("{f:?}")));
        assert_eq!(r, Some(true));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], format!("{:?}", Framed::Message(INVITE.as_bytes())));
        assert_eq!(got[0], got[1]);
        // A keep-alive before a partial message stays with it.
        assert_eq!(buf, format!("\r\n{}", &INVITE[..40]).as_bytes());
        // Nothing whole: nothing handed over, nothing completed.
        assert_eq!(
            drain_frames(&mut buf, |_| panic!("no message")),
            Some(false)
        );

        let no_length = INVITE.replace("l: 4\r\n\r\nbody", "\r\n");
        let mut buf = format!("{no_length}{INVITE}").into_bytes();
        let mut got = Vec::new();
        assert_eq!(drain_frames(&mut buf, |f| got.push(format!("{f:?}"))), None);
        assert_eq!(
            got,
            [format!("{:?}", Framed::MissingLength(no_length.as_bytes()))]
        );

        let mut buf = b"INVITE x SIP/2.0\r\nl: x\r\n\r\n".to_vec();
        let mut got = Vec::new();
        assert_eq!(drain_frames(&mut buf, |f| got.push(format!("{f:?}"))), None);
        assert!(got[0].starts_with("Invalid("), "{got:?}");
    }

    #[test]
    fn parses_compact_and_folded() {
        let m = Message::parse(INVITE.as_bytes()).expect("parse");
        assert!(m.problem.is_none());
        assert_eq!(m.header(HeaderName::CallId), Some("abc@192.0.2.1"));
        assert_eq!(
            m.header(HeaderName::Subject),
            Some("folded\r\n  continues here")
        );
        let r = Request::from_message(m, true).expect("request");
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.via.branch(), Some("z9hG4bKabc"));
        assert_eq!(r.msg.body, b"body");
    }

    #[test]
    fn framing_several_and_partial() {
        let two = format!("{INVITE}\r\n{INVITE}");
        let b = two.as_bytes();
        let Frame::Message { skip, len, .. } = frame(b) else {
            panic!("frame")
        };
        assert_eq!((skip, len), (0, INVITE.len()));
        let Frame::Message { skip, len, .. } = frame(b.get(len..).expect("rest")) else {
            panic!("second")
        };
        assert_eq!((skip, len), (2, INVITE.len()));
        assert_eq!(
            frame(INVITE.as_bytes().get(..100).expect("part")),
            Frame::Incomplete
        );
        assert_eq!(
            frame(INVITE.as_bytes().get(..INVITE.len() - 1).expect("part")),
            Frame::Incomplete
        );
    }

    #[test]
    fn rejections_name_the_problem() {
        let r = |s: String| {
            Request::from_message(Message::parse(s.as_bytes()).expect("split"), true).map(|_| ())
        };
        let e = r(INVITE.replace("SIP/2.0\r\nv:", "SIP/7.0\r\nv:")).expect_err("505");
        assert_eq!(e.status, 505);
        let e = r(INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS")).expect_err("mismatch");
        assert_eq!(
            (e.status, e.reason.as_ref()),
            (400, "CSeq method does not match the Request-Line")
        );
        let e = r(INVITE.replace("i: abc@192.0.2.1\r\n", "")).expect_err("no call-id");
        assert_eq!(e.reason, "Missing Call-ID header");
        let e = r(INVITE.replace("INVITE sip:+1", "INVITE http:+1")).expect_err("scheme");
        assert_eq!(e.status, 416);
        let e = r(INVITE.replace("l: 4", "l: 40")).expect_err("short body");
        assert_eq!(e.reason, "Content-Length larger than the body");
    }

    /// Parse, write, parse again: the second parse must see what the first saw.
    fn round_trip(raw: &[u8]) -> Vec<u8> {
        let first = Message::parse(raw).expect("first parse");
        let mut out = Vec::new();
        first.write_to(&mut out);
        let second = Message::parse(&out).expect("second parse");
        assert_eq!(second.start, first.start);
        assert_eq!(second.headers.len(), first.headers.len());
        for (a, b) in first.headers.iter().zip(&second.headers) {
            assert_eq!((b.name, b.raw_name), (a.name, a.raw_name));
            assert_eq!(b.value, unfold(a.value));
        }
        assert_eq!(second.body, first.body);
        out
    }

    #[test]
    fn write_unfolds_and_round_trips() {
        let out = round_trip(INVITE.as_bytes());
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.starts_with("INVITE sip:+18005550100@tollgate.example;user=phone SIP/2.0\r\n"));
        assert!(text.contains("\r\nSubject: folded continues here\r\n"));
        assert!(text.contains("\r\ni: abc@192.0.2.1\r\n"));
        assert!(text.ends_with("\r\nl: 4\r\n\r\nbody"));

        let folded = "OPTIONS sip:tollgate.example SIP/2.0\r\n\
Via : SIP/2.0/UDP 192.0.2.1\r\n\t;branch=z9hG4bK1 , \r\n  SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK2\r\n\
f:<sip:a@b>;tag=9\r\n\
T:\tsip:c@d\r\n\
Call-ID:x\r\n\
CSeq: 7\r\n OPTIONS\r\n\
X-Empty:\r\n\
\r\n";
        let m = Message::parse(folded.as_bytes()).expect("parse");
        let mut out = Vec::new();
        m.write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "OPTIONS sip:tollgate.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1 ;branch=z9hG4bK1 ,  SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK2\r\n\
f: <sip:a@b>;tag=9\r\n\
T: sip:c@d\r\n\
Call-ID: x\r\n\
CSeq: 7 OPTIONS\r\n\
X-Empty: \r\n\
\r\n"
        );
        round_trip(folded.as_bytes());
        let r = Request::from_message(Message::parse(folded.as_bytes()).expect("parse"), true)
            .expect("request");
        assert_eq!(r.cseq.method, "OPTIONS");

        round_trip(b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\nl: 0\r\n\r\n");
        round_trip(b"SIP/2.0 200\r\n\r\n");
        // Headers ended by a CRLF but no empty line (RFC 4475 baddn.dat), keep-alives in front.
        round_trip(b"\r\nACK sip:x SIP/2.0\r\nv: SIP/2.0/UDP h\r\n");
        round_trip(b"INVITE\r\ni: 1\r\n\r\n\x00\xff binary body");
    }

    #[test]
    fn rfc4475_messages_round_trip() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/rfc4475");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("rfc4475 dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "dat") {
                let raw = std::fs::read(&path).expect("read");
                if Message::parse(&raw).is_ok() {
                    round_trip(&raw);
                    n += 1;
                }
            }
        }
        assert!(n >= 40, "only {n} RFC 4475 messages parsed");
    }

    /// The Request-Line's checks: a tab or angle bracket anywhere in a URI of any length, and
    /// versions other than SIP/2.0 (in any case) with and without spaces.
    #[test]
    fn request_line_problems() {
        let problem = |line: &str| {
            let raw = format!("{line}\r\n\r\n");
            let m = Message::parse(raw.as_bytes()).expect("split");
            m.problem.map(|p| (p.status, p.reason))
        };
        for len in 1..80 {
            let uri = "s".repeat(len);
            assert_eq!(problem(&format!("OPTIONS {uri} SIP/2.0")), None);
            assert_eq!(problem(&format!("OPTIONS {uri} sip/2.0")), None);
            for bad in ['\t', '<', '>'] {
                for at in 0..len {
                    let mut u = uri.clone();
                    u.replace_range(at..=at, &bad.to_string());
                    assert_eq!(
                        problem(&format!("OPTIONS {u} SIP/2.0")),
                        Some((400, "Malformed Request-Line".into())),
                        "{u:?}"
                    );
                }
            }
            // '=' and '?' differ from '<' and '>' by the bit `| 2` ignores: not bad.
            assert_eq!(problem(&format!("OPTIONS {uri}=? SIP/2.0")), None);
        }
        assert_eq!(
            problem("OPTIONS sip:x SIP/2.0 x"),
            Some((400, "Malformed Request-Line".into()))
        );
        assert_eq!(
            problem("OPTIONS sip:x SIP/3.0"),
            Some((505, "Version Not Supported".into()))
        );
        assert_eq!(
            problem("OPTIONS sip:x SIP/2.0x"),
            Some((400, "Malformed SIP-Version".into()))
        );
    }

    /// `known_name_at` finds what the search for the colon and `header_name` find, whenever it
    /// finds anything, and finds every known name (canonical, other cases, compact) that its
    /// colon follows directly.
    #[test]
    fn known_names_are_found_as_the_search_finds_them() {
        // KNOWN holds every kind but Other once, each named by its canonical name.
        for (i, h) in HeaderName::KNOWN.into_iter().enumerate() {
            assert_eq!(h as usize, i);
            assert_eq!(HeaderName::from_name(h.as_str()), h);
        }
        let mut names: Vec<String> = Vec::new();
        for h in HeaderName::KNOWN {
            let n = h.as_str();
            names.extend([
                n.to_string(),
                n.to_ascii_lowercase(),
                n.to_ascii_uppercase(),
            ]);
        }
        // Every single letter: the compact forms, and letters that are none.
        for c in ('a'..='z').chain('A'..='Z') {
            names.push(c.to_string());
        }
        names.extend(
            [
                "X-Via",
                "Vias",
                "Vi",
                "Cseq-",
                "c-",
                "Content-Lengths",
                "\u{e9}",
                "P",
            ]
            .map(String::from),
        );
        for name in &names {
            for rest in [": x", ":", " : x", "\t:x", "::x", "\r\n", "x: y", ";:", ""] {
                let text = format!("{name}{rest}\r\n");
                let slow = find_colon_or_cr(text.as_bytes(), 0)
                    .filter(|&c| text.as_bytes().get(c) == Some(&b':'))
                    .and_then(|c| Some((header_name(&text, 0, c)?, c)));
                let fast = known_name_at(&text, 0);
                if fast.is_some() {
                    assert_eq!(fast, slow, "{text:?}");
                }
                let known = HeaderName::from_name(name) != HeaderName::Other;
                if known && rest.starts_with(':') {
                    assert!(fast.is_some(), "{text:?}");
                }
            }
        }
    }

    /// A name ends before any spaces and tabs ahead of its colon, known or not.
    #[test]
    fn header_names_end_before_the_colon_and_whitespace() {
        for name in ["Via", "v", "X-Custom", "P-Asserted-Identity", "a.b"] {
            for gap in ["", " ", "\t", " \t ", "\t\t"] {
                let raw = format!("OPTIONS sip:x SIP/2.0\r\n{name}{gap}: 1\r\n\r\n");
                let m = Message::parse(raw.as_bytes()).expect("split");
                assert!(m.problem.is_none(), "{raw:?}");
                let h = m.headers.first().expect("one header");
                assert_eq!((h.raw_name, h.value), (name, "1"));
                assert_eq!(h.name, HeaderName::from_name(name));
            }
        }
        // Whitespace alone is no name.
        let m = Message::parse(b"OPTIONS sip:x SIP/2.0\r\nX \t:1\r\n\t:2\r\n\r\n").expect("split");
        assert_eq!(m.headers.len(), 1);
        let m = Message::parse(b"OPTIONS sip:x SIP/2.0\r\n :1\r\n\r\n").expect("split");
        assert!(m.problem.is_some());
    }

    /// `header_value` trims as `trim_lws` does, whatever whitespace follows the colon.
    #[test]
    fn header_value_trims_as_trim_lws() {
        let parts = [
            "", " ", "  ", "\t", " \t", "\r", " \n", "\r\n ", "x", "x y", "\u{e9}",
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    let text = format!(":{a}{b}{c}\r\n");
                    let end = text.len() - 2;
                    let want = hdr::trim_lws(text.get(1..end).expect("value"));
                    assert_eq!(header_value(&text, 1, end), want, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn unfold_joins_continuations() {
        assert_eq!(unfold("a"), "a");
        assert_eq!(unfold("a\r\n b"), "a b");
        assert_eq!(unfold("a \r\n\t \tb\r\n c"), "a  b c");
        assert_eq!(unfold("a\r\n \r\n\tb"), "a  b");
    }

    #[test]
    fn responses_split_and_garbage_drops() {
        let m = Message::parse(b"SIP/2.0 180 Ringing\r\nVia: x\r\n\r\n").expect("resp");
        assert!(matches!(m.start, StartLine::Response { code: 180, .. }));
        assert_eq!(Message::parse(b"\r\n\r\n").map(|_| ()), Err(Garbage::Empty));
        assert_eq!(
            Message::parse(b"hello").map(|_| ()),
            Err(Garbage::NoEndOfHeaders)
        );
    }

    /// `present` has exactly the bits of the kinds in `headers`, and the lookups it short-cuts
    /// answer as a walk of `headers` does, on the RFC 4475 messages and the sample INVITE.
    #[test]
    fn present_matches_the_headers() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/rfc4475");
        let mut inputs: Vec<Vec<u8>> = vec![INVITE.as_bytes().to_vec()];
        for entry in std::fs::read_dir(dir).expect("rfc4475 data") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "dat") {
                inputs.push(std::fs::read(path).expect("read"));
            }
        }
        assert!(inputs.len() > 40, "the RFC 4475 messages are there");
        let kinds = [
            HeaderName::CallId,
            HeaderName::Via,
            HeaderName::Contact,
            HeaderName::PAssertedIdentity,
            HeaderName::Identity,
            HeaderName::Other,
        ];
        for input in &inputs {
            let Ok(m) = Message::parse(input) else {
                continue;
            };
            let bits = m.headers.iter().fold(0, |b, h| b | h.name.bit());
            assert_eq!(m.present, bits);
            for k in kinds {
                let walk = m.headers.iter().filter(|h| h.name == k);
                assert_eq!(
                    m.lines(k).collect::<Vec<_>>(),
                    walk.clone().map(|h| h.value).collect::<Vec<_>>()
                );
                assert_eq!(m.header(k), walk.map(|h| h.value).next());
            }
        }
    }
}
