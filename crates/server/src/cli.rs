//! `tollgate explain` and `tollgate diff`: the live pipeline's number handling and routing run
//! on calls described on the command line or in a CSV file, without a network.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use jiff::Timestamp;
use tollgate_core::{
    Attestation, CallFacts, CallerHistory, CallerProfile, Decision, DecisionAction, RiskAssessment,
    RiskLevel,
};
use tollgate_router::{Explained, Rules};
use tollgate_sip::message::{Message, Request};

use crate::pipeline::Pipeline;
use crate::Loaded;

/// One call to explain or replay.
#[derive(Clone, Debug, Default)]
pub struct CallSpec {
    pub ani: String,
    pub dnis: String,
    pub trunk: Option<String>,
    pub at: Option<Timestamp>,
    pub profile: Option<CallerProfile>,
    pub risk: Option<RiskLevel>,
    pub lists: Vec<String>,
    pub attestation: Option<Attestation>,
    pub history: Option<(String, i64)>,
}

/// Why a call could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("unknown trunk {0:?}: configured trunks are {1}")]
    Trunk(String, String),
    #[error("no trunk configured: name one with --trunk or add a [[trunk]]")]
    NoTrunk,
    #[error("the call does not make a valid INVITE: {0}")]
    Sip(String),
    #[error("{file}:{line}: {message}")]
    Csv {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Builds facts as a live call with these headers would get them: the real parser, extractor,
/// number intelligence and CLI policy, then the given CRM and risk facts.
pub fn facts_for(
    spec: &CallSpec,
    cfg: &Loaded,
    pipeline: &Pipeline,
) -> Result<(CallFacts, Option<Decision>), CliError> {
    let names = cfg.trunks.names();
    let trunk = match &spec.trunk {
        Some(n) => cfg
            .trunks
            .by_name(n)
            .ok_or_else(|| CliError::Trunk(n.clone(), names.join(", ")))?,
        None => names
            .first()
            .and_then(|n| cfg.trunks.by_name(n))
            .ok_or(CliError::NoTrunk)?,
    };
    let user = |s: &str| s.replace('+', "%2B");
    let invite = format!(
        "INVITE sip:{}@tollgate.invalid;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKexplain\r\n\
         From: <sip:{}@explain.invalid;user=phone>;tag=x\r\nTo: <sip:{}@tollgate.invalid>\r\nCall-ID: explain\r\n\
         CSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:{}@explain.invalid;user=phone>\r\nContent-Length: 0\r\n\r\n",
        user(&spec.dnis),
        user(&spec.ani),
        user(&spec.dnis),
        user(&spec.ani)
    );
    let msg = Message::parse(invite.as_bytes()).map_err(|e| CliError::Sip(e.to_string()))?;
    let req = Request::from_message(msg, true).map_err(|e| CliError::Sip(e.reason.into_owned()))?;
    let mut facts = tollgate_sip::extract::extract(&req, trunk, &pipeline.plan, &cfg.emergency);
    let policy = pipeline.annotate(&mut facts);
    facts.profile = spec.profile.clone();
    facts.lookup = if spec.profile.is_some() {
        tollgate_core::LookupStatus::Found
    } else {
        tollgate_core::LookupStatus::Skipped
    };
    if spec.risk.is_some() || !spec.lists.is_empty() || spec.attestation.is_some() {
        facts.risk = Some(RiskAssessment {
            level: spec.risk.unwrap_or_default(),
            list_hits: spec.lists.clone(),
            attestation: spec.attestation,
            ..RiskAssessment::default()
        });
    }
    let now = spec.at.unwrap_or_else(Timestamp::now);
    facts.history = spec.history.as_ref().map(|(q, ago)| CallerHistory {
        last_queue: q.clone(),
        last_seen: now.as_second() - ago,
    });
    Ok((facts, policy))
}

fn describe(d: &Decision) -> String {
    match &d.action {
        DecisionAction::Route(t) => {
            let mut s = format!("302 → {}@{}", t.queue, t.host);
            if let Some(p) = t.priority {
                let _ = write!(s, " priority={p}");
            }
            if !t.skills.is_empty() {
                let _ = write!(s, " skills={}", t.skills.join(","));
            }
            if let Some(l) = &t.language {
                let _ = write!(s, " language={l}");
            }
            if t.verify {
                s.push_str(" (verification)");
            }
            s
        }
        DecisionAction::Reject { code, reason, .. } => format!("{code} {reason}"),
    }
}

/// The text `tollgate explain` prints.
pub fn explain(
    spec: &CallSpec,
    cfg: &Loaded,
    pipeline: &Pipeline,
    rules: &Rules,
) -> Result<String, CliError> {
    let (facts, policy) = facts_for(spec, cfg, pipeline)?;
    let now = spec.at.unwrap_or_else(Timestamp::now);
    let mut out = String::new();
    let info = facts.ani_info.as_ref();
    let _ = writeln!(
        out,
        "call      ANI {} ({} via {}), DNIS {} ({})",
        facts.ani,
        facts.trunk,
        facts.ani_source.as_str(),
        facts.dnis,
        facts.dnis_source.as_str()
    );
    let _ = writeln!(
        out,
        "number    valid={} kind={} region={} geo={:?} tz={}",
        info.is_some_and(|i| i.valid),
        info.map_or("-", |i| i.kind.as_str()),
        info.and_then(|i| i.region).unwrap_or("-"),
        facts
            .ani_geo
            .as_ref()
            .and_then(|g| g.description.as_deref())
            .unwrap_or("-"),
        facts
            .ani_geo
            .as_ref()
            .and_then(|g| g.time_zone())
            .unwrap_or("-"),
    );
    if let Some(c) = &facts.cli {
        let _ = writeln!(out, "cli       {} ({})", c.verdict.as_str(), c.reason);
    }
    let _ = writeln!(out, "at        {now} (rules {})", rules.version);
    let decision = match policy {
        Some(d) => {
            let _ = writeln!(out, "cli-policy rejects the call before routing");
            d
        }
        None => {
            let e: Explained = tollgate_router::explain(&facts, rules, now);
            if let Some(open) = e.open {
                let _ = writeln!(
                    out,
                    "hours     line {}",
                    if open { "open" } else { "closed" }
                );
            }
            out.push_str("rules tried:\n");
            for line in e.render().lines() {
                let _ = writeln!(out, "  {line}");
            }
            e.decision
        }
    };
    let _ = writeln!(
        out,
        "decision  {} by {}",
        describe(&decision),
        decision.rule
    );
    Ok(out)
}

/// Parses a caller profile file (TOML): the CRM record `explain --profile` routes with.
pub fn profile_from_toml(path: &Path) -> Result<CallerProfile, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
    let v: toml::Table = toml::from_str(&text)
        .map_err(|e| CliError::Other(format!("{}: {}", path.display(), e.message())))?;
    let s = |k: &str| v.get(k).and_then(toml::Value::as_str).map(str::to_owned);
    let mut p = CallerProfile {
        customer_id: s("customer_id").unwrap_or_default(),
        name: s("name"),
        company: s("company"),
        tier: s("tier"),
        language: s("language"),
        last_agent: s("last_agent"),
        last_queue: s("last_queue"),
        open_cases: v
            .get("open_cases")
            .and_then(toml::Value::as_integer)
            .and_then(|n| u32::try_from(n).ok()),
        ..CallerProfile::default()
    };
    p.tags = v
        .get("tags")
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(attrs) = v.get("attributes").and_then(toml::Value::as_table) {
        p.attributes = attrs
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect::<BTreeMap<_, _>>();
    }
    Ok(p)
}

/// Reads a calls CSV for `diff`: a header row naming columns (ani and dnis required; time,
/// trunk, tier, language, tags, open_cases, risk, lists, attestation, last_queue,
/// last_seen_ago_s optional), comma-separated, `;` inside tags and lists.
pub fn calls_from_csv(path: &Path) -> Result<Vec<(usize, CallSpec)>, CliError> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::Other(format!("{file}: {e}")))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines.next().ok_or_else(|| CliError::Csv {
        file: file.clone(),
        line: 1,
        message: "empty file".into(),
    })?;
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    const KNOWN: &[&str] = &[
        "ani",
        "dnis",
        "time",
        "trunk",
        "tier",
        "language",
        "tags",
        "open_cases",
        "risk",
        "lists",
        "attestation",
        "last_queue",
        "last_seen_ago_s",
    ];
    if let Some(c) = cols.iter().find(|c| !KNOWN.contains(&c.as_str())) {
        return Err(CliError::Csv {
            file,
            line: 1,
            message: format!("unknown column {c:?}: known are {}", KNOWN.join(", ")),
        });
    }
    for need in ["ani", "dnis"] {
        if !cols.iter().any(|c| c == need) {
            return Err(CliError::Csv {
                file,
                line: 1,
                message: format!("missing column {need:?}"),
            });
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let bad = |m: String| CliError::Csv {
            file: file.clone(),
            line: n,
            message: m,
        };
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != cols.len() {
            return Err(bad(format!(
                "{} cells, the header has {}",
                cells.len(),
                cols.len()
            )));
        }
        let mut spec = CallSpec::default();
        let mut profile = CallerProfile::default();
        let mut has_profile = false;
        let mut last_queue = None;
        let mut ago = None;
        for (c, v) in cols.iter().zip(cells) {
            if v.is_empty() {
                continue;
            }
            let list = || {
                v.split(';')
                    .map(|x| x.trim().to_owned())
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
            };
            match c.as_str() {
                "ani" => spec.ani = v.to_owned(),
                "dnis" => spec.dnis = v.to_owned(),
                "time" => spec.at = Some(v.parse().map_err(|e| bad(format!("time {v:?}: {e}")))?),
                "trunk" => spec.trunk = Some(v.to_owned()),
                "tier" => (profile.tier, has_profile) = (Some(v.to_owned()), true),
                "language" => (profile.language, has_profile) = (Some(v.to_owned()), true),
                "tags" => (profile.tags, has_profile) = (list(), true),
                "open_cases" => {
                    profile.open_cases = Some(
                        v.parse()
                            .map_err(|_| bad(format!("open_cases {v:?} is not a number")))?,
                    );
                    has_profile = true;
                }
                "risk" => {
                    spec.risk = Some(RiskLevel::from_name(v).ok_or_else(|| {
                        bad(format!("risk {v:?}: low, elevated, high or blocked"))
                    })?)
                }
                "lists" => spec.lists = list(),
                "attestation" => {
                    spec.attestation = match v {
                        "A" => Some(Attestation::A),
                        "B" => Some(Attestation::B),
                        "C" => Some(Attestation::C),
                        "none" => None,
                        _ => return Err(bad(format!("attestation {v:?}: A, B, C or none"))),
                    }
                }
                "last_queue" => last_queue = Some(v.to_owned()),
                "last_seen_ago_s" => {
                    ago = Some(
                        v.parse::<i64>()
                            .map_err(|_| bad(format!("last_seen_ago_s {v:?} is not a number")))?,
                    )
                }
                _ => {}
            }
        }
        if has_profile {
            spec.profile = Some(profile);
        }
        spec.history = last_queue.map(|q| (q, ago.unwrap_or(0)));
        out.push((n, spec));
    }
    Ok(out)
}

/// The text `tollgate diff` prints: every call whose queue or rule changes, then a summary.
pub fn diff(
    calls: &[(usize, CallSpec)],
    cfg: &Loaded,
    pipeline: &Pipeline,
    live: &Rules,
    candidate: &Rules,
) -> Result<(String, usize), CliError> {
    let mut out = String::new();
    let mut changed = 0;
    for (line, spec) in calls {
        let (facts, policy) = facts_for(spec, cfg, pipeline)?;
        let now = spec.at.unwrap_or_else(Timestamp::now);
        let (a, b) = match &policy {
            Some(p) => (p.clone(), p.clone()),
            None => (
                tollgate_router::route(&facts, live, now),
                tollgate_router::route(&facts, candidate, now),
            ),
        };
        if describe(&a) != describe(&b) {
            changed += 1;
            let why = tollgate_router::explain(&facts, candidate, now);
            let matched = why
                .steps
                .iter()
                .find(|s| s.matched)
                .map(|s| s.why.clone())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "line {line}: {} → {} at {now}\n  live      {} by {}\n  candidate {} by {}  [{matched}]",
                facts.ani,
                facts.dnis,
                describe(&a),
                a.rule,
                describe(&b),
                b.rule
            );
        }
    }
    let _ = writeln!(
        out,
        "{} calls replayed, {changed} change{} (live {} → candidate {})",
        calls.len(),
        if changed == 1 { "" } else { "s" },
        live.version,
        candidate.version
    );
    Ok((out, changed))
}
