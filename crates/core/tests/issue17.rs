//! The inputs of issue 17, each with libphonenumber 9.0.43's answer (Python `phonenumbers`:
//! `parse`, `format_number(E164)`, `is_valid_number`, `number_type`, `region_code_for_number`,
//! `geocoder.description_for_number(n, "en")`, `timezone.time_zones_for_number`), through the
//! engine's parse and what `NumberIntel::annotate` fills for an ANI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use tollgate_core::{zone_for, NumberIntel, NumberKind, NumberPlan, ZoneChoice};

struct Want {
    raw: &'static str,
    trunk: &'static str,
    e164: &'static str,
    valid: bool,
    kind: NumberKind,
    region: &'static str,
    geo: &'static str,
    first_zone: &'static str,
}

#[allow(clippy::too_many_arguments)] // one table row
const fn w(
    raw: &'static str,
    trunk: &'static str,
    e164: &'static str,
    valid: bool,
    kind: NumberKind,
    region: &'static str,
    geo: &'static str,
    first_zone: &'static str,
) -> Want {
    Want {
        raw,
        trunk,
        e164,
        valid,
        kind,
        region,
        geo,
        first_zone,
    }
}

use NumberKind::*;

const CASES: &[Want] = &[
    // Validity is a full match: one digit too long is invalid, with no geography.
    w(
        "+49 90012345671",
        "DE",
        "+4990012345671",
        false,
        Unknown,
        "DE",
        "",
        "",
    ),
    w(
        "+86 10 1234 56782",
        "CN",
        "+8610123456782",
        false,
        Unknown,
        "CN",
        "",
        "",
    ),
    w(
        "+39 899 1234561",
        "IT",
        "+398991234561",
        false,
        Unknown,
        "",
        "",
        "",
    ),
    // Each region's international prefix pattern.
    w(
        "001 44 20 7946 0000",
        "KR",
        "+442079460000",
        true,
        FixedLine,
        "GB",
        "London",
        "Europe/London",
    ),
    w(
        "009 44 20 7946 0000",
        "NG",
        "+442079460000",
        true,
        FixedLine,
        "GB",
        "London",
        "Europe/London",
    ),
    w(
        "010 44 20 7946 0000",
        "JP",
        "+442079460000",
        true,
        FixedLine,
        "GB",
        "London",
        "Europe/London",
    ),
    // National prefix for parsing and its transform rule.
    w(
        "011 15-2345-6789",
        "AR",
        "+5491123456789",
        true,
        Mobile,
        "AR",
        "Buenos Aires",
        "America/Buenos_Aires",
    ),
    w(
        "8 029 123 45 67",
        "BY",
        "+375291234567",
        true,
        Mobile,
        "BY",
        "Belarus",
        "Europe/Moscow",
    ),
    // +CC (0) drops the 0.
    w(
        "+44 (0)20 7946 0000",
        "US",
        "+442079460000",
        true,
        FixedLine,
        "GB",
        "London",
        "Europe/London",
    ),
    // Voicemail and UAN lengths.
    w(
        "+41 860 12 345 67 89",
        "CH",
        "+41860123456789",
        true,
        Voicemail,
        "CH",
        "Switzerland",
        "Europe/Zurich",
    ),
    w(
        "+420 93 123 456 789",
        "CZ",
        "+42093123456789",
        true,
        Voicemail,
        "CZ",
        "Czech Republic",
        "Europe/Prague",
    ),
    // Non-geographic types get the country only.
    w(
        "+911861123456789",
        "IN",
        "+911861123456789",
        true,
        PremiumRate,
        "IN",
        "India",
        "Asia/Calcutta",
    ),
    w(
        "+32 800 12345",
        "BE",
        "+3280012345",
        true,
        TollFree,
        "BE",
        "Belgium",
        "Europe/Brussels",
    ),
    w(
        "+353 1800 123 456",
        "IE",
        "+3531800123456",
        true,
        TollFree,
        "IE",
        "Ireland",
        "Europe/Guernsey",
    ),
    w(
        "+351 912 345 678",
        "PT",
        "+351912345678",
        true,
        Mobile,
        "PT",
        "Portugal",
        "Atlantic/Azores",
    ),
    // Valid in two NANP countries: no description, every NANP zone.
    w(
        "+18005550100",
        "US",
        "+18005550100",
        true,
        TollFree,
        "US",
        "",
        "America/Adak",
    ),
    // One release for all data: valid, Canadian, and "Quebec".
    w(
        "+1 273 764 6550",
        "US",
        "+12737646550",
        true,
        FixedLineOrMobile,
        "CA",
        "Quebec",
        "America/Toronto",
    ),
    w(
        "+12012001234",
        "US",
        "+12012001234",
        true,
        FixedLineOrMobile,
        "US",
        "Jersey City, NJ",
        "America/New_York",
    ),
];

#[test]
fn issue_17_inputs_answer_as_libphonenumber() {
    let plan = NumberPlan::load();
    let intel = NumberIntel::load().unwrap();
    for c in CASES {
        let n = plan.normalize(c.raw, plan.region(c.trunk).unwrap(), None);
        assert_eq!(n.to_string(), c.e164, "{}", c.raw);
        let (info, geo) = intel.describe(&n);
        let info = info.unwrap();
        assert_eq!(info.valid, c.valid, "{}", c.raw);
        assert_eq!(info.kind, c.kind, "{}", c.raw);
        assert_eq!(info.region.unwrap_or(""), c.region, "{}", c.raw);
        if !c.valid {
            assert!(geo.is_none(), "{}: {geo:?}", c.raw);
            continue;
        }
        let geo = geo.unwrap();
        assert_eq!(geo.description.as_deref().unwrap_or(""), c.geo, "{}", c.raw);
        assert_eq!(geo.zones().next().unwrap_or(""), c.first_zone, "{}", c.raw);
    }
}

#[test]
fn several_zones_fall_back_to_the_line_and_say_so() {
    let plan = NumberPlan::load();
    let intel = NumberIntel::load().unwrap();
    let geo = |raw: &str| {
        let n = plan.normalize(raw, plan.region("US").unwrap(), None);
        intel.describe(&n).1
    };
    let tf = geo("+18005550100").unwrap();
    assert_eq!(tf.zones().count(), 42);
    assert_eq!(
        tf.time_zone(),
        None,
        "no single zone for a NANP toll-free number"
    );
    let nj = geo("+12015550123").unwrap();
    assert_eq!(nj.time_zone(), Some("America/New_York"));
    assert_eq!(nj.subdivision.as_deref(), Some("US-NJ"));
    assert_eq!(nj.description.as_deref(), Some("New Jersey"));
    assert_eq!(
        geo("+1 273 764 6550").unwrap().subdivision.as_deref(),
        Some("CA-QC")
    );
    assert_eq!(geo("+442079460000").unwrap().subdivision, None);

    // caller_zone's rule (zone_for is what it applies to the facts' ani_geo).
    let berlin = Some("Europe/Berlin");
    assert_eq!(zone_for(None, berlin), (berlin, ZoneChoice::None));
    assert_eq!(
        zone_for(Some(&nj), berlin),
        (Some("America/New_York"), ZoneChoice::Caller)
    );
    assert_eq!(
        zone_for(Some(&tf), berlin),
        (berlin, ZoneChoice::Several(42))
    );
    assert_eq!(zone_for(Some(&tf), None), (None, ZoneChoice::Several(42)));
}
