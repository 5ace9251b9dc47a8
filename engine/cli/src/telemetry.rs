//! Logging to stderr, and OpenTelemetry traces of the cycles when telemetry is configured.
//!
//! The engine crates only emit `tracing` spans (`cycle` → `discover`, `observe`, `target` →
//! `features`, `classify`, `propose`, `decide`, `act`; their `setpoint.*` attributes are listed in
//! the `setpoint-runtime` crate docs). Here a `tracing-opentelemetry` layer turns them into
//! OpenTelemetry spans and a batch processor exports them over OTLP, so the heavy exporter
//! dependencies live in the binary alone.
//!
//! Telemetry is on when the config has `telemetry.otlp`, or when the environment names an OTLP
//! endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); it is off
//! whatever either says with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use setpoint_runtime::{OtlpConfig, OtlpProtocol, TelemetryConfig};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The service name when neither the config nor `OTEL_SERVICE_NAME` gives one.
const DEFAULT_SERVICE_NAME: &str = "setpoint";

/// What must outlive every span: the tracer provider (flushed on [`Telemetry::shutdown`]) and,
/// for gRPC, the Tokio runtime that drives the tonic channel.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter. A process that exits without
    /// this loses its last batch (a `run --once` would lose all of its traces).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: telemetry: could not export the last traces: {error}");
        }
        if let Some(runtime) = self.runtime {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Installs the global subscriber: the stderr log at the verbosity asked for, plus the
/// OpenTelemetry layer when `config` or the environment turn telemetry on.
pub fn init(verbose: u8, config: &TelemetryConfig) -> Result<Telemetry> {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug,cranelift_codegen=warn,wasmtime=warn,regorus=warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);

    let (telemetry, otel) = match exporter_settings(config)? {
        None => (Telemetry::default(), None),
        Some(settings) => {
            let (provider, runtime) = provider(&settings)?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("setpoint"))
                // The stderr verbosity must not decide what is traced: the cycle spans are at
                // `info` and `-v` is off by default. The SDK's own diagnostics (a collector that
                // cannot be reached) go to stderr only: exporting them would feed the exporter
                // its own failures.
                .with_filter(EnvFilter::new(
                    "info,cranelift_codegen=off,wasmtime=off,regorus=off,\
                     opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,\
                     opentelemetry_http=off,reqwest=off,hyper=off,hyper_util=off,h2=off,tonic=off",
                ));
            (
                Telemetry {
                    provider: Some(provider),
                    runtime,
                },
                Some(layer),
            )
        }
    };
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(telemetry)
}

/// The exporter to build, resolved from the config and the environment.
struct Settings {
    protocol: OtlpProtocol,
    /// `None`: the exporter reads `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` itself.
    endpoint: Option<String>,
    headers: HashMap<String, String>,
    timeout: Option<Duration>,
    service_name: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn exporter_settings(config: &TelemetryConfig) -> Result<Option<Settings>> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    let from_env = env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    let otlp = match (&config.otlp, from_env) {
        (Some(otlp), _) => otlp.clone(),
        (None, true) => OtlpConfig::default(),
        (None, false) => return Ok(None),
    };
    let protocol = match otlp.protocol {
        Some(protocol) => protocol,
        None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
            .map(str::trim)
        {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {other:?} (supported: http/protobuf, grpc)"
            ),
        },
    };
    // The config's endpoint is a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT; the exporter takes
    // a configured HTTP endpoint verbatim, so the signal path is added here.
    let endpoint = otlp.endpoint.map(|base| match protocol {
        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        OtlpProtocol::Grpc => base,
    });
    let service_name = config
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    Ok(Some(Settings {
        protocol,
        endpoint,
        headers: otlp
            .headers
            .into_iter()
            .map(|(name, value)| (name, value.expose().to_string()))
            .collect(),
        timeout: otlp.timeout.map(|t| t.0),
        service_name,
    }))
}

fn provider(settings: &Settings) -> Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>)> {
    let (exporter, runtime) = match settings.protocol {
        OtlpProtocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_headers(settings.headers.clone());
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            if let Some(timeout) = settings.timeout {
                builder = builder.with_timeout(timeout);
            }
            (builder.build(), None)
        }
        OtlpProtocol::Grpc => {
            // tonic's channel runs on Tokio; the batch processor's own thread only waits on
            // it, so a small runtime of its own outlives every export.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp-grpc")
                .enable_all()
                .build()
                .context("telemetry: cannot start the gRPC exporter's runtime")?;
            let mut metadata = http::HeaderMap::new();
            for (name, value) in &settings.headers {
                let name = http::HeaderName::from_bytes(name.as_bytes())
                    .with_context(|| format!("telemetry.otlp.headers: invalid name {name:?}"))?;
                let value = http::HeaderValue::from_str(value)
                    .with_context(|| format!("telemetry.otlp.headers.{name}: invalid value"))?;
                metadata.insert(name, value);
            }
            let exporter = {
                let _entered = runtime.enter();
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(Protocol::Grpc)
                    .with_metadata(
                        opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(
                            metadata,
                        ),
                    );
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if let Some(timeout) = settings.timeout {
                    builder = builder.with_timeout(timeout);
                }
                builder.build()
            };
            (exporter, Some(runtime))
        }
    };
    let exporter = exporter.context("telemetry.otlp: cannot build the OTLP exporter")?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    Ok((provider, runtime))
}
