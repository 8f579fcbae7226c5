//! Caller geography below the country: description and time zones per number prefix.
//!
//! The table is libphonenumber's geocoding and time-zone data (see `data/SOURCE.md`), embedded
//! gzipped and indexed once at start-up; a lookup is a longest-prefix match over at most 15
//! hash probes, no lock, no allocation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::sync::Arc;

use crate::number::E164;

static DATA: &[u8] = include_bytes!("../data/geo.txt.gz");

/// Geography of one number: the most specific description and time zones known for it.
/// Strings are shared with the table, so a lookup copies two pointers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// City, state or region ("Jersey City, NJ", "New Jersey", "London"); may be the country.
    pub description: Option<Arc<str>>,
    /// The prefix length the description came from (longer is more specific).
    pub description_prefix: u8,
    /// IANA time zones, "&"-separated when a prefix spans several ("America/New_York").
    pub time_zones: Option<Arc<str>>,
}

impl GeoInfo {
    /// The first time zone, for business-hours rules.
    pub fn time_zone(&self) -> Option<&str> {
        self.time_zones.as_deref().and_then(|t| t.split('&').next())
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
    geo: IntMap,
    tz: IntMap,
    max_len: usize,
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
            geo: IntMap::default(),
            tz: IntMap::default(),
            max_len: 0,
        };
        g.geo.reserve(290_000);
        for (i, line) in text.lines().enumerate() {
            let bad = |what| GeoError::Format { line: i + 1, what };
            let mut parts = line.split('\t');
            match parts.next() {
                Some("S") => g
                    .strings
                    .push(parts.next().ok_or_else(|| bad("string"))?.into()),
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
                _ => {}
            }
        }
        Ok(g)
    }

    /// The most specific description and time zones for a number.
    pub fn lookup(&self, number: &E164) -> GeoInfo {
        let digits = number.digits().as_bytes();
        let n = digits.len().min(self.max_len);
        let mut prefixes = [0u64; 16];
        let mut v = 0u64;
        for (i, d) in digits.iter().take(n).enumerate() {
            v = v * 10 + u64::from(d - b'0');
            if let Some(slot) = prefixes.get_mut(i + 1) {
                *slot = v;
            }
        }
        let find = |map: &IntMap| {
            (1..=n).rev().find_map(|len| {
                let idx = map.get(&key(*prefixes.get(len)?, len))?;
                Some((self.strings.get(usize::try_from(*idx).ok()?)?, len))
            })
        };
        let geo = find(&self.geo);
        GeoInfo {
            description: geo.map(|(s, _)| Arc::clone(s)),
            description_prefix: geo.map_or(0, |(_, l)| u8::try_from(l).unwrap_or(0)),
            time_zones: find(&self.tz).map(|(s, _)| Arc::clone(s)),
        }
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
