//! `tollgate list add|remove|show|import`: the block, gray and allow lists in the store the
//! config's `[risk]` section names (the list file in embedded mode, Redis when configured).
//! Running nodes pick changes up within `risk.list_refresh_ms`, without a restart.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use tollgate_core::NumberPlan;
use tollgate_risk::{ListAdmin, ListKind};

/// What `tollgate list` does.
#[derive(Subcommand, Debug)]
pub enum ListAction {
    /// Add (or replace) an entry: `tollgate list add block +12125550100 --reason "fraud"`.
    Add {
        /// block, gray or allow.
        list: String,
        /// An E.164 number (`+12125550100`) or a prefix ending in `*` (`+1900*`).
        number: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Who added it (default: $USER).
        #[arg(long)]
        who: Option<String>,
        /// Expire the entry after this long: `90s`, `30m`, `24h`, `7d`.
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
        /// Expire the entry at this time (unix seconds).
        #[arg(long, conflicts_with = "for_")]
        expires: Option<u64>,
    },
    /// Remove an entry (exits non-zero when it was not there).
    Remove { list: String, number: String },
    /// Print every entry (expired ones too), as a table or as importable CSV.
    Show {
        #[arg(long)]
        csv: bool,
    },
    /// Import a CSV file (`list,number_or_prefix,reason,who,expires_at[,added_at]`): every line
    /// or none.
    Import {
        file: PathBuf,
        /// `who` for lines that leave it empty (default: $USER).
        #[arg(long)]
        who: Option<String>,
    },
}

/// Runs one list command and returns what to print.
pub fn run(config: &Path, plan: &NumberPlan, action: ListAction) -> Result<String, String> {
    let cfg = crate::config::load(config, plan).map_err(|e| e.to_string())?;
    let risk = cfg.risk.as_ref().ok_or_else(|| {
        format!(
            "{}: no [risk] section, so there are no lists to manage",
            config.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    rt.block_on(async {
        let admin = ListAdmin::open(risk, &cfg.base_dir).map_err(|e| e.to_string())?;
        let now = SystemTime::now();
        match action {
            ListAction::Add {
                list,
                number,
                reason,
                who,
                for_,
                expires,
            } => {
                let kind = kind(&list)?;
                let expires = match (for_, expires) {
                    (Some(d), _) => Some(
                        unix(now)
                            + duration(&d)
                                .ok_or(format!(
                                    "--for {d:?}: a duration such as 90s, 30m, 24h or 7d"
                                ))?
                                .as_secs(),
                    ),
                    (None, e) => e,
                };
                let e = admin
                    .add(
                        kind,
                        &number,
                        &reason,
                        &who.unwrap_or_else(user),
                        expires,
                        now,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("added {} +{}\n", e.list, e.pattern))
            }
            ListAction::Remove { list, number } => {
                let kind = kind(&list)?;
                if admin
                    .remove(kind, &number)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Ok(format!("removed {kind} {number}\n"))
                } else {
                    Err(format!("{kind} {number}: no such entry"))
                }
            }
            ListAction::Show { csv } => {
                if csv {
                    let mut out = Vec::new();
                    admin.show_csv(&mut out).await.map_err(|e| e.to_string())?;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                let entries = admin.show().await.map_err(|e| e.to_string())?;
                let mut out = format!(
                    "{:<6} {:<18} {:<12} {:<12} {:<12} reason\n",
                    "list", "number", "who", "added", "expires"
                );
                let n = unix(now);
                for e in &entries {
                    let expires = match e.expires_at {
                        None => "never".to_owned(),
                        Some(t) if t <= n => format!("{t} (expired)"),
                        Some(t) => t.to_string(),
                    };
                    out.push_str(&format!(
                        "{:<6} {:<18} {:<12} {:<12} {:<12} {}\n",
                        e.list.as_str(),
                        format!("+{}", e.pattern),
                        e.who,
                        e.added_at,
                        expires,
                        e.reason
                    ));
                }
                out.push_str(&format!("{} entries\n", entries.len()));
                Ok(out)
            }
            ListAction::Import { file, who } => {
                let f = std::fs::File::open(&file)
                    .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
                let n = admin
                    .import_csv(f, &who.unwrap_or_else(user), now)
                    .await
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                Ok(format!("imported {n} entries\n"))
            }
        }
    })
}

fn kind(s: &str) -> Result<ListKind, String> {
    s.parse()
        .map_err(|_| format!("list {s:?}: expected block, gray or allow"))
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "cli".into())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `90s`, `30m`, `24h`, `7d` (a bare number is seconds).
fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (s.get(..i)?, s.get(i..)?),
        None => (s, "s"),
    };
    let n: u64 = n.parse().ok()?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(duration("15"), Some(Duration::from_secs(15)));
        assert_eq!(duration("1w"), None);
        assert_eq!(duration("h"), None);
    }
}
