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

/// What the fake Kubernetes API server holds.
#[derive(Default)]
struct Objects {
    by_path: BTreeMap<String, Value>,
    /// Accepted (stored) patches per path; dry-run patches are not counted.
    changes: BTreeMap<String, usize>,
    /// Answer this many of the next patches with 503 (a passing server problem).
    unavailable: usize,
    /// Answer patches as if stored, but store nothing (what a misbehaving admission chain or
    /// a controller reverting the change looks like to a client reading back).
    forget_patches: bool,
}

/// A fake Kubernetes API server: GET and PATCH (merge patch, `?dryRun=All`) on stored objects,
/// 409 when the patch's `metadata.resourceVersion` is not the stored one.
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
            changes: BTreeMap::new(),
            unavailable: 0,
            forget_patches: false,
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
            let Some(stored) = objects.by_path.get(&path).cloned() else {
                return (
                    404,
                    json!({"kind": "Status", "code": 404, "reason": "NotFound"}),
                );
            };
            match request.method.as_str() {
                "GET" => (200, stored),
                "PATCH" => {
                    if request.header("content-type") != Some("application/merge-patch+json") {
                        return (415, json!({"kind": "Status", "code": 415}));
                    }
                    if objects.unavailable > 0 {
                        objects.unavailable -= 1;
                        return (503, json!({"kind": "Status", "code": 503}));
                    }
                    let patch = request.json();
                    let version = stored["metadata"]["resourceVersion"].clone();
                    if let Some(sent) = patch["metadata"].get("resourceVersion")
                        && *sent != version
                    {
                        return (
                            409,
                            json!({"kind": "Status", "code": 409, "reason": "Conflict"}),
                        );
                    }
                    let mut object = stored;
                    merge_patch(&mut object, &patch);
                    let next = version
                        .as_str()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                        + 1;
                    object["metadata"]["resourceVersion"] = json!(next.to_string());
                    let dry_run = request.target.contains("dryRun=All");
                    if !dry_run && !objects.forget_patches {
                        objects.by_path.insert(path.clone(), object.clone());
                        *objects.changes.entry(path).or_default() += 1;
                    }
                    (200, object)
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
