//! The metric sources a loop's configuration can name, registered in one list.
//!
//! A source kind is one module: its configuration type (serde, beside the source) implements
//! [`SourceSpec`], and one line in the [`sources!`] list below makes it a `kind:` under a
//! loop's `source:` — parsed, printed back and built.

mod prometheus;
mod simulated;

use std::sync::Arc;

use setpoint_core::PluginDescriptor;
use setpoint_observe::{MetricSource, ObserveError};

pub use simulated::SimulatedConfig;

/// What building a source may use besides its own configuration.
pub struct SourceContext<'a> {
    /// The loop's plugin: its technology and the scenarios a simulator plays.
    pub descriptor: &'a PluginDescriptor,
}

/// What the engine needs of a source's configuration.
pub trait SourceSpec {
    /// The source's `kind:`.
    const KIND: &'static str;

    /// A name for the source in errors and logs (its URL, or its seed).
    fn describe(&self) -> String;

    /// The seed of a deterministic source, used to train a first model on the simulator
    /// reproducibly; `None` for a live source.
    fn seed(&self) -> Option<u64> {
        None
    }

    /// Builds the source (checks what can be checked before any cycle: URLs, files).
    fn build(&self, context: &SourceContext<'_>) -> Result<Arc<dyn MetricSource>, ObserveError>;
}

/// Registers the source kinds: each `Variant(Config)` line adds a `kind:` (the config's
/// [`SourceSpec::KIND`], which must equal the variant's snake_case name, as serde tags it).
macro_rules! sources {
    ($($(#[$doc:meta])* $variant:ident($config:ty)),+ $(,)?) => {
        /// Where a loop's metrics come from: a map tagged by `kind:`.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum SourceConfig {
            $($(#[$doc])* $variant($config),)+
        }

        impl SourceConfig {
            /// Every source kind, as written under `source: kind:`.
            pub const KINDS: &'static [&'static str] = &[$(<$config as SourceSpec>::KIND),+];

            /// The source's `kind:`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(SourceConfig::$variant(_) => <$config as SourceSpec>::KIND,)+
                }
            }

            /// A name for the source in errors and logs.
            pub fn describe(&self) -> String {
                match self {
                    $(SourceConfig::$variant(c) => c.describe(),)+
                }
            }

            /// The seed of a deterministic source; `None` for a live one.
            pub fn seed(&self) -> Option<u64> {
                match self {
                    $(SourceConfig::$variant(c) => c.seed(),)+
                }
            }

            /// Builds the source.
            pub fn build(
                &self,
                context: &SourceContext<'_>,
            ) -> Result<Arc<dyn MetricSource>, ObserveError> {
                match self {
                    $(SourceConfig::$variant(c) => c.build(context),)+
                }
            }
        }
    };
}

sources! {
    /// The embedded, deterministic simulated fleet.
    Simulated(SimulatedConfig),
    /// A Prometheus-compatible server: Prometheus, VictoriaMetrics, Thanos, Mimir.
    Prometheus(setpoint_observe::PrometheusConfig),
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig::Simulated(SimulatedConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_its_variants_serde_tag() {
        for (config, kind) in [
            (SourceConfig::default(), "simulated"),
            (
                SourceConfig::Prometheus(setpoint_observe::PrometheusConfig::new(
                    "http://127.0.0.1:9090",
                )),
                "prometheus",
            ),
        ] {
            assert_eq!(config.kind(), kind);
            let written = serde_json::to_value(&config).unwrap_or_default();
            assert_eq!(written["kind"], kind, "{written}");
        }
        assert_eq!(SourceConfig::KINDS, ["simulated", "prometheus"]);
    }

    #[test]
    fn an_unknown_kind_names_the_known_ones() {
        let error = serde_yaml::from_str::<SourceConfig>("kind: graphite\nurl: x\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("graphite"), "{error}");
        assert!(
            error.contains("simulated") && error.contains("prometheus"),
            "{error}"
        );
    }
}
