//! The embedded list store: one JSON file, replaced atomically (temp file, fsync, rename, fsync
//! of the folder) so a crash or a restart never loses or half-writes it.
//!
//! Writers (the server and `tollgate list`, in any number of processes) are serialised by an
//! advisory `flock` on `<file>.lock`, which the kernel releases when its holder exits or is
//! killed, so a crashed writer never blocks the next one. The lock file itself stays (empty);
//! only its lock matters. Temp files are written only under the lock, so any
//! `<file>.tmp.*` found while holding it was left by a writer that died, and is removed.
//!
//! A write is prepared without the lock: the file is read, the change merged (by
//! (list, pattern), O(n log n)) and the JSON encoded. Then the lock is taken and, if the file is
//! still the one the change was merged into, the prepared JSON is written and renamed in; if
//! another writer replaced it in between, the change is merged again into the new file (up to
//! [`OPTIMISTIC_TRIES`] times, then once more under the lock). So a long import holds the lock
//! only for its write and fsync, every write applies to the latest file, and none is lost.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{ListEntry, ListKind, ListStore, Pattern};
use crate::error::RiskError;
use crate::BoxFuture;

const FORMAT: u32 = 1;
/// How long a writer waits for another one's write (a write, not a whole import).
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Prepared merges thrown away because another writer got in first, before merging under the
/// lock instead.
const OPTIMISTIC_TRIES: u32 = 3;

#[derive(Serialize)]
struct ListFileOut<'a> {
    format: u32,
    entries: &'a [ListEntry],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    format: u32,
    entries: Vec<ListEntry>,
}

/// Lists in a JSON file; the server and the CLI may both write it (a `flock` serialises them).
#[derive(Debug)]
pub struct FileListStore {
    path: PathBuf,
}

/// One change to the lists, re-applicable if the file changed under it.
enum Change {
    Upsert(Vec<ListEntry>),
    Remove(ListKind, Pattern),
}

impl FileListStore {
    /// Also removes temp files a killed writer left, when no writer is busy right now.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if let Ok(Some(_lock)) = WriteLock::try_existing(&path) {
            remove_stale_temp_files(&path);
        }
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `change`; true when it changed something (for a removal: when the entry was there).
    async fn modify(&self, change: Change) -> Result<bool, RiskError> {
        let path = self.path.clone();
        blocking(path.clone(), move || modify_file(&path, &change)).await
    }
}

fn modify_file(path: &Path, change: &Change) -> Result<bool, RiskError> {
    for _ in 0..OPTIMISTIC_TRIES {
        // The open file pins its inode until the check below, so a newer file cannot reuse
        // its number and pass for it; its version is read from the same descriptor as the
        // entries, so they match.
        let (pinned, before, entries) = read_versioned(path)?;
        let (json, changed) = prepare(path, entries, change)?;
        let lock = WriteLock::acquire(path)?;
        remove_stale_temp_files(path);
        if version_of(path)? == before {
            write_atomic(path, &json)?;
            drop((lock, pinned));
            return Ok(changed);
        }
        drop((lock, pinned));
        metrics::counter!("tollgate_risk_list_write_retries_total").increment(1);
    }
    let _lock = WriteLock::acquire(path)?;
    remove_stale_temp_files(path);
    let (json, changed) = prepare(path, read(path)?, change)?;
    write_atomic(path, &json)?;
    Ok(changed)
}

/// Applies the change to the file's entries and encodes the result (sorted by list, then
/// pattern).
fn prepare(
    path: &Path,
    mut entries: Vec<ListEntry>,
    change: &Change,
) -> Result<(Vec<u8>, bool), RiskError> {
    let changed = match change {
        Change::Upsert(new) => {
            entries = upsert(entries, new);
            true
        }
        Change::Remove(list, pattern) => {
            let before = entries.len();
            entries.retain(|e| !(e.list == *list && e.pattern == *pattern));
            entries.len() != before
        }
    };
    let json = encode(path, &entries)?;
    Ok((json, changed))
}

/// Adds or replaces by (list, pattern); a later entry for the same key wins. One stable sort
/// of both sets (the file's part is already sorted), then one pass: O(n log n).
fn upsert(mut entries: Vec<ListEntry>, new: &[ListEntry]) -> Vec<ListEntry> {
    entries.extend_from_slice(new);
    entries.sort_by(|a, b| (a.list, &a.pattern).cmp(&(b.list, &b.pattern)));
    let mut out: Vec<ListEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(last) if last.list == e.list && last.pattern == e.pattern => *last = e,
            _ => out.push(e),
        }
    }
    out
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
                // The version of the very file read (one descriptor for both).
                let (_, v, entries) = read_versioned(&path)?;
                Ok((v, entries))
            })
            .await
        })
    }

    fn add(&self, entry: ListEntry) -> BoxFuture<'_, Result<(), RiskError>> {
        Box::pin(async move {
            entry.check()?;
            self.modify(Change::Upsert(vec![entry])).await.map(|_| ())
        })
    }

    fn remove<'a>(
        &'a self,
        list: ListKind,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<bool, RiskError>> {
        let pattern = pattern.clone();
        Box::pin(async move { self.modify(Change::Remove(list, pattern)).await })
    }

    fn import(&self, new: Vec<ListEntry>) -> BoxFuture<'_, Result<usize, RiskError>> {
        Box::pin(async move {
            for e in &new {
                e.check()?;
            }
            let n = new.len();
            self.modify(Change::Upsert(new)).await?;
            Ok(n)
        })
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
    read_versioned(path).map(|(_, _, entries)| entries)
}

/// The open file (none when missing), its version ([`version_of`]) and its entries.
fn read_versioned(path: &Path) -> Result<(Option<fs::File>, u64, Vec<ListEntry>), RiskError> {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, 0, Vec::new())),
        Err(e) => return Err(io_err(path, e)),
    };
    let version = f
        .metadata()
        .map(|m| version_from(&m))
        .map_err(|e| io_err(path, e))?;
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut text).map_err(|e| io_err(path, e))?;
    let entries = parse(path, &text)?;
    Ok((Some(f), version, entries))
}

fn parse(path: &Path, text: &[u8]) -> Result<Vec<ListEntry>, RiskError> {
    let file: ListFile = serde_json::from_slice(text).map_err(|e| RiskError::CorruptFile {
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

fn encode(path: &Path, entries: &[ListEntry]) -> Result<Vec<u8>, RiskError> {
    let mut json = serde_json::to_vec_pretty(&ListFileOut {
        format: FORMAT,
        entries,
    })
    .map_err(|e| RiskError::CorruptFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    json.push(b'\n');
    Ok(json)
}

/// Only under the [`WriteLock`]: the temp file's name is per process, and the lock makes it
/// this writer's alone.
fn write_atomic(path: &Path, json: &[u8]) -> Result<(), RiskError> {
    let tmp = sibling(path, &format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(json)?;
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

/// `<file>.tmp.*` left by writers that died mid-write. Call only with the [`WriteLock`] held:
/// then no live writer has a temp file.
fn remove_stale_temp_files(path: &Path) {
    let Some(prefix) = sibling(path, "tmp.")
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return;
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_owned(),
        None => PathBuf::from("."),
    };
    let Ok(read) = fs::read_dir(&dir) else { return };
    for entry in read.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let stale = entry.path();
        match fs::remove_file(&stale) {
            Ok(()) => {
                metrics::counter!("tollgate_risk_list_stale_temp_files_removed_total").increment(1);
                tracing::warn!(file = %stale.display(), "removed a temp file a crashed list writer left");
            }
            Err(e) => {
                tracing::warn!(file = %stale.display(), error = %e, "cannot remove a stale list temp file");
            }
        }
    }
}

/// Changes on every atomic replace: the inode is new each time (and mtime, size as a backstop).
fn version_of(path: &Path) -> Result<u64, RiskError> {
    match fs::metadata(path) {
        Ok(m) => Ok(version_from(&m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path, e)),
    }
}

fn version_from(meta: &fs::Metadata) -> u64 {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0u64;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [u128::from(ino), mtime, u128::from(meta.len())] {
        for b in part.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    // 0 means "no file".
    h.max(1)
}

/// An exclusive advisory lock (`flock`) on `<file>.lock`, held while the open file lives: the
/// kernel drops it when the holder closes it, exits or is killed. The file is never removed
/// (removing a lock file races with the next writer opening it).
struct WriteLock {
    _file: fs::File,
    since: std::time::Instant,
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let held = self.since.elapsed();
        metrics::histogram!("tollgate_risk_list_lock_held_seconds").record(held.as_secs_f64());
        tracing::debug!(held_ms = held.as_millis(), "list file write lock released");
    }
}

impl WriteLock {
    fn open(path: &Path, create: bool) -> std::io::Result<fs::File> {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(sibling(path, "lock"))
    }

    /// Waits up to [`LOCK_WAIT`] for another writer's write to finish.
    fn acquire(path: &Path) -> Result<Self, RiskError> {
        let file = Self::open(path, true).map_err(|e| io_err(path, e))?;
        let start = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Self {
                        _file: file,
                        since: std::time::Instant::now(),
                    })
                }
                Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(io_err(
                        path,
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "another writer holds the lock file",
                        ),
                    ))
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err(path, e)),
            }
        }
    }

    /// The lock if it is free right now and the lock file exists (no writer ever ran: nothing
    /// to clean up).
    fn try_existing(path: &Path) -> std::io::Result<Option<Self>> {
        let file = Self::open(path, false)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self {
                _file: file,
                since: std::time::Instant::now(),
            })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
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

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
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
        // The lock file stays (its flock is the lock); no temp file does.
        assert_eq!(names(dir.path()), vec!["lists.json", "lists.json.lock"]);
    }

    #[test]
    fn upsert_keeps_one_entry_per_key_the_latest_winning() {
        let mut old = e(ListKind::Block, "1212*");
        old.reason = "old".into();
        let existing = vec![old, e(ListKind::Gray, "1212*"), e(ListKind::Allow, "44*")];
        let mut newer = e(ListKind::Block, "1212*");
        newer.reason = "new".into();
        let mut newest = newer.clone();
        newest.reason = "newest".into();
        let merged = upsert(
            existing,
            &[
                newer,
                e(ListKind::Block, "1*"),
                newest,
                e(ListKind::Allow, "44*"),
            ],
        );
        let keys: Vec<String> = merged
            .iter()
            .map(|x| format!("{}:{}:{}", x.list, x.pattern, x.reason))
            .collect();
        assert_eq!(
            keys,
            vec![
                "block:1*:why",
                "block:1212*:newest",
                "gray:1212*:why",
                "allow:44*:why"
            ]
        );
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

    /// Not a test on its own: the child process of
    /// `a_writer_killed_with_sigkill_leaves_no_lock_and_no_temp_file`. With
    /// `TOLLGATE_TEST_LOCK_HOLDER=<list file>` it takes the write lock, writes 3 MB of a temp
    /// file as a writer would, says so on stdout and waits to be killed.
    #[test]
    fn lock_holder_child() {
        let Some(path) = std::env::var_os("TOLLGATE_TEST_LOCK_HOLDER") else {
            return;
        };
        let path = PathBuf::from(path);
        let _lock = WriteLock::acquire(&path).unwrap();
        let tmp = sibling(&path, &format!("tmp.{}", std::process::id()));
        let mut f = fs::File::create(&tmp).unwrap();
        f.write_all(&vec![b' '; 3 << 20]).unwrap();
        f.sync_all().unwrap();
        println!("TOLLGATE-LOCKED");
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    #[tokio::test]
    async fn a_writer_killed_with_sigkill_leaves_no_lock_and_no_temp_file() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        let store = FileListStore::new(&path);
        store.add(e(ListKind::Block, "1212*")).await.unwrap();

        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "lists::file::tests::lock_holder_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TOLLGATE_TEST_LOCK_HOLDER", &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert_ne!(
                out.read_line(&mut line).unwrap(),
                0,
                "the child ended early"
            );
            if line.contains("TOLLGATE-LOCKED") {
                break;
            }
        }
        // The child holds the lock and has a temp file half written.
        assert!(WriteLock::try_existing(&path).unwrap().is_none());
        let tmp = format!("lists.json.tmp.{}", child.id());
        assert!(names(dir.path()).contains(&tmp));

        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let start = std::time::Instant::now();
        store.add(e(ListKind::Gray, "4420*")).await.unwrap();
        let took = start.elapsed();
        println!("the first write after the kill took {took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(names(dir.path()), vec!["lists.json", "lists.json.lock"]);
        let (_, entries) = store.load().await.unwrap();
        assert_eq!(entries.len(), 2);
    }

    #[tokio::test]
    async fn temp_files_left_by_a_dead_writer_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        FileListStore::new(&path)
            .add(e(ListKind::Block, "1*"))
            .await
            .unwrap();
        fs::write(dir.path().join("lists.json.tmp.999999"), b"half").unwrap();
        let _store = FileListStore::new(&path);
        assert_eq!(names(dir.path()), vec!["lists.json", "lists.json.lock"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_during_a_long_import_succeed_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists.json");
        let importer = std::sync::Arc::new(FileListStore::new(&path));
        let big: Vec<ListEntry> = (0..50_000u64)
            .map(|i| e(ListKind::Block, &format!("1{:010}", i * 7)))
            .collect();
        let start = std::time::Instant::now();
        let import = tokio::spawn({
            let s = std::sync::Arc::clone(&importer);
            async move { s.import(big).await.unwrap() }
        });
        // Another writer (as the server's API would be) adds entries while the import runs.
        let other = FileListStore::new(&path);
        let mut adds = Vec::new();
        for i in 0..5u32 {
            let t = std::time::Instant::now();
            other
                .add(e(ListKind::Allow, &format!("44{i}*")))
                .await
                .unwrap();
            adds.push(t.elapsed());
        }
        assert_eq!(import.await.unwrap(), 50_000);
        println!(
            "import took {:?}; adds meanwhile took {adds:?}",
            start.elapsed()
        );
        let (_, entries) = other.load().await.unwrap();
        assert_eq!(entries.len(), 50_005, "no write lost");
        assert_eq!(names(dir.path()), vec!["lists.json", "lists.json.lock"]);
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
