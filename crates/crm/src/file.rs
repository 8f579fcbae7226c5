//! The embedded directory: a CSV or JSON file in memory, swapped whole when the file changes.
//!
//! # CSV
//!
//! A header row names the columns, in any order; `ani` and `customer_id` are required:
//!
//! ```text
//! ani,customer_id,name,company,tier,language,tags,open_cases,last_agent,last_queue,segment
//! +4930123456,C-1001,Jonas Weber,Weber Logistik GmbH,gold,de,vip;logistics,2,agent-17,support-de,smb
//! ```
//!
//! `ani` is `+` and the E.164 digits (spaces, dashes, dots and parentheses are ignored), or a
//! national number when `file.region` is set. `tags` are separated by `;` (or `,` inside a quoted
//! field). `open_cases` is a non-negative integer. Empty cells are absent fields. Every other
//! column is an attribute named by its header. Lines starting with `#` are comments.
//!
//! # JSON
//!
//! An array of objects with the same field names; `tags` is an array of strings and extra
//! fields go in an `attributes` object:
//!
//! ```json
//! [{"ani": "+12125550100", "customer_id": "C-2001", "tags": ["vip"], "attributes": {"segment": "enterprise"}}]
//! ```
//!
//! A bad file (at start-up or on reload) is reported with its line, column and field; on reload
//! the old data stays live.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tollgate_core::{CallerProfile, NumberPlan, RegionPlan, E164};

use crate::config::{FileConfig, FileFormat};
use crate::error::{FileError, FileProblem};
use crate::mapping::split_tags;
use crate::{BoxFuture, Directory, LookupError};

/// Bad files are reported with this many problems at most.
const MAX_PROBLEMS: usize = 50;

type Profiles = HashMap<String, CallerProfile>;

/// The embedded directory (cheap to clone: clones share the data and the watcher).
#[derive(Clone, Debug)]
pub struct FileDirectory {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    format: FileFormat,
    numbers: Numbers,
    data: ArcSwap<Profiles>,
    /// The (mtime, length) last loaded or rejected, so an unchanged bad file is not re-read.
    seen: Mutex<Option<(SystemTime, u64)>>,
    last_error: Mutex<Option<LookupError>>,
}

/// How the file's numbers become E.164.
#[derive(Debug)]
enum Numbers {
    PlusOnly,
    Region(Arc<NumberPlan>, RegionPlan),
}

impl Numbers {
    fn normalize(&self, raw: &str) -> Option<E164> {
        match self {
            Numbers::PlusOnly => {
                let rest = raw.trim().strip_prefix('+')?;
                let digits: String = rest
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
                    .collect();
                E164::from_digits(&digits)
            }
            Numbers::Region(plan, region) => plan.normalize(raw, region, None).e164().cloned(),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Numbers::PlusOnly => "write it as + and the E.164 digits, or set crm.file.region",
            Numbers::Region(..) => "expected an E.164 or national number",
        }
    }
}

impl FileDirectory {
    /// Loads the file (any problem is an error here) and, if `poll_ms` > 0, starts a watcher
    /// thread that reloads it when its modification time or size changes. The thread ends when
    /// the last clone is dropped. `plan` is required when `cfg.region` is set.
    pub fn open(
        cfg: &FileConfig,
        base_dir: &Path,
        plan: Option<Arc<NumberPlan>>,
    ) -> Result<Self, LookupError> {
        let path = base_dir.join(&cfg.path);
        let format = cfg.format.unwrap_or_else(|| {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                FileFormat::Json
            } else {
                FileFormat::Csv
            }
        });
        let numbers = match (&cfg.region, plan) {
            (None, _) => Numbers::PlusOnly,
            (Some(region), Some(plan)) => {
                let rp = plan
                    .region(region)
                    .map_err(|e| LookupError::config("crm.file.region", e.to_string()))?
                    .clone();
                Numbers::Region(plan, rp)
            }
            (Some(_), None) => {
                return Err(LookupError::config(
                    "crm.file.region",
                    "a region needs the numbering plan (FileDirectory::open got none)",
                ))
            }
        };
        let shared = Arc::new(Shared {
            path,
            format,
            numbers,
            data: ArcSwap::from_pointee(Profiles::new()),
            seen: Mutex::new(None),
            last_error: Mutex::new(None),
        });
        shared.reload()?;
        if cfg.poll_ms > 0 {
            watch(Arc::downgrade(&shared), Duration::from_millis(cfg.poll_ms))?;
        }
        Ok(Self { shared })
    }

    /// Re-reads the file now; on error the old data stays live. Returns the record count.
    pub fn reload(&self) -> Result<usize, LookupError> {
        self.shared.reload()
    }

    /// The last reload's error, until a reload succeeds.
    pub fn last_error(&self) -> Option<LookupError> {
        lock(&self.shared.last_error).clone()
    }

    pub fn len(&self) -> usize {
        self.shared.data.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The profile for this number, from memory.
    pub fn get(&self, ani: &E164) -> Option<CallerProfile> {
        self.shared.data.load().get(ani.digits()).cloned()
    }
}

impl Directory for FileDirectory {
    fn find<'a>(
        &'a self,
        ani: &'a E164,
    ) -> BoxFuture<'a, Result<Option<CallerProfile>, LookupError>> {
        Box::pin(std::future::ready(Ok(self.get(ani))))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the data is still whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A plain thread, not a task: parsing a large file must not stall the runtime's workers,
/// and the watcher then needs no runtime at all.
fn watch(shared: Weak<Shared>, every: Duration) -> Result<(), LookupError> {
    std::thread::Builder::new()
        .name("crm-directory".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(shared) = shared.upgrade() else {
                break;
            };
            let now = stamp(&shared.path);
            if now != *lock(&shared.seen) {
                // Errors are logged and kept for last_error(); the old data stays.
                let _ = shared.reload();
            }
        })
        .map(drop)
        .map_err(|e| LookupError::Internal(format!("cannot start the directory watcher: {e}")))
}

impl Shared {
    fn reload(&self) -> Result<usize, LookupError> {
        let before = stamp(&self.path);
        *lock(&self.seen) = before;
        let result = std::fs::read_to_string(&self.path)
            .map_err(|e| vec![problem(None, None, None, format!("cannot read: {e}"))])
            .and_then(|text| match self.format {
                FileFormat::Csv => parse_csv(&text, &self.numbers),
                FileFormat::Json => parse_json(&text, &self.numbers),
            })
            .map_err(|problems| {
                LookupError::File(FileError {
                    path: self.path.clone(),
                    problems,
                })
            });
        match result {
            Ok(profiles) => {
                let n = profiles.len();
                self.data.store(Arc::new(profiles));
                *lock(&self.last_error) = None;
                tracing::info!(target: "tollgate::crm", path = %self.path.display(), records = n, "directory loaded");
                metrics::counter!("tollgate_crm_reload_total", "result" => "ok").increment(1);
                metrics::gauge!("tollgate_crm_directory_records").set(n as f64);
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(target: "tollgate::crm", error = %e, "directory not reloaded; the previous data stays live");
                metrics::counter!("tollgate_crm_reload_total", "result" => "error").increment(1);
                *lock(&self.last_error) = Some(e.clone());
                Err(e)
            }
        }
    }
}

fn problem(
    line: Option<u64>,
    column: Option<u64>,
    field: Option<&str>,
    message: impl Into<String>,
) -> FileProblem {
    FileProblem {
        line,
        column,
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// Adds a profile, or reports the duplicate; `lines` remembers where each number was.
fn add(
    profiles: &mut Profiles,
    lines: &mut HashMap<String, Option<u64>>,
    problems: &mut Vec<FileProblem>,
    ani: E164,
    profile: CallerProfile,
    line: Option<u64>,
) {
    let digits = ani.digits().to_owned();
    if let Some(first) = lines.get(&digits) {
        let at = first.map_or(String::new(), |l| format!(" (line {l})"));
        problems.push(problem(
            line,
            None,
            Some("ani"),
            format!("{ani} is listed twice{at}"),
        ));
        return;
    }
    lines.insert(digits.clone(), line);
    profiles.insert(digits, profile);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Ani,
    CustomerId,
    Name,
    Company,
    Tier,
    Language,
    Tags,
    OpenCases,
    LastAgent,
    LastQueue,
    Attribute,
}

fn column(name: &str) -> Column {
    match name.to_ascii_lowercase().as_str() {
        "ani" => Column::Ani,
        "customer_id" => Column::CustomerId,
        "name" => Column::Name,
        "company" => Column::Company,
        "tier" => Column::Tier,
        "language" => Column::Language,
        "tags" => Column::Tags,
        "open_cases" => Column::OpenCases,
        "last_agent" => Column::LastAgent,
        "last_queue" => Column::LastQueue,
        _ => Column::Attribute,
    }
}

fn parse_csv(text: &str, numbers: &Numbers) -> Result<Profiles, Vec<FileProblem>> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| vec![csv_problem(&e)])?.clone();
    let header_line = headers.position().map(|p| p.line());
    let mut problems = Vec::new();
    let columns: Vec<(Column, &str)> = headers.iter().map(|h| (column(h), h)).collect();
    for (i, (kind, name)) in columns.iter().enumerate() {
        let col = Some(i as u64 + 1);
        if name.is_empty() {
            problems.push(problem(header_line, col, None, "empty column name"));
        } else if columns
            .iter()
            .take(i)
            .any(|(k, n)| n.eq_ignore_ascii_case(name) || (*k != Column::Attribute && k == kind))
        {
            problems.push(problem(
                header_line,
                col,
                Some(name),
                "column appears twice",
            ));
        }
    }
    for required in [Column::Ani, Column::CustomerId] {
        if !columns.iter().any(|(k, _)| *k == required) {
            let name = if required == Column::Ani {
                "ani"
            } else {
                "customer_id"
            };
            problems.push(problem(
                header_line,
                None,
                Some(name),
                "required column is missing",
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut profiles = Profiles::new();
    let mut lines = HashMap::new();
    for record in reader.records() {
        if problems.len() >= MAX_PROBLEMS {
            problems.push(problem(
                None,
                None,
                None,
                "too many problems; stopped reading",
            ));
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(csv_problem(&e));
                continue;
            }
        };
        let line = record.position().map(|p| p.line());
        let mut ani = None;
        let mut profile = CallerProfile::default();
        let mut ok = true;
        for (i, ((kind, name), value)) in columns.iter().zip(record.iter()).enumerate() {
            let col = Some(i as u64 + 1);
            let text = (!value.is_empty()).then(|| value.to_owned());
            match kind {
                Column::Ani => match numbers.normalize(value) {
                    Some(n) => ani = Some(n),
                    None => {
                        problems.push(problem(
                            line,
                            col,
                            Some(name),
                            format!("{value:?} is not a usable number: {}", numbers.hint()),
                        ));
                        ok = false;
                    }
                },
                Column::CustomerId => match text {
                    Some(id) => profile.customer_id = id,
                    None => {
                        problems.push(problem(line, col, Some(name), "required, but empty"));
                        ok = false;
                    }
                },
                Column::Name => profile.name = text,
                Column::Company => profile.company = text,
                Column::Tier => profile.tier = text,
                Column::Language => profile.language = text,
                Column::Tags => profile.tags = split_tags(value),
                Column::OpenCases => match value.parse::<u32>() {
                    _ if value.is_empty() => {}
                    Ok(n) => profile.open_cases = Some(n),
                    Err(_) => {
                        problems.push(problem(
                            line,
                            col,
                            Some(name),
                            format!("{value:?} is not a non-negative integer"),
                        ));
                        ok = false;
                    }
                },
                Column::LastAgent => profile.last_agent = text,
                Column::LastQueue => profile.last_queue = text,
                Column::Attribute => {
                    if let Some(v) = text {
                        profile.attributes.insert((*name).to_owned(), v);
                    }
                }
            }
        }
        if let (true, Some(ani)) = (ok, ani) {
            add(&mut profiles, &mut lines, &mut problems, ani, profile, line);
        }
    }
    if problems.is_empty() {
        Ok(profiles)
    } else {
        Err(problems)
    }
}

fn csv_problem(e: &csv::Error) -> FileProblem {
    let line = e.position().map(|p| p.line());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields, but the header has {expected_len}"),
        _ => e.to_string(),
    };
    problem(line, None, None, message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    ani: String,
    customer_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    company: Option<String>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    open_cases: Option<u32>,
    #[serde(default)]
    last_agent: Option<String>,
    #[serde(default)]
    last_queue: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, serde_json::Value>,
}

fn parse_json(text: &str, numbers: &Numbers) -> Result<Profiles, Vec<FileProblem>> {
    let json_problem = |e: &serde_json::Error, base: (u64, u64)| {
        let line = base.0 + e.line() as u64 - 1;
        let column = if e.line() == 1 {
            base.1 + e.column() as u64 - 1
        } else {
            e.column() as u64
        };
        // serde_json appends " at line L column C" relative to the fragment: drop it.
        let message = e.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_owned();
        problem(Some(line), Some(column), None, message)
    };
    let records: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|e| vec![json_problem(&e, (1, 1))])?;
    let mut profiles = Profiles::new();
    let mut lines = HashMap::new();
    let mut problems = Vec::new();
    for raw in records {
        if problems.len() >= MAX_PROBLEMS {
            problems.push(problem(
                None,
                None,
                None,
                "too many problems; stopped reading",
            ));
            break;
        }
        let base = position(text, raw.get());
        let line = Some(base.0);
        let row: JsonRow = match serde_json::from_str(raw.get()) {
            Ok(r) => r,
            Err(e) => {
                problems.push(json_problem(&e, base));
                continue;
            }
        };
        let Some(ani) = numbers.normalize(&row.ani) else {
            problems.push(problem(
                line,
                None,
                Some("ani"),
                format!("{:?} is not a usable number: {}", row.ani, numbers.hint()),
            ));
            continue;
        };
        if row.customer_id.trim().is_empty() {
            problems.push(problem(
                line,
                None,
                Some("customer_id"),
                "required, but empty",
            ));
            continue;
        }
        let blank = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        let attributes = row
            .attributes
            .into_iter()
            .filter_map(|(k, v)| {
                let text = match v {
                    serde_json::Value::Null => return None,
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                Some((k, text))
            })
            .collect();
        let profile = CallerProfile {
            customer_id: row.customer_id,
            name: blank(row.name),
            company: blank(row.company),
            tier: blank(row.tier),
            language: blank(row.language),
            tags: row.tags,
            open_cases: row.open_cases,
            last_agent: blank(row.last_agent),
            last_queue: blank(row.last_queue),
            attributes,
        };
        add(&mut profiles, &mut lines, &mut problems, ani, profile, line);
    }
    if problems.is_empty() {
        Ok(profiles)
    } else {
        Err(problems)
    }
}

/// 1-based line and column where `fragment` (a slice of `text`) starts.
fn position(text: &str, fragment: &str) -> (u64, u64) {
    let offset = (fragment.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let before = text.get(..offset).unwrap_or_default();
    let line = before.bytes().filter(|&b| b == b'\n').count() as u64 + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1) as u64
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_and_attributes() {
        let text = "# comment\nani,customer_id,name,tags,open_cases,segment\n\
                    +49 30 123456,C-1,Jonas,vip;de,2,smb\n+1 (212) 555-0100,C-2,,,,\n";
        let p = parse_csv(text, &Numbers::PlusOnly).unwrap();
        let jonas = p.get("4930123456").unwrap();
        assert_eq!(jonas.tags, ["vip", "de"]);
        assert_eq!(jonas.open_cases, Some(2));
        assert_eq!(
            jonas.attributes.get("segment").map(String::as_str),
            Some("smb")
        );
        let other = p.get("12125550100").unwrap();
        assert_eq!(other.name, None);
        assert!(other.attributes.is_empty());
    }

    #[test]
    fn csv_problems_have_line_and_column() {
        let text = "ani,customer_id,open_cases\n+4930123456,C-1,1\n030123456,C-2,x\n+4930123456,C-3,\n+1,C-4\n";
        let problems = parse_csv(text, &Numbers::PlusOnly).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("line 3, column 1: ani:")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("line 3, column 3: open_cases:")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains("line 4") && s.contains("twice (line 2)")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("line 5") && s.contains("2 fields")),
            "{shown:?}"
        );
    }

    #[test]
    fn csv_requires_key_columns() {
        let problems = parse_csv("name,tier\nx,y\n", &Numbers::PlusOnly).unwrap_err();
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn json_records_and_lines() {
        let text = "[\n  {\"ani\": \"+12125550100\", \"customer_id\": \"C-2\", \"tags\": [\"vip\"],\n   \"attributes\": {\"segment\": \"ent\", \"seats\": 40}},\n  {\"ani\": \"12\", \"customer_id\": \"C-3\"},\n  {\"ani\": \"+4930123456\", \"customer_id\": \"C-4\", \"tier\": 3}\n]\n";
        let problems = parse_json(text, &Numbers::PlusOnly).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            shown.iter().any(|s| s.starts_with("line 4: ani:")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.starts_with("line 5, column") && s.contains("invalid type")),
            "{shown:?}"
        );
        let good = "[{\"ani\": \"+12125550100\", \"customer_id\": \"C-2\", \"attributes\": {\"seats\": 40}}]";
        let p = parse_json(good, &Numbers::PlusOnly).unwrap();
        assert_eq!(
            p.get("12125550100")
                .unwrap()
                .attributes
                .get("seats")
                .map(String::as_str),
            Some("40")
        );
    }

    #[test]
    fn region_numbers() {
        let plan = Arc::new(NumberPlan::load());
        let us = plan.region("US").unwrap().clone();
        let n = Numbers::Region(plan, us);
        assert_eq!(
            n.normalize("(212) 555-0100").unwrap().digits(),
            "12125550100"
        );
        assert_eq!(n.normalize("+4930123456").unwrap().digits(), "4930123456");
        assert!(n.normalize("555").is_none());
    }
}
