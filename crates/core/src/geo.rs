//! Caller geography: description, ISO 3166-2 subdivision and time zones of a number.
//!
//! The table is libphonenumber's geocoding and time-zone data (see `data/SOURCE.md`), embedded
//! gzipped and indexed once at start-up; a lookup is a longest-prefix match over at most 15
//! hash probes, no lock, no allocation. [`Geography::locate`] answers as libphonenumber's
//! geocoder (`description_for_number`) and time-zone mapper (`time_zones_for_number`) do:
//! nothing for an invalid number, the country alone (and the country's zones) for a type with
//! no place below the country (toll-free, premium, shared-cost, VoIP, UAN, ..., and mobile
//! numbers outside the few countries whose mobile numbers are geographic), the most specific
//! prefix for the rest.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::sync::Arc;

use crate::classify::{Classifier, NumberInfo};
use crate::facts::CallFacts;
use crate::number::E164;

static DATA: &[u8] = include_bytes!("../data/geo.txt.gz");

/// Geography of one number. Strings are shared with the table, so a lookup copies pointers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// libphonenumber's geocoder description: city, state or region ("Jersey City, NJ", "New
    /// Jersey", "London"), or the country alone ("United Kingdom"); `None` where the geocoder
    /// gives none (a +1 toll-free number, valid in several NANP countries).
    pub description: Option<Arc<str>>,
    /// The prefix length the description came from (longer is more specific; 0: the country).
    pub description_prefix: u8,
    /// Every IANA time zone libphonenumber lists for the number, "&"-separated, in its order
    /// ("America/New_York"; a US toll-free number lists all 42 NANP zones). Read with
    /// [`GeoInfo::zones`].
    pub time_zones: Option<Arc<str>>,
    /// ISO 3166-2 subdivision ("US-NJ", "CA-QC") where the data names one: US states and
    /// Canadian provinces of NANP geographic numbers.
    pub subdivision: Option<Arc<str>>,
}

impl GeoInfo {
    /// Every time zone of the number, in libphonenumber's order.
    pub fn zones(&self) -> impl Iterator<Item = &str> + '_ {
        self.time_zones
            .as_deref()
            .into_iter()
            .flat_map(|t| t.split('&'))
            .filter(|z| !z.is_empty())
    }

    /// The number's time zone when it has exactly one, else `None` (see [`caller_zone`] for
    /// what rules do then).
    pub fn time_zone(&self) -> Option<&str> {
        let mut z = self.zones();
        match (z.next(), z.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// The subdivision's code without the country ("NJ" for "US-NJ").
    pub fn subdivision_code(&self) -> Option<&str> {
        self.subdivision
            .as_deref()
            .and_then(|s| s.split_once('-'))
            .map(|(_, c)| c)
    }
}

/// Which zone a rule on the caller's local time used, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneChoice {
    /// The caller's number has exactly one time zone: that one.
    Caller,
    /// The caller's number spans several zones (this many): the fallback.
    Several(usize),
    /// The caller's number has no zone (withheld, invalid, unknown): the fallback.
    None,
}

impl ZoneChoice {
    /// Why, for explain and the decision log.
    pub fn reason(self) -> String {
        match self {
            ZoneChoice::Caller => "the caller's number has one time zone".into(),
            ZoneChoice::Several(n) => {
                format!("the caller's number spans {n} time zones: the line's zone")
            }
            ZoneChoice::None => "the caller's number has no time zone: the line's zone".into(),
        }
    }
}

impl std::fmt::Display for ZoneChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ZoneChoice::Caller => "caller",
            ZoneChoice::Several(_) => "fallback-several",
            ZoneChoice::None => "fallback-none",
        })
    }
}

/// The zone a rule on the caller's local time uses: the caller's number's zone when it has
/// exactly one, else `fallback` (the router passes the dialled line's rule-set zone; `None`
/// when the line has none, and then the rule cannot tell the caller's time).
pub fn caller_zone<'a>(
    facts: &'a CallFacts,
    fallback: Option<&'a str>,
) -> (Option<&'a str>, ZoneChoice) {
    zone_for(facts.ani_geo.as_ref(), fallback)
}

/// [`caller_zone`] of a number's geography.
pub fn zone_for<'a>(
    geo: Option<&'a GeoInfo>,
    fallback: Option<&'a str>,
) -> (Option<&'a str>, ZoneChoice) {
    match geo.map_or(0, |g| g.zones().count()) {
        0 => (fallback, ZoneChoice::None),
        1 => (geo.and_then(GeoInfo::time_zone), ZoneChoice::Caller),
        n => (fallback, ZoneChoice::Several(n)),
    }
}

/// Why the embedded table did not load (a build defect, reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("geography table: {0}")]
    Io(#[from] std::io::Error),
    #[error("geography table line {line}: {what}")]
    Format { line: usize, what: &'static str },
}

/// FxHash-style hasher: keys are already well-mixed integers.
#[derive(Default, Clone, Copy, Debug)]
struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type IntMap = HashMap<u64, u32, BuildHasherDefault<IntHasher>>;

/// The indexed table.
#[derive(Debug)]
pub struct Geography {
    strings: Vec<Arc<str>>,
    /// The ISO 3166-2 subdivision of each string, where it names one.
    subdivisions: Vec<Option<Arc<str>>>,
    geo: IntMap,
    tz: IntMap,
    max_len: usize,
    /// The libphonenumber release in the header.
    version: String,
}

/// A prefix as a key: its value and its length (leading zeros matter in a prefix).
fn key(value: u64, len: usize) -> u64 {
    (value << 4) | (len as u64 & 0xf)
}

impl Geography {
    /// Decompresses and indexes the embedded table (≈ 100 ms): at start-up.
    pub fn load() -> Result<Self, GeoError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(DATA).read_to_string(&mut text)?;
        let mut g = Self {
            strings: Vec::with_capacity(40_000),
            subdivisions: Vec::with_capacity(40_000),
            geo: IntMap::default(),
            tz: IntMap::default(),
            max_len: 0,
            version: String::new(),
        };
        g.geo.reserve(290_000);
        for (i, line) in text.lines().enumerate() {
            let bad = |what| GeoError::Format { line: i + 1, what };
            let mut parts = line.split('\t');
            match parts.next() {
                Some("S") => {
                    g.strings
                        .push(parts.next().ok_or_else(|| bad("string"))?.into());
                    g.subdivisions
                        .push(parts.next().filter(|s| !s.is_empty()).map(Arc::from));
                }
                Some(kind @ ("G" | "T")) => {
                    let prefix = parts.next().ok_or_else(|| bad("prefix"))?;
                    let idx: u32 = parts
                        .next()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad("index"))?;
                    if prefix.is_empty()
                        || prefix.len() > 15
                        || usize::try_from(idx).map_or(true, |i| i >= g.strings.len())
                    {
                        return Err(bad("prefix or index out of range"));
                    }
                    let value: u64 = prefix.parse().map_err(|_| bad("prefix digits"))?;
                    g.max_len = g.max_len.max(prefix.len());
                    let map = if kind == "G" { &mut g.geo } else { &mut g.tz };
                    map.insert(key(value, prefix.len()), idx);
                }
                Some(c) if c.starts_with('#') && g.version.is_empty() => {
                    g.version = line
                        .split_once("phonenumbers ")
                        .and_then(|(_, v)| v.split_whitespace().next())
                        .unwrap_or_default()
                        .to_owned();
                }
                _ => {}
            }
        }
        Ok(g)
    }

    /// The longest prefix of `digits` (at most `n` of them) in `map`: string index and length.
    fn longest(&self, map: &IntMap, digits: &[u8]) -> Option<(usize, usize)> {
        let n = digits.len().min(self.max_len);
        let mut prefixes = [0u64; 16];
        let mut v = 0u64;
        for (i, d) in digits.iter().take(n).enumerate() {
            v = v * 10 + u64::from(d.wrapping_sub(b'0') % 10);
            if let Some(slot) = prefixes.get_mut(i + 1) {
                *slot = v;
            }
        }
        (1..=n).rev().find_map(|len| {
            let idx = map.get(&key(*prefixes.get(len)?, len))?;
            Some((usize::try_from(*idx).ok()?, len))
        })
    }

    fn string(&self, i: usize) -> Option<Arc<str>> {
        self.strings.get(i).cloned()
    }

    /// The most specific description and time zones of a number's prefix, whatever the
    /// number's validity or type (the raw table; calls use [`Geography::locate`]).
    pub fn lookup(&self, number: &E164) -> GeoInfo {
        let digits = number.digit_bytes();
        let geo = self.longest(&self.geo, digits);
        GeoInfo {
            description: geo.and_then(|(i, _)| self.string(i)),
            description_prefix: geo.map_or(0, |(_, l)| u8::try_from(l).unwrap_or(0)),
            time_zones: self
                .longest(&self.tz, digits)
                .and_then(|(i, _)| self.string(i)),
            subdivision: geo.and_then(|(i, _)| self.subdivisions.get(i).cloned().flatten()),
        }
    }

    /// The number's geography as libphonenumber's geocoder and time-zone mapper give it
    /// (`description_for_number`, `time_zones_for_number`): `None` for an invalid number; the
    /// country's name and zones for a non-geographic type; else the most specific prefix's.
    pub fn locate(
        &self,
        number: &E164,
        info: &NumberInfo,
        classifier: &Classifier,
    ) -> Option<GeoInfo> {
        if !info.valid {
            return None;
        }
        let digits = number.digit_bytes();
        let cc_len = info.calling_code.to_string().len();
        let country = || -> Option<Arc<str>> {
            // `country_name_for_number`: the one region of the code where the number is valid.
            let regions = classifier.valid_regions(number);
            match regions.as_slice() {
                [only] => classifier.country_name(only).map(Arc::from),
                _ => None,
            }
        };
        if !classifier.is_geographic(info.kind, info.calling_code) {
            let cc = digits.get(..cc_len)?;
            return Some(GeoInfo {
                description: country(),
                description_prefix: 0,
                time_zones: self.longest(&self.tz, cc).and_then(|(i, _)| self.string(i)),
                subdivision: None,
            });
        }
        // Argentina's mobile token (the 9 after +54) is not part of the area code.
        let mut shifted = [0u8; 15];
        let geo_digits = match (info.calling_code, digits.get(cc_len)) {
            (54, Some(b'9')) => {
                let (head, tail) = (digits.get(..cc_len)?, digits.get(cc_len + 1..)?);
                let n = head.len() + tail.len();
                let out = shifted.get_mut(..n)?;
                let (a, b) = out.split_at_mut(head.len());
                a.copy_from_slice(head);
                b.copy_from_slice(tail);
                shifted.get(..n)?
            }
            _ => digits,
        };
        let geo = self.longest(&self.geo, geo_digits);
        let (description, description_prefix, subdivision) = match geo {
            Some((i, l)) => (
                self.string(i),
                u8::try_from(l).unwrap_or(0),
                self.subdivisions.get(i).cloned().flatten(),
            ),
            None => (country(), 0, None),
        };
        Some(GeoInfo {
            description,
            description_prefix,
            time_zones: self
                .longest(&self.tz, digits)
                .and_then(|(i, _)| self.string(i)),
            subdivision,
        })
    }

    /// The release named in the table's header ("9.0.43").
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Entries and an estimate of the heap the index uses, for the start-up log and the docs.
    pub fn stats(&self) -> (usize, usize, usize) {
        let strings: usize = self.strings.iter().map(|s| s.len() + 16).sum();
        let maps = (self.geo.capacity() + self.tz.capacity()) * (8 + 4 + 1);
        (self.geo.len(), self.tz.len(), strings + maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let g = Geography::load().expect("table");
        let e = |d: &str| E164::from_digits(d).expect("digits");
        let jc = g.lookup(&e("12012001234"));
        assert_eq!(jc.description.as_deref(), Some("Jersey City, NJ"));
        assert_eq!(jc.description_prefix, 7);
        assert_eq!(jc.time_zone(), Some("America/New_York"));
        let nj = g.lookup(&e("12019999999"));
        assert!(
            nj.description
                .as_deref()
                .is_some_and(|d| d.contains("NJ") || d.contains("New Jersey")),
            "{nj:?}"
        );
        assert_eq!(
            g.lookup(&e("442072601815")).description.as_deref(),
            Some("London")
        );
        assert_eq!(
            g.lookup(&e("4930123456")).description.as_deref(),
            Some("Berlin")
        );
        assert_eq!(
            g.lookup(&e("14155550123")).time_zone(),
            Some("America/Los_Angeles")
        );
        let (geo, tz, bytes) = g.stats();
        assert!(
            geo > 250_000 && tz > 3_000 && bytes > 1_000_000,
            "{geo} {tz} {bytes}"
        );
    }
}
