//! Number classification and parsing compiled from libphonenumber's metadata once, at start-up.
//!
//! The metadata is libphonenumber's own, from one release (`data/metadata.txt.gz`, written by
//! `tools/gen_data.py`). [`Classifier`] compiles every region's patterns into its own pattern
//! sets, shared read-only, so the per-call path takes no lock and compiles nothing. Each thread
//! keeps its own matching scratch space (`Scratch`): the `regex` crate's `Regex`/`RegexSet`
//! share one cache pool per pattern, where every thread but the first takes a mutex per search
//! and `RegexSet::matches` allocates, which held two threads to about 1.2x the throughput of
//! one. The scratch costs each classifying thread ≈ 3 MB once it has seen the 50-country mix.
//!
//! The rules are libphonenumber's (`PhoneNumberUtil`): a national number is of a type when its
//! length is one of the type's possible lengths and the type's pattern matches it *in full*
//! (`_is_number_matching_desc`); types are tried in `_number_type_helper`'s order; a calling
//! code shared by several regions goes to the first whose leading digits match, or (without
//! leading digits) whose patterns give a type (`_region_code_for_number_from_list`). Parsing
//! (`Classifier::parse`) follows `parse`: `+`, the region's international prefix pattern, the
//! region's own calling code, then `nationalPrefixForParsing` and its transform rule.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use regex_automata::meta::{self, Regex};
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, PatternID, PatternSet};
use smallvec::SmallVec;

use crate::metadata::{Desc, Metadata, MetadataError, RegionMeta};
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

/// The pattern kinds in the order libphonenumber tests them (`_number_type_helper`), after the
/// general pattern (slot 0) and before fixed line (slot 9) and mobile (slot 10).
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

/// For each slot, the metadata type it holds (indexes of `metadata::TYPE_NAMES`).
const SLOT_TYPES: [usize; 11] = [0, 4, 3, 5, 6, 7, 8, 9, 10, 1, 2];

/// Caches per region in a thread's [`Scratch`]: the set, leading digits, general pattern,
/// international prefix, national prefix for parsing.
const CACHES: usize = 5;

#[derive(Debug)]
struct Lengths(u32);

impl Lengths {
    fn of(lengths: &[u8]) -> Self {
        Self(
            lengths
                .iter()
                .fold(0, |m, &l| m | 1u32.checked_shl(u32::from(l)).unwrap_or(0)),
        )
    }

    /// `_is_number_matching_desc`: no lengths listed means any length.
    fn allows(&self, len: usize) -> bool {
        self.0 == 0
            || u32::try_from(len)
                .ok()
                .and_then(|l| 1u32.checked_shl(l))
                .is_some_and(|b| self.0 & b != 0)
    }
}

/// libphonenumber's `ValidationResult` for a national number's length (`_test_number_length`
/// with the general description).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LengthCheck {
    Possible,
    LocalOnly,
    TooShort,
    TooLong,
    Invalid,
}

/// One region's patterns: slot 0 general, 1..=8 [`ORDER`], 9 fixed line, 10 mobile.
#[derive(Debug)]
struct RegionMatcher {
    id: &'static str,
    name: &'static str,
    country_code: u16,
    leading: Option<Regex>,
    set: Regex,
    /// The general pattern alone, matched in full (parsing's viability checks).
    general: Option<Regex>,
    /// `internationalPrefix`, matched at the start.
    idd: Option<Regex>,
    /// `nationalPrefixForParsing`, matched at the start, with its groups.
    npfp: Option<Regex>,
    /// `nationalPrefixTransformRule` (`\1` for group 1), empty when none.
    transform: &'static str,
    general_lengths: Vec<u8>,
    general_local: Vec<u8>,
    /// Where this region's [`CACHES`] caches start in a thread's [`Scratch`].
    cache: usize,
    /// For each slot: the pattern in `set` (None when the region lacks that pattern) and lengths.
    slots: [(Option<PatternID>, Lengths); 11],
    fixed_equals_mobile: bool,
}

/// The configuration the `regex` crate gives `Regex` and `RegexSet`, ASCII only (numbers are
/// ASCII digits, and `\d` then needs no Unicode tables).
fn builder(kind: MatchKind) -> meta::Builder {
    let mut b = meta::Builder::new();
    b.configure(
        meta::Config::new()
            .nfa_size_limit(Some(10 * (1 << 20)))
            .hybrid_cache_capacity(2 * (1 << 20))
            .match_kind(kind)
            .utf8_empty(true),
    )
    .syntax(syntax::Config::new().utf8(true).unicode(false));
    b
}

fn build_error(e: meta::BuildError) -> regex::Error {
    regex::Error::Syntax(e.to_string())
}

fn compile(pattern: &str) -> Result<Option<Regex>, regex::Error> {
    if pattern.is_empty() {
        return Ok(None);
    }
    builder(MatchKind::LeftmostFirst)
        .build(pattern)
        .map(Some)
        .map_err(build_error)
}

impl RegionMatcher {
    fn new(meta: &RegionMeta, cache: usize) -> Result<Self, regex::Error> {
        let desc = |slot: usize| -> Option<&Desc> {
            SLOT_TYPES
                .get(slot)
                .and_then(|&t| meta.descs.get(t))
                .and_then(Option::as_ref)
        };
        let mut patterns = Vec::new();
        let slots: [(Option<PatternID>, Lengths); 11] =
            std::array::from_fn(|slot| match desc(slot) {
                Some(d) => {
                    patterns.push(format!("^(?:{})$", d.pattern));
                    (
                        PatternID::new(patterns.len() - 1).ok(),
                        Lengths::of(&d.lengths),
                    )
                }
                None => (None, Lengths(0)),
            });
        // `_same_pattern`: both missing counts as the same.
        let fixed_equals_mobile = match (desc(9), desc(10)) {
            (None, None) => true,
            (Some(f), Some(m)) => f.pattern == m.pattern,
            _ => false,
        };
        let general = desc(0);
        let anchored = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                format!("^(?:{p})")
            }
        };
        Ok(Self {
            id: leak(&meta.id),
            name: leak(&meta.name),
            country_code: meta.country_code,
            leading: compile(&anchored(&meta.leading_digits))?,
            set: builder(MatchKind::All)
                .build_many(&patterns)
                .map_err(build_error)?,
            general: general
                .map(|g| compile(&format!("^(?:{})$", g.pattern)))
                .transpose()?
                .flatten(),
            idd: compile(&anchored(&meta.international_prefix))?,
            npfp: compile(&anchored(&meta.national_prefix_for_parsing))?,
            transform: leak(&meta.national_prefix_transform_rule),
            general_lengths: general.map(|g| g.lengths.clone()).unwrap_or_default(),
            general_local: general.map(|g| g.local_lengths.clone()).unwrap_or_default(),
            cache,
            slots,
            fixed_equals_mobile,
        })
    }

    /// Whether `re` (one of this region's, cached at `offset`) matches `s`.
    fn is_match(&self, re: &Regex, offset: usize, s: &[u8], scratch: &mut Scratch) -> bool {
        let input = Input::new(s).earliest(true);
        match cache(&mut scratch.caches, self.cache + offset, re) {
            Some(cache) => re.search_half_with(cache, &input).is_some(),
            None => re.is_match(input),
        }
    }

    /// The general pattern matches `s` in full (`_match_national_number`).
    fn viable(&self, s: &[u8], scratch: &mut Scratch) -> bool {
        self.general
            .as_ref()
            .is_some_and(|g| self.is_match(g, 2, s, scratch))
    }

    /// `_test_number_length` with the general description.
    fn length_check(&self, len: usize) -> LengthCheck {
        let has = |l: &[u8]| u8::try_from(len).is_ok_and(|n| l.contains(&n));
        if has(&self.general_local) {
            return LengthCheck::LocalOnly;
        }
        let (Some(&min), Some(&max)) = (self.general_lengths.first(), self.general_lengths.last())
        else {
            return LengthCheck::Invalid;
        };
        if usize::from(min) > len {
            LengthCheck::TooShort
        } else if usize::from(max) < len {
            LengthCheck::TooLong
        } else if has(&self.general_lengths) {
            LengthCheck::Possible
        } else {
            LengthCheck::Invalid
        }
    }

    /// `_maybe_strip_national_prefix_carrier_code`: the number without its national prefix
    /// (or transformed by the rule), or `None` when nothing is stripped.
    fn strip_national_prefix(&self, number: &[u8], scratch: &mut Scratch) -> Option<Digits> {
        let re = self.npfp.as_ref()?;
        if number.is_empty() {
            return None;
        }
        let mut slots = [None::<NonMaxUsize>; 32];
        let n = re.group_info().implicit_slot_len() + 2 * re.captures_len().saturating_sub(1);
        let slots = slots.get_mut(..n.min(32))?;
        let input = Input::new(number).anchored(Anchored::Yes);
        let found = match cache(&mut scratch.caches, self.cache + 4, re) {
            Some(cache) => re.search_slots_with(cache, &input, slots),
            None => re.search_slots(&input, slots),
        };
        found?;
        let end = slots.get(1).copied().flatten()?.get();
        let group = |g: usize| -> Option<&[u8]> {
            let a = slots.get(2 * g).copied().flatten()?.get();
            let b = slots.get(2 * g + 1).copied().flatten()?.get();
            number.get(a..b)
        };
        let groups = re.captures_len().saturating_sub(1);
        let viable = self.viable(number, scratch);
        let rest = number.get(end..)?;
        if self.transform.is_empty() || groups == 0 || group(groups).is_none() {
            if viable && !self.viable(rest, scratch) {
                return None;
            }
            return Some(rest.iter().copied().collect());
        }
        let mut out = Digits::new();
        let mut rule = self.transform.bytes().peekable();
        while let Some(b) = rule.next() {
            match (b, rule.peek()) {
                (b'\\', Some(d)) if d.is_ascii_digit() => {
                    out.extend(
                        group(usize::from(d - b'0'))
                            .unwrap_or_default()
                            .iter()
                            .copied(),
                    );
                    rule.next();
                }
                (b'$', Some(d)) if d.is_ascii_digit() => {
                    out.extend(
                        group(usize::from(d - b'0'))
                            .unwrap_or_default()
                            .iter()
                            .copied(),
                    );
                    rule.next();
                }
                _ => out.push(b),
            }
        }
        out.extend(rest.iter().copied());
        if viable && !self.viable(&out, scratch) {
            return None;
        }
        Some(out)
    }

    /// libphonenumber's `_number_type_helper` for this region.
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
        if !self.fixed_equals_mobile && hit(10) {
            return NumberKind::Mobile;
        }
        NumberKind::Unknown
    }
}

/// Digits being parsed: on the stack for any number.
pub(crate) type Digits = SmallVec<[u8; 24]>;

/// One thread's matching caches for one [`Classifier`] (the last one the thread used).
struct Scratch {
    classifier: u64,
    /// Lazy-DFA and engine caches, [`CACHES`] per region, made on a region's first use.
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

/// Region ids and names live as long as the process; there are about 250 of them.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// A region's place in the classifier (calling code, index in the code's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RegionRef {
    code: u16,
    index: u16,
}

/// What [`Classifier::parse`] read: a calling code and a national significant number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub code: u16,
    pub nsn: Digits,
    /// The calling code came from `+`, the international prefix or the region's own code
    /// written in front (not from the trunk's region).
    pub international: bool,
}

impl Parsed {
    /// The E.164 form, when it has at most 15 digits.
    pub(crate) fn e164(&self) -> Option<E164> {
        let mut buf = [0u8; 15];
        let (c, len_cc) = (
            self.code,
            usize::from(self.code >= 10) + usize::from(self.code >= 100),
        );
        let cc = [
            b'0' + (c / 100 % 10) as u8,
            b'0' + (c / 10 % 10) as u8,
            b'0' + (c % 10) as u8,
        ];
        let mut len = 0;
        for b in cc
            .iter()
            .skip(2 - len_cc)
            .copied()
            .chain(self.nsn.iter().copied())
        {
            *buf.get_mut(len)? = b;
            len += 1;
        }
        E164::from_ascii_digits(buf.get(..len)?)
    }
}

/// All regions' matchers, indexed by calling code.
#[derive(Debug)]
pub struct Classifier {
    by_code: Vec<Vec<RegionMatcher>>,
    geo_mobile: Vec<u16>,
    version: &'static str,
    id: u64,
    caches: usize,
}

impl Classifier {
    /// Compiles every region's patterns (≈ 0.3-0.5 s on the reference machine): at start-up.
    pub fn load() -> Result<Self, ClassifierError> {
        let meta = Metadata::load()?;
        let mut by_code: Vec<Vec<RegionMatcher>> = (0..1000).map(|_| Vec::new()).collect();
        let mut caches = 0;
        for (code, ids) in &meta.code_regions {
            let Some(slot) = by_code.get_mut(usize::from(*code)) else {
                continue;
            };
            for id in ids {
                let Some(m) = meta
                    .regions
                    .iter()
                    .find(|m| m.id == *id && (id != "001" || m.country_code == *code))
                else {
                    continue;
                };
                slot.push(RegionMatcher::new(m, caches)?);
                caches += CACHES;
            }
        }
        Ok(Self {
            by_code,
            geo_mobile: meta.geo_mobile,
            version: leak(&meta.version),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            caches,
        })
    }

    /// One classifier for the process, compiled on first use and shared ([`NumberPlan::load`]
    /// and [`crate::NumberIntel::load`] both use it, so the patterns are compiled once).
    ///
    /// [`NumberPlan::load`]: crate::NumberPlan::load
    pub fn shared() -> Result<Arc<Self>, ClassifierError> {
        static SHARED: OnceLock<Result<Arc<Classifier>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::load().map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(ClassifierError::Shared)
    }

    /// A classifier that knows no region (what [`crate::NumberPlan`] falls back to if the
    /// embedded metadata were broken; the tests prove it is not).
    pub(crate) fn empty() -> Self {
        Self {
            by_code: (0..1000).map(|_| Vec::new()).collect(),
            geo_mobile: Vec::new(),
            version: "",
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            caches: 0,
        }
    }

    /// The libphonenumber release the metadata comes from ("9.0.43").
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// The English country name of an ISO region ("United Kingdom"), as libphonenumber's
    /// geocoder gives it.
    pub fn country_name(&self, region: &str) -> Option<&'static str> {
        self.by_code
            .iter()
            .flatten()
            .find(|r| r.id == region)
            .map(|r| r.name)
            .filter(|n| !n.is_empty())
    }

    /// Whether numbers of this kind and calling code have a place below the country
    /// (libphonenumber's `is_number_type_geographical`).
    pub fn is_geographic(&self, kind: NumberKind, calling_code: u16) -> bool {
        matches!(kind, NumberKind::FixedLine | NumberKind::FixedLineOrMobile)
            || (kind == NumberKind::Mobile && self.geo_mobile.contains(&calling_code))
    }

    pub(crate) fn region_ref(&self, id: &str) -> Option<RegionRef> {
        self.by_code.iter().enumerate().find_map(|(code, regions)| {
            let index = regions.iter().position(|r| r.id == id && id != "001")?;
            Some(RegionRef {
                code: u16::try_from(code).ok()?,
                index: u16::try_from(index).ok()?,
            })
        })
    }

    fn matcher(&self, r: RegionRef) -> Option<&RegionMatcher> {
        self.by_code
            .get(usize::from(r.code))?
            .get(usize::from(r.index))
    }

    /// The regions of a calling code, main region first.
    fn regions(&self, code: u16) -> Option<&[RegionMatcher]> {
        self.by_code
            .get(usize::from(code))
            .map(Vec::as_slice)
            .filter(|r| !r.is_empty())
    }

    /// `_extract_country_code`: an assigned calling code at the start, and the rest.
    fn extract_code<'a>(&self, digits: &'a [u8]) -> Option<(u16, &'a [u8])> {
        if digits.first() == Some(&b'0') {
            return None;
        }
        let mut code = 0u16;
        for (i, &b) in digits.iter().take(3).enumerate() {
            if !b.is_ascii_digit() {
                return None;
            }
            code = code * 10 + u16::from(b - b'0');
            if self.regions(code).is_some() {
                return Some((code, digits.get(i + 1..)?));
            }
        }
        None
    }

    /// libphonenumber's `parse` of normalized digits (`plus`: written after a `+`), with
    /// `default` the region national numbers belong to. `None` is a parse error.
    pub(crate) fn parse(
        &self,
        digits: &[u8],
        plus: bool,
        default: Option<RegionRef>,
    ) -> Option<Parsed> {
        self.with_scratch(|s| self.parse_in(digits, plus, default, s))
    }

    fn parse_in(
        &self,
        digits: &[u8],
        plus: bool,
        default: Option<RegionRef>,
        scratch: &mut Scratch,
    ) -> Option<Parsed> {
        if digits.len() < 2 {
            return None;
        }
        let def = default.and_then(|r| self.matcher(r));
        // `_maybe_extract_country_code`.
        let after_idd = if plus {
            Some(digits)
        } else {
            def.and_then(|d| {
                let re = d.idd.as_ref()?;
                let end = match cache(&mut scratch.caches, d.cache + 3, re) {
                    Some(c) => re.search_with(c, &Input::new(digits).anchored(Anchored::Yes)),
                    None => re.search(&Input::new(digits).anchored(Anchored::Yes)),
                }?
                .end();
                let rest = digits.get(end..)?;
                // Only an IDD when the next digit is not 0 (calling codes never start with 0).
                (rest.first() != Some(&b'0')).then_some(rest)
            })
        };
        let (code, mut nsn, international, meta): (u16, Digits, bool, &RegionMatcher) =
            match after_idd {
                Some(rest) => {
                    if rest.len() <= 2 {
                        return None;
                    }
                    let Some((code, nsn)) = self.extract_code(rest) else {
                        // `+` before an unknown code: libphonenumber reads on without the `+`,
                        // which succeeds only for an international prefix after it.
                        if plus {
                            let p = self.parse_in(digits, false, default, scratch)?;
                            return p.international.then_some(p);
                        }
                        return None;
                    };
                    let main = self.regions(code)?.first()?;
                    (code, nsn.iter().copied().collect(), true, main)
                }
                None => {
                    let d = def?;
                    let cc = d.country_code.to_string();
                    let mut out = (d.country_code, digits.iter().copied().collect(), false, d);
                    if let Some(rest) = digits.strip_prefix(cc.as_bytes()) {
                        let potential: Digits = d
                            .strip_national_prefix(rest, scratch)
                            .unwrap_or_else(|| rest.iter().copied().collect());
                        if (!d.viable(digits, scratch) && d.viable(&potential, scratch))
                            || d.length_check(digits.len()) == LengthCheck::TooLong
                        {
                            let main = self.regions(d.country_code)?.first()?;
                            out = (d.country_code, potential, true, main);
                        }
                    }
                    out
                }
            };
        if nsn.len() < 2 {
            return None;
        }
        if let Some(stripped) = meta.strip_national_prefix(&nsn, scratch) {
            if matches!(
                meta.length_check(stripped.len()),
                LengthCheck::Possible | LengthCheck::TooLong
            ) {
                nsn = stripped;
            }
        }
        if nsn.len() < 2 || nsn.len() > 17 {
            return None;
        }
        Some(Parsed {
            code,
            nsn,
            international,
        })
    }

    /// Classifies an E.164 number.
    pub fn classify(&self, number: &E164) -> NumberInfo {
        let digits = number.digits();
        if let Some((code, nsn)) = self.extract_code(digits.as_bytes()) {
            if let (Some(regions), Ok(nsn)) = (self.regions(code), std::str::from_utf8(nsn)) {
                return self.with_scratch(|scratch| self.classify_in(code, regions, nsn, scratch));
            }
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

    /// The regions of the number's calling code for which it is valid
    /// (`is_valid_number_for_region`), up to two: the geocoder names a country only when it is
    /// one (a code of one region: that region, as `country_name_for_number`).
    pub(crate) fn valid_regions(&self, number: &E164) -> SmallVec<[&'static str; 2]> {
        let mut out = SmallVec::new();
        let digits = number.digits();
        let Some((code, nsn)) = self.extract_code(digits.as_bytes()) else {
            return out;
        };
        let (Some(regions), Ok(nsn)) = (self.regions(code), std::str::from_utf8(nsn)) else {
            return out;
        };
        if let [only] = regions {
            // One region: the geocoder names it without validating again.
            out.push(only.id);
            return out;
        }
        self.with_scratch(|s| {
            for r in regions {
                if r.kind(nsn, s) != NumberKind::Unknown {
                    out.push(r.id);
                    if out.len() == 2 {
                        break;
                    }
                }
            }
        });
        out
    }

    /// Runs `f` with this thread's scratch, reset when it last served another classifier.
    fn with_scratch<R>(&self, mut f: impl FnMut(&mut Scratch) -> R) -> R {
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
        // `region_code_for_number`: one region, or the first whose leading digits match, or
        // (for regions without leading digits) whose patterns give a type.
        let mut region = None;
        let mut kind = NumberKind::Unknown;
        if let [only] = regions {
            region = Some(only);
            kind = only.kind(nsn, scratch);
        } else {
            for r in regions {
                match &r.leading {
                    Some(lead) if r.is_match(lead, 1, nsn.as_bytes(), scratch) => {
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

/// Why the classifier did not compile (a build defect, reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("numbering metadata: {0}")]
    Pattern(#[from] regex::Error),
    #[error("numbering metadata: {0}")]
    Shared(String),
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
