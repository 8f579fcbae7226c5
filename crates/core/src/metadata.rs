//! libphonenumber's numbering metadata, as `tools/gen_data.py` exports it from one release
//! (`data/metadata.txt.gz`; the release is [`VERSION`]'s line in that file). Read once at
//! start-up by the classifier, which compiles it; nothing here runs per call.

use std::io::Read;

static DATA: &[u8] = include_bytes!("../data/metadata.txt.gz");

/// Pattern kinds in the order of the `D` lines' type names.
pub(crate) const TYPE_NAMES: [&str; 11] = [
    "general",
    "fixed",
    "mobile",
    "toll_free",
    "premium",
    "shared_cost",
    "voip",
    "personal",
    "pager",
    "uan",
    "voicemail",
];

/// One number type's pattern and lengths (libphonenumber's `PhoneNumberDesc`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Desc {
    pub pattern: String,
    pub lengths: Vec<u8>,
    pub local_lengths: Vec<u8>,
}

/// One region's (or non-geographic entity's) metadata.
#[derive(Clone, Debug, Default)]
pub(crate) struct RegionMeta {
    pub id: String,
    pub country_code: u16,
    pub international_prefix: String,
    pub preferred_international_prefix: String,
    pub national_prefix: String,
    pub national_prefix_for_parsing: String,
    pub national_prefix_transform_rule: String,
    pub leading_digits: String,
    /// English country name (libphonenumber's geocoder), empty for "001".
    pub name: String,
    /// Indexed as [`TYPE_NAMES`].
    pub descs: [Option<Desc>; 11],
}

/// The whole file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Metadata {
    pub version: String,
    /// Calling code -> region ids, main region first (libphonenumber's order).
    pub code_regions: Vec<(u16, Vec<String>)>,
    /// Calling codes whose mobile numbers are geographic (`_GEO_MOBILE_COUNTRIES`).
    pub geo_mobile: Vec<u16>,
    pub regions: Vec<RegionMeta>,
}

/// Why the embedded metadata did not load (a build defect, reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("numbering metadata: {0}")]
    Io(#[from] std::io::Error),
    #[error("numbering metadata line {line}: {what}")]
    Format { line: usize, what: &'static str },
}

fn lengths(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.split(',').filter_map(|x| x.parse().ok()).collect();
    v.sort_unstable();
    v
}

impl Metadata {
    pub(crate) fn load() -> Result<Self, MetadataError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(DATA).read_to_string(&mut text)?;
        let mut m = Metadata::default();
        for (i, line) in text.lines().enumerate() {
            let bad = |what| MetadataError::Format { line: i + 1, what };
            let f: Vec<&str> = line.split('\t').collect();
            let field = |n: usize| f.get(n).copied().unwrap_or_default().to_owned();
            match f.first().copied() {
                Some("V") => m.version = field(1),
                Some("C") => {
                    let cc = field(1).parse().map_err(|_| bad("calling code"))?;
                    let regions = field(2).split(',').map(str::to_owned).collect();
                    m.code_regions.push((cc, regions));
                }
                Some("M") => {
                    m.geo_mobile = field(1).split(',').filter_map(|c| c.parse().ok()).collect()
                }
                Some("R") => m.regions.push(RegionMeta {
                    id: field(1),
                    country_code: field(2).parse().map_err(|_| bad("calling code"))?,
                    international_prefix: field(3),
                    preferred_international_prefix: field(4),
                    national_prefix: field(5),
                    national_prefix_for_parsing: field(6),
                    national_prefix_transform_rule: field(7),
                    leading_digits: field(8),
                    name: field(9),
                    descs: Default::default(),
                }),
                Some("D") => {
                    let region = m.regions.last_mut().ok_or_else(|| bad("D before R"))?;
                    let slot = TYPE_NAMES
                        .iter()
                        .position(|t| *t == field(1))
                        .and_then(|p| region.descs.get_mut(p))
                        .ok_or_else(|| bad("type"))?;
                    *slot = Some(Desc {
                        pattern: field(2),
                        lengths: lengths(&field(3)),
                        local_lengths: lengths(&field(4)),
                    });
                }
                _ => {}
            }
        }
        if m.version.is_empty() || m.regions.len() < 200 {
            return Err(MetadataError::Format {
                line: 0,
                what: "no version or too few regions",
            });
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_one_release() {
        let m = Metadata::load().expect("metadata");
        // The release is named once, in tools/gen_data.py; every file says which it came from.
        assert!(
            m.version.starts_with(|c: char| c.is_ascii_digit()),
            "{}",
            m.version
        );
        assert!(m.regions.len() > 240, "{}", m.regions.len());
        let kr = m.regions.iter().find(|r| r.id == "KR").expect("KR");
        assert!(kr.international_prefix.starts_with("00(?:"));
        let ar = m.regions.iter().find(|r| r.id == "AR").expect("AR");
        assert_eq!(ar.national_prefix_transform_rule, "9\\1");
        assert_eq!(
            m.code_regions
                .iter()
                .find(|c| c.0 == 1)
                .map(|c| c.1[0].as_str()),
            Some("US")
        );
    }
}
