//! Where the engine reports and serves: OpenTelemetry traces and `setpoint serve`.

use super::*;

/// Where the traces of the cycles go (OpenTelemetry, OTLP).
///
/// Values set here win over the standard `OTEL_*` environment variables, as in every
/// OpenTelemetry SDK; what is left out is read from them (`OTEL_EXPORTER_OTLP_ENDPOINT`,
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
/// `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`).
/// `OTEL_SDK_DISABLED=true` turns tracing off whatever this says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP exporter. Absent: traces are exported only if the environment names an
    /// endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpConfig>,
    /// The `service.name` resource attribute. Default: `OTEL_SERVICE_NAME`, else `setpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl TelemetryConfig {
    pub(super) fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// An OTLP exporter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's base URL (`http://127.0.0.1:4318` for OTLP/HTTP, `http://127.0.0.1:4317`
    /// for gRPC); over HTTP the traces go to `<endpoint>/v1/traces`. Default: the
    /// environment's, else the protocol's standard local endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `http/protobuf` or `grpc`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<OtlpProtocol>,
    /// Headers sent with every export (authentication tokens, tenant ids), added to those of
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, setpoint_secret::Secret>,
    /// How long one export may take. Default: `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP (port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
}

/// `setpoint serve`: the engine's metrics and the review web page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on. Default: `127.0.0.1:9464`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// A file of access tokens, one per line: `user:role:token` with role `viewer` or
    /// `approver` (`#` starts a comment). Relative to the config file. Tokens are secrets:
    /// they are only ever read from this file, never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    /// Trust a reverse proxy in front of setpoint to authenticate users: it names the user and
    /// the role in these request headers. Only set this when nothing but the proxy can reach
    /// the listen address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyAuthConfig>,
}

/// The request headers a trusted reverse proxy sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuthConfig {
    /// The header naming the authenticated user.
    #[serde(default = "default_user_header")]
    pub user_header: String,
    /// The header naming the user's role (`viewer` or `approver`).
    #[serde(default = "default_role_header")]
    pub role_header: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tokens_file: None,
            proxy: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}

fn default_user_header() -> String {
    "X-Forwarded-User".to_string()
}

fn default_role_header() -> String {
    "X-Forwarded-Role".to_string()
}
