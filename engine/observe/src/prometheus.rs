//! A Prometheus-compatible metric source: Prometheus, VictoriaMetrics, Thanos, Mimir.
//!
//! One `query_range` request per metric covers the whole fleet (the plugin's PromQL groups by
//! the target label), split into chunks only where the server's points-per-series limit
//! demands it (11,000 on Prometheus, 30,000 on VictoriaMetrics). Transient failures (connection,
//! timeout, 5xx, 429) are retried with jittered exponential backoff within an overall deadline;
//! a 4xx is the query's fault and is not. Every error names the server and the metric, so a
//! degraded cycle says what failed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use setpoint_core::{MetricSeries, Resources, Target};

use setpoint_core::Aggregation;
use setpoint_retry::RetryPolicy;

use setpoint_secret::Secret;

use crate::{
    BoxFuture, MetricSource, ObserveError, QueryResult, RangeQuery, WEEK_MS, WeeklySummary,
};

/// How to authenticate to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
}

/// Connection settings of a Prometheus-compatible source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090` (VictoriaMetrics: its HTTP address). A password
    /// in it (`https://user:pass@host`) is taken as basic authentication and never shown;
    /// with `auth:` set too, the source is refused.
    #[serde(serialize_with = "show_url")]
    pub url: String,
    /// Timeout of one HTTP request. A query with its retries is given at most
    /// `(timeout + 100ms) × (retries + 1)` plus the backoffs between them (200 ms doubling up
    /// to 5 s), so a server that hangs costs a known time.
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
    /// Summarise each metric per week in the TSDB (`avg_over_time((q)[1w:5m])` and a sample
    /// count), so a target brings a few numbers instead of thousands of samples. Turn off only
    /// for a backend without subqueries; raw samples are then fetched and summarised here.
    #[serde(default = "default_true")]
    pub summarise_weekly: bool,
    /// The largest answer one request may bring, in bytes (default 64 MiB): a larger one is
    /// refused as it streams in, never read whole into memory.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_true() -> bool {
    true
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
fn default_max_response_bytes() -> u64 {
    64 << 20
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

fn show_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&setpoint_secret::redact_url(url))
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
            summarise_weekly: true,
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

/// How a query is retried: backoff doubling from 200 ms up to 5 s, `retries` retries, and a
/// deadline of what those attempts and waits may take at most.
fn retry_policy(config: &PrometheusConfig) -> RetryPolicy {
    RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(5), 1)
        .with_retries(config.retries)
        .with_request_deadline(config.timeout)
}

/// A Prometheus-compatible source.
#[derive(Debug)]
pub struct PrometheusSource {
    name: String,
    base: String,
    config: PrometheusConfig,
    client: reqwest::Client,
    retry: RetryPolicy,
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

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
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
    pub fn new(mut config: PrometheusConfig) -> Result<Self, ObserveError> {
        let (bare, credentials) = setpoint_secret::split_url_credentials(&config.url);
        let base = bare.trim_end_matches('/').to_string();
        let name = format!("prometheus({base})");
        if let Some((username, password)) = credentials {
            if config.auth.is_some() {
                return Err(ObserveError::InvalidQuery {
                    source_name: name,
                    metric: String::new(),
                    message: "the url carries credentials and `auth:` is set too: keep one \
                              (`auth: {kind: basic, ...}` keeps the password out of the URL)"
                        .to_string(),
                });
            }
            config.auth = Some(Auth::Basic { username, password });
            config.url = bare;
        }
        let invalid = |message: String| ObserveError::InvalidQuery {
            source_name: name.clone(),
            metric: String::new(),
            message,
        };
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid(format!(
                "url {:?} must start with http:// or https://",
                setpoint_secret::redact_url(&config.url)
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
            retry: retry_policy(&config),
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
        let what = format!("{}: query for {metric:?}", self.name);
        let outcome = self
            .retry
            .run(
                &what,
                || self.call_once(path, form, metric),
                |failed: &Attempt| failed.transient,
            )
            .await;
        match outcome {
            Ok((data, _)) => Ok(data),
            Err(setpoint_retry::Error::Failed { error, .. }) => Err(error.error),
            Err(setpoint_retry::Error::DeadlineExceeded { deadline, .. }) => {
                Err(ObserveError::Timeout {
                    source_name: self.name.clone(),
                    metric: metric.to_string(),
                    timeout: deadline,
                })
            }
        }
    }

    /// What a failed request or body read was: a timeout, or the server out of reach.
    fn transport_error(&self, e: &reqwest::Error, metric: &str) -> ObserveError {
        if e.is_timeout() {
            ObserveError::Timeout {
                source_name: self.name.clone(),
                metric: metric.to_string(),
                timeout: self.config.timeout,
            }
        } else {
            ObserveError::Unreachable {
                source_name: self.name.clone(),
                metric: metric.to_string(),
                message: error_chain(e),
            }
        }
    }

    /// The body of `response`, refused as soon as it is known to exceed
    /// `max_response_bytes` (its declared length, or what has streamed in).
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        metric: &str,
    ) -> Result<String, Attempt> {
        let limit = self.config.max_response_bytes;
        let too_large = || Attempt {
            transient: false,
            error: ObserveError::TooLarge {
                source_name: self.name.clone(),
                metric: metric.to_string(),
                limit,
            },
        };
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Attempt {
                        transient: e.is_timeout(),
                        error: self.transport_error(&e, metric),
                    });
                }
            }
        }
        String::from_utf8(body).map_err(|_| Attempt {
            transient: false,
            error: ObserveError::Malformed {
                source_name: self.name.clone(),
                metric: metric.to_string(),
                message: "the answer is not UTF-8".to_string(),
            },
        })
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
            Some(Auth::Bearer { token }) => request.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            None => request,
        };
        let response = request.send().await.map_err(|e| Attempt {
            error: self.transport_error(&e, metric),
            transient: true,
        })?;
        let status = response.status();
        let body = self.read_body(response, metric).await?;
        self.decode(status, &body, metric)
    }

    /// The data of an answer with HTTP status `status` and body `body`, or why there is none
    /// and whether asking again may help.
    fn decode(
        &self,
        status: reqwest::StatusCode,
        body: &str,
        metric: &str,
    ) -> Result<ApiData, Attempt> {
        let source_name = self.name.clone();
        let parsed: Result<ApiResponse, _> = serde_json::from_str(body);
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
        match query.weekly {
            Some(summary) if self.config.summarise_weekly => self.weekly(query, summary).await,
            _ => self.raw(query).await,
        }
    }

    /// Raw samples at the query's step, chunked under the points-per-series limit.
    async fn raw(&self, query: &RangeQuery) -> Result<QueryResult, ObserveError> {
        let step = query.step_seconds as i64;
        let mut rows = Rows::default();
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
            self.add_chunk(&mut rows, data, query)?;
        }
        Ok(rows.finish())
    }

    /// Adds one chunk's raw samples to `rows`.
    fn add_chunk(
        &self,
        rows: &mut Rows,
        data: ApiData,
        query: &RangeQuery,
    ) -> Result<(), ObserveError> {
        let mut seen_in_chunk = std::collections::BTreeSet::new();
        for series in self.matrix(data, query)? {
            let Some(id) = series.metric.get(&query.target_label).cloned() else {
                continue;
            };
            if !seen_in_chunk.insert(id.clone()) {
                rows.ambiguous(&id, &series.metric, query);
                continue;
            }
            let entry = rows.entry(&id, &series.metric, &query.metric);
            for (t, v) in &series.values {
                let ms = (t * 1000.0).round() as i64;
                if entry.timestamps_ms.last().is_some_and(|last| *last >= ms) {
                    continue;
                }
                let value = self.value(v, query)?;
                entry.timestamps_ms.push(ms);
                entry.values.push(value);
            }
        }
        Ok(())
    }

    /// One point per week, summarised in the TSDB by a subquery at the query's step: the
    /// aggregate and the count of finite samples come back in one request, told apart by a
    /// label, so that the fleet still costs one range query per metric.
    async fn weekly(
        &self,
        query: &RangeQuery,
        summary: WeeklySummary,
    ) -> Result<QueryResult, ObserveError> {
        let step = query.step_seconds;
        if summary.weeks == 0 {
            return Err(ObserveError::InvalidQuery {
                source_name: self.name.clone(),
                metric: query.metric.clone(),
                message: "a weekly summary needs at least one week".to_string(),
            });
        }
        let end_ms = query.end.timestamp_millis();
        // PromQL windows are (t - 1w, t]; evaluating 1 ms before the end makes them
        // [end - 1w, end) at millisecond resolution, the weeks the plugin means.
        let last_eval = end_ms - 1;
        let first_eval = last_eval - i64::from(summary.weeks - 1) * WEEK_MS;
        let form = [
            (
                "query",
                weekly_promql(&query.promql, summary.aggregation, step, summary.counted),
            ),
            ("start", seconds(first_eval)),
            ("end", seconds(last_eval)),
            ("step", (WEEK_MS / 1000).to_string()),
            // VictoriaMetrics otherwise aligns start and end to the step (whole weeks since
            // the epoch) for its cache, which would move the weeks.
            ("nocache", "1".to_string()),
        ];
        let data = self
            .call("/api/v1/query_range", &form, &query.metric)
            .await?;
        self.summarise(data, query, summary)
    }

    /// The weekly points of a summarising answer, the last evaluated 1 ms before the query's end.
    fn summarise(
        &self,
        data: ApiData,
        query: &RangeQuery,
        summary: WeeklySummary,
    ) -> Result<QueryResult, ObserveError> {
        let end_ms = query.end.timestamp_millis();
        let last_eval = end_ms - 1;
        // target → week index (0 = W-1) → its aggregate and count
        let mut weeks: BTreeMap<String, BTreeMap<i64, WeekPoint>> = BTreeMap::new();
        let mut rows = Rows::default();
        let mut seen = std::collections::BTreeSet::new();
        for series in self.matrix(data, query)? {
            let Some(id) = series.metric.get(&query.target_label).cloned() else {
                continue;
            };
            let stat = series.metric.get(STAT_LABEL).map(String::as_str);
            let is_count = match stat {
                Some("count") => true,
                Some("value") => false,
                _ => {
                    return Err(ObserveError::Malformed {
                        source_name: self.name.clone(),
                        metric: query.metric.clone(),
                        message: format!(
                            "weekly summary series without a {STAT_LABEL} label: {:?}",
                            series.metric
                        ),
                    });
                }
            };
            if !seen.insert((id.clone(), is_count)) {
                rows.ambiguous(&id, &series.metric, query);
                continue;
            }
            let target = weeks.entry(id).or_default();
            for (t, v) in &series.values {
                let ms = (t * 1000.0).round() as i64;
                // A timestamp far outside any week (the cast saturates) must not overflow:
                // it lands out of range and is skipped.
                let back = (last_eval.saturating_sub(ms) as f64 / WEEK_MS as f64).round() as i64;
                if !(0..i64::from(summary.weeks)).contains(&back) {
                    continue;
                }
                let value = self.value(v, query)?;
                let slot = target.entry(back).or_default();
                if is_count {
                    slot.1 = Some(value.max(0.0).min(f64::from(u32::MAX)) as u32);
                } else {
                    slot.0 = Some(value);
                }
            }
        }
        for (id, by_week) in weeks {
            if rows.is_ambiguous(&id) {
                continue;
            }
            let mut series = MetricSeries {
                metric: query.metric.clone(),
                sample_counts: summary.counted.then(Vec::new),
                ..MetricSeries::default()
            };
            // Oldest first.
            for (back, (value, count)) in by_week.into_iter().rev() {
                // Uncounted, a week with no samples has no aggregate either.
                let count = if summary.counted { count } else { Some(1) };
                let (Some(value), Some(count)) = (value, count) else {
                    continue;
                };
                if count == 0 || !value.is_finite() {
                    continue;
                }
                series.timestamps_ms.push(end_ms - back * WEEK_MS);
                series.values.push(value);
                if let Some(counts) = series.sample_counts.as_mut() {
                    counts.push(count);
                }
            }
            if !series.values.is_empty() {
                rows.series.insert(id, (BTreeMap::new(), series));
            }
        }
        Ok(rows.finish())
    }

    /// The series of a `matrix` answer.
    fn matrix(&self, data: ApiData, query: &RangeQuery) -> Result<Vec<ApiSeries>, ObserveError> {
        if data.result_type != "matrix" {
            return Err(ObserveError::Malformed {
                source_name: self.name.clone(),
                metric: query.metric.clone(),
                message: format!("expected a matrix, got {}", data.result_type),
            });
        }
        let (with, without): (Vec<_>, Vec<_>) = data
            .result
            .into_iter()
            .partition(|s| s.metric.contains_key(&query.target_label));
        if !without.is_empty() {
            tracing::warn!(source = %self.name, metric = %query.metric, series = without.len(), example = ?without[0].metric, "series without the target label {}; skipped", query.target_label);
        }
        Ok(with)
    }

    /// What [`MetricSource::query_range`] makes of one `query_range` answer to `query`, given
    /// its HTTP status and body, as if the whole range came in one chunk: the response decoder
    /// without a server or retries, for the fuzz targets in `fuzz/`. Not part of the API.
    #[doc(hidden)]
    pub fn decode_range_answer(
        &self,
        status: reqwest::StatusCode,
        body: &str,
        query: &RangeQuery,
    ) -> Result<QueryResult, ObserveError> {
        let data = self
            .decode(status, body, &query.metric)
            .map_err(|failed| failed.error)?;
        match query.weekly {
            Some(summary) if self.config.summarise_weekly => self.summarise(data, query, summary),
            _ => {
                let mut rows = Rows::default();
                self.add_chunk(&mut rows, data, query)?;
                Ok(rows.finish())
            }
        }
    }

    /// A sample value as the API writes it.
    fn value(&self, text: &str, query: &RangeQuery) -> Result<f64, ObserveError> {
        parse_value(text).ok_or_else(|| ObserveError::Malformed {
            source_name: self.name.clone(),
            metric: query.metric.clone(),
            message: format!("sample value {text:?} is not a number"),
        })
    }

    async fn find(&self, technology: &str) -> Result<Vec<Target>, ObserveError> {
        let metric = self
            .config
            .discovery_metric
            .clone()
            .unwrap_or_else(|| default_discovery_metric(technology));
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
                    replicas: 1,
                    parameters: BTreeMap::new(),
                },
            });
        }
        Ok(targets.into_values().collect())
    }
}

/// The label that tells a weekly summary's aggregate from its sample count.
const STAT_LABEL: &str = "setpoint_stat";

/// The PromQL that summarises `promql` per week at `step_seconds` resolution: the aggregate and,
/// when `counted`, the count of finite samples (NaN and ±Inf filtered out first, as the plugin
/// would).
pub fn weekly_promql(
    promql: &str,
    aggregation: Aggregation,
    step_seconds: u64,
    counted: bool,
) -> String {
    let finite = format!("(({promql}) > -Inf < +Inf)[1w:{step_seconds}s]");
    let aggregate = match aggregation {
        Aggregation::Mean => format!("avg_over_time({finite})"),
        Aggregation::Max => format!("max_over_time({finite})"),
        Aggregation::P95 => format!("quantile_over_time(0.95, {finite})"),
        Aggregation::P99 => format!("quantile_over_time(0.99, {finite})"),
        Aggregation::MaxHourlyMean => format!(
            "max_over_time(avg_over_time((({promql}) > -Inf < +Inf)[1h:{step_seconds}s])[1w:1h])"
        ),
        Aggregation::ShareAtLeast(level) => format!(
            "avg_over_time(((({promql}) > -Inf < +Inf) >= bool {level})[1w:{step_seconds}s])"
        ),
    };
    let value = format!(r#"label_replace({aggregate}, "{STAT_LABEL}", "value", "", "")"#);
    if counted {
        format!(
            r#"{value} or label_replace(count_over_time({finite}), "{STAT_LABEL}", "count", "", "")"#
        )
    } else {
        value
    }
}

/// One week of one target as the two halves of a weekly summary bring it.
type WeekPoint = (Option<f64>, Option<u32>);

/// Milliseconds since the epoch as the API's decimal seconds.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// Series being collected per target, and the targets that had to be dropped.
#[derive(Default)]
struct Rows {
    series: BTreeMap<String, (BTreeMap<String, String>, MetricSeries)>,
    problems: BTreeMap<String, String>,
}

impl Rows {
    fn entry(
        &mut self,
        id: &str,
        labels: &BTreeMap<String, String>,
        metric: &str,
    ) -> &mut MetricSeries {
        &mut self
            .series
            .entry(id.to_string())
            .or_insert_with(|| {
                (
                    labels.clone(),
                    MetricSeries {
                        metric: metric.to_string(),
                        ..MetricSeries::default()
                    },
                )
            })
            .1
    }

    /// Two series name one target: joining them would mix two different things, so the target
    /// loses this metric (and says why) while the rest of the fleet keeps it.
    fn ambiguous(&mut self, id: &str, labels: &BTreeMap<String, String>, query: &RangeQuery) {
        let first = self
            .series
            .remove(id)
            .map(|(l, _)| format!("{l:?} and "))
            .unwrap_or_default();
        self.problems.entry(id.to_string()).or_insert_with(|| {
            format!(
                "several series of {:?} name this target ({first}{labels:?}); make the query aggregate by {}",
                query.metric, query.target_label
            )
        });
    }

    fn is_ambiguous(&self, id: &str) -> bool {
        self.problems.contains_key(id)
    }

    fn finish(self) -> QueryResult {
        let problems = self.problems;
        QueryResult {
            series: self
                .series
                .into_iter()
                .filter(|(id, _)| !problems.contains_key(id))
                .map(|(id, (_, series))| (id, series))
                .collect(),
            problems: problems.into_iter().collect(),
        }
    }
}

/// The `up` metric each technology's usual exporter emits.
fn default_discovery_metric(technology: &str) -> String {
    match technology {
        "postgres" => "pg_up".to_string(),
        other => format!("{other}_up"),
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

    fn summarises_weekly(&self) -> bool {
        self.config.summarise_weekly
    }

    fn query_range<'a>(
        &'a self,
        query: &'a RangeQuery,
    ) -> BoxFuture<'a, Result<QueryResult, ObserveError>> {
        Box::pin(self.range(query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_with_its_retries_is_bounded_by_what_the_config_allows() {
        let policy = retry_policy(&PrometheusConfig::new("http://127.0.0.1:9090"));
        assert_eq!(policy.max_attempts, 4, "1 try + 3 retries");
        // 30.1 s for each of the 4 attempts, and waits of at most 200, 400 and 800 ms.
        assert_eq!(policy.deadline, Some(Duration::from_millis(121_800)));

        let mut config = PrometheusConfig::new("http://127.0.0.1:9090");
        config.retries = 0;
        config.timeout = Duration::from_secs(2);
        assert_eq!(
            retry_policy(&config).deadline,
            Some(Duration::from_millis(2_100))
        );
    }

    /// Shown by the `prometheus` fuzz target (seed `weekly-timestamp-overflow.json`): a sample
    /// stamped -1e300 s saturated to `i64::MIN` ms and overflowed the week arithmetic (a panic
    /// where overflow checks are on, as in debug builds).
    #[test]
    fn a_weekly_sample_stamped_far_outside_the_weeks_is_skipped_not_overflowed() {
        #![allow(clippy::unwrap_used)]
        let source = PrometheusSource::new(PrometheusConfig::new("http://127.0.0.1:9")).unwrap();
        let end = chrono::DateTime::from_timestamp(1_748_822_400, 0).unwrap();
        let query = RangeQuery {
            metric: "cpu".into(),
            promql: "cpu".into(),
            technology: "postgres".into(),
            start: end - chrono::Duration::weeks(4),
            end,
            step_seconds: 300,
            target_label: "instance".into(),
            weekly: Some(WeeklySummary {
                aggregation: Aggregation::Mean,
                weeks: 4,
                counted: false,
            }),
        };
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"instance":"a","setpoint_stat":"value"},"values":[[-1e300,"1"],[1e300,"2"]]}]}}"#;
        let result = source
            .decode_range_answer(reqwest::StatusCode::OK, body, &query)
            .unwrap();
        assert!(result.series.is_empty(), "{result:?}");
        assert!(result.problems.is_empty(), "{result:?}");
    }
}
