//! Where each key of a config file is: the TOML parser's own spans (`toml::de::DeTable`), so a
//! problem found after the file was read (a semantic check, an adapter crate's validation, a
//! start-up failure) is placed at the line that sets its key, and a parse error is named by
//! the full key its span falls in (`trunk[1].cli.bogus`). No text is scanned for keys.

use std::ops::Range;

use tollgate_core::Problem;
use toml::de::{DeTable, DeValue};

/// One step of a dotted key: a table key, or the i-th table of an array of tables.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// One key the file sets (or a table it opens), with its spans.
#[derive(Clone, Debug)]
struct Entry {
    path: Vec<Seg>,
    /// The key as written (for a table opened by a header: the key inside the header).
    key: Range<usize>,
    /// The value (for a table opened by a header: the header).
    value: Range<usize>,
    /// A table opened by a header (`[a.b]`, `[[a]]`): the keys below it until the next header
    /// are in it.
    header: bool,
}

/// Every key of one config file with its place; owns its data (kept in [`super::Loaded`]
/// for problems found at start-up).
#[derive(Clone, Debug, Default)]
pub struct Spans {
    entries: Vec<Entry>,
    /// Byte offset of each line's start.
    lines: Vec<usize>,
    /// The text, for a key the parser points at but did not keep (written twice).
    text: String,
}

impl Spans {
    /// The spans of `text`; what does not parse is left out (its parse error has its own).
    pub fn new(text: &str) -> Self {
        let (doc, _) = DeTable::parse_recoverable(text);
        let mut entries = Vec::new();
        walk(doc.get_ref(), &mut Vec::new(), &mut entries);
        for e in &mut entries {
            e.header = text.as_bytes().get(e.value.start) == Some(&b'[')
                && text.get(e.value.clone()).is_some_and(|h| h.ends_with(']'));
        }
        let lines = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            entries,
            lines,
            text: text.to_owned(),
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.lines.partition_point(|&start| start <= offset).max(1)
    }

    /// The line that sets `key` (`crm.http.url`, `risk.policy[1].name`,
    /// `routing.dnis."+18005550100"`), else the line of the deepest table or key above it that
    /// the file writes; `None` when the file writes none of it.
    pub fn line_of_key(&self, key: &str) -> Option<usize> {
        let want = segments(key);
        self.entries
            .iter()
            .filter(|e| want.starts_with(&e.path))
            .max_by_key(|e| (e.path.len(), std::cmp::Reverse(e.key.start)))
            .map(|e| self.line(e.key.start))
    }

    /// The full key of the deepest entry whose key or value holds byte `offset` (where a parse
    /// error points): `sip.listen` for an unknown field, `routing.dnis."+1"` for a value of the
    /// wrong type.
    pub fn key_at(&self, offset: usize) -> Option<String> {
        self.entries
            .iter()
            .filter(|e| e.key.contains(&offset) || e.value.contains(&offset))
            .max_by_key(|e| e.path.len())
            .map(|e| render(&e.path))
    }

    /// A key the parser points at but did not keep (the second of a key written twice): the
    /// key as written at `span`, under the table whose header is the last before it.
    fn key_written_at(&self, span: Range<usize>) -> Option<String> {
        let written = self.text.get(span.clone())?.trim();
        if written.is_empty() {
            return None;
        }
        let table = self
            .entries
            .iter()
            .filter(|e| e.header && e.value.end <= span.start)
            .max_by_key(|e| e.value.start);
        let mut path = table.map(|t| t.path.clone()).unwrap_or_default();
        path.extend(segments(written));
        Some(render(&path))
    }

    /// The full key of the table a span opens at (a missing field's error points at its
    /// table): the deepest entry whose value starts at `offset`.
    fn table_at(&self, offset: usize) -> Option<String> {
        self.entries
            .iter()
            .filter(|e| e.value.start == offset)
            .max_by_key(|e| e.path.len())
            .map(|e| render(&e.path))
    }

    /// A TOML or serde error as one problem: at its span's line, under the full key there.
    /// The parser names a missing field only in its message (its span is the table's), so
    /// that one name is taken from the message.
    pub fn parse_error(&self, e: &toml::de::Error) -> Problem {
        let message = e.message();
        let span = e.span();
        let start = span.as_ref().map(|s| s.start);
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| quote(field));
        let key = match (missing, start) {
            (Some(field), Some(at)) => match self.table_at(at) {
                Some(table) => format!("{table}.{field}"),
                None => field,
            },
            (Some(field), None) => field,
            (None, Some(at)) => self
                .key_at(at)
                .or_else(|| span.and_then(|s| self.key_written_at(s)))
                .unwrap_or_else(|| "toml".into()),
            (None, None) => "toml".into(),
        };
        let mut p = Problem::new(key, message);
        p.line = start.map(|s| self.line(s));
        p
    }
}

fn walk(table: &DeTable<'_>, path: &mut Vec<Seg>, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        path.push(Seg::Key(k.get_ref().to_string()));
        out.push(Entry {
            path: path.clone(),
            key: k.span(),
            value: v.span(),
            header: false,
        });
        match v.get_ref() {
            DeValue::Table(t) => walk(t, path, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        path.push(Seg::Index(i));
                        out.push(Entry {
                            path: path.clone(),
                            key: item.span(),
                            value: item.span(),
                            header: false,
                        });
                        walk(t, path, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// A key as TOML writes it: bare when it can be, else quoted.
fn quote(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&quote(k));
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A dotted key back into its steps: `a."b.c"[2].d` → a, b.c, 2, d.
fn segments(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = key.chars().peekable();
    let flush = |cur: &mut String, out: &mut Vec<Seg>| {
        if !cur.is_empty() {
            out.push(Seg::Key(std::mem::take(cur)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                if quoted {
                    // `""`: the empty key.
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
                quoted = !quoted;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            _ if quoted => cur.push(c),
            '.' => flush(&mut cur, &mut out),
            '[' => {
                flush(&mut cur, &mut out);
                let digits: String = chars.by_ref().take_while(|&c| c != ']').collect();
                match digits.parse() {
                    Ok(i) => out.push(Seg::Index(i)),
                    Err(_) => out.push(Seg::Key(digits)),
                }
            }
            _ => cur.push(c),
        }
    }
    flush(&mut cur, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const TEXT: &str = "[sip]\nudp = [\"a\"]\n\n[[trunk]]\nname = \"a\"\n[trunk.cli]\nrules = []\n\
                        [[trunk]]\nname = \"b\"\n[routing]\nacd_host = \"h\"\ndnis.\"+1800\" = \"q\"\n\
                        [crm.http]\nurl = \"u\"\n";

    #[test]
    fn a_key_is_at_the_line_that_sets_it_or_under_its_table() {
        let s = Spans::new(TEXT);
        assert_eq!(s.line_of_key("sip.udp"), Some(2));
        assert_eq!(s.line_of_key("sip"), Some(1));
        assert_eq!(
            s.line_of_key("sip.t1_ms"),
            Some(1),
            "not written: its table"
        );
        assert_eq!(s.line_of_key("trunk[0].name"), Some(5));
        assert_eq!(s.line_of_key("trunk[1].name"), Some(9));
        assert_eq!(s.line_of_key("trunk[0].cli.rules"), Some(7));
        assert_eq!(
            s.line_of_key("trunk[1].cli.rules"),
            Some(8),
            "the trunk's own table"
        );
        assert_eq!(s.line_of_key("routing.dnis.\"+1800\""), Some(12));
        assert_eq!(s.line_of_key("crm.http.url"), Some(14));
        assert_eq!(s.line_of_key("crm.deadline_ms"), Some(13));
        assert_eq!(s.line_of_key("risk.velocity"), None);
    }

    #[test]
    fn an_offset_names_its_full_key() {
        let s = Spans::new(TEXT);
        let at = |needle: &str| TEXT.find(needle).unwrap();
        assert_eq!(s.key_at(at("rules")).as_deref(), Some("trunk[0].cli.rules"));
        assert_eq!(s.key_at(at("\"b\"")).as_deref(), Some("trunk[1].name"));
        assert_eq!(
            s.key_at(at("\"q\"")).as_deref(),
            Some("routing.dnis.\"+1800\"")
        );
        assert_eq!(s.line(0), 1);
        assert_eq!(s.line(at("[routing]")), 10);
    }

    #[test]
    fn keys_split_into_steps() {
        assert_eq!(
            segments("risk.policy[1].name"),
            vec![
                Seg::Key("risk".into()),
                Seg::Key("policy".into()),
                Seg::Index(1),
                Seg::Key("name".into())
            ]
        );
        assert_eq!(
            segments("routing.dnis.\"+1.800\""),
            vec![
                Seg::Key("routing".into()),
                Seg::Key("dnis".into()),
                Seg::Key("+1.800".into())
            ]
        );
        assert_eq!(render(&segments("a.\"\"")), "a.\"\"");
        assert_eq!(render(&segments("trunk[0].cli")), "trunk[0].cli");
    }
}
