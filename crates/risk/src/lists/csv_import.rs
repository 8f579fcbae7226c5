//! CSV for `tollgate list import` and `show`:
//! `list,number_or_prefix,reason,who,expires_at[,added_at]`, times in unix seconds, empty
//! `expires_at` for never. `show` writes the same columns, so its output imports back.

use std::time::SystemTime;

use super::{ListEntry, ListKind};
use crate::error::RiskError;
use crate::unix_secs;

const HEADER: [&str; 6] = [
    "list",
    "number_or_prefix",
    "reason",
    "who",
    "expires_at",
    "added_at",
];

/// Parses every line; any bad line rejects the whole file (with every bad line listed), so an
/// import is all or nothing. An optional header line and `#` comments are skipped; an empty
/// `who` becomes `default_who`, a missing `added_at` becomes `now`.
pub fn parse_csv(
    input: impl std::io::Read,
    default_who: &str,
    now: SystemTime,
) -> Result<Vec<ListEntry>, RiskError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 1, |p| usize::try_from(p.line()).unwrap_or(i + 1));
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push((line, e.to_string()));
                continue;
            }
        };
        if i == 0 && record.get(0) == Some("list") {
            continue;
        }
        match parse_record(&record, default_who, now) {
            Ok(e) => entries.push(e),
            Err(e) => errors.push((line, e)),
        }
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(RiskError::Import(errors))
    }
}

fn parse_record(
    r: &csv::StringRecord,
    default_who: &str,
    now: SystemTime,
) -> Result<ListEntry, String> {
    if !(4..=6).contains(&r.len()) {
        return Err(format!(
            "expected list,number_or_prefix,reason,who,expires_at[,added_at]; got {} fields",
            r.len()
        ));
    }
    let field = |i: usize| r.get(i).unwrap_or("");
    let list: ListKind = field(0).parse().map_err(|e: RiskError| e.to_string())?;
    let time = |i: usize, name: &str| -> Result<Option<u64>, String> {
        match field(i) {
            "" => Ok(None),
            s => s
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name} {s:?} is not unix seconds")),
        }
    };
    let expires_at = time(4, "expires_at")?;
    let added_at = time(5, "added_at")?.unwrap_or_else(|| unix_secs(now));
    let who = match field(3) {
        "" => default_who,
        w => w,
    };
    let mut e = ListEntry::new(list, field(1), field(2), who, now, expires_at)
        .map_err(|e| e.to_string())?;
    e.added_at = added_at;
    Ok(e)
}

/// Writes entries as CSV with a header line (the format [`parse_csv`] reads).
pub fn write_csv(entries: &[ListEntry], out: impl std::io::Write) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    for e in entries {
        w.write_record([
            e.list.as_str(),
            &e.pattern.to_string(),
            &e.reason,
            &e.who,
            &e.expires_at.map(|t| t.to_string()).unwrap_or_default(),
            &e.added_at.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::Pattern;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn imports_with_header_quotes_and_defaults() {
        let csv = "list,number_or_prefix,reason,who,expires_at\n\
                   # robocall campaign\n\
                   block,+12125551212,\"spoofed, reported\",alice,\n\
                   gray,1646*,new range,,1800000000\n";
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let entries = parse_csv(csv.as_bytes(), "import", now).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].reason, "spoofed, reported");
        assert_eq!(entries[0].added_at, 1_700_000_000);
        assert_eq!(entries[1].who, "import");
        assert_eq!(entries[1].pattern, Pattern::Prefix("1646".into()));
        assert_eq!(entries[1].expires_at, Some(1_800_000_000));
    }

    #[test]
    fn one_bad_line_rejects_all_and_names_each() {
        let csv = "block,12125551212,r,a,\nblack,1,r,a,\nblock,0800,r,a,\nallow,1,r,a,soon\n";
        match parse_csv(csv.as_bytes(), "x", UNIX_EPOCH) {
            Err(RiskError::Import(errs)) => {
                let lines: Vec<usize> = errs.iter().map(|(l, _)| *l).collect();
                assert_eq!(lines, vec![2, 3, 4], "{errs:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn show_output_imports_back() {
        let now = UNIX_EPOCH + Duration::from_secs(5);
        let entries = vec![
            ListEntry::new(
                ListKind::Allow,
                "4420*",
                "vip, \"gold\"",
                "bob",
                now,
                Some(9),
            )
            .unwrap(),
            ListEntry::new(ListKind::Block, "12125551212", "fraud", "eve", now, None).unwrap(),
        ];
        let mut out = Vec::new();
        write_csv(&entries, &mut out).unwrap();
        let back = parse_csv(out.as_slice(), "x", UNIX_EPOCH).unwrap();
        assert_eq!(back, entries);
    }
}
