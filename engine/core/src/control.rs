//! The fast loop's control policy: the input a team's policy sees for one service, the typed
//! actions its output maps to, and the decision the guard makes of it.
//!
//! A fast loop ticks every few seconds. For each service it evaluates the team's own Rego policy
//! on a [`ControlInput`], maps the policy's own output shape to a [`ControlAction`] through an
//! [`ActionMapping`], and lets setpoint's guard policy turn that proposal into a
//! [`ControlDecision`] (act, hold or block, with the final, possibly clamped, action).
//! `docs/fast-loop-policy.md` documents the JSON shapes for policy authors.
//!
//! Metric values that are missing, non-finite or negative are left out of the input document
//! (never `null`): in Rego a comparison with an absent value is undefined, so a rule that reads
//! it does not fire, while `null < 100` would be true and could shrink a service on no data.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Mode, Reason, Verdict};

/// Which Rego syntax a team's policy is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegoVersion {
    /// OPA's older syntax: rule bodies without `if`, `contains`, `in` or `every` unless imported
    /// from `future.keywords` (or `rego.v1`).
    V0,
    /// Rego v1, the default: `if` before every rule body.
    #[default]
    V1,
}

impl RegoVersion {
    /// The name used in configuration: `v0` or `v1`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegoVersion::V0 => "v0",
            RegoVersion::V1 => "v1",
        }
    }
}

/// Whether a metric value may be shown to a policy: finite and not negative.
fn unusable(value: &Option<f64>) -> bool {
    !value.is_some_and(|v| v.is_finite() && v >= 0.0)
}

/// One set of a service's metrics: observed now, or forecast at the loop's horizon.
///
/// A value that is missing, non-finite or negative is omitted from the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Requests per second.
    #[serde(default, skip_serializing_if = "unusable")]
    pub request_rate: Option<f64>,
    /// 99th percentile latency, in milliseconds.
    #[serde(default, skip_serializing_if = "unusable")]
    pub latency_p99_ms: Option<f64>,
    /// Share of requests that failed, in percent (0..100).
    #[serde(default, skip_serializing_if = "unusable")]
    pub error_percent: Option<f64>,
    /// CPU use, in percent of the replicas' requests (may exceed 100).
    #[serde(default, skip_serializing_if = "unusable")]
    pub cpu_percent: Option<f64>,
    /// Ready replicas (observed), or replicas needed at the horizon (forecast), when known.
    #[serde(default, skip_serializing_if = "unusable")]
    pub replicas: Option<f64>,
    /// The same metrics per region or destination (`primary`, `secondary`, …). Regions do not
    /// nest: a region's own `region` map is empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region: BTreeMap<String, Metrics>,
}

/// Whether an interval may be shown to a policy: both ends finite.
fn unusable_interval(value: &Option<Interval>) -> bool {
    !value.is_some_and(|i| i.lower.is_finite() && i.upper.is_finite())
}

/// A range of values: a forecast's prediction interval, or an anomaly detector's expected band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

/// The prediction intervals of a forecast, parallel to [`Metrics`]: `forecast.latency_p99_ms` is
/// the point forecast and `forecast_interval.latency_p99_ms` its `{lower, upper}` interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricIntervals {
    /// Requests per second.
    #[serde(default, skip_serializing_if = "unusable_interval")]
    pub request_rate: Option<Interval>,
    /// 99th percentile latency, in milliseconds.
    #[serde(default, skip_serializing_if = "unusable_interval")]
    pub latency_p99_ms: Option<Interval>,
    /// Share of failed requests, in percent.
    #[serde(default, skip_serializing_if = "unusable_interval")]
    pub error_percent: Option<Interval>,
    /// CPU use, in percent.
    #[serde(default, skip_serializing_if = "unusable_interval")]
    pub cpu_percent: Option<Interval>,
    /// Replicas needed.
    #[serde(default, skip_serializing_if = "unusable_interval")]
    pub replicas: Option<Interval>,
    /// Per region, as in [`Metrics::region`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region: BTreeMap<String, MetricIntervals>,
}

/// The anomaly detector's view of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// How far the observed value lies outside what was expected (0 inside the band; larger is
    /// stranger).
    pub score: f64,
    /// Whether the detector flags the value as anomalous.
    pub anomalous: bool,
    /// The band the value was expected in, when the detector has one.
    #[serde(default, skip_serializing_if = "unusable_interval")]
    pub expected: Option<Interval>,
}

/// The loop a decision is made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlLoop {
    /// Loop name from the config (the key of its per-loop kill switch).
    pub name: String,
    /// The tick's sequence number within the loop.
    pub tick: u64,
}

/// What setpoint has set on a service (or read back from it): the state an action changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CurrentSettings {
    /// Replicas the service is scaled to; absent when unknown (a replica change then holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Traffic weights per destination, in percent summing to 100; empty when the service has
    /// a single destination or they are unknown.
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
    /// The rate limit in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleLimit>,
}

/// The configured limits of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlLimits {
    /// Fewest replicas the service may run.
    pub min_replicas: u32,
    /// Most replicas the service may run.
    pub max_replicas: u32,
    /// Requests per second one replica serves at its target load, when configured.
    #[serde(default, skip_serializing_if = "unusable")]
    pub capacity_per_replica: Option<f64>,
    /// Per destination (region) that runs its own replicas, their bounds; empty when the
    /// service is one pool. A policy that plans each region for its share of the load needs
    /// them: a region kept at its minimum serves little, yet its replicas count in the total.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub region: BTreeMap<String, ReplicaBounds>,
}

/// The bounds of the replicas serving one destination of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaBounds {
    /// Fewest replicas it may run.
    pub min_replicas: u32,
    /// Most replicas it may run.
    pub max_replicas: u32,
}

/// When the service was last changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cooldown {
    /// When the last change was carried out.
    #[serde(default)]
    pub last_change_at: Option<DateTime<Utc>>,
    /// What kind of change it was.
    #[serde(default)]
    pub last_change_kind: Option<ControlActionKind>,
    /// Whole seconds from the last change to this tick (negative if the clock went back).
    #[serde(default)]
    pub seconds_since_last_change: Option<i64>,
}

impl Cooldown {
    /// The cooldown state of a service last changed at `at` with `kind`, as seen at `now`.
    pub fn since(at: DateTime<Utc>, kind: ControlActionKind, now: DateTime<Utc>) -> Self {
        Self {
            last_change_at: Some(at),
            last_change_kind: Some(kind),
            seconds_since_last_change: Some((now - at).num_seconds()),
        }
    }
}

/// Boolean flags from config or data: two well-known ones and any others by name (e.g.
/// `secondary_has_capacity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flags {
    /// The service is in a maintenance window: the guard holds every change.
    #[serde(default)]
    pub maintenance: bool,
    /// An incident is declared: the guard lets changes that do not remove replicas through a
    /// cooldown.
    #[serde(default)]
    pub emergency: bool,
    /// Any other flag, e.g. `secondary_has_capacity`.
    #[serde(flatten)]
    pub other: BTreeMap<String, bool>,
}

/// The document a team's control policy sees as `input`, for one service at one tick.
///
/// `docs/fast-loop-policy.md` documents it field by field with a complete example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlInput {
    /// The service's name (the key of its per-target kill switch).
    pub service: String,
    /// The loop.
    #[serde(rename = "loop")]
    pub loop_info: ControlLoop,
    /// The tick's time (RFC 3339). Policies use this, never the wall clock.
    pub at: DateTime<Utc>,
    /// The same instant in nanoseconds since the Unix epoch.
    pub at_ns: i64,
    /// The metrics observed now.
    pub now: Metrics,
    /// The point forecast at `horizon_seconds` from now.
    #[serde(default)]
    pub forecast: Metrics,
    /// The forecast's prediction intervals, parallel to `forecast`.
    #[serde(default)]
    pub forecast_interval: MetricIntervals,
    /// The anomaly detector's view, by metric name (`latency_p99_ms`, …).
    #[serde(default)]
    pub anomaly: BTreeMap<String, Anomaly>,
    /// What the service is set to now.
    #[serde(default)]
    pub current: CurrentSettings,
    /// The configured limits.
    pub limits: ControlLimits,
    /// When the service last changed.
    #[serde(default)]
    pub cooldown: Cooldown,
    /// Flags from config or data.
    #[serde(default)]
    pub flags: Flags,
    /// How far ahead the forecast looks, in seconds.
    pub horizon_seconds: u64,
    /// Whether the loop executes `act` verdicts.
    pub mode: Mode,
}

/// How many replicas a service should run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaTarget {
    /// Multiply the current replicas (1.5: half as many again; 0.5: half).
    Factor(f64),
    /// Run exactly this many.
    Absolute(u32),
}

/// A rate limit on a service's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleLimit {
    /// Admit this fraction (0 < f ≤ 1) of the current request rate.
    Fraction(f64),
    /// Admit at most this many requests per second.
    Rate(f64),
}

/// A typed control action: what a team's policy output maps to, and what the guard lets through.
///
/// JSON: `{"type": "none"}`, `{"type": "replicas", "factor": 1.5}`,
/// `{"type": "replicas", "absolute": 6}`,
/// `{"type": "traffic_shift", "weights": {"primary": 20, "secondary": 80}}`,
/// `{"type": "throttle", "fraction": 0.8}`, `{"type": "throttle", "rate": 500}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlAction {
    /// Change nothing.
    None,
    /// Scale the replicas.
    Replicas(ReplicaTarget),
    /// Set traffic weights between the service's destinations.
    TrafficShift {
        /// Percent per destination, summing to 100.
        weights: BTreeMap<String, u32>,
    },
    /// Limit the rate of requests admitted.
    Throttle(ThrottleLimit),
}

impl ControlAction {
    /// The kind of this action.
    pub fn kind(&self) -> ControlActionKind {
        match self {
            ControlAction::None => ControlActionKind::None,
            ControlAction::Replicas(_) => ControlActionKind::Replicas,
            ControlAction::TrafficShift { .. } => ControlActionKind::TrafficShift,
            ControlAction::Throttle(_) => ControlActionKind::Throttle,
        }
    }
}

/// The kind of a [`ControlAction`], for cooldowns and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlActionKind {
    /// No change.
    None,
    /// A replica change.
    Replicas,
    /// A traffic shift.
    TrafficShift,
    /// A rate limit.
    Throttle,
}

impl ControlActionKind {
    /// The snake_case name used in policies and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlActionKind::None => "none",
            ControlActionKind::Replicas => "replicas",
            ControlActionKind::TrafficShift => "traffic_shift",
            ControlActionKind::Throttle => "throttle",
        }
    }
}

/// The outcome of the decide stage for one service at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlDecision {
    /// The service.
    pub service: String,
    /// `act`, `hold` or `block` (never `review`: a fast loop has no one to wait for).
    pub verdict: Verdict,
    /// The action the verdict is about, after the guard's clamps (replica changes are always
    /// [`ReplicaTarget::Absolute`] here). Only an `act` verdict carries it out; it is
    /// [`ControlAction::None`] when the policy failed.
    pub action: ControlAction,
    /// The team policy's output mapped to a typed action, before the guard; absent when the
    /// policy failed or its output did not fit the mapping.
    pub proposed: Option<ControlAction>,
    /// Why; the first reason is the top one. Codes are stable (`policy_error`,
    /// `policy_conflict`, `kill_switch`, `cooldown`, …).
    pub reasons: Vec<Reason>,
    /// The team policy's raw output, when it gave one (also when it did not fit the mapping).
    pub policy_output: Option<serde_json::Value>,
    /// The guard policy's raw output, when it was evaluated.
    pub guard_output: Option<serde_json::Value>,
    /// The rule the team policy was evaluated at, e.g. `data.control.decision`.
    pub entry_point: String,
    /// A content hash of the team policy (sources, data, entry point, version and mapping).
    pub policy_hash: String,
}

/// How a team policy's own output maps to a [`ControlAction`].
///
/// The default fits outputs such as `{"type": "REPLICAS", "factor": 1.5}`,
/// `{"type": "WEIGHTS", "to": "secondary"}` and `{"type": "THROTTLE", "limit_fraction": 0.8}`.
/// Field names are top-level keys of the output object; type values are matched exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionMapping {
    /// The field that holds the action's type.
    pub type_field: String,
    /// Type values meaning "change nothing".
    pub none_types: Vec<String>,
    /// Type values meaning a replica change.
    pub replicas_types: Vec<String>,
    /// Type values meaning a traffic shift.
    pub traffic_types: Vec<String>,
    /// Type values meaning a rate limit.
    pub throttle_types: Vec<String>,
    /// Replica change: the field holding a factor of the current replicas.
    pub factor_field: String,
    /// Replica change: the field holding an absolute replica count.
    pub replicas_field: String,
    /// Traffic shift: the field holding weights per destination (any non-negative numbers,
    /// normalised to percent).
    pub weights_field: String,
    /// Traffic shift: the field naming the destination to send traffic to.
    pub to_field: String,
    /// Traffic shift: the field saying how much goes to `to`: `"all"` (the default when absent),
    /// `"most"` ([`ActionMapping::most_percent`]), or a percentage.
    pub share_field: String,
    /// The percentage that `"most"` sends to the destination; the rest is split evenly among
    /// the service's other destinations.
    pub most_percent: u32,
    /// Rate limit: the field holding the fraction of current traffic to admit.
    pub fraction_field: String,
    /// Rate limit: the field holding an absolute rate, in requests per second.
    pub rate_field: String,
}

impl Default for ActionMapping {
    fn default() -> Self {
        let one = |s: &str| vec![s.to_string()];
        Self {
            type_field: "type".into(),
            none_types: one("NONE"),
            replicas_types: one("REPLICAS"),
            traffic_types: one("WEIGHTS"),
            throttle_types: one("THROTTLE"),
            factor_field: "factor".into(),
            replicas_field: "replicas".into(),
            weights_field: "weights".into(),
            to_field: "to".into(),
            share_field: "share".into(),
            most_percent: 90,
            fraction_field: "limit_fraction".into(),
            rate_field: "limit_rate".into(),
        }
    }
}

/// One service's tick of a fast loop as journalled: what the loop saw and forecast (the
/// policy input), what it decided and why, and what became of the decision. `explain
/// <service> --at <time>` reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRecord {
    /// The loop.
    pub loop_name: String,
    /// The loop's tick counter at the decision (counted from the process's start).
    pub tick: u64,
    /// The policy input, which holds the service, the tick's time, the observations and the
    /// forecasts.
    pub input: ControlInput,
    /// The decision.
    pub decision: ControlDecision,
    /// The series that had no forecast at this tick, and why, e.g. `request_rate: no model
    /// (history too short)`: their fields are absent from the input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forecast_problems: Vec<String>,
    /// What became of an `act` verdict: `dry-run` (not carried out), or the actuator's answer.
    pub outcome: ControlOutcome,
}

impl ControlRecord {
    /// The service.
    pub fn service(&self) -> &str {
        &self.input.service
    }

    /// The tick's time.
    pub fn at(&self) -> DateTime<Utc> {
        self.input.at
    }
}

/// What became of a fast loop's decision.
///
/// In enforce mode an `act` verdict is journalled [`ControlOutcome::Pending`], with what the
/// actuator will write, before anything is written; the record is then replaced by how it
/// ended. A record still pending when a loop starts belongs to a process that stopped on the
/// way: it becomes [`ControlOutcome::Interrupted`] and is never carried out again (the next
/// tick reads what is in place and decides afresh).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlOutcome {
    /// The verdict was not `act`: nothing to carry out.
    NothingToDo,
    /// The loop is in dry-run mode: the action was decided, not carried out.
    DryRun {
        /// What the actuator would write, each `object field: from -> to`, as it planned and
        /// validated it (empty when the loop has no actuator).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        writes: Vec<String>,
    },
    /// The loop has no actuator for the action: it was not carried out.
    NoActuator,
    /// Journalled before being carried out: what will be written.
    Pending {
        /// Each `object field: from -> to`.
        writes: Vec<String>,
    },
    /// The process stopped while carrying it out: whether it was written is read by the next
    /// tick; it is not carried out again.
    Interrupted {
        /// What was to be written.
        writes: Vec<String>,
    },
    /// The action was carried out, and reading back shows it.
    Applied {
        /// What the actuator reports.
        detail: String,
    },
    /// The system already had what the action asks for: nothing was written.
    AlreadyInPlace {
        /// What the actuator found.
        detail: String,
    },
    /// A kill switch set between the decision and carrying it out stopped it; nothing was
    /// written.
    Stopped {
        /// The switch.
        switch: String,
    },
    /// The actuator refused or failed; nothing was changed.
    Failed {
        /// Why.
        error: String,
    },
}

impl ControlOutcome {
    /// Whether the service may have been changed: the cooldown of the next ticks counts from
    /// such a record (an interrupted one included: it may have been written).
    pub fn may_have_changed(&self) -> bool {
        matches!(
            self,
            ControlOutcome::Pending { .. }
                | ControlOutcome::Interrupted { .. }
                | ControlOutcome::Applied { .. }
        )
    }
}

impl std::fmt::Display for ControlOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlOutcome::NothingToDo => f.write_str("nothing to do"),
            ControlOutcome::DryRun { writes } if writes.is_empty() => {
                f.write_str("not carried out (dry-run)")
            }
            ControlOutcome::DryRun { writes } => {
                write!(
                    f,
                    "not carried out (dry-run); would write {}",
                    writes.join("; ")
                )
            }
            ControlOutcome::NoActuator => f.write_str("not carried out (no actuator configured)"),
            ControlOutcome::Pending { writes } => {
                write!(f, "being carried out: {}", writes.join("; "))
            }
            ControlOutcome::Interrupted { writes } => write!(
                f,
                "interrupted (the process stopped while writing {}); not repeated",
                writes.join("; ")
            ),
            ControlOutcome::Applied { detail } => write!(f, "applied: {detail}"),
            ControlOutcome::AlreadyInPlace { detail } => write!(f, "already in place: {detail}"),
            ControlOutcome::Stopped { switch } => write!(f, "stopped by {switch}"),
            ControlOutcome::Failed { error } => write!(f, "failed: {error}"),
        }
    }
}

/// The last change a fast loop may have made to a service, kept so that a restarted loop
/// counts its cooldown from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlChange {
    /// The service.
    pub service: String,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The action.
    pub action: ControlAction,
}

impl std::fmt::Display for ControlAction {
    /// `none`, `replicas 6`, `replicas ×1.5`, `weights primary 10 secondary 90`, `throttle
    /// 800 req/s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlAction::None => f.write_str("none"),
            ControlAction::Replicas(ReplicaTarget::Absolute(n)) => write!(f, "replicas {n}"),
            ControlAction::Replicas(ReplicaTarget::Factor(x)) => write!(f, "replicas ×{x}"),
            ControlAction::TrafficShift { weights } => {
                f.write_str("weights")?;
                for (to, percent) in weights {
                    write!(f, " {to} {percent}")?;
                }
                Ok(())
            }
            ControlAction::Throttle(ThrottleLimit::Rate(rate)) => {
                write!(f, "throttle {rate:.0} req/s")
            }
            ControlAction::Throttle(ThrottleLimit::Fraction(x)) => {
                write!(f, "throttle to {:.0} % of the request rate", x * 100.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn actions_have_the_documented_json_shape() {
        let cases = [
            (ControlAction::None, json!({"type": "none"})),
            (
                ControlAction::Replicas(ReplicaTarget::Factor(1.5)),
                json!({"type": "replicas", "factor": 1.5}),
            ),
            (
                ControlAction::Replicas(ReplicaTarget::Absolute(6)),
                json!({"type": "replicas", "absolute": 6}),
            ),
            (
                ControlAction::TrafficShift {
                    weights: BTreeMap::from([("primary".into(), 20), ("secondary".into(), 80)]),
                },
                json!({"type": "traffic_shift", "weights": {"primary": 20, "secondary": 80}}),
            ),
            (
                ControlAction::Throttle(ThrottleLimit::Fraction(0.8)),
                json!({"type": "throttle", "fraction": 0.8}),
            ),
            (
                ControlAction::Throttle(ThrottleLimit::Rate(500.0)),
                json!({"type": "throttle", "rate": 500.0}),
            ),
        ];
        for (action, expected) in cases {
            assert_eq!(serde_json::to_value(&action).unwrap(), expected);
            let back: ControlAction = serde_json::from_value(expected).unwrap();
            assert_eq!(back, action);
        }
        assert!(serde_json::from_value::<ControlAction>(json!({"type": "replicas"})).is_err());
        assert!(serde_json::from_value::<ControlAction>(json!({"type": "grow"})).is_err());
    }

    #[test]
    fn unusable_metric_values_are_left_out_not_null() {
        let metrics = Metrics {
            request_rate: Some(f64::NAN),
            latency_p99_ms: Some(-1.0),
            error_percent: None,
            cpu_percent: Some(55.0),
            replicas: Some(f64::INFINITY),
            region: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(&metrics).unwrap(),
            json!({"cpu_percent": 55.0})
        );
        let intervals = MetricIntervals {
            latency_p99_ms: Some(Interval {
                lower: 1.0,
                upper: f64::NAN,
            }),
            cpu_percent: Some(Interval {
                lower: 40.0,
                upper: 70.0,
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&intervals).unwrap(),
            json!({"cpu_percent": {"lower": 40.0, "upper": 70.0}})
        );
    }

    #[test]
    fn flags_are_free_form_beside_the_well_known_ones() {
        let flags: Flags =
            serde_json::from_value(json!({"maintenance": true, "secondary_has_capacity": true}))
                .unwrap();
        assert!(flags.maintenance && !flags.emergency);
        assert_eq!(flags.other.get("secondary_has_capacity"), Some(&true));
        assert_eq!(
            serde_json::to_value(&flags).unwrap(),
            json!({"maintenance": true, "emergency": false, "secondary_has_capacity": true})
        );
    }

    #[test]
    fn the_mapping_and_rego_version_read_from_config() {
        let mapping: ActionMapping =
            serde_json::from_value(json!({"type_field": "kind", "most_percent": 80})).unwrap();
        assert_eq!(mapping.type_field, "kind");
        assert_eq!(mapping.most_percent, 80);
        assert_eq!(mapping.replicas_types, ["REPLICAS"]);
        assert!(serde_json::from_value::<ActionMapping>(json!({"typo": 1})).is_err());
        assert_eq!(
            serde_json::from_value::<RegoVersion>(json!("v0")).unwrap(),
            RegoVersion::V0
        );
    }

    #[test]
    fn cooldown_since_counts_seconds_to_now() {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let now = DateTime::<Utc>::from_timestamp(1_800_000_090, 0).unwrap();
        let c = Cooldown::since(at, ControlActionKind::Replicas, now);
        assert_eq!(c.seconds_since_last_change, Some(90));
    }
}
