//! `[crm]`: CRM lookups (tollgate-crm validates the section). A directory file is read here,
//! once: `check` reports its bad rows with their lines, and `serve` runs the lookup built from
//! what was read.

use std::path::Path;
use std::sync::Arc;

use tollgate_core::NumberPlan;
use tollgate_crm::{Kind, Lookup, LookupConfig, LookupError};
use toml::Spanned;

use super::Errors;

/// The section, and for `kind = "file"` the lookup over the file as read (an HTTP CRM is
/// built at start-up: its secrets come from the environment then).
pub(super) fn crm(
    errs: &mut Errors<'_>,
    section: &Spanned<LookupConfig>,
    base: &Path,
    plan: &NumberPlan,
) -> (LookupConfig, Option<Lookup>) {
    let at = errs.line(section.span().start);
    let cfg = section.get_ref().clone();
    let problems = cfg.validate();
    let mut lookup = None;
    if problems.is_empty() && cfg.kind == Kind::File {
        // The numbering plan only when the file's numbers are national (`file.region`).
        let plan = cfg.file.region.is_some().then(|| Arc::new(plan.clone()));
        match Lookup::from_config_with_plan(&cfg, base, plan) {
            Ok(l) => lookup = Some(l),
            Err(LookupError::Config(problems)) => errs.place_all(problems, at),
            Err(e) => errs.place_all(
                vec![tollgate_core::Problem::new("crm.file.path", e.to_string())],
                at,
            ),
        }
    }
    errs.place_all(problems, at);
    (cfg, lookup)
}
