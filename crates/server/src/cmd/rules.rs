//! `tollgate rules promote|rollback|history|shadow`: a running node's rules, through its
//! admin API (the node owns its live rules; these commands change nothing on disk). The
//! admin token is read from a file, never from the command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// The node to talk to.
#[derive(Args, Debug, Clone)]
pub struct Node {
    /// The node's HTTP API: `http://node:8080`.
    #[arg(long)]
    pub url: String,
    /// A file holding an admin-scope token.
    #[arg(long)]
    pub token_file: PathBuf,
}

/// What `tollgate rules` does.
#[derive(Subcommand, Debug)]
pub enum RulesAction {
    /// Make the node's shadow rules live, atomically; recorded in its history with who and why.
    Promote {
        #[command(flatten)]
        node: Node,
        #[arg(long, default_value = "")]
        reason: String,
        /// Who (default: the admin token's name).
        #[arg(long)]
        who: Option<String>,
    },
    /// Bring back the rules version that was live before the current one, atomically.
    Rollback {
        #[command(flatten)]
        node: Node,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        who: Option<String>,
    },
    /// Every rules version that has been live on the node (hash, since when, who, why).
    History {
        #[command(flatten)]
        node: Node,
    },
    /// Write the rule files of a version that has been live (its hash, or a unique prefix)
    /// into a new directory: a `tollgate diff --baseline` for the calls since.
    Fetch {
        #[command(flatten)]
        node: Node,
        version: String,
        /// A directory to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// The node's shadow summary; or load a rules directory (on the node) as its shadow, or
    /// stop the shadow.
    Shadow {
        #[command(flatten)]
        node: Node,
        #[arg(long)]
        load: Option<String>,
        #[arg(long, conflicts_with = "load")]
        clear: bool,
    },
}

/// Runs one rules command against a node and returns what to print.
pub fn run(action: RulesAction) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(run_async(action))
}

async fn run_async(action: RulesAction) -> Result<String, String> {
    // This process's own TLS provider (reqwest is built without one), for https:// nodes.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let (node, method, path, body) = match &action {
        RulesAction::Promote { node, reason, who } => (
            node,
            reqwest::Method::POST,
            "/v1/admin/rules/promote",
            Some(serde_json::json!({ "reason": reason, "who": who })),
        ),
        RulesAction::Rollback { node, reason, who } => (
            node,
            reqwest::Method::POST,
            "/v1/admin/rules/rollback",
            Some(serde_json::json!({ "reason": reason, "who": who })),
        ),
        RulesAction::History { node } => {
            (node, reqwest::Method::GET, "/v1/admin/rules/history", None)
        }
        RulesAction::Fetch { node, version, .. } => (
            node,
            reqwest::Method::GET,
            // A hash is hex; anything else would be refused by the node as unknown.
            if version.bytes().all(|b| b.is_ascii_hexdigit()) {
                "/v1/admin/rules/history/"
            } else {
                return Err(format!("{version:?}: a version is a hexadecimal hash"));
            },
            None,
        ),
        RulesAction::Shadow {
            node,
            load: Some(d),
            ..
        } => (
            node,
            reqwest::Method::POST,
            "/v1/admin/shadow",
            Some(serde_json::json!({ "dir": d })),
        ),
        RulesAction::Shadow {
            node, clear: true, ..
        } => (node, reqwest::Method::DELETE, "/v1/admin/shadow", None),
        RulesAction::Shadow { node, .. } => (node, reqwest::Method::GET, "/v1/admin/shadow", None),
    };
    let token = std::fs::read_to_string(&node.token_file)
        .map_err(|e| format!("{}: {e}", node.token_file.display()))?;
    let mut url = format!("{}{path}", node.url.trim_end_matches('/'));
    if let RulesAction::Fetch { version, .. } = &action {
        url.push_str(version);
    }
    let mut req = client.request(method, &url).bearer_auth(token.trim());
    if let Some(b) = body {
        // `who: null` means "the token's name": leave it out.
        let b = match b {
            serde_json::Value::Object(mut m) => {
                m.retain(|_, v| !v.is_null());
                serde_json::Value::Object(m)
            }
            other => other,
        };
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{url}: {status}: not JSON ({e}): {text}"))?;
    if !status.is_success() {
        let msg = v
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or(&text);
        return Err(format!("{url}: {status}: {msg}"));
    }
    Ok(match action {
        RulesAction::Promote { .. } | RulesAction::Rollback { .. } => format!(
            "{} {} (by {}{})\n",
            str_of(&v, "action"),
            str_of(&v, "version"),
            str_of(&v, "by"),
            reason(&v),
        ),
        RulesAction::History { .. } => {
            let mut out = String::new();
            let live = str_of(&v, "live");
            for e in v
                .get("versions")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "{}  {:<8}  {}  by {}{}\n",
                    str_of(e, "live_since"),
                    str_of(e, "action"),
                    str_of(e, "version"),
                    str_of(e, "by"),
                    reason(e),
                ));
            }
            out.push_str(&format!("live: {live}\n"));
            out
        }
        RulesAction::Fetch { out, .. } => {
            std::fs::create_dir(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let files = v.get("files").and_then(|f| f.as_array()).cloned();
            let mut n = 0usize;
            for f in files.into_iter().flatten() {
                let name = str_of(&f, "name");
                // Only plain file names: nothing is written outside `out`.
                if name.contains(['/', '\\']) || name.starts_with('.') || !name.ends_with(".toml") {
                    return Err(format!(
                        "the node sent a file named {name:?}; nothing more written"
                    ));
                }
                std::fs::write(out.join(name), str_of(&f, "text"))
                    .map_err(|e| format!("{}: {e}", out.join(name).display()))?;
                n += 1;
            }
            format!(
                "{}: {n} files of version {} (live since {}, {} by {}{})\n",
                out.display(),
                str_of(&v, "version"),
                str_of(&v, "live_since"),
                str_of(&v, "action"),
                str_of(&v, "by"),
                reason(&v),
            )
        }
        RulesAction::Shadow { .. } => {
            let mut s = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
            s.push('\n');
            s
        }
    })
}

fn str_of<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("-")
}

fn reason(v: &serde_json::Value) -> String {
    match str_of(v, "reason") {
        "" | "-" => String::new(),
        r => format!(": {r}"),
    }
}
