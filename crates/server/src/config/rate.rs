//! The call-rate keys: `[sip] max_cps`, `max_burst`, `retry_after_s`, and each trunk's
//! `max_cps`, `max_burst`, `over_limit` and their `_per_source` forms.

use std::collections::HashMap;

use tollgate_core::{Problem, QueueName};
use toml::Spanned;

use super::{Config, Errors};
use crate::limits::{LimitsConfig, OverLimit, Rate, TrunkLimits};

/// The most calls per second a limit may name, and the largest burst.
const MAX_CPS: f64 = 100_000.0;
const MAX_BURST: i64 = 1_000_000;

/// One limit's `max_cps` and `max_burst` (`burst_key` without `cps_key` is an error).
fn rate(
    errs: &mut Errors<'_>,
    cps: Option<&Spanned<f64>>,
    burst: Option<&Spanned<i64>>,
    cps_key: &str,
    burst_key: &str,
) -> Option<Rate> {
    let Some(cps) = cps else {
        if let Some(b) = burst {
            errs.push(
                b,
                burst_key,
                format!("needs {cps_key}: a burst of what rate?"),
            );
        }
        return None;
    };
    let per_second = *cps.get_ref();
    if !(per_second.is_finite() && (0.001..=MAX_CPS).contains(&per_second)) {
        errs.push(
            cps,
            cps_key,
            format!("{per_second}: calls per second must be from 0.001 to {MAX_CPS}"),
        );
        return None;
    }
    let burst = match burst {
        None => None,
        Some(b) => match u32::try_from(*b.get_ref()) {
            Ok(n) if (1..=MAX_BURST).contains(b.get_ref()) => Some(n),
            _ => {
                errs.push(
                    b,
                    burst_key,
                    format!(
                        "{}: calls at once must be from 1 to {MAX_BURST}",
                        b.get_ref()
                    ),
                );
                return None;
            }
        },
    };
    Some(Rate::new(per_second, burst))
}

/// The call-rate limits, with every overflow queue an `over_limit` names and where (the
/// problem to report, message left empty, if the rules do not declare it).
pub(super) fn rate_limits(
    errs: &mut Errors<'_>,
    raw: &Config,
) -> (LimitsConfig, Vec<(QueueName, Problem)>) {
    let node = rate(
        errs,
        raw.sip.max_cps.as_ref(),
        raw.sip.max_burst.as_ref(),
        "sip.max_cps",
        "sip.max_burst",
    );
    let retry_after = match &raw.sip.retry_after_s {
        None => 5,
        Some(r) => match u32::try_from(*r.get_ref()) {
            Ok(n) if (1..=86_400).contains(&n) => n,
            _ => {
                errs.push(
                    r,
                    "sip.retry_after_s",
                    format!("{}: seconds must be from 1 to 86400", r.get_ref()),
                );
                5
            }
        },
    };
    let mut trunks = HashMap::new();
    let mut queues = Vec::new();
    for (i, t) in raw.trunks.iter().enumerate() {
        let key = |k: &str| format!("trunk[{i}].{k}");
        let trunk = rate(
            errs,
            t.max_cps.as_ref(),
            t.max_burst.as_ref(),
            &key("max_cps"),
            &key("max_burst"),
        );
        let per_source = rate(
            errs,
            t.max_cps_per_source.as_ref(),
            t.max_burst_per_source.as_ref(),
            &key("max_cps_per_source"),
            &key("max_burst_per_source"),
        );
        let mut over = |errs: &mut Errors<'_>, v: Option<&Spanned<String>>, name: &str| {
            let v = v?;
            match OverLimit::parse(v.get_ref()) {
                Ok(o) => {
                    if let OverLimit::Queue(q) = &o {
                        queues.push((q.clone(), errs.problem(v, key(name), "")));
                    }
                    Some(o)
                }
                Err(e) => {
                    errs.push(v, key(name), e);
                    None
                }
            }
        };
        let over_limit = over(errs, t.over_limit.as_ref(), "over_limit");
        let over_source = over(
            errs,
            t.over_limit_per_source.as_ref(),
            "over_limit_per_source",
        );
        if let (Some(v), None, None) = (&t.over_limit, trunk, per_source) {
            if t.max_cps.is_none() && t.max_cps_per_source.is_none() {
                errs.push(
                    v,
                    key("over_limit"),
                    "nothing to be over: set max_cps or max_cps_per_source",
                );
            }
        }
        if let (Some(v), None) = (&t.over_limit_per_source, per_source) {
            if t.max_cps_per_source.is_none() {
                errs.push(
                    v,
                    key("over_limit_per_source"),
                    "nothing to be over: set max_cps_per_source",
                );
            }
        }
        if trunk.is_none() && per_source.is_none() {
            continue;
        }
        let over_limit = over_limit.unwrap_or(OverLimit::Reject(503));
        trunks.insert(
            t.name.get_ref().clone(),
            TrunkLimits {
                trunk,
                over_limit_per_source: over_source.unwrap_or_else(|| over_limit.clone()),
                over_limit,
                per_source,
            },
        );
    }
    (
        LimitsConfig {
            node,
            trunks,
            retry_after,
        },
        queues,
    )
}
