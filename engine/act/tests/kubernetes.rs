//! The Kubernetes actuator against a fake API server on 127.0.0.1 that checks every request
//! (method, path, content type, bearer token, body, `resourceVersion`) and answers as the API
//! server does: the object on 200, a `Status` on 404 and 409, merge patches applied per
//! RFC 7386, `dryRun=All` validated and not stored, and another writer that can change the
//! object between the actuator's read and its patch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde_json::{Value, json};
use setpoint_act::kubernetes::{KubeAuth, Kubernetes, KubernetesConfig, MERGE_PATCH};
use setpoint_act::{ActError, Actuator, Execution, OpStatus, OperationResult};
use setpoint_core::{
    ActionKind, Decision, Operation, Proposal, Reason, Resources, Risk, Target, Verdict,
};
use setpoint_test_support::{HttpFake, Request, Response, merge_patch};

const TOKEN: &str = "test-token";
const GIB: u64 = 1 << 30;

type Writer = Box<dyn FnOnce(&mut Value) + Send>;

/// What the fake API server holds.
#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    /// Changes another writer makes just before the next PATCHes are judged, one per PATCH.
    writers: Vec<Writer>,
    /// Answers to the next PATCHes, instead of judging them.
    answers: Vec<Response>,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    Response::json(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

fn version(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn bump(object: &mut Value) {
    let next = version(object) + 1;
    object["metadata"]["resourceVersion"] = json!(next.to_string());
}

fn handle(state: &Mutex<State>, request: &Request) -> Response {
    if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let mut state = state.lock().unwrap();
    let path = request.path().to_string();
    match request.method.as_str() {
        "GET" => match state.objects.get(&path) {
            Some(object) => Response::json(200, object),
            None => status(404, "NotFound", &format!("{path} not found")),
        },
        "PATCH" => {
            if request.header("content-type") != Some(MERGE_PATCH) {
                return status(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format",
                );
            }
            if !state.answers.is_empty() {
                return state.answers.remove(0);
            }
            let writer = (!state.writers.is_empty()).then(|| state.writers.remove(0));
            let Some(object) = state.objects.get_mut(&path) else {
                return status(404, "NotFound", &format!("{path} not found"));
            };
            if let Some(writer) = writer {
                writer(object);
                bump(object);
            }
            let patch = request.json();
            let sent = patch["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            if sent
                != object["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string)
            {
                return status(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let mut merged = object.clone();
            merge_patch(&mut merged, &patch);
            if request.params() == ["dryRun=All"] {
                merged["metadata"]["resourceVersion"] =
                    object["metadata"]["resourceVersion"].clone();
                return Response::json(200, &merged);
            }
            bump(&mut merged);
            *object = merged.clone();
            Response::json(200, &merged)
        }
        other => status(405, "MethodNotAllowed", &format!("{other} not allowed")),
    }
}

struct Api {
    state: Arc<Mutex<State>>,
    server: HttpFake,
    _dir: tempfile::TempDir,
    actuator: Kubernetes,
}

impl Api {
    async fn start(objects: &[(&str, Value)], config: KubernetesConfig) -> Api {
        let state = Arc::new(Mutex::new(State {
            objects: objects
                .iter()
                .map(|(path, object)| (path.to_string(), object.clone()))
                .collect(),
            writers: Vec::new(),
            answers: Vec::new(),
        }));
        let shared = state.clone();
        let server = HttpFake::start(move |request| handle(&shared, request));
        // Auth through a real kubeconfig file, as an operator would configure it.
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("config");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
                 contexts: [{{name: test, context: {{cluster: fake, user: setpoint, namespace: db}}}}]\n\
                 clusters: [{{name: fake, cluster: {{server: '{}'}}}}]\n\
                 users: [{{name: setpoint, user: {{token: {TOKEN}}}}}]\n",
                server.url()
            ),
        )
        .unwrap();
        let actuator = Kubernetes::new(KubernetesConfig {
            auth: KubeAuth::Kubeconfig {
                path: Some(kubeconfig),
                context: None,
            },
            ..config
        })
        .unwrap();
        Api {
            state,
            server,
            _dir: dir,
            actuator,
        }
    }

    fn answer_next_patch(&self, answer: Response) {
        self.state.lock().unwrap().answers.push(answer);
    }

    fn object(&self, path: &str) -> Value {
        self.state.lock().unwrap().objects[path].clone()
    }

    fn another_writer(&self, writer: impl FnOnce(&mut Value) + Send + 'static) {
        self.state.lock().unwrap().writers.push(Box::new(writer));
    }

    /// (method, path with query parameters, resourceVersion sent) of every request.
    fn calls(&self) -> Vec<(String, String, Option<String>)> {
        self.server
            .requests()
            .iter()
            .map(|r| {
                let version = r.json()["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
                (r.method.clone(), r.resource(), version)
            })
            .collect()
    }

    fn patches(&self) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }

    async fn run(
        &self,
        labels: &[(&str, &str)],
        operations: &[Operation],
        dry_run: bool,
    ) -> Result<Vec<OperationResult>, ActError> {
        let target = target(labels);
        let (decision, proposal) = decided(operations);
        let execution = Execution {
            target: &target,
            decision: &decision,
            proposal: &proposal,
            operations,
            key: "key",
            trace_id: None,
            dry_run,
            now: Utc::now(),
        };
        self.actuator.execute(&execution).await
    }
}

fn target(labels: &[(&str, &str)]) -> Target {
    Target {
        id: "pg-main".into(),
        technology: "postgres".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        resources: Resources {
            cpu_millicores: 8000,
            memory_bytes: 32 * GIB,
            replicas: 1,
            parameters: BTreeMap::new(),
        },
    }
}

fn decided(operations: &[Operation]) -> (Decision, Proposal) {
    let size = Resources {
        cpu_millicores: 4000,
        memory_bytes: 16 * GIB,
        replicas: 1,
        parameters: BTreeMap::new(),
    };
    (
        Decision {
            verdict: Verdict::Act,
            proposal: Some(ActionKind::ScaleDown),
            reasons: vec![Reason::new("test", "test")],
        },
        Proposal {
            action: ActionKind::ScaleDown,
            summary: "test".into(),
            before: size.clone(),
            after: size,
            operations: operations.to_vec(),
            risk: Risk::Medium,
            rationale: String::new(),
        },
    )
}

fn statuses(results: &[OperationResult]) -> Vec<OpStatus> {
    results.iter().map(|r| r.status.clone()).collect()
}

fn resize() -> Operation {
    Operation::Resize {
        cpu_millicores: 4000,
        memory_bytes: 16 * GIB,
    }
}

fn set(name: &str, value: &str, requires_restart: bool) -> Operation {
    Operation::SetParameter {
        name: name.into(),
        value: value.into(),
        requires_restart,
    }
}

const CLUSTER: &str = "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg-main";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/db/deployments/api";
const VPA: &str = "/apis/autoscaling.k8s.io/v1/namespaces/db/verticalpodautoscalers/pg-main";
const HPA: &str = "/apis/autoscaling/v2/namespaces/db/horizontalpodautoscalers/api";
const VIRTUAL_SERVICE: &str = "/apis/networking.istio.io/v1/namespaces/db/virtualservices/api";

fn cluster() -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "pg-main", "namespace": "db", "resourceVersion": "1"},
        "spec": {
            "instances": 3,
            "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "8", "memory": "32Gi"}},
            "postgresql": {"parameters": {"shared_buffers": "8GB", "work_mem": "16MB"}},
        },
    })
}

const CLUSTER_LABELS: &[(&str, &str)] = &[("k8s_kind", "Cluster"), ("k8s_name", "pg-main")];

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "db", "resourceVersion": "7"},
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [
                {"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "8", "memory": "32Gi"}}},
                {"name": "sidecar", "image": "proxy:1", "resources": {"requests": {"cpu": "100m"}}},
            ]}},
        },
    })
}

const DEPLOYMENT_LABELS: &[(&str, &str)] = &[
    ("k8s_kind", "Deployment"),
    ("k8s_namespace", "db"),
    ("k8s_name", "api"),
    ("k8s_container", "app"),
];

#[tokio::test]
async fn a_cloudnativepg_cluster_gets_resources_and_parameters_in_one_merge_patch() {
    let api = Api::start(&[(CLUSTER, cluster())], KubernetesConfig::default()).await;
    let operations = [
        resize(),
        set("shared_buffers", "4GB", true),
        Operation::Restart {
            reason: "shared_buffers".into(),
        },
    ];
    let results = api.run(CLUSTER_LABELS, &operations, false).await.unwrap();
    assert_eq!(
        statuses(&results),
        vec![
            OpStatus::Applied,
            OpStatus::Applied,
            OpStatus::Scheduled { at: None }
        ]
    );
    assert_eq!(results[0].object, "Cluster db/pg-main");
    // Namespace from the kubeconfig context; read, patch with the version read, read back.
    assert_eq!(
        api.calls(),
        vec![
            ("GET".into(), CLUSTER.into(), None),
            ("PATCH".into(), CLUSTER.into(), Some("1".into())),
            ("GET".into(), CLUSTER.into(), None),
        ]
    );
    let patch = &api.patches()[0];
    assert_eq!(patch.header("content-type"), Some(MERGE_PATCH));
    assert_eq!(
        patch.json(),
        json!({
            "metadata": {"resourceVersion": "1"},
            "spec": {
                "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}},
                "postgresql": {"parameters": {"shared_buffers": "4GB"}},
            },
        })
    );
    let stored = api.object(CLUSTER);
    assert_eq!(
        stored["spec"]["postgresql"]["parameters"]["work_mem"],
        "16MB"
    );
    assert_eq!(stored["spec"]["instances"], 3);

    // The same intent again: nothing to change, nothing sent.
    let again = api
        .run(CLUSTER_LABELS, &operations[..2], false)
        .await
        .unwrap();
    assert_eq!(
        statuses(&again),
        vec![OpStatus::AlreadyApplied, OpStatus::AlreadyApplied]
    );
    assert_eq!(api.patches().len(), 1);
}

#[tokio::test]
async fn quantities_written_differently_are_already_applied() {
    let mut object = cluster();
    object["spec"]["resources"] = json!({
        "requests": {"cpu": "4000m", "memory": "17179869184"},
        "limits": {"cpu": 4, "memory": "16Gi"},
    });
    let api = Api::start(&[(CLUSTER, object)], KubernetesConfig::default()).await;
    let results = api.run(CLUSTER_LABELS, &[resize()], false).await.unwrap();
    assert_eq!(statuses(&results), vec![OpStatus::AlreadyApplied]);
    assert!(api.patches().is_empty());
}

#[tokio::test]
async fn a_deployment_container_list_is_sent_whole_with_the_other_container_untouched() {
    let api = Api::start(&[(DEPLOYMENT, deployment())], KubernetesConfig::default()).await;
    let operations = [resize(), Operation::SetReplicas { replicas: 3 }];
    let results = api
        .run(DEPLOYMENT_LABELS, &operations, false)
        .await
        .unwrap();
    assert_eq!(
        statuses(&results),
        vec![OpStatus::Applied, OpStatus::Applied]
    );
    let body = api.patches()[0].json();
    assert_eq!(body["metadata"], json!({"resourceVersion": "7"}));
    assert_eq!(body["spec"]["replicas"], 3);
    let containers = body["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(
        containers.len(),
        2,
        "a merge patch replaces the list: it must be whole"
    );
    assert_eq!(
        containers[0]["resources"],
        json!({"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}})
    );
    assert_eq!(
        containers[1],
        deployment()["spec"]["template"]["spec"]["containers"][1]
    );
    assert_eq!(api.object(DEPLOYMENT)["metadata"]["resourceVersion"], "8");
}

#[tokio::test]
async fn a_conflict_is_re_read_and_retried_keeping_the_other_writers_change() {
    let api = Api::start(&[(DEPLOYMENT, deployment())], KubernetesConfig::default()).await;
    // Between our read and our patch, someone rolls the sidecar to a new image.
    api.another_writer(|object| {
        object["spec"]["template"]["spec"]["containers"][1]["image"] = json!("proxy:2");
    });
    let results = api
        .run(DEPLOYMENT_LABELS, &[resize()], false)
        .await
        .unwrap();
    assert_eq!(statuses(&results), vec![OpStatus::Applied]);
    assert_eq!(
        api.calls(),
        vec![
            ("GET".into(), DEPLOYMENT.into(), None),
            ("PATCH".into(), DEPLOYMENT.into(), Some("7".into())),
            ("GET".into(), DEPLOYMENT.into(), None),
            ("PATCH".into(), DEPLOYMENT.into(), Some("8".into())),
            ("GET".into(), DEPLOYMENT.into(), None),
        ]
    );
    let stored = api.object(DEPLOYMENT);
    let containers = &stored["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[1]["image"], "proxy:2",
        "the other writer's change survives"
    );
    assert_eq!(containers[0]["resources"]["limits"]["cpu"], "4");
}

#[tokio::test]
async fn a_conflict_on_the_fields_we_change_is_refused_not_overwritten() {
    let api = Api::start(&[(DEPLOYMENT, deployment())], KubernetesConfig::default()).await;
    // Someone else resizes the same container meanwhile.
    api.another_writer(|object| {
        object["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
            json!("6");
    });
    let error = api
        .run(DEPLOYMENT_LABELS, &[resize()], false)
        .await
        .unwrap_err();
    let ActError::Conflict {
        site,
        field,
        was,
        now,
        wanted,
    } = &error
    else {
        panic!("not a conflict: {error}");
    };
    assert_eq!(field, "containers[app].resources.limits.cpu");
    assert_eq!(
        (was.as_str(), now.as_str(), wanted.as_str()),
        ("\"8\"", "\"6\"", "\"4\"")
    );
    assert_eq!(site.target, "pg-main");
    assert_eq!(site.object, "Deployment db/api");
    assert!(error.to_string().contains("not overwriting"), "{error}");
    assert_eq!(api.patches().len(), 1, "no second patch after the refusal");
    let stored = api.object(DEPLOYMENT);
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "6"
    );
}

#[tokio::test]
async fn a_conflict_where_the_other_writer_did_the_same_change_is_already_applied() {
    let api = Api::start(&[(CLUSTER, cluster())], KubernetesConfig::default()).await;
    api.another_writer(|object| {
        object["spec"]["postgresql"]["parameters"]["shared_buffers"] = json!("4GB");
    });
    let results = api
        .run(CLUSTER_LABELS, &[set("shared_buffers", "4GB", true)], false)
        .await
        .unwrap();
    assert_eq!(statuses(&results), vec![OpStatus::AlreadyApplied]);
    assert_eq!(api.patches().len(), 1);
}

#[tokio::test]
async fn conflicts_are_retried_a_bounded_number_of_times() {
    let config = KubernetesConfig {
        conflict_retries: 2,
        ..KubernetesConfig::default()
    };
    let api = Api::start(&[(DEPLOYMENT, deployment())], config).await;
    for i in 0..5 {
        api.another_writer(move |object| {
            object["metadata"]["labels"] = json!({"touched": i.to_string()});
        });
    }
    let error = api
        .run(DEPLOYMENT_LABELS, &[resize()], false)
        .await
        .unwrap_err();
    assert!(matches!(error, ActError::Failed { .. }), "{error}");
    assert!(
        error.to_string().contains("still conflicting after 2"),
        "{error}"
    );
    assert_eq!(api.patches().len(), 3);
}

#[tokio::test]
async fn dry_run_asks_the_server_to_validate_and_stores_nothing() {
    let api = Api::start(&[(CLUSTER, cluster())], KubernetesConfig::default()).await;
    let results = api
        .run(CLUSTER_LABELS, &[set("work_mem", "32MB", false)], true)
        .await
        .unwrap();
    assert_eq!(statuses(&results), vec![OpStatus::DryRun]);
    assert_eq!(
        api.calls(),
        vec![
            ("GET".into(), CLUSTER.into(), None),
            (
                "PATCH".into(),
                format!("{CLUSTER}?dryRun=All"),
                Some("1".into())
            ),
        ]
    );
    assert_eq!(api.object(CLUSTER), cluster());
}

#[tokio::test]
async fn a_vpa_pins_the_container_policy_and_sets_the_update_mode() {
    let vpa = json!({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "pg-main", "namespace": "db", "resourceVersion": "3"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "pg-main"},
            "updatePolicy": {"updateMode": "Off"},
            "resourcePolicy": {"containerPolicies": [
                {"containerName": "exporter", "mode": "Off"},
                {"containerName": "postgres", "minAllowed": {"cpu": "1", "memory": "4Gi"}, "maxAllowed": {"cpu": "16", "memory": "64Gi"}},
            ]},
        },
    });
    let config = KubernetesConfig {
        vpa_update_mode: Some("Initial".into()),
        ..KubernetesConfig::default()
    };
    let api = Api::start(&[(VPA, vpa)], config).await;
    let labels = [
        ("k8s_kind", "verticalpodautoscaler"),
        ("k8s_name", "pg-main"),
        ("k8s_container", "postgres"),
    ];
    let results = api.run(&labels, &[resize()], false).await.unwrap();
    assert_eq!(statuses(&results), vec![OpStatus::Applied]);
    assert_eq!(
        api.patches()[0].json(),
        json!({
            "metadata": {"resourceVersion": "3"},
            "spec": {
                "updatePolicy": {"updateMode": "Initial"},
                "resourcePolicy": {"containerPolicies": [
                    {"containerName": "exporter", "mode": "Off"},
                    {"containerName": "postgres", "minAllowed": {"cpu": "4", "memory": "16Gi"}, "maxAllowed": {"cpu": "4", "memory": "16Gi"}},
                ]},
            },
        })
    );
}

#[tokio::test]
async fn an_hpa_floor_rises_and_its_ceiling_follows() {
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api", "namespace": "db", "resourceVersion": "11"},
        "spec": {"minReplicas": 2, "maxReplicas": 4, "scaleTargetRef": {"kind": "Deployment", "name": "api"}},
    });
    let api = Api::start(&[(HPA, hpa)], KubernetesConfig::default()).await;
    let labels = [("k8s_kind", "HorizontalPodAutoscaler"), ("k8s_name", "api")];
    api.run(&labels, &[Operation::SetReplicas { replicas: 5 }], false)
        .await
        .unwrap();
    assert_eq!(
        api.patches()[0].json(),
        json!({"metadata": {"resourceVersion": "11"}, "spec": {"minReplicas": 5, "maxReplicas": 5}})
    );
    // A floor above the ceiling is refused before anything is sent.
    let error = api
        .run(&labels, &[set("minReplicas", "9", false)], false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("exceed maxReplicas"), "{error}");
    assert_eq!(api.patches().len(), 1);
}

#[tokio::test]
async fn virtual_service_weights_shift_together_and_must_add_up() {
    let vs = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "api", "namespace": "db", "resourceVersion": "20"},
        "spec": {"hosts": ["api"], "http": [
            {"name": "health", "route": [{"destination": {"host": "api", "subset": "stable"}}]},
            {"name": "main", "route": [
                {"destination": {"host": "api", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "api", "subset": "canary"}, "weight": 0},
            ]},
        ]},
    });
    let api = Api::start(
        &[(VIRTUAL_SERVICE, vs.clone())],
        KubernetesConfig::default(),
    )
    .await;
    let labels = [
        ("k8s_kind", "VirtualService"),
        ("k8s_name", "api"),
        ("k8s_route", "main"),
    ];
    let shift = [
        set("weight/stable", "80", false),
        set("weight/canary", "20", false),
    ];
    let results = api.run(&labels, &shift, false).await.unwrap();
    assert_eq!(
        statuses(&results),
        vec![OpStatus::Applied, OpStatus::Applied]
    );
    let mut http = vs["spec"]["http"].clone();
    http[1]["route"][0]["weight"] = json!(80);
    http[1]["route"][1]["weight"] = json!(20);
    assert_eq!(
        api.patches()[0].json(),
        json!({"metadata": {"resourceVersion": "20"}, "spec": {"http": http}})
    );
    let error = api
        .run(&labels, &[set("weight/canary", "50", false)], false)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("add up to 130"), "{error}");
}

#[tokio::test]
async fn a_missing_object_is_an_error_that_names_it() {
    let api = Api::start(&[], KubernetesConfig::default()).await;
    let error = api
        .run(CLUSTER_LABELS, &[resize()], false)
        .await
        .unwrap_err();
    let site = error.site().unwrap();
    assert_eq!(site.object, "Cluster db/pg-main");
    assert_eq!(site.actuator, "kubernetes");
    assert!(site.operation.contains("resize"), "{error}");
    assert!(error.to_string().contains("404"), "{error}");
}

#[tokio::test]
async fn operations_an_object_has_no_field_for_are_refused_before_any_request() {
    let api = Api::start(&[(DEPLOYMENT, deployment())], KubernetesConfig::default()).await;
    let error = api
        .run(DEPLOYMENT_LABELS, &[set("work_mem", "8MB", false)], false)
        .await
        .unwrap_err();
    assert!(matches!(error, ActError::Unsupported { .. }), "{error}");
    assert!(
        !api.actuator
            .supports(&target(DEPLOYMENT_LABELS), &set("work_mem", "8MB", false))
    );
    assert!(api.actuator.supports(&target(DEPLOYMENT_LABELS), &resize()));
    assert!(api.server.requests().is_empty());
}

#[tokio::test]
async fn a_refusal_is_final_and_an_outage_is_transient_each_sent_once() {
    let api = Api::start(&[(CLUSTER, cluster())], KubernetesConfig::default()).await;
    let operations = [set("work_mem", "32MB", false)];
    api.answer_next_patch(status(403, "Forbidden", "clusters is forbidden"));
    let error = api
        .run(CLUSTER_LABELS, &operations, false)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ActError::Refused { status: 403, .. }),
        "{error}"
    );
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("clusters is forbidden"),
        "{error}"
    );

    api.answer_next_patch(status(503, "ServiceUnavailable", "etcd is unavailable"));
    let error = api
        .run(CLUSTER_LABELS, &operations, false)
        .await
        .unwrap_err();
    assert!(matches!(error, ActError::Failed { .. }), "{error}");
    assert!(error.is_transient());
    assert_eq!(
        api.patches().len(),
        2,
        "the enforcer retries, not the client underneath"
    );

    api.answer_next_patch(Response::raw(
        502,
        "application/json",
        "<html>Bad Gateway</html>",
    ));
    let error = api
        .run(CLUSTER_LABELS, &operations, false)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("502"), "{error}");
}

#[tokio::test]
async fn an_answer_that_is_not_an_object_is_unusable() {
    let api = Api::start(
        &[(CLUSTER, json!(["not", "an", "object"]))],
        KubernetesConfig::default(),
    )
    .await;
    let error = api
        .run(CLUSTER_LABELS, &[resize()], false)
        .await
        .unwrap_err();
    assert!(matches!(error, ActError::Unusable { .. }), "{error}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn an_unreachable_api_server_is_transient() {
    let api = Api::start(&[(CLUSTER, cluster())], KubernetesConfig::default()).await;
    drop(api.server);
    // The listener's port is closed once the server task has stopped.
    tokio::task::yield_now().await;
    let target = target(CLUSTER_LABELS);
    let operations = [resize()];
    let (decision, proposal) = decided(&operations);
    let execution = Execution {
        target: &target,
        decision: &decision,
        proposal: &proposal,
        operations: &operations,
        key: "key",
        trace_id: None,
        dry_run: false,
        now: Utc::now(),
    };
    let error = api.actuator.execute(&execution).await.unwrap_err();
    assert!(matches!(error, ActError::Failed { .. }), "{error}");
    assert!(error.is_transient());
}
