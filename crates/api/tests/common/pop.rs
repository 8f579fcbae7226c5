//! A screen pop as the pipeline would build it, for the API tests and the fan-out benchmark
//! (benches/benches/pops.rs includes this file by path).

use tollgate_api::{Crm, Geo, Line, Presented, Profile, Risk, ScreenPop};

/// A pop as the pipeline would build it.
pub fn pop(call_ref: &str, queue: &str, name: &str) -> ScreenPop {
    ScreenPop {
        call_ref: call_ref.into(),
        call_id: format!("{call_ref}@test"),
        node: String::new(),
        trunk: "local".into(),
        ani: "+12125550123".into(),
        ani_source: "pai".into(),
        ani_verified: true,
        presented: Presented {
            number: "+12125550123".into(),
            display_name: Some("Caller".into()),
            restricted: false,
            privacy: vec![],
        },
        dnis: "+18005550100".into(),
        geo: Geo {
            region: Some("US".into()),
            calling_code: Some(1),
            kind: Some("fixed-line-or-mobile".into()),
            valid: Some(true),
            description: Some("New York, NY".into()),
            time_zone: Some("America/New_York".into()),
        },
        line: Line::default(),
        crm: Crm {
            status: "found".into(),
            profile: Some(Profile {
                customer_id: "C-1".into(),
                name: Some(name.into()),
                company: Some("Acme".into()),
                tier: Some("gold".into()),
                language: Some("en".into()),
                tags: vec![],
                open_cases: Some(2),
                last_agent: None,
                last_queue: None,
            }),
        },
        risk: Some(Risk {
            level: "elevated".into(),
            score: 40,
            ..Risk::default()
        }),
        attestation: Some("B".into()),
        emergency: false,
        queue: queue.into(),
        priority: None,
        skills: vec![],
        language: None,
        rule: "support/everyone".into(),
        rules_version: "v1".into(),
        received_at: "2026-01-05T15:00:00.000Z".into(),
        decided_at: "2026-01-05T15:00:00.001Z".into(),
        latency_us: 1000,
    }
}
