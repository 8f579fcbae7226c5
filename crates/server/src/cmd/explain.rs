//! `tollgate explain` and `tollgate diff`: calls described on the command line, in a CSV file
//! or as a raw INVITE, decided by the live pipeline's own [`Pipeline::run`] in dry-run mode,
//! against the node's real adapters (CRM through its cache, lists, velocity read-only, identity).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use jiff::Timestamp;
use tollgate_core::{
    Attestation, CallFacts, CallerHistory, CallerProfile, Decision, DecisionAction, RiskLevel,
};
use tollgate_sip::message::{Message, Request};

use crate::decision::DecisionRecord;
use crate::pipeline::{Mode, Outcome, Overrides, Pipeline};

/// One call to explain or replay.
#[derive(Clone, Debug, Default)]
pub struct CallSpec {
    pub ani: String,
    pub dnis: String,
    /// The trunk by name; else the trunk `source` belongs to; else the first configured.
    pub trunk: Option<String>,
    pub source: Option<std::net::IpAddr>,
    /// Over TLS, with a verified client certificate saying this (`dns:…`, `uri:…`, `sha256:…`):
    /// the trunk is picked, and trusted, as the SIP server does for such a peer.
    pub tls_peer: Option<String>,
    /// A whole INVITE (as captured): its headers decide, `ani` and `dnis` are ignored.
    pub sip: Option<String>,
    pub at: Option<Timestamp>,
    /// Facts stated instead of the adapters' answers.
    pub overrides: Overrides,
    /// Put a CRM answer fetched for this explain in the cache, as a live call would.
    pub fill_cache: bool,
}

/// Why a call could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("unknown trunk {0:?}: configured trunks are {1}")]
    Trunk(String, String),
    #[error("no trunk claims source {0}: configured trunks are {1}")]
    Source(std::net::IpAddr, String),
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

/// What the SIP layer answered before any decision (`tollgate_sip::precheck`), as explain
/// reports it.
#[derive(Clone, Debug)]
pub struct Early {
    pub call_id: String,
    /// `tls` when the call is explained as coming over TLS (`--tls-peer`), else `udp`: what
    /// the live early answer's log line says.
    pub transport: tollgate_core::Transport,
    pub trunk: Option<String>,
    pub status: u16,
    pub from_user: Option<String>,
    pub ruri_user: Option<String>,
}

/// Facts as a live call with these headers gets them (the real parser, extractor and trunk
/// classification), or the answer the SIP layer gives before any decision: a source no trunk
/// claims (`unknown_source = "reject"`), an unsupported `Require` where enforced.
pub fn facts_for(
    spec: &CallSpec,
    pipeline: &Pipeline,
) -> Result<Result<CallFacts, (Early, Outcome)>, CliError> {
    let trunks = &pipeline.trunks;
    let names = || trunks.names().join(", ");
    let cert = spec
        .tls_peer
        .as_deref()
        .map(|p| tollgate_sip::tls::PeerMatch::parse(p).map(|m| m.certificate()))
        .transpose()
        .map_err(CliError::Other)?;
    let trunk = match (&spec.trunk, spec.source) {
        (Some(n), _) => Some(
            trunks
                .by_name(n)
                .ok_or_else(|| CliError::Trunk(n.clone(), names()))?,
        ),
        (None, Some(ip)) => trunks.source_with(ip, cert.as_ref()).0,
        (None, None) => Some(
            trunks
                .names()
                .first()
                .and_then(|n| trunks.by_name(n))
                .ok_or(CliError::NoTrunk)?,
        ),
    };
    let user = |s: &str| s.replace('+', "%2B");
    let synthesized;
    let text = match &spec.sip {
        Some(t) => t.as_str(),
        None => {
            synthesized = format!(
                "INVITE sip:{}@tollgate.invalid;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKexplain\r\n\
                 From: <sip:{}@explain.invalid;user=phone>;tag=x\r\nTo: <sip:{}@tollgate.invalid>\r\nCall-ID: explain\r\n\
                 CSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:{}@explain.invalid;user=phone>\r\nContent-Length: 0\r\n\r\n",
                user(&spec.dnis),
                user(&spec.ani),
                user(&spec.dnis),
                user(&spec.ani)
            );
            synthesized.as_str()
        }
    };
    // A pasted capture may have bare LF line ends.
    let text = if text.contains("\r\n") {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.replace('\n', "\r\n"))
    };
    let msg = Message::parse(text.as_bytes()).map_err(|e| CliError::Sip(e.to_string()))?;
    let req = Request::from_message(msg, true).map_err(|e| CliError::Sip(e.reason.into_owned()))?;
    if let Some((code, _, reason, _)) =
        tollgate_sip::precheck(trunk.is_some(), &req.msg, pipeline.enforce_require)
    {
        let clean = |u: &str| tollgate_sip::response::clean_text(u).into_owned();
        let early = Early {
            call_id: clean(req.call_id),
            transport: if cert.is_some() {
                tollgate_core::Transport::Tls
            } else {
                tollgate_core::Transport::Udp
            },
            trunk: trunk.map(|t| t.name.to_string()),
            status: code,
            from_user: req.from.uri.and_then(|u| u.user).map(clean),
            ruri_user: match req.uri {
                tollgate_sip::message::RequestUri::Uri(u) => u.user.map(clean),
                tollgate_sip::message::RequestUri::ServiceUrn(_) => None,
            },
        };
        return Ok(Err((early, Pipeline::early_outcome(code, reason))));
    }
    let Some(trunk) = trunk else {
        return Err(CliError::NoTrunk);
    };
    let mut facts =
        tollgate_sip::extract::extract(&req, trunk, &pipeline.plan, &pipeline.emergency);
    if let Some(cert) = &cert {
        facts.arrival = tollgate_core::Arrival {
            transport: tollgate_core::Transport::Tls,
            tls_peer: Some(trunk.peer_label(cert).into()),
        };
    }
    Ok(Ok(facts))
}

/// One explained call: the facts, the outcome (with the router's trace) and when; or what the
/// SIP layer answered before any decision.
#[derive(Debug)]
pub struct Explanation {
    pub facts: Option<CallFacts>,
    pub early: Option<Early>,
    pub outcome: Outcome,
    pub at: Timestamp,
}

impl Explanation {
    /// The decision record, field for field what the decision log writes for a live call.
    pub fn record(&self) -> DecisionRecord<'_> {
        match (&self.facts, &self.early) {
            (Some(f), _) => DecisionRecord::new(f, &self.outcome, "-"),
            (None, Some(e)) => DecisionRecord::before_decision(
                &crate::decision::Request {
                    call_id: &e.call_id,
                    transport: e.transport.as_str(),
                    trunk: e.trunk.as_deref(),
                    status: e.status,
                    from_user: e.from_user.as_deref(),
                    ruri_user: e.ruri_user.as_deref(),
                },
                &self.outcome,
            ),
            (None, None) => DecisionRecord::before_decision(
                &crate::decision::Request {
                    call_id: "-",
                    transport: "udp",
                    trunk: None,
                    status: 0,
                    from_user: None,
                    ruri_user: None,
                },
                &self.outcome,
            ),
        }
    }

    /// The rules tried, one line each.
    pub fn trace(&self) -> Vec<String> {
        self.outcome
            .trace
            .as_ref()
            .map(|e| e.render().lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    pub fn describe(&self) -> String {
        describe(&self.outcome.decision)
    }
}

/// Decides one call as the live engine would, without changing any state (unless
/// `fill_cache`): [`Pipeline::run`] in [`Mode::Dry`].
pub async fn explain_call(spec: &CallSpec, pipeline: &Pipeline) -> Result<Explanation, CliError> {
    let at = spec.at.unwrap_or_else(pipeline.clock);
    let mut facts = match facts_for(spec, pipeline)? {
        Ok(f) => f,
        Err((early, outcome)) => {
            return Ok(Explanation {
                facts: None,
                early: Some(early),
                outcome,
                at,
            })
        }
    };
    let mode = Mode::Dry {
        fill_cache: spec.fill_cache,
    };
    let outcome = pipeline
        .run(&mut facts, spec.source, mode, at, &spec.overrides, true)
        .await;
    Ok(Explanation {
        facts: Some(facts),
        early: None,
        outcome,
        at,
    })
}

pub fn describe(d: &Decision) -> String {
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
        DecisionAction::Reject { code, reason, .. } => format!(
            "{code} {}",
            tollgate_sip::response::phrase(*code, reason.as_deref())
        ),
    }
}

/// The text `tollgate explain` prints.
pub fn render(e: &Explanation, rules_version: &str) -> String {
    let r = e.record();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "call      ANI {} ({} via {}{}), DNIS {} ({})",
        r.ani,
        r.trunk,
        r.ani_source,
        if r.ani_verified {
            ", verified"
        } else {
            ", unverified"
        },
        r.dnis,
        r.dnis_source
    );
    if r.transport == "tls" {
        let _ = writeln!(
            out,
            "tls       peer {} (trunk {}, {})",
            r.tls_peer,
            r.trunk,
            if r.trusted { "trusted" } else { "untrusted" }
        );
    }
    let _ = writeln!(
        out,
        "number    valid={} kind={} region={} subdivision={} geo={:?} tz={}",
        r.ani_valid, r.ani_kind, r.ani_region, r.ani_subdivision, r.ani_geo, r.ani_tz,
    );
    if let (zone, Some(why)) = &e.outcome.caller_zone {
        let _ = writeln!(
            out,
            "zone      caller_time uses {} ({})",
            zone.as_deref().unwrap_or("no zone"),
            why.reason()
        );
    }
    if r.cpc != "-" || r.ani_ii != "-" || r.charge_number != "-" {
        let _ = writeln!(
            out,
            "line      cpc={} ani_ii={} charge={}",
            r.cpc, r.ani_ii, r.charge_number
        );
    }
    if let Some(c) = e.facts.as_ref().and_then(|f| f.cli.as_ref()) {
        let _ = writeln!(out, "cli       {} ({})", c.verdict.as_str(), c.reason);
    }
    let _ = writeln!(
        out,
        "crm       {} customer={} tier={}",
        r.crm, r.crm_customer, r.crm_tier
    );
    let _ = writeln!(
        out,
        "risk      {} score={} signals=[{}] lists=[{}] attestation={} verification={}{}",
        r.risk,
        r.risk_score,
        r.risk_signals,
        r.lists,
        r.attestation,
        r.verification,
        if r.risk_degraded { " (degraded)" } else { "" }
    );
    if r.repeat_of != "-" {
        let _ = writeln!(out, "history   previous call to {}", r.repeat_of);
    }
    for o in &e.outcome.overridden {
        let _ = writeln!(out, "override  {o}");
    }
    if let Some(l) = &e.outcome.limits {
        let _ = writeln!(out, "limits    {l}");
    }
    let _ = writeln!(out, "at        {} (rules {rules_version})", e.at);
    if let Some(t) = &e.outcome.trace {
        if let Some(open) = t.open {
            let _ = writeln!(
                out,
                "hours     line {}",
                if open { "open" } else { "closed" }
            );
        }
        out.push_str("rules tried:\n");
        for line in t.render().lines() {
            let _ = writeln!(out, "  {line}");
        }
    } else if let crate::decision::Why::Limited(scope) = e.outcome.why {
        let _ = writeln!(
            out,
            "over the {} rate limit: answered before enrichment and the rules",
            scope.as_str()
        );
    } else {
        let _ = writeln!(out, "{} rejects the call before routing", r.decided_by);
    }
    if let Some(p) = &e.outcome.policy {
        let _ = writeln!(out, "policy    {p}");
    }
    let _ = writeln!(
        out,
        "decision  {} by {} ({})",
        describe(&e.outcome.decision),
        e.outcome.decision.rule,
        r.decided_by
    );
    out
}

/// Overrides from the explain flags: `--risk`, `--lists`, a profile.
pub fn overrides(
    profile: Option<CallerProfile>,
    risk: Option<RiskLevel>,
    lists: Option<Vec<String>>,
    attestation: Option<Attestation>,
    history: Option<CallerHistory>,
) -> Overrides {
    Overrides {
        profile,
        risk,
        lists,
        attestation,
        history,
    }
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
                    spec.overrides.risk = Some(RiskLevel::from_name(v).ok_or_else(|| {
                        bad(format!("risk {v:?}: low, elevated, high or blocked"))
                    })?)
                }
                "lists" => spec.overrides.lists = Some(list()),
                "attestation" => {
                    spec.overrides.attestation = match v {
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
            spec.overrides.profile = Some(profile);
        }
        let at = spec.at.unwrap_or_else(Timestamp::now);
        spec.overrides.history = last_queue.map(|q| CallerHistory {
            last_queue: q,
            last_seen: at.as_second() - ago.unwrap_or(0),
        });
        out.push((n, spec));
    }
    Ok(out)
}

/// The text `tollgate diff` prints: every call whose answer changes, then a summary. Each
/// call is decided twice by [`Pipeline::run`] in dry-run mode, with the live and the
/// candidate rules, on the same facts and adapters.
pub async fn diff(
    calls: &[(usize, CallSpec)],
    live: &Pipeline,
    candidate: &Pipeline,
) -> Result<(String, usize), CliError> {
    let mut out = String::new();
    let mut changed = 0;
    for (line, spec) in calls {
        let a = explain_call(spec, live).await?;
        let b = explain_call(spec, candidate).await?;
        if describe(&a.outcome.decision) != describe(&b.outcome.decision) {
            changed += 1;
            let matched = b
                .outcome
                .trace
                .as_ref()
                .and_then(|t| t.steps.iter().find(|s| s.matched))
                .map(|s| s.why.clone())
                .unwrap_or_else(|| b.outcome.why.as_str().to_owned());
            let _ = writeln!(
                out,
                "line {line}: {} → {} at {}\n  live      {} by {}\n  candidate {} by {}  [{matched}]",
                a.record().ani,
                a.record().dnis,
                a.at,
                describe(&a.outcome.decision),
                a.outcome.decision.rule,
                describe(&b.outcome.decision),
                b.outcome.decision.rule
            );
        }
    }
    let _ = writeln!(
        out,
        "{} calls replayed, {changed} change{} (live {} → candidate {})",
        calls.len(),
        if changed == 1 { "" } else { "s" },
        live.rules.current().version,
        candidate.rules.current().version
    );
    Ok((out, changed))
}
