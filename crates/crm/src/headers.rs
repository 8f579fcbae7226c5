//! Header values that may come from the environment or a file, so secrets stay out of config.

use std::path::Path;

use reqwest::header::HeaderValue;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Env(String),
    File(String),
}

/// A parsed header value: `env:NAME`, `file:PATH`, or text with `{env:NAME}` / `{file:PATH}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeaderSpec(Vec<Piece>);

impl HeaderSpec {
    /// Messages never quote the value: it may be a literal secret.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        if let Some(name) = value.strip_prefix("env:") {
            return env_name(name).map(|n| Self(vec![Piece::Env(n)]));
        }
        if let Some(path) = value.strip_prefix("file:") {
            return file_path(path).map(|p| Self(vec![Piece::File(p)]));
        }
        let mut pieces = Vec::new();
        let mut rest = value;
        loop {
            let next = [("{env:", true), ("{file:", false)]
                .into_iter()
                .filter_map(|(tag, env)| rest.find(tag).map(|at| (at, tag, env)))
                .min_by_key(|(at, _, _)| *at);
            let Some((at, tag, env)) = next else { break };
            let (lit, from) = rest.split_at(at);
            if !lit.is_empty() {
                pieces.push(Piece::Lit(lit.to_owned()));
            }
            let inner = from.get(tag.len()..).unwrap_or_default();
            let (arg, after) = inner
                .split_once('}')
                .ok_or_else(|| format!("`{tag}` is not closed with `}}`"))?;
            pieces.push(if env {
                Piece::Env(env_name(arg)?)
            } else {
                Piece::File(file_path(arg)?)
            });
            rest = after;
        }
        if !rest.is_empty() {
            pieces.push(Piece::Lit(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    /// The value to send, marked sensitive so the HTTP stack never prints it either.
    pub(crate) fn resolve(&self, base_dir: &Path) -> Result<HeaderValue, String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Env(name) => match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(std::env::VarError::NotPresent) => {
                        return Err(format!("environment variable {name} is not set"))
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(format!("environment variable {name} is not UTF-8"))
                    }
                },
                Piece::File(path) => {
                    let full = base_dir.join(path);
                    let text = std::fs::read_to_string(&full)
                        .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
                    // Secret files usually end with a newline that is not part of the secret.
                    out.push_str(text.trim_end_matches(['\r', '\n']));
                }
            }
        }
        let mut value = HeaderValue::from_str(&out)
            .map_err(|_| "the value has characters not allowed in a header".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }
}

fn env_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err("env: needs a variable name of letters, digits and _".into())
    }
}

fn file_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        Err("file: needs a path".into())
    } else {
        Ok(path.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            HeaderSpec::parse("env:CRM_TOKEN").unwrap(),
            HeaderSpec(vec![Piece::Env("CRM_TOKEN".into())])
        );
        assert_eq!(
            HeaderSpec::parse("Bearer {env:T} x{file:k.txt}").unwrap(),
            HeaderSpec(vec![
                Piece::Lit("Bearer ".into()),
                Piece::Env("T".into()),
                Piece::Lit(" x".into()),
                Piece::File("k.txt".into()),
            ])
        );
        assert!(HeaderSpec::parse("env:").is_err());
        assert!(HeaderSpec::parse("env:A-B").is_err());
        assert!(HeaderSpec::parse("Bearer {env:T").is_err());
        assert_eq!(
            HeaderSpec::parse("plain").unwrap(),
            HeaderSpec(vec![Piece::Lit("plain".into())])
        );
    }

    #[test]
    fn missing_env_names_the_variable_only() {
        let spec = HeaderSpec::parse("env:TOLLGATE_LOOKUP_SURELY_UNSET_VAR").unwrap();
        let err = spec.resolve(Path::new(".")).unwrap_err();
        assert!(err.contains("TOLLGATE_LOOKUP_SURELY_UNSET_VAR"));
    }
}
