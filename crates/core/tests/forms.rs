//! Round trips between national, international and tel: forms: for every region's example
//! numbers, each written form normalizes to the same E.164 number phonenumber parses it to.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use phonenumber::metadata::DATABASE;
use tollgate_core::{NumberPlan, PartyNumber};

#[test]
fn national_international_and_tel_forms_round_trip() {
    let plan = NumberPlan::load();
    let (mut checked, mut regions) = (0, 0);
    let mut failures = Vec::new();
    for meta in DATABASE.iter().filter(|m| m.id() != "001") {
        let Ok(region) = plan.region(meta.id()) else {
            continue;
        };
        regions += 1;
        let d = meta.descriptors();
        for desc in [d.fixed_line(), d.mobile(), d.toll_free()]
            .into_iter()
            .flatten()
        {
            let Some(nsn) = desc.example() else { continue };
            let cc = meta.country_code();
            let want = format!("+{cc}{nsn}");
            // Only numbers phonenumber itself reads back as the same E.164 number.
            let Ok(parsed) = phonenumber::parse(None, &want) else {
                continue;
            };
            if format!("+{}{}", parsed.code().value(), parsed.national()) != want {
                continue;
            }
            let mut forms = vec![
                (format!("+{cc} {nsn}"), None),
                (format!("%2B{cc}{nsn}"), None),
                (format!("+{cc}-{nsn}"), None),
                (format!("{}{cc}{nsn}", region.international_prefix), None),
                (nsn.to_owned(), Some(format!("+{cc}"))),
            ];
            // The national form, where phonenumber agrees it is this number.
            let national = match &region.national_prefix {
                Some(np) => format!("{np}{nsn}"),
                None => nsn.to_owned(),
            };
            if let Ok(n) = phonenumber::parse(Some(meta.id().parse().unwrap()), &national) {
                if format!("+{}{}", n.code().value(), n.national()) == want {
                    forms.push((national, None));
                }
            }
            for (form, ctx) in forms {
                checked += 1;
                let got = plan.normalize(&form, region, ctx.as_deref());
                let ok = matches!(&got, PartyNumber::E164(e) if e.to_string() == want);
                if !ok {
                    failures.push(format!(
                        "{} {form:?} ctx {ctx:?}: want {want}, got {got}",
                        meta.id()
                    ));
                }
            }
        }
    }
    eprintln!("{checked} forms over {regions} regions");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        checked > 2500 && regions > 200,
        "{checked} forms, {regions} regions"
    );
}
