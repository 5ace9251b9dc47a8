//! Small HTTP/1.1 servers on 127.0.0.1 for end-to-end tests of the actuators through the
//! binary: a generic recorder, and a fake Kubernetes API server that stores objects, applies
//! JSON merge patches with optimistic concurrency and counts the changes it accepted.
//!
//! Plain threads (one connection at a time, `Connection: close`), so the server keeps running
//! while the test blocks on a child process; it stops when dropped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

type Handler = dyn Fn(&Request) -> (u16, Value) + Send + Sync;

/// A server that records every request and answers with a handler.
pub struct HttpFake {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl HttpFake {
    pub fn start(handler: impl Fn(&Request) -> (u16, Value) + Send + Sync + 'static) -> HttpFake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Some(request) = read_request(&stream) {
                        let (status, body) = handler(&request);
                        requests.lock().unwrap().push(request);
                        write_response(stream, status, &body);
                    }
                }
            });
        }
        HttpFake {
            url: format!("http://127.0.0.1:{port}"),
            requests,
            stop,
            port,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpFake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn write_response(mut stream: TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().unwrap().remove(key);
                } else {
                    merge(
                        target
                            .as_object_mut()
                            .unwrap()
                            .entry(key.clone())
                            .or_insert(Value::Null),
                        value,
                    );
                }
            }
        }
        other => *target = other.clone(),
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
    pub http: HttpFake,
    objects: Arc<Mutex<Objects>>,
    pub token: String,
}

impl FakeKube {
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
                    merge(&mut object, &patch);
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
                self.http.url, self.token
            ),
        )
        .unwrap();
    }
}
