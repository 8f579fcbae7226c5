//! Our number intelligence against libphonenumber itself: `data/corpus.tsv.gz` holds 35,971
//! inputs (every region's example number of every type with randomised tails, too long, too
//! short and wrong-leading-digit variants, national formats and national digits on a trunk of
//! the region, every region's own international prefixes, `+CC (0)` forms, `/ . -` separators,
//! bare foreign digits on five trunks)
//! with libphonenumber's answers, written by `tools/gen_data.py` from the release the engine
//! embeds. Each input goes through `NumberPlan::normalize` (the trunk's region) and
//! `NumberIntel::describe` (what `annotate` fills for the ANI).
//!
//! What counts as a difference is what libphonenumber would count: the E.164 number and its
//! region only where libphonenumber says valid (an invalid number's digits mean nothing to it;
//! we must then not call the number valid), validity and type always; geography and time zones
//! must match exactly on valid numbers and be absent on invalid ones (compared where the E.164
//! number agrees). Every remaining
//! difference is listed, with its reason, in `data/differences.tsv`; a listed input that no
//! longer differs fails the test too, so the list stays exact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use tollgate_core::{NumberIntel, NumberPlan};

const FIELDS: [&str; 6] = ["e164", "valid", "type", "region", "geography", "time zones"];

#[test]
fn agrees_with_libphonenumber_on_the_reference_corpus() {
    let mut text = String::new();
    flate2::read::GzDecoder::new(&include_bytes!("data/corpus.tsv.gz")[..])
        .read_to_string(&mut text)
        .unwrap();
    let listed: BTreeMap<(String, String), String> = include_str!("data/differences.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            ((f[0].to_owned(), f[1].to_owned()), f[3].to_owned())
        })
        .collect();
    let plan = NumberPlan::load();
    let intel = NumberIntel::load().unwrap();
    let mut agree = [0usize; 6];
    let mut total = [0usize; 6];
    let mut rows = 0usize;
    let mut valid_rows = 0usize;
    let mut differing = BTreeMap::<(String, String), Vec<String>>::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 9, "{line}");
        let (raw, trunk, tag) = (f[0], f[1], f[2]);
        let (lib_e164, lib_valid, lib_type, lib_region, lib_desc, lib_tz) =
            (f[3], f[4] == "true", f[5], f[6], f[7], f[8]);
        rows += 1;
        valid_rows += usize::from(lib_valid);
        let ours = plan.normalize(raw, plan.region(trunk).unwrap(), None);
        let (info, geo) = intel.describe(&ours);
        let our_e164 = ours.e164().map(|e| e.to_string()).unwrap_or_default();
        let our_valid = info.is_some_and(|i| i.valid);
        let our_type = info
            .filter(|i| i.valid)
            .map_or("unknown", |i| i.kind.as_str());
        let our_region = info.and_then(|i| i.region).unwrap_or_default();
        let our_desc = geo
            .as_ref()
            .and_then(|g| g.description.as_deref())
            .unwrap_or_default()
            .to_owned();
        let our_tz = geo
            .as_ref()
            .map(|g| g.zones().collect::<Vec<_>>().join("&"))
            .unwrap_or_default();
        let mut check = |i: usize, ok: bool, what: String| {
            total[i] += 1;
            if ok {
                agree[i] += 1;
            } else {
                differing
                    .entry((raw.to_owned(), trunk.to_owned()))
                    .or_default()
                    .push(format!("{} ({tag}): {what}", FIELDS[i]));
            }
        };
        if lib_valid {
            check(
                0,
                our_e164 == lib_e164,
                format!("ours {our_e164} lib {lib_e164}"),
            );
        } else {
            check(
                0,
                !our_valid,
                format!("ours {our_e164} valid, lib {lib_e164:?} invalid"),
            );
        }
        check(
            1,
            our_valid == lib_valid,
            format!("ours {our_valid} lib {lib_valid} ({our_e164} / {lib_e164})"),
        );
        check(
            2,
            our_type == lib_type,
            format!("ours {our_type} lib {lib_type} ({our_e164} / {lib_e164})"),
        );
        if lib_valid {
            check(
                3,
                our_region == lib_region,
                format!("ours {our_region} lib {lib_region}"),
            );
        }
        if lib_valid && our_e164 == lib_e164 {
            check(
                4,
                our_desc == lib_desc,
                format!("ours {our_desc:?} lib {lib_desc:?} ({lib_e164}, {lib_type})"),
            );
            check(
                5,
                our_tz == lib_tz,
                format!("ours {our_tz:?} lib {lib_tz:?} ({lib_e164}, {lib_type})"),
            );
        } else if !lib_valid && !our_valid {
            // (Where we read another, valid number, the E.164 difference is the one counted.)
            check(
                4,
                geo.is_none(),
                format!("ours {our_desc:?} for an invalid number"),
            );
            check(
                5,
                geo.is_none(),
                format!("ours {our_tz:?} for an invalid number"),
            );
        }
    }
    let mut report = format!("{rows} inputs ({valid_rows} valid for libphonenumber):");
    for i in 0..6 {
        report += &format!(
            " {} {}/{} ({:.3} %);",
            FIELDS[i],
            agree[i],
            total[i],
            100.0 * agree[i] as f64 / total[i].max(1) as f64
        );
    }
    eprintln!("{report}");
    let unlisted: Vec<String> = differing
        .iter()
        .filter(|(k, _)| !listed.contains_key(*k))
        .map(|((raw, trunk), why)| format!("{raw}\t{trunk}\t{}", why.join("; ")))
        .collect();
    let stale: BTreeSet<_> = listed
        .keys()
        .filter(|k| !differing.contains_key(*k))
        .collect();
    assert!(rows >= 20_000, "only {rows} inputs");
    assert!(
        unlisted.is_empty(),
        "{report}\n{} differences not in differences.tsv:\n{}",
        unlisted.len(),
        unlisted
            .iter()
            .take(60)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        stale.is_empty(),
        "listed in differences.tsv but no longer different: {stale:?}"
    );
    for i in 0..4 {
        assert!(
            agree[i] * 1000 >= total[i] * 999,
            "{}: {}/{} under 99.9 %",
            FIELDS[i],
            agree[i],
            total[i]
        );
    }
    for i in 4..6 {
        assert_eq!(
            agree[i], total[i],
            "{}: must agree on every number",
            FIELDS[i]
        );
    }
}
