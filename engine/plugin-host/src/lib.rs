//! The sandboxed plugin host.
//!
//! Plugins are WASM components of the `adapter` world in `sdk/wit/setpoint.wit`. The host gives
//! them nothing but a log: the linker provides no WASI, so a plugin has no files, network,
//! environment or clock, and one that imports anything else fails to load. Every call runs in a
//! fresh [`Store`] — cheap with a pre-instantiated component — with three bounds:
//!
//! - **fuel**, a deterministic CPU budget (the same input fails the same way on replay);
//! - **memory**, through a resource limiter that refuses growth beyond the limit;
//! - **wall clock**, an epoch deadline advanced by a ticker thread, as a backstop.
//!
//! A trap therefore poisons nothing beyond the call that caused it: the next target gets a new
//! instance. Errors always name the plugin, the target and the call, and say in plain words
//! which bound was hit, or the panic message the plugin reported through its log.

mod convert;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use setpoint_core::{
    Bounds, Classification, FeatureVector, MetricSeries, PluginDescriptor, Proposal, Target, Window,
};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};

mod bindings {
    wasmtime::component::bindgen!({
        world: "adapter",
        path: "../../sdk/wit",
    });
}

use bindings::setpoint::plugin::host::Level;

/// The ABI version this host speaks; plugins declare theirs in `describe()`.
pub const ABI_VERSION: u32 = 1;

/// How often the ticker advances the epoch; the wall-clock limit is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The prefix the SDK's panic hook puts before a panic message.
const PANIC_PREFIX: &str = "panic: ";

/// Per-call sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU budget per call in fuel units (about one per WASM instruction).
    pub fuel_per_call: u64,
    /// Largest linear memory a plugin instance may have, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock backstop per call.
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
    /// The plugin speaks another ABI version.
    #[error("plugin {source_name}: ABI version {found}, but this host speaks {expected}")]
    Incompatible {
        /// Where the plugin came from.
        source_name: String,
        /// The plugin's version.
        found: u32,
        /// The host's version.
        expected: u32,
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
    panic: Option<String>,
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
            self.panic = Some(panic.to_string());
        }
        let plugin = &*self.plugin;
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
    linker: Arc<Linker<CallState>>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("limits", &self.limits)
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
            linker: Arc::new(linker),
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// The limits every call runs within.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles and checks a plugin component: it must import nothing the sandbox does not
    /// offer, speak this host's ABI version and describe itself validly.
    pub fn load(&self, source: &str, wasm: &[u8]) -> Result<Plugin, PluginError> {
        let load_error = |message: String| PluginError::Load {
            source_name: source.to_string(),
            message,
        };
        let component =
            Component::new(&self.engine, wasm).map_err(|e| load_error(format!("{e:#}")))?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            load_error(format!(
                "{e:#} (a plugin may import only setpoint:plugin/host)"
            ))
        })?;
        let pre = bindings::AdapterPre::new(pre).map_err(|e| load_error(format!("{e:#}")))?;
        let raw = run_call(self, &pre, source, "", Call::Describe, |adapter, store| {
            adapter.call_describe(store)
        })
        .map_err(|error| match error {
            PluginError::Call { failure, .. } => PluginError::Describe {
                source_name: source.to_string(),
                failure,
            },
            other => other,
        })?;
        if raw.abi_version != ABI_VERSION {
            return Err(PluginError::Incompatible {
                source_name: source.to_string(),
                found: raw.abi_version,
                expected: ABI_VERSION,
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
            }),
        })
    }
}

struct PluginInner {
    host: PluginHost,
    pre: bindings::AdapterPre<CallState>,
    descriptor: PluginDescriptor,
    source: String,
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

    /// Computes a target's features from its samples.
    pub fn features(
        &self,
        target: &Target,
        window: &Window,
        series: &[MetricSeries],
    ) -> Result<FeatureVector, PluginError> {
        let wit_target = convert::target(target);
        let wit_window = convert::window(window);
        let wit_series: Vec<_> = series.iter().map(convert::series).collect();
        let raw = self.call(&target.id, Call::Features, |adapter, store| {
            adapter.call_features(store, &wit_target, wit_window, &wit_series)
        })?;
        let raw = raw.map_err(|e| self.failure(&target.id, Call::Features, rejected(e)))?;
        convert::features(raw, &self.inner.descriptor).map_err(|message| {
            self.failure(
                &target.id,
                Call::Features,
                Failure::InvalidOutput { message },
            )
        })
    }

    /// Asks the plugin for one plan per feasible action kind.
    pub fn propose(
        &self,
        target: &Target,
        classification: &Classification,
        features: &FeatureVector,
        bounds: &Bounds,
    ) -> Result<Vec<Proposal>, PluginError> {
        let request = convert::propose_request(target, classification, features, bounds);
        let raw = self.call(&target.id, Call::Propose, |adapter, store| {
            adapter.call_propose(store, &request)
        })?;
        let raw = raw.map_err(|e| self.failure(&target.id, Call::Propose, rejected(e)))?;
        convert::proposals(raw, &self.inner.descriptor).map_err(|message| {
            self.failure(
                &target.id,
                Call::Propose,
                Failure::InvalidOutput { message },
            )
        })
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
        f: impl FnOnce(&bindings::Adapter, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        run_call(
            &self.inner.host,
            &self.inner.pre,
            &self.inner.descriptor.name,
            target,
            call,
            f,
        )
    }
}

/// Runs one call in a fresh, bounded store, so that a trap poisons nothing beyond it.
fn run_call<R>(
    host: &PluginHost,
    pre: &bindings::AdapterPre<CallState>,
    plugin: &str,
    target: &str,
    call: Call,
    f: impl FnOnce(&bindings::Adapter, &mut Store<CallState>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    let limits = host.limits;
    let fail = |failure| PluginError::Call {
        plugin: plugin.to_string(),
        target: target.to_string(),
        call,
        failure,
    };
    let mut store = Store::new(
        &host.engine,
        CallState {
            plugin: Arc::from(plugin),
            memory_limit: limits.memory_bytes,
            memory_refused: false,
            panic: None,
        },
    );
    store.limiter(|state| state);
    store.set_fuel(limits.fuel_per_call).map_err(|e| {
        fail(Failure::Trap {
            message: format!("{e:#}"),
        })
    })?;
    let ticks = (limits.wall_clock.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    store.set_epoch_deadline(ticks);
    let result = pre
        .instantiate(&mut store)
        .and_then(|adapter| f(&adapter, &mut store));
    result.map_err(|error| fail(classify_trap(&error, store.data(), limits)))
}

fn rejected(e: bindings::setpoint::plugin::types::PluginError) -> Failure {
    Failure::Rejected {
        code: e.code,
        message: e.message,
    }
}

/// Names the bound a failed call hit, from the trap and what the store saw.
fn classify_trap(error: &wasmtime::Error, state: &CallState, limits: Limits) -> Failure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel {
            fuel: limits.fuel_per_call,
        },
        Some(Trap::Interrupt) => Failure::Timeout {
            limit: limits.wall_clock,
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
