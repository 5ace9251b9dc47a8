//! A closed-loop HTTP load generator: `concurrency` clients each sending the next request as
//! soon as the last one is answered, for a fixed number of requests, on loopback. For the
//! review page's load test and its benchmark.

use std::time::{Duration, Instant};

/// What a load run saw.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Requests answered with a success status.
    pub ok: usize,
    /// Requests that failed or were answered with another status, with the first failure.
    pub failed: usize,
    /// The first failure, if any.
    pub first_failure: Option<String>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Each successful request's latency, sorted.
    pub latencies: Vec<Duration>,
    /// The body of one successful answer (to check what was served).
    pub sample: String,
}

impl LoadReport {
    /// Successful requests per second.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The latency at quantile `q` (0–1) of the successful requests.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index =
            ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len()) - 1;
        self.latencies[index]
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok, {} failed in {:.2} s: {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.quantile(0.5).as_secs_f64() * 1e3,
            self.quantile(0.99).as_secs_f64() * 1e3,
            self.quantile(1.0).as_secs_f64() * 1e3,
        )
    }
}

/// Sends `requests` GETs of `url` with these headers from `concurrency` keep-alive clients.
pub async fn run(
    url: &str,
    headers: &[(&str, &str)],
    concurrency: usize,
    requests: usize,
) -> LoadReport {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        map.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(map)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let next = next.clone();
        let url = url.to_string();
        workers.spawn(async move {
            let mut seen = (Vec::new(), 0usize, None::<String>, String::new());
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let sent = Instant::now();
                match client.get(&url).send().await {
                    Ok(response) if response.status().is_success() => match response.text().await {
                        Ok(body) => {
                            seen.0.push(sent.elapsed());
                            if seen.3.is_empty() {
                                seen.3 = body;
                            }
                        }
                        Err(error) => {
                            seen.1 += 1;
                            seen.2.get_or_insert(error.to_string());
                        }
                    },
                    Ok(response) => {
                        seen.1 += 1;
                        seen.2
                            .get_or_insert(format!("status {}", response.status()));
                    }
                    Err(error) => {
                        seen.1 += 1;
                        seen.2.get_or_insert(error.to_string());
                    }
                }
            }
            seen
        });
    }
    let mut report = LoadReport {
        ok: 0,
        failed: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        sample: String::new(),
    };
    while let Some(joined) = workers.join_next().await {
        let (latencies, failed, failure, sample) = joined.unwrap();
        report.ok += latencies.len();
        report.latencies.extend(latencies);
        report.failed += failed;
        if report.first_failure.is_none() {
            report.first_failure = failure;
        }
        if report.sample.is_empty() {
            report.sample = sample;
        }
    }
    report.elapsed = started.elapsed();
    report.latencies.sort();
    report
}
