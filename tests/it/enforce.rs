//! Enforce mode through the binary, against a fake Kubernetes API server that stores objects
//! and counts the changes it accepts: an approved review is re-checked and executed once; the
//! engine killed (SIGKILL) between journalling an intent and running it, and between running
//! it and recording the result — and at every other stage boundary of a cycle — still changes
//! each object exactly once after a restart, with the journal chain and the store intact; a kill
//! switch set during a cycle stops every operation that has not started; dry-run executes
//! nothing even with actuators configured.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use setpoint_core::IntentStatus;

use crate::ok;
use setpoint_test_support::FakeKube;

pub(crate) const REPORTING_01: &str =
    "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg-reporting-01";
const REPORTING_02: &str = "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg-reporting-02";

/// A CloudNativePG cluster sized as the simulated fleet has it.
pub(crate) fn cluster(name: &str, cpu: &str, memory: &str, shared_buffers: &str) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": "db", "resourceVersion": "1"},
        "spec": {
            "instances": 2,
            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
            "postgresql": {"parameters": {"shared_buffers": shared_buffers}},
        },
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    api: FakeKube,
}

impl Setup {
    fn new(mode: &str) -> Setup {
        let api = FakeKube::start(&[
            (REPORTING_01, cluster("pg-reporting-01", "8", "32Gi", "8GB")),
            (
                REPORTING_02,
                cluster("pg-reporting-02", "16", "64Gi", "16GB"),
            ),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        api.write_kubeconfig(&root.join("kubeconfig"));
        let target = |id: &str| {
            format!(
                "      - id: {id}\n        labels: {{ k8s_kind: Cluster, k8s_namespace: db, k8s_name: {id} }}\n"
            )
        };
        std::fs::write(
            root.join("setpoint.yaml"),
            format!(
                "state_dir: ./state\n\
                 loops:\n  - name: weekly\n    plugin: builtin:postgres\n\
                 \x20   source: {{ kind: simulated, seed: 42 }}\n\
                 \x20   classifier: {{ kind: bootstrap }}\n\
                 \x20   mode: {mode}\n\
                 \x20   actuators:\n      - kubernetes: {{ auth: {{ mode: kubeconfig, path: ./kubeconfig }}, timeout: 5s }}\n\
                 \x20   act: {{ retries: 1, backoff: 100ms }}\n\
                 \x20   targets:\n{}{}",
                target("pg-reporting-01"),
                target("pg-reporting-02")
            ),
        )
        .unwrap();
        Setup {
            _dir: dir,
            root,
            api,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        crate::setpoint_with_config(&self.root.join("setpoint.yaml"), args)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The pending review of a target.
    fn pending_review(&self, target: &str) -> String {
        let list: Value =
            serde_json::from_str(&ok(self.run(&["review", "list", "--output", "json"]))).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == target && r["status"] == "pending")
            .unwrap_or_else(|| panic!("no pending review for {target}: {list}"))["id"]
            .to_string()
    }

    /// Starts `setpoint review approve` paused at `point`, and waits until it gets there.
    fn approve_paused(&self, id: &str, point: &str) -> (Child, PathBuf) {
        let marker = self.root.join(format!("paused-{id}"));
        let child = self
            .command(&["review", "approve", id, "--comment", "ok"])
            .env(setpoint_runtime::enforce::PAUSE_AT_ENV, point)
            .env(setpoint_runtime::enforce::PAUSE_FILE_ENV, &marker)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !marker.exists() {
            assert!(
                Instant::now() < deadline,
                "setpoint never reached the pause point {point}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, marker)
    }

    fn intent_of(&self, target: &str) -> setpoint_core::Intent {
        let store = setpoint_state::Store::open(&self.state()).unwrap();
        let mut intents: Vec<_> = store
            .intents()
            .unwrap()
            .into_iter()
            .filter(|i| i.target.id == target)
            .collect();
        assert_eq!(intents.len(), 1, "{intents:?}");
        intents.remove(0)
    }
}

fn sigkill(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
}

#[test]
fn an_approved_review_is_rechecked_and_executed_once() {
    let setup = Setup::new("enforce");
    // A first cycle: everything waits in review (the first 60 days); nothing is sent.
    let report = ok(setup.run(&["run", "--once"]));
    assert!(report.contains("enforce: 0 plan(s) executed"), "{report}");
    assert!(setup.api.http.requests().is_empty());

    let id = setup.pending_review("pg-reporting-01");
    let out = ok(setup.run(&["review", "approve", &id, "--comment", "idle for a month"]));
    assert!(out.contains("re-checking it on fresh data now"), "{out}");
    assert!(
        out.contains("pg-reporting-01: executed (4 operation(s)"),
        "{out}"
    );
    assert!(out.contains("applied"), "{out}");
    assert_eq!(setup.api.changes(REPORTING_01), 1);
    let object = setup.api.object(REPORTING_01);
    assert_eq!(object["spec"]["resources"]["requests"]["cpu"], "4");
    assert_eq!(object["spec"]["resources"]["limits"]["memory"], "24Gi");
    assert_eq!(
        object["spec"]["postgresql"]["parameters"]["shared_buffers"],
        "6GB"
    );
    // The other cluster was not touched.
    assert_eq!(setup.api.changes(REPORTING_02), 0);

    let intent = setup.intent_of("pg-reporting-01");
    assert_eq!(intent.status, IntentStatus::Done);
    assert_eq!(intent.review, Some(id.parse().unwrap()));
    assert!(!intent.reconciled);
    let store = setpoint_state::Store::open(&setup.state()).unwrap();
    assert_eq!(
        store.review(id.parse().unwrap()).unwrap().status,
        setpoint_core::ReviewStatus::Applied
    );
    drop(store);

    let explained = ok(setup.run(&["explain", "pg-reporting-01"]));
    assert!(explained.contains("· done ·"), "{explained}");
    assert!(
        explained.contains("carries out approved review"),
        "{explained}"
    );
    assert!(
        explained.contains("→ applied by kubernetes at Cluster db/pg-reporting-01"),
        "{explained}"
    );

    // The next cycle does not act again (the approval is used up).
    ok(setup.run(&["run", "--once"]));
    assert_eq!(setup.api.changes(REPORTING_01), 1);
}

#[test]
fn dry_run_executes_nothing_even_with_actuators_and_an_approval() {
    let setup = Setup::new("dry-run");
    ok(setup.run(&["run", "--once"]));
    let id = setup.pending_review("pg-reporting-01");
    let out = ok(setup.run(&["review", "approve", &id]));
    assert!(
        out.contains("the next cycle of loop weekly re-checks"),
        "{out}"
    );
    let report = ok(setup.run(&["run", "--once"]));
    assert!(report.contains("dry-run: nothing was executed"), "{report}");
    assert!(setup.api.http.requests().is_empty());
    let store = setpoint_state::Store::open(&setup.state()).unwrap();
    assert!(store.intents().unwrap().is_empty());
}

#[test]
fn a_crash_before_or_after_running_an_intent_still_changes_each_object_exactly_once() {
    let setup = Setup::new("enforce");
    ok(setup.run(&["run", "--once"]));

    // Killed after the intent is journalled, before anything ran.
    let id = setup.pending_review("pg-reporting-01");
    let (mut child, _marker) = setup.approve_paused(&id, "after-intent");
    sigkill(&mut child);
    assert_eq!(setup.api.changes(REPORTING_01), 0);
    let intent = setup.intent_of("pg-reporting-01");
    assert_eq!(intent.status, IntentStatus::Pending);

    // The next start finishes it before anything else.
    let report = ok(setup.run(&["run", "--once"]));
    assert_eq!(setup.api.changes(REPORTING_01), 1, "{report}");
    let intent = setup.intent_of("pg-reporting-01");
    assert_eq!(intent.status, IntentStatus::Done, "{intent:?}");
    assert!(intent.reconciled);
    assert_eq!(
        setup.api.object(REPORTING_01)["spec"]["resources"]["requests"]["cpu"],
        "4"
    );

    // Killed after the actuator changed the object, before the result was recorded.
    let id = setup.pending_review("pg-reporting-02");
    let (mut child, _marker) = setup.approve_paused(&id, "after-execute");
    sigkill(&mut child);
    assert_eq!(setup.api.changes(REPORTING_02), 1);
    assert_eq!(
        setup.intent_of("pg-reporting-02").status,
        IntentStatus::Pending
    );

    // The next start reads the object back, finds the change made, and changes nothing.
    ok(setup.run(&["run", "--once"]));
    assert_eq!(setup.api.changes(REPORTING_02), 1);
    let intent = setup.intent_of("pg-reporting-02");
    assert_eq!(intent.status, IntentStatus::Done, "{intent:?}");
    assert!(intent.reconciled);
    assert!(
        intent
            .results
            .iter()
            .any(|r| r.status == setpoint_core::OpStatus::AlreadyApplied),
        "{intent:?}"
    );
    // And the first one was not run a second time by later starts.
    assert_eq!(setup.api.changes(REPORTING_01), 1);
}

#[test]
fn a_sigkill_at_every_stage_boundary_leaves_each_object_changed_exactly_once() {
    for point in setpoint_runtime::enforce::PAUSE_POINTS {
        let setup = Setup::new("enforce");
        ok(setup.run(&["run", "--once"]));
        // The approval's re-check is a cycle of its own: killed at this boundary of it.
        let id = setup.pending_review("pg-reporting-01");
        let (mut child, _marker) = setup.approve_paused(&id, point);
        sigkill(&mut child);
        assert!(
            setup.api.changes(REPORTING_01) <= 1,
            "{point}: changed more than once before the kill"
        );
        // The next starts finish what was started, or act on the approval, once.
        for _ in 0..2 {
            let report = ok(setup.run(&["run", "--once"]));
            assert_eq!(setup.api.changes(REPORTING_01), 1, "{point}: {report}");
        }
        let intent = setup.intent_of("pg-reporting-01");
        assert_eq!(intent.status, IntentStatus::Done, "{point}: {intent:?}");
        assert_eq!(
            setup.api.object(REPORTING_01)["spec"]["resources"]["requests"]["cpu"],
            "4",
            "{point}"
        );
        assert_eq!(setup.api.changes(REPORTING_02), 0, "{point}");
        // Nothing the kill left behind is lost or broken.
        ok(setup.run(&["journal", "verify"]));
        ok(setup.run(&["state", "check"]));
    }
}

#[test]
fn a_kill_switch_set_during_a_cycle_stops_operations_not_yet_started() {
    let setup = Setup::new("enforce");
    ok(setup.run(&["run", "--once"]));
    let id = setup.pending_review("pg-reporting-01");
    let (child, marker) = setup.approve_paused(&id, "after-intent");

    ok(setup.run(&["kill-switch", "on"]));
    std::fs::remove_file(&marker).unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("the global kill switch is on"), "{stdout}");
    assert_eq!(setup.api.changes(REPORTING_01), 0);
    assert!(
        !setup
            .api
            .http
            .requests()
            .iter()
            .any(|r| r.method == "PATCH"),
        "an operation started after the kill switch was set"
    );
    let intent = setup.intent_of("pg-reporting-01");
    assert_eq!(intent.status, IntentStatus::Cancelled);

    // While it stays on, nothing acts, and the cancelled intent is not resumed.
    ok(setup.run(&["run", "--once"]));
    assert_eq!(setup.api.changes(REPORTING_01), 0);
}

#[test]
fn a_passing_failure_is_retried_and_a_failed_verification_is_reported() {
    let setup = Setup::new("enforce");
    ok(setup.run(&["run", "--once"]));

    // One 503 from the API server: retried after the backoff, then applied.
    setup.api.fail_next_patches(1);
    let id = setup.pending_review("pg-reporting-01");
    let out = ok(setup.run(&["review", "approve", &id]));
    assert!(out.contains("pg-reporting-01: executed"), "{out}");
    let intent = setup.intent_of("pg-reporting-01");
    assert_eq!(intent.status, IntentStatus::Done);
    assert_eq!(intent.attempts, 2, "{intent:?}");
    assert_eq!(setup.api.changes(REPORTING_01), 1);

    // The server answers the patch but reading back shows the old values: reported, not
    // hidden, and not retried into a false success.
    setup.api.forget_patches();
    let id = setup.pending_review("pg-reporting-02");
    let output = setup.run(&["review", "approve", &id]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("not carried out"), "{stdout}");
    assert!(stdout.contains("not verified"), "{stdout}");
    let intent = setup.intent_of("pg-reporting-02");
    assert_eq!(intent.status, IntentStatus::Failed);
    assert_eq!(intent.attempts, 1, "a failed verification is not retried");
    let explained = ok(setup.run(&["explain", "pg-reporting-02"]));
    assert!(explained.contains("· failed ·"), "{explained}");
    assert!(explained.contains("not verified"), "{explained}");
    // The approval still stands: the next cycle decides again on fresh data.
    let store = setpoint_state::Store::open(&setup.state()).unwrap();
    assert_eq!(
        store.review(id.parse().unwrap()).unwrap().status,
        setpoint_core::ReviewStatus::Approved
    );
}

/// A journal edited behind setpoint's back suspends enforce mode: `journal verify` names the
/// record, the next cycle runs as dry-run and says why, and once an operator acknowledges the
/// break an approval is executed again.
#[test]
fn a_broken_journal_chain_suspends_enforce_until_acknowledged() {
    let setup = Setup::new("enforce");
    ok(setup.run(&["run", "--once"]));
    assert!(
        ok(setup.run(&["journal", "verify"])).contains("journal chain intact"),
        "a fresh store verifies"
    );
    // Someone with the file rewrites a decision's plan.
    {
        let db = redb::Database::open(setup.state().join("setpoint.redb")).unwrap();
        let journal: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("journal");
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(journal).unwrap();
            let (key, value) = {
                use redb::ReadableTable;
                let (k, v) = table
                    .iter()
                    .unwrap()
                    .map(Result::unwrap)
                    .find(|(k, _)| k.value().starts_with("pg-reporting-02"))
                    .unwrap();
                (
                    k.value().to_string(),
                    String::from_utf8(v.value().to_vec()).unwrap(),
                )
            };
            let edited = value.replacen("vCPU", "vCPU, then 1 vCPU", 1);
            assert_ne!(edited, value);
            table.insert(key.as_str(), edited.as_bytes()).unwrap();
        }
        txn.commit().unwrap();
    }
    let verify = setup.run(&["journal", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        said.contains("record journal:pg-reporting-02/weekly/")
            && said.contains("changed outside setpoint"),
        "{said}"
    );

    let out = setup.run(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(4), "degraded");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("dry-run: nothing was executed"), "{report}");
    assert!(report.contains("journal chain broken"), "{report}");

    let acknowledged = ok(setup.run(&["journal", "acknowledge", "--by", "dana"]));
    assert!(
        acknowledged.contains("acknowledged by dana"),
        "{acknowledged}"
    );
    ok(setup.run(&["journal", "verify"]));
    let id = setup.pending_review("pg-reporting-01");
    let out = ok(setup.run(&["review", "approve", &id, "--comment", "checked"]));
    assert!(out.contains("pg-reporting-01: executed"), "{out}");
    assert_eq!(setup.api.changes(REPORTING_01), 1);
}
