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
    /// The URL people open the page at (`https://setpoint.example.com`), when it is not the
    /// listen address (behind a proxy or a load balancer, or listening on every address). A
    /// form is accepted only when its `Origin` (or, without one, its `Referer`) is this URL's
    /// origin. Default: `http(s)://<listen address>`, and its `localhost` names when it is a
    /// loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Serve HTTPS with this certificate and key (PEM files, relative to the config file).
    /// Session cookies are then `Secure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
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
    /// How long a sign-in lasts without being used. Default: 12h.
    #[serde(default = "default_session_ttl")]
    pub session_ttl: HumanDuration,
    /// The largest request body accepted, in bytes; a larger one is refused with 413.
    /// Default: 64 KiB (a decision's comment is at most 4 KiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// How long a client may take to send a request's headers, and how long an idle
    /// connection is kept open between requests. Default: 10s.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// How long a client may take to send a request's body. Default: 30s.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
}

impl ServeConfig {
    /// Every problem of these settings, each starting with `prefix` and the field.
    pub(super) fn problems(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(url) = &self.public_url
            && let Err(problem) = public_origin(url)
        {
            out.push(format!("{prefix}public_url: {problem}"));
        }
        if self.max_body_bytes < 4096 {
            out.push(format!(
                "{prefix}max_body_bytes: must be at least 4096, got {}",
                self.max_body_bytes
            ));
        }
        for (name, value) in [
            ("session_ttl", self.session_ttl),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
        ] {
            if value.0.is_zero() {
                out.push(format!("{prefix}{name}: must be positive"));
            }
        }
        out
    }

    /// The origin (`https://host[:port]`) of `public_url`, when it is set and valid.
    pub fn public_origin(&self) -> Option<String> {
        self.public_url
            .as_deref()
            .and_then(|u| public_origin(u).ok())
    }
}

/// The origin a browser sends for pages under `url`, or why `url` cannot be one.
fn public_origin(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e}): {url:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("must be an http:// or https:// URL, got {url:?}"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials".to_string());
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(format!(
            "setpoint serves its pages at the root: give the URL without a path, got {url:?}"
        ));
    }
    Ok(parsed.origin().ascii_serialization())
}

/// The listener's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert_file: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
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
            public_url: None,
            tls: None,
            tokens_file: None,
            proxy: None,
            session_ttl: default_session_ttl(),
            max_body_bytes: default_max_body_bytes(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}

fn default_session_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(12 * 3600))
}

fn default_max_body_bytes() -> u64 {
    64 * 1024
}

fn default_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_body_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_user_header() -> String {
    "X-Forwarded-User".to_string()
}

fn default_role_header() -> String {
    "X-Forwarded-Role".to_string()
}
