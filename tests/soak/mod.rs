//! The soak: many enforce-mode cycles of the real `setpoint` binary against fakes on
//! 127.0.0.1, with faults from the reliability matrix drawn at random each cycle, and the
//! invariants that must survive all of them checked as it goes.
//!
//! Shared by the `soak` bench (the long run, `scripts/soak.sh`) and the `it` suite's short
//! smoke run, so that both check the same things the same way.
//!
//! The world it runs in: a few CloudNativePG clusters held by a fake Kubernetes API server,
//! and a fake Prometheus whose utilisation series come from a deterministic demand model
//! divided by each cluster's *current* size as the fake API server holds it (reported through
//! the `setpoint_cpu` / `setpoint_memory_gib` discovery labels). A resize therefore changes
//! what the next cycle sees, and demand alternates between idle and busy phases, so the loop
//! keeps scaling down and up for as long as the soak runs. Each cycle replays the next weekly
//! period (`--now`), so hysteresis, cooldowns and the approval phase progress as in production.
//!
//! What is checked:
//! - every run exits 0, 3 (some targets failed) or 4 (degraded) — never a panic, never 1;
//! - `setpoint journal verify` passes (the hash chain is intact);
//! - no duplicate action: each change the fake API server stored is attributed to exactly one
//!   journalled intent (same object, the size the intent's plan resizes to, sent by a process
//!   that ran the intent), and no intent changed its object more than once;
//! - no lost action: no intent vanishes from the journal, none stays pending after a run that
//!   finished, none claims a change the API server never stored, and a cancelled one changed
//!   nothing;
//! - the peak RSS of a run does not grow with cycles, and the store grows linearly.
//!
//! Kubernetes patches carry no idempotency key (the key is the journal's; webhooks get it as a
//! header), so attribution is by object, target size and the processes that ran the intent:
//! the runs between two reads of the store are the only ones that can have carried out an
//! intent first seen (or finished) in the second read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use setpoint_core::{IntentStatus, OpStatus, Operation};
use setpoint_test_support::{HttpFake, Response, merge_patch};

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `setpoint` binary under test.
    pub binary: PathBuf,
    /// Loop iterations; each is one replayed weekly period (plus a restart after a kill).
    pub cycles: usize,
    /// The seed of every random choice; the same seed draws the same faults.
    pub seed: u64,
    /// Run the full checks (journal verify, attribution) every this many cycles, and at the end.
    pub check_every: usize,
    /// Print a line per cycle.
    pub verbose: bool,
}

/// The fault kinds a cycle may draw, by name, for the report.
pub const FAULT_KINDS: [&str; 17] = [
    "source_down",
    "source_5xx",
    "source_garbage",
    "source_nan",
    "source_negative",
    "source_hang",
    "kube_5xx",
    "kube_5xx_exhausting",
    "kube_409",
    "kube_slow",
    "kube_concurrent_writer",
    "sigkill_after_intent",
    "sigkill_after_execute",
    "sigkill_random",
    "kill_switch_toggle",
    "policy_runtime_error",
    "clock_back",
];

/// What a soak found.
#[derive(Debug, Default)]
pub struct Summary {
    /// The seed it ran with.
    pub seed: u64,
    /// Cycles run.
    pub cycles: usize,
    /// `setpoint run` processes started (restarts after a kill included).
    pub runs: usize,
    /// Runs by exit status (`killed` for the ones the soak killed).
    pub exits: BTreeMap<String, usize>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// Changes the fake API server stored (each is one applied action).
    pub actions_applied: usize,
    /// Intents journalled, by final status.
    pub intents: BTreeMap<String, usize>,
    /// Intents finished by start-up reconciliation after a kill.
    pub reconciled: usize,
    /// Failed intents whose change reached the object anyway (a time-out after the server
    /// stored it): reported, not an error — the next cycle sees the new size.
    pub failed_but_applied: usize,
    /// Stored changes attributed to no intent, or to an intent a second time.
    pub duplicates: usize,
    /// Intents vanished, stuck pending, or claiming a change that was never stored.
    pub lost: usize,
    /// What each duplicate or lost action was.
    pub violations: Vec<String>,
    /// `journal verify` runs, and whether the last said the chain is intact.
    pub verifies: usize,
    /// The last `journal verify` output.
    pub chain: String,
    /// Peak RSS (VmHWM, KiB) of each finished run, in order.
    pub rss_kib: Vec<u64>,
    /// Store file size after each finished run, with the cycle it followed.
    pub store_bytes: Vec<(usize, u64)>,
    /// Wall time of the whole soak.
    pub wall: Duration,
}

impl Summary {
    /// Mean and max of the peak RSS over the first and the last tenth of the runs (KiB).
    pub fn rss_first_last(&self) -> ((u64, u64), (u64, u64)) {
        let n = self.rss_kib.len();
        let tenth = (n / 10).max(1).min(n);
        let stats = |s: &[u64]| {
            if s.is_empty() {
                return (0, 0);
            }
            (
                s.iter().sum::<u64>() / s.len() as u64,
                s.iter().copied().max().unwrap_or(0),
            )
        };
        (
            stats(&self.rss_kib[..tenth]),
            stats(&self.rss_kib[n - tenth..]),
        )
    }

    /// Store growth per cycle after the first tenth (bytes), and the final size.
    pub fn store_growth(&self) -> (f64, u64) {
        let Some(&(last_cycle, last)) = self.store_bytes.last() else {
            return (0.0, 0);
        };
        let tenth = self.store_bytes.len() / 10;
        let (first_cycle, first) = self.store_bytes[tenth];
        let cycles = last_cycle.saturating_sub(first_cycle).max(1);
        (last.saturating_sub(first) as f64 / cycles as f64, last)
    }

    /// Every invariant the soak checks; the error lists each one broken.
    pub fn check(&self, bounds: &Bounds) -> Result<()> {
        let mut broken = Vec::new();
        if self.duplicates > 0 {
            broken.push(format!("{} duplicate action(s)", self.duplicates));
        }
        if self.lost > 0 {
            broken.push(format!("{} lost action(s)", self.lost));
        }
        if !self.chain.contains("journal chain intact") {
            broken.push(format!("journal verify: {}", self.chain));
        }
        let ((_, first_max), (_, last_max)) = self.rss_first_last();
        let peak = self.rss_kib.iter().copied().max().unwrap_or(0);
        if peak > bounds.rss_kib {
            broken.push(format!(
                "peak RSS {peak} KiB over the bound {} KiB",
                bounds.rss_kib
            ));
        }
        if last_max > first_max + bounds.rss_growth_kib {
            broken.push(format!(
                "peak RSS grew from {first_max} KiB (first tenth) to {last_max} KiB (last tenth), \
                 more than {} KiB",
                bounds.rss_growth_kib
            ));
        }
        let (per_cycle, _) = self.store_growth();
        if per_cycle > bounds.store_bytes_per_cycle as f64 {
            broken.push(format!(
                "the store grew {per_cycle:.0} bytes/cycle, over {}",
                bounds.store_bytes_per_cycle
            ));
        }
        // Linear, not faster: the second half adds at most about as much as the first.
        if let (Some(&(_, end)), true) = (self.store_bytes.last(), self.store_bytes.len() >= 10) {
            let (_, quarter) = self.store_bytes[self.store_bytes.len() / 4];
            let (_, half) = self.store_bytes[self.store_bytes.len() / 2];
            let first = half.saturating_sub(quarter);
            let second = end.saturating_sub(half) / 2;
            if second > first.saturating_mul(2) + bounds.store_slack_bytes {
                broken.push(format!(
                    "the store grows faster than linearly: {first} bytes over the second quarter, \
                     {second} per quarter after the half"
                ));
            }
        }
        if broken.is_empty() {
            Ok(())
        } else {
            bail!("soak (seed {}) broke: {}", self.seed, broken.join("; "))
        }
    }
}

/// The limits a soak is held to (see docs/reliability.md, "Soak", for how they were chosen).
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Peak RSS of any one run.
    pub rss_kib: u64,
    /// How much the peak RSS of the last tenth of the runs may exceed the first tenth's.
    pub rss_growth_kib: u64,
    /// Store growth per cycle.
    pub store_bytes_per_cycle: u64,
    /// Allowance for the store library's allocation steps in the linearity check.
    pub store_slack_bytes: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            rss_kib: 512 * 1024,
            rss_growth_kib: 32 * 1024,
            store_bytes_per_cycle: 256 * 1024,
            store_slack_bytes: 4 * 1024 * 1024,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ((first_mean, first_max), (last_mean, last_max)) = self.rss_first_last();
        let (per_cycle, size) = self.store_growth();
        writeln!(
            f,
            "soak: seed {}, {} cycles, {} runs, {:.1?} wall",
            self.seed, self.cycles, self.runs, self.wall
        )?;
        writeln!(f, "  exits: {:?}", self.exits)?;
        writeln!(f, "  faults injected: {:?}", self.faults)?;
        writeln!(
            f,
            "  actions applied (changes stored by the API server): {}",
            self.actions_applied
        )?;
        writeln!(
            f,
            "  intents: {:?}, {} finished by start-up reconciliation, {} failed but applied",
            self.intents, self.reconciled, self.failed_but_applied
        )?;
        writeln!(f, "  duplicates: {}, lost: {}", self.duplicates, self.lost)?;
        for violation in &self.violations {
            writeln!(f, "    {violation}")?;
        }
        writeln!(
            f,
            "  journal verify ({} runs): {}",
            self.verifies,
            self.chain.trim()
        )?;
        writeln!(
            f,
            "  peak RSS per run: first tenth mean {} / max {} KiB, last tenth mean {} / max {} KiB",
            first_mean, first_max, last_mean, last_max
        )?;
        write!(
            f,
            "  store: {size} bytes at the end, {per_cycle:.0} bytes/cycle after the first tenth"
        )
    }
}

// ---------------------------------------------------------------------------------------
// Randomness: SplitMix64, so a seed replays the same soak with no dependency.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A seed from the time and the process id, for runs that do not name one.
// The suite's smoke run keeps a fixed seed, so only the bench draws a fresh one.
#[cfg_attr(test, allow(dead_code))]
pub fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng(nanos ^ u64::from(std::process::id())).next()
}

// ---------------------------------------------------------------------------------------
// The fake Kubernetes API server, with faults.

const API: &str = "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/";
const TOKEN: &str = "soak-token";
const CLUSTERS: [&str; 4] = ["pg-soak-01", "pg-soak-02", "pg-soak-03", "pg-soak-04"];

/// What the API server does to requests during one run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KubeFault {
    None,
    /// The next n patches get 503.
    Unavailable(usize),
    /// The next n patches get 409 without a change (an optimistic-lock race).
    Conflict(usize),
    /// Every request is answered after this long.
    Slow(Duration),
    /// Right after the next GET, another writer changes the object's CPU.
    ConcurrentWriter,
}

/// A change the API server stored.
#[derive(Debug, Clone)]
struct Stored {
    run: usize,
    cluster: String,
    cpu_millicores: u64,
    memory_bytes: u64,
}

struct Kube {
    objects: BTreeMap<String, Value>,
    stored: Vec<Stored>,
    fault: KubeFault,
    run: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn cluster_object(name: &str) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": "db", "resourceVersion": "1"},
        "spec": {
            "instances": 2,
            "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "8", "memory": "32Gi"}},
            "postgresql": {"parameters": {"shared_buffers": "8GB"}},
        },
    })
}

/// A Kubernetes CPU quantity in millicores.
fn cpu_millicores(v: &Value) -> u64 {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(m) = s.strip_suffix('m') {
        m.parse().unwrap_or(0)
    } else {
        (s.parse::<f64>().unwrap_or(0.0) * 1000.0).round() as u64
    }
}

/// A Kubernetes memory quantity in bytes.
fn memory_bytes(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_default();
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if let Some(n) = s.strip_suffix(unit) {
            return (n.parse::<f64>().unwrap_or(0.0) * size as f64).round() as u64;
        }
    }
    s.parse().unwrap_or(0)
}

fn size_of(object: &Value) -> (u64, u64) {
    let requests = &object["spec"]["resources"]["requests"];
    (
        cpu_millicores(&requests["cpu"]),
        memory_bytes(&requests["memory"]),
    )
}

fn bump_version(object: &mut Value) {
    let next = object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    object["metadata"]["resourceVersion"] = json!(next.to_string());
}

fn start_kube(state: Arc<Mutex<Kube>>) -> HttpFake {
    HttpFake::start(move |request| {
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return Response::json(401, &json!({"kind": "Status", "code": 401}));
        }
        let slow = match lock(&state).fault {
            KubeFault::Slow(d) => Some(d),
            _ => None,
        };
        if let Some(d) = slow {
            // Blocks this fake's only thread: every request waits, as behind a slow server.
            std::thread::sleep(d);
        }
        let mut kube = lock(&state);
        let path = request.path().to_string();
        let Some(name) = path.strip_prefix(API).map(str::to_string) else {
            return Response::json(404, &json!({"kind": "Status", "code": 404}));
        };
        let Some(stored) = kube.objects.get(&name).cloned() else {
            return Response::json(404, &json!({"kind": "Status", "code": 404}));
        };
        match request.method.as_str() {
            "GET" => {
                if kube.fault == KubeFault::ConcurrentWriter {
                    kube.fault = KubeFault::None;
                    let mut changed = stored.clone();
                    let (cpu, _) = size_of(&stored);
                    let cpu = json!(format!("{}m", cpu + 1000));
                    changed["spec"]["resources"]["requests"]["cpu"] = cpu.clone();
                    changed["spec"]["resources"]["limits"]["cpu"] = cpu;
                    bump_version(&mut changed);
                    kube.objects.insert(name, changed);
                }
                Response::json(200, &stored)
            }
            "PATCH" => {
                let dry_run = request.params().contains(&"dryRun=All");
                if !dry_run {
                    match &mut kube.fault {
                        KubeFault::Unavailable(n) if *n > 0 => {
                            *n -= 1;
                            return Response::json(503, &json!({"kind": "Status", "code": 503}));
                        }
                        KubeFault::Conflict(n) if *n > 0 => {
                            *n -= 1;
                            return Response::json(
                                409,
                                &json!({"kind": "Status", "code": 409, "reason": "Conflict", "message": "the object has been modified"}),
                            );
                        }
                        _ => {}
                    }
                }
                let patch = request.json();
                if let Some(sent) = patch["metadata"].get("resourceVersion")
                    && *sent != stored["metadata"]["resourceVersion"]
                {
                    return Response::json(
                        409,
                        &json!({"kind": "Status", "code": 409, "reason": "Conflict", "message": "the object has been modified"}),
                    );
                }
                let mut object = stored;
                merge_patch(&mut object, &patch);
                bump_version(&mut object);
                if !dry_run {
                    let (cpu, memory) = size_of(&object);
                    let run = kube.run;
                    kube.stored.push(Stored {
                        run,
                        cluster: name.clone(),
                        cpu_millicores: cpu,
                        memory_bytes: memory,
                    });
                    kube.objects.insert(name, object.clone());
                }
                Response::json(200, &object)
            }
            _ => Response::json(405, &json!({"kind": "Status", "code": 405})),
        }
    })
}

// ---------------------------------------------------------------------------------------
// The fake Prometheus, with faults.

/// What the source does during one run (a source that is down is a config pointing nowhere).
#[derive(Debug, Clone, Copy, PartialEq)]
enum SourceFault {
    None,
    Status5xx,
    Garbage,
    NaN,
    Negative,
    Hang,
}

/// The PostgreSQL plugin's metrics, by a fragment of their PromQL.
const METRICS: [(&str, &str); 4] = [
    ("cpu", "node_cpu_seconds_total"),
    ("memory", "node_memory_MemAvailable_bytes"),
    ("connections", "pg_stat_activity_count"),
    ("iops", "node_disk_io_time_seconds_total"),
];

const WEEK: f64 = 7.0 * 86_400.0;

/// The utilisation the source reports for a cluster at time `t` (seconds), given its size: a
/// demand that alternates between an idle and a busy phase (a different period per cluster),
/// divided by the size and capped at 1.
fn utilisation(cluster: usize, metric: &str, t: f64, size: (u64, u64)) -> f64 {
    let week = (t / WEEK).floor() as i64;
    let period = [11, 14, 17, 23][cluster % 4];
    let busy = (week + 3 * cluster as i64).rem_euclid(2 * period) >= period;
    let wobble = ((week.rem_euclid(5)) as f64) * 0.01;
    let (cpu, memory) = (
        size.0 as f64 / 1000.0,
        size.1 as f64 / f64::from(1u32 << 30),
    );
    match metric {
        "cpu" => ((if busy { 14.0 } else { 0.7 }) / cpu.max(0.001) + wobble).min(1.0),
        "memory" => ((if busy { 50.0 } else { 3.0 }) / memory.max(0.001) + wobble).min(1.0),
        _ => 0.2 + wobble,
    }
}

fn decode(text: &str) -> String {
    let text = text.replace('+', " ");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect()
}

/// The `query_range` answer: a weekly summary (aggregate and count) when the query asks for
/// one, raw samples otherwise; `value(cluster, t)` gives each point.
fn matrix(
    request: &BTreeMap<String, String>,
    value: &dyn Fn(usize, f64) -> String,
) -> Option<String> {
    let start: f64 = request.get("start")?.parse().ok()?;
    let end: f64 = request.get("end")?.parse().ok()?;
    let step: f64 = request.get("step")?.parse().ok()?;
    if step <= 0.0 {
        return None;
    }
    let times: Vec<f64> = (0..)
        .map(|i| start + f64::from(i) * step)
        .take_while(|t| *t <= end + 1e-6)
        .take(20_000)
        .collect();
    let weekly = request.get("query")?.contains("setpoint_stat");
    let mut result = Vec::new();
    for (i, id) in CLUSTERS.iter().enumerate() {
        let points = |f: &dyn Fn(f64) -> String| {
            times
                .iter()
                .map(|t| format!("[{t:.3},\"{}\"]", f(*t)))
                .collect::<Vec<_>>()
                .join(",")
        };
        if weekly {
            result.push(format!(
                r#"{{"metric":{{"instance":"{id}","setpoint_stat":"value"}},"values":[{}]}}"#,
                points(&|t| value(i, t))
            ));
            result.push(format!(
                r#"{{"metric":{{"instance":"{id}","setpoint_stat":"count"}},"values":[{}]}}"#,
                points(&|_| "2016".to_string())
            ));
        } else {
            result.push(format!(
                r#"{{"metric":{{"instance":"{id}"}},"values":[{}]}}"#,
                points(&|t| value(i, t))
            ));
        }
    }
    Some(format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
        result.join(",")
    ))
}

fn start_source(kube: Arc<Mutex<Kube>>, fault: Arc<Mutex<SourceFault>>) -> HttpFake {
    HttpFake::start(move |request| {
        let json = |status, body: String| Response::raw(status, "application/json", body);
        let fault = *lock(&fault);
        match fault {
            SourceFault::Status5xx => {
                return json(503, r#"{"status":"error","error":"overloaded"}"#.into());
            }
            SourceFault::Garbage => {
                return json(200, "{\"status\":\"success\",\"data\":[[[".into());
            }
            SourceFault::Hang => return Response::hang(),
            _ => {}
        }
        let sizes: Vec<(u64, u64)> = {
            let kube = lock(&kube);
            CLUSTERS
                .iter()
                .map(|c| kube.objects.get(*c).map_or((0, 0), size_of))
                .collect()
        };
        let form = form(&request.text());
        let query = form.get("query").cloned().unwrap_or_default();
        if request.path().contains("/api/v1/query_range") {
            let metric = METRICS
                .iter()
                .find(|(_, fragment)| query.contains(fragment))
                .map_or("unknown", |(name, _)| *name);
            let value = |cluster: usize, t: f64| -> String {
                match (fault, metric) {
                    (SourceFault::NaN, "cpu") => "NaN".into(),
                    (SourceFault::Negative, "cpu") => "-5".into(),
                    _ => format!("{:.4}", utilisation(cluster, metric, t, sizes[cluster])),
                }
            };
            match matrix(&form, &value) {
                Some(body) => json(200, body),
                None => json(400, r#"{"status":"error","error":"bad range"}"#.into()),
            }
        } else if request.path().contains("/api/v1/query") {
            let kube = lock(&kube);
            let result: Vec<String> = CLUSTERS
                .iter()
                .zip(&sizes)
                .map(|(c, (cpu, memory))| {
                    let buffers = kube.objects.get(*c).and_then(|o| {
                        o["spec"]["postgresql"]["parameters"]["shared_buffers"]
                            .as_str()
                            .map(str::to_string)
                    });
                    format!(
                        r#"{{"metric":{{"__name__":"pg_up","instance":"{c}","setpoint_cpu":"{}","setpoint_memory_gib":"{}","setpoint_param_shared_buffers":"{}"}},"value":[1795413600,"1"]}}"#,
                        *cpu as f64 / 1000.0,
                        *memory as f64 / f64::from(1u32 << 30),
                        buffers.unwrap_or_default()
                    )
                })
                .collect();
            json(
                200,
                format!(
                    r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                    result.join(",")
                ),
            )
        } else {
            json(404, "not found".into())
        }
    })
}

// ---------------------------------------------------------------------------------------
// The journal as the soak has seen it.

#[derive(Debug)]
struct Seen {
    cluster: String,
    status: IntentStatus,
    /// The size the plan resizes to, if it resizes.
    wants: Option<(u64, u64)>,
    /// Runs that may have carried it out.
    runs: BTreeSet<usize>,
    reconciled: bool,
    /// Whether it reports an operation as changed by it.
    claims_applied: bool,
}

#[derive(Default)]
struct Ledger {
    seen: BTreeMap<String, Seen>,
    /// Runs since the last read of the store (killed ones included).
    unread: Vec<usize>,
    violations: Vec<String>,
}

impl Ledger {
    /// Takes in the store's intents after a run that finished.
    fn read(&mut self, state: &Path) -> Result<()> {
        let store = setpoint_state::Store::open_for_reading(state).context("opening the store")?;
        let intents = store.intents().context("reading intents")?;
        drop(store);
        let runs: BTreeSet<usize> = self.unread.drain(..).collect();
        let mut present = BTreeSet::new();
        for intent in intents {
            present.insert(intent.key.clone());
            let wants = intent.operations.iter().find_map(|op| match op {
                Operation::Resize {
                    cpu_millicores,
                    memory_bytes,
                } => Some((*cpu_millicores, *memory_bytes)),
                _ => None,
            });
            let claims_applied = intent
                .results
                .iter()
                .any(|r| matches!(r.status, OpStatus::Applied));
            match self.seen.get_mut(&intent.key) {
                None => {
                    self.seen.insert(
                        intent.key.clone(),
                        Seen {
                            cluster: intent.target.id.clone(),
                            status: intent.status,
                            wants,
                            runs: runs.clone(),
                            reconciled: intent.reconciled,
                            claims_applied,
                        },
                    );
                }
                Some(seen) => {
                    if seen.status == IntentStatus::Pending {
                        seen.runs.extend(runs.iter().copied());
                    } else if seen.status != intent.status {
                        self.violations.push(format!(
                            "intent {} of {} went from {} to {} after it had finished",
                            intent.key, seen.cluster, seen.status, intent.status
                        ));
                    }
                    seen.status = intent.status;
                    seen.reconciled = intent.reconciled;
                    seen.claims_applied = claims_applied;
                }
            }
            if intent.status == IntentStatus::Pending {
                self.violations.push(format!(
                    "intent {} of {} is still pending after a run that finished",
                    intent.key, intent.target.id
                ));
            }
        }
        for (key, seen) in &self.seen {
            if !present.contains(key) {
                self.violations.push(format!(
                    "intent {key} of {} vanished from the journal",
                    seen.cluster
                ));
            }
        }
        self.seen.retain(|key, _| present.contains(key));
        Ok(())
    }
}

/// Attributes each stored change to the intents; fills the summary's action figures.
fn attribute(ledger: &Ledger, stored: &[Stored], summary: &mut Summary) {
    let mut violations = ledger.violations.clone();
    let mut per_intent: BTreeMap<&str, usize> = BTreeMap::new();
    let mut duplicates = 0;
    for change in stored {
        let candidates: Vec<&str> = ledger
            .seen
            .iter()
            .filter(|(_, s)| {
                s.cluster == change.cluster
                    && s.runs.contains(&change.run)
                    && s.wants
                        .is_none_or(|w| w == (change.cpu_millicores, change.memory_bytes))
            })
            .map(|(k, _)| k.as_str())
            .collect();
        // With two candidates (an intent resumed after a crash and cancelled, and the new one
        // of the same run wanting the same size), the one not yet credited that says it applied
        // the change takes it, then any not yet credited.
        let uncredited = |k: &&&str| !per_intent.contains_key(**k);
        let claims = |k: &&&str| ledger.seen.get(**k).is_some_and(|s| s.claims_applied);
        let chosen = candidates
            .iter()
            .find(|k| uncredited(k) && claims(k))
            .or_else(|| candidates.iter().find(uncredited))
            .or(candidates.first());
        match chosen {
            Some(key) => *per_intent.entry(key).or_default() += 1,
            None => {
                duplicates += 1;
                violations.push(format!(
                    "run {} changed {} to {}m / {} bytes, and no intent it ran wants that",
                    change.run, change.cluster, change.cpu_millicores, change.memory_bytes
                ));
            }
        }
    }
    let mut lost = ledger.violations.len();
    let mut failed_but_applied = 0;
    summary.intents.clear();
    summary.reconciled = 0;
    for (key, seen) in &ledger.seen {
        *summary.intents.entry(seen.status.to_string()).or_default() += 1;
        summary.reconciled += usize::from(seen.reconciled);
        let changes = per_intent.get(key.as_str()).copied().unwrap_or(0);
        if changes > 1 {
            duplicates += changes - 1;
            violations.push(format!(
                "intent {key} changed {} {changes} times",
                seen.cluster
            ));
        }
        match seen.status {
            IntentStatus::Done if seen.claims_applied && changes == 0 => {
                lost += 1;
                violations.push(format!(
                    "intent {key} of {} says applied, but the API server stored no change",
                    seen.cluster
                ));
            }
            IntentStatus::Cancelled if changes > 0 => {
                lost += 1;
                violations.push(format!(
                    "intent {key} of {} was cancelled as not having happened, yet changed it",
                    seen.cluster
                ));
            }
            IntentStatus::Failed if changes > 0 => failed_but_applied += 1,
            _ => {}
        }
    }
    summary.actions_applied = stored.len();
    summary.duplicates = duplicates;
    summary.lost = lost;
    summary.failed_but_applied = failed_but_applied;
    summary.violations = violations;
}

// ---------------------------------------------------------------------------------------
// The runs.

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    kube_state: Arc<Mutex<Kube>>,
    /// Kept so the server lives as long as the world.
    _kube: HttpFake,
    source_fault: Arc<Mutex<SourceFault>>,
    source: HttpFake,
    binary: PathBuf,
}

/// How one run of the binary ended.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Exited(i32),
    Killed,
}

/// What a cycle's run is asked to do.
struct Run {
    now: DateTime<Utc>,
    source_down: bool,
    broken_policy: bool,
    /// Kill it at this pause point, or after this long.
    kill_at: Option<&'static str>,
    kill_after: Option<Duration>,
}

impl World {
    fn new(binary: PathBuf) -> Result<World> {
        // The runs start in the world's directory.
        let binary = std::fs::canonicalize(&binary)
            .with_context(|| format!("the setpoint binary {}", binary.display()))?;
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_path_buf();
        let kube_state = Arc::new(Mutex::new(Kube {
            objects: CLUSTERS
                .iter()
                .map(|c| (c.to_string(), cluster_object(c)))
                .collect(),
            stored: Vec::new(),
            fault: KubeFault::None,
            run: 0,
        }));
        let kube = start_kube(kube_state.clone());
        let source_fault = Arc::new(Mutex::new(SourceFault::None));
        let source = start_source(kube_state.clone(), source_fault.clone());
        std::fs::write(
            root.join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: soak\n\
                 contexts: [{{name: soak, context: {{cluster: fake, user: setpoint, namespace: db}}}}]\n\
                 clusters: [{{name: fake, cluster: {{server: '{}'}}}}]\n\
                 users: [{{name: setpoint, user: {{token: {TOKEN}}}}}]\n",
                kube.url()
            ),
        )?;
        // The default bundle, with autonomy widened so that the soak acts on its own after a
        // short approval phase (policies/README.md: platform teams move these lines in data).
        let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let bundle = root.join("policies");
        std::fs::create_dir_all(&bundle)?;
        for entry in std::fs::read_dir(&policies)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".rego") && !name.ends_with("_test.rego") {
                std::fs::copy(&path, bundle.join(name))?;
            }
        }
        let mut data: Value = serde_json::from_slice(&std::fs::read(policies.join("data.json"))?)?;
        let config = &mut data["setpoint"]["config"];
        config["approval_days"] = json!(14);
        config["autonomy"]["auto_actions"] = json!(["scale_down", "scale_up"]);
        config["autonomy"]["auto_max_risk"] = json!("medium");
        config["min_confidence"] = json!(0.5);
        std::fs::write(bundle.join("data.json"), serde_json::to_vec_pretty(&data)?)?;
        // A bundle that parses but fails at run time for every target.
        let broken = root.join("policies-broken");
        std::fs::create_dir_all(&broken)?;
        std::fs::write(
            broken.join("decision.rego"),
            "package setpoint\nimport rego.v1\n\
             decision := {\"verdict\": \"act\", \"proposal\": null, \"reasons\": [{\"code\": \"x\", \"message\": sprintf(\"%v\", [n])}]} if {\n\
             \tn := to_number(input.target.id)\n}\n",
        )?;
        Ok(World {
            _dir: dir,
            root,
            kube_state,
            _kube: kube,
            source_fault,
            source,
            binary,
        })
    }

    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    fn write_config(&self, run: &Run) -> Result<PathBuf> {
        let url = if run.source_down {
            format!("http://{}", setpoint_test_support::closed_port())
        } else {
            self.source.url().to_string()
        };
        let policies = if run.broken_policy {
            "./policies-broken"
        } else {
            "./policies"
        };
        let mut yaml = format!(
            "state_dir: ./state\n\
             loops:\n  - name: soak\n    plugin: builtin:postgres\n\
             \x20   source: {{ kind: prometheus, url: '{url}', timeout: 1s, retries: 1 }}\n\
             \x20   observe_deadline: 4s\n\
             \x20   classifier: {{ kind: bootstrap }}\n\
             \x20   policies: {policies}\n\
             \x20   mode: enforce\n\
             \x20   actuators:\n      - kubernetes: {{ auth: {{ mode: kubeconfig, path: ./kubeconfig }}, timeout: 2s }}\n\
             \x20   act: {{ retries: 2, backoff: 50ms, max_backoff: 200ms, resume_within: 1h }}\n\
             \x20   targets:\n"
        );
        for c in CLUSTERS {
            yaml.push_str(&format!(
                "      - {{ id: {c}, labels: {{ k8s_kind: Cluster, k8s_namespace: db, k8s_name: {c} }} }}\n"
            ));
        }
        let path = self.root.join("setpoint.yaml");
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.root)
            .arg("--config")
            .arg(self.root.join("setpoint.yaml"))
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("SETPOINT_NOW")
            .env("OTEL_SDK_DISABLED", "true")
            .env_remove(setpoint_runtime::enforce::PAUSE_AT_ENV)
            .env_remove(setpoint_runtime::enforce::PAUSE_FILE_ENV);
        command
    }

    /// Runs one cycle; returns how it ended and its peak RSS (KiB) as last seen.
    fn run(&self, index: usize, run: &Run) -> Result<(Ended, u64)> {
        self.write_config(run)?;
        lock(&self.kube_state).run = index;
        let marker = self.root.join("paused");
        let _ = std::fs::remove_file(&marker);
        let now = run.now.to_rfc3339();
        let mut command = self.command(&["run", "--once", "--no-notify", "--now", &now]);
        if let Some(point) = run.kill_at {
            command
                .env(setpoint_runtime::enforce::PAUSE_AT_ENV, point)
                .env(setpoint_runtime::enforce::PAUSE_FILE_ENV, &marker);
        }
        let out = std::fs::File::create(self.root.join("last.stdout"))?;
        let err = std::fs::File::create(self.root.join("last.stderr"))?;
        let mut child: Child = command
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let started = Instant::now();
        let status_file = PathBuf::from(format!("/proc/{}/status", child.id()));
        let mut hwm = 0;
        loop {
            if let Some(status) = child.try_wait()? {
                let code = status.code().unwrap_or(-1);
                return Ok((Ended::Exited(code), hwm));
            }
            if let Ok(text) = std::fs::read_to_string(&status_file)
                && let Some(kib) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                hwm = hwm.max(kib);
            }
            let kill = (run.kill_at.is_some() && marker.exists())
                || run.kill_after.is_some_and(|d| started.elapsed() >= d);
            if kill {
                // Child::kill is SIGKILL on Unix.
                child.kill()?;
                child.wait()?;
                return Ok((Ended::Killed, hwm));
            }
            if started.elapsed() > Duration::from_secs(300) {
                child.kill()?;
                child.wait()?;
                bail!("run {index} at {now} took over 5 minutes: killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn last_output(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.root.join(n)).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "stdout:\n{}\nstderr:\n{}",
            tail(read("last.stdout")),
            tail(read("last.stderr"))
        )
    }

    fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(self.command(args).stdin(Stdio::null()).output()?)
    }

    fn verify_chain(&self) -> Result<String> {
        let out = self.cli(&["journal", "verify"])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("journal verify exited {:?}: {text}", out.status.code());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// Runs a soak and checks its invariants along the way; the summary says what it found (its
/// [`Summary::check`] holds it to the bounds).
pub fn run(options: &Options) -> Result<Summary> {
    let started = Instant::now();
    let world = World::new(options.binary.clone())?;
    let mut rng = Rng(options.seed);
    let mut summary = Summary {
        seed: options.seed,
        faults: FAULT_KINDS.iter().map(|k| (*k, 0)).collect(),
        ..Summary::default()
    };
    let mut ledger = Ledger::default();
    let base: DateTime<Utc> = "2026-01-05T06:00:00Z".parse()?;
    let mut period: i64 = 0;
    let mut kill_switch_on = false;
    let mut typical = Duration::from_millis(800);
    let count = |summary: &mut Summary, kind: &'static str| {
        *summary.faults.entry(kind).or_default() += 1;
    };
    // World::new wrote no config yet; the CLI commands below need one.
    world.write_config(&Run {
        now: base,
        source_down: false,
        broken_policy: false,
        kill_at: None,
        kill_after: None,
    })?;
    for cycle in 0..options.cycles {
        // The replayed time: the next weekly period, or (a clock jumping back) one before.
        let mut now = base + chrono::Duration::weeks(period);
        if cycle > 4 && rng.chance(0.04) {
            now -= chrono::Duration::days(1 + rng.below(20) as i64);
            count(&mut summary, "clock_back");
        } else {
            period += 1;
        }
        // The source.
        let mut source_down = false;
        let source_fault = if rng.chance(0.3) {
            match rng.below(6) {
                0 => {
                    source_down = true;
                    count(&mut summary, "source_down");
                    SourceFault::None
                }
                1 => {
                    count(&mut summary, "source_5xx");
                    SourceFault::Status5xx
                }
                2 => {
                    count(&mut summary, "source_garbage");
                    SourceFault::Garbage
                }
                3 => {
                    count(&mut summary, "source_nan");
                    SourceFault::NaN
                }
                4 => {
                    count(&mut summary, "source_negative");
                    SourceFault::Negative
                }
                _ => {
                    count(&mut summary, "source_hang");
                    SourceFault::Hang
                }
            }
        } else {
            SourceFault::None
        };
        *lock(&world.source_fault) = source_fault;
        // The Kubernetes API server.
        let kube_fault = if rng.chance(0.3) {
            match rng.below(5) {
                0 => {
                    count(&mut summary, "kube_5xx");
                    KubeFault::Unavailable(1 + rng.below(2) as usize)
                }
                1 => {
                    count(&mut summary, "kube_5xx_exhausting");
                    KubeFault::Unavailable(10)
                }
                2 => {
                    count(&mut summary, "kube_409");
                    KubeFault::Conflict(1 + rng.below(2) as usize)
                }
                3 => {
                    count(&mut summary, "kube_slow");
                    KubeFault::Slow(Duration::from_millis(200 + rng.below(2300)))
                }
                _ => {
                    count(&mut summary, "kube_concurrent_writer");
                    KubeFault::ConcurrentWriter
                }
            }
        } else {
            KubeFault::None
        };
        lock(&world.kube_state).fault = kube_fault;
        // Kill switches and policy.
        if rng.chance(0.05) {
            count(&mut summary, "kill_switch_toggle");
            let state = if kill_switch_on { "off" } else { "on" };
            let mut args = vec!["kill-switch", state, "--by", "soak"];
            let target = CLUSTERS[rng.below(4) as usize];
            if !kill_switch_on && rng.chance(0.5) {
                args.extend(["--target", target]);
            }
            if kill_switch_on {
                // Off for every scope that may be on.
                for c in CLUSTERS {
                    let out = world.cli(&["kill-switch", "off", "--by", "soak", "--target", c])?;
                    if !out.status.success() {
                        bail!(
                            "kill-switch off --target {c}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            }
            let out = world.cli(&args)?;
            if !out.status.success() {
                bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            kill_switch_on = !kill_switch_on;
        }
        let broken_policy = rng.chance(0.04);
        if broken_policy {
            count(&mut summary, "policy_runtime_error");
        }
        // The process.
        let (kill_at, kill_after) = if rng.chance(0.2) {
            match rng.below(3) {
                0 => {
                    count(&mut summary, "sigkill_after_intent");
                    (Some("after-intent"), None)
                }
                1 => {
                    count(&mut summary, "sigkill_after_execute");
                    (Some("after-execute"), None)
                }
                _ => {
                    count(&mut summary, "sigkill_random");
                    let ms = rng.below(typical.as_millis() as u64 + 1);
                    (None, Some(Duration::from_millis(ms)))
                }
            }
        } else {
            (None, None)
        };
        let spec = Run {
            now,
            source_down,
            broken_policy,
            kill_at,
            kill_after,
        };
        summary.runs += 1;
        let began = Instant::now();
        let (ended, hwm) = world.run(summary.runs, &spec)?;
        ledger.unread.push(summary.runs);
        let mut finished = match ended {
            Ended::Killed => {
                *summary.exits.entry("killed".into()).or_default() += 1;
                false
            }
            Ended::Exited(code) => {
                *summary.exits.entry(code.to_string()).or_default() += 1;
                if ![0, 3, 4].contains(&code) {
                    bail!(
                        "cycle {cycle} (seed {}): setpoint exited {code}\n{}",
                        options.seed,
                        world.last_output()
                    );
                }
                if kill_after.is_none() && kill_at.is_none() {
                    typical = (typical * 3 + began.elapsed()) / 4;
                }
                summary.rss_kib.push(hwm);
                true
            }
        };
        // After a kill: half the time a supervisor restarts it at once (within resume_within,
        // so the pending intent is finished), else it waits for the next period (the intent is
        // then too old to resume and is only read back).
        lock(&world.kube_state).fault = KubeFault::None;
        *lock(&world.source_fault) = SourceFault::None;
        if !finished && rng.chance(0.5) {
            let restart = Run {
                now: now + chrono::Duration::minutes(1),
                source_down: false,
                broken_policy: false,
                kill_at: None,
                kill_after: None,
            };
            summary.runs += 1;
            let (ended, hwm) = world.run(summary.runs, &restart)?;
            ledger.unread.push(summary.runs);
            match ended {
                Ended::Exited(code) if [0, 3, 4].contains(&code) => {
                    *summary.exits.entry(code.to_string()).or_default() += 1;
                    summary.rss_kib.push(hwm);
                    finished = true;
                }
                Ended::Exited(code) => bail!(
                    "cycle {cycle} restart (seed {}): setpoint exited {code}\n{}",
                    options.seed,
                    world.last_output()
                ),
                Ended::Killed => bail!("a restart was killed"),
            }
        }
        if finished {
            ledger.read(&world.state())?;
            let size = std::fs::metadata(world.state().join("setpoint.redb"))?.len();
            summary.store_bytes.push((cycle, size));
        }
        let last = cycle + 1 == options.cycles;
        if (cycle + 1) % options.check_every.max(1) == 0 || last {
            if !finished {
                // Let a clean run take in what the kill left before the checks.
                summary.runs += 1;
                let (ended, hwm) = world.run(
                    summary.runs,
                    &Run {
                        now,
                        source_down: false,
                        broken_policy: false,
                        kill_at: None,
                        kill_after: None,
                    },
                )?;
                ledger.unread.push(summary.runs);
                match ended {
                    Ended::Exited(code) if [0, 3, 4].contains(&code) => {
                        *summary.exits.entry(code.to_string()).or_default() += 1;
                        summary.rss_kib.push(hwm);
                    }
                    _ => bail!(
                        "the clean run before checks failed\n{}",
                        world.last_output()
                    ),
                }
                ledger.read(&world.state())?;
            }
            summary.chain = world.verify_chain()?;
            summary.verifies += 1;
            let stored = lock(&world.kube_state).stored.clone();
            attribute(&ledger, &stored, &mut summary);
            if options.verbose {
                summary.cycles = cycle + 1;
                summary.wall = started.elapsed();
                eprintln!("checkpoint after cycle {cycle}:\n{summary}");
            }
            if summary.duplicates > 0 || summary.lost > 0 {
                summary.cycles = cycle + 1;
                summary.wall = started.elapsed();
                return Ok(summary);
            }
        }
        if options.verbose {
            let stored = lock(&world.kube_state).stored.len();
            eprintln!(
                "cycle {cycle:>4} {now} src={source_fault:?}{} kube={kube_fault:?} kill={kill_at:?}/{kill_after:?} policy_error={broken_policy} -> {} hwm={hwm} KiB, {stored} change(s) so far",
                if source_down { "(down)" } else { "" },
                match ended {
                    Ended::Killed => "killed".to_string(),
                    Ended::Exited(c) => format!("exit {c}"),
                }
            );
        }
        summary.cycles = cycle + 1;
    }
    summary.wall = started.elapsed();
    Ok(summary)
}
