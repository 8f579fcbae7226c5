//! Call facts for the tests that run a decision without the SIP layer.

use std::sync::Arc;

use tollgate_core::{
    AniSource, CallFacts, CliCheck, CliVerdict, DnisSource, GeoInfo, LookupStatus, NumberInfo,
    NumberKind, PartyNumber, Privacy, E164,
};

/// A US caller (Jersey City, NJ) to `dnis`, as number intelligence leaves the facts.
pub fn us_caller(ani: &str, dnis: &str) -> CallFacts {
    let e = E164::from_digits(ani).expect("E.164 digits");
    CallFacts {
        call_id: "c".into(),
        trunk: "t".into(),
        trusted: true,
        ani: PartyNumber::E164(e.clone()),
        ani_source: AniSource::Pai,
        ani_verified: true,
        ani_candidates: Default::default(),
        sources_disagree: false,
        presented: PartyNumber::E164(e),
        display_name: None,
        privacy: Privacy::default(),
        charge_number: None,
        cpc: None,
        oli: None,
        verstat: None,
        identity: vec![],
        dnis: PartyNumber::E164(E164::from_digits(dnis).expect("E.164 digits")),
        dnis_source: DnisSource::RequestUri,
        dnis_candidates: Default::default(),
        emergency: false,
        ani_info: Some(NumberInfo {
            valid: true,
            region: Some("US"),
            calling_code: 1,
            kind: NumberKind::Mobile,
            nsn_len: 10,
            npa: Some(201),
            nxx: Some(200),
        }),
        ani_geo: Some(GeoInfo {
            description: Some(Arc::from("Jersey City, NJ")),
            description_prefix: 7,
            time_zones: Some(Arc::from("America/New_York")),
            subdivision: Some(Arc::from("US-NJ")),
        }),
        dnis_info: None,
        cli: Some(CliCheck {
            verdict: CliVerdict::Valid,
            reason: String::new(),
            forced_from: None,
        }),
        profile: None,
        lookup: LookupStatus::Skipped,
        history: None,
        risk: None,
        arrival: tollgate_core::Arrival::default(),
    }
}
