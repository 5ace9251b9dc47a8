//! The fleet as a metric source: the metric catalogue, and range queries answered from the
//! simulated past — never from after its present.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use setpoint_core::{MetricSeries, Resources, Target};

use super::Region;
use super::model::{RegionObservation, ServiceObservation, ServiceSim};
use crate::{BoxFuture, MetricSource, ObserveError, QueryResult, RangeQuery};

/// The technology of simulated services, as plugins and loop configurations name it.
pub const SERVICE_TECHNOLOGY: &str = "service";

/// What is measured (see the table in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceMetric {
    /// Requests/s offered (per region: routed there, after throttling).
    RequestRate,
    /// Requests/s served.
    ServedRate,
    /// Requests/s rejected by the throttle (service level only).
    ThrottledRate,
    /// p99 latency in milliseconds.
    LatencyP99Ms,
    /// Errors in percent of offered requests.
    ErrorPercent,
    /// Mean CPU utilisation of the ready replicas, percent.
    CpuPercent,
    /// Ready replicas.
    Replicas,
    /// Replicas asked for, ready or starting.
    ReplicasDesired,
    /// A region's share of the admitted traffic (region level only).
    TrafficWeight,
}

impl ServiceMetric {
    /// Every metric, in the order of the module docs' table.
    pub const ALL: [ServiceMetric; 9] = [
        ServiceMetric::RequestRate,
        ServiceMetric::ServedRate,
        ServiceMetric::ThrottledRate,
        ServiceMetric::LatencyP99Ms,
        ServiceMetric::ErrorPercent,
        ServiceMetric::CpuPercent,
        ServiceMetric::Replicas,
        ServiceMetric::ReplicasDesired,
        ServiceMetric::TrafficWeight,
    ];

    /// The name a loop configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            ServiceMetric::RequestRate => "request_rate",
            ServiceMetric::ServedRate => "served_rate",
            ServiceMetric::ThrottledRate => "throttled_rate",
            ServiceMetric::LatencyP99Ms => "latency_p99_ms",
            ServiceMetric::ErrorPercent => "error_percent",
            ServiceMetric::CpuPercent => "cpu_percent",
            ServiceMetric::Replicas => "replicas",
            ServiceMetric::ReplicasDesired => "replicas_desired",
            ServiceMetric::TrafficWeight => "traffic_weight",
        }
    }

    /// Its unit.
    pub fn unit(self) -> &'static str {
        match self {
            ServiceMetric::RequestRate
            | ServiceMetric::ServedRate
            | ServiceMetric::ThrottledRate => "req/s",
            ServiceMetric::LatencyP99Ms => "ms",
            ServiceMetric::ErrorPercent | ServiceMetric::CpuPercent => "percent",
            ServiceMetric::Replicas | ServiceMetric::ReplicasDesired => "replicas",
            ServiceMetric::TrafficWeight => "ratio",
        }
    }

    /// The PromQL a real deployment answers this metric with, grouped by `service`, for the
    /// whole service or, with `region`, for the series labelled `region="<region>"`: standard
    /// instrumentation (`http_requests_total` and `http_request_duration_seconds` with a
    /// `service` label) and kube-state-metrics / cAdvisor.
    pub fn promql(self, region: Option<&str>) -> String {
        let region = region.map(|r| format!("region=\"{r}\""));
        let select = |metric: &str, matchers: &[&str]| {
            let all: Vec<&str> = matchers.iter().copied().chain(region.as_deref()).collect();
            if all.is_empty() {
                metric.to_string()
            } else {
                format!("{metric}{{{}}}", all.join(","))
            }
        };
        let rate = |matchers: &[&str]| {
            format!(
                "sum by (service) (rate({}[1m]))",
                select("http_requests_total", matchers)
            )
        };
        match self {
            ServiceMetric::RequestRate => rate(&[]),
            ServiceMetric::ServedRate => rate(&["code!~\"5..|429\""]),
            ServiceMetric::ThrottledRate => rate(&["code=\"429\""]),
            ServiceMetric::LatencyP99Ms => format!(
                "1000 * histogram_quantile(0.99, sum by (service, le) (rate({}[1m])))",
                select("http_request_duration_seconds_bucket", &[])
            ),
            ServiceMetric::ErrorPercent => {
                format!("100 * {} / {}", rate(&["code=~\"5..|429\""]), rate(&[]))
            }
            ServiceMetric::CpuPercent => format!(
                "100 * sum by (service) (rate({}[1m])) / sum by (service) ({})",
                select("container_cpu_usage_seconds_total", &["container=\"app\""]),
                select(
                    "kube_pod_container_resource_limits",
                    &["container=\"app\"", "resource=\"cpu\""]
                )
            ),
            ServiceMetric::Replicas => format!(
                "sum by (service) ({})",
                select("kube_deployment_status_replicas_available", &[])
            ),
            ServiceMetric::ReplicasDesired => format!(
                "sum by (service) ({})",
                select("kube_deployment_spec_replicas", &[])
            ),
            // The region's admitted requests over all admitted requests.
            ServiceMetric::TrafficWeight => format!(
                "{} / sum by (service) (rate(http_requests_total{{code!=\"429\"}}[1m]))",
                rate(&["code!=\"429\""])
            ),
        }
    }

    fn per_service(self) -> bool {
        self != ServiceMetric::TrafficWeight
    }

    fn per_region(self) -> bool {
        self != ServiceMetric::ThrottledRate
    }

    fn of_service(self, seen: &ServiceObservation) -> f64 {
        match self {
            ServiceMetric::RequestRate => seen.offered_rps,
            ServiceMetric::ServedRate => seen.served_rps,
            ServiceMetric::ThrottledRate => seen.throttled_rps,
            ServiceMetric::LatencyP99Ms => seen.latency_p99_ms,
            ServiceMetric::ErrorPercent => seen.error_percent,
            ServiceMetric::CpuPercent => seen.cpu_percent,
            ServiceMetric::Replicas => f64::from(seen.replicas),
            ServiceMetric::ReplicasDesired => f64::from(seen.replicas_desired),
            ServiceMetric::TrafficWeight => f64::NAN,
        }
    }

    fn of_region(self, seen: &RegionObservation) -> f64 {
        match self {
            ServiceMetric::RequestRate => seen.offered_rps,
            ServiceMetric::ServedRate => seen.served_rps,
            ServiceMetric::ThrottledRate => f64::NAN,
            ServiceMetric::LatencyP99Ms => seen.latency_p99_ms,
            ServiceMetric::ErrorPercent => seen.error_percent,
            ServiceMetric::CpuPercent => seen.cpu_percent,
            ServiceMetric::Replicas => f64::from(seen.replicas),
            ServiceMetric::ReplicasDesired => f64::from(seen.replicas_desired),
            ServiceMetric::TrafficWeight => seen.weight,
        }
    }
}

/// A metric of a service, or of one of its regions: what a query's `metric` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricKey {
    /// What is measured.
    pub metric: ServiceMetric,
    /// `None`: the whole service.
    pub region: Option<Region>,
}

impl MetricKey {
    /// Every metric the fleet serves: service level first, then per region.
    pub fn all() -> Vec<MetricKey> {
        let service = ServiceMetric::ALL
            .iter()
            .filter(|m| m.per_service())
            .map(|&metric| MetricKey {
                metric,
                region: None,
            });
        let regional = Region::ALL.into_iter().flat_map(|region| {
            ServiceMetric::ALL
                .into_iter()
                .filter(|m| m.per_region())
                .map(move |metric| MetricKey {
                    metric,
                    region: Some(region),
                })
        });
        service.chain(regional).collect()
    }

    /// `request_rate`, `latency_p99_ms_primary`, …
    pub fn name(&self) -> String {
        match self.region {
            None => self.metric.name().to_string(),
            Some(region) => format!("{}_{}", self.metric.name(), region.name()),
        }
    }

    /// The key a name stands for, if the fleet serves it.
    pub fn parse(name: &str) -> Option<MetricKey> {
        Self::all().into_iter().find(|k| k.name() == name)
    }

    /// The PromQL a real deployment answers this metric with, grouped by `service`.
    pub fn promql(&self) -> String {
        self.metric.promql(self.region.map(Region::name))
    }

    /// Its value in an observation.
    pub fn value(&self, seen: &ServiceObservation) -> f64 {
        match self.region {
            None => self.metric.of_service(seen),
            Some(region) => self.metric.of_region(&seen.regions[region]),
        }
    }
}

impl ServiceSim {
    /// The services as targets of [`SERVICE_TECHNOLOGY`], each labelled `service`, with its
    /// replicas asked for now.
    pub fn targets(&self) -> Vec<Target> {
        let now = self.observe_now();
        self.services()
            .iter()
            .zip(&now.services)
            .map(|(spec, seen)| Target {
                id: spec.name.clone(),
                technology: SERVICE_TECHNOLOGY.to_string(),
                labels: BTreeMap::from([("service".to_string(), spec.name.clone())]),
                resources: Resources {
                    cpu_millicores: 0,
                    memory_bytes: 0,
                    replicas: seen.replicas_desired,
                    parameters: BTreeMap::new(),
                },
            })
            .collect()
    }

    /// Answers a range query synchronously. Samples are instantaneous values on multiples of
    /// the step, within `[start, end)`, from the first simulated instant up to the present
    /// (inclusive) — nothing later exists yet. A metric is found by its name or, failing
    /// that, by its exact PromQL from [`MetricKey::promql`].
    pub fn query(&self, query: &RangeQuery) -> Result<QueryResult, ObserveError> {
        if query.technology != SERVICE_TECHNOLOGY {
            return Err(ObserveError::UnsupportedTechnology {
                source_name: self.name().to_string(),
                technology: query.technology.clone(),
                metric: query.metric.clone(),
            });
        }
        if query.step_seconds == 0 || query.end <= query.start {
            return Err(ObserveError::InvalidQuery {
                source_name: self.name().to_string(),
                metric: query.metric.clone(),
                message: format!(
                    "range {}..{} with step {}s",
                    query.start, query.end, query.step_seconds
                ),
            });
        }
        let key = MetricKey::parse(&query.metric)
            .or_else(|| {
                MetricKey::all()
                    .into_iter()
                    .find(|k| k.promql() == query.promql)
            })
            .ok_or_else(|| ObserveError::UnknownMetric {
                source_name: self.name().to_string(),
                metric: query.metric.clone(),
                promql: query.promql.clone(),
                known: MetricKey::all()
                    .iter()
                    .map(MetricKey::name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let step = i64::try_from(query.step_seconds)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let from = query.start.timestamp_millis().max(self.begin_ms());
        let first =
            from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
        // Samples up to the present, inclusive; the range's end is exclusive.
        let last = (query.end.timestamp_millis() - 1).min(self.now_ms());
        let mut series = Vec::new();
        if first <= last {
            let count = usize::try_from((last - first) / step + 1).unwrap_or(0);
            for (index, spec) in self.services().iter().enumerate() {
                let mut out = MetricSeries {
                    metric: query.metric.clone(),
                    timestamps_ms: Vec::with_capacity(count),
                    values: Vec::with_capacity(count),
                    sample_counts: None,
                };
                let times = (0..).map(|k| first + k * step).take_while(|&t| t <= last);
                self.for_each_at(index, times, |t, seen| {
                    out.timestamps_ms.push(t);
                    out.values.push(key.value(seen));
                });
                let out = match query.weekly {
                    Some(summary) => {
                        crate::summarise_weekly(&out, query.end.timestamp_millis(), summary)
                    }
                    None => out,
                };
                if !out.values.is_empty() {
                    series.push((spec.name.clone(), out));
                }
            }
        }
        Ok(QueryResult {
            series,
            ..QueryResult::default()
        })
    }
}

impl MetricSource for ServiceSim {
    fn name(&self) -> &str {
        ServiceSim::name(self)
    }

    fn discover<'a>(
        &'a self,
        technology: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Target>, ObserveError>> {
        Box::pin(async move {
            Ok(if technology == SERVICE_TECHNOLOGY {
                self.targets()
            } else {
                Vec::new()
            })
        })
    }

    fn summarises_weekly(&self) -> bool {
        true
    }

    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>> {
        Box::pin(async move { self.query(query) })
    }
}

/// A simulation shared between whoever steps it and the observe stage that queries it.
#[derive(Debug, Clone)]
pub struct ServiceSource {
    name: String,
    sim: Arc<RwLock<ServiceSim>>,
}

/// A thread panicked while it held the simulation.
#[derive(Debug, thiserror::Error)]
#[error("the shared service simulation was poisoned by a panic")]
struct Poisoned;

impl ServiceSource {
    /// A source over a shared simulation.
    pub fn new(sim: Arc<RwLock<ServiceSim>>) -> Self {
        let name = sim
            .read()
            .map(|s| s.name().to_string())
            .unwrap_or_else(|_| "simulated-services".to_string());
        Self { name, sim }
    }

    /// The shared simulation, to step it and act on it.
    pub fn sim(&self) -> &Arc<RwLock<ServiceSim>> {
        &self.sim
    }

    fn with<T>(
        &self,
        metric: &str,
        f: impl FnOnce(&ServiceSim) -> Result<T, ObserveError>,
    ) -> Result<T, ObserveError> {
        match self.sim.read() {
            Ok(sim) => f(&sim),
            Err(_) => Err(ObserveError::Backend {
                source_name: self.name.clone(),
                metric: metric.to_string(),
                promql: String::new(),
                cause: Box::new(Poisoned),
            }),
        }
    }
}

impl MetricSource for ServiceSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn discover<'a>(
        &'a self,
        technology: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Target>, ObserveError>> {
        Box::pin(async move {
            self.with("", |sim| {
                Ok(if technology == SERVICE_TECHNOLOGY {
                    sim.targets()
                } else {
                    Vec::new()
                })
            })
        })
    }

    fn summarises_weekly(&self) -> bool {
        true
    }

    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>> {
        Box::pin(async move { self.with(&query.metric, |sim| sim.query(query)) })
    }
}
