//! The compiled-plugin cache: a warm load deserializes what a cold load stored; an entry that
//! is corrupt, truncated, from another engine or writable by others is rebuilt, never trusted.

use std::sync::Arc;
use std::time::Instant;

use setpoint_plugin_host::{CacheStats, CompileCache, Limits, PluginHost};

fn host(cache: &Arc<CompileCache>) -> PluginHost {
    PluginHost::new(Limits::default())
        .unwrap()
        .with_cache(cache.clone())
}

fn postgres() -> &'static [u8] {
    setpoint_plugins_bundled::postgres()
}

/// Loads the PostgreSQL plugin through `cache` and checks it works.
fn load(cache: &Arc<CompileCache>) {
    let plugin = host(cache).load("builtin:postgres", postgres()).unwrap();
    assert_eq!(plugin.descriptor().features.len(), 16);
}

/// The cache's entries (temporary files excluded).
fn entries(cache: &CompileCache) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

/// The cache's only entry.
fn entry(cache: &CompileCache) -> std::path::PathBuf {
    let entries = entries(cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().unwrap()
}

#[test]
fn a_cold_load_stores_the_compiled_plugin_and_a_warm_load_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let cold = Arc::new(CompileCache::new(dir.path().join("cache")));
    let started = Instant::now();
    load(&cold);
    let cold_time = started.elapsed();
    assert_eq!(
        cold.stats(),
        CacheStats {
            misses: 1,
            written: 1,
            ..CacheStats::default()
        }
    );
    // A new process would start with a new cache handle on the same directory.
    let warm = Arc::new(CompileCache::new(dir.path().join("cache")));
    let started = Instant::now();
    load(&warm);
    let warm_time = started.elapsed();
    assert_eq!(
        warm.stats(),
        CacheStats {
            hits: 1,
            ..CacheStats::default()
        }
    );
    eprintln!("load of the postgres plugin: cold {cold_time:?}, from the cache {warm_time:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("cache")), 0o700);
        assert_eq!(mode(&entry(&warm)), 0o600);
    }
}

#[test]
fn a_corrupt_or_truncated_entry_is_rebuilt_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(dir.path()));
    load(&cache);
    let path = entry(&cache);
    let good = std::fs::read(&path).unwrap();

    // One flipped bit in the machine code: wasmtime alone would load it.
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    load(&cache);
    // Truncated, as by a crash of another writer without the rename.
    std::fs::write(&path, &good[..good.len() / 3]).unwrap();
    load(&cache);
    // Empty.
    std::fs::write(&path, b"").unwrap();
    load(&cache);
    assert_eq!(
        cache.stats(),
        CacheStats {
            misses: 1,
            rejected: 3,
            written: 4,
            ..CacheStats::default()
        }
    );
    // Each rebuild wrote a good entry back.
    assert_eq!(std::fs::read(&path).unwrap().len(), good.len());
    load(&cache);
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn another_engine_key_is_a_miss_and_a_renamed_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let one = Arc::new(CompileCache::with_version(dir.path(), "1.0.0"));
    let two = Arc::new(CompileCache::with_version(dir.path(), "2.0.0"));
    load(&one);
    let one_entry = entry(&one);
    load(&two);
    assert_eq!(
        two.stats(),
        CacheStats {
            misses: 1,
            written: 1,
            ..CacheStats::default()
        }
    );
    let two_entry = entries(&two).into_iter().find(|p| *p != one_entry).unwrap();
    // The same plugin, another engine key.
    let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(name(&one_entry)[..64], name(&two_entry)[..64]);
    assert_ne!(name(&one_entry), name(&two_entry));

    // An entry of version 1 put where version 2 looks: its header says whose it is.
    std::fs::copy(&one_entry, &two_entry).unwrap();
    load(&two);
    assert_eq!(two.stats().rejected, 1, "{:?}", two.stats());
    load(&two);
    assert_eq!(two.stats().hits, 1, "{:?}", two.stats());
}

#[cfg(unix)]
#[test]
fn an_entry_others_could_have_written_is_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(CompileCache::new(dir.path().join("cache")));
    load(&cache);
    let path = entry(&cache);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    load(&cache);
    assert_eq!(cache.stats().rejected, 1, "{:?}", cache.stats());
    // Rebuilt private.
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_cache_that_cannot_be_written_does_not_fail_a_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let cache = Arc::new(CompileCache::new(&file));
    load(&cache);
    assert_eq!(
        cache.stats(),
        CacheStats {
            misses: 1,
            write_errors: 1,
            ..CacheStats::default()
        }
    );
}

#[test]
fn the_runtime_keeps_compiled_plugins_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = setpoint_runtime::Config {
        state_dir: dir.path().join("state"),
        ..setpoint_runtime::Config::default()
    };
    setpoint_runtime::Runtime::new(config.clone()).unwrap();
    let cache = CompileCache::new(config.plugin_cache_dir());
    assert_eq!(cache.dir(), dir.path().join("state").join("plugin-cache"));
    // One compiled entry per bundled plugin: the quickstart runs them all.
    let mut stored = entries(&cache);
    stored.sort();
    assert_eq!(
        stored.len(),
        setpoint_plugins_bundled::all().len(),
        "{stored:?}"
    );
    let modified = |paths: &[std::path::PathBuf]| -> Vec<std::time::SystemTime> {
        paths
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
            .collect()
    };
    let written = modified(&stored);
    // A second start reads them rather than writing them again.
    setpoint_runtime::Runtime::new(config).unwrap();
    let mut again = entries(&cache);
    again.sort();
    assert_eq!(again, stored);
    assert_eq!(modified(&again), written);
}
