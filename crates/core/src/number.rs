//! Number normalization to E.164 as libphonenumber's `parse` does it.
//!
//! libphonenumber is the source of truth for the numbering plan (its metadata, from one
//! release, is embedded: `data/metadata.txt.gz`), but the phonenumber crate is slow and
//! serialises on a global lock, so [`NumberPlan`] parses with the start-up-compiled
//! [`Classifier`] (its per-thread caches, no lock): the region's international prefix pattern,
//! its calling code written in front, `nationalPrefixForParsing` and its transform rule.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::classify::{Classifier, RegionRef};
use crate::metadata::Metadata;

/// An E.164 number: 1 to 15 digits, country code first, stored without the `+`.
///
/// Held inline (no heap): extraction builds several per call and the pipeline copies them on.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct E164 {
    // The digits, then zero bytes: a zero sorts below every digit, so the derived order is the
    // order of the digit strings (as when this held a `String`).
    digits: [u8; 15],
    len: u8,
}

impl E164 {
    /// Digits only, country code first (the form RFC 8224 canonicalization produces).
    pub fn digits(&self) -> &str {
        // Only ASCII digits are ever stored, so this never falls back.
        std::str::from_utf8(self.digit_bytes()).unwrap_or_default()
    }

    /// Builds from digits (no `+`); `None` if not 1..=15 ASCII digits.
    pub fn from_digits(digits: &str) -> Option<Self> {
        Self::from_digit_bytes(digits.as_bytes())
    }

    fn from_digit_bytes(digits: &[u8]) -> Option<Self> {
        if digits.is_empty() || digits.len() > 15 || digits.first() == Some(&b'0') {
            return None;
        }
        // Checked and copied in one loop: a check pass, then `copy_from_slice` of at most 15
        // bytes, cost a second pass and two library calls (memset, memcpy) per number.
        let mut out = [0u8; 15];
        for (o, &d) in out.iter_mut().zip(digits) {
            if !d.is_ascii_digit() {
                return None;
            }
            *o = d;
        }
        Some(Self {
            digits: out,
            len: u8::try_from(digits.len()).ok()?,
        })
    }

    /// [`Self::from_digit_bytes`] for bytes known to be ASCII digits.
    pub(crate) fn from_ascii_digits(digits: &[u8]) -> Option<Self> {
        if digits.is_empty() || digits.len() > 15 || digits.first() == Some(&b'0') {
            return None;
        }
        let mut out = [0u8; 15];
        out.get_mut(..digits.len())?.copy_from_slice(digits);
        Some(Self {
            digits: out,
            len: u8::try_from(digits.len()).ok()?,
        })
    }

    /// The digits as bytes: [`Self::digits`] without the UTF-8 check.
    pub fn digit_bytes(&self) -> &[u8] {
        self.digits.get(..usize::from(self.len)).unwrap_or_default()
    }
}

// Hashes as the digit string does, so hashes match those of the former `E164(String)`.
impl std::hash::Hash for E164 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digits().hash(state);
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.digits())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.digits())
    }
}

/// Why a caller's number is not available: a fact about the call, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Withheld {
    Anonymous,
    Restricted,
    Unavailable,
}

impl Withheld {
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::Anonymous => "anonymous",
            Withheld::Restricted => "restricted",
            Withheld::Unavailable => "unavailable",
        }
    }
}

/// A party number as the call presented it, normalized as far as it can be.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PartyNumber {
    /// A number in global form.
    E164(E164),
    /// A dialable string that has no E.164 form: emergency and service codes (911, 112, N11),
    /// short codes. Digits, `*` and `#` only.
    Short(String),
    /// The caller withheld the number or the network does not have it.
    Withheld(Withheld),
    /// Anything else: kept verbatim (bounded) for the log; never matches a number rule.
    Unusable(String),
}

impl PartyNumber {
    pub fn e164(&self) -> Option<&E164> {
        match self {
            PartyNumber::E164(n) => Some(n),
            _ => None,
        }
    }

    /// The digits a rule or a table is keyed on: E.164 digits, a short code, or nothing.
    pub fn key(&self) -> Option<&str> {
        match self {
            PartyNumber::E164(n) => Some(n.digits()),
            PartyNumber::Short(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for PartyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartyNumber::E164(n) => n.fmt(f),
            PartyNumber::Short(s) => f.write_str(s),
            PartyNumber::Withheld(w) => f.write_str(w.as_str()),
            PartyNumber::Unusable(s) => write!(f, "unusable:{s}"),
        }
    }
}

/// What normalization needs to know about the region a trunk's national numbers belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionPlan {
    /// ISO 3166 region, upper case ("US", "GB").
    pub region: String,
    /// Country calling code ("1", "44").
    pub country_code: String,
    /// National (trunk) prefix ("0" in GB), if the region has one.
    pub national_prefix: Option<String>,
    /// The international dialling prefix ("011" in NANP, "00" in most places).
    pub international_prefix: String,
    /// Lengths of the region's national significant numbers (libphonenumber's possible lengths).
    pub national_lengths: Vec<u8>,
    /// The region in the classifier (parsing uses its patterns).
    matcher: Option<RegionRef>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("unknown region {0:?}: expected an ISO 3166 code that libphonenumber knows, such as US or GB")]
    UnknownRegion(String),
}

/// The numbering facts normalization needs, read from libphonenumber's metadata once.
#[derive(Clone, Debug)]
pub struct NumberPlan {
    regions: HashMap<String, RegionPlan>,
    /// Every assigned calling code, for recognising `+CC…` and bare international digits.
    calling_codes: Vec<bool>,
    classifier: Arc<Classifier>,
}

const MAX_UNUSABLE: usize = 64;

impl NumberPlan {
    /// Loads libphonenumber's metadata and compiles it (the process's shared [`Classifier`],
    /// ≈ 0.5 s the first time): call at start-up, not per call.
    pub fn load() -> Self {
        // The embedded metadata is tested to compile; were it broken, no number would parse.
        let classifier = Classifier::shared().unwrap_or_else(|_| Arc::new(Classifier::empty()));
        let meta = Metadata::load().unwrap_or_default();
        let mut regions = HashMap::new();
        let mut calling_codes = vec![false; 1000];
        for (cc, _) in &meta.code_regions {
            if let Some(slot) = calling_codes.get_mut(usize::from(*cc)) {
                *slot = true;
            }
        }
        for meta in meta.regions.iter().filter(|m| m.id != "001") {
            let cc = meta.country_code;
            // `~` marks "wait for dial tone" in libphonenumber's prefixes: not dialled digits.
            let plain = |p: &str| {
                let p = p.replace('~', "");
                (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then_some(p)
            };
            let intl = plain(&meta.preferred_international_prefix)
                .or_else(|| plain(&meta.international_prefix))
                .unwrap_or_else(|| if cc == 1 { "011".into() } else { "00".into() });
            let mut national_lengths: Vec<u8> = meta
                .descs
                .iter()
                .flatten()
                .flat_map(|d| d.lengths.iter().copied())
                .collect();
            national_lengths.sort_unstable();
            national_lengths.dedup();
            regions.insert(
                meta.id.clone(),
                RegionPlan {
                    region: meta.id.clone(),
                    country_code: cc.to_string(),
                    national_prefix: plain(&meta.national_prefix),
                    international_prefix: intl,
                    national_lengths,
                    matcher: classifier.region_ref(&meta.id),
                },
            );
        }
        Self {
            regions,
            calling_codes,
            classifier,
        }
    }

    /// The plan for an ISO region code (case-insensitive).
    pub fn region(&self, region: &str) -> Result<&RegionPlan, PlanError> {
        self.regions
            .get(&region.to_ascii_uppercase())
            .ok_or_else(|| PlanError::UnknownRegion(region.to_owned()))
    }

    /// The calling code (1 to 3 digits) that starts these E.164 digits, if any is assigned.
    pub fn calling_code<'a>(&self, digits: &'a str) -> Option<&'a str> {
        (1..=3).find_map(|len| {
            let prefix = digits.get(..len)?;
            let code: usize = prefix.parse().ok()?;
            (*self.calling_codes.get(code)?).then_some(prefix)
        })
    }

    /// Normalizes a number as found in a URI user part or a tel URI.
    ///
    /// Accepts `+E.164`, `%2B`, visual separators (`- . / ( )` and spaces), the region's
    /// international prefix, national numbers with or without the national prefix, NANP `1NXX`,
    /// and bare international digits (a carrier that drops the `+`). `phone_context` is a tel
    /// URI's `phone-context` (`+1` makes the number local to calling code 1).
    pub fn normalize(
        &self,
        raw: &str,
        region: &RegionPlan,
        phone_context: Option<&str>,
    ) -> PartyNumber {
        let trimmed = trim(raw);
        if let Some(w) = withheld(trimmed) {
            return PartyNumber::Withheld(w);
        }
        // Carriers send bare digits or `+` and digits, as a rule: those need no copy.
        let (lead_plus, bare) = match trimmed.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if !bare.is_empty() && all_digits(bare.as_bytes()) {
            return self.normalize_digits(
                bare.as_bytes(),
                lead_plus,
                region,
                phone_context,
                trimmed,
            );
        }
        let mut plus = false;
        let mut short = false;
        let mut digits = DigitBuf::with_capacity(trimmed.len());
        let bytes = trimmed.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'0'..=b'9' => digits.push(b),
                b'*' | b'#' => {
                    short = true;
                    digits.push(b);
                }
                b'+' if digits.is_empty() && !plus => plus = true,
                b'%' if bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.eq_ignore_ascii_case(b"2B")) =>
                {
                    if !digits.is_empty() || plus {
                        return unusable(trimmed);
                    }
                    plus = true;
                    i += 2;
                }
                b'-' | b'.' | b'/' | b'(' | b')' | b' ' => {}
                _ => return unusable(trimmed),
            }
            i += 1;
        }
        let digits = digits.as_bytes();
        if digits.is_empty() {
            return unusable(trimmed);
        }
        if short {
            return PartyNumber::Short(String::from_utf8_lossy(digits).into_owned());
        }
        self.normalize_digits(digits, plus, region, phone_context, trimmed)
    }

    /// [`Self::normalize`] once the digits are known: `trimmed` is what an unusable number
    /// keeps.
    fn normalize_digits(
        &self,
        digits: &[u8],
        plus: bool,
        region: &RegionPlan,
        phone_context: Option<&str>,
        trimmed: &str,
    ) -> PartyNumber {
        if plus {
            return self
                .global(digits, region)
                .unwrap_or_else(|| unusable(trimmed));
        }
        if let Some(ctx) = phone_context.and_then(|c| c.strip_prefix('+')) {
            // RFC 3966: the number is local to the context's calling code, as if `+CC` led it.
            let mut joined: crate::classify::Digits =
                ctx.bytes().filter(u8::is_ascii_digit).collect();
            joined.extend(digits.iter().copied());
            return self
                .global(&joined, region)
                .unwrap_or_else(|| unusable(trimmed));
        }
        self.national(digits, region)
            .unwrap_or_else(|| unusable(trimmed))
    }

    /// `+` and digits (ASCII digits, checked by every caller), as libphonenumber parses them:
    /// the calling code, then the national significant number without a national prefix
    /// (`+44 (0)20…` is `+4420…`).
    fn global(&self, digits: &[u8], region: &RegionPlan) -> Option<PartyNumber> {
        debug_assert!(digits.iter().all(u8::is_ascii_digit));
        let e = self
            .classifier
            .parse(digits, true, region.matcher)?
            .e164()?;
        // Fewer than seven digits are a number only when valid (Iran's UAN +98 9601).
        (digits.len() >= 7 || self.classifier.classify(&e).valid).then_some(PartyNumber::E164(e))
    }

    /// A number without `+`, as libphonenumber's `parse` reads it for the trunk's region: the
    /// region's international prefix pattern (KR `001`-`008`, JP `010`, NG `009`), its own
    /// calling code written in front, its national prefix for parsing and transform rule (AR
    /// `011 15-2345-6789` is `+54 9 11 2345 6789`). Where libphonenumber's reading is not a
    /// valid number and its length is not one the region's numbers have, on purpose: digits that
    /// are a valid number of another calling code are that number (a carrier that drops the
    /// `+`), and six digits or fewer are a short code (911, 112).
    fn national(&self, digits: &[u8], region: &RegionPlan) -> Option<PartyNumber> {
        let parsed = self.classifier.parse(digits, false, region.matcher);
        let e164 = parsed.as_ref().and_then(|p| p.e164());
        if let (Some(p), Some(e)) = (&parsed, &e164) {
            // A length the region's numbers have (NANP: NPA and NXX start with 2-9).
            let possible = if region.country_code == "1" {
                p.nsn.len() == 10 && nanp_shape(&p.nsn)
            } else {
                u8::try_from(p.nsn.len()).is_ok_and(|l| region.national_lengths.contains(&l))
            };
            if p.international || possible || self.classifier.classify(e).valid {
                return Some(PartyNumber::E164(e.clone()));
            }
        }
        if let Some(n) = self.foreign(digits, region) {
            return Some(n);
        }
        (digits.len() <= 6)
            .then(|| PartyNumber::Short(String::from_utf8_lossy(digits).into_owned()))
    }

    /// Bare digits that are a valid number of another calling code than the trunk's.
    fn foreign(&self, digits: &[u8], region: &RegionPlan) -> Option<PartyNumber> {
        if digits.len() < 8 || digits.first() == Some(&b'0') {
            return None;
        }
        let code = self.calling_code(std::str::from_utf8(digits).ok()?)?;
        if code == region.country_code {
            return None;
        }
        let e = self.classifier.parse(digits, true, None)?.e164()?;
        self.classifier
            .classify(&e)
            .valid
            .then_some(PartyNumber::E164(e))
    }
}

/// Dialled digits (`0-9`, `*`, `#`) on the stack, so normalizing a number allocates nothing;
/// input too long for the buffer (never E.164, at most a long short code) uses the heap.
enum DigitBuf {
    Inline([u8; 32], usize),
    Heap(Vec<u8>),
}

impl DigitBuf {
    /// Room for `n` digits (a string of `n` bytes holds no more).
    fn with_capacity(n: usize) -> Self {
        if n <= 32 {
            Self::Inline([0; 32], 0)
        } else {
            Self::Heap(Vec::with_capacity(n))
        }
    }

    #[inline(always)]
    fn push(&mut self, b: u8) {
        match self {
            Self::Inline(buf, len) => {
                if let Some(slot) = buf.get_mut(*len) {
                    *slot = b;
                    *len += 1;
                }
            }
            Self::Heap(v) => v.push(b),
        }
    }

    fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(buf, len) => buf.get(..*len).unwrap_or_default(),
            Self::Heap(v) => v,
        }
    }
}

/// `str::trim`, skipping the Unicode tables when both ends are visibly not whitespace.
fn trim(s: &str) -> &str {
    let solid = |b: Option<&u8>| b.is_some_and(u8::is_ascii_graphic);
    if solid(s.as_bytes().first()) && solid(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// Whether every byte is an ASCII digit, eight a step: a byte is a digit when adding 0x46 leaves
/// it below 0x80 and subtracting 0x30 does not borrow from it, for all eight at once when no
/// byte has its high bit set (callers pass numbers of about a dozen bytes).
fn all_digits(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (words, tail) = b.as_chunks::<8>();
    words.iter().all(|w| {
        let x = u64::from_le_bytes(*w);
        // Bytes at or above 0x80 first: the two sums below are exact only for 7-bit bytes.
        x & HI == 0 && ((x + LO * 0x46) | x.wrapping_sub(LO * 0x30)) & HI == 0
    }) && tail.iter().all(u8::is_ascii_digit)
}

fn nanp_shape(b: &[u8]) -> bool {
    matches!(b.first(), Some(b'2'..=b'9')) && matches!(b.get(3), Some(b'2'..=b'9'))
}

fn withheld(s: &str) -> Option<Withheld> {
    // Every word below is empty or starts with a letter: numbers skip the table.
    if s.as_bytes()
        .first()
        .is_some_and(|b| !b.is_ascii_alphabetic())
    {
        return None;
    }
    const TABLE: &[(&str, Withheld)] = &[
        ("anonymous", Withheld::Anonymous),
        ("restricted", Withheld::Restricted),
        ("private", Withheld::Restricted),
        ("withheld", Withheld::Restricted),
        ("unavailable", Withheld::Unavailable),
        ("unknown", Withheld::Unavailable),
        ("", Withheld::Unavailable),
    ];
    TABLE
        .iter()
        .find(|(word, _)| s.eq_ignore_ascii_case(word))
        .map(|(_, w)| *w)
}

fn unusable(s: &str) -> PartyNumber {
    let mut end = s.len().min(MAX_UNUSABLE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    PartyNumber::Unusable(s.get(..end).unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// `all_digits` against a plain test: every byte value at every position.
    #[test]
    fn all_digits_agrees_with_a_plain_test() {
        for len in 0..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'7'; len];
                    if let Some(x) = b.get_mut(at) {
                        *x = c;
                    }
                    assert_eq!(all_digits(&b), b.iter().all(u8::is_ascii_digit), "{b:?}");
                }
            }
        }
    }

    fn plan() -> &'static NumberPlan {
        static PLAN: OnceLock<NumberPlan> = OnceLock::new();
        PLAN.get_or_init(NumberPlan::load)
    }

    fn norm(raw: &str, region: &str) -> String {
        let p = plan();
        p.normalize(raw, p.region(region).expect("region"), None)
            .to_string()
    }

    #[test]
    fn nanp_forms() {
        for raw in [
            "+18005551234",
            "18005551234",
            "8005551234",
            "+1-800-555-1234",
            "(800) 555.1234",
            "%2B18005551234",
            "01118005551234",
        ] {
            assert_eq!(norm(raw, "US"), "+18005551234", "{raw}");
        }
        assert_eq!(norm("1234567890", "US"), "unusable:1234567890");
    }

    #[test]
    fn national_prefix_regions() {
        assert_eq!(norm("02072601815", "GB"), "+442072601815");
        assert_eq!(norm("00442072601815", "GB"), "+442072601815");
        assert_eq!(norm("030123456", "DE"), "+4930123456");
    }

    #[test]
    fn bare_international_digits() {
        assert_eq!(norm("442072601815", "US"), "+442072601815");
        assert_eq!(norm("4930000000", "US"), "+4930000000");
    }

    #[test]
    fn withheld_and_short() {
        assert_eq!(norm("Anonymous", "US"), "anonymous");
        assert_eq!(norm("restricted", "US"), "restricted");
        assert_eq!(norm("911", "US"), "911");
        assert_eq!(norm("*67", "US"), "*67");
        assert_eq!(norm("alice", "US"), "unusable:alice");
    }

    #[test]
    fn phone_context() {
        let p = plan();
        let us = p.region("US").expect("US");
        assert_eq!(
            p.normalize("8005551234", us, Some("+1")).to_string(),
            "+18005551234"
        );
        assert_eq!(
            p.normalize("2072601815", us, Some("+44")).to_string(),
            "+442072601815"
        );
    }

    #[test]
    fn unknown_region_is_an_error() {
        assert!(matches!(
            plan().region("XX"),
            Err(PlanError::UnknownRegion(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let p = plan();
            let _ = p.normalize(&s, p.region("US").expect("US"), None);
        }

        #[test]
        fn nanp_round_trip(npa in 200u32..1000, nxx in 200u32..1000, line in 0u32..10000) {
            let digits = format!("1{npa}{nxx}{line:04}");
            let p = plan();
            let us = p.region("US").expect("US");
            let want = format!("+{digits}");
            let national = format!("({npa}) {nxx}-{line:04}");
            proptest::prop_assert_eq!(p.normalize(&want, us, None).to_string(), want.clone());
            proptest::prop_assert_eq!(p.normalize(&national, us, None).to_string(), want.clone());
            proptest::prop_assert_eq!(p.normalize(&digits, us, None).to_string(), want);
        }
    }
}
