//! `[cli]` and each trunk's `[trunk.cli]`: calling line identity validation (ordered
//! allow/validate/deny rules) and the approved-CLI policy.

use std::collections::HashMap;

use serde::Deserialize;
use tollgate_core::{CliConfig, CliPolicy, CliRule, Unapproved, E164};
use toml::Spanned;

use super::trunk::TrunkSection;
use super::Errors;

/// CLI validation rules and approved-CLI policy (global, or per trunk as `[trunk.cli]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliSection {
    /// Ordered `allow|validate|deny PATTERN` rules; unset inherits the global rules.
    #[serde(default)]
    pub rules: Option<Spanned<Vec<String>>>,
    /// Approved CLIs (numbers and patterns); empty means no approved-CLI policy.
    #[serde(default)]
    pub approved: Option<Spanned<Vec<String>>>,
    /// What happens to an unapproved CLI: "mark-invalid" (default), "reject" or "forced".
    #[serde(default)]
    pub unapproved: Option<Spanned<String>>,
    /// The number that replaces an unapproved CLI in "forced" mode (E.164 with +).
    #[serde(default)]
    pub forced: Option<Spanned<String>>,
    /// SIP status for "reject" mode (default 403).
    #[serde(default)]
    pub reject_code: Option<Spanned<u16>>,
}

/// The global CLI config (for calls from unknown sources too) and each trunk's, by name: a
/// trunk without `[trunk.cli]` takes the global one, and one without `rules` the global rules.
pub(super) fn cli(
    errs: &mut Errors<'_>,
    global: &CliSection,
    trunks: &[TrunkSection],
) -> (HashMap<String, CliConfig>, CliConfig) {
    let cli_default = cli_config(errs, global, None, "cli");
    let mut cli = HashMap::new();
    for (i, t) in trunks.iter().enumerate() {
        let own = t
            .cli
            .as_ref()
            .map(|c| cli_config(errs, c, Some(&cli_default), &format!("trunk[{i}].cli")));
        cli.insert(
            t.name.get_ref().clone(),
            own.unwrap_or_else(|| cli_default.clone()),
        );
    }
    (cli, cli_default)
}

/// Builds one CLI config; `inherit` supplies rules a trunk does not set.
fn cli_config(
    errs: &mut Errors<'_>,
    c: &CliSection,
    inherit: Option<&CliConfig>,
    key: &str,
) -> CliConfig {
    let rules = match &c.rules {
        Some(list) => list
            .get_ref()
            .iter()
            .filter_map(|r| match r.parse::<CliRule>() {
                Ok(rule) => Some(rule),
                Err(e) => {
                    errs.push(list, format!("{key}.rules"), e.to_string());
                    None
                }
            })
            .collect(),
        None => inherit.map(|i| i.rules.clone()).unwrap_or_default(),
    };
    let approved: Vec<_> = c
        .approved
        .as_ref()
        .map(|list| {
            list.get_ref()
                .iter()
                .filter_map(|p| match p.parse() {
                    Ok(p) => Some(p),
                    Err(e) => {
                        errs.push(list, format!("{key}.approved"), format!("{e}"));
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let unapproved = match c.unapproved.as_ref().map(|u| (u, u.get_ref().as_str())) {
        None | Some((_, "mark-invalid")) => Unapproved::MarkInvalid,
        Some((_, "reject")) => {
            let code = c.reject_code.as_ref().map_or(403, |c| *c.get_ref());
            if !(400..=699).contains(&code) {
                if let Some(span) = &c.reject_code {
                    errs.push(
                        span,
                        format!("{key}.reject_code"),
                        format!("{code} is not a 4xx-6xx status"),
                    );
                }
            }
            Unapproved::Reject(code)
        }
        Some((u, "forced")) => match c.forced.as_ref() {
            Some(f) => match f.get_ref().strip_prefix('+').and_then(E164::from_digits) {
                Some(n) => Unapproved::Forced(n),
                None => {
                    errs.push(
                        f,
                        format!("{key}.forced"),
                        format!("{:?} is not an E.164 number (+CC...)", f.get_ref()),
                    );
                    Unapproved::MarkInvalid
                }
            },
            None => {
                errs.push(
                    u,
                    format!("{key}.forced"),
                    "\"forced\" needs `forced = \"+CC...\"`",
                );
                Unapproved::MarkInvalid
            }
        },
        Some((u, other)) => {
            errs.push(
                u,
                format!("{key}.unapproved"),
                format!("{other:?}: expected \"mark-invalid\", \"reject\" or \"forced\""),
            );
            Unapproved::MarkInvalid
        }
    };
    CliConfig {
        rules,
        policy: (!approved.is_empty()).then_some(CliPolicy {
            approved,
            unapproved,
        }),
    }
}
