//! What `tollgate list add|remove|show|import` calls: the configured list store, without an
//! engine. A running server sees the change within `list_refresh_ms` (file: on its next stat;
//! Redis: on its next version check).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::RiskConfig;
use crate::engine::open_list_store;
use crate::error::RiskError;
use crate::lists::{parse_csv, write_csv, ListEntry, ListKind, ListStore, Pattern};

/// List management against the store `[risk]` names.
#[derive(Debug, Clone)]
pub struct ListAdmin {
    store: Arc<dyn ListStore>,
}

impl ListAdmin {
    /// Opens the configured store (validates the whole `[risk]` section first). Redis needs a
    /// Tokio runtime.
    pub fn open(cfg: &RiskConfig, base_dir: &Path) -> Result<Self, RiskError> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(RiskError::Config(problems));
        }
        Ok(Self::new(open_list_store(cfg, base_dir)?))
    }

    pub fn new(store: Arc<dyn ListStore>) -> Self {
        Self { store }
    }

    /// `tollgate list add <list> <number|prefix*> --reason R --who W [--expires UNIX]`:
    /// adds or replaces (list, pattern).
    pub async fn add(
        &self,
        list: ListKind,
        pattern: &str,
        reason: &str,
        who: &str,
        expires_at: Option<u64>,
        now: SystemTime,
    ) -> Result<ListEntry, RiskError> {
        let e = ListEntry::new(list, pattern, reason, who, now, expires_at)?;
        self.store.add(e.clone()).await?;
        Ok(e)
    }

    /// `tollgate list remove <list> <number|prefix*>`: false when it was not there.
    pub async fn remove(&self, list: ListKind, pattern: &str) -> Result<bool, RiskError> {
        let p: Pattern = pattern.parse()?;
        self.store.remove(list, &p).await
    }

    /// `tollgate list show`: every entry (expired ones too), sorted by list then pattern.
    pub async fn show(&self) -> Result<Vec<ListEntry>, RiskError> {
        let (_, mut entries) = self.store.load().await?;
        entries.sort_by(|a, b| (a.list, &a.pattern).cmp(&(b.list, &b.pattern)));
        Ok(entries)
    }

    /// `tollgate list show` as CSV (importable again).
    pub async fn show_csv(&self, out: impl Write) -> Result<usize, RiskError> {
        let entries = self.show().await?;
        write_csv(&entries, out).map_err(|e| RiskError::InvalidEntry(e.to_string()))?;
        Ok(entries.len())
    }

    /// `tollgate list import FILE`: all lines or none; returns how many entries were written.
    pub async fn import_csv(
        &self,
        input: impl Read,
        default_who: &str,
        now: SystemTime,
    ) -> Result<usize, RiskError> {
        let entries = parse_csv(input, default_who, now)?;
        self.store.import(entries).await
    }
}
