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

mod act;
mod fast;
mod inventory;
mod loops;
mod surfaces;
mod values;

pub use act::*;
pub use fast::*;
pub use inventory::*;
pub use loops::*;
pub use surfaces::*;
pub use values::*;

pub use crate::sources::SourceConfig;

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
    /// A loop's inventory files cannot be read, or list targets that are invalid or clash.
    #[error("{}", inventory_errors(path, errors))]
    Inventory {
        /// The loop's `inventory` key (`loops[0].inventory`).
        path: String,
        /// Every problem found, each naming its file and line.
        errors: Vec<InventoryError>,
    },
}

/// Each inventory problem, file and line first, then the key that named the file.
fn inventory_errors(path: &str, errors: &[InventoryError]) -> String {
    errors
        .iter()
        .map(|e| format!("{e} (in {path})"))
        .collect::<Vec<_>>()
        .join("; ")
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
        if let Some(serve) = config.serve.as_mut() {
            let mut files: Vec<&mut PathBuf> = serve.tokens_file.iter_mut().collect();
            if let Some(tls) = serve.tls.as_mut() {
                files.extend([&mut tls.cert_file, &mut tls.key_file]);
            }
            for file in files {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        for lp in &mut config.loops {
            if let PluginRef::File { path: p, .. } = &mut lp.plugin
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
            if let Some(actuator) = lp.fast.as_mut().and_then(|f| f.actuator.as_mut()) {
                for file in actuator.paths_mut() {
                    if file.is_relative() {
                        *file = base.join(&*file);
                    }
                }
            }
            for file in &mut lp.inventory {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        config.read_inventories()?;
        Ok(config)
    }

    /// Reads every loop's inventory files into its [`LoopConfig::inventoried`] targets
    /// ([`Config::load`] does; [`Config::parse`] reads no file). Relative paths are taken as
    /// they are, relative to the working directory. The first loop whose inventory has
    /// problems is refused with every one of them.
    pub fn read_inventories(&mut self) -> Result<(), ConfigError> {
        for (i, lp) in self.loops.iter_mut().enumerate() {
            let path = format!("loops[{i}]");
            lp.inventoried =
                read_inventory(&lp.inventory, &lp.targets, &path).map_err(|errors| {
                    ConfigError::Inventory {
                        path: format!("{path}.inventory"),
                        errors,
                    }
                })?;
        }
        Ok(())
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
            let lp = LoopConfig::quickstart_for(PluginRef::file(path));
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
        if let Some(serve) = &self.serve {
            out.extend(serve.problems("serve."));
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
            match (lp.kind, &lp.fast) {
                (crate::loops::LoopKind::Fast, Some(fast)) => {
                    out.extend(fast.problems(&format!("{path}.fast")));
                }
                (crate::loops::LoopKind::Fast, None) => {}
                (kind, Some(_)) => out.push(format!(
                    "{path}.fast: only a loop of kind fast has this section (this loop is {})",
                    serde_json::to_value(kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                )),
                (_, None) => {}
            }
            if lp.kind == crate::loops::LoopKind::Fast && !matches!(lp.policies, PolicyRef::Dir(_))
            {
                out.push(format!(
                    "{path}.policies: a fast loop needs its control policy's directory (e.g. policies/fast/examples/predictive)"
                ));
            }
            out.extend(lp.floor.problems(&format!("{path}.floor")));
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
                if !valid_id(&target.id) {
                    out.push(format!(
                        "{tpath}.id: must be non-empty without control characters"
                    ));
                }
                if let Some(problem) = target.iops_problem() {
                    out.push(format!("{tpath}.provisioned_iops: {problem}"));
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
            let fast_loop = lp.kind == crate::loops::LoopKind::Fast;
            if fast_loop && !lp.actuators.is_empty() {
                out.push(format!(
                    "{path}.actuators: a fast loop acts through its fast.actuator section (kubernetes, throttle)"
                ));
            }
            if fast_loop
                && lp.mode == Mode::Enforce
                && lp.fast.as_ref().is_none_or(|f| f.actuator.is_none())
            {
                out.push(format!(
                    "{path}.fast.actuator: mode enforce needs the fast loop's actuator \
                     (kubernetes and/or throttle); without one nothing could be carried out"
                ));
            }
            if !fast_loop && lp.mode == Mode::Enforce && lp.actuators.is_empty() {
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
        assert_eq!(
            lp.source,
            SourceConfig::Simulated(crate::sources::SimulatedConfig {
                seed: 7,
                targets: None
            })
        );
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
    fn a_fast_loop_enforces_through_its_own_actuator() {
        let fast = |mode: &str, extra: &str| {
            format!(
                "loops:\n  - name: f\n    kind: fast\n    mode: {mode}\n    policies: p\n{extra}"
            )
        };
        let error = Config::parse(&fast("enforce", ""), "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("loops[0].fast.actuator: mode enforce needs the fast loop's actuator"),
            "{error}"
        );
        assert!(!error.contains("loops[0].actuators"), "{error}");
        let weekly_list = fast(
            "dry-run",
            "    actuators: [ { patroni: { url: 'http://127.0.0.1:1' } } ]\n",
        );
        let error = Config::parse(&weekly_list, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("loops[0].actuators: a fast loop acts through its fast.actuator"),
            "{error}"
        );
        let empty = fast("enforce", "    fast:\n      actuator: {}\n");
        let error = Config::parse(&empty, "t.yaml").unwrap_err().to_string();
        assert!(
            error.contains("loops[0].fast.actuator: names neither kubernetes"),
            "{error}"
        );
        let ok = fast(
            "enforce",
            "    fast:\n      actuator: {throttle: {redis_url: 'redis://127.0.0.1:6379'}}\n      objects: {checkout: {k8s_name: checkout-v2}}\n",
        );
        let config = Config::parse(&ok, "t.yaml").unwrap();
        let fast = config.loops[0].fast.as_ref().unwrap();
        assert_eq!(
            fast.service_ref("checkout").labels["k8s_name"],
            "checkout-v2"
        );
        assert_eq!(fast.service_ref("search").labels["k8s_name"], "search");
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
        assert_eq!(otlp.headers["x-tenant"].expose(), "ops");
        assert_eq!(config.telemetry.service_name.as_deref(), Some("s"));
        // Written back, it reads the same but for the header values, secrets never printed.
        let written = serde_yaml::to_string(&config).unwrap();
        assert!(written.contains("x-tenant: (redacted)"), "{written}");
        let mut again = Config::parse(&written, "t.yaml").unwrap();
        if let Some(o) = again.telemetry.otlp.as_mut() {
            o.headers = otlp.headers.clone();
        }
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
