//! The fast loop's actuators: how a [`ControlAction`] is carried out on a service.
//!
//! The fast loop decides, every few seconds per service, a typed action (`replicas`,
//! `traffic_shift`, `throttle`); [`ControlActuator`] carries it out in two steps, so that the
//! loop can journal what will be written before anything is:
//!
//! 1. [`ControlActuator::plan`] reads the current state, detects other autoscalers, resolves a
//!    factor to an absolute replica count and says exactly what would be written
//!    ([`ControlPlan::writes`]) — or refuses, with a typed [`Refusal`];
//! 2. [`ControlActuator::execute`] writes it (or, in dry-run, only validates it) and reads it
//!    back, answering a [`ControlOutcome`]: `applied`, `already_in_place`, `dry_run`, `refused`
//!    or `nothing`.
//!
//! A plan holds absolute values only — a `factor` becomes a count from the replicas read at
//! plan time — so executing it twice, or again after a crash, writes nothing the second time.
//! Executing re-reads the object first: a field that someone else changed since the plan was
//! made (neither the plan's "from" nor its "to") is an [`ActError::Conflict`], never
//! overwritten; the loop plans again on its next tick. Transient failures (transport, 5xx,
//! 429) are retried with backoff ([`setpoint_retry`]); a 409 Conflict is re-read and decided
//! again, as the Kubernetes actuator does; a refusal by the API server (4xx: 403, 422, …) is
//! [`ActError::Refused`], final.
//!
//! # Which object
//!
//! The service's labels name its object, exactly as for the [Kubernetes
//! actuator](crate::kubernetes): `k8s_kind`, `k8s_namespace`, `k8s_name`, `k8s_route`. Its
//! `VirtualService` is the object itself when the kind is `VirtualService`, else the one named
//! by the label `k8s_virtual_service` ([`ControlConfig::virtual_service_label`]), else the one
//! with the workload's name. Its throttle is the Redis hash `setpoint:throttle:<service>`.
//!
//! # Replicas, and never fighting another autoscaler
//!
//! Before a replica change on a `Deployment` or `StatefulSet`, the actuator lists the
//! namespace's `HorizontalPodAutoscaler`s (`autoscaling/v2`), KEDA `ScaledObject`s
//! (`keda.sh/v1alpha1`) and `VerticalPodAutoscaler`s (`autoscaling.k8s.io/v1`) and keeps those
//! whose target is the workload (a collection the API server does not serve — a CRD that is not
//! installed — has none; a list it refuses fails the plan: unchecked is not safe).
//!
//! | found on the workload | a replica change does |
//! |---|---|
//! | nothing | `PATCH …/{deployments,statefulsets}/<name>/scale` (`autoscaling/v1` `Scale`, `spec.replicas`) |
//! | an HPA | raises the HPA's `spec.minReplicas` (pre-scaling); never the workload's replicas |
//! | a KEDA `ScaledObject` (and its HPA `keda-hpa-<name>`) | raises the ScaledObject's `spec.minReplicaCount` (KEDA would overwrite its HPA) |
//! | a VPA in `Auto`, `Recreate` or `InPlaceOrRecreate` (and no HPA) | the scale subresource, and the VPA is reported in the outcome: the weekly loop must know |
//! | a VPA in `Off` or `Initial` | the scale subresource (the VPA is listed, not flagged) |
//! | several HPAs / ScaledObjects | refused ([`Refusal::SeveralAutoscalers`]) |
//!
//! Raising a minimum records the owner's value in the annotation
//! [`ORIGINAL_MIN_ANNOTATION`] (and the raised one in [`RAISED_MIN_ANNOTATION`]) in the same
//! patch, on the autoscaler itself, so that a crash cannot lose it. When the wanted replicas fall
//! back to or below that original, the plan restores it and removes the annotations;
//! [`ControlActuator::restore_hpa_minimum`] does so explicitly. A minimum the owner changed while
//! raised is not overwritten ([`ActError::Conflict`]); setpoint never lowers a minimum it did
//! not raise ([`Refusal::BelowAutoscalerMinimum`]); a wanted count above the autoscaler's
//! maximum raises the minimum to that maximum, with a note. VPA and HPA acting on the same
//! workload is the fight kubernetes/autoscaler#6060 and #6247 describe; the outcome lists the
//! VPA so that the loop that sizes pods decides with the replicas in view.
//!
//! # Traffic and throttling
//!
//! A traffic shift sets the weights of the service's `VirtualService` HTTP route through the
//! Kubernetes actuator's own read-modify-write (weights in percent, summing to 100, every
//! destination of the route named or set to 0). A throttle is a limit in Redis that the service
//! reads through a shipped token-bucket script ([`throttle`]): `rate` sets one, a `fraction`
//! resolves against the observed request rate, and a fraction of 1 or more lifts it (deletes
//! the hash). `docs/fast-loop-actuators.md` says the same for operators, with the RBAC rules.

pub mod throttle;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use setpoint_core::control::{ControlAction, ControlActionKind, ReplicaTarget, ThrottleLimit};
use setpoint_core::{Operation, Target};
use setpoint_retry::RetryPolicy;

use crate::http;
use crate::kubernetes::{
    Change, Ctx, Kind, Kubernetes, KubernetesConfig, ObjectRef, Planned, Written, escape,
    http_route, valid_name,
};
use crate::{ActError, ActuatorSpec, Result, Site};
use throttle::Throttler;
pub use throttle::{
    Admission, FailMode, SCRIPT as THROTTLE_SCRIPT, ThrottleConfig, ThrottleGate, ThrottleState,
};

/// The actuator's name in errors.
pub const NAME: &str = "control";

/// The annotation that keeps an autoscaler's own minimum while setpoint has raised it.
pub const ORIGINAL_MIN_ANNOTATION: &str = "setpoint.io/original-min-replicas";

/// The annotation with the minimum setpoint raised it to (a different value means the owner
/// changed it meanwhile).
pub const RAISED_MIN_ANNOTATION: &str = "setpoint.io/raised-min-replicas";

// ---- configuration ---------------------------------------------------------------------------

/// Configuration of the fast loop's actuators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The Kubernetes API server (replicas and traffic weights); none: those actions are
    /// refused.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// The label naming a service's `VirtualService` when its kind label names a workload.
    #[serde(default = "default_virtual_service_label")]
    pub virtual_service_label: String,
    /// The Redis that holds the throttles; none: throttles are refused.
    #[serde(default)]
    pub throttle: Option<ThrottleConfig>,
    /// Retries of a transient failure within one execution.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The wait before the first retry; it doubles up to `max_backoff`.
    #[serde(default = "default_backoff", with = "http::duration")]
    pub backoff: Duration,
    /// The longest wait between two attempts.
    #[serde(default = "default_max_backoff", with = "http::duration")]
    pub max_backoff: Duration,
}

fn default_virtual_service_label() -> String {
    "k8s_virtual_service".into()
}
fn default_retries() -> u32 {
    2
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(2)
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            kubernetes: None,
            virtual_service_label: default_virtual_service_label(),
            throttle: None,
            retries: default_retries(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

impl ControlConfig {
    /// The files the configuration names (kubeconfig, Redis password), to be made relative to
    /// the config file's directory.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = Vec::new();
        if let Some(kubernetes) = &mut self.kubernetes {
            paths.extend(kubernetes.paths_mut());
        }
        if let Some(ThrottleConfig {
            password_file: Some(path),
            ..
        }) = &mut self.throttle
        {
            paths.push(path);
        }
        paths
    }
}

// ---- what the loop asks ----------------------------------------------------------------------

/// A service of the fast loop: its name (the throttle key) and the labels naming its objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRef {
    /// The service's name.
    pub name: String,
    /// `k8s_kind`, `k8s_namespace`, `k8s_name`, `k8s_route`, `k8s_virtual_service`, …
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl ServiceRef {
    /// A service without labels.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }

    /// The same service with one more label.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }
}

impl From<&Target> for ServiceRef {
    fn from(target: &Target) -> Self {
        Self {
            name: target.id.clone(),
            labels: target.labels.clone(),
        }
    }
}

/// What a plan needs besides the action: the time (injected), the observed request rate (a
/// throttle `fraction` is of it), and who sets a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanContext {
    /// The tick's time.
    pub now: DateTime<Utc>,
    /// Requests per second observed now, when known.
    pub request_rate: Option<f64>,
    /// Written with a throttle, e.g. `setpoint/fast-scaling`.
    pub set_by: String,
}

impl PlanContext {
    /// A context at `now` with no observed rate.
    pub fn new(now: DateTime<Utc>, set_by: impl Into<String>) -> Self {
        Self {
            now,
            request_rate: None,
            set_by: set_by.into(),
        }
    }

    /// The same context with the observed request rate.
    pub fn with_request_rate(self, rate: f64) -> Self {
        Self {
            request_rate: Some(rate),
            ..self
        }
    }
}

// ---- what was found --------------------------------------------------------------------------

/// A Kubernetes object, by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeObject {
    /// `Deployment`, `HorizontalPodAutoscaler`, `ScaledObject`, …
    pub kind: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl KubeObject {
    fn new(kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn of(object: &ObjectRef) -> Self {
        Self::new(object.kind.name(), &object.namespace, &object.name)
    }

    /// Its kind's group, version and plural.
    fn resource(&self) -> Option<ApiResource> {
        if self.kind == SCALED_OBJECT {
            return Some(keda_resource());
        }
        Kind::parse(&self.kind).map(Kind::resource)
    }
}

impl std::fmt::Display for KubeObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

const SCALED_OBJECT: &str = "ScaledObject";

fn keda_resource() -> ApiResource {
    ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: SCALED_OBJECT.into(),
        plural: "scaledobjects".into(),
    }
}

/// The kinds of autoscaler the actuator looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoscalerKind {
    /// `HorizontalPodAutoscaler` (`autoscaling/v2`).
    HorizontalPodAutoscaler,
    /// KEDA `ScaledObject` (`keda.sh/v1alpha1`).
    ScaledObject,
    /// `VerticalPodAutoscaler` (`autoscaling.k8s.io/v1`).
    VerticalPodAutoscaler,
}

impl AutoscalerKind {
    /// The object kind.
    pub fn name(self) -> &'static str {
        match self {
            AutoscalerKind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            AutoscalerKind::ScaledObject => SCALED_OBJECT,
            AutoscalerKind::VerticalPodAutoscaler => "VerticalPodAutoscaler",
        }
    }

    /// Where its minimum replicas are, what it is when absent, and where its maximum is.
    fn minimum(self) -> (&'static str, u32, &'static str, Option<u32>) {
        match self {
            AutoscalerKind::ScaledObject => ("minReplicaCount", 0, "maxReplicaCount", Some(100)),
            _ => ("minReplicas", 1, "maxReplicas", None),
        }
    }
}

/// An autoscaler found on a service's workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autoscaler {
    /// Its kind.
    pub kind: AutoscalerKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// A VPA's `updateMode` (`Auto` when unset, as the VPA reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Whether it changes the workload by itself: an HPA or a ScaledObject always, a VPA in
    /// `Auto`, `Recreate` or `InPlaceOrRecreate`.
    pub acts: bool,
    /// The object that manages it (KEDA's HPA: its ScaledObject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

// ---- the plan --------------------------------------------------------------------------------

/// Why an action is not carried out; found before anything is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// More than one autoscaler scales the workload; which one should yield is not setpoint's
    /// call.
    SeveralAutoscalers {
        /// `Kind namespace/name` of each.
        autoscalers: Vec<String>,
    },
    /// Fewer replicas than the autoscaler's own minimum, which setpoint did not raise.
    BelowAutoscalerMinimum {
        /// The autoscaler's minimum.
        minimum: u32,
        /// The replicas wanted.
        wanted: u32,
    },
    /// The action's numbers cannot be carried out (zero replicas, a factor that is not a
    /// positive number, weights that do not add up to 100, an unknown destination, a rate that
    /// is not positive).
    InvalidAction {
        /// What is wrong.
        why: String,
    },
    /// A throttle given as a fraction of the current rate, with no observed rate.
    NoRequestRate,
    /// The mechanism the action needs is not configured.
    NotConfigured {
        /// Which (`kubernetes`, `throttle`).
        what: String,
    },
    /// The service's object has no such mechanism (e.g. replicas of a `VirtualService`).
    UnsupportedObject {
        /// The object's kind.
        kind: String,
        /// The action's kind.
        action: ControlActionKind,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::SeveralAutoscalers { autoscalers } => {
                write!(f, "several autoscalers scale the workload: {autoscalers:?}")
            }
            Refusal::BelowAutoscalerMinimum { minimum, wanted } => write!(
                f,
                "{wanted} replicas is below the autoscaler's own minimum {minimum}, which setpoint \
                 did not raise"
            ),
            Refusal::InvalidAction { why } => write!(f, "invalid action: {why}"),
            Refusal::NoRequestRate => f.write_str(
                "a throttle fraction needs the observed request rate, and there is none",
            ),
            Refusal::NotConfigured { what } => write!(f, "{what} is not configured"),
            Refusal::UnsupportedObject { kind, action } => {
                write!(f, "a {kind} has no mechanism for {}", action.as_str())
            }
        }
    }
}

/// What executing a plan writes, resolved to absolute values when the plan was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ControlStep {
    /// Nothing to write (the action is `none`).
    Nothing,
    /// Not carried out.
    Refused {
        /// Why.
        reason: Refusal,
    },
    /// The workload's `spec.replicas` through its scale subresource.
    Scale {
        /// The `Deployment` or `StatefulSet`.
        workload: KubeObject,
        /// Replicas read when planning.
        from: u32,
        /// Replicas wanted.
        to: u32,
    },
    /// An HPA's `spec.minReplicas` or a ScaledObject's `spec.minReplicaCount`, with the
    /// annotations that keep the owner's value.
    AutoscalerMinimum {
        /// The `HorizontalPodAutoscaler` or `ScaledObject`.
        autoscaler: KubeObject,
        /// The field, `minReplicas` or `minReplicaCount`.
        field: String,
        /// The minimum read when planning.
        from: u32,
        /// The minimum wanted.
        to: u32,
        /// The owner's minimum (annotated while raised).
        original: u32,
        /// Whether this puts the owner's minimum back (and removes the annotations).
        restore: bool,
        /// The original-minimum annotation as read when planning.
        #[serde(default)]
        annotated: Option<u32>,
    },
    /// The weights of a `VirtualService` HTTP route.
    Weights {
        /// The `VirtualService`.
        virtual_service: KubeObject,
        /// The route's name (none: the only route).
        route: Option<String>,
        /// Weights read when planning, per destination (subset, or host without subset).
        from: BTreeMap<String, u32>,
        /// Weights wanted, for every destination of the route.
        to: BTreeMap<String, u32>,
    },
    /// A throttle set in Redis.
    SetThrottle {
        /// The hash.
        key: String,
        /// The limit read when planning.
        from: Option<ThrottleState>,
        /// The limit wanted.
        to: ThrottleState,
    },
    /// A throttle lifted: its hash deleted.
    LiftThrottle {
        /// The hash.
        key: String,
        /// The limit read when planning.
        from: Option<ThrottleState>,
    },
}

/// One field a plan writes, for people and the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedWrite {
    /// The object or key, e.g. `Deployment shop/checkout (scale)`.
    pub object: String,
    /// The field.
    pub field: String,
    /// Its value when planned (`(unset)` when absent).
    pub from: String,
    /// The value written (`(unset)`: removed).
    pub to: String,
}

/// What an action comes to on a service: the step, resolved to absolute values from what was
/// read, and what was found on the way. Journal it before [`ControlActuator::execute`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlPlan {
    /// The service.
    pub service: String,
    /// The action asked for.
    pub action: ControlAction,
    /// When the plan was made.
    pub planned_at: DateTime<Utc>,
    /// What executing it writes.
    pub step: ControlStep,
    /// The autoscalers found on the service's workload (replica actions).
    #[serde(default)]
    pub autoscalers: Vec<Autoscaler>,
    /// What a person should know (a VPA that also acts, a clamp to an autoscaler's maximum).
    #[serde(default)]
    pub notes: Vec<String>,
}

const UNSET: &str = "(unset)";

fn shown<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| UNSET.to_string(), |v| v.to_string())
}

impl ControlPlan {
    fn new(service: &str, action: &ControlAction, now: DateTime<Utc>) -> Self {
        Self {
            service: service.into(),
            action: action.clone(),
            planned_at: now,
            step: ControlStep::Nothing,
            autoscalers: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn refuse(mut self, reason: Refusal) -> Self {
        self.step = ControlStep::Refused { reason };
        self
    }

    /// Every field executing the plan would write, as read when planning (empty: nothing to
    /// write).
    pub fn writes(&self) -> Vec<PlannedWrite> {
        let write = |object: &str, field: &str, from: String, to: String| PlannedWrite {
            object: object.into(),
            field: field.into(),
            from,
            to,
        };
        let mut writes = Vec::new();
        match &self.step {
            ControlStep::Nothing | ControlStep::Refused { .. } => {}
            ControlStep::Scale { workload, from, to } => {
                if from != to {
                    writes.push(write(
                        &format!("{workload} (scale)"),
                        "spec.replicas",
                        from.to_string(),
                        to.to_string(),
                    ));
                }
            }
            ControlStep::AutoscalerMinimum {
                autoscaler,
                field,
                from,
                to,
                original,
                restore,
                annotated,
            } => {
                let object = autoscaler.to_string();
                if from != to {
                    writes.push(write(
                        &object,
                        &format!("spec.{field}"),
                        from.to_string(),
                        to.to_string(),
                    ));
                }
                let annotation = |name: &str| format!("metadata.annotations[{name}]");
                match (restore, annotated) {
                    (true, Some(was)) => {
                        writes.push(write(
                            &object,
                            &annotation(ORIGINAL_MIN_ANNOTATION),
                            was.to_string(),
                            UNSET.into(),
                        ));
                        writes.push(write(
                            &object,
                            &annotation(RAISED_MIN_ANNOTATION),
                            from.to_string(),
                            UNSET.into(),
                        ));
                    }
                    (true, None) => {}
                    (false, annotated) => {
                        if annotated.is_none() {
                            writes.push(write(
                                &object,
                                &annotation(ORIGINAL_MIN_ANNOTATION),
                                UNSET.into(),
                                original.to_string(),
                            ));
                        }
                        if from != to {
                            writes.push(write(
                                &object,
                                &annotation(RAISED_MIN_ANNOTATION),
                                shown(annotated.map(|_| from)),
                                to.to_string(),
                            ));
                        }
                    }
                }
            }
            ControlStep::Weights {
                virtual_service,
                route,
                from,
                to,
            } => {
                for (destination, weight) in to {
                    let was = from.get(destination);
                    if was != Some(weight) {
                        writes.push(write(
                            &virtual_service.to_string(),
                            &format!(
                                "spec.http[{}].route[{destination}].weight",
                                route.as_deref().unwrap_or("")
                            ),
                            shown(was),
                            weight.to_string(),
                        ));
                    }
                }
            }
            ControlStep::SetThrottle { key, from, to } => {
                if !from.as_ref().is_some_and(|f| f.serves(to)) {
                    let object = format!("redis {key}");
                    let from = from.as_ref();
                    writes.push(write(
                        &object,
                        "rate",
                        shown(from.map(|f| f.rate)),
                        to.rate.to_string(),
                    ));
                    writes.push(write(
                        &object,
                        "burst",
                        shown(from.map(|f| f.burst)),
                        to.burst.to_string(),
                    ));
                    writes.push(write(
                        &object,
                        "expires_at",
                        shown(from.map(|f| f.expires_at.to_rfc3339())),
                        to.expires_at.to_rfc3339(),
                    ));
                    writes.push(write(
                        &object,
                        "set_by",
                        shown(from.map(|f| f.set_by.clone())),
                        to.set_by.clone(),
                    ));
                }
            }
            ControlStep::LiftThrottle { key, from } => {
                if let Some(from) = from {
                    writes.push(write(
                        &format!("redis {key}"),
                        "rate",
                        from.rate.to_string(),
                        UNSET.into(),
                    ));
                }
            }
        }
        writes
    }

    /// Whether executing the plan writes nothing.
    pub fn is_noop(&self) -> bool {
        self.writes().is_empty()
    }
}

// ---- the outcome -----------------------------------------------------------------------------

/// What executing a plan came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlStatus {
    /// Written, and reading back shows it.
    Applied,
    /// The system already had the wanted values; nothing was written.
    AlreadyInPlace,
    /// Validated (by the API server's dry run where it has one), nothing written.
    DryRun,
    /// Not carried out, for this reason; nothing was written.
    Refused {
        /// Why.
        reason: Refusal,
    },
    /// The action was `none`.
    Nothing,
}

/// The outcome of one action on one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlOutcome {
    /// The service.
    pub service: String,
    /// The action.
    pub action: ControlAction,
    /// What happened.
    pub status: ControlStatus,
    /// The object or key acted on (empty when none).
    pub object: String,
    /// The fields and values, for people.
    pub detail: String,
    /// The autoscalers found on the workload; a VPA that acts must reach the weekly loop.
    pub autoscalers: Vec<Autoscaler>,
    /// The plan's notes.
    pub notes: Vec<String>,
    /// Attempts made (transient failures retried).
    pub attempts: u32,
}

impl ControlOutcome {
    fn of(plan: &ControlPlan, status: ControlStatus, object: String, detail: String) -> Self {
        Self {
            service: plan.service.clone(),
            action: plan.action.clone(),
            status,
            object,
            detail,
            autoscalers: plan.autoscalers.clone(),
            notes: plan.notes.clone(),
            attempts: 1,
        }
    }

    /// A `VerticalPodAutoscaler` that resizes the workload's pods by itself, if one was found.
    pub fn acting_vpa(&self) -> Option<&Autoscaler> {
        self.autoscalers
            .iter()
            .find(|a| a.kind == AutoscalerKind::VerticalPodAutoscaler && a.acts)
    }

    /// Whether anything was written.
    pub fn applied(&self) -> bool {
        self.status == ControlStatus::Applied
    }
}

// ---- the actuator ----------------------------------------------------------------------------

/// Carries out the fast loop's actions: replicas (scale subresource or an autoscaler's
/// minimum), traffic weights (Istio) and throttles (Redis).
pub struct ControlActuator {
    config: ControlConfig,
    kubernetes: Option<Kubernetes>,
    throttle: Option<Throttler>,
}

impl std::fmt::Debug for ControlActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlActuator")
            .field("kubernetes", &self.kubernetes)
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

/// The autoscaler that owns a workload's replicas, as found.
enum Owner {
    /// None: the scale subresource.
    Nobody,
    /// One HPA or ScaledObject, as read.
    One(AutoscalerKind, KubeObject, Value),
    /// Several.
    Several(Vec<String>),
}

fn u32_at(object: &Value, pointer: &str) -> Option<u32> {
    object
        .pointer(pointer)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn annotation_pointer(name: &str) -> String {
    format!("/metadata/annotations/{}", escape(name))
}

fn name_of(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A replica target as an absolute count from `current`: a factor above 1 rounds up (never
/// short of capacity), below 1 rounds down but never to zero.
fn resolve(target: ReplicaTarget, current: u32) -> Result<u32, Refusal> {
    let wanted = match target {
        ReplicaTarget::Absolute(n) => n,
        ReplicaTarget::Factor(f) if f.is_finite() && f > 0.0 => {
            // A tolerance so that 3 × 1.1 = 3.3000000000000003 is not 4 for float noise alone.
            let exact = f64::from(current) * f;
            let rounded = if f >= 1.0 {
                (exact - 1e-9).ceil()
            } else {
                (exact + 1e-9).floor().max(1.0)
            };
            if rounded >= f64::from(u32::MAX) {
                u32::MAX
            } else {
                // In range and whole: checked just above.
                rounded as u32
            }
        }
        ReplicaTarget::Factor(f) => {
            return Err(Refusal::InvalidAction {
                why: format!("replica factor {f} is not a positive number"),
            });
        }
    };
    if wanted == 0 {
        return Err(Refusal::InvalidAction {
            why: "zero replicas: the fast loop does not scale a service to zero".into(),
        });
    }
    Ok(wanted)
}

/// A route's weights per destination (subset, or host without subset); a destination without a
/// weight has 100 when alone, else 0 (as Istio reads it).
fn route_weights(live: &Value, route: Option<&str>) -> Result<BTreeMap<String, u32>, String> {
    let (_, destinations) = http_route(live, route)?;
    let alone = destinations.len() == 1;
    destinations
        .iter()
        .map(|d| {
            let host = d.pointer("/destination/host").and_then(Value::as_str);
            let subset = d.pointer("/destination/subset").and_then(Value::as_str);
            let name = subset
                .or(host)
                .ok_or("a destination has neither subset nor host")?;
            let weight = match d.get("weight").and_then(Value::as_u64) {
                Some(w) => u32::try_from(w).unwrap_or(u32::MAX),
                None if alone => 100,
                None => 0,
            };
            Ok((name.to_string(), weight))
        })
        .collect()
}

/// A conflict when a field is neither what the plan read nor what it wants.
fn unchanged(ctx: &Ctx<'_>, field: &str, now: Option<u32>, from: u32, to: u32) -> Result<()> {
    match now {
        Some(now) if now == from || now == to => Ok(()),
        now => Err(ActError::Conflict {
            site: ctx.site(),
            field: field.into(),
            was: from.to_string(),
            now: shown(now),
            wanted: to.to_string(),
        }),
    }
}

impl ControlActuator {
    /// Builds the actuators the configuration names, checking what can be checked before any
    /// request (kubeconfig, Redis URL, password file).
    pub fn new(config: ControlConfig) -> Result<Self> {
        let kubernetes = config.kubernetes.clone().map(Kubernetes::new).transpose()?;
        let throttle = config.throttle.clone().map(Throttler::new).transpose()?;
        Ok(Self {
            config,
            kubernetes,
            throttle,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ControlConfig {
        &self.config
    }

    fn site(&self, service: &str, object: &str, operation: &str) -> Box<Site> {
        Site::new(NAME, service, object, operation)
    }

    /// The object the service's labels name.
    fn object(&self, k8s: &Kubernetes, service: &ServiceRef, action: &str) -> Result<ObjectRef> {
        k8s.object_of(&service.labels)
            .map_err(|message| ActError::Unusable {
                site: self.site(&service.name, "(no object)", action),
                message,
            })
    }

    /// Reads the current state and says what `action` would write on `service`.
    pub async fn plan(
        &self,
        service: &ServiceRef,
        action: &ControlAction,
        context: &PlanContext,
    ) -> Result<ControlPlan> {
        let plan = ControlPlan::new(&service.name, action, context.now);
        match action {
            ControlAction::None => Ok(plan),
            ControlAction::Replicas(target) => {
                self.plan_replicas(service, plan, Wanted::Target(*target))
                    .await
            }
            ControlAction::TrafficShift { weights } => {
                self.plan_weights(service, plan, weights).await
            }
            ControlAction::Throttle(limit) => {
                self.plan_throttle(service, plan, *limit, context).await
            }
        }
    }

    /// The throttle in force on a service, as read from Redis (an expired one included: its
    /// `expires_at` says so); `None` when there is none or no Redis is configured. For the
    /// loop's `current.throttle`.
    pub async fn current_throttle(&self, service: &ServiceRef) -> Result<Option<ThrottleState>> {
        match &self.throttle {
            Some(throttler) => {
                throttler
                    .read(&service.name, &throttler.key(&service.name))
                    .await
            }
            None => Ok(None),
        }
    }

    /// Plans putting the owner's minimum back on the autoscaler of the service's workload and
    /// removing setpoint's annotations. The plan's action is `replicas: <the original>`; it
    /// writes nothing when setpoint has raised nothing (and is `none`, with a note, when the
    /// workload has no autoscaler).
    pub async fn plan_restore(
        &self,
        service: &ServiceRef,
        now: DateTime<Utc>,
    ) -> Result<ControlPlan> {
        // The action becomes "replicas: the original minimum" once that has been read.
        let plan = ControlPlan::new(&service.name, &ControlAction::None, now);
        self.plan_replicas(service, plan, Wanted::Original).await
    }

    /// Puts the owner's minimum back on the autoscaler (HPA `minReplicas` or ScaledObject
    /// `minReplicaCount`) that setpoint raised ahead of a surge: [`ControlActuator::plan_restore`]
    /// then [`ControlActuator::execute`].
    pub async fn restore_hpa_minimum(
        &self,
        service: &ServiceRef,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<ControlOutcome> {
        let plan = self.plan_restore(service, now).await?;
        self.execute(&plan, dry_run).await
    }

    async fn plan_replicas(
        &self,
        service: &ServiceRef,
        mut plan: ControlPlan,
        wanted: Wanted,
    ) -> Result<ControlPlan> {
        let Some(k8s) = &self.kubernetes else {
            return Ok(plan.refuse(Refusal::NotConfigured {
                what: "kubernetes".into(),
            }));
        };
        let object = self.object(k8s, service, "replicas")?;
        let workload = KubeObject::of(&object);
        let ctx = Ctx {
            target: &service.name,
            object: workload.to_string(),
            operation: "replicas".into(),
        };
        let api = k8s
            .api_for(&ctx, &object.namespace, &object.kind.resource())
            .await?;
        let (current, owner) = match object.kind {
            Kind::Deployment | Kind::StatefulSet => {
                let scale = k8s.get(&ctx, &api, &object.name, Some("scale")).await?;
                // `spec.replicas` is left out of a Scale when it is 0.
                let current = u32_at(&scale, "/spec/replicas").unwrap_or(0);
                let (autoscalers, owner) = self.owner(k8s, &ctx, &workload).await?;
                plan.autoscalers = autoscalers;
                (current, owner)
            }
            Kind::HorizontalPodAutoscaler => {
                let hpa = k8s.get(&ctx, &api, &object.name, None).await?;
                let current = u32_at(&hpa, "/status/currentReplicas")
                    .or_else(|| u32_at(&hpa, "/spec/minReplicas"))
                    .unwrap_or(1);
                plan.autoscalers = vec![Autoscaler {
                    kind: AutoscalerKind::HorizontalPodAutoscaler,
                    namespace: object.namespace.clone(),
                    name: object.name.clone(),
                    mode: None,
                    acts: true,
                    managed_by: None,
                }];
                let owner = Owner::One(
                    AutoscalerKind::HorizontalPodAutoscaler,
                    workload.clone(),
                    hpa,
                );
                (current, owner)
            }
            kind => {
                return Ok(plan.refuse(Refusal::UnsupportedObject {
                    kind: kind.name().into(),
                    action: ControlActionKind::Replicas,
                }));
            }
        };
        match owner {
            Owner::Several(autoscalers) => {
                Ok(plan.refuse(Refusal::SeveralAutoscalers { autoscalers }))
            }
            Owner::Nobody => match wanted {
                Wanted::Original => {
                    plan.notes
                        .push("no autoscaler on the workload: nothing to restore".into());
                    Ok(plan)
                }
                Wanted::Target(target) => {
                    let to = match resolve(target, current) {
                        Ok(to) => to,
                        Err(reason) => return Ok(plan.refuse(reason)),
                    };
                    if let Some(vpa) = plan
                        .autoscalers
                        .iter()
                        .find(|a| a.kind == AutoscalerKind::VerticalPodAutoscaler && a.acts)
                    {
                        plan.notes.push(format!(
                            "VerticalPodAutoscaler {} (updateMode {}) also resizes this \
                             workload's pods: replicas and pod size are decided apart \
                             (kubernetes/autoscaler#6060, #6247)",
                            vpa.name,
                            vpa.mode.as_deref().unwrap_or("Auto")
                        ));
                    }
                    plan.step = ControlStep::Scale {
                        workload,
                        from: current,
                        to,
                    };
                    Ok(plan)
                }
            },
            Owner::One(kind, autoscaler, value) => {
                self.plan_minimum(&ctx, plan, kind, autoscaler, &value, current, wanted)
            }
        }
    }

    /// The step on an autoscaler's minimum, by the rules of the module docs.
    #[allow(clippy::too_many_arguments)]
    fn plan_minimum(
        &self,
        ctx: &Ctx<'_>,
        mut plan: ControlPlan,
        kind: AutoscalerKind,
        autoscaler: KubeObject,
        value: &Value,
        current: u32,
        wanted: Wanted,
    ) -> Result<ControlPlan> {
        let (field, default_min, max_field, default_max) = kind.minimum();
        let minimum = u32_at(value, &format!("/spec/{field}")).unwrap_or(default_min);
        let maximum = u32_at(value, &format!("/spec/{max_field}")).or(default_max);
        let annotation = |name: &str| -> Result<Option<u32>> {
            value
                .pointer(&annotation_pointer(name))
                .and_then(Value::as_str)
                .map(|text| {
                    text.trim().parse::<u32>().map_err(|_| {
                        ctx.unusable(format!(
                            "{autoscaler}: annotation {name} = {text:?} is not a whole number"
                        ))
                    })
                })
                .transpose()
        };
        let original = annotation(ORIGINAL_MIN_ANNOTATION)?;
        let raised = annotation(RAISED_MIN_ANNOTATION)?;
        if let (Some(original), Some(raised)) = (original, raised)
            && minimum != raised
            && minimum != original
        {
            // The owner changed the minimum while setpoint had it raised: theirs stands.
            return Err(ActError::Conflict {
                site: ctx.site(),
                field: format!("{autoscaler} spec.{field}"),
                was: raised.to_string(),
                now: minimum.to_string(),
                wanted: "setpoint's raised or the original minimum".into(),
            });
        }
        let make = |to: u32, original_value: u32, restore: bool| ControlStep::AutoscalerMinimum {
            autoscaler: autoscaler.clone(),
            field: field.into(),
            from: minimum,
            to,
            original: original_value,
            restore,
            annotated: original,
        };
        let wanted = match wanted {
            Wanted::Original => {
                let original_value = original.unwrap_or(minimum);
                plan.action = ControlAction::Replicas(ReplicaTarget::Absolute(original_value));
                if original.is_none() {
                    plan.notes.push(format!(
                        "{autoscaler}: setpoint has not raised its minimum; nothing to restore"
                    ));
                }
                plan.step = make(original_value, original_value, true);
                return Ok(plan);
            }
            Wanted::Target(target) => match resolve(target, current) {
                Ok(wanted) => wanted,
                Err(reason) => return Ok(plan.refuse(reason)),
            },
        };
        let wanted = match maximum {
            Some(max) if wanted > max => {
                plan.notes.push(format!(
                    "{wanted} replicas wanted; {autoscaler} is raised to its maximum {max} \
                     ({max_field}), which setpoint does not change"
                ));
                max
            }
            _ => wanted,
        };
        plan.step = match original {
            Some(original) if wanted <= original => make(original, original, true),
            Some(original) => make(wanted, original, false),
            // Not raised, and already at the wanted minimum: nothing to write or annotate.
            None if wanted == minimum => make(minimum, minimum, true),
            None if wanted > minimum => make(wanted, minimum, false),
            None => {
                return Ok(plan.refuse(Refusal::BelowAutoscalerMinimum { minimum, wanted }));
            }
        };
        Ok(plan)
    }

    /// The autoscalers on a workload, and which one (if any) owns its replicas.
    async fn owner(
        &self,
        k8s: &Kubernetes,
        ctx: &Ctx<'_>,
        workload: &KubeObject,
    ) -> Result<(Vec<Autoscaler>, Owner)> {
        let namespace = &workload.namespace;
        let list = |resource: ApiResource| async move {
            let api = k8s.api_for(ctx, namespace, &resource).await?;
            Ok::<_, ActError>(k8s.list(ctx, &api).await?.unwrap_or_default())
        };
        let hpas = list(Kind::HorizontalPodAutoscaler.resource()).await?;
        let scaled_objects = list(keda_resource()).await?;
        let vpas = list(Kind::VerticalPodAutoscaler.resource()).await?;

        let targets = |object: &Value, pointer: &str, default_kind: Option<&str>| {
            let kind = object
                .pointer(&format!("{pointer}/kind"))
                .and_then(Value::as_str)
                .or(default_kind);
            let name = object
                .pointer(&format!("{pointer}/name"))
                .and_then(Value::as_str);
            kind == Some(workload.kind.as_str()) && name == Some(workload.name.as_str())
        };
        let mut found = Vec::new();
        let mut owners = Vec::new();
        // KEDA's own HPA for each ScaledObject: by the name KEDA gives it.
        let mut keda_hpas: BTreeMap<String, String> = BTreeMap::new();
        for so in scaled_objects
            .iter()
            .filter(|so| targets(so, "/spec/scaleTargetRef", Some("Deployment")))
        {
            let name = name_of(so);
            let hpa = so
                .pointer("/spec/advanced/horizontalPodAutoscalerConfig/name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("keda-hpa-{name}"), str::to_string);
            keda_hpas.insert(hpa, name.clone());
            found.push(Autoscaler {
                kind: AutoscalerKind::ScaledObject,
                namespace: namespace.clone(),
                name: name.clone(),
                mode: None,
                acts: true,
                managed_by: None,
            });
            owners.push((
                AutoscalerKind::ScaledObject,
                KubeObject::new(SCALED_OBJECT, namespace, &name),
                so.clone(),
            ));
        }
        for hpa in hpas
            .iter()
            .filter(|hpa| targets(hpa, "/spec/scaleTargetRef", None))
        {
            let name = name_of(hpa);
            let owned_by_keda = hpa
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|r| r.get("kind").and_then(Value::as_str) == Some(SCALED_OBJECT))
                .and_then(|r| r.get("name").and_then(Value::as_str))
                .map(str::to_string);
            let managed_by = keda_hpas.get(&name).cloned().or(owned_by_keda);
            if managed_by.is_none() {
                owners.push((
                    AutoscalerKind::HorizontalPodAutoscaler,
                    KubeObject::new("HorizontalPodAutoscaler", namespace, &name),
                    hpa.clone(),
                ));
            }
            found.push(Autoscaler {
                kind: AutoscalerKind::HorizontalPodAutoscaler,
                namespace: namespace.clone(),
                name,
                mode: None,
                acts: true,
                managed_by: managed_by.map(|so| format!("{SCALED_OBJECT} {so}")),
            });
        }
        for vpa in vpas
            .iter()
            .filter(|vpa| targets(vpa, "/spec/targetRef", None))
        {
            // The VPA reads an unset update mode as `Auto`.
            let mode = vpa
                .pointer("/spec/updatePolicy/updateMode")
                .and_then(Value::as_str)
                .unwrap_or("Auto")
                .to_string();
            found.push(Autoscaler {
                kind: AutoscalerKind::VerticalPodAutoscaler,
                namespace: namespace.clone(),
                name: name_of(vpa),
                acts: matches!(mode.as_str(), "Auto" | "Recreate" | "InPlaceOrRecreate"),
                mode: Some(mode),
                managed_by: None,
            });
        }
        let owner = match owners.len() {
            0 => Owner::Nobody,
            1 => {
                let (kind, object, value) = owners.remove(0);
                Owner::One(kind, object, value)
            }
            _ => Owner::Several(owners.iter().map(|(_, o, _)| o.to_string()).collect()),
        };
        Ok((found, owner))
    }

    /// The service's `VirtualService` and HTTP route.
    fn virtual_service(&self, service: &ServiceRef, object: &ObjectRef) -> Result<ObjectRef> {
        if object.kind == Kind::VirtualService {
            return Ok(object.clone());
        }
        let name = service
            .labels
            .get(&self.config.virtual_service_label)
            .cloned()
            .unwrap_or_else(|| object.name.clone());
        if !valid_name(&name) {
            return Err(ActError::Unusable {
                site: self.site(&service.name, "(no object)", "traffic_shift"),
                message: format!(
                    "label {}={name:?} is not a valid Kubernetes name",
                    self.config.virtual_service_label
                ),
            });
        }
        Ok(ObjectRef {
            kind: Kind::VirtualService,
            namespace: object.namespace.clone(),
            name,
            container: None,
            route: object.route.clone(),
        })
    }

    async fn plan_weights(
        &self,
        service: &ServiceRef,
        plan: ControlPlan,
        weights: &BTreeMap<String, u32>,
    ) -> Result<ControlPlan> {
        let Some(k8s) = &self.kubernetes else {
            return Ok(plan.refuse(Refusal::NotConfigured {
                what: "kubernetes".into(),
            }));
        };
        let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
        if weights.is_empty() || total != 100 {
            return Ok(plan.refuse(Refusal::InvalidAction {
                why: format!("traffic weights {weights:?} add up to {total}, not 100"),
            }));
        }
        let object = self.object(k8s, service, "traffic_shift")?;
        let vs = self.virtual_service(service, &object)?;
        let ctx = Ctx {
            target: &service.name,
            object: vs.to_string(),
            operation: "traffic_shift".into(),
        };
        let api = k8s
            .api_for(&ctx, &vs.namespace, &vs.kind.resource())
            .await?;
        let live = k8s.get(&ctx, &api, &vs.name, None).await?;
        let from = route_weights(&live, vs.route.as_deref()).map_err(|e| ctx.unusable(e))?;
        if let Some(unknown) = weights.keys().find(|d| !from.contains_key(*d)) {
            return Ok(plan.refuse(Refusal::InvalidAction {
                why: format!(
                    "no destination {unknown:?} in the route of {vs} (has {:?})",
                    from.keys().collect::<Vec<_>>()
                ),
            }));
        }
        let to = from
            .keys()
            .map(|d| (d.clone(), weights.get(d).copied().unwrap_or(0)))
            .collect();
        let mut plan = plan;
        plan.step = ControlStep::Weights {
            virtual_service: KubeObject::of(&vs),
            route: vs.route.clone(),
            from,
            to,
        };
        Ok(plan)
    }

    async fn plan_throttle(
        &self,
        service: &ServiceRef,
        plan: ControlPlan,
        limit: ThrottleLimit,
        context: &PlanContext,
    ) -> Result<ControlPlan> {
        let Some(throttler) = &self.throttle else {
            return Ok(plan.refuse(Refusal::NotConfigured {
                what: "throttle".into(),
            }));
        };
        if service.name.is_empty() || service.name.chars().any(char::is_control) {
            return Err(ActError::Unusable {
                site: self.site(&service.name, "(no key)", "throttle"),
                message: format!("service name {:?} cannot name a key", service.name),
            });
        }
        let rate = match limit {
            ThrottleLimit::Rate(rate) => Some(rate),
            ThrottleLimit::Fraction(f) if f.is_finite() && f >= 1.0 => None,
            ThrottleLimit::Fraction(f) if f.is_finite() && f > 0.0 => match context.request_rate {
                Some(observed) if observed.is_finite() && observed > 0.0 => Some(f * observed),
                _ => return Ok(plan.refuse(Refusal::NoRequestRate)),
            },
            ThrottleLimit::Fraction(f) => {
                return Ok(plan.refuse(Refusal::InvalidAction {
                    why: format!("throttle fraction {f} is not a positive number"),
                }));
            }
        };
        let key = throttler.key(&service.name);
        let from = throttler.read(&service.name, &key).await?;
        let mut plan = plan;
        plan.step = match rate {
            None => ControlStep::LiftThrottle { key, from },
            Some(rate) => {
                let to = throttle::limit(throttler.config(), rate, &context.set_by, context.now);
                if !(to.rate.is_finite() && to.rate > 0.0) {
                    return Ok(plan.refuse(Refusal::InvalidAction {
                        why: format!("throttle rate {rate} req/s is not a positive number"),
                    }));
                }
                ControlStep::SetThrottle { key, from, to }
            }
        };
        Ok(plan)
    }

    /// Carries out a plan: writes it (or, with `dry_run`, validates it without writing: the
    /// API server's `dryRun=All` for Kubernetes, a read for Redis) and reads it back.
    /// Transient failures are retried with the configured backoff; pass `dry_run` unless the
    /// loop is in enforce mode.
    pub async fn execute(&self, plan: &ControlPlan, dry_run: bool) -> Result<ControlOutcome> {
        let policy = RetryPolicy::new(self.config.backoff, self.config.max_backoff, 1)
            .with_retries(self.config.retries);
        let what = format!("{} on {}", plan.action.kind().as_str(), plan.service);
        match policy
            .run(
                &what,
                || self.execute_once(plan, dry_run),
                |error: &ActError| error.is_transient(),
            )
            .await
        {
            Ok((mut outcome, attempts)) => {
                outcome.attempts = attempts;
                Ok(outcome)
            }
            Err(setpoint_retry::Error::Failed { error, .. }) => Err(error),
            Err(deadline @ setpoint_retry::Error::DeadlineExceeded { .. }) => {
                Err(ActError::Failed {
                    site: self.site(&plan.service, "", &what),
                    message: deadline.to_string(),
                })
            }
        }
    }

    async fn execute_once(&self, plan: &ControlPlan, dry_run: bool) -> Result<ControlOutcome> {
        let none = |status| ControlOutcome::of(plan, status, String::new(), String::new());
        match &plan.step {
            ControlStep::Nothing => Ok(none(ControlStatus::Nothing)),
            ControlStep::Refused { reason } => Ok(none(ControlStatus::Refused {
                reason: reason.clone(),
            })),
            ControlStep::Scale { workload, from, to } => {
                let (from, to) = (*from, *to);
                self.write_kube(
                    plan,
                    workload,
                    Some("scale"),
                    dry_run,
                    &|ctx: &Ctx<'_>, live: &Value| {
                        // A Scale leaves `spec.replicas` out when it is 0.
                        let now = u32_at(live, "/spec/replicas").or(Some(0));
                        unchanged(ctx, "spec.replicas", now, from, to)?;
                        let change = Change {
                            op: 0,
                            field: "spec.replicas".into(),
                            pointer: "/spec/replicas".into(),
                            want: json!(to),
                            quantity: false,
                        };
                        Planned::on(live, vec![change]).map_err(|e| ctx.unusable(e))
                    },
                )
                .await
            }
            ControlStep::AutoscalerMinimum {
                autoscaler,
                field,
                from,
                to,
                original,
                restore,
                ..
            } => {
                let (from, to, original, restore) = (*from, *to, *original, *restore);
                let default_min = if autoscaler.kind == SCALED_OBJECT {
                    0
                } else {
                    1
                };
                let pointer = format!("/spec/{field}");
                self.write_kube(
                    plan,
                    autoscaler,
                    None,
                    dry_run,
                    &|ctx: &Ctx<'_>, live: &Value| {
                        let now = u32_at(live, &pointer).or(Some(default_min));
                        unchanged(ctx, &format!("spec.{field}"), now, from, to)?;
                        let annotated = live
                            .pointer(&annotation_pointer(ORIGINAL_MIN_ANNOTATION))
                            .and_then(Value::as_str)
                            .map(|t| t.trim().to_string());
                        if !restore
                            && let Some(annotated) = annotated
                            && annotated != original.to_string()
                        {
                            return Err(ActError::Conflict {
                                site: ctx.site(),
                                field: ORIGINAL_MIN_ANNOTATION.into(),
                                was: original.to_string(),
                                now: annotated,
                                wanted: original.to_string(),
                            });
                        }
                        let annotation = |name: &str, want: Value| Change {
                            op: 0,
                            field: format!("metadata.annotations[{name}]"),
                            pointer: annotation_pointer(name),
                            want,
                            quantity: false,
                        };
                        let (kept, raised) = if restore {
                            (Value::Null, Value::Null)
                        } else {
                            (json!(original.to_string()), json!(to.to_string()))
                        };
                        let changes = vec![
                            Change {
                                op: 0,
                                field: format!("spec.{field}"),
                                pointer: pointer.clone(),
                                want: json!(to),
                                quantity: false,
                            },
                            annotation(ORIGINAL_MIN_ANNOTATION, kept),
                            annotation(RAISED_MIN_ANNOTATION, raised),
                        ];
                        Planned::on(live, changes).map_err(|e| ctx.unusable(e))
                    },
                )
                .await
            }
            ControlStep::Weights {
                virtual_service,
                route,
                from,
                to,
            } => {
                let k8s = self.require_kube(plan)?;
                let object = ObjectRef {
                    kind: Kind::VirtualService,
                    namespace: virtual_service.namespace.clone(),
                    name: virtual_service.name.clone(),
                    container: None,
                    route: route.clone(),
                };
                // The Kubernetes actuator's own weight operations, one per destination.
                let operations: Vec<Operation> = to
                    .iter()
                    .map(|(destination, weight)| Operation::SetParameter {
                        name: format!("weight/{destination}"),
                        value: weight.to_string(),
                        requires_restart: false,
                    })
                    .collect();
                self.write_kube(
                    plan,
                    virtual_service,
                    None,
                    dry_run,
                    &|ctx: &Ctx<'_>, live: &Value| {
                        let now =
                            route_weights(live, route.as_deref()).map_err(|e| ctx.unusable(e))?;
                        for (destination, wanted) in to {
                            let was = from.get(destination).copied().unwrap_or(0);
                            unchanged(
                                ctx,
                                &format!("weight of {destination}"),
                                now.get(destination).copied(),
                                was,
                                *wanted,
                            )?;
                        }
                        crate::kubernetes::plan(&object, live, &operations, k8s.config())
                            .map_err(|e| ctx.unusable(e))
                    },
                )
                .await
            }
            ControlStep::SetThrottle { key, from, to } => {
                let throttler = self.require_throttle(plan)?;
                let object = format!("redis {key}");
                let detail = format!(
                    "rate = {} req/s, burst = {}, expires_at = {}",
                    to.rate,
                    to.burst,
                    to.expires_at.to_rfc3339()
                );
                let live = throttler.read(&plan.service, key).await?;
                if live.as_ref().is_some_and(|l| l.serves(to)) {
                    return Ok(ControlOutcome::of(
                        plan,
                        ControlStatus::AlreadyInPlace,
                        object,
                        detail,
                    ));
                }
                if live != *from && live.as_ref() != Some(to) {
                    return Err(ActError::Conflict {
                        site: Site::new(throttle::NAME, &plan.service, &object, "throttle"),
                        field: "limit".into(),
                        was: format!("{from:?}"),
                        now: format!("{live:?}"),
                        wanted: format!("{to:?}"),
                    });
                }
                if dry_run {
                    return Ok(ControlOutcome::of(
                        plan,
                        ControlStatus::DryRun,
                        object,
                        detail,
                    ));
                }
                throttler.write(&plan.service, key, to).await?;
                Ok(ControlOutcome::of(
                    plan,
                    ControlStatus::Applied,
                    object,
                    detail,
                ))
            }
            ControlStep::LiftThrottle { key, .. } => {
                let throttler = self.require_throttle(plan)?;
                let object = format!("redis {key}");
                let detail = "limit deleted".to_string();
                let status = if throttler.read(&plan.service, key).await?.is_none() {
                    ControlStatus::AlreadyInPlace
                } else if dry_run {
                    ControlStatus::DryRun
                } else {
                    throttler.lift(&plan.service, key).await?;
                    ControlStatus::Applied
                };
                Ok(ControlOutcome::of(plan, status, object, detail))
            }
        }
    }

    fn require_kube(&self, plan: &ControlPlan) -> Result<&Kubernetes> {
        self.kubernetes.as_ref().ok_or_else(|| ActError::Config {
            actuator: NAME.into(),
            message: format!(
                "the plan for {} writes to Kubernetes, which is not configured",
                plan.service
            ),
        })
    }

    fn require_throttle(&self, plan: &ControlPlan) -> Result<&Throttler> {
        self.throttle.as_ref().ok_or_else(|| ActError::Config {
            actuator: NAME.into(),
            message: format!(
                "the plan for {} writes a throttle, and no Redis is configured",
                plan.service
            ),
        })
    }

    /// One read-modify-write through the Kubernetes actuator, as an outcome.
    async fn write_kube(
        &self,
        plan: &ControlPlan,
        object: &KubeObject,
        subresource: Option<&str>,
        dry_run: bool,
        replan: &(dyn Fn(&Ctx<'_>, &Value) -> Result<Planned> + Sync),
    ) -> Result<ControlOutcome> {
        let k8s = self.require_kube(plan)?;
        let shown = match subresource {
            Some(sub) => format!("{object} ({sub})"),
            None => object.to_string(),
        };
        let ctx = Ctx {
            target: &plan.service,
            object: shown.clone(),
            operation: plan.action.kind().as_str().into(),
        };
        let resource = object.resource().ok_or_else(|| {
            ctx.unusable(format!(
                "{} is not a kind this actuator writes",
                object.kind
            ))
        })?;
        let api = k8s.api_for(&ctx, &object.namespace, &resource).await?;
        let Written {
            changes,
            changed,
            dry_run,
        } = k8s
            .write(
                &ctx,
                &api,
                &object.name,
                subresource,
                dry_run,
                &|live: &Value| replan(&ctx, live),
            )
            .await?;
        let detail = changes
            .iter()
            .map(|c| format!("{} = {}", c.field, c.want))
            .collect::<Vec<_>>()
            .join(", ");
        let status = if changed.is_empty() {
            ControlStatus::AlreadyInPlace
        } else if dry_run {
            ControlStatus::DryRun
        } else {
            ControlStatus::Applied
        };
        Ok(ControlOutcome::of(plan, status, shown, detail))
    }
}

/// What a replica plan aims at.
#[derive(Debug, Clone, Copy)]
enum Wanted {
    /// The action's target.
    Target(ReplicaTarget),
    /// The autoscaler's original minimum (a restore).
    Original,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn factors_resolve_to_absolute_counts_before_anything_is_written() {
        let f = |factor: f64, current: u32| resolve(ReplicaTarget::Factor(factor), current);
        assert_eq!(f(1.5, 4), Ok(6));
        assert_eq!(f(1.1, 3), Ok(4), "up rounds up");
        assert_eq!(f(1.0, 3), Ok(3));
        assert_eq!(f(0.5, 5), Ok(2), "down rounds down");
        assert_eq!(f(0.1, 3), Ok(1), "never to zero");
        assert!(matches!(f(f64::NAN, 3), Err(Refusal::InvalidAction { .. })));
        assert!(matches!(f(-2.0, 3), Err(Refusal::InvalidAction { .. })));
        assert!(matches!(
            resolve(ReplicaTarget::Absolute(0), 3),
            Err(Refusal::InvalidAction { .. })
        ));
        assert_eq!(resolve(ReplicaTarget::Absolute(7), 3), Ok(7));
        assert_eq!(f(1e12, 3), Ok(u32::MAX));
    }

    #[test]
    fn route_weights_name_destinations_by_subset_or_host() {
        let vs = json!({"spec": {"http": [{"name": "main", "route": [
            {"destination": {"host": "api", "subset": "primary"}, "weight": 80},
            {"destination": {"host": "api", "subset": "secondary"}, "weight": 20},
            {"destination": {"host": "fallback"}},
        ]}]}});
        let weights = route_weights(&vs, Some("main")).unwrap();
        assert_eq!(
            weights,
            BTreeMap::from([
                ("primary".into(), 80),
                ("secondary".into(), 20),
                ("fallback".into(), 0)
            ])
        );
        let alone = json!({"spec": {"http": [{"route": [{"destination": {"host": "api"}}]}]}});
        assert_eq!(
            route_weights(&alone, None).unwrap(),
            BTreeMap::from([("api".into(), 100)])
        );
    }

    #[test]
    fn plans_and_outcomes_have_a_stable_json_shape() {
        let plan = ControlPlan {
            service: "checkout".into(),
            action: ControlAction::Replicas(ReplicaTarget::Factor(1.5)),
            planned_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            step: ControlStep::Scale {
                workload: KubeObject::new("Deployment", "shop", "checkout"),
                from: 4,
                to: 6,
            },
            autoscalers: vec![],
            notes: vec![],
        };
        let value = serde_json::to_value(&plan).unwrap();
        assert_eq!(value["step"]["step"], "scale");
        assert_eq!(value["step"]["to"], 6);
        let back: ControlPlan = serde_json::from_value(value).unwrap();
        assert_eq!(back, plan);
        assert_eq!(
            plan.writes(),
            vec![PlannedWrite {
                object: "Deployment shop/checkout (scale)".into(),
                field: "spec.replicas".into(),
                from: "4".into(),
                to: "6".into(),
            }]
        );
        let refused = ControlStatus::Refused {
            reason: Refusal::BelowAutoscalerMinimum {
                minimum: 4,
                wanted: 2,
            },
        };
        assert_eq!(
            serde_json::to_value(&refused).unwrap(),
            json!({"status": "refused", "reason": {"reason": "below_autoscaler_minimum", "minimum": 4, "wanted": 2}})
        );
    }
}
