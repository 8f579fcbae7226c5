//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), borrowed from the message buffer.

use std::borrow::Cow;

/// The URI schemes a redirect server for phone calls acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

/// Why a URI did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
    #[error("malformed URI")]
    Malformed,
}

/// A parsed URI. `user` is the whole userinfo user (for sip) or the number (for tel);
/// tel-style parameters inside a sip user (`+1555;cpc=ordinary`) stay in `user_params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// Number or user name, still %-escaped, without user parameters.
    pub user: Option<&'a str>,
    /// `;name=value` parameters inside the userinfo (tel syntax in a sip URI), raw.
    pub user_params: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    /// URI parameters, raw, starting with `;` (or empty).
    pub params: &'a str,
    /// URI headers, raw, after `?` (or empty).
    pub headers: &'a str,
    /// Whether the userinfo holds a `%` escape: without one the user is its own unescaped form
    /// (the parser saw every byte; a second search for `%` per number would cost more).
    escaped: bool,
}

impl<'a> Uri<'a> {
    /// Parses an absolute sip, sips or tel URI (no surrounding whitespace).
    ///
    /// One pass over the text: each part is checked against its character class as it is
    /// split off (this runs for every URI of every INVITE, nine times for a carrier's).
    #[inline]
    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        // `sip:`, `tel:` and `sips:` are nearly every URI: known without searching for the colon.
        let b = s.as_bytes();
        let lower3 = |b: &[u8]| match b {
            [x, y, z, ..] => [x | 0x20, y | 0x20, z | 0x20],
            _ => [0; 3],
        };
        match (lower3(b), b.get(3), b.get(4)) {
            (x, Some(b':'), _) if x == *b"sip" => {
                return parse_sip(Scheme::Sip, s.get(4..).unwrap_or_default())
            }
            (x, Some(b':'), _) if x == *b"tel" => return parse_tel(s.get(4..).unwrap_or_default()),
            (x, Some(b's' | b'S'), Some(b':')) if x == *b"sip" => {
                return parse_sip(Scheme::Sips, s.get(5..).unwrap_or_default())
            }
            _ => {}
        }
        let colon = pos(s, b':').ok_or(UriError::Malformed)?;
        let (scheme, rest) = (
            s.get(..colon).unwrap_or_default(),
            s.get(colon + 1..).unwrap_or_default(),
        );
        let lower = |b: &u8| b.to_ascii_lowercase();
        let scheme = match scheme.as_bytes() {
            [a, b, c] if [lower(a), lower(b), lower(c)] == *b"sip" => Scheme::Sip,
            [a, b, c] if [lower(a), lower(b), lower(c)] == *b"tel" => Scheme::Tel,
            [a, b, c, d] if [lower(a), lower(b), lower(c), lower(d)] == *b"sips" => Scheme::Sips,
            _ if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) =>
            {
                return Err(UriError::UnsupportedScheme)
            }
            _ => return Err(UriError::Malformed),
        };
        if scheme == Scheme::Tel {
            return parse_tel(rest);
        }
        parse_sip(scheme, rest)
    }

    /// A URI parameter's value (`Some("")` for a flag such as `lr`), case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        param(self.params, name)
    }

    /// A parameter from the user part (`cpc`, `oli`, `verstat`, `phone-context`, `rn`, `npdi`).
    pub fn user_param(&self, name: &str) -> Option<&'a str> {
        param(self.user_params, name)
    }

    /// The user, %-unescaped.
    pub fn user_unescaped(&self) -> Option<Cow<'a, str>> {
        if !self.escaped {
            return self.user.map(Cow::Borrowed);
        }
        self.user.map(unescape)
    }

    /// A tel parameter wherever the carrier put it: user part first, then URI parameters.
    pub fn tel_param(&self, name: &str) -> Option<&'a str> {
        self.user_param(name).or_else(|| self.param(name))
    }

    /// The parameters the extractor reads, in one pass over the user part's and the URI's
    /// parameters (each lookup on its own would scan them again, four times per URI).
    pub fn tel_params(&self) -> TelParams<'a> {
        let mut out = TelParams::default();
        // Most URIs have no user parameters.
        if !self.user_params.is_empty() {
            out.scan(self.user_params, false);
        }
        if is_user_phone(self.params) {
            // What nearly every carrier's sip URI carries, read without splitting.
            out.user = self.params.get(6..);
        } else if !self.params.is_empty() {
            out.scan(self.params, true);
        }
        out
    }
}

/// Whether `params` is `;user=phone` in any letter case, as two overlapping eight-byte words:
/// letters compared with their case bit set, `;` and `=` exactly.
#[inline]
fn is_user_phone(params: &str) -> bool {
    const fn word(b: &[u8; 8]) -> u64 {
        u64::from_le_bytes(*b)
    }
    match params.as_bytes() {
        &[b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10] => {
            let head = word(&[b0, b1, b2, b3, b4, b5, b6, b7]);
            let tail = word(&[b3, b4, b5, b6, b7, b8, b9, b10]);
            head | word(&[0, 32, 32, 32, 32, 0, 32, 32]) == word(b";user=ph")
                && tail | word(&[32, 32, 0, 32, 32, 32, 32, 32]) == word(b"er=phone")
        }
        _ => false,
    }
}

/// What [`Uri::tel_params`] finds: each the first occurrence, values trimmed as
/// [`Uri::tel_param`] gives them (`user` only from the URI parameters, as [`Uri::param`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TelParams<'a> {
    pub user: Option<&'a str>,
    pub phone_context: Option<&'a str>,
    pub cpc: Option<&'a str>,
    pub oli: Option<&'a str>,
    pub verstat: Option<&'a str>,
}

impl<'a> TelParams<'a> {
    fn scan(&mut self, params: &'a str, uri_param: bool) {
        for (n, v) in param_pairs(params) {
            self.take(trim_fast(n), v, uri_param);
        }
    }

    #[inline(always)]
    fn take(&mut self, name: &str, value: &'a str, uri_param: bool) {
        let slot = match name.len() {
            3 if name.eq_ignore_ascii_case("cpc") => &mut self.cpc,
            3 if name.eq_ignore_ascii_case("oli") => &mut self.oli,
            4 if uri_param && name.eq_ignore_ascii_case("user") => &mut self.user,
            7 if name.eq_ignore_ascii_case("verstat") => &mut self.verstat,
            13 if name.eq_ignore_ascii_case("phone-context") => &mut self.phone_context,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(trim_fast(value));
        }
    }
}

fn parse_tel(rest: &str) -> Result<Uri<'_>, UriError> {
    let b = rest.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    while let Some(&c) = b.get(i) {
        if c == b';' {
            break;
        }
        if !is(c, class::TEL_USER) {
            return Err(UriError::Malformed);
        }
        escaped |= c == b'%';
        i += 1;
    }
    if i == 0 || scan_params(b, i)? != b.len() {
        return Err(UriError::Malformed);
    }
    Ok(Uri {
        scheme: Scheme::Tel,
        user: Some(rest.get(..i).unwrap_or_default()),
        user_params: rest.get(i..).unwrap_or_default(),
        host: "",
        port: None,
        params: "",
        headers: "",
        escaped,
    })
}

/// Whether `b[i..i + 2]` are two hex digits (the tail of a `%` escape).
#[inline]
fn hex2(b: &[u8], i: usize) -> bool {
    b.get(i..i + 2)
        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
}

fn parse_sip(scheme: Scheme, rest: &str) -> Result<Uri<'_>, UriError> {
    let b = rest.as_bytes();
    // userinfo, if any, ends at the first '@'. '@' is legal nowhere else unescaped, so a byte that
    // cannot be in a userinfo before any '@' means there is none (and a later '@' makes the URI
    // malformed either way: it fails the host, parameter or header check below).
    let (mut i, mut colon, mut semi, mut password_ok) = (0, None, None, true);
    let mut escaped = false;
    let at = loop {
        // Most bytes need no second look: a user part's (before any ':'), a password's after.
        let plain = if colon.is_some() {
            class::PASSWORD
        } else {
            class::USER_PLAIN
        };
        i = skip_class(b, i, plain);
        match b.get(i) {
            Some(b'@') => break Some(i),
            Some(b'%') => {
                if !hex2(b, i + 1) {
                    return Err(UriError::Malformed);
                }
                escaped = true;
                i += 3;
                continue;
            }
            Some(b':') => {
                password_ok &= colon.is_none();
                colon.get_or_insert(i);
            }
            Some(&c) if is(c, class::USER) => {
                if colon.is_some() {
                    password_ok = false; // not PASSWORD, or the loop above took it
                } else if c == b';' && semi.is_none() {
                    semi = Some(i);
                }
            }
            _ => break None,
        }
        i += 1;
    };
    let (user, user_params, host_start) = match at {
        Some(0) => return Err(UriError::Malformed),
        Some(at) => {
            if !password_ok {
                return Err(UriError::Malformed);
            }
            // The user and its tel-style parameters end at the password's ':'.
            let user_end = colon.unwrap_or(at);
            let (user, params) = match semi {
                Some(semi) => (rest.get(..semi), rest.get(semi..user_end)),
                None => (rest.get(..user_end), Some("")),
            };
            (user, params.unwrap_or_default(), at + 1)
        }
        None => (None, "", 0),
    };
    let hostpart = rest.get(host_start..).unwrap_or_default();
    let hb = hostpart.as_bytes();
    let (host, port, mut j) = if hostpart.starts_with('[') {
        let end = hb
            .iter()
            .position(|&c| c == b';' || c == b'?')
            .unwrap_or(hb.len());
        let (host, port) = split_hostport(hostpart.get(..end).unwrap_or_default())?;
        (host, port, end)
    } else {
        let mut j = skip_class(hb, 0, class::HOST);
        let host = hostpart.get(..j).unwrap_or_default();
        if host.is_empty() || host.starts_with(['-', '.']) {
            return Err(UriError::Malformed);
        }
        let port = if hb.get(j) == Some(&b':') {
            j += 1;
            let digits = j;
            while hb.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            let p = hostpart.get(digits..j).unwrap_or_default();
            Some(port_number(p).ok_or(UriError::Malformed)?)
        } else {
            None
        };
        (host, port, j)
    };
    let params_start = j;
    match hb.get(j) {
        None | Some(b'?') => {}
        // `;user=phone` alone (most carrier URIs) is valid as it stands.
        Some(b';') if is_user_phone(hostpart.get(j..).unwrap_or_default()) => j = hb.len(),
        Some(b';') => j = scan_params(hb, j)?,
        Some(_) => return Err(UriError::Malformed),
    }
    let params = hostpart.get(params_start..j).unwrap_or_default();
    let headers = match hb.get(j) {
        Some(b'?') => hostpart.get(j + 1..).unwrap_or_default(),
        _ => "",
    };
    check_chars(headers, class::HEADERS)?;
    Ok(Uri {
        scheme,
        user,
        user_params,
        host,
        port,
        params,
        headers,
        escaped,
    })
}

/// Checks URI parameters from the `;` at `b[start]` (when any) and returns where they end: at a
/// `?` or the end of `b` (a `;;` or a byte outside the class is malformed).
fn scan_params(b: &[u8], start: usize) -> Result<usize, UriError> {
    let mut i = start;
    loop {
        i = skip_class(b, i, class::PARAM_PLAIN);
        match b.get(i) {
            None | Some(b'?') => return Ok(i),
            Some(b'%') => {
                if !hex2(b, i + 1) {
                    return Err(UriError::Malformed);
                }
                i += 3;
            }
            // An escape ends in a hex digit, so only a literal ';' before this one is `;;`.
            Some(b';') if i == start || i.checked_sub(1).and_then(|p| b.get(p)) != Some(&b';') => {
                i += 1;
            }
            Some(_) => return Err(UriError::Malformed),
        }
    }
}

/// Splits `host[:port]`, validating a hostname, IPv4 address or `[IPv6]` reference.
pub fn split_hostport(hp: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if hp.starts_with('[') {
        let end = pos(hp, b']').ok_or(UriError::Malformed)?;
        let (h, rest) = hp.split_at(end + 1);
        let inner = h.get(1..h.len() - 1).unwrap_or_default();
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UriError::Malformed);
        }
        match rest {
            "" => (h, None),
            _ => (h, Some(rest.strip_prefix(':').ok_or(UriError::Malformed)?)),
        }
    } else {
        match split_once_b(hp, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        }
    };
    if !host.starts_with('[') {
        let ok = !host.is_empty()
            && skip_class(host.as_bytes(), 0, class::HOST) == host.len()
            && !host.starts_with(['-', '.']);
        if !ok {
            return Err(UriError::Malformed);
        }
    }
    let port = match port {
        None => None,
        Some(p) => Some(port_number(p).ok_or(UriError::Malformed)?),
    };
    Ok((host, port))
}

/// One to five ASCII digits up to 65535, read in the pass that checks them (`str::parse` checks
/// sign and radix first, costing more than the rest of a URI's port handling).
fn port_number(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    let mut v = 0u32;
    for &d in digits.as_bytes() {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    u16::try_from(v).ok()
}

// RFC 3261 §25.1 character classes (besides alphanumerics and escapes).
const UNRESERVED_MARK: &[u8] = b"-_.!~*'()";
const USER: &[u8] = b"-_.!~*'()&=+$,;?/";
const PASSWORD: &[u8] = b"-_.!~*'()&=+$,";
const PARAM: &[u8] = b"-_.!~*'()[]/:&+$=;";
const HEADERS: &[u8] = b"-_.!~*'()[]/?:+$=&";

/// Character classes as bits of one 256-entry table, so a grammar check costs a load per byte.
pub(crate) mod class {
    pub const USER: u16 = 1;
    pub const PASSWORD: u16 = 2;
    pub const PARAM: u16 = 4;
    pub const HEADERS: u16 = 8;
    /// RFC 3261 `token`.
    pub const TOKEN: u16 = 16;
    /// Space, tab, CR, LF.
    pub const LWS: u16 = 32;
    /// Alphanumerics, `-` and `.` (hostnames and IPv4 addresses).
    pub const HOST: u16 = 64;
    /// `USER` but `;`: the bytes of a user part that need no second look.
    pub const USER_PLAIN: u16 = 128;
    /// `PARAM` but `;`: the bytes inside one parameter.
    pub const PARAM_PLAIN: u16 = 256;
    /// The bytes of a tel URI's number: alphanumerics, `+-.()*#` and `%` of escapes.
    pub const TEL_USER: u16 = 512;
    /// A header parameter's unquoted value: `token`, `[`, `]` and `:` (IPv6 references).
    pub const GEN_VALUE: u16 = 1024;
}

const fn has(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        #[allow(clippy::indexing_slicing)] // const evaluation: out of range fails the build
        if set[i] == c {
            return true;
        }
        i += 1;
    }
    false
}

const fn build_classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        let unreserved = alnum || has(UNRESERVED_MARK, c);
        let mut m = 0;
        if unreserved || has(USER, c) {
            m |= class::USER;
        }
        if unreserved || has(PASSWORD, c) {
            m |= class::PASSWORD;
        }
        if unreserved || has(PARAM, c) {
            m |= class::PARAM;
        }
        if unreserved || has(HEADERS, c) {
            m |= class::HEADERS;
        }
        if alnum || has(b"-.!%*_+`'~", c) {
            m |= class::TOKEN;
        }
        if has(b" \t\r\n", c) {
            m |= class::LWS;
        }
        if alnum || c == b'-' || c == b'.' {
            m |= class::HOST;
        }
        if (unreserved || has(USER, c)) && c != b';' {
            m |= class::USER_PLAIN;
        }
        if (unreserved || has(PARAM, c)) && c != b';' {
            m |= class::PARAM_PLAIN;
        }
        if alnum || has(b"+-.()*#%", c) {
            m |= class::TEL_USER;
        }
        if alnum || has(b"-.!%*_+`'~[]:", c) {
            m |= class::GEN_VALUE;
        }
        #[allow(clippy::indexing_slicing)] // const evaluation: out of range fails the build
        {
            t[i] = m;
        }
        i += 1;
    }
    t
}

static CLASSES: [u16; 256] = build_classes();

/// The class bits of a byte.
#[inline(always)]
pub(crate) fn classes(b: u8) -> u16 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

/// The index of the first byte at or after `i` that fails `f` (or `b.len()`).
#[inline(always)]
pub(crate) fn skip_while(b: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while b.get(i).is_some_and(|&c| f(c)) {
        i += 1;
    }
    i
}

/// True when the byte is in any of the classes in `mask`.
#[inline(always)]
pub(crate) fn is(b: u8, mask: u16) -> bool {
    classes(b) & mask != 0
}

/// The index of the first byte at or after `i` outside `class` (one class bit), four bytes a
/// step while all four are in it: users, hosts and parameters are runs of such bytes, and one
/// test per four bytes halves the loop's work.
#[inline(always)]
pub(crate) fn skip_class(b: &[u8], mut i: usize, class: u16) -> usize {
    while let Some(&[c0, c1, c2, c3]) = b.get(i..i + 4) {
        if classes(c0) & classes(c1) & classes(c2) & classes(c3) & class == 0 {
            break;
        }
        i += 4;
    }
    while b.get(i).is_some_and(|&c| is(c, class)) {
        i += 1;
    }
    i
}

fn check_chars(s: &str, class: u16) -> Result<(), UriError> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(UriError::Malformed)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(UriError::Malformed);
            }
            i += 3;
            continue;
        }
        if !is(c, class) {
            return Err(UriError::Malformed);
        }
        i += 1;
    }
    Ok(())
}

/// Finds `;name[=value]` in a raw parameter string, comparing names case-insensitively.
pub fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    // A match needs `;` and the name: shorter parameter strings (most) need no scan.
    if params.len() <= name.len() {
        return None;
    }
    param_pairs(params).find_map(|(n, v)| {
        trim_fast(n)
            .eq_ignore_ascii_case(name)
            .then(|| trim_fast(v))
    })
}

/// `str::trim`, skipping the Unicode tables when both ends are visibly not whitespace.
#[inline]
pub(crate) fn trim_fast(s: &str) -> &str {
    let solid = |b: Option<&u8>| b.is_some_and(u8::is_ascii_graphic);
    if solid(s.as_bytes().first()) && solid(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// Byte index of the first `b` (ASCII) in `s`.
#[inline]
pub(crate) fn pos(s: &str, b: u8) -> Option<usize> {
    crate::scan::find_byte(s.as_bytes(), b)
}

/// `str::split_once` at an ASCII byte.
#[inline]
pub(crate) fn split_once_b(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = pos(s, b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `(name, value)` of each `;`-separated segment after the first (value `""` without `=`),
/// untrimmed: `params.split(';').skip(1)` split once at `=`.
#[inline]
pub(crate) fn param_pairs(params: &str) -> impl Iterator<Item = (&str, &str)> {
    // Word-at-a-time searches for the separators: parameter strings are short but many (every
    // URI and name-addr of a call has some, and each is read for several names).
    let mut rest = split_once_b(params, b';').map(|(_, r)| r);
    std::iter::from_fn(move || {
        let s = rest?;
        let seg = match split_once_b(s, b';') {
            Some((seg, next)) => {
                rest = Some(next);
                seg
            }
            None => {
                rest = None;
                s
            }
        };
        Some(split_once_b(seg, b'=').unwrap_or((seg, "")))
    })
}

/// %-unescapes; invalid escapes are left as they are (the grammar check rejects them earlier).
pub fn unescape(s: &str) -> Cow<'_, str> {
    if pos(s, b'%').is_none() {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_with_user_params() {
        let u = Uri::parse("sip:+15551234567;cpc=emergency;oli=0@198.51.100.1:5070;user=phone?X=1")
            .expect("uri");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("+15551234567"));
        assert_eq!(u.user_param("cpc"), Some("emergency"));
        assert_eq!(u.user_param("oli"), Some("0"));
        assert_eq!(u.host, "198.51.100.1");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("user"), Some("phone"));
        assert_eq!(u.headers, "X=1");
    }

    #[test]
    fn tel_uri() {
        let u = Uri::parse("tel:8005551234;phone-context=+1;npdi;rn=+18005550000").expect("tel");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some("8005551234"));
        assert_eq!(u.tel_param("phone-context"), Some("+1"));
        assert_eq!(u.tel_param("npdi"), Some(""));
        assert_eq!(u.tel_param("rn"), Some("+18005550000"));
    }

    #[test]
    fn user_with_dot_and_escapes() {
        let u = Uri::parse("sip:first.last@example.com").expect("dot");
        assert_eq!(u.user, Some("first.last"));
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").expect("esc");
        assert_eq!(u.user_unescaped().as_deref(), Some("sips:user@example.com"));
        assert_eq!(u.host, "example.net");
    }

    #[test]
    fn ipv6_host() {
        let u = Uri::parse("sip:[2001:db8::10]:5070").expect("v6");
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5070));
    }

    /// Schemes are case-insensitive (RFC 3261 §19.1.4), whether the first bytes or the search
    /// for the colon find them; near-misses are other schemes or malformed.
    #[test]
    fn scheme_case_and_near_misses() {
        for (text, scheme) in [
            ("SIP:a@h", Scheme::Sip),
            ("sIp:a@h", Scheme::Sip),
            ("Sips:a@h", Scheme::Sips),
            ("SIPS:a@h", Scheme::Sips),
            ("TEL:+1555", Scheme::Tel),
            ("tEl:+1555", Scheme::Tel),
        ] {
            assert_eq!(Uri::parse(text).map(|u| u.scheme), Ok(scheme), "{text}");
        }
        for text in ["sipx:a@h", "si:a", "tels:1", "s1p:a@h", "sip-x:a"] {
            assert_eq!(Uri::parse(text), Err(UriError::UnsupportedScheme), "{text}");
        }
        for text in ["sip", "tel", "sips", ":a@h", "si p:a@h", ""] {
            assert_eq!(Uri::parse(text), Err(UriError::Malformed), "{text}");
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(Uri::parse("http://x"), Err(UriError::UnsupportedScheme));
        assert_eq!(
            Uri::parse("sip:user@exa mple.com"),
            Err(UriError::Malformed)
        );
        assert_eq!(Uri::parse("sip:user@host:99999"), Err(UriError::Malformed));
        assert_eq!(Uri::parse("sip:us<er@host"), Err(UriError::Malformed));
        assert_eq!(Uri::parse("sip:user@host%zz"), Err(UriError::Malformed));
        assert_eq!(Uri::parse("noscheme"), Err(UriError::Malformed));
    }

    /// `tel_params` reads in one pass what the single lookups read: user part first, first
    /// occurrence wins, names without case, `user` from the URI parameters only.
    #[test]
    fn tel_params_agree_with_single_lookups() {
        use proptest::prelude::*;
        let name = prop::sample::select(vec![
            "cpc",
            "CPC",
            "oli",
            "verstat",
            "phone-context",
            "user",
            "User",
            "npdi",
            "rn",
            "x",
        ]);
        // `phone` and `PHONE` often: `;user=phone` alone has a fast path.
        let value = prop_oneof![
            Just("phone".to_owned()),
            Just("PHONE".to_owned()),
            "[a-z0-9+.-]{0,6}"
        ];
        let param = (name, prop::option::of(value)).prop_map(|(n, v)| match v {
            Some(v) => format!(";{n}={v}"),
            None => format!(";{n}"),
        });
        let params = prop::collection::vec(param, 0..5).prop_map(|p| p.concat());
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(
                &(params.clone(), params, any::<bool>()),
                |(user_p, uri_p, tel)| {
                    let text = if tel {
                        format!("tel:+12125551212{user_p}")
                    } else {
                        format!("sip:+12125551212{user_p}@h.example{uri_p}")
                    };
                    let u = Uri::parse(&text).expect("generated URIs are valid");
                    let p = u.tel_params();
                    prop_assert_eq!(p.user, u.param("user"));
                    prop_assert_eq!(p.phone_context, u.tel_param("phone-context"));
                    prop_assert_eq!(p.cpc, u.tel_param("cpc"));
                    prop_assert_eq!(p.oli, u.tel_param("oli"));
                    prop_assert_eq!(p.verstat, u.tel_param("verstat"));
                    Ok(())
                },
            )
            .expect("tel_params matches the single lookups");
    }

    /// The unescaped user without a second search for `%` ([`Uri::escaped`]) is what
    /// [`unescape`] makes of the user, for sip and tel URIs with escapes anywhere in the
    /// userinfo (user, user parameters, password) or none.
    #[test]
    fn user_unescaped_agrees_with_unescape() {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            "1", "+", "%2B", "%2b", "%41", "a", "-", ".", ";cpc=x", ";p=%3B", ":pw", ":p%41",
        ]);
        let user = prop::collection::vec(piece, 1..6).prop_map(|p| p.concat());
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&(user, any::<bool>()), |(user, tel)| {
                let text = if tel {
                    format!("tel:{}", user.replace([':', ';'], ""))
                } else {
                    format!("sip:{user}@h.example")
                };
                // Generated passwords and parameters can make a URI malformed: skip those.
                if let Ok(u) = Uri::parse(&text) {
                    prop_assert_eq!(u.user_unescaped(), u.user.map(unescape));
                }
                Ok(())
            })
            .expect("user_unescaped matches unescape");
    }

    /// A header parameter's value class is `token` and the three bytes of IPv6 references.
    #[test]
    fn generic_value_class() {
        for c in 0..=255u8 {
            let want = is(c, class::TOKEN) || matches!(c, b'[' | b']' | b':');
            assert_eq!(is(c, class::GEN_VALUE), want, "{c}");
        }
    }

    /// `skip_class` stops where a byte-at-a-time loop stops, for every class bit, start and
    /// position of the first outsider (the four-byte steps must not skip it).
    #[test]
    fn skip_class_agrees_with_a_plain_loop() {
        let classes_bits = [
            class::USER,
            class::PASSWORD,
            class::PARAM,
            class::HEADERS,
            class::TOKEN,
            class::LWS,
            class::HOST,
            class::USER_PLAIN,
            class::PARAM_PLAIN,
        ];
        for &bit in &classes_bits {
            for len in 0..20 {
                for stop in 0..=len {
                    for outsider in [b';', b'@', b'<', b' ', b'%', 0x80] {
                        let mut b = vec![b'a'; len];
                        if let Some(c) = b.get_mut(stop) {
                            *c = outsider;
                        }
                        for from in 0..=len {
                            let mut plain = from;
                            while b.get(plain).is_some_and(|&c| is(c, bit)) {
                                plain += 1;
                            }
                            assert_eq!(skip_class(&b, from, bit), plain, "{bit} {len} {stop}");
                        }
                    }
                }
            }
        }
    }

    /// `is_user_phone` is a case-insensitive comparison with `;user=phone`: every letter in
    /// either case, and every single-byte change of it, against `eq_ignore_ascii_case`.
    #[test]
    fn user_phone_word_compare() {
        const TEXT: &[u8; 11] = b";user=phone";
        for case in 0u32..(1 << 11) {
            let mut b = *TEXT;
            for (i, c) in b.iter_mut().enumerate() {
                if case & (1 << i) != 0 {
                    *c = c.to_ascii_uppercase();
                }
            }
            let s = std::str::from_utf8(&b).expect("ASCII");
            assert!(is_user_phone(s), "{s}");
        }
        for i in 0..TEXT.len() {
            for v in 0u8..128 {
                let mut b = *TEXT;
                if let Some(c) = b.get_mut(i) {
                    *c = v;
                }
                let s = std::str::from_utf8(&b).expect("ASCII");
                assert_eq!(
                    is_user_phone(s),
                    s.eq_ignore_ascii_case(";user=phone"),
                    "{s:?}"
                );
            }
        }
        assert!(!is_user_phone(";user=phon"));
        assert!(!is_user_phone(";user=phonex"));
    }

    /// `port_number` accepts what `str::parse::<u16>` accepts of one to five ASCII digits.
    #[test]
    fn port_numbers() {
        for p in [
            "0", "5060", "65535", "00080", "1", "99999", "65536", "", "123456", "+1", "5a", " 1",
        ] {
            let want = (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten();
            assert_eq!(port_number(p), want, "{p:?}");
        }
    }
}
