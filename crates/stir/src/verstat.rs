//! The carrier's own verification result, the 3GPP `verstat` tel/sip URI parameter
//! (3GPP TS 24.229 §7.2A.20, in the IANA tel URI parameter registry), for trunks that verify
//! for us.

use tollgate_core::{Attestation, Verification};

/// Interprets a `verstat` value. Matching is by prefix and ignores ASCII case, so carrier
/// suffixes (`-Diverted`, `-Passthrough`, ...) keep the base meaning:
///
/// | value | result |
/// |---|---|
/// | `TN-Validation-Passed` | (A, Verified): Telnyx sends the bare value for A |
/// | `TN-Validation-Passed-A` / `-B` / `-C` [+suffix] | (that level, Verified) |
/// | `TN-Validation-Failed[-A|-B|-C]` [+suffix] | (None, Failed("verstat ...")) |
/// | `No-TN-Validation`, `NULL`, empty, anything else | (None, Absent) |
///
/// A failed validation reports no attestation: the level it names was claimed, not proven.
pub fn from_verstat(v: &str) -> (Option<Attestation>, Verification) {
    let v = v.trim().trim_matches('"').trim();
    if let Some(rest) = strip_prefix_ci(v, "TN-Validation-Passed") {
        return match level(rest) {
            Level::Letter(a) => (Some(a), Verification::Verified),
            // Bare "Passed", or "Passed-Diverted": no letter means A (Telnyx's convention).
            Level::NoLetter => (Some(Attestation::A), Verification::Verified),
            Level::Unknown => (None, Verification::Absent),
        };
    }
    if let Some(rest) = strip_prefix_ci(v, "TN-Validation-Failed") {
        if level(rest) != Level::Unknown {
            return (None, Verification::Failed(format!("verstat {v}")));
        }
    }
    (None, Verification::Absent)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Letter(Attestation),
    NoLetter,
    Unknown,
}

/// What follows `Passed`/`Failed`: nothing, `-A|-B|-C` (then the end or `-suffix`), or a
/// word suffix such as `-Diverted`. A one-letter segment other than A-C, or text glued to
/// the base value, is unknown.
fn level(rest: &str) -> Level {
    if rest.is_empty() {
        return Level::NoLetter;
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return Level::Unknown;
    };
    let segment = rest.split('-').next().unwrap_or("");
    if segment.len() != 1 {
        return if segment.is_empty() {
            Level::Unknown
        } else {
            Level::NoLetter
        };
    }
    match segment.to_ascii_uppercase().as_str() {
        "A" => Level::Letter(Attestation::A),
        "B" => Level::Letter(Attestation::B),
        "C" => Level::Letter(Attestation::C),
        _ => Level::Unknown,
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        use Attestation::*;
        let ok = |a| (Some(a), Verification::Verified);
        assert_eq!(from_verstat("TN-Validation-Passed"), ok(A));
        assert_eq!(from_verstat("TN-Validation-Passed-A"), ok(A));
        assert_eq!(from_verstat("TN-Validation-Passed-B"), ok(B));
        assert_eq!(from_verstat("tn-validation-passed-c"), ok(C));
        assert_eq!(from_verstat("TN-Validation-Passed-B-Diverted"), ok(B));
        assert_eq!(from_verstat("TN-Validation-Passed-C-Passthrough"), ok(C));
        assert_eq!(from_verstat("TN-Validation-Passed-Diverted"), ok(A));
        assert_eq!(from_verstat(" \"TN-Validation-Passed-A\" "), ok(A));

        for f in [
            "TN-Validation-Failed",
            "TN-Validation-Failed-A",
            "TN-Validation-Failed-B-Diverted",
            "TN-Validation-Failed-C-Passthrough",
            "TN-Validation-Failed-Diverted",
        ] {
            let (a, v) = from_verstat(f);
            assert_eq!(a, None, "{f}");
            assert_eq!(v, Verification::Failed(format!("verstat {f}")), "{f}");
        }

        for none in [
            "No-TN-Validation",
            "No-TN-Validation-Passthrough",
            "NULL",
            "",
            "TN-Validation-PassedX",
            "TN-Validation-Passed-D",
            "garbage",
        ] {
            assert_eq!(from_verstat(none), (None, Verification::Absent), "{none}");
        }
    }
}
