//! Every section's problems at their line, under their full key: a problem written on line N
//! is reported at line N, wherever in the file the section is (each case is checked twice, the
//! second time below three more lines). The line comes from the parser's spans, so a key
//! written twice in different tables, or a second element of an array of tables, is told
//! apart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::sync::OnceLock;

use tollgate_core::NumberPlan;

use super::{parse_with_rules, Problems};

fn plan() -> &'static NumberPlan {
    static PLAN: OnceLock<NumberPlan> = OnceLock::new();
    PLAN.get_or_init(NumberPlan::load)
}

/// (anchor line, which one, replace it?, lines put in, key, message fragment)
type Case = (
    &'static str,
    usize,
    bool,
    &'static [&'static str],
    &'static str,
    &'static str,
);

/// A config every section of which is written and passes.
const BASE: &str = r#"[sip]
udp = ["127.0.0.1:5060"]
[sip.limits]
max_transactions = 10
[[trunk]]
name = "a"
cidrs = ["10.0.0.0/8"]
[trunk.cli]
rules = []
[[trunk]]
name = "b"
cidrs = ["10.1.0.0/16"]
[cli]
rules = []
[routing]
acd_host = "acd.example.net"
default_queue = "q"
[routing.dnis]
"+18005550100" = "q"
[http]
listen = "127.0.0.1:0"
[[http.token]]
name = "t1"
scope = "admin"
token = "0123456789abcdef0"
[[http.token]]
name = "t2"
scope = "admin"
token = "0123456789abcdef1"
[crm]
kind = "http"
deadline_ms = 100
[crm.http]
url = "http://crm.example/{digits}"
[crm.http.mapping]
customer_id = "id"
[risk]
[[risk.policy]]
name = "p1"
dnis = ["1800*"]
[[risk.policy]]
name = "p2"
dnis = ["1888*"]
[log]
format = "text"
"#;

fn parse(text: &str) -> Result<super::Loaded, Problems> {
    parse_with_rules(Path::new("/cfg/t.toml"), text, plan(), |_, _| Vec::new())
}

/// `BASE` with `lines` put after the `nth` line equal to `anchor` (`replace`: instead of it),
/// below `pad` comment lines; and the 1-based line of the first line put in.
fn edit(anchor: &str, nth: usize, replace: bool, lines: &[&str], pad: usize) -> (String, usize) {
    let mut out: Vec<String> = (0..pad).map(|i| format!("# padding {i}")).collect();
    let mut seen = 0;
    let mut at = None;
    for l in BASE.lines() {
        let hit = l == anchor && {
            seen += 1;
            seen == nth + 1
        };
        if hit {
            if !replace {
                out.push(l.to_owned());
            }
            at = Some(out.len() + 1);
            out.extend(lines.iter().map(|s| (*s).to_owned()));
        } else {
            out.push(l.to_owned());
        }
    }
    (out.join("\n") + "\n", at.expect("anchor not in BASE"))
}

#[test]
fn the_base_config_passes() {
    if let Err(e) = parse(BASE) {
        panic!("{e}");
    }
}

#[test]
fn a_problem_on_line_n_is_reported_at_line_n_in_every_section() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("[sip]", 0, false, &["tcp = [\"nowhere\"]"], "sip.tcp", "not an IP:port"),
        ("[sip]", 0, false, &["unsupported_require = \"maybe\""], "sip.unsupported_require", "expected"),
        ("[sip]", 0, false, &["max_cps = 0.0"], "sip.max_cps", "calls per second"),
        ("[sip.limits]", 0, false, &["tcp_max_connections = 0"], "sip.limits.tcp_max_connections", "at least 1"),
        ("max_transactions = 10", 0, false, &["[sip.tls]", "listen = [\"127.0.0.1:5061\"]", "cert = \"missing.pem\"", "key = \"missing.key\""], "sip.tls.cert", "missing.pem"),
        ("cidrs = [\"10.1.0.0/16\"]", 0, true, &["cidrs = [\"10.1.0.0/40\"]"], "trunk[1].cidrs", "not a CIDR"),
        ("name = \"b\"", 0, false, &["region = \"ZZ\""], "trunk[1].region", ""),
        ("name = \"b\"", 0, false, &["identity = \"maybe\""], "trunk[1].identity", "expected"),
        ("name = \"b\"", 0, false, &["over_limit = \"queue:bad queue\""], "trunk[1].over_limit", ""),
        ("[trunk.cli]", 0, false, &["unapproved = \"sometimes\""], "trunk[0].cli.unapproved", "expected"),
        ("rules = []", 1, true, &["rules = [\"sometimes +1*\"]"], "cli.rules", ""),
        ("default_queue = \"q\"", 0, true, &["default_queue = \"bad queue\""], "routing.default_queue", "queue"),
        ("[routing.dnis]", 0, false, &["\"12ab\" = \"q\""], "routing.dnis.\"12ab\"", "not an E.164"),
        ("listen = \"127.0.0.1:0\"", 0, true, &["listen = \"nowhere\""], "http.listen", "not an IP:port"),
        ("scope = \"admin\"", 1, true, &["scope = \"agent\""], "http.token[1].queues", "needs `queues`"),
        ("scope = \"admin\"", 1, true, &["scope = \"boss\""], "http.token[1].scope", "expected"),
        ("deadline_ms = 100", 0, true, &["deadline_ms = 0"], "crm.deadline_ms", "at least 1"),
        ("url = \"http://crm.example/{digits}\"", 0, true, &["url = \"ftp://crm.example/{digits}\""], "crm.http.url", "scheme"),
        ("[risk]", 0, false, &["list_refresh_ms = 1"], "risk.list_refresh_ms", "between"),
        ("name = \"p2\"", 0, true, &["name = \"p1\""], "risk.policy[1].name", "duplicate policy"),
        ("dnis = [\"1888*\"]", 0, true, &["dnis = []"], "risk.policy[1].dnis", "at least one"),
        ("format = \"text\"", 0, false, &["[stir]", "trust_anchors_dir = \"anchors\"", "fetch_timeout_ms = 0"], "stir.fetch_timeout_ms", "must be positive"),
    ];
    for &(anchor, nth, replace, lines, key, fragment) in cases {
        for pad in [0, 3] {
            let (text, at) = edit(anchor, nth, replace, lines, pad);
            let errs = match parse(&text) {
                Ok(_) => panic!("{key}: accepted:\n{text}"),
                Err(e) => e,
            };
            let hit = errs
                .0
                .iter()
                .find(|p| p.key == key)
                .unwrap_or_else(|| panic!("{key}: not reported; got:\n{errs}\nin:\n{text}"));
            // The line that sets the key: the one put in, or the one after it (a table's
            // header first).
            let want = lines
                .iter()
                .position(|l| l.starts_with(key.rsplit('.').next().unwrap()))
                .map_or(at, |i| at + i);
            assert_eq!(
                hit.line,
                Some(want),
                "{key} (pad {pad}): {hit}\nin:\n{text}"
            );
            assert!(hit.message.contains(fragment), "{key}: {hit}");
            assert_eq!(hit.file, Path::new("/cfg/t.toml"));
            assert!(
                hit.to_string()
                    .starts_with(&format!("/cfg/t.toml:{want}: {key}: ")),
                "{hit}"
            );
        }
    }
}

#[test]
fn a_parse_error_is_named_by_its_full_key_at_its_line() {
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("name = \"b\"", 0, false, &["bogus = 1"], "trunk[1].bogus", "unknown field `bogus`"),
        ("[trunk.cli]", 0, false, &["bogus = 1"], "trunk[0].cli.bogus", "unknown field"),
        ("[routing.dnis]", 0, false, &["bogus = 1"], "routing.dnis.bogus", "invalid type"),
        ("name = \"t2\"", 0, false, &["bogus = 1"], "http.token[1].bogus", "unknown field"),
        ("[log]", 0, false, &["bogus = 1"], "log.bogus", "unknown field"),
        ("[crm.http.mapping]", 0, false, &["bogus = 1"], "crm.http.mapping.bogus", "unknown field"),
        ("[sip]", 0, false, &["t1_ms = \"soon\""], "sip.t1_ms", "invalid type"),
        ("default_queue = \"q\"", 0, false, &["default_queue = \"r\""], "routing.default_queue", "duplicate key"),
        ("acd_host = \"acd.example.net\"", 0, true, &["# no acd_host"], "routing.acd_host", "missing field `acd_host`"),
    ];
    for &(anchor, nth, replace, lines, key, fragment) in cases {
        for pad in [0, 3] {
            let (text, at) = edit(anchor, nth, replace, lines, pad);
            let errs = parse(&text).map(|_| ()).unwrap_err();
            assert_eq!(errs.0.len(), 1, "{errs}");
            let p = &errs.0[0];
            // A missing field is at its table's header, the line before the one taken out.
            let want = if fragment.starts_with("missing") {
                at - 1
            } else {
                at
            };
            assert_eq!(
                (p.key.as_str(), p.line),
                (key, Some(want)),
                "{p}\nin:\n{text}"
            );
            assert!(p.message.contains(fragment), "{p}");
        }
    }
}

/// A problem found after the parse (an adapter that would not start) is placed by its key as
/// the section checks place theirs.
#[test]
fn a_problem_found_at_start_up_is_placed_by_its_key() {
    let (text, at) = edit("[risk]", 0, false, &["list_file = \"lists.csv\""], 2);
    let loaded = parse(&text).unwrap();
    let p = loaded.error_at("risk.list_file", "cannot open");
    assert_eq!(p.line, Some(at));
    assert_eq!(
        p.to_string(),
        format!("/cfg/t.toml:{at}: risk.list_file: cannot open")
    );
    let crm = loaded.error_at("crm", "no");
    assert_eq!(
        crm.line,
        Some(text.lines().position(|l| l == "[crm]").unwrap() + 1)
    );
    let unwritten = loaded.error_at("risk.redis.url", "no");
    assert_eq!(
        unwritten.line,
        Some(at - 1),
        "an unwritten key: its table's line"
    );
}
