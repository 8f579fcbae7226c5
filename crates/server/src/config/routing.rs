//! `[routing]`: the ACD, and where calls go: a directory of rule files (`rules_dir`, with an
//! optional `shadow_dir`), or the table written here (`default_queue`, `dnis`,
//! `country_suffix`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tollgate_core::{NumberPlan, PartyNumber, Problem};
use toml::Spanned;

use super::Errors;
use crate::rules::RuleSource;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    pub acd_host: Spanned<String>,
    /// A directory of rule files (relative to this file); without it the table below routes.
    #[serde(default)]
    pub rules_dir: Option<Spanned<String>>,
    /// Candidate rules (relative to this file) every live call is also decided by, without
    /// changing its answer (`GET /v1/admin/shadow`); a shadow that does not load is reported
    /// and ignored.
    #[serde(default)]
    pub shadow_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub default_queue: Option<Spanned<String>>,
    #[serde(default)]
    pub emergency_queue: Option<Spanned<String>>,
    #[serde(default)]
    pub dnis: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub country_suffix: BTreeMap<String, Spanned<String>>,
}

/// `[routing]`, checked.
pub(super) struct Routing {
    pub table: tollgate_router::Table,
    pub rules: RuleSource,
    pub rule_settings: tollgate_router::Settings,
    pub shadow_dir: Option<PathBuf>,
    /// The problems of the rule files (`rules_dir`), as `rule_errors` found them.
    pub rule_errors: Vec<Problem>,
}

/// Checks `[routing]`; `base` is the config's folder, `rule_errors` checks a rules directory.
pub(super) fn routing(
    errs: &mut Errors<'_>,
    r: &RoutingSection,
    plan: &NumberPlan,
    base: &Path,
    rule_errors: impl FnOnce(&Path, &tollgate_router::Settings) -> Vec<tollgate_router::RuleError>,
) -> Routing {
    if tollgate_sip::uri::split_hostport(r.acd_host.get_ref()).is_err() {
        errs.push(&r.acd_host, "routing.acd_host", "not a host or host:port");
    }
    let queue = |errs: &mut Errors<'_>, q: &Spanned<String>, key: String| {
        if let Err(bad) = tollgate_core::QueueName::new(q.get_ref().as_str()) {
            errs.push(q, key, bad.to_string());
        }
        q.get_ref().clone()
    };
    let default_queue = match (&r.default_queue, &r.rules_dir) {
        (Some(q), _) => queue(errs, q, "routing.default_queue".into()),
        (None, Some(_)) => String::new(),
        (None, None) => {
            errs.push(
                &r.acd_host,
                "routing",
                "set `rules_dir` (a directory of rule files) or `default_queue`",
            );
            String::new()
        }
    };
    let emergency_queue = r
        .emergency_queue
        .as_ref()
        .map(|q| queue(errs, q, "routing.emergency_queue".into()));
    let us = plan.region("US").ok().cloned();
    let mut dnis = HashMap::new();
    for (k, q) in &r.dnis {
        let key = format!("routing.dnis.\"{k}\"");
        let qn = queue(errs, q, key.clone());
        let digits = k.trim_start_matches('+');
        let number = match &us {
            Some(us) if k.starts_with('+') => plan.normalize(k, us, None),
            _ if digits.len() <= 6
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                PartyNumber::Short(digits.to_owned())
            }
            Some(us) => plan.normalize(&format!("+{digits}"), us, None),
            None => PartyNumber::Unusable(k.clone()),
        };
        match number.key() {
            Some(d) => {
                if dnis.insert(d.to_owned(), qn).is_some() {
                    errs.push(q, key, format!("number {k:?} is listed twice"));
                }
            }
            None => errs.push(
                q,
                key,
                format!("{k:?} is not an E.164 number (+CC...) or a short code"),
            ),
        }
    }
    let mut country_suffix = HashMap::new();
    for (cc, suffix) in &r.country_suffix {
        match cc.parse::<u16>() {
            Ok(code) if plan.calling_code(cc) == Some(cc.as_str()) => {
                country_suffix.insert(code, suffix.get_ref().clone());
            }
            _ => errs.push(
                suffix,
                format!("routing.country_suffix.\"{cc}\""),
                format!("{cc:?} is not a calling code"),
            ),
        }
    }

    let table = tollgate_router::Table {
        acd_host: r.acd_host.get_ref().clone(),
        dnis,
        default_queue,
        emergency_queue: emergency_queue.clone(),
        country_suffix,
    };
    let rule_settings = tollgate_router::Settings {
        acd_host: r.acd_host.get_ref().clone(),
        emergency_queue,
    };
    let (rules, rule_errors) = match &r.rules_dir {
        Some(dir) => {
            let dir = base.join(dir.get_ref());
            let errors = rule_errors(&dir, &rule_settings);
            (
                RuleSource::Dir(dir),
                errors.into_iter().map(crate::rules::problem).collect(),
            )
        }
        None => (RuleSource::Table(table.clone()), Vec::new()),
    };
    Routing {
        table,
        rules,
        rule_settings,
        shadow_dir: r.shadow_dir.as_ref().map(|d| base.join(d.get_ref())),
        rule_errors,
    }
}
