//! A fast loop in enforce mode through the binary, against the fake Kubernetes API server: a
//! tick scales each service through its Deployment's scale subresource and journals what it
//! wrote; dry-run has the API server validate the same write and changes nothing; a process
//! killed after journalling its writes and before carrying them out leaves them interrupted,
//! and the next process neither repeats them nor changes the service again within its
//! cooldown; a kill switch set between the decision and the write stops it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use setpoint_test_support::FakeKube;

const SERVICES: [&str; 2] = ["svc-0001", "svc-0002"];

fn scale_path(service: &str) -> String {
    format!("/apis/apps/v1/namespaces/shop/deployments/{service}/scale")
}

fn deployment(service: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": service, "namespace": "shop", "resourceVersion": "3"},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
        "status": {"replicas": 1},
    })
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    api: FakeKube,
}

impl Setup {
    /// The simulated fleet's first two services, each a Deployment at one replica, decided by
    /// a policy that always wants more replicas than one step allows (the guard clamps it).
    fn new(mode: &str) -> Setup {
        let objects: Vec<(String, Value)> = SERVICES
            .iter()
            .map(|s| {
                (
                    format!("/apis/apps/v1/namespaces/shop/deployments/{s}"),
                    deployment(s),
                )
            })
            .collect();
        let refs: Vec<(&str, Value)> = objects
            .iter()
            .map(|(p, v)| (p.as_str(), v.clone()))
            .collect();
        let api = FakeKube::start(&refs);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        api.write_kubeconfig(&root.join("kubeconfig"));
        let policies = root.join("policy");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(
            policies.join("control.rego"),
            "package control\n\ndecision := {\"type\": \"REPLICAS\", \"replicas\": 60}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("setpoint.yaml"),
            format!(
                "state_dir: state\nplugin_cache_dir: {cache}\nloops:\n  - name: services\n    kind: fast\n    mode: {mode}\n    \
                 source: {{kind: simulated_services, seed: 7, services: 2}}\n    policies: policy\n    \
                 fast:\n      step: 5m\n      history: 2d\n      actuator:\n        kubernetes:\n          auth: {{mode: kubeconfig, path: kubeconfig}}\n          \
                 namespace: shop\n          kind: Deployment\n        backoff: 10ms\n        max_backoff: 50ms\n",
                // Shared by the tests: a fast loop still loads the weekly plugin, and
                // compiling it in every test would dominate their time.
                cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join("fast-enforce-plugin-cache")
                    .display()
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

    fn tick(&self, at: &str) -> String {
        let out = self.run(&["run", "--once", "--now", at]);
        let text = text(&out);
        assert!(out.status.success(), "{text}");
        text
    }

    fn replicas(&self, service: &str) -> u64 {
        self.api.object(&format!(
            "/apis/apps/v1/namespaces/shop/deployments/{service}"
        ))["spec"]["replicas"]
            .as_u64()
            .unwrap()
    }

    fn scale_patches(&self, service: &str) -> usize {
        self.api
            .http
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.target.starts_with(&scale_path(service)))
            .filter(|r| !r.target.contains("dryRun"))
            .count()
    }

    fn explain(&self, service: &str, at: &str) -> Value {
        let out = self.run(&["explain", service, "--at", at, "--output", "json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The replica count a journalled decision asked for.
fn decided(record: &Value) -> u64 {
    record["decision"]["action"]["absolute"].as_u64().unwrap()
}

const T0: &str = "2026-11-24T09:00:00Z";
const T1: &str = "2026-11-24T09:00:15Z";

#[test]
fn an_enforced_tick_scales_through_the_scale_subresource_and_journals_the_write() {
    let setup = Setup::new("enforce");
    let report = setup.tick(T0);
    for service in SERVICES {
        let record = setup.explain(service, T0);
        assert_eq!(record["outcome"]["kind"], "applied", "{record}");
        let wanted = decided(&record);
        assert!(wanted > 1, "{record}");
        assert_eq!(setup.replicas(service), wanted, "{report}");
        assert_eq!(setup.scale_patches(service), 1, "{report}");
    }
    assert!(
        report.contains(&format!("enforce: {} applied and verified", SERVICES.len())),
        "{report}"
    );

    // The next tick is within the cooldown: it holds, and writes nothing.
    setup.tick(T1);
    for service in SERVICES {
        assert_eq!(setup.scale_patches(service), 1);
    }
}

#[test]
fn dry_run_has_the_write_validated_and_changes_nothing() {
    let setup = Setup::new("dry-run");
    setup.tick(T0);
    for service in SERVICES {
        assert_eq!(setup.replicas(service), 1);
        assert_eq!(setup.scale_patches(service), 0);
        let record = setup.explain(service, T0);
        assert_eq!(record["outcome"]["kind"], "dry_run", "{record}");
        let writes = record["outcome"]["writes"].to_string();
        let wanted = format!("spec.replicas: 1 -> {}", decided(&record));
        assert!(writes.contains(&wanted), "{record}");
    }
    let validated = setup
        .api
        .http
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.target.contains("dryRun=All"))
        .count();
    assert_eq!(validated, SERVICES.len());
}

/// Starts a tick paused at `point` and waits until it gets there.
fn tick_paused(setup: &Setup, point: &str) -> std::process::Child {
    let marker = setup.root.join(format!("paused-{point}"));
    let child = setup
        .command(&["run", "--once", "--now", T0])
        .env(setpoint_runtime::enforce::PAUSE_AT_ENV, point)
        .env(setpoint_runtime::enforce::PAUSE_FILE_ENV, &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "setpoint never reached the pause point {point}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn writes_journalled_by_a_killed_process_are_never_carried_out_again() {
    let setup = Setup::new("enforce");
    let mut child = tick_paused(&setup, "after-intent");
    child.kill().unwrap();
    child.wait().unwrap();
    for service in SERVICES {
        assert_eq!(setup.scale_patches(service), 0);
        assert_eq!(setup.explain(service, T0)["outcome"]["kind"], "pending");
    }

    // The next process marks them interrupted, says so, and does not write within the
    // cooldown that counts from them.
    let report = setup.tick(T1);
    assert!(report.contains("interrupted"), "{report}");
    for service in SERVICES {
        let record = setup.explain(service, T0);
        assert_eq!(record["outcome"]["kind"], "interrupted", "{record}");
        assert_eq!(setup.scale_patches(service), 0, "{report}");
        assert_eq!(setup.replicas(service), 1);
        let next = setup.explain(service, T1);
        assert_eq!(next["decision"]["verdict"], "hold", "{next}");
    }
}

#[test]
fn a_kill_switch_set_after_the_decision_stops_the_write() {
    let setup = Setup::new("enforce");
    let mut child = tick_paused(&setup, "after-intent");
    let out = setup.run(&["kill-switch", "on", "--loop", "services"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(setup.root.join("paused-after-intent")).unwrap();
    assert!(child.wait().unwrap().success());
    for service in SERVICES {
        assert_eq!(setup.scale_patches(service), 0);
        let record = setup.explain(service, T0);
        assert_eq!(record["outcome"]["kind"], "stopped", "{record}");
    }
}
