//! Number intelligence for one call: classification, geography, CLI validation and policy.

use std::sync::Arc;

use crate::classify::{Classifier, ClassifierError, NumberInfo};
use crate::clid::{validate, CliCheck, CliPolicy, CliRule, CliVerdict, PolicyOutcome};
use crate::facts::CallFacts;
use crate::geo::{GeoError, GeoInfo, Geography};
use crate::number::PartyNumber;

/// CLI validation for a trunk (or the global default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CliConfig {
    pub rules: Vec<CliRule>,
    pub policy: Option<CliPolicy>,
}

/// The start-up-compiled tables, shared read-only by every call.
#[derive(Debug)]
pub struct NumberIntel {
    /// The process's shared classifier ([`Classifier::shared`], also [`crate::NumberPlan`]'s).
    pub classifier: Arc<Classifier>,
    pub geography: Geography,
}

#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    #[error(transparent)]
    Metadata(#[from] ClassifierError),
    #[error("the geography table is libphonenumber {geography}, the metadata {metadata}: regenerate both with tools/gen_data.py")]
    Versions { metadata: String, geography: String },
    #[error(transparent)]
    Geography(#[from] GeoError),
}

/// The call is refused by the trunk's CLI policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliRejection {
    pub code: u16,
    pub reason: String,
}

impl NumberIntel {
    /// Compiles the classifier and indexes the geography table (well under a second): at start-up.
    pub fn load() -> Result<Self, IntelError> {
        let classifier = Classifier::shared()?;
        let geography = Geography::load()?;
        if classifier.version() != geography.version() {
            return Err(IntelError::Versions {
                metadata: classifier.version().to_owned(),
                geography: geography.version().to_owned(),
            });
        }
        Ok(Self {
            classifier,
            geography,
        })
    }

    fn info(&self, n: &PartyNumber) -> Option<NumberInfo> {
        n.e164().map(|e| self.classifier.classify(e))
    }

    /// A number's classification and geography, as [`NumberIntel::annotate`] fills them for
    /// the ANI (`ani_info`, `ani_geo`): no geography for an invalid number.
    pub fn describe(&self, n: &PartyNumber) -> (Option<NumberInfo>, Option<GeoInfo>) {
        let info = self.info(n);
        let geo = n
            .e164()
            .zip(info.as_ref())
            .and_then(|(e, i)| self.geography.locate(e, i, &self.classifier));
        (info, geo)
    }

    /// Fills the facts' number intelligence and applies the CLI policy; `Err` means reject.
    pub fn annotate(&self, facts: &mut CallFacts, cli: &CliConfig) -> Result<(), CliRejection> {
        let outcome = cli.policy.as_ref().map_or(PolicyOutcome::Pass, |p| {
            p.apply(&facts.ani, facts.emergency)
        });
        let mut forced_from = None;
        let mark_invalid = outcome == PolicyOutcome::MarkInvalid;
        match outcome {
            PolicyOutcome::Reject(code) => {
                return Err(CliRejection {
                    code,
                    reason: format!("CLI {} not approved", facts.ani),
                })
            }
            PolicyOutcome::Forced(n) => {
                forced_from = Some(std::mem::replace(&mut facts.ani, PartyNumber::E164(n)))
            }
            PolicyOutcome::Pass | PolicyOutcome::MarkInvalid => {}
        }
        (facts.ani_info, facts.ani_geo) = self.describe(&facts.ani);
        facts.dnis_info = self.info(&facts.dnis);
        let mut check = if mark_invalid {
            CliCheck {
                verdict: CliVerdict::Invalid,
                reason: "not an approved CLI".into(),
                forced_from: None,
            }
        } else {
            validate(
                &facts.ani,
                facts.ani_info.as_ref(),
                &cli.rules,
                facts.emergency,
            )
        };
        if let Some(from) = forced_from {
            check.reason = format!("forced CLI replaced {from}; {}", check.reason);
            check.forced_from = Some(from);
        }
        facts.cli = Some(check);
        Ok(())
    }
}
