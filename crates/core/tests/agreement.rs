//! The fast classifier agrees with phonenumber (the source of truth) on a large generated set:
//! every region's example numbers with their last digits varied and their lengths changed,
//! so each region contributes valid and invalid numbers of every kind it has.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use phonenumber::metadata::DATABASE;
use tollgate_core::{Classifier, NumberKind, E164};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn digit(&mut self) -> char {
        char::from(b'0' + u8::try_from(self.next() % 10).unwrap())
    }
}

fn generate() -> Vec<(String, u16, String)> {
    let mut rng = Rng(0x7011_9A7E);
    let mut out = Vec::new();
    let mut metas: Vec<_> = DATABASE.iter().collect();
    metas.sort_by_key(|m| (m.country_code(), m.id().to_owned()));
    for meta in metas {
        let d = meta.descriptors();
        let descs = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ];
        for desc in descs.into_iter().flatten() {
            let Some(example) = desc.example() else {
                continue;
            };
            out.push((
                meta.id().to_owned(),
                meta.country_code(),
                example.to_owned(),
            ));
            for i in 0..96 {
                let mut n: Vec<char> = example.chars().collect();
                let k = 1 + (i % 4);
                let len = n.len();
                for c in n.iter_mut().skip(len.saturating_sub(k)) {
                    *c = rng.digit();
                }
                if i % 12 == 5 {
                    n.push(rng.digit());
                }
                if i % 12 == 7 && n.len() > 4 {
                    n.pop();
                }
                if i % 16 == 9 {
                    // A different leading digit moves the number to another area or kind.
                    n[0] = char::from(b'1' + u8::try_from(rng.next() % 9).unwrap());
                }
                out.push((
                    meta.id().to_owned(),
                    meta.country_code(),
                    n.into_iter().collect(),
                ));
            }
        }
    }
    out
}

#[test]
fn fast_classifier_agrees_with_phonenumber() {
    let classifier = Classifier::load().unwrap();
    let numbers = generate();
    let mut countries = BTreeSet::new();
    let mut kinds = BTreeMap::<NumberKind, usize>::new();
    let (mut checked, mut leading_zero, mut unparsed, mut valid) = (0usize, 0usize, 0usize, 0usize);
    let mut mismatches = Vec::new();
    for (region, cc, nsn) in &numbers {
        let Some(e164) = E164::from_digits(&format!("{cc}{nsn}")) else {
            continue;
        };
        let ours = classifier.classify(&e164);
        let Ok(theirs) = phonenumber::parse(None, format!("+{cc}{nsn}")) else {
            // phonenumber refuses the string (too short or long to parse): never valid for us.
            unparsed += 1;
            if ours.valid {
                mismatches.push(format!(
                    "+{cc} {nsn} ({region}): we say valid, phonenumber cannot parse"
                ));
            }
            continue;
        };
        if theirs.national().to_string() != *nsn {
            // phonenumber stripped a national prefix: compare on its reading of the number.
            unparsed += 1;
            continue;
        }
        checked += 1;
        countries.insert(region.clone());
        let their_valid = theirs.is_valid();
        if ours.valid != their_valid {
            mismatches.push(format!(
                "+{cc} {nsn} ({region}): valid ours {} theirs {their_valid}",
                ours.valid
            ));
            continue;
        }
        valid += usize::from(their_valid);
        if nsn.starts_with('0') {
            // phonenumber's number_type and region read the national number as an integer and
            // lose the zero (see Classifier::classify); validity was compared above.
            leading_zero += 1;
            *kinds.entry(ours.kind).or_default() += 1;
            continue;
        }
        let their_kind = NumberKind::from_phonenumber(theirs.number_type(&DATABASE));
        let their_region = theirs.country().id().map(|id| format!("{id:?}"));
        let our_region = ours.region.filter(|r| *r != "001").map(str::to_owned);
        if ours.kind != their_kind || (their_valid && our_region != their_region) {
            mismatches.push(format!(
                "+{cc} {nsn} ({region}): ours {:?}/{our_region:?} theirs {their_kind:?}/{their_region:?}",
                ours.kind
            ));
        }
        *kinds.entry(ours.kind).or_default() += 1;
    }
    eprintln!(
        "generated {} numbers: {checked} compared ({valid} valid) over {} regions, {leading_zero} with a leading zero \
         (validity only), {unparsed} not comparable; kinds {kinds:?}",
        numbers.len(),
        countries.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(checked >= 100_000, "only {checked} numbers compared");
    assert!(countries.len() >= 100, "only {} regions", countries.len());
    for kind in NumberKind::ALL {
        assert!(
            kinds.get(&kind).copied().unwrap_or(0) > 0,
            "no {kind:?} number in the set"
        );
    }
}
