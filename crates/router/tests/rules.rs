//! The rule engine: every matcher and combinator, business hours across DST and holidays,
//! loading errors, the trace, and the table conversion.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use tollgate_core::{
    AniSource, Attestation, CallFacts, CallerHistory, CallerProfile, CliCheck, CliVerdict,
    DecisionAction, DnisSource, GeoInfo, LookupStatus, NumberInfo, NumberKind, PartyNumber,
    Privacy, RiskAssessment, RiskLevel, E164,
};
use tollgate_router::{explain, parse, route, Rules, Settings, Source};

fn src(path: &str, text: &str) -> Source {
    Source {
        path: path.into(),
        text: text.into(),
    }
}

const QUEUES: &str = r#"queues = ["support", "support-de", "vip", "verify", "after-hours", "general", "psap", "billing", "night"]"#;
const DEFAULT: &str = r#"
[[rule]]
name = "everyone"
queue = "general"
"#;

fn rules(line: &str) -> Rules {
    parse(
        &[
            src("queues.toml", QUEUES),
            src("default.toml", DEFAULT),
            src("support.toml", line),
        ],
        &Settings {
            acd_host: "acd.example.net".into(),
            emergency_queue: None,
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn facts(ani: &str) -> CallFacts {
    let e = E164::from_digits(ani).unwrap();
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
        dnis: PartyNumber::E164(E164::from_digits("18005550100").unwrap()),
        dnis_source: DnisSource::RequestUri,
        dnis_candidates: Default::default(),
        emergency: false,
        ani_info: Some(NumberInfo {
            valid: true,
            region: Some("US"),
            calling_code: 1,
            kind: NumberKind::FixedLineOrMobile,
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

/// 2026-11-23 is a Monday; 15:00 UTC is 10:00 in New York.
fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const MON_10_NY: &str = "2026-11-23T15:00:00Z";

fn queue_of(r: &Rules, f: &CallFacts, now: &str) -> String {
    match route(f, r, at(now)).action {
        DecisionAction::Route(t) => t.queue.into(),
        DecisionAction::Reject { code, .. } => format!("reject:{code}"),
    }
}

/// A line with one matcher rule `when` → "vip", else "support".
fn one(when: &str) -> Rules {
    rules(&format!(
        "dnis = [\"+18005550100\"]\ntime_zone = \"America/New_York\"\n[[rule]]\nname = \"m\"\nwhen = {when}\nqueue = \"vip\"\n[[rule]]\nname = \"rest\"\nqueue = \"support\"\n"
    ))
}

fn hits(when: &str, f: &CallFacts) -> bool {
    queue_of(&one(when), f, MON_10_NY) == "vip"
}

#[test]
fn number_matchers() {
    let f = facts("12012001234");
    assert!(hits(r#"{ ani = "+12012001234" }"#, &f));
    assert!(!hits(r#"{ ani = ["+12012001235"] }"#, &f));
    assert!(hits(r#"{ ani_prefix = ["+1201", "44"] }"#, &f));
    assert!(!hits(r#"{ ani_prefix = "1202" }"#, &f));
    assert!(hits(r#"{ ani_pattern = "1201xxxxxxx" }"#, &f));
    assert!(!hits(r#"{ ani_pattern = "1201xxxxxx" }"#, &f));
    assert!(hits(r#"{ calling_code = 1 }"#, &f));
    assert!(hits(r#"{ country = ["CA", "US"] }"#, &f));
    assert!(!hits(r#"{ country = "DE" }"#, &f));
    assert!(hits(r#"{ region = "NJ" }"#, &f));
    assert!(hits(r#"{ region = "jersey city, nj" }"#, &f));
    assert!(!hits(r#"{ region = "NY" }"#, &f));
    assert!(hits(r#"{ npa = [201, 551] }"#, &f));
    assert!(!hits(r#"{ npa = 212 }"#, &f));
    assert!(hits(r#"{ kind = ["fixed-or-mobile", "mobile"] }"#, &f));
    assert!(!hits(r#"{ kind = "toll-free" }"#, &f));
    assert!(hits(r#"{ valid = true }"#, &f));
    assert!(hits(r#"{ cli = "valid" }"#, &f));
    assert!(hits(
        r#"{ trusted = true, verified = true, withheld = false, emergency = false }"#,
        &f
    ));
    assert!(hits(r#"{ dnis = "+18005550100" }"#, &f));
}

#[test]
fn crm_matchers() {
    let mut f = facts("12012001234");
    assert!(hits(r#"{ crm = false }"#, &f));
    f.profile = Some(CallerProfile {
        customer_id: "42".into(),
        tier: Some("Gold".into()),
        language: Some("de".into()),
        tags: vec!["debtor".into(), "churn-risk".into()],
        open_cases: Some(3),
        attributes: BTreeMap::from([("segment".to_owned(), "smb".to_owned())]),
        ..CallerProfile::default()
    });
    assert!(hits(r#"{ crm = true }"#, &f));
    assert!(
        hits(r#"{ tier = ["gold", "platinum"] }"#, &f),
        "case-insensitive"
    );
    assert!(!hits(r#"{ tier = "silver" }"#, &f));
    assert!(hits(r#"{ language = "de" }"#, &f));
    assert!(hits(r#"{ tag = "debtor" }"#, &f));
    assert!(!hits(r#"{ tag = "vip" }"#, &f));
    assert!(hits(r#"{ open_cases_min = 2, open_cases_max = 3 }"#, &f));
    assert!(!hits(r#"{ open_cases_min = 4 }"#, &f));
    assert!(hits(r#"{ attribute = { segment = "SMB" } }"#, &f));
    assert!(!hits(r#"{ attribute = { segment = "enterprise" } }"#, &f));
}

#[test]
fn risk_matchers_and_history() {
    let mut f = facts("12012001234");
    assert!(
        !hits(r#"{ risk = "low" }"#, &f),
        "no assessment matches no level"
    );
    assert!(hits(r#"{ attestation = "none" }"#, &f));
    f.risk = Some(RiskAssessment {
        level: RiskLevel::High,
        attestation: Some(Attestation::B),
        list_hits: vec!["gray".into()],
        ..RiskAssessment::default()
    });
    assert!(hits(r#"{ risk = ["high", "blocked"] }"#, &f));
    assert!(hits(r#"{ risk_at_least = "elevated" }"#, &f));
    assert!(!hits(r#"{ risk_at_least = "blocked" }"#, &f));
    assert!(hits(r#"{ list = "gray" }"#, &f));
    assert!(!hits(r#"{ list = "block" }"#, &f));
    assert!(hits(r#"{ attestation = ["A", "B"] }"#, &f));
    assert!(!hits(r#"{ attestation = "A" }"#, &f));
    assert!(!hits(r#"{ repeat_within = "30m" }"#, &f));
    f.history = Some(CallerHistory {
        last_queue: "billing".into(),
        last_seen: at(MON_10_NY).as_second() - 600,
    });
    assert!(hits(
        r#"{ repeat_within = "30m", last_queue = "billing" }"#,
        &f
    ));
    assert!(!hits(r#"{ repeat_within = "5m" }"#, &f));
}

#[test]
fn combinators() {
    let f = facts("12012001234");
    assert!(hits(r#"{ all = [{ country = "US" }, { npa = 201 }] }"#, &f));
    assert!(!hits(
        r#"{ all = [{ country = "US" }, { npa = 202 }] }"#,
        &f
    ));
    assert!(hits(r#"{ any = [{ country = "DE" }, { npa = 201 }] }"#, &f));
    assert!(!hits(
        r#"{ any = [{ country = "DE" }, { npa = 202 }] }"#,
        &f
    ));
    assert!(hits(r#"{ not = { country = "DE" } }"#, &f));
    assert!(!hits(r#"{ not = { country = "US" } }"#, &f));
    // Keys of one table are all required; nesting mixes.
    assert!(hits(
        r#"{ country = "US", any = [{ tier = "gold" }, { npa = 201 }], not = { withheld = true } }"#,
        &f
    ));
    assert!(!hits(r#"{ country = "US", valid = false }"#, &f));
}

const HOURS_LINE: &str = r#"
dnis = ["+18005550100"]
time_zone = "America/New_York"
overflow = "after-hours"

[hours]
mon = "08:00-18:00"
tue = "08:00-18:00"
wed = "08:00-18:00"
thu = "08:00-18:00"
fri = "08:00-12:00, 13:00-17:00"
sat = "10:00-14:00"
holidays = ["2026-11-26", "2026-12-25"]

[[rule]]
name = "night-owls"
when = { time = "00:00-06:00" }
queue = "night"
hours = "ignore"

[[rule]]
name = "all"
queue = "support"
"#;

#[test]
fn business_hours_holidays_and_overflow() {
    let r = rules(HOURS_LINE);
    let f = facts("12012001234");
    assert_eq!(
        queue_of(&r, &f, "2026-11-23T15:00:00Z"),
        "support",
        "Monday 10:00 EST"
    );
    assert_eq!(
        queue_of(&r, &f, "2026-11-23T23:30:00Z"),
        "after-hours",
        "Monday 18:30 EST"
    );
    assert_eq!(
        queue_of(&r, &f, "2026-11-24T13:30:00Z"),
        "support",
        "Tuesday 08:30 EST"
    );
    assert_eq!(
        queue_of(&r, &f, "2026-11-26T15:00:00Z"),
        "after-hours",
        "Thanksgiving holiday"
    );
    assert_eq!(
        queue_of(&r, &f, "2026-11-27T17:30:00Z"),
        "after-hours",
        "Friday 12:30 lunch gap"
    );
    assert_eq!(
        queue_of(&r, &f, "2026-11-27T18:30:00Z"),
        "support",
        "Friday 13:30"
    );
    assert_eq!(
        queue_of(&r, &f, "2026-11-29T16:00:00Z"),
        "after-hours",
        "Sunday: no hours"
    );
    assert_eq!(
        queue_of(&r, &f, "2026-11-24T07:00:00Z"),
        "night",
        "02:00 EST: hours ignored"
    );
    let d = route(&f, &r, at("2026-11-23T23:30:00Z"));
    assert_eq!(d.rule, "support/all+after-hours");
}

#[test]
fn business_hours_across_dst_changes() {
    let r = rules(HOURS_LINE);
    let f = facts("12012001234");
    // US DST ended 2026-11-01 (UTC-4 → UTC-5) and starts 2027-03-14 (UTC-5 → UTC-4).
    // Friday 2026-10-30 07:30 EDT = 11:30Z: before opening; 12:30Z = 08:30 EDT: open.
    assert_eq!(queue_of(&r, &f, "2026-10-30T11:30:00Z"), "after-hours");
    assert_eq!(queue_of(&r, &f, "2026-10-30T12:30:00Z"), "support");
    // Monday 2026-11-02 after the change: 12:30Z = 07:30 EST closed; 13:30Z = 08:30 EST open.
    assert_eq!(queue_of(&r, &f, "2026-11-02T12:30:00Z"), "after-hours");
    assert_eq!(queue_of(&r, &f, "2026-11-02T13:30:00Z"), "support");
    // Monday 2027-03-15 after spring forward: 12:30Z = 08:30 EDT open; 22:30Z = 18:30 EDT closed.
    assert_eq!(queue_of(&r, &f, "2027-03-15T12:30:00Z"), "support");
    assert_eq!(queue_of(&r, &f, "2027-03-15T22:30:00Z"), "after-hours");
}

#[test]
fn time_weekday_holiday_and_caller_time() {
    let f = facts("12012001234");
    assert!(hits(r#"{ weekday = ["mon", "tue"] }"#, &f));
    assert!(!hits(r#"{ weekday = "sun" }"#, &f));
    assert!(hits(r#"{ time = "09:00-11:00" }"#, &f));
    assert!(!hits(r#"{ time = "11:00-12:00" }"#, &f));
    assert!(
        hits(r#"{ holiday = false, open = true }"#, &f),
        "no hours: always open"
    );
    // The caller is in New York: 10:00 there. A caller in London at the same instant: 15:00.
    assert!(hits(r#"{ caller_time = "09:00-11:00" }"#, &f));
    let mut uk = facts("442072601815");
    uk.ani_geo = Some(GeoInfo {
        description: Some(Arc::from("London")),
        description_prefix: 4,
        time_zones: Some(Arc::from("Europe/London")),
        subdivision: None,
    });
    assert!(!hits(r#"{ caller_time = "09:00-11:00" }"#, &uk));
    assert!(hits(r#"{ caller_time = "14:00-16:00" }"#, &uk));
}

/// The real number intelligence (libphonenumber's data) for an ANI on a US trunk.
fn real(ani: &str) -> CallFacts {
    use std::sync::OnceLock;
    static INTEL: OnceLock<(tollgate_core::NumberPlan, tollgate_core::NumberIntel)> =
        OnceLock::new();
    let (plan, intel) = INTEL.get_or_init(|| {
        (
            tollgate_core::NumberPlan::load(),
            tollgate_core::NumberIntel::load().unwrap(),
        )
    });
    let mut f = facts("12012001234");
    f.ani = plan.normalize(ani, plan.region("US").unwrap(), None);
    (f.ani_info, f.ani_geo) = intel.describe(&f.ani);
    f
}

#[test]
fn region_matches_the_iso_subdivision() {
    // libphonenumber describes +1 201 555 as "New Jersey", +1 201 200 as "Jersey City, NJ":
    // both are US-NJ.
    for ani in ["+12015550123", "+12012001234"] {
        let f = real(ani);
        assert_eq!(
            f.ani_geo.as_ref().unwrap().subdivision.as_deref(),
            Some("US-NJ")
        );
        assert!(hits(r#"{ region = ["US-NJ"] }"#, &f), "{ani}");
        assert!(hits(r#"{ region = ["NJ", "CT"] }"#, &f), "{ani}");
        assert!(hits(r#"{ region = "us-nj" }"#, &f), "{ani}");
        assert!(!hits(r#"{ region = ["US-NY", "CT"] }"#, &f), "{ani}");
        assert!(!hits(r#"{ region = "CA-NJ" }"#, &f), "{ani}");
    }
    assert!(hits(r#"{ region = "New Jersey" }"#, &real("+12015550123")));
    let qc = real("+1 273 764 6550");
    assert!(hits(r#"{ region = ["CA-QC"] }"#, &qc));
    assert!(hits(r#"{ region = "QC" }"#, &qc));
    assert!(!hits(r#"{ region = "US-NJ" }"#, &qc));
    // No subdivision code outside NANP: the geography text still matches.
    let london = real("+442079460000");
    assert!(hits(r#"{ region = "London" }"#, &london));
    assert!(!hits(r#"{ region = "NJ" }"#, &london));
    // Invalid numbers have no geography (NPA 999 is unassigned).
    assert!(!hits(
        r#"{ region = ["NJ", "US-NJ"] }"#,
        &real("+19995550123")
    ));
    let r = one(r#"{ region = "US-NJ" }"#);
    let e = explain(&real("+12015550123"), &r, at(MON_10_NY));
    assert!(
        format!("{e:?}").contains(r#"region=US-NJ \"New Jersey\""#),
        "{e:?}"
    );
}

#[test]
fn caller_time_falls_back_to_the_line_zone_and_says_why() {
    // 10:00 in New York (the line's zone), 05:00 in America/Adak, the first of the 42 zones
    // libphonenumber lists for a NANP toll-free number.
    let tf = real("+18005550199");
    assert_eq!(tf.ani_geo.as_ref().unwrap().zones().count(), 42);
    assert!(hits(r#"{ caller_time = "09:00-11:00" }"#, &tf));
    assert!(!hits(r#"{ caller_time = "04:00-06:00" }"#, &tf));
    let r = one(r#"{ caller_time = "09:00-11:00" }"#);
    let e = format!("{:?}", explain(&tf, &r, at(MON_10_NY)));
    assert!(
        e.contains(
            "caller tz=America/New_York (the caller's number spans 42 time zones: the line's zone)"
        ),
        "{e}"
    );
    // One zone: the caller's (Los Angeles: 07:00).
    let la = real("+14155550123");
    assert!(hits(r#"{ caller_time = "06:30-07:30" }"#, &la));
    assert!(!hits(r#"{ caller_time = "09:00-11:00" }"#, &la));
    let e = format!("{:?}", explain(&la, &r, at(MON_10_NY)));
    assert!(
        e.contains("caller tz=America/Los_Angeles (the caller's number has one time zone)"),
        "{e}"
    );
    // No zone (an invalid number): the line's.
    let bad = real("+19995550123");
    assert!(bad.ani_geo.is_none());
    assert!(hits(r#"{ caller_time = "09:00-11:00" }"#, &bad));
    // A line without a time zone cannot tell the caller's time then.
    let no_tz = rules(
        "dnis = [\"+18005550100\"]\n[[rule]]\nname = \"m\"\nwhen = { caller_time = \"00:00-23:59\" }\nqueue = \"vip\"\n[[rule]]\nname = \"rest\"\nqueue = \"support\"\n",
    );
    assert_eq!(queue_of(&no_tz, &tf, MON_10_NY), "support");
    assert_eq!(queue_of(&no_tz, &la, MON_10_NY), "vip");
}

#[test]
fn actions_reject_verify_and_emergency_never_rejected() {
    let line = r#"
dnis = ["+18005550100"]
[[rule]]
name = "blocked"
when = { risk = "blocked" }
reject = { code = 607, reason = "Unwanted" }
[[rule]]
name = "check"
when = { risk = "high" }
verify = { name = "verify", priority = 1 }
[[rule]]
name = "vip"
when = { tier = "gold" }
queue = { name = "vip", priority = 9, skills = ["vip", "billing"], language = "en" }
[[rule]]
name = "rest"
queue = "support"
"#;
    let r = rules(line);
    let mut f = facts("12012001234");
    f.risk = Some(RiskAssessment {
        level: RiskLevel::Blocked,
        ..RiskAssessment::default()
    });
    let d = route(&f, &r, at(MON_10_NY));
    assert_eq!(
        d.action,
        DecisionAction::Reject {
            code: 607,
            reason: Some("Unwanted".into()),
            call_info: None,
            retry_after: None
        }
    );
    assert_eq!(
        (d.rule.as_str(), d.version.as_str()),
        ("support/blocked", r.version.as_str())
    );
    f.emergency = true;
    assert_eq!(
        queue_of(&r, &f, MON_10_NY),
        "support",
        "emergency skips rejections"
    );
    let e = explain(&f, &r, at(MON_10_NY));
    assert!(
        e.render()
            .contains("skipped: emergency calls are never rejected"),
        "{}",
        e.render()
    );
    f.emergency = false;
    f.risk.as_mut().unwrap().level = RiskLevel::High;
    let DecisionAction::Route(t) = route(&f, &r, at(MON_10_NY)).action else {
        panic!()
    };
    assert!(t.verify && t.queue == "verify" && t.priority == Some(1));
    f.risk = None;
    f.profile = Some(CallerProfile {
        tier: Some("gold".into()),
        ..CallerProfile::default()
    });
    let DecisionAction::Route(t) = route(&f, &r, at(MON_10_NY)).action else {
        panic!()
    };
    assert_eq!(
        (
            t.priority,
            t.skills.iter().map(ToString::to_string).collect::<Vec<_>>(),
            t.language.as_deref()
        ),
        (
            Some(9),
            vec!["vip".to_owned(), "billing".to_owned()],
            Some("en")
        )
    );
    assert_eq!(t.host, "acd.example.net");
}

#[test]
fn unknown_dnis_uses_the_default_set_and_explain_traces_every_rule() {
    let r = one(r#"{ country = "DE" }"#);
    let mut f = facts("12012001234");
    let e = explain(&f, &r, at(MON_10_NY));
    assert_eq!(e.decision.queue(), Some("support"));
    assert_eq!(e.steps.len(), 2);
    assert!(
        !e.steps[0].matched && e.steps[0].why.contains("country=US"),
        "{:?}",
        e.steps
    );
    assert!(e.steps[1].matched);
    f.dnis = PartyNumber::E164(E164::from_digits("18885550199").unwrap());
    let d = route(&f, &r, at(MON_10_NY));
    assert_eq!(
        (d.queue(), d.rule.as_str()),
        (Some("general"), "default/everyone")
    );
}

fn errors(files: &[(&str, &str)]) -> String {
    let sources: Vec<Source> = files.iter().map(|(p, t)| src(p, t)).collect();
    match parse(&sources, &Settings::default()) {
        Ok(_) => String::new(),
        Err(e) => e
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[test]
fn loading_reports_every_error_with_file_line_and_key() {
    let bad = r#"dnis = ["+18005550100", "bogus"]
time_zone = "Mars/Olympus"

[[rule]]
name = "a"
when = { kind = "landline", country = "USA" }
queue = "nope"

[[rule]]
name = "catch"
queue = "support"

[[rule]]
name = "never"
queue = "support"
"#;
    let other = "dnis = [\"+18005550100\"]\n[[rule]]\nname = \"x\"\nqueue = \"support\"\n";
    let out = errors(&[
        ("queues.toml", QUEUES),
        ("default.toml", DEFAULT),
        ("a.toml", bad),
        ("b.toml", other),
    ]);
    for want in [
        "a.toml:1: dnis: \"bogus\" must be E.164",
        "a.toml:2: time_zone: \"Mars/Olympus\" is not an IANA time zone",
        "a.toml:6: rule[0].when: kind \"landline\"",
        "a.toml:6: rule[0].when: country \"USA\"",
        "a.toml:7: rule[0].queue: unknown queue \"nope\"",
        "a.toml:14: rule[2].name: unreachable: rule \"catch\" above always matches",
        "b.toml:1: dnis: +18005550100 is already routed by a.toml",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let out = errors(&[
        ("queues.toml", QUEUES),
        (
            "default.toml",
            "[[rule]]\nname = \"x\"\nwhen = { valid = true }\nqueue = \"general\"\n",
        ),
    ]);
    assert!(
        out.contains("default.toml:0: rule: the default set must end with a rule without `when`")
            || out.contains("default.toml:1: rule: the default set"),
        "{out}"
    );
    let out = errors(&[
        ("default.toml", DEFAULT),
        ("a.toml", "dnis = [\"+1800\"]\nfoo = 1\n"),
    ]);
    assert!(out.contains("queues.toml: queues: missing"), "{out}");
    assert!(out.contains("a.toml:2: foo: unknown field `foo`"), "{out}");
    // TOML's empty key is named as TOML writes it (the `rules` fuzz target's crash of
    // 2026-12-07: the error named no key).
    let out = errors(&[
        ("queues.toml", QUEUES),
        ("default.toml", DEFAULT),
        ("a.toml", "'' = ''\n"),
    ]);
    assert!(out.contains("a.toml:1: \"\": unknown field ``"), "{out}");
}

#[test]
fn the_version_follows_the_content() {
    let a = one(r#"{ country = "DE" }"#);
    let b = one(r#"{ country = "DE" }"#);
    let c = one(r#"{ country = "AT" }"#);
    assert_eq!(a.version, b.version);
    assert_ne!(a.version, c.version);
    assert_eq!(a.version.len(), 12);
}

#[test]
fn table_conversion_keeps_the_simple_config_behaviour() {
    let table = tollgate_router::Table {
        acd_host: "acd.example.net".into(),
        dnis: [("18005550100".to_owned(), "support".to_owned())].into(),
        default_queue: "general".into(),
        emergency_queue: Some("psap".into()),
        country_suffix: [(49, "-de".to_owned())].into(),
    };
    let r = tollgate_router::from_table(&table);
    let mut f = facts("12012001234");
    assert_eq!(queue_of(&r, &f, MON_10_NY), "support");
    f.ani_info.as_mut().unwrap().calling_code = 49;
    assert_eq!(queue_of(&r, &f, MON_10_NY), "support-de");
    f.ani_info.as_mut().unwrap().valid = false;
    assert_eq!(
        queue_of(&r, &f, MON_10_NY),
        "support",
        "invalid numbers get no country suffix"
    );
    f.dnis = PartyNumber::Short("911".into());
    f.emergency = true;
    assert_eq!(queue_of(&r, &f, MON_10_NY), "psap");
}

proptest::proptest! {
    /// `not` inverts any leaf, and `any`/`all` of one condition equal the condition.
    #[test]
    fn combinator_laws(npa in 200u16..1000, want in 200u16..1000) {
        let f = facts(&format!("1{npa}5550100"));
        let mut f = f;
        f.ani_info.as_mut().unwrap().npa = Some(npa);
        let leaf = format!("{{ npa = {want} }}");
        let base = hits(&leaf, &f);
        proptest::prop_assert_eq!(base, npa == want);
        proptest::prop_assert_eq!(hits(&format!("{{ not = {leaf} }}"), &f), !base);
        proptest::prop_assert_eq!(hits(&format!("{{ any = [{leaf}] }}"), &f), base);
        proptest::prop_assert_eq!(hits(&format!("{{ all = [{leaf}, {{ valid = true }}] }}"), &f), base);
    }
}

#[test]
fn line_information_matchers() {
    let mut f = facts("12012001234");
    assert!(!hits("{ ani_ii = [27, 29, 70] }", &f), "no ANI II");
    assert!(!hits(r#"{ cpc = "payphone" }"#, &f));
    f.oli = Some("29".into());
    f.cpc = Some("payphone".into());
    assert!(hits("{ ani_ii = [27, 29, 70] }", &f));
    assert!(!hits("{ ani_ii = 27 }", &f));
    assert!(hits(r#"{ cpc = ["operator", "PAYPHONE"] }"#, &f));
    assert!(!hits(r#"{ cpc = "operator" }"#, &f));
    f.oli = Some("x7".into());
    assert!(
        !hits("{ ani_ii = 7 }", &f),
        "a non-numeric oli matches nothing"
    );
    let e = errors(&[(
        "support.toml",
        "dnis = [\"+18005550100\"]\n[[rule]]\nname = \"a\"\nwhen = { ani_ii = 270, cpc = \"pay phone\" }\nqueue = \"vip\"\n",
    )]);
    assert!(e.contains("ani_ii 270"), "{e}");
    assert!(e.contains("cpc \"pay phone\""), "{e}");
}

#[test]
fn last_queue_action_goes_back_with_a_fallback() {
    let r = rules(
        "dnis = [\"+18005550100\"]\ntime_zone = \"America/New_York\"\noverflow = \"night\"\n\
         [[rule]]\nname = \"back\"\nwhen = { repeat_within = \"1h\" }\n\
         queue = { name = \"$last\", fallback = \"support\", priority = 5 }\n\
         [[rule]]\nname = \"rest\"\nqueue = \"general\"\n",
    );
    let mut f = facts("12012001234");
    assert_eq!(
        queue_of(&r, &f, MON_10_NY),
        "general",
        "no history: not a repeat"
    );
    let seen = at(MON_10_NY).as_second() - 600;
    for (last, want) in [
        ("support-de", "support-de"),
        ("billing", "billing"),
        // Not a known queue (renamed since), or the line's after-hours overflow: the fallback.
        ("retired-queue", "support"),
        ("night", "support"),
    ] {
        f.history = Some(CallerHistory {
            last_queue: last.into(),
            last_seen: seen,
        });
        assert_eq!(queue_of(&r, &f, MON_10_NY), want, "last {last}");
    }
    f.history = Some(CallerHistory {
        last_queue: "support-de".into(),
        last_seen: seen,
    });
    let DecisionAction::Route(t) = route(&f, &r, at(MON_10_NY)).action else {
        panic!("routed");
    };
    assert_eq!(t.priority, Some(5), "the rule's own parameters stay");
    let e = explain(&f, &r, at(MON_10_NY));
    assert!(
        e.render().contains("$last: back to support-de"),
        "{}",
        e.render()
    );
    let e = errors(&[(
        "support.toml",
        "dnis = [\"+18005550100\"]\n[[rule]]\nname = \"a\"\nqueue = \"$last\"\n\
         [[rule]]\nname = \"b\"\nqueue = { name = \"$last\", fallback = \"nowhere\" }\n\
         [[rule]]\nname = \"c\"\nqueue = { name = \"vip\", fallback = \"support\" }\n",
    )]);
    assert!(e.contains("\"$last\" needs a fallback"), "{e}");
    assert!(
        e.contains("nowhere"),
        "an unknown fallback is an unknown queue: {e}"
    );
    assert!(e.contains("`fallback` goes with"), "{e}");
}

#[test]
fn a_rule_that_tests_risk_is_risk_aware() {
    let r = rules(
        "dnis = [\"+18005550100\"]\n\
         [[rule]]\nname = \"blocked\"\nwhen = { any = [{ risk = \"blocked\" }, { not = { list = \"allow\" }, tier = \"x\" }] }\nreject = 607\n\
         [[rule]]\nname = \"rest\"\nqueue = \"general\"\n",
    );
    let mut f = facts("12012001234");
    f.risk = Some(RiskAssessment {
        level: RiskLevel::Blocked,
        ..RiskAssessment::default()
    });
    let e = tollgate_router::evaluate(&f, &r, at(MON_10_NY), false);
    assert!(e.risk_aware);
    assert!(e.steps.is_empty(), "no trace unless asked");
    assert!(matches!(
        e.decision.action,
        DecisionAction::Reject { code: 607, .. }
    ));
    f.risk = None;
    let e = tollgate_router::evaluate(&f, &r, at(MON_10_NY), true);
    assert!(!e.risk_aware, "the catch-all does not look at risk");
    assert_eq!(e.steps.len(), 2);
}

/// `decide`: the rules, then the risk policy. A risk-aware rule keeps a blocked caller (its own
/// answer) and its queue for a gray one; a rule that does not look at risk yields to the
/// policy's rejection (named by its cause) and verification queue; identity and fail-closed
/// rejections stand even against a risk-aware rule; an emergency call is neither rejected nor
/// moved. The trace says what the policy did.
#[test]
fn decide_applies_the_risk_policy_after_the_rules() {
    use tollgate_core::{CallInfo, QueueName, RejectCause, Rejection};
    use tollgate_router::{decide, DecidedBy};
    let line = r#"
dnis = ["+18005550100"]
[[rule]]
name = "grayish"
when = { list = "gray" }
queue = "vip"
[[rule]]
name = "rest"
queue = "support"
"#;
    let r = rules(line);
    let now = at(MON_10_NY);
    let rejection = |cause| Rejection {
        code: 608,
        reason: Some("Rejected".into()),
        call_info: Some(CallInfo {
            url: "https://x.example/c".into(),
        }),
        retry_after: None,
        cause,
    };
    let mut f = facts("12012001234");

    // Blocked, the deciding rule ("rest") does not test risk: the policy's 608, Call-Info kept.
    f.risk = Some(RiskAssessment {
        level: RiskLevel::Blocked,
        reject: Some(rejection(RejectCause::Blocked)),
        ..RiskAssessment::default()
    });
    let d = decide(&f, &r, now, true);
    assert_eq!(d.decided_by, DecidedBy::RiskBlock);
    assert_eq!(d.decision.rule, "risk");
    assert!(matches!(
        &d.decision.action,
        DecisionAction::Reject { code: 608, call_info: Some(c), .. } if c.url == "https://x.example/c"
    ));
    assert!(d.policy.unwrap().starts_with("risk-block: 608 Rejected"));
    assert_eq!(
        route(&f, &r, now),
        d.decision,
        "route is decide without the trace"
    );

    // The same caller also gray-listed: the risk-aware rule decides for it.
    f.risk.as_mut().unwrap().list_hits = vec!["gray".into()];
    let d = decide(&f, &r, now, false);
    assert_eq!(
        (d.decided_by, d.decision.queue()),
        (DecidedBy::Rule, Some("vip"))
    );
    assert!(d.policy.is_none(), "no trace asked for");

    // An identity rejection is the policy's alone, risk-aware rule or not.
    for cause in [RejectCause::Identity, RejectCause::FailClosed] {
        f.risk.as_mut().unwrap().level = RiskLevel::Low;
        f.risk.as_mut().unwrap().reject = Some(rejection(cause));
        let d = decide(&f, &r, now, false);
        let want = match cause {
            RejectCause::Identity => DecidedBy::Identity,
            _ => DecidedBy::FailClosed,
        };
        assert_eq!(d.decided_by, want);
        assert_eq!(d.decision.rule, "risk");
    }

    // Gray-listed: the rule that tests risk keeps its queue; without it, the verify queue.
    f.risk = Some(RiskAssessment {
        level: RiskLevel::High,
        list_hits: vec!["gray".into()],
        verify_queue: Some(QueueName::new("verify").unwrap()),
        ..RiskAssessment::default()
    });
    let d = decide(&f, &r, now, true);
    assert_eq!(
        (d.decided_by, d.decision.queue()),
        (DecidedBy::Rule, Some("vip"))
    );
    assert!(d.policy.unwrap().contains("keeps vip"));
    f.risk.as_mut().unwrap().list_hits.clear();
    let d = decide(&f, &r, now, true);
    assert_eq!(d.decided_by, DecidedBy::RiskVerify);
    assert_eq!(d.decision.rule, "support/rest+risk-verify");
    let DecisionAction::Route(t) = &d.decision.action else {
        panic!("{d:?}")
    };
    assert!(t.verify && t.queue == "verify" && t.priority.is_none());
    assert_eq!(
        d.policy.as_deref(),
        Some("risk-verify: verify instead of support")
    );

    // Emergency: assessed, never rejected, never moved.
    f.emergency = true;
    f.risk.as_mut().unwrap().reject = Some(rejection(RejectCause::Blocked));
    let d = decide(&f, &r, now, true);
    assert_eq!(
        (d.decided_by, d.decision.queue()),
        (DecidedBy::Rule, Some("support"))
    );
    assert!(d.policy.unwrap().contains("emergency"));
}

/// queues.toml is checked by core's `QueueName`, the rule risk's `gray_queue` and the routing
/// table use: `a!b` loads and routes, `a b` is refused with the rule's own message.
#[test]
fn queues_follow_the_one_queue_name_rule() {
    let settings = Settings {
        acd_host: "acd.example.net".into(),
        emergency_queue: None,
    };
    let load = |queues: &str, queue: &str| {
        parse(
            &[
                src("queues.toml", &format!("queues = [{queues:?}]")),
                src(
                    "default.toml",
                    &format!("[[rule]]\nname = \"all\"\nqueue = {queue:?}\n"),
                ),
            ],
            &settings,
        )
    };
    let r = load("a!b", "a!b").unwrap();
    assert_eq!(queue_of(&r, &facts("12012001234"), MON_10_NY), "a!b");
    let errs = load("a b", "a b").unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains(tollgate_core::QueueName::RULE)),
        "{errs:?}"
    );
}

/// `scheme` on a queue sets the 302 Contact's scheme; without it the target leaves it to the
/// transport; anything but sip or sips is an error.
#[test]
fn a_queue_can_name_the_contact_scheme() {
    let r = rules(
        "dnis = [\"+18005550100\"]\n[[rule]]\nname = \"plain\"\n\
         queue = { name = \"support\", scheme = \"sip\" }\n",
    );
    let d = tollgate_router::route(&facts("12125551212"), &r, at(MON_10_NY));
    let DecisionAction::Route(t) = d.action else {
        panic!("routed");
    };
    assert_eq!(t.scheme, Some(tollgate_core::UriScheme::Sip));
    let r = rules("dnis = [\"+18005550100\"]\n[[rule]]\nname = \"any\"\nqueue = \"support\"\n");
    let DecisionAction::Route(t) =
        tollgate_router::route(&facts("12125551212"), &r, at(MON_10_NY)).action
    else {
        panic!("routed");
    };
    assert_eq!(t.scheme, None);
    let e = errors(&[(
        "support.toml",
        "dnis = [\"+18005550100\"]\n[[rule]]\nname = \"a\"\nqueue = { name = \"support\", scheme = \"tls\" }\n",
    )]);
    assert!(e.contains("scheme must be \"sip\" or \"sips\""), "{e}");
}
