//! A fake Kubernetes API server on the HTTP harness.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::HttpFake;

/// Applies a JSON merge patch (RFC 7386) as the Kubernetes API server does: objects merge,
/// `null` deletes, anything else (lists included) replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(fields) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let map = target.as_object_mut().unwrap();
        for (key, value) in fields {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    } else {
        *target = patch.clone();
    }
}

/// A change another writer makes to a stored object.
type Writer = Box<dyn FnOnce(&mut Value) + Send>;

/// What the fake Kubernetes API server holds.
#[derive(Default)]
struct Objects {
    by_path: BTreeMap<String, Value>,
    /// Accepted (stored) patches per path; dry-run patches are not counted. A patch of a
    /// `scale` subresource counts on the object it scales.
    changes: BTreeMap<String, usize>,
    /// Answer this many of the next patches with 503 (a passing server problem).
    unavailable: usize,
    /// Answers given to the next patches instead of judging them, in order.
    answers: Vec<(u16, Value)>,
    /// Changes another writer makes, each to the object at its path, just before the next
    /// patches are judged (one per patch): the patch then carries a stale `resourceVersion`.
    writers: Vec<(String, Writer)>,
    /// Path prefixes the server does not serve (404), e.g. `/apis/keda.sh/` for a custom
    /// resource whose definition is not installed.
    not_served: Vec<String>,
    /// Answer patches as if stored, but store nothing (what a misbehaving admission chain or
    /// a controller reverting the change looks like to a client reading back).
    forget_patches: bool,
}

/// A `Status` answer.
fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "code": code, "reason": reason, "message": message})
}

/// Whether a path names a namespaced collection: `/api/v1/namespaces/<ns>/<plural>` or
/// `/apis/<group>/<version>/namespaces/<ns>/<plural>`.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        ["api", _, "namespaces", _, _] | ["apis", _, _, "namespaces", _, _]
    )
}

/// The `autoscaling/v1` `Scale` of an object with `spec.replicas` (a Deployment, a
/// StatefulSet), as the API server derives it; `spec.replicas` is left out when 0, as the
/// server's `omitempty` does.
fn scale_of(object: &Value) -> Value {
    let replicas = object["spec"]["replicas"].as_u64().unwrap_or(1);
    let mut spec = json!({});
    if replicas > 0 {
        spec["replicas"] = json!(replicas);
    }
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "resourceVersion": object["metadata"]["resourceVersion"],
        },
        "spec": spec,
        "status": {"replicas": object["status"]["replicas"].as_u64().unwrap_or(replicas)},
    })
}

impl Objects {
    fn get(&self, path: &str) -> (u16, Value) {
        if let Some(object) = self.by_path.get(path) {
            return (200, object.clone());
        }
        if let Some(parent) = path.strip_suffix("/scale")
            && let Some(object) = self.by_path.get(parent)
        {
            return (200, scale_of(object));
        }
        if is_collection(path) {
            let prefix = format!("{path}/");
            let items: Vec<Value> = self
                .by_path
                .iter()
                .filter(|(p, _)| {
                    p.strip_prefix(&prefix)
                        .is_some_and(|rest| !rest.contains('/'))
                })
                .map(|(_, o)| o.clone())
                .collect();
            let kind = items
                .first()
                .and_then(|o| o["kind"].as_str())
                .map_or_else(|| "List".to_string(), |k| format!("{k}List"));
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let api_version = match segments.as_slice() {
                ["apis", group, version, ..] => format!("{group}/{version}"),
                _ => "v1".into(),
            };
            return (
                200,
                json!({"apiVersion": api_version, "kind": kind,
                       "metadata": {"resourceVersion": "1"}, "items": items}),
            );
        }
        (404, status(404, "NotFound", &format!("{path} not found")))
    }

    /// Judges a merge patch of `path` (an object, or the `scale` of one).
    fn patch(&mut self, path: &str, patch: &Value, dry_run: bool) -> (u16, Value) {
        if !self.answers.is_empty() {
            return self.answers.remove(0);
        }
        if !self.writers.is_empty() {
            let (at, writer) = self.writers.remove(0);
            if let Some(object) = self.by_path.get_mut(&at) {
                writer(object);
                let next = object["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                object["metadata"]["resourceVersion"] = json!(next.to_string());
            }
        }
        let scale = path.strip_suffix("/scale");
        let stored_path = scale.unwrap_or(path).to_string();
        let Some(stored) = self.by_path.get(&stored_path).cloned() else {
            return (404, status(404, "NotFound", &format!("{path} not found")));
        };
        let version = stored["metadata"]["resourceVersion"].clone();
        if let Some(sent) = patch["metadata"].get("resourceVersion")
            && *sent != version
        {
            return (
                409,
                status(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled: the object has been modified; please apply \
                     your changes to the latest version and try again",
                ),
            );
        }
        let next = version
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let (mut object, answer) = if scale.is_some() {
            let mut view = scale_of(&stored);
            merge_patch(&mut view, patch);
            let mut object = stored;
            object["spec"]["replicas"] = view["spec"]["replicas"].clone();
            if object["spec"]["replicas"].is_null() {
                object["spec"]["replicas"] = json!(0);
            }
            (object, Some(view))
        } else {
            let mut object = stored;
            merge_patch(&mut object, patch);
            (object, None)
        };
        object["metadata"]["resourceVersion"] = json!(next.to_string());
        if !dry_run && !self.forget_patches {
            self.by_path.insert(stored_path.clone(), object.clone());
            *self.changes.entry(stored_path).or_default() += 1;
        }
        match answer {
            Some(mut view) => {
                view["metadata"]["resourceVersion"] = json!(next.to_string());
                (200, view)
            }
            None => (200, object),
        }
    }
}

/// A fake Kubernetes API server: GET and PATCH (merge patch, `?dryRun=All`) on stored objects
/// and on the `scale` subresource of those with `spec.replicas`, GET of a namespaced collection
/// (a list of the stored objects under it), 409 when the patch's `metadata.resourceVersion` is
/// not the stored one.
pub struct FakeKube {
    /// The server, for its URL and the requests it received.
    pub http: HttpFake,
    objects: Arc<Mutex<Objects>>,
    /// The bearer token it accepts; any other is answered 401.
    pub token: String,
}

impl FakeKube {
    /// Starts a server holding `objects`, each by its API path.
    pub fn start(objects: &[(&str, Value)]) -> FakeKube {
        let state = Arc::new(Mutex::new(Objects {
            by_path: objects
                .iter()
                .map(|(p, o)| (p.to_string(), o.clone()))
                .collect(),
            ..Objects::default()
        }));
        let token = "enforce-test-token".to_string();
        let shared = state.clone();
        let expected = format!("Bearer {token}");
        let http = HttpFake::start(move |request| {
            if request.header("authorization") != Some(expected.as_str()) {
                return (401, json!({"kind": "Status", "code": 401}));
            }
            let mut objects = shared.lock().unwrap();
            let path = request.path().to_string();
            if objects.not_served.iter().any(|p| path.starts_with(p)) {
                return (
                    404,
                    status(
                        404,
                        "NotFound",
                        "the server could not find the requested resource",
                    ),
                );
            }
            match request.method.as_str() {
                "GET" => objects.get(&path),
                "PATCH" => {
                    if request.header("content-type") != Some("application/merge-patch+json") {
                        return (415, json!({"kind": "Status", "code": 415}));
                    }
                    if objects.unavailable > 0 {
                        objects.unavailable -= 1;
                        return (503, json!({"kind": "Status", "code": 503}));
                    }
                    let dry_run = request.target.contains("dryRun=All");
                    objects.patch(&path, &request.json(), dry_run)
                }
                _ => (405, json!({"kind": "Status", "code": 405})),
            }
        });
        FakeKube {
            http,
            objects: state,
            token,
        }
    }

    /// Changes the server accepted on an object (not counting dry runs).
    pub fn changes(&self, path: &str) -> usize {
        self.objects
            .lock()
            .unwrap()
            .changes
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Answers the next `n` patches with 503.
    pub fn fail_next_patches(&self, n: usize) {
        self.objects.lock().unwrap().unavailable = n;
    }

    /// Answers the next patch with `code` and a `Status` (e.g. 422 `Invalid`), whatever it is.
    pub fn answer_next_patch(&self, code: u16, reason: &str, message: &str) {
        self.objects
            .lock()
            .unwrap()
            .answers
            .push((code, status(code, reason, message)));
    }

    /// Another writer changes the object at `path` just before the next patch is judged (and
    /// bumps its `resourceVersion`, so that a patch made on the earlier read gets 409).
    pub fn another_writer(&self, path: &str, writer: impl FnOnce(&mut Value) + Send + 'static) {
        self.objects
            .lock()
            .unwrap()
            .writers
            .push((path.to_string(), Box::new(writer)));
    }

    /// Answers 404 for every path under `prefix`, as for a custom resource whose definition is
    /// not installed (e.g. `/apis/keda.sh/`).
    pub fn not_serving(&self, prefix: &str) {
        self.objects
            .lock()
            .unwrap()
            .not_served
            .push(prefix.to_string());
    }

    /// Accepts patches without storing them (reading back shows the old values).
    pub fn forget_patches(&self) {
        self.objects.lock().unwrap().forget_patches = true;
    }

    /// The object stored at `path`.
    pub fn object(&self, path: &str) -> Value {
        self.objects.lock().unwrap().by_path[path].clone()
    }

    /// A kubeconfig for this server, written to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
                 contexts: [{{name: test, context: {{cluster: fake, user: setpoint, namespace: db}}}}]\n\
                 clusters: [{{name: fake, cluster: {{server: '{}'}}}}]\n\
                 users: [{{name: setpoint, user: {{token: {}}}}}]\n",
                self.http.url(), self.token
            ),
        )
        .unwrap();
    }
}
