//! The RFC 8224 `Identity` header value: a compact JWS followed by `info`, `alg` and `ppt`,
//! parsed here into [`IdentityHeader`] so that the stir crate only verifies.

use tollgate_core::{IdentityHeader, IdentityValue};

/// An Identity header line as the call carries it: parsed, or why not.
pub fn identity_value(line: &str) -> IdentityValue {
    match parse_identity(line) {
        Ok(h) => IdentityValue::Parsed(h),
        Err(why) => IdentityValue::Malformed(why),
    }
}

/// Parses one `Identity` header value.
///
/// Lenient where deployed signers differ from the ABNF, strict where it matters:
/// - the token may use base64url (`-`, `_`: the RFC's own examples do, although its
///   `base64-char` lists only `+` and `/`) or plain base64, padded or not; it must have three
///   dot-separated parts;
/// - parameter names are case-insensitive (SIP), values may be `<...>`-bracketed, quoted or
///   bare tokens, with optional whitespace around `;` and `=`;
/// - a parameter given twice is malformed (which one would the signer have meant?).
pub fn parse_identity(header_value: &str) -> Result<IdentityHeader, String> {
    let value = header_value.trim();
    let (token, mut rest) = match value.find(';') {
        Some(i) => value.split_at(i),
        None => (value, ""),
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(String::from("empty signed-identity-digest"));
    }
    if let Some(bad) = token
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=' | '.')))
    {
        return Err(format!("character {bad:?} in signed-identity-digest"));
    }
    if token.split('.').count() != 3 {
        return Err(String::from(
            "signed-identity-digest is not hdr.payload.sig",
        ));
    }

    let mut header = IdentityHeader {
        token: token.to_string(),
        info: None,
        alg: None,
        ppt: None,
        other: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    while let Some(after_semi) = rest.strip_prefix(';') {
        let (name, value, remaining) = parse_param(after_semi)?;
        rest = remaining.trim_start();
        if name.is_empty() {
            return Err(String::from("empty parameter name"));
        }
        if seen.contains(&name) {
            return Err(format!("parameter {name} given twice"));
        }
        seen.push(name.clone());
        match name.as_str() {
            "info" => {
                header.info = Some(value.ok_or_else(|| String::from("info without a value"))?)
            }
            "alg" => header.alg = value,
            "ppt" => header.ppt = value,
            _ => header.other.push((name, value)),
        }
    }
    if !rest.trim().is_empty() {
        return Err(format!(
            "unexpected text {:?} after parameters",
            rest.trim()
        ));
    }
    Ok(header)
}

/// Parses `name[=value]` at the start of `s` (just after a `;`); returns the lowercased name,
/// the unwrapped value and what follows (starting at the next `;`, or empty).
fn parse_param(s: &str) -> Result<(String, Option<String>, &str), String> {
    let s = s.trim_start();
    let name_end = s
        .find(|c: char| c == '=' || c == ';' || c.is_ascii_whitespace())
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(name_end);
    let name = name.to_ascii_lowercase();
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix('=') else {
        return Ok((name, None, rest));
    };
    let rest = rest.trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner
            .find('>')
            .ok_or_else(|| format!("unterminated <...> in {name}"))?;
        let (v, after) = inner.split_at(end);
        return Ok((
            name,
            Some(v.trim().to_string()),
            after.get(1..).unwrap_or(""),
        ));
    }
    if rest.starts_with('"') {
        // quoted-string (RFC 3261 §25.1): the header grammar's one reader.
        let (content, after) =
            crate::hdr::quoted_string(rest).map_err(|_| format!("unterminated quote in {name}"))?;
        // A quoted info may itself carry angle brackets: drop them.
        let v = content.trim();
        let v = v
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .unwrap_or(v);
        return Ok((name, Some(v.to_string()), after));
    }
    let end = rest.find(';').unwrap_or(rest.len());
    let (v, after) = rest.split_at(end);
    let v = v.trim();
    if v.is_empty() {
        return Err(format!("empty value for {name}"));
    }
    Ok((name, Some(v.to_string()), after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_form_with_brackets() {
        let h = parse_identity(
            "aGRy.cGF5.c2ln;info=<https://cert.example.org/passport.cer>;alg=ES256;ppt=shaken",
        )
        .unwrap();
        assert_eq!(h.token, "aGRy.cGF5.c2ln");
        assert_eq!(
            h.info.as_deref(),
            Some("https://cert.example.org/passport.cer")
        );
        assert_eq!(h.alg.as_deref(), Some("ES256"));
        assert_eq!(h.ppt.as_deref(), Some("shaken"));
        assert!(h.other.is_empty());
    }

    #[test]
    fn quoted_values_whitespace_and_case() {
        let h = parse_identity(
            " a-_b.c+/d.e== ; INFO = \"<https://x.example/c.pem>\" ; ppt=\"shaken\" ;Alg=ES256;foo",
        )
        .unwrap();
        assert_eq!(h.token, "a-_b.c+/d.e==");
        assert_eq!(h.info.as_deref(), Some("https://x.example/c.pem"));
        assert_eq!(h.ppt.as_deref(), Some("shaken"));
        assert_eq!(h.alg.as_deref(), Some("ES256"));
        assert_eq!(h.other, vec![("foo".to_string(), None)]);
    }

    #[test]
    fn info_may_contain_semicolons_inside_brackets() {
        let h = parse_identity("a.b.c;info=<https://x.example/c;v=1>;ppt=shaken").unwrap();
        assert_eq!(h.info.as_deref(), Some("https://x.example/c;v=1"));
        assert_eq!(h.ppt.as_deref(), Some("shaken"));
    }

    #[test]
    fn no_params_is_parsed_and_left_to_the_verifier() {
        let h = parse_identity("a.b.c").unwrap();
        assert_eq!(h.info, None);
        assert_eq!(h.ppt, None);
    }

    #[test]
    fn malformed_values() {
        for bad in [
            "",
            ";info=<https://x>",
            "a.b;info=<https://x>",
            "a.b.c.d;ppt=shaken",
            "a.b.c!;ppt=shaken",
            "a.b.c;info=<https://x",
            "a.b.c;ppt=\"shaken",
            "a.b.c;ppt=shaken;ppt=div",
            "a.b.c;ppt=",
            "a.b.c;info",
        ] {
            let e = parse_identity(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod never_panics {
    use proptest::prelude::*;

    proptest! {
        /// Any text, and any text after a valid token: an answer, never a panic.
        #[test]
        fn on_any_text(s in ".{0,200}", tail in "[;=<>\"\\\\a-z ]{0,40}") {
            let _ = super::parse_identity(&s);
            let _ = super::identity_value(&format!("a.b.c;{tail}"));
        }
    }
}
