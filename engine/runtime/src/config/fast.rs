//! A fast loop's own settings: the `fast:` section of a loop of `kind: fast`.

use std::collections::BTreeMap;
use std::time::Duration;

use setpoint_act::control::{ControlConfig, ServiceRef};
use setpoint_core::control::{ActionMapping, ControlLimits, Flags, RegoVersion};
use setpoint_observe::services::ServiceMetric;

use super::*;

/// `fast:` — what a fast loop reads, forecasts and how its policy is called. Every key has a
/// default; a loop of `kind: fast` may leave the section out.
///
/// ```yaml
/// fast:
///   horizon: 15m
///   regions: [primary, secondary]
///   limits:
///     default: {min_replicas: 2, max_replicas: 40, capacity_per_replica: 120}
///     services:
///       checkout: {min_replicas: 4, max_replicas: 80, capacity_per_replica: 90}
///   metrics:
///     request_rate: sum by (service) (rate(http_requests_total[1m]))
///   actuator:
///     kubernetes: {namespace: shop, kind: Deployment}
///     throttle: {redis_url: "redis://127.0.0.1:6379"}
///   objects:
///     checkout: {k8s_name: checkout-v2, k8s_route: main}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastConfig {
    /// How far ahead the forecast the policy sees looks (default 15m, at most 1h).
    #[serde(default = "default_horizon")]
    pub horizon: HumanDuration,
    /// Spacing of the samples read, recent and history (default 1m).
    #[serde(default = "default_step")]
    pub step: HumanDuration,
    /// History read at each refit (default 15d: the forecaster needs two weekly seasons).
    #[serde(default = "default_history")]
    pub history: HumanDuration,
    /// How often the models are refitted, in the background (default 1h).
    #[serde(default = "default_refit_every")]
    pub refit_every: HumanDuration,
    /// The anomaly score from which a value is anomalous (default: the forecaster's, 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly_threshold: Option<f64>,
    /// The label whose value names a service in every query's answer (default `service`).
    #[serde(default = "default_service_label")]
    pub service_label: String,
    /// The regions (traffic destinations) of the services, as the policy and the traffic
    /// weights name them (default none: services have one destination).
    #[serde(default)]
    pub regions: Vec<String>,
    /// PromQL by series name, replacing the defaults (see [`FastConfig::queries`]).
    #[serde(default)]
    pub metrics: BTreeMap<String, String>,
    /// Replica bounds and per-replica capacity.
    #[serde(default)]
    pub limits: FastLimitsConfig,
    /// Flags every service's policy input carries (`maintenance`, `emergency`, any other).
    #[serde(default)]
    pub flags: Flags,
    /// The rule of the loop's policy that decides (default `data.control.decision`).
    #[serde(default = "default_entry_point")]
    pub entry_point: String,
    /// The Rego version of the loop's policy files (default `v1`).
    #[serde(default)]
    pub rego: RegoVersion,
    /// How the policy's output maps to an action (default: `{"type": "REPLICAS", …}`).
    #[serde(default)]
    pub mapping: ActionMapping,
    /// Ticks that decide nothing are journalled once per service per this interval (default
    /// 5m); ticks that decide something always are.
    #[serde(default = "default_journal_every")]
    pub journal_every: HumanDuration,
    /// How long journalled ticks are kept (default 7d).
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
    /// What carries out the loop's actions ([`ControlConfig`]: the Kubernetes API server for
    /// replicas and traffic weights, a Redis for throttles). Required in enforce mode; in
    /// dry-run, each action is planned against the live objects and validated without being
    /// written (none: actions are only decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actuator: Option<ControlConfig>,
    /// The labels naming each service's objects (`k8s_kind`, `k8s_namespace`, `k8s_name`,
    /// `k8s_route`, `k8s_virtual_service`), by service. A service not named here, or without
    /// a name label, is the object named like the service, of the actuator's configured kind
    /// and namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub objects: BTreeMap<String, BTreeMap<String, String>>,
}

fn default_horizon() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}
fn default_step() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_history() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 86_400))
}
fn default_refit_every() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}
fn default_service_label() -> String {
    "service".to_string()
}
fn default_entry_point() -> String {
    "data.control.decision".to_string()
}
fn default_journal_every() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_retention() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 86_400))
}

impl Default for FastConfig {
    fn default() -> Self {
        Self {
            horizon: default_horizon(),
            step: default_step(),
            history: default_history(),
            refit_every: default_refit_every(),
            anomaly_threshold: None,
            service_label: default_service_label(),
            regions: Vec::new(),
            metrics: BTreeMap::new(),
            limits: FastLimitsConfig::default(),
            flags: Flags::default(),
            entry_point: default_entry_point(),
            rego: RegoVersion::default(),
            mapping: ActionMapping::default(),
            journal_every: default_journal_every(),
            retention: default_retention(),
            actuator: None,
            objects: BTreeMap::new(),
        }
    }
}

/// `fast.limits`: the bounds of every service, and of named ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastLimitsConfig {
    /// A service not named in `services` (default 1 to 100 replicas, capacity unknown).
    #[serde(default = "default_limits")]
    pub default: ControlLimits,
    /// By service name.
    #[serde(default)]
    pub services: BTreeMap<String, ControlLimits>,
}

fn default_limits() -> ControlLimits {
    ControlLimits {
        min_replicas: 1,
        max_replicas: 100,
        capacity_per_replica: None,
        region: BTreeMap::new(),
    }
}

impl Default for FastLimitsConfig {
    fn default() -> Self {
        Self {
            default: default_limits(),
            services: BTreeMap::new(),
        }
    }
}

/// What a query's answer is, for the fast loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastSeries {
    /// A metric the loop forecasts or observes, for the service or one region.
    Metric {
        /// The metric.
        metric: crate::fast::FastMetric,
        /// The region, for a regional series.
        region: Option<String>,
    },
    /// A region's share of the service's traffic, 0..1: the current traffic weights.
    Weight {
        /// The region.
        region: String,
    },
}

/// One range query of a fast loop's observe stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastQuery {
    /// The series name: `request_rate`, `latency_p99_ms_primary`, `traffic_weight_secondary`.
    pub name: String,
    /// Its PromQL.
    pub promql: String,
    /// What its answer is.
    pub series: FastSeries,
}

/// The service metric a fast metric is read as.
fn service_metric(metric: crate::fast::FastMetric) -> ServiceMetric {
    use crate::fast::FastMetric;
    match metric {
        FastMetric::RequestRate => ServiceMetric::RequestRate,
        FastMetric::LatencyP99Ms => ServiceMetric::LatencyP99Ms,
        FastMetric::ErrorPercent => ServiceMetric::ErrorPercent,
        FastMetric::CpuPercent => ServiceMetric::CpuPercent,
        FastMetric::Replicas => ServiceMetric::Replicas,
    }
}

impl FastConfig {
    /// The queries of the observe stage, one per series name: every metric of the service
    /// (`request_rate`, `latency_p99_ms`, `error_percent`, `cpu_percent`, `replicas`) and, per
    /// region, its load, latency and traffic share (`request_rate_<region>`,
    /// `latency_p99_ms_<region>`, `traffic_weight_<region>`). Each is `metrics.<name>` when
    /// set, otherwise the standard instrumentation's PromQL grouped by `service`.
    pub fn queries(&self) -> Vec<FastQuery> {
        use crate::fast::FastMetric;
        let mut out = Vec::new();
        let mut add = |name: String, default: String, series: FastSeries| {
            let promql = self.metrics.get(&name).cloned().unwrap_or(default);
            out.push(FastQuery {
                name,
                promql,
                series,
            });
        };
        for metric in FastMetric::ALL {
            add(
                metric.name().to_string(),
                service_metric(metric).promql(None),
                FastSeries::Metric {
                    metric,
                    region: None,
                },
            );
        }
        for region in &self.regions {
            for metric in [FastMetric::RequestRate, FastMetric::LatencyP99Ms] {
                add(
                    format!("{}_{region}", metric.name()),
                    service_metric(metric).promql(Some(region)),
                    FastSeries::Metric {
                        metric,
                        region: Some(region.clone()),
                    },
                );
            }
            add(
                format!("traffic_weight_{region}"),
                ServiceMetric::TrafficWeight.promql(Some(region)),
                FastSeries::Weight {
                    region: region.clone(),
                },
            );
        }
        out
    }

    /// The settings of the fast loop `loop_name` in `mode`: every key of this section that the
    /// loop's stages read, over the forecaster's defaults (a history shorter than the
    /// forecaster's minimum is read at that minimum).
    pub fn settings(
        &self,
        loop_name: &str,
        mode: setpoint_core::Mode,
    ) -> crate::fast::FastSettings {
        let mut settings = crate::fast::FastSettings::new(loop_name);
        settings.horizon = self.horizon.as_delta();
        settings.refit_every = self.refit_every.as_delta();
        settings.mode = mode;
        settings.default_limits = self.limits.default.clone();
        settings.limits = self.limits.services.clone();
        settings.flags = self.flags.clone();
        if let Some(threshold) = self.anomaly_threshold {
            settings.anomaly_threshold = threshold;
        }
        settings.forecast = setpoint_forecast::ForecastSettings {
            max_history: self.history.as_delta().max(settings.forecast.min_history),
            non_negative: true,
            ..settings.forecast
        };
        settings
    }

    /// The service `name` as its actuator finds its objects: the labels of `objects.<name>`,
    /// with the name label set to the service's name when they do not give one.
    pub fn service_ref(&self, name: &str) -> ServiceRef {
        let name_label = self
            .actuator
            .as_ref()
            .and_then(|a| a.kubernetes.as_ref())
            .map_or_else(
                || setpoint_act::kubernetes::ObjectLabels::default().name,
                |k| k.labels.name.clone(),
            );
        let mut service = ServiceRef::new(name);
        if let Some(labels) = self.objects.get(name) {
            service.labels = labels.clone();
        }
        service
            .labels
            .entry(name_label)
            .or_insert_with(|| name.to_string());
        service
    }

    /// Every problem, each starting with `path`.
    pub(super) fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let horizon = self.horizon.0;
        if horizon.is_zero() || horizon > Duration::from_secs(3600) {
            out.push(format!(
                "{path}.horizon: must be more than 0 and at most 1h, got {}",
                humantime::format_duration(horizon)
            ));
        }
        let step = self.step.0.as_secs();
        if !(1..=900).contains(&step) {
            out.push(format!(
                "{path}.step: must be between 1s and 15m, got {}",
                humantime::format_duration(self.step.0)
            ));
        }
        if self.history.0 < Duration::from_secs(2 * 86_400) {
            out.push(format!(
                "{path}.history: must be at least 2d (the daily season twice), got {}",
                humantime::format_duration(self.history.0)
            ));
        }
        if self.refit_every.0 < Duration::from_secs(60) {
            out.push(format!("{path}.refit_every: must be at least 1m"));
        }
        if let Some(t) = self.anomaly_threshold
            && !(t.is_finite() && t > 0.0)
        {
            out.push(format!(
                "{path}.anomaly_threshold: must be a positive number, got {t}"
            ));
        }
        if self.service_label.is_empty() {
            out.push(format!("{path}.service_label: must not be empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, region) in self.regions.iter().enumerate() {
            if region.is_empty() || region.chars().any(|c| c.is_control() || c.is_whitespace()) {
                out.push(format!(
                    "{path}.regions[{i}]: {region:?} must be a non-empty name without spaces"
                ));
            }
            if !seen.insert(region) {
                out.push(format!("{path}.regions[{i}]: {region:?} is listed twice"));
            }
        }
        let names: Vec<String> = self.queries().into_iter().map(|q| q.name).collect();
        for name in self.metrics.keys() {
            if !names.contains(name) {
                out.push(format!(
                    "{path}.metrics.{name}: no such series; the loop reads {}",
                    names.join(", ")
                ));
            }
        }
        let mut limits = vec![("default".to_string(), &self.limits.default)];
        limits.extend(
            self.limits
                .services
                .iter()
                .map(|(s, l)| (format!("services.{s}"), l)),
        );
        for (name, l) in limits {
            if l.min_replicas > l.max_replicas {
                out.push(format!(
                    "{path}.limits.{name}: min_replicas ({}) is above max_replicas ({})",
                    l.min_replicas, l.max_replicas
                ));
            }
            if let Some(c) = l.capacity_per_replica
                && !(c.is_finite() && c > 0.0)
            {
                out.push(format!(
                    "{path}.limits.{name}.capacity_per_replica: must be a positive number, got {c}"
                ));
            }
            for (region, b) in &l.region {
                if b.min_replicas > b.max_replicas {
                    out.push(format!(
                        "{path}.limits.{name}.region.{region}: min_replicas ({}) is above max_replicas ({})",
                        b.min_replicas, b.max_replicas
                    ));
                }
            }
        }
        if self.journal_every.0 < self.step.0.min(Duration::from_secs(1)) {
            out.push(format!("{path}.journal_every: must be at least 1s"));
        }
        if self.retention.0 < Duration::from_secs(3600) {
            out.push(format!("{path}.retention: must be at least 1h"));
        }
        if let Some(actuator) = &self.actuator {
            if actuator.kubernetes.is_none() && actuator.throttle.is_none() {
                out.push(format!(
                    "{path}.actuator: names neither kubernetes (replicas, traffic weights) nor \
                     throttle (rate limits): it could carry out nothing"
                ));
            }
            if actuator.backoff > actuator.max_backoff {
                out.push(format!(
                    "{path}.actuator: backoff ({}) is above max_backoff ({})",
                    humantime::format_duration(actuator.backoff),
                    humantime::format_duration(actuator.max_backoff)
                ));
            }
        }
        for service in self.objects.keys() {
            if service.is_empty() || service.chars().any(char::is_control) {
                out.push(format!(
                    "{path}.objects: {service:?} is not a service name (empty or with control characters)"
                ));
            }
        }
        out
    }
}
