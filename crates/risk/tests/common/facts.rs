//! A plain CallFacts for risk tests and benchmarks (benches/benches/risk.rs includes this file
//! by path).

use tollgate_core::{
    AniCandidate, AniSource, CallFacts, DnisSource, LookupStatus, NumberInfo, NumberKind,
    PartyNumber, Privacy, E164,
};

pub fn e164(d: &str) -> E164 {
    E164::from_digits(d).unwrap()
}

/// A plain call from a trusted trunk: a valid US fixed/mobile ANI from PAI, no identity
/// headers, dialing a toll-free number.
pub fn facts(call_id: &str, ani: &str, dnis: &str) -> CallFacts {
    let n = e164(ani);
    let nanp = ani.len() == 11 && ani.starts_with('1');
    let part = |r: std::ops::Range<usize>| ani.get(r).and_then(|s| s.parse().ok());
    CallFacts {
        call_id: call_id.into(),
        trunk: "carrier-a".into(),
        trusted: true,
        ani: PartyNumber::E164(n.clone()),
        ani_source: AniSource::Pai,
        ani_verified: true,
        ani_candidates: [AniCandidate {
            source: AniSource::Pai,
            number: PartyNumber::E164(n.clone()),
            scheme: "tel",
            screened: None,
            privacy: None,
        }]
        .into_iter()
        .collect(),
        sources_disagree: false,
        presented: PartyNumber::E164(n),
        display_name: None,
        privacy: Privacy::default(),
        charge_number: None,
        cpc: None,
        oli: None,
        verstat: None,
        identity: Vec::new(),
        dnis: PartyNumber::E164(e164(dnis)),
        dnis_source: DnisSource::RequestUri,
        dnis_candidates: Default::default(),
        emergency: false,
        ani_info: Some(NumberInfo {
            valid: true,
            region: Some(if nanp { "US" } else { "GB" }),
            calling_code: if nanp { 1 } else { 44 },
            kind: NumberKind::FixedLineOrMobile,
            nsn_len: 10,
            npa: if nanp { part(1..4) } else { None },
            nxx: if nanp { part(4..7) } else { None },
        }),
        ani_geo: None,
        dnis_info: None,
        cli: None,
        profile: None,
        lookup: LookupStatus::Skipped,
        history: None,
        risk: None,
        arrival: tollgate_core::Arrival::default(),
    }
}
