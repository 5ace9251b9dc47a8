//! The embedded state store: everything setpoint remembers between runs, in one directory.
//!
//! One [redb](https://docs.rs/redb) file (`setpoint.redb`) holds these tables, and the model
//! registry's three (see [`models`]):
//!
//! | table | key | value |
//! |---|---|---|
//! | `history` | `loop ␟ target` | [`TargetHistory`] (JSON) |
//! | `journal` | `target ␟ loop ␟ cycle` | [`JournalEntry`] (JSON) |
//! | `cycles` | `loop ␟ cycle` | [`CycleRecord`] (JSON) |
//! | `meta` | a name | cycle counters |
//! | `intents` | idempotency key | [`setpoint_core::Intent`] (JSON), see [`intents`] |
//! | `reviews` | id | [`setpoint_core::ReviewItem`] (JSON), see [`reviews`] |
//! | `control` | `loop ␟ service ␟ time` | [`setpoint_core::control::ControlRecord`] (JSON), see [`control`] |
//!
//! The kill switches live beside it in `kill-switches.json` (see [`KILL_SWITCHES_FILE`]).
//!
//! A target's journal entry and its updated history are written in one transaction, so a crash
//! between targets loses nothing already decided and never leaves history ahead of the journal.
//! JSON values keep the store readable by humans and tolerant of added fields.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use setpoint_core::{JournalEntry, KillSwitches, TargetHistory};

mod backup;
mod chain;
pub mod control;
pub mod intents;
pub mod models;
pub mod reviews;
pub use backup::{BACKUPS_DIR, SCHEMA_VERSION, StoreSummary, restore};
pub use chain::{ChainBreak, ChainHead, ChainReport, Link, LinkKind};
pub use intents::FollowUps;
pub use models::{ModelRecord, Promotion, PromotionKind};

const HISTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("history");
const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");
const CYCLES: TableDefinition<&str, &[u8]> = TableDefinition::new("cycles");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Separates key parts; a unit separator cannot appear in loop names or target ids we accept.
const SEP: char = '\u{1f}';

/// The file name of the database inside the state directory.
pub const DB_FILE: &str = "setpoint.redb";

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the database open.
    #[error(
        "state directory {path} is in use by another setpoint process (only one may write it at a time)"
    )]
    InUse {
        /// The directory.
        path: PathBuf,
    },
    /// The database could not be opened.
    #[error("cannot open state database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The database error.
        #[source]
        source: redb::DatabaseError,
    },
    /// A read or write failed.
    #[error("state database {path}: {message}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The database file is damaged: emptied, truncated, overwritten or failing its checksums.
    /// Nothing was changed; recovery is the operator's explicit choice.
    #[error(
        "state database {path} is damaged: {detail}. Nothing was changed. `setpoint state check` \
         says what is wrong; `setpoint state restore FILE` puts back a backup; moving the file \
         aside starts a new store without its history, journal and reviews"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The kill-switch file is gone from a state directory that has a store: a switch that was
    /// on may have been deleted with it.
    #[error(
        "kill switches: {path} is missing from a state directory that has a store, so a switch \
         that was on may have been deleted with it; nothing ran. Put the file back, or, if no \
         switch should be on, recreate it with `setpoint kill-switch off` (all off)"
    )]
    KillSwitchesMissing {
        /// The file.
        path: PathBuf,
    },
    /// The kill-switch file is not one setpoint wrote.
    #[error(
        "kill switches: {path} is not a kill-switch file ({problem}); nothing ran. Fix it or \
         recreate it with `setpoint kill-switch off` (all off) after checking which switches \
         should be on"
    )]
    KillSwitchesMalformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A stored value could not be decoded (written by an incompatible version, or damaged).
    #[error("state database {path}: record {key:?} is unreadable: {source}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The record's key.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// No registered model of the loop has that version.
    #[error("loop {loop_name:?} has no model version {version:?} (see `setpoint models list`)")]
    UnknownModel {
        /// The loop.
        loop_name: String,
        /// The version asked for.
        version: String,
    },
    /// A version prefix matches several models, or is too short to be trusted.
    #[error(
        "model version {version:?} of loop {loop_name:?} is ambiguous: give at least 6 characters of a hash{}",
        if matches.is_empty() { String::new() } else { format!(" (matches {})", matches.join(", ")) }
    )]
    AmbiguousModel {
        /// The loop.
        loop_name: String,
        /// The prefix asked for.
        version: String,
        /// The versions it matches.
        matches: Vec<String>,
    },
    /// No review has that id.
    #[error("no review {id} (see `setpoint review list`)")]
    UnknownReview {
        /// The id asked for.
        id: u64,
    },
    /// The review was already decided, superseded or expired.
    #[error(
        "review {id} is {status}, not pending: only a pending review can be approved or rejected"
    )]
    ReviewNotPending {
        /// The review.
        id: u64,
        /// Its status.
        status: String,
    },
    /// A rollback was asked for with no earlier promotion to return to.
    #[error("loop {loop_name:?} has no earlier promoted model to roll back to")]
    NothingToRollBack {
        /// The loop.
        loop_name: String,
    },
    /// A loop name or target id contains a character the store reserves.
    #[error("invalid name {0:?}: control characters are not allowed in loop names or target ids")]
    InvalidName(String),
}

/// Result of state operations.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// How a cycle ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleStatus {
    /// Still running (or the process died while it ran).
    Running,
    /// Every target was processed (some may have failed).
    Completed,
    /// Stopped by a signal or a crash before every target was processed.
    Interrupted,
}

/// One cycle of one loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// Loop name.
    pub loop_name: String,
    /// Sequence number within the loop, from 1.
    pub cycle: u64,
    /// The cycle's `now`.
    pub now: DateTime<Utc>,
    /// How it ended.
    pub status: CycleStatus,
    /// Targets processed.
    pub targets: usize,
    /// Targets whose cycle failed at some stage.
    pub failed: usize,
    /// Range queries issued to the metric source.
    pub queries: usize,
}

/// Which kill switch to flip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillSwitchScope {
    /// Every loop and target.
    Global,
    /// One loop.
    Loop(String),
    /// One target.
    Target(String),
}

impl KillSwitchScope {
    /// The switch's key, as `kill_switches.json` records who set it: `global`, `loop:NAME` or
    /// `target:ID` — the form [`str::parse`] reads back.
    pub fn key(&self) -> String {
        match self {
            KillSwitchScope::Global => "global".to_string(),
            KillSwitchScope::Loop(name) => format!("loop:{name}"),
            KillSwitchScope::Target(id) => format!("target:{id}"),
        }
    }
}

impl std::str::FromStr for KillSwitchScope {
    type Err = String;

    /// Reads `global`, `loop:NAME` or `target:ID` (surrounding blanks ignored).
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text == "global" {
            return Ok(KillSwitchScope::Global);
        }
        let named = |rest: &str| {
            Some(rest.trim())
                .filter(|r| !r.is_empty())
                .map(str::to_string)
        };
        if let Some(name) = text.strip_prefix("loop:").and_then(named) {
            return Ok(KillSwitchScope::Loop(name));
        }
        if let Some(id) = text.strip_prefix("target:").and_then(named) {
            return Ok(KillSwitchScope::Target(id));
        }
        Err(format!(
            "unknown kill switch {text:?}: say global, loop:NAME or target:ID"
        ))
    }
}

/// The store. Cheap to share by reference; redb serialises writers itself.
pub struct Store {
    db: Db,
    path: PathBuf,
    /// Whether this open checked the whole file.
    checked_whole: bool,
}

/// The database as this process opened it: to write (one process at a time), or to read a
/// snapshot while another process writes.
enum Db {
    Writer(WriterDb),
    Reader(redb::ReadOnlyDatabase),
}

/// The database opened to write, and what remembers how this process left the file.
struct WriterDb {
    /// Dropped first (fields drop in order), closing the file.
    db: Database,
    /// Then this notes the closed file, so the next open by this process can tell whether
    /// anything else has written it since.
    _closed: NoteOnClose,
}

/// Records, when dropped, how the file looks: its size, modification time and contents' hash.
struct NoteOnClose {
    path: PathBuf,
}

impl Drop for NoteOnClose {
    fn drop(&mut self) {
        let stamp = file_stamp(&self.path);
        let mut closed = closed_as();
        match stamp {
            Some(stamp) => closed.insert(self.path.clone(), stamp),
            None => closed.remove(&self.path),
        };
    }
}

/// How a file looks: size, modification time and a hash of every byte. Hashing streams the
/// file in constant memory, far cheaper than the store library's whole check, which rebuilds
/// the allocator's state of every page; and unlike the size and time alone it sees a change
/// made within one tick of the file system's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: std::time::SystemTime,
    hash: u64,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::hash::Hasher as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let mut hasher = std::hash::DefaultHasher::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer).ok()?;
        if read == 0 {
            break;
        }
        hasher.write(buffer.get(..read)?);
    }
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok()?,
        hash: hasher.finish(),
    })
}

/// How this process last closed each store it wrote.
fn closed_as() -> std::sync::MutexGuard<'static, std::collections::BTreeMap<PathBuf, FileStamp>> {
    static CLOSED: std::sync::Mutex<std::collections::BTreeMap<PathBuf, FileStamp>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    // A panic while holding it leaves at worst a stale stamp, which only costs a whole check.
    CLOSED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a write transaction could not start.
#[derive(Debug, thiserror::Error)]
enum DbError {
    #[error(transparent)]
    Transaction(#[from] redb::TransactionError),
    #[error("the store was opened for reading only")]
    ReadOnly,
}

impl Db {
    fn begin_read(&self) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Db::Writer(writer) => writer.db.begin_read(),
            Db::Reader(db) => db.begin_read(),
        }
    }

    fn begin_write(&self) -> std::result::Result<redb::WriteTransaction, DbError> {
        match self {
            Db::Writer(writer) => Ok(writer.db.begin_write()?),
            Db::Reader(_) => Err(DbError::ReadOnly),
        }
    }
}

/// Every process opens the file in this mode: one writer, and readers that read snapshots
/// beside it instead of waiting for it.
const CONCURRENCY: redb::ConcurrencyMode = redb::ConcurrencyMode::SingleWriter;

/// The store library's page cache, per open. Its default (1 GiB) lets a process hold every
/// page it ever read, so the memory of a run grew with the store, which the whole check at
/// open reads entirely; a cycle's reads and writes touch a small part of it.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A builder with the settings every open shares.
fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_concurrency_mode(CONCURRENCY);
    builder.set_cache_size(CACHE_BYTES);
    builder
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn key(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.push_str(part);
    }
    out
}

fn cycle_part(cycle: u64) -> String {
    // Zero-padded so that lexicographic key order is numeric order.
    format!("{cycle:020}")
}

fn check_name(name: &str) -> Result<()> {
    if name.chars().any(char::is_control) {
        return Err(StateError::InvalidName(name.to_string()));
    }
    Ok(())
}

impl Store {
    /// Opens the store in `dir`, creating it (and an all-off kill-switch file) when there is
    /// none. An existing database is checked whole as it opens — unless this process closed it
    /// last and nothing has written it since (a long-running `run` or `serve` opening it for
    /// each cycle), so the check costs once per change from outside, not once per cycle: an
    /// emptied, truncated or overwritten file is refused with [`StateError::Damaged`] — never
    /// started afresh over, never panicked on.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let damaged = |detail: String| StateError::Damaged {
            path: path.clone(),
            detail,
        };
        let exists = match std::fs::metadata(&path) {
            // The store library initialises an empty file as a new database: the history that
            // was in it would be gone without a word.
            Ok(meta) if meta.len() == 0 => {
                return Err(damaged(
                    "it is empty (0 bytes), so everything it held is gone".to_string(),
                ));
            }
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(StateError::Storage {
                    path: path.clone(),
                    message: e.to_string(),
                });
            }
        };
        let as_closed = exists
            && closed_as()
                .get(&path)
                .is_some_and(|stamp| file_stamp(&path).as_ref() == Some(stamp));
        let check_whole = exists && !as_closed;
        // The whole check always goes through the store library's repair, so whether the last
        // writer shut down cleanly is asked first, of a reader's open that refuses to repair.
        let unclean = check_whole && {
            let probe = builder();
            matches!(
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    probe.open_read_only(&path).map(drop)
                })),
                Ok(Err(redb::DatabaseError::RepairAborted))
            )
        };
        let repaired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut builder = builder();
        builder.set_check_integrity_on_open(check_whole);
        let noticed = repaired.clone();
        builder.set_repair_callback(move |_| {
            noticed.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        // The store library may panic on a file damaged outside it (its debug builds do on
        // purpose): that is a damaged file to report, not a crash.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if exists {
                builder.open(&path)
            } else {
                builder.create(&path)
            }
        }));
        let db = match opened {
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(damaged(format!("reading it failed ({message})")));
            }
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(StateError::InUse {
                    path: dir.to_path_buf(),
                });
            }
            Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => {
                return Err(damaged(detail));
            }
            Ok(Err(source)) => return Err(StateError::Open { path, source }),
            Ok(Ok(db)) => db,
        };
        if unclean || (!check_whole && repaired.load(std::sync::atomic::Ordering::Relaxed)) {
            // After a crash mid-write: the store library rolls back to the last whole commit.
            tracing::warn!(path = %path.display(), "state database repaired after an unclean shutdown");
        }
        let store = Self {
            db: Db::Writer(WriterDb {
                db,
                _closed: NoteOnClose { path: path.clone() },
            }),
            path,
            checked_whole: check_whole,
        };
        if exists {
            let version = store.schema_version()?;
            if version > SCHEMA_VERSION {
                return Err(StateError::Storage {
                    path: store.path.clone(),
                    message: format!(
                        "written in schema {version} by a newer setpoint (this one knows {SCHEMA_VERSION}); upgrade setpoint"
                    ),
                });
            }
            if version < SCHEMA_VERSION {
                // Migrating rewrites the store: a copy as it was is kept first.
                let mut to = dir
                    .join(BACKUPS_DIR)
                    .join(format!("before-schema-{SCHEMA_VERSION}"));
                let mut n = 1;
                while to.exists() {
                    n += 1;
                    to = dir
                        .join(BACKUPS_DIR)
                        .join(format!("before-schema-{SCHEMA_VERSION}-{n}"));
                }
                store.backup_to(dir, &to)?;
                tracing::info!(from = version, to = SCHEMA_VERSION, backup = %to.display(), "migrating the state store; a copy as it was is kept");
            }
        }
        store.create_tables()?;
        store.set_schema_version()?;
        store.start_chain()?;
        let switches = dir.join(KILL_SWITCHES_FILE);
        if !exists && !switches.exists() {
            write_kill_switches(dir, &KillSwitches::default())?;
        }
        Ok(store)
    }

    /// Whether opening checked the whole file: always for a store this process did not close
    /// last, or that anything else wrote since; never for a new one or a reader's snapshot.
    pub fn checked_whole_on_open(&self) -> bool {
        self.checked_whole
    }

    /// Opens the store to read it, without waiting for a process that writes it (a running
    /// cycle): what was committed when each read starts is what is read. A state directory
    /// without a store yet gets a new one, as [`Store::open`] makes it. Writing through this
    /// store fails.
    pub fn open_for_reading(dir: &Path) -> Result<Self> {
        let path = dir.join(DB_FILE);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > 0 => {}
            // Nothing to read beside a writer: an empty file is refused by the writer's open.
            _ => return Self::open(dir),
        }
        let builder = builder();
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            builder.open_read_only(&path)
        }));
        match opened {
            Ok(Ok(db)) => Ok(Self {
                db: Db::Reader(db),
                path,
                checked_whole: false,
            }),
            // Left by a writer that did not close it (a crash, a copied file): only a writer
            // may repair it, which the store's own open does, checking it whole.
            Ok(Err(redb::DatabaseError::RepairAborted)) => {
                Self::open_waiting(dir, std::time::Duration::from_secs(30))
            }
            Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => {
                Err(StateError::Damaged { path, detail })
            }
            Ok(Err(source)) => Err(StateError::Open { path, source }),
            Err(_) => Err(StateError::Damaged {
                path,
                detail: "reading it failed".to_string(),
            }),
        }
    }

    /// Opens the store, waiting up to `wait` while another process (a running cycle) holds it.
    ///
    /// For commands that read between cycles of a long-running `setpoint run`, which holds the
    /// store only while a cycle runs.
    pub fn open_waiting(dir: &Path, wait: std::time::Duration) -> Result<Self> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Self::open(dir) {
                Err(StateError::InUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn storage(&self, error: impl std::fmt::Display) -> StateError {
        StateError::Storage {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    fn create_tables(&self) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        for table in [
            HISTORY,
            JOURNAL,
            CYCLES,
            META,
            models::MODELS,
            models::PROMOTED,
            models::PROMOTIONS,
            reviews::REVIEWS,
            reviews::REVIEWS_BY_TARGET,
            intents::INTENTS,
            chain::CHAIN,
            control::CONTROL,
            control::CONTROL_INTENTS,
            control::CONTROL_CHANGES,
        ] {
            txn.open_table(table).map_err(|e| self.storage(e))?;
        }
        txn.commit().map_err(|e| self.storage(e))?;
        self.index_reviews()
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, key: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|source| StateError::Corrupt {
            path: self.path.clone(),
            key: key.replace(SEP, "/"),
            source,
        })
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| self.storage(e))
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(table).map_err(|e| self.storage(e))?;
        let value = table.get(key).map_err(|e| self.storage(e))?;
        value.map(|v| self.decode(key, v.value())).transpose()
    }

    /// Scans `table` for keys starting with `prefix`, in key order.
    fn scan<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        prefix: &str,
    ) -> Result<Vec<T>> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(table).map_err(|e| self.storage(e))?;
        let mut out = Vec::new();
        for item in table.range(prefix..).map_err(|e| self.storage(e))? {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push(self.decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Starts a new cycle of `loop_name` and returns its sequence number.
    ///
    /// A cycle of this loop still marked running belongs to a process that died: it is marked
    /// interrupted first, so the record says what happened.
    pub fn begin_cycle(&self, loop_name: &str, now: DateTime<Utc>) -> Result<u64> {
        check_name(loop_name)?;
        let counter_key = key(&["cycle_seq", loop_name]);
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        let cycle = {
            let mut meta = txn.open_table(META).map_err(|e| self.storage(e))?;
            let last: u64 = match meta
                .get(counter_key.as_str())
                .map_err(|e| self.storage(e))?
            {
                Some(v) => self.decode(&counter_key, v.value())?,
                None => 0,
            };
            let next = last + 1;
            meta.insert(counter_key.as_str(), self.encode(&next)?.as_slice())
                .map_err(|e| self.storage(e))?;
            next
        };
        {
            let mut cycles = txn.open_table(CYCLES).map_err(|e| self.storage(e))?;
            let prefix = key(&[loop_name, ""]);
            let mut stale = Vec::new();
            for item in cycles
                .range(prefix.as_str()..)
                .map_err(|e| self.storage(e))?
            {
                let (k, v) = item.map_err(|e| self.storage(e))?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                let record: CycleRecord = self.decode(k.value(), v.value())?;
                if record.status == CycleStatus::Running {
                    stale.push((k.value().to_string(), record));
                }
            }
            for (k, mut record) in stale {
                record.status = CycleStatus::Interrupted;
                cycles
                    .insert(k.as_str(), self.encode(&record)?.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
            let record = CycleRecord {
                loop_name: loop_name.to_string(),
                cycle,
                now,
                status: CycleStatus::Running,
                targets: 0,
                failed: 0,
                queries: 0,
            };
            let k = key(&[loop_name, &cycle_part(cycle)]);
            cycles
                .insert(k.as_str(), self.encode(&record)?.as_slice())
                .map_err(|e| self.storage(e))?;
        }
        txn.commit().map_err(|e| self.storage(e))?;
        Ok(cycle)
    }

    /// Records one target's cycle: its journal entry and its updated history, atomically.
    pub fn record_target(&self, entry: &JournalEntry, history: &TargetHistory) -> Result<()> {
        self.record_target_with(entry, history, FollowUps::default())
            .map(|_| ())
    }

    /// Marks a cycle finished with its final status and counts.
    pub fn finish_cycle(&self, record: &CycleRecord) -> Result<()> {
        let k = key(&[&record.loop_name, &cycle_part(record.cycle)]);
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut cycles = txn.open_table(CYCLES).map_err(|e| self.storage(e))?;
            cycles
                .insert(k.as_str(), self.encode(record)?.as_slice())
                .map_err(|e| self.storage(e))?;
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// The history of a target in a loop, if it has been seen before.
    pub fn history(&self, loop_name: &str, target: &str) -> Result<Option<TargetHistory>> {
        self.get(HISTORY, &key(&[loop_name, target]))
    }

    /// The cycles of a loop, oldest first.
    pub fn cycles(&self, loop_name: &str) -> Result<Vec<CycleRecord>> {
        self.scan(CYCLES, &key(&[loop_name, ""]))
    }

    /// Every journal entry of a target, across loops, oldest first.
    pub fn entries(&self, target: &str) -> Result<Vec<JournalEntry>> {
        let mut entries: Vec<JournalEntry> = self.scan(JOURNAL, &key(&[target, ""]))?;
        entries.sort_by(|a, b| a.at.cmp(&b.at).then(a.cycle.cmp(&b.cycle)));
        Ok(entries)
    }

    /// The most recent journal entry of a target, across loops.
    pub fn last_entry(&self, target: &str) -> Result<Option<JournalEntry>> {
        Ok(self.entries(target)?.pop())
    }

    /// Every target id that has a journal entry, sorted.
    pub fn targets(&self) -> Result<Vec<String>> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(JOURNAL).map_err(|e| self.storage(e))?;
        let mut out: Vec<String> = Vec::new();
        for item in table.iter().map_err(|e| self.storage(e))? {
            let (k, _) = item.map_err(|e| self.storage(e))?;
            if let Some(target) = k.value().split(SEP).next()
                && out.last().map(String::as_str) != Some(target)
            {
                out.push(target.to_string());
            }
        }
        Ok(out)
    }
}

/// The file, inside the state directory, that holds the kill switches.
///
/// Kept outside the database on purpose: a running `setpoint run` holds the database open, and an
/// operator must be able to flip a kill switch at any moment. The file is replaced atomically
/// (write to a temporary file, then rename), and every cycle reads it afresh, so a switch is
/// honoured from the next cycle on.
pub const KILL_SWITCHES_FILE: &str = "kill-switches.json";

/// Reads the kill switches stored in `dir`: all off when there is no state at all yet. The
/// file is created with the store, so its absence beside one is
/// [`StateError::KillSwitchesMissing`], and anything but the file setpoint writes (`[]`, `{}`,
/// other keys) is [`StateError::KillSwitchesMalformed`]: a kill switch that can vanish
/// silently is none.
pub fn read_kill_switches(dir: &Path) -> Result<KillSwitches> {
    let path = dir.join(KILL_SWITCHES_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            parse_kill_switches(&bytes).map_err(|problem| StateError::KillSwitchesMalformed {
                path: path.clone(),
                problem,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join(DB_FILE).exists() {
                Err(StateError::KillSwitchesMissing { path })
            } else {
                Ok(KillSwitches::default())
            }
        }
        Err(e) => Err(StateError::Storage {
            path,
            message: e.to_string(),
        }),
    }
}

/// The switches of a kill-switch file: an object with exactly the keys setpoint writes.
fn parse_kill_switches(bytes: &[u8]) -> std::result::Result<KillSwitches, String> {
    /// The file as written: every key present (an older file has no `set_by`).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        global: bool,
        loops: std::collections::BTreeMap<String, bool>,
        targets: std::collections::BTreeMap<String, bool>,
        #[serde(default)]
        set_by: std::collections::BTreeMap<String, setpoint_core::SwitchSetter>,
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err(format!("expected an object, found {value}"));
    }
    let file: File = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok(KillSwitches {
        global: file.global,
        loops: file.loops,
        targets: file.targets,
        set_by: file.set_by,
    })
}

/// Turns a kill switch on or off in `dir` and returns the resulting set.
pub fn set_kill_switch(dir: &Path, scope: &KillSwitchScope, on: bool) -> Result<KillSwitches> {
    set_kill_switch_by(dir, scope, on, None)
}

/// [`set_kill_switch`], recording who turned it on and when (`by`: user and time).
pub fn set_kill_switch_by(
    dir: &Path,
    scope: &KillSwitchScope,
    on: bool,
    by: Option<(&str, DateTime<Utc>)>,
) -> Result<KillSwitches> {
    std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    // Turning a switch off is also how an operator recreates a missing or malformed file
    // (all off), having checked which switches should be on; turning one on never builds on
    // switches it cannot read.
    let mut switches = match (read_kill_switches(dir), on) {
        (Ok(switches), _) => switches,
        (
            Err(StateError::KillSwitchesMissing { .. } | StateError::KillSwitchesMalformed { .. }),
            false,
        ) => KillSwitches::default(),
        (Err(error), _) => return Err(error),
    };
    let key = scope.key();
    match (on, by) {
        (true, Some((by, at))) => {
            switches.set_by.insert(
                key,
                setpoint_core::SwitchSetter {
                    by: by.to_string(),
                    at,
                },
            );
        }
        (true, None) => {}
        (false, _) => {
            switches.set_by.remove(&key);
        }
    }
    match scope {
        KillSwitchScope::Global => switches.global = on,
        KillSwitchScope::Loop(name) => {
            check_name(name)?;
            if on {
                switches.loops.insert(name.clone(), true);
            } else {
                switches.loops.remove(name);
            }
        }
        KillSwitchScope::Target(id) => {
            check_name(id)?;
            if on {
                switches.targets.insert(id.clone(), true);
            } else {
                switches.targets.remove(id);
            }
        }
    }
    write_kill_switches(dir, &switches)?;
    Ok(switches)
}

/// Replaces the kill-switch file atomically (a temporary file, synced, then renamed).
fn write_kill_switches(dir: &Path, switches: &KillSwitches) -> Result<()> {
    let path = dir.join(KILL_SWITCHES_FILE);
    let io = |e: std::io::Error| StateError::Storage {
        path: path.clone(),
        message: e.to_string(),
    };
    let mut text = serde_json::to_string_pretty(switches).map_err(|e| StateError::Storage {
        path: path.clone(),
        message: e.to_string(),
    })?;
    text.push('\n');
    let tmp = dir.join(format!("{KILL_SWITCHES_FILE}.tmp"));
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use setpoint_core::{Class, Resources, Target};

    #[test]
    fn kill_switch_keys_read_back_as_their_scope() {
        for scope in [
            KillSwitchScope::Global,
            KillSwitchScope::Loop("weekly".into()),
            KillSwitchScope::Target("pg-reporting-01".into()),
        ] {
            assert_eq!(scope.key().parse::<KillSwitchScope>(), Ok(scope));
        }
        assert_eq!(
            " loop: weekly ".parse::<KillSwitchScope>(),
            Ok(KillSwitchScope::Loop("weekly".into()))
        );
        for bad in ["", "loop:", "target: ", "everything", "Global"] {
            let error = bad.parse::<KillSwitchScope>().unwrap_err();
            assert!(
                error.contains("say global, loop:NAME or target:ID"),
                "{error}"
            );
        }
    }

    /// A fixed time for the tests: a Monday 06:00 UTC.
    pub(crate) fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    pub(crate) fn entry(target: &str, cycle: u64, at: DateTime<Utc>) -> JournalEntry {
        let target = Target {
            id: target.into(),
            technology: "postgres".into(),
            labels: Default::default(),
            resources: Resources {
                cpu_millicores: 8000,
                memory_bytes: 1 << 35,
                replicas: 1,
                parameters: Default::default(),
            },
        };
        let mut entry = JournalEntry::begin("weekly", cycle, at, target, "postgres 0.1.0");
        entry.stable_cycles = cycle as u32;
        entry
    }

    #[test]
    fn history_and_journal_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        {
            let store = Store::open(dir.path()).unwrap();
            for expected in 1..=3 {
                let cycle = store.begin_cycle("weekly", now).unwrap();
                assert_eq!(cycle, expected);
                let mut history = store
                    .history("weekly", "pg-1")
                    .unwrap()
                    .unwrap_or_else(|| TargetHistory::new(now));
                history.record_class(now, Class::ScaleDown);
                store
                    .record_target(&entry("pg-1", cycle, now), &history)
                    .unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let history = store.history("weekly", "pg-1").unwrap().unwrap();
        assert_eq!(history.stable_cycles, 3);
        assert_eq!(store.entries("pg-1").unwrap().len(), 3);
        assert_eq!(store.last_entry("pg-1").unwrap().unwrap().cycle, 3);
        assert_eq!(store.targets().unwrap(), vec!["pg-1".to_string()]);
        assert!(store.last_entry("pg-2").unwrap().is_none());
    }

    #[test]
    fn a_cycle_left_running_is_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        store.begin_cycle("weekly", now).unwrap();
        store.begin_cycle("weekly", now).unwrap();
        let cycles = store.cycles("weekly").unwrap();
        assert_eq!(cycles[0].status, CycleStatus::Interrupted);
        assert_eq!(cycles[1].status, CycleStatus::Running);
    }

    #[test]
    fn kill_switches_toggle_per_scope() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        assert_eq!(read_kill_switches(dir).unwrap(), KillSwitches::default());
        set_kill_switch(dir, &KillSwitchScope::Global, true).unwrap();
        set_kill_switch(dir, &KillSwitchScope::Target("pg-1".into()), true).unwrap();
        let switches = read_kill_switches(dir).unwrap();
        assert!(switches.global);
        assert_eq!(switches.targets.get("pg-1"), Some(&true));
        set_kill_switch(dir, &KillSwitchScope::Global, false).unwrap();
        set_kill_switch(dir, &KillSwitchScope::Target("pg-1".into()), false).unwrap();
        assert_eq!(read_kill_switches(dir).unwrap(), KillSwitches::default());
    }

    #[test]
    fn control_characters_in_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.begin_cycle("bad\u{1f}loop", Utc::now()),
            Err(StateError::InvalidName(_))
        ));
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path());
        assert!(
            matches!(second, Err(StateError::InUse { .. })),
            "{second:?}"
        );
    }

    /// A store with a few cycles of one target, closed.
    fn filled(dir: &Path) -> DateTime<Utc> {
        let now = at();
        let store = Store::open(dir).unwrap();
        for _ in 0..20 {
            let cycle = store.begin_cycle("weekly", now).unwrap();
            let history = TargetHistory::new(now);
            store
                .record_target(&entry("pg-1", cycle, now), &history)
                .unwrap();
        }
        now
    }

    #[test]
    fn an_emptied_store_is_refused_not_started_afresh() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        let error = Store::open(dir.path()).unwrap_err();
        assert!(matches!(error, StateError::Damaged { .. }), "{error}");
        assert!(error.to_string().contains("empty (0 bytes)"), "{error}");
        // Refusing changed nothing: still empty, not a new database.
        assert_eq!(
            std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len(),
            0
        );
    }

    #[test]
    fn an_overwritten_store_is_refused_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let path = dir.path().join(DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Everything after the header: the roots point into garbage.
        let mut noise = 0x9e37_79b9_7f4a_7c15_u64;
        for byte in bytes.iter_mut().skip(4096) {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            *byte = noise as u8;
        }
        std::fs::write(&path, &bytes).unwrap();
        let error = Store::open(dir.path()).unwrap_err();
        assert!(matches!(error, StateError::Damaged { .. }), "{error}");
        assert!(
            error.to_string().contains("setpoint state restore"),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was changed");
    }

    #[test]
    fn a_store_is_checked_whole_unless_this_process_closed_it_and_nothing_wrote_it_since() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        // Closed by this process, untouched since: not read whole again.
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.checked_whole_on_open());
        drop(store);
        // Another writer (a copy put back, a restore, a tamper) at the same size and time:
        // checked whole.
        let path = dir.path().join(DB_FILE);
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        match Store::open(dir.path()) {
            Ok(store) => assert!(store.checked_whole_on_open()),
            Err(error) => assert!(matches!(error, StateError::Damaged { .. }), "{error}"),
        }
    }

    #[test]
    fn noise_in_the_middle_of_a_store_is_refused_or_harmless() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let path = dir.path().join(DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let (from, len) = (bytes.len() / 2, (64 << 10).min(bytes.len() / 2));
        for (i, byte) in bytes[from..from + len].iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(31) ^ 0xa5;
        }
        std::fs::write(&path, &bytes).unwrap();
        match Store::open(dir.path()) {
            // The noise hit committed data: refused.
            Err(StateError::Damaged { .. }) => {}
            // It hit free pages only: every record is still there.
            Ok(store) => {
                assert_eq!(store.entries("pg-1").unwrap().len(), 20);
                assert_eq!(store.cycles("weekly").unwrap().len(), 20);
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn kill_switches_that_vanish_or_are_not_ours_stop_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        // No state yet: nothing was ever switched on.
        assert_eq!(
            read_kill_switches(dir.path()).unwrap(),
            KillSwitches::default()
        );
        filled(dir.path());
        let file = dir.path().join(KILL_SWITCHES_FILE);
        assert!(file.exists(), "created with the store");
        set_kill_switch(dir.path(), &KillSwitchScope::Loop("weekly".into()), true).unwrap();

        std::fs::remove_file(&file).unwrap();
        let error = read_kill_switches(dir.path()).unwrap_err();
        assert!(
            matches!(error, StateError::KillSwitchesMissing { .. }),
            "{error}"
        );
        // Turning one on never builds on switches it cannot read.
        assert!(set_kill_switch(dir.path(), &KillSwitchScope::Global, true).is_err());
        for junk in [
            "[]",
            "{}",
            r#"{"hello":1}"#,
            "not json",
            r#"{"global":false,"loops":{},"targets":{},"extra":1}"#,
        ] {
            std::fs::write(&file, junk).unwrap();
            let error = read_kill_switches(dir.path()).unwrap_err();
            assert!(
                matches!(error, StateError::KillSwitchesMalformed { .. }),
                "{junk}: {error}"
            );
        }
        // A file written before `set_by` was recorded still reads.
        std::fs::write(&file, r#"{"global":true,"loops":{},"targets":{}}"#).unwrap();
        assert!(read_kill_switches(dir.path()).unwrap().global);
        // The explicit way back: all off, written anew.
        std::fs::remove_file(&file).unwrap();
        let switches = set_kill_switch(dir.path(), &KillSwitchScope::Global, false).unwrap();
        assert_eq!(switches, KillSwitches::default());
        assert_eq!(
            read_kill_switches(dir.path()).unwrap(),
            KillSwitches::default()
        );
    }
}
