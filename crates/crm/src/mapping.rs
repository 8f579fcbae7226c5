//! From a CRM's JSON answer to a [`CallerProfile`]: field paths chosen in config.

use std::collections::BTreeMap;

use serde_json::Value;
use tollgate_core::{CallerProfile, Problem};

use crate::config::MappingConfig;
use crate::LookupError;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    /// An object key, or an array index when the value there is an array (`items.0`, `/items/0`).
    Key(String),
    /// `[n]`: an array index only.
    Index(usize),
}

/// A path into a JSON value: dotted (`data.phones[0].number`, `data.items.0`) or a JSON pointer
/// (`/data/phones/0/number`, RFC 6901, for keys that contain dots). Empty is the value itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldPath {
    raw: String,
    segs: Vec<Seg>,
}

impl FieldPath {
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let segs = if raw.is_empty() {
            Vec::new()
        } else if let Some(pointer) = raw.strip_prefix('/') {
            pointer
                .split('/')
                .map(unescape_pointer)
                .collect::<Result<_, _>>()?
        } else {
            dotted(raw)?
        };
        Ok(Self {
            raw: raw.to_owned(),
            segs,
        })
    }

    pub(crate) fn resolve<'v>(&self, mut value: &'v Value) -> Option<&'v Value> {
        for seg in &self.segs {
            value = match (seg, value) {
                (Seg::Key(k), Value::Object(map)) => map.get(k)?,
                (Seg::Key(k), Value::Array(items)) => items.get(k.parse::<usize>().ok()?)?,
                (Seg::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

fn unescape_pointer(token: &str) -> Result<Seg, String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return Err("JSON pointer: `~` must be followed by 0 or 1".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(Seg::Key(out))
}

fn dotted(raw: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for piece in raw.split('.') {
        let (key, mut brackets) = match piece.find('[') {
            Some(at) => piece.split_at(at),
            None => (piece, ""),
        };
        if key.is_empty() && brackets.is_empty() {
            return Err("empty segment (two dots, or a leading or trailing dot)".into());
        }
        if !key.is_empty() {
            segs.push(Seg::Key(key.to_owned()));
        }
        while !brackets.is_empty() {
            let inner = brackets
                .strip_prefix('[')
                .and_then(|b| b.split_once(']'))
                .ok_or_else(|| format!("malformed index in {piece:?}: expected [n]"))?;
            let index = inner
                .0
                .parse::<usize>()
                .map_err(|_| format!("index [{}] is not a number", inner.0))?;
            segs.push(Seg::Index(index));
            brackets = inner.1;
        }
    }
    Ok(segs)
}

/// The compiled mapping of `[crm.http.mapping]`.
#[derive(Clone, Debug)]
pub(crate) struct Mapping {
    record: FieldPath,
    customer_id: FieldPath,
    name: Option<FieldPath>,
    company: Option<FieldPath>,
    tier: Option<FieldPath>,
    language: Option<FieldPath>,
    tags: Option<FieldPath>,
    open_cases: Option<FieldPath>,
    last_agent: Option<FieldPath>,
    last_queue: Option<FieldPath>,
    attributes: Vec<(String, FieldPath)>,
}

impl Mapping {
    /// Every bad path as a [`Problem`], keys prefixed with `prefix` (`crm.http.mapping`).
    pub(crate) fn compile(cfg: &MappingConfig, prefix: &str) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let optional = |key: &str, raw: &str, problems: &mut Vec<Problem>| {
            if raw.is_empty() {
                return None;
            }
            FieldPath::parse(raw)
                .map_err(|e| problems.push(Problem::new(format!("{prefix}.{key}"), e)))
                .ok()
        };
        let record = optional("record", &cfg.record, &mut problems);
        let customer_id = optional("customer_id", &cfg.customer_id, &mut problems);
        let name = optional("name", &cfg.name, &mut problems);
        let company = optional("company", &cfg.company, &mut problems);
        let tier = optional("tier", &cfg.tier, &mut problems);
        let language = optional("language", &cfg.language, &mut problems);
        let tags = optional("tags", &cfg.tags, &mut problems);
        let open_cases = optional("open_cases", &cfg.open_cases, &mut problems);
        let last_agent = optional("last_agent", &cfg.last_agent, &mut problems);
        let last_queue = optional("last_queue", &cfg.last_queue, &mut problems);
        let mut attributes = Vec::new();
        for (attr, raw) in &cfg.attributes {
            let key = format!("attributes.{attr}");
            if attr.is_empty() {
                problems.push(Problem::new(
                    format!("{prefix}.{key}"),
                    "attribute name is empty",
                ));
            } else if raw.is_empty() {
                problems.push(Problem::new(format!("{prefix}.{key}"), "path is empty"));
            } else if let Some(p) = optional(&key, raw, &mut problems) {
                attributes.push((attr.clone(), p));
            }
        }
        if cfg.customer_id.is_empty() {
            problems.push(Problem::new(
                format!("{prefix}.customer_id"),
                "required: the path of the customer id in the CRM's answer",
            ));
        }
        match customer_id {
            Some(customer_id) if problems.is_empty() => Ok(Self {
                record: record.unwrap_or(FieldPath {
                    raw: String::new(),
                    segs: Vec::new(),
                }),
                customer_id,
                name,
                company,
                tier,
                language,
                tags,
                open_cases,
                last_agent,
                last_queue,
                attributes,
            }),
            _ => Err(problems),
        }
    }

    /// `Ok(None)` when the record is absent or empty (`null`, `{}`, `[]`): the CRM does not
    /// know the caller. A record that is a list of matches yields its first element.
    pub(crate) fn apply(&self, body: &Value) -> Result<Option<CallerProfile>, LookupError> {
        let mut record = match self.record.resolve(body) {
            None => return Ok(None),
            Some(v) => v,
        };
        if let Value::Array(items) = record {
            match items.first() {
                None => return Ok(None),
                Some(first) => record = first,
            }
        }
        match record {
            Value::Null => return Ok(None),
            Value::Object(map) if map.is_empty() => return Ok(None),
            Value::Object(_) => {}
            other => {
                return Err(LookupError::Decode(format!(
                    "record at {:?} is {}, expected an object",
                    self.record.raw,
                    type_name(other)
                )))
            }
        }
        let text = |p: &Option<FieldPath>, field: &str| match p {
            Some(p) => scalar(p.resolve(record), field, &p.raw),
            None => Ok(None),
        };
        let customer_id = scalar(
            self.customer_id.resolve(record),
            "customer_id",
            &self.customer_id.raw,
        )?
        .ok_or_else(|| {
            LookupError::Decode(format!(
                "customer_id: nothing at {:?} in the record",
                self.customer_id.raw
            ))
        })?;
        let mut attributes = BTreeMap::new();
        for (name, p) in &self.attributes {
            if let Some(v) = attribute(p.resolve(record)) {
                attributes.insert(name.clone(), v);
            }
        }
        Ok(Some(CallerProfile {
            customer_id,
            name: text(&self.name, "name")?,
            company: text(&self.company, "company")?,
            tier: text(&self.tier, "tier")?,
            language: text(&self.language, "language")?,
            tags: match &self.tags {
                Some(p) => tags(p.resolve(record), &p.raw)?,
                None => Vec::new(),
            },
            open_cases: match &self.open_cases {
                Some(p) => count(p.resolve(record), &p.raw)?,
                None => None,
            },
            last_agent: text(&self.last_agent, "last_agent")?,
            last_queue: text(&self.last_queue, "last_queue")?,
            attributes,
        }))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn mismatch(field: &str, path: &str, v: &Value, want: &str) -> LookupError {
    LookupError::Decode(format!(
        "{field} at {path:?} is {}, expected {want}",
        type_name(v)
    ))
}

/// Strings as they are (blank is absent), numbers and booleans as text.
fn scalar(v: Option<&Value>, field: &str, path: &str) -> Result<Option<String>, LookupError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(mismatch(field, path, other, "a string")),
    }
}

/// An array of strings (or numbers), or one string of comma- or semicolon-separated tags.
fn tags(v: Option<&Value>, path: &str) -> Result<Vec<String>, LookupError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(split_tags(s)),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if let Some(t) = scalar(Some(item), "tags", path)? {
                    out.push(t);
                }
            }
            Ok(out)
        }
        Some(other) => Err(mismatch("tags", path, other, "an array or a string")),
    }
}

pub(crate) fn split_tags(s: &str) -> Vec<String> {
    s.split([',', ';'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A count: a non-negative integer, a numeric string, or an array (its length: a list of cases).
fn count(v: Option<&Value>, path: &str) -> Result<Option<u32>, LookupError> {
    let bad = |v: &Value| mismatch("open_cases", path, v, "a non-negative integer or an array");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n @ Value::Number(num)) => num
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad(n)),
        Some(s @ Value::String(text)) => text.trim().parse().map(Some).map_err(|_| bad(s)),
        Some(Value::Array(items)) => Ok(Some(u32::try_from(items.len()).unwrap_or(u32::MAX))),
        Some(other) => Err(bad(other)),
    }
}

/// Scalars as text, arrays and objects as compact JSON, so rules can still match on them.
fn attribute(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"a": {"b.c": [10, {"d": "x"}], "list": [[1, 2]]}});
        let get = |p: &str| FieldPath::parse(p).unwrap().resolve(&v).cloned();
        assert_eq!(get("a.list[0][1]"), Some(json!(2)));
        assert_eq!(get("a.list.0.1"), Some(json!(2)));
        assert_eq!(get("/a/b.c/1/d"), Some(json!("x")));
        assert_eq!(get("/a/b.c/5"), None);
        assert_eq!(get("a.missing.x"), None);
        assert_eq!(get(""), Some(v.clone()));
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("a[x]").is_err());
        assert!(FieldPath::parse("a[1").is_err());
        assert!(FieldPath::parse("/a~2").is_err());
        let esc = json!({"a/b": {"~": 1}});
        assert_eq!(
            FieldPath::parse("/a~1b/~0").unwrap().resolve(&esc),
            Some(&json!(1))
        );
    }

    #[test]
    fn counts_and_tags() {
        assert_eq!(count(Some(&json!([1, 2, 3])), "p").unwrap(), Some(3));
        assert_eq!(count(Some(&json!("4")), "p").unwrap(), Some(4));
        assert!(count(Some(&json!(-1)), "p").is_err());
        assert_eq!(
            tags(Some(&json!("vip; churn-risk,,")), "p").unwrap(),
            ["vip", "churn-risk"]
        );
        assert!(tags(Some(&json!({"a": 1})), "p").is_err());
    }
}
