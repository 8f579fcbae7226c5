//! Number classification compiled from libphonenumber's metadata once, at start-up.
//!
//! phonenumber answers correctly but matches through one global regex cache of 100 patterns
//! behind a mutex (DESIGN.md: ≈ 22 µs per US number, ≈ 4.7 ms once traffic spans 50 countries,
//! two threads slower than one). [`Classifier`] compiles every region's patterns into its own
//! pattern sets, shared read-only, so the per-call path takes no lock and compiles nothing.
//! Each thread keeps its own matching scratch space (`Scratch`): the `regex` crate's
//! `Regex`/`RegexSet` share one cache pool per pattern, where every thread but the first
//! takes a mutex per search and `RegexSet::matches` allocates, which held two threads to about
//! 1.2x the throughput of one (benches/numbers.rs: now ≈ 1.95x). The scratch costs each
//! classifying thread ≈ 3 MB once it has seen the 50-country benchmark mix.
//! The rules are phonenumber's (`validator::number_type` and `source_for`), including its
//! prefix-match semantics; it differs only where phonenumber drops a national number's leading
//! zeros (see [`Classifier::classify`]).

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use phonenumber::metadata::{Descriptor, Metadata};
use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternID, PatternSet};

use crate::number::E164;

/// What kind of line a number is (libphonenumber's types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NumberKind {
    FixedLine,
    Mobile,
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    Voip,
    PersonalNumber,
    Pager,
    Uan,
    Voicemail,
    Unknown,
}

impl NumberKind {
    pub const ALL: [NumberKind; 12] = [
        NumberKind::FixedLine,
        NumberKind::Mobile,
        NumberKind::FixedLineOrMobile,
        NumberKind::TollFree,
        NumberKind::PremiumRate,
        NumberKind::SharedCost,
        NumberKind::Voip,
        NumberKind::PersonalNumber,
        NumberKind::Pager,
        NumberKind::Uan,
        NumberKind::Voicemail,
        NumberKind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NumberKind::FixedLine => "fixed",
            NumberKind::Mobile => "mobile",
            NumberKind::FixedLineOrMobile => "fixed-or-mobile",
            NumberKind::TollFree => "toll-free",
            NumberKind::PremiumRate => "premium",
            NumberKind::SharedCost => "shared-cost",
            NumberKind::Voip => "voip",
            NumberKind::PersonalNumber => "personal",
            NumberKind::Pager => "pager",
            NumberKind::Uan => "uan",
            NumberKind::Voicemail => "voicemail",
            NumberKind::Unknown => "unknown",
        }
    }

    /// Parses [`NumberKind::as_str`] names.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The phonenumber type of the same name.
    pub fn from_phonenumber(t: phonenumber::Type) -> Self {
        use phonenumber::Type as T;
        match t {
            T::FixedLine => NumberKind::FixedLine,
            T::Mobile => NumberKind::Mobile,
            T::FixedLineOrMobile => NumberKind::FixedLineOrMobile,
            T::TollFree => NumberKind::TollFree,
            T::PremiumRate => NumberKind::PremiumRate,
            T::SharedCost => NumberKind::SharedCost,
            T::Voip => NumberKind::Voip,
            T::PersonalNumber => NumberKind::PersonalNumber,
            T::Pager => NumberKind::Pager,
            T::Uan => NumberKind::Uan,
            T::Voicemail => NumberKind::Voicemail,
            _ => NumberKind::Unknown,
        }
    }
}

impl fmt::Display for NumberKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the classifier knows about a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumberInfo {
    pub valid: bool,
    /// ISO region ("US"), or "001" for non-geographic codes (+800, +882...), or `None`.
    pub region: Option<&'static str>,
    pub calling_code: u16,
    pub kind: NumberKind,
    /// Length of the national significant number (digits after the calling code).
    pub nsn_len: u8,
    /// NANP area code and exchange, for +1 numbers.
    pub npa: Option<u16>,
    pub nxx: Option<u16>,
}

/// The pattern kinds in the order phonenumber tests them (`validator::number_type`).
const ORDER: [NumberKind; 8] = [
    NumberKind::PremiumRate,
    NumberKind::TollFree,
    NumberKind::SharedCost,
    NumberKind::Voip,
    NumberKind::PersonalNumber,
    NumberKind::Pager,
    NumberKind::Uan,
    NumberKind::Voicemail,
];

#[derive(Debug)]
struct Lengths(u32);

impl Lengths {
    fn of(d: &Descriptor) -> Self {
        Self(
            d.possible_length()
                .iter()
                .fold(0, |m, &l| m | 1u32.checked_shl(u32::from(l)).unwrap_or(0)),
        )
    }

    /// phonenumber's `Descriptor::is_match`: no lengths listed means any length.
    fn allows(&self, len: usize) -> bool {
        self.0 == 0
            || u32::try_from(len)
                .ok()
                .and_then(|l| 1u32.checked_shl(l))
                .is_some_and(|b| self.0 & b != 0)
    }
}

/// One region's patterns: slot 0 general, 1..=8 [`ORDER`], 9 fixed line, 10 mobile.
#[derive(Debug)]
struct RegionMatcher {
    id: &'static str,
    leading: Option<Regex>,
    set: Regex,
    /// Where this region's caches sit in a thread's [`Scratch`]: `cache` for `set`, `cache + 1`
    /// for `leading`.
    cache: usize,
    /// For each slot: the pattern in `set` (None when the region lacks that pattern) and lengths.
    slots: [(Option<PatternID>, Lengths); 11],
    fixed_equals_mobile: bool,
}

/// The configuration the `regex` crate gives `Regex` and `RegexSet`, so matching is unchanged.
fn builder(kind: MatchKind) -> meta::Builder {
    let mut b = meta::Builder::new();
    b.configure(
        meta::Config::new()
            .nfa_size_limit(Some(10 * (1 << 20)))
            .hybrid_cache_capacity(2 * (1 << 20))
            .match_kind(kind)
            .utf8_empty(true),
    )
    .syntax(syntax::Config::new().utf8(true));
    b
}

fn build_error(e: meta::BuildError) -> regex::Error {
    regex::Error::Syntax(e.to_string())
}

impl RegionMatcher {
    fn new(meta: &Metadata, cache: usize) -> Result<Self, regex::Error> {
        let d = meta.descriptors();
        let descs: [Option<&Descriptor>; 11] = [
            Some(d.general()),
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ];
        // libphonenumber's patterns are laid out with whitespace, hence the `x` flag.
        let mut patterns = Vec::new();
        let slots = descs.map(|desc| match desc {
            Some(desc) => {
                patterns.push(format!("^(?x:{})", desc.national_number().as_str()));
                (PatternID::new(patterns.len() - 1).ok(), Lengths::of(desc))
            }
            None => (None, Lengths(0)),
        });
        let fixed_equals_mobile = matches!(
            (d.fixed_line(), d.mobile()),
            (Some(f), Some(m)) if f.national_number().as_str() == m.national_number().as_str()
        );
        let leading = meta
            .leading_digits()
            .map(|r| {
                builder(MatchKind::LeftmostFirst)
                    .build(&format!("^(?x:{})", r.as_str()))
                    .map_err(build_error)
            })
            .transpose()?;
        Ok(Self {
            id: leak(meta.id()),
            leading,
            set: builder(MatchKind::All)
                .build_many(&patterns)
                .map_err(build_error)?,
            cache,
            slots,
            fixed_equals_mobile,
        })
    }

    /// Whether the region's leading-digits pattern matches (`Regex::is_match`).
    fn leading_matches(&self, lead: &Regex, nsn: &str, scratch: &mut Scratch) -> bool {
        let input = Input::new(nsn).earliest(true);
        match cache(&mut scratch.caches, self.cache + 1, lead) {
            Some(cache) => lead.search_half_with(cache, &input).is_some(),
            None => lead.is_match(input),
        }
    }

    /// phonenumber's `number_type` for this region.
    fn kind(&self, nsn: &str, scratch: &mut Scratch) -> NumberKind {
        let input = Input::new(nsn);
        let Scratch { caches, hits, .. } = scratch;
        let hits = hits.get_or_insert_with(|| PatternSet::new(11));
        if hits.capacity() < self.set.pattern_len() {
            *hits = PatternSet::new(self.set.pattern_len());
        }
        hits.clear();
        match cache(caches, self.cache, &self.set) {
            Some(cache) => self.set.which_overlapping_matches_with(cache, &input, hits),
            None => self.set.which_overlapping_matches(&input, hits),
        }
        self.kind_from(nsn, hits)
    }

    fn kind_from(&self, nsn: &str, hits: &PatternSet) -> NumberKind {
        let hit = |slot: usize| {
            self.slots.get(slot).is_some_and(|(idx, len)| {
                idx.is_some_and(|i| hits.contains(i)) && len.allows(nsn.len())
            })
        };
        if !hit(0) {
            return NumberKind::Unknown;
        }
        for (i, kind) in ORDER.iter().enumerate() {
            if hit(i + 1) {
                return *kind;
            }
        }
        if hit(9) {
            return if self.fixed_equals_mobile || hit(10) {
                NumberKind::FixedLineOrMobile
            } else {
                NumberKind::FixedLine
            };
        }
        if hit(10) {
            return NumberKind::Mobile;
        }
        NumberKind::Unknown
    }
}

/// One thread's matching caches for one [`Classifier`] (the last one the thread used).
struct Scratch {
    classifier: u64,
    /// Lazy-DFA and engine caches, two per region, made on a region's first number.
    caches: Vec<Option<meta::Cache>>,
    /// Which patterns of a region's set matched (made on first use).
    hits: Option<PatternSet>,
}

/// The cache in slot `i`, made for `re` when the slot is empty.
fn cache<'a>(
    caches: &'a mut [Option<meta::Cache>],
    i: usize,
    re: &Regex,
) -> Option<&'a mut meta::Cache> {
    Some(caches.get_mut(i)?.get_or_insert_with(|| re.create_cache()))
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            classifier: 0,
            caches: Vec::new(),
            hits: None,
        })
    };
}

/// Tells classifiers apart in the thread-local scratch (0: none yet).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Region ids live as long as the process; there are about 250 of them.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// All regions' matchers, indexed by calling code.
#[derive(Debug)]
pub struct Classifier {
    by_code: Vec<Vec<RegionMatcher>>,
    id: u64,
    caches: usize,
}

impl Classifier {
    /// Compiles every region's patterns (≈ 0.3-0.5 s on the reference machine): at start-up.
    pub fn load() -> Result<Self, regex::Error> {
        let db = &*phonenumber::metadata::DATABASE;
        let mut by_code: Vec<Vec<RegionMatcher>> = (0..1000).map(|_| Vec::new()).collect();
        let mut caches = 0;
        let mut next_cache = || {
            caches += 2;
            caches - 2
        };
        for code in 1u16..1000 {
            let Some(regions) = db.region(&code) else {
                continue;
            };
            let Some(slot) = by_code.get_mut(usize::from(code)) else {
                continue;
            };
            if regions.first() == Some(&"001") {
                // Non-geographic: phonenumber uses the first metadata for the code.
                if let Some(meta) = db.by_code(&code).and_then(|m| m.into_iter().next()) {
                    slot.push(RegionMatcher::new(meta, next_cache())?);
                }
                continue;
            }
            for id in regions {
                if let Some(meta) = db.by_id(id) {
                    slot.push(RegionMatcher::new(meta, next_cache())?);
                }
            }
        }
        Ok(Self {
            by_code,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            caches,
        })
    }

    /// Classifies an E.164 number.
    ///
    /// Unlike phonenumber 0.3.10, whose `number_type` and region lookup read the national number
    /// as an integer and so lose leading zeros (`+39 02…`: valid, yet type Unknown and no region),
    /// this keeps the national significant number as dialled; validity agrees either way.
    pub fn classify(&self, number: &E164) -> NumberInfo {
        let digits = number.digits();
        for cc_len in 1..=3usize {
            let (Some(cc), Some(nsn)) = (digits.get(..cc_len), digits.get(cc_len..)) else {
                break;
            };
            let Ok(code) = cc.parse::<u16>() else { break };
            let Some(regions) = self
                .by_code
                .get(usize::from(code))
                .filter(|r| !r.is_empty())
            else {
                continue;
            };
            return self.with_scratch(|scratch| self.classify_in(code, regions, nsn, scratch));
        }
        NumberInfo {
            valid: false,
            region: None,
            calling_code: 0,
            kind: NumberKind::Unknown,
            nsn_len: 0,
            npa: None,
            nxx: None,
        }
    }

    /// Runs `f` with this thread's scratch, reset when it last served another classifier.
    fn with_scratch<R>(&self, f: impl Fn(&mut Scratch) -> R) -> R {
        let r = SCRATCH.try_with(|cell| {
            let mut s = cell.try_borrow_mut().ok()?;
            if s.classifier != self.id {
                s.classifier = self.id;
                s.caches.clear();
                s.caches.resize_with(self.caches, || None);
            }
            Some(f(&mut s))
        });
        match r {
            Ok(Some(r)) => r,
            // Thread-local storage torn down (a destructor classifying): a scratch of its own.
            _ => f(&mut Scratch {
                classifier: self.id,
                caches: Vec::new(),
                hits: None,
            }),
        }
    }

    fn classify_in(
        &self,
        code: u16,
        regions: &[RegionMatcher],
        nsn: &str,
        scratch: &mut Scratch,
    ) -> NumberInfo {
        // phonenumber's `source_for`: one region, or the first whose leading digits match, or
        // (for regions without leading digits) whose patterns give a type.
        let mut region = None;
        let mut kind = NumberKind::Unknown;
        if let [only] = regions {
            region = Some(only);
            kind = only.kind(nsn, scratch);
        } else {
            for r in regions {
                match &r.leading {
                    Some(lead) if r.leading_matches(lead, nsn, scratch) => {
                        region = Some(r);
                        kind = r.kind(nsn, scratch);
                        break;
                    }
                    Some(_) => {}
                    None => {
                        let k = r.kind(nsn, scratch);
                        if k != NumberKind::Unknown {
                            region = Some(r);
                            kind = k;
                            break;
                        }
                    }
                }
            }
        }
        let nanp = code == 1 && nsn.len() == 10;
        let part =
            |range: std::ops::Range<usize>| nsn.get(range).and_then(|s| s.parse::<u16>().ok());
        NumberInfo {
            valid: kind != NumberKind::Unknown,
            region: region.map(|r| r.id),
            calling_code: code,
            kind,
            nsn_len: u8::try_from(nsn.len()).unwrap_or(u8::MAX),
            npa: if nanp { part(0..3) } else { None },
            nxx: if nanp { part(3..6) } else { None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    pub(crate) fn classifier() -> &'static Classifier {
        static C: OnceLock<Classifier> = OnceLock::new();
        C.get_or_init(|| Classifier::load().expect("metadata compiles"))
    }

    fn info(d: &str) -> NumberInfo {
        classifier().classify(&E164::from_digits(d).expect("digits"))
    }

    /// Each thread matches with its own scratch; a thread switching classifiers resets it.
    #[test]
    fn threads_and_classifiers_share_no_scratch() {
        let nums = [
            "12015550123",
            "442072601815",
            "447912345678",
            "4930123456",
            "390236618300",
        ];
        let want: Vec<NumberInfo> = nums.iter().map(|d| info(d)).collect();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let got: Vec<NumberInfo> = nums.iter().map(|d| info(d)).collect();
                        assert_eq!(got, want);
                    }
                });
            }
        });
        let other = Classifier::load().expect("metadata compiles");
        for d in nums.iter().chain(nums.iter()) {
            let n = E164::from_digits(d).expect("digits");
            assert_eq!(other.classify(&n), classifier().classify(&n), "{d}");
        }
    }

    #[test]
    fn known_numbers() {
        let us = info("12015550123");
        assert!(us.valid);
        assert_eq!(
            (us.region, us.kind, us.npa, us.nxx),
            (
                Some("US"),
                NumberKind::FixedLineOrMobile,
                Some(201),
                Some(555)
            )
        );
        assert_eq!(info("18005550100").kind, NumberKind::TollFree);
        assert_eq!(info("19005550100").kind, NumberKind::PremiumRate);
        assert_eq!(info("442072601815").kind, NumberKind::FixedLine);
        assert_eq!(info("447912345678").kind, NumberKind::Mobile);
        assert_eq!(info("4930123456").region, Some("DE"));
        let it = info("390236618300");
        assert!(it.valid, "Italian fixed line keeps its leading zero");
        assert_eq!((it.region, it.kind), (Some("IT"), NumberKind::FixedLine));
        assert_eq!(info("16135550123").region, Some("CA"));
        assert_eq!(info("80012345678").region, Some("001"));
        let bad = info("12345");
        assert!(!bad.valid);
    }
}
