//! The Kubernetes actuator: JSON merge patches (`application/merge-patch+json`) on the object a
//! target maps to — a CloudNativePG `Cluster`, a `VerticalPodAutoscaler`, a `Deployment` or
//! `StatefulSet`, a `HorizontalPodAutoscaler` or an Istio `VirtualService`.
//!
//! Which object: the target's labels `k8s_kind`, `k8s_namespace`, `k8s_name` (and
//! `k8s_container` for the container to resize, `k8s_route` for the `VirtualService` HTTP
//! route), each with a configurable label name and a default in [`KubernetesConfig`]. What each
//! operation changes, per kind:
//!
//! | kind | `resize` | `set_parameter` | `set_replicas` | `restart` |
//! |---|---|---|---|---|
//! | `Cluster` | `spec.resources` requests = limits | `spec.postgresql.parameters.<name>` | `spec.instances` | left to CloudNativePG's rolling update |
//! | `VerticalPodAutoscaler` | the container's policy `minAllowed` = `maxAllowed` (+ `updateMode` if configured) | `updateMode` | – | – |
//! | `Deployment`, `StatefulSet` | the container's requests = limits | – | `spec.replicas` | – |
//! | `HorizontalPodAutoscaler` | – | `minReplicas`, `maxReplicas` | `minReplicas` (and `maxReplicas` when lower) | – |
//! | `VirtualService` | – | `weight/<subset or host>` = percent | – | – |
//!
//! A merge patch replaces lists whole, and containers, container policies and routes are
//! lists; so every change is read-modify-write: GET the object, change the wanted fields in a
//! copy, send the changed lists whole with the `metadata.resourceVersion` that was read. The
//! API server refuses the patch with 409 Conflict when the object changed meanwhile; the
//! actuator then reads it again and decides again: if it now has the wanted values, they are
//! already applied; if another writer changed a field the plan changes, it gives up with
//! [`ActError::Conflict`] rather than overwrite them; otherwise (an unrelated change) it
//! rebuilds the patch on the new object and retries, a bounded number of times.
//!
//! Verified: the fields in the PATCH answer and in a GET read back afterwards (in dry-run, the
//! server's answer to `?dryRun=All`, which validates and admits without persisting).
//!
//! The client is kube-rs: kubeconfig and in-cluster configuration, tokens (rotated token files
//! included) and TLS are its. Every kind is read and patched as a [`DynamicObject`], the
//! built-in kinds with the [`ApiResource`] of their `k8s-openapi` type and the custom resources
//! with one written here: a merge patch sends lists whole, and a list re-serialised from a typed
//! struct of one Kubernetes version would drop the fields a newer API server has.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use setpoint_core::{Operation, Target};

use crate::http::{self, error_chain};
use crate::render::{cpu_quantity, memory_quantity};
use crate::{ActError, Actuator, BoxFuture, Execution, OpStatus, OperationResult, Result, Site};

/// The actuator's name in traces, errors and results.
pub const NAME: &str = "kubernetes";

/// The content type of a JSON merge patch (RFC 7386): what kube-rs sends for `Patch::Merge`.
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// The kinds of object the actuator patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// CloudNativePG `Cluster` (`postgresql.cnpg.io/v1`).
    Cluster,
    /// `VerticalPodAutoscaler` (`autoscaling.k8s.io/v1`).
    VerticalPodAutoscaler,
    /// `Deployment` (`apps/v1`).
    Deployment,
    /// `StatefulSet` (`apps/v1`).
    StatefulSet,
    /// `HorizontalPodAutoscaler` (`autoscaling/v2`).
    HorizontalPodAutoscaler,
    /// Istio `VirtualService` (`networking.istio.io/v1`).
    VirtualService,
}

impl Kind {
    /// Parses a kind as written in a label (case-insensitive).
    pub fn parse(text: &str) -> Option<Kind> {
        let kinds = [
            Kind::Cluster,
            Kind::VerticalPodAutoscaler,
            Kind::Deployment,
            Kind::StatefulSet,
            Kind::HorizontalPodAutoscaler,
            Kind::VirtualService,
        ];
        kinds
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(text.trim()))
    }

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cluster => "Cluster",
            Kind::VerticalPodAutoscaler => "VerticalPodAutoscaler",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::VirtualService => "VirtualService",
        }
    }

    /// The kind's API group, version and plural: the `k8s-openapi` type's for the built-in
    /// kinds, written here for the custom resources.
    pub fn resource(self) -> ApiResource {
        let custom = |group: &str, version: &str, kind: &str, plural: &str| ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        };
        match self {
            Kind::Cluster => custom("postgresql.cnpg.io", "v1", "Cluster", "clusters"),
            Kind::VerticalPodAutoscaler => custom(
                "autoscaling.k8s.io",
                "v1",
                "VerticalPodAutoscaler",
                "verticalpodautoscalers",
            ),
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::HorizontalPodAutoscaler => ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            Kind::VirtualService => custom(
                "networking.istio.io",
                "v1",
                "VirtualService",
                "virtualservices",
            ),
        }
    }

    fn supports(self, operation: &Operation) -> bool {
        use Kind::*;
        match operation {
            Operation::Resize { .. } => {
                matches!(
                    self,
                    Cluster | VerticalPodAutoscaler | Deployment | StatefulSet
                )
            }
            Operation::SetParameter { name, .. } => match self {
                Cluster => true,
                VerticalPodAutoscaler => name == "updateMode",
                HorizontalPodAutoscaler => matches!(name.as_str(), "minReplicas" | "maxReplicas"),
                VirtualService => name.starts_with("weight/"),
                Deployment | StatefulSet => false,
            },
            Operation::SetReplicas { .. } => {
                matches!(
                    self,
                    Cluster | Deployment | StatefulSet | HorizontalPodAutoscaler
                )
            }
            Operation::Restart { .. } => self == Cluster,
            Operation::Rebalance { .. } => false,
        }
    }
}

/// How the actuator reaches the API server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum KubeAuth {
    /// A kubeconfig file (`path`; none: the files in `$KUBECONFIG`, merged, else
    /// `~/.kube/config`, as kubectl). Credential plugins (`exec`, `auth-provider`) are not run:
    /// an actuator that executes programs named in a file is a larger trust decision than this
    /// crate should make quietly, so a user with only a plugin is refused.
    Kubeconfig {
        /// The file.
        #[serde(default)]
        path: Option<PathBuf>,
        /// The context to use instead of `current-context`.
        #[serde(default)]
        context: Option<String>,
    },
    /// The pod's service account (`KUBERNETES_SERVICE_HOST` / `_PORT` and the token, CA and
    /// namespace files kube-rs reads).
    InCluster,
}

impl Default for KubeAuth {
    fn default() -> Self {
        KubeAuth::Kubeconfig {
            path: None,
            context: None,
        }
    }
}

/// The target labels that name the object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectLabels {
    /// Label with the kind (`Cluster`, `Deployment`, …).
    pub kind: String,
    /// Label with the namespace.
    pub namespace: String,
    /// Label with the object's name.
    pub name: String,
    /// Label with the container to resize.
    pub container: String,
    /// Label with the `VirtualService` HTTP route's name.
    pub route: String,
}

impl Default for ObjectLabels {
    fn default() -> Self {
        Self {
            kind: "k8s_kind".into(),
            namespace: "k8s_namespace".into(),
            name: "k8s_name".into(),
            container: "k8s_container".into(),
            route: "k8s_route".into(),
        }
    }
}

/// Configuration of the Kubernetes actuator (one per loop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// How to reach the API server.
    #[serde(default)]
    pub auth: KubeAuth,
    /// The labels that name a target's object.
    #[serde(default)]
    pub labels: ObjectLabels,
    /// The kind when a target has no kind label.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// The namespace when a target has no namespace label (else the kubeconfig context's or
    /// service account's namespace, else `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// When set, a resize of a `VerticalPodAutoscaler` also sets `spec.updatePolicy.updateMode`
    /// (e.g. `Initial`: pods take the size when next created, not by eviction).
    #[serde(default)]
    pub vpa_update_mode: Option<String>,
    /// Send every patch with `?dryRun=All` (the server validates, nothing is stored), whatever
    /// the execution asks: for trying the actuator on a live cluster.
    #[serde(default)]
    pub always_dry_run: bool,
    /// Re-reads after a 409 Conflict before giving up.
    #[serde(default = "default_retries")]
    pub conflict_retries: u32,
    /// Timeout of one request.
    #[serde(default = "default_timeout", with = "http::duration")]
    pub timeout: Duration,
}

impl crate::ActuatorSpec for KubernetesConfig {
    const NAME: &'static str = NAME;

    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match &mut self.auth {
            KubeAuth::Kubeconfig {
                path: Some(path), ..
            } => vec![path],
            _ => Vec::new(),
        }
    }

    fn build(&self) -> Result<std::sync::Arc<dyn Actuator>> {
        Ok(std::sync::Arc::new(Kubernetes::new(self.clone())?))
    }
}

fn default_retries() -> u32 {
    3
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            auth: KubeAuth::default(),
            labels: ObjectLabels::default(),
            kind: None,
            namespace: None,
            vpa_update_mode: None,
            always_dry_run: false,
            conflict_retries: default_retries(),
            timeout: default_timeout(),
        }
    }
}

/// The object a target maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The container to resize (`Deployment`, `StatefulSet`, `VerticalPodAutoscaler`).
    pub container: Option<String>,
    /// The HTTP route of a `VirtualService` (its `name`).
    pub route: Option<String>,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.name(), self.namespace, self.name)
    }
}

/// A namespace or object name as Kubernetes allows it (a DNS subdomain); anything else could
/// reach another path of the API.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.contains("..")
}

/// The Kubernetes actuator.
pub struct Kubernetes {
    config: KubernetesConfig,
    kube: kube::Config,
    /// Made on first use: kube's client spawns its request buffer on the Tokio runtime, and the
    /// actuator may be built before one runs.
    client: tokio::sync::OnceCell<kube::Client>,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("server", &self.kube.cluster_url)
            .field("namespace", &self.kube.default_namespace)
            .finish_non_exhaustive()
    }
}

impl Kubernetes {
    /// Reads the kubeconfig or the service account as `config.auth` says, and checks that a
    /// client can be made of it (TLS settings, credential files), before any request.
    pub fn new(config: KubernetesConfig) -> Result<Self> {
        let kube = client_config(&config).map_err(|message| ActError::Config {
            actuator: NAME.into(),
            message,
        })?;
        Ok(Self::with_config(config, kube))
    }

    /// With a kube-rs configuration made elsewhere (e.g. `kube::Config::new(url)`); its timeouts
    /// and retries are set from `config` as [`Kubernetes::new`] sets them.
    pub fn with_config(config: KubernetesConfig, kube: kube::Config) -> Self {
        Self {
            kube: tuned(kube, &config),
            config,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// The object a target maps to, from its labels and the configured defaults.
    pub fn object(&self, target: &Target) -> Result<ObjectRef, String> {
        self.object_of(&target.labels)
    }

    /// The object a set of labels names (a target's, or a fast-loop service's), with the
    /// configured defaults.
    pub fn object_of(&self, labels_of: &BTreeMap<String, String>) -> Result<ObjectRef, String> {
        let labels = &self.config.labels;
        let label = |name: &str| labels_of.get(name).cloned();
        let kind = match label(&labels.kind) {
            Some(text) => Kind::parse(&text).ok_or_else(|| {
                format!(
                    "label {}={text:?} is not a kind this actuator patches",
                    labels.kind
                )
            })?,
            None => self
                .config
                .kind
                .ok_or_else(|| format!("no {} label and no kind configured", labels.kind))?,
        };
        let namespace = label(&labels.namespace)
            .or_else(|| self.config.namespace.clone())
            // The kubeconfig context's or the service account's, else `default`.
            .unwrap_or_else(|| self.kube.default_namespace.clone());
        let name = label(&labels.name)
            .ok_or_else(|| format!("no {} label naming the {}", labels.name, kind.name()))?;
        for (what, value) in [("namespace", &namespace), ("name", &name)] {
            if !valid_name(value) {
                return Err(format!("{what} {value:?} is not a valid Kubernetes name"));
            }
        }
        Ok(ObjectRef {
            kind,
            namespace,
            name,
            container: label(&labels.container),
            route: label(&labels.route),
        })
    }
}

/// The kube-rs configuration `config.auth` names, with its timeouts and retries; a message
/// naming the setting when it cannot be used.
fn client_config(config: &KubernetesConfig) -> Result<kube::Config, String> {
    let loaded = match &config.auth {
        KubeAuth::InCluster => {
            kube::Config::incluster().map_err(|e| format!("in-cluster: {}", error_chain(&e)))?
        }
        KubeAuth::Kubeconfig { path, context } => {
            let mut file = match path {
                Some(path) => Kubeconfig::read_from(path),
                None => Kubeconfig::read(),
            }
            .map_err(|e| format!("kubeconfig: {}", error_chain(&e)))?;
            if let Some(context) = context {
                file.current_context = Some(context.clone());
            }
            without_credential_plugins(&mut file)?;
            kube::Config::try_from(file).map_err(|e| format!("kubeconfig: {}", error_chain(&e)))?
        }
    };
    let kube = tuned(loaded, config);
    kube::client::ClientBuilder::try_from(kube.clone())
        .map_err(|e| format!("kubeconfig: {}", error_chain(&e)))?;
    Ok(kube)
}

/// `kube` with the timeouts of `config` and without kube-rs' own retries.
fn tuned(mut kube: kube::Config, config: &KubernetesConfig) -> kube::Config {
    kube.connect_timeout = Some(config.timeout);
    kube.read_timeout = Some(config.timeout);
    kube.write_timeout = Some(config.timeout);
    // The enforcer retries a failed execution with its own backoff and journal; kube's
    // retries of 429/503/504 underneath would multiply them.
    kube.default_retry = false;
    kube
}

/// Refuses a current-context user whose only credential is a plugin (`exec`, `auth-provider`),
/// and drops the plugin of one that has another credential, so that kube-rs never runs it.
fn without_credential_plugins(file: &mut Kubeconfig) -> Result<(), String> {
    let Some(context) = file.current_context.clone() else {
        return Ok(()); // kube-rs reports the missing context.
    };
    let user = file
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone());
    let Some(user) = user else { return Ok(()) };
    let Some(info) = file
        .auth_infos
        .iter_mut()
        .find(|u| u.name == user)
        .and_then(|u| u.auth_info.as_mut())
    else {
        return Ok(());
    };
    if info.exec.is_none() && info.auth_provider.is_none() {
        return Ok(());
    }
    let other = info.token.is_some()
        || info.token_file.is_some()
        || info.username.is_some()
        || info.client_certificate.is_some()
        || info.client_certificate_data.is_some();
    if !other {
        return Err(format!(
            "kubeconfig user {user:?} uses a credential plugin (exec / auth-provider), which is \
             not supported: give it a token, a token file or a client certificate"
        ));
    }
    info.exec = None;
    info.auth_provider = None;
    Ok(())
}

// ---- JSON pointer helpers -------------------------------------------------------------------

pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Sets `value` at `pointer`, creating objects on the way; an array index must exist.
pub(crate) fn set(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    let segments: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    let mut node = doc;
    for (i, segment) in segments.iter().enumerate() {
        if node.is_null() {
            *node = json!({});
        }
        let last = i + 1 == segments.len();
        node = match node {
            Value::Object(map) => {
                if last {
                    map.insert(segment.clone(), value);
                    return Ok(());
                }
                map.entry(segment.clone()).or_insert(Value::Null)
            }
            Value::Array(items) => {
                let index: usize = segment
                    .parse()
                    .map_err(|_| format!("{pointer}: {segment:?} is not an index"))?;
                let item = items
                    .get_mut(index)
                    .ok_or_else(|| format!("{pointer}: no element {index}"))?;
                if last {
                    *item = value;
                    return Ok(());
                }
                item
            }
            other => return Err(format!("{pointer}: {segment:?} is inside a {other}")),
        };
    }
    *node = value;
    Ok(())
}

/// The part of `doc` a merge patch must carry to change `pointer`: the pointer itself, or the
/// first list on its way (a merge patch replaces lists whole).
fn patch_root(doc: &Value, pointer: &str) -> String {
    let mut root = String::new();
    let mut node = doc;
    for segment in pointer.split('/').skip(1) {
        if node.is_array() {
            return root;
        }
        root.push('/');
        root.push_str(segment);
        node = doc.pointer(&root).unwrap_or(&Value::Null);
    }
    root
}

// ---- quantities ------------------------------------------------------------------------------

/// A Kubernetes quantity as an exact fraction (numerator, power of ten of the denominator).
fn quantity(value: &Value) -> Option<(i128, u32)> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (multiplier, milli): (i128, bool) = match suffix {
        "" => (1, false),
        "m" => (1, true),
        "k" => (1_000, false),
        "M" => (1_000_000, false),
        "G" => (1_000_000_000, false),
        "T" => (1_000_000_000_000, false),
        "P" => (1_000_000_000_000_000, false),
        "E" => (1_000_000_000_000_000_000, false),
        "Ki" => (1 << 10, false),
        "Mi" => (1 << 20, false),
        "Gi" => (1 << 30, false),
        "Ti" => (1 << 40, false),
        "Pi" => (1 << 50, false),
        "Ei" => (1 << 60, false),
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = u32::try_from(fraction.len()).ok()? + if milli { 3 } else { 0 };
    Some((digits.checked_mul(multiplier)?, scale))
}

/// Whether a live value already is the wanted one (quantities compare by amount: `4000m` is
/// `4`, `16Gi` is `17179869184`); a wanted `null` is a field that must be absent (a merge patch
/// deletes a field by sending `null`).
pub(crate) fn same(live: Option<&Value>, wanted: &Value, as_quantity: bool) -> bool {
    let Some(live) = live else {
        return wanted.is_null();
    };
    if live == wanted {
        return true;
    }
    if as_quantity && let (Some((a, sa)), Some((b, sb))) = (quantity(live), quantity(wanted)) {
        let scale = |n: i128, s: u32, to: u32| n.checked_mul(10i128.checked_pow(to - s)?);
        let top = sa.max(sb);
        return scale(a, sa, top).is_some() && scale(a, sa, top) == scale(b, sb, top);
    }
    // Numbers and their text (`"3"` and `3`) are the same to the API's users.
    match (live, wanted) {
        (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
            s.trim() == n.to_string()
        }
        _ => false,
    }
}

pub(crate) fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(unset)".into(), Value::to_string)
}

// ---- what a plan changes ---------------------------------------------------------------------

/// One field the plan changes.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    /// Index of the operation it belongs to.
    pub(crate) op: usize,
    /// A name for the field that does not depend on list positions, e.g.
    /// `containers[postgres].resources.limits.cpu`; it matches fields across re-reads.
    pub(crate) field: String,
    /// Where it is in this read of the object.
    pub(crate) pointer: String,
    /// The wanted value (`null`: the field must be absent).
    pub(crate) want: Value,
    /// Compare as a Kubernetes quantity.
    pub(crate) quantity: bool,
}

/// The planned object and its changes, computed on one read of the live object.
pub(crate) struct Planned {
    pub(crate) object: Value,
    pub(crate) changes: Vec<Change>,
}

/// What a read-modify-write came to: the plan's changes, the operations (by index) whose fields
/// were sent (none: everything was already in place), and whether it was a dry run.
pub(crate) struct Written {
    pub(crate) changes: Vec<Change>,
    pub(crate) changed: Vec<usize>,
    pub(crate) dry_run: bool,
}

impl Planned {
    /// `live` with `changes` made: what a plan that is not one of [`plan`]'s sends.
    pub(crate) fn on(live: &Value, changes: Vec<Change>) -> Result<Planned, String> {
        let mut object = live.clone();
        for change in &changes {
            set(&mut object, &change.pointer, change.want.clone())?;
        }
        Ok(Planned { object, changes })
    }
}

fn container_index(list: &[Value], key: &str, wanted: Option<&str>) -> Result<usize, String> {
    let names: Vec<&str> = list
        .iter()
        .map(|c| c.get(key).and_then(Value::as_str).unwrap_or_default())
        .collect();
    match wanted {
        Some(name) => names
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| format!("no container {name:?} (has {names:?})")),
        None if names.len() == 1 => Ok(0),
        None => Err(format!(
            "several containers ({names:?}): say which with the container label"
        )),
    }
}

fn size_fields(cpu: u64, memory: u64) -> [(&'static str, Value); 2] {
    [
        ("cpu", json!(cpu_quantity(cpu))),
        ("memory", json!(memory_quantity(memory))),
    ]
}

pub(crate) fn plan(
    object: &ObjectRef,
    live: &Value,
    operations: &[Operation],
    config: &KubernetesConfig,
) -> Result<Planned, String> {
    let mut changes = Vec::new();
    let mut add = |op: usize, field: String, pointer: String, want: Value, quantity: bool| {
        changes.push(Change {
            op,
            field,
            pointer,
            want,
            quantity,
        })
    };
    let mut planned = live.clone();
    for (i, operation) in operations.iter().enumerate() {
        match (object.kind, operation) {
            (
                Kind::Cluster,
                Operation::Resize {
                    cpu_millicores,
                    memory_bytes,
                },
            ) => {
                for bound in ["requests", "limits"] {
                    for (resource, want) in size_fields(*cpu_millicores, *memory_bytes) {
                        add(
                            i,
                            format!("resources.{bound}.{resource}"),
                            format!("/spec/resources/{bound}/{resource}"),
                            want,
                            true,
                        );
                    }
                }
            }
            (Kind::Cluster, Operation::SetParameter { name, value, .. }) => add(
                i,
                format!("postgresql.parameters.{name}"),
                format!("/spec/postgresql/parameters/{}", escape(name)),
                json!(value),
                false,
            ),
            (Kind::Cluster, Operation::SetReplicas { replicas }) => add(
                i,
                "instances".into(),
                "/spec/instances".into(),
                json!(replicas),
                false,
            ),
            (Kind::Cluster, Operation::Restart { .. }) => {
                let rolls = operations.iter().any(|op| {
                    matches!(
                        op,
                        Operation::Resize { .. }
                            | Operation::SetParameter {
                                requires_restart: true,
                                ..
                            }
                    )
                });
                if !rolls {
                    return Err(
                        "a restart on its own is not carried out: CloudNativePG restarts \
                                instances when their resources or a restart-requiring parameter \
                                change"
                            .into(),
                    );
                }
            }
            (
                Kind::Deployment | Kind::StatefulSet,
                Operation::Resize {
                    cpu_millicores,
                    memory_bytes,
                },
            ) => {
                let list = live
                    .pointer("/spec/template/spec/containers")
                    .and_then(Value::as_array)
                    .ok_or("the object has no spec.template.spec.containers")?;
                let index = container_index(list, "name", object.container.as_deref())?;
                let name = list[index]
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                for bound in ["requests", "limits"] {
                    for (resource, want) in size_fields(*cpu_millicores, *memory_bytes) {
                        add(
                            i,
                            format!("containers[{name}].resources.{bound}.{resource}"),
                            format!(
                                "/spec/template/spec/containers/{index}/resources/{bound}/{resource}"
                            ),
                            want,
                            true,
                        );
                    }
                }
            }
            (Kind::Deployment | Kind::StatefulSet, Operation::SetReplicas { replicas }) => add(
                i,
                "replicas".into(),
                "/spec/replicas".into(),
                json!(replicas),
                false,
            ),
            (
                Kind::VerticalPodAutoscaler,
                Operation::Resize {
                    cpu_millicores,
                    memory_bytes,
                },
            ) => {
                let pointer = "/spec/resourcePolicy/containerPolicies";
                let mut list = live
                    .pointer(pointer)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let index =
                    match container_index(&list, "containerName", object.container.as_deref()) {
                        Ok(index) => index,
                        // No policy for the container yet: the plan adds one.
                        Err(_) if object.container.is_some() || list.is_empty() => {
                            let name = object.container.clone().unwrap_or_else(|| "*".into());
                            list.push(json!({"containerName": name}));
                            set(&mut planned, pointer, Value::Array(list.clone()))?;
                            list.len() - 1
                        }
                        Err(e) => return Err(e),
                    };
                let name = list[index]
                    .get("containerName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                for bound in ["minAllowed", "maxAllowed"] {
                    for (resource, want) in size_fields(*cpu_millicores, *memory_bytes) {
                        add(
                            i,
                            format!("containerPolicies[{name}].{bound}.{resource}"),
                            format!("{pointer}/{index}/{bound}/{resource}"),
                            want,
                            true,
                        );
                    }
                }
                if let Some(mode) = &config.vpa_update_mode {
                    add(
                        i,
                        "updateMode".into(),
                        "/spec/updatePolicy/updateMode".into(),
                        json!(mode),
                        false,
                    );
                }
            }
            (Kind::VerticalPodAutoscaler, Operation::SetParameter { value, .. }) => add(
                i,
                "updateMode".into(),
                "/spec/updatePolicy/updateMode".into(),
                json!(value),
                false,
            ),
            (Kind::HorizontalPodAutoscaler, Operation::SetReplicas { replicas }) => {
                add(
                    i,
                    "minReplicas".into(),
                    "/spec/minReplicas".into(),
                    json!(replicas),
                    false,
                );
                let max = live.pointer("/spec/maxReplicas").and_then(Value::as_u64);
                if max.is_none_or(|max| max < u64::from(*replicas)) {
                    add(
                        i,
                        "maxReplicas".into(),
                        "/spec/maxReplicas".into(),
                        json!(replicas),
                        false,
                    );
                }
            }
            (Kind::HorizontalPodAutoscaler, Operation::SetParameter { name, value, .. }) => {
                let n: u32 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name} = {value:?} is not a whole number"))?;
                add(i, name.clone(), format!("/spec/{name}"), json!(n), false);
            }
            (Kind::VirtualService, Operation::SetParameter { name, value, .. }) => {
                let destination = name.strip_prefix("weight/").unwrap_or(name);
                let weight: u32 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|w| *w <= 100)
                    .ok_or_else(|| format!("{name} = {value:?} is not a percentage"))?;
                let (route, index) = route_destination(live, object.route.as_deref(), destination)?;
                add(
                    i,
                    format!(
                        "http[{}].route[{destination}].weight",
                        object.route.as_deref().unwrap_or("")
                    ),
                    format!("/spec/http/{route}/route/{index}/weight"),
                    json!(weight),
                    false,
                );
            }
            (kind, operation) => {
                return Err(format!("{} cannot carry out {operation}", kind.name()));
            }
        }
    }
    for change in &changes {
        set(&mut planned, &change.pointer, change.want.clone())?;
    }
    check_invariants(object, &planned)?;
    Ok(Planned {
        object: planned,
        changes,
    })
}

/// The index of a `VirtualService`'s HTTP route (by name, or the only one) and its
/// destinations.
pub(crate) fn http_route<'a>(
    live: &'a Value,
    route: Option<&str>,
) -> Result<(usize, &'a [Value]), String> {
    let routes = live
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .ok_or("the VirtualService has no spec.http routes")?;
    let route_index = match route {
        Some(name) => routes
            .iter()
            .position(|r| r.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| format!("no HTTP route named {name:?}"))?,
        None if routes.len() == 1 => 0,
        None => return Err("several HTTP routes: say which with the route label".into()),
    };
    let destinations = routes[route_index]
        .get("route")
        .and_then(Value::as_array)
        .ok_or("the HTTP route has no destinations")?;
    Ok((route_index, destinations))
}

/// The HTTP route (by name, or the only one) and the index of a destination in it (by subset,
/// host or `host/subset`).
pub(crate) fn route_destination(
    live: &Value,
    route: Option<&str>,
    destination: &str,
) -> Result<(usize, usize), String> {
    let (route_index, destinations) = http_route(live, route)?;
    let index = destinations
        .iter()
        .position(|d| {
            let host = d.pointer("/destination/host").and_then(Value::as_str);
            let subset = d.pointer("/destination/subset").and_then(Value::as_str);
            subset == Some(destination)
                || (subset.is_none() && host == Some(destination))
                || matches!((host, subset), (Some(h), Some(s)) if format!("{h}/{s}") == destination)
        })
        .ok_or_else(|| format!("no destination {destination:?} in the HTTP route"))?;
    Ok((route_index, index))
}

/// Refuses a planned object that the API server would accept but that is wrong.
fn check_invariants(object: &ObjectRef, planned: &Value) -> Result<(), String> {
    match object.kind {
        Kind::HorizontalPodAutoscaler => {
            let min = planned.pointer("/spec/minReplicas").and_then(Value::as_u64);
            let max = planned.pointer("/spec/maxReplicas").and_then(Value::as_u64);
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                return Err(format!("minReplicas {min} would exceed maxReplicas {max}"));
            }
        }
        Kind::VirtualService => {
            for route in planned
                .pointer("/spec/http")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let weights: Vec<u64> = route
                    .get("route")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.get("weight").and_then(Value::as_u64))
                    .collect();
                let total: u64 = weights.iter().sum();
                if !weights.is_empty() && total != 100 {
                    return Err(format!(
                        "the route weights would add up to {total}, not 100"
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

// ---- the actuator ----------------------------------------------------------------------------

/// Where a request goes, for errors: the target, the object and the operation(s).
pub(crate) struct Ctx<'a> {
    pub(crate) target: &'a str,
    pub(crate) object: String,
    pub(crate) operation: String,
}

impl Ctx<'_> {
    pub(crate) fn failed(&self, message: impl Into<String>) -> ActError {
        ActError::Failed {
            site: self.site(),
            message: message.into(),
        }
    }

    /// An error retrying would not cure (see [`ActError::Unusable`]).
    pub(crate) fn unusable(&self, message: impl Into<String>) -> ActError {
        ActError::Unusable {
            site: self.site(),
            message: message.into(),
        }
    }

    pub(crate) fn site(&self) -> Box<Site> {
        Site::new(
            NAME,
            self.target,
            self.object.clone(),
            self.operation.clone(),
        )
    }
}

/// What a request to the API server came to, when it did not succeed.
enum Failure {
    /// 409 Conflict: the object changed since it was read.
    Conflict(String),
    /// Anything else, as the actuator reports it.
    Error(ActError),
}

impl Ctx<'_> {
    /// Sorts a kube-rs error by what retrying could do about it: an API server's answer by its
    /// status (as [`ActError::from_status`]); a transport failure is transient; an answer that
    /// is not an object, or a request that cannot be built, is not.
    fn failure(&self, what: &str, error: kube::Error) -> Failure {
        let message = |e: &kube::Error| format!("{what}: {}", error_chain(e));
        match error {
            kube::Error::Api(status) if status.code == 409 => Failure::Conflict(status.message),
            kube::Error::Api(status) => {
                let message = format!("{what}: HTTP {}: {}", status.code, status.message);
                Failure::Error(match reqwest::StatusCode::from_u16(status.code) {
                    Ok(code) => ActError::from_status(self.site(), code, message),
                    // A `Status` without its code: nothing says retrying would not help.
                    Err(_) => self.failed(message),
                })
            }
            error @ (kube::Error::SerdeError(_)
            | kube::Error::FromUtf8(_)
            | kube::Error::BuildRequest(_)
            | kube::Error::HttpError(_)
            | kube::Error::TlsRequired
            | kube::Error::RustlsTls(_)
            | kube::Error::InferConfig(_)
            | kube::Error::InferKubeconfig(_)
            | kube::Error::ProxyProtocolUnsupported { .. }
            | kube::Error::ProxyProtocolDisabled { .. }) => {
                Failure::Error(self.unusable(message(&error)))
            }
            // Transport (hyper, the service stack), credentials that could not be read now
            // (a rotating token file) and anything kube-rs adds later.
            error => Failure::Error(self.failed(message(&error))),
        }
    }
}

impl Failure {
    /// The error, a conflict included.
    fn into_error(self, ctx: &Ctx<'_>, what: &str) -> ActError {
        match self {
            Failure::Conflict(message) => ActError::Refused {
                site: ctx.site(),
                status: 409,
                message: format!("{what}: HTTP 409: {message}"),
            },
            Failure::Error(error) => error,
        }
    }
}

/// A kube-rs object as JSON, for the field pointers of a plan.
fn to_json(ctx: &Ctx<'_>, what: &str, object: &DynamicObject) -> Result<Value> {
    serde_json::to_value(object).map_err(|e| ctx.unusable(format!("{what}: {e}")))
}

impl Kubernetes {
    /// The configuration it was built with.
    pub(crate) fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    async fn api(&self, ctx: &Ctx<'_>, object: &ObjectRef) -> Result<Api<DynamicObject>> {
        self.api_for(ctx, &object.namespace, &object.kind.resource())
            .await
    }

    /// The API of one kind of object in a namespace.
    pub(crate) async fn api_for(
        &self,
        ctx: &Ctx<'_>,
        namespace: &str,
        resource: &ApiResource,
    ) -> Result<Api<DynamicObject>> {
        let client = self
            .client
            .get_or_try_init(|| async { kube::Client::try_from(self.kube.clone()) })
            .await
            .map_err(|e| ctx.unusable(format!("the Kubernetes client: {}", error_chain(&e))))?;
        Ok(Api::namespaced_with(client.clone(), namespace, resource))
    }

    /// Bounds a whole request by the configured timeout (kube-rs' own bound each read and write).
    async fn bounded<T>(
        &self,
        ctx: &Ctx<'_>,
        what: &str,
        request: impl Future<Output = kube::Result<T>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.config.timeout, request).await {
            Ok(answer) => answer.map_err(|e| ctx.failure(what, e)),
            Err(_) => Err(Failure::Error(ctx.failed(format!(
                "{what}: no answer within {}",
                humantime::format_duration(self.config.timeout)
            )))),
        }
    }

    /// Reads an object, or one of its subresources (`scale`).
    pub(crate) async fn get(
        &self,
        ctx: &Ctx<'_>,
        api: &Api<DynamicObject>,
        name: &str,
        subresource: Option<&str>,
    ) -> Result<Value> {
        let what = match subresource {
            Some(sub) => format!("GET {sub}"),
            None => "GET".to_string(),
        };
        let object = match subresource {
            Some(sub) => {
                self.bounded(ctx, &what, api.get_subresource(sub, name))
                    .await
            }
            None => self.bounded(ctx, &what, api.get(name)).await,
        }
        .map_err(|f| f.into_error(ctx, &what))?;
        to_json(ctx, &what, &object)
    }

    /// Every object of a collection, as JSON; `None` when the API server does not serve the
    /// collection (404: a custom resource whose definition is not installed).
    pub(crate) async fn list(
        &self,
        ctx: &Ctx<'_>,
        api: &Api<DynamicObject>,
    ) -> Result<Option<Vec<Value>>> {
        let what = "LIST";
        match self
            .bounded(ctx, what, api.list(&kube::api::ListParams::default()))
            .await
        {
            Ok(list) => list
                .items
                .iter()
                .map(|item| to_json(ctx, what, item))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Err(Failure::Error(ActError::Refused { status: 404, .. })) => Ok(None),
            Err(failure) => Err(failure.into_error(ctx, what)),
        }
    }

    fn verify(ctx: &Ctx<'_>, changes: &[Change], object: &Value, source: &str) -> Result<()> {
        for change in changes {
            let found = object.pointer(&change.pointer);
            if !same(found, &change.want, change.quantity) {
                return Err(ActError::NotVerified {
                    site: Site::new(
                        NAME,
                        ctx.target,
                        format!("{} ({source})", ctx.object),
                        format!("{} = {}", change.field, change.want),
                    ),
                    expected: change.want.to_string(),
                    found: show(found),
                });
            }
        }
        Ok(())
    }

    async fn run(&self, execution: &Execution<'_>) -> Result<Vec<OperationResult>> {
        let target = execution.target;
        let operations = execution.operations;
        let operation = operations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        let object = self.object(target).map_err(|why| ActError::Unusable {
            site: Site::new(NAME, &target.id, "(no object)", operation.clone()),
            message: why,
        })?;
        if let Some(op) = operations.iter().find(|op| !object.kind.supports(op)) {
            return Err(ActError::Unsupported {
                site: Site::new(NAME, &target.id, object.to_string(), op.to_string()),
                why: format!("a {} has no field for it", object.kind.name()),
            });
        }
        let ctx = Ctx {
            target: &target.id,
            object: object.to_string(),
            operation,
        };
        let api = self.api(&ctx, &object).await?;
        let written = self
            .write(
                &ctx,
                &api,
                &object.name,
                None,
                execution.dry_run,
                &|live: &Value| {
                    plan(&object, live, operations, &self.config).map_err(|e| ctx.unusable(e))
                },
            )
            .await?;
        Ok(self.results(execution, &ctx, &written))
    }

    /// Read-modify-write of one object (or its `subresource`): GET it, let `replan` decide the
    /// changes on what was read, PATCH the fields that differ with the `resourceVersion` that
    /// was read, verify the answer and (unless in dry-run) a read back. On 409 Conflict, reads
    /// again and decides again, a bounded number of times; a field the plan changes that
    /// another writer changed meanwhile is [`ActError::Conflict`], never overwritten.
    pub(crate) async fn write(
        &self,
        ctx: &Ctx<'_>,
        api: &Api<DynamicObject>,
        name: &str,
        subresource: Option<&str>,
        dry_run: bool,
        replan: &(dyn Fn(&Value) -> Result<Planned> + Sync),
    ) -> Result<Written> {
        let dry_run = dry_run || self.config.always_dry_run;
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };

        let first = self.get(ctx, api, name, subresource).await?;
        let first_plan = replan(&first)?;
        // The values the plan was made against, by field: what "someone else changed it" means.
        let seen: BTreeMap<String, Option<Value>> = first_plan
            .changes
            .iter()
            .map(|c| (c.field.clone(), first.pointer(&c.pointer).cloned()))
            .collect();
        let (mut live, mut planned) = (first, first_plan);
        let mut conflicts = 0;
        loop {
            let pending: Vec<&Change> = planned
                .changes
                .iter()
                .filter(|c| !same(live.pointer(&c.pointer), &c.want, c.quantity))
                .collect();
            if pending.is_empty() {
                return Ok(Written {
                    changes: planned.changes,
                    changed: Vec::new(),
                    dry_run,
                });
            }
            let mut patch = json!({});
            let mut roots: Vec<String> = pending
                .iter()
                .map(|c| patch_root(&planned.object, &c.pointer))
                .collect();
            roots.sort();
            roots.dedup();
            for root in &roots {
                let value = planned.object.pointer(root).cloned().unwrap_or(Value::Null);
                set(&mut patch, root, value).map_err(|e| ctx.unusable(e))?;
            }
            let version = live
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .ok_or_else(|| ctx.unusable("the object has no metadata.resourceVersion"))?;
            set(&mut patch, "/metadata/resourceVersion", json!(version))
                .map_err(|e| ctx.unusable(e))?;

            let what = match subresource {
                Some(sub) => format!("PATCH {sub} {patch}"),
                None => format!("PATCH {patch}"),
            };
            let request = async {
                match subresource {
                    Some(sub) => {
                        api.patch_subresource(sub, name, &params, &Patch::Merge(&patch))
                            .await
                    }
                    None => api.patch(name, &params, &Patch::Merge(&patch)).await,
                }
            };
            let answer = match self.bounded(ctx, &what, request).await {
                Ok(answer) => to_json(ctx, "PATCH", &answer)?,
                Err(Failure::Conflict(message)) => {
                    conflicts += 1;
                    if conflicts > self.config.conflict_retries {
                        return Err(ctx.failed(format!(
                            "still conflicting after {} re-reads: {message}",
                            self.config.conflict_retries
                        )));
                    }
                    // Re-read and decide again on what is there now.
                    live = self.get(ctx, api, name, subresource).await?;
                    planned = replan(&live)?;
                    for change in &planned.changes {
                        let now = live.pointer(&change.pointer);
                        let was = seen.get(&change.field).cloned().flatten();
                        let untouched = match (&was, now) {
                            (Some(was), Some(now)) => same(Some(now), was, change.quantity),
                            (None, None) => true,
                            _ => false,
                        };
                        if !untouched && !same(now, &change.want, change.quantity) {
                            return Err(ActError::Conflict {
                                site: ctx.site(),
                                field: change.field.clone(),
                                was: show(was.as_ref()),
                                now: show(now),
                                wanted: change.want.to_string(),
                            });
                        }
                    }
                    continue;
                }
                Err(failure) => return Err(failure.into_error(ctx, &what)),
            };
            Self::verify(ctx, &planned.changes, &answer, "PATCH answer")?;
            if !dry_run {
                let stored = self.get(ctx, api, name, subresource).await?;
                Self::verify(ctx, &planned.changes, &stored, "read back")?;
            }
            let changed: Vec<usize> = pending.iter().map(|c| c.op).collect();
            return Ok(Written {
                changes: planned.changes,
                changed,
                dry_run,
            });
        }
    }

    fn results(
        &self,
        execution: &Execution<'_>,
        ctx: &Ctx<'_>,
        written: &Written,
    ) -> Vec<OperationResult> {
        let Written {
            changes,
            changed,
            dry_run,
        } = written;
        let dry_run = *dry_run;
        execution
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let fields: Vec<String> = changes
                    .iter()
                    .filter(|c| c.op == i)
                    .map(|c| format!("{} = {}", c.field, c.want))
                    .collect();
                let (status, detail) = if fields.is_empty() {
                    // CloudNativePG's own rolling update carries the restart out.
                    (
                        OpStatus::Scheduled { at: None },
                        "CloudNativePG restarts the instances itself, replicas first".to_string(),
                    )
                } else if !changed.contains(&i) {
                    (OpStatus::AlreadyApplied, fields.join(", "))
                } else if dry_run {
                    (OpStatus::DryRun, fields.join(", "))
                } else {
                    (OpStatus::Applied, fields.join(", "))
                };
                OperationResult {
                    operation: op.clone(),
                    actuator: NAME.into(),
                    object: ctx.object.clone(),
                    status,
                    detail,
                }
            })
            .collect()
    }
}

impl Actuator for Kubernetes {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, target: &Target, operation: &Operation) -> bool {
        self.object(target)
            .is_ok_and(|object| object.kind.supports(operation))
    }

    fn execute<'a>(
        &'a self,
        execution: &'a Execution<'a>,
    ) -> BoxFuture<'a, Result<Vec<OperationResult>>> {
        Box::pin(self.run(execution))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn quantities_compare_by_amount() {
        assert!(same(Some(&json!("4000m")), &json!("4"), true));
        assert!(same(Some(&json!("17179869184")), &json!("16Gi"), true));
        assert!(same(Some(&json!("0.5")), &json!("500m"), true));
        assert!(same(Some(&json!(2)), &json!("2"), true));
        assert!(!same(Some(&json!("4001m")), &json!("4"), true));
        assert!(!same(Some(&json!("8MB")), &json!("8Mi"), true));
        assert!(!same(None, &json!("4"), true));
        assert!(same(Some(&json!("3")), &json!(3), false));
    }

    #[test]
    fn a_patch_carries_lists_whole_and_maps_by_field() {
        let doc =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}, "replicas": 1}});
        assert_eq!(
            patch_root(
                &doc,
                "/spec/template/spec/containers/0/resources/limits/cpu"
            ),
            "/spec/template/spec/containers"
        );
        assert_eq!(patch_root(&doc, "/spec/replicas"), "/spec/replicas");
        assert_eq!(
            patch_root(&doc, "/spec/resources/limits/cpu"),
            "/spec/resources/limits/cpu"
        );
        let mut patch = json!({});
        set(&mut patch, "/spec/postgresql/parameters/a~1b", json!("1")).unwrap();
        assert_eq!(
            patch,
            json!({"spec": {"postgresql": {"parameters": {"a/b": "1"}}}})
        );
    }

    fn kubeconfig(dir: &std::path::Path, users: &str) -> KubernetesConfig {
        let path = dir.join("config");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: dev\n\
                 contexts:\n\
                 - {{name: dev, context: {{cluster: local, user: me, namespace: databases}}}}\n\
                 - {{name: other, context: {{cluster: local, user: plugin}}}}\n\
                 clusters: [{{name: local, cluster: {{server: 'http://127.0.0.1:6443'}}}}]\n\
                 users:\n{users}"
            ),
        )
        .unwrap();
        KubernetesConfig {
            auth: KubeAuth::Kubeconfig {
                path: Some(path),
                context: None,
            },
            ..KubernetesConfig::default()
        }
    }

    fn with_context(mut config: KubernetesConfig, name: &str) -> KubernetesConfig {
        if let KubeAuth::Kubeconfig { context, .. } = &mut config.auth {
            *context = Some(name.into());
        }
        config
    }

    fn config_error(config: KubernetesConfig) -> String {
        match Kubernetes::new(config) {
            Err(ActError::Config { message, .. }) => message,
            other => panic!("not a configuration error: {other:?}"),
        }
    }

    // Outside a Tokio runtime, as the engine builds its actuators.
    #[test]
    fn a_kubeconfig_gives_server_namespace_and_the_chosen_context() {
        let dir = tempfile::tempdir().unwrap();
        let users = "- {name: me, user: {token: abc}}\n\
                     - {name: plugin, user: {exec: {command: aws}}}\n";
        let actuator = Kubernetes::new(kubeconfig(dir.path(), users)).unwrap();
        assert_eq!(
            actuator.kube.cluster_url.to_string(),
            "http://127.0.0.1:6443/"
        );
        assert_eq!(actuator.kube.default_namespace, "databases");
        assert_eq!(actuator.kube.read_timeout, Some(default_timeout()));
        assert!(!actuator.kube.default_retry);
        let error = config_error(with_context(kubeconfig(dir.path(), users), "nope"));
        assert!(error.contains("nope"), "{error}");
    }

    #[test]
    fn credential_plugins_are_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let only_plugin = "- {name: me, user: {token: abc}}\n\
                           - {name: plugin, user: {exec: {command: aws}}}\n";
        let error = config_error(with_context(kubeconfig(dir.path(), only_plugin), "other"));
        assert!(error.contains("credential plugin"), "{error}");
        let beside_a_token = "- {name: me, user: {token: abc}}\n\
                              - {name: plugin, user: {token: t, exec: {command: aws}, \
                                 auth-provider: {name: gcp, config: {cmd-path: gcloud}}}}\n";
        let config = with_context(kubeconfig(dir.path(), beside_a_token), "other");
        let actuator = Kubernetes::new(config).unwrap();
        assert!(actuator.kube.auth_info.exec.is_none());
        assert!(actuator.kube.auth_info.auth_provider.is_none());
        assert!(actuator.kube.auth_info.token.is_some());
    }

    #[test]
    fn names_that_could_leave_the_object_path_are_refused() {
        assert!(valid_name("pg-reporting.db"));
        assert!(!valid_name("../secrets"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("A"));
        assert!(!valid_name(""));
    }
}
