//! Golden: the example rules in config/routes load, and between them use every matcher.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    // The test reads the shipped rule files from disk; the crate itself never does.
    clippy::disallowed_methods
)]

use std::collections::BTreeSet;

use tollgate_router::{parse, Cond, Settings, Source};

fn walk(c: &Cond, out: &mut BTreeSet<String>) {
    match c {
        Cond::All(v) | Cond::Any(v) => v.iter().for_each(|c| walk(c, out)),
        Cond::Not(c) => walk(c, out),
        Cond::M(m) => {
            let name: String = format!("{m:?}")
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            out.insert(name);
        }
    }
}

#[test]
fn example_rules_load_and_cover_every_matcher() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/routes");
    let mut sources: Vec<Source> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| Source {
            path: p.display().to_string(),
            text: std::fs::read_to_string(&p).unwrap(),
        })
        .collect();
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    let rules = parse(
        &sources,
        &Settings {
            acd_host: "acd.example.net".into(),
            emergency_queue: Some("emergency".into()),
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
    });
    let mut seen = BTreeSet::new();
    for set in &rules.sets {
        for rule in &set.rules {
            if let Some(c) = &rule.when {
                walk(c, &mut seen);
            }
        }
    }
    let all = [
        "Ani",
        "AniPrefix",
        "AniPattern",
        "Dnis",
        "CallingCode",
        "Country",
        "Region",
        "Npa",
        "Kind",
        "Valid",
        "Cli",
        "Trusted",
        "Verified",
        "Withheld",
        "Emergency",
        "Crm",
        "Tier",
        "Language",
        "Tag",
        "OpenCases",
        "Attribute",
        "Risk",
        "RiskAtLeast",
        "List",
        "Attestation",
        "RepeatWithin",
        "LastQueue",
        "Open",
        "Weekday",
        "Time",
        "Holiday",
        "CallerTime",
    ];
    let missing: Vec<_> = all.iter().filter(|m| !seen.contains(**m)).collect();
    assert!(missing.is_empty(), "no example uses {missing:?}");
    assert!(
        seen.iter().all(|s| all.contains(&s.as_str())),
        "a matcher not in the list: {seen:?}"
    );
    assert!(rules.sets.len() >= 4 && rules.rule_count() >= 20);
}
