//! OpenTelemetry traces of every cycle: `setpoint run --once` over the quickstart with an OTLP
//! endpoint configured delivers, to a receiver inside the test that decodes the protobuf
//! `ExportTraceServiceRequest`s, one trace per cycle whose spans carry the attributes a person
//! filters on.

use std::collections::{BTreeMap, BTreeSet};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::setpoint_binary;
use setpoint_test_support::HttpFake;

/// A span's attribute as text (strings, booleans and numbers alike).
fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            Any::StringValue(s) => s.clone(),
            Any::BoolValue(b) => b.to_string(),
            Any::IntValue(i) => i.to_string(),
            Any::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

/// Every span the receiver got, with the service name of its resource.
fn received_spans(receiver: &HttpFake) -> Vec<(String, Span)> {
    let mut spans = Vec::new();
    for request in receiver.requests() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path(), "/v1/traces");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        let export = ExportTraceServiceRequest::decode(request.body.as_slice())
            .expect("an OTLP ExportTraceServiceRequest");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Any::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }
    spans
}

fn run_quickstart(config: &str, env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("setpoint.yaml");
    std::fs::write(&path, config).unwrap();
    let mut command = std::process::Command::new(setpoint_binary());
    command
        .arg("--config")
        .arg(&path)
        .args(["run", "--once", "--now", "2026-11-23T06:00:00Z"])
        .env_remove("RUST_LOG");
    for name in [
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_SERVICE_NAME",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The SDK reports a failed export on stderr; every export must have been accepted.
    assert!(!stderr.contains("ExportError"), "{stderr}");
    output
}

#[test]
fn otel_every_cycle_is_one_trace_with_filterable_attributes() {
    let receiver = HttpFake::start(|_| (200, json!({})));
    run_quickstart(
        &format!(
            "state_dir: ./state\n\
             telemetry:\n  service_name: setpoint-test\n  otlp:\n    endpoint: {}\n\
             \x20   protocol: http/protobuf\n    headers: {{ x-tenant: ops }}\n    timeout: 5s\n",
            receiver.url()
        ),
        &[],
    );
    let requests = receiver.requests();
    assert!(!requests.is_empty(), "no OTLP export arrived");
    assert!(
        requests.iter().all(|r| r.header("x-tenant") == Some("ops")),
        "the configured header is sent"
    );
    let spans = received_spans(&receiver);
    assert!(spans.iter().all(|(service, _)| service == "setpoint-test"));
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();

    // One trace per cycle: the quickstart has four loops, so four cycles, each the root of
    // its own trace.
    let cycles: Vec<&Span> = spans.iter().filter(|s| s.name == "cycle").collect();
    assert_eq!(cycles.len(), 4, "one cycle span per loop");
    let traces: BTreeSet<&[u8]> = spans.iter().map(|s| s.trace_id.as_slice()).collect();
    assert_eq!(traces.len(), 4, "one trace per cycle");
    let mut loops = BTreeSet::new();
    for cycle in &cycles {
        assert!(cycle.parent_span_id.is_empty(), "the cycle span is a root");
        loops.insert(attr(cycle, "setpoint.loop_name").unwrap());
        assert_eq!(attr(cycle, "setpoint.mode").as_deref(), Some("dry-run"));
        assert_eq!(attr(cycle, "setpoint.dry_run").as_deref(), Some("true"));
        assert!(attr(cycle, "setpoint.cycle").is_some());
        let targets: usize = attr(cycle, "setpoint.targets").unwrap().parse().unwrap();
        let target_spans = spans
            .iter()
            .filter(|s| s.name == "target" && s.parent_span_id == cycle.span_id)
            .count();
        assert!(targets > 0);
        assert_eq!(target_spans, targets, "one target span per target");
    }
    assert_eq!(loops.len(), 4, "{loops:?}");

    // Every span belongs to a cycle's trace.
    let cycle_traces: BTreeSet<&[u8]> = cycles.iter().map(|s| s.trace_id.as_slice()).collect();
    assert_eq!(traces, cycle_traces);

    let by_id: BTreeMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let children = |parent: &Span| -> Vec<String> {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id)
            .map(|s| s.name.clone())
            .collect()
    };
    // Fleet-wide stages hang off the cycle: discovery and one observe span per metric.
    for cycle in &cycles {
        let names = children(cycle);
        assert!(names.iter().any(|n| n == "discover"), "{names:?}");
        assert!(names.iter().any(|n| n == "observe"), "{names:?}");
    }

    let targets: Vec<&Span> = spans.iter().filter(|s| s.name == "target").collect();
    let mut bundles = BTreeSet::new();
    for span in &targets {
        let parent = by_id[span.parent_span_id.as_slice()];
        assert_eq!(parent.name, "cycle");
        assert_eq!(parent.trace_id, span.trace_id);
        for key in [
            "setpoint.target",
            "setpoint.technology",
            "setpoint.class",
            "setpoint.confidence",
            "setpoint.model",
            "setpoint.model_version",
            "setpoint.verdict",
            "setpoint.reason_codes",
            "setpoint.dry_run",
            "setpoint.policy_bundle",
        ] {
            assert!(attr(span, key).is_some(), "{key} missing on {span:?}");
        }
        assert_eq!(attr(span, "setpoint.dry_run").as_deref(), Some("true"));
        let bundle = attr(span, "setpoint.policy_bundle").unwrap();
        assert!(
            bundle.starts_with("sha256:") && bundle.len() == 7 + 64,
            "{bundle}"
        );
        bundles.insert(bundle);
        let confidence: f64 = attr(span, "setpoint.confidence").unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
        let stages = children(span);
        for stage in ["features", "classify", "propose", "decide", "act"] {
            assert_eq!(
                stages.iter().filter(|n| *n == stage).count(),
                1,
                "{stage} under {:?}: {stages:?}",
                attr(span, "setpoint.target")
            );
        }
    }
    assert!(!bundles.is_empty());

    // A target a reader would look for: the idle reporting database, queued for review.
    let reporting = targets
        .iter()
        .find(|s| attr(s, "setpoint.target").as_deref() == Some("pg-reporting-01"))
        .expect("a span for pg-reporting-01");
    assert_eq!(
        attr(reporting, "setpoint.technology").as_deref(),
        Some("postgres")
    );
    assert_eq!(
        attr(reporting, "setpoint.class").as_deref(),
        Some("scale_down")
    );
    assert_eq!(
        attr(reporting, "setpoint.verdict").as_deref(),
        Some("review")
    );
    assert!(!attr(reporting, "setpoint.reason_codes").unwrap().is_empty());
    assert!(
        !attr(reporting, "setpoint.proposal")
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        !attr(reporting, "setpoint.model_version")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn otel_the_standard_environment_variables_turn_tracing_on_and_off() {
    let receiver = HttpFake::start(|_| (200, json!({})));
    run_quickstart(
        "state_dir: ./state\n",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer t0ken"),
            ("OTEL_SERVICE_NAME", "setpoint-env"),
        ],
    );
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer t0ken"))
    );
    let spans = received_spans(&receiver);
    assert!(spans.iter().all(|(service, _)| service == "setpoint-env"));
    let cycles = spans.iter().filter(|(_, s)| s.name == "cycle").count();
    assert_eq!(cycles, 4);

    // OTEL_SDK_DISABLED wins over an endpoint, whether from the environment or the config.
    let silent = HttpFake::start(|_| (200, json!({})));
    run_quickstart(
        &format!(
            "state_dir: ./state\ntelemetry:\n  otlp:\n    endpoint: {}\n",
            silent.url()
        ),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", silent.url()),
            ("OTEL_SDK_DISABLED", "true"),
        ],
    );
    assert!(silent.requests().is_empty());
}

/// An OTLP/gRPC receiver on 127.0.0.1: HTTP/2 by hand, every call answered with an empty
/// `ExportTraceServiceResponse` and `grpc-status: 0`. Returns the endpoint, the decoded
/// requests with their `x-tenant` metadata, and the runtime that serves them.
#[allow(clippy::type_complexity)]
fn grpc_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, ExportTraceServiceRequest)>>>,
    tokio::runtime::Runtime,
) {
    use std::sync::{Arc, Mutex};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let (parts, mut body) = request.into_parts();
                        assert_eq!(
                            parts.uri.path(),
                            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                        );
                        let mut bytes = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            bytes.extend_from_slice(&chunk);
                        }
                        // gRPC framing: a compression flag, a big-endian length, the message.
                        assert_eq!(bytes[0], 0, "uncompressed");
                        let length = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
                        let export =
                            ExportTraceServiceRequest::decode(&bytes[5..5 + length]).unwrap();
                        let tenant = parts
                            .headers
                            .get("x-tenant")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        store.lock().unwrap().push((tenant, export));
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(response, false).unwrap();
                        send.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false)
                            .unwrap();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        send.send_trailers(trailers).unwrap();
                    });
                }
            });
        }
    });
    (endpoint, received, runtime)
}

#[test]
fn otel_traces_go_over_grpc_too() {
    let (endpoint, received, _runtime) = grpc_receiver();
    run_quickstart(
        &format!(
            "state_dir: ./state\n\
             loops:\n  - name: weekly-rightsizing\n    plugin: builtin:postgres\n\
             \x20   source: {{ kind: simulated, seed: 42 }}\n\
             \x20   classifier: {{ kind: bootstrap }}\n\
             telemetry:\n  otlp:\n    endpoint: {endpoint}\n    protocol: grpc\n\
             \x20   headers: {{ x-tenant: ops }}\n"
        ),
        &[],
    );
    let received = received.lock().unwrap().clone();
    assert!(!received.is_empty(), "no OTLP/gRPC export arrived");
    assert!(
        received
            .iter()
            .all(|(tenant, _)| tenant.as_deref() == Some("ops"))
    );
    let spans: Vec<Span> = received
        .into_iter()
        .flat_map(|(_, export)| export.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    let cycles: Vec<&Span> = spans.iter().filter(|s| s.name == "cycle").collect();
    assert_eq!(cycles.len(), 1);
    let traces: BTreeSet<&[u8]> = spans.iter().map(|s| s.trace_id.as_slice()).collect();
    assert_eq!(traces.len(), 1, "one cycle, one trace");
    let reporting = spans
        .iter()
        .find(|s| {
            s.name == "target" && attr(s, "setpoint.target").as_deref() == Some("pg-reporting-01")
        })
        .expect("a span for pg-reporting-01");
    assert_eq!(
        attr(reporting, "setpoint.class").as_deref(),
        Some("scale_down")
    );
    assert_eq!(
        attr(reporting, "setpoint.verdict").as_deref(),
        Some("review")
    );
}
