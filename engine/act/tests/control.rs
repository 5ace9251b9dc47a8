//! The fast loop's actuators end to end: replicas, autoscaler minimums and traffic weights
//! against the fake Kubernetes API server of `setpoint-test-support` (scale subresource,
//! namespaced lists, merge patches, `dryRun=All`, 409 on a stale `resourceVersion`), and the
//! throttle against a real `redis-server` on 127.0.0.1 with the shipped token-bucket script.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use setpoint_act::ActError;
use setpoint_act::control::{
    AutoscalerKind, ControlActuator, ControlConfig, ControlOutcome, ControlPlan, ControlStatus,
    ControlStep, ORIGINAL_MIN_ANNOTATION, PlanContext, RAISED_MIN_ANNOTATION, Refusal, ServiceRef,
};
use setpoint_act::kubernetes::{KubeAuth, KubernetesConfig};
use setpoint_core::control::{ControlAction, ReplicaTarget, ThrottleLimit};
use setpoint_test_support::{FakeKube, Request};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout";
const SCALE: &str = "/apis/apps/v1/namespaces/shop/deployments/checkout/scale";
const HPA: &str = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/checkout";
const OTHER_HPA: &str = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/legacy";
const KEDA_HPA: &str =
    "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/keda-hpa-checkout";
const SCALED_OBJECT: &str = "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/checkout";
const VPA: &str = "/apis/autoscaling.k8s.io/v1/namespaces/shop/verticalpodautoscalers/checkout";
const VIRTUAL_SERVICE: &str =
    "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/checkout";

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "7"},
        "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
        "status": {"replicas": 4},
    })
}

fn hpa(name: &str, min: u32) -> Value {
    json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "11"},
        "spec": {"minReplicas": min, "maxReplicas": 10,
                 "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"}},
        "status": {"currentReplicas": 4},
    })
}

fn scaled_object() -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "30"},
        "spec": {"scaleTargetRef": {"name": "checkout"}, "minReplicaCount": 1, "maxReplicaCount": 20,
                 "triggers": [{"type": "prometheus", "metadata": {"query": "sum(rate(http_requests_total[1m]))", "threshold": "100"}}]},
    })
}

fn keda_hpa() -> Value {
    let mut hpa = hpa("keda-hpa-checkout", 1);
    hpa["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "checkout"}]);
    hpa
}

fn vpa(mode: &str) -> Value {
    json!({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "40"},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
                 "updatePolicy": {"updateMode": mode}},
    })
}

fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": "shop", "resourceVersion": "50"},
        "spec": {"hosts": ["checkout"], "http": [
            {"name": "health", "route": [{"destination": {"host": "checkout", "subset": "primary"}}]},
            {"name": "main", "route": [
                {"destination": {"host": "checkout", "subset": "primary"}, "weight": 100},
                {"destination": {"host": "checkout", "subset": "secondary"}, "weight": 0},
            ]},
        ]},
    })
}

fn service() -> ServiceRef {
    ServiceRef::new("checkout")
        .label("k8s_kind", "Deployment")
        .label("k8s_namespace", "shop")
        .label("k8s_name", "checkout")
        .label("k8s_route", "main")
}

fn context() -> PlanContext {
    PlanContext::new(Utc::now(), "setpoint/fast-scaling")
}

fn replicas(n: u32) -> ControlAction {
    ControlAction::Replicas(ReplicaTarget::Absolute(n))
}

/// The fake API server and an actuator configured through a kubeconfig file, as an operator
/// would.
struct Cluster {
    api: FakeKube,
    actuator: ControlActuator,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(objects: &[(&str, Value)]) -> Cluster {
        let api = FakeKube::start(objects);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("config");
        api.write_kubeconfig(&kubeconfig);
        let actuator = ControlActuator::new(ControlConfig {
            kubernetes: Some(KubernetesConfig {
                auth: KubeAuth::Kubeconfig {
                    path: Some(kubeconfig),
                    context: None,
                },
                ..KubernetesConfig::default()
            }),
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..ControlConfig::default()
        })
        .unwrap();
        Cluster {
            api,
            actuator,
            _dir: dir,
        }
    }

    async fn plan(&self, action: &ControlAction) -> ControlPlan {
        self.actuator
            .plan(&service(), action, &context())
            .await
            .unwrap()
    }

    async fn act(&self, action: &ControlAction) -> ControlOutcome {
        let plan = self.plan(action).await;
        self.actuator.execute(&plan, false).await.unwrap()
    }

    fn patches(&self) -> Vec<Request> {
        self.api
            .http
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }
}

fn annotation(object: &Value, name: &str) -> Option<String> {
    object["metadata"]["annotations"][name]
        .as_str()
        .map(str::to_string)
}

// ---- replicas ------------------------------------------------------------------------------

#[tokio::test]
async fn replicas_go_through_the_scale_subresource_not_a_whole_object_patch() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment())]);
    let plan = cluster
        .plan(&ControlAction::Replicas(ReplicaTarget::Factor(1.5)))
        .await;
    // The factor is resolved from the replicas read, before anything is written.
    assert_eq!(
        plan.step,
        ControlStep::Scale {
            workload: serde_json::from_value(
                json!({"kind": "Deployment", "namespace": "shop", "name": "checkout"})
            )
            .unwrap(),
            from: 4,
            to: 6,
        }
    );
    let writes = plan.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].field, "spec.replicas");
    assert!(cluster.patches().is_empty(), "planning writes nothing");

    let outcome = cluster.actuator.execute(&plan, false).await.unwrap();
    assert_eq!(outcome.status, ControlStatus::Applied);
    assert_eq!(outcome.attempts, 1);
    let patches = cluster.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].path(), SCALE);
    assert_eq!(
        patches[0].json(),
        json!({"metadata": {"resourceVersion": "7"}, "spec": {"replicas": 6}})
    );
    assert_eq!(cluster.api.object(DEPLOYMENT)["spec"]["replicas"], 6);
    // Read back through the subresource after writing.
    let requests = cluster.api.http.requests();
    let last = requests.last().unwrap();
    assert_eq!((last.method.as_str(), last.path()), ("GET", SCALE));
    // The other autoscalers were looked for, in the workload's namespace.
    for collection in [
        "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
        "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects",
        "/apis/autoscaling.k8s.io/v1/namespaces/shop/verticalpodautoscalers",
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.method == "GET" && r.path() == collection),
            "{collection} not listed"
        );
    }
}

#[tokio::test]
async fn executing_again_or_replanning_the_same_count_writes_nothing() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment())]);
    let plan = cluster.plan(&replicas(6)).await;
    assert_eq!(
        cluster.actuator.execute(&plan, false).await.unwrap().status,
        ControlStatus::Applied
    );
    // After a crash the journalled plan runs again: the absolute count is already there.
    let again = cluster.actuator.execute(&plan, false).await.unwrap();
    assert_eq!(again.status, ControlStatus::AlreadyInPlace);
    let replanned = cluster.plan(&replicas(6)).await;
    assert!(replanned.is_noop());
    assert_eq!(
        cluster
            .actuator
            .execute(&replanned, false)
            .await
            .unwrap()
            .status,
        ControlStatus::AlreadyInPlace
    );
    assert_eq!(cluster.patches().len(), 1);
    assert_eq!(cluster.api.changes(DEPLOYMENT), 1);
}

#[tokio::test]
async fn dry_run_asks_the_server_to_validate_and_writes_nothing() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment())]);
    let plan = cluster.plan(&replicas(6)).await;
    let outcome = cluster.actuator.execute(&plan, true).await.unwrap();
    assert_eq!(outcome.status, ControlStatus::DryRun);
    let patches = cluster.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].resource(), format!("{SCALE}?dryRun=All"));
    assert_eq!(cluster.api.object(DEPLOYMENT)["spec"]["replicas"], 4);
    assert_eq!(cluster.api.changes(DEPLOYMENT), 0);
}

#[tokio::test]
async fn an_hpa_gets_its_minimum_raised_with_the_original_kept_and_then_restored() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment()), (HPA, hpa("checkout", 2))]);
    let plan = cluster.plan(&replicas(6)).await;
    assert!(
        matches!(
            &plan.step,
            ControlStep::AutoscalerMinimum {
                from: 2,
                to: 6,
                original: 2,
                restore: false,
                ..
            }
        ),
        "{:?}",
        plan.step
    );
    let outcome = cluster.actuator.execute(&plan, false).await.unwrap();
    assert_eq!(outcome.status, ControlStatus::Applied);
    assert_eq!(
        outcome.autoscalers[0].kind,
        AutoscalerKind::HorizontalPodAutoscaler
    );
    // One patch, on the HPA: the floor and the original in the same write; the workload an
    // HPA owns is never scaled.
    let patches = cluster.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].path(), HPA);
    assert_eq!(
        patches[0].json(),
        json!({"metadata": {"resourceVersion": "11", "annotations": {
                   ORIGINAL_MIN_ANNOTATION: "2", RAISED_MIN_ANNOTATION: "6"}},
               "spec": {"minReplicas": 6}})
    );
    assert_eq!(cluster.api.changes(DEPLOYMENT), 0);
    let stored = cluster.api.object(HPA);
    assert_eq!(stored["spec"]["minReplicas"], 6);
    assert_eq!(
        annotation(&stored, ORIGINAL_MIN_ANNOTATION).as_deref(),
        Some("2")
    );

    // The surge eases: the floor comes down, the original stays recorded.
    cluster.act(&replicas(5)).await;
    let stored = cluster.api.object(HPA);
    assert_eq!(stored["spec"]["minReplicas"], 5);
    assert_eq!(
        annotation(&stored, ORIGINAL_MIN_ANNOTATION).as_deref(),
        Some("2")
    );
    assert_eq!(
        annotation(&stored, RAISED_MIN_ANNOTATION).as_deref(),
        Some("5")
    );

    // The surge has passed: the owner's minimum comes back and the annotations go.
    let restored = cluster
        .actuator
        .restore_hpa_minimum(&service(), Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(restored.status, ControlStatus::Applied);
    assert_eq!(restored.action, replicas(2));
    let stored = cluster.api.object(HPA);
    assert_eq!(stored["spec"]["minReplicas"], 2);
    assert_eq!(annotation(&stored, ORIGINAL_MIN_ANNOTATION), None);
    assert_eq!(annotation(&stored, RAISED_MIN_ANNOTATION), None);
    let again = cluster
        .actuator
        .restore_hpa_minimum(&service(), Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(again.status, ControlStatus::AlreadyInPlace);

    // setpoint never lowers a minimum it did not raise.
    let below = cluster.plan(&replicas(1)).await;
    assert_eq!(
        below.step,
        ControlStep::Refused {
            reason: Refusal::BelowAutoscalerMinimum {
                minimum: 2,
                wanted: 1
            }
        }
    );
    let outcome = cluster.actuator.execute(&below, false).await.unwrap();
    assert!(matches!(outcome.status, ControlStatus::Refused { .. }));
    assert_eq!(cluster.patches().len(), 3);
}

#[tokio::test]
async fn wanting_the_original_minimum_or_less_restores_it() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment()), (HPA, hpa("checkout", 2))]);
    cluster.act(&replicas(7)).await;
    let plan = cluster.plan(&replicas(1)).await;
    assert!(
        matches!(
            &plan.step,
            ControlStep::AutoscalerMinimum {
                to: 2,
                restore: true,
                ..
            }
        ),
        "{:?}",
        plan.step
    );
    cluster.actuator.execute(&plan, false).await.unwrap();
    let stored = cluster.api.object(HPA);
    assert_eq!(stored["spec"]["minReplicas"], 2);
    assert_eq!(annotation(&stored, ORIGINAL_MIN_ANNOTATION), None);
}

#[tokio::test]
async fn a_minimum_the_owner_changed_while_raised_is_not_overwritten() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment()), (HPA, hpa("checkout", 2))]);
    cluster.act(&replicas(7)).await;
    let plan = cluster.plan(&replicas(8)).await;
    // The owner sets 3 by hand between setpoint's read and its write.
    cluster
        .api
        .another_writer(HPA, |hpa| hpa["spec"]["minReplicas"] = json!(3));
    let error = cluster.actuator.execute(&plan, false).await.unwrap_err();
    assert!(matches!(error, ActError::Conflict { .. }), "{error}");
    assert_eq!(cluster.api.object(HPA)["spec"]["minReplicas"], 3);
}

#[tokio::test]
async fn a_keda_scaled_object_gets_its_minimum_raised_never_its_hpa() {
    let cluster = Cluster::start(&[
        (DEPLOYMENT, deployment()),
        (SCALED_OBJECT, scaled_object()),
        (KEDA_HPA, keda_hpa()),
    ]);
    let plan = cluster.plan(&replicas(8)).await;
    let outcome = cluster.actuator.execute(&plan, false).await.unwrap();
    assert_eq!(outcome.status, ControlStatus::Applied);
    let patches = cluster.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].path(), SCALED_OBJECT);
    let stored = cluster.api.object(SCALED_OBJECT);
    assert_eq!(stored["spec"]["minReplicaCount"], 8);
    assert_eq!(
        annotation(&stored, ORIGINAL_MIN_ANNOTATION).as_deref(),
        Some("1")
    );
    assert_eq!(cluster.api.object(KEDA_HPA), keda_hpa());
    // Both are reported; KEDA's HPA as managed by its ScaledObject.
    let keda_hpa = outcome
        .autoscalers
        .iter()
        .find(|a| a.kind == AutoscalerKind::HorizontalPodAutoscaler)
        .unwrap();
    assert_eq!(
        keda_hpa.managed_by.as_deref(),
        Some("ScaledObject checkout")
    );

    let restored = cluster
        .actuator
        .restore_hpa_minimum(&service(), Utc::now(), false)
        .await
        .unwrap();
    assert_eq!(restored.status, ControlStatus::Applied);
    assert_eq!(
        cluster.api.object(SCALED_OBJECT)["spec"]["minReplicaCount"],
        1
    );
}

#[tokio::test]
async fn above_the_autoscalers_maximum_the_minimum_stops_at_it() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment()), (HPA, hpa("checkout", 2))]);
    let plan = cluster.plan(&replicas(15)).await;
    assert!(
        matches!(&plan.step, ControlStep::AutoscalerMinimum { to: 10, .. }),
        "{:?}",
        plan.step
    );
    assert!(plan.notes[0].contains("maximum 10"), "{:?}", plan.notes);
}

#[tokio::test]
async fn a_vpa_that_resizes_pods_is_reported_and_replicas_still_change() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment()), (VPA, vpa("Auto"))]);
    let outcome = cluster.act(&replicas(5)).await;
    assert_eq!(outcome.status, ControlStatus::Applied);
    assert_eq!(cluster.patches()[0].path(), SCALE);
    let vpa = outcome.acting_vpa().expect("the VPA is reported");
    assert_eq!(vpa.mode.as_deref(), Some("Auto"));
    assert!(outcome.notes[0].contains("#6060"), "{:?}", outcome.notes);

    let off = Cluster::start(&[(DEPLOYMENT, deployment()), (VPA, vpa_off())]);
    let outcome = off.act(&replicas(5)).await;
    assert_eq!(outcome.autoscalers.len(), 1);
    assert!(outcome.acting_vpa().is_none());
}

fn vpa_off() -> Value {
    vpa("Off")
}

#[tokio::test]
async fn several_autoscalers_on_one_workload_are_refused() {
    let cluster = Cluster::start(&[
        (DEPLOYMENT, deployment()),
        (HPA, hpa("checkout", 2)),
        (OTHER_HPA, hpa("legacy", 3)),
    ]);
    let plan = cluster.plan(&replicas(6)).await;
    assert!(
        matches!(&plan.step, ControlStep::Refused { reason: Refusal::SeveralAutoscalers { autoscalers } } if autoscalers.len() == 2),
        "{:?}",
        plan.step
    );
    let outcome = cluster.actuator.execute(&plan, false).await.unwrap();
    assert!(matches!(outcome.status, ControlStatus::Refused { .. }));
    assert!(cluster.patches().is_empty());
}

#[tokio::test]
async fn custom_resources_that_are_not_installed_are_no_autoscalers() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment())]);
    cluster.api.not_serving("/apis/keda.sh/");
    cluster.api.not_serving("/apis/autoscaling.k8s.io/");
    let outcome = cluster.act(&replicas(5)).await;
    assert_eq!(outcome.status, ControlStatus::Applied);
    assert!(outcome.autoscalers.is_empty());
}

// ---- traffic weights -----------------------------------------------------------------------

#[tokio::test]
async fn traffic_weights_shift_on_the_virtual_service_route_and_must_add_up() {
    let cluster = Cluster::start(&[
        (DEPLOYMENT, deployment()),
        (VIRTUAL_SERVICE, virtual_service()),
    ]);
    let shift = |primary: u32, secondary: u32| ControlAction::TrafficShift {
        weights: BTreeMap::from([
            ("primary".to_string(), primary),
            ("secondary".to_string(), secondary),
        ]),
    };
    let outcome = cluster.act(&shift(20, 80)).await;
    assert_eq!(outcome.status, ControlStatus::Applied);
    let patches = cluster.patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].path(), VIRTUAL_SERVICE);
    let route = &cluster.api.object(VIRTUAL_SERVICE)["spec"]["http"][1]["route"];
    assert_eq!(route[0]["weight"], 20);
    assert_eq!(route[1]["weight"], 80);
    // The other route is sent whole and untouched.
    assert_eq!(
        cluster.api.object(VIRTUAL_SERVICE)["spec"]["http"][0],
        virtual_service()["spec"]["http"][0]
    );
    assert_eq!(
        cluster.act(&shift(20, 80)).await.status,
        ControlStatus::AlreadyInPlace
    );

    let plan = cluster.plan(&shift(50, 60)).await;
    assert!(
        matches!(&plan.step, ControlStep::Refused { reason: Refusal::InvalidAction { why } } if why.contains("110")),
        "{:?}",
        plan.step
    );
    let unknown = ControlAction::TrafficShift {
        weights: BTreeMap::from([("canary".to_string(), 100)]),
    };
    let plan = cluster.plan(&unknown).await;
    assert!(
        matches!(&plan.step, ControlStep::Refused { reason: Refusal::InvalidAction { why } } if why.contains("canary")),
        "{:?}",
        plan.step
    );
    assert_eq!(cluster.patches().len(), 1);
}

// ---- failures ------------------------------------------------------------------------------

#[tokio::test]
async fn a_conflict_is_re_read_and_retried_keeping_the_other_writers_change() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment())]);
    let plan = cluster.plan(&replicas(6)).await;
    cluster.api.another_writer(DEPLOYMENT, |d| {
        d["metadata"]["labels"] = json!({"team": "payments"});
    });
    let outcome = cluster.actuator.execute(&plan, false).await.unwrap();
    assert_eq!(outcome.status, ControlStatus::Applied);
    let patches = cluster.patches();
    assert_eq!(patches.len(), 2, "one 409, then the re-read version");
    assert_eq!(patches[0].json()["metadata"]["resourceVersion"], json!("7"));
    assert_eq!(patches[1].json()["metadata"]["resourceVersion"], json!("8"));
    let stored = cluster.api.object(DEPLOYMENT);
    assert_eq!(stored["spec"]["replicas"], 6);
    assert_eq!(stored["metadata"]["labels"]["team"], "payments");

    // Another writer that changes the replicas themselves wins: the plan is stale.
    let plan = cluster.plan(&replicas(8)).await;
    cluster
        .api
        .another_writer(DEPLOYMENT, |d| d["spec"]["replicas"] = json!(3));
    let error = cluster.actuator.execute(&plan, false).await.unwrap_err();
    assert!(
        matches!(&error, ActError::Conflict { field, .. } if field == "spec.replicas"),
        "{error}"
    );
    assert!(!error.is_transient());
    assert_eq!(cluster.api.object(DEPLOYMENT)["spec"]["replicas"], 3);
}

#[tokio::test]
async fn a_rejection_is_a_typed_final_error_and_an_outage_is_retried() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment())]);
    let plan = cluster.plan(&replicas(6)).await;
    cluster.api.answer_next_patch(
        422,
        "Invalid",
        "Scale.autoscaling \"checkout\" is invalid: spec.replicas: Invalid value",
    );
    let error = cluster.actuator.execute(&plan, false).await.unwrap_err();
    assert!(
        matches!(error, ActError::Refused { status: 422, .. }),
        "{error}"
    );
    assert!(!error.is_transient());
    assert!(error.to_string().contains("Invalid value"), "{error}");
    assert_eq!(cluster.patches().len(), 1, "a refusal is not retried");

    cluster.api.fail_next_patches(1);
    let outcome = cluster.actuator.execute(&plan, false).await.unwrap();
    assert_eq!(outcome.status, ControlStatus::Applied);
    assert_eq!(outcome.attempts, 2);
    assert_eq!(cluster.api.object(DEPLOYMENT)["spec"]["replicas"], 6);
}

#[tokio::test]
async fn unconfigured_mechanisms_and_objects_without_one_are_refused() {
    let cluster = Cluster::start(&[(DEPLOYMENT, deployment())]);
    let plan = cluster
        .plan(&ControlAction::Throttle(ThrottleLimit::Rate(50.0)))
        .await;
    assert_eq!(
        plan.step,
        ControlStep::Refused {
            reason: Refusal::NotConfigured {
                what: "throttle".into()
            }
        }
    );
    let vs = ServiceRef::new("checkout")
        .label("k8s_kind", "VirtualService")
        .label("k8s_namespace", "shop")
        .label("k8s_name", "checkout");
    let plan = cluster
        .actuator
        .plan(&vs, &replicas(3), &context())
        .await
        .unwrap();
    assert!(
        matches!(
            plan.step,
            ControlStep::Refused {
                reason: Refusal::UnsupportedObject { .. }
            }
        ),
        "{:?}",
        plan.step
    );
    let plan = cluster
        .plan(&ControlAction::Replicas(ReplicaTarget::Factor(f64::NAN)))
        .await;
    assert!(matches!(
        plan.step,
        ControlStep::Refused {
            reason: Refusal::InvalidAction { .. }
        }
    ));
}

// ---- throttling against a real Redis -------------------------------------------------------

mod throttle {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use chrono::Utc;
    use setpoint_act::control::{
        ControlActuator, ControlConfig, ControlStatus, ControlStep, FailMode, PlanContext, Refusal,
        ServiceRef, ThrottleConfig, ThrottleGate,
    };
    use setpoint_core::control::{ControlAction, ThrottleLimit};

    use super::TimeDelta;

    /// A `redis-server` on a free 127.0.0.1 port, stopped by PID when dropped, pass or fail.
    struct Redis {
        child: Child,
        url: String,
        _dir: tempfile::TempDir,
    }

    impl Redis {
        fn start() -> Redis {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("redis-server is not installed: run scripts/setup.sh --stack");
            let redis = Redis {
                child,
                url: format!("redis://127.0.0.1:{port}/"),
                _dir: dir,
            };
            let client = redis::Client::open(redis.url.as_str()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let pong = client
                    .get_connection_with_timeout(Duration::from_millis(200))
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
                if pong.is_ok() {
                    return redis;
                }
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        fn hash(&self, key: &str) -> std::collections::HashMap<String, String> {
            let client = redis::Client::open(self.url.as_str()).unwrap();
            let mut connection = client.get_connection().unwrap();
            redis::cmd("HGETALL")
                .arg(key)
                .query(&mut connection)
                .unwrap()
        }

        fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn actuator(redis: &Redis) -> ControlActuator {
        ControlActuator::new(ControlConfig {
            throttle: Some(ThrottleConfig {
                // A small bucket, so that the long-run rate shows within seconds.
                burst_seconds: 0.2,
                ..ThrottleConfig::new(&redis.url)
            }),
            ..ControlConfig::default()
        })
        .unwrap()
    }

    /// Offers `count` requests at `per_second` through the script, as the service would;
    /// answers (admitted, limited, seconds taken).
    async fn drive(gate: &ThrottleGate, count: u32, per_second: u32) -> (u32, u32, f64) {
        let start = tokio::time::Instant::now();
        let every = Duration::from_secs(1) / per_second;
        let (mut admitted, mut limited) = (0, 0);
        for i in 0..count {
            tokio::time::sleep_until(start + every * i).await;
            let answer = gate.admit("checkout").await;
            assert!(answer.unavailable.is_none(), "{:?}", answer.unavailable);
            admitted += u32::from(answer.admitted);
            limited += u32::from(answer.limited);
        }
        (admitted, limited, start.elapsed().as_secs_f64())
    }

    #[tokio::test]
    async fn a_limit_written_by_setpoint_holds_the_service_to_its_rate_until_lifted() {
        let mut redis = Redis::start();
        let actuator = actuator(&redis);
        let service = ServiceRef::new("checkout");
        let context = PlanContext::new(Utc::now(), "setpoint/fast-scaling");
        let throttle = ControlAction::Throttle(ThrottleLimit::Rate(50.0));

        let plan = actuator.plan(&service, &throttle, &context).await.unwrap();
        assert!(matches!(
            &plan.step,
            ControlStep::SetThrottle { from: None, .. }
        ));
        let dry = actuator.execute(&plan, true).await.unwrap();
        assert_eq!(dry.status, ControlStatus::DryRun);
        assert!(redis.hash("setpoint:throttle:checkout").is_empty());

        let outcome = actuator.execute(&plan, false).await.unwrap();
        assert_eq!(outcome.status, ControlStatus::Applied);
        let hash = redis.hash("setpoint:throttle:checkout");
        assert_eq!(hash["rate"], "50");
        assert_eq!(hash["burst"], "10");
        assert_eq!(hash["set_by"], "setpoint/fast-scaling");
        assert!(hash.contains_key("expires_at_ms"), "{hash:?}");
        let current = actuator.current_throttle(&service).await.unwrap().unwrap();
        assert_eq!((current.rate, current.burst), (50.0, 10.0));
        assert_eq!(
            actuator.execute(&plan, false).await.unwrap().status,
            ControlStatus::AlreadyInPlace
        );

        // ~200 req/s for ~3 s against a limit of 50 req/s.
        let gate = ThrottleGate::new(&redis.url, FailMode::Open).unwrap();
        let (admitted, limited, seconds) = drive(&gate, 600, 200).await;
        assert_eq!(limited, 600);
        let burst = 10.0;
        let rate = (f64::from(admitted) - burst) / seconds;
        assert!(
            (40.0..=60.0).contains(&rate),
            "admitted {admitted} in {seconds:.2} s: {rate:.1} req/s against a limit of 50"
        );

        // A fraction of 1 lifts the limit: the hash is deleted and everything is admitted.
        let lift = ControlAction::Throttle(ThrottleLimit::Fraction(1.0));
        let plan = actuator.plan(&service, &lift, &context).await.unwrap();
        assert!(matches!(plan.step, ControlStep::LiftThrottle { .. }));
        assert_eq!(
            actuator.execute(&plan, false).await.unwrap().status,
            ControlStatus::Applied
        );
        assert!(redis.hash("setpoint:throttle:checkout").is_empty());
        assert_eq!(
            actuator.execute(&plan, false).await.unwrap().status,
            ControlStatus::AlreadyInPlace
        );
        let (admitted, limited, _) = drive(&gate, 200, 200).await;
        assert_eq!((admitted, limited), (200, 0));

        // A fraction resolves against the observed rate, and needs one.
        let half = ControlAction::Throttle(ThrottleLimit::Fraction(0.5));
        let plan = actuator.plan(&service, &half, &context).await.unwrap();
        assert_eq!(
            plan.step,
            ControlStep::Refused {
                reason: Refusal::NoRequestRate
            }
        );
        let observed = context.clone().with_request_rate(300.0);
        let plan = actuator.plan(&service, &half, &observed).await.unwrap();
        assert!(
            matches!(&plan.step, ControlStep::SetThrottle { to, .. } if to.rate == 150.0),
            "{:?}",
            plan.step
        );

        // Redis down: the caller's choice, open by default.
        redis.stop();
        let answer = gate.admit("checkout").await;
        assert!(
            answer.admitted && answer.unavailable.is_some(),
            "{answer:?}"
        );
        let closed = ThrottleGate::new(&redis.url, FailMode::Closed).unwrap();
        let answer = closed.admit("checkout").await;
        assert!(
            !answer.admitted && answer.unavailable.is_some(),
            "{answer:?}"
        );
        let error = actuator
            .plan(&service, &throttle, &context)
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
    }

    #[tokio::test]
    async fn a_limit_past_its_expiry_admits_everything() {
        let redis = Redis::start();
        let actuator = actuator(&redis);
        let service = ServiceRef::new("checkout");
        // Written by a setpoint that has since died: its expiry is behind the Redis clock.
        let long_ago = PlanContext::new(Utc::now() - TimeDelta::hours(1), "setpoint/dead");
        let throttle = ControlAction::Throttle(ThrottleLimit::Rate(1.0));
        let plan = actuator.plan(&service, &throttle, &long_ago).await.unwrap();
        assert_eq!(
            actuator.execute(&plan, false).await.unwrap().status,
            ControlStatus::Applied
        );
        assert_eq!(redis.hash("setpoint:throttle:checkout")["rate"], "1");
        let gate = ThrottleGate::new(&redis.url, FailMode::Open).unwrap();
        let (admitted, limited, _) = drive(&gate, 100, 200).await;
        assert_eq!((admitted, limited), (100, 0));
    }
}
