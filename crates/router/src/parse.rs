//! Rule files → [`Rules`]: strict (unknown keys rejected), every error reported with file, line
//! and key, plus semantic checks (unknown queue, DNIS in two files, unreachable rules, no
//! catch-all). Pure: the server reads the files and hands their text here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;
use tollgate_core::{
    Attestation, CliPattern, CliVerdict, NumberKind, RiskLevel, SharedStr, Skills,
};
use toml::Spanned;

use crate::model::{Action, Cond, Hours, Matcher, QueueSpec, Rule, RuleNames, RuleSet, Rules};

/// One rule file's name (for errors) and text.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// Settings that come from the main config, not the rule files.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub acd_host: String,
    pub emergency_queue: Option<String>,
}

/// One problem in a rule file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}: {}", self.file, self.key, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.key, self.message),
        }
    }
}

/// File names with a meaning of their own in the rules directory.
pub const QUEUES_FILE: &str = "queues.toml";
pub const DEFAULT_FILE: &str = "default.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuesRaw {
    queues: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    name: Option<Spanned<String>>,
    dnis: Option<Spanned<Vec<String>>>,
    time_zone: Option<Spanned<String>>,
    overflow: Option<Spanned<String>>,
    hours: Option<Spanned<HoursRaw>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RuleRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoursRaw {
    mon: Option<String>,
    tue: Option<String>,
    wed: Option<String>,
    thu: Option<String>,
    fri: Option<String>,
    sat: Option<String>,
    sun: Option<String>,
    #[serde(default)]
    holidays: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRaw {
    name: Spanned<String>,
    when: Option<Spanned<WhenRaw>>,
    queue: Option<Spanned<toml::Value>>,
    verify: Option<Spanned<toml::Value>>,
    reject: Option<Spanned<toml::Value>>,
    /// "respect" (default) or "ignore".
    hours: Option<Spanned<String>>,
    overflow: Option<Spanned<String>>,
}

/// A value or a list of them.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    fn list(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WhenRaw {
    all: Option<Vec<WhenRaw>>,
    any: Option<Vec<WhenRaw>>,
    not: Option<Box<WhenRaw>>,
    ani: Option<OneOrMany<String>>,
    ani_prefix: Option<OneOrMany<String>>,
    ani_pattern: Option<OneOrMany<String>>,
    dnis: Option<OneOrMany<String>>,
    calling_code: Option<OneOrMany<u16>>,
    country: Option<OneOrMany<String>>,
    region: Option<OneOrMany<String>>,
    npa: Option<OneOrMany<u16>>,
    kind: Option<OneOrMany<String>>,
    valid: Option<bool>,
    cli: Option<OneOrMany<String>>,
    trusted: Option<bool>,
    verified: Option<bool>,
    withheld: Option<bool>,
    emergency: Option<bool>,
    crm: Option<bool>,
    tier: Option<OneOrMany<String>>,
    language: Option<OneOrMany<String>>,
    tag: Option<OneOrMany<String>>,
    open_cases_min: Option<u32>,
    open_cases_max: Option<u32>,
    attribute: Option<BTreeMap<String, String>>,
    risk: Option<OneOrMany<String>>,
    risk_at_least: Option<String>,
    list: Option<OneOrMany<String>>,
    attestation: Option<OneOrMany<String>>,
    repeat_within: Option<String>,
    last_queue: Option<OneOrMany<String>>,
    ani_ii: Option<OneOrMany<u16>>,
    cpc: Option<OneOrMany<String>>,
    open: Option<bool>,
    weekday: Option<OneOrMany<String>>,
    time: Option<OneOrMany<String>>,
    holiday: Option<bool>,
    caller_time: Option<OneOrMany<String>>,
}

struct Errs<'a> {
    file: &'a str,
    text: &'a str,
    list: &'a mut Vec<RuleError>,
}

impl Errs<'_> {
    fn at(
        &mut self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self
            .text
            .get(..span.start)
            .map(|t| t.matches('\n').count() + 1);
        self.list.push(RuleError {
            file: self.file.to_owned(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// "08:00-12:00, 13:00-17:30" → minute ranges.
pub(crate) fn ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let hm = |t: &str| -> Result<u16, String> {
        let (h, m) = t
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{t:?} is not HH:MM"))?;
        let (h, m): (u16, u16) = (
            h.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
            m.parse().map_err(|_| format!("{t:?} is not HH:MM"))?,
        );
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(format!("{t:?} is not a time of day"));
        }
        Ok(h * 60 + m)
    };
    s.split(',')
        .map(|r| {
            let (a, b) = r
                .split_once('-')
                .ok_or_else(|| format!("{r:?} is not HH:MM-HH:MM"))?;
            let (a, b) = (hm(a)?, hm(b)?);
            if a >= b {
                return Err(format!(
                    "{r:?} ends before it starts: split a range that crosses midnight in two days"
                ));
            }
            Ok((a, b))
        })
        .collect()
}

fn duration_secs(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 2h, 1d"))?;
    let mul = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?} is not a duration like 90s, 30m, 2h, 1d")),
    };
    Ok(n * mul)
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// The key a TOML/serde error is about, when its message names one ("unknown field `x`",
/// "missing field `x`", "duplicate key `x`"); else "toml". Lets an operator grep for the key.
/// TOML's empty key (`'' = 1`, "unknown field ``") is named as TOML writes it: `""`.
pub fn toml_key(message: &str) -> &str {
    ["unknown field `", "missing field `", "duplicate key `"]
        .iter()
        .find_map(|p| {
            message
                .split_once(p)
                .and_then(|(_, rest)| rest.split_once('`'))
        })
        .map_or("toml", |(key, _)| if key.is_empty() { "\"\"" } else { key })
}

/// E.164 (`+…`) or a short code → the digits a DNIS key holds.
fn number_key(s: &str) -> Option<String> {
    let d = s.strip_prefix('+').unwrap_or(s);
    let ok = !d.is_empty() && d.len() <= 15 && d.bytes().all(|b| b.is_ascii_digit());
    (ok && (s.starts_with('+') || d.len() <= 6)).then(|| d.to_owned())
}

fn when(raw: &WhenRaw, bad: &mut Vec<String>) -> Cond {
    let mut all = Vec::new();
    let strings = |v: &Option<OneOrMany<String>>| v.as_ref().map(OneOrMany::list);
    let mut push = |m: Matcher| all.push(Cond::M(m));
    if let Some(v) = strings(&raw.ani) {
        push(Matcher::Ani(
            v.iter()
                .filter_map(|n| {
                    number_key(n).filter(|_| n.starts_with('+')).or_else(|| {
                        bad.push(format!("ani {n:?} must be E.164 with +"));
                        None
                    })
                })
                .collect(),
        ));
    }
    if let Some(v) = strings(&raw.ani_prefix) {
        push(Matcher::AniPrefix(
            v.iter()
                .map(|p| p.trim_start_matches('+').to_owned())
                .collect(),
        ));
    }
    if let Some(v) = strings(&raw.ani_pattern) {
        push(Matcher::AniPattern(
            v.iter()
                .filter_map(|p| {
                    p.parse::<CliPattern>()
                        .map_err(|e| bad.push(e.to_string()))
                        .ok()
                })
                .collect(),
        ));
    }
    if let Some(v) = strings(&raw.dnis) {
        push(Matcher::Dnis(
            v.iter()
                .filter_map(|n| {
                    number_key(n).or_else(|| {
                        bad.push(format!("dnis {n:?} must be E.164 with + or a short code"));
                        None
                    })
                })
                .collect(),
        ));
    }
    if let Some(v) = &raw.calling_code {
        push(Matcher::CallingCode(v.list()));
    }
    if let Some(v) = strings(&raw.country) {
        for c in &v {
            if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                bad.push(format!(
                    "country {c:?} is not an ISO 3166 code like US or DE"
                ));
            }
        }
        push(Matcher::Country(v));
    }
    if let Some(v) = strings(&raw.region) {
        push(Matcher::Region(v));
    }
    if let Some(v) = &raw.npa {
        push(Matcher::Npa(v.list()));
    }
    if let Some(v) = strings(&raw.kind) {
        push(Matcher::Kind(
            v.iter()
                .filter_map(|k| {
                    NumberKind::from_name(k).or_else(|| {
                        bad.push(format!(
                            "kind {k:?}: expected one of {}",
                            NumberKind::ALL.map(NumberKind::as_str).join(", ")
                        ));
                        None
                    })
                })
                .collect(),
        ));
    }
    if let Some(b) = raw.valid {
        push(Matcher::Valid(b));
    }
    if let Some(v) = strings(&raw.cli) {
        let all = [
            CliVerdict::Valid,
            CliVerdict::Invalid,
            CliVerdict::Exempt,
            CliVerdict::Withheld,
        ];
        push(Matcher::Cli(
            v.iter()
                .filter_map(|c| {
                    all.into_iter().find(|x| x.as_str() == c).or_else(|| {
                        bad.push(format!(
                            "cli {c:?}: expected valid, invalid, exempt or withheld"
                        ));
                        None
                    })
                })
                .collect(),
        ));
    }
    for (flag, m) in [
        (raw.trusted, Matcher::Trusted as fn(bool) -> Matcher),
        (raw.verified, Matcher::Verified),
        (raw.withheld, Matcher::Withheld),
        (raw.emergency, Matcher::Emergency),
        (raw.crm, Matcher::Crm),
        (raw.open, Matcher::Open),
        (raw.holiday, Matcher::Holiday),
    ] {
        if let Some(b) = flag {
            push(m(b));
        }
    }
    if let Some(v) = strings(&raw.tier) {
        push(Matcher::Tier(v));
    }
    if let Some(v) = strings(&raw.language) {
        push(Matcher::Language(v));
    }
    if let Some(v) = strings(&raw.tag) {
        push(Matcher::Tag(v));
    }
    if raw.open_cases_min.is_some() || raw.open_cases_max.is_some() {
        push(Matcher::OpenCases {
            min: raw.open_cases_min,
            max: raw.open_cases_max,
        });
    }
    if let Some(a) = &raw.attribute {
        push(Matcher::Attribute(
            a.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ));
    }
    let level = |s: &str, bad: &mut Vec<String>| {
        RiskLevel::from_name(s).or_else(|| {
            bad.push(format!(
                "risk level {s:?}: expected low, elevated, high or blocked"
            ));
            None
        })
    };
    if let Some(v) = strings(&raw.risk) {
        push(Matcher::Risk(
            v.iter().filter_map(|l| level(l, bad)).collect(),
        ));
    }
    if let Some(l) = raw.risk_at_least.as_deref().and_then(|l| level(l, bad)) {
        push(Matcher::RiskAtLeast(l));
    }
    if let Some(v) = strings(&raw.list) {
        for l in &v {
            if !["block", "gray", "allow"].contains(&l.as_str()) {
                bad.push(format!("list {l:?}: expected block, gray or allow"));
            }
        }
        push(Matcher::List(v));
    }
    if let Some(v) = strings(&raw.attestation) {
        push(Matcher::Attestation(
            v.iter()
                .filter_map(|a| match a.as_str() {
                    "A" => Some(Some(Attestation::A)),
                    "B" => Some(Some(Attestation::B)),
                    "C" => Some(Some(Attestation::C)),
                    "none" => Some(None),
                    _ => {
                        bad.push(format!("attestation {a:?}: expected A, B, C or none"));
                        None
                    }
                })
                .collect(),
        ));
    }
    if let Some(d) = &raw.repeat_within {
        match duration_secs(d) {
            Ok(s) => push(Matcher::RepeatWithin(s)),
            Err(e) => bad.push(e),
        }
    }
    if let Some(v) = strings(&raw.last_queue) {
        push(Matcher::LastQueue(v));
    }
    if let Some(v) = &raw.ani_ii {
        let v = v.list();
        for d in &v {
            if *d > 99 {
                bad.push(format!("ani_ii {d}: ANI II digits are two digits, 0-99"));
            }
        }
        push(Matcher::AniIi(v));
    }
    if let Some(v) = strings(&raw.cpc) {
        for c in &v {
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                bad.push(format!(
                    "cpc {c:?}: expected a calling party category such as payphone or operator"
                ));
            }
        }
        push(Matcher::Cpc(v));
    }
    if let Some(v) = strings(&raw.weekday) {
        push(Matcher::Weekday(
            v.iter()
                .filter_map(|d| {
                    weekday(d).or_else(|| {
                        bad.push(format!("weekday {d:?}: expected mon..sun"));
                        None
                    })
                })
                .collect(),
        ));
    }
    for (v, caller) in [
        (strings(&raw.time), false),
        (strings(&raw.caller_time), true),
    ] {
        if let Some(v) = v {
            let mut rs = Vec::new();
            for r in &v {
                match ranges(r) {
                    Ok(mut x) => rs.append(&mut x),
                    Err(e) => bad.push(e),
                }
            }
            push(if caller {
                Matcher::CallerTime(rs)
            } else {
                Matcher::Time(rs)
            });
        }
    }
    if let Some(v) = &raw.all {
        all.push(Cond::All(v.iter().map(|w| when(w, bad)).collect()));
    }
    if let Some(v) = &raw.any {
        all.push(Cond::Any(v.iter().map(|w| when(w, bad)).collect()));
    }
    if let Some(w) = &raw.not {
        all.push(Cond::Not(Box::new(when(w, bad))));
    }
    match all.len() {
        1 => all.pop().unwrap_or(Cond::All(Vec::new())),
        _ => Cond::All(all),
    }
}

/// The queue name that sends a repeat caller back to the queue of the previous call.
pub const LAST: &str = "$last";

fn queue_spec(v: &toml::Value) -> Result<QueueSpec, String> {
    match v {
        toml::Value::String(s) if s == LAST => {
            Err("\"$last\" needs a fallback: queue = { name = \"$last\", fallback = \"…\" }".into())
        }
        toml::Value::String(s) => Ok(QueueSpec {
            name: s.as_str().into(),
            priority: None,
            skills: Skills::default(),
            language: None,
            back_to_last: false,
            scheme: None,
        }),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if ![
                    "name", "priority", "skills", "language", "fallback", "scheme",
                ]
                .contains(&k.as_str())
                {
                    return Err(format!(
                        "unknown key {k:?}: expected name, priority, skills, language, fallback, \
                         scheme"
                    ));
                }
            }
            let name = t
                .get("name")
                .and_then(toml::Value::as_str)
                .ok_or("a queue table needs `name`")?;
            let fallback = match t.get("fallback") {
                None => None,
                Some(f) => Some(f.as_str().ok_or("fallback must be a queue name")?),
            };
            let (name, back_to_last) = match (name, fallback) {
                (LAST, Some(f)) => (f, true),
                (LAST, None) => {
                    return Err("\"$last\" needs `fallback`: the queue for callers with no \
                                previous call"
                        .into())
                }
                (_, Some(_)) => {
                    return Err("`fallback` goes with name = \"$last\" only".into());
                }
                (n, None) => (n, false),
            };
            let priority = match t.get("priority") {
                None => None,
                Some(p) => Some(
                    p.as_integer()
                        .and_then(|p| u8::try_from(p).ok())
                        .ok_or("priority must be 0-255")?,
                ),
            };
            let skills = match t.get("skills") {
                None => Skills::default(),
                Some(s) => s
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|x| x.as_str().map(SharedStr::from))
                            .collect::<Option<Skills>>()
                    })
                    .ok_or("skills must be a list of strings")?,
            };
            let language = match t.get("language") {
                None => None,
                Some(l) => Some(l.as_str().ok_or("language must be a string")?.into()),
            };
            // The Contact's scheme; without it, sips: for a call that came in over TLS.
            let scheme = match t.get("scheme").map(toml::Value::as_str) {
                None => None,
                Some(Some("sip")) => Some(tollgate_core::UriScheme::Sip),
                Some(Some("sips")) => Some(tollgate_core::UriScheme::Sips),
                Some(_) => return Err("scheme must be \"sip\" or \"sips\"".into()),
            };
            Ok(QueueSpec {
                name: name.into(),
                priority,
                skills,
                language,
                back_to_last,
                scheme,
            })
        }
        _ => Err("expected a queue name or a table { name, priority, skills, language }".into()),
    }
}

fn reject_spec(v: &toml::Value) -> Result<(u16, Option<String>), String> {
    let (code, reason) = match v {
        toml::Value::Integer(c) => (*c, None),
        toml::Value::Table(t) => {
            for k in t.keys() {
                if !["code", "reason"].contains(&k.as_str()) {
                    return Err(format!("unknown key {k:?}: expected code, reason"));
                }
            }
            (
                t.get("code")
                    .and_then(toml::Value::as_integer)
                    .ok_or("a reject table needs `code`")?,
                t.get("reason")
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned),
            )
        }
        _ => return Err("expected a status code or { code, reason }".into()),
    };
    let code = u16::try_from(code)
        .ok()
        .filter(|c| (400..=699).contains(c))
        .ok_or("code must be 400-699")?;
    // Without `reason` the SIP layer writes the status's standard phrase.
    if reason
        .as_ref()
        .is_some_and(|r| r.bytes().any(|b| b.is_ascii_control()))
    {
        return Err("reason must be one line".into());
    }
    Ok((code, reason))
}

fn version_of(sources: &[Source]) -> String {
    // FNV-1a over the sorted files: the same rules give the same version on every node.
    let mut sorted: Vec<&Source> = sources.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for s in sorted {
        let name = s.path.rsplit('/').next().unwrap_or(&s.path);
        for b in name.bytes().chain([0]).chain(s.text.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:012x}", h >> 16)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Builds the rules from the directory's files; every problem in every file comes back at once.
pub fn parse(sources: &[Source], settings: &Settings) -> Result<Rules, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut queues: Option<BTreeSet<String>> = None;
    let mut parsed: Vec<(&Source, FileRaw)> = Vec::new();
    for src in sources {
        let mut e = Errs {
            file: &src.path,
            text: &src.text,
            list: &mut errors,
        };
        if file_name(&src.path) == QUEUES_FILE {
            match toml::from_str::<QueuesRaw>(&src.text) {
                Ok(q) => {
                    let mut set = BTreeSet::new();
                    for name in q.queues.get_ref() {
                        if let Err(bad) = tollgate_core::QueueName::new(name.as_str()) {
                            e.at(q.queues.span(), "queues", bad.to_string());
                        }
                        if !set.insert(name.clone()) {
                            e.at(q.queues.span(), "queues", format!("{name:?} listed twice"));
                        }
                    }
                    queues = Some(set);
                }
                Err(err) => e.at(
                    err.span().unwrap_or(0..0),
                    toml_key(err.message()),
                    err.message(),
                ),
            }
            continue;
        }
        match toml::from_str::<FileRaw>(&src.text) {
            Ok(raw) => parsed.push((src, raw)),
            Err(err) => e.at(
                err.span().unwrap_or(0..0),
                toml_key(err.message()),
                err.message(),
            ),
        }
    }
    if queues.is_none() {
        errors.push(RuleError {
            file: QUEUES_FILE.into(),
            line: None,
            key: "queues".into(),
            message: "missing: declare every queue the rules may route to".into(),
        });
    }
    let queues = queues.unwrap_or_default();

    let mut sets = Vec::new();
    let mut by_dnis: HashMap<String, usize> = HashMap::new();
    let mut dnis_file: HashMap<String, String> = HashMap::new();
    let mut default = None;
    for (src, raw) in &parsed {
        let mut e = Errs {
            file: &src.path,
            text: &src.text,
            list: &mut errors,
        };
        let is_default = file_name(&src.path) == DEFAULT_FILE;
        let name = raw
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| file_name(&src.path).trim_end_matches(".toml").to_owned());
        let known_queue = |e: &mut Errs<'_>, q: &str, span: std::ops::Range<usize>, key: &str| {
            if !queues.contains(q) {
                e.at(
                    span,
                    key,
                    format!("unknown queue {q:?}: not in {QUEUES_FILE}"),
                );
            }
        };
        let hours = match (&raw.hours, &raw.time_zone) {
            (Some(h), None) => {
                e.at(h.span(), "hours", "hours need `time_zone`");
                None
            }
            (h, Some(tz)) => match TimeZone::get(tz.get_ref()) {
                Err(_) => {
                    e.at(
                        tz.span(),
                        "time_zone",
                        format!("{:?} is not an IANA time zone", tz.get_ref()),
                    );
                    None
                }
                Ok(zone) => {
                    let mut weekly: [Vec<(u16, u16)>; 7] = Default::default();
                    let mut holidays = BTreeSet::new();
                    if let Some(h) = h {
                        let r = h.get_ref();
                        let days = [&r.mon, &r.tue, &r.wed, &r.thu, &r.fri, &r.sat, &r.sun];
                        for (slot, day) in weekly.iter_mut().zip(days) {
                            if let Some(s) = day {
                                match ranges(s) {
                                    Ok(v) => *slot = v,
                                    Err(m) => e.at(h.span(), "hours", m),
                                }
                            }
                        }
                        for d in &r.holidays {
                            match d.parse::<Date>() {
                                Ok(d) => {
                                    holidays.insert(d);
                                }
                                Err(_) => e.at(
                                    h.span(),
                                    "hours.holidays",
                                    format!("{d:?} is not a date like 2026-12-25"),
                                ),
                            }
                        }
                    } else {
                        weekly = std::array::from_fn(|_| vec![(0, 24 * 60)]);
                    }
                    Some(Hours {
                        tz: zone,
                        tz_name: tz.get_ref().clone(),
                        weekly,
                        holidays,
                    })
                }
            },
            (None, None) => None,
        };
        if let Some(of) = &raw.overflow {
            known_queue(&mut e, of.get_ref(), of.span(), "overflow");
        }
        let mut dnis = Vec::new();
        match (&raw.dnis, is_default) {
            (Some(d), true) => e.at(
                d.span(),
                "dnis",
                "the default set applies to every other number: remove `dnis`",
            ),
            (None, false) => e.at(0..0, "dnis", "a service line needs `dnis = [\"+1...\"]`"),
            (Some(d), false) => {
                if d.get_ref().is_empty() {
                    e.at(d.span(), "dnis", "empty");
                }
                for n in d.get_ref() {
                    match number_key(n) {
                        Some(k) => {
                            if let Some(other) = dnis_file.get(&k) {
                                e.at(
                                    d.span(),
                                    "dnis",
                                    format!("{n} is already routed by {other}"),
                                );
                            } else {
                                dnis_file.insert(k.clone(), src.path.clone());
                                dnis.push(k);
                            }
                        }
                        None => e.at(
                            d.span(),
                            "dnis",
                            format!("{n:?} must be E.164 with + or a short code"),
                        ),
                    }
                }
            }
            (None, true) => {}
        }
        let mut rules = Vec::new();
        let mut names = BTreeSet::new();
        let mut catch_all: Option<String> = None;
        for (i, r) in raw.rules.iter().enumerate() {
            let rr = r.get_ref();
            let key = |k: &str| format!("rule[{i}].{k}");
            let rname = rr.name.get_ref().clone();
            if !names.insert(rname.clone()) {
                e.at(
                    rr.name.span(),
                    key("name"),
                    format!("duplicate rule name {rname:?}"),
                );
            }
            if let Some(above) = &catch_all {
                e.at(
                    rr.name.span(),
                    key("name"),
                    format!("unreachable: rule {above:?} above always matches"),
                );
            }
            let cond = rr.when.as_ref().map(|w| {
                let mut bad = Vec::new();
                let c = when(w.get_ref(), &mut bad);
                for b in bad {
                    e.at(w.span(), key("when"), b);
                }
                c
            });
            let action = match (&rr.queue, &rr.verify, &rr.reject) {
                (Some(q), None, None) => queue_spec(q.get_ref())
                    .map(Action::Queue)
                    .map_err(|m| (q.span(), "queue", m)),
                (None, Some(q), None) => queue_spec(q.get_ref())
                    .map(Action::Verify)
                    .map_err(|m| (q.span(), "verify", m)),
                (None, None, Some(r)) => reject_spec(r.get_ref())
                    .map(|(code, reason)| Action::Reject {
                        code,
                        reason: reason.map(SharedStr::from),
                    })
                    .map_err(|m| (r.span(), "reject", m)),
                _ => Err((
                    rr.name.span(),
                    "action",
                    "exactly one of queue, verify or reject".into(),
                )),
            };
            let action = match action {
                Ok(a) => a,
                Err((span, k, m)) => {
                    e.at(span, key(k), m);
                    continue;
                }
            };
            if let Action::Queue(q) | Action::Verify(q) = &action {
                let span = rr
                    .queue
                    .as_ref()
                    .or(rr.verify.as_ref())
                    .map_or(rr.name.span(), Spanned::span);
                known_queue(&mut e, &q.name, span, &key("queue"));
            }
            let respect_hours = match rr.hours.as_ref().map(|h| (h, h.get_ref().as_str())) {
                None | Some((_, "respect")) => true,
                Some((_, "ignore")) => false,
                Some((h, other)) => {
                    e.at(
                        h.span(),
                        key("hours"),
                        format!("{other:?}: expected \"respect\" or \"ignore\""),
                    );
                    true
                }
            };
            if let Some(of) = &rr.overflow {
                known_queue(&mut e, of.get_ref(), of.span(), &key("overflow"));
            }
            if cond.is_none() && catch_all.is_none() {
                catch_all = Some(rname.clone());
            }
            let names = RuleNames::new(&name, &rname);
            rules.push(Rule {
                name: rname,
                line: src
                    .text
                    .get(..rr.name.span().start)
                    .map_or(0, |t| t.matches('\n').count() + 1),
                risk_aware: cond.as_ref().is_some_and(Cond::mentions_risk),
                when: cond,
                action,
                respect_hours,
                overflow: rr.overflow.as_ref().map(|o| o.get_ref().as_str().into()),
                names,
            });
        }
        if is_default {
            let ok = rules.last().is_some_and(|r| {
                crate::eval::always_matches(r) && matches!(r.action, Action::Queue(_))
            });
            if !ok {
                e.at(
                    0..0,
                    "rule",
                    "the default set must end with a rule without `when` that routes to a queue",
                );
            }
            default = Some(sets.len());
        }
        let idx = sets.len();
        for d in &dnis {
            by_dnis.insert(d.clone(), idx);
        }
        sets.push(RuleSet {
            name,
            file: src.path.clone(),
            dnis,
            hours,
            overflow: raw.overflow.as_ref().map(|o| o.get_ref().as_str().into()),
            rules,
        });
    }
    if default.is_none() && !parsed.is_empty() {
        errors.push(RuleError {
            file: DEFAULT_FILE.into(),
            line: None,
            key: "-".into(),
            message: "missing: the default rule set routes every number no other file names".into(),
        });
    }
    if let Some(q) = &settings.emergency_queue {
        if !queues.contains(q) {
            errors.push(RuleError {
                file: QUEUES_FILE.into(),
                line: None,
                key: "queues".into(),
                message: format!("the emergency queue {q:?} is not declared"),
            });
        }
    }
    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(errors);
    }
    let version = version_of(sources);
    Ok(Rules {
        shared_version: version.as_str().into(),
        shared_host: settings.acd_host.as_str().into(),
        version,
        acd_host: settings.acd_host.clone(),
        emergency_queue: settings.emergency_queue.as_deref().map(SharedStr::from),
        sets,
        by_dnis,
        default: default.unwrap_or(0),
        queues: queues.into_iter().map(SharedStr::from).collect(),
    })
}

/// The main config's simple table (per-DNIS queue, default queue, caller-country suffixes),
/// as rule sets: one engine routes either way.
pub fn from_table(table: &crate::Table) -> Rules {
    let mut suffixes: Vec<(&u16, &String)> = table.country_suffix.iter().collect();
    suffixes.sort();
    let set = |name: String, dnis: Vec<String>, queue: &str| {
        let mut rules: Vec<Rule> = suffixes
            .iter()
            .map(|(cc, suffix)| Rule {
                names: RuleNames::new(&name, &format!("country:{cc}")),
                name: format!("country:{cc}"),
                line: 0,
                when: Some(Cond::All(vec![
                    Cond::M(Matcher::CallingCode(vec![**cc])),
                    Cond::M(Matcher::Valid(true)),
                ])),
                action: Action::Queue(QueueSpec {
                    name: format!("{queue}{suffix}").into(),
                    priority: None,
                    skills: Skills::default(),
                    language: None,
                    back_to_last: false,
                    scheme: None,
                }),
                respect_hours: true,
                overflow: None,
                risk_aware: false,
            })
            .collect();
        rules.push(Rule {
            names: RuleNames::new(&name, "queue"),
            name: "queue".into(),
            line: 0,
            when: None,
            action: Action::Queue(QueueSpec {
                name: queue.into(),
                priority: None,
                skills: Skills::default(),
                language: None,
                back_to_last: false,
                scheme: None,
            }),
            respect_hours: true,
            overflow: None,
            risk_aware: false,
        });
        RuleSet {
            name,
            file: "[routing]".into(),
            dnis,
            hours: None,
            overflow: None,
            rules,
        }
    };
    let mut entries: Vec<(&String, &String)> = table.dnis.iter().collect();
    entries.sort();
    let mut sets = Vec::new();
    let mut by_dnis = HashMap::new();
    let mut queues = BTreeSet::new();
    for (d, q) in entries {
        by_dnis.insert(d.clone(), sets.len());
        sets.push(set(format!("dnis:{d}"), vec![d.clone()], q));
        queues.insert(q.clone());
    }
    let default = sets.len();
    sets.push(set("default".into(), Vec::new(), &table.default_queue));
    queues.insert(table.default_queue.clone());
    let text = format!(
        "{:?}{:?}{:?}{:?}",
        sets.iter().map(|s| (&s.name, &s.dnis)).collect::<Vec<_>>(),
        table.default_queue,
        suffixes,
        table.emergency_queue
    );
    let version = version_of(&[Source {
        path: "[routing]".into(),
        text,
    }]);
    Rules {
        shared_version: version.as_str().into(),
        shared_host: table.acd_host.as_str().into(),
        version,
        acd_host: table.acd_host.clone(),
        emergency_queue: table.emergency_queue.as_deref().map(SharedStr::from),
        sets,
        by_dnis,
        default,
        queues: queues.into_iter().map(SharedStr::from).collect(),
    }
}
