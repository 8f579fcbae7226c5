//! CLI (caller number) validation: PortaSwitch-style ordered rules and a ConnexCS-style
//! per-trunk approved-CLI policy. Pure functions over a classified number.

use std::fmt;
use std::str::FromStr;

use crate::classify::{NumberInfo, NumberKind};
use crate::number::{PartyNumber, E164};

/// A digit pattern: digits match themselves, `x` or `_` one symbol, `%` any run (also empty).
/// Matched against E.164 digits without `+` (`27xxxxxxxxx` is a South African number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliPattern(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("pattern {0:?}: only digits, *, #, x, _ and % are allowed")]
    Pattern(String),
    #[error("rule {0:?}: expected `allow|validate|deny PATTERN`")]
    Rule(String),
}

impl FromStr for CliPattern {
    type Err = CliError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let p = s.trim().trim_start_matches('+');
        let ok = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_digit() || b"*#xX_%".contains(&b));
        if ok {
            Ok(Self(p.to_ascii_lowercase()))
        } else {
            Err(CliError::Pattern(s.to_owned()))
        }
    }
}

impl CliPattern {
    pub fn matches(&self, digits: &str) -> bool {
        glob(self.0.as_bytes(), digits.as_bytes())
    }
}

impl fmt::Display for CliPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative glob with backtracking to the last `%`: linear for the usual single `%`.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'%') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(b'x' | b'_') => {
                pi += 1;
                si += 1;
            }
            Some(c) if s.get(si) == Some(c) => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'%'))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliAction {
    Allow,
    Validate,
    Deny,
}

/// One `allow|validate|deny PATTERN` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliRule {
    pub action: CliAction,
    pub pattern: CliPattern,
}

impl FromStr for CliRule {
    type Err = CliError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut it = s.split_whitespace();
        let action = match it.next() {
            Some("allow") => CliAction::Allow,
            Some("validate") => CliAction::Validate,
            Some("deny") => CliAction::Deny,
            _ => return Err(CliError::Rule(s.to_owned())),
        };
        let pattern = it
            .next()
            .ok_or_else(|| CliError::Rule(s.to_owned()))?
            .parse()?;
        if it.next().is_some() {
            return Err(CliError::Rule(s.to_owned()));
        }
        Ok(Self { action, pattern })
    }
}

impl fmt::Display for CliRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = match self.action {
            CliAction::Allow => "allow",
            CliAction::Validate => "validate",
            CliAction::Deny => "deny",
        };
        write!(f, "{a} {}", self.pattern)
    }
}

/// The verdict on a caller number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliVerdict {
    Valid,
    Invalid,
    /// Emergency calls are never validated.
    Exempt,
    /// No number to validate (anonymous, restricted, unavailable).
    Withheld,
}

impl CliVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CliVerdict::Valid => "valid",
            CliVerdict::Invalid => "invalid",
            CliVerdict::Exempt => "exempt",
            CliVerdict::Withheld => "withheld",
        }
    }
}

/// The verdict and why, for the decision log and explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliCheck {
    pub verdict: CliVerdict,
    pub reason: String,
    /// Set when a Forced CLI replaced the caller's number: the number it replaced.
    pub forced_from: Option<PartyNumber>,
}

/// libphonenumber validity as a CLI: toll-free and premium numbers never originate calls.
fn valid_as_cli(info: &NumberInfo) -> (bool, String) {
    match info.kind {
        _ if !info.valid => (false, "not a valid number".into()),
        NumberKind::TollFree | NumberKind::PremiumRate => {
            (false, format!("{} number as CLI", info.kind))
        }
        k => (true, format!("valid {k} number")),
    }
}

/// Applies ordered rules to a caller number; the first matching rule wins, and `validate` or
/// no match falls back to libphonenumber validity.
pub fn validate(
    number: &PartyNumber,
    info: Option<&NumberInfo>,
    rules: &[CliRule],
    emergency: bool,
) -> CliCheck {
    let check = |verdict, reason: String| CliCheck {
        verdict,
        reason,
        forced_from: None,
    };
    if emergency {
        return check(CliVerdict::Exempt, "emergency call".into());
    }
    let digits = match number {
        PartyNumber::Withheld(w) => return check(CliVerdict::Withheld, w.as_str().into()),
        PartyNumber::E164(e) => e.digits(),
        PartyNumber::Short(s) => s.as_str(),
        PartyNumber::Unusable(_) => return check(CliVerdict::Invalid, "not a number".into()),
    };
    let fallback = |prefix: &str| match (number, info) {
        (PartyNumber::E164(_), Some(info)) => {
            let (ok, why) = valid_as_cli(info);
            check(
                if ok {
                    CliVerdict::Valid
                } else {
                    CliVerdict::Invalid
                },
                format!("{prefix}{why}"),
            )
        }
        _ => check(CliVerdict::Invalid, format!("{prefix}not an E.164 number")),
    };
    for (i, rule) in rules.iter().enumerate() {
        if rule.pattern.matches(digits) {
            let at = format!("rule {} `{rule}`", i + 1);
            return match rule.action {
                CliAction::Allow => check(CliVerdict::Valid, at),
                CliAction::Deny => check(CliVerdict::Invalid, at),
                CliAction::Validate => fallback(&format!("{at}: ")),
            };
        }
    }
    fallback("no rule matched: ")
}

/// What to do with a caller number that matches no approved CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unapproved {
    /// Keep it and mark the CLI invalid.
    MarkInvalid,
    /// Reject the call with this status (never an emergency call).
    Reject(u16),
    /// Replace it with this number, and say so.
    Forced(E164),
}

/// A trunk's approved-CLI list and what happens to numbers outside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliPolicy {
    pub approved: Vec<CliPattern>,
    pub unapproved: Unapproved,
}

/// The policy's effect on one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// No policy, an approved number, or an emergency call.
    Pass,
    MarkInvalid,
    Reject(u16),
    /// Replace the ANI with this number.
    Forced(E164),
}

impl CliPolicy {
    pub fn apply(&self, number: &PartyNumber, emergency: bool) -> PolicyOutcome {
        if emergency || self.approved.is_empty() {
            return PolicyOutcome::Pass;
        }
        if number
            .key()
            .is_some_and(|d| self.approved.iter().any(|p| p.matches(d)))
        {
            return PolicyOutcome::Pass;
        }
        match &self.unapproved {
            Unapproved::MarkInvalid => PolicyOutcome::MarkInvalid,
            Unapproved::Reject(code) => PolicyOutcome::Reject(*code),
            Unapproved::Forced(n) => PolicyOutcome::Forced(n.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classifier;
    use std::sync::OnceLock;

    fn classifier() -> &'static Classifier {
        static C: OnceLock<Classifier> = OnceLock::new();
        C.get_or_init(|| Classifier::load().expect("metadata"))
    }

    fn verdict(digits: &str, rules: &[CliRule], emergency: bool) -> CliVerdict {
        let n = E164::from_digits(digits)
            .map_or_else(|| PartyNumber::Short(digits.into()), PartyNumber::E164);
        let info = n.e164().map(|e| classifier().classify(e));
        validate(&n, info.as_ref(), rules, emergency).verdict
    }

    fn portaswitch_example() -> Vec<CliRule> {
        [
            "allow 27xxxxxxxxx",
            "deny 27%",
            "validate xxxxxx%",
            "deny %",
        ]
        .iter()
        .map(|r| r.parse().expect("rule"))
        .collect()
    }

    #[test]
    fn patterns() {
        let p: CliPattern = "27xxxxxxxxx".parse().expect("p");
        assert!(p.matches("27821234567"));
        assert!(!p.matches("2782123456"), "one digit short");
        assert!(!p.matches("278212345678"), "one digit long");
        let p: CliPattern = "1_00%".parse().expect("p");
        assert!(p.matches("1800") && p.matches("18005550100") && !p.matches("2800"));
        let p: CliPattern = "%99".parse().expect("p");
        assert!(p.matches("99") && p.matches("12399") && !p.matches("1239"));
        assert!("12a".parse::<CliPattern>().is_err());
        assert!("permit 1%".parse::<CliRule>().is_err());
    }

    #[test]
    fn portaswitch_example_each_side_of_each_rule() {
        let rules = portaswitch_example();
        // allow 27xxxxxxxxx: 11-digit South African numbers pass whatever they are.
        assert_eq!(verdict("27821234567", &rules, false), CliVerdict::Valid);
        // deny 27%: other lengths under 27 are denied, even if libphonenumber might accept.
        assert_eq!(verdict("2782123456", &rules, false), CliVerdict::Invalid);
        assert_eq!(verdict("278212345678", &rules, false), CliVerdict::Invalid);
        // validate xxxxxx%: six digits or more fall back to validity.
        assert_eq!(verdict("12015550123", &rules, false), CliVerdict::Valid);
        assert_eq!(verdict("442072601815", &rules, false), CliVerdict::Valid);
        assert_eq!(verdict("12345678", &rules, false), CliVerdict::Invalid);
        // deny %: shorter than six digits.
        assert_eq!(verdict("12345", &rules, false), CliVerdict::Invalid);
        // toll-free and premium are never valid callers.
        assert_eq!(verdict("18005550100", &rules, false), CliVerdict::Invalid);
        assert_eq!(verdict("19005550100", &rules, false), CliVerdict::Invalid);
    }

    #[test]
    fn no_rules_falls_back_to_validity_and_emergency_is_exempt() {
        assert_eq!(verdict("12015550123", &[], false), CliVerdict::Valid);
        assert_eq!(verdict("12345", &[], false), CliVerdict::Invalid);
        assert_eq!(
            verdict("12345", &portaswitch_example(), true),
            CliVerdict::Exempt
        );
        let w = validate(
            &PartyNumber::Withheld(crate::Withheld::Anonymous),
            None,
            &[],
            false,
        );
        assert_eq!(w.verdict, CliVerdict::Withheld);
    }

    #[test]
    fn forced_cli_replaces_unapproved_numbers() {
        let forced = E164::from_digits("18005550199").expect("n");
        let policy = CliPolicy {
            approved: vec![
                "1212555%".parse().expect("p"),
                "442072601815".parse().expect("p"),
            ],
            unapproved: Unapproved::Forced(forced.clone()),
        };
        let n = |d: &str| PartyNumber::E164(E164::from_digits(d).expect("n"));
        assert_eq!(policy.apply(&n("12125550100"), false), PolicyOutcome::Pass);
        assert_eq!(policy.apply(&n("442072601815"), false), PolicyOutcome::Pass);
        assert_eq!(
            policy.apply(&n("13125550100"), false),
            PolicyOutcome::Forced(forced)
        );
        assert_eq!(
            policy.apply(&n("13125550100"), true),
            PolicyOutcome::Pass,
            "emergency"
        );
        let reject = CliPolicy {
            unapproved: Unapproved::Reject(403),
            ..policy
        };
        assert_eq!(
            reject.apply(&PartyNumber::Withheld(crate::Withheld::Anonymous), false),
            PolicyOutcome::Reject(403)
        );
    }

    proptest::proptest! {
        #[test]
        fn percent_alone_matches_everything(s in "[0-9]{0,15}") {
            proptest::prop_assert!("%".parse::<CliPattern>().expect("p").matches(&s));
        }

        #[test]
        fn a_number_matches_itself_and_its_x_mask(s in "[0-9]{1,15}") {
            let own: CliPattern = s.parse().expect("p");
            let mask: CliPattern = "x".repeat(s.len()).parse().expect("p");
            proptest::prop_assert!(own.matches(&s) && mask.matches(&s));
            let longer = format!("{s}0");
            proptest::prop_assert!(!own.matches(&longer) && !mask.matches(&longer));
        }
    }
}
