//! The metric sources a loop's configuration can name, registered in one list.
//!
//! A source kind is one module: its configuration type (serde, beside the source) implements
//! [`SourceSpec`], and one line in the [`sources!`] list below makes it a `kind:` under a
//! loop's `source:` — parsed, printed back and built.

mod prometheus;
mod simulated;
mod simulated_services;

use std::sync::Arc;

use serde::Deserialize as _;

use setpoint_core::PluginDescriptor;
use setpoint_observe::{MetricSource, ObserveError};

pub use simulated::SimulatedConfig;
pub use simulated_services::SimulatedServicesConfig;

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
        ///
        /// Deserialised by hand (see `SourceVisitor` in this module) rather than as a serde internally tagged
        /// enum, which buffers the whole map before reading it and so reports every error in it
        /// at the map's first line, without the field's name.
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        pub enum SourceConfig {
            $($(#[$doc])* $variant($config),)+
        }

        impl<'de> serde::Deserialize<'de> for SourceConfig {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_map(SourceVisitor)
            }
        }

        impl SourceVisitor {
            /// Reads the rest of the map as the configuration of the source kind `kind`.
            fn variant<'de, A: serde::de::MapAccess<'de>>(
                kind: &str,
                rest: A,
            ) -> Result<SourceConfig, A::Error> {
                let rest = serde::de::value::MapAccessDeserializer::new(rest);
                $(
                    if kind == <$config as SourceSpec>::KIND {
                        return <$config as serde::Deserialize>::deserialize(rest)
                            .map(SourceConfig::$variant);
                    }
                )+
                Err(serde::de::Error::unknown_variant(kind, SourceConfig::KINDS))
            }
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
    /// The embedded, deterministic simulated service fleet (for fast loops).
    SimulatedServices(SimulatedServicesConfig),
}

/// Reads a `source:` map as it streams in.
///
/// The entries before `kind:` (usually none: the examples and `config check` write it first)
/// are kept aside; once the kind is known, they and then the entries still unread are handed to
/// that kind's configuration type. The unread ones are read from the YAML parser itself, so an
/// error in one names its path (`loops[0].source.timeout`) and its own line; an error in one
/// kept aside names its key and the end of the map.
struct SourceVisitor;

impl<'de> serde::de::Visitor<'de> for SourceVisitor {
    type Value = SourceConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a map with a `kind:` (one of {})",
            SourceConfig::KINDS.join(", ")
        )
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SourceConfig, A::Error> {
        let mut before = Vec::new();
        let kind = loop {
            match map.next_key::<String>()? {
                Some(key) if key == "kind" => break map.next_value_seed(KindSeed)?,
                Some(key) => {
                    let value = map.next_value::<serde_yaml::Value>()?;
                    before.push((key, value));
                }
                None => return Err(serde::de::Error::missing_field("kind")),
            }
        };
        SourceVisitor::variant(
            kind,
            Entries {
                before: before.into_iter(),
                pending: None,
                rest: map,
            },
        )
    }
}

/// Reads the value of `kind:`, refusing an unknown kind there, so the error points at it.
struct KindSeed;

impl<'de> serde::de::DeserializeSeed<'de> for KindSeed {
    type Value = &'static str;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        let kind = String::deserialize(deserializer)?;
        SourceConfig::KINDS
            .iter()
            .find(|known| **known == kind)
            .copied()
            .ok_or_else(|| serde::de::Error::unknown_variant(&kind, SourceConfig::KINDS))
    }
}

/// The entries read before `kind:`, then those the parser has not reached yet.
struct Entries<A> {
    before: std::vec::IntoIter<(String, serde_yaml::Value)>,
    /// The entry whose key was just handed out from `before`, awaiting its value.
    pending: Option<(String, serde_yaml::Value)>,
    rest: A,
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for Entries<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::IntoDeserializer;
        match self.before.next() {
            Some((key, value)) => {
                let out = seed.deserialize(key.clone().into_deserializer())?;
                self.pending = Some((key, value));
                Ok(Some(out))
            }
            None => self.rest.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            // The value was parsed already: its position is gone, so its key is named instead.
            Some((key, value)) => seed
                .deserialize(value)
                .map_err(|error| serde::de::Error::custom(format_args!("{key}: {error}"))),
            None => self.rest.next_value_seed(seed),
        }
    }
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
            (
                SourceConfig::SimulatedServices(SimulatedServicesConfig::default()),
                "simulated_services",
            ),
        ] {
            assert_eq!(config.kind(), kind);
            let written = serde_json::to_value(&config).unwrap_or_default();
            assert_eq!(written["kind"], kind, "{written}");
        }
        assert_eq!(
            SourceConfig::KINDS,
            ["simulated", "prometheus", "simulated_services"]
        );
    }

    /// The error `Config::parse` gives for a loop whose `source:` is `source` (indented as
    /// under `source:`), the loop's first line being line 2.
    fn source_error(source: &str) -> String {
        let text =
            format!("loops:\n  - name: pg\n    plugin: builtin:postgres\n    source:\n{source}");
        crate::config::Config::parse(&text, "s.yaml")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_type_error_inside_source_names_the_field_and_its_line() {
        for (source, expected) in [
            (
                "      kind: prometheus\n      url: http://127.0.0.1:9090\n      timeout: [1, 2]\n",
                "s.yaml:7:16: loops[0].source.timeout: invalid type: sequence",
            ),
            (
                "      kind: prometheus\n      url: http://127.0.0.1:9090\n      retries: \"x\"\n",
                "s.yaml:7:16: loops[0].source.retries: invalid type: string \"x\", expected u32",
            ),
            (
                "      kind: simulated\n      seed: -1\n",
                "s.yaml:6:13: loops[0].source.seed: invalid type: integer `-1`, expected u64",
            ),
            (
                "      kind: prometheus\n      url: http://127.0.0.1:9090\n      timout: 5s\n",
                "s.yaml:7:7: loops[0].source.timout: unknown field `timout`",
            ),
            (
                "      kind: graphite\n      url: x\n",
                "s.yaml:5:7: loops[0].source.kind: unknown variant `graphite`, expected one of `simulated`, `prometheus`, `simulated_services`",
            ),
        ] {
            let error = source_error(source);
            assert!(error.starts_with(expected), "{source}: {error}");
        }
    }

    #[test]
    fn kind_may_come_after_the_fields_it_selects() {
        let text = "loops:\n  - name: pg\n    plugin: builtin:postgres\n    source:\n      url: http://127.0.0.1:9090\n      retries: 7\n      kind: prometheus\n";
        let config = match crate::config::Config::parse(text, "s.yaml") {
            Ok(config) => config,
            Err(error) => panic!("{error}"),
        };
        let SourceConfig::Prometheus(prometheus) = &config.loops[0].source else {
            panic!("{:?}", config.loops[0].source);
        };
        assert_eq!(prometheus.retries, 7);

        // A field read before the kind is known has lost its position; its key is named.
        let error = source_error("      timeout: [1, 2]\n      kind: prometheus\n      url: x\n");
        assert!(
            error.contains("loops[0].source: timeout: invalid type: sequence"),
            "{error}"
        );
        let error = source_error("      url: x\n");
        assert!(
            error.contains("loops[0].source: missing field `kind`"),
            "{error}"
        );
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
