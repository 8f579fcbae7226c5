//! URL and body templates: the caller's number in E.164, digit or national form.

use tollgate_core::{NumberPlan, E164};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Lit(String),
    /// `{e164}`: `+` and digits (`%2B…` in a URL).
    E164,
    /// `{digits}`: E.164 digits without the `+`.
    Digits,
    /// `{national}`: the national significant number (E.164 digits less the calling code).
    National,
}

/// Where a template is used: a URL escapes the `+`, a body carries it as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Context {
    Url,
    Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

const PLACEHOLDERS: &[(&str, Part)] = &[
    ("{e164}", Part::E164),
    ("{digits}", Part::Digits),
    ("{national}", Part::National),
];

impl Template {
    /// In a URL any other `{…}` is a mistake (URLs have no braces); in a body it is literal text,
    /// so JSON bodies need no escaping.
    pub(crate) fn parse(src: &str, context: Context) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        while let Some(open) = rest.find('{') {
            let (before, from_brace) = rest.split_at(open);
            lit.push_str(before);
            if let Some((name, part)) = PLACEHOLDERS.iter().find(|(n, _)| from_brace.starts_with(n))
            {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(part.clone());
                rest = from_brace.get(name.len()..).unwrap_or_default();
                continue;
            }
            if context == Context::Url {
                let shown: String = from_brace.chars().take(20).collect();
                return Err(format!(
                    "unknown placeholder at {shown:?}: use {{e164}}, {{digits}} or {{national}}"
                ));
            }
            lit.push('{');
            rest = from_brace.get(1..).unwrap_or_default();
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self { parts })
    }

    pub(crate) fn needs_national(&self) -> bool {
        self.parts.contains(&Part::National)
    }

    pub(crate) fn has_placeholder(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Lit(_)))
    }

    pub(crate) fn render(&self, ani: &E164, plan: Option<&NumberPlan>, context: Context) -> String {
        let digits = ani.digits();
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::E164 => {
                    out.push_str(if context == Context::Url { "%2B" } else { "+" });
                    out.push_str(digits);
                }
                Part::Digits => out.push_str(digits),
                Part::National => out.push_str(national(digits, plan)),
            }
        }
        out
    }
}

/// The national significant number; an unassigned calling code (or no plan) leaves all digits.
fn national<'a>(digits: &'a str, plan: Option<&NumberPlan>) -> &'a str {
    plan.and_then(|p| p.calling_code(digits))
        .and_then(|cc| digits.get(cc.len()..))
        .unwrap_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(d: &str) -> E164 {
        E164::from_digits(d).unwrap()
    }

    #[test]
    fn url_placeholders() {
        let t = Template::parse("https://crm/x?p={e164}&d={digits}", Context::Url).unwrap();
        assert_eq!(
            t.render(&n("4930123456"), None, Context::Url),
            "https://crm/x?p=%2B4930123456&d=4930123456"
        );
        assert!(!t.needs_national());
        assert!(Template::parse("https://crm/{ani}", Context::Url).is_err());
    }

    #[test]
    fn national_uses_calling_code() {
        let plan = NumberPlan::load();
        let t = Template::parse("/n/{national}", Context::Url).unwrap();
        assert!(t.needs_national());
        assert_eq!(
            t.render(&n("4930123456"), Some(&plan), Context::Url),
            "/n/30123456"
        );
        assert_eq!(
            t.render(&n("12125550100"), Some(&plan), Context::Url),
            "/n/2125550100"
        );
    }

    #[test]
    fn body_keeps_other_braces() {
        let t = Template::parse(r#"{"phone":"{e164}","q":{"x":1}}"#, Context::Body).unwrap();
        assert_eq!(
            t.render(&n("12125550100"), None, Context::Body),
            r#"{"phone":"+12125550100","q":{"x":1}}"#
        );
    }
}
