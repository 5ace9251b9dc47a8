//! Explicit recovery: what a store holds, copies of it, and putting a copy back.
//!
//! A damaged store is refused at open ([`StateError::Damaged`]); nothing here runs on its own.
//! A backup is a directory holding the database file and the kill-switch file, as a state
//! directory does, so that a backup can itself be checked and opened. One is kept before every
//! schema migration, under `backups/` of the state directory.

use std::path::{Path, PathBuf};

use redb::{ReadableTableMetadata, TableDefinition};
use serde::Serialize;

use crate::{DB_FILE, KILL_SWITCHES_FILE, META, Result, StateError, Store};

/// The schema the store is written in. 1: before the reviews' per-target index; 2: with it;
/// 3: with the chain over the journal and the reviews.
pub const SCHEMA_VERSION: u32 = 3;

/// The META key of the schema version.
const SCHEMA_KEY: &str = "schema_version";

/// The directory of backups inside a state directory.
pub const BACKUPS_DIR: &str = "backups";

/// How many records of each kind a store holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreSummary {
    /// The schema version it is written in.
    pub schema_version: u32,
    /// Target histories (one per loop and target).
    pub histories: u64,
    /// Decision journal records.
    pub journal_records: u64,
    /// Cycles.
    pub cycles: u64,
    /// Reviews, decided or not.
    pub reviews: u64,
    /// Registered models.
    pub models: u64,
    /// Enforcement intents.
    pub intents: u64,
}

impl Store {
    /// The schema version recorded in the store (1 when none is: a store from before it was).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.get::<u32>(META, SCHEMA_KEY)?.unwrap_or(1))
    }

    /// Records the current schema version.
    pub(crate) fn set_schema_version(&self) -> Result<()> {
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.storage(e))?;
            meta.insert(SCHEMA_KEY, self.encode(&SCHEMA_VERSION)?.as_slice())
                .map_err(|e| self.storage(e))?;
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Counts what the store holds, reading every table (the whole file was checked at open).
    pub fn summary(&self) -> Result<StoreSummary> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let count = |table: TableDefinition<&str, &[u8]>| -> Result<u64> {
            let table = txn.open_table(table).map_err(|e| self.storage(e))?;
            table.len().map_err(|e| self.storage(e))
        };
        Ok(StoreSummary {
            schema_version: self.schema_version()?,
            histories: count(crate::HISTORY)?,
            journal_records: count(crate::JOURNAL)?,
            cycles: count(crate::CYCLES)?,
            reviews: count(crate::reviews::REVIEWS)?,
            models: count(crate::models::MODELS)?,
            intents: count(crate::intents::INTENTS)?,
        })
    }

    /// Copies the store and the kill-switch file of `state_dir` into the new directory `to`.
    /// The open store is this process's alone, so the file is a consistent copy; each file is
    /// written to a temporary name, synced and renamed.
    pub fn backup_to(&self, state_dir: &Path, to: &Path) -> Result<PathBuf> {
        if to.join(DB_FILE).exists() {
            return Err(StateError::Storage {
                path: to.to_path_buf(),
                message: "a backup is already there; choose another directory".to_string(),
            });
        }
        std::fs::create_dir_all(to).map_err(|source| StateError::CreateDir {
            path: to.to_path_buf(),
            source,
        })?;
        copy_synced(&self.path, &to.join(DB_FILE))?;
        let switches = state_dir.join(KILL_SWITCHES_FILE);
        if switches.exists() {
            copy_synced(&switches, &to.join(KILL_SWITCHES_FILE))?;
        }
        Ok(to.to_path_buf())
    }
}

/// Makes the store of `state_dir` the one in `backup` (a directory `setpoint state backup`
/// wrote): the backup is checked first, in a scratch copy, and the files it replaces are moved
/// to `replaced` — never deleted. The state directory must not be in use.
pub fn restore(state_dir: &Path, backup: &Path, replaced: &Path) -> Result<StoreSummary> {
    let scratch = replaced.with_extension("checking");
    let summary = {
        std::fs::create_dir_all(&scratch).map_err(|source| StateError::CreateDir {
            path: scratch.clone(),
            source,
        })?;
        let checked = (|| {
            let source = backup.join(DB_FILE);
            if !source.exists() {
                return Err(StateError::Storage {
                    path: backup.to_path_buf(),
                    message: format!("no {DB_FILE} here: not a backup"),
                });
            }
            copy_synced(&source, &scratch.join(DB_FILE))?;
            let switches = backup.join(KILL_SWITCHES_FILE);
            if switches.exists() {
                copy_synced(&switches, &scratch.join(KILL_SWITCHES_FILE))?;
            }
            crate::read_kill_switches(&scratch)?;
            Store::open(&scratch)?.summary()
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        checked?
    };
    // In use by a running setpoint: refused. Damaged: that is what a restore is for.
    match Store::open(state_dir) {
        Err(error @ StateError::InUse { .. }) => return Err(error),
        Ok(store) => drop(store),
        Err(_) => {}
    }
    std::fs::create_dir_all(replaced).map_err(|source| StateError::CreateDir {
        path: replaced.to_path_buf(),
        source,
    })?;
    for file in [DB_FILE, KILL_SWITCHES_FILE] {
        let current = state_dir.join(file);
        if current.exists() {
            std::fs::rename(&current, replaced.join(file)).map_err(|e| StateError::Storage {
                path: current.clone(),
                message: e.to_string(),
            })?;
        }
        let from = backup.join(file);
        if from.exists() {
            copy_synced(&from, &current)?;
        }
    }
    // A backup is a copy of a store that was open: opened once here, by the one writer, it is
    // checked whole and closed cleanly, so that readers can open it beside a later cycle.
    drop(Store::open(state_dir)?);
    Ok(summary)
}

/// Copies `from` to `to` through a temporary file that is synced before it is renamed.
pub(crate) fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    let io = |path: &Path, e: std::io::Error| StateError::Storage {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let tmp = to.with_extension("partial");
    std::fs::copy(from, &tmp).map_err(|e| io(from, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, to).map_err(|e| io(to, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::tests::{at, entry};
    use setpoint_core::TargetHistory;

    fn fill(dir: &Path, cycles: usize) {
        let store = Store::open(dir).unwrap();
        for _ in 0..cycles {
            let cycle = store.begin_cycle("weekly", at()).unwrap();
            store
                .record_target(&entry("pg-1", cycle, at()), &TargetHistory::new(at()))
                .unwrap();
        }
    }

    #[test]
    fn a_migration_keeps_the_store_as_it_was_first() {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 3);
        {
            // As a store from before the schema version was recorded.
            let store = Store::open(dir.path()).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META).unwrap().remove(SCHEMA_KEY).unwrap();
            txn.commit().unwrap();
            assert_eq!(store.schema_version().unwrap(), 1);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let kept = dir
            .path()
            .join(BACKUPS_DIR)
            .join(format!("before-schema-{SCHEMA_VERSION}"));
        let before = Store::open(&kept).unwrap().summary().unwrap();
        assert_eq!(before.journal_records, 3);
        assert_eq!(before.cycles, 3);
        // Opening again migrates nothing and keeps no second copy.
        drop(store);
        Store::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join(BACKUPS_DIR))
                .unwrap()
                .count(),
            1
        );
    }

    #[test]
    fn a_backup_restores_over_a_damaged_store_and_keeps_what_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fill(&state, 4);
        crate::set_kill_switch(&state, &crate::KillSwitchScope::Global, true).unwrap();
        let backup = dir.path().join("backup");
        Store::open(&state)
            .unwrap()
            .backup_to(&state, &backup)
            .unwrap();
        // A second backup into the same place is refused, not overwritten.
        assert!(
            Store::open(&state)
                .unwrap()
                .backup_to(&state, &backup)
                .is_err()
        );
        // The copy of an open store reads too (repaired by a writer's open first).
        let copied = dir.path().join("copied");
        std::fs::create_dir_all(&copied).unwrap();
        std::fs::copy(backup.join(DB_FILE), copied.join(DB_FILE)).unwrap();
        assert_eq!(
            Store::open_for_reading(&copied)
                .unwrap()
                .summary()
                .unwrap()
                .journal_records,
            4
        );
        // Later: the store is emptied, the kill switches deleted.
        std::fs::write(state.join(DB_FILE), b"").unwrap();
        std::fs::remove_file(state.join(KILL_SWITCHES_FILE)).unwrap();
        assert!(Store::open(&state).is_err());

        let replaced = dir.path().join("replaced");
        let summary = restore(&state, &backup, &replaced).unwrap();
        assert_eq!(summary.journal_records, 4);
        // Readers open the restored store beside nobody: it was closed cleanly.
        let reader = Store::open_for_reading(&state).unwrap();
        assert_eq!(reader.summary().unwrap().journal_records, 4);
        drop(reader);
        let store = Store::open(&state).unwrap();
        assert_eq!(store.entries("pg-1").unwrap().len(), 4);
        assert!(crate::read_kill_switches(&state).unwrap().global);
        // The damaged file is kept, not deleted.
        assert_eq!(std::fs::metadata(replaced.join(DB_FILE)).unwrap().len(), 0);

        // Not a backup: refused before anything is touched.
        drop(store);
        let error = restore(&state, dir.path(), &dir.path().join("r2")).unwrap_err();
        assert!(error.to_string().contains("not a backup"), "{error}");
        assert_eq!(
            Store::open(&state).unwrap().entries("pg-1").unwrap().len(),
            4
        );
    }
}
