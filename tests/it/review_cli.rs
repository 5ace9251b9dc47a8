//! `setpoint review`: `review` verdicts are queued with what a human needs to decide; an
//! approval is re-checked by the policy on the next cycle's data and then acts; a rejection
//! holds; who decided what, when and why reaches the journal.

use std::path::Path;
use std::process::Output;

use crate::{ok, setpoint_binary};

/// Every command of this test reads the time from here (a cycle passes its own `--now`), an
/// hour after the first cycle: nothing depends on the day the test runs.
const NOW: &str = "2026-11-23T07:00:00Z";

fn setpoint(state: &Path, args: &[&str]) -> Output {
    std::process::Command::new(setpoint_binary())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env("SETPOINT_NOW", NOW)
        .env_remove("RUST_LOG")
        .env_remove("SETPOINT_CONFIG")
        .output()
        .unwrap()
}

fn cycle(state: &Path, now: &str) {
    ok(setpoint(
        state,
        &[
            "run",
            "--once",
            "--loop",
            "weekly-rightsizing",
            "--now",
            now,
        ],
    ));
}

fn review_of(state: &Path, target: &str) -> serde_json::Value {
    let list: serde_json::Value = serde_json::from_str(&ok(setpoint(
        state,
        &["review", "list", "--all", "--output", "json"],
    )))
    .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["target"] == target)
        .cloned()
        .unwrap_or_else(|| panic!("no review for {target}"))
}

fn decision(state: &Path, target: &str) -> setpoint_core::Decision {
    let store = setpoint_state::Store::open(state).unwrap();
    store.last_entry(target).unwrap().unwrap().decision.unwrap()
}

#[test]
fn approvals_act_after_a_recheck_and_rejections_hold() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path();
    cycle(state, "2026-11-23T06:00:00Z");

    let pending = ok(setpoint(state, &["review", "list"]));
    assert!(pending.contains("pg-reporting-01"), "{pending}");
    let reporting = review_of(state, "pg-reporting-01");
    assert_eq!(reporting["status"], "pending");
    assert_eq!(reporting["action"], "scale_down");
    let id = reporting["id"].as_u64().unwrap().to_string();
    let shown = ok(setpoint(state, &["review", "show", &id]));
    for needle in [
        "8 vCPU / 32 GiB → 4 vCPU / 24 GiB",
        "set shared_buffers = 6GB (needs restart)",
        "approval_required",
        "gradient-boosting",
    ] {
        assert!(shown.contains(needle), "{needle}: {shown}");
    }

    let saturated = review_of(state, "pg-saturated-01")["id"]
        .as_u64()
        .unwrap()
        .to_string();
    ok(setpoint(
        state,
        &[
            "review",
            "approve",
            &id,
            "--comment",
            "reports run at night",
            "--by",
            "alice",
        ],
    ));
    // A rejection needs a reason.
    let bare = setpoint(state, &["review", "reject", &saturated]);
    assert!(!bare.status.success());
    ok(setpoint(
        state,
        &[
            "review",
            "reject",
            &saturated,
            "--comment",
            "quarter-end load",
            "--by",
            "bob",
        ],
    ));
    // Decided once, and only a review that exists.
    let again = setpoint(state, &["review", "approve", &id]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not pending"));
    let unknown = setpoint(state, &["review", "approve", "9999"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no review 9999"));

    // The next cycle re-checks both on fresh data.
    cycle(state, "2026-11-24T06:00:00Z");
    let approved = decision(state, "pg-reporting-01");
    assert_eq!(approved.verdict, setpoint_core::Verdict::Act);
    assert_eq!(approved.reasons[0].code, "approved_by_reviewer");
    assert!(
        approved.reasons[0].message.contains("approved by alice at")
            && approved.reasons[0].message.contains("reports run at night"),
        "{:?}",
        approved.reasons
    );
    assert_eq!(review_of(state, "pg-reporting-01")["status"], "applied");
    let rejected = decision(state, "pg-saturated-01");
    assert_eq!(rejected.verdict, setpoint_core::Verdict::Hold);
    assert_eq!(rejected.reasons[0].code, "rejected_by_reviewer");
    assert!(rejected.reasons[0].message.contains("quarter-end load"));

    // The decisions are labels for the next training, and the agreement with the model that
    // made the recommendations is tracked.
    let trained: serde_json::Value = serde_json::from_str(&ok(setpoint(
        state,
        &[
            "train",
            "--loop",
            "weekly-rightsizing",
            "--targets-per-scenario",
            "8",
            "--fresh-targets",
            "40",
            "--folds",
            "0",
            "--output",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(
        trained[0]["parameters"]["feedback_labels"], "2",
        "{trained}"
    );
    let store = setpoint_state::Store::open(state).unwrap();
    let promoted = store
        .promoted_model("weekly-rightsizing")
        .unwrap()
        .unwrap()
        .version;
    drop(store);
    let shown: serde_json::Value = serde_json::from_str(&ok(setpoint(
        state,
        &["models", "show", &promoted[..12], "--output", "json"],
    )))
    .unwrap();
    assert_eq!(shown["reviews"]["agreed"], 1, "{shown}");
    assert_eq!(shown["reviews"]["decided"], 2, "{shown}");

    // A week later the rejection has expired: the plan is asked about again.
    cycle(state, "2026-12-02T06:00:00Z");
    assert_eq!(
        decision(state, "pg-saturated-01").verdict,
        setpoint_core::Verdict::Review
    );
    assert_eq!(review_of(state, "pg-saturated-01")["status"], "pending");
}
