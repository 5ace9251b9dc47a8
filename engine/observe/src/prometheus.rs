//! A Prometheus-compatible metric source: Prometheus, VictoriaMetrics, Thanos, Mimir.
//!
//! One `query_range` request per metric covers the whole fleet (the plugin's PromQL groups by
//! the target label), split into chunks only where the server's points-per-series limit
//! demands it (11,000 on Prometheus, 30,000 on VictoriaMetrics). Transient failures (connection,
//! timeout, 5xx, 429) are retried with exponential backoff; a 4xx is the query's fault and is
//! not. Every error names the server and the metric, so a degraded cycle says what failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use setpoint_core::{MetricSeries, Resources, Target};

use crate::{BoxFuture, MetricSource, ObserveError, QueryResult, RangeQuery};

/// How to authenticate to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

/// Connection settings of a Prometheus-compatible source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090` (VictoriaMetrics: its HTTP address).
    pub url: String,
    /// Timeout of one HTTP request.
    #[serde(
        default = "default_timeout",
        deserialize_with = "duration",
        serialize_with = "show_duration"
    )]
    pub timeout: Duration,
    /// Retries of a transient failure (connection, timeout, 5xx, 429).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Authentication, if the server wants it.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// A PEM file of extra CA certificates to trust (self-signed or private CAs).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Most points one series may have in one response (11,000 on Prometheus, 30,000 on
    /// VictoriaMetrics); longer ranges are split into chunks.
    #[serde(default = "default_max_points")]
    pub max_points_per_series: u64,
    /// The metric whose series name the targets of a technology (default: `pg_up` for
    /// postgres, `redis_up` for redis, `<technology>_up` otherwise).
    #[serde(default)]
    pub discovery_metric: Option<String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    3
}
fn default_max_points() -> u64 {
    11_000
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

fn show_duration<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*value).to_string())
}

impl PrometheusConfig {
    /// Settings for `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: default_timeout(),
            retries: default_retries(),
            auth: None,
            ca_file: None,
            max_points_per_series: default_max_points(),
            discovery_metric: None,
        }
    }
}

/// Backoff between retries: doubling from 200 ms, capped at 5 s.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const CAP: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }

    fn step(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        wait
    }
}

/// A Prometheus-compatible source.
#[derive(Debug)]
pub struct PrometheusSource {
    name: String,
    base: String,
    config: PrometheusConfig,
    client: reqwest::Client,
    requests: AtomicUsize,
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<ApiSeries>,
}

#[derive(Debug, Deserialize)]
struct ApiSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// A failed attempt, and whether another attempt may help.
struct Attempt {
    error: ObserveError,
    transient: bool,
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

impl PrometheusSource {
    /// A source for `config`; fails on a malformed URL or an unreadable CA file.
    pub fn new(config: PrometheusConfig) -> Result<Self, ObserveError> {
        let base = config.url.trim_end_matches('/').to_string();
        let name = format!("prometheus({base})");
        let invalid = |message: String| ObserveError::InvalidQuery {
            source_name: name.clone(),
            metric: String::new(),
            message,
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid(format!(
                "url {:?} must start with http:// or https://",
                config.url
            )));
        }
        if config.max_points_per_series < 2 {
            return Err(invalid("max_points_per_series must be at least 2".into()));
        }
        let mut builder = reqwest::Client::builder().timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| invalid(format!("cannot read ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(format!("ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(invalid(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            name,
            base,
            config,
            client,
            requests: AtomicUsize::new(0),
        })
    }

    /// HTTP requests sent so far (retries and chunks included).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// One API call with retries; `metric` names the query in errors.
    async fn call(
        &self,
        path: &str,
        form: &[(&str, String)],
        metric: &str,
    ) -> Result<ApiData, ObserveError> {
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            match self.call_once(path, form, metric).await {
                Ok(data) => return Ok(data),
                Err(failed) if failed.transient && attempt < self.config.retries => {
                    attempt += 1;
                    let wait = backoff.step();
                    tracing::warn!(source = %self.name, metric, attempt, error = %failed.error, "retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    async fn call_once(
        &self,
        path: &str,
        form: &[(&str, String)],
        metric: &str,
    ) -> Result<ApiData, Attempt> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        request = match &self.config.auth {
            Some(Auth::Bearer { token }) => request.bearer_auth(token),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            None => request,
        };
        let source_name = self.name.clone();
        let response = request.send().await.map_err(|e| {
            let error = if e.is_timeout() {
                ObserveError::Timeout {
                    source_name: source_name.clone(),
                    metric: metric.to_string(),
                    timeout: self.config.timeout,
                }
            } else {
                ObserveError::Unreachable {
                    source_name: source_name.clone(),
                    metric: metric.to_string(),
                    message: error_chain(&e),
                }
            };
            Attempt {
                error,
                transient: true,
            }
        })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| Attempt {
            transient: e.is_timeout(),
            error: if e.is_timeout() {
                ObserveError::Timeout {
                    source_name: source_name.clone(),
                    metric: metric.to_string(),
                    timeout: self.config.timeout,
                }
            } else {
                ObserveError::Unreachable {
                    source_name: source_name.clone(),
                    metric: metric.to_string(),
                    message: error_chain(&e),
                }
            },
        })?;
        let parsed: Result<ApiResponse, _> = serde_json::from_str(&body);
        if !status.is_success() {
            let detail = match &parsed {
                Ok(r) => format!(
                    "{}: {}",
                    r.error_type.as_deref().unwrap_or("error"),
                    r.error.as_deref().unwrap_or("")
                ),
                Err(_) => body.chars().take(300).collect(),
            };
            return Err(Attempt {
                transient: status.is_server_error() || status.as_u16() == 429,
                error: ObserveError::Http {
                    source_name,
                    metric: metric.to_string(),
                    status: status.as_u16(),
                    message: detail,
                },
            });
        }
        let parsed = parsed.map_err(|e| Attempt {
            transient: false,
            error: ObserveError::Malformed {
                source_name: source_name.clone(),
                metric: metric.to_string(),
                message: format!("response is not the API's JSON: {e}"),
            },
        })?;
        if parsed.status != "success" {
            return Err(Attempt {
                transient: false,
                error: ObserveError::QueryFailed {
                    source_name,
                    metric: metric.to_string(),
                    message: format!(
                        "{}: {}",
                        parsed.error_type.as_deref().unwrap_or("error"),
                        parsed.error.as_deref().unwrap_or("no message")
                    ),
                },
            });
        }
        parsed.data.ok_or_else(|| Attempt {
            transient: false,
            error: ObserveError::Malformed {
                source_name,
                metric: metric.to_string(),
                message: "success without data".to_string(),
            },
        })
    }

    /// The evaluation times `[first, last]` of each chunk, so that no chunk returns more than
    /// `max_points_per_series` points per series.
    pub fn chunks(&self, start: i64, end_exclusive: i64, step: i64) -> Vec<(i64, i64)> {
        let step = step.max(1);
        let first =
            start.div_euclid(step) * step + if start.rem_euclid(step) == 0 { 0 } else { step };
        let last = (end_exclusive - 1).div_euclid(step) * step;
        let span = (self.config.max_points_per_series as i64 - 1) * step;
        let mut out = Vec::new();
        let mut from = first;
        while from <= last {
            let to = (from + span).min(last);
            out.push((from, to));
            from = to + step;
        }
        out
    }

    async fn range(&self, query: &RangeQuery) -> Result<QueryResult, ObserveError> {
        let step = query.step_seconds as i64;
        if step <= 0 || query.end <= query.start {
            return Err(ObserveError::InvalidQuery {
                source_name: self.name.clone(),
                metric: query.metric.clone(),
                message: format!(
                    "range {}..{} with step {}s",
                    query.start, query.end, query.step_seconds
                ),
            });
        }
        let mut by_target: BTreeMap<String, (BTreeMap<String, String>, MetricSeries)> =
            BTreeMap::new();
        for (from, to) in self.chunks(query.start.timestamp(), query.end.timestamp(), step) {
            let form = [
                ("query", query.promql.clone()),
                ("start", from.to_string()),
                ("end", to.to_string()),
                ("step", step.to_string()),
            ];
            let data = self
                .call("/api/v1/query_range", &form, &query.metric)
                .await?;
            if data.result_type != "matrix" {
                return Err(ObserveError::Malformed {
                    source_name: self.name.clone(),
                    metric: query.metric.clone(),
                    message: format!("expected a matrix, got {}", data.result_type),
                });
            }
            let mut seen_in_chunk = std::collections::BTreeSet::new();
            for series in data.result {
                let Some(id) = series.metric.get(&query.target_label).cloned() else {
                    tracing::warn!(source = %self.name, metric = %query.metric, labels = ?series.metric, "series without the target label {}; skipped", query.target_label);
                    continue;
                };
                if !seen_in_chunk.insert(id.clone()) {
                    let first = by_target
                        .get(&id)
                        .map(|(l, _)| l.clone())
                        .unwrap_or_default();
                    return Err(ObserveError::DuplicateSeries {
                        source_name: self.name.clone(),
                        metric: query.metric.clone(),
                        target: id,
                        labels: format!("{first:?} and {:?}", series.metric),
                    });
                }
                let entry = by_target.entry(id).or_insert_with(|| {
                    (
                        series.metric.clone(),
                        MetricSeries {
                            metric: query.metric.clone(),
                            ..MetricSeries::default()
                        },
                    )
                });
                for (t, v) in series.values {
                    let ms = (t * 1000.0).round() as i64;
                    if entry.1.timestamps_ms.last().is_some_and(|last| *last >= ms) {
                        continue;
                    }
                    let Some(value) = parse_value(&v) else {
                        return Err(ObserveError::Malformed {
                            source_name: self.name.clone(),
                            metric: query.metric.clone(),
                            message: format!("sample value {v:?} is not a number"),
                        });
                    };
                    entry.1.timestamps_ms.push(ms);
                    entry.1.values.push(value);
                }
            }
        }
        Ok(QueryResult {
            series: by_target
                .into_iter()
                .map(|(id, (_, series))| (id, series))
                .collect(),
        })
    }

    async fn find(&self, technology: &str) -> Result<Vec<Target>, ObserveError> {
        let metric = self
            .config
            .discovery_metric
            .clone()
            .unwrap_or_else(|| format!("{technology}_up"));
        let form = [("query", metric.clone())];
        let data = self.call("/api/v1/query", &form, &metric).await?;
        if data.result_type != "vector" {
            return Err(ObserveError::Malformed {
                source_name: self.name.clone(),
                metric,
                message: format!("expected a vector, got {}", data.result_type),
            });
        }
        let mut targets: BTreeMap<String, Target> = BTreeMap::new();
        for series in data.result {
            let Some(id) = series.metric.get("instance").cloned() else {
                continue;
            };
            targets.entry(id.clone()).or_insert_with(|| Target {
                id,
                technology: technology.to_string(),
                labels: series.metric.clone(),
                // Sizes are not in the metrics: the configuration's targets supply them.
                resources: Resources {
                    cpu_millicores: 0,
                    memory_bytes: 0,
                    parameters: BTreeMap::new(),
                },
            });
        }
        Ok(targets.into_values().collect())
    }
}

/// An error with its causes, each once (reqwest's top-level message is terse).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

impl MetricSource for PrometheusSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn discover<'a>(
        &'a self,
        technology: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Target>, ObserveError>> {
        Box::pin(self.find(technology))
    }

    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>> {
        Box::pin(self.range(query))
    }
}
