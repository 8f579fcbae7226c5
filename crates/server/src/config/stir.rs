//! `[stir]`: STIR/SHAKEN verification of Identity headers (tollgate-stir). The settings are
//! checked first, each under its own key and without I/O; only when they pass are the trust
//! anchors read, here and once: `serve` verifies with the verifier built from what was read.

use std::path::Path;
use std::sync::Arc;

use tollgate_core::Problem;
use tollgate_stir::{StirConfig, Verifier};
use toml::Spanned;

use super::Errors;

/// The section (`trust_anchors_dir` resolved against `base`) and its verifier.
pub(super) fn stir(
    errs: &mut Errors<'_>,
    section: &Spanned<StirConfig>,
    base: &Path,
) -> (StirConfig, Option<Arc<Verifier>>) {
    let at = errs.line(section.span().start);
    let mut cfg = section.get_ref().clone();
    cfg.trust_anchors_dir = base.join(&cfg.trust_anchors_dir);
    let under = |p: Problem| Problem {
        key: format!("stir.{}", p.key),
        ..p
    };
    let problems = cfg.validate();
    if !problems.is_empty() {
        errs.place_all(problems.into_iter().map(under).collect(), at);
        return (cfg, None);
    }
    match Verifier::new(&cfg) {
        Ok(v) => (cfg, Some(Arc::new(v))),
        Err(e) => {
            errs.place_all(vec![under(Problem::new(e.key(), e.to_string()))], at);
            (cfg, None)
        }
    }
}
