//! Tollgate routing: the pure `route(facts, table) -> Decision`. No async, no I/O, no clock.
//!
//! This first router is a per-DNIS queue table with a default queue, per-country queue
//! suffixes and an emergency queue; the rule engine replaces the table behind the same call.

use std::collections::HashMap;

use tollgate_core::{CallFacts, Decision, DecisionAction, NumberPlan, PartyNumber};

/// A routing table, built once from config and shared read-only.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Host of the ACD the 302 points to.
    pub acd_host: String,
    /// DNIS (E.164 digits or short code) → queue.
    pub dnis: HashMap<String, String>,
    pub default_queue: String,
    /// Queue for emergency traffic; `None` routes it by the table like any call.
    pub emergency_queue: Option<String>,
    /// Caller calling code → suffix appended to the queue name (49 → "-de").
    pub country_suffix: HashMap<u16, String>,
}

/// Routes a call. `plan` supplies calling codes for the caller's country.
pub fn route(facts: &CallFacts, table: &Table, plan: &NumberPlan) -> Decision {
    let to = |queue: String, rule: String| Decision {
        action: DecisionAction::Route {
            queue,
            host: table.acd_host.clone(),
        },
        rule,
    };
    if facts.emergency {
        if let Some(q) = &table.emergency_queue {
            return to(q.clone(), "emergency".into());
        }
    }
    let (mut queue, mut rule) = match facts
        .dnis
        .key()
        .and_then(|k| table.dnis.get(k).map(|q| (k, q)))
    {
        Some((k, q)) => (q.clone(), format!("dnis:{k}")),
        None => (table.default_queue.clone(), "default".to_owned()),
    };
    // The caller's country counts only for a valid number, as libphonenumber sees it; facts
    // not yet classified fall back to the calling-code prefix.
    let cc = match (&facts.ani_info, &facts.ani) {
        (Some(info), _) => info.valid.then_some(info.calling_code),
        (None, PartyNumber::E164(ani)) => {
            plan.calling_code(ani.digits()).and_then(|c| c.parse().ok())
        }
        (None, _) => None,
    };
    if let Some(suffix) = cc.and_then(|cc| table.country_suffix.get(&cc).map(|s| (cc, s))) {
        queue.push_str(suffix.1);
        rule.push_str(&format!("+country:{}", suffix.0));
    }
    to(queue, rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{AniSource, DnisSource, Privacy, E164};

    fn facts(ani: &str, dnis: &str, emergency: bool) -> CallFacts {
        let num = |d: &str| {
            E164::from_digits(d).map_or_else(|| PartyNumber::Short(d.into()), PartyNumber::E164)
        };
        CallFacts {
            call_id: "c".into(),
            trunk: "t".into(),
            trusted: true,
            ani: num(ani),
            ani_source: AniSource::Pai,
            ani_verified: true,
            ani_candidates: vec![],
            sources_disagree: false,
            presented: num(ani),
            display_name: None,
            privacy: Privacy::default(),
            charge_number: None,
            cpc: None,
            oli: None,
            verstat: None,
            identity: vec![],
            dnis: if dnis.len() < 7 {
                PartyNumber::Short(dnis.into())
            } else {
                num(dnis)
            },
            dnis_source: DnisSource::RequestUri,
            dnis_candidates: vec![],
            emergency,
            ani_info: None,
            ani_geo: None,
            dnis_info: None,
            cli: None,
            profile: None,
            lookup: tollgate_core::LookupStatus::Skipped,
            risk: None,
        }
    }

    fn table() -> Table {
        Table {
            acd_host: "acd.example.net".into(),
            dnis: [("18005550100".to_owned(), "support".to_owned())].into(),
            default_queue: "general".into(),
            emergency_queue: Some("psap".into()),
            country_suffix: [(49, "-de".to_owned())].into(),
        }
    }

    fn queue(d: &Decision) -> &str {
        match &d.action {
            DecisionAction::Route { queue, .. } => queue,
            DecisionAction::Reject { .. } => "rejected",
        }
    }

    #[test]
    fn table_default_suffix_emergency() {
        let plan = NumberPlan::load();
        let t = table();
        let d = route(&facts("12125551212", "18005550100", false), &t, &plan);
        assert_eq!(
            (queue(&d), d.rule.as_str()),
            ("support", "dnis:18005550100")
        );
        let d = route(&facts("12125551212", "18885550199", false), &t, &plan);
        assert_eq!((queue(&d), d.rule.as_str()), ("general", "default"));
        let d = route(&facts("4930123456", "18005550100", false), &t, &plan);
        assert_eq!(
            (queue(&d), d.rule.as_str()),
            ("support-de", "dnis:18005550100+country:49")
        );
        let d = route(&facts("12125551212", "911", true), &t, &plan);
        assert_eq!((queue(&d), d.rule.as_str()), ("psap", "emergency"));
    }
}
