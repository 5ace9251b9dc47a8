//! One control loop: its schedule, window, plugin, source, classifier, policies, bounds,
//! limits and targets.

use super::*;

/// One control loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    /// Unique name, used in the journal, policies (`input.loop.name`) and kill switches.
    pub name: LoopName,
    /// What kind of loop it is (default `weekly`, the right-sizing loop).
    #[serde(default)]
    pub kind: crate::loops::LoopKind,
    /// When cycles run (cron, 5 fields or 6 with seconds, UTC). Default: Mondays 06:00.
    #[serde(default = "default_schedule")]
    pub schedule: Schedule,
    /// The observation window.
    #[serde(default)]
    pub window: WindowConfig,
    /// The plugin: `builtin:postgres`, a path to a `.wasm` component, or a component pinned
    /// by its digest: `{path: x.wasm, sha256: <hex>}`.
    #[serde(default = "default_plugin")]
    pub plugin: PluginRef,
    /// Where metrics come from.
    #[serde(default)]
    pub source: SourceConfig,
    /// The longest a cycle's observe stage may take, every query and retry included (default
    /// 5m): a source that hangs or trickles costs at most this. A metric not answered by then
    /// is missing for the cycle — nothing shrinks on it — and the cycle says so. Training from
    /// the source (`train --from-source`) is not bound by it.
    #[serde(default = "default_observe_deadline")]
    pub observe_deadline: HumanDuration,
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
    /// The safety floor a scale-down may not go below: each dimension's weekly peaks over the
    /// window, projected by its trend, plus headroom.
    #[serde(default)]
    pub floor: FloorConfig,
    /// Sandbox limits for each plugin call.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Targets named in the configuration: their current size, the label values that name
    /// them in metric series, and targets that discovery does not find.
    #[serde(default)]
    pub targets: Vec<StaticTarget>,
    /// Inventory files listing more targets, as `targets:` does: one path or a list, relative
    /// to the config file; `.csv`, `.yaml`/`.yml` or `.json` (see [`read_inventory`]).
    #[serde(
        default,
        deserialize_with = "super::inventory::one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub inventory: Vec<PathBuf>,
    /// The targets read from `inventory` by [`Config::load`] (or
    /// [`Config::read_inventories`]), checked against `targets` and each other. Not a key of
    /// the file: the files are read again at every load.
    #[serde(skip)]
    pub inventoried: Vec<StaticTarget>,
    /// What carries out `act` verdicts in `enforce` mode, asked in this order: each operation
    /// of a plan goes to the first actuator that supports it (e.g. Patroni for parameters and
    /// restarts, then a webhook for resizes). Listing actuators in `dry-run` executes nothing.
    #[serde(default)]
    pub actuators: Vec<ActuatorConfig>,
    /// How `enforce` mode executes: retries and resumption after a crash.
    #[serde(default)]
    pub act: ActConfig,
    /// A loop of `kind: fast`: what it reads and forecasts, its services' limits and how its
    /// policy is called. Not allowed on a weekly loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast: Option<FastConfig>,
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
    /// The storage's provisioned IOPS, when it has a fixed allowance (a cloud volume):
    /// given to plugins and policies as the target's label [`PROVISIONED_IOPS_LABEL`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_iops: Option<u64>,
}

/// The target label carrying a declared target's `provisioned_iops`, so plugins
/// (`target.labels`) and policies (`input.target.labels.provisioned_iops`) see it as the other
/// facts about a target that the engine does not interpret itself.
pub const PROVISIONED_IOPS_LABEL: &str = "provisioned_iops";

impl StaticTarget {
    /// The target's labels with `provisioned_iops` among them, when it is given.
    pub fn labels_with_iops(&self) -> std::collections::BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        if let Some(iops) = self.provisioned_iops {
            labels.insert(PROVISIONED_IOPS_LABEL.to_string(), iops.to_string());
        }
        labels
    }
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
    /// Every target the configuration names: `targets:`, then the inventory files'.
    pub fn declared_targets(&self) -> impl Iterator<Item = &StaticTarget> + Clone {
        self.targets.iter().chain(&self.inventoried)
    }

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
            PluginRef::File { path, .. } => format!(
                "{}-rightsizing",
                path.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "plugin".to_string())
            ),
        };
        Self {
            plugin,
            name: LoopName(name),
            kind: crate::loops::LoopKind::default(),
            schedule: default_schedule(),
            window: WindowConfig::default(),
            source: SourceConfig::default(),
            observe_deadline: default_observe_deadline(),
            // The quickstart shows the learned classifier: trained on the simulator's history
            // at the first run, deterministically from the source's seed.
            classifier: ClassifierConfig::Model {
                thresholds: Thresholds::default(),
                train_on_simulator: true,
                fallback: None,
                max_age_days: default_max_model_age_days(),
            },
            policies: PolicyRef::Builtin,
            mode: Mode::DryRun,
            bounds: BoundsConfig::default(),
            floor: FloorConfig::default(),
            limits: LimitsConfig::default(),
            targets: Vec::new(),
            inventory: Vec::new(),
            inventoried: Vec::new(),
            actuators: Vec::new(),
            act: ActConfig::default(),
            fast: None,
        }
    }
}

fn default_observe_deadline() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn default_schedule() -> Schedule {
    Schedule::weekly()
}

fn default_plugin() -> PluginRef {
    PluginRef::Builtin("postgres".into())
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
    File {
        /// Where it is.
        path: PathBuf,
        /// The SHA-256 (lowercase hex) the file must have, when the loop pins it: a file
        /// swapped behind the loop is then refused at load rather than run.
        sha256: Option<String>,
    },
}

impl PluginRef {
    /// An unpinned component file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        PluginRef::File {
            path: path.into(),
            sha256: None,
        }
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginRef::Builtin(name) => write!(f, "builtin:{name}"),
            PluginRef::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

impl Serialize for PluginRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PluginRef::File {
                path,
                sha256: Some(sha256),
            } => {
                use serde::ser::SerializeStruct;
                let mut pinned = serializer.serialize_struct("PinnedPlugin", 2)?;
                pinned.serialize_field("path", path)?;
                pinned.serialize_field("sha256", sha256)?;
                pinned.end()
            }
            _ => serializer.collect_str(self),
        }
    }
}

/// `plugin: {path, sha256}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinnedPlugin {
    path: String,
    sha256: String,
}

impl<'de> Deserialize<'de> for PluginRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PluginVisitor;
        impl<'de> serde::de::Visitor<'de> for PluginVisitor {
            type Value = PluginRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("builtin:<name>, a path to a .wasm component, or {path, sha256}")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PluginRef, E> {
                PluginRef::parse(text).map_err(E::custom)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PluginRef, A::Error> {
                use serde::de::Error;
                let pinned =
                    PinnedPlugin::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let PluginRef::File { path, .. } =
                    PluginRef::parse(&pinned.path).map_err(A::Error::custom)?
                else {
                    return Err(A::Error::custom(
                        "plugin.path: a builtin plugin is part of setpoint's binary and needs no pin",
                    ));
                };
                let sha256 = pinned.sha256.trim().to_ascii_lowercase();
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(A::Error::custom(format!(
                        "plugin.sha256: {:?} is not a SHA-256 digest (64 hex digits; `setpoint plugin inspect {}` prints it)",
                        pinned.sha256, pinned.path
                    )));
                }
                Ok(PluginRef::File {
                    path,
                    sha256: Some(sha256),
                })
            }
        }
        deserializer.deserialize_any(PluginVisitor)
    }
}

impl PluginRef {
    /// `builtin:<name>` or a path to a `.wasm` component.
    fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("builtin:") {
            let known: Vec<&str> = setpoint_plugins_bundled::all()
                .iter()
                .map(|(n, _)| *n)
                .collect();
            if known.contains(&name) {
                Ok(PluginRef::Builtin(name.to_string()))
            } else {
                Err(format!(
                    "unknown builtin plugin {name:?}; builtin plugins: {}",
                    known.join(", ")
                ))
            }
        } else if text.ends_with(".wasm") {
            Ok(PluginRef::file(text))
        } else {
            Err(format!(
                "invalid plugin {text:?}: use builtin:<name>, a path to a .wasm component, or {{path, sha256}}"
            ))
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
    /// promote`). A model that is missing, older than `max_age_days` or trained on other
    /// features than the plugin's stops the cycle with the reason, unless `fallback:
    /// bootstrap` is set — and then every affected row says the heuristics decided, and why.
    Model {
        /// The bootstrap heuristics' thresholds, for a fallback.
        #[serde(default)]
        thresholds: Thresholds,
        /// With no promoted model, train one on the simulator's history of the plugin's
        /// scenarios at the first cycle, register and promote it (the quickstart does).
        #[serde(default)]
        train_on_simulator: bool,
        /// What decides when the model cannot: nothing (the default: the cycle fails and says
        /// why), or `bootstrap`, the heuristics, said on every row.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<ModelFallback>,
        /// A promoted model older than this many days is stale (default 90).
        #[serde(default = "default_max_model_age_days")]
        max_age_days: u32,
    },
}

/// What classifies when a loop's model cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFallback {
    /// The bootstrap heuristics, with the reason on every row.
    Bootstrap,
}

fn default_max_model_age_days() -> u32 {
    90
}

/// Without a `classifier:` key a loop uses the bootstrap heuristics: a model is only used
/// when the config asks for one, so that none is ever assumed.
impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig::Bootstrap {
            thresholds: Thresholds::default(),
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

/// The safety floor's settings (see [`setpoint_core::floor`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloorConfig {
    /// Fraction added on top of the projected peak (default 0.15, as VPA's safety margin).
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Weeks ahead a dimension's peak is projected by its trend (default 4: until the weekly
    /// loop has seen enough again to scale back up).
    #[serde(default = "default_horizon_weeks")]
    pub horizon_weeks: f64,
    /// Least share of a week's samples present for the week to count as evidence for a
    /// shrink (default 0.8); a thinner week keeps that dimension's size.
    #[serde(default = "default_min_coverage")]
    pub min_coverage: f64,
}

fn default_headroom() -> f64 {
    setpoint_core::FloorSettings::default().headroom
}
fn default_horizon_weeks() -> f64 {
    setpoint_core::FloorSettings::default().horizon_weeks
}
fn default_min_coverage() -> f64 {
    setpoint_core::FloorSettings::default().min_coverage
}

impl Default for FloorConfig {
    fn default() -> Self {
        Self {
            headroom: default_headroom(),
            horizon_weeks: default_horizon_weeks(),
            min_coverage: default_min_coverage(),
        }
    }
}

impl FloorConfig {
    /// The settings in the engine's terms.
    pub fn resolve(&self) -> setpoint_core::FloorSettings {
        setpoint_core::FloorSettings {
            headroom: self.headroom,
            horizon_weeks: self.horizon_weeks,
            min_coverage: self.min_coverage,
        }
    }

    pub(super) fn problems(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, value: f64, range: std::ops::RangeInclusive<f64>| {
            if !range.contains(&value) {
                out.push(format!(
                    "{path}.{name}: {value} is outside {}..={}",
                    range.start(),
                    range.end()
                ));
            }
        };
        check("headroom", self.headroom, 0.0..=10.0);
        check("horizon_weeks", self.horizon_weeks, 0.0..=52.0);
        check("min_coverage", self.min_coverage, 0.0..=1.0);
        out
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

    pub(super) fn problems(&self, path: &str) -> Vec<String> {
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
