//! The index page's data, read once and kept while the store and the kill switches are
//! unchanged: every view of the page would otherwise open the store and decode every target's
//! latest journal entry, which is what made the page slow under load.
//!
//! A change is seen by each file's size, modification time and first [`HEAD_BYTES`] bytes: the
//! store rewrites its header on every commit, so a commit is seen even when it falls within the
//! same tick of the file system's clock and leaves the size as it was. A write by this process
//! (a cycle, a decision, a kill switch turned on the page) also drops the data at once; after
//! [`MAX_AGE`] it is read again whatever the files say.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;

/// The longest the data is kept, even when the files look unchanged.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// How much of the start of each file is compared.
pub const HEAD_BYTES: usize = 4096;

/// What one file looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: SystemTime,
    head: Vec<u8>,
}

/// What the files looked like when the data was read (`None`: absent or unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<Option<FileStamp>>);

impl Stamp {
    fn of(files: &[PathBuf]) -> Self {
        Self(files.iter().map(|file| file_stamp(file).ok()).collect())
    }
}

fn file_stamp(file: &Path) -> std::io::Result<FileStamp> {
    use std::io::Read as _;
    let opened = std::fs::File::open(file)?;
    let meta = opened.metadata()?;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    opened.take(HEAD_BYTES as u64).read_to_end(&mut head)?;
    Ok(FileStamp {
        len: meta.len(),
        modified: meta.modified()?,
        head,
    })
}

struct Entry<T> {
    stamp: Stamp,
    read_at: Instant,
    data: Arc<T>,
}

/// Data derived from files, read again only when they change.
pub struct FileCache<T> {
    files: Vec<PathBuf>,
    slot: Mutex<Option<Entry<T>>>,
}

impl<T> FileCache<T> {
    /// A cache of data read from these files.
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self {
            files,
            slot: Mutex::new(None),
        }
    }

    /// The files of the state directory the review page reads: the store and the kill switches.
    pub fn of_state_dir(dir: &Path) -> Self {
        Self::new(vec![
            dir.join(setpoint_state::DB_FILE),
            dir.join(setpoint_state::KILL_SWITCHES_FILE),
        ])
    }

    /// Forgets the data (after this process wrote to the files).
    pub async fn invalidate(&self) {
        *self.slot.lock().await = None;
    }

    /// The data, read by `read` when the files changed since it was last read or it is older
    /// than [`MAX_AGE`]. One reader at a time: views arriving together wait for one read
    /// instead of each doing it.
    pub async fn get<E, F, Fut>(&self, read: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        // Stamped before reading: a write landing during the read makes the next view read
        // again rather than keep what may predate it.
        let stamp = Stamp::of(&self.files);
        if let Some(entry) = slot.as_ref()
            && entry.stamp == stamp
            && entry.read_at.elapsed() < MAX_AGE
        {
            return Ok(entry.data.clone());
        }
        let data = Arc::new(read().await?);
        *slot = Some(Entry {
            stamp,
            read_at: Instant::now(),
            data: data.clone(),
        });
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn read_again_only_when_a_file_changes_or_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("data");
        std::fs::write(&file, "one").unwrap_or_else(|e| panic!("{e}"));
        let cache = FileCache::new(vec![file.clone(), dir.path().join("missing")]);
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            std::fs::read_to_string(&file)
        };
        assert_eq!(*cache.get(read).await.unwrap_or_default(), "one");
        assert_eq!(*cache.get(read).await.unwrap_or_default(), "one");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Same size, possibly within the same tick of the clock: seen by its bytes.
        std::fs::write(&file, "two").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(*cache.get(read).await.unwrap_or_default(), "two");
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        std::fs::write(&file, "three").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(*cache.get(read).await.unwrap_or_default(), "three");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        assert_eq!(*cache.get(read).await.unwrap_or_default(), "three");
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        cache.invalidate().await;
        assert_eq!(*cache.get(read).await.unwrap_or_default(), "three");
        assert_eq!(reads.load(Ordering::SeqCst), 4);
        // A failed read keeps nothing.
        let failing = || async { Err::<String, &str>("no") };
        cache.invalidate().await;
        assert!(cache.get(failing).await.is_err());
        assert_eq!(*cache.get(read).await.unwrap_or_default(), "three");
        assert_eq!(reads.load(Ordering::SeqCst), 5);
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    /// The cache relies on the store rewriting the start of its file on every commit; an
    /// upgrade of the store library that stops doing so must fail here, not go stale in use.
    #[test]
    fn every_commit_to_the_store_changes_the_start_of_its_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join(setpoint_state::DB_FILE);
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        // Commits by a store held open (a cycle), then its close.
        let store = setpoint_state::Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let mut heads = Vec::new();
        for _ in 0..3 {
            store
                .begin_cycle("weekly", now)
                .unwrap_or_else(|e| panic!("{e}"));
            heads.push(file_stamp(&file).unwrap_or_else(|e| panic!("{e}")).head);
        }
        drop(store);
        heads.push(file_stamp(&file).unwrap_or_else(|e| panic!("{e}")).head);
        for pair in heads.windows(2) {
            assert_ne!(pair[0], pair[1]);
        }
    }
}
