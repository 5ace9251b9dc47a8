//! The Prometheus-compatible source against a scripted HTTP server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use setpoint_observe::prometheus::Auth;
use setpoint_observe::{
    MetricSource, ObserveError, PrometheusConfig, PrometheusSource, RangeQuery,
};
use setpoint_test_support::{HttpFake, Request, Response, closed_port};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// The request line and the headers.
    head: String,
    body: String,
}

impl From<&Request> for Seen {
    fn from(request: &Request) -> Seen {
        let mut head = format!("{} {} HTTP/1.1", request.method, request.target);
        for (name, value) in &request.headers {
            head.push_str(&format!("\r\n{name}: {value}"));
        }
        Seen {
            head,
            body: request.text(),
        }
    }
}

type Reply = Box<dyn Fn(&Seen) -> Option<(u16, String)> + Send + Sync>;

/// A scripted server; stops when dropped.
struct Scripted(HttpFake);

impl Scripted {
    /// Every request so far, in arrival order.
    fn seen(&self) -> Vec<Seen> {
        self.0.requests().iter().map(Seen::from).collect()
    }
}

/// Serves scripted replies; `None` means never answer (for timeouts).
fn server(reply: Reply) -> (String, Scripted) {
    let fake = HttpFake::start(move |request| match reply(&Seen::from(request)) {
        Some((status, body)) => Response::raw(status, "application/json", body),
        None => Response::hang(),
    });
    (fake.url().to_string(), Scripted(fake))
}

fn form_value(body: &str, key: &str) -> String {
    body.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .map(|v| v.replace('+', " "))
        .unwrap_or_default()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn query(step: u64, days: i64) -> RangeQuery {
    let end = at("2026-11-23T06:00:00Z");
    RangeQuery {
        metric: "cpu".into(),
        promql: "1 - avg by (instance) (rate(x[5m]))".into(),
        technology: "postgres".into(),
        start: end - chrono::Duration::days(days),
        end,
        step_seconds: step,
        target_label: "instance".into(),
        weekly: None,
    }
}

/// A matrix with one sample per evaluation time of the request, for two instances.
fn matrix_for(seen: &Seen) -> String {
    let start: i64 = form_value(&seen.body, "start").parse().unwrap();
    let end: i64 = form_value(&seen.body, "end").parse().unwrap();
    let step: i64 = form_value(&seen.body, "step").parse().unwrap();
    let values: Vec<String> = (0..)
        .map(|i| start + i * step)
        .take_while(|t| *t <= end)
        .map(|t| format!("[{t},\"0.25\"]"))
        .collect();
    let values = values.join(",");
    format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"instance":"a"}},"values":[{values}]}},{{"metric":{{"instance":"b"}},"values":[{values}]}}]}}}}"#
    )
}

fn config(url: &str) -> PrometheusConfig {
    PrometheusConfig {
        timeout: Duration::from_secs(5),
        retries: 2,
        ..PrometheusConfig::new(url)
    }
}

#[tokio::test]
async fn one_request_groups_the_fleet_by_target_and_parses_special_values() {
    let (url, seen) = server(Box::new(|_| {
        Some((
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"instance":"pg-1","job":"node"},"values":[[1795400000,"0.5"],[1795400300,"NaN"]]},
                {"metric":{"instance":"pg-2"},"values":[[1795400000,"+Inf"],[1795400300.5,"-Inf"]]},
                {"metric":{"job":"no-instance"},"values":[[1795400000,"1"]]}]}}"#
                .to_string(),
        ))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let result = source.query_range(&query(300, 7)).await.unwrap();
    assert_eq!(seen.seen().len(), 1);
    assert_eq!(source.requests(), 1);
    let ids: Vec<&str> = result.series.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(ids, vec!["pg-1", "pg-2"]);
    let pg1 = &result.series[0].1;
    assert_eq!(pg1.metric, "cpu");
    assert_eq!(
        pg1.timestamps_ms,
        vec![1_795_400_000_000, 1_795_400_300_000]
    );
    assert_eq!(pg1.values[0], 0.5);
    assert!(pg1.values[1].is_nan());
    let pg2 = &result.series[1].1;
    assert_eq!(pg2.values[0], f64::INFINITY);
    assert_eq!(pg2.values[1], f64::NEG_INFINITY);
    assert_eq!(pg2.timestamps_ms[1], 1_795_400_300_500);
    let body = seen.seen()[0].body.clone();
    assert!(body.contains("query="), "{body}");
}

#[tokio::test]
async fn long_ranges_are_chunked_under_the_points_limit_without_duplicates() {
    let (url, seen) = server(Box::new(|s| Some((200, matrix_for(s)))));
    let source = PrometheusSource::new(PrometheusConfig {
        max_points_per_series: 1000,
        ..config(&url)
    })
    .unwrap();
    // 35 days at 5 minutes: 10,080 points → 11 chunks of at most 1,000.
    let result = source.query_range(&query(300, 35)).await.unwrap();
    let requests = seen.seen();
    assert_eq!(requests.len(), 11);
    for r in &requests {
        let start: i64 = form_value(&r.body, "start").parse().unwrap();
        let end: i64 = form_value(&r.body, "end").parse().unwrap();
        assert!((end - start) / 300 < 1000);
    }
    for (_, series) in &result.series {
        assert_eq!(series.timestamps_ms.len(), 10_080);
        assert!(
            series
                .timestamps_ms
                .windows(2)
                .all(|w| w[1] - w[0] == 300_000)
        );
    }
    // The default Prometheus limit takes the same range in one request.
    let (url, seen) = server(Box::new(|s| Some((200, matrix_for(s)))));
    let source = PrometheusSource::new(config(&url)).unwrap();
    source.query_range(&query(300, 35)).await.unwrap();
    assert_eq!(seen.seen().len(), 1);
}

#[tokio::test]
async fn bearer_and_basic_auth_are_sent() {
    for (auth, expected) in [
        (
            Auth::Bearer {
                token: "s3cret".into(),
            },
            "authorization: bearer s3cret",
        ),
        (
            Auth::Basic {
                username: "ops".into(),
                password: "pw".into(),
            },
            "authorization: basic b3bzonb3",
        ),
    ] {
        let (url, seen) = server(Box::new(|s| Some((200, matrix_for(s)))));
        let source = PrometheusSource::new(PrometheusConfig {
            auth: Some(auth),
            ..config(&url)
        })
        .unwrap();
        source.query_range(&query(300, 1)).await.unwrap();
        let head = seen.seen()[0].head.to_ascii_lowercase();
        assert!(head.contains(expected), "{head}");
    }
}

#[tokio::test]
async fn a_client_error_is_not_retried_and_carries_the_server_message() {
    let (url, seen) = server(Box::new(|_| {
        Some((
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#.into(),
        ))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let error = source.query_range(&query(300, 1)).await.unwrap_err();
    assert_eq!(seen.seen().len(), 1);
    assert!(
        matches!(error, ObserveError::Http { status: 400, .. }),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("parse error at char 3") && text.contains("\"cpu\""),
        "{text}"
    );
}

#[tokio::test]
async fn a_server_error_is_retried_then_reported() {
    let (url, seen) = server(Box::new(|_| Some((503, "overloaded".into()))));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let error = source.query_range(&query(300, 1)).await.unwrap_err();
    assert_eq!(seen.seen().len(), 3, "1 try + 2 retries");
    assert!(
        matches!(error, ObserveError::Http { status: 503, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_that_recovers_is_used() {
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    let (url, _server) = server(Box::new(move |s| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n == 1 {
            Some((502, "bad gateway".into()))
        } else {
            Some((200, matrix_for(s)))
        }
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let result = source.query_range(&query(300, 1)).await.unwrap();
    assert_eq!(result.series.len(), 2);
}

#[tokio::test]
async fn malformed_json_and_query_errors_are_named() {
    let (url, _server) = server(Box::new(|_| Some((200, "{not json".into()))));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let error = source.query_range(&query(300, 1)).await.unwrap_err();
    assert!(matches!(error, ObserveError::Malformed { .. }), "{error}");

    let (url, _server) = server(Box::new(|_| {
        Some((
            200,
            r#"{"status":"error","errorType":"execution","error":"too many samples"}"#.into(),
        ))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let error = source.query_range(&query(300, 1)).await.unwrap_err();
    assert!(matches!(error, ObserveError::QueryFailed { .. }), "{error}");
    assert!(error.to_string().contains("too many samples"), "{error}");

    let (url, _server) = server(Box::new(|_| {
        Some((
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
        ))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let error = source.query_range(&query(300, 1)).await.unwrap_err();
    assert!(error.to_string().contains("expected a matrix"), "{error}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let (url, seen) = server(Box::new(|_| None));
    let source = PrometheusSource::new(PrometheusConfig {
        timeout: Duration::from_millis(300),
        retries: 1,
        ..PrometheusConfig::new(&url)
    })
    .unwrap();
    let error = source.query_range(&query(300, 1)).await.unwrap_err();
    assert!(matches!(error, ObserveError::Timeout { .. }), "{error}");
    assert_eq!(seen.seen().len(), 2);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let url = format!("http://{}", closed_port());
    let source = PrometheusSource::new(PrometheusConfig {
        retries: 1,
        ..config(&url)
    })
    .unwrap();
    let error = source.query_range(&query(300, 1)).await.unwrap_err();
    assert!(matches!(error, ObserveError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains(&url), "{error}");
}

#[tokio::test]
async fn two_series_for_one_target_drop_only_that_target() {
    let (url, _server) = server(Box::new(|_| {
        Some((
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{"instance":"pg-1","cpu":"0"},"values":[[1795400000,"0.5"]]},
                {"metric":{"instance":"pg-2"},"values":[[1795400000,"0.6"]]},
                {"metric":{"instance":"pg-1","cpu":"1"},"values":[[1795400000,"0.7"]]}]}}"#
                .into(),
        ))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let result = source.query_range(&query(300, 1)).await.unwrap();
    let ids: Vec<&str> = result.series.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["pg-2"], "the rest of the fleet keeps the metric");
    assert_eq!(result.problems.len(), 1);
    assert_eq!(result.problems[0].0, "pg-1");
    assert!(
        result.problems[0].1.contains("aggregate by instance"),
        "{:?}",
        result.problems
    );
}

#[tokio::test]
async fn discovery_lists_the_instances_of_the_up_metric() {
    let (url, seen) = server(Box::new(|_| {
        Some((
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"__name__":"pg_up","instance":"db-2:9187","job":"postgres"},"value":[1795400000,"1"]},
                {"metric":{"__name__":"pg_up","instance":"db-1:9187","job":"postgres"},"value":[1795400000,"0"]}]}}"#
                .into(),
        ))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let targets = source.discover("pg").await.unwrap();
    let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["db-1:9187", "db-2:9187"]);
    assert_eq!(targets[0].technology, "pg");
    assert_eq!(form_value(&seen.seen()[0].body, "query"), "pg_up");
}

#[test]
fn bad_settings_are_refused() {
    let error = PrometheusSource::new(PrometheusConfig::new("localhost:9090")).unwrap_err();
    assert!(error.to_string().contains("http://"), "{error}");
    let error = PrometheusSource::new(PrometheusConfig {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..PrometheusConfig::new("https://127.0.0.1:1")
    })
    .unwrap_err();
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
}

#[tokio::test]
async fn weekly_summaries_are_one_request_with_aggregate_and_count_per_week() {
    use setpoint_core::Aggregation;
    use setpoint_observe::WeeklySummary;

    let end = at("2026-11-23T06:00:00Z").timestamp();
    let week = 7 * 24 * 3600;
    let (url, seen) = server(Box::new(move |seen| {
        // Two weeks evaluated 1 ms before their ends: W-2 and W-1.
        let t2 = format!("{}.999", end - week - 1);
        let t1 = format!("{}.999", end - 1);
        Some((
            200,
            format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[
                {{"metric":{{"instance":"a","setpoint_stat":"value"}},"values":[[{t2},"0.25"],[{t1},"0.5"]]}},
                {{"metric":{{"instance":"a","setpoint_stat":"count"}},"values":[[{t2},"2016"],[{t1},"1008"]]}},
                {{"metric":{{"instance":"b","setpoint_stat":"value"}},"values":[[{t1},"NaN"]]}},
                {{"metric":{{"instance":"b","setpoint_stat":"count"}},"values":[[{t1},"3"]]}},
                {{"metric":{{"instance":"c","setpoint_stat":"count"}},"values":[[{t1},"5"]]}}]}}}}"#
            ),
        ))
        .filter(|_| seen.head.contains("/api/v1/query_range"))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    assert!(source.summarises_weekly());
    let q = RangeQuery {
        weekly: Some(WeeklySummary {
            aggregation: Aggregation::Mean,
            weeks: 2,
            counted: true,
        }),
        ..query(300, 21)
    };
    let result = source.query_range(&q).await.unwrap();

    let requests = seen.seen();
    assert_eq!(requests.len(), 1, "one request for the fleet");
    let body = &requests[0].body;
    let promql = urlencoding_decode(&form_value(body, "query"));
    assert!(
        promql.contains(
            "avg_over_time(((1 - avg by (instance) (rate(x[5m]))) > -Inf < +Inf)[1w:300s])"
        ),
        "{promql}"
    );
    assert!(promql.contains("count_over_time("), "{promql}");
    assert_eq!(form_value(body, "step"), "604800");
    assert_eq!(form_value(body, "start"), format!("{}.999", end - week - 1));
    assert_eq!(form_value(body, "end"), format!("{}.999", end - 1));
    assert_eq!(form_value(body, "nocache"), "1");

    let ids: Vec<&str> = result.series.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a"], "a NaN aggregate or a count alone is no data");
    let a = &result.series[0].1;
    assert_eq!(
        a.timestamps_ms,
        [(end - week) * 1000, end * 1000],
        "stamped with the weeks' ends"
    );
    assert_eq!(a.values, [0.25, 0.5]);
    assert_eq!(a.sample_counts.as_deref(), Some(&[2016, 1008][..]));
}

#[tokio::test]
async fn an_uncounted_weekly_summary_asks_for_the_aggregate_alone() {
    use setpoint_core::Aggregation;
    use setpoint_observe::WeeklySummary;

    let end = at("2026-11-23T06:00:00Z").timestamp();
    let (url, seen) = server(Box::new(move |seen| {
        let t1 = format!("{}.999", end - 1);
        Some((
            200,
            format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[
                {{"metric":{{"instance":"a","setpoint_stat":"value"}},"values":[[{t1},"0.75"]]}},
                {{"metric":{{"instance":"b","setpoint_stat":"value"}},"values":[[{t1},"+Inf"]]}}]}}}}"#
            ),
        ))
        .filter(|_| seen.head.contains("/api/v1/query_range"))
    }));
    let source = PrometheusSource::new(config(&url)).unwrap();
    let q = RangeQuery {
        weekly: Some(WeeklySummary {
            aggregation: Aggregation::P99,
            weeks: 1,
            counted: false,
        }),
        ..query(300, 21)
    };
    let result = source.query_range(&q).await.unwrap();
    let promql = urlencoding_decode(&form_value(&seen.seen()[0].body, "query"));
    assert!(promql.contains("quantile_over_time(0.99, "), "{promql}");
    // Counting is another pass over every sample: the caller has the counts already.
    assert!(!promql.contains("count_over_time("), "{promql}");
    let ids: Vec<&str> = result.series.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a"], "an infinite aggregate is no data");
    assert_eq!(result.series[0].1.values, [0.75]);
    assert_eq!(result.series[0].1.sample_counts, None);
}

#[tokio::test]
async fn weekly_summaries_can_be_turned_off() {
    use setpoint_core::Aggregation;
    use setpoint_observe::WeeklySummary;

    let (url, seen) = server(Box::new(|seen| Some((200, matrix_for(seen)))));
    let source = PrometheusSource::new(PrometheusConfig {
        summarise_weekly: false,
        ..config(&url)
    })
    .unwrap();
    assert!(!source.summarises_weekly());
    let q = RangeQuery {
        weekly: Some(WeeklySummary {
            aggregation: Aggregation::Mean,
            weeks: 1,
            counted: true,
        }),
        ..query(300, 1)
    };
    let result = source.query_range(&q).await.unwrap();
    assert_eq!(result.series[0].1.sample_counts, None, "raw samples");
    assert_eq!(result.series[0].1.values.len(), 288);
    let body = &seen.seen()[0].body;
    assert_eq!(form_value(body, "step"), "300");
}

/// Decodes the `%XX` escapes of a form value.
fn urlencoding_decode(text: &str) -> String {
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
