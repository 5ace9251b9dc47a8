//! The sandboxed plugin host.
//!
//! Plugins are WASM components of the `adapter` world in `sdk/wit/setpoint.wit`. The host gives
//! them nothing but a log: the linker provides no WASI, so a plugin has no files, network,
//! environment or clock, and one that imports anything else fails to load. Every call runs with
//! three bounds, renewed for the call:
//!
//! - **fuel**, a deterministic CPU budget (the same input fails the same way on replay);
//! - **memory**, through a resource limiter that refuses growth beyond the limit;
//! - **wall clock**, an epoch deadline advanced by a ticker thread, as a backstop.
//!
//! An instance that finished a call cleanly is kept and serves the plugin's next calls (a
//! plugin is a function of its inputs; instantiating one per call costs more than the call
//! itself). An instance that trapped is dropped, so a trap poisons nothing beyond the call that
//! caused it: the next target gets a fresh instance. When a [`Meter`] is set every call gets a
//! fresh instance, so that its memory figure is that call's alone. Errors always name the plugin, the target and the call, and say in plain words
//! which bound was hit, or the panic message the plugin reported through its log.
//!
//! What a plugin hands back is bounded too ([`OutputLimits`]): the bytes the host copies out of
//! one call, and the length of every list and string, so a plugin cannot make the host
//! allocate what its own memory limit would not allow. Compiled plugins can be kept on disk
//! ([`CompileCache`]) so a start does not recompile them.

mod cache;
mod convert;
mod output;
mod usage;

pub use cache::{CacheOutcome, CacheStats, CompileCache};
pub use output::OutputLimits;
pub use usage::{CallUsage, Meter};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use setpoint_core::{
    Bounds, Classification, FeatureVector, MetricSeries, PluginDescriptor, Proposal, Target, Window,
};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

// The generated types are documented in the WIT; `fuzzing` makes them reachable, undocumented.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "adapter",
        path: "../../sdk/wit",
    });
}

/// The checks a plugin's `features()` and `propose()` answers go through before the engine
/// uses them — the output bounds, then the contract — on answers made without a plugin, for
/// the fuzz targets in `fuzz/`. Not part of the crate's API.
#[doc(hidden)]
pub mod fuzzing {
    use setpoint_core::{Bounds, FeatureVector, PluginDescriptor, Proposal, Resources};

    use crate::{OutputLimits, convert};

    /// The contract's types, as a plugin hands them back.
    pub use crate::bindings::setpoint::plugin::types as wit;

    /// What [`crate::Plugin::features_batch`] makes of one target's `raw` answer.
    pub fn features(
        limits: &OutputLimits,
        raw: wit::FeatureVector,
        descriptor: &PluginDescriptor,
    ) -> Result<FeatureVector, String> {
        limits.features(&raw)?;
        convert::features(raw, descriptor)
    }

    /// What [`crate::Plugin::propose_batch`] makes of one target's `raw` answer.
    pub fn proposals(
        limits: &OutputLimits,
        raw: Vec<wit::Proposal>,
        descriptor: &PluginDescriptor,
        current: &Resources,
        bounds: &Bounds,
    ) -> Result<Vec<Proposal>, String> {
        limits.proposals(&raw)?;
        convert::proposals(raw, descriptor, current, bounds)
    }
}

use bindings::setpoint::plugin::host::Level;
use bindings::setpoint::plugin::types::PluginError as WitPluginError;

/// One target's input to [`Plugin::features_batch`].
#[derive(Debug, Clone, Copy)]
pub struct FeaturesInput<'a> {
    /// The target.
    pub target: &'a Target,
    /// Its samples, one entry per metric.
    pub series: &'a [MetricSeries],
}

/// One target's input to [`Plugin::propose_batch`].
#[derive(Debug, Clone, Copy)]
pub struct ProposeInput<'a> {
    /// The target.
    pub target: &'a Target,
    /// Its class.
    pub classification: &'a Classification,
    /// Its feature vector.
    pub features: &'a FeatureVector,
}

/// How many of `inputs`, from the first, go in the next batch: at most [`MAX_BATCH_TARGETS`]
/// and [`MAX_BATCH_POINTS`] points, and at least one.
fn batch_size<I>(inputs: &[I], points: impl Fn(&I) -> usize) -> usize {
    let mut total = 0usize;
    let mut n = 0;
    for input in inputs.iter().take(MAX_BATCH_TARGETS) {
        total = total.saturating_add(points(input));
        if n > 0 && total > MAX_BATCH_POINTS {
            break;
        }
        n += 1;
    }
    n.max(1).min(inputs.len())
}

/// The contract version this host speaks: the WIT package version of `sdk/wit/setpoint.wit`.
/// Plugins declare theirs in `describe()` and in the names of their imports.
pub const ABI_VERSION: &str = "0.5.0";

/// The SHA-256 digest of a plugin's component, in lowercase hex: what a loop pins it by
/// (`plugin: {path, sha256}`) and `setpoint plugin inspect` prints.
pub fn digest(wasm: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(wasm)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether a plugin built for `plugin` can run on a host speaking `host`: the same major
/// version (for 0.x, the same minor — before 1.0 a minor release may break), no newer than the
/// host's. `Err` says why not, in words a plugin author can act on.
pub fn abi_compatible(plugin: &str, host: &str) -> Result<(), String> {
    let parse = |text: &str, whose: &str| {
        semver::Version::parse(text.trim())
            .map_err(|e| format!("{whose} ABI version {text:?} is not major.minor.patch: {e}"))
    };
    let (p, h) = (parse(plugin, "the plugin's")?, parse(host, "the host's")?);
    let same_line = if h.major == 0 {
        p.major == 0 && p.minor == h.minor
    } else {
        p.major == h.major
    };
    if !same_line {
        return Err(format!(
            "built for plugin ABI {p}, but this setpoint speaks {h}; rebuild the plugin against setpoint-sdk {}.{}",
            h.major, h.minor
        ));
    }
    if p > h {
        return Err(format!(
            "built for plugin ABI {p}, newer than this setpoint's {h}; upgrade setpoint"
        ));
    }
    Ok(())
}

/// The contract version in the name of a plugin's import (`setpoint:plugin/host@0.1.0`).
fn import_abi(name: &str) -> Option<&str> {
    name.strip_prefix("setpoint:plugin/")
        .and_then(|rest| rest.split_once('@'))
        .map(|(_, version)| version)
}

/// Targets in one batch call at most. Beyond a few dozen the fixed cost per call is already
/// amortised; the cap bounds what one failed batch costs to redo target by target.
pub const MAX_BATCH_TARGETS: usize = 128;

/// Points (samples or weekly aggregates, all metrics) in one `features` batch at most, so a
/// batch of raw samples stays well inside one call's fuel and memory. A single target with
/// more is still sent, alone.
pub const MAX_BATCH_POINTS: usize = 1 << 18;

/// Instances that may be alive at once (one per call in flight).
const POOL_SLOTS: u32 = 64;

/// Clean instances a plugin keeps for its next calls.
const IDLE_INSTANCES: usize = 4;

/// Calls one instance serves before it is replaced, bounding what a plugin that leaks memory
/// or state can accumulate.
const CALLS_PER_INSTANCE: u32 = 10_000;

/// How often the ticker advances the epoch; the wall-clock limit is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The prefix the SDK's panic hook puts before a panic message.
const PANIC_PREFIX: &str = "panic: ";

/// Log lines a plugin may write in one call; later ones are dropped (and the drop logged once).
const MAX_LOG_LINES: usize = 100;

/// The part of wasmtime's error text that says a call's results (or a log line) exceeded the
/// store's hostcall fuel. wasmtime's error type for it is private; the sandbox tests pin it.
const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Per-call sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU budget per call in fuel units (about one per WASM instruction). A batch shares one
    /// budget; one that runs out is retried target by target, each with a budget of its own.
    pub fuel_per_call: u64,
    /// Largest linear memory a plugin instance may have, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock backstop per call (a batch shares one, as it shares the fuel).
    pub wall_clock: Duration,
}

impl Default for Limits {
    /// 2·10⁹ fuel is ~100× what the PostgreSQL plugin needs for five weeks of 5-minute samples
    /// of four metrics, yet stops a runaway loop in well under a second.
    fn default() -> Self {
        Self {
            fuel_per_call: 2_000_000_000,
            memory_bytes: 64 * 1024 * 1024,
            wall_clock: Duration::from_secs(2),
        }
    }
}

/// The plugin call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `describe()`
    Describe,
    /// `features()`
    Features,
    /// `propose()`
    Propose,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Call::Describe => "describe()",
            Call::Features => "features()",
            Call::Propose => "propose()",
        })
    }
}

/// What went wrong in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The CPU budget ran out.
    OutOfFuel {
        /// The budget.
        fuel: u64,
    },
    /// The wall-clock backstop fired.
    Timeout {
        /// The limit.
        limit: Duration,
    },
    /// The plugin asked for more memory than allowed.
    MemoryLimit {
        /// The limit in bytes.
        limit: usize,
    },
    /// The plugin panicked (message from its panic hook).
    Panic {
        /// The panic message.
        message: String,
    },
    /// Any other trap.
    Trap {
        /// The trap, as wasmtime describes it.
        message: String,
    },
    /// The plugin returned an error of its own.
    Rejected {
        /// The plugin's code.
        code: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin returned something that breaks the contract.
    InvalidOutput {
        /// What is wrong.
        message: String,
    },
    /// The plugin returned (or logged) more than the host accepts; see [`OutputLimits`].
    OutputTooLarge {
        /// Which bound, and by how much.
        what: String,
    },
    /// The plugin overflowed its call stack (runaway recursion).
    StackOverflow,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::OutOfFuel { fuel } => {
                write!(f, "ran out of its CPU budget ({fuel} fuel units)")
            }
            Failure::Timeout { limit } => {
                write!(f, "exceeded its wall-clock limit of {limit:?}")
            }
            Failure::MemoryLimit { limit } => write!(
                f,
                "exceeded its memory limit of {} MiB",
                limit / (1024 * 1024)
            ),
            Failure::Panic { message } => write!(f, "panicked: {message}"),
            Failure::Trap { message } => write!(f, "trapped: {message}"),
            Failure::Rejected { code, message } => write!(f, "refused ({code}): {message}"),
            Failure::InvalidOutput { message } => {
                write!(f, "returned output that breaks the contract: {message}")
            }
            Failure::OutputTooLarge { what } => write!(f, "returned output too large: {what}"),
            Failure::StackOverflow => {
                write!(f, "overflowed its call stack (runaway recursion?)")
            }
        }
    }
}

/// Errors of the plugin host.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The wasmtime engine could not be configured.
    #[error("cannot set up the plugin sandbox: {message}")]
    Setup {
        /// What failed.
        message: String,
    },
    /// The bytes are not a loadable component, or it imports what the sandbox does not offer.
    #[error("plugin {source_name}: cannot load: {message}")]
    Load {
        /// Where the plugin came from (`builtin:postgres`, a path).
        source_name: String,
        /// What failed.
        message: String,
    },
    /// The component imports what the sandbox does not offer (WASI, another host's API).
    #[error(
        "plugin {source_name}: cannot load: it imports {}, which the sandbox does not offer (a plugin may import only setpoint:plugin/host)",
        imports.join(", ")
    )]
    Forbidden {
        /// Where the plugin came from.
        source_name: String,
        /// The imports the sandbox does not offer, as the component names them.
        imports: Vec<String>,
    },
    /// The plugin speaks another ABI version.
    #[error("plugin {source_name}: {reason}")]
    Incompatible {
        /// Where the plugin came from.
        source_name: String,
        /// The two versions and what to do about them.
        reason: String,
    },
    /// `describe()` failed or returned an invalid descriptor.
    #[error("plugin {source_name}: describe() {failure}")]
    Describe {
        /// Where the plugin came from.
        source_name: String,
        /// What happened.
        failure: Failure,
    },
    /// A call for one target failed.
    #[error("plugin {plugin:?} failed on target {target:?} in {call}: {failure}")]
    Call {
        /// Plugin name.
        plugin: String,
        /// Target id.
        target: String,
        /// The call.
        call: Call,
        /// What happened.
        failure: Failure,
    },
}

impl PluginError {
    /// What went wrong, for callers that must tell failures apart.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            PluginError::Describe { failure, .. } | PluginError::Call { failure, .. } => {
                Some(failure)
            }
            _ => None,
        }
    }
}

/// State of one call's store.
struct CallState {
    plugin: Arc<str>,
    memory_limit: usize,
    memory_refused: bool,
    /// Largest linear memory granted, for [`CallUsage`].
    memory_peak: usize,
    panic: Option<String>,
    log_lines: usize,
    /// Longest log line or panic message kept, in bytes.
    max_log_bytes: usize,
}

impl ResourceLimiter for CallState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
        }
        self.memory_peak = self.memory_peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a plugin never needs many.
        Ok(desired <= 100_000)
    }
}

impl bindings::setpoint::plugin::host::Host for CallState {
    fn log(&mut self, level: Level, message: String) {
        if let Some(panic) = message.strip_prefix(PANIC_PREFIX) {
            self.panic = Some(truncate(panic, self.max_log_bytes));
        }
        self.log_lines += 1;
        let plugin = &*self.plugin;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(
                    plugin,
                    "more than {MAX_LOG_LINES} log lines in one call; dropping the rest"
                );
            }
            return;
        }
        let message = truncate(&message, self.max_log_bytes);
        match level {
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl bindings::setpoint::plugin::types::Host for CallState {}

/// Stops the epoch ticker thread when the last host handle goes away.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Loads and runs plugins. Cheap to share; one per set of limits.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    limits: Limits,
    output: OutputLimits,
    cache: Option<Arc<CompileCache>>,
    meter: Option<Meter>,
    linker: Arc<Linker<CallState>>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("limits", &self.limits)
            .field("output", &self.output)
            .field("cache", &self.cache.as_ref().map(|c| c.dir()))
            .finish()
    }
}

impl PluginHost {
    /// A host whose every call runs within `limits`.
    pub fn new(limits: Limits) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        config.epoch_interruption(true);
        // Every call instantiates afresh; the pooling allocator keeps that to microseconds by
        // reusing pre-reserved slots instead of mapping memory per instance. Its slots are
        // sized to the per-call limits, so they double as the memory bound.
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 4)
            .total_memories(POOL_SLOTS * 4)
            .total_tables(POOL_SLOTS * 4)
            .max_memory_size(limits.memory_bytes);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::Setup {
            message: format!("{e:#}"),
        })?;
        let mut linker = Linker::new(&engine);
        bindings::Adapter::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Setup {
                message: format!("{e:#}"),
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("setpoint-plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Setup {
                    message: format!("cannot start the epoch ticker: {e}"),
                })?;
        }
        Ok(Self {
            engine,
            limits,
            output: OutputLimits::default(),
            cache: None,
            meter: None,
            linker: Arc::new(linker),
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// The same host with other bounds on plugins' outputs.
    pub fn with_output_limits(mut self, output: OutputLimits) -> Self {
        self.output = output;
        self
    }

    /// The same host, keeping compiled plugins in `cache` (see [`CompileCache`]).
    pub fn with_cache(mut self, cache: Arc<CompileCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The same host, reporting every call's usage to `meter`.
    pub fn with_meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// The limits every call runs within.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The bounds on plugins' outputs.
    pub fn output_limits(&self) -> OutputLimits {
        self.output
    }

    /// The compiled-plugin cache, if any.
    pub fn cache(&self) -> Option<&Arc<CompileCache>> {
        self.cache.as_ref()
    }

    /// Compiles `wasm`, through the cache when there is one.
    fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        match &self.cache {
            Some(cache) => Ok(cache.load_or_compile(&self.engine, wasm)?.0),
            None => Component::new(&self.engine, wasm),
        }
    }

    /// The component's imports outside the `setpoint:plugin` package: capabilities the
    /// sandbox never gives.
    fn forbidden_imports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name)
            .filter(|name| !name.starts_with("setpoint:plugin/"))
            .map(str::to_string)
            .collect()
    }

    /// Compiles and checks a plugin component: it must import nothing the sandbox does not
    /// offer, speak this host's ABI version and describe itself validly.
    pub fn load(&self, source: &str, wasm: &[u8]) -> Result<Plugin, PluginError> {
        let load_error = |message: String| PluginError::Load {
            source_name: source.to_string(),
            message,
        };
        let component = self
            .compile(wasm)
            .map_err(|e| load_error(format!("{e:#}")))?;
        // A plugin built for another contract version imports the host interface under that
        // version; say so plainly rather than report it as a forbidden import.
        for (name, _) in component.component_type().imports(&self.engine) {
            if let Some(version) = import_abi(name)
                && version != ABI_VERSION
                && let Err(reason) = abi_compatible(version, ABI_VERSION)
            {
                return Err(PluginError::Incompatible {
                    source_name: source.to_string(),
                    reason,
                });
            }
        }
        let forbidden = self.forbidden_imports(&component);
        if !forbidden.is_empty() {
            return Err(PluginError::Forbidden {
                source_name: source.to_string(),
                imports: forbidden,
            });
        }
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            load_error(format!(
                "{e:#} (a plugin may import only setpoint:plugin/host)"
            ))
        })?;
        let pre = bindings::AdapterPre::new(pre).map_err(|e| load_error(format!("{e:#}")))?;
        let (raw, _) = run_call(
            self,
            &pre,
            source,
            "",
            Call::Describe,
            1,
            None,
            |adapter, store| adapter.call_describe(store),
        );
        let raw = raw.map_err(|error| match error {
            PluginError::Call { failure, .. } => PluginError::Describe {
                source_name: source.to_string(),
                failure,
            },
            other => other,
        })?;
        if let Err(what) = self.output.descriptor(&raw) {
            return Err(PluginError::Describe {
                source_name: source.to_string(),
                failure: Failure::OutputTooLarge { what },
            });
        }
        if let Err(reason) = abi_compatible(&raw.abi_version, ABI_VERSION) {
            return Err(PluginError::Incompatible {
                source_name: source.to_string(),
                reason,
            });
        }
        let descriptor = convert::descriptor(raw).map_err(|message| PluginError::Describe {
            source_name: source.to_string(),
            failure: Failure::InvalidOutput { message },
        })?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                host: self.clone(),
                pre,
                descriptor,
                source: source.to_string(),
                idle: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }
}

struct PluginInner {
    host: PluginHost,
    pre: bindings::AdapterPre<CallState>,
    descriptor: PluginDescriptor,
    source: String,
    /// Instances whose last call ended cleanly, ready for the next.
    idle: std::sync::Mutex<Vec<Instance>>,
}

/// A live instance of a plugin with its store, and how many calls it has served.
struct Instance {
    store: Store<CallState>,
    adapter: bindings::Adapter,
    calls: u32,
}

/// A loaded plugin. Cheap to clone; calls may run from several threads at once.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("source", &self.inner.source)
            .field("name", &self.inner.descriptor.name)
            .finish()
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.inner.descriptor.name
    }

    /// What the plugin declared at load.
    pub fn descriptor(&self) -> &PluginDescriptor {
        &self.inner.descriptor
    }

    /// Computes a target's features from its samples (a batch of one).
    pub fn features(
        &self,
        target: &Target,
        window: &Window,
        series: &[MetricSeries],
    ) -> Result<FeatureVector, PluginError> {
        let mut results = self.features_batch(window, &[FeaturesInput { target, series }]);
        results.pop().unwrap_or_else(|| {
            Err(self.failure(
                &target.id,
                Call::Features,
                Failure::InvalidOutput {
                    message: "no result".to_string(),
                },
            ))
        })
    }

    /// Computes every target's features from its samples over `window`: one result per input,
    /// in order. The targets cross in batches of up to [`MAX_BATCH_TARGETS`] targets and
    /// [`MAX_BATCH_POINTS`] points.
    pub fn features_batch(
        &self,
        window: &Window,
        inputs: &[FeaturesInput<'_>],
    ) -> Vec<Result<FeatureVector, PluginError>> {
        let wit_window = convert::window(window);
        let points = |input: &FeaturesInput<'_>| -> usize {
            input.series.iter().map(|s| s.values.len()).sum()
        };
        self.batched(
            Call::Features,
            inputs,
            |input| &input.target.id,
            points,
            |adapter, store, chunk| {
                let targets: Vec<&Target> = chunk.iter().map(|i| i.target).collect();
                let series: Vec<&[MetricSeries]> = chunk.iter().map(|i| i.series).collect();
                let batch = bindings::setpoint::plugin::types::FeaturesBatch {
                    window: wit_window,
                    targets: convert::target_columns(&targets),
                    series: convert::metric_columns(&series),
                };
                adapter.call_features(store, &batch)
            },
            |input, raw| {
                let id = &input.target.id;
                let raw = self.bounded(id, Call::Features, raw, |output, features| {
                    output.features(features)
                })?;
                convert::features(raw, &self.inner.descriptor).map_err(|message| {
                    self.failure(id, Call::Features, Failure::InvalidOutput { message })
                })
            },
        )
    }

    /// Asks the plugin for one plan per feasible action kind (a batch of one).
    pub fn propose(
        &self,
        target: &Target,
        classification: &Classification,
        features: &FeatureVector,
        bounds: &Bounds,
    ) -> Result<Vec<Proposal>, PluginError> {
        let input = ProposeInput {
            target,
            classification,
            features,
        };
        let mut results = self.propose_batch(&[input], bounds);
        results.pop().unwrap_or_else(|| {
            Err(self.failure(
                &target.id,
                Call::Propose,
                Failure::InvalidOutput {
                    message: "no result".to_string(),
                },
            ))
        })
    }

    /// Asks the plugin for every target's plans, within `bounds`: one result per input, in
    /// order, in batches of up to [`MAX_BATCH_TARGETS`] targets.
    pub fn propose_batch(
        &self,
        inputs: &[ProposeInput<'_>],
        bounds: &Bounds,
    ) -> Vec<Result<Vec<Proposal>, PluginError>> {
        let descriptor = &self.inner.descriptor;
        self.batched(
            Call::Propose,
            inputs,
            |input| &input.target.id,
            |_| 0,
            |adapter, store, chunk| {
                let batch = convert::propose_batch(chunk, &descriptor.features, bounds);
                adapter.call_propose(store, &batch)
            },
            |input, raw| {
                let id = &input.target.id;
                let raw = self.bounded(id, Call::Propose, raw, |output, proposals| {
                    output.proposals(proposals)
                })?;
                convert::proposals(raw, descriptor, &input.target.resources, bounds).map_err(
                    |message| self.failure(id, Call::Propose, Failure::InvalidOutput { message }),
                )
            },
        )
    }

    /// Runs `inputs` through the plugin in batches and checks each target's answer with
    /// `accept`. A batch that fails as a whole is run again one target per call; a metered host
    /// runs every target alone, so that each usage figure is one target's.
    #[allow(clippy::too_many_arguments)]
    fn batched<I, R, T>(
        &self,
        call: Call,
        inputs: &[I],
        id: impl Fn(&I) -> &str,
        points: impl Fn(&I) -> usize,
        invoke: impl Fn(
            &bindings::Adapter,
            &mut Store<CallState>,
            &[I],
        ) -> wasmtime::Result<Vec<Result<R, WitPluginError>>>,
        accept: impl Fn(&I, Result<R, WitPluginError>) -> Result<T, PluginError>,
    ) -> Vec<Result<T, PluginError>> {
        let one = |input: &I| -> Result<T, PluginError> {
            let rows = self.call(id(input), call, 1, |adapter, store| {
                invoke(adapter, store, std::slice::from_ref(input))
            })?;
            let n = rows.len();
            match <[_; 1]>::try_from(rows) {
                Ok([row]) => accept(input, row),
                Err(_) => Err(self.failure(
                    id(input),
                    call,
                    Failure::InvalidOutput {
                        message: format!("{n} results for one target"),
                    },
                )),
            }
        };
        let mut results = Vec::with_capacity(inputs.len());
        let alone = self.inner.host.meter.is_some();
        let mut rest = inputs;
        while !rest.is_empty() {
            let size = if alone { 1 } else { batch_size(rest, &points) };
            let (chunk, next) = rest.split_at(size);
            rest = next;
            if let [input] = chunk {
                results.push(one(input));
                continue;
            }
            let label = format!("a batch of {} targets", chunk.len());
            match self.call(&label, call, chunk.len(), |adapter, store| {
                invoke(adapter, store, chunk)
            }) {
                Ok(rows) if rows.len() == chunk.len() => {
                    results.extend(
                        chunk
                            .iter()
                            .zip(rows)
                            .map(|(input, row)| accept(input, row)),
                    );
                }
                outcome => {
                    let why = match &outcome {
                        Ok(rows) => format!("{} results", rows.len()),
                        Err(error) => error.to_string(),
                    };
                    tracing::debug!(
                        plugin = %self.inner.descriptor.name,
                        %call,
                        targets = chunk.len(),
                        %why,
                        "batch failed; running its targets one by one"
                    );
                    results.extend(chunk.iter().map(&one));
                }
            }
        }
        results
    }

    /// Applies the output bounds to a call's result, then turns a refusal into its failure.
    fn bounded<T>(
        &self,
        target: &str,
        call: Call,
        raw: Result<T, WitPluginError>,
        check: impl FnOnce(&OutputLimits, &T) -> Result<(), output::TooLarge>,
    ) -> Result<T, PluginError> {
        let output = &self.inner.host.output;
        let sized = match &raw {
            Ok(value) => check(output, value),
            Err(error) => output.rejection(error),
        };
        sized.map_err(|what| self.failure(target, call, Failure::OutputTooLarge { what }))?;
        raw.map_err(|e| self.failure(target, call, rejected(e)))
    }

    fn failure(&self, target: &str, call: Call, failure: Failure) -> PluginError {
        PluginError::Call {
            plugin: self.inner.descriptor.name.clone(),
            target: target.to_string(),
            call,
            failure,
        }
    }

    fn call<R>(
        &self,
        target: &str,
        call: Call,
        targets: usize,
        f: impl FnOnce(&bindings::Adapter, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let inner = &*self.inner;
        let reuse = inner.host.meter.is_none();
        let idle = if reuse {
            inner.idle.lock().ok().and_then(|mut idle| idle.pop())
        } else {
            None
        };
        let (result, instance) = run_call(
            &inner.host,
            &inner.pre,
            &inner.descriptor.name,
            target,
            call,
            targets,
            idle,
            f,
        );
        if let Some(instance) = instance.filter(|i| reuse && i.calls < CALLS_PER_INSTANCE)
            && let Ok(mut idle) = inner.idle.lock()
            && idle.len() < IDLE_INSTANCES
        {
            idle.push(instance);
        }
        result
    }
}

/// Runs one call for `targets` targets with fresh bounds, in `instance` or else a new one.
/// Gives the instance back when the call ended cleanly (a plugin's own refusal included),
/// never after a trap.
#[allow(clippy::too_many_arguments)]
fn run_call<R>(
    host: &PluginHost,
    pre: &bindings::AdapterPre<CallState>,
    plugin: &str,
    target: &str,
    call: Call,
    targets: usize,
    instance: Option<Instance>,
    f: impl FnOnce(&bindings::Adapter, &mut Store<CallState>) -> wasmtime::Result<R>,
) -> (Result<R, PluginError>, Option<Instance>) {
    let limits = host.limits;
    let fail = |failure| PluginError::Call {
        plugin: plugin.to_string(),
        target: target.to_string(),
        call,
        failure,
    };
    let started = Instant::now();
    let (mut store, adapter, calls) = match instance {
        Some(Instance {
            store,
            adapter,
            calls,
        }) => (store, Some(adapter), calls),
        None => {
            let mut store = Store::new(
                &host.engine,
                CallState {
                    plugin: Arc::from(plugin),
                    memory_limit: limits.memory_bytes,
                    memory_refused: false,
                    memory_peak: 0,
                    panic: None,
                    log_lines: 0,
                    max_log_bytes: host.output.max_line_bytes,
                },
            );
            store.limiter(|state| state);
            (store, None, 0)
        }
    };
    // What one call may do is counted afresh for every call, reused instance or not.
    let state = store.data_mut();
    state.memory_refused = false;
    state.panic = None;
    state.log_lines = 0;
    // The answer of a batch may be as large as its targets' answers together, but never
    // larger than the plugin's memory, where it has to be built first.
    let bytes = host.output.bytes_per_call;
    store.set_hostcall_fuel(
        bytes
            .saturating_mul(targets.max(1))
            .min(bytes.max(limits.memory_bytes)),
    );
    if let Err(e) = store.set_fuel(limits.fuel_per_call) {
        return (
            Err(fail(Failure::Trap {
                message: format!("{e:#}"),
            })),
            None,
        );
    }
    let ticks = (limits.wall_clock.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    let adapter = match adapter {
        Some(adapter) => Ok(adapter),
        None => pre.instantiate(&mut store),
    };
    let (result, adapter) = match adapter {
        Ok(adapter) => (f(&adapter, &mut store), Some(adapter)),
        Err(error) => (Err(error), None),
    };
    let result = result.map_err(|error| classify_trap(&error, store.data(), limits, host.output));
    if let Some(meter) = &host.meter {
        meter(&CallUsage {
            plugin: plugin.to_string(),
            target: target.to_string(),
            call,
            fuel: limits
                .fuel_per_call
                .saturating_sub(store.get_fuel().unwrap_or(0)),
            memory_bytes: store.data().memory_peak,
            elapsed: started.elapsed(),
            trap: result.as_ref().err().cloned(),
        });
    }
    match (result, adapter) {
        (Ok(value), Some(adapter)) => (
            Ok(value),
            Some(Instance {
                store,
                adapter,
                calls: calls + 1,
            }),
        ),
        (result, _) => (result.map_err(fail), None),
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), saying how long it was.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

fn rejected(e: WitPluginError) -> Failure {
    Failure::Rejected {
        code: e.code,
        message: e.message,
    }
}

/// Names the bound a failed call hit, from the trap and what the store saw.
fn classify_trap(
    error: &wasmtime::Error,
    state: &CallState,
    limits: Limits,
    output: OutputLimits,
) -> Failure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel {
            fuel: limits.fuel_per_call,
        },
        Some(Trap::Interrupt) => Failure::Timeout {
            limit: limits.wall_clock,
        },
        Some(Trap::StackOverflow) => Failure::StackOverflow,
        None if format!("{error:#}").contains(HOSTCALL_FUEL_EXHAUSTED) => Failure::OutputTooLarge {
            what: format!(
                "more than {} bytes of results or of one log line in one call",
                output.bytes_per_call
            ),
        },
        _ if state.memory_refused => Failure::MemoryLimit {
            limit: limits.memory_bytes,
        },
        _ => match &state.panic {
            Some(message) => Failure::Panic {
                message: message.clone(),
            },
            None => Failure::Trap {
                message: format!("{error:#}"),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_abi_version_is_the_wit_package_version() {
        let wit = include_str!("../../../sdk/wit/setpoint.wit");
        assert!(
            wit.contains(&format!("package setpoint:plugin@{ABI_VERSION};")),
            "bump ABI_VERSION with the WIT package"
        );
    }

    #[test]
    fn batches_are_cut_by_targets_and_points_and_never_empty() {
        let points = |n: &usize| *n;
        assert_eq!(batch_size::<usize>(&[], points), 0);
        assert_eq!(batch_size(&[16; 500], points), MAX_BATCH_TARGETS);
        assert_eq!(batch_size(&[16; 5], points), 5);
        let raw = MAX_BATCH_POINTS / 4;
        assert_eq!(batch_size(&[raw; 10], points), 4);
        // One target above the bound still goes, alone.
        assert_eq!(batch_size(&[MAX_BATCH_POINTS * 2, 1], points), 1);
    }

    #[test]
    fn series_cross_as_one_entry_per_metric_and_shape() {
        let series = |metric: &str, n: usize, weekly: bool| setpoint_core::MetricSeries {
            metric: metric.to_string(),
            timestamps_ms: (0..n as i64).collect(),
            values: vec![0.5; n],
            sample_counts: weekly.then(|| vec![7; n]),
        };
        let a = vec![series("cpu", 4, true), series("cpu", 9, true)];
        let b: Vec<setpoint_core::MetricSeries> = vec![];
        let c = vec![series("mem", 3, false), series("cpu", 2, true)];
        let columns = convert::metric_columns(&[&a, &b, &c]);
        assert_eq!(columns.len(), 2);
        assert_eq!(columns[0].metric, "cpu");
        assert_eq!(
            columns[0].point_ends,
            vec![4, 4, 6],
            "a second cpu of a is dropped"
        );
        assert_eq!(columns[0].sample_counts.as_ref().map(Vec::len), Some(6));
        assert_eq!(columns[1].metric, "mem");
        assert_eq!(columns[1].point_ends, vec![0, 0, 3]);
        assert!(columns[1].sample_counts.is_none());
    }

    #[test]
    fn compatibility_follows_semver_with_0x_minors_breaking() {
        assert!(abi_compatible("0.2.0", "0.2.3").is_ok());
        assert!(abi_compatible("0.2.3", "0.2.3").is_ok());
        let older = abi_compatible("0.1.0", "0.2.0").unwrap_err();
        assert!(
            older.contains("rebuild the plugin against setpoint-sdk 0.2"),
            "{older}"
        );
        let newer = abi_compatible("0.2.4", "0.2.3").unwrap_err();
        assert!(newer.contains("upgrade setpoint"), "{newer}");
        assert!(abi_compatible("1.4.0", "1.7.2").is_ok());
        assert!(abi_compatible("2.0.0", "1.7.2").is_err());
        let garbage = abi_compatible("two", "0.2.0").unwrap_err();
        assert!(garbage.contains("\"two\""), "{garbage}");
        assert_eq!(import_abi("setpoint:plugin/host@0.1.0"), Some("0.1.0"));
        assert_eq!(import_abi("wasi:io/poll@0.2.6"), None);
    }
}
