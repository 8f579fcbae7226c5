//! The embedded list store: one JSON file, replaced atomically (temp file, fsync, rename, fsync
//! of the folder) so a crash or a restart never loses or half-writes it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{ListEntry, ListKind, ListStore, Pattern};
use crate::error::RiskError;
use crate::BoxFuture;

const FORMAT: u32 = 1;
/// A lock file older than this was left by a crashed writer.
const STALE_LOCK: Duration = Duration::from_secs(30);
const LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    format: u32,
    entries: Vec<ListEntry>,
}

/// Lists in a JSON file; the server and the CLI may both write it (a lock file serialises them).
#[derive(Debug)]
pub struct FileListStore {
    path: PathBuf,
    /// Serialises this process's writers; the lock file serialises processes.
    write: tokio::sync::Mutex<()>,
}

impl FileListStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            write: tokio::sync::Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn modify<R, F>(&self, f: F) -> Result<R, RiskError>
    where
        F: FnOnce(&mut Vec<ListEntry>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let _guard = self.write.lock().await;
        let path = self.path.clone();
        blocking(path.clone(), move || {
            let _lock = LockFile::acquire(&path)?;
            let mut entries = read(&path)?;
            let r = f(&mut entries);
            entries.sort_by(|a, b| (a.list, &a.pattern).cmp(&(b.list, &b.pattern)));
            write_atomic(&path, &entries)?;
            Ok(r)
        })
        .await
    }
}

impl ListStore for FileListStore {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn version(&self) -> BoxFuture<'_, Result<u64, RiskError>> {
        let path = self.path.clone();
        Box::pin(async move { blocking(path.clone(), move || version_of(&path)).await })
    }

    fn load(&self) -> BoxFuture<'_, Result<(u64, Vec<ListEntry>), RiskError>> {
        let path = self.path.clone();
        Box::pin(async move {
            blocking(path.clone(), move || {
                // Version first: a write in between makes the next refresh reload again.
                let v = version_of(&path)?;
                Ok((v, read(&path)?))
            })
            .await
        })
    }

    fn add(&self, entry: ListEntry) -> BoxFuture<'_, Result<(), RiskError>> {
        Box::pin(async move {
            entry.check()?;
            self.modify(move |entries| upsert(entries, vec![entry]))
                .await
                .map(|_| ())
        })
    }

    fn remove<'a>(
        &'a self,
        list: ListKind,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<bool, RiskError>> {
        let pattern = pattern.clone();
        Box::pin(async move {
            self.modify(move |entries| {
                let before = entries.len();
                entries.retain(|e| !(e.list == list && e.pattern == pattern));
                entries.len() != before
            })
            .await
        })
    }

    fn import(&self, new: Vec<ListEntry>) -> BoxFuture<'_, Result<usize, RiskError>> {
        Box::pin(async move {
            for e in &new {
                e.check()?;
            }
            let n = new.len();
            self.modify(move |entries| upsert(entries, new)).await?;
            Ok(n)
        })
    }
}

/// Adds or replaces by (list, pattern).
fn upsert(entries: &mut Vec<ListEntry>, new: Vec<ListEntry>) {
    for e in new {
        match entries
            .iter_mut()
            .find(|x| x.list == e.list && x.pattern == e.pattern)
        {
            Some(x) => *x = e,
            None => entries.push(e),
        }
    }
}

async fn blocking<R, F>(path: PathBuf, f: F) -> Result<R, RiskError>
where
    F: FnOnce() -> Result<R, RiskError> + Send + 'static,
    R: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io_err(&path, std::io::Error::other(e.to_string()))))
}

fn io_err(path: &Path, source: std::io::Error) -> RiskError {
    RiskError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A missing file is an empty set of lists (first start).
fn read(path: &Path) -> Result<Vec<ListEntry>, RiskError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path, e)),
    };
    let file: ListFile = serde_json::from_str(&text).map_err(|e| RiskError::CorruptFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if file.format != FORMAT {
        return Err(RiskError::CorruptFile {
            path: path.to_owned(),
            message: format!("format {} (this build reads {FORMAT})", file.format),
        });
    }
    for e in &file.entries {
        e.check().map_err(|err| RiskError::CorruptFile {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
    }
    Ok(file.entries)
}

fn write_atomic(path: &Path, entries: &[ListEntry]) -> Result<(), RiskError> {
    let file = ListFile {
        format: FORMAT,
        entries: entries.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| RiskError::CorruptFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let tmp = sibling(path, &format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename itself must reach the disk, or a crash could bring the old file back.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io_err(path, e))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

/// Changes on every atomic replace: the inode is new each time (and mtime, size as a backstop).
fn version_of(path: &Path) -> Result<u64, RiskError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path, e)),
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let ino = 0u64;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [u128::from(ino), mtime, u128::from(meta.len())] {
        for b in part.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    // 0 means "no file".
    Ok(h.max(1))
}

/// `<file>.lock`, created exclusively; removed on drop.
struct LockFile(PathBuf);

impl LockFile {
    fn acquire(path: &Path) -> Result<Self, RiskError> {
        let lock = sibling(path, "lock");
        let start = std::time::Instant::now();
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(Self(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = fs::remove_file(&lock);
                        continue;
                    }
                    if start.elapsed() > LOCK_WAIT {
                        return Err(io_err(
                            path,
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "another writer holds the lock file",
                            ),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io_err(path, e)),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lists::Lists;
    use std::time::UNIX_EPOCH;
    use tollgate_core::E164;

    fn e(list: ListKind, p: &str) -> ListEntry {
        ListEntry::new(list, p, "why", "ops", UNIX_EPOCH, None).unwrap()
    }

    #[tokio::test]
    async fn writes_replace_the_file_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        let store = FileListStore::new(&path);
        assert_eq!(store.version().await.unwrap(), 0);
        store.add(e(ListKind::Block, "1212*")).await.unwrap();
        let v1 = store.version().await.unwrap();
        store.add(e(ListKind::Gray, "4420*")).await.unwrap();
        // Replacing keeps one entry per (list, pattern).
        store.add(e(ListKind::Block, "1212*")).await.unwrap();
        let v2 = store.version().await.unwrap();
        assert_ne!(v1, v2);
        assert!(!store
            .remove(ListKind::Allow, &"1212*".parse().unwrap())
            .await
            .unwrap());
        let again = FileListStore::new(&path);
        let (_, entries) = again.load().await.unwrap();
        assert_eq!(entries.len(), 2);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["lists.json"], "no temp or lock file left");
    }

    #[tokio::test]
    async fn corrupt_files_are_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        fs::write(&path, "{ not json").unwrap();
        let store = FileListStore::new(&path);
        let err = store.load().await.unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::Corrupt);
        assert!(store.add(e(ListKind::Block, "1*")).await.is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "{ not json");
    }

    #[tokio::test(start_paused = true)]
    async fn another_writer_is_seen_on_the_next_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        let lists = Lists::open(
            std::sync::Arc::new(FileListStore::new(&path)),
            Duration::from_secs(1),
        )
        .await;
        let n = E164::from_digits("12125551212").unwrap();
        assert!(lists.check(&n, UNIX_EPOCH).is_empty());
        // The CLI, another process, writes the file.
        FileListStore::new(&path)
            .add(e(ListKind::Block, "1212555*"))
            .await
            .unwrap();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !lists.check(&n, UNIX_EPOCH).is_empty() {
                return;
            }
        }
        panic!("the refresher never picked up the change");
    }
}
