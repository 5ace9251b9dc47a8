//! The configuration file: one YAML document describing the loops.
//!
//! Parsing is strict — unknown keys are rejected and every value is checked as it is read — so a
//! typo never silently turns into a default. Errors carry the path of the offending value
//! (`loops[1].schedule`) and the file position the YAML parser reached. With no file at all the
//! defaults describe the quickstart: one weekly loop per bundled plugin (PostgreSQL, Redis, Kafka,
//! Elasticsearch) over the embedded simulated fleet, with the bundled policies, in dry-run.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use setpoint_classify::Thresholds;
use setpoint_core::{Bounds, Mode};

/// Errors in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key, or a value is invalid.
    #[error("{file}{location}: {path}{message}")]
    Invalid {
        /// The file (or `<inline>`).
        file: String,
        /// `:line:column` when known.
        location: String,
        /// The path of the offending value followed by `: `, when known.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Values that are each valid but do not fit together.
    #[error("{file}: {}", problems.join("; "))]
    Inconsistent {
        /// The file (or `<inline>`).
        file: String,
        /// Every problem found, each starting with its path.
        problems: Vec<String>,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the embedded state store (history, journal, kill switches).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The loops to run. Default: the quickstart, one loop per bundled plugin over the
    /// simulator, plus one per plugin component found in `plugins_dir`.
    #[serde(default = "default_loops")]
    pub loops: Vec<LoopConfig>,
    /// A directory of third-party plugin components (`*.wasm`). With the quickstart's loops,
    /// each component found there gets a loop of its own over the simulator (playing the
    /// scenarios it ships). Relative to the config file; missing is fine.
    #[serde(default = "default_plugins_dir")]
    pub plugins_dir: PathBuf,
    /// Where compiled plugins are kept between starts, so a start does not recompile them.
    /// Default: `plugin-cache` in the state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_cache_dir: Option<PathBuf>,
    /// An MLflow tracking server that `setpoint train` logs its runs to and registers model
    /// versions in, besides the embedded registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<setpoint_mlflow::MlflowConfig>,
    /// Where the weekly report goes after each cycle of `setpoint run`: email through SMTP
    /// and/or a Slack-compatible webhook (see the `setpoint-notify` crate for every setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<setpoint_notify::NotifyConfig>,
    /// OpenTelemetry traces of every cycle (one trace per cycle, a span per target and per
    /// stage). Without this section they are still exported when the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables are set.
    #[serde(default, skip_serializing_if = "TelemetryConfig::is_default")]
    pub telemetry: TelemetryConfig,
    /// `setpoint serve`: where it listens and how it tells viewers from approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<ServeConfig>,
}

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
    fn is_default(&self) -> bool {
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
    pub headers: std::collections::BTreeMap<String, String>,
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

impl Config {
    /// The compiled-plugin cache directory, configured or default.
    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.plugin_cache_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("plugin-cache"))
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(".setpoint")
}

fn default_plugins_dir() -> PathBuf {
    PathBuf::from("plugins.d")
}

fn default_loops() -> Vec<LoopConfig> {
    setpoint_plugins_bundled::all()
        .iter()
        .map(|(name, _)| LoopConfig::quickstart_for(PluginRef::Builtin(name.to_string())))
        .collect()
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            loops: default_loops(),
            plugins_dir: default_plugins_dir(),
            plugin_cache_dir: None,
            mlflow: None,
            notify: None,
            telemetry: TelemetryConfig::default(),
            serve: None,
        }
    }
}

/// One control loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// Unique name, used in the journal, policies (`input.loop.name`) and kill switches.
    pub name: LoopName,
    /// When cycles run (cron, 5 fields or 6 with seconds, UTC). Default: Mondays 06:00.
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    /// The observation window.
    #[serde(default)]
    pub window: WindowConfig,
    /// The plugin: `builtin:postgres` or a path to a `.wasm` component.
    #[serde(default = "default_plugin")]
    pub plugin: PluginRef,
    /// Where metrics come from.
    #[serde(default)]
    pub source: SourceConfig,
    /// How targets are classified.
    #[serde(default)]
    pub classifier: ClassifierConfig,
    /// The policy bundle: `builtin` or a directory of `.rego` files and `data.json`.
    #[serde(default)]
    pub policies: PolicyRef,
    /// `dry-run` (default) or `enforce`.
    #[serde(default)]
    pub mode: Mode,
    /// Sizes proposals must stay within.
    #[serde(default)]
    pub bounds: BoundsConfig,
    /// Sandbox limits for each plugin call.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Targets named in the configuration: their current size, the label values that name
    /// them in metric series, and targets that discovery does not find.
    #[serde(default)]
    pub targets: Vec<StaticTarget>,
    /// What carries out `act` verdicts in `enforce` mode, asked in this order: each operation
    /// of a plan goes to the first actuator that supports it (e.g. Patroni for parameters and
    /// restarts, then a webhook for resizes). Listing actuators in `dry-run` executes nothing.
    #[serde(default)]
    pub actuators: Vec<ActuatorConfig>,
    /// How `enforce` mode executes: retries and resumption after a crash.
    #[serde(default)]
    pub act: ActConfig,
}

/// One actuator of a loop (registered in `setpoint_act`, beside each actuator).
pub use setpoint_act::ActuatorConfig;

/// How a loop in `enforce` mode executes its plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActConfig {
    /// Retries of an actuator call that failed on the way (transport error, server error);
    /// a refused, conflicting or unverified change is reported at once instead. The count is
    /// per intent: its actuators, and a run resumed after a crash, share it.
    #[serde(default = "default_act_retries")]
    pub retries: u32,
    /// The first wait before a retry; it doubles on each retry up to `max_backoff`. Each wait
    /// is drawn at random from the upper half of that value, so that retries do not arrive in
    /// step.
    #[serde(default = "default_act_backoff")]
    pub backoff: HumanDuration,
    /// The longest wait between retries.
    #[serde(default = "default_act_max_backoff")]
    pub max_backoff: HumanDuration,
    /// After a crash, an intent left pending is finished at start-up if it is at most this
    /// old; an older one is only verified (the world has moved on: the next cycle decides
    /// again) and marked done if reading back shows it happened, else cancelled.
    #[serde(default = "default_resume_within")]
    pub resume_within: HumanDuration,
}

fn default_act_retries() -> u32 {
    3
}
fn default_act_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_act_max_backoff() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_resume_within() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

impl Default for ActConfig {
    fn default() -> Self {
        Self {
            retries: default_act_retries(),
            backoff: default_act_backoff(),
            max_backoff: default_act_max_backoff(),
            resume_within: default_resume_within(),
        }
    }
}

/// A target declared in the configuration.
///
/// Exporters disagree on what names a target: node_exporter's `instance` is its own address,
/// postgres_exporter's is another, and its `server` label a third. `aliases` lists every label
/// value that stands for this target, so their series are joined explicitly, never by guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTarget {
    /// The target's id in reports, the journal and policies.
    pub id: String,
    /// Other values of the target label that name this target (e.g. each exporter's address).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What the target runs with now; proposals need it.
    #[serde(default)]
    pub resources: Option<ResourcesConfig>,
    /// Extra labels, visible to policies as `input.target.labels`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A target's current size, in operators' units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    /// vCPUs.
    pub cpu: f64,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Technology parameters tied to the size, e.g. `shared_buffers: 8GB`.
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, String>,
}

impl ResourcesConfig {
    /// The resources in the engine's units.
    pub fn resolve(&self) -> setpoint_core::Resources {
        setpoint_core::Resources {
            cpu_millicores: (self.cpu * 1000.0).round() as u64,
            memory_bytes: (self.memory_gib * setpoint_core::resources::GIB as f64).round() as u64,
            replicas: 1,
            parameters: self.parameters.clone(),
        }
    }
}

impl LoopConfig {
    /// The quickstart loop.
    pub fn quickstart() -> Self {
        Self::quickstart_for(default_plugin())
    }

    /// The quickstart loop for a plugin: `weekly-rightsizing` for the bundled PostgreSQL
    /// plugin, `<name>-rightsizing` for the others.
    pub fn quickstart_for(plugin: PluginRef) -> Self {
        let name = match &plugin {
            PluginRef::Builtin(name) if name == "postgres" => "weekly-rightsizing".to_string(),
            PluginRef::Builtin(name) => format!("{name}-rightsizing"),
            PluginRef::File(path) => format!(
                "{}-rightsizing",
                path.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "plugin".to_string())
            ),
        };
        Self {
            plugin,
            name: LoopName(name),
            schedule: default_schedule(),
            window: WindowConfig::default(),
            source: SourceConfig::default(),
            // The quickstart shows the learned classifier: trained on the simulator's history
            // at the first run, deterministically from the source's seed.
            classifier: ClassifierConfig::Model {
                thresholds: Thresholds::default(),
                train_on_simulator: true,
            },
            policies: PolicyRef::Builtin,
            mode: Mode::DryRun,
            bounds: BoundsConfig::default(),
            limits: LimitsConfig::default(),
            targets: Vec::new(),
            actuators: Vec::new(),
            act: ActConfig::default(),
        }
    }
}

fn default_schedule() -> Schedule {
    // A constant pattern; parsing it cannot fail, but stay panic-free anyway.
    Schedule::from_str("0 6 * * Mon").unwrap_or(Schedule {
        pattern: String::new(),
        cron: None,
    })
}

fn default_plugin() -> PluginRef {
    PluginRef::Builtin("postgres".into())
}

/// A loop name: letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LoopName(pub String);

impl LoopName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoopName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for LoopName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if valid {
            Ok(LoopName(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid loop name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
            )))
        }
    }
}

/// A cron schedule, checked when read.
#[derive(Debug, Clone)]
pub struct Schedule {
    pattern: String,
    cron: Option<croner::Cron>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Schedule {
    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The first time strictly after `after` that the schedule fires.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::Timelike;
        let after = after.with_nanosecond(0).unwrap_or(after);
        self.cron.as_ref()?.find_next_occurrence(&after, false).ok()
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build();
        match parser.parse(pattern) {
            Ok(cron) => Ok(Schedule {
                pattern: pattern.to_string(),
                cron: Some(cron),
            }),
            Err(e) => Err(format!("invalid cron schedule {pattern:?}: {e}")),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        Schedule::from_str(&pattern).map_err(serde::de::Error::custom)
    }
}

/// A duration written the human way (`5m`, `300s`, `1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

/// The observation window of a loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Whole weeks that features cover (the fingerprint is 4). One more week is read, so the
    /// oldest feature week is always complete.
    #[serde(default = "default_weeks")]
    pub weeks: u32,
    /// Sample spacing.
    #[serde(default = "default_step")]
    pub step: HumanDuration,
}

fn default_weeks() -> u32 {
    4
}

fn default_step() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            weeks: default_weeks(),
            step: default_step(),
        }
    }
}

/// Which plugin serves a loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    /// A plugin shipped inside setpoint, by name.
    Builtin(String),
    /// A `.wasm` component on disk.
    File(PathBuf),
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginRef::Builtin(name) => write!(f, "builtin:{name}"),
            PluginRef::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Serialize for PluginRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PluginRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(name) = text.strip_prefix("builtin:") {
            let known: Vec<&str> = setpoint_plugins_bundled::all()
                .iter()
                .map(|(n, _)| *n)
                .collect();
            if known.contains(&name) {
                Ok(PluginRef::Builtin(name.to_string()))
            } else {
                Err(serde::de::Error::custom(format!(
                    "unknown builtin plugin {name:?}; builtin plugins: {}",
                    known.join(", ")
                )))
            }
        } else if text.ends_with(".wasm") {
            Ok(PluginRef::File(PathBuf::from(text)))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid plugin {text:?}: use builtin:<name> or a path to a .wasm component"
            )))
        }
    }
}

/// Where a loop's metrics come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The embedded, deterministic simulated fleet.
    Simulated {
        /// Seed of the simulation: the same seed gives the same fleet and samples.
        #[serde(default = "default_seed")]
        seed: u64,
    },
    /// A Prometheus-compatible server: Prometheus, VictoriaMetrics, Thanos, Mimir.
    Prometheus(setpoint_observe::PrometheusConfig),
}

fn default_seed() -> u64 {
    42
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig::Simulated {
            seed: default_seed(),
        }
    }
}

/// How a loop classifies targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClassifierConfig {
    /// The bootstrap heuristics from the design, always.
    Bootstrap {
        /// Their thresholds.
        #[serde(default)]
        thresholds: Thresholds,
    },
    /// The loop's promoted model from the registry (`setpoint train`, `setpoint models
    /// promote`); the bootstrap heuristics until one is promoted, said in every explanation.
    Model {
        /// The bootstrap heuristics' thresholds, for the time before a model.
        #[serde(default)]
        thresholds: Thresholds,
        /// With no promoted model, train one on the simulator's history of the plugin's
        /// scenarios at the first cycle, register and promote it (the quickstart does).
        #[serde(default)]
        train_on_simulator: bool,
    },
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig::Model {
            thresholds: Thresholds::default(),
            train_on_simulator: false,
        }
    }
}

impl ClassifierConfig {
    /// The bootstrap heuristics' thresholds.
    pub fn thresholds(&self) -> &Thresholds {
        match self {
            ClassifierConfig::Bootstrap { thresholds }
            | ClassifierConfig::Model { thresholds, .. } => thresholds,
        }
    }
}

/// Which policy bundle a loop uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PolicyRef {
    /// The default policies shipped inside setpoint.
    #[default]
    Builtin,
    /// A directory of `.rego` files and `data.json`.
    Dir(PathBuf),
}

impl Serialize for PolicyRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PolicyRef::Builtin => serializer.serialize_str("builtin"),
            PolicyRef::Dir(path) => serializer.collect_str(&path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for PolicyRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "builtin" {
            Ok(PolicyRef::Builtin)
        } else if text.is_empty() {
            Err(serde::de::Error::custom(
                "empty policy bundle path: use builtin or a directory",
            ))
        } else {
            Ok(PolicyRef::Dir(PathBuf::from(text)))
        }
    }
}

/// Sizes proposals must stay within, in operators' units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundsConfig {
    /// Smallest CPU, in vCPUs.
    #[serde(default = "default_min_cpu")]
    pub min_cpu: f64,
    /// Largest CPU, in vCPUs.
    #[serde(default = "default_max_cpu")]
    pub max_cpu: f64,
    /// Smallest memory, in GiB.
    #[serde(default = "default_min_memory")]
    pub min_memory_gib: f64,
    /// Largest memory, in GiB.
    #[serde(default = "default_max_memory")]
    pub max_memory_gib: f64,
}

fn default_min_cpu() -> f64 {
    1.0
}
fn default_max_cpu() -> f64 {
    64.0
}
fn default_min_memory() -> f64 {
    2.0
}
fn default_max_memory() -> f64 {
    512.0
}

impl Default for BoundsConfig {
    fn default() -> Self {
        Self {
            min_cpu: default_min_cpu(),
            max_cpu: default_max_cpu(),
            min_memory_gib: default_min_memory(),
            max_memory_gib: default_max_memory(),
        }
    }
}

impl BoundsConfig {
    /// The bounds in the engine's units.
    pub fn resolve(&self) -> Bounds {
        let gib = setpoint_core::resources::GIB as f64;
        Bounds {
            min_cpu_millicores: (self.min_cpu * 1000.0).round() as u64,
            max_cpu_millicores: (self.max_cpu * 1000.0).round() as u64,
            min_memory_bytes: (self.min_memory_gib * gib).round() as u64,
            max_memory_bytes: (self.max_memory_gib * gib).round() as u64,
        }
    }

    fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (name, value) in [
            ("min_cpu", self.min_cpu),
            ("max_cpu", self.max_cpu),
            ("min_memory_gib", self.min_memory_gib),
            ("max_memory_gib", self.max_memory_gib),
        ] {
            if !value.is_finite() || value <= 0.0 {
                out.push(format!(
                    "{path}.{name}: must be a positive number, got {value}"
                ));
            }
        }
        if self.min_cpu > self.max_cpu {
            out.push(format!(
                "{path}: min_cpu ({}) is above max_cpu ({})",
                self.min_cpu, self.max_cpu
            ));
        }
        if self.min_memory_gib > self.max_memory_gib {
            out.push(format!(
                "{path}: min_memory_gib ({}) is above max_memory_gib ({})",
                self.min_memory_gib, self.max_memory_gib
            ));
        }
        out
    }
}

/// Sandbox limits for each plugin call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// CPU budget per call, in wasmtime fuel units (about one per instruction).
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Memory a plugin instance may grow to, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Wall-clock backstop per call.
    #[serde(default = "default_call_timeout")]
    pub timeout: HumanDuration,
}

fn default_fuel() -> u64 {
    setpoint_plugin_host::Limits::default().fuel_per_call
}
fn default_memory_mib() -> u64 {
    (setpoint_plugin_host::Limits::default().memory_bytes / (1024 * 1024)) as u64
}
fn default_call_timeout() -> HumanDuration {
    HumanDuration(setpoint_plugin_host::Limits::default().wall_clock)
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            fuel: default_fuel(),
            memory_mib: default_memory_mib(),
            timeout: default_call_timeout(),
        }
    }
}

impl LimitsConfig {
    /// The limits in the plugin host's form.
    pub fn resolve(&self) -> setpoint_plugin_host::Limits {
        setpoint_plugin_host::Limits {
            fuel_per_call: self.fuel,
            memory_bytes: (self.memory_mib as usize).saturating_mul(1024 * 1024),
            wall_clock: self.timeout.0,
        }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text, &path.display().to_string())?;
        // Relative paths in a config file are relative to the file, not to where setpoint runs.
        let base = path.parent().unwrap_or(Path::new("."));
        if config.state_dir.is_relative() {
            config.state_dir = base.join(&config.state_dir);
        }
        if config.plugins_dir.is_relative() {
            config.plugins_dir = base.join(&config.plugins_dir);
        }
        if let Some(dir) = &mut config.plugin_cache_dir
            && dir.is_relative()
        {
            *dir = base.join(&*dir);
        }
        if let Some(notify) = &mut config.notify {
            let files = [
                notify.email.as_mut().and_then(|e| e.password_file.as_mut()),
                notify
                    .slack
                    .as_mut()
                    .and_then(|s| s.webhook_url_file.as_mut()),
            ];
            for file in files.into_iter().flatten() {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        if let Some(file) = config.serve.as_mut().and_then(|s| s.tokens_file.as_mut())
            && file.is_relative()
        {
            *file = base.join(&*file);
        }
        for lp in &mut config.loops {
            if let PluginRef::File(p) = &mut lp.plugin
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
            if let PolicyRef::Dir(p) = &mut lp.policies
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
            for actuator in &mut lp.actuators {
                actuator.resolve_paths(base);
            }
        }
        Ok(config)
    }

    /// With the quickstart's loops, adds one loop per plugin component (`*.wasm`) in
    /// `plugins_dir`, in name order, so a third-party plugin shows in the quickstart by being
    /// dropped there. A configuration with loops of its own is left alone: it names its plugins.
    pub fn add_plugins_dir_loops(&mut self) -> Result<(), ConfigError> {
        if self.loops != default_loops() {
            return Ok(());
        }
        let entries = match std::fs::read_dir(&self.plugins_dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: self.plugins_dir.clone(),
                    source,
                });
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        found.sort();
        for path in found {
            let lp = LoopConfig::quickstart_for(PluginRef::File(path));
            if self.loops.iter().any(|l| l.name == lp.name) {
                continue;
            }
            self.loops.push(lp);
        }
        Ok(())
    }

    /// Parses and checks config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let config: Config = match serde_path_to_error::deserialize(deserializer) {
            Ok(config) => config,
            Err(error) => {
                let path = error.path().to_string();
                let inner = error.into_inner();
                let location = inner
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                let message = inner.to_string();
                // serde_yaml appends its own " at line L column C" and may prefix a shorter
                // path; keep the message itself, the precise path and the position once.
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_string();
                let message = match message.split_once(": ") {
                    Some((prefix, rest))
                        if !prefix.contains(' ') && path.starts_with(prefix.trim()) =>
                    {
                        rest.to_string()
                    }
                    _ => message,
                };
                return Err(ConfigError::Invalid {
                    file: file.to_string(),
                    location,
                    path: if path == "." || path.is_empty() {
                        String::new()
                    } else {
                        format!("{path}: ")
                    },
                    message,
                });
            }
        };
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Inconsistent {
                file: file.to_string(),
                problems,
            })
        }
    }

    /// Every problem that needs more than one value to see, each with its path.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.loops.is_empty() {
            out.push("loops: at least one loop is needed".to_string());
        }
        if let Some(mlflow) = &self.mlflow {
            out.extend(mlflow.problems("mlflow."));
        }
        if let Some(endpoint) = self
            .telemetry
            .otlp
            .as_ref()
            .and_then(|o| o.endpoint.as_ref())
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            out.push(format!(
                "telemetry.otlp.endpoint: must be an http:// or https:// URL, got {endpoint:?}"
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, lp) in self.loops.iter().enumerate() {
            let path = format!("loops[{i}]");
            if !seen.insert(lp.name.as_str()) {
                out.push(format!("{path}.name: duplicate loop name {:?}", lp.name.0));
            }
            if !(1..=12).contains(&lp.window.weeks) {
                out.push(format!(
                    "{path}.window.weeks: must be between 1 and 12, got {}",
                    lp.window.weeks
                ));
            }
            let step = lp.window.step.0.as_secs();
            if !(15..=3600).contains(&step) {
                out.push(format!(
                    "{path}.window.step: must be between 15s and 1h, got {}s",
                    step
                ));
            }
            if let Err(problems) = lp.classifier.thresholds().validate() {
                out.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("{path}.classifier.thresholds: {p}")),
                );
            }
            out.extend(lp.bounds.problems(&format!("{path}.bounds")));
            if lp.limits.fuel == 0 {
                out.push(format!("{path}.limits.fuel: must be positive"));
            }
            if !(1..=4096).contains(&lp.limits.memory_mib) {
                out.push(format!(
                    "{path}.limits.memory_mib: must be between 1 and 4096, got {}",
                    lp.limits.memory_mib
                ));
            }
            let mut names = BTreeSet::new();
            for (j, target) in lp.targets.iter().enumerate() {
                let tpath = format!("{path}.targets[{j}]");
                if target.id.trim().is_empty() || target.id.chars().any(char::is_control) {
                    out.push(format!(
                        "{tpath}.id: must be non-empty without control characters"
                    ));
                }
                for name in std::iter::once(&target.id).chain(&target.aliases) {
                    if !names.insert(name.as_str()) {
                        out.push(format!(
                            "{tpath}: {name:?} already names another target of this loop"
                        ));
                    }
                }
                if let Some(r) = &target.resources
                    && !(r.cpu.is_finite()
                        && r.cpu > 0.0
                        && r.memory_gib.is_finite()
                        && r.memory_gib > 0.0)
                {
                    out.push(format!(
                        "{tpath}.resources: cpu and memory_gib must be positive, got {} and {}",
                        r.cpu, r.memory_gib
                    ));
                }
            }
            if lp.limits.timeout.0.is_zero() {
                out.push(format!("{path}.limits.timeout: must be positive"));
            }
            if lp.mode == Mode::Enforce && lp.actuators.is_empty() {
                out.push(format!(
                    "{path}.actuators: mode enforce needs at least one actuator (patroni, \
                     kubernetes or webhook); without one nothing could be executed"
                ));
            }
            if lp.act.backoff.0 > lp.act.max_backoff.0 {
                out.push(format!(
                    "{path}.act: backoff ({}) is above max_backoff ({})",
                    humantime::format_duration(lp.act.backoff.0),
                    humantime::format_duration(lp.act.max_backoff.0)
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn empty_document_is_the_quickstart() {
        let config = Config::parse("{}", "t.yaml").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.loops[0].name.as_str(), "weekly-rightsizing");
    }

    #[test]
    fn full_loop_parses() {
        let text = r#"
state_dir: /tmp/sp
loops:
  - name: weekly
    schedule: "*/5 * * * * *"
    window: { weeks: 4, step: 5m }
    plugin: builtin:postgres
    source: { kind: simulated, seed: 7 }
    classifier: { kind: bootstrap, thresholds: { scale_down_cpu_below: 0.3 } }
    policies: ./policies
    mode: enforce
    actuators:
      - patroni: { url: "http://{target}:8008", maintenance_window: { start: "02:00", duration: 2h } }
      - webhook: { url: "https://deploy.internal/hooks/resize", allow: ["https://deploy.internal/hooks/"], secret_file: ./hook.secret }
    act: { retries: 2, backoff: 500ms }
    bounds: { min_cpu: 2, max_memory_gib: 256 }
    limits: { fuel: 1000000, memory_mib: 32, timeout: 500ms }
"#;
        let config = Config::parse(text, "t.yaml").unwrap();
        let lp = &config.loops[0];
        assert_eq!(lp.mode, Mode::Enforce);
        assert_eq!(lp.source, SourceConfig::Simulated { seed: 7 });
        assert_eq!(lp.bounds.resolve().min_cpu_millicores, 2000);
        assert_eq!(lp.limits.resolve().memory_bytes, 32 * 1024 * 1024);
        assert_eq!(lp.policies, PolicyRef::Dir(PathBuf::from("./policies")));
        let names: Vec<&str> = lp.actuators.iter().map(ActuatorConfig::name).collect();
        assert_eq!(names, ["patroni", "webhook"]);
        assert_eq!(lp.act.retries, 2);
        assert_eq!(lp.act.backoff.0, Duration::from_millis(500));
        assert_eq!(lp.act.resume_within.0, Duration::from_secs(3600));
    }

    #[test]
    fn enforce_without_actuators_is_refused() {
        let text = "loops:\n  - name: w\n    mode: enforce\n";
        let error = Config::parse(text, "t.yaml").unwrap_err().to_string();
        assert!(
            error.contains("loops[0].actuators: mode enforce needs at least one actuator"),
            "{error}"
        );
        let typo = "loops:\n  - name: w\n    actuators: [ { patrony: { url: 'http://x' } } ]\n";
        let error = Config::parse(typo, "t.yaml").unwrap_err().to_string();
        assert!(error.contains("loops[0].actuators[0]"), "{error}");
        assert!(error.contains("patrony"), "{error}");
    }

    #[test]
    fn unknown_key_names_its_path_and_line() {
        let text = "loops:\n  - name: weekly\n    shedule: '0 6 * * Mon'\n";
        let error = Config::parse(text, "t.yaml").unwrap_err().to_string();
        assert!(error.starts_with("t.yaml:3:"), "{error}");
        assert!(error.contains("loops[0]"), "{error}");
        assert!(error.contains("unknown field `shedule`"), "{error}");
    }

    #[test]
    fn invalid_values_name_their_path() {
        for (text, needle) in [
            (
                "loops:\n  - name: weekly\n    schedule: 'every monday'\n",
                "loops[0].schedule: invalid cron schedule",
            ),
            (
                "loops:\n  - name: weekly\n    mode: yolo\n",
                "loops[0].mode: unknown variant `yolo`",
            ),
            (
                "loops:\n  - name: weekly\n    plugin: builtin:oracle\n",
                "loops[0].plugin: unknown builtin plugin \"oracle\"",
            ),
            (
                "loops:\n  - name: 'bad name'\n",
                "loops[0].name: invalid loop name",
            ),
            (
                "loops:\n  - name: w\n    window: { step: fortnight }\n",
                "loops[0].window.step: invalid duration",
            ),
        ] {
            let error = Config::parse(text, "t.yaml").unwrap_err().to_string();
            assert!(error.contains(needle), "{error} should contain {needle}");
            assert!(error.starts_with("t.yaml:"), "{error}");
        }
    }

    #[test]
    fn inconsistent_values_are_all_reported() {
        let text = "loops:\n  - name: a\n    bounds: { min_cpu: 8, max_cpu: 4 }\n  - name: a\n    window: { weeks: 0 }\n";
        let error = Config::parse(text, "t.yaml").unwrap_err().to_string();
        assert!(
            error.contains("loops[0].bounds: min_cpu (8) is above max_cpu (4)"),
            "{error}"
        );
        assert!(
            error.contains("loops[1].name: duplicate loop name"),
            "{error}"
        );
        assert!(error.contains("loops[1].window.weeks"), "{error}");
    }

    #[test]
    fn the_example_config_is_the_quickstart() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/setpoint.yaml");
        let mut config = Config::load(&path).unwrap();
        assert!(config.state_dir.ends_with(".setpoint"));
        config.state_dir = default_state_dir();
        // Relative paths in a file are resolved against it.
        assert!(
            config
                .plugins_dir
                .ends_with("examples/quickstart/plugins.d")
        );
        config.plugins_dir = default_plugins_dir();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn telemetry_parses_strictly() {
        let text = "telemetry:\n  service_name: s\n  otlp:\n    endpoint: http://127.0.0.1:4317\n    protocol: grpc\n    headers: { x-tenant: ops }\n    timeout: 5s\n";
        let config = Config::parse(text, "t.yaml").unwrap();
        let otlp = config.telemetry.otlp.as_ref().unwrap();
        assert_eq!(otlp.protocol, Some(OtlpProtocol::Grpc));
        assert_eq!(otlp.timeout, Some(HumanDuration(Duration::from_secs(5))));
        assert_eq!(otlp.headers["x-tenant"], "ops");
        assert_eq!(config.telemetry.service_name.as_deref(), Some("s"));
        // Written back, it reads the same.
        let again = Config::parse(&serde_yaml::to_string(&config).unwrap(), "t.yaml").unwrap();
        assert_eq!(again.telemetry, config.telemetry);

        let error = Config::parse("telemetry: { otlp: { protocol: http/json } }\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("telemetry.otlp.protocol"), "{error}");
        let error = Config::parse(
            "telemetry: { otlp: { endpoint: 127.0.0.1:4318 } }\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("telemetry.otlp.endpoint: must be an http"),
            "{error}"
        );
        let error = Config::parse("telemetry: { otlp: { endpont: http://x } }\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("endpont"), "{error}");
    }

    #[test]
    fn a_prometheus_source_parses_strictly() {
        let text = "loops:\n  - name: w\n    source: { kind: prometheus, url: 'http://127.0.0.1:9090', timeout: 5s, auth: { kind: bearer, token: t } }\n";
        let config = Config::parse(text, "t.yaml").unwrap();
        let SourceConfig::Prometheus(p) = &config.loops[0].source else {
            panic!("not prometheus");
        };
        assert_eq!(p.timeout, Duration::from_secs(5));
        let bad =
            "loops:\n  - name: w\n    source: { kind: prometheus, url: 'http://x', retires: 2 }\n";
        let error = Config::parse(bad, "t.yaml").unwrap_err().to_string();
        assert!(error.contains("retires"), "{error}");
    }

    #[test]
    fn static_targets_parse_and_are_checked() {
        let text = r#"
loops:
  - name: w
    targets:
      - id: pg-main
        aliases: ["127.0.0.1:9100", "127.0.0.1:9187"]
        resources: { cpu: 8, memory_gib: 32, parameters: { shared_buffers: 8GB } }
      - id: pg-other
        aliases: ["127.0.0.1:9100"]
        resources: { cpu: 0, memory_gib: 4 }
"#;
        let error = Config::parse(text, "t.yaml").unwrap_err().to_string();
        assert!(
            error.contains("loops[0].targets[1]: \"127.0.0.1:9100\" already names another target"),
            "{error}"
        );
        assert!(
            error.contains("loops[0].targets[1].resources: cpu and memory_gib must be positive"),
            "{error}"
        );
        let ok = text.replace(
            "aliases: [\"127.0.0.1:9100\"]\n        resources: { cpu: 0",
            "resources: { cpu: 2",
        );
        let config = Config::parse(&ok, "t.yaml").unwrap();
        let r = config.loops[0].targets[0]
            .resources
            .as_ref()
            .unwrap()
            .resolve();
        assert_eq!(r.cpu_millicores, 8000);
        assert_eq!(r.parameters["shared_buffers"], "8GB");
    }

    #[test]
    fn schedule_finds_the_next_monday() {
        let schedule = Schedule::from_str("0 6 * * Mon").unwrap();
        let after = chrono::DateTime::parse_from_rfc3339("2026-11-23T07:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let next = schedule.next_after(after).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-30T06:00:00+00:00");
    }
}
