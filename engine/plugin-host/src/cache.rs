//! A disk cache of compiled plugins.
//!
//! Compiling a component with Cranelift costs tens of milliseconds per plugin and start; loading
//! the machine code wasmtime serialized costs a fraction of one. But loading it is `unsafe`:
//! wasmtime checks that the bytes were made by a compatible engine, not that they are intact — a
//! flipped byte deserializes without error and runs as machine code. So an entry is trusted
//! only when everything about it checks out:
//!
//! - its file name and header carry the SHA-256 of the plugin's bytes and an engine key (a
//!   SHA-256 of wasmtime's [`Engine::precompile_compatibility_hash`], setpoint's version and
//!   this format's version), so another plugin or another engine never matches;
//! - its header carries the SHA-256 and the length of the serialized component, verified over
//!   the bytes read into memory, and those same bytes — not the file again — are deserialized;
//! - it is written to a temporary file in the cache directory and renamed into place, so a
//!   reader never sees half an entry;
//! - on Unix the directory is created private (0700) and an entry that others could have
//!   written (group- or world-writable, it or its directory) is never read.
//!
//! Any entry that fails a check is counted as rejected, deleted and rebuilt. A cache that
//! cannot be read or written never fails a load: the plugin is compiled as if there were none.
//!
//! The checksum is not a signature: whoever can write the cache directory can run code as
//! setpoint, exactly like whoever can replace its binary. Keep the directory as private as the
//! state directory it defaults to.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry; the last byte is the format's version.
const MAGIC: &[u8; 16] = b"setpoint-cwasm\0\x01";

/// Magic, engine key, plugin hash, payload length, payload hash.
const HEADER_LEN: usize = 16 + 32 + 32 + 8 + 32;

/// File name extension of an entry.
const EXTENSION: &str = "cwasm";

/// How a plugin was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid entry was deserialized.
    Hit,
    /// There was no entry; the plugin was compiled (and an entry written when possible).
    Miss,
    /// An entry existed but failed a check; it was deleted and the plugin compiled afresh.
    Rejected,
}

/// Counts of what the cache did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries deserialized.
    pub hits: u64,
    /// Loads that found no entry.
    pub misses: u64,
    /// Entries that failed a check and were discarded.
    pub rejected: u64,
    /// Entries written.
    pub written: u64,
    /// Entries that could not be written (the load still succeeded).
    pub write_errors: u64,
}

/// A directory of compiled plugins, keyed by plugin bytes and engine. See the module docs.
#[derive(Debug)]
pub struct CompileCache {
    dir: PathBuf,
    version: String,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
}

/// Why an entry was not used.
#[derive(Debug)]
enum Reject {
    /// No entry: a plain miss.
    Absent,
    /// The entry exists and is not to be trusted.
    Invalid(String),
}

impl CompileCache {
    /// A cache in `dir` (created on first write) for entries of this setpoint version.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_version(dir, env!("CARGO_PKG_VERSION"))
    }

    /// A cache whose entries are keyed by `version` instead of this crate's version — for tools
    /// and tests that keep the entries of several builds apart in one directory.
    pub fn with_version(dir: impl Into<PathBuf>, version: &str) -> Self {
        Self {
            dir: dir.into(),
            version: version.to_string(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            written: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
        }
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
        }
    }

    /// The path of the entry for `wasm` compiled by `engine`.
    pub fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let key = self.engine_key(engine);
        self.path_for(&sha256(wasm), &key)
    }

    fn path_for(&self, wasm_hash: &[u8; 32], engine_key: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.{EXTENSION}",
            hex(wasm_hash),
            &hex(engine_key)[..16]
        ))
    }

    /// The engine key: wasmtime's compatibility hash (its version and every setting that
    /// changes the machine code), setpoint's version and this format's.
    fn engine_key(&self, engine: &Engine) -> [u8; 32] {
        use std::hash::Hash;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let mut digest = hasher.0;
        digest.update(b"\0setpoint\0");
        digest.update(self.version.as_bytes());
        digest.update(MAGIC);
        digest.finalize().into()
    }

    /// The component for `wasm`: from a valid entry, or compiled (and stored for next time).
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let wasm_hash = sha256(wasm);
        let engine_key = self.engine_key(engine);
        let path = self.path_for(&wasm_hash, &engine_key);
        let outcome = match self.read(&path, &wasm_hash, &engine_key, engine) {
            Ok(component) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((component, CacheOutcome::Hit));
            }
            Err(Reject::Absent) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                CacheOutcome::Miss
            }
            Err(Reject::Invalid(reason)) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(entry = %path.display(), %reason, "discarding a compiled-plugin cache entry");
                if let Err(error) = std::fs::remove_file(&path) {
                    tracing::debug!(entry = %path.display(), %error, "cannot remove the entry");
                }
                CacheOutcome::Rejected
            }
        };
        let component = Component::new(engine, wasm)?;
        match self.write(&path, &wasm_hash, &engine_key, &component) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(dir = %self.dir.display(), %error, "cannot store a compiled plugin; it will be compiled again next time");
            }
        }
        Ok((component, outcome))
    }

    fn read(
        &self,
        path: &Path,
        wasm_hash: &[u8; 32],
        engine_key: &[u8; 32],
        engine: &Engine,
    ) -> Result<Component, Reject> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(Reject::Absent);
            }
            Err(error) => return Err(Reject::Invalid(format!("cannot read it: {error}"))),
        };
        private(path).map_err(Reject::Invalid)?;
        let payload = verify(&bytes, wasm_hash, engine_key).map_err(Reject::Invalid)?;
        deserialize(engine, payload).map_err(|e| Reject::Invalid(format!("{e:#}")))
    }

    fn write(
        &self,
        path: &Path,
        wasm_hash: &[u8; 32],
        engine_key: &[u8; 32],
        component: &Component,
    ) -> Result<(), String> {
        let payload = component.serialize().map_err(|e| format!("{e:#}"))?;
        create_private_dir(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let mut file = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.dir)
            .map_err(|e| format!("cannot create a file in {}: {e}", self.dir.display()))?;
        let io = |e: std::io::Error| format!("cannot write {}: {e}", file_name(path));
        let length = u64::try_from(payload.len()).map_err(|e| e.to_string())?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(engine_key);
        header.extend_from_slice(wasm_hash);
        header.extend_from_slice(&length.to_le_bytes());
        header.extend_from_slice(&sha256(&payload));
        file.write_all(&header).map_err(io)?;
        file.write_all(&payload).map_err(io)?;
        file.as_file().sync_all().map_err(io)?;
        file.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// Checks an entry's header against what it must be and its payload against its checksum;
/// returns the payload.
fn verify<'a>(
    bytes: &'a [u8],
    wasm_hash: &[u8; 32],
    engine_key: &[u8; 32],
) -> Result<&'a [u8], String> {
    let Some((header, payload)) = bytes.split_at_checked(HEADER_LEN) else {
        return Err(format!(
            "truncated: {} bytes, shorter than its header",
            bytes.len()
        ));
    };
    let (magic, rest) = header.split_at(16);
    let (key, rest) = rest.split_at(32);
    let (hash, rest) = rest.split_at(32);
    let (length, checksum) = rest.split_at(8);
    if magic != MAGIC {
        return Err("not a setpoint cache entry of this format".to_string());
    }
    if key != engine_key {
        return Err("made by another engine or setpoint version".to_string());
    }
    if hash != wasm_hash {
        return Err("made from other plugin bytes".to_string());
    }
    let mut length_bytes = [0u8; 8];
    length_bytes.copy_from_slice(length);
    let length = u64::from_le_bytes(length_bytes);
    if u64::try_from(payload.len()).ok() != Some(length) {
        return Err(format!(
            "truncated or padded: {} bytes of compiled code where the header says {length}",
            payload.len()
        ));
    }
    if sha256(payload).as_slice() != checksum {
        return Err("corrupt: the compiled code does not match its checksum".to_string());
    }
    Ok(payload)
}

/// Loads verified bytes as a component.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` runs the bytes as machine code, so they must be what
    // `Component::serialize` produced. These were read from an entry this cache wrote (a
    // private file, atomically renamed into place) and match the SHA-256 and length recorded
    // in its header, computed over the serialized bytes before writing; these very bytes, held
    // in memory, are what wasmtime reads — the file is not read again. wasmtime itself refuses
    // bytes from an incompatible engine.
    unsafe { Component::deserialize(engine, payload) }
}

/// Creates the cache directory, private to its owner on Unix.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Refuses an entry that someone else could have written.
fn private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = path.parent().unwrap_or(Path::new("."));
        for (what, p) in [("the entry", path), ("its directory", dir)] {
            let metadata = std::fs::metadata(p)
                .map_err(|e| format!("cannot read the permissions of {what}: {e}"))?;
            if metadata.permissions().mode() & 0o022 != 0 {
                return Err(format!(
                    "{what} is writable by others (mode {:o})",
                    metadata.permissions().mode() & 0o777
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Feeds a `Hash` value into SHA-256, so the engine key is a stable digest rather than a
/// 64-bit hash of an unspecified algorithm.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_checked_field_by_field() {
        let wasm_hash = [1u8; 32];
        let key = [2u8; 32];
        let payload = b"compiled code";
        let mut entry = Vec::new();
        entry.extend_from_slice(MAGIC);
        entry.extend_from_slice(&key);
        entry.extend_from_slice(&wasm_hash);
        entry.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        entry.extend_from_slice(&sha256(payload));
        entry.extend_from_slice(payload);
        assert_eq!(verify(&entry, &wasm_hash, &key), Ok(&payload[..]));

        let mut other_key = key;
        other_key[0] = 9;
        assert!(
            verify(&entry, &wasm_hash, &other_key).is_err_and(|e| e.contains("another engine"))
        );
        assert!(verify(&entry, &other_key, &key).is_err_and(|e| e.contains("other plugin")));
        assert!(
            verify(&entry[..entry.len() - 1], &wasm_hash, &key)
                .is_err_and(|e| e.contains("truncated"))
        );
        assert!(verify(&entry[..20], &wasm_hash, &key).is_err_and(|e| e.contains("header")));
        let mut flipped = entry.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(verify(&flipped, &wasm_hash, &key).is_err_and(|e| e.contains("checksum")));
        let mut old = entry;
        old[15] = 0;
        assert!(verify(&old, &wasm_hash, &key).is_err_and(|e| e.contains("format")));
    }
}
