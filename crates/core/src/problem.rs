//! [`Problem`]: one problem in a configuration file, the one shape every crate's config
//! reports in (the server's own sections, the rule files, and the CRM, risk and STIR sections
//! the adapter crates validate).

use std::fmt;
use std::path::PathBuf;

/// One problem in a config file: `file:line: key: message`.
///
/// An adapter crate validates its section after it was read, with no text to point into: it
/// reports the dotted key (`crm.http.url`, `risk.policy[1].name`) and the message with
/// [`Problem::new`], and the crate that read the file places it ([`Problem::at`]) at the line
/// that sets the key, from its parser's spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file; empty until the problem is placed.
    pub file: PathBuf,
    /// 1-based; `None` when the problem has no one line (a missing section, a default value).
    pub line: Option<usize>,
    /// The dotted key, with `[i]` for the i-th element of an array of tables (`trunk[0].cidrs`).
    pub key: String,
    pub message: String,
}

impl Problem {
    /// A problem with a key and no place yet.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: PathBuf::new(),
            line: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same problem in `file` at `line`.
    #[must_use]
    pub fn at(self, file: impl Into<PathBuf>, line: Option<usize>) -> Self {
        Self {
            file: file.into(),
            line,
            ..self
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.as_os_str().is_empty() {
            write!(f, "{}:", self.file.display())?;
            if let Some(l) = self.line {
                write!(f, "{l}:")?;
            }
            f.write_str(" ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found, in the order they are reported; one per line when shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl From<Vec<Problem>> for Problems {
    fn from(list: Vec<Problem>) -> Self {
        Self(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_file_line_key_message() {
        let p = Problem::new("sip.udp", "\"x\" is not an IP:port address");
        assert_eq!(p.to_string(), "sip.udp: \"x\" is not an IP:port address");
        let p = p.at("t.toml", Some(2));
        assert_eq!(
            p.to_string(),
            "t.toml:2: sip.udp: \"x\" is not an IP:port address"
        );
        let p = Problem::new("sip", "no listener").at("t.toml", None);
        assert_eq!(p.to_string(), "t.toml: sip: no listener");
        let all = Problems(vec![p.clone(), p]);
        assert_eq!(
            all.to_string(),
            "t.toml: sip: no listener\nt.toml: sip: no listener"
        );
    }
}
