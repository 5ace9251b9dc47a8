//! The state directory when the disk will not take a write, through the binary: a store the
//! process may not write (a read-only directory, for a user other than its owner) is refused
//! with a clear message and left byte for byte as it was, and can still be read; a disk that
//! fills during a cycle (the process's file size limit, as the kernel enforces it) fails the
//! cycle without a panic, and what earlier cycles recorded survives, the chain intact.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{ok, setpoint_binary};

/// A directory anyone may enter, with a config of one simulated loop whose store is `state`.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("setpoint.yaml");
    std::fs::write(
        &config,
        "state_dir: state\n\
         loops:\n\
         \x20 - name: pg\n\
         \x20   plugin: builtin:postgres\n\
         \x20   source: { kind: simulated, seed: 42 }\n\
         \x20   classifier: { kind: bootstrap }\n",
    )
    .unwrap();
    (dir, config)
}

fn setpoint(binary: &Path, config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .env_remove("SETPOINT_STATE_DIR");
    command
}

fn pending_reviews(state: &Path) -> usize {
    setpoint_state::Store::open(state)
        .unwrap()
        .reviews()
        .unwrap()
        .len()
}

/// Neither a success nor a panic: a failure setpoint reported itself.
fn assert_reported_failure(output: &Output, what: &str) {
    let code = output.status.code();
    assert!(
        matches!(code, Some(1..=3)),
        "{what}: expected a reported failure, got {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_read_only_state_directory_is_refused_and_left_as_it_was() {
    let (dir, config) = setup();
    ok(setpoint(&setpoint_binary(), &config, &["run", "--once"])
        .output()
        .unwrap());
    let db = dir.path().join("state").join(setpoint_state::DB_FILE);
    let before = std::fs::read(&db).unwrap();
    // Root writes through any permission: run as `nobody`, for whom the directory and store
    // (owned by root, opened to others as 0755 and 0644; setpoint makes it 0700) are
    // read-only. The binary is copied where that user may run it.
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let binary = dir.path().join("setpoint");
    std::fs::copy(setpoint_binary(), &binary).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        command.arg(&binary).arg("--config").arg(&config).args(args);
        command
            .env_remove("RUST_LOG")
            .env_remove("SETPOINT_CONFIG")
            .env("HOME", dir.path());
        command.output().unwrap()
    };
    let output = as_nobody(&["run", "--once"]);
    assert_reported_failure(&output, "run on a read-only store");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&db.display().to_string()) || stderr.contains("state"),
        "the message names the store: {stderr}"
    );
    assert!(stderr.contains("ermission denied"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "the store changed");
    // What only reads still works for that user.
    let listed = as_nobody(&["review", "list"]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("pg-"),
        "{listed:?}"
    );
}

#[test]
fn a_disk_that_fills_during_a_cycle_loses_nothing_already_recorded() {
    let (dir, config) = setup();
    let state = dir.path().join("state");
    ok(setpoint(&setpoint_binary(), &config, &["run", "--once"])
        .output()
        .unwrap());
    let reviews = pending_reviews(&state);
    assert!(reviews > 0);
    let db = state.join(setpoint_state::DB_FILE);
    let size = std::fs::metadata(&db).unwrap().len();
    // Writes past half the store's size fail with EFBIG (the signal ignored, as a full disk
    // fails a write with ENOSPC rather than killing the process).
    let limit_kib = (size / 2 / 1024).max(1);
    let script = format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\"");
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .arg(setpoint_binary())
        .arg("--config")
        .arg(&config)
        .args(["run", "--once"])
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .output()
        .unwrap();
    assert_reported_failure(&output, "a cycle on a full disk");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ile too large"),
        "the I/O error is named: {stderr}"
    );
    // Nothing recorded before is lost; the next cycle, with room again, runs.
    ok(setpoint(&setpoint_binary(), &config, &["state", "check"])
        .output()
        .unwrap());
    ok(
        setpoint(&setpoint_binary(), &config, &["journal", "verify"])
            .output()
            .unwrap(),
    );
    assert!(pending_reviews(&state) >= reviews);
    ok(setpoint(&setpoint_binary(), &config, &["run", "--once"])
        .output()
        .unwrap());
    ok(
        setpoint(&setpoint_binary(), &config, &["journal", "verify"])
            .output()
            .unwrap(),
    );
}
