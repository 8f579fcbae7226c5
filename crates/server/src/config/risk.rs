//! `[risk]`: velocity, lists, the score and the policy (tollgate-risk validates the section;
//! its trunk names are checked here, where the trunks are known).

use std::path::Path;

use tollgate_core::Problem;
use tollgate_risk::RiskConfig;
use toml::Spanned;

use super::trunk::TrunkSection;
use super::Errors;

/// The section, its relative paths resolved against `base`.
pub(super) fn risk(
    errs: &mut Errors<'_>,
    section: &Spanned<RiskConfig>,
    trunks: &[TrunkSection],
    base: &Path,
) -> RiskConfig {
    let at = errs.line(section.span().start);
    let mut problems = section.get_ref().validate();
    // `[risk.trunk."NAME"]` must name a `[[trunk]]` (the risk crate cannot see the trunks).
    for name in section.get_ref().trunk.keys() {
        if !trunks.iter().any(|t| t.name.get_ref() == name) {
            problems.push(Problem::new(
                format!("risk.trunk.{name}"),
                format!("{name:?} is not a [[trunk]] name"),
            ));
        }
    }
    errs.place_all(problems, at);
    let mut cfg = section.get_ref().clone();
    if let Some(ca) = &mut cfg.redis.tls_ca_file {
        *ca = base.join(&*ca);
    }
    cfg
}
